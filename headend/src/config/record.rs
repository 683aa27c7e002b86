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

impl RecordConfig {
    /// The defaults, with the journal beside the config file.
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
    diag: &mut Diagnostics,
) -> Option<RecordConfig> {
    let mut cfg = RecordConfig::default_in(base_dir);
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
        if let Err(e) = crate::record::hooks::Target::parse(&w.url) {
            diag.push(format!("{path}.url"), e);
        }
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
            bearer_token,
            ca: w.ca.map(|c| base_dir.join(c)),
            queue: queue.clamp(1, 100_000) as usize,
            timeout,
        });
    }
    (diag.len() == before).then_some(cfg)
}
