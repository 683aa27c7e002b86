//! `hectl check`'s ETSI TR 101 290 counts agree with an independent analyser, tshark
//! (Wireshark's MPEG-TS dissectors), within one count per rule, on errors injected at known
//! places into a clean stream (`headend render` of fixtures/media/a.ts at 4 Mbit/s, 20 s):
//!
//! - 1.4 continuity: single video packets lost (nulls in their place, so the byte clock holds);
//! - 1.3 PAT: every PAT of a 0.7 s window removed (the PAT's continuity renumbered, so only the
//!   gap is an error);
//! - 2.3a PCR repetition: every PCR of a 45 ms window removed (its flag cleared);
//! - 2.2 CRC: one byte of a PAT section flipped.
//!
//! What tshark computes itself: the continuity check (expert info `mp2t.cc.drop`, one per
//! packet after a loss), the CRC_32 of each section (`mpeg_sect.crc.status`, with
//! `mpeg_sect.verify_crc`), and each packet's time (its MPEG-TS file reader's own byte clock,
//! from the PCRs). What it only decodes: which packets carry a PAT or a PCR; the repetition
//! rules are the few lines here that count the gaps between those times over 0.5 s and 40 ms.
//! Each gap is made shorter than twice its limit, so "one error per gap" (here) and "one per
//! whole period of absence" (the monitor) are the same count.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The render's muxrate and length.
const MUXRATE: f64 = 4e6;
const SECONDS: u32 = 20;
/// How many of each error are injected.
const N: u64 = 3;

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

fn has_pcr(p: &[u8]) -> bool {
    p[3] & 0x20 != 0 && p[4] >= 7 && p[5] & 0x10 != 0
}

/// The index of the packet that leaves at `seconds`.
fn at(seconds: f64) -> usize {
    (seconds * MUXRATE / (188.0 * 8.0)) as usize
}

/// A null packet.
fn null() -> [u8; 188] {
    let mut p = [0xFF; 188];
    p[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
    p
}

/// `headend render` of a.ts into `dir` (bounded by `timeout`).
fn render(dir: &Path) -> PathBuf {
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media/a.ts");
    let cfg = dir.join("agree.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"4M\"\n\
             playlist = [{:?}]\n",
            media.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.join("clean.ts");
    let o = Command::new("timeout")
        .arg("120")
        .arg(common::headend())
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--channel", "a", "--duration", &format!("{SECONDS}s"), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "render: {}", common::text(&o));
    out
}

/// The clean stream with `N` errors of each kind, at places seconds apart.
fn inject(clean: &[u8]) -> Vec<u8> {
    let mut packets: Vec<[u8; 188]> = clean
        .chunks_exact(188)
        .map(|p| p.try_into().unwrap())
        .collect();
    let video = pid(packets.iter().find(|p| has_pcr(&p[..])).unwrap());
    for k in 0..N as usize {
        // 1.4: the first video packet from 2 s on that carries payload and no PCR, lost.
        let i = (at(2.0 + k as f64)..packets.len())
            .find(|&i| {
                let p = &packets[i];
                pid(p) == video && p[3] & 0x10 != 0 && !has_pcr(p)
            })
            .unwrap();
        packets[i] = null();
        // 2.3a: no PCR for 45 ms from 12 s on.
        for p in &mut packets[at(12.0 + k as f64)..at(12.045 + k as f64)] {
            if pid(p) == video && has_pcr(p) {
                p[5] &= !0x10;
            }
        }
        // 2.2: the first PAT from 16 s on, its transport_stream_id damaged.
        let i = (at(16.0 + k as f64)..packets.len())
            .find(|&i| pid(&packets[i]) == 0)
            .unwrap();
        packets[i][9] ^= 0x5A;
    }
    // 1.3: no PAT for 0.7 s from 6 s and 9 s on; the PATs left numbered without a gap.
    for start in [6.0, 9.0] {
        for p in &mut packets[at(start)..at(start + 0.7)] {
            if pid(p) == 0 {
                *p = null();
            }
        }
    }
    let mut cc = 0;
    for p in packets.iter_mut().filter(|p| pid(&p[..]) == 0) {
        p[3] = p[3] & 0xF0 | cc;
        cc = (cc + 1) & 0x0F;
    }
    packets.concat()
}

/// Per rule number (`1.4`), what `hectl check` counts.
fn ours(file: &Path) -> std::collections::BTreeMap<String, u64> {
    let o = Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_hectl"))
        .arg("check")
        .arg(file)
        .output()
        .unwrap();
    let text = common::text(&o);
    let counts: std::collections::BTreeMap<String, u64> = text
        .lines()
        .skip_while(|l| !l.starts_with("TR 101 290"))
        .skip(1)
        .map_while(|l| {
            let mut f = l.split_whitespace();
            let (rule, _, n) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            Some((rule.to_owned(), n))
        })
        .collect();
    assert!(counts.len() >= 15, "hectl check {}: {text}", file.display());
    counts
}

/// What tshark finds: (continuity errors, PAT gaps over 0.5 s, PCR gaps over 40 ms, CRC
/// errors).
fn theirs(tshark: &str, file: &Path) -> [u64; 4] {
    let o = Command::new("timeout")
        .args(["120", tshark, "-r"])
        .arg(file)
        .args(["-o", "mpeg_sect.verify_crc:TRUE", "-T", "fields"])
        .args(["-E", "separator=/t"])
        .args(["-e", "frame.time_relative", "-e", "mp2t.cc.drop"])
        .args(["-e", "mpeg_sect.crc.status", "-e", "mpeg_pat.tsid"])
        .args(["-e", "mp2t.af.pcr"])
        .output()
        .unwrap();
    assert!(o.status.success(), "tshark: {}", common::text(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let (mut cc, mut crc) = (0, 0);
    let (mut pats, mut pcrs) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [time, drop, status, tsid, pcr] = f[..] else {
            panic!("tshark: unexpected line {line:?}");
        };
        let time: f64 = time.parse().unwrap();
        cc += u64::from(!drop.is_empty());
        // One status per section in the packet: 0 is bad, 1 good.
        crc += status.split(',').filter(|s| *s == "0").count() as u64;
        if !tsid.is_empty() {
            pats.push(time);
        }
        if !pcr.is_empty() {
            pcrs.push(time);
        }
    }
    let gaps = |t: &[f64], limit: f64| t.windows(2).filter(|w| w[1] - w[0] > limit).count();
    [cc, gaps(&pats, 0.5) as u64, gaps(&pcrs, 0.040) as u64, crc]
}

#[test]
fn tr101290_counts_agree_with_tshark_on_injected_errors() {
    let Some(tshark) = common::tool("tshark", "--version") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean = render(dir.path());
    let bad = dir.path().join("injected.ts");
    std::fs::write(&bad, inject(&std::fs::read(&clean).unwrap())).unwrap();
    let rules = ["1.4", "1.3", "2.3a", "2.2"];
    for (file, want) in [(&clean, 0), (&bad, N)] {
        let ours = ours(file);
        let theirs = theirs(tshark, file);
        let name = file.file_name().unwrap().to_string_lossy();
        eprintln!("{name}: hectl check {ours:?}; tshark (1.4, 1.3, 2.3a, 2.2) {theirs:?}");
        for (rule, t) in rules.iter().zip(theirs) {
            let o = ours[*rule];
            assert!(
                o.abs_diff(t) <= 1,
                "{name}: rule {rule}: hectl check counts {o}, tshark {t}"
            );
            // The injection did what it says, and nothing else was counted.
            let expected = if file == &bad && *rule == "1.3" {
                2
            } else {
                want
            };
            assert_eq!(o, expected, "{name}: rule {rule}: hectl check");
        }
        for (rule, n) in &ours {
            if !rules.contains(&rule.as_str()) {
                assert_eq!(*n, 0, "{name}: rule {rule}: hectl check");
            }
        }
    }
}
