//! A scrambled channel on air: every elementary-stream packet leaves scrambled (PSI, SI and
//! null packets clear), the PMT carries the CA_descriptor and scrambling_descriptor, the
//! parity flips every crypto-period on all scrambled PIDs at once, the ECM announcing each new
//! word is on air before the first packet scrambled with it, and a receiver that opens the
//! ECMs with the ECM key descrambles a stream that passes our strict checker and that ffmpeg
//! decodes without an error.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drm::cipher::{CipherKind, ControlWord, Parity, Scrambler};
use drm::ecm::{parse_ecm, Wrap};
use playout::check::{check, CheckLimits};
use playout::psi::{descriptor_iter, Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket};

mod common;
use common::{ffmpeg_errors, media, signal_and_wait, tool, Daemon};

const MUXRATE: u64 = 3_000_000;
const ECM_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const ECM_PID: u16 = 0x1FF0;

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
    for cipher in ["dvb-cissa", "sm4-cbc"] {
        let mut data = run(cipher, "2s", 9);
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
        // Elementary streams: everything but PSI/SI (below 0x20), the PMT, the ECMs and nulls
        // (the PMT changes from item to item).
        let es = |pid: u16| pid >= 0x20 && pid != 0x1000 && pid != ECM_PID && pid != 0x1FFF;
        assert!(pmt.streams.iter().all(|s| es(s.pid.value())));

        // Walk the capture as a receiver: ECMs give the words; every flip must come after
        // the ECM that announced its word; descramble as we go.
        let mut descrambler = Scrambler::new(kind, None);
        let mut ecm_asm = SectionAssembler::default();
        let mut announced: [Option<[u8; 16]>; 2] = [None, None];
        let mut in_use: [Option<[u8; 16]>; 2] = [None, None];
        let mut parity: Option<u8> = None;
        let mut flips = 0;
        let mut scrambled = 0u64;
        let mut clear_es = 0u64;
        let mut ecms = 0;
        let mut out = Vec::with_capacity(data.len());
        for (k, raw) in data.chunks_exact(188).enumerate() {
            let mut pkt = raw.to_vec();
            let pid = u16::from_be_bytes([raw[1], raw[2]]) & 0x1FFF;
            let tsc = raw[3] >> 6;
            let has_payload = raw[3] & 0x10 != 0;
            if pid == ECM_PID {
                let p = TsPacket::new(Bytes::copy_from_slice(raw)).unwrap();
                ecm_asm.push(&p, true, |s| {
                    let e = parse_ecm(&key, Wrap::Sm4, s).expect("our ECM opens with the key");
                    ecms += 1;
                    announced = [Some(e.even_cw), Some(e.odd_cw)];
                    descrambler.set_cw(Parity::Even, &ControlWord::new(e.even_cw));
                    descrambler.set_cw(Parity::Odd, &ControlWord::new(e.odd_cw));
                });
            }
            if es(pid) && has_payload {
                if tsc == 0 {
                    clear_es += 1;
                } else {
                    scrambled += 1;
                    assert!(
                        tsc == 0b10 || tsc == 0b11,
                        "{cipher}: packet {k}: tsc {tsc:02b}"
                    );
                    if parity != Some(tsc) {
                        let slot = usize::from(tsc & 1);
                        let word = announced[slot].unwrap_or_else(|| {
                            panic!("{cipher}: packet {k}: scrambled before any ECM")
                        });
                        if parity.is_some() {
                            flips += 1;
                            assert_ne!(
                                in_use[slot],
                                Some(word),
                                "{cipher}: packet {k}: a flip to parity {tsc:02b} without an ECM announcing its new word first"
                            );
                        }
                        in_use[slot] = Some(word);
                        parity = Some(tsc);
                    }
                }
            } else {
                assert_eq!(
                    tsc, 0,
                    "{cipher}: packet {k} on PID 0x{pid:04X} must stay clear"
                );
            }
            let n = descrambler.descramble(&mut pkt).unwrap();
            if tsc != 0 && es(pid) {
                assert_eq!(n, 1, "{cipher}: packet {k}: no key to descramble it");
            }
            out.extend_from_slice(&pkt);
        }
        eprintln!("{cipher}: {scrambled} ES packets scrambled, {flips} flips, {ecms} ECMs");
        assert_eq!(
            clear_es, 0,
            "{cipher}: elementary-stream packets left clear"
        );
        assert!(
            (3..=5).contains(&flips),
            "{cipher}: {flips} flips in 9 s of 2 s periods"
        );

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
}
