//! CPU of live relaying (issue #14): N channels, each relaying a main UDP input with a hot
//! backup (both received all the time) to a UDP output, fed at `--rate` each by this program
//! (a CBR stream ffmpeg makes once, sent as 7-packet datagrams at its rate, looped); then the
//! same N relays done by N `ffmpeg -i udp://… -c copy -f mpegts udp://…` processes (no
//! backup), fed the same way. For each: CPU (utime + stime from /proc) over the measuring
//! window, per channel, and for headend how many inputs its `/channels` calls good. Outputs go
//! to sockets of this program that drain them. Prints a markdown table.
//!
//! `cargo run --release -p benches --bin relay -- --channels 20`

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::live::{cbr_source, cpu_seconds, recv_stamped, stamped_socket, Daemon};
use clap::Parser;
use std::os::fd::AsRawFd;

#[derive(Parser)]
struct Args {
    /// Relayed channels.
    #[arg(long, default_value_t = 20)]
    channels: usize,
    /// Each input's rate, bits/s.
    #[arg(long, default_value_t = 8_000_000)]
    rate: u64,
    /// Seconds measured (after 5 s of warm-up).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
}

/// Sends `data` at `rate` to every port, from one thread, until `stop`.
fn feed(data: Arc<Vec<u8>>, rate: u64, ports: Vec<u16>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let dgram = 7 * 188;
        let per = Duration::from_secs_f64(dgram as f64 * 8.0 / rate as f64);
        let n = data.len() / dgram;
        let start = Instant::now();
        let mut k = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let off = (k as usize % n) * dgram;
            for &p in &ports {
                let _ = s.send_to(&data[off..off + dgram], ("127.0.0.1", p));
            }
            k += 1;
            if let Some(w) = (per * k).checked_sub(start.elapsed()) {
                std::thread::sleep(w);
            }
        }
    });
}

/// Sockets on fresh IPv6 loopback ports with kernel receive stamps, drained by a thread until
/// `stop`; their ports, and the thread, which returns each socket's inter-arrival times (ns)
/// from `measure_after` on.
fn sinks(
    n: usize,
    stop: Arc<AtomicBool>,
    measure_after: Instant,
) -> (Vec<u16>, std::thread::JoinHandle<Vec<Vec<u64>>>) {
    let ports = free_ports(n);
    let socks: Vec<UdpSocket> = ports
        .iter()
        .map(|p| stamped_socket(*p, &[], 4 << 20).expect("sink"))
        .collect();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let mut last: Vec<Option<u64>> = vec![None; socks.len()];
        let mut gaps: Vec<Vec<u64>> = vec![Vec::new(); socks.len()];
        while !stop.load(Ordering::Relaxed) {
            let mut any = false;
            let measuring = Instant::now() >= measure_after;
            for (k, s) in socks.iter().enumerate() {
                while let Some((_, _, t)) = recv_stamped(s.as_raw_fd(), &mut buf, &mut cmsg) {
                    any = true;
                    if let (true, Some(l)) = (measuring, last[k]) {
                        gaps[k].push(t.saturating_sub(l));
                    }
                    last[k] = Some(t);
                }
            }
            if !any {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        gaps
    });
    (ports, t)
}

/// The worst channel's p99 inter-arrival, ms.
fn worst_p99(gaps: Vec<Vec<u64>>) -> f64 {
    gaps.into_iter()
        .filter(|g| !g.is_empty())
        .map(|mut g| {
            g.sort_unstable();
            g[(g.len() - 1) * 99 / 100] as f64 / 1e6
        })
        .fold(0.0, f64::max)
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("[::]:0").expect("port"))
        .collect();
    held.iter()
        .map(|s| s.local_addr().expect("addr").port())
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&bench)?;
    let data = Arc::new(cbr_source(&bench, args.rate)?);
    let slate = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/media/c.ts")
        .canonicalize()?;
    let n = args.channels;
    let mut rows = Vec::new();

    // headend: main + backup per channel.
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (outs, drain) = sinks(n, stop.clone(), Instant::now() + Duration::from_secs(5));
        let ins = free_ports(2 * n);
        let http = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cfg = format!("[http]\nlisten = \"127.0.0.1:{http}\"\n");
        for i in 0..n {
            cfg.push_str(&format!(
                "\n[[channel]]\nid = \"r{k}\"\nservice_id = {k}\nname = \"R{k}\"\nmuxrate = \"{mux}\"\n\
                 playlist = [{slate:?}]\n[[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{m}\"\n\
                 [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{b}\"\n\
                 [[channel.output]]\nurl = \"udp://[::1]:{o}\"\n",
                k = i + 1,
                mux = args.rate * 11 / 10,
                slate = slate.display().to_string(),
                m = ins[2 * i],
                b = ins[2 * i + 1],
                o = outs[i],
            ));
        }
        let path = bench.join("relay.toml");
        std::fs::write(&path, cfg)?;
        let (daemon, _) = Daemon::start(&args.headend, &path, "error")?;
        let pid = daemon.0.id().to_string();
        feed(data.clone(), args.rate, ins, stop.clone());
        std::thread::sleep(Duration::from_secs(5));
        let c0 = cpu_seconds(&pid)?;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(args.secs));
        let cores = (cpu_seconds(&pid)? - c0) / t0.elapsed().as_secs_f64();
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{http}/channels")])
            .output()?;
        let channels: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let relays: Vec<&serde_json::Value> = channels
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["status"]["relays"][0])
            .collect();
        let good = relays
            .iter()
            .flat_map(|r| r["inputs"].as_array().into_iter().flatten())
            .filter(|i| i["health"] == "good")
            .count();
        let on_main = relays.iter().filter(|r| r["active"] == "main").count();
        stop.store(true, Ordering::Relaxed);
        drop(daemon);
        let p99 = worst_p99(drain.join().map_err(|_| anyhow::anyhow!("drain"))?);
        rows.push(format!(
            "| headend (main + hot backup) | {n} | {:.2} | {:.2} | {p99:.2} | {good}/{} inputs good, {on_main} on their main |",
            cores,
            cores * 100.0 / n as f64,
            2 * n
        ));
    }
    std::thread::sleep(Duration::from_secs(1));

    // ffmpeg -c copy: one process per channel, no backup.
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (outs, drain) = sinks(n, stop.clone(), Instant::now() + Duration::from_secs(5));
        let ins = free_ports(n);
        let mut procs = Vec::new();
        for i in 0..n {
            procs.push(
                Command::new("ffmpeg")
                    .args(["-nostdin", "-v", "error", "-f", "mpegts", "-i"])
                    .arg(format!(
                        "udp://127.0.0.1:{}?fifo_size=100000&overrun_nonfatal=1",
                        ins[i]
                    ))
                    .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
                    .arg(format!("udp://[::1]:{}?pkt_size=1316", outs[i]))
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        feed(data.clone(), args.rate, ins, stop.clone());
        std::thread::sleep(Duration::from_secs(5));
        let pids: Vec<String> = procs.iter().map(|p| p.id().to_string()).collect();
        let c0: f64 = pids.iter().map(|p| cpu_seconds(p).unwrap_or(0.0)).sum();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(args.secs));
        let c1: f64 = pids.iter().map(|p| cpu_seconds(p).unwrap_or(0.0)).sum();
        let cores = (c1 - c0) / t0.elapsed().as_secs_f64();
        let mut alive = 0;
        for p in &mut procs {
            if p.try_wait().ok().flatten().is_none() {
                alive += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for p in &mut procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        let p99 = worst_p99(drain.join().map_err(|_| anyhow::anyhow!("drain"))?);
        rows.push(format!(
            "| ffmpeg -c copy (no backup) | {n} | {:.2} | {:.2} | {p99:.2} | {alive}/{n} processes running |",
            cores,
            cores * 100.0 / n as f64,
        ));
    }
    println!(
        "| relay | channels at {} Mbit/s | cores | per channel (% of a core) | worst channel's output inter-arrival p99, ms | check |",
        args.rate / 1_000_000
    );
    println!("|---|---:|---:|---:|---:|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
