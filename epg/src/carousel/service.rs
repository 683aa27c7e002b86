//! The EIT state of each service of a carousel (EN 300 468 §5.2.4): its own services' present,
//! following and week with their event_ids, and its peers' present/following (EIT other).

use chrono::NaiveDate;

use crate::si::{Charset, Event};
use crate::text::check_text;

use super::ServiceSpec;

/// One service's EIT state.
#[derive(Debug)]
pub(super) struct ServiceSi {
    pub(super) service_id: u16,
    pub(super) charset: Charset,
    pub(super) terrestrial: bool,
    pub(super) eit_version: u8,
    /// The last event_id handed out for an event the week does not have.
    event_id: u16,
    pub(super) present: Option<Event>,
    pub(super) following: Option<Event>,
    /// The scheduled events of the coming days.
    pub(super) week: Vec<Event>,
    /// The day (UTC) the EIT schedule was last built from: at midnight UTC segment 0 moves
    /// to the new day. The building itself is the builder's.
    pub(super) built_today: Option<NaiveDate>,
    /// The guide comes whole: present/following follow the clock through `week`.
    pub(super) by_clock: bool,
    /// How often each of its EIT schedule tables is sent (ms): the repetition rate, or less
    /// often when they are too big for their share of the muxrate.
    pub(super) schedule_every_ms: u64,
}

impl ServiceSi {
    pub(super) fn new(spec: &ServiceSpec, version: u8) -> ServiceSi {
        ServiceSi {
            service_id: spec.service_id,
            charset: spec.charset,
            terrestrial: spec.terrestrial,
            eit_version: version,
            event_id: 0,
            present: None,
            following: None,
            week: Vec::new(),
            built_today: None,
            by_clock: false,
            schedule_every_ms: 0,
        }
    }

    /// The event_id of `e`: the schedule's, when the EIT schedule has the same event (start
    /// and title), so a receiver's reminder follows it; otherwise one the schedule does not use.
    pub(super) fn event_id_for(&mut self, e: &Event) -> u16 {
        if let Some(w) = self
            .week
            .iter()
            .find(|w| w.start == e.start && w.title == e.title)
        {
            return w.event_id;
        }
        loop {
            self.event_id = self.event_id.wrapping_add(1);
            if !self.week.iter().any(|w| w.event_id == self.event_id) {
                return self.event_id;
            }
        }
    }
}

/// A peer service (another MPTS) whose EIT p/f other a carousel sends.
#[derive(Debug)]
pub(super) struct PeerService {
    pub(super) ts: (u16, u16),
    pub(super) service_id: u16,
    pub(super) charset: Charset,
    pub(super) present: Option<Event>,
    pub(super) following: Option<Event>,
    /// Whether its present/following changed since last sent (or was never sent).
    pub(super) dirty: bool,
    /// Whether it was ever sent.
    pub(super) sent: bool,
    pub(super) version: u8,
}

impl PeerService {
    /// Service `service_id` of stream `ts`, not sent yet.
    pub(super) fn new(ts: (u16, u16), service_id: u16, charset: Charset, version: u8) -> Self {
        PeerService {
            ts,
            service_id,
            charset,
            present: None,
            following: None,
            dirty: true,
            sent: false,
            version,
        }
    }
}

/// `e` with every character `charset` cannot hold replaced by `?`.
pub(super) fn codable(e: &Event, charset: Charset) -> Event {
    let fix = |t: &str| -> String {
        t.chars()
            .map(|c| {
                if check_text(c.encode_utf8(&mut [0; 4]), charset).is_ok() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    Event {
        title: fix(&e.title),
        text: fix(&e.text),
        extended: fix(&e.extended),
        ..e.clone()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate};

    use super::*;
    use crate::schedule::Tz;

    fn service() -> ServiceSi {
        let spec = ServiceSpec {
            service_id: 1,
            name: "One".to_owned(),
            provider: "P".to_owned(),
            service_type: 0x01,
            charset: Charset::Latin,
            eit_days: 7,
            country: "FRA".to_owned(),
            timezone: Tz::Europe__Paris,
            original_network_id: 1,
            terrestrial: false,
            lcn: None,
        };
        ServiceSi::new(&spec, 3)
    }

    fn event(event_id: u16, minute: i64, title: &str) -> Event {
        Event {
            event_id,
            start: NaiveDate::from_ymd_opt(2026, 11, 23)
                .unwrap()
                .and_hms_opt(20, 0, 0)
                .unwrap()
                + Duration::minutes(minute),
            title: title.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn event_ids_are_the_schedules_or_ones_it_does_not_use() {
        let mut s = service();
        s.week = vec![
            event(1, 0, "News"),
            event(2, 30, "Film"),
            event(4, 120, "Late"),
        ];
        // Same start and title: the schedule's event_id (a reminder follows it).
        assert_eq!(s.event_id_for(&event(0, 30, "Film")), 2);
        // Another title at that start, or the title at another start: a free one, counting on
        // from the last given and skipping the schedule's.
        assert_eq!(s.event_id_for(&event(0, 30, "Sport")), 3);
        assert_eq!(s.event_id_for(&event(0, 31, "Film")), 5);
        assert_eq!(s.event_id_for(&event(0, 0, "News")), 1);
    }

    #[test]
    fn what_a_charset_cannot_hold_becomes_a_question_mark() {
        let e = Event {
            title: "Café 新闻".to_owned(),
            extended: "ok".to_owned(),
            ..event(9, 0, "")
        };
        let c = codable(&e, Charset::Latin);
        assert_eq!(c.title, "Café ??");
        assert_eq!(c.extended, "ok");
        assert_eq!((c.event_id, c.start), (9, e.start));
        assert_eq!(codable(&e, Charset::Utf8), e);
    }
}
