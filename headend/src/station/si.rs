//! DVB SI in each station's output (EN 300 468, repetition per TS 101 211):
//! - SDT actual every second on PID 0x11, listing the station's services;
//! - per service, EIT present/following actual every 1.5 s and the EIT schedule
//!   (`[channel.si] days`) every 8 s (25 s terrestrial; limits 10 s and 30 s) on PID 0x12;
//! - TDT and TOT every 5 s on PID 0x14;
//! - with `[network]`, the NIT actual every 5 s on PID 0x10 (network name, every transport
//!   stream with its service list and logical channel numbers);
//! - in an MPTS, SDT other (every 5 s) and EIT p/f other (10 s, 20 s terrestrial) for the
//!   services of every other MPTS ("peers"), every 8 s (16 s terrestrial; limits 10 s and
//!   20 s), their present/following taken from what those stations really have on air,
//!   posted as [`PfPosted`] and handed to each station by its driver.
//!
//! The present event flips when the splicer reports an item on air (the real transition, not
//! the planned one). Each sub-table (one per service and table_id) has its own carousel, so
//! its sections are 25 ms apart and its version changes only with its content.

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use epg::eit_cache::EitSchedule;
use epg::network::{nit, sdt_sections, NitService, TransportStream};
use epg::schedule::Tz;
use epg::si::{eit_pf_table, tdt, tot, Charset, Event, Service};
use playout::mux::Mux;
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::Pid;

use crate::config::{ChannelConfig, Config, NetworkConfig, SiConfig};
use crate::eit_builder::{Built, EitJob};
use crate::station::OnAirProgramme;

const NIT_PID: u16 = 0x10;
const SDT_PID: u16 = 0x11;
const EIT_PID: u16 = 0x12;
const TDT_PID: u16 = 0x14;

/// What a station tells the others (the MPTS that carry EIT p/f other): a service's
/// present/following changed. The driver hands it to every other station
/// ([`StationSi::handle_peer`]).
#[derive(Clone, Debug)]
pub(crate) struct PfPosted {
    pub(crate) transport_stream_id: u16,
    pub(crate) service_id: u16,
    pub(crate) present: Option<Event>,
    pub(crate) following: Option<Event>,
}

/// What the SI of a station asks of its driver.
#[derive(Debug)]
pub(crate) enum SiOutput {
    /// Work for the EIT schedule builder ([`crate::eit_builder`]); its answer comes back
    /// through [`StationSi::handle_built`].
    Eit(EitJob),
    /// For the other stations.
    Pf(Box<PfPosted>),
}

/// The network as every station's SI sees it, built once from the config.
pub(crate) struct NetworkSi {
    /// The NIT sections (none without `[network]`).
    nit: Vec<Vec<u8>>,
    /// Each MPTS: (transport_stream_id, original_network_id, its services).
    mpts: Vec<((u16, u16), Vec<Service>, Charset)>,
    /// First version numbers of the tables (from the start instant).
    version: u8,
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
    /// The NIT of `config` (if it has a `[network]`) and the MPTS line-up, for a start at
    /// `utc_ns` (UTC, ns since 1970).
    pub(crate) fn new(config: &Config, utc_ns: i64) -> NetworkSi {
        let version = first_version(utc_ns);
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
            .map(|n| network_nit(config, n, &members, version))
            .unwrap_or_default();
        NetworkSi { nit, mpts, version }
    }
}

/// The NIT: every MPTS, then every channel not carried in one, each a transport stream.
fn network_nit<'a>(
    config: &'a Config,
    n: &NetworkConfig,
    members: &dyn Fn(&[String]) -> Vec<&'a ChannelConfig>,
    version: u8,
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
    match nit(n.network_id, version, &n.name, &streams, n.charset) {
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
    present: Option<Event>,
    following: Option<Event>,
    /// Whether its present/following changed since last sent (or was never sent).
    dirty: bool,
    /// Whether it was ever sent.
    sent: bool,
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
    /// What the driver is to do, oldest first.
    out: std::collections::VecDeque<SiOutput>,
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

fn naive(utc_ns: i64) -> NaiveDateTime {
    DateTime::from_timestamp_nanos(utc_ns).naive_utc()
}

fn ms(ms: u64) -> u64 {
    SYSTEM_CLOCK_HZ * ms / 1000
}

/// The carousel key of a sub-table: table_id, transport stream (for tables of other
/// streams) and table_id_extension.
fn key(table_id: u8, ts: u16, extension: u16) -> u64 {
    u64::from(table_id) << 32 | u64::from(ts) << 16 | u64::from(extension)
}

/// A first version number for a table, from the start instant: after a restart a receiver
/// that kept the old tables does not take new content for them.
fn first_version(utc_ns: i64) -> u8 {
    (utc_ns.div_euclid(60_000_000_000).rem_euclid(32)) as u8
}

fn send(mux: &mut Mux, pid: u16, key: u64, sections: &[Vec<u8>], every_ms: u64) {
    let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    mux.set_table(Pid::from_bits(pid), key, &refs, ms(every_ms));
}

impl StationSi {
    /// Starts the SI of a station carrying `channels` (those with SI enabled) as transport
    /// stream `transport_stream_id`, at `utc_ns`; `mpts`: whether it is an MPTS (which then
    /// carries SDT and EIT p/f other for the other MPTS). `None` when no channel has SI on.
    pub(crate) fn start(
        mux: &mut Mux,
        network: &NetworkSi,
        transport_stream_id: u16,
        channels: &[&ChannelConfig],
        mpts: bool,
        utc_ns: i64,
    ) -> Option<StationSi> {
        let on: Vec<&ChannelConfig> = channels.iter().copied().filter(|c| c.si.enabled).collect();
        let first = on.first()?;
        let version = network.version;
        let ts = (transport_stream_id, first.si.original_network_id);
        let services: Vec<Service> = on.iter().map(|c| service_of(c)).collect();
        match sdt_sections(true, ts, version, &services, first.si.charset) {
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
                match sdt_sections(false, *peer_ts, version, peer_services, *charset) {
                    Ok(s) => send(mux, SDT_PID, key(0x46, 0, peer_ts.0), &s, 5000),
                    Err(e) => {
                        tracing::error!(transport_stream_id = peer_ts.0, error = %e, "SDT other not sent")
                    }
                }
                peers.extend(peer_services.iter().map(|s| PeerService {
                    ts: *peer_ts,
                    service_id: s.service_id,
                    charset: *charset,
                    present: None,
                    following: None,
                    dirty: true,
                    sent: false,
                    version,
                }));
            }
        }
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
                    eit_version: version,
                    event_id: 0,
                    present: None,
                    following: None,
                    week: Vec::new(),
                    built_today: None,
                    by_clock: false,
                })
                .collect(),
            peers,
            out: Default::default(),
        };
        for c in &on {
            si.out.push_back(SiOutput::Eit(EitJob::Register {
                service_id: c.service_id,
                schedule: Box::new(
                    EitSchedule::new(c.service_id, ts.0, ts.1, c.si.days, c.si.charset)
                        .with_version(version),
                ),
            }));
        }
        for k in 0..si.services.len() {
            si.send_eit(mux, k);
            // Empty until the scheduler sends the week: the SDT says it is carried.
            si.send_week(k, utc_ns);
        }
        si.tick(mux, utc_ns);
        Some(si)
    }

    /// What the driver is to do next (EIT schedule work, present/following for the peers).
    pub(crate) fn poll_output(&mut self) -> Option<SiOutput> {
        self.out.pop_front()
    }

    /// The index of the service with `service_id`.
    fn service(&self, service_id: u16) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.service_id == service_id)
    }

    fn post(&mut self, k: usize) {
        let s = &self.services[k];
        self.out.push_back(SiOutput::Pf(Box::new(PfPosted {
            transport_stream_id: self.ts.0,
            service_id: s.service_id,
            present: s.present.clone(),
            following: s.following.clone(),
        })));
    }

    /// An item of the service with `service_id` went on air at `utc_ns`: it becomes the
    /// present event (started then, when the splicer put it on air), and `following` (if
    /// known) the next.
    pub(crate) fn on_air(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        (present, title): (Option<&OnAirProgramme>, &str),
        following: Option<&OnAirProgramme>,
        utc_ns: i64,
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
        // Whole seconds: the EIT's start_time has no finer field.
        e.start = naive(utc_ns - utc_ns.rem_euclid(1_000_000_000));
        e.running_status = 4;
        s.present = Some(e);
        s.following = following.map(|p| {
            let mut f = event(p, 0);
            f.event_id = s.event_id_for(&f);
            f
        });
        s.eit_version = (s.eit_version + 1) & 0x1F;
        self.post(k);
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
        self.post(k);
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
    pub(crate) fn set_week(
        &mut self,
        service_id: u16,
        week: &[(u16, OnAirProgramme)],
        utc_ns: i64,
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let events: Vec<Event> = week.iter().map(|(id, p)| event(p, *id)).collect();
        if events != self.services[k].week {
            self.services[k].week = events;
            self.send_week(k, utc_ns);
        }
    }

    /// The whole guide of the service with `service_id` from XMLTV: its EIT schedule, and
    /// from now on its present/following by the clock (see [`StationSi::tick`]).
    pub(crate) fn set_guide(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        guide: &[(u16, OnAirProgramme)],
        utc_ns: i64,
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        self.services[k].by_clock = true;
        self.set_week(service_id, guide, utc_ns);
        self.pf_by_clock(mux, k, naive(utc_ns));
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
        self.post(k);
        self.send_eit(mux, k);
    }

    /// Hands service `k`'s week to the EIT builder (from today, UTC); only the tables (4-day
    /// blocks) whose content changed come back, with a new version
    /// ([`StationSi::handle_built`]).
    fn send_week(&mut self, k: usize, utc_ns: i64) {
        let today = naive(utc_ns).date();
        let s = &mut self.services[k];
        s.built_today = Some(today);
        self.out.push_back(SiOutput::Eit(EitJob::Week {
            service_id: s.service_id,
            events: s.week.clone(),
            today,
        }));
    }

    /// Sends EIT schedule tables the builder has finished.
    pub(crate) fn handle_built(&mut self, mux: &mut Mux, b: Built) {
        let Some(k) = self.service(b.service_id) else {
            return;
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

    /// Another station's service changed its present/following: if this station carries
    /// its EIT p/f other, that is sent at the next [`StationSi::tick`].
    pub(crate) fn handle_peer(&mut self, pf: &PfPosted) {
        for p in &mut self.peers {
            if p.ts.0 == pf.transport_stream_id && p.service_id == pf.service_id {
                p.present.clone_from(&pf.present);
                p.following.clone_from(&pf.following);
                p.dirty = true;
            }
        }
    }

    /// Refreshes TDT and TOT with the time `utc_ns` and the peers' EIT p/f other (call once
    /// a second of output time).
    pub(crate) fn tick(&mut self, mux: &mut Mux, utc_ns: i64) {
        let now = naive(utc_ns - utc_ns.rem_euclid(1_000_000_000));
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
                self.send_week(k, utc_ns);
            }
            if self.services[k].by_clock {
                self.pf_by_clock(mux, k, now);
            }
        }
        let every = if self.terrestrial { 16_000 } else { 8_000 };
        for p in &mut self.peers {
            if !p.dirty {
                continue;
            }
            if p.sent {
                p.version = (p.version + 1) & 0x1F;
            }
            p.dirty = false;
            p.sent = true;
            match eit_pf_table(
                false,
                p.service_id,
                p.ts,
                p.version,
                (p.present.as_ref(), p.following.as_ref()),
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
