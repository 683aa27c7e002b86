//! Media that plays damaged is on record (issue #15: a truncated or corrupt file "is
//! recorded"). A channel's playlist holds a copy of a.ts with garbage written over its middle
//! and its end cut inside a packet, then e.ts. What is whole of the copy plays; each time it
//! ends, the stoppage record gets a degradation (劣播) at `media` naming the file and what
//! was left out; the next item plays on and nothing is a stoppage.

use std::net::UdpSocket;
use std::time::Duration;

mod common;
use common::{media, record_lines, signal_and_wait, Daemon};

/// A config in `dir` with one channel `c` at `muxrate` playing `playlist` to `out`, and its
/// stoppage record in `record.jsonl`.
fn channel_c(
    dir: &std::path::Path,
    muxrate: &str,
    playlist: &[std::path::PathBuf],
    out: &UdpSocket,
) -> std::path::PathBuf {
    let entries: Vec<String> = playlist
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let cfg = dir.join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[record]\nfile = \"record.jsonl\"\n\n\
             [[channel]]\nid = \"c\"\nservice_id = 1\nname = \"C\"\nmuxrate = \"{muxrate}\"\n\
             playlist = [{}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{}\"\n",
            entries.join(", "),
            out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn damaged_media_is_a_degradation_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::read(media("a.ts")).unwrap();
    let mid = data.len() / 2;
    for (k, b) in data[mid..mid + 3000].iter_mut().enumerate() {
        *b = (k * 7 + 3) as u8;
    }
    data.truncate(data.len() * 3 / 4 + 100);
    let damaged = dir.path().join("damaged.ts");
    std::fs::write(&damaged, &data).unwrap();
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = channel_c(dir.path(), "3M", &[damaged, media("e.ts")], &out);
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(6));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    let lines = record_lines(&dir.path().join("record.jsonl"));
    let d = lines
        .iter()
        .find(|l| l["event"] == "degradation" && l["place"] == "media")
        .unwrap_or_else(|| panic!("no media degradation: {lines:#?}\n{stderr}"));
    assert_eq!(d["phase"], "instant", "{d}");
    assert_eq!(d["channel"], "c", "{d}");
    let cause = d["cause"].as_str().unwrap();
    assert!(
        cause.contains("damaged.ts played damaged") && cause.contains("bytes skipped"),
        "{cause}"
    );
    assert!(cause.contains("first at packet "), "{cause}");
    assert!(
        !lines.iter().any(|l| l["event"] == "stoppage"),
        "damage that plays is no stoppage: {lines:#?}"
    );
}

/// A channel whose media carries more than its muxrate (a.ts, about 0.9 Mbit/s, in a
/// 300 kbit/s channel) degrades: that is an alarm in the log and a degradation on record at
/// `muxrate`, naming the rate and the file, not a single warning.
#[test]
fn media_over_the_muxrate_is_a_degradation_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = channel_c(dir.path(), "300k", &[media("a.ts")], &out);
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(5));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("ALARM: input bitrate exceeds the muxrate"),
        "{stderr}"
    );
    let lines = record_lines(&dir.path().join("record.jsonl"));
    let d = lines
        .iter()
        .find(|l| l["event"] == "degradation" && l["place"] == "muxrate")
        .unwrap_or_else(|| panic!("no muxrate degradation: {lines:#?}\n{stderr}"));
    assert_eq!(d["channel"], "c", "{d}");
    let cause = d["cause"].as_str().unwrap();
    assert!(
        cause.contains("300000 bit/s") && cause.contains("a.ts"),
        "{cause}"
    );
}
