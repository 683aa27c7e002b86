//! A client flood on the HTTP listener (issue #15: "a client flood: bounded, recorded, and
//! the other channels keep their timing"). One channel plays to a UDP socket while the HTTP
//! port (the control API and the channel streams share it) takes:
//! - phase A: 2000 idle TCP connections, slowloris writers (a header byte every 300 ms) and
//!   an oversized request head; the API still answers a normal request within 2 s, idle
//!   connections are closed to make room (`http.max_connections` 256) and by the header
//!   timeout (2 s), the head gets 431;
//! - phase B: more stream clients that never read than the limit holds: new connections are
//!   answered 503 at once, counted, and the `http` alarm is raised; the stuck readers are
//!   closed by the idle timeout (5 s), and the API answers again;
//! - throughout, the UDP output's PCRs against their kernel arrival stamps stay within 50 ms
//!   of each other and no datagram comes more than 150 ms after the one before;
//! - when the flood is over, the alarm clears.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{free_tcp_port, longest_gap_ns, media, packets, receive_stamped, Daemon, Stamped};

/// One short request on a new connection: (status line, body, how long the answer took).
fn request(addr: SocketAddr, req: &str) -> (String, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned(), started.elapsed())
}

fn get(addr: SocketAddr, path: &str) -> (String, String, Duration) {
    request(addr, &format!("GET {path} HTTP/1.0\r\n\r\n"))
}

/// The soft open-file limit of this process (`/proc/self/limits`).
fn open_file_limit() -> usize {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// Opens up to `n` TCP connections to `addr` that send nothing (those the server closes
/// stay in the list, closed).
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..n / 4)
                    .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// The `http` alarm in a `GET /api/record` answer.
fn http_alarm(record: &serde_json::Value) -> serde_json::Value {
    record["alarms"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["place"] == "http"))
        .cloned()
        .unwrap_or_else(|| panic!("no http alarm in {record:#}"))
}

/// PCR against arrival: for every PCR of the capture, its kernel arrival stamp less the PCR
/// (as ns), less the first such difference; returns (p0.1..p99.9 spread, worst spread) in ns.
fn pcr_jitter(cap: &Stamped) -> (i64, i64) {
    let mut offsets: Vec<i64> = packets(cap)
        .iter()
        .filter_map(|(t, p)| Some(*t - (p.pcr()?.ticks() * 1000 / 27) as i64))
        .collect();
    assert!(offsets.len() > 50, "{} PCRs", offsets.len());
    offsets.sort_unstable();
    let q = |f: f64| offsets[((offsets.len() - 1) as f64 * f) as usize];
    (q(0.999) - q(0.001), q(1.0) - q(0.0))
}

#[test]
fn a_client_flood_is_bounded_and_recorded_and_the_channel_keeps_its_timing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let addr: SocketAddr = ([127, 0, 0, 1], http).into();
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&out)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nmax_connections = 256\nmax_connections_per_source = 100000\nheader_timeout = \"2s\"\n\
             idle_timeout = \"5s\"\n\n[record]\nfile = \"record.jsonl\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\n\
             playlist = [{a:?}, {e:?}]\n\n[[channel.output]]\nurl = \"udp://127.0.0.1:{p}\"\n",
            a = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
            p = out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let _daemon = Daemon::run(&cfg, "warn");
    let stop = Arc::new(AtomicBool::new(false));
    let capture = receive_stamped(out, stop.clone(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let (status, _, before) = get(addr, "/api/record");
    assert!(status.contains("200"), "{status}");

    // Phase A: idle connections, slowloris writers, an oversized head.
    let flood_began = common::utc_ns() as u64;
    let n = 2000.min(open_file_limit().saturating_sub(200));
    let idle = idle_connections(addr, n);
    let opened = idle.len();
    let slow_stop = Arc::new(AtomicBool::new(false));
    let slowloris: Vec<_> = (0..20)
        .map(|_| {
            let stop = slow_stop.clone();
            std::thread::spawn(move || {
                // Writes a header byte at a time until the server closes it (or 10 s).
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return None;
                };
                let began = Instant::now();
                let head =
                    b"GET /channels HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for b in head.iter().cycle() {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                Some(began.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The API answers, in spite of it all.
    let mut api_times = Vec::new();
    for _ in 0..5 {
        let (status, body, took) = get(addr, "/api/record");
        assert!(status.contains("200"), "{status} {body}");
        api_times.push(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    let big = format!(
        "GET /channels HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let (status, _, _) = request(addr, &big);
    assert!(status.contains("431"), "an oversized head: {status}");
    std::thread::sleep(Duration::from_secs(2));
    slow_stop.store(true, Ordering::Relaxed);
    let slow: Vec<Duration> = slowloris
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    drop(idle);
    let (_, body, _) = get(addr, "/api/record");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let h = &v["http"];
    eprintln!(
        "phase A: {opened} idle connections opened; API answers {:?} (before the flood {before:?}); \
         slowloris writers closed after {:?}; {h}",
        api_times,
        slow.iter().max()
    );
    assert!(
        api_times.iter().all(|t| *t < Duration::from_secs(2)),
        "{api_times:?}"
    );
    assert!(h["evicted_idle"].as_u64().unwrap() > 0, "{v:#}");
    assert!(h["header_timeouts"].as_u64().unwrap() >= 20, "{v:#}");
    assert!(
        slow.iter().all(|t| *t < Duration::from_secs(5)),
        "slowloris writers closed by the header timeout: {slow:?}"
    );

    // Phase B: the places all taken by stream clients that never read.
    let stuck: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_recv_buffer_size(4096).ok()?;
            s.connect_timeout(&addr.into(), Duration::from_secs(3))
                .ok()?;
            let mut s: TcpStream = s.into();
            s.write_all(b"GET /channels/news.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body, took) = get(addr, "/api/record");
    eprintln!(
        "phase B: {} stream clients that never read; a new connection: {status} in {took:?}",
        stuck.len()
    );
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("http.max_connections"), "{body}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The stuck readers are closed by the idle timeout; the API answers again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        let (status, body, _) = get(addr, "/api/record");
        if status.contains("200") {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the API never came back: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(stuck);
    let h = &v["http"];
    eprintln!("after phase B: {h}");
    assert!(h["refused"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(h["idle_timeouts"].as_u64().unwrap() >= 1, "{v:#}");
    let alarm = http_alarm(&v);
    assert!(
        alarm["alarm"]
            .as_str()
            .is_some_and(|a| a.contains("client flood")),
        "{alarm}"
    );
    stop.store(true, Ordering::Relaxed);
    let cap = capture.join().unwrap();

    // The channel's timing, across both phases (and before them, for comparison, less the
    // first second: the start).
    let settled = cap[0].0 + 1_000_000_000;
    let calm: Stamped = cap
        .iter()
        .filter(|(t, _)| (settled..flood_began).contains(t))
        .cloned()
        .collect();
    let flooded: Stamped = cap
        .iter()
        .filter(|(t, _)| *t >= flood_began)
        .cloned()
        .collect();
    let (calm_spread, _) = pcr_jitter(&calm);
    eprintln!(
        "before the flood: PCR vs arrival p0.1..p99.9 spread {:.2} ms",
        calm_spread as f64 / 1e6
    );
    let cap = flooded;
    let (spread, worst) = pcr_jitter(&cap);
    let longest_gap = longest_gap_ns(&cap);
    eprintln!(
        "UDP output over {:.1} s: {} datagrams; PCR vs arrival p0.1..p99.9 spread {:.2} ms, \
         worst {:.2} ms; longest gap between datagrams {:.2} ms",
        (cap[cap.len() - 1].0 - cap[0].0) as f64 / 1e9,
        cap.len(),
        spread as f64 / 1e6,
        worst as f64 / 1e6,
        longest_gap as f64 / 1e6
    );
    assert!(spread < 50_000_000, "PCR vs arrival spread {spread} ns");
    assert!(longest_gap < 150_000_000, "a gap of {longest_gap} ns");

    // Quiet again: the alarm clears (10 s without a refusal).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body, _) = get(addr, "/api/record");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a = http_alarm(&v);
        if a["alarm"].is_null() {
            assert!(a["count"].as_u64().unwrap() >= 1, "{a}");
            break;
        }
        assert!(Instant::now() < deadline, "the alarm stayed: {a}");
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("whole test: {:?}", started.elapsed());
}

/// One source address cannot take every place (`http.max_connections_per_source`): past
/// its cap its new connections are answered 503 at once and counted, while a client from
/// another address (127.0.0.2, loopback too) is served; the counter and the alarm show it.
#[test]
fn one_source_is_capped_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 200\nmax_connections_per_source = 20\n\n\
             [[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"2M\"\nplaylist = [{e:?}]\n",
            e = media("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // 20 stream clients from 127.0.0.1 that never read hold its places (an idle one would
    // make room for its own address's next); the 21st is refused.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /channels/a.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body, _) = get(addr, "/channels");
    assert!(status.contains(" 503 "), "{status}");
    assert!(body.contains("http.max_connections_per_source"), "{body}");
    // Another address is served.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    other.connect(&addr.into()).unwrap();
    let mut other: TcpStream = other.into();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    other
        .write_all(b"GET /api/record HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    other.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    let record: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert!(
        record["http"]["refused_per_source"].as_u64() >= Some(1),
        "{record}"
    );
    assert!(
        http_alarm(&record)["alarm"]
            .as_str()
            .is_some_and(|a| a.contains("client flood from 127.0.0.1")),
        "{record}"
    );
    drop(idle);
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}

/// The daemon's resident memory (kB), from `/proc/PID/status`.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A TCP connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr, recv_buffer: Option<usize>) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    if let Some(b) = recv_buffer {
        s.set_recv_buffer_size(b).ok()?;
    }
    s.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    s.connect_timeout(&addr.into(), Duration::from_secs(3))
        .ok()?;
    Some(s.into())
}

/// The flood, with the shipped defaults (`max_connections` 1024, 256 per source,
/// header timeout 10 s, idle timeout 60 s): from 127.0.0.1, 5,000 idle connections and 500
/// stream clients that read 1 KB a second, while 50 set-top boxes (127.0.0.10..59, one
/// address each) stream the channel. Each box keeps the channel's rate, the management
/// listener (the API) answers within a second throughout, the flooding address is capped
/// (refusals counted) and the daemon's memory grows by a bounded amount.
#[test]
fn a_flood_from_one_address_leaves_the_set_top_boxes_and_the_api_alone() {
    const BOXES: usize = 50;
    const MUXRATE: u64 = 3_000_000;
    let dir = tempfile::tempdir().unwrap();
    let (http, mgmt) = (free_tcp_port(), free_tcp_port());
    let streams: SocketAddr = ([127, 0, 0, 1], http).into();
    let api: SocketAddr = ([127, 0, 0, 1], mgmt).into();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[management]\nlisten = \"127.0.0.1:{mgmt}\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{a:?}, {e:?}]\n",
            a = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    let daemon = Daemon::run(&cfg, "warn");
    let pid = daemon.0.id();
    std::thread::sleep(Duration::from_secs(1));

    // The set-top boxes: each reads the channel as fast as it comes; bytes by second.
    let stop = Arc::new(AtomicBool::new(false));
    let boxes: Vec<_> = (0..BOXES)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = connect_from([127, 0, 0, 10 + i as u8], streams, None)
                    .expect("a set-top box connects");
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s.write_all(b"GET /channels/news.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let began = Instant::now();
                let mut per_second = vec![0u64; 60];
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let sec = began.elapsed().as_secs() as usize;
                            if let Some(b) = per_second.get_mut(sec) {
                                *b += n as u64;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                (began, per_second)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kb(pid);
    let (status, _, _) = get(api, "/api/record");
    assert!(status.contains("200"), "{status}");

    // The flood, from 127.0.0.1: 5,000 idle connections (four threads)...
    let flood_began = Instant::now();
    let idle = idle_connections(streams, 5000);
    // ...then 500 stream clients that read 1 KB a second, each with a small receive buffer.
    let slow_stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..500)
        .map(|_| {
            let stop = slow_stop.clone();
            let s = connect_from([127, 0, 0, 1], streams, Some(4096));
            std::thread::spawn(move || {
                let Some(mut s) = s else { return 0u64 };
                if s.write_all(b"GET /channels/news.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                    .is_err()
                {
                    return 0;
                }
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut got = 0u64;
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) if got > 0 => break,
                        Ok(n) => got += n as u64,
                        Err(_) => {}
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                got
            })
        })
        .collect();
    let opened = flood_began.elapsed();
    // The API answers throughout.
    let mut api_times = Vec::new();
    let mut rss_peak = 0;
    let flood_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < flood_until {
        let (status, body, took) = get(api, "/api/record");
        assert!(
            status.contains("200"),
            "the API during the flood: {status} {body}"
        );
        api_times.push(took);
        rss_peak = rss_peak.max(rss_kb(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, body, _) = get(api, "/api/record");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    stop.store(true, Ordering::Relaxed);
    slow_stop.store(true, Ordering::Relaxed);
    let flood_secs = flood_began.elapsed().as_secs() as usize;
    let rates: Vec<f64> = boxes
        .into_iter()
        .map(|b| {
            let (began, per_second) = b.join().unwrap();
            // The whole seconds of the flood, as each box counted them.
            let from = (flood_began - began).as_secs() as usize + 1;
            let secs = &per_second[from..(from + flood_secs - 2).min(per_second.len())];
            secs.iter().sum::<u64>() as f64 * 8.0 / secs.len() as f64
        })
        .collect();
    let slow_read: Vec<u64> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    drop(idle);
    let worst = rates.iter().copied().fold(f64::MAX, f64::min);
    let h = &record["http"];
    eprintln!(
        "flood opened in {opened:?}; {} slow readers got bytes; boxes' rate over the flood: \
         worst {:.3} Mbit/s, mean {:.3} (muxrate {:.1}); API answers: worst {:?}; \
         RSS {rss_before} kB before, peak {rss_peak} kB; {h}",
        slow_read.iter().filter(|b| **b > 0).count(),
        worst / 1e6,
        rates.iter().sum::<f64>() / rates.len() as f64 / 1e6,
        MUXRATE as f64 / 1e6,
        api_times.iter().max().unwrap(),
    );
    assert!(
        worst >= 0.95 * MUXRATE as f64,
        "a set-top box fell to {worst:.0} bit/s: {rates:?}"
    );
    assert!(
        api_times.iter().all(|t| *t < Duration::from_secs(1)),
        "{api_times:?}"
    );
    // Capped: at 256 places the flooding address's idle connections are closed to make room
    // for its new ones, and it is refused once all 256 are busy. Which of the two shows
    // depends on how many slow readers are busy at once (a loaded machine opens the flood
    // more slowly): either way it never held more than its 256 places (the 50 boxes come from
    // other addresses).
    let capped = h["refused_per_source"].as_u64() >= Some(1)
        || (h["evicted_idle"].as_u64() >= Some(1) && h["open"].as_u64() <= Some(256 + 50 + 1));
    assert!(capped, "the flooding address was not capped: {record:#}");
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "memory grew from {rss_before} kB to {rss_peak} kB"
    );
}
