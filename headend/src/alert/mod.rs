//! The alert desk: emergency alerts in (`POST /api/alerts`), verified, targeted and put on
//! air; what each channel shows decided here; every step in the audit log.
//!
//! Order of checks for each message, the first failure ending it (and logged): the key
//! named by `X-Signature-Key` is trusted; the signature over the exact body verifies (before
//! anything is parsed); the body parses (CAP 1.2 XML, or the JSON form); the key may sign
//! for the alert's `sender`; the (sender, identifier) pair is new (also across restarts: the
//! audit log is read back); `sent` is within the replay window and the alert has not expired;
//! the areas map to channels. Then, per channel, the alert with the highest level (1 is the
//! highest) is on air; equal levels queue in arrival order; `Update` replaces an alert's
//! content in place, `Cancel` and `expires` end it, and the channel returns to its schedule.

pub(crate) mod audit;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDateTime, Utc};
use epg::alert::{Alert, MsgType, Status};
use serde_json::{json, Map, Value};

use crate::config::{areas_overlap, AlertsConfig, Config, EmergencyTable};
use crate::router::ScheduleSink;
use crate::schedule::driver::{Mailbox, Wake};
use crate::station::{AirAlert, AirKind, AirReport, OnAirProgramme, OverrideMsg};
use audit::Audit;

/// Alerts kept for `GET /api/alerts` after they end.
const RECENT: usize = 100;

/// Why an alert was refused; the API picks the status code from the kind.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) kind: RejectKind,
    pub(crate) reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RejectKind {
    /// No or unknown key, bad signature, a sender the key may not sign for.
    Unauthenticated,
    /// Seen before.
    Replay,
    /// Malformed, expired, stale, no channel for its area, a reference to nothing.
    Invalid,
    /// The audit log cannot be written: nothing is aired without its record.
    Internal,
}

impl RejectKind {
    fn as_str(self) -> &'static str {
        match self {
            RejectKind::Unauthenticated => "unauthenticated",
            RejectKind::Replay => "replay",
            RejectKind::Invalid => "invalid",
            RejectKind::Internal => "internal",
        }
    }
}

fn reject(kind: RejectKind, reason: impl Into<String>) -> Rejection {
    Rejection {
        kind,
        reason: reason.into(),
    }
}

/// A channel the desk can put alerts on.
struct DeskChannel {
    id: String,
    station: usize,
    program: usize,
    service_id: u16,
    transport_stream_id: u16,
    original_network_id: u16,
    /// Whether it is a channel on its own (the scheduler brings it back).
    single: bool,
    drills: bool,
}

/// An accepted alert, until it ends.
struct Live {
    seq: u64,
    /// Bumped by each update.
    revision: u64,
    alert: Alert,
    /// Every (sender, identifier) it has had: the original and each update, any of which a
    /// later update or cancel may reference.
    ids: Vec<(String, String)>,
    level: u8,
    clip: PathBuf,
    channels: Vec<usize>,
    expires: DateTime<Utc>,
    accepted: DateTime<Utc>,
    /// Per channel: (channel id, on air UTC ns, first packet UTC ns).
    on_air: Vec<(String, i64, i64)>,
}

struct State {
    seen: HashSet<(String, String)>,
    next_seq: u64,
    live: Vec<Live>,
    recent: VecDeque<Value>,
    /// Per desk channel: what it shows (seq, revision).
    shown: Vec<Option<(u64, u64)>>,
}

/// The alert desk.
pub(crate) struct Desk {
    cfg: AlertsConfig,
    channels: Vec<DeskChannel>,
    audit: Audit,
    sink: ScheduleSink,
    returns: Mailbox,
    reports: Mutex<Option<mpsc::Receiver<AirReport>>>,
    state: Mutex<State>,
}

/// What the engine and scheduler give the desk.
pub(crate) struct DeskLinks {
    pub(crate) sink: ScheduleSink,
    pub(crate) returns: Mailbox,
    pub(crate) reports: Option<mpsc::Receiver<AirReport>>,
    /// Station of each channel: (channel id, station index, program index, single).
    pub(crate) placement: Vec<(String, usize, usize, bool)>,
}

/// Accepted: what the API answers.
pub(crate) type Accepted = Value;

impl Desk {
    /// Opens the audit log; `None` without `[alerts]`.
    pub(crate) fn new(config: &Config, links: DeskLinks) -> anyhow::Result<Option<Desk>> {
        let Some(cfg) = config.alerts.clone() else {
            return Ok(None);
        };
        let tz = config
            .channels
            .first()
            .map_or(epg::schedule::Tz::UTC, |c| c.timezone);
        let (audit, seen) = Audit::open(&cfg.audit_log, tz)
            .map_err(|e| anyhow::anyhow!("alerts.audit_log {}: {e}", cfg.audit_log.display()))?;
        std::fs::create_dir_all(&cfg.media_dir)
            .map_err(|e| anyhow::anyhow!("alerts.media_dir {}: {e}", cfg.media_dir.display()))?;
        let channels: Vec<DeskChannel> = config
            .channels
            .iter()
            .filter_map(|c| {
                let (_, station, program, single) =
                    links.placement.iter().find(|(id, ..)| *id == c.id)?;
                Some(DeskChannel {
                    id: c.id.clone(),
                    station: *station,
                    program: *program,
                    service_id: c.service_id,
                    transport_stream_id: c.transport_stream_id,
                    original_network_id: c.si.original_network_id,
                    single: *single,
                    drills: cfg.drill_channels.contains(&c.id),
                })
            })
            .collect();
        let n = channels.len();
        Ok(Some(Desk {
            cfg,
            channels,
            audit,
            sink: links.sink,
            returns: links.returns,
            reports: Mutex::new(links.reports),
            state: Mutex::new(State {
                seen: seen.into_iter().collect(),
                next_seq: 1,
                live: Vec::new(),
                recent: VecDeque::new(),
                shown: vec![None; n],
            }),
        }))
    }

    /// The `emergency` role's token.
    pub(crate) fn token(&self) -> &crate::config::Secret {
        &self.cfg.token
    }

    /// Largest clip upload.
    pub(crate) fn max_upload(&self) -> u64 {
        self.cfg.max_upload_bytes
    }

    fn record(&self, event: &str, fields: Value) -> Result<(), Rejection> {
        let map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.audit.record(event, map).map_err(|e| {
            reject(
                RejectKind::Internal,
                format!("the audit log cannot be written: {e}"),
            )
        })
    }

    fn refuse(&self, r: Rejection, mut fields: Value) -> Rejection {
        fields["reason"] = r.reason.clone().into();
        fields["kind"] = r.kind.as_str().into();
        let _ = self.record("rejected", fields);
        tracing::warn!(kind = r.kind.as_str(), reason = %r.reason, "alert rejected");
        r
    }

    /// Takes one alert message: `body` as received, signed with `signature` (base64) by
    /// `key_id`.
    pub(crate) fn submit(
        &self,
        body: &[u8],
        key_id: Option<&str>,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, Rejection> {
        let digest = hex(&epg::alert::sign::sm3(body));
        let mut ctx = json!({ "bytes": body.len(), "sm3": digest, "key_id": key_id });
        self.record("received", ctx.clone())?;
        // 1. Who signed it, before anything is parsed.
        let Some(key_id) = key_id else {
            return Err(self.refuse(
                reject(
                    RejectKind::Unauthenticated,
                    format!(
                        "no `{}` header: alerts must be signed",
                        epg::alert::sign::KEY_HEADER
                    ),
                ),
                ctx,
            ));
        };
        let Some(key) = self.cfg.senders.iter().find(|k| k.key_id == key_id) else {
            return Err(self.refuse(
                reject(
                    RejectKind::Unauthenticated,
                    format!("unknown key `{}`", key_id.escape_debug()),
                ),
                ctx,
            ));
        };
        let sig = match signature.map(epg::alert::sign::decode_signature) {
            None => {
                return Err(self.refuse(
                    reject(
                        RejectKind::Unauthenticated,
                        format!("no `{}` header", epg::alert::sign::SIGNATURE_HEADER),
                    ),
                    ctx,
                ))
            }
            Some(Err(e)) => {
                return Err(self.refuse(
                    reject(RejectKind::Unauthenticated, format!("signature: {e}")),
                    ctx,
                ))
            }
            Some(Ok(s)) => s,
        };
        if let Err(e) = key.key.verify(body, &sig) {
            return Err(self.refuse(
                reject(
                    RejectKind::Unauthenticated,
                    format!("bad signature for key `{key_id}`: {e}"),
                ),
                ctx,
            ));
        }
        // 2. What it says.
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                return Err(self.refuse(
                    reject(RejectKind::Invalid, format!("the body is not UTF-8: {e}")),
                    ctx,
                ))
            }
        };
        let parsed = if text.trim_start().starts_with('<') {
            epg::alert::parse_cap(text)
        } else {
            epg::alert::parse_json(text)
        };
        let alert = match parsed {
            Ok(a) => a,
            Err(e) => {
                return Err(self.refuse(
                    reject(RejectKind::Invalid, format!("malformed alert: {e}")),
                    ctx,
                ))
            }
        };
        ctx["sender"] = alert.sender.clone().into();
        ctx["identifier"] = alert.identifier.clone().into();
        ctx["msg_type"] = alert.msg_type.as_str().into();
        ctx["status"] = alert.status.as_str().into();
        if !key.senders.contains(&alert.sender) {
            return Err(self.refuse(
                reject(
                    RejectKind::Unauthenticated,
                    format!("key `{key_id}` may not sign for sender `{}`", alert.sender),
                ),
                ctx,
            ));
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = (alert.sender.clone(), alert.identifier.clone());
        if st.seen.contains(&pair) {
            return Err(self.refuse(
                reject(
                    RejectKind::Replay,
                    format!(
                        "alert `{}` from `{}` was received before",
                        alert.identifier, alert.sender
                    ),
                ),
                ctx,
            ));
        }
        st.seen.insert(pair);
        self.record("verified", ctx.clone())?;
        if let Err(e) = alert.check_time(now, self.cfg.replay_window) {
            return Err(self.refuse(reject(RejectKind::Invalid, e.to_string()), ctx));
        }
        match alert.msg_type {
            MsgType::Alert => self.take_alert(&mut st, alert, now, ctx),
            MsgType::Update => self.take_update(&mut st, alert, now, ctx),
            MsgType::Cancel => self.take_cancel(&mut st, &alert, now, ctx),
            other => Err(self.refuse(
                reject(
                    RejectKind::Invalid,
                    format!("msgType {} is not aired", other.as_str()),
                ),
                ctx,
            )),
        }
    }

    /// The channels an alert's areas cover (drills only on drill channels).
    fn targets(&self, alert: &Alert) -> Result<Vec<usize>, String> {
        let codes: Vec<&str> = alert.geocodes().map(|(_, v)| v).collect();
        if codes.is_empty() {
            return Err("the alert names no area (geocode)".into());
        }
        let mut out = Vec::new();
        for (i, ch) in self.channels.iter().enumerate() {
            let covered = self.cfg.areas.iter().any(|a| {
                a.channels.contains(&ch.id) && codes.iter().any(|c| areas_overlap(c, &a.code))
            });
            if covered {
                out.push(i);
            }
        }
        if out.is_empty() {
            return Err(format!(
                "unknown area: no channel serves {}",
                codes.join(", ")
            ));
        }
        if alert.is_drill() {
            out.retain(|&i| self.channels[i].drills);
        }
        Ok(out)
    }

    /// Where an alert goes, at which level, with which clip.
    fn placement(&self, alert: &Alert) -> Result<(Vec<usize>, u8, PathBuf), String> {
        let channels = self.targets(alert)?;
        let level = alert.level();
        let clip = self.clip(alert, level)?;
        Ok((channels, level, clip))
    }

    /// The clip for an alert: an uploaded one it names, else by event code, else by level.
    fn clip(&self, alert: &Alert, level: u8) -> Result<PathBuf, String> {
        for r in alert.info.iter().flat_map(|i| &i.resources) {
            if let Some(id) = r.uri.as_deref().and_then(|u| u.strip_prefix("media:")) {
                let ok =
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                let path = self.cfg.media_dir.join(format!("{id}.ts"));
                if !ok || !path.is_file() {
                    return Err(format!("resource `media:{id}`: no such uploaded clip"));
                }
                return Ok(path);
            }
        }
        let codes: Vec<&str> = alert
            .event_codes()
            .map(|(_, v)| v)
            .chain(alert.info.iter().map(|i| i.event.as_str()))
            .collect();
        if let Some((_, p)) = self
            .cfg
            .event_clips
            .iter()
            .find(|(k, _)| codes.contains(&k.as_str()))
        {
            return Ok(p.clone());
        }
        self.cfg
            .level_clips
            .iter()
            .find(|(l, _)| *l == Some(level))
            .or_else(|| self.cfg.level_clips.iter().find(|(l, _)| l.is_none()))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| format!("no clip for level {level}"))
    }

    fn expiry(&self, alert: &Alert, now: DateTime<Utc>) -> DateTime<Utc> {
        let max = now
            + chrono::Duration::from_std(self.cfg.max_duration)
                .unwrap_or(chrono::Duration::hours(1));
        alert
            .expires()
            .map_or(max, |e| e.with_timezone(&Utc).min(max))
    }

    fn take_alert(
        &self,
        st: &mut State,
        alert: Alert,
        now: DateTime<Utc>,
        mut ctx: Value,
    ) -> Result<Accepted, Rejection> {
        if matches!(alert.status, Status::System | Status::Draft) {
            return Err(self.refuse(
                reject(
                    RejectKind::Invalid,
                    format!("status {} is not aired", alert.status.as_str()),
                ),
                ctx,
            ));
        }
        let (channels, level, clip) = match self.placement(&alert) {
            Ok(x) => x,
            Err(e) => return Err(self.refuse(reject(RejectKind::Invalid, e), ctx)),
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        let expires = self.expiry(&alert, now);
        ctx["seq"] = seq.into();
        ctx["level"] = level.into();
        ctx["clip"] = clip.display().to_string().into();
        ctx["expires"] = expires.to_rfc3339().into();
        ctx["channels"] = channels
            .iter()
            .map(|&i| self.channels[i].id.clone())
            .collect::<Vec<_>>()
            .into();
        self.record("accepted", ctx.clone())?;
        tracing::warn!(seq, level, identifier = %alert.identifier, channels = channels.len(), "alert accepted");
        st.live.push(Live {
            seq,
            revision: 0,
            ids: vec![(alert.sender.clone(), alert.identifier.clone())],
            alert,
            level,
            clip,
            channels,
            expires,
            accepted: now,
            on_air: Vec::new(),
        });
        self.arbitrate(st, now);
        Ok(ctx)
    }

    fn referenced(st: &State, alert: &Alert) -> Vec<usize> {
        st.live
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                alert.references.iter().any(|r| {
                    l.ids
                        .iter()
                        .any(|(s, i)| *s == r.sender && *i == r.identifier)
                })
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn take_update(
        &self,
        st: &mut State,
        alert: Alert,
        now: DateTime<Utc>,
        mut ctx: Value,
    ) -> Result<Accepted, Rejection> {
        let found = Self::referenced(st, &alert);
        let Some(&k) = found.first() else {
            return Err(self.refuse(
                reject(RejectKind::Invalid, "the update references no alert on air"),
                ctx,
            ));
        };
        let (channels, level, clip) = match self.placement(&alert) {
            Ok(x) => x,
            Err(e) => return Err(self.refuse(reject(RejectKind::Invalid, e), ctx)),
        };
        let expires = self.expiry(&alert, now);
        let l = &mut st.live[k];
        l.revision += 1;
        l.ids.push((alert.sender.clone(), alert.identifier.clone()));
        l.alert = alert;
        l.level = level;
        l.clip = clip;
        l.channels = channels;
        l.expires = expires;
        ctx["seq"] = l.seq.into();
        ctx["level"] = level.into();
        ctx["expires"] = expires.to_rfc3339().into();
        ctx["channels"] = l
            .channels
            .iter()
            .map(|&i| self.channels[i].id.clone())
            .collect::<Vec<_>>()
            .into();
        self.record("updated", ctx.clone())?;
        self.arbitrate(st, now);
        Ok(ctx)
    }

    fn take_cancel(
        &self,
        st: &mut State,
        alert: &Alert,
        now: DateTime<Utc>,
        mut ctx: Value,
    ) -> Result<Accepted, Rejection> {
        let found = Self::referenced(st, alert);
        if found.is_empty() {
            return Err(self.refuse(
                reject(RejectKind::Invalid, "the cancel references no alert on air"),
                ctx,
            ));
        }
        let mut seqs = Vec::new();
        for k in found.into_iter().rev() {
            let l = st.live.remove(k);
            seqs.push(l.seq);
            self.end(st, l, "cancelled", now);
        }
        ctx["cancelled"] = seqs.into();
        self.record("cancel_accepted", ctx.clone())?;
        self.arbitrate(st, now);
        Ok(ctx)
    }

    fn end(&self, st: &mut State, l: Live, why: &str, now: DateTime<Utc>) {
        let summary = json!({
            "seq": l.seq,
            "identifier": l.alert.identifier,
            "sender": l.alert.sender,
            "headline": l.alert.headline(),
            "level": l.level,
            "accepted": l.accepted.to_rfc3339(),
            "ended": now.to_rfc3339(),
            "why": why,
            "on_air": l.on_air.iter().map(|(c, p, f)| json!({"channel": c, "presented_utc_ns": p, "first_packet_utc_ns": f})).collect::<Vec<_>>(),
        });
        let _ = self.record(
            why,
            json!({"seq": l.seq, "identifier": l.alert.identifier, "sender": l.alert.sender}),
        );
        st.recent.push_front(summary);
        st.recent.truncate(RECENT);
    }

    /// Per channel, the alert to show: the highest level (lowest number), then the oldest.
    fn arbitrate(&self, st: &mut State, now: DateTime<Utc>) {
        for (i, ch) in self.channels.iter().enumerate() {
            let best = st
                .live
                .iter()
                .filter(|l| l.channels.contains(&i))
                .min_by_key(|l| (l.level, l.seq));
            let want = best.map(|l| (l.seq, l.revision));
            if want == st.shown[i] {
                continue;
            }
            match best {
                Some(l) => {
                    let air = Arc::new(self.air_alert(ch, l, now));
                    self.sink.send_override(OverrideMsg::Show {
                        station: ch.station,
                        program: ch.program,
                        air,
                    });
                }
                None => {
                    self.sink.send_override(OverrideMsg::Clear {
                        station: ch.station,
                        program: ch.program,
                    });
                    if ch.single {
                        let _ = self.returns.send(Wake::AlertEnded(ch.id.clone()));
                    }
                }
            }
            st.shown[i] = want;
        }
    }

    /// What one channel airs for alert `l`.
    fn air_alert(&self, ch: &DeskChannel, l: &Live, now: DateTime<Utc>) -> AirAlert {
        let a = &l.alert;
        let info = a.info.first();
        let description = info
            .map(|i| {
                [i.description.as_deref(), i.instruction.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let language = info.map(|i| iso639(&i.language)).unwrap_or("und");
        let remaining_ns = (l.expires - now).num_nanoseconds().unwrap_or(0).max(0) as u64;
        let programme = OnAirProgramme {
            title: a.headline().to_owned(),
            description: description.clone(),
            genre: Some("news".to_owned()),
            rating: 0,
            language: Some(language.to_owned()),
            episode: None,
            start: playout::schedule::Utc(now.timestamp_nanos_opt().unwrap_or(0)),
            duration_ns: remaining_ns,
        };
        let mut tables = Vec::new();
        for t in &self.cfg.tables {
            let built = match t {
                EmergencyTable::Ebit => self
                    .ebit(ch, l, now)
                    .map(|s| (self.cfg.ebit_pid, 0xFD_u64 << 32, s)),
                EmergencyTable::Scte18 => self
                    .scte18(l, now, &description, language)
                    .map(|s| (0x1FFB, 0xD8_u64 << 32, s)),
            };
            match built {
                Ok((pid, key, section)) => tables.push((pid, key, vec![section])),
                Err(e) => {
                    tracing::error!(seq = l.seq, error = %e, "emergency table not built; the alert goes on air without it")
                }
            }
        }
        AirAlert {
            seq: l.seq,
            clip: l.clip.clone(),
            programme,
            tables,
        }
    }

    fn ebit(&self, ch: &DeskChannel, l: &Live, now: DateTime<Utc>) -> Result<Vec<u8>, String> {
        use epg::emergency::{
            ebit_section, ebm_id_from, resource_code, DetailsChannel, EbClass, EbMessage,
        };
        let a = &l.alert;
        let start: NaiveDateTime = a
            .onset_or_effective()
            .map_or(now, |t| t.with_timezone(&Utc))
            .min(now)
            .naive_utc();
        let ebm_type = a
            .event_codes()
            .map(|(_, v)| v)
            .find(|v| v.len() == 5 && v.is_ascii())
            .map_or(*b"00000", |v| {
                let mut t = [0u8; 5];
                t.copy_from_slice(v.as_bytes());
                t
            });
        let class = match a.status {
            Status::Actual => EbClass::Emergency,
            Status::Exercise => EbClass::LiveDrill,
            _ => EbClass::PublishingDrill,
        };
        let mut resource_codes = Vec::new();
        for (_, code) in a.geocodes() {
            if code.bytes().all(|b| b.is_ascii_digit()) && code.len() <= 23 {
                if let Ok(r) = resource_code(&format!("{code:0<23}")) {
                    if !resource_codes.contains(&r) && resource_codes.len() < 255 {
                        resource_codes.push(r);
                    }
                }
            }
        }
        let msg = EbMessage {
            ebm_id: ebm_id_from(
                &self.cfg.resource_code,
                now.date_naive(),
                (l.seq % 10_000) as u16,
            )
            .map_err(|e| e.to_string())?,
            original_network_id: ch.original_network_id,
            start,
            end: l.expires.naive_utc().max(start),
            ebm_type,
            class,
            level: l.level.min(4),
            resource_codes,
            details: Some(DetailsChannel {
                transport_stream_id: ch.transport_stream_id,
                program_number: ch.service_id,
                pcr_pid: playout::ts::Pid::from_bits(0x1FFF),
                program_info: bytes::Bytes::new(),
                streams: Vec::new(),
            }),
        };
        ebit_section(ch.service_id, (l.revision % 32) as u8, &[msg], None)
            .map_err(|e| e.to_string())
    }

    fn scte18(
        &self,
        l: &Live,
        now: DateTime<Utc>,
        description: &str,
        language: &str,
    ) -> Result<Vec<u8>, String> {
        use epg::emergency::{scte18_section, LocationCode, Scte18Alert};
        let a = &l.alert;
        let remaining = (l.expires - now).num_seconds().max(0);
        let mut lang = [0u8; 3];
        lang.copy_from_slice(language.as_bytes().get(..3).unwrap_or(b"und"));
        let priority = if a.is_drill() {
            0
        } else {
            match l.level {
                1 => 15,
                2 => 11,
                3 => 7,
                _ => 3,
            }
        };
        let event_code = a
            .event_codes()
            .map(|(_, v)| v)
            .find(|v| v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()))
            .unwrap_or(if l.level == 1 { "EAN" } else { "ADR" })
            .to_owned();
        let mut text = a.headline().to_owned();
        if !description.is_empty() {
            text.push('\n');
            text.push_str(description);
        }
        // Keep the section within its 4096 bytes (UTF-16 text: two bytes a character).
        let text: String = text.chars().take(1500).collect();
        let alert = Scte18Alert {
            sequence_number: (l.revision % 32) as u8,
            event_id: (l.seq & 0xFFFF) as u16,
            originator: *b"CIV",
            event_code,
            language: lang,
            nature_of_activation: a
                .info
                .first()
                .map(|i| i.event.chars().take(100).collect())
                .unwrap_or_default(),
            time_remaining_s: remaining.min(120) as u8,
            start_gps_s: 0,
            duration_min: ((remaining + 59) / 60).clamp(15, 6000) as u16,
            priority,
            details_oob_source_id: 0,
            details_major_channel: 0,
            details_minor_channel: 0,
            audio_oob_source_id: 0,
            alert_text: text,
            locations: vec![LocationCode {
                state_code: 0,
                county_subdivision: 0,
                county_code: 0,
            }],
        };
        scte18_section(&alert).map_err(|e| e.to_string())
    }

    /// Ends expired alerts and writes the engine's on/off-air reports to the audit log; call
    /// it a few times a second.
    pub(crate) fn tick(&self, now: DateTime<Utc>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut k = 0;
        let mut ended = false;
        while k < st.live.len() {
            if st.live[k].expires <= now {
                let l = st.live.remove(k);
                tracing::info!(seq = l.seq, "alert expired");
                self.end(&mut st, l, "expired", now);
                ended = true;
            } else {
                k += 1;
            }
        }
        if ended {
            self.arbitrate(&mut st, now);
        }
        let rx = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(rx) = rx.as_ref() else { return };
        while let Ok(r) = rx.try_recv() {
            let Some(ch) = self
                .channels
                .iter()
                .find(|c| c.station == r.station && c.program == r.program)
            else {
                continue;
            };
            let identifier = st
                .live
                .iter()
                .find(|l| l.seq == r.seq)
                .map(|l| l.alert.identifier.clone());
            match r.kind {
                AirKind::OnAir {
                    first_packet_utc_ns,
                    presented_utc_ns,
                } => {
                    let _ = self.record(
                        "on_air",
                        json!({"at_utc_ns": first_packet_utc_ns, "seq": r.seq, "identifier": identifier, "channel": ch.id,
                               "first_packet_utc_ns": first_packet_utc_ns, "presented_utc_ns": presented_utc_ns}),
                    );
                    if let Some(l) = st.live.iter_mut().find(|l| l.seq == r.seq) {
                        l.on_air.retain(|(c, _, _)| *c != ch.id);
                        l.on_air
                            .push((ch.id.clone(), presented_utc_ns, first_packet_utc_ns));
                    }
                }
                AirKind::OffAir {
                    presented_until_utc_ns,
                } => {
                    let _ = self.record(
                        "off_air",
                        json!({"at_utc_ns": presented_until_utc_ns, "seq": r.seq, "identifier": identifier, "channel": ch.id}),
                    );
                }
            }
        }
    }

    /// `GET /api/alerts`: the alerts on air or queued, and the last ones that ended.
    pub(crate) fn list(&self) -> Value {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let active: Vec<Value> = st
            .live
            .iter()
            .map(|l| {
                let showing: Vec<&str> = self
                    .channels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| st.shown[*i].is_some_and(|(s, _)| s == l.seq))
                    .map(|(_, c)| c.id.as_str())
                    .collect();
                json!({
                    "seq": l.seq,
                    "identifier": l.alert.identifier,
                    "sender": l.alert.sender,
                    "status": l.alert.status.as_str(),
                    "headline": l.alert.headline(),
                    "level": l.level,
                    "clip": l.clip.display().to_string(),
                    "accepted": l.accepted.to_rfc3339(),
                    "expires": l.expires.to_rfc3339(),
                    "channels": l.channels.iter().map(|&i| self.channels[i].id.clone()).collect::<Vec<_>>(),
                    "on_air": showing,
                    "aired": l.on_air.iter().map(|(c, p, f)| json!({"channel": c, "presented_utc_ns": p, "first_packet_utc_ns": f})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "active": active, "recent": st.recent })
    }

    /// `POST /api/alerts/media`: a clip to air with a later alert (`resource` with `uri`
    /// `media:ID`). It must be a playable transport stream; kept under its content hash.
    pub(crate) fn upload(&self, data: &[u8]) -> Result<Value, Rejection> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        let id = format!("{:016x}{:x}", h.finish(), data.len());
        let path = self.cfg.media_dir.join(format!("{id}.ts"));
        let tmp = self.cfg.media_dir.join(format!(".{id}.tmp"));
        let internal =
            |e: std::io::Error| reject(RejectKind::Internal, format!("storing the clip: {e}"));
        std::fs::write(&tmp, data).map_err(internal)?;
        let probed = crate::input::probe::probe_file(&tmp);
        match probed {
            Ok(info) if info.duration_ns > 0 => {
                std::fs::rename(&tmp, &path).map_err(internal)?;
                let v = json!({"media": format!("media:{id}"), "bytes": data.len(), "duration_s": info.duration_ns as f64 / 1e9});
                let _ = self.record("media_stored", v.clone());
                Ok(v)
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
                Err(reject(
                    RejectKind::Invalid,
                    "not a playable transport stream: no duration",
                ))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(reject(
                    RejectKind::Invalid,
                    format!("not a playable transport stream: {e}"),
                ))
            }
        }
    }
}

/// ISO 639-2 code of a CAP language tag (`zh-CN` → `zho`); `und` when unknown.
fn iso639(tag: &str) -> &'static str {
    match tag
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "zh" => "zho",
        "en" => "eng",
        "fr" => "fra",
        "es" => "spa",
        "de" => "deu",
        "ja" => "jpn",
        "ko" => "kor",
        "ru" => "rus",
        "ar" => "ara",
        "pt" => "por",
        _ => "und",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests;
