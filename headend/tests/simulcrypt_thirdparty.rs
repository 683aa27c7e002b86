//! SimulCrypt against an implementation nobody here wrote: PyPI's `simulcrypt` package
//! (pinned in scripts/test, in its venv), whose `scs` and `mux` simulators and message parser
//! follow ETSI TS 103 197 on their own. No third-party ECMG or EMMG is installable here (TSDuck
//! has no package), so:
//!
//! - its SCS talks to our test ECMG (`hectl ecmg`, version 3, ECMs as TS packets) and its MUX
//!   to our test EMMG (`hectl emmg`): the peers our head-end tests use are sound;
//! - the head-end's own SCS (falling back from version 3 to a version-2 ECMG) and its MUX side
//!   (with `hectl emmg`) run through recording relays, and every message of both directions
//!   must parse and validate with the package's parser (mandatory parameters of the message's
//!   protocol version present, fixed lengths right, no parameter repeated beyond its count).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::scrambled::{aes_ecmg, Killed};
use common::{free_tcp_port, hectl, media, signal_and_wait, Daemon};

const KEY: &str = "8899aabbccddeeff0011223344556677";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The venv's Python with the `simulcrypt` package (scripts/test makes it), or
/// `$HECTL_TEST_PYTHON`; `None` (a skip) only outside CI.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("HECTL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python")
        });
    let ok = Command::new(&python)
        .args(["-c", "import simulcrypt.message"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        !ci(),
        "{} cannot import simulcrypt: scripts/test installs it (target/pyenv/bin/pip install simulcrypt==0.1.0)",
        python.display()
    );
    eprintln!("skipping: no {} with simulcrypt", python.display());
    None
}

/// The package's console script `name` beside `python`.
fn script(python: &Path, name: &str) -> PathBuf {
    python.with_file_name(name)
}

/// Starts `hectl ecmg` with `args`; returns it and its port.
fn ecmg(args: &[&str]) -> (Killed, u16) {
    let (child, addr) = aes_ecmg("127.0.0.1:0", KEY, args);
    let port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
    (child, port.unwrap_or_else(|| panic!("{addr}")))
}

/// Runs `cmd` for `secs` (then kills it): its stdout.
fn run_for(cmd: &mut Command, secs: u64) -> String {
    let mut child = Killed(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_secs(secs));
    drop(child);
    reader.join().unwrap()
}

#[test]
fn our_test_peers_talk_to_a_third_party_scs_and_mux() {
    let Some(python) = python() else { return };
    // Its SCS (version 3, two streams, 16-byte words) against our ECMG's TS-packet ECMs.
    let (_ecmg, port) = ecmg(&["--ts-packets"]);
    let out = run_for(
        Command::new(script(&python, "scs")).args([
            "0x4AD10000",
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-128",
            "-a",
            "01",
            "-a",
            "02",
        ]),
        4,
    );
    let ecms = out
        .lines()
        .filter(|l| l.contains("<= ECMG  ECM_RESPONSE"))
        .count();
    assert!(ecms >= 4, "{out}");
    assert!(
        out.contains("section_TSpkt_flag=1") && out.contains("ECM_datagram=(188 bytes)"),
        "{out}"
    );
    assert!(!out.contains("invalid") && !out.contains("ERROR"), "{out}");

    // Its MUX against our EMMG: set-up, allocation, 30 data_provisions.
    let port = free_tcp_port();
    let mut mux = Killed(
        Command::new(script(&python, "mux"))
            .args(["0x4AD10000", "-p", &port.to_string(), "-b", "100", "-d"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut mux_out = mux.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = mux_out.read_to_string(&mut s);
        s
    });
    let mut emmg = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let o = Command::new(hectl())
            .args(["emmg", "--mux", &format!("127.0.0.1:{port}")])
            .args([
                "--data-channel-id",
                "0",
                "--data-stream-id",
                "0",
                "--data-id",
                "0",
            ])
            .args(["--count", "30"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stderr).contains("connect") && !o.status.success() {
            continue;
        }
        emmg = Some(o);
        break;
    }
    let emmg = emmg.expect("the MUX simulator listening");
    let said = String::from_utf8_lossy(&emmg.stdout).into_owned();
    std::thread::sleep(Duration::from_millis(500));
    drop(mux);
    let out = reader.join().unwrap();
    assert!(
        emmg.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&emmg.stderr)
    );
    assert!(
        said.contains("ready bandwidth=100") && said.contains("sent datagrams=30"),
        "{said}"
    );
    assert_eq!(out.matches("<= EMMG  DATA_PROVISION").count(), 30, "{out}");
    assert!(out.contains("=> EMMG  STREAM_BW_ALLOCATION"), "{out}");
    assert!(!out.contains("invalid"), "{out}");
}

/// A TCP relay from `listen` to `to` that writes each connection's bytes, each direction in a
/// file of its own (`{n}-up.bin`: client to server, `{n}-down.bin`), until `stop`.
fn relay(
    listener: TcpListener,
    to: u16,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        let mut pumps = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            client.set_nonblocking(false).unwrap();
            for (from, into, name) in [
                (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    "up",
                ),
                (
                    server.try_clone().unwrap(),
                    client.try_clone().unwrap(),
                    "down",
                ),
            ] {
                let file = dir.join(format!("{n}-{name}.bin"));
                let stop = stop.clone();
                pumps.push(std::thread::spawn(move || pump(from, into, &file, &stop)));
            }
            n += 1;
        }
        for p in pumps {
            let _ = p.join();
        }
        n
    })
}

fn pump(mut from: TcpStream, mut into: TcpStream, file: &Path, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut log = std::fs::File::create(file).unwrap();
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                log.write_all(&buf[..k]).unwrap();
                if into.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Write);
}

/// The package's parse of every recorded stream: (file, version, message_type) of each
/// message; panics on one it finds invalid.
fn parse_all(python: &Path, dir: &Path) -> Vec<(String, u8, u16)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/simulcrypt_parse.py"))
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the third-party parser refused a message:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| !l.contains(" partial "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let name = Path::new(f[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                f[1].parse().unwrap(),
                u16::from_str_radix(f[2], 16).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_head_ends_messages_validate_with_a_third_party_parser() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    std::fs::create_dir(&rec).unwrap();
    let ecm_rec = rec.join("ecmg");
    let emm_rec = rec.join("emmg");
    std::fs::create_dir(&ecm_rec).unwrap();
    std::fs::create_dir(&emm_rec).unwrap();
    // A version-2 ECMG with TS-packet ECMs (as deployed ones default), behind a relay.
    let (_ecmg, ecmg_port) = ecmg(&["--version", "2", "--ts-packets"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ecm_relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let ecm_relay_port = ecm_relay.local_addr().unwrap().port();
    let r1 = relay(ecm_relay, ecmg_port, ecm_rec.clone(), stop.clone());
    let (http, emm_port) = (free_tcp_port(), free_tcp_port());
    let out = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[[channel]]\nid = \"pay\"\nservice_id = 9\nname = \"Pay\"\n\
             muxrate = \"3M\"\nplaylist = [{a:?}]\n[channel.scrambling]\ncrypto_period = \"1s\"\nkeys = \"simulcrypt\"\n\
             [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:{ecm_relay_port}\"\nsuper_cas_id = 0x4AD10000\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{o}\"\n\n\
             [[emmg]]\nlisten = \"127.0.0.1:{emm_port}\"\nclient_id = 0x4AD10000\nemm_pid = 0x1FF8\n",
            a = media("a.ts").display().to_string(),
            o = out.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let emm_relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let emm_relay_port = emm_relay.local_addr().unwrap().port();
    let r2 = relay(emm_relay, emm_port, emm_rec.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    for version in ["3", "2"] {
        let o = Command::new(hectl())
            .args(["emmg", "--mux", &format!("127.0.0.1:{emm_relay_port}")])
            .args(["--version", version, "--count", "20"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    assert!(
        r1.join().unwrap() >= 2,
        "the SCS reconnected after the version-3 refusal"
    );
    r2.join().unwrap();
    assert!(stderr.contains("trying version 2"), "{stderr}");
    assert!(
        stderr.contains("SimulCrypt version 2, ECMs as TS packets"),
        "{stderr}"
    );

    let ecm = parse_all(&python, &ecm_rec);
    let has = |v: &[(String, u8, u16)], dir: &str, version: u8, ty: u16| {
        v.iter()
            .any(|(f, ver, t)| f.ends_with(&format!("-{dir}.bin")) && *ver == version && *t == ty)
    };
    // The SCS: channel_setup in 3 (refused with channel_error), then everything in 2.
    assert!(has(&ecm, "up", 3, 0x0001), "{ecm:?}");
    assert!(has(&ecm, "down", 2, 0x0005), "{ecm:?}");
    for ty in [0x0001, 0x0101, 0x0201] {
        assert!(has(&ecm, "up", 2, ty), "0x{ty:04x}: {ecm:?}");
    }
    for ty in [0x0003, 0x0103, 0x0202] {
        assert!(has(&ecm, "down", 2, ty), "0x{ty:04x}: {ecm:?}");
    }
    let cw = ecm
        .iter()
        .filter(|(f, v, t)| f.ends_with("-up.bin") && *v == 2 && *t == 0x0201)
        .count();
    assert!(cw >= 3, "{cw} CW_provisions in 5 s of 1 s periods");

    // The MUX side: the head-end's answers in the EMMG's version, and what the EMMG sent.
    let emm = parse_all(&python, &emm_rec);
    for version in [2, 3] {
        for ty in [0x0013, 0x0113, 0x0118] {
            assert!(
                has(&emm, "down", version, ty),
                "v{version} 0x{ty:04x}: {emm:?}"
            );
        }
        assert!(has(&emm, "up", version, 0x0211), "v{version}: {emm:?}");
    }
}
