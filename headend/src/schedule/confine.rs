//! Schedule media confined to the media directory (`[schedules] media_dir`): a schedule
//! names files relative to it (`epg::schedule::media_path`: not absolute, no `..`), and what
//! it names must, once it exists, be a regular file whose real path is inside the directory's
//! (no symbolic link out of it). So the editor's token can put on air only what the media
//! directory holds, never another file the daemon can read.

use std::path::{Path, PathBuf};

/// The file `name` names in `dir`, refused with why when it would be outside it or is not a
/// regular file. A file that does not exist (yet) passes: whoever opens it later sees it.
pub(crate) fn media_file(dir: &Path, name: &str) -> Result<PathBuf, String> {
    epg::schedule::media_path(name).map_err(str::to_owned)?;
    let path = dir.join(name);
    inside(dir, &path)?;
    Ok(path)
}

/// Whether `path` (a name in `dir` that passed `epg::schedule::media_path`) is, if it
/// exists, a regular file whose real path is inside `dir`'s.
pub(crate) fn inside(dir: &Path, path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot look at it: {e}")),
        Ok(_) => {}
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve it: {e}"))?;
    let real_dir = std::fs::canonicalize(dir)
        .map_err(|e| format!("cannot resolve the media directory {}: {e}", dir.display()))?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "a symbolic link out of the media directory (to {}): name files inside it",
            real.display()
        ));
    }
    let kind = std::fs::metadata(&real)
        .map_err(|e| format!("cannot look at it: {e}"))?
        .file_type();
    if kind.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(format!("{what}, not a regular file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside: a file, one in a subdirectory, one reached through a link that stays inside.
    /// Refused: `..`, an absolute path, a link out, a directory, a FIFO. Not there yet: passes.
    #[test]
    fn only_regular_files_inside_the_media_directory() {
        let root = tempfile::tempdir().unwrap();
        let media = root.path().join("media");
        std::fs::create_dir_all(media.join("sub")).unwrap();
        std::fs::write(media.join("a.ts"), b"x").unwrap();
        std::fs::write(media.join("sub/b.ts"), b"x").unwrap();
        std::fs::write(root.path().join("secret.ts"), b"x").unwrap();
        std::os::unix::fs::symlink(media.join("sub/b.ts"), media.join("link-in.ts")).unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.ts"), media.join("link-out.ts"))
            .unwrap();
        std::os::unix::fs::symlink(root.path(), media.join("up")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(media.join("fifo.ts"))
            .status()
            .unwrap();
        assert!(made.success());
        for ok in ["a.ts", "sub/b.ts", "link-in.ts", "later.ts"] {
            assert!(media_file(&media, ok).is_ok(), "{ok}");
        }
        let refused = |name: &str| media_file(&media, name).unwrap_err();
        assert!(refused("../secret.ts").contains(".."));
        let abs = root.path().join("secret.ts").display().to_string();
        assert!(refused(&abs).contains("absolute"));
        assert!(refused("link-out.ts").contains("symbolic link out"));
        assert!(refused("up/secret.ts").contains("symbolic link out"));
        assert!(refused("sub").contains("a directory"));
        assert!(refused("fifo.ts").contains("a FIFO"));
    }
}
