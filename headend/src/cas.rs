//! The SimulCrypt SCS link of one scrambled program: a thread that keeps a TCP connection to
//! the ECMG (ETSI TS 103 197, `drm::simulcrypt::Scs` does the protocol), provisions the
//! control words the engine hands it and hands back the ECMs. It reconnects (every second)
//! when the ECMG goes away and provisions the last words again once the stream is back, so
//! ECMs resume by themselves. The engine never waits on it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drm::simulcrypt::{
    Scs, ScsConfig, ScsEvent, SectionTspktFlag, StreamConfig, SuperCasId, Tenths,
};

use crate::config::SimulcryptConfig;

/// What the engine asks of the link.
pub(crate) struct Provision {
    /// The crypto-period whose ECM is wanted.
    pub(crate) cp: u16,
    /// (CP_number, word) of the periods around it.
    pub(crate) words: Vec<(u16, [u8; 16])>,
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
    /// The ECMG is up: its ECM repetition period.
    Up { ecm_rep_period_ms: u16 },
    /// The ECM of crypto-period `cp`, as sections.
    Ecm { cp: u16, sections: Vec<Vec<u8>> },
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

/// Starts the link of channel `channel` with crypto-periods of `period`.
pub(crate) fn start(
    channel: &str,
    cfg: &SimulcryptConfig,
    period: Duration,
) -> std::io::Result<CasLink> {
    let (req_tx, req_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let scs_cfg = ScsConfig::new(
        SuperCasId(cfg.super_cas_id),
        cfg.ecm_channel_id,
        vec![StreamConfig {
            ecm_stream_id: cfg.ecm_stream_id,
            ecm_id: cfg.ecm_id.unwrap_or(1),
            nominal_cp_duration: Tenths::from_duration(period).unwrap_or(Tenths(100)),
            access_criteria: cfg.access_criteria.clone(),
        }],
    );
    let link = Link {
        channel: channel.to_owned(),
        addr: cfg.ecmg,
        stream: cfg.ecm_stream_id,
        period,
        scs_cfg,
        requests: req_rx,
        events: ev_tx,
        stop: stop.clone(),
        last: None,
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
    addr: std::net::SocketAddr,
    stream: u16,
    period: Duration,
    scs_cfg: ScsConfig,
    requests: mpsc::Receiver<Provision>,
    events: mpsc::Sender<CasEvent>,
    stop: Arc<AtomicBool>,
    /// The latest provision, sent again after a reconnection.
    last: Option<Provision>,
}

impl Link {
    fn run(mut self) {
        // Logged once per outage: the first failure, and each failure after a session that
        // got its stream up.
        let mut alarm = true;
        while !self.stop.load(Ordering::Relaxed) {
            let (reason, was_ready) = self.session();
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if alarm || was_ready {
                tracing::error!(channel = %self.channel, ecmg = %self.addr, reason = %reason, "ALARM: ECMG link down; reconnecting every second");
            }
            alarm = false;
            let _ = self.events.send(CasEvent::Down { reason });
            // Take the engine's requests meanwhile, keeping the latest.
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                while let Ok(p) = self.requests.try_recv() {
                    self.last = Some(p);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// One connection, until it fails: the reason, and whether the stream was up. A panic in
    /// it ends the connection as a failure would (the link reconnects a second later, the
    /// stations keep the policy of an ECMG gone), with an alarm.
    fn session(&mut self) -> (String, bool) {
        let mut ready = false;
        let reason = match crate::supervise::contain(|| self.connection(&mut ready)) {
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

    fn connection(&mut self, ready: &mut bool) -> String {
        let mut tcp = match TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
            Ok(t) => t,
            Err(e) => return format!("connect: {e}"),
        };
        let _ = tcp.set_nodelay(true);
        if let Err(e) = tcp.set_read_timeout(Some(Duration::from_millis(20))) {
            return format!("socket: {e}");
        }
        let mut scs = match Scs::new(self.scs_cfg.clone()) {
            Ok(s) => s,
            Err(e) => return format!("SCS configuration: {e}"),
        };
        scs.handle_connected(Instant::now());
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
                        let _ = self.events.send(CasEvent::Up {
                            ecm_rep_period_ms: status.ecm_rep_period_ms,
                        });
                        if status.section_tspkt_flag != SectionTspktFlag::Sections {
                            return "the ECMG sends ECMs as TS packets; sections are needed".into();
                        }
                    }
                    ScsEvent::StreamReady(_) => {
                        tracing::info!(channel = %self.channel, ecmg = %self.addr, "ECMG stream ready");
                        *ready = true;
                        // Words asked for while the ECMG was away go out now.
                        if let Some(p) = &self.last {
                            let _ =
                                scs.provision(now, self.stream, p.cp, &p.words, self.cp_duration());
                        }
                    }
                    ScsEvent::Ecm {
                        cp_number,
                        datagram,
                        ..
                    } => {
                        let sections = split_sections(&datagram);
                        let _ = self.events.send(CasEvent::Ecm {
                            cp: cp_number,
                            sections,
                        });
                    }
                    ScsEvent::Error(e) => {
                        tracing::warn!(channel = %self.channel, error = %e, "ECMG error");
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
                self.last = Some(p);
            }
        }
    }

    fn cp_duration(&self) -> Option<Tenths> {
        Tenths::from_duration(self.period)
    }
}

/// The sections of a section-form ECM datagram (one after the other, each with its length).
fn split_sections(datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 3 {
        let len = 3 + (usize::from(rest[1] & 0x0F) << 8 | usize::from(rest[2]));
        if len > rest.len() {
            break;
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}
