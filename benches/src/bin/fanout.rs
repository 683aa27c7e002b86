//! `fanout`: an HTTP fan-out load client (`scripts/bench-fanout`).
//!
//! Opens `--clients` HTTP/1.0 GETs on loopback (gradually, `--ramp` per 100 ms), spread
//! round-robin over the `--url`s, and reads each body into a reused 64 KiB buffer, counting
//! bytes. After `--warmup` seconds it measures for `--secs`: each client's rate in the window,
//! how many keep up (at least 97% of `--rate-bps`), the aggregate, its own CPU time and, with
//! `--pid`, the CPU time of that process (the server). A body that ends (a static file) or a
//! connection that fails is reopened after 100 ms and counted on. It prints a human summary
//! and then one line of JSON, last.
//!
//! ```sh
//! cargo run --release -p benches --bin fanout -- \
//!     --url http://127.0.0.1:18080/channels/c1.ts --clients 500 --secs 20 --rate-bps 8M
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use playout::units::Bitrate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clock ticks per second of `/proc/*/stat` times: `getconf CLK_TCK` is 100 on Linux.
const CLK_TCK: f64 = 100.0;
/// Each client's read buffer.
const READ_BUF: usize = 64 * 1024;
/// A client keeps up if it gets at least this share of `--rate-bps`.
const KEEP_UP: f64 = 0.97;
/// Pause before reopening a connection that ended or failed.
const RECONNECT: Duration = Duration::from_millis(100);
/// Connection errors printed to stderr; the rest are only counted.
const ERRORS_SHOWN: usize = 10;

#[derive(Parser)]
#[command(about = "HTTP fan-out load client: many slow readers of live streams on loopback")]
struct Args {
    /// Stream URL `http://HOST:PORT/PATH` (loopback only); repeat it or separate with commas:
    /// clients are spread round-robin over the URLs.
    #[arg(long = "url", required = true, value_delimiter = ',')]
    urls: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// Seconds between the last connection opened and the window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// The stream's rate (`8000000`, `8M`, `500k`, `8 Mbit/s`): the bar for keeping up.
    #[arg(long, default_value = "8M", value_parser = parse_rate)]
    rate_bps: u64,
    /// Also report the CPU time of this process (the server) in the window.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections opened per 100 ms.
    #[arg(long, default_value_t = 50)]
    ramp: usize,
}

/// Where a client connects, and its request.
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

/// One client's counters (atomics, as tasks must be `Send`; one thread touches them).
#[derive(Default)]
struct Counters {
    /// Body bytes received, over every connection.
    bytes: AtomicU64,
    /// Responses with status 200.
    connects: AtomicU64,
    /// Connections that failed (connect, status, read errors).
    failures: AtomicU64,
    /// Bodies that ended (EOF).
    ends: AtomicU64,
    /// A body is being read now.
    open: AtomicBool,
}

/// Everything counted at one instant.
struct Snapshot {
    at: Instant,
    bytes: Vec<u64>,
    connects: u64,
    failures: u64,
    ends: u64,
    self_ticks: u64,
    pid_ticks: Option<u64>,
    /// Busy ticks of the whole machine, every CPU (`/proc/stat`).
    machine_ticks: u64,
}

static ERRORS_PRINTED: AtomicUsize = AtomicUsize::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.secs > 0.0, "--secs must be positive");
    ensure!(args.ramp > 0, "--ramp must be at least 1");
    let targets = args
        .urls
        .iter()
        .map(|u| target(u).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pid = args.pid.map(|p| p.to_string());
    if let Some(pid) = &pid {
        cpu_ticks(pid).with_context(|| format!("--pid {pid}"))?;
    }

    let counters: Arc<Vec<Counters>> =
        Arc::new((0..args.clients).map(|_| Counters::default()).collect());
    for i in 0..args.clients {
        let target = targets[i % targets.len()].clone();
        let counters = counters.clone();
        tokio::spawn(async move { client(&target, &counters[i]).await });
        if (i + 1) % args.ramp == 0 && i + 1 < args.clients {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let start = snapshot(&counters, pid.as_deref())?;
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    let end = snapshot(&counters, pid.as_deref())?;
    report(&args, &counters, &start, &end);
    Ok(())
}

/// Parses a loopback `http://HOST:PORT/PATH` into an address and an HTTP/1.0 request.
fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("{url}: resolving {authority}"))?
        .next()
        .with_context(|| format!("{url}: {authority} has no address"))?;
    // Loopback only: this tool must never load another machine.
    ensure!(
        addr.ip().is_loopback(),
        "{url}: {} is not a loopback address",
        addr.ip()
    );
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: fanout\r\n\r\n");
    Ok(Target {
        addr,
        request: request.into_bytes(),
    })
}

/// One client, forever: a connection at a time, reopened when it ends or fails.
async fn client(target: &Target, c: &Counters) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match session(target, &mut buf, c).await {
            Ok(()) => c.ends.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if ERRORS_PRINTED.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                    eprintln!("fanout: {}: {e:#}", target.addr);
                }
                c.failures.fetch_add(1, Ordering::Relaxed)
            }
        };
        c.open.store(false, Ordering::Relaxed);
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One connection: the request, a 200 header, then the body until EOF.
async fn session(target: &Target, buf: &mut [u8], c: &Counters) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(target.addr).await.context("connect")?;
    stream
        .write_all(&target.request)
        .await
        .context("sending the request")?;
    let mut filled = 0;
    let body_at = loop {
        ensure!(filled < buf.len(), "response header over 64 KiB");
        let n = stream
            .read(&mut buf[filled..])
            .await
            .context("reading the header")?;
        ensure!(n > 0, "connection closed in the response header");
        filled += n;
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let status_line = buf[..body_at].split(|&b| b == b'\r').next().unwrap_or(&[]);
    let status = String::from_utf8_lossy(status_line);
    let mut words = status.split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) || words.next() != Some("200") {
        bail!("response `{status}`");
    }
    c.connects.fetch_add(1, Ordering::Relaxed);
    c.open.store(true, Ordering::Relaxed);
    c.bytes
        .fetch_add((filled - body_at) as u64, Ordering::Relaxed);
    loop {
        let n = stream.read(buf).await.context("reading the body")?;
        if n == 0 {
            return Ok(());
        }
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn snapshot(counters: &[Counters], pid: Option<&str>) -> anyhow::Result<Snapshot> {
    let sum = |f: fn(&Counters) -> &AtomicU64| {
        counters
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    Ok(Snapshot {
        at: Instant::now(),
        bytes: counters
            .iter()
            .map(|c| c.bytes.load(Ordering::Relaxed))
            .collect(),
        connects: sum(|c| &c.connects),
        failures: sum(|c| &c.failures),
        ends: sum(|c| &c.ends),
        self_ticks: cpu_ticks("self")?,
        pid_ticks: match pid {
            Some(pid) => Some(cpu_ticks(pid).with_context(|| format!("--pid {pid}"))?),
            None => None,
        },
        machine_ticks: machine_busy_ticks()?,
    })
}

/// Busy clock ticks of every CPU since boot: user, nice, system, irq, softirq and steal of the
/// `cpu` line of `/proc/stat` (guest time is already in user). Catches what no process is
/// charged for, such as softirq work in ksoftirqd.
fn machine_busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat: no `cpu` line")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("/proc/stat: `cpu` line")?;
    ensure!(ticks.len() >= 8, "/proc/stat: short `cpu` line");
    // user nice system idle iowait irq softirq steal
    Ok(ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7])
}

/// utime + stime of a whole process (every thread), in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (state) comes first, so utime (14) and stime (15) are at 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("{path}: no `)`"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("{path}: too few fields"))?
            .parse::<u64>()
            .with_context(|| format!("{path}: field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

fn report(args: &Args, counters: &[Counters], start: &Snapshot, end: &Snapshot) {
    let secs = end.at.duration_since(start.at).as_secs_f64();
    let mut rates: Vec<f64> = end
        .bytes
        .iter()
        .zip(&start.bytes)
        .map(|(e, s)| (e - s) as f64 * 8.0 / secs)
        .collect();
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let keeping_up = rates
        .iter()
        .filter(|&&r| r >= KEEP_UP * args.rate_bps as f64)
        .count();
    let connected = counters
        .iter()
        .filter(|c| c.open.load(Ordering::Relaxed))
        .count();
    let mbps = |r: f64| r / 1e6;
    let min = mbps(rates[0]);
    let p1 = mbps(rates[(n - 1) / 100]);
    let median = mbps(rates[n / 2]);
    let aggregate_gbps = rates.iter().sum::<f64>() / 1e9;
    let client_cpu_s = (end.self_ticks - start.self_ticks) as f64 / CLK_TCK;
    let machine_cores = (end.machine_ticks - start.machine_ticks) as f64 / CLK_TCK / secs;
    let reconnects = end.connects - start.connects;
    let failures = end.failures - start.failures;
    let ends = end.ends - start.ends;
    let server = start
        .pid_ticks
        .zip(end.pid_ticks)
        .map(|(s, e)| (e - s) as f64 / CLK_TCK);

    println!(
        "{connected}/{n} clients connected, {keeping_up} keeping up (>= {:.2} Mbit/s); \
         client Mbit/s min {min:.3} p1 {p1:.3} median {median:.3}; aggregate {aggregate_gbps:.3} Gbit/s \
         over {secs:.2} s; in the window: {reconnects} (re)connects, {ends} bodies ended, \
         {failures} failures; client CPU {client_cpu_s:.2} s ({:.2} cores); machine busy \
         {machine_cores:.2} cores of {}",
        KEEP_UP * args.rate_bps as f64 / 1e6,
        client_cpu_s / secs,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let server_json = match server {
        Some(cpu) => {
            let cores = cpu / secs;
            let per_gbps = if aggregate_gbps > 0.0 {
                cores / aggregate_gbps
            } else {
                f64::NAN
            };
            println!(
                "server pid {}: CPU {cpu:.2} s = {cores:.3} cores, {per_gbps:.3} cores per Gbit/s",
                args.pid.unwrap_or_default()
            );
            format!(
                "\"server_pid\":{},\"server_cpu_s\":{cpu:.3},\"server_cores\":{cores:.4},\"cores_per_gbps\":{}",
                args.pid.unwrap_or_default(),
                json_num(per_gbps, 4)
            )
        }
        None => "\"server_pid\":null,\"server_cpu_s\":null,\"server_cores\":null,\"cores_per_gbps\":null"
            .to_owned(),
    };
    println!(
        "{{\"clients\":{n},\"connected\":{connected},\"keeping_up\":{keeping_up},\
         \"rate_bps\":{},\"secs\":{secs:.3},\"min_mbps\":{min:.4},\"p1_mbps\":{p1:.4},\
         \"median_mbps\":{median:.4},\"aggregate_gbps\":{aggregate_gbps:.4},\
         \"reconnects\":{reconnects},\"ends\":{ends},\"failures\":{failures},\
         \"client_cpu_s\":{client_cpu_s:.3},\"machine_busy_cores\":{machine_cores:.3},{server_json}}}",
        args.rate_bps
    );
}

/// A JSON number, or `null` for NaN and infinities.
fn json_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".to_owned()
    }
}

/// `--rate-bps`: playout's [`Bitrate`] parser (the config's), which must be positive.
fn parse_rate(text: &str) -> Result<u64, String> {
    match text.parse::<Bitrate>() {
        Ok(rate) if rate.bps() > 0 => Ok(rate.bps()),
        Ok(rate) => Err(format!("{rate}: must be positive")),
        Err(e) => Err(e.to_string()),
    }
}
