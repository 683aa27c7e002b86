//! What the scheduler hands a station: cues for its splicer, with the programme each one is
//! (for the EIT), and the coming days' events (the EIT schedule).

use std::path::PathBuf;

use chrono::DateTime;
use epg::si::{content_nibble, Event};
use playout::schedule::Utc;
use playout::splice::Cue;
use playout::time::Ticks27M;

/// What the scheduler tells the engine about one station.
pub(crate) struct ScheduleMsg {
    pub(crate) station: usize,
    /// The scheduler's number of the first of `new_paths` (of the next file it adds, when
    /// there are none): the station takes the message only when it has every file before it
    /// (one the scheduler computed before the station was built again is dropped); `None`
    /// for a message without files or cues (a guide).
    pub(crate) first_item: Option<usize>,
    /// The station's clock the cues were computed for (UTC at its origin, ns): one for the
    /// clock before a rebuild is dropped; `None` with `first_item`.
    pub(crate) clock_origin_ns: Option<i64>,
    /// Files to append to the station's playlist (in this order) before the cues use them.
    pub(crate) new_paths: Vec<PathBuf>,
    /// Cut the item on air here: the schedule takes over.
    pub(crate) handover: Option<Ticks27M>,
    /// With `handover`: what is on air (an alert ending) gives way at once to the first cue
    /// rather than at `handover`.
    pub(crate) preempt: bool,
    pub(crate) cues: Vec<Cue>,
    /// What each cue (by tag) is, for the EPG.
    pub(crate) programmes: Vec<(u64, OnAirProgramme)>,
    /// The cues (by tag) that relay a live input: the inputs to relay, in order (the item's
    /// own, then its backups; by index among the channel's inputs).
    pub(crate) live: Vec<(u64, Vec<usize>)>,
    /// The cues (by tag) that air the filler in place of an item that cannot be played,
    /// with why (a stoppage on the record when they go on air).
    pub(crate) faults: Vec<(u64, String)>,
    /// The next 7 days' events, for the EIT schedule (after every edit, and every 10 s):
    /// (event_id, what).
    pub(crate) week: Option<Vec<(u16, OnAirProgramme)>>,
    /// The channel's whole guide from XMLTV (`[channel.si] xmltv`): the EIT schedule, and
    /// present/following by the clock rather than by what goes on air.
    pub(crate) guide: Option<Vec<(u16, OnAirProgramme)>>,
    /// The instant (UTC ns) of the scheduler's look that made it, on the station's grid
    /// (`crate::schedule::driver::round_instant`): the station applies it a fixed time
    /// after ([`super::Station::handle_schedule`]), whenever it arrived, so its effects
    /// are at the same place in the output on every node. `None`: at once (an edit that
    /// applies now, an alert that ended, a guide).
    pub(crate) look_ns: Option<i64>,
}

impl ScheduleMsg {
    /// A channel's whole guide from XMLTV (`[channel.si] xmltv`), and nothing else.
    pub(crate) fn guide(station: usize, events: Vec<(u16, OnAirProgramme)>) -> ScheduleMsg {
        ScheduleMsg {
            station,
            first_item: None,
            clock_origin_ns: None,
            new_paths: Vec::new(),
            handover: None,
            preempt: false,
            cues: Vec::new(),
            programmes: Vec::new(),
            live: Vec::new(),
            faults: Vec::new(),
            week: None,
            guide: Some(events),
            look_ns: None,
        }
    }
}

/// A cue's programme, for the EIT: from the schedule item (or the filler's file name).
#[derive(Clone, Debug, Default)]
pub(crate) struct OnAirProgramme {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) genre: Option<String>,
    pub(crate) rating: u8,
    pub(crate) language: Option<String>,
    pub(crate) episode: Option<String>,
    /// Scheduled start and duration (UTC ns, ns).
    pub(crate) start: Utc,
    pub(crate) duration_ns: u64,
}

impl OnAirProgramme {
    /// Item `it` played as `seg`; `fallback_title` when the item has no title.
    pub(crate) fn of(
        it: &epg::schedule::Item,
        seg: &playout::schedule::Segment,
        fallback_title: String,
    ) -> Self {
        let pr = &it.programme;
        OnAirProgramme {
            title: pr.title.clone().unwrap_or(fallback_title),
            description: pr.description.clone().unwrap_or_default(),
            genre: pr.genre.clone(),
            rating: pr.rating,
            language: pr.language.clone(),
            episode: pr.episode.clone(),
            start: seg.start,
            duration_ns: seg.duration(),
        }
    }

    /// Its EIT event, with `event_id` (the genre as a content_nibble when it is a known one).
    pub(crate) fn event(&self, event_id: u16) -> Event {
        Event {
            event_id,
            start: DateTime::from_timestamp_nanos(self.start.0).naive_utc(),
            duration_s: self.duration_ns / 1_000_000_000,
            running_status: 1,
            language: self.language.clone().unwrap_or_else(|| "und".to_owned()),
            title: self.title.clone(),
            text: String::new(),
            extended: self.description.clone(),
            content: self.genre.as_deref().and_then(content_nibble),
            min_age: self.rating,
        }
    }

    /// The EIT events of `(event_id, programme)`s (a week, a guide).
    pub(crate) fn events(programmes: &[(u16, OnAirProgramme)]) -> Vec<Event> {
        programmes.iter().map(|(id, p)| p.event(*id)).collect()
    }
}
