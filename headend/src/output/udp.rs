//! UDP and RTP (RFC 3550, RFC 2250 payload type 33) datagrams of 7 TS packets to an IPv6 or
//! IPv4 address, unicast or multicast, from a non-blocking socket: a destination that fails
//! or pushes back loses datagrams (counted, logged at most once a minute) and never stalls
//! the caller.

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{OutputConfig, OutputKind};

/// RTP payload type of MPEG-2 transport streams (RFC 3551).
const RTP_PT_MP2T: u8 = 33;

/// Counters of one output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutputStats {
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
    /// Datagrams the kernel refused (no route, buffer full, ...).
    pub(crate) errors: u64,
}

/// One configured destination with its socket.
pub(crate) struct UdpOutput {
    socket: Socket,
    label: String,
    rtp: Option<RtpState>,
    stats: OutputStats,
    last_warn: Option<Instant>,
    errors_since_warn: u64,
}

struct RtpState {
    ssrc: u32,
}

impl UdpOutput {
    /// Opens the socket with the configured interface, hop limit, DSCP and source; an RTP
    /// output's SSRC comes from `ssrc_seed`.
    pub(crate) fn open(cfg: &OutputConfig, ssrc_seed: u64) -> io::Result<UdpOutput> {
        let label = format!("{}://{}", cfg.kind, cfg.dest);
        let socket =
            make_socket(cfg).map_err(|e| io::Error::new(e.kind(), format!("{label}: {e}")))?;
        let rtp = (cfg.kind == OutputKind::Rtp).then(|| RtpState {
            ssrc: (mix(ssrc_seed) >> 32) as u32,
        });
        Ok(UdpOutput {
            socket,
            label,
            rtp,
            stats: OutputStats::default(),
            last_warn: None,
            errors_since_warn: 0,
        })
    }

    /// `udp://[ff15::101]:5000`, for logs.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn stats(&self) -> OutputStats {
        self.stats
    }

    /// Sends one datagram of TS packets: the station's datagram `index` (its RTP sequence
    /// number, modulo 2^16), with `ts90k` the output clock (90 kHz) at its first byte (the
    /// RTP timestamp). Failures are counted and logged, never returned.
    pub(crate) fn send(&mut self, payload: &[u8], ts90k: u64, index: u64) {
        let result = match &self.rtp {
            None => self.socket.send(payload),
            Some(rtp) => {
                let header = rtp_header(index as u16, ts90k as u32, rtp.ssrc);
                self.socket
                    .send_vectored(&[IoSlice::new(&header), IoSlice::new(payload)])
            }
        };
        match result {
            Ok(n) => {
                self.stats.datagrams += 1;
                self.stats.bytes += n as u64;
            }
            Err(e) => {
                self.stats.errors += 1;
                self.errors_since_warn += 1;
                let now = Instant::now();
                if self
                    .last_warn
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                {
                    tracing::warn!(output = %self.label, error = %e, dropped = self.errors_since_warn, "datagrams dropped");
                    self.last_warn = Some(now);
                    self.errors_since_warn = 0;
                }
            }
        }
    }
}

/// A non-blocking socket that receives what is sent to the multicast output `cfg` (on its
/// interface): a fleet standby hears with it where the channel's owner is (`crate::engine`).
/// `None` for a unicast output, which only its receiver hears.
pub(crate) fn listen(cfg: &OutputConfig) -> io::Result<Option<std::net::UdpSocket>> {
    if !cfg.dest.ip().is_multicast() {
        return Ok(None);
    }
    crate::net::receiver(cfg.dest, cfg.interface.as_deref(), None, 4 << 20).map(Some)
}

/// The 12-byte RTP header: version 2, no padding, extension or CSRC, marker 0, PT 33.
pub(crate) fn rtp_header(seq: u16, timestamp: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = RTP_PT_MP2T;
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

fn make_socket(cfg: &OutputConfig) -> io::Result<Socket> {
    let domain = if cfg.dest.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // Room for bursts after a late wake-up without EAGAIN.
    let _ = socket.set_send_buffer_size(1 << 20);
    let index = match &cfg.interface {
        Some(name) => Some(crate::net::interface_index(name)?),
        None => None,
    };
    let multicast = cfg.dest.ip().is_multicast();
    let tos = u32::from(cfg.dscp) << 2;
    match cfg.dest.ip() {
        IpAddr::V6(_) => {
            if let Some(i) = index {
                socket.set_multicast_if_v6(i)?;
            }
            socket.set_multicast_hops_v6(u32::from(cfg.hop_limit))?;
            socket.set_unicast_hops_v6(u32::from(cfg.hop_limit))?;
            socket.set_multicast_loop_v6(true)?;
            if tos != 0 {
                socket.set_tclass_v6(tos)?;
            }
        }
        IpAddr::V4(_) => {
            socket.set_multicast_ttl_v4(u32::from(cfg.hop_limit))?;
            socket.set_ttl(u32::from(cfg.hop_limit))?;
            socket.set_multicast_loop_v4(true)?;
            if tos != 0 {
                socket.set_tos(tos)?;
            }
        }
    }
    if let Some(name) = &cfg.interface {
        if !multicast || cfg.dest.is_ipv4() {
            // Unicast, and IPv4 multicast: leave by this device whatever the routes say.
            socket.bind_device(Some(name.as_bytes()))?;
        }
    }
    let source = cfg.source.unwrap_or(match cfg.dest.ip() {
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    // Connected: the kernel keeps the route and source address instead of looking them up
    // for every datagram.
    socket.connect(&SockAddr::from(cfg.dest))?;
    Ok(socket)
}

/// A 64-bit mixer (splitmix64) for RTP sequence and SSRC seeds.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_layout() {
        let h = rtp_header(0x1234, 0x0102_0304, 0xAABB_CCDD);
        assert_eq!(
            h,
            [0x80, 33, 0x12, 0x34, 1, 2, 3, 4, 0xAA, 0xBB, 0xCC, 0xDD]
        );
    }

    #[test]
    fn unknown_interface_is_named() {
        let err = crate::net::interface_index("nosuchif0").unwrap_err();
        assert!(err.to_string().contains("no network interface `nosuchif0`"));
        assert_eq!(crate::net::interface_index("lo").unwrap(), 1);
    }

    /// Real sockets on loopback: UDP carries the payload as is, RTP behind a header whose
    /// sequence number is the datagram's index, wrapping.
    #[test]
    fn sends_udp_and_rtp_on_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let dest = rx.local_addr().unwrap();
        for kind in [OutputKind::Udp, OutputKind::Rtp] {
            let cfg = OutputConfig {
                kind,
                dest,
                interface: Some("lo".to_owned()),
                hop_limit: 4,
                dscp: 46,
                source: Some("127.0.0.1".parse().unwrap()),
                seamless: false,
            };
            let mut out = UdpOutput::open(&cfg, 1).unwrap();
            let payload = [0x47u8; 1316];
            out.send(&payload, 90_000, 0xFFFF);
            out.send(&payload, 93_600, 0x1_0000);
            let mut buf = [0u8; 2048];
            let (n1, _) = rx.recv_from(&mut buf).unwrap();
            let first = buf[..n1].to_vec();
            let (n2, _) = rx.recv_from(&mut buf).unwrap();
            match kind {
                OutputKind::Udp => assert_eq!((n1, n2), (1316, 1316)),
                OutputKind::Rtp => {
                    assert_eq!((n1, n2), (1328, 1328));
                    assert_eq!(first[0], 0x80);
                    assert_eq!(first[1], 33);
                    let seq1 = u16::from_be_bytes([first[2], first[3]]);
                    let seq2 = u16::from_be_bytes([buf[2], buf[3]]);
                    assert_eq!((seq1, seq2), (0xFFFF, 0));
                    assert_eq!(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]), 93_600);
                    assert_eq!(&first[12..], &payload[..]);
                }
            }
            assert_eq!(out.stats().datagrams, 2);
        }
    }
}
