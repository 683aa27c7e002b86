//! A channel driven by its schedule, on air: the schedule file names two hard starts a few
//! seconds ahead; the daemon takes over from the playlist (filler in the gap); a scheduler
//! then replaces the first of them through the API while the channel is on air. The capture
//! shows the replacement (not the original) and the second item each presented within one
//! frame of their wall-clock times, with the stream conformant throughout.
//!
//! Presentation times come from kernel receive stamps (SO_TIMESTAMPNS, realtime clock) as a
//! receiver's clock recovery would have them (see `common::due_ns`), never from when this
//! test's threads ran: on a loaded 2-core machine the stamps still sit within a fraction of a
//! millisecond of the constant-bitrate line, and the entries land within a few ms of their
//! times (up to +17 ms seen with two busy loops and other builds beside it). The one-frame
//! limit still catches a hard start really off: a cue applied at the next key frame or item
//! boundary, a handover late or early by the scheduler's lead, an output clock mapped wrongly
//! to UTC, or an output that fell behind (the pacer re-anchors after 100 ms late) before the
//! entry. When one fails, the engine's stall and underflow counters are in the message.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use playout::check::{check, CheckLimits};
use playout::pes::PesHeader;
use playout::psi::{Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket};

mod common;
use common::{
    civil_date as chrono_date, due_ns, exchange_stamped, flatten, free_tcp_port, media,
    receive_stamped, signal_and_wait, utc_ns, Daemon,
};

const MUXRATE: u64 = 3_000_000;
/// One frame at 25 fps: the hard-start limit.
const FRAME_NS: i64 = 40_000_000;
const TOKEN: &str = "schedule-test-token-0123456789";

/// One HTTP/1.0 request (`GET /path`) with the token, an extra header line and a body: the
/// kernel receive stamp of the reply (when the daemon answered, realtime ns) and the raw reply.
fn http_stamped(port: u16, request: &str, header: &str, body: &str) -> (i64, String) {
    let header = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    let request = format!(
        "{request} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n{header}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (at, reply) = exchange_stamped(("127.0.0.1", port), request.as_bytes());
    (at, String::from_utf8(reply).unwrap())
}

/// [`http_stamped`]'s reply.
fn http(port: u16, request: &str, header: &str, body: &str) -> String {
    http_stamped(port, request, header, body).1
}

/// `HH:MM:SS` and the date of a UTC instant in whole seconds.
fn clock(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let date = chrono_date(days);
    (
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        date,
    )
}

#[test]
fn hard_starts_go_on_air_at_their_wall_clock_time() {
    let dir = tempfile::tempdir().unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let http_port = free_tcp_port();
    // Two hard starts: a.ts at T1, c.ts (HEVC) at T1 + 4 s. T1 is far enough ahead that the
    // edit below lands before the scheduler hands T1's cue to the engine.
    let t1 = utc_ns() / 1_000_000_000 + 15;
    let (c1, date) = clock(t1);
    let (c2, date2) = clock(t1 + 4);
    assert_eq!(date, date2, "not across midnight; run again");
    let sched = dir.path().join("sched/sched");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join(format!("{date}.toml")),
        format!(
            "date = \"{date}\"\n\n[[item]]\nstart = \"{c1}\"\nfile = \"a.ts\"\ntitle = \"一\"\n\n\
             [[item]]\nstart = \"{c2}\"\nblock = [\"c.ts\"]\nloop_for = \"30s\"\ntitle = \"二\"\n"
        ),
    )
    .unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\napi_token = \"{TOKEN}\"\n\n[schedules]\ndir = \"sched\"\nmedia_dir = {media:?}\n\n\
             [[channel]]\nid = \"sched\"\nservice_id = 1\nname = \"Sched\"\nmuxrate = \"3M\"\n\
             playlist = [{e:?}]\nfiller = [{e:?}]\ntimezone = \"UTC\"\n\n[[channel.output]]\n\
             url = \"udp://127.0.0.1:{port}\"\n",
            media = media("").display().to_string(),
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    // On air: replace T1's a.ts by b.ts (H.264 with MP2 audio), as `hectl schedule set` would.
    let edited = format!(
        "date = \"{date}\"\n\n[[item]]\nstart = \"{c1}\"\nfile = \"b.ts\"\ntitle = \"改\"\n\n\
         [[item]]\nstart = \"{c2}\"\nblock = [\"c.ts\"]\nloop_for = \"30s\"\ntitle = \"二\"\n"
    );
    let put = http(
        http_port,
        &format!("PUT /api/schedules/sched/{date}"),
        "If-Match: \"0\"",
        &edited,
    );
    assert!(put.starts_with("HTTP/1.0 200"), "{put}");
    assert!(
        utc_ns() < (t1 - 8) * 1_000_000_000,
        "the edit came too late to apply (machine too slow?)"
    );
    // Receive on a thread, each datagram with its kernel receive stamp (realtime ns). While the
    // looped c.ts plays: read the status (T1 + 6 s), then replace the block by a looped a.ts
    // with `now` (T1 + 6.5 s).
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = receive_stamped(rx, stop.clone(), Duration::from_secs(60));
    let now_edit = format!(
        "date = \"{date}\"\n\n[[item]]\nstart = \"{c1}\"\nfile = \"b.ts\"\ntitle = \"改\"\n\n\
         [[item]]\nstart = \"{c2}\"\nblock = [\"a.ts\"]\nloop_for = \"30s\"\ntitle = \"三\"\n"
    );
    let sleep_until = |utc: i64| {
        let left = utc - utc_ns();
        if left > 0 {
            std::thread::sleep(Duration::from_nanos(left as u64));
        }
    };
    let status_at = (t1 + 6) * 1_000_000_000;
    let edit_at = (t1 * 2 + 13) * 500_000_000;
    let end = edit_at + 10_000_000_000;
    sleep_until(status_at);
    // The status as of some instant between the request and the reply.
    let asked = utc_ns();
    let reply = http(http_port, "GET /api/channels/sched/status", "", "");
    let replied = utc_ns();
    let body = reply.split_once("\r\n\r\n").unwrap().1.to_owned();
    let status_json = serde_json::from_str::<serde_json::Value>(&body).unwrap();
    sleep_until(edit_at);
    // When the daemon answered the edit (its kernel stamp): from then on it must go on air.
    let (edited_now, reply) = http_stamped(
        http_port,
        &format!("PUT /api/schedules/sched/{date}?now=1"),
        "If-Match: \"1\"",
        &now_edit,
    );
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    sleep_until(end);
    // The engine's own account of its real-time health: a failure below is the daemon's when
    // its pacer stalled (fell over 100 ms behind and re-anchored, so the output left later) or
    // its input ran dry (null packets where pictures were due).
    let channels = http(http_port, "GET /channels", "", "");
    let channels: serde_json::Value =
        serde_json::from_str(channels.split_once("\r\n\r\n").unwrap().1).unwrap();
    let engine = {
        let st = &channels[0]["status"];
        format!(
            "engine: {} pacer stalls, {} underflows, {} late packets, latest datagram {} µs late",
            st["pacer_stalls"], st["underflows"], st["late_packets"], st["max_late_us"]
        )
    };
    eprintln!("{engine}");
    let (xml, json) = (
        http(http_port, "GET /epg.xml", "", ""),
        http(http_port, "GET /epg/sched.json", "", ""),
    );
    assert!(http(http_port, "GET /epg/nope.json", "", "").starts_with("HTTP/1.0 404"));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("schedule takes over"), "{stderr}");
    stop.store(true, Ordering::Relaxed);
    let (data, stamps) = flatten(&receiver.join().unwrap());
    check_guide(dir.path(), &xml, &json, &date, &c1);

    // Each PMT version marks an item; the first video PES after it is the item's entry
    // picture. Its presentation time on the wall clock, as a receiver's clock recovery has it:
    // when the latest PCR was due on the wire (the line the datagrams' kernel receive stamps
    // follow around it, see `due_ns`) plus the PTS's distance from that PCR. Neither this
    // thread's lateness nor a datagram sent late on a busy machine moves it; a daemon that
    // presents late (a cue applied late, a slipping output clock) does.
    const PCR_WRAP: i64 = (1 << 33) * 300;
    let mut pmt_asm = SectionAssembler::default();
    let mut pmt: Option<Pmt> = None;
    let mut pending_entry = false;
    let mut pcr_ref: Option<(usize, i64)> = None;
    // (the item's PMT, when its entry picture is presented, UTC ns)
    let mut entries: Vec<(Pmt, i64)> = Vec::new();
    let mut spreads = Vec::new();
    for (k, raw) in data.chunks_exact(188).enumerate() {
        let p = TsPacket::new(bytes::Bytes::copy_from_slice(raw)).unwrap();
        if p.pid() == Pid::from_bits(0x1000) {
            pmt_asm.push(&p, true, |section| {
                if let Ok(new) = Pmt::parse(Pid::from_bits(0x1000), section) {
                    if pmt.as_ref().is_none_or(|old| old.version != new.version) {
                        pmt = Some(new);
                        pending_entry = true;
                    }
                }
            });
        }
        if let Some(pcr) = p.pcr() {
            pcr_ref = Some((k, pcr.ticks() as i64));
        }
        let (Some(current), Some((pcr_at, pcr))) = (&pmt, pcr_ref) else {
            continue;
        };
        if pending_entry && p.pid() == current.pcr_pid && p.pusi() {
            if let Some(pts) = PesHeader::parse(p.payload()).and_then(|h| h.pts) {
                let d = (pts.raw() as i64 * 300 - pcr).rem_euclid(PCR_WRAP);
                let d = if d > PCR_WRAP / 2 { d - PCR_WRAP } else { d };
                let (utc, spread) = due_ns(&stamps, pcr_at, MUXRATE);
                spreads.push(spread);
                entries.push((current.clone(), utc + d * 1000 / 27));
                pending_entry = false;
            }
        }
    }
    let is_hevc = |p: &Pmt| p.streams.iter().any(|s| s.stream_type == 0x24);
    let h264_with = |p: &Pmt, audio: u8| {
        p.streams.len() == 2
            && p.streams.iter().any(|s| s.stream_type == 0x1B)
            && p.streams.iter().any(|s| s.stream_type == audio)
    };
    // b.ts (MP2 audio) replaced a.ts (AAC), which did not go on air before the `now` edit.
    let t2_ns = (t1 + 4) * 1_000_000_000;
    assert!(
        !entries
            .iter()
            .any(|(p, at)| h264_with(p, 0x0F) && *at < t2_ns),
        "a.ts went on air despite the edit"
    );
    let a = entries
        .iter()
        .find(|(p, _)| h264_with(p, 0x03))
        .expect("b.ts on air");
    let c = entries
        .iter()
        .find(|(p, _)| is_hevc(p))
        .expect("c.ts on air");
    // The `now` edit: the looped a.ts replaces the looped c.ts within the handover lead (4 s)
    // plus a scheduler round, or sooner when the c.ts pass on air ends first (4.0 s alone on
    // this machine, 6.2 s once with two other test binaries running beside it: the debug
    // build's scheduler round is slower on a loaded machine). The limit leaves room for that.
    let after = entries
        .iter()
        .find(|(p, at)| h264_with(p, 0x0F) && *at > edited_now)
        .expect("the now edit went on air");
    let delay = (after.1 - edited_now) as f64 / 1e9;
    eprintln!("now edit: on air {delay:.2} s after the daemon answered it");
    assert!(
        (0.0..8.0).contains(&delay),
        "now edit on air {delay} s later ({engine})"
    );
    // Hard starts: the first picture within a frame of its wall-clock time.
    let t1_ns = t1 * 1_000_000_000;
    for (name, at, want) in [("b.ts", a.1, t1_ns), ("c.ts", c.1, t1_ns + 4_000_000_000)] {
        let off = at - want;
        eprintln!(
            "{name}: first picture presented {:+.1} ms from its hard start \
             (the stamps around entries spread up to {:.3} ms, p5 to p95)",
            off as f64 / 1e6,
            spreads.iter().max().copied().unwrap_or(0) as f64 / 1e6
        );
        assert!(
            off.abs() <= FRAME_NS,
            "{name}: presented {off} ns from its start ({engine})"
        );
    }

    assert_eq!(status_json["scheduled"], true, "{status_json}");
    let now = &status_json["now"];
    assert!(
        now["label"].as_str().unwrap().ends_with("\"二\""),
        "{status_json}"
    );
    assert!(
        now["file"].as_str().unwrap().ends_with("c.ts"),
        "{status_json}"
    );
    // c.ts went on air at T1 + 4 s; the status is of an instant between the request and the
    // reply (the window widens with a late request instead of failing it).
    let pos = now["position_s"].as_f64().unwrap();
    let rem = now["remaining_s"].as_f64().unwrap();
    let since_t2 = |utc: i64| (utc - t2_ns) as f64 / 1e9;
    let (lo, hi) = (since_t2(asked) - 0.5, since_t2(replied) + 0.6);
    eprintln!(
        "status: c.ts at {pos:.2} s (asked {:.2} s in)",
        since_t2(asked)
    );
    assert!(
        (lo..hi).contains(&pos),
        "not in {lo:.2}..{hi:.2}: {status_json}"
    );
    assert!((pos + rem - 5.0).abs() < 0.05, "c.ts is 5 s: {status_json}");
    assert!(
        status_json["next"]["label"]
            .as_str()
            .unwrap()
            .ends_with("\"二\""),
        "the loop's next pass: {status_json}"
    );

    // The EIT present/following carries the schedule's titles, flipping as items go on air.
    let mut eit_asm = SectionAssembler::default();
    let mut pairs: Vec<(u8, String)> = Vec::new();
    let mut week: Vec<String> = Vec::new();
    for raw in data.chunks_exact(188) {
        let p = TsPacket::new(bytes::Bytes::copy_from_slice(raw)).unwrap();
        if p.pid() == Pid::from_bits(0x12) {
            eit_asm.push(&p, true, |section| {
                if section[0] == 0x50 {
                    // EIT schedule: the week's events.
                    if let Some((_, events)) = epg::si::parse_eit_events(section) {
                        week.extend(events.into_iter().map(|e| e.title));
                    }
                    return;
                }
                if let Some((n, Some(e))) = epg::si::parse_eit(section) {
                    if pairs.last().is_none_or(|(m, t)| *m != n || *t != e.title) {
                        pairs.push((n, e.title));
                    }
                }
            });
        }
    }
    assert!(
        week.iter().any(|t| t == "改") && week.iter().any(|t| t == "二"),
        "EIT schedule lists the day's programmes: {week:?}"
    );
    let has = |n: u8, title: &str| pairs.iter().any(|(m, t)| *m == n && t == title);
    assert!(
        has(0, "改") && has(1, "二"),
        "present 改 with 二 following: {pairs:?}"
    );
    assert!(has(0, "二"), "then 二 present: {pairs:?}");
    assert!(
        has(0, "三"),
        "the `now` edit shows as the present event: {pairs:?}"
    );

    let r = check(&data, &CheckLimits::across_joins(MUXRATE));
    let v = r.violations(&CheckLimits::across_joins(MUXRATE));
    let splices: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("item on air") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        v.is_empty(),
        "{}\n{r}\n{engine}\n{}",
        v.join("\n"),
        splices.join("\n")
    );
    assert_eq!(r.cc_error_count, 0);
}

/// The guide the daemon serves: XMLTV valid for xmllint (against XMLTV's DTD) and XMLTV's own
/// tv_validate_file, with the schedule's programmes at their times in the channel's zone; the
/// same as JSON for one channel.
fn check_guide(dir: &std::path::Path, xml_reply: &str, json_reply: &str, date: &str, c1: &str) {
    let (head, xml) = xml_reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/xml"),
        "{head}"
    );
    let guide = epg::xmltv::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(guide.channels.len(), 1);
    assert_eq!(guide.channels[0].id, "sched.headend");
    let titles: Vec<(String, &str)> = guide
        .programmes
        .iter()
        .map(|p| {
            (
                p.start.format("%Y-%m-%d %H:%M:%S").to_string(),
                p.titles[0].value.as_str(),
            )
        })
        .collect();
    assert!(
        titles.contains(&(format!("{date} {c1}"), "改")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|(_, t)| *t == "三"),
        "the `now` edit: {titles:?}"
    );
    let dtd = std::path::Path::new("/usr/share/xmltv/xmltv.dtd");
    if let (Some(xmllint), Some(validator)) = (
        common::tool_on_path("xmllint"),
        common::tool_on_path("tv_validate_file"),
    ) {
        let file = dir.join("epg.xml");
        std::fs::write(&file, xml).unwrap();
        std::fs::copy(dtd, dir.join("xmltv.dtd")).unwrap();
        for mut cmd in [
            {
                let mut c = Command::new(xmllint);
                c.args(["--noout", "--nonet", "--dtdvalid"]).arg(dtd);
                c
            },
            {
                let mut c = Command::new(validator);
                c.arg("--dtd-file").arg(dtd);
                c
            },
        ] {
            let out = cmd.arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}{}\n{xml}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let (head, json) = json_reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["channel"]["id"], "sched.headend");
    let programmes = v["programmes"].as_array().unwrap();
    assert!(
        programmes.iter().any(|p| p["titles"][0]["value"] == "改"),
        "{json}"
    );
}
