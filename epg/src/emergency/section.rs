//! The long-form section frame of the emergency tables (ISO/IEC 13818-1 §2.4.4.10: table_id,
//! section_length, table_id_extension, version, section numbers, CRC-32/MPEG-2 of Annex A) and
//! a bounds-checked reader whose errors carry the byte offset in the section.

use chrono::NaiveDateTime;
use playout::psi::{build_long_section, crc32_mpeg2, MAX_PRIVATE_SECTION_SIZE};

use super::EmergencyError;
use crate::si::parse_utc_time;

/// Checks table_id, section_length and CRC; returns table_id_extension, version and a reader
/// over the body (between the 8-byte header and the CRC).
pub(super) fn open_section(
    section: &[u8],
    table_id: u8,
) -> Result<(u16, u8, Reader<'_>), EmergencyError> {
    let Some(&found) = section.first() else {
        return Err(EmergencyError::Truncated {
            table_id,
            field: "table_id",
            offset: 0,
            needed: 1,
            available: 0,
        });
    };
    if found != table_id {
        return Err(EmergencyError::TableId {
            found,
            expected: table_id,
        });
    }
    let available = section.len().saturating_sub(3);
    let section_length = match section {
        [_, hi, lo, ..] => usize::from(hi & 0x0F) << 8 | usize::from(*lo),
        _ => 0,
    };
    if section.len() < 3 || section_length != available || section_length < 9 {
        return Err(EmergencyError::SectionLength {
            table_id,
            section_length,
            available,
        });
    }
    let (data, crc) = section.split_at(section.len() - 4);
    let found = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let expected = crc32_mpeg2(data);
    if found != expected {
        return Err(EmergencyError::Crc {
            table_id,
            found,
            expected,
        });
    }
    let ext = u16::from_be_bytes([data[3], data[4]]);
    let version = (data[5] >> 1) & 0x1F;
    let body = Reader {
        table_id,
        buf: &data[8..],
        pos: 0,
        base: 8,
    };
    Ok((ext, version, body))
}

/// The whole section, or [`EmergencyError::TooLong`].
pub(super) fn finish(
    table_id: u8,
    ext: u16,
    version: u8,
    body: &[u8],
) -> Result<Vec<u8>, EmergencyError> {
    let len = 8 + body.len() + 4;
    if len > MAX_PRIVATE_SECTION_SIZE {
        return Err(EmergencyError::TooLong {
            table_id,
            len,
            max: MAX_PRIVATE_SECTION_SIZE,
        });
    }
    Ok(build_long_section(table_id, ext, version, body).into())
}

/// A 16-bit length for `n` bytes, or [`EmergencyError::TooLong`] (with `before` bytes of body
/// already written).
pub(super) fn too_long(table_id: u8, n: usize, before: usize) -> Result<u16, EmergencyError> {
    u16::try_from(n).map_err(|_| EmergencyError::TooLong {
        table_id,
        len: 8 + before + n + 4,
        max: MAX_PRIVATE_SECTION_SIZE,
    })
}

/// Bounds-checked reads over part of a section; errors carry the offset in the section.
pub(super) struct Reader<'a> {
    table_id: u8,
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the section.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], EmergencyError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(bytes) = rest.get(..n) else {
            return Err(EmergencyError::Truncated {
                table_id: self.table_id,
                field,
                offset: self.offset(),
                needed: n,
                available: rest.len(),
            });
        };
        self.pos += n;
        Ok(bytes)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], EmergencyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, EmergencyError> {
        Ok(self.take(1, field)?[0])
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, EmergencyError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, EmergencyError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(super) fn time(&mut self, field: &'static str) -> Result<NaiveDateTime, EmergencyError> {
        let offset = self.offset();
        let b = self.array(field)?;
        parse_utc_time(&b).ok_or_else(|| {
            let mut v = [0u8; 8];
            v[3..].copy_from_slice(&b);
            self.value(field, offset, u64::from_be_bytes(v))
        })
    }

    /// The next `n` bytes as a reader of their own (what a length field covers).
    pub(super) fn sub(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<Reader<'a>, EmergencyError> {
        let base = self.offset();
        let buf = self.take(n, field)?;
        Ok(Reader {
            table_id: self.table_id,
            buf,
            pos: 0,
            base,
        })
    }

    pub(super) fn value(&self, field: &'static str, offset: usize, value: u64) -> EmergencyError {
        EmergencyError::Value {
            table_id: self.table_id,
            field,
            offset,
            value,
        }
    }

    pub(super) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}
