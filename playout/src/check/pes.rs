//! The PES step: timestamps of every elementary stream (ISO/IEC 13818-1 §2.4.3.7; ETSI
//! TR 101 290 check 2.5): decode times strictly increasing, the steps between presentation
//! times in display order, PTS against DTS, and the decode lead against arrival on the byte
//! clock (the T-STD of §2.4.2); packets on PIDs no table lists (check 3.4).

use std::collections::BTreeMap;

use super::{ByteClock, ProgramInfo, Report, TimeFault, KEEP};
use crate::es::StreamClass;
use crate::pes::PesHeader;
use crate::time::{Pts, Unwrapper, PCR_MODULUS};
use crate::ts::{Pid, TsPacket};

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
    /// Records the header of the PES that starts at packet `n`; returns its decode time
    /// (unwrapped, 90 kHz) if it has one.
    fn record(&mut self, pid: Pid, n: u64, h: &PesHeader) -> Option<i64> {
        self.pes += 1;
        let Some(decode) = h.decode_time() else {
            self.without_timestamp += 1;
            return None;
        };
        if let (Some(pts), Some(dts)) = (h.pts, h.dts) {
            let reorder = pts.since(dts);
            if reorder < 0 {
                self.pts_before_dts += 1;
            }
            self.max_reorder = self.max_reorder.max(reorder);
        }
        let t = self.unwrap.unwrap(decode);
        if let Some(last) = self.last {
            let step = t - last;
            if step <= 0 {
                self.non_increasing += 1;
                if self.faults.len() < KEEP {
                    self.faults.push(TimeFault {
                        pid,
                        packet: n,
                        previous: last,
                        found: t,
                    });
                }
            } else {
                *self.steps.entry(step).or_default() += 1;
                if step > self.max_step {
                    self.max_step = step;
                    self.max_step_at = n;
                }
            }
        }
        self.last = Some(t);
        if let Some(pts) = h.pts {
            let p = self.pts_unwrap.unwrap(pts);
            self.run.push((p, n));
        }
        Some(t)
    }

    /// Ends a run of the stream (it left the PMT, or the file ended): measures the gaps
    /// between its pictures or frames in display order.
    pub(super) fn end_run(&mut self) {
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

/// A PES start: (PID, packet index, decode time unwrapped at 90 kHz).
pub(super) type PesStart = (Pid, u64, i64);

/// Takes packet `n`, past the PSI step: a PES start on a stream a PMT lists is recorded (and
/// kept in `starts`); a packet on a PID no table lists is counted.
pub(super) fn handle(
    r: &mut Report,
    programs: &BTreeMap<u16, ProgramInfo>,
    starts: &mut Vec<PesStart>,
    packet: &TsPacket,
    n: u64,
) {
    let pid = packet.pid();
    let Some(stats) = r.pes.get_mut(&pid) else {
        let pcr_only = programs.values().any(|p| p.pcr_pid == pid);
        if !pcr_only && pid.value() >= 0x20 {
            *r.unreferenced_packets.entry(pid).or_default() += 1;
        }
        return;
    };
    if !packet.pusi() {
        return;
    }
    let Some(h) = PesHeader::parse(packet.payload()) else {
        return;
    };
    if let Some(t) = stats.record(pid, n, &h) {
        starts.push((pid, n, t));
    }
}

/// The end of the file: ends every stream's run, finds the typical steps, and measures the
/// decode lead of each PES start if there is a byte clock.
pub(super) fn finish(r: &mut Report, starts: &[PesStart], clock: Option<ByteClock>) {
    for s in r.pes.values_mut() {
        s.end_run();
        s.typical_pts_step = most_frequent(&s.pts_steps);
        s.typical_step = most_frequent(&s.steps);
    }
    if let Some(clock) = clock {
        for &(pid, n, t) in starts {
            decode_lead(r, clock, pid, n, t);
        }
    }
}

/// Decode lead: arrival on the program's PCR timeline versus decode time.
fn decode_lead(r: &mut Report, clock: ByteClock, pid: Pid, n: u64, t: i64) {
    let Some(program) = r
        .programs
        .iter()
        .find(|p| p.streams.iter().any(|(s, _)| *s == pid))
    else {
        return;
    };
    let Some(arrival_27m) = r
        .pcr
        .get(&program.number)
        .and_then(|pcr| pcr.byte_clock_at(n, clock))
    else {
        return;
    };
    let arrival = (arrival_27m / 300.0).rem_euclid((PCR_MODULUS / 300) as f64);
    let decode = (t as f64).rem_euclid((PCR_MODULUS / 300) as f64);
    let lead = Pts::new(decode as u64).since(Pts::new(arrival as u64));
    // Every start was recorded on a PID with stats, and stats are never removed.
    let s = r.pes.get_mut(&pid).expect("stream listed");
    if s.min_decode_lead.is_none_or(|m| lead < m) {
        s.min_decode_lead = Some(lead);
        s.min_decode_lead_at = n;
    }
    s.max_decode_lead = Some(s.max_decode_lead.map_or(lead, |m| m.max(lead)));
}

/// The most frequent step (the last of equals), 0 if there is none.
fn most_frequent(steps: &BTreeMap<i64, u64>) -> i64 {
    steps
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(0, |(step, _)| *step)
}
