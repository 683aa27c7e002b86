//! `[alerts]`: emergency alerts (who may send them, which channels an area covers, what
//! goes on air, where the audit log is). See `docs/alerts.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::HumanDuration;
use super::{ChannelConfig, Secret};

/// Emergency alerts (`[alerts]`). Without this table `POST /api/alerts` is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AlertsConfig {
    /// Key `token`: the `emergency` role's bearer token, needed by every alert call (16..=256
    /// visible ASCII characters). Required. Never logged.
    pub(crate) token: Secret,
    /// Key `audit_log`: the append-only audit log (one JSON line per event, fsynced).
    /// Default `"alerts-audit.jsonl"`, relative to the config file.
    pub(crate) audit_log: PathBuf,
    /// Key `media_dir`: where clips uploaded with `POST /api/alerts/media` are kept.
    /// Default `"alert-media"`, relative to the config file.
    pub(crate) media_dir: PathBuf,
    /// Key `max_upload_mb`: largest clip accepted, 1..=4096 MiB. Default 64.
    pub(crate) max_upload_bytes: u64,
    /// Key `media_quota_mb`: what the kept clips may take in all, 1..=1048576 MiB. Default
    /// 1024: an upload past it is refused (507) and nothing is kept.
    pub(crate) media_quota_bytes: u64,
    /// Key `replay_window`: an alert whose `sent` is further than this from now is refused
    /// (replays, clocks far off). Default `"10m"`, 10s..=24h.
    pub(crate) replay_window: Duration,
    /// Key `max_duration`: how long an alert without `expires` stays on air, 1s..=24h.
    /// Default `"1h"`.
    pub(crate) max_duration: Duration,
    /// Key `tables`: the in-band emergency tables inserted while an alert is on air:
    /// `"ebit"` (Chinese cable EB index table, 0xFD) and/or `"scte18"` (table 0xD8 on PID
    /// 0x1FFB). Default `["ebit"]`.
    pub(crate) tables: Vec<EmergencyTable>,
    /// Key `ebit_pid`: the EBIT's PID, 0x0020..=0x1FFE. Default 0x0021.
    pub(crate) ebit_pid: u16,
    /// Key `resource_code`: this head-end's 23-digit EB resource code (the first part of
    /// each EBM_id it sends). Default 23 zeros.
    pub(crate) resource_code: String,
    /// Key `drill_channels`: channels that also air Exercise and Test alerts (drills).
    /// Default none.
    pub(crate) drill_channels: Vec<String>,
    /// Table `[alerts.clips]`: the clip aired for each level (`"1"`..`"4"`) and `"default"`.
    /// At least `default`, or all four levels.
    pub(crate) level_clips: Vec<(Option<u8>, PathBuf)>,
    /// Table `[alerts.event_clips]`: clips by event code (a CAP `eventCode` value, or the
    /// `event` text), ahead of the level's.
    pub(crate) event_clips: Vec<(String, PathBuf)>,
    /// Array `[[alerts.sender]]`: the trusted keys. At least one.
    pub(crate) senders: Vec<SenderKey>,
    /// Array `[[alerts.area]]`: which channels each area code covers. At least one.
    pub(crate) areas: Vec<AreaChannels>,
}

/// An in-band emergency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EmergencyTable {
    /// The Chinese cable EB index table (table_id 0xFD).
    Ebit,
    /// SCTE-18 Emergency Alert Message (table_id 0xD8, PID 0x1FFB).
    Scte18,
}

/// A trusted signer (`[[alerts.sender]]`).
#[derive(Clone, Debug)]
pub(crate) struct SenderKey {
    /// Key `key_id`: what `X-Signature-Key` names. Required, unique.
    pub(crate) key_id: String,
    /// Keys `algorithm` (`"sm2"` or `"ed25519"`) and `public_key` (hex: SM2 an SEC1 point,
    /// Ed25519 32 bytes). Required.
    pub(crate) key: epg::alert::sign::VerifyingKey,
    /// Key `senders`: the CAP `sender` values this key may sign for. Required, non-empty.
    pub(crate) senders: Vec<String>,
}

impl PartialEq for SenderKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id
            && self.key.algorithm() == other.key.algorithm()
            && self.key.to_bytes() == other.key.to_bytes()
            && self.senders == other.senders
    }
}

impl Eq for SenderKey {}

/// An area and its channels (`[[alerts.area]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AreaChannels {
    /// Key `code`: an area code as alerts' geocodes give it (GB/T 2260 `310101`, or any
    /// other scheme's value). Required.
    pub(crate) code: String,
    /// Key `channels`: channel ids. Required, non-empty.
    pub(crate) channels: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    token: Option<String>,
    audit_log: Option<PathBuf>,
    media_dir: Option<PathBuf>,
    max_upload_mb: Option<i64>,
    media_quota_mb: Option<i64>,
    replay_window: Option<HumanDuration>,
    max_duration: Option<HumanDuration>,
    tables: Option<Vec<String>>,
    ebit_pid: Option<i64>,
    resource_code: Option<String>,
    drill_channels: Option<Vec<String>>,
    clips: Option<toml::Table>,
    event_clips: Option<toml::Table>,
    sender: Option<Vec<RawSender>>,
    area: Option<Vec<RawArea>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    key_id: String,
    algorithm: String,
    public_key: String,
    senders: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArea {
    code: String,
    channels: Vec<String>,
}

fn within(d: Duration, low: Duration, high: Duration) -> bool {
    (low..=high).contains(&d)
}

fn clip_table(
    table: Option<toml::Table>,
    path: &str,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (k, v) in table.unwrap_or_default() {
        match v.as_str() {
            Some(s) if !s.is_empty() => out.push((k, base_dir.join(s))),
            _ => diag.push(
                format!("{path}.{}", k.escape_debug()),
                "expected the path of a clip (a string)",
            ),
        }
    }
    out
}

/// `[alerts]` from its TOML value; channel ids are checked against `channels`.
pub(super) fn alerts_config(
    value: toml::Value,
    base_dir: &Path,
    (state_dir, logs_dir): (&Path, &Path),
    channels: &[ChannelConfig],
    diag: &mut Diagnostics,
) -> Option<AlertsConfig> {
    if !value.is_table() {
        diag.push(
            "alerts",
            format!("expected a table (`[alerts]`), found {}", value.type_str()),
        );
        return None;
    }
    let raw: RawAlerts = match value.try_into() {
        Ok(r) => r,
        Err(e) => {
            diag.toml("alerts", &e);
            return None;
        }
    };
    let before = diag.len();
    let token = match raw.token {
        Some(t) => super::bearer_token(t, "alerts.token", diag),
        None => {
            diag.push(
                "alerts.token",
                "required: the `emergency` role's bearer token",
            );
            None
        }
    };
    let max_upload_mb = diag.ranged(
        "alerts.max_upload_mb".to_owned(),
        raw.max_upload_mb.unwrap_or(64),
        1u16..=4096,
    );
    let media_quota_mb = diag.ranged(
        "alerts.media_quota_mb".to_owned(),
        raw.media_quota_mb.unwrap_or(1024),
        1u32..=1_048_576,
    );
    let replay_window = raw.replay_window.map_or(Duration::from_secs(600), |d| d.0);
    if !within(
        replay_window,
        Duration::from_secs(10),
        Duration::from_secs(86_400),
    ) {
        diag.push("alerts.replay_window", "must be 10s..=24h");
    }
    let max_duration = raw.max_duration.map_or(Duration::from_secs(3600), |d| d.0);
    if !within(
        max_duration,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    ) {
        diag.push("alerts.max_duration", "must be 1s..=24h");
    }
    let mut tables = Vec::new();
    for (i, t) in raw
        .tables
        .unwrap_or_else(|| vec!["ebit".to_owned()])
        .iter()
        .enumerate()
    {
        match t.as_str() {
            "ebit" => tables.push(EmergencyTable::Ebit),
            "scte18" => tables.push(EmergencyTable::Scte18),
            other => diag.push(
                format!("alerts.tables[{i}]"),
                format!("`{}`: expected `ebit` or `scte18`", other.escape_debug()),
            ),
        }
    }
    let ebit_pid = diag.ranged(
        "alerts.ebit_pid".to_owned(),
        raw.ebit_pid.unwrap_or(0x21),
        0x20u16..=0x1FFE,
    );
    let resource_code = raw.resource_code.unwrap_or_else(|| "0".repeat(23));
    if resource_code.len() != 23 || !resource_code.bytes().all(|b| b.is_ascii_digit()) {
        diag.push("alerts.resource_code", "must be 23 decimal digits");
    }
    let known = |id: &str| channels.iter().any(|c| c.id == id);
    let drill_channels = raw.drill_channels.unwrap_or_default();
    for (i, c) in drill_channels.iter().enumerate() {
        if !known(c) {
            diag.push(
                format!("alerts.drill_channels[{i}]"),
                format!("no channel `{}`", c.escape_debug()),
            );
        }
    }
    let mut level_clips = Vec::new();
    for (k, p) in clip_table(raw.clips, "alerts.clips", base_dir, diag) {
        match k.as_str() {
            "default" => level_clips.push((None, p)),
            "1" | "2" | "3" | "4" => level_clips.push((k.parse().ok(), p)),
            other => diag.push(
                format!("alerts.clips.{}", other.escape_debug()),
                "expected a level `1`..`4` or `default`",
            ),
        }
    }
    let covered = level_clips.iter().any(|(l, _)| l.is_none())
        || (1..=4).all(|l| level_clips.iter().any(|(k, _)| *k == Some(l)));
    if !covered {
        diag.push(
            "alerts.clips",
            "needs a `default` clip, or one for each level 1..4",
        );
    }
    let event_clips = clip_table(raw.event_clips, "alerts.event_clips", base_dir, diag);
    let mut senders: Vec<SenderKey> = Vec::new();
    for (i, s) in raw.sender.unwrap_or_default().into_iter().enumerate() {
        let path = format!("alerts.sender[{i}]");
        if s.key_id.is_empty()
            || s.key_id.len() > 64
            || !s.key_id.bytes().all(|b| b.is_ascii_graphic())
        {
            diag.push(
                format!("{path}.key_id"),
                "must be 1..=64 visible ASCII characters",
            );
        } else if senders.iter().any(|k| k.key_id == s.key_id) {
            diag.push(format!("{path}.key_id"), format!("`{}` again", s.key_id));
        }
        if s.senders.is_empty() {
            diag.push(
                format!("{path}.senders"),
                "list the CAP `sender` values this key signs for",
            );
        }
        let key = s
            .algorithm
            .parse::<epg::alert::sign::Algorithm>()
            .map_err(|e| diag.push(format!("{path}.algorithm"), e.to_string()))
            .ok()
            .and_then(|alg| {
                epg::alert::sign::VerifyingKey::from_hex(alg, &s.public_key)
                    .map_err(|e| diag.push(format!("{path}.public_key"), e.to_string()))
                    .ok()
            });
        if let Some(key) = key {
            senders.push(SenderKey {
                key_id: s.key_id,
                key,
                senders: s.senders,
            });
        }
    }
    if senders.is_empty() && diag.len() == before {
        diag.push(
            "alerts.sender",
            "at least one trusted `[[alerts.sender]]` key is required",
        );
    }
    let mut areas = Vec::new();
    for (i, a) in raw.area.unwrap_or_default().into_iter().enumerate() {
        let path = format!("alerts.area[{i}]");
        if a.code.is_empty() || !a.code.bytes().all(|b| b.is_ascii_graphic()) {
            diag.push(format!("{path}.code"), "must be a non-empty area code");
        }
        if a.channels.is_empty() {
            diag.push(
                format!("{path}.channels"),
                "list the channels the area covers",
            );
        }
        for (j, c) in a.channels.iter().enumerate() {
            if !known(c) {
                diag.push(
                    format!("{path}.channels[{j}]"),
                    format!("no channel `{}`", c.escape_debug()),
                );
            }
        }
        areas.push(AreaChannels {
            code: a.code,
            channels: a.channels,
        });
    }
    if areas.is_empty() {
        diag.push("alerts.area", "at least one `[[alerts.area]]` is required");
    }
    if diag.len() != before {
        return None;
    }
    Some(AlertsConfig {
        token: token?,
        audit_log: raw
            .audit_log
            .map_or_else(|| logs_dir.join("alerts-audit.jsonl"), |p| base_dir.join(p)),
        media_dir: raw
            .media_dir
            .map_or_else(|| state_dir.join("alert-media"), |p| base_dir.join(p)),
        max_upload_bytes: u64::from(max_upload_mb?) << 20,
        media_quota_bytes: u64::from(media_quota_mb?) << 20,
        replay_window,
        max_duration,
        tables,
        ebit_pid: ebit_pid?,
        resource_code,
        drill_channels,
        level_clips,
        event_clips,
        senders,
        areas,
    })
}

/// Whether an alert's area code `alert` and a configured area `configured` overlap: equal,
/// or, for hierarchical numeric codes (GB/T 2260: province `310000`, city `310100`,
/// district `310101`), one contains the other once trailing `00` pairs are dropped. A
/// district alert reaches a channel serving its whole province, and a province alert every
/// district channel in it.
pub(crate) fn areas_overlap(alert: &str, configured: &str) -> bool {
    if alert == configured {
        return true;
    }
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(alert) || !numeric(configured) || alert.len() != configured.len() {
        return false;
    }
    let trim = |s: &str| {
        let mut t = s;
        while t.len() >= 2 && t.ends_with("00") {
            t = &t[..t.len() - 2];
        }
        t.to_owned()
    };
    let (a, c) = (trim(alert), trim(configured));
    a.starts_with(&c) || c.starts_with(&a)
}

#[cfg(test)]
mod tests {
    use super::areas_overlap;

    #[test]
    fn area_codes_overlap_by_hierarchy() {
        assert!(areas_overlap("310101", "310101"));
        assert!(
            areas_overlap("310101", "310000"),
            "district in its province"
        );
        assert!(
            areas_overlap("310000", "310101"),
            "province covers the district"
        );
        assert!(areas_overlap("310100", "310101"));
        assert!(!areas_overlap("310101", "310102"));
        assert!(!areas_overlap("320000", "310101"));
        assert!(
            areas_overlap("000000", "310101"),
            "all zeros: the whole country"
        );
        assert!(areas_overlap("us-ca", "us-ca"));
        assert!(!areas_overlap("us-ca", "us-c"));
    }
}
