//! `headend render`: a channel's (or an MPTS's) output written to a file as fast as the
//! machine allows. It runs the daemon's own [`Station`] on a simulated clock that starts at
//! `--start` and advances with the packets written, so the file carries what would go on air
//! from that instant: the schedule's cues, DVB SI (SDT, EIT p/f and schedule, TDT/TOT, NIT),
//! scrambling with its key rotation, ECMs and CAT, and alerts replayed at given offsets
//! (`--alerts`), through the same alert desk the daemon runs. File reads are done inline
//! before each batch of packets, so the inputs are never late.
//!
//! The output ([`render_to`]) is never damaged: a regular file appears only when the render
//! is complete (a failed or interrupted render leaves the old file, or none); `-` (stdout),
//! devices and FIFOs are written in place; through a symlink, the file it names gets the
//! output and the link stays (`outfile`).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use epg::eit_cache::EitBuilds;
use playout::ts::PACKET_SIZE;

use crate::alert::{Desk, DeskLinks};
use crate::clock::ClockMap;
use crate::config::Config;
use crate::input::file::{FileSource, IoDone};
use crate::router::{Delivered, ScheduleSink};
use crate::schedule::driver::{self, ScheduledChannel};
use crate::schedule::store::Store;
use crate::station::{self, Output, Station, StationSpec, EMIT_STEP};

/// Packets written per step: 64 datagrams.
const BATCH: usize = EMIT_STEP * 64;
/// The output is written in pieces of at least this many bytes: fewer system calls.
const WRITE_BYTES: usize = 1 << 20;

/// What a render did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RenderStats {
    pub(crate) packets: u64,
    pub(crate) es_packets: u64,
    pub(crate) null_packets: u64,
    pub(crate) items_started: u64,
    pub(crate) items_failed: u64,
    pub(crate) late_packets: u64,
    pub(crate) input_bytes: u64,
    pub(crate) alerts_accepted: u64,
    pub(crate) alerts_refused: u64,
}

/// An alert to replay: its message, as `POST /api/alerts` would receive it, `at` after the
/// start.
pub(crate) struct ReplayAlert {
    pub(crate) at: Duration,
    /// Where it was read from (for logs).
    pub(crate) file: PathBuf,
    pub(crate) body: Vec<u8>,
    pub(crate) key_id: String,
    /// Base64, as the `X-Signature` header.
    pub(crate) signature: String,
}

/// What to render.
pub(crate) struct RenderJob<'a> {
    pub(crate) config: &'a Config,
    /// Every station of the config ([`station::specs`]).
    pub(crate) specs: Vec<StationSpec>,
    /// The one written out.
    pub(crate) target: usize,
    /// UTC (ns) of the first packet.
    pub(crate) start_utc_ns: i64,
    pub(crate) duration: Duration,
    pub(crate) alerts: Vec<ReplayAlert>,
    /// The alert desk's audit log for this render (never the daemon's).
    pub(crate) audit_log: PathBuf,
}

/// One station of the render, with what drives it.
struct Sim {
    st: Station,
    sources: Vec<FileSource>,
    scheduler: Option<driver::State>,
    next_round: i64,
    /// An alert ended: the scheduler looks at once (`driver::Wake::AlertEnded`).
    woken: bool,
    total: u64,
    close_at: u64,
    closed: bool,
}

/// Renders `job` to `output` (`headend render -o`): a regular file only when complete,
/// `-`, devices and FIFOs in place ([`outfile::Sink`]). Every error names `output`.
pub(crate) fn render_to(job: RenderJob<'_>, output: &Path) -> anyhow::Result<RenderStats> {
    let mut out = outfile::Sink::open(output).context("opening the output")?;
    let started = Instant::now();
    // On an error the sink is dropped unfinished: its temporary file goes, the target stays.
    let stats = render(job, &mut out).with_context(|| format!("rendering {}", output.display()))?;
    out.finish()
        .with_context(|| format!("completing {}", output.display()))?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        output = %output.display(),
        packets = stats.packets,
        es_packets = stats.es_packets,
        null_packets = stats.null_packets,
        items_started = stats.items_started,
        items_failed = stats.items_failed,
        late_packets = stats.late_packets,
        alerts_accepted = stats.alerts_accepted,
        alerts_refused = stats.alerts_refused,
        seconds = format!("{secs:.3}"),
        "render done"
    );
    Ok(stats)
}

/// Renders `job.target` into `out`. The other stations the target's SI depends on (the
/// other MPTS, whose present/following an MPTS carries as EIT other) run beside it in step,
/// as on air; their output is not kept.
pub(crate) fn render(job: RenderJob<'_>, out: &mut impl Write) -> anyhow::Result<RenderStats> {
    let RenderJob {
        config,
        specs,
        target,
        start_utc_ns,
        duration,
        alerts,
        audit_log,
    } = job;
    let network = station::network(config, start_utc_ns);
    // An MPTS carries its peers' EIT p/f other: they run too.
    let running: Vec<usize> = (0..specs.len())
        .filter(|&i| i == target || (specs[target].mpts && specs[i].mpts))
        .collect();
    let mut sims = Vec::new();
    for &i in &running {
        let spec = &specs[i];
        let clock = ClockMap::starting(start_utc_ns, spec.mux.clock_origin);
        let mut st = Station::new(spec.plan(i, &network, clock, spec.key_sources()?));
        for (program, ch) in spec.channels.iter().enumerate() {
            if ch.inputs.is_empty() {
                continue;
            }
            tracing::warn!(channel = %ch.id, "live inputs are not rendered: the render plays the channel's playlist in their place");
            // As on air, so a schedule's items have the same places in the playlist; their
            // opens fail, and the playlist plays.
            st.add_live(program, ch);
        }
        let muxrate = spec.mux.muxrate_bps;
        let total = (duration.as_nanos() * u128::from(muxrate)
            / (8 * PACKET_SIZE as u128 * 1_000_000_000)) as u64;
        sims.push(Sim {
            st,
            sources: file_sources(spec),
            scheduler: scheduler_of(config, spec, i),
            // As on air, where the scheduler's first look comes once the station is sending:
            // after the first datagram.
            next_round: start_utc_ns + 1,
            woken: false,
            total,
            // Close 3 s before the end (a quarter of short renders): room for the
            // read-ahead to drain and for the last access units to complete.
            // Whole datagrams, as on air.
            close_at: {
                let c = total - (3 * muxrate / (8 * PACKET_SIZE as u64)).min(total / 4);
                c - c % EMIT_STEP as u64
            },
            closed: false,
        });
    }
    // Guides from XMLTV, read once (the daemon watches the files).
    for (sim, &i) in sims.iter_mut().zip(&running) {
        let end_ns = start_utc_ns.saturating_add(duration.as_nanos() as i64);
        if let Some(msg) = xmltv_guide(&specs[i], i, (start_utc_ns, end_ns))? {
            sim.st.handle_schedule(msg);
        }
    }
    let sim_of = |station: usize| running.iter().position(|&r| r == station);
    let store = Store::new(config.schedules.dir.clone());
    let (sink, inbox) = ScheduleSink::inbox(specs.len());
    let (returns, wakes) = mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::channel();
    let desk = if alerts.is_empty() {
        None
    } else {
        let mut cfg = config.clone();
        let a = cfg
            .alerts
            .as_mut()
            .context("--alerts: the config has no [alerts] table")?;
        a.audit_log = audit_log;
        // A fresh log: the render's alerts are not replays of an earlier render's.
        let _ = std::fs::remove_file(&a.audit_log);
        Desk::new(
            &cfg,
            DeskLinks {
                sink,
                returns,
                reports: Some(reports_rx),
                placement: running
                    .iter()
                    .flat_map(|&i| {
                        let s = &specs[i];
                        s.channels
                            .iter()
                            .enumerate()
                            .map(move |(p, c)| (c.id.clone(), i, p, !s.mpts))
                    })
                    .collect(),
                journal: crate::record::Journal::none(),
            },
        )?
    };
    let mut alerts: VecDeque<ReplayAlert> = alerts.into();
    let mut eit = EitBuilds::default();
    let mut warned_simulcrypt = false;
    let mut stats = RenderStats::default();
    let mut buf = BytesMut::with_capacity(WRITE_BYTES + BATCH * PACKET_SIZE);
    let t = sim_of(target).context("the target station runs")?;
    while sims[t].st.mux().slot() < sims[t].total {
        // The station furthest behind goes next, so all keep in step.
        let Some(k) = (0..sims.len()).min_by_key(|&k| sims[k].st.utc_ns()) else {
            break;
        };
        let utc = sims[k].st.utc_ns();
        let now = DateTime::<Utc>::from_timestamp_nanos(utc);
        if let Some(desk) = &desk {
            while alerts
                .front()
                .is_some_and(|a| start_utc_ns + a.at.as_nanos() as i64 <= utc)
            {
                let Some(a) = alerts.pop_front() else { break };
                match desk.submit(&a.body, Some(&a.key_id), Some(&a.signature), now) {
                    Ok(_) => stats.alerts_accepted += 1,
                    Err(r) => {
                        stats.alerts_refused += 1;
                        tracing::warn!(file = %a.file.display(), reason = %r.reason, "replayed alert refused");
                    }
                }
            }
            desk.tick(now);
        }
        for d in inbox.drain() {
            let Some(j) = sim_of(d.station()) else {
                continue;
            };
            match d {
                Delivered::Override(o) => sims[j].st.handle_override(o),
                Delivered::Schedule(m) => sims[j].st.handle_schedule(*m),
            }
        }
        // A channel whose alert ended rejoins its schedule at its next round, at once.
        for w in wakes.try_iter() {
            let driver::Wake::AlertEnded(channel) = w else {
                continue;
            };
            for sim in &mut sims {
                if let Some(s) = sim.scheduler.as_mut().filter(|s| s.channel() == channel) {
                    s.alert_ended();
                    sim.woken = true;
                }
            }
        }
        let sim = &mut sims[k];
        if let Some(s) = &mut sim.scheduler {
            // As the daemon's scheduler: its looks on the grid, then, woken, one at once
            // whose message applies at once.
            let mut looks = Vec::new();
            if utc >= sim.next_round {
                let at = driver::round_instant(utc, start_utc_ns);
                sim.next_round = at.0 + driver::ROUND_NS;
                looks.push((at, true));
            }
            if std::mem::take(&mut sim.woken) {
                looks.push((playout::schedule::Utc(utc), false));
            }
            for (at, on_grid) in looks {
                let r = s.round(&store, &config.schedules.media_dir, sim.st.clock(), at);
                if let Some(mut msg) = r.msg {
                    if !on_grid {
                        msg.look_ns = None;
                    }
                    sim.st.handle_schedule(msg);
                }
            }
        }
        if !sim.closed && sim.st.mux().slot() >= sim.close_at {
            let mux = sim.st.mux_mut();
            let end = mux.slot_time(sim.total);
            let margin = (end - mux.now()) / 2;
            mux.close(end - margin);
            sim.closed = true;
        }
        while let Some(job) = sim.st.poll_io() {
            let done = match (job.live, job.req) {
                (Some(_), playout::splice::IoRequest::Open { item, .. }) => IoDone::OpenFailed {
                    item,
                    reason: "live inputs are not rendered".to_owned(),
                },
                (_, req) => sim.sources[job.program].perform(req, job.path.as_deref()),
            };
            sim.st.handle_io(job.program, done);
        }
        let mut posted = Vec::new();
        let index = running[k];
        while let Some(o) = sim.st.poll_output() {
            match o {
                Output::Air(r) => {
                    let _ = reports_tx.send(r);
                }
                Output::Eit { job, at } => {
                    if let Some(b) = eit.apply(index, job) {
                        sim.st.handle_built(b, at);
                    }
                }
                Output::Pf(pf) => posted.push(pf),
                // A render has no archive.
                Output::Boundary(_) => {}
                Output::Provision { .. } => {
                    if !warned_simulcrypt {
                        warned_simulcrypt = true;
                        tracing::warn!("render does not contact ECMGs: a SimulCrypt channel is scrambled with random words and carries no ECM");
                    }
                }
            }
        }
        let limit = if sim.closed {
            sim.total
        } else {
            sim.close_at.max(sim.st.mux().slot() + 1)
        };
        let mut want = (BATCH as u64).min(limit.saturating_sub(sim.st.mux().slot())) as usize;
        if sim.st.mux().slot() == 0 {
            want = want.min(EMIT_STEP);
        }
        if sim.scheduler.is_some() {
            // No further than the next look at the schedule: each look on the grid, once.
            let muxrate = u128::from(sim.st.mux().config().muxrate_bps);
            let to_round = ((sim.next_round - utc).max(0) as u128 * muxrate
                / (8 * PACKET_SIZE as u128 * 1_000_000_000)) as usize;
            want = want.min((to_round / EMIT_STEP + 1) * EMIT_STEP);
        }
        // An alert goes in at its instant (to the datagram), as it would on air.
        if let Some(a) = alerts.front() {
            let due = start_utc_ns + a.at.as_nanos() as i64;
            let ahead = ((due - utc).max(0) as u128 * u128::from(sim.st.mux().config().muxrate_bps)
                / (8 * PACKET_SIZE as u128 * 1_000_000_000)) as usize;
            want = want.min((ahead / EMIT_STEP + 1) * EMIT_STEP);
        }
        // Another station past its end keeps stuffing while the target finishes; only the
        // target's packets are kept, and written a megabyte or so at a time.
        let start = buf.len();
        sim.st
            .emit(&mut buf, if k == t { want } else { want.max(EMIT_STEP) });
        if k == t {
            stats.packets += want as u64;
            if buf.len() >= WRITE_BYTES {
                out.write_all(&buf)?;
                buf.clear();
            }
        } else {
            buf.truncate(start);
        }
        for pf in &posted {
            for (j, other) in sims.iter_mut().enumerate() {
                if j != k {
                    other.st.handle_peer(pf);
                }
            }
        }
    }
    if let Some(desk) = &desk {
        // The last on/off-air reports into the audit log.
        desk.tick(DateTime::<Utc>::from_timestamp_nanos(sims[t].st.utc_ns()));
    }
    for a in &alerts {
        tracing::warn!(file = %a.file.display(), at_s = a.at.as_secs_f64(), "alert after the end of the render: not replayed");
    }
    let sim = &sims[t];
    let ms = sim.st.mux().stats();
    let items = sim.st.items();
    stats.es_packets = ms.es_packets;
    stats.null_packets = ms.null_packets;
    stats.late_packets = ms.late_packets;
    stats.items_started = items.items_started;
    stats.items_failed = items.items_failed;
    stats.input_bytes = sim.sources.iter().map(FileSource::bytes_read).sum();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(stats)
}

/// A file source for each program of `spec`, none open yet.
fn file_sources(spec: &StationSpec) -> Vec<FileSource> {
    spec.channels
        .iter()
        .map(|_| FileSource::default())
        .collect()
}

/// The scheduler of station `index`, a channel with a schedule directory. One without plays
/// its playlist: unlike the daemon's, a simulated clock's schedule cannot appear half-way, so
/// it is not looked for every round.
fn scheduler_of(config: &Config, spec: &StationSpec, index: usize) -> Option<driver::State> {
    spec.single_channel()
        .filter(|ch| config.schedules.dir.join(&ch.id).is_dir())
        .map(|ch| driver::State::new(ScheduledChannel::of(index, ch)))
}

/// The guide of station `index` from its XMLTV file (`[channel.si] xmltv`), read once, if it
/// has one: what of it the station can use on air from `from_ns` to `to_ns` (UTC).
fn xmltv_guide(
    spec: &StationSpec,
    index: usize,
    (from_ns, to_ns): (i64, i64),
) -> anyhow::Result<Option<station::ScheduleMsg>> {
    let Some(c) = spec
        .single_channel()
        .and_then(|ch| crate::guide::XmltvChannel::of(index, ch))
    else {
        return Ok(None);
    };
    let events =
        crate::guide::read_xmltv(&c, c.window(from_ns, to_ns)).map_err(anyhow::Error::msg)?;
    Ok(Some(station::ScheduleMsg::guide(index, events)))
}

/// A station played on a simulated clock from its fleet origin, to join its peers in step
/// (`crate::fleet`, "deterministic output"): the same [`Station`], inputs read inline, the
/// scheduler looking at the schedule on the same grid of instants as the daemon's
/// ([`driver::round_instant`]), and nothing kept of the output. The engine then takes the
/// station, its open files and its scheduler's state over and paces it from where it is:
/// its next datagram is the one its peers send at that instant.
pub(crate) struct CaughtUp {
    pub(crate) st: Station,
    pub(crate) sources: Vec<FileSource>,
    /// The file each program has open.
    pub(crate) open_files: Vec<Option<PathBuf>>,
    /// The channel's scheduler (a channel with a schedule directory).
    pub(crate) scheduler: Option<driver::State>,
    next_round: i64,
    eit: EitBuilds,
    buf: BytesMut,
}

impl CaughtUp {
    /// Station `index` of `specs` whose output clock starts at UTC `origin_utc_ns`, before its
    /// first packet. Only a station that plays files (no live input, no SimulCrypt link)
    /// can be played again exactly.
    pub(crate) fn start(
        config: &Config,
        spec: &StationSpec,
        index: usize,
        network: &epg::carousel::NetworkSi,
        origin_utc_ns: i64,
    ) -> anyhow::Result<CaughtUp> {
        let clock = ClockMap::starting(origin_utc_ns, spec.mux.clock_origin);
        let mut st = Station::new(spec.plan(index, network, clock, spec.key_sources()?));
        // It plays from its origin up to now (the wall clock) and then on air.
        let now_ns = driver::now_utc().0.max(origin_utc_ns);
        if let Some(msg) = xmltv_guide(spec, index, (origin_utc_ns, now_ns))? {
            st.handle_schedule(msg);
        }
        Ok(CaughtUp {
            st,
            sources: file_sources(spec),
            open_files: vec![None; spec.channels.len()],
            scheduler: scheduler_of(config, spec, index),
            next_round: origin_utc_ns + 1,
            eit: EitBuilds::default(),
            buf: BytesMut::with_capacity(BATCH * PACKET_SIZE),
        })
    }

    /// The services' EIT schedules as played so far, as jobs registering them with the
    /// daemon's builder (which then goes on from them).
    pub(crate) fn eit_registrations(&self, services: &[u16]) -> Vec<epg::eit_cache::EitJob> {
        services
            .iter()
            .filter_map(|&service_id| {
                let schedule = self.eit.get(self.st.index(), service_id)?.clone();
                Some(epg::eit_cache::EitJob::Register {
                    service_id,
                    schedule: Box::new(schedule),
                })
            })
            .collect()
    }

    /// The channel's scheduler, to go on with its looks from where the play stopped.
    pub(crate) fn take_scheduler(&mut self) -> Option<driver::State> {
        let origin = self.st.clock().utc_at_origin_ns;
        let next = self.next_round;
        self.scheduler.take().map(|mut s| {
            s.resume_looks(origin, next);
            s
        })
    }

    /// Datagrams emitted so far.
    pub(crate) fn datagrams(&self) -> u64 {
        self.st.mux().slot() / EMIT_STEP as u64
    }

    /// Plays on until `datagrams` datagrams are out (whole datagrams, as on air), reading
    /// inputs from `store` and `media_dir` as the daemon would: whether it got there before
    /// `deadline`.
    pub(crate) fn advance(
        &mut self,
        store: &Store,
        media_dir: &Path,
        datagrams: u64,
        deadline: Instant,
    ) -> bool {
        let index = self.st.index();
        let total = datagrams * EMIT_STEP as u64;
        let muxrate = self.st.mux().config().muxrate_bps;
        let origin = self.st.clock().utc_at_origin_ns;
        let mut steps = 0u32;
        while self.st.mux().slot() < total {
            steps += 1;
            if steps % 256 == 0 && Instant::now() >= deadline {
                return false;
            }
            let utc = self.st.utc_ns();
            if let Some(s) = &mut self.scheduler {
                // Not before the first datagram (nor does the daemon's look before then).
                if utc >= self.next_round && self.st.mux().slot() > 0 {
                    let at = driver::round_instant(utc, origin);
                    self.next_round = at.0 + driver::ROUND_NS;
                    let r = s.round(store, media_dir, self.st.clock(), at);
                    if let Some(msg) = r.msg {
                        self.st.handle_schedule(msg);
                    }
                }
            }
            while let Some(job) = self.st.poll_io() {
                let done = match (job.live, job.req) {
                    (Some(_), playout::splice::IoRequest::Open { item, .. }) => {
                        IoDone::OpenFailed {
                            item,
                            reason: "live inputs are not played again".to_owned(),
                        }
                    }
                    (_, req) => {
                        if matches!(req, playout::splice::IoRequest::Open { .. }) {
                            if let Some(f) = self.open_files.get_mut(job.program) {
                                f.clone_from(&job.path);
                            }
                        }
                        match self.sources.get_mut(job.program) {
                            Some(src) => src.perform(req, job.path.as_deref()),
                            None => continue,
                        }
                    }
                };
                self.st.handle_io(job.program, done);
            }
            while let Some(o) = self.st.poll_output() {
                if let Output::Eit { job, at } = o {
                    if let Some(b) = self.eit.apply(index, job) {
                        self.st.handle_built(b, at);
                    }
                }
            }
            let slot = self.st.mux().slot();
            let mut want = (BATCH as u64).min(total - slot);
            if self.scheduler.is_some() && slot > 0 {
                // Up to the next look at the schedule, in whole datagrams.
                let to_round = (self.next_round - utc).max(0) as u128 * u128::from(muxrate)
                    / (8 * PACKET_SIZE as u128 * 1_000_000_000);
                let to_round = (to_round as u64 / EMIT_STEP as u64 + 1) * EMIT_STEP as u64;
                want = want.min(to_round);
            }
            if slot == 0 {
                want = want.min(EMIT_STEP as u64);
            }
            self.buf.clear();
            self.st.emit(&mut self.buf, want as usize);
        }
        true
    }
}

/// The `--alerts` file: alerts to replay, each `at` an offset from the start.
///
/// ```toml
/// [[alert]]
/// at = "20s"               # after --start
/// file = "typhoon.xml"     # CAP 1.2 XML or its JSON form, as it would be POSTed
/// key = "province.key"     # signed here with this key file (hectl alert keygen) ...
/// # key_id = "province"    # ... or sent with a signature made elsewhere:
/// # signature = "BASE64"   #     the X-Signature-Key and X-Signature headers
/// ```
/// Paths are relative to the alerts file.
pub(crate) fn load_alerts(path: &Path) -> anyhow::Result<Vec<ReplayAlert>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFile {
        #[serde(default)]
        alert: Vec<RawAlert>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawAlert {
        at: String,
        file: PathBuf,
        key: Option<PathBuf>,
        key_id: Option<String>,
        signature: Option<String>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: RawFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, a) in raw.alert.into_iter().enumerate() {
        let place = format!("{}: alert[{i}]", path.display());
        let at =
            crate::config::parse_duration(&a.at).map_err(|e| anyhow::anyhow!("{place}.at: {e}"))?;
        let file = dir.join(&a.file);
        let body = std::fs::read(&file)
            .with_context(|| format!("{place}.file: reading {}", file.display()))?;
        let (key_id, signature) = match (a.key, a.key_id, a.signature) {
            (Some(key), None, None) => {
                let key = dir.join(key);
                let text = std::fs::read_to_string(&key)
                    .with_context(|| format!("{place}.key: reading {}", key.display()))?;
                let kf = epg::alert::sign::KeyFile::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{place}.key: {}: {e}", key.display()))?;
                let sig = epg::alert::sign::encode_signature(&kf.key.sign(&body));
                (kf.id, sig)
            }
            (None, Some(id), Some(sig)) => (id, sig),
            _ => anyhow::bail!("{place}: give either `key`, or `key_id` and `signature`"),
        };
        out.push(ReplayAlert {
            at,
            file,
            body,
            key_id,
            signature,
        });
    }
    out.sort_by_key(|a| a.at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! `render_to`'s output paths: never damaged (see `outfile` for the rules).
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    const MUXRATE: u64 = 2_000_000;

    fn config(dir: &Path) -> Config {
        let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media/a.ts");
        let text = format!(
            "[schedules]\ndir = \"sched\"\n\n[[channel]]\nid = \"test\"\nservice_id = 101\n\
             name = \"Test\"\nprovider = \"Tests\"\nmuxrate = \"2M\"\nplaylist = [{:?}]\n\n\
             [[channel.output]]\nurl = \"udp://[ff15::101]:5000\"\ninterface = \"lo\"\n",
            clip.display().to_string()
        );
        crate::config::parse(&text, dir, "test.toml").unwrap()
    }

    /// Renders `secs` seconds of the one channel of [`config`] to `output`.
    fn render_secs(dir: &Path, output: &Path, secs: u64) -> anyhow::Result<RenderStats> {
        let cfg = config(dir);
        let job = RenderJob {
            specs: station::specs(&cfg),
            config: &cfg,
            target: 0,
            start_utc_ns: 1_800_000_000_000_000_000,
            duration: Duration::from_secs(secs),
            alerts: Vec::new(),
            audit_log: dir.join("audit.jsonl"),
        };
        render_to(job, output)
    }

    fn bytes_for(secs: u64) -> u64 {
        secs * MUXRATE / 8 / PACKET_SIZE as u64 * PACKET_SIZE as u64
    }

    /// The directory's entries, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_device_stays_a_device_and_a_fifo_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let stats = render_secs(dir.path(), Path::new("/dev/null"), 2).unwrap();
        assert_eq!(stats.packets * PACKET_SIZE as u64, bytes_for(2));
        let m = std::fs::metadata("/dev/null").unwrap();
        assert!(
            m.file_type().is_char_device(),
            "/dev/null is still a device"
        );
        // A FIFO with a reader: the whole stream comes through it.
        let fifo = dir.path().join("out.fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        render_secs(dir.path(), &fifo, 2).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len() as u64, bytes_for(2));
        assert_eq!(got[0], 0x47);
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(entries(dir.path()), vec!["out.fifo"], "no temporary left");
    }

    #[test]
    fn a_symlink_stays_a_link_and_the_file_it_names_gets_the_render() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("store");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("real.ts");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.ts");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        render_secs(dir.path(), &link, 2).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::metadata(&real).unwrap().len(), bytes_for(2));
        assert_eq!(entries(&real_dir), vec!["real.ts"]);
    }

    /// `-`: the stream on stdout, in a child process (the test re-runs itself).
    #[test]
    fn dash_is_stdout() {
        if let Some(dir) = std::env::var_os("HEADEND_RENDER_STDOUT_CHILD") {
            render_secs(Path::new(&dir), Path::new("-"), 2).unwrap();
            std::process::exit(0);
        }
        let dir = tempfile::tempdir().unwrap();
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "render::tests::dash_is_stdout", "--nocapture"])
            .env("HEADEND_RENDER_STDOUT_CHILD", dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The test harness's own lines come first.
        let n = bytes_for(2) as usize;
        assert!(o.stdout.len() >= n);
        let (harness, stream) = o.stdout.split_at(o.stdout.len() - n);
        assert!(
            stream.chunks(PACKET_SIZE).all(|p| p[0] == 0x47),
            "whole packets"
        );
        assert!(
            !harness.contains(&0x47),
            "{}",
            String::from_utf8_lossy(harness)
        );
        assert!(!dir.path().join("-").exists(), "no file named `-`");
    }

    /// A render that fails (the disk fills) or is killed leaves the file that was there,
    /// whole, and no temporary file.
    #[test]
    fn a_failed_or_interrupted_render_leaves_no_partial_file() {
        if let Some(out) = std::env::var_os("HEADEND_RENDER_KILL_CHILD") {
            let out = PathBuf::from(out);
            let dir = out.parent().unwrap().to_owned();
            let _ = render_secs(&dir, &out, 3600);
            std::process::exit(0);
        }
        // Killed part way: the old file stays as it was.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ts");
        std::fs::write(&out, b"the previous render").unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "render::tests::a_failed_or_interrupted_render_leaves_no_partial_file",
            ])
            .env("HEADEND_RENDER_KILL_CHILD", &out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Until it has written a few MB (its temporary file grows).
        let started = Instant::now();
        let written = || {
            entries(dir.path())
                .iter()
                .filter(|n| n.ends_with(".part"))
                .map(|n| std::fs::metadata(dir.path().join(n)).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        while written() < 4 << 20 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child wrote"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"the previous render");
        // (A killed process cannot remove its temporary file: it is hidden, and named.)
        // The disk fills part way: an error naming the output, the old file, no temporary.
        let Some(small) = crate::alarm::SmallDisk::mount(1 << 20) else {
            return;
        };
        let out = small.path().join("out.ts");
        std::fs::write(&out, b"the previous render").unwrap();
        let e = render_secs(dir.path(), &out, 10).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(&out.display().to_string()), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        assert_eq!(std::fs::read(&out).unwrap(), b"the previous render");
        assert_eq!(entries(small.path()), vec!["out.ts"]);
    }
}
