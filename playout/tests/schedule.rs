//! Random week-long schedules resolve to gapless timelines: contiguous over the window, every
//! hard start on air at its instant, every segment inside its media, and `at` agrees with a
//! linear search.

use playout::schedule::{
    resolve, Body, Clip, Entry, MediaId, MediaInfo, ScheduleError, Source, Start, Timeline, Utc,
};
use proptest::prelude::*;

const S: u64 = 1_000_000_000;
const WEEK: u64 = 7 * 24 * 3600 * S;

fn media() -> Vec<MediaInfo> {
    // Programmes of 5..60 min, fillers of 10..40 s.
    (0..20u64)
        .map(|i| MediaInfo {
            duration: if i < 15 {
                (300 + i * 220) * S
            } else {
                (10 + i) * S
            },
        })
        .collect()
}

fn filler() -> Vec<Clip> {
    (15..20).map(|m| Clip::whole(MediaId(m))).collect()
}

#[derive(Debug, Clone)]
enum Kind {
    Follow,
    Hard(u64),
    Soft(u64),
}

/// A random entry: start rule, media, optional (in point, length) in s, block or clip.
type RawEntry = (Kind, u32, Option<(u64, u64)>, bool);

fn entry_strategy() -> impl Strategy<Value = RawEntry> {
    (
        prop_oneof![
            4 => Just(Kind::Follow),
            1 => (1u64..3600).prop_map(Kind::Hard),
            1 => (1u64..3600).prop_map(Kind::Soft),
        ],
        0u32..15,
        proptest::option::of((0u64..200, 1u64..200)),
        any::<bool>(),
    )
}

/// Entries with fixed starts strictly increasing: each fixed start is a gap (in s) after the
/// previous fixed one.
fn build(raw: &[RawEntry]) -> Vec<Entry> {
    let mut fixed = 0u64;
    raw.iter()
        .map(|(kind, m, points, block)| {
            let start = match kind {
                Kind::Follow => Start::Follow,
                Kind::Hard(gap) => {
                    fixed += gap * S;
                    Start::Hard(Utc(fixed as i64))
                }
                Kind::Soft(gap) => {
                    fixed += gap * S;
                    Start::Soft(Utc(fixed as i64))
                }
            };
            let clip = match points {
                Some((a, len)) => Clip {
                    media: MediaId(*m),
                    in_point: a * S,
                    out_point: Some((a + len) * S),
                },
                None => Clip::whole(MediaId(*m)),
            };
            let body = if *block {
                Body::Block {
                    clips: vec![clip, Clip::whole(MediaId((*m + 1) % 15))],
                    loop_for: points.map(|(_, len)| len * 7 * S),
                }
            } else {
                Body::Clip(clip)
            };
            Entry { start, body }
        })
        .collect()
}

fn check(t: &Timeline, entries: &[Entry], media: &[MediaInfo], from: Utc, until: Utc) {
    let s = t.segments();
    assert_eq!(s.first().unwrap().start, from);
    assert_eq!(s.last().unwrap().end, until);
    for w in s.windows(2) {
        assert_eq!(w[0].end, w[1].start);
    }
    for seg in s {
        assert!(seg.start < seg.end);
        let dur = media[seg.media.0 as usize].duration;
        assert!(seg.offset + seg.duration() <= dur, "{seg:?} beyond {dur}");
    }
    for (i, e) in entries.iter().enumerate() {
        if let Start::Hard(t0) = e.start {
            if t0 >= from && t0 < until {
                let on = t.at(t0).unwrap();
                assert_eq!(
                    on.segment.source,
                    Source::Entry(i),
                    "hard start of entry {i}"
                );
                assert_eq!(on.segment.start, t0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_schedules_resolve_gapless(raw in proptest::collection::vec(entry_strategy(), 1..300),
                                        probe in proptest::collection::vec(0u64..WEEK, 50)) {
        let media = media();
        let entries = build(&raw);
        let until = Utc(WEEK as i64);
        match resolve(&entries, &filler(), &media, Utc(0), until) {
            Ok(t) => {
                check(&t, &entries, &media, Utc(0), until);
                for p in probe {
                    let at = Utc(p as i64);
                    let linear = t.segments().iter().position(|s| s.start <= at && at < s.end);
                    prop_assert_eq!(t.at(at).map(|o| o.index), linear);
                }
            }
            // Random in/out points may fall beyond a short clip: named, not a panic.
            Err(ScheduleError::BadPoints { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

/// A week of 10,000 entries (2,500 hard starts 242 s apart, each followed by three items)
/// resolves, and every hard start is on air at its instant.
#[test]
fn a_week_of_ten_thousand_entries() {
    let media = media();
    let raw: Vec<RawEntry> = (0..10_000u32)
        .map(|i| {
            let kind = if i % 4 == 0 {
                Kind::Hard(242)
            } else {
                Kind::Follow
            };
            (kind, i % 15, None, i % 7 == 3)
        })
        .collect();
    let entries = build(&raw);
    let t = resolve(&entries, &filler(), &media, Utc(0), Utc(WEEK as i64)).unwrap();
    check(&t, &entries, &media, Utc(0), Utc(WEEK as i64));
    assert!(
        t.segments().len() >= 2_500,
        "a segment per hard start at least"
    );
}

/// Seven days of a random schedule turned into splicer cues the way the daemon does: every
/// hard start becomes a cue held until exactly its instant on the output clock (no drift
/// after a week), the cues tile the week without a gap (filler included), and each is cut
/// where the next begins. What the splicer does with such cues is `tests/cues.rs`.
#[test]
fn a_week_of_cues_without_drift_or_gap() {
    let media = media();
    let raw: Vec<RawEntry> = (0..3000u32)
        .map(|i| {
            let kind = match i % 6 {
                0 => Kind::Hard(200),
                3 => Kind::Soft(1),
                _ => Kind::Follow,
            };
            (kind, i % 15, None, i % 11 == 5)
        })
        .collect();
    let entries = build(&raw);
    let until = Utc(WEEK as i64);
    let t = resolve(&entries, &filler(), &media, Utc(0), until).unwrap();
    // The daemon's mapping: output ticks = 27 MHz since an origin at UTC 0.
    let origin = 8_589_000_000u64;
    let to_ticks = |u: Utc| origin + (u.0 as u128 * 27 / 1000) as u64;
    let cues = playout::schedule::cues(t.segments(), &entries, to_ticks, |_| 0);
    assert_eq!(cues.len(), t.segments().len());
    for (cue, pair) in cues.iter().zip(t.segments().windows(2)) {
        assert_eq!(pair[0].end, pair[1].start, "no gap");
        assert_eq!(
            cue.until,
            Some(to_ticks(pair[0].end)),
            "cut where the next begins"
        );
    }
    let mut hard = 0;
    for (i, e) in entries.iter().enumerate() {
        if let Start::Hard(at) = e.start {
            if at < until {
                let k = t
                    .segments()
                    .iter()
                    .position(|s| s.source == Source::Entry(i) && s.start == at)
                    .unwrap();
                assert_eq!(
                    cues[k].not_before,
                    Some(to_ticks(at)),
                    "entry {i}: no drift"
                );
                hard += 1;
            }
        }
    }
    assert!(hard > 400, "{hard} hard starts checked");
    assert_eq!(cues.last().unwrap().until, Some(to_ticks(until)));
}
