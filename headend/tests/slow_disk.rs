//! A slow or hung disk costs only the channels whose files are on it (issue #15: "a slow
//! disk: bounded, recorded, and the other channels keep their timing"). Six channels each
//! start with a file that never answers: a regular file on which another process holds a
//! write lease (`fcntl(F_SETLEASE, F_WRLCK)`, taken by a `python3` helper that ignores the
//! lease-break signal), so the kernel holds every open of it until the lease is broken
//! (`/proc/sys/fs/lease-break-time`, 45 s by default), as a hung NFS mount holds an open;
//! more than the daemon starts file I/O threads with. A seventh channel plays ordinary
//! files. Then:
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

/// A `python3` process holding a write lease on each of some files (killed when dropped):
/// every open of them by another process waits until the lease is broken.
struct Leases(std::process::Child);

impl Leases {
    fn hold(files: &[std::path::PathBuf]) -> Leases {
        use std::io::BufRead;
        let paths: Vec<String> = files
            .iter()
            .map(|f| format!("{:?}", f.display().to_string()))
            .collect();
        let script = format!(
            "import fcntl, os, signal, sys, time\n\
             signal.signal(signal.SIGIO, signal.SIG_IGN)\n\
             fds = [os.open(p, os.O_RDONLY) for p in [{}]]\n\
             for fd in fds:\n    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n\
             print('leased', flush=True)\n\
             time.sleep(120)\n",
            paths.join(", ")
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "leased", "the leases were not taken");
        Leases(child)
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    // The kernel keeps a leased file's open waiting this long at most: longer than the run.
    let break_s: u64 = std::fs::read_to_string("/proc/sys/fs/lease-break-time")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        break_s >= 20,
        "/proc/sys/fs/lease-break-time is {break_s} s: the hung opens would end too soon"
    );
    let hung: Vec<std::path::PathBuf> = (0..HUNG)
        .map(|k| {
            let f = dir.path().join(format!("hung-{k}.ts"));
            std::fs::copy(media("a.ts"), &f).unwrap();
            f
        })
        .collect();
    let _leases = Leases::hold(&hung);
    for (k, file) in hung.iter().enumerate() {
        text.push_str(&format!(
            "[[channel]]\nid = \"hung{k}\"\nservice_id = {sid}\nname = \"H{k}\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{file:?}, {e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n\n",
            sid = k + 1,
            file = file.display().to_string(),
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
