//! Real-time pacing of a constant-rate output, sans-IO: datagram `k` of a stream at a muxrate
//! is due exactly `k × datagram bits / muxrate` after the pacer's origin. The driver passes the
//! current time in (nanoseconds on any monotonic clock), sends what [`Pacer::poll_release`]
//! says is due, and sleeps until [`Pacer::poll_timeout`].
//!
//! Due times are computed from the origin, never accumulated, so the output clock cannot drift
//! against the clock passed in. A driver that wakes late sends the missed datagrams at once
//! (a short burst), but only up to [`PacerConfig::max_behind_ns`]: beyond that (the process
//! was stopped, the machine was overloaded) the pacer re-anchors at the current time and
//! counts a stall, so a receiver never gets a flood of old data. The stream itself stays
//! continuous either way: nothing is dropped, it only leaves later.

use crate::ts::PACKET_SIZE;

/// How a stream is paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacerConfig {
    /// Output rate in bits per second (at least 1).
    pub muxrate_bps: u64,
    /// TS packets per datagram (7 for UDP/RTP over a 1500-byte MTU).
    pub packets_per_datagram: u64,
    /// Lateness beyond which the pacer re-anchors instead of bursting (default 100 ms).
    pub max_behind_ns: u64,
}

impl PacerConfig {
    /// 7 packets per datagram, re-anchor after 100 ms behind.
    pub fn new(muxrate_bps: u64) -> PacerConfig {
        PacerConfig {
            muxrate_bps: muxrate_bps.max(1),
            packets_per_datagram: 7,
            max_behind_ns: 100_000_000,
        }
    }

    /// Bits in one datagram's payload.
    pub fn datagram_bits(&self) -> u64 {
        self.packets_per_datagram.max(1) * PACKET_SIZE as u64 * 8
    }

    /// The nominal time between two datagrams, in nanoseconds (rounded down).
    pub fn interval_ns(&self) -> u64 {
        self.datagram_bits() * 1_000_000_000 / self.muxrate_bps
    }
}

/// Counters, read through [`Pacer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Datagrams released.
    pub datagrams: u64,
    /// Times the pacer fell more than `max_behind_ns` behind and re-anchored.
    pub stalls: u64,
    /// Total time skipped by re-anchoring (ns): how far the output runs behind its start.
    pub skipped_ns: u64,
    /// The largest lateness of a released datagram (ns), re-anchors excluded.
    pub max_late_ns: u64,
}

/// Releases datagrams of one constant-rate stream on time.
#[derive(Clone, Debug)]
pub struct Pacer {
    cfg: PacerConfig,
    /// Time of datagram `base`.
    origin_ns: u64,
    base: u64,
    /// The next datagram to release.
    next: u64,
    stats: PacerStats,
}

impl Pacer {
    /// A pacer whose first datagram is due at `start_ns`.
    pub fn new(cfg: PacerConfig, start_ns: u64) -> Pacer {
        let cfg = PacerConfig {
            muxrate_bps: cfg.muxrate_bps.max(1),
            packets_per_datagram: cfg.packets_per_datagram.max(1),
            ..cfg
        };
        Pacer {
            cfg,
            origin_ns: start_ns,
            base: 0,
            next: 0,
            stats: PacerStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PacerConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Datagrams released so far; the index of the next one.
    pub fn released(&self) -> u64 {
        self.next
    }

    /// When datagram `k` (counted from the start) is due, in ns. Exact: no rounding error
    /// accumulates, whatever `k`.
    pub fn due(&self, k: u64) -> u64 {
        let n = u128::from(k.saturating_sub(self.base)) * u128::from(self.cfg.datagram_bits());
        let ns = (n * 1_000_000_000).div_ceil(u128::from(self.cfg.muxrate_bps));
        self.origin_ns + ns as u64
    }

    /// When the next datagram is due: sleep until then.
    pub fn poll_timeout(&self) -> u64 {
        self.due(self.next)
    }

    /// How many datagrams to send at `now_ns` (usually 0 or 1); they count as released.
    pub fn poll_release(&mut self, now_ns: u64) -> u64 {
        let first_due = self.due(self.next);
        if now_ns < first_due {
            return 0;
        }
        let late = now_ns - first_due;
        if late > self.cfg.max_behind_ns {
            // Too far behind to catch up without a flood: send one now and go on from here.
            self.stats.stalls += 1;
            self.stats.skipped_ns += late;
            self.origin_ns = now_ns;
            self.base = self.next;
            self.next += 1;
            self.stats.datagrams += 1;
            return 1;
        }
        self.stats.max_late_ns = self.stats.max_late_ns.max(late);
        // Datagrams j with due(j) <= now: j - base <= (now - origin) * rate / bits.
        let elapsed = u128::from(now_ns - self.origin_ns);
        let last = self.base
            + (elapsed * u128::from(self.cfg.muxrate_bps)
                / (u128::from(self.cfg.datagram_bits()) * 1_000_000_000)) as u64;
        let n = (last + 1).saturating_sub(self.next);
        self.next += n;
        self.stats.datagrams += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_on_the_due_times() {
        // 7 × 188 × 8 = 10528 bits at 10.528 Mb/s: one datagram per ms exactly.
        let mut p = Pacer::new(PacerConfig::new(10_528_000), 1_000);
        assert_eq!(p.poll_timeout(), 1_000);
        assert_eq!(p.poll_release(999), 0);
        assert_eq!(p.poll_release(1_000), 1);
        assert_eq!(p.poll_timeout(), 1_001_000);
        assert_eq!(p.poll_release(1_000_999), 0);
        assert_eq!(p.poll_release(3_500_000), 3);
        assert_eq!(p.released(), 4);
        assert_eq!(p.stats().max_late_ns, 2_499_000);
        assert_eq!(p.stats().stalls, 0);
    }

    #[test]
    fn due_times_round_up_without_accumulating() {
        // 3 Mb/s: 10528 bits = 3.509333... ms.
        let p = Pacer::new(PacerConfig::new(3_000_000), 0);
        assert_eq!(p.due(1), 3_509_334);
        assert_eq!(p.due(3), 10_528_000);
        assert_eq!(p.due(3_000_000), 10_528_000_000_000);
    }

    #[test]
    fn a_long_stall_re_anchors_instead_of_bursting() {
        let mut p = Pacer::new(PacerConfig::new(10_528_000), 0);
        assert_eq!(p.poll_release(0), 1);
        // 2 s late: one datagram now, the next one interval later.
        assert_eq!(p.poll_release(2_001_000_000), 1);
        assert_eq!(p.stats().stalls, 1);
        assert_eq!(p.stats().skipped_ns, 2_000_000_000);
        assert_eq!(p.poll_timeout(), 2_002_000_000);
        assert_eq!(p.poll_release(2_002_000_000), 1);
        // 50 ms late is within max_behind: caught up in one burst.
        assert_eq!(p.poll_release(2_053_000_000), 51);
    }
}
