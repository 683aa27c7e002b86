//! XMLTV listings, as the XMLTV project's `xmltv.dtd` (release 1.2.1) defines them: a
//! [`Guide`] of channels and programmes, written by [`to_xml`] and read by [`parse`] (or
//! [`parse_bytes`], which honours the declared encoding). [`merge`] fills schedule items from a
//! guide's programmes, and [`from_schedule`] turns a channel's schedule into programmes.
//!
//! Sans-IO: text in, text out; no files, no clock.
//!
//! How the model maps to the DTD:
//! - Times are `YYYYMMDDhhmmss +hhmm` on output. [`parse_time`] also takes the shorter forms
//!   (`YYYYMMDDhhmm`, `YYYYMMDDhh`, `YYYYMMDD`), `+hh:mm`, `UTC`/`GMT`/`Z`, and no zone at all
//!   (UTC, as the DTD says).
//! - The DTD's `channel` has no LCN. [`to_xml`] writes it as the last `display-name`, bare
//!   digits without `lang` (the DTD allows "maybe even a channel number"). [`parse`] reads a
//!   display-name like that as the LCN, unless it is the first one, and reads the `<lcn>` element
//!   of later DTDs too. So a channel whose second name is bare digits without `lang` reads back
//!   with that number as its LCN.
//! - `episode-num*` and `rating*` keep one value each: the `onscreen` episode number if there is
//!   one, else the first; the first rating. Elements the model does not hold (credits, icons of
//!   programmes, ...) are skipped on input.
//! - Leading and trailing whitespace in text is not significant (DTD): it is trimmed both ways.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

mod merge;
mod reader;
mod writer;

pub use merge::{from_schedule, merge, timed, MergeReport, MERGE_TOLERANCE};
pub use reader::{parse, parse_bytes, parse_time};
pub use writer::{format_time, to_xml};

/// At most this many problems are listed in an [`XmltvError`]; the rest are counted.
pub const MAX_PROBLEMS: usize = 20;

/// A listing: the `<tv>` element.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Guide {
    /// The channels, in document order.
    pub channels: Vec<Channel>,
    /// The programmes, in document order.
    pub programmes: Vec<Programme>,
}

impl Guide {
    /// The programmes on one channel, in document order (what [`merge`] takes).
    pub fn programmes_on(&self, channel: &str) -> Vec<&Programme> {
        self.programmes
            .iter()
            .filter(|p| p.channel == channel)
            .collect()
    }
}

/// A text and its language (`lang` as written: `zh`, `en`, `fr_FR`, or none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Text {
    /// Its language, if given.
    pub lang: Option<String>,
    /// The text.
    pub value: String,
}

impl Text {
    /// A text in a language (or in none).
    pub fn new(lang: Option<&str>, value: impl Into<String>) -> Text {
        Text {
            lang: lang.map(str::to_owned),
            value: value.into(),
        }
    }
}

/// A channel: the `<channel>` element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// Its id, which programmes refer to (XMLTV recommends a DNS-like name: `cctv1.cn`).
    pub id: String,
    /// Its names, the most common first (at least one to be valid XMLTV; [`to_xml`] writes the
    /// id when there is none).
    pub display_names: Vec<Text>,
    /// Logical channel number (see the module notes for how it is written).
    pub lcn: Option<u16>,
    /// Address of its logo (`<icon src>`).
    pub icon: Option<String>,
}

/// One showing of a programme on a channel: the `<programme>` element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Programme {
    /// The channel's id.
    pub channel: String,
    /// When it starts, in the offset it was given in.
    pub start: DateTime<FixedOffset>,
    /// When it ends, if known (never before `start`).
    pub stop: Option<DateTime<FixedOffset>>,
    /// Titles, one per language; XMLTV needs at least one that is not empty.
    pub titles: Vec<Text>,
    /// Episode titles.
    pub sub_titles: Vec<Text>,
    /// Descriptions (may span lines).
    pub descs: Vec<Text>,
    /// Genres, free text.
    pub categories: Vec<Text>,
    /// The language it is broadcast in (free text: `zh`, `en`, `English`).
    pub language: Option<String>,
    /// Episode number.
    pub episode_num: Option<EpisodeNum>,
    /// Age rating.
    pub rating: Option<Rating>,
    /// Addresses about it (`<url system="...">`): a head-end gives its catch-up playlist
    /// with `system="catchup"`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<Url>,
}

/// An address: `<url system="...">`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Url {
    /// What it is (`catchup`, `imdb`, ...), if said.
    pub system: Option<String>,
    /// The address.
    pub value: String,
}

/// An episode number: `<episode-num system="...">`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpisodeNum {
    /// Numbering system: `onscreen` (free text, the DTD's default), `xmltv_ns`
    /// (`season . episode . part`, counted from 0), `dd_progid`, ...
    pub system: String,
    /// The number in that system.
    pub value: String,
}

/// A rating: `<rating system="..."><value>...</value></rating>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rating {
    /// The body or scheme (`MPAA`, `FSK`, a country code).
    pub system: Option<String>,
    /// The rating in that system (`12+`, `PG-13`).
    pub value: String,
}

/// Why [`parse`] refused a document: what is wrong, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmltvError {
    /// The problems, at most [`MAX_PROBLEMS`]; never empty.
    pub problems: Vec<Problem>,
    /// How many more were found but not listed.
    pub more: usize,
}

impl XmltvError {
    /// The first problem.
    pub fn first(&self) -> &Problem {
        // Invariant: an XmltvError is only built with at least one problem.
        &self.problems[0]
    }
}

impl fmt::Display for XmltvError {
    /// One problem a line, then `(and N more)` if some were left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        if self.more > 0 {
            write!(f, "\n(and {} more)", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for XmltvError {}

/// One problem in a document, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
    /// What sort of problem.
    pub kind: ProblemKind,
    /// The element at fault (`programme`), if any.
    pub element: Option<String>,
    /// What is wrong, naming the attribute or child at fault.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `line 12, column 5: programme: start "2026133": not a valid XMLTV time`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: ", self.line, self.column)?;
        if let Some(e) = &self.element {
            write!(f, "{e}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The sort of a [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not text in its encoding, or not well-formed XML; the reader stops at the first one.
    Syntax,
    /// Well-formed, but not XMLTV: wrong root, missing element or attribute, unknown or
    /// duplicate channel.
    Structure,
    /// A value that does not parse or does not make sense (a time, stop before start).
    Value,
}
