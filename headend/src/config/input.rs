//! Live inputs (`[[channel.input]]`, in priority order) and how a channel fails over between
//! them (`[channel.failover]`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::output::{self, OutputKind};
use super::units::HumanDuration;

/// One live feed of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InputConfig {
    /// Key `name`: how the API, `hectl input` and the logs call it. Required,
    /// `[a-z0-9_-]{1,32}`, unique within the channel.
    pub(crate) name: String,
    /// Key `url`, required: where the feed comes from (see [`Endpoint`]).
    pub(crate) endpoint: Endpoint,
    /// Key `interface`: the interface to join the group on (`eth1`). Required for an IPv6
    /// group; for an IPv4 group the kernel's choice is used without it.
    pub(crate) interface: Option<String>,
    /// Key `source`: the sender, for a source-specific (S,G) join (IGMPv3 for an IPv4 group,
    /// MLDv2 for an IPv6 one). Default none (any-source join).
    pub(crate) source: Option<IpAddr>,
    /// Key `service_id`: the programme to take from a multi-programme input. Default the
    /// first in its PAT.
    pub(crate) service_id: Option<u16>,
    /// Key `ca`: for an `https://` input, a PEM file of the certificate authorities to trust
    /// (a private CA, a self-signed encoder) instead of the system's. Relative to the config
    /// file.
    pub(crate) ca: Option<PathBuf>,
}

/// Where a live feed comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `udp://` (TS packets in datagrams) or `rtp://` (behind an RTP header, RFC 2250/3550:
    /// sequence numbers count loss and reordering): a multicast group to join
    /// (`udp://[ff15::1:1]:5000`, `rtp://239.1.1.1:5000`), or a local address to receive
    /// unicast on (`udp://127.0.0.1:6000`, `udp://[::]:6000`); IP literals only.
    Datagram {
        /// The RTP header is there.
        rtp: bool,
        /// Group or local address, and port.
        addr: SocketAddr,
    },
    /// `srt://host:port?mode=caller|listener|rendezvous&latency=MS&passphrase=P&pbkeylen=16|24|32&streamid=S&port=LOCAL`,
    /// written as libsrt's tools and ffmpeg write it: a caller connects to a listener at
    /// host:port (reconnecting with back-off), a listener waits for one caller on its port
    /// (host empty or an address to bind), a rendezvous peer meets host:port from its local
    /// `port` (default the same port, as libsrt does).
    Srt(SrtEndpoint),
    /// `http://host[:port]/path` or `https://…`: a continuous TS pulled over HTTP/1.1
    /// (plain or chunked; over TLS 1.2/1.3 for https, the server's certificate checked
    /// against the system's roots or the input's `ca`), reconnected with back-off when it
    /// ends or fails.
    Http {
        /// Host name or IP literal (IPv6 in brackets in the URL).
        host: String,
        /// Port (default 80, 443 for https).
        port: u16,
        /// Path and query (`/live/news.ts?x=1`).
        path: String,
        /// `https://`.
        tls: bool,
    },
}

/// An `srt://` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SrtEndpoint {
    /// Listener (waits for a caller) or caller (connects).
    pub(crate) listener: bool,
    /// Rendezvous (both sides call each other; not a listener).
    pub(crate) rendezvous: bool,
    /// `port`: the local port a caller or rendezvous peer sends from (default: any for a
    /// caller, the remote port for a rendezvous).
    pub(crate) local_port: Option<u16>,
    /// Host to call, or address to listen on (`None`: every address, IPv6 and IPv4).
    pub(crate) host: Option<String>,
    /// Port.
    pub(crate) port: u16,
    /// `latency`: the receiver's buffer, milliseconds (default 120).
    pub(crate) latency_ms: u32,
    /// `passphrase` (10..=79 bytes): AES encryption.
    pub(crate) passphrase: Option<String>,
    /// `pbkeylen`: 16, 24 or 32 (default 16; needs a passphrase).
    pub(crate) key_len: u8,
    /// `streamid`.
    pub(crate) stream_id: Option<String>,
}

impl Endpoint {
    /// The multicast group or local address of a datagram input.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Datagram { addr, .. } => Some(*addr),
            Endpoint::Http { .. } | Endpoint::Srt(_) => None,
        }
    }
}

/// Parses `srt://…` (what follows `srt://`).
fn parse_srt(url: &str, rest: &str) -> Result<SrtEndpoint, String> {
    let shown = url.escape_debug();
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let bad = |why: &str| format!("invalid url `{shown}`: {why}");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| bad("a port is required"))?;
        (Some(h.to_owned()), p)
    } else {
        let (h, p) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("a port is required (srt://host:port)"))?;
        ((!h.is_empty()).then(|| h.to_owned()), p)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port must be 1..=65535"))?;
    let mut e = SrtEndpoint {
        listener: host.is_none(),
        rendezvous: false,
        local_port: None,
        host,
        port,
        latency_ms: 120,
        passphrase: None,
        key_len: 16,
        stream_id: None,
    };
    let mut key_len = None;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v).ok_or_else(|| bad(&format!("bad %-escape in `{k}`")))?;
        match k {
            "mode" => {
                (e.listener, e.rendezvous) = match v.as_str() {
                    "listener" | "server" => (true, false),
                    "caller" | "client" => (false, false),
                    "rendezvous" => (false, true),
                    other => {
                        return Err(bad(&format!(
                            "mode `{other}` is not supported (caller, listener or rendezvous)"
                        )))
                    }
                }
            }
            "latency" => {
                e.latency_ms = v
                    .parse()
                    .ok()
                    .filter(|l| *l <= 60_000)
                    .ok_or_else(|| bad("latency is milliseconds, 0..=60000"))?
            }
            "passphrase" => {
                if !(10..=79).contains(&v.len()) {
                    return Err(bad("the passphrase must be 10 to 79 bytes"));
                }
                e.passphrase = Some(v);
            }
            "pbkeylen" => {
                key_len = Some(match v.as_str() {
                    "16" => 16,
                    "24" => 24,
                    "32" => 32,
                    _ => return Err(bad("pbkeylen must be 16, 24 or 32")),
                })
            }
            "streamid" => e.stream_id = Some(v),
            "port" => {
                e.local_port = Some(
                    v.parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad("the local port must be 1..=65535"))?,
                )
            }
            other => {
                return Err(bad(&format!(
                "unsupported parameter `{other}` (mode, latency, passphrase, pbkeylen, streamid, port)"
            )))
            }
        }
    }
    if let Some(k) = key_len {
        if e.passphrase.is_none() {
            return Err(bad("pbkeylen needs a passphrase"));
        }
        e.key_len = k;
    }
    if !e.listener && e.host.is_none() {
        return Err(bad(if e.rendezvous {
            "a rendezvous needs the peer's host"
        } else {
            "a caller needs a host to call"
        }));
    }
    if e.listener && e.local_port.is_some() {
        return Err(bad(
            "a listener's port is the one in the address (no `port`)",
        ));
    }
    Ok(e)
}

/// `%XX` escapes decoded; `None` for a bad one (or bytes that are not UTF-8).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Datagram { rtp, addr } => {
                write!(f, "{}://{addr}", if *rtp { "rtp" } else { "udp" })
            }
            Endpoint::Srt(e) => {
                let host = e.host.as_deref().unwrap_or("");
                let mode = match (e.listener, e.rendezvous) {
                    (true, _) => "listener",
                    (false, true) => "rendezvous",
                    (false, false) => "caller",
                };
                if host.contains(':') {
                    write!(f, "srt://[{host}]:{}?mode={mode}", e.port)
                } else {
                    write!(f, "srt://{host}:{}?mode={mode}", e.port)
                }
            }
            Endpoint::Http {
                host,
                port,
                path,
                tls,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}{path}")
                } else {
                    write!(f, "{scheme}://{host}:{port}{path}")
                }
            }
        }
    }
}

/// Parses an input's `url`.
pub(super) fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let lower = url.to_ascii_lowercase();
    let http = match () {
        _ if lower.starts_with("http://") => Some((&url[7..], false, 80)),
        _ if lower.starts_with("https://") => Some((&url[8..], true, 443)),
        _ => None,
    };
    if let Some((rest, tls, default_port)) = http {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad = || {
            format!(
                "invalid url `{}`, expected http[s]://host[:port]/path",
                url.escape_debug()
            )
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse::<u16>().map_err(|_| bad())?),
                None => (authority.to_owned(), default_port),
            }
        };
        if port == 0 || host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad());
        }
        return Ok(Endpoint::Http {
            host,
            port,
            path: path.to_owned(),
            tls,
        });
    }
    if lower.starts_with("srt://") {
        return parse_srt(url, &url[6..]).map(Endpoint::Srt);
    }
    let (kind, addr) = output::parse_input_url(url)?;
    Ok(Endpoint::Datagram {
        rtp: kind == OutputKind::Rtp,
        addr,
    })
}

/// `[channel.failover]`: when a channel leaves an input and when it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailoverConfig {
    /// Key `loss_timeout`: no data for this long fails the input. Default `"200ms"`,
    /// 20ms..=10s.
    pub(crate) loss_timeout: Duration,
    /// Key `restore_after`: a higher-priority input must be clean this long before the
    /// channel goes back to it. Default `"10s"`, 0s..=1h.
    pub(crate) restore_after: Duration,
    /// Key `lead`: how far ahead of sending a live packet is held, against network jitter
    /// (the channel's delay over its input). Default `"300ms"`, 50ms..=5s.
    pub(crate) lead: Duration,
    /// Key `standby`: how much of each input's latest data is kept while it is not on air,
    /// so a switch can start it at once at a random access point: at least a GOP. Default
    /// `"2s"`, 200ms..=10s.
    pub(crate) standby: Duration,
    /// Key `max_cc_errors`: more continuity errors than this within a second fail the input.
    /// Default 5, 0..=100000.
    pub(crate) max_cc_errors: u64,
    /// Key `min_bitrate`: below this over a second fails the input. Default none.
    pub(crate) min_bitrate_bps: Option<u64>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            loss_timeout: Duration::from_millis(200),
            restore_after: Duration::from_secs(10),
            lead: Duration::from_millis(300),
            standby: Duration::from_secs(2),
            max_cc_errors: 5,
            min_bitrate_bps: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    url: String,
    interface: Option<String>,
    source: Option<IpAddr>,
    service_id: Option<i64>,
    ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    loss_timeout: Option<HumanDuration>,
    restore_after: Option<HumanDuration>,
    lead: Option<HumanDuration>,
    standby: Option<HumanDuration>,
    max_cc_errors: Option<i64>,
    #[serde(default, deserialize_with = "opt_bitrate")]
    min_bitrate: Option<super::units::Bitrate>,
}

fn opt_bitrate<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<super::units::Bitrate>, D::Error> {
    super::units::bitrate(d).map(Some)
}

/// Converts the `input` array of the channel at `owner`. `None` iff an error was reported.
pub(super) fn inputs(
    value: Option<toml::Value>,
    owner: &str,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<Vec<InputConfig>> {
    let items = super::tables(value, &format!("{owner}.input"), diag);
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: Vec<String> = Vec::new();
    for (path, table) in items {
        // Names are checked for duplicates even where the rest of the input is wrong.
        if let Some(name) = table
            .as_ref()
            .and_then(|t| t.get("name"))
            .and_then(toml::Value::as_str)
        {
            if names.iter().any(|n| n == name) {
                diag.push(
                    format!("{path}.name"),
                    format!("input `{name}` is named twice in this channel"),
                );
                ok = false;
            }
            names.push(name.to_owned());
        }
        match table.and_then(|t| input(t, &path, base_dir, diag)) {
            Some(i) => out.push(i),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn input(
    table: toml::Table,
    path: &str,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<InputConfig> {
    let raw: RawInput = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml(path, &err);
            return None;
        }
    };
    let before = diag.len();
    super::check_name(&raw.name, &format!("{path}.name"), diag);
    let url_path = format!("{path}.url");
    let endpoint = match parse_endpoint(&raw.url) {
        Ok(t) => Some(t),
        Err(message) => {
            diag.push(url_path, message);
            None
        }
    };
    let target = endpoint.as_ref().and_then(Endpoint::addr);
    if let Some(name) = &raw.interface {
        output::check_interface(name, &format!("{path}.interface"), diag);
    }
    let service_id = raw
        .service_id
        .and_then(|v| diag.ranged(format!("{path}.service_id"), v, 1u16..=65535));
    if matches!(endpoint, Some(Endpoint::Http { .. } | Endpoint::Srt(_))) {
        for (key, set) in [
            ("interface", raw.interface.is_some()),
            ("source", raw.source.is_some()),
        ] {
            if set {
                diag.push(
                    format!("{path}.{key}"),
                    "applies to udp:// and rtp:// inputs only",
                );
            }
        }
    }
    if let Some(addr) = target {
        if addr.ip().is_multicast() && addr.is_ipv6() && raw.interface.is_none() {
            diag.push(
                format!("{path}.interface"),
                format!("required to join the IPv6 group {}", addr.ip()),
            );
        }
        if let Some(source) = raw.source {
            if !addr.ip().is_multicast() {
                diag.push(
                    format!("{path}.source"),
                    format!(
                        "a source-specific join needs a multicast group, not {}",
                        addr.ip()
                    ),
                );
            } else if source.is_ipv4() != addr.is_ipv4() || source.is_multicast() {
                diag.push(
                    format!("{path}.source"),
                    format!(
                        "source {source} must be a unicast address of the group's family ({})",
                        addr.ip()
                    ),
                );
            }
        }
    }
    // A CA file for an https input: there, and holding certificates (read again when the
    // input starts).
    let ca = raw.ca.map(|c| base_dir.join(c));
    match (&ca, &endpoint) {
        (Some(_), Some(Endpoint::Http { tls: true, .. }) | None) => {}
        (Some(_), Some(_)) => diag.push(format!("{path}.ca"), "applies to https:// inputs only"),
        _ => {}
    }
    if let Some(file) = &ca {
        if let Err(e) = read_ca(file) {
            diag.push(format!("{path}.ca"), e);
        }
    }
    let endpoint = endpoint?;
    (diag.len() == before).then_some(InputConfig {
        name: raw.name,
        endpoint,
        interface: raw.interface,
        source: raw.source,
        service_id,
        ca,
    })
}

/// The certificates in a PEM file (an https input's `ca`).
pub(crate) fn read_ca(
    file: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.display()));
    }
    Ok(certs)
}

/// Converts `[channel.failover]`. `None` iff an error was reported.
pub(super) fn failover(
    value: Option<toml::Value>,
    owner: &str,
    diag: &mut Diagnostics,
) -> Option<FailoverConfig> {
    let path = format!("{owner}.failover");
    let raw: RawFailover = match value.map(toml::Value::try_into).transpose() {
        Ok(raw) => raw.unwrap_or_default(),
        Err(err) => {
            diag.toml(&path, &err);
            return None;
        }
    };
    let d = FailoverConfig::default();
    let before = diag.len();
    // Out of range is reported (and the whole table refused below).
    let mut time = |v: Option<HumanDuration>, key: &str, default: Duration, min, max| {
        super::channel::interval(v, format!("{path}.{key}"), default, min, max, diag)
            .unwrap_or(default)
    };
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    let loss_timeout = time(
        raw.loss_timeout,
        "loss_timeout",
        d.loss_timeout,
        ms(20),
        s(10),
    );
    let restore_after = time(
        raw.restore_after,
        "restore_after",
        d.restore_after,
        s(0),
        s(3600),
    );
    let lead = time(raw.lead, "lead", d.lead, ms(50), s(5));
    let standby = time(raw.standby, "standby", d.standby, ms(200), s(10));
    let max_cc_errors = diag.ranged(
        format!("{path}.max_cc_errors"),
        raw.max_cc_errors.unwrap_or(5),
        0u32..=100_000,
    );
    (diag.len() == before).then_some(FailoverConfig {
        loss_timeout,
        restore_after,
        lead,
        standby,
        max_cc_errors: u64::from(max_cc_errors?),
        min_bitrate_bps: raw.min_bitrate.map(|b| b.bps()),
    })
}
