//! `[channel.archive]`: the channel's output recorded for time-shift and catch-up (HLS).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::HumanDuration;

/// `[channel.archive]`: the channel's output recorded as segments cut at random access
/// points, kept for `keep` and within `max_bytes`, oldest first out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArchiveConfig {
    /// Key `dir`: where the channel's segments go (in a directory named after the channel),
    /// relative to the config file. Default `archive` in the state directory.
    pub(crate) dir: PathBuf,
    /// Key `keep`: how long a segment is kept. Default `"7d"`, 1m..=400d.
    pub(crate) keep: Duration,
    /// Key `max_bytes`: the most the channel's segments take on disk (an integer, or a
    /// string with a k/M/G/T suffix, powers of 1000, or Ki/Mi/Gi/Ti, powers of 1024; a
    /// final `B` is allowed). Default no limit beyond `keep`.
    pub(crate) max_bytes: Option<u64>,
    /// Key `segment`: the target segment length; a segment ends at the first random access
    /// point past it. Default `"4s"`, 2s..=6s.
    pub(crate) segment: Duration,
    /// Key `key_file`: HLS AES-128: the master key (32 hex digits, mode 0600 or narrower),
    /// relative to the config file; each key period's key is derived from it. Default none
    /// (segments served clear).
    pub(crate) key_file: Option<PathBuf>,
    /// Key `key_period`: how long one HLS key is used. Default `"10m"`, 1m..=1d.
    pub(crate) key_period: Duration,
    /// Key `encrypt_on_disk`: segments are written to disk already encrypted (as HLS
    /// serves them, with `key_file`'s keys), so the disk holds no clear picture and serving
    /// costs no encryption. Default `false`; `true` needs `key_file`.
    pub(crate) encrypt_on_disk: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    dir: Option<PathBuf>,
    keep: Option<HumanDuration>,
    max_bytes: Option<toml::Value>,
    segment: Option<HumanDuration>,
    key_file: Option<PathBuf>,
    key_period: Option<HumanDuration>,
    encrypt_on_disk: Option<bool>,
}

/// A size in bytes: `"200G"`, `"1.5Ti"`, `"500MB"`, or a bare integer.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix('B').unwrap_or(t);
    let (number, scale) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let scale = match &t[i..] {
                "k" | "K" => 1_000,
                "M" => 1_000_000,
                "G" => 1_000_000_000,
                "T" => 1_000_000_000_000,
                "Ki" => 1 << 10,
                "Mi" => 1 << 20,
                "Gi" => 1 << 30,
                "Ti" => 1 << 40,
                other => {
                    return Err(format!(
                        "unknown unit `{other}` in `{text}`, expected k, M, G, T, Ki, Mi, Gi or Ti"
                    ))
                }
            };
            (t[..i].trim(), scale)
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as \"200G\""))?;
    let bytes = value * scale as f64;
    if !(bytes.is_finite() && (0.0..1e19).contains(&bytes)) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// Converts `[channel.archive]` at `owner.archive`; `dir` defaults to `archive` in
/// `state_dir`. `None` iff an error was reported.
pub(super) fn archive(
    value: toml::Value,
    owner: &str,
    base_dir: &Path,
    state_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<ArchiveConfig> {
    let path = format!("{owner}.archive");
    let raw: RawArchive = match value.try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml(&path, &err);
            return None;
        }
    };
    let before = diag.len();
    // Out of range is reported (and the whole table refused below).
    let mut time = |v: Option<HumanDuration>, key: &str, default: Duration, min, max| {
        super::channel::interval(v, format!("{path}.{key}"), default, min, max, diag)
            .unwrap_or(default)
    };
    let s = Duration::from_secs;
    let keep = time(raw.keep, "keep", s(7 * 86_400), s(60), s(400 * 86_400));
    let segment = time(raw.segment, "segment", s(4), s(2), s(6));
    let key_period = time(raw.key_period, "key_period", s(600), s(60), s(86_400));
    let max_bytes = match raw.max_bytes {
        None => None,
        Some(toml::Value::Integer(n)) if n > 0 => Some(n as u64),
        Some(toml::Value::String(t)) => match parse_bytes(&t) {
            Ok(n) if n > 0 => Some(n),
            Ok(_) => {
                diag.push(format!("{path}.max_bytes"), "must be more than 0");
                None
            }
            Err(e) => {
                diag.push(format!("{path}.max_bytes"), e);
                None
            }
        },
        Some(other) => {
            diag.push(
                format!("{path}.max_bytes"),
                format!("{other}: expected a size such as \"200G\" or a positive integer"),
            );
            None
        }
    };
    let dir = match raw.dir {
        Some(d) if d.as_os_str().is_empty() => {
            diag.push(format!("{path}.dir"), "empty path");
            PathBuf::new()
        }
        Some(d) => base_dir.join(d),
        None => state_dir.join("archive"),
    };
    let key_file = match raw.key_file {
        Some(k) if k.as_os_str().is_empty() => {
            diag.push(format!("{path}.key_file"), "empty path");
            None
        }
        k => k.map(|k| base_dir.join(k)),
    };
    let encrypt_on_disk = raw.encrypt_on_disk.unwrap_or(false);
    if encrypt_on_disk && key_file.is_none() {
        diag.push(
            format!("{path}.encrypt_on_disk"),
            "needs `key_file` (the master key the segments are encrypted with)",
        );
    }
    (diag.len() == before).then_some(ArchiveConfig {
        dir,
        keep,
        max_bytes,
        segment,
        key_file,
        key_period,
        encrypt_on_disk,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("200G"), Ok(200_000_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("5X").unwrap_err().contains("unknown unit `X`"));
        assert!(parse_bytes("G").is_err());
        assert!(parse_bytes("-1G").is_err());
    }
}
