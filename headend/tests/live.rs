//! A live channel with a main and a backup input (UDP on loopback, sent in real time by a
//! test sender paced by the streams' own PCR): the main on air, killed mid-GOP (the backup
//! takes over), back and restored after `restore_after`, then corrupted (lost packets: the
//! backup again). The output passes the strict checker across every switch and ffmpeg decodes
//! it without an error line.
//!
//! Main and backup are told apart by their PMTs: the main has H.264 + AAC, the backup H.264 +
//! AAC + AC-3 (both made by ffmpeg), the slate is c.ts (HEVC).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use playout::check::CheckLimits;
use playout::psi::Pmt;
use playout::ts::{Pid, PACKET_SIZE};

mod common;
use common::{
    checked_as, ffmpeg_errors, free_udp_port, media, paced, packets, receive_stamped, run_bounded,
    sections, sender, signal_and_wait, source, tool, utc_ns, Daemon, Stamped, MAIN_CORRUPT,
    MAIN_KILLED, MAIN_ON,
};

const MUXRATE: u64 = 4_000_000;
const MS: i64 = 1_000_000;

/// The PMT changes in the capture: (kernel stamp of the datagram, which source: 'm' main,
/// 'b' backup, 's' slate, 'f' the b.ts fixture (MPEG audio), '?' other), in order.
fn sources(cap: &Stamped) -> Vec<(i64, char)> {
    let mut out: Vec<(i64, char)> = Vec::new();
    for (t, s) in sections(&packets(cap), 0x1000) {
        let Ok(pmt) = Pmt::parse(Pid::from_bits(0x1000), &s) else {
            continue;
        };
        let types: Vec<u8> = pmt.streams.iter().map(|e| e.stream_type).collect();
        let which = if types.contains(&0x24) {
            's'
        } else if types.contains(&0x81) {
            'b'
        } else if types.iter().any(|t| matches!(t, 0x03 | 0x04)) {
            'f'
        } else if types.contains(&0x1B) {
            'm'
        } else {
            '?'
        };
        if out.last().is_none_or(|(_, c)| *c != which) {
            out.push((t, which));
        }
    }
    out
}

/// The kernel stamps of the last ES datagram before `at` and the first after it.
fn es_around(cap: &Stamped, at: i64) -> (i64, i64) {
    let es = |d: &Vec<u8>| {
        d.chunks_exact(PACKET_SIZE).any(|p| {
            let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
            (0x100..0x1000).contains(&pid) && p[3] & 0x10 != 0 && p[1] & 0x40 != 0
        })
    };
    let before = cap
        .iter()
        .filter(|(t, d)| (*t as i64) < at && es(d))
        .map(|(t, _)| *t as i64)
        .next_back()
        .unwrap_or(at);
    let after = cap
        .iter()
        .filter(|(t, d)| (*t as i64) >= at && es(d))
        .map(|(t, _)| *t as i64)
        .next()
        .unwrap_or(at);
    (before, after)
}

/// `/channels` of the daemon listening on `http`.
fn channels_of(http: u16) -> serde_json::Value {
    let out = run_bounded(
        Command::new("curl").args(["-s", &format!("http://127.0.0.1:{http}/channels")]),
        Duration::from_secs(10),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first relay of channel `id` in a `/channels` answer.
fn relay_of(channels: &serde_json::Value, id: &str) -> serde_json::Value {
    channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"]["relays"][0].clone())
        .unwrap_or_else(|| panic!("no channel {id}: {channels}"))
}

/// The captured output passes the strict checker (a frozen picture of up to a failure's
/// detection allowed) and ffmpeg decodes it without an error line.
fn check_and_decode(name: &str, cap: &Stamped, dir: &Path) {
    let data: Vec<u8> = cap.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    let limits = CheckLimits {
        max_video_step_ratio: 30.0,
        max_audio_step_ratio: 40.0,
        ..CheckLimits::across_joins(MUXRATE)
    };
    let r = checked_as(name, &data, &limits);
    assert_eq!(r.cc_error_count, 0, "{name}");
    let file = dir.join(format!("{name}.ts"));
    std::fs::write(&file, &data).unwrap();
    let ffmpeg = tool("ffmpeg").expect("ffmpeg");
    let errors = ffmpeg_errors(ffmpeg, &file);
    assert!(errors.is_empty(), "{name}: ffmpeg: {errors:?}");
}

/// A `[[channel]]` with the c.ts slate, one input named `input` at `url`, and an output to
/// 127.0.0.1:`out` if any.
fn live_channel(id: &str, sid: u16, input: &str, url_and_keys: &str, out: Option<u16>) -> String {
    format!(
        "[[channel]]\nid = \"{id}\"\nservice_id = {sid}\nname = \"{id}\"\nmuxrate = \"{MUXRATE}\"\n\
         playlist = [{slate:?}]\n\n[[channel.input]]\nname = \"{input}\"\n{url_and_keys}\n\n{}",
        out.map_or_else(String::new, |o| format!(
            "[[channel.output]]\nurl = \"udp://127.0.0.1:{o}\"\n\n"
        )),
        slate = media("c.ts").display().to_string(),
    )
}

/// Writes a config with the API on 127.0.0.1:`http` and `channels`; returns its path.
fn write_config(dir: &Path, http: u16, channels: &[String]) -> PathBuf {
    let cfg = dir.join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n{}",
            channels.concat()
        ),
    )
    .unwrap();
    cfg
}

const TOKEN: &str = "operator-token-0123456789abcdef";

fn config_with(dir: &Path, main: u16, backup: u16, out: u16, http: u16, extra: &str) -> PathBuf {
    let cfg = dir.join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n{extra}\
             [[channel]]\nid = \"live\"\nservice_id = 1\nname = \"Live\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{slate:?}]\n\n\
             [channel.failover]\nloss_timeout = \"200ms\"\nrestore_after = \"3s\"\nlead = \"300ms\"\n\n\
             [[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{main}\"\n\n\
             [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{backup}\"\n\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{out}\"\n",
            slate = media("c.ts").display().to_string(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn main_killed_restored_and_corrupted_the_output_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let main = paced(&source(dir.path(), "main", 24, false), 0x100);
    let backup = paced(&source(dir.path(), "backup", 24, true), 0x100);
    let (pm, pb) = (free_udp_port(), free_udp_port());
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    // The stoppage record, and a webhook receiving its events.
    let hook_stop = Arc::new(AtomicBool::new(false));
    let (hook_port, hook) = common::webhook_receiver(hook_stop.clone(), Duration::from_secs(90));
    let cfg = config_with(
        dir.path(),
        pm,
        pb,
        out,
        http,
        &format!("[record]\nfile = \"state/record.jsonl\"\n\n[[record.webhook]]\nurl = \"http://127.0.0.1:{hook_port}/alarms\"\n\n"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&cfg, "info");
    let mode = Arc::new(AtomicU8::new(MAIN_ON));
    let send_stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let send = sender(main, backup, (pm, pb), mode.clone(), send_stop.clone());
    let at = |s: f64| {
        while started.elapsed() < Duration::from_secs_f64(s) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Main on air by then; killed 0.5 s into a GOP (IDR every second).
    at(5.5);
    mode.store(MAIN_KILLED, Ordering::Relaxed);
    at(9.0);
    mode.store(MAIN_ON, Ordering::Relaxed);
    let revived_at = utc_ns();
    // Restored after 3 s clean: by about 12.3 s.
    at(14.0);
    mode.store(MAIN_CORRUPT, Ordering::Relaxed);
    let corrupted_at = utc_ns();
    at(16.5);
    mode.store(MAIN_ON, Ordering::Relaxed);
    // An operator: the main locked on air (clean again by now), then killed: it stays, as
    // locked; unlocked, the backup takes over.
    at(18.0);
    let hectl = |args: &[&str]| {
        let out = run_bounded(
            Command::new(common::hectl())
                .args(["input", "--server", &format!("http://127.0.0.1:{http}")])
                .args(args)
                .env("HECTL_TOKEN", TOKEN)
                .env("HECTL_OPERATOR", "duty@mcr"),
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "hectl input {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let relay = relay_of(&channels_of(http), "live");
    assert_eq!(relay["active"], "backup", "{relay}");
    assert_eq!(relay["inputs"][0]["name"], "main");
    // Every switch is on record: when (UTC and local), from, to, why, and its gap on air.
    let switches = relay["switches"].as_array().unwrap();
    let kill = switches
        .iter()
        .find(|s| s["from"] == "main" && s["to"] == "backup")
        .unwrap_or_else(|| panic!("{relay}"));
    assert!(
        kill["cause"]
            .as_str()
            .unwrap()
            .starts_with("input failed: no data"),
        "{kill}"
    );
    assert!(kill["utc"].as_str().unwrap().ends_with('Z'), "{kill}");
    assert!(
        kill["local"].as_str().unwrap().ends_with("+00:00"),
        "{kill}"
    );
    let gap = kill["gap_ms"].as_f64().unwrap_or_else(|| panic!("{kill}"));
    assert!((0.0..=300.0).contains(&gap), "{kill}");
    // The daemon's own TR 101 290 monitor of what it sends: nothing across the switches.
    let channels = channels_of(http);
    let station = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "live")
        .unwrap();
    let tr = station["status"]["tr101290"].as_object().unwrap();
    assert_eq!(tr.len(), 16, "{tr:?}");
    for (rule, n) in tr {
        assert_eq!(n, 0, "{rule}: {tr:?}");
    }
    // Each input's own monitor, on all that arrives: the main's losses are continuity errors
    // there, in /channels and in /metrics.
    for input in relay["inputs"].as_array().unwrap() {
        let tr = input["tr101290"].as_object();
        assert_eq!(tr.map(|t| t.len()), Some(16), "{input}");
    }
    assert!(
        relay["inputs"][0]["tr101290"]["1.4 Continuity_count_error"]
            .as_u64()
            .unwrap()
            > 0,
        "{relay}"
    );
    let metrics = common::http_get(http, "/metrics");
    let main_cc =
        "headend_input_tr101290_errors_total{channel=\"live\",input=\"main\",rule=\"1.4\"";
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(main_cc) && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        relay["inputs"][0]["cc_errors"].as_u64().unwrap() > 0,
        "{relay}"
    );
    assert!(
        relay["inputs"][1]["bytes"].as_u64().unwrap() > 1_000_000,
        "{relay}"
    );
    let locked_at = utc_ns();
    assert_eq!(hectl(&["lock", "live", "main"]).trim(), "live: lock main");
    at(19.0);
    mode.store(MAIN_KILLED, Ordering::Relaxed);
    at(20.0);
    let relay = relay_of(&channels_of(http), "live");
    assert_eq!(relay["active"], "main", "{relay}");
    assert_eq!(relay["locked"], true, "{relay}");
    let status = run_bounded(
        Command::new(common::hectl()).args([
            "status",
            "live",
            "--server",
            &format!("http://127.0.0.1:{http}"),
        ]),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("live  relaying `main`, locked")
            && text.contains("input `main`: no data for"),
        "hectl status:\n{text}"
    );
    assert!(
        relay["inputs"][0]["health"]
            .as_str()
            .unwrap()
            .starts_with("no data"),
        "{relay}"
    );
    let unlocked_at = utc_ns();
    assert_eq!(hectl(&["unlock", "live"]).trim(), "live: unlock playlist");
    at(21.5);
    // The stoppage record as `hectl report` gives it, while on air.
    let report = common::hectl_report(http, &["--channel", "live", "--format", "json"]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let figures = &report["channels"][0];
    assert_eq!(figures["channel"], "live", "{report:#}");
    // Kill, corruption, unlock: a backup on air three times.
    assert_eq!(figures["failovers"], 3, "{report:#}");
    assert_eq!(figures["manual_actions"], 2, "{report:#}");
    // The slate before the main first settled is no stoppage (the start's grace); the main
    // locked on air while dead is one: nothing to send, null packets in place of the
    // programme, until the unlock.
    assert_eq!(figures["stoppages"], 1, "{report:#}");
    let (cause, n) = figures["causes"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert!(cause.starts_with("underflow"), "{report:#}");
    assert_eq!(n["count"], 1);
    let csv = common::hectl_report(http, &["--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout).into_owned();
    assert!(
        csv.starts_with("id,event,channel,place,start_utc,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .filter(|l| l.contains(",failover,live,input,"))
            .count()
            == 3,
        "{csv}"
    );
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    hook_stop.store(true, Ordering::Relaxed);
    let hooked = hook.join().unwrap();
    let lines = common::record_lines(&dir.path().join("state/record.jsonl"));
    eprintln!(
        "record:\n{}",
        lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every line went to the webhook too, in order.
    assert_eq!(hooked, lines, "webhook and journal differ");
    let failovers: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "failover" && l["phase"] == "start")
        .collect();
    assert_eq!(failovers.len(), 3, "{lines:#?}");
    assert!(
        failovers[0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("input failed: no data"),
        "{lines:#?}"
    );
    assert_eq!(failovers[0]["on_air"], "main", "{lines:#?}");
    assert_eq!(failovers[0]["channel"], "live");
    assert!(
        failovers[1]["cause"]
            .as_str()
            .unwrap()
            .contains("continuity"),
        "{lines:#?}"
    );
    let ended = |id: &serde_json::Value| {
        lines
            .iter()
            .find(|l| l["id"] == *id && l["phase"] == "end")
            .unwrap_or_else(|| panic!("{id} never ended: {lines:#?}"))
    };
    let back = ended(&failovers[0]["id"]);
    assert_eq!(back["on_air"], "main", "{back}");
    assert!(
        back["cause"].as_str().unwrap().contains("restored"),
        "{back}"
    );
    let secs = back["duration_s"].as_f64().unwrap();
    assert!((5.0..9.0).contains(&secs), "{back}");
    // The last failover (unlocked onto the backup) ends with the run.
    assert!(ended(&failovers[2]["id"])["cause"]
        .as_str()
        .unwrap()
        .contains("SIGTERM"));
    let manual: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "manual").collect();
    assert_eq!(manual.len(), 2, "{lines:#?}");
    assert!(
        manual
            .iter()
            .all(|m| m["actor"] == "duty@mcr" && m["channel"] == "live"),
        "{manual:#?}"
    );
    assert_eq!(manual[0]["cause"], "input switch to main, locked");
    let run_end = lines.last().unwrap();
    assert_eq!(
        (&run_end["event"], &run_end["phase"], &run_end["cause"]),
        (&"run".into(), &"end".into(), &"SIGTERM".into()),
        "{run_end}"
    );
    send_stop.store(true, Ordering::Relaxed);
    let kills = send.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let switches: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("input switch"))
        .collect();
    eprintln!("{}", switches.join("\n"));

    let seq = sources(&cap);
    let order: String = seq.iter().map(|(_, c)| *c).collect();
    assert!(
        order.ends_with("mbmbmb"),
        "slate, then main, backup (kill), main (restored), backup (corrupt), main (locked),
         backup (unlocked) expected; got {order:?}\n{}",
        switches.join("\n")
    );
    let n = seq.len();
    let (kill_switch, restore, corrupt_switch) = (seq[n - 5].0, seq[n - 4].0, seq[n - 3].0);
    let (lock_switch, unlock_switch) = (seq[n - 2].0, seq[n - 1].0);
    eprintln!(
        "operator: locked main on air {} ms after the order, backup {} ms after the unlock",
        (lock_switch - locked_at) / MS,
        (unlock_switch - unlocked_at) / MS
    );
    assert!(lock_switch - locked_at < 1500 * MS);
    assert!(unlock_switch - unlocked_at < 1500 * MS);
    // Locked, the dead main stayed on air: the backup came only after the unlock (a lock
    // that did not hold puts it on air at the kill, before the unlock was ordered).
    assert!(unlock_switch > unlocked_at, "the lock held");
    // The kill: the backup's first ES packet within 300 ms of the main's last on the output.
    let (last_main, first_backup) = es_around(&cap, kill_switch);
    let gap = first_backup - last_main;
    let since_kill = first_backup - kills[0];
    eprintln!(
        "kill: output gap {} ms (main's last to backup's first), backup on air {} ms after the main's last datagram in",
        gap / MS,
        since_kill / MS
    );
    assert!(gap <= 300 * MS, "output gap {} ms", gap / MS);
    // Restored no sooner than restore_after of clean input.
    assert!(
        restore - revived_at >= 3000 * MS,
        "restored {} ms after the main came back",
        (restore - revived_at) / MS
    );
    // Corruption is caught like a kill.
    let caught = corrupt_switch - corrupted_at;
    eprintln!(
        "corruption: backup on air {} ms after it began",
        caught / MS
    );
    assert!(caught < 1500 * MS, "{} ms", caught / MS);
    assert!(
        switches.iter().any(|l| l.contains("continuity")),
        "the corruption switch names its cause:\n{}",
        switches.join("\n")
    );

    // The output across all of it: continuity, PCR, PSI, no DTS going back; a frozen picture
    // of up to the detection time at each failure.
    check_and_decode("live-failover", &cap, dir.path());
}

/// Real senders nobody here wrote: ffmpeg streams one source to an IPv6 multicast group
/// (`udp://[ff15::…]`, on loopback) and another as RTP (`-f rtp_mpegts`) to a unicast port;
/// two channels relay them. Each goes from its slate to its input, the output passes the
/// strict checker and ffmpeg decodes it, and the RTP input's counters show no loss.
#[test]
fn ffmpeg_multicast_and_rtp_sources_are_relayed() {
    let ffmpeg = tool("ffmpeg").expect("ffmpeg is needed");
    let dir = tempfile::tempdir().unwrap();
    source(dir.path(), "src", 12, false);
    let src = dir.path().join("src.ts");
    let group = "ff15::a:51";
    common::multicast_on_lo(group);
    let (pm, pr) = (free_udp_port(), free_udp_port());
    let rx_m = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx_r = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (om, or) = (
        rx_m.local_addr().unwrap().port(),
        rx_r.local_addr().unwrap().port(),
    );
    let http = common::free_tcp_port();
    let cfg = write_config(
        dir.path(),
        http,
        &[
            live_channel(
                "mcast",
                1,
                "feed",
                &format!("url = \"udp://[{group}]:{pm}\"\ninterface = \"lo\""),
                Some(om),
            ),
            live_channel(
                "rtp",
                2,
                "feed",
                &format!("url = \"rtp://127.0.0.1:{pr}\""),
                Some(or),
            ),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cap_m = receive_stamped(rx_m, stop.clone(), Duration::from_secs(60));
    let cap_r = receive_stamped(rx_r, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&cfg, "info");
    let send = |url: String, format: &str| {
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&src)
            .args(["-map", "0", "-c", "copy", "-f", format])
            .arg(url)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ffmpeg")
    };
    let mut senders = [
        send(
            format!("udp://[{group}]:{pm}?pkt_size=1316&ttl=1"),
            "mpegts",
        ),
        send(format!("rtp://127.0.0.1:{pr}"), "rtp_mpegts"),
    ];
    std::thread::sleep(Duration::from_secs(7));
    let channels = channels_of(http);
    // The daemon first, so the senders' end is not a failure on air.
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    for s in &mut senders {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for (name, cap) in [
        ("mcast", cap_m.join().unwrap()),
        ("rtp", cap_r.join().unwrap()),
    ] {
        let relay = relay_of(&channels, name);
        let input = &relay["inputs"][0];
        assert_eq!(input["health"], "good", "{name}: {relay}");
        assert_eq!(input["cc_errors"], 0, "{name}: {relay}");
        if name == "rtp" {
            assert!(input["bytes"].as_u64().unwrap() > 100_000, "{relay}");
            assert_eq!(input["rtp_lost"], 0, "{relay}");
            assert_eq!(input["foreign_datagrams"], 0, "{relay}");
        }
        // (The muxer's first PMT, before the slate starts, lists no stream: '?'.)
        let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
        assert_eq!(
            order.trim_start_matches('?'),
            "sm",
            "{name}: slate, then the feed ({order:?})\n{stderr}"
        );
        check_and_decode(&format!("live-{name}"), &cap, dir.path());
    }
}

/// HTTP pull: ffmpeg serving a live stream (`-listen 1`) is relayed; servers that answer
/// 404, HTML, or bytes that are not a transport stream leave their channels on the slate
/// with the reason in the status, and none of it holds up the channel that works.
#[test]
fn http_inputs_pull_and_bad_servers_are_named() {
    use std::io::{Read as _, Write as _};
    let ffmpeg = tool("ffmpeg").expect("ffmpeg is needed");
    let dir = tempfile::tempdir().unwrap();
    source(dir.path(), "src", 12, false);
    let src = dir.path().join("src.ts");
    // A bad server: 404 for /missing, HTML for /page, random bytes for /noise.
    let bad = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad_port = bad.local_addr().unwrap().port();
    bad.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bad_stop = stop.clone();
    let server = std::thread::spawn(move || {
        let mut served = 0;
        while !bad_stop.load(Ordering::Relaxed) && served < 200 {
            let Ok((mut c, _)) = bad.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            served += 1;
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut req = [0u8; 2048];
            let n = c.read(&mut req).unwrap_or(0);
            let req = String::from_utf8_lossy(&req[..n]);
            let reply: Vec<u8> = if req.starts_with("GET /missing ") {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else if req.starts_with("GET /page ") {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html>hello</html>"
                    .to_vec()
            } else {
                let mut r = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                let mut x = 0x9E37_79B9u32;
                r.extend((0..200_000).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Never a sync byte.
                    (x as u8) & 0x3F
                }));
                r
            };
            let _ = c.write_all(&reply);
        }
    });
    let pull_port = common::free_tcp_port();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    let cfg = write_config(
        dir.path(),
        http,
        &[
            live_channel(
                "pull",
                1,
                "web",
                &format!("url = \"http://127.0.0.1:{pull_port}/live.ts\""),
                Some(out),
            ),
            live_channel(
                "missing",
                2,
                "web",
                &format!("url = \"http://127.0.0.1:{bad_port}/missing\""),
                None,
            ),
            live_channel(
                "html",
                3,
                "web",
                &format!("url = \"http://127.0.0.1:{bad_port}/page\""),
                None,
            ),
            live_channel(
                "noise",
                4,
                "web",
                &format!("url = \"http://127.0.0.1:{bad_port}/noise\""),
                None,
            ),
        ],
    );
    let cap_stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, cap_stop.clone(), Duration::from_secs(60));
    let mut sender = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&src)
        .args(["-map", "0", "-c", "copy", "-f", "mpegts", "-listen", "1"])
        .arg(format!("http://127.0.0.1:{pull_port}/live.ts"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(7));
    let channels = channels_of(http);
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    let _ = sender.kill();
    let _ = sender.wait();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    cap_stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let relay = |id: &str| relay_of(&channels, id);
    let pull = relay("pull");
    assert_eq!(pull["active"], "web", "{pull}\n{stderr}");
    assert_eq!(pull["inputs"][0]["health"], "good", "{pull}");
    for (id, why) in [
        ("missing", "HTTP 404 Not Found"),
        (
            "html",
            "the server sends text/html; charset=utf-8, not a transport stream",
        ),
        (
            "noise",
            "the server sends something that is not a transport stream",
        ),
    ] {
        let r = relay(id);
        assert_eq!(r["active"], serde_json::Value::Null, "{id}: {r}");
        assert_eq!(r["inputs"][0]["error"], why, "{id}: {r}");
    }
    let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
    assert_eq!(order.trim_start_matches('?'), "sm", "{order:?}\n{stderr}");
    check_and_decode("live-http", &cap, dir.path());
}

/// SRT against libsrt's own tool and ffmpeg's libsrt, each direction: `srt-live-transmit` as
/// caller into our listener (AES-256, IPv6), as listener for our caller (AES-128, IPv4) and
/// as our rendezvous peer (AES-192, each side on its own port), ffmpeg as a clear caller into
/// our listener, and a caller with the wrong passphrase, refused and counted. Each sender is fed in real time by ffmpeg (`-re`).
#[test]
fn srt_both_ways_with_libsrt_and_ffmpeg() {
    let ffmpeg = tool("ffmpeg").expect("ffmpeg is needed");
    let slt = tool("srt-live-transmit").expect("srt-live-transmit (srt-tools) is needed");
    let dir = tempfile::tempdir().unwrap();
    source(dir.path(), "src", 14, false);
    let src = dir.path().join("src.ts");
    const PASS: &str = "correct-horse-battery";
    // ffmpeg writes its TS output in bursts up to ~350 ms apart (through libsrt too): such a
    // sender needs a loss timeout and a lead above that.
    const BURSTY: &str = "\n\n[channel.failover]\nloss_timeout = \"1s\"\nlead = \"800ms\"";
    let [l6, c4, lf, lw, ours, theirs] = [0; 6].map(|_| free_udp_port());
    let rx: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let outs: Vec<u16> = rx.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let http = common::free_tcp_port();
    let cfg = write_config(
        dir.path(),
        http,
        &[
            live_channel(
                "listen6",
                1,
                "srt",
                &format!("url = \"srt://[::1]:{l6}?mode=listener&passphrase={PASS}&pbkeylen=32&latency=120\"{BURSTY}"),
                Some(outs[0])
            ),
            live_channel(
                "call4",
                2,
                "srt",
                &format!("url = \"srt://127.0.0.1:{c4}?mode=caller&passphrase={PASS}&pbkeylen=16\"{BURSTY}"),
                Some(outs[1])
            ),
            live_channel(
                "ffmpeg",
                3,
                "srt",
                &format!("url = \"srt://127.0.0.1:{lf}?mode=listener\"{BURSTY}"),
                Some(outs[2])
            ),
            live_channel(
                "rendezvous",
                5,
                "srt",
                &format!("url = \"srt://127.0.0.1:{theirs}?mode=rendezvous&port={ours}&passphrase={PASS}&pbkeylen=24\"{BURSTY}"),
                Some(outs[3])
            ),
            live_channel(
                "wrong",
                4,
                "srt",
                &format!("url = \"srt://127.0.0.1:{lw}?mode=listener&passphrase={PASS}\""),
                None
            ),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let caps: Vec<_> = rx
        .into_iter()
        .map(|s| receive_stamped(s, stop.clone(), Duration::from_secs(60)))
        .collect();
    let mut daemon = Daemon::run(&cfg, "info");
    // `ffmpeg -re … | srt-live-transmit file://con URL`.
    let piped = |url: String| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {ffmpeg} -nostdin -v error -re -i '{}' -map 0 -c copy -f mpegts - | exec {slt} -q file://con '{url}'",
                src.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sh")
    };
    let mut senders = vec![
        piped(format!(
            "srt://[::1]:{l6}?mode=caller&passphrase={PASS}&pbkeylen=32"
        )),
        piped(format!(
            "srt://127.0.0.1:{c4}?mode=listener&passphrase={PASS}&pbkeylen=16"
        )),
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&src)
            .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
            .arg(format!("srt://127.0.0.1:{lf}?mode=caller"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ffmpeg"),
        piped(format!(
            "srt://127.0.0.1:{lw}?mode=caller&passphrase=not-the-right-one&pbkeylen=16"
        )),
        piped(format!(
            "srt://127.0.0.1:{ours}?mode=rendezvous&port={theirs}&passphrase={PASS}&pbkeylen=24"
        )),
    ];
    std::thread::sleep(Duration::from_secs(9));
    let channels = channels_of(http);
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    for s in &mut senders {
        let _ = Command::new("pkill")
            .args(["-P", &s.id().to_string()])
            .status();
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for (id, cap) in ["listen6", "call4", "ffmpeg", "rendezvous"]
        .into_iter()
        .zip(caps)
    {
        let cap = cap.join().unwrap();
        let relay = relay_of(&channels, id);
        assert_eq!(relay["active"], "srt", "{id}: {relay}\n{stderr}");
        assert_eq!(relay["inputs"][0]["health"], "good", "{id}: {relay}");
        let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
        assert_eq!(
            order.trim_start_matches('?'),
            "sm",
            "{id}: {order:?}\n{stderr}"
        );
        check_and_decode(&format!("live-srt-{id}"), &cap, dir.path());
    }
    let wrong = relay_of(&channels, "wrong");
    assert_eq!(wrong["active"], serde_json::Value::Null, "{wrong}");
    assert!(
        wrong["inputs"][0]["refused_connections"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{wrong}\n{stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("connection refused") && l.contains("input=srt"))
            .count(),
        1,
        "logged once:\n{stderr}"
    );
}

/// A feed whose PIDs and codecs change mid-stream (an encoder reconfigured: AC-3 added, on
/// the same timeline): the channel rejoins it and carries the new streams.
#[test]
fn a_feed_changing_its_pmt_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let before = paced(&source(dir.path(), "before", 14, false), 0x100);
    let after = paced(&source(dir.path(), "after", 14, true), 0x100);
    let port = free_udp_port();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    let cfg = write_config(
        dir.path(),
        http,
        &[live_channel(
            "feed",
            1,
            "enc",
            &format!("url = \"udp://127.0.0.1:{port}\""),
            Some(out),
        )],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&cfg, "info");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    // The same timeline: datagram times from each source's own PCR; the change at 5 s.
    let (mut i, mut j) = (0, 0);
    while start.elapsed() < Duration::from_secs(11) {
        let now = start.elapsed().as_nanos() as u64;
        let switched = now >= 5_000_000_000;
        while i < before.len() && before[i].0 <= now {
            if !switched {
                socket.send_to(&before[i].1, ("127.0.0.1", port)).unwrap();
            }
            i += 1;
        }
        while j < after.len() && after[j].0 <= now {
            if switched {
                socket.send_to(&after[j].1, ("127.0.0.1", port)).unwrap();
            }
            j += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
    assert!(
        order.trim_start_matches('?').starts_with("smb"),
        "slate, the feed, the feed with its new PMT: {order:?}\n{stderr}"
    );
    assert!(stderr.contains("PMT changed"), "{stderr}");
    check_and_decode("live-pmt-change", &cap, dir.path());
}

/// A channel driven by its schedule, with live items between files: a hard start on the
/// `main` input (backup `backup`), killed part-way (the backup takes the rest of the item),
/// files after it at their times, then a live item on an input that sends nothing (the
/// channel's playlist fills it), and files again. Before the first live item the inputs
/// are good yet stay off air: between live items the schedule decides.
#[test]
fn a_schedule_relays_its_live_items_between_files() {
    let dir = tempfile::tempdir().unwrap();
    let main = paced(&source(dir.path(), "main", 40, false), 0x100);
    let backup = paced(&source(dir.path(), "backup", 40, true), 0x100);
    let (pm, pb, dead) = (free_udp_port(), free_udp_port(), free_udp_port());
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    // T0: b.ts (H.264 + MP2) for 5 s; T0+5: live `main` for 8 s (backup `backup`); T0+13:
    // b.ts for 4 s; T0+17: live `dead` for 4 s; T0+21: b.ts for 4 s.
    let t0 = utc_ns() / 1_000_000_000 + 12;
    let hms = |secs: i64| {
        let s = secs.rem_euclid(86_400);
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    let date = common::civil_date(t0.div_euclid(86_400));
    assert_eq!(
        date,
        common::civil_date((t0 + 30).div_euclid(86_400)),
        "not across midnight; run again"
    );
    let sched = dir.path().join("sched/studio");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join(format!("{date}.toml")),
        format!(
            "date = \"{date}\"\n\n\
             [[item]]\nstart = \"{}\"\nblock = [\"b.ts\"]\nloop_for = \"5s\"\ntitle = \"Before\"\n\n\
             [[item]]\nstart = \"{}\"\nlive = \"main\"\nduration = \"8s\"\nbackup = [\"backup\"]\ntitle = \"Studio\"\n\n\
             [[item]]\nblock = [\"b.ts\"]\nloop_for = \"4s\"\ntitle = \"Between\"\n\n\
             [[item]]\nstart = \"{}\"\nlive = \"dead\"\nduration = \"4s\"\ntitle = \"Outside broadcast\"\n\n\
             [[item]]\nblock = [\"b.ts\"]\nloop_for = \"4s\"\ntitle = \"After\"\n",
            hms(t0),
            hms(t0 + 5),
            hms(t0 + 17),
        ),
    )
    .unwrap();
    let slate = media("c.ts").display().to_string();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n\
             [schedules]\ndir = \"sched\"\nmedia_dir = {media:?}\n\n\
             [[channel]]\nid = \"studio\"\nservice_id = 1\nname = \"Studio\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{slate:?}]\nfiller = [{slate:?}]\ntimezone = \"UTC\"\n\n\
             [channel.failover]\nloss_timeout = \"200ms\"\nrestore_after = \"30s\"\nlead = \"300ms\"\n\n\
             [[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{pm}\"\n\n\
             [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{pb}\"\n\n\
             [[channel.input]]\nname = \"dead\"\nurl = \"udp://127.0.0.1:{dead}\"\n\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{out}\"\n",
            media = media("").display().to_string(),
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&cfg, "info");
    let mode = Arc::new(AtomicU8::new(MAIN_ON));
    let send_stop = Arc::new(AtomicBool::new(false));
    let send = sender(main, backup, (pm, pb), mode.clone(), send_stop.clone());
    let until = |t: i64| {
        while utc_ns() < t {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let s = 1_000 * MS;
    // Both inputs good for seconds, yet the schedule's filler is on air.
    until(t0 * s - 2 * s);
    let relay = relay_of(&channels_of(http), "studio");
    assert_eq!(relay["scheduled"], true, "{relay}");
    assert!(relay["active"].is_null(), "{relay}");
    assert_eq!(relay["inputs"][0]["health"], "good", "{relay}");
    // The main killed 3 s into its item.
    until(t0 * s + 8 * s);
    mode.store(MAIN_KILLED, Ordering::Relaxed);
    let killed_at = utc_ns();
    until(t0 * s + 10 * s);
    let relay = relay_of(&channels_of(http), "studio");
    assert_eq!(relay["active"], "backup", "{relay}");
    until(t0 * s + 24 * s);
    let relay = relay_of(&channels_of(http), "studio");
    assert!(relay["active"].is_null(), "{relay}");
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    send_stop.store(true, Ordering::Relaxed);
    send.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let switches: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("input switch") || l.contains("live item"))
        .collect();
    eprintln!("{}", switches.join("\n"));

    // Which source is on air, by PMT. The very first PMT may come before the slate's; the
    // filler after the last item may have begun.
    let seq: Vec<(i64, char)> = sources(&cap)
        .into_iter()
        .filter(|(_, c)| *c != '?')
        .collect();
    let order: String = seq.iter().map(|(_, c)| *c).collect();
    assert!(
        order == "sfmbfsf" || order == "sfmbfsfs",
        "slate, b.ts, main (live item), backup (main killed), b.ts, slate (dead input's \
         item), b.ts expected; got {order:?}\n{}",
        switches.join("\n")
    );
    let off = |k: usize, planned: i64| (seq[k].0 - (t0 + planned) * s) / MS;
    let marks = [
        ("b.ts", 1, 0),
        ("live main", 2, 5),
        ("b.ts after the live item", 4, 13),
        ("slate in the dead input's item", 5, 17),
        ("b.ts after it", 6, 21),
    ];
    for (what, k, planned) in marks {
        let ms = off(k, planned);
        eprintln!("{what}: PMT on the output {ms} ms from its scheduled time");
        assert!(
            (-1500..=1500).contains(&ms),
            "{what}: {ms} ms from its time"
        );
    }
    let took_over = (seq[3].0 - killed_at) / MS;
    eprintln!("the backup's PMT on the output {took_over} ms after the main was killed");
    assert!(took_over < 1500, "{took_over} ms");
    check_and_decode("live-schedule", &cap, dir.path());
}

/// HTTPS inputs against real TLS servers nobody here wrote: ffmpeg (GnuTLS) serving a live
/// TS with a certificate from a private CA, trusted through the input's `ca`, is relayed;
/// OpenSSL's `s_server` with the same certificate is refused when the CA is not trusted (no
/// `ca`: the system roots) and when the certificate does not name the host asked for, each
/// named in the input's status.
#[test]
fn https_inputs_check_the_server_certificate() {
    let ffmpeg = tool("ffmpeg").expect("ffmpeg is needed");
    let openssl = common::tool_on_path("openssl").expect("openssl is needed");
    let dir = tempfile::tempdir().unwrap();
    source(dir.path(), "src", 12, false);
    let src = dir.path().join("src.ts");
    // A private CA and a server certificate it signs for 127.0.0.1 (webpki takes no CA
    // certificate as a server's own).
    let p = |name: &str| dir.path().join(name);
    let (ca_cert, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl_ok = |cmd: &mut Command| {
        let r = run_bounded(cmd, Duration::from_secs(30));
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    openssl_ok(
        Command::new(openssl)
            .args(["req", "-x509", "-days", "1", "-subj", "/CN=Test CA"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(&ca_cert),
    );
    openssl_ok(
        Command::new(openssl)
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(p("srv.csr")),
    );
    openssl_ok(
        Command::new(openssl)
            .args(["x509", "-req", "-days", "1", "-CAcreateserial", "-in"])
            .arg(p("srv.csr"))
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(&cert),
    );
    let (good, bad) = (common::free_tcp_port(), common::free_tcp_port());
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    let ca = ca_cert.display().to_string();
    let cfg = write_config(
        dir.path(),
        http,
        &[
            // What is checked here is the certificate, not the failover: the loss timeout
            // is 1 s, as ffmpeg's `-re` server may pause 200 ms on a loaded machine.
            live_channel(
                "tls",
                1,
                "web",
                &format!("url = \"https://127.0.0.1:{good}/live.ts\"\nca = {ca:?}"),
                Some(out),
            ) + "[channel.failover]\nloss_timeout = \"1s\"\n\n",
            live_channel(
                "untrusted",
                2,
                "web",
                &format!("url = \"https://127.0.0.1:{bad}/live.ts\""),
                None,
            ),
            live_channel(
                "misnamed",
                3,
                "web",
                &format!("url = \"https://localhost:{bad}/live.ts\"\nca = {ca:?}"),
                None,
            ),
        ],
    );
    let cap_stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, cap_stop.clone(), Duration::from_secs(60));
    let mut servers = vec![
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&src)
            .args(["-map", "0", "-c", "copy", "-f", "mpegts", "-listen", "1"])
            .arg("-cert_file")
            .arg(&cert)
            .arg("-key_file")
            .arg(&key)
            .arg(format!("https://127.0.0.1:{good}/live.ts"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ffmpeg"),
        Command::new(openssl)
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{bad}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    ];
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(7));
    let channels = channels_of(http);
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    cap_stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let relay = |id: &str| relay_of(&channels, id);
    let tls = relay("tls");
    assert_eq!(tls["active"], "web", "{tls}\n{stderr}");
    assert_eq!(tls["inputs"][0]["health"], "good", "{tls}");
    for (id, why) in [
        ("untrusted", "invalid peer certificate: UnknownIssuer"),
        ("misnamed", "certificate not valid for name \"localhost\""),
    ] {
        let r = relay(id);
        assert_eq!(r["active"], serde_json::Value::Null, "{id}: {r}");
        let error = r["inputs"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("TLS handshake with ") && error.contains(why),
            "{id}: {r}"
        );
    }
    let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
    assert_eq!(order.trim_start_matches('?'), "sm", "{order:?}\n{stderr}");
    check_and_decode("live-https", &cap, dir.path());
}

/// An IPv6 source-specific join (MLDv2, `source = "::1"`): two senders on one group and port,
/// from `::1` (H.264 + AAC) and from `fd15::5` (with AC-3 too). The channel that names its
/// source relays only that one, with no continuity error; a channel on the same group without
/// a source gets both interleaved (the control).
#[test]
fn an_ipv6_source_specific_join_takes_only_its_source() {
    common::multicast_on_lo("ff15::5:2");
    // The second sender address (scripts/test adds it; root).
    let _ = Command::new("ip")
        .args(["-6", "addr", "add", "fd15::5/128", "dev", "lo"])
        .stderr(std::process::Stdio::null())
        .status();
    let other: std::net::Ipv6Addr = "fd15::5".parse().unwrap();
    let Ok(other_socket) = UdpSocket::bind((other, 0)) else {
        assert!(
            std::env::var("CI").is_err(),
            "fd15::5 is not on lo: scripts/test adds it (as root)"
        );
        eprintln!("skipping: fd15::5 is not on lo");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wanted = paced(&source(dir.path(), "wanted", 10, false), 0x100);
    let unwanted = paced(&source(dir.path(), "unwanted", 10, true), 0x100);
    let port = free_udp_port();
    let lo = {
        let text = std::fs::read_to_string("/sys/class/net/lo/ifindex").unwrap();
        text.trim().parse::<u32>().unwrap()
    };
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = rx.local_addr().unwrap().port();
    let http = common::free_tcp_port();
    let url = format!("url = \"udp://[ff15::5:2]:{port}\"\ninterface = \"lo\"");
    let cfg = write_config(
        dir.path(),
        http,
        &[
            live_channel(
                "ssm",
                1,
                "feed",
                &format!("{url}\nsource = \"::1\""),
                Some(out),
            ),
            live_channel("asm", 2, "feed", &url, None),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(rx, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&cfg, "info");
    let send_stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = [
        (UdpSocket::bind("[::1]:0").unwrap(), wanted),
        (other_socket, unwanted),
    ]
    .into_iter()
    .map(|(socket, data)| {
        socket.set_multicast_loop_v6(true).unwrap();
        socket2::SockRef::from(&socket)
            .set_multicast_if_v6(lo)
            .unwrap();
        let stop = send_stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            for (at, d) in data {
                while start.elapsed() < Duration::from_nanos(at) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                let _ = socket.send_to(&d, ("ff15::5:2", port));
            }
        })
    })
    .collect();
    std::thread::sleep(Duration::from_secs(7));
    let channels = channels_of(http);
    let (st, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    send_stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    assert!(st.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();
    let ssm = relay_of(&channels, "ssm");
    assert_eq!(ssm["active"], "feed", "{ssm}\n{stderr}");
    assert_eq!(ssm["inputs"][0]["health"], "good", "{ssm}");
    assert_eq!(ssm["inputs"][0]["cc_errors"], 0, "{ssm}");
    let asm = relay_of(&channels, "asm");
    assert!(
        asm["inputs"][0]["cc_errors"].as_u64().unwrap_or(0) > 0,
        "the any-source channel gets both senders: {asm}"
    );
    let order: String = sources(&cap).iter().map(|(_, c)| *c).collect();
    assert_eq!(order.trim_start_matches('?'), "sm", "{order:?}\n{stderr}");
    check_and_decode("live-ssm6", &cap, dir.path());
}
