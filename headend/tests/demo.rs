//! README's first command, `headend demo`, as a newcomer runs it from the repository root:
//! it comes up on [::1]:8080 and its IPv6 multicast groups on lo, prints what to open, ffprobe
//! plays what it prints (HTTP and multicast), and Ctrl-C (SIGINT) stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{run_bounded, signal_and_wait, tool};

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

    let (status, stderr) = signal_and_wait(&mut child.0, "INT");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("engine stopped"), "{stderr}");
}
