//! CPU of encrypted SRT inputs (issue #14): N channels, each relaying one SRT listener input
//! (AES-128, latency 120 ms), fed by this program as N srt-tokio callers at 8 Mbit/s each
//! (a CBR stream ffmpeg makes once under target/bench/, sent in 1316-byte messages at its
//! rate, looped). After a warm-up, the daemon's CPU (utime + stime from /proc) over the
//! measuring window, per input, and how many inputs its `/channels` calls good. Prints one
//! markdown row.
//!
//! `cargo run --release -p benches --bin srt_inputs -- --inputs 20`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::live::{cbr_source, cpu_seconds, Daemon};
use bytes::Bytes;
use clap::Parser;
use futures::SinkExt;
use srt_tokio::SrtSocket;

#[derive(Parser)]
struct Args {
    /// SRT inputs (one channel each).
    #[arg(long, default_value_t = 20)]
    inputs: usize,
    /// Each input's rate, bits/s.
    #[arg(long, default_value_t = 8_000_000)]
    rate: u64,
    /// First UDP port the daemon listens on (one per input).
    #[arg(long, default_value_t = 7600)]
    port: u16,
    /// Seconds measured (after 5 s of warm-up).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
}

const PASS: &str = "bench-passphrase-0123";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&bench)?;
    let data = Arc::new(cbr_source(&bench, args.rate)?);
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
    let slate = media.join("c.ts").canonicalize()?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cfg =
        format!("[engine]\nrealtime_priority = 0\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n");
    for i in 0..args.inputs {
        cfg.push_str(&format!(
            "\n[[channel]]\nid = \"s{n}\"\nservice_id = {n}\nname = \"S{n}\"\nmuxrate = \"{mux}\"\n\
             playlist = [{slate:?}]\n[[channel.input]]\nname = \"srt\"\n\
             url = \"srt://127.0.0.1:{port}?mode=listener&passphrase={PASS}&pbkeylen=16\"\n",
            n = i + 1,
            mux = args.rate * 11 / 10,
            slate = slate.display().to_string(),
            port = args.port + i as u16,
        ));
    }
    let path = bench.join("srt_inputs.toml");
    std::fs::write(&path, cfg)?;
    let (daemon, _) = Daemon::start(&args.headend, &path, "warn")?;
    let pid = daemon.0.id().to_string();

    // The callers, on their own runtime (threads of this process, not the daemon's).
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    for i in 0..args.inputs {
        let (data, stop) = (data.clone(), stop.clone());
        let addr: SocketAddr = format!("127.0.0.1:{}", args.port + i as u16).parse()?;
        let rate = args.rate;
        rt.spawn(async move {
            let Ok(mut s) = SrtSocket::builder()
                .encryption(16, PASS)
                .latency(Duration::from_millis(120))
                .call(addr, None)
                .await
            else {
                eprintln!("input {i}: cannot connect");
                return;
            };
            let chunk = 1316;
            let per = Duration::from_secs_f64(chunk as f64 * 8.0 / rate as f64);
            let start = Instant::now();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let off = (k * chunk) % (data.len() / chunk * chunk);
                let msg = Bytes::copy_from_slice(&data[off..off + chunk]);
                if s.send((Instant::now(), msg)).await.is_err() {
                    return;
                }
                k += 1;
                let due = per * k as u32;
                if let Some(w) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(w).await;
                }
            }
            let _ = s.close().await;
        });
    }
    std::thread::sleep(Duration::from_secs(5));
    let c0 = cpu_seconds(&pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.secs));
    let cpu = cpu_seconds(&pid)? - c0;
    let wall = t0.elapsed().as_secs_f64();
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{http}/channels")])
        .output()?;
    let channels: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let good = channels
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"]["relays"][0]["inputs"][0]["health"] == "good")
        .count();
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(daemon);
    let cores = cpu / wall;
    println!(
        "| inputs | Mbit/s each | good | daemon cores | per input (% of a core) |\n|---:|---:|---:|---:|---:|\n| {} | {} | {} | {:.2} | {:.2} |",
        args.inputs,
        args.rate / 1_000_000,
        good,
        cores,
        cores * 100.0 / args.inputs as f64
    );
    Ok(())
}
