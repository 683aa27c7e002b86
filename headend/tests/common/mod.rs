//! Helpers shared by the headend integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use playout::check::{check, CheckLimits, Report};

pub(crate) mod scrambled;

pub(crate) fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/media")
        .join(name)
}

/// A third-party tool, or `None` to skip outside CI. Under `CI=true` a missing tool fails
/// the test: the real check never silently disappears.
pub(crate) fn tool(name: &str) -> Option<&str> {
    let found = Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    present(name, found)
}

/// [`tool`] for a program that cannot run as is to show it exists (VLC refuses to run as
/// root, even for `--version`): found on the `PATH`.
pub(crate) fn tool_on_path(name: &str) -> Option<&str> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    present(name, found)
}

pub(crate) fn present(name: &str, found: bool) -> Option<&str> {
    if found {
        return Some(name);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{name} is required (scripts/test installs it)");
    }
    eprintln!("skipping the {name} part: {name} not installed (set CI=true to make this fatal)");
    None
}

/// Runs a command with a time limit; the child is killed when it runs over.
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} ran over {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the strict checker on `data` and fails the test on any violation.
pub(crate) fn checked(data: &[u8], limits: &CheckLimits) -> Report {
    checked_as("output", data, limits)
}

/// [`checked`], keeping `data` as `<target tmp>/failed-<name>.ts` when it fails (named in
/// the message), for a look with ffprobe or `hectl check` after a run that failed.
pub(crate) fn checked_as(name: &str, data: &[u8], limits: &CheckLimits) -> Report {
    let report = check(data, limits);
    let v = report.violations(limits);
    if !v.is_empty() {
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("failed-{name}.ts"));
        let saved = std::fs::write(&kept, data).map_or_else(
            |e| format!("not kept: {e}"),
            |()| format!("kept as {}", kept.display()),
        );
        panic!("{name} ({saved}): {}\n{report}", v.join("\n"));
    }
    report
}

/// ffmpeg's error lines when decoding every stream of `file`.
pub(crate) fn ffmpeg_errors(ffmpeg: &str, file: &Path) -> Vec<String> {
    let out = run_bounded(
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
            .arg(file)
            .args(["-map", "0", "-f", "null", "-"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Last message repeated"))
        .map(str::to_owned)
        .collect()
}

/// Sends `signal` ("TERM", "INT") to `child` and waits up to 10 s for it to exit; returns its
/// exit status and everything it wrote to its (piped) stderr.
pub(crate) fn signal_and_wait(child: &mut Child, signal: &str) -> (ExitStatus, String) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(sent, "kill -{signal}");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit within 10 s of SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// A child process (the daemon) killed when the test ends, however it ends.
pub(crate) struct Daemon(pub(crate) Child);

impl Daemon {
    /// `headend run --config cfg` with `RUST_LOG=log`, its stderr piped; returns once it is on
    /// air (its first stdout line, which it also checks).
    pub(crate) fn run(cfg: &Path, log: &str) -> Daemon {
        Daemon::run_env(cfg, log, &[])
    }

    /// As [`Daemon::run`], with `env` set in the daemon's environment only (tests of a file
    /// run side by side: `std::env::set_var` would reach another's daemon).
    pub(crate) fn run_env(cfg: &Path, log: &str, env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon(
            Command::new(env!("CARGO_BIN_EXE_headend"))
                .args(["run", "--config"])
                .arg(cfg)
                .envs(env.iter().copied())
                .env("RUST_LOG", log)
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn headend"),
        );
        let mut stdout = daemon.0.stdout.take().expect("piped stdout");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            assert_eq!(
                stdout.read(&mut byte).expect("read"),
                1,
                "daemon exited early"
            );
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line);
        assert!(line.starts_with("on air"), "{line}");
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's civil-from-days).
pub(crate) fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

/// A port that `free` says is free, below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel picked for `bind(:0)` may be picked again for an outgoing
/// connection (the fleet's etcd calls, HTTP clients) before the test's server binds it. Each
/// process walks its own stretch of 20000..32000 (from its pid), a port at most once.
fn unused_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % 12_000,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..12_000 {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A TCP port free on 127.0.0.1 right now (for the daemon's `[http] listen`).
pub(crate) fn free_tcp_port() -> u16 {
    unused_port(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// The group must stay on loopback: set up the routes as `scripts/test` does (root,
/// idempotent) and make sure before anything is sent.
pub(crate) fn multicast_on_lo(group: &str) {
    let ip = |args: &[&str]| {
        let _ = Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status();
    };
    ip(&["link", "set", "lo", "multicast", "on"]);
    ip(&[
        "-6",
        "route",
        "add",
        "local",
        "ff15::/16",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    let out = Command::new("ip")
        .args(["-6", "route", "get", group])
        .output()
        .expect("ip -6 route get");
    let route = String::from_utf8_lossy(&out.stdout);
    assert!(
        route.contains("dev lo"),
        "{group} does not route to lo ({route}); run scripts/test as root"
    );
}

pub(crate) fn multicast_receiver(group: std::net::Ipv6Addr, port: u16) -> std::net::UdpSocket {
    let s = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_recv_buffer_size(8 << 20).unwrap();
    s.bind(&std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into())
        .unwrap();
    s.join_multicast_v6(&group, 1).unwrap();
    s.into()
}

/// Elementary-stream PIDs of our channels: everything but PSI/SI (below 0x20), the PMT, the
/// ECMs, the emergency tables (EBIT 0x21, SCTE-18 0x1FFB by default) and null packets.
pub(crate) fn scrambled_es(pid: u16, ecm_pid: u16) -> bool {
    pid >= 0x20 && ![0x21, 0x1000, ecm_pid, 0x1FFB, 0x1FFF].contains(&pid)
}

/// A scrambled capture as a receiver saw it.
pub(crate) struct Received {
    /// The capture descrambled.
    pub(crate) out: Vec<u8>,
    /// Packet indexes where the parity flipped.
    pub(crate) flips: Vec<usize>,
    pub(crate) ecms: usize,
    pub(crate) scrambled: u64,
    /// Packets starting a PES (payload_unit_start) that did not descramble to a PES start
    /// code: the word the ECMs gave was not the one they were scrambled with.
    pub(crate) undecodable: Vec<usize>,
}

/// Walks a scrambled capture as a receiver does: ECMs on `ecm_pid` (opened with `key`) give
/// the words; every elementary-stream packet must be scrambled and everything else clear;
/// every parity flip must come after an ECM announcing its new word; no ECM may change the
/// word of the parity in use (words change only at a flip); every scrambled packet must find
/// its key. Panics naming the packet otherwise. PES starts that do not descramble to a start
/// code (a wrong word) are listed in [`Received::undecodable`].
pub(crate) fn receive_scrambled(
    label: &str,
    data: &[u8],
    kind: drm::cipher::CipherKind,
    ecm_pid: u16,
    key: &[u8; 16],
    wrap: drm::ecm::Wrap,
) -> Received {
    use drm::cipher::{ControlWord, Parity, Scrambler};
    let mut descrambler = Scrambler::new(kind, None);
    let mut ecm_asm = playout::psi::SectionAssembler::default();
    let mut announced: [Option<[u8; 16]>; 2] = [None, None];
    let mut in_use: [Option<[u8; 16]>; 2] = [None, None];
    let mut parity: Option<u8> = None;
    let mut r = Received {
        out: Vec::with_capacity(data.len()),
        flips: Vec::new(),
        ecms: 0,
        scrambled: 0,
        undecodable: Vec::new(),
    };
    for (k, raw) in data.chunks_exact(188).enumerate() {
        let mut pkt = raw.to_vec();
        let pid = u16::from_be_bytes([raw[1], raw[2]]) & 0x1FFF;
        let tsc = raw[3] >> 6;
        let has_payload = raw[3] & 0x10 != 0;
        if pid == ecm_pid {
            let p = playout::ts::TsPacket::new(bytes::Bytes::copy_from_slice(raw)).unwrap();
            ecm_asm.push(&p, true, |s| {
                let e = drm::ecm::parse_ecm(key, wrap, s)
                    .unwrap_or_else(|e| panic!("{label}: packet {k}: ECM: {e}"));
                r.ecms += 1;
                if let Some(tsc) = parity {
                    let slot = usize::from(tsc & 1);
                    let word = [e.even_cw, e.odd_cw][slot];
                    assert!(
                        in_use[slot].is_none_or(|w| w == word),
                        "{label}: packet {k}: ECM (CP_number {}) with a new word for parity {tsc:02b} while its old word is in use",
                        e.cp_number
                    );
                }
                announced = [Some(e.even_cw), Some(e.odd_cw)];
                descrambler.set_cw(Parity::Even, &ControlWord::new(e.even_cw));
                descrambler.set_cw(Parity::Odd, &ControlWord::new(e.odd_cw));
            });
        }
        let es = scrambled_es(pid, ecm_pid);
        if es && has_payload {
            assert!(
                tsc == 0b10 || tsc == 0b11,
                "{label}: packet {k} on PID 0x{pid:04X}: scrambling bits {tsc:02b}"
            );
            r.scrambled += 1;
            if parity != Some(tsc) {
                let slot = usize::from(tsc & 1);
                let word = announced[slot]
                    .unwrap_or_else(|| panic!("{label}: packet {k}: scrambled before any ECM"));
                if parity.is_some() {
                    r.flips.push(k);
                    assert_ne!(
                        in_use[slot],
                        Some(word),
                        "{label}: packet {k}: a flip to parity {tsc:02b} without an ECM announcing its new word first"
                    );
                }
                in_use[slot] = Some(word);
                parity = Some(tsc);
            }
        } else {
            assert_eq!(
                tsc, 0,
                "{label}: packet {k} on PID 0x{pid:04X} must stay clear"
            );
        }
        let n = descrambler.descramble(&mut pkt).unwrap();
        if tsc != 0 && es {
            assert_eq!(n, 1, "{label}: packet {k}: no key to descramble it");
            if pkt[1] & 0x40 != 0 {
                let at = if pkt[3] & 0x20 != 0 {
                    5 + usize::from(pkt[4])
                } else {
                    4
                };
                if pkt.get(at..at + 3) != Some(&[0, 0, 1][..]) {
                    r.undecodable.push(k);
                }
            }
        }
        r.out.extend_from_slice(&pkt);
    }
    r
}

/// `hectl` from the same target directory (built here if a `-p headend` run has not yet).
pub(crate) fn hectl() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_headend"))
        .parent()
        .unwrap()
        .to_owned();
    let exe = dir.join("hectl");
    if !exe.is_file() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "tools", "--bin", "hectl"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building hectl");
    }
    exe
}

/// Datagrams with their kernel receive timestamps (SO_TIMESTAMPNS, ns on the realtime clock).
/// The kernel stamps a datagram as it reaches the socket (on loopback, as it is sent), so a
/// receiving thread that runs late on a busy machine does not move the stamps.
pub(crate) type Stamped = Vec<(u64, Vec<u8>)>;

/// Receives on `socket` with kernel timestamps until `stop` is set, or for `limit` at most.
/// The socket's buffer is made large (8 MiB asked, `net.core.rmem_max` at most): with the
/// default (about 200 KB, half a second at 4 Mbit/s) a receiving thread held off the CPU by
/// other tests lost datagrams, seen as a continuity error in the output.
pub(crate) fn receive_stamped(
    socket: std::net::UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Stamped> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags,
        SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    setsockopt(&socket, ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(8 << 20)
        .expect("SO_RCVBUF");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut got = Stamped::new();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let started = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < limit {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let flags = MsgFlags::empty();
            let (n, stamp) = match recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                flags,
            ) {
                Ok(msg) => {
                    let stamp = msg
                        .cmsgs()
                        .expect("control messages")
                        .find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => {
                                Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                            }
                            _ => None,
                        });
                    (msg.bytes, stamp.expect("a kernel receive timestamp"))
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => panic!("recvmsg: {e}"),
            };
            got.push((stamp, buf[..n].to_vec()));
        }
        got
    })
}

/// Now on the realtime clock, in ns since 1970 (the clock the daemon maps schedules with).
pub(crate) fn utc_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64
}

/// The lines `child` writes to its (piped) stderr as they come, each with the [`utc_ns`] at
/// which it was read: a bound, however busy the machine, on when it was written. The channel
/// closes when the child closes its stderr.
pub(crate) fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<(i64, String)> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if tx.send((utc_ns(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends `request` on a new TCP connection to `addr` and reads the answer to its end; returns
/// the kernel receive stamp (SO_TIMESTAMPNS, ns on the realtime clock, like [`utc_ns`]) of the
/// answer's first bytes and the whole answer. On loopback the kernel stamps a segment as the
/// server writes it, so this is when the server answered, however late this thread reads it.
pub(crate) fn exchange_stamped(
    addr: impl std::net::ToSocketAddrs,
    request: &[u8],
) -> (i64, Vec<u8>) {
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags,
        SockaddrStorage,
    };
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Before anything can arrive: the stamp is taken as the segment comes in.
    setsockopt(&s, ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    s.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    let mut first = None;
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg =
            recvmsg::<SockaddrStorage>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                .unwrap_or_else(|e| panic!("recvmsg: {e}"));
        if msg.bytes == 0 {
            break;
        }
        let n = msg.bytes;
        if first.is_none() {
            first = msg
                .cmsgs()
                .expect("control messages")
                .find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(t) => {
                        Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec())
                    }
                    _ => None,
                });
            assert!(first.is_some(), "no kernel receive timestamp on the answer");
        }
        answer.extend_from_slice(&buf[..n]);
    }
    (first.expect("an answer"), answer)
}

/// Bytes per TS packet on the wire, in ns, at `muxrate`.
pub(crate) fn packet_ns(muxrate: u64) -> f64 {
    188.0 * 8.0 * 1e9 / muxrate as f64
}

/// A constant-bitrate capture as one byte string, with the kernel stamp of each datagram
/// (index of its first packet, stamp in ns on the realtime clock).
pub(crate) fn flatten(capture: &Stamped) -> (Vec<u8>, Vec<(usize, i64)>) {
    let mut data = Vec::new();
    let mut stamps = Vec::with_capacity(capture.len());
    for (t, d) in capture {
        stamps.push((data.len() / 188, *t as i64));
        data.extend_from_slice(&d[..d.len() / 188 * 188]);
    }
    (data, stamps)
}

/// The longest time between two datagrams of a capture (ns), by their kernel stamps.
pub(crate) fn longest_gap_ns(capture: &Stamped) -> u64 {
    capture
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].0))
        .max()
        .unwrap_or(0)
}

/// When packet `k` of a constant-bitrate capture was due on the wire, in realtime ns: the
/// packet's place in the stream (`k` packets at `muxrate`) on the line the datagrams' kernel
/// stamps follow within a second either side, taken as their median distance from that line.
/// A receiver's clock recovery does the same with PCR arrivals: a datagram the sender put out
/// late on a busy machine moves its own stamp, not the estimate, while a sender that really
/// runs late moves them all and so the estimate. Also returns the spread of those distances
/// (5th to 95th percentile, ns), to show how steady the pacing was.
pub(crate) fn due_ns(stamps: &[(usize, i64)], k: usize, muxrate: u64) -> (i64, i64) {
    let pkt = packet_ns(muxrate);
    let second = (1e9 / pkt) as usize;
    let mut off: Vec<i64> = stamps
        .iter()
        .filter(|(i, _)| i.abs_diff(k) <= second)
        .map(|(i, t)| t - (*i as f64 * pkt) as i64)
        .collect();
    assert!(off.len() > 10, "too few datagrams around packet {k}");
    off.sort_unstable();
    let q = |f: f64| off[((off.len() - 1) as f64 * f) as usize];
    (q(0.5) + (k as f64 * pkt) as i64, q(0.95) - q(0.05))
}

/// UTC second `t` as Beijing time in RFC 3339 (`2026-12-05T20:00:13+08:00`), as CAP carries it.
pub(crate) fn beijing(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S+08:00")
        .to_string()
}

/// A CAP 1.2 typhoon alert (sender prov@example.cn, event code 11B03) for GB/T 2260 area
/// `geocode`, sent at UTC second `sent`, expiring at `expires`.
pub(crate) fn cap_alert(
    identifier: &str,
    sent: i64,
    expires: i64,
    geocode: &str,
    headline: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>prov@example.cn</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <eventCode><valueName>GB/T 35965</valueName><value>11B03</value></eventCode>
    <expires>{expires}</expires>
    <headline>{headline}</headline>
    <description>台风中心将于今日登陆，请立即转移到安全地带。</description>
    <area><areaDesc>徐汇区</areaDesc><geocode><valueName>GB2260</valueName><value>{geocode}</value></geocode></area>
  </info>
</alert>
"#,
        sent = beijing(sent),
        expires = beijing(expires),
    )
}

/// Makes `path` readable by its owner only (key files must be).
pub(crate) fn set_mode_600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Per packet of a capture: (its datagram's kernel receive stamp, realtime ns; packet).
pub(crate) fn packets(cap: &Stamped) -> Vec<(i64, playout::ts::TsPacket)> {
    cap.iter()
        .flat_map(|(t, d)| {
            d.chunks_exact(188).map(move |p| {
                (
                    *t as i64,
                    playout::ts::TsPacket::new(bytes::Bytes::copy_from_slice(p)).unwrap(),
                )
            })
        })
        .collect()
}

/// Every complete section on `pid`, with the arrival of its last packet.
pub(crate) fn sections(pkts: &[(i64, playout::ts::TsPacket)], pid: u16) -> Vec<(i64, Vec<u8>)> {
    let mut asm = playout::psi::SectionAssembler::default();
    let mut out = Vec::new();
    for (t, p) in pkts {
        if p.pid() == playout::ts::Pid::from_bits(pid) {
            asm.push(p, true, |s| out.push((*t, s.to_vec())));
        }
    }
    out
}

/// A webhook receiver on 127.0.0.1: answers every POST 204 and keeps its JSON body, until
/// `stop` (or `limit`); returns its port and the bodies.
pub(crate) fn webhook_receiver(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> (u16, std::thread::JoinHandle<Vec<serde_json::Value>>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let began = std::time::Instant::now();
        let mut got = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && began.elapsed() < limit {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    assert!(head.starts_with("post "), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    break Some(raw[end + 4..end + 4 + len].to_vec());
                }
            };
            if let Some(b) = body {
                got.push(serde_json::from_slice(&b).expect("a JSON body"));
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        }
        got
    });
    (port, h)
}

/// The stoppage record's lines.
pub(crate) fn record_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `GET path` from 127.0.0.1:`port`: the body.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    http_get_with(port, path, &[])
}

/// The value on the first line of `text` (a `/metrics` scrape) that starts with `name` (a
/// metric's name and labels, as far as they tell it apart); panics if there is none.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Checks `text` (a `/metrics` scrape) with `promtool check metrics`: it parses and follows
/// Prometheus's conventions (no lint).
pub(crate) fn promtool_check_metrics(text: &str) {
    let Some(promtool) = tool_on_path("promtool") else {
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`http_get`] with request headers.
pub(crate) fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, b)| b.to_owned())
}

/// `hectl report ARGS` against the daemon's API on 127.0.0.1:`http` (10 s at most).
pub(crate) fn hectl_report(http: u16, args: &[&str]) -> Output {
    run_bounded(
        Command::new(hectl())
            .arg("report")
            .args(args)
            .args(["--server", &format!("http://127.0.0.1:{http}")]),
        Duration::from_secs(10),
    )
}

/// A live source, `secs` long, encoded by ffmpeg: 320x180 H.264 (an IDR every second) and
/// AAC, plus AC-3 when `ac3` (so main and backup are told apart by their PMTs). Looping a
/// fixture would not do: ffmpeg's `-stream_loop` overlaps an audio frame at each join.
pub(crate) fn source(dir: &Path, name: &str, secs: u32, ac3: bool) -> Vec<u8> {
    lavfi_source(dir, name, "testsrc2=size=320x180:rate=25", secs, ac3)
}

/// [`source`] with the picture of lavfi source `video` (`color=c=red:size=320x180:rate=25`:
/// every picture one colour, a frame marker), written to `dir/name.ts`.
pub(crate) fn lavfi_source(dir: &Path, name: &str, video: &str, secs: u32, ac3: bool) -> Vec<u8> {
    let ffmpeg = tool("ffmpeg").expect("ffmpeg is needed to make the live sources");
    let out = dir.join(format!("{name}.ts"));
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-fflags",
        "+bitexact",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(format!("{video}:duration={secs}"))
    .args(["-f", "lavfi", "-i"])
    .arg(format!(
        "sine=frequency=440:sample_rate=48000:duration={secs}"
    ))
    .args(["-map", "0:v", "-map", "1:a"]);
    if ac3 {
        cmd.args(["-map", "1:a"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-b:v",
        "600k",
        "-threads",
        "1",
        "-c:a:0",
        "aac",
        "-b:a:0",
        "96k",
    ]);
    if ac3 {
        cmd.args(["-c:a:1", "ac3", "-b:a:1", "128k"]);
    }
    cmd.args(["-flags", "+bitexact", "-f", "mpegts", "-muxrate", "1200k"])
        .arg(&out);
    let r = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::read(out).unwrap()
}

/// Each 7-packet datagram of `data` with when to send it (ns after the start), from the PCR
/// of `pcr_pid` interpolated by byte position.
pub(crate) fn paced(data: &[u8], pcr_pid: u16) -> Vec<(u64, Vec<u8>)> {
    let mut pcrs: Vec<(usize, u64)> = Vec::new();
    for (k, p) in data.chunks_exact(playout::ts::PACKET_SIZE).enumerate() {
        let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
        if pid == pcr_pid && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
            let base = u64::from(p[6]) << 25
                | u64::from(p[7]) << 17
                | u64::from(p[8]) << 9
                | u64::from(p[9]) << 1
                | u64::from(p[10] >> 7);
            pcrs.push((k, base * 300));
        }
    }
    assert!(pcrs.len() > 10);
    let t0 = pcrs[0].1;
    let at = |k: usize| -> u64 {
        let i = pcrs
            .partition_point(|(j, _)| *j <= k)
            .clamp(1, pcrs.len() - 1);
        let ((ka, ta), (kb, tb)) = (pcrs[i - 1], pcrs[i]);
        let t = ta as f64 + (k as f64 - ka as f64) * (tb as f64 - ta as f64) / (kb - ka) as f64;
        ((t - t0 as f64).max(0.0) / 27.0 * 1000.0) as u64
    };
    data.chunks(7 * playout::ts::PACKET_SIZE)
        .enumerate()
        .map(|(d, chunk)| (at(d * 7), chunk.to_vec()))
        .collect()
}

/// A free UDP port on 127.0.0.1 (bound and let go; see [`unused_port`]).
pub(crate) fn free_udp_port() -> u16 {
    unused_port(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// What [`sender`] does to the main.
pub(crate) const MAIN_ON: u8 = 0;
pub(crate) const MAIN_KILLED: u8 = 1;
pub(crate) const MAIN_CORRUPT: u8 = 2;

/// Sends `main` and `backup` to their ports in real time from `start`, the main as `mode`
/// says; returns the realtime instant (ns) of the main's last datagram before each kill.
pub(crate) fn sender(
    main: Vec<(u64, Vec<u8>)>,
    backup: Vec<(u64, Vec<u8>)>,
    ports: (u16, u16),
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let (mut i, mut j) = (0, 0);
        let mut last_main = 0;
        let mut kills = Vec::new();
        let mut was = MAIN_ON;
        let mut dropped = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && (i < main.len() || j < backup.len())
        {
            let now = start.elapsed().as_nanos() as u64;
            let m = mode.load(std::sync::atomic::Ordering::Relaxed);
            if m == MAIN_KILLED && was != MAIN_KILLED {
                kills.push(last_main);
            }
            was = m;
            let mut sent = false;
            if i < main.len() && main[i].0 <= now {
                match m {
                    MAIN_ON => {
                        let _ = socket.send_to(&main[i].1, ("127.0.0.1", ports.0));
                        last_main = utc_ns();
                    }
                    MAIN_CORRUPT => {
                        // One packet in five lost.
                        let mut d = Vec::new();
                        for p in main[i].1.chunks(playout::ts::PACKET_SIZE) {
                            dropped += 1;
                            if dropped % 5 != 0 {
                                d.extend_from_slice(p);
                            }
                        }
                        let _ = socket.send_to(&d, ("127.0.0.1", ports.0));
                    }
                    _ => {}
                }
                i += 1;
                sent = true;
            }
            if j < backup.len() && backup[j].0 <= now {
                let _ = socket.send_to(&backup[j].1, ("127.0.0.1", ports.1));
                j += 1;
                sent = true;
            }
            if !sent {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        kills
    })
}

/// Writes `sched_dir/channel/DATE.toml`: one item per `(UTC second, file, title)`, each a
/// hard start at that second (times in UTC: the channel's zone must be UTC), dated by the
/// first.
pub(crate) fn write_schedule(sched_dir: &Path, channel: &str, items: &[(i64, &str, &str)]) {
    let day = |t: i64, f: &str| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format(f)
            .to_string()
    };
    let date = day(items[0].0, "%Y-%m-%d");
    let mut text = format!("date = \"{date}\"\n");
    for (t, file, title) in items {
        text.push_str(&format!(
            "\n[[item]]\nstart = \"{}\"\nfile = \"{file}\"\ntitle = \"{title}\"\n",
            day(*t, "%H:%M:%S")
        ));
    }
    let dir = sched_dir.join(channel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{date}.toml")), text).unwrap();
}

/// Where the browser tests' npm packages are (`npm ci` there in `scripts/test`): the
/// playwright-core driver and hls.js, with the scripts that use them.
pub(crate) fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page")
}

/// Debian's chromium (or `$CHROMIUM`), node and the npm packages `packages` (files under
/// `node_modules`), or `None` to skip outside CI (fatal under `CI=true`, as [`tool`]).
pub(crate) fn browser_with(packages: &[&str]) -> Option<()> {
    let chromium =
        Path::new(&std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into())).is_file();
    present("chromium", chromium)?;
    present(
        "node",
        Command::new("node").arg("--version").output().is_ok(),
    )?;
    for p in packages {
        let found = page_dir().join("node_modules").join(p).is_file();
        present(&format!("{p} (npm ci in headend/tests/page)"), found)?;
    }
    Some(())
}

/// One HTTP/1.0 request: (status, body).
pub(crate) fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
