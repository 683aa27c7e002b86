//! Which live input a channel relays: main → backup → … → its playlist (slate or filler).
//!
//! Sans-IO: [`Failover::update`] takes the inputs' verdicts and the time, and says when to
//! switch and why. An input on air that turns bad is left at once for the first good one in
//! priority order (or the playlist); an input better placed than the one on air is taken back
//! only once it has been good for `restore_after`; from the playlist the first input good
//! for a second ([`SETTLE_NS`]) is taken. An operator can switch to an input and lock it
//! there (it stays on air whatever its verdict), and unlock it.
//!
//! A channel whose schedule names live inputs relays them only during those items: between
//! them the failover is idle ([`Failover::idle`]: verdicts are followed, nothing switches);
//! a live item starts it on the item's own inputs in the item's order
//! ([`Failover::start_slot`]).

use playout::analyse::Health;

/// How long an input must have been good before the channel leaves its playlist for it.
pub(crate) const SETTLE_NS: u64 = 1_000_000_000;

/// What a channel is relaying.
pub(crate) type Source = Option<usize>;

/// A switch to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Switch {
    /// From this input (`None`: the playlist).
    pub(crate) from: Source,
    /// To this one.
    pub(crate) to: Source,
    /// Why, for the log and the event.
    pub(crate) cause: String,
}

/// The failover state of one channel.
#[derive(Debug)]
pub(crate) struct Failover {
    restore_after_ns: u64,
    /// Since when each input has been good (`None`: not good now).
    good_since: Vec<Option<u64>>,
    active: Source,
    locked: bool,
    /// A switch asked for by an operator, to report at the next update.
    manual: Option<Switch>,
    /// The inputs that may go on air, best first (all, in priority order, unless a live
    /// item says otherwise).
    order: Vec<usize>,
    /// Whether it switches at all (not between a schedule's live items).
    enabled: bool,
}

impl Failover {
    /// A channel with `inputs` inputs, on its playlist until one is good.
    pub(crate) fn new(inputs: usize, restore_after_ns: u64) -> Failover {
        Failover {
            restore_after_ns,
            good_since: vec![None; inputs],
            active: None,
            locked: false,
            manual: None,
            order: (0..inputs).collect(),
            enabled: true,
        }
    }

    /// Between a schedule's live items: nothing on air, nothing switches (verdicts are still
    /// followed, so an input's clean time counts on).
    pub(crate) fn idle(&mut self) {
        self.enabled = false;
        self.active = None;
        self.locked = false;
        self.manual = None;
    }

    /// A schedule's live item starts: `chain[0]` is on air; while it fails, the other inputs
    /// of `chain` in order, then the playlist. Empty: nothing changes.
    pub(crate) fn start_slot(&mut self, chain: Vec<usize>) {
        let Some(&first) = chain.first() else { return };
        self.enabled = true;
        self.locked = false;
        self.manual = None;
        self.active = Some(first);
        self.order = chain;
    }

    /// What is on air.
    pub(crate) fn active(&self) -> Source {
        self.active
    }

    /// What should be on air when every input is good: the first of the order (`None`:
    /// nothing, between a schedule's live items).
    pub(crate) fn preferred(&self) -> Source {
        self.enabled.then(|| self.order.first().copied()).flatten()
    }

    /// Whether an operator locked the channel to what is on air.
    pub(crate) fn locked(&self) -> bool {
        self.locked
    }

    /// An operator switches to `to` (and locks it there if `lock`); `false` when idle
    /// (between a schedule's live items the schedule decides).
    pub(crate) fn manual(&mut self, to: Source, lock: bool) -> bool {
        if !self.enabled {
            return false;
        }
        self.locked = lock;
        if to != self.active {
            self.manual = Some(Switch {
                from: self.active,
                to,
                cause: if lock {
                    "switched and locked by an operator".to_owned()
                } else {
                    "switched by an operator".to_owned()
                },
            });
            self.active = to;
        }
        true
    }

    /// An operator unlocks: the verdicts decide again.
    pub(crate) fn unlock(&mut self) {
        self.locked = false;
    }

    /// The verdicts at `now` (ns, monotonic): a switch to carry out, if any.
    pub(crate) fn update(&mut self, now: u64, health: &[Health]) -> Option<Switch> {
        for (since, h) in self.good_since.iter_mut().zip(health) {
            match (h.is_good(), *since) {
                (true, None) => *since = Some(now),
                (false, _) => *since = None,
                _ => {}
            }
        }
        if !self.enabled {
            return None;
        }
        if let Some(m) = self.manual.take() {
            return Some(m);
        }
        if self.locked {
            return None;
        }
        let good = |i: usize| self.good_since.get(i).copied().flatten();
        let first_good = self.order.iter().copied().find(|&i| good(i).is_some());
        // Good long enough to leave the playlist for: an input that drops out now and then
        // (a bursty sender) is not put back on air at every burst.
        let settled = self
            .order
            .iter()
            .copied()
            .find(|&i| good(i).is_some_and(|t| now.saturating_sub(t) >= SETTLE_NS));
        let to = match self.active {
            // On the playlist: the first input good for `SETTLE_NS`.
            None => settled?,
            // The input on air failed (one still starting, e.g. on a new PMT whose streams are
            // not all there yet, keeps its place).
            Some(a) if matches!(health.get(a), Some(Health::Bad(_)) | None) => {
                // The input on air failed: the first good one, else the playlist.
                let cause = match health.get(a) {
                    Some(Health::Bad(f)) => format!("input failed: {f}"),
                    _ => "input not ready".to_owned(),
                };
                let to = first_good;
                let s = Switch {
                    from: self.active,
                    to,
                    cause,
                };
                self.active = to;
                return Some(s);
            }
            Some(a) => {
                // A better-placed input, good for long enough (an operator may have put one
                // outside the order on air: every one in the order is better placed).
                let place = self.order.iter().position(|&i| i == a);
                let better = &self.order[..place.unwrap_or(self.order.len())];
                let back = better.iter().copied().find(|&i| {
                    good(i).is_some_and(|t| now.saturating_sub(t) >= self.restore_after_ns)
                })?;
                let s = Switch {
                    from: self.active,
                    to: Some(back),
                    cause: format!(
                        "restored: clean for {} s",
                        self.restore_after_ns / 1_000_000_000
                    ),
                };
                self.active = Some(back);
                return Some(s);
            }
        };
        let s = Switch {
            from: None,
            to: Some(to),
            cause: "input good".to_owned(),
        };
        self.active = Some(to);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use playout::analyse::Fault;

    const S: u64 = 1_000_000_000;

    fn bad() -> Health {
        Health::Bad(Fault::NoData { ms: 300 })
    }

    #[test]
    fn main_backup_slate_and_back() {
        let g = Health::Good;
        let mut f = Failover::new(2, 10 * S);
        // Starting: the playlist; the backup is good first and goes on air once it has been
        // for a second.
        assert_eq!(f.update(0, &[Health::Starting, Health::Starting]), None);
        assert_eq!(f.update(S / 2, &[Health::Starting, g.clone()]), None);
        let s = f.update(3 * S / 2, &[Health::Starting, g.clone()]).unwrap();
        assert_eq!((s.from, s.to), (None, Some(1)));
        // The main turns good: back to it only after 10 s.
        assert_eq!(f.update(S, &[g.clone(), g.clone()]), None);
        assert_eq!(f.update(10 * S, &[g.clone(), g.clone()]), None);
        let s = f.update(11 * S, &[g.clone(), g.clone()]).unwrap();
        assert_eq!((s.from, s.to), (Some(1), Some(0)));
        assert!(s.cause.starts_with("restored"), "{}", s.cause);
        // The main fails: the backup at once.
        let s = f.update(12 * S, &[bad(), g.clone()]).unwrap();
        assert_eq!((s.from, s.to), (Some(0), Some(1)));
        assert_eq!(s.cause, "input failed: no data for 300 ms");
        // Both fail: the playlist.
        let s = f.update(13 * S, &[bad(), bad()]).unwrap();
        assert_eq!((s.from, s.to), (Some(1), None));
        // A blip of the main resets its clean time.
        assert_eq!(f.update(S * 27 / 2, &[g.clone(), bad()]), None);
        assert!(f.update(14 * S + S / 2, &[g.clone(), bad()]).is_some());
        assert_eq!(f.active(), Some(0));
        assert!(f.update(15 * S, &[bad(), g.clone()]).is_some());
        assert_eq!(f.active(), Some(1));
        assert_eq!(f.update(16 * S, &[g.clone(), g.clone()]), None);
        assert_eq!(f.update(17 * S, &[bad(), g.clone()]), None);
        assert_eq!(f.update(18 * S, &[g.clone(), g.clone()]), None);
        assert_eq!(f.update(27 * S, &[g.clone(), g.clone()]), None);
        assert!(f.update(28 * S, &[g.clone(), g.clone()]).is_some());
    }

    #[test]
    fn a_live_item_relays_its_own_inputs_in_its_order() {
        let g = Health::Good;
        let mut f = Failover::new(3, 10 * S);
        f.idle();
        // Idle: inputs good for long, nothing goes on air, an operator cannot switch.
        assert_eq!(f.update(0, &[g.clone(), g.clone(), g.clone()]), None);
        assert_eq!(f.update(20 * S, &[g.clone(), g.clone(), g.clone()]), None);
        assert!(!f.manual(Some(0), false));
        assert_eq!(f.update(21 * S, &[g.clone(), g.clone(), g.clone()]), None);
        assert_eq!(f.active(), None);
        // An item on input 2 with input 1 as its backup: input 0 is never taken.
        f.start_slot(vec![2, 1]);
        assert_eq!(f.active(), Some(2));
        assert_eq!(f.update(22 * S, &[g.clone(), g.clone(), g.clone()]), None);
        let s = f.update(23 * S, &[g.clone(), g.clone(), bad()]).unwrap();
        assert_eq!((s.from, s.to), (Some(2), Some(1)));
        let s = f.update(24 * S, &[g.clone(), bad(), bad()]).unwrap();
        assert_eq!((s.from, s.to), (Some(1), None));
        // Input 2 back: taken from the playlist after a second, input 1 never preferred.
        assert_eq!(f.update(25 * S, &[g.clone(), bad(), g.clone()]), None);
        let s = f
            .update(26 * S, &[g.clone(), g.clone(), g.clone()])
            .unwrap();
        assert_eq!((s.from, s.to), (None, Some(2)));
        assert_eq!(f.update(40 * S, &[g.clone(), g.clone(), g.clone()]), None);
        // The item ends.
        f.idle();
        assert_eq!(f.update(41 * S, &[bad(), bad(), bad()]), None);
        assert_eq!(f.active(), None);
    }

    #[test]
    fn a_lock_holds_until_unlocked() {
        let g = Health::Good;
        let mut f = Failover::new(2, 10 * S);
        f.update(0, &[g.clone(), g.clone()]);
        f.update(S, &[g.clone(), g.clone()]);
        assert_eq!(f.active(), Some(0));
        f.manual(Some(1), true);
        let s = f.update(2 * S, &[g.clone(), bad()]).unwrap();
        assert_eq!((s.from, s.to), (Some(0), Some(1)));
        assert_eq!(f.update(3 * S, &[g.clone(), bad()]), None);
        assert!(f.locked());
        f.unlock();
        let s = f.update(4 * S, &[g.clone(), bad()]).unwrap();
        assert_eq!((s.from, s.to), (Some(1), Some(0)));
    }
}
