//! The real-time engine: every station (a channel on its own, or an MPTS; the sans-IO
//! [`Station`]) is driven against the wall clock on an engine thread, which sends each datagram to the station's UDP/RTP outputs when it is due
//! and hands the output to the HTTP feed in larger chunks. File reads run on a pool of I/O
//! threads, so a slow disk delays nothing on air: a station whose input is late sends null
//! packets (with PAT/PMT and PCR) until it arrives. Outputs are non-blocking: one that fails
//! or pushes back loses its own datagrams and nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use playout::analyse::Health;
use playout::pacing::{Pacer, PacerConfig, Steer};
use playout::splice::IoRequest;
use playout::time::Ticks27M;
use playout::ts::PACKET_SIZE;

use crate::cas::CasLink;
use crate::clock::ClockMap;
use crate::config::{Config, KeySourceConfig};
use crate::eit_builder::EitBuilder;
use crate::emmg::EmmFeed;
use crate::feed::{Chunk, Feed};
use crate::input::file::{FileSource, IoDone};
use crate::input::live::{DatagramPoller, LiveSet};
use crate::output::udp::{OutputStats, UdpOutput};
use crate::router::{Control, InputAction, InputOrder, ScheduleSink};
use crate::station::failover::{Failover, Source};
use crate::station::{self, AirReport, Handover, Output, Station, StationSpec};
use crate::status::{ClockMaps, InputStatus, OutputStatus, RelayStatus, StationStatus, Status};
use crate::supervise::contain;

/// TS packets per datagram.
const PACKETS_PER_DATAGRAM: usize = 7;
/// In step with a fleet, a datagram this late (after a stall) is not sent: the pacer's
/// `max_behind` for the others.
const LATE_NS: u64 = 100_000_000;
const DATAGRAM: usize = PACKETS_PER_DATAGRAM * PACKET_SIZE;
/// Datagrams due this soon are sent in the same wake-up (a little early) to save wake-ups.
const EARLY_NS: u64 = 300_000;
/// Longest sleep, so I/O results and the stop flag are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(2);
/// A station with no datagram output (its stream goes out over HTTP, HLS or to the archive,
/// published in chunks of 40 ms or more) and no live input is muxed this far ahead of its
/// datagrams' due times, in one wake-up: 50 a second instead of one per datagram (760 at 8 Mbit/s). A
/// shard with only such stations sleeps up to this long; messages (alerts, schedule edits)
/// wait at most that much more before they apply.
const UNPACED_AHEAD_NS: u64 = 20_000_000;
/// A dormant station (in a fleet: neither sent nor kept warm by this node) is muxed in bulk:
/// once its next datagram is due within [`DORMANT_LOW_NS`], up to [`DORMANT_AHEAD_NS`] ahead,
/// with nothing sent, listened to or monitored. The scheduler's cues apply a second of
/// output time after their look, so running this far ahead still sees every one in time.
const DORMANT_LOW_NS: u64 = 100_000_000;
const DORMANT_AHEAD_NS: u64 = 200_000_000;
/// A shard of dormant stations only sleeps up to this long (a gate that opens is seen
/// within it).
const DORMANT_SLEEP_NS: u64 = 50_000_000;
/// What a dormant station's bulk step may take (about 100 ms of output): one is begun only
/// with this much time left before the shard's next datagram is due, unless it is urgent.
const DORMANT_STEP_NS: u64 = 500_000;
/// HTTP chunks: published at this size or age, whichever comes first.
const HTTP_CHUNK_BYTES: usize = 32 * DATAGRAM;
const HTTP_CHUNK_NS: u64 = 40_000_000;
/// File I/O threads at the start.
const IO_THREADS: usize = 4;
/// At most this many file I/O threads: one more is started whenever a read is handed over
/// while every one is busy, so reads stuck on a slow or hung disk do not hold up the other
/// channels' (see [`IoPool`]).
const IO_THREADS_MAX: usize = 64;
/// A file open or read that has not come back for this long (a slow or hung disk) fails its
/// item, so the channel goes on with what follows (its filler) rather than running dry; its
/// answer, if it ever comes, is dropped. The splicers read a second ahead.
const IO_STALL_NS: u64 = 2_000_000_000;
/// Time one read result may take to apply (demux of a 385 KB chunk, with margin): after the
/// first one in a wake-up, more are applied only while this much is left before the next
/// datagram is due.
const IO_APPLY_NS: u64 = 150_000;
/// On shutdown, access units starting within this time still go out whole (beyond the
/// splicers' 1 s read-ahead, so only what is queued goes out)...
const CLOSE_CUTOFF_NS: u64 = 1_500_000_000;
/// ...and the engine stops after at most this long.
const CLOSE_LIMIT_NS: u64 = 3_000_000_000;

/// What a fleet asks of the engine (`crate::fleet`).
pub(crate) struct InStep<'a> {
    /// Each station's send gate.
    pub(crate) gates: &'a Arc<crate::fleet::Gates>,
    /// Each station's origin (UTC ns of its first datagram), where it plays in step with the
    /// other nodes: its bytes are then those of every node that plays it from there. One of
    /// the node's own (`own`) is played the same way, but not in step with the others.
    pub(crate) origins: Vec<Option<crate::fleet::origins::Playing>>,
    /// The schedules, to play the stations from their origins.
    pub(crate) store: &'a crate::schedule::store::Store,
    /// The node's lease: how long a takeover can take (a standby keeps that much output).
    pub(crate) lease: Duration,
}

/// The UTC offset (ns) of datagram `k` from a station's origin at `muxrate_bps`.
fn datagram_offset_ns(k: u64, muxrate_bps: u64) -> u64 {
    (u128::from(k) * (DATAGRAM as u128 * 8) * 1_000_000_000 / u128::from(muxrate_bps.max(1))) as u64
}

/// How far ahead of the wall clock stations in step are played before the engine starts:
/// room to start the threads.
const CATCH_UP_AHEAD_NS: i64 = 300_000_000;
/// How long a node's start may spend playing stations from their origins (on every core):
/// what is not caught up by then starts on the node's own clock.
const CATCH_UP_BUDGET: Duration = Duration::from_secs(30);

/// The stations of `specs` with an origin in `fleet`, each played from its origin to a
/// little ahead of now ([`CATCH_UP_AHEAD_NS`]), by index (`None`: the station starts now,
/// on its own clock). Passes repeat until one takes less than a third of that lead, so
/// none is behind the wall clock when the engine starts.
fn catch_up(
    config: &Config,
    specs: &[StationSpec],
    fleet: Option<&InStep<'_>>,
) -> anyhow::Result<Vec<Option<crate::render::CaughtUp>>> {
    let Some(fleet) = fleet else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (si, spec) in specs.iter().enumerate() {
        let origin = fleet
            .origins
            .get(si)
            .and_then(Option::as_ref)
            .map(|p| p.utc_ns);
        out.push(match origin {
            Some(o) => {
                let network = station::network(config, o);
                Some(crate::render::CaughtUp::start(
                    config, spec, si, &network, o,
                )?)
            }
            None => None,
        });
    }
    let began = Instant::now();
    let deadline = began + CATCH_UP_BUDGET;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut played = 0u64;
    let mut given_up = Vec::new();
    for _ in 0..20 {
        let pass = Instant::now();
        let target = crate::schedule::driver::now_utc().0 + CATCH_UP_AHEAD_NS;
        // The stations shared out over the cores; each plays up to the target, or gives up
        // at the deadline (it then starts on this node's clock).
        let mut slots: Vec<&mut Option<crate::render::CaughtUp>> =
            out.iter_mut().filter(|c| c.is_some()).collect();
        let per = slots.len().div_ceil(threads).max(1);
        let results: Vec<(u64, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = slots
                .chunks_mut(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        let (mut played, mut gave_up) = (0u64, Vec::new());
                        for slot in chunk.iter_mut() {
                            let Some(cu) = slot.as_mut() else { continue };
                            let clock = cu.st.clock();
                            let muxrate = cu.st.mux().config().muxrate_bps;
                            let ahead = (target - clock.utc_at_origin_ns).max(0) as u128;
                            let k = (ahead * u128::from(muxrate))
                                .div_ceil(DATAGRAM as u128 * 8 * 1_000_000_000)
                                as u64;
                            if k <= cu.datagrams() {
                                continue;
                            }
                            let from = cu.datagrams();
                            if cu.advance(fleet.store, &config.schedules.media_dir, k, deadline) {
                                played += k - from;
                            } else {
                                gave_up.push(cu.st.id().to_owned());
                                **slot = None;
                            }
                        }
                        (played, gave_up)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (p, g) in results {
            played += p;
            given_up.extend(g);
        }
        if pass.elapsed() < Duration::from_nanos(CATCH_UP_AHEAD_NS as u64 / 3) {
            break;
        }
    }
    if !given_up.is_empty() {
        tracing::warn!(
            stations = ?given_up,
            budget = ?CATCH_UP_BUDGET,
            "fleet: playing these stations from their origins took longer than the start allows: they start on this node's clock, not in step with the other nodes"
        );
    }
    if played > 0 {
        tracing::info!(
            stations = out.iter().flatten().count(),
            datagrams = played,
            seconds = format!("{:.3}", began.elapsed().as_secs_f64()),
            "fleet: stations played from their origins, in step"
        );
    }
    Ok(out)
}

/// The standby state of station `spec` when it plays in step with a fleet: listening on its
/// gated multicast outputs, keeping what it makes for the lease and a second more.
fn standby_of(spec: &StationSpec, fleet: Option<&InStep<'_>>, in_step: bool) -> Option<Standby> {
    let fleet = fleet.filter(|_| in_step)?;
    Some(Standby::new(
        listeners_of(spec),
        standby_cap(spec, fleet.lease),
    ))
}

/// How many datagrams of `spec` a standby keeps: the lease's and a second's worth.
fn standby_cap(spec: &StationSpec, lease: Duration) -> usize {
    let per_s = spec.mux.muxrate_bps / (DATAGRAM as u64 * 8);
    ((lease.as_secs() + 1) * per_s.max(1)) as usize
}

/// Sockets joined to station `spec`'s multicast outputs (not the seamless ones, which every
/// node sends), to hear its owner.
fn listeners_of(spec: &StationSpec) -> Vec<std::net::UdpSocket> {
    let mut listeners = Vec::new();
    for o in spec.outputs.iter().filter(|o| !o.seamless) {
        match crate::output::udp::listen(o) {
            Ok(Some(l)) => listeners.push(l),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(station = %spec.id, output = %o.dest, error = %e, "fleet: cannot listen to the owner's output: a takeover leaves a gap there");
            }
        }
    }
    listeners
}

/// The running engine threads.
pub(crate) struct Engine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub(crate) status: Status,
    /// How each station's output clock maps to UTC, for the scheduler.
    pub(crate) maps: ClockMaps,
    /// Where the scheduler sends each station's cues (and the alert desk its overrides).
    pub(crate) schedule: ScheduleSink,
    /// When alerts go on and off air, per program (for the audit log); taken by the desk.
    pub(crate) air_reports: Mutex<Option<mpsc::Receiver<AirReport>>>,
    /// Each station's HTTP feed (channels on their own), by station.
    pub(crate) feeds: Vec<Option<Arc<Feed>>>,
    /// The schedulers of the stations played from their origins, to go on from where they
    /// are (taken by the scheduler thread).
    pub(crate) schedulers: Mutex<Vec<crate::schedule::driver::State>>,
    /// Whether each station plays in step with its fleet (by index).
    pub(crate) in_step: Vec<bool>,
    /// Whether each station plays from an origin (the fleet's or the node's own), rather
    /// than from the engine's start on this node's clock (by index).
    pub(crate) from_origin: Vec<bool>,
    /// The `[[emmg]]` listeners (stopped after the engine threads).
    _emmgs: Vec<crate::emmg::Server>,
    /// Receives every UDP/RTP live input (stopped after the engine threads, whose live sets
    /// let go of their inputs).
    _poller: DatagramPoller,
}

impl Engine {
    /// Opens every output (an output that cannot be opened is an error naming it), reads the
    /// key files, starts the SimulCrypt links, and starts `threads` engine threads (stations
    /// dealt round-robin), the I/O threads and the EIT builder; the first datagrams leave
    /// about 20 ms later.
    pub(crate) fn start(
        config: &Config,
        specs: &[StationSpec],
        realtime_priority: u8,
        threads: usize,
        journal: &crate::record::Journal,
        archives: Option<&crate::archive::Archives>,
        fleet: Option<&InStep<'_>>,
    ) -> anyhow::Result<Engine> {
        let gates = fleet.map(|f| f.gates);
        // Stations that join their fleet in step: played from their origin up to a little
        // ahead of now before anything starts.
        let mut caught = catch_up(config, specs, fleet)?;
        let mut schedulers = Vec::new();
        let epoch = Instant::now();
        let utc_at_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let start_ns = 20_000_000;
        let network = station::network(config, utc_at_epoch_ns + start_ns as i64);
        let mut maps = Vec::new();
        let mut stations = Vec::new();
        let mut feeds = Vec::new();
        let mut from_origin = Vec::new();
        let mut seed = epoch.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) << 32;
        let (reports_tx, reports_rx) = mpsc::channel();
        let eit_builder = EitBuilder::start()?;
        let poller = DatagramPoller::start()?;
        let emmgs = config
            .emmgs
            .iter()
            .map(crate::emmg::Server::start)
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (si, spec) in specs.iter().enumerate() {
            let mut outputs = Vec::new();
            // One RTP stream per station: every RTP output sends the same SSRC, sequence
            // numbers and timestamps, so two outputs on two paths are a SMPTE ST 2022-7 pair
            // (`hectl receive --merge`).
            // In step with a fleet, the SSRC is the station's and the sequence numbers count
            // its datagrams from its origin: every node sends the same RTP.
            let caught_up = caught.get_mut(si).and_then(Option::take);
            // Played from an origin: its bytes and RTP are a function of the instant. In
            // step when that origin is the fleet's.
            let timed = caught_up.is_some();
            let own = fleet
                .and_then(|f| f.origins.get(si))
                .and_then(Option::as_ref)
                .is_some_and(|p| p.own);
            let in_step = timed && !own;
            from_origin.push(timed);
            if let Some(g) = gates {
                // Until the agent finds its origin the fleet's.
                g.set_stepless(si, timed && own);
            }
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let ssrc_seed = if timed {
                playout::rtp::digest(spec.id.as_bytes())
            } else {
                seed
            };
            let mut seamless = Vec::new();
            for o in &spec.outputs {
                outputs.push(UdpOutput::open(o, ssrc_seed).map_err(|e| {
                    anyhow::anyhow!("station `{}`: cannot open output: {e}", spec.id)
                })?);
                seamless.push(o.seamless);
            }
            let mut cas = Vec::new();
            let mut cas_state = Vec::new();
            for (program, ch) in spec.channels.iter().enumerate() {
                if let Some(sc) = &ch.scrambling {
                    if let KeySourceConfig::Simulcrypt(links) = &sc.keys {
                        for (k, link) in links.iter().enumerate() {
                            let l =
                                crate::cas::start(&ch.id, link, sc.crypto_period).map_err(|e| {
                                    anyhow::anyhow!(
                                        "channel `{}`: starting the SimulCrypt link to {}: {e}",
                                        ch.id,
                                        link.ecmg
                                    )
                                })?;
                            cas.push((program, k, l));
                            cas_state.push(crate::status::EcmgStatus {
                                channel: ch.id.clone(),
                                super_cas_id: format!("0x{:08X}", link.super_cas_id),
                                ecmg: link.ecmg.to_string(),
                                up: false,
                                error: Some("connecting".to_owned()),
                            });
                        }
                    }
                }
            }
            let mut pacer_cfg = PacerConfig::new(spec.mux.muxrate_bps);
            // Stations start in step: those of one muxrate are due at the same instants, so
            // one wake-up sends a datagram of each (each stream stays evenly spaced;
            // staggering them across the interval woke an engine thread up to four times as
            // often). One in step with a fleet starts where its origin puts it.
            let (clock, mut st, sources, open_files, pacer_start, rtp_base, station_network) =
                match caught_up {
                    Some(mut cu) => {
                        // The builder goes on from the EIT schedules as played.
                        let services: Vec<u16> =
                            spec.channels.iter().map(|c| c.service_id).collect();
                        let (no_answer, _) = mpsc::channel();
                        for job in cu.eit_registrations(&services) {
                            eit_builder.send(si, job, 0, &no_answer);
                        }
                        let clock = cu.st.clock();
                        let d = cu.datagrams();
                        let due = clock.utc_at_origin_ns
                            + datagram_offset_ns(d, spec.mux.muxrate_bps) as i64;
                        schedulers.extend(cu.take_scheduler());
                        // Never re-anchored: a stall loses datagrams (tick), the output keeps
                        // its instants and so its bytes.
                        pacer_cfg.max_behind_ns = u64::MAX;
                        (
                            clock,
                            cu.st,
                            cu.sources.into_iter().map(Some).collect(),
                            cu.open_files,
                            (due - utc_at_epoch_ns).max(0) as u64,
                            d,
                            station::network(config, clock.utc_at_origin_ns),
                        )
                    }
                    None => {
                        let clock = ClockMap::starting(
                            utc_at_epoch_ns + start_ns as i64,
                            spec.mux.clock_origin,
                        );
                        let st = Station::new(spec.plan(si, &network, clock, spec.key_sources()?));
                        (
                            clock,
                            st,
                            (0..spec.channels.len())
                                .map(|_| Some(FileSource::default()))
                                .collect(),
                            vec![None; spec.channels.len()],
                            start_ns,
                            // RFC 3550: a random first sequence number.
                            crate::output::udp::mix(seed ^ 0x5eed) & 0xFFFF,
                            network.clone(),
                        )
                    }
                };
            maps.push(Some(clock));
            // When its output clock starts, in UTC: `headend render --start` with this instant
            // renders what this station sends (tests/air_render.rs).
            tracing::info!(
                station = %spec.id,
                clock_origin_utc = %chrono::DateTime::from_timestamp_nanos(clock.utc_at_origin_ns)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "station clock"
            );
            let mut relays = Vec::new();
            for (program, ch) in spec.channels.iter().enumerate() {
                if ch.inputs.is_empty() {
                    continue;
                }
                let items = st.add_live(program, ch);
                let set = LiveSet::start(&ch.id, &ch.inputs, &ch.failover, epoch, &poller)
                    .map_err(|e| {
                        anyhow::anyhow!("channel `{}`: starting its inputs: {e}", ch.id)
                    })?;
                // A channel with schedules is driven by them from the start: its inputs wait
                // for the schedule's live items (the scheduler's first cues come within a
                // second, while an input needs one to settle: better not to race).
                let scheduled = !spec.mpts && config.schedules.dir.join(&ch.id).is_dir();
                relays.push(Relay::new(program, ch, set, items, scheduled, spec.mpts));
            }
            // The EMMs of the CAS this station's channels are scrambled for.
            let emm: Vec<EmmFeed> = emmgs
                .iter()
                .filter(|e| spec.channels.iter().any(|c| e.config().serves(c)))
                .map(crate::emmg::Server::subscribe)
                .collect();
            let streams: Vec<(u16, u16, u64)> = emm.iter().map(EmmFeed::stream).collect();
            st.add_emm(&streams);
            let feed = (!spec.mpts).then(|| Feed::for_rate(spec.mux.muxrate_bps));
            let st_slot = st.mux().slot();
            st.mux_mut().track_raps(feed.is_some());
            feeds.push(feed.clone());
            stations.push(Live {
                dormant: false,
                gate: gates.map(|g| (g.clone(), si)),
                seamless,
                rtp_base,
                in_step,
                timed,
                standby_cap: fleet.map_or(0, |f| standby_cap(spec, f.lease)),
                standby: standby_of(spec, fleet, in_step),
                sources,
                st,
                cas,
                cas_state,
                emm: emm.into_iter().map(|f| (f, 0)).collect(),
                late_datagrams: 0,
                pacer: Pacer::new(pacer_cfg, pacer_start),
                outputs,
                feed,
                archive: archives
                    .filter(|_| !spec.mpts)
                    .and_then(|a| a.tap(&spec.id)),
                boundaries: VecDeque::new(),
                acc_boundary: None,
                acc: BytesMut::with_capacity(HTTP_CHUNK_BYTES + DATAGRAM * 64),
                acc_slot: st_slot,
                acc_since: pacer_start,
                acc_rap: None,
                relays,
                monitor: playout::monitor::Monitor::new(playout::monitor::MonitorConfig {
                    si: spec.channels.iter().any(|c| c.si.enabled),
                    nit: config.network.is_some() && spec.channels.iter().any(|c| c.si.enabled),
                    // The muxer's output is CBR, every PCR restamped from its byte position.
                    pcr_accuracy: true,
                }),
                rec: OutputRecord {
                    journal: journal.clone(),
                    hold_ns: config.record.degraded_hold.as_nanos() as u64,
                    counts: Default::default(),
                    degraded: None,
                    underflows: 0,
                    starved: None,
                },
                rebuild: Rebuild {
                    spec: spec.clone(),
                    global: si,
                    network: station_network,
                    utc_at_epoch_ns,
                },
                pending: (0..spec.channels.len()).map(|_| None).collect(),
                io_seq: 0,
                open_files,
                panicked: None,
                alerts: Vec::new(),
                chaos_at: chaos_panic(&spec.id),
            });
        }
        let status: Status = Arc::new(tokio::sync::watch::Sender::new(
            stations.iter().map(Live::status).collect(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = threads.clamp(1, stations.len().max(1));
        // The I/O threads answer every shard, each on its own channel.
        let mut done_txs = Vec::new();
        let mut done_rxs = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel::<IoResult>();
            done_txs.push(tx);
            done_rxs.push(rx);
        }
        let io = IoPool::start(done_txs)?;
        let in_step: Vec<bool> = stations.iter().map(|l| l.in_step).collect();
        let mut shards: Vec<Vec<(usize, Live)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, st) in stations.into_iter().enumerate() {
            shards[i % threads].push((i, st));
        }
        tracing::info!(
            stations = specs.len(),
            engine_threads = threads,
            io_threads = IO_THREADS,
            "engine on air"
        );
        let maps: ClockMaps = Arc::new(tokio::sync::watch::Sender::new(maps));
        let mut shard_of = vec![0; specs.len()];
        for (i, s) in shard_of.iter_mut().enumerate() {
            *s = i % threads;
        }
        let mut sched_txs = Vec::new();
        let mut sched_rxs = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel();
            sched_txs.push(tx);
            sched_rxs.push(rx);
        }
        let router = ScheduleSink::new(sched_txs, shard_of);
        let mut handles = Vec::new();
        for (shard, ((stations, done_rx), sched_rx)) in
            shards.into_iter().zip(done_rxs).zip(sched_rxs).enumerate()
        {
            let stop = stop.clone();
            let status = status.clone();
            let (built_tx, built_rx) = mpsc::channel();
            let links = Links {
                jobs: io.clone(),
                done: done_rx,
                control: sched_rx,
                router: router.clone(),
                eit: eit_builder.clone(),
                built_tx,
                built: built_rx,
                reports: reports_tx.clone(),
                maps: maps.clone(),
            };
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
                                links,
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
            status,
            maps,
            schedule: router,
            air_reports: Mutex::new(Some(reports_rx)),
            feeds,
            schedulers: Mutex::new(schedulers),
            in_step,
            from_origin,
            _emmgs: emmgs,
            _poller: poller,
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
        // The shards dropped the I/O pool: its threads end once their read is done (one stuck
        // on a hung disk is not waited for).
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A station on air: the state machine and what the engine does for it (its file sources,
/// SimulCrypt links, pacer, outputs and HTTP feed).
struct Live {
    st: Station,
    /// Dormant on this node ([`Live::should_sleep`]): muxed in bulk, nothing sent.
    dormant: bool,
    /// Each program's file source; `None` while an I/O thread has it.
    sources: Vec<Option<FileSource>>,
    /// The SimulCrypt links of the programs that have them: (program, CAS index, link).
    cas: Vec<(usize, usize, CasLink)>,
    /// Each link's state: (channel, up, why it is down).
    cas_state: Vec<crate::status::EcmgStatus>,
    /// EMMs from the EMMGs of its CAS, with the packets its muxer's queue had no room for.
    emm: Vec<(crate::emmg::EmmFeed, u64)>,
    /// In step with a fleet: datagrams made too late to send (after a stall), not sent.
    late_datagrams: u64,
    pacer: Pacer,
    outputs: Vec<UdpOutput>,
    /// With a fleet, the station's send gate (its index): the UDP/RTP outputs send only while
    /// this node holds the channel (`crate::fleet`); the rest goes on (warm).
    gate: Option<(Arc<crate::fleet::Gates>, usize)>,
    /// Per output: sent whether or not the gate is open (a path of a 2022-7 pair).
    seamless: Vec<bool>,
    /// The RTP sequence number of the pacer's first datagram (in step with a fleet: the
    /// datagrams since the station's origin).
    rtp_base: u64,
    /// In step with a fleet: it listens to the owner as a standby and may go dormant.
    in_step: bool,
    /// Played from an origin (the fleet's or the node's own): never re-anchored; datagrams a
    /// stall made late are not sent.
    timed: bool,
    /// How many datagrams a standby keeps (0: not in a fleet).
    standby_cap: usize,
    /// In step on a fleet node: what the owner did not send, sent on taking over.
    standby: Option<Standby>,
    feed: Option<Arc<Feed>>,
    /// The channel's archive, if it is recorded: it gets what the feed gets.
    archive: Option<crate::archive::Tap>,
    /// Items starting (their first packet not yet sent), for the archive to cut at; and the
    /// one the random access point in the output not yet published starts.
    boundaries: VecDeque<crate::station::Boundary>,
    acc_boundary: Option<crate::station::Boundary>,
    /// Output not yet published to the HTTP feed, from slot `acc_slot` on.
    acc: BytesMut,
    acc_slot: u64,
    acc_since: u64,
    acc_rap: Option<(usize, Bytes)>,
    /// Programs that relay live inputs.
    relays: Vec<Relay>,
    /// TR 101 290 on what it sends.
    monitor: playout::monitor::Monitor,
    /// What the stoppage record is told of the station's output.
    rec: OutputRecord,
    /// How to build the station again after a contained panic.
    rebuild: Rebuild,
    /// The file I/O each program waits for, and how many requests the station has made (an
    /// answer must match the request waited for: one given up as stalled, or made before a
    /// rebuild, is dropped).
    pending: Vec<Option<PendingIo>>,
    io_seq: u64,
    /// The file each program has open (or is opening).
    open_files: Vec<Option<std::path::PathBuf>>,
    /// A contained panic's stoppage, open until the rebuilt station has something on air; the
    /// rebuild itself waits while it cannot be done (a key file gone).
    panicked: Option<Panicked>,
    /// The alert on air on each program that has one (the alert desk's last `Show`), to put
    /// back on air when the station is built again.
    alerts: Vec<(usize, Arc<station::AirAlert>)>,
    /// The chaos knob (`HEADEND_CHAOS_PANIC=STATION@SECONDS`): panic once at this time
    /// (engine clock, ns), to prove containment.
    chaos_at: Option<u64>,
}

/// A station in step on a node that does not own it (its gate shut): what it made and did not
/// send, and where the owner is, heard on the gated multicast outputs. When the gate opens
/// (the owner died or gave the channel up), what the owner never sent goes first, then the
/// rest, at twice the rate until caught up: the receivers see one stream, late for a moment,
/// with no gap (no continuity error, no RTP sequence gap).
struct Standby {
    listeners: Vec<std::net::UdpSocket>,
    /// What was made while the gate was shut: (datagram index, RTP timestamp, bytes).
    made: VecDeque<(u64, u64, Bytes)>,
    /// Index of each made datagram by its digest (UDP outputs carry no sequence number).
    by_digest: HashMap<u64, u64>,
    cap: usize,
    /// The last datagram the owner was heard sending.
    heard: Option<u64>,
    open: bool,
    /// After the gate opened: to send, in order, at twice the rate.
    backlog: VecDeque<(u64, u64, Bytes)>,
    /// Datagrams up to this one the owner sent already.
    sent_through: Option<u64>,
    buf: Vec<u8>,
}

impl Standby {
    fn new(listeners: Vec<std::net::UdpSocket>, cap: usize) -> Standby {
        Standby {
            listeners,
            made: VecDeque::new(),
            by_digest: HashMap::new(),
            cap,
            heard: None,
            open: false,
            backlog: VecDeque::new(),
            sent_through: None,
            buf: vec![0; 2048],
        }
    }

    /// Datagram `index` made while the gate is shut.
    fn keep(&mut self, index: u64, ts90k: u64, datagram: &[u8]) {
        if let Some(d) = digest(datagram) {
            self.by_digest.insert(d, index);
        }
        self.made
            .push_back((index, ts90k, Bytes::copy_from_slice(datagram)));
        while self.made.len() > self.cap {
            if let Some((i, _, old)) = self.made.pop_front() {
                if let Some(d) = digest(&old) {
                    if self.by_digest.get(&d) == Some(&i) {
                        self.by_digest.remove(&d);
                    }
                }
            }
        }
    }

    /// What the owner sent since the last look, near datagram `index`.
    fn listen(&mut self, index: u64) {
        for sock in &self.listeners {
            while let Ok(n) = sock.recv(&mut self.buf) {
                let d = &self.buf[..n];
                let heard = match playout::rtp::payload(d) {
                    Some((seq, _)) => {
                        // The index closest to `index` with these low 16 bits.
                        let base = index & !0xFFFF;
                        [base.wrapping_sub(0x1_0000), base, base + 0x1_0000]
                            .into_iter()
                            .map(|b| b | u64::from(seq))
                            .min_by_key(|e| e.abs_diff(index))
                    }
                    None => digest(d).and_then(|h| self.by_digest.get(&h).copied()),
                };
                if let Some(h) = heard {
                    self.heard = Some(self.heard.map_or(h, |x| x.max(h)));
                }
            }
        }
    }

    /// The station goes dormant: what was made and heard is forgotten (it would be stale),
    /// and the owner's groups are left until [`Standby::wake`].
    fn sleep(&mut self) {
        self.listeners.clear();
        self.made.clear();
        self.by_digest.clear();
        self.heard = None;
        self.open = false;
        self.backlog.clear();
        self.sent_through = None;
    }

    /// Warm again: listening to the owner.
    fn wake(&mut self, spec: &StationSpec) {
        self.listeners = listeners_of(spec);
    }

    /// The gate opened: what the owner did not send becomes the backlog.
    fn take_over(&mut self) {
        self.open = true;
        if let Some(h) = self.heard.take() {
            self.backlog = self.made.drain(..).filter(|(i, _, _)| *i > h).collect();
            self.sent_through = Some(h);
            if !self.backlog.is_empty() {
                tracing::info!(from = h + 1, datagrams = self.backlog.len(), "fleet: taking over where the owner stopped: what it did not send goes first, at twice the rate");
            }
        }
        self.made.clear();
        self.by_digest.clear();
    }
}

/// A digest of a datagram of TS packets (an RTP header is left out), or `None` for one of
/// null packets only, which many datagrams are.
fn digest(d: &[u8]) -> Option<u64> {
    let ts = playout::rtp::payload(d).map_or(d, |(_, p)| p);
    let all_null = ts
        .chunks(PACKET_SIZE)
        .all(|p| p.len() >= 3 && p[1] & 0x1F == 0x1F && p[2] == 0xFF);
    if all_null {
        return None;
    }
    Some(ts.chunks(8).fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        (h ^ u64::from_le_bytes(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// What a station is built from, kept to build it again.
struct Rebuild {
    spec: StationSpec,
    /// Its index among all stations.
    global: usize,
    network: Arc<epg::carousel::NetworkSi>,
    /// UTC at the engine's epoch (ns).
    utc_at_epoch_ns: i64,
}

/// A file request handed to the I/O threads, not answered yet.
struct PendingIo {
    seq: u64,
    /// When it was handed over (engine clock, ns).
    since: u64,
    req: IoRequest,
    file: Option<std::path::PathBuf>,
    /// Whether a thread has taken it: only then is its file stuck on the disk.
    taken: Arc<AtomicBool>,
}

/// A contained panic of a station's engine work.
struct Panicked {
    why: String,
    /// Built again already (else: the rebuild is retried at the next status look).
    rebuilt: bool,
}

/// How long a rebuilt station's output pauses before its first datagram.
const REBUILD_START_NS: u64 = 20_000_000;

/// The chaos knob (`crate::supervise`): `HEADEND_CHAOS_PANIC=STATION@SECONDS` makes that
/// station's engine work panic once, that long after the engine's start (tests and the soak prove the containment with it).
fn chaos_panic(station: &str) -> Option<u64> {
    crate::supervise::chaos_places()
        .into_iter()
        .find(|(id, _)| id == station)
        .map(|(_, at)| at.as_nanos() as u64)
}

/// Degradations (priority 1 and 2 errors on the output) and underflows (nothing to send:
/// null packets in place of the programme) of a station, for the stoppage record.
struct OutputRecord {
    journal: crate::record::Journal,
    /// A degradation ends once this long passes without a new error (ns).
    hold_ns: u64,
    /// Priority 1 and 2 counts at the last look, by rule.
    counts: std::collections::BTreeMap<&'static str, u64>,
    /// The open degradation: when the last error came, and the counts since it started.
    degraded: Option<(u64, std::collections::BTreeMap<&'static str, u64>)>,
    underflows: u64,
    /// The open underflow stoppage: when the last underflow came.
    starved: Option<u64>,
}

/// How long a station must send without underflow before its underflow stoppage ends.
const UNDERFLOW_HOLD_NS: u64 = 1_000_000_000;

impl OutputRecord {
    /// A look at the station's counters at `now` (monotonic ns).
    fn look(
        &mut self,
        now: u64,
        id: &str,
        monitor: &playout::monitor::Monitor,
        underflows: u64,
        on_air: Option<String>,
    ) {
        use crate::record::{Kind, Mark};
        let mut new: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for (rule, n) in monitor.counts() {
            if rule.priority() > 2 {
                continue;
            }
            let before = self.counts.insert(rule.name(), n).unwrap_or(0);
            if n > before {
                new.insert(rule.name(), n - before);
            }
        }
        if !new.is_empty() {
            match &mut self.degraded {
                Some((last, since)) => {
                    *last = now;
                    for (k, v) in &new {
                        *since.entry(k).or_insert(0) += v;
                    }
                }
                None => {
                    let what: Vec<String> = new.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
                    self.journal.mark(
                        Mark::start(
                            Kind::Degradation,
                            id,
                            "output",
                            "tr101290",
                            format!("TR 101 290: {}", what.join(", ")),
                        )
                        .on_air(on_air.clone())
                        .detail(serde_json::json!(new)),
                    );
                    self.degraded = Some((now, new));
                }
            }
        } else if let Some((last, since)) = &self.degraded {
            if now.saturating_sub(*last) >= self.hold_ns {
                self.journal.mark(
                    Mark::end(
                        Kind::Degradation,
                        id,
                        "output",
                        "tr101290",
                        format!("no error for {} s", self.hold_ns / 1_000_000_000),
                    )
                    .on_air(on_air.clone())
                    .detail(serde_json::json!(since)),
                );
                self.degraded = None;
            }
        }
        if underflows > self.underflows {
            if self.starved.is_none() {
                self.journal.mark(
                    Mark::start(
                        Kind::Stoppage,
                        id,
                        "mux",
                        "underflow",
                        "underflow: nothing queued to send, null packets in place of the programme",
                    )
                    .on_air(on_air.clone()),
                );
            }
            self.starved = Some(now);
        } else if self
            .starved
            .is_some_and(|t| now.saturating_sub(t) >= UNDERFLOW_HOLD_NS)
        {
            self.journal.mark(
                Mark::end(
                    Kind::Stoppage,
                    id,
                    "mux",
                    "underflow",
                    "the programme is sent again",
                )
                .on_air(on_air),
            );
            self.starved = None;
        }
        self.underflows = underflows;
    }
}

/// A program relaying live inputs: its feeds, which is on air, and a read waiting for data.
struct Relay {
    program: usize,
    channel: String,
    timezone: epg::schedule::Tz,
    set: LiveSet,
    failover: Failover,
    /// The playlist item of each input.
    items: Vec<usize>,
    /// The channel's schedule drives it: its inputs go on air only in the schedule's live
    /// items (between them the failover is idle).
    scheduled: bool,
    /// Live items the schedule cued, not yet on air, in order.
    slots: VecDeque<Slot>,
    /// The schedule's live item on air.
    slot: Option<Slot>,
    /// The last switches (oldest first); the newest waits for its gap on air while
    /// `awaiting_gap`.
    switches: VecDeque<crate::status::SwitchRecord>,
    awaiting_gap: bool,
    /// A read of the input on air that found nothing yet: (item, input).
    waiting: Option<(usize, usize)>,
    /// The input on air is being left: its next read ends it.
    ending: bool,
    /// `[channel.failover] lead`, ns.
    lead_ns: u64,
    /// The input on air and how many PMTs it had had when it went on air: a new one (its
    /// PIDs or codecs changed) makes the channel rejoin it, so the new streams are carried.
    on_air_pmts: Option<(usize, u64)>,
    /// Locks the station's output clock to the live source on air (a channel on its own).
    steer: Option<Steer>,
    /// When the steering is next updated (feed clock, ns).
    next_steer: u64,
    /// When the verdicts are next looked at (feed clock, ns).
    next_check: u64,
    /// What the stoppage record says of the relay now, and what it needs to say more.
    air: AirState,
}

impl Relay {
    /// The relay of program `program` (channel `ch`) over its running inputs `set`, which
    /// are the station's playlist items `items`.
    fn new(
        program: usize,
        ch: &crate::config::ChannelConfig,
        set: LiveSet,
        items: Vec<usize>,
        scheduled: bool,
        mpts: bool,
    ) -> Relay {
        let mut failover =
            Failover::new(set.feeds.len(), ch.failover.restore_after.as_nanos() as u64);
        if scheduled {
            failover.idle();
        }
        Relay {
            program,
            channel: ch.id.clone(),
            timezone: ch.timezone,
            failover,
            set,
            items,
            scheduled,
            slots: VecDeque::new(),
            slot: None,
            switches: VecDeque::new(),
            awaiting_gap: false,
            waiting: None,
            ending: false,
            lead_ns: ch.failover.lead.as_nanos() as u64,
            on_air_pmts: None,
            steer: (!mpts).then(|| Steer::new(ch.failover.lead.as_secs_f64())),
            next_steer: 0,
            next_check: 0,
            air: AirState::default(),
        }
    }
}

/// A relay as the stoppage record sees it.
#[derive(Debug, Default)]
struct AirState {
    state: OnAir,
    /// What was on air at the last look (for the next event's "before").
    last: Source,
    /// Why this look's switch was made (the next event's cause).
    cause: Option<String>,
    /// Whether an input has been on air since the start.
    ever_on_input: bool,
    /// The first look (feed clock, ns).
    first: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OnAir {
    /// The preferred input, or the schedule's files.
    #[default]
    Normal,
    /// A backup input.
    Failover,
    /// The playlist (slate, filler) because every input failed.
    Stoppage,
}

/// How long a relay may wait for its first input before its slate is a stoppage.
const START_GRACE_NS: u64 = 5_000_000_000;

/// A schedule's live item.
#[derive(Clone, Debug)]
struct Slot {
    /// The playlist item its cue plays (its own input's).
    item: usize,
    /// Its inputs, by index: its own, then its backups.
    chain: Vec<usize>,
    /// When it ends (output time).
    until: Option<Ticks27M>,
    /// Its cue's tag (its programme in the EIT).
    tag: u64,
}

/// How often a relay looks at its inputs' verdicts.
const RELAY_CHECK_NS: u64 = 10_000_000;
/// How often the status (`/channels`) and the clock maps are refreshed: twice a second, so a
/// live input's verdict there is at most half a second old.
const STATUS_NS: u64 = 500_000_000;
/// How often a relay's clock steering is updated.
const STEER_NS: u64 = 100_000_000;

struct IoJob {
    shard: usize,
    station: usize,
    /// The station's count of its requests: an answer must match the one it waits for.
    seq: u64,
    /// The item's file (that of the open it reads from, for a read).
    file: Option<std::path::PathBuf>,
    /// Set when a thread takes it (a job still queued has not reached the disk).
    taken: Arc<AtomicBool>,
    program: usize,
    source: FileSource,
    req: IoRequest,
    path: Option<std::path::PathBuf>,
}

struct IoResult {
    station: usize,
    seq: u64,
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

/// What one engine thread talks to.
struct Links {
    jobs: Arc<IoPool>,
    done: mpsc::Receiver<IoResult>,
    /// Cues, overrides and peers' present/following for this thread's stations.
    control: mpsc::Receiver<Control>,
    /// To every engine thread (present/following for the peers).
    router: ScheduleSink,
    eit: EitBuilder,
    /// Where the EIT builder answers this thread (by global station index).
    built_tx: mpsc::Sender<crate::eit_builder::Answer>,
    built: mpsc::Receiver<crate::eit_builder::Answer>,
    reports: mpsc::Sender<AirReport>,
    maps: ClockMaps,
}

/// One engine thread's stations (with their indexes among all stations).
struct Shard {
    index: usize,
    stations: Vec<(usize, Live)>,
    epoch: Instant,
    links: Links,
}

fn run(shard: Shard, stop: &AtomicBool, status: &Status) {
    let Shard {
        index: shard,
        stations,
        epoch,
        links,
    } = shard;
    let (global, mut stations): (Vec<usize>, Vec<Live>) = stations.into_iter().unzip();
    let local = |g: usize| global.iter().position(|x| *x == g);
    let mut next_status = 0u64;
    let mut closing_since: Option<u64> = None;
    // A read's result that ended the last sleep.
    let mut woken_by: Option<IoResult> = None;
    // The service manager's watchdog is fed only while this loop goes round (`notify`).
    let beat = crate::notify::heartbeat();
    loop {
        beat.now();
        let now = epoch.elapsed().as_nanos() as u64;
        match closing_since {
            None if stop.load(Ordering::Relaxed) => {
                // Close cleanly: what has begun goes out whole, then the outputs stop.
                tracing::info!("closing the outputs");
                for l in &mut stations {
                    let mux = l.st.mux_mut();
                    let cutoff = mux.now() + CLOSE_CUTOFF_NS * 27 / 1000;
                    mux.close(cutoff);
                }
                closing_since = Some(now);
            }
            Some(since) => {
                let drained = stations.iter().all(|l| l.st.mux().queued() == 0);
                if drained || now - since > CLOSE_LIMIT_NS {
                    break;
                }
            }
            None => {}
        }
        // First what is due: the datagrams.
        let max_sleep = if stations.iter().all(|l| l.dormant) {
            DORMANT_SLEEP_NS
        } else if stations.iter().all(|l| l.dormant || l.may_run_ahead()) {
            UNPACED_AHEAD_NS
        } else {
            MAX_SLEEP.as_nanos() as u64
        };
        let mut next = now + max_sleep;
        // Each station's work is contained: a panic rebuilds that station (`Live::restart`)
        // while the others keep their timing.
        let at = Instant::now();
        for l in stations.iter_mut() {
            l.follow_step();
            let sleep = closing_since.is_none() && l.should_sleep(at);
            l.set_dormant(sleep);
            if l.dormant {
                continue;
            }
            let r = contain(|| {
                if l.chaos_at.is_some_and(|t| now >= t) {
                    l.chaos_at = None;
                    panic!("HEADEND_CHAOS_PANIC");
                }
                l.tick(now)
            });
            l.contained(r, now, &links.maps);
            next = next.min(l.pacer.poll_timeout());
        }
        // Then the dormant ones, in bulk, in the time left before the next datagram: each
        // has 100 ms to spare, so one that does not fit waits for a later turn; one urgent
        // step a turn goes whatever the time (so they are never starved), no more (so many
        // going dormant at once do not hold up the datagrams of the others).
        let mut urgent_taken = false;
        for l in stations.iter_mut().filter(|l| l.dormant) {
            let t = epoch.elapsed().as_nanos() as u64;
            let due = l.pacer.poll_timeout();
            if due <= t + DORMANT_LOW_NS {
                let urgent = due <= t + DORMANT_LOW_NS / 2;
                if t + DORMANT_STEP_NS > next {
                    if !urgent || urgent_taken {
                        continue;
                    }
                    urgent_taken = true;
                }
                let r = contain(|| l.tick_dormant(t));
                l.contained(r, t, &links.maps);
            }
            next = next.min(l.pacer.poll_timeout().saturating_sub(DORMANT_LOW_NS));
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
            let Some(r) = woken_by.take().or_else(|| links.done.try_recv().ok()) else {
                break;
            };
            let l = &mut stations[r.station];
            let awaited = l
                .pending
                .get(r.program)
                .and_then(|p| p.as_ref().map(|p| p.seq));
            if awaited != Some(r.seq) {
                // Given up as stalled, or for the station as it was before a rebuild (which
                // forgets what it waited for).
                continue;
            }
            l.pending[r.program] = None;
            l.sources[r.program] = Some(r.source);
            let done = contain(|| l.st.handle_io(r.program, r.done));
            l.contained(done, now, &links.maps);
            applied += 1;
        }
        while let Ok(msg) = links.control.try_recv() {
            match msg {
                Control::Schedule(msg) => {
                    if let Some(k) = local(msg.station) {
                        let l = &mut stations[k];
                        let r = contain(|| {
                            for r in l.relays.iter_mut().filter(|r| r.program == 0) {
                                r.schedule(&msg);
                            }
                            l.st.handle_schedule(*msg);
                        });
                        l.contained(r, now, &links.maps);
                    }
                }
                Control::Override(msg) => {
                    if let Some(k) = local(msg.station()) {
                        let l = &mut stations[k];
                        let shown = match &msg {
                            station::OverrideMsg::Show { program, air, .. } => {
                                (*program, Some(air.clone()))
                            }
                            station::OverrideMsg::Clear { program, .. } => (*program, None),
                        };
                        let r = contain(|| l.st.handle_override(msg));
                        // What the rebuild puts back on air: the alert shown; none after a
                        // clear, or when showing it panicked (not to panic again).
                        l.alerts.retain(|(p, _)| *p != shown.0);
                        if let (true, (p, Some(air))) = (r.is_ok(), shown) {
                            l.alerts.push((p, air));
                        }
                        l.contained(r, now, &links.maps);
                    }
                }
                Control::Peer(pf) => {
                    for l in &mut stations {
                        let r = contain(|| l.st.handle_peer(&pf));
                        l.contained(r, now, &links.maps);
                    }
                }
                Control::Input(order) => {
                    if let Some(k) = local(order.station) {
                        let l = &mut stations[k];
                        let r = contain(|| l.order(order));
                        l.contained(r, now, &links.maps);
                    }
                }
            }
        }
        while let Ok((g, at, built)) = links.built.try_recv() {
            if let Some(k) = local(g) {
                let l = &mut stations[k];
                let r = contain(|| l.st.handle_built(built, at));
                l.contained(r, now, &links.maps);
            }
        }
        for (i, l) in stations.iter_mut().enumerate() {
            let r = contain(|| {
                l.give_up_stalled_io(now, &links.jobs);
                l.request_io(now, shard, i, &links.jobs);
                l.take_cas();
                l.take_outputs(global[i], &links);
                for m in l.st.take_marks() {
                    l.rec.journal.mark(m);
                }
            });
            l.contained(r, now, &links.maps);
        }
        if now >= next_status {
            next_status = now + STATUS_NS;
            for l in stations.iter_mut() {
                let r = contain(|| {
                    let on_air = l.st.on_air().first().cloned().flatten();
                    let underflows = l.st.mux().stats().underflows;
                    l.rec.look(now, l.st.id(), &l.monitor, underflows, on_air);
                });
                l.contained(r, now, &links.maps);
                l.after_restart(now, &links.maps);
            }
            publish_status(&stations, &global, status);
            let mut offsets = Vec::new();
            for (l, &g) in stations.iter_mut().zip(&global) {
                let offset = l.pacer.offset_ns();
                l.st.set_offset_ns(offset);
                offsets.push((g, offset));
            }
            links.maps.send_if_modified(|all| {
                let mut changed = false;
                for &(g, offset) in &offsets {
                    if let Some(Some(m)) = all.get_mut(g) {
                        changed |= m.offset_ns != offset;
                        m.offset_ns = offset;
                    }
                }
                changed
            });
        }
        let after = epoch.elapsed().as_nanos() as u64;
        if next > after {
            // Woken early by a read's result: applied at once, so a station muxed in bulk
            // (dormant, or ahead) is not held to one read per sleep.
            woken_by = links
                .done
                .recv_timeout(Duration::from_nanos(next - after))
                .ok();
        }
    }
    for l in &mut stations {
        l.flush_feed();
        if let Some(feed) = &l.feed {
            feed.close();
        }
        for o in &l.outputs {
            let s = o.stats();
            tracing::info!(station = %l.st.id(), output = o.label(), datagrams = s.datagrams, errors = s.errors, "output closed");
        }
    }
    publish_status(&stations, &global, status);
    tracing::info!(shard, "engine stopped");
}

/// Writes the stations' status at their places among all stations.
fn publish_status(stations: &[Live], global: &[usize], status: &Status) {
    let fresh: Vec<StationStatus> = stations.iter().map(Live::status).collect();
    status.send_modify(|all| {
        for (st, &g) in fresh.into_iter().zip(global) {
            if let Some(slot) = all.get_mut(g) {
                *slot = st;
            }
        }
    });
}

/// The file I/O threads, shared by every engine thread: [`IO_THREADS`] to start with, and one
/// more (up to [`IO_THREADS_MAX`]) whenever a job is handed over while none is free, so a
/// slow or hung disk holds up the reads of the channels whose files are on it and no others.
struct IoPool {
    jobs: mpsc::Sender<IoJob>,
    shared: Arc<IoShared>,
}

/// What the I/O threads share (not the job sender: when the engine threads drop the pool,
/// they end).
struct IoShared {
    jobs: Mutex<mpsc::Receiver<IoJob>>,
    /// Each engine thread's answers.
    done: Vec<mpsc::Sender<IoResult>>,
    threads: std::sync::atomic::AtomicUsize,
    /// Threads waiting for a job, and jobs waiting for a thread.
    idle: std::sync::atomic::AtomicUsize,
    queued: std::sync::atomic::AtomicUsize,
    /// Files whose open or read was given up as stalled and has not come back: opening one
    /// again fails at once, so a hung disk takes one thread per file, not one per retry.
    stalled: Mutex<std::collections::HashSet<std::path::PathBuf>>,
}

impl IoPool {
    fn start(done: Vec<mpsc::Sender<IoResult>>) -> std::io::Result<Arc<IoPool>> {
        let (tx, rx) = mpsc::channel();
        let pool = IoPool {
            jobs: tx,
            shared: Arc::new(IoShared {
                jobs: Mutex::new(rx),
                done,
                threads: Default::default(),
                idle: Default::default(),
                queued: Default::default(),
                stalled: Default::default(),
            }),
        };
        for _ in 0..IO_THREADS {
            pool.spawn()?;
        }
        Ok(Arc::new(pool))
    }

    fn spawn(&self) -> std::io::Result<()> {
        let n = self.shared.threads.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("io-{n}"))
            .spawn(move || io_worker(&shared))
            .map(drop)
            .inspect_err(|_| {
                self.shared.threads.fetch_sub(1, Ordering::Relaxed);
            })
    }

    fn stalled(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<std::path::PathBuf>> {
        self.shared
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `job` to a thread, starting one more if more jobs wait than threads do.
    fn submit(&self, job: IoJob) {
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if self.jobs.send(job).is_err() {
            return;
        }
        let threads = self.shared.threads.load(Ordering::Relaxed);
        if queued > self.shared.idle.load(Ordering::Relaxed) && threads < IO_THREADS_MAX {
            tracing::warn!(
                io_threads = threads + 1,
                "every file I/O thread is busy (a slow disk?): one more is started"
            );
            if let Err(e) = self.spawn() {
                tracing::error!(error = %e, "cannot start another file I/O thread");
            }
        }
    }
}

fn io_worker(shared: &IoShared) {
    loop {
        shared.idle.fetch_add(1, Ordering::Relaxed);
        let job = shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        shared.idle.fetch_sub(1, Ordering::Relaxed);
        let Ok(job) = job else { return };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        job.taken.store(true, Ordering::Relaxed);
        let mut source = job.source;
        // A panic costs the item, as a file that cannot be read does.
        let req = job.req;
        let result = match crate::supervise::contain(|| {
            crate::supervise::chaos(|| "io".to_owned());
            source.perform(req, job.path.as_deref())
        }) {
            Ok(done) => done,
            Err(why) => {
                source = FileSource::default();
                let reason = format!("reading the file panicked ({why}): the item is given up");
                crate::supervise::panicked(
                    "file io",
                    format!(
                        "{}: {reason}",
                        job.path
                            .as_deref()
                            .unwrap_or(std::path::Path::new("?"))
                            .display()
                    ),
                );
                match req {
                    IoRequest::Open { item, .. } => IoDone::OpenFailed { item, reason },
                    IoRequest::Read { item } => IoDone::Eof {
                        item,
                        error: Some(reason),
                    },
                }
            }
        };
        if let Some(file) = &job.file {
            let mut stalled = shared
                .stalled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if stalled.remove(file) {
                tracing::info!(file = %file.display(), "the disk answered for the file at last");
            }
        }
        let Some(done) = shared.done.get(job.shard) else {
            return;
        };
        if done
            .send(IoResult {
                station: job.station,
                seq: job.seq,
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

impl Live {
    /// A file open or read not answered in [`IO_STALL_NS`] (a slow or hung disk) fails its
    /// item: the splicer goes on with what follows, and the late answer will be dropped.
    fn give_up_stalled_io(&mut self, now: u64, io: &IoPool) {
        for program in 0..self.pending.len() {
            let Some(p) =
                self.pending[program].take_if(|p| now.saturating_sub(p.since) >= IO_STALL_NS)
            else {
                continue;
            };
            let what = match p.req {
                IoRequest::Open { .. } => "an open",
                IoRequest::Read { .. } => "a read",
            };
            let reason = format!(
                "the disk has not answered {what} in {} s (a slow or hung disk): the item is given up",
                IO_STALL_NS / 1_000_000_000
            );
            tracing::error!(station = %self.st.id(), program, "{reason}");
            if let Some(file) = p.file.filter(|_| p.taken.load(Ordering::Relaxed)) {
                io.stalled().insert(file);
            }
            let done = match p.req {
                IoRequest::Open { item, .. } => IoDone::OpenFailed { item, reason },
                IoRequest::Read { item } => IoDone::Eof {
                    item,
                    error: Some(reason),
                },
            };
            self.sources[program] = Some(FileSource::default());
            self.st.handle_io(program, done);
        }
    }

    /// After contained work: a panic (`Err`) rebuilds the station.
    fn contained(&mut self, result: Result<(), String>, now: u64, maps: &ClockMaps) {
        if let Err(why) = result {
            self.restart(now, why, maps);
        }
    }

    /// The station's engine work panicked: what it was in the middle of may be half-done,
    /// so the station (splicers, muxer, SI, scramblers) is built again from its config and
    /// goes on air afresh, with its outputs, live inputs and SimulCrypt links kept. Its
    /// output pauses for [`REBUILD_START_NS`] and restarts its clock (a PCR discontinuity
    /// receivers resync on); the scheduler sees the new clock and cues the schedule again
    /// from the wall clock. A stoppage is on record from the panic until something is on
    /// air again.
    fn restart(&mut self, now: u64, why: String, maps: &ClockMaps) {
        use crate::record::{Kind, Mark};
        let id = self.rebuild.spec.id.clone();
        if self.panicked.as_ref().is_none_or(|p| p.rebuilt) {
            tracing::error!(station = %id, panic = %why, "the station's engine work panicked: it is built again; the other stations go on");
            for ch in &self.rebuild.spec.channels {
                let on_air = self.st.on_air().first().cloned().flatten();
                self.rec.journal.mark(
                    Mark::start(
                        Kind::Stoppage,
                        &ch.id,
                        "head-end",
                        "engine",
                        format!("the channel's engine work panicked ({why}): it is built again"),
                    )
                    .on_air(on_air),
                );
            }
        }
        self.panicked = Some(Panicked {
            why,
            rebuilt: false,
        });
        self.try_rebuild(now, maps);
    }

    /// Builds the station again (see [`Live::restart`]); a key file that cannot be read
    /// leaves it to the next status look, the output silent meanwhile.
    fn try_rebuild(&mut self, now: u64, maps: &ClockMaps) {
        let r = &self.rebuild;
        let keys = match r.spec.key_sources() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(station = %r.spec.id, error = %e, "the station cannot be built again yet");
                return;
            }
        };
        let start_ns = now + REBUILD_START_NS;
        let clock =
            ClockMap::starting(r.utc_at_epoch_ns + start_ns as i64, r.spec.mux.clock_origin);
        let mut st = Station::new(r.spec.plan(r.global, &r.network, clock, keys));
        st.mux_mut().track_raps(self.feed.is_some());
        let emm: Vec<(u16, u16, u64)> = self.emm.iter().map(|(f, _)| f.stream()).collect();
        st.add_emm(&emm);
        let relays = std::mem::take(&mut self.relays);
        for old in relays {
            let Some(ch) = r.spec.channels.get(old.program) else {
                continue;
            };
            let items = st.add_live(old.program, ch);
            self.relays.push(Relay::new(
                old.program,
                ch,
                old.set,
                items,
                old.scheduled,
                r.spec.mpts,
            ));
        }
        self.st = st;
        for s in &mut self.sources {
            *s = Some(FileSource::default());
        }
        for p in &mut self.pending {
            *p = None;
        }
        // The RTP sequence goes on from the last datagram sent.
        self.rtp_base += self.pacer.released();
        self.in_step = false;
        self.timed = false;
        self.standby = None;
        self.pacer = Pacer::new(PacerConfig::new(r.spec.mux.muxrate_bps), start_ns);
        self.acc.clear();
        self.acc_slot = 0;
        self.acc_since = start_ns;
        self.acc_rap = None;
        let global = r.global;
        maps.send_modify(|all| {
            if let Some(m) = all.get_mut(global) {
                *m = Some(clock);
            }
        });
        if let Some(p) = &mut self.panicked {
            p.rebuilt = true;
        }
        // The alerts on air go back on air (before the scheduler's cues, which wait under
        // an alert). One whose showing panics is dropped, and the station built once more.
        for (program, air) in self.alerts.clone() {
            let msg = station::OverrideMsg::Show {
                station: global,
                program,
                air,
            };
            match contain(|| self.st.handle_override(msg)) {
                Ok(()) => {
                    tracing::warn!(station = %self.rebuild.spec.id, program, "the alert on air is on air again after the rebuild");
                }
                Err(why) => {
                    tracing::error!(station = %self.rebuild.spec.id, program, panic = %why, "showing the alert again panicked: it is dropped on this program, the station built once more");
                    self.alerts.retain(|(p, _)| *p != program);
                    return self.try_rebuild(now, maps);
                }
            }
        }
    }

    /// At a status look: a rebuild still to do is tried again; once the rebuilt station has
    /// something on air, the panic's stoppage ends.
    fn after_restart(&mut self, now: u64, maps: &ClockMaps) {
        use crate::record::{Kind, Mark};
        let Some(p) = &self.panicked else { return };
        if !p.rebuilt {
            self.try_rebuild(now, maps);
            return;
        }
        let on_air = self.st.on_air().first().cloned().flatten();
        if on_air.is_none() {
            return;
        }
        tracing::info!(station = %self.rebuild.spec.id, panic = %p.why, "the station is on air again after its rebuild");
        for ch in &self.rebuild.spec.channels {
            self.rec.journal.mark(
                Mark::end(
                    Kind::Stoppage,
                    &ch.id,
                    "head-end",
                    "engine",
                    "the channel is on air again, built afresh",
                )
                .on_air(on_air.clone()),
            );
        }
        self.panicked = None;
    }

    /// An operator's order: carried out at the relay's next look at its inputs.
    fn order(&mut self, order: InputOrder) {
        let Some(r) = self.relays.iter_mut().find(|r| r.channel == order.channel) else {
            return;
        };
        tracing::info!(channel = %r.channel, action = ?order.action, "input order");
        let done = match order.action {
            InputAction::Switch(to) => r.failover.manual(to, false),
            InputAction::Lock(to) => r.failover.manual(to, true),
            InputAction::Unlock => {
                r.failover.unlock();
                true
            }
        };
        if !done {
            tracing::warn!(channel = %r.channel, "input order not carried out: between the schedule's live items the schedule decides what is on air");
        }
        r.next_check = 0;
    }

    /// Looks at the live inputs: switches when the verdicts say so, and hands the splicer
    /// what arrived for a read that was waiting.
    fn relay(&mut self) {
        for r in &mut self.relays {
            let now = r.set.feeds.first().map_or(0, |f| f.now());
            // The schedule's live item is over: the splicer has gone on to the next cue.
            let mux_now = self.st.mux().now();
            if r.slot
                .as_ref()
                .is_some_and(|s| s.until.is_some_and(|u| mux_now >= u))
            {
                r.end_slot(&mut self.st);
            }
            let checked = now >= r.next_check;
            if checked {
                r.next_check = now + RELAY_CHECK_NS;
                let health: Vec<_> = r.set.feeds.iter().map(|f| f.health()).collect();
                let mut sw = r.failover.update(now, &health);
                let active = r.failover.active();
                let pmts = |i: usize| r.set.feeds.get(i).map_or(0, |f| f.pmts());
                if let (true, Some(i), Some((j, seen))) = (sw.is_none(), active, r.on_air_pmts) {
                    // Once a random access point under the new PMT has come.
                    if i == j
                        && pmts(i) != seen
                        && r.set.feeds.get(i).is_some_and(|f| f.entry_after_pmt())
                    {
                        sw = Some(crate::station::failover::Switch {
                            from: Some(i),
                            to: Some(i),
                            cause: "the input's PMT changed: rejoined to carry its new streams"
                                .to_owned(),
                        });
                    }
                }
                // What the input on air had when it went on air (or was rejoined).
                if sw.is_some() || r.on_air_pmts.map(|(j, _)| j) != active {
                    r.on_air_pmts = active.map(|i| (i, pmts(i)));
                }
                if let Some(sw) = sw {
                    r.air.cause = Some(sw.cause.clone());
                    let name = |s: Option<usize>| {
                        s.and_then(|i| r.set.feeds.get(i))
                            .map_or_else(|| "playlist".to_owned(), |f| f.name().to_owned())
                    };
                    let utc = chrono::Utc::now();
                    if let Some(a) = &self.archive {
                        a.note(
                            "failover",
                            format!("{} -> {}: {}", name(sw.from), name(sw.to), sw.cause),
                            utc.timestamp_nanos_opt().unwrap_or(0),
                        );
                    }
                    let record = crate::status::SwitchRecord {
                        utc: utc.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        local: utc
                            .with_timezone(&r.timezone)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                        from: sw.from.map(|_| name(sw.from)),
                        to: sw.to.map(|_| name(sw.to)),
                        cause: sw.cause.clone(),
                        gap_ms: None,
                    };
                    tracing::warn!(
                        channel = %r.channel,
                        from = %name(sw.from),
                        to = %name(sw.to),
                        cause = %sw.cause,
                        utc = %record.utc,
                        local = %record.local,
                        "input switch"
                    );
                    if r.switches.len() == crate::status::SWITCHES_KEPT {
                        r.switches.pop_front();
                    }
                    r.switches.push_back(record);
                    // What started before the switch is not its gap.
                    let _ = self.st.take_last_start(r.program);
                    r.awaiting_gap = true;
                    // To an input: what is on air gives way where the new input's entry
                    // point (its data kept from before, so already some way behind) still
                    // leaves it its lead: no hole, and no delay added switch after switch.
                    // From an input to the playlist: what it queued plays out (good content),
                    // then its reads end.
                    let how = match sw.to.and_then(|i| r.set.feeds.get(i)) {
                        Some(f) => {
                            let behind = f.entry_age_ns().unwrap_or(0);
                            let ahead = r.lead_ns.saturating_sub(behind) * 27 / 1000;
                            Handover::Cut(ahead)
                        }
                        None if sw.from.is_some() => Handover::Drain,
                        None => Handover::Cut(0),
                    };
                    if let Some(f) = sw.from.and_then(|i| r.set.feeds.get(i)) {
                        f.go_off_air();
                    }
                    // In a schedule's live item, what replaces the input plays to the item's
                    // end, and the schedule's cues after it stay.
                    let slot = r.slot.as_ref().map(|s| (s.until, s.tag));
                    self.st.relay(r.program, sw.to, how, slot);
                    let how = match (how, slot) {
                        // Nothing is drained and ended: the splicer left the item at once.
                        (Handover::Drain, Some(_)) => Handover::Cut(0),
                        (how, _) => how,
                    };
                    match (how, r.waiting.take()) {
                        // The splicer gave the read up: answered empty, the new input opens.
                        (Handover::Cut(_), Some((item, _))) => self.st.handle_io(
                            r.program,
                            IoDone::Data {
                                item,
                                data: Bytes::new(),
                            },
                        ),
                        (Handover::Drain, Some((item, _))) => self
                            .st
                            .handle_io(r.program, IoDone::Eof { item, error: None }),
                        (Handover::Drain, None) => r.ending = true,
                        (Handover::Cut(_), None) => {}
                    }
                }
            }
            if checked {
                r.note_air(now, &self.rec.journal);
            }
            // The gap on air of the last switch, once what it put on air has started.
            if r.awaiting_gap {
                if let Some((item, gap)) = self.st.take_last_start(r.program) {
                    r.awaiting_gap = false;
                    let gap_ms = gap.map(|g| g as f64 / 27_000.0);
                    if let Some(last) = r.switches.back_mut() {
                        last.gap_ms = gap_ms;
                        tracing::info!(
                            channel = %r.channel,
                            to = %last.to.as_deref().unwrap_or("playlist"),
                            item,
                            gap_ms = gap_ms.map_or_else(|| "-".to_owned(), |g| format!("{g:.0}")),
                            "input switch on air"
                        );
                    }
                }
            }
            if now >= r.next_steer {
                r.next_steer = now + STEER_NS;
                if let Some(steer) = r.steer.as_mut() {
                    let mux = self.st.mux();
                    let lead = r.failover.active().and_then(|_| {
                        let until = mux.program(r.program).queued_until()?;
                        Some((until as f64 - mux.now() as f64) / 27e6)
                    });
                    let ppb = steer.update(now as f64 / 1e9, lead);
                    self.pacer.set_rate_ppb(ppb);
                }
            }
            if let Some((item, input)) = r.waiting {
                let data = r.set.feeds[input].take();
                if !data.is_empty() {
                    r.waiting = None;
                    self.st.handle_io(r.program, IoDone::Data { item, data });
                }
            }
        }
    }

    /// A live input's open or read, answered from its feed at once (a read with nothing
    /// there yet waits for [`Live::relay`]).
    fn live_io(&mut self, program: usize, input: usize, req: IoRequest) {
        let Some(r) = self.relays.iter_mut().find(|r| r.program == program) else {
            return;
        };
        if input >= r.set.feeds.len() {
            return;
        }
        if let IoRequest::Open { item, .. } = req {
            r.enter_slot(item);
        }
        let feed = &r.set.feeds[input];
        match req {
            IoRequest::Open { item, .. } => {
                r.ending = false;
                for (i, f) in r.set.feeds.iter().enumerate() {
                    if i != input {
                        f.go_off_air();
                    }
                }
                feed.go_on_air();
                self.st.handle_io(program, IoDone::Opened { item });
            }
            IoRequest::Read { item } if r.ending => {
                r.ending = false;
                self.st
                    .handle_io(program, IoDone::Eof { item, error: None });
            }
            IoRequest::Read { item } => {
                let data = feed.take();
                if data.is_empty() {
                    r.waiting = Some((item, input));
                } else {
                    self.st.handle_io(program, IoDone::Data { item, data });
                }
            }
        }
    }

    /// Sends the station's file reads to the I/O threads.
    fn request_io(&mut self, now: u64, shard: usize, index: usize, jobs: &IoPool) {
        self.relay();
        while let Some(job) = self.st.poll_io() {
            if let Some(input) = job.live {
                self.live_io(job.program, input, job.req);
                continue;
            }
            if let (IoRequest::Open { item, .. }, Some(path)) = (job.req, &job.path) {
                if jobs.stalled().contains(path) {
                    let reason = format!(
                        "the disk has not answered an earlier open or read of {} yet",
                        path.display()
                    );
                    self.st
                        .handle_io(job.program, IoDone::OpenFailed { item, reason });
                    continue;
                }
            }
            match self.sources.get_mut(job.program).and_then(Option::take) {
                Some(source) => {
                    if matches!(job.req, IoRequest::Open { .. }) {
                        if let Some(f) = self.open_files.get_mut(job.program) {
                            f.clone_from(&job.path);
                        }
                    }
                    let file = self.open_files.get(job.program).cloned().flatten();
                    self.io_seq += 1;
                    let taken = Arc::new(AtomicBool::new(false));
                    if let Some(p) = self.pending.get_mut(job.program) {
                        *p = Some(PendingIo {
                            seq: self.io_seq,
                            since: now,
                            req: job.req,
                            file: file.clone(),
                            taken: taken.clone(),
                        });
                    }
                    jobs.submit(IoJob {
                        shard,
                        station: index,
                        seq: self.io_seq,
                        file,
                        taken,
                        program: job.program,
                        source,
                        req: job.req,
                        path: job.path,
                    });
                }
                None => {
                    // Cannot happen: a splicer asks for one thing at a time.
                    tracing::error!(station = %self.st.id(), program = job.program, "I/O requested while busy");
                }
            }
        }
    }

    /// What the SimulCrypt links and the EMMGs brought.
    fn take_cas(&mut self) {
        for (feed, dropped) in &mut self.emm {
            while let Ok(packets) = feed.packets.try_recv() {
                let n = packets.len() / playout::ts::PACKET_SIZE;
                let taken = self.st.push_emm(feed.pid, &packets);
                *dropped += (n - taken) as u64;
            }
        }
        for (k, (program, cas, link)) in self.cas.iter().enumerate() {
            while let Ok(ev) = link.events.try_recv() {
                if let Some(state) = self.cas_state.get_mut(k) {
                    match &ev {
                        crate::cas::CasEvent::Up { .. } => {
                            if !state.up {
                                self.rec.journal.mark(crate::record::Mark::end(
                                    crate::record::Kind::Degradation,
                                    &state.channel,
                                    "cas",
                                    &format!("ecmg {}", state.super_cas_id),
                                    format!("the ECMG channel is up (CAS {})", state.super_cas_id),
                                ));
                            }
                            state.up = true;
                            state.error = None;
                        }
                        crate::cas::CasEvent::Down { reason } => {
                            // The scrambling's failure policy is in force meanwhile.
                            self.rec.journal.mark(crate::record::Mark::start(
                                crate::record::Kind::Degradation,
                                &state.channel,
                                "cas",
                                &format!("ecmg {}", state.super_cas_id),
                                format!("ECMG link down (CAS {}): {reason}", state.super_cas_id),
                            ));
                            state.up = false;
                            state.error = Some(reason.clone());
                        }
                        crate::cas::CasEvent::Ecm { .. } => {}
                    }
                }
                self.st.handle_cas(*program, *cas, ev);
            }
        }
    }

    /// Carries out what the station asks: alert reports to the desk, EIT work to the
    /// builder, present/following to the other stations, ECM requests to the links.
    fn take_outputs(&mut self, global: usize, links: &Links) {
        while let Some(o) = self.st.poll_output() {
            match o {
                Output::Air(r) => {
                    let _ = links.reports.send(r);
                }
                Output::Eit { job, at } => links.eit.send(global, job, at, &links.built_tx),
                Output::Pf(pf) => links.router.broadcast_pf(&Arc::from(pf)),
                Output::Provision { program, provision } => {
                    let links = self
                        .cas
                        .iter()
                        .filter(|(p, k, _)| *p == program && provision.cas.contains(k));
                    for (_, _, link) in links {
                        let _ = link.requests.send(provision.clone());
                    }
                }
                Output::Boundary(b) => {
                    if self.archive.is_some() && b.program == 0 {
                        self.boundaries.push_back(*b);
                    }
                }
            }
        }
    }

    /// Sends what is due at `now` (ns since the epoch).
    fn tick(&mut self, now: u64) {
        let ahead = if self.may_run_ahead() {
            UNPACED_AHEAD_NS
        } else {
            EARLY_NS
        };
        let n = self.pacer.poll_release_ahead(now, ahead) as usize;
        if n == 0 {
            self.flush_feed_if_old(now);
            return;
        }
        let (slot0, start) = self.make(n);
        // Monitored on the times the datagrams are due: the stream as the muxer made it (a
        // stall of this thread is counted apart, as the pacer's).
        // (Not with the benchmark knob HEADEND_BENCH_NO_MONITOR=1, which measures its cost.)
        let first = self.pacer.released() - n as u64;
        if crate::input::live::monitoring() {
            for d in 0..n {
                let at = self.pacer.due(first + d as u64);
                let off = start + d * DATAGRAM;
                self.monitor.push(at, &self.acc[off..off + DATAGRAM]);
            }
        }
        let send = self
            .gate
            .as_ref()
            .is_none_or(|(g, i)| g.open(*i, Instant::now()));
        let base = self.rtp_base + first;
        if let Some(sb) = &mut self.standby {
            if !send {
                sb.open = false;
                sb.listen(base);
            } else if !sb.open {
                sb.take_over();
            }
        }
        for d in 0..n {
            let index = first + d as u64;
            if self.timed && self.pacer.due(index) + LATE_NS < now {
                // Late after a stall: lost, so what follows leaves on its instant (the other
                // path of a 2022-7 pair has it). Counted: the stall shows.
                self.late_datagrams += 1;
                continue;
            }
            let off = start + d * DATAGRAM;
            let datagram = &self.acc[off..off + DATAGRAM];
            let ts90k = self
                .st
                .mux()
                .slot_time(slot0 + (d * PACKETS_PER_DATAGRAM) as u64)
                / 300;
            let abs = self.rtp_base + index;
            for (o, seamless) in self.outputs.iter_mut().zip(&self.seamless) {
                if *seamless {
                    o.send(datagram, ts90k, abs);
                }
            }
            match &mut self.standby {
                Some(sb) if !send => sb.keep(abs, ts90k, datagram),
                Some(sb) if sb.sent_through.is_some_and(|h| abs <= h) => {}
                Some(sb) if !sb.backlog.is_empty() => {
                    sb.backlog
                        .push_back((abs, ts90k, Bytes::copy_from_slice(datagram)));
                }
                _ if send => {
                    for (o, seamless) in self.outputs.iter_mut().zip(&self.seamless) {
                        if !*seamless {
                            o.send(datagram, ts90k, abs);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(sb) = self.standby.as_mut().filter(|_| send) {
            // Twice the rate until the backlog is out.
            for _ in 0..2 * n {
                let Some((abs, ts90k, datagram)) = sb.backlog.pop_front() else {
                    break;
                };
                for (o, seamless) in self.outputs.iter_mut().zip(&self.seamless) {
                    if !*seamless {
                        o.send(&datagram, ts90k, abs);
                    }
                }
            }
        }
        self.made(now);
    }

    /// Muxes `n` datagrams into the HTTP accumulator (cleared first when there is no feed):
    /// the slot of the first packet, and where they start in it.
    fn make(&mut self, n: usize) -> (u64, usize) {
        let slot0 = self.st.mux().slot();
        if self.feed.is_none() {
            self.acc.clear();
            self.acc_slot = slot0;
        }
        let start = self.acc.len();
        self.st.emit(&mut self.acc, n * PACKETS_PER_DATAGRAM);
        (slot0, start)
    }

    /// After [`Live::make`]: random access points noted, the HTTP chunk published when
    /// due.
    fn made(&mut self, now: u64) {
        while let Some(rap) = self.st.mux_mut().poll_rap() {
            if let Some(k) = rap.slot.checked_sub(self.acc_slot) {
                // The first random access point at or after an item's first packet is where
                // the item begins.
                let t = self.st.mux().slot_time(rap.slot);
                if self.boundaries.front().is_some_and(|b| b.at <= t) {
                    self.acc_boundary = self.boundaries.pop_front();
                    // Items that started and ended before it (none reached the output).
                    while self.boundaries.front().is_some_and(|b| b.at <= t) {
                        self.acc_boundary = self.boundaries.pop_front();
                    }
                }
                self.acc_rap = Some((k as usize * PACKET_SIZE, rap.psi));
            }
        }
        if self.acc.len() >= HTTP_CHUNK_BYTES {
            self.flush_feed();
            self.acc_since = now;
        } else {
            self.flush_feed_if_old(now);
        }
    }

    /// Leaves the fleet's step when the agent found the fleet playing the station from another
    /// origin (a node of its own origin took it over): no longer a standby or dormant; its
    /// bytes stay those of its origin.
    fn follow_step(&mut self) {
        let Some((g, i)) = &self.gate else {
            return;
        };
        let stepless = g.stepless(*i);
        if self.in_step && stepless {
            self.in_step = false;
            self.standby = None;
            tracing::warn!(station = %self.st.id(), "fleet: the fleet plays the station from another origin: this node is not in step with it");
        } else if !self.in_step && !stepless && self.timed && self.standby_cap > 0 {
            // Its origin is the fleet's again (or became it): a standby once more.
            self.in_step = true;
            self.standby = Some(Standby::new(
                listeners_of(&self.rebuild.spec),
                self.standby_cap,
            ));
            tracing::info!(station = %self.st.id(), "fleet: the station's origin is the fleet's: in step with the other nodes");
        }
    }

    /// Whether the station should be dormant on this node: it plays in step with a fleet,
    /// this node neither sends it nor keeps it warm, and it has no live input and no output
    /// that every node sends (`seamless`). Its HTTP feed and archive still get its output.
    fn should_sleep(&self, at: Instant) -> bool {
        let Some((gates, i)) = &self.gate else {
            return false;
        };
        self.in_step
            && self.relays.is_empty()
            && !self.seamless.iter().any(|s| *s)
            && !gates.warm(*i)
            && !gates.open(*i, at)
    }

    /// Goes dormant or wakes up. Woken, it is up to [`DORMANT_AHEAD_NS`] ahead: what it made
    /// meanwhile was not sent, so a takeover by it continues the stream after that gap.
    fn set_dormant(&mut self, dormant: bool) {
        if dormant == self.dormant {
            return;
        }
        self.dormant = dormant;
        if let Some(sb) = &mut self.standby {
            if dormant {
                sb.sleep();
            } else {
                sb.wake(&self.rebuild.spec);
            }
        }
        if !dormant {
            // It saw nothing of what was made while dormant.
            self.monitor.resync();
        }
        tracing::debug!(station = %self.st.id(), dormant, "fleet: station mode");
    }

    /// A dormant station's turn (`run` gives it one once its next datagram is due within
    /// [`DORMANT_LOW_NS`]): everything due up to [`DORMANT_AHEAD_NS`] is muxed at once, for
    /// the HTTP feed (while it has clients) and the archive only. Without either, what is
    /// made goes nowhere: a client that comes starts at the next random access point, not at
    /// the latest one.
    fn tick_dormant(&mut self, now: u64) {
        let n = self.pacer.poll_release_ahead(now, DORMANT_AHEAD_NS) as usize;
        if n > 0 {
            self.make(n);
        }
        let watched = self
            .feed
            .as_ref()
            .is_some_and(|f| f.stats.clients.load(Ordering::Relaxed) > 0);
        if watched || self.archive.is_some() {
            self.made(now);
        } else {
            while self.st.mux_mut().poll_rap().is_some() {}
            self.acc.clear();
            self.acc_slot = self.st.mux().slot();
            self.acc_rap = None;
            self.acc_since = now;
        }
    }

    /// The station may be muxed [`UNPACED_AHEAD_NS`] ahead of its datagrams' due times, and
    /// its engine thread sleep that long: it has no datagram output (nothing of it leaves on
    /// those due times), no live input (whose lead over sending that would eat into), and
    /// every program has packets queued due at least twice that far ahead, so muxing ahead
    /// finds no queue empty. Not at a start or a rebuild, before the first reads are in:
    /// the thread wakes for each datagram then, and applies the reads as they come.
    fn may_run_ahead(&self) -> bool {
        if !self.outputs.is_empty() || !self.relays.is_empty() {
            return false;
        }
        let mux = self.st.mux();
        let until = mux.now() + 2 * UNPACED_AHEAD_NS * 27 / 1000;
        (0..mux.programs()).all(|p| mux.program(p).queued_until().is_some_and(|u| u >= until))
    }

    fn flush_feed_if_old(&mut self, now: u64) {
        if now.saturating_sub(self.acc_since) >= HTTP_CHUNK_NS {
            self.flush_feed();
            self.acc_since = now;
        }
    }

    fn flush_feed(&mut self) {
        let Some(feed) = &self.feed else { return };
        if self.acc.is_empty() {
            return;
        }
        let data = self.acc.split().freeze();
        let first_slot = self.acc_slot;
        self.acc_slot = self.st.mux().slot();
        self.acc.reserve(HTTP_CHUNK_BYTES + DATAGRAM * 64);
        let rap = self.acc_rap.take();
        if let Some(archive) = &self.archive {
            let utc_ns = self.st.clock().utc_ns(self.st.mux().slot_time(first_slot));
            archive.send(crate::archive::Piece {
                data: data.clone(),
                rap: rap.clone(),
                utc_ns,
                boundary: self.acc_boundary.take(),
            });
        }
        feed.publish(Chunk { data, rap });
    }

    fn status(&self) -> StationStatus {
        let m = self.st.mux().stats();
        let p = self.pacer.stats();
        let items = self.st.items();
        StationStatus {
            id: self.st.id().to_owned(),
            muxrate_bps: self.st.mux().config().muxrate_bps,
            on_air: self.st.on_air().to_vec(),
            packets: m.packets,
            null_packets: m.null_packets,
            items_started: items.items_started,
            items_failed: items.items_failed,
            late_packets: m.late_packets,
            underflows: m.underflows,
            pacer_stalls: p.stalls,
            late_datagrams: self.late_datagrams,
            max_late_us: p.max_late_ns / 1000,
            fleet: self.gate.as_ref().map(|(g, i)| {
                if g.open(*i, Instant::now()) {
                    "sending"
                } else if self.dormant {
                    "dormant"
                } else {
                    "warm"
                }
            }),
            tr101290: self
                .monitor
                .counts()
                .into_iter()
                .map(|(rule, n)| (rule.name().to_owned(), n))
                .collect(),
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
            scrambling: self.st.scrambling_stats(),
            ecmg: self.cas_state.clone(),
            emm: self
                .emm
                .iter()
                .map(|(f, dropped)| {
                    let (packets, queued) = self.st.emm_state(f.pid).unwrap_or_default();
                    crate::status::EmmStatus {
                        ca_system_id: format!("0x{:04X}", f.ca_system_id),
                        pid: f.pid,
                        packets,
                        queued,
                        dropped: *dropped,
                        datagrams: f.counters.datagrams.load(Ordering::Relaxed),
                        over_allocation: f.counters.dropped.load(Ordering::Relaxed),
                        errors: f.counters.errors.load(Ordering::Relaxed),
                    }
                })
                .collect(),
            relays: self.relays.iter().map(Relay::status).collect(),
        }
    }
}

impl Relay {
    /// The schedule cued `msg`: its live items are noted, to be relayed when the splicer
    /// opens them; from its first cues on, the channel's inputs go on air only in them.
    fn schedule(&mut self, msg: &crate::station::ScheduleMsg) {
        if msg.handover.is_none() && msg.cues.is_empty() {
            return;
        }
        if !self.scheduled {
            self.scheduled = true;
            tracing::info!(channel = %self.channel, "a schedule drives the channel: its live inputs go on air in the schedule's live items");
            // An input on air plays until the schedule takes over, then the failover rests.
            match (self.failover.active(), self.slot.is_none()) {
                (Some(a), true) => {
                    self.slot = Some(Slot {
                        item: usize::MAX,
                        chain: vec![a],
                        until: msg.handover,
                        tag: 0,
                    })
                }
                (None, _) => self.failover.idle(),
                _ => {}
            }
        }
        if let Some(at) = msg.handover {
            // What was cued is dropped; what is on air ends at the handover.
            self.slots.clear();
            if let Some(s) = self.slot.as_mut() {
                s.until = Some(s.until.map_or(at, |u| u.min(at)));
            }
        }
        for (tag, chain) in &msg.live {
            let Some(c) = msg.cues.iter().find(|c| c.tag == *tag) else {
                continue;
            };
            self.slots.push_back(Slot {
                item: c.item,
                chain: chain.clone(),
                until: c.until,
                tag: *tag,
            });
        }
    }

    /// The splicer opens `item`: a schedule's live item goes on air (an input the relay
    /// itself put in an item's place is not a new item).
    fn enter_slot(&mut self, item: usize) {
        if !self.scheduled {
            return;
        }
        let own = |s: &Slot| s.chain.iter().any(|&i| self.items.get(i) == Some(&item));
        if self.slot.as_ref().is_some_and(own) {
            return;
        }
        while let Some(s) = self.slots.pop_front() {
            if s.item == item {
                tracing::info!(channel = %self.channel, input = %self.set.feeds.get(s.chain[0]).map_or("?", |f| f.name()), "live item on air");
                self.failover.start_slot(s.chain.clone());
                self.on_air_pmts = None;
                self.slot = Some(s);
                return;
            }
        }
    }

    /// Records a change of what the relay has on air: a backup input (failover), the
    /// playlist because every input failed (stoppage), or back to normal.
    fn note_air(&mut self, now: u64, journal: &crate::record::Journal) {
        use crate::record::{Kind, Mark};
        let active = self.failover.active();
        let name = |s: Option<usize>| {
            s.and_then(|i| self.set.feeds.get(i))
                .map_or_else(|| "playlist".to_owned(), |f| f.name().to_owned())
        };
        self.air.ever_on_input |= active.is_some();
        let first = *self.air.first.get_or_insert(now);
        let want = match (self.failover.preferred(), active) {
            (None, _) => OnAir::Normal,
            (Some(p), Some(a)) if p == a => OnAir::Normal,
            (Some(_), Some(_)) => OnAir::Failover,
            (Some(_), None)
                if self.air.ever_on_input || now.saturating_sub(first) >= START_GRACE_NS =>
            {
                OnAir::Stoppage
            }
            (Some(_), None) => OnAir::Normal,
        };
        let before = std::mem::replace(&mut self.air.last, active);
        // Why this look's switch was made, if it made one.
        let cause = self.air.cause.take();
        if want == self.air.state {
            return;
        }
        let on_air = Some(name(active));
        let kind = |s: OnAir| match s {
            OnAir::Failover => Some(Kind::Failover),
            OnAir::Stoppage => Some(Kind::Stoppage),
            OnAir::Normal => None,
        };
        if let Some(k) = kind(self.air.state) {
            let why = match (want, &cause) {
                (OnAir::Normal, Some(c)) => format!("{} on air: {c}", name(active)),
                (OnAir::Normal, None) => "the live item ended".to_owned(),
                (_, Some(c)) => c.clone(),
                (_, None) => format!("{} on air", name(active)),
            };
            journal.mark(Mark::end(k, &self.channel, "input", "relay", why).on_air(on_air.clone()));
        }
        if let Some(k) = kind(want) {
            let why = cause.unwrap_or_else(|| match want {
                OnAir::Stoppage if !self.air.ever_on_input => {
                    "no input good since the start: the playlist is on air".to_owned()
                }
                _ => format!("{} on air", name(active)),
            });
            let why = match want {
                OnAir::Stoppage => format!("all inputs lost ({why}): the playlist is on air"),
                _ => why,
            };
            journal.mark(
                Mark::start(k, &self.channel, "input", "relay", why).on_air(Some(name(before))),
            );
        }
        self.air.state = want;
    }

    /// The schedule's live item ended: the inputs rest until the next.
    fn end_slot(&mut self, st: &mut Station) {
        self.slot = None;
        self.failover.idle();
        self.on_air_pmts = None;
        self.ending = false;
        for f in &self.set.feeds {
            f.go_off_air();
        }
        // A read still waiting (an input that stopped just before the end) is answered, so
        // the splicer goes on.
        if let Some((item, _)) = self.waiting.take() {
            st.handle_io(self.program, IoDone::Eof { item, error: None });
        }
    }

    fn status(&self) -> RelayStatus {
        RelayStatus {
            channel: self.channel.clone(),
            active: self
                .failover
                .active()
                .and_then(|i| self.set.feeds.get(i))
                .map(|f| f.name().to_owned()),
            locked: self.failover.locked(),
            scheduled: self.scheduled,
            switches: self.switches.iter().cloned().collect(),
            clock_ppb: self.steer.as_ref().map_or(0, Steer::ppb),
            inputs: self
                .set
                .feeds
                .iter()
                .map(|f| {
                    let s = f.status();
                    InputStatus {
                        name: s.name,
                        health: match s.health {
                            Health::Good => "good".to_owned(),
                            Health::Starting => "starting".to_owned(),
                            Health::Bad(fault) => fault.to_string(),
                        },
                        bytes: s.stats.bytes,
                        packets: s.stats.packets,
                        cc_errors: s.stats.cc_errors,
                        sync_losses: s.stats.sync_losses,
                        pcr_jumps: s.stats.pcr_jumps,
                        scrambled_packets: s.stats.scrambled,
                        rtp_lost: s.rtp.lost,
                        rtp_reordered: s.rtp.reordered,
                        rtp_duplicates: s.rtp.duplicates,
                        foreign_datagrams: s.foreign,
                        overflow_bytes: s.overflow,
                        refused_connections: s.refused,
                        error: s.error,
                        tr101290: s.tr101290,
                    }
                })
                .collect(),
        }
    }
}
