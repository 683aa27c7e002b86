//! The alerts on air or queued, kept on disk so that a restart (a crash, systemd, an
//! upgrade) puts them back on air until their expiry or cancel: one JSON file per alert in
//! `{audit_log}.active/` (its verified message, any updates, when it was accepted and when it
//! expires), written atomically, removed when the alert ends.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use epg::alert::Alert;
use serde_json::{json, Value};

/// The kept alerts: the directory, and which file is which live alert.
pub(super) struct Active {
    dir: PathBuf,
    files: Mutex<HashMap<u64, PathBuf>>,
}

/// An alert read back at start.
pub(super) struct Kept {
    pub(super) file: PathBuf,
    /// The message as verified, then its updates in order.
    pub(super) bodies: Vec<String>,
    pub(super) accepted: DateTime<Utc>,
    pub(super) expires: DateTime<Utc>,
    /// Its number when it was accepted (files kept before numbers were: none).
    pub(super) seq: Option<u64>,
}

impl Active {
    /// The directory beside `audit_log` (created).
    pub(super) fn open(audit_log: &Path) -> io::Result<Active> {
        let dir = PathBuf::from(format!("{}.active", audit_log.display()));
        fs::create_dir_all(&dir)?;
        Ok(Active {
            dir,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps accepted alert `seq` (`text`: its message as verified).
    pub(super) fn keep(
        &self,
        seq: u64,
        alert: &Alert,
        text: &str,
        accepted: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> io::Result<()> {
        let digest =
            epg::alert::sign::sm3(format!("{}\n{}", alert.sender, alert.identifier).as_bytes());
        let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{name}.json"));
        let v = json!({
            "sender": alert.sender,
            "identifier": alert.identifier,
            "accepted": accepted.to_rfc3339(),
            "expires": expires.to_rfc3339(),
            "bodies": [text],
            "seq": seq,
        });
        write_atomically(&path, &v)?;
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seq, path);
        Ok(())
    }

    /// Alert `seq` was updated by `text`, and now expires at `expires`.
    pub(super) fn update(&self, seq: u64, text: &str, expires: DateTime<Utc>) -> io::Result<()> {
        let Some(path) = self.file(seq) else {
            return Ok(());
        };
        let mut v: Value = serde_json::from_slice(&fs::read(&path)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Some(bodies) = v["bodies"].as_array_mut() {
            bodies.push(text.into());
        }
        v["expires"] = expires.to_rfc3339().into();
        write_atomically(&path, &v)
    }

    /// Alert `seq` ended: no longer kept.
    pub(super) fn forget(&self, seq: u64) {
        let path = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seq);
        if let Some(p) = path {
            if let Err(e) = fs::remove_file(&p) {
                tracing::warn!(file = %p.display(), error = %e, "an ended alert's file cannot be removed");
            }
        }
    }

    /// Every alert kept, oldest first (at start); what does not read is logged and left.
    pub(super) fn take_all(&self) -> Vec<Kept> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        for e in entries.flatten() {
            let file = e.path();
            if file.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match read_kept(&file) {
                Ok(k) => kept.push(k),
                Err(why) => {
                    tracing::error!(file = %file.display(), error = %why, "a kept alert cannot be read; not restored")
                }
            }
        }
        kept.sort_by_key(|k| k.accepted);
        kept
    }

    /// `kept` is live again as `seq`; or, with `None`, it is not (expired while stopped):
    /// its file goes.
    pub(super) fn rekey(&self, kept: &Kept, seq: Option<u64>) {
        match seq {
            Some(seq) => {
                self.files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(seq, kept.file.clone());
            }
            None => {
                let _ = fs::remove_file(&kept.file);
            }
        }
    }

    fn file(&self, seq: u64) -> Option<PathBuf> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&seq)
            .cloned()
    }
}

fn read_kept(file: &Path) -> Result<Kept, String> {
    let data = fs::read(file).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
    let time = |key: &str| {
        v[key]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("no `{key}` time"))
    };
    let bodies: Vec<String> = v["bodies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if bodies.is_empty() {
        return Err("no message".to_owned());
    }
    Ok(Kept {
        file: file.to_owned(),
        bodies,
        accepted: time("accepted")?,
        expires: time("expires")?,
        seq: v["seq"].as_u64(),
    })
}

/// Written whole or not at all: a temporary file beside it, synced, renamed over it.
fn write_atomically(path: &Path, v: &Value) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let done = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(v.to_string().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}
