//! A media file's duration from the stream itself (sans-IO), for the schedule: the span of
//! the presentation times of its anchor stream (the first program's first video stream, or
//! its first audio stream without video), plus one frame.
//!
//! The caller feeds the first megabytes of the file ([`Probe::head`]), which must hold the
//! PAT and PMT, then the last megabytes ([`Probe::tail`]); the middle is never read. A
//! timestamp discontinuity inside the file (a concatenation) makes the span meaningless: the
//! duration is then computed from the head alone and flagged.
//!
//! [`read_head_and_tail`] does those reads, from any `Read + Seek` the caller opened (a
//! file, a `Cursor` over an upload): the head, then the tail, each [`WINDOW_BYTES`] long,
//! or the whole source when it is no longer than both.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;

use crate::demux::{Demux, DemuxEvent};
use crate::es::{Codec, StreamClass};
use crate::pes::PesHeader;
use crate::time::{Pts, PTS_HZ};
use crate::ts::Pid;

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Duration (ns): last presentation time − first + one frame.
    pub duration_ns: u64,
    /// The anchor stream's PID in the file.
    pub anchor: Pid,
    /// Its earliest presentation time in the head: what offsets into the file count from.
    pub first_pts: Pts,
    /// Its codec.
    pub codec: Codec,
    /// Its frame (access unit) duration, 90 kHz ticks.
    pub frame_90k: u64,
    /// The largest PTS − DTS of its random access points in the head (90 kHz): how long after
    /// an entry picture is decoded it is presented. 0 without B-frames.
    pub reorder_90k: u64,
    /// Presentation times jumped between head and tail (more than the bytes in between can
    /// hold at any sane rate): the duration covers the head only.
    pub discontinuous: bool,
}

/// Why a probe found no duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No transport stream packets.
    #[error("not an MPEG transport stream")]
    NotTs,
    /// No PAT, or no PMT for its first program, in the head.
    #[error("no PAT/PMT in the first {bytes} bytes")]
    NoProgram {
        /// Head bytes read.
        bytes: u64,
    },
    /// The program has no video or audio stream.
    #[error("program {program} has no video or audio stream")]
    NoStreams {
        /// Program number.
        program: u16,
    },
    /// The anchor stream carries no presentation times.
    #[error("PID {pid} carries no presentation time stamps")]
    NoTimestamps {
        /// The anchor PID.
        pid: Pid,
    },
}

/// Bytes read from each end of a file: 4 MiB.
pub const WINDOW_BYTES: u64 = 4 << 20;

/// Why [`read_head_and_tail`] found no duration: the source could not be read, or its bytes
/// hold none. Each says only what went wrong, for the caller to add which file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeReadError {
    /// Reading or seeking the source failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bytes read hold no duration.
    #[error("{0}")]
    Media(#[from] ProbeError),
}

/// Probes `source` from its first and last `window` bytes (the middle is never read), or
/// whole when it is no longer than `2 * window`. Reads from the start, wherever `source`
/// stands.
pub fn read_head_and_tail(
    mut source: impl Read + Seek,
    window: u64,
) -> Result<ProbeInfo, ProbeReadError> {
    let len = source.seek(SeekFrom::End(0))?;
    source.seek(SeekFrom::Start(0))?;
    let whole = len <= window.saturating_mul(2);
    let mut head = Vec::new();
    (&mut source)
        .take(if whole { len } else { window })
        .read_to_end(&mut head)?;
    let read = head.len() as u64;
    let mut p = Probe::new();
    p.head(Bytes::from(head));
    if !whole {
        // len > 2 * window >= window + read: the tail starts after the head.
        let mut tail = Vec::new();
        source.seek(SeekFrom::Start(len - window))?;
        source.take(window).read_to_end(&mut tail)?;
        p.tail(Bytes::from(tail), len - window - read);
    }
    Ok(p.result()?)
}

/// Probes one file: [`Probe::head`], then [`Probe::tail`] (optional for short files read
/// whole), then [`Probe::result`].
#[derive(Default)]
pub struct Probe {
    demux: Demux,
    program: Option<u16>,
    /// The anchor stream; `Some(None)` once the program is known to have none.
    anchor: Option<Option<(Pid, Codec)>>,
    first: Option<Pts>,
    /// Smallest and largest presentation time in the head, in ticks since `first` (the first
    /// one read: in decode order, later pictures may be presented earlier).
    head_min: i64,
    head_span: i64,
    tail_span: Option<i64>,
    /// Smallest step either way between consecutive presentation times.
    frame: Option<i64>,
    last: Option<Pts>,
    reorder: i64,
    in_tail: bool,
    head_bytes: u64,
    gap_bytes: u64,
}

impl Probe {
    /// A new probe.
    pub fn new() -> Probe {
        Probe::default()
    }

    /// The first bytes of the file.
    pub fn head(&mut self, data: Bytes) {
        self.head_bytes += data.len() as u64;
        self.push(data);
    }

    /// The last bytes of the file; `skipped` bytes lie between the head and this tail.
    pub fn tail(&mut self, data: Bytes, skipped: u64) {
        self.demux.finish();
        self.in_tail = true;
        self.gap_bytes = skipped;
        self.last = None;
        self.push(data);
    }

    fn push(&mut self, data: Bytes) {
        let mut demux = std::mem::take(&mut self.demux);
        demux.push(data, &mut |ev| self.on_event(ev));
        self.demux = demux;
    }

    fn on_event(&mut self, ev: DemuxEvent<'_>) {
        match ev {
            DemuxEvent::Pat(pat) if self.program.is_none() => {
                self.program = pat.programs.first().map(|(n, _)| *n);
            }
            DemuxEvent::Pmt { pmt, .. }
                if Some(pmt.program_number) == self.program && self.anchor.is_none() =>
            {
                let pick = |class| {
                    pmt.streams.iter().find_map(|es| {
                        let codec = Codec::of(es);
                        (codec.class() == class).then_some((es.pid, codec))
                    })
                };
                self.anchor = Some(pick(StreamClass::Video).or_else(|| pick(StreamClass::Audio)));
            }
            DemuxEvent::Packet { packet, .. } => {
                let Some(Some((pid, _))) = self.anchor else {
                    return;
                };
                if packet.pid() != pid || !packet.pusi() {
                    return;
                }
                let Some(h) = PesHeader::parse(packet.payload()) else {
                    return;
                };
                let Some(pts) = h.pts else { return };
                // The entry delay of random access points (random_access_indicator set, as
                // muxers mark key frames): PTS − DTS of the pictures an item can start on.
                let rai = packet
                    .adaptation_field()
                    .is_some_and(|af| af.random_access());
                if rai && !self.in_tail {
                    let d = h.dts.map_or(0, |dts| pts.since(dts));
                    if (0..PTS_HZ as i64).contains(&d) {
                        self.reorder = self.reorder.max(d);
                    }
                }
                if let Some(prev) = self.last {
                    // In decode order, B-frames make the steps jump back and forth; the
                    // smallest step either way is one frame.
                    let step = pts.since(prev).abs();
                    if step > 0 && step < PTS_HZ as i64 {
                        self.frame = Some(self.frame.map_or(step, |f| f.min(step)));
                    }
                }
                self.last = Some(pts);
                let first = *self.first.get_or_insert(pts);
                let span = pts.since(first);
                if self.in_tail {
                    self.tail_span = Some(self.tail_span.map_or(span, |s| s.max(span)));
                } else {
                    self.head_min = self.head_min.min(span);
                    self.head_span = self.head_span.max(span);
                }
            }
            _ => {}
        }
    }

    /// The duration, or why there is none.
    pub fn result(&self) -> Result<ProbeInfo, ProbeError> {
        let stats = self.demux.stats();
        if stats.packets == 0 {
            return Err(ProbeError::NotTs);
        }
        let Some(found) = self.anchor else {
            return Err(ProbeError::NoProgram {
                bytes: self.head_bytes,
            });
        };
        let Some((anchor, codec)) = found else {
            return Err(ProbeError::NoStreams {
                program: self.program.unwrap_or(0),
            });
        };
        if self.first.is_none() {
            return Err(ProbeError::NoTimestamps { pid: anchor });
        }
        let frame = self.frame.unwrap_or(3600);
        // The tail is plausible if its span lies beyond the head's and within what the
        // skipped bytes could hold at 10 kbit/s (anything slower is no TV).
        let max_gap = (self.gap_bytes + self.head_bytes) as i64 * 8 * PTS_HZ as i64 / 10_000;
        let (span, discontinuous) = match self.tail_span {
            Some(t) if t >= self.head_span && t - self.head_span <= max_gap => (t, false),
            Some(_) => (self.head_span, true),
            None => (self.head_span, false),
        };
        let ticks = (span - self.head_min + frame) as u64;
        let first_pts = self.first.map_or(Pts::new(0), |f| f.add(self.head_min));
        Ok(ProbeInfo {
            duration_ns: ticks * 1_000_000_000 / PTS_HZ,
            anchor,
            first_pts,
            codec,
            frame_90k: frame as u64,
            reorder_90k: self.reorder as u64,
            discontinuous,
        })
    }
}
