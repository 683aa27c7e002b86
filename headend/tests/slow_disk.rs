//! A slow or hung disk costs only the channels whose files are on it (issue #15: "a slow
//! disk: bounded, recorded, and the other channels keep their timing"). Six channels each
//! start with a "file" that never answers (a FIFO nobody writes to: its open blocks like a
//! read on a hung NFS mount), more than the daemon starts file I/O threads with; a seventh
//! plays ordinary files. Then:
//! - the seventh channel passes the strict checker across the run and never underflows:
//!   the I/O threads stuck on the hung files do not hold up its reads (one more thread is
//!   started whenever none is free);
//! - each hung channel gives its stuck item up after 2 s and goes on with the next item of
//!   its playlist; the hung file is not opened again while its first open has not come back
//!   (one thread per hung file, not one per retry);
//! - the daemon stops cleanly though threads are still stuck.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{
    checked_as, flatten, http_get, longest_gap_ns, media, receive_stamped, signal_and_wait, Daemon,
};
use playout::check::CheckLimits;

const MUXRATE: u64 = 2_000_000;
const HUNG: usize = 6;

#[test]
fn a_hung_disk_holds_up_only_its_own_channels() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\n\n[record]\nfile = \"record.jsonl\"\n\n",
        common::free_tcp_port()
    );
    let http: u16 = text
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let e = media("e.ts").display().to_string();
    let a = media("a.ts").display().to_string();
    for k in 0..HUNG {
        let fifo = dir.path().join(format!("hung-{k}.ts"));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        text.push_str(&format!(
            "[[channel]]\nid = \"hung{k}\"\nservice_id = {sid}\nname = \"H{k}\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{fifo:?}, {e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n\n",
            sid = k + 1,
            fifo = fifo.display().to_string(),
            // Nobody listens there: each channel its own address.
            port = 9 + k,
        ));
    }
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    text.push_str(&format!(
        "[[channel]]\nid = \"fine\"\nservice_id = 100\nname = \"Fine\"\nmuxrate = \"{MUXRATE}\"\n\
         playlist = [{e:?}, {a:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{}\"\n",
        rx.local_addr().unwrap().port()
    ));
    let cfg = dir.path().join("headend.toml");
    std::fs::write(&cfg, text).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cap = receive_stamped(rx, stop.clone(), Duration::from_secs(40));
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(9));
    let channels = http_get(http, "/channels");
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    stop.store(true, Ordering::Relaxed);
    let got = cap.join().unwrap();
    assert!(status.success(), "an orderly stop: {status:?}\n{stderr}");

    // The fine channel: on time and clean, not one underflow.
    let worst = longest_gap_ns(&got);
    assert!(
        worst < 200_000_000,
        "the fine channel paused {} ms",
        worst / 1_000_000
    );
    checked_as(
        "slow-disk-fine",
        &flatten(&got).0,
        &CheckLimits::across_joins(MUXRATE),
    );
    let v: serde_json::Value =
        serde_json::from_str(&channels).unwrap_or_else(|e| panic!("{e}: {channels}"));
    let fine = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "fine")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(fine["status"]["underflows"], 0, "{fine}");

    // The hung channels: each gave its stuck open up, and went on with e.ts.
    let given_up = stderr
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("the disk has not answered an open in 2 s"))
        .count();
    assert_eq!(given_up, HUNG, "one give-up per hung file:\n{stderr}");
    assert!(
        stderr.contains("one more is started"),
        "a thread was added: {stderr}"
    );
    for k in 0..HUNG {
        let on = stderr.lines().any(|l| {
            l.contains("item on air") && l.contains(&format!("hung{k}")) && l.contains("e.ts")
        });
        assert!(on, "hung{k} went on with e.ts:\n{stderr}");
    }
    // On record: each hung channel's stuck item is a media stoppage naming the disk; the
    // fine channel has none.
    let lines = common::record_lines(&dir.path().join("record.jsonl"));
    for k in 0..HUNG {
        assert!(
            lines
                .iter()
                .any(|l| l["channel"] == format!("hung{k}").as_str()
                    && l["event"] == "stoppage"
                    && l["place"] == "media"
                    && l["cause"]
                        .as_str()
                        .is_some_and(|c| c.contains("has not answered an open"))),
            "hung{k}'s stuck open on record: {lines:#?}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l["channel"] == "fine" && l["event"] == "stoppage"),
        "{lines:#?}"
    );
    // Retries of a hung file fail at once (its loop came round at least once per channel).
    assert!(
        stderr.contains("has not answered an earlier open or read"),
        "{stderr}"
    );
}
