//! Program-specific information (ISO/IEC 13818-1 §2.4.4): long-form sections, their
//! assembly from packets, packetisation, PAT and PMT.
//!
//! ```text
//!  table_id(8) | SSI(1) 0 11 section_length(12) | table_id_extension(16)
//!  | 11 version(5) current_next(1) | section_number(8) | last_section_number(8)
//!  | ... | CRC_32(32)
//! ```

mod assembler;
mod crc;
mod pat;
mod pmt;

pub use assembler::SectionAssembler;
pub use crc::crc32_mpeg2;
pub use pat::Pat;
pub use pmt::{descriptor_iter, EsInfo, Pmt};

use bytes::{BufMut, BytesMut};

use crate::ts::{Pid, PACKET_SIZE, SYNC_BYTE};

/// Largest PSI section (section_length ≤ 1021 plus the 3-byte header).
pub const MAX_SECTION_SIZE: usize = 1024;
/// Largest private section (section_length ≤ 4093 plus the 3-byte header), e.g. EIT.
pub const MAX_PRIVATE_SECTION_SIZE: usize = 4096;

/// Errors from PSI parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PsiError {
    /// The CRC-32 does not match.
    #[error(
        "pid {pid:?} table_id {table_id:#04x}: crc32 {found:#010x}, expected {expected:#010x}"
    )]
    Crc {
        /// PID carrying the section.
        pid: Pid,
        /// table_id of the section.
        table_id: u8,
        /// CRC in the section.
        found: u32,
        /// CRC computed over the section.
        expected: u32,
    },
    /// section_length runs past the end or is too short for the table.
    #[error("pid {pid:?} table_id {table_id:#04x}: section length {len} is invalid")]
    Length {
        /// PID carrying the section.
        pid: Pid,
        /// table_id of the section.
        table_id: u8,
        /// section_length field.
        len: usize,
    },
    /// A table was expected with another table_id.
    #[error("pid {pid:?}: table_id {found:#04x}, expected {expected:#04x}")]
    TableId {
        /// PID carrying the section.
        pid: Pid,
        /// table_id found.
        found: u8,
        /// table_id expected.
        expected: u8,
    },
}

/// The common header of a long-form section, read from a complete section with valid CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// table_id.
    pub table_id: u8,
    /// table_id_extension (transport_stream_id for PAT, program_number for PMT).
    pub extension: u16,
    /// version_number.
    pub version: u8,
    /// current_next_indicator.
    pub current: bool,
    /// section_number.
    pub section_number: u8,
    /// last_section_number.
    pub last_section_number: u8,
}

/// Checks length and CRC of a long-form `section` and returns its header and body (the bytes
/// between the 8-byte header and the CRC).
pub fn parse_long_section(pid: Pid, section: &[u8]) -> Result<(SectionHeader, &[u8]), PsiError> {
    let table_id = section.first().copied().unwrap_or(0xFF);
    if section.len() < 12 {
        return Err(PsiError::Length {
            pid,
            table_id,
            len: section.len(),
        });
    }
    let len = (usize::from(section[1] & 0x0F) << 8) | usize::from(section[2]);
    if len + 3 != section.len() || len < 9 {
        return Err(PsiError::Length { pid, table_id, len });
    }
    let expected = crc32_mpeg2(&section[..section.len() - 4]);
    let found = u32::from_be_bytes([
        section[len - 1],
        section[len],
        section[len + 1],
        section[len + 2],
    ]);
    if expected != found {
        return Err(PsiError::Crc {
            pid,
            table_id,
            found,
            expected,
        });
    }
    let header = SectionHeader {
        table_id,
        extension: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1F,
        current: section[5] & 1 != 0,
        section_number: section[6],
        last_section_number: section[7],
    };
    Ok((header, &section[8..section.len() - 4]))
}

/// Writes a long-form section: header with every reserved bit set, `body`, CRC-32.
pub fn build_long_section(table_id: u8, extension: u16, version: u8, body: &[u8]) -> BytesMut {
    let len = 5 + body.len() + 4;
    let mut s = BytesMut::with_capacity(3 + len);
    s.put_u8(table_id);
    s.put_u16(0xB000 | len as u16);
    s.put_u16(extension);
    s.put_u8(0xC0 | ((version & 0x1F) << 1) | 1);
    s.put_u8(0);
    s.put_u8(0);
    s.put_slice(body);
    let crc = crc32_mpeg2(&s);
    s.put_u32(crc);
    s
}

/// Packetises one section on `pid` into whole packets appended to `out`: PUSI and
/// pointer_field 0 on the first, 0xFF stuffing after the end. Continuity counters start at
/// `cc` and are returned advanced; the muxer rewrites them on emission anyway.
pub fn packetize_section(pid: Pid, section: &[u8], mut cc: u8, out: &mut BytesMut) -> u8 {
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        out.reserve(PACKET_SIZE);
        let start = out.len();
        out.put_u8(SYNC_BYTE);
        out.put_u8(if first { 0x40 } else { 0 } | (pid.value() >> 8) as u8);
        out.put_u8(pid.value() as u8);
        out.put_u8(0x10 | (cc & 0x0F));
        if first {
            out.put_u8(0);
        }
        let room = PACKET_SIZE - (out.len() - start);
        let n = room.min(rest.len());
        out.put_slice(&rest[..n]);
        rest = &rest[n..];
        out.put_bytes(0xFF, PACKET_SIZE - (out.len() - start));
        cc = (cc + 1) & 0x0F;
        first = false;
    }
    cc
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    use crate::ts::TsPacket;

    proptest! {
        #[test]
        fn section_packetize_assemble_roundtrip(body in proptest::collection::vec(any::<u8>(), 0..1000), ext in any::<u16>(), version in 0u8..32) {
            let section = build_long_section(0x42, ext, version, &body).freeze();
            let pid = Pid::from_bits(0x11);
            let mut out = BytesMut::new();
            packetize_section(pid, &section, 3, &mut out);
            prop_assert_eq!(out.len() % PACKET_SIZE, 0);
            let out = out.freeze();
            let mut asm = SectionAssembler::default();
            let mut got = Vec::new();
            for chunk in out.chunks(PACKET_SIZE) {
                let p = TsPacket::new(Bytes::copy_from_slice(chunk)).unwrap();
                asm.push(&p, true, |s| got.push(s.to_vec()));
            }
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(&got[0][..], &section[..]);
            let (h, b) = parse_long_section(pid, &got[0]).unwrap();
            prop_assert_eq!(h.extension, ext);
            prop_assert_eq!(h.version, version);
            prop_assert_eq!(b, &body[..]);
        }
    }

    #[test]
    fn bad_crc_is_reported_with_context() {
        let mut s = build_long_section(0x02, 1, 0, &[0xE1, 0x00, 0xF0, 0x00]).to_vec();
        let last = s.len() - 1;
        s[last] ^= 1;
        let err = parse_long_section(Pid::from_bits(0x1000), &s).unwrap_err();
        assert!(matches!(err, PsiError::Crc { table_id: 0x02, .. }), "{err}");
        assert!(err.to_string().contains("0x1000"));
    }
}
