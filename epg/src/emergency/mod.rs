//! In-band emergency tables, built into and parsed from long-form sections (ISO/IEC 13818-1
//! §2.4.4.10 syntax, CRC-32/MPEG-2 from [`playout::psi`]):
//!
//! - the Chinese cable **EBIT** (应急广播索引表, table_id 0xFD): the index of active emergency
//!   broadcast messages. **\[V\]**: the layout is taken from vendor code implementing GD/J 082 /
//!   GY/T 385 / GY/T 393 (docs STANDARDS §1.2); it has *not* been checked against the official
//!   text, which is not freely published.
//! - the **SCTE 18** cable Emergency Alert Message (table_id 0xD8, PID 0x1FFB), with its texts
//!   in the ATSC A/65 `multiple_string_structure` (STANDARDS §1.4).
//!
//! Sans-IO: times come in as arguments, nothing reads a clock. Builders are strict (every
//! field is range-checked and an error names it, reserved bits are set); parsers check the
//! CRC and every length, never panic, and skip what a length covers but no field uses.
//!
//! Files: `ebit.rs` (the EBIT), `scte18.rs` (SCTE 18 and GPS time), `section.rs` (the
//! long-section frame and the bounds-checked reader both tables use); this module holds the
//! error type and the field checks the two builders share.

mod ebit;
mod scte18;
mod section;

pub use ebit::{
    code_digits, ebit_section, ebm_id, ebm_id_from, parse_ebit, parse_ebit_table, resource_code,
    DetailsChannel, EbClass, EbMessage, Ebit, EBIT_TABLE_ID,
};
pub use scte18::{
    gps_seconds, parse_scte18, scte18_section, utc_from_gps, LocationCode, Scte18Alert,
    GPS_UTC_OFFSET_S, SCTE18_PID, SCTE18_TABLE_ID,
};

/// Errors from building or parsing the emergency tables.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmergencyError {
    /// Build: a numeric field outside its range.
    #[error("{field}: {value} is outside {min}..={max}")]
    Range {
        /// The field, as a path (`messages[1].level`); for a list, its length; for a text, its
        /// coded length in bytes.
        field: String,
        /// The value given.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// Build: a BCD code with the wrong number of digits or a non-digit.
    #[error("{field}: expected {expected} decimal digits, found {found:?}")]
    Digits {
        /// The field, as a path (`messages[0].resource_codes[2]`).
        field: String,
        /// Number of digits the code has.
        expected: usize,
        /// What was given (raw codes as hex).
        found: String,
    },
    /// Build: a field that cannot be coded for another reason.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as a path.
        field: String,
        /// Why.
        reason: &'static str,
    },
    /// Build: the section would be longer than a private section may be.
    #[error("table_id {table_id:#04x}: section of {len} bytes is longer than {max}")]
    TooLong {
        /// table_id of the section.
        table_id: u8,
        /// Its length (at least), bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// Parse: another table.
    #[error("table_id {found:#04x}, expected {expected:#04x}")]
    TableId {
        /// table_id found.
        found: u8,
        /// table_id expected.
        expected: u8,
    },
    /// Parse: section_length disagrees with the bytes given, or is too short for a long section.
    #[error(
        "table_id {table_id:#04x}: section_length {section_length} with {available} bytes given"
    )]
    SectionLength {
        /// table_id of the section.
        table_id: u8,
        /// The section_length field.
        section_length: usize,
        /// Bytes given after the 3-byte header.
        available: usize,
    },
    /// Parse: the CRC-32 does not match.
    #[error("table_id {table_id:#04x}: crc32 {found:#010x}, expected {expected:#010x}")]
    Crc {
        /// table_id of the section.
        table_id: u8,
        /// CRC in the section.
        found: u32,
        /// CRC computed over the section.
        expected: u32,
    },
    /// Parse: a field runs past the end of what contains it (the section or a length field).
    #[error(
        "table_id {table_id:#04x}: {field} at byte {offset} needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// table_id of the section.
        table_id: u8,
        /// The field (spec name).
        field: &'static str,
        /// Its offset in the section.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in what contains it.
        available: usize,
    },
    /// Parse: a value this parser cannot read (reserved EBM_class, unknown protocol_version,
    /// compressed or unsupported text mode, invalid time).
    #[error("table_id {table_id:#04x}: {field} at byte {offset} is {value:#x}, not supported")]
    Value {
        /// table_id of the section.
        table_id: u8,
        /// The field (spec name).
        field: &'static str,
        /// Its offset in the section.
        offset: usize,
        /// The value found.
        value: u64,
    },
}

fn range(field: &str, value: u64, min: u64, max: u64) -> Result<(), EmergencyError> {
    if !(min..=max).contains(&value) {
        return Err(EmergencyError::Range {
            field: field.into(),
            value,
            min,
            max,
        });
    }
    Ok(())
}

fn invalid(field: &str, reason: &'static str) -> EmergencyError {
    EmergencyError::Invalid {
        field: field.into(),
        reason,
    }
}

fn printable(field: &str, bytes: &[u8]) -> Result<(), EmergencyError> {
    if !bytes.iter().all(|b| (0x20..=0x7E).contains(b)) {
        return Err(invalid(field, "must be printable ASCII"));
    }
    Ok(())
}
