//! A scrambled channel on air: every elementary-stream packet leaves scrambled (PSI, SI and
//! null packets clear), the PMT carries the CA_descriptor and scrambling_descriptor, the
//! parity flips every crypto-period on all scrambled PIDs at once, the ECM announcing each new
//! word is on air before the first packet scrambled with it, and a receiver that opens the
//! ECMs with the ECM key descrambles a stream that passes our strict checker and that ffmpeg
//! decodes without an error.
//!
//! One cipher end to end through the daemon on the wall clock: DVB-CISSA. SM4-CBC is covered
//! on a simulated clock through `headend render` (`station.rs`: the same station, ECMs opened
//! with `hectl descramble --ecm-key`, decoded by ffmpeg) and through the daemon beside render
//! (`air_render.rs`); both ciphers' scramblers are unit-tested in `drm`. The crypto-period is
//! measured in stream time (packets at the constant muxrate), not on the wall clock.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drm::cipher::CipherKind;
use drm::ecm::Wrap;
use playout::check::{check, CheckLimits};
use playout::psi::{descriptor_iter, Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket};

mod common;
use common::{ffmpeg_errors, media, signal_and_wait, tool, Daemon};

const MUXRATE: u64 = 3_000_000;
const ECM_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const ECM_PID: u16 = 0x1FF0;
/// How long the daemon runs: a few crypto-periods of 1 s.
const SECS: u64 = 5;

fn receive(rx: &UdpSocket, stop: &std::sync::atomic::AtomicBool) -> Vec<u8> {
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut data = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(started.elapsed() < Duration::from_secs(60), "bounded");
        if let Ok(n) = rx.recv(&mut buf) {
            data.extend_from_slice(&buf[..n]);
        }
    }
    data
}

/// Runs one scrambled channel for `secs`; the capture.
fn run(cipher: &str, period: &str, secs: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[channel]]\nid = \"pay\"\nservice_id = 7\nname = \"Pay\"\n\
             muxrate = \"3M\"\nplaylist = [{a:?}, {e:?}]\n\n[channel.scrambling]\ncipher = \"{cipher}\"\n\
             crypto_period = \"{period}\"\necm_key = \"{ECM_KEY}\"\necm_wrap = \"sm4\"\n\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n",
            a = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    // Received on a thread until after the daemon has closed (on whole frames).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || receive(&rx, &stop))
    };
    std::thread::sleep(Duration::from_secs(secs));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    receiver.join().unwrap()
}

#[test]
fn a_scrambled_channel_rotates_keys_and_descrambles_clean() {
    let key: [u8; 16] = drm::cipher::parse_hex16(ECM_KEY).unwrap();
    let cipher = "dvb-cissa";
    let mut data = run(cipher, "1s", SECS);
    assert!(data.len() > 1_000_000, "{cipher}: {} bytes", data.len());
    data.truncate(data.len() / 188 * 188);
    let kind: CipherKind = cipher.parse().unwrap();

    // The PMT: CA_descriptor (CA_system_id 0x4AFF, ECM PID) and scrambling_descriptor.
    let mut pmt_asm = SectionAssembler::default();
    let mut pmt: Option<Pmt> = None;
    for raw in data.chunks_exact(188) {
        let p = TsPacket::new(Bytes::copy_from_slice(raw)).unwrap();
        if p.pid() == Pid::from_bits(0x1000) {
            pmt_asm.push(&p, true, |s| {
                if let Ok(x) = Pmt::parse(Pid::from_bits(0x1000), s) {
                    if !x.streams.is_empty() {
                        pmt = Some(x);
                    }
                }
            });
        }
    }
    let pmt = pmt.expect("a PMT");
    let descriptors: Vec<(u8, Vec<u8>)> = descriptor_iter(&pmt.program_info)
        .map(|(t, d)| (t, d.to_vec()))
        .collect();
    assert!(
        descriptors.iter().any(|(t, d)| *t == 0x09
            && d[..4] == [0x4A, 0xFF, 0xE0 | (ECM_PID >> 8) as u8, ECM_PID as u8]),
        "{cipher}: CA_descriptor: {descriptors:?}"
    );
    assert!(
        descriptors
            .iter()
            .any(|(t, d)| *t == 0x65 && Some(d[0]) == kind.scrambling_mode()),
        "{cipher}: scrambling_descriptor: {descriptors:?}"
    );
    assert!(pmt
        .streams
        .iter()
        .all(|s| common::scrambled_es(s.pid.value(), ECM_PID)));
    let w = common::receive_scrambled(cipher, &data, kind, ECM_PID, &key, Wrap::Sm4);
    eprintln!(
        "{cipher}: {} ES packets scrambled, {} flips, {} ECMs",
        w.scrambled,
        w.flips.len(),
        w.ecms
    );
    // The parity flips once a crypto-period of stream time: the capture is at a constant
    // muxrate, so packet k is k × 188 × 8 / muxrate s in. A missed or deferred flip doubles
    // a gap; the first ES packet after a flip may trail it by a few packets.
    let secs = |packets: usize| packets as f64 * 188.0 * 8.0 / MUXRATE as f64;
    let gaps: Vec<f64> = w.flips.windows(2).map(|f| secs(f[1] - f[0])).collect();
    eprintln!("{cipher}: flips {gaps:.3?} s apart in stream time");
    assert!(
        w.flips.len() + 1 >= secs(data.len() / 188) as usize,
        "{cipher}: {} flips in {:.1} s of 1 s periods",
        w.flips.len(),
        secs(data.len() / 188)
    );
    assert!(
        gaps.iter().all(|g| (g - 1.0).abs() < 0.02),
        "{cipher}: flips {gaps:.3?} s apart, not every 1 s"
    );
    let out = w.out;
    // `hectl descramble --ecm-key` does the same from the file alone.
    {
        let dir = tempfile::tempdir().unwrap();
        let (inp, outp) = (dir.path().join("s.ts"), dir.path().join("d.ts"));
        std::fs::write(&inp, &data).unwrap();
        let o = std::process::Command::new(common::hectl())
            .args([
                "descramble",
                "--cipher",
                cipher,
                "--ecm-key",
                ECM_KEY,
                "--ecm-wrap",
                "sm4",
            ])
            .arg(&inp)
            .arg(&outp)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::read(&outp).unwrap() == out,
            "{cipher}: hectl descramble --ecm-key differs: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    // The descrambled stream is the clear channel: conformant and decodable.
    let limits = CheckLimits {
        private_pids: vec![Pid::from_bits(ECM_PID)],
        ..CheckLimits::across_joins(MUXRATE)
    };
    // The capture starts and ends where the receiver did, so only whole-stream checks
    // apply at its edges: cut to whole seconds inside.
    let r = check(&out, &limits);
    let v: Vec<String> = r
        .violations(&limits)
        .into_iter()
        .filter(|v| !v.contains("truncated"))
        .collect();
    assert!(v.is_empty(), "{cipher}: {}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0);
    if let Some(ffmpeg) = tool("ffmpeg") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("descrambled.ts");
        std::fs::write(&file, &out).unwrap();
        let errors = ffmpeg_errors(ffmpeg, &file);
        assert!(errors.is_empty(), "{cipher}: ffmpeg: {errors:#?}");
    }
}
