//! A full or failing disk under the schedule store and the alert clips (issue #15: "a full or
//! failing disk is an alarm and a clear API error, never a crash, never a restart loop, and a
//! failed write leaves no partial state"). Both directories are on a small tmpfs the test
//! fills, and then remounts read-only:
//! - a schedule `PUT` is answered 507 `insufficient_storage` (full) or 500 `storage`
//!   (read-only), naming the file and the OS error; `hectl schedule put` prints it; the
//!   schedule in force stays, on disk and through the API; no temporary file is left; the
//!   refused write is on the stoppage record;
//! - a clip upload is answered the same way and leaves nothing in the clip directory;
//! - `GET /api/record` shows the `schedule store` and `alert media` alarms;
//! - the channel stays on air and the daemon keeps running;
//! - once there is room (and the disk is writable) again, the next writes go through and the
//!   alarms clear.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::{civil_date, free_tcp_port, media, record_lines, utc_ns, Daemon};

const API_TOKEN: &str = "api-token-0123456789abcdef";
const ALERT_TOKEN: &str = "emergency-role-token-0123456789";

/// A tmpfs of `bytes`, unmounted when dropped; `None` (the test is skipped, saying so) when
/// it cannot be mounted (not root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping: cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(SmallDisk(at.to_owned()))
    }

    fn remount(&self, how: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o remount,{how}");
    }

    /// Fills it; returns the filler file (remove it to free the room).
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let small = vec![0u8; 512];
        while f.write_all(&small).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// One request: (status, JSON body).
fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn put(port: u16, date: &str, revision: u64, text: &str) -> (u16, serde_json::Value) {
    call(
        port,
        "PUT",
        &format!("/api/schedules/news/{date}"),
        &[
            format!("Authorization: Bearer {API_TOKEN}"),
            format!("If-Match: \"{revision}\""),
            "X-Operator: duty".to_owned(),
        ],
        text.as_bytes(),
    )
}

fn upload(port: u16, clip: &[u8]) -> (u16, serde_json::Value) {
    call(
        port,
        "POST",
        "/api/alerts/media",
        &[format!("Authorization: Bearer {ALERT_TOKEN}")],
        clip,
    )
}

fn alarm(port: u16, place: &str) -> serde_json::Value {
    let (status, v) = call(port, "GET", "/api/record", &[], b"");
    assert_eq!(status, 200, "{v}");
    v["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["place"] == place)
        .cloned()
        .unwrap_or_else(|| panic!("no {place} alarm in {v:#}"))
}

/// The `place` alarm is raised, saying `why`.
fn assert_raised(port: u16, place: &str, why: &str) {
    let a = alarm(port, place);
    assert!(a["alarm"].as_str().is_some_and(|a| a.contains(why)), "{a}");
}

/// Every entry under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn schedule(date: &str, titles: &[&str]) -> String {
    let mut text = format!("date = \"{date}\"\n");
    for (i, t) in titles.iter().enumerate() {
        text.push_str(&format!(
            "\n[[item]]\nstart = \"{:02}:00:00\"\nfile = \"a.ts\"\ntitle = \"{t}\"\n",
            8 + i
        ));
    }
    text
}

#[test]
fn a_full_or_read_only_disk_is_a_clear_error_and_an_alarm_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), 2 << 20) else {
        return;
    };
    let http = free_tcp_port();
    let out = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    out.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let key = epg::alert::sign::SigningKey::generate(epg::alert::sign::Algorithm::Ed25519).unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{API_TOKEN}\"\n\n\
             [schedules]\ndir = \"disk/sched\"\nmedia_dir = {m:?}\n\n\
             [record]\nfile = \"record.jsonl\"\n\n\
             [alerts]\ntoken = \"{ALERT_TOKEN}\"\naudit_log = \"audit/alerts.jsonl\"\n\
             media_dir = \"disk/clips\"\n[alerts.clips]\ndefault = {clip:?}\n\n\
             [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"ed25519\"\npublic_key = \"{pk}\"\n\
             senders = [\"city@example.cn\"]\n\n\
             [[alerts.area]]\ncode = \"310104\"\nchannels = [\"news\"]\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\n\
             playlist = [{e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{p}\"\n",
            m = media("").display().to_string(),
            pk = key.verifying_key().to_hex(),
            clip = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
            p = out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let date = civil_date(utc_ns().div_euclid(86_400_000_000_000) + 1);
    let day_file = format!("sched/news/{date}.toml");
    let clip = std::fs::read(media("a.ts")).unwrap();

    // Room: written (twice: the history has the first).
    let (status, v) = put(http, &date, 0, &schedule(&date, &["zero"]));
    assert_eq!((status, v["revision"].as_u64()), (200, Some(1)), "{v}");
    let (status, v) = put(http, &date, 1, &schedule(&date, &["one"]));
    assert_eq!((status, v["revision"].as_u64()), (200, Some(2)), "{v}");
    let before = std::fs::read(disk.0.join(&day_file)).unwrap();

    // Full.
    let filler = disk.fill();
    let listing = tree(&disk.0);
    let (status, v) = put(http, &date, 2, &schedule(&date, &["two", "three"]));
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["error"], "insufficient_storage", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(&day_file), "names the file: {msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(std::fs::read(disk.0.join(&day_file)).unwrap(), before);
    let (_, now) = call(
        http,
        "GET",
        &format!("/api/schedules/news/{date}"),
        &[],
        b"",
    );
    assert_eq!(now["revision"], 2, "the schedule in force stays: {now}");
    // hectl says it plainly.
    let token = dir.path().join("token");
    std::fs::write(&token, API_TOKEN).unwrap();
    let file = dir.path().join("day.toml");
    std::fs::write(&file, schedule(&date, &["two", "three"])).unwrap();
    let o = Command::new(common::hectl())
        .args(["schedule", "--server", &format!("http://127.0.0.1:{http}")])
        .arg("--token-file")
        .arg(&token)
        .args(["put", "news", "--revision", "2"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        said.contains("insufficient_storage (507)") && said.contains("No space left on device"),
        "{said}"
    );
    // The clip: refused the same way, nothing kept.
    let (status, v) = upload(http, &clip);
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["error"], "insufficient_storage", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("clips/"),
        "names the file: {v}"
    );
    assert_eq!(tree(&disk.0), listing, "no temporary file left");
    assert_raised(http, "schedule store", "No space left on device");
    assert_raised(http, "alert media", "No space left on device");
    // On the stoppage record, with who tried.
    std::thread::sleep(Duration::from_millis(300));
    let lines = record_lines(&dir.path().join("record.jsonl"));
    assert!(
        lines.iter().any(|l| l["event"] == "manual"
            && l["actor"] == "duty"
            && l["cause"].as_str().unwrap_or("").contains("refused")),
        "{lines:#?}"
    );

    // Room again: written, stored, alarms cleared.
    std::fs::remove_file(filler).unwrap();
    let (status, v) = put(http, &date, 2, &schedule(&date, &["two", "three"]));
    assert_eq!((status, v["revision"].as_u64()), (200, Some(3)), "{v}");
    let (status, v) = upload(http, &clip);
    assert_eq!(status, 201, "{v}");
    assert!(alarm(http, "schedule store")["alarm"].is_null());
    assert!(alarm(http, "alert media")["alarm"].is_null());

    // Read-only (a failing disk): 500 naming the file and the error.
    disk.remount("ro");
    let (status, v) = put(http, &date, 3, &schedule(&date, &["four"]));
    disk.remount("rw");
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"], "storage", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&day_file) && msg.contains("Read-only file system"),
        "{msg}"
    );
    let a = alarm(http, "schedule store");
    assert!(
        a["alarm"]
            .as_str()
            .unwrap()
            .contains("Read-only file system"),
        "{a}"
    );
    assert!(
        a["count"].as_u64().unwrap() >= 3,
        "each refused write counted: {a}"
    );
    let (status, v) = put(http, &date, 3, &schedule(&date, &["four"]));
    assert_eq!((status, v["revision"].as_u64()), (200, Some(4)), "{v}");
    assert!(alarm(http, "schedule store")["alarm"].is_null());

    // Still on air, still running.
    let mut buf = [0u8; 2048];
    assert!(out.recv(&mut buf).unwrap() > 0);
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon runs");
}
