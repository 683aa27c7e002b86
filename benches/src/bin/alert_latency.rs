//! Emergency alert switch latency (issues #6, #15): N channels on air (IPv6 multicast kept on
//! `lo`, one port per channel), one signed alert (SM2) for all of them; for each channel, by
//! the kernel's receive timestamps and from the moment the API's answer is read: the first
//! packet of the alert clip's PMT (the alert clip is HEVC, the programmes H.264) on its
//! group, the first packet of the in-band emergency table (EBIT, PID 0x21), which is what
//! set-top boxes react to, and the alert's presentation as a viewer sees it: the clip's first
//! picture's PTS mapped through the PCR to arrival (a receiver's clock is locked to the PCR,
//! so that is when its decoder shows the picture). Prints one markdown row: channels, then
//! min/p50/p99/max of the presentation, of the clip's first packet, how many switched, and
//! p50/p99/max of the EBIT.
//!
//! `cargo run --release -p benches --bin alert_latency -- --channels 100`
//! (needs root for the loopback multicast routes; never sends anywhere but `lo`).

use std::io::{Read, Write};
use std::net::{Ipv6Addr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use benches::live::{multicast_on_lo, recv_stamped, stamped_socket, Daemon};
use clap::Parser;
use epg::alert::sign::{encode_signature, Algorithm, SigningKey, KEY_HEADER, SIGNATURE_HEADER};
use playout::pes::PesHeader;
use playout::psi::{Pmt, SectionAssembler};
use playout::time::PCR_MODULUS;
use playout::ts::{Pid, TsPacket};

const TOKEN: &str = "bench-emergency-token-0123456789";

#[derive(Parser)]
struct Args {
    /// Channels on air, all targeted.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Muxrate of every channel, bits/s.
    #[arg(long, default_value_t = 4_000_000)]
    muxrate: u64,
    /// First UDP port (one per channel).
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Seconds on air before the alert.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/headend")]
    headend: PathBuf,
    /// The channels' `mux_delay` (e.g. `500ms`; default: the daemon's).
    #[arg(long)]
    mux_delay: Option<String>,
}

fn group() -> Ipv6Addr {
    Ipv6Addr::new(0xff11, 0, 0, 0, 0, 0, 0xe, 1)
}

fn utc_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn write_config(path: &Path, args: &Args, key: &SigningKey) -> anyhow::Result<()> {
    let media = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/media")
        .canonicalize()
        .context("fixtures/media")?;
    let ids: Vec<String> = (0..args.channels)
        .map(|i| format!("\"c{}\"", i + 1))
        .collect();
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[alerts]\ntoken = \"{TOKEN}\"\naudit_log = \"alert-bench-audit.jsonl\"\n\
         tables = [\"ebit\", \"scte18\"]\n[alerts.clips]\ndefault = \"{clip}\"\n\
         [[alerts.sender]]\nkey_id = \"bench\"\nalgorithm = \"sm2\"\npublic_key = \"{pk}\"\nsenders = [\"bench@example.cn\"]\n\
         [[alerts.area]]\ncode = \"310000\"\nchannels = [{ids}]\n",
        clip = media.join("c.ts").display(),
        pk = key.verifying_key().to_hex(),
        ids = ids.join(", "),
    );
    let delay = args
        .mux_delay
        .as_ref()
        .map_or_else(String::new, |d| format!("mux_delay = \"{d}\"\n"));
    for i in 0..args.channels {
        text.push_str(&format!(
            "\n[[channel]]\nid = \"c{n}\"\nservice_id = {n}\nname = \"C{n}\"\nmuxrate = \"{rate}\"\n{delay}\
             playlist = [\"{a}\", \"{e}\"]\n\n[[channel.output]]\nurl = \"udp://[{g}]:{port}\"\ninterface = \"lo\"\n",
            n = i + 1,
            rate = args.muxrate,
            a = media.join("a.ts").display(),
            e = media.join("e.ts").display(),
            g = group(),
            port = args.port + i as u16,
        ));
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

fn cap(sent: &str, expires: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>BENCH-{id}</identifier>
  <sender>bench@example.cn</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>{expires}</expires>
    <headline>台风红色预警</headline>
    <area><areaDesc>上海市</areaDesc><geocode><valueName>GB2260</valueName><value>310000</value></geocode></area>
  </info>
</alert>
"#,
        id = utc_ns()
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    multicast_on_lo(group())?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("alert_latency.toml");
    let key = SigningKey::generate(Algorithm::Sm2)?;
    write_config(&cfg, &args, &key)?;
    let sockets = (0..args.channels)
        .map(|i| stamped_socket(args.port + i as u16, &[group()], 4 << 20))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_daemon, line) = Daemon::start(&args.headend, &cfg, "error")?;
    let Some(addr) = line
        .strip_prefix("on air; http://")
        .and_then(|l| l.split('/').next())
        .map(str::to_owned)
    else {
        bail!("headend did not come up: {line}");
    };
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let warm_end = Instant::now() + Duration::from_secs(args.warmup);
    while Instant::now() < warm_end {
        for &fd in &fds {
            while recv_stamped(fd, &mut buf, &mut cmsg).is_some() {}
        }
        std::thread::sleep(Duration::from_micros(500));
    }

    // The alert, for every channel.
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let fmt =
        |t: chrono::DateTime<chrono::FixedOffset>| t.format("%Y-%m-%dT%H:%M:%S+08:00").to_string();
    let body = cap(&fmt(now), &fmt(now + chrono::Duration::seconds(30)));
    let sig = encode_signature(&key.sign(body.as_bytes()));
    let mut s = TcpStream::connect(&addr)?;
    write!(
        s,
        "POST /api/alerts HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n{KEY_HEADER}: bench\r\n{SIGNATURE_HEADER}: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let answered = utc_ns();
    if !reply.starts_with("HTTP/1.0 202") && !reply.starts_with("HTTP/1.1 202") {
        bail!("alert refused: {reply}");
    }

    // Per channel: the first PMT announcing HEVC, then the first PES on its HEVC PID, whose
    // PTS is put on the arrival clock through the latest PCR (value, arrival).
    let mut first: Vec<Option<i64>> = vec![None; args.channels];
    let mut hevc_pid: Vec<Option<Pid>> = vec![None; args.channels];
    let mut last_pcr: Vec<Option<(u64, i64)>> = vec![None; args.channels];
    let mut shown: Vec<Option<i64>> = vec![None; args.channels];
    let mut table: Vec<Option<i64>> = vec![None; args.channels];
    let mut asm: Vec<SectionAssembler> = (0..args.channels)
        .map(|_| SectionAssembler::default())
        .collect();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end
        && (shown.iter().any(Option::is_none) || table.iter().any(Option::is_none))
    {
        for (k, &fd) in fds.iter().enumerate() {
            while let Some((n, _, stamp)) = recv_stamped(fd, &mut buf, &mut cmsg) {
                let stamp = stamp as i64;
                if shown[k].is_some() && table[k].is_some() {
                    continue;
                }
                for p in buf[..n].chunks_exact(188) {
                    let Ok(p) = TsPacket::new(bytes::Bytes::copy_from_slice(p)) else {
                        continue;
                    };
                    if let Some(pcr) = p.pcr() {
                        last_pcr[k] = Some((pcr.ticks(), stamp));
                    }
                    if p.pid() == Pid::from_bits(0x21) && table[k].is_none() {
                        table[k] = Some(stamp);
                    }
                    if Some(p.pid()) == hevc_pid[k] && p.pusi() && shown[k].is_none() {
                        let pts = PesHeader::parse(p.payload()).and_then(|h| h.pts);
                        if let (Some(pts), Some((pcr, at))) = (pts, last_pcr[k]) {
                            // PTS and PCR run on the same 2^33 × 300 cycle.
                            let ahead = (pts.raw() * 300 + PCR_MODULUS - pcr) % PCR_MODULUS;
                            shown[k] = Some(at + (ahead as f64 / 27e6 * 1e9) as i64);
                        }
                    }
                    if p.pid() != Pid::from_bits(0x1000) {
                        continue;
                    }
                    let mut hevc = None;
                    asm[k].push(&p, true, |sec| {
                        if let Ok(pmt) = Pmt::parse(Pid::from_bits(0x1000), sec) {
                            hevc = pmt
                                .streams
                                .iter()
                                .find(|e| e.stream_type == 0x24)
                                .map(|e| e.pid);
                        }
                    });
                    if hevc.is_some() && first[k].is_none() {
                        first[k] = Some(stamp);
                        hevc_pid[k] = hevc;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let sorted = |v: &[Option<i64>]| {
        let mut ms: Vec<f64> = v
            .iter()
            .flatten()
            .map(|t| (t - answered) as f64 / 1e6)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let pick = |ms: &[f64], q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (clip, eb, seen) = (sorted(&first), sorted(&table), sorted(&shown));
    println!(
        "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} | {:.1} | {:.1} | {:.1} |",
        args.channels,
        pick(&seen, 0.0),
        pick(&seen, 0.5),
        pick(&seen, 0.99),
        pick(&seen, 1.0),
        pick(&clip, 0.0),
        pick(&clip, 0.5),
        pick(&clip, 0.99),
        pick(&clip, 1.0),
        seen.len(),
        args.channels,
        pick(&eb, 0.5),
        pick(&eb, 0.99),
        pick(&eb, 1.0),
    );
    std::io::stdout().flush()?;
    Ok(())
}
