//! `takeover`: the fleet's takeover time over many kills (`scripts/bench-takeover`).
//!
//! One etcd (Debian's `etcd-server`, with `--etcd-fast` a 50 ms heartbeat and 500 ms election
//! timeout so that 1 s leases hold), `--nodes` head-end nodes sharing `--channels` channels
//! (each to its own IPv6 group on `lo`), and a receiver with kernel timestamps that tells the
//! senders apart by source port. Then `--kills` times: wait until every channel is sent from
//! where placement puts it, kill -9 the node sending the most, and measure on each of its
//! channels the silence between the dead node's last datagram and the next node's first;
//! start the node again. Prints each kill and then the distribution (p50, p99, max), and a
//! JSON line last.
//!
//! ```sh
//! cargo build --release -p headend -p benches --bin headend --bin takeover
//! target/release/takeover --headend target/release/headend --kills 50 --lease 1 --etcd-fast
//! ```

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use benches::live::{multicast_on_lo, recv_stamped, stamped_socket, Daemon};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The headend binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 20)]
    channels: usize,
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// The nodes' lease, seconds.
    #[arg(long, default_value_t = 1)]
    lease: u64,
    /// etcd with a 50 ms heartbeat and 500 ms election timeout (leases from 1 s); without it
    /// etcd's defaults (leases from 2 s).
    #[arg(long)]
    etcd_fast: bool,
    /// Stop the victim with SIGSTOP instead of killing it (a host lost without its
    /// connections ending: the takeover waits for its lease); it is killed once measured.
    #[arg(long)]
    freeze: bool,
    /// `[fleet] standbys`: 1 (each channel warm on the node a takeover gives it to), 0 (no
    /// warm standby: a takeover is by a node that keeps the channel dormant).
    #[arg(long, default_value_t = 1)]
    standbys: usize,
    /// First UDP port (channel k on `[ff15::7a:k]:port+k`).
    #[arg(long, default_value_t = 28_000)]
    port: u16,
}

/// What the receiver saw of each channel: (arrival ns, sender's port), in order.
type Seen = Arc<Mutex<Vec<Vec<(u64, u16)>>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.nodes >= 2, "--nodes: at least 2");
    let dir = std::env::temp_dir().join(format!("takeover-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let group = |k: usize| -> Ipv6Addr { format!("ff15::7a:{k:x}").parse().expect("a group") };
    multicast_on_lo(group(0))?;
    let free = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (client, peer) = (free()?, free()?);
    let _etcd = Etcd::start(&dir, client, peer, args.etcd_fast)?;
    // The receiver.
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); args.channels]));
    let stop = Arc::new(AtomicBool::new(false));
    let sockets = (0..args.channels)
        .map(|k| stamped_socket(args.port + k as u16, &[group(k)], 1 << 20))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let receiver = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            while !stop.load(Ordering::Relaxed) {
                let mut any = false;
                for (k, s) in sockets.iter().enumerate() {
                    while let Some((_, port, at)) = recv_stamped(s.as_raw_fd(), &mut buf, &mut cmsg)
                    {
                        seen.lock().expect("lock")[k].push((at, port));
                        any = true;
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        })
    };
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("he-{i:02}")).collect();
    let https: Vec<u16> = names
        .iter()
        .map(|_| free())
        .collect::<anyhow::Result<_>>()?;
    let configs: Vec<PathBuf> = names
        .iter()
        .zip(&https)
        .map(|(n, h)| config(&dir, n, *h, client, &args, group))
        .collect::<anyhow::Result<_>>()?;
    let mut nodes: Vec<Option<Daemon>> = configs
        .iter()
        .map(|c| Daemon::start(&args.headend, c, "error").map(|d| Some(d.0)))
        .collect::<anyhow::Result<_>>()?;
    let mut silences: Vec<f64> = Vec::new();
    let mut worst_per_kill: Vec<f64> = Vec::new();
    for kill in 0..args.kills {
        let alive = nodes.iter().position(Option::is_some).context("no node")?;
        let owners = settled(https[alive], args.nodes, args.channels)?;
        std::thread::sleep(Duration::from_millis(500));
        let mut load: HashMap<&str, usize> = HashMap::new();
        for o in owners.values() {
            *load.entry(o.as_str()).or_default() += 1;
        }
        let (victim, _) = names
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| load.get(n.as_str()).copied().unwrap_or(0))
            .context("no node")?;
        let theirs: Vec<usize> = owners
            .iter()
            .filter(|(_, o)| **o == names[victim])
            .map(|(c, _)| c[1..].parse().unwrap_or(0))
            .collect();
        let killed_at = realtime_ns();
        let mut frozen = None;
        if let Some(mut d) = nodes[victim].take() {
            if args.freeze {
                let pid = nix::unistd::Pid::from_raw(d.0.id() as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
                frozen = Some(d);
            } else {
                let _ = d.0.kill();
                let _ = d.0.wait();
                // Reaped: no SIGTERM for it when dropped.
                std::mem::forget(d);
            }
        }
        // Every one of its channels from another node, or 10 s.
        let until = Instant::now() + Duration::from_secs(10);
        let gaps = loop {
            let gaps: Vec<Option<f64>> = {
                let seen = seen.lock().expect("lock");
                theirs.iter().map(|&k| gap(&seen[k], killed_at)).collect()
            };
            if gaps.iter().all(Option::is_some) || Instant::now() > until {
                break gaps;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(mut d) = frozen.take() {
            let _ = d.0.kill();
            let _ = d.0.wait();
            std::mem::forget(d);
        }
        let got: Vec<f64> = gaps.iter().flatten().copied().collect();
        ensure!(
            got.len() == theirs.len(),
            "kill {kill}: {} of {} channels not back within 10 s",
            theirs.len() - got.len(),
            theirs.len()
        );
        let worst = got.iter().copied().fold(0.0, f64::max);
        println!(
            "kill {kill:>2}: {} ({} channels): worst {worst:.0} ms",
            names[victim],
            theirs.len()
        );
        silences.extend(&got);
        worst_per_kill.push(worst);
        nodes[victim] = Some(Daemon::start(&args.headend, &configs[victim], "error")?.0);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let (p50, p99, max) = (
        pct(&mut silences, 0.5),
        pct(&mut silences, 0.99),
        pct(&mut silences, 1.0),
    );
    println!(
        "{} kills, {} channel takeovers: silence p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (lease {} s)",
        args.kills,
        silences.len(),
        args.lease
    );
    println!(
        "{{\"kills\":{},\"takeovers\":{},\"lease_s\":{},\"etcd_fast\":{},\"freeze\":{},\"standbys\":{},\"p50_ms\":{p50:.1},\"p99_ms\":{p99:.1},\"max_ms\":{max:.1},\"worst_per_kill_p50_ms\":{:.1}}}",
        args.kills,
        silences.len(),
        args.lease,
        args.etcd_fast,
        args.freeze,
        args.standbys,
        pct(&mut worst_per_kill, 0.5)
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The silence (ms) on a channel across its takeover after `killed_at`: from the last
/// datagram of the sender before it to the first of another; `None` until that comes.
fn gap(arrivals: &[(u64, u16)], killed_at: u64) -> Option<f64> {
    let before = arrivals.iter().rposition(|a| a.0 < killed_at)?;
    let (last_at, dead) = arrivals[before];
    let next = arrivals[before..].iter().find(|a| a.1 != dead)?;
    // The dead sender's last datagram may have come just after the kill instant.
    let last = arrivals[before..]
        .iter()
        .take_while(|a| a.1 == dead)
        .last()
        .map_or(last_at, |a| a.0);
    Some(next.0.saturating_sub(last) as f64 / 1e6)
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Waits (up to 30 s) until `nodes` are registered and every channel is sent from where
/// placement puts it: the owners.
fn settled(http: u16, nodes: usize, channels: usize) -> anyhow::Result<HashMap<String, String>> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(http, "/api/fleet").unwrap_or_default();
        let owners: HashMap<String, String> = v["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["owner"].is_string() && c["owner"] == c["placed"])
            .filter_map(|c| {
                Some((
                    c["id"].as_str()?.to_owned(),
                    c["owner"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if owners.len() == channels && v["nodes"].as_array().map_or(0, Vec::len) == nodes {
            return Ok(owners);
        }
        if Instant::now() > until {
            bail!("the fleet did not settle in 30 s: {v}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

fn config(
    dir: &Path,
    node: &str,
    http: u16,
    etcd: u16,
    args: &Args,
    group: impl Fn(usize) -> Ipv6Addr,
) -> anyhow::Result<PathBuf> {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media/a.ts");
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[engine]\nthreads = 1\n\n[record]\nfile = \"{node}-record.jsonl\"\n\n\
         [fleet]\netcd = [\"http://127.0.0.1:{etcd}\"]\nnode = \"{node}\"\nlease = \"{}s\"\nprefix = \"/takeover/\"\nstandbys = {}\n",
        args.lease, args.standbys
    );
    for k in 0..args.channels {
        text.push_str(&format!(
            "\n[[channel]]\nid = \"c{k:03}\"\nservice_id = {}\nname = \"C{k}\"\nmuxrate = \"1M\"\nplaylist = [{:?}]\n\
             [[channel.output]]\nurl = \"udp://[{}]:{}\"\ninterface = \"lo\"\n",
            k + 1,
            media.display().to_string(),
            group(k),
            args.port as usize + k
        ));
    }
    let path = dir.join(format!("{node}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// One etcd member, killed when dropped.
struct Etcd(Child);

impl Etcd {
    fn start(dir: &Path, client: u16, peer: u16, fast: bool) -> anyhow::Result<Etcd> {
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "takeover", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!(
                "--initial-cluster=takeover=http://127.0.0.1:{peer}"
            ))
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if fast {
            cmd.args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
        }
        let e = Etcd(
            cmd.spawn()
                .context("starting etcd (apt-get install etcd-server)")?,
        );
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            ensure!(Instant::now() < until, "etcd did not listen in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Answering, not only listening.
        std::thread::sleep(Duration::from_millis(500));
        Ok(e)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
