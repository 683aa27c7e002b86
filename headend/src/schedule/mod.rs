//! Schedules on disk and on air: the store of schedule files (`store`) and the scheduler
//! thread that turns them into splicer cues (`driver`). Resolving them into what plays is
//! `playout::schedule`; the file format is `epg::schedule`.

pub(crate) mod confine;
pub(crate) mod driver;
pub(crate) mod store;
