//! The SimulCrypt SCS link of one CAS of a scrambled program: a thread that keeps a TCP
//! connection to the CAS's ECMG (ETSI TS 103 197, `drm::simulcrypt::Scs` does the protocol, in
//! version 3 or 2 or whichever the ECMG takes), provisions the control words the engine hands
//! it and hands back the ECMs, as sections or TS packets as the ECMG makes them. It reconnects
//! (every second) when the ECMG goes away and provisions the last words again once the stream
//! is back, so ECMs resume by themselves. The engine never waits on it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drm::simulcrypt::{
    ChannelStatus, Scs, ScsConfig, ScsEvent, SectionTspktFlag, StreamConfig, SuperCasId, Tenths,
};

use crate::config::{SimulcryptConfig, VersionChoice};

/// What the engine asks of the link.
#[derive(Clone)]
pub(crate) struct Provision {
    /// The crypto-period whose ECM is wanted.
    pub(crate) cp: u16,
    /// (CP_number, word) of the periods around it.
    pub(crate) words: Vec<(u16, [u8; 16])>,
    /// The CAS (indexes in the channel's list) whose ECMGs are asked: those lacking it.
    pub(crate) cas: Vec<usize>,
}

impl std::fmt::Debug for Provision {
    /// The periods only: the words are key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provision")
            .field("cp", &self.cp)
            .field(
                "words_for",
                &self.words.iter().map(|(cp, _)| *cp).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What the link tells the engine.
pub(crate) enum CasEvent {
    /// The ECMG is up: its channel parameters (ECM_rep_period, delays, lead_CW...).
    Up { status: ChannelStatus },
    /// The ECM of crypto-period `cp`, checked to be whole sections or TS packets as `format`
    /// says.
    Ecm {
        cp: u16,
        datagram: Bytes,
        format: SectionTspktFlag,
    },
    /// The link is down or the ECMG failed (the reason never holds key material).
    Down { reason: String },
}

/// The engine's end of a link.
pub(crate) struct CasLink {
    pub(crate) requests: mpsc::Sender<Provision>,
    pub(crate) events: mpsc::Receiver<CasEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for CasLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the link to the ECMG of `cfg` for channel `channel`, crypto-periods of `period`.
pub(crate) fn start(
    channel: &str,
    cfg: &SimulcryptConfig,
    period: Duration,
) -> std::io::Result<CasLink> {
    let (req_tx, req_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut scs_cfg = ScsConfig::new(
        SuperCasId(cfg.super_cas_id),
        cfg.ecm_channel_id,
        vec![StreamConfig {
            ecm_stream_id: cfg.ecm_stream_id,
            ecm_id: cfg.ecm_id.unwrap_or(1),
            nominal_cp_duration: Tenths::from_duration(period).unwrap_or(Tenths(100)),
            access_criteria: cfg.access_criteria.clone(),
        }],
    );
    if let VersionChoice::Fixed(v) = cfg.version {
        scs_cfg.version = v;
        scs_cfg.version_fallback = false;
    }
    let link = Link {
        channel: channel.to_owned(),
        cas: SuperCasId(cfg.super_cas_id),
        addr: cfg.ecmg,
        stream: cfg.ecm_stream_id,
        period,
        scs_cfg,
        requests: req_rx,
        events: ev_tx,
        stop: stop.clone(),
        recent: Vec::new(),
        announced: None,
        version_changed: false,
    };
    let thread = std::thread::Builder::new()
        .name(format!("scs-{channel}"))
        .spawn(move || link.run())?;
    Ok(CasLink {
        requests: req_tx,
        events: ev_rx,
        stop,
        thread: Some(thread),
    })
}

struct Link {
    channel: String,
    cas: SuperCasId,
    addr: std::net::SocketAddr,
    stream: u16,
    period: Duration,
    scs_cfg: ScsConfig,
    requests: mpsc::Receiver<Provision>,
    events: mpsc::Sender<CasEvent>,
    stop: Arc<AtomicBool>,
    /// The latest provisions (distinct crypto-periods, oldest first), sent again once the
    /// stream is (back) up: what was asked for while the ECMG was away or connecting.
    recent: Vec<Provision>,
    /// The protocol version last logged as open.
    announced: Option<drm::simulcrypt::ProtocolVersion>,
    /// The SCS changed its version during the last session.
    version_changed: bool,
}

impl Link {
    fn run(mut self) {
        let mut scs = match Scs::new(self.scs_cfg.clone()) {
            Ok(s) => s,
            Err(e) => {
                let reason = format!("SCS configuration: {e}");
                tracing::error!(channel = %self.channel, ecmg = %self.addr, %reason, "ALARM: SimulCrypt link not started");
                let _ = self.events.send(CasEvent::Down { reason });
                return;
            }
        };
        // Logged once per outage: the first failure, and each failure after a session that
        // got its stream up.
        let mut alarm = true;
        // Whether the quick reconnection of a version fallback was used since a stream was up.
        let mut fell_back = false;
        while !self.stop.load(Ordering::Relaxed) {
            let (reason, was_ready) = self.session(&mut scs);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            fell_back &= !was_ready;
            if std::mem::take(&mut self.version_changed) && !was_ready && !fell_back {
                // The ECMG refused one version and hung up: the other one at once. Not an
                // outage (no alarm, no failure policy), unless that fails too.
                fell_back = true;
                tracing::info!(channel = %self.channel, cas = %self.cas, ecmg = %self.addr, version = scs.version().value(), "reconnecting in SimulCrypt version {}", scs.version().value());
                continue;
            }
            if alarm || was_ready {
                tracing::error!(channel = %self.channel, cas = %self.cas, ecmg = %self.addr, reason = %reason, "ALARM: ECMG link down; reconnecting every second");
            }
            alarm = false;
            let _ = self.events.send(CasEvent::Down { reason });
            // Take the engine's requests meanwhile, keeping the latest.
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                while let Ok(p) = self.requests.try_recv() {
                    self.remember(p);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// One connection, until it fails: the reason, and whether the stream was up. A panic in
    /// it ends the connection as a failure would (the link reconnects a second later, the
    /// stations keep the policy of an ECMG gone), with an alarm.
    fn session(&mut self, scs: &mut Scs) -> (String, bool) {
        let mut ready = false;
        let reason = match crate::supervise::contain(|| self.connection(scs, &mut ready)) {
            Ok(reason) => reason,
            Err(why) => {
                let reason = format!("the session panicked ({why})");
                crate::supervise::panicked(
                    "simulcrypt link",
                    format!("channel {}: {reason}: reconnecting", self.channel),
                );
                reason
            }
        };
        (reason, ready)
    }

    /// One TCP connection with `scs` (which keeps, from one connection to the next, the
    /// protocol version the ECMG took).
    fn connection(&mut self, scs: &mut Scs, ready: &mut bool) -> String {
        let mut tcp = match TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
            Ok(t) => t,
            Err(e) => return format!("connect: {e}"),
        };
        let _ = tcp.set_nodelay(true);
        if let Err(e) = tcp.set_read_timeout(Some(Duration::from_millis(20))) {
            return format!("socket: {e}");
        }
        scs.handle_connected(Instant::now());
        let reason = self.exchange(&mut tcp, scs, ready);
        scs.handle_disconnected(Instant::now());
        // What the disconnection brought (a version change) is for the next connection.
        while let Some(ev) = scs.poll_event() {
            self.note(&ev);
        }
        reason
    }

    /// Logs what is worth it of an event handled outside the session loop.
    fn note(&mut self, ev: &ScsEvent) {
        if let ScsEvent::VersionChanged { from, to } = ev {
            self.version_changed = true;
            tracing::warn!(channel = %self.channel, cas = %self.cas, ecmg = %self.addr, from = from.value(), to = to.value(), "the ECMG refused SimulCrypt version {}: trying version {}", from.value(), to.value());
        }
    }

    fn exchange(&mut self, tcp: &mut TcpStream, scs: &mut Scs, ready: &mut bool) -> String {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.stop.load(Ordering::Relaxed) {
                scs.close(Instant::now());
                while let Some(b) = scs.poll_transmit() {
                    let _ = tcp.write_all(&b);
                }
                return "stopped".into();
            }
            while let Some(bytes) = scs.poll_transmit() {
                if let Err(e) = tcp.write_all(&bytes) {
                    return format!("write: {e}");
                }
            }
            match tcp.read(&mut buf) {
                Ok(0) => return "the ECMG closed the connection".into(),
                Ok(n) => scs.handle_bytes(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return format!("read: {e}"),
            }
            if *ready {
                crate::supervise::chaos(|| format!("scs:{}", self.channel));
            }
            let now = Instant::now();
            if scs.poll_timeout().is_some_and(|t| t <= now) {
                scs.handle_timeout(now);
            }
            while let Some(ev) = scs.poll_event() {
                match ev {
                    ScsEvent::ChannelReady(status) => {
                        if self.announced != Some(scs.version()) {
                            // Once per version taken, not at each reconnection.
                            self.announced = Some(scs.version());
                            let form = match status.section_tspkt_flag {
                                SectionTspktFlag::Sections => "sections",
                                SectionTspktFlag::TsPackets => "TS packets",
                            };
                            tracing::info!(channel = %self.channel, cas = %self.cas, ecmg = %self.addr, version = scs.version().value(), ecms = form, "ECMG channel open: SimulCrypt version {}, ECMs as {form}", scs.version().value());
                        }
                        let _ = self.events.send(CasEvent::Up { status });
                    }
                    ScsEvent::VersionChanged { .. } => self.note(&ev),
                    ScsEvent::StreamReady(_) => {
                        tracing::info!(channel = %self.channel, cas = %self.cas, ecmg = %self.addr, "ECMG stream ready");
                        *ready = true;
                        // Words asked for while the ECMG was away go out now.
                        for p in &self.recent {
                            let _ =
                                scs.provision(now, self.stream, p.cp, &p.words, self.cp_duration());
                        }
                    }
                    ScsEvent::Ecm {
                        cp_number,
                        datagram,
                        format,
                        ..
                    } => {
                        let _ = self.events.send(CasEvent::Ecm {
                            cp: cp_number,
                            datagram,
                            format,
                        });
                    }
                    ScsEvent::Error(e) => {
                        tracing::warn!(channel = %self.channel, cas = %self.cas, error = %e, "ECMG error");
                        if matches!(
                            e,
                            drm::simulcrypt::ScsError::Timeout {
                                cp_number: None,
                                ..
                            }
                        ) {
                            return format!("{e}");
                        }
                    }
                    ScsEvent::Closed => return "the channel was closed".into(),
                    _ => {}
                }
            }
            if scs.is_failed() {
                // Refused (in every version it may try) or an answer missed, on a connection
                // the ECMG keeps open: start again.
                return "the ECMG refused the channel or missed an answer".into();
            }
            while let Ok(p) = self.requests.try_recv() {
                if *ready {
                    if let Err(e) = scs.provision(
                        Instant::now(),
                        self.stream,
                        p.cp,
                        &p.words,
                        self.cp_duration(),
                    ) {
                        tracing::warn!(channel = %self.channel, cp = p.cp, error = %e, "CW_provision not sent");
                    }
                }
                self.remember(p);
            }
        }
    }

    /// Keeps `p` among the latest provisions (one per crypto-period, the last three).
    fn remember(&mut self, p: Provision) {
        self.recent.retain(|r| r.cp != p.cp);
        self.recent.push(p);
        if self.recent.len() > 3 {
            self.recent.remove(0);
        }
    }

    fn cp_duration(&self) -> Option<Tenths> {
        Tenths::from_duration(self.period)
    }
}
