//! Schedules and their programme metadata, sans-IO.
//!
//! - [`schedule`]: the human-editable schedule file of one channel and date (TOML), parsed and
//!   validated with every error named by line, item and field; written back byte-stable for
//!   edits; turned into UTC [`playout::schedule::Entry`] values in the channel's time zone.
//!
//! - [`import`]: schedules from and to CSV and M3U.
//! - [`si`]: DVB SI codings and tables (SDT, EIT present/following, TDT, TOT).
//!
//! EIT schedule, NIT, XMLTV and the mux insertion come with the rest of issue #5.
#![warn(missing_docs)]
#![forbid(clippy::print_stdout, clippy::print_stderr)]

pub mod import;
pub mod schedule;
pub mod si;
