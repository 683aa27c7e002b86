//! Output files that are never damaged, for the commands that write one (`headend render -o`,
//! `hectl scramble`, `hectl descramble`) and for the daemon's own files (schedules, uploaded
//! clips).
//!
//! - A regular file, or a path that does not exist yet, is written under a temporary name
//!   beside it, fsynced, and renamed over it when complete (then the directory is fsynced):
//!   a failure or an interruption leaves the old file, or none, never half a file. A file it
//!   replaces keeps its permissions.
//! - Through a symlink, the file it names gets the output (the temporary file goes beside
//!   that file); the link itself stays a link.
//! - `-` (stdout), devices (`/dev/null`) and FIFOs are written in place: they are never
//!   replaced by a regular file, and a rename would not make them atomic anyway.
//! - A directory is refused.
//!
//! Every error names the path it is about ([`Error`]); the OS error kind is kept, so a full
//! disk ([`Error::is_full`]) can be told from other failures.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes gathered before a write to the file (larger writes go through without a copy).
const BUFFER: usize = 64 << 10;

/// A failure, with the path it is about.
#[derive(Debug)]
pub struct Error {
    /// The file (or directory) the failed operation was on.
    pub path: PathBuf,
    /// What the OS said.
    pub source: io::Error,
}

impl Error {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| Error {
            path: path.to_owned(),
            source,
        }
    }

    /// No space left on the device, or the disk quota reached (ENOSPC, EDQUOT).
    pub fn is_full(&self) -> bool {
        matches!(
            self.source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    /// The same kind, the message naming the path.
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

/// Whether `path` means stdout.
pub fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Where an output goes (see the crate's documentation). Written through [`Write`]; it is
/// only complete after [`Sink::finish`]. Dropped without `finish` (an error, a panic), a
/// temporary file is removed and the target is left as it was.
pub struct Sink {
    w: BufWriter<Box<dyn Write + Send>>,
    /// A regular file's temporary name and its final one; `None` when written in place.
    atomic: Option<Atomic>,
    /// The path as given, for errors.
    output: PathBuf,
}

struct Atomic {
    part: PathBuf,
    target: PathBuf,
    /// The file it was opened as, to fsync before the rename.
    file: File,
}

impl Sink {
    /// Opens `output` for writing (nothing of an existing regular file is touched yet).
    pub fn open(output: &Path) -> Result<Sink, Error> {
        if is_stdout(output) {
            return Ok(Sink::in_place(output, Box::new(io::stdout())));
        }
        let target = follow(output)?;
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => Err(Error {
                path: output.to_owned(),
                source: io::Error::new(io::ErrorKind::IsADirectory, "a directory"),
            }),
            Ok(m) if !m.is_file() => {
                // A device or a FIFO: in place (a FIFO's open waits for its reader).
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(Error::at(output))?;
                Ok(Sink::in_place(output, Box::new(f)))
            }
            old => {
                let (part, file) = create_part(&target)?;
                if let Ok(m) = old {
                    // The replacement keeps the old file's permissions.
                    let _ = fs::set_permissions(&part, m.permissions());
                }
                let w = file.try_clone().map_err(Error::at(&part))?;
                Ok(Sink {
                    w: BufWriter::with_capacity(BUFFER, Box::new(w)),
                    atomic: Some(Atomic { part, target, file }),
                    output: output.to_owned(),
                })
            }
        }
    }

    fn in_place(output: &Path, w: Box<dyn Write + Send>) -> Sink {
        Sink {
            w: BufWriter::with_capacity(BUFFER, w),
            atomic: None,
            output: output.to_owned(),
        }
    }

    /// Whether the output is written in place (stdout, a device, a FIFO).
    pub fn in_place_output(&self) -> bool {
        self.atomic.is_none()
    }

    /// Complete: flushed; a regular file fsynced and renamed into place (its directory
    /// fsynced). On failure the temporary file is removed and the target left as it was.
    pub fn finish(mut self) -> Result<(), Error> {
        let flushed = self.w.flush();
        let Some(a) = self.atomic.take() else {
            return flushed.map_err(Error::at(&self.output));
        };
        let done = flushed
            .and_then(|()| a.file.sync_all())
            .map_err(Error::at(&a.part))
            .and_then(|()| fs::rename(&a.part, &a.target).map_err(Error::at(&a.target)))
            .and_then(|()| sync_dir(&a.target));
        if done.is_err() {
            let _ = fs::remove_file(&a.part);
        }
        done
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.w.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(a) = self.atomic.take() {
            let _ = fs::remove_file(&a.part);
        }
    }
}

/// Writes `bytes` to the regular file `path` (its directory created if missing) so that a
/// crash or a failure leaves the old content or the new, never a mix, and no temporary file
/// after a failure: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(Error::at(dir))?;
    }
    let mut sink = Sink::open(path)?;
    sink.write_all(bytes).map_err(Error::at(path))?;
    sink.finish()
}

/// The file `output` names: through a symlink (however many), the file it points to.
fn follow(output: &Path) -> Result<PathBuf, Error> {
    match fs::symlink_metadata(output) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(output).map_err(|e| Error {
            path: output.to_owned(),
            source: io::Error::new(e.kind(), format!("a dangling symlink ({e})")),
        }),
        _ => Ok(output.to_owned()),
    }
}

/// A new temporary file beside `target`: hidden, and unique to this process and call, so
/// two writers of the same target never share one.
fn create_part(target: &Path) -> Result<(PathBuf, File), Error> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let part = target.with_file_name(format!(
        ".{name}.{}-{}.part",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(Error::at(&part))?;
    Ok((part, file))
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    /// The directory's entries, sorted (to see that no temporary file is left).
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_regular_file_appears_only_when_complete_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ts");
        fs::write(&out, b"old").unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
        let mut s = Sink::open(&out).unwrap();
        assert!(!s.in_place_output());
        s.write_all(&[0x47; 188 * 1000]).unwrap();
        s.flush().unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"old", "untouched until finished");
        s.finish().unwrap();
        assert_eq!(fs::metadata(&out).unwrap().len(), 188 * 1000);
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(entries(dir.path()), vec!["out.ts"]);
    }

    #[test]
    fn dropped_unfinished_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ts");
        fs::write(&out, b"old").unwrap();
        let mut s = Sink::open(&out).unwrap();
        s.write_all(b"half").unwrap();
        drop(s);
        assert_eq!(fs::read(&out).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["out.ts"]);
        // A new path: nothing at all.
        let new = dir.path().join("new.ts");
        let mut s = Sink::open(&new).unwrap();
        s.write_all(b"half").unwrap();
        drop(s);
        assert_eq!(entries(dir.path()), vec!["out.ts"]);
    }

    #[test]
    fn devices_and_fifos_are_written_in_place() {
        let s = Sink::open(Path::new("/dev/null")).unwrap();
        assert!(s.in_place_output());
        s.finish().unwrap();
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        // /dev/full: the failure is the device's, and it stays a device.
        let mut s = Sink::open(Path::new("/dev/full")).unwrap();
        s.write_all(&[0; 100]).unwrap();
        let e = s.finish().unwrap_err();
        assert!(e.is_full(), "{e}");
        assert!(e.to_string().starts_with("/dev/full: "), "{e}");
        assert!(fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
        // A FIFO, with a reader.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap().len())
        };
        let mut s = Sink::open(&fifo).unwrap();
        s.write_all(&[1; 100_000]).unwrap();
        s.finish().unwrap();
        assert_eq!(reader.join().unwrap(), 100_000);
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(entries(dir.path()), vec!["fifo"]);
    }

    #[test]
    fn a_symlink_stays_a_link_and_its_file_gets_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.ts");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.ts");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut s = Sink::open(&link).unwrap();
        s.write_all(b"new content").unwrap();
        s.finish().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new content");
        assert_eq!(entries(dir.path()), vec!["link.ts", "real.ts"]);
        // Dangling: refused, named.
        let dangling = dir.path().join("dangling.ts");
        std::os::unix::fs::symlink(dir.path().join("nowhere/x.ts"), &dangling).unwrap();
        let e = Sink::open(&dangling).err().unwrap();
        assert!(e.to_string().contains("dangling symlink"), "{e}");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Sink::open(dir.path()).err().unwrap();
        assert!(e.to_string().ends_with(": a directory"), "{e}");
        assert!(entries(dir.path()).is_empty());
    }

    /// `-` is stdout: the bytes and nothing else, in a child process (the test re-runs
    /// itself).
    #[test]
    fn dash_is_stdout() {
        if std::env::var_os("OUTFILE_STDOUT_CHILD").is_some() {
            let mut s = Sink::open(Path::new("-")).unwrap();
            assert!(s.in_place_output());
            s.write_all(&[0x47; 188 * 10]).unwrap();
            s.finish().unwrap();
            std::process::exit(0);
        }
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::dash_is_stdout", "--nocapture", "-q"])
            .env("OUTFILE_STDOUT_CHILD", "1")
            .output()
            .unwrap();
        assert!(o.status.success());
        // The test harness's own lines come first.
        let (harness, data) = o.stdout.split_at(o.stdout.len() - 1880);
        assert_eq!(data, &[0x47; 1880][..]);
        assert!(!harness.contains(&0x47), "only the stream's bytes");
    }

    #[test]
    fn write_atomic_creates_the_directory_and_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file.toml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(&dir.path().join("a/b")), vec!["file.toml"]);
    }
}
