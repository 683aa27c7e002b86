//! Output time and UTC: each station's output clock (27 MHz, advanced by the packets it
//! sends) starts at a UTC instant; the pacer's stalls push it back, and a relay's clock
//! steering moves it either way. The engine publishes the
//! map, the scheduler turns wall-clock times into output times with it, and the station
//! turns output times back into UTC (EIT start times, TDT, alert reports).

use playout::schedule::Utc;
use playout::time::{Ticks27M, SYSTEM_CLOCK_HZ};

/// How a station's output clock maps to UTC, published by the engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClockMap {
    /// UTC (ns) when output time `origin` left.
    pub(crate) utc_at_origin_ns: i64,
    /// The output clock at that instant (27 MHz).
    pub(crate) origin: Ticks27M,
    /// How much later than its nominal rate says the output runs since (ns): the time the
    /// pacer skipped in stalls, plus or minus what a relay's clock steering moved it.
    pub(crate) offset_ns: i64,
}

impl ClockMap {
    /// A clock whose output time `origin` leaves at UTC `utc_ns`, with no offset yet.
    pub(crate) fn starting(utc_ns: i64, origin: Ticks27M) -> ClockMap {
        ClockMap {
            utc_at_origin_ns: utc_ns,
            origin,
            offset_ns: 0,
        }
    }

    /// The output time at which UTC instant `u` leaves (presentation on a receiver locked to
    /// the output's PCR).
    pub(crate) fn output_time(&self, u: Utc) -> Ticks27M {
        let ns = u.0 - self.utc_at_origin_ns - self.offset_ns;
        let ticks = i128::from(ns.max(0)) * i128::from(SYSTEM_CLOCK_HZ) / 1_000_000_000;
        self.origin + ticks as u64
    }

    /// The UTC instant (ns) at which output time `t` leaves: the inverse of
    /// [`ClockMap::output_time`].
    pub(crate) fn utc_ns(&self, t: Ticks27M) -> i64 {
        let d = i128::from(t) - i128::from(self.origin);
        self.utc_at_origin_ns + (d * 1000 / 27) as i64 + self.offset_ns
    }
}
