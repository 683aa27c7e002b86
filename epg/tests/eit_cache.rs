//! The incremental EIT schedule (`epg::eit_cache`) against the from-scratch one
//! (`epg::si::eit_schedule`): a fresh build is byte-identical; after any sequence of edits
//! (title changed, event moved, deleted, added, day rollover) every table is byte-identical
//! to a fresh build at its own version, the sections parse back to exactly the current
//! events, unchanged tables keep their version and `Bytes`, and changed ones bump by 1.

use bytes::Bytes;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use epg::eit_cache::EitSchedule;
use epg::si::{eit_schedule, parse_eit_events, Charset, Event};
use proptest::prelude::*;

const SID: u16 = 101;
const TSID: u16 = 7;
const ONID: u16 = 0x2001;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).unwrap()
}

/// Half-hour programmes from `today` 00:00 for `days` days, with descriptions of 100-200
/// characters (a few sections per segment now and then).
fn week(days: i64) -> Vec<Event> {
    (0..days * 48)
        .map(|k| Event {
            event_id: k as u16 + 1,
            start: midnight(today()) + Duration::minutes(30 * k),
            duration_s: 1800,
            running_status: 1,
            language: "zho".into(),
            title: format!("新闻联播 第{k}期"),
            text: String::new(),
            extended: "今天的节目介绍，内容丰富。".repeat(8 + (k as usize % 9)),
            content: Some(0x20),
            min_age: if k % 5 == 0 { 12 } else { 0 },
        })
        .collect()
}

/// Every table's (table_id, version, sections).
fn snapshot(s: &EitSchedule) -> Vec<(u8, u8, Vec<Bytes>)> {
    s.tables()
        .map(|t| (t.table_id, t.version, t.sections.to_vec()))
        .collect()
}

/// The sections of table `table_id` built from scratch at `version`.
fn scratch_table(
    events: &[Event],
    today: NaiveDate,
    days: u32,
    version: u8,
    table_id: u8,
    charset: Charset,
) -> Vec<Vec<u8>> {
    eit_schedule(SID, TSID, ONID, version, events, today, days, charset)
        .unwrap()
        .into_iter()
        .filter(|s| s[0] == table_id)
        .collect()
}

/// The events of the window, in the order the sections carry them.
fn in_window(events: &[Event], today: NaiveDate, days: u32) -> Vec<Event> {
    let (from, to) = (
        midnight(today),
        midnight(today) + Duration::days(i64::from(days)),
    );
    let mut v: Vec<Event> = events
        .iter()
        .filter(|e| e.start >= from && e.start < to)
        .cloned()
        .collect();
    v.sort_by_key(|e| e.start);
    v
}

fn parsed(s: &EitSchedule) -> Vec<Event> {
    s.sections()
        .iter()
        .flat_map(|sec| parse_eit_events(sec).unwrap().1)
        .collect()
}

/// Checks one update against the from-scratch oracle; returns nothing, panics on a mismatch.
fn check_update(
    before: &[(u8, u8, Vec<Bytes>)],
    s: &EitSchedule,
    changed: &[u8],
    events: &[Event],
    today: NaiveDate,
    days: u32,
    charset: Charset,
) {
    let after = snapshot(s);
    assert_eq!(after.len(), before.len());
    for ((id, v0, old), (id1, v1, new)) in before.iter().zip(&after) {
        assert_eq!(id, id1);
        let unbumped = scratch_table(events, today, days, *v0, *id, charset);
        let differs =
            unbumped.len() != old.len() || unbumped.iter().zip(old).any(|(a, b)| a[..] != b[..]);
        if differs {
            assert_eq!(*v1, (v0 + 1) % 32, "table {id:#04x} changed: version + 1");
            assert!(changed.contains(id), "table {id:#04x} reported changed");
        } else {
            assert_eq!(v1, v0, "table {id:#04x} unchanged: same version");
            assert!(!changed.contains(id), "table {id:#04x} not reported");
            assert!(
                old.iter()
                    .zip(new)
                    .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len()),
                "table {id:#04x} unchanged: same Bytes"
            );
        }
        let fresh = scratch_table(events, today, days, *v1, *id, charset);
        let new: Vec<Vec<u8>> = new.iter().map(|b| b.to_vec()).collect();
        assert_eq!(
            new, fresh,
            "table {id:#04x} as a fresh build at version {v1}"
        );
    }
    assert_eq!(parsed(s), in_window(events, today, days));
}

#[test]
fn fresh_build_is_byte_identical_to_eit_schedule() {
    let events = week(9);
    for days in [1, 3, 4, 5, 7, 8, 9] {
        for charset in [Charset::Utf8, Charset::Gb2312] {
            for version in [0, 5, 31] {
                let mut s = EitSchedule::new(SID, TSID, ONID, days, charset).with_version(version);
                let u = s.update(&events, today()).unwrap();
                let scratch =
                    eit_schedule(SID, TSID, ONID, version, &events, today(), days, charset)
                        .unwrap();
                let ours: Vec<Vec<u8>> = s.sections().iter().map(|b| b.to_vec()).collect();
                assert_eq!(ours, scratch, "{days} days, {charset:?}, version {version}");
                let tables = days.div_ceil(4) as usize;
                assert_eq!(u.segments_encoded, days as usize * 8);
                assert_eq!(u.sections_emitted, scratch.len());
                assert_eq!(
                    u.changed_tables,
                    (0x50..0x50 + tables as u8).collect::<Vec<_>>()
                );
                assert!(u.new_window);
                assert!(s.tables().all(|t| t.version == version));
            }
        }
    }
}

#[test]
fn same_events_touch_nothing() {
    let events = week(7);
    let mut s = EitSchedule::new(SID, TSID, ONID, 7, Charset::Utf8);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    let u = s.update(&events.clone(), today()).unwrap();
    assert_eq!(u.segments_encoded, 0);
    assert_eq!(u.sections_emitted, 0);
    assert!(u.changed_tables.is_empty());
    assert!(!u.new_window);
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today(),
        7,
        Charset::Utf8,
    );
}

#[test]
fn one_title_edit_re_encodes_one_segment_and_bumps_one_table() {
    let mut events = week(7);
    let mut s = EitSchedule::new(SID, TSID, ONID, 7, Charset::Utf8).with_version(3);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    // Tomorrow 20:00 (segment 8 + 6 of table 0x50).
    let k = 48 + 40;
    events[k].title = "特别节目".into();
    let u = s.update(&events, today()).unwrap();
    assert_eq!(u.segments_encoded, 1);
    assert_eq!(u.changed_tables, [0x50]);
    assert_eq!(u.sections_emitted, before[0].2.len());
    assert_eq!(s.tables().map(|t| t.version).collect::<Vec<_>>(), [4, 3]);
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today(),
        7,
        Charset::Utf8,
    );
    // Day 5 is in table 0x51: only it moves.
    let before = snapshot(&s);
    events[4 * 48 + 3].extended.push_str("（重播）");
    let u = s.update(&events, today()).unwrap();
    assert_eq!(
        (u.segments_encoded, u.changed_tables.as_slice()),
        (1, &[0x51][..])
    );
    assert_eq!(s.tables().map(|t| t.version).collect::<Vec<_>>(), [4, 4]);
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today(),
        7,
        Charset::Utf8,
    );
}

#[test]
fn a_longer_last_segment_moves_last_section_number_of_the_whole_table() {
    let mut events = week(7);
    let mut s = EitSchedule::new(SID, TSID, ONID, 7, Charset::Utf8);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    // The last segment of table 0x50 (day 4, 21:00-24:00) grows by sections.
    for e in &mut events[4 * 48 - 6..4 * 48] {
        e.extended = "很长的节目介绍。".repeat(90);
    }
    let u = s.update(&events, today()).unwrap();
    assert_eq!(
        (u.segments_encoded, u.changed_tables.as_slice()),
        (1, &[0x50][..])
    );
    let t = s.tables().next().unwrap();
    assert_ne!(
        t.sections[0][7], before[0].2[0][7],
        "last_section_number moved"
    );
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today(),
        7,
        Charset::Utf8,
    );
}

#[test]
fn day_rollover_encodes_only_the_new_day() {
    let events = week(9);
    let mut s = EitSchedule::new(SID, TSID, ONID, 7, Charset::Utf8);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    let tomorrow = today().succ_opt().unwrap();
    let u = s.update(&events, tomorrow).unwrap();
    assert!(u.new_window);
    assert_eq!(u.segments_encoded, 8, "only the new last day is encoded");
    assert_eq!(u.changed_tables, [0x50, 0x51]);
    assert_eq!(u.sections_emitted, s.sections().len());
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        tomorrow,
        7,
        Charset::Utf8,
    );
    // Back one day: the cached days are found again; the first day is encoded anew.
    let before = snapshot(&s);
    let u = s.update(&events, today()).unwrap();
    assert_eq!(u.segments_encoded, 8);
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today(),
        7,
        Charset::Utf8,
    );
}

#[test]
fn empty_tables_keep_their_version_across_a_rollover() {
    // Events on the first day only: after the rollover table 0x51 (days 5-8) is still all
    // empty sections, byte for byte.
    let events: Vec<Event> = week(1);
    let mut s = EitSchedule::new(SID, TSID, ONID, 8, Charset::Utf8);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    let u = s.update(&events, today().succ_opt().unwrap()).unwrap();
    assert_eq!(u.changed_tables, [0x50]);
    check_update(
        &before,
        &s,
        &u.changed_tables,
        &events,
        today().succ_opt().unwrap(),
        8,
        Charset::Utf8,
    );
}

#[test]
fn version_wraps_mod_32() {
    let mut events = week(4);
    let mut s = EitSchedule::new(SID, TSID, ONID, 4, Charset::Utf8).with_version(31);
    s.update(&events, today()).unwrap();
    events[0].title = "改".into();
    s.update(&events, today()).unwrap();
    assert_eq!(s.tables().next().unwrap().version, 0);
}

#[test]
fn text_error_changes_nothing() {
    let events: Vec<Event> = week(2)
        .into_iter()
        .map(|mut e| {
            e.title = format!("News {}", e.event_id);
            e.extended = "Tonight".into();
            e
        })
        .collect();
    let mut s = EitSchedule::new(SID, TSID, ONID, 2, Charset::Latin);
    s.update(&events, today()).unwrap();
    let before = snapshot(&s);
    let mut bad = events.clone();
    bad[10].title = "新闻".into();
    assert!(s.update(&bad, today()).is_err());
    assert_eq!(snapshot(&s), before);
    let u = s.update(&events, today()).unwrap();
    assert_eq!(u.segments_encoded, 0);
}

#[derive(Clone, Debug)]
enum Edit {
    Title(usize, String),
    /// Move by this many minutes (possibly into another day or table).
    Move(usize, i64),
    Delete(usize),
    /// A new event this many minutes into the window.
    Add(i64, String, usize),
    Rollover,
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), "[新闻联播天气预报体育电影剧场少儿动画a-z ]{0,12}").prop_map(|(i, t)| Edit::Title(i, t)),
        3 => (any::<usize>(), -3000i64..3000).prop_map(|(i, m)| Edit::Move(i, m)),
        2 => any::<usize>().prop_map(Edit::Delete),
        2 => (0i64..14_000, "[新闻联播天气预报体育电影]{1,8}", 0usize..200).prop_map(|(m, t, n)| Edit::Add(m, t, n)),
        1 => Just(Edit::Rollover),
    ]
}

fn apply(edit: &Edit, events: &mut Vec<Event>, today: &mut NaiveDate) {
    let len = events.len();
    match edit.clone() {
        Edit::Title(i, t) if len > 0 => events[i % len].title = t,
        Edit::Move(i, m) if len > 0 => events[i % len].start += Duration::minutes(m),
        Edit::Delete(i) if len > 0 => {
            events.remove(i % len);
        }
        Edit::Add(m, title, n) => events.push(Event {
            event_id: 60_000 + len as u16,
            start: midnight(*today) + Duration::minutes(m),
            duration_s: 900,
            running_status: 4,
            language: "zho".into(),
            title,
            text: "简介".into(),
            extended: "新加的节目。".repeat(n / 6),
            content: Some(0x40),
            min_age: 0,
        }),
        Edit::Rollover => *today = today.succ_opt().unwrap(),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_edit_sequences_match_a_fresh_build(
        days in 1u32..=9,
        gap_min in prop::sample::select(vec![30i64, 45, 90, 180]),
        long in 0usize..120,
        charset in prop::sample::select(vec![Charset::Utf8, Charset::Gb2312]),
        version in 0u8..32,
        edits in prop::collection::vec(arb_edit(), 1..8),
    ) {
        let mut today = today();
        let mut events: Vec<Event> = (0..i64::from(days + 2) * 1440 / gap_min)
            .map(|k| Event {
                event_id: k as u16,
                start: midnight(today) + Duration::minutes(gap_min * k),
                duration_s: gap_min as u64 * 60,
                running_status: 1,
                language: "zho".into(),
                title: format!("节目{k}"),
                text: String::new(),
                extended: "节目介绍。".repeat((k as usize * 7 + long) % 150),
                content: Some(0x10),
                min_age: if k % 3 == 0 { 15 } else { 0 },
            })
            .collect();
        let mut s = EitSchedule::new(SID, TSID, ONID, days, charset).with_version(version);
        s.update(&events, today).unwrap();
        let fresh: Vec<Vec<u8>> = s.sections().iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(fresh, eit_schedule(SID, TSID, ONID, version, &events, today, days, charset).unwrap());
        for edit in &edits {
            apply(edit, &mut events, &mut today);
            let before = snapshot(&s);
            let u = s.update(&events, today).unwrap();
            check_update(&before, &s, &u.changed_tables, &events, today, days, charset);
        }
    }
}
