//! The audit trail of every change made through the control API (`[http] audit_log`): who
//! (the token's name), from where, what (method and path, the channel), the revision before
//! and after, and the result (the status, and why when refused). Append-only, one JSON object
//! per line, each fsynced before the answer goes out, and chained: every line carries `seq`
//! (1, 2, ...) and `prev`, the SHA-256 of the line before it as written (64 zeros for the
//! first), so a line edited, deleted or put in is found by `hectl audit verify`. A torn last
//! line (a crash mid-write) is ended and skipped at start; the chain goes on from the last
//! whole line.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The open trail.
pub(crate) struct Trail {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Opened at the first change (a daemon that changes nothing leaves no file); whether
    /// its last line is torn, to end it first.
    file: Option<File>,
    torn: bool,
    /// The SHA-256 (hex) of the last line written, and its `seq`.
    prev: String,
    seq: u64,
}

/// The SHA-256 of `line` (without its newline), in hex.
pub(crate) fn hash(line: &[u8]) -> String {
    Sha256::digest(line)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Trail {
    /// The trail at `path`, going on from its last whole line; the file (and its
    /// directory) is made at the first change.
    pub(crate) fn open(path: &Path) -> std::io::Result<Trail> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let torn = data.last().is_some_and(|b| *b != b'\n');
        let (mut prev, mut seq) = (GENESIS.to_owned(), 0);
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => {
                    seq = v.get("seq").and_then(Value::as_u64).unwrap_or(seq + 1);
                    prev = hash(line);
                }
                Err(_) => {
                    tracing::warn!(file = %path.display(), "audit trail: a line does not parse (a torn write?); the chain goes on from the line before it");
                }
            }
        }
        Ok(Trail {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                file: None,
                torn,
                prev,
                seq,
            }),
        })
    }

    /// Appends `entry` (its fields; `seq`, `utc` and `prev` are added) as one line, fsynced.
    pub(crate) fn append(&self, mut entry: Map<String, Value>) -> std::io::Result<()> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = inner.seq + 1;
        entry.insert("seq".into(), seq.into());
        entry.insert(
            "utc".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        entry.insert("prev".into(), inner.prev.clone().into());
        let mut line = serde_json::to_vec(&Value::Object(entry))?;
        let h = hash(&line);
        line.push(b'\n');
        if inner.file.is_none() {
            inner.file = Some(crate::jsonl::open_append(&self.path, inner.torn)?);
        }
        let file = inner.file.as_mut().expect("opened above");
        file.write_all(&line)?;
        file.sync_data()?;
        inner.prev = h;
        inner.seq = seq;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines chain across a reopening, and a torn last line is skipped: each `prev` is the
    /// hash of the whole line before it.
    #[test]
    fn lines_chain_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/api.jsonl");
        let entry = |what: &str| {
            let mut m = Map::new();
            m.insert("what".into(), what.into());
            m
        };
        let t = Trail::open(&path).unwrap();
        t.append(entry("one")).unwrap();
        t.append(entry("two")).unwrap();
        drop(t);
        // A crash mid-write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":3,\"wh")
            .unwrap();
        let t = Trail::open(&path).unwrap();
        t.append(entry("three")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let v: Vec<Value> = [0, 1, 3]
            .iter()
            .map(|&i| serde_json::from_str(lines[i]).unwrap())
            .collect();
        assert_eq!(v[0]["prev"], GENESIS);
        assert_eq!(v[1]["prev"], hash(lines[0].as_bytes()).as_str());
        assert_eq!(v[2]["prev"], hash(lines[1].as_bytes()).as_str());
        assert_eq!(
            (v[0]["seq"].as_u64(), v[2]["seq"].as_u64()),
            (Some(1), Some(3))
        );
    }
}
