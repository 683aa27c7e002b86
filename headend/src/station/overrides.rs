//! Emergency alert overrides in a station: an alert clip pre-empts what a program
//! plays (at once, on a clean boundary: `Splicer::preempt`), loops until the alert desk
//! clears it, and meanwhile the EIT present event is the alert and the emergency tables go
//! out. On clear, a scheduled channel waits for the scheduler, which rejoins the schedule at
//! the wall clock (pre-empting the alert in turn); a playlist channel goes on with the item
//! after the one the alert interrupted.

use std::path::PathBuf;
use std::sync::Arc;

use playout::splice::Cue;
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::Pid;

use super::{Output, Station};
use crate::station::OnAirProgramme;

/// Cue tags of alert clips have this bit set (schedule tags count up from 1).
pub(crate) const ALERT_TAG: u64 = 1 << 63;
/// How often the emergency tables repeat.
const TABLE_INTERVAL: u64 = SYSTEM_CLOCK_HZ;

/// What an alert puts on air on one program.
#[derive(Debug)]
pub(crate) struct AirAlert {
    /// The desk's number for the alert (stays the same across updates).
    pub(crate) seq: u64,
    /// The clip, looped.
    pub(crate) clip: PathBuf,
    /// The EIT present event while it is on air.
    pub(crate) programme: OnAirProgramme,
    /// Tables to insert: (PID, carousel key, sections).
    pub(crate) tables: Vec<(u16, u64, Vec<Vec<u8>>)>,
}

/// The alert desk's orders for one program of a station.
#[derive(Debug)]
pub(crate) enum OverrideMsg {
    /// Put this alert on air (or update the one on air: the same clip is not switched).
    Show {
        station: usize,
        program: usize,
        air: Arc<AirAlert>,
    },
    /// No alert for this program any more.
    Clear { station: usize, program: usize },
}

impl OverrideMsg {
    pub(crate) fn station(&self) -> usize {
        match self {
            OverrideMsg::Show { station, .. } | OverrideMsg::Clear { station, .. } => *station,
        }
    }
}

/// When an alert went on or off air on one program.
#[derive(Clone, Debug)]
pub(crate) struct AirReport {
    pub(crate) station: usize,
    pub(crate) program: usize,
    pub(crate) seq: u64,
    pub(crate) kind: AirKind,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum AirKind {
    /// Its first packet left, and its first picture is presented (UTC ns).
    OnAir {
        first_packet_utc_ns: i64,
        presented_utc_ns: i64,
    },
    /// What was kept of it stops being presented (UTC ns).
    OffAir { presented_until_utc_ns: i64 },
}

/// One program's alert.
struct Override {
    air: Arc<AirAlert>,
    item: usize,
}

/// The station's alert state.
pub(crate) struct Air {
    /// Whether the scheduler drives program 0 (then it brings the schedule back).
    pub(crate) scheduled: bool,
    per_program: Vec<ProgramAir>,
}

struct ProgramAir {
    /// Items of the configured playlist.
    base_items: usize,
    current: Option<Override>,
    /// The alert whose clip is on air: (seq, item).
    airing: Option<(u64, usize)>,
    /// The item on air (playlist index), to resume after.
    item_on_air: Option<usize>,
    /// Before the alert: the item to resume with (playlist channels).
    resume: Option<usize>,
    /// Table keys sent: (PID, key).
    tables: Vec<(u16, u64)>,
}

impl Air {
    pub(crate) fn new(base_items: Vec<usize>) -> Air {
        Air {
            scheduled: false,
            per_program: base_items
                .into_iter()
                .map(|base_items| ProgramAir {
                    base_items,
                    current: None,
                    airing: None,
                    item_on_air: None,
                    resume: None,
                    tables: Vec::new(),
                })
                .collect(),
        }
    }

    /// While an alert holds `program`: what to go back to when it ends.
    pub(crate) fn set_resume(&mut self, program: usize, item: usize) {
        if let Some(p) = self.per_program.get_mut(program) {
            p.resume = Some(item);
        }
    }

    /// Whether an alert holds `program`.
    pub(crate) fn overriding(&self, program: usize) -> bool {
        self.per_program
            .get(program)
            .is_some_and(|p| p.current.is_some())
    }

    /// The alert programme of a cue tag, if it is an alert's.
    pub(crate) fn programme(&self, program: usize, tag: Option<u64>) -> Option<&OnAirProgramme> {
        let tag = tag.filter(|t| t & ALERT_TAG != 0)?;
        let c = self.per_program.get(program)?.current.as_ref()?;
        (c.air.seq == tag & !ALERT_TAG).then_some(&c.air.programme)
    }
}

fn alert_cue(item: usize, seq: u64) -> Cue {
    Cue {
        item,
        offset_90k: 0,
        from_byte: 0,
        first_pts: None,
        not_before: None,
        until: None,
        entry_delay_90k: 0,
        tag: ALERT_TAG | seq,
    }
}

/// A cue for `item` from its start, with no times and no tag: what plays next at once.
pub(super) fn plain_cue(item: usize) -> Cue {
    Cue {
        tag: 0,
        ..alert_cue(item, 0)
    }
}

impl Station {
    /// Applies the alert desk's order.
    pub(crate) fn handle_override(&mut self, msg: OverrideMsg) {
        match msg {
            OverrideMsg::Show { program, air, .. } => self.show_alert(program, air),
            OverrideMsg::Clear { program, .. } => self.clear_alert(program),
        }
        self.collect();
    }

    /// The playlist index of `path` on `program`, added if new.
    fn item_of(&mut self, program: usize, path: &PathBuf) -> Option<usize> {
        let names = self.playlists.get_mut(program)?;
        if let Some(i) = names.iter().position(|p| p == path) {
            return Some(i);
        }
        names.push(path.clone());
        Some(self.mux.program_mut(program).add_item())
    }

    fn show_alert(&mut self, program: usize, air: Arc<AirAlert>) {
        if program >= self.mux.programs() {
            return;
        }
        let Some(item) = self.item_of(program, &air.clip) else {
            return;
        };
        let now = self.mux.now();
        let p = &mut self.air.per_program[program];
        let same_clip = p.current.as_ref().is_some_and(|c| c.air.clip == air.clip);
        if p.current.is_none() {
            // A playlist file: the next one; a live input (or a schedule's file): itself.
            p.resume = p.item_on_air.map(|i| {
                if i < p.base_items {
                    (i + 1) % p.base_items.max(1)
                } else {
                    i
                }
            });
        }
        // Tables: the new alert's; any key it does not use stops.
        let old_tables = std::mem::take(&mut p.tables);
        for (pid, key) in old_tables {
            if !air.tables.iter().any(|(q, k, _)| *q == pid && *k == key) {
                self.mux
                    .set_table(Pid::from_bits(pid), key, &[], TABLE_INTERVAL);
            }
        }
        for (pid, key, sections) in &air.tables {
            let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
            self.mux
                .set_table(Pid::from_bits(*pid), *key, &refs, TABLE_INTERVAL);
        }
        let p = &mut self.air.per_program[program];
        p.tables = air.tables.iter().map(|(q, k, _)| (*q, *k)).collect();
        let seq = air.seq;
        if same_clip {
            // An update: new text and tables, the same pictures go on without a switch.
            p.current = Some(Override {
                air: air.clone(),
                item,
            });
            let utc = self.utc_ns();
            if let Some(si) = self.si.as_mut() {
                si.on_air(
                    &mut self.mux,
                    self.service_ids[program],
                    air.programme.event(0),
                    None,
                    utc,
                );
            }
            // Later passes carry the (possibly new) number.
            let s = self.mux.program_mut(program);
            s.clear_cues();
            s.push_cue(alert_cue(item, seq));
            tracing::info!(station = %self.id, program, seq, "alert updated on air");
            return;
        }
        p.current = Some(Override { air, item });
        let s = self.mux.program_mut(program);
        s.clear_cues();
        s.preempt(now, alert_cue(item, seq));
        // The next pass of the loop.
        s.push_cue(alert_cue(item, seq));
        tracing::warn!(station = %self.id, program, seq, "alert pre-empts the programme");
    }

    fn clear_alert(&mut self, program: usize) {
        let Some(p) = self.air.per_program.get_mut(program) else {
            return;
        };
        let Some(_) = p.current.take() else { return };
        for (pid, key) in std::mem::take(&mut p.tables) {
            self.mux
                .set_table(Pid::from_bits(pid), key, &[], TABLE_INTERVAL);
        }
        let resume = p.resume.take().unwrap_or(0);
        let scheduled = self.air.scheduled && program == 0;
        let now = self.mux.now();
        let s = self.mux.program_mut(program);
        s.clear_cues();
        if scheduled {
            // The scheduler rejoins the schedule at the wall clock and pre-empts the alert;
            // should it not (a broken schedule), the playlist goes on after this pass.
            s.push_cue(plain_cue(resume));
            tracing::info!(station = %self.id, program, "alert over: back to the schedule");
        } else {
            s.preempt(now, plain_cue(resume));
            tracing::info!(station = %self.id, program, item = resume, "alert over: back to the playlist");
        }
    }

    /// Notes an item going on air (from the splicer's events): alert on-air reports, the
    /// next pass of an alert loop. Returns the alert programme if the item is an alert's.
    pub(super) fn alert_item_started(
        &mut self,
        program: usize,
        item: usize,
        tag: Option<u64>,
        at: u64,
        presented_at: u64,
    ) -> Option<OnAirProgramme> {
        let station = self.index;
        let programme = self.air.programme(program, tag).cloned();
        let on = tag.filter(|t| t & ALERT_TAG != 0).map(|t| t & !ALERT_TAG);
        let utc_at = self.clock.utc_ns(at);
        let utc_presented = self.clock.utc_ns(presented_at);
        let p = self.air.per_program.get_mut(program)?;
        p.item_on_air = Some(item);
        let airing = p.airing;
        match (airing, on) {
            (Some((a, _)), Some(s)) if a == s => {}
            (prev, on) => {
                if let Some((a, _)) = prev {
                    report(
                        &mut self.out,
                        station,
                        program,
                        a,
                        AirKind::OffAir {
                            presented_until_utc_ns: utc_presented,
                        },
                    );
                }
                if let Some(s) = on {
                    report(
                        &mut self.out,
                        station,
                        program,
                        s,
                        AirKind::OnAir {
                            first_packet_utc_ns: utc_at,
                            presented_utc_ns: utc_presented,
                        },
                    );
                }
                let p = &mut self.air.per_program[program];
                p.airing = on.map(|s| (s, item));
            }
        }
        let p = &self.air.per_program[program];
        if on.is_some() && p.current.is_some() && self.mux.program_mut(program).cues_queued() == 0 {
            let c = p.current.as_ref().map(|c| (c.item, c.air.seq));
            if let Some((item, seq)) = c {
                self.mux.program_mut(program).push_cue(alert_cue(item, seq));
            }
        }
        programme
    }

    /// An item gave way to a pre-emption: if it was an alert's clip, the alert is off air
    /// when what stays of it ends.
    pub(super) fn alert_item_preempted(&mut self, program: usize, item: usize, until: u64) {
        let station = self.index;
        let utc = self.clock.utc_ns(until);
        let Some(p) = self.air.per_program.get_mut(program) else {
            return;
        };
        if let Some((seq, it)) = p.airing {
            if it == item {
                p.airing = None;
                report(
                    &mut self.out,
                    station,
                    program,
                    seq,
                    AirKind::OffAir {
                        presented_until_utc_ns: utc,
                    },
                );
            }
        }
    }
}

fn report(
    out: &mut std::collections::VecDeque<Output>,
    station: usize,
    program: usize,
    seq: u64,
    kind: AirKind,
) {
    out.push_back(Output::Air(AirReport {
        station,
        program,
        seq,
        kind,
    }));
}
