//! `scramble`: single-thread throughput of `drm::cipher::Scrambler` for every cipher.
//!
//! Builds an in-memory transport stream of about `--mb` MB by repeating a fixture (real TS:
//! video and audio PES with PCR adaptation fields, PSI), then for each cipher scrambles the
//! whole buffer in `--chunk`-byte calls (the service's ES PIDs from the PMT, as a head-end
//! does), descrambles it back, and checks that the buffer is the clear stream again. Best
//! of `--runs`. It reports GB/s (10^9 bytes per second) of TS processed and of payload
//! bytes scrambled, for scrambling and for descrambling.
//!
//! `scripts/bench-scramble` runs it next to `openssl speed` and TSDuck (when installed).
//!
//! `cargo run --release -p benches --bin scramble -- --mb 1000`

use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use drm::cipher::{CipherKind, ControlWord, Parity, Scrambler};
use playout::demux::{Demux, DemuxEvent};

const TS_PACKET: usize = 188;

#[derive(Parser)]
#[command(about = "Scrambling throughput per cipher, one thread")]
struct Args {
    /// Size of the in-memory stream, MB (10^6 bytes).
    #[arg(long, default_value_t = 1000)]
    mb: usize,
    /// Fixture (from fixtures/media) repeated to fill it.
    #[arg(long, default_value = "e.ts")]
    fixture: String,
    /// Bytes per scramble call (rounded down to whole packets).
    #[arg(long, default_value_t = 7 * 188 * 1024)]
    chunk: usize,
    /// Runs per cipher; the best is kept.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these ciphers (comma-separated names); default all.
    #[arg(long, value_delimiter = ',')]
    cipher: Vec<CipherKind>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let unit = benches::fixture(&args.fixture);
    anyhow::ensure!(
        !unit.is_empty() && unit.len() % TS_PACKET == 0,
        "{}: not whole packets",
        args.fixture
    );
    let es = es_pids(&unit);
    anyhow::ensure!(!es.is_empty(), "{}: no PMT", args.fixture);
    let copies = (args.mb * 1_000_000).div_ceil(unit.len()).max(1);
    let mut buf = Vec::with_capacity(copies * unit.len());
    for _ in 0..copies {
        buf.extend_from_slice(&unit);
    }
    let chunk = (args.chunk / TS_PACKET).max(1) * TS_PACKET;
    let is_es = |pid: u16| es.contains(&pid);
    let payload: u64 = buf
        .chunks_exact(TS_PACKET)
        .filter(|p| is_es(u16::from_be_bytes([p[1], p[2]]) & 0x1FFF))
        .map(|p| match (p[3] >> 4) & 3 {
            1 => 184,
            3 => 183usize.saturating_sub(p[4] as usize) as u64,
            _ => 0,
        })
        .sum();
    println!(
        "input: {} x {} = {} bytes ({} packets), ES PIDs {}, {:.1}% of the bytes are ES payload",
        copies,
        args.fixture,
        buf.len(),
        buf.len() / TS_PACKET,
        es.iter()
            .map(|p| format!("{p:#06x}"))
            .collect::<Vec<_>>()
            .join(","),
        100.0 * payload as f64 / buf.len() as f64
    );
    println!("one thread, {chunk}-byte calls, best of {}", args.runs);
    println!();
    println!("| cipher | scramble TS GB/s | scramble payload GB/s | descramble TS GB/s | packets scrambled |");
    println!("|---|---|---|---|---|");
    let kinds = if args.cipher.is_empty() {
        CipherKind::ALL.to_vec()
    } else {
        args.cipher.clone()
    };
    let reference = buf.clone();
    for kind in kinds {
        let mut s = Scrambler::new(kind, None);
        s.set_cw(
            Parity::Even,
            &ControlWord::from_hex("0123456789abcdeffedcba9876543210")?,
        );
        let (mut best_enc, mut best_dec) = (f64::MAX, f64::MAX);
        let mut packets = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            packets = 0;
            for c in buf.chunks_mut(chunk) {
                packets += s.scramble(c, Parity::Even, is_es)?;
            }
            best_enc = best_enc.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for c in buf.chunks_mut(chunk) {
                s.descramble(c)?;
            }
            best_dec = best_dec.min(t.elapsed().as_secs_f64());
            anyhow::ensure!(buf == reference, "{kind}: round trip differs");
        }
        let gbs = |bytes: f64, s: f64| bytes / s / 1e9;
        println!(
            "| {kind} | {:.2} | {:.2} | {:.2} | {packets} |",
            gbs(buf.len() as f64, best_enc),
            gbs(payload as f64, best_enc),
            gbs(buf.len() as f64, best_dec),
        );
        // For scripts/bench-scramble.
        eprintln!(
            "RESULT {kind} {:.4} {:.4} {:.4}",
            gbs(buf.len() as f64, best_enc),
            gbs(payload as f64, best_enc),
            gbs(buf.len() as f64, best_dec)
        );
    }
    Ok(())
}

/// The elementary-stream PIDs of every PMT in `data` (PSI/SI and null never).
fn es_pids(data: &Bytes) -> Vec<u16> {
    let mut demux = Demux::new();
    let mut pids = Vec::new();
    demux.push(data.clone(), &mut |ev| {
        if let DemuxEvent::Pmt { pmt, .. } = ev {
            for s in &pmt.streams {
                let pid = s.pid.value();
                if pid > 0x1F && pid != 0x1FFF && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    });
    pids.sort_unstable();
    pids
}
