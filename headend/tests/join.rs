//! The daemon started in the middle of a scheduled programme: it joins the programme at the
//! right offset, reading from near that offset rather than from the start of the file.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{
    civil_date as chrono_date, free_tcp_port, media, run_bounded, signal_and_wait, stderr_lines,
    tool, utc_ns, Daemon,
};

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

    // It started 25 s ago (UTC), on a whole second.
    let started = utc_ns() / 1_000_000_000 - 25;
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
    // The scheduler decides where to join at some instant between the daemon's start and
    // the engine's log line for that join, and joins there plus LEAD (4 s): the bounds below
    // come from those two instants, so a late start or a slow machine widens them honestly.
    let spawned = utc_ns();
    let mut daemon = Daemon::run(&cfg, "info");
    let lines = stderr_lines(&mut daemon.0);
    let mut stderr = String::new();
    let mut decided_by = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    let on_air = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((read, line)) = lines.recv_timeout(left) else {
            panic!("long.ts not on air within 40 s: {stderr}");
        };
        stderr += &line;
        stderr.push('\n');
        if line.contains("joining far into a file") {
            decided_by.get_or_insert((read, offset_s(&line)));
        }
        if line.contains("item on air") && line.contains("long.ts") {
            break offset_s(&line);
        }
    };
    let (status, _) = signal_and_wait(&mut daemon.0, "TERM");
    stderr.extend(lines.iter().map(|(_, l)| l + "\n"));
    assert!(status.success(), "{stderr}");
    let (decided_by, cue) = decided_by.unwrap_or_else(|| panic!("the join seeks: {stderr}"));
    let since_start = |utc: i64| (utc - started * 1_000_000_000) as f64 / 1e9;
    let earliest = since_start(spawned) + 4.0;
    let latest = since_start(decided_by) + 4.0;
    eprintln!(
        "joined long.ts at {cue:.2} s (between {earliest:.2} and {latest:.2} s), on air at the \
         key frame {on_air:.2} s in"
    );
    assert!(
        (earliest - 0.05..=latest + 0.05).contains(&cue),
        "joined {cue} s in, expected {earliest:.2}..={latest:.2}: {stderr}"
    );
    // Entered at the next key frame (1 s apart).
    assert!(
        (cue - 0.05..=cue + 1.05).contains(&on_air),
        "on air {on_air} s in, joined at {cue}: {stderr}"
    );
}

/// The `offset_s=` field of a log line.
fn offset_s(line: &str) -> f64 {
    line.split("offset_s=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {line}"))
}
