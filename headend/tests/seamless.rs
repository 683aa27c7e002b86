//! SMPTE ST 2022-7 seamless protection: a channel sent as RTP to two outputs (two paths)
//! carries one RTP stream on both (same SSRC, sequence numbers, timestamps); `hectl receive
//! --merge` takes the two paths, each through a relay here that loses datagrams (every 9th on
//! one and one in 13 of the others on the other, and one path cut for 1.5 s), and writes one
//! stream that lost nothing: the strict checker passes it and ffmpeg decodes it.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    checked_as, ffmpeg_errors, free_tcp_port, free_udp_port, hectl, media, run_bounded, tool,
    Daemon,
};
use playout::check::CheckLimits;

const MUXRATE: u64 = 2_000_000;

/// Forwards datagrams from `from` to `to` until `stop`, dropping the k-th when `drop(k, t)`
/// (t: seconds since the relay started).
fn relay(
    from: u16,
    to: u16,
    stop: Arc<AtomicBool>,
    drop: impl Fn(u64, f64) -> bool + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    let rx = UdpSocket::bind(("127.0.0.1", from)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut buf = [0u8; 2048];
        let (mut k, mut dropped) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = rx.recv(&mut buf) else { continue };
            k += 1;
            if drop(k, started.elapsed().as_secs_f64()) {
                dropped += 1;
                continue;
            }
            let _ = tx.send_to(&buf[..n], ("127.0.0.1", to));
        }
        dropped
    })
}

#[test]
fn two_lossy_paths_merge_into_a_stream_that_lost_nothing() {
    let Some(ffmpeg) = tool("ffmpeg") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (free_udp_port(), free_udp_port());
    let (in_a, in_b) = (free_udp_port(), free_udp_port());
    let http = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\n\
             muxrate = \"{MUXRATE}\"\nplaylist = [{:?}]\n\
             [[channel.output]]\nurl = \"rtp://127.0.0.1:{out_a}\"\n\
             [[channel.output]]\nurl = \"rtp://127.0.0.1:{out_b}\"\n",
            media("a.ts").display().to_string()
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Path A loses every 9th datagram and everything from 2 s to 3.5 s; path B one in 13
    // of the others (both relays see the same datagrams in the same order), none while A is
    // cut: no datagram is lost on both.
    let a = relay(out_a, in_a, stop.clone(), |k, t| {
        k % 9 == 0 || (2.0..3.5).contains(&t)
    });
    let b = relay(out_b, in_b, stop.clone(), |k, t| {
        k % 13 == 5 && k % 9 != 0 && !(1.8..3.7).contains(&t)
    });
    // The receiver first and the daemon stopped (cleanly) before it, so that the merged
    // stream is the channel's whole output, first packet to last.
    let merged = dir.path().join("merged.ts");
    let receiver = {
        let mut cmd = Command::new(hectl());
        cmd.args(["receive", "--merge"])
            .arg(format!("rtp://127.0.0.1:{in_a}"))
            .arg(format!("rtp://127.0.0.1:{in_b}"))
            .args(["--for", "9s", "-o"])
            .arg(&merged);
        std::thread::spawn(move || run_bounded(&mut cmd, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(6));
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    let out = receiver.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (dropped_a, dropped_b) = (a.join().unwrap(), b.join().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stderr}");
    let stats: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or("{}")).unwrap();
    assert!(dropped_a > 100 && dropped_b > 15, "{dropped_a} {dropped_b}");
    assert_eq!(stats["lost"], 0, "{stats}");
    assert_eq!(stats["late"], 0, "{stats}");
    assert!(stats["taken"][1].as_u64().unwrap() > 100, "{stats}");
    let data = std::fs::read(&merged).unwrap();
    assert!(data.len() > 1_000_000, "{}", data.len());
    let r = checked_as("merged-2022-7", &data, &CheckLimits::across_joins(MUXRATE));
    assert_eq!(r.cc_error_count, 0);
    let errors = ffmpeg_errors(ffmpeg, &merged);
    assert!(errors.is_empty(), "ffmpeg: {errors:?}");
    // One path alone, for comparison: the losses show.
    let mut daemon = Daemon::run(&cfg, "info");
    let single = dir.path().join("single.ts");
    let stop = Arc::new(AtomicBool::new(false));
    let a = relay(out_a, in_a, stop.clone(), |k, _| k % 9 == 0);
    let out = run_bounded(
        Command::new(hectl())
            .arg("receive")
            .arg(format!("rtp://127.0.0.1:{in_a}"))
            .args(["--for", "2s", "-o"])
            .arg(&single),
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or("{}")).unwrap();
    assert!(stats["lost"].as_u64().unwrap() > 20, "{stats}");
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}
