//! README's first command, `headend demo`, as a newcomer runs it from the repository root:
//! it comes up on [::1]:8080 and its IPv6 multicast groups on lo, prints what to open, ffprobe
//! plays what it prints (HTTP and multicast), VLC opens the M3U playlist and decodes both
//! channels, and Ctrl-C (SIGINT) stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{run_bounded, signal_and_wait, tool, tool_on_path};

#[test]
fn demo_comes_up_plays_and_stops_on_ctrl_c() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_headend"))
        .arg("demo")
        .current_dir(&root)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    // The banner: one line per thing to open, ending with "Ctrl-C stops it.".
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    let started = Instant::now();
    while !banner.iter().any(|l: &String| l.contains("Ctrl-C")) {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        banner.push(rx.recv_timeout(left).expect("demo banner"));
    }
    let text = banner.join("\n");
    assert!(
        text.contains("ffplay http://[::1]:8080/channels/one.ts"),
        "{text}"
    );
    assert!(
        text.contains("vlc http://[::1]:8080/playlist.m3u"),
        "{text}"
    );
    assert!(
        text.contains("ffplay 'udp://[ff15::1:1]:5000'"),
        "multicast on lo (scripts/test sets up the route): {text}"
    );

    if let Some(ffprobe) = tool("ffprobe") {
        for url in [
            "http://[::1]:8080/channels/one.ts",
            "http://[::1]:8080/channels/two.ts",
            "udp://[ff15::1:1]:5000?timeout=5000000",
        ] {
            let out = run_bounded(
                Command::new(ffprobe)
                    .args(["-v", "error", "-show_entries", "stream=codec_type"])
                    .args(["-of", "csv=p=0", "-i", url]),
                Duration::from_secs(20),
            );
            let streams = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                streams.contains("video") && streams.contains("audio"),
                "{url}: {streams}"
            );
        }
    }

    // The SDT: ffprobe names the service and its provider.
    if let Some(ffprobe) = tool("ffprobe") {
        let out = run_bounded(
            Command::new(ffprobe)
                .args(["-v", "error", "-show_entries"])
                .args([
                    "program_tags=service_name,service_provider",
                    "-of",
                    "default=nw=1",
                ])
                .args(["-i", "http://[::1]:8080/channels/one.ts"]),
            Duration::from_secs(20),
        );
        let tags = String::from_utf8_lossy(&out.stdout);
        assert!(
            tags.contains("TAG:service_name=Demo One")
                && tags.contains("TAG:service_provider=headend"),
            "{tags}"
        );
    }

    if let Some(vlc) = tool_on_path("cvlc") {
        vlc_plays_the_playlist(vlc);
    }

    let (status, stderr) = signal_and_wait(&mut child.0, "INT");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("engine stopped"), "{stderr}");
}

/// VLC (headless) opens `/playlist.m3u`, plays each channel for 4 s and decodes its video and
/// audio without a continuity or decoder error.
fn vlc_plays_the_playlist(vlc: &str) {
    // VLC refuses to run as root: drop to nobody when we are root (as on CI).
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", vlc]);
        c
    } else {
        Command::new(vlc)
    };
    cmd.env("HOME", "/tmp").args([
        "-vv",
        "--vout=dummy",
        "--aout=adummy",
        "--play-and-exit",
        "--run-time=4",
        "http://[::1]:8080/playlist.m3u",
        "vlc://quit",
    ]);
    // The verbose log is large: into a file (opened here, so VLC needs no rights on it), not
    // a pipe nobody reads while VLC runs.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("vlc.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut vlc_child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("spawn vlc");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = vlc_child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(40) {
            let _ = vlc_child.kill();
            let _ = vlc_child.wait();
            panic!("vlc ran over 40 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "vlc: {status}");
    assert!(log.contains("found valid M3U playlist"), "{log}");
    for channel in ["Demo One", "Demo Two"] {
        assert!(
            log.contains(&format!("Creating an input for '{channel}'")),
            "VLC did not play {channel} from the playlist"
        );
    }
    assert!(log.contains("using demux module \"ts\""), "{log}");
    assert!(log.contains("using video decoder module"), "{log}");
    assert!(log.contains("using audio decoder module"), "{log}");
    // VLC's AC-3 decoder cannot open the dummy audio output ("too low audio sample frequency
    // (0)", then "failed to create audio output" and "buffer deadlock prevented"): it prints
    // the same playing fixtures/media/c.ts itself, so those lines say nothing about our stream.
    let vlc_itself = [
        "failed to create audio output",
        "buffer deadlock prevented",
        "too low audio sample frequency",
    ];
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            (lower.contains("discontinuity")
                || lower.contains("ts demux error")
                || lower.contains("decoder error"))
                && !vlc_itself.iter().any(|v| l.contains(v))
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
