//! Durations probed from the fixtures agree with ffprobe's video stream durations (recorded
//! below from `ffprobe -select_streams v:0 -show_entries stream=duration`), within one frame,
//! whether the file is read whole or as head and tail (fed by hand, or read from a file by
//! `read_head_and_tail`); bad inputs are named.

use std::io::{Cursor, Read, Seek, SeekFrom};

use bytes::Bytes;
use playout::probe::{read_head_and_tail, Probe, ProbeError, ProbeReadError, WINDOW_BYTES};

/// (fixture, ffprobe's video stream duration in s, tolerance in frames). f.ts and g.ts begin
/// inside a PES in the middle of a GOP. ffprobe gives the leading partial access unit and
/// the pictures decoded before the first random access point timestamps of its own (up to 4
/// frames here); we count only PES whose header carries a PTS, so the bound is 5 frames
/// there. d.ts is an MPTS: its first program.
const FFPROBE: [(&str, f64, f64); 7] = [
    ("a.ts", 5.00, 1.0),
    ("b.ts", 5.00, 1.0),
    ("c.ts", 5.00, 1.0),
    ("d.ts", 5.00, 1.0),
    ("e.ts", 3.00, 1.0),
    ("f.ts", 4.72, 5.0),
    ("g.ts", 4.44, 5.0),
];

/// One frame at 25 fps, s.
const FRAME_S: f64 = 0.040;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn durations_match_ffprobe_within_a_frame() {
    for (name, ffprobe_s, frames) in FFPROBE {
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
        let no_b = matches!(name, "a.ts" | "d.ts" | "e.ts");
        assert_eq!(
            whole.reorder_90k == 0,
            no_b,
            "{name}: {}",
            whole.reorder_90k
        );
        let got = whole.duration_ns as f64 / 1e9;
        assert!(
            (got - ffprobe_s).abs() <= FRAME_S * frames + 1e-9,
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

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

/// The reads the daemon and `hectl validate` make: whole files, and windows small enough
/// that the middle is skipped (among them 2 < length / window < 3, where the head and the
/// tail are close): the same duration, within a frame of ffprobe's, and never more than two
/// windows read.
#[test]
fn head_and_tail_read_from_a_source() {
    for (name, ffprobe_s, frames) in FFPROBE {
        let data = fixture(name);
        let len = data.len() as u64;
        let whole = read_head_and_tail(Cursor::new(&data[..]), WINDOW_BYTES).unwrap();
        assert!(!whole.discontinuous, "{name}");
        let got = whole.duration_ns as f64 / 1e9;
        assert!(
            (got - ffprobe_s).abs() <= FRAME_S * frames + 1e-9,
            "{name}: {got} s against ffprobe's {ffprobe_s} s"
        );
        for window in [100_000, len * 2 / 5, len / 2] {
            let mut source = Counting {
                inner: Cursor::new(&data[..]),
                read: 0,
            };
            // Wherever the caller left it.
            source.seek(SeekFrom::Start(12_345)).unwrap();
            let split = read_head_and_tail(&mut source, window).unwrap();
            assert!(
                source.read <= 2 * window,
                "{name}: {} bytes read",
                source.read
            );
            assert_eq!(
                (split.duration_ns, split.anchor, split.first_pts),
                (whole.duration_ns, whole.anchor, whole.first_pts),
                "{name}, window {window}"
            );
        }
    }
}

#[test]
fn unreadable_sources_and_bad_bytes_are_told_apart() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("device gone"))
        }
    }
    impl Seek for Broken {
        fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
            Ok(1 << 30)
        }
    }
    let err = read_head_and_tail(Broken, WINDOW_BYTES).unwrap_err();
    assert!(matches!(err, ProbeReadError::Io(_)), "{err:?}");
    assert_eq!(err.to_string(), "device gone");
    let err = read_head_and_tail(Cursor::new(b"not a transport stream"), WINDOW_BYTES);
    assert!(
        matches!(err, Err(ProbeReadError::Media(ProbeError::NotTs))),
        "{err:?}"
    );
}
