//! The stoppage record (停播记录): an append-only, fsynced journal of what happened to each
//! channel on air — stoppages (no programme: all inputs lost, underflow, filler because of a
//! fault, the head-end not running), degradations (TR 101 290 priority 1/2 errors on the
//! output), failovers, overrides (emergency alerts) and manual actions — each with its
//! channel, start and end in UTC and local time, cause, what was on air before and after, and
//! who acted. `GET /api/report` and `hectl report` make GY/T 264 style figures from it
//! ([`report`]); [`hooks`] POSTs every line to the configured webhooks.
//!
//! Producers (engine threads, the scheduler, the alert desk, the API) hand a [`Mark`] to the
//! [`Journal`] without waiting: a bounded queue to one writer thread, which pairs each end
//! with its start, writes one JSON line per edge and fsyncs it. A full queue drops the mark
//! and counts it; a failed write (a full or failing disk) is an alarm (`/health`,
//! `/metrics`), keeps the lines in memory (bounded) and retries every second; what a failed
//! write left of a line is cut off, so the file only ever holds whole lines.
//!
//! Line format (`docs/record.md`): `{"id":7,"phase":"start","event":"stoppage",
//! "channel":"news","place":"input","subject":"relay","utc":…,"local":…,"cause":…,
//! "on_air":…}` and later `{"id":7,"phase":"end",…,"duration_s":12.3}`; `instant` for
//! events without duration; `event` `run` for the head-end's own start and stop.

pub(crate) mod hooks;
pub(crate) mod report;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use epg::schedule::Tz;
use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// No programme on air (停播).
    Stoppage,
    /// Errors on the output (劣播).
    Degradation,
    /// A backup input on air in place of the preferred one.
    Failover,
    /// An emergency alert in place of the programme.
    Override,
    /// An operator's action.
    Manual,
    /// The head-end itself running.
    Run,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Stoppage => "stoppage",
            Kind::Degradation => "degradation",
            Kind::Failover => "failover",
            Kind::Override => "override",
            Kind::Manual => "manual",
            Kind::Run => "run",
        }
    }
}

/// An edge of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Start,
    End,
    Instant,
}

/// One edge of an event, as a producer reports it.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub(crate) phase: Phase,
    pub(crate) kind: Kind,
    pub(crate) channel: String,
    /// Where it happened (故障部位): `input`, `media`, `mux`, `output`, `head-end`,
    /// `operator`, `alert`.
    pub(crate) place: &'static str,
    /// What in the channel it is about: a start and its end share kind, channel, place and
    /// subject.
    pub(crate) subject: String,
    /// When (`None`: when the journal is handed it, so the sans-IO station core never reads
    /// a clock).
    pub(crate) at: Option<DateTime<Utc>>,
    /// Why (a start, an instant), or how it ended (an end).
    pub(crate) cause: String,
    /// What was on air before (a start) or is after (an end).
    pub(crate) on_air: Option<String>,
    /// Who acted (an operator, an alert's sender); the head-end when `None`.
    pub(crate) actor: Option<String>,
    /// Anything else (counts by rule, an alert's identifier).
    pub(crate) detail: Option<Value>,
}

impl Mark {
    fn new(
        phase: Phase,
        kind: Kind,
        channel: &str,
        place: &'static str,
        subject: &str,
        cause: impl Into<String>,
    ) -> Mark {
        Mark {
            phase,
            kind,
            channel: channel.to_owned(),
            place,
            subject: subject.to_owned(),
            at: None,
            cause: cause.into(),
            on_air: None,
            actor: None,
            detail: None,
        }
    }

    /// An event starts now.
    pub(crate) fn start(
        kind: Kind,
        channel: &str,
        place: &'static str,
        subject: &str,
        cause: impl Into<String>,
    ) -> Mark {
        Mark::new(Phase::Start, kind, channel, place, subject, cause)
    }

    /// The event started with the same kind, channel, place and subject ends now.
    pub(crate) fn end(
        kind: Kind,
        channel: &str,
        place: &'static str,
        subject: &str,
        cause: impl Into<String>,
    ) -> Mark {
        Mark::new(Phase::End, kind, channel, place, subject, cause)
    }

    /// An event without duration, now.
    pub(crate) fn instant(
        kind: Kind,
        channel: &str,
        place: &'static str,
        subject: &str,
        cause: impl Into<String>,
    ) -> Mark {
        Mark::new(Phase::Instant, kind, channel, place, subject, cause)
    }

    pub(crate) fn at(mut self, at: DateTime<Utc>) -> Mark {
        self.at = Some(at);
        self
    }

    /// Its instant (set by then: [`Journal::mark`] fills it in).
    fn when(&self) -> DateTime<Utc> {
        self.at.unwrap_or(DateTime::UNIX_EPOCH)
    }

    pub(crate) fn on_air(mut self, what: Option<String>) -> Mark {
        self.on_air = what;
        self
    }

    pub(crate) fn actor(mut self, who: Option<String>) -> Mark {
        self.actor = who;
        self
    }

    pub(crate) fn detail(mut self, detail: Value) -> Mark {
        self.detail = Some(detail);
        self
    }
}

/// How many marks wait for the writer at most; beyond, marks are dropped and counted.
const QUEUE: usize = 4096;
/// How many lines a failing disk may leave in memory; beyond, the oldest go (counted).
const PENDING_MAX: usize = 100_000;
/// How often the writer retries a failed write, and notes that the head-end is alive.
const RETRY: Duration = Duration::from_secs(1);
const ALIVE_EVERY: Duration = Duration::from_secs(5);

/// The journal's health, for `/health` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct JournalHealth {
    pub(crate) file: String,
    /// Why the journal cannot be written now (a full or failing disk), if it cannot.
    pub(crate) alarm: Option<String>,
    pub(crate) lines_written: u64,
    pub(crate) write_errors: u64,
    /// Lines held in memory until the disk takes them.
    pub(crate) pending: u64,
    /// Marks or lines lost (queue full, memory bound reached).
    pub(crate) dropped: u64,
    /// Events open now, by kind.
    pub(crate) open: std::collections::BTreeMap<String, u64>,
}

/// How many of the last lines the journal keeps in memory for the operator's page.
const SHOWN: usize = 50;

/// What the operator's page shows of the journal: its last lines (newest first) and the
/// start lines of the events open now.
#[derive(Debug, Default)]
struct Shown {
    recent: VecDeque<Value>,
    open: std::collections::BTreeMap<u64, Value>,
}

enum Msg {
    Mark(Box<Mark>),
    Stop(String, SyncSender<()>),
}

/// A handle on the journal: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct Journal {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    health: Arc<Mutex<JournalHealth>>,
    shown: Arc<Mutex<Shown>>,
    path: Option<PathBuf>,
}

impl Journal {
    /// A journal that records nothing (`headend render`, unit tests).
    pub(crate) fn none() -> Journal {
        Journal {
            tx: None,
            dropped: Arc::default(),
            health: Arc::default(),
            shown: Arc::default(),
            path: None,
        }
    }

    /// Opens the journal at `path` for `channels` (id, time zone) and starts its writer.
    /// What the last run left open is closed where it was last alive, and each channel of
    /// that run gets a stoppage for the time the head-end was not running. A journal that
    /// cannot be opened is an alarm, not an error: the writer keeps trying.
    pub(crate) fn start(
        path: &Path,
        channels: &[(String, Tz)],
        hooks: Option<hooks::Hooks>,
    ) -> std::io::Result<Journal> {
        let (lines, torn_end) = crate::jsonl::read(path, "stoppage record");
        let past = Past::of(&lines, alive_file(path).as_deref());
        let file = crate::jsonl::open_append(path, torn_end);
        let zone = channels.first().map_or(Tz::UTC, |c| c.1);
        let mut w = Writer {
            path: path.to_owned(),
            file: None,
            zones: channels.iter().cloned().collect(),
            zone,
            next_id: past.max_id + 1,
            open: HashMap::new(),
            pending: VecDeque::new(),
            hooks,
            health: Arc::new(Mutex::new(JournalHealth {
                file: path.display().to_string(),
                ..JournalHealth::default()
            })),
            dropped: Arc::default(),
            shown: Arc::default(),
            last_alive: None,
            failing: false,
            run_id: None,
        };
        match file {
            Ok(f) => w.file = Some(f),
            Err(e) => w.fail(&e),
        }
        let now = Utc::now();
        w.restart(&past, channels, now);
        w.flush();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let journal = Journal {
            tx: Some(tx),
            dropped: w.dropped.clone(),
            health: w.health.clone(),
            shown: w.shown.clone(),
            path: Some(path.to_owned()),
        };
        // A panic costs the marks being taken (the writer goes on with the rest).
        crate::supervise::spawn_restarting("record".into(), "record", move || w.run(&rx))?;
        Ok(journal)
    }

    /// Hands `mark` to the writer; never waits (a full queue drops it, counted).
    pub(crate) fn mark(&self, mut mark: Mark) {
        let Some(tx) = &self.tx else { return };
        mark.at.get_or_insert_with(Utc::now);
        match tx.try_send(Msg::Mark(Box::new(mark))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    tracing::error!("stoppage record: queue full, an event was dropped");
                }
            }
        }
    }

    /// The orderly stop: what is open ends now, the run ends with `why`; waits up to 2 s.
    pub(crate) fn stop(&self, why: &str) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if tx.send(Msg::Stop(why.to_owned(), done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(2));
        }
    }

    /// The journal's health now.
    pub(crate) fn health(&self) -> JournalHealth {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        h.dropped += self.dropped.load(Ordering::Relaxed);
        h
    }

    /// The last lines written (at most 50, newest first), and the start lines of the events
    /// open now (oldest first): what the operator's page shows.
    pub(crate) fn shown(&self) -> (Vec<Value>, Vec<Value>) {
        let s = self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            s.recent.iter().cloned().collect(),
            s.open.values().cloned().collect(),
        )
    }

    /// The journal's file, if it has one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Where the writer notes that the head-end is alive (every 5 s): how a restart after a
/// crash knows when the channels went off air.
fn alive_file(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some(path.with_file_name(format!(".{name}.alive")))
}

/// A run: its id, its channels, and its orderly end (instant, why) if it had one.
type LastRun = (u64, Vec<String>, Option<(DateTime<Utc>, String)>);

/// What the journal says of the runs before this one.
#[derive(Debug, Default)]
struct Past {
    max_id: u64,
    /// Events started and not ended: (kind, channel, place, subject, id).
    open: Vec<(Value, u64)>,
    /// The last run: its id, its channels, and its orderly end (instant, why) if it had one.
    last_run: Option<LastRun>,
    /// The last instant anything was known to be on air.
    last_seen: Option<DateTime<Utc>>,
}

impl Past {
    fn of(lines: &[(usize, Value)], alive: Option<&Path>) -> Past {
        let mut past = Past::default();
        let mut open: HashMap<u64, Value> = HashMap::new();
        for (_, v) in lines {
            let id = v.get("id").and_then(Value::as_u64).unwrap_or(0);
            past.max_id = past.max_id.max(id);
            let at = v.get("utc").and_then(Value::as_str).and_then(parse_utc);
            if let Some(at) = at {
                past.last_seen = Some(past.last_seen.map_or(at, |l| l.max(at)));
            }
            let phase = v.get("phase").and_then(Value::as_str);
            let run = v.get("event").and_then(Value::as_str) == Some("run");
            match (phase, run) {
                (Some("start"), true) => {
                    let channels = v
                        .pointer("/detail/channels")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    past.last_run = Some((id, channels, None));
                }
                (Some("end"), true) => {
                    if let (Some(run), Some(at)) =
                        (past.last_run.as_mut().filter(|r| r.0 == id), at)
                    {
                        let why = v
                            .get("cause")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        run.2 = Some((at, why));
                    }
                }
                (Some("start"), false) => {
                    open.insert(id, v.clone());
                }
                (Some("end"), false) => {
                    open.remove(&id);
                }
                _ => {}
            }
        }
        let alive_at = alive
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_utc(t.trim()));
        if let Some(a) = alive_at {
            past.last_seen = Some(past.last_seen.map_or(a, |l| l.max(a)));
        }
        let mut open: Vec<(Value, u64)> = open.into_iter().map(|(id, v)| (v, id)).collect();
        open.sort_by_key(|(_, id)| *id);
        past.open = open;
        past
    }
}

pub(crate) fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

type Key = (Kind, String, &'static str, String);

struct Writer {
    path: PathBuf,
    file: Option<File>,
    zones: HashMap<String, Tz>,
    zone: Tz,
    next_id: u64,
    /// Open events: their id, start and what was on air before.
    open: HashMap<Key, (u64, DateTime<Utc>)>,
    /// Lines not yet on disk, oldest first.
    pending: VecDeque<String>,
    hooks: Option<hooks::Hooks>,
    health: Arc<Mutex<JournalHealth>>,
    dropped: Arc<AtomicU64>,
    shown: Arc<Mutex<Shown>>,
    last_alive: Option<Instant>,
    failing: bool,
    /// This run's id and start.
    run_id: Option<(u64, DateTime<Utc>)>,
}

impl Writer {
    /// The start of a run: what the last one left is closed, its channels' time off air is
    /// a stoppage, and this run starts.
    fn restart(&mut self, past: &Past, channels: &[(String, Tz)], now: DateTime<Utc>) {
        let orderly = past.last_run.as_ref().and_then(|r| r.2.clone());
        let went_off = orderly.as_ref().map(|o| o.0).or(past.last_seen);
        if let Some(off) = went_off {
            for (start, id) in &past.open {
                let mut end = start.as_object().cloned().unwrap_or_default();
                end.insert("phase".into(), "end".into());
                let started = start.get("utc").and_then(Value::as_str).and_then(parse_utc);
                let secs =
                    started.map_or(0.0, |s| (off - s).num_milliseconds().max(0) as f64 / 1000.0);
                self.stamp(&mut end, off);
                end.insert("duration_s".into(), secs.into());
                end.insert(
                    "cause".into(),
                    "the head-end stopped without an orderly stop; closed at its restart".into(),
                );
                end.remove("on_air");
                end.remove("detail");
                end.insert("id".into(), (*id).into());
                self.push(Value::Object(end));
            }
            if let Some((id, channels, end)) = &past.last_run {
                if end.is_none() {
                    let m = Mark::end(
                        Kind::Run,
                        "*",
                        "head-end",
                        "",
                        "no orderly stop (crash, kill or power loss)",
                    )
                    .at(off);
                    self.line(*id, "end", &m, None);
                }
                let cause = match &orderly {
                    Some((_, why)) => format!("the head-end was stopped ({why}) and not running"),
                    None => {
                        "the head-end was not running (no orderly stop: crash, kill or power loss)"
                            .to_owned()
                    }
                };
                if now > off {
                    for ch in channels {
                        let id = self.next_id();
                        let m =
                            Mark::start(Kind::Stoppage, ch, "head-end", "", cause.clone()).at(off);
                        self.line(id, "start", &m, None);
                        let m =
                            Mark::end(Kind::Stoppage, ch, "head-end", "", "the head-end started")
                                .at(now);
                        self.line_end(id, off, &m);
                    }
                }
            }
        }
        let id = self.next_id();
        let names: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
        let m = Mark::start(Kind::Run, "*", "head-end", "", "started")
            .at(now)
            .detail(serde_json::json!({
                "channels": names,
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
            }));
        self.line(id, "start", &m, None);
        self.run_id = Some((id, now));
    }

    fn stamp(&self, o: &mut Map<String, Value>, at: DateTime<Utc>) {
        let channel = o.get("channel").and_then(Value::as_str).unwrap_or("");
        let tz = self.zones.get(channel).copied().unwrap_or(self.zone);
        o.insert(
            "utc".into(),
            at.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        o.insert(
            "local".into(),
            at.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Millis, false)
                .into(),
        );
    }

    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut last_retry = Instant::now();
        loop {
            match rx.recv_timeout(RETRY) {
                Ok(Msg::Mark(m)) => {
                    self.take(*m);
                    // Whatever else is waiting, then one flush (one fsync) for them all.
                    while let Ok(msg) = rx.try_recv() {
                        match msg {
                            Msg::Mark(m) => self.take(*m),
                            Msg::Stop(why, done) => {
                                self.stop(&why);
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                    if !self.failing || last_retry.elapsed() >= RETRY {
                        last_retry = Instant::now();
                        self.flush();
                    }
                }
                Ok(Msg::Stop(why, done)) => {
                    self.stop(&why);
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    last_retry = Instant::now();
                    self.flush();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            self.alive();
        }
    }

    /// The orderly stop.
    fn stop(&mut self, why: &str) {
        let now = Utc::now();
        let mut open: Vec<(Key, (u64, DateTime<Utc>))> = self.open.drain().collect();
        open.sort_by_key(|(_, (id, _))| *id);
        for ((kind, channel, place, subject), (id, started)) in open {
            let mut m = Mark::end(
                kind,
                &channel,
                place,
                &subject,
                format!("the head-end stopped ({why})"),
            );
            m.at = Some(now);
            self.line_end(id, started, &m);
        }
        let run = Mark::end(Kind::Run, "*", "head-end", "", why).at(now);
        if let Some((id, started)) = self.run_id {
            self.line_end(id, started, &run);
        }
        self.flush();
        self.alive_now(now);
    }

    fn take(&mut self, m: Mark) {
        crate::supervise::chaos(|| "record".to_owned());
        let key: Key = (m.kind, m.channel.clone(), m.place, m.subject.clone());
        match m.phase {
            Phase::Start => {
                if self.open.contains_key(&key) {
                    return;
                }
                let id = self.next_id();
                self.open.insert(key, (id, m.when()));
                self.line(id, "start", &m, None);
            }
            Phase::End => {
                if let Some((id, started)) = self.open.remove(&key) {
                    self.line_end(id, started, &m);
                }
            }
            Phase::Instant => {
                let id = self.next_id();
                self.line(id, "instant", &m, None);
            }
        }
        self.note_open();
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn line_end(&mut self, id: u64, started: DateTime<Utc>, m: &Mark) {
        let secs = (m.when() - started).num_milliseconds().max(0) as f64 / 1000.0;
        self.line(id, "end", m, Some(secs));
    }

    fn line(&mut self, id: u64, phase: &str, m: &Mark, duration_s: Option<f64>) {
        let mut o = Map::new();
        o.insert("id".into(), id.into());
        o.insert("phase".into(), phase.into());
        o.insert("event".into(), m.kind.name().into());
        o.insert("channel".into(), m.channel.clone().into());
        o.insert("place".into(), m.place.into());
        if !m.subject.is_empty() {
            o.insert("subject".into(), m.subject.clone().into());
        }
        self.stamp(&mut o, m.when());
        if let Some(d) = duration_s {
            o.insert("duration_s".into(), d.into());
        }
        o.insert("cause".into(), m.cause.clone().into());
        if let Some(a) = &m.on_air {
            o.insert("on_air".into(), a.clone().into());
        }
        o.insert(
            "actor".into(),
            m.actor
                .clone()
                .unwrap_or_else(|| "head-end".to_owned())
                .into(),
        );
        if let Some(d) = &m.detail {
            o.insert("detail".into(), d.clone());
        }
        let v = Value::Object(o);
        if m.kind != Kind::Run {
            let mut shown = self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match phase {
                "start" => {
                    shown.open.insert(id, v.clone());
                }
                "end" => {
                    shown.open.remove(&id);
                }
                _ => {}
            }
        }
        self.push(v);
    }

    /// Queues one line for the disk, and hands it to the webhooks.
    fn push(&mut self, v: Value) {
        if let Some(h) = &self.hooks {
            h.send(&v);
        }
        {
            let mut shown = self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shown.recent.push_front(v.clone());
            shown.recent.truncate(SHOWN);
        }
        if self.pending.len() >= PENDING_MAX {
            self.pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let mut text = v.to_string();
        text.push('\n');
        self.pending.push_back(text);
    }

    /// Writes what is pending, each line whole and fsynced; on failure what the failed write
    /// left is cut off, the rest waits, and the alarm is raised.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.file.is_none() {
            match crate::jsonl::open_append(&self.path, false) {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.fail(&e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut written = 0u64;
        let mut error = None;
        // One fsync for all: on failure every line since the last good length goes.
        let good = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return self.fail(&e),
        };
        let mut text = String::new();
        for l in &self.pending {
            text.push_str(l);
        }
        match file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
        {
            Ok(()) => written = self.pending.len() as u64,
            Err(e) => {
                // Cut what the failed write left: the file holds only whole lines.
                let _ = file.set_len(good);
                error = Some(e);
            }
        }
        if let Some(e) = error {
            return self.fail(&e);
        }
        self.pending.clear();
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.lines_written += written;
        h.pending = 0;
        if self.failing {
            self.failing = false;
            h.alarm = None;
            tracing::warn!(file = %self.path.display(), "stoppage record: writable again; the lines held were written");
        }
    }

    fn fail(&mut self, e: &std::io::Error) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.write_errors += 1;
        h.pending = self.pending.len() as u64;
        let alarm = format!(
            "cannot write the stoppage record {}: {e}; {} line(s) held in memory",
            self.path.display(),
            self.pending.len()
        );
        if !self.failing {
            tracing::error!(file = %self.path.display(), error = %e, "stoppage record: cannot write; lines are held in memory and retried every second");
        }
        h.alarm = Some(alarm);
        self.failing = true;
        // A file handle on a disk that failed may stay bad: reopen on the next try.
        self.file = None;
    }

    fn note_open(&self) {
        let mut by_kind = std::collections::BTreeMap::new();
        for (k, _, _, _) in self.open.keys() {
            *by_kind.entry(k.name().to_owned()).or_insert(0) += 1;
        }
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .open = by_kind;
    }

    fn alive(&mut self) {
        if self.last_alive.is_some_and(|t| t.elapsed() < ALIVE_EVERY) {
            return;
        }
        self.alive_now(Utc::now());
    }

    fn alive_now(&mut self, now: DateTime<Utc>) {
        self.last_alive = Some(Instant::now());
        let Some(p) = alive_file(&self.path) else {
            return;
        };
        // Written whole or not at all (a rename); a failure only loses precision after a
        // crash.
        let tmp = p.with_extension("tmp");
        let stamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let _ = std::fs::write(&tmp, stamp).and_then(|()| std::fs::rename(&tmp, &p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<Value> {
        crate::jsonl::read(path, "test")
            .0
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn wait_for(path: &Path, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let l = lines(path);
            if l.len() >= n {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        lines(path)
    }

    #[test]
    fn edges_pair_stops_close_and_restarts_record_the_time_off_air() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec/record.jsonl");
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let chans = vec![("news".to_owned(), tz)];
        let j = Journal::start(&path, &chans, None).unwrap();
        let t0 = Utc::now() - chrono::TimeDelta::seconds(10);
        j.mark(
            Mark::start(
                Kind::Failover,
                "news",
                "input",
                "relay",
                "input failed: no data",
            )
            .at(t0)
            .on_air(Some("main".into())),
        );
        // Twice: the second start of the same event is ignored.
        j.mark(Mark::start(Kind::Failover, "news", "input", "relay", "again").at(t0));
        j.mark(
            Mark::end(Kind::Failover, "news", "input", "relay", "restored")
                .at(t0 + chrono::TimeDelta::seconds(4))
                .on_air(Some("main".into())),
        );
        // An end with no start is ignored.
        j.mark(Mark::end(Kind::Stoppage, "news", "media", "", "nothing"));
        j.mark(Mark::start(
            Kind::Stoppage,
            "news",
            "media",
            "",
            "a.ts: truncated",
        ));
        let l = wait_for(&path, 4);
        assert_eq!(l.len(), 4, "{l:#?}");
        assert_eq!(l[1]["phase"], "start");
        assert_eq!(l[1]["cause"], "input failed: no data");
        assert_eq!(l[1]["on_air"], "main");
        assert!(l[1]["local"].as_str().unwrap().ends_with("+08:00"));
        assert_eq!(l[2]["id"], l[1]["id"]);
        assert_eq!(l[2]["duration_s"], 4.0);
        // The orderly stop closes what is open and the run.
        j.stop("SIGTERM");
        let l = lines(&path);
        assert_eq!(l.len(), 6, "{l:#?}");
        assert_eq!(l[4]["cause"], "the head-end stopped (SIGTERM)");
        assert_eq!(
            (&l[5]["event"], &l[5]["phase"]),
            (&"run".into(), &"end".into())
        );
        // A restart: the time off air is a stoppage; then a run that ends without a stop (a
        // crash: the writer just goes), with an event left open.
        let j = Journal::start(&path, &chans, None).unwrap();
        j.mark(Mark::start(
            Kind::Degradation,
            "news",
            "output",
            "tr101290",
            "CC",
        ));
        let l = wait_for(&path, 10);
        assert_eq!(
            l[6]["cause"], "the head-end was stopped (SIGTERM) and not running",
            "{l:#?}"
        );
        assert_eq!(l[7]["phase"], "end");
        drop(j);
        std::thread::sleep(Duration::from_millis(1200));
        let _j = Journal::start(&path, &chans, None).unwrap();
        let l = lines(&path);
        let tail: Vec<(&str, &str, &str)> = l[10..]
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap(),
                    v["phase"].as_str().unwrap(),
                    v["cause"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            tail,
            vec![
                (
                    "degradation",
                    "end",
                    "the head-end stopped without an orderly stop; closed at its restart"
                ),
                ("run", "end", "no orderly stop (crash, kill or power loss)"),
                (
                    "stoppage",
                    "start",
                    "the head-end was not running (no orderly stop: crash, kill or power loss)"
                ),
                ("stoppage", "end", "the head-end started"),
                ("run", "start", "started"),
            ],
            "{l:#?}"
        );
        // Ids go on from the file's.
        let ids: std::collections::BTreeSet<u64> = l
            .iter()
            .filter(|v| v["phase"] != "end")
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), l.iter().filter(|v| v["phase"] != "end").count());
    }

    #[test]
    fn a_failed_write_is_an_alarm_and_leaves_no_partial_line() {
        // /dev/full: every write fails with ENOSPC.
        let j = Journal::start(Path::new("/dev/full"), &[], None).unwrap();
        j.mark(Mark::instant(Kind::Manual, "x", "operator", "", "test"));
        std::thread::sleep(Duration::from_millis(300));
        let h = j.health();
        assert!(
            h.alarm.as_deref().unwrap_or("").contains("No space left"),
            "{h:?}"
        );
        assert!(h.pending >= 1 && h.write_errors >= 1, "{h:?}");
    }
}
