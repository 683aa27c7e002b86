//! `hectl receive`: a channel's stream from the network to a file (or stdout), and with
//! `--merge` the SMPTE ST 2022-7 merge of two paths carrying the same RTP stream
//! (`playout::rtp::Merger`): a datagram lost on one path is taken from the other, and a path
//! that fails entirely costs nothing. For tests and for a downstream that wants one clean
//! stream from a seamlessly protected pair.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use playout::rtp::Merger;
use playout::units::parse_duration;

#[derive(Args)]
pub(crate) struct ReceiveArgs {
    /// Where the stream arrives: `rtp://HOST:PORT` or `udp://HOST:PORT` (a multicast group is
    /// joined, IPv6 ones on `--interface`; another address is bound). Two with `--merge`.
    #[arg(required = true, num_args = 1..=2)]
    urls: Vec<String>,
    /// SMPTE ST 2022-7: merge the two RTP paths by sequence number.
    #[arg(long)]
    merge: bool,
    /// How long one path may lag the other (a missing datagram is waited for this long).
    #[arg(long, default_value = "50ms")]
    skew: String,
    /// Stop after this long (default: run until killed).
    #[arg(long = "for")]
    duration: Option<String>,
    /// The interface multicast groups are joined on (needed for IPv6 groups).
    #[arg(long)]
    interface: Option<String>,
    /// The output file, `-` for stdout.
    #[arg(short, long)]
    output: PathBuf,
}

/// One path's socket and whether it carries RTP.
struct Path {
    socket: UdpSocket,
    rtp: bool,
    label: String,
}

pub(crate) fn run(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        args.merge == (args.urls.len() == 2),
        "give two URLs with --merge, one without"
    );
    let skew = parse_duration(&args.skew)
        .map_err(anyhow::Error::msg)
        .context("--skew")?;
    let until = args
        .duration
        .as_deref()
        .map(|d| {
            parse_duration(d)
                .map_err(anyhow::Error::msg)
                .context("--for")
        })
        .transpose()?
        .map(|d| Instant::now() + d);
    let paths = args
        .urls
        .iter()
        .map(|u| open(u, args.interface.as_deref()))
        .collect::<anyhow::Result<Vec<Path>>>()?;
    ensure!(
        !args.merge || paths.iter().all(|p| p.rtp),
        "--merge takes rtp:// paths (the merge goes by RTP sequence number)"
    );
    let epoch = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<(usize, u64, Vec<u8>)>(65_536);
    let labels: Vec<String> = paths.iter().map(|p| p.label.clone()).collect();
    let rtp = paths[0].rtp;
    for (i, p) in paths.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("receive-{i}"))
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match p.socket.recv(&mut buf) {
                        Ok(n) => {
                            let at = epoch.elapsed().as_nanos() as u64;
                            if tx.send((i, at, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            eprintln!("{}: {e}", p.label);
                            return;
                        }
                    }
                }
            })?;
    }
    drop(tx);
    let mut sink = outfile::Sink::open(&args.output)?;
    let mut merger = Merger::new(skew.as_nanos() as u64);
    let mut ready: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0u64;
    let mut datagrams = [0u64; 2];
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let got = rx.recv_timeout(Duration::from_millis(2));
        let now = epoch.elapsed().as_nanos() as u64;
        match got {
            Ok((path, at, d)) => {
                datagrams[path] += 1;
                if rtp {
                    merger.push(path, &d, at, &mut ready);
                } else {
                    ready.push(d);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        merger.tick(now, &mut ready);
        for p in ready.drain(..) {
            sink.write_all(&p)
                .with_context(|| args.output.display().to_string())?;
            bytes += p.len() as u64;
        }
    }
    merger.finish(&mut ready);
    for p in ready.drain(..) {
        sink.write_all(&p)?;
        bytes += p.len() as u64;
    }
    sink.flush()?;
    sink.finish()?;
    let s = merger.stats();
    if args.merge {
        eprintln!(
            "{}: {} datagrams, {} taken; {}: {} datagrams, {} taken; {} duplicates ({} not the same bytes), {} lost on both, {} late; {} bytes out",
            labels[0], datagrams[0], s.taken[0], labels[1], datagrams[1], s.taken[1],
            s.duplicates, s.differing, s.lost, s.late, bytes
        );
        if s.differing > 0 {
            eprintln!("warning: the two paths do not carry the same stream ({} copies differ): their senders are not in step, the merge is not seamless", s.differing);
        }
    } else {
        eprintln!(
            "{}: {} datagrams, {} lost{}; {} bytes out",
            labels[0],
            datagrams[0],
            s.lost,
            if rtp { " (RTP sequence gaps)" } else { "" },
            bytes
        );
    }
    // A JSON line for scripts and tests.
    eprintln!(
        "{{\"datagrams\":[{},{}],\"taken\":[{},{}],\"duplicates\":{},\"differing\":{},\"lost\":{},\"late\":{},\"not_rtp\":{},\"bytes\":{bytes}}}",
        datagrams[0], datagrams[1], s.taken[0], s.taken[1], s.duplicates, s.differing, s.lost, s.late, s.not_rtp
    );
    Ok(ExitCode::SUCCESS)
}

/// The socket of `url`: bound to its port, joined to its group if it is one.
fn open(url: &str, interface: Option<&str>) -> anyhow::Result<Path> {
    let (rtp, rest) = if let Some(r) = url.strip_prefix("rtp://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("udp://") {
        (false, r)
    } else {
        bail!("`{url}`: expected rtp://HOST:PORT or udp://HOST:PORT");
    };
    let addr: SocketAddr = rest
        .to_socket_addrs()
        .with_context(|| format!("`{url}`"))?
        .next()
        .with_context(|| format!("`{url}`: no address"))?;
    let group = addr.ip().is_multicast();
    let bind = match (group, addr.ip()) {
        (true, IpAddr::V6(_)) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port())),
        (true, IpAddr::V4(_)) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())),
        (false, _) => addr,
    };
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Two paths may share a port (on two groups).
    s.set_reuse_address(true)?;
    let _ = s.set_recv_buffer_size(8 << 20);
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&bind.into())
        .with_context(|| format!("`{url}`: binding {bind}"))?;
    match addr.ip() {
        IpAddr::V6(g) if group => {
            let name =
                interface.with_context(|| format!("`{url}`: an IPv6 group needs --interface"))?;
            let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .with_context(|| format!("--interface {name}: no such interface"))?;
            s.join_multicast_v6(&g, index)
                .with_context(|| format!("`{url}`: joining {g} on {name}"))?;
        }
        IpAddr::V4(g) if group => {
            s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)
                .with_context(|| format!("`{url}`: joining {g}"))?;
        }
        _ => {}
    }
    let socket: UdpSocket = s.into();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(Path {
        socket,
        rtp,
        label: url.to_owned(),
    })
}
