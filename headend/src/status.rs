//! What the engine publishes for the rest of the daemon: each station's counters (for
//! `/channels` and the API) and each station's clock map (for the scheduler), as `watch`
//! snapshots: the engine threads write them twice a second, readers borrow the latest
//! without holding anything up.

use std::sync::Arc;

use serde::Serialize;

use crate::clock::ClockMap;
use crate::station::scrambling::ScramblingStats;

/// What `/channels` shows of a station, refreshed twice a second.
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
    /// In step with a fleet: datagrams made over 100 ms late (after a stall) and not sent, so
    /// the rest leaves on its instant (a pacer on its own clock re-anchors instead: a stall).
    pub(crate) late_datagrams: u64,
    pub(crate) max_late_us: u64,
    /// In a fleet, what this node does with the station: `"sending"` (it owns it), `"warm"`
    /// (muxed in real time, ready to take over without a gap) or `"dormant"` (muxed in bulk,
    /// nothing sent; docs/fleet.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fleet: Option<&'static str>,
    pub(crate) outputs: Vec<OutputStatus>,
    /// ETSI TR 101 290 on what the station sends (`playout::monitor`): the count of each
    /// rule since start, by its number and name (`"1.4 Continuity_count_error": 0`).
    pub(crate) tr101290: std::collections::BTreeMap<String, u64>,
    /// The scrambled programs: counters and whether a failure policy is in force (alarm).
    pub(crate) scrambling: Vec<ScramblingStats>,
    /// The SimulCrypt links (ECMG⇔SCS) of the scrambled programs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ecmg: Vec<EcmgStatus>,
    /// The EMM streams (EMMG⇔MUX) multiplexed into the station.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) emm: Vec<EmmStatus>,
    /// Programs relaying live inputs: which is on air, and each input's verdict and counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) relays: Vec<RelayStatus>,
}

/// An EMM stream of a station.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct EmmStatus {
    /// The CAS (`0x4AD1`) whose EMMG sends it.
    pub(crate) ca_system_id: String,
    pub(crate) pid: u16,
    /// TS packets sent on the EMM PID.
    pub(crate) packets: u64,
    /// Waiting in the muxer (at the allocated rate).
    pub(crate) queued: usize,
    /// Not taken: the queue (2 s at the allocated rate) was full.
    pub(crate) dropped: u64,
    /// The EMMG's datagrams received (by its listener, for every station).
    pub(crate) datagrams: u64,
    /// Its packets dropped for coming over UDP beyond the allocation.
    pub(crate) over_allocation: u64,
    /// Messages refused or undecodable.
    pub(crate) errors: u64,
}

/// A SimulCrypt link's state.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct EcmgStatus {
    pub(crate) channel: String,
    /// The CAS it serves (`0x4AD10000`) and the ECMG's address.
    pub(crate) super_cas_id: String,
    pub(crate) ecmg: String,
    /// The ECMG channel is set up.
    pub(crate) up: bool,
    /// Why it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A program relaying live inputs.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RelayStatus {
    /// The channel.
    pub(crate) channel: String,
    /// The input on air (`None`: the playlist).
    pub(crate) active: Option<String>,
    /// Whether an operator locked it.
    pub(crate) locked: bool,
    /// Whether a schedule drives it (its inputs are on air only in the schedule's live
    /// items).
    pub(crate) scheduled: bool,
    /// The output clock's offset from nominal, locked to the live source on air (ppb; ±30
    /// ppm at most, moving at most 0.075 Hz/s).
    pub(crate) clock_ppb: i64,
    /// Every input, in priority order.
    pub(crate) inputs: Vec<InputStatus>,
    /// The last switches, oldest first (at most [`SWITCHES_KEPT`]).
    pub(crate) switches: Vec<SwitchRecord>,
}

/// How many switches a relay's status keeps.
pub(crate) const SWITCHES_KEPT: usize = 20;

/// One switch of a relay: when, from what to what, why, and the gap on air.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct SwitchRecord {
    /// When it was decided, UTC (RFC 3339, ms).
    pub(crate) utc: String,
    /// The same instant in the channel's time zone.
    pub(crate) local: String,
    /// The input left (`None`: the playlist).
    pub(crate) from: Option<String>,
    /// The input put on air (`None`: the playlist).
    pub(crate) to: Option<String>,
    pub(crate) cause: String,
    /// How long nothing new was presented across it (ms), once what it put on air started.
    pub(crate) gap_ms: Option<f64>,
}

/// One live input's verdict and counters.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct InputStatus {
    pub(crate) name: String,
    /// `good`, `starting`, or what is wrong (`no data for 300 ms`).
    pub(crate) health: String,
    pub(crate) bytes: u64,
    pub(crate) packets: u64,
    pub(crate) cc_errors: u64,
    pub(crate) sync_losses: u64,
    pub(crate) pcr_jumps: u64,
    pub(crate) scrambled_packets: u64,
    pub(crate) rtp_lost: u64,
    pub(crate) rtp_reordered: u64,
    pub(crate) rtp_duplicates: u64,
    /// Datagrams that were not transport stream.
    pub(crate) foreign_datagrams: u64,
    /// Bytes dropped because the channel did not take them in time.
    pub(crate) overflow_bytes: u64,
    /// Connections refused (an SRT caller with the wrong passphrase).
    pub(crate) refused_connections: u64,
    /// Why the input cannot be received, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// ETSI TR 101 290 on what arrives (`playout::monitor`, priority 1 and 2: an input's SI
    /// is not ours to check): the count of each rule since start, by its number and name.
    pub(crate) tr101290: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct OutputStatus {
    pub(crate) url: String,
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
}

/// The status of all stations: a snapshot the engine threads refresh twice a second
/// (each its own stations), read by the HTTP side without holding anything up.
pub(crate) type Status = Arc<tokio::sync::watch::Sender<Vec<StationStatus>>>;

/// Clock maps of all stations, by station index.
pub(crate) type ClockMaps = Arc<tokio::sync::watch::Sender<Vec<Option<ClockMap>>>>;
