//! What the live benches (`capacity`, `alert_latency`) share: loopback multicast, receive
//! sockets stamped by the kernel, and a `headend run` that is stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};

/// Makes loopback carry ff11::/16 (root, idempotent) and checks that `probe` routes to `lo`.
pub fn multicast_on_lo(probe: Ipv6Addr) -> anyhow::Result<()> {
    let ip = |a: &[&str]| {
        let _ = Command::new("ip").args(a).stderr(Stdio::null()).status();
    };
    ip(&["link", "set", "lo", "multicast", "on"]);
    ip(&[
        "-6",
        "route",
        "add",
        "multicast",
        "ff11::/16",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    let out = Command::new("ip")
        .args(["-6", "route", "get", &probe.to_string()])
        .output()?;
    let route = String::from_utf8_lossy(&out.stdout);
    if !route.contains("dev lo") {
        bail!("{probe} does not route to lo: {route}");
    }
    Ok(())
}

/// A non-blocking IPv6 socket on `port` joined to `groups` on `lo`, with a `rcvbuf`-byte
/// receive buffer and kernel receive timestamps (see [`recv_stamped`]).
pub fn stamped_socket(port: u16, groups: &[Ipv6Addr], rcvbuf: usize) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_recv_buffer_size(rcvbuf)?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    for g in groups {
        s.join_multicast_v6(g, 1)
            .with_context(|| format!("joining {g}"))?;
    }
    let socket: UdpSocket = s.into();
    socket.set_nonblocking(true)?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &true,
    )?;
    Ok(socket)
}

/// One datagram, if one is waiting: its length, source port and kernel arrival time (ns,
/// realtime clock).
#[allow(clippy::ptr_arg)] // nix's recvmsg takes the Vec
pub fn recv_stamped(fd: RawFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> Option<(usize, u16, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT).ok()?;
    let port = msg.address?.port();
    let stamp = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => {
            Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        }
        _ => None,
    })?;
    Some((msg.bytes, port, stamp))
}

/// `headend run`, sent SIGTERM (then killed after 10 s) when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// Starts `headend run --config cfg` with `RUST_LOG=log`; returns it once on air, with the
    /// line it printed (`on air; http://ADDR/channels`).
    pub fn start(headend: &Path, cfg: &Path, log: &str) -> anyhow::Result<(Daemon, String)> {
        let mut child = Command::new(headend)
            .args(["run", "--config"])
            .arg(cfg)
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", headend.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let daemon = Daemon(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("on air") {
            bail!("headend did not come up: {line}");
        }
        Ok((daemon, line))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, seconds.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0) // CLK_TCK is 100 on Linux
}

/// A synthetic live source for the benches, made by ffmpeg once.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// Picture size, `WxH`.
    pub size: &'static str,
    /// Length, seconds.
    pub secs: u64,
    /// H.264 bitrate (an IDR every second), bit/s.
    pub video_bps: u64,
    /// The constant muxrate it is padded to, bit/s.
    pub muxrate: u64,
    /// An AC-3 track besides the AAC one.
    pub ac3: bool,
}

/// `spec` as a transport stream under `dir` (made once, then read back).
pub fn synthetic(dir: &Path, spec: Synthetic) -> anyhow::Result<Vec<u8>> {
    let out = dir.join(format!(
        "synthetic-{}-{}s-{}-{}{}.ts",
        spec.size,
        spec.secs,
        spec.video_bps,
        spec.muxrate,
        if spec.ac3 { "-ac3" } else { "" }
    ));
    if !out.exists() {
        eprintln!("making {}", out.display());
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size={}:rate=25:duration={}",
                spec.size, spec.secs
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={}",
                spec.secs
            ))
            .args(["-map", "0:v", "-map", "1:a"]);
        if spec.ac3 {
            cmd.args(["-map", "1:a", "-c:a:1", "ac3"]);
        }
        let v = spec.video_bps.to_string();
        cmd.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-keyint_min",
            "25",
        ])
        .args([
            "-sc_threshold",
            "0",
            "-b:v",
            &v,
            "-maxrate",
            &v,
            "-bufsize",
            &v,
        ])
        .args(["-c:a:0", "aac", "-f", "mpegts", "-muxrate"])
        .arg(spec.muxrate.to_string())
        .arg(&out);
        if !cmd.status().context("ffmpeg")?.success() {
            bail!("ffmpeg failed making {}", out.display());
        }
    }
    Ok(std::fs::read(&out)?)
}

/// A CBR transport stream at `rate` bit/s (720p H.264 + AAC padded to the rate), 30 s long.
pub fn cbr_source(dir: &Path, rate: u64) -> anyhow::Result<Vec<u8>> {
    synthetic(
        dir,
        Synthetic {
            size: "1280x720",
            secs: 30,
            video_bps: 5_000_000,
            muxrate: rate,
            ac3: false,
        },
    )
}
