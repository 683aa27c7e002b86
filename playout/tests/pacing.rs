//! A day of paced output on a simulated clock: the pacer and the muxer together keep the
//! output on the wall clock (no drift), datagrams evenly spaced, PCR interval and accuracy
//! held.

use bytes::{Bytes, BytesMut};
use playout::mux::{Mux, MuxConfig, Underflow};
use playout::offline::{ItemSource, MemorySource};
use playout::pacing::{Pacer, PacerConfig};
use playout::splice::{SpliceConfig, Splicer};
use playout::time::{PCR_MODULUS, SYSTEM_CLOCK_HZ};
use playout::ts::{TsPacket, PACKET_SIZE};

const DAY_NS: u64 = 24 * 3600 * 1_000_000_000;

/// A deterministic wake-up jitter in 0..max_ns (a late timer, a busy core).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, max_ns: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % max_ns
    }
}

/// 24 h at 8 Mb/s (65.6 million datagrams): the driver wakes at each deadline plus up to
/// 300 µs, and every 10 minutes 20 ms late. Every datagram leaves within its wake-up delay,
/// the spacing is nominal within 1 ms at p99, and the datagram count matches the wall clock.
#[test]
fn a_day_at_8_mbps_without_drift() {
    let cfg = PacerConfig::new(8_000_000);
    let interval = cfg.interval_ns() as i64;
    let start = 5_000_000_000;
    let mut pacer = Pacer::new(cfg, start);
    let mut jitter = Jitter(7);
    let mut now = start;
    let mut last_sent: Option<u64> = None;
    // Histogram of |spacing - nominal| in 10 µs buckets, up to 25 ms.
    let mut hist = vec![0u64; 2501];
    let mut next_hiccup = start + 600_000_000_000;
    while now < start + DAY_NS {
        let n = pacer.poll_release(now);
        for _ in 0..n {
            if let Some(prev) = last_sent {
                let dev = ((now - prev) as i64 - interval).unsigned_abs() / 10_000;
                hist[dev.min(2500) as usize] += 1;
            }
            last_sent = Some(now);
        }
        let mut wake = pacer.poll_timeout() + jitter.next(300_000);
        if wake >= next_hiccup {
            wake += 20_000_000;
            next_hiccup += 600_000_000_000;
        }
        assert!(wake > now);
        now = wake;
    }
    let stats = pacer.stats();
    assert_eq!(stats.stalls, 0, "20 ms late is caught up, not re-anchored");
    assert!(stats.max_late_ns <= 20_300_000, "{stats:?}");
    // Drift: the datagrams sent equal the wall-clock time elapsed at the muxrate, to within
    // the last wake-up (far less than one 40 ms frame).
    let expected = (u128::from(now - start) * 8_000_000 / (1_000_000_000 * 10_528)) as i64;
    let sent = stats.datagrams as i64;
    let drift_ns = (expected - sent).abs() * interval;
    assert!(drift_ns < 40_000_000, "drift {drift_ns} ns after 24 h");
    let total: u64 = hist.iter().sum();
    let mut seen = 0;
    let p99_bucket = hist
        .iter()
        .position(|&c| {
            seen += c;
            seen * 100 >= total * 99
        })
        .unwrap();
    assert!(
        p99_bucket * 10 < 1_000,
        "spacing p99 off nominal by {} µs",
        p99_bucket * 10
    );
    assert!(total > 65_000_000, "{total} datagrams");
}

/// 24 h of a muxed channel (PSI, PCR and stuffing: its only item is unplayable, so the muxer
/// keeps receivers locked) paced on a simulated clock: every PCR is within ±500 ns of its
/// byte position at the muxrate, PCRs are at most 40 ms apart, and the PCR leaves within one
/// datagram interval plus the wake-up delay of the wall clock, from the first hour to the last.
#[test]
fn a_day_of_muxed_output_keeps_pcr_on_the_wall_clock() {
    let muxrate = 200_000;
    let mux_cfg = MuxConfig::new(muxrate);
    let origin = mux_cfg.clock_origin;
    let mut mux = Mux::new(mux_cfg, vec![Splicer::new(SpliceConfig::new(1), 1)]);
    let mut source = MemorySource::new(vec![Some(Bytes::from_static(b"not a transport stream"))]);
    let pacer_cfg = PacerConfig::new(muxrate);
    let interval = pacer_cfg.interval_ns();
    let start = 1_000_000;
    let mut pacer = Pacer::new(pacer_cfg, start);
    let mut jitter = Jitter(11);
    let mut now = start;
    let mut buf = BytesMut::new();
    let mut slot: u64 = 0;
    let mut last_pcr: Option<u64> = None;
    let (mut pcrs, mut max_gap, mut max_err, mut max_lag) = (0u64, 0u64, 0i64, 0i64);
    while now < start + DAY_NS {
        while let Some((p, req)) = mux.poll_io() {
            let t = mux.now();
            source.serve(mux.program_mut(p), t, req);
        }
        while mux.poll_event().is_some() {}
        let n = pacer.poll_release(now);
        if n > 0 {
            buf.clear();
            let packets = n as usize * 7;
            assert_eq!(mux.emit(&mut buf, packets, Underflow::Stuff), packets);
            for raw in buf.chunks_exact(PACKET_SIZE) {
                let p = TsPacket::new(Bytes::copy_from_slice(raw)).unwrap();
                if let Some(pcr) = p.pcr() {
                    let pcr = pcr.ticks();
                    // Position: byte 10 of the packet at the muxrate, modulo the PCR range.
                    let at = origin
                        + ((u128::from(slot) * PACKET_SIZE as u128 + 10)
                            * 8
                            * u128::from(SYSTEM_CLOCK_HZ)
                            / u128::from(muxrate)) as u64;
                    let err = pcr as i64 - (at % PCR_MODULUS) as i64;
                    max_err = max_err.max(err.abs());
                    if let Some(prev) = last_pcr {
                        max_gap = max_gap.max((pcr + PCR_MODULUS - prev) % PCR_MODULUS);
                    }
                    last_pcr = Some(pcr);
                    // Wall clock against the output clock: how late the PCR leaves.
                    let output_ns = (u128::from(at - origin) * 1_000_000_000
                        / u128::from(SYSTEM_CLOCK_HZ)) as i64;
                    max_lag = max_lag.max((now - start) as i64 - output_ns);
                    pcrs += 1;
                }
                slot += 1;
            }
        }
        now = pacer.poll_timeout() + jitter.next(300_000);
    }
    assert!(pcrs > 24 * 3600 * 25, "{pcrs} PCRs");
    assert!(
        max_err <= 13,
        "PCR off its byte position by {max_err} ticks (> 500 ns)"
    );
    assert!(
        max_gap <= 40 * 27_000,
        "PCR interval up to {} ms",
        max_gap / 27_000
    );
    let bound = (interval + 300_000) as i64;
    assert!(
        max_lag <= bound,
        "PCR left {max_lag} ns after its output time (bound {bound})"
    );
    assert_eq!(pacer.stats().stalls, 0);
}
