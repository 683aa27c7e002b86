//! PES packet headers and their timestamps (ISO/IEC 13818-1 §2.4.3.6, §2.4.3.7).
//!
//! ```text
//!  00 00 01 | stream_id | PES_packet_length(16) | 10 SC(2) P DAI C O | PTS_DTS(2) ESCR ES DSM ACI CRC EXT | header_data_length
//!  PTS/DTS (5 bytes): prefix(4) ts[32:30] 1 | ts[29:15] 1 | ts[14:0] 1
//! ```

use crate::time::Pts;

/// What the splicer needs from a PES header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PesHeader {
    /// stream_id.
    pub stream_id: u8,
    /// PES_packet_length (0 = unbounded, video only).
    pub packet_length: u16,
    /// Presentation time stamp.
    pub pts: Option<Pts>,
    /// Decoding time stamp (absent when equal to the PTS).
    pub dts: Option<Pts>,
    /// Offset of the elementary-stream data from the start of the PES packet.
    pub payload_offset: usize,
}

impl PesHeader {
    /// Parses a PES header at the start of `b` (the payload of a packet with PUSI set);
    /// `None` without the 00 00 01 prefix or when the header does not fit.
    pub fn parse(b: &[u8]) -> Option<PesHeader> {
        if b.len() < 6 || b[0] != 0 || b[1] != 0 || b[2] != 1 {
            return None;
        }
        let stream_id = b[3];
        let packet_length = u16::from_be_bytes([b[4], b[5]]);
        if !has_optional_header(stream_id) {
            return Some(PesHeader {
                stream_id,
                packet_length,
                pts: None,
                dts: None,
                payload_offset: 6,
            });
        }
        if b.len() < 9 || b[6] & 0xC0 != 0x80 {
            return None;
        }
        let flags = b[7] >> 6;
        let payload_offset = 9 + b[8] as usize;
        let (mut pts, mut dts) = (None, None);
        if flags & 0b10 != 0 && b.len() >= 14 {
            pts = Some(read_timestamp(&b[9..14]));
        }
        if flags == 0b11 && b.len() >= 19 {
            dts = Some(read_timestamp(&b[14..19]));
        }
        Some(PesHeader {
            stream_id,
            packet_length,
            pts,
            dts,
            payload_offset,
        })
    }
    /// The decoding time: the DTS, or the PTS when there is no DTS.
    pub fn decode_time(&self) -> Option<Pts> {
        self.dts.or(self.pts)
    }
}

/// Whether a stream_id carries the optional PES header (Table 2-22: not program_stream_map,
/// padding, private_stream_2, ECM, EMM, directory, DSMCC, H.222.1 type E).
pub fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xFF | 0xF2 | 0xF8
    )
}

/// Reads a 5-byte PTS/DTS field.
pub fn read_timestamp(b: &[u8]) -> Pts {
    let v = (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1;
    Pts::new(v)
}

/// Writes a 5-byte PTS/DTS field with the given 4-bit prefix (0010 PTS only, 0011 PTS with
/// DTS, 0001 DTS) and all marker bits set.
pub fn write_timestamp(b: &mut [u8], prefix: u8, ts: Pts) {
    let v = ts.raw();
    b[0] = (prefix << 4) | (((v >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

/// Shifts PTS and DTS of the PES header at the start of `b` by `delta` in place. Returns
/// false when there is no header with timestamps fully inside `b`.
pub fn shift_timestamps(b: &mut [u8], delta: i64) -> bool {
    let Some(h) = PesHeader::parse(b) else {
        return false;
    };
    let mut done = false;
    if let Some(pts) = h.pts {
        let prefix = b[9] >> 4;
        write_timestamp(&mut b[9..14], prefix, pts.add(delta));
        done = true;
    }
    if let Some(dts) = h.dts {
        let prefix = b[14] >> 4;
        write_timestamp(&mut b[14..19], prefix, dts.add(delta));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A video PES header with PTS and DTS, as in ISO/IEC 13818-1 Table 2-21.
    fn header(pts: u64, dts: u64) -> Vec<u8> {
        let mut b = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10];
        b.extend_from_slice(&[0; 10]);
        write_timestamp(&mut b[9..14], 0b0011, Pts::new(pts));
        write_timestamp(&mut b[14..19], 0b0001, Pts::new(dts));
        b.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0]);
        b
    }

    #[test]
    fn parses_known_header() {
        // PTS 0x1_0000_0001 encodes as 0x39 0x00 0x01 0x00 0x03 with prefix 0011.
        let b = header(0x1_0000_0001, 900);
        assert_eq!(&b[9..14], &[0x39, 0x00, 0x01, 0x00, 0x03]);
        let h = PesHeader::parse(&b).unwrap();
        assert_eq!(h.stream_id, 0xE0);
        assert_eq!(h.pts, Some(Pts::new(0x1_0000_0001)));
        assert_eq!(h.dts, Some(Pts::new(900)));
        assert_eq!(h.payload_offset, 19);
    }

    #[test]
    fn garbage_is_not_a_header() {
        assert!(PesHeader::parse(&[0, 0, 2, 0xE0, 0, 0]).is_none());
        assert!(PesHeader::parse(&[0, 0, 1]).is_none());
        assert!(PesHeader::parse(&[0, 0, 1, 0xE0, 0, 0, 0x40, 0x80, 5]).is_none());
    }

    proptest! {
        #[test]
        fn shift_roundtrip(pts in 0u64..(1 << 33), back in 0u64..90_000, delta in -(1i64 << 32)..(1i64 << 32)) {
            let dts = pts.wrapping_sub(back) & ((1 << 33) - 1);
            let mut b = header(pts, dts);
            prop_assert!(shift_timestamps(&mut b, delta));
            let h = PesHeader::parse(&b).unwrap();
            prop_assert_eq!(h.pts, Some(Pts::new(pts).add(delta)));
            prop_assert_eq!(h.dts, Some(Pts::new(dts).add(delta)));
            prop_assert_eq!(b[9] >> 4, 0b0011);
            prop_assert_eq!(b[14] >> 4, 0b0001);
        }
    }
}
