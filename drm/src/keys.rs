//! Key rotation: even/odd control words and the crypto-period schedule of one scrambled
//! service, driven by the output clock (27 MHz ticks) the caller passes in.
//!
//! Crypto-period `n` (numbered from 0) is scrambled with parity even for even `n` and odd for
//! odd `n`. Its control word is asked for [`Rotation::lead`] before it starts, so the ECM
//! carrying it (with the current word, as ECMs carry both) is on air before the first packet
//! scrambled with it; at its start every scrambled PID of the service flips parity at once,
//! on a packet boundary (the caller applies one parity to each batch it emits).
//!
//! ```text
//!   period n-1 (odd)          | period n (even)           | period n+1 (odd)
//!   ----------------------------------------------------------------------------
//!            ^ NextWord{n}     ^ Flip{n}      ^ NextWord{n+1}   ^ Flip{n+1}
//!            |<--- lead ----->|
//! ```

use playout::time::Ticks27M;

use crate::cipher::Parity;

/// Where a service's control words come from (a key file, the OS random generator, a CAS).
/// Implementations live with their I/O (in `headend`); the rotation only asks.
pub trait KeySource {
    /// The control word of crypto-period `cp`.
    fn control_word(&mut self, cp: u16) -> Result<crate::cipher::ControlWord, KeyError>;
}

/// A key source failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The source cannot give a word now (a CAS not answering, a file unreadable); the
    /// reason never contains key material.
    #[error("key source unavailable: {0}")]
    Unavailable(String),
}

/// What a rotation wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationEvent {
    /// Get the control word of crypto-period `cp` (and put its ECM on air): it starts at
    /// `starts_at`, with `parity`.
    NextWord {
        /// The crypto-period (mod 2^16, as SimulCrypt's CP_number).
        cp: u16,
        /// Its parity.
        parity: Parity,
        /// When it starts (output clock).
        starts_at: Ticks27M,
    },
    /// Crypto-period `cp` starts: scramble with `parity` from now on.
    Flip {
        /// The crypto-period.
        cp: u16,
        /// Its parity.
        parity: Parity,
    },
}

/// The crypto-period schedule of one service.
#[derive(Clone, Debug)]
pub struct Rotation {
    period: Ticks27M,
    lead: Ticks27M,
    origin: Ticks27M,
    /// The period on air (index from `origin`).
    current: u64,
    /// The next period whose word has been asked for.
    asked: u64,
}

/// The parity of crypto-period `n`.
pub fn parity_of(n: u64) -> Parity {
    if n % 2 == 0 {
        Parity::Even
    } else {
        Parity::Odd
    }
}

impl Rotation {
    /// A schedule whose period 0 starts at `origin`, each period `period` long, each word asked
    /// for `lead` before its period (clamped to half a period). Period 0's word is asked for at
    /// once (the first [`Rotation::poll`]).
    pub fn new(origin: Ticks27M, period: Ticks27M, lead: Ticks27M) -> Rotation {
        let period = period.max(1);
        Rotation {
            period,
            lead: lead.min(period / 2),
            origin,
            current: 0,
            asked: 0,
        }
    }

    /// How long before its period a word is asked for.
    pub fn lead(&self) -> Ticks27M {
        self.lead
    }

    /// The crypto-period length.
    pub fn period(&self) -> Ticks27M {
        self.period
    }

    fn start_of(&self, n: u64) -> Ticks27M {
        self.origin.saturating_add(n.saturating_mul(self.period))
    }

    /// The period on air and its parity.
    pub fn on_air(&self) -> (u16, Parity) {
        (self.current as u16, parity_of(self.current))
    }

    /// The next thing to do at `now`, if any: first the word of the next period (when it is
    /// `lead` away), then the flip (when its time has come). Call until `None`.
    pub fn poll(&mut self, now: Ticks27M) -> Option<RotationEvent> {
        // Period 0 and each next one: its word, `lead` ahead.
        let next = if self.asked == 0 { 0 } else { self.asked };
        let ask_at = self.start_of(next).saturating_sub(self.lead);
        if next <= self.current + 1 && now >= ask_at && (self.asked == 0 || next > self.current) {
            self.asked = next + 1;
            return Some(RotationEvent::NextWord {
                cp: next as u16,
                parity: parity_of(next),
                starts_at: self.start_of(next),
            });
        }
        // The flip, once its word has been asked for.
        let following = self.current + 1;
        if self.asked > following && now >= self.start_of(following) {
            self.current = following;
            return Some(RotationEvent::Flip {
                cp: following as u16,
                parity: parity_of(following),
            });
        }
        None
    }

    /// The flip just returned did not happen (its word or ECM is missing): the period on air
    /// goes on, and the same crypto-period is tried again one period later (its word asked for
    /// again `lead` before). Parity stays tied to the CP_number, so receivers are never shown
    /// a word under the wrong parity.
    pub fn defer(&mut self) {
        if self.current == 0 {
            return;
        }
        self.current -= 1;
        self.origin = self.origin.saturating_add(self.period);
        self.asked = self.current + 1;
    }

    /// When [`Rotation::poll`] next has something.
    pub fn poll_timeout(&self) -> Ticks27M {
        let following = self.current + 1;
        if self.asked <= following {
            self.start_of(following).saturating_sub(self.lead)
        } else {
            self.start_of(following)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Ticks27M = 27_000_000;

    #[test]
    fn words_come_a_lead_before_their_flip() {
        let mut r = Rotation::new(100 * S, 10 * S, 2 * S);
        assert_eq!(
            r.poll(100 * S),
            Some(RotationEvent::NextWord {
                cp: 0,
                parity: Parity::Even,
                starts_at: 100 * S
            })
        );
        assert_eq!(r.poll(100 * S), None);
        assert_eq!(r.poll_timeout(), 108 * S);
        assert_eq!(r.poll(108 * S - 1), None);
        assert_eq!(
            r.poll(108 * S),
            Some(RotationEvent::NextWord {
                cp: 1,
                parity: Parity::Odd,
                starts_at: 110 * S
            })
        );
        assert_eq!(r.poll(109 * S), None);
        assert_eq!(r.poll_timeout(), 110 * S);
        assert_eq!(
            r.poll(110 * S),
            Some(RotationEvent::Flip {
                cp: 1,
                parity: Parity::Odd
            })
        );
        assert_eq!(r.on_air(), (1, Parity::Odd));
        // Late by several periods: each step in order, never a flip before its word.
        let mut events = Vec::new();
        while let Some(e) = r.poll(135 * S) {
            events.push(e);
        }
        let kinds: Vec<(bool, u16)> = events
            .iter()
            .map(|e| match e {
                RotationEvent::NextWord { cp, .. } => (true, *cp),
                RotationEvent::Flip { cp, .. } => (false, *cp),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![(true, 2), (false, 2), (true, 3), (false, 3)],
            "{events:?}"
        );
    }

    #[test]
    fn a_deferred_flip_is_tried_again_a_period_later() {
        let mut r = Rotation::new(0, 10 * S, 2 * S);
        assert!(matches!(
            r.poll(0),
            Some(RotationEvent::NextWord { cp: 0, .. })
        ));
        assert!(matches!(
            r.poll(8 * S),
            Some(RotationEvent::NextWord { cp: 1, .. })
        ));
        assert!(matches!(
            r.poll(10 * S),
            Some(RotationEvent::Flip { cp: 1, .. })
        ));
        r.defer();
        assert_eq!(r.on_air(), (0, Parity::Even));
        assert_eq!(r.poll(10 * S), None);
        assert_eq!(r.poll_timeout(), 18 * S);
        assert!(
            matches!(r.poll(18 * S), Some(RotationEvent::NextWord { cp: 1, starts_at, .. }) if starts_at == 20 * S)
        );
        assert!(matches!(
            r.poll(20 * S),
            Some(RotationEvent::Flip {
                cp: 1,
                parity: Parity::Odd
            })
        ));
    }

    #[test]
    fn the_lead_is_at_most_half_a_period() {
        let r = Rotation::new(0, 2 * S, 5 * S);
        assert_eq!(r.lead(), S);
    }
}
