//! How the parts that run beside the stations reach them: the scheduler's cues, the alert
//! desk's overrides, the guide watcher's guides and the stations' present/following for
//! each other go as messages to the engine thread that owns the station (or, with no engine,
//! to an [`Inbox`]: `headend render`, tests).

use std::sync::{mpsc, Arc};

use epg::carousel::PfPosted;

use crate::station::{OverrideMsg, ScheduleMsg};

/// Routes messages to the engine thread that owns the station.
#[derive(Clone)]
pub(crate) struct ScheduleSink {
    txs: Vec<mpsc::Sender<Control>>,
    shard_of: Vec<usize>,
}

impl ScheduleSink {
    /// A router over one channel per engine thread (`txs`), station `i` on thread
    /// `shard_of[i]`.
    pub(crate) fn new(txs: Vec<mpsc::Sender<Control>>, shard_of: Vec<usize>) -> ScheduleSink {
        ScheduleSink { txs, shard_of }
    }

    /// Hands `msg` to its station's engine thread; `false` once the engine has stopped.
    pub(crate) fn send(&self, msg: ScheduleMsg) -> bool {
        self.deliver(msg.station, Control::Schedule(Box::new(msg)))
    }

    /// Hands an alert override to its station's engine thread; `false` once stopped.
    pub(crate) fn send_override(&self, msg: OverrideMsg) -> bool {
        self.deliver(msg.station(), Control::Override(msg))
    }

    /// Hands an operator's input order to its station's engine thread; `false` once stopped.
    pub(crate) fn send_input(&self, order: InputOrder) -> bool {
        self.deliver(order.station, Control::Input(order))
    }

    /// A service's present/following, for every station (the MPTS that carry EIT other).
    pub(crate) fn broadcast_pf(&self, pf: &Arc<PfPosted>) {
        for tx in &self.txs {
            let _ = tx.send(Control::Peer(pf.clone()));
        }
    }

    fn deliver(&self, station: usize, msg: Control) -> bool {
        self.shard_of
            .get(station)
            .and_then(|s| self.txs.get(*s))
            .is_some_and(|tx| tx.send(msg).is_ok())
    }
}

impl ScheduleSink {
    /// A sink for `stations` stations with no engine behind it: what is sent waits in the
    /// [`Inbox`] (`headend render`, tests).
    pub(crate) fn inbox(stations: usize) -> (ScheduleSink, Inbox) {
        let (tx, rx) = mpsc::channel();
        (
            ScheduleSink {
                txs: vec![tx],
                shard_of: vec![0; stations],
            },
            Inbox(rx),
        )
    }
}

/// What a sink without an engine received.
pub(crate) struct Inbox(mpsc::Receiver<Control>);

/// What an [`Inbox`] holds.
pub(crate) enum Delivered {
    Schedule(Box<ScheduleMsg>),
    Override(OverrideMsg),
}

impl Delivered {
    /// The station it is for.
    pub(crate) fn station(&self) -> usize {
        match self {
            Delivered::Schedule(m) => m.station,
            Delivered::Override(o) => o.station(),
        }
    }
}

impl Inbox {
    /// Cues and overrides sent so far, oldest first.
    pub(crate) fn drain(&self) -> Vec<Delivered> {
        self.0
            .try_iter()
            .filter_map(|c| match c {
                Control::Schedule(m) => Some(Delivered::Schedule(m)),
                Control::Override(o) => Some(Delivered::Override(o)),
                Control::Peer(_) | Control::Input(_) => None,
            })
            .collect()
    }

    /// The overrides sent so far.
    #[cfg(test)]
    pub(crate) fn overrides_sent(&self) -> Vec<OverrideMsg> {
        self.0
            .try_iter()
            .filter_map(|c| match c {
                Control::Override(o) => Some(o),
                _ => None,
            })
            .collect()
    }
}

/// What an engine thread is told.
pub(crate) enum Control {
    /// The scheduler's cues for a station.
    Schedule(Box<ScheduleMsg>),
    /// The alert desk's order for a program.
    Override(OverrideMsg),
    /// A service's present/following, for every station.
    Peer(Arc<PfPosted>),
    /// An operator's order for a channel's live inputs.
    Input(InputOrder),
}

/// An operator's order for a channel relaying live inputs (`POST /api/channels/ID/input`,
/// `hectl input`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InputOrder {
    /// The station carrying the channel.
    pub(crate) station: usize,
    /// The channel.
    pub(crate) channel: String,
    /// What to do.
    pub(crate) action: InputAction,
}

/// What an [`InputOrder`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InputAction {
    /// On air now: the input at this index (`None`: the playlist); the verdicts may move it
    /// again.
    Switch(Option<usize>),
    /// The same, and held there whatever the verdicts, until unlocked.
    Lock(Option<usize>),
    /// The verdicts decide again.
    Unlock,
}
