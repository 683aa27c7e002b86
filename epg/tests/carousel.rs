//! The SI carousel (`epg::carousel`) driven second by second on a simulated clock, its tables
//! sent through playout's muxer and read back from the packets (EN 300 468 §5.2, rates of
//! TS 101 211 §4.4):
//! - TDT and TOT every 5 s on PID 0x14, carrying the time the caller gave at the last tick,
//!   the TOT with the service's country and local time offset;
//! - EIT p/f actual: a new version when present or following changes, none when they do not;
//!   the present event takes the schedule's event_id, starts when it went on air, running;
//! - EIT schedule: a job per week that changes (and at midnight UTC), its tables on PID 0x12
//!   every 8 s once built;
//! - an MPTS sends its peers' EIT p/f other at the first tick after `handle_peer`, SDT other
//!   for them, and the NIT lists every transport stream.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use epg::carousel::{
    Carousel, NetworkSi, NetworkSpec, PfPosted, ServiceSpec, SiOutput, StreamSpec,
};
use epg::eit_cache::{EitBuilds, EitJob};
use epg::network::{parse_nit, parse_sdt};
use epg::si::{parse_eit, parse_eit_events, parse_utc_time, Charset, Event};
use playout::mux::{Mux, MuxConfig, Underflow};
use playout::psi::{Pat, SectionAssembler};
use playout::ts::{Pid, TsPacket};

/// 1000 packets a second: packet `k` leaves at `k` ms.
const MUXRATE: u64 = 188 * 8 * 1000;
const PER_SECOND: usize = 1000;
const ONID: u16 = 0x2001;

/// 2026-11-23 23:59:50 UTC: ten seconds before midnight.
fn start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(23, 59, 50)
        .unwrap()
}

fn ns(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_nanos_opt().unwrap()
}

fn spec(service_id: u16, name: &str) -> ServiceSpec {
    ServiceSpec {
        service_id,
        name: name.to_owned(),
        provider: "测试台".to_owned(),
        service_type: 0x01,
        charset: Charset::Utf8,
        eit_days: 7,
        country: "CHN".to_owned(),
        timezone: "Asia/Shanghai".parse().unwrap(),
        original_network_id: ONID,
        terrestrial: false,
        lcn: Some(service_id),
    }
}

fn event(event_id: u16, start: NaiveDateTime, minutes: u64, title: &str) -> Event {
    Event {
        event_id,
        start,
        duration_s: minutes * 60,
        running_status: 1,
        language: "zho".to_owned(),
        title: title.to_owned(),
        content: Some(0x20),
        ..Event::default()
    }
}

/// The network: MPTS 101 (services 1, 2), MPTS 102 (service 3), a channel on its own (4).
fn network() -> NetworkSi {
    let stream = |tsid: u16, mpts: bool, services: Vec<ServiceSpec>| StreamSpec {
        transport_stream_id: tsid,
        original_network_id: ONID,
        charset: Charset::Utf8,
        mpts,
        services,
    };
    NetworkSi::new(
        Some(&NetworkSpec {
            network_id: 8193,
            name: "测试网络".to_owned(),
            charset: Charset::Utf8,
        }),
        &[
            stream(101, true, vec![spec(1, "一台"), spec(2, "二台")]),
            stream(102, true, vec![spec(3, "三台")]),
            stream(40, false, vec![spec(4, "四台")]),
        ],
        ns(start()),
    )
}

/// One transport stream on the air: the muxer, its carousel, the EIT builder done inline,
/// every section sent (with its time in ms from the start) and what the carousel posted.
struct Air {
    mux: Mux,
    si: Carousel,
    builds: EitBuilds,
    asm: HashMap<u16, SectionAssembler>,
    /// (ms from the start, PID, section).
    sections: Vec<(u64, u16, Vec<u8>)>,
    jobs: Vec<EitJob>,
    posted: Vec<PfPosted>,
    /// Whole seconds run.
    secs: i64,
}

impl Air {
    fn start(network: &NetworkSi, tsid: u16, services: &[ServiceSpec], mpts: bool) -> Air {
        let mut cfg = MuxConfig::new(MUXRATE);
        cfg.transport_stream_id = tsid;
        let mut mux = Mux::new(cfg, Vec::new());
        let si = Carousel::start(&mut mux, network, tsid, services, mpts, ns(start())).unwrap();
        let mut air = Air {
            mux,
            si,
            builds: EitBuilds::default(),
            asm: HashMap::new(),
            sections: Vec::new(),
            jobs: Vec::new(),
            posted: Vec::new(),
            secs: 0,
        };
        air.drain();
        air
    }

    /// UTC now (whole seconds since the start).
    fn utc_ns(&self) -> i64 {
        ns(start()) + self.secs * 1_000_000_000
    }

    /// Does what the carousel asks: EIT jobs through the builder, posts kept.
    fn drain(&mut self) {
        while let Some(out) = self.si.poll_output() {
            match out {
                SiOutput::Eit(job) => {
                    self.jobs.push(job.clone());
                    if let Some(built) = self.builds.apply(0, job) {
                        self.si.handle_built(&mut self.mux, built);
                    }
                }
                SiOutput::Pf(pf) => self.posted.push(*pf),
            }
        }
    }

    /// Emits `ms` milliseconds of output, keeping every SI section.
    fn emit_ms(&mut self, ms: usize) {
        let first = self.mux.stats().packets;
        let mut buf = BytesMut::new();
        self.mux.emit(&mut buf, ms, Underflow::Stuff);
        for (k, raw) in buf.chunks_exact(188).enumerate() {
            let p = TsPacket::new(Bytes::copy_from_slice(raw)).unwrap();
            let pid = p.pid().value();
            if (0x10..=0x14).contains(&pid) || pid == 0 {
                let at = first + k as u64;
                let out = &mut self.sections;
                self.asm
                    .entry(pid)
                    .or_default()
                    .push(&p, true, |s| out.push((at, pid, s.to_vec())));
            }
        }
    }

    /// Runs `secs` seconds: each second's packets, then the tick at the new second.
    fn run(&mut self, secs: i64) {
        for _ in 0..secs {
            self.emit_ms(PER_SECOND);
            self.secs += 1;
            let utc = self.utc_ns();
            self.si.tick(&mut self.mux, utc);
            self.drain();
        }
    }

    /// Sections of `table_id` sent at or after `from_ms`: (ms, section).
    fn table(&self, table_id: u8, from_ms: u64) -> Vec<(u64, &[u8])> {
        self.sections
            .iter()
            .filter(|(at, _, s)| s[0] == table_id && *at >= from_ms)
            .map(|(at, _, s)| (*at, s.as_slice()))
            .collect()
    }

    /// The PID a table went out on (all of its sections).
    fn pids(&self, table_id: u8) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .sections
            .iter()
            .filter(|(_, _, s)| s[0] == table_id)
            .map(|(_, pid, _)| *pid)
            .collect();
        v.dedup();
        v
    }
}

fn version(section: &[u8]) -> u8 {
    (section[5] >> 1) & 0x1F
}

/// The versions a table went through, in order, each once.
fn versions(sections: &[(u64, &[u8])]) -> Vec<u8> {
    let mut v: Vec<u8> = sections.iter().map(|(_, s)| version(s)).collect();
    v.dedup();
    v
}

fn time_of(section: &[u8]) -> NaiveDateTime {
    parse_utc_time(section[3..8].try_into().unwrap()).unwrap()
}

#[test]
fn tdt_and_tot_every_five_seconds_with_the_time_given() {
    let net = network();
    let mut air = Air::start(&net, 40, &[spec(4, "四台")], false);
    air.run(21);
    for table_id in [0x70, 0x73] {
        let sent = air.table(table_id, 0);
        assert_eq!(air.pids(table_id), [0x14]);
        assert_eq!(
            sent.len(),
            5,
            "{table_id:#04x} at 0, 5, 10, 15, 20 s: {sent:?}"
        );
        for pair in sent.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                (4970..5030).contains(&gap),
                "{table_id:#04x}: {gap} ms apart"
            );
        }
        for (at, s) in &sent {
            // The time of the last tick: the whole second the section goes out in.
            let want = start() + Duration::seconds((*at / 1000) as i64);
            assert_eq!(time_of(s), want, "{table_id:#04x} sent at {at} ms");
        }
    }
    // Across midnight UTC; Shanghai is 8 hours ahead, no change planned.
    let (_, tot) = air.table(0x73, 0).pop().unwrap();
    assert_eq!(
        time_of(tot).date(),
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    );
    let d = &tot[10..tot.len() - 4];
    assert_eq!(d[0], 0x58, "local_time_offset_descriptor");
    assert_eq!(&d[2..5], b"CHN");
    assert_eq!(d[5] & 1, 0, "polarity: east of Greenwich");
    assert_eq!(&d[6..8], &[0x08, 0x00], "+08:00");
}

#[test]
fn eit_pf_version_changes_only_with_its_content() {
    let net = network();
    let mut air = Air::start(&net, 40, &[spec(4, "四台")], false);
    let first = net.version();
    let t = start();
    let week = vec![
        event(7001, t + Duration::seconds(12), 30, "新闻"),
        event(7002, t + Duration::minutes(31), 30, "天气"),
    ];
    air.si.set_week(4, week.clone(), air.utc_ns());
    air.drain();
    air.run(2);

    // The news goes on air 0.3 s late: the schedule's event, started when it really did.
    let on_air = air.utc_ns() + 300_000_000;
    let mut present = week[0].clone();
    present.event_id = 0;
    let mut following = week[1].clone();
    following.event_id = 0;
    air.si
        .on_air(&mut air.mux, 4, present, Some(following.clone()), on_air);
    air.drain();
    air.run(3);
    // Told again what follows, unchanged: no new version, nothing posted.
    air.si.set_following(&mut air.mux, 4, Some(following));
    air.drain();
    air.run(3);
    // An edit: something else follows.
    let edited = event(0, t + Duration::minutes(31), 30, "体育");
    air.si.set_following(&mut air.mux, 4, Some(edited));
    air.drain();
    air.run(3);

    let pf = air.table(0x4E, 0);
    assert_eq!(air.pids(0x4E), [0x12]);
    assert_eq!(
        versions(&pf),
        [first, (first + 1) & 0x1F, (first + 2) & 0x1F]
    );
    assert_eq!(air.posted.len(), 2, "one post per change: {:?}", air.posted);
    let (_, last) = pf.iter().rev().find(|(_, s)| s[6] == 0).unwrap();
    let (_, Some(p)) = parse_eit(last).unwrap() else {
        panic!("a present event")
    };
    assert_eq!(p.event_id, 7001, "the schedule's event_id");
    assert_eq!(p.title, "新闻");
    assert_eq!(p.running_status, 4);
    assert_eq!(
        p.start,
        t + Duration::seconds(2),
        "on air, in whole seconds"
    );
    let (_, last) = pf.iter().rev().find(|(_, s)| s[6] == 1).unwrap();
    let (_, Some(f)) = parse_eit(last).unwrap() else {
        panic!("a following event")
    };
    assert_eq!(f.title, "体育");
    assert!(
        f.event_id != 7001 && f.event_id != 7002,
        "not in the schedule: an event_id the schedule does not use"
    );
    // Sent every 1.5 s; a new version at once (both sections, 25 ms apart), then half a
    // cycle later section 0 again and the 1.5 s from there (the first version too).
    let zeros: Vec<(u64, u8)> = pf
        .iter()
        .filter(|(_, s)| s[6] == 0)
        .map(|(at, s)| (*at, (s[5] >> 1) & 0x1F))
        .collect();
    for (k, pair) in zeros.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let after_change = k == 0 || zeros[k - 1].1 != pair[0].1;
        if pair[1].1 != pair[0].1 {
            assert!((25..1530).contains(&gap), "{zeros:?}");
        } else if after_change {
            assert!((760..800).contains(&gap), "{zeros:?}");
        } else {
            assert!((1470..1530).contains(&gap), "{zeros:?}");
        }
    }
}

#[test]
fn eit_schedule_jobs_for_the_week_and_its_tables() {
    let net = network();
    let mut air = Air::start(&net, 40, &[spec(4, "四台")], false);
    // At the start: the service registered, then its (empty) week from today.
    let today = start().date();
    assert!(matches!(
        air.jobs.as_slice(),
        [
            EitJob::Register { service_id: 4, .. },
            EitJob::Week { service_id: 4, events, today: d },
        ] if events.is_empty() && *d == today
    ));
    let week: Vec<Event> = (0..7 * 24)
        .map(|h| {
            let at = today.and_hms_opt(0, 0, 0).unwrap() + Duration::hours(h);
            event(h as u16 + 1, at, 60, &format!("节目 {h}"))
        })
        .collect();
    air.si.set_week(4, week.clone(), air.utc_ns());
    air.si.set_week(4, week.clone(), air.utc_ns());
    air.drain();
    assert_eq!(air.jobs.len(), 3, "the same week twice: one job");
    assert!(
        matches!(&air.jobs[2], EitJob::Week { events, today: d, .. } if *events == week && *d == today)
    );
    air.run(9);
    assert_eq!(air.jobs.len(), 3, "no job while nothing changes");
    // Table 0x50 (the first 4 days from today) is sent every 8 s, at the version after the
    // empty week's (replaced before it went out).
    let days1to4 = air.table(0x50, 0);
    assert_eq!(air.pids(0x50), [0x12]);
    assert_eq!(versions(&days1to4), [(net.version() + 1) & 0x1F]);
    let mut seen: Vec<Event> = Vec::new();
    for (_, s) in &days1to4 {
        seen.extend(parse_eit_events(s).unwrap().1);
    }
    seen.sort_by_key(|e| e.event_id);
    seen.dedup();
    let titles =
        |events: &[Event]| -> Vec<String> { events.iter().map(|e| e.title.clone()).collect() };
    assert_eq!(titles(&seen), titles(&week[..4 * 24]));
    let section0: Vec<u64> = days1to4
        .iter()
        .filter(|(_, s)| s[6] == 0)
        .map(|(at, _)| *at)
        .collect();
    assert!(section0.len() >= 2, "{section0:?}");
    assert!(
        (7970..8030).contains(&(section0[1] - section0[0])),
        "{section0:?}"
    );
    // Midnight UTC (10 s after the start): the window moves to the new day.
    air.run(2);
    let moved = &air.jobs[3..];
    assert!(
        matches!(moved, [EitJob::Week { today: d, .. }] if *d == today.succ_opt().unwrap()),
        "{moved:?}"
    );
}

#[test]
fn an_mpts_sends_its_peers_eit_other_at_the_next_tick() {
    let net = network();
    let mut one = Air::start(&net, 101, &[spec(1, "一台"), spec(2, "二台")], true);
    let mut three = Air::start(&net, 102, &[spec(3, "三台")], true);
    one.run(2);
    three.run(2);

    // The NIT, in both, lists the three transport streams with their numbers.
    for air in [&one, &three] {
        let (_, nit) = air.table(0x40, 0)[0];
        let nit = parse_nit(nit).unwrap();
        assert_eq!(nit.name.as_deref(), Some("测试网络"));
        let listed: Vec<(u16, Vec<Option<u16>>)> = nit
            .streams
            .iter()
            .map(|s| {
                (
                    s.transport_stream_id,
                    s.services.iter().map(|x| x.lcn).collect(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                (101, vec![Some(1), Some(2)]),
                (102, vec![Some(3)]),
                (40, vec![Some(4)])
            ]
        );
        assert_eq!(air.pids(0x40), [0x10]);
    }
    let (_, pat) = one.table(0x00, 0)[0];
    assert_eq!(
        Pat::parse(pat).unwrap().network_pid,
        Some(Pid::from_bits(0x10))
    );
    // SDT other of MPTS 101 lists 102's service, with no EIT schedule other.
    let (_, sdt) = one.table(0x46, 0)[0];
    let sdt = parse_sdt(sdt).unwrap();
    assert_eq!(sdt.transport_stream_id, 102);
    assert_eq!(sdt.services.len(), 1);
    assert!(sdt.services[0].eit_pf && !sdt.services[0].eit_schedule);
    assert!(one.table(0x46, 0).iter().all(|(_, s)| s[3..5] == [0, 102]));

    // Service 3 goes on air in 102; 101 hears of it.
    let news = event(0, start(), 30, "三台新闻");
    let utc = three.utc_ns();
    three.si.on_air(&mut three.mux, 3, news, None, utc);
    three.drain();
    let [post] = three.posted.as_slice() else {
        panic!("one post: {:?}", three.posted)
    };
    assert_eq!((post.transport_stream_id, post.service_id), (102, 3));
    one.si.handle_peer(post);
    let heard = one.mux.stats().packets;
    one.emit_ms(500);
    let other_with = |air: &Air, from: u64| -> Vec<(u64, Option<String>)> {
        air.table(0x4F, from)
            .iter()
            .filter(|(_, s)| s[6] == 0)
            .map(|(at, s)| (*at, parse_eit(s).unwrap().1.map(|e| e.title)))
            .collect()
    };
    assert!(
        other_with(&one, heard)
            .iter()
            .all(|(_, t)| t.as_deref() != Some("三台新闻")),
        "not before the tick"
    );
    one.secs += 1;
    let tick = one.mux.stats().packets;
    let utc = one.utc_ns();
    one.si.tick(&mut one.mux, utc);
    one.drain();
    one.emit_ms(9000);
    let after = other_with(&one, tick);
    let (at, _) = after
        .iter()
        .find(|(_, t)| t.as_deref() == Some("三台新闻"))
        .unwrap_or_else(|| panic!("EIT other with the news after the tick: {after:?}"));
    assert!(at - tick <= 8030, "within one 8 s cycle: {} ms", at - tick);
    let pf = one.table(0x4F, 0);
    assert_eq!(one.pids(0x4F), [0x12]);
    let first = net.version();
    assert_eq!(versions(&pf), [first, (first + 1) & 0x1F]);
    assert!(pf
        .iter()
        .all(|(_, s)| s[3..5] == [0, 3] && s[8..10] == [0, 102]));
    // 102 does not carry EIT other for itself.
    assert!(three
        .table(0x4F, 0)
        .iter()
        .all(|(_, s)| s[8..10] == [0, 101]));
}

/// A guide of a programme a minute (a week of them is about half a megabyte of EIT
/// schedule): each table goes out less often than every 8 s, so that the schedule keeps to a
/// tenth of the muxrate, every event still carried.
#[test]
fn a_huge_eit_schedule_keeps_to_its_share_of_the_muxrate() {
    let net = network();
    let mut air = Air::start(&net, 40, &[spec(4, "四台")], false);
    let today = start().date();
    let week: Vec<Event> = (0..7 * 24 * 60)
        .map(|m| {
            let at = today.and_hms_opt(0, 0, 0).unwrap() + Duration::minutes(m);
            event(
                (m % 0xFFFF) as u16 + 1,
                at,
                1,
                &format!("第 {m} 分钟的节目"),
            )
        })
        .collect();
    air.si.set_week(4, week.clone(), air.utc_ns());
    air.drain();
    // Past midnight UTC (the window moves on a day), then 90 s.
    air.run(20);
    let from_ms = 20 * PER_SECOND as u64;
    air.run(90);
    // The share: packets of schedule sections against the output, over the last 90 s.
    let schedule: Vec<(u64, &[u8])> = (0x50..=0x5F).flat_map(|t| air.table(t, from_ms)).collect();
    let packets: usize = schedule
        .iter()
        .map(|(_, s)| (s.len() + 1).div_ceil(184))
        .sum();
    let share = packets as f64 / (90 * PER_SECOND) as f64;
    assert!(
        (0.05..=0.105).contains(&share),
        "EIT schedule {share:.3} of the output"
    );
    // Section 0 of table 0x50 repeats at the stretched interval (not 8 s).
    let section0: Vec<u64> = air
        .table(0x50, from_ms)
        .iter()
        .filter(|(_, s)| s[6] == 0)
        .map(|(at, _)| *at)
        .collect();
    assert!(section0.len() >= 2, "{section0:?}");
    let gap = section0[1] - section0[0];
    assert!(
        (12_000..60_000).contains(&gap),
        "{gap} ms between repetitions"
    );
    // Every event of the table's four days is carried.
    let mut seen: Vec<u16> = air
        .table(0x50, from_ms)
        .iter()
        .flat_map(|(_, s)| parse_eit_events(s).unwrap().1)
        .map(|e| e.event_id)
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() >= 4 * 24 * 60, "{} events", seen.len());
}
