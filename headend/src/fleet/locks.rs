//! Input locks shared by a fleet: `{prefix}locks/{channel}` holds the input an operator
//! locked a live channel on (`hectl input lock`: an input's name, or `playlist`); no key, not
//! locked. The API of the node that took the order applies it at once and writes it here
//! ([`publish`]); every node's agent applies what changed to its own engine ([`Locks::apply`]),
//! so a node that takes a channel over keeps the operator's lock.

use std::collections::HashMap;

use super::etcd::{Etcd, Kv};
use crate::config::FleetConfig;
use crate::router::{InputAction, InputOrder, ScheduleSink};

/// A live channel: its station and its inputs' names, in config order.
#[derive(Clone, Debug)]
pub(crate) struct LiveChannel {
    pub(crate) channel: String,
    pub(crate) station: usize,
    pub(crate) inputs: Vec<String>,
}

/// Where the agent applies the fleet's locks.
pub(crate) struct Locks {
    pub(crate) sink: ScheduleSink,
    pub(crate) channels: Vec<LiveChannel>,
    /// What the fleet said of each channel last time (`None`: not locked), once read.
    seen: Option<HashMap<String, String>>,
}

impl Locks {
    pub(crate) fn new(sink: ScheduleSink, channels: Vec<LiveChannel>) -> Locks {
        Locks {
            sink,
            channels,
            seen: None,
        }
    }

    /// Applies the locks of `kvs` (the keys under `{prefix}locks/`) that changed since the last
    /// call; the first call applies the locks only (a channel not locked in the fleet is left
    /// as it is). Returns how many orders went to the engine.
    pub(crate) fn apply(&mut self, prefix: &str, kvs: &[Kv]) -> usize {
        let base = format!("{prefix}locks/");
        let now: HashMap<String, String> = kvs
            .iter()
            .filter_map(|kv| {
                let channel = kv.key.strip_prefix(&base)?;
                Some((
                    channel.to_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                ))
            })
            .collect();
        let mut sent = 0;
        for c in &self.channels {
            let want = now.get(&c.channel);
            let before = self.seen.as_ref().map(|s| s.get(&c.channel));
            let action = match (want, before) {
                (Some(w), Some(Some(b))) if w == b => continue,
                (Some(w), _) => {
                    let input = if w == "playlist" {
                        None
                    } else if let Some(i) = c.inputs.iter().position(|n| n == w) {
                        Some(i)
                    } else {
                        tracing::warn!(channel = %c.channel, input = %w, "fleet: a shared lock names an input this node does not have; left out");
                        continue;
                    };
                    InputAction::Lock(input)
                }
                (None, Some(Some(_))) => InputAction::Unlock,
                (None, _) => continue,
            };
            tracing::info!(channel = %c.channel, ?action, "fleet: input lock from the fleet");
            if self.sink.send_input(InputOrder {
                station: c.station,
                channel: c.channel.clone(),
                action,
            }) {
                sent += 1;
            }
        }
        self.seen = Some(now);
        sent
    }
}

/// Writes `action` on `channel` (an input's name, or `None` for the playlist) to the fleet:
/// a lock puts the key, an unlock deletes it, a switch leaves it.
pub(crate) fn publish(
    cfg: &FleetConfig,
    channel: &str,
    action: &InputAction,
    input: Option<&str>,
) -> Result<(), String> {
    let key = format!("{}locks/{channel}", cfg.prefix);
    let mut etcd = Etcd::new(&cfg.etcd, cfg.call_timeout())?;
    match action {
        InputAction::Lock(_) => etcd.put(&key, input.unwrap_or("playlist").as_bytes(), 0),
        InputAction::Unlock => etcd.delete(&key),
        InputAction::Switch(_) => return Ok(()),
    }
    .map_err(|e| e.to_string())
}
