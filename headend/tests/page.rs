//! The operator's page (`GET /` on the management plane, issue #16 item 7) in a real browser:
//! Debian's chromium, headless, driven by playwright-core (`tests/page/drive.mjs`, installed
//! by `scripts/test` with `npm ci`). A 20-channel station with its management plane on a
//! listener of its own and a viewer token: the page shows every channel; a live input's
//! failover (its main stops) and an emergency alert each appear on it within 2 s of the
//! fault or the alert's acceptance (and the channel's archive marks the failover). The
//! screenshot is kept as `target/tmp/operator-page.png`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use epg::alert::sign::{encode_signature, Algorithm, SigningKey, KEY_HEADER, SIGNATURE_HEADER};

mod common;
use common::{
    cap_alert, exchange_stamped, free_tcp_port, free_udp_port, media, paced, sender, set_mode_600,
    source, utc_ns, Daemon, MAIN_KILLED, MAIN_ON,
};

const CHANNELS: usize = 20;
const VIEWER: &str = "wall-viewer-token-0123456789abcdef";
const EMERGENCY: &str = "emergency-token-0123456789abcdef";
/// How soon a failover or an alert must show on the page.
const WITHIN: Duration = Duration::from_secs(2);

/// The driver: its stdin for orders, and its answers (JSON lines) as they come.
struct Driver {
    child: std::process::Child,
    orders: ChildStdin,
    answers: Receiver<serde_json::Value>,
}

impl Driver {
    fn open(url: &str, cards: usize) -> Driver {
        let mut child = Command::new("node")
            .arg(common::page_dir().join("drive.mjs"))
            .arg(url)
            .arg(cards.to_string())
            .current_dir(common::page_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let orders = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("driver: {line}"),
                }
            }
        });
        Driver {
            child,
            orders,
            answers,
        }
    }

    fn answer(&self, limit: Duration) -> serde_json::Value {
        let v = self
            .answers
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no answer from the page driver in {limit:?}: {e}"));
        assert_ne!(v["event"], "error", "the page driver: {v}");
        v
    }

    fn order(&mut self, line: &str) {
        writeln!(self.orders, "{line}").expect("the page driver is gone");
        self.orders.flush().unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.orders, "quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_operators_page_shows_every_channel_and_a_failover_and_an_alert_within_2_s() {
    if common::browser_with(&["playwright-core/package.json"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, mgmt) = (free_tcp_port(), free_tcp_port());
    let (main_port, backup_port) = (free_udp_port(), free_udp_port());
    let key = SigningKey::generate(Algorithm::Sm2).unwrap();
    let token = dir.path().join("wall.token");
    std::fs::write(&token, VIEWER).unwrap();
    set_mode_600(&token);

    let mut cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[[http.token]]\nname = \"wall\"\nrole = \"viewer\"\nfile = \"wall.token\"\n\n\
         [management]\nlisten = \"127.0.0.1:{mgmt}\"\n\n[record]\nfile = \"record.jsonl\"\n\n\
         [alerts]\ntoken = \"{EMERGENCY}\"\naudit_log = \"alerts.jsonl\"\n\
         [alerts.clips]\ndefault = {clip:?}\n\n\
         [[alerts.sender]]\nkey_id = \"prov\"\nalgorithm = \"sm2\"\npublic_key = \"{public}\"\nsenders = [\"prov@example.cn\"]\n\n\
         [[alerts.area]]\ncode = \"310104\"\nchannels = [\"ch01\", \"ch02\", \"ch03\", \"ch04\"]\n\n\
         [[channel]]\nid = \"ch00\"\nservice_id = 1\nname = \"直播 Live\"\nmuxrate = \"2M\"\nplaylist = [{slate:?}]\n\n\
         [channel.failover]\nloss_timeout = \"200ms\"\nrestore_after = \"60s\"\nlead = \"300ms\"\n\n\
         [channel.archive]\ndir = \"archive\"\nsegment = \"2s\"\n\n\
         [[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{main_port}\"\n\n\
         [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{backup_port}\"\n\n",
        clip = media("a.ts").display().to_string(),
        public = key.verifying_key().to_hex(),
        slate = media("c.ts").display().to_string(),
    );
    for i in 1..CHANNELS {
        cfg.push_str(&format!(
            "[[channel]]\nid = \"ch{i:02}\"\nservice_id = {}\nname = \"频道 {i}\"\nmuxrate = \"2M\"\n\
             playlist = [{e:?}]\n\n",
            i + 1,
            e = media("e.ts").display().to_string(),
        ));
    }
    let cfg_path = dir.path().join("headend.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    // The live sources: main and backup, 60 s each, fed in real time.
    let main = paced(&source(dir.path(), "main", 60, false), 0x100);
    let backup = paced(&source(dir.path(), "backup", 60, true), 0x100);
    let mode = Arc::new(AtomicU8::new(MAIN_ON));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = sender(
        main,
        backup,
        (main_port, backup_port),
        mode.clone(),
        stop.clone(),
    );

    let mut daemon = Daemon::run(&cfg_path, "info");
    // The page is served on the management listener only.
    let streaming = common::http_get(http, "/");
    assert!(streaming.contains("management"), "{streaming}");

    let mut page = Driver::open(
        &format!("http://127.0.0.1:{mgmt}/#token={VIEWER}"),
        CHANNELS,
    );
    let rendered = page.answer(Duration::from_secs(60));
    let ids: Vec<String> = (0..CHANNELS).map(|i| format!("ch{i:02}")).collect();
    assert_eq!(rendered["channels"], serde_json::json!(ids), "{rendered}");
    assert_eq!(rendered["problems"], serde_json::json!([]), "{rendered}");
    eprintln!("rendered {CHANNELS} channels in {} ms", rendered["ms"]);

    // ch00 settles on its main input.
    page.order("wait [data-channel=\"ch00\"][data-state=\"on-air\"][data-input=\"main\"] 20000");
    let v = page.answer(Duration::from_secs(25));
    assert_eq!(v["event"], "seen", "ch00 never on its main: {v}");

    // Failover: the main stops; the page shows ch00 on its backup.
    page.order(
        "wait [data-channel=\"ch00\"][data-state=\"failover\"][data-input=\"backup\"] 10000",
    );
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    mode.store(MAIN_KILLED, Ordering::Relaxed);
    let v = page.answer(Duration::from_secs(15));
    let failover = killed.elapsed();
    assert_eq!(v["event"], "seen", "the failover never showed: {v}");
    eprintln!("failover on the page {failover:?} after the main's last datagram");
    assert!(failover < WITHIN, "the failover showed after {failover:?}");

    // An alert for area 310104 (ch01..ch04): the page shows them in alert.
    page.order("wait [data-channel=\"ch03\"][data-state=\"alert\"] 10000");
    std::thread::sleep(Duration::from_millis(200));
    let now_s = utc_ns() / 1_000_000_000;
    let body = cap_alert("page-1", now_s, now_s + 600, "310104", "台风红色预警");
    let headers = format!(
        "{KEY_HEADER}: prov\r\n{SIGNATURE_HEADER}: {}\r\n",
        encode_signature(&key.sign(body.as_bytes()))
    );
    let mut req = format!(
        "POST /api/alerts HTTP/1.0\r\nAuthorization: Bearer {EMERGENCY}\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    let (_, answer) = exchange_stamped(("127.0.0.1", mgmt), &req);
    let accepted = Instant::now();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.contains(" 202 "), "{answer}");
    let v = page.answer(Duration::from_secs(15));
    let alert = accepted.elapsed();
    assert_eq!(v["event"], "seen", "the alert never showed: {v}");
    eprintln!("alert on the page {alert:?} after it was accepted");
    assert!(alert < WITHIN, "the alert showed after {alert:?}");
    for ch in ["ch01", "ch02", "ch04"] {
        page.order(&format!(
            "wait [data-channel=\"{ch}\"][data-state=\"alert\"] 3000"
        ));
        assert_eq!(page.answer(Duration::from_secs(5))["event"], "seen", "{ch}");
    }
    page.order("text #alerts");
    let text = page.answer(Duration::from_secs(5));
    assert!(
        text["text"]
            .as_str()
            .is_some_and(|t| t.contains("台风红色预警")),
        "{text}"
    );
    // The stoppage record's failover and override lines are listed.
    page.order("wait #events tr[data-event=\"failover\"][data-channel=\"ch00\"] 5000");
    assert_eq!(page.answer(Duration::from_secs(8))["event"], "seen");
    page.order("wait #events tr[data-event=\"override\"] 5000");
    assert_eq!(page.answer(Duration::from_secs(8))["event"], "seen");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("operator-page.png");
    page.order(&format!("shot {}", shot.display()));
    let v = page.answer(Duration::from_secs(20));
    assert_eq!(v["event"], "shot", "{v}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    eprintln!("screenshot: {}", shot.display());
    page.order("text body");
    let v = page.answer(Duration::from_secs(5));
    assert_eq!(v["problems"], serde_json::json!([]), "console errors: {v}");

    // The archive of ch00 marks the failover inside the segment it happened in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listing = common::http_get_with(
            mgmt,
            "/api/archive/ch00",
            &[("Authorization", &format!("Bearer {VIEWER}"))],
        );
        if listing.contains("\"kind\": \"failover\"") {
            // From the main: to the backup, or to the playlist first when the backup was
            // not clean at that moment (datagrams lost on a loaded machine), then to it.
            assert!(listing.contains("\"title\": \"main -> "), "{listing}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failover in the archive: {listing}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    drop(page);
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}
