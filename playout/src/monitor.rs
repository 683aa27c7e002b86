//! A continuous ETSI TR 101 290 monitor (§5.2): counts, per rule, the errors of a transport
//! stream as it goes by: priority 1 (sync, PAT, continuity, PMT, PID), priority 2 (transport
//! error, CRC, PCR repetition, discontinuity and accuracy, PTS repetition) and, for the SI a
//! head-end sends, priority 3 repetition (NIT, SDT, EIT, TDT).
//!
//! Sans-IO: [`Monitor::push`] takes packets with the time they went by (ns, any monotonic
//! origin); [`Monitor::tick`] takes the time alone, for the rules that fire on absence.
//! Repetition limits are the document's: PAT and each PMT 0.5 s, PCR 40 ms (100 ms between
//! values for a discontinuity), PTS 700 ms, a PID of the PMT 5 s (the "user specified"
//! period), NIT 10 s, SDT and EIT p/f 2 s, TDT 30 s. An absence is counted once per period it
//! lasts.
//!
//! PCR accuracy (2.4, ±500 ns) is judged in the packet-count model, never from arrival times:
//! a constant-bitrate stream puts each PCR where the previous accurate PCR of its PID and the
//! packets between them at the stream's rate say it should be, and that rate is estimated
//! from the PCRs themselves (packets over ticks since the PID's first PCR). Arrival times
//! carry the network's jitter (milliseconds on a live input), a thousand times the tolerance,
//! so they cannot judge it; the byte positions can, on any CBR stream, live or not. A single
//! PCR off by more than 500 ns counts once (the next PCR is judged from the last good one); a
//! step (every PCR from one on shifted alike, or a new rate) counts once too and the
//! estimate starts again from there, as it does at a discontinuity_indicator. A lost packet
//! shifts the byte count, so on a lossy input a loss in front of a PCR counts once as well. A
//! variable-bitrate stream has no such model: [`MonitorConfig::pcr_accuracy`] is off for it.

use std::collections::HashMap;

use crate::psi::{crc32_mpeg2, Pat, Pmt, SectionAssembler};
use crate::time::Pcr;
use crate::ts::{Pid, PACKET_SIZE, SYNC_BYTE};

/// A TR 101 290 indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// 1.1: two or more consecutive sync bytes lost.
    SyncLoss,
    /// 1.2: a packet's sync byte is not 0x47.
    SyncByte,
    /// 1.3: no PAT for 0.5 s, a PID 0 section that is not a PAT, or a scrambled PAT.
    Pat,
    /// 1.4: a continuity counter out of order.
    Continuity,
    /// 1.5: a programme's PMT missing for 0.5 s, or scrambled.
    Pmt,
    /// 1.6: a PID the PMT lists absent for 5 s.
    Pid,
    /// 2.1: transport_error_indicator set.
    Transport,
    /// 2.2: a PSI/SI section whose CRC_32 is wrong.
    Crc,
    /// 2.3a: PCRs of a programme more than 40 ms apart.
    PcrRepetition,
    /// 2.3b: consecutive PCR values more than 100 ms apart, or going back, without the
    /// discontinuity_indicator.
    PcrDiscontinuity,
    /// 2.4: a PCR more than ±500 ns from where the constant bitrate puts it (judged by packet
    /// count, see the module docs).
    PcrAccuracy,
    /// 2.5: PTS of a stream more than 700 ms apart.
    PtsRepetition,
    /// 3.1a: no NIT for 10 s.
    Nit,
    /// 3.5a: no SDT (actual) for 2 s.
    Sdt,
    /// 3.6a: no EIT p/f (actual) for 2 s.
    Eit,
    /// 3.8: no TDT for 30 s.
    Tdt,
}

impl Rule {
    /// Every rule, in the document's order.
    pub const ALL: [Rule; 16] = [
        Rule::SyncLoss,
        Rule::SyncByte,
        Rule::Pat,
        Rule::Continuity,
        Rule::Pmt,
        Rule::Pid,
        Rule::Transport,
        Rule::Crc,
        Rule::PcrRepetition,
        Rule::PcrDiscontinuity,
        Rule::PcrAccuracy,
        Rule::PtsRepetition,
        Rule::Nit,
        Rule::Sdt,
        Rule::Eit,
        Rule::Tdt,
    ];

    /// Its number and name in TR 101 290 (`1.3 PAT_error`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::SyncLoss => "1.1 TS_sync_loss",
            Rule::SyncByte => "1.2 Sync_byte_error",
            Rule::Pat => "1.3 PAT_error",
            Rule::Continuity => "1.4 Continuity_count_error",
            Rule::Pmt => "1.5 PMT_error",
            Rule::Pid => "1.6 PID_error",
            Rule::Transport => "2.1 Transport_error",
            Rule::Crc => "2.2 CRC_error",
            Rule::PcrRepetition => "2.3a PCR_repetition_error",
            Rule::PcrDiscontinuity => "2.3b PCR_discontinuity_indicator_error",
            Rule::PcrAccuracy => "2.4 PCR_accuracy_error",
            Rule::PtsRepetition => "2.5 PTS_error",
            Rule::Nit => "3.1a NIT_actual_error",
            Rule::Sdt => "3.5a SDT_actual_error",
            Rule::Eit => "3.6a EIT_actual_error",
            Rule::Tdt => "3.8 TDT_error",
        }
    }

    /// Its priority (1, 2 or 3).
    pub fn priority(self) -> u8 {
        match self {
            Rule::SyncLoss
            | Rule::SyncByte
            | Rule::Pat
            | Rule::Continuity
            | Rule::Pmt
            | Rule::Pid => 1,
            Rule::Transport
            | Rule::Crc
            | Rule::PcrRepetition
            | Rule::PcrDiscontinuity
            | Rule::PcrAccuracy
            | Rule::PtsRepetition => 2,
            Rule::Nit | Rule::Sdt | Rule::Eit | Rule::Tdt => 3,
        }
    }
}

const MS: u64 = 1_000_000;

/// What the monitor expects.
#[derive(Clone, Debug, Default)]
pub struct MonitorConfig {
    /// Check the DVB SI repetition (priority 3: SDT, EIT p/f, TDT): for a stream that
    /// carries SI.
    pub si: bool,
    /// Check the NIT's repetition too (a stream of a configured network).
    pub nit: bool,
    /// Check PCR accuracy (2.4): for a stream meant to be constant-bitrate (a head-end's
    /// output, a CBR file or contribution feed), where each PCR's byte position fixes its
    /// value. Off for a variable-bitrate stream, where nothing does.
    pub pcr_accuracy: bool,
}

/// 500 ns in 27 MHz ticks, doubled (13.5 ticks: kept in integers).
const PCR_TOLERANCE_TWICE: i128 = 27;

/// PCR accuracy (2.4) of one PID in the packet-count model: the rate is the ticks over the
/// packets from `base` to `anchor` (its first and its last accurate PCR of the run).
#[derive(Clone, Copy, Debug)]
struct PcrClock {
    /// (packet number, PCR) where the run began.
    base: (u64, Pcr),
    /// (packet number, PCR) of the last PCR judged accurate (`base` at first).
    anchor: (u64, Pcr),
    /// Ticks from `base` to `anchor` (unwrapped).
    span: i64,
    /// A PCR judged inaccurate just before: an outlier if the next is accurate again, a step
    /// if the next agrees with it.
    suspect: Option<(u64, Pcr)>,
}

impl PcrClock {
    fn new(at: (u64, Pcr)) -> PcrClock {
        PcrClock {
            base: at,
            anchor: at,
            span: 0,
            suspect: None,
        }
    }

    /// Whether PCR `v` at packet `n` is where the estimated rate puts it, counted from `from`
    /// (`None` while there is no rate yet).
    fn accurate(&self, from: (u64, Pcr), n: u64, v: Pcr) -> Option<bool> {
        let packets = i128::from(self.anchor.0 - self.base.0);
        if packets == 0 || self.span <= 0 {
            return None;
        }
        // v − (from + (n − from.n) × span / packets), times `packets`.
        let off = i128::from(v.since(from.1)) * packets
            - i128::from(n.wrapping_sub(from.0) as i64) * i128::from(self.span);
        Some(off.abs() * 2 <= PCR_TOLERANCE_TWICE * packets)
    }

    /// Judges the PCR `v` of packet `n`; true if it is an error.
    fn judge(&mut self, n: u64, v: Pcr) -> bool {
        let accept = |c: &mut PcrClock| {
            c.span += v.since(c.anchor.1);
            c.anchor = (n, v);
            c.suspect = None;
        };
        match self.accurate(self.anchor, n, v) {
            // The second PCR of a run gives the first rate; after one that went back, the
            // run starts again.
            None => {
                if self.anchor.0 == self.base.0 {
                    accept(self);
                } else {
                    *self = PcrClock::new((n, v));
                }
                false
            }
            Some(true) => {
                accept(self);
                false
            }
            Some(false) => match self.suspect {
                None => {
                    self.suspect = Some((n, v));
                    true
                }
                Some(s) => {
                    // Two in a row: the stream moved. Counted once if this one agrees with
                    // the first (a step), again if not; either way the run starts again at
                    // the first.
                    let step = self.accurate(s, n, v) == Some(true);
                    *self = PcrClock::new(s);
                    accept(self);
                    !step
                }
            },
        }
    }
}

/// The last time something was seen, for a rule that fires on its absence.
#[derive(Clone, Copy, Debug)]
struct Watch {
    last: u64,
}

impl Watch {
    /// The errors of an absence at `now`: one per whole `limit` it has lasted, not counted
    /// before.
    fn overdue(&mut self, now: u64, limit: u64) -> u64 {
        let gone = now.saturating_sub(self.last);
        if gone <= limit {
            return 0;
        }
        let n = gone / limit;
        self.last += n * limit;
        n
    }

    /// [`Watch::overdue`], lowering `due` to this watch's next deadline.
    fn overdue_by(&mut self, now: u64, limit: u64, due: &mut u64) -> u64 {
        let n = self.overdue(now, limit);
        *due = (*due).min(self.last + limit);
        n
    }
}

/// What the monitor keeps of a PID. Laid out in order, cache-line aligned: what every packet
/// touches (PID, continuity, the PMT's and a listed PID's watches, PTS) is in the first line,
/// so a packet of a stream whose state went cold in the cache (300 stations between two of
/// its datagrams) costs one miss there, not one per field.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct PidState {
    pid: u16,
    cc: Option<u8>,
    /// The last packet repeated once (a duplicate is allowed once).
    duplicate: bool,
    /// A PMT lists this PID: when it was last seen (started when listed).
    listed: Option<Watch>,
    /// A PMT the PAT lists is on this PID: when it was last seen.
    pmt: Option<Watch>,
    last_pts: Option<u64>,
    /// (arrival, value) of the last PCR.
    pcr: Option<(u64, u64)>,
    /// PCR accuracy, when checked.
    pcr_clock: Option<PcrClock>,
    asm: Option<SectionAssembler>,
    /// The CRC_32 of the last PAT or PMT section parsed here: the same section again is not
    /// parsed again.
    last_crc: Option<u32>,
}

/// Every PID (13 bits).
const PIDS: usize = 1 << 13;

/// The monitor of one transport stream.
///
/// The per-packet path is a table lookup by PID and a few compares; it allocates nothing
/// (sections are assembled in a buffer kept per PID, and a PAT or PMT is parsed only when it
/// differs from the last one).
#[derive(Debug)]
pub struct Monitor {
    cfg: MonitorConfig,
    /// Per rule, in the order of [`Rule::ALL`].
    counts: [u64; Rule::ALL.len()],
    /// PID → 1 + its index in `pids` (0: not seen yet).
    index: Box<[u16; PIDS]>,
    /// The last PID looked up and its index (consecutive packets of one PID skip the table).
    last: (u16, usize),
    pids: Vec<PidState>,
    /// Consecutive packets with a bad sync byte.
    bad_syncs: u32,
    pat: Option<Watch>,
    /// What each PMT (by PID) lists now.
    by_pmt: HashMap<u16, Vec<u16>>,
    si: [Option<Watch>; 4],
    started: Option<u64>,
    packets: u64,
    /// The earliest deadline of any watch at the last full look: nothing is overdue before
    /// it. A sighting only moves a deadline later, and a watch made since has one no earlier
    /// than it: the PAT's watch, there from the first look on, has the shortest limit (0.5 s)
    /// and was last seen no later than the look.
    next_due: u64,
}

impl Monitor {
    /// A monitor that has seen nothing yet.
    pub fn new(cfg: MonitorConfig) -> Monitor {
        Monitor {
            cfg,
            counts: [0; Rule::ALL.len()],
            index: Box::new([0; PIDS]),
            last: (u16::MAX, 0),
            pids: Vec::new(),
            bad_syncs: 0,
            pat: None,
            by_pmt: HashMap::new(),
            si: [None; 4],
            started: None,
            packets: 0,
            next_due: 0,
        }
    }

    /// Forgets what it knew of the stream (continuity, timing, tables last seen) but keeps its
    /// counts: the next packet starts a new stream, as after a gap in what it was shown.
    pub fn resync(&mut self) {
        let (counts, packets) = (self.counts, self.packets);
        *self = Monitor::new(self.cfg.clone());
        self.counts = counts;
        self.packets = packets;
    }

    /// The count of every rule, in the document's order.
    pub fn counts(&self) -> Vec<(Rule, u64)> {
        Rule::ALL.iter().copied().zip(self.counts).collect()
    }

    /// Packets seen.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn count(&mut self, rule: Rule) {
        self.add(rule, 1);
    }

    fn add(&mut self, rule: Rule, n: u64) {
        self.counts[rule as usize] += n;
    }

    /// The state of `pid`, made on first use.
    fn state(&mut self, pid: u16) -> &mut PidState {
        if self.last.0 != pid {
            let slot = &mut self.index[usize::from(pid) & (PIDS - 1)];
            if *slot == 0 {
                self.pids.push(PidState {
                    pid,
                    ..PidState::default()
                });
                // At most 8192 PIDs: the index fits.
                *slot = self.pids.len() as u16;
            }
            self.last = (pid, usize::from(*slot) - 1);
        }
        &mut self.pids[self.last.1]
    }

    /// The state of `pid`, if it has one.
    fn state_of(&mut self, pid: u16) -> Option<&mut PidState> {
        let slot = self.index[usize::from(pid) & (PIDS - 1)];
        self.pids.get_mut(usize::from(slot).checked_sub(1)?)
    }

    /// Packets (whole, back to back) that went by at `now` (ns).
    pub fn push(&mut self, now: u64, data: &[u8]) {
        self.started.get_or_insert(now);
        for p in data.chunks_exact(PACKET_SIZE) {
            self.packet(now, p);
        }
        self.tick(now);
    }

    /// The rules that fire on absence, at `now`. Cheap until the earliest deadline passes
    /// (it runs after every push).
    pub fn tick(&mut self, now: u64) {
        let Some(start) = self.started else { return };
        if now <= self.next_due {
            return;
        }
        let mut due = u64::MAX;
        let pat = self
            .pat
            .get_or_insert(Watch { last: start })
            .overdue_by(now, 500 * MS, &mut due);
        self.add(Rule::Pat, pat);
        let (mut late, mut gone) = (0, 0);
        for st in &mut self.pids {
            if let Some(w) = st.pmt.as_mut() {
                late += w.overdue_by(now, 500 * MS, &mut due);
            }
            if let Some(w) = st.listed.as_mut() {
                gone += w.overdue_by(now, 5000 * MS, &mut due);
            }
        }
        self.add(Rule::Pmt, late);
        self.add(Rule::Pid, gone);
        if self.cfg.si {
            let limits = [
                (Rule::Nit, 10_000 * MS),
                (Rule::Sdt, 2000 * MS),
                (Rule::Eit, 2000 * MS),
                (Rule::Tdt, 30_000 * MS),
            ];
            for (k, (rule, limit)) in limits.into_iter().enumerate() {
                if rule == Rule::Nit && !self.cfg.nit {
                    continue;
                }
                let n = self.si[k]
                    .get_or_insert(Watch { last: start })
                    .overdue_by(now, limit, &mut due);
                self.add(rule, n);
            }
        }
        self.next_due = due;
    }

    fn packet(&mut self, now: u64, p: &[u8]) {
        self.packets += 1;
        if p[0] != SYNC_BYTE {
            self.count(Rule::SyncByte);
            self.bad_syncs += 1;
            if self.bad_syncs == 2 {
                self.count(Rule::SyncLoss);
            }
            return;
        }
        self.bad_syncs = 0;
        if p[1] & 0x80 != 0 {
            self.count(Rule::Transport);
        }
        let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        if pid == Pid::NULL.value() {
            return;
        }
        let scrambled = p[3] & 0xC0 != 0;
        let has_payload = p[3] & 0x10 != 0;
        let af = p[3] & 0x20 != 0 && p[4] > 0;
        let discontinuity = af && p[5] & 0x80 != 0;
        let cc = p[3] & 0x0F;
        let (packets, pcr_accuracy) = (self.packets, self.cfg.pcr_accuracy);
        let st = self.state(pid);
        if let Some(w) = st.listed.as_mut() {
            w.last = now;
        }
        // 1.4: continuity (a duplicate once; the discontinuity_indicator resets).
        let mut cc_error = false;
        if has_payload {
            match st.cc {
                Some(prev) if !discontinuity => {
                    if cc == prev {
                        if st.duplicate {
                            cc_error = true;
                        }
                        st.duplicate = !st.duplicate;
                    } else if cc != (prev + 1) & 0x0F {
                        cc_error = true;
                        st.duplicate = false;
                    } else {
                        st.duplicate = false;
                    }
                }
                _ => st.duplicate = false,
            }
            st.cc = Some(cc);
        }
        // 2.3: PCR.
        let mut pcr_errors = (false, false, false);
        if af && p[5] & 0x10 != 0 && p[4] >= 7 {
            let base = u64::from(p[6]) << 25
                | u64::from(p[7]) << 17
                | u64::from(p[8]) << 9
                | u64::from(p[9]) << 1
                | u64::from(p[10] >> 7);
            let value = base * 300 + (u64::from(p[10] & 1) << 8 | u64::from(p[11]));
            if let Some((at, prev)) = st.pcr {
                if now.saturating_sub(at) > 40 * MS {
                    pcr_errors.0 = true;
                }
                let step = value as i64 - prev as i64;
                if !discontinuity && !(0..=100 * 27_000).contains(&step) {
                    pcr_errors.1 = true;
                }
            }
            st.pcr = Some((now, value));
            if pcr_accuracy {
                let at = (packets, Pcr::new(value));
                match st.pcr_clock.as_mut() {
                    Some(c) if !discontinuity => pcr_errors.2 = c.judge(at.0, at.1),
                    _ => st.pcr_clock = Some(PcrClock::new(at)),
                }
            }
        }
        // 2.5: PTS repetition, on the streams that carry PTS.
        let mut pts_error = false;
        let payload_at = if af { 5 + usize::from(p[4]) } else { 4 };
        if p[1] & 0x40 != 0 && has_payload && !scrambled {
            if let Some(h) = p.get(payload_at..payload_at + 14) {
                if h[..3] == [0, 0, 1] && h[3] >= 0xBD && h[7] & 0x80 != 0 {
                    if let Some(last) = st.last_pts {
                        if now.saturating_sub(last) > 700 * MS {
                            pts_error = true;
                        }
                    }
                    st.last_pts = Some(now);
                }
            }
        }
        let is_pmt = st.pmt.is_some();
        for (error, rule) in [
            (cc_error, Rule::Continuity),
            (pcr_errors.0, Rule::PcrRepetition),
            (pcr_errors.1, Rule::PcrDiscontinuity),
            (pcr_errors.2, Rule::PcrAccuracy),
            (pts_error, Rule::PtsRepetition),
        ] {
            if error {
                self.count(rule);
            }
        }
        // PSI and SI sections.
        let si_pid = matches!(pid, 0x10 | 0x11 | 0x12 | 0x14);
        if pid != 0 && !is_pmt && !si_pid {
            return;
        }
        if scrambled {
            self.count(if pid == 0 { Rule::Pat } else { Rule::Pmt });
            return;
        }
        if !has_payload || payload_at >= PACKET_SIZE {
            return;
        }
        // The assembler is taken out while its sections are handled (they may touch any
        // PID's state), then put back: its buffer is kept.
        let pusi = p[1] & 0x40 != 0;
        let mut asm = self.state(pid).asm.take().unwrap_or_default();
        asm.push_payload(&p[payload_at..], pusi, !cc_error, |s| {
            self.section(now, pid, s);
        });
        self.state(pid).asm = Some(asm);
    }

    fn section(&mut self, now: u64, pid: u16, s: &[u8]) {
        let table = s[0];
        let long = s.len() > 3 && s[1] & 0x80 != 0;
        // TDT (0x70) has no CRC; everything else here has one.
        if (long || table == 0x73) && s.len() >= 4 && crc32_mpeg2(s) != 0 {
            self.count(Rule::Crc);
            return;
        }
        // A PAT or PMT section the same as the last on its PID (the same CRC_32) lists
        // nothing new.
        let crc = s
            .len()
            .checked_sub(4)
            .map(|at| u32::from_be_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]));
        match (pid, table) {
            (0, 0x00) => {
                if let Some(w) = self.pat.as_mut() {
                    w.last = now;
                } else {
                    self.pat = Some(Watch { last: now });
                }
                if std::mem::replace(&mut self.state(0).last_crc, crc) == crc {
                    return;
                }
                if let Ok(pat) = Pat::parse(s) {
                    // The programmes now: a PMT no longer listed is no longer expected.
                    let now_listed: Vec<u16> = pat
                        .programs
                        .iter()
                        .filter(|(number, _)| *number != 0)
                        .map(|(_, pmt)| pmt.value())
                        .collect();
                    for st in &mut self.pids {
                        if !now_listed.contains(&st.pid) {
                            st.pmt = None;
                        }
                    }
                    for pmt in now_listed {
                        self.state(pmt).pmt.get_or_insert(Watch { last: now });
                    }
                }
            }
            (0, _) => self.count(Rule::Pat),
            (0x10, 0x40) => self.si[0] = Some(Watch { last: now }),
            (0x11, 0x42) => self.si[1] = Some(Watch { last: now }),
            (0x12, 0x4E) => self.si[2] = Some(Watch { last: now }),
            (0x14, 0x70) => self.si[3] = Some(Watch { last: now }),
            (p, 0x02) => {
                let Some(st) = self.state_of(p).filter(|st| st.pmt.is_some()) else {
                    return;
                };
                st.pmt = Some(Watch { last: now });
                if std::mem::replace(&mut st.last_crc, crc) == crc {
                    return;
                }
                if let Ok(pmt) = Pmt::parse(Pid::from_bits(p), s) {
                    // A new version may list other PIDs: those it dropped are no longer
                    // expected (unless another PMT lists them).
                    let new: Vec<u16> = pmt.streams.iter().map(|e| e.pid.value()).collect();
                    let old = self.by_pmt.insert(p, new.clone()).unwrap_or_default();
                    for pid in old.into_iter().filter(|x| !new.contains(x)) {
                        if !self.by_pmt.values().any(|l| l.contains(&pid)) {
                            if let Some(st) = self.state_of(pid) {
                                st.listed = None;
                                // Nor its PTS and PCR: it may come back, after any time.
                                st.last_pts = None;
                                st.pcr = None;
                                st.pcr_clock = None;
                            }
                        }
                    }
                    for pid in new {
                        self.state(pid).listed.get_or_insert(Watch { last: now });
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::{Mux, MuxConfig};
    use crate::offline::{MemorySource, Offline, BATCH};
    use crate::splice::{SpliceConfig, Splicer};
    use bytes::{Bytes, BytesMut};

    /// A null packet.
    const NULL: [u8; PACKET_SIZE] = {
        let mut p = [0xFF; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = 0x1F;
        p[2] = 0xFF;
        p[3] = 0x10;
        p
    };

    fn fixture(name: &str) -> Bytes {
        let path = format!("{}/../fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
        Bytes::from(std::fs::read(path).unwrap())
    }

    /// 10 s of our own output (a.ts looped at 3 Mbit/s), and when each packet left (ns).
    fn rendered() -> (Vec<u8>, u64) {
        const MUXRATE: u64 = 3_000_000;
        let total =
            Offline::<MemorySource>::packets_for(std::time::Duration::from_secs(10), MUXRATE);
        let mut run = Offline::new(
            Mux::new(
                MuxConfig::new(MUXRATE),
                vec![Splicer::new(SpliceConfig::new(1), 1)],
            ),
            vec![MemorySource::new(vec![Some(fixture("a.ts"))])],
            total,
        );
        let mut out = BytesMut::new();
        while !run.done() {
            run.step(&mut out, BATCH);
        }
        let per_packet_ns = 188 * 8 * 1_000_000_000 / MUXRATE;
        (out.to_vec(), per_packet_ns)
    }

    fn run(data: &[u8], per_packet_ns: u64) -> Monitor {
        let mut m = Monitor::new(MonitorConfig {
            pcr_accuracy: true,
            ..MonitorConfig::default()
        });
        for (k, chunk) in data.chunks(7 * PACKET_SIZE).enumerate() {
            m.push(k as u64 * 7 * per_packet_ns, chunk);
        }
        m
    }

    fn count(m: &Monitor, rule: Rule) -> u64 {
        m.counts().into_iter().find(|(r, _)| *r == rule).unwrap().1
    }

    #[test]
    fn our_output_is_clean() {
        let (data, per) = rendered();
        let m = run(&data, per);
        assert!(m.packets() > 10_000);
        for (rule, n) in m.counts() {
            assert_eq!(n, 0, "{}", rule.name());
        }
    }

    #[test]
    fn each_fault_is_counted_under_its_rule() {
        let (data, per) = rendered();
        let packets: Vec<&[u8]> = data.chunks(PACKET_SIZE).collect();
        let pid = |p: &[u8]| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        let video = pid(packets
            .iter()
            .find(|p| p[1] & 0x40 != 0 && pid(p) >= 0x100 && pid(p) < 0x1FFF)
            .unwrap());
        // A lost video packet, two bad sync bytes in a row, a transport error, a damaged
        // PAT CRC, and PAT and PCR missing for a second.
        let mut out: Vec<u8> = Vec::new();
        let mut dropped_video = false;
        let (mut pats, mut syncs) = (0, 0);
        let second = |k: usize| (k as u64 * per) / 1_000_000_000;
        for (k, p) in packets.iter().enumerate() {
            let mut p = p.to_vec();
            if !dropped_video && k > 1000 && pid(&p) == video && p[3] & 0x10 != 0 {
                dropped_video = true;
                continue;
            }
            if (2000..2002).contains(&k) {
                p[0] = 0x48;
                syncs += 1;
            }
            if k == 3000 {
                p[1] |= 0x80;
            }
            if pid(&p) == 0 && second(k) == 5 && pats == 0 {
                p[20] ^= 0xFF;
                pats += 1;
            }
            // Seconds 7 to 8: PAT and every PCR removed (nulls in their place).
            if second(k) == 7
                && (pid(&p) == 0 || (p[3] & 0x20 != 0 && p[4] >= 7 && p[5] & 0x10 != 0))
            {
                p = NULL.to_vec();
            }
            out.extend_from_slice(&p);
        }
        assert_eq!(syncs, 2);
        let m = run(&out, per);
        assert_eq!(count(&m, Rule::SyncByte), 2);
        assert_eq!(count(&m, Rule::SyncLoss), 1);
        assert!(count(&m, Rule::Continuity) >= 1);
        assert_eq!(count(&m, Rule::Transport), 1);
        assert_eq!(count(&m, Rule::Crc), 1);
        assert!(count(&m, Rule::Pat) >= 1);
        assert!(count(&m, Rule::PcrRepetition) >= 1);
        assert_eq!(count(&m, Rule::Sdt), 0, "SI is not checked unless asked");
    }

    /// The packets of `data` that carry a PCR, by index.
    fn pcr_packets(data: &[u8]) -> Vec<usize> {
        data.chunks(PACKET_SIZE)
            .enumerate()
            .filter(|(_, p)| p[3] & 0x20 != 0 && p[4] >= 7 && p[5] & 0x10 != 0)
            .map(|(k, _)| k)
            .collect()
    }

    /// Moves the PCR of packet `k` by `ticks` (27 MHz).
    fn nudge_pcr(data: &mut [u8], k: usize, ticks: i64) {
        let slot = &mut data[k * PACKET_SIZE..(k + 1) * PACKET_SIZE];
        let pcr = crate::ts::TsPacket::new(Bytes::copy_from_slice(slot))
            .unwrap()
            .pcr()
            .unwrap();
        let moved = Pcr::new((pcr.ticks() as i64 + ticks) as u64);
        assert!(crate::ts::TsPacketMut::new(slot).unwrap().set_pcr(moved));
    }

    #[test]
    fn rules_are_indexed_in_document_order() {
        for (k, rule) in Rule::ALL.iter().enumerate() {
            assert_eq!(*rule as usize, k, "{}", rule.name());
        }
        assert_eq!(Rule::PcrAccuracy.name(), "2.4 PCR_accuracy_error");
        assert_eq!(Rule::PcrAccuracy.priority(), 2);
    }

    #[test]
    fn one_pcr_nudged_by_a_microsecond_counts_once() {
        let (mut data, per) = rendered();
        let pcrs = pcr_packets(&data);
        assert!(pcrs.len() > 100);
        nudge_pcr(&mut data, pcrs[pcrs.len() / 2], 27);
        let m = run(&data, per);
        assert_eq!(count(&m, Rule::PcrAccuracy), 1);
        // Within the tolerance (400 ns): none.
        let (mut data, _) = rendered();
        nudge_pcr(&mut data, pcrs[pcrs.len() / 2], 11);
        assert_eq!(count(&run(&data, per), Rule::PcrAccuracy), 0);
        // Not checked unless asked (a VBR stream).
        let (mut data, _) = rendered();
        nudge_pcr(&mut data, pcrs[pcrs.len() / 2], 27);
        let mut m = Monitor::new(MonitorConfig::default());
        m.push(0, &data);
        assert_eq!(count(&m, Rule::PcrAccuracy), 0);
    }

    #[test]
    fn a_pcr_step_counts_once_and_a_flagged_one_not_at_all() {
        let (data, per) = rendered();
        let pcrs = pcr_packets(&data);
        let from = pcrs[pcrs.len() / 3];
        // Every PCR from one on 2 µs late: one error, then the new timeline is accurate.
        let mut stepped = data.clone();
        for &k in pcrs.iter().filter(|&&k| k >= from) {
            nudge_pcr(&mut stepped, k, 54);
        }
        assert_eq!(count(&run(&stepped, per), Rule::PcrAccuracy), 1);
        // The same step with the discontinuity_indicator on its first PCR: none.
        let p = &mut stepped[from * PACKET_SIZE..];
        assert!(p[3] & 0x20 != 0 && p[4] >= 1);
        p[5] |= 0x80;
        assert_eq!(count(&run(&stepped, per), Rule::PcrAccuracy), 0);
        // Every other PCR 1 µs off: each of them counts.
        let mut jittery = data.clone();
        for &k in pcrs.iter().step_by(2).skip(2) {
            nudge_pcr(&mut jittery, k, 27);
        }
        let n = pcrs.iter().step_by(2).skip(2).count() as u64;
        assert_eq!(count(&run(&jittery, per), Rule::PcrAccuracy), n);
    }

    #[test]
    fn a_pmt_gap_is_counted_while_the_pat_goes_on() {
        let (data, per) = rendered();
        let pid = |p: &[u8]| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        // The PMT's PID, from the first PAT (one programme).
        let pat = data.chunks(PACKET_SIZE).find(|p| pid(p) == 0).unwrap();
        let pmt = u16::from(pat[15] & 0x1F) << 8 | u16::from(pat[16]);
        // No PMT from 3 s to 4.2 s: a gap of 1.2 s and a bit, two whole periods of 0.5 s.
        let window = (3_000 * MS / per) as usize..(4_200 * MS / per) as usize;
        let mut out = data.clone();
        for (k, p) in out.chunks_mut(PACKET_SIZE).enumerate() {
            if window.contains(&k) && pid(p) == pmt {
                p.copy_from_slice(&NULL);
            }
        }
        let m = run(&out, per);
        assert_eq!(count(&m, Rule::Pmt), 2);
        assert_eq!(count(&m, Rule::Pat), 0);
    }

    #[test]
    fn absence_counts_once_per_period() {
        let mut m = Monitor::new(MonitorConfig {
            si: true,
            nit: true,
            pcr_accuracy: false,
        });
        m.push(0, &NULL);
        m.tick(2_100 * MS);
        // No PAT for 2.1 s: 4 periods of 0.5 s; no SDT/EIT for 2 s: 1 each.
        assert_eq!(count(&m, Rule::Pat), 4);
        assert_eq!(count(&m, Rule::Sdt), 1);
        assert_eq!(count(&m, Rule::Eit), 1);
        assert_eq!(count(&m, Rule::Tdt), 0);
        assert_eq!(count(&m, Rule::Nit), 0);
        m.tick(10_100 * MS);
        assert_eq!(count(&m, Rule::Nit), 1);
    }
}
