//! The PCR step: repetition of each program's PCR (ETSI TR 101 290 check 2.3a), its
//! discontinuities (2.3b), its accuracy against the byte clock (2.4), and the muxrate measured
//! from it (ISO/IEC 13818-1 §2.4.2.2: the PCR timestamps the byte that carries it).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use super::{ByteClock, ProgramInfo, Report};
use crate::time::{Pcr, SYSTEM_CLOCK_HZ};
use crate::ts::{TsPacket, PACKET_SIZE};

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

impl PcrStats {
    /// Where packet `n` falls on this timeline by the byte clock, anchored at the first PCR
    /// since the last discontinuity: unwrapped 27 MHz ticks.
    pub(super) fn byte_clock_at(&self, n: u64, clock: ByteClock) -> Option<f64> {
        let &(n0, v0) = self.samples.first()?;
        Some(v0 as f64 + (n as f64 - n0 as f64) * clock.ticks_per_packet)
    }

    fn record(&mut self, pcr: Pcr, n: u64, discontinuity: bool) {
        self.count += 1;
        if discontinuity {
            self.discontinuities += 1;
            self.last = None;
        }
        match self.last {
            Some((_, last)) => {
                let step = pcr.since(last);
                if step > 0 && step as u64 > self.max_interval {
                    self.max_interval = step as u64;
                    self.max_interval_at = n;
                }
                self.unwrapped += i128::from(step);
            }
            None => self.unwrapped = i128::from(pcr.ticks()),
        }
        self.last = Some((n, pcr));
        self.samples.push((n, self.unwrapped));
    }
}

/// Records the PCR of packet `n`, if it has one, for the program whose PCR PID this is now;
/// breaks on a PCR that belongs to no program (counted as stray).
pub(super) fn handle(
    r: &mut Report,
    programs: &BTreeMap<u16, ProgramInfo>,
    packet: &TsPacket,
    n: u64,
    discontinuity: bool,
) -> ControlFlow<()> {
    let Some(pcr) = packet.pcr() else {
        return ControlFlow::Continue(());
    };
    let pid = packet.pid();
    let Some(program) = programs
        .values()
        .find(|p| p.pcr_pid == pid)
        .map(|p| p.number)
    else {
        r.stray_pcrs += 1;
        return ControlFlow::Break(());
    };
    r.pcr
        .entry(program)
        .or_default()
        .record(pcr, n, discontinuity);
    ControlFlow::Continue(())
}

/// The muxrate from the first program with two PCRs, from its first PCR to its last, bits/s.
pub(super) fn measured_muxrate_bps(pcr: &BTreeMap<u16, PcrStats>) -> Option<f64> {
    let samples = &pcr.values().find(|p| p.samples.len() >= 2)?.samples;
    let (n0, v0) = samples[0];
    let (n1, v1) = samples[samples.len() - 1];
    let bits = (n1 - n0) as f64 * (PACKET_SIZE * 8) as f64;
    let secs = (v1 - v0) as f64 / SYSTEM_CLOCK_HZ as f64;
    (secs > 0.0).then(|| bits / secs)
}

/// PCR accuracy: each PCR against the byte clock anchored at the first PCR of its run.
pub(super) fn accuracy(pcr: &mut BTreeMap<u16, PcrStats>, clock: ByteClock) {
    for p in pcr.values_mut() {
        for &(n, v) in &p.samples {
            let Some(ideal) = p.byte_clock_at(n, clock) else {
                continue;
            };
            let err = (v as f64 - ideal).abs() * 1e9 / SYSTEM_CLOCK_HZ as f64;
            if err > p.max_error_ns {
                p.max_error_ns = err;
                p.max_error_at = n;
            }
        }
    }
}
