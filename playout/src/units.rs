//! Unit strings an operator writes: bit rates ([`Bitrate`], `"6M"`, `"6 Mbit/s"`) and
//! durations ([`parse_duration`], `"30ms"`, `"1h30m"`).
//!
//! Both parse exactly, with no floating point: `"2.5M"` is 2 500 000 bit/s and `"1.5s"` is
//! 1 500 000 000 ns, and a value that is not a whole number of the base unit is an error,
//! not a rounding. The prefixes are the SI's decimal ones (SI Brochure, 9th edition, §3:
//! k = 10³, M = 10⁶, G = 10⁹), never binary ones, as bit rates are quoted in ISO/IEC 13818-1
//! and ETSI TR 101 290.
//!
//! This is the one parser for these values: `headend`'s config (`muxrate = "6M"`,
//! `pcr_interval = "30ms"`), `headend render --duration` and `hectl check --muxrate` all use
//! it, so a value accepted in one place is accepted everywhere.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A bit rate in bits per second.
///
/// Parsed from `"6M"`, `"6m"`, `"6000k"`, `"2.5M"`, `"6000000"` or `"6 Mbit/s"`. The `k`/`M`/`G`
/// prefixes are decimal (10³, 10⁶, 10⁹) and case-insensitive (`m` means mega, never milli);
/// an optional `bit/s` or `bps` suffix is accepted, and whitespace around the number and
/// before the unit. `Display` uses the largest exact prefix, `6 Mbit/s`, `2500 kbit/s`,
/// `6000001 bit/s`, and parses back to the same value.
///
/// ```
/// use playout::units::Bitrate;
///
/// let rate: Bitrate = "2.5M".parse().unwrap();
/// assert_eq!(rate.bps(), 2_500_000);
/// assert_eq!(rate.to_string(), "2500 kbit/s");
/// assert_eq!("6 Mbit/s".parse(), Ok(Bitrate::from_bps(6_000_000)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bitrate(u64);

impl Bitrate {
    /// A bit rate of `bps` bits per second.
    pub const fn from_bps(bps: u64) -> Self {
        Self(bps)
    }

    /// Bits per second.
    pub const fn bps(self) -> u64 {
        self.0
    }
}

impl FromStr for Bitrate {
    type Err = BitrateError;

    fn from_str(text: &str) -> Result<Self, BitrateError> {
        let invalid = |kind| BitrateError {
            input: text.to_owned(),
            kind,
        };
        let s = text.trim();
        if s.starts_with('-') {
            return Err(invalid(BitrateErrorKind::Negative));
        }
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(number_end);
        let unit = unit.trim_start().to_ascii_lowercase();
        let prefix = ["bit/s", "bps"]
            .iter()
            .find_map(|suffix| unit.strip_suffix(suffix))
            .unwrap_or(&unit);
        let scale = match prefix {
            "" => 1,
            "k" => 1_000,
            "m" => 1_000_000,
            "g" => 1_000_000_000,
            _ => return Err(invalid(BitrateErrorKind::UnknownUnit)),
        };
        let bps = scale_decimal(number, scale).map_err(|err| {
            invalid(match err {
                DecimalError::Malformed => BitrateErrorKind::Malformed,
                DecimalError::Inexact => BitrateErrorKind::Inexact,
                DecimalError::Overflow => BitrateErrorKind::TooLarge,
            })
        })?;
        u64::try_from(bps)
            .map(Self)
            .map_err(|_| invalid(BitrateErrorKind::TooLarge))
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (scale, unit) in [
            (1_000_000_000, "Gbit/s"),
            (1_000_000, "Mbit/s"),
            (1_000, "kbit/s"),
        ] {
            if self.0 != 0 && self.0 % scale == 0 {
                return write!(f, "{} {unit}", self.0 / scale);
            }
        }
        write!(f, "{} bit/s", self.0)
    }
}

/// A bit rate string that [`Bitrate`] rejected: the text as given and why.
///
/// Displays as ``invalid bitrate `6X`: unknown unit, expected ...``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid bitrate `{}`: {kind}", input.escape_debug())]
pub struct BitrateError {
    input: String,
    kind: BitrateErrorKind,
}

impl BitrateError {
    /// The rejected text, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn kind(&self) -> BitrateErrorKind {
        self.kind
    }
}

/// Why a bit rate string was rejected (see [`BitrateError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BitrateErrorKind {
    /// It starts with `-`.
    Negative,
    /// The unit is not one of `k`, `M`, `G` (with an optional `bit/s` or `bps`).
    UnknownUnit,
    /// The number is missing or malformed (`".5M"`, `"6.M"`, `"1.2.3M"`).
    Malformed,
    /// It is not a whole number of bit/s (`"2.5"`, `"1.0001k"`).
    Inexact,
    /// It does not fit in 64 bits.
    TooLarge,
}

impl fmt::Display for BitrateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Negative => "must not be negative",
            Self::UnknownUnit => {
                "unknown unit, expected a number with an optional k, M or G suffix, e.g. \"6M\""
            }
            Self::Malformed => "expected a number with an optional k, M or G suffix, e.g. \"6M\"",
            Self::Inexact => "not a whole number of bit/s",
            Self::TooLarge => "too large",
        })
    }
}

/// Parses a duration: one or more `<number><unit>` parts, largest unit first, each unit at
/// most once. Units: `d` (days of 24 h), `h`, `m` (minutes), `s`, `ms`, `us` (or `µs`), `ns`. Numbers may have a
/// fraction (`"1.5s"`); whitespace between parts is allowed.
///
/// Examples: `"30ms"`, `"10s"`, `"10m"`, `"1h"`, `"1h30m"`, `"500us"`. A bare number is an
/// error because its unit would be a guess.
///
/// ```
/// use std::time::Duration;
/// use playout::units::parse_duration;
///
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("30").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = |kind| DurationError {
        input: text.to_owned(),
        kind,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid(DurationErrorKind::Empty));
    }
    if rest.starts_with('-') {
        return Err(invalid(DurationErrorKind::Negative));
    }
    let mut total_ns: u128 = 0;
    let mut previous_rank = None;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let tail = tail.trim_start();
        let unit_end = tail
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        if number.is_empty() {
            return Err(invalid(match unit {
                "" => DurationErrorKind::Unexpected(rest.chars().next().unwrap_or(' ')),
                _ => DurationErrorKind::NumberExpected(unit.to_owned()),
            }));
        }
        let (rank, scale_ns): (u8, u128) = match unit {
            "d" => (0, 86_400_000_000_000),
            "h" => (1, 3_600_000_000_000),
            "m" => (2, 60_000_000_000),
            "s" => (3, 1_000_000_000),
            "ms" => (4, 1_000_000),
            "us" | "µs" | "μs" => (5, 1_000),
            "ns" => (6, 1),
            "" => return Err(invalid(DurationErrorKind::MissingUnit(number.to_owned()))),
            _ => return Err(invalid(DurationErrorKind::UnknownUnit(unit.to_owned()))),
        };
        if previous_rank.is_some_and(|previous| rank <= previous) {
            return Err(invalid(DurationErrorKind::UnitOrder));
        }
        previous_rank = Some(rank);
        let part = scale_decimal(number, scale_ns).map_err(|err| {
            invalid(match err {
                DecimalError::Malformed => DurationErrorKind::Malformed(number.to_owned()),
                DecimalError::Inexact => DurationErrorKind::Inexact,
                DecimalError::Overflow => DurationErrorKind::TooLarge,
            })
        })?;
        total_ns = total_ns
            .checked_add(part)
            .ok_or_else(|| invalid(DurationErrorKind::TooLarge))?;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total_ns / 1_000_000_000)
        .map_err(|_| invalid(DurationErrorKind::TooLarge))?;
    // The remainder of a division by 10⁹ always fits in u32.
    let nanos = u32::try_from(total_ns % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// A duration string that [`parse_duration`] rejected: the text as given and why.
///
/// Displays as ``invalid duration `30`: missing unit after `30`, expected one of ...``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{}`: {kind}", input.escape_debug())]
pub struct DurationError {
    input: String,
    kind: DurationErrorKind,
}

impl DurationError {
    /// The rejected text, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn kind(&self) -> &DurationErrorKind {
        &self.kind
    }
}

/// Why a duration string was rejected (see [`DurationError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// It starts with `-`.
    Negative,
    /// A character that starts neither a number nor a unit, e.g. the `,` of `"5ms,"`.
    Unexpected(char),
    /// A unit with no number before it, e.g. `"ms"`.
    NumberExpected(String),
    /// A number with no unit after it, e.g. `"30"`.
    MissingUnit(String),
    /// A unit that is none of `h`, `m`, `s`, `ms`, `us`, `ns`.
    UnknownUnit(String),
    /// Units out of order or repeated, e.g. `"30m1h"` or `"1s1s"`.
    UnitOrder,
    /// A malformed number, e.g. the `1..5` of `"1..5s"`.
    Malformed(String),
    /// Not a whole number of nanoseconds, e.g. `"1.5ns"`.
    Inexact,
    /// Longer than [`Duration`] can hold.
    TooLarge,
}

impl fmt::Display for DurationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty, expected e.g. \"30ms\", \"10s\" or \"1h30m\""),
            Self::Negative => f.write_str("must not be negative"),
            Self::Unexpected(c) => write!(f, "unexpected `{}`", c.escape_debug()),
            Self::NumberExpected(unit) => write!(f, "expected a number before `{unit}`"),
            Self::MissingUnit(number) => write!(
                f,
                "missing unit after `{number}`, expected one of d, h, m, s, ms, us, ns"
            ),
            Self::UnknownUnit(unit) => write!(
                f,
                "unknown unit `{}`, expected one of d, h, m, s, ms, us, ns",
                unit.escape_debug()
            ),
            Self::UnitOrder => {
                f.write_str("units must go from largest to smallest, each at most once")
            }
            Self::Malformed(number) => write!(f, "malformed number `{number}`"),
            Self::Inexact => f.write_str("finer than 1ns"),
            Self::TooLarge => f.write_str("too large"),
        }
    }
}

enum DecimalError {
    Malformed,
    Inexact,
    Overflow,
}

/// `number × scale` for a plain decimal such as `"2.5"`, exactly.
fn scale_decimal(number: &str, scale: u128) -> Result<u128, DecimalError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || number.ends_with('.') {
        return Err(DecimalError::Malformed);
    }
    let digits = |s: &str| {
        s.bytes().try_fold(0u128, |acc, b| {
            acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
        })
    };
    let whole = digits(whole)
        .and_then(|w| w.checked_mul(scale))
        .ok_or(DecimalError::Overflow)?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        return Ok(whole);
    }
    // scale ≤ 3.6·10¹², so a fraction with more than 13 significant digits is never exact.
    let exponent = u32::try_from(fraction.len()).map_err(|_| DecimalError::Inexact)?;
    if exponent > 13 {
        return Err(DecimalError::Inexact);
    }
    let divisor = 10u128.pow(exponent);
    let scaled = digits(fraction)
        .and_then(|f| f.checked_mul(scale))
        .ok_or(DecimalError::Overflow)?;
    if scaled % divisor != 0 {
        return Err(DecimalError::Inexact);
    }
    whole
        .checked_add(scaled / divisor)
        .ok_or(DecimalError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bps(text: &str) -> u64 {
        text.parse::<Bitrate>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .bps()
    }

    #[test]
    fn bitrate_parses_suffixes_and_fractions() {
        assert_eq!(bps("6M"), 6_000_000);
        assert_eq!(bps("6m"), 6_000_000);
        assert_eq!(bps("6000k"), 6_000_000);
        assert_eq!(bps("6000K"), 6_000_000);
        assert_eq!(bps("6000000"), 6_000_000);
        assert_eq!(bps("2.5M"), 2_500_000);
        assert_eq!(bps("1G"), 1_000_000_000);
        assert_eq!(bps(" 6 Mbit/s "), 6_000_000);
        assert_eq!(bps("6 mbit/s"), 6_000_000);
        assert_eq!(bps("6000kbps"), 6_000_000);
        assert_eq!(bps("6000000 bit/s"), 6_000_000);
        assert_eq!(bps("1.000k"), 1_000);
        assert_eq!(bps("0"), 0);
        assert_eq!(bps("18446744073709551615"), u64::MAX);
    }

    #[test]
    fn bitrate_rejects_bad_values() {
        for (bad, kind) in [
            ("", BitrateErrorKind::Malformed),
            ("M", BitrateErrorKind::Malformed),
            ("6X", BitrateErrorKind::UnknownUnit),
            ("6Mb", BitrateErrorKind::UnknownUnit),
            ("6MB", BitrateErrorKind::UnknownUnit),
            ("6 M M", BitrateErrorKind::UnknownUnit),
            ("six", BitrateErrorKind::UnknownUnit),
            ("-6M", BitrateErrorKind::Negative),
            ("6.M", BitrateErrorKind::Malformed),
            (".5M", BitrateErrorKind::Malformed),
            ("1.2.3M", BitrateErrorKind::Malformed),
            ("2.5", BitrateErrorKind::Inexact),
            ("1.0001k", BitrateErrorKind::Inexact),
            ("99999999999999999999999G", BitrateErrorKind::TooLarge),
            ("18446744073709551616", BitrateErrorKind::TooLarge),
        ] {
            let err = bad.parse::<Bitrate>().expect_err(bad);
            assert_eq!(err.kind(), kind, "{bad}: {err}");
            assert_eq!(err.input(), bad);
            assert!(err.to_string().starts_with("invalid bitrate `"), "{err}");
        }
    }

    #[test]
    fn bitrate_error_messages() {
        let message = |text: &str| text.parse::<Bitrate>().unwrap_err().to_string();
        assert_eq!(
            message("6X"),
            "invalid bitrate `6X`: unknown unit, expected a number with an optional k, M or G \
             suffix, e.g. \"6M\""
        );
        assert_eq!(
            message("-6M"),
            "invalid bitrate `-6M`: must not be negative"
        );
        assert_eq!(
            message("1.0001k"),
            "invalid bitrate `1.0001k`: not a whole number of bit/s"
        );
        // The text is quoted with escapes, so a stray quote or newline stays visible.
        assert!(message("\"6\n").starts_with("invalid bitrate `\\\"6\\n`: unknown unit"));
    }

    #[test]
    fn bitrate_display_round_trips() {
        for (value, shown) in [
            (6_000_000, "6 Mbit/s"),
            (2_500_000, "2500 kbit/s"),
            (6_000_001, "6000001 bit/s"),
            (1_000_000_000, "1 Gbit/s"),
            (0, "0 bit/s"),
        ] {
            let rate = Bitrate::from_bps(value);
            assert_eq!(rate.to_string(), shown);
            assert_eq!(shown.parse::<Bitrate>(), Ok(rate));
        }
    }

    #[test]
    fn duration_parses_units_and_combinations() {
        let ns = |text: &str| parse_duration(text).map(|d| d.as_nanos());
        assert_eq!(ns("30ms"), Ok(30_000_000));
        assert_eq!(ns("10s"), Ok(10_000_000_000));
        assert_eq!(ns("10m"), Ok(600_000_000_000));
        assert_eq!(ns("1h"), Ok(3_600_000_000_000));
        assert_eq!(ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(ns("1h 30m 5s"), Ok(5_405_000_000_000));
        assert_eq!(ns("500us"), Ok(500_000));
        assert_eq!(ns("500µs"), Ok(500_000));
        assert_eq!(ns("7ns"), Ok(7));
        assert_eq!(ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(ns(" 30 ms "), Ok(30_000_000));
        assert_eq!(ns("0s"), Ok(0));
    }

    #[test]
    fn duration_rejects_bad_values() {
        for (bad, why) in [
            ("", "empty"),
            ("30", "missing unit"),
            ("ms", "expected a number"),
            ("30x", "unknown unit `x`"),
            ("30 mins", "unknown unit `mins`"),
            ("30m1h", "largest to smallest"),
            ("1s1s", "largest to smallest"),
            ("-5ms", "negative"),
            ("1.5ns", "finer than 1ns"),
            ("1..5s", "malformed"),
            ("5ms,", "unexpected `,`"),
            ("99999999999999999999999999999999999999h", "too large"),
            ("18446744073709551616s", "too large"),
        ] {
            let err = parse_duration(bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid duration `"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn duration_error_kinds() {
        let kind = |text: &str| parse_duration(text).unwrap_err().kind().clone();
        assert_eq!(kind(" "), DurationErrorKind::Empty);
        assert_eq!(kind("5ms,"), DurationErrorKind::Unexpected(','));
        assert_eq!(kind("ms"), DurationErrorKind::NumberExpected("ms".into()));
        assert_eq!(kind("30"), DurationErrorKind::MissingUnit("30".into()));
        assert_eq!(
            kind("30 mins"),
            DurationErrorKind::UnknownUnit("mins".into())
        );
        assert_eq!(kind("1..5s"), DurationErrorKind::Malformed("1..5".into()));
        assert_eq!(
            parse_duration("30").unwrap_err().to_string(),
            "invalid duration `30`: missing unit after `30`, expected one of d, h, m, s, ms, us, ns"
        );
    }
}
