//! The TS packet fields scrambling reads and writes (ISO/IEC 13818-1 §2.4.3.2, §2.4.3.4).
//!
//! ```text
//!  byte 3: transport_scrambling_control(2) | adaptation_field_control(2) | CC(4)
//!  byte 4: adaptation_field_length when adaptation_field_control is 10 or 11
//!  payload: from byte 4 (AFC 01), or byte 5 + adaptation_field_length (AFC 11)
//! ```

use super::{PacketCounts, ScrambleError};

/// Size of one transport stream packet in bytes.
pub const PACKET_SIZE: usize = 188;
pub(super) const NULL_PID: u16 = 0x1FFF;
const SYNC_BYTE: u8 = 0x47;

/// Why a packet is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Skip {
    NoPayload,
    Null,
    Excluded,
    AlreadyScrambled,
    Clear,
    Reserved,
    NoKey,
    BadAdaptationField,
}

impl Skip {
    pub(super) fn count(self, c: &mut PacketCounts) {
        let n = match self {
            Skip::NoPayload => &mut c.no_payload,
            Skip::Null => &mut c.null,
            Skip::Excluded => &mut c.excluded,
            Skip::AlreadyScrambled => &mut c.already_scrambled,
            Skip::Clear => &mut c.clear,
            Skip::Reserved => &mut c.reserved_scrambling,
            Skip::NoKey => &mut c.no_key,
            Skip::BadAdaptationField => &mut c.bad_adaptation_field,
        };
        *n += 1;
    }
}

/// Whole packets, each starting with 0x47; else the first packet that is not.
pub(super) fn check(buf: &[u8]) -> Result<(), ScrambleError> {
    if let Some(index) = buf
        .chunks_exact(PACKET_SIZE)
        .position(|p| p[0] != SYNC_BYTE)
    {
        return Err(ScrambleError::Sync {
            index,
            found: buf[index * PACKET_SIZE],
        });
    }
    if buf.len() % PACKET_SIZE != 0 {
        return Err(ScrambleError::Length {
            index: buf.len() / PACKET_SIZE,
            len: buf.len(),
        });
    }
    Ok(())
}

/// The PID of a packet (`pkt` is 188 bytes).
pub(super) fn pid(pkt: &[u8]) -> u16 {
    u16::from_be_bytes([pkt[1], pkt[2]]) & 0x1FFF
}

/// transport_scrambling_control.
pub(super) fn tsc(pkt: &[u8]) -> u8 {
    pkt[3] >> 6
}

/// Sets transport_scrambling_control to `bits` (0..=3).
pub(super) fn set_tsc(pkt: &mut [u8], bits: u8) {
    pkt[3] = (pkt[3] & 0x3F) | (bits & 0b11) << 6;
}

/// Offset of the payload in the packet, if it has a non-empty one.
pub(super) fn payload_start(pkt: &[u8]) -> Result<usize, Skip> {
    match (pkt[3] >> 4) & 0b11 {
        0b01 => Ok(4),
        0b11 => {
            let start = 5 + pkt[4] as usize;
            match start {
                PACKET_SIZE => Err(Skip::NoPayload),
                s if s > PACKET_SIZE => Err(Skip::BadAdaptationField),
                s => Ok(s),
            }
        }
        _ => Err(Skip::NoPayload),
    }
}
