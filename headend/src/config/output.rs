//! Network outputs (`[[channel.output]]`, `[[mpts.output]]`): UDP or RTP over UDP, unicast or
//! multicast, IPv4 or IPv6.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::claims::Claims;
use super::error::Diagnostics;
use super::raw::RawOutput;

/// One destination a transport stream is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutputConfig {
    /// Scheme of key `url`: `udp` (7 TS packets per datagram) or `rtp` (the same, with an
    /// RTP header, RFC 2250). Required.
    pub(crate) kind: OutputKind,
    /// Address and port of key `url` (`udp://[ff15::101]:5000`, `rtp://239.1.2.3:5000`,
    /// `udp://127.0.0.1:6000`). Required; an IP literal (host names are not resolved), port
    /// 1..=65535, not the unspecified address. No two outputs in the config share one.
    pub(crate) dest: SocketAddr,
    /// Key `interface`: network interface to send on, such as `eth0` (1..=15 bytes, no `/`
    /// or whitespace). Default: none (the routing table decides). Required when `dest` is
    /// IPv6 multicast: the kernel must not pick the NIC.
    pub(crate) interface: Option<String>,
    /// Key `hop_limit` (alias `ttl`): IPv6 hop limit or IPv4 TTL, 1..=255. Default 1 for a
    /// multicast `dest`, 64 for unicast.
    pub(crate) hop_limit: u8,
    /// Key `dscp`: DiffServ code point in the IP header (RFC 2474), 0..=63. Default 0.
    pub(crate) dscp: u8,
    /// Key `source`: local address to send from; must be a unicast address of the same
    /// family as `dest`. Default: none (the kernel picks).
    pub(crate) source: Option<IpAddr>,
    /// Key `seamless`: with a fleet, this output is this node's own path of a SMPTE 2022-7
    /// pair: sent whenever the node runs the channel, whether or not it owns it (the other
    /// node's config names the other path; both send identical RTP, docs/fleet.md). Other
    /// outputs are sent only by the channel's owner. Without a fleet it changes nothing.
    /// Default false.
    pub(crate) seamless: bool,
}

/// How transport stream packets are carried in each datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OutputKind {
    /// `udp://`: raw TS packets, 7 per datagram.
    Udp,
    /// `rtp://`: TS packets behind an RTP header (RFC 2250, payload type 33).
    Rtp,
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Rtp => "rtp",
        })
    }
}

/// Converts the `output` array of the item at `owner` (`channel[0]`, `mpts[1]`), claiming
/// every destination. `None` iff an error was reported.
pub(super) fn outputs(
    value: Option<toml::Value>,
    owner: &str,
    diag: &mut Diagnostics,
    claims: &mut Claims,
) -> Option<Vec<OutputConfig>> {
    let items = super::tables(value, &format!("{owner}.output"), diag);
    let converted: Vec<Option<OutputConfig>> = items
        .into_iter()
        .map(|(path, table)| table.and_then(|table| output(table, &path, diag, claims)))
        .collect();
    converted.into_iter().collect()
}

fn output(
    table: toml::Table,
    path: &str,
    diag: &mut Diagnostics,
    claims: &mut Claims,
) -> Option<OutputConfig> {
    let url_hint = table
        .get("url")
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    let raw: RawOutput = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml(path, &err);
            // Still claim the destination so a duplicate elsewhere is not missed.
            if let Some(Ok((_, dest))) = url_hint.as_deref().map(parse_url) {
                claims.dest(dest, &format!("{path}.url"), diag);
            }
            return None;
        }
    };
    let before = diag.len();
    let url_path = format!("{path}.url");
    let target = match parse_url(&raw.url) {
        Ok(target) => {
            claims.dest(target.1, &url_path, diag);
            Some(target)
        }
        Err(message) => {
            diag.push(url_path, message);
            None
        }
    };
    if let Some(name) = &raw.interface {
        check_interface(name, &format!("{path}.interface"), diag);
    }
    let multicast = target.is_some_and(|(_, dest)| dest.ip().is_multicast());
    let hop_limit = diag.ranged(
        format!("{path}.hop_limit"),
        raw.hop_limit.unwrap_or(if multicast { 1 } else { 64 }),
        1u8..=255,
    );
    let dscp = diag.ranged(format!("{path}.dscp"), raw.dscp.unwrap_or(0), 0u8..=63);
    if let Some(source) = raw.source {
        if source.is_multicast() {
            diag.push(
                format!("{path}.source"),
                format!("source {source} must be a unicast address"),
            );
        } else if let Some((_, dest)) =
            target.filter(|(_, dest)| dest.is_ipv4() != source.is_ipv4())
        {
            diag.push(
                format!("{path}.source"),
                format!("source {source} and destination {dest} are of different IP families"),
            );
        }
    }
    if let Some((_, dest)) = target {
        if dest.is_ipv6() && multicast && raw.interface.is_none() {
            diag.push(
                format!("{path}.interface"),
                format!("required for the IPv6 multicast destination {dest}; the kernel must not pick the interface"),
            );
        }
    }
    let (Some((kind, dest)), Some(hop_limit), Some(dscp)) = (target, hop_limit, dscp) else {
        return None;
    };
    (diag.len() == before).then_some(OutputConfig {
        kind,
        dest,
        interface: raw.interface,
        hop_limit,
        dscp,
        source: raw.source,
        seamless: raw.seamless.unwrap_or(false),
    })
}

/// Checks an interface name (`eth0`) at `path`.
pub(super) fn check_interface(name: &str, path: &str, diag: &mut Diagnostics) {
    if name.is_empty() || name.len() > 15 || name.contains(|c: char| c == '/' || c.is_whitespace())
    {
        diag.push(
            path,
            format!(
                "invalid interface name `{}`, expected 1..=15 bytes without `/` or whitespace",
                name.escape_debug()
            ),
        );
    }
}

/// Parses an input's `udp://address:port` or `rtp://address:port`: a group to join or a
/// local address to receive on (the unspecified address `[::]` or `0.0.0.0` included).
pub(super) fn parse_input_url(url: &str) -> Result<(OutputKind, SocketAddr), String> {
    parse_endpoint(url, true)
}

/// Parses `udp://address:port` or `rtp://address:port`; the address is an IP literal (IPv6
/// in brackets). A trailing `/` is tolerated.
fn parse_url(url: &str) -> Result<(OutputKind, SocketAddr), String> {
    parse_endpoint(url, false)
}

fn parse_endpoint(url: &str, unspecified_ok: bool) -> Result<(OutputKind, SocketAddr), String> {
    let shown = url.escape_debug();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "invalid url `{shown}`, expected udp://address:port or rtp://address:port"
        ));
    };
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "udp" => OutputKind::Udp,
        "rtp" => OutputKind::Rtp,
        _ => {
            return Err(format!(
                "unsupported scheme `{}`, expected udp or rtp",
                scheme.escape_debug()
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!("invalid url `{shown}`: only {kind}://address:port is supported (no user, path or query)"));
    }
    let dest: SocketAddr = authority.parse().map_err(|_| {
        format!(
            "invalid destination `{}`, expected an IP address and port such as 239.1.2.3:5000 or \
             [ff15::101]:5000 (host names are not resolved)",
            authority.escape_debug()
        )
    })?;
    if dest.port() == 0 {
        return Err(format!("port of `{shown}` must not be 0"));
    }
    if dest.ip().is_unspecified() && !unspecified_ok {
        return Err(format!(
            "destination {} of `{shown}` is the unspecified address",
            dest.ip()
        ));
    }
    Ok((kind, dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let ok = |url: &str| parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            ok("udp://[ff15::101]:5000"),
            (OutputKind::Udp, "[ff15::101]:5000".parse().unwrap())
        );
        assert_eq!(
            ok("rtp://239.1.2.3:5000"),
            (OutputKind::Rtp, "239.1.2.3:5000".parse().unwrap())
        );
        assert_eq!(
            ok("udp://127.0.0.1:6000"),
            (OutputKind::Udp, "127.0.0.1:6000".parse().unwrap())
        );
        assert_eq!(ok("UDP://127.0.0.1:6000/").0, OutputKind::Udp);
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, why) in [
            (
                "srtx://1.2.3.4:5",
                "unsupported scheme `srtx`, expected udp or rtp",
            ),
            ("239.1.2.3:5000", "expected udp://address:port"),
            ("udp://239.1.2.3", "invalid destination `239.1.2.3`"),
            ("udp://example.com:5000", "host names are not resolved"),
            ("udp://ff15::101:5000", "invalid destination"),
            ("udp://@239.1.2.3:5000", "no user, path or query"),
            (
                "udp://239.1.2.3:5000?pkt_size=1316",
                "no user, path or query",
            ),
            ("udp://239.1.2.3:0", "must not be 0"),
            ("udp://239.1.2.3:70000", "invalid destination"),
            ("udp://0.0.0.0:5000", "unspecified"),
            ("rtp://[::]:5000", "unspecified"),
            ("", "invalid url"),
        ] {
            let err = parse_url(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
