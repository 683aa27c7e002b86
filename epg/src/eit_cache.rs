//! An incremental EIT schedule for one service (ETSI EN 300 468 §5.2.4): the same tables
//! 0x50.. as [`crate::si::eit_schedule`], byte for byte, kept between updates so that an edit
//! costs what it touches.
//!
//! version_number belongs to a *sub-table* (EN 300 468 §5.1.2, ISO/IEC 13818-1 §2.4.4.11):
//! one table_id with one service_id, transport_stream_id and original_network_id, here one
//! table of 4 days (32 segments of 3 hours). [`EitSchedule::update`]:
//!
//! - places the events in their 3-hour segments as `eit_schedule` does (stable sort by start,
//!   events outside the window left out, at most 8 sections of 4096 bytes per segment);
//! - encodes again only the segments whose events differ from the cached ones (exact
//!   equality, so the cache keeps a copy of the events: about as many bytes again as the
//!   sections; coding the texts is the costly part);
//! - leaves a table whose sections would not change alone: same version, same [`Bytes`];
//! - gives a table that changes version + 1 (mod 32). Its re-encoded segments get new
//!   sections; its other sections are copies with the new version_number (and
//!   last_section_number) and a new CRC, as the version is per table. That CRC comes from
//!   the old one and the header's difference (CRC linearity), not from a pass over the section.
//!
//! A date change (`today` moves) shifts every segment: segment k of the new window is segment
//! k + 8·Δdays of the old one. The cache looks segments up by that shift, so the segments
//! still in the window keep their encoded event loops and only the new day is encoded. Every
//! section moves to another section_number or table, though, so every table whose bytes
//! change gets new headers (and CRCs, as above) over its cached event loops and a new version:
//! in practice all of them. Tables whose bytes come out the same (all segments empty) keep
//! their version.
//!
//! [`EitBuilds`] keeps the schedule of every service and does the [`EitJob`]s a
//! [`crate::carousel::Carousel`] asks for, answering with the tables that changed ([`Built`]).
//! Encoding a week takes milliseconds, so a driver pacing many streams in real time runs it on
//! a thread of its own; an offline one calls it inline.

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;
use chrono::NaiveDate;

use crate::si::{event_bytes, long_section, Charset, Event, TextError, EIT_SECTION_MAX};

const SEGMENT_S: i64 = 3 * 3600;
const SEGMENTS_PER_DAY: usize = 8;
const SEGMENTS_PER_TABLE: usize = 32;
const SECTIONS_PER_SEGMENT: usize = 8;
/// The section header up to and including last_table_id.
const HEADER: usize = 14;
const CRC: usize = 4;

/// What one [`EitSchedule::update`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// 3-hour segments whose events were encoded again (all of them on the first build).
    pub segments_encoded: usize,
    /// Sections with new bytes: every section of each changed table.
    pub sections_emitted: usize,
    /// table_ids of the tables whose sections changed, ascending. After the first build each
    /// of them has version + 1 (mod 32); every other table kept its version and `Bytes`.
    pub changed_tables: Vec<u8>,
    /// The first build or a date change (a new window); see the module documentation.
    pub new_window: bool,
}

/// One table (sub-table) of the schedule, as [`EitSchedule::tables`] shows it.
#[derive(Clone, Copy, Debug)]
pub struct EitTable<'a> {
    /// table_id, 0x50..=0x5F.
    pub table_id: u8,
    /// Its version_number.
    pub version: u8,
    /// Its sections in section_number order.
    pub sections: &'a [Bytes],
}

/// The EIT schedule actual of one service, updated incrementally.
#[derive(Clone, Debug)]
pub struct EitSchedule {
    service_id: u16,
    transport_stream_id: u16,
    original_network_id: u16,
    days: u32,
    charset: Charset,
    first_version: u8,
    today: Option<NaiveDate>,
    /// By position in the window: 8 per day.
    segments: Vec<Segment>,
    /// Version and place in `sections` of each table, from 0x50.
    tables: Vec<(u8, Range<usize>)>,
    sections: Vec<Bytes>,
}

impl EitSchedule {
    /// An empty schedule of `days` days (clamped to 1..=64, as `eit_schedule` does) for one
    /// service; the first [`update`](Self::update) builds it at version 0.
    pub fn new(
        service_id: u16,
        transport_stream_id: u16,
        original_network_id: u16,
        days: u32,
        charset: Charset,
    ) -> EitSchedule {
        EitSchedule {
            service_id,
            transport_stream_id,
            original_network_id,
            days: days.clamp(1, 64),
            charset,
            first_version: 0,
            today: None,
            segments: Vec::new(),
            tables: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// The version of every table on the first build (mod 32), e.g. to carry on after a restart.
    pub fn with_version(mut self, version: u8) -> EitSchedule {
        self.first_version = version & 0x1F;
        self
    }

    /// Brings the schedule to `events` over the window from `today` 00:00 UTC. On error
    /// (a text the charset cannot hold) nothing changes.
    pub fn update(&mut self, events: &[Event], today: NaiveDate) -> Result<Update, TextError> {
        let n = self.days as usize * SEGMENTS_PER_DAY;
        let placed = place(events, today, n);
        // Old position of each new position's segment (None: not cached).
        let shift = self
            .today
            .map(|t| (today - t).num_days() * SEGMENTS_PER_DAY as i64);
        let old_at = |p: usize| -> Option<usize> {
            let q = usize::try_from(p as i64 + shift?).ok()?;
            (q < self.segments.len()).then_some(q)
        };
        // 1. Event loops: cached, or encoded (the only step that can fail).
        let mut sources = Vec::with_capacity(n);
        let mut update = Update {
            new_window: shift != Some(0),
            ..Update::default()
        };
        for (p, evs) in placed.iter().enumerate() {
            match old_at(p) {
                Some(q) if same_events(evs, &self.segments[q].events) => {
                    sources.push(Source::Cached(q))
                }
                _ => {
                    update.segments_encoded += 1;
                    sources.push(Source::Encoded(encode_segment(evs, self.charset)?));
                }
            }
        }
        if update.segments_encoded == 0 && !update.new_window {
            return Ok(update); // every segment cached in place: nothing to do
        }
        // 2. Sections, table by table.
        let tables = n.div_ceil(SEGMENTS_PER_TABLE);
        let last_table_id = 0x50 + tables as u8 - 1;
        let mut seg_sections: Vec<Vec<Bytes>> = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(tables);
        for t in 0..tables {
            let table_id = 0x50 + t as u8;
            let positions = t * SEGMENTS_PER_TABLE..((t + 1) * SEGMENTS_PER_TABLE).min(n);
            let old_version = self.tables.get(t).map(|(v, _)| *v);
            if let (Some(v), true) = (old_version, self.unchanged(&sources, positions.clone())) {
                versions.push(v);
                seg_sections.extend(positions.map(|p| self.segments[p].sections.clone()));
                continue;
            }
            let version = old_version.map_or(self.first_version, |v| (v + 1) & 0x1F);
            versions.push(version);
            update.changed_tables.push(table_id);
            let table =
                self.table_sections(&sources, positions, (table_id, last_table_id), version);
            update.sections_emitted += table.iter().map(Vec::len).sum::<usize>();
            seg_sections.extend(table);
        }
        // 3. Commit.
        let mut old = std::mem::take(&mut self.segments);
        self.segments = sources
            .into_iter()
            .zip(placed)
            .zip(seg_sections)
            .map(|((source, evs), sections)| Segment {
                events: match source {
                    Source::Cached(q) => std::mem::take(&mut old[q].events),
                    Source::Encoded(_) => evs.into_iter().cloned().collect(),
                },
                sections,
            })
            .collect();
        self.sections = self
            .segments
            .iter()
            .flat_map(|s| s.sections.iter().cloned())
            .collect();
        let mut at = 0;
        self.tables = versions
            .into_iter()
            .enumerate()
            .map(|(t, v)| {
                let segs =
                    &self.segments[t * SEGMENTS_PER_TABLE..((t + 1) * SEGMENTS_PER_TABLE).min(n)];
                let count: usize = segs.iter().map(|s| s.sections.len()).sum();
                at += count;
                (v, at - count..at)
            })
            .collect();
        self.today = Some(today);
        Ok(update)
    }

    /// Every section, in table and section order (empty before the first update).
    pub fn sections(&self) -> &[Bytes] {
        &self.sections
    }

    /// The tables, from 0x50.
    pub fn tables(&self) -> impl Iterator<Item = EitTable<'_>> + '_ {
        self.tables
            .iter()
            .enumerate()
            .map(|(t, (version, range))| EitTable {
                table_id: 0x50 + t as u8,
                version: *version,
                sections: &self.sections[range.clone()],
            })
    }

    /// The first day of the window of the last update.
    pub fn today(&self) -> Option<NaiveDate> {
        self.today
    }

    /// The number of 3-hour segments (8 a day).
    pub fn segment_count(&self) -> usize {
        self.days as usize * SEGMENTS_PER_DAY
    }

    /// Heap bytes held (an estimate from lengths and capacities): the cached events with
    /// their texts, and the sections. The event loops are not held twice: they are read from
    /// the sections.
    pub fn heap_bytes(&self) -> usize {
        let bytes = std::mem::size_of::<Bytes>();
        let events: usize = self
            .segments
            .iter()
            .flat_map(|s| &s.events)
            .map(|e| {
                e.language.capacity()
                    + e.title.capacity()
                    + e.text.capacity()
                    + e.extended.capacity()
            })
            .sum();
        let per_segment: usize = self
            .segments
            .iter()
            .map(|s| {
                s.events.capacity() * std::mem::size_of::<Event>()
                    + s.sections.capacity() * bytes
                    + s.sections.iter().map(Bytes::len).sum::<usize>()
            })
            .sum();
        events
            + per_segment
            + self.segments.capacity() * std::mem::size_of::<Segment>()
            + self.sections.capacity() * bytes
    }

    /// Whether the segments at `positions` would give the sections they have now.
    fn unchanged(&self, sources: &[Source], positions: Range<usize>) -> bool {
        positions.into_iter().all(|p| match &sources[p] {
            Source::Cached(q) if *q == p => true,
            source => self.segments.get(p).is_some_and(|old| {
                old.sections.len() == self.count(source)
                    && (0..self.count(source))
                        .all(|j| body(&old.sections[j]) == self.body(source, j))
            }),
        })
    }

    /// The sections of a changed table, by segment: cached event loops get a new header
    /// (and CRC), encoded ones a new section.
    fn table_sections(
        &self,
        sources: &[Source],
        positions: Range<usize>,
        (table_id, last_table_id): (u8, u8),
        version: u8,
    ) -> Vec<Vec<Bytes>> {
        let last_seg = positions.len() - 1;
        let last_section = (last_seg * 8 + self.count(&sources[positions.end - 1]) - 1) as u8;
        positions
            .enumerate()
            .map(|(k, p)| {
                let source = &sources[p];
                let count = self.count(source);
                let seg_last = (k * 8 + count - 1) as u8;
                let mut tail = [0u8; 6];
                tail[..2].copy_from_slice(&self.transport_stream_id.to_be_bytes());
                tail[2..4].copy_from_slice(&self.original_network_id.to_be_bytes());
                tail[4] = seg_last;
                tail[5] = last_table_id;
                (0..count)
                    .map(|j| {
                        let number = (k * 8 + j) as u8;
                        match source {
                            // Only header fields move: version_number and last_section_number,
                            // on a date change also table_id, section_number and
                            // segment_last_section_number.
                            Source::Cached(q) => {
                                let old = &self.segments[*q].sections[j];
                                let mut h = [0u8; HEADER];
                                h.copy_from_slice(&old[..HEADER]);
                                h[0] = table_id;
                                h[5] = 0xC0 | (version << 1) | 1;
                                h[6] = number;
                                h[7] = last_section;
                                h[12] = seg_last;
                                h[13] = last_table_id;
                                restamp(old, &h)
                            }
                            Source::Encoded(bodies) => Bytes::from(long_section(
                                table_id,
                                self.service_id,
                                version,
                                (number, last_section),
                                &tail,
                                &bodies[j],
                            )),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The number of sections (1..=8) of a segment's source.
    fn count(&self, source: &Source) -> usize {
        match source {
            Source::Cached(q) => self.segments[*q].sections.len(),
            Source::Encoded(bodies) => bodies.len(),
        }
    }

    /// The event loop of section `j` of a segment's source.
    fn body<'a>(&'a self, source: &'a Source, j: usize) -> &'a [u8] {
        match source {
            Source::Cached(q) => body(&self.segments[*q].sections[j]),
            Source::Encoded(bodies) => &bodies[j],
        }
    }
}

/// A service's EIT schedule tables that changed: (table_id, sections).
pub type Tables = Vec<(u8, Vec<Bytes>)>;

/// The tables an [`EitJob`] changed, for the carousel that asked
/// ([`crate::carousel::Carousel::handle_built`]).
#[derive(Clone, Debug)]
pub struct Built {
    /// The service whose tables these are.
    pub service_id: u16,
    /// The tables that changed, each whole, at its new version.
    pub tables: Tables,
}

/// What a carousel asks of the EIT schedule builder: encoding a week takes milliseconds, so
/// its driver may do it elsewhere (another thread) and hand the answer back.
#[derive(Clone, Debug)]
pub enum EitJob {
    /// A service to keep the EIT schedule of.
    Register {
        /// The service.
        service_id: u16,
        /// Its schedule, empty, at its first version.
        schedule: Box<EitSchedule>,
    },
    /// The service's events now (its whole week), with `today` (UTC) as the first day.
    Week {
        /// The service.
        service_id: u16,
        /// Its events, in any order (outside the window: left out).
        events: Vec<Event>,
        /// The first day of the window (UTC).
        today: NaiveDate,
    },
}

impl EitJob {
    /// The service the job is for.
    pub fn service_id(&self) -> u16 {
        match self {
            EitJob::Register { service_id, .. } | EitJob::Week { service_id, .. } => *service_id,
        }
    }
}

/// Every service's EIT schedule, by (stream, service_id), `stream` being the caller's index of
/// the carousel that sent the job: the builder's state, with no thread of its own.
#[derive(Debug, Default)]
pub struct EitBuilds {
    services: HashMap<(usize, u16), EitSchedule>,
}

impl EitBuilds {
    /// The schedule of service `service_id` of carousel `stream`, if registered.
    pub fn get(&self, stream: usize, service_id: u16) -> Option<&EitSchedule> {
        self.services.get(&(stream, service_id))
    }

    /// Puts `schedule` (of its own service) back for carousel `stream`: as it was before a
    /// job that could not be done.
    pub fn restore(&mut self, stream: usize, schedule: EitSchedule) {
        self.services
            .insert((stream, schedule.service_id), schedule);
    }

    /// Does `job` of carousel `stream`: the tables that changed, if any. A week that cannot be
    /// coded leaves the service's tables as they were (and is logged).
    pub fn apply(&mut self, stream: usize, job: EitJob) -> Option<Built> {
        let key = (stream, job.service_id());
        match job {
            EitJob::Register { schedule, .. } => {
                self.services.insert(key, *schedule);
                None
            }
            EitJob::Week { events, today, .. } => {
                let schedule = self.services.get_mut(&key)?;
                match schedule.update(&events, today) {
                    Ok(update) => {
                        let tables: Tables = schedule
                            .tables()
                            .filter(|t| update.changed_tables.contains(&t.table_id))
                            .map(|t| (t.table_id, t.sections.to_vec()))
                            .collect();
                        (!tables.is_empty()).then_some(Built {
                            service_id: key.1,
                            tables,
                        })
                    }
                    Err(e) => {
                        tracing::warn!(service_id = key.1, error = %e, "EIT schedule not sent");
                        None
                    }
                }
            }
        }
    }
}

/// One 3-hour segment: its events (the cache key) and its sections (1 to 8).
#[derive(Clone, Debug, Default)]
struct Segment {
    events: Vec<Event>,
    sections: Vec<Bytes>,
}

/// Where a segment's event loops come from in an update.
enum Source {
    /// The cached segment at this old position.
    Cached(usize),
    /// Newly encoded: the event loop of each section.
    Encoded(Vec<Vec<u8>>),
}

/// The event loop of a section.
fn body(section: &[u8]) -> &[u8] {
    &section[HEADER..section.len() - CRC]
}

/// The events of each segment of the window, in (stable) start order.
fn place(events: &[Event], today: NaiveDate, n: usize) -> Vec<Vec<&Event>> {
    let start = today.and_time(chrono::NaiveTime::MIN);
    let mut placed: Vec<Vec<&Event>> = vec![Vec::new(); n];
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.start);
    for e in sorted {
        let secs = (e.start - start).num_seconds();
        if secs >= 0 && secs < n as i64 * SEGMENT_S {
            placed[(secs / SEGMENT_S) as usize].push(e);
        }
    }
    placed
}

fn same_events(new: &[&Event], cached: &[Event]) -> bool {
    new.len() == cached.len() && new.iter().zip(cached).all(|(a, b)| *a == b)
}

/// The event loops of a segment's sections: events packed up to 4096-byte sections, at most
/// 8 (later events of a full segment are left out), one empty loop for no event.
fn encode_segment(events: &[&Event], charset: Charset) -> Result<Vec<Vec<u8>>, TextError> {
    let mut secs: Vec<Vec<u8>> = vec![Vec::new()];
    for e in events {
        let b = event_bytes(e, charset)?;
        let last = secs.last().map_or(0, Vec::len);
        if HEADER + CRC + last + b.len() > EIT_SECTION_MAX && last > 0 {
            if secs.len() == SECTIONS_PER_SEGMENT {
                break;
            }
            secs.push(Vec::new());
        }
        if let Some(s) = secs.last_mut() {
            s.extend_from_slice(&b);
        }
    }
    Ok(secs)
}

/// The generator polynomial of CRC-32/MPEG-2 (ISO/IEC 13818-1 Annex A), x^32 implied.
const POLY: u32 = 0x04C1_1DB7;

/// `section` with the header `header` (same section_length), and its CRC.
///
/// CRC-32/MPEG-2 is linear: for two messages of one length, crc(a) ^ crc(b) is the CRC of
/// a ^ b from a zero register, where leading zeros count for nothing. Only the header differs
/// here, so the new CRC is the old one XOR the CRC of the header's difference carried over
/// the unchanged event loop, i.e. multiplied by x^(8·n) mod P: O(log n) instead of reading
/// the section again (zlib's `crc32_combine` does the same).
fn restamp(section: &[u8], header: &[u8; HEADER]) -> Bytes {
    let end = section.len() - CRC;
    let mut delta = 0u32;
    for (a, b) in section[..HEADER].iter().zip(header) {
        delta ^= u32::from(a ^ b) << 24;
        for _ in 0..8 {
            delta = times_x(delta);
        }
    }
    let delta = mul_mod(delta, x_pow_8n(end - HEADER));
    let old_crc = u32::from_be_bytes([
        section[end],
        section[end + 1],
        section[end + 2],
        section[end + 3],
    ]);
    let mut s = Vec::with_capacity(section.len());
    s.extend_from_slice(header);
    s.extend_from_slice(&section[HEADER..end]);
    s.extend_from_slice(&(old_crc ^ delta).to_be_bytes());
    Bytes::from(s)
}

/// a·x mod P.
fn times_x(a: u32) -> u32 {
    if a & 0x8000_0000 != 0 {
        (a << 1) ^ POLY
    } else {
        a << 1
    }
}

/// a·b mod P (Horner over the bits of b).
fn mul_mod(a: u32, b: u32) -> u32 {
    (0..32).rev().fold(0, |r, i| {
        let r = times_x(r);
        if b >> i & 1 == 1 {
            r ^ a
        } else {
            r
        }
    })
}

/// x^(8·n) mod P: what n zero bytes do to a CRC register.
fn x_pow_8n(mut n: usize) -> u32 {
    let (mut result, mut base) = (1u32, 1u32 << 8);
    while n > 0 {
        if n & 1 == 1 {
            result = mul_mod(result, base);
        }
        base = mul_mod(base, base);
        n >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use playout::psi::crc32_mpeg2;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn restamp_crc_equals_a_full_crc(
            body in proptest::collection::vec(any::<u8>(), 0..5000),
            old in any::<[u8; HEADER]>(),
            new in any::<[u8; HEADER]>(),
        ) {
            let mut section = old.to_vec();
            section.extend_from_slice(&body);
            let crc = crc32_mpeg2(&section);
            section.extend_from_slice(&crc.to_be_bytes());
            let out = restamp(&section, &new);
            let mut expected = new.to_vec();
            expected.extend_from_slice(&body);
            let crc = crc32_mpeg2(&expected);
            expected.extend_from_slice(&crc.to_be_bytes());
            prop_assert_eq!(&out[..], &expected[..]);
        }
    }

    #[test]
    fn zero_bytes_multiply_the_register_by_x8() {
        // Feeding n zero bytes after "123456789" is the register times x^(8n).
        let reg = crc32_mpeg2(b"123456789");
        let mut data = b"123456789".to_vec();
        data.extend_from_slice(&[0; 1000]);
        assert_eq!(mul_mod(reg, x_pow_8n(1000)), crc32_mpeg2(&data));
    }
}
