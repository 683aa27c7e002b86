//! The test EMMs of `hectl emmg`: sections whose every byte follows from a sequence number, so
//! that whoever receives them (a MUX test, a TS analyser) can tell exactly which arrived.
//!
//! ```text
//!  byte 0      table_id: 0x82 for an even sequence number, 0x83 for an odd one
//!  byte 1..3   section_syntax_indicator 0, DVB reserved 1, ISO reserved 11,
//!              section_length(12) = size - 3          (so byte 1 is 0x70 | length >> 8)
//!  byte 3..7   the sequence number, 32 bits big-endian
//!  byte 7 + i  (f + i) mod 256, for i = 0 .. size - 8, where f is the XOR of the sequence
//!              number's four bytes
//! ```
//!
//! A change to any byte of a section of 8 bytes or more is seen: the payload depends on every
//! bit of the sequence number.
//!
//! These are the CA_message_section form of ETSI EN 300 468 / ETR 289 (table_id 0x82–0x8F are
//! for EMMs, by CA system); no CRC, as the form has none.

/// The smallest test section: the 3-byte header and the sequence number.
pub const PATTERN_MIN_SECTION_SIZE: usize = 7;

/// The largest: a private section's section_length is at most 4093.
pub const PATTERN_MAX_SECTION_SIZE: usize = 4096;

/// The test section of sequence number `seq`, `size` bytes in all; `None` unless `size` is in
/// [`PATTERN_MIN_SECTION_SIZE`]`..=`[`PATTERN_MAX_SECTION_SIZE`].
pub fn pattern_section(seq: u32, size: usize) -> Option<Vec<u8>> {
    if !(PATTERN_MIN_SECTION_SIZE..=PATTERN_MAX_SECTION_SIZE).contains(&size) {
        return None;
    }
    let length = size - 3;
    let mut s = Vec::with_capacity(size);
    s.push(0x82 | (seq & 1) as u8);
    s.push(0x70 | (length >> 8) as u8);
    s.push(length as u8);
    let b = seq.to_be_bytes();
    s.extend_from_slice(&b);
    let f = b[0] ^ b[1] ^ b[2] ^ b[3];
    s.extend((0..size - PATTERN_MIN_SECTION_SIZE).map(|i| f.wrapping_add(i as u8)));
    Some(s)
}

/// The sequence number of a test section, `None` if `section` is not exactly one (any byte
/// off, or a length that does not match its section_length).
pub fn pattern_sequence(section: &[u8]) -> Option<u32> {
    if section.len() < PATTERN_MIN_SECTION_SIZE {
        return None;
    }
    let seq = u32::from_be_bytes([section[3], section[4], section[5], section[6]]);
    (pattern_section(seq, section.len())? == section).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout in the module documentation, byte for byte.
    #[test]
    fn layout() {
        // f = 0x01 ^ 0x02 ^ 0x03 ^ 0xFF = 0xFF.
        let s = pattern_section(0x0102_03FF, 12).unwrap();
        assert_eq!(
            s,
            [0x83, 0x70, 0x09, 0x01, 0x02, 0x03, 0xFF, 0xFF, 0x00, 0x01, 0x02, 0x03]
        );
        let s = pattern_section(2, 4096).unwrap();
        assert_eq!(&s[..3], &[0x82, 0x7F, 0xFD]);
        assert_eq!(pattern_sequence(&s), Some(2));
        assert_eq!(pattern_section(0, 6), None);
        assert_eq!(pattern_section(0, 4097), None);
        assert_eq!(pattern_sequence(&pattern_section(7, 7).unwrap()), Some(7));
    }

    #[test]
    fn any_change_is_seen() {
        let s = pattern_section(41, 40).unwrap();
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 0x10;
            assert_eq!(pattern_sequence(&bad), None, "byte {i}");
        }
        assert_eq!(pattern_sequence(&s[..39]), None);
    }
}
