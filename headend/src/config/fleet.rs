//! `[fleet]`: head-ends sharing their channels through etcd (`crate::fleet`, docs/fleet.md).
//! Without the table a head-end runs alone, as before.

use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::HumanDuration;

/// Fleet mode (`[fleet]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FleetConfig {
    /// Key `etcd`: the etcd cluster's client URLs (`http://HOST:PORT`), 1..=9. Required.
    pub(crate) etcd: Vec<String>,
    /// Key `node`: this node's name in the fleet, unique: 1..=64 of `A-Za-z0-9._-`. Required.
    pub(crate) node: String,
    /// Key `capacity`: the most channels this node sends, 1..=10000. Default 300.
    pub(crate) capacity: usize,
    /// Key `lease`: the node's etcd lease, whole seconds, 1s..=60s. A dead node's channels
    /// are taken over about this long after it died; a node cut off from etcd stops sending
    /// a margin before it (a tenth, at least 200 ms). Default `"3s"`. Leases under etcd's
    /// minimum (about 1.5 election timeouts: 2 s with etcd's defaults) are lengthened by etcd.
    pub(crate) lease: Duration,
    /// Key `prefix`: where the fleet's keys live in etcd. Default `"/headend/"`.
    pub(crate) prefix: String,
    /// Key `api`: the URL other nodes and `hectl` reach this node's API at. Default
    /// `http://` and `[http] listen`.
    pub(crate) api: String,
    /// Key `catch_up`: how far back a station's origin may be for this node to play it from
    /// there at its start and join the other nodes in step (same bytes, same RTP;
    /// docs/fleet.md). Playing costs about 1.6 CPU-seconds per hour of a 6 Mbit/s channel
    /// (BENCHMARKS.md §16.3), and a start gives it 30 s. An older origin: the station plays
    /// from an origin of this node's own, not in step, which becomes the fleet's should this
    /// node come to send it. 0s..=7d. Default `"6h"`.
    pub(crate) catch_up: Duration,
    /// Key `standbys`: how many nodes keep each channel warm besides its owner: muxed in real
    /// time and listening to the owner's output, so that a takeover by one of them continues
    /// the stream without a gap (docs/fleet.md). The other nodes keep the channel dormant:
    /// muxed in bulk, a little ahead, with nothing sent, listened to or monitored, for a
    /// fraction of the CPU. 0..=16. Default 1.
    pub(crate) standbys: usize,
    /// Key `watch`: the `HOST:PORT` this node's beacon listens on: the other nodes hold a
    /// connection to it and take its channels over the moment it ends (its process died),
    /// instead of when its lease expires (docs/fleet.md). Default: the host of `api` when it
    /// is an IP address the others can dial (not loopback, not `0.0.0.0`), otherwise the
    /// address this node reaches etcd from, and a port the system picks; `"off"`: none
    /// (takeovers wait for the lease).
    pub(crate) watch: Watch,
}

/// Where a node's beacon listens (`[fleet] watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    /// None: the node's death is seen when its lease ends.
    Off,
    /// This address (port 0: one the system picks).
    At(std::net::SocketAddr),
    /// The address this node reaches etcd from, a port the system picks.
    FromEtcd,
}

impl FleetConfig {
    /// How long one etcd call may take: a third of the lease, at most 1 s.
    pub(crate) fn call_timeout(&self) -> Duration {
        (self.lease / 3).min(Duration::from_secs(1))
    }

    /// How long before the lease's end a node stops sending.
    pub(crate) fn margin(&self) -> Duration {
        (self.lease / 10).max(Duration::from_millis(200))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    etcd: Option<Vec<String>>,
    node: Option<String>,
    capacity: Option<i64>,
    lease: Option<HumanDuration>,
    prefix: Option<String>,
    api: Option<String>,
    catch_up: Option<HumanDuration>,
    standbys: Option<i64>,
    watch: Option<String>,
}

/// Converts `[fleet]`; `listen` is `[http] listen`. `None` iff an error was reported.
pub(super) fn fleet_config(
    value: toml::Value,
    listen: Option<std::net::SocketAddr>,
    diag: &mut Diagnostics,
) -> Option<FleetConfig> {
    let raw: RawFleet = match value.try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml("fleet", &err);
            return None;
        }
    };
    let before = diag.len();
    let etcd = raw.etcd.unwrap_or_default();
    if etcd.is_empty() || etcd.len() > 9 {
        diag.push(
            "fleet.etcd",
            "give 1 to 9 etcd client URLs, such as [\"http://127.0.0.1:2379\"]",
        );
    }
    for (i, url) in etcd.iter().enumerate() {
        let ok = url
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .is_some_and(|a| !a.is_empty() && !a.contains('/') && a.contains(':'));
        if !ok {
            diag.push(
                format!("fleet.etcd[{i}]"),
                format!("`{url}`: expected http://HOST:PORT"),
            );
        }
    }
    let node = raw.node.unwrap_or_default();
    if !(1..=64).contains(&node.len())
        || !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        diag.push(
            "fleet.node",
            format!("`{node}`: give this node's name, 1 to 64 of A-Z a-z 0-9 . _ -"),
        );
    }
    let capacity = raw.capacity.unwrap_or(300);
    if !(1..=10_000).contains(&capacity) {
        diag.push("fleet.capacity", format!("{capacity}: must be 1..=10000"));
    }
    let lease = raw.lease.map_or(Duration::from_secs(3), |d| d.0);
    if lease.subsec_nanos() != 0 || !(1..=60).contains(&lease.as_secs()) {
        diag.push(
            "fleet.lease",
            format!("{lease:?}: must be whole seconds, 1s..=60s"),
        );
    }
    let prefix = raw.prefix.unwrap_or_else(|| "/headend/".to_owned());
    if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2 {
        diag.push(
            "fleet.prefix",
            format!("`{prefix}`: must start and end with `/`, such as \"/headend/\""),
        );
    }
    let api = raw
        .api
        .or_else(|| listen.map(|l| format!("http://{l}")))
        .unwrap_or_default();
    let catch_up = raw.catch_up.map_or(Duration::from_secs(6 * 3600), |d| d.0);
    if catch_up > Duration::from_secs(7 * 86_400) {
        diag.push(
            "fleet.catch_up",
            format!("{catch_up:?}: must be at most 7 days"),
        );
    }
    let standbys = raw.standbys.unwrap_or(1);
    if !(0..=16).contains(&standbys) {
        diag.push("fleet.standbys", format!("{standbys}: must be 0..=16"));
    }
    let watch = match raw.watch.as_deref() {
        Some("off") => Watch::Off,
        Some(w) => match w.parse::<std::net::SocketAddr>() {
            Ok(a) if !a.ip().is_unspecified() && !a.ip().is_multicast() => Watch::At(a),
            _ => {
                diag.push(
                    "fleet.watch",
                    format!("`{w}`: give an address the other nodes reach, such as \"10.0.0.1:7600\", or \"off\""),
                );
                Watch::Off
            }
        },
        None => api_host(&api).map_or(Watch::FromEtcd, |ip| {
            Watch::At(std::net::SocketAddr::new(ip, 0))
        }),
    };
    (diag.len() == before).then_some(FleetConfig {
        etcd,
        node,
        capacity: capacity as usize,
        lease,
        prefix,
        api,
        catch_up,
        standbys: standbys as usize,
        watch,
    })
}

/// The IP address in API URL `api` (`http[s]://IP:PORT`), when it is one the other nodes can
/// dial (not a name, not `0.0.0.0` or `::`, not loopback: `[http] listen`'s default).
fn api_host(api: &str) -> Option<std::net::IpAddr> {
    let rest = api
        .strip_prefix("http://")
        .or_else(|| api.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let ip = authority
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .ok()?;
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}
