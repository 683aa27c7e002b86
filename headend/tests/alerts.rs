//! Emergency alerts end to end: 20 channels on IPv6 multicast (kept on loopback); a signed
//! CAP alert (SM2 over SM3) for one area pre-empts exactly that area's channels within a second,
//! measured on kernel receive stamps (SO_TIMESTAMPNS, the realtime clock) from the API's answer
//! to the alert clip's PMT on each group; a drill (JSON, Ed25519)
//! reaches only the drill channel of its area; forged, unknown-key and replayed alerts change
//! nothing and are in the audit log. While the alert is on air the EIT present event is its
//! headline and the EBIT (0xFD) and SCTE-18 (0xD8) tables go out, parse, and stop within 1.5 s
//! of `expires` (kernel stamps against the UTC instant); at `expires` the
//! playlist channels go on and the scheduled channel rejoins its schedule where the wall clock
//! is (the missed part skipped); every capture stays conformant throughout.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use epg::alert::sign::{encode_signature, Algorithm, SigningKey, KEY_HEADER, SIGNATURE_HEADER};
use playout::check::CheckLimits;
use playout::psi::Pmt;
use playout::ts::{Pid, TsPacket};

mod common;
use common::{
    beijing, cap_alert, checked_as, exchange_stamped, ffmpeg_errors, media, multicast_on_lo,
    multicast_receiver, packets, receive_stamped, sections, signal_and_wait, tool, utc_ns, Daemon,
    Stamped,
};

const CHANNELS: usize = 20;
const MUXRATE: u64 = 2_000_000;
const TOKEN: &str = "emergency-role-token-0123456789";

fn utc_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs `body` with `headers`; (status, body, when the daemon answered: the kernel receive
/// stamp of its answer, realtime ns).
fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String, i64) {
    let mut req = format!(
        "POST {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    let (answered, text) = exchange_stamped(("127.0.0.1", port), &req);
    let text = String::from_utf8(text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body, answered)
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned()
}

fn signed(key: &SigningKey, key_id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (KEY_HEADER, key_id.to_owned()),
        (SIGNATURE_HEADER, encode_signature(&key.sign(body))),
    ]
}

/// Arrival of the first PMT without AC-3 (the alert clip, a.ts: H.264 and AAC; the programmes,
/// e.ts, have AAC and AC-3), and of the first PMT with it again after that.
fn alert_pmts(pkts: &[(i64, TsPacket)]) -> (Option<i64>, Option<i64>) {
    let (mut on, mut off) = (None, None);
    for (t, s) in sections(pkts, 0x1000) {
        let Ok(pmt) = Pmt::parse(Pid::from_bits(0x1000), &s) else {
            continue;
        };
        let alert = !pmt.streams.is_empty() && !pmt.streams.iter().any(|e| e.stream_type == 0x81);
        if alert && on.is_none() {
            on = Some(t);
        }
        if !alert && on.is_some() && off.is_none() {
            off = Some(t);
        }
    }
    (on, off)
}

#[test]
fn signed_alerts_preempt_their_area_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A port per group: Linux hands a group's datagrams to every socket bound to its port.
    let ports: Vec<u16> = (0..CHANNELS)
        .map(|_| {
            UdpSocket::bind("[::1]:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    multicast_on_lo("ff15::a:1");
    let sm2 = SigningKey::generate(Algorithm::Sm2).unwrap();
    let ed = SigningKey::generate(Algorithm::Ed25519).unwrap();
    let rogue = SigningKey::generate(Algorithm::Sm2).unwrap();

    // ch00 runs a schedule: e.ts at T0, g.ts at T0+5, e.ts at T0+10 (hard starts).
    let t0 = utc_s() + 16;
    common::write_schedule(
        &dir.path().join("sched"),
        "ch00",
        &[
            (t0, "e.ts", "E0"),
            (t0 + 5, "g.ts", "G"),
            (t0 + 10, "e.ts", "E"),
        ],
    );
    let mut cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[schedules]\ndir = \"sched\"\nmedia_dir = {media:?}\n\n\
         [alerts]\ntoken = \"{TOKEN}\"\naudit_log = \"audit/alerts.jsonl\"\ntables = [\"ebit\", \"scte18\"]\n\
         drill_channels = [\"ch07\"]\nresource_code = \"31010400000000000000000\"\n\
         [alerts.clips]\ndefault = {clip:?}\n\n\
         [[alerts.sender]]\nkey_id = \"prov-sm2\"\nalgorithm = \"sm2\"\npublic_key = \"{sm2pub}\"\nsenders = [\"prov@example.cn\"]\n\n\
         [[alerts.sender]]\nkey_id = \"city-ed\"\nalgorithm = \"ed25519\"\npublic_key = \"{edpub}\"\nsenders = [\"city@example.cn\"]\n\n\
         [[alerts.area]]\ncode = \"310104\"\nchannels = [\"ch00\", \"ch01\", \"ch02\", \"ch03\", \"ch04\"]\n\n\
         [[alerts.area]]\ncode = \"310105\"\nchannels = [\"ch05\", \"ch06\", \"ch07\", \"ch08\", \"ch09\"]\n\n",
        media = media("").display().to_string(),
        clip = media("a.ts").display().to_string(),
        sm2pub = sm2.verifying_key().to_hex(),
        edpub = ed.verifying_key().to_hex(),
    );
    for (i, port) in ports.iter().enumerate() {
        cfg.push_str(&format!(
            "[[channel]]\nid = \"ch{i:02}\"\nservice_id = {}\nname = \"频道{i}\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{e:?}]\nfiller = [{e:?}]\ntimezone = \"UTC\"\n\n[[channel.output]]\nurl = \"udp://[ff15::a:{}]:{}\"\ninterface = \"lo\"\n\n",
            i + 1,
            i + 1,
            port,
            e = media("e.ts").display().to_string(),
        ));
    }
    let cfg_path = dir.path().join("headend.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Each datagram with its kernel receive stamp: a receiving thread that runs late on a busy
    // machine does not move it.
    let receivers: Vec<_> = (0..CHANNELS)
        .map(|i| {
            let group: Ipv6Addr = format!("ff15::a:{}", i + 1).parse().unwrap();
            receive_stamped(
                multicast_receiver(group, ports[i]),
                stop.clone(),
                Duration::from_secs(90),
            )
        })
        .collect();
    let mut daemon = Daemon::run(&cfg_path, "info");
    let started = Instant::now();
    let since_t0 = |utc: i64| (utc - t0 * 1_000_000_000) as f64 / 1e9;
    let mut steps = vec![format!("on air at T0{:+.2} s", since_t0(utc_ns()))];

    // Forged: signed by a key we do not trust, claiming a trusted key id.
    let forged = cap_alert("FORGED-1", utc_s(), utc_s() + 60, "310104", "伪造");
    let (status, body, _) = post(
        http_port,
        "/api/alerts",
        &signed(&rogue, "prov-sm2", forged.as_bytes()),
        forged.as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("bad signature"), "{body}");
    // An unknown key; no signature at all; the wrong token.
    let (status, body, _) = post(
        http_port,
        "/api/alerts",
        &signed(&rogue, "nobody", forged.as_bytes()),
        forged.as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unknown key"), "{body}");
    let (status, _, _) = post(http_port, "/api/alerts", &[], forged.as_bytes());
    assert_eq!(status, 403);
    // The area no channel serves.
    let nowhere = cap_alert("NOWHERE-1", utc_s(), utc_s() + 60, "440000", "别处");
    let (status, body, _) = post(
        http_port,
        "/api/alerts",
        &signed(&sm2, "prov-sm2", nowhere.as_bytes()),
        nowhere.as_bytes(),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unknown area"), "{body}");

    // The alert, at T0 + 1.5 s, until T0 + 6.
    while utc_s() * 1000 < t0 * 1000 + 1500 {
        std::thread::sleep(Duration::from_millis(20));
        if SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            >= t0 * 1000 + 1500
        {
            break;
        }
    }
    let headline = "台风红色预警";
    let alert = cap_alert("SH-20261201-0001", utc_s(), t0 + 6, "310104", headline);
    let (status, body, answered) = post(
        http_port,
        "/api/alerts",
        &signed(&sm2, "prov-sm2", alert.as_bytes()),
        alert.as_bytes(),
    );
    steps.push(format!("alert answered at T0{:+.2} s", since_t0(answered)));
    assert_eq!(status, 202, "{body}");
    let accepted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(accepted["channels"].as_array().unwrap().len(), 5, "{body}");
    // The same again: a replay.
    let (status, body, _) = post(
        http_port,
        "/api/alerts",
        &signed(&sm2, "prov-sm2", alert.as_bytes()),
        alert.as_bytes(),
    );
    assert_eq!(status, 409, "{body}");
    // A drill for the next district: only its drill channel (ch07) airs it.
    let drill = serde_json::json!({
        "identifier": "DRILL-7", "sender": "city@example.cn", "sent": beijing(utc_s()),
        "status": "Exercise", "msgType": "Alert", "scope": "Public",
        "info": [{"language": "zh-CN", "category": ["Safety"], "event": "演练",
                  "urgency": "Immediate", "severity": "Minor", "certainty": "Observed",
                  "expires": beijing(t0 + 5), "headline": "应急广播演练",
                  "area": [{"areaDesc": "长宁区", "geocode": [{"valueName": "GB2260", "value": "310105"}]}]}]
    })
    .to_string();
    let (status, body, drill_answered) = post(
        http_port,
        "/api/alerts",
        &signed(&ed, "city-ed", drill.as_bytes()),
        drill.as_bytes(),
    );
    steps.push(format!(
        "drill answered at T0{:+.2} s",
        since_t0(drill_answered)
    ));
    eprintln!("{}", steps.join(", "));
    assert_eq!(status, 202, "{}: {body}", steps.join(", "));
    let listed: serde_json::Value = serde_json::from_str(&get(http_port, "/api/alerts")).unwrap();
    assert_eq!(listed["active"].as_array().unwrap().len(), 2, "{listed}");

    // Receive until T0 + 11 (the alert ends at T0 + 6).
    while utc_s() < t0 + 11 {
        assert!(started.elapsed() < Duration::from_secs(60), "bounded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after: serde_json::Value = serde_json::from_str(&get(http_port, "/api/alerts")).unwrap();
    // The daemon closes first, so every capture ends on whole frames.
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let captures: Vec<Stamped> = receivers.into_iter().map(|r| r.join().unwrap()).collect();

    // Switch latency, per channel: from the API's answer to the alert clip's first PMT, both
    // as the kernel stamped them (the daemon's answer and its datagram, on loopback as they
    // were sent), so neither this test's threads nor the machine's load move the measurement;
    // the daemon's own delay, load included, is what it measures. The product requirement is
    // one second.
    let mut delays = Vec::new();
    for (i, cap) in captures.iter().enumerate() {
        assert!(!cap.is_empty(), "ch{i:02}: nothing received");
        let pkts = packets(cap);
        let (on, off) = alert_pmts(&pkts);
        match i {
            0..=4 => {
                let on = on.unwrap_or_else(|| panic!("ch{i:02}: the alert never went on air"));
                let d = on - answered;
                delays.push(d);
                assert!(
                    d < 1_000_000_000,
                    "ch{i:02}: on air {} ms after the answer",
                    d / 1_000_000
                );
                assert!(off.is_some(), "ch{i:02}: back from the alert");
            }
            7 => {
                let on = on.expect("ch07: the drill went on air");
                let d = on - drill_answered;
                assert!(
                    d < 1_000_000_000,
                    "ch07: the drill on air {} ms after the answer",
                    d / 1_000_000
                );
            }
            _ => assert!(
                on.is_none(),
                "ch{i:02}: an alert for another area went on air"
            ),
        }
        let mut limits = CheckLimits {
            private_pids: vec![Pid::from_bits(0x21), Pid::from_bits(0x1FFB)],
            ..CheckLimits::across_joins(MUXRATE)
        };
        if i == 0 {
            // Rejoining the schedule enters g.ts at its first random access point after the
            // wall-clock position (IDR every second), so g.ts ends up to a GOP before the next
            // hard start, which holds the last picture that long (a known limit of joins).
            limits.max_video_step_ratio = 30.0;
            limits.max_audio_step_ratio = 60.0;
        }
        let data: Vec<u8> = cap.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let r = checked_as(&format!("alerts-ch{i:02}"), &data, &limits);
        assert_eq!(r.cc_error_count, 0, "ch{i:02}");
    }
    delays.sort();
    eprintln!(
        "switch latency over {} channels (kernel stamps): p50 {:.1} ms, max {:.1} ms",
        delays.len(),
        delays[delays.len() / 2] as f64 / 1e6,
        delays[delays.len() - 1] as f64 / 1e6
    );

    // ffmpeg decodes a switched channel (programme → alert → programme) without an error.
    if let Some(ffmpeg) = tool("ffmpeg") {
        let file = dir.path().join("ch01.ts");
        let data: Vec<u8> = captures[1]
            .iter()
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        std::fs::write(&file, &data).unwrap();
        let errors = ffmpeg_errors(ffmpeg, &file);
        assert!(errors.is_empty(), "ffmpeg: {errors:#?}");
    }

    // In-band signalling on ch01: EIT present is the alert; EBIT and SCTE-18 parse.
    let pkts = packets(&captures[1]);
    let present: Vec<String> = sections(&pkts, 0x12)
        .into_iter()
        .filter(|(_, s)| s[0] == 0x4E)
        .filter_map(|(_, s)| epg::si::parse_eit(&s).and_then(|(n, e)| (n == 0).then_some(e?.title)))
        .collect();
    assert!(
        present.iter().any(|t| t == headline),
        "EIT present: {present:?}"
    );
    let ebit = sections(&pkts, 0x21);
    let (_, messages) =
        epg::emergency::parse_ebit(&ebit.first().expect("EBIT on PID 0x21").1).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].level, 2, "CAP Severe is level 2");
    assert_eq!(messages[0].class, epg::emergency::EbClass::Emergency);
    assert_eq!(&messages[0].ebm_type, b"11B03");
    let scte = sections(&pkts, 0x1FFB);
    let eam =
        epg::emergency::parse_scte18(&scte.first().expect("SCTE-18 on PID 0x1FFB").1).unwrap();
    assert!(eam.alert_text.contains(headline), "{}", eam.alert_text);
    assert_eq!(eam.priority, 11);
    // The tables stop with the alert: the last EBIT's kernel stamp within 1.5 s of `expires`
    // (T0 + 6 s, UTC, the clock the stamps are on), neither long after it nor well before.
    let expiry = (t0 + 6) * 1_000_000_000;
    let last_ebit = ebit.last().unwrap().0;
    let off = (last_ebit - expiry) as f64 / 1e9;
    eprintln!("last EBIT {:+.1} ms from expiry", off * 1e3);
    assert!(
        off.abs() < 1.5,
        "the last EBIT {off:+.3} s from the alert's expiry"
    );

    // The scheduled channel rejoined its schedule where the wall clock was: g.ts (T0+5..10),
    // entered about 2-3 s in (the alert ended at T0+6; the join is 1 s ahead, at a RAP).
    let ch00: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("item on air") && l.contains("channel=\"ch00\""))
        .collect();
    let first_alert = ch00
        .iter()
        .position(|l| l.contains("a.ts"))
        .expect("the alert on ch00");
    let rejoin = ch00[first_alert..]
        .iter()
        .find(|l| !l.contains("a.ts"))
        .unwrap_or_else(|| panic!("no item after the alert on ch00:\n{stderr}"))
        .to_string();
    assert!(rejoin.contains("g.ts"), "{rejoin}");
    let offset: f64 = rejoin
        .split("offset_s=")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(-1.0);
    assert!(
        (1.0..=3.6).contains(&offset),
        "rejoined at {offset} s: {rejoin}"
    );

    // The audit log: every step, UTC and local time on each line.
    let log = std::fs::read_to_string(dir.path().join("audit/alerts.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |ev: &str| lines.iter().filter(|l| l["event"] == ev).count();
    assert!(lines
        .iter()
        .all(|l| l["utc"].is_string() && l["local"].is_string()));
    assert!(count("rejected") >= 5, "{log}");
    assert!(lines.iter().any(
        |l| l["event"] == "rejected" && l["reason"].as_str().unwrap().contains("bad signature")
    ));
    assert_eq!(count("accepted"), 2, "{log}");
    assert_eq!(count("on_air"), 6, "5 channels + the drill: {log}");
    assert!(count("off_air") >= 6, "{log}");
    assert_eq!(count("expired"), 2, "{log}");
    assert_eq!(after["active"].as_array().unwrap().len(), 0, "{after}");
    assert_eq!(after["recent"].as_array().unwrap().len(), 2, "{after}");
}
