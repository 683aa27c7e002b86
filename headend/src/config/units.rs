//! Unit newtypes and unit-string parsers: [`Bitrate`] (`"6M"`) and durations (`"30ms"`,
//! `"1h30m"`). Both parse exactly (no floating point), so `"2.5M"` is 2 500 000 bit/s.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A bit rate in bits per second.
///
/// Parsed from `"6M"`, `"6m"`, `"6000k"`, `"2.5M"`, `"6000000"`, `"6 Mbit/s"` or a bare TOML
/// integer. The `k`/`M`/`G` prefixes are decimal (10³, 10⁶, 10⁹) and case-insensitive (`m`
/// means mega, never milli); an optional `bit/s` or `bps` suffix is accepted. `Display`
/// uses the largest exact prefix: `6 Mbit/s`, `2500 kbit/s`, `6000001 bit/s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Bitrate(u64);

impl Bitrate {
    /// A bit rate of `bps` bits per second.
    pub(crate) const fn from_bps(bps: u64) -> Self {
        Self(bps)
    }

    /// Bits per second.
    pub(crate) const fn bps(self) -> u64 {
        self.0
    }
}

impl FromStr for Bitrate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid bitrate `{}`: {why}", text.escape_debug());
        let s = text.trim();
        if s.starts_with('-') {
            return Err(invalid("must not be negative"));
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
            _ => return Err(invalid(
                "unknown unit, expected a number with an optional k, M or G suffix, e.g. \"6M\"",
            )),
        };
        let bps = scale_decimal(number, scale).map_err(|err| {
            invalid(match err {
                DecimalError::Malformed => {
                    "expected a number with an optional k, M or G suffix, e.g. \"6M\""
                }
                DecimalError::Inexact => "not a whole number of bit/s",
                DecimalError::Overflow => "too large",
            })
        })?;
        u64::try_from(bps)
            .map(Self)
            .map_err(|_| invalid("too large"))
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

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BitrateVisitor)
    }
}

/// Parses a duration: one or more `<number><unit>` parts, largest unit first, each unit at
/// most once. Units: `h`, `m` (minutes), `s`, `ms`, `us` (or `µs`), `ns`. Numbers may have a
/// fraction (`"1.5s"`); whitespace between parts is allowed.
///
/// Examples: `"30ms"`, `"10s"`, `"10m"`, `"1h"`, `"1h30m"`, `"500us"`. A bare number is an
/// error because its unit would be a guess.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: String| format!("invalid duration `{}`: {why}", text.escape_debug());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid(
            "empty, expected e.g. \"30ms\", \"10s\" or \"1h30m\"".into(),
        ));
    }
    if rest.starts_with('-') {
        return Err(invalid("must not be negative".into()));
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
                "" => format!(
                    "unexpected `{}`",
                    rest.chars().next().unwrap_or(' ').escape_debug()
                ),
                _ => format!("expected a number before `{unit}`"),
            }));
        }
        let (rank, scale_ns): (u8, u128) = match unit {
            "h" => (0, 3_600_000_000_000),
            "m" => (1, 60_000_000_000),
            "s" => (2, 1_000_000_000),
            "ms" => (3, 1_000_000),
            "us" | "µs" | "μs" => (4, 1_000),
            "ns" => (5, 1),
            "" => {
                return Err(invalid(format!(
                    "missing unit after `{number}`, expected one of h, m, s, ms, us, ns"
                )))
            }
            _ => {
                return Err(invalid(format!(
                    "unknown unit `{}`, expected one of h, m, s, ms, us, ns",
                    unit.escape_debug()
                )))
            }
        };
        if previous_rank.is_some_and(|previous| rank <= previous) {
            return Err(invalid(
                "units must go from largest to smallest, each at most once".into(),
            ));
        }
        previous_rank = Some(rank);
        let part = scale_decimal(number, scale_ns).map_err(|err| {
            invalid(match err {
                DecimalError::Malformed => format!("malformed number `{number}`"),
                DecimalError::Inexact => "finer than 1ns".into(),
                DecimalError::Overflow => "too large".into(),
            })
        })?;
        total_ns = total_ns
            .checked_add(part)
            .ok_or_else(|| invalid("too large".into()))?;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| invalid("too large".into()))?;
    // The remainder of a division by 10⁹ always fits in u32.
    let nanos = u32::try_from(total_ns % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// A [`Duration`] deserialized from a unit string such as `"30ms"` (see [`parse_duration`]);
/// only the raw layer uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct BitrateVisitor;

impl Visitor<'_> for BitrateVisitor {
    type Value = Bitrate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bitrate such as \"6M\", \"6000k\" or an integer in bit/s")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Bitrate, E> {
        Ok(Bitrate(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Bitrate, E> {
        u64::try_from(value)
            .map(Bitrate)
            .map_err(|_| E::custom(format!("invalid bitrate {value}: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Bitrate, E> {
        // Only whole numbers up to 10¹⁸ (exact in f64 as integers), e.g. `muxrate = 6e6`.
        if value.is_finite() && (0.0..=1e18).contains(&value) && value.fract() == 0.0 {
            Ok(Bitrate(value as u64))
        } else {
            Err(E::custom(format!(
                "invalid bitrate {value}: expected a whole, non-negative number of bit/s"
            )))
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Bitrate, E> {
        value.parse().map_err(E::custom)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string with a unit, such as \"30ms\"")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<HumanDuration, E> {
        parse_duration(value).map(HumanDuration).map_err(E::custom)
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
        assert_eq!(bps("6000kbps"), 6_000_000);
        assert_eq!(bps("1.000k"), 1_000);
        assert_eq!(bps("0"), 0);
    }

    #[test]
    fn bitrate_rejects_bad_values() {
        for bad in [
            "",
            "M",
            "6X",
            "6Mb",
            "6MB",
            "-6M",
            "6.M",
            ".5M",
            "1.2.3M",
            "2.5",
            "1.0001k",
            "6 M M",
            "99999999999999999999999G",
            "18446744073709551616",
            "six",
        ] {
            let err = bad.parse::<Bitrate>().expect_err(bad);
            assert!(err.starts_with("invalid bitrate `"), "{bad}: {err}");
        }
        assert!("6X"
            .parse::<Bitrate>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("-6M".parse::<Bitrate>().unwrap_err().contains("negative"));
        assert!("1.0001k"
            .parse::<Bitrate>()
            .unwrap_err()
            .contains("whole number"));
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
    fn bitrate_deserializes_from_toml_values() {
        #[derive(Deserialize)]
        struct Doc {
            rate: Bitrate,
        }
        let rate = |text: &str| toml::from_str::<Doc>(text).map(|d| d.rate.bps());
        assert_eq!(rate("rate = 6000000").ok(), Some(6_000_000));
        assert_eq!(rate("rate = \"6M\"").ok(), Some(6_000_000));
        assert_eq!(rate("rate = 6e6").ok(), Some(6_000_000));
        assert!(rate("rate = -1").is_err());
        assert!(rate("rate = 2.5").is_err());
        assert!(rate("rate = true").is_err());
        assert!(rate("rate = \"6X\"").is_err());
    }

    #[test]
    fn duration_parses_units_and_combinations() {
        let ms = |text: &str| parse_duration(text).map(|d| d.as_nanos());
        assert_eq!(ms("30ms"), Ok(30_000_000));
        assert_eq!(ms("10s"), Ok(10_000_000_000));
        assert_eq!(ms("10m"), Ok(600_000_000_000));
        assert_eq!(ms("1h"), Ok(3_600_000_000_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(ms("1h 30m 5s"), Ok(5_405_000_000_000));
        assert_eq!(ms("500us"), Ok(500_000));
        assert_eq!(ms("500µs"), Ok(500_000));
        assert_eq!(ms("7ns"), Ok(7));
        assert_eq!(ms("1.5s"), Ok(1_500_000_000));
        assert_eq!(ms(" 30 ms "), Ok(30_000_000));
        assert_eq!(ms("0s"), Ok(0));
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
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.starts_with("invalid duration `"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn human_duration_requires_a_string() {
        #[derive(Deserialize)]
        struct Doc {
            every: HumanDuration,
        }
        let every = |text: &str| toml::from_str::<Doc>(text).map(|d| d.every.0);
        assert_eq!(
            every("every = \"30ms\"").ok(),
            Some(Duration::from_millis(30))
        );
        let err = every("every = 30")
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(err.contains("a duration string with a unit"), "{err}");
    }
}
