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
}

impl Media {
    /// Creates the directory if it is missing.
    pub(super) fn open(dir: &Path) -> io::Result<Media> {
        std::fs::create_dir_all(dir)?;
        Ok(Media {
            dir: dir.to_owned(),
        })
    }

    /// The uploaded clip `id` (ASCII letters, digits and `-`), if there is one.
    pub(super) fn clip(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let path = self.dir.join(format!("{id}.ts"));
        (ok && path.is_file()).then_some(path)
    }

    /// Keeps `data` if it is a transport stream with a duration (probed in memory, as a
    /// file would be); written atomically (`outfile::write_atomic`: a temporary name,
    /// fsynced, renamed), so a clip is never seen half written and a failed write (a full
    /// disk) leaves nothing. A clip already kept is not written again.
    pub(super) fn store(&self, data: &[u8]) -> Result<Stored, UploadError> {
        use std::hash::{Hash, Hasher};
        let probed = read_head_and_tail(io::Cursor::new(data), WINDOW_BYTES);
        let duration_ns = match probed {
            Ok(info) if info.duration_ns > 0 => info.duration_ns,
            Ok(_) => return Err(UploadError::NotPlayable("no duration".into())),
            Err(e) => return Err(UploadError::NotPlayable(e.to_string())),
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        let id = format!("{:016x}{:x}", h.finish(), data.len());
        let path = self.dir.join(format!("{id}.ts"));
        let kept =
            std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == data.len() as u64);
        if !kept {
            outfile::write_atomic(&path, data).map_err(|e| {
                UploadError::Io(outfile::Error {
                    path: path.clone(),
                    source: e.source,
                })
            })?;
        }
        Ok(Stored {
            uri: format!("media:{id}"),
            duration_ns,
        })
    }
}
