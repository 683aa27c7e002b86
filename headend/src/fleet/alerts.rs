//! Emergency alerts shared by a fleet: an alert message (CAP, with its signature) accepted by
//! any node's desk is written to `{prefix}alerts/{sha256 of the message}` ([`publish`]), and
//! every node's agent hands the messages it has not seen to its own desk ([`mirror`]), which
//! verifies the signature again and puts the alert on air on its channels of the target area.
//! So an alert pre-empts every channel of its area whichever node sends it, and stays on air
//! across a takeover. A message a desk had already (the node that took it, or a restart)
//! comes back as a replay and is left there; cancels and updates are messages like any other.
//! Each message is kept under a lease of its own that ends a day after its alert expires, so
//! etcd does not keep every alert ever sent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::etcd::Etcd;
use crate::alert::Desk;
use crate::config::FleetConfig;

/// A message as it was received.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The body, base64.
    body: String,
    key_id: Option<String>,
    signature: Option<String>,
}

/// How long a shared message stays in etcd after its alert expires (a node restarted within
/// it gets it back as a replay or an expired alert, both refused): then etcd drops it.
const KEPT_AFTER_EXPIRY_S: i64 = 86_400;
/// How long one without an expiry (a cancel) stays.
const KEPT_WITHOUT_EXPIRY_S: i64 = 7 * 86_400;

/// How long (s) etcd keeps a message whose alert expires at `expires`, from `now`: a day
/// after it expires, at least an hour, at most 30 days.
fn kept_for(
    expires: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> i64 {
    expires
        .map_or(KEPT_WITHOUT_EXPIRY_S, |e| {
            (e - now).num_seconds().max(0) + KEPT_AFTER_EXPIRY_S
        })
        .clamp(3_600, 30 * 86_400)
}

/// Writes an accepted message to the fleet, under a lease of its own that ends a day after
/// the alert expires (`expires`; a week for a message without one): etcd then drops it.
pub(crate) fn publish(
    cfg: &FleetConfig,
    body: &[u8],
    key_id: Option<&str>,
    signature: Option<&str>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), String> {
    let digest: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("{}alerts/{digest}", cfg.prefix);
    let value = serde_json::to_vec(&Message {
        body: B64.encode(body),
        key_id: key_id.map(str::to_owned),
        signature: signature.map(str::to_owned),
    })
    .map_err(|e| e.to_string())?;
    let mut etcd = Etcd::new(&cfg.etcd, cfg.call_timeout())?;
    let (lease, _) = etcd
        .grant(kept_for(expires, chrono::Utc::now()))
        .map_err(|e| e.to_string())?;
    etcd.put(&key, &value, lease).map_err(|e| e.to_string())
}

/// Hands `desk` the messages written at or after revision `since` (every one with 0): the
/// revision to look from next time.
pub(crate) fn mirror(
    etcd: &mut Etcd,
    prefix: &str,
    desk: &Desk,
    since: i64,
) -> Result<i64, String> {
    let base = format!("{prefix}alerts/");
    let (kvs, revision) = etcd.range_since(&base, since).map_err(|e| e.to_string())?;
    for kv in &kvs {
        let Some(m) = serde_json::from_slice::<Message>(&kv.value)
            .ok()
            .and_then(|m| Some((B64.decode(&m.body).ok()?, m)))
        else {
            tracing::warn!(key = %kv.key, "fleet: a shared alert message does not read; left out");
            continue;
        };
        let (body, m) = m;
        match desk.submit(
            &body,
            m.key_id.as_deref(),
            m.signature.as_deref(),
            chrono::Utc::now(),
        ) {
            Ok(_) => tracing::info!(key = %kv.key, "fleet: alert message from the fleet accepted"),
            Err(r) if r.kind == crate::alert::RejectKind::Replay => {}
            Err(r) => {
                tracing::info!(key = %kv.key, reason = %r.reason, "fleet: alert message from the fleet refused here")
            }
        }
    }
    Ok(revision + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_kept_a_day_past_its_alert() {
        let now = chrono::Utc::now();
        let h = chrono::Duration::hours;
        assert_eq!(kept_for(Some(now + h(2)), now), 2 * 3600 + 86_400);
        assert_eq!(kept_for(Some(now - h(2)), now), 86_400);
        assert_eq!(kept_for(None, now), 7 * 86_400);
        assert_eq!(kept_for(Some(now + h(24 * 60)), now), 30 * 86_400);
    }
}
