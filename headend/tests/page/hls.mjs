// Plays an HLS playlist with hls.js (from the npm registry, node_modules/hls.js) in Debian's
// chromium, headless, through playwright-core, and prints one JSON line with what happened:
//   node hls.mjs URL SECONDS [TOKEN]
// {"event":"played","played_s":..,"stalls":..,"errors":[..],"fatal":..,"ended":..,
//  "first_frag":..,"frag_loaded":..,"first_rgb":[r,g,b],"last_rgb":[r,g,b]}
// (the colour at the centre of the first frame shown, and of the last when it ended)
// SECONDS: how long to watch (a live playlist) or at most (a VOD playlist, which ends).
// TOKEN: sent as `Authorization: Bearer` with key requests (AES-128).
import { chromium } from "playwright-core";
import { fileURLToPath } from "node:url";
import path from "node:path";

const [url, seconds, token] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const hardStop = setTimeout(() => { say({ event: "error", message: "ran over" }); process.exit(3); }, (Number(seconds) + 60) * 1000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage();
  await page.setContent("<video id=v muted playsinline></video>");
  await page.addScriptTag({ path: path.join(here, "node_modules/hls.js/dist/hls.min.js") });
  const result = await page.evaluate(async ({ url, seconds, token }) => {
    const v = document.getElementById("v");
    const r = { errors: [], fatal: false, stalls: 0, played_s: 0, frag_loaded: 0, first_frag: null, ended: false };
    if (!Hls.isSupported()) return { ...r, fatal: true, errors: ["MSE not supported"] };
    const hls = new Hls({
      xhrSetup: (xhr, u) => { if (token && /\/key\//.test(u)) xhr.setRequestHeader("Authorization", "Bearer " + token); },
    });
    hls.on(Hls.Events.ERROR, (_, d) => { r.errors.push(`${d.type}/${d.details}${d.fatal ? " (fatal)" : ""}`); if (d.fatal) r.fatal = true; });
    hls.on(Hls.Events.FRAG_LOADED, (_, d) => { r.frag_loaded++; if (r.first_frag === null) r.first_frag = d.frag.sn; });
    let started = false;
    // The colour at the centre of the picture shown (frame markers in test media).
    const canvas = document.createElement("canvas");
    canvas.width = 32; canvas.height = 18;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const rgb = () => { ctx.drawImage(v, 0, 0, 32, 18); const d = ctx.getImageData(16, 9, 1, 1).data; return [d[0], d[1], d[2]]; };
    v.requestVideoFrameCallback(() => { r.first_rgb = rgb(); });
    v.addEventListener("ended", () => { r.last_rgb = rgb(); });
    v.addEventListener("playing", () => { started = true; });
    v.addEventListener("waiting", () => { if (started) r.stalls++; });
    v.addEventListener("ended", () => { r.ended = true; });
    hls.loadSource(url);
    hls.attachMedia(v);
    hls.on(Hls.Events.MANIFEST_PARSED, () => { v.play().catch((e) => r.errors.push("play: " + e)); });
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000 && !r.fatal && !r.ended) {
      await new Promise((ok) => setTimeout(ok, 250));
    }
    r.played_s = v.currentTime - (r.start_time ?? 0);
    r.current_time = v.currentTime;
    r.started = started;
    hls.destroy();
    return r;
  }, { url, seconds: Number(seconds), token });
  say({ event: "played", ...result });
} catch (e) {
  say({ event: "error", message: String(e) });
}
clearTimeout(hardStop);
await browser.close();
