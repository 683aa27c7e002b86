//! Append-only JSON-lines files (the alert audit log, the stoppage record): read back whole
//! lines, skipping what a crash or a full disk tore, and reopened for appending so the next
//! line starts a line of its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde_json::Value;

/// The lines of the file at `path` that parse, with their line numbers (1-based). A line
/// that is not UTF-8 or not JSON (a torn write) is skipped with a warning naming `what`
/// and the line. A missing file, or one that is not a regular file, has none. Also says
/// whether the last line is torn (no newline at the end).
pub(crate) fn read(path: &Path, what: &str) -> (Vec<(usize, Value)>, bool) {
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    let Some(data) = regular.then(|| std::fs::read(path)).and_then(Result::ok) else {
        return (Vec::new(), false);
    };
    let torn_end = data.last().is_some_and(|b| *b != b'\n');
    let mut lines = Vec::new();
    for (i, raw) in data.split(|b| *b == b'\n').enumerate() {
        // Read as bytes: a line torn inside a UTF-8 character is skipped like any other
        // that does not parse, and never stops the start.
        let Ok(line) = std::str::from_utf8(raw) else {
            tracing::warn!(file = %path.display(), line = i + 1, "{what}: a line is not UTF-8 (torn write?); skipped");
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => lines.push((i + 1, v)),
            Err(e) => {
                tracing::warn!(file = %path.display(), line = i + 1, error = %e, "{what}: a line does not parse (torn write?); skipped")
            }
        }
    }
    (lines, torn_end)
}

/// Opens `path` for appending, creating it and its directory; a torn last line
/// (`torn_end`, from [`read`]) is ended first, changing nothing already there.
pub(crate) fn open_append(path: &Path, torn_end: bool) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if torn_end {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(file)
}
