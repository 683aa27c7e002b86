//! EMM injection end to end: `headend` is the MUX of the DVB SimulCrypt EMMG⇔MUX interface
//! (ETSI TS 103 197) for our test EMMG (`hectl emmg`), which sends numbered EMM sections
//! (`drm::simulcrypt::emmg::pattern_section`). Two stations carry the CAS (each channel
//! scrambled with SimulCrypt keys for Super_CAS_id 0x4AD10000 from our test ECMG), so both get
//! the EMMs: the EMM PID carries exactly the sections sent, in order, at the allocated rate;
//! the CAT lists the EMM PID with the CA_system_id; `/channels` counts them. An EMMG sending
//! over its allocation is throttled (over TCP: read no faster than the allocation, nothing
//! lost; over UDP: what is over is dropped and counted) and the channel keeps its muxrate.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drm::simulcrypt::emmg::pattern_sequence;

mod common;
use common::scrambled::{aes_ecmg, udp_receiver, Killed};
use common::{
    free_tcp_port, free_udp_port, hectl, http_get, media, packets, receive_stamped, sections,
    signal_and_wait, Daemon, Stamped,
};

const KEY: &str = "8899aabbccddeeff0011223344556677";
const EMM_PID: u16 = 0x1FF8;
const MUXRATE: u64 = 3_000_000;
/// The allocation, bit/s.
const ALLOCATED: f64 = 100_000.0;

/// The test ECMG on a free port; returns it and its address.
fn ecmg() -> (Killed, String) {
    aes_ecmg("127.0.0.1:0", KEY, &["--max-comp-time", "2000"])
}

/// Two channels scrambled for CAS 0x4AD1 (each out on its own port), the EMMG listener on
/// `tcp` (and `udp`), 100 kbit/s allocated.
fn config(dir: &std::path::Path, http: u16, ecmg: &str, outs: [u16; 2], tcp: u16, udp: u16) {
    let channel = |id: &str, sid: u16, pmt: u16, base: u16, port: u16| {
        format!(
            "[[channel]]\nid = \"{id}\"\nservice_id = {sid}\nname = \"{id}\"\nmuxrate = \"3M\"\n\
             playlist = [{a:?}]\n\
             [channel.pids]\npmt = 0x{pmt:X}\nvideo = 0x{v:X}\naudio = 0x{au:X}\nsubtitle = 0x{s:X}\ndata = 0x{d:X}\n\
             [channel.scrambling]\ncrypto_period = \"2s\"\nkeys = \"simulcrypt\"\n\
             [channel.scrambling.simulcrypt]\necmg = \"{ecmg}\"\nsuper_cas_id = 0x4AD10000\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n\n",
            a = media("a.ts").display().to_string(),
            v = base,
            au = base + 1,
            s = base + 0x10,
            d = base + 0x20,
        )
    };
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n\n{}{}\
         [[emmg]]\nlisten = \"127.0.0.1:{tcp}\"\nudp = \"127.0.0.1:{udp}\"\nclient_id = 0x4AD10000\n\
         bandwidth = \"100k\"\nemm_pid = 0x{EMM_PID:X}\n",
        channel("p1", 1, 0x1000, 0x100, outs[0]),
        channel("p2", 2, 0x1001, 0x200, outs[1]),
    );
    std::fs::write(dir.join("headend.toml"), text).unwrap();
}

/// Runs `hectl emmg` against the daemon with `args` to its end: (datagrams, section bytes)
/// it says it sent.
fn emmg(tcp: u16, args: &[&str]) -> (u64, u64) {
    let mut child = Killed(
        Command::new(hectl())
            .args([
                "emmg",
                "--mux",
                &format!("127.0.0.1:{tcp}"),
                "--section-size",
                "183",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hectl emmg"),
    );
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "hectl emmg: {out}\n{err}");
    assert!(out.contains("ready bandwidth=100"), "{out}");
    let last = out
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .unwrap_or_else(|| panic!("{out}"));
    let field = |name: &str| -> u64 {
        last.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{last}"))
    };
    (field("datagrams="), field("bytes="))
}

/// What a station's capture shows of the EMMs: the sections' sequence numbers in order of
/// arrival, their bytes, and the EMM packets' kernel stamps (ns).
struct Emms {
    seqs: Vec<u32>,
    bytes: u64,
    stamps: Vec<i64>,
    /// (CA_system_id, PID) of each CA_descriptor in the CAT.
    cat: Vec<(u16, u16)>,
    /// The capture's TS packets and its first and last stamps.
    total: usize,
    span_ns: i64,
}

fn emms(cap: &Stamped) -> Emms {
    let pkts = packets(cap);
    let mut seqs = Vec::new();
    let mut bytes = 0;
    for (_, s) in sections(&pkts, EMM_PID) {
        let seq = pattern_sequence(&s).unwrap_or_else(|| panic!("not a test section: {s:02x?}"));
        seqs.push(seq);
        bytes += s.len() as u64;
    }
    let stamps = pkts
        .iter()
        .filter(|(_, p)| p.pid().value() == EMM_PID)
        .map(|(t, _)| *t)
        .collect();
    let mut cat = Vec::new();
    if let Some((_, s)) = sections(&pkts, 0x0001).first() {
        assert_eq!(s[0], 0x01, "CAT table_id");
        let mut d = &s[8..s.len() - 4];
        while d.len() >= 2 {
            let len = usize::from(d[1]);
            if d[0] == 0x09 && len >= 4 {
                cat.push((
                    u16::from_be_bytes([d[2], d[3]]),
                    u16::from_be_bytes([d[4] & 0x1F, d[5]]),
                ));
            }
            d = &d[(2 + len).min(d.len())..];
        }
    }
    Emms {
        seqs,
        bytes,
        stamps,
        cat,
        total: pkts.len(),
        span_ns: pkts.last().map_or(0, |l| l.0) - pkts.first().map_or(0, |f| f.0),
    }
}

/// The most EMM bits in any window of `window_ns`, as bit/s.
fn peak_rate(stamps: &[i64], window_ns: i64) -> f64 {
    let mut j = 0;
    let mut best = 0;
    for i in 0..stamps.len() {
        while stamps[i] - stamps[j] > window_ns {
            j += 1;
        }
        best = best.max(i + 1 - j);
    }
    (best * 188 * 8) as f64 / (window_ns as f64 / 1e9)
}

/// Starts the ECMG, the daemon and a receiver per station; runs `during` while they are on
/// air, then stops the daemon: each station's capture and the last `/channels`.
fn on_air(during: impl FnOnce(u16, u16, u16)) -> ([Stamped; 2], String) {
    let dir = tempfile::tempdir().unwrap();
    let (_ecmg, addr) = ecmg();
    let (rx1, p1) = udp_receiver();
    let (rx2, p2) = udp_receiver();
    let (http, tcp, udp) = (free_tcp_port(), free_tcp_port(), free_udp_port());
    config(dir.path(), http, &addr, [p1, p2], tcp, udp);
    let stop = Arc::new(AtomicBool::new(false));
    let r1 = receive_stamped(rx1, stop.clone(), Duration::from_secs(60));
    let r2 = receive_stamped(rx2, stop.clone(), Duration::from_secs(60));
    let mut daemon = Daemon::run(&dir.path().join("headend.toml"), "info");
    std::thread::sleep(Duration::from_millis(1500));
    during(http, tcp, udp);
    let channels = http_get(http, "/channels");
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    ([r1.join().unwrap(), r2.join().unwrap()], channels)
}

#[test]
fn emms_reach_every_station_of_the_cas_exactly_at_the_allocated_rate() {
    let mut sent = (0, 0);
    let (caps, channels) = on_air(|_, tcp, _| {
        sent = emmg(tcp, &["--duration", "6"]);
        // What is queued drains at the allocated rate.
        std::thread::sleep(Duration::from_millis(2500));
    });
    let (datagrams, bytes) = sent;
    assert!(datagrams > 300, "{datagrams} sent in 6 s");
    for (k, cap) in caps.iter().enumerate() {
        let e = emms(cap);
        eprintln!(
            "station {k}: {} EMM sections ({} bytes) of {datagrams} ({bytes}); CAT {:04x?}",
            e.seqs.len(),
            e.bytes,
            e.cat
        );
        assert_eq!(
            e.seqs,
            (0..datagrams as u32).collect::<Vec<_>>(),
            "station {k}: every section sent, once, in order"
        );
        assert_eq!(e.bytes, bytes, "station {k}: exactly the bytes sent");
        assert!(
            e.cat.contains(&(0x4AD1, EMM_PID)),
            "station {k}: {:?}",
            e.cat
        );
        // At the allocation: over the whole run, and in any second.
        let span = (e.stamps.last().unwrap() - e.stamps[0]) as f64 / 1e9;
        let mean = (e.stamps.len() * 188 * 8) as f64 / span;
        let peak = peak_rate(&e.stamps, 1_000_000_000);
        eprintln!("station {k}: EMMs at {mean:.0} bit/s on average, {peak:.0} at most in a second");
        assert!(
            (0.85 * ALLOCATED..=1.05 * ALLOCATED).contains(&mean),
            "station {k}: {mean:.0} bit/s"
        );
        assert!(
            peak <= 1.1 * ALLOCATED,
            "station {k}: {peak:.0} bit/s in a second"
        );
        // The output keeps its muxrate.
        let rate = (e.total * 188 * 8) as f64 / (e.span_ns as f64 / 1e9);
        assert!(
            (rate - MUXRATE as f64).abs() < 0.02 * MUXRATE as f64,
            "station {k}: {rate:.0} bit/s"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&channels).unwrap();
    let text = v.to_string();
    assert!(text.contains("\"emm\""), "{channels}");
    for id in ["p1", "p2"] {
        let st = v
            .as_array()
            .into_iter()
            .flatten()
            .chain(v["stations"].as_array().into_iter().flatten())
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{channels}"));
        let e = &st["status"]["emm"][0];
        assert_eq!(e["pid"], EMM_PID, "{st}");
        assert!(e["packets"].as_u64().unwrap() >= datagrams, "{st}");
        assert_eq!(e["dropped"], 0, "{st}");
    }
}

#[test]
fn an_emmg_over_its_allocation_is_throttled() {
    let mut tcp_sent = (0, 0);
    let mut udp_sent = (0, 0);
    let (caps, channels) = on_air(|_, tcp, udp| {
        // Bad input first: garbage on a connection, an EMMG of another CAS. Both refused,
        // nothing else changes.
        {
            use std::io::Write;
            let mut junk = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
            let _ = junk.write_all(&[0x03, 0x00, 0x11, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
            let _ = junk.write_all(&[0xFF; 300]);
        }
        let other = Command::new(hectl())
            .args([
                "emmg",
                "--mux",
                &format!("127.0.0.1:{tcp}"),
                "--client-id",
                "0x4AE20000",
            ])
            .args(["--count", "1"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&other.stderr);
        assert!(
            !other.status.success() && said.contains("unknown client_id"),
            "{said}"
        );
        // Over TCP, asking for 300 kbit/s and sending at 300 for 2 s: allocated 100, read at
        // 100 (the EMMG's socket fills), nothing lost: 6 s to drain.
        tcp_sent = emmg(
            tcp,
            &["--bandwidth", "300", "--rate", "300", "--duration", "2"],
        );
        std::thread::sleep(Duration::from_millis(5000));
        // Over UDP at 300 kbit/s for 3 s: what is over the allocation is dropped.
        let to = format!("127.0.0.1:{udp}");
        udp_sent = emmg(tcp, &["--rate", "300", "--duration", "3", "--udp", &to]);
        std::thread::sleep(Duration::from_millis(1000));
    });
    eprintln!("sent over TCP {tcp_sent:?}, over UDP {udp_sent:?}");
    for (k, cap) in caps.iter().enumerate() {
        let e = emms(cap);
        let peak = peak_rate(&e.stamps, 1_000_000_000);
        // The TCP run's sections, then the UDP run's (numbered from 0 again).
        let split = e
            .seqs
            .windows(2)
            .position(|w| w[1] < w[0])
            .map_or(e.seqs.len(), |i| i + 1);
        let (over_tcp, over_udp) = e.seqs.split_at(split);
        eprintln!(
            "station {k}: {} EMM sections from TCP, {} from UDP; at most {peak:.0} bit/s in a second",
            over_tcp.len(),
            over_udp.len()
        );
        assert!(peak <= 1.1 * ALLOCATED, "station {k}: {peak:.0} bit/s");
        assert_eq!(
            over_tcp,
            (0..tcp_sent.0 as u32).collect::<Vec<_>>(),
            "station {k}: over TCP, held back, not lost"
        );
        assert!(
            over_udp.windows(2).all(|w| w[0] < w[1])
                && (over_udp.len() as u64) < udp_sent.0 * 2 / 3
                && over_udp.len() > 100,
            "station {k}: over UDP, a third of {} at most: {}",
            udp_sent.0,
            over_udp.len()
        );
        let rate = (e.total * 188 * 8) as f64 / (e.span_ns as f64 / 1e9);
        assert!(
            (rate - MUXRATE as f64).abs() < 0.02 * MUXRATE as f64,
            "station {k}: {rate:.0} bit/s"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&channels).unwrap();
    let over: u64 = v
        .to_string()
        .split("\"over_allocation\":")
        .skip(1)
        .filter_map(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(over > 0, "UDP over the allocation is counted: {channels}");
}
