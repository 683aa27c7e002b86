//! Unit strings in the config: [`Bitrate`] (`"6M"`) and durations (`"30ms"`, `"1h30m"`).
//!
//! The parsers are `playout::units`'s, shared with `hectl` and `headend render --duration`;
//! this module adds only the serde layer: a bitrate may also be a bare TOML integer (or a
//! whole float such as `6e6`), a duration must be a string with a unit.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

pub(crate) use playout::units::{parse_duration, Bitrate};

/// Deserializes a [`Bitrate`] from `"6M"`, `"6 Mbit/s"`, `6000000` or `6e6` (a foreign type,
/// so raw fields take it with `#[serde(deserialize_with = "...")]`).
pub(super) fn bitrate<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bitrate, D::Error> {
    deserializer.deserialize_any(BitrateVisitor)
}

/// A [`Duration`] deserialized from a unit string such as `"30ms"` (see [`parse_duration`]);
/// only the raw layer uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> serde::Deserialize<'de> for HumanDuration {
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
        Ok(Bitrate::from_bps(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Bitrate, E> {
        u64::try_from(value)
            .map(Bitrate::from_bps)
            .map_err(|_| E::custom(format!("invalid bitrate {value}: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Bitrate, E> {
        // Only whole numbers up to 10¹⁸ (exact in f64 as integers), e.g. `muxrate = 6e6`.
        if value.is_finite() && (0.0..=1e18).contains(&value) && value.fract() == 0.0 {
            Ok(Bitrate::from_bps(value as u64))
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn bitrate_deserializes_from_toml_values() {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(deserialize_with = "bitrate")]
            rate: Bitrate,
        }
        let rate = |text: &str| toml::from_str::<Doc>(text).map(|d| d.rate.bps());
        assert_eq!(rate("rate = 6000000").ok(), Some(6_000_000));
        assert_eq!(rate("rate = \"6M\"").ok(), Some(6_000_000));
        assert_eq!(rate("rate = \"6 Mbit/s\"").ok(), Some(6_000_000));
        assert_eq!(rate("rate = 6e6").ok(), Some(6_000_000));
        assert!(rate("rate = -1").is_err());
        assert!(rate("rate = 2.5").is_err());
        assert!(rate("rate = true").is_err());
        let err = rate("rate = \"6X\"")
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert_eq!(
            err,
            "invalid bitrate `6X`: unknown unit, expected a number with an optional k, M or G \
             suffix, e.g. \"6M\""
        );
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
        let err = every("every = \"30\"")
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert_eq!(
            err,
            "invalid duration `30`: missing unit after `30`, expected one of d, h, m, s, ms, us, ns"
        );
    }
}
