//! Program map table (ISO/IEC 13818-1 §2.4.4.8, table_id 0x02).
//!
//! ```text
//!  body: 111 PCR_PID(13) | 1111 program_info_length(12) | descriptors
//!        { stream_type(8) | 111 elementary_PID(13) | 1111 ES_info_length(12) | descriptors }*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::{build_long_section, parse_long_section, PsiError};
use crate::ts::Pid;

/// One elementary stream of a program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EsInfo {
    /// stream_type (Table 2-34).
    pub stream_type: u8,
    /// elementary_PID.
    pub pid: Pid,
    /// The ES_info descriptor loop, raw.
    pub descriptors: Bytes,
}

impl EsInfo {
    /// Iterates `(tag, body)` over the descriptor loop, stopping at a malformed entry.
    pub fn descriptors(&self) -> impl Iterator<Item = (u8, &[u8])> {
        descriptor_iter(&self.descriptors)
    }
}

/// A parsed or built PMT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmt {
    /// program_number.
    pub program_number: u16,
    /// version_number.
    pub version: u8,
    /// PCR_PID (0x1FFF: no PCR).
    pub pcr_pid: Pid,
    /// The program_info descriptor loop, raw.
    pub program_info: Bytes,
    /// Elementary streams in PMT order.
    pub streams: Vec<EsInfo>,
}

impl Pmt {
    /// Parses one PMT section from `pid`.
    pub fn parse(pid: Pid, section: &[u8]) -> Result<Pmt, PsiError> {
        let (h, body) = parse_long_section(pid, section)?;
        if h.table_id != 0x02 {
            return Err(PsiError::TableId {
                pid,
                found: h.table_id,
                expected: 0x02,
            });
        }
        let bad = PsiError::Length {
            pid,
            table_id: 0x02,
            len: section.len(),
        };
        if body.len() < 4 {
            return Err(bad);
        }
        let pcr_pid = Pid::from_bits(u16::from_be_bytes([body[0], body[1]]));
        let info_len = (usize::from(body[2] & 0x0F) << 8) | usize::from(body[3]);
        let program_info = Bytes::copy_from_slice(body.get(4..4 + info_len).ok_or(bad)?);
        let mut rest = &body[4 + info_len..];
        let mut streams = Vec::new();
        while rest.len() >= 5 {
            let es_len = (usize::from(rest[3] & 0x0F) << 8) | usize::from(rest[4]);
            let descriptors = rest.get(5..5 + es_len).ok_or(bad)?;
            streams.push(EsInfo {
                stream_type: rest[0],
                pid: Pid::from_bits(u16::from_be_bytes([rest[1], rest[2]])),
                descriptors: Bytes::copy_from_slice(descriptors),
            });
            rest = &rest[5 + es_len..];
        }
        Ok(Pmt {
            program_number: h.extension,
            version: h.version,
            pcr_pid,
            program_info,
            streams,
        })
    }

    /// Builds the section (every reserved bit set).
    pub fn build(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(64);
        body.put_u16(0xE000 | self.pcr_pid.value());
        body.put_u16(0xF000 | self.program_info.len() as u16);
        body.put_slice(&self.program_info);
        for s in &self.streams {
            body.put_u8(s.stream_type);
            body.put_u16(0xE000 | s.pid.value());
            body.put_u16(0xF000 | s.descriptors.len() as u16);
            body.put_slice(&s.descriptors);
        }
        build_long_section(0x02, self.program_number, self.version, &body).freeze()
    }
}

/// Iterates `(tag, body)` over a raw descriptor loop, stopping at a truncated entry.
pub fn descriptor_iter(mut b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 2 {
            return None;
        }
        let (tag, len) = (b[0], usize::from(b[1]));
        let body = b.get(2..2 + len)?;
        b = &b[2 + len..];
        Some((tag, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let pmt = Pmt {
            program_number: 101,
            version: 3,
            pcr_pid: Pid::from_bits(0x100),
            program_info: Bytes::new(),
            streams: vec![
                EsInfo {
                    stream_type: 0x1B,
                    pid: Pid::from_bits(0x100),
                    descriptors: Bytes::new(),
                },
                EsInfo {
                    stream_type: 0x0F,
                    pid: Pid::from_bits(0x101),
                    descriptors: Bytes::from_static(&[0x0A, 4, b'c', b'h', b'i', 0]),
                },
            ],
        };
        let s = pmt.build();
        let back = Pmt::parse(Pid::from_bits(0x1000), &s).unwrap();
        assert_eq!(back, pmt);
        assert_eq!(
            back.streams[1].descriptors().next(),
            Some((0x0A, &b"chi\0"[..]))
        );
    }

    #[test]
    fn truncated_es_loop_is_an_error() {
        let mut body = vec![0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x20];
        body.extend_from_slice(&[0; 4]);
        let s = build_long_section(0x02, 1, 0, &body);
        assert!(Pmt::parse(Pid::from_bits(0x1000), &s).is_err());
    }
}
