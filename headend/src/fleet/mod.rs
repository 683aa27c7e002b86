//! Fleet mode (`[fleet]`): head-ends that share their channels through etcd.
//!
//! Each node registers `{prefix}nodes/{node}` under its lease. Each channel (station) has at
//! most one owner, `{prefix}owners/{channel}` = the owner's name, held under the owner's lease
//! and created only where absent (a transaction), so one node sends a channel. Every node
//! places the channels over the live nodes that are not drained ([`place`]: the same answer
//! on every node) and claims the unowned ones placed on it; one it owns but placed elsewhere
//! (a drain, a node that joined) it stops sending and gives up. A dead node's keys go when
//! the others see its process end ([`watch`]: they revoke its lease) or when its lease
//! expires, and the channels' next choices claim them.
//!
//! Fencing: the engine sends a station only while its gate is open ([`Gates`]). The agent
//! opens an owned station's gate until the instant its lease is known valid to, less a
//! margin: the keep-alive's send time plus the TTL etcd answered. A node cut off from etcd
//! therefore stops sending before its lease can have expired and another node claimed the
//! channel, so two nodes never send one channel.
//!
//! `{prefix}drain/{node}` (no lease; `hectl fleet drain`) keeps a node's registration but
//! places nothing on it.

pub(crate) mod alerts;
pub(crate) mod etcd;
pub(crate) mod locks;
pub(crate) mod origins;
pub(crate) mod place;
pub(crate) mod schedules;
pub(crate) mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::FleetConfig;
use etcd::{Etcd, Kv};

/// How often the agent reads etcd.
const TICK: Duration = Duration::from_millis(100);

/// Each station's send gate: open until an instant on one monotonic clock (ms since
/// `epoch`). Without a fleet every gate stays open.
#[derive(Debug)]
pub(crate) struct Gates {
    epoch: Instant,
    until_ms: Vec<AtomicU64>,
    /// Whether this node keeps each station warm (it owns it, is about to, or is one of its
    /// standbys) rather than dormant. All warm until the agent has placed them.
    warm: Vec<AtomicBool>,
    /// Whether the fleet plays each station from an origin other than this node's (set by
    /// the engine for an origin of its own, then by the agent both ways; the engine treats
    /// the station as in step only while it is not).
    stepless: Vec<AtomicBool>,
}

impl Gates {
    /// `n` gates, all open (no fleet) or all shut.
    pub(crate) fn new(n: usize, open: bool) -> Gates {
        let v = if open { u64::MAX } else { 0 };
        Gates {
            epoch: Instant::now(),
            until_ms: (0..n).map(|_| AtomicU64::new(v)).collect(),
            warm: (0..n).map(|_| AtomicBool::new(true)).collect(),
            stepless: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Whether the fleet plays station `i` from another origin than this node does.
    pub(crate) fn stepless(&self, i: usize) -> bool {
        self.stepless
            .get(i)
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Marks station `i` as played from another origin than the fleet's (`true`), or from
    /// the fleet's again.
    pub(crate) fn set_stepless(&self, i: usize, stepless: bool) {
        if let Some(s) = self.stepless.get(i) {
            s.store(stepless, Ordering::Relaxed);
        }
    }

    /// Whether station `i` is kept warm on this node: muxed in real time and listening to
    /// its owner, ready to take over without a gap. Otherwise it is dormant.
    pub(crate) fn warm(&self, i: usize) -> bool {
        self.warm.get(i).is_none_or(|w| w.load(Ordering::Relaxed))
    }

    fn set_warm(&self, i: usize, warm: bool) {
        if let Some(w) = self.warm.get(i) {
            w.store(warm, Ordering::Relaxed);
        }
    }

    /// Whether station `i` may send at `now`.
    pub(crate) fn open(&self, i: usize, now: Instant) -> bool {
        let until = self
            .until_ms
            .get(i)
            .map_or(u64::MAX, |g| g.load(Ordering::Acquire));
        until == u64::MAX || (now.saturating_duration_since(self.epoch).as_millis() as u64) < until
    }

    fn set(&self, i: usize, until: Option<Instant>) {
        let ms = until.map_or(0, |t| {
            t.saturating_duration_since(self.epoch).as_millis() as u64
        });
        if let Some(g) = self.until_ms.get(i) {
            g.store(ms, Ordering::Release);
        }
    }
}

/// A station as the fleet places it.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    pub(crate) id: String,
    pub(crate) prefer: Vec<String>,
}

/// The stations of `specs` as the fleet places them (in engine order): a channel of its own
/// with its `prefer` list, an MPTS with none.
pub(crate) fn placed(specs: &[crate::station::StationSpec]) -> Vec<Placed> {
    specs
        .iter()
        .map(|s| Placed {
            id: s.id.clone(),
            prefer: s
                .single_channel()
                .map(|c| c.prefer.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// What a node registers.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub(crate) capacity: usize,
    /// Its API, for `hectl --server`.
    #[serde(default)]
    pub(crate) api: String,
    /// Media files its channels name that it does not have (at its start): it cannot play
    /// them should it take those channels over.
    #[serde(default)]
    pub(crate) missing_media: Vec<String>,
    /// Channels it plays but not in step with the fleet (their origin too old, not caught
    /// up at its start, or not replayable: live inputs, SimulCrypt): a takeover by it starts
    /// a new stream. Known once its engine has started.
    #[serde(default)]
    pub(crate) out_of_step: Vec<String>,
    /// Its beacon (`HOST:PORT`), which the other nodes keep a connection to ([`watch`]):
    /// empty without one.
    #[serde(default)]
    pub(crate) watch: String,
}

/// The fleet as this node last saw it (`GET /api/fleet`).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct View {
    pub(crate) node: String,
    /// Whether the last read of etcd succeeded.
    pub(crate) connected: bool,
    /// Whether this node's lease is known valid now (it may send).
    pub(crate) lease_valid: bool,
    pub(crate) nodes: Vec<NodeView>,
    pub(crate) channels: Vec<ChannelView>,
    /// When it was read (RFC 3339).
    pub(crate) at: String,
    /// The last error, if the last step failed.
    pub(crate) error: Option<String>,
    /// This node's calls to etcd since it started, by kind (`lease/keepalive`, `kv/range`,
    /// `kv/txn`, ...).
    pub(crate) etcd_calls: std::collections::BTreeMap<String, u64>,
    /// Connections it opened to etcd (one is kept between calls while etcd keeps it).
    pub(crate) etcd_connections: u64,
    /// Channels this node claimed (began to send) since it started.
    pub(crate) channels_taken: u64,
    /// Other nodes whose process this node saw end through their beacons (their leases then
    /// revoked) since it started.
    pub(crate) peer_deaths: u64,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct NodeView {
    pub(crate) name: String,
    pub(crate) capacity: usize,
    pub(crate) api: String,
    pub(crate) drained: bool,
    /// Channels it owns (sends).
    pub(crate) owns: usize,
    /// Media files its channels need that it lacks.
    pub(crate) missing_media: Vec<String>,
    /// Channels it plays not in step ([`NodeInfo::out_of_step`]).
    pub(crate) out_of_step: Vec<String>,
    /// Its beacon ([`NodeInfo::watch`]; empty: none, its death is seen when its lease ends).
    pub(crate) watch: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChannelView {
    pub(crate) id: String,
    /// Who sends it (holds its owner key).
    pub(crate) owner: Option<String>,
    /// Where placement puts it.
    pub(crate) placed: Option<String>,
    /// The nodes that keep it warm (`[fleet] standbys`), in takeover order: each muxes it in
    /// real time and listens to the owner, so a takeover by it continues the stream without
    /// a gap.
    pub(crate) standbys: Vec<String>,
    /// The other nodes, which keep it dormant: muxed in bulk, in step but sending and
    /// listening to nothing; a takeover by one continues the stream after a gap.
    pub(crate) dormant: Vec<String>,
    /// Of the nodes other than the owner, those not in step: a takeover by one starts a new
    /// stream (the others continue the owner's).
    pub(crate) not_in_step: Vec<String>,
}

/// The running agent.
pub(crate) struct Fleet {
    pub(crate) gates: Arc<Gates>,
    pub(crate) view: Arc<RwLock<View>>,
    cfg: FleetConfig,
    /// The schedule store, once shared ([`Fleet::share_schedules`]).
    store: Arc<OnceLock<Arc<crate::schedule::store::Store>>>,
    /// Where the input locks go, once shared ([`Fleet::share_locks`]).
    locks: Arc<OnceLock<std::sync::Mutex<locks::Locks>>>,
    /// The alert desk, once shared ([`Fleet::share_alerts`]).
    desk: Arc<OnceLock<Arc<crate::alert::Desk>>>,
    /// The channels this node plays not in step, for the agent to register.
    out_of_step_news: Arc<std::sync::Mutex<Option<Vec<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set once the engine runs: the agent registers the node then.
    ready: Arc<AtomicBool>,
    /// The origins this node plays its stations from, for the agent.
    playing_news: Arc<std::sync::Mutex<Option<Vec<Option<origins::Playing>>>>>,
}

impl Fleet {
    /// Starts the agent of `cfg` for `stations` (in engine order); every gate starts shut.
    /// `missing_media` (files the channels name that this node lacks) goes on its
    /// registration, for `hectl fleet status`.
    pub(crate) fn start(
        cfg: &FleetConfig,
        stations: Vec<Placed>,
        missing_media: Vec<String>,
    ) -> anyhow::Result<Fleet> {
        let etcd = Etcd::new(&cfg.etcd, cfg.call_timeout())
            .map_err(|e| anyhow::anyhow!("fleet.etcd: {e}"))?;
        let gates = Arc::new(Gates::new(stations.len(), false));
        let view = Arc::new(RwLock::new(View {
            node: cfg.node.clone(),
            ..View::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let store: Arc<OnceLock<Arc<crate::schedule::store::Store>>> = Arc::default();
        let locks: Arc<OnceLock<std::sync::Mutex<locks::Locks>>> = Arc::default();
        let desk: Arc<OnceLock<Arc<crate::alert::Desk>>> = Arc::default();
        let out_of_step_news: Arc<std::sync::Mutex<Option<Vec<String>>>> = Arc::default();
        let at = match cfg.watch {
            crate::config::Watch::Off => None,
            crate::config::Watch::At(a) => Some(a),
            crate::config::Watch::FromEtcd => watch::toward(&cfg.etcd)
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .inspect_err(|e| tracing::warn!(node = %cfg.node, "fleet.watch: {e}"))
                .ok(),
        };
        let beacon = at.and_then(|addr| match watch::Beacon::start(addr, &cfg.node) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(node = %cfg.node, "fleet.watch: cannot listen on {addr}: {e}: takeovers of this node wait for its lease");
                None
            }
        });
        if beacon.is_none() {
            tracing::info!(node = %cfg.node, "fleet: no beacon ([fleet] watch): the other nodes take this node's channels over when its lease expires");
        }
        let (wake, woken) = std::sync::mpsc::channel();
        let playing_news: Arc<std::sync::Mutex<Option<Vec<Option<origins::Playing>>>>> =
            Arc::default();
        let ready = Arc::new(AtomicBool::new(false));
        let mut agent = Agent {
            ready: ready.clone(),
            registered: false,
            taken: 0,
            playing: Vec::new(),
            playing_news: playing_news.clone(),
            beacon,
            watchers: watch::Watchers::new(cfg.etcd.clone(), cfg.call_timeout(), wake),
            woken,
            desk: desk.clone(),
            alerts_since: 0,
            store: store.clone(),
            locks: locks.clone(),
            locks_read: false,
            schedules_since: 0,
            cfg: cfg.clone(),
            etcd,
            stations,
            gates: gates.clone(),
            view: view.clone(),
            lease: None,
            renewed_at: None,
            owned: HashSet::new(),
            seen: None,
            missing_media,
            out_of_step: Vec::new(),
            out_of_step_news: out_of_step_news.clone(),
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fleet".to_owned())
            .spawn(move || agent.run(&st))?;
        Ok(Fleet {
            out_of_step_news,
            gates,
            view,
            cfg: cfg.clone(),
            store,
            locks,
            desk,
            stop,
            thread: Some(thread),
            playing_news,
            ready,
        })
    }

    /// Shares `store`'s schedules with the fleet: its writes are agreed in etcd first, and
    /// the agent copies into it what any node wrote.
    pub(crate) fn share_schedules(&self, store: Arc<crate::schedule::store::Store>) {
        store.share(Arc::new(schedules::EtcdSchedules {
            cfg: self.cfg.clone(),
        }));
        let _ = self.store.set(store);
    }

    /// Shares the live channels' input locks with the fleet: the agent applies to `sink` the
    /// locks any node's operator set (the API writes them: [`locks::publish`]).
    pub(crate) fn share_locks(
        &self,
        sink: crate::router::ScheduleSink,
        channels: Vec<locks::LiveChannel>,
    ) {
        let _ = self
            .locks
            .set(std::sync::Mutex::new(locks::Locks::new(sink, channels)));
    }

    /// The channels this node plays but not in step with the fleet (known once the engine
    /// has started): registered with the node, shown by `hectl fleet status`.
    pub(crate) fn set_out_of_step(&self, channels: Vec<String>) {
        if let Ok(mut n) = self.out_of_step_news.lock() {
            *n = Some(channels);
        }
    }

    /// The engine runs: the node registers, and channels may be placed on it.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The origin this node plays each station from (by index; known once the engine has
    /// started): the agent publishes an origin of the node's own when it comes to send that
    /// station, and tells the engine when the fleet plays a station from another origin.
    pub(crate) fn set_playing(&self, playing: Vec<Option<origins::Playing>>) {
        if let Ok(mut n) = self.playing_news.lock() {
            *n = Some(playing);
        }
    }

    /// Shares the alert desk with the fleet: the agent hands it the alert messages any node
    /// accepted (the API writes them: [`alerts::publish`]).
    pub(crate) fn share_alerts(&self, desk: Arc<crate::alert::Desk>) {
        let _ = self.desk.set(desk);
    }

    /// Stops sending, gives the channels up (revoking the lease, so the others take over at
    /// once) and ends the agent.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Agent {
    cfg: FleetConfig,
    store: Arc<OnceLock<Arc<crate::schedule::store::Store>>>,
    locks: Arc<OnceLock<std::sync::Mutex<locks::Locks>>>,
    /// The locks have been read once since they were shared.
    locks_read: bool,
    desk: Arc<OnceLock<Arc<crate::alert::Desk>>>,
    /// The etcd revision to hand alert messages from next (0: every one).
    alerts_since: i64,
    /// The etcd revision to copy schedules from next (0: every one).
    schedules_since: i64,
    etcd: Etcd,
    stations: Vec<Placed>,
    gates: Arc<Gates>,
    view: Arc<RwLock<View>>,
    /// The lease, and until when it is known valid (less the margin).
    lease: Option<(i64, Instant)>,
    renewed_at: Option<Instant>,
    /// Stations whose owner key this node holds, as last read.
    owned: HashSet<usize>,
    /// The fleet's keys' fingerprint at the last full read (`Etcd::fingerprint`): while it
    /// stays, nothing is read again and only the gates follow the lease.
    seen: Option<(i64, i64)>,
    missing_media: Vec<String>,
    /// The channels this node plays not in step, as registered, and the engine's news of
    /// them ([`Fleet::set_out_of_step`]).
    out_of_step: Vec<String>,
    out_of_step_news: Arc<std::sync::Mutex<Option<Vec<String>>>>,
    /// This node's beacon, open while the process lives (it closes when the agent ends, after
    /// the lease is revoked).
    beacon: Option<watch::Beacon>,
    /// Connections to the other nodes' beacons.
    watchers: watch::Watchers,
    /// The origin this node plays each station from (by index), and the engine's news of it.
    playing: Vec<Option<origins::Playing>>,
    playing_news: Arc<std::sync::Mutex<Option<Vec<Option<origins::Playing>>>>>,
    /// A watcher revoked a dead node's lease: look at once.
    woken: std::sync::mpsc::Receiver<()>,
    /// The engine runs ([`Fleet::set_ready`]): the node may register.
    ready: Arc<AtomicBool>,
    /// Registered under the present lease.
    registered: bool,
    /// Channels claimed since the start.
    taken: u64,
}

impl Agent {
    fn run(&mut self, stop: &AtomicBool) {
        tracing::info!(node = %self.cfg.node, etcd = ?self.cfg.etcd, "fleet: joining");
        let mut last_error: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let step = self.step();
            let error = step.err();
            if error != last_error {
                match &error {
                    Some(e) => tracing::warn!(node = %self.cfg.node, "fleet: {e}"),
                    None => tracing::info!(node = %self.cfg.node, "fleet: etcd answers again"),
                }
                last_error.clone_from(&error);
            }
            if let Ok(mut v) = self.view.write() {
                v.error = error;
                v.lease_valid = self.valid_until().is_some_and(|t| Instant::now() < t);
                v.etcd_calls = self
                    .etcd
                    .calls
                    .iter()
                    .map(|(k, n)| ((*k).to_owned(), *n))
                    .collect();
                v.etcd_connections = self.etcd.connections;
                v.channels_taken = self.taken;
                v.peer_deaths = self.watchers.deaths();
            }
            // Asleep until the next look, or until a watcher saw a node die.
            let _ = self
                .woken
                .recv_timeout(TICK.saturating_sub(began.elapsed()));
            while self.woken.try_recv().is_ok() {}
        }
        // Leaving: stop sending, then let the others take over at once.
        for i in 0..self.stations.len() {
            self.gates.set(i, None);
        }
        if let Some((id, _)) = self.lease.take() {
            let _ = self.etcd.revoke(id);
        }
        tracing::info!(node = %self.cfg.node, "fleet: left");
    }

    fn valid_until(&self) -> Option<Instant> {
        self.lease.map(|(_, t)| t)
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.cfg.prefix)
    }

    /// One pass: the lease, a read, the claims and releases, the gates.
    fn step(&mut self) -> Result<(), String> {
        // A beacon connection reset: a peer may have taken it for this node's death and
        // revoked its lease. Nothing is sent until etcd says the lease is still valid (the
        // renewal just below; a revoked one is registered anew, its channels gone).
        if self
            .beacon
            .as_ref()
            .is_some_and(|b| b.suspect.swap(false, Ordering::SeqCst))
        {
            for i in 0..self.stations.len() {
                self.gates.set(i, None);
            }
            self.renewed_at = None;
            self.seen = None;
        }
        self.renew()?;
        if let Some(p) = self.playing_news.lock().ok().and_then(|mut n| n.take()) {
            self.playing = p;
            // Compared with the fleet's origins at a full read.
            self.seen = None;
        }
        let (lease, valid_until) = self.lease.ok_or("no lease")?;
        // Nothing changed since the last full read: the owned channels' gates follow the
        // lease, and that is all.
        let fingerprint = self.etcd.fingerprint(&self.cfg.prefix);
        let fingerprint = match fingerprint {
            Ok(f) => f,
            Err(e) => {
                if let Ok(mut v) = self.view.write() {
                    v.connected = false;
                }
                return Err(e.to_string());
            }
        };
        let store = self.store.get().cloned();
        let mirrored = (store.is_none() || self.schedules_since > 0)
            && (self.locks.get().is_none() || self.locks_read)
            && (self.desk.get().is_none() || self.alerts_since > 0);
        if self.seen == Some(fingerprint) && mirrored {
            for &i in &self.owned {
                self.gates.set(i, Some(valid_until));
            }
            if let Ok(mut v) = self.view.write() {
                v.connected = true;
                v.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            }
            return Ok(());
        }
        let read = ["nodes/", "owners/", "drain/", "origins/"]
            .iter()
            .map(|kind| {
                self.etcd
                    .range_prefix(&format!("{}{kind}", self.cfg.prefix))
                    .map(|(kvs, _)| kvs)
            })
            .collect::<Result<Vec<Vec<Kv>>, _>>()
            .map_err(|e| e.to_string());
        let kvs = match read {
            Ok(kvs) => kvs.concat(),
            Err(e) => {
                if let Ok(mut v) = self.view.write() {
                    v.connected = false;
                }
                return Err(e);
            }
        };
        let state = State::read(&self.cfg.prefix, &kvs);
        let peers: Vec<watch::Peer> = state
            .nodes
            .iter()
            .filter(|(n, _)| *n != self.cfg.node)
            .filter_map(|(n, info)| {
                Some(watch::Peer {
                    name: n.clone(),
                    lease: *state.leases.get(n).filter(|l| **l != 0)?,
                    beacon: info.watch.parse().ok()?,
                })
            })
            .collect();
        self.watchers.follow(&peers);
        let live: Vec<place::Node> = state
            .nodes
            .iter()
            .filter(|(n, _)| !state.drained.contains(n))
            .map(|(n, info)| place::Node {
                name: n.clone(),
                capacity: info.capacity,
            })
            .collect();
        let chans: Vec<place::Channel> = self
            .stations
            .iter()
            .map(|s| place::Channel {
                id: s.id.clone(),
                prefer: s.prefer.clone(),
                // A node out of step for it would start a new stream: it goes there last.
                avoid: state
                    .nodes
                    .iter()
                    .filter(|(_, info)| info.out_of_step.contains(&s.id))
                    .map(|(n, _)| n.clone())
                    .collect(),
            })
            .collect();
        let placed = place::place(&chans, &live);
        let me = self.cfg.node.clone();
        let mut errors = Vec::new();
        for (i, s) in self.stations.clone().iter().enumerate() {
            let key = self.key("owners", &s.id);
            let owner = state.owners.get(&s.id);
            let target = placed.get(&s.id);
            match owner {
                Some((name, l)) if *name == me && *l == lease => {
                    if target.is_some_and(|t| *t != me) {
                        // Placed elsewhere (a drain, a node that joined): stop, then let go.
                        self.gates.set(i, None);
                        self.owned.remove(&i);
                        match self.etcd.delete_held(&key, lease) {
                            Ok(_) => {
                                tracing::info!(channel = %s.id, to = %target.map_or("", |t| t.as_str()), "fleet: channel handed over")
                            }
                            Err(e) => errors.push(format!("{}: giving up: {e}", s.id)),
                        }
                    } else {
                        self.owned.insert(i);
                        self.gates.set(i, Some(valid_until));
                    }
                }
                Some(_) => {
                    self.gates.set(i, None);
                    self.owned.remove(&i);
                }
                None if target == Some(&me) => match self.etcd.create(&key, me.as_bytes(), lease) {
                    Ok(true) => {
                        self.owned.insert(i);
                        self.gates.set(i, Some(valid_until));
                        self.taken += 1;
                        tracing::info!(channel = %s.id, "fleet: channel taken (sending)");
                    }
                    Ok(false) => self.gates.set(i, None),
                    Err(e) => {
                        self.gates.set(i, None);
                        errors.push(format!("{}: claiming: {e}", s.id));
                    }
                },
                None => {
                    self.gates.set(i, None);
                    self.owned.remove(&i);
                }
            }
        }
        if let Err(e) = self.follow_origins(&state) {
            errors.push(e);
        }
        // Warm here: what this node sends or is about to, and what it would take over.
        let senders: HashMap<String, String> = self
            .stations
            .iter()
            .filter_map(|s| {
                let sender = state
                    .owners
                    .get(&s.id)
                    .map(|(o, _)| o)
                    .or(placed.get(&s.id));
                sender.map(|o| (s.id.clone(), o.clone()))
            })
            .collect();
        let standbys = place::standbys(&chans, &live, &senders, self.cfg.standbys);
        // Not registered yet, it is placed nothing: its stations stay warm, their standbys
        // hearing the owners, for when it is.
        for (i, s) in self.stations.iter().enumerate().filter(|_| self.registered) {
            let warm = senders.get(&s.id) == Some(&me)
                || standbys.get(&s.id).is_some_and(|l| l.contains(&me));
            if warm != self.gates.warm(i) {
                tracing::debug!(channel = %s.id, warm, "fleet: standby");
            }
            self.gates.set_warm(i, warm);
        }
        self.publish(&state, &placed, &standbys);
        // What the fleet shares, after the channels (a failing store must never hold up the
        // gates): a failure is retried at the next pass.
        if let Err(e) = self.share(store.as_deref()) {
            errors.push(e);
        }
        // Our own writes change it again: the next pass reads once more, and then rests.
        self.seen = errors.is_empty().then_some(fingerprint);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Compares the origin this node plays each station from with the fleet's: an origin of
    /// its own becomes the fleet's once this node sends the station; a station the fleet
    /// plays from another origin is no longer in step here (the engine is told). Either way
    /// the node registers again with its stations out of step.
    fn follow_origins(&mut self, state: &State) -> Result<(), String> {
        let mut changed = false;
        let mut result = Ok(());
        for (i, s) in self.stations.iter().enumerate() {
            let Some(p) = self.playing.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let theirs = state.origins.get(&s.id);
            // (An origin set for another configuration of the station is another stream's:
            // the nodes of each configuration keep their own step, and it is left alone.)
            let same_config = theirs.filter(|(o, _)| o.config == p.config);
            let in_step = if same_config.is_some_and(|(o, _)| o.utc_ns == p.utc_ns) {
                true
            } else if self.owned.contains(&i) && theirs.is_none_or(|(o, _)| o.config == p.config) {
                // What this node sends is the stream: its origin is the fleet's.
                let rev = theirs.map_or(0, |(_, r)| *r);
                match origins::publish(&mut self.etcd, &self.cfg, &s.id, p, rev) {
                    Ok(true) => {}
                    Ok(false) => {
                        // Changed since read: looked at again at the next pass.
                        self.seen = None;
                        continue;
                    }
                    Err(e) => {
                        result = Err(format!("{}: publishing its origin: {e}", s.id));
                        continue;
                    }
                }
                tracing::warn!(channel = %s.id, origin = %chrono::DateTime::from_timestamp_nanos(p.utc_ns).to_rfc3339(), "fleet: this node sends the station from another origin than the fleet's: the fleet now plays it from this one (nodes that start later join it in step; those on the other origin are out of step with it)");
                true
            } else if same_config.is_some() {
                // The fleet plays it from another origin: not in step here.
                false
            } else {
                continue;
            };
            // The engine follows (a standby and dormancy only while in step).
            self.gates.set_stepless(i, !in_step);
            p.own &= !in_step;
            let listed = self.out_of_step.contains(&s.id);
            if in_step && listed {
                self.out_of_step.retain(|c| *c != s.id);
                changed = true;
            } else if !in_step && !listed {
                self.out_of_step.push(s.id.clone());
                changed = true;
            }
        }
        if changed {
            if let Ok(mut n) = self.out_of_step_news.lock() {
                *n = Some(self.out_of_step.clone());
            }
        }
        result
    }

    /// Copies the fleet's schedules, alert messages and input locks to this node's store, desk
    /// and engine (those shared with it).
    fn share(&mut self, store: Option<&crate::schedule::store::Store>) -> Result<(), String> {
        if let Some(store) = store {
            let (next, _) = schedules::mirror(
                &mut self.etcd,
                &self.cfg.prefix,
                store,
                self.schedules_since,
            )?;
            self.schedules_since = next;
        }
        if let Some(desk) = self.desk.get().cloned() {
            self.alerts_since =
                alerts::mirror(&mut self.etcd, &self.cfg.prefix, &desk, self.alerts_since)?;
        }
        if let Some(locks) = self.locks.get() {
            let base = format!("{}locks/", self.cfg.prefix);
            let (kvs, _) = self.etcd.range_prefix(&base).map_err(|e| e.to_string())?;
            locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .apply(&self.cfg.prefix, &kvs);
            self.locks_read = true;
        }
        Ok(())
    }

    /// Grants the lease and registers (or renews it when due); a lease found expired is
    /// dropped, every gate shut, and the next pass starts over.
    fn renew(&mut self) -> Result<(), String> {
        let ttl = self.cfg.lease;
        let margin = self.cfg.margin();
        match self.lease {
            None => {
                let sent = Instant::now();
                let (id, granted) = self
                    .etcd
                    .grant(ttl.as_secs() as i64)
                    .map_err(|e| e.to_string())?;
                let until = sent + Duration::from_secs(granted.max(0) as u64);
                self.lease = Some((id, until.checked_sub(margin).unwrap_or(sent)));
                self.renewed_at = Some(sent);
                // The beacon greets with the lease before the node is seen registered.
                if let Some(b) = &self.beacon {
                    b.lease.store(id, Ordering::Relaxed);
                }
                self.registered = false;
                tracing::info!(node = %self.cfg.node, lease = id, ttl_s = granted, "fleet: lease granted");
                self.register_when_ready(id)
            }
            Some((id, _)) => {
                if self.renewed_at.is_some_and(|t| t.elapsed() < ttl / 4) {
                    return Ok(());
                }
                let sent = Instant::now();
                let left = self.etcd.keep_alive(id).map_err(|e| e.to_string())?;
                if left <= 0 {
                    for i in 0..self.stations.len() {
                        self.gates.set(i, None);
                    }
                    self.owned.clear();
                    self.lease = None;
                    self.seen = None;
                    return Err(
                        "the lease expired: every channel stopped; registering again".to_owned(),
                    );
                }
                let until = sent + Duration::from_secs(left as u64);
                self.lease = Some((id, until.checked_sub(margin).unwrap_or(sent)));
                self.renewed_at = Some(sent);
                self.register_when_ready(id)
            }
        }
    }

    /// Registers the node under lease `id` once its engine runs (not before: the others
    /// would place channels on it that it cannot send yet, and its standbys must have heard
    /// the owners before it takes a channel over), and again when what it registers changed.
    fn register_when_ready(&mut self, id: i64) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let news = self.out_of_step_news.lock().is_ok_and(|n| n.is_some());
        if self.registered && !news {
            return Ok(());
        }
        self.register(id)?;
        if !self.registered {
            tracing::info!(node = %self.cfg.node, lease = id, "fleet: registered");
        }
        self.registered = true;
        self.seen = None;
        Ok(())
    }

    /// Puts this node's key under lease `id`; a key of the same name under another lease is
    /// a previous run of this node (killed): its lease is revoked so its channels go now.
    fn register(&mut self, id: i64) -> Result<(), String> {
        let key = self.key("nodes", &self.cfg.node);
        let (kvs, _) = self.etcd.range_prefix(&key).map_err(|e| e.to_string())?;
        if let Some(old) = kvs
            .iter()
            .find(|kv| kv.key == key && kv.lease != 0 && kv.lease != id)
        {
            tracing::warn!(node = %self.cfg.node, lease = old.lease, "fleet: a previous run of this node is still registered: its lease is revoked");
            self.etcd.revoke(old.lease).map_err(|e| e.to_string())?;
        }
        if let Some(list) = self.out_of_step_news.lock().ok().and_then(|mut n| n.take()) {
            self.out_of_step = list;
        }
        let info = NodeInfo {
            capacity: self.cfg.capacity,
            api: self.cfg.api.clone(),
            missing_media: self.missing_media.clone(),
            out_of_step: self.out_of_step.clone(),
            watch: self
                .beacon
                .as_ref()
                .map(|b| b.addr.to_string())
                .unwrap_or_default(),
        };
        let value = serde_json::to_vec(&info).map_err(|e| e.to_string())?;
        self.etcd.put(&key, &value, id).map_err(|e| e.to_string())
    }

    fn publish(
        &self,
        state: &State,
        placed: &HashMap<String, String>,
        standbys: &HashMap<String, Vec<String>>,
    ) {
        let owned_by = |n: &str| state.owners.values().filter(|(o, _)| o == n).count();
        let nodes: Vec<NodeView> = state
            .nodes
            .iter()
            .map(|(name, info)| NodeView {
                name: name.clone(),
                capacity: info.capacity,
                api: info.api.clone(),
                drained: state.drained.contains(name),
                owns: owned_by(name),
                missing_media: info.missing_media.clone(),
                out_of_step: info.out_of_step.clone(),
                watch: info.watch.clone(),
            })
            .collect();
        let channels = self
            .stations
            .iter()
            .map(|s| {
                let owner = state.owners.get(&s.id).map(|(o, _)| o.clone());
                let others = || nodes.iter().filter(|n| Some(&n.name) != owner.as_ref());
                let warm = standbys.get(&s.id).cloned().unwrap_or_default();
                // Unowned, the node it is placed on is about to send it: not dormant.
                let sender = owner.as_ref().or(placed.get(&s.id));
                ChannelView {
                    id: s.id.clone(),
                    dormant: others()
                        .filter(|n| !warm.contains(&n.name) && Some(&n.name) != sender)
                        .map(|n| n.name.clone())
                        .collect(),
                    standbys: warm,
                    not_in_step: others()
                        .filter(|n| n.out_of_step.contains(&s.id))
                        .map(|n| n.name.clone())
                        .collect(),
                    owner,
                    placed: placed.get(&s.id).cloned(),
                }
            })
            .collect();
        if let Ok(mut v) = self.view.write() {
            v.connected = true;
            v.nodes = nodes;
            v.channels = channels;
            v.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        }
    }
}

/// The fleet's keys, read.
#[derive(Debug, Default)]
struct State {
    /// Registered nodes, by name (sorted).
    nodes: Vec<(String, NodeInfo)>,
    drained: HashSet<String>,
    /// Each registered node's lease.
    leases: HashMap<String, i64>,
    /// Each station's origin, by id, and its key's revision.
    origins: HashMap<String, (origins::Origin, i64)>,
    /// Channel id → (owner, its lease).
    owners: HashMap<String, (String, i64)>,
}

impl State {
    fn read(prefix: &str, kvs: &[Kv]) -> State {
        let mut s = State::default();
        for kv in kvs {
            let Some(rest) = kv.key.strip_prefix(prefix) else {
                continue;
            };
            let Some((kind, name)) = rest.split_once('/') else {
                continue;
            };
            match kind {
                "nodes" => {
                    if let Ok(info) = serde_json::from_slice::<NodeInfo>(&kv.value) {
                        s.leases.insert(name.to_owned(), kv.lease);
                        s.nodes.push((name.to_owned(), info));
                    }
                }
                "drain" => {
                    s.drained.insert(name.to_owned());
                }
                "origins" => {
                    if let Ok(o) = serde_json::from_slice::<origins::Origin>(&kv.value) {
                        s.origins.insert(name.to_owned(), (o, kv.mod_revision));
                    }
                }
                "owners" => {
                    let owner = String::from_utf8_lossy(&kv.value).into_owned();
                    s.owners.insert(name.to_owned(), (owner, kv.lease));
                }
                _ => {}
            }
        }
        s.nodes.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }
}

/// The etcd load bench: `nodes` agents for `config`'s stations, without the engine. Waits
/// until every station is owned (up to 60 s), then counts every agent's etcd calls over
/// `secs`; the agents then leave (their leases revoked).
pub(crate) fn simulate(
    config: &crate::config::Config,
    nodes: usize,
    secs: Duration,
    watch_pid: Option<u32>,
) -> anyhow::Result<serde_json::Value> {
    // utime + stime of a process, seconds (CLK_TCK is 100 on Linux).
    let cpu_s = |pid: u32| -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
    };
    let cfg = config
        .fleet
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the config has no [fleet]"))?;
    let placed = placed(&crate::station::specs(config));
    let began = Instant::now();
    let mut fleet: Vec<Fleet> = (0..nodes)
        .map(|k| {
            let c = FleetConfig {
                node: format!("{}-{k}", cfg.node),
                // Beacons on ports of their own.
                watch: match cfg.watch {
                    crate::config::Watch::At(a) => {
                        crate::config::Watch::At(std::net::SocketAddr::new(a.ip(), 0))
                    }
                    w => w,
                },
                ..cfg.clone()
            };
            let f = Fleet::start(&c, placed.clone(), Vec::new())?;
            f.set_ready();
            Ok(f)
        })
        .collect::<anyhow::Result<_>>()?;
    // Settled: every station sent from where placement puts it, as every node sees it.
    let owned = |f: &[Fleet]| {
        f.iter()
            .map(|f| {
                f.view.read().map_or(0, |v| {
                    let all = v.nodes.len() == nodes;
                    v.channels
                        .iter()
                        .filter(|c| all && c.owner.is_some() && c.owner == c.placed)
                        .count()
                })
            })
            .min()
            .unwrap_or(0)
    };
    while owned(&fleet) < placed.len() {
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(60),
            "not settled after 60 s: {} of {} channels owned",
            owned(&fleet),
            placed.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let settled_s = began.elapsed().as_secs_f64();
    // Settled for good once no node is still reading everything again.
    std::thread::sleep(Duration::from_secs(2));
    let calls = |f: &[Fleet]| -> std::collections::BTreeMap<String, u64> {
        let mut all = std::collections::BTreeMap::new();
        for n in f {
            if let Ok(v) = n.view.read() {
                for (k, c) in &v.etcd_calls {
                    *all.entry(k.clone()).or_default() += c;
                }
            }
        }
        all
    };
    let connections = |f: &[Fleet]| -> u64 {
        f.iter()
            .filter_map(|n| n.view.read().ok().map(|v| v.etcd_connections))
            .sum()
    };
    let before = calls(&fleet);
    let connections0 = connections(&fleet);
    let watched0 = watch_pid.and_then(cpu_s);
    std::thread::sleep(secs);
    let after = calls(&fleet);
    let opened = connections(&fleet) - connections0;
    let watched = watch_pid
        .and_then(cpu_s)
        .zip(watched0)
        .map(|(b, a)| (b - a) / secs.as_secs_f64());
    let per_s: std::collections::BTreeMap<String, f64> = after
        .iter()
        .map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (k.clone(), d as f64 / secs.as_secs_f64())
        })
        .collect();
    let total: f64 = per_s.values().sum();
    for f in &mut fleet {
        f.stop();
    }
    Ok(serde_json::json!({
        "nodes": nodes,
        "channels": placed.len(),
        "lease_s": cfg.lease.as_secs(),
        "settled_s": settled_s,
        "window_s": secs.as_secs_f64(),
        "calls_per_s": per_s,
        "total_calls_per_s": total,
        "connections_per_s": opened as f64 / secs.as_secs_f64(),
        "watched_pid_cores": watched,
    }))
}

/// Drains node `node` (`on`), or ends its drain, through etcd.
pub(crate) fn set_drain(cfg: &FleetConfig, node: &str, on: bool) -> Result<(), String> {
    let mut etcd = Etcd::new(&cfg.etcd, cfg.call_timeout())?;
    let key = format!("{}drain/{node}", cfg.prefix);
    if on {
        etcd.put(&key, b"1", 0)
    } else {
        etcd.delete(&key)
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_open_until_their_instant() {
        let g = Gates::new(2, false);
        let now = Instant::now();
        assert!(!g.open(0, now));
        g.set(0, Some(now + Duration::from_millis(500)));
        assert!(g.open(0, now));
        assert!(!g.open(0, now + Duration::from_millis(600)));
        assert!(!g.open(1, now));
        let all = Gates::new(1, true);
        assert!(all.open(0, now + Duration::from_secs(1 << 20)));
    }

    #[test]
    fn the_keys_are_read_by_kind() {
        let kv = |k: &str, v: &str, lease| Kv {
            key: k.into(),
            value: v.as_bytes().to_vec(),
            lease,
            mod_revision: 1,
        };
        let s = State::read(
            "/h/",
            &[
                kv(
                    "/h/nodes/b",
                    r#"{"capacity":10,"api":"http://b","missing_media":["x.ts"]}"#,
                    7,
                ),
                kv("/h/nodes/a", r#"{"capacity":5}"#, 8),
                kv("/h/nodes/bad", "not json", 9),
                kv("/h/drain/a", "1", 0),
                kv("/h/owners/news", "b", 7),
                kv("/x/owners/other", "a", 8),
            ],
        );
        assert_eq!(
            s.nodes.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(s.drained.contains("a"));
        assert_eq!(s.nodes[1].1.missing_media, ["x.ts"]);
        assert_eq!(s.owners["news"], ("b".to_owned(), 7));
        assert_eq!(s.owners.len(), 1);
    }
}
