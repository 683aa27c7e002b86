//! The service manager's protocol (`Type=notify`, issue #16 item 6), against a socket of our
//! own standing in for systemd's: `READY=1` once on air, `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` while the engine goes round, `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

mod common;
use common::{media, signal_and_wait, Daemon};

#[test]
fn ready_watchdog_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"2M\"\nplaylist = [{:?}]\n",
            media("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let path = socket_path.display().to_string();
    let mut daemon = Daemon::run_env(
        &cfg,
        "info",
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut got: Vec<(Duration, String)> = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((
                started.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    while let Ok(n) = socket.recv(&mut buf) {
        got.push((
            started.elapsed(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
    let states: Vec<&str> = got.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(states.first(), Some(&"READY=1"), "{got:?}");
    let pings = states.iter().filter(|s| **s == "WATCHDOG=1").count();
    // Every 0.5 s over the 3 s (a loaded machine may delay one).
    assert!(pings >= 4, "{pings} watchdog pings: {got:?}");
    assert!(states.contains(&"STOPPING=1"), "{got:?}");
}
