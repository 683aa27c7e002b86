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
