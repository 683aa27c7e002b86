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
    /// The rate's offset from nominal, parts per billion ([`Pacer::set_rate_ppb`]).
    ppb: i64,
    /// How much later (ns; negative: earlier) than at the nominal rate the segments before
    /// `base` ended, from steering.
    steered_ns: i64,
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
            ppb: 0,
            steered_ns: 0,
            stats: PacerStats::default(),
        }
    }

    /// Runs the stream `ppb` parts per billion faster than nominal (negative: slower) from
    /// the next datagram on: to lock the output clock (which the PCR carries) to a live
    /// source's ([`Steer`]). Datagrams already due keep their times.
    pub fn set_rate_ppb(&mut self, ppb: i64) {
        let ppb = ppb.clamp(-1_000_000, 1_000_000);
        if ppb == self.ppb {
            return;
        }
        self.steered_ns += self.segment_drift_ns();
        self.origin_ns = self.due(self.next);
        self.base = self.next;
        self.ppb = ppb;
    }

    /// How much later (ns; negative: earlier) the next datagram leaves than it would have at
    /// the nominal rate from the start: the time skipped in stalls, plus or minus what
    /// steering ([`Pacer::set_rate_ppb`]) has moved it. What maps the output clock to the wall
    /// clock.
    pub fn offset_ns(&self) -> i64 {
        self.stats.skipped_ns as i64 + self.steered_ns + self.segment_drift_ns()
    }

    /// The steering's drift over the current segment, up to the next datagram.
    fn segment_drift_ns(&self) -> i64 {
        let n =
            u128::from(self.next.saturating_sub(self.base)) * u128::from(self.cfg.datagram_bits());
        let nominal = n * 1_000_000_000 / u128::from(self.cfg.muxrate_bps);
        let steered = (self.due(self.next) - self.origin_ns) as u128;
        steered as i64 - nominal as i64
    }

    /// The rate's offset from nominal, parts per billion.
    pub fn rate_ppb(&self) -> i64 {
        self.ppb
    }

    /// Bits per second times 10^9, at the steered rate.
    fn rate_x1e9(&self) -> u128 {
        u128::from(self.cfg.muxrate_bps) * (1_000_000_000i128 + i128::from(self.ppb)) as u128
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
        let ns = (n * 1_000_000_000 * 1_000_000_000).div_ceil(self.rate_x1e9());
        self.origin_ns + ns as u64
    }

    /// When the next datagram is due: sleep until then.
    pub fn poll_timeout(&self) -> u64 {
        self.due(self.next)
    }

    /// How many datagrams to send at `now_ns` (usually 0 or 1); they count as released.
    pub fn poll_release(&mut self, now_ns: u64) -> u64 {
        self.poll_release_ahead(now_ns, 0)
    }

    /// [`Pacer::poll_release`], and also what falls due up to `ahead_ns` after `now_ns`
    /// (sent early, so one wake-up does more). Lateness (the stats, the stall limit) counts
    /// against `now_ns`: a datagram released early is not late.
    pub fn poll_release_ahead(&mut self, now_ns: u64, ahead_ns: u64) -> u64 {
        let until = now_ns.saturating_add(ahead_ns);
        let first_due = self.due(self.next);
        if until < first_due {
            return 0;
        }
        let late = now_ns.saturating_sub(first_due);
        if late > self.cfg.max_behind_ns {
            // Too far behind to catch up without a flood: send one now and go on from here.
            self.steered_ns += self.segment_drift_ns();
            self.stats.stalls += 1;
            self.stats.skipped_ns += late;
            self.origin_ns = now_ns;
            self.base = self.next;
            self.next += 1;
            self.stats.datagrams += 1;
            return 1;
        }
        self.stats.max_late_ns = self.stats.max_late_ns.max(late);
        // Datagrams j with due(j) <= until: j - base <= (until - origin) * rate / bits.
        let elapsed = u128::from(until - self.origin_ns);
        let last = self.base
            + (elapsed * self.rate_x1e9()
                / (u128::from(self.cfg.datagram_bits()) * 1_000_000_000 * 1_000_000_000))
                as u64;
        let n = (last + 1).saturating_sub(self.next);
        self.next += n;
        self.stats.datagrams += n;
        n
    }
}

/// Locks a relay's output clock to its live source: from how far ahead of sending the newest
/// live data is (its lead), the pacer's rate offset, so a source up to ±30 ppm off nominal
/// neither fills the buffer nor drains it, for days.
///
/// Sans-IO: [`Steer::update`] takes the time and the measured lead (`None` while nothing live
/// is on air: the rate returns to nominal) and gives the rate in parts per billion. A PI loop
/// on the lead error, the lead being the least measured over the last 10 s (what matters
/// against an underflow; a source's bursts, an I-frame's packets, raise the lead between
/// them), whose output is clamped to ±30 ppm and moves at most 0.075 Hz/s on the 27 MHz clock
/// (ISO/IEC 13818-1 §2.4.2.1: 2.78 ppb/s), so the output PCR stays within the standard's
/// frequency and slew limits. A 30 ppm step takes the loop about three hours to follow at
/// that slew; the lead strays meanwhile by about 0.17 s, which the relay's lead absorbs (a
/// source at the very limit keeps it there: the output cannot run faster to win it back).
/// `playout/tests/drift.rs` relays a source 30 ppm fast and one 30 ppm slow for a day.
#[derive(Clone, Debug)]
pub struct Steer {
    target_s: f64,
    ppb: f64,
    integral: f64,
    /// Leads measured over the last [`Steer::WINDOW_S`], (time, lead), leads increasing: the
    /// first is the least.
    window: std::collections::VecDeque<(f64, f64)>,
    last_s: Option<f64>,
}

impl Steer {
    /// Output clock frequency limit, ppb (±30 ppm).
    pub const MAX_PPB: f64 = 30_000.0;
    /// Slew limit, ppb per second (0.075 Hz/s at 27 MHz).
    pub const SLEW_PPB_PER_S: f64 = 0.075 / 27.0e6 * 1e9;
    /// Proportional gain, ppb per second of lead error.
    const KP: f64 = 667_000.0;
    /// Integral gain, ppb per second² of lead error.
    const KI: f64 = 111.0;
    /// The lead steered is the least measured over this long (s).
    const WINDOW_S: f64 = 10.0;

    /// A loop holding the lead at `target_s` seconds.
    pub fn new(target_s: f64) -> Steer {
        Steer {
            target_s,
            ppb: 0.0,
            integral: 0.0,
            window: std::collections::VecDeque::new(),
            last_s: None,
        }
    }

    /// The rate offset now (ppb).
    pub fn ppb(&self) -> i64 {
        self.ppb.round() as i64
    }

    /// At `now_s` (seconds, monotonic), with the lead measured now (`None`: nothing live on
    /// air): the rate offset to run at (ppb).
    pub fn update(&mut self, now_s: f64, lead_s: Option<f64>) -> i64 {
        let dt = self.last_s.map_or(0.0, |t| (now_s - t).max(0.0));
        self.last_s = Some(now_s);
        let want = match lead_s {
            Some(lead) => {
                while self.window.back().is_some_and(|&(_, l)| l >= lead) {
                    self.window.pop_back();
                }
                self.window.push_back((now_s, lead));
                while self
                    .window
                    .front()
                    .is_some_and(|&(t, _)| t < now_s - Self::WINDOW_S)
                {
                    self.window.pop_front();
                }
                let least = self.window.front().map_or(lead, |&(_, l)| l);
                let e = least - self.target_s;
                // The integral stops growing against the clamp (anti-windup).
                let out = Self::KP * e + Self::KI * (self.integral + e * dt);
                if out.abs() < Self::MAX_PPB || out.signum() != e.signum() {
                    self.integral += e * dt;
                }
                (Self::KP * e + Self::KI * self.integral).clamp(-Self::MAX_PPB, Self::MAX_PPB)
            }
            None => {
                self.window.clear();
                self.integral = 0.0;
                0.0
            }
        };
        let step = Self::SLEW_PPB_PER_S * dt;
        self.ppb += (want - self.ppb).clamp(-step, step);
        self.ppb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of a relay whose source is `src_ppb` off, its lead measured each second with
    /// ±20 ms of jitter: the lead stays within `within` s of its target, the rate within ±30
    /// ppm, and it never moves faster than the slew limit. Returns the rate at the end.
    fn day(src_ppb: f64, within: f64) -> f64 {
        let target = 0.3;
        let mut steer = Steer::new(target);
        let mut lead = target;
        let mut x = 0x2545_F491u32;
        let mut last = 0.0;
        for t in 0..86_400 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let jitter = (f64::from(x % 41) - 20.0) / 1000.0;
            let ppb = steer.update(f64::from(t), Some(lead + jitter)) as f64;
            assert!(ppb.abs() <= Steer::MAX_PPB, "{ppb} ppb at {t} s");
            assert!(
                (ppb - last).abs() <= Steer::SLEW_PPB_PER_S + 1.0,
                "slew {} ppb/s at {t} s",
                ppb - last
            );
            last = ppb;
            // The source adds its rate, the output takes away its own.
            lead += (src_ppb - ppb) * 1e-9;
            assert!(
                (lead - target).abs() <= within,
                "lead {lead:.3} s at {t} s (source {src_ppb} ppb)"
            );
        }
        last
    }

    #[test]
    fn a_steered_rate_moves_the_offset() {
        // One datagram per ms nominal; 1000 ppm faster for 1000 datagrams: 1000 × (1 − 1/1.001)
        // ms earlier, 0.999 ms.
        let mut p = Pacer::new(PacerConfig::new(10_528_000), 0);
        assert_eq!(p.poll_release(0), 1);
        p.set_rate_ppb(1_000_000);
        let mut t = 0;
        while p.released() < 1001 {
            t = p.poll_timeout();
            p.poll_release(t);
        }
        assert_eq!(p.offset_ns(), -999_000);
        p.set_rate_ppb(0);
        assert_eq!(p.offset_ns(), -999_000);
        assert!(t < 1_000_000_000);
    }

    #[test]
    fn a_drifting_source_is_followed_for_a_day() {
        for src in [30_000.0, -30_000.0, 12_345.0, 0.0] {
            let end = day(src, 0.25);
            assert!((end - src).abs() < 1_000.0, "{src}: ends at {end} ppb");
        }
    }

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
    fn released_ahead_is_not_late() {
        // One datagram per ms, from 1 ms.
        let mut p = Pacer::new(PacerConfig::new(10_528_000), 1_000_000);
        assert_eq!(p.poll_release_ahead(0, 999_999), 0);
        // At 0.5 ms with 20 ms ahead: those due at 1..=20 ms.
        assert_eq!(p.poll_release_ahead(500_000, 20_000_000), 20);
        assert_eq!(p.poll_timeout(), 21_000_000);
        assert_eq!(p.stats().max_late_ns, 0);
        // 30 ms after the next (21 ms) was due, 20 ms ahead: late by 30 ms, 21..=71 ms out.
        assert_eq!(p.poll_release_ahead(51_000_000, 20_000_000), 51);
        assert_eq!(p.stats().max_late_ns, 30_000_000);
        assert_eq!(p.stats().stalls, 0);
        // The stall limit (100 ms) counts from now, not from now + ahead: 93 ms late, 72..=185.
        assert_eq!(p.poll_release_ahead(165_000_000, 20_000_000), 114);
        assert_eq!(p.stats().stalls, 0);
        assert_eq!(p.stats().max_late_ns, 93_000_000);
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
