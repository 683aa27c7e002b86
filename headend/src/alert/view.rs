//! What the desk shows outside: the kinds of refusal (the API picks the status code from
//! the kind), the JSON answered for an alert (the same object the audit log records), and
//! the JSON of `GET /api/alerts`.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use epg::alert::Alert;
use serde_json::{json, Value};

use super::policy::{Board, Live};

/// Ended alerts kept for `GET /api/alerts`.
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
    /// The audit log cannot be written: nothing is aired without its record. An upload
    /// that cannot be stored (a failing disk).
    Internal,
    /// An upload that cannot be stored: no space left.
    InsufficientStorage,
}

impl RejectKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RejectKind::Unauthenticated => "unauthenticated",
            RejectKind::Replay => "replay",
            RejectKind::Invalid => "invalid",
            RejectKind::Internal => "internal",
            RejectKind::InsufficientStorage => "insufficient_storage",
        }
    }
}

pub(super) fn reject(kind: RejectKind, reason: impl Into<String>) -> Rejection {
    Rejection {
        kind,
        reason: reason.into(),
    }
}

/// The record of a message as received: its size, SM3 digest and signing key id.
pub(super) fn received(body: &[u8], key_id: Option<&str>) -> Value {
    let digest = hex(&epg::alert::sign::sm3(body));
    json!({ "bytes": body.len(), "sm3": digest, "key_id": key_id })
}

/// Adds who sent the alert and what it is.
pub(super) fn identify(ctx: &mut Value, alert: &Alert) {
    ctx["sender"] = alert.sender.clone().into();
    ctx["identifier"] = alert.identifier.clone().into();
    ctx["msg_type"] = alert.msg_type.as_str().into();
    ctx["status"] = alert.status.as_str().into();
}

/// Adds where an accepted or updated alert goes.
pub(super) fn place(
    ctx: &mut Value,
    seq: u64,
    level: u8,
    expires: DateTime<Utc>,
    channels: Vec<String>,
) {
    ctx["seq"] = seq.into();
    ctx["level"] = level.into();
    ctx["expires"] = expires.to_rfc3339().into();
    ctx["channels"] = channels.into();
}

/// The audit record of an alert's end.
pub(super) fn end_record(l: &Live) -> Value {
    json!({"seq": l.seq, "identifier": l.alert.identifier, "sender": l.alert.sender})
}

/// Ended alerts, newest first, for `GET /api/alerts`.
#[derive(Default)]
pub(super) struct Recent(VecDeque<Value>);

impl Recent {
    /// Keeps the summary of alert `l`, ended at `now` (`why`: cancelled, expired).
    pub(super) fn push(&mut self, l: &Live, why: &str, now: DateTime<Utc>) {
        self.0.push_front(json!({
            "seq": l.seq,
            "identifier": l.alert.identifier,
            "sender": l.alert.sender,
            "headline": l.alert.headline(),
            "level": l.level,
            "accepted": l.accepted.to_rfc3339(),
            "ended": now.to_rfc3339(),
            "why": why,
            "on_air": aired(l),
        }));
        self.0.truncate(RECENT);
    }
}

/// `GET /api/alerts`: the alerts on air or queued, and the last ones that ended.
pub(super) fn list(board: &Board, recent: &Recent) -> Value {
    let active: Vec<Value> = board
        .live()
        .iter()
        .map(|l| {
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
                "channels": board.channel_ids(&l.channels),
                "on_air": board.showing(l.seq),
                "aired": aired(l),
            })
        })
        .collect();
    json!({ "active": active, "recent": recent.0 })
}

/// Where an alert went on air, and when.
fn aired(l: &Live) -> Vec<Value> {
    l.on_air
        .iter()
        .map(|(c, p, f)| json!({"channel": c, "presented_utc_ns": p, "first_packet_utc_ns": f}))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
