//! The fields of a packet's 4-byte header and where its payload starts (ISO/IEC 13818-1
//! §2.4.3.2, §2.4.3.4), read and written on any `&[u8]` holding one 188-byte packet: the
//! same accessors behind [`TsPacket`](super::TsPacket) and [`TsPacketMut`](super::TsPacketMut),
//! for code that walks a buffer of packets in place (the scrambler) without a view per
//! packet. They do not check the sync byte or the length; a slice shorter than 5 bytes
//! panics.
//!
//! ```text
//!  byte 0     1                          2          3                     4
//!  sync 0x47 |TEI|PUSI|prio| PID[12:8] | PID[7:0] |TSC(2)|AFC(2)|CC(4)| adaptation_field_length
//!  AFC 01: payload from byte 4; 11: from byte 5 + adaptation_field_length; 10 and 00: none
//! ```

use super::{Pid, PACKET_SIZE};

/// Why a packet has no payload to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPayload {
    /// adaptation_field_control 10 or 00, or an adaptation field that fills the packet.
    Absent,
    /// The adaptation_field_length runs past the end of the packet.
    BadAdaptationField,
}

/// The PID.
#[inline]
pub fn pid(p: &[u8]) -> Pid {
    Pid::from_bits(u16::from_be_bytes([p[1], p[2]]))
}

/// Sets the PID, keeping transport_error_indicator, payload_unit_start_indicator and
/// transport_priority.
#[inline]
pub fn set_pid(p: &mut [u8], pid: Pid) {
    p[1] = (p[1] & 0xE0) | (pid.value() >> 8) as u8;
    p[2] = pid.value() as u8;
}

/// payload_unit_start_indicator.
#[inline]
pub fn pusi(p: &[u8]) -> bool {
    p[1] & 0x40 != 0
}

/// transport_scrambling_control (0 = clear, 01 reserved, 10 even key, 11 odd key).
#[inline]
pub fn scrambling_control(p: &[u8]) -> u8 {
    p[3] >> 6
}

/// Sets transport_scrambling_control to the low two bits of `bits`.
#[inline]
pub fn set_scrambling_control(p: &mut [u8], bits: u8) {
    p[3] = (p[3] & 0x3F) | (bits & 0b11) << 6;
}

/// continuity_counter.
#[inline]
pub fn continuity_counter(p: &[u8]) -> u8 {
    p[3] & 0x0F
}

/// Sets continuity_counter to the low four bits of `cc`.
#[inline]
pub fn set_continuity_counter(p: &mut [u8], cc: u8) {
    p[3] = (p[3] & 0xF0) | (cc & 0x0F);
}

/// Whether adaptation_field_control announces a payload (01 or 11).
#[inline]
pub fn has_payload(p: &[u8]) -> bool {
    p[3] & 0x10 != 0
}

/// Whether adaptation_field_control announces an adaptation field (10 or 11).
#[inline]
pub fn has_adaptation_field(p: &[u8]) -> bool {
    p[3] & 0x20 != 0
}

/// Offset of the payload in the packet, if it has a non-empty one.
#[inline]
pub fn payload_start(p: &[u8]) -> Result<usize, NoPayload> {
    // adaptation_field_control (Table 2-5): 01 payload only, 11 both, 10 and 00 none.
    match (p[3] >> 4) & 0b11 {
        0b01 => Ok(4),
        0b11 => match 5 + p[4] as usize {
            PACKET_SIZE => Err(NoPayload::Absent),
            s if s > PACKET_SIZE => Err(NoPayload::BadAdaptationField),
            s => Ok(s),
        },
        _ => Err(NoPayload::Absent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::NULL_PACKET;

    #[test]
    fn payload_start_by_adaptation_field_control() {
        let mut p = NULL_PACKET;
        assert_eq!(payload_start(&p), Ok(4));
        // AFC 11, adaptation fields of 0, 182, 183 and 184 bytes.
        p[3] = 0x30;
        for (len, start) in [
            (0, Ok(5)),
            (182, Ok(187)),
            (183, Err(NoPayload::Absent)),
            (184, Err(NoPayload::BadAdaptationField)),
        ] {
            p[4] = len;
            assert_eq!(payload_start(&p), start, "length {len}");
        }
        // AFC 10 and 00: no payload, whatever the length byte says.
        for afc in [0x20, 0x00] {
            p[3] = afc;
            assert_eq!(payload_start(&p), Err(NoPayload::Absent));
        }
    }

    #[test]
    fn fields_are_set_alone() {
        let mut p = NULL_PACKET;
        p[3] = 0x1A;
        set_scrambling_control(&mut p, 0b11);
        assert_eq!((scrambling_control(&p), p[3] & 0x3F), (0b11, 0x1A));
        set_scrambling_control(&mut p, 0b110);
        assert_eq!(scrambling_control(&p), 0b10);
        assert_eq!(continuity_counter(&p), 0xA);
        set_continuity_counter(&mut p, 0x13);
        assert_eq!((continuity_counter(&p), p[3] >> 4), (0x3, 0x9));
        assert_eq!(pid(&p), Pid::NULL);
        assert!(!pusi(&p));
        p[1] = 0xC0;
        set_pid(&mut p, Pid::from_bits(0x0123));
        assert_eq!((pid(&p), p[1] & 0xE0), (Pid::from_bits(0x0123), 0xC0));
    }
}
