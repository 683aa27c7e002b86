//! A channel's schedule resolved into a gapless timeline (sans-IO): what is on air at any
//! instant, and at which offset into which media.
//!
//! The caller (the daemon, `hectl validate`) reads the schedule files, resolves wall-clock
//! times in the channel's zone to UTC, probes media durations, and hands this module plain
//! numbers: entries with UTC start rules, and a media table with durations. Everything here is
//! UTC nanoseconds ([`Utc`]) and durations in nanoseconds.
//!
//! Rules:
//! - An entry either **follows** the previous one, or has a **hard** start (it goes on air at
//!   exactly that instant and cuts whatever plays then) or a **soft** start (it starts at that
//!   instant, or when the previous entry ends if that is later: nothing is cut).
//! - An entry plays a media file (whole, or between in and out points), or a **block**: a list
//!   of media played in order, once, or looped for a fixed duration (cut to fit).
//! - Gaps (before a hard or soft start, or after the last entry up to the end of the window)
//!   are filled from the channel's filler list, looped and cut to fit. A gap with no filler
//!   list is an error.
//!
//! [`resolve`] turns entries into a [`Timeline`] of contiguous [`Segment`]s;
//! [`Timeline::at`] answers "what is on air at `t`, at which offset" by binary search.

use std::fmt;

/// An instant: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Utc(pub i64);

impl Utc {
    /// `self + ns`.
    pub const fn add(self, ns: u64) -> Utc {
        Utc(self.0.saturating_add(ns as i64))
    }

    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    pub const fn since(self, earlier: Utc) -> u64 {
        if self.0 > earlier.0 {
            self.0.abs_diff(earlier.0)
        } else {
            0
        }
    }
}

impl fmt::Display for Utc {
    /// `1700000000.000000000` (seconds since the epoch); the caller formats dates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0.div_euclid(1_000_000_000),
            self.0.rem_euclid(1_000_000_000)
        )
    }
}

/// Index into the media table passed to [`resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(pub u32);

/// What [`resolve`] needs to know of a media file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaInfo {
    /// Playable duration (ns), from probing the file.
    pub duration: u64,
}

/// When an entry starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// When the previous entry ends (or at the window start, for the first).
    Follow,
    /// At exactly this instant, cutting what plays then.
    Hard(Utc),
    /// At this instant, or when the previous entry ends if that is later.
    Soft(Utc),
}

/// A media file between two points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clip {
    /// The media.
    pub media: MediaId,
    /// Offset to start at (ns); default 0.
    pub in_point: u64,
    /// Offset to stop at (ns); `None`: the end of the media.
    pub out_point: Option<u64>,
}

impl Clip {
    /// The whole of `media`.
    pub const fn whole(media: MediaId) -> Clip {
        Clip {
            media,
            in_point: 0,
            out_point: None,
        }
    }
}

/// What an entry plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// One clip.
    Clip(Clip),
    /// Clips in order; looped for `loop_for` ns (the last pass cut to fit) if given, else
    /// played once.
    Block {
        /// The clips.
        clips: Vec<Clip>,
        /// Total duration when looped.
        loop_for: Option<u64>,
    },
    /// Nothing of its own: an entry whose media cannot be played. It takes its place in the
    /// timeline (a hard start still cuts what plays before it) and lasts no time, so its slot,
    /// up to the next fixed start, is filler; what follows it starts at once.
    Gap,
}

/// One scheduled entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When it starts.
    pub start: Start,
    /// What it plays.
    pub body: Body,
}

/// Stands, in a plan, for media that cannot be played (a file missing, unreadable, not a
/// transport stream): [`Entry::without_unplayable`] takes its clips out.
pub const UNPLAYABLE: MediaId = MediaId(u32::MAX - 2);

/// The length to give a live input as media: longer than any item, so its items last what
/// they say.
pub const ENDLESS_NS: u64 = 400 * 86_400 * 1_000_000_000;

impl Entry {
    /// The entry without its clips of [`UNPLAYABLE`]: a block keeps the others; with none
    /// left it is a [`Body::Gap`] (its slot, up to the next fixed start, is filler).
    pub fn without_unplayable(mut self) -> Entry {
        self.body = match self.body {
            Body::Clip(c) if c.media == UNPLAYABLE => Body::Gap,
            Body::Block {
                mut clips,
                loop_for,
            } => {
                clips.retain(|c| c.media != UNPLAYABLE);
                if clips.is_empty() {
                    Body::Gap
                } else {
                    Body::Block { clips, loop_for }
                }
            }
            other => other,
        };
        self
    }
}

/// Where a segment's content comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Entry `n` of the schedule.
    Entry(usize),
    /// The filler list, filling a gap.
    Filler,
}

/// A stretch of the timeline playing one media from one offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// When it starts.
    pub start: Utc,
    /// When it ends (the next segment's start).
    pub end: Utc,
    /// Entry or filler.
    pub source: Source,
    /// The media played.
    pub media: MediaId,
    /// Offset into the media at `start` (ns).
    pub offset: u64,
    /// It ends before its natural end: a hard start, a loop duration or the window end cut it.
    pub cut: bool,
    /// Filler: the entry it follows (the last placed before the gap it fills), if any; an
    /// entry that is a [`Body::Gap`] makes its slot a gap that follows it.
    pub follows: Option<usize>,
}

impl Segment {
    /// Duration (ns).
    pub fn duration(&self) -> u64 {
        self.end.since(self.start)
    }
}

/// Why a schedule cannot be resolved. Entries are numbered from 0 in schedule order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An entry refers to media not in the media table.
    #[error("entry {entry}: unknown media #{media}")]
    UnknownMedia {
        /// Entry index (`usize::MAX` for the filler list).
        entry: usize,
        /// The media index.
        media: u32,
    },
    /// An out point beyond the media's duration, or not after the in point.
    #[error("entry {entry}: in/out points {in_point}..{out_point} ns outside the media's 0..{duration} ns")]
    BadPoints {
        /// Entry index (`usize::MAX` for the filler list).
        entry: usize,
        /// In point (ns).
        in_point: u64,
        /// Out point (ns).
        out_point: u64,
        /// The media's duration (ns).
        duration: u64,
    },
    /// An entry (or the filler list) that plays nothing.
    #[error("entry {entry}: plays nothing (empty block or zero duration)")]
    Empty {
        /// Entry index (`usize::MAX` for the filler list).
        entry: usize,
    },
    /// A hard or soft start not after an earlier fixed start.
    #[error("entry {entry}: starts at {start}, not after entry {previous}'s fixed start at {previous_start}")]
    Overlap {
        /// Entry index.
        entry: usize,
        /// Its start.
        start: Utc,
        /// The earlier entry with a fixed start.
        previous: usize,
        /// That entry's start.
        previous_start: Utc,
    },
    /// A gap that must be filled, and no filler list.
    #[error("gap from {from} to {to} and no filler list")]
    GapWithoutFiller {
        /// Gap start.
        from: Utc,
        /// Gap end.
        to: Utc,
    },
}

/// A resolved timeline over a window: contiguous segments from its start to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    segments: Vec<Segment>,
}

/// What is on air at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnAir {
    /// Index of the segment in [`Timeline::segments`].
    pub index: usize,
    /// The segment.
    pub segment: Segment,
    /// Offset into the segment's media at that instant (ns).
    pub media_offset: u64,
    /// Time left in the segment (ns).
    pub remaining: u64,
}

impl Timeline {
    /// The segments, in time order, each starting where the previous ends.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// What is on air at `t`, or `None` outside the window.
    pub fn at(&self, t: Utc) -> Option<OnAir> {
        let index = self
            .segments
            .partition_point(|s| s.start <= t)
            .checked_sub(1)?;
        let segment = self.segments[index];
        (t < segment.end).then(|| OnAir {
            index,
            segment,
            media_offset: segment.offset + t.since(segment.start),
            remaining: segment.end.since(t),
        })
    }
}

/// The splicer cues that play `segments` (a slice of a [`Timeline`] resolved from `entries`):
/// each plays its media from its offset and is cut at its end; only an entry's first
/// segment at its fixed (hard or soft) start holds the output until then, so filler and
/// following items go on air as soon as what precedes them ends. `output_time` maps an
/// instant to the output clock; `entry_delay` gives a media's entry delay (PTS − DTS of its
/// random access points, from probing).
pub fn cues(
    segments: &[Segment],
    entries: &[Entry],
    output_time: impl Fn(Utc) -> crate::time::Ticks27M,
    entry_delay: impl Fn(MediaId) -> u64,
) -> Vec<crate::splice::Cue> {
    segments
        .iter()
        .map(|seg| {
            let fixed = match seg.source {
                Source::Entry(i) => match entries.get(i).map(|e| e.start) {
                    Some(Start::Hard(t) | Start::Soft(t)) => t == seg.start,
                    _ => false,
                },
                Source::Filler => false,
            };
            crate::splice::Cue {
                item: seg.media.0 as usize,
                offset_90k: seg.offset * 9 / 100_000,
                from_byte: 0,
                first_pts: None,
                not_before: fixed.then(|| output_time(seg.start)),
                until: Some(output_time(seg.end)),
                entry_delay_90k: entry_delay(seg.media),
                tag: 0,
            }
        })
        .collect()
}

/// Resolves `entries` over `[from, until)`. Entries that end before `from` are skipped;
/// entries that start at or after `until` are left out; gaps are filled from `filler`
/// (looped, cut to fit; the filler restarts from its first clip at every gap).
pub fn resolve(
    entries: &[Entry],
    filler: &[Clip],
    media: &[MediaInfo],
    from: Utc,
    until: Utc,
) -> Result<Timeline, ScheduleError> {
    const FILLER: usize = usize::MAX;
    let clip_len = |entry: usize, c: &Clip| -> Result<u64, ScheduleError> {
        let info = media
            .get(c.media.0 as usize)
            .ok_or(ScheduleError::UnknownMedia {
                entry,
                media: c.media.0,
            })?;
        let out = c.out_point.unwrap_or(info.duration);
        if out > info.duration || c.in_point >= out {
            return Err(ScheduleError::BadPoints {
                entry,
                in_point: c.in_point,
                out_point: out,
                duration: info.duration,
            });
        }
        Ok(out - c.in_point)
    };
    for c in filler {
        clip_len(FILLER, c)?;
    }
    // Natural durations, and fixed starts strictly increasing.
    let mut lengths = Vec::with_capacity(entries.len());
    let mut last_fixed: Option<(usize, Utc)> = None;
    for (i, e) in entries.iter().enumerate() {
        let len = match &e.body {
            Body::Clip(c) => clip_len(i, c)?,
            Body::Block { clips, loop_for } => {
                let mut once = 0u64;
                for c in clips {
                    once += clip_len(i, c)?;
                }
                if once == 0 {
                    0
                } else {
                    loop_for.unwrap_or(once)
                }
            }
            Body::Gap => 0,
        };
        if len == 0 && e.body != Body::Gap {
            return Err(ScheduleError::Empty { entry: i });
        }
        lengths.push(len);
        if let Start::Hard(t) | Start::Soft(t) = e.start {
            if let Some((previous, previous_start)) = last_fixed.filter(|(_, p)| t <= *p) {
                return Err(ScheduleError::Overlap {
                    entry: i,
                    start: t,
                    previous,
                    previous_start,
                });
            }
            last_fixed = Some((i, t));
        }
    }

    let mut out = Builder {
        segments: Vec::with_capacity(entries.len() * 2),
        filler,
        media,
        from,
        until,
        follows: None,
    };
    let mut now = from;
    for (i, e) in entries.iter().enumerate() {
        // When this entry starts, given where the previous one ends (`now`; the window start
        // for the first).
        let start = match e.start {
            Start::Follow => now,
            Start::Hard(t) => {
                if t < now {
                    out.cut_back(t);
                    now = t;
                }
                t
            }
            Start::Soft(t) => t.max(now),
        };
        out.fill(now, start)?;
        now = start;
        if now >= until {
            match e.start {
                // Fixed starts increase: nothing later comes back into the window.
                Start::Hard(t) | Start::Soft(t) if t >= until => break,
                // Pushed past the window by what came before; a later hard start inside
                // the window may still cut back.
                _ => {
                    now = now.add(lengths[i]);
                    continue;
                }
            }
        }
        let end = now.add(lengths[i]);
        // A later hard start may cut this entry; `cut_back` handles it when it comes.
        match &e.body {
            Body::Gap => {}
            Body::Clip(c) => out.push(now, end, Source::Entry(i), c, 0, false),
            Body::Block { clips, loop_for } => {
                let mut t = now;
                'passes: loop {
                    for c in clips {
                        if t >= end {
                            break 'passes;
                        }
                        let len =
                            c.out_point.unwrap_or(media[c.media.0 as usize].duration) - c.in_point;
                        let seg_end = t.add(len).min(end);
                        out.push(t, seg_end, Source::Entry(i), c, 0, seg_end < t.add(len));
                        t = seg_end;
                    }
                    if loop_for.is_none() {
                        break;
                    }
                }
            }
        }
        now = end;
        out.follows = Some(i);
    }
    out.fill(now, until)?;
    Ok(Timeline {
        segments: out.segments,
    })
}

struct Builder<'a> {
    segments: Vec<Segment>,
    filler: &'a [Clip],
    media: &'a [MediaInfo],
    from: Utc,
    until: Utc,
    /// The last entry placed.
    follows: Option<usize>,
}

impl Builder<'_> {
    /// Appends `clip` played from `skip` ns in, over `[start, end)`, clipped to the window.
    fn push(&mut self, start: Utc, end: Utc, source: Source, clip: &Clip, skip: u64, cut: bool) {
        let (s, e) = (start.max(self.from), end.min(self.until));
        if s >= e {
            return;
        }
        self.segments.push(Segment {
            start: s,
            end: e,
            source,
            media: clip.media,
            offset: clip.in_point + skip + s.since(start),
            cut: cut || e < end,
            follows: match source {
                Source::Filler => self.follows,
                Source::Entry(_) => None,
            },
        });
    }

    /// A hard start at `t`: whatever was planned to play at or after `t` is cut there.
    fn cut_back(&mut self, t: Utc) {
        while let Some(last) = self.segments.last_mut() {
            if last.start >= t {
                self.segments.pop();
            } else {
                if last.end > t {
                    last.end = t;
                    last.cut = true;
                }
                break;
            }
        }
    }

    /// Fills `[from, to)` with the filler list, looped from its first clip.
    fn fill(&mut self, from: Utc, to: Utc) -> Result<(), ScheduleError> {
        let (from, to) = (from.max(self.from), to.min(self.until));
        if from >= to {
            return Ok(());
        }
        if self.filler.is_empty() {
            return Err(ScheduleError::GapWithoutFiller { from, to });
        }
        let mut t = from;
        let filler = self.filler;
        'fill: loop {
            for c in filler {
                if t >= to {
                    break 'fill;
                }
                let len = c
                    .out_point
                    .unwrap_or(self.media[c.media.0 as usize].duration)
                    - c.in_point;
                let end = t.add(len).min(to);
                self.push(t, end, Source::Filler, c, 0, end < t.add(len));
                t = end;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(secs: i64) -> Utc {
        Utc(secs * S as i64)
    }

    fn clip(m: u32) -> Body {
        Body::Clip(Clip::whole(MediaId(m)))
    }

    fn e(start: Start, m: u32) -> Entry {
        Entry {
            start,
            body: clip(m),
        }
    }

    /// media 0: 600 s programme, 1: 1800 s, 2: 30 s filler, 3: 10 s filler.
    fn media() -> Vec<MediaInfo> {
        [600, 1800, 30, 10]
            .iter()
            .map(|&s| MediaInfo { duration: s * S })
            .collect()
    }

    fn filler() -> Vec<Clip> {
        vec![Clip::whole(MediaId(2)), Clip::whole(MediaId(3))]
    }

    fn contiguous(t: &Timeline, from: Utc, until: Utc) {
        let s = t.segments();
        assert_eq!(s.first().unwrap().start, from);
        assert_eq!(s.last().unwrap().end, until);
        for w in s.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{w:?}");
        }
        assert!(s.iter().all(|x| x.start < x.end));
    }

    #[test]
    fn follow_hard_and_soft_starts_with_filler_in_the_gaps() {
        let entries = vec![
            // 0..600
            e(Start::Hard(at(0)), 0),
            // 600..2400
            e(Start::Follow, 1),
            // hard at 2000 cuts entry 1
            e(Start::Hard(at(2000)), 0),
            // soft at 3000: gap 2600..3000 filled
            e(Start::Soft(at(3000)), 0),
        ];
        let t = resolve(&entries, &filler(), &media(), at(0), at(4000)).unwrap();
        contiguous(&t, at(0), at(4000));
        let s = t.segments();
        assert_eq!((s[0].source, s[0].end), (Source::Entry(0), at(600)));
        assert_eq!(
            (s[1].source, s[1].end, s[1].cut),
            (Source::Entry(1), at(2000), true)
        );
        assert_eq!(
            (s[2].source, s[2].start, s[2].end),
            (Source::Entry(2), at(2000), at(2600))
        );
        // 400 s of filler: (30 + 10) × 10.
        let fill: Vec<&Segment> = s.iter().filter(|x| x.source == Source::Filler).collect();
        assert_eq!(
            fill.len(),
            40,
            "a 400 s gap and a 400 s tail, each 10 × (30 s + 10 s)"
        );
        assert_eq!(t.at(at(3000)).unwrap().segment.source, Source::Entry(3));
        // The tail after entry 3 (3600..4000) is filler too.
        assert_eq!(t.at(at(3999)).unwrap().segment.source, Source::Filler);
    }

    #[test]
    fn join_in_progress_lands_on_the_right_offset() {
        // The 19:00 news (1800 s) joined at 19:12:31.
        let news = 19 * 3600;
        let entries = vec![
            e(Start::Hard(at(news - 600)), 0),
            e(Start::Hard(at(news)), 1),
        ];
        let t = resolve(
            &entries,
            &filler(),
            &media(),
            at(news - 600),
            at(news + 3600),
        )
        .unwrap();
        let on = t.at(at(news + 12 * 60 + 31)).unwrap();
        assert_eq!(on.segment.source, Source::Entry(1));
        assert_eq!(on.media_offset, (12 * 60 + 31) * S);
        assert_eq!(on.remaining, (1800 - 751) * S);
        // A window starting mid-item starts with the right offset.
        let t = resolve(
            &entries,
            &filler(),
            &media(),
            at(news + 751),
            at(news + 900),
        )
        .unwrap();
        assert_eq!(t.segments()[0].offset, 751 * S);
        assert_eq!(t.at(at(news + 1000)), None, "outside the window");
    }

    #[test]
    fn soft_start_waits_for_an_overrun() {
        let entries = vec![
            e(Start::Hard(at(0)), 1), // 0..1800
            e(Start::Soft(at(1000)), 0),
        ];
        let t = resolve(&entries, &filler(), &media(), at(0), at(2400)).unwrap();
        assert_eq!(t.segments()[1].start, at(1800));
        assert!(!t.segments()[0].cut);
    }

    #[test]
    fn blocks_play_in_order_or_loop_cut_to_fit() {
        let entries = vec![
            Entry {
                start: Start::Hard(at(0)),
                body: Body::Block {
                    clips: vec![Clip::whole(MediaId(2)), Clip::whole(MediaId(3))],
                    loop_for: None,
                },
            },
            Entry {
                start: Start::Follow,
                body: Body::Block {
                    clips: vec![Clip::whole(MediaId(2)), Clip::whole(MediaId(3))],
                    loop_for: Some(95 * S),
                },
            },
        ];
        let t = resolve(&entries, &[], &media(), at(0), at(135)).unwrap();
        contiguous(&t, at(0), at(135));
        let ends: Vec<i64> = t.segments().iter().map(|s| s.end.0 / S as i64).collect();
        assert_eq!(ends, vec![30, 40, 70, 80, 110, 120, 135]);
        assert!(t.segments().last().unwrap().cut);
    }

    #[test]
    fn in_and_out_points() {
        let c = Clip {
            media: MediaId(0),
            in_point: 100 * S,
            out_point: Some(160 * S),
        };
        let entries = vec![Entry {
            start: Start::Hard(at(0)),
            body: Body::Clip(c),
        }];
        let t = resolve(&entries, &filler(), &media(), at(0), at(60)).unwrap();
        assert_eq!(
            t.segments(),
            &[Segment {
                start: at(0),
                end: at(60),
                source: Source::Entry(0),
                media: MediaId(0),
                offset: 100 * S,
                cut: false,
                follows: None,
            }]
        );
        assert_eq!(t.at(at(30)).unwrap().media_offset, 130 * S);
    }

    #[test]
    fn mistakes_are_named() {
        let m = media();
        let bad_out = vec![Entry {
            start: Start::Follow,
            body: Body::Clip(Clip {
                media: MediaId(0),
                in_point: 0,
                out_point: Some(601 * S),
            }),
        }];
        assert!(matches!(
            resolve(&bad_out, &[], &m, at(0), at(10)),
            Err(ScheduleError::BadPoints { entry: 0, .. })
        ));
        let unknown = vec![e(Start::Follow, 9)];
        assert_eq!(
            resolve(&unknown, &[], &m, at(0), at(10))
                .unwrap_err()
                .to_string(),
            "entry 0: unknown media #9"
        );
        let overlap = vec![e(Start::Hard(at(100)), 0), e(Start::Hard(at(100)), 0)];
        assert!(matches!(
            resolve(&overlap, &filler(), &m, at(0), at(1000)),
            Err(ScheduleError::Overlap {
                entry: 1,
                previous: 0,
                ..
            })
        ));
        let gap = vec![e(Start::Hard(at(100)), 0)];
        assert_eq!(
            resolve(&gap, &[], &m, at(0), at(700)).unwrap_err(),
            ScheduleError::GapWithoutFiller {
                from: at(0),
                to: at(100)
            }
        );
        let empty = vec![Entry {
            start: Start::Follow,
            body: Body::Block {
                clips: vec![],
                loop_for: None,
            },
        }];
        assert_eq!(
            resolve(&empty, &filler(), &m, at(0), at(10)).unwrap_err(),
            ScheduleError::Empty { entry: 0 }
        );
    }
}
