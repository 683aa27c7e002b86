//! Inputs: what feeds a channel's splicer. Today: playlist files.

pub(crate) mod file;
