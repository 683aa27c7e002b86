// The operator's page: polls GET /api/overview and draws it. Everything shown is set as
// text (never parsed as HTML): channel names and alert headlines come from outside.
"use strict";

const POLL_MS = 500;
// After this long without a good answer, the page says its figures are stale.
const STALE_MS = 3000;
const TOKEN_KEY = "headend-token";

let lastGood = 0;
let timer = null;

// A token given in the address (`/#token=...`, never sent to the server) is kept for this
// tab and taken out of the address bar.
function takeTokenFromAddress() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function hhmmss(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toISOString().slice(11, 19);
}

function row(key, value, cls) {
  if (value === null || value === undefined || value === "") return null;
  return el("div", { class: "row" }, el("span", { class: "k" }, key),
    el("span", { class: "v " + (cls || ""), title: String(value) }, value));
}

function programme(p) {
  if (!p) return null;
  const title = p.title || p.label || "";
  return `${hhmmss(p.start)}–${hhmmss(p.end)} ${title}`;
}

function count(n) {
  return typeof n === "number" ? n.toLocaleString("en") : "–";
}

function card(c) {
  const relay = c.relay;
  const input = relay ? (relay.active || "playlist") : null;
  const inputs = relay ? relay.inputs.map((i) => `${i.name}: ${i.health}`).join(", ") : null;
  const scr = (c.scrambling || []).map((s) => s.cipher + (s.alarm ? " (ALARM)" : "")).join(", ");
  const k = c.counters;
  const open = (c.open || []).map((o) => `${o.event} (${o.place}): ${o.cause}`).join("; ");
  return el("article", {
      class: "card", "data-channel": c.id, "data-state": c.state,
      "data-input": input, "data-alert": c.alert ? c.alert.seq : null,
    },
    el("div", { class: "top" },
      el("span", { class: "name", title: c.name }, c.name, el("span", { class: "id" }, c.id)),
      el("span", { class: "badge", "data-state": c.state }, c.state.replace("-", " "))),
    row("on air", (c.on_air || []).join(", ")),
    c.alert ? row("alert", `${c.alert.headline || "alert"} (level ${c.alert.level})`, "bad") : null,
    open ? row("event", open, "bad") : null,
    c.schedule ? row("now", programme(c.schedule.now)) : null,
    c.schedule ? row("next", programme(c.schedule.next)) : null,
    c.epg ? row("EPG now", programme(c.epg.now)) : null,
    c.epg ? row("EPG next", programme(c.epg.next)) : null,
    relay ? row("input", input + (relay.locked ? " (locked)" : ""), input !== relay.inputs[0]?.name ? "bad" : "") : null,
    relay ? row("inputs", inputs) : null,
    scr ? row("scrambled", scr + (c.ecmg_up === false ? ", ECMG down" : ""), c.ecmg_up === false ? "bad" : "") : null,
    k ? el("div", { class: "counters" },
      `${(k.muxrate_bps / 1e6).toFixed(1)} Mbit/s · packets ${count(k.packets)} · null ${count(k.null_packets)}` +
      ` · underflows ${count(k.underflows)} · CC ${count(k.cc_errors)} · P1 ${count(k.tr101290_priority1)}` +
      ` · items ${count(k.items_started)}/${count(k.items_failed)} failed` +
      (k.output_errors ? ` · send errors ${count(k.output_errors)}` : "")) : null);
}

function draw(o) {
  document.getElementById("clock").textContent = o.now_utc.replace("T", " ").slice(0, 19) + " UTC";
  const summary = document.getElementById("summary");
  summary.replaceChildren(...Object.entries(o.states).map(([s, n]) =>
    el("span", { "data-state": s }, `${n} ${s.replace("-", " ")}`)));
  document.getElementById("channels").replaceChildren(...o.channels.map(card));

  const alarms = document.getElementById("alarms");
  alarms.hidden = o.alarms.length === 0;
  alarms.replaceChildren(...o.alarms.map((a) =>
    el("div", { class: "alarm" }, `${a.place}: ${a.alarm} (since ${hhmmss(a.since)})`)));

  const alerts = document.getElementById("alerts");
  alerts.hidden = o.alerts.length === 0;
  alerts.replaceChildren(...o.alerts.map((a) =>
    el("div", { class: "alert" }, `Alert ${a.seq} (level ${a.level}) from ${a.sender}: ${a.headline} — ` +
      `on ${(a.on_air || []).join(", ") || "none yet"}, until ${hhmmss(a.expires)}`)));

  document.getElementById("events").replaceChildren(...o.events.map((e) =>
    el("tr", { "data-event": e.event, "data-channel": e.channel },
      el("td", { class: "when" }, (e.utc || "").replace("T", " ").slice(0, 23)),
      el("td", {}, e.channel), el("td", {}, e.event), el("td", {}, e.phase),
      el("td", {}, e.place), el("td", {}, e.cause), el("td", {}, e.actor))));
}

function setLink(state, text) {
  const link = document.getElementById("link");
  link.dataset.link = state;
  link.textContent = text;
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  try {
    const r = await fetch("/api/overview", { headers, cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      const why = await r.json().catch(() => ({}));
      askForToken(why.message || `refused (${r.status})`);
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    draw(await r.json());
    lastGood = Date.now();
    setLink("live", "live");
  } catch (e) {
    if (Date.now() - lastGood > STALE_MS) {
      setLink("stale", lastGood ? `no answer since ${new Date(lastGood).toISOString().slice(11, 19)} UTC: figures are stale` : `no answer: ${e.message}`);
    }
  }
  timer = setTimeout(poll, POLL_MS);
}

function askForToken(why) {
  document.getElementById("login").hidden = false;
  document.getElementById("login-why").textContent = why;
  setLink("stale", "a token is needed");
}

function start() {
  takeTokenFromAddress();
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = document.getElementById("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    document.getElementById("login").hidden = true;
    clearTimeout(timer);
    poll();
  });
  poll();
}

start();
