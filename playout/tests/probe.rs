//! Durations probed from the fixtures agree with ffprobe's video stream durations (recorded
//! below from `ffprobe -select_streams v:0 -show_entries stream=duration`), within one frame,
//! whether the file is read whole or as head and tail; bad inputs are named.

use bytes::Bytes;
use playout::probe::{Probe, ProbeError};

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn durations_match_ffprobe_within_a_frame() {
    // f.ts and g.ts begin inside a PES in the middle of a GOP. ffprobe gives the leading
    // partial access unit and the pictures decoded before the first random access point
    // timestamps of its own (up to 4 frames here); we count only PES whose header carries a
    // PTS, so the bound is 5 frames there.
    for (name, ffprobe_s, frames) in [
        ("a.ts", 5.00, 1.0),
        ("b.ts", 5.00, 1.0),
        ("c.ts", 5.00, 1.0),
        ("e.ts", 3.00, 1.0),
        ("f.ts", 4.72, 5.0),
        ("g.ts", 4.44, 5.0),
    ] {
        let data = fixture(name);
        let whole = {
            let mut p = Probe::new();
            p.head(data.clone());
            p.result().unwrap()
        };
        // Head and tail of 100 KB each, the middle skipped.
        let split = {
            let mut p = Probe::new();
            let n = data.len();
            p.head(data.slice(..100_000));
            p.tail(data.slice(n - 100_000..), (n - 200_000) as u64);
            p.result().unwrap()
        };
        // The entry delay comes from the random access points in the head, so it may differ
        // when the head is short; the rest must not.
        assert_eq!(
            (
                whole.duration_ns,
                whole.anchor,
                whole.frame_90k,
                whole.discontinuous
            ),
            (
                split.duration_ns,
                split.anchor,
                split.frame_90k,
                split.discontinuous
            ),
            "{name}"
        );
        let no_b = matches!(name, "a.ts" | "e.ts");
        assert_eq!(
            whole.reorder_90k == 0,
            no_b,
            "{name}: {}",
            whole.reorder_90k
        );
        let got = whole.duration_ns as f64 / 1e9;
        assert!(
            (got - ffprobe_s).abs() <= 0.040 * frames + 1e-9,
            "{name}: {got} s against ffprobe's {ffprobe_s} s"
        );
        assert!(!whole.discontinuous);
        assert_eq!(whole.frame_90k, 3600, "{name}: 25 fps");
    }
}

#[test]
fn bad_inputs_are_named() {
    let probe = |data: Bytes| {
        let mut p = Probe::new();
        p.head(data);
        p.result()
    };
    assert_eq!(probe(Bytes::new()), Err(ProbeError::NotTs));
    assert_eq!(
        probe(Bytes::from_static(b"not a transport stream at all")),
        Err(ProbeError::NotTs)
    );
    // PAT-less: the fixture's packets without PID 0.
    let data = fixture("a.ts");
    let no_pat: Vec<u8> = data
        .chunks_exact(188)
        .filter(|p| u16::from_be_bytes([p[1], p[2]]) & 0x1FFF != 0)
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        probe(Bytes::from(no_pat.clone())),
        Err(ProbeError::NoProgram {
            bytes: no_pat.len() as u64
        })
    );
}

/// Two files concatenated (timestamps jump back): the head's duration, flagged.
#[test]
fn a_timestamp_jump_between_head_and_tail_is_flagged() {
    let a = fixture("a.ts");
    let e = fixture("e.ts");
    let mut p = Probe::new();
    p.head(a.clone());
    // The start of another file as the "tail": its times lie before the head's last ones.
    p.tail(e.slice(..100_000), 1_000_000);
    let info = p.result().unwrap();
    assert!(info.discontinuous);
    assert!((info.duration_ns as i64 - 5_000_000_000).abs() <= 40_000_000);
}
