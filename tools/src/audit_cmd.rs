//! `hectl audit verify FILE`: checks the hash chain of the daemon's API audit trail (`[http]
//! audit_log`) on its own, without the daemon: every line is JSON with `seq` one more than the
//! whole line before it and `prev` the SHA-256 (hex) of that line as written (64 zeros for
//! the first). A line edited, deleted or put in breaks the chain at the line after it; each
//! break is named by line number. A line that is not JSON (a write torn by a crash) is named
//! too; the daemon chains the next line to the whole line before it.

use std::path::Path;
use std::process::ExitCode;

use sha2::{Digest, Sha256};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a verification found.
pub(crate) struct Verdict {
    /// Whole lines checked.
    pub(crate) lines: usize,
    /// Breaks of the chain, by line (1-based).
    pub(crate) breaks: Vec<String>,
    /// Lines that are not JSON.
    pub(crate) torn: Vec<usize>,
    /// The hash of the last whole line (to compare with a copy kept elsewhere).
    pub(crate) head: String,
}

pub(crate) fn verify(data: &[u8]) -> Verdict {
    let mut v = Verdict {
        lines: 0,
        breaks: Vec::new(),
        torn: Vec::new(),
        head: GENESIS.to_owned(),
    };
    let mut seq = 0u64;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            v.torn.push(n);
            continue;
        };
        v.lines += 1;
        let prev = value.get("prev").and_then(|p| p.as_str()).unwrap_or("");
        if prev != v.head {
            v.breaks.push(format!(
                "line {n}: `prev` is not the hash of the line before it (a line edited, deleted or put in before line {n})"
            ));
        }
        let s = value.get("seq").and_then(serde_json::Value::as_u64);
        if s != Some(seq + 1) {
            v.breaks.push(format!(
                "line {n}: `seq` {} where {} was due",
                s.map_or("missing".to_owned(), |s| s.to_string()),
                seq + 1
            ));
        }
        seq = s.unwrap_or(seq + 1);
        v.head = Sha256::digest(line)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
    v
}

pub(crate) fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let data = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let v = verify(&data);
    let shown = file.display();
    for n in &v.torn {
        println!("{shown}: line {n}: not JSON (a torn write?)");
    }
    for b in &v.breaks {
        println!("{shown}: {b}");
    }
    if v.breaks.is_empty() {
        println!(
            "{shown}: OK ({} lines, the chain whole; last line's hash {})",
            v.lines, v.head
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{shown}: the chain is broken ({} break(s))", v.breaks.len());
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &str) -> String {
        format!("{{\"prev\":\"{prev}\",\"seq\":{seq},\"who\":\"ann\"}}")
    }

    fn hash(l: &str) -> String {
        Sha256::digest(l.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A whole chain verifies; a line edited or deleted breaks it at the line after; a torn
    /// line is named without breaking what the daemon chained past it.
    #[test]
    fn the_chain_finds_edits_and_deletions() {
        let a = line(1, GENESIS);
        let b = line(2, &hash(&a));
        let c = line(3, &hash(&b));
        let whole = format!("{a}\n{b}\n{c}\n");
        let v = verify(whole.as_bytes());
        assert!(v.breaks.is_empty() && v.lines == 3 && v.head == hash(&c));
        let edited = whole.replacen("ann", "eve", 1);
        assert_eq!(verify(edited.as_bytes()).breaks.len(), 1);
        assert!(verify(edited.as_bytes()).breaks[0].starts_with("line 2:"));
        let deleted = format!("{a}\n{c}\n");
        let v = verify(deleted.as_bytes());
        assert!(
            v.breaks.iter().any(|b| b.starts_with("line 2: `prev`")),
            "{:?}",
            v.breaks
        );
        let torn = format!("{a}\n{b}\n{{\"seq\":3,\"pr\n{c}\n");
        let v = verify(torn.as_bytes());
        assert_eq!((v.torn.clone(), v.breaks.len()), (vec![3], 0));
    }
}
