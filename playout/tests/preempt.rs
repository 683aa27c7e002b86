//! Pre-emption (emergency overrides): the item on air gives way at once, the new one's first
//! packets leave within milliseconds, presentation runs on without a gap or an overlap, and
//! the output stays conformant (CC, PCR, PTS/DTS) across the switch and the return.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playout::check::{check, CheckLimits};
use playout::mux::{Mux, MuxConfig, MuxEvent};
use playout::offline::{MemorySource, Offline, BATCH};
use playout::splice::{Cue, IoRequest, SpliceConfig, SpliceEvent, Splicer};
use playout::time::SYSTEM_CLOCK_HZ;

const MUXRATE: u64 = 6_000_000;
const FRAME: i64 = (SYSTEM_CLOCK_HZ / 25) as i64;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}.ts", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn secs(s: f64) -> u64 {
    (s * SYSTEM_CLOCK_HZ as f64) as u64
}

fn cue(item: usize, tag: u64) -> Cue {
    Cue {
        item,
        offset_90k: 0,
        from_byte: 0,
        first_pts: None,
        not_before: None,
        until: None,
        entry_delay_90k: 0,
        tag,
    }
}

/// Plays `names[0]`, pre-empts it with `names[1]` at each of `at` in turn (alternating
/// items 1 and 0); returns the output, the events and the output times of the pre-emptions.
fn run(names: &[&str], at: &[f64], total_secs: u64) -> (Bytes, Vec<SpliceEvent>, Vec<u64>) {
    let items: Vec<Option<Bytes>> = names.iter().map(|n| Some(fixture(n))).collect();
    let splicer = Splicer::new(SpliceConfig::new(1), items.len());
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(total_secs), MUXRATE);
    let mut run = Offline::new(
        Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
        vec![MemorySource::new(items)],
        total,
    );
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut done = Vec::new();
    while !run.done() {
        if let Some(&t) = at.get(done.len()) {
            let now = run.mux().now();
            if now >= secs(t) {
                let item = if done.len() % 2 == 0 { 1 } else { 0 };
                run.mux()
                    .program_mut(0)
                    .preempt(now, cue(item, 100 + done.len() as u64));
                done.push(now);
            }
        }
        run.step(&mut out, BATCH);
        while let Some(e) = run.mux().poll_event() {
            if let MuxEvent::Splice { event, .. } = e {
                events.push(event);
            }
        }
    }
    (out.freeze(), events, done)
}

#[test]
fn preemption_switches_at_once_and_stays_conformant() {
    let pairs = [
        ("b", "c"), // B-frames (pyramid) → HEVC open GOP
        ("a", "b"),
        ("c", "a"),
        ("g", "e"), // H.264 open GOP → two audio tracks (PMT changes)
        ("e", "e"), // the same file: no PMT change
    ];
    let limits = CheckLimits::across_joins(MUXRATE);
    for (from, to) in pairs {
        let (out, events, at) = run(&[from, to], &[2.3, 5.9], 10);
        assert_eq!(at.len(), 2);
        // (tag, first packet, presented at), in order.
        let started: Vec<(Option<u64>, u64, u64)> = events
            .iter()
            .filter_map(|e| match e {
                SpliceEvent::ItemStarted {
                    tag,
                    at,
                    presented_at,
                    ..
                } => Some((*tag, *at, *presented_at)),
                _ => None,
            })
            .collect();
        let preempted: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                SpliceEvent::ItemPreempted {
                    presented_until, ..
                } => Some(*presented_until),
                _ => None,
            })
            .collect();
        assert_eq!(preempted.len(), 2, "{from}→{to}: {events:?}");
        for (k, tag) in [100u64, 101].iter().enumerate() {
            let &(_, first, presented) = started
                .iter()
                .find(|(t, _, _)| *t == Some(*tag))
                .unwrap_or_else(|| panic!("{from}→{to}: cue {tag} on air: {events:?}"));
            let delay = first as i64 - at[k] as i64;
            eprintln!(
                "{from}→{to} #{k}: first packet {:.1} ms after the pre-emption, presented {:.1} ms after, {:+.1} ms from the end of what stayed",
                delay as f64 / 27e3,
                (presented as i64 - at[k] as i64) as f64 / 27e3,
                (presented as i64 - preempted[k] as i64) as f64 / 27e3,
            );
            // The new item's packets leave as its own buffering allows: no sooner than its
            // first decode time less its buffer delay, which follows on from the last picture
            // kept (a file with a shorter buffer delay than the one it pre-empts starts later).
            assert!(
                (0..secs(0.6) as i64).contains(&delay),
                "{from}→{to}: first packet {delay} ticks after the pre-emption"
            );
            // Presentation runs on: no overlap, and no gap beyond the hold of any join into
            // a clip with a longer reorder delay (b.ts: two frames; see docs/design/splice.md).
            let gap = presented as i64 - preempted[k] as i64;
            assert!(
                (-FRAME..=3 * FRAME).contains(&gap),
                "{from}→{to}: presentation gap {gap} ticks"
            );
            // What stayed of the item on air ends within the read-ahead (about a second).
            assert!(
                preempted[k] < at[k] + secs(1.6),
                "{from}→{to}: the pre-empted item ran on until {}",
                preempted[k]
            );
        }
        let r = check(&out, &limits);
        let v = r.violations(&limits);
        assert!(v.is_empty(), "{from}→{to}: {}\n{r}", v.join("\n"));
        assert_eq!(r.cc_error_count, 0, "{from}→{to}");
    }
}

#[test]
fn an_answer_in_flight_for_the_old_item_is_ignored() {
    let mut s = Splicer::new(SpliceConfig::new(1), 2);
    assert_eq!(
        s.poll_io(0),
        Some(IoRequest::Open {
            item: 0,
            from_byte: 0
        })
    );
    // Item 0's open is with the driver when the pre-emption comes.
    s.preempt(0, cue(1, 7));
    assert_eq!(s.poll_io(0), None, "one request at a time");
    s.handle_opened(0);
    assert_eq!(
        s.poll_io(0),
        Some(IoRequest::Open {
            item: 1,
            from_byte: 0
        })
    );
    s.handle_opened(1);
    assert_eq!(s.poll_io(0), Some(IoRequest::Read { item: 1 }));
    // A read for item 1 in flight, pre-empted by item 1 again: its data is not taken.
    s.preempt(0, cue(1, 8));
    s.handle_data(0, 1, fixture("a"));
    assert_eq!(s.queued(), 0);
    assert_eq!(
        s.poll_io(0),
        Some(IoRequest::Open {
            item: 1,
            from_byte: 0
        })
    );
}
