//! A media file's duration and entry delay, read from its first and last megabytes
//! (`playout::probe` does the parsing).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use playout::probe::{Probe, ProbeInfo};

/// Bytes read from each end of the file.
const PROBE_BYTES: u64 = 4 << 20;

/// Probes `path`; errors say what is wrong (missing, unreadable, not TS, no timestamps).
pub(crate) fn probe_file(path: &Path) -> Result<ProbeInfo, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut p = Probe::new();
    let mut head = Vec::new();
    (&mut f)
        .take(PROBE_BYTES.max(len.min(2 * PROBE_BYTES)))
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let read = head.len() as u64;
    p.head(Bytes::from(head));
    if len > read {
        let mut tail = Vec::new();
        f.seek(SeekFrom::Start(len - PROBE_BYTES))
            .and_then(|_| f.read_to_end(&mut tail))
            .map_err(|e| e.to_string())?;
        p.tail(Bytes::from(tail), len - PROBE_BYTES - read);
    }
    p.result().map_err(|e| e.to_string())
}
