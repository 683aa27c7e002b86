//! `headend render` and `check-config` as a user runs them, with the output held to our strict
//! checker and decoded by ffmpeg/ffprobe (real third-party clients).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use playout::check::CheckLimits;

mod common;
use common::{checked, ffmpeg_errors, media, run_bounded, tool};

const MUXRATE: u64 = 6_000_000;

fn config(dir: &Path, playlist: &[PathBuf]) -> PathBuf {
    let list: Vec<String> = playlist
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        "[[channel]]\nid = \"test\"\nservice_id = 101\nname = \"Test\"\nprovider = \"Tests\"\n\
         muxrate = \"6M\"\nplaylist = [{}]\n\n[[channel.output]]\nurl = \"udp://[ff15::101]:5000\"\n\
         interface = \"lo\"\nhop_limit = 1\n",
        list.join(", ")
    );
    let path = dir.join("channel.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn render(dir: &Path, playlist: &[PathBuf], duration: &str) -> (PathBuf, Output) {
    let cfg = config(dir, playlist);
    let out = dir.join("out.ts");
    let res = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_headend"))
            .args(["render", "--config"])
            .arg(&cfg)
            .args(["--channel", "test", "--duration", duration, "-o"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(
        res.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    (out, res)
}

/// Every fixture in one looping playlist: the strict checker passes, ffmpeg decodes every
/// stream without an error line and ffprobe sees one program on our PIDs.
#[test]
fn render_of_every_fixture_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<PathBuf> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|c| media(&format!("{c}.ts")))
        .collect();
    let (out, _) = render(dir.path(), &clips, "60s");
    let data = std::fs::read(&out).unwrap();
    assert_eq!(
        data.len() as u64,
        60 * MUXRATE / 8 / 188 * 188,
        "exact length at the muxrate"
    );
    // HEVC clips enter with up to six frames of reorder delay (see playout/tests/splice.rs).
    let limits = CheckLimits {
        muxrate_bps: Some(MUXRATE),
        max_video_step_ratio: 8.0,
        max_audio_step_ratio: 3.5,
        ..CheckLimits::default()
    };
    let report = checked(&data, &limits);
    assert_eq!(report.cc_error_count, 0);
    assert!(report.max_pat_gap <= Duration::from_millis(100));
    assert!(report.max_pcr_interval() <= Duration::from_millis(40));
    assert!(report.max_pcr_error_ns() <= 500.0);
    for s in report.pes.values() {
        assert_eq!(s.non_increasing, 0, "DTS strictly increasing");
    }

    let Some(ffmpeg) = tool("ffmpeg") else { return };
    let errors = ffmpeg_errors(ffmpeg, &out);
    assert!(
        errors.is_empty(),
        "ffmpeg -v error printed:\n{}",
        errors.join("\n")
    );

    let Some(ffprobe) = tool("ffprobe") else {
        return;
    };
    let probe = |entries: &str| {
        let out = run_bounded(
            Command::new(ffprobe)
                .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
                .arg(&out),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "ffprobe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches(',').to_owned())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        probe("program=program_id,pmt_pid"),
        vec!["101,4096"],
        "one program, PMT 0x1000"
    );
    let streams = probe("stream=id");
    assert!(!streams.is_empty());
    for line in streams {
        let pid = u16::from_str_radix(line.trim_start_matches("0x"), 16).unwrap();
        // The programme's streams, and the DVB SI render carries as the daemon does.
        assert!(
            (0x100..0x130).contains(&pid) || (0x10..=0x14).contains(&pid),
            "stream on an unplanned PID: {line}"
        );
    }
}

/// H.264 entered at a recovery point (open GOP): leading B-pictures are dropped. What ffmpeg
/// still prints comes from the clip's own memory-management commands naming pictures from
/// before the entry point (a non-IDR entry does not empty the decoder's reference list; making
/// it an IDR would mean rewriting slice headers), far less than decoding the clip itself.
#[test]
fn h264_open_gop_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = render(dir.path(), &[media("a.ts"), media("g.ts")], "20s");
    let data = std::fs::read(&out).unwrap();
    let limits = CheckLimits {
        muxrate_bps: Some(MUXRATE),
        max_video_step_ratio: 4.0,
        ..CheckLimits::default()
    };
    checked(&data, &limits);
    let Some(ffmpeg) = tool("ffmpeg") else { return };
    let ours = ffmpeg_errors(ffmpeg, &out);
    let source = ffmpeg_errors(ffmpeg, &media("g.ts"));
    assert!(
        ours.iter().all(|l| l.contains("mmco: unref short failure")
            || l.contains("illegal short term buffer state")),
        "{ours:#?}"
    );
    assert!(
        ours.len() < source.len(),
        "ours {ours:#?} vs the clip itself {source:#?}"
    );
}

/// Corrupt inputs in the playlist: logged by name and skipped or played as far as valid; the
/// render completes at the muxrate with no continuity error.
#[test]
fn corrupt_playlist_renders_at_muxrate() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |n: &str| media(&format!("bad/{n}.ts"));
    let playlist = vec![
        bad("garbage"),
        media("a.ts"),
        bad("empty"),
        dir.path().join("missing.ts"),
        bad("not-ts"),
        bad("truncated"),
        bad("nopat"),
        bad("garbage-mid"),
        media("b.ts"),
    ];
    let (out, res) = render(dir.path(), &playlist, "40s");
    let data = std::fs::read(&out).unwrap();
    assert_eq!(data.len() as u64, 40 * MUXRATE / 8 / 188 * 188);
    let limits = CheckLimits {
        muxrate_bps: Some(MUXRATE),
        max_video_step_ratio: 100.0,
        max_audio_step_ratio: 100.0,
        ..CheckLimits::default()
    };
    checked(&data, &limits);
    let log = String::from_utf8_lossy(&res.stderr);
    for name in ["garbage.ts", "empty.ts", "missing.ts", "not-ts.ts"] {
        assert!(
            log.lines()
                .any(|l| l.contains(name) && l.contains("skipped")),
            "{name} not logged:\n{log}"
        );
    }
}

/// A playlist with nothing playable: PAT, PMT, PCR and nulls at the muxrate, and a loud log.
#[test]
fn nothing_playable_still_locks_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let playlist = vec![media("bad/garbage.ts"), dir.path().join("missing.ts")];
    let (out, res) = render(dir.path(), &playlist, "5s");
    let data = std::fs::read(&out).unwrap();
    let limits = CheckLimits {
        muxrate_bps: Some(MUXRATE),
        ..CheckLimits::default()
    };
    let report = checked(&data, &limits);
    assert!(String::from_utf8_lossy(&res.stderr).contains("ERROR"));
    assert_eq!(report.programs.len(), 1);
    assert_eq!(report.programs[0].number, 101);
    assert!(report.pcr[&101].count > 100, "PCR keeps coming");
}

/// The example config renders as an MPTS: one PAT listing every program.
#[test]
fn mpts_render_of_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/configs/example.toml");
    let out = dir.path().join("mpts.ts");
    let res = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_headend"))
            .args(["render", "--config"])
            .arg(&cfg)
            .args(["--mpts", "bouquet", "--duration", "20s", "-o"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let data = std::fs::read(&out).unwrap();
    let limits = CheckLimits {
        muxrate_bps: Some(20_000_000),
        max_video_step_ratio: 8.0,
        max_audio_step_ratio: 3.5,
        ..CheckLimits::default()
    };
    let report = checked(&data, &limits);
    assert_eq!(report.programs.len(), 3, "{report}");
}

/// `check-config` lists every error with its path and exits non-zero.
#[test]
fn check_config_reports_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = r#"
[[channel]]
id = "x"
service_id = 0
name = "X"
provider = "P"
muxrate = "6M"
playlist = []

[[channel.output]]
url = "udp://[ff15::1]:5000"

[[channel]]
id = "y"
service_id = 2
name = "Y"
muxrate = "fast"
playlist = ["a.ts"]

[[channel]]
id = "z"
service_id = 3
name = "Z"
muxrate = "1M"
playlist = ["a.ts"]
colour = "red"
"#;
    std::fs::write(&path, text).unwrap();
    let res = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_headend"))
            .arg("check-config")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    for needle in [
        "channel[0].service_id",
        "channel[0].playlist",
        "channel[0].output[0].interface",
        "channel[1].muxrate",
        "channel[2]: unknown field `colour`",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    let ok = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_headend"))
            .arg("check-config")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/configs/example.toml")),
        Duration::from_secs(30),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// `-o` never damages what it names (`outfile`): `-` is stdout (the stream only, the log on
/// stderr), `/dev/null` stays a device, and a render that cannot complete leaves the file that
/// was there.
#[test]
fn render_outputs_are_never_damaged() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[media("a.ts")]);
    let run = |out: &Path| {
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_headend"))
                .args(["render", "--config"])
                .arg(&cfg)
                .args(["--channel", "test", "--duration", "2s", "-o"])
                .arg(out),
            Duration::from_secs(60),
        )
    };
    // `-`: read as it comes (a pipe holds less than the stream), within a minute.
    let mut child = Command::new(env!("CARGO_BIN_EXE_headend"))
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--channel", "test", "--duration", "2s", "-o", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let logs = std::thread::spawn(move || {
        let mut v = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut v).unwrap();
        v
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("render -o - ran over 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stream, logs) = (reader.join().unwrap(), logs.join().unwrap());
    assert!(status.success(), "{logs}");
    assert_eq!(stream.len() as u64, 2 * MUXRATE / 8 / 188 * 188);
    assert!(stream.chunks(188).all(|p| p[0] == 0x47));
    assert!(logs.contains("render done"), "{logs}");
    assert!(!dir.path().join("-").exists());
    let res = run(Path::new("/dev/null"));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // The output's directory cannot take a new file (read-only): an error naming it, the old
    // file as it was.
    let out = dir.path().join("out.ts");
    std::fs::write(&out, b"the previous render").unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(dir.path())
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the read-only part: cannot bind-mount (not root?)");
        return;
    }
    let res = run(&ro.join("out.ts"));
    let _ = Command::new("umount").arg(&ro).status();
    let said = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        said.contains("out.ts") && said.contains("Read-only file system"),
        "{said}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous render");
}
