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

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use playout::psi::{
    build_long_section, crc32_mpeg2, descriptor_iter, EsInfo, MAX_PRIVATE_SECTION_SIZE,
};
use playout::ts::Pid;

use crate::si::{parse_utc_time, utc_time};

/// table_id of the EBIT (应急广播索引表) \[V\].
pub const EBIT_TABLE_ID: u8 = 0xFD;
/// table_id of the SCTE 18 cable_emergency_alert section.
pub const SCTE18_TABLE_ID: u8 = 0xD8;
/// The in-band PID of SCTE 18 alerts (the SCTE/ATSC base PID).
pub const SCTE18_PID: Pid = Pid::from_bits(0x1FFB);
/// Leap seconds between GPS time and UTC: GPS runs 18 s ahead of UTC since 2017-01-01 (no leap
/// second has been added since; update this and the callers' data if one is).
pub const GPS_UTC_OFFSET_S: u32 = 18;

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

/// EBM_class: why the message is broadcast \[V\].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EbClass {
    /// 1 发布系统演练: drill of the publishing system.
    PublishingDrill = 1,
    /// 2 模拟演练: simulated drill.
    SimulatedDrill = 2,
    /// 3 实际演练: live drill.
    LiveDrill = 3,
    /// 4 应急广播: emergency broadcast.
    Emergency = 4,
    /// 5 日常广播: routine broadcast.
    Routine = 5,
}

impl EbClass {
    /// The 4-bit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class of a 4-bit code; `None` for the reserved ones (0, 6..=15).
    pub fn from_code(code: u8) -> Option<EbClass> {
        Some(match code {
            1 => EbClass::PublishingDrill,
            2 => EbClass::SimulatedDrill,
            3 => EbClass::LiveDrill,
            4 => EbClass::Emergency,
            5 => EbClass::Routine,
            _ => return None,
        })
    }
}

/// The details channel of a message: the program a receiver tunes to, described PMT-style \[V\].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetailsChannel {
    /// transport_stream_id of the multiplex carrying it.
    pub transport_stream_id: u16,
    /// program_number in that multiplex.
    pub program_number: u16,
    /// PCR_PID.
    pub pcr_pid: Pid,
    /// The program_info descriptor loop, raw (e.g. cable_delivery_system_descriptor 0x44 or
    /// terrestrial 0x5A); at most 4095 bytes of whole descriptors.
    pub program_info: Bytes,
    /// The elementary streams, as in a PMT.
    pub streams: Vec<EsInfo>,
}

/// One message of the EBIT \[V\].
///
/// ```text
///  EBM_length(16) | EBM_id(144) | EBM_original_network_id(16)
///  | EBM_start_time(40) | EBM_end_time(40) | EBM_type(40) | EBM_class(4) EBM_level(4)
///  | EBM_resource_number(8) | resource_code(96) * N | 1111111 details_channel_indicate(1)
///  | [ transport_stream_id(16) | program_number(16) | 111 PCR_PID(13)
///      | 1111 program_info_length(12) | descriptors | stream_info_length(16)
///      | { stream_type(8) | 111 elementary_PID(13) | 1111 ES_info_length(12) | descriptors }* ]
/// ```
///
/// EBM_length counts the bytes after it up to the end of the message. Times are MJD + BCD
/// hhmmss in UTC, as in the DVB TDT (fractions of a second are dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbMessage {
    /// EBM_id: nibble 0xF, then 35 BCD digits (see [`ebm_id`], [`ebm_id_from`]).
    pub ebm_id: [u8; 18],
    /// EBM_original_network_id.
    pub original_network_id: u16,
    /// EBM_start_time, UTC.
    pub start: NaiveDateTime,
    /// EBM_end_time, UTC; not before `start`.
    pub end: NaiveDateTime,
    /// EBM_type: 5 ASCII characters, the event type code (应急平台体系信息资源分类与编码).
    pub ebm_type: [u8; 5],
    /// EBM_class.
    pub class: EbClass,
    /// EBM_level: 0 default, 1 一级 (特别重大, the highest) .. 4 四级 (一般).
    pub level: u8,
    /// Target resource codes: nibble 0xF, then 23 BCD digits each (see [`resource_code`]);
    /// at most 255.
    pub resource_codes: Vec<[u8; 12]>,
    /// The details channel, if any.
    pub details: Option<DetailsChannel>,
}

/// A parsed EBIT section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ebit {
    /// table_id_extension.
    pub table_ext: u16,
    /// version_number.
    pub version: u8,
    /// The messages, in section order.
    pub messages: Vec<EbMessage>,
    /// The signature bytes (empty when signature_length is 0).
    pub signature: Vec<u8>,
}

/// An EBM_id from its 35 decimal digits.
pub fn ebm_id(digits: &str) -> Result<[u8; 18], EmergencyError> {
    bcd_code("ebm_id", digits)
}

/// A resource code from its 23 decimal digits.
pub fn resource_code(digits: &str) -> Result<[u8; 12], EmergencyError> {
    bcd_code("resource_code", digits)
}

/// The EBM_id of the `seq`-th message (0..=9999) a platform issues on `date` \[V\]: the platform's
/// 23-digit resource code, the date as YYYYMMDD, the sequence number in 4 digits.
pub fn ebm_id_from(
    platform_code: &str,
    date: NaiveDate,
    seq: u16,
) -> Result<[u8; 18], EmergencyError> {
    check_digits("platform_code", platform_code, 23)?;
    let year = chrono::Datelike::year(&date);
    if !(0..=9999).contains(&year) {
        return Err(invalid("date", "year outside 0000..=9999"));
    }
    range("seq", seq.into(), 0, 9999)?;
    ebm_id(&format!("{platform_code}{}{seq:04}", date.format("%Y%m%d")))
}

/// The digits of a BCD code (EBM_id, resource code): `None` unless its first nibble is 0xF and
/// every other one a decimal digit.
pub fn code_digits(code: &[u8]) -> Option<String> {
    let mut nibbles = code.iter().flat_map(|b| [b >> 4, b & 0x0F]);
    if nibbles.next()? != 0x0F {
        return None;
    }
    nibbles
        .map(|n| (n <= 9).then(|| char::from(b'0' + n)))
        .collect()
}

/// Builds one EBIT section (table_id 0xFD, section 0 of 0, current) \[V\].
///
/// ```text
///  table_id(8)=0xFD | 1 0 11 section_length(12) | table_id_extension(16)
///  | 11 version(5) current_next(1)=1 | section_number(8)=0 | last_section_number(8)=0
///  | reserved(8)=0xFF | EBM_number(8) | message * EBM_number   (see [`EbMessage`])
///  | signature_length(16) | signature | CRC_32(32)
/// ```
///
/// `signature` is appended as is after signature_length (nothing is signed here); `None`
/// writes signature_length 0. Errors name the first field out of range, or report a section
/// over 4096 bytes.
pub fn ebit_section(
    table_ext: u16,
    version: u8,
    messages: &[EbMessage],
    signature: Option<&[u8]>,
) -> Result<Vec<u8>, EmergencyError> {
    range("version", version.into(), 0, 31)?;
    range("messages", messages.len() as u64, 0, 255)?;
    let mut body = vec![0xFF, messages.len() as u8];
    for (i, m) in messages.iter().enumerate() {
        let bytes = encode_message(i, m)?;
        let len = too_long(EBIT_TABLE_ID, bytes.len(), body.len())?;
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    let signature = signature.unwrap_or_default();
    let len = too_long(EBIT_TABLE_ID, signature.len(), body.len())?;
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(signature);
    finish(EBIT_TABLE_ID, table_ext, version, &body)
}

/// Parses an EBIT section into its version and messages (see [`parse_ebit_table`] for the
/// table_id_extension and signature too).
pub fn parse_ebit(section: &[u8]) -> Result<(u8, Vec<EbMessage>), EmergencyError> {
    parse_ebit_table(section).map(|t| (t.version, t.messages))
}

/// Parses an EBIT section: table_id, section_length, CRC, then every length inside.
/// A reserved EBM_class or an invalid time is an error; EBM_level is kept as found (0..=15).
pub fn parse_ebit_table(section: &[u8]) -> Result<Ebit, EmergencyError> {
    let (table_ext, version, mut r) = open_section(section, EBIT_TABLE_ID)?;
    r.take(1, "reserved")?;
    let count = r.u8("EBM_number")?;
    let mut messages = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(r.u16("EBM_length")?);
        let mut m = r.sub(len, "EBM_length")?;
        messages.push(read_message(&mut m)?);
    }
    let len = usize::from(r.u16("signature_length")?);
    let signature = r.take(len, "signature")?.to_vec();
    Ok(Ebit {
        table_ext,
        version,
        messages,
        signature,
    })
}

/// A location an SCTE 18 alert applies to (FIPS codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocationCode {
    /// state_code, 0..=99 (0: all states).
    pub state_code: u8,
    /// county_subdivision, 0..=9 (0: all of the county).
    pub county_subdivision: u8,
    /// county_code, 0..=909 (0: all of the state).
    pub county_code: u16,
}

/// An SCTE 18 cable emergency alert, one section (no exceptions, no descriptors yet).
///
/// ```text
///  table_id(8)=0xD8 | 1 0 11 section_length(12) | table_id_extension(16)=0
///  | 11 sequence_number(5) current_next(1)=1 | section_number(8)=0 | last_section_number(8)=0
///  | protocol_version(8)=0 | EAS_event_ID(16) | EAS_originator_code(24)
///  | EAS_event_code_length(8) | EAS_event_code | nature_of_activation_text_length(8) | MSS
///  | alert_message_time_remaining(8) | event_start_time(32) | event_duration(16)
///  | 1111 1111 1111 alert_priority(4) | details_OOB_source_ID(16)
///  | 111111 details_major_channel_number(10) | 111111 details_minor_channel_number(10)
///  | audio_OOB_source_ID(16) | alert_text_length(16) | MSS
///  | location_code_count(8) | { state_code(8) | county_subdivision(4) 11 county_code(10) }*
///  | exception_count(8)=0 | 111111 descriptors_length(10)=0 | CRC_32(32)
/// ```
///
/// Each text is a multiple_string_structure (ATSC A/65 §6.10) holding one string in
/// `language`, uncompressed (compression_type 0). Text whose characters are all in U+0000..U+00FF
/// uses mode 0x00 (one byte per character, ISO 8859-1); any other text, Chinese included, uses
/// mode 0x3F (UTF-16 big-endian, the ISO/IEC 10646 16-bit form): A/65 has no UTF-8 mode
/// (TSDuck makes the same choice). Segments hold at most 255 bytes and never split a surrogate
/// pair. Note that some receivers (VLC 3) decode only the page modes 0x00..=0x33, not 0x3F.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scte18Alert {
    /// sequence_number (the version field), 0..=31; change it when the content changes.
    pub sequence_number: u8,
    /// EAS_event_ID.
    pub event_id: u16,
    /// EAS_originator_code: 3 ASCII characters (`EAS`, `CIV`, `WXR`, `PEP`).
    pub originator: [u8; 3],
    /// EAS_event_code, ASCII (`EAN`, `TOR`, ...), at most 255 characters.
    pub event_code: String,
    /// ISO 639-2 language of both texts (`eng`, `zho`), 3 lowercase ASCII letters.
    pub language: [u8; 3],
    /// nature_of_activation_text (at most 255 bytes once coded).
    pub nature_of_activation: String,
    /// alert_message_time_remaining, seconds, 0..=120.
    pub time_remaining_s: u8,
    /// event_start_time, GPS seconds ([`gps_seconds`]); 0 = now.
    pub start_gps_s: u32,
    /// event_duration, minutes, 0..=6000.
    pub duration_min: u16,
    /// alert_priority, 0..=15: 0 test, 3 low, 7 medium, 11 high, 15 maximum.
    pub priority: u8,
    /// details_OOB_source_ID.
    pub details_oob_source_id: u16,
    /// details_major_channel_number, 0..=1023.
    pub details_major_channel: u16,
    /// details_minor_channel_number, 0..=1023.
    pub details_minor_channel: u16,
    /// audio_OOB_source_ID.
    pub audio_oob_source_id: u16,
    /// alert_text.
    pub alert_text: String,
    /// The locations, 1..=31 of them.
    pub locations: Vec<LocationCode>,
}

/// Builds the SCTE 18 section of `alert` (see [`Scte18Alert`] for the layout). Errors name the
/// first field out of range, or report a section over 4096 bytes.
pub fn scte18_section(alert: &Scte18Alert) -> Result<Vec<u8>, EmergencyError> {
    let a = alert;
    printable("originator", &a.originator)?;
    printable("event_code", a.event_code.as_bytes())?;
    if !a.language.iter().all(u8::is_ascii_lowercase) {
        return Err(invalid("language", "must be 3 lowercase ASCII letters"));
    }
    let nature = mss(a.language, &a.nature_of_activation);
    let checks: [(&str, u64, u64, u64); 9] = [
        ("sequence_number", a.sequence_number.into(), 0, 31),
        ("event_code", a.event_code.len() as u64, 0, 255),
        ("time_remaining_s", a.time_remaining_s.into(), 0, 120),
        ("duration_min", a.duration_min.into(), 0, 6000),
        ("priority", a.priority.into(), 0, 15),
        (
            "details_major_channel",
            a.details_major_channel.into(),
            0,
            1023,
        ),
        (
            "details_minor_channel",
            a.details_minor_channel.into(),
            0,
            1023,
        ),
        ("locations", a.locations.len() as u64, 1, 31),
        ("nature_of_activation", nature.len() as u64, 0, 255),
    ];
    for (field, value, min, max) in checks {
        range(field, value, min, max)?;
    }
    for (i, l) in a.locations.iter().enumerate() {
        let checks: [(&str, u64, u64); 3] = [
            ("state_code", l.state_code.into(), 99),
            ("county_subdivision", l.county_subdivision.into(), 9),
            ("county_code", l.county_code.into(), 909),
        ];
        for (field, value, max) in checks {
            range(&format!("locations[{i}].{field}"), value, 0, max)?;
        }
    }
    let text = mss(a.language, &a.alert_text);

    let mut b = vec![0]; // protocol_version
    b.extend_from_slice(&a.event_id.to_be_bytes());
    b.extend_from_slice(&a.originator);
    b.push(a.event_code.len() as u8);
    b.extend_from_slice(a.event_code.as_bytes());
    b.push(nature.len() as u8);
    b.extend_from_slice(&nature);
    b.push(a.time_remaining_s);
    b.extend_from_slice(&a.start_gps_s.to_be_bytes());
    b.extend_from_slice(&a.duration_min.to_be_bytes());
    b.extend_from_slice(&(0xFFF0 | u16::from(a.priority)).to_be_bytes());
    b.extend_from_slice(&a.details_oob_source_id.to_be_bytes());
    b.extend_from_slice(&(0xFC00 | a.details_major_channel).to_be_bytes());
    b.extend_from_slice(&(0xFC00 | a.details_minor_channel).to_be_bytes());
    b.extend_from_slice(&a.audio_oob_source_id.to_be_bytes());
    let len = too_long(SCTE18_TABLE_ID, text.len(), b.len())?;
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&text);
    b.push(a.locations.len() as u8);
    for l in &a.locations {
        b.push(l.state_code);
        b.push((l.county_subdivision << 4) | 0x0C | (l.county_code >> 8) as u8);
        b.push(l.county_code as u8);
    }
    b.push(0); // exception_count
    b.extend_from_slice(&0xFC00u16.to_be_bytes()); // descriptors_length 0
    finish(SCTE18_TABLE_ID, 0, a.sequence_number, &b)
}

/// Parses an SCTE 18 section: table_id, section_length, CRC, then every length inside.
/// protocol_version must be 0. Exceptions and descriptors are length-checked and skipped; of a
/// multiple_string_structure only the first string is read, and `language` is that of the
/// alert text (else of the nature of activation, else `eng`). Values are kept as found, even
/// outside the ranges [`scte18_section`] accepts.
pub fn parse_scte18(section: &[u8]) -> Result<Scte18Alert, EmergencyError> {
    let (_, sequence_number, mut r) = open_section(section, SCTE18_TABLE_ID)?;
    let offset = r.offset();
    let protocol_version = r.u8("protocol_version")?;
    if protocol_version != 0 {
        return Err(r.value("protocol_version", offset, protocol_version.into()));
    }
    let event_id = r.u16("EAS_event_ID")?;
    let originator = r.array("EAS_originator_code")?;
    let n = usize::from(r.u8("EAS_event_code_length")?);
    let event_code = String::from_utf8_lossy(r.take(n, "EAS_event_code")?).into_owned();
    let n = usize::from(r.u8("nature_of_activation_text_length")?);
    let (nature_lang, nature_of_activation) = read_mss(
        &mut r.sub(n, "nature_of_activation_text")?,
        "nature_of_activation_text",
    )?;
    let time_remaining_s = r.u8("alert_message_time_remaining")?;
    let start_gps_s = r.u32("event_start_time")?;
    let duration_min = r.u16("event_duration")?;
    let priority = (r.u16("alert_priority")? & 0x0F) as u8;
    let details_oob_source_id = r.u16("details_OOB_source_ID")?;
    let details_major_channel = r.u16("details_major_channel_number")? & 0x03FF;
    let details_minor_channel = r.u16("details_minor_channel_number")? & 0x03FF;
    let audio_oob_source_id = r.u16("audio_OOB_source_ID")?;
    let n = usize::from(r.u16("alert_text_length")?);
    let (text_lang, alert_text) = read_mss(&mut r.sub(n, "alert_text")?, "alert_text")?;
    let count = r.u8("location_code_count")?;
    let mut locations = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let l = r.take(3, "location_code")?;
        locations.push(LocationCode {
            state_code: l[0],
            county_subdivision: l[1] >> 4,
            county_code: u16::from_be_bytes([l[1], l[2]]) & 0x03FF,
        });
    }
    let exceptions = usize::from(r.u8("exception_count")?);
    r.take(5 * exceptions, "exceptions")?;
    let n = usize::from(r.u16("descriptors_length")? & 0x03FF);
    r.take(n, "descriptors")?;
    Ok(Scte18Alert {
        sequence_number,
        event_id,
        originator,
        event_code,
        language: text_lang.or(nature_lang).unwrap_or(*b"eng"),
        nature_of_activation,
        time_remaining_s,
        start_gps_s,
        duration_min,
        priority,
        details_oob_source_id,
        details_major_channel,
        details_minor_channel,
        audio_oob_source_id,
        alert_text,
        locations,
    })
}

/// GPS seconds of a UTC time, as in SCTE 18 event_start_time and the ATSC system_time: seconds
/// since 1980-01-06 00:00:00 UTC (the GPS epoch) plus [`GPS_UTC_OFFSET_S`], since GPS counts
/// the leap seconds UTC inserted (UTC = GPS − 18 s). Exact for times since 2017-01-01; `None`
/// before the epoch or past the 32-bit range (2116).
pub fn gps_seconds(utc: NaiveDateTime) -> Option<u32> {
    let s = (utc - gps_epoch()).num_seconds() + i64::from(GPS_UTC_OFFSET_S);
    u32::try_from(s).ok()
}

/// The UTC time of a GPS seconds count: the inverse of [`gps_seconds`].
pub fn utc_from_gps(gps_s: u32) -> NaiveDateTime {
    gps_epoch() + chrono::Duration::seconds(i64::from(gps_s) - i64::from(GPS_UTC_OFFSET_S))
}

fn gps_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1980, 1, 6)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Dates the 16-bit MJD can hold: MJD 0 and MJD 65535.
fn mjd_range() -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(1858, 11, 17).unwrap_or_default();
    (first, first + chrono::Duration::days(65535))
}

fn encode_message(i: usize, m: &EbMessage) -> Result<Vec<u8>, EmergencyError> {
    let f = |name: &str| format!("messages[{i}].{name}");
    if code_digits(&m.ebm_id).is_none() {
        return Err(EmergencyError::Digits {
            field: f("ebm_id"),
            expected: 35,
            found: hex(&m.ebm_id),
        });
    }
    let (first, last) = mjd_range();
    for (name, t) in [("start", m.start), ("end", m.end)] {
        if !(first..=last).contains(&t.date()) {
            return Err(invalid(
                &f(name),
                "outside the 16-bit MJD range 1858-11-17..=2038-04-22",
            ));
        }
    }
    if m.end < m.start {
        return Err(invalid(&f("end"), "before start"));
    }
    printable(&f("ebm_type"), &m.ebm_type)?;
    range(&f("level"), m.level.into(), 0, 4)?;
    range(&f("resource_codes"), m.resource_codes.len() as u64, 0, 255)?;
    for (j, code) in m.resource_codes.iter().enumerate() {
        if code_digits(code).is_none() {
            return Err(EmergencyError::Digits {
                field: f(&format!("resource_codes[{j}]")),
                expected: 23,
                found: hex(code),
            });
        }
    }
    let mut b = Vec::with_capacity(48 + 12 * m.resource_codes.len());
    b.extend_from_slice(&m.ebm_id);
    b.extend_from_slice(&m.original_network_id.to_be_bytes());
    b.extend_from_slice(&utc_time(m.start));
    b.extend_from_slice(&utc_time(m.end));
    b.extend_from_slice(&m.ebm_type);
    b.push((m.class.code() << 4) | m.level);
    b.push(m.resource_codes.len() as u8);
    for code in &m.resource_codes {
        b.extend_from_slice(code);
    }
    b.push(0xFE | u8::from(m.details.is_some()));
    if let Some(d) = &m.details {
        descriptors(&f("details.program_info"), &d.program_info)?;
        b.extend_from_slice(&d.transport_stream_id.to_be_bytes());
        b.extend_from_slice(&d.program_number.to_be_bytes());
        b.extend_from_slice(&(0xE000 | d.pcr_pid.value()).to_be_bytes());
        b.extend_from_slice(&(0xF000 | d.program_info.len() as u16).to_be_bytes());
        b.extend_from_slice(&d.program_info);
        let mut es = Vec::new();
        for (k, s) in d.streams.iter().enumerate() {
            descriptors(
                &f(&format!("details.streams[{k}].descriptors")),
                &s.descriptors,
            )?;
            es.push(s.stream_type);
            es.extend_from_slice(&(0xE000 | s.pid.value()).to_be_bytes());
            es.extend_from_slice(&(0xF000 | s.descriptors.len() as u16).to_be_bytes());
            es.extend_from_slice(&s.descriptors);
        }
        let len = too_long(EBIT_TABLE_ID, es.len(), b.len())?;
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&es);
    }
    Ok(b)
}

fn read_message(r: &mut Reader<'_>) -> Result<EbMessage, EmergencyError> {
    let ebm_id = r.array("EBM_id")?;
    let original_network_id = r.u16("EBM_original_network_id")?;
    let start = r.time("EBM_start_time")?;
    let end = r.time("EBM_end_time")?;
    let ebm_type = r.array("EBM_type")?;
    let offset = r.offset();
    let class_level = r.u8("EBM_class")?;
    let class = EbClass::from_code(class_level >> 4)
        .ok_or_else(|| r.value("EBM_class", offset, u64::from(class_level >> 4)))?;
    let count = r.u8("EBM_resource_number")?;
    let mut resource_codes = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        resource_codes.push(r.array("resource_code")?);
    }
    let details = if r.u8("details_channel_indicate")? & 1 == 1 {
        let transport_stream_id = r.u16("transport_stream_id")?;
        let program_number = r.u16("program_number")?;
        let pcr_pid = Pid::from_bits(r.u16("PCR_PID")?);
        let n = usize::from(r.u16("program_info_length")? & 0x0FFF);
        let program_info = Bytes::copy_from_slice(r.take(n, "program_info")?);
        // Written as 16 bits; read as 12 in case a sender sets reserved bits as in a PMT.
        let n = usize::from(r.u16("stream_info_length")? & 0x0FFF);
        let mut es = r.sub(n, "stream_info")?;
        let mut streams = Vec::new();
        while !es.is_empty() {
            let stream_type = es.u8("stream_type")?;
            let pid = Pid::from_bits(es.u16("elementary_PID")?);
            let n = usize::from(es.u16("ES_info_length")? & 0x0FFF);
            let descriptors = Bytes::copy_from_slice(es.take(n, "ES_info")?);
            streams.push(EsInfo {
                stream_type,
                pid,
                descriptors,
            });
        }
        Some(DetailsChannel {
            transport_stream_id,
            program_number,
            pcr_pid,
            program_info,
            streams,
        })
    } else {
        None
    };
    Ok(EbMessage {
        ebm_id,
        original_network_id,
        start,
        end,
        ebm_type,
        class,
        level: class_level & 0x0F,
        resource_codes,
        details,
    })
}

/// A multiple_string_structure with one string (see [`Scte18Alert`] for the modes).
fn mss(language: [u8; 3], text: &str) -> Vec<u8> {
    let mut out = vec![1, language[0], language[1], language[2], 0];
    let mut segments = 0u8;
    let mut push = |out: &mut Vec<u8>, mode: u8, bytes: &[u8]| {
        out.extend_from_slice(&[0, mode, bytes.len() as u8]);
        out.extend_from_slice(bytes);
        segments = segments.saturating_add(1);
    };
    if text.chars().all(|c| u32::from(c) <= 0xFF) {
        let latin1: Vec<u8> = text.chars().map(|c| u32::from(c) as u8).collect();
        for chunk in latin1.chunks(255) {
            push(&mut out, 0x00, chunk);
        }
    } else {
        let units: Vec<u16> = text.encode_utf16().collect();
        let mut rest = &units[..];
        while !rest.is_empty() {
            let mut n = rest.len().min(127);
            if n < rest.len() && (0xD800..=0xDBFF).contains(&rest[n - 1]) {
                n -= 1; // keep the surrogate pair together
            }
            let bytes: Vec<u8> = rest[..n].iter().flat_map(|u| u.to_be_bytes()).collect();
            push(&mut out, 0x3F, &bytes);
            rest = &rest[n..];
        }
    }
    // More than 255 segments is over 32 KB, which the section size check rejects anyway.
    out[4] = segments;
    out
}

/// Reads a multiple_string_structure filling `r` (empty: no string): the language and text of
/// its first string.
fn read_mss(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<(Option<[u8; 3]>, String), EmergencyError> {
    if r.is_empty() {
        return Ok((None, String::new()));
    }
    let mut first = None;
    for k in 0..r.u8(field)? {
        let language = r.array(field)?;
        let mut units = Vec::new();
        for _ in 0..r.u8(field)? {
            let offset = r.offset();
            let [compression, mode, n] = r.array(field)?;
            let bytes = r.take(usize::from(n), field)?;
            if k > 0 {
                continue;
            }
            match (compression, mode) {
                (0, 0x00..=0x06 | 0x09..=0x10 | 0x20..=0x27 | 0x30..=0x33) => {
                    units.extend(bytes.iter().map(|&b| u16::from(mode) << 8 | u16::from(b)));
                }
                (0, 0x3F) if n % 2 == 0 => units.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|p| u16::from_be_bytes([p[0], p[1]])),
                ),
                (0, 0x3F) => return Err(r.value(field, offset + 2, n.into())),
                (0, _) => return Err(r.value(field, offset + 1, mode.into())),
                _ => return Err(r.value(field, offset, compression.into())),
            }
        }
        if k == 0 {
            first = Some((language, String::from_utf16_lossy(&units)));
        }
    }
    Ok(match first {
        Some((language, text)) => (Some(language), text),
        None => (None, String::new()),
    })
}

/// Checks table_id, section_length and CRC; returns table_id_extension, version and a reader
/// over the body (between the 8-byte header and the CRC).
fn open_section(section: &[u8], table_id: u8) -> Result<(u16, u8, Reader<'_>), EmergencyError> {
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
fn finish(table_id: u8, ext: u16, version: u8, body: &[u8]) -> Result<Vec<u8>, EmergencyError> {
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
fn too_long(table_id: u8, n: usize, before: usize) -> Result<u16, EmergencyError> {
    u16::try_from(n).map_err(|_| EmergencyError::TooLong {
        table_id,
        len: 8 + before + n + 4,
        max: MAX_PRIVATE_SECTION_SIZE,
    })
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

/// Checks a descriptor loop: whole descriptors, at most 4095 bytes (a 12-bit length).
fn descriptors(field: &str, loop_: &[u8]) -> Result<(), EmergencyError> {
    range(field, loop_.len() as u64, 0, 0x0FFF)?;
    let used: usize = descriptor_iter(loop_).map(|(_, b)| 2 + b.len()).sum();
    if used != loop_.len() {
        return Err(invalid(field, "not a whole number of descriptors"));
    }
    Ok(())
}

fn check_digits(field: &str, digits: &str, expected: usize) -> Result<(), EmergencyError> {
    if digits.len() != expected || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmergencyError::Digits {
            field: field.into(),
            expected,
            found: digits.into(),
        });
    }
    Ok(())
}

/// Nibble 0xF then the `2N - 1` digits, packed BCD.
fn bcd_code<const N: usize>(field: &str, digits: &str) -> Result<[u8; N], EmergencyError> {
    check_digits(field, digits, 2 * N - 1)?;
    let mut out = [0u8; N];
    let nibbles = std::iter::once(0x0F).chain(digits.bytes().map(|b| b - b'0'));
    for (i, n) in nibbles.enumerate() {
        out[i / 2] |= if i % 2 == 0 { n << 4 } else { n };
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bounds-checked reads over part of a section; errors carry the offset in the section.
struct Reader<'a> {
    table_id: u8,
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the section.
    base: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EmergencyError> {
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

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EmergencyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EmergencyError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EmergencyError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EmergencyError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn time(&mut self, field: &'static str) -> Result<NaiveDateTime, EmergencyError> {
        let offset = self.offset();
        let b = self.array(field)?;
        parse_utc_time(&b).ok_or_else(|| {
            let mut v = [0u8; 8];
            v[3..].copy_from_slice(&b);
            self.value(field, offset, u64::from_be_bytes(v))
        })
    }

    /// The next `n` bytes as a reader of their own (what a length field covers).
    fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, EmergencyError> {
        let base = self.offset();
        let buf = self.take(n, field)?;
        Ok(Reader {
            table_id: self.table_id,
            buf,
            pos: 0,
            base,
        })
    }

    fn value(&self, field: &'static str, offset: usize, value: u64) -> EmergencyError {
        EmergencyError::Value {
            table_id: self.table_id,
            field,
            offset,
            value,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}
