//! `hls_fanout`: an HLS load client that behaves like players (`scripts/bench-hls`).
//!
//! Each of `--clients` players keeps one HTTP/1.1 connection, fetches `--playlist` (a VOD
//! playlist: a programme's catch-up) and then its segments in order, as a player does: the
//! first `--buffer` segments at once, then each when the one `--buffer` places before it has
//! played out (real time). Playback starts once the first `--buffer` segments are in; a
//! segment that arrives after its play-out time is a stall (the player waits, its clock
//! slips by the wait). At the playlist's end it starts over. Players start at staggered
//! segments so that the load is even. After `--warmup` seconds it measures for `--secs`:
//! bytes, segments, stalls, players that stalled, its own CPU and, with `--pid`, the
//! server's. It prints a summary and then one line of JSON, last.
//!
//! ```sh
//! cargo run --release -p benches --bin hls_fanout -- --clients 200 \
//!     --playlist 'http://127.0.0.1:18080/hls/c1/live.m3u8?from=1796515200&to=1796515260'
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use benches::live::cpu_seconds;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "HLS load client: players of a VOD playlist on loopback")]
struct Args {
    /// The playlist, `http://HOST:PORT/PATH?QUERY` (loopback only); its segment URIs are
    /// paths on the same server.
    #[arg(long)]
    playlist: String,
    /// Concurrent players.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// Seconds between the last player started and the window.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Segments a player keeps ahead of what it plays.
    #[arg(long, default_value_t = 3)]
    buffer: usize,
    /// Also report the CPU time of this process (the server) in the window.
    #[arg(long)]
    pid: Option<u32>,
    /// Players started per 100 ms.
    #[arg(long, default_value_t = 50)]
    ramp: usize,
}

/// One player's counters (one thread touches them; atomics because tasks must be `Send`).
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    segments: AtomicU64,
    /// Segments that came after their play-out time.
    stalls: AtomicU64,
    /// Time spent waiting for them (µs).
    stalled_us: AtomicU64,
    failures: AtomicU64,
}

struct Server {
    addr: SocketAddr,
    authority: String,
    playlist_path: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.clients > 0 && args.ramp > 0 && args.buffer > 0 && args.secs > 0.0);
    let server = Arc::new(server(&args.playlist)?);
    let pid = args.pid.map(|p| p.to_string());
    // The playlist once, to know its segments and stagger the players over them.
    let mut conn = Conn::open(&server).await?;
    let segments = playlist(&conn.get(&server, &server.playlist_path).await?)?;
    ensure!(
        segments.len() > args.buffer,
        "{}: {} segments, fewer than --buffer + 1",
        args.playlist,
        segments.len()
    );
    drop(conn);
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..args.clients).map(|_| Counters::default()).collect());
    for i in 0..args.clients {
        let (server, counters) = (server.clone(), counters.clone());
        let first = i * 7 % segments.len();
        let buffer = args.buffer;
        tokio::spawn(async move { player(&server, &counters[i], first, buffer).await });
        if (i + 1) % args.ramp == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let take = |c: &[Counters]| -> [u64; 5] {
        let sum = |f: fn(&Counters) -> &AtomicU64| {
            c.iter().map(|x| f(x).load(Ordering::Relaxed)).sum::<u64>()
        };
        [
            sum(|x| &x.bytes),
            sum(|x| &x.segments),
            sum(|x| &x.stalls),
            sum(|x| &x.stalled_us),
            sum(|x| &x.failures),
        ]
    };
    let stalls_before: Vec<u64> = counters
        .iter()
        .map(|c| c.stalls.load(Ordering::Relaxed))
        .collect();
    let (t0, a, self0) = (Instant::now(), take(&counters), cpu_seconds("self")?);
    let server0 = pid.as_deref().map(cpu_seconds).transpose()?;
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    let (secs, b, self1) = (
        t0.elapsed().as_secs_f64(),
        take(&counters),
        cpu_seconds("self")?,
    );
    let server1 = pid.as_deref().map(cpu_seconds).transpose()?;
    let stalled_players = counters
        .iter()
        .zip(&stalls_before)
        .filter(|(c, s)| c.stalls.load(Ordering::Relaxed) > **s)
        .count();
    let d: Vec<u64> = b.iter().zip(a).map(|(b, a)| b - a).collect();
    let gbps = d[0] as f64 * 8.0 / secs / 1e9;
    let client_cpu = self1 - self0;
    let server_cpu = server0.zip(server1).map(|(a, b)| b - a);
    let server_cores = server_cpu.map(|c| c / secs);
    let per_gbps = server_cores.filter(|_| gbps > 0.0).map(|c| c / gbps);
    println!(
        "{} players, {} segments in {secs:.1} s, {gbps:.3} Gbit/s; {} stalls ({:.1} s waited) \
         in {stalled_players} players; {} failures; client CPU {client_cpu:.2} s{}",
        args.clients,
        d[1],
        d[2],
        d[3] as f64 / 1e6,
        d[4],
        server_cores.map_or(String::new(), |c| format!(
            "; server {c:.3} cores, {:.3} cores per Gbit/s",
            per_gbps.unwrap_or(f64::NAN)
        )),
    );
    let num = |x: Option<f64>| {
        x.filter(|x| x.is_finite())
            .map_or("null".into(), |x| format!("{x:.4}"))
    };
    println!(
        "{{\"clients\":{},\"secs\":{secs:.3},\"segments\":{},\"aggregate_gbps\":{gbps:.4},\
         \"stalls\":{},\"stalled_s\":{:.3},\"stalled_players\":{stalled_players},\"failures\":{},\
         \"client_cpu_s\":{client_cpu:.3},\"server_cpu_s\":{},\"server_cores\":{},\"cores_per_gbps\":{}}}",
        args.clients,
        d[1],
        d[2],
        d[3] as f64 / 1e6,
        d[4],
        num(server_cpu),
        num(server_cores),
        num(per_gbps),
    );
    Ok(())
}

/// A player, forever: the playlist, then its segments at real-time pace from segment
/// `first`, starting over at the end; a failure costs a new connection after 100 ms.
async fn player(server: &Server, c: &Counters, first: usize, buffer: usize) {
    let mut first = Some(first);
    loop {
        if let Err(e) = play(server, c, first.take().unwrap_or(0), buffer).await {
            c.failures.fetch_add(1, Ordering::Relaxed);
            if c.failures.load(Ordering::Relaxed) <= 1 {
                eprintln!("hls_fanout: {e:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn play(server: &Server, c: &Counters, first: usize, buffer: usize) -> anyhow::Result<()> {
    let mut conn = Conn::open(server).await?;
    let body = conn.get(server, &server.playlist_path).await?;
    let segments = playlist(&body)?;
    let segments = segments.get(first..).unwrap_or_default();
    // When segment i plays out, once playback has started (None before).
    let mut clock: Option<Instant> = None;
    let mut starts = Vec::with_capacity(segments.len());
    let mut at = 0.0;
    for (_, d) in segments {
        starts.push(at);
        at += d;
    }
    for (i, (uri, _)) in segments.iter().enumerate() {
        // Keep `buffer` segments ahead: fetch i once segment i - buffer has played out.
        if let (Some(t), Some(k)) = (clock, i.checked_sub(buffer)) {
            let due = t + Duration::from_secs_f64(starts[k + 1]);
            tokio::time::sleep_until(due.into()).await;
        }
        let data = conn.get(server, uri).await?;
        c.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        c.segments.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        match clock {
            None if i + 1 >= buffer => {
                clock = Some(now - Duration::from_secs_f64(starts[i + 1 - buffer]))
            }
            Some(t) => {
                let play_at = t + Duration::from_secs_f64(starts[i]);
                if now > play_at {
                    let late = now - play_at;
                    c.stalls.fetch_add(1, Ordering::Relaxed);
                    c.stalled_us
                        .fetch_add(late.as_micros() as u64, Ordering::Relaxed);
                    clock = Some(t + late);
                }
            }
            None => {}
        }
    }
    Ok(())
}

/// The segments of a media playlist: (URI, duration s).
fn playlist(body: &[u8]) -> anyhow::Result<Vec<(String, f64)>> {
    let text = std::str::from_utf8(body).context("playlist: not UTF-8")?;
    ensure!(text.starts_with("#EXTM3U"), "not a playlist: {text:.200}");
    let mut out = Vec::new();
    let mut duration = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d = d.split(',').next().unwrap_or_default();
            duration = Some(d.parse::<f64>().with_context(|| format!("`{line}`"))?);
        } else if !line.is_empty() && !line.starts_with('#') {
            let d = duration
                .take()
                .with_context(|| format!("`{line}` without #EXTINF"))?;
            ensure!(
                line.starts_with('/'),
                "`{line}`: segment URIs are paths here"
            );
            out.push((line.to_owned(), d));
        }
    }
    Ok(out)
}

fn server(url: &str) -> anyhow::Result<Server> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs"))?;
    let i = rest.find('/').with_context(|| format!("{url}: no path"))?;
    let (authority, path) = rest.split_at(i);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("{url}: resolving {authority}"))?
        .next()
        .with_context(|| format!("{url}: {authority} has no address"))?;
    // Loopback only: this tool must never load another machine.
    ensure!(addr.ip().is_loopback(), "{url}: not a loopback address");
    Ok(Server {
        addr,
        authority: authority.to_owned(),
        playlist_path: path.to_owned(),
    })
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(server: &Server) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(server.addr).await.context("connect")?;
        Ok(Conn {
            stream: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    /// `GET path`: the body of a 200 answer with a `Content-Length`.
    async fn get(&mut self, server: &Server, path: &str) -> anyhow::Result<Vec<u8>> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hls_fanout\r\n\r\n",
            server.authority
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line.trim_end().to_owned();
        ensure!(
            status.starts_with("HTTP/1.1 200"),
            "{path}: `{status}` (connection closed?)"
        );
        let mut length = None;
        loop {
            line.clear();
            ensure!(
                self.stream.read_line(&mut line).await? > 0,
                "{path}: EOF in the header"
            );
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.trim().parse::<usize>()?);
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("{path}: chunked answers are not read here");
                }
            }
        }
        let length = length.with_context(|| format!("{path}: no Content-Length"))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(body)
    }
}
