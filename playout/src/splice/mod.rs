//! The splicer: plays a playlist of transport streams back to back as one continuous
//! service (ISO/IEC 13818-1 §2.4.2 T-STD timing, §2.4.3.5 discontinuities avoided).
//!
//! Whatever each item's PIDs and PMT, the output keeps fixed PIDs ([`OutputPids`]);
//! timestamps are shifted so PCR, PTS and DTS run on across every boundary; each item starts
//! on a random access point; leading pictures of an open GOP (HEVC RASL/RADL, H.264 B
//! pictures before a recovery-point I picture) are dropped, and an entry CRA is relabelled
//! BLA_N_LP so decoders flush cleanly; a PES that is truncated or damaged is dropped whole
//! (video then waits for the next random access point). Packets are never re-packetised:
//! they travel as zero-copy views of the read buffers, and their rewrites (PID, CC, PCR,
//! PTS/DTS, one NAL header byte) are applied in place on the output copy by the muxer.
//!
//! Sans-IO: the splicer asks for I/O through [`Splicer::poll_io`] and is fed with
//! [`Splicer::handle_opened`], [`Splicer::handle_data`] and [`Splicer::handle_eof`]; output
//! time comes in as an argument. See `docs/design/splice.md`.

mod item;
mod pids;
mod preempt;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::pes::PesHeader;
use crate::psi::{EsInfo, Pmt};
use crate::time::{Pts, Ticks27M, SYSTEM_CLOCK_HZ};
use crate::ts::{Pid, TsPacket};
use item::{CueParams, Item};
pub use pids::OutputPids;
use pids::PidAllocator;

/// A handover or fixed start this close to the end of what is on air is left to the cues
/// (the next starts up to this much early, or holds its first picture as long) rather than
/// filled with a sliver of the playlist.
pub const HANDOVER_SLACK: Ticks27M = SYSTEM_CLOCK_HZ / 10;

/// Most packets queued for the muxer (about 6 MB): an input richer than the muxrate stops
/// being read here instead of growing the queue.
pub const MAX_QUEUED: usize = 32 * 1024;

/// Splicer settings.
#[derive(Clone, Debug)]
pub struct SpliceConfig {
    /// The service's program_number.
    pub service_id: u16,
    /// Output PIDs.
    pub pids: OutputPids,
    /// How far ahead of the output clock to read, in 27 MHz ticks (default 1 s).
    pub horizon: Ticks27M,
    /// How long to wait before trying the playlist again when no item is playable.
    pub retry_after: Ticks27M,
    /// Descriptors for the output PMT's program loop (e.g. a CA_descriptor when the service
    /// is scrambled). The input's CA_descriptors are never passed on.
    pub program_info: Bytes,
    /// Descriptors added to every elementary stream of the output PMT.
    pub es_info: Bytes,
    /// The output's mux delay (27 MHz): how long before its decode time a PES's packets
    /// start to leave, at most, on top of the time the PES takes to send at
    /// `muxrate_bps`. Inputs come muxed with their own (ffmpeg's default is 0.7 s); what is
    /// sent that far ahead is what a receiver still presents before anything that replaces
    /// it (an emergency alert), so a lower one puts a pre-emption on screen sooner. Packets
    /// are only ever held back, never sent earlier than the input had them, and never so far
    /// that a stream is left with less than 100 ms before its decode time. `None`: each
    /// input's own.
    pub mux_delay: Option<Ticks27M>,
    /// The output's rate (bits/s), for the time a PES takes to send (0: not counted).
    pub muxrate_bps: u64,
}

impl SpliceConfig {
    /// Defaults for `service_id`.
    pub fn new(service_id: u16) -> SpliceConfig {
        SpliceConfig {
            service_id,
            pids: OutputPids::default(),
            horizon: SYSTEM_CLOCK_HZ,
            retry_after: SYSTEM_CLOCK_HZ,
            program_info: Bytes::new(),
            es_info: Bytes::new(),
            mux_delay: None,
            muxrate_bps: 0,
        }
    }
}

/// I/O the splicer wants the driver to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoRequest {
    /// Open playlist item `item`; answer with [`Splicer::handle_opened`] or
    /// [`Splicer::handle_open_failed`].
    Open {
        /// Index into the playlist.
        item: usize,
        /// Start reading here (a multiple of 188; 0: the start), to join a long file far in.
        from_byte: u64,
    },
    /// Read the next chunk of the open item; answer with [`Splicer::handle_data`] or
    /// [`Splicer::handle_eof`].
    Read {
        /// Index into the playlist.
        item: usize,
    },
}

/// A packet ready for the muxer, with the rewrites to apply on emission.
#[derive(Clone, Debug)]
pub struct OutPacket {
    /// The input packet (a view of the read buffer).
    pub packet: TsPacket,
    /// When it should leave, on the output clock.
    pub due: Ticks27M,
    /// Output PID.
    pub pid: Pid,
    /// Shift for the PTS/DTS of a PES header starting in this packet (90 kHz), if any.
    pub shift: Option<i64>,
    /// Bytes to overwrite in place at an open-GOP entry (HEVC CRA relabelled BLA, H.264
    /// delimiter turned into end-of-sequence).
    pub patch: Option<Patch>,
    /// The packet starts a random access point (an access unit a decoder can start from) of
    /// the program's anchor stream (video, or audio without video).
    pub rap: bool,
}

/// An in-place overwrite of up to 6 bytes of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Offset in the packet.
    pub at: u8,
    /// How many bytes of `bytes` to write.
    pub len: u8,
    /// The new bytes.
    pub bytes: [u8; 6],
}

/// What to play next, for a schedule: an item of the playlist from an offset, not before an
/// output time, and cut at another. Cues are played in the order pushed
/// ([`Splicer::push_cue`]); with none queued, the splicer goes on looping the playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cue {
    /// Playlist index of the media.
    pub item: usize,
    /// Start at the first random access point presented this far (90 kHz) into the file.
    pub offset_90k: u64,
    /// To join far into a long file without reading all of it: start reading at this byte
    /// (a multiple of 188, somewhat before the offset), with `first_pts` the file's first
    /// presentation time (from probing), which the offset counts from. 0 / `None`: read
    /// from the start.
    pub from_byte: u64,
    /// See `from_byte`.
    pub first_pts: Option<crate::time::Pts>,
    /// Output time before which the item must not start (a fixed start): the output holds
    /// (PAT/PMT, PCR, stuffing) until then.
    pub not_before: Option<Ticks27M>,
    /// Output time at which the item is cut, on a frame boundary: nothing presented at or
    /// after it goes out (see also `entry_delay_90k` of the cue that follows).
    pub until: Option<Ticks27M>,
    /// The item's entry delay: how long after its entry picture is decoded it is presented
    /// (PTS − DTS, the reorder delay; 0 without B-frames), as probed
    /// ([`crate::probe::ProbeInfo::reorder_90k`]). Decode times never go back, so the item
    /// before is cut this much earlier, and this one is presented on time.
    pub entry_delay_90k: u64,
    /// The driver's own mark, echoed in [`SpliceEvent::ItemStarted`] when this cue goes on
    /// air (to find its programme metadata).
    pub tag: u64,
}

/// What the splicer hands to the muxer, in order.
#[derive(Clone, Debug)]
pub enum Queued {
    /// A TS packet.
    Packet(OutPacket),
    /// The PMT changes here (a new version): emit it before the packets that follow.
    Pmt(Pmt),
}

/// Why an item could not be played (or stopped early).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// The driver could not open it.
    #[error("cannot open: {0}")]
    Open(String),
    /// A read failed.
    #[error("read failed at byte {offset}: {reason}")]
    Read {
        /// Bytes read before the failure.
        offset: u64,
        /// The driver's reason.
        reason: String,
    },
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// No TS packets were found.
    #[error("not a transport stream: no packet sync in {bytes} bytes")]
    NotTs {
        /// Bytes read.
        bytes: u64,
    },
    /// Packets of another size: not a 188-byte transport stream.
    #[error("packets of {size} bytes ({}): only 188-byte transport stream packets are read (remux it, for example `ffmpeg -i IN -c copy -f mpegts OUT`)", if *size == 192 { "M2TS/BDAV, a time code before each packet" } else { "with Reed-Solomon parity" })]
    PacketSize {
        /// The packet size seen.
        size: u16,
    },
    /// No PAT, so no program.
    #[error("no PAT in {packets} packets")]
    NoPat {
        /// Packets read.
        packets: u64,
    },
    /// No PMT for the chosen program.
    #[error("no PMT for program {program} in {packets} packets")]
    NoPmt {
        /// Program number.
        program: u16,
        /// Packets read.
        packets: u64,
    },
    /// No stream we can play.
    #[error("program {program} has no video or audio stream")]
    NoStreams {
        /// Program number.
        program: u16,
    },
    /// Its stream is scrambled in the file: it cannot be played without its keys.
    #[error("scrambled: {packets} packets with transport_scrambling_control set, the first on PID 0x{pid:04X}: a file must be clear to be played (this channel's own scrambling comes after)")]
    Scrambled {
        /// The PID of the first scrambled packet.
        pid: u16,
        /// Scrambled packets read.
        packets: u64,
    },
    /// Its pictures' decode times are far from their arrival on the file's own clock (the
    /// PCR): the timestamps and the clock disagree.
    #[error("PID 0x{pid:04X}: decode times {} s {} the file's clock (PCR): its timestamps and its clock disagree, so it cannot be timed", (*lead_ms as f64 / 1000.0).abs(), if *lead_ms > 0 { "ahead of" } else { "behind" })]
    Timing {
        /// The input PID of the entry picture.
        pid: u16,
        /// Its decode time less its arrival time, ms.
        lead_ms: i64,
    },
    /// No random access point (or no PCR to time it).
    #[error("no random access point with timing in {packets} packets{}", damage.map_or(String::new(), |d| format!(" (damaged input, the first at {d}: the damaged pictures were left out)")))]
    NoRandomAccess {
        /// Packets read.
        packets: u64,
        /// The first damaged packet, if any: damage can leave no picture to enter at.
        damage: Option<crate::demux::DamageAt>,
    },
}

/// What happened, for the driver to log (it knows the item names).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpliceEvent {
    /// An item went on air.
    ItemStarted {
        /// Playlist index.
        item: usize,
        /// Output time of its first packet.
        at: Ticks27M,
        /// Output time at which its first picture (or audio frame) is presented: when
        /// viewers see it.
        presented_at: Ticks27M,
        /// Where in the file it entered: its entry picture's presentation time after the
        /// file's first picture (90 kHz).
        offset_90k: u64,
        /// The cue's tag, when a cue (not the playlist) put it on air.
        tag: Option<u64>,
        /// Whether it entered at an open-GOP point (leading pictures dropped).
        open_gop: bool,
        /// Whether the PMT changed (a new version was sent).
        pmt_changed: bool,
        /// How long nothing new was presented before it (27 MHz ticks): from the end of what
        /// the item before presented to its first picture (`None` for the first item). A
        /// switch's gap on air.
        gap: Option<Ticks27M>,
    },
    /// An item finished.
    ItemEnded {
        /// Playlist index.
        item: usize,
        /// Packets released to the muxer.
        packets: u64,
        /// Damage seen in the input (CC errors, sync losses, dropped PES).
        damage: Damage,
    },
    /// An item was skipped or cut short.
    ItemFailed {
        /// Playlist index.
        item: usize,
        /// Why.
        error: ItemError,
    },
    /// An item gave way to a pre-empting cue ([`Splicer::preempt`]).
    ItemPreempted {
        /// Playlist index.
        item: usize,
        /// Output time at which what stays of it ends being presented.
        presented_until: Ticks27M,
    },
    /// No item in the whole playlist is playable: filler until `retry_at`.
    NothingPlayable {
        /// When the playlist is tried again.
        retry_at: Ticks27M,
    },
}

/// Input damage of one item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Continuity counter errors.
    pub cc_errors: u64,
    /// Sync losses.
    pub sync_losses: u64,
    /// Bytes skipped to resync or left over at the end.
    pub skipped_bytes: u64,
    /// PES dropped because they were damaged or truncated.
    pub dropped_pes: u64,
    /// Packets that could not be read: transport_error_indicator set, or an adaptation
    /// field longer than the packet.
    pub malformed_packets: u64,
    /// PES whose data ran past their PES_packet_length (the length lied).
    pub pes_overruns: u64,
    /// The first damaged packet of the file.
    pub first: Option<crate::demux::DamageAt>,
    /// A later PMT listed other streams, at about this packet: the item ended there, the
    /// rest of the file not played.
    pub streams_changed_at: Option<u64>,
    /// Packets scrambled in the file (left out, with their PES).
    pub scrambled_packets: u64,
}

impl Damage {
    /// Damage in the file's bytes (not a PES the splicer left out at a cut).
    pub fn in_file(&self) -> bool {
        self.cc_errors
            + self.sync_losses
            + self.skipped_bytes
            + self.malformed_packets
            + self.pes_overruns
            + self.scrambled_packets
            > 0
            || self.streams_changed_at.is_some()
    }
}

/// Counters, read through [`Splicer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Items that went on air.
    pub items_started: u64,
    /// Items skipped or cut short.
    pub items_failed: u64,
    /// Packets released to the muxer.
    pub packets_out: u64,
    /// Leading pictures dropped at open-GOP entries.
    pub leading_dropped: u64,
    /// PES dropped as damaged or truncated.
    pub damaged_dropped: u64,
    /// Times the whole playlist was unplayable.
    pub nothing_playable: u64,
    /// PMT versions sent.
    pub pmt_changes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Io {
    Open(usize),
    Opening(usize),
    Read(usize),
    Reading(usize),
    Waiting {
        until: Ticks27M,
        item: usize,
    },
    /// A request for this item is still with the driver, whose answer is to be ignored (a
    /// pre-emption replaced the item); then the next cue opens.
    Discard(usize),
    Closed,
}

/// The splicer of one channel.
pub struct Splicer {
    cfg: SpliceConfig,
    items: usize,
    /// The playlist proper (the entries given to [`Splicer::new`]): what loops when no cue
    /// is queued, and until a handover; entries added later are files a schedule names.
    playlist: usize,
    /// A schedule takes over at this output time ([`Splicer::cut_current`]): until then the
    /// playlist goes on, even if the item on air ends earlier.
    handover: Option<Ticks27M>,
    io: Io,
    item: Option<Item>,
    out: VecDeque<Queued>,
    events: VecDeque<SpliceEvent>,
    timeline: Timeline,
    alloc: PidAllocator,
    pmt: Pmt,
    failed_in_row: usize,
    stats: SpliceStats,
    cues: VecDeque<Cue>,
    current_cue: CueParams,
    /// Something was chosen to open already (a cue replaced the first playlist item).
    chosen: bool,
    /// Playlist entries that are live inputs, with their lead ([`Splicer::set_live`]).
    live: Vec<(usize, Ticks27M)>,
    /// Playlist entries to take a given programme from ([`Splicer::set_program`]).
    programs: Vec<(usize, u16)>,
    /// What the muxer has taken: for a pre-emption.
    emitted: preempt::Emitted,
}

/// Output timeline state carried from item to item.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeline {
    /// End of the previous item on the output 90 kHz timeline (last DTS + one frame, over
    /// all streams), unwrapped.
    pub(crate) end_90k: Option<i64>,
    /// The same for presentation: the last-presented picture or frame + one frame.
    pub(crate) end_pts_90k: Option<i64>,
    /// Per output PID, the end of the last item's presentation on it.
    pub(crate) pid_ends: Vec<(Pid, i64)>,
    /// Due time of the last packet released.
    pub(crate) last_due: Ticks27M,
}

impl Splicer {
    /// A splicer over a playlist of `items` entries (at least one), starting with item 0.
    pub fn new(cfg: SpliceConfig, items: usize) -> Splicer {
        let pmt = Pmt {
            program_number: cfg.service_id,
            version: 0,
            pcr_pid: cfg.pids.video,
            program_info: cfg.program_info.clone(),
            streams: Vec::new(),
        };
        Splicer {
            io: if items == 0 {
                Io::Waiting {
                    until: u64::MAX,
                    item: 0,
                }
            } else {
                Io::Open(0)
            },
            emitted: preempt::Emitted::new(pmt.clone()),
            items,
            playlist: items,
            handover: None,
            item: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            timeline: Timeline::default(),
            alloc: PidAllocator::default(),
            pmt,
            failed_in_row: 0,
            stats: SpliceStats::default(),
            cues: VecDeque::new(),
            current_cue: CueParams::default(),
            chosen: false,
            live: Vec::new(),
            programs: Vec::new(),
            cfg,
        }
    }

    /// Queues a cue (see [`Cue`]). Before anything has been opened, the first cue replaces
    /// the playlist's first item.
    pub fn push_cue(&mut self, cue: Cue) {
        let untouched = !self.chosen
            && self.item.is_none()
            && self.io == Io::Open(0)
            && self.stats.items_started == 0
            && self.stats.items_failed == 0;
        self.cues.push_back(cue);
        if untouched {
            self.chosen = true;
            self.io = self.next_io(None);
        } else if self.cues.len() == 1 {
            // The cue after the current item is now known: cut the current one early by this
            // one's entry delay.
            self.current_cue.cut_lead_90k = cue.entry_delay_90k;
            if let Some(it) = self.item.as_mut() {
                it.set_cut_lead(cue.entry_delay_90k);
            }
        }
    }

    /// Marks playlist entry `item` as a live input: its data arrives in real time rather than
    /// being read ahead, so when it starts (at a random access point, timestamps continuing
    /// from what went before) its first packet is due no sooner than `lead` after it is read,
    /// which every later packet then keeps as its margin against network jitter. The driver
    /// answers its reads with what has arrived (and, at the start, what it kept of the
    /// input's last seconds, so the item can start at once at a recent random access point).
    pub fn set_live(&mut self, item: usize, lead: Ticks27M) {
        self.live.retain(|(i, _)| *i != item);
        self.live.push((item, lead));
    }

    /// Takes programme `program_number` from playlist entry `item` (a multi-programme input)
    /// instead of the first in its PAT. An entry without it never goes on air (for a file:
    /// "no PMT for program N").
    pub fn set_program(&mut self, item: usize, program_number: u16) {
        self.programs.retain(|(i, _)| *i != item);
        self.programs.push((item, program_number));
    }

    /// Cues queued and not yet started.
    pub fn cues_queued(&self) -> usize {
        self.cues.len()
    }

    /// Adds an entry to the playlist (a file a schedule names); returns its index.
    pub fn add_item(&mut self) -> usize {
        self.items += 1;
        self.items - 1
    }

    /// Hands over at `at`: the item on air (or the next one opened) is cut where
    /// presentation reaches `at`, as if its cue had said `until: at`, and if it ends sooner
    /// the playlist goes on (cut at `at` too), so the cues queued start at `at`, not early:
    /// a schedule's timeline assumes they do, and a fixed start after a run of cues that
    /// started early would find nothing left to play before it. For a schedule taking over
    /// or an edit that applies now. An earlier cut already set stays. What is already
    /// released to the muxer (the read-ahead: up to `horizon` plus one read) is not cut, so
    /// ask a few seconds ahead.
    pub fn cut_current(&mut self, at: Ticks27M) {
        let until = Some(self.current_cue.until.map_or(at, |u| u.min(at)));
        self.current_cue.until = until;
        if let Some(it) = self.item.as_mut() {
            it.set_until(until);
        }
        self.handover = Some(self.handover.map_or(at, |h| h.min(at)));
    }

    /// Drops the cues not yet started (a schedule edit replaces them).
    pub fn clear_cues(&mut self) {
        self.cues.clear();
    }

    /// Puts `cue` on air as soon as it can be done cleanly, ahead of the cues queued (which
    /// follow it): for an emergency override and the return from it. What is on air gives
    /// way at once: the read-ahead already queued for the muxer is cut at its first
    /// display-closed picture (so no decoded picture is lost and nothing presented is
    /// repeated), each other stream where presentation reaches that point, and the item
    /// stops being read. The new item then starts on a random access point with timestamps
    /// and continuity counters running on, and a new PMT only if its streams differ. Its
    /// first packets can leave as soon as its file is read.
    pub fn preempt(&mut self, now: Ticks27M, cue: Cue) {
        self.preempt_at(now, now, cue);
    }

    /// [`Splicer::preempt`], keeping what is on air until output time `at` at least: for a
    /// live input whose entry point is that far ahead (its data kept from before), so the
    /// switch neither leaves a hole nor adds to the relay's delay.
    pub fn preempt_at(&mut self, now: Ticks27M, at: Ticks27M, cue: Cue) {
        if self.io == Io::Closed {
            return;
        }
        let (pmt, end) =
            preempt::cut_queue(&mut self.out, &self.emitted, now, at, &mut self.timeline);
        self.pmt = pmt;
        if let Some(it) = self.item.take() {
            let presented_until = end.map_or(now, |e| (e.max(0) as u64).saturating_mul(300));
            self.events.push_back(SpliceEvent::ItemPreempted {
                item: it.index(),
                presented_until,
            });
        }
        self.chosen = true;
        self.failed_in_row = 0;
        self.handover = None;
        self.cues.push_front(cue);
        self.io = match self.io {
            Io::Opening(i) | Io::Reading(i) => Io::Discard(i),
            Io::Discard(i) => Io::Discard(i),
            _ => self.next_io(None),
        };
    }

    /// An answer for an item given up by [`Splicer::preempt`]: ignored, and the cue that
    /// pre-empted it opens. Returns whether the answer was such.
    fn discarded(&mut self, item: usize) -> bool {
        if self.io != Io::Discard(item) {
            return false;
        }
        self.io = self.next_io(None);
        true
    }

    /// What to open after `item` (`None`: at the start): the next cue, else the next
    /// playlist entry. While a handover ([`Splicer::cut_current`]) or the next cue's fixed
    /// start is more than [`HANDOVER_SLACK`] away, the playlist goes on until then (cut
    /// there) instead: a cue never starts early by more, so a schedule's timeline holds, and
    /// no picture freezes before a fixed start when what came before ended early (it was
    /// shorter than probed, or joined late).
    fn next_io(&mut self, item: Option<usize>) -> Io {
        let next_in_playlist = item.map_or(0, |i| if i + 1 < self.loop_len() { i + 1 } else { 0 });
        let handover = self.handover.take();
        if let Some(at) = handover.or_else(|| self.cues.front().and_then(|c| c.not_before)) {
            let end = self
                .timeline
                .end_pts_90k
                .map_or(0, |e| (e.max(0) as u64).saturating_mul(300));
            // The item before the next cue ends its entry delay early (see `Cue`).
            let lead_90k = self.cues.front().map_or(0, |n| n.entry_delay_90k);
            let target = at.saturating_sub(lead_90k.saturating_mul(300));
            if end.saturating_add(HANDOVER_SLACK) < target {
                self.handover = handover;
                self.current_cue = CueParams {
                    until: Some(at),
                    cut_lead_90k: lead_90k,
                    ..CueParams::default()
                };
                return Io::Open(next_in_playlist);
            }
        }
        match self.cues.pop_front() {
            Some(c) if c.item < self.items => {
                self.current_cue = CueParams {
                    tag: Some(c.tag),
                    offset_90k: c.offset_90k,
                    from_byte: c.from_byte,
                    first_pts: c.first_pts,
                    not_before: c.not_before,
                    until: c.until,
                    cut_lead_90k: self.cues.front().map_or(0, |n| n.entry_delay_90k),
                    min_lead: 0,
                    program: None,
                };
                Io::Open(c.item)
            }
            _ => {
                self.current_cue = CueParams::default();
                Io::Open(next_in_playlist)
            }
        }
    }

    /// How many entries the playlist loops over: the playlist proper, or (a splicer made
    /// with none) every entry added since.
    fn loop_len(&self) -> usize {
        if self.playlist > 0 {
            self.playlist
        } else {
            self.items.max(1)
        }
    }

    /// The latest PMT decided (before the first item: no streams, PCR on the video PID). The
    /// muxer starts with it and then follows the [`Queued::Pmt`] entries.
    pub fn pmt(&self) -> &Pmt {
        &self.pmt
    }

    /// The configuration.
    pub fn config(&self) -> &SpliceConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> SpliceStats {
        self.stats
    }

    /// The next I/O to do at output time `now`, if any. A `Read` is asked for only while
    /// less than the horizon is queued; each request is asked once until answered.
    pub fn poll_io(&mut self, now: Ticks27M) -> Option<IoRequest> {
        match self.io {
            Io::Open(item) => {
                self.io = Io::Opening(item);
                Some(IoRequest::Open {
                    item,
                    from_byte: self.current_cue.from_byte,
                })
            }
            Io::Read(item) if self.wants_data(now) => {
                self.io = Io::Reading(item);
                Some(IoRequest::Read { item })
            }
            Io::Waiting { until, item } if now >= until => {
                self.io = Io::Opening(item);
                Some(IoRequest::Open {
                    item,
                    from_byte: self.current_cue.from_byte,
                })
            }
            _ => None,
        }
    }

    /// When the splicer next wants to be polled without new input (a retry), if waiting.
    pub fn poll_timeout(&self) -> Option<Ticks27M> {
        match self.io {
            Io::Waiting { until, .. } if until != u64::MAX => Some(until),
            _ => None,
        }
    }

    /// Whether the muxer must wait for input before deciding what is due at `now`: nothing
    /// is queued, yet more may come right away.
    pub fn starved(&self, _now: Ticks27M) -> bool {
        self.out.is_empty()
            && matches!(
                self.io,
                Io::Read(_) | Io::Reading(_) | Io::Open(_) | Io::Opening(_) | Io::Discard(_)
            )
    }

    /// The item opened.
    pub fn handle_opened(&mut self, item: usize) {
        if self.discarded(item) {
            return;
        }
        if self.io != Io::Opening(item) {
            return;
        }
        let mut cue = self.current_cue;
        cue.min_lead = self
            .live
            .iter()
            .find(|(i, _)| *i == item)
            .map_or(0, |(_, lead)| *lead);
        cue.program = self
            .programs
            .iter()
            .find(|(i, _)| *i == item)
            .map(|(_, p)| *p);
        self.item = Some(Item::new(item, cue));
        self.io = Io::Read(item);
    }

    /// The item could not be opened.
    pub fn handle_open_failed(&mut self, now: Ticks27M, item: usize, reason: &str) {
        if self.discarded(item) {
            return;
        }
        if self.io != Io::Opening(item) {
            return;
        }
        self.fail(now, item, ItemError::Open(reason.to_owned()));
    }

    /// The next chunk of the open item.
    pub fn handle_data(&mut self, now: Ticks27M, item: usize, data: Bytes) {
        if self.discarded(item) {
            return;
        }
        if self.io != Io::Reading(item) {
            return;
        }
        self.io = Io::Read(item);
        if let Some(it) = self.item.as_mut() {
            it.push(data);
        }
        self.release(now);
        if self
            .item
            .as_ref()
            .is_some_and(|it| it.cut_done() || it.hopeless() || it.streams_changed())
        {
            // Cut at its cue's end: the rest of the file is not wanted. Or nothing of it can
            // play: the rest is not read (a large file that is not TS).
            self.handle_eof(now, item, None);
        }
    }

    /// The open item ended (`error`: the read failed).
    pub fn handle_eof(&mut self, now: Ticks27M, item: usize, error: Option<&str>) {
        if self.discarded(item) {
            return;
        }
        if !matches!(self.io, Io::Reading(i) | Io::Read(i) if i == item) {
            return;
        }
        let Some(mut it) = self.item.take() else {
            return;
        };
        // A live input never ends cleanly: it is left, or it stopped, mid-stream, so what
        // is open then is cut short.
        let live = self.live.iter().any(|(i, _)| *i == item);
        it.finish(error.is_none() && !live);
        self.item = Some(it);
        self.release(now);
        let Some(it) = self.item.take() else { return };
        let outcome = it.outcome(error);
        match outcome {
            Ok(summary) => {
                self.failed_in_row = 0;
                if let Some(end) = summary.end_90k {
                    self.timeline.end_90k = Some(end);
                }
                if let Some(end) = summary.end_pts_90k {
                    self.timeline.end_pts_90k = Some(end);
                }
                for (pid, end) in summary.pid_ends {
                    match self.timeline.pid_ends.iter_mut().find(|(p, _)| *p == pid) {
                        Some(slot) => slot.1 = end,
                        None => self.timeline.pid_ends.push((pid, end)),
                    }
                }
                self.events.push_back(SpliceEvent::ItemEnded {
                    item,
                    packets: summary.packets,
                    damage: summary.damage,
                });
                if let Some(e) = summary.error {
                    self.events
                        .push_back(SpliceEvent::ItemFailed { item, error: e });
                }
                self.io = self.next_io(Some(item));
            }
            Err(e) => self.fail(now, item, e),
        }
    }

    /// The next thing for the muxer, without taking it.
    pub fn peek(&self) -> Option<&Queued> {
        self.out.front()
    }

    /// Takes the next thing for the muxer.
    pub fn pop(&mut self) -> Option<Queued> {
        let q = self.out.pop_front()?;
        self.emitted.note(&q);
        Some(q)
    }

    /// The next event to log.
    pub fn poll_event(&mut self) -> Option<SpliceEvent> {
        self.events.pop_front()
    }

    fn wants_data(&self, now: Ticks27M) -> bool {
        match self.out.back() {
            None => true,
            // An input richer than the muxrate leaves packets behind their due time; the
            // queue bound stops reading so memory stays bounded (the muxer reports the
            // lateness as an overload).
            Some(_) => {
                self.timeline.last_due < now.saturating_add(self.cfg.horizon)
                    && self.out.len() < MAX_QUEUED
            }
        }
    }

    /// When the last packet queued for the muxer is due (output time), if any is queued: for
    /// a live input, how far ahead of sending its newest data is.
    pub fn queued_until(&self) -> Option<Ticks27M> {
        (!self.out.is_empty()).then_some(self.timeline.last_due)
    }

    /// Packets (and PMT changes) queued for the muxer.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    fn fail(&mut self, now: Ticks27M, item: usize, error: ItemError) {
        self.item = None;
        self.stats.items_failed += 1;
        self.events
            .push_back(SpliceEvent::ItemFailed { item, error });
        // A cue that fails costs its own slot only: what follows (the next cue, or the
        // playlist up to the next cue's start) goes on at once. Only the playlist's own
        // entries failing one after another make nothing playable (null packets until a
        // retry): a schedule's file replaced on air by one that cannot be joined left its
        // channel without programme for the retry's second, with its filler playable.
        let from_cue = self.current_cue.tag.is_some();
        let next = self.next_io(Some(item));
        if from_cue {
            self.io = next;
            return;
        }
        self.failed_in_row += 1;
        if self.failed_in_row >= self.loop_len() {
            self.failed_in_row = 0;
            self.stats.nothing_playable += 1;
            let until = now + self.cfg.retry_after;
            self.events
                .push_back(SpliceEvent::NothingPlayable { retry_at: until });
            let Io::Open(next) = next else { return };
            self.io = Io::Waiting { until, item: next };
        } else {
            self.io = next;
        }
    }

    /// Stops the channel cleanly: no more input is read and no new access unit starts after
    /// `cutoff` (output time): on each PID, queued packets from the first PES that starts
    /// later than `cutoff` are dropped, and PES already begun are still released whole.
    /// Video ends on a picture after which nothing is displayed earlier: B-pictures that
    /// fill the display gap before the last kept reference picture stay, so the end shows
    /// every frame up to the last. Afterwards the muxer only stuffs. Used to end an offline
    /// render on complete frames.
    pub fn close(&mut self, now: Ticks27M, cutoff: Ticks27M) {
        self.release_with(now, true);
        self.item = None;
        self.io = Io::Closed;
        // Where each PID stops: the queue index of the first PES start that is dropped.
        let mut cuts: Vec<(Pid, usize)> = Vec::new();
        // Video: (PID, latest PTS so far, the last display-closed start seen).
        let mut video: Vec<(Pid, Pts, usize)> = Vec::new();
        for (i, q) in self.out.iter().enumerate() {
            let Queued::Packet(p) = q else { continue };
            if !p.packet.pusi() || cuts.iter().any(|(pid, _)| *pid == p.pid) {
                continue;
            }
            let header = PesHeader::parse(p.packet.payload());
            let is_video = header.is_some_and(|h| (0xE0..=0xEF).contains(&h.stream_id));
            let pts = header
                .and_then(|h| h.pts)
                .map(|t| t.add(p.shift.unwrap_or(0)));
            match (is_video, pts) {
                (true, Some(t)) => match video.iter_mut().find(|(pid, _, _)| *pid == p.pid) {
                    None if p.due > cutoff => cuts.push((p.pid, i)),
                    None => video.push((p.pid, t, i)),
                    Some((_, latest, closed)) => {
                        // Cutting here leaves no hole: everything after displays later.
                        if t.since(*latest) > 0 {
                            if p.due > cutoff {
                                cuts.push((p.pid, i));
                                continue;
                            }
                            *closed = i;
                            *latest = t;
                        }
                    }
                },
                _ if p.due > cutoff => cuts.push((p.pid, i)),
                _ => {}
            }
        }
        // Video that ran out before a closed point past the cutoff ends at the last one seen
        // (its missing pictures were never read).
        for (pid, _, closed) in video {
            if !cuts.iter().any(|(p, _)| *p == pid) {
                cuts.push((pid, closed));
            }
        }
        let mut i = 0;
        self.out.retain(|q| {
            let keep = match q {
                Queued::Packet(p) => cuts
                    .iter()
                    .find(|(pid, _)| *pid == p.pid)
                    .is_none_or(|(_, at)| i < *at),
                Queued::Pmt(_) => true,
            };
            i += 1;
            keep
        });
    }

    /// Moves resolved packets of the current item to the output queue.
    fn release(&mut self, now: Ticks27M) {
        self.release_with(now, false);
    }

    fn release_with(&mut self, now: Ticks27M, closing: bool) {
        let Some(it) = self.item.as_mut() else { return };
        let mut ctx = item::ReleaseCtx {
            now,
            closing,
            cfg: &self.cfg,
            alloc: &mut self.alloc,
            timeline: &mut self.timeline,
            current_pmt: &mut self.pmt,
            out: &mut self.out,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        it.release(&mut ctx);
    }
}

/// Builds the output PMT for a set of mapped streams.
pub(crate) fn output_pmt(
    cfg: &SpliceConfig,
    version: u8,
    pcr_pid: Pid,
    streams: Vec<EsInfo>,
) -> Pmt {
    Pmt {
        program_number: cfg.service_id,
        version,
        pcr_pid,
        program_info: cfg.program_info.clone(),
        streams,
    }
}
