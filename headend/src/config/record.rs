//! `[record]`: the stoppage record (停播记录) and where its events are sent
//! (`[[record.webhook]]`). See `docs/record.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::HumanDuration;
use super::Secret;

/// The stoppage record (`[record]`). Optional; defaults apply when absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordConfig {
    /// Key `file`: the append-only journal (one JSON line per event edge, fsynced).
    /// Default `"record.jsonl"`, relative to the config file.
    pub(crate) file: PathBuf,
    /// Key `degraded_hold`: a degradation (P1/P2 errors on an output) ends once this long
    /// passes without a new error, 1s..=10m. Default `"5s"`.
    pub(crate) degraded_hold: Duration,
    /// Array `[[record.webhook]]`: where each event edge is POSTed as JSON. Default none.
    pub(crate) webhooks: Vec<WebhookConfig>,
}

/// A receiver of the record's events (`[[record.webhook]]`), a 监测监管 platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebhookConfig {
    /// Key `url`: `http://` or `https://` URL to POST to. Required.
    pub(crate) url: String,
    /// The URL taken apart.
    pub(crate) target: WebhookTarget,
    /// Key `bearer_token`: sent as `Authorization: Bearer ...` (16..=256 visible ASCII
    /// characters). Default none.
    pub(crate) bearer_token: Option<Secret>,
    /// Key `ca`: PEM file of the CA that signs an `https` receiver's certificate (default the
    /// system's roots), relative to the config file.
    pub(crate) ca: Option<PathBuf>,
    /// Key `queue`: events kept for the receiver while it is down, 1..=100000; the oldest
    /// is dropped (and counted) beyond. Default 10000.
    pub(crate) queue: usize,
    /// Key `timeout`: one attempt's limit, 100ms..=60s. Default `"5s"`.
    pub(crate) timeout: Duration,
}

/// Where a webhook's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebhookTarget {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl WebhookTarget {
    /// `http://host[:port][/path]` or `https://…`; IPv6 hosts in brackets.
    pub(crate) fn parse(url: &str) -> Result<WebhookTarget, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("`{url}`: expected an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return Err(format!(
                "`{url}`: user names in URLs are not supported (use bearer_token)"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("`{url}`: bad port `{p}`"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{url}`: unexpected `{after}` after the host")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("`{url}`: bad port `{p}`"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "`{url}`: the path holds spaces or control characters"
            ));
        }
        Ok(WebhookTarget {
            tls,
            host,
            port,
            path,
        })
    }
}

impl RecordConfig {
    /// The defaults, with the journal in `base_dir` (beside the config file, or in the
    /// service's state directory).
    pub(crate) fn default_in(base_dir: &Path) -> RecordConfig {
        RecordConfig {
            file: base_dir.join("record.jsonl"),
            degraded_hold: Duration::from_secs(5),
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    file: Option<PathBuf>,
    degraded_hold: Option<HumanDuration>,
    webhook: Option<Vec<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    bearer_token: Option<String>,
    ca: Option<PathBuf>,
    queue: Option<i64>,
    timeout: Option<HumanDuration>,
}

/// `[record]` from the document (`None`: the defaults).
pub(super) fn record_config(
    value: Option<toml::Value>,
    base_dir: &Path,
    state_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<RecordConfig> {
    let mut cfg = RecordConfig::default_in(state_dir);
    let Some(value) = value else {
        return Some(cfg);
    };
    if !value.is_table() {
        diag.push(
            "record",
            format!("expected a table (`[record]`), found {}", value.type_str()),
        );
        return None;
    }
    let raw = match value.try_into::<RawRecord>() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml("record", &err);
            return None;
        }
    };
    let before = diag.len();
    if let Some(f) = raw.file {
        if f.as_os_str().is_empty() {
            diag.push("record.file", "empty path");
        }
        cfg.file = base_dir.join(f);
    }
    if let Some(h) = raw.degraded_hold {
        let d = h.0;
        if d < Duration::from_secs(1) || d > Duration::from_secs(600) {
            diag.push(
                "record.degraded_hold",
                format!("{d:?} is out of range 1s..=10m"),
            );
        }
        cfg.degraded_hold = d;
    }
    for (i, w) in raw.webhook.unwrap_or_default().into_iter().enumerate() {
        let path = format!("record.webhook[{i}]");
        let target = match WebhookTarget::parse(&w.url) {
            Ok(t) => t,
            Err(e) => {
                diag.push(format!("{path}.url"), e);
                continue;
            }
        };
        let bearer_token = w
            .bearer_token
            .and_then(|t| super::bearer_token(t, &format!("{path}.bearer_token"), diag));
        let queue = w.queue.unwrap_or(10_000);
        if !(1..=100_000).contains(&queue) {
            diag.push(
                format!("{path}.queue"),
                format!("{queue} is out of range 1..=100000"),
            );
        }
        let timeout = w.timeout.map_or(Duration::from_secs(5), |t| t.0);
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            diag.push(
                format!("{path}.timeout"),
                format!("{timeout:?} is out of range 100ms..=60s"),
            );
        }
        cfg.webhooks.push(WebhookConfig {
            url: w.url,
            target,
            bearer_token,
            ca: w.ca.map(|c| base_dir.join(c)),
            queue: queue.clamp(1, 100_000) as usize,
            timeout,
        });
    }
    (diag.len() == before).then_some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = WebhookTarget::parse("http://127.0.0.1:9000/alarms?x=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 9000, "/alarms?x=1")
        );
        let t = WebhookTarget::parse("https://[::1]/").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "::1", 443));
        let t = WebhookTarget::parse("https://mon.example").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        for bad in [
            "ftp://x",
            "http://",
            "http://a:b/",
            "http://u@h/",
            "http://[::1",
            "http://h/a b",
        ] {
            assert!(WebhookTarget::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod config_tests {
    #[test]
    fn record_mistakes_are_named() {
        let text = "[record]\nfile = \"r.jsonl\"\ndegraded_hold = \"0s\"\n\n\
                    [[record.webhook]]\nurl = \"ftp://x\"\n\n\
                    [[record.webhook]]\nurl = \"http://127.0.0.1:9/a\"\nqueue = 0\ntimeout = \"2m\"\nbearer_token = \"short\"\n";
        let errors = super::super::parse(text, std::path::Path::new("/etc/headend"), "h.toml")
            .unwrap_err()
            .0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "record.degraded_hold",
                "record.webhook[0].url",
                "record.webhook[1].bearer_token",
                "record.webhook[1].queue",
                "record.webhook[1].timeout",
            ],
            "{errors:#?}"
        );
        let ok = super::super::parse(
            "[[record.webhook]]\nurl = \"https://[::1]:8443/alarms\"\n",
            std::path::Path::new("/etc/headend"),
            "h.toml",
        )
        .unwrap();
        assert_eq!(
            ok.record.file,
            std::path::Path::new("/etc/headend/record.jsonl")
        );
        assert_eq!(ok.record.webhooks[0].target.port, 8443);
        assert_eq!(ok.record.webhooks[0].queue, 10_000);
    }
}
