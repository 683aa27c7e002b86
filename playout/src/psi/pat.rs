//! Program association table (ISO/IEC 13818-1 §2.4.4.3, table_id 0x00 on PID 0).
//!
//! ```text
//!  body: { program_number(16) | 111 PID(13) }*   (program_number 0 = network_PID)
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::{build_long_section, parse_long_section, PsiError};
use crate::ts::Pid;

/// A parsed or built PAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pat {
    /// transport_stream_id.
    pub transport_stream_id: u16,
    /// version_number.
    pub version: u8,
    /// (program_number, PMT PID), without the network_PID entry.
    pub programs: Vec<(u16, Pid)>,
    /// The network_PID (program 0), if listed.
    pub network_pid: Option<Pid>,
}

impl Pat {
    /// Parses one PAT section (single-section PATs; tolerant of reserved bits).
    pub fn parse(section: &[u8]) -> Result<Pat, PsiError> {
        let (h, body) = parse_long_section(Pid::PAT, section)?;
        if h.table_id != 0x00 {
            return Err(PsiError::TableId {
                pid: Pid::PAT,
                found: h.table_id,
                expected: 0,
            });
        }
        let mut pat = Pat {
            transport_stream_id: h.extension,
            version: h.version,
            programs: Vec::new(),
            network_pid: None,
        };
        for e in body.chunks_exact(4) {
            let number = u16::from_be_bytes([e[0], e[1]]);
            let pid = Pid::from_bits(u16::from_be_bytes([e[2], e[3]]));
            if number == 0 {
                pat.network_pid = Some(pid);
            } else {
                pat.programs.push((number, pid));
            }
        }
        Ok(pat)
    }

    /// Builds the section.
    pub fn build(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(4 * (self.programs.len() + 1));
        if let Some(pid) = self.network_pid {
            body.put_u16(0);
            body.put_u16(0xE000 | pid.value());
        }
        for (number, pid) in &self.programs {
            body.put_u16(*number);
            body.put_u16(0xE000 | pid.value());
        }
        build_long_section(0x00, self.transport_stream_id, self.version, &body).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_pat_parses() {
        // PAT written by ffmpeg: tsid 1, program 1 -> 0x1000, with its CRC.
        let s = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1,
            0x04, 0xB2,
        ];
        let pat = Pat::parse(&s).unwrap();
        assert_eq!(pat.transport_stream_id, 1);
        assert_eq!(pat.programs, vec![(1, Pid::from_bits(0x1000))]);
        assert_eq!(&pat.build()[..], &s[..]);
    }

    #[test]
    fn roundtrip_with_network_pid() {
        let pat = Pat {
            transport_stream_id: 0x1234,
            version: 7,
            programs: vec![(101, Pid::from_bits(0x1000)), (102, Pid::from_bits(0x1010))],
            network_pid: Some(Pid::from_bits(0x10)),
        };
        assert_eq!(Pat::parse(&pat.build()).unwrap(), pat);
    }
}
