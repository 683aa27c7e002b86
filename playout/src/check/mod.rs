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
//!
//! Inside, a small state machine takes the file packet by packet through one step per concern,
//! any of which may end the packet's turn: the header and continuity counter (`packet.rs`),
//! the PCR (`pcr.rs`), PAT and PMT (`psi.rs`), PES timestamps (`pes.rs`). At the end of the
//! file the byte clock is settled from the muxrate, and what needs it (PSI gaps as durations,
//! PCR accuracy, decode lead) is measured; `report.rs` holds the [`Report`] and its verdicts.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::time::SYSTEM_CLOCK_HZ;
use crate::ts::{Pid, PACKET_SIZE};

mod packet;
mod pcr;
mod pes;
mod psi;
mod report;

pub use pcr::PcrStats;
pub use pes::PesStats;
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

/// Checks a whole transport stream held in memory. See [`CheckLimits`] for what is measured;
/// read the findings through [`Report::violations`].
pub fn check(data: &[u8], limits: &CheckLimits) -> Report {
    let mut checker = Checker::new(data.len() as u64);
    for raw in data.chunks(PACKET_SIZE) {
        checker.handle_packet(raw);
    }
    checker.finish(limits)
}

/// The checker fed piece by piece (a file read in chunks: a day-long recording need not fit
/// in memory). Pieces may split packets anywhere; the result is [`check`]'s of the whole.
pub struct Stream {
    checker: Checker,
    carry: Vec<u8>,
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::new()
    }
}

impl Stream {
    /// A checker that has seen nothing.
    pub fn new() -> Stream {
        Stream {
            checker: Checker::new(0),
            carry: Vec::with_capacity(PACKET_SIZE),
        }
    }

    /// The next bytes of the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        self.checker.report.bytes += data.len() as u64;
        if !self.carry.is_empty() {
            let take = (PACKET_SIZE - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < PACKET_SIZE {
                return;
            }
            let packet = std::mem::take(&mut self.carry);
            self.checker.handle_packet(&packet);
            self.carry = packet;
            self.carry.clear();
        }
        let mut packets = data.chunks_exact(PACKET_SIZE);
        for raw in &mut packets {
            self.checker.handle_packet(raw);
        }
        self.carry.extend_from_slice(packets.remainder());
    }

    /// The end of the stream (a partial last packet is checked as such): the report.
    pub fn finish(mut self, limits: &CheckLimits) -> Report {
        if !self.carry.is_empty() {
            self.checker.handle_packet(&self.carry);
        }
        self.checker.finish(limits)
    }
}

/// The checker between two packets.
struct Checker {
    report: Report,
    /// Index in the file of the next packet (or partial packet).
    index: u64,
    continuity: packet::Continuity,
    psi: psi::PsiState,
    /// The PES starts, kept for the decode lead, which needs the byte clock that is only known
    /// at the end.
    starts: Vec<pes::PesStart>,
}

impl Checker {
    fn new(bytes: u64) -> Checker {
        Checker {
            report: Report {
                bytes,
                ..Report::default()
            },
            index: 0,
            continuity: packet::Continuity::default(),
            psi: psi::PsiState::default(),
            starts: Vec::new(),
        }
    }

    /// One packet through the steps in order; each may end its turn.
    fn handle_packet(&mut self, raw: &[u8]) {
        let n = self.index;
        self.index += 1;
        // A break only ends this packet's turn.
        let _ = self.steps(raw, n);
    }

    /// The steps for packet `n`; the first that breaks ends its turn.
    fn steps(&mut self, raw: &[u8], n: u64) -> ControlFlow<()> {
        let r = &mut self.report;
        let packet = packet::header(r, raw)?;
        let discontinuity = packet
            .adaptation_field()
            .is_some_and(|af| af.discontinuity());
        let continuous = self.continuity.handle(r, &packet, n, discontinuity)?;
        pcr::handle(r, &self.psi.programs, &packet, n, discontinuity)?;
        self.psi.handle(r, &packet, n, continuous)?;
        pes::handle(r, &self.psi.programs, &mut self.starts, &packet, n);
        ControlFlow::Continue(())
    }

    /// The end of the file: settles the byte clock and measures what needs it.
    fn finish(self, limits: &CheckLimits) -> Report {
        let Checker {
            mut report,
            index: end,
            psi,
            starts,
            ..
        } = self;
        let r = &mut report;
        r.measured_muxrate_bps = pcr::measured_muxrate_bps(&r.pcr);
        r.clock_muxrate_bps = limits
            .muxrate_bps
            .map(|b| b as f64)
            .or(r.measured_muxrate_bps);
        let clock = r.clock_muxrate_bps.map(ByteClock::new);
        psi.finish(r, end, clock);
        pes::finish(r, &starts, clock);
        if let Some(clock) = clock {
            pcr::accuracy(&mut r.pcr, clock);
        }
        report
    }
}

/// The byte clock of the constant muxrate.
#[derive(Clone, Copy, Debug)]
struct ByteClock {
    /// 27 MHz ticks per packet.
    ticks_per_packet: f64,
}

impl ByteClock {
    fn new(muxrate_bps: f64) -> ByteClock {
        ByteClock {
            ticks_per_packet: (PACKET_SIZE * 8) as f64 * SYSTEM_CLOCK_HZ as f64 / muxrate_bps,
        }
    }

    /// How long `packets` packets take.
    fn duration(self, packets: u64) -> Duration {
        Duration::from_secs_f64(packets as f64 * self.ticks_per_packet / 27e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fed in pieces that split packets anywhere, the streaming checker reports what the
    /// whole-buffer one does.
    #[test]
    fn a_stream_in_pieces_is_checked_as_a_whole() {
        let mut data = Vec::new();
        for k in 0..50u8 {
            let mut p = crate::ts::NULL_PACKET;
            p[1] = 0x01;
            p[2] = 0x00;
            p[3] = 0x10 | (k & 0x0F);
            if k == 20 {
                p[3] = 0x10 | 7; // a continuity error
            }
            data.extend_from_slice(&p);
        }
        data.extend_from_slice(&[0x47, 0x01]); // a partial last packet
        let limits = CheckLimits::default();
        let whole = check(&data, &limits);
        for piece in [1, 7, 100, 188, 189, 1000] {
            let mut s = Stream::new();
            for c in data.chunks(piece) {
                s.push(c);
            }
            let r = s.finish(&limits);
            assert_eq!(format!("{r}"), format!("{whole}"), "pieces of {piece}");
            assert_eq!(r.bytes, whole.bytes);
        }
    }
    use crate::psi::{packetize_section, Pat, Pmt};
    use crate::time::Pcr;
    use crate::ts::{pcr_only_packet, NULL_PACKET};
    use bytes::{Bytes, BytesMut};

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
