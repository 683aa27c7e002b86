//! SimulCrypt end to end: `headend` (the SCS) scrambles a channel with words it provisions
//! over TCP to our test ECMG (`hectl ecmg`, ETSI TS 103 197), crypto-period 2 s, for a minute.
//! Every crypto-period's ECM (from the ECMG) is on air before its parity flip; when the ECMG
//! is killed mid-run the configured policy (keep the last word) holds: no flip, the stream
//! stays scrambled with the last announced word and descramblable, and an alarm is logged;
//! when it comes back the SCS reconnects and rotation resumes. The descrambled capture is
//! conformant and ffmpeg decodes it without an error.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drm::ecm::Wrap;
use playout::check::{check, CheckLimits};
use playout::ts::Pid;

mod common;
use common::{ffmpeg_errors, hectl, media, signal_and_wait, tool, Daemon};

const KEY: &str = "8899aabbccddeeff0011223344556677";
const ECM_PID: u16 = 0x1FF0;

struct Ecmg(Child);

impl Drop for Ecmg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the test ECMG on `addr`; returns it and the address it listens on.
fn ecmg(addr: &str) -> (Ecmg, String) {
    let mut child = Command::new(hectl())
        .args(["ecmg", "--listen", addr, "--key", KEY, "--wrap", "aes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hectl ecmg");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bound = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("hectl ecmg said {line:?}"))
        .to_owned();
    (Ecmg(child), bound)
}

#[test]
fn scs_against_the_test_ecmg_with_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (first, addr) = ecmg("127.0.0.1:0");
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[channel]]\nid = \"pay\"\nservice_id = 9\nname = \"Pay\"\n\
             muxrate = \"3M\"\nplaylist = [{a:?}, {e:?}]\n\n[channel.scrambling]\ncipher = \"dvb-cissa\"\n\
             crypto_period = \"2s\"\nkeys = \"simulcrypt\"\non_failure = \"keep\"\n\
             [channel.scrambling.simulcrypt]\necmg = \"{addr}\"\nsuper_cas_id = 0x4AD10000\n\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{port}\"\n",
            a = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            rx.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut data: Vec<(Instant, Vec<u8>)> = Vec::new();
            let mut buf = [0u8; 2048];
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90) {
                if let Ok(n) = rx.recv(&mut buf) {
                    data.push((Instant::now(), buf[..n].to_vec()));
                }
            }
            data
        })
    };
    let mut daemon = Daemon::run(&cfg, "info");
    let t0 = Instant::now();
    // 25 s of rotation, then the ECMG dies for 15 s, then 20 s more.
    std::thread::sleep(Duration::from_secs(25));
    drop(first);
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let (second, again) = ecmg(&addr);
    assert_eq!(again, addr);
    let restarted = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    drop(second);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let datagrams = receiver.join().unwrap();
    eprintln!("ran {:?}", t0.elapsed());

    let mut data = Vec::new();
    let mut arrivals = Vec::new();
    for (t, d) in &datagrams {
        for _ in 0..d.len() / 188 {
            arrivals.push(*t);
        }
        data.extend_from_slice(&d[..d.len() / 188 * 188]);
    }
    let key = drm::cipher::parse_hex16(KEY).unwrap();
    let kind = "dvb-cissa".parse().unwrap();
    let w = common::receive_scrambled("simulcrypt", &data, kind, ECM_PID, &key, Wrap::Aes128);
    let flip_times: Vec<Instant> = w.flips.iter().map(|&k| arrivals[k]).collect();
    let before = flip_times.iter().filter(|t| **t < killed).count();
    let during = flip_times
        .iter()
        .filter(|t| **t > killed + Duration::from_secs(3) && **t < restarted)
        .count();
    let after = flip_times.iter().filter(|t| **t > restarted).count();
    eprintln!(
        "{} ECMs, flips: {before} before the outage, {during} during, {after} after",
        w.ecms
    );
    assert!(before >= 10, "rotation every 2 s: {before} flips in 25 s");
    assert_eq!(during, 0, "no flip without the ECMG (keep the last word)");
    assert!(
        after >= 6,
        "rotation resumed: {after} flips in the last 20 s"
    );
    assert!(stderr.contains("ALARM: ECMG link down"), "{stderr}");
    assert!(
        stderr.contains("ALARM: crypto-period without its word"),
        "{stderr}"
    );
    assert!(
        stderr.matches("ECMG stream ready").count() >= 2,
        "reconnected: {stderr}"
    );

    let limits = CheckLimits {
        private_pids: vec![Pid::from_bits(ECM_PID)],
        ..CheckLimits::across_joins(3_000_000)
    };
    let r = check(&w.out, &limits);
    let v = r.violations(&limits);
    assert!(v.is_empty(), "{}\n{r}", v.join("\n"));
    if let Some(ffmpeg) = tool("ffmpeg") {
        let file = dir.path().join("descrambled.ts");
        std::fs::write(&file, &w.out).unwrap();
        let errors = ffmpeg_errors(ffmpeg, &file);
        assert!(errors.is_empty(), "ffmpeg: {errors:#?}");
    }
}
