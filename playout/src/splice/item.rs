//! One playlist item: stage A files every packet of the chosen program under its PES as it
//! is read (input clock, PES bounds, access-unit scan); stage B releases whole PES in input
//! order once each is complete and classified, deciding entry, leading-picture and damage
//! drops, output PIDs, timestamp shift and due time.

use std::collections::VecDeque;

use bytes::Bytes;

use super::pids::PidAllocator;
use super::{
    output_pmt, Damage, ItemError, OutPacket, Patch, Queued, SpliceConfig, SpliceEvent,
    SpliceStats, Timeline,
};
use crate::demux::{DamageAt, Demux, DemuxEvent};
use crate::es::{self, hevc, AccessUnit, Codec, StreamClass};
use crate::pes::PesHeader;
use crate::psi::{EsInfo, Pmt};
use crate::time::{Pcr, Pts, Ticks27M};
use crate::ts::{Pid, TsPacket, PACKET_SIZE};

/// What the stream with the least lead keeps of it when packets are sent later than the
/// input had them ([`SpliceConfig::mux_delay`]): 100 ms (27 MHz).
const LEAD_MARGIN: i128 = crate::time::SYSTEM_CLOCK_HZ as i128 / 10;
/// Bytes of a video access unit scanned for its first picture before giving up.
const SCAN_LIMIT: usize = 32 * 1024;
/// Packets held back waiting for one PES to complete before it is dropped as broken.
const HOLD_LIMIT: usize = 100_000;
const NO_STREAM: u8 = 0xFF;

pub(crate) struct ReleaseCtx<'a> {
    pub(crate) now: Ticks27M,
    pub(crate) closing: bool,
    pub(crate) cfg: &'a SpliceConfig,
    pub(crate) alloc: &'a mut PidAllocator,
    pub(crate) timeline: &'a mut Timeline,
    pub(crate) current_pmt: &'a mut Pmt,
    pub(crate) out: &'a mut VecDeque<Queued>,
    pub(crate) events: &'a mut VecDeque<SpliceEvent>,
    pub(crate) stats: &'a mut SpliceStats,
}

pub(crate) struct Summary {
    /// Per output PID: the end of what this item presented on it.
    pub(crate) pid_ends: Vec<(Pid, i64)>,
    pub(crate) end_90k: Option<i64>,
    pub(crate) end_pts_90k: Option<i64>,
    pub(crate) packets: u64,
    pub(crate) damage: Damage,
    pub(crate) error: Option<ItemError>,
}

pub(crate) struct Item {
    demux: Demux,
    st: State,
}

/// How a cue shapes an item (see [`super::Cue`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CueParams {
    pub(crate) tag: Option<u64>,
    pub(crate) offset_90k: u64,
    pub(crate) from_byte: u64,
    pub(crate) first_pts: Option<Pts>,
    pub(crate) not_before: Option<Ticks27M>,
    pub(crate) until: Option<Ticks27M>,
    /// Cut this much before `until`: the next item's entry delay.
    pub(crate) cut_lead_90k: u64,
    /// The item's first packet leaves no sooner than this after it is read (a live input:
    /// its data arrives in real time, so what follows needs this much lead to absorb the
    /// network's jitter). See [`crate::splice::Splicer::set_live`].
    pub(crate) min_lead: Ticks27M,
    /// The programme to take from a multi-programme input (`None`: the first in its PAT).
    pub(crate) program: Option<u16>,
}

/// An item cut at its cue's `until`: nothing presented from `pts_out` on is kept.
#[derive(Clone, Copy, Debug)]
struct Cut {
    pts_out: i64,
    /// Input time of the cut, to stop waiting for streams that never pass it.
    t_in: Option<u64>,
}

struct State {
    index: usize,
    program: Option<u16>,
    streams: Vec<Stream>,
    slot: Box<[u8; 8192]>,
    pcr_pid: Option<Pid>,
    anchor: Option<usize>,
    clock: Clock,
    hold: VecDeque<Held>,
    hold_front: u64,
    pes: VecDeque<PesRec>,
    pes_front: u64,
    playing: Option<Entry>,
    leading: bool,
    packets_out: u64,
    dropped_pes: u64,
    clean_end: bool,
    saw_pmt: bool,
    cue: CueParams,
    /// The anchor stream's first presentation time in the file (unwrapped, 90 kHz).
    first_anchor_pts: Option<i64>,
    cut: Option<Cut>,
    /// Input time of the latest PES decided.
    last_t_in: Option<u64>,
    /// PES whose data ran past their PES_packet_length, and the first such packet.
    pes_overruns: u64,
    first_overrun: Option<DamageAt>,
    /// Entry pictures refused for a decode time far from the file's clock, and the first:
    /// (input PID, decode time less arrival, 90 kHz).
    timing_faults: u32,
    timing_fault: Option<(u16, i64)>,
    /// The streams mapped from the first PMT: (PID, stream_type) of the playable ones, the
    /// video first.
    mapped: Vec<(u16, u8)>,
    /// Where a later PMT listed other streams (about this packet index): the item ends.
    pmt_changed_at: Option<u64>,
    /// Index of the last packet seen.
    last_index: u64,
    /// Packets scrambled in the file (left out), and the first.
    scrambled_packets: u64,
    first_scrambled: Option<DamageAt>,
}

/// The (PID, stream_type) of a PMT's video and audio streams, the video first.
fn playable(pmt: &Pmt) -> Vec<(u16, u8)> {
    let mut out: Vec<(bool, u16, u8)> = pmt
        .streams
        .iter()
        .filter_map(|es| {
            let class = Codec::of(es).class();
            (class != StreamClass::Data).then_some((
                class != StreamClass::Video,
                es.pid.value(),
                es.stream_type,
            ))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, pid, t)| (pid, t)).collect()
}

/// How far ahead of its arrival (on the file's PCR clock) an entry picture's decode time may
/// be: 10 s (ISO/IEC 13818-1 allows 1 s, files from the field lead by up to a few).
const MAX_ENTRY_LEAD_90K: i64 = 10 * 90_000;
/// How far behind its arrival it may be: 1 s (a decoder would have dropped it).
const MAX_ENTRY_LATE_90K: i64 = 90_000;
/// Entry pictures refused for their timing before the file is given up.
const TIMING_FAULTS_LIMIT: u32 = 3;

/// Bytes of a file read without finding packet sync before it is given up as not TS.
const NO_SYNC_LIMIT: u64 = 1 << 20;
/// Bytes of a file read without a PAT before it is given up.
const NO_PAT_LIMIT: u64 = 16 << 20;

/// How far a stream's decode time may drift from its input arrival time between two PES,
/// and how far a PTS may lead its DTS, before the PES counts as damaged (90 kHz; 3 s).
const MAX_DRIFT_90K: i64 = 3 * 90_000;

struct Stream {
    codec: Codec,
    stream_type: u8,
    descriptors: Bytes,
    ordinal: u8,
    out_pid: Option<Pid>,
    // stage A
    open: Option<u64>,
    /// The last PES, ended by its PES_packet_length (no data may follow before the next
    /// PES start).
    ended_by_length: Option<u64>,
    scanning: bool,
    scan: Vec<u8>,
    segs: Vec<(u64, usize, usize)>,
    // stage B
    keep: bool,
    started: bool,
    need_rap: bool,
    entry_pes: bool,
    /// The PES being released is a random access point of the anchor stream.
    rap: bool,
    /// A PES presented at or after the cut has been seen: nothing more of it is wanted.
    past_cut: bool,
    /// Output presentation time of the last display-closed access unit kept (anchor).
    last_closed_out: Option<i64>,
    last_dts_out: Option<i64>,
    last_t_in: Option<u64>,
    max_pts_out: Option<i64>,
    dur: i64,
    /// How much later than the input had them the packets of the PES being released leave
    /// (27 MHz; see [`State::delay_for`]).
    delay: u64,
    /// The decode time (input clock, 90 kHz) of the PES being released, whose last packets
    /// may still follow.
    releasing_dts: Option<i64>,
}

struct PesRec {
    stream: u8,
    pts: Option<i64>,
    dts: Option<i64>,
    t_in: Option<u64>,
    rai: bool,
    audio_sync: bool,
    complete: bool,
    damaged: bool,
    kind: Option<AccessUnit>,
    len: usize,
    got: usize,
}

struct Held {
    packet: TsPacket,
    t_in: Option<u64>,
    stream: u8,
    start: bool,
    has_ts: bool,
    patch: Option<Patch>,
}

#[derive(Clone, Copy)]
struct Entry {
    rap_pts: i64,
    shift90: i64,
}

/// Input clock recovered from the PCR: unwrapped 27 MHz ticks at a byte offset, and the
/// byte rate between the last two PCRs (ticks per byte, 16.16 fixed point).
#[derive(Default)]
struct Clock {
    last: Option<(u64, u64)>,
    rate_q16: Option<u64>,
}

impl Clock {
    fn update(&mut self, pcr: Pcr, offset: u64) {
        let Some((t, off)) = self.last else {
            self.last = Some((pcr.ticks(), offset));
            return;
        };
        let dt = pcr.since(Pcr::new(t));
        let now = (t as i64 + dt).max(0) as u64;
        if dt > 0 && dt < 27_000_000 && offset > off {
            let rate = ((dt as u64) << 16) / (offset - off);
            // Plausible rates: 1 Gbit/s .. 10 kbit/s.
            if (14_000..=1_500_000_000).contains(&rate) {
                self.rate_q16 = Some(rate);
            }
        }
        self.last = Some((now, offset));
    }

    fn at(&self, offset: u64) -> Option<u64> {
        let (t, off) = self.last?;
        let rate = self.rate_q16.unwrap_or(0);
        Some(t + ((offset.saturating_sub(off) * rate) >> 16))
    }

    /// Unwraps a 33-bit timestamp next to the clock (90 kHz).
    fn unwrap(&self, pts: Pts) -> Option<i64> {
        let (t, _) = self.last?;
        let reference = (t / 300) as i64;
        Some(reference + pts.since(Pts::new(reference as u64)))
    }
}

impl Item {
    pub(crate) fn new(index: usize, cue: CueParams) -> Item {
        Item {
            demux: Demux::new(),
            st: State {
                index,
                program: cue.program,
                streams: Vec::new(),
                slot: Box::new([NO_STREAM; 8192]),
                pcr_pid: None,
                anchor: None,
                clock: Clock::default(),
                hold: VecDeque::new(),
                hold_front: 0,
                pes: VecDeque::new(),
                pes_front: 0,
                playing: None,
                leading: false,
                packets_out: 0,
                dropped_pes: 0,
                clean_end: true,
                saw_pmt: false,
                cue,
                first_anchor_pts: None,
                cut: None,
                last_t_in: None,
                pes_overruns: 0,
                first_overrun: None,
                timing_faults: 0,
                timing_fault: None,
                mapped: Vec::new(),
                pmt_changed_at: None,
                last_index: 0,
                scrambled_packets: 0,
                first_scrambled: None,
            },
        }
    }

    /// Its playlist index.
    pub(crate) fn index(&self) -> usize {
        self.st.index
    }

    /// A new cut time (see `Splicer::cut_current`).
    pub(crate) fn set_until(&mut self, until: Option<Ticks27M>) {
        self.st.cue.until = until;
    }

    /// The next item's entry delay, learnt after this one was opened.
    pub(crate) fn set_cut_lead(&mut self, lead_90k: u64) {
        self.st.cue.cut_lead_90k = lead_90k;
    }

    /// Cut at its cue's `until`, and nothing left to release before the cut: the item is
    /// over, whatever remains of the file.
    pub(crate) fn cut_done(&self) -> bool {
        let Some(cut) = self.st.cut else { return false };
        let all_past = self
            .st
            .streams
            .iter()
            .all(|s| s.past_cut || s.out_pid.is_none() || !s.started);
        // Streams that never reach the cut (a shorter audio track) stop 2 s of input later.
        let late = match (cut.t_in, self.st.last_t_in) {
            (Some(c), Some(t)) => t > c + 2 * crate::time::SYSTEM_CLOCK_HZ,
            _ => false,
        };
        all_past || late
    }

    pub(crate) fn push(&mut self, data: Bytes) {
        let st = &mut self.st;
        self.demux.push(data, &mut |ev| st.on_event(ev));
        st.enforce_hold_limit();
    }

    /// Nothing of the file can play, and reading on would not change that: no packet sync
    /// in its first [`NO_SYNC_LIMIT`] bytes, packets of another size, or no PAT in its first
    /// [`NO_PAT_LIMIT`] (a PAT comes every 100 ms or so).
    pub(crate) fn hopeless(&self) -> bool {
        let s = self.demux.stats();
        self.st.playing.is_none()
            && ((s.packets == 0 && s.bytes >= NO_SYNC_LIMIT)
                || (s.other_packet_size.is_some()
                    && s.bytes >= NO_SYNC_LIMIT
                    && s.packets * PACKET_SIZE as u64 * 2 < s.bytes)
                || (self.st.program.is_none() && s.bytes >= NO_PAT_LIMIT)
                || self.st.timing_faults >= TIMING_FAULTS_LIMIT)
    }

    /// A later PMT of the file listed other streams: the item ends there (what follows is
    /// not read).
    pub(crate) fn streams_changed(&self) -> bool {
        self.st.pmt_changed_at.is_some()
    }

    pub(crate) fn finish(&mut self, clean: bool) {
        let left = self.demux.finish();
        self.st.clean_end = clean && left == 0;
        let st = &mut self.st;
        for s in 0..st.streams.len() {
            if let Some(seq) = st.streams[s].open.take() {
                let clean_end = st.clean_end;
                if let Some(rec) = st.rec_mut(seq) {
                    let truncated = if rec.len > 0 {
                        rec.got < rec.len
                    } else {
                        !clean_end
                    };
                    rec.damaged |= truncated;
                    rec.complete = true;
                    rec.kind.get_or_insert(AccessUnit::Other);
                }
            }
        }
    }

    pub(crate) fn release(&mut self, ctx: &mut ReleaseCtx<'_>) {
        self.st.release(ctx);
    }

    pub(crate) fn outcome(self, error: Option<&str>) -> Result<Summary, ItemError> {
        let stats = self.demux.stats();
        let st = self.st;
        let read_error = error.map(|e| ItemError::Read {
            offset: stats.bytes,
            reason: e.to_owned(),
        });
        if st.playing.is_none() {
            if let Some(e) = read_error {
                return Err(e);
            }
            return Err(if stats.bytes == 0 {
                ItemError::Empty
            } else if let (Some(size), None) = (stats.other_packet_size, st.program) {
                ItemError::PacketSize { size }
            } else if stats.packets == 0 {
                ItemError::NotTs { bytes: stats.bytes }
            } else if st.program.is_none() {
                ItemError::NoPat {
                    packets: stats.packets,
                }
            } else if !st.saw_pmt {
                ItemError::NoPmt {
                    program: st.program.unwrap_or(0),
                    packets: stats.packets,
                }
            } else if st.anchor.is_none() {
                ItemError::NoStreams {
                    program: st.program.unwrap_or(0),
                }
            } else if let Some(first) = st.first_scrambled {
                ItemError::Scrambled {
                    pid: first.pid,
                    packets: st.scrambled_packets,
                }
            } else if let Some((pid, lead_90k)) = st.timing_fault {
                ItemError::Timing {
                    pid,
                    lead_ms: lead_90k / 90,
                }
            } else {
                ItemError::NoRandomAccess {
                    packets: stats.packets,
                    damage: st.first_damage(&stats),
                }
            });
        }
        // The item's end is its anchor's (the video's): other streams may overhang.
        let anchor = st.anchor.and_then(|a| st.streams.get(a));
        let end_90k = anchor.and_then(|s| s.last_dts_out.map(|d| d + s.dur));
        let end_pts_90k = anchor.and_then(|s| s.max_pts_out.map(|p| p + s.dur));
        let pid_ends = st
            .streams
            .iter()
            .filter_map(|s| Some((s.out_pid?, s.max_pts_out? + s.dur)))
            .collect();
        Ok(Summary {
            end_90k,
            end_pts_90k,
            pid_ends,
            packets: st.packets_out,
            damage: Damage {
                cc_errors: stats.cc_errors,
                sync_losses: stats.sync_losses,
                skipped_bytes: stats.skipped_bytes,
                dropped_pes: st.dropped_pes,
                malformed_packets: stats.transport_errors + stats.bad_adaptation_fields,
                pes_overruns: st.pes_overruns,
                streams_changed_at: st.pmt_changed_at,
                scrambled_packets: st.scrambled_packets,
                first: st.first_damage(&stats),
            },
            error: read_error,
        })
    }
}

impl State {
    /// The first damaged packet of the file, whatever the damage: the demuxer's, a PES
    /// longer than its length, a scrambled packet.
    fn first_damage(&self, stats: &crate::demux::DemuxStats) -> Option<DamageAt> {
        [stats.first_damage, self.first_overrun, self.first_scrambled]
            .into_iter()
            .flatten()
            .min_by_key(|d| d.packet)
    }

    fn rec_mut(&mut self, seq: u64) -> Option<&mut PesRec> {
        let k = seq.checked_sub(self.pes_front)? as usize;
        self.pes.get_mut(k)
    }

    fn on_event(&mut self, ev: DemuxEvent<'_>) {
        match ev {
            DemuxEvent::Pat(pat) => {
                if self.program.is_none() {
                    self.program = pat.programs.first().map(|(n, _)| *n);
                }
            }
            DemuxEvent::Pmt { pmt, .. } => {
                if Some(pmt.program_number) != self.program {
                    return;
                }
                if !self.saw_pmt {
                    self.map_streams(pmt);
                } else if self.pmt_changed_at.is_none()
                    && self
                        .mapped
                        .first()
                        .is_some_and(|a| !playable(pmt).contains(a))
                {
                    // The stream the item is timed by is gone (files joined without a remux:
                    // other streams from here on). The item ends here, and says so. A stream
                    // added or dropped beside it changes nothing.
                    self.pmt_changed_at = Some(self.last_index + 1);
                    // What was open ends here, whole, as at the next PES start.
                    for si in 0..self.streams.len() {
                        self.close_open(si);
                    }
                }
            }
            DemuxEvent::Packet {
                packet,
                index,
                damaged,
                duplicate,
                ..
            } => {
                // The input clock runs on packets read, so skipped garbage does not delay it.
                self.on_packet(packet, index, damaged, duplicate);
            }
            DemuxEvent::SyncLoss { .. } | DemuxEvent::Psi(_) => {}
        }
    }

    fn map_streams(&mut self, pmt: &Pmt) {
        self.saw_pmt = true;
        self.mapped = playable(pmt);
        self.pcr_pid = Some(pmt.pcr_pid);
        for es in &pmt.streams {
            let codec = Codec::of(es);
            if codec.class() == StreamClass::Data || self.slot[es.pid.index()] != NO_STREAM {
                continue;
            }
            let ordinal = self.streams.iter().filter(|s| s.codec == codec).count() as u8;
            self.slot[es.pid.index()] = self.streams.len() as u8;
            self.streams.push(Stream {
                codec,
                stream_type: es.stream_type,
                descriptors: strip_ca(&es.descriptors),
                ordinal,
                out_pid: None,
                open: None,
                ended_by_length: None,
                scanning: false,
                scan: Vec::new(),
                segs: Vec::new(),
                keep: false,
                started: false,
                need_rap: false,
                entry_pes: false,
                rap: false,
                past_cut: false,
                last_closed_out: None,
                last_dts_out: None,
                last_t_in: None,
                max_pts_out: None,
                dur: 3600,
                delay: 0,
                releasing_dts: None,
            });
        }
        let first = |c: StreamClass| self.streams.iter().position(|s| s.codec.class() == c);
        self.anchor = first(StreamClass::Video).or_else(|| first(StreamClass::Audio));
    }

    fn on_packet(&mut self, packet: TsPacket, index: u64, damaged: bool, duplicate: bool) {
        self.last_index = index;
        if self.pmt_changed_at.is_some() {
            // Past a change of streams: not this item's any more.
            return;
        }
        let offset = index * PACKET_SIZE as u64;
        let pid = packet.pid();
        if Some(pid) == self.pcr_pid {
            if let Some(pcr) = packet.pcr() {
                self.clock.update(pcr, offset);
            }
        }
        let s = self.slot[pid.index()];
        if s == NO_STREAM || duplicate {
            return;
        }
        let si = s as usize;
        if packet.raw()[3] & 0xC0 != 0 {
            // Scrambled in the file (transport_scrambling_control set): its keys are not
            // ours, and a clear channel must not carry scrambled bits. The PES it belongs to
            // is left out; what follows up to the next clear PES start too.
            self.scrambled_packets += 1;
            self.first_scrambled.get_or_insert(DamageAt {
                packet: index,
                pid: pid.value(),
                what: "scrambled in the file (transport_scrambling_control set)",
            });
            if let Some(seq) = self.streams[si].open.take() {
                if let Some(rec) = self.rec_mut(seq) {
                    rec.damaged = true;
                    rec.complete = true;
                    rec.kind.get_or_insert(AccessUnit::Other);
                }
            }
            self.streams[si].scanning = false;
            self.streams[si].ended_by_length = None;
            return;
        }
        if damaged {
            if let Some(seq) = self.streams[si].open {
                if let Some(rec) = self.rec_mut(seq) {
                    rec.damaged = true;
                }
            }
        }
        let t_in = self.clock.at(offset);
        let Some(poff) = packet.payload_offset() else {
            return;
        };
        let payload = &packet.raw()[poff..];
        if packet.pusi() {
            self.close_open(si);
            // A new PES begins (whether or not its header parses): data after it is not an
            // overrun of the one before.
            self.streams[si].ended_by_length = None;
            let Some(h) = PesHeader::parse(payload) else {
                return;
            };
            let codec = self.streams[si].codec;
            let data_off = poff + h.payload_offset;
            let es_data = packet.raw().get(data_off..).unwrap_or(&[]);
            let video = codec.class() == StreamClass::Video;
            let rai = packet
                .adaptation_field()
                .is_some_and(|af| af.random_access());
            let len = if h.packet_length > 0 {
                usize::from(h.packet_length) + 6
            } else {
                0
            };
            let rec = PesRec {
                stream: s,
                pts: h.pts.and_then(|p| self.clock.unwrap(p)),
                dts: h.decode_time().and_then(|p| self.clock.unwrap(p)),
                t_in,
                rai,
                audio_sync: es::audio_frame_start(codec, es_data),
                complete: len > 0 && payload.len() >= len,
                damaged: false,
                kind: if video { None } else { Some(AccessUnit::Other) },
                len,
                got: payload.len(),
            };
            if Some(si) == self.anchor && self.first_anchor_pts.is_none() {
                self.first_anchor_pts = rec.pts;
            }

            let complete = rec.complete;
            self.pes.push_back(rec);
            let seq = self.pes_front + self.pes.len() as u64 - 1;
            self.streams[si].open = if complete { None } else { Some(seq) };
            self.streams[si].ended_by_length = complete.then_some(seq);
            let held_seq = self.hold_front + self.hold.len() as u64;
            self.hold.push_back(Held {
                packet,
                t_in,
                stream: s,
                start: true,
                has_ts: h.pts.is_some(),
                patch: None,
            });
            if video {
                let st = &mut self.streams[si];
                st.scan.clear();
                st.segs.clear();
                st.scanning = true;
                self.scan(si, seq, held_seq, data_off, complete);
            }
            return;
        }
        let Some(seq) = self.streams[si].open else {
            // Data after a PES its PES_packet_length said was whole: the length lied, and
            // the PES is not what the file meant.
            if let Some(seq) = self.streams[si].ended_by_length.take() {
                self.pes_overruns += 1;
                self.first_overrun.get_or_insert(DamageAt {
                    packet: index,
                    pid: pid.value(),
                    what: "PES data past its PES_packet_length",
                });
                if let Some(rec) = self.rec_mut(seq) {
                    rec.damaged = true;
                }
            }
            return;
        };
        let held_seq = self.hold_front + self.hold.len() as u64;
        let mut complete = false;
        if let Some(rec) = self.rec_mut(seq) {
            rec.got += payload.len();
            complete = rec.len > 0 && rec.got >= rec.len;
            rec.complete |= complete;
        }
        if complete {
            self.streams[si].open = None;
            self.streams[si].ended_by_length = Some(seq);
        }
        self.hold.push_back(Held {
            packet,
            t_in,
            stream: s,
            start: false,
            has_ts: false,
            patch: None,
        });
        if self.streams[si].scanning {
            self.scan(si, seq, held_seq, poff, complete);
        }
    }

    /// Appends the packet's ES bytes to the stream's scan buffer and classifies the access
    /// unit once its first picture header is visible.
    fn scan(&mut self, si: usize, seq: u64, held_seq: u64, off: usize, last: bool) {
        let held_k = (held_seq - self.hold_front) as usize;
        let Some(held) = self.hold.get(held_k) else {
            return;
        };
        let bytes = held.packet.raw().get(off..).unwrap_or(&[]);
        let rai = self
            .pes
            .get((seq - self.pes_front) as usize)
            .is_some_and(|r| r.rai);
        let st = &mut self.streams[si];
        st.segs.push((held_seq, st.scan.len(), off));
        st.scan.extend_from_slice(bytes);
        let found = match st.codec {
            Codec::H264 | Codec::Hevc | Codec::Mpeg2Video => {
                es::scan_access_unit(st.codec, &st.scan)
            }
            _ => Some(es::Scan {
                kind: if rai {
                    AccessUnit::Idr
                } else {
                    AccessUnit::Other
                },
                vcl_offset: 0,
            }),
        };
        let kind = match found {
            Some(scan) => {
                // An HEVC open-GOP entry is relabelled: its CRA's NAL header byte becomes
                // BLA_N_LP (H.265 §8.1.3: decoders flush and expect no leading pictures, which
                // are dropped). H.264 has no in-place equivalent (see docs/design/splice.md).
                let target = match (scan.kind, st.codec) {
                    (AccessUnit::OpenGop, Codec::Hevc) => {
                        let b = st.scan[scan.vcl_offset];
                        let mut bytes = [0u8; 6];
                        bytes[0] = (b & 0x81) | (hevc::BLA_N_LP << 1);
                        Some((scan.vcl_offset, 1, bytes))
                    }
                    _ => None,
                };
                let located = target.and_then(|(at, len, bytes)| {
                    let (hs, start, poff) = st.segs.iter().rev().find(|(_, s, _)| *s <= at)?;
                    let off = poff + at - start;
                    (off + len <= PACKET_SIZE).then_some((
                        *hs,
                        Patch {
                            at: off as u8,
                            len: len as u8,
                            bytes,
                        },
                    ))
                });
                if let Some((hs, patch)) = located {
                    if let Some(h) = self.hold.get_mut((hs - self.hold_front) as usize) {
                        h.patch = Some(patch);
                    }
                }
                Some(scan.kind)
            }
            None if last || st.scan.len() > SCAN_LIMIT => Some(AccessUnit::Other),
            None => None,
        };
        let st = &mut self.streams[si];
        if kind.is_some() {
            st.scanning = false;
            st.scan.clear();
            st.segs.clear();
        }
        if let (Some(k), Some(rec)) = (kind, self.rec_mut(seq)) {
            rec.kind = Some(k);
        }
    }

    fn close_open(&mut self, si: usize) {
        if let Some(seq) = self.streams[si].open.take() {
            let scanning = std::mem::take(&mut self.streams[si].scanning);
            if let Some(rec) = self.rec_mut(seq) {
                rec.complete = true;
                if rec.len > 0 && rec.got < rec.len {
                    rec.damaged = true;
                }
                if scanning {
                    rec.kind.get_or_insert(AccessUnit::Other);
                }
            }
        }
    }

    fn enforce_hold_limit(&mut self) {
        if self.hold.len() > HOLD_LIMIT {
            if let Some(rec) = self.pes.front_mut() {
                rec.damaged = true;
                rec.complete = true;
            }
        }
    }

    fn release(&mut self, ctx: &mut ReleaseCtx<'_>) {
        while let Some(front) = self.hold.front() {
            if front.start {
                let Some(rec) = self.pes.front() else { break };
                let resolved = rec.damaged || (rec.complete && rec.kind.is_some());
                if !resolved && !ctx.closing {
                    break;
                }
                let Some(rec) = self.pes.pop_front() else {
                    break;
                };
                self.pes_front += 1;
                if !resolved {
                    // Closing: a PES not yet complete in the input cannot go out whole.
                    self.streams[usize::from(rec.stream)].keep = false;
                } else {
                    self.decide(&rec, ctx);
                }
            }
            let Some(held) = self.hold.pop_front() else {
                break;
            };
            self.hold_front += 1;
            let si = usize::from(held.stream);
            if self.streams[si].keep {
                self.emit(held, ctx);
            }
        }
    }

    fn decide(&mut self, rec: &PesRec, ctx: &mut ReleaseCtx<'_>) {
        let si = usize::from(rec.stream);
        let class = self.streams[si].codec.class();
        self.streams[si].keep = false;
        self.streams[si].entry_pes = false;
        self.streams[si].rap = false;
        if rec.damaged {
            self.dropped_pes += 1;
            ctx.stats.damaged_dropped += 1;
            if class == StreamClass::Video && self.playing.is_some() {
                self.streams[si].need_rap = true;
            }
            return;
        }
        let random_access = match class {
            StreamClass::Video => rec.kind.is_some_and(AccessUnit::is_random_access),
            StreamClass::Audio => rec.audio_sync,
            _ => true,
        };
        let Some(entry) = self.playing else {
            // An entry offset (join in progress, in point): the first random access point
            // presented at or after the file's first picture + the offset.
            let far_enough = match (rec.pts, self.cue.first_pts, self.first_anchor_pts) {
                // Read from a byte offset: count from the file's own first picture.
                (Some(p), Some(first), _) => {
                    Pts::new(p as u64).since(first) >= self.cue.offset_90k as i64
                }
                (Some(p), None, Some(first)) => p - first >= self.cue.offset_90k as i64,
                _ => self.cue.offset_90k == 0,
            };
            if Some(si) == self.anchor
                && random_access
                && far_enough
                && rec.t_in.is_some()
                && rec.dts.is_some()
                && rec.pts.is_some()
                && self.timed_sanely(si, rec)
            {
                self.start(rec, ctx);
                let delay = self.delay_for(rec, ctx.cfg);
                let st = &mut self.streams[si];
                st.delay = delay;
                st.releasing_dts = rec.dts;
                st.keep = true;
                st.started = true;
                st.entry_pes = true;
                st.rap = true;
                self.track(si, rec);
            }
            return;
        };
        self.last_t_in = rec.t_in.or(self.last_t_in);
        if self.streams[si].out_pid.is_none() {
            return;
        }
        if self.cut_here(si, rec, class, entry) {
            return;
        }
        let st = &mut self.streams[si];
        if st.need_rap {
            if !random_access {
                return;
            }
            st.need_rap = false;
        }
        if Some(si) == self.anchor && self.leading {
            if rec.pts.is_some_and(|p| p < entry.rap_pts) {
                ctx.stats.leading_dropped += 1;
                return;
            }
            self.leading = false;
        }
        let st = &mut self.streams[si];
        if !st.started {
            // Join at the entry point, and not before the previous item's overhang on this PID
            // has finished, so each output PID's timestamps keep increasing.
            let after_overhang = |p: i64| {
                let prev = st
                    .out_pid
                    .and_then(|pid| ctx.timeline.pid_ends.iter().find(|(q, _)| *q == pid));
                prev.is_none_or(|(_, end)| p + entry.shift90 >= *end)
            };
            let on_time = rec
                .pts
                .is_some_and(|p| p >= entry.rap_pts && after_overhang(p));
            if !(on_time && random_access) {
                return;
            }
            st.started = true;
        }
        // A decode time that does not move forward in step with the input clock (a header
        // hit by corruption, or a timestamp jump inside the file) is dropped like a damaged
        // PES, so the output never steps back or leaps.
        if let (Some(last), Some(last_t), Some(dts), Some(t)) =
            (st.last_dts_out, st.last_t_in, rec.dts, rec.t_in)
        {
            let step = dts + entry.shift90 - last;
            let elapsed = (t as i64 - last_t as i64) / 300;
            let pts_ok = rec
                .pts
                .is_none_or(|p| (0..=MAX_DRIFT_90K).contains(&(p - dts)));
            if step <= 0 || (step - elapsed).abs() > MAX_DRIFT_90K || !pts_ok {
                self.dropped_pes += 1;
                ctx.stats.damaged_dropped += 1;
                if class == StreamClass::Video {
                    st.need_rap = true;
                }
                return;
            }
        }
        st.keep = true;
        st.rap = random_access && Some(si) == self.anchor;
        self.track(si, rec);
        self.streams[si].delay = self.delay_for(rec, ctx.cfg);
        self.streams[si].releasing_dts = rec.dts;
    }

    /// How much later than the input had them the packets of `rec` leave (27 MHz), for the
    /// output's mux delay ([`SpliceConfig::mux_delay`]): enough to bring the PES's lead (its
    /// decode time less its arrival) down to the mux delay plus the time the PES takes to
    /// send at the muxrate, so that it is still whole in the decoder's buffer at its decode
    /// time (the T-STD of ISO/IEC 13818-1 §2.4.2). Packets leave in input order, so a
    /// delay holds back what follows too: it never exceeds what leaves every PES read
    /// after it (the read-ahead, about a second) [`LEAD_MARGIN`] before its decode time
    /// (the audio of a file muxed with its audio later than its video has the least). The
    /// delay does not depend on the item's shift: both the decode and the due time move
    /// with it. Live inputs keep their own timing.
    /// Whether an entry picture's decode time is near its arrival on the file's clock (its
    /// PCR): at most [`MAX_ENTRY_LEAD_90K`] ahead, at most [`MAX_ENTRY_LATE_90K`] behind.
    /// Timestamps an hour off the clock would put the item on air an hour late, or never:
    /// such an entry is refused and noted ([`Item::hopeless`] after a few).
    fn timed_sanely(&mut self, si: usize, rec: &PesRec) -> bool {
        let (Some(dts), Some(t)) = (rec.dts, rec.t_in) else {
            return false;
        };
        let lead = dts - (t / 300) as i64;
        if (-MAX_ENTRY_LATE_90K..=MAX_ENTRY_LEAD_90K).contains(&lead) {
            return true;
        }
        self.timing_faults += 1;
        if self.timing_fault.is_none() {
            let pid = self
                .slot
                .iter()
                .position(|&s| usize::from(s) == si)
                .unwrap_or(0) as u16;
            self.timing_fault = Some((pid, lead));
        }
        false
    }

    fn delay_for(&self, rec: &PesRec, cfg: &SpliceConfig) -> u64 {
        let (Some(mux_delay), Some(dts), Some(t)) = (cfg.mux_delay, rec.dts, rec.t_in) else {
            return 0;
        };
        if self.cue.min_lead > 0 {
            // A live input: its data arrives in real time, and its timing is the relay's
            // lead (see `CueParams::min_lead`); holding some of it back would let what
            // follows fall due before it has arrived.
            return 0;
        }
        let lead = i128::from(dts) * 300 - i128::from(t);
        let send = if cfg.muxrate_bps > 0 {
            let packets = rec.got.div_ceil(PACKET_SIZE - 4) as i128;
            packets * (PACKET_SIZE as i128) * 8 * i128::from(crate::time::SYSTEM_CLOCK_HZ)
                / i128::from(cfg.muxrate_bps)
        } else {
            0
        };
        let want = lead - i128::from(mux_delay) - send;
        let t = i128::from(t);
        let pending = self.pes.iter().filter_map(|q| q.dts);
        let releasing = self
            .streams
            .iter()
            .filter(|s| s.keep)
            .filter_map(|s| s.releasing_dts);
        let room = pending
            .chain(releasing)
            .map(|d| i128::from(d) * 300 - t)
            .fold(lead, i128::min);
        want.min(room - LEAD_MARGIN).max(0) as u64
    }

    /// Applies the cue's `until`: the anchor stream is cut before the first access unit
    /// presented at or after it that starts a display-closed run (everything shown before it
    /// is already decided), and every stream keeps only what is presented before that point.
    /// With B-frames the display-closed points are a few frames apart, so presentation may
    /// run up to that many frames past `until`.
    /// Returns whether `rec` is dropped for it.
    fn cut_here(&mut self, si: usize, rec: &PesRec, class: StreamClass, entry: Entry) -> bool {
        let Some(pts) = rec.pts else {
            return self.cut.is_some();
        };
        let pts_out = pts + entry.shift90;
        if self.cut.is_none() && Some(si) == self.anchor {
            let Some(until) = self.cue.until else {
                return false;
            };
            // Presentation is what viewers see: the cut is placed by presentation time on the
            // output clock (which the PCR carries). It can only fall before a display-closed
            // access unit (one shown after everything decoded before it), and cutting there
            // ends the item when the pictures kept so far end. Those points are a few frames
            // apart with B-frames: cut at the one whose end is nearest the target, so the
            // item ends within half a frame of it without B-frames, and otherwise within half
            // a mini-GOP (a little late, or early and held until what follows goes on air).
            let st = &self.streams[si];
            let display_closed =
                class != StreamClass::Video || st.max_pts_out.is_none_or(|m| pts_out > m);
            if st.started && display_closed {
                let dur = st.dur;
                let end_here = st.max_pts_out.map_or(pts_out, |m| m + dur);
                let step = st.last_closed_out.map_or(dur, |c| (pts_out - c).max(dur));
                let target = (i128::from(until) / 300) as i64 - self.cue.cut_lead_90k as i64;
                // Cut here unless the next closure point ends nearer the target.
                if end_here + step - target > target - end_here {
                    self.cut = Some(Cut {
                        pts_out: end_here.min(pts_out),
                        t_in: rec.t_in,
                    });
                } else {
                    self.streams[si].last_closed_out = Some(pts_out);
                }
            }
        }
        let Some(cut) = self.cut else { return false };
        if Some(si) == self.anchor || pts_out >= cut.pts_out {
            self.streams[si].past_cut = true;
            self.streams[si].keep = false;
            return true;
        }
        false
    }

    /// Remembers the stream's last output DTS and frame duration, for the item's end.
    fn track(&mut self, si: usize, rec: &PesRec) {
        let (Some(entry), Some(dts)) = (self.playing, rec.dts) else {
            return;
        };
        let out = dts + entry.shift90;
        let st = &mut self.streams[si];
        if let Some(pts) = rec.pts {
            let pts_out = pts + entry.shift90;
            st.max_pts_out = Some(st.max_pts_out.map_or(pts_out, |m| m.max(pts_out)));
        }
        if let Some(prev) = st.last_dts_out {
            let d = out - prev;
            if d > 0 && d < 90_000 {
                st.dur = d;
            }
        }
        st.last_dts_out = Some(out);
        st.last_t_in = rec.t_in.or(st.last_t_in);
    }

    /// The item goes on air at `rec`, the anchor stream's first random access point.
    fn start(&mut self, rec: &PesRec, ctx: &mut ReleaseCtx<'_>) {
        let (Some(rap_dts), Some(rap_pts), Some(t_rap)) = (rec.dts, rec.pts, rec.t_in) else {
            return;
        };
        let now = ctx.now as i128;
        // Decoding continues after the previous item's last DTS + one frame, and presentation
        // after its last-presented picture + one frame, whichever needs the larger shift.
        let mut shift90 = match (ctx.timeline.end_90k, ctx.timeline.end_pts_90k) {
            (Some(end), end_pts) => (end - rap_dts).max(end_pts.map_or(i64::MIN, |e| e - rap_pts)),
            (None, _) => ceil_div(now - t_rap as i128, 300) as i64,
        };
        // The entry PES leaves as late as the mux delay lets it (see `delay_for`).
        let delay = i128::from(self.delay_for(rec, ctx.cfg));
        let first_due = t_rap as i128 + i128::from(shift90) * 300 + delay;
        // Not before the output time now (the driver fell behind, or a retry after filler):
        // leave a gap, never go back. A live input's newest data is to leave its lead after
        // now; what was kept from before it (the entry point is that far behind the newest
        // data read) has that much of the lead already.
        let behind = self.clock.last.map_or(0, |(t, _)| t.saturating_sub(t_rap));
        let lead = i128::from(self.cue.min_lead) - i128::from(behind);
        let earliest = now + lead.max(0);
        if first_due < earliest {
            shift90 += ceil_div(earliest - first_due, 300) as i64;
        }
        // A fixed start: the entry picture is presented no earlier than the cue says.
        if let Some(nb) = self.cue.not_before {
            let presented = (i128::from(rap_pts) + i128::from(shift90)) * 300;
            if presented < i128::from(nb) {
                shift90 += ceil_div(i128::from(nb) - presented, 300) as i64;
            }
        }
        self.playing = Some(Entry { rap_pts, shift90 });
        self.leading = rec.kind == Some(AccessUnit::OpenGop);
        // Output PIDs and PMT.
        let mut streams = Vec::new();
        for st in self.streams.iter_mut() {
            st.out_pid = ctx.alloc.pid(&ctx.cfg.pids, st.codec, st.ordinal);
            if let Some(pid) = st.out_pid {
                streams.push(EsInfo {
                    stream_type: st.stream_type,
                    pid,
                    descriptors: if ctx.cfg.es_info.is_empty() {
                        st.descriptors.clone()
                    } else {
                        let mut d = bytes::BytesMut::from(&st.descriptors[..]);
                        d.extend_from_slice(&ctx.cfg.es_info);
                        d.freeze()
                    },
                });
            }
        }
        streams.sort_by_key(|e| e.pid);
        let pcr_pid = self
            .anchor
            .and_then(|a| self.streams[a].out_pid)
            .unwrap_or(ctx.cfg.pids.video);
        let same = ctx.current_pmt.streams == streams && ctx.current_pmt.pcr_pid == pcr_pid;
        if !same {
            let pmt = output_pmt(
                ctx.cfg,
                (ctx.current_pmt.version + 1) & 0x1F,
                pcr_pid,
                streams,
            );
            *ctx.current_pmt = pmt.clone();
            ctx.out.push_back(Queued::Pmt(pmt));
            ctx.stats.pmt_changes += 1;
        }
        ctx.stats.items_started += 1;
        let presented_at = ((i128::from(rap_pts) + i128::from(shift90)) * 300).max(0) as u64;
        ctx.events.push_back(SpliceEvent::ItemStarted {
            item: self.index,
            at: (t_rap as i128 + i128::from(shift90) * 300 + delay).max(0) as u64,
            presented_at,
            gap: ctx
                .timeline
                .end_pts_90k
                .map(|end| presented_at.saturating_sub((end.max(0) as u64).saturating_mul(300))),
            tag: self.cue.tag,
            offset_90k: match (self.cue.first_pts, self.first_anchor_pts) {
                (Some(first), _) => Pts::new(rap_pts as u64).since(first).max(0) as u64,
                (None, Some(first)) => (rap_pts - first).max(0) as u64,
                _ => 0,
            },
            open_gop: self.leading,
            pmt_changed: !same,
        });
    }

    fn emit(&mut self, held: Held, ctx: &mut ReleaseCtx<'_>) {
        let Some(entry) = self.playing else { return };
        let st = &self.streams[usize::from(held.stream)];
        let Some(pid) = st.out_pid else { return };
        let due = match held.t_in {
            Some(t) => {
                (t as i128 + i128::from(entry.shift90) * 300 + i128::from(st.delay)).max(0) as u64
            }
            None => ctx.timeline.last_due,
        };
        let due = due.max(ctx.timeline.last_due);
        ctx.timeline.last_due = due;
        let patch = if st.entry_pes { held.patch } else { None };
        let rap = held.start && st.rap;
        let shift = (held.start && held.has_ts).then_some(entry.shift90);
        ctx.out.push_back(Queued::Packet(OutPacket {
            packet: held.packet,
            due,
            pid,
            shift,
            patch,
            rap,
        }));
        self.packets_out += 1;
        ctx.stats.packets_out += 1;
    }
}

/// Drops CA_descriptors (tag 9): the output is clear.
fn strip_ca(descriptors: &Bytes) -> Bytes {
    if !crate::psi::descriptor_iter(descriptors).any(|(t, _)| t == 0x09) {
        return descriptors.clone();
    }
    let mut out = Vec::new();
    for (tag, body) in crate::psi::descriptor_iter(descriptors) {
        if tag != 0x09 {
            out.push(tag);
            out.push(body.len() as u8);
            out.extend_from_slice(body);
        }
    }
    Bytes::from(out)
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) != 0 {
        q + 1
    } else {
        q
    }
}
