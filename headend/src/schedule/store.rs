//! The schedule store: one human-editable TOML file per channel and date, in a directory the
//! daemon owns (`{dir}/{channel}/{date}.toml`; format in `epg::schedule`).
//!
//! - Every write is validated first, then made atomic (`outfile::write_atomic`): the new text
//!   goes to a temporary file in the same directory, is fsynced, renamed over the old file,
//!   and the directory is fsynced. A crash at any point leaves the old file or the new one,
//!   never a torn one; a failed write (a full or failing disk) leaves the old one in force
//!   and no temporary file, answers [`StoreError::Io`] naming the file and the OS error, and
//!   raises the store's [`Alarm`], cleared by the next write that succeeds.
//! - Every write bumps the revision, and the revision it replaces is kept under
//!   `{dir}/{channel}/.history/{date}.r{N}.toml`, so `undo` can bring it back (as a new
//!   revision, so an undo can itself be undone).
//! - The revision is the precondition for a write: a writer that read revision 7 can only
//!   replace revision 7. Two schedulers editing at once: one wins, the other gets
//!   [`StoreError::Conflict`] with the current revision, and nothing is overwritten silently.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::NaiveDate;
use epg::schedule::{parse, Day, DayErrors};

use crate::alarm::Alarm;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The channel id cannot name a directory.
    #[error("invalid channel id `{0}`")]
    BadChannel(String),
    /// Someone else wrote first.
    #[error("conflict: the schedule of {channel} {date} is at revision {current}, not {expected}")]
    Conflict {
        channel: String,
        date: NaiveDate,
        expected: u64,
        current: u64,
    },
    /// The new content is not a valid schedule.
    #[error("{path}: rejected, nothing changed:\n{errors}")]
    Invalid { path: String, errors: DayErrors },
    /// The file on disk does not parse (edited by hand into a broken state).
    #[error("{path}: {errors}")]
    Corrupt { path: String, errors: DayErrors },
    /// Nothing to undo.
    #[error("{channel} {date}: no earlier revision to go back to")]
    NoHistory { channel: String, date: NaiveDate },
    /// The shared copy (a fleet's etcd) could not be reached: nothing changed.
    #[error("the fleet's shared schedules cannot be reached: {0}; nothing changed")]
    Unshared(String),
    /// File system error, with the path (a full disk: [`StoreError::is_full`]).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// No space left (ENOSPC, EDQUOT).
    pub(crate) fn is_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ))
    }
}

/// Where a write is agreed first when head-ends share their schedules (`crate::fleet`): the
/// shared copy holds each day's current revision, and the precondition is checked there,
/// atomically, so two nodes' APIs cannot both accept an edit of the same revision.
pub(crate) trait Shared: Send + Sync {
    /// Publishes `text` (revision `expected + 1` of `channel`'s `date`) if the shared copy
    /// is still at `expected` (or has none of that day yet).
    fn publish(
        &self,
        channel: &str,
        date: NaiveDate,
        expected: u64,
        text: &str,
    ) -> Result<(), SharedRefusal>;
}

/// Why the shared copy refused a write.
#[derive(Debug)]
pub(crate) enum SharedRefusal {
    /// It is at this revision.
    Conflict(u64),
    Unreachable(String),
}

/// The schedule directory.
pub(crate) struct Store {
    dir: PathBuf,
    /// Serialises writers in this process (the daemon is the directory's only writer).
    write_lock: Mutex<()>,
    /// Writes accepted so far, so readers (the scheduler) see an edit at once.
    writes: std::sync::atomic::AtomicU64,
    /// Raised while writes fail.
    alarm: Alarm,
    /// With a fleet, where writes are agreed first.
    shared: std::sync::OnceLock<std::sync::Arc<dyn Shared>>,
}

impl Store {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            write_lock: Mutex::new(()),
            writes: Default::default(),
            alarm: Alarm::new("schedule store"),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// From now on every write is agreed with `shared` first.
    pub(crate) fn share(&self, shared: std::sync::Arc<dyn Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Takes revision `day.revision` of `channel`'s `day.date` from the shared copy, unless
    /// this store has it (or a later one) already: whether it was taken.
    pub(crate) fn mirror(&self, channel: &str, day: &Day) -> Result<bool, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.day_path(channel, day.date)?;
        let current = read_day(&path)?;
        if current.as_ref().is_some_and(|c| c.revision >= day.revision) {
            return Ok(false);
        }
        self.put_file(channel, &path, current.as_ref(), &day.to_toml())?;
        Ok(true)
    }

    /// The store's alarm: raised while its writes fail.
    pub(crate) fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    /// How many writes this store has accepted (grows with every write and undo).
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    fn channel_dir(&self, channel: &str) -> Result<PathBuf, StoreError> {
        let ok = !channel.is_empty()
            && channel.len() <= 32
            && channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(StoreError::BadChannel(channel.to_owned()));
        }
        Ok(self.dir.join(channel))
    }

    fn day_path(&self, channel: &str, date: NaiveDate) -> Result<PathBuf, StoreError> {
        Ok(self.channel_dir(channel)?.join(format!("{date}.toml")))
    }

    fn history_path(
        &self,
        channel: &str,
        date: NaiveDate,
        revision: u64,
    ) -> Result<PathBuf, StoreError> {
        Ok(self
            .channel_dir(channel)?
            .join(".history")
            .join(format!("{date}.r{revision}.toml")))
    }

    /// The schedule of `channel` on `date`; an empty day at revision 0 if there is none.
    pub(crate) fn read(&self, channel: &str, date: NaiveDate) -> Result<Day, StoreError> {
        let path = self.day_path(channel, date)?;
        read_day(&path).map(|d| {
            d.unwrap_or(Day {
                date,
                revision: 0,
                items: Vec::new(),
            })
        })
    }

    /// Revision `revision` of the schedule (the current one, or one kept in the history).
    pub(crate) fn read_revision(
        &self,
        channel: &str,
        date: NaiveDate,
        revision: u64,
    ) -> Result<Option<Day>, StoreError> {
        let current = self.read(channel, date)?;
        if current.revision == revision {
            return Ok(Some(current));
        }
        read_day(&self.history_path(channel, date, revision)?)
    }

    /// Replaces the schedule of `channel` on `day.date` if it is still at `expected`;
    /// returns the new revision.
    pub(crate) fn write(&self, channel: &str, day: &Day, expected: u64) -> Result<u64, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.day_path(channel, day.date)?;
        let current = read_day(&path)?;
        let current_rev = current.as_ref().map_or(0, |d| d.revision);
        let shared = self.shared.get();
        // Shared: the shared copy's revision is the one in force (this store may lag it).
        if current_rev != expected && shared.is_none() {
            return Err(StoreError::Conflict {
                channel: channel.to_owned(),
                date: day.date,
                expected,
                current: current_rev,
            });
        }
        let mut new = day.clone();
        new.revision = expected + 1;
        let text = new.to_toml();
        // What is written must read back as what was meant.
        if let Err(errors) = parse(&text) {
            return Err(StoreError::Invalid {
                path: path.display().to_string(),
                errors,
            });
        }
        if let Some(s) = shared {
            s.publish(channel, day.date, expected, &text)
                .map_err(|r| match r {
                    SharedRefusal::Conflict(current) => StoreError::Conflict {
                        channel: channel.to_owned(),
                        date: day.date,
                        expected,
                        current,
                    },
                    SharedRefusal::Unreachable(why) => StoreError::Unshared(why),
                })?;
        }
        self.put_file(channel, &path, current.as_ref(), &text)?;
        Ok(new.revision)
    }

    /// Writes `text` as the day's file at `path`, keeping `current` (what it replaces) in the
    /// history; the alarm follows the outcome.
    fn put_file(
        &self,
        channel: &str,
        path: &Path,
        current: Option<&Day>,
        text: &str,
    ) -> Result<(), StoreError> {
        let written = (|| {
            let history = match current {
                Some(old) => {
                    let h = self.history_path(channel, old.date, old.revision)?;
                    // Named by the schedule's file, which is what was not written.
                    outfile::write_atomic(&h, old.to_toml().as_bytes()).map_err(|e| {
                        StoreError::Io {
                            path: path.display().to_string(),
                            source: io::Error::new(
                                e.source.kind(),
                                format!("keeping the revision it replaces: {e}"),
                            ),
                        }
                    })?;
                    Some(h)
                }
                None => None,
            };
            let done = write_atomic(path, text.as_bytes());
            if let (Err(_), Some(h)) = (&done, history) {
                // The old revision is still the current one: no copy of it in the history.
                let _ = fs::remove_file(h);
            }
            done
        })();
        if let Err(e) = written {
            self.alarm.raise(format!(
                "cannot write the schedule store: {e}; the schedule in force is unchanged"
            ));
            return Err(e);
        }
        self.alarm.clear("a schedule was written");
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Puts back the revision before the current one, as a new revision (if still at
    /// `expected`); returns the new revision.
    pub(crate) fn undo(
        &self,
        channel: &str,
        date: NaiveDate,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let previous = {
            let current = self.read(channel, date)?;
            if current.revision != expected {
                return Err(StoreError::Conflict {
                    channel: channel.to_owned(),
                    date,
                    expected,
                    current: current.revision,
                });
            }
            if current.revision <= 1 {
                return Err(StoreError::NoHistory {
                    channel: channel.to_owned(),
                    date,
                });
            }
            let h = self.history_path(channel, date, current.revision - 1)?;
            match read_day(&h)? {
                Some(d) => d,
                None => {
                    return Err(StoreError::NoHistory {
                        channel: channel.to_owned(),
                        date,
                    })
                }
            }
        };
        self.write(channel, &previous, expected)
    }
}

/// Reads and parses a schedule file; `None` if it does not exist.
fn read_day(path: &Path) -> Result<Option<Day>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    parse(&text)
        .map(Some)
        .map_err(|errors| StoreError::Corrupt {
            path: path.display().to_string(),
            errors,
        })
}

/// Writes `bytes` to `path` so that a crash or a failure leaves the old content or the new,
/// never a mix, and no temporary file ([`outfile::write_atomic`]); an error names `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    outfile::write_atomic(path, bytes).map_err(|e| StoreError::Io {
        path: path.display().to_string(),
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(titles: &[&str]) -> Day {
        let mut text = String::from("date = \"2026-11-23\"\n");
        for (i, t) in titles.iter().enumerate() {
            text.push_str(&format!(
                "[[item]]\nstart = \"{:02}:00:00\"\nfile = \"media/{i}.ts\"\ntitle = \"{t}\"\n",
                8 + i
            ));
        }
        parse(&text).unwrap()
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn revisions_conflicts_and_undo() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.read("news", date()).unwrap().revision, 0);
        assert_eq!(store.write("news", &day(&["早间新闻"]), 0).unwrap(), 1);
        assert_eq!(
            store
                .write("news", &day(&["早间新闻", "午间新闻"]), 1)
                .unwrap(),
            2
        );
        // A writer still at revision 1 loses and learns the current revision.
        match store.write("news", &day(&["stale"]), 1) {
            Err(StoreError::Conflict {
                current: 2,
                expected: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let now = store.read("news", date()).unwrap();
        assert_eq!(now.items.len(), 2, "the loser changed nothing");
        assert_eq!(now.items[1].programme.title.as_deref(), Some("午间新闻"));
        // Undo brings revision 1 back as revision 3; undo again brings 2 back as 4.
        assert_eq!(store.undo("news", date(), 2).unwrap(), 3);
        assert_eq!(store.read("news", date()).unwrap().items.len(), 1);
        assert_eq!(store.undo("news", date(), 3).unwrap(), 4);
        assert_eq!(store.read("news", date()).unwrap().items.len(), 2);
        let text = fs::read_to_string(dir.path().join("news/2026-11-23.toml")).unwrap();
        assert!(
            text.starts_with("date = \"2026-11-23\"\nrevision = 4\n"),
            "{text}"
        );
        assert!(dir
            .path()
            .join("news/.history/2026-11-23.r3.toml")
            .is_file());
        assert!(matches!(
            store.read("../etc", date()),
            Err(StoreError::BadChannel(_))
        ));
    }

    #[test]
    fn a_hand_broken_file_is_reported_with_its_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("news")).unwrap();
        fs::write(
            dir.path().join("news/2026-11-23.toml"),
            "date = \"2026-11-23\"\n[[item]]\nstart = \"19:00:00\"\n",
        )
        .unwrap();
        let err = Store::new(dir.path()).read("news", date()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("news/2026-11-23.toml: line 2: item 1"),
            "{msg}"
        );
    }

    /// A full disk: the write is refused naming the file and the OS error, the schedule in
    /// force stays (on disk and in the history), no temporary file is left, the alarm is
    /// raised; once there is room again the next write goes through and clears it.
    #[test]
    fn a_full_disk_refuses_the_write_and_leaves_the_old_schedule() {
        let Some(disk) = crate::alarm::SmallDisk::mount(256 << 10) else {
            return;
        };
        let store = Store::new(disk.path().join("sched"));
        store.write("news", &day(&["one"]), 0).unwrap();
        store.write("news", &day(&["two"]), 1).unwrap();
        let before = fs::read(disk.path().join("sched/news/2026-11-23.toml")).unwrap();
        let listing = |d: &str| {
            let mut v: Vec<String> = fs::read_dir(disk.path().join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let filler = disk.fill(0);
        let e = store
            .write("news", &day(&["three", "four"]), 2)
            .unwrap_err();
        assert!(e.is_full(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(msg.contains("sched/news/"), "{msg}");
        assert!(store.alarm().state().alarm.is_some());
        assert_eq!(
            fs::read(disk.path().join("sched/news/2026-11-23.toml")).unwrap(),
            before
        );
        assert_eq!(store.read("news", date()).unwrap().revision, 2);
        assert_eq!(listing("sched/news"), vec![".history", "2026-11-23.toml"]);
        assert_eq!(listing("sched/news/.history"), vec!["2026-11-23.r1.toml"]);
        // Room again.
        fs::remove_file(filler).unwrap();
        assert_eq!(store.write("news", &day(&["three", "four"]), 2).unwrap(), 3);
        assert!(store.alarm().state().alarm.is_none());
        assert_eq!(store.alarm().state().count, 1);
    }

    /// Two writers racing from the same revision: exactly one wins each round, the other
    /// gets a conflict, and every accepted write is in the history.
    #[test]
    fn racing_writers_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::new(dir.path()));
        store.write("news", &day(&["start"]), 0).unwrap();
        let mut wins = 0;
        for round in 0..20u64 {
            let expected = store.read("news", date()).unwrap().revision;
            let handles: Vec<_> = (0..2)
                .map(|w| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let title = format!("round {round} writer {w}");
                        store.write("news", &day(&[&title]), expected)
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let conflicts = results
                .iter()
                .filter(|r| matches!(r, Err(StoreError::Conflict { .. })))
                .count();
            assert_eq!((ok, conflicts), (1, 1), "round {round}");
            wins += ok;
        }
        assert_eq!(
            store.read("news", date()).unwrap().revision,
            1 + wins as u64
        );
    }

    /// A writer killed at random moments (SIGKILL, in a child process): the file always
    /// parses, as one of the revisions written.
    #[test]
    fn a_crash_mid_write_leaves_a_whole_file() {
        if let Ok(dir) = std::env::var("HEADEND_STORE_CRASH_CHILD") {
            // The child: write as fast as possible until killed.
            let store = Store::new(&dir);
            loop {
                let rev = store.read("news", date()).unwrap().revision;
                let titles: Vec<String> = (0..50)
                    .map(|i| format!("revision {} item {i}", rev + 1))
                    .collect();
                let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
                let _ = store.write("news", &day(&refs[..(rev as usize % 50) + 1]), rev);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        for kill_after_ms in [5u64, 13, 29, 41, 67] {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "schedule::store::tests::a_crash_mid_write_leaves_a_whole_file",
                    "--nocapture",
                ])
                .env("HEADEND_STORE_CRASH_CHILD", dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(kill_after_ms + 50));
            child.kill().unwrap();
            child.wait().unwrap();
            let day = Store::new(dir.path()).read("news", date()).unwrap();
            if day.revision > 0 {
                let n = day.items.len();
                assert_eq!(
                    n,
                    (day.revision as usize - 1) % 50 + 1,
                    "revision {} whole",
                    day.revision
                );
                assert_eq!(
                    day.items[n - 1].programme.title.as_deref(),
                    Some(format!("revision {} item {}", day.revision, n - 1).as_str())
                );
            }
        }
        assert!(
            Store::new(dir.path())
                .read("news", date())
                .unwrap()
                .revision
                > 0,
            "the child wrote"
        );
    }
}
