//! Schedules on disk: the store of schedule files (`store`). Resolving them into what plays
//! is `playout::schedule`; the file format is `epg::schedule`.

pub(crate) mod store;
