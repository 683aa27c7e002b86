//! Shared setup for the benches (`cargo bench -p benches`): the fixtures and in-memory
//! renders through the same [`Offline`] driver as `headend render`. The peer comparison
//! against ffmpeg and TSDuck is `scripts/bench-peers`; the figures are in `BENCHMARKS.md`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playout::mux::{Mux, MuxConfig};
use playout::offline::{MemorySource, Offline, BATCH};
use playout::splice::{SpliceConfig, Splicer};

pub mod live;

/// The workspace's `fixtures/media` directory.
pub fn media_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/media"))
}

/// A fixture file from `fixtures/media`, read whole.
///
/// # Panics
/// When the file cannot be read (the benches need their fixtures).
pub fn fixture(name: &str) -> Bytes {
    let path = media_dir().join(name);
    match std::fs::read(&path) {
        Ok(data) => Bytes::from(data),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// Fixtures `names` as a playlist.
pub fn playlist(names: &[&str]) -> Vec<Option<Bytes>> {
    names.iter().map(|n| Some(fixture(n))).collect()
}

/// A single-channel render of `duration` of output at `muxrate_bps` over `items` (looped),
/// ready to [`Offline::step`].
pub fn render(
    items: Vec<Option<Bytes>>,
    muxrate_bps: u64,
    duration: Duration,
) -> Offline<MemorySource> {
    let splicer = Splicer::new(SpliceConfig::new(101), items.len());
    let mux = Mux::new(MuxConfig::new(muxrate_bps), vec![splicer]);
    let total = Offline::<MemorySource>::packets_for(duration, muxrate_bps);
    Offline::new(mux, vec![MemorySource::new(items)], total)
}

/// The whole output of [`render`] over the playlist a, b, c, e (looped), in memory.
pub fn rendered_abce(muxrate_bps: u64, duration: Duration) -> Bytes {
    let mut run = render(
        playlist(&["a.ts", "b.ts", "c.ts", "e.ts"]),
        muxrate_bps,
        duration,
    );
    let mut out = BytesMut::new();
    while !run.done() {
        run.step(&mut out, BATCH);
    }
    out.freeze()
}
