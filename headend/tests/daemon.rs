//! `headend run` on loopback as an operator runs it: three channels on air at once, received
//! over IPv6 multicast, IPv4 unicast UDP and RTP, and HTTP, across several splices. Every
//! capture is held to our strict checker; ffmpeg decodes the HTTP capture and ffprobe reads a
//! multicast group directly. A stalled HTTP client disturbs no one, a channel whose files are
//! all missing stays locked, and SIGTERM closes everything cleanly.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use playout::check::{check, CheckLimits, Report};
use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::{
    checked, ffmpeg_errors, media, multicast_on_lo, multicast_receiver, run_bounded,
    signal_and_wait, tool, Daemon,
};

const MUXRATE: u64 = 3_000_000;
const DATAGRAM: usize = 7 * 188;
/// How long the channels are received.
const CAPTURE: Duration = Duration::from_secs(12);

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Datagrams received with their arrival times.
struct Capture {
    datagrams: Vec<(Instant, Vec<u8>)>,
}

/// Receives on `socket` until `stop`.
fn receive(socket: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<Capture> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                datagrams.push((Instant::now(), buf[..n].to_vec()));
            }
        }
        Capture { datagrams }
    })
}

fn unicast_receiver(port: u16) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_recv_buffer_size(8 << 20).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    s.into()
}

/// An HTTP/1.0 client reading a channel until the server closes (or `limit`).
fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> JoinHandle<(String, Vec<u8>)> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let started = Instant::now();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 65536];
        while started.elapsed() < limit {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response header");
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        (head, data[end + 4..].to_vec())
    })
}

/// A short HTTP/1.0 request: the status line and body.
fn http_fetch(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

fn limits() -> CheckLimits {
    CheckLimits::across_joins(MUXRATE)
}

/// Inter-arrival deviation from nominal at the 99th percentile, in µs.
fn spacing_p99_us(c: &Capture) -> u64 {
    let nominal = DATAGRAM as f64 * 8.0 / MUXRATE as f64 * 1e6;
    let mut dev: Vec<u64> = c
        .datagrams
        .windows(2)
        .map(|w| ((w[1].0 - w[0].0).as_secs_f64() * 1e6 - nominal).abs() as u64)
        .collect();
    dev.sort_unstable();
    dev[dev.len() * 99 / 100]
}

fn payload(c: &Capture, rtp: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, d) in &c.datagrams {
        out.extend_from_slice(if rtp { &d[12..] } else { d });
    }
    out
}

fn config(dir: &Path, ports: &[u16; 6], http: u16) -> PathBuf {
    let list = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("{:?}", media(n).display().to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"

[[channel]]
id = "alpha"
service_id = 101
name = "Alpha 新闻"
provider = "Tests"
muxrate = "3M"
playlist = [{alpha}]

[[channel.output]]
url = "udp://[ff15::7:1]:{p0}"
interface = "lo"

[[channel.output]]
url = "rtp://127.0.0.1:{p1}"

[[channel.output]]
url = "udp://127.0.0.1:{p2}"
dscp = 46

# Nobody listens here: the kernel refuses datagrams, the other outputs must not notice.
[[channel.output]]
url = "udp://127.0.0.1:{dead}"

[[channel]]
id = "beta"
service_id = 102
name = "Beta"
provider = "Tests"
muxrate = "3M"
playlist = [{beta}]

[[channel.output]]
url = "udp://[ff15::7:2]:{p3}"
interface = "lo"

[[channel]]
id = "gone"
service_id = 103
name = "Gone"
provider = "Tests"
muxrate = "3M"
playlist = ["{dir}/missing-1.ts", "{dir}/missing-2.ts"]

[[channel.output]]
url = "udp://127.0.0.1:{p4}"
"#,
        alpha = list(&["e.ts", "a.ts", "e.ts", "c.ts"]),
        beta = list(&["b.ts", "c.ts"]),
        dir = dir.display(),
        dead = ports[5],
        p0 = ports[0],
        p1 = ports[1],
        p2 = ports[2],
        p3 = ports[3],
        p4 = ports[4],
    );
    let path = dir.join("headend.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_clean(what: &str, r: &Report) {
    let v = r.violations(&limits());
    assert!(v.is_empty(), "{what}: {}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0, "{what}");
}

#[test]
fn channels_on_air_over_multicast_rtp_and_http() {
    multicast_on_lo("ff15::7:1");
    let ffmpeg = tool("ffmpeg");
    let ffprobe = tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let http_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(dir.path(), &ports, http_port);

    // Receivers first, so the first datagrams are caught.
    let stop = Arc::new(AtomicBool::new(false));
    let group: Ipv6Addr = "ff15::7:1".parse().unwrap();
    let rx_mcast = receive(multicast_receiver(group, ports[0]), stop.clone());
    let rx_rtp = receive(unicast_receiver(ports[1]), stop.clone());
    let rx_udp = receive(unicast_receiver(ports[2]), stop.clone());
    let rx_gone = receive(unicast_receiver(ports[4]), stop.clone());

    let mut daemon = Daemon::run(&cfg, "info");
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let on_air = Instant::now();

    // HTTP: a client that connects and never reads, then one that does.
    let mut stalled = TcpStream::connect(addr).unwrap();
    write!(stalled, "GET /channels/alpha.ts HTTP/1.0\r\n\r\n").unwrap();
    let client = http_get(
        addr,
        "/channels/alpha.ts",
        CAPTURE + Duration::from_secs(10),
    );

    // ffprobe reads the other channel's multicast group directly.
    let probe = ffprobe.map(|ffprobe| {
        let url = format!("udp://[ff15::7:2]:{}?timeout=5000000", ports[3]);
        std::thread::spawn({
            let ffprobe = ffprobe.to_owned();
            move || {
                run_bounded(
                    Command::new(ffprobe)
                        .args(["-v", "error", "-show_entries", "stream=codec_type"])
                        .args(["-of", "csv=p=0", "-i", &url]),
                    Duration::from_secs(20),
                )
            }
        })
    });

    // The API while on air.
    let (head, body) = http_fetch(addr, "GET", "/channels/nope.ts");
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
    assert!(body.contains("no channel `nope`"));
    let (head, body) = http_fetch(addr, "HEAD", "/channels/alpha.ts");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: video/mp2t"));
    assert!(body.is_empty());
    let (head, m3u) = http_fetch(addr, "GET", "/playlist.m3u");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(m3u.starts_with("#EXTM3U\n"), "{m3u}");
    assert!(m3u.contains(&format!(
        "tvg-id=\"alpha\" tvg-name=\"Alpha 新闻\" tvg-chno=\"1\" group-title=\"Tests\",Alpha 新闻\nhttp://{addr}/channels/alpha.ts\n"
    )));
    std::thread::sleep(CAPTURE.saturating_sub(on_air.elapsed()));
    let (_, json) = http_fetch(addr, "GET", "/channels");
    let list: serde_json::Value = serde_json::from_str(&json).expect("channels JSON");
    let alpha = &list[0];
    assert_eq!(alpha["id"], "alpha");
    assert!(alpha["http_clients"].as_u64().unwrap() >= 2, "{alpha}");
    assert!(
        alpha["status"]["items_started"].as_u64().unwrap() >= 3,
        "{alpha}"
    );
    assert_eq!(list[2]["status"]["items_started"], 0);
    let outputs = alpha["status"]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 4);
    for o in &outputs[..3] {
        assert_eq!(o["errors"], 0, "{o}");
    }
    assert!(outputs[3]["errors"].as_u64().unwrap() > 0, "{}", outputs[3]);
    assert!(list[2]["status"]["items_failed"].as_u64().unwrap() >= 2);

    // SIGTERM: outputs close cleanly and the daemon exits 0.
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    drop(stalled);

    // IPv6 multicast: clean, at the exact muxrate, evenly spaced.
    let mcast = rx_mcast.join().unwrap();
    let data = payload(&mcast, false);
    assert!(mcast.datagrams.iter().all(|(_, d)| d.len() == DATAGRAM));
    let r = check(&data, &limits());
    assert_clean("multicast", &r);
    let measured = r.measured_muxrate_bps.unwrap();
    assert!(
        (measured - MUXRATE as f64).abs() < MUXRATE as f64 * 1e-4,
        "muxrate {measured}"
    );
    let dur = data.len() as f64 * 8.0 / MUXRATE as f64;
    assert!(dur > 10.0, "{dur} s received");
    let p99 = spacing_p99_us(&mcast);
    eprintln!(
        "multicast: {} datagrams, {dur:.1} s, muxrate {measured:.0} b/s, inter-arrival p99 {p99} µs off nominal",
        mcast.datagrams.len()
    );
    assert!(
        p99 <= 1000,
        "multicast inter-arrival p99 {p99} µs off nominal"
    );
    let starts = stderr.matches("item on air").count();
    assert!(starts >= 5, "splices: {stderr}");

    // RTP: payload type 33, consecutive sequence numbers, 90 kHz timestamps at the muxrate.
    let rtp = rx_rtp.join().unwrap();
    assert!(rtp.datagrams.len() > 1000);
    for w in rtp.datagrams.windows(2) {
        let (a, b) = (&w[0].1, &w[1].1);
        assert_eq!((a[0], a[1] & 0x7F), (0x80, 33));
        let seq = |d: &[u8]| u16::from_be_bytes([d[2], d[3]]);
        let ts = |d: &[u8]| u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        assert_eq!(seq(b), seq(a).wrapping_add(1), "RTP sequence");
        let step = ts(b).wrapping_sub(ts(a));
        assert!((315..=317).contains(&step), "RTP timestamp step {step}");
    }
    assert_clean("rtp", &check(&payload(&rtp, true), &limits()));
    // IPv4 unicast UDP: the same stream as the multicast one.
    let udp = rx_udp.join().unwrap();
    assert_clean("udp", &check(&payload(&udp, false), &limits()));
    assert!(spacing_p99_us(&udp) <= 1000);

    // All files missing: PAT, PMT, PCR and stuffing at the muxrate.
    let gone = rx_gone.join().unwrap();
    let r = checked(&payload(&gone, false), &limits());
    assert_eq!(r.programs.len(), 1);
    assert!(r.null_packets * 10 > r.packets * 9);

    // HTTP: starts on a random access point with PAT first, clean to the end.
    let (head, body) = client.join().unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(body.len() % 188, 0);
    assert_eq!(body[0], 0x47);
    assert_eq!(
        u16::from_be_bytes([body[1], body[2]]) & 0x1FFF,
        0,
        "PAT first"
    );
    let r = check(&body, &limits());
    assert_clean("http", &r);
    assert!(
        body.len() as f64 * 8.0 / MUXRATE as f64 > 10.0,
        "{} bytes over http despite the stalled client",
        body.len()
    );
    if let Some(ffmpeg) = ffmpeg {
        let file = dir.path().join("http.ts");
        std::fs::write(&file, &body).unwrap();
        let errors = ffmpeg_errors(ffmpeg, &file);
        assert!(errors.is_empty(), "ffmpeg: {errors:#?}");
    }
    if let Some(probe) = probe {
        let out = probe.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("video") && text.contains("audio"), "{text}");
    }
}
