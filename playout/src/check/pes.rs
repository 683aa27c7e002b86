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
    /// Smallest time between a PES's complete arrival (its last packet, on the byte clock of
    /// the program's PCR timeline) and its decode time, 90 kHz; negative means it was not
    /// whole in the decoder's buffer when due (the T-STD of ISO/IEC 13818-1 §2.4.2).
    pub min_decode_lead: Option<i64>,
    /// Packet index of the start of the PES with the smallest lead.
    pub min_decode_lead_at: u64,
    /// Largest time between a PES's first packet and its decode time, 90 kHz: how long it
    /// waits in the buffer at most.
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
    /// The index in the file's PES starts of this stream's PES still arriving.
    open: Option<usize>,
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

/// A PES: PID, index of its first and (so far) last packet, decode time unwrapped at 90 kHz.
#[derive(Clone, Copy, Debug)]
pub(super) struct PesStart {
    pid: Pid,
    first: u64,
    last: u64,
    decode: i64,
}

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
        // A PCR-only packet on the stream's PID carries none of it.
        if packet.payload().is_empty() {
            return;
        }
        if let Some(s) = stats.open.and_then(|k| starts.get_mut(k)) {
            s.last = n;
        }
        return;
    }
    stats.open = None;
    let Some(h) = PesHeader::parse(packet.payload()) else {
        return;
    };
    if let Some(t) = stats.record(pid, n, &h) {
        stats.open = Some(starts.len());
        starts.push(PesStart {
            pid,
            first: n,
            last: n,
            decode: t,
        });
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
        for s in starts {
            decode_lead(r, clock, s);
        }
    }
}

/// Decode lead: arrival on the program's PCR timeline (of the PES's first packet, and of its
/// last) versus decode time.
fn decode_lead(r: &mut Report, clock: ByteClock, pes: &PesStart) {
    let pid = pes.pid;
    let Some(program) = r
        .programs
        .iter()
        .find(|p| p.streams.iter().any(|(s, _)| *s == pid))
    else {
        return;
    };
    let Some(pcr) = r.pcr.get(&program.number) else {
        return;
    };
    let decode = (pes.decode as f64).rem_euclid((PCR_MODULUS / 300) as f64);
    let lead = |n: u64| {
        let arrival_27m = pcr.byte_clock_at(n, clock)?;
        let arrival = (arrival_27m / 300.0).rem_euclid((PCR_MODULUS / 300) as f64);
        Some(Pts::new(decode as u64).since(Pts::new(arrival as u64)))
    };
    let (Some(first), Some(last)) = (lead(pes.first), lead(pes.last)) else {
        return;
    };
    // Every start was recorded on a PID with stats, and stats are never removed.
    let s = r.pes.get_mut(&pid).expect("stream listed");
    if s.min_decode_lead.is_none_or(|m| last < m) {
        s.min_decode_lead = Some(last);
        s.min_decode_lead_at = pes.first;
    }
    s.max_decode_lead = Some(s.max_decode_lead.map_or(first, |m| m.max(first)));
}

/// The most frequent step (the last of equals), 0 if there is none.
fn most_frequent(steps: &BTreeMap<i64, u64>) -> i64 {
    steps
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(0, |(step, _)| *step)
}
