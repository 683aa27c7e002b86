//! Stream time: 33-bit PTS/DTS at 90 kHz and 42-bit PCR at 27 MHz (ISO/IEC 13818-1 §2.4.2.2,
//! §2.4.3.7), with wrap-aware arithmetic.
//!
//! Inside the core, output time runs on an *unwrapped* 27 MHz counter ([`Ticks27M`], a plain
//! `u64` that never wraps in practice: 21 000 years). Values are reduced modulo 2^33 (PTS) or
//! 2^33 × 300 (PCR) only when written into packets.

/// PTS/DTS modulus: 2^33 ticks of 90 kHz (about 26.5 hours).
pub const PTS_MODULUS: u64 = 1 << 33;
/// PCR modulus in 27 MHz ticks: 2^33 × 300.
pub const PCR_MODULUS: u64 = PTS_MODULUS * 300;
/// 27 MHz system clock ticks per second.
pub const SYSTEM_CLOCK_HZ: u64 = 27_000_000;
/// 90 kHz ticks per second.
pub const PTS_HZ: u64 = 90_000;

/// Unwrapped output time in 27 MHz ticks.
pub type Ticks27M = u64;

/// A 33-bit presentation or decoding time stamp in 90 kHz ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pts(u64);

impl Pts {
    /// Wraps `raw` into 33 bits.
    pub const fn new(raw: u64) -> Pts {
        Pts(raw & (PTS_MODULUS - 1))
    }
    /// The 33-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Signed distance `self - earlier` in 90 kHz ticks, taking the shorter way round the
    /// 33-bit circle (valid while the two are less than 2^32 ticks, about 13 h, apart).
    pub const fn since(self, earlier: Pts) -> i64 {
        ((self.0.wrapping_sub(earlier.0) << 31) as i64) >> 31
    }
    /// `self + delta`, wrapping at 2^33.
    pub const fn add(self, delta: i64) -> Pts {
        Pts::new(self.0.wrapping_add(delta as u64))
    }
}

/// A program clock reference in 27 MHz ticks, `base × 300 + extension`, modulo 2^33 × 300.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pcr(u64);

impl Pcr {
    /// Wraps `ticks` into the PCR range.
    pub const fn new(ticks: u64) -> Pcr {
        Pcr(ticks % PCR_MODULUS)
    }
    /// From the 33-bit base (90 kHz) and 9-bit extension (0..300).
    pub const fn from_parts(base: u64, ext: u16) -> Pcr {
        Pcr::new((base & (PTS_MODULUS - 1)) * 300 + ext as u64)
    }
    /// 27 MHz ticks, below [`PCR_MODULUS`].
    pub const fn ticks(self) -> u64 {
        self.0
    }
    /// The 33-bit base in 90 kHz ticks.
    pub const fn base(self) -> u64 {
        self.0 / 300
    }
    /// The 9-bit extension, 0..300.
    pub const fn ext(self) -> u16 {
        (self.0 % 300) as u16
    }
    /// Signed distance `self - earlier` in 27 MHz ticks, the shorter way round the circle.
    pub const fn since(self, earlier: Pcr) -> i64 {
        let d = (self.0 + PCR_MODULUS - earlier.0) % PCR_MODULUS;
        if d > PCR_MODULUS / 2 {
            d as i64 - PCR_MODULUS as i64
        } else {
            d as i64
        }
    }
}

/// Extends wrapped 33-bit timestamps onto an unwrapped timeline: each value is placed nearest
/// to the previous one, so a stream that wraps at 2^33 keeps increasing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    /// Unwraps `pts` next to the previous value (the first value is taken as it is).
    pub fn unwrap(&mut self, pts: Pts) -> i64 {
        let v = match self.last {
            None => pts.raw() as i64,
            Some(last) => last + Pts::new(last as u64).since(pts).wrapping_neg(),
        };
        self.last = Some(v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pts_since_across_wrap() {
        let late = Pts::new(5);
        let early = Pts::new(PTS_MODULUS - 10);
        assert_eq!(late.since(early), 15);
        assert_eq!(early.since(late), -15);
        assert_eq!(early.add(15), late);
    }

    #[test]
    fn pcr_parts() {
        let p = Pcr::from_parts(PTS_MODULUS - 1, 299);
        assert_eq!(p.ticks(), PCR_MODULUS - 1);
        assert_eq!(Pcr::new(p.ticks() + 1).ticks(), 0);
        assert_eq!(Pcr::new(3).since(p), 4);
    }

    #[test]
    fn unwrapper_follows_wrap() {
        let mut u = Unwrapper::default();
        assert_eq!(
            u.unwrap(Pts::new(PTS_MODULUS - 3000)),
            (PTS_MODULUS - 3000) as i64
        );
        assert_eq!(u.unwrap(Pts::new(600)), PTS_MODULUS as i64 + 600);
        assert_eq!(
            u.unwrap(Pts::new(PTS_MODULUS - 100)),
            (PTS_MODULUS - 100) as i64
        );
    }

    proptest! {
        #[test]
        fn pts_add_since_roundtrip(a in 0u64..PTS_MODULUS, d in -(1i64 << 31)..(1i64 << 31)) {
            let p = Pts::new(a);
            prop_assert_eq!(p.add(d).since(p), d);
        }

        #[test]
        fn pcr_since_roundtrip(a in 0u64..PCR_MODULUS, d in -(1i64 << 40)..(1i64 << 40)) {
            let p = Pcr::new(a);
            let q = Pcr::new((a as i128 + d as i128).rem_euclid(PCR_MODULUS as i128) as u64);
            prop_assert_eq!(q.since(p), d);
        }
    }
}
