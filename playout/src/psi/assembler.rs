//! Section assembly across packets (ISO/IEC 13818-1 §2.4.4.2): pointer_field, sections that
//! span packets, several sections in one packet, 0xFF stuffing after the last section.

use bytes::BytesMut;

use super::MAX_PRIVATE_SECTION_SIZE;
use crate::ts::{TsPacket, PACKET_SIZE};

/// Reassembles complete sections from the packets of one PID. Sections are handed out
/// unchecked; [`super::parse_long_section`] checks length and CRC.
#[derive(Debug, Default)]
pub struct SectionAssembler {
    partial: BytesMut,
    /// Whether `partial` holds the start of a section we are completing.
    active: bool,
}

impl SectionAssembler {
    /// Feeds one packet. `continuous` is false when the demuxer saw a continuity error on
    /// this PID, which throws away a half-assembled section. Every section completed by this
    /// packet is passed to `emit`.
    pub fn push(&mut self, packet: &TsPacket, continuous: bool, emit: impl FnMut(&[u8])) {
        self.push_payload(packet.payload(), packet.pusi(), continuous, emit);
    }

    /// [`SectionAssembler::push`] of a packet's payload and payload_unit_start_indicator, for
    /// a caller that has the packet as plain bytes (no packet view to build).
    pub fn push_payload(
        &mut self,
        payload: &[u8],
        pusi: bool,
        continuous: bool,
        mut emit: impl FnMut(&[u8]),
    ) {
        if !continuous {
            self.reset();
        }
        if payload.is_empty() {
            return;
        }
        if !pusi {
            if self.active {
                self.extend(payload, &mut emit);
            }
            return;
        }
        let pointer = payload[0] as usize;
        let Some(rest) = payload.get(1..) else { return };
        if self.active {
            match rest.get(..pointer) {
                Some(tail) => self.extend(tail, &mut emit),
                None => self.reset(),
            }
        }
        self.reset();
        if let Some(start) = rest.get(pointer..) {
            self.start_sections(start, &mut emit);
        }
    }

    /// Drops any half-assembled section.
    pub fn reset(&mut self) {
        self.partial.clear();
        self.active = false;
    }

    fn extend(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8])) {
        self.partial.extend_from_slice(data);
        if let Some(total) = section_total(&self.partial) {
            if self.partial.len() >= total {
                emit(&self.partial[..total]);
                // What follows came from this packet's payload: at most 184 bytes.
                let mut rest = [0u8; PACKET_SIZE];
                let n = (self.partial.len() - total).min(PACKET_SIZE);
                rest[..n].copy_from_slice(&self.partial[total..total + n]);
                self.reset();
                // Another section may start right after this one in the same packet.
                self.start_sections(&rest[..n], emit);
            }
        } else if self.partial.len() >= 3 {
            // An impossible length: give up on this section.
            self.reset();
        }
    }

    fn start_sections(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(&first) = data.first() {
            if first == 0xFF {
                return;
            }
            if data.len() < 3 {
                self.partial.extend_from_slice(data);
                self.active = true;
                return;
            }
            let Some(total) = section_total(data) else {
                return;
            };
            if data.len() >= total {
                emit(&data[..total]);
                data = &data[total..];
            } else {
                self.partial.extend_from_slice(data);
                self.active = true;
                return;
            }
        }
    }
}

/// Total size of the section starting at `b` (3-byte header + section_length), `None` when
/// fewer than 3 bytes are known or the length is impossible.
fn section_total(b: &[u8]) -> Option<usize> {
    if b.len() < 3 {
        return None;
    }
    let total = 3 + ((usize::from(b[1] & 0x0F) << 8) | usize::from(b[2]));
    (total <= MAX_PRIVATE_SECTION_SIZE).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psi::build_long_section;
    use crate::ts::Pid;
    use bytes::Bytes;

    fn packet(pusi: bool, cc: u8, payload: &[u8]) -> TsPacket {
        let mut p = vec![0xFF; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = if pusi { 0x40 } else { 0 };
        p[2] = 0x20;
        p[3] = 0x10 | cc;
        p[4..4 + payload.len()].copy_from_slice(payload);
        TsPacket::new(Bytes::from(p)).unwrap()
    }

    #[test]
    fn two_sections_in_one_packet_and_one_spanning() {
        let a = build_long_section(0x42, 1, 0, &[1; 20]);
        let b = build_long_section(0x42, 2, 0, &[2; 300]);
        let mut stream = vec![0u8];
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b);
        let mut got = Vec::new();
        let mut asm = SectionAssembler::default();
        asm.push(&packet(true, 0, &stream[..184]), true, |s| {
            got.push(s.to_vec())
        });
        assert_eq!(got.len(), 1);
        // The continuation: pointer_field says where the tail of `b` ends.
        let rest = &stream[184..];
        let mut p2 = vec![rest.len() as u8];
        p2.extend_from_slice(rest);
        assert!(p2.len() <= 184);
        asm.push(&packet(true, 1, &p2), true, |s| got.push(s.to_vec()));
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][..], &a[..]);
        assert_eq!(&got[1][..], &b[..]);
        let _ = Pid::PAT;
    }

    #[test]
    fn continuity_error_drops_partial() {
        let b = build_long_section(0x42, 2, 0, &[2; 300]);
        let mut first = vec![0u8];
        first.extend_from_slice(&b[..183]);
        let mut got = Vec::new();
        let mut asm = SectionAssembler::default();
        asm.push(&packet(true, 0, &first), true, |s| got.push(s.to_vec()));
        asm.push(&packet(false, 2, &b[183..]), false, |s| {
            got.push(s.to_vec())
        });
        assert!(got.is_empty());
    }

    #[test]
    fn bogus_pointer_field_does_not_panic() {
        let mut got = Vec::new();
        let mut asm = SectionAssembler::default();
        asm.push(&packet(true, 0, &[250, 1, 2, 3]), true, |s| {
            got.push(s.to_vec())
        });
        asm.push(&packet(true, 1, &[0, 0x00, 0xBF, 0xFF]), true, |s| {
            got.push(s.to_vec())
        });
        assert!(got.is_empty());
    }
}
