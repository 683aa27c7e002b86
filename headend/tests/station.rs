//! The whole station on a simulated clock, through `headend render` as an operator runs it: a
//! scrambled channel with a schedule, DVB SI and an alert replayed part-way. What the file
//! carries is what goes on air from `--start`: the schedule's titles in the EIT, the TDT at the
//! simulated time, ECMs that open it (`hectl descramble --ecm-key`, then ffmpeg decodes it),
//! the alert pre-empting the programme with its EB tables. Nothing here waits on the wall
//! clock: a 40 s render takes well under a second of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime};
use drm::cipher::CipherKind;
use drm::ecm::Wrap;
use epg::alert::sign::{Algorithm, KeyFile, SigningKey};
use playout::check::{check, CheckLimits};
use playout::psi::{Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket};

mod common;
use common::{cap_alert, ffmpeg_errors, media, run_bounded, set_mode_600, tool};

const MUXRATE: u64 = 3_000_000;
const ECM_KEY: &str = "00112233445566778899aabbccddeeff";
const ECM_PID: u16 = 0x1FF0;
const CW_EVEN: &str = "0123456789abcdef0123456789abcdef";
const CW_ODD: &str = "fedcba9876543210fedcba9876543210";
/// The render starts at 20:00:00 in Shanghai.
const START: &str = "2026-12-05T12:00:00Z";
const HEADLINE: &str = "台风红色预警";

/// Writes the config, schedule, keys and alert into `dir`; returns (config, alerts file).
/// Control words: random (`file_keys` false: each crypto-period its own word), or fixed
/// from a key file.
fn setup(dir: &Path, file_keys: bool) -> (PathBuf, PathBuf) {
    let sched = dir.join("sched/pay");
    std::fs::create_dir_all(&sched).unwrap();
    // Local time: Evening News at 20:00:04 (g.ts, 4.8 s), Weather at 20:00:12 (e.ts, 3 s),
    // Late Film at 20:00:24 (g.ts); filler (e.ts) between. The schedule takes over 4 s
    // after it is first seen (the daemon's lead), at 20:00:04.
    std::fs::write(
        sched.join("2026-12-05.toml"),
        "date = \"2026-12-05\"\n\n\
         [[item]]\nstart = \"19:59:50\"\nfile = \"e.ts\"\ntitle = \"Before\"\n\n\
         [[item]]\nstart = \"20:00:04\"\nfile = \"g.ts\"\ntitle = \"Evening News\"\n\n\
         [[item]]\nstart = \"20:00:12\"\nfile = \"e.ts\"\ntitle = \"Weather\"\n\n\
         [[item]]\nstart = \"20:00:24\"\nfile = \"g.ts\"\ntitle = \"Late Film\"\n",
    )
    .unwrap();
    let keys = dir.join("cw.keys");
    std::fs::write(&keys, format!("{CW_EVEN}\n{CW_ODD}\n")).unwrap();
    set_mode_600(&keys);
    let signer = SigningKey::generate(Algorithm::Sm2).unwrap();
    let key_file = dir.join("prov.key");
    std::fs::write(
        &key_file,
        KeyFile {
            id: "prov-sm2".to_owned(),
            key: signer.clone(),
        }
        .to_toml(),
    )
    .unwrap();
    set_mode_600(&key_file);
    let cfg = format!(
        "[schedules]\ndir = \"sched\"\nmedia_dir = {media:?}\n\n\
         [network]\nnetwork_id = 7\nname = \"Test Cable\"\n\n\
         [alerts]\ntoken = \"emergency-role-token-0123456789\"\naudit_log = \"audit.jsonl\"\n\
         tables = [\"ebit\", \"scte18\"]\nresource_code = \"31010400000000000000000\"\n\
         [alerts.clips]\ndefault = {clip:?}\n\n\
         [[alerts.sender]]\nkey_id = \"prov-sm2\"\nalgorithm = \"sm2\"\npublic_key = \"{public}\"\n\
         senders = [\"prov@example.cn\"]\n\n\
         [[alerts.area]]\ncode = \"310104\"\nchannels = [\"pay\"]\n\n\
         [[channel]]\nid = \"pay\"\nservice_id = 7\nname = \"Pay\"\nprovider = \"Tests\"\n\
         muxrate = \"{MUXRATE}\"\nplaylist = [{e:?}]\nfiller = [{e:?}]\ntimezone = \"Asia/Shanghai\"\n\n\
         [channel.si]\ncountry = \"CHN\"\n\n\
         [channel.scrambling]\ncipher = \"sm4-cbc\"\ncrypto_period = \"4s\"\n{keys}\
         ecm_key = \"{ECM_KEY}\"\necm_wrap = \"sm4\"\n",
        keys = if file_keys {
            "keys = \"file\"\nkey_file = \"cw.keys\"\n"
        } else {
            "keys = \"random\"\n"
        },
        media = media("").display().to_string(),
        clip = media("a.ts").display().to_string(),
        e = media("e.ts").display().to_string(),
        public = signer.verifying_key().to_hex(),
    );
    let cfg_path = dir.join("headend.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    // The alert at 20:00:13 until 20:00:20, replayed 13 s into the render.
    let t = start().and_utc().timestamp();
    std::fs::write(
        dir.join("typhoon.xml"),
        cap_alert("SH-20261205-0001", t + 13, t + 20, "310104", HEADLINE),
    )
    .unwrap();
    let alerts = dir.join("alerts.toml");
    std::fs::write(
        &alerts,
        "[[alert]]\nat = \"13s\"\nfile = \"typhoon.xml\"\nkey = \"prov.key\"\n",
    )
    .unwrap();
    (cfg_path, alerts)
}

fn render(cfg: &Path, alerts: Option<&Path>, out: &Path, duration: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headend"));
    cmd.args(["render", "--config"])
        .arg(cfg)
        .args([
            "--channel",
            "pay",
            "--duration",
            duration,
            "--start",
            START,
            "-o",
        ])
        .arg(out);
    if let Some(a) = alerts {
        cmd.arg("--alerts").arg(a);
    }
    let res = run_bounded(&mut cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "render failed: {stderr}");
    stderr
}

/// Sections of `pid`, each with the index of the packet that completed it.
fn sections(data: &[u8], pid: u16) -> Vec<(usize, Vec<u8>)> {
    let mut asm = SectionAssembler::default();
    let mut out = Vec::new();
    for (i, raw) in data.chunks_exact(188).enumerate() {
        let p = TsPacket::new(Bytes::copy_from_slice(raw)).unwrap();
        if p.pid() == Pid::from_bits(pid) {
            asm.push(&p, true, |s| out.push((i, s.to_vec())));
        }
    }
    out
}

/// Seconds of output at packet `i`.
fn at(i: usize) -> f64 {
    (i * 188 * 8) as f64 / MUXRATE as f64
}

/// The largest gap (s) between sections of each (table_id, extension) sub-table, and from the
/// start to the first.
fn worst_gaps(secs: &[(usize, Vec<u8>)]) -> HashMap<u8, f64> {
    let mut last: HashMap<(u8, u16), usize> = HashMap::new();
    let mut worst: HashMap<u8, f64> = HashMap::new();
    for (i, s) in secs {
        let ext = if s[0] >= 0x4E {
            u16::from_be_bytes([s[3], s[4]])
        } else {
            0
        };
        let key = (s[0], ext);
        let gap = at(*i) - last.get(&key).map_or(0.0, |l| at(*l));
        let w = worst.entry(s[0]).or_default();
        *w = w.max(gap);
        last.insert(key, *i);
    }
    worst
}

/// `text` without terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn start() -> NaiveDateTime {
    DateTime::parse_from_rfc3339(START).unwrap().naive_utc()
}

#[test]
fn a_scheduled_scrambled_channel_with_si_and_an_alert_renders_as_on_air() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, alerts) = setup(dir.path(), false);
    let out = dir.path().join("out.ts");
    let began = std::time::Instant::now();
    let stderr = render(&cfg, Some(&alerts), &out, "40s");
    eprintln!("40 s rendered in {:?}", began.elapsed());
    let data = std::fs::read(&out).unwrap();
    assert_eq!(
        data.len() as u64,
        40 * MUXRATE / 8 / 188 * 188,
        "exact length"
    );

    // TDT: the simulated clock, to the second, wherever it is in the file.
    let tdts: Vec<(usize, NaiveDateTime)> = sections(&data, 0x14)
        .into_iter()
        .filter(|(_, s)| s[0] == 0x70)
        .map(|(i, s)| {
            (
                i,
                epg::si::parse_utc_time(&s[3..8].try_into().unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(tdts.len() >= 7, "TDT every 5 s: {}", tdts.len());
    for (i, t) in &tdts {
        let expected = start() + chrono::Duration::milliseconds((at(*i) * 1000.0) as i64);
        let off = (*t - expected).num_milliseconds().abs();
        assert!(
            off <= 1500,
            "TDT {t} at {:.2} s: expected about {expected}",
            at(*i)
        );
    }

    // SDT, NIT, TOT, EIT p/f and schedule at their rates.
    let si = [
        (0x11, "SDT"),
        (0x10, "NIT"),
        (0x14, "TDT/TOT"),
        (0x12, "EIT"),
    ];
    let mut gaps = HashMap::new();
    for (pid, _) in si {
        gaps.extend(worst_gaps(&sections(&data, pid)));
    }
    eprintln!("worst gaps: {gaps:?}");
    for (table, limit) in [
        (0x42, 2.0),
        (0x40, 10.0),
        (0x70, 6.0),
        (0x73, 6.0),
        (0x4E, 2.0),
        (0x50, 10.0),
    ] {
        let g = gaps.get(&table).copied().unwrap_or(f64::INFINITY);
        assert!(
            g <= limit,
            "table {table:#04x}: worst gap {g:.2} s > {limit} s"
        );
    }
    let sdt = sections(&data, 0x11)
        .into_iter()
        .find_map(|(_, s)| epg::network::parse_sdt(&s))
        .expect("an SDT");
    assert_eq!(sdt.services[0].name, "Pay");
    assert_eq!(sdt.services[0].provider, "Tests");
    let nit = sections(&data, 0x10)
        .into_iter()
        .find_map(|(_, s)| epg::network::parse_nit(&s))
        .expect("a NIT");
    assert_eq!(nit.network_id, 7);

    // EIT: the schedule lists the day's titles; p/f follows what goes on air, then the alert.
    let eit = sections(&data, 0x12);
    let schedule_titles: Vec<String> = eit
        .iter()
        .filter(|(_, s)| (0x50..=0x5F).contains(&s[0]))
        .filter_map(|(_, s)| epg::si::parse_eit_events(s))
        .flat_map(|(_, ev)| ev.into_iter().map(|e| e.title))
        .collect();
    for t in ["Evening News", "Weather", "Late Film"] {
        assert!(
            schedule_titles.iter().any(|x| x == t),
            "EIT schedule lacks {t}: {schedule_titles:?}"
        );
    }
    let mut present: Vec<(f64, String)> = Vec::new();
    for (i, s) in &eit {
        if s[0] != 0x4E || s[6] != 0 {
            continue;
        }
        if let Some((_, Some(e))) = epg::si::parse_eit(s) {
            if present.last().is_none_or(|(_, t)| *t != e.title) {
                present.push((at(*i), e.title));
            }
        }
    }
    eprintln!("EIT present: {present:?}");
    let when = |title: &str| present.iter().find(|(_, t)| t == title).map(|(s, _)| *s);
    let news = when("Evening News").expect("Evening News goes on air");
    let weather = when("Weather").expect("Weather goes on air");
    let alert = when(HEADLINE).expect("the alert is the present event");
    let film = when("Late Film").expect("the schedule comes back after the alert");
    // The present event flips when the item's first picture is presented, and goes out at
    // once (not at the EIT's next repetition). g.ts is cued to be presented on time (the
    // times here count packets from the file's start, which the station's clock, mapped to
    // UTC, runs a little ahead of: Evening News shows at 3.8 s); e.ts and a.ts (the alert
    // clip) are presented 1.4 s after their first packet (ffmpeg's mux delay in those
    // files), which the schedule does not make up. g.ts enters at its first random access
    // point, 0.36 s into the file.
    assert!((3.7..=4.6).contains(&news), "Evening News at {news:.2} s");
    assert!(
        (12.0..=13.7).contains(&weather),
        "Weather at {weather:.2} s"
    );
    assert!((13.0..=15.3).contains(&alert), "alert at {alert:.2} s");
    assert!((24.0..=24.3).contains(&film), "Late Film at {film:.2} s");
    // The EB tables go out while the alert is on.
    let ebit = sections(&data, 0x21);
    assert!(!ebit.is_empty(), "EBIT");
    assert!(at(ebit[0].0) >= 13.0, "EBIT before the alert");
    assert!(
        at(ebit[ebit.len() - 1].0) <= 21.0,
        "EBIT after the alert expired"
    );
    let parsed = epg::emergency::parse_ebit_table(&ebit[0].1).expect("EBIT parses");
    assert!(!parsed.messages.is_empty());
    // The alert clip's PMT (a.ts has no AC-3 track) replaces the programme's (Weather, e.ts,
    // has one) as the alert is accepted.
    let mut versions: Vec<(f64, u8, bool)> = Vec::new();
    for (i, s) in sections(&data, 0x1000) {
        if let Ok(pmt) = Pmt::parse(Pid::from_bits(0x1000), &s) {
            let ac3 = pmt.streams.iter().any(|e| e.stream_type == 0x81);
            if versions.last().is_none_or(|(_, v, _)| *v != pmt.version) {
                versions.push((at(i), pmt.version, ac3));
            }
        }
    }
    assert!(
        versions
            .iter()
            .any(|(t, _, ac3)| !ac3 && (13.0..=13.6).contains(t)),
        "the alert clip's PMT at 13.0..13.6 s: {versions:?}"
    );
    let plain = strip_ansi(&stderr);
    assert!(plain.contains("alerts_accepted=1"), "{plain}");
    let audit = std::fs::read_to_string(dir.path().join("out.ts.alerts-audit.jsonl")).unwrap();
    for event in ["\"accepted\"", "\"on_air\"", "\"off_air\"", "\"expired\""] {
        assert!(audit.contains(event), "audit log lacks {event}: {audit}");
    }

    // Scrambled: ES packets scrambled, ECMs on their PID, and a receiver with the ECM key
    // opens it; so does `hectl descramble --ecm-key`, and ffmpeg decodes the result.
    let key: [u8; 16] = drm::cipher::parse_hex16(ECM_KEY).unwrap();
    let kind: CipherKind = "sm4-cbc".parse().unwrap();
    let w = common::receive_scrambled("sm4-cbc", &data, kind, ECM_PID, &key, Wrap::Sm4);
    eprintln!(
        "{} ES packets scrambled, {} flips, {} ECMs",
        w.scrambled,
        w.flips.len(),
        w.ecms
    );
    assert!(w.scrambled > 10_000, "{} scrambled", w.scrambled);
    assert!(w.ecms >= 40, "{} ECMs", w.ecms);
    assert!(
        (8..=11).contains(&w.flips.len()),
        "{} flips in 40 s of 4 s periods",
        w.flips.len()
    );
    let clear = dir.path().join("clear.ts");
    let o = Command::new(common::hectl())
        .args([
            "descramble",
            "--cipher",
            "sm4-cbc",
            "--ecm-key",
            ECM_KEY,
            "--ecm-wrap",
            "sm4",
        ])
        .arg(&out)
        .arg(&clear)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clear_data = std::fs::read(&clear).unwrap();
    assert!(
        clear_data == w.out,
        "hectl descramble --ecm-key differs from the receiver"
    );
    let limits = CheckLimits {
        private_pids: vec![
            Pid::from_bits(ECM_PID),
            Pid::from_bits(0x21),
            Pid::from_bits(0x1FFB),
        ],
        // Joins into the schedule and the alert hold a frame or two (see docs/design/splice.md).
        max_video_step_ratio: 30.0,
        max_audio_step_ratio: 60.0,
        ..CheckLimits::across_joins(MUXRATE)
    };
    let r = check(&clear_data, &limits);
    let v = r.violations(&limits);
    assert!(v.is_empty(), "{}\n{r}", v.join("\n"));
    assert_eq!(r.cc_error_count, 0);
    let ffmpeg = tool("ffmpeg").expect("ffmpeg (scripts/test installs it)");
    // g.ts is entered at an open-GOP recovery point: ffmpeg names the clip's own references
    // from before it (see render.rs, h264_open_gop_entry); nothing else may show.
    let errors: Vec<String> = ffmpeg_errors(ffmpeg, &clear)
        .into_iter()
        .filter(|l| {
            !l.contains("mmco: unref short failure")
                && !l.contains("illegal short term buffer state")
        })
        .collect();
    assert!(errors.is_empty(), "ffmpeg: {errors:#?}");
}

/// The same config, start instant and key material give the same bytes, alert included.
#[test]
fn render_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, alerts) = setup(dir.path(), true);
    let (one, two) = (dir.path().join("one.ts"), dir.path().join("two.ts"));
    render(&cfg, Some(&alerts), &one, "20s");
    render(&cfg, Some(&alerts), &two, "20s");
    let (a, b) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    assert_eq!(a.len(), b.len());
    let first = a.chunks(188).zip(b.chunks(188)).position(|(x, y)| x != y);
    assert_eq!(first, None, "the renders differ from packet {first:?} on");
}

/// Without `--alerts` and with another start, the schedule of that time plays: from
/// 20:00:19 the playlist until the schedule takes over (filler), Late Film at 20:00:24; bad
/// alert files are refused with their place.
#[test]
fn the_start_instant_picks_the_schedule_and_bad_alert_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = setup(dir.path(), true);
    let out = dir.path().join("later.ts");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headend"));
    cmd.args(["render", "--config"])
        .arg(&cfg)
        .args([
            "--channel",
            "pay",
            "--duration",
            "15s",
            "--start",
            "2026-12-05T20:00:19+08:00",
            "-o",
        ])
        .arg(&out);
    let res = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let data = std::fs::read(&out).unwrap();
    let mut present: Vec<(f64, String)> = Vec::new();
    for (i, s) in sections(&data, 0x12) {
        if s[0] != 0x4E || s[6] != 0 {
            continue;
        }
        if let Some((_, Some(e))) = epg::si::parse_eit(&s) {
            if present.last().is_none_or(|(_, t)| *t != e.title) {
                present.push((at(i), e.title));
            }
        }
    }
    eprintln!("EIT present: {present:?}");
    assert!(!present.iter().any(|(_, t)| t == "Weather"), "{present:?}");
    assert!(
        present
            .iter()
            .any(|(s, t)| t == "Late Film" && (5.0..=6.2).contains(s)),
        "{present:?}"
    );

    for (text, expect) in [
        (
            "[[alert]]\nat = \"soon\"\nfile = \"typhoon.xml\"\nkey = \"prov.key\"\n",
            "alert[0].at",
        ),
        (
            "[[alert]]\nat = \"1s\"\nfile = \"missing.xml\"\nkey = \"prov.key\"\n",
            "alert[0].file",
        ),
        (
            "[[alert]]\nat = \"1s\"\nfile = \"typhoon.xml\"\n",
            "either `key`",
        ),
        (
            "[[alert]]\nat = \"1s\"\nfile = \"typhoon.xml\"\nkey = \"prov.key\"\ncolour = 1\n",
            "line 5",
        ),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_headend"));
        cmd.args(["render", "--config"])
            .arg(&cfg)
            .args(["--channel", "pay", "--duration", "2s", "--alerts"])
            .arg(&bad)
            .arg("-o")
            .arg(dir.path().join("x.ts"));
        let res = run_bounded(&mut cmd, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{text}");
        assert!(
            stderr.contains("bad.toml") && stderr.contains(expect),
            "{expect}: {stderr}"
        );
    }
}

/// An MPTS whose scrambled channel comes after a clear one: the scrambled channel's packets
/// are scrambled with its own key file's words (each scrambled channel takes the key source
/// made for it), the clear one's stay clear.
#[test]
fn in_an_mpts_each_scrambled_channel_gets_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("cw.keys");
    std::fs::write(&keys, "0123456789abcdef0123456789abcdef\n").unwrap();
    set_mode_600(&keys);
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nid = \"free\"\nservice_id = 1\nname = \"Free\"\nmuxrate = \"3M\"\nplaylist = [{e:?}]\n\
             pids = {{ pmt = 0x1001, video = 0x200, audio = 0x201, subtitle = 0x220, data = 0x230 }}\n\n\
             [[channel]]\nid = \"pay\"\nservice_id = 2\nname = \"Pay\"\nmuxrate = \"3M\"\nplaylist = [{e:?}]\n\
             pids = {{ pmt = 0x1002, video = 0x400, audio = 0x401, subtitle = 0x420, data = 0x430 }}\n\n\
             [channel.scrambling]\ncipher = \"dvb-cissa\"\nkeys = \"file\"\nkey_file = \"cw.keys\"\n\n\
             [[mpts]]\nid = \"m\"\ntransport_stream_id = 9\nmuxrate = \"7M\"\nchannels = [\"free\", \"pay\"]\n",
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    let out = dir.path().join("m.ts");
    let res = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_headend"))
            .args(["render", "--config"])
            .arg(&cfg)
            .args(["--mpts", "m", "--duration", "5s", "-o"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let data = std::fs::read(&out).unwrap();
    let (mut free, mut pay) = ((0, 0), (0, 0));
    for p in data.chunks_exact(188) {
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
        let scrambled = p[3] >> 6 != 0;
        let counts = match pid {
            0x200..=0x230 => &mut free,
            0x400..=0x430 => &mut pay,
            _ => continue,
        };
        if p[3] & 0x10 != 0 {
            counts.0 += 1;
            counts.1 += u64::from(scrambled);
        }
    }
    assert!(
        free.0 > 100 && free.1 == 0,
        "free: {free:?} (ES packets, scrambled)"
    );
    assert!(
        pay.0 > 100 && pay.1 == pay.0,
        "pay: {pay:?} (ES packets, scrambled)"
    );
}
