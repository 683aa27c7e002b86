//! Network helpers shared by inputs and outputs.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// The kernel's index of a network interface, from sysfs.
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no network interface `{name}` ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not an interface index: {:?}", text.trim()),
        )
    })
}

/// A non-blocking UDP socket that receives what is sent to `addr` with a receive buffer of
/// `buffer` bytes: for a multicast group, bound to the group (so only its datagrams arrive)
/// and joined on `interface` (any-source, or source-specific with `source`); for a unicast
/// address, bound to it (and to `interface` as a device). Inputs receive with it, and a fleet
/// standby hears its owner's outputs.
pub(crate) fn receiver(
    addr: SocketAddr,
    interface: Option<&str>,
    source: Option<IpAddr>,
    buffer: usize,
) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let _ = socket.set_recv_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let index = match interface {
        Some(name) => Some(interface_index(name)?),
        None => None,
    };
    if addr.ip().is_multicast() {
        // Bound to the group, so only its datagrams arrive on this socket.
        socket.bind(&addr.into())?;
        match (addr.ip(), source) {
            (IpAddr::V4(group), None) => {
                socket.join_multicast_v4_n(
                    &group,
                    &match index {
                        Some(i) => socket2::InterfaceIndexOrAddress::Index(i),
                        None => socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
                    },
                )?;
            }
            (IpAddr::V4(group), Some(IpAddr::V4(source))) => {
                socket.join_ssm_v4(&source, &group, &Ipv4Addr::UNSPECIFIED)?;
            }
            (IpAddr::V6(group), None) => socket.join_multicast_v6(&group, index.unwrap_or(0))?,
            (IpAddr::V6(group), Some(IpAddr::V6(source))) => {
                join_ssm_v6(&socket, group, source, index.unwrap_or(0))?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and group of different families",
                ))
            }
        }
    } else {
        socket.bind(&SocketAddr::new(addr.ip(), addr.port()).into())?;
        if let Some(name) = interface {
            socket.bind_device(Some(name.as_bytes()))?;
        }
    }
    Ok(socket.into())
}

/// Joins IPv6 group `group` for datagrams from `source` only (MLDv2 source-specific join,
/// RFC 3810; `MCAST_JOIN_SOURCE_GROUP`, RFC 3678) on interface `ifindex`. socket2 and nix
/// wrap it for IPv4 only.
#[allow(unsafe_code)]
pub(crate) fn join_ssm_v6(
    socket: &impl AsRawFd,
    group: Ipv6Addr,
    source: Ipv6Addr,
    ifindex: u32,
) -> io::Result<()> {
    let in6 = |a: Ipv6Addr| libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: a.octets(),
        },
        sin6_scope_id: 0,
    };
    // SAFETY: `group_source_req` is plain old data (integers and byte arrays): all zeroes is
    // a valid value of it.
    let mut req: libc::group_source_req = unsafe { std::mem::zeroed() };
    req.gsr_interface = ifindex;
    // SAFETY: `sockaddr_storage` is at least as large as `sockaddr_in6` and aligned for any
    // socket address (that is its purpose); each write stays within its own field.
    unsafe {
        std::ptr::write(
            std::ptr::addr_of_mut!(req.gsr_group).cast::<libc::sockaddr_in6>(),
            in6(group),
        );
        std::ptr::write(
            std::ptr::addr_of_mut!(req.gsr_source).cast::<libc::sockaddr_in6>(),
            in6(source),
        );
    }
    // SAFETY: the pointer and length describe `req`, alive for the call; the kernel only
    // reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::MCAST_JOIN_SOURCE_GROUP,
            std::ptr::addr_of!(req).cast::<libc::c_void>(),
            std::mem::size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
