//! Alarms of the parts around the channels whose trouble is not an event of a channel: a disk
//! that refused a write of the schedule store or of an uploaded clip, the HTTP listener at its
//! connection limit (a client flood). Like the journal's own alarm ([`crate::record::JournalHealth`]),
//! each is raised with why (the file and the OS error), logged once when it is raised and once
//! when it clears, counted, and shown by `GET /api/record` under `alarms`; it clears when the
//! part works again (the next write that succeeds; a quiet listener).

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

/// One part's alarm: cheap to clone, shared by the part and the API.
#[derive(Clone, Debug)]
pub(crate) struct Alarm(Arc<Mutex<AlarmState>>);

/// An alarm as `GET /api/record` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct AlarmState {
    /// The part: `schedule store`, `alert media`, `http`.
    pub(crate) place: &'static str,
    /// Why it is raised now; `None` when all is well.
    pub(crate) alarm: Option<String>,
    /// Since when (UTC, RFC 3339), while raised.
    pub(crate) since: Option<String>,
    /// How many times it was raised (failed writes, refused connections) in this run.
    pub(crate) count: u64,
    /// The last reason, kept after it clears.
    pub(crate) last: Option<String>,
}

impl Alarm {
    pub(crate) fn new(place: &'static str) -> Alarm {
        Alarm(Arc::new(Mutex::new(AlarmState {
            place,
            ..AlarmState::default()
        })))
    }

    /// Raises (or updates) the alarm with `why`; logged as an error when it was not raised.
    pub(crate) fn raise(&self, why: String) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.count += 1;
        if s.alarm.is_none() {
            tracing::error!(place = s.place, alarm = %why, "alarm raised");
            s.since = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        s.last = Some(why.clone());
        s.alarm = Some(why);
    }

    /// Clears the alarm (logged when it was raised): `how` the part works again.
    pub(crate) fn clear(&self, how: &str) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(was) = s.alarm.take() {
            tracing::warn!(place = s.place, was = %was, "alarm cleared: {how}");
            s.since = None;
        }
    }

    pub(crate) fn state(&self) -> AlarmState {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A small disk for tests of a full one: a tmpfs of a given size, unmounted when dropped.
#[cfg(test)]
pub(crate) struct SmallDisk(tempfile::TempDir);

#[cfg(test)]
impl SmallDisk {
    /// `None` (the test skips that part, saying so) when it cannot be mounted (not root).
    pub(crate) fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping the full-disk part: cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(SmallDisk(dir))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Fills it but for about `leave` bytes; returns the filler file (remove it to free).
    pub(crate) fn fill(&self, leave: u64) -> std::path::PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            use std::io::Write;
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        drop(f);
        let len = std::fs::metadata(&filler).unwrap().len();
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .and_then(|f| f.set_len(len.saturating_sub(leave)));
        filler
    }
}

#[cfg(test)]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_counted_cleared_and_the_last_reason_kept() {
        let a = Alarm::new("schedule store");
        assert!(a.state().alarm.is_none());
        a.raise("sched/news/2026-11-23.toml: No space left on device".into());
        a.raise("sched/news/2026-11-24.toml: No space left on device".into());
        let s = a.state();
        assert_eq!(s.count, 2);
        assert!(s.alarm.as_deref().unwrap().contains("11-24"));
        assert!(s.since.is_some());
        a.clear("a write succeeded");
        let s = a.state();
        assert!(s.alarm.is_none() && s.since.is_none());
        assert!(s.last.as_deref().unwrap().contains("11-24"));
    }
}
