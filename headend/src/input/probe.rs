//! A media file's duration and entry delay: the file opened here, read from its first and
//! last megabytes and parsed by `playout::probe`.

use std::fs::File;
use std::path::Path;

use playout::probe::{read_head_and_tail, ProbeInfo, WINDOW_BYTES};

/// Probes `path`; errors say what is wrong (missing, unreadable, not TS, no timestamps).
pub(crate) fn probe_file(path: &Path) -> Result<ProbeInfo, String> {
    let f: File = super::file::open_media(path).map_err(|e| format!("cannot open: {e}"))?;
    read_head_and_tail(f, WINDOW_BYTES).map_err(|e| e.to_string())
}
