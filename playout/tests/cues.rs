//! Schedule cues: items entered at an offset, held until a fixed start, cut at an output
//! time on a frame boundary. The output stays conformant across every cut, and each fixed
//! start goes on air within one frame of its time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playout::check::{check, CheckLimits};
use playout::mux::{Mux, MuxConfig, MuxEvent};
use playout::offline::{MemorySource, Offline, BATCH};
use playout::splice::{Cue, SpliceConfig, SpliceEvent, Splicer, HANDOVER_SLACK};
use playout::time::SYSTEM_CLOCK_HZ;

const MUXRATE: u64 = 6_000_000;
const FRAME: u64 = SYSTEM_CLOCK_HZ / 25;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}.ts", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn secs(s: f64) -> u64 {
    (s * SYSTEM_CLOCK_HZ as f64) as u64
}

/// Renders `secs` of a playlist driven by `cues`; (output, events).
fn render(names: &[&str], cues: &[Cue], total_secs: u64) -> (Bytes, Vec<MuxEvent>) {
    let items = names.iter().map(|n| fixture(n)).collect();
    render_items(items, cues, total_secs, MUXRATE)
}

fn render_items(
    items: Vec<Bytes>,
    cues: &[Cue],
    total_secs: u64,
    muxrate: u64,
) -> (Bytes, Vec<MuxEvent>) {
    let mut splicer = Splicer::new(SpliceConfig::new(1), items.len());
    for c in cues {
        splicer.push_cue(*c);
    }
    run_splicer(splicer, items, total_secs, muxrate)
}

/// Renders `secs` of what `splicer` makes of `items`; (output, events).
fn run_splicer(
    splicer: Splicer,
    items: Vec<Bytes>,
    total_secs: u64,
    muxrate: u64,
) -> (Bytes, Vec<MuxEvent>) {
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(total_secs), muxrate);
    let mut run = Offline::new(
        Mux::new(MuxConfig::new(muxrate), vec![splicer]),
        vec![MemorySource::new(items.into_iter().map(Some).collect())],
        total,
    );
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    while !run.done() {
        run.step(&mut out, BATCH);
        while let Some(e) = run.mux().poll_event() {
            events.push(e);
        }
    }
    (out.freeze(), events)
}

fn starts(events: &[MuxEvent]) -> Vec<(usize, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Splice {
                event:
                    SpliceEvent::ItemStarted {
                        item, presented_at, ..
                    },
                ..
            } => Some((*item, *presented_at)),
            _ => None,
        })
        .collect()
}

fn ended(events: &[MuxEvent]) -> Vec<(usize, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Splice {
                event: SpliceEvent::ItemEnded { item, packets, .. },
                ..
            } => Some((*item, *packets)),
            _ => None,
        })
        .collect()
}

fn limits() -> CheckLimits {
    CheckLimits::across_joins(MUXRATE)
}

#[test]
fn hard_starts_go_on_air_within_a_frame_and_cuts_stay_conformant() {
    let names = ["a", "b", "c"];
    // Entry delays as the driver learns them: by probing each file.
    let delay: Vec<u64> = names
        .iter()
        .map(|n| {
            let mut p = playout::probe::Probe::new();
            p.head(fixture(n));
            p.result().unwrap().reorder_90k
        })
        .collect();
    assert_eq!(delay[0], 0, "a.ts has no B-frames");
    assert!(delay[1] > 0, "b.ts has");
    let cue = |item: usize, offset_s: f64, from: Option<f64>, until: f64| Cue {
        item,
        offset_90k: (offset_s * 90_000.0) as u64,
        from_byte: 0,
        first_pts: None,
        not_before: from.map(secs),
        until: Some(secs(until)),
        entry_delay_90k: delay[item],
        tag: 0,
    };
    let cues = [
        cue(0, 0.0, None, 3.0),      // a.ts, cut after 3 s
        cue(1, 1.0, Some(3.0), 6.0), // b.ts (B-frames) from 1 s in, 19:00-style hard start
        cue(2, 0.0, Some(6.0), 8.6), // c.ts (HEVC open GOP), cut mid-GOP
        cue(0, 0.0, Some(8.6), 11.0),
    ];
    let (out, events) = render(&names, &cues, 14);
    let st = starts(&events);
    assert!(st.len() >= 4, "{st:?}");
    assert_eq!(
        st[..4].iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 0]
    );
    for (k, at) in [(1, 3.0), (2, 6.0), (3, 8.6)] {
        let want = secs(at);
        let got = st[k].1;
        assert!(
            got >= want && got - want <= FRAME,
            "cue {k}: on air at {:.4} s, scheduled {at} s",
            got as f64 / SYSTEM_CLOCK_HZ as f64
        );
    }
    let r = check(&out, &limits());
    let v = r.violations(&limits());
    assert!(v.is_empty(), "{}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0);
}

#[test]
fn an_offset_skips_the_start_of_the_file() {
    let whole = Cue {
        item: 0,
        offset_90k: 0,
        from_byte: 0,
        first_pts: None,
        not_before: None,
        until: None,
        entry_delay_90k: 0,
        tag: 0,
    };
    let (_, events) = render(&["a"], &[whole], 8);
    let full = ended(&events)[0].1;
    let (_, events) = render(
        &["a"],
        &[Cue {
            offset_90k: 2 * 90_000,
            from_byte: 0,
            first_pts: None,
            ..whole
        }],
        8,
    );
    let part = ended(&events)[0].1;
    let ratio = part as f64 / full as f64;
    // 2 s into a 5 s file, entered at the next IDR (every second): 50-60% left.
    assert!((0.5..0.7).contains(&ratio), "{part} of {full} packets");
}

/// Renders `total_secs` of the playlist `items` (no cues at first); `at_1s` is applied to the
/// splicer once, when the output clock reaches 1 s (a schedule arriving while the playlist
/// plays). Returns (output, events).
fn render_taking_over(
    items: Vec<Option<Bytes>>,
    total_secs: u64,
    at_1s: impl FnOnce(&mut Splicer),
) -> (Bytes, Vec<MuxEvent>) {
    let splicer = Splicer::new(SpliceConfig::new(1), items.len());
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(total_secs), MUXRATE);
    let mut run = Offline::new(
        Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
        vec![MemorySource::new(items)],
        total,
    );
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut at_1s = Some(at_1s);
    while !run.done() {
        if run.mux().now() >= secs(1.0) {
            if let Some(f) = at_1s.take() {
                f(run.mux().program_mut(0));
            }
        }
        run.step(&mut out, BATCH);
        while let Some(e) = run.mux().poll_event() {
            events.push(e);
        }
    }
    (out.freeze(), events)
}

/// A schedule taking over a channel that loops its playlist: the item on air is cut where
/// the first cue's fixed start says, and the cue goes on air then. What the splicer has
/// already released (up to its read-ahead, a second or two) cannot be cut, so the handover
/// is asked for 3.6 s ahead here, as the daemon's scheduler does.
#[test]
fn cut_current_hands_over_on_time() {
    let items: Vec<Option<Bytes>> = ["b", "a"].iter().map(|n| Some(fixture(n))).collect();
    let (out, events) = render_taking_over(items, 10, |s| {
        let extra = s.add_item();
        assert_eq!(extra, 2);
        s.cut_current(secs(4.6));
        s.push_cue(Cue {
            item: 1,
            offset_90k: 0,
            from_byte: 0,
            first_pts: None,
            not_before: Some(secs(4.6)),
            until: Some(secs(7.0)),
            entry_delay_90k: 0,
            tag: 0,
        });
    });
    let st = starts(&events);
    assert_eq!(st[0].0, 0);
    assert_eq!(st[1].0, 1, "{st:?}");
    let late = st[1].1 as i64 - secs(4.6) as i64;
    assert!(
        (0..=FRAME as i64).contains(&late),
        "on air {late} ticks after 4.6 s"
    );
    let r = check(&out, &limits());
    let v = r.violations(&limits());
    assert!(v.is_empty(), "{}\n{r}", v.join("\n"));
}

/// A schedule taking over from a playlist whose item ends before the handover: the playlist
/// goes on until the handover, so the cues start when their timeline says. Had the first
/// (filler) cue started when the playlist item ended, each cue would run early by as much,
/// and the filler fragment before the hard start, a shorter cut of the same clip, would run
/// out before it: a frozen picture until the hard start. The handover is asked for at a
/// second into the playlist's e.ts (3.03 s, presented from 0.7 s), as the daemon's
/// scheduler does, with filler e.ts cut to fit before a hard start at 10 s; the first cue
/// with a fixed start or without, with an entry delay or without, and the handover from a
/// frame to 2.3 s after the playlist item ends.
#[test]
fn a_handover_after_the_item_on_air_ends_keeps_the_timeline() {
    for (handover, lead_90k, fixed) in [
        (3.78, 0, false),
        (3.95, 0, false),
        (4.0, 10_800, false),
        (4.0, 7_200, true),
        (5.0, 0, false),
        (6.0, 3_600, true),
    ] {
        handover_case(handover, lead_90k, fixed);
    }
}

fn handover_case(handover: f64, lead_90k: u64, fixed: bool) {
    let case = format!("handover at {handover} s, entry delay {lead_90k}, fixed {fixed}");
    let cue = |not_before: Option<f64>, until: f64, tag: u64| Cue {
        item: 0,
        offset_90k: 0,
        from_byte: 0,
        first_pts: None,
        not_before: not_before.map(secs),
        until: Some(secs(until)),
        entry_delay_90k: if tag == 1 { lead_90k } else { 0 },
        tag,
    };
    let (out, events) = render_taking_over(vec![Some(fixture("e"))], 14, |s| {
        s.cut_current(secs(handover));
        s.push_cue(cue(fixed.then_some(handover), handover + 3.03, 1));
        s.push_cue(cue(None, 10.0, 2));
        s.push_cue(cue(Some(10.0), 13.0, 3));
    });
    let tagged: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Splice {
                event:
                    SpliceEvent::ItemStarted {
                        tag: Some(t),
                        presented_at,
                        ..
                    },
                ..
            } => Some((*t, *presented_at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        tagged.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{case}: {tagged:?}"
    );
    // Without a fixed start, a cue with an entry delay starts that much early (the item
    // before is cut early so decoding never goes back), and the one after it with it.
    let early = if fixed {
        0.0
    } else {
        lead_90k as f64 / 90_000.0
    };
    for ((tag, at), want) in tagged
        .iter()
        .zip([handover - early, handover + 3.03 - early, 10.0])
    {
        // A cue without a fixed start may start up to `HANDOVER_SLACK` early (and the next
        // with it) rather than after a sliver of the playlist.
        let slack = if *tag < 3 && !fixed {
            HANDOVER_SLACK
        } else {
            0
        };
        let off = *at as i64 - secs(want) as i64;
        assert!(
            off <= FRAME as i64 && -off <= (FRAME + slack) as i64,
            "{case}: cue {tag} on air {:.3} s, scheduled {want:.3} s",
            *at as f64 / SYSTEM_CLOCK_HZ as f64
        );
    }
    // No frozen picture (a presentation gap) anywhere.
    let r = check(&out, &limits());
    let v = r.violations(&limits());
    assert!(v.is_empty(), "{case}: {}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0, "{case}");
}

/// Ten minutes of a dense schedule through the real pipeline (resolve → cues → splicer →
/// mux): 26 hard starts of H.264 (with and without B-frames) and HEVC open-GOP clips, soft
/// starts, following items, looped blocks and filler. Every fixed start is presented within
/// one frame of its time, with no drift from the first to the last, and the output is
/// conformant across all of the ~150 transitions.
#[test]
fn ten_minutes_of_schedule_every_start_on_time() {
    use playout::schedule::{self, Body, Clip, Entry, MediaId, MediaInfo, Start, Utc};
    const S: i64 = 1_000_000_000;
    let names = ["a", "b", "c", "e"];
    let data: Vec<Bytes> = names.iter().map(|n| fixture(n)).collect();
    let probed: Vec<playout::probe::ProbeInfo> = data
        .iter()
        .map(|d| {
            let mut p = playout::probe::Probe::new();
            p.head(d.clone());
            p.result().unwrap()
        })
        .collect();
    let media: Vec<MediaInfo> = probed
        .iter()
        .map(|p| MediaInfo {
            duration: p.duration_ns,
        })
        .collect();
    let clip = |m: u32| Body::Clip(Clip::whole(MediaId(m)));
    let mut entries = Vec::new();
    for k in 0..26i64 {
        let at = Utc(5 * S + k * 23 * S);
        let start = if k % 4 == 3 {
            Start::Soft(at)
        } else {
            Start::Hard(at)
        };
        entries.push(Entry {
            start,
            body: clip((k % 3) as u32),
        });
        if k % 5 == 2 {
            entries.push(Entry {
                start: Start::Follow,
                body: Body::Block {
                    clips: vec![Clip::whole(MediaId(0)), Clip::whole(MediaId(1))],
                    loop_for: Some(12 * S as u64),
                },
            });
        } else {
            entries.push(Entry {
                start: Start::Follow,
                body: clip(((k + 1) % 3) as u32),
            });
        }
    }
    let window = 600;
    let timeline = schedule::resolve(
        &entries,
        &[Clip::whole(MediaId(3))],
        &media,
        Utc(0),
        Utc(window * S),
    )
    .unwrap();
    let to_ticks = |u: Utc| (u.0 as u128 * SYSTEM_CLOCK_HZ as u128 / 1_000_000_000) as u64;
    let cues = schedule::cues(timeline.segments(), &entries, to_ticks, |m| {
        probed[m.0 as usize].reorder_90k
    });
    let mux_rate = 2_500_000;
    let (out, events) = render_items(data, &cues, window as u64 + 5, mux_rate);
    let st = starts(&events);
    assert!(
        st.len() >= cues.len() - 1,
        "{} starts for {} cues",
        st.len(),
        cues.len()
    );
    let mut fixed = 0;
    let mut worst = 0i64;
    for (cue, (item, presented)) in cues.iter().zip(&st) {
        assert_eq!(cue.item, *item, "cues play in order");
        let Some(nb) = cue.not_before else { continue };
        let late = *presented as i64 - nb as i64;
        assert!(
            (0..=FRAME as i64).contains(&late),
            "fixed start at {:.3} s presented {late} ticks late",
            nb as f64 / SYSTEM_CLOCK_HZ as f64
        );
        worst = worst.max(late);
        fixed += 1;
    }
    assert_eq!(fixed, 26, "every fixed start checked");
    let limits = CheckLimits::across_joins(mux_rate);
    let r = check(&out, &limits);
    let v = r.violations(&limits);
    assert!(v.is_empty(), "{}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0);
    eprintln!(
        "{} cues, {fixed} fixed starts, latest {:.1} ms after its time",
        cues.len(),
        worst as f64 / 27_000.0
    );
}

/// Joining far into a file without reading all of it: reading from a byte offset enters at
/// the same random access point as reading the whole file with the same time offset.
#[test]
fn a_seek_enters_where_the_offset_says() {
    let data = fixture("a");
    let mut p = playout::probe::Probe::new();
    p.head(data.clone());
    let first = p.result().unwrap().first_pts;
    let cue = Cue {
        item: 0,
        offset_90k: 3 * 90_000,
        from_byte: 0,
        first_pts: None,
        not_before: None,
        until: None,
        entry_delay_90k: 0,
        tag: 0,
    };
    let (_, whole) = render(&["a"], &[cue], 8);
    let seek = Cue {
        from_byte: (data.len() as u64 / 2) / 188 * 188,
        first_pts: Some(first),
        ..cue
    };
    let (out, sought) = render(&["a"], &[seek], 8);
    let packets = |ev: &[MuxEvent]| ended(ev)[0].1;
    assert_eq!(
        packets(&whole),
        packets(&sought),
        "same entry, same packets released"
    );
    assert!(packets(&sought) > 0);
    let r = check(&out, &limits());
    assert!(r.violations(&limits()).is_empty(), "{r}");
}

/// A multi-programme input: `set_program` takes the programme asked for, not the first in
/// its PAT. d.ts carries two (1: testsrc2 on video PID 0x100, 2: smptebars on 0x102); every
/// video payload on the output is one of programme 2's.
#[test]
fn set_program_takes_that_programme_of_an_mpts() {
    let d = fixture("d");
    let payloads = |data: &[u8], pid: u16| -> std::collections::HashSet<Vec<u8>> {
        data.chunks_exact(188)
            .filter(|p| (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == pid && p[3] & 0x10 != 0)
            .map(|p| {
                let off = if p[3] & 0x20 != 0 {
                    5 + usize::from(p[4])
                } else {
                    4
                };
                p[off.min(188)..].to_vec()
            })
            .filter(|pl| pl.len() > 20 && pl[..3] != [0, 0, 1])
            .collect()
    };
    let (prog1, prog2) = (payloads(&d, 0x100), payloads(&d, 0x102));
    let mut splicer = Splicer::new(SpliceConfig::new(1), 1);
    splicer.set_program(0, 2);
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(4), MUXRATE);
    let mut run = Offline::new(
        Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
        vec![MemorySource::new(vec![Some(d)])],
        total,
    );
    let mut out = BytesMut::new();
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    let got = payloads(&out, 0x100);
    assert!(got.len() > 10, "{} video payloads", got.len());
    let from2 = got.iter().filter(|p| prog2.contains(*p)).count();
    // (A few payloads, static parts of the picture, are in both.)
    let only1 = got
        .iter()
        .filter(|p| prog1.contains(*p) && !prog2.contains(*p))
        .count();
    assert!(
        from2 == got.len() && only1 == 0,
        "{} payloads: {from2} of programme 2, {only1} only of programme 1",
        got.len()
    );
}

/// A cue whose file cannot be played (here: no transport stream at all) costs its own slot:
/// the playlist goes on at once up to the next cue's start, with no "nothing playable" pause
/// of null packets, even with a playlist of one entry (the schedule's filler), which used to
/// count the failed cue as the whole playlist failing.
#[test]
fn a_failed_cue_hands_over_to_the_playlist_at_once() {
    let mut splicer = Splicer::new(SpliceConfig::new(1), 1);
    let bad = splicer.add_item();
    let cue = |item: usize, not_before: Option<u64>, tag: u64| Cue {
        item,
        offset_90k: 0,
        from_byte: 0,
        first_pts: None,
        not_before,
        until: None,
        entry_delay_90k: 0,
        tag,
    };
    splicer.push_cue(cue(bad, Some(secs(2.0)), 1));
    splicer.push_cue(cue(0, Some(secs(8.0)), 2));
    let items = vec![fixture("e"), Bytes::from(vec![0x47u8; 188 * 50])];
    let (out, events) = run_splicer(splicer, items, 10, MUXRATE);
    let failed_at = events
        .iter()
        .position(|e| {
            matches!(e, MuxEvent::Splice { event: SpliceEvent::ItemFailed { item, .. }, .. } if *item == bad)
        })
        .expect("the bad cue fails");
    assert!(
        !events.iter().any(|e| matches!(
            e,
            MuxEvent::Splice {
                event: SpliceEvent::NothingPlayable { .. },
                ..
            }
        )),
        "{events:?}"
    );
    // The playlist's e.ts is on air again within a second of the bad cue's start.
    let after: Vec<(usize, u64)> = starts(&events[failed_at..]);
    let (item, at) = after[0];
    assert_eq!(item, 0, "{after:?}");
    assert!(at < secs(3.0), "the playlist at {} s", at as f64 / 27e6);
    let r = check(&out, &limits());
    assert_eq!(r.cc_error_count, 0);
}
