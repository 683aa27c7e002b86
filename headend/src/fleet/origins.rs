//! Each station's origin, shared in etcd: `{prefix}origins/{station}` = the UTC instant of
//! the station's first datagram, the node that set it and a fingerprint of the station's
//! configuration. A station's bytes are a function of its configuration, its schedules, its
//! key material and the time since its origin, so every node that plays it from the same
//! origin sends the same TS and RTP: a takeover continues the stream, and two nodes can send
//! a SMPTE 2022-7 pair. A node starting later plays the station from the origin on a
//! simulated clock up to now (`crate::render::CaughtUp`) before it paces it.
//!
//! The first node to start a station sets its origin (created only where absent, no lease:
//! it outlives the nodes). A node whose configuration of the station differs (a changed
//! playlist, muxrate, PIDs, SI or scrambling) sets a new one: the station cannot be in step
//! with nodes that play something else. An origin older than `[fleet] catch_up` is not
//! caught up with (playing that far costs too much at a start): the node plays the station
//! from an origin of its own (half a second ahead, as if it were the first), not in step with
//! the others, and the log says so. Should it come to send the station, that origin becomes
//! the fleet's ([`publish`]): the nodes that start after it join it in step, and those still
//! on the old one know they are out of step (the agent compares).

use serde::{Deserialize, Serialize};

use super::etcd::Etcd;
use crate::config::{FleetConfig, KeySourceConfig};
use crate::station::StationSpec;

/// Origins are set on this grid (ns): a round instant in the logs.
const GRID_NS: i64 = 100_000_000;
/// How far ahead an origin is set: more than the engine's catch-up lead, so the node that
/// sets it starts the station there and sends its first datagram.
const LEAD_NS: i64 = 500_000_000;

/// How long a starting node keeps asking etcd for the stations' origins when calls fail (a
/// slow or briefly unreachable etcd): a station whose origin is not agreed starts on the
/// node's own clock, out of step with the others for as long as it runs.
const AGREE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) utc_ns: i64,
    pub(crate) node: String,
    pub(crate) config: String,
}

/// The origin a node plays a station from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Playing {
    /// UTC ns of the station's first datagram.
    pub(crate) utc_ns: i64,
    /// The station's configuration fingerprint.
    pub(crate) config: String,
    /// The node's own, not the fleet's (the fleet's was older than `catch_up`).
    pub(crate) own: bool,
}

/// Makes `playing` (the origin this node plays `station` from: one it sets, or one it sends
/// the station from) the fleet's origin of it, if the key is still at `mod_revision` (0:
/// absent): whether it was.
pub(crate) fn publish(
    etcd: &mut Etcd,
    cfg: &FleetConfig,
    station: &str,
    playing: &Playing,
    mod_revision: i64,
) -> Result<bool, String> {
    let key = format!("{}origins/{station}", cfg.prefix);
    let value = serde_json::to_vec(&Origin {
        utc_ns: playing.utc_ns,
        node: cfg.node.clone(),
        config: playing.config.clone(),
    })
    .map_err(|e| e.to_string())?;
    if mod_revision == 0 {
        etcd.create(&key, &value, 0)
    } else {
        etcd.put_if_unchanged(&key, &value, mod_revision)
    }
    .map_err(|e| e.to_string())
}

/// Whether `spec` plays the same bytes wherever it is played from its origin: a channel of
/// its own that plays files (a live input's data and a SimulCrypt ECMG's ECMs are not
/// known ahead) and whose scrambling keys, if any, come from the configuration.
pub(crate) fn replayable(spec: &StationSpec) -> bool {
    spec.single_channel().is_some_and(|ch| {
        ch.inputs.is_empty()
            && ch.scrambling.as_ref().is_none_or(|sc| {
                !matches!(
                    sc.keys,
                    KeySourceConfig::Simulcrypt(_) | KeySourceConfig::Random
                )
            })
    })
}

/// What of `spec` the bytes depend on, as 16 hex digits: everything but where it is sent,
/// recorded and preferred, which may differ between nodes.
fn fingerprint(spec: &StationSpec) -> String {
    let mut text = format!("{:?}", spec.mux);
    for ch in &spec.channels {
        let mut c = ch.clone();
        c.outputs.clear();
        c.archive = None;
        c.prefer.clear();
        text.push_str(&format!("{c:?}"));
    }
    format!("{:016x}", playout::rtp::digest(text.as_bytes()))
}

/// Each station's origin, by index in `specs`: read from etcd, or set there by this node
/// (half a second after `now_ns`, on a tenth of a second); for a station whose origin is
/// older than the catch-up limit, one of this node's own (the same instant, not written).
/// A failed call is tried again for up to [`AGREE_PATIENCE`] in all. `None` for a station
/// that is not replayable, or when etcd cannot be reached (logged: such a station starts on
/// this node's own clock).
pub(crate) fn origins(
    cfg: &FleetConfig,
    specs: &[StationSpec],
    now_ns: i64,
) -> Vec<Option<Playing>> {
    let mut etcd = match Etcd::new(&cfg.etcd, cfg.call_timeout()) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "fleet: cannot read the stations' origins: every station starts on this node's clock");
            return vec![None; specs.len()];
        }
    };
    let proposed = ((now_ns + LEAD_NS).div_euclid(GRID_NS) + 1) * GRID_NS;
    let patience = std::time::Instant::now() + AGREE_PATIENCE;
    specs
        .iter()
        .map(|spec| {
            if !replayable(spec) {
                return None;
            }
            let config = fingerprint(spec);
            let agreed = loop {
                match origin(&mut etcd, cfg, &spec.id, &config, proposed) {
                    Err(e) if std::time::Instant::now() < patience => {
                        tracing::info!(station = %spec.id, error = %e, "fleet: the station's origin not agreed yet: asking etcd again");
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    agreed => break agreed,
                }
            };
            match agreed {
                Ok(o) if now_ns - o > cfg.catch_up.as_nanos() as i64 => {
                    tracing::warn!(
                        station = %spec.id,
                        origin = %chrono::DateTime::from_timestamp_nanos(o).to_rfc3339(),
                        catch_up = ?cfg.catch_up,
                        own = %chrono::DateTime::from_timestamp_nanos(proposed).to_rfc3339(),
                        "fleet: the station's origin is older than the catch-up limit: this node plays it from an origin of its own, not in step with the other nodes (its origin becomes the fleet's should this node come to send it)"
                    );
                    Some(Playing {
                        utc_ns: proposed,
                        config,
                        own: true,
                    })
                }
                Ok(o) => Some(Playing {
                    utc_ns: o,
                    config,
                    own: false,
                }),
                Err(e) => {
                    tracing::warn!(station = %spec.id, error = %e, "fleet: cannot agree the station's origin: it starts on this node's clock");
                    None
                }
            }
        })
        .collect()
}

/// The origin of `spec` in etcd, set to `proposed` where absent or set for another
/// configuration.
fn origin(
    etcd: &mut Etcd,
    cfg: &FleetConfig,
    station: &str,
    config: &str,
    proposed: i64,
) -> Result<i64, String> {
    let key = format!("{}origins/{station}", cfg.prefix);
    let mine = Playing {
        utc_ns: proposed,
        config: config.to_owned(),
        own: false,
    };
    for _ in 0..3 {
        match etcd.get(&key).map_err(|e| e.to_string())? {
            None => {
                if publish(etcd, cfg, station, &mine, 0)? {
                    tracing::info!(station = %station, origin = %chrono::DateTime::from_timestamp_nanos(proposed).to_rfc3339(), "fleet: the station's origin is set");
                    return Ok(proposed);
                }
            }
            Some(kv) => {
                let theirs: Option<Origin> = serde_json::from_slice(&kv.value).ok();
                match theirs {
                    Some(o) if o.config == config => return Ok(o.utc_ns),
                    other => {
                        if publish(etcd, cfg, station, &mine, kv.mod_revision)? {
                            tracing::warn!(
                                station = %station,
                                previous_node = other.as_ref().map_or("?", |o| o.node.as_str()),
                                "fleet: the station's configuration differs from the one its origin was set for: a new origin is set (nodes still playing the old configuration are not in step with it)"
                            );
                            return Ok(proposed);
                        }
                    }
                }
            }
        }
    }
    Err(format!("{key}: changed under every attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_where_a_station_is_sent() {
        let text = |out: &str| {
            format!(
                "[[channel]]\nid = \"c\"\nservice_id = 1\nname = \"C\"\nmuxrate = \"2 Mbit/s\"\nplaylist = [\"a.ts\"]\n\
                 [[channel.output]]\nurl = \"{out}\"\n"
            )
        };
        let dir = std::path::Path::new("/tmp");
        let a = crate::config::parse(&text("udp://127.0.0.1:5000"), dir, "a.toml").unwrap();
        let b = crate::config::parse(&text("rtp://127.0.0.1:5002"), dir, "b.toml").unwrap();
        let (sa, sb) = (crate::station::specs(&a), crate::station::specs(&b));
        assert_eq!(fingerprint(&sa[0]), fingerprint(&sb[0]));
        let c = crate::config::parse(
            &text("udp://127.0.0.1:5000").replace("2 Mbit/s", "3 Mbit/s"),
            dir,
            "c.toml",
        )
        .unwrap();
        assert_ne!(
            fingerprint(&sa[0]),
            fingerprint(&crate::station::specs(&c)[0])
        );
        assert!(replayable(&sa[0]));
    }
}
