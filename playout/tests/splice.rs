//! Splicing and muxing the fixtures in memory, held to the strict checker: every pair of
//! fixtures, a 33-bit PTS wrap during a splice, an MPTS, corrupt and missing items, looping.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playout::check::{check, CheckLimits, Report};
use playout::es::StreamClass;
use playout::mux::{Mux, MuxConfig, MuxEvent};
use playout::offline::{MemorySource, Offline};
use playout::splice::{Damage, ItemError, OutputPids, SpliceConfig, SpliceEvent, Splicer};
use playout::time::{PCR_MODULUS, PTS_MODULUS};
use playout::ts::Pid;

const MUXRATE: u64 = 6_000_000;
const CLIPS: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}.ts", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

struct Render {
    out: Bytes,
    events: Vec<MuxEvent>,
}

fn render(cfg: MuxConfig, programs: Vec<(SpliceConfig, Vec<Option<Bytes>>)>, secs: u64) -> Render {
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(secs), cfg.muxrate_bps);
    let mut splicers = Vec::new();
    let mut sources = Vec::new();
    for (sc, items) in programs {
        splicers.push(Splicer::new(sc, items.len()));
        sources.push(MemorySource::new(items));
    }
    let mut run = Offline::new(Mux::new(cfg, splicers), sources, total);
    let mut out = BytesMut::new();
    let events = run.run_to_end(&mut out);
    assert_eq!(out.len() as u64, total * 188);
    Render {
        out: out.freeze(),
        events,
    }
}

fn channel(items: &[&str], secs: u64) -> Render {
    let items = items.iter().map(|n| Some(fixture(n))).collect();
    render(
        MuxConfig::new(MUXRATE),
        vec![(SpliceConfig::new(101), items)],
        secs,
    )
}

fn limits() -> CheckLimits {
    CheckLimits {
        muxrate_bps: Some(MUXRATE),
        ..CheckLimits::default()
    }
}

/// Playlist indexes of the splice events `pick` selects, in order.
fn items(events: &[MuxEvent], pick: impl Fn(&SpliceEvent) -> Option<usize>) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Splice { event, .. } => pick(event),
            _ => None,
        })
        .collect()
}

fn started(events: &[MuxEvent]) -> Vec<usize> {
    items(events, |e| match e {
        SpliceEvent::ItemStarted { item, .. } => Some(*item),
        _ => None,
    })
}

fn failed(events: &[MuxEvent]) -> Vec<usize> {
    failures(events).into_iter().map(|(item, _)| item).collect()
}

/// Every item failure, in order: (playlist index, error).
fn failures(events: &[MuxEvent]) -> Vec<(usize, ItemError)> {
    events
        .iter()
        .filter_map(|e| match e {
            MuxEvent::Splice {
                event: SpliceEvent::ItemFailed { item, error },
                ..
            } => Some((*item, error.clone())),
            _ => None,
        })
        .collect()
}

/// The input damage item `item` ended with, the first time it ended.
fn damage_of(events: &[MuxEvent], item: usize) -> Option<Damage> {
    events.iter().find_map(|e| match e {
        MuxEvent::Splice {
            event: SpliceEvent::ItemEnded {
                item: i, damage, ..
            },
            ..
        } if *i == item => Some(*damage),
        _ => None,
    })
}

/// Duration of a clip and its video reorder delay (largest PTS − DTS), both 90 kHz.
fn clip_facts(name: &str) -> (u64, i64) {
    let r = check(&fixture(name), &CheckLimits::default());
    let reorder = r
        .pes
        .values()
        .filter(|s| s.class == Some(StreamClass::Video))
        .map(|s| s.max_reorder)
        .max()
        .unwrap_or(0);
    let rate = r.measured_muxrate_bps.expect("fixture has PCR");
    let secs = r.bytes as f64 * 8.0 / rate;
    ((secs * 90_000.0) as u64, reorder)
}

fn assert_clean(what: &str, r: &Report, limits: &CheckLimits) {
    let v = r.violations(limits);
    assert!(v.is_empty(), "{what}:\n{}\n{r}", v.join("\n"));
}

/// Every ordered pair of fixtures, each pair looping: the strict checker finds nothing. A
/// video presentation gap of one frame is allowed at a boundary, plus the reorder delay of the
/// entry picture: decode times must keep increasing, so a clip whose first picture waits for
/// B-pictures (or whose dropped leading pictures leave it waiting) holds the previous clip's
/// last picture that long. Without re-encoding no splicer can avoid it.
#[test]
fn every_pair_of_fixtures_splices_cleanly() {
    let facts: BTreeMap<&str, (u64, i64)> = CLIPS.iter().map(|c| (*c, clip_facts(c))).collect();
    for x in CLIPS {
        for y in CLIPS {
            let (dx, rx) = facts[x];
            let (dy, ry) = facts[y];
            // Both clips twice: x→y and y→x boundaries.
            let secs = (2 * (dx + dy) / 90_000 + 2).min(40);
            let out = channel(&[x, y], secs);
            let frame = 3600.0;
            let extra = rx.max(ry) as f64;
            // Audio follows the video's timeline: it shifts with it, and joins on a whole PES.
            let lim = CheckLimits {
                max_video_step_ratio: 2.0 + extra / frame,
                max_audio_step_ratio: 2.0 + extra / 14_400.0,
                ..limits()
            };
            let r = check(&out.out, &lim);
            assert_clean(&format!("{x} then {y}"), &r, &lim);
            assert!(
                started(&out.events).len() >= 3,
                "{x},{y}: {:?}",
                started(&out.events)
            );
            assert_eq!(r.programs.len(), 1);
            // Our PIDs only.
            for pid in r.pes.keys() {
                assert!(
                    (0x100..0x130).contains(&pid.value()),
                    "{x},{y}: unexpected PID {pid}"
                );
            }
        }
    }
}

/// A playlist of every fixture, looped: PMT versions change only with the stream set.
#[test]
fn all_fixtures_loop_with_stable_pmt() {
    let out = channel(&CLIPS, 90);
    let lim = CheckLimits {
        max_video_step_ratio: 4.0,
        ..limits()
    };
    let r = check(&out.out, &lim);
    assert_clean("all fixtures", &r, &lim);
    let starts = started(&out.events);
    assert!(starts.len() > CLIPS.len(), "the playlist loops: {starts:?}");
    // Same clip twice in a row: no PMT change between them.
    let same = channel(&["a", "a", "a"], 20);
    let r = check(&same.out, &limits());
    assert_clean("a a a", &r, &limits());
    // Version 0 is the empty PMT sent before the first item is ready.
    assert!(
        r.programs[0].versions.len() <= 2,
        "the PMT never changes between identical items: {:?}",
        r.programs[0].versions
    );
}

/// The output clock starts 5 s before the 33-bit PTS (and PCR) wrap: the splices that
/// follow run across it without a backward step.
#[test]
fn pts_wrap_during_splices() {
    let mut cfg = MuxConfig::new(MUXRATE);
    cfg.clock_origin = PCR_MODULUS - 5 * 27_000_000;
    let items = ["c", "a", "b"].iter().map(|n| Some(fixture(n))).collect();
    let out = render(cfg, vec![(SpliceConfig::new(1), items)], 30);
    let lim = CheckLimits {
        max_video_step_ratio: 4.0,
        ..limits()
    };
    let r = check(&out.out, &lim);
    assert_clean("wrap", &r, &lim);
    // The timestamps really wrapped: both ends of the 33-bit range occur.
    let (mut low, mut high) = (false, false);
    for p in out.out.chunks(188) {
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        if !pusi || pid != 0x100 && pid != 0x128 {
            continue;
        }
        let start = if p[3] & 0x20 != 0 {
            5 + p[4] as usize
        } else {
            4
        };
        if let Some(h) = playout::pes::PesHeader::parse(&p[start..]) {
            let pts = h.pts.expect("video PES has a PTS").raw();
            low |= pts < 90_000 * 20;
            high |= pts > PTS_MODULUS - 90_000 * 6;
        }
    }
    assert!(low && high, "PTS wrapped (low {low}, high {high})");
    assert!(started(&out.events).len() >= 3);
}

/// Two channels in one multiplex: one PAT listing both, each PMT and PCR on time.
#[test]
fn mpts_two_programs() {
    let second = OutputPids {
        pmt: Pid::from_bits(0x1010),
        video: Pid::from_bits(0x200),
        audio: Pid::from_bits(0x201),
        subtitle: Pid::from_bits(0x210),
        data: Pid::from_bits(0x220),
    };
    let mut sc2 = SpliceConfig::new(102);
    sc2.pids = second;
    let p1 = ["a", "b"].iter().map(|n| Some(fixture(n))).collect();
    let p2 = ["c", "e", "d"].iter().map(|n| Some(fixture(n))).collect();
    let mut cfg = MuxConfig::new(12_000_000);
    cfg.transport_stream_id = 7;
    let out = render(cfg, vec![(SpliceConfig::new(101), p1), (sc2, p2)], 30);
    let lim = CheckLimits {
        muxrate_bps: Some(12_000_000),
        max_video_step_ratio: 4.0,
        ..CheckLimits::default()
    };
    let r = check(&out.out, &lim);
    assert_clean("mpts", &r, &lim);
    let numbers: Vec<u16> = r.programs.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![101, 102]);
    assert_eq!(r.pat_versions, vec![0]);
    assert_eq!(r.pcr.len(), 2, "each program has its PCR");
}

/// Missing, empty, garbage, truncated, not-TS and PAT-less items are skipped or played as
/// far as they are valid; the output stays at the muxrate with no continuity error.
#[test]
fn corrupt_items_are_skipped_or_played_as_far_as_valid() {
    let bad = |name: &str| {
        let path = format!(
            "{}/../fixtures/media/bad/{name}.ts",
            env!("CARGO_MANIFEST_DIR")
        );
        Some(Bytes::from(
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        ))
    };
    let items = vec![
        bad("garbage"),
        Some(fixture("a")),
        bad("empty"),
        None,
        bad("not-ts"),
        bad("truncated"),
        bad("nopat"),
        bad("garbage-mid"),
        Some(fixture("b")),
    ];
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(SpliceConfig::new(5), items)],
        40,
    );
    if let Ok(dir) = std::env::var("PLAYOUT_TEST_DUMP") {
        std::fs::write(format!("{dir}/corrupt.ts"), &out.out).unwrap();
    }
    // Damaged pictures are dropped up to the next random access point: gaps inside the
    // damaged items are expected.
    let lim = CheckLimits {
        max_video_step_ratio: 100.0,
        max_audio_step_ratio: 100.0,
        ..limits()
    };
    let r = check(&out.out, &lim);
    assert_clean("corrupt playlist", &r, &lim);
    let failed = failed(&out.events);
    for item in [0, 2, 3, 4] {
        assert!(
            failed.contains(&item),
            "item {item} reported as failed: {failed:?}"
        );
    }
    let starts = started(&out.events);
    for item in [1, 5, 8] {
        assert!(starts.contains(&item), "item {item} played: {starts:?}");
    }
}

/// A file whose packets lie about their own layout: an adaptation_field_length past the
/// packet's end, and video PES shorter by their PES_packet_length than the data that follows
/// them. What is damaged is left out (the output passes the strict checker), and the item's
/// end reports the damage with the first damaged packet's index and PID.
#[test]
fn packets_that_lie_about_their_layout_are_dropped_and_located() {
    let mut a = fixture("a").to_vec();
    let (mut starts, mut first_af, mut first_len) = (0, None, None);
    for (k, p) in a.chunks_exact_mut(188).enumerate() {
        let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        if pid != 0x100 {
            continue;
        }
        let payload = match (p[3] >> 4) & 3 {
            1 => 4,
            3 => 5 + usize::from(p[4]),
            _ => continue,
        };
        if p[1] & 0x40 != 0 {
            starts += 1;
            // The 40th video PES says it is 100 bytes long.
            if starts == 40 && payload + 6 <= 188 && p[payload..payload + 3] == [0, 0, 1] {
                p[payload + 4..payload + 6].copy_from_slice(&100u16.to_be_bytes());
                first_len.get_or_insert(k);
            }
        } else if p[3] & 0x30 == 0x30 {
            // A continuation with an adaptation field, after the 60th PES: a length past the
            // end.
            if starts >= 60 && first_af.is_none() {
                p[4] = 250;
                first_af.get_or_insert(k);
            }
        }
    }
    let (first_af, first_len) = (first_af.expect("a packet with an AF"), first_len.unwrap());
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(
            SpliceConfig::new(5),
            vec![Some(Bytes::from(a)), Some(fixture("b"))],
        )],
        20,
    );
    let lim = CheckLimits {
        max_video_step_ratio: 100.0,
        max_audio_step_ratio: 100.0,
        ..limits()
    };
    assert_clean("lying packets", &check(&out.out, &lim), &lim);
    let damage = damage_of(&out.events, 0).expect("the item ended");
    assert!(damage.in_file(), "{damage:?}");
    assert!(damage.malformed_packets > 0, "{damage:?}");
    assert!(damage.pes_overruns > 0, "{damage:?}");
    assert!(damage.dropped_pes > 0, "{damage:?}");
    let first = damage.first.expect("where");
    assert_eq!(first.pid, 0x100);
    // The first lie seen: the bad adaptation field at once, the short PES at the packet
    // after its length ran out.
    assert!(
        first.packet == first_af as u64 || first.packet > first_len as u64,
        "{first} (bad AF at {first_af}, short PES at {first_len})"
    );
    assert!(first.to_string().contains("PID 0x0100"), "{first}");
}

/// A file of 192-byte packets (M2TS) is refused, named as such; a large file that is not TS
/// is given up after its first megabyte, not read to its end (a 4 GB one took 12 s a try).
#[test]
fn files_that_are_not_188_byte_ts_are_named_and_not_read_to_the_end() {
    let mut m2ts = Vec::new();
    for p in fixture("a").chunks_exact(188) {
        m2ts.extend_from_slice(&[0, 0, 0, 0]);
        m2ts.extend_from_slice(p);
    }
    let zeros = Bytes::from(vec![0u8; 64 << 20]);
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(
            SpliceConfig::new(5),
            vec![Some(Bytes::from(m2ts)), Some(zeros), Some(fixture("b"))],
        )],
        6,
    );
    let errors = failures(&out.events);
    assert!(
        errors.contains(&(0, ItemError::PacketSize { size: 192 })),
        "{errors:?}"
    );
    assert!(errors[0].1.to_string().contains("M2TS"), "{}", errors[0].1);
    let not_ts = errors
        .iter()
        .find_map(|(i, e)| match e {
            ItemError::NotTs { bytes } if *i == 1 => Some(*bytes),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(not_ts < 4 << 20, "read {not_ts} bytes of it");
    assert!(started(&out.events).contains(&2));
}

/// A file whose timestamps are an hour ahead of its clock (PTS/DTS moved, PCR not) cannot be
/// timed: it is refused, naming the PID and how far off, and the next item plays at once
/// (it had put the channel an hour into the future: nothing but PSI went out).
#[test]
fn a_file_whose_timestamps_disagree_with_its_clock_is_refused() {
    let mut off = fixture("a").to_vec();
    for p in off.chunks_exact_mut(188) {
        if let Ok(mut m) = playout::ts::TsPacketMut::new(p) {
            m.shift_timestamps(3600 * 90_000);
        }
    }
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(
            SpliceConfig::new(5),
            vec![Some(Bytes::from(off)), Some(fixture("b"))],
        )],
        8,
    );
    let errors: Vec<String> = failures(&out.events)
        .into_iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, e)| e.to_string())
        .collect();
    assert!(
        errors.first().is_some_and(|e| e.contains("PID 0x0100")
            && e.contains("3600")
            && e.contains("ahead of")),
        "{errors:?}"
    );
    assert!(started(&out.events).contains(&1));
    assert_clean(
        "after the refused file",
        &check(&out.out, &limits()),
        &limits(),
    );
}

/// Two files joined without a remux (a.ts, H.264, then c.ts, HEVC, on the same PIDs): at
/// c's PMT the item's video stream is gone, so the item ends there, saying where, and the
/// next item plays at once (the rest played nothing: seconds of dead air a loop).
#[test]
fn an_item_ends_where_its_streams_change() {
    let a = fixture("a");
    let mut joined = a.to_vec();
    joined.extend_from_slice(&fixture("c"));
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(
            SpliceConfig::new(5),
            vec![Some(Bytes::from(joined)), Some(fixture("b"))],
        )],
        12,
    );
    let damage = damage_of(&out.events, 0).expect("the joined item ended");
    let at = damage.streams_changed_at.expect("the change seen");
    let a_packets = (a.len() / 188) as u64;
    assert!(
        (a_packets..a_packets + 50).contains(&at),
        "{at} (a.ts has {a_packets} packets)"
    );
    assert!(damage.in_file());
    let starts = started(&out.events);
    assert!(starts.contains(&1), "{starts:?}");
    // A boundary holds the last picture for the entry picture's reorder delay (see
    // every_pair_of_fixtures_splices_cleanly).
    let lim = CheckLimits {
        max_video_step_ratio: 4.0,
        ..limits()
    };
    assert_clean("joined files", &check(&out.out, &lim), &lim);
}

/// Scrambled bits in a file (transport_scrambling_control set) never reach a clear channel:
/// a file whose video is scrambled is refused as such; one whose audio alone is scrambled
/// plays its video, the audio left out and counted.
#[test]
fn scrambled_input_is_refused_or_left_out_never_passed_on() {
    let scramble = |pids: &[u16]| {
        let mut data = fixture("a").to_vec();
        for p in data.chunks_exact_mut(188) {
            let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
            if pids.contains(&pid) && p[3] & 0x10 != 0 {
                p[3] |= 0xC0;
            }
        }
        Some(Bytes::from(data))
    };
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(
            SpliceConfig::new(5),
            vec![scramble(&[0x100, 0x101]), scramble(&[0x101])],
        )],
        8,
    );
    let refused = failures(&out.events)
        .into_iter()
        .find_map(|(i, e)| (i == 0).then_some(e));
    assert!(
        matches!(refused, Some(ItemError::Scrambled { pid: 0x100, .. })),
        "{refused:?}"
    );
    let damage = damage_of(&out.events, 1).expect("the audio-scrambled file played");
    assert!(damage.scrambled_packets > 0, "{damage:?}");
    assert_eq!(damage.first.map(|f| f.pid), Some(0x101), "{damage:?}");
    assert!(
        out.out.chunks(188).all(|p| p[3] & 0xC0 == 0),
        "no scrambled packet went out"
    );
}

/// With nothing playable the channel keeps PAT, PMT and PCR at the muxrate.
#[test]
fn nothing_playable_keeps_receivers_locked() {
    let items = vec![
        None,
        Some(Bytes::new()),
        Some(Bytes::from_static(b"not a transport stream")),
    ];
    let out = render(
        MuxConfig::new(MUXRATE),
        vec![(SpliceConfig::new(9), items)],
        5,
    );
    let r = check(&out.out, &limits());
    assert_clean("nothing playable", &r, &limits());
    assert_eq!(r.programs.len(), 1);
    assert!(r.pcr[&9].count > 100);
    assert!(out.events.iter().any(|e| matches!(
        e,
        MuxEvent::Splice {
            event: SpliceEvent::NothingPlayable { .. },
            ..
        }
    )));
    assert!(
        failed(&out.events).len() >= 3 * 4,
        "retried about every second"
    );
}

/// The read size does not matter: odd chunk sizes (packets split across reads) give a
/// clean output too.
#[test]
fn odd_read_sizes() {
    for chunk in [1000, 188 * 7 + 5, 65_536] {
        let items: Vec<Option<Bytes>> = ["b", "c"].iter().map(|n| Some(fixture(n))).collect();
        let splicer = Splicer::new(SpliceConfig::new(1), items.len());
        let total = Offline::<MemorySource>::packets_for(Duration::from_secs(20), MUXRATE);
        let mut run = Offline::new(
            Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
            vec![MemorySource::with_chunk(items, chunk)],
            total,
        );
        let mut out = BytesMut::new();
        run.run_to_end(&mut out);
        let lim = CheckLimits {
            max_video_step_ratio: 4.0,
            ..limits()
        };
        let r = check(&out, &lim);
        if let Ok(dir) = std::env::var("PLAYOUT_TEST_DUMP") {
            std::fs::write(format!("{dir}/chunk-{chunk}.ts"), &out).unwrap();
        }
        assert_clean(&format!("chunk {chunk}"), &r, &lim);
    }
}

/// An input richer than the muxrate: the muxer says so (event and counter), memory stays
/// bounded, and what goes out is still continuous with exact PCRs; only the lateness shows.
#[test]
fn overload_is_reported_not_hidden() {
    let items = vec![Some(fixture("e"))];
    let cfg = MuxConfig::new(1_000_000);
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(120), cfg.muxrate_bps);
    let splicer = Splicer::new(SpliceConfig::new(1), 1);
    let mut run = Offline::new(
        Mux::new(cfg, vec![splicer]),
        vec![MemorySource::new(items)],
        total,
    );
    let mut out = BytesMut::new();
    let mut overloads = 0;
    let mut most_queued = 0;
    while !run.done() {
        run.step(&mut out, 448);
        most_queued = most_queued.max(run.mux().program_mut(0).queued());
        while let Some(e) = run.mux().poll_event() {
            overloads += usize::from(matches!(e, MuxEvent::Overload { .. }));
        }
    }
    assert!(overloads >= 1, "overload reported");
    assert!(run.mux().stats().late_packets > 0);
    assert!(
        most_queued <= playout::splice::MAX_QUEUED + 1024,
        "queue bounded: {most_queued}"
    );
    let lim = CheckLimits {
        muxrate_bps: Some(1_000_000),
        ..CheckLimits::default()
    };
    let r = check(&out, &lim);
    assert_eq!(r.cc_error_count, 0);
    assert!(r.max_pcr_error_ns() < 500.0);
    let v = r.violations(&lim).join("\n");
    assert!(
        v.contains("after its decode time"),
        "the lateness is visible: {v}"
    );
}

mod corrupted {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Random byte damage anywhere in the inputs: the splicer never panics and the output
        /// stays continuous and on time.
        #[test]
        fn random_damage_keeps_output_clean(
            flips in proptest::collection::vec((0usize..700_000, any::<u8>()), 1..200),
            chunk in 100usize..300_000,
        ) {
            let mut items = Vec::new();
            for (k, name) in ["b", "c", "a"].iter().enumerate() {
                let mut data = fixture(name).to_vec();
                let n = data.len();
                for (at, byte) in flips.iter().skip(k).step_by(3) {
                    data[at % n] = *byte;
                }
                items.push(Some(Bytes::from(data)));
            }
            let splicer = Splicer::new(SpliceConfig::new(1), items.len());
            let total = Offline::<MemorySource>::packets_for(Duration::from_secs(25), MUXRATE);
            let mut run = Offline::new(
                Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
                vec![MemorySource::with_chunk(items, chunk)],
                total,
            );
            let mut out = BytesMut::new();
            run.run_to_end(&mut out);
            prop_assert_eq!(out.len() as u64, total * 188);
            let r = check(&out, &limits());
            prop_assert_eq!(r.cc_error_count, 0);
            prop_assert_eq!(r.psi_errors, 0);
            prop_assert!(r.max_pcr_error_ns() < 500.0);
            prop_assert!(r.max_pat_gap <= Duration::from_millis(100));
            for s in r.pes.values() {
                prop_assert_eq!(s.non_increasing, 0);
            }
        }
    }
}

/// Late joiners (HTTP clients) start at a reported random access point with the tables
/// first: from any of them the output checks clean, with no continuity error, and the first
/// video access unit decodes on its own (it is a random access point).
#[test]
fn late_joiners_start_clean_at_random_access_points() {
    let items: Vec<Option<Bytes>> = ["a", "c", "b"].iter().map(|n| Some(fixture(n))).collect();
    let splicer = Splicer::new(SpliceConfig::new(1), items.len());
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(20), MUXRATE);
    let mut run = Offline::new(
        Mux::new(MuxConfig::new(MUXRATE), vec![splicer]),
        vec![MemorySource::new(items)],
        total,
    );
    run.mux().track_raps(true);
    let mut out = BytesMut::new();
    let mut raps = Vec::new();
    while !run.done() {
        run.step(&mut out, 7 * 64);
        while let Some(rap) = run.mux().poll_rap() {
            raps.push(rap);
        }
        while run.mux().poll_event().is_some() {}
    }
    // About one per second (IDR or CRA every 25 frames), across the splices.
    assert!((12..=22).contains(&raps.len()), "{} raps", raps.len());
    for rap in raps
        .iter()
        .filter(|r| r.slot * 188 + 188 * 8000 < out.len() as u64)
    {
        let start = rap.slot as usize * 188;
        let p = playout::ts::TsPacket::new(out.clone().freeze().slice(start..start + 188)).unwrap();
        assert!(p.pusi(), "slot {} starts a PES", rap.slot);
        let mut joined = BytesMut::from(&rap.psi[..]);
        joined.extend_from_slice(&out[start..]);
        let r = check(&joined, &limits());
        assert_eq!(
            r.cc_error_count, 0,
            "join at slot {}: {:?}",
            rap.slot, r.cc_errors
        );
        assert_eq!(r.duplicates, 0, "join at slot {}", rap.slot);
        assert_clean(&format!("join at slot {}", rap.slot), &r, &limits());
    }
}

/// A lower mux delay ([`SpliceConfig::mux_delay`]): every pair of fixtures still passes the
/// strict checker, which holds each PES whole in the decoder's buffer by its decode time,
/// and no PES starts to arrive much earlier than the delay asks (ffmpeg muxed these files
/// with 0.7 s, its default).
#[test]
fn a_lower_mux_delay_keeps_the_buffer_model() {
    let facts: BTreeMap<&str, (u64, i64)> = CLIPS.iter().map(|c| (*c, clip_facts(c))).collect();
    for delay_ms in [500u64, 300, 200] {
        for x in CLIPS {
            for y in ["a", "c", "e"] {
                let (dx, rx) = facts[x];
                let (dy, ry) = facts[y];
                let secs = (2 * (dx + dy) / 90_000 + 2).min(30);
                let mut sc = SpliceConfig::new(101);
                sc.mux_delay = Some(delay_ms * 27_000);
                sc.muxrate_bps = MUXRATE;
                let items = [x, y].iter().map(|n| Some(fixture(n))).collect();
                let out = render(MuxConfig::new(MUXRATE), vec![(sc, items)], secs);
                let extra = rx.max(ry) as f64;
                let lim = CheckLimits {
                    max_video_step_ratio: 2.0 + extra / 3600.0,
                    max_audio_step_ratio: 2.0 + extra / 14_400.0,
                    ..limits()
                };
                let r = check(&out.out, &lim);
                assert_clean(&format!("{x} then {y}, {delay_ms} ms"), &r, &lim);
                for (pid, s) in &r.pes {
                    let Some(lead) = s.max_decode_lead else {
                        continue;
                    };
                    // Holding the video back holds back the audio muxed after it: below
                    // 500 ms (and for d.ts, whose audio comes latest) the audio's room, not
                    // the delay, sets how far, and never past the input's own 0.7 s.
                    let limit = if x == "d" || y == "d" || delay_ms < 500 {
                        0.71
                    } else {
                        delay_ms as f64 / 1000.0 + 0.1
                    };
                    assert!(
                        lead as f64 / 90_000.0 <= limit,
                        "{x} then {y}, {delay_ms} ms: PID {pid} leads by {} ms",
                        lead / 90
                    );
                }
            }
        }
    }
}
