//! Inputs: playlist files and their probing.

pub(crate) mod align;
pub(crate) mod file;
pub(crate) mod http_pull;
pub(crate) mod live;
pub(crate) mod probe;
pub(crate) mod srt_in;
