//! A strict conformance checker for what we emit: the checks of ETSI TR 101 290 §5.2 that a
//! file can show (sync, continuity, PAT/PMT repetition, PCR repetition and accuracy, CRC,
//! transport errors) plus the timing of every elementary stream (DTS strictly increasing, no
//! gap beyond one frame, decode time ahead of arrival) and the exact muxrate.
//!
//! Time inside a file is the byte clock of the constant muxrate: packet `n` starts
//! `n * 188 * 8 / muxrate` seconds after the first one. The muxrate is the configured one when
//! [`CheckLimits::muxrate_bps`] is given, else the one measured from the first PCR PID.
//!
//! The checker is stricter than receivers are, on purpose: it is how the tests hold the
//! splicer and the multiplexer to the figures the issue names.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::es::{Codec, StreamClass};
use crate::pes::PesHeader;
use crate::psi::{Pat, Pmt, SectionAssembler};
use crate::time::{Pcr, Pts, Unwrapper, PCR_MODULUS, SYSTEM_CLOCK_HZ};
use crate::ts::{Pid, TsPacket, PACKET_SIZE, SYNC_BYTE};

mod report;

pub use report::{CcError, ProgramInfo, Report, TimeFault};

/// How many individual findings of one kind a report keeps (the counts are always complete).
const KEEP: usize = 32;

/// What counts as a violation.
#[derive(Clone, Debug)]
pub struct CheckLimits {
    /// The muxrate the file must have, bits/s (exact within `muxrate_tolerance_ppm`).
    pub muxrate_bps: Option<u64>,
    /// Allowed deviation of the measured muxrate, parts per million.
    pub muxrate_tolerance_ppm: f64,
    /// Longest gap between two PATs, and between two sections of each PMT.
    pub max_psi_gap: Duration,
    /// Longest interval between two PCRs of a program.
    pub max_pcr_interval: Duration,
    /// Largest PCR error against the byte clock, nanoseconds.
    pub max_pcr_error_ns: f64,
    /// Largest step between two presentation times (in display order) of a video stream, in
    /// units of its typical step (2.0 = a gap of at most one frame).
    pub max_video_step_ratio: f64,
    /// The same for an audio stream.
    pub max_audio_step_ratio: f64,
    /// Longest time a PES may arrive before its decode time.
    pub max_decode_lead: Duration,
    /// PIDs declared as private data streams (TR 101 290 check 3.4 leaves them out of
    /// "unreferenced PID"): e.g. the in-band emergency tables (EBIT on its PID, SCTE-18 on
    /// 0x1FFB), which no PMT lists.
    pub private_pids: Vec<Pid>,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            muxrate_bps: None,
            muxrate_tolerance_ppm: 1.0,
            max_psi_gap: Duration::from_millis(100),
            max_pcr_interval: Duration::from_millis(40),
            max_pcr_error_ns: 500.0,
            max_video_step_ratio: 2.0,
            max_audio_step_ratio: 2.0,
            max_decode_lead: Duration::from_secs(2),
            private_pids: Vec::new(),
        }
    }
}

impl CheckLimits {
    /// The strict limits at `muxrate_bps`, except at joins between items, where the splicer's
    /// known limits apply (docs/design/splice.md): entering a clip with a longer reorder delay
    /// holds the last picture for that delay (video steps up to 4 frames), and audio restarts
    /// on the next clip's frame boundary (steps up to 3.5 frames).
    pub fn across_joins(muxrate_bps: u64) -> CheckLimits {
        CheckLimits {
            muxrate_bps: Some(muxrate_bps),
            max_video_step_ratio: 4.0,
            max_audio_step_ratio: 3.5,
            ..CheckLimits::default()
        }
    }
}

/// Timing of one elementary stream.
#[derive(Clone, Debug, Default)]
pub struct PesStats {
    /// The stream's class, from its PMT entry.
    pub class: Option<StreamClass>,
    /// PES packets started.
    pub pes: u64,
    /// PES packets without a timestamp.
    pub without_timestamp: u64,
    /// Decode times (DTS, else PTS) that were not larger than the previous one.
    pub non_increasing: u64,
    /// The first few of those.
    pub faults: Vec<TimeFault>,
    /// Largest step between consecutive decode times, 90 kHz.
    pub max_step: i64,
    /// Packet index where the largest step happened.
    pub max_step_at: u64,
    /// The most frequent step, 90 kHz (the frame or audio-frame duration).
    pub typical_step: i64,
    /// PES packets whose PTS is earlier than their DTS.
    pub pts_before_dts: u64,
    /// Largest PTS − DTS, 90 kHz: the reorder delay of a video stream with B-pictures.
    pub max_reorder: i64,
    /// Smallest time between a PES's arrival (byte clock, on the program's PCR timeline) and
    /// its decode time, 90 kHz; negative means it arrived late.
    pub min_decode_lead: Option<i64>,
    /// Packet index of the PES with the smallest lead.
    pub min_decode_lead_at: u64,
    /// Largest such time, 90 kHz.
    pub max_decode_lead: Option<i64>,
    /// Largest gap between consecutive presentation times (PTS in display order), 90 kHz.
    pub max_pts_gap: i64,
    /// Packet index of the PES presented right after that gap.
    pub max_pts_gap_at: u64,
    /// The most frequent step between consecutive presentation times, 90 kHz.
    pub typical_pts_step: i64,
    steps: BTreeMap<i64, u64>,
    pts_steps: BTreeMap<i64, u64>,
    unwrap: Unwrapper,
    pts_unwrap: Unwrapper,
    last: Option<i64>,
    /// (PTS unwrapped, packet index) of the current run, sorted into display order at its end.
    run: Vec<(i64, u64)>,
}

impl PesStats {
    /// Ends a run of the stream (it left the PMT, or the file ended): measures the gaps
    /// between its pictures or frames in display order.
    fn end_run(&mut self) {
        self.run.sort_unstable();
        for w in self.run.windows(2) {
            let step = w[1].0 - w[0].0;
            if step > 0 {
                *self.pts_steps.entry(step).or_default() += 1;
            }
            if step > self.max_pts_gap {
                self.max_pts_gap = step;
                self.max_pts_gap_at = w[1].1;
            }
        }
        self.run.clear();
        self.last = None;
        self.unwrap = Unwrapper::default();
        self.pts_unwrap = Unwrapper::default();
    }
}

/// Repetition of one PSI table or of a program's PCR, in packets.
#[derive(Clone, Copy, Debug, Default)]
struct Gap {
    last: Option<u64>,
    max: u64,
    at: u64,
    count: u64,
}

impl Gap {
    fn seen(&mut self, packet: u64) {
        let gap = packet - self.last.map_or(0, |l| l);
        if gap > self.max {
            self.max = gap;
            self.at = packet;
        }
        self.last = Some(packet);
        self.count += 1;
    }
    fn finish(&mut self, end: u64) {
        let gap = end - self.last.map_or(0, |l| l);
        if gap > self.max {
            self.max = gap;
            self.at = end;
        }
    }
}

/// PCR timing of one PCR PID.
#[derive(Clone, Debug, Default)]
pub struct PcrStats {
    /// PCRs seen.
    pub count: u64,
    /// Longest interval between consecutive PCRs, 27 MHz ticks.
    pub max_interval: u64,
    /// Packet index where it ended.
    pub max_interval_at: u64,
    /// Largest |PCR − byte clock|, nanoseconds.
    pub max_error_ns: f64,
    /// Packet index of the worst PCR.
    pub max_error_at: u64,
    /// PCRs flagged with discontinuity_indicator.
    pub discontinuities: u64,
    /// (packet index, unwrapped PCR) of each PCR since the last discontinuity.
    samples: Vec<(u64, i128)>,
    last: Option<(u64, Pcr)>,
    unwrapped: i128,
}

struct PidState {
    cc: Option<u8>,
    last_payload: Option<Bytes>,
}

/// Checks a whole transport stream held in memory. See [`CheckLimits`] for what is measured;
/// read the findings through [`Report::violations`].
pub fn check(data: &[u8], limits: &CheckLimits) -> Report {
    let mut r = Report {
        bytes: data.len() as u64,
        ..Report::default()
    };
    let mut pids: Vec<PidState> = (0..8192)
        .map(|_| PidState {
            cc: None,
            last_payload: None,
        })
        .collect();
    let mut pat_asm = SectionAssembler::default();
    let mut pmt_asm: BTreeMap<Pid, SectionAssembler> = BTreeMap::new();
    let mut pat_gap = Gap::default();
    let mut pmt_gap: BTreeMap<Pid, Gap> = BTreeMap::new();
    let mut programs: BTreeMap<u16, ProgramInfo> = BTreeMap::new();
    // PES starts: (pid, packet index, decode time unwrapped, pts, dts) for the lead check, which
    // needs the byte clock that is only known at the end.
    let mut starts: Vec<(Pid, u64, i64)> = Vec::new();
    let mut index: u64 = 0;
    let chunks = data.chunks(PACKET_SIZE);
    for raw in chunks {
        if raw.len() < PACKET_SIZE || raw[0] != SYNC_BYTE {
            r.sync_errors += 1;
            index += 1;
            continue;
        }
        let Ok(packet) = TsPacket::new(Bytes::copy_from_slice(raw)) else {
            r.sync_errors += 1;
            index += 1;
            continue;
        };
        let n = index;
        index += 1;
        r.packets += 1;
        let pid = packet.pid();
        if pid == Pid::NULL {
            r.null_packets += 1;
            continue;
        }
        if packet.tei() {
            r.transport_errors += 1;
        }
        // Continuity (TR 101 290 1.4).
        let discontinuity = packet
            .adaptation_field()
            .is_some_and(|af| af.discontinuity());
        let st = &mut pids[pid.index()];
        let mut continuous = true;
        if let Some(prev) = st.cc {
            let expected = if packet.has_payload() {
                (prev + 1) & 0x0F
            } else {
                prev
            };
            if packet.cc() != expected && !discontinuity {
                let duplicate = packet.has_payload()
                    && packet.cc() == prev
                    && st.last_payload.as_deref() == Some(packet.raw());
                if duplicate {
                    r.duplicates += 1;
                    continue;
                }
                r.cc_error_count += 1;
                continuous = false;
                if r.cc_errors.len() < KEEP {
                    r.cc_errors.push(CcError {
                        pid,
                        packet: n,
                        expected,
                        found: packet.cc(),
                    });
                }
            }
        }
        st.cc = Some(packet.cc());
        st.last_payload = packet.has_payload().then(|| packet.as_bytes().clone());

        // PCR, per program whose PCR PID this is now.
        if let Some(pcr) = packet.pcr() {
            let Some(program) = programs
                .values()
                .find(|p| p.pcr_pid == pid)
                .map(|p| p.number)
            else {
                r.stray_pcrs += 1;
                continue;
            };
            let p = r.pcr.entry(program).or_default();
            p.count += 1;
            if discontinuity {
                p.discontinuities += 1;
                p.last = None;
            }
            match p.last {
                Some((_, last)) => {
                    let step = pcr.since(last);
                    if step > 0 && step as u64 > p.max_interval {
                        p.max_interval = step as u64;
                        p.max_interval_at = n;
                    }
                    p.unwrapped += i128::from(step);
                }
                None => p.unwrapped = i128::from(pcr.ticks()),
            }
            p.last = Some((n, pcr));
            let value = p.unwrapped;
            p.samples.push((n, value));
        }

        // PSI.
        if pid == Pid::PAT {
            if packet.pusi() {
                pat_gap.seen(n);
            }
            let mut sections = Vec::new();
            pat_asm.push(&packet, continuous, |s| sections.push(s.to_vec()));
            for s in sections {
                match Pat::parse(&s) {
                    Ok(p) => {
                        if r.pat_versions.last() != Some(&p.version) {
                            r.pat_versions.push(p.version);
                        }
                        for (number, pmt_pid) in &p.programs {
                            pmt_asm.entry(*pmt_pid).or_default();
                            pmt_gap.entry(*pmt_pid).or_default();
                            programs.entry(*number).or_insert_with(|| ProgramInfo {
                                number: *number,
                                pmt_pid: *pmt_pid,
                                pcr_pid: Pid::NULL,
                                streams: Vec::new(),
                                versions: Vec::new(),
                            });
                        }
                    }
                    Err(e) => psi_error(&mut r, format!("packet {n}: {e}")),
                }
            }
            continue;
        }
        if let Some(asm) = pmt_asm.get_mut(&pid) {
            if packet.pusi() {
                if let Some(g) = pmt_gap.get_mut(&pid) {
                    g.seen(n);
                }
            }
            let mut sections = Vec::new();
            asm.push(&packet, continuous, |s| sections.push(s.to_vec()));
            for s in sections {
                match Pmt::parse(pid, &s) {
                    Ok(pmt) => {
                        if let Some(info) = programs.get_mut(&pmt.program_number) {
                            if info.versions.last() != Some(&pmt.version) {
                                info.versions.push(pmt.version);
                            }
                            info.pcr_pid = pmt.pcr_pid;
                            // A stream that leaves the PMT and comes back later starts a new run.
                            for (old, _) in &info.streams {
                                if !pmt.streams.iter().any(|e| e.pid == *old) {
                                    if let Some(s) = r.pes.get_mut(old) {
                                        s.end_run();
                                    }
                                }
                            }
                            info.streams =
                                pmt.streams.iter().map(|e| (e.pid, e.stream_type)).collect();
                            for es in &pmt.streams {
                                r.pes.entry(es.pid).or_default().class =
                                    Some(Codec::of(es).class());
                            }
                        }
                    }
                    Err(e) => psi_error(&mut r, format!("packet {n}: {e}")),
                }
            }
            continue;
        }

        // Elementary streams.
        let Some(stats) = r.pes.get_mut(&pid) else {
            let pcr_only = programs.values().any(|p| p.pcr_pid == pid);
            if !pcr_only && pid.value() >= 0x20 {
                *r.unreferenced_packets.entry(pid).or_default() += 1;
            }
            continue;
        };
        if !packet.pusi() {
            continue;
        }
        let Some(h) = PesHeader::parse(packet.payload()) else {
            continue;
        };
        stats.pes += 1;
        let Some(decode) = h.decode_time() else {
            stats.without_timestamp += 1;
            continue;
        };
        if let (Some(pts), Some(dts)) = (h.pts, h.dts) {
            let reorder = pts.since(dts);
            if reorder < 0 {
                stats.pts_before_dts += 1;
            }
            stats.max_reorder = stats.max_reorder.max(reorder);
        }
        let t = stats.unwrap.unwrap(decode);
        if let Some(last) = stats.last {
            let step = t - last;
            if step <= 0 {
                stats.non_increasing += 1;
                if stats.faults.len() < KEEP {
                    stats.faults.push(TimeFault {
                        pid,
                        packet: n,
                        previous: last,
                        found: t,
                    });
                }
            } else {
                *stats.steps.entry(step).or_default() += 1;
                if step > stats.max_step {
                    stats.max_step = step;
                    stats.max_step_at = n;
                }
            }
        }
        stats.last = Some(t);
        if let Some(pts) = h.pts {
            let p = stats.pts_unwrap.unwrap(pts);
            stats.run.push((p, n));
        }
        starts.push((pid, n, t));
    }
    let end = index;
    pat_gap.finish(end);
    for g in pmt_gap.values_mut() {
        g.finish(end);
    }
    for s in r.pes.values_mut() {
        s.end_run();
        s.typical_pts_step = s
            .pts_steps
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(0, |(step, _)| *step);
        s.typical_step = s
            .steps
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(0, |(step, _)| *step);
    }
    r.programs = programs.into_values().collect();

    // The byte clock: muxrate from the first PCR PID with two PCRs.
    let first_pcr = r
        .pcr
        .iter()
        .find(|(_, p)| p.samples.len() >= 2)
        .map(|(n, _)| *n);
    if let Some(program) = first_pcr {
        let samples = &r.pcr[&program].samples;
        let (n0, v0) = samples[0];
        let (n1, v1) = samples[samples.len() - 1];
        let bits = (n1 - n0) as f64 * (PACKET_SIZE * 8) as f64;
        let secs = (v1 - v0) as f64 / SYSTEM_CLOCK_HZ as f64;
        if secs > 0.0 {
            r.measured_muxrate_bps = Some(bits / secs);
        }
    }
    r.clock_muxrate_bps = limits
        .muxrate_bps
        .map(|b| b as f64)
        .or(r.measured_muxrate_bps);
    if let Some(rate) = r.clock_muxrate_bps {
        let ticks_per_packet = (PACKET_SIZE * 8) as f64 * SYSTEM_CLOCK_HZ as f64 / rate;
        let to_duration =
            |packets: u64| Duration::from_secs_f64(packets as f64 * ticks_per_packet / 27e6);
        r.max_pat_gap = to_duration(pat_gap.max);
        r.max_pmt_gap = pmt_gap
            .iter()
            .map(|(pid, g)| (*pid, to_duration(g.max)))
            .collect();
        // PCR accuracy: each PCR against the byte clock anchored at the first PCR of its run.
        for p in r.pcr.values_mut() {
            let Some(&(n0, v0)) = p.samples.first() else {
                continue;
            };
            for &(n, v) in &p.samples {
                let ideal = v0 as f64 + (n - n0) as f64 * ticks_per_packet;
                let err = (v as f64 - ideal).abs() * 1e9 / SYSTEM_CLOCK_HZ as f64;
                if err > p.max_error_ns {
                    p.max_error_ns = err;
                    p.max_error_at = n;
                }
            }
        }
        // Decode lead: arrival on the program's PCR timeline versus decode time.
        for (pid, n, t) in starts {
            let Some(program) = r
                .programs
                .iter()
                .find(|p| p.streams.iter().any(|(s, _)| *s == pid))
            else {
                continue;
            };
            let Some(pcr) = r.pcr.get(&program.number) else {
                continue;
            };
            let Some(&(n0, v0)) = pcr.samples.first() else {
                continue;
            };
            let arrival_27m = v0 as f64 + (n as f64 - n0 as f64) * ticks_per_packet;
            let arrival = (arrival_27m / 300.0).rem_euclid((PCR_MODULUS / 300) as f64);
            let decode = (t as f64).rem_euclid((PCR_MODULUS / 300) as f64);
            let lead = Pts::new(decode as u64).since(Pts::new(arrival as u64));
            let s = r.pes.get_mut(&pid).expect("stream listed");
            if s.min_decode_lead.is_none_or(|m| lead < m) {
                s.min_decode_lead = Some(lead);
                s.min_decode_lead_at = n;
            }
            s.max_decode_lead = Some(s.max_decode_lead.map_or(lead, |m| m.max(lead)));
        }
    }
    r
}

fn psi_error(r: &mut Report, text: String) {
    r.psi_errors += 1;
    if r.psi_error_text.len() < KEEP {
        r.psi_error_text.push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psi::packetize_section;
    use crate::ts::{pcr_only_packet, NULL_PACKET};
    use bytes::BytesMut;

    /// A tiny CBR stream: PAT + PMT every 10 packets, PCR every 5, nulls in between.
    fn stream(packets: u64, rate: u64, break_cc_at: Option<u64>) -> Vec<u8> {
        let pat = Pat {
            transport_stream_id: 1,
            version: 0,
            programs: vec![(1, Pid::from_bits(0x1000))],
            network_pid: None,
        };
        let pmt = Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: Pid::from_bits(0x100),
            program_info: Bytes::new(),
            streams: Vec::new(),
        };
        let ticks_per_packet = 188.0 * 8.0 * 27e6 / rate as f64;
        let mut out = Vec::new();
        let (mut cc_pat, mut cc_pmt) = (0u8, 0u8);
        for n in 0..packets {
            match n % 10 {
                0 => {
                    let mut b = BytesMut::new();
                    cc_pat = packetize_section(Pid::PAT, &pat.build(), cc_pat, &mut b);
                    out.extend_from_slice(&b);
                }
                1 => {
                    let mut b = BytesMut::new();
                    let cc = if break_cc_at == Some(n) {
                        cc_pmt + 3
                    } else {
                        cc_pmt
                    };
                    cc_pmt = packetize_section(Pid::from_bits(0x1000), &pmt.build(), cc, &mut b);
                    out.extend_from_slice(&b);
                }
                5 | 9 => {
                    let pcr = (n as f64 * ticks_per_packet + 10.0 / 27.0 * 0.0) as u64;
                    out.extend_from_slice(&pcr_only_packet(Pid::from_bits(0x100), Pcr::new(pcr)));
                }
                _ => out.extend_from_slice(&NULL_PACKET),
            }
        }
        out
    }

    #[test]
    fn clean_stream_has_no_violations() {
        let data = stream(1000, 1_000_000, None);
        let limits = CheckLimits {
            muxrate_bps: Some(1_000_000),
            ..CheckLimits::default()
        };
        let r = check(&data, &limits);
        assert_eq!(r.violations(&limits), Vec::<String>::new(), "{r}");
        let rate = r.measured_muxrate_bps.unwrap();
        assert!((rate - 1e6).abs() < 1.0, "{rate}");
        assert_eq!(r.programs.len(), 1);
        assert!(r.max_pcr_error_ns() < 40.0);
    }

    #[test]
    fn finds_cc_error_with_packet_index() {
        let data = stream(100, 1_000_000, Some(31));
        let r = check(&data, &CheckLimits::default());
        assert_eq!(r.cc_error_count, 1);
        assert_eq!(r.cc_errors[0].packet, 31);
        assert_eq!(r.cc_errors[0].pid, Pid::from_bits(0x1000));
    }

    #[test]
    fn finds_slow_psi_and_wrong_rate() {
        // At 100 kb/s ten packets take 150 ms: PAT/PMT gaps exceed 100 ms, PCR gaps 40 ms.
        let data = stream(200, 100_000, None);
        let limits = CheckLimits {
            muxrate_bps: Some(120_000),
            ..CheckLimits::default()
        };
        let r = check(&data, &limits);
        let v = r.violations(&limits).join("\n");
        assert!(v.contains("PAT gap"), "{v}");
        assert!(v.contains("PMT gap"), "{v}");
        assert!(v.contains("PCR interval"), "{v}");
        assert!(v.contains("muxrate"), "{v}");
        assert!(v.contains("PCR error"), "{v}");
    }

    #[test]
    fn garbage_is_sync_errors_not_panic() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let r = check(&data, &CheckLimits::default());
        assert!(r.sync_errors > 0);
        assert!(!r.violations(&CheckLimits::default()).is_empty());
    }
}
