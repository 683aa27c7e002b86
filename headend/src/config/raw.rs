//! The raw layer: serde structs mirroring the TOML keys one to one, with
//! `deny_unknown_fields`. Semantic checks (ranges, uniqueness, defaults) happen in the
//! converters of the sibling modules; integers are `i64` here so that an out-of-range value
//! is reported with its allowed range instead of a serde type error.
//!
//! The `output` arrays of `[[channel]]` and `[[mpts]]` are split off before these structs
//! are deserialized, so each `[[channel.output]]` is deserialized (and its errors reported)
//! on its own.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::units::{self, Bitrate, HumanDuration};

/// `[http]`; see [`super::HttpConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// `listen`: socket address of the control API; default `[::1]:8080`.
    pub(super) listen: Option<SocketAddr>,
    /// `api_token`: bearer token for mutating API calls; default none (they are refused).
    pub(super) api_token: Option<String>,
    /// `max_connections`: default 1024, 1..=100000.
    pub(super) max_connections: Option<i64>,
    /// `max_connections_per_source`: default 256, 1..=100000.
    pub(super) max_connections_per_source: Option<i64>,
    /// `header_timeout`: default `"10s"`, 1s..=5m.
    pub(super) header_timeout: Option<HumanDuration>,
    /// `idle_timeout`: default `"60s"`, 5s..=1h.
    pub(super) idle_timeout: Option<HumanDuration>,
    /// `request_timeout`: default `"120s"`, 1s..=1h.
    pub(super) request_timeout: Option<HumanDuration>,
    /// `[[http.token]]`: named tokens with a role, each read from its own file.
    pub(super) token: Option<Vec<RawToken>>,
    /// `audit_log`: the API's audit trail; default `"api-audit.jsonl"`, relative to the
    /// config file.
    pub(super) audit_log: Option<PathBuf>,
}

/// `[[http.token]]`; see [`super::TokenConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) file: PathBuf,
    pub(super) role: String,
    pub(super) channels: Option<Vec<String>>,
}

/// `[management]`; see [`super::ManagementConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManagement {
    pub(super) listen: SocketAddr,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

/// `[schedules]`; see [`super::SchedulesConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedules {
    /// `dir`: default `"schedules"`, relative to the config file.
    pub(super) dir: Option<PathBuf>,
    /// `media_dir`: default the config file's directory.
    pub(super) media_dir: Option<PathBuf>,
}

/// `[engine]`; see [`super::EngineConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    /// `realtime_priority`: 0 (off) or 1..=99; default 10.
    pub(super) realtime_priority: Option<i64>,
    /// `threads`: 1..=64; default 2.
    pub(super) threads: Option<i64>,
}

/// One `[[channel]]` without its `output` array; see [`super::ChannelConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    /// `id`: required, `[a-z0-9_-]{1,32}`.
    pub(super) id: String,
    /// `service_id`: required, 1..=65535.
    pub(super) service_id: i64,
    /// `name`: required, 1..=64 bytes.
    pub(super) name: String,
    /// `provider`: default `""`, at most 64 bytes.
    pub(super) provider: Option<String>,
    /// `muxrate`: required, 100 kbit/s..=1 Gbit/s.
    #[serde(deserialize_with = "units::bitrate")]
    pub(super) muxrate: Bitrate,
    /// `transport_stream_id`: default 1, 0..=65535.
    pub(super) transport_stream_id: Option<i64>,
    /// `playlist`: required, non-empty.
    pub(super) playlist: Vec<PathBuf>,
    /// `[channel.pids]`: default [`super::PidPlan::default`].
    pub(super) pids: Option<RawPids>,
    /// `[channel.si]`: default [`super::channel::SiConfig::default`].
    pub(super) si: Option<RawSi>,
    /// `[channel.scrambling]`: checked by `super::scrambling`. Default none (clear).
    pub(super) scrambling: Option<toml::Value>,
    /// `[channel.archive]`: checked by `super::archive`. Default none (not recorded).
    pub(super) archive: Option<toml::Value>,
    /// `prefer`: fleet nodes that send it first. Default none.
    pub(super) prefer: Option<Vec<String>>,
    /// `pcr_interval`: default `"30ms"`, 5ms..=40ms.
    pub(super) pcr_interval: Option<HumanDuration>,
    /// `psi_interval`: default `"80ms"`, 10ms..=100ms.
    pub(super) psi_interval: Option<HumanDuration>,
    /// `mux_delay`: default `"500ms"`, 200ms..=10s.
    pub(super) mux_delay: Option<HumanDuration>,
    /// `clock_origin`: default 0, 0..2^33.
    pub(super) clock_origin: Option<i64>,
    /// `timezone`: IANA zone name; default `"UTC"`.
    pub(super) timezone: Option<String>,
    /// `filler`: media files for schedule gaps; default empty.
    pub(super) filler: Option<Vec<PathBuf>>,
    /// `[[channel.output]]`: always absent here (split off first); declared so that an
    /// unknown-key error lists `output` among the expected keys.
    #[serde(rename = "output")]
    pub(super) _output: Option<IgnoredAny>,
    /// `[[channel.input]]`: split off first, like `output`.
    #[serde(rename = "input")]
    pub(super) _input: Option<IgnoredAny>,
    /// `[channel.failover]`: split off first, like `output`.
    #[serde(rename = "failover")]
    pub(super) _failover: Option<IgnoredAny>,
}

/// `[channel.pids]`; every key defaults to the matching [`super::PidPlan::default`] value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPids {
    /// `pmt`: default 0x1000.
    pub(super) pmt: Option<i64>,
    /// `video`: default 0x100.
    pub(super) video: Option<i64>,
    /// `audio`: first of 15 PIDs, default 0x101.
    pub(super) audio: Option<i64>,
    /// `subtitle`: first of 8 PIDs, default 0x110.
    pub(super) subtitle: Option<i64>,
    /// `data`: first of 8 PIDs, default 0x120.
    pub(super) data: Option<i64>,
}

/// One `[[channel.output]]` or `[[mpts.output]]`; see [`super::OutputConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    /// `url`: required, `udp://address:port` or `rtp://address:port`.
    pub(super) url: String,
    /// `interface`: network interface name; required for IPv6 multicast.
    pub(super) interface: Option<String>,
    /// `hop_limit` (alias `ttl`): default 1 for multicast, 64 for unicast; 1..=255.
    #[serde(alias = "ttl")]
    pub(super) hop_limit: Option<i64>,
    /// `dscp`: default 0, 0..=63.
    pub(super) dscp: Option<i64>,
    /// `source`: local source address, same family as the destination.
    pub(super) source: Option<IpAddr>,
    /// `seamless`: default false; with a fleet, sent whether or not this node owns the
    /// channel (this node's path of a SMPTE 2022-7 pair).
    pub(super) seamless: Option<bool>,
}

/// One `[[mpts]]` without its `output` array; see [`super::MptsConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMpts {
    /// `id`: required, `[a-z0-9_-]{1,32}`, distinct from every channel and mpts id.
    pub(super) id: String,
    /// `transport_stream_id`: default 1, 0..=65535.
    pub(super) transport_stream_id: Option<i64>,
    /// `muxrate`: required, 100 kbit/s..=1 Gbit/s and at least the channels' sum.
    #[serde(deserialize_with = "units::bitrate")]
    pub(super) muxrate: Bitrate,
    /// `channels`: required, at least one channel id, no duplicates.
    pub(super) channels: Vec<String>,
    /// `[[mpts.output]]`: always absent here (split off first); declared so that an
    /// unknown-key error lists `output` among the expected keys.
    #[serde(rename = "output")]
    pub(super) _output: Option<IgnoredAny>,
}

/// `[channel.si]`; see [`super::channel::SiConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSi {
    pub(super) enabled: Option<bool>,
    pub(super) charset: Option<String>,
    pub(super) days: Option<i64>,
    pub(super) country: Option<String>,
    pub(super) original_network_id: Option<i64>,
    pub(super) profile: Option<String>,
    pub(super) lcn: Option<i64>,
    pub(super) xmltv_id: Option<String>,
    pub(super) xmltv: Option<PathBuf>,
}

/// `[network]`; see [`super::NetworkConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) network_id: Option<i64>,
    pub(super) name: String,
    pub(super) charset: Option<String>,
}
