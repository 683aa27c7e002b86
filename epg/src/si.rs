//! DVB service information (ETSI EN 300 468): the time and text codings, long-form SI
//! sections, and the tables built from them: SDT (§5.2.3), EIT present/following (§5.2.4),
//! TDT (§5.2.5) and TOT (§5.2.6), with the descriptors they carry (service 0x48, short_event
//! 0x4D, extended_event 0x4E, content 0x54, parental_rating 0x55, local_time_offset 0x58).
//! Parsers for the same, so every table round-trips in tests.

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use playout::psi::crc32_mpeg2;

pub use crate::text::{decode_text, encode_text, Charset, TextError};

/// Modified Julian Date of a date (EN 300 468 Annex C).
pub fn mjd(date: NaiveDate) -> u16 {
    let epoch = NaiveDate::from_ymd_opt(1858, 11, 17).unwrap_or_default();
    (date - epoch).num_days() as u16
}

fn bcd(v: u32) -> u8 {
    (((v / 10) << 4) | (v % 10)) as u8
}

fn from_bcd(b: u8) -> u32 {
    u32::from(b >> 4) * 10 + u32::from(b & 0x0F)
}

/// The 40-bit UTC time: MJD, then hours, minutes, seconds in BCD.
pub fn utc_time(t: NaiveDateTime) -> [u8; 5] {
    let m = mjd(t.date()).to_be_bytes();
    [m[0], m[1], bcd(t.hour()), bcd(t.minute()), bcd(t.second())]
}

/// Reads a 40-bit UTC time.
pub fn parse_utc_time(b: &[u8; 5]) -> Option<NaiveDateTime> {
    let epoch = NaiveDate::from_ymd_opt(1858, 11, 17)?;
    let date = epoch + chrono::Duration::days(i64::from(u16::from_be_bytes([b[0], b[1]])));
    date.and_hms_opt(from_bcd(b[2]), from_bcd(b[3]), from_bcd(b[4]))
}

/// A 24-bit BCD duration hh:mm:ss (at most 99:59:59).
pub fn bcd_duration(secs: u64) -> [u8; 3] {
    let s = secs.min(99 * 3600 + 59 * 60 + 59) as u32;
    [bcd(s / 3600), bcd(s / 60 % 60), bcd(s % 60)]
}

fn parse_bcd_duration(b: &[u8]) -> u64 {
    u64::from(from_bcd(b[0]) * 3600 + from_bcd(b[1]) * 60 + from_bcd(b[2]))
}

/// A long-form SI section: syntax indicator and reserved bits set, `header_tail` (the table's
/// fields after last_section_number), the body, CRC-32.
pub fn long_section(
    table_id: u8,
    extension: u16,
    version: u8,
    section: (u8, u8),
    header_tail: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let len = 5 + header_tail.len() + body.len() + 4;
    debug_assert!(len <= 4093, "section_length {len} over the 12-bit limit");
    let mut s = Vec::with_capacity(3 + len);
    s.push(table_id);
    s.extend_from_slice(&(0xF000 | len as u16).to_be_bytes());
    s.extend_from_slice(&extension.to_be_bytes());
    s.push(0xC0 | ((version & 0x1F) << 1) | 1);
    s.push(section.0);
    s.push(section.1);
    s.extend_from_slice(header_tail);
    s.extend_from_slice(body);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A descriptor: tag, length, payload (at most 255 bytes, cut otherwise).
pub(crate) fn descriptor(tag: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len().min(255);
    let mut d = vec![tag, n as u8];
    d.extend_from_slice(&payload[..n]);
    d
}

/// A service in the SDT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// service_id (the program number).
    pub service_id: u16,
    /// Name (service_descriptor).
    pub name: String,
    /// Provider name.
    pub provider: String,
    /// service_type: 0x01 digital television, 0x19 advanced codec HD.
    pub service_type: u8,
    /// EIT present/following carried for it.
    pub eit_pf: bool,
    /// EIT schedule carried for it.
    pub eit_schedule: bool,
}

/// SDT actual (table 0x42) on PID 0x11: its first section (all of it for up to about twenty
/// services; [`crate::network::sdt_sections`] gives every section).
pub fn sdt(
    transport_stream_id: u16,
    original_network_id: u16,
    version: u8,
    services: &[Service],
    charset: Charset,
) -> Result<Vec<u8>, crate::network::TableError> {
    let mut sections = crate::network::sdt_sections(
        true,
        (transport_stream_id, original_network_id),
        version,
        services,
        charset,
    )?;
    Ok(sections.swap_remove(0))
}

/// An event in the EIT.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// event_id, stable for the event.
    pub event_id: u16,
    /// Start (UTC).
    pub start: NaiveDateTime,
    /// Duration in seconds.
    pub duration_s: u64,
    /// running_status: 4 running, 1 not running.
    pub running_status: u8,
    /// ISO 639-2 language of the texts.
    pub language: String,
    /// Title (short_event event_name).
    pub title: String,
    /// Short text (short_event text).
    pub text: String,
    /// Long description, split over extended_event descriptors.
    pub extended: String,
    /// content_nibble_level_1/2 byte (e.g. 0x20 news), if known.
    pub content: Option<u8>,
    /// Minimum age (parental_rating: age − 3), 0 for none.
    pub min_age: u8,
}

/// The content_nibble_level_1/2 byte (EN 300 468 §6.2.9, content_descriptor) of a free-text
/// genre, for the common ones (case-insensitive English); `None` for any other.
pub fn content_nibble(genre: &str) -> Option<u8> {
    Some(match genre.to_ascii_lowercase().as_str() {
        "movie" | "film" | "drama" => 0x10,
        "news" | "current affairs" => 0x20,
        "show" | "game show" | "entertainment" => 0x30,
        "sports" | "sport" => 0x40,
        "children" | "kids" => 0x50,
        "music" => 0x60,
        "arts" | "culture" => 0x70,
        "social" | "politics" => 0x80,
        "education" | "documentary" => 0x90,
        "leisure" | "hobbies" => 0xA0,
        _ => return None,
    })
}

pub(crate) fn lang_code(l: &str) -> [u8; 3] {
    let b = l.as_bytes();
    if b.len() == 3 {
        [b[0], b[1], b[2]]
    } else {
        *b"und"
    }
}

fn event_descriptors(e: &Event, charset: Charset) -> Result<Vec<u8>, TextError> {
    let lang = lang_code(&e.language);
    let mut out = Vec::new();
    // short_event: 3 + 1 + name + 1 + text <= 255.
    let name = encode_text(&e.title, charset, 120)?;
    let text = encode_text(&e.text, charset, 250 - 5 - name.len())?;
    let mut p = lang.to_vec();
    p.push(name.len() as u8);
    p.extend_from_slice(&name);
    p.push(text.len() as u8);
    p.extend_from_slice(&text);
    out.extend(descriptor(0x4D, &p));
    // extended_event: the long text in pieces cut on character boundaries, as many as fit
    // one section with the event's other descriptors (what does not fit is left out).
    let budget = EIT_SECTION_MAX - 14 - 4 - 12 - 10;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut used = out.len();
    let extended = crate::text::si_text(&e.extended);
    let mut rest: &str = &extended;
    while !rest.is_empty() && pieces.len() < 16 {
        let selector = charset.selector().len();
        let room = budget.saturating_sub(used + 8).min(245);
        if room <= selector + 4 {
            break;
        }
        let piece = encode_text(rest, charset, room)?;
        used += 8 + piece.len();
        let taken = decode_text(&piece).chars().count();
        let consumed: usize = rest.chars().take(taken).map(char::len_utf8).sum();
        if consumed == 0 || piece.len() <= selector {
            break;
        }
        pieces.push(piece);
        rest = &rest[consumed..];
    }
    let last = pieces.len().saturating_sub(1) as u8;
    for (i, piece) in pieces.iter().enumerate() {
        let mut p = vec![((i as u8) << 4) | last];
        p.extend_from_slice(&lang);
        p.push(0); // no items
        p.push(piece.len() as u8);
        p.extend_from_slice(piece);
        out.extend(descriptor(0x4E, &p));
    }
    if let Some(c) = e.content {
        out.extend(descriptor(0x54, &[c, 0x00]));
    }
    if e.min_age >= 4 {
        let mut p = b"CHN".to_vec();
        // 0x01..=0x0F: minimum age − 3 (4..=18); beyond is broadcaster-defined.
        p.push(e.min_age.min(18) - 3);
        out.extend(descriptor(0x55, &p));
    }
    Ok(out)
}

/// One event of an EIT event loop.
pub(crate) fn event_bytes(e: &Event, charset: Charset) -> Result<Vec<u8>, TextError> {
    let d = event_descriptors(e, charset)?;
    let mut b = Vec::with_capacity(12 + d.len());
    b.extend_from_slice(&e.event_id.to_be_bytes());
    b.extend_from_slice(&utc_time(e.start));
    b.extend_from_slice(&bcd_duration(e.duration_s));
    b.extend_from_slice(&((u16::from(e.running_status & 7) << 13) | d.len() as u16).to_be_bytes());
    b.extend_from_slice(&d);
    Ok(b)
}

/// Largest EIT section (EN 300 468 §5.2.4: 4096 bytes).
pub const EIT_SECTION_MAX: usize = 4096;

/// EIT schedule actual for one service over `days` days from `today` (00:00 UTC): tables
/// 0x50.. of 4 days each, every 3-hour segment signalled (an empty section when it has no
/// event), at most 8 sections of at most 4096 bytes per segment, section numbers, segment and
/// table ends set as EN 300 468 §5.2.4 says. Events are placed by start time; those outside the
/// window are left out. Returns the sections in table and section order.
#[allow(clippy::too_many_arguments)]
pub fn eit_schedule(
    service_id: u16,
    transport_stream_id: u16,
    original_network_id: u16,
    version: u8,
    events: &[Event],
    today: NaiveDate,
    days: u32,
    charset: Charset,
) -> Result<Vec<Vec<u8>>, TextError> {
    let days = days.clamp(1, 64);
    let start = today.and_hms_opt(0, 0, 0).unwrap_or_default();
    let segments = days * 8;
    // Events by segment (index from the window start), in start order.
    let mut by_segment: Vec<Vec<&Event>> = vec![Vec::new(); segments as usize];
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.start);
    for e in sorted {
        let secs = (e.start - start).num_seconds();
        if secs >= 0 && secs < i64::from(segments) * 3 * 3600 {
            by_segment[(secs / (3 * 3600)) as usize].push(e);
        }
    }
    // Sections of each segment: events packed up to the size limit, at most 8.
    let head = 14 + 4;
    let mut seg_sections: Vec<Vec<Vec<u8>>> = Vec::new();
    for evs in &by_segment {
        let mut secs: Vec<Vec<u8>> = vec![Vec::new()];
        for e in evs {
            let b = event_bytes(e, charset)?;
            let last = secs.last_mut().map_or(0, |s| s.len());
            if head + last + b.len() > EIT_SECTION_MAX && last > 0 {
                if secs.len() == 8 {
                    break; // the segment is full: later events of it are left out
                }
                secs.push(Vec::new());
            }
            if let Some(s) = secs.last_mut() {
                s.extend_from_slice(&b);
            }
        }
        seg_sections.push(secs);
    }
    let tables = days.div_ceil(4) as usize;
    let last_table_id = 0x50 + tables as u8 - 1;
    let mut out = Vec::new();
    for t in 0..tables {
        let table_id = 0x50 + t as u8;
        let segs = &seg_sections[t * 32..((t + 1) * 32).min(seg_sections.len())];
        let last_seg = segs.len() - 1;
        let last_section = (last_seg * 8 + segs[last_seg].len() - 1) as u8;
        for (k, secs) in segs.iter().enumerate() {
            let seg_last = (k * 8 + secs.len() - 1) as u8;
            for (j, body) in secs.iter().enumerate() {
                let mut tail = transport_stream_id.to_be_bytes().to_vec();
                tail.extend_from_slice(&original_network_id.to_be_bytes());
                tail.push(seg_last);
                tail.push(last_table_id);
                out.push(long_section(
                    table_id,
                    service_id,
                    version,
                    ((k * 8 + j) as u8, last_section),
                    &tail,
                    body,
                ));
            }
        }
    }
    Ok(out)
}

/// EIT present/following actual (table 0x4E) for one service: section 0 is the present
/// event, section 1 the following one; both are always sent, empty when there is none.
pub fn eit_pf(
    service_id: u16,
    transport_stream_id: u16,
    original_network_id: u16,
    version: u8,
    present: Option<&Event>,
    following: Option<&Event>,
    charset: Charset,
) -> Result<[Vec<u8>; 2], TextError> {
    eit_pf_table(
        true,
        service_id,
        (transport_stream_id, original_network_id),
        version,
        (present, following),
        charset,
    )
}

/// EIT present/following actual (0x4E) or other (0x4F, a service of another transport
/// stream `ts` = (transport_stream_id, original_network_id)): sections 0 and 1, always both.
pub fn eit_pf_table(
    actual: bool,
    service_id: u16,
    ts: (u16, u16),
    version: u8,
    (present, following): (Option<&Event>, Option<&Event>),
    charset: Charset,
) -> Result<[Vec<u8>; 2], TextError> {
    let table_id = if actual { 0x4E } else { 0x4F };
    let mut tail = ts.0.to_be_bytes().to_vec();
    tail.extend_from_slice(&ts.1.to_be_bytes());
    tail.push(1); // segment_last_section_number
    tail.push(table_id); // last_table_id
    let section = |n: u8, e: Option<&Event>| -> Result<Vec<u8>, TextError> {
        let mut body = Vec::new();
        if let Some(e) = e {
            let d = event_descriptors(e, charset)?;
            body.extend_from_slice(&e.event_id.to_be_bytes());
            body.extend_from_slice(&utc_time(e.start));
            body.extend_from_slice(&bcd_duration(e.duration_s));
            body.extend_from_slice(
                &((u16::from(e.running_status & 7) << 13) | d.len() as u16).to_be_bytes(),
            );
            body.extend_from_slice(&d);
        }
        Ok(long_section(
            table_id,
            service_id,
            version,
            (n, 1),
            &tail,
            &body,
        ))
    };
    Ok([section(0, present)?, section(1, following)?])
}

/// TDT (table 0x70): the UTC time, a short section without CRC.
pub fn tdt(now: NaiveDateTime) -> Vec<u8> {
    let mut s = vec![0x70, 0x70, 0x05];
    s.extend_from_slice(&utc_time(now));
    s
}

/// TOT (table 0x73): the UTC time and a local_time_offset_descriptor for `country` (e.g.
/// CHN) at `offset_min` minutes from UTC, with CRC.
pub fn tot(now: NaiveDateTime, country: &str, offset_min: i32) -> Vec<u8> {
    let mut d = lang_code(country).to_vec();
    d.push(0x02 | u8::from(offset_min < 0)); // region 0, reserved 1, polarity
    let m = offset_min.unsigned_abs();
    d.push(bcd(m / 60));
    d.push(bcd(m % 60));
    d.extend_from_slice(&utc_time(now)); // time_of_change: none planned
    d.push(bcd(m / 60));
    d.push(bcd(m % 60));
    let desc = descriptor(0x58, &d);
    let len = 5 + 2 + desc.len() + 4;
    let mut s = vec![0x73, 0x70 | (len >> 8) as u8, len as u8];
    s.extend_from_slice(&utc_time(now));
    s.extend_from_slice(&(0xF000 | desc.len() as u16).to_be_bytes());
    s.extend_from_slice(&desc);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// The events of an EIT section (any table): (section_number, events).
pub fn parse_eit_events(section: &[u8]) -> Option<(u8, Vec<Event>)> {
    if section.len() < 18
        || crc32_mpeg2(&section[..section.len() - 4]).to_be_bytes() != section[section.len() - 4..]
    {
        return None;
    }
    let mut body = &section[14..section.len() - 4];
    let mut events = Vec::new();
    while !body.is_empty() {
        let dlen = usize::from(u16::from_be_bytes([*body.get(10)?, *body.get(11)?]) & 0x0FFF);
        let one = body.get(..12 + dlen)?;
        let mut copy = section[..14].to_vec();
        copy.extend_from_slice(one);
        let crc = crc32_mpeg2(&copy);
        copy.extend_from_slice(&crc.to_be_bytes());
        if let Some((_, Some(e))) = parse_eit(&copy) {
            events.push(e);
        }
        body = &body[12 + dlen..];
    }
    Some((section[6], events))
}

/// The first event of an EIT section: (section_number, event).
pub fn parse_eit(section: &[u8]) -> Option<(u8, Option<Event>)> {
    if section.len() < 18
        || crc32_mpeg2(&section[..section.len() - 4]).to_be_bytes() != section[section.len() - 4..]
    {
        return None;
    }
    let number = section[6];
    let body = &section[14..section.len() - 4];
    if body.is_empty() {
        return Some((number, None));
    }
    if body.len() < 12 {
        return None;
    }
    let mut e = Event {
        event_id: u16::from_be_bytes([body[0], body[1]]),
        start: parse_utc_time(&[body[2], body[3], body[4], body[5], body[6]])?,
        duration_s: parse_bcd_duration(&body[7..10]),
        running_status: body[10] >> 5,
        ..Event::default()
    };
    let dlen = usize::from(u16::from_be_bytes([body[10], body[11]]) & 0x0FFF);
    let mut d = body.get(12..12 + dlen)?;
    while d.len() >= 2 {
        let (tag, n) = (d[0], usize::from(d[1]));
        let p = d.get(2..2 + n)?;
        match tag {
            0x4D => {
                e.language = String::from_utf8_lossy(p.get(..3)?).into_owned();
                let nl = usize::from(*p.get(3)?);
                e.title = decode_text(p.get(4..4 + nl)?);
                let tl = usize::from(*p.get(4 + nl)?);
                e.text = decode_text(p.get(5 + nl..5 + nl + tl)?);
            }
            0x4E => {
                // descriptor numbers, language, then the items (skipped) and the text.
                let items = usize::from(*p.get(4)?);
                let tl = usize::from(*p.get(5 + items)?);
                e.extended
                    .push_str(&decode_text(p.get(6 + items..6 + items + tl)?));
            }
            0x54 => e.content = p.first().copied(),
            0x55 => e.min_age = p.get(3).map_or(0, |r| r.saturating_add(3)),
            _ => {}
        }
        d = &d[2 + n..];
    }
    Some((number, Some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
    }

    #[test]
    fn en_300_468_annex_c_time_vector() {
        // 1993-10-13 12:45:00 → 0xC079124500.
        assert_eq!(
            utc_time(at(1993, 10, 13, 12, 45, 0)),
            [0xC0, 0x79, 0x12, 0x45, 0x00]
        );
        assert_eq!(
            parse_utc_time(&[0xC0, 0x79, 0x12, 0x45, 0x00]),
            Some(at(1993, 10, 13, 12, 45, 0))
        );
        assert_eq!(bcd_duration(5400 + 30), [0x01, 0x30, 0x30]);
        assert_eq!(mjd(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()), 61_367);
    }

    #[test]
    fn a_very_long_description_still_fits_one_section() {
        for charset in [Charset::Utf8, Charset::Gb2312] {
            let e = Event {
                event_id: 1,
                start: at(2026, 11, 23, 11, 0, 0),
                duration_s: 60,
                running_status: 4,
                language: "zho".into(),
                title: "长".repeat(200),
                text: "短".repeat(200),
                extended: "很长的节目介绍".repeat(1000),
                content: Some(0x20),
                min_age: 21,
            };
            let [s0, _] = eit_pf(1, 1, 1, 0, Some(&e), None, charset).unwrap();
            assert!(s0.len() <= EIT_SECTION_MAX, "{}", s0.len());
            let (_, back) = parse_eit(&s0).unwrap();
            let back = back.unwrap();
            assert!(back.extended.chars().count() > 1000);
            assert!(e.extended.starts_with(&back.extended));
            assert_eq!(back.min_age, 18, "ratings beyond 18 are sent as 18");
            let sections = eit_schedule(
                1,
                1,
                1,
                0,
                std::slice::from_ref(&e),
                e.start.date(),
                1,
                charset,
            )
            .unwrap();
            assert!(sections.iter().all(|s| s.len() <= EIT_SECTION_MAX));
        }
    }

    #[test]
    fn eit_pf_round_trips_with_chinese_in_both_charsets() {
        let present = Event {
            event_id: 0x1234,
            start: at(2026, 11, 23, 11, 0, 0),
            duration_s: 1800,
            running_status: 4,
            language: "zho".into(),
            title: "新闻联播".into(),
            text: "每晚七点".into(),
            extended: "很长的节目介绍。".repeat(40),
            content: Some(0x20),
            min_age: 12,
        };
        for charset in [Charset::Utf8, Charset::Gb2312] {
            let [s0, s1] = eit_pf(101, 1, 1, 3, Some(&present), None, charset).unwrap();
            assert_eq!(s0[0], 0x4E);
            let (n, e) = parse_eit(&s0).unwrap();
            assert_eq!(n, 0);
            assert_eq!(e.unwrap(), present, "{charset:?}");
            assert_eq!(
                parse_eit(&s1).unwrap(),
                (1, None),
                "following sent even when empty"
            );
        }
    }

    #[test]
    fn eit_schedule_segments_sections_and_round_trip() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        // Every 20 minutes for 7 days, none on day 2 between 06:00 and 09:00 (an empty
        // segment), long descriptions so segments need several sections.
        let events: Vec<Event> = (0..7 * 72)
            .map(|k| {
                let start = today.and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(20 * k);
                Event {
                    event_id: k as u16 + 1,
                    start,
                    duration_s: 1200,
                    running_status: 1,
                    language: "zho".into(),
                    title: format!("节目 {k}"),
                    text: "简介".into(),
                    extended: "很长的介绍。".repeat(60),
                    content: Some(0x20),
                    min_age: 0,
                }
            })
            .filter(|e| {
                let h = (e.start - today.and_hms_opt(0, 0, 0).unwrap()).num_hours();
                !(54..57).contains(&h)
            })
            .collect();
        let sections = eit_schedule(101, 1, 1, 2, &events, today, 7, Charset::Utf8).unwrap();
        let mut seen = Vec::new();
        let mut tables = std::collections::BTreeSet::new();
        for s in &sections {
            assert!(s.len() <= EIT_SECTION_MAX);
            let (table_id, number, last, seg_last, last_table) = (s[0], s[6], s[7], s[12], s[13]);
            tables.insert(table_id);
            assert_eq!(last_table, 0x51, "7 days: tables 0x50 and 0x51");
            assert_eq!(
                seg_last / 8,
                number / 8,
                "segment_last_section_number in its segment"
            );
            assert!(number <= seg_last && seg_last <= last);
            let (_, evs) = parse_eit_events(s).unwrap();
            for e in &evs {
                let seg = (e.start - today.and_hms_opt(0, 0, 0).unwrap()).num_hours() / 3 % 32;
                assert_eq!(i64::from(number / 8), seg, "event in its 3-hour segment");
            }
            seen.extend(evs);
        }
        assert_eq!(tables.into_iter().collect::<Vec<_>>(), [0x50, 0x51]);
        assert_eq!(seen, events, "every event once, in order, round trip");
        // The empty segment (day 2, 06:00-09:00 = segment 18 of table 0x50) is signalled.
        assert!(sections
            .iter()
            .any(|s| s[0] == 0x50 && s[6] == 18 * 8 && parse_eit_events(s).unwrap().1.is_empty()));
        // Some segments needed more than one section.
        assert!(sections.iter().any(|s| s[6] % 8 > 0));
    }

    #[test]
    fn sdt_tdt_tot_layouts() {
        let s = sdt(
            1,
            1,
            0,
            &[Service {
                service_id: 101,
                name: "中央一套".into(),
                provider: "Demo".into(),
                service_type: 0x01,
                eit_pf: true,
                eit_schedule: false,
            }],
            Charset::Utf8,
        )
        .unwrap();
        assert_eq!(s[0], 0x42);
        assert_eq!(
            crc32_mpeg2(&s[..s.len() - 4]).to_be_bytes(),
            s[s.len() - 4..]
        );
        assert_eq!(
            &s[11..13],
            &[0x00, 0x65],
            "service_id 101 first in the loop"
        );
        assert_eq!(
            tdt(at(1993, 10, 13, 12, 45, 0)),
            [0x70, 0x70, 0x05, 0xC0, 0x79, 0x12, 0x45, 0x00]
        );
        let t = tot(at(2026, 11, 23, 11, 0, 0), "CHN", 480);
        assert_eq!(t[0], 0x73);
        assert_eq!(&t[10..15], &[0x58, 13, b'C', b'H', b'N']);
        assert_eq!(&t[16..18], &[0x08, 0x00], "+08:00");
        assert_eq!(
            crc32_mpeg2(&t[..t.len() - 4]).to_be_bytes(),
            t[t.len() - 4..]
        );
    }

    #[test]
    fn content_nibbles_of_common_genres() {
        assert_eq!(content_nibble("News"), Some(0x20));
        assert_eq!(content_nibble("film"), Some(0x10));
        assert_eq!(content_nibble("Documentary"), Some(0x90));
        assert_eq!(content_nibble("hobbies"), Some(0xA0));
        assert_eq!(content_nibble("quiz"), None);
    }
}
