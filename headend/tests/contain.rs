//! A panic in one channel's engine work is contained (issue #15: "a thread that panics:
//! bounded, recorded, and the other channels keep their timing"). Two channels share one
//! engine thread; the chaos knob (`HEADEND_CHAOS_PANIC=a@3`) makes channel `a`'s work panic
//! 3 s in. Then:
//! - the process keeps running and stops cleanly on SIGTERM (no exit 70, no restart);
//! - channel `b`, on the same engine thread, passes the strict checker across the whole run
//!   (continuity, PCR, PSI repetition) and no datagram of it comes later than 200 ms after
//!   the one before (kernel receive timestamps);
//! - channel `a` is built again and back on air within a second, and its schedule's hard
//!   start after the panic airs (the scheduler cues the rebuilt station afresh);
//! - the stoppage record has a stoppage of `a` at `head-end` naming the panic, ended when it
//!   is on air again.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{
    checked_as, civil_date, flatten, longest_gap_ns, media, receive_stamped, record_lines,
    signal_and_wait, utc_ns, Daemon,
};
use playout::check::CheckLimits;

const MUXRATE: u64 = 3_000_000;

fn clock(secs: i64) -> (String, String) {
    let s = secs.rem_euclid(86_400);
    (
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        civil_date(secs.div_euclid(86_400)),
    )
}

#[test]
fn a_panicking_channel_is_rebuilt_and_the_others_keep_their_timing() {
    let dir = tempfile::tempdir().unwrap();
    let (rx_a, rx_b) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    let (port_a, port_b) = (
        rx_a.local_addr().unwrap().port(),
        rx_b.local_addr().unwrap().port(),
    );
    // Channel a's schedule (UTC): g.ts at a hard start 10 s from now, after the panic.
    let t1 = utc_ns() / 1_000_000_000 + 10;
    let (c1, date) = clock(t1);
    let sched = dir.path().join("sched/a");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join(format!("{date}.toml")),
        format!(
            "date = \"{date}\"\n\n[[item]]\nstart = \"{c1}\"\nblock = [\"g.ts\"]\nloop_for = \"30s\"\ntitle = \"After\"\n"
        ),
    )
    .unwrap();
    let channel = |id: &str, sid: u16, port: u16| {
        format!(
            "[[channel]]\nid = \"{id}\"\nservice_id = {sid}\nname = \"{id}\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{e:?}, {a:?}]\nfiller = [{e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n\n",
            e = media("e.ts").display().to_string(),
            a = media("a.ts").display().to_string(),
        )
    };
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[engine]\nthreads = 1\n\n[schedules]\ndir = \"sched\"\nmedia_dir = {m:?}\n\n\
             [record]\nfile = \"record.jsonl\"\n\n{a}{b}",
            m = media("").display().to_string(),
            a = channel("a", 1, port_a),
            b = channel("b", 2, port_b),
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(40);
    let cap_a = receive_stamped(rx_a, stop.clone(), limit);
    let cap_b = receive_stamped(rx_b, stop.clone(), limit);
    std::env::set_var("HEADEND_CHAOS_PANIC", "a@3");
    let started = utc_ns();
    let mut daemon = Daemon::run(&cfg, "info");
    std::env::remove_var("HEADEND_CHAOS_PANIC");
    while utc_ns() < (t1 + 4) * 1_000_000_000 {
        assert!(utc_ns() - started < 30_000_000_000, "bounded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the daemon is still running after the panic"
    );
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (a, b) = (cap_a.join().unwrap(), cap_b.join().unwrap());
    assert!(status.success(), "an orderly stop: {status:?}\n{stderr}");
    assert!(
        stderr.contains("a panic, contained") && stderr.contains("HEADEND_CHAOS_PANIC"),
        "{stderr}"
    );

    // Channel b: every datagram on time, and a clean stream all along.
    assert!(b.len() > 1000, "{} datagrams of b", b.len());
    let worst = longest_gap_ns(&b);
    assert!(
        worst < 200_000_000,
        "b's datagrams: a gap of {} ms",
        worst / 1_000_000
    );
    checked_as(
        "contain-b",
        &flatten(&b).0,
        &CheckLimits {
            private_pids: vec![playout::ts::Pid::from_bits(0x21)],
            ..CheckLimits::across_joins(MUXRATE)
        },
    );

    // Channel a: on air again within a second of the panic, its schedule's item aired.
    let panic_at = stderr
        .lines()
        .find(|l| l.contains("a panic, contained"))
        .unwrap();
    eprintln!("{panic_at}");
    let longest = longest_gap_ns(&a);
    assert!(
        longest < 1_000_000_000,
        "a's output paused {} ms",
        longest / 1_000_000
    );
    let last_a = a.last().unwrap().0 as i64;
    assert!(
        last_a > (t1 + 3) * 1_000_000_000,
        "a on air after the rebuild"
    );
    let aired = stderr
        .lines()
        .filter(|l| l.contains("item on air") && l.contains("channel=\"a\"") && l.contains("g.ts"))
        .count();
    assert!(
        aired >= 1,
        "a's scheduled item after the rebuild:\n{stderr}"
    );
    assert!(
        stderr.contains("built again: its schedule is cued afresh"),
        "{stderr}"
    );

    // On record.
    let lines = record_lines(&dir.path().join("record.jsonl"));
    let start = lines
        .iter()
        .find(|l| {
            l["event"] == "stoppage"
                && l["phase"] == "start"
                && l["channel"] == "a"
                && l["place"] == "head-end"
                && l["cause"].as_str().unwrap().contains("panicked")
        })
        .unwrap_or_else(|| panic!("no stoppage for the panic: {lines:#?}"));
    let end = lines
        .iter()
        .find(|l| l["id"] == start["id"] && l["phase"] == "end")
        .unwrap_or_else(|| panic!("the panic's stoppage never ended: {lines:#?}"));
    eprintln!("{start}\n{end}");
    assert!(
        !lines
            .iter()
            .any(|l| l["channel"] == "b" && l["event"] == "stoppage"),
        "b had no stoppage: {lines:#?}"
    );
}
