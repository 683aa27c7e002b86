//! Schedules shared by a fleet: `{prefix}schedules/{channel}/{date}` holds each day's
//! current revision (the schedule file's text). A write through any node's API is agreed
//! here first ([`EtcdSchedules`]: compare-and-swap on the key's `mod_revision`, after checking
//! that the day it holds is at the revision the writer started from), then written to that
//! node's store; every node's agent copies what changed into its own store ([`mirror`]), where
//! its scheduler picks it up. So a node that takes a channel over plays the schedule as
//! edited through any node.

use chrono::NaiveDate;

use super::etcd::{Etcd, EtcdError};
use crate::config::FleetConfig;
use crate::schedule::store::{Shared, SharedRefusal, Store};

/// The key of `channel`'s `date`.
fn key(prefix: &str, channel: &str, date: NaiveDate) -> String {
    format!("{prefix}schedules/{channel}/{date}")
}

/// A store's writes agreed in etcd.
pub(crate) struct EtcdSchedules {
    pub(crate) cfg: FleetConfig,
}

impl Shared for EtcdSchedules {
    fn publish(
        &self,
        channel: &str,
        date: NaiveDate,
        expected: u64,
        text: &str,
    ) -> Result<(), SharedRefusal> {
        let unreachable = |e: EtcdError| SharedRefusal::Unreachable(e.to_string());
        let mut etcd = Etcd::new(&self.cfg.etcd, self.cfg.call_timeout())
            .map_err(SharedRefusal::Unreachable)?;
        let key = key(&self.cfg.prefix, channel, date);
        // Twice at most: a write in between is a conflict only if it changed the revision.
        for _ in 0..2 {
            let done = match etcd.get(&key).map_err(unreachable)? {
                None => etcd.create(&key, text.as_bytes(), 0).map_err(unreachable)?,
                Some(kv) => {
                    let current = revision_of(&kv.value);
                    if current != expected {
                        return Err(SharedRefusal::Conflict(current));
                    }
                    etcd.put_if_unchanged(&key, text.as_bytes(), kv.mod_revision)
                        .map_err(unreachable)?
                }
            };
            if done {
                return Ok(());
            }
        }
        let current = etcd
            .get(&key)
            .map_err(unreachable)?
            .map_or(0, |kv| revision_of(&kv.value));
        Err(SharedRefusal::Conflict(current))
    }
}

/// The revision of a schedule file's text (0 if it does not parse).
fn revision_of(text: &[u8]) -> u64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| epg::schedule::parse(t).ok())
        .map_or(0, |d| d.revision)
}

/// Copies into `store` the days changed in etcd at or after revision `since` (every day with
/// 0), those it does not have at that revision yet: the revision to look from next time, and
/// how many days were taken. A day that does not parse is skipped with a warning.
pub(crate) fn mirror(
    etcd: &mut Etcd,
    prefix: &str,
    store: &Store,
    since: i64,
) -> Result<(i64, usize), String> {
    let base = format!("{prefix}schedules/");
    let (kvs, revision) = etcd.range_since(&base, since).map_err(|e| e.to_string())?;
    let mut taken = 0;
    for kv in &kvs {
        let Some((channel, _)) = kv.key.strip_prefix(&base).and_then(|r| r.split_once('/')) else {
            continue;
        };
        let text = String::from_utf8_lossy(&kv.value);
        match epg::schedule::parse(&text) {
            Ok(day) => match store.mirror(channel, &day) {
                Ok(true) => {
                    taken += 1;
                    tracing::info!(%channel, date = %day.date, revision = day.revision, "fleet: schedule taken from the fleet");
                }
                Ok(false) => {}
                Err(e) => return Err(format!("{}: {e}", kv.key)),
            },
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "fleet: a shared schedule does not parse; left out");
            }
        }
    }
    Ok((revision + 1, taken))
}
