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
//!
//! This file runs the checks in that order and sends the stations what the policy decides.
//! [`policy`] decides (targets, levels, queueing, updates, cancels, expiry) without I/O;
//! [`audit`] and [`media`] are what the desk keeps on disk (the audit log and the replay
//! memory read back from it; uploaded clips); [`view`] is what it shows outside (the kinds
//! of refusal, the JSON it answers and records); [`air`] is what a channel airs for an alert
//! (its EIT event and emergency tables).

mod active;
mod air;
pub(crate) mod audit;
mod media;
mod policy;
mod view;

use std::sync::{mpsc, Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use epg::alert::{Alert, MsgType, Status};
use serde_json::{json, Map, Value};

use crate::alarm::{Alarm, AlarmState};
use crate::config::{AlertsConfig, Config};
use crate::router::ScheduleSink;
use crate::schedule::driver::{Mailbox, Wake};
use crate::station::{AirKind, AirReport, OverrideMsg};
use active::Active;
use audit::{Audit, Replays};
use media::{Media, UploadError};
use policy::{Board, Decision, DeskChannel, Live};
use view::{reject, Recent};
pub(crate) use view::{RejectKind, Rejection};

/// The alert desk.
pub(crate) struct Desk {
    cfg: AlertsConfig,
    audit: Audit,
    /// The alerts on air or queued, kept on disk to put back on air after a restart.
    active: Active,
    media: Media,
    sink: ScheduleSink,
    returns: Mailbox,
    reports: Mutex<Option<mpsc::Receiver<AirReport>>>,
    state: Mutex<State>,
    /// The stoppage record: each alert on a channel is an override.
    journal: crate::record::Journal,
    /// Raised while uploaded clips cannot be stored, and while the audit log cannot be
    /// written (`GET /api/record`).
    media_alarm: Alarm,
    audit_alarm: Alarm,
}

/// What the engine and scheduler give the desk.
pub(crate) struct DeskLinks {
    pub(crate) sink: ScheduleSink,
    pub(crate) returns: Mailbox,
    pub(crate) reports: Option<mpsc::Receiver<AirReport>>,
    /// Station of each channel: (channel id, station index, program index, single).
    pub(crate) placement: Vec<(String, usize, usize, bool)>,
    pub(crate) journal: crate::record::Journal,
}

/// Accepted: what the API answers.
pub(crate) type Accepted = Value;

struct State {
    replays: Replays,
    board: Board,
    recent: Recent,
}

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
        let last_seq = audit.last_seq();
        let media = Media::open(&cfg.media_dir)
            .map_err(|e| anyhow::anyhow!("alerts.media_dir {}: {e}", cfg.media_dir.display()))?;
        let active = Active::open(&cfg.audit_log).map_err(|e| {
            anyhow::anyhow!(
                "alerts.audit_log {}: the active alerts beside it: {e}",
                cfg.audit_log.display()
            )
        })?;
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
        Ok(Some(Desk {
            cfg,
            audit,
            active,
            media,
            sink: links.sink,
            returns: links.returns,
            reports: Mutex::new(links.reports),
            journal: links.journal,
            media_alarm: Alarm::new("alert media"),
            audit_alarm: Alarm::new("alert audit log"),
            state: Mutex::new(State {
                replays: Replays::new(seen),
                board: Board::numbered_after(channels, last_seq),
                recent: Recent::default(),
            }),
        }))
    }

    /// Largest clip upload.
    pub(crate) fn max_upload(&self) -> u64 {
        self.cfg.max_upload_bytes
    }

    /// The desk's alarms: uploaded clips that cannot be stored, the audit log that cannot
    /// be written.
    pub(crate) fn alarms(&self) -> [AlarmState; 2] {
        [self.media_alarm.state(), self.audit_alarm.state()]
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
        let mut ctx = view::received(body, key_id);
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
        view::identify(&mut ctx, &alert);
        if !key.senders.contains(&alert.sender) {
            return Err(self.refuse(
                reject(
                    RejectKind::Unauthenticated,
                    format!("key `{key_id}` may not sign for sender `{}`", alert.sender),
                ),
                ctx,
            ));
        }
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        if !st.replays.first_time(&alert.sender, &alert.identifier) {
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
        if let Err(e) = self.record("verified", ctx.clone()) {
            st.replays.forget(&alert.sender, &alert.identifier);
            return Err(e);
        }
        if let Err(e) = alert.check_time(now, self.cfg.replay_window) {
            return Err(self.refuse(reject(RejectKind::Invalid, e.to_string()), ctx));
        }
        match alert.msg_type {
            MsgType::Alert => self.take_alert(st, alert, text, now, ctx),
            MsgType::Update => self.take_update(st, alert, text, now, ctx),
            MsgType::Cancel => self.take_cancel(st, &alert, now, ctx),
            other => Err(self.refuse(
                reject(
                    RejectKind::Invalid,
                    format!("msgType {} is not aired", other.as_str()),
                ),
                ctx,
            )),
        }
    }

    fn take_alert(
        &self,
        st: &mut State,
        alert: Alert,
        text: &str,
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
        let placed = st
            .board
            .place(&self.cfg, &alert, now, |id| self.media.clip(id));
        let p = match placed {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(reject(RejectKind::Invalid, e), ctx)),
        };
        let seq = st.board.take_seq();
        let channels = st.board.channel_ids(&p.channels);
        view::place(&mut ctx, seq, p.level, p.expires, channels);
        ctx["clip"] = p.clip.display().to_string().into();
        if let Err(e) = self.record("accepted", ctx.clone()) {
            // Not accepted: nothing changed, and it may be sent again.
            st.replays.forget(&alert.sender, &alert.identifier);
            return Err(e);
        }
        tracing::warn!(seq, level = p.level, identifier = %alert.identifier, channels = p.channels.len(), "alert accepted");
        // Kept to put back on air after a restart; a failure to keep it does not keep it off
        // air now (it is logged and recorded).
        if let Err(e) = self.active.keep(seq, &alert, text, now, p.expires) {
            tracing::error!(seq, error = %e, "the alert cannot be kept for a restart");
            let _ = self.record("not_kept", json!({"seq": seq, "error": e.to_string()}));
        }
        st.board.admit(seq, alert, p, now);
        self.arbitrate(st, now);
        Ok(ctx)
    }

    /// An update replaces what the alert it references says, where it goes and until when;
    /// applied once its record is written.
    fn take_update(
        &self,
        st: &mut State,
        alert: Alert,
        text: &str,
        now: DateTime<Utc>,
        mut ctx: Value,
    ) -> Result<Accepted, Rejection> {
        let Some(seq) = st.board.referenced(&alert) else {
            return Err(self.refuse(
                reject(RejectKind::Invalid, "the update references no alert on air"),
                ctx,
            ));
        };
        let placed = st
            .board
            .place(&self.cfg, &alert, now, |id| self.media.clip(id));
        let p = match placed {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(reject(RejectKind::Invalid, e), ctx)),
        };
        let channels = st.board.channel_ids(&p.channels);
        view::place(&mut ctx, seq, p.level, p.expires, channels);
        if let Err(e) = self.record("updated", ctx.clone()) {
            st.replays.forget(&alert.sender, &alert.identifier);
            return Err(e);
        }
        if let Err(e) = self.active.update(seq, text, p.expires) {
            tracing::error!(seq, error = %e, "the alert's update cannot be kept for a restart");
        }
        st.board.update(seq, alert, p);
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
        let ended = st.board.cancel(alert);
        if ended.is_empty() {
            return Err(self.refuse(
                reject(RejectKind::Invalid, "the cancel references no alert on air"),
                ctx,
            ));
        }
        for l in &ended {
            self.end(&mut st.recent, l, "cancelled", now);
        }
        ctx["cancelled"] = ended.iter().map(|l| l.seq).collect::<Vec<_>>().into();
        self.record("cancel_accepted", ctx.clone())?;
        self.arbitrate(st, now);
        Ok(ctx)
    }

    /// Ends the alerts expired at `now` and writes the engine's on/off-air reports to the
    /// audit log; call it a few times a second.
    pub(crate) fn tick(&self, now: DateTime<Utc>) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        let ended = st.board.expire(now);
        for l in &ended {
            tracing::info!(seq = l.seq, "alert expired");
            self.end(&mut st.recent, l, "expired", now);
        }
        if !ended.is_empty() {
            self.arbitrate(st, now);
        }
        let rx = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(rx) = rx.as_ref() else { return };
        while let Ok(r) = rx.try_recv() {
            let Some(ch) = st.board.channel_at(r.station, r.program) else {
                continue;
            };
            let channel = ch.id.clone();
            let identifier = st.board.find(r.seq).map(|l| l.alert.identifier.clone());
            let sender = st.board.find(r.seq).map(|l| l.alert.sender.clone());
            let subject = format!("alert {}", r.seq);
            match r.kind {
                AirKind::OnAir {
                    first_packet_utc_ns,
                    presented_utc_ns,
                } => {
                    self.journal.mark(
                        crate::record::Mark::start(
                            crate::record::Kind::Override,
                            &channel,
                            "alert",
                            &subject,
                            format!(
                                "emergency alert {} on air",
                                identifier.as_deref().unwrap_or("?")
                            ),
                        )
                        .at(DateTime::from_timestamp_nanos(presented_utc_ns))
                        .actor(sender)
                        .on_air(Some("programme".to_owned()))
                        .detail(json!({"seq": r.seq, "identifier": identifier})),
                    );
                    let _ = self.record(
                        "on_air",
                        json!({"at_utc_ns": first_packet_utc_ns, "seq": r.seq, "identifier": identifier, "channel": channel,
                               "first_packet_utc_ns": first_packet_utc_ns, "presented_utc_ns": presented_utc_ns}),
                    );
                    st.board
                        .aired(r.seq, &channel, presented_utc_ns, first_packet_utc_ns);
                }
                AirKind::OffAir {
                    presented_until_utc_ns,
                } => {
                    self.journal.mark(
                        crate::record::Mark::end(
                            crate::record::Kind::Override,
                            &channel,
                            "alert",
                            &subject,
                            "the alert left the air",
                        )
                        .at(DateTime::from_timestamp_nanos(presented_until_utc_ns))
                        .on_air(Some("programme".to_owned())),
                    );
                    let _ = self.record(
                        "off_air",
                        json!({"at_utc_ns": presented_until_utc_ns, "seq": r.seq, "identifier": identifier, "channel": channel}),
                    );
                }
            }
        }
    }

    /// `GET /api/alerts`: the alerts on air or queued, and the last ones that ended.
    pub(crate) fn list(&self) -> Value {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        view::list(&st.board, &st.recent)
    }

    /// `POST /api/alerts/media`: a clip to air with a later alert (`resource` with `uri`
    /// `media:ID`). It must be a playable transport stream; kept under its content hash.
    /// (The API spools the body to disk as it comes: [`Desk::upload_spooled`].)
    #[cfg(test)]
    pub(crate) fn upload(&self, data: &[u8]) -> Result<Value, Rejection> {
        let spool = self.spool();
        std::fs::write(&spool, data).expect("a test writes its spool");
        self.upload_spooled(&spool, data.len() as u64)
    }

    /// Where an upload is spooled as it comes (then [`Desk::upload_spooled`]).
    pub(crate) fn spool(&self) -> std::path::PathBuf {
        self.media.spool()
    }

    /// [`Desk::upload`] of a clip spooled at `spool` (`len` bytes), within `[alerts]
    /// media_quota_mb`; the spool is gone afterwards.
    pub(crate) fn upload_spooled(
        &self,
        spool: &std::path::Path,
        len: u64,
    ) -> Result<Value, Rejection> {
        let stored = self.media.store_file(spool, self.cfg.media_quota_bytes);
        self.uploaded(stored, len)
    }

    /// An upload the disk refused while it was spooled: the `alert media` alarm, and the
    /// answer (507 when full), as for a clip that cannot be kept.
    pub(crate) fn spool_failed(&self, spool: &std::path::Path, e: std::io::Error) -> Rejection {
        let err = UploadError::Io(outfile::Error {
            path: spool.to_owned(),
            source: e,
        });
        match self.uploaded(Err(err), 0) {
            Err(r) => r,
            Ok(_) => reject(RejectKind::Internal, "storing the clip failed".to_owned()),
        }
    }

    fn uploaded(
        &self,
        stored: Result<media::Stored, UploadError>,
        len: u64,
    ) -> Result<Value, Rejection> {
        match stored {
            Ok(stored) => {
                self.media_alarm.clear("a clip was stored");
                let v = json!({"media": stored.uri, "bytes": len, "duration_s": stored.duration_ns as f64 / 1e9});
                let _ = self.record("media_stored", v.clone());
                Ok(v)
            }
            Err(UploadError::Io(e)) => {
                // Nothing was kept (no partial file); the answer names the file and the error.
                self.media_alarm
                    .raise(format!("cannot store an uploaded clip: {e}"));
                let kind = if e.is_full() {
                    RejectKind::InsufficientStorage
                } else {
                    RejectKind::Internal
                };
                Err(reject(
                    kind,
                    format!("storing the clip: {e}; nothing was kept"),
                ))
            }
            Err(UploadError::NotPlayable(why)) => Err(reject(
                RejectKind::Invalid,
                format!("not a playable transport stream: {why}"),
            )),
            Err(UploadError::Quota { kept, quota }) => Err(reject(
                RejectKind::InsufficientStorage,
                format!(
                    "the clips kept take {kept} bytes: this one ({len} bytes) would take them past alerts.media_quota_mb ({quota} bytes); nothing was kept"
                ),
            )),
        }
    }

    fn record(&self, event: &str, fields: Value) -> Result<(), Rejection> {
        let map = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        match self.audit.record(event, map) {
            Ok(()) => {
                self.audit_alarm.clear("a line was written");
                Ok(())
            }
            Err(e) => {
                let why = format!(
                    "the audit log {} cannot be written: {e}",
                    self.cfg.audit_log.display()
                );
                self.audit_alarm.raise(why.clone());
                Err(reject(RejectKind::Internal, why))
            }
        }
    }

    fn refuse(&self, r: Rejection, mut fields: Value) -> Rejection {
        fields["reason"] = r.reason.clone().into();
        fields["kind"] = r.kind.as_str().into();
        let _ = self.record("rejected", fields);
        tracing::warn!(kind = r.kind.as_str(), reason = %r.reason, "alert rejected");
        r
    }

    /// Records the end of alert `l` (`why`: cancelled, expired) and keeps its summary.
    fn end(&self, recent: &mut Recent, l: &Live, why: &str, now: DateTime<Utc>) {
        let _ = self.record(why, view::end_record(l));
        self.active.forget(l.seq);
        recent.push(l, why, now);
    }

    /// At start: the alerts that were on air or queued when the daemon stopped go back on
    /// air until their expiry (or a cancel); those expired meanwhile end. Each is recorded.
    pub(crate) fn restore(&self, now: DateTime<Utc>) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        let mut any = false;
        for kept in self.active.take_all() {
            let parse = |t: &str| {
                if t.trim_start().starts_with('<') {
                    epg::alert::parse_cap(t)
                } else {
                    epg::alert::parse_json(t)
                }
            };
            let Some(first) = kept.bodies.first() else {
                continue;
            };
            let alert = match parse(first) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(file = %kept.file.display(), error = %e, "a kept alert does not parse; not restored");
                    continue;
                }
            };
            if kept.expires <= now {
                self.active.rekey(&kept, None);
                let _ = self.record(
                    "expired",
                    json!({"identifier": alert.identifier, "sender": alert.sender, "while": "stopped"}),
                );
                continue;
            }
            let placed = st
                .board
                .place(&self.cfg, &alert, kept.accepted, |id| self.media.clip(id));
            let mut p = match placed {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(identifier = %alert.identifier, error = %e, "a kept alert cannot be placed (config changed?); not restored");
                    continue;
                }
            };
            p.expires = kept.expires;
            // Its number as it was (its EBM_id on air stays the same), else a new one.
            let seq = match kept.seq {
                Some(s) if st.board.find(s).is_none() => {
                    st.board.note_seq(s);
                    s
                }
                _ => st.board.take_seq(),
            };
            let identifier = alert.identifier.clone();
            let level = p.level;
            st.board.admit(seq, alert, p, kept.accepted);
            for body in &kept.bodies[1..] {
                let Ok(update) = parse(body) else { continue };
                if let Ok(mut p) = st
                    .board
                    .place(&self.cfg, &update, kept.accepted, |id| self.media.clip(id))
                {
                    p.expires = kept.expires;
                    st.board.update(seq, update, p);
                }
            }
            self.active.rekey(&kept, Some(seq));
            tracing::warn!(seq, level, identifier = %identifier, expires = %kept.expires.to_rfc3339(), "alert back on air after a restart");
            let _ = self.record(
                "restored",
                json!({"seq": seq, "identifier": identifier, "level": level, "expires": kept.expires.to_rfc3339()}),
            );
            any = true;
        }
        if any {
            self.arbitrate(st, now);
        }
    }

    /// Sends the stations what changed on air: the alert each channel now shows, or a
    /// clear, after which a channel of its own goes back to its schedule.
    fn arbitrate(&self, st: &mut State, now: DateTime<Utc>) {
        for decision in st.board.arbitrate() {
            match decision {
                Decision::Show { channel, seq } => {
                    let ch = &st.board.channels()[channel];
                    let Some(l) = st.board.find(seq) else {
                        continue;
                    };
                    self.sink.send_override(OverrideMsg::Show {
                        station: ch.station,
                        program: ch.program,
                        air: Arc::new(air::air_alert(&self.cfg, ch, l, now)),
                    });
                }
                Decision::Clear { channel } => {
                    let ch = &st.board.channels()[channel];
                    self.sink.send_override(OverrideMsg::Clear {
                        station: ch.station,
                        program: ch.program,
                    });
                    if ch.single {
                        let _ = self.returns.send(Wake::AlertEnded(ch.id.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
