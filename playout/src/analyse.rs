//! The input analyser: is a live feed fit for air? (ETSI TR 101 290 §5.2 in spirit: sync,
//! continuity, PAT/PMT, the programme's PIDs, PCR; plus no data, scrambled ES and a bitrate
//! floor.)
//!
//! Sans-IO: the driver pushes what arrived with its arrival time ([`Analyser::push`]) and asks
//! for the verdict at any time ([`Analyser::health`]); nothing here reads a clock. Counts that
//! judge a feed (continuity errors, sync losses, PCR jumps, scrambled packets, bytes) are taken
//! over the last [`AnalyserConfig::window_ns`], so a feed that was bad recovers by being clean
//! for that long; the cumulative ones are in [`AnalyserStats`].

use bytes::Bytes;

use crate::demux::{Demux, DemuxEvent};
use crate::es::{Codec, StreamClass};
use crate::psi::Pmt;
use crate::time::PCR_MODULUS;
use crate::ts::Pid;

/// Thresholds; times are nanoseconds of the driver's monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyserConfig {
    /// The programme to check (`None`: the first in the PAT).
    pub service_id: Option<u16>,
    /// No byte for this long: [`Fault::NoData`] (default 200 ms).
    pub loss_timeout_ns: u64,
    /// PAT, and the programme's PMT, each seen within this (default 1 s).
    pub psi_timeout_ns: u64,
    /// Each video and audio PID of the programme seen within this (default 1 s).
    pub pid_timeout_ns: u64,
    /// A PCR on the programme's PCR PID within this (default 500 ms).
    pub pcr_timeout_ns: u64,
    /// Two PCRs whose difference is this much off the time between their arrivals, without a
    /// discontinuity_indicator, are a PCR jump (default 500 ms).
    pub pcr_jump_ns: u64,
    /// The window that judges counts (default 1 s).
    pub window_ns: u64,
    /// More continuity errors than this in the window: [`Fault::Continuity`] (default 5).
    pub max_cc_errors: u64,
    /// More sync losses than this in the window: [`Fault::Sync`] (default 2).
    pub max_sync_losses: u64,
    /// Less than this over the window (bit/s; 0: no floor): [`Fault::LowBitrate`].
    pub min_bitrate_bps: u64,
}

impl Default for AnalyserConfig {
    fn default() -> Self {
        const MS: u64 = 1_000_000;
        AnalyserConfig {
            service_id: None,
            loss_timeout_ns: 200 * MS,
            psi_timeout_ns: 1000 * MS,
            pid_timeout_ns: 1000 * MS,
            pcr_timeout_ns: 500 * MS,
            pcr_jump_ns: 500 * MS,
            window_ns: 1000 * MS,
            max_cc_errors: 5,
            max_sync_losses: 2,
            min_bitrate_bps: 0,
        }
    }
}

/// Why a feed is not fit for air.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// Nothing has arrived since the analyser started.
    #[error("nothing received yet")]
    NothingYet,
    /// Nothing arrived for `ms` milliseconds.
    #[error("no data for {ms} ms")]
    NoData {
        /// How long.
        ms: u64,
    },
    /// Packet sync was lost too often.
    #[error("TS sync lost {losses} times in the window")]
    Sync {
        /// Sync losses in the window.
        losses: u64,
    },
    /// No PAT.
    #[error("no PAT")]
    NoPat,
    /// The PAT does not list the programme.
    #[error("the PAT has no service {service_id}")]
    NoService {
        /// The programme asked for.
        service_id: u16,
    },
    /// The programme's PMT is missing.
    #[error("no PMT for service {service_id} (PID {pid})")]
    NoPmt {
        /// The programme.
        service_id: u16,
        /// Its PMT PID.
        pid: Pid,
    },
    /// The PMT lists no video or audio stream.
    #[error("service {service_id} has no video or audio stream")]
    NoStreams {
        /// The programme.
        service_id: u16,
    },
    /// A video or audio PID of the programme is not arriving.
    #[error("PID {pid} (stream_type {stream_type:#04x}) missing")]
    MissingPid {
        /// The PID.
        pid: Pid,
        /// Its stream_type.
        stream_type: u8,
    },
    /// No PCR on the PCR PID.
    #[error("no PCR on PID {pid}")]
    NoPcr {
        /// The PCR PID.
        pid: Pid,
    },
    /// The PCR jumped without a discontinuity_indicator.
    #[error("PCR jumped {jumps} times in the window")]
    PcrJump {
        /// Jumps in the window.
        jumps: u64,
    },
    /// Elementary stream packets are scrambled (the head-end cannot descramble them).
    #[error("PID {pid} is scrambled")]
    Scrambled {
        /// A scrambled PID.
        pid: Pid,
    },
    /// Too many continuity errors.
    #[error("{errors} continuity errors in the window")]
    Continuity {
        /// Errors in the window.
        errors: u64,
    },
    /// Below the bitrate floor.
    #[error("{bps} bit/s, below the floor")]
    LowBitrate {
        /// The window's bitrate.
        bps: u64,
    },
}

/// The verdict on a feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Data arrives but the checks that need time (PAT, PMT, PIDs, PCR) have not had it yet.
    Starting,
    /// Fit for air.
    Good,
    /// Not fit for air, and why (the first fault found).
    Bad(Fault),
}

impl Health {
    /// Whether the feed is fit for air.
    pub fn is_good(&self) -> bool {
        *self == Health::Good
    }
}

/// Cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnalyserStats {
    /// Bytes pushed.
    pub bytes: u64,
    /// Packets found.
    pub packets: u64,
    /// Continuity counter errors (data lost) on the programme's PIDs (every PID until its
    /// PMT is known).
    pub cc_errors: u64,
    /// Times packet sync was lost.
    pub sync_losses: u64,
    /// Packets with transport_error_indicator.
    pub transport_errors: u64,
    /// PCR jumps (no discontinuity_indicator).
    pub pcr_jumps: u64,
    /// Scrambled packets on the programme's elementary streams.
    pub scrambled: u64,
    /// PAT/PMT sections that failed to parse.
    pub psi_errors: u64,
    /// Different PMTs of the programme seen (1 once it is known; more when the feed's PIDs
    /// or codecs changed).
    pub pmts: u64,
}

/// Buckets per window: counts age out a tenth of a window at a time.
const BUCKETS: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket of the monotonic clock this is (`now / bucket length`).
    index: u64,
    bytes: u64,
    cc_errors: u64,
    sync_losses: u64,
    pcr_jumps: u64,
    scrambled: u64,
    /// A scrambled PID seen in this bucket.
    scrambled_pid: Option<Pid>,
}

/// The analyser of one feed.
pub struct Analyser {
    demux: Demux,
    st: Seen,
}

/// What the analyser has seen (apart from the demuxer, so the demuxer's callback can update it).
struct Seen {
    cfg: AnalyserConfig,
    stats: AnalyserStats,
    first_data: Option<u64>,
    last_data: Option<u64>,
    last_pat: Option<u64>,
    /// The programme: (service_id, PMT PID), from the PAT.
    program: Option<(u16, Pid)>,
    pmt: Option<Pmt>,
    last_pmt: Option<u64>,
    /// When the programme's current PMT was first seen: its streams are expected from then.
    pmt_since: Option<u64>,
    /// When each PID was last seen (only those of the programme matter).
    pid_seen: Vec<(Pid, u64)>,
    /// Last PCR on the PCR PID: (value in 27 MHz ticks, arrival).
    last_pcr: Option<(u64, u64)>,
    buckets: [Bucket; BUCKETS],
}

impl Analyser {
    /// A new analyser.
    pub fn new(cfg: AnalyserConfig) -> Analyser {
        Analyser {
            demux: Demux::new(),
            st: Seen {
                cfg,
                stats: AnalyserStats::default(),
                first_data: None,
                last_data: None,
                last_pat: None,
                program: None,
                pmt: None,
                last_pmt: None,
                pmt_since: None,
                pid_seen: Vec::new(),
                last_pcr: None,
                buckets: [Bucket::default(); BUCKETS],
            },
        }
    }

    /// The settings.
    pub fn config(&self) -> &AnalyserConfig {
        &self.st.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> AnalyserStats {
        self.st.stats
    }

    /// The programme's PMT, once seen.
    pub fn pmt(&self) -> Option<&Pmt> {
        self.st.pmt.as_ref()
    }

    /// The programme (service_id and PMT PID), once the PAT is seen.
    pub fn program(&self) -> Option<(u16, Pid)> {
        self.st.program
    }

    /// What arrived at `now`: any number of bytes (datagrams, reads), packets in any
    /// alignment.
    pub fn push(&mut self, now: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let st = &mut self.st;
        st.first_data.get_or_insert(now);
        st.last_data = Some(now);
        st.stats.bytes += data.len() as u64;
        st.bucket(now).bytes += data.len() as u64;
        self.demux.push(data, &mut |ev| st.on_event(now, ev));
        let d = self.demux.stats();
        st.stats.packets = d.packets;
        st.stats.transport_errors = d.transport_errors;
        st.stats.psi_errors = d.psi_errors;
    }

    /// The verdict at `now`.
    pub fn health(&self, now: u64) -> Health {
        self.st.health(now)
    }
}

impl Seen {
    fn bucket(&mut self, now: u64) -> &mut Bucket {
        let len = (self.cfg.window_ns / BUCKETS as u64).max(1);
        let index = now / len;
        let b = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b
    }

    /// The buckets within the window ending at `now`.
    fn window(&self, now: u64) -> impl Iterator<Item = &Bucket> {
        let len = (self.cfg.window_ns / BUCKETS as u64).max(1);
        let index = now / len;
        self.buckets
            .iter()
            .filter(move |b| b.index + (BUCKETS as u64) > index && b.index <= index)
    }

    /// Whether `pid` carries the chosen programme: the PAT, its PMT, its PCR and its
    /// streams; any PID while the programme or its PMT is not known yet.
    fn is_programmes(&self, pid: Pid) -> bool {
        let Some((_, pmt_pid)) = self.program else {
            return true;
        };
        let Some(pmt) = self.pmt.as_ref() else {
            return true;
        };
        pid == Pid::PAT
            || pid == pmt_pid
            || pid == pmt.pcr_pid
            || pmt.streams.iter().any(|e| e.pid == pid)
    }

    fn on_event(&mut self, now: u64, ev: DemuxEvent<'_>) {
        match ev {
            DemuxEvent::Pat(pat) => {
                self.last_pat = Some(now);
                let chosen = match self.cfg.service_id {
                    Some(id) => pat.programs.iter().find(|(n, _)| *n == id),
                    None => pat.programs.first(),
                }
                .copied();
                if chosen != self.program {
                    self.program = chosen;
                    self.pmt = None;
                    self.last_pmt = None;
                }
            }
            DemuxEvent::Pmt { pid, pmt } => {
                if self
                    .program
                    .is_some_and(|(n, p)| p == pid && n == pmt.program_number)
                {
                    self.last_pmt = Some(now);
                    if self.pmt.as_ref() != Some(pmt) {
                        self.pmt = Some(pmt.clone());
                        self.pmt_since = Some(now);
                        self.stats.pmts += 1;
                    }
                }
            }
            DemuxEvent::Packet {
                packet, damaged, ..
            } => {
                let pid = packet.pid();
                match self.pid_seen.iter_mut().find(|(p, _)| *p == pid) {
                    Some(slot) => slot.1 = now,
                    None => self.pid_seen.push((pid, now)),
                }
                // Continuity errors of the programme only: in an MPTS, another programme's
                // broken encoder is not this input's fault (a link that loses packets loses
                // the programme's too). Until its PMT is known, every PID counts.
                if damaged && !packet.tei() && self.is_programmes(pid) {
                    self.stats.cc_errors += 1;
                    self.bucket(now).cc_errors += 1;
                }
                // Only what is the programme's.
                let Some(pmt) = self.pmt.as_ref() else { return };
                let (es, pcr_pid) = (pmt.streams.iter().any(|e| e.pid == pid), pmt.pcr_pid);
                if packet.scrambling() != 0 && es {
                    self.stats.scrambled += 1;
                    let b = self.bucket(now);
                    b.scrambled += 1;
                    b.scrambled_pid = Some(pid);
                }
                if pid == pcr_pid {
                    if let Some(pcr) = packet.pcr() {
                        let discontinuity =
                            packet.adaptation_field().is_some_and(|a| a.discontinuity());
                        if let (Some((last, at)), false) = (self.last_pcr, discontinuity) {
                            let d_pcr = (pcr.ticks() + PCR_MODULUS - last) % PCR_MODULUS;
                            let d_arr = u128::from(now.saturating_sub(at)) * 27 / 1000;
                            let off = (d_pcr as i128 - d_arr as i128).unsigned_abs();
                            if off * 1000 / 27 > u128::from(self.cfg.pcr_jump_ns) {
                                self.stats.pcr_jumps += 1;
                                self.bucket(now).pcr_jumps += 1;
                            }
                        }
                        self.last_pcr = Some((pcr.ticks(), now));
                    }
                }
            }
            DemuxEvent::SyncLoss { .. } => {
                self.stats.sync_losses += 1;
                self.bucket(now).sync_losses += 1;
            }
            DemuxEvent::Psi(_) => {}
        }
    }

    fn health(&self, now: u64) -> Health {
        let cfg = &self.cfg;
        let (Some(first), Some(last)) = (self.first_data, self.last_data) else {
            return Health::Bad(Fault::NothingYet);
        };
        let quiet = now.saturating_sub(last);
        if quiet > cfg.loss_timeout_ns {
            return Health::Bad(Fault::NoData {
                ms: quiet / 1_000_000,
            });
        }
        let sum = |f: fn(&Bucket) -> u64| self.window(now).map(f).sum::<u64>();
        let losses = sum(|b| b.sync_losses);
        if losses > cfg.max_sync_losses {
            return Health::Bad(Fault::Sync { losses });
        }
        let errors = sum(|b| b.cc_errors);
        if errors > cfg.max_cc_errors {
            return Health::Bad(Fault::Continuity { errors });
        }
        // Not seen within `limit` of now (and long enough since the first byte to say so):
        // `Some(true)` missing, `None` too early to tell.
        let since_first = now.saturating_sub(first);
        let missing = |seen: Option<u64>, limit: u64| -> Option<bool> {
            match seen {
                Some(t) if now.saturating_sub(t) <= limit => Some(false),
                _ if since_first <= limit => None,
                _ => Some(true),
            }
        };
        // The demuxer reports a table when it changes; its PID's packets say it repeats.
        let seen = |pid: Pid| {
            self.pid_seen
                .iter()
                .find(|(p, _)| *p == pid)
                .map(|(_, t)| *t)
        };
        let pat_seen = self.last_pat.and(seen(Pid::PAT));
        let mut starting = false;
        match missing(pat_seen, cfg.psi_timeout_ns) {
            Some(true) => return Health::Bad(Fault::NoPat),
            None => starting = true,
            Some(false) => {}
        }
        let Some((service_id, pmt_pid)) = self.program else {
            return match (self.last_pat, cfg.service_id) {
                (Some(_), Some(service_id)) => Health::Bad(Fault::NoService { service_id }),
                _ if starting => Health::Starting,
                _ => Health::Bad(Fault::NoPat),
            };
        };
        match missing(self.last_pmt.and(seen(pmt_pid)), cfg.psi_timeout_ns) {
            Some(true) => {
                return Health::Bad(Fault::NoPmt {
                    service_id,
                    pid: pmt_pid,
                })
            }
            None => starting = true,
            Some(false) => {}
        }
        let Some(pmt) = self.pmt.as_ref() else {
            return Health::Starting;
        };
        let av: Vec<_> = pmt
            .streams
            .iter()
            .filter(|e| {
                matches!(
                    Codec::of(e).class(),
                    StreamClass::Video | StreamClass::Audio
                )
            })
            .collect();
        if av.is_empty() {
            return Health::Bad(Fault::NoStreams { service_id });
        }
        // A stream the PMT has just started listing has until `pid_timeout_ns` to arrive.
        let since_pmt = self
            .pmt_since
            .map_or(since_first, |t| now.saturating_sub(t));
        for e in &av {
            let seen_pid = seen(e.pid);
            let verdict = match seen_pid {
                Some(t) if now.saturating_sub(t) <= cfg.pid_timeout_ns => Some(false),
                _ if since_pmt.min(since_first) <= cfg.pid_timeout_ns => None,
                _ => Some(true),
            };
            match verdict {
                Some(true) => {
                    return Health::Bad(Fault::MissingPid {
                        pid: e.pid,
                        stream_type: e.stream_type,
                    })
                }
                None => starting = true,
                Some(false) => {}
            }
        }
        if pmt.pcr_pid != Pid::NULL {
            match missing(self.last_pcr.map(|(_, t)| t), cfg.pcr_timeout_ns) {
                Some(true) => return Health::Bad(Fault::NoPcr { pid: pmt.pcr_pid }),
                None => starting = true,
                Some(false) => {}
            }
        }
        let jumps = sum(|b| b.pcr_jumps);
        if jumps > 0 {
            return Health::Bad(Fault::PcrJump { jumps });
        }
        if let Some(pid) = self
            .window(now)
            .filter(|b| b.scrambled > 0)
            .find_map(|b| b.scrambled_pid)
        {
            return Health::Bad(Fault::Scrambled { pid });
        }
        // The floor, once a whole window has passed since the first byte.
        if cfg.min_bitrate_bps > 0 && since_first >= cfg.window_ns {
            let bps = (u128::from(sum(|b| b.bytes)) * 8 * 1_000_000_000
                / u128::from(cfg.window_ns.max(1))) as u64;
            if bps < cfg.min_bitrate_bps {
                return Health::Bad(Fault::LowBitrate { bps });
            }
        }
        if starting {
            Health::Starting
        } else {
            Health::Good
        }
    }
}
