//! The schedule file of one channel and date: what a scheduler edits (by hand or with
//! `hectl`), and what the daemon plays.
//!
//! ```toml
//! date = "2026-11-23"        # the day, in the channel's time zone
//! revision = 14              # bumped by every accepted write (the store checks it)
//!
//! [[item]]
//! start = "19:00:00"         # local wall-clock time; omit to follow the previous item
//! mode = "hard"              # hard (default): cut what plays at that instant; soft: wait for it
//! file = "media/news.ts"
//! in = "00:00:10"            # optional in and out points
//! out = "00:29:30"
//! title = "新闻联播"
//! description = "Evening news"
//! genre = "news"
//! rating = 0                 # minimum age, 0 = none
//! language = "zho"           # ISO 639-2
//! episode = "2026-11-23"
//!
//! [[item]]
//! block = ["media/ad1.ts", "media/ad2.ts"]   # played in order...
//! loop_for = "5m"                            # ...or looped for this long, cut to fit
//! title = "Adverts"
//! ```
//!
//! [`parse`] reports every mistake at once, each with its line, item and field. [`Day::plan`]
//! turns the day into UTC [`Entry`] values for [`playout::schedule::resolve`], given the
//! channel's time zone and the media table.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use chrono::{LocalResult, NaiveDate, NaiveTime, TimeZone};
pub use chrono_tz::Tz;
use playout::schedule::{Body, Clip, Entry, MediaId, Start, Utc};
use serde::Deserialize;

/// One channel's schedule for one date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Day {
    /// The date, in the channel's time zone.
    pub date: NaiveDate,
    /// Revision of the file (0 for a new one).
    pub revision: u64,
    /// The items in order.
    pub items: Vec<Item>,
}

/// One scheduled item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Line of its `[[item]]` header in the file (1-based; 0 when built in memory).
    pub line: usize,
    /// Fixed start, local wall-clock time; `None`: follows the previous item.
    pub start: Option<(NaiveTime, StartMode)>,
    /// What it plays.
    pub source: Source,
    /// Its programme metadata, for the EPG.
    pub programme: Programme,
}

/// How a fixed start treats what plays before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Cut what plays at that instant.
    Hard,
    /// Start at that instant, or when the previous item ends if later.
    Soft,
}

/// What an item plays; file names as written (relative to the media directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file, whole or between two points.
    File {
        /// The file.
        path: String,
        /// Where to start in it.
        in_point: Option<Duration>,
        /// Where to stop in it.
        out_point: Option<Duration>,
    },
    /// Files in order, once, or looped for a duration.
    Block {
        /// The files.
        paths: Vec<String>,
        /// Loop them for this long, cut to fit.
        loop_for: Option<Duration>,
    },
    /// One of the channel's live inputs (`[[channel.input]]` by name), relayed for a
    /// duration; while it fails, `backup` inputs in order, then the channel's playlist.
    Live {
        /// The input's name.
        input: String,
        /// How long the item lasts (a later fixed start may cut it).
        duration: Duration,
        /// Inputs to relay in its place while it fails, in order.
        backup: Vec<String>,
    },
}

/// Programme metadata (EN 300 468 short_event, content, parental_rating descriptors).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programme {
    /// Title; an item without one is titled by its file name in the EPG.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Genre, free text (mapped to a content_nibble by the EPG).
    pub genre: Option<String>,
    /// Minimum age, 0 (none) to 21.
    pub rating: u8,
    /// ISO 639-2 language code, 3 lowercase letters.
    pub language: Option<String>,
    /// Episode (free text: "S01E05", a date).
    pub episode: Option<String>,
}

/// A mistake in a schedule file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayError {
    /// Line (1-based), if known.
    pub line: Option<usize>,
    /// Item number (1-based, as a scheduler counts) and its label (`19:00:00 "News"`).
    pub item: Option<(usize, String)>,
    /// The key at fault.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DayError {
    /// `line 14: item 3 (19:00:00 "Evening News"): out: ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some((n, label)) = &self.item {
            write!(f, "item {n} ({label}): ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every mistake in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayErrors(pub Vec<DayError>);

impl fmt::Display for DayErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DayErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDay {
    date: toml::Spanned<String>,
    #[serde(default)]
    revision: Option<i64>,
    #[serde(default)]
    item: Vec<toml::Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    start: Option<String>,
    mode: Option<String>,
    file: Option<String>,
    block: Option<Vec<String>>,
    live: Option<String>,
    duration: Option<String>,
    backup: Option<Vec<String>>,
    loop_for: Option<String>,
    #[serde(rename = "in")]
    in_point: Option<String>,
    #[serde(rename = "out")]
    out_point: Option<String>,
    title: Option<String>,
    description: Option<String>,
    genre: Option<String>,
    rating: Option<i64>,
    language: Option<String>,
    episode: Option<String>,
}

/// The first day a schedule may be for: the playout clock ([`Utc`]) counts from 1970.
pub const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 2).expect("a date");
/// The last day a schedule may be for: its items, in any time zone, still end before the
/// playout clock's end (64-bit nanoseconds reach 2262-04-11).
pub const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(2261, 12, 31).expect("a date");

/// Parses and validates a schedule file; every mistake is reported.
pub fn parse(text: &str) -> Result<Day, DayErrors> {
    // Line numbers by binary search over the newlines' offsets: a day of 86,400 items must
    // not count them again for every item.
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'\n').then_some(i))
        .collect();
    let line_of = |span: Range<usize>| newlines.partition_point(|&i| i < span.start) + 1;
    let raw: RawDay = toml::from_str(text).map_err(|e| {
        DayErrors(vec![DayError {
            line: e.span().map(line_of),
            item: None,
            field: None,
            message: e.message().trim().to_owned(),
        }])
    })?;
    let mut errors = Vec::new();
    let date = match NaiveDate::parse_from_str(raw.date.get_ref(), "%Y-%m-%d") {
        Ok(d) if (FIRST_DATE..=LAST_DATE).contains(&d) => Some(d),
        Ok(d) => {
            errors.push(DayError {
                line: Some(line_of(raw.date.span())),
                item: None,
                field: Some("date".to_owned()),
                message: format!(
                    "{d} is outside {FIRST_DATE}..={LAST_DATE}, the days the playout clock \
                     (nanoseconds since 1970 in 64 bits) holds"
                ),
            });
            None
        }
        Err(_) => {
            errors.push(DayError {
                line: Some(line_of(raw.date.span())),
                item: None,
                field: Some("date".to_owned()),
                message: format!("`{}` is not a date like 2026-11-23", raw.date.get_ref()),
            });
            None
        }
    };
    let revision = match raw.revision {
        None => 0,
        Some(r) if r >= 0 => r as u64,
        Some(r) => {
            errors.push(DayError {
                line: None,
                item: None,
                field: Some("revision".to_owned()),
                message: format!("{r} is negative"),
            });
            0
        }
    };
    let mut items = Vec::new();
    for (i, table) in raw.item.into_iter().enumerate() {
        let line = line_of(table.span());
        let label = label_of(table.get_ref());
        let mut err = |field: Option<&str>, message: String| {
            errors.push(DayError {
                line: Some(line),
                item: Some((i + 1, label.clone())),
                field: field.map(str::to_owned),
                message,
            });
        };
        let raw: RawItem = match toml::Value::Table(table.into_inner()).try_into() {
            Ok(r) => r,
            Err(e) => {
                err(None, e.message().trim().to_owned());
                continue;
            }
        };
        if let Some(item) = convert(raw, line, &mut err) {
            items.push(item);
        }
    }
    // Fixed starts must increase through the day.
    let mut last: Option<(usize, NaiveTime)> = None;
    for (i, item) in items.iter().enumerate() {
        if let Some((t, _)) = item.start {
            if let Some((j, prev)) = last.filter(|(_, p)| t <= *p) {
                errors.push(DayError {
                    line: Some(item.line),
                    item: Some((i + 1, item.label())),
                    field: Some("start".to_owned()),
                    message: format!("{t} is not after item {}'s start {prev}", j + 1),
                });
            }
            last = Some((i, t));
        }
    }
    match date {
        Some(date) if errors.is_empty() => Ok(Day {
            date,
            revision,
            items,
        }),
        _ => Err(DayErrors(errors)),
    }
}

fn label_of(t: &toml::Table) -> String {
    let start = t
        .get("start")
        .and_then(toml::Value::as_str)
        .unwrap_or("follows");
    match t.get("title").and_then(toml::Value::as_str) {
        Some(title) => format!("{start} {title:?}"),
        None => match (
            t.get("file").and_then(toml::Value::as_str),
            t.get("live").and_then(toml::Value::as_str),
        ) {
            (Some(file), _) => format!("{start} {file}"),
            (None, Some(live)) => format!("{start} live {live}"),
            (None, None) => start.to_owned(),
        },
    }
}

fn convert(raw: RawItem, line: usize, err: &mut impl FnMut(Option<&str>, String)) -> Option<Item> {
    let mut failed = false;
    let mut fail = |field: &str, message: String, failed: &mut bool| {
        *failed = true;
        err(Some(field), message);
    };
    let start_time = raw.start.as_deref().and_then(|s| match parse_clock(s) {
        Some(t) => Some(t),
        None => {
            fail(
                "start",
                format!("`{s}` is not a time like 19:00:00"),
                &mut failed,
            );
            None
        }
    });
    let mode = match raw.mode.as_deref() {
        None | Some("hard") => StartMode::Hard,
        Some("soft") => StartMode::Soft,
        Some(other) => {
            fail(
                "mode",
                format!("`{other}`, expected hard or soft"),
                &mut failed,
            );
            StartMode::Hard
        }
    };
    if raw.mode.is_some() && raw.start.is_none() {
        fail("mode", "given without a start".to_owned(), &mut failed);
    }
    let mut offset = |field: &str, v: &Option<String>, failed: &mut bool| -> Option<Duration> {
        let s = v.as_deref()?;
        let d = parse_offset(s);
        if d.is_none() {
            fail(
                field,
                format!("`{s}` is not an offset like 00:29:30 or 00:00:10.5 (at most 31 days)"),
                failed,
            );
        }
        d
    };
    let in_point = offset("in", &raw.in_point, &mut failed);
    let out_point = offset("out", &raw.out_point, &mut failed);
    let loop_for = raw.loop_for.as_deref().and_then(|s| match parse_length(s) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            fail(
                "loop_for",
                format!(
                    "`{s}` is not a duration like 30m, 1h30m, 2d or 00:05:00 (at most 31 days)"
                ),
                &mut failed,
            );
            None
        }
    });
    if let (Some(a), Some(b)) = (in_point, out_point) {
        if b <= a {
            fail(
                "out",
                format!("{} is not after in {}", show(b), show(a)),
                &mut failed,
            );
        }
    }
    let duration = raw.duration.as_deref().and_then(|s| match parse_length(s) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            fail(
                "duration",
                format!(
                    "`{s}` is not a duration like 30m, 1h30m, 2d or 00:05:00 (at most 31 days)"
                ),
                &mut failed,
            );
            None
        }
    });
    if raw.live.is_none() {
        if raw.duration.is_some() {
            fail(
                "duration",
                "only for a live item (a file lasts as long as it is)".to_owned(),
                &mut failed,
            );
        }
        if raw.backup.is_some() {
            fail("backup", "only for a live item".to_owned(), &mut failed);
        }
    }
    let source = match (raw.file, raw.block, raw.live) {
        (None, None, Some(input)) => {
            if raw.loop_for.is_some() {
                fail("loop_for", "only for a block".to_owned(), &mut failed);
            }
            if raw.in_point.is_some() || raw.out_point.is_some() {
                fail(
                    "in",
                    "in/out points are for a single file, not a live input".to_owned(),
                    &mut failed,
                );
            }
            if input.trim().is_empty() {
                fail(
                    "live",
                    "empty: the name of one of the channel's inputs".to_owned(),
                    &mut failed,
                );
            }
            let backup = raw.backup.unwrap_or_default();
            if let Some(b) = backup.iter().find(|b| b.trim().is_empty() || **b == input) {
                fail(
                    "backup",
                    if b.trim().is_empty() {
                        "an empty input name".to_owned()
                    } else {
                        format!("`{b}` is the item's own input")
                    },
                    &mut failed,
                );
            }
            let Some(duration) = duration else {
                if raw.duration.is_none() {
                    fail(
                        "duration",
                        "missing: a live item lasts as long as this says (30m, 1h30m, 00:05:00)"
                            .to_owned(),
                        &mut failed,
                    );
                }
                return None;
            };
            Source::Live {
                input,
                duration,
                backup,
            }
        }
        (_, _, Some(_)) => {
            fail(
                "live",
                "an item plays a file, a block or a live input, not several".to_owned(),
                &mut failed,
            );
            return None;
        }
        (Some(path), None, None) => {
            if raw.loop_for.is_some() {
                fail("loop_for", "only for a block".to_owned(), &mut failed);
            }
            if path.trim().is_empty() {
                fail("file", "empty".to_owned(), &mut failed);
            }
            Source::File {
                path,
                in_point,
                out_point,
            }
        }
        (None, Some(paths), None) => {
            if raw.in_point.is_some() || raw.out_point.is_some() {
                fail(
                    "in",
                    "in/out points are for a single file, not a block".to_owned(),
                    &mut failed,
                );
            }
            if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
                fail(
                    "block",
                    "needs at least one file, and no empty name".to_owned(),
                    &mut failed,
                );
            }
            Source::Block { paths, loop_for }
        }
        (Some(_), Some(_), None) => {
            fail(
                "block",
                "an item plays a file or a block, not both".to_owned(),
                &mut failed,
            );
            return None;
        }
        (None, None, None) => {
            fail(
                "file",
                "missing: an item plays a file, a block or a live input".to_owned(),
                &mut failed,
            );
            return None;
        }
    };
    let rating = match raw.rating {
        None => 0,
        Some(r) if (0..=21).contains(&r) => r as u8,
        Some(r) => {
            fail(
                "rating",
                format!("{r} is out of range, expected a minimum age 0..=21"),
                &mut failed,
            );
            0
        }
    };
    if let Some(l) = &raw.language {
        if l.len() != 3 || !l.bytes().all(|b| b.is_ascii_lowercase()) {
            fail(
                "language",
                format!("`{l}` is not an ISO 639-2 code like zho or eng"),
                &mut failed,
            );
        }
    }
    if failed {
        return None;
    }
    Some(Item {
        line,
        start: start_time.map(|t| (t, mode)),
        source,
        programme: Programme {
            title: raw.title,
            description: raw.description,
            genre: raw.genre,
            rating,
            language: raw.language,
            episode: raw.episode,
        },
    })
}

/// `19:00:00`, `19:00:00.040`.
fn parse_clock(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok()
}

/// The longest offset or length a schedule may give: far past any programme, and short
/// enough that the playout clock's 64-bit nanoseconds add it without overflow.
pub const MAX_LENGTH: Duration = Duration::from_secs(31 * 86_400);

/// An offset into a file: `00:29:30`, `29:30.5` (no hours), seconds `1770`.
fn parse_offset(s: &str) -> Option<Duration> {
    let mut secs = 0f64;
    let parts: Vec<&str> = s.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    for (i, p) in parts.iter().enumerate() {
        let v: f64 = p.parse().ok()?;
        let last = i + 1 == parts.len();
        if v < 0.0 || (!last && v.fract() != 0.0) || (i > 0 && v >= 60.0) {
            return None;
        }
        secs = secs * 60.0 + v;
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_LENGTH)
}

/// A length: `30m`, `1h30m`, `90s`, or an offset-style `00:05:00`.
fn parse_length(s: &str) -> Option<Duration> {
    if s.contains(':') {
        return parse_offset(s);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    let d = Duration::from_secs(total);
    (num.is_empty() && d <= MAX_LENGTH).then_some(d)
}

fn show(d: Duration) -> String {
    let s = d.as_secs();
    let ms = d.subsec_millis();
    if ms == 0 {
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
    }
}

impl Item {
    /// `19:00:00 "Evening News"`, `follows media/a.ts`: how errors name the item.
    pub fn label(&self) -> String {
        let start = self
            .start
            .map_or_else(|| "follows".to_owned(), |(t, _)| t.to_string());
        match (&self.programme.title, &self.source) {
            (Some(title), _) => format!("{start} {title:?}"),
            (None, Source::File { path, .. }) => format!("{start} {path}"),
            (None, Source::Block { .. }) => format!("{start} block"),
            (None, Source::Live { input, .. }) => format!("{start} live {input}"),
        }
    }

    /// Every file the item plays (none for a live item).
    pub fn paths(&self) -> Vec<&str> {
        match &self.source {
            Source::File { path, .. } => vec![path.as_str()],
            Source::Block { paths, .. } => paths.iter().map(String::as_str).collect(),
            Source::Live { .. } => Vec::new(),
        }
    }

    /// What it plays, in a word or two: its files, or `live NAME`.
    pub fn what(&self) -> String {
        match &self.source {
            Source::Live { input, .. } => format!("live {input}"),
            _ => self.paths().join(", "),
        }
    }
}

/// Whether `name` may name a schedule's file: a path relative to the channel's media
/// directory that stays inside it (normal components only: not absolute, no `..`), so a
/// schedule can put on air only what the media directory holds. Said why when not. (Whether
/// a symbolic link inside leads out of it is for the one who opens the file to see.)
pub fn media_path(name: &str) -> Result<(), &'static str> {
    use std::path::Component;
    if name.is_empty() {
        return Err("an empty file name");
    }
    if name.contains('\0') {
        return Err("a NUL character in the file name");
    }
    let mut any = false;
    for c in std::path::Path::new(name).components() {
        match c {
            Component::Normal(_) => any = true,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("`..` would leave the media directory: name files inside it")
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute path: name files relative to the media directory")
            }
        }
    }
    if any {
        Ok(())
    } else {
        Err("no file name")
    }
}

impl Day {
    /// The instant item `i`'s fixed start names in `tz`, if it has one. A local time that
    /// does not exist (skipped by a daylight-saving change) is an error; an ambiguous one is
    /// the earlier instant.
    pub fn start_utc(&self, i: usize, tz: Tz) -> Result<Option<Utc>, DayError> {
        let Some(item) = self.items.get(i) else {
            return Ok(None);
        };
        let Some((t, _)) = item.start else {
            return Ok(None);
        };
        let local = self.date.and_time(t);
        let instant = match tz.from_local_datetime(&local) {
            LocalResult::Single(x) => x,
            LocalResult::Ambiguous(a, _) => a,
            LocalResult::None => {
                return Err(DayError {
                    line: Some(item.line),
                    item: Some((i + 1, item.label())),
                    field: Some("start".to_owned()),
                    message: format!("{local} does not exist in {tz} (a daylight-saving gap)"),
                })
            }
        };
        let ns = instant.timestamp() * 1_000_000_000 + i64::from(instant.timestamp_subsec_nanos());
        Ok(Some(Utc(ns)))
    }

    /// Text the channel's SI character set cannot hold (title, description, episode), each by
    /// item and field: refused when a schedule is written, not garbage on screen later.
    pub fn check_charset(&self, charset: crate::text::Charset) -> Vec<DayError> {
        let mut errors = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let p = &item.programme;
            for (field, text) in [
                ("title", &p.title),
                ("description", &p.description),
                ("episode", &p.episode),
            ] {
                if let Some(Err(e)) = text.as_deref().map(|t| crate::text::check_text(t, charset)) {
                    errors.push(DayError {
                        line: Some(item.line),
                        item: Some((i + 1, item.label())),
                        field: Some(field.to_owned()),
                        message: format!(
                            "`{}` (character {}) cannot be encoded in the channel's SI charset {:?}",
                            e.ch,
                            e.index + 1,
                            charset
                        ),
                    });
                }
            }
        }
        errors
    }

    /// The day as UTC entries for [`playout::schedule::resolve`]. `media` maps a file name to
    /// its index in the caller's media table (`None`: not found, reported by item and file).
    pub fn plan(
        &self,
        tz: Tz,
        media: impl FnMut(&str) -> Option<MediaId>,
    ) -> Result<Vec<Entry>, DayErrors> {
        self.plan_with(tz, media, |_| None)
    }

    /// [`Day::plan`] for a channel with live inputs: `live` maps an input's name to the
    /// media id that stands for it (`None`: the channel has no such input). A live item is
    /// a clip of that media from 0 to its duration, so the media table must give it a
    /// duration at least as long as any live item.
    pub fn plan_with(
        &self,
        tz: Tz,
        mut media: impl FnMut(&str) -> Option<MediaId>,
        mut live: impl FnMut(&str) -> Option<MediaId>,
    ) -> Result<Vec<Entry>, DayErrors> {
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let start = match self.start_utc(i, tz) {
                Ok(Some(t)) => match item.start.map(|(_, m)| m) {
                    Some(StartMode::Soft) => Start::Soft(t),
                    _ => Start::Hard(t),
                },
                Ok(None) => Start::Follow,
                Err(e) => {
                    errors.push(e);
                    Start::Follow
                }
            };
            let mut clip = |path: &str, in_point: Option<Duration>, out_point: Option<Duration>| {
                let id = media(path);
                if id.is_none() {
                    errors.push(DayError {
                        line: Some(item.line),
                        item: Some((i + 1, item.label())),
                        field: None,
                        message: format!("file not found: {path}"),
                    });
                }
                Clip {
                    media: id.unwrap_or(MediaId(u32::MAX)),
                    in_point: in_point.map_or(0, |d| d.as_nanos() as u64),
                    out_point: out_point.map(|d| d.as_nanos() as u64),
                }
            };
            let body = match &item.source {
                Source::File {
                    path,
                    in_point,
                    out_point,
                } => Body::Clip(clip(path, *in_point, *out_point)),
                Source::Block { paths, loop_for } => Body::Block {
                    clips: paths.iter().map(|p| clip(p, None, None)).collect(),
                    loop_for: loop_for.map(|d| d.as_nanos() as u64),
                },
                Source::Live {
                    input,
                    duration,
                    backup,
                } => {
                    let mut resolve = |name: &str, field: &str| {
                        let id = live(name);
                        if id.is_none() {
                            errors.push(DayError {
                                line: Some(item.line),
                                item: Some((i + 1, item.label())),
                                field: Some(field.to_owned()),
                                message: format!("the channel has no live input named `{name}`"),
                            });
                        }
                        id
                    };
                    let id = resolve(input, "live");
                    for b in backup {
                        resolve(b, "backup");
                    }
                    Body::Clip(Clip {
                        media: id.unwrap_or(MediaId(u32::MAX)),
                        in_point: 0,
                        out_point: Some(duration.as_nanos() as u64),
                    })
                }
            };
            entries.push(Entry { start, body });
        }
        if errors.is_empty() {
            Ok(entries)
        } else {
            Err(DayErrors(errors))
        }
    }

    /// Items naming a file outside the media directory (see [`media_path`]), each by item
    /// and field: refused when a schedule is written; such an item never airs.
    pub fn check_paths(&self) -> Vec<DayError> {
        let mut errors = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let field = match item.source {
                Source::File { .. } => "file",
                Source::Block { .. } => "block",
                Source::Live { .. } => continue,
            };
            for p in item.paths() {
                if let Err(why) = media_path(p) {
                    errors.push(DayError {
                        line: Some(item.line),
                        item: Some((i + 1, item.label())),
                        field: Some(field.to_owned()),
                        message: format!("`{p}`: {why}"),
                    });
                }
            }
        }
        errors
    }

    /// Live items naming an input the channel does not have (`inputs`: its
    /// `[[channel.input]]` names), each by item and field: refused when a schedule is
    /// written.
    pub fn check_inputs(&self, inputs: &[String]) -> Vec<DayError> {
        let mut errors = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let Source::Live { input, backup, .. } = &item.source else {
                continue;
            };
            let named =
                std::iter::once(("live", input)).chain(backup.iter().map(|b| ("backup", b)));
            for (field, name) in named {
                if !inputs.contains(name) {
                    errors.push(DayError {
                        line: Some(item.line),
                        item: Some((i + 1, item.label())),
                        field: Some(field.to_owned()),
                        message: if inputs.is_empty() {
                            format!("`{name}`: the channel has no live inputs")
                        } else {
                            format!(
                                "the channel has no live input named `{name}` (it has {})",
                                inputs.join(", ")
                            )
                        },
                    });
                }
            }
        }
        errors
    }

    /// The file text: the format [`parse`] reads, items in order, keys in a fixed order.
    pub fn to_toml(&self) -> String {
        let mut s = format!("date = \"{}\"\nrevision = {}\n", self.date, self.revision);
        for item in &self.items {
            s.push_str("\n[[item]]\n");
            if let Some((t, mode)) = item.start {
                s.push_str(&format!("start = \"{t}\"\n"));
                if mode == StartMode::Soft {
                    s.push_str("mode = \"soft\"\n");
                }
            }
            match &item.source {
                Source::File {
                    path,
                    in_point,
                    out_point,
                } => {
                    s.push_str(&format!("file = {}\n", quote(path)));
                    if let Some(d) = in_point {
                        s.push_str(&format!("in = \"{}\"\n", show(*d)));
                    }
                    if let Some(d) = out_point {
                        s.push_str(&format!("out = \"{}\"\n", show(*d)));
                    }
                }
                Source::Block { paths, loop_for } => {
                    let list: Vec<String> = paths.iter().map(|p| quote(p)).collect();
                    s.push_str(&format!("block = [{}]\n", list.join(", ")));
                    if let Some(d) = loop_for {
                        s.push_str(&format!("loop_for = \"{}\"\n", show(*d)));
                    }
                }
                Source::Live {
                    input,
                    duration,
                    backup,
                } => {
                    s.push_str(&format!("live = {}\n", quote(input)));
                    s.push_str(&format!("duration = \"{}\"\n", show(*duration)));
                    if !backup.is_empty() {
                        let list: Vec<String> = backup.iter().map(|p| quote(p)).collect();
                        s.push_str(&format!("backup = [{}]\n", list.join(", ")));
                    }
                }
            }
            let p = &item.programme;
            for (key, value) in [
                ("title", &p.title),
                ("description", &p.description),
                ("genre", &p.genre),
                ("language", &p.language),
                ("episode", &p.episode),
            ] {
                if let Some(v) = value {
                    s.push_str(&format!("{key} = {}\n", quote(v)));
                }
            }
            if p.rating > 0 {
                s.push_str(&format!("rating = {}\n", p.rating));
            }
        }
        s
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files inside the media directory only: absolute paths and `..` are refused, each by
    /// item, line and field; `./` and subdirectories are fine.
    #[test]
    fn paths_outside_the_media_directory_are_refused() {
        for ok in ["news.ts", "./news.ts", "2026/12/news.ts", "a..b.ts"] {
            assert_eq!(media_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../secret.ts",
            "clips/../../x.ts",
            ".",
            "a\0b",
        ] {
            assert!(media_path(bad).is_err(), "{bad:?}");
        }
        let day = parse(
            "date = \"2026-12-06\"\n[[item]]\nstart = \"10:00:00\"\nfile = \"/srv/other/x.ts\"\n\
             [[item]]\nblock = [\"ok.ts\", \"../y.ts\"]\nloop_for = \"1m\"\n[[item]]\nfile = \"fine.ts\"\n",
        )
        .unwrap();
        let errors = day.check_paths();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            (errors[0].line, errors[0].field.as_deref()),
            (Some(2), Some("file"))
        );
        assert!(errors[0].message.contains("absolute path"), "{}", errors[0]);
        assert_eq!(errors[1].item.as_ref().map(|i| i.0), Some(2));
        assert_eq!(errors[1].field.as_deref(), Some("block"));
        assert!(errors[1].to_string().contains("`../y.ts`"), "{}", errors[1]);
    }

    const NEWS: &str = r#"date = "2026-11-23"
revision = 3

[[item]]
start = "18:30:00"
file = "media/a.ts"
title = "天气预报"

[[item]]
file = "media/b.ts"
in = "00:00:10"
out = "00:01:00.5"

[[item]]
start = "19:00:00"
file = "media/news.ts"
title = "新闻联播"
description = "每晚七点的新闻节目。Evening news, \"quoted\"."
genre = "news"
rating = 12
language = "zho"
episode = "2026-11-23"

[[item]]
start = "19:30:00"
mode = "soft"
block = ["media/ad1.ts", "media/ad2.ts"]
loop_for = "5m"
title = "广告"
"#;

    #[test]
    fn parses_and_round_trips_chinese_text() {
        let day = parse(NEWS).unwrap();
        assert_eq!(day.date, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(day.revision, 3);
        assert_eq!(day.items.len(), 4);
        assert_eq!(day.items[2].programme.title.as_deref(), Some("新闻联播"));
        assert_eq!(day.items[2].line, 14);
        assert_eq!(
            day.items[1].source,
            Source::File {
                path: "media/b.ts".to_owned(),
                in_point: Some(Duration::from_secs(10)),
                out_point: Some(Duration::from_millis(60_500)),
            }
        );
        assert_eq!(day.items[3].start.unwrap().1, StartMode::Soft);
        let text = day.to_toml();
        let again = parse(&text).unwrap();
        assert_eq!(
            again.items.iter().map(|i| &i.programme).collect::<Vec<_>>(),
            day.items.iter().map(|i| &i.programme).collect::<Vec<_>>()
        );
        assert_eq!(again.to_toml(), text, "writing is stable");
    }

    /// A day of one item a second (86,400): parsed whole, and a mistake in its last item
    /// named by its line (line numbers come from an index of the newlines, not a count from
    /// the start for each item).
    #[test]
    fn a_day_of_an_item_a_second_names_its_lines() {
        let mut text = String::from("date = \"2026-11-23\"\n");
        for i in 0..86_400 {
            let (h, m, sec) = (i / 3600, i / 60 % 60, i % 60);
            text.push_str(&format!(
                "[[item]]\nstart = \"{h:02}:{m:02}:{sec:02}\"\nfile = \"a.ts\"\n"
            ));
        }
        assert_eq!(parse(&text).unwrap().items.len(), 86_400);
        text.push_str("[[item]]\nstart = \"24:00:01\"\nfile = \"a.ts\"\n");
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.0[0].line, Some(2 + 3 * 86_400), "{}", errors.0[0]);
    }

    #[test]
    fn every_mistake_is_named_by_line_item_and_field() {
        let text = r#"date = "2026-11-23"

[[item]]
start = "25:00:00"
file = "a.ts"

[[item]]
file = "b.ts"
in = "00:01:00"
out = "00:00:30"
rating = 99
language = "Chinese"

[[item]]
title = "Nothing"

[[item]]
start = "19:00:00"
file = "c.ts"
colour = "red"

[[item]]
start = "18:00:00"
mode = "later"
file = "d.ts"
"#;
        let errors = parse(text).unwrap_err();
        let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "line 3: item 1 (25:00:00 a.ts): start: `25:00:00` is not a time like 19:00:00",
                "line 7: item 2 (follows b.ts): out: 00:00:30 is not after in 00:01:00",
                "line 7: item 2 (follows b.ts): rating: 99 is out of range, expected a minimum age 0..=21",
                "line 7: item 2 (follows b.ts): language: `Chinese` is not an ISO 639-2 code like zho or eng",
                "line 14: item 3 (follows \"Nothing\"): file: missing: an item plays a file, a block or a live input",
                "line 17: item 4 (19:00:00 c.ts): unknown field `colour`, expected one of `start`, `mode`, `file`, `block`, `live`, `duration`, `backup`, `loop_for`, `in`, `out`, `title`, `description`, `genre`, `rating`, `language`, `episode`",
                "line 22: item 5 (18:00:00 d.ts): mode: `later`, expected hard or soft",
            ],
            "{errors}"
        );
        let order = parse("date = \"2026-11-23\"\n[[item]]\nstart = \"19:00:00\"\nfile = \"a\"\n[[item]]\nstart = \"18:00:00\"\nfile = \"b\"\n")
            .unwrap_err();
        assert_eq!(
            order.to_string(),
            "line 5: item 2 (18:00:00 b): start: 18:00:00 is not after item 1's start 19:00:00"
        );
        let syntax = parse("date = \"2026-11-23\"\n[[item]\n").unwrap_err();
        assert_eq!(syntax.0[0].line, Some(2));
        assert!(parse("date = \"23/11/2026\"\n")
            .unwrap_err()
            .to_string()
            .contains("date: `23/11/2026` is not a date"));
        // Found by fuzzing: a start past 2262 overflowed the nanosecond clock.
        let far = "date = \"4052-11-23\"\n[[item]]\nstart = \"18:30:00\"\nfile = \"a.ts\"\n";
        assert!(parse(far)
            .unwrap_err()
            .to_string()
            .contains("line 1: date: 4052-11-23 is outside 1970-01-02..=2261-12-31"));
    }

    #[test]
    fn live_items_name_an_input_and_a_duration() {
        let text = "date = \"2026-11-23\"\n\n[[item]]\nstart = \"19:00:00\"\nlive = \"studio-a\"\n\
                    duration = \"30m\"\nbackup = [\"studio-b\"]\ntitle = \"Live\"\n\n\
                    [[item]]\nfile = \"a.ts\"\n";
        let day = parse(text).unwrap();
        assert_eq!(
            day.items[0].source,
            Source::Live {
                input: "studio-a".to_owned(),
                duration: Duration::from_secs(1800),
                backup: vec!["studio-b".to_owned()],
            }
        );
        assert_eq!(day.items[0].what(), "live studio-a");
        // Written back as read.
        let again = parse(&day.to_toml()).unwrap();
        for (a, b) in again.items.iter().zip(&day.items) {
            assert_eq!((&a.source, &a.programme), (&b.source, &b.programme));
        }
        // Planned as a clip of the input's stand-in media, cut at the duration.
        let entries = day
            .plan_with(
                chrono_tz::UTC,
                |_| Some(MediaId(0)),
                |name| (name == "studio-a" || name == "studio-b").then_some(MediaId(7)),
            )
            .unwrap();
        assert_eq!(
            entries[0].body,
            Body::Clip(Clip {
                media: MediaId(7),
                in_point: 0,
                out_point: Some(1_800_000_000_000),
            })
        );
        // An input the channel does not have, at plan time and at write time.
        let err = day
            .plan_with(chrono_tz::UTC, |_| Some(MediaId(0)), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "item 1 (19:00:00 \"Live\"): live: the channel has no live input named `studio-a`"
            ) && err.contains("backup: the channel has no live input named `studio-b`"),
            "{err}"
        );
        let errors = day.check_inputs(&["studio-a".to_owned()]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "line 3: item 1 (19:00:00 \"Live\"): backup: the channel has no live input named \
             `studio-b` (it has studio-a)"
        );
        // Mistakes: no duration; a duration or backups on a file; a live item with a file;
        // its own input as its backup.
        let bad = |item: &str| {
            parse(&format!("date = \"2026-11-23\"\n[[item]]\n{item}\n"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("live = \"a\"").contains("duration: missing"));
        assert!(
            bad("live = \"a\"\nduration = \"soon\"").contains("duration: `soon` is not a duration")
        );
        assert!(
            bad("file = \"a.ts\"\nduration = \"5m\"").contains("duration: only for a live item")
        );
        assert!(bad("file = \"a.ts\"\nbackup = [\"b\"]").contains("backup: only for a live item"));
        assert!(bad("file = \"a.ts\"\nlive = \"a\"\nduration = \"5m\"").contains("not several"));
        assert!(bad("live = \"a\"\nduration = \"5m\"\nbackup = [\"a\"]")
            .contains("the item's own input"));
    }

    #[test]
    fn plans_in_the_channel_zone() {
        let day = parse(NEWS).unwrap();
        let files = [
            "media/a.ts",
            "media/b.ts",
            "media/news.ts",
            "media/ad1.ts",
            "media/ad2.ts",
        ];
        let entries = day
            .plan(chrono_tz::Asia::Shanghai, |p| {
                files
                    .iter()
                    .position(|f| *f == p)
                    .map(|i| MediaId(i as u32))
            })
            .unwrap();
        // 2026-11-23 19:00:00 +08:00 = 11:00:00 UTC.
        let utc_19 = chrono::Utc
            .with_ymd_and_hms(2026, 11, 23, 11, 0, 0)
            .unwrap()
            .timestamp();
        assert_eq!(entries[2].start, Start::Hard(Utc(utc_19 * 1_000_000_000)));
        assert_eq!(entries[1].start, Start::Follow);
        assert!(matches!(entries[3].start, Start::Soft(_)));
        assert_eq!(
            entries[3].body,
            Body::Block {
                clips: vec![Clip::whole(MediaId(3)), Clip::whole(MediaId(4))],
                loop_for: Some(300_000_000_000),
            }
        );
        let missing = day.plan(chrono_tz::Asia::Shanghai, |p| {
            (p != "media/news.ts").then_some(MediaId(0))
        });
        assert_eq!(
            missing.unwrap_err().to_string(),
            "line 14: item 3 (19:00:00 \"新闻联播\"): file not found: media/news.ts"
        );
    }

    #[test]
    fn a_start_in_a_daylight_saving_gap_is_an_error() {
        // 2026-03-08 02:30 does not exist in New York.
        let day =
            parse("date = \"2026-03-08\"\n[[item]]\nstart = \"02:30:00\"\nfile = \"a\"\n").unwrap();
        let err = day.start_utc(0, chrono_tz::America::New_York).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not exist in America/New_York"),
            "{err}"
        );
    }

    #[test]
    fn lengths_and_offsets() {
        assert_eq!(parse_length("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_length("90s"), Some(Duration::from_secs(90)));
        // Days, as the config's durations take them: 30d is 720h.
        assert_eq!(parse_length("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_length("1d12h"), Some(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_length("32d"), None, "over 31 days");
        assert_eq!(parse_length("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(parse_length("5x"), None);
        assert_eq!(parse_length("5"), None);
        // Found by fuzzing: these overflowed the sum, or the nanoseconds later.
        assert_eq!(parse_length("20496382304121724000h30m"), None);
        assert_eq!(parse_length("2049638230412172400h30m"), None);
        assert_eq!(parse_length("744h"), Some(MAX_LENGTH));
        assert_eq!(parse_length("744h1s"), None);
        assert_eq!(parse_offset("99999999999:00:00"), None);
        assert_eq!(
            parse_offset("29:30.5"),
            Some(Duration::from_millis(1_770_500))
        );
        assert_eq!(parse_offset("00:61:00"), None);
        assert_eq!(parse_offset("-1"), None);
    }
}
