//! What the engine publishes for the rest of the daemon: each station's counters (for
//! `/channels` and the API) and each station's clock map (for the scheduler), as `watch`
//! snapshots: the engine threads write them about once a second, readers borrow the latest
//! without holding anything up.

use std::sync::Arc;

use serde::Serialize;

use crate::clock::ClockMap;
use crate::station::scrambling::ScramblingStats;

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
    pub(crate) scrambling: Vec<ScramblingStats>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct OutputStatus {
    pub(crate) url: String,
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
}

/// The status of all stations: a snapshot the engine threads refresh about once a second
/// (each its own stations), read by the HTTP side without holding anything up.
pub(crate) type Status = Arc<tokio::sync::watch::Sender<Vec<StationStatus>>>;

/// Clock maps of all stations, by station index.
pub(crate) type ClockMaps = Arc<tokio::sync::watch::Sender<Vec<Option<ClockMap>>>>;
