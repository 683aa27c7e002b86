//! The Chinese cable EBIT (应急广播索引表, table_id 0xFD), the index of active emergency
//! broadcast messages, in the long-section syntax of ISO/IEC 13818-1 §2.4.4.10.
//!
//! **\[V\]**: the layout is taken from vendor code implementing GD/J 082 / GY/T 385 / GY/T 393
//! (docs STANDARDS §1.2); it has *not* been checked against the official text, which is not
//! freely published. Times are MJD + BCD as in the DVB TDT (ETSI EN 300 468 Annex C).

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use playout::psi::{descriptor_iter, EsInfo};
use playout::ts::Pid;

use super::section::{finish, open_section, too_long, Reader};
use super::{invalid, printable, range, EmergencyError};
use crate::si::utc_time;

/// table_id of the EBIT (应急广播索引表) \[V\].
pub const EBIT_TABLE_ID: u8 = 0xFD;

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
