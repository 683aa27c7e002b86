//! DVB SI in each station's output (EN 300 468, repetition per TS 101 211):
//! - SDT actual every second on PID 0x11, listing the station's services;
//! - per service, EIT present/following actual every 1.5 s and the EIT schedule
//!   (`[channel.si] days`) every 8 s (25 s terrestrial; limits 10 s and 30 s) on PID 0x12;
//! - TDT and TOT every 5 s on PID 0x14;
//! - with `[network]`, the NIT actual every 5 s on PID 0x10 (network name, every transport
//!   stream with its service list and logical channel numbers);
//! - in an MPTS, SDT other (every 5 s) and EIT p/f other (10 s, 20 s terrestrial) for the
//!   services of every other MPTS ("peers"), every 8 s (16 s terrestrial; limits 10 s and
//!   20 s), their present/following taken from what those
//!   stations really have on air, through the shared [`SiBoard`].
//!
//! The present event flips when the splicer reports an item on air (the real transition, not
//! the planned one). Each sub-table (one per service and table_id) has its own carousel, so
//! its sections are 25 ms apart and its version changes only with its content.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use epg::eit_cache::EitSchedule;
use epg::network::{nit, sdt_sections, NitService, TransportStream};
use epg::schedule::Tz;
use epg::si::{eit_pf_table, tdt, tot, Charset, Event, Service};
use playout::mux::Mux;
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::Pid;

use crate::config::{ChannelConfig, Config, NetworkConfig, SiConfig};
use crate::eit_builder::{Built, EitBuilder};
use crate::schedule::driver::OnAirProgramme;

const NIT_PID: u16 = 0x10;
const SDT_PID: u16 = 0x11;
const EIT_PID: u16 = 0x12;
const TDT_PID: u16 = 0x14;

/// What stations tell each other: each service's present/following, by (transport stream,
/// service_id), with a generation that grows on every change.
#[derive(Default)]
pub(crate) struct SiBoard {
    pf: Mutex<HashMap<(u16, u16), Posted>>,
}

/// A service's present/following as posted on the board, with its generation.
type Posted = (u64, Option<Event>, Option<Event>);

impl SiBoard {
    fn publish(
        &self,
        ts: u16,
        service_id: u16,
        present: &Option<Event>,
        following: &Option<Event>,
    ) {
        let mut pf = self.pf.lock().unwrap_or_else(PoisonError::into_inner);
        let e = pf.entry((ts, service_id)).or_insert((0, None, None));
        e.0 += 1;
        e.1.clone_from(present);
        e.2.clone_from(following);
    }
}

/// The network as every station's SI sees it, built once from the config.
pub(crate) struct NetworkSi {
    /// The NIT sections (none without `[network]`).
    nit: Vec<Vec<u8>>,
    /// Each MPTS: (transport_stream_id, original_network_id, its services).
    mpts: Vec<((u16, u16), Vec<Service>, Charset)>,
    /// Shared present/following.
    pub(crate) board: Arc<SiBoard>,
}

fn service_of(ch: &ChannelConfig) -> Service {
    Service {
        service_id: ch.service_id,
        name: ch.name.clone(),
        provider: ch.provider.clone(),
        service_type: 0x01,
        eit_pf: true,
        eit_schedule: true,
    }
}

impl NetworkSi {
    /// The NIT of `config` (if it has a `[network]`) and the MPTS line-up.
    pub(crate) fn new(config: &Config) -> NetworkSi {
        let members = |ids: &[String]| -> Vec<&ChannelConfig> {
            ids.iter()
                .filter_map(|id| config.channels.iter().find(|c| &c.id == id))
                .collect()
        };
        let mpts: Vec<((u16, u16), Vec<Service>, Charset)> = config
            .mpts
            .iter()
            .map(|m| {
                let chs = members(&m.channels);
                let onid = chs.first().map_or(1, |c| c.si.original_network_id);
                let charset = chs.first().map_or(Charset::Utf8, |c| c.si.charset);
                // As another stream's SDT other describes them: EIT p/f (other) is sent for
                // them, an EIT schedule other is not.
                let services = chs
                    .iter()
                    .filter(|c| c.si.enabled)
                    .map(|c| Service {
                        eit_schedule: false,
                        ..service_of(c)
                    })
                    .collect();
                ((m.transport_stream_id, onid), services, charset)
            })
            .collect();
        let nit = config
            .network
            .as_ref()
            .map(|n| network_nit(config, n, &members))
            .unwrap_or_default();
        NetworkSi {
            nit,
            mpts,
            board: Arc::default(),
        }
    }
}

/// The NIT: every MPTS, then every channel not carried in one, each a transport stream.
fn network_nit<'a>(
    config: &'a Config,
    n: &NetworkConfig,
    members: &dyn Fn(&[String]) -> Vec<&'a ChannelConfig>,
) -> Vec<Vec<u8>> {
    let nit_service = |c: &ChannelConfig| NitService {
        service_id: c.service_id,
        service_type: 0x01,
        lcn: c.si.lcn,
    };
    let mut streams: Vec<TransportStream> = config
        .mpts
        .iter()
        .map(|m| {
            let chs = members(&m.channels);
            TransportStream {
                transport_stream_id: m.transport_stream_id,
                original_network_id: chs.first().map_or(1, |c| c.si.original_network_id),
                services: chs
                    .iter()
                    .filter(|c| c.si.enabled)
                    .map(|c| nit_service(c))
                    .collect(),
            }
        })
        .collect();
    for c in &config.channels {
        if !c.si.enabled || config.mpts.iter().any(|m| m.channels.contains(&c.id)) {
            continue;
        }
        streams.push(TransportStream {
            transport_stream_id: c.transport_stream_id,
            original_network_id: c.si.original_network_id,
            services: vec![nit_service(c)],
        });
    }
    match nit(n.network_id, first_version(), &n.name, &streams, n.charset) {
        Ok(sections) => sections,
        Err(e) => {
            tracing::error!(error = %e, "NIT not sent");
            Vec::new()
        }
    }
}

/// One service's EIT state.
struct ServiceSi {
    service_id: u16,
    cfg: SiConfig,
    eit_version: u8,
    event_id: u16,
    present: Option<Event>,
    following: Option<Event>,
    /// The scheduled events of the coming days...
    week: Vec<Event>,
    /// The day (UTC) the EIT schedule was last built from: at midnight UTC segment 0 moves
    /// to the new day. The building itself is `crate::eit_builder`'s, off this thread.
    built_today: Option<chrono::NaiveDate>,
    /// The guide comes from XMLTV: present/following follow the clock through `week`.
    by_clock: bool,
}

impl ServiceSi {
    /// The event_id of `e`: the schedule's, when the EIT schedule has the same event (start
    /// and title), so a receiver's reminder follows it; otherwise one the schedule does not use.
    fn event_id_for(&mut self, e: &Event) -> u16 {
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

/// `e` with every character `charset` cannot hold replaced by `?`.
fn codable(e: &Event, charset: Charset) -> Event {
    let fix = |t: &str| -> String {
        t.chars()
            .map(|c| {
                if epg::text::check_text(c.encode_utf8(&mut [0; 4]), charset).is_ok() {
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

/// A peer service (another MPTS) whose EIT p/f other this station sends.
struct PeerService {
    ts: (u16, u16),
    service_id: u16,
    charset: Charset,
    /// The board's generation last sent (`None`: nothing sent yet).
    generation: Option<u64>,
    version: u8,
}

/// The SI of one station.
pub(crate) struct StationSi {
    ts: (u16, u16),
    tz: Tz,
    country: String,
    terrestrial: bool,
    services: Vec<ServiceSi>,
    peers: Vec<PeerService>,
    board: Arc<SiBoard>,
    /// The station's index and the EIT schedule builder, with its answers.
    station: usize,
    builder: EitBuilder,
    built: mpsc::Receiver<Built>,
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

/// The carousel key of a sub-table: table_id, transport stream (for tables of other
/// streams) and table_id_extension.
fn key(table_id: u8, ts: u16, extension: u16) -> u64 {
    u64::from(table_id) << 32 | u64::from(ts) << 16 | u64::from(extension)
}

/// A first version number for a table, from the clock: after a restart a receiver that kept
/// the old tables does not take new content for them.
fn first_version() -> u8 {
    (utc_now().and_utc().timestamp() / 60 % 32) as u8
}

fn send(mux: &mut Mux, pid: u16, key: u64, sections: &[Vec<u8>], every_ms: u64) {
    let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    mux.set_table(Pid::from_bits(pid), key, &refs, ms(every_ms));
}

impl StationSi {
    /// Starts the SI of a station carrying `channels` (those with SI enabled) as transport
    /// stream `transport_stream_id`; `mpts`: whether it is an MPTS (which then carries SDT
    /// and EIT p/f other for the other MPTS). `None` when no channel has SI on.
    pub(crate) fn start(
        mux: &mut Mux,
        network: &NetworkSi,
        transport_stream_id: u16,
        channels: &[&ChannelConfig],
        mpts: bool,
        (station, builder): (usize, &EitBuilder),
    ) -> Option<StationSi> {
        let on: Vec<&ChannelConfig> = channels.iter().copied().filter(|c| c.si.enabled).collect();
        let first = on.first()?;
        let ts = (transport_stream_id, first.si.original_network_id);
        let services: Vec<Service> = on.iter().map(|c| service_of(c)).collect();
        match sdt_sections(true, ts, first_version(), &services, first.si.charset) {
            Ok(s) => send(mux, SDT_PID, key(0x42, 0, ts.0), &s, 1000),
            Err(e) => tracing::error!(transport_stream_id, error = %e, "SDT not sent"),
        }
        if !network.nit.is_empty() {
            mux.set_network_pid(Pid::from_bits(NIT_PID));
            send(mux, NIT_PID, key(0x40, 0, 0), &network.nit, 5000);
        }
        let mut peers = Vec::new();
        if mpts {
            for (peer_ts, peer_services, charset) in &network.mpts {
                if *peer_ts == ts || peer_services.is_empty() {
                    continue;
                }
                match sdt_sections(false, *peer_ts, first_version(), peer_services, *charset) {
                    Ok(s) => send(mux, SDT_PID, key(0x46, 0, peer_ts.0), &s, 5000),
                    Err(e) => {
                        tracing::error!(transport_stream_id = peer_ts.0, error = %e, "SDT other not sent")
                    }
                }
                peers.extend(peer_services.iter().map(|s| PeerService {
                    ts: *peer_ts,
                    service_id: s.service_id,
                    charset: *charset,
                    generation: None,
                    version: first_version(),
                }));
            }
        }
        let (built_tx, built_rx) = mpsc::channel();
        let mut si = StationSi {
            ts,
            tz: first.timezone,
            country: first.si.country.clone(),
            terrestrial: first.si.terrestrial,
            services: on
                .iter()
                .map(|c| ServiceSi {
                    service_id: c.service_id,
                    cfg: c.si.clone(),
                    eit_version: first_version(),
                    event_id: 0,
                    present: None,
                    following: None,
                    week: Vec::new(),
                    built_today: None,
                    by_clock: false,
                })
                .collect(),
            peers,
            board: network.board.clone(),
            station,
            builder: builder.clone(),
            built: built_rx,
        };
        for c in &on {
            builder.register(
                station,
                c.service_id,
                EitSchedule::new(c.service_id, ts.0, ts.1, c.si.days, c.si.charset)
                    .with_version(first_version()),
                built_tx.clone(),
            );
        }
        for k in 0..si.services.len() {
            si.send_eit(mux, k);
            // Empty until the scheduler sends the week: the SDT says it is carried.
            si.send_week(k);
        }
        si.tick(mux);
        Some(si)
    }

    /// The index of the service with `service_id`.
    fn service(&self, service_id: u16) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.service_id == service_id)
    }

    /// An item of the service with `service_id` went on air: it becomes the present event
    /// (started now, when the splicer put it on air), and `following` (if known) the next.
    pub(crate) fn on_air(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        present: Option<&OnAirProgramme>,
        title: &str,
        following: Option<&OnAirProgramme>,
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let s = &mut self.services[k];
        if s.by_clock {
            return;
        }
        let mut e = match present {
            Some(p) => event(p, 0),
            None => Event {
                language: "und".to_owned(),
                title: title.to_owned(),
                ..Event::default()
            },
        };
        e.event_id = s.event_id_for(&e);
        e.start = utc_now();
        e.running_status = 4;
        s.present = Some(e);
        s.following = following.map(|p| {
            let mut f = event(p, 0);
            f.event_id = s.event_id_for(&f);
            f
        });
        s.eit_version = (s.eit_version + 1) & 0x1F;
        self.board
            .publish(self.ts.0, service_id, &s.present, &s.following);
        self.send_eit(mux, k);
    }

    /// What follows on the service with `service_id` changed (an edit of the next item): the
    /// following event is sent again if it differs.
    pub(crate) fn set_following(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        following: Option<&OnAirProgramme>,
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let s = &mut self.services[k];
        if s.by_clock || s.present.is_none() {
            return;
        }
        let f = following.map(|p| {
            let mut f = event(p, 0);
            f.event_id = s.event_id_for(&f);
            f
        });
        if f == s.following {
            return;
        }
        s.following = f;
        s.eit_version = (s.eit_version + 1) & 0x1F;
        self.board
            .publish(self.ts.0, service_id, &s.present, &s.following);
        self.send_eit(mux, k);
    }

    fn send_eit(&self, mux: &mut Mux, k: usize) {
        let s = &self.services[k];
        let build = |present: Option<&Event>, following: Option<&Event>| {
            eit_pf_table(
                true,
                s.service_id,
                self.ts,
                s.eit_version,
                (present, following),
                s.cfg.charset,
            )
        };
        let sections = build(s.present.as_ref(), s.following.as_ref()).or_else(|e| {
            // Text written past validation (a file name, a schedule file edited by hand):
            // what the charset cannot hold shows as `?` rather than the old event staying.
            tracing::warn!(service_id = s.service_id, error = %e, "EIT text not codable; sent with `?` for it");
            let clean = |e: &Option<Event>| e.as_ref().map(|e| codable(e, s.cfg.charset));
            build(clean(&s.present).as_ref(), clean(&s.following).as_ref())
        });
        match sections {
            Ok(sections) => send(mux, EIT_PID, key(0x4E, 0, s.service_id), &sections, 1500),
            Err(e) => tracing::error!(service_id = s.service_id, error = %e, "EIT not sent"),
        }
    }

    /// The next days of the service with `service_id` as its EIT schedule (tables 0x50..),
    /// each section once every 8 s (within the cable/satellite prime period's 10 s; 25 s
    /// terrestrial, within 30 s). A new version whenever it changes.
    pub(crate) fn set_week(&mut self, service_id: u16, week: &[(u16, OnAirProgramme)]) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let events: Vec<Event> = week.iter().map(|(id, p)| event(p, *id)).collect();
        if events != self.services[k].week {
            self.services[k].week = events;
            self.send_week(k);
        }
    }

    /// The whole guide of the service with `service_id` from XMLTV: its EIT schedule, and
    /// from now on its present/following by the clock (see [`StationSi::tick`]).
    pub(crate) fn set_guide(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        guide: &[(u16, OnAirProgramme)],
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        self.services[k].by_clock = true;
        self.set_week(service_id, guide);
        self.pf_by_clock(mux, k, utc_now());
    }

    /// Present and following of a service whose guide is by the clock: the events at and
    /// after `now`; sent (a new version) when they change.
    fn pf_by_clock(&mut self, mux: &mut Mux, k: usize, now: NaiveDateTime) {
        let s = &mut self.services[k];
        let end = |e: &Event| e.start + chrono::Duration::seconds(e.duration_s as i64);
        let present = s.week.iter().find(|e| e.start <= now && now < end(e));
        let following = s.week.iter().find(|e| e.start > now);
        let (present, following) = (
            present.cloned().map(|mut e| {
                e.running_status = 4;
                e
            }),
            following.cloned(),
        );
        if present == s.present && following == s.following {
            return;
        }
        s.present = present;
        s.following = following;
        s.eit_version = (s.eit_version + 1) & 0x1F;
        self.board
            .publish(self.ts.0, s.service_id, &s.present, &s.following);
        self.send_eit(mux, k);
    }

    /// Hands service `k`'s week to the EIT builder (from today, UTC); only the tables (4-day
    /// blocks) whose content changed come back, with a new version ([`StationSi::take_built`]).
    fn send_week(&mut self, k: usize) {
        let today = utc_now().date();
        let s = &mut self.services[k];
        s.built_today = Some(today);
        self.builder
            .week(self.station, s.service_id, s.week.clone(), today);
    }

    /// Sends the EIT schedule tables the builder has finished.
    pub(crate) fn take_built(&mut self, mux: &mut Mux) {
        while let Ok(b) = self.built.try_recv() {
            let Some(k) = self.service(b.service_id) else {
                continue;
            };
            let every = if self.services[k].cfg.terrestrial {
                25_000
            } else {
                8_000
            };
            for (table_id, sections) in &b.tables {
                let refs: Vec<&[u8]> = sections.iter().map(|x| &x[..]).collect();
                mux.set_table(
                    Pid::from_bits(EIT_PID),
                    key(*table_id, 0, b.service_id),
                    &refs,
                    ms(every),
                );
            }
        }
    }

    /// Refreshes TDT and TOT with the time now and the peers' EIT p/f other (call about
    /// once a second).
    pub(crate) fn tick(&mut self, mux: &mut Mux) {
        let now = utc_now();
        let offset_min = self
            .tz
            .offset_from_utc_datetime(&now)
            .fix()
            .local_minus_utc()
            / 60;
        let (tdt_s, tot_s) = (tdt(now), tot(now, &self.country, offset_min));
        mux.set_table(
            Pid::from_bits(TDT_PID),
            key(0x70, 0, 0),
            &[&tdt_s],
            ms(5000),
        );
        mux.set_table(
            Pid::from_bits(TDT_PID),
            key(0x73, 0, 0),
            &[&tot_s],
            ms(5000),
        );
        for k in 0..self.services.len() {
            if self.services[k].built_today != Some(now.date()) {
                self.send_week(k);
            }
            if self.services[k].by_clock {
                self.pf_by_clock(mux, k, now);
            }
        }
        if self.peers.is_empty() {
            return;
        }
        let every = if self.terrestrial { 16_000 } else { 8_000 };
        let board = self.board.pf.lock().unwrap_or_else(PoisonError::into_inner);
        for p in &mut self.peers {
            let (generation, present, following) = board
                .get(&(p.ts.0, p.service_id))
                .map_or((0, None, None), |(g, a, b)| (*g, a.as_ref(), b.as_ref()));
            if p.generation == Some(generation) {
                continue;
            }
            if p.generation.is_some() {
                p.version = (p.version + 1) & 0x1F;
            }
            p.generation = Some(generation);
            match eit_pf_table(
                false,
                p.service_id,
                p.ts,
                p.version,
                (present, following),
                p.charset,
            ) {
                Ok(s) => send(mux, EIT_PID, key(0x4F, p.ts.0, p.service_id), &s, every),
                Err(e) => {
                    tracing::warn!(service_id = p.service_id, error = %e, "EIT other not sent")
                }
            }
        }
    }
}
