//! Schedules and their programme metadata, sans-IO.
//!
//! - [`schedule`]: the human-editable schedule file of one channel and date (TOML), parsed and
//!   validated with every error named by line, item and field; written back byte-stable for
//!   edits; turned into UTC [`playout::schedule::Entry`] values in the channel's time zone.
//!
//! - [`import`]: schedules from and to CSV and M3U.
//! - [`si`]: DVB SI codings and tables (SDT, EIT present/following, TDT, TOT).
//! - [`network`]: the network side of DVB SI (SDT actual and other, NIT).
//! - [`eit_cache`]: the EIT schedule of one service, updated incrementally (an edit
//!   re-encodes only its segments and bumps only its table's version), and the builder's
//!   state for every service ([`eit_cache::EitBuilds`]).
//! - [`carousel`]: the SI carousel of one transport stream: which tables go out when, with
//!   which version, driven by the time and the events the caller gives it.
//! - [`alert`]: emergency alerts (CAP 1.2 / JSON), their signatures (SM2 over SM3, Ed25519).
//! - [`emergency`]: the in-band emergency tables (Chinese cable EBIT 0xFD, SCTE-18 0xD8).
#![warn(missing_docs)]
#![forbid(clippy::print_stdout, clippy::print_stderr)]

pub mod alert;
pub mod carousel;
pub mod eit_cache;
pub mod emergency;
pub mod import;
pub mod network;
pub mod schedule;
pub mod si;
pub mod text;
pub mod xmltv;
