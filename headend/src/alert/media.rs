//! Clips uploaded for later alerts (`POST /api/alerts/media`), kept in `[alerts] media_dir`
//! under their content hash as `ID.ts`, and named by alerts as `media:ID`.

use std::io;
use std::path::{Path, PathBuf};

use playout::probe::{read_head_and_tail, WINDOW_BYTES};

/// The directory of uploaded clips.
pub(super) struct Media {
    dir: PathBuf,
}

/// A clip kept.
pub(super) struct Stored {
    /// What an alert names it by, `media:ID`.
    pub(super) uri: String,
    pub(super) duration_ns: u64,
}

/// Why an upload was not kept.
pub(super) enum UploadError {
    /// The directory cannot be written: the file and the OS error (a full disk:
    /// [`outfile::Error::is_full`]).
    Io(outfile::Error),
    /// The bytes are not a playable transport stream: why.
    NotPlayable(String),
    /// Keeping it would take the clips past `[alerts] media_quota_mb`: what they take, the
    /// quota.
    Quota { kept: u64, quota: u64 },
}

impl Media {
    /// Creates the directory if it is missing.
    pub(super) fn open(dir: &Path) -> io::Result<Media> {
        std::fs::create_dir_all(dir)?;
        Ok(Media {
            dir: dir.to_owned(),
        })
    }

    /// Where an upload is written as it comes (`spool`), then kept by [`Media::store_file`]:
    /// a hidden name in the directory, so the rename that keeps it stays on its disk.
    pub(super) fn spool(&self) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        self.dir.join(format!(
            ".upload-{}-{}.part",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Keeps the upload spooled at `spool` if it is a transport stream with a duration, under
    /// its content hash, within `quota` bytes for all the clips kept: fsynced, then renamed
    /// to its name, so a clip is never seen half written and a failed write (a full disk)
    /// leaves nothing. A clip already kept is not kept twice. The spool is gone afterwards
    /// either way.
    pub(super) fn store_file(&self, spool: &Path, quota: u64) -> Result<Stored, UploadError> {
        let r = self.keep_spooled(spool, quota);
        let _ = std::fs::remove_file(spool);
        r
    }

    fn keep_spooled(&self, spool: &Path, quota: u64) -> Result<Stored, UploadError> {
        use std::hash::Hasher;
        use std::io::Read;
        let io_error = |e: io::Error| {
            UploadError::Io(outfile::Error {
                path: spool.to_owned(),
                source: e,
            })
        };
        let mut file = std::fs::File::open(spool).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        let duration_ns = match read_head_and_tail(&mut file, WINDOW_BYTES) {
            Ok(info) if info.duration_ns > 0 => info.duration_ns,
            Ok(_) => return Err(UploadError::NotPlayable("no duration".into())),
            Err(e) => return Err(UploadError::NotPlayable(e.to_string())),
        };
        // The same identity as a clip hashed whole in memory: the length, then the bytes.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_usize(len as usize);
        let mut file = std::fs::File::open(spool).map_err(io_error)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io_error)?;
            if n == 0 {
                break;
            }
            h.write(&buf[..n]);
        }
        let id = format!("{:016x}{:x}", h.finish(), len);
        let path = self.dir.join(format!("{id}.ts"));
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == len) {
            return Ok(Stored {
                uri: format!("media:{id}"),
                duration_ns,
            });
        }
        let kept = self.kept_bytes();
        if kept + len > quota {
            return Err(UploadError::Quota { kept, quota });
        }
        // Whole on the disk before it takes its name.
        std::fs::OpenOptions::new()
            .write(true)
            .open(spool)
            .and_then(|f| f.sync_all())
            .map_err(io_error)?;
        std::fs::rename(spool, &path).map_err(|e| {
            UploadError::Io(outfile::Error {
                path: path.clone(),
                source: e,
            })
        })?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(Stored {
            uri: format!("media:{id}"),
            duration_ns,
        })
    }

    /// What the clips kept take.
    fn kept_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The uploaded clip `id` (ASCII letters, digits and `-`), if there is one.
    pub(super) fn clip(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let path = self.dir.join(format!("{id}.ts"));
        (ok && path.is_file()).then_some(path)
    }
}
