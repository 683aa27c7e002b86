//! The stoppage record (停播记录) across faults and restarts, on a running daemon:
//! - a schedule naming a file that is not there: its slot airs the filler and is a stoppage
//!   on record from its start to the next item, naming the file; the next item airs on time;
//! - a crash (SIGKILL): at the restart, the time off air is a stoppage of every channel,
//!   "no orderly stop", from when the head-end was last alive;
//! - an orderly stop (SIGTERM) and a restart: the time off air is a stoppage naming the
//!   signal;
//! - `hectl report` gives the figures: stoppages, stoppage time, rate, longest, causes.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{
    civil_date, free_tcp_port, media, record_lines, run_bounded, signal_and_wait, utc_ns, Daemon,
};

const TOKEN: &str = "record-test-token-0123456789";

fn clock(secs: i64) -> (String, String) {
    let s = secs.rem_euclid(86_400);
    (
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        civil_date(secs.div_euclid(86_400)),
    )
}

fn parse(t: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

#[test]
fn faults_crashes_and_stops_are_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let out = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // A missing file at T1, a real one at T1 + 5 s (the schedule in Beijing time).
    let t1 = utc_ns() / 1_000_000_000 + 8;
    let (c1, date) = clock(t1 + 8 * 3600);
    let (c2, date2) = clock(t1 + 5 + 8 * 3600);
    assert_eq!(date, date2, "not across midnight; run again");
    let utc_date = clock(t1 - 3600).1;
    let sched = dir.path().join("sched/news");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join(format!("{date}.toml")),
        format!(
            "date = \"{date}\"\n\n[[item]]\nstart = \"{c1}\"\nfile = \"not-yet-uploaded.ts\"\ntitle = \"Missing\"\n\n\
             [[item]]\nstart = \"{c2}\"\nblock = [\"a.ts\"]\nloop_for = \"60s\"\ntitle = \"Real\"\n"
        ),
    )
    .unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n[schedules]\ndir = \"sched\"\nmedia_dir = {m:?}\n\n\
             [record]\nfile = \"record.jsonl\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\ntimezone = \"Asia/Shanghai\"\n\
             playlist = [{e:?}]\nfiller = [{e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{p}\"\n",
            m = media("").display().to_string(),
            e = media("e.ts").display().to_string(),
            p = out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let record = dir.path().join("record.jsonl");
    let mut daemon = Daemon::run(&cfg, "info");
    while utc_ns() < (t1 + 7) * 1_000_000_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A crash.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let killed = utc_ns();
    std::thread::sleep(Duration::from_secs(2));
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(2));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    std::thread::sleep(Duration::from_secs(1));
    let daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(1));
    let report = common::hectl_report(http, &["--from", &utc_date, "--format", "json"]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let text = common::hectl_report(http, &["--from", &utc_date]);
    eprintln!("{}", String::from_utf8_lossy(&text.stdout));
    // Bad periods are named.
    let bad = common::hectl_report(http, &["--from", "yesterday"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`yesterday` is not an instant"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let reply = common::http_get(http, "/api/report?from=2026-12-0%ZZ");
    assert!(reply.contains("bad %-escape in `from`"), "{reply}");
    drop(daemon);

    let lines = record_lines(&record);
    eprintln!(
        "{}",
        lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stoppages: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "stoppage" && l["phase"] == "start")
        .collect();
    let end_of = |s: &serde_json::Value| {
        lines
            .iter()
            .find(|l| l["id"] == s["id"] && l["phase"] == "end")
            .unwrap_or_else(|| panic!("{s} never ended"))
            .clone()
    };
    // The missing file: from T1 (as presented) to T1 + 5 s, naming the file.
    let media_fault = stoppages
        .iter()
        .find(|s| s["place"] == "media")
        .unwrap_or_else(|| panic!("no media stoppage: {lines:#?}"));
    assert!(
        media_fault["cause"]
            .as_str()
            .unwrap()
            .contains("not-yet-uploaded.ts"),
        "{media_fault}"
    );
    assert!(
        media_fault["local"].as_str().unwrap().ends_with("+08:00"),
        "{media_fault}"
    );
    let from = parse(&media_fault["utc"]);
    assert!(
        (from - t1 * 1_000_000_000).abs() < 1_000_000_000,
        "starts at T1: {media_fault}"
    );
    let end = end_of(media_fault);
    assert!(
        (parse(&end["utc"]) - (t1 + 5) * 1_000_000_000).abs() < 1_000_000_000,
        "ends at T1 + 5 s: {end}"
    );
    assert_eq!(end["cause"], "the schedule's next item is on air");
    assert!(end["on_air"].as_str().unwrap().ends_with("a.ts"), "{end}");
    // The crash, then the orderly stop.
    let crash = stoppages
        .iter()
        .find(|s| {
            s["place"] == "head-end" && s["cause"].as_str().unwrap().contains("no orderly stop")
        })
        .unwrap_or_else(|| panic!("no crash stoppage: {lines:#?}"));
    assert_eq!(crash["channel"], "news");
    // From when it was last alive (every 5 s at most, and at each line) to the restart.
    let off = parse(&crash["utc"]);
    assert!(off <= killed && killed - off < 6_000_000_000, "{crash}");
    let crash_end = end_of(crash);
    assert!(
        parse(&crash_end["utc"]) - killed >= 1_900_000_000,
        "{crash_end}"
    );
    let stop = stoppages
        .iter()
        .find(|s| {
            s["place"] == "head-end" && s["cause"].as_str().unwrap().contains("stopped (SIGTERM)")
        })
        .unwrap_or_else(|| panic!("no stop stoppage: {lines:#?}"));
    let secs = end_of(stop)["duration_s"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&secs), "{stop}");
    // Three runs; the first closed at the restart, the second by SIGTERM.
    let runs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "run").collect();
    let phases: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["phase"].as_str().unwrap(), r["cause"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &phases[..4],
        &[
            ("start", "started"),
            ("end", "no orderly stop (crash, kill or power loss)"),
            ("start", "started"),
            ("end", "SIGTERM"),
        ],
        "{runs:#?}"
    );
    // The report's figures agree with the record.
    let f = &report["channels"][0];
    assert_eq!(f["channel"], "news");
    assert_eq!(f["stoppages"], 3, "{report:#}");
    let total = f["stoppage_s"].as_f64().unwrap();
    assert!((7.0..16.0).contains(&total), "{report:#}");
    let rate = f["stoppage_rate"].as_f64().unwrap();
    let scheduled = f["scheduled_s"].as_f64().unwrap();
    assert!((rate - total / scheduled).abs() < 1e-9, "{report:#}");
    assert_eq!(f["causes"].as_object().unwrap().len(), 3, "{report:#}");
}

#[test]
fn a_journal_on_a_full_disk_is_an_alarm_and_the_channel_stays_on_air() {
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let out = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    out.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[record]\nfile = \"/dev/full\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\n\
             playlist = [{e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{p}\"\n",
            e = media("e.ts").display().to_string(),
            p = out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_millis(1500));
    let reply = common::http_get(http, "/api/record");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let alarm = v["journal"]["alarm"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(alarm.contains("No space left on device"), "{alarm}");
    assert!(v["journal"]["pending"].as_u64().unwrap() >= 1, "{v}");
    // Still on air.
    let mut buf = [0u8; 2048];
    assert!(out.recv(&mut buf).unwrap() > 0);
    // `/metrics` shows the alarm, and parses as Prometheus expects it.
    std::thread::sleep(Duration::from_millis(600));
    let text = common::http_get(http, "/metrics");
    let value = |name: &str| common::metric(&text, name);
    assert_eq!(value("headend_record_alarm "), 1.0);
    assert!(
        value("headend_output_datagrams_total{channel=\"news\",output=") > 100.0,
        "{text}"
    );
    assert!(
        value("headend_packets_total{channel=\"news\"}") > 1000.0,
        "{text}"
    );
    assert_eq!(value("headend_on_air{channel=\"news\"}"), 1.0);
    assert_eq!(
        value("headend_tr101290_errors_total{channel=\"news\",rule=\"1.4\",name=\"Continuity_count_error\",priority=\"1\"}"),
        0.0
    );
    assert!(value("process_resident_memory_bytes ") > 1e6, "{text}");
    assert!(value("process_open_fds ") > 3.0, "{text}");
    assert!(
        text.contains("# TYPE headend_output_bytes_total counter"),
        "{text}"
    );
    common::promtool_check_metrics(&text);
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stoppage record: cannot write"), "{stderr}");
}

/// The Grafana dashboard in `dist/`: valid JSON, and every query parses as PromQL
/// (`promtool check rules` on them as recording rules) and names only metrics `/metrics`
/// has.
#[test]
fn the_grafana_dashboard_queries_parse() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana-headend.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$channel", ".*")
                .replace("$job", ".*")
        })
        .collect();
    assert!(exprs.len() >= 12);
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"),
    )
    .unwrap();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("headend_") || word.starts_with("process_") {
                assert!(
                    source.contains(&format!("\"{word}\"")),
                    "{word} (in `{e}`) is not a metric /metrics has"
                );
            }
        }
    }
    let Some(promtool) = common::tool_on_path("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        yaml.push_str(&format!(
            "      - record: headend:dashboard_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(&rules, yaml).unwrap();
    let out = run_bounded(
        Command::new(promtool).args(["check", "rules"]).arg(&rules),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
