//! Typed head-end configuration: TOML → [`raw`] serde structs → validated [`Config`].
//!
//! [`parse`] turns one TOML document into a [`Config`], or into [`ConfigErrors`] listing
//! *every* problem found, each located by a key path such as `channel[1].muxrate`,
//! `channel[0].output[1].url` or `mpts[0].channels[2]`. The document is first parsed into a
//! `toml::Table` (a syntax error is the single error, with line and column); then each
//! `[[channel]]`, each `[[channel.output]]` and each `[[mpts]]` is deserialized on its own,
//! so an unknown key or a wrong type in one of them does not hide mistakes in the others.
//! Config-wide conflicts (ids, service_ids, destinations, PID plans inside an mpts) are
//! checked by [`claims`] as items are converted.
//!
//! Loading does no I/O besides reading the one file; [`missing_media`] checks the playlists
//! separately so `headend check-config` can print warnings. The operator reference is
//! `docs/config.md`: keep it in sync with the `///` docs of the typed structs.

mod alerts;
pub(crate) mod archive;
mod channel;
mod claims;
mod emmg;
mod error;
mod fleet;
mod input;
mod mpts;
mod output;
mod pids;
mod raw;
mod record;
mod scrambling;
mod units;

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use alerts::{areas_overlap, AlertsConfig, EmergencyTable};
pub(crate) use channel::ChannelConfig;
pub(crate) use emmg::EmmgConfig;
pub(crate) use error::{ConfigError, ConfigErrors};
pub(crate) use fleet::{FleetConfig, Watch};
pub(crate) use input::{
    percent_decode, read_ca, Endpoint, FailoverConfig, InputConfig, SrtEndpoint,
};
pub(crate) use mpts::MptsConfig;
#[allow(
    unused_imports,
    reason = "the outputs are sent by the real-time daemon (issue 3)"
)]
pub(crate) use output::{OutputConfig, OutputKind};
pub(crate) use pids::PidPlan;
pub(crate) use record::{RecordConfig, WebhookConfig, WebhookTarget};
pub(crate) use scrambling::{
    EcmKey, KeySourceConfig, OnFailure, ScramblingConfig, SimulcryptConfig, VersionChoice,
};
pub(crate) use units::{parse_duration, Bitrate};

use claims::Claims;
use error::Diagnostics;
use raw::{RawEngine, RawHttp, RawNetwork, RawSchedules};
use units::HumanDuration;

/// The validated configuration of one head-end process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Table `[http]`: the control API. Optional; defaults apply when absent.
    pub(crate) http: HttpConfig,
    /// Table `[management]`: the management plane on a listener of its own. Optional: without
    /// it the API and `/metrics` share `[http] listen` with the streams.
    pub(crate) management: Option<ManagementConfig>,
    /// Table `[engine]`: the real-time engine. Optional; defaults apply when absent.
    pub(crate) engine: EngineConfig,
    /// Table `[schedules]`: where schedule files live. Optional; defaults apply when absent.
    pub(crate) schedules: SchedulesConfig,
    /// Array `[[channel]]`: single-program services, in file order. Default empty.
    pub(crate) channels: Vec<ChannelConfig>,
    /// Array `[[mpts]]`: multi-program streams built from channels, in file order. Default
    /// empty.
    pub(crate) mpts: Vec<MptsConfig>,
    /// Table `[network]`: the DVB network the stations form; when present every station
    /// carries the NIT (PID 0x10). Default none.
    pub(crate) network: Option<NetworkConfig>,
    /// Table `[alerts]`: emergency alerts. Default none (alerts are refused).
    pub(crate) alerts: Option<AlertsConfig>,
    /// Table `[record]`: the stoppage record and its webhooks. Optional; defaults apply.
    pub(crate) record: RecordConfig,
    /// Table `[fleet]`: head-ends sharing their channels through etcd. Default none (this
    /// head-end sends every channel itself).
    pub(crate) fleet: Option<FleetConfig>,
    /// Array `[[emmg]]`: EMMGs whose EMMs go into the stations carrying their CAS. Default
    /// empty.
    pub(crate) emmgs: Vec<EmmgConfig>,
}

/// The DVB network (`[network]`): its NIT lists every transport stream (each `[[mpts]]`,
/// and each channel not carried in one) with its services and logical channel numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetworkConfig {
    /// Key `network_id`: 1..=65535. Default 1.
    pub(crate) network_id: u16,
    /// Key `name`: the network_name_descriptor. Required, 1..=64 bytes.
    pub(crate) name: String,
    /// Key `charset`: of the name, as `[channel.si] charset`. Default `"utf-8"`.
    pub(crate) charset: epg::si::Charset,
}

/// The control API (`[http]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpConfig {
    /// Key `listen`: TCP socket address to serve on, IPv4 or IPv6 (`"[::1]:8080"`,
    /// `"0.0.0.0:8080"`). Default `[::1]:8080`; port 0 picks a free port.
    pub(crate) listen: SocketAddr,
    /// Key `api_token`: the bearer token every mutating API call must carry
    /// (`Authorization: Bearer ...`), 16..=256 visible ASCII characters. Default none: mutating
    /// calls are refused. Never logged or shown.
    pub(crate) api_token: Option<Secret>,
    /// Key `max_connections`: connections open at once (players, the API, `/metrics`),
    /// 1..=100000. Default 1024. At the limit a new connection takes the place of the oldest
    /// idle one (no request in progress); with none idle it is answered 503 and closed. Both
    /// are counted and raise the `http` alarm (`GET /api/record`). The daemon raises its
    /// open-file limit to fit; if it cannot, the limit is lowered to what fits, with a
    /// warning.
    pub(crate) max_connections: usize,
    /// Key `max_connections_per_source`: connections open at once from one source address,
    /// 1..=100000. Default 256. Beyond, a new one is answered 503 and closed, counted
    /// (`refused_per_source`) and the `http` alarm raised: one address cannot take the
    /// places of every set-top box.
    pub(crate) max_connections_per_source: usize,
    /// Key `header_timeout`: how long a connection may take to send a whole request head,
    /// from its opening or its last answer, 1s..=5m. Default `"10s"`: a slow or idle client
    /// (slowloris) is closed and counted.
    pub(crate) header_timeout: Duration,
    /// Key `idle_timeout`: a connection that moves no byte either way for this long is
    /// closed (a player that stopped reading, a stalled upload), 5s..=1h. Default `"60s"`.
    pub(crate) idle_timeout: Duration,
    /// Key `request_timeout`: an API request's body must have arrived within this of its
    /// head, 1s..=1h; beyond, 408 with nothing changed (counted). Once arrived, a request is
    /// never cut short. Default `"120s"` (a clip upload on a slow link).
    /// Live channel streams have no such limit.
    pub(crate) request_timeout: Duration,
    /// Array `[[http.token]]`: named tokens, each with a role and optionally the channels it
    /// may act on; the token itself is in its own file (read at start: `crate::auth`). Once
    /// there is one, reading the API needs a token too (any role). Default none.
    pub(crate) tokens: Vec<TokenConfig>,
    /// Key `audit_log`: the audit trail of every change made through the API (who, from
    /// where, what, the revisions, the result; hash-chained: `hectl audit verify`). Default
    /// `"api-audit.jsonl"`, relative to the config file.
    pub(crate) audit_log: PathBuf,
}

/// The management plane (`[management]`): `/api/*`, `/metrics` and `/channels` on a
/// listener of their own, so they can sit on another interface than the set-top boxes'
/// streams; `[http] listen` then serves the streams, the playlist and the guide only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ManagementConfig {
    /// Key `listen`: its socket address. Required.
    pub(crate) listen: SocketAddr,
    /// Keys `tls_cert` and `tls_key`: PEM files (the certificate chain, its private key),
    /// relative to the config file, read again when they change; TLS 1.3 and 1.2 only.
    /// Required unless `listen` is a loopback address.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// What a caller of the control API may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Read the API (schedules, status, the record, `/channels`).
    Viewer,
    /// Read, and write the schedules of its channels.
    Scheduler,
    /// Read, and send emergency alerts (`/api/alerts`).
    Emergency,
    /// Read, and give input orders to its channels.
    Operator,
    /// Everything but alerts (they are the emergency role's alone).
    Admin,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Scheduler => "scheduler",
            Role::Emergency => "emergency",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One `[[http.token]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenConfig {
    /// Key `name`: who acts with it (on the record and in logs), 1..=64 of `A-Za-z0-9._-`,
    /// unique. Required.
    pub(crate) name: String,
    /// Key `file`: the file holding the token (16..=256 visible ASCII characters; a final
    /// newline is ignored), relative to the config file; it must not be readable or
    /// writable by group or others (mode 0600 or 0400). Required.
    pub(crate) file: PathBuf,
    /// Key `role`: `viewer`, `scheduler`, `emergency`, `operator` or `admin`. Required.
    pub(crate) role: Role,
    /// Key `channels`: the channel ids a `scheduler` or `operator` may act on. Default all.
    pub(crate) channels: Option<Vec<String>>,
}

/// A secret string: compared in constant time, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// A secret read from elsewhere (a token file).
    pub(crate) fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, to send it (a webhook's bearer token); never to log.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in time independent of where they differ.
    pub(crate) fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
        }
        diff == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Schedule files (`[schedules]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SchedulesConfig {
    /// Key `dir`: the directory the daemon keeps schedule files in
    /// (`{dir}/{channel}/{date}.toml`). Default `"schedules"`, relative to the config file.
    pub(crate) dir: PathBuf,
    /// Key `media_dir`: the directory the file names in schedules are relative to. Default
    /// the config file's directory.
    pub(crate) media_dir: PathBuf,
}

/// The real-time engine (`[engine]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EngineConfig {
    /// Key `realtime_priority`: SCHED_FIFO priority of the pacing thread, 1..=99, or 0 for
    /// the normal scheduler. Default 10: above every normal thread, so a busy machine does
    /// not delay datagrams; below the kernel's own real-time threads (usually 50 and up).
    /// Needs root or CAP_SYS_NICE; without it the engine logs a warning and runs normally.
    pub(crate) realtime_priority: u8,
    /// Key `threads`: engine threads, 1..=64; stations are dealt among them round-robin.
    /// Default 2: each wake-up has half as much to send, so datagrams leave closer to their
    /// due times (on 2 cores, 300 channels hold a 0.3 ms p99 instead of up to 1.3 ms; see
    /// BENCHMARKS.md), at the same total CPU. More spread larger loads over more cores.
    pub(crate) threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            realtime_priority: 10,
            threads: 2,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv6Addr::LOCALHOST, 8080)),
            api_token: None,
            max_connections: 1024,
            max_connections_per_source: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            tokens: Vec::new(),
            audit_log: PathBuf::from(DEFAULT_API_AUDIT),
        }
    }
}

/// `[http] audit_log` by default, relative to the config file.
const DEFAULT_API_AUDIT: &str = "api-audit.jsonl";

/// Where a service manager keeps the daemon's state and logs (systemd's `StateDirectory=`
/// and `LogsDirectory=`, given as `$STATE_DIRECTORY` and `$LOGS_DIRECTORY`): the default
/// places of what the daemon writes go there instead of beside the config file (schedules,
/// uploaded alert clips and the stoppage record in the state directory; the alert and API
/// audit logs in the logs directory). Paths the config names stay relative to it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceDirs {
    pub(crate) state: Option<PathBuf>,
    pub(crate) logs: Option<PathBuf>,
}

impl ServiceDirs {
    /// From `$STATE_DIRECTORY` and `$LOGS_DIRECTORY` (the first of a `:`-separated list).
    pub(crate) fn from_env() -> ServiceDirs {
        let dir = |var| {
            std::env::var_os(var)
                .and_then(|v| {
                    v.to_str()
                        .map(|s| s.split(':').next().unwrap_or("").to_owned())
                })
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        ServiceDirs {
            state: dir("STATE_DIRECTORY"),
            logs: dir("LOGS_DIRECTORY"),
        }
    }

    fn state<'a>(&'a self, base_dir: &'a Path) -> &'a Path {
        self.state.as_deref().unwrap_or(base_dir)
    }

    fn logs<'a>(&'a self, base_dir: &'a Path) -> &'a Path {
        self.logs.as_deref().unwrap_or(base_dir)
    }
}

/// Reads and validates the config file at `path`. Relative playlist entries are resolved
/// against the file's directory; errors name the file as `path` is written.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: file_name.clone(),
            path: String::new(),
            message: format!("cannot read the config file: {err}"),
        }])
    })?;
    parse_in(
        &text,
        path.parent().unwrap_or(Path::new("")),
        &ServiceDirs::from_env(),
        &file_name,
    )
}

/// Validates the TOML document `text`. Relative playlist entries are resolved against
/// `base_dir`; errors name the file as `file_name`. Does no I/O.
pub(crate) fn parse(text: &str, base_dir: &Path, file_name: &str) -> Result<Config, ConfigErrors> {
    parse_in(text, base_dir, &ServiceDirs::default(), file_name)
}

/// [`parse`], with the defaults of what the daemon writes in `dirs` when given.
pub(crate) fn parse_in(
    text: &str,
    base_dir: &Path,
    dirs: &ServiceDirs,
    file_name: &str,
) -> Result<Config, ConfigErrors> {
    let mut diag = Diagnostics::new(file_name);
    let mut document = match text.parse::<toml::Table>() {
        Ok(document) => document,
        Err(err) => {
            diag.syntax(text, &err);
            return Err(diag.finish());
        }
    };
    let http = document.remove("http");
    let engine = document.remove("engine");
    let schedules = document.remove("schedules");
    let channel_items = document.remove("channel");
    let mpts_items = document.remove("mpts");
    let network = document.remove("network");
    let alerts = document.remove("alerts");
    let management = document.remove("management");
    let record = document.remove("record");
    let fleet = document.remove("fleet");
    let emmg_items = document.remove("emmg");
    for key in document.keys() {
        diag.push(
            key.escape_debug().to_string(),
            format!(
                "unknown key `{}`, expected one of `http`, `engine`, `schedules`, `network`, `alerts`, `record`, `fleet`, `channel`, `mpts`, `emmg`",
                key.escape_debug()
            ),
        );
    }
    let http = http_config(http, base_dir, dirs, &mut diag);
    let management = management.map(|v| management_config(v, base_dir, &mut diag));
    let engine = engine_config(engine, &mut diag);
    let schedules = schedules_config(schedules, base_dir, dirs, &mut diag);
    let network = network.map(|v| network_config(v, &mut diag));
    let record = record::record_config(record, base_dir, dirs.state(base_dir), &mut diag);
    let fleet = fleet.map(|v| fleet::fleet_config(v, http.as_ref().map(|h| h.listen), &mut diag));
    let mut claims = Claims::default();
    let channels: Vec<Option<ChannelConfig>> = tables(channel_items, "channel", &mut diag)
        .into_iter()
        .map(|(path, table)| {
            table.and_then(|t| {
                channel::channel(
                    t,
                    &path,
                    base_dir,
                    dirs.state(base_dir),
                    &mut diag,
                    &mut claims,
                )
            })
        })
        .collect();
    let mpts: Vec<Option<MptsConfig>> = tables(mpts_items, "mpts", &mut diag)
        .into_iter()
        .map(|(path, table)| table.and_then(|t| mpts::mpts(t, &path, &mut diag, &mut claims)))
        .collect();
    let emmgs: Vec<Option<EmmgConfig>> = tables(emmg_items, "emmg", &mut diag)
        .into_iter()
        .map(|(path, table)| table.and_then(|t| emmg::emmg(t, &path, &mut diag)))
        .collect();
    if !diag.is_empty() {
        return Err(diag.finish());
    }
    let emmgs: Vec<EmmgConfig> = emmgs.into_iter().flatten().collect();
    let channels: Option<Vec<ChannelConfig>> = channels.into_iter().collect();
    let mpts: Option<Vec<MptsConfig>> = mpts.into_iter().collect();
    let mut alerts_cfg = None;
    if let (Some(channels), Some(mpts)) = (&channels, &mpts) {
        check_network(channels, mpts, network.as_ref(), &mut diag);
        check_ecm_pids(channels, mpts, &mut diag);
        emmg::check(&emmgs, channels, mpts, &mut diag);
        for (i, c) in channels.iter().enumerate() {
            if !c.prefer.is_empty() && fleet.is_none() {
                diag.push(
                    format!("channel[{i}].prefer"),
                    "goes with [fleet] (the nodes a channel is sent from first)",
                );
            }
        }
        alerts_cfg = alerts.and_then(|v| {
            alerts::alerts_config(
                v,
                base_dir,
                (dirs.state(base_dir), dirs.logs(base_dir)),
                channels,
                &mut diag,
            )
        });
        // One secret, two roles: the admin token would be taken first and the alerts
        // refused (an admin may not send alerts).
        if let (Some(http), Some(a)) = (&http, &alerts_cfg) {
            if http
                .api_token
                .as_ref()
                .is_some_and(|t| t.matches(a.token.expose()))
            {
                diag.push(
                    "alerts.token",
                    "is the same as http.api_token: give each its own secret",
                );
            }
        }
        if let Some(http) = &http {
            for (i, t) in http.tokens.iter().enumerate() {
                for c in t.channels.iter().flatten() {
                    if !channels.iter().any(|ch| &ch.id == c) {
                        diag.push(
                            format!("http.token[{i}].channels"),
                            format!("no channel `{c}`"),
                        );
                    }
                }
            }
        }
        if !diag.is_empty() {
            return Err(diag.finish());
        }
    }
    if matches!(fleet, Some(None)) {
        return Err(diag.finish());
    }
    match (
        http, management, engine, schedules, channels, mpts, network, record,
    ) {
        (
            Some(http),
            management @ (None | Some(Some(_))),
            Some(engine),
            Some(schedules),
            Some(channels),
            Some(mpts),
            network @ (None | Some(Some(_))),
            Some(record),
        ) => Ok(Config {
            http,
            management: management.flatten(),
            engine,
            schedules,
            channels,
            mpts,
            network: network.flatten(),
            alerts: alerts_cfg,
            record,
            fleet: fleet.flatten(),
            emmgs,
        }),
        _ => {
            // Unreachable by construction: converters return `None` only after reporting.
            diag.push("", "internal error: an item was rejected without a reason");
            Err(diag.finish())
        }
    }
}

/// What a file that is not a regular file is, or `None` for a regular one.
pub(crate) fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// Playlist entries that are not existing regular files, as (`channel[0].playlist[2]`, path,
/// what is wrong: "not found", "a FIFO"...); for `headend check-config` warnings. Checks the
/// file system, unlike [`load`].
pub(crate) fn missing_media(config: &Config) -> Vec<(String, PathBuf, String)> {
    let problem = |p: &Path| match std::fs::metadata(p) {
        Ok(meta) => not_regular(&meta).map(|w| format!("{w}, not a media file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("not found".to_owned()),
        Err(e) => Some(format!("cannot be read: {e}")),
    };
    let mut missing = Vec::new();
    for (i, channel) in config.channels.iter().enumerate() {
        for (j, entry) in channel.playlist.iter().enumerate() {
            if let Some(why) = problem(entry) {
                missing.push((format!("channel[{i}].playlist[{j}]"), entry.clone(), why));
            }
        }
        for (j, entry) in channel.filler.iter().enumerate() {
            if let Some(why) = problem(entry) {
                missing.push((format!("channel[{i}].filler[{j}]"), entry.clone(), why));
            }
        }
    }
    missing
}

const MUXRATE_MIN: Bitrate = Bitrate::from_bps(100_000);
const MUXRATE_MAX: Bitrate = Bitrate::from_bps(1_000_000_000);

fn http_config(
    value: Option<toml::Value>,
    base_dir: &Path,
    dirs: &ServiceDirs,
    diag: &mut Diagnostics,
) -> Option<HttpConfig> {
    let Some(value) = value else {
        return Some(HttpConfig {
            audit_log: dirs.logs(base_dir).join(DEFAULT_API_AUDIT),
            ..HttpConfig::default()
        });
    };
    if !value.is_table() {
        diag.push(
            "http",
            format!("expected a table (`[http]`), found {}", value.type_str()),
        );
        return None;
    }
    match value.try_into::<RawHttp>() {
        Ok(raw) => {
            let api_token = match raw.api_token {
                None => Some(None),
                Some(t) => bearer_token(t, "http.api_token", diag).map(Some),
            };
            let d = HttpConfig::default();
            let s = Duration::from_secs;
            let before = diag.len();
            let mut time = |v: Option<HumanDuration>, key: &str, default, min, max| {
                let t = v.map_or(default, |t| t.0);
                if t < min || t > max {
                    diag.push(
                        format!("http.{key}"),
                        format!("{t:?} is out of range {min:?}..={max:?}"),
                    );
                }
                t
            };
            let header_timeout = time(
                raw.header_timeout,
                "header_timeout",
                d.header_timeout,
                s(1),
                s(300),
            );
            let idle_timeout = time(
                raw.idle_timeout,
                "idle_timeout",
                d.idle_timeout,
                s(5),
                s(3600),
            );
            let request_timeout = time(
                raw.request_timeout,
                "request_timeout",
                d.request_timeout,
                s(1),
                s(3600),
            );
            let tokens = tokens_config(raw.token.unwrap_or_default(), base_dir, diag);
            let max_connections = raw.max_connections.unwrap_or(d.max_connections as i64);
            if !(1..=100_000).contains(&max_connections) {
                diag.push(
                    "http.max_connections",
                    format!("{max_connections} is out of range 1..=100000"),
                );
            }
            let per_source = raw
                .max_connections_per_source
                .unwrap_or(d.max_connections_per_source as i64);
            if !(1..=100_000).contains(&per_source) {
                diag.push(
                    "http.max_connections_per_source",
                    format!("{per_source} is out of range 1..=100000"),
                );
            }
            if diag.len() > before {
                return None;
            }
            Some(HttpConfig {
                listen: raw.listen.unwrap_or(d.listen),
                api_token: api_token?,
                max_connections: max_connections as usize,
                max_connections_per_source: per_source as usize,
                header_timeout,
                idle_timeout,
                request_timeout,
                tokens,
                audit_log: match raw.audit_log {
                    Some(p) => base_dir.join(p),
                    None => dirs.logs(base_dir).join(DEFAULT_API_AUDIT),
                },
            })
        }
        Err(err) => {
            diag.toml("http", &err);
            None
        }
    }
}

/// `[management]`.
fn management_config(
    value: toml::Value,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<ManagementConfig> {
    let raw = match value.try_into::<raw::RawManagement>() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml("management", &err);
            return None;
        }
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(c), Some(k)) => Some((base_dir.join(c), base_dir.join(k))),
        (None, None) => None,
        (c, _) => {
            let missing = if c.is_some() { "tls_key" } else { "tls_cert" };
            diag.push(
                format!("management.{missing}"),
                "tls_cert and tls_key go together",
            );
            return None;
        }
    };
    if tls.is_none() && !raw.listen.ip().is_loopback() {
        diag.push(
            "management.listen",
            format!(
                "{} is not a loopback address: the management plane needs TLS there (tls_cert, tls_key)",
                raw.listen
            ),
        );
        return None;
    }
    Some(ManagementConfig {
        listen: raw.listen,
        tls,
    })
}

/// `[[http.token]]` entries, each checked (the files are read at start).
fn tokens_config(
    raw: Vec<raw::RawToken>,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Vec<TokenConfig> {
    let mut out: Vec<TokenConfig> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = |key: &str| format!("http.token[{i}].{key}");
        let name_ok = (1..=64).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            diag.push(
                at("name"),
                format!("`{}`: 1..=64 of A-Za-z0-9._-", t.name.escape_debug()),
            );
        } else if out.iter().any(|o| o.name == t.name) {
            diag.push(at("name"), format!("`{}` is named twice", t.name));
        }
        let role = match t.role.as_str() {
            "viewer" => Role::Viewer,
            "scheduler" => Role::Scheduler,
            "emergency" => Role::Emergency,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            other => {
                diag.push(
                    at("role"),
                    format!(
                        "`{}`: one of viewer, scheduler, emergency, operator, admin",
                        other.escape_debug()
                    ),
                );
                Role::Viewer
            }
        };
        if t.channels.is_some() && !matches!(role, Role::Scheduler | Role::Operator) {
            diag.push(
                at("channels"),
                format!(
                    "only a scheduler or an operator token is limited to channels, not a {} token",
                    role.name()
                ),
            );
        }
        out.push(TokenConfig {
            name: t.name,
            file: base_dir.join(t.file),
            role,
            channels: t.channels,
        });
    }
    out
}

/// A bearer token from the config: 16..=256 visible ASCII characters. The value itself is
/// never repeated in the message.
pub(in crate::config) fn bearer_token(
    t: String,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<Secret> {
    if (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(Secret(t));
    }
    diag.push(
        path,
        format!(
            "must be 16..=256 visible ASCII characters (got {} bytes)",
            t.len()
        ),
    );
    None
}

fn network_config(value: toml::Value, diag: &mut Diagnostics) -> Option<NetworkConfig> {
    let raw = match value {
        v if v.is_table() => match v.try_into::<RawNetwork>() {
            Ok(raw) => raw,
            Err(err) => {
                diag.toml("network", &err);
                return None;
            }
        },
        v => {
            diag.push(
                "network",
                format!("expected a table (`[network]`), found {}", v.type_str()),
            );
            return None;
        }
    };
    let before = diag.len();
    let network_id = diag.ranged(
        "network.network_id".to_owned(),
        raw.network_id.unwrap_or(1),
        1u16..=65535,
    );
    if raw.name.trim().is_empty() || raw.name.len() > 64 {
        diag.push("network.name", "must be 1 to 64 bytes of visible text");
    }
    let charset = channel::charset(raw.charset.as_deref(), "network.charset", diag);
    if let Err(e) = epg::si::encode_text(&raw.name, charset, 255) {
        diag.push("network.name", e.to_string());
    }
    (diag.len() == before).then_some(NetworkConfig {
        network_id: network_id?,
        name: raw.name,
        charset,
    })
}

/// Scrambled channels sharing an MPTS need their own ECM PIDs (one ECM stream per PID).
fn check_ecm_pids(channels: &[ChannelConfig], mpts: &[MptsConfig], diag: &mut Diagnostics) {
    for m in mpts {
        let mut seen: Vec<(u16, &str)> = Vec::new();
        for id in &m.channels {
            let Some((i, ch)) = channels.iter().enumerate().find(|(_, c)| &c.id == id) else {
                continue;
            };
            let Some(sc) = &ch.scrambling else { continue };
            for (pid, _) in sc.ecm_streams() {
                match seen.iter().find(|(p, _)| *p == pid) {
                    Some((_, other)) => diag.push(
                        format!("channel[{i}].scrambling.ecm_pid"),
                        format!(
                            "0x{pid:04X} is also channel `{other}`'s ECM PID in mpts `{}`",
                            m.id
                        ),
                    ),
                    None => seen.push((pid, &ch.id)),
                }
            }
        }
    }
}

/// Config-wide SI checks: logical channel numbers are unique; with a `[network]`, the
/// transport streams its NIT lists (each mpts, each channel not in one) have distinct
/// transport_stream_id/original_network_id pairs.
fn check_network(
    channels: &[ChannelConfig],
    mpts: &[MptsConfig],
    network: Option<&Option<NetworkConfig>>,
    diag: &mut Diagnostics,
) {
    let mut lcns: HashMap<u16, usize> = HashMap::new();
    for (i, ch) in channels.iter().enumerate() {
        if let Some(lcn) = ch.si.lcn {
            if let Some(first) = lcns.insert(lcn, i) {
                lcns.insert(lcn, first);
                diag.push(
                    format!("channel[{i}].si.lcn"),
                    format!("logical channel number {lcn} is already used by channel[{first}]"),
                );
            }
        }
    }
    if !matches!(network, Some(Some(_))) {
        return;
    }
    let mut streams: HashMap<(u16, u16), String> = HashMap::new();
    for (i, m) in mpts.iter().enumerate() {
        let onid = channels
            .iter()
            .find(|c| m.channels.first() == Some(&c.id))
            .map_or(1, |c| c.si.original_network_id);
        let path = format!("mpts[{i}].transport_stream_id");
        if let Some(first) = streams.insert((m.transport_stream_id, onid), path.clone()) {
            diag.push(
                path,
                format!("the NIT lists {first} with the same transport_stream_id"),
            );
        }
    }
    for (i, ch) in channels.iter().enumerate() {
        if mpts.iter().any(|m| m.channels.contains(&ch.id)) {
            continue;
        }
        let path = format!("channel[{i}].transport_stream_id");
        let key = (ch.transport_stream_id, ch.si.original_network_id);
        if let Some(first) = streams.insert(key, path.clone()) {
            diag.push(
                path,
                format!(
                    "{} again: with [network], each transport stream in the NIT needs its own (the same as {first})",
                    key.0
                ),
            );
        }
    }
}

fn schedules_config(
    value: Option<toml::Value>,
    base_dir: &Path,
    dirs: &ServiceDirs,
    diag: &mut Diagnostics,
) -> Option<SchedulesConfig> {
    let raw = match value {
        None => RawSchedules::default(),
        Some(v) if v.is_table() => match v.try_into::<RawSchedules>() {
            Ok(raw) => raw,
            Err(err) => {
                diag.toml("schedules", &err);
                return None;
            }
        },
        Some(v) => {
            diag.push(
                "schedules",
                format!("expected a table (`[schedules]`), found {}", v.type_str()),
            );
            return None;
        }
    };
    let dir = match raw.dir {
        Some(d) if d.as_os_str().is_empty() => {
            diag.push("schedules.dir", "empty path");
            return None;
        }
        Some(d) => base_dir.join(d),
        None => dirs.state(base_dir).join("schedules"),
    };
    let media_dir = base_dir.join(raw.media_dir.unwrap_or_default());
    Some(SchedulesConfig { dir, media_dir })
}

fn engine_config(value: Option<toml::Value>, diag: &mut Diagnostics) -> Option<EngineConfig> {
    let Some(value) = value else {
        return Some(EngineConfig::default());
    };
    if !value.is_table() {
        diag.push(
            "engine",
            format!("expected a table (`[engine]`), found {}", value.type_str()),
        );
        return None;
    }
    match value.try_into::<RawEngine>() {
        Ok(raw) => {
            let default = EngineConfig::default();
            let realtime_priority = match raw.realtime_priority {
                None => Some(default.realtime_priority),
                Some(p) => diag.ranged("engine.realtime_priority".to_owned(), p, 0u8..=99),
            };
            let threads = match raw.threads {
                None => Some(default.threads),
                Some(t) => diag
                    .ranged("engine.threads".to_owned(), t, 1u8..=64)
                    .map(usize::from),
            };
            Some(EngineConfig {
                realtime_priority: realtime_priority?,
                threads: threads?,
            })
        }
        Err(err) => {
            diag.toml("engine", &err);
            None
        }
    }
}

/// Splits an array of tables (`[[channel]]`) at `path` into its elements with their paths
/// (`channel[0]`, ...). A non-table element, or a value that is not an array, is reported
/// and yields `None` in its place.
fn tables(
    value: Option<toml::Value>,
    path: &str,
    diag: &mut Diagnostics,
) -> Vec<(String, Option<toml::Table>)> {
    // `channel[0].output` is written `[[channel.output]]`.
    let mut header = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => header.push(c),
            _ => {}
        }
    }
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            diag.push(
                path,
                format!(
                    "expected an array of tables (`[[{header}]]`), found {}",
                    other.type_str()
                ),
            );
            return vec![(path.to_owned(), None)];
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            match item {
                toml::Value::Table(table) => (item_path, Some(table)),
                other => {
                    diag.push(
                        &item_path,
                        format!("expected a table, found {}", other.type_str()),
                    );
                    (item_path, None)
                }
            }
        })
        .collect()
}

/// Channel and mpts ids: `[a-z0-9_-]{1,32}`.
fn check_id(id: &str, item_path: &str, diag: &mut Diagnostics) {
    check_name(id, &format!("{item_path}.id"), diag);
}

/// Checks an id-like name (`[a-z0-9_-]{1,32}`) at `path`.
fn check_name(id: &str, path: &str, diag: &mut Diagnostics) {
    let valid = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        diag.push(
            path,
            format!(
                "invalid id `{}`, expected 1 to 32 characters of a-z, 0-9, `_` and `-`",
                id.escape_debug()
            ),
        );
    }
}

/// Muxrates of channels and mpts: 100 kbit/s..=1 Gbit/s.
fn check_muxrate(muxrate: Bitrate, path: String, diag: &mut Diagnostics) -> Option<Bitrate> {
    if (MUXRATE_MIN..=MUXRATE_MAX).contains(&muxrate) {
        Some(muxrate)
    } else {
        diag.push(
            path,
            format!("{muxrate} is out of range, expected {MUXRATE_MIN}..={MUXRATE_MAX}"),
        );
        None
    }
}

#[cfg(test)]
mod tests;
