//! The DVB SI carousel of one transport stream (EN 300 468 §5.2; repetition rates of
//! TS 101 211 §4.4), sans-IO: the time (UTC) comes in as an argument, the tables go to a
//! [`playout::mux::Mux`]'s section carousels, EIT schedule work and news for the other
//! streams go out through [`Carousel::poll_output`].
//!
//! - SDT actual (§5.2.3) every second on PID 0x11, listing the stream's services;
//! - per service, EIT present/following actual (§5.2.4) every 1.5 s and the EIT schedule
//!   (its days) every 8 s (25 s terrestrial; limits 10 s and 30 s) on PID 0x12, less often
//!   if the schedules would take more than a tenth of the muxrate ([`EIT_SCHEDULE_SHARE`]);
//! - TDT (§5.2.5) and TOT (§5.2.6) every 5 s on PID 0x14;
//! - with a network ([`NetworkSpec`]), the NIT actual (§5.2.1) every 5 s on PID 0x10 (network
//!   name, every transport stream with its service list and logical channel numbers);
//! - in an MPTS, SDT other (every 5 s) and EIT p/f other for the services of every other
//!   MPTS ("peers"), every 8 s (16 s terrestrial; limits 10 s and 20 s), their
//!   present/following taken from what those streams really have on air, posted as
//!   [`PfPosted`] and handed to each carousel by its driver ([`Carousel::handle_peer`]).
//!
//! The present event flips when the caller reports an item on air ([`Carousel::on_air`]: the
//! real transition, not the planned one), or, for a service whose guide comes whole
//! ([`Carousel::set_guide`]), with the clock. Each sub-table (one per service and table_id)
//! has its own carousel in the muxer, so its sections are 25 ms apart, and its version
//! changes only with its content. The EIT schedule is encoded by whoever the driver hands
//! the [`EitJob`]s to ([`crate::eit_cache::EitBuilds`], on a thread or inline); the tables
//! that changed come back through [`Carousel::handle_built`].

use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use playout::mux::Mux;
use playout::time::{Ticks27M, SYSTEM_CLOCK_HZ};
use playout::ts::Pid;

use crate::eit_cache::{Built, EitJob, EitSchedule};
use crate::network::sdt_sections;
use crate::schedule::Tz;
use crate::si::{eit_pf_table, tdt, tot, Charset, Event, Service};

mod network;
mod service;

pub use network::{NetworkSi, NetworkSpec, StreamSpec};
use service::{PeerService, ServiceSi};

/// NIT actual (EN 300 468 §5.1.3, Table 1).
pub const NIT_PID: u16 = 0x10;
/// SDT actual and other.
pub const SDT_PID: u16 = 0x11;
/// EIT present/following and schedule.
pub const EIT_PID: u16 = 0x12;
/// TDT and TOT.
pub const TDT_PID: u16 = 0x14;

/// The EIT schedule actual's table_ids (4 days each).
const SCHEDULE_TABLES: std::ops::RangeInclusive<u8> = 0x50..=0x5F;

/// The EIT schedule of a stream's services takes at most 1/this of its muxrate: a tenth (a
/// week's guide of thirty programmes a day is a few kbit/s).
pub const EIT_SCHEDULE_SHARE: u64 = 10;

/// One service as the carousel carries it: its SDT entry and the settings of its EIT and
/// time tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// service_id (the program number).
    pub service_id: u16,
    /// Its name (service_descriptor).
    pub name: String,
    /// Its provider's name (service_descriptor).
    pub provider: String,
    /// service_type (0x01 digital television).
    pub service_type: u8,
    /// The character set of its texts (SDT, EIT).
    pub charset: Charset,
    /// Days of EIT schedule (1..=64).
    pub eit_days: u32,
    /// ISO 3166 alpha-3 country of the TOT's local_time_offset.
    pub country: String,
    /// The time zone of the TOT's local_time_offset.
    pub timezone: Tz,
    /// original_network_id (SDT, EIT).
    pub original_network_id: u16,
    /// Terrestrial repetition rates (TS 101 211 §4.4) rather than cable/satellite ones.
    pub terrestrial: bool,
    /// Logical channel number in the NIT (1..=1023), if any.
    pub lcn: Option<u16>,
}

impl ServiceSpec {
    /// Its entry in the SDT actual (EIT p/f and schedule carried).
    fn service(&self) -> Service {
        Service {
            service_id: self.service_id,
            name: self.name.clone(),
            provider: self.provider.clone(),
            service_type: self.service_type,
            eit_pf: true,
            eit_schedule: true,
        }
    }
}

/// What a carousel tells the others (the MPTS that carry EIT p/f other): a service's
/// present/following changed. The driver hands it to every other carousel
/// ([`Carousel::handle_peer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PfPosted {
    /// The transport stream that carries the service.
    pub transport_stream_id: u16,
    /// The service.
    pub service_id: u16,
    /// Its present event, if any.
    pub present: Option<Event>,
    /// Its following event, if any.
    pub following: Option<Event>,
}

/// What a carousel asks of its driver.
#[derive(Debug)]
pub enum SiOutput {
    /// Work for the EIT schedule builder ([`crate::eit_cache::EitBuilds`]); its answer comes
    /// back through [`Carousel::handle_built`].
    Eit(EitJob),
    /// For the other carousels ([`Carousel::handle_peer`]).
    Pf(Box<PfPosted>),
}

/// The SI carousel of one transport stream.
#[derive(Debug)]
pub struct Carousel {
    ts: (u16, u16),
    tz: Tz,
    country: String,
    terrestrial: bool,
    services: Vec<ServiceSi>,
    peers: Vec<PeerService>,
    /// What the driver is to do, oldest first.
    out: VecDeque<SiOutput>,
}

impl Carousel {
    /// How often [`Carousel::tick`] is due: each second of output time.
    pub const TICK: Ticks27M = SYSTEM_CLOCK_HZ;

    /// Starts the SI of transport stream `transport_stream_id` carrying `services` (those
    /// with SI, in program order; the first gives the stream's original_network_id, charset,
    /// time zone, country and profile) on `network`, at `utc_ns` (UTC, ns since 1970);
    /// `mpts`: whether it is an MPTS (which then carries SDT and EIT p/f other for the other
    /// MPTS). `None` when `services` is empty.
    pub fn start(
        mux: &mut Mux,
        network: &NetworkSi,
        transport_stream_id: u16,
        services: &[ServiceSpec],
        mpts: bool,
        utc_ns: i64,
    ) -> Option<Carousel> {
        let first = services.first()?;
        let version = network.version;
        let ts = (transport_stream_id, first.original_network_id);
        let sdt: Vec<Service> = services.iter().map(ServiceSpec::service).collect();
        match sdt_sections(true, ts, version, &sdt, first.charset) {
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
                peers.extend(
                    peer_services
                        .iter()
                        .map(|s| PeerService::new(*peer_ts, s.service_id, *charset, version)),
                );
            }
        }
        let mut si = Carousel {
            ts,
            tz: first.timezone,
            country: first.country.clone(),
            terrestrial: first.terrestrial,
            services: services
                .iter()
                .map(|c| ServiceSi::new(c, version))
                .collect(),
            peers,
            out: VecDeque::new(),
        };
        for c in services {
            si.out.push_back(SiOutput::Eit(EitJob::Register {
                service_id: c.service_id,
                schedule: Box::new(
                    EitSchedule::new(c.service_id, ts.0, ts.1, c.eit_days, c.charset)
                        .with_version(version),
                ),
            }));
        }
        for k in 0..si.services.len() {
            si.send_eit(mux, k);
            // Empty until the caller sends the week: the SDT says it is carried.
            si.send_week(k, utc_ns);
        }
        si.tick(mux, utc_ns);
        Some(si)
    }

    /// What the driver is to do next (EIT schedule work, present/following for the peers).
    pub fn poll_output(&mut self) -> Option<SiOutput> {
        self.out.pop_front()
    }

    /// An item of the service with `service_id` went on air at `utc_ns`: `present` becomes
    /// the present event (started then, in whole seconds, and running), `following` (if
    /// known) the next. Their event_ids are the carousel's: the schedule's for an event it
    /// has (same start and title), otherwise one the schedule does not use. Ignored for a
    /// service whose guide goes by the clock ([`Carousel::set_guide`]).
    pub fn on_air(
        &mut self,
        mux: &mut Mux,
        service_id: u16,
        mut present: Event,
        following: Option<Event>,
        utc_ns: i64,
    ) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let s = &mut self.services[k];
        if s.by_clock {
            return;
        }
        present.event_id = s.event_id_for(&present);
        // Whole seconds: the EIT's start_time has no finer field.
        present.start = naive(utc_ns - utc_ns.rem_euclid(1_000_000_000));
        present.running_status = 4;
        s.present = Some(present);
        s.following = following.map(|mut f| {
            f.event_id = s.event_id_for(&f);
            f
        });
        s.eit_version = (s.eit_version + 1) & 0x1F;
        self.post(k);
        self.send_eit(mux, k);
    }

    /// What follows on the service with `service_id` changed (an edit of the next item): the
    /// following event is sent again if it differs (its event_id chosen as in
    /// [`Carousel::on_air`]). Ignored before the first [`Carousel::on_air`].
    pub fn set_following(&mut self, mux: &mut Mux, service_id: u16, following: Option<Event>) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        let s = &mut self.services[k];
        if s.by_clock || s.present.is_none() {
            return;
        }
        let f = following.map(|mut f| {
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

    /// The event_id the service with `service_id` has for an event starting at `start` with
    /// `title` in its week (its EIT schedule), if it has one: the id the EIT present event
    /// takes when it goes on air ([`Carousel::on_air`]).
    pub fn scheduled_event_id(
        &self,
        service_id: u16,
        start: chrono::NaiveDateTime,
        title: &str,
    ) -> Option<u16> {
        let s = &self.services[self.service(service_id)?];
        s.week
            .iter()
            .find(|w| w.start == start && w.title == title)
            .map(|w| w.event_id)
    }

    /// The next days of the service with `service_id` (events with their event_ids) as its
    /// EIT schedule (tables 0x50..), each section once every 8 s (within the cable/satellite
    /// prime period's 10 s; 25 s terrestrial, within 30 s): handed to the builder when it
    /// differs from the last week, a new version of each table that changes.
    pub fn set_week(&mut self, service_id: u16, week: Vec<Event>, utc_ns: i64) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        if week != self.services[k].week {
            self.services[k].week = week;
            self.send_week(k, utc_ns);
        }
    }

    /// The whole guide of the service with `service_id` (from XMLTV, say): its EIT schedule,
    /// and from now on its present/following by the clock (see [`Carousel::tick`]).
    pub fn set_guide(&mut self, mux: &mut Mux, service_id: u16, guide: Vec<Event>, utc_ns: i64) {
        let Some(k) = self.service(service_id) else {
            return;
        };
        self.services[k].by_clock = true;
        self.set_week(service_id, guide, utc_ns);
        self.pf_by_clock(mux, k, naive(utc_ns));
    }

    /// Sends EIT schedule tables the builder has finished.
    pub fn handle_built(&mut self, mux: &mut Mux, b: Built) {
        let Some(k) = self.service(b.service_id) else {
            return;
        };
        let every = if self.services[k].terrestrial {
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
        self.pace_schedule(mux, k, every);
    }

    /// Keeps service `k`'s EIT schedule within its share of the muxrate
    /// ([`EIT_SCHEDULE_SHARE`], split between the stream's services): each table once every
    /// `every_ms`, or, if its days at that rate would take more, as often as the share allows
    /// (said in the log). A guide of a programme a minute is about 1 Mbit/s at 8 s; at the
    /// repetition rates a receiver expects, it would leave a 3 Mbit/s channel's video late.
    fn pace_schedule(&mut self, mux: &mut Mux, k: usize, every_ms: u64) {
        let pid = Pid::from_bits(EIT_PID);
        let service_id = self.services[k].service_id;
        let bytes: u64 = SCHEDULE_TABLES
            .filter_map(|t| mux.table_bytes(pid, key(t, 0, service_id)))
            .map(|b| b as u64)
            .sum();
        let budget_bps =
            (mux.config().muxrate_bps / EIT_SCHEDULE_SHARE / self.services.len() as u64).max(1);
        // In whole seconds, so that a guide growing by an event does not retime it.
        let needed_ms = (bytes * 8).div_ceil(budget_bps) * 1000;
        let interval_ms = every_ms.max(needed_ms);
        let s = &mut self.services[k];
        if interval_ms != s.schedule_every_ms {
            if interval_ms > every_ms {
                tracing::warn!(
                    service_id,
                    schedule_bytes = bytes,
                    every_s = interval_ms as f64 / 1000.0,
                    limit_s = every_ms as f64 / 1000.0,
                    "EIT schedule too big for its share of the muxrate (a tenth, between the services): each table repeated less often than the limit"
                );
            } else if s.schedule_every_ms > every_ms {
                tracing::info!(
                    service_id,
                    every_s = every_ms as f64 / 1000.0,
                    "EIT schedule back at its repetition rate"
                );
            }
            s.schedule_every_ms = interval_ms;
        }
        for t in SCHEDULE_TABLES {
            mux.set_table_interval(pid, key(t, 0, service_id), ms(interval_ms));
        }
    }

    /// Another stream's service changed its present/following: if this carousel carries its
    /// EIT p/f other, that is sent at the next [`Carousel::tick`].
    pub fn handle_peer(&mut self, pf: &PfPosted) {
        for p in &mut self.peers {
            if p.ts.0 == pf.transport_stream_id && p.service_id == pf.service_id {
                p.present.clone_from(&pf.present);
                p.following.clone_from(&pf.following);
                p.dirty = true;
            }
        }
    }

    /// Refreshes TDT and TOT with the time `utc_ns` (in whole seconds), present/following of
    /// the services whose guide goes by the clock, the EIT schedule at midnight UTC, and the
    /// peers' EIT p/f other that changed. Call once every [`Carousel::TICK`] of output time.
    pub fn tick(&mut self, mux: &mut Mux, utc_ns: i64) {
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

    /// The index of the service with `service_id`.
    fn service(&self, service_id: u16) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.service_id == service_id)
    }

    /// Tells the peers service `k`'s present/following.
    fn post(&mut self, k: usize) {
        let s = &self.services[k];
        self.out.push_back(SiOutput::Pf(Box::new(PfPosted {
            transport_stream_id: self.ts.0,
            service_id: s.service_id,
            present: s.present.clone(),
            following: s.following.clone(),
        })));
    }

    /// Sends service `k`'s EIT p/f actual.
    fn send_eit(&self, mux: &mut Mux, k: usize) {
        let s = &self.services[k];
        let build = |present: Option<&Event>, following: Option<&Event>| {
            eit_pf_table(
                true,
                s.service_id,
                self.ts,
                s.eit_version,
                (present, following),
                s.charset,
            )
        };
        let sections = build(s.present.as_ref(), s.following.as_ref()).or_else(|e| {
            // Text written past validation (a file name, a schedule file edited by hand):
            // what the charset cannot hold shows as `?` rather than the old event staying.
            tracing::warn!(service_id = s.service_id, error = %e, "EIT text not codable; sent with `?` for it");
            let clean = |e: &Option<Event>| e.as_ref().map(|e| service::codable(e, s.charset));
            build(clean(&s.present).as_ref(), clean(&s.following).as_ref())
        });
        match sections {
            // A new present or following is for viewers now, not at the next repetition.
            Ok(sections) => send_now(mux, EIT_PID, key(0x4E, 0, s.service_id), &sections, 1500),
            Err(e) => tracing::error!(service_id = s.service_id, error = %e, "EIT not sent"),
        }
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
    /// ([`Carousel::handle_built`]).
    fn send_week(&mut self, k: usize, utc_ns: i64) {
        let today: NaiveDate = naive(utc_ns).date();
        let s = &mut self.services[k];
        s.built_today = Some(today);
        self.out.push_back(SiOutput::Eit(EitJob::Week {
            service_id: s.service_id,
            events: s.week.clone(),
            today,
        }));
    }
}

fn naive(utc_ns: i64) -> NaiveDateTime {
    DateTime::from_timestamp_nanos(utc_ns).naive_utc()
}

fn ms(ms: u64) -> Ticks27M {
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
    mux.set_table(Pid::from_bits(pid), key, &slices(sections), ms(every_ms));
}

/// [`send`] for a change viewers must see at once ([`Mux::set_table_now`]).
fn send_now(mux: &mut Mux, pid: u16, key: u64, sections: &[Vec<u8>], every_ms: u64) {
    mux.set_table_now(Pid::from_bits(pid), key, &slices(sections), ms(every_ms));
}

fn slices(sections: &[Vec<u8>]) -> Vec<&[u8]> {
    sections.iter().map(Vec::as_slice).collect()
}
