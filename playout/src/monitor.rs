//! A continuous ETSI TR 101 290 monitor (§5.2): counts, per rule, the errors of a transport
//! stream as it goes by: priority 1 (sync, PAT, continuity, PMT, PID), priority 2 (transport
//! error, CRC, PCR repetition and discontinuity, PTS repetition) and, for the SI a head-end
//! sends, priority 3 repetition (NIT, SDT, EIT, TDT).
//!
//! Sans-IO: [`Monitor::push`] takes packets with the time they went by (ns, any monotonic
//! origin); [`Monitor::tick`] takes the time alone, for the rules that fire on absence.
//! Repetition limits are the document's: PAT and each PMT 0.5 s, PCR 40 ms (100 ms between
//! values for a discontinuity), PTS 700 ms, a PID of the PMT 5 s (the "user specified"
//! period), NIT 10 s, SDT and EIT p/f 2 s, TDT 30 s. An absence is counted once per period it
//! lasts.

use std::collections::HashMap;

use crate::psi::{crc32_mpeg2, Pat, Pmt, SectionAssembler};
use crate::ts::{Pid, TsPacket, PACKET_SIZE, SYNC_BYTE};

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
    pub const ALL: [Rule; 15] = [
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
}

#[derive(Debug, Default)]
struct PidState {
    cc: Option<u8>,
    /// The last packet repeated once (a duplicate is allowed once).
    duplicate: bool,
    asm: Option<SectionAssembler>,
    last_seen: u64,
    /// (arrival, value) of the last PCR.
    pcr: Option<(u64, u64)>,
    last_pts: Option<u64>,
}

/// The monitor of one transport stream.
#[derive(Debug)]
pub struct Monitor {
    cfg: MonitorConfig,
    counts: HashMap<Rule, u64>,
    pids: HashMap<u16, PidState>,
    /// Consecutive packets with a bad sync byte.
    bad_syncs: u32,
    pat: Option<Watch>,
    /// PMT PID → its watch.
    pmts: HashMap<u16, Watch>,
    /// PIDs the PMTs list → when they were last seen (started when listed).
    listed: HashMap<u16, Watch>,
    /// What each PMT (by PID) lists now.
    by_pmt: HashMap<u16, Vec<u16>>,
    si: [Option<Watch>; 4],
    started: Option<u64>,
    packets: u64,
}

impl Monitor {
    /// A monitor that has seen nothing yet.
    pub fn new(cfg: MonitorConfig) -> Monitor {
        Monitor {
            cfg,
            counts: HashMap::new(),
            pids: HashMap::new(),
            bad_syncs: 0,
            pat: None,
            pmts: HashMap::new(),
            listed: HashMap::new(),
            by_pmt: HashMap::new(),
            si: [None; 4],
            started: None,
            packets: 0,
        }
    }

    /// The count of every rule, in the document's order.
    pub fn counts(&self) -> Vec<(Rule, u64)> {
        Rule::ALL
            .iter()
            .map(|r| (*r, self.counts.get(r).copied().unwrap_or(0)))
            .collect()
    }

    /// Packets seen.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn count(&mut self, rule: Rule) {
        self.add(rule, 1);
    }

    fn add(&mut self, rule: Rule, n: u64) {
        if n > 0 {
            *self.counts.entry(rule).or_default() += n;
        }
    }

    /// Packets (whole, back to back) that went by at `now` (ns).
    pub fn push(&mut self, now: u64, data: &[u8]) {
        self.started.get_or_insert(now);
        for p in data.chunks_exact(PACKET_SIZE) {
            self.packet(now, p);
        }
        self.tick(now);
    }

    /// The rules that fire on absence, at `now`.
    pub fn tick(&mut self, now: u64) {
        let Some(start) = self.started else { return };
        let pat = self
            .pat
            .get_or_insert(Watch { last: start })
            .overdue(now, 500 * MS);
        self.add(Rule::Pat, pat);
        let late: u64 = self
            .pmts
            .values_mut()
            .map(|w| w.overdue(now, 500 * MS))
            .sum();
        self.add(Rule::Pmt, late);
        let gone: u64 = self
            .listed
            .values_mut()
            .map(|w| w.overdue(now, 5000 * MS))
            .sum();
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
                    .overdue(now, limit);
                self.add(rule, n);
            }
        }
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
        if let Some(w) = self.listed.get_mut(&pid) {
            w.last = now;
        }
        let st = self.pids.entry(pid).or_default();
        st.last_seen = now;
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
        let mut pcr_errors = (false, false);
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
        }
        // 2.5: PTS repetition, on the streams that carry PTS.
        let mut pts_error = false;
        if p[1] & 0x40 != 0 && has_payload && !scrambled {
            let start = if af { 5 + usize::from(p[4]) } else { 4 };
            if let Some(h) = p.get(start..start + 14) {
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
        if cc_error {
            self.count(Rule::Continuity);
        }
        if pcr_errors.0 {
            self.count(Rule::PcrRepetition);
        }
        if pcr_errors.1 {
            self.count(Rule::PcrDiscontinuity);
        }
        if pts_error {
            self.count(Rule::PtsRepetition);
        }
        // PSI and SI sections.
        let is_pmt = self.pmts.contains_key(&pid);
        let si_pid = matches!(pid, 0x10 | 0x11 | 0x12 | 0x14);
        if pid != 0 && !is_pmt && !si_pid {
            return;
        }
        if scrambled {
            self.count(if pid == 0 { Rule::Pat } else { Rule::Pmt });
            return;
        }
        let Ok(packet) = TsPacket::new(bytes::Bytes::copy_from_slice(p)) else {
            return;
        };
        let mut sections: Vec<Vec<u8>> = Vec::new();
        let st = self.pids.entry(pid).or_default();
        st.asm
            .get_or_insert_with(SectionAssembler::default)
            .push(&packet, !cc_error, |s| sections.push(s.to_vec()));
        for s in sections {
            self.section(now, pid, &s);
        }
    }

    fn section(&mut self, now: u64, pid: u16, s: &[u8]) {
        let table = s[0];
        let long = s.len() > 3 && s[1] & 0x80 != 0;
        // TDT (0x70) has no CRC; everything else here has one.
        if (long || table == 0x73) && s.len() >= 4 && crc32_mpeg2(s) != 0 {
            self.count(Rule::Crc);
            return;
        }
        match (pid, table) {
            (0, 0x00) => {
                if let Some(w) = self.pat.as_mut() {
                    w.last = now;
                } else {
                    self.pat = Some(Watch { last: now });
                }
                if let Ok(pat) = Pat::parse(s) {
                    // The programmes now: a PMT no longer listed is no longer expected.
                    let now_listed: Vec<u16> = pat
                        .programs
                        .iter()
                        .filter(|(number, _)| *number != 0)
                        .map(|(_, pmt)| pmt.value())
                        .collect();
                    self.pmts.retain(|pid, _| now_listed.contains(pid));
                    for pmt in now_listed {
                        self.pmts.entry(pmt).or_insert(Watch { last: now });
                    }
                }
            }
            (0, _) => self.count(Rule::Pat),
            (0x10, 0x40) => self.si[0] = Some(Watch { last: now }),
            (0x11, 0x42) => self.si[1] = Some(Watch { last: now }),
            (0x12, 0x4E) => self.si[2] = Some(Watch { last: now }),
            (0x14, 0x70) => self.si[3] = Some(Watch { last: now }),
            (p, 0x02) if self.pmts.contains_key(&p) => {
                if let Some(w) = self.pmts.get_mut(&p) {
                    w.last = now;
                }
                if let Ok(pmt) = Pmt::parse(Pid::from_bits(p), s) {
                    // A new version may list other PIDs: those it dropped are no longer
                    // expected (unless another PMT lists them).
                    let new: Vec<u16> = pmt.streams.iter().map(|e| e.pid.value()).collect();
                    let old = self.by_pmt.insert(p, new.clone()).unwrap_or_default();
                    for pid in old.into_iter().filter(|x| !new.contains(x)) {
                        if !self.by_pmt.values().any(|l| l.contains(&pid)) {
                            self.listed.remove(&pid);
                            // Nor its PTS: it may come back, after any time.
                            if let Some(st) = self.pids.get_mut(&pid) {
                                st.last_pts = None;
                                st.pcr = None;
                            }
                        }
                    }
                    for pid in new {
                        self.listed.entry(pid).or_insert(Watch { last: now });
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
        let mut m = Monitor::new(MonitorConfig::default());
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

    #[test]
    fn absence_counts_once_per_period() {
        let mut m = Monitor::new(MonitorConfig {
            si: true,
            nit: true,
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
