//! Live feeds: a receiving thread per `[[channel.input]]` (UDP or RTP, unicast or multicast,
//! IPv4 or IPv6, any-source or source-specific joins), its analyser, and what the engine
//! takes from it.
//!
//! Every input is received all the time (hot standby): the thread keeps the last
//! `standby` of it, so when the channel switches to it the splicer starts at once at a recent
//! random access point. While it is on air, what arrives is also queued for the splicer,
//! which the engine hands over without blocking ([`LiveFeed::take`]).
//!
//! Each feed also runs an ETSI TR 101 290 monitor ([`playout::monitor`]) over everything that
//! arrives, on air or not, timed by the feed's clock ([`LiveFeed::now`]): priority 1 and 2,
//! not the SI repetition of priority 3 (an input's SI is not ours: the station replaces it).
//! PCR accuracy (2.4) is judged on UDP and RTP inputs, contribution feeds that are
//! constant-bitrate by convention, by packet count (the network's jitter does not enter
//! it); not on SRT and HTTP inputs, which commonly carry an encoder's variable bitrate or a
//! file. Datagrams that are not transport stream are counted as foreign, not monitored.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use playout::analyse::{Analyser, AnalyserConfig, AnalyserStats, Health};
use playout::monitor::{Monitor, MonitorConfig};
use playout::ts::{PACKET_SIZE, SYNC_BYTE};

use crate::config::{Endpoint, FailoverConfig, InputConfig};

/// How often a datagram input's socket is drained.
const POLL: Duration = Duration::from_millis(5);
/// With no datagram input, the poller sleeps until one is added, waking this often anyway.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Most datagrams handed over in one batch.
const MAX_BATCH: usize = 256;

/// Most bytes queued for the splicer while on air (about 25 s at 8 Mbit/s): beyond this the
/// oldest are dropped and counted.
const MAX_PENDING: usize = 24 << 20;

/// RTP counters (RFC 3550 sequence numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RtpStats {
    /// Datagrams with an RTP header.
    pub(crate) packets: u64,
    /// Sequence numbers never seen (lost).
    pub(crate) lost: u64,
    /// Datagrams that arrived after a later one.
    pub(crate) reordered: u64,
    /// Datagrams seen twice (dropped).
    pub(crate) duplicates: u64,
}

/// What the engine and the API read of a feed.
#[derive(Clone, Debug)]
pub(crate) struct FeedStatus {
    /// The input's name.
    pub(crate) name: String,
    /// The analyser's verdict.
    pub(crate) health: Health,
    /// Its counters.
    pub(crate) stats: AnalyserStats,
    /// RTP counters (zero for `udp://`).
    pub(crate) rtp: RtpStats,
    /// Datagrams that were not transport stream (dropped).
    pub(crate) foreign: u64,
    /// Bytes dropped because the splicer did not take them in time.
    pub(crate) overflow: u64,
    /// Connections refused (an SRT caller with the wrong passphrase).
    pub(crate) refused: u64,
    /// The socket failed (it is retried every second).
    pub(crate) error: Option<String>,
    /// ETSI TR 101 290 on what arrived: the count of each rule since start, by its number
    /// and name (`"1.4 Continuity_count_error": 0`).
    pub(crate) tr101290: std::collections::BTreeMap<String, u64>,
}

/// Whether the TR 101 290 monitors run (outputs and inputs): always, unless the environment
/// sets `HEADEND_BENCH_NO_MONITOR=1`, a benchmark knob to measure what they cost (read once;
/// not for production: nothing is monitored then).
pub(crate) fn monitoring() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HEADEND_BENCH_NO_MONITOR").is_none_or(|v| v != "1"))
}

struct Inner {
    analyser: Analyser,
    /// TR 101 290 on everything that arrives.
    monitor: Monitor,
    /// The last `standby` of the feed: (arrival ns, datagram payload).
    ring: VecDeque<(u64, Bytes)>,
    /// While on air: what the splicer has not taken yet.
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    on_air: bool,
    rtp: RtpStats,
    /// The highest RTP sequence number seen, extended to 64 bits.
    rtp_top: Option<u64>,
    /// Recently seen sequence numbers, for duplicates.
    rtp_recent: VecDeque<u64>,
    foreign: u64,
    overflow: u64,
    refused: u64,
    error: Option<String>,
    /// When the programme's current PMT first arrived.
    pmt_at: u64,
}

impl Inner {
    /// Where in the kept data the last random access point of the programme's video is (a
    /// switch starts there), if there is one.
    fn last_rap(&self) -> Option<usize> {
        let video = video_pid(&self.analyser)?;
        self.ring
            .iter()
            .rposition(|(_, d)| has_random_access(d, video))
    }
}

/// One input, shared by its receiving thread and the engine.
pub(crate) struct LiveFeed {
    name: String,
    standby_ns: u64,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl LiveFeed {
    fn new(cfg: &InputConfig, failover: &FailoverConfig, epoch: Instant) -> LiveFeed {
        let analyser = Analyser::new(AnalyserConfig {
            service_id: cfg.service_id,
            loss_timeout_ns: failover.loss_timeout.as_nanos() as u64,
            max_cc_errors: failover.max_cc_errors,
            min_bitrate_bps: failover.min_bitrate_bps.unwrap_or(0),
            ..AnalyserConfig::default()
        });
        let monitor = Monitor::new(MonitorConfig {
            si: false,
            nit: false,
            pcr_accuracy: matches!(cfg.endpoint, Endpoint::Datagram { .. }),
        });
        LiveFeed {
            name: cfg.name.clone(),
            standby_ns: failover.standby.as_nanos() as u64,
            epoch,
            inner: Mutex::new(Inner {
                analyser,
                monitor,
                ring: VecDeque::new(),
                pending: VecDeque::new(),
                pending_bytes: 0,
                on_air: false,
                rtp: RtpStats::default(),
                rtp_top: None,
                rtp_recent: VecDeque::new(),
                foreign: 0,
                overflow: 0,
                refused: 0,
                error: None,
                pmt_at: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nanoseconds on the feeds' monotonic clock.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The input's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The analyser's verdict now.
    pub(crate) fn health(&self) -> Health {
        let now = self.now();
        self.lock().analyser.health(now)
    }

    /// Verdict and counters (the monitor's absence rules brought up to now).
    pub(crate) fn status(&self) -> FeedStatus {
        let now = self.now();
        let mut g = self.lock();
        g.monitor.tick(now);
        FeedStatus {
            name: self.name.clone(),
            health: g.analyser.health(now),
            stats: g.analyser.stats(),
            rtp: g.rtp,
            foreign: g.foreign,
            overflow: g.overflow,
            refused: g.refused,
            error: g.error.clone(),
            tr101290: g
                .monitor
                .counts()
                .into_iter()
                .map(|(rule, n)| (rule.name().to_owned(), n))
                .collect(),
        }
    }

    /// How long ago the data from which [`LiveFeed::go_on_air`] would start arrived (its
    /// last video random access point), if it kept any.
    pub(crate) fn entry_age_ns(&self) -> Option<u64> {
        let now = self.now();
        let g = self.lock();
        let i = g.last_rap().unwrap_or(0);
        g.ring.get(i).map(|(t, _)| now.saturating_sub(*t))
    }

    /// How many different PMTs of its programme the feed has had.
    pub(crate) fn pmts(&self) -> u64 {
        self.lock().analyser.stats().pmts
    }

    /// Whether the feed's latest video random access point came after its current PMT (so a
    /// switch to it now starts with that PMT's streams).
    pub(crate) fn entry_after_pmt(&self) -> bool {
        let g = self.lock();
        g.last_rap()
            .and_then(|i| g.ring.get(i))
            .is_some_and(|(t, _)| *t >= g.pmt_at)
    }

    /// Puts the feed on air: what the splicer gets first is the latest PAT and PMT and the
    /// kept data from its last random access point (a packet whose adaptation field says
    /// so), else all of it; then what arrives.
    pub(crate) fn go_on_air(&self) {
        let mut g = self.lock();
        g.on_air = true;
        g.pending.clear();
        g.pending_bytes = 0;
        let start = g.last_rap().unwrap_or(0);
        // PAT and PMT from before that point, so the splicer knows the programme at once.
        let mut psi = BytesMut::new();
        if let Some(pmt_pid) = pmt_pid_of(&g.analyser) {
            for pid in [0u16, pmt_pid] {
                if let Some(p) = g
                    .ring
                    .iter()
                    .take(start)
                    .rev()
                    .find_map(|(_, d)| last_packet_of(d, pid))
                {
                    psi.extend_from_slice(&p);
                }
            }
        }
        let kept: Vec<Bytes> = g.ring.iter().skip(start).map(|(_, d)| d.clone()).collect();
        if !psi.is_empty() {
            g.pending_bytes += psi.len();
            g.pending.push_back(psi.freeze());
        }
        for d in kept {
            g.pending_bytes += d.len();
            g.pending.push_back(d);
        }
    }

    /// Takes the feed off air.
    pub(crate) fn go_off_air(&self) {
        let mut g = self.lock();
        g.on_air = false;
        g.pending.clear();
        g.pending_bytes = 0;
    }

    /// What arrived for the splicer since the last call (empty if nothing), without blocking.
    pub(crate) fn take(&self) -> Bytes {
        let mut g = self.lock();
        g.pending_bytes = 0;
        match g.pending.len() {
            0 => Bytes::new(),
            1 => g.pending.pop_front().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::new();
                for d in g.pending.drain(..) {
                    out.extend_from_slice(&d);
                }
                out.freeze()
            }
        }
    }

    /// Why the input cannot be received now, if it cannot (`None`: it can).
    pub(super) fn set_error(&self, error: Option<String>) {
        self.lock().error = error;
    }

    /// Bytes that are not transport stream packets: counted, and given to the analyser (its
    /// sync check names the problem), not queued for air.
    pub(super) fn foreign_bytes(&self, data: Bytes) {
        let now = self.now();
        let mut g = self.lock();
        g.foreign += 1;
        g.analyser.push(now, data);
    }

    /// A caller was refused (SRT): counted, and logged the first time.
    pub(super) fn refused(&self, why: &str) {
        let first = {
            let mut g = self.lock();
            g.refused += 1;
            g.refused == 1
        };
        if first {
            tracing::warn!(input = %self.name, reason = %why, "connection refused (further refusals are counted, not logged)");
        }
    }

    /// Whole packets of a stream input (HTTP) arrived now.
    pub(super) fn arrived_stream(&self, packets: Bytes) {
        self.arrived(self.now(), packets);
    }

    /// Datagrams arrived by `now`: `batch` holds them back to back, `lens` their lengths;
    /// both are emptied.
    /// On air, the batch is queued for the splicer whole: a read then takes it without a copy.
    fn arrived_batch(&self, now: u64, batch: &mut BytesMut, lens: &mut Vec<usize>) {
        crate::supervise::chaos(|| format!("input:{}", self.name));
        let whole = batch.split().freeze();
        let mut all = whole.clone();
        let mut g = self.lock();
        for len in lens.drain(..) {
            let d = all.split_to(len.min(all.len()));
            Self::seen_locked(&mut g, self.standby_ns, now, d);
        }
        if g.on_air {
            Self::queue_locked(&mut g, whole);
        }
    }

    /// A datagram arrived at `now` (RTP header already taken off).
    fn arrived(&self, now: u64, data: Bytes) {
        crate::supervise::chaos(|| format!("input:{}", self.name));
        let mut g = self.lock();
        Self::seen_locked(&mut g, self.standby_ns, now, data.clone());
        if g.on_air {
            Self::queue_locked(&mut g, data);
        }
    }

    /// Analysed, monitored, and kept for a switch.
    fn seen_locked(g: &mut Inner, standby_ns: u64, now: u64, data: Bytes) {
        if monitoring() {
            g.monitor.push(now, &data);
        }
        let pmts = g.analyser.stats().pmts;
        g.analyser.push(now, data.clone());
        if g.analyser.stats().pmts != pmts {
            g.pmt_at = now;
        }
        g.ring.push_back((now, data));
        while g
            .ring
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > standby_ns)
        {
            g.ring.pop_front();
        }
    }

    /// Queued for the splicer (on air).
    fn queue_locked(g: &mut Inner, data: Bytes) {
        g.pending_bytes += data.len();
        g.pending.push_back(data);
        while g.pending_bytes > MAX_PENDING {
            let Some(d) = g.pending.pop_front() else {
                break;
            };
            g.pending_bytes -= d.len();
            g.overflow += d.len() as u64;
        }
    }

    /// Counts an RTP sequence number; false for a duplicate (to drop).
    fn rtp_seq(&self, seq: u16) -> bool {
        let mut g = self.lock();
        g.rtp.packets += 1;
        let ext = match g.rtp_top {
            None => u64::from(seq) + (1 << 16),
            Some(top) => {
                // The 64-bit number nearest the last.
                let base = top & !0xFFFF;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b | u64::from(seq))
                    .min_by_key(|c| c.abs_diff(top))
                    .unwrap_or(top)
            }
        };
        if g.rtp_recent.contains(&ext) {
            g.rtp.duplicates += 1;
            return false;
        }
        g.rtp_recent.push_back(ext);
        if g.rtp_recent.len() > 256 {
            g.rtp_recent.pop_front();
        }
        match g.rtp_top {
            Some(top) if ext < top => {
                // Late: it was counted lost when the later one came.
                g.rtp.reordered += 1;
                g.rtp.lost = g.rtp.lost.saturating_sub(1);
            }
            Some(top) => {
                g.rtp.lost += ext - top - 1;
                g.rtp_top = Some(ext);
            }
            None => g.rtp_top = Some(ext),
        }
        true
    }
}

/// The programme's video PID, whose random access points a switch starts at (audio frames
/// are all flagged as such).
fn video_pid(a: &Analyser) -> Option<u16> {
    a.pmt().and_then(|p| {
        p.streams
            .iter()
            .find(|e| playout::es::Codec::of(e).class() == playout::es::StreamClass::Video)
            .map(|e| e.pid.value())
    })
}

fn pmt_pid_of(a: &Analyser) -> Option<u16> {
    a.program().map(|(_, pid)| pid.value())
}

/// Whether a datagram holds a packet of `pid` starting a PES with random_access_indicator.
fn has_random_access(d: &[u8], pid: u16) -> bool {
    d.chunks_exact(PACKET_SIZE).any(|p| {
        p[0] == SYNC_BYTE
            && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == pid
            && p[1] & 0x40 != 0
            && p[3] & 0x20 != 0
            && p[4] > 0
            && p[5] & 0x40 != 0
    })
}

/// The last whole packet of `pid` in a datagram.
fn last_packet_of(d: &[u8], pid: u16) -> Option<Bytes> {
    d.chunks_exact(PACKET_SIZE)
        .rev()
        .find(|p| p[0] == SYNC_BYTE && (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == pid)
        .map(Bytes::copy_from_slice)
}

/// The feeds of one channel and their threads.
pub(crate) struct LiveSet {
    pub(crate) feeds: Vec<Arc<LiveFeed>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LiveSet {
    /// Starts receiving every input of a channel: UDP and RTP on `poller`'s thread, SRT and
    /// HTTP each on its own.
    pub(crate) fn start(
        channel: &str,
        inputs: &[InputConfig],
        failover: &FailoverConfig,
        epoch: Instant,
        poller: &DatagramPoller,
    ) -> io::Result<LiveSet> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut feeds = Vec::new();
        let mut threads = Vec::new();
        for cfg in inputs {
            let feed = Arc::new(LiveFeed::new(cfg, failover, epoch));
            if let Endpoint::Datagram { rtp, addr } = cfg.endpoint {
                poller.add(DatagramInput {
                    feed: feed.clone(),
                    cfg: cfg.clone(),
                    rtp,
                    addr,
                    set_stop: stop.clone(),
                    socket: None,
                    retry_at: None,
                    logged: false,
                    batch: BytesMut::new(),
                    lens: Vec::new(),
                    panics: 0,
                });
                feeds.push(feed);
                continue;
            }
            let (f, s, c) = (feed.clone(), stop.clone(), cfg.clone());
            // A panic in the receiver (the data it takes apart) costs its connection: it
            // starts again, the feed silent meanwhile (a failover if it was on air).
            threads.push(crate::supervise::spawn_restarting(
                format!("in-{channel}-{}", cfg.name),
                "input receiver",
                move || {
                    if !s.load(Ordering::Relaxed) {
                        receive(&f, &c, &s);
                    }
                },
            )?);
            feeds.push(feed);
        }
        Ok(LiveSet {
            feeds,
            stop,
            threads,
        })
    }

    /// Stops the receiving threads: each sees the flag within about 100 ms; one still busy
    /// after 2 s (a library call that does not return) is left to end with the process.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(2);
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(thread = ?t.thread().name(), "input thread did not stop; left behind");
            }
        }
    }
}

impl Drop for LiveSet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The receiving thread, until stopped.
fn receive(feed: &LiveFeed, cfg: &InputConfig, stop: &AtomicBool) {
    match &cfg.endpoint {
        // On the poller's thread.
        Endpoint::Datagram { .. } => {}
        Endpoint::Srt(e) => super::srt_in::receive(feed, &cfg.name, e, stop),
        Endpoint::Http {
            host,
            port,
            path,
            tls,
        } => {
            let config = match tls.then(|| super::http_pull::tls_config(cfg.ca.as_deref())) {
                None => None,
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    tracing::error!(input = %cfg.name, error = %e, "cannot pull the input: no TLS");
                    feed.set_error(Some(e));
                    return;
                }
            };
            tracing::info!(input = %cfg.name, url = %cfg.endpoint, "pulling");
            super::http_pull::pull(feed, &cfg.name, host, *port, path, config, stop);
        }
    }
}

/// Receives every UDP and RTP input of the daemon on one thread: each socket non-blocking,
/// all of them drained every [`POLL`] (a wake-up per batch of datagrams rather than per
/// datagram, and one allocation and one lock per batch). A thread per input, each waking
/// every 5 ms, spent a quarter of a 20-channel relay's CPU switching threads.
pub(crate) struct DatagramPoller {
    inputs: Arc<Mutex<Vec<DatagramInput>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DatagramPoller {
    /// Starts the thread (it idles until inputs are added).
    pub(crate) fn start() -> io::Result<DatagramPoller> {
        let inputs: Arc<Mutex<Vec<DatagramInput>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (i, s) = (inputs.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("in-datagrams".to_owned())
            .spawn(move || {
                let mut buf = RecvBuffers::new();
                while !s.load(Ordering::Relaxed) {
                    {
                        let mut inputs = i.lock().unwrap_or_else(PoisonError::into_inner);
                        // The inputs of a channel that stopped close.
                        inputs.retain(|d| !d.set_stop.load(Ordering::Relaxed));
                        for d in inputs.iter_mut() {
                            // A panic costs that input's socket (see `after_panic`).
                            if let Err(why) = crate::supervise::contain(|| d.poll(&mut buf)) {
                                d.after_panic(&why);
                            }
                        }
                        if inputs.is_empty() {
                            // Nothing to poll: asleep until an input is added (or stop).
                            drop(inputs);
                            std::thread::park_timeout(IDLE_POLL);
                            continue;
                        }
                    }
                    std::thread::sleep(POLL);
                }
            })?;
        Ok(DatagramPoller {
            inputs,
            stop,
            thread: Some(thread),
        })
    }

    fn add(&self, input: DatagramInput) {
        self.inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(input);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for DatagramPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Datagrams taken per receive call.
const RECV_BATCH: usize = 32;
/// The largest datagram taken (a jumbo frame); a larger one is counted as foreign.
const RECV_SIZE: usize = 9216;

/// Buffers for `recvmmsg`: up to [`RECV_BATCH`] datagrams a system call.
struct RecvBuffers {
    data: Vec<Vec<u8>>,
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl RecvBuffers {
    fn new() -> RecvBuffers {
        RecvBuffers {
            data: vec![vec![0u8; RECV_SIZE]; RECV_BATCH],
            headers: nix::sys::socket::MultiHeaders::preallocate(RECV_BATCH, None),
        }
    }

    /// What is waiting on `socket`, without blocking: each datagram's length and whether it
    /// was cut short, in `lens` (`WouldBlock` when nothing is).
    fn receive(&mut self, socket: &UdpSocket, lens: &mut Vec<(usize, bool)>) -> io::Result<()> {
        use nix::sys::socket::{recvmmsg, MsgFlags};
        use std::os::fd::AsRawFd;
        lens.clear();
        let mut slices: Vec<[io::IoSliceMut<'_>; 1]> = self
            .data
            .iter_mut()
            .map(|d| [io::IoSliceMut::new(d)])
            .collect();
        let got = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        lens.extend(got.map(|m| (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC))));
        Ok(())
    }
}

/// A UDP or RTP input: its socket (reopened a second after a failure) and its batch.
struct DatagramInput {
    feed: Arc<LiveFeed>,
    cfg: InputConfig,
    rtp: bool,
    addr: SocketAddr,
    /// Its channel's stop flag.
    set_stop: Arc<AtomicBool>,
    socket: Option<UdpSocket>,
    /// When to try opening again after a failure.
    retry_at: Option<Instant>,
    /// The open failure was logged.
    logged: bool,
    batch: BytesMut,
    lens: Vec<usize>,
    /// Polls that panicked since the socket last received.
    panics: u32,
}

impl DatagramInput {
    /// A poll panicked (on the data it took apart): the socket is closed and opened again
    /// after a rest (1 s, doubling to a minute while it keeps panicking), the feed silent
    /// meanwhile (a failover if it was on air); what it had taken of the batch is dropped.
    fn after_panic(&mut self, why: &str) {
        self.socket = None;
        self.batch.clear();
        self.lens.clear();
        self.panics = self.panics.saturating_add(1);
        let rest = crate::supervise::rest_after(self.panics);
        let rest_s = rest.as_secs();
        self.retry_at = Some(Instant::now() + rest);
        let reason =
            format!("the receiver panicked ({why}): the socket is opened again in {rest_s} s");
        self.feed.set_error(Some(reason.clone()));
        crate::supervise::panicked(
            "input receiver",
            format!("input {}: {reason}", self.cfg.name),
        );
    }

    /// Opens the socket if it is time, then takes what has arrived.
    fn poll(&mut self, bufs: &mut RecvBuffers) {
        if self.socket.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            match open(&self.cfg, self.addr) {
                Ok(s) => {
                    self.feed.lock().error = None;
                    self.socket = Some(s);
                    self.retry_at = None;
                    tracing::info!(input = %self.cfg.name, url = %self.cfg.endpoint, "receiving");
                }
                Err(e) => {
                    let msg = format!("{}: {e}", self.addr);
                    if !self.logged {
                        tracing::error!(input = %self.cfg.name, error = %msg, "cannot receive the input; retrying every second");
                        self.logged = true;
                    }
                    self.feed.lock().error = Some(msg);
                    self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    return;
                }
            }
        }
        let Some(socket) = self.socket.as_ref() else {
            return;
        };
        let feed = &self.feed;
        let mut lens: Vec<(usize, bool)> = Vec::with_capacity(RECV_BATCH);
        'drain: loop {
            match bufs.receive(socket, &mut lens) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(input = %self.cfg.name, error = %e, "receive failed; reopening");
                    self.socket = None;
                    break;
                }
            }
            let full = lens.len() == RECV_BATCH;
            for (k, &(n, truncated)) in lens.iter().enumerate() {
                if truncated {
                    // Larger than a receive buffer: not a TS-over-UDP datagram.
                    feed.lock().foreign += 1;
                    continue;
                }
                let data = &bufs.data[k][..n];
                let payload = match self.rtp {
                    true => match playout::rtp::payload(data) {
                        Some((seq, p)) => {
                            if !feed.rtp_seq(seq) {
                                continue;
                            }
                            p
                        }
                        None => {
                            feed.lock().foreign += 1;
                            continue;
                        }
                    },
                    false => data,
                };
                if payload.first() != Some(&SYNC_BYTE) {
                    // Not a transport stream datagram: counted, and still given to the analyser
                    // (its sync check names the problem) but not queued for air.
                    let now = feed.now();
                    let mut g = feed.lock();
                    g.foreign += 1;
                    g.analyser.push(now, Bytes::copy_from_slice(payload));
                    continue;
                }
                self.batch.extend_from_slice(payload);
                self.lens.push(payload.len());
                if self.lens.len() >= MAX_BATCH {
                    feed.arrived_batch(feed.now(), &mut self.batch, &mut self.lens);
                }
            }
            if !full {
                break 'drain;
            }
        }
        if !self.lens.is_empty() {
            feed.arrived_batch(feed.now(), &mut self.batch, &mut self.lens);
            // Taken whole: the rest after a panic starts from 1 s again.
            self.panics = 0;
        }
    }
}

/// A non-blocking socket bound to the input's port (and group), joined to its group.
fn open(cfg: &InputConfig, addr: SocketAddr) -> io::Result<UdpSocket> {
    crate::net::receiver(addr, cfg.interface.as_deref(), cfg.source, 8 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_headers_are_taken_off() {
        let mut d = vec![0x80, 33, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 2];
        d.extend_from_slice(&[0x47; 188]);
        let (seq, p) = playout::rtp::payload(&d).unwrap();
        assert_eq!(seq, 0x1234);
        assert_eq!(p.len(), 188);
        // One CSRC, an extension of one word, 4 bytes of padding.
        let mut d = vec![
            0xB1, 33, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 5, 5, 5, 5,
        ];
        d.extend_from_slice(&[0x47; 188]);
        d.extend_from_slice(&[0, 0, 0, 4]);
        let (seq, p) = playout::rtp::payload(&d).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(p.len(), 188);
        assert!(playout::rtp::payload(&[0x47; 188]).is_none());
        assert!(playout::rtp::payload(&[0x80, 33, 0]).is_none());
    }

    #[test]
    fn rtp_loss_reorder_and_duplicates_are_counted() {
        let cfg = InputConfig {
            name: "x".into(),
            endpoint: Endpoint::Datagram {
                rtp: true,
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            interface: None,
            source: None,
            service_id: None,
            ca: None,
        };
        let f = LiveFeed::new(&cfg, &FailoverConfig::default(), Instant::now());
        // 65534, 65535, 1 (0 late), 0, 0 again, 2, 5.
        for (seq, keep) in [
            (65534, true),
            (65535, true),
            (1, true),
            (0, true),
            (0, false),
            (2, true),
            (5, true),
        ] {
            assert_eq!(f.rtp_seq(seq), keep, "{seq}");
        }
        let r = f.lock().rtp;
        assert_eq!(
            r,
            RtpStats {
                packets: 7,
                lost: 2,
                reordered: 1,
                duplicates: 1
            }
        );
    }
}
