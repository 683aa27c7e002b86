//! Between XMLTV and schedules: [`merge`] fills schedule items from programmes,
//! [`from_schedule`] makes programmes of a schedule.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};

use super::{EpisodeNum, Programme, Rating, Text};
use crate::schedule;

/// How far apart an item's planned start and a programme's start may be for [`merge`] to pair
/// them by start time.
pub const MERGE_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// Which items [`merge`] filled, and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// `(item, programme)` index pairs, in item order.
    pub matched: Vec<(usize, usize)>,
    /// Items left as they were.
    pub unmatched_items: Vec<usize>,
    /// Programmes no item took.
    pub unused_programmes: Vec<usize>,
}

/// Fills schedule items from XMLTV programmes of their channel (see
/// [`Guide::programmes_on`](super::Guide::programmes_on)).
///
/// `planned[i]` is item `i`'s start and end as the scheduler computed them (items beyond
/// `planned` are left alone). An item is paired with the programme whose start is closest to
/// its own within [`MERGE_TOLERANCE`], closest pairs first; an item still unpaired takes the
/// unused programme that overlaps it most, if that overlap is at least half of both (a programme
/// without `stop` ends where the next one starts). Each programme fills one item at most.
///
/// A paired item takes what the programme has and keeps the rest: title, description, genre
/// (the first category), language (an ISO 639-1 or 639-2 code, or an English language name,
/// stored as ISO 639-2), rating (when its value holds an age, `12`, `12+`, `PG-13`, `FSK 16`)
/// and episode (`xmltv_ns` numbers as `S02E05`). Titles and descriptions in the item's language
/// are preferred.
pub fn merge(
    items: &mut [schedule::Item],
    planned: &[(DateTime<Utc>, DateTime<Utc>)],
    programmes: &[&Programme],
) -> MergeReport {
    let n = items.len().min(planned.len());
    let spans = spans(programmes);
    // The programmes by start, so each item looks only at those near it (a guide of a
    // month against a day of items stays linear, not items × programmes).
    let mut by_start: Vec<usize> = (0..spans.len()).collect();
    by_start.sort_by_key(|&j| spans[j].0);
    let starting_from = |t: DateTime<Utc>| by_start.partition_point(|&j| spans[j].0 < t);
    let mut pairs = Vec::new();
    for (i, (start, _)) in planned.iter().enumerate().take(n) {
        let near = &by_start[starting_from(*start - MERGE_TOLERANCE)..];
        for &j in near
            .iter()
            .take_while(|&&j| spans[j].0 <= *start + MERGE_TOLERANCE)
        {
            pairs.push(((spans[j].0 - *start).abs(), i, j));
        }
    }
    pairs.sort();
    let mut taken: Vec<Option<usize>> = vec![None; n];
    let mut used = vec![false; programmes.len()];
    for (_, i, j) in pairs {
        if taken[i].is_none() && !used[j] {
            taken[i] = Some(j);
            used[j] = true;
        }
    }
    // A programme overlapping an item starts before the item's end and at most the longest
    // programme's length before its start.
    let longest = spans
        .iter()
        .filter_map(|&(s, e)| Some(e? - s))
        .max()
        .unwrap_or_default();
    for (i, &(start, end)) in planned.iter().enumerate().take(n) {
        if taken[i].is_some() || end <= start {
            continue;
        }
        let near = &by_start[starting_from(start - longest)..];
        let best = near
            .iter()
            .take_while(|&&j| spans[j].0 < end)
            .filter(|&&j| !used[j])
            .filter_map(|&j| {
                let (p_start, p_end) = spans[j];
                let p_end = p_end?;
                let overlap = end.min(p_end) - start.max(p_start);
                let majority = overlap * 2 >= end - start && overlap * 2 >= p_end - p_start;
                (overlap > TimeDelta::zero() && majority).then_some((overlap, j))
            })
            .max();
        if let Some((_, j)) = best {
            taken[i] = Some(j);
            used[j] = true;
        }
    }
    let mut report = MergeReport::default();
    for (i, item) in items.iter_mut().enumerate() {
        match taken.get(i).copied().flatten() {
            Some(j) => {
                fill(&mut item.programme, programmes[j]);
                report.matched.push((i, j));
            }
            None => report.unmatched_items.push(i),
        }
    }
    report.unused_programmes = (0..programmes.len()).filter(|&j| !used[j]).collect();
    report
}

/// Programmes for one channel from its schedule: `(start, stop, metadata, fallback title)` per
/// item, the fallback (a file name) used when the item has no title. The item's language (ISO
/// 639-2) becomes the `lang` of its title and description (as ISO 639-1 where there is one) and
/// its `<language>`; the genre becomes a category; a rating above 0 becomes `N+` in
/// `rating_system` (a country code, for instance); the episode an `onscreen` episode number.
pub fn from_schedule<'a>(
    channel: &str,
    rating_system: Option<&str>,
    entries: impl IntoIterator<
        Item = (
            DateTime<FixedOffset>,
            DateTime<FixedOffset>,
            &'a schedule::Programme,
            &'a str,
        ),
    >,
) -> Vec<Programme> {
    entries
        .into_iter()
        .map(|(start, stop, p, fallback_title)| {
            let lang = p.language.as_deref().map(lang_tag);
            let text = |v: &str| Text::new(lang.as_deref(), v);
            Programme {
                channel: channel.to_owned(),
                start,
                stop: Some(stop),
                titles: vec![text(p.title.as_deref().unwrap_or(fallback_title))],
                sub_titles: Vec::new(),
                descs: p.description.as_deref().map(text).into_iter().collect(),
                categories: p
                    .genre
                    .as_deref()
                    .map(|g| Text::new(None, g))
                    .into_iter()
                    .collect(),
                language: lang.clone(),
                episode_num: p.episode.as_ref().map(|e| EpisodeNum {
                    system: "onscreen".to_owned(),
                    value: e.clone(),
                }),
                rating: (p.rating > 0).then(|| Rating {
                    system: rating_system.map(str::to_owned),
                    value: format!("{}+", p.rating),
                }),
                urls: Vec::new(),
            }
        })
        .collect()
}

/// The programmes of one channel as timed schedule metadata, for a channel whose guide comes
/// from XMLTV alone (nothing scheduled here): (start, end, programme) in start order. A
/// programme without `stop` ends where the next one starts; the last such one is left out.
/// The language is the programme's, or its first title's.
pub fn timed(
    programmes: &[&Programme],
) -> Vec<(DateTime<Utc>, DateTime<Utc>, schedule::Programme)> {
    let mut out: Vec<_> = programmes
        .iter()
        .zip(spans(programmes))
        .filter_map(|(p, (start, end))| {
            let mut meta = schedule::Programme::default();
            if let Some(code) = p
                .titles
                .first()
                .and_then(|t| t.lang.as_deref())
                .and_then(iso639_2)
            {
                meta.language = Some(code);
            }
            fill(&mut meta, p);
            Some((start, end.filter(|e| *e > start)?, meta))
        })
        .collect();
    out.sort_by_key(|(s, _, _)| *s);
    out
}

/// Each programme's start and end in UTC; without `stop`, the end is the next later start
/// (found by a binary search of the sorted starts: a day-long guide of a channel without
/// `stop` attributes has tens of thousands of programmes).
fn spans(programmes: &[&Programme]) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let starts: Vec<DateTime<Utc>> = programmes.iter().map(|p| p.start.to_utc()).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    programmes
        .iter()
        .zip(&starts)
        .map(|(p, &start)| {
            let end = p.stop.map(|s| s.to_utc()).or_else(|| {
                let later = sorted.partition_point(|&s| s <= start);
                sorted.get(later).copied()
            });
            (start, end)
        })
        .collect()
}

fn fill(into: &mut schedule::Programme, from: &Programme) {
    if let Some(code) = from.language.as_deref().and_then(iso639_2) {
        into.language = Some(code);
    }
    let want = into.language.clone();
    let pick = |texts: &[Text]| {
        texts
            .iter()
            .find(|t| want.is_some() && t.lang.as_deref().and_then(iso639_2) == want)
            .or(texts.first())
            .map(|t| t.value.clone())
    };
    if let Some(title) = pick(&from.titles) {
        into.title = Some(title);
    }
    if let Some(desc) = pick(&from.descs) {
        into.description = Some(desc);
    }
    if let Some(genre) = from.categories.first() {
        into.genre = Some(genre.value.clone());
    }
    if let Some(age) = from.rating.as_ref().and_then(|r| age_of(&r.value)) {
        into.rating = age;
    }
    if let Some(e) = &from.episode_num {
        into.episode = Some(episode_text(e));
    }
}

/// The minimum age in a rating value: its first number, if 0..=21 (`12+`, `PG-13`, `FSK 16`).
fn age_of(value: &str) -> Option<u8> {
    let digits: String = value
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u8>().ok().filter(|&a| a <= 21)
}

/// An episode number for people: `xmltv_ns` `1 . 4 . 0/1` as `S02E05`, others as written.
fn episode_text(e: &EpisodeNum) -> String {
    if e.system == "xmltv_ns" {
        let mut parts = e.value.split('.').map(|p| {
            let n = p.split('/').next().unwrap_or("").trim();
            if n.is_empty() {
                Some(None)
            } else {
                n.parse::<u32>().ok().map(|n| Some(n + 1))
            }
        });
        if let (Some(Some(season)), Some(Some(episode))) = (parts.next(), parts.next()) {
            match (season, episode) {
                (Some(s), Some(e)) => return format!("S{s:02}E{e:02}"),
                (None, Some(e)) => return format!("E{e:02}"),
                (Some(s), None) => return format!("S{s:02}"),
                (None, None) => {}
            }
        }
    }
    e.value.clone()
}

/// ISO 639-1, ISO 639-2/T, ISO 639-2/B and English name of the languages a head-end meets most.
const LANGUAGES: &[(&str, &str, &str, &str)] = &[
    ("ar", "ara", "ara", "arabic"),
    ("bo", "bod", "tib", "tibetan"),
    ("cs", "ces", "cze", "czech"),
    ("de", "deu", "ger", "german"),
    ("el", "ell", "gre", "greek"),
    ("en", "eng", "eng", "english"),
    ("es", "spa", "spa", "spanish"),
    ("fa", "fas", "per", "persian"),
    ("fr", "fra", "fre", "french"),
    ("hi", "hin", "hin", "hindi"),
    ("id", "ind", "ind", "indonesian"),
    ("it", "ita", "ita", "italian"),
    ("ja", "jpn", "jpn", "japanese"),
    ("ko", "kor", "kor", "korean"),
    ("mn", "mon", "mon", "mongolian"),
    ("ms", "msa", "may", "malay"),
    ("nl", "nld", "dut", "dutch"),
    ("pl", "pol", "pol", "polish"),
    ("pt", "por", "por", "portuguese"),
    ("ru", "rus", "rus", "russian"),
    ("th", "tha", "tha", "thai"),
    ("tr", "tur", "tur", "turkish"),
    ("ug", "uig", "uig", "uighur"),
    ("uk", "ukr", "ukr", "ukrainian"),
    ("vi", "vie", "vie", "vietnamese"),
    ("zh", "zho", "chi", "chinese"),
];

/// An ISO 639-2 code (as the schedule stores it) for a language tag (`zh`, `zh-CN`, `zh_CN`),
/// a three-letter code or an English name; `None` if it is none of those.
fn iso639_2(tag: &str) -> Option<String> {
    let primary = tag
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(&(_, t, _, _)) = LANGUAGES
        .iter()
        .find(|(a, t, b, name)| [*a, *t, *b, *name].contains(&primary.as_str()))
    {
        return Some(t.to_owned());
    }
    (primary.len() == 3 && primary.bytes().all(|b| b.is_ascii_lowercase())).then_some(primary)
}

/// The tag for an ISO 639-2 code: ISO 639-1 where the table has it, else the code.
fn lang_tag(code: &str) -> String {
    LANGUAGES
        .iter()
        .find(|(_, t, b, _)| *t == code || *b == code)
        .map_or_else(|| code.to_owned(), |(a, _, _, _)| (*a).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_episodes_and_languages() {
        for (value, age) in [
            ("12", Some(12)),
            ("12+", Some(12)),
            ("PG-13", Some(13)),
            ("FSK 16", Some(16)),
        ] {
            assert_eq!(age_of(value), age, "{value}");
        }
        assert_eq!(age_of("PG"), None);
        assert_eq!(age_of("99"), None);
        let ns = |v: &str| {
            episode_text(&EpisodeNum {
                system: "xmltv_ns".into(),
                value: v.into(),
            })
        };
        assert_eq!(ns("1 . 4 . 0/1"), "S02E05");
        assert_eq!(ns(". 9 ."), "E10");
        assert_eq!(ns("0/3 . . "), "S01");
        assert_eq!(ns("x . y"), "x . y");
        assert_eq!(iso639_2("zh-CN").as_deref(), Some("zho"));
        assert_eq!(iso639_2("chi").as_deref(), Some("zho"));
        assert_eq!(iso639_2("English").as_deref(), Some("eng"));
        assert_eq!(iso639_2("yue").as_deref(), Some("yue"));
        assert_eq!(iso639_2("Klingon"), None);
        assert_eq!(lang_tag("zho"), "zh");
        assert_eq!(lang_tag("ger"), "de");
        assert_eq!(lang_tag("yue"), "yue");
    }
}
