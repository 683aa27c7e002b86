//! What [`check`](super::check) found: the [`Report`], its findings, and the sentences
//! [`Report::violations`] makes of them against [`CheckLimits`] (ETSI TR 101 290 §5.2).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{CheckLimits, PcrStats, PesStats};
use crate::es::StreamClass;
use crate::time::PTS_HZ;
use crate::ts::Pid;

/// What [`check`](super::check) found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Bytes checked.
    pub bytes: u64,
    /// Packets checked.
    pub packets: u64,
    /// Null packets among them.
    pub null_packets: u64,
    /// Packets that did not start with 0x47 where one was due, plus a trailing partial packet.
    pub sync_errors: u64,
    /// Packets with transport_error_indicator.
    pub transport_errors: u64,
    /// Continuity errors, all counted.
    pub cc_error_count: u64,
    /// The first few continuity errors.
    pub cc_errors: Vec<CcError>,
    /// Repeated packets (same CC, allowed once by the standard).
    pub duplicates: u64,
    /// PAT/PMT sections with a bad CRC or layout.
    pub psi_errors: u64,
    /// The first few PSI errors, as text.
    pub psi_error_text: Vec<String>,
    /// PAT versions in the order they appeared.
    pub pat_versions: Vec<u8>,
    /// Programs, by number.
    pub programs: Vec<ProgramInfo>,
    /// Muxrate measured from the first PCR PID to its last PCR, bits/s.
    pub measured_muxrate_bps: Option<f64>,
    /// The muxrate the byte clock ran on (configured, else measured).
    pub clock_muxrate_bps: Option<f64>,
    /// Longest PAT gap.
    pub max_pat_gap: Duration,
    /// Longest gap of each PMT PID.
    pub max_pmt_gap: BTreeMap<Pid, Duration>,
    /// PCR timing per program number, following the program's PCR PID as its PMT names it
    /// (the PCR PID may change with the PMT version when the programme's video codec does).
    pub pcr: BTreeMap<u16, PcrStats>,
    /// PCRs on a PID that was no program's PCR PID at the time.
    pub stray_pcrs: u64,
    /// Timing per elementary stream PID.
    pub pes: BTreeMap<Pid, PesStats>,
    /// Packets on PIDs that no PMT or PAT lists (PSI and null excluded).
    pub unreferenced_packets: BTreeMap<Pid, u64>,
}

impl Report {
    /// Longest PCR interval over all PCR PIDs.
    pub fn max_pcr_interval(&self) -> Duration {
        let ticks = self.pcr.values().map(|p| p.max_interval).max().unwrap_or(0);
        ticks_to_duration(ticks)
    }

    /// Largest PCR error over all PCR PIDs, nanoseconds.
    pub fn max_pcr_error_ns(&self) -> f64 {
        self.pcr
            .values()
            .map(|p| p.max_error_ns)
            .fold(0.0, f64::max)
    }

    /// Longest gap of any PMT.
    pub fn max_pmt_gap(&self) -> Duration {
        self.max_pmt_gap.values().copied().max().unwrap_or_default()
    }

    /// Every breach of `limits`, as a sentence naming the PID and packet index.
    pub fn violations(&self, limits: &CheckLimits) -> Vec<String> {
        let mut v = Vec::new();
        if self.packets == 0 {
            v.push("no packets".to_string());
            return v;
        }
        if self.sync_errors > 0 {
            v.push(format!("{} sync errors", self.sync_errors));
        }
        if self.transport_errors > 0 {
            v.push(format!(
                "{} packets with transport_error_indicator",
                self.transport_errors
            ));
        }
        for e in &self.cc_errors {
            v.push(format!(
                "PID {}: continuity error at packet {} (expected {}, found {})",
                e.pid, e.packet, e.expected, e.found
            ));
        }
        if self.cc_error_count > self.cc_errors.len() as u64 {
            v.push(format!("{} continuity errors in all", self.cc_error_count));
        }
        if self.duplicates > 0 {
            v.push(format!("{} duplicate packets", self.duplicates));
        }
        for e in &self.psi_error_text {
            v.push(format!("PSI: {e}"));
        }
        if self.pat_versions.is_empty() {
            v.push("no PAT".to_string());
        }
        if self.clock_muxrate_bps.is_none() {
            v.push("no PCR: cannot time the stream".to_string());
        }
        if self.max_pat_gap > limits.max_psi_gap {
            v.push(format!(
                "PAT gap {:?} exceeds {:?}",
                self.max_pat_gap, limits.max_psi_gap
            ));
        }
        for (pid, gap) in &self.max_pmt_gap {
            if *gap > limits.max_psi_gap {
                v.push(format!(
                    "PID {pid}: PMT gap {gap:?} exceeds {:?}",
                    limits.max_psi_gap
                ));
            }
        }
        for p in &self.programs {
            if !self.pcr.contains_key(&p.number) {
                v.push(format!(
                    "program {}: no PCR on PCR PID {}",
                    p.number, p.pcr_pid
                ));
            }
        }
        for (program, p) in &self.pcr {
            let interval = ticks_to_duration(p.max_interval);
            if interval > limits.max_pcr_interval {
                v.push(format!(
                    "program {program}: PCR interval {interval:?} at packet {} exceeds {:?}",
                    p.max_interval_at, limits.max_pcr_interval
                ));
            }
            if p.max_error_ns > limits.max_pcr_error_ns {
                v.push(format!(
                    "program {program}: PCR error {:.0} ns at packet {} exceeds {} ns",
                    p.max_error_ns, p.max_error_at, limits.max_pcr_error_ns
                ));
            }
        }
        if let (Some(want), Some(got)) = (limits.muxrate_bps, self.measured_muxrate_bps) {
            let ppm = (got - want as f64).abs() / want as f64 * 1e6;
            if ppm > limits.muxrate_tolerance_ppm {
                v.push(format!(
                    "muxrate {got:.1} b/s differs from {want} b/s by {ppm:.2} ppm"
                ));
            }
        }
        let max_lead = limits.max_decode_lead.as_secs_f64() * PTS_HZ as f64;
        for (pid, s) in &self.pes {
            for f in &s.faults {
                v.push(format!(
                    "PID {pid}: decode time {} after {} does not increase (packet {})",
                    f.found, f.previous, f.packet
                ));
            }
            if s.non_increasing > s.faults.len() as u64 {
                v.push(format!(
                    "PID {pid}: {} non-increasing decode times in all",
                    s.non_increasing
                ));
            }
            let ratio = match s.class {
                Some(StreamClass::Video) => Some(limits.max_video_step_ratio),
                Some(StreamClass::Audio) => Some(limits.max_audio_step_ratio),
                _ => None,
            };
            if let Some(ratio) = ratio {
                if s.typical_pts_step > 0
                    && s.max_pts_gap as f64 > s.typical_pts_step as f64 * ratio
                {
                    v.push(format!(
                        "PID {pid}: presentation gap of {} ticks at packet {} exceeds {ratio} x {} ticks",
                        s.max_pts_gap, s.max_pts_gap_at, s.typical_pts_step
                    ));
                }
            }
            if s.pts_before_dts > 0 {
                v.push(format!(
                    "PID {pid}: {} PES with PTS before DTS",
                    s.pts_before_dts
                ));
            }
            if let Some(lead) = s.min_decode_lead {
                if lead < 0 {
                    v.push(format!(
                        "PID {pid}: the PES starting at packet {} is whole {} ms after its decode time",
                        s.min_decode_lead_at,
                        -lead / 90
                    ));
                }
            }
            if let Some(lead) = s.max_decode_lead {
                if lead as f64 > max_lead {
                    v.push(format!(
                        "PID {pid}: a PES arrives {} ms before its decode time (limit {:?})",
                        lead / 90,
                        limits.max_decode_lead
                    ));
                }
            }
        }
        for (pid, n) in &self.unreferenced_packets {
            if limits.private_pids.contains(pid) {
                continue;
            }
            v.push(format!("PID {pid}: {n} packets on a PID no table lists"));
        }
        v
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} packets ({} null), {} bytes",
            self.packets, self.null_packets, self.bytes
        )?;
        if let Some(rate) = self.measured_muxrate_bps {
            writeln!(f, "muxrate {rate:.0} b/s (from PCR)")?;
        }
        writeln!(
            f,
            "errors: sync {}, transport {}, continuity {}, duplicate {}, PSI {}",
            self.sync_errors,
            self.transport_errors,
            self.cc_error_count,
            self.duplicates,
            self.psi_errors
        )?;
        writeln!(
            f,
            "PAT versions {:?}, max PAT gap {:?}",
            self.pat_versions, self.max_pat_gap
        )?;
        for p in &self.programs {
            let gap = self
                .max_pmt_gap
                .get(&p.pmt_pid)
                .copied()
                .unwrap_or_default();
            writeln!(
                f,
                "program {} PMT {} (versions {:?}, max gap {gap:?}) PCR {}",
                p.number, p.pmt_pid, p.versions, p.pcr_pid
            )?;
            for (pid, st) in &p.streams {
                write!(f, "  PID {pid} stream_type 0x{st:02X}")?;
                if let Some(s) = self.pes.get(pid) {
                    write!(
                        f,
                        ": {} PES, frame {} (largest presentation gap {}, decode step {}), non-increasing DTS {}, reorder delay {}",
                        s.pes, s.typical_pts_step, s.max_pts_gap, s.max_step, s.non_increasing, s.max_reorder
                    )?;
                }
                writeln!(f)?;
            }
        }
        for (program, p) in &self.pcr {
            writeln!(
                f,
                "program {program} PCR: {} PCRs, max interval {:?}, max error {:.0} ns",
                p.count,
                ticks_to_duration(p.max_interval),
                p.max_error_ns
            )?;
        }
        Ok(())
    }
}

/// A continuity counter error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CcError {
    /// The PID.
    pub pid: Pid,
    /// Index of the packet in the file.
    pub packet: u64,
    /// The counter that was due.
    pub expected: u8,
    /// The counter found.
    pub found: u8,
}

/// A decode time that did not increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeFault {
    /// The PID.
    pub pid: Pid,
    /// Index of the packet that starts the PES.
    pub packet: u64,
    /// The previous decode time (unwrapped, 90 kHz).
    pub previous: i64,
    /// This decode time (unwrapped, 90 kHz).
    pub found: i64,
}

/// One program as the file announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    /// program_number.
    pub number: u16,
    /// PMT PID.
    pub pmt_pid: Pid,
    /// PCR PID of the last PMT.
    pub pcr_pid: Pid,
    /// (PID, stream_type) of the last PMT.
    pub streams: Vec<(Pid, u8)>,
    /// PMT versions in the order they appeared.
    pub versions: Vec<u8>,
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos((u128::from(ticks) * 1000 / 27) as u64)
}
