//! Transport stream packets (ISO/IEC 13818-1 §2.4.3.2, §2.4.3.4).
//!
//! ```text
//!  byte 0     1                          2        3
//!  sync 0x47 |TEI|PUSI|prio| PID[12:8] | PID[7:0] |TSC(2)|AFC(2)|CC(4)|
//!  AFC: 01 payload only, 10 adaptation field only, 11 both, 00 reserved (no payload)
//! ```
//!
//! [`TsPacket`] is an immutable view over a 188-byte [`bytes::Bytes`] (cloning bumps a
//! reference count). [`TsPacketMut`] rewrites a packet in place on the output copy: PID, CC,
//! PCR and PES timestamps. [`header`] has the accessors both use, on a plain `&[u8]`.

pub mod header;
mod packet;
mod pid;

pub use packet::{pcr_only_packet, AdaptationField, TsPacket, TsPacketMut};
pub use pid::Pid;

/// Size of one transport stream packet in bytes.
pub const PACKET_SIZE: usize = 188;
/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;

/// A null packet (PID 0x1FFF, payload 0xFF), for stuffing.
pub static NULL_PACKET: [u8; PACKET_SIZE] = {
    let mut p = [0xFFu8; PACKET_SIZE];
    p[0] = SYNC_BYTE;
    p[1] = 0x1F;
    p[2] = 0xFF;
    p[3] = 0x10;
    p
};

/// Errors from a single packet view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// The buffer is not 188 bytes.
    #[error("packet is {0} bytes, expected 188")]
    Length(usize),
    /// The first byte is not 0x47.
    #[error("sync byte {0:#04x}, expected 0x47")]
    Sync(u8),
}
