//! The CBR multiplexer (ISO/IEC 13818-1 §2.4.2.2 PCR, §2.4.4 PSI; ETSI TR 101 290 checks
//! 1.3, 1.4, 1.5, 2.3, 2.4).
//!
//! Output time is the packet slot: slot `k` leaves at `origin + k × 188 × 8 / muxrate`
//! seconds, so every PCR is restamped exactly from its byte position (error below one 27 MHz
//! tick) and the rate is exact by construction. Each slot carries, in order of priority: the
//! PAT or a PMT when their repetition interval is up (or a PMT just changed), a PCR-only packet
//! when a program's PCR interval is up, the earliest due packet of any program, or a null
//! packet. One [`Mux`] serves one output: a single channel, or several (MPTS).
//!
//! The muxer copies each packet once, into the caller's output buffer, and applies the
//! splicer's rewrites there in place: PID, continuity counter, PCR, PTS/DTS, NAL patch.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::psi::{packetize_section, Pat, Pmt};
use crate::splice::{IoRequest, Queued, SpliceEvent, Splicer};
use crate::time::{Pcr, Ticks27M, SYSTEM_CLOCK_HZ};
use crate::ts::{pcr_only_packet, Pid, TsPacketMut, NULL_PACKET, PACKET_SIZE};

/// Muxer settings.
#[derive(Clone, Debug)]
pub struct MuxConfig {
    /// Constant output rate in bits per second.
    pub muxrate_bps: u64,
    /// transport_stream_id in the PAT.
    pub transport_stream_id: u16,
    /// Longest gap between PCRs of a program (27 MHz ticks; default 30 ms).
    pub pcr_interval: Ticks27M,
    /// Longest gap between PAT (and each PMT) repetitions (27 MHz ticks; default 80 ms).
    pub psi_interval: Ticks27M,
    /// Output clock at slot 0 (27 MHz ticks): the first PCR.
    pub clock_origin: Ticks27M,
    /// A packet leaving later than this after its due time means the input is richer than
    /// the muxrate (27 MHz ticks; default 1 s).
    pub late_limit: Ticks27M,
}

impl MuxConfig {
    /// Defaults for a muxrate.
    pub fn new(muxrate_bps: u64) -> MuxConfig {
        MuxConfig {
            muxrate_bps,
            transport_stream_id: 1,
            pcr_interval: SYSTEM_CLOCK_HZ * 30 / 1000,
            psi_interval: SYSTEM_CLOCK_HZ * 80 / 1000,
            clock_origin: 0,
            late_limit: SYSTEM_CLOCK_HZ,
        }
    }
}

/// What [`Mux::emit`] does when a program has nothing queued but more input may come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underflow {
    /// Stop and return, so the driver can read more (offline rendering: deterministic).
    Wait,
    /// Fill with null packets (real time: the output never stops).
    Stuff,
}

/// Things worth logging.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MuxEvent {
    /// A program's splicer reported something.
    Splice {
        /// Program index.
        program: usize,
        /// The event.
        event: SpliceEvent,
    },
    /// A program's packets leave later than the late limit: its input carries more than
    /// the muxrate allows.
    Overload {
        /// Program index.
        program: usize,
        /// How late, in 27 MHz ticks.
        late: Ticks27M,
    },
    /// The program is back on time.
    OverloadCleared {
        /// Program index.
        program: usize,
    },
}

/// Counters, read through [`Mux::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Packets emitted.
    pub packets: u64,
    /// Null packets emitted.
    pub null_packets: u64,
    /// PAT and PMT packets emitted (and SI, counted in `si_packets` too).
    pub psi_packets: u64,
    /// SI table packets emitted ([`Mux::set_table`]).
    pub si_packets: u64,
    /// PCR-only packets inserted.
    pub pcr_inserted: u64,
    /// Payload packets emitted.
    pub es_packets: u64,
    /// Payload packets that left later than the late limit.
    pub late_packets: u64,
    /// The largest lateness seen (27 MHz ticks).
    pub max_late: Ticks27M,
    /// Slots where a program had nothing queued while it was reading (real time only).
    pub underflows: u64,
    /// Packets of rate-capped data streams emitted ([`Mux::set_stream`]).
    pub data_packets: u64,
}

struct Program {
    splicer: Splicer,
    pmt: Pmt,
    pmt_packets: Bytes,
    next_pmt: Ticks27M,
    pmt_pending: bool,
    last_pcr: Option<Ticks27M>,
    overloaded: bool,
}

/// A CBR multiplexer over one or more splicers.
pub struct Mux {
    cfg: MuxConfig,
    programs: Vec<Program>,
    pat_packets: Bytes,
    next_pat: Ticks27M,
    slot: u64,
    cc: Box<[u8; 8192]>,
    stats: MuxStats,
    events: VecDeque<MuxEvent>,
    /// The rest of a table's packets, sent before anything but a due PCR, PAT or PMT; the
    /// last packet of a carousel's section names it (`(pid, key)`), whose next section may
    /// start 25 ms after that packet has left.
    pending_psi: VecDeque<(Bytes, Option<(Pid, u64)>)>,
    track_raps: bool,
    raps: VecDeque<Rap>,
    carousels: Vec<Carousel>,
    streams: Vec<DataStream>,
    /// Before this output time nothing but program packets can be due (no PCR, PAT, PMT,
    /// table or data stream packet): a slot then only looks at the programs' queues. A lower
    /// bound, recomputed after each slot that looks at everything and reset to 0 by
    /// whatever may make something due sooner.
    horizon: Ticks27M,
}

/// A random access point in the output, reported by [`Mux::poll_rap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rap {
    /// Program index.
    pub program: usize,
    /// The slot holding the first packet of an access unit a decoder can start from.
    pub slot: u64,
    /// The PAT and every PMT as a receiver joining at `slot` must get them first, with
    /// continuity counters that the muxer's next PAT and PMTs continue.
    pub psi: Bytes,
}

/// A repeated table (DVB SI: SDT, EIT, TDT/TOT, NIT) sent by the muxer.
struct Carousel {
    pid: Pid,
    /// Which table on the PID (a caller's key: the table_id, or for tables with several
    /// sub-tables one that tells them apart, e.g. table_id, transport stream and
    /// table_id_extension packed together).
    key: u64,
    /// Each section, packetised.
    sections: Vec<Bytes>,
    /// New content and its interval, swapped in when a cycle ends, so a receiver never sees
    /// the sections of one table with two versions mixed (and the cycle on air ends at its
    /// own pace).
    pending: Option<(Vec<Bytes>, Ticks27M)>,
    /// Every section is sent once per interval...
    interval: Ticks27M,
    next_due: Ticks27M,
    /// 25 ms after the last packet of the section last sent: the earliest the next may go.
    not_before: Ticks27M,
    /// A version sent at once ([`Mux::set_table_now`]): its sections go back to back (25 ms
    /// apart), so none waits longer than an interval and a little since its last repetition;
    /// then the plan goes on from the last of them.
    burst: bool,
    next: usize,
}

impl Carousel {
    /// New content waiting for the end of a cycle, and its interval, become the table's.
    fn take_pending(&mut self) {
        if let Some((sections, interval)) = self.pending.take() {
            self.sections = sections;
            self.interval = interval;
        }
    }
}

/// A queue of packets on one PID sent in order, no faster than a rate ([`Mux::set_stream`]).
struct DataStream {
    pid: Pid,
    /// 27 MHz ticks between packets at the stream's rate.
    spacing: Ticks27M,
    max_queued: usize,
    queue: VecDeque<Bytes>,
    next_due: Ticks27M,
    sent: u64,
}

/// Packets a data stream may send back to back after being idle.
const STREAM_BURST: u64 = 2;

/// ...and sections of one table at least this far apart (TS 101 211 §4.4: 25 ms).
const MIN_SECTION_GAP: Ticks27M = SYSTEM_CLOCK_HZ * 25 / 1000;

/// Random access points remembered for [`Mux::poll_rap`] before the oldest are dropped.
const MAX_RAPS: usize = 64;

impl Mux {
    /// A muxer for `programs` (distinct service ids and PIDs are the caller's promise; the
    /// config validator checks them).
    pub fn new(cfg: MuxConfig, programs: Vec<Splicer>) -> Mux {
        let pat = Pat {
            transport_stream_id: cfg.transport_stream_id,
            version: 0,
            programs: programs
                .iter()
                .map(|s| (s.config().service_id, s.config().pids.pmt))
                .collect(),
            network_pid: None,
        };
        let mut pat_packets = BytesMut::new();
        packetize_section(Pid::PAT, &pat.build(), 0, &mut pat_packets);
        let origin = cfg.clock_origin;
        let programs = programs
            .into_iter()
            .map(|splicer| {
                let pmt = splicer.pmt().clone();
                let pmt_packets = packetize_pmt(splicer.config().pids.pmt, &pmt);
                Program {
                    splicer,
                    pmt,
                    pmt_packets,
                    next_pmt: origin,
                    pmt_pending: true,
                    last_pcr: None,
                    overloaded: false,
                }
            })
            .collect();
        Mux {
            cfg,
            programs,
            pat_packets: pat_packets.freeze(),
            next_pat: origin,
            slot: 0,
            cc: Box::new([0x0F; 8192]),
            stats: MuxStats::default(),
            events: VecDeque::new(),
            pending_psi: VecDeque::new(),
            track_raps: false,
            raps: VecDeque::new(),
            carousels: Vec::new(),
            streams: Vec::new(),
            horizon: 0,
        }
    }

    /// Lists `pid` as the network PID (program_number 0, ISO 13818-1 §2.4.4.3) in the PAT,
    /// for a stream that carries a NIT. Meant before the first [`Mux::emit`]: the PAT keeps
    /// version 0.
    pub fn set_network_pid(&mut self, pid: Pid) {
        let pat = Pat {
            transport_stream_id: self.cfg.transport_stream_id,
            version: 0,
            programs: self
                .programs
                .iter()
                .map(|p| (p.splicer.config().service_id, p.splicer.config().pids.pmt))
                .collect(),
            network_pid: Some(pid),
        };
        let mut packets = BytesMut::new();
        packetize_section(Pid::PAT, &pat.build(), 0, &mut packets);
        self.pat_packets = packets.freeze();
    }

    /// The configuration.
    pub fn config(&self) -> &MuxConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> MuxStats {
        self.stats
    }

    /// Packets emitted so far.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// Output time of slot `k` (its first byte).
    pub fn slot_time(&self, k: u64) -> Ticks27M {
        self.byte_time(k * PACKET_SIZE as u64)
    }

    /// Output time of the next slot.
    pub fn now(&self) -> Ticks27M {
        self.slot_time(self.slot)
    }

    /// Program `i`'s splicer.
    pub fn program(&self, i: usize) -> &Splicer {
        &self.programs[i].splicer
    }

    /// The splicer of program `i`.
    pub fn program_mut(&mut self, i: usize) -> &mut Splicer {
        &mut self.programs[i].splicer
    }

    /// Number of programs.
    pub fn programs(&self) -> usize {
        self.programs.len()
    }

    /// The next I/O any program wants at the current output time.
    pub fn poll_io(&mut self) -> Option<(usize, IoRequest)> {
        let now = self.now();
        self.programs
            .iter_mut()
            .enumerate()
            .find_map(|(i, p)| p.splicer.poll_io(now).map(|r| (i, r)))
    }

    /// Packets (and PMT changes) queued in all programs: 0 after [`Mux::close`] once
    /// everything begun is out.
    pub fn queued(&self) -> usize {
        self.programs.iter().map(|p| p.splicer.queued()).sum()
    }

    /// Closes every program (see [`Splicer::close`]): no access unit starts after `cutoff`,
    /// what has begun finishes, then stuffing.
    pub fn close(&mut self, cutoff: Ticks27M) {
        let now = self.now();
        for p in &mut self.programs {
            p.splicer.close(now, cutoff);
        }
    }

    /// The next event to log.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        for (program, p) in self.programs.iter_mut().enumerate() {
            if let Some(event) = p.splicer.poll_event() {
                self.events.push_back(MuxEvent::Splice { program, event });
            }
        }
        self.events.pop_front()
    }

    /// Sends `sections` (each a whole section, packetised here) on `pid` again and again,
    /// each once per `interval` (due times keep to the plan; lateness does not add up), the
    /// next section of a table at least 25 ms after the last packet of the previous one. A
    /// section that is due goes out after PCR, PAT and PMT and before program packets, so its
    /// rate holds under full load: the caller budgets it in the muxrate (the program packets it
    /// displaces leave later, and the muxer's lateness counters show it). Replaces the table sent under the same
    /// `(pid, key)` from its next cycle (a receiver never gets sections of two versions of one
    /// table mixed); empty `sections` stop it. For DVB SI: the caller rebuilds a table when its
    /// content changes (a new version) and calls this again.
    pub fn set_table(&mut self, pid: Pid, key: u64, sections: &[&[u8]], interval: Ticks27M) {
        let packets: Vec<Bytes> = sections
            .iter()
            .map(|sec| {
                let mut b = BytesMut::new();
                crate::psi::packetize_section(pid, sec, 0, &mut b);
                b.freeze()
            })
            .collect();
        self.set_carousel(pid, key, packets, interval);
    }

    /// [`Mux::set_table`] for a table whose change viewers must see at once (DVB EIT
    /// present/following when an event starts): the new content replaces the old now and its
    /// sections go out from the first (so the versions never mix), as soon as the 25 ms after
    /// the table's last section allow and 25 ms apart (so no section waits much longer than
    /// `interval` since its last repetition); then once per `interval` from the last of them.
    pub fn set_table_now(&mut self, pid: Pid, key: u64, sections: &[&[u8]], interval: Ticks27M) {
        self.set_table(pid, key, sections, interval);
        let now = self.now();
        if let Some(c) = self.carousel_mut(pid, key) {
            c.take_pending();
            c.next = 0;
            c.next_due = now.max(c.not_before);
            c.burst = true;
        }
    }

    /// [`Mux::set_table`] for a table that comes as TS packets already (an ECMG's ECMs with
    /// section_TSpkt_flag 1): each of `groups` is whole 188-byte packets sent together, in
    /// turn, once per `interval`; new content's first group goes out at once when the
    /// carousel is between cycles (an ECM whose window opened), not at the old rhythm. Their PID is rewritten to `pid` here and their continuity
    /// counters continue the PID's (advancing on packets with a payload only). A group whose
    /// length is not a multiple of 188 bytes is cut to its whole packets.
    pub fn set_table_packets(&mut self, pid: Pid, key: u64, groups: &[&[u8]], interval: Ticks27M) {
        let packets: Vec<Bytes> = groups
            .iter()
            .map(|g| retag(g, pid))
            .filter(|b| !b.is_empty())
            .collect();
        self.set_carousel(pid, key, packets, interval);
        // New content goes out at once (an ECM's window has opened), not at the old rhythm.
        let now = self.now();
        if let Some(c) = self
            .carousel_mut(pid, key)
            .filter(|c| c.next == 0 && c.pending.is_none())
        {
            c.next_due = c.next_due.min(now);
        }
    }

    /// The carousel of the table sent under `(pid, key)`, if there is one.
    fn carousel_mut(&mut self, pid: Pid, key: u64) -> Option<&mut Carousel> {
        self.carousels
            .iter_mut()
            .find(|c| c.pid == pid && c.key == key)
    }

    /// The bytes (whole packets) one cycle of the table sent under `(pid, key)` takes, the
    /// content it changes to at its next cycle if it is changing; `None` if there is none.
    pub fn table_bytes(&self, pid: Pid, key: u64) -> Option<usize> {
        let c = self
            .carousels
            .iter()
            .find(|c| c.pid == pid && c.key == key)?;
        let packets = c.pending.as_ref().map_or(&c.sections, |(p, _)| p);
        Some(packets.iter().map(Bytes::len).sum())
    }

    /// Sends the table under `(pid, key)` once per `interval` (its content unchanged): from
    /// now on, or, if new content is waiting for the cycle on air to end, from the new
    /// content's first cycle. Nothing if there is no such table.
    pub fn set_table_interval(&mut self, pid: Pid, key: u64, interval: Ticks27M) {
        if let Some(c) = self.carousel_mut(pid, key) {
            match &mut c.pending {
                Some((_, pending)) => *pending = interval.max(1),
                None => c.interval = interval.max(1),
            }
            self.horizon = 0;
        }
    }

    /// A data stream on `pid` (EMMs from an EMMG): packets given to [`Mux::push_stream`] leave
    /// in order, before program packets, no faster than `rate_bps` on average (two may go
    /// back to back after a pause), with at most `max_queued` waiting. Calling it again
    /// changes the rate and bound and keeps the queue; `rate_bps` 0 removes the stream and
    /// what it had queued. The caller budgets the rate in the muxrate: the stream can never
    /// push the output over it (the muxer is CBR), it displaces program packets instead.
    pub fn set_stream(&mut self, pid: Pid, rate_bps: u64, max_queued: usize) {
        self.horizon = 0;
        let i = self.streams.iter().position(|s| s.pid == pid);
        if rate_bps == 0 {
            if let Some(i) = i {
                self.streams.remove(i);
            }
            return;
        }
        let spacing = (PACKET_SIZE as u64 * 8 * SYSTEM_CLOCK_HZ).div_ceil(rate_bps);
        match i {
            Some(i) => {
                self.streams[i].spacing = spacing;
                self.streams[i].max_queued = max_queued;
            }
            None => self.streams.push(DataStream {
                pid,
                spacing,
                max_queued,
                queue: VecDeque::new(),
                next_due: self.now(),
                sent: 0,
            }),
        }
    }

    /// Queues whole 188-byte packets on the data stream of `pid` (PID rewritten here,
    /// continuity counters stamped as they leave); returns how many were taken: fewer when the
    /// queue is full (the rest is the caller's to drop or hold back), none without a stream.
    pub fn push_stream(&mut self, pid: Pid, packets: &[u8]) -> usize {
        self.horizon = 0;
        let Some(s) = self.streams.iter_mut().find(|s| s.pid == pid) else {
            return 0;
        };
        let mut taken = 0;
        for p in packets.chunks_exact(PACKET_SIZE) {
            if s.queue.len() >= s.max_queued {
                break;
            }
            s.queue.push_back(retag(p, pid));
            taken += 1;
        }
        taken
    }

    /// A data stream's packets sent so far and waiting now, `None` without one.
    pub fn stream_state(&self, pid: Pid) -> Option<(u64, usize)> {
        self.streams
            .iter()
            .find(|s| s.pid == pid)
            .map(|s| (s.sent, s.queue.len()))
    }

    fn set_carousel(&mut self, pid: Pid, key: u64, packets: Vec<Bytes>, interval: Ticks27M) {
        self.horizon = 0;
        let now = self.now();
        match self
            .carousels
            .iter()
            .position(|c| c.pid == pid && c.key == key)
        {
            Some(i) if packets.is_empty() => {
                self.carousels.remove(i);
            }
            Some(i) => {
                let c = &mut self.carousels[i];
                if c.next == 0 {
                    // Between cycles: at once, and whatever was waiting for this point is
                    // older than it.
                    c.sections = packets;
                    c.interval = interval.max(1);
                    c.pending = None;
                } else {
                    c.pending = Some((packets, interval.max(1)));
                }
            }
            None if packets.is_empty() => {}
            None => self.carousels.push(Carousel {
                pid,
                key,
                sections: packets,
                pending: None,
                interval: interval.max(1),
                next_due: now,
                not_before: 0,
                burst: false,
                next: 0,
            }),
        }
    }

    /// Turns reporting of random access points on or off (off by default).
    pub fn track_raps(&mut self, on: bool) {
        self.track_raps = on;
        if !on {
            self.raps.clear();
        }
    }

    /// The next random access point emitted, oldest first, while tracking is on. A driver
    /// serving late joiners (HTTP clients) starts them there, tables first. Only the last 64
    /// are kept.
    pub fn poll_rap(&mut self) -> Option<Rap> {
        self.raps.pop_front()
    }

    /// The PAT and every PMT, with continuity counters that the muxer's next PAT and PMTs
    /// continue: what a receiver joining the output at the current slot gets first.
    pub fn psi_snapshot(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.snapshot_table(&self.pat_packets, &mut out);
        for p in &self.programs {
            self.snapshot_table(&p.pmt_packets, &mut out);
        }
        out.freeze()
    }

    fn snapshot_table(&self, packets: &Bytes, out: &mut BytesMut) {
        let n = packets.len() / PACKET_SIZE;
        for (j, raw) in packets.chunks_exact(PACKET_SIZE).enumerate() {
            let start = out.len();
            out.extend_from_slice(raw);
            if let Ok(mut m) = TsPacketMut::new(&mut out[start..]) {
                // The last packet repeats the last CC sent on the PID, earlier ones precede it.
                let last = self.cc[m.pid().index()];
                let back = ((n - 1 - j) % 16) as u8;
                m.set_cc((last + 16 - back) & 0x0F);
            }
        }
    }

    /// Appends up to `max` packets to `out`. With [`Underflow::Wait`] it stops early when a
    /// program has nothing queued but is still reading; returns how many were written.
    pub fn emit(&mut self, out: &mut BytesMut, max: usize, underflow: Underflow) -> usize {
        out.reserve(max * PACKET_SIZE);
        for n in 0..max {
            let now = self.now();
            let starved = self.programs.iter().any(|p| p.splicer.starved(now));
            if starved && underflow == Underflow::Wait {
                return n;
            }
            if starved {
                self.stats.underflows += 1;
            }
            self.fill_slot(now, out);
            self.slot += 1;
            self.stats.packets += 1;
        }
        max
    }

    fn byte_time(&self, byte: u64) -> Ticks27M {
        byte_time(&self.cfg, byte)
    }

    fn pcr_now(&self) -> Pcr {
        pcr_at(&self.cfg, self.slot)
    }

    fn fill_slot(&mut self, now: Ticks27M, out: &mut BytesMut) {
        if now < self.horizon && self.pending_psi.is_empty() {
            self.fill_program_slot(now, out);
            return;
        }
        self.fill_any_slot(now, out);
        self.horizon = self.next_other_due();
    }

    /// The earliest output time at which anything other than a program packet can be due
    /// ([`Mux::horizon`]).
    fn next_other_due(&self) -> Ticks27M {
        if !self.pending_psi.is_empty() {
            return 0;
        }
        let mut t = self.next_pat;
        for p in &self.programs {
            if p.pmt_pending {
                return 0;
            }
            t = t.min(p.next_pmt);
            if p.pmt.pcr_pid != Pid::NULL {
                match p.last_pcr {
                    Some(last) => t = t.min(last + self.cfg.pcr_interval),
                    None => return 0,
                }
            }
        }
        for c in &self.carousels {
            t = t.min(c.next_due);
        }
        for d in &self.streams {
            if !d.queue.is_empty() {
                t = t.min(d.next_due);
            }
        }
        t
    }

    fn fill_any_slot(&mut self, now: Ticks27M, out: &mut BytesMut) {
        // PCR, then PAT and PMT, before anything else, the rest of a table's packets
        // included: the PCR's limit (40 ms) is tighter than theirs (100 ms), at low muxrates
        // a slot is several milliseconds, and an EIT schedule section of 4 KB is 23 packets
        // (11 ms at 3 Mbit/s, 35 ms at 1 Mbit/s). A section's packets may have packets of
        // other PIDs between them; a table's next section starts once its last one is out.
        for i in 0..self.programs.len() {
            let p = &self.programs[i];
            let due = p.last_pcr.is_none_or(|t| now >= t + self.cfg.pcr_interval);
            if due && p.pmt.pcr_pid != Pid::NULL {
                let pid = p.pmt.pcr_pid;
                let pkt = pcr_only_packet(pid, self.pcr_now());
                let start = out.len();
                out.extend_from_slice(&pkt);
                let cc = self.cc[pid.index()];
                if let Ok(mut m) = TsPacketMut::new(&mut out[start..]) {
                    m.set_cc(cc);
                }
                self.programs[i].last_pcr = Some(now);
                self.stats.pcr_inserted += 1;
                return;
            }
        }
        if now >= self.next_pat {
            self.next_pat = now + self.cfg.psi_interval;
            let pat = self.pat_packets.clone();
            self.put_psi(&pat, out);
            return;
        }
        for i in 0..self.programs.len() {
            let p = &mut self.programs[i];
            if p.pmt_pending || now >= p.next_pmt {
                p.pmt_pending = false;
                p.next_pmt = now + self.cfg.psi_interval;
                let pmt = p.pmt_packets.clone();
                self.put_psi(&pmt, out);
                return;
            }
        }
        if let Some((packet, owner)) = self.pending_psi.pop_front() {
            self.put_psi_packet(&packet, out);
            if let Some((pid, key)) = owner {
                // A PCR, PAT or PMT may have gone between the section's packets: the gap
                // counts from when its last one really left.
                let earliest = self.slot_time(self.slot + 1) + MIN_SECTION_GAP;
                if let Some(c) = self.carousel_mut(pid, key) {
                    c.next_due = c.next_due.max(earliest);
                    c.not_before = c.not_before.max(earliest);
                }
            }
            return;
        }
        // Tables (SI) whose time has come.
        if let Some(i) = self.carousels.iter().position(|c| now >= c.next_due) {
            let c = &mut self.carousels[i];
            if c.next == 0 {
                c.take_pending();
            }
            let section = c.sections[c.next].clone();
            let n = c.sections.len() as u64;
            c.next = (c.next + 1) % c.sections.len();
            // Due times follow the plan (lateness does not add up) unless far behind; the
            // next section starts at least 25 ms after this one's last packet.
            let step = c.interval / n;
            let planned = if c.burst {
                c.burst = c.next != 0;
                if c.burst {
                    now
                } else {
                    now + step
                }
            } else if c.next_due + step + c.interval < now {
                now
            } else {
                c.next_due + step
            };
            let last_packet = self.slot + (section.len() / PACKET_SIZE) as u64;
            let earliest = self.slot_time(last_packet) + MIN_SECTION_GAP;
            self.carousels[i].next_due = planned.max(earliest);
            self.carousels[i].not_before = earliest;
            self.stats.si_packets += (section.len() / PACKET_SIZE) as u64;
            let owner = (self.carousels[i].pid, self.carousels[i].key);
            self.put_psi_of(&section, out, Some(owner));
            return;
        }
        // Data streams (EMMs) whose next packet may go.
        if let Some(i) = self
            .streams
            .iter()
            .position(|d| !d.queue.is_empty() && now >= d.next_due)
        {
            let d = &mut self.streams[i];
            let base = d
                .next_due
                .max(now.saturating_sub(d.spacing * (STREAM_BURST - 1)));
            d.next_due = base + d.spacing;
            d.sent += 1;
            let packet = d.queue.pop_front().unwrap_or_default();
            self.stats.data_packets += 1;
            self.put_stamped(&packet, out);
            return;
        }
        self.fill_program_slot(now, out);
    }

    /// The earliest due packet of any program, or a null packet.
    fn fill_program_slot(&mut self, now: Ticks27M, out: &mut BytesMut) {
        let mut best: Option<(usize, Ticks27M)> = None;
        for (i, p) in self.programs.iter().enumerate() {
            let due = match p.splicer.peek() {
                Some(Queued::Pmt(_)) => 0,
                Some(Queued::Packet(op)) => op.due,
                None => continue,
            };
            if due <= now && best.is_none_or(|(_, d)| due < d) {
                best = Some((i, due));
            }
        }
        let Some((i, _)) = best else {
            out.extend_from_slice(&NULL_PACKET);
            self.stats.null_packets += 1;
            return;
        };
        match self.programs[i].splicer.pop() {
            Some(Queued::Pmt(pmt)) => {
                // The new PMT's PCR PID starts its own interval: look at everything again.
                self.horizon = 0;
                let p = &mut self.programs[i];
                p.pmt_packets = packetize_pmt(p.splicer.config().pids.pmt, &pmt);
                p.pmt = pmt;
                p.next_pmt = now + self.cfg.psi_interval;
                p.last_pcr = None;
                let pmt = p.pmt_packets.clone();
                self.put_psi(&pmt, out);
            }
            Some(Queued::Packet(op)) => {
                let late = now.saturating_sub(op.due);
                self.stats.max_late = self.stats.max_late.max(late);
                let (cfg, slot) = (&self.cfg, self.slot);
                let p = &mut self.programs[i];
                if late > self.cfg.late_limit {
                    self.stats.late_packets += 1;
                    if !p.overloaded {
                        p.overloaded = true;
                        self.events
                            .push_back(MuxEvent::Overload { program: i, late });
                    }
                } else if p.overloaded && late < self.cfg.late_limit / 10 {
                    p.overloaded = false;
                    self.events
                        .push_back(MuxEvent::OverloadCleared { program: i });
                }
                let start = out.len();
                out.extend_from_slice(op.packet.raw());
                let Ok(mut m) = TsPacketMut::new(&mut out[start..]) else {
                    return;
                };
                m.set_pid(op.pid);
                let cc = &mut self.cc[op.pid.index()];
                if m.has_payload() {
                    *cc = (*cc + 1) & 0x0F;
                }
                m.set_cc(*cc);
                if let Some(delta) = op.shift {
                    m.shift_timestamps(delta);
                }
                if let Some(patch) = op.patch {
                    m.patch(
                        usize::from(patch.at),
                        &patch.bytes[..usize::from(patch.len)],
                    );
                }
                if m.clear_discontinuity_set_pcr(|| pcr_at(cfg, slot)) && op.pid == p.pmt.pcr_pid {
                    p.last_pcr = Some(now);
                }
                if op.rap && self.track_raps {
                    if self.raps.len() == MAX_RAPS {
                        self.raps.pop_front();
                    }
                    let psi = self.psi_snapshot();
                    self.raps.push_back(Rap {
                        program: i,
                        slot: self.slot,
                        psi,
                    });
                }
                self.stats.es_packets += 1;
            }
            None => {
                out.extend_from_slice(&NULL_PACKET);
                self.stats.null_packets += 1;
            }
        }
    }

    /// Emits the first packet of a packetised table; a table of several packets continues in
    /// the next slots, before anything but a PCR, PAT or PMT that is due.
    fn put_psi(&mut self, packets: &Bytes, out: &mut BytesMut) {
        self.put_psi_of(packets, out, None);
    }

    /// [`Mux::put_psi`] for a section of the carousel `owner` (`(pid, key)`), told when its
    /// last packet leaves.
    fn put_psi_of(&mut self, packets: &Bytes, out: &mut BytesMut, owner: Option<(Pid, u64)>) {
        let n = packets.len() / PACKET_SIZE;
        for k in 1..n {
            let last = k + 1 == n;
            self.pending_psi.push_back((
                packets.slice(k * PACKET_SIZE..(k + 1) * PACKET_SIZE),
                owner.filter(|_| last),
            ));
        }
        self.put_psi_packet(&packets[..PACKET_SIZE], out);
    }

    fn put_psi_packet(&mut self, packet: &[u8], out: &mut BytesMut) {
        self.put_stamped(packet, out);
        self.stats.psi_packets += 1;
    }

    /// Appends `packet` with the next continuity counter of its PID.
    fn put_stamped(&mut self, packet: &[u8], out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(packet);
        if let Ok(mut m) = TsPacketMut::new(&mut out[start..]) {
            let pid = m.pid();
            let cc = &mut self.cc[pid.index()];
            // A packet without a payload repeats the counter (ISO/IEC 13818-1 §2.4.3.3).
            if m.has_payload() {
                *cc = (*cc + 1) & 0x0F;
            }
            m.set_cc(*cc);
        }
    }
}

/// Output time of byte `byte`: 64-bit arithmetic for the first ~85 GB of output, exact
/// 128-bit after that.
fn byte_time(cfg: &MuxConfig, byte: u64) -> Ticks27M {
    let t = match byte.checked_mul(8 * SYSTEM_CLOCK_HZ) {
        Some(n) => n / cfg.muxrate_bps,
        None => {
            (u128::from(byte) * 8 * u128::from(SYSTEM_CLOCK_HZ) / u128::from(cfg.muxrate_bps))
                as u64
        }
    };
    cfg.clock_origin + t
}

/// PCR for a packet in slot `slot`: the arrival time of byte 10 of the packet, the last byte
/// of program_clock_reference_base (ISO/IEC 13818-1 §2.4.2.2).
fn pcr_at(cfg: &MuxConfig, slot: u64) -> Pcr {
    Pcr::new(byte_time(cfg, slot * PACKET_SIZE as u64 + 10))
}

/// The whole 188-byte packets of `packets` with their PID set to `pid`.
fn retag(packets: &[u8], pid: Pid) -> Bytes {
    let whole = packets.len() / PACKET_SIZE * PACKET_SIZE;
    let mut b = BytesMut::from(&packets[..whole]);
    for p in b.chunks_exact_mut(PACKET_SIZE) {
        crate::ts::header::set_pid(p, pid);
    }
    b.freeze()
}

fn packetize_pmt(pid: Pid, pmt: &Pmt) -> Bytes {
    let mut b = BytesMut::new();
    packetize_section(pid, &pmt.build(), 0, &mut b);
    b.freeze()
}
