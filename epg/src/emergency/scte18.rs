//! The SCTE 18 cable Emergency Alert Message (ANSI/SCTE 18, table_id 0xD8, in-band on PID
//! 0x1FFB; docs STANDARDS §1.4), one long section (ISO/IEC 13818-1 §2.4.4.10), with its texts
//! in the ATSC A/65 §6.10 `multiple_string_structure` and its start time in GPS seconds.

use chrono::{NaiveDate, NaiveDateTime};
use playout::ts::Pid;

use super::section::{finish, open_section, too_long, Reader};
use super::{invalid, printable, range, EmergencyError};

/// table_id of the SCTE 18 cable_emergency_alert section.
pub const SCTE18_TABLE_ID: u8 = 0xD8;
/// The in-band PID of SCTE 18 alerts (the SCTE/ATSC base PID).
pub const SCTE18_PID: Pid = Pid::from_bits(0x1FFB);
/// Leap seconds between GPS time and UTC: GPS runs 18 s ahead of UTC since 2017-01-01 (no leap
/// second has been added since; update this and the callers' data if one is).
pub const GPS_UTC_OFFSET_S: u32 = 18;

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
