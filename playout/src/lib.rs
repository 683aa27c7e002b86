//! Zero-copy MPEG-TS playout core (ISO/IEC 13818-1).
//!
//! Sans-IO: nothing here opens files, sockets or reads a clock. The driver (the `headend`
//! daemon or `headend render`) feeds bytes and the current output time in, and takes packets
//! and I/O requests out.
//!
//! - [`ts`]: 188-byte packet views over [`bytes::Bytes`], in-place rewrites on the output copy.
//! - [`psi`]: CRC-32/MPEG-2, section assembly and packetisation, PAT and PMT.
//! - [`pes`]: PES header timestamps.
//! - [`es`]: elementary-stream classification and random access points (H.264, HEVC, audio).
//! - [`demux`]: the tolerant demultiplexer.
//! - [`splice`]: plays a playlist back to back as one continuous service.
//! - [`mux`]: the CBR multiplexer with PCR restamping and PSI repetition.
//! - [`offline`]: the as-fast-as-possible driver behind `headend render`, tests and benches.
//! - [`pacing`]: real-time release of datagrams at the muxrate, driven by a clock passed in.
//! - [`probe`]: a media file's duration from its own timestamps (head and tail only).
//! - [`schedule`]: a channel's schedule resolved into a gapless timeline; what is on air when.
//! - [`check`]: a strict conformance checker for what we emit.
//! - [`monitor`]: a continuous TR 101 290 monitor (counts per rule) for outputs and inputs.
//! - [`units`]: bit rates and durations from the strings operators write (`"6M"`, `"30ms"`).
#![warn(missing_docs)]
#![forbid(clippy::print_stdout, clippy::print_stderr)]

pub mod analyse;
pub mod check;
pub mod demux;
pub mod es;
pub mod hls;
pub mod join;
pub mod monitor;
pub mod mux;
pub mod offline;
pub mod pacing;
pub mod pes;
pub mod probe;
pub mod psi;
pub mod rtp;
pub mod schedule;
pub mod splice;
pub mod time;
pub mod ts;
pub mod units;
