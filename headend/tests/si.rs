//! DVB SI across a network: two MPTS and a channel on its own, with `[network]`. 60 s of one
//! MPTS and of the channel, rendered on the simulated clock through the same station the
//! daemon runs (the other MPTS in step beside it), show every table at its TS 101 211 rate
//! (EIT p/f ≤ 2 s, SDT ≤ 2 s, TDT/TOT ≤ 30 s, EIT schedule day 1 ≤ 10 s, NIT/SDT other/EIT
//! p/f other ≤ 10 s), sections of one sub-table ≥ 25 ms apart, the strict checker (TR 101 290
//! priority 1 and 2) clean; the NIT lists every transport stream with its services and
//! logical channel numbers; SDT other and EIT p/f other describe the peer MPTS with what it
//! really has on air; tshark decodes it all with no malformed packet.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use epg::network::{parse_nit, parse_sdt};
use epg::si::parse_eit;
use playout::check::CheckLimits;
use playout::psi::SectionAssembler;
use playout::ts::TsPacket;

mod common;
use common::{checked, media, signal_and_wait, tool, Daemon};

const CAPTURE: Duration = Duration::from_secs(60);
const MPTS_RATE: u64 = 7_000_000;
const SOLO_RATE: u64 = 3_000_000;

fn receiver() -> UdpSocket {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    rx
}

/// Every SI section of a capture: (packet index of its first byte's packet, section).
fn sections(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut asm: HashMap<u16, SectionAssembler> = HashMap::new();
    let mut out = Vec::new();
    for (k, raw) in data.chunks_exact(188).enumerate() {
        let p = TsPacket::new(bytes::Bytes::copy_from_slice(raw)).unwrap();
        let pid = p.pid().value();
        if matches!(pid, 0x10 | 0x11 | 0x12 | 0x14) {
            asm.entry(pid)
                .or_default()
                .push(&p, true, |s| out.push((k, s.to_vec())));
        }
    }
    out
}

/// A sub-table's identity: (table_id, table_id_extension).
fn sub_table(s: &[u8]) -> (u8, u16) {
    let ext = if s[0] >= 0x70 {
        0
    } else {
        u16::from_be_bytes([s[3], s[4]])
    };
    (s[0], ext)
}

/// Checks repetition: every (sub-table, section number) repeats within its limit, sections
/// of one sub-table are at least 25 ms apart. Returns the worst interval per table_id (s).
fn repetition(secs: &[(usize, Vec<u8>)], muxrate: u64, label: &str) -> HashMap<u8, f64> {
    let t = |k: usize| k as f64 * 188.0 * 8.0 / muxrate as f64;
    let end = secs.last().map_or(0.0, |(k, _)| t(*k));
    let mut last_seen: HashMap<(u8, u16, u8), f64> = HashMap::new();
    let mut worst: HashMap<u8, f64> = HashMap::new();
    let mut last_of_sub: HashMap<(u8, u16), f64> = HashMap::new();
    let mut min_gap = f64::MAX;
    for (k, s) in secs {
        let (tid, ext) = sub_table(s);
        let number = if tid >= 0x70 { 0 } else { s[6] };
        let now = t(*k);
        if let Some(prev) = last_seen.insert((tid, ext, number), now) {
            let w = worst.entry(tid).or_default();
            *w = w.max(now - prev);
        }
        // From the previous section's last byte to this one's first (EN 300 468 §5.1.4):
        // `k` is the packet that completes a section, which started (len + pointer) / 184
        // packets before.
        let first = t(k + 1 - (s.len() + 1).div_ceil(184));
        if let Some(prev_end) = last_of_sub.insert((tid, ext), now) {
            if tid < 0x70 {
                min_gap = min_gap.min(first - prev_end);
            }
        }
    }
    // The time since each section was last seen counts too (a table that stops).
    for ((tid, _, _), seen) in &last_seen {
        let w = worst.entry(*tid).or_default();
        *w = w.max(end - seen);
    }
    let limit = |tid: u8| match tid {
        0x42 | 0x4E => 2.0,
        0x40 | 0x46 | 0x4F => 10.0,
        0x50 => 10.0, // the capture holds day 1's segments at the prime rate
        0x70 | 0x73 => 30.0,
        _ => f64::MAX,
    };
    for (tid, w) in &worst {
        assert!(
            *w <= limit(*tid),
            "{label}: table {tid:#04x} repeats every {w:.2} s (limit {} s)",
            limit(*tid)
        );
    }
    // At least 25 ms from one section's end to the next one's start (less a packet's time,
    // for where the measure falls within a packet).
    assert!(
        min_gap >= 0.025 - 188.0 * 8.0 / muxrate as f64,
        "{label}: sections of one sub-table {min_gap:.4} s apart"
    );
    eprintln!("{label}: worst repetition per table_id (s): {worst:?}; closest sections of one sub-table {:.1} ms", min_gap * 1000.0);
    worst
}

#[test]
fn network_si_at_its_repetition_rates() {
    let dir = tempfile::tempdir().unwrap();
    // Rendered: the outputs are never opened.
    let (p_mpts, p_solo) = (5101, 5102);
    let m = |n: &str| format!("{:?}", media(n).display().to_string());
    let channel = |id: &str, sid: u16, name: &str, files: &str, lcn: u16| {
        format!(
            "[[channel]]\nid = \"{id}\"\nservice_id = {sid}\nname = \"{name}\"\nprovider = \"测试台\"\n\
             muxrate = \"3M\"\ntransport_stream_id = {sid}0\nplaylist = [{files}]\n\
             pids = {{ pmt = {pmt}, video = {b}, audio = {a}, subtitle = {st}, data = {d} }}\n\n\
             [channel.si]\nlcn = {lcn}\n\n",
            pmt = 0x1000 + sid,
            b = u32::from(sid) * 0x200,
            a = u32::from(sid) * 0x200 + 1,
            st = u32::from(sid) * 0x200 + 0x20,
            d = u32::from(sid) * 0x200 + 0x30,
        )
    };
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[network]\nnetwork_id = 8193\nname = \"测试网络\"\n\n{}{}{}{}{}\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{p_solo}\"\n\n\
             [[mpts]]\nid = \"m1\"\ntransport_stream_id = 101\nmuxrate = \"7M\"\nchannels = [\"one\", \"two\"]\n\n\
             [[mpts.output]]\nurl = \"udp://127.0.0.1:{p_mpts}\"\n\n\
             [[mpts]]\nid = \"m2\"\ntransport_stream_id = 102\nmuxrate = \"7M\"\nchannels = [\"three\", \"four\"]\n",
            channel("one", 1, "一台", &m("a.ts"), 1),
            channel("two", 2, "二台", &m("e.ts"), 2),
            channel("three", 3, "三台", &m("d.ts"), 3),
            channel("four", 4, "四台", &m("a.ts"), 4),
            channel("solo", 5, "Solo", &m("e.ts"), 5),
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_headend"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let render = |what: &str, id: &str| -> Vec<u8> {
        let out = dir.path().join(format!("{id}.ts"));
        let res = common::run_bounded(
            Command::new(env!("CARGO_BIN_EXE_headend"))
                .args(["render", "--config"])
                .arg(&cfg)
                .args([
                    what,
                    id,
                    "--duration",
                    &format!("{}s", CAPTURE.as_secs()),
                    "-o",
                ])
                .arg(&out),
            Duration::from_secs(120),
        );
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        std::fs::read(&out).unwrap()
    };
    let mpts = render("--mpts", "m1");
    let solo = render("--channel", "solo");

    // TR 101 290 priority 1 and 2 (sync, PAT/PMT, CC, PCR, CRC) and the exact muxrate.
    checked(&mpts, &CheckLimits::across_joins(MPTS_RATE));
    checked(&solo, &CheckLimits::across_joins(SOLO_RATE));

    let m_secs = sections(&mpts);
    let s_secs = sections(&solo);
    let worst = repetition(&m_secs, MPTS_RATE, "mpts m1");
    for tid in [0x40, 0x42, 0x46, 0x4E, 0x4F, 0x50, 0x70, 0x73] {
        assert!(
            worst.contains_key(&tid),
            "m1: table {tid:#04x} missing or sent once"
        );
    }
    let worst = repetition(&s_secs, SOLO_RATE, "channel solo");
    for tid in [0x40, 0x42, 0x4E, 0x70, 0x73] {
        assert!(
            worst.contains_key(&tid),
            "solo: table {tid:#04x} missing or sent once"
        );
    }
    assert!(
        !s_secs.iter().any(|(_, s)| matches!(s[0], 0x46 | 0x4F)),
        "a channel on its own carries no SI other"
    );

    // The PAT announces the NIT (program 0 → PID 0x10).
    let pat = mpts
        .chunks_exact(188)
        .find(|p| p[1] & 0x1F == 0 && p[2] == 0)
        .map(|p| {
            let s = &p[5..];
            let len = 3 + usize::from(u16::from_be_bytes([s[1], s[2]]) & 0x0FFF);
            playout::psi::Pat::parse(&s[..len]).expect("a PAT")
        })
        .expect("a PAT packet");
    assert_eq!(pat.network_pid, Some(playout::ts::Pid::from_bits(0x10)));

    // The NIT: the network, each transport stream, services and numbers.
    let nit = m_secs
        .iter()
        .find_map(|(_, s)| parse_nit(s))
        .expect("a NIT");
    assert_eq!(nit.network_id, 8193);
    assert_eq!(nit.name.as_deref(), Some("测试网络"));
    type Listed = Vec<(u16, Vec<(u16, Option<u16>)>)>;
    let listed: Listed = nit
        .streams
        .iter()
        .map(|t| {
            (
                t.transport_stream_id,
                t.services.iter().map(|s| (s.service_id, s.lcn)).collect(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (101, vec![(1, Some(1)), (2, Some(2))]),
            (102, vec![(3, Some(3)), (4, Some(4))]),
            (50, vec![(5, Some(5))]),
        ]
    );

    // SDT actual: m1's services; SDT other: m2's.
    let sdt = |tid: u8| {
        m_secs
            .iter()
            .filter_map(|(_, s)| parse_sdt(s))
            .find(|s| s.table_id == tid)
            .unwrap_or_else(|| panic!("no SDT {tid:#04x}"))
    };
    let names = |s: epg::network::SdtSection| -> Vec<(u16, String)> {
        s.services
            .into_iter()
            .map(|v| (v.service_id, v.name))
            .collect()
    };
    let actual = sdt(0x42);
    assert_eq!(actual.transport_stream_id, 101);
    assert_eq!(names(actual), vec![(1, "一台".into()), (2, "二台".into())]);
    let other = sdt(0x46);
    assert_eq!(other.transport_stream_id, 102);
    assert_eq!(names(other), vec![(3, "三台".into()), (4, "四台".into())]);

    // EIT p/f: actual for m1's services, other for m2's, with what m2 has on air (titled by
    // file name: "d" on three, "a" on four).
    let present = |tid: u8, sid: u16| -> Vec<String> {
        let mut titles: Vec<String> = m_secs
            .iter()
            .filter(|(_, s)| s[0] == tid && sub_table(s).1 == sid && s[6] == 0)
            .filter_map(|(_, s)| parse_eit(s).and_then(|(_, e)| e).map(|e| e.title))
            .collect();
        titles.dedup();
        titles
    };
    assert!(
        present(0x4E, 1).contains(&"a".to_owned()),
        "{:?}",
        present(0x4E, 1)
    );
    assert!(
        present(0x4E, 2).contains(&"e".to_owned()),
        "{:?}",
        present(0x4E, 2)
    );
    assert!(
        present(0x4F, 3).contains(&"d".to_owned()),
        "{:?}",
        present(0x4F, 3)
    );
    assert!(
        present(0x4F, 4).contains(&"a".to_owned()),
        "{:?}",
        present(0x4F, 4)
    );

    // An independent decoder: tshark reads the SI packets (PAT and PIDs 0x10..=0x14, every
    // packet of them, so their continuity holds) of the first 12 s of the MPTS capture.
    let Some(tshark) = tool_v("tshark") else {
        return;
    };
    let head = dir.path().join("m1-si.ts");
    let n = MPTS_RATE as usize / 8 * 12 / 188;
    let si_only: Vec<u8> = mpts
        .chunks_exact(188)
        .take(n)
        .filter(|p| {
            let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
            pid == 0 || (0x10..=0x14).contains(&pid)
        })
        .flatten()
        .copied()
        .collect();
    std::fs::write(&head, &si_only).unwrap();
    // (`timeout` bounds it; `output()` drains the pipes while it runs.)
    let out = Command::new("timeout")
        .args(["120", tshark, "-r"])
        .arg(&head)
        .arg("-V")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Malformed"), "tshark: malformed packet");
    for want in [
        "Network Name Descriptor",
        "Service List Descriptor",
        "Service Descriptor",
        "测试网络",
        "三台",
        "Time Offset Table",
    ] {
        assert!(text.contains(want), "tshark shows no {want}");
    }
}

/// [`tool`] for a program that answers `--version` rather than `-version`.
fn tool_v(name: &str) -> Option<&str> {
    let ok = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(name)
    } else {
        tool(name)
    }
}

/// A pass-through channel whose guide is an XMLTV file: EIT present/following follow the
/// clock through the file's programmes (not the files it plays); a malformed rewrite is
/// logged with its line and column and the last good guide stays; a good rewrite is on air
/// within a few seconds; `/epg.xml` serves it.
#[test]
fn a_guide_from_xmltv_drives_the_eit() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver();
    let port = rx.local_addr().unwrap().port();
    let http_port = common::free_tcp_port();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = |offset_s: i64| {
        chrono::DateTime::from_timestamp(now + offset_s, 0)
            .unwrap()
            .format("%Y%m%d%H%M%S +0000")
            .to_string()
    };
    let guide = |present: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<tv>\n\
             <channel id=\"pass.example.cn\"><display-name>Pass</display-name></channel>\n\
             <channel id=\"other.example.cn\"><display-name>Other</display-name></channel>\n\
             <programme start=\"{}\" stop=\"{}\" channel=\"pass.example.cn\"><title lang=\"zh\">{present}</title>\
             <desc lang=\"zh\">现场</desc></programme>\n\
             <programme start=\"{}\" stop=\"{}\" channel=\"pass.example.cn\"><title lang=\"zh\">下一个</title></programme>\n\
             <programme start=\"{}\" stop=\"{}\" channel=\"other.example.cn\"><title>Not ours</title></programme>\n</tv>\n",
            t(-600),
            t(1200),
            t(1200),
            t(3000),
            t(-600),
            t(1200),
        )
    };
    let xml = dir.path().join("guide.xml");
    std::fs::write(&xml, guide("直播节目")).unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[[channel]]\nid = \"pass\"\nservice_id = 7\nname = \"Pass\"\n\
             muxrate = \"3M\"\nplaylist = [{:?}]\n\n[channel.si]\nxmltv = \"guide.xml\"\nxmltv_id = \"pass.example.cn\"\n\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n",
            media("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let mut buf = [0u8; 2048];
    // Present and following titles seen in EIT p/f actual, in order of change.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut data = Vec::new();
    let started = Instant::now();
    let mut step = 0;
    while started.elapsed() < Duration::from_secs(20) {
        let mut idle = true;
        while let Ok(n) = rx.recv(&mut buf) {
            data.extend_from_slice(&buf[..n]);
            idle = false;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
        let secs = started.elapsed().as_secs();
        if step == 0 && secs >= 5 {
            std::fs::write(&xml, "<tv>\n<programme start=\"2026\">\n").unwrap();
            step = 1;
        } else if step == 1 && secs >= 9 {
            std::fs::write(&xml, guide("改了")).unwrap();
            step = 2;
        }
    }
    let epg = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /epg.xml HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    let mut pf: (Option<String>, Option<String>) = (None, None);
    for (_, s) in sections(&data) {
        if s[0] != 0x4E {
            continue;
        }
        if let Some((n, e)) = parse_eit(&s) {
            let title = e.map(|e| e.title);
            if n == 0 {
                pf.0 = title;
            } else {
                pf.1 = title;
            }
            if let (Some(p), Some(f)) = &pf {
                if seen.last() != Some(&(p.clone(), f.clone())) {
                    seen.push((p.clone(), f.clone()));
                }
            }
        }
    }
    assert_eq!(
        seen,
        vec![
            ("直播节目".to_owned(), "下一个".to_owned()),
            ("改了".to_owned(), "下一个".to_owned())
        ],
        "EIT p/f as the guide file says; {stderr}"
    );
    assert!(
        stderr.contains("XMLTV guide not read") && stderr.contains("line 3, column 1"),
        "the malformed file is reported by line and column: {stderr}"
    );
    assert!(epg.contains("<title lang=\"zh\">改了</title>"), "{epg}");
    assert!(!epg.contains("Not ours"), "{epg}");
}
