//! Live input failover, over many kills (issue #14): one channel relaying a main and a backup
//! input (UDP on loopback, fed in real time by this program from two sources ffmpeg makes once
//! under target/bench/: H.264 + AAC for the main, + AC-3 for the backup, so the output's PMT
//! says which is on air), its output on an IPv6 group kept on `lo`. The main is killed at a
//! random point of its GOP, the backup takes over, the main comes back and is restored after
//! `restore_after` (1 s), and again, `--kills` times. For each kill, by the kernel's receive
//! timestamps: the output gap (the main's last ES packet to the backup's first) and the time
//! from the main's last datagram in to the backup's first packet out. Prints a markdown row of
//! p50/p99/max of each against the 300 ms target, and any kill that did not switch.
//!
//! `cargo run --release -p benches --bin failover -- --kills 100`
//! (needs root for the loopback multicast route; never sends anywhere but `lo`).

use std::net::{Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use benches::live::{multicast_on_lo, recv_stamped, stamped_socket, synthetic, Daemon, Synthetic};
use clap::Parser;
use playout::psi::{Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket, PACKET_SIZE};

#[derive(Parser)]
struct Args {
    /// How many times the main is killed.
    #[arg(long, default_value_t = 100)]
    kills: usize,
    /// Output port (on the group ff11::f:1, on lo).
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
}

const MUXRATE: u64 = 4_000_000;

fn utc_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Which source a PMT says is on air: 'b' (AC-3 listed), 'm' (H.264), else 's'.
fn which(pmt: &Pmt) -> char {
    let types: Vec<u8> = pmt.streams.iter().map(|e| e.stream_type).collect();
    if types.contains(&0x81) {
        'b'
    } else if types.contains(&0x1B) {
        'm'
    } else {
        's'
    }
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize)
        .map_or(f64::NAN, |x| *x as f64 / 1e6)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let group = Ipv6Addr::new(0xff11, 0, 0, 0, 0, 0, 0xf, 1);
    multicast_on_lo(group)?;
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&bench)?;
    let secs = 5 + args.kills as u64 * 4;
    let spec = |ac3| Synthetic {
        size: "320x180",
        secs,
        video_bps: 600_000,
        muxrate: 1_200_000,
        ac3,
    };
    let main = synthetic(&bench, spec(false))?;
    let backup = synthetic(&bench, spec(true))?;
    let (pm, pb) = (
        UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port(),
        UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port(),
    );
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
    let cfg = bench.join("failover.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[channel]]\nid = \"live\"\nservice_id = 1\nname = \"Live\"\n\
             muxrate = \"{MUXRATE}\"\nplaylist = [{slate:?}]\n\n[channel.failover]\nrestore_after = \"1s\"\n\n\
             [[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{pm}\"\n\n\
             [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{pb}\"\n\n\
             [[channel.output]]\nurl = \"udp://[{group}]:{port}\"\ninterface = \"lo\"\n",
            slate = media.join("c.ts").canonicalize()?.display().to_string(),
            port = args.port,
        ),
    )?;
    let rx = stamped_socket(args.port, &[group], 16 << 20)?;
    let (_daemon, _) = Daemon::start(&args.headend, &cfg, "warn")?;

    // The sender: both sources at their constant rate; the main muted while `dead`, and the
    // realtime instant of its last datagram before each mute kept.
    let dead = Arc::new(AtomicBool::new(false));
    let last_main = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (dead, last_main, stop) = (dead.clone(), last_main.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            let dgram = 7 * PACKET_SIZE;
            let ns_per = dgram as f64 * 8.0 / 1_200_000.0 * 1e9;
            let start = Instant::now();
            let n = main.len().min(backup.len()) / dgram;
            for k in 0..n {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = Duration::from_nanos((k as f64 * ns_per) as u64);
                if let Some(w) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(w);
                }
                if !dead.load(Ordering::Relaxed) {
                    s.send_to(&main[k * dgram..(k + 1) * dgram], ("127.0.0.1", pm))?;
                    last_main.store(utc_ns(), Ordering::Relaxed);
                }
                s.send_to(&backup[k * dgram..(k + 1) * dgram], ("127.0.0.1", pb))?;
            }
            Ok(())
        })
    };
    // The receiver: every datagram with its stamp.
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let fd = rx.as_raw_fd();
            let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut buf = vec![0u8; 2048];
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            while !stop.load(Ordering::Relaxed) {
                match recv_stamped(fd, &mut buf, &mut cmsg) {
                    Some((n, _, t)) => got.push((t, buf[..n].to_vec())),
                    None => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            got
        })
    };
    // Kills: the main on air for a while, killed at a random point of a second (its GOP),
    // back 1.5 s later; restored 1 s after that (plus the second an input must be good).
    std::thread::sleep(Duration::from_secs(4));
    let mut kills = Vec::new();
    let mut x = 0x2545_F491u32;
    for _ in 0..args.kills {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        std::thread::sleep(Duration::from_millis(u64::from(x % 1000)));
        dead.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        kills.push(last_main.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(1480));
        dead.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1500));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;

    // The PMT changes, and the ES packets around each switch to the backup.
    let mut asm = SectionAssembler::default();
    let mut on: Vec<(usize, u64, char)> = Vec::new();
    for (i, (t, d)) in got.iter().enumerate() {
        for raw in d.chunks_exact(PACKET_SIZE) {
            let Ok(p) = TsPacket::new(bytes::Bytes::copy_from_slice(raw)) else {
                continue;
            };
            if p.pid() != Pid::from_bits(0x1000) {
                continue;
            }
            let mut secs = Vec::new();
            asm.push(&p, true, |s| secs.push(s.to_vec()));
            for s in secs {
                if let Ok(pmt) = Pmt::parse(Pid::from_bits(0x1000), &s) {
                    let w = which(&pmt);
                    if on.last().is_none_or(|(_, _, c)| *c != w) {
                        on.push((i, *t, w));
                    }
                }
            }
        }
    }
    let es = |d: &[u8]| {
        d.chunks_exact(PACKET_SIZE).any(|p| {
            let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
            (0x100..0x1000).contains(&pid) && p[1] & 0x40 != 0
        })
    };
    let mut gaps = Vec::new();
    let mut since_kill = Vec::new();
    let mut missed = 0;
    for &k in &kills {
        // The first switch to the backup after this kill.
        let Some(&(i, _, _)) = on.iter().find(|(_, t, c)| *c == 'b' && *t > k) else {
            missed += 1;
            continue;
        };
        let before = got[..i].iter().rev().find(|(_, d)| es(d)).map(|(t, _)| *t);
        let after = got[i..].iter().find(|(_, d)| es(d)).map(|(t, _)| *t);
        let (Some(b), Some(a)) = (before, after) else {
            missed += 1;
            continue;
        };
        if a.saturating_sub(k) > 5_000_000_000 {
            missed += 1;
            continue;
        }
        gaps.push(a - b);
        since_kill.push(a.saturating_sub(k));
    }
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!("failover over {} kills ({model}), ms:", kills.len());
    println!("| kills | switched | output gap p50 | p99 | max | backup out after main's last in p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        kills.len(),
        kills.len() - missed,
        percentile(&mut gaps.clone(), 0.5),
        percentile(&mut gaps.clone(), 0.99),
        percentile(&mut gaps, 1.0),
        percentile(&mut since_kill.clone(), 0.5),
        percentile(&mut since_kill.clone(), 0.99),
        percentile(&mut since_kill, 1.0),
    );
    Ok(())
}
