//! The real-time engine: every station (a channel on its own, or an MPTS) is muxed and paced
//! on one thread, which sends each datagram to the station's UDP/RTP outputs when it is due
//! and hands the output to the HTTP feed in larger chunks. File reads run on a pool of I/O
//! threads, so a slow disk delays nothing on air: a station whose input is late sends null
//! packets (with PAT/PMT and PCR) until it arrives. Outputs are non-blocking: one that fails
//! or pushes back loses its own datagrams and nothing else.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use playout::mux::{Mux, MuxEvent, Underflow};
use playout::pacing::{Pacer, PacerConfig};
use playout::splice::{IoRequest, SpliceEvent};
use playout::ts::PACKET_SIZE;
use serde::Serialize;

use crate::config::{ChannelConfig, Config, OutputConfig};
use crate::feed::{Chunk, Feed};
use crate::input::file::{FileSource, IoDone};
use crate::output::udp::{OutputStats, UdpOutput};
use crate::render::{self, RenderStats};
use crate::schedule::driver::{ClockMap, ClockMaps, OnAirProgramme, ScheduleMsg};
use crate::si::{NetworkSi, StationSi};

mod overrides;
pub(crate) mod scrambling;
pub(crate) use overrides::{AirAlert, AirKind, AirReport, OverrideMsg};

/// TS packets per datagram.
const PACKETS_PER_DATAGRAM: usize = 7;
const DATAGRAM: usize = PACKETS_PER_DATAGRAM * PACKET_SIZE;
/// Datagrams due this soon are sent in the same wake-up (a little early) to save wake-ups.
const EARLY_NS: u64 = 300_000;
/// Longest sleep, so I/O results and the stop flag are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(2);
/// HTTP chunks: published at this size or age, whichever comes first.
const HTTP_CHUNK_BYTES: usize = 32 * DATAGRAM;
const HTTP_CHUNK_NS: u64 = 40_000_000;
/// File I/O threads.
const IO_THREADS: usize = 4;
/// Time one read result may take to apply (demux of a 385 KB chunk, with margin): after the
/// first one in a wake-up, more are applied only while this much is left before the next
/// datagram is due.
const IO_APPLY_NS: u64 = 150_000;
/// On shutdown, access units starting within this time still go out whole (beyond the
/// splicers' 1 s read-ahead, so only what is queued goes out)...
const CLOSE_CUTOFF_NS: u64 = 1_500_000_000;
/// ...and the engine stops after at most this long.
const CLOSE_LIMIT_NS: u64 = 3_000_000_000;

/// What one station is: built from the config before the engine starts.
pub(crate) struct StationSpec {
    /// Channel or MPTS id.
    pub(crate) id: String,
    channels: Vec<ChannelConfig>,
    mux: playout::mux::MuxConfig,
    outputs: Vec<OutputConfig>,
    /// The HTTP feed (single channels only).
    pub(crate) feed: Option<Arc<Feed>>,
    /// Each program's playlist, shared with its file source (a schedule appends to it).
    paths: Vec<Arc<RwLock<Vec<PathBuf>>>>,
    /// Its transport_stream_id (SDT, EIT, NIT).
    transport_stream_id: u16,
    /// The network's SI, shared by every station.
    network: Arc<NetworkSi>,
}

impl StationSpec {
    /// Its channels' ids, by program.
    pub(crate) fn channel_ids(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.id.clone()).collect()
    }

    /// Whether this is a channel on its own (which a schedule can drive).
    pub(crate) fn single_channel(&self) -> Option<&ChannelConfig> {
        (self.feed.is_some() && self.channels.len() == 1).then(|| &self.channels[0])
    }
}

/// Every station of a config: each channel, and each MPTS.
pub(crate) fn stations(config: &Config) -> Vec<StationSpec> {
    let network = Arc::new(NetworkSi::new(config));
    let mut out: Vec<StationSpec> = config
        .channels
        .iter()
        .map(|ch| StationSpec {
            id: ch.id.clone(),
            channels: vec![ch.clone()],
            mux: render::channel_mux_config(ch),
            outputs: ch.outputs.clone(),
            feed: Some(Feed::new()),
            paths: vec![Arc::new(RwLock::new(ch.playlist.clone()))],
            transport_stream_id: ch.transport_stream_id,
            network: network.clone(),
        })
        .collect();
    for m in &config.mpts {
        if let Some((mux, channels)) = render::mpts_mux_config(config, &m.id) {
            out.push(StationSpec {
                id: m.id.clone(),
                paths: channels
                    .iter()
                    .map(|c| Arc::new(RwLock::new(c.playlist.clone())))
                    .collect(),
                channels: channels.into_iter().cloned().collect(),
                mux,
                outputs: m.outputs.clone(),
                feed: None,
                transport_stream_id: m.transport_stream_id,
                network: network.clone(),
            });
        }
    }
    out
}

/// What `/channels` shows of a station, refreshed about once a second.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct StationStatus {
    pub(crate) id: String,
    pub(crate) muxrate_bps: u64,
    /// Item on air per program (file name), if any.
    pub(crate) on_air: Vec<Option<String>>,
    pub(crate) packets: u64,
    pub(crate) null_packets: u64,
    pub(crate) items_started: u64,
    pub(crate) items_failed: u64,
    pub(crate) late_packets: u64,
    pub(crate) underflows: u64,
    pub(crate) pacer_stalls: u64,
    pub(crate) max_late_us: u64,
    pub(crate) outputs: Vec<OutputStatus>,
    /// The scrambled programs: counters and whether a failure policy is in force (alarm).
    pub(crate) scrambling: Vec<scrambling::ScramblingStats>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct OutputStatus {
    pub(crate) url: String,
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
}

/// Shared status of all stations.
pub(crate) type Status = Arc<Mutex<Vec<StationStatus>>>;

/// The running engine thread.
pub(crate) struct Engine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    pub(crate) status: Status,
    /// How each station's output clock maps to UTC, for the scheduler.
    pub(crate) maps: ClockMaps,
    /// Where the scheduler sends each station's cues (and the alert desk its overrides).
    pub(crate) schedule: ScheduleSink,
    /// When alerts go on and off air, per program (for the audit log); taken by the desk.
    pub(crate) air_reports: Mutex<Option<mpsc::Receiver<AirReport>>>,
}

/// Routes the scheduler's messages to the engine thread that owns the station.
#[derive(Clone)]
pub(crate) struct ScheduleSink {
    txs: Vec<mpsc::Sender<Control>>,
    shard_of: Vec<usize>,
}

impl ScheduleSink {
    /// Hands `msg` to its station's engine thread; `false` once the engine has stopped.
    pub(crate) fn send(&self, msg: ScheduleMsg) -> bool {
        self.deliver(msg.station, Control::Schedule(msg))
    }

    /// Hands an alert override to its station's engine thread; `false` once stopped.
    pub(crate) fn send_override(&self, msg: OverrideMsg) -> bool {
        self.deliver(msg.station(), Control::Override(msg))
    }

    fn deliver(&self, station: usize, msg: Control) -> bool {
        self.shard_of
            .get(station)
            .and_then(|s| self.txs.get(*s))
            .is_some_and(|tx| tx.send(msg).is_ok())
    }
}

#[cfg(test)]
impl ScheduleSink {
    /// A sink for `stations` stations on one shard, without an engine: what is sent can be
    /// read back with [`ScheduleSink::overrides_sent`].
    pub(crate) fn for_tests(stations: usize) -> (ScheduleSink, TestReceiver) {
        let (tx, rx) = mpsc::channel();
        (
            ScheduleSink {
                txs: vec![tx],
                shard_of: vec![0; stations],
            },
            TestReceiver(rx),
        )
    }
}

/// What a test sink received.
#[cfg(test)]
pub(crate) struct TestReceiver(mpsc::Receiver<Control>);

#[cfg(test)]
impl TestReceiver {
    /// The overrides sent so far.
    pub(crate) fn overrides_sent(&self) -> Vec<OverrideMsg> {
        self.0
            .try_iter()
            .filter_map(|c| match c {
                Control::Override(o) => Some(o),
                Control::Schedule(_) => None,
            })
            .collect()
    }
}

/// What the engine threads are told.
enum Control {
    Schedule(ScheduleMsg),
    Override(OverrideMsg),
}

impl Engine {
    /// Opens every output (an output that cannot be opened is an error naming it) and starts
    /// `threads` engine threads (stations dealt round-robin) and the I/O threads; the first
    /// datagrams leave about 20 ms later.
    pub(crate) fn start(
        specs: &[StationSpec],
        realtime_priority: u8,
        threads: usize,
    ) -> anyhow::Result<Engine> {
        let epoch = Instant::now();
        let utc_at_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let start_ns = 20_000_000;
        let mut maps = Vec::new();
        let mut stations = Vec::new();
        let mut seed = epoch.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) << 32;
        let (reports_tx, reports_rx) = mpsc::channel();
        let eit_builder = crate::eit_builder::EitBuilder::start()?;
        for (si, spec) in specs.iter().enumerate() {
            let mut outputs = Vec::new();
            for o in &spec.outputs {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                outputs.push(UdpOutput::open(o, seed).map_err(|e| {
                    anyhow::anyhow!("station `{}`: cannot open output: {e}", spec.id)
                })?);
            }
            let refs: Vec<&ChannelConfig> = spec.channels.iter().collect();
            let mut mux = Mux::new(spec.mux.clone(), render::splicers(&refs));
            mux.track_raps(spec.feed.is_some());
            let mut scrambled = Vec::new();
            for ch in &spec.channels {
                if let Some(sc) = &ch.scrambling {
                    let mut s = scrambling::ProgramScrambling::new(ch, sc, mux.now())
                        .map_err(|e| anyhow::anyhow!("channel `{}`: {e}", ch.id))?;
                    let now = mux.now();
                    s.start(&mut mux, now);
                    scrambled.push(s);
                }
            }
            let channel_si = StationSi::start(
                &mut mux,
                &spec.network,
                spec.transport_stream_id,
                &refs,
                spec.feed.is_none(),
                (si, &eit_builder),
            );
            let pacer_cfg = PacerConfig::new(spec.mux.muxrate_bps);
            // Stagger the stations across one datagram interval so they do not all wake at
            // the same instant.
            let stagger = pacer_cfg.interval_ns() * si as u64 / specs.len().max(1) as u64;
            maps.push(Some(ClockMap {
                utc_at_origin_ns: utc_at_epoch_ns + (start_ns + stagger) as i64,
                origin: spec.mux.clock_origin,
                skipped_ns: 0,
            }));
            stations.push(Station {
                index: si,
                id: spec.id.clone(),
                names: spec.channels.iter().map(|c| c.id.clone()).collect(),
                service_ids: spec.channels.iter().map(|c| c.service_id).collect(),
                playlists: spec.channels.iter().map(|c| c.playlist.clone()).collect(),
                sources: spec
                    .paths
                    .iter()
                    .map(|p| Some(FileSource::shared(p.clone())))
                    .collect(),
                paths: spec.paths.clone(),
                on_air: vec![None; spec.channels.len()],
                mux,
                pacer: Pacer::new(pacer_cfg, start_ns + stagger),
                outputs,
                feed: spec.feed.clone(),
                acc: BytesMut::with_capacity(HTTP_CHUNK_BYTES + DATAGRAM * 64),
                acc_slot: 0,
                acc_since: start_ns,
                acc_rap: None,
                log_stats: RenderStats::default(),
                si: channel_si,
                programmes: Default::default(),
                on_air_tag: None,
                scrambling: scrambled,
                air: overrides::Air::new(
                    spec.channels.iter().map(|c| c.playlist.len()).collect(),
                    reports_tx.clone(),
                    ClockMap {
                        utc_at_origin_ns: utc_at_epoch_ns + (start_ns + stagger) as i64,
                        origin: spec.mux.clock_origin,
                        skipped_ns: 0,
                    },
                ),
            });
        }
        let status: Status = Arc::new(Mutex::new(stations.iter().map(|s| s.status()).collect()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = threads.clamp(1, stations.len().max(1));
        // The I/O threads answer every shard, each on its own channel.
        let (job_tx, job_rx) = mpsc::channel::<IoJob>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut done_txs = Vec::new();
        let mut done_rxs = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel::<IoResult>();
            done_txs.push(tx);
            done_rxs.push(rx);
        }
        let done_txs = Arc::new(done_txs);
        let mut workers = Vec::new();
        for i in 0..IO_THREADS {
            let job_rx = job_rx.clone();
            let done_txs = done_txs.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("io-{i}"))
                    .spawn(move || io_worker(&job_rx, &done_txs))?,
            );
        }
        drop(done_txs);
        let mut shards: Vec<Vec<(usize, Station)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, st) in stations.into_iter().enumerate() {
            shards[i % threads].push((i, st));
        }
        tracing::info!(
            stations = specs.len(),
            engine_threads = threads,
            io_threads = workers.len(),
            "engine on air"
        );
        let maps: ClockMaps = Arc::new(Mutex::new(maps));
        let mut shard_of = vec![0; specs.len()];
        for (i, s) in shard_of.iter_mut().enumerate() {
            *s = i % threads;
        }
        let mut sched_txs = Vec::new();
        let mut handles = Vec::new();
        for (shard, (stations, done_rx)) in shards.into_iter().zip(done_rxs).enumerate() {
            let stop = stop.clone();
            let status = status.clone();
            let job_tx = job_tx.clone();
            let maps = maps.clone();
            let (sched_tx, sched_rx) = mpsc::channel();
            sched_txs.push(sched_tx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("engine-{shard}"))
                    .spawn(move || {
                        set_realtime(realtime_priority);
                        run(
                            Shard {
                                index: shard,
                                stations,
                                epoch,
                                jobs: job_tx,
                                done: done_rx,
                                schedule: sched_rx,
                                maps,
                            },
                            &stop,
                            &status,
                        );
                    })?,
            );
        }
        Ok(Engine {
            stop,
            threads: handles,
            workers,
            status,
            maps,
            schedule: ScheduleSink {
                txs: sched_txs,
                shard_of,
            },
            air_reports: Mutex::new(Some(reports_rx)),
        })
    }

    /// Stops the engine: the outputs close after the last datagram, HTTP feeds end.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The shards dropped their job senders: the I/O threads end.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Station {
    /// Its index among all stations.
    index: usize,
    id: String,
    names: Vec<String>,
    /// Each program's service_id.
    service_ids: Vec<u16>,
    playlists: Vec<Vec<PathBuf>>,
    /// Each program's files; `None` while an I/O thread has them.
    sources: Vec<Option<FileSource>>,
    /// Each program's playlist, shared with its source.
    paths: Vec<Arc<RwLock<Vec<PathBuf>>>>,
    /// DVB SI of the station (none when every channel has it off).
    si: Option<StationSi>,
    /// Programmes of the cues handed to the splicer, by tag, until they go on air.
    programmes: std::collections::BTreeMap<u64, OnAirProgramme>,
    /// The tag of the cue on air (program 0), if it came from the schedule.
    on_air_tag: Option<u64>,
    /// Emergency alert overrides, per program.
    air: overrides::Air,
    /// The scrambled programs.
    scrambling: Vec<scrambling::ProgramScrambling>,
    on_air: Vec<Option<String>>,
    mux: Mux,
    pacer: Pacer,
    outputs: Vec<UdpOutput>,
    feed: Option<Arc<Feed>>,
    /// Output not yet published to the HTTP feed, from slot `acc_slot` on.
    acc: BytesMut,
    acc_slot: u64,
    acc_since: u64,
    acc_rap: Option<(usize, Bytes)>,
    log_stats: RenderStats,
}

struct IoJob {
    shard: usize,
    station: usize,
    program: usize,
    source: FileSource,
    req: IoRequest,
}

struct IoResult {
    station: usize,
    program: usize,
    source: FileSource,
    done: IoDone,
}

/// Puts the calling thread under SCHED_FIFO at `priority` (0: leave it alone).
fn set_realtime(priority: u8) {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if priority == 0 {
        return;
    }
    let result = ThreadPriorityValue::try_from(priority)
        .map_err(|e| format!("{e:?}"))
        .and_then(|p| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(p),
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
            )
            .map_err(|e| format!("{e:?}"))
        });
    match result {
        Ok(()) => tracing::info!(priority, "engine thread runs at SCHED_FIFO priority"),
        Err(e) => {
            tracing::warn!(priority, error = %e, "cannot give the engine thread real-time priority (needs root or CAP_SYS_NICE); datagram timing may suffer on a busy machine")
        }
    }
}

/// One engine thread's stations (with their indexes among all stations) and channels.
struct Shard {
    index: usize,
    stations: Vec<(usize, Station)>,
    epoch: Instant,
    jobs: mpsc::Sender<IoJob>,
    done: mpsc::Receiver<IoResult>,
    schedule: mpsc::Receiver<Control>,
    maps: ClockMaps,
}

fn run(shard: Shard, stop: &AtomicBool, status: &Status) {
    let Shard {
        index: shard,
        stations,
        epoch,
        jobs: job_tx,
        done: done_rx,
        schedule: sched_rx,
        maps,
    } = shard;
    let (global, mut stations): (Vec<usize>, Vec<Station>) = stations.into_iter().unzip();
    let mut next_status = 0u64;
    let mut closing_since: Option<u64> = None;
    loop {
        let now = epoch.elapsed().as_nanos() as u64;
        match closing_since {
            None if stop.load(Ordering::Relaxed) => {
                // Close cleanly: what has begun goes out whole, then the outputs stop.
                tracing::info!("closing the outputs");
                for st in &mut stations {
                    let cutoff = st.mux.now() + CLOSE_CUTOFF_NS * 27 / 1000;
                    st.mux.close(cutoff);
                }
                closing_since = Some(now);
            }
            Some(since) => {
                let drained = stations.iter().all(|s| s.mux.queued() == 0);
                if drained || now - since > CLOSE_LIMIT_NS {
                    break;
                }
            }
            None => {}
        }
        // First what is due: the datagrams.
        let mut next = now + MAX_SLEEP.as_nanos() as u64;
        for st in stations.iter_mut() {
            st.tick(now);
            next = next.min(st.pacer.poll_timeout());
        }
        // Then the rest, in the time left before the next datagram is due. Applying a read
        // result demuxes up to 385 KB; the splicers read a second ahead, so results can wait
        // for the next wake-up rather than delay every station's datagrams.
        let mut applied = 0;
        loop {
            let t = epoch.elapsed().as_nanos() as u64;
            if applied > 0 && t + IO_APPLY_NS > next {
                break;
            }
            let Ok(r) = done_rx.try_recv() else { break };
            let st = &mut stations[r.station];
            st.sources[r.program] = Some(r.source);
            let at = st.mux.now();
            r.done.apply(st.mux.program_mut(r.program), at);
            applied += 1;
        }
        while let Ok(msg) = sched_rx.try_recv() {
            match msg {
                Control::Schedule(msg) => {
                    if let Some(k) = global.iter().position(|g| *g == msg.station) {
                        stations[k].apply_schedule(msg);
                    }
                }
                Control::Override(msg) => {
                    if let Some(k) = global.iter().position(|g| *g == msg.station()) {
                        stations[k].apply_override(msg);
                    }
                }
            }
        }
        for (i, st) in stations.iter_mut().enumerate() {
            st.request_io(shard, i, &job_tx);
            st.log_events();
            if let Some(si) = &mut st.si {
                si.take_built(&mut st.mux);
            }
        }
        if now >= next_status {
            next_status = now + 1_000_000_000;
            publish_status(&stations, &global, status);
            for st in stations.iter_mut() {
                if let Some(si) = &mut st.si {
                    si.tick(&mut st.mux);
                }
            }
            let mut all = maps.lock().unwrap_or_else(PoisonError::into_inner);
            for (st, &g) in stations.iter().zip(&global) {
                if let Some(Some(m)) = all.get_mut(g) {
                    m.skipped_ns = st.pacer.stats().skipped_ns;
                }
            }
        }
        let after = epoch.elapsed().as_nanos() as u64;
        if next > after {
            std::thread::sleep(Duration::from_nanos(next - after));
        }
    }
    for st in &mut stations {
        st.flush_feed(true);
        if let Some(feed) = &st.feed {
            feed.close();
        }
        for o in &st.outputs {
            let s = o.stats();
            tracing::info!(station = %st.id, output = o.label(), datagrams = s.datagrams, errors = s.errors, "output closed");
        }
    }
    publish_status(&stations, &global, status);
    tracing::info!(shard, "engine stopped");
}

/// Writes the stations' status at their places among all stations.
fn publish_status(stations: &[Station], global: &[usize], status: &Status) {
    let fresh: Vec<StationStatus> = stations.iter().map(Station::status).collect();
    let mut all = status.lock().unwrap_or_else(PoisonError::into_inner);
    for (st, &g) in fresh.into_iter().zip(global) {
        if let Some(slot) = all.get_mut(g) {
            *slot = st;
        }
    }
}

fn io_worker(jobs: &Mutex<mpsc::Receiver<IoJob>>, done: &[mpsc::Sender<IoResult>]) {
    loop {
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut source = job.source;
        let result = source.perform(job.req);
        let Some(done) = done.get(job.shard) else {
            return;
        };
        if done
            .send(IoResult {
                station: job.station,
                program: job.program,
                source,
                done: result,
            })
            .is_err()
        {
            return;
        }
    }
}

impl Station {
    /// Takes the scheduler's cues: new files join the playlist, the first cues take over
    /// from it.
    fn apply_schedule(&mut self, msg: ScheduleMsg) {
        if let (Some(guide), Some(si)) = (&msg.guide, self.si.as_mut()) {
            si.set_guide(&mut self.mux, self.service_ids[0], guide);
        }
        let (Some(paths), true) = (self.paths.first(), self.mux.programs() == 1) else {
            return;
        };
        let splicer = self.mux.program_mut(0);
        for p in msg.new_paths {
            paths
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push(p.clone());
            if let Some(names) = self.playlists.first_mut() {
                names.push(p);
            }
            splicer.add_item();
        }
        self.air.scheduled |= msg.handover.is_some() || !msg.cues.is_empty();
        if self.air.overriding(0) {
            // An alert is on air: the schedule's cues wait; when the alert ends the scheduler
            // cues again from the wall clock (`preempt`).
            self.programmes.extend(msg.programmes);
        } else {
            if let Some(at) = msg.handover {
                self.programmes.clear();
                splicer.clear_cues();
                if msg.preempt {
                    tracing::info!(station = %self.id, "the schedule returns");
                } else {
                    splicer.cut_current(at);
                    tracing::info!(station = %self.id, "schedule takes over");
                }
            }
            self.programmes.extend(msg.programmes);
            let now = self.mux.now();
            let splicer = self.mux.program_mut(0);
            for (k, c) in msg.cues.into_iter().enumerate() {
                if c.from_byte > 0 {
                    tracing::info!(station = %self.id, item = c.item, from_byte = c.from_byte, offset_s = c.offset_90k as f64 / 90_000.0, "joining far into a file: reading from near the offset");
                }
                if k == 0 && msg.preempt && msg.handover.is_some() {
                    splicer.preempt(now, c);
                } else {
                    splicer.push_cue(c);
                }
            }
        }
        if let (Some(week), Some(si)) = (msg.week, self.si.as_mut()) {
            si.set_week(self.service_ids[0], &week);
        }
        // An edit of what comes next shows in EIT p/f now, not when the next item starts.
        if let (Some(si), Some(t)) = (self.si.as_mut(), self.on_air_tag) {
            let next = self
                .programmes
                .range(t + 1..)
                .next()
                .map(|(_, p)| p.clone());
            si.set_following(&mut self.mux, self.service_ids[0], next.as_ref());
        }
    }

    /// Sends the splicers' I/O requests to the I/O threads.
    fn request_io(&mut self, shard: usize, index: usize, jobs: &mpsc::Sender<IoJob>) {
        while let Some((program, req)) = self.mux.poll_io() {
            match self.sources[program].take() {
                Some(source) => {
                    let _ = jobs.send(IoJob {
                        shard,
                        station: index,
                        program,
                        source,
                        req,
                    });
                }
                None => {
                    // Cannot happen: a splicer asks for one thing at a time.
                    tracing::error!(station = %self.id, program, "I/O requested while busy");
                }
            }
        }
    }

    /// Sends what is due at `now` (ns since the epoch).
    fn tick(&mut self, now: u64) {
        let n = self.pacer.poll_release(now + EARLY_NS) as usize;
        if n == 0 {
            self.flush_feed_if_old(now);
            return;
        }
        let slot0 = self.mux.slot();
        if self.feed.is_none() {
            self.acc.clear();
            self.acc_slot = slot0;
        }
        let start = self.acc.len();
        if !self.scrambling.is_empty() {
            let out_now = self.mux.now();
            for s in &mut self.scrambling {
                s.rotate(&mut self.mux, out_now);
            }
        }
        self.mux
            .emit(&mut self.acc, n * PACKETS_PER_DATAGRAM, Underflow::Stuff);
        for s in &mut self.scrambling {
            s.apply(&mut self.acc[start..]);
        }
        for d in 0..n {
            let off = start + d * DATAGRAM;
            let datagram = &self.acc[off..off + DATAGRAM];
            let ts90k = self
                .mux
                .slot_time(slot0 + (d * PACKETS_PER_DATAGRAM) as u64)
                / 300;
            for o in &mut self.outputs {
                o.send(datagram, ts90k);
            }
        }
        while let Some(rap) = self.mux.poll_rap() {
            if let Some(k) = rap.slot.checked_sub(self.acc_slot) {
                self.acc_rap = Some((k as usize * PACKET_SIZE, rap.psi));
            }
        }
        if self.acc.len() >= HTTP_CHUNK_BYTES {
            self.flush_feed(false);
            self.acc_since = now;
        } else {
            self.flush_feed_if_old(now);
        }
    }

    fn flush_feed_if_old(&mut self, now: u64) {
        if now.saturating_sub(self.acc_since) >= HTTP_CHUNK_NS {
            self.flush_feed(false);
            self.acc_since = now;
        }
    }

    fn flush_feed(&mut self, _last: bool) {
        let Some(feed) = &self.feed else { return };
        if self.acc.is_empty() {
            return;
        }
        let data = self.acc.split().freeze();
        self.acc_slot = self.mux.slot();
        self.acc.reserve(HTTP_CHUNK_BYTES + DATAGRAM * 64);
        feed.publish(Chunk {
            data,
            rap: self.acc_rap.take(),
        });
    }

    fn log_events(&mut self) {
        while let Some(ev) = self.mux.poll_event() {
            if let MuxEvent::Splice {
                program,
                event:
                    SpliceEvent::ItemPreempted {
                        item,
                        presented_until,
                    },
            } = &ev
            {
                self.alert_item_preempted(*program, *item, *presented_until);
            }
            if let MuxEvent::Splice {
                program,
                event:
                    SpliceEvent::ItemStarted {
                        item,
                        tag,
                        at,
                        presented_at,
                        ..
                    },
            } = &ev
            {
                let tag = *tag;
                let alert = self.alert_item_started(*program, *item, tag, *at, *presented_at);
                if let Some(slot) = self.on_air.get_mut(*program) {
                    *slot = self.playlists[*program]
                        .get(*item)
                        .map(|p| p.display().to_string());
                }
                if let (Some(alert), Some(si)) = (&alert, self.si.as_mut()) {
                    // An alert's clip: the alert is the present event.
                    si.on_air(
                        &mut self.mux,
                        self.service_ids[*program],
                        Some(alert),
                        &alert.title,
                        None,
                    );
                } else if let Some(si) = self.si.as_mut() {
                    // A cue's programme from the schedule; otherwise the file name.
                    let title = self.playlists[*program]
                        .get(*item)
                        .and_then(|p| p.file_stem())
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                    if *program == 0 {
                        self.on_air_tag = tag;
                    }
                    let present = tag.and_then(|t| self.programmes.remove(&t));
                    let following = tag.and_then(|t| {
                        self.programmes
                            .range(t + 1..)
                            .next()
                            .map(|(_, p)| p.clone())
                    });
                    si.on_air(
                        &mut self.mux,
                        self.service_ids[*program],
                        present.as_ref(),
                        &title,
                        following.as_ref(),
                    );
                }
            }
            render::log_event(ev, &self.names, &self.playlists, &mut self.log_stats);
        }
    }

    fn status(&self) -> StationStatus {
        let m = self.mux.stats();
        let p = self.pacer.stats();
        StationStatus {
            id: self.id.clone(),
            muxrate_bps: self.mux.config().muxrate_bps,
            on_air: self.on_air.clone(),
            packets: m.packets,
            null_packets: m.null_packets,
            items_started: self.log_stats.items_started,
            items_failed: self.log_stats.items_failed,
            late_packets: m.late_packets,
            underflows: m.underflows,
            pacer_stalls: p.stalls,
            max_late_us: p.max_late_ns / 1000,
            outputs: self
                .outputs
                .iter()
                .map(|o| {
                    let OutputStats {
                        datagrams,
                        bytes,
                        errors,
                    } = o.stats();
                    OutputStatus {
                        url: o.label().to_owned(),
                        datagrams,
                        bytes,
                        errors,
                    }
                })
                .collect(),
            scrambling: self.scrambling.iter().map(|s| s.stats.clone()).collect(),
        }
    }
}
