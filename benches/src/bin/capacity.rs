//! Real-time capacity of `headend run`: N channels at a muxrate paced to IPv6 multicast groups
//! kept on `lo`, received here, with datagram inter-arrival against nominal, continuity
//! errors, losses, and the CPU the daemon takes (issue #3).
//!
//! `cargo run --release -p benches --bin capacity -- --channels 300 --secs 20`
//! (needs root for the loopback multicast routes and a larger receive buffer; never sends
//! anywhere but `lo`).

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv6Addr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::live::{cpu_seconds, multicast_on_lo, recv_stamped, stamped_socket, Daemon};
use clap::Parser;

const DATAGRAM: usize = 7 * 188;
/// Inter-arrival histogram: 10 µs buckets up to 100 ms.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 10_000;

#[derive(Parser)]
struct Args {
    /// Channels to put on air.
    #[arg(long, default_value_t = 300)]
    channels: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Seconds on air before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Muxrate of every channel, bits/s.
    #[arg(long, default_value_t = 8_000_000)]
    muxrate: u64,
    /// UDP port of every group.
    #[arg(long, default_value_t = 6000)]
    port: u16,
    /// `groups`: one multicast group per channel, all on one port (as operators do);
    /// `ports`: one group, one port per channel. On loopback the receiving side's work runs in
    /// the sender's system calls, and the kernel scans a host's joined groups linearly for
    /// every datagram, so `groups` charges the daemon a cost that grows with the number of
    /// groups joined *here*; `ports` shows the sender's own cost.
    #[arg(long, default_value = "groups")]
    layout: String,
    /// Engine threads (`[engine] threads`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
    /// Record every channel in an archive under this directory (`[channel.archive]`,
    /// issue #17), emptied first; the bytes written over the window are reported.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// With `--archive`: each channel's `max_bytes` (retention keeps the disk use bounded).
    #[arg(long, default_value = "64M")]
    archive_max_bytes: String,
}

struct Stream {
    /// Kernel arrival time of the last datagram, ns.
    last: Option<u64>,
    datagrams: u64,
    cc: Box<[u8; 8192]>,
    cc_errors: u64,
    hist: Vec<u32>,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            last: None,
            datagrams: 0,
            cc: Box::new([0xFF; 8192]),
            cc_errors: 0,
            hist: vec![0; BUCKETS + 1],
        }
    }
}

fn group(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xff11, 0, 0, 0, 0, 0, 0xc, i as u16 + 1)
}

/// Group and port of channel `i`.
fn dest(args: &Args, i: usize) -> (Ipv6Addr, u16) {
    if args.layout == "ports" {
        (group(0), args.port + i as u16)
    } else {
        (group(i), args.port)
    }
}

fn write_config(path: &Path, args: &Args) -> anyhow::Result<()> {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
    let media = media.canonicalize().context("fixtures/media")?;
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[engine]\nthreads = {}\n",
        args.threads
    );
    for i in 0..args.channels {
        text.push_str(&format!(
            "\n[[channel]]\nid = \"c{n}\"\nservice_id = {n}\nname = \"C{n}\"\nprovider = \"bench\"\n\
             muxrate = \"{rate}\"\nplaylist = [\"{a}\", \"{e}\", \"{c}\"]\n\n[[channel.output]]\n\
             url = \"udp://[{g}]:{port}\"\ninterface = \"lo\"\n",
            n = i + 1,
            rate = args.muxrate,
            a = media.join("a.ts").display(),
            e = media.join("e.ts").display(),
            c = media.join("c.ts").display(),
            g = dest(args, i).0,
            port = dest(args, i).1,
        ));
        if let Some(dir) = &args.archive {
            text.push_str(&format!(
                "\n[channel.archive]\ndir = \"{}\"\nmax_bytes = \"{}\"\n",
                dir.display(),
                args.archive_max_bytes
            ));
        }
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

/// The bytes of the archived segments that began within `[from_ns, to_ns)` UTC, from every
/// channel's `index.jsonl` under `dir` (retention may have removed some files meanwhile: the
/// index still says what was written).
fn archived_bytes(dir: &Path, from_ns: i64, to_ns: i64) -> (u64, u64) {
    let (mut bytes, mut segments) = (0, 0);
    for ch in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(ch.path().join("index.jsonl")).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(at), Some(b)) = (v["utc_ns"].as_i64(), v["bytes"].as_u64()) else {
                continue;
            };
            if v.get("mark").is_none() && (from_ns..to_ns).contains(&at) {
                bytes += b;
                segments += 1;
            }
        }
    }
    (bytes, segments)
}

fn utc_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Udp6 receive-buffer drops so far (the receiver's losses, not the sender's).
fn rcvbuf_errors() -> u64 {
    std::fs::read_to_string("/proc/net/snmp6")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Udp6RcvbufErrors"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The largest `max_late_us` over the daemon's stations, from `GET /channels`.
fn max_late_us(addr: &str) -> u64 {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(s, "GET /channels HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split("\"max_late_us\":")
        .skip(1)
        .filter_map(|t| {
            t.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    multicast_on_lo(group(0))?;
    let _ = std::fs::write("/proc/sys/net/core/rmem_max", "268435456");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("capacity.toml");
    if let Some(a) = &args.archive {
        let _ = std::fs::remove_dir_all(a);
        std::fs::create_dir_all(a).with_context(|| a.display().to_string())?;
    }
    write_config(&cfg, &args)?;

    // `groups`: one socket joined to every group, streams told apart by their source port.
    // `ports`: one socket per channel. Polled (non-blocking, drained every 0.5 ms), so the
    // sender never has to wake the receiver: on loopback that wake-up would be charged to the
    // daemon, which a NIC never costs it. Arrival times come from the kernel (stamped when the
    // datagram reaches the socket), so the receiver's own scheduling does not count against
    // the sender.
    let mut sockets: Vec<UdpSocket> = Vec::new();
    let ports: Vec<u16> = if args.layout == "ports" {
        (0..args.channels).map(|i| dest(&args, i).1).collect()
    } else if args.layout == "groups" {
        vec![args.port]
    } else {
        bail!("--layout groups|ports");
    };
    let groups: Vec<Ipv6Addr> = if args.layout == "ports" {
        vec![group(0)]
    } else {
        (0..args.channels).map(group).collect()
    };
    let rcvbuf = if args.layout == "ports" {
        4 << 20
    } else {
        256 << 20
    };
    for port in ports {
        sockets.push(stamped_socket(port, &groups, rcvbuf)?);
    }

    let (daemon, line) = Daemon::start(&args.headend, &cfg, "warn")?;
    let pid = daemon.0.id().to_string();

    let mut buf = vec![0u8; 65536];
    let warm_end = Instant::now() + Duration::from_secs(args.warmup);
    while Instant::now() < warm_end {
        for socket in &sockets {
            while socket.recv_from(&mut buf).is_ok() {}
        }
    }
    let cpu0 = cpu_seconds(&pid)?;
    let self0 = cpu_seconds("self")?;
    let utc0 = utc_ns();
    let drops0 = rcvbuf_errors();
    let started = Instant::now();
    let end = started + Duration::from_secs(args.secs);
    let mut streams: HashMap<(usize, u16), Stream> = HashMap::new();
    let nominal_us = DATAGRAM as f64 * 8.0 / args.muxrate as f64 * 1e6;
    let mut bad_size = 0u64;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut k = 0;
    let mut empty = 0;
    while Instant::now() < end {
        k = (k + 1) % fds.len();
        let Some((n, port, now)) = recv_stamped(fds[k], &mut buf, &mut cmsg) else {
            // Every socket drained: sleep a little rather than wait on a socket, so the
            // sender never pays for waking us (the kernel stamps arrival times anyway).
            empty += 1;
            if empty >= fds.len() {
                empty = 0;
                std::thread::sleep(Duration::from_micros(500));
            }
            continue;
        };
        empty = 0;
        let st = streams.entry((k, port)).or_insert_with(Stream::new);
        if n != DATAGRAM {
            bad_size += 1;
        }
        if let Some(last) = st.last {
            let dev = ((now - last) as f64 / 1e3 - nominal_us).abs() as u64 / BUCKET_US;
            st.hist[(dev as usize).min(BUCKETS)] += 1;
        }
        st.last = Some(now);
        st.datagrams += 1;
        for p in buf[..n].chunks_exact(188) {
            let pid = usize::from(u16::from_be_bytes([p[1], p[2]]) & 0x1FFF);
            if pid == 0x1FFF || p[3] & 0x10 == 0 {
                continue;
            }
            let cc = p[3] & 0x0F;
            let last = st.cc[pid];
            if last != 0xFF && cc != (last + 1) & 0x0F {
                st.cc_errors += 1;
            }
            st.cc[pid] = cc;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pid)? - cpu0;
    let utc1 = utc_ns();
    let engine_late = max_late_us(
        line.trim_start_matches("on air; http://")
            .trim_end_matches("/channels\n"),
    );
    let self_cpu = cpu_seconds("self")? - self0;
    let drops = rcvbuf_errors() - drops0;
    drop(daemon);

    let expected = secs * args.muxrate as f64 / (DATAGRAM as f64 * 8.0);
    let p99 = |h: &[u32]| {
        let total: u64 = h.iter().map(|&c| u64::from(c)).sum();
        let mut seen = 0u64;
        h.iter()
            .position(|&c| {
                seen += u64::from(c);
                seen * 100 >= total * 99
            })
            .unwrap_or(0) as u64
            * BUCKET_US
    };
    let mut pooled = vec![0u32; BUCKETS + 1];
    let mut worst_p99 = 0;
    let mut datagrams = 0;
    let mut cc_errors = 0;
    let mut min_ratio = f64::MAX;
    for st in streams.values() {
        for (a, b) in pooled.iter_mut().zip(&st.hist) {
            *a += b;
        }
        worst_p99 = worst_p99.max(p99(&st.hist));
        datagrams += st.datagrams;
        cc_errors += st.cc_errors;
        min_ratio = min_ratio.min(st.datagrams as f64 / expected);
    }
    let gbps = datagrams as f64 * DATAGRAM as f64 * 8.0 / secs / 1e9;
    println!(
        "channels {} ({} layout, {} engine threads, streams received {}), muxrate {} b/s, window {secs:.1} s",
        args.channels,
        args.layout,
        args.threads,
        streams.len(),
        args.muxrate
    );
    println!(
        "datagrams {datagrams} ({:.0}/s, {gbps:.2} Gbit/s), least-served stream got {:.2}% of nominal, wrong-size {bad_size}",
        datagrams as f64 / secs,
        min_ratio * 100.0
    );
    println!(
        "inter-arrival off nominal: p99 {} µs pooled, worst channel p99 {worst_p99} µs; CC errors {cc_errors}; receiver buffer drops {drops}",
        p99(&pooled)
    );
    println!("engine: largest lateness of a datagram {engine_late} µs, pacer stalls (re-anchors) see /channels");
    if let Some(a) = &args.archive {
        // Segments that began in the window (the last of each channel ends when the daemon
        // stops, a little after it).
        let (bytes, segments) = archived_bytes(a, utc0, utc1);
        println!(
            "archive: {segments} segments that began in the window, {:.1} MB/s ({:.2} Gbit/s) recorded",
            bytes as f64 / secs / 1e6,
            bytes as f64 * 8.0 / secs / 1e9
        );
    }
    println!(
        "headend CPU {cpu:.2} s = {:.2} cores; receiver CPU {self_cpu:.2} s = {:.2} cores",
        cpu / secs,
        self_cpu / secs
    );
    println!(
        "| {} | {} | {} | {gbps:.2} | {} | {worst_p99} | {cc_errors} | {drops} | {:.2} | {:.2} |",
        args.channels,
        args.layout,
        args.threads,
        p99(&pooled),
        cpu / secs,
        self_cpu / secs
    );
    std::io::stdout().flush()?;
    Ok(())
}
