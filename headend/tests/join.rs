//! The daemon started in the middle of a scheduled programme: it joins the programme at the
//! right offset, reading from near that offset rather than from the start of the file.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::{
    civil_date as chrono_date, free_tcp_port, media, run_bounded, signal_and_wait, tool, Daemon,
};

fn utc_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn joins_a_programme_in_progress_at_its_offset() {
    let Some(ffmpeg) = tool("ffmpeg") else { return };
    let dir = tempfile::tempdir().unwrap();
    // A 60 s programme with continuous timestamps: a.ts looped by ffmpeg.
    let long = dir.path().join("long.ts");
    let out = run_bounded(
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-y", "-stream_loop", "11", "-i"])
            .arg(media("a.ts"))
            .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
            .arg(&long),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // It started 25 s ago (UTC); the daemon takes over about 4 s after it starts.
    let started = utc_secs() - 25;
    let (h, m, s) = (
        started.rem_euclid(86_400) / 3600,
        started.rem_euclid(3600) / 60,
        started.rem_euclid(60),
    );
    let date = chrono_date(started.div_euclid(86_400));
    let sched = dir.path().join("sched/join");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join(format!("{date}.toml")),
        format!(
            "date = \"{date}\"\n[[item]]\nstart = \"{h:02}:{m:02}:{s:02}\"\nfile = \"long.ts\"\ntitle = \"节目\"\n"
        ),
    )
    .unwrap();
    let http = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[schedules]\ndir = \"sched\"\n\n[[channel]]\n\
             id = \"join\"\nservice_id = 1\nname = \"Join\"\nmuxrate = \"3M\"\nplaylist = [{e:?}]\n\
             filler = [{e:?}]\ntimezone = \"UTC\"\n",
            e = media("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let daemon_started = utc_secs();
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(8));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("joining far into a file"),
        "the join seeks: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("item on air") && l.contains("long.ts"))
        .unwrap_or_else(|| panic!("long.ts never went on air: {stderr}"));
    let offset: f64 = line
        .split("offset_s=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {line}"));
    // Taken over 4-5 s after the daemon started, entered at the next key frame (1 s apart).
    let expected = (daemon_started - started) as f64 + 4.0;
    eprintln!("joined long.ts {offset:.2} s in (the schedule says about {expected:.1} s)");
    assert!(
        (expected - 1.0..expected + 2.5).contains(&offset),
        "joined {offset} s in, expected about {expected}: {line}"
    );
}
