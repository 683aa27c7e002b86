//! EMM injection: the MUX side of the DVB SimulCrypt EMMG/PDG⇔MUX interface (ETSI TS 103 197;
//! `drm::simulcrypt::emmg::MuxSide` does the protocol). One listener per `[[emmg]]`: a thread
//! that accepts the EMMG's TCP connections (a thread each) and, with `udp`, one that takes
//! data_provision datagrams. What the EMMG provisions, within its allocated bandwidth, goes as
//! TS packets on the EMM PID to every station that carries its CAS (each has subscribed a
//! [`EmmFeed`]); the station's muxer sends them at that rate, before program packets (the
//! muxrate must leave room for it). The allocation is the EMMG's, whatever its connections and
//! streams. An EMMG that sends faster is throttled: over TCP its connections are read no
//! faster than the allocation (the EMMG's socket fills and it waits), over UDP what is over is
//! dropped and counted, as is a single TCP message holding more than 2 s of it. UDP
//! data_provision goes to the connection whose stream it names. An EMMG that does not read its
//! answers is dropped. Nothing here waits on a station.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use drm::simulcrypt::emmg::{
    decode_emm_datagram, EmmBody, EmmMessage, MuxSide, MuxSideConfig, MuxSideEvent,
};
use drm::simulcrypt::SectionTspktFlag;
use playout::ts::{Pid, PACKET_SIZE};

use crate::config::EmmgConfig;

/// How much an EMMG may run ahead of its allocation before it is held back (a burst).
const BURST: Duration = Duration::from_millis(250);

/// A station's end: EMM packets (whole TS packets on `pid`) to multiplex at `rate_bps`.
pub(crate) struct EmmFeed {
    pub(crate) pid: u16,
    pub(crate) ca_system_id: u16,
    pub(crate) rate_bps: u64,
    pub(crate) packets: mpsc::Receiver<Bytes>,
    /// The listener's counters (shared by every station it feeds).
    pub(crate) counters: Arc<EmmgCounters>,
}

impl EmmFeed {
    /// The station's data stream for it: (CA_system_id, EMM PID, rate), as `Station::add_emm`
    /// takes it.
    pub(crate) fn stream(&self) -> (u16, u16, u64) {
        (self.ca_system_id, self.pid, self.rate_bps)
    }
}

/// Counters of one EMMG listener, for the status.
#[derive(Default)]
pub(crate) struct EmmgCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) datagrams: AtomicU64,
    /// TS packets passed on to the stations (each station gets them all).
    pub(crate) packets: AtomicU64,
    /// Packets dropped: over the allocation (UDP), or in one message too big for it (TCP).
    pub(crate) dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// A running `[[emmg]]` listener. Dropping it stops its threads.
pub(crate) struct Server {
    cfg: EmmgConfig,
    stop: Arc<AtomicBool>,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>,
    counters: Arc<EmmgCounters>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Binds the EMMG's addresses (an error names the one that failed) and starts listening.
    pub(crate) fn start(cfg: &EmmgConfig) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| anyhow::anyhow!("emmg: cannot listen on {}: {e}", cfg.listen))?;
        listener.set_nonblocking(true)?;
        let udp = match cfg.udp {
            Some(a) => {
                let s = UdpSocket::bind(a)
                    .map_err(|e| anyhow::anyhow!("emmg: cannot bind UDP {a}: {e}"))?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                Some(s)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let subscribers = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(EmmgCounters::default());
        let mut threads = Vec::new();
        let shared = Shared {
            cfg: cfg.clone(),
            stop: stop.clone(),
            subscribers: subscribers.clone(),
            counters: counters.clone(),
            routes: Arc::default(),
            next_conn: Arc::default(),
            pacer: Arc::new(Mutex::new(Pacer::new(cfg.bandwidth.bps()))),
        };
        let accept = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("emmg-{}", cfg.listen.port()))
                .spawn(move || accept.accept(listener))?,
        );
        if let Some(udp) = udp {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("emmg-udp-{}", cfg.listen.port()))
                    .spawn(move || s.udp(udp))?,
            );
        }
        tracing::info!(listen = %cfg.listen, udp = ?cfg.udp, client_id = format!("0x{:08X}", cfg.client_id), emm_pid = cfg.emm_pid, bandwidth_bps = cfg.bandwidth.bps(), "EMMG listener up");
        Ok(Server {
            cfg: cfg.clone(),
            stop,
            subscribers,
            counters,
            threads,
        })
    }

    /// A station's feed of this EMMG's packets.
    pub(crate) fn subscribe(&self) -> EmmFeed {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut s) = self.subscribers.lock() {
            s.push(tx);
        }
        EmmFeed {
            pid: self.cfg.emm_pid,
            ca_system_id: self.cfg.ca_system_id(),
            rate_bps: self.cfg.bandwidth.bps(),
            packets: rx,
            counters: self.counters.clone(),
        }
    }

    pub(crate) fn config(&self) -> &EmmgConfig {
        &self.cfg
    }
}

/// An open stream of a connection, for UDP data_provision.
struct Route {
    conn: u64,
    data_channel_id: u16,
    data_stream_id: u16,
    inbox: mpsc::SyncSender<EmmMessage>,
}

/// Connections one EMMG listener serves at once.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may go without opening its channel.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// UDP messages a connection may have waiting (beyond, they are dropped and counted).
const INBOX: usize = 256;

#[derive(Clone)]
struct Shared {
    cfg: EmmgConfig,
    stop: Arc<AtomicBool>,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<Bytes>>>>,
    counters: Arc<EmmgCounters>,
    /// Where data_provision that comes over UDP goes: the connection whose stream it names.
    routes: Arc<Mutex<Vec<Route>>>,
    next_conn: Arc<AtomicU64>,
    /// The allocation, shared by the EMMG's connections.
    pacer: Arc<Mutex<Pacer>>,
}

impl Shared {
    fn accept(self, listener: TcpListener) {
        let mut connections: Vec<JoinHandle<()>> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((tcp, peer)) => {
                    connections.retain(|t| !t.is_finished());
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::warn!(%peer, listen = %self.cfg.listen, "EMMG connection refused: {MAX_CONNECTIONS} open already");
                        drop(tcp);
                        continue;
                    }
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let s = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("emmg-conn-{}", peer.port()))
                        .spawn(move || s.connection(tcp));
                    match spawned {
                        Ok(t) => connections.push(t),
                        Err(e) => tracing::error!(%peer, error = %e, "EMMG connection not served"),
                    }
                    connections.retain(|t| !t.is_finished());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!(listen = %self.cfg.listen, error = %e, "EMMG accept");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        for t in connections {
            let _ = t.join();
        }
    }

    fn udp(self, socket: UdpSocket) {
        let mut buf = vec![0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let datagram = Bytes::copy_from_slice(&buf[..n]);
            for m in decode_emm_datagram(&datagram) {
                match m {
                    Ok(msg) => {
                        // To the one connection whose stream it names (the latest to open it).
                        let target = match &msg.body {
                            EmmBody::DataProvision(d) => self.routes.lock().ok().and_then(|r| {
                                r.iter()
                                    .rev()
                                    .find(|r| {
                                        r.data_stream_id == d.data_stream_id
                                            && d.data_channel_id
                                                .is_none_or(|c| c == r.data_channel_id)
                                    })
                                    .map(|r| r.inbox.clone())
                            }),
                            _ => None,
                        };
                        let sent = target.is_some_and(|t| t.try_send(msg).is_ok());
                        if !sent {
                            self.counters.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(udp = ?self.cfg.udp, "EMMG datagram for no open stream (or a full inbox) dropped");
                        }
                    }
                    Err(e) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(udp = ?self.cfg.udp, error = %e, "EMMG datagram dropped");
                    }
                }
            }
        }
    }

    /// One EMMG connection until it closes or fails.
    fn connection(self, mut tcp: TcpStream) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (inbox, udp) = mpsc::sync_channel(INBOX);
        let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut cfg = MuxSideConfig::new(
            self.cfg.client_id,
            (self.cfg.bandwidth.bps() / 1000).min(u64::from(u16::MAX)) as u16,
        );
        cfg.data_id = self.cfg.data_id;
        let mut mux = match MuxSide::new(cfg) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(%peer, error = %e, "EMMG connection refused");
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(20)));
        // An EMMG that does not read its answers is dropped, not waited for.
        let _ = tcp.set_write_timeout(Some(Duration::from_millis(500)));
        let mut link = Link {
            conn,
            inbox,
            channel: None,
        };
        // Small reads keep the throttle fine-grained.
        let mut buf = vec![0u8; 4 * 1024];
        let mut format = SectionTspktFlag::Sections;
        let accepted = Instant::now();
        let reason = loop {
            if self.stop.load(Ordering::Relaxed) {
                break "stopped".to_owned();
            }
            if link.channel.is_none() && accepted.elapsed() > SETUP_TIMEOUT {
                break format!("no channel set up in {} s", SETUP_TIMEOUT.as_secs());
            }
            let mut failed = None;
            while let Some(b) = mux.poll_transmit() {
                if let Err(e) = tcp.write_all(&b) {
                    failed = Some(format!("write: {e}"));
                    break;
                }
            }
            if let Some(why) = failed {
                break why;
            }
            let mut closed = false;
            // UDP data waits in the inbox; over the allocation it is dropped.
            while let Ok(m) = udp.try_recv() {
                if mux.handle_udp(Instant::now(), m).is_ok() {
                    closed |= self.drain(&mut mux, &mut format, &peer, true, &mut link);
                }
            }
            // Throttled: not read again before the allocation has room.
            let wait = self.pacer.lock().ok().and_then(|p| p.wait());
            if let Some(wait) = wait {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
                continue;
            }
            match tcp.read(&mut buf) {
                Ok(0) => break "the EMMG closed the connection".to_owned(),
                Ok(n) => mux.handle_bytes(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break format!("read: {e}"),
            }
            closed |= self.drain(&mut mux, &mut format, &peer, false, &mut link);
            let now = Instant::now();
            if mux.poll_timeout().is_some_and(|t| t <= now) {
                mux.handle_timeout(now);
                closed |= self.drain(&mut mux, &mut format, &peer, false, &mut link);
            }
            if closed {
                while let Some(b) = mux.poll_transmit() {
                    let _ = tcp.write_all(&b);
                }
                break "the EMMG closed the channel".to_owned();
            }
        };
        if let Ok(mut r) = self.routes.lock() {
            r.retain(|r| r.conn != conn);
        }
        tracing::info!(%peer, %reason, "EMMG connection ended");
    }
}

/// A connection's part in the UDP routes.
struct Link {
    conn: u64,
    inbox: mpsc::SyncSender<EmmMessage>,
    channel: Option<u16>,
}

impl Shared {
    /// Handles what the connection reported; whether the channel closed. Data that came over
    /// UDP beyond the allocation is dropped; over TCP it is always taken (the connection is
    /// then not read until the allocation has room).
    fn drain(
        &self,
        mux: &mut MuxSide,
        format: &mut SectionTspktFlag,
        peer: &str,
        udp: bool,
        link: &mut Link,
    ) -> bool {
        let mut closed = false;
        while let Some(ev) = mux.poll_event() {
            match ev {
                MuxSideEvent::ChannelOpen {
                    data_channel_id,
                    format: f,
                } => {
                    *format = f;
                    link.channel = Some(data_channel_id);
                    tracing::info!(%peer, data_channel_id, ?f, "EMMG channel open");
                }
                MuxSideEvent::StreamOpen {
                    data_stream_id,
                    data_id,
                    ..
                } => {
                    tracing::info!(%peer, data_stream_id, data_id, "EMMG stream open");
                    if let (Some(data_channel_id), Ok(mut r)) = (link.channel, self.routes.lock()) {
                        r.push(Route {
                            conn: link.conn,
                            data_channel_id,
                            data_stream_id,
                            inbox: link.inbox.clone(),
                        });
                    }
                }
                MuxSideEvent::StreamClosed { data_stream_id } => {
                    if let Ok(mut r) = self.routes.lock() {
                        r.retain(|r| !(r.conn == link.conn && r.data_stream_id == data_stream_id));
                    }
                }
                MuxSideEvent::Bandwidth { kbps, .. } => {
                    tracing::info!(%peer, kbps, "EMMG bandwidth allocated");
                }
                MuxSideEvent::Data { datagrams, .. } => {
                    self.counters
                        .datagrams
                        .fetch_add(datagrams.len() as u64, Ordering::Relaxed);
                    let packets = to_packets(&datagrams, *format, self.cfg.emm_pid);
                    let n = (packets.len() / PACKET_SIZE) as u64;
                    let taken = self.pacer.lock().is_ok_and(|mut p| p.take(n, udp));
                    if !taken {
                        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    self.counters.packets.fetch_add(n, Ordering::Relaxed);
                    if let Ok(mut subs) = self.subscribers.lock() {
                        subs.retain(|s| s.send(packets.clone()).is_ok());
                    }
                }
                MuxSideEvent::Error(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "EMMG error");
                }
                MuxSideEvent::Closed => closed = true,
            }
        }
        closed
    }
}

/// The allocated bandwidth as a budget of TS packets (the EMMG's, whatever its connections).
struct Pacer {
    /// Time one packet takes at the allocation.
    per_packet: Duration,
    /// When what was taken so far has been paid for.
    paid_until: Instant,
}

impl Pacer {
    fn new(rate_bps: u64) -> Pacer {
        Pacer {
            per_packet: Duration::from_nanos(
                (PACKET_SIZE as u64 * 8 * 1_000_000_000).div_ceil(rate_bps.max(1)),
            ),
            paid_until: Instant::now(),
        }
    }

    /// How long to wait before taking more (the budget is spent beyond a burst).
    fn wait(&self) -> Option<Duration> {
        let ahead = self.paid_until.saturating_duration_since(Instant::now());
        (ahead > BURST).then(|| ahead - BURST)
    }

    /// Takes `n` packets from the budget; false, nothing taken, if that goes past twice the
    /// burst for UDP, or past what the stations queue (2 s) for TCP: what is read from TCP
    /// at the allocation always fits, one oversized message does not.
    fn take(&mut self, n: u64, udp: bool) -> bool {
        let now = Instant::now();
        let start = self.paid_until.max(now);
        let end = start
            + self
                .per_packet
                .saturating_mul(n.min(u64::from(u32::MAX)) as u32);
        let bound = if udp {
            2 * BURST
        } else {
            Duration::from_secs(2)
        };
        if end.saturating_duration_since(now) > bound {
            return false;
        }
        self.paid_until = end;
        true
    }
}

/// Datagrams (whole sections or whole TS packets, as `MuxSide` checked them) as TS packets
/// on `pid` (the muxer stamps the continuity counters).
fn to_packets(datagrams: &[Bytes], format: SectionTspktFlag, pid: u16) -> Bytes {
    let mut out = BytesMut::new();
    let mut cc = 0;
    for d in datagrams {
        if let Ok(packets) = drm::simulcrypt::ecm_packets(d, format, Pid::from_bits(pid), &mut cc) {
            for p in packets {
                out.extend_from_slice(&p);
            }
        }
    }
    out.freeze()
}
