//! The alert audit log (安全播出 record): append-only, one JSON object per line, each line
//! written whole and fsynced before the call returns. Every line carries the instant in UTC
//! and in the configured local zone. On start the log is read back so identifiers already
//! seen stay refused (replays across restarts): [`Replays`] is that memory.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use epg::schedule::Tz;
use serde_json::{Map, Value};

/// The open audit log.
pub(crate) struct Audit {
    path: PathBuf,
    file: Mutex<File>,
    tz: Tz,
    /// The highest alert number the log names: numbering goes on after it.
    last_seq: u64,
}

/// What an existing log says: the (sender, identifier) pairs already seen.
pub(crate) type Seen = Vec<(String, String)>;

impl Audit {
    /// Opens (creating it and its directory) the log at `path`; returns what it already
    /// holds. A line that does not parse (a torn write from a crash) is skipped with a
    /// warning naming its line number; nothing is rewritten.
    pub(crate) fn open(path: &Path, tz: Tz) -> std::io::Result<(Audit, Seen)> {
        let (lines, torn_end) = crate::jsonl::read(path, "audit log");
        let mut seen = Vec::new();
        let mut last_seq = 0;
        for (_, v) in lines {
            if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                last_seq = last_seq.max(seq);
            }
            if let (Some(s), Some(id)) = (
                v.get("sender").and_then(Value::as_str),
                v.get("identifier").and_then(Value::as_str),
            ) {
                // What was acted on: an alert whose record of it failed was not, and may be
                // sent again.
                if matches!(
                    v.get("event").and_then(Value::as_str),
                    Some("accepted" | "updated" | "cancel_accepted")
                ) {
                    seen.push((s.to_owned(), id.to_owned()));
                }
            }
        }
        let file = crate::jsonl::open_append(path, torn_end)?;
        Ok((
            Audit {
                path: path.to_owned(),
                file: Mutex::new(file),
                tz,
                last_seq,
            },
            seen,
        ))
    }

    /// The highest alert number the log held when it was opened (0: none): an alert
    /// accepted after a restart is numbered after it, so its EBM_id is new.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Appends `event` (a JSON object; `utc` and `local` are added, for now unless it has
    /// an `at_utc_ns` field naming the instant) as one line, fsynced. An error is logged
    /// and returned: the caller decides whether to go on.
    pub(crate) fn record(
        &self,
        event: &str,
        mut fields: Map<String, Value>,
    ) -> std::io::Result<()> {
        let at = fields
            .remove("at_utc_ns")
            .and_then(|v| v.as_i64())
            .map_or_else(Utc::now, DateTime::from_timestamp_nanos);
        let mut line = Map::new();
        line.insert(
            "utc".into(),
            at.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        line.insert(
            "local".into(),
            at.with_timezone(&self.tz)
                .to_rfc3339_opts(SecondsFormat::Millis, false)
                .into(),
        );
        line.insert("event".into(), event.into());
        line.extend(fields);
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = f.write_all(text.as_bytes()).and_then(|()| f.sync_data());
        if let Err(e) = &result {
            tracing::error!(log = %self.path.display(), error = %e, "cannot write the alert audit log");
        }
        result
    }
}

/// The replay memory: the (sender, identifier) pairs verified so far, in this run and, read
/// back from the audit log, before it.
pub(crate) struct Replays(HashSet<(String, String)>);

impl Replays {
    /// The memory of an audit log's past ([`Audit::open`]).
    pub(crate) fn new(seen: Seen) -> Replays {
        Replays(seen.into_iter().collect())
    }

    /// Notes the pair; false if it was seen before.
    pub(crate) fn first_time(&mut self, sender: &str, identifier: &str) -> bool {
        self.0.insert((sender.to_owned(), identifier.to_owned()))
    }

    /// Forgets the pair: what it came with was not acted on (its record failed), so it may
    /// be sent again.
    pub(crate) fn forget(&mut self, sender: &str, identifier: &str) {
        self.0.remove(&(sender.to_owned(), identifier.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let (audit, seen) = Audit::open(&path, tz).unwrap();
        assert!(seen.is_empty());
        let mut m = Map::new();
        m.insert("sender".into(), "s@x".into());
        m.insert("identifier".into(), "ID-1".into());
        audit.record("accepted", m).unwrap();
        let mut m = Map::new();
        m.insert("at_utc_ns".into(), 0i64.into());
        audit.record("rejected", m).unwrap();
        drop(audit);
        // A torn line at the end does not stop the rest being read.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"event\":\"verif")
            .unwrap();
        let (_, seen) = Audit::open(&path, tz).unwrap();
        assert_eq!(seen, vec![("s@x".to_owned(), "ID-1".to_owned())]);
        let text = std::fs::read_to_string(&path).unwrap();
        let second: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["utc"], "1970-01-01T00:00:00.000Z");
        assert_eq!(second["local"], "1970-01-01T08:00:00.000+08:00");
        assert_eq!(second["event"], "rejected");
    }

    #[test]
    fn a_line_torn_inside_a_utf8_character_is_skipped_and_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let (audit, _) = Audit::open(&path, tz).unwrap();
        let mut m = Map::new();
        m.insert("sender".into(), "s@x".into());
        m.insert("identifier".into(), "ID-1".into());
        audit.record("accepted", m).unwrap();
        drop(audit);
        // A record cut inside 预 (E9 A2 84): not UTF-8, no newline.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"event\":\"verified\",\"headline\":\"\xE9\xA2")
            .unwrap();
        drop(f);
        let (audit, seen) = Audit::open(&path, tz).unwrap();
        assert_eq!(seen, vec![("s@x".to_owned(), "ID-1".to_owned())]);
        // The next record starts its own line, and reads back.
        let mut m = Map::new();
        m.insert("sender".into(), "s@x".into());
        m.insert("identifier".into(), "ID-2".into());
        audit.record("accepted", m).unwrap();
        drop(audit);
        let (_, seen) = Audit::open(&path, tz).unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1].1, "ID-2");
    }
}
