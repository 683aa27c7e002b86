//! DVB SI in each single-channel station's output (EN 300 468, repetition per TS 101 211):
//! SDT actual every second on PID 0x11, EIT present/following every 1.5 s and the EIT
//! schedule (`[channel.si] days`) every 10 s (30 s terrestrial) on PID 0x12, TDT and TOT every
//! 5 s on PID 0x14. The present event flips when the splicer reports an item on air (the real
//! transition, not the planned one). `[channel.si]` turns it off or sets the charset.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use epg::schedule::Tz;
use epg::si::{eit_pf, eit_schedule, sdt, tdt, tot, Event, Service};
use playout::mux::Mux;
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::Pid;

use crate::config::SiConfig;
use crate::schedule::driver::OnAirProgramme;

const SDT_PID: u16 = 0x11;
const EIT_PID: u16 = 0x12;
const TDT_PID: u16 = 0x14;

/// The SI of one channel.
pub(crate) struct ChannelSi {
    service_id: u16,
    transport_stream_id: u16,
    tz: Tz,
    cfg: SiConfig,
    eit_version: u8,
    event_id: u16,
    present: Option<Event>,
    following: Option<Event>,
    week: Vec<Event>,
    week_version: u8,
}

/// The EIT event of a scheduled programme.
fn event(p: &OnAirProgramme, event_id: u16) -> Event {
    Event {
        event_id,
        start: DateTime::from_timestamp_nanos(p.start.0).naive_utc(),
        duration_s: p.duration_ns / 1_000_000_000,
        running_status: 1,
        language: p.language.clone().unwrap_or_else(|| "und".to_owned()),
        title: p.title.clone(),
        text: String::new(),
        extended: p.description.clone(),
        content: p.genre.as_deref().and_then(content_nibble),
        min_age: p.rating,
    }
}

/// EN 300 468 content_nibble (level 1 and 2) of a free-text genre, for the common ones.
fn content_nibble(genre: &str) -> Option<u8> {
    Some(match genre.to_ascii_lowercase().as_str() {
        "movie" | "film" | "drama" => 0x10,
        "news" | "current affairs" => 0x20,
        "show" | "game show" | "entertainment" => 0x30,
        "sports" | "sport" => 0x40,
        "children" | "kids" => 0x50,
        "music" => 0x60,
        "arts" | "culture" => 0x70,
        "social" | "politics" => 0x80,
        "education" | "documentary" => 0x90,
        "leisure" | "hobbies" => 0xA0,
        _ => return None,
    })
}

fn utc_now() -> NaiveDateTime {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    DateTime::from_timestamp_nanos(ns).naive_utc()
}

fn ms(ms: u64) -> u64 {
    SYSTEM_CLOCK_HZ * ms / 1000
}

impl ChannelSi {
    /// Starts the channel's SI in `mux`: its SDT, an empty EIT p/f, TDT and TOT.
    pub(crate) fn start(
        mux: &mut Mux,
        service_id: u16,
        transport_stream_id: u16,
        name: &str,
        provider: &str,
        tz: Tz,
        cfg: &SiConfig,
    ) -> ChannelSi {
        let service = Service {
            service_id,
            name: name.to_owned(),
            provider: provider.to_owned(),
            service_type: 0x01,
            eit_pf: true,
            eit_schedule: true,
        };
        match sdt(
            transport_stream_id,
            cfg.original_network_id,
            0,
            &[service],
            cfg.charset,
        ) {
            Ok(s) => mux.set_table(Pid::from_bits(SDT_PID), 0x42, &[&s], ms(1000)),
            Err(e) => tracing::error!(service_id, error = %e, "SDT not sent"),
        }
        let si = ChannelSi {
            service_id,
            transport_stream_id,
            tz,
            cfg: cfg.clone(),
            eit_version: 0,
            event_id: 0,
            present: None,
            following: None,
            week: Vec::new(),
            week_version: 0,
        };
        si.send_eit(mux);
        si.tick(mux);
        si
    }

    /// An item went on air: it becomes the present event (started now, when the splicer put
    /// it on air), and `following` (if known) the next.
    pub(crate) fn on_air(
        &mut self,
        mux: &mut Mux,
        present: Option<&OnAirProgramme>,
        title: &str,
        following: Option<&OnAirProgramme>,
    ) {
        self.event_id = self.event_id.wrapping_add(1);
        let mut e = match present {
            Some(p) => event(p, self.event_id),
            None => Event {
                event_id: self.event_id,
                language: "und".to_owned(),
                title: title.to_owned(),
                ..Event::default()
            },
        };
        e.start = utc_now();
        e.running_status = 4;
        self.present = Some(e);
        self.following = following.map(|p| event(p, self.event_id.wrapping_add(1)));
        self.eit_version = (self.eit_version + 1) & 0x1F;
        self.send_eit(mux);
    }

    fn send_eit(&self, mux: &mut Mux) {
        match eit_pf(
            self.service_id,
            self.transport_stream_id,
            self.cfg.original_network_id,
            self.eit_version,
            self.present.as_ref(),
            self.following.as_ref(),
            self.cfg.charset,
        ) {
            Ok([s0, s1]) => mux.set_table(Pid::from_bits(EIT_PID), 0x4E, &[&s0, &s1], ms(1500)),
            Err(e) => tracing::warn!(service_id = self.service_id, error = %e, "EIT not sent"),
        }
    }

    /// The next 7 days as the EIT schedule (tables 0x50..), each section once every 10 s
    /// (the cable/satellite profile's prime period). A new version whenever it changes.
    pub(crate) fn set_week(&mut self, mux: &mut Mux, week: &[(u16, OnAirProgramme)]) {
        let events: Vec<Event> = week.iter().map(|(id, p)| event(p, *id)).collect();
        if events == self.week {
            return;
        }
        self.week_version = (self.week_version + 1) & 0x1F;
        let today = utc_now().date();
        match eit_schedule(
            self.service_id,
            self.transport_stream_id,
            self.cfg.original_network_id,
            self.week_version,
            &events,
            today,
            self.cfg.days,
            self.cfg.charset,
        ) {
            Ok(sections) => {
                let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
                let every = if self.cfg.terrestrial { 30_000 } else { 10_000 };
                mux.set_table(Pid::from_bits(EIT_PID), 0x50, &refs, ms(every));
                self.week = events;
            }
            Err(e) => {
                tracing::warn!(service_id = self.service_id, error = %e, "EIT schedule not sent")
            }
        }
    }

    /// Refreshes TDT and TOT with the time now (call about once a second).
    pub(crate) fn tick(&self, mux: &mut Mux) {
        let now = utc_now();
        let offset_min = self
            .tz
            .offset_from_utc_datetime(&now)
            .fix()
            .local_minus_utc()
            / 60;
        let (tdt_s, tot_s) = (tdt(now), tot(now, &self.cfg.country, offset_min));
        mux.set_table(Pid::from_bits(TDT_PID), 0x70, &[&tdt_s], ms(5000));
        mux.set_table(Pid::from_bits(TDT_PID), 0x73, &[&tot_s], ms(5000));
    }
}
