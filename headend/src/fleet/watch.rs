//! Seeing a node's process die at once, instead of when its lease expires.
//!
//! A node that is killed (or crashes) stops renewing its lease, and its channels are taken
//! over when etcd expires it: a lease's time (1 s at the least). But the kernel closes the
//! dead process's sockets the moment it ends, so a peer holding a TCP connection to it reads
//! the end of that connection at once. Each node therefore listens on a *beacon* (`[fleet]
//! watch`, registered with the node) that greets every connection with its name and lease id
//! and then keeps it open, saying nothing, for as long as the process lives; every other node
//! holds one connection to each registered beacon ([`Watchers`]). When a greeted connection
//! ends without this node having let go of it, the peer's process is gone: the watcher
//! revokes the lease the greeting named, so the dead node's keys go now and the channels'
//! standbys claim them at their next look.
//!
//! This is safe for the same reason the lease is: only the process that holds the lease can
//! send its channels, and a connection its process still holds is never ended by its kernel.
//! A beacon never closes a greeted connection while it lives (a connection refused for want
//! of room is closed before its greeting, which proves nothing). What does not end a
//! connection (a host that loses power, a cable pulled, a process stopped by SIGSTOP) is left
//! to the lease, as before. A connection ended by something else on the path (a firewall
//! that resets it) would revoke a live node's lease: that node stops sending at its next look
//! (every 100 ms) when it finds its keys gone, and registers again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::etcd::Etcd;

/// The greeting's first word and version.
const HELLO: &str = "headend-fleet 1";
/// The most connections a beacon keeps (a fleet's nodes, a few times over).
const MAX_HELD: usize = 512;
/// How often a beacon accepts and looks for connections its peers ended.
const BEACON_TICK: Duration = Duration::from_millis(50);
/// How long a watcher waits for a connection and a greeting, and rests between tries.
const DIAL: Duration = Duration::from_secs(1);

/// This node's beacon: a listener whose connections live as long as the process.
pub(crate) struct Beacon {
    /// The address peers dial (the listener's own, with the port it was given).
    pub(crate) addr: SocketAddr,
    /// The lease the greeting names (0 while there is none: connections wait for one).
    pub(crate) lease: Arc<AtomicI64>,
    /// Set when a greeted connection was reset: something on the path may have made a peer
    /// revoke this node's lease, so the agent shuts every gate until etcd confirms it.
    pub(crate) suspect: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Beacon {
    /// Listens on `addr` for node `node`'s peers.
    pub(crate) fn start(addr: SocketAddr, node: &str) -> std::io::Result<Beacon> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let lease = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let suspect = Arc::new(AtomicBool::new(false));
        let (l, s, node, x) = (
            lease.clone(),
            stop.clone(),
            node.to_owned(),
            suspect.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("fleet-beacon".to_owned())
            .spawn(move || serve(&listener, &node, &l, &s, &x))?;
        Ok(Beacon {
            addr,
            lease,
            suspect,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Probes on an idle beacon connection: a peer host gone without a word is let go of after
/// about a minute (its connection would otherwise be held for ever).
fn keep_alive(s: &TcpStream) {
    let k = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&k);
}

/// The beacon's loop: greets each new connection once a lease is known, keeps it, and lets
/// go only of those the peer ended (it dropped its watcher) or that its probes found dead; a
/// reset (from something on the path: a watcher's end is a close) sets `suspect`.
fn serve(
    listener: &TcpListener,
    node: &str,
    lease: &AtomicI64,
    stop: &AtomicBool,
    suspect: &AtomicBool,
) {
    let mut held: Vec<TcpStream> = Vec::new();
    let mut waiting: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Ok((s, _)) = listener.accept() {
            if held.len() + waiting.len() >= MAX_HELD {
                // Closed before its greeting: the peer learns nothing from it.
                continue;
            }
            let _ = s.set_nonblocking(true);
            let _ = s.set_nodelay(true);
            keep_alive(&s);
            waiting.push(s);
        }
        let id = lease.load(Ordering::Relaxed);
        if id != 0 {
            for mut s in waiting.drain(..) {
                let hello = format!("{HELLO} {node} {id}\n");
                // A greeting is a few dozen bytes into an empty send buffer.
                if s.write_all(hello.as_bytes()).is_ok() {
                    held.push(s);
                }
            }
        }
        // A peer says nothing; a read that returns 0 is its end (a watcher dropped).
        let mut buf = [0u8; 64];
        held.retain_mut(|s| match s.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::ConnectionReset {
                    tracing::warn!("fleet: a beacon connection was reset: every channel stops until etcd confirms this node's lease");
                    suspect.store(true, Ordering::SeqCst);
                }
                false
            }
        });
        waiting.retain_mut(|s| match s.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        });
        std::thread::sleep(BEACON_TICK);
    }
}

/// The local address this host sends from toward the first of `etcd` (`http://HOST:PORT`):
/// one the other nodes, which reach the same etcd, can likely reach too. Nothing is sent (a
/// UDP socket's connect only picks the route).
pub(crate) fn toward(etcd: &[String]) -> Result<std::net::IpAddr, String> {
    use std::net::ToSocketAddrs;
    let url = etcd.first().ok_or("no etcd endpoint")?;
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let to = authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|e| format!("{e}"))?;
    let s = std::net::UdpSocket::bind(any).map_err(|e| e.to_string())?;
    s.connect(to)
        .map_err(|e| format!("the route to {to}: {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.ip())
}

/// A peer as registered: its name, its lease and its beacon.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) lease: i64,
    pub(crate) beacon: SocketAddr,
}

/// One connection to a peer's beacon, on a thread of its own.
struct Watcher {
    /// Set before this node lets go of the connection: its end is then not the peer's death.
    dropped: Arc<AtomicBool>,
    stream: Arc<Mutex<Option<TcpStream>>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
        let s = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = s.as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// This node's watchers, one per registered peer (name, lease and beacon).
pub(crate) struct Watchers {
    etcd: Vec<String>,
    timeout: Duration,
    /// Woken after a revocation, to look at etcd at once.
    wake: Sender<()>,
    watching: std::collections::HashMap<Peer, Watcher>,
    /// Peers whose process was seen to end.
    deaths: Arc<std::sync::atomic::AtomicU64>,
}

impl Watchers {
    pub(crate) fn new(etcd: Vec<String>, timeout: Duration, wake: Sender<()>) -> Watchers {
        Watchers {
            etcd,
            timeout,
            wake,
            watching: std::collections::HashMap::new(),
            deaths: Arc::default(),
        }
    }

    /// How many peers' processes were seen to end.
    pub(crate) fn deaths(&self) -> u64 {
        self.deaths.load(Ordering::Relaxed)
    }

    /// Watches exactly `peers` (the registered nodes but this one): a new peer, or one
    /// registered again under another lease, gets a watcher; one gone loses its watcher.
    pub(crate) fn follow(&mut self, peers: &[Peer]) {
        self.watching.retain(|p, _| peers.contains(p));
        for p in peers {
            if !self.watching.contains_key(p) {
                let w = self.spawn(p.clone());
                self.watching.insert(p.clone(), w);
            }
        }
    }

    fn spawn(&self, peer: Peer) -> Watcher {
        let dropped = Arc::new(AtomicBool::new(false));
        let stream: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let (d, s) = (dropped.clone(), stream.clone());
        let (etcd, timeout, wake) = (self.etcd.clone(), self.timeout, self.wake.clone());
        let deaths = self.deaths.clone();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "fleet-watch-{}",
                peer.name.replace(|c: char| !c.is_ascii_graphic(), "_")
            ))
            .spawn(move || {
                if watch(&peer, &d, &s, &etcd, timeout, &wake) {
                    deaths.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("fleet: no watcher thread: {e}");
        }
        Watcher { dropped, stream }
    }
}

/// Connects to `peer`'s beacon (again after a rest while it does not answer), checks its
/// greeting, and waits for its end: unless `dropped`, that is the peer's death, and its lease
/// is revoked. Whether it died.
fn watch(
    peer: &Peer,
    dropped: &AtomicBool,
    slot: &Mutex<Option<TcpStream>>,
    etcd: &[String],
    timeout: Duration,
    wake: &Sender<()>,
) -> bool {
    loop {
        let Some(s) = connected(peer, dropped, slot) else {
            return false;
        };
        match wait_for_end(s) {
            Some(end) => {
                if dropped.load(Ordering::SeqCst) {
                    return false;
                }
                tracing::warn!(peer = %peer.name, lease = peer.lease, "fleet: {}'s process is gone (its beacon connection {end}): its lease is revoked, its channels taken over now", peer.name);
                let revoked = Etcd::new(etcd, timeout)
                    .and_then(|mut e| e.revoke(peer.lease).map_err(|e| e.to_string()));
                if let Err(e) = revoked {
                    // Already gone (it left cleanly, or another node revoked it first).
                    tracing::debug!(peer = %peer.name, "fleet: revoking: {e}");
                }
                let _ = wake.send(());
                return true;
            }
            // Probes unanswered, an unreachable host: no proof, the lease decides; connect
            // again (a host back from a partition is watched again).
            None => std::thread::sleep(DIAL),
        }
    }
}

/// A greeted connection to `peer`'s beacon, held in `slot` (so dropping the watcher ends
/// it); `None` once `dropped` or when the beacon answers for another lease.
fn connected(
    peer: &Peer,
    dropped: &AtomicBool,
    slot: &Mutex<Option<TcpStream>>,
) -> Option<TcpStream> {
    let s = loop {
        if dropped.load(Ordering::SeqCst) {
            return None;
        }
        match greeted(peer) {
            Ok(s) => break s,
            Err(Greeting::Other(why)) => {
                // Registered under another lease since, or not a beacon: nothing to watch
                // here until the peer is registered again.
                tracing::debug!(peer = %peer.name, "fleet: not watched: {why}");
                return None;
            }
            Err(Greeting::NoAnswer(why)) => {
                tracing::debug!(peer = %peer.name, "fleet: beacon: {why}");
                std::thread::sleep(DIAL);
            }
        }
    };
    keep_alive(&s);
    let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if dropped.load(Ordering::SeqCst) {
        return None;
    }
    *held = s.try_clone().ok();
    Some(s)
}

/// Reads `s` until it ends: how (closed, reset), or `None` for an end that proves nothing
/// (probes unanswered, a host unreachable).
fn wait_for_end(mut s: TcpStream) -> Option<String> {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some("closed".to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )
                .then(|| e.to_string());
            }
        }
    }
}

enum Greeting {
    /// The beacon did not answer (yet): try again.
    NoAnswer(String),
    /// It answered for another lease or node, or not as a beacon.
    Other(String),
}

/// A connection to `peer`'s beacon that greeted as `peer` (its name and lease).
fn greeted(peer: &Peer) -> Result<TcpStream, Greeting> {
    let mut s = TcpStream::connect_timeout(&peer.beacon, DIAL)
        .map_err(|e| Greeting::NoAnswer(format!("{}: {e}", peer.beacon)))?;
    s.set_read_timeout(Some(DIAL))
        .map_err(|e| Greeting::NoAnswer(e.to_string()))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 200 && !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            // Ended or silent before a whole greeting: a beacon without room, or not one yet.
            Ok(_) => return Err(Greeting::NoAnswer("no greeting".to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Greeting::NoAnswer(format!("no greeting: {e}"))),
        }
    }
    let want = format!("{HELLO} {} {}\n", peer.name, peer.lease);
    if line != want.as_bytes() {
        return Err(Greeting::Other(format!(
            "greeted {:?}, not {want:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    s.set_read_timeout(None)
        .map_err(|e| Greeting::NoAnswer(e.to_string()))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address toward etcd on loopback is loopback's.
    #[test]
    fn the_beacon_s_address_is_the_one_toward_etcd() {
        let ip = toward(&["http://127.0.0.1:2379".to_owned()]).unwrap();
        assert_eq!(ip, std::net::IpAddr::from([127, 0, 0, 1]));
        let ip = toward(&["http://[::1]:2379".to_owned()]).unwrap();
        assert_eq!(ip, std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        assert!(toward(&[]).is_err());
    }

    /// A greeted connection reset (not closed) makes the beacon suspect that its lease was
    /// revoked; a close does not.
    #[test]
    fn a_reset_connection_makes_the_beacon_suspect() {
        let b = Beacon::start("127.0.0.1:0".parse().unwrap(), "he-01").unwrap();
        b.lease.store(9, Ordering::Relaxed);
        let peer = Peer {
            name: "he-01".to_owned(),
            lease: 9,
            beacon: b.addr,
        };
        let closed = greeted(&peer).ok().expect("greeted");
        drop(closed);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!b.suspect.load(Ordering::SeqCst));
        let reset = greeted(&peer).ok().expect("greeted");
        socket2::SockRef::from(&reset)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(reset);
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while !b.suspect.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < until,
                "not suspect after a reset"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A beacon greets with its name and lease once it has one, keeps the connection while
    /// it lives, and its end (the process gone) ends the connection.
    #[test]
    fn a_beacon_greets_and_ends_with_its_process() {
        let b = Beacon::start("127.0.0.1:0".parse().unwrap(), "he-01").unwrap();
        let peer = Peer {
            name: "he-01".to_owned(),
            lease: 42,
            beacon: b.addr,
        };
        // No lease yet: no greeting.
        assert!(matches!(greeted(&peer), Err(Greeting::NoAnswer(_))));
        b.lease.store(42, Ordering::Relaxed);
        let mut s = greeted(&peer).ok().expect("greeted");
        let other = Peer {
            lease: 7,
            ..peer.clone()
        };
        assert!(matches!(greeted(&other), Err(Greeting::Other(_))));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 8];
        let e = s.read(&mut buf).unwrap_err();
        assert!(matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
        drop(b);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0);
    }
}
