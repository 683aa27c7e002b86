//! Which packets scrambling leaves alone and why, and the check of a buffer of packets.
//! The header fields themselves (PID, transport_scrambling_control, where the payload
//! starts: ISO/IEC 13818-1 §2.4.3.2, §2.4.3.4) are read with [`playout::ts::header`].

use playout::ts::header::{self, NoPayload};
use playout::ts::{PACKET_SIZE, SYNC_BYTE};

use super::{PacketCounts, ScrambleError};

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

/// Offset of the payload in the packet, if it has a non-empty one.
#[inline]
pub(super) fn payload_start(pkt: &[u8]) -> Result<usize, Skip> {
    header::payload_start(pkt).map_err(|e| match e {
        NoPayload::Absent => Skip::NoPayload,
        NoPayload::BadAdaptationField => Skip::BadAdaptationField,
    })
}
