//! Driving a [`Mux`] as fast as possible, for a fixed number of output packets: `headend
//! render`, the tests and the benches all go through this loop. It stays sans-IO: the playlist
//! items come from an [`ItemSource`] the caller supplies (files in `headend`, memory here).
//!
//! The render ends on whole access units: shortly before the end every splicer is closed with
//! a cutoff, so what has started goes out whole and the last moments are PSI, PCR and
//! stuffing.

use bytes::{Bytes, BytesMut};

use crate::mux::{Mux, MuxEvent, Underflow};
use crate::splice::{IoRequest, Splicer};
use crate::time::Ticks27M;
use crate::ts::PACKET_SIZE;

/// Answers a splicer's I/O requests for one program's playlist.
pub trait ItemSource {
    /// Does what `req` asks and hands the result to `splicer`
    /// ([`Splicer::handle_opened`], [`Splicer::handle_data`], ...).
    fn serve(&mut self, splicer: &mut Splicer, now: Ticks27M, req: IoRequest);
}

/// Playlist items held in memory; `None` stands for an item that cannot be opened.
/// Reads hand out zero-copy slices of `chunk` bytes.
#[derive(Clone, Debug)]
pub struct MemorySource {
    items: Vec<Option<Bytes>>,
    chunk: usize,
    open: Option<(usize, usize)>,
}

impl MemorySource {
    /// Reads of 1024 packets.
    pub fn new(items: Vec<Option<Bytes>>) -> MemorySource {
        MemorySource::with_chunk(items, 1024 * PACKET_SIZE)
    }

    /// Reads of `chunk` bytes (at least 1).
    pub fn with_chunk(items: Vec<Option<Bytes>>, chunk: usize) -> MemorySource {
        MemorySource {
            items,
            chunk: chunk.max(1),
            open: None,
        }
    }
}

impl ItemSource for MemorySource {
    fn serve(&mut self, splicer: &mut Splicer, now: Ticks27M, req: IoRequest) {
        match req {
            IoRequest::Open { item, from_byte } => match self.items.get(item) {
                Some(Some(data)) => {
                    let from = (from_byte as usize).min(data.len());
                    self.open = Some((item, from));
                    splicer.handle_opened(item);
                }
                _ => {
                    self.open = None;
                    splicer.handle_open_failed(now, item, "no such item");
                }
            },
            IoRequest::Read { item } => {
                let data = match (self.open, self.items.get(item)) {
                    (Some((open, pos)), Some(Some(data))) if open == item => {
                        let end = (pos + self.chunk).min(data.len());
                        self.open = Some((item, end));
                        data.slice(pos..end)
                    }
                    _ => {
                        splicer.handle_eof(now, item, Some("item is not open"));
                        return;
                    }
                };
                if data.is_empty() {
                    self.open = None;
                    splicer.handle_eof(now, item, None);
                } else {
                    splicer.handle_data(now, item, data);
                }
            }
        }
    }
}

/// Packets per [`Offline::step`] by default: 7 × 64, a whole number of UDP datagrams.
pub const BATCH: usize = 7 * 64;

/// Runs a muxer for `total` output packets with blocking sources.
pub struct Offline<S> {
    mux: Mux,
    sources: Vec<S>,
    total: u64,
    close_at: u64,
    closed: bool,
}

impl<S: ItemSource> Offline<S> {
    /// `sources[i]` serves the muxer's program `i`; the render is `total` packets long.
    pub fn new(mux: Mux, sources: Vec<S>, total: u64) -> Offline<S> {
        let mut run = Offline {
            mux,
            sources,
            total: 0,
            close_at: 0,
            closed: false,
        };
        run.set_total(total);
        run
    }

    /// Sets the length of the render, in packets from the start (before it has begun).
    pub fn set_total(&mut self, total: u64) {
        // Close 3 s before the end (a quarter of short renders): room for the read-ahead to
        // drain and for the last access units to complete.
        let rate = self.mux.config().muxrate_bps;
        let close_slots = (3 * rate / (8 * PACKET_SIZE as u64)).min(total / 4);
        self.total = total;
        self.close_at = total - close_slots;
    }

    /// Packets in a render of `duration` at `muxrate_bps`.
    pub fn packets_for(duration: std::time::Duration, muxrate_bps: u64) -> u64 {
        (duration.as_nanos() * u128::from(muxrate_bps) / (8 * PACKET_SIZE as u128 * 1_000_000_000))
            as u64
    }

    /// The muxer (for its stats and events).
    pub fn mux(&mut self) -> &mut Mux {
        &mut self.mux
    }

    /// The sources.
    pub fn sources(&self) -> &[S] {
        &self.sources
    }

    /// Whether all `total` packets are out.
    pub fn done(&self) -> bool {
        self.mux.slot() >= self.total
    }

    /// Serves pending I/O, then appends up to `max` packets to `out`; returns how many.
    /// Always makes progress until [`Offline::done`].
    pub fn step(&mut self, out: &mut BytesMut, max: usize) -> usize {
        if self.done() {
            return 0;
        }
        if !self.closed && self.mux.slot() >= self.close_at {
            let end = self.mux.slot_time(self.total);
            let margin = (end - self.mux.now()) / 2;
            self.mux.close(end - margin);
            self.closed = true;
        }
        while let Some((p, req)) = self.mux.poll_io() {
            let now = self.mux.now();
            self.sources[p].serve(self.mux.program_mut(p), now, req);
        }
        let limit = if self.closed {
            self.total
        } else {
            self.close_at.max(self.mux.slot() + 1)
        };
        let want = (max as u64).min(limit - self.mux.slot()) as usize;
        let n = self.mux.emit(out, want, Underflow::Wait);
        if n == 0 && want > 0 {
            // Starved with nothing left to read (cannot happen with blocking sources): never
            // spin, stuff one packet.
            return self.mux.emit(out, 1, Underflow::Stuff);
        }
        n
    }

    /// Runs to the end, appending everything to `out`; returns the events (for tests and
    /// benches on short renders).
    pub fn run_to_end(&mut self, out: &mut BytesMut) -> Vec<MuxEvent> {
        let mut events = Vec::new();
        while !self.done() {
            self.step(out, BATCH);
            while let Some(e) = self.mux.poll_event() {
                events.push(e);
            }
        }
        events
    }
}
