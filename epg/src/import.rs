//! Schedules from and to the formats schedulers already have: CSV (`start,duration,title,file`)
//! and M3U playlists. Imports give an [`epg::schedule::Day`](crate::schedule::Day); mistakes are
//! named by line, and nothing is produced unless every line is right. Exports write what the
//! format can hold (see [`to_csv`], [`to_m3u`]).

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};

use crate::schedule::{Day, DayError, DayErrors, Item, Programme, Source, StartMode};

/// A CSV schedule: a header naming the columns `start`, `duration`, `title` and `file` (in
/// any order; `start`, `duration` and `title` may be empty in a row), then one row per item.
/// `start` is a local time (a hard start; empty: follows), `duration` an `HH:MM:SS` length
/// (the item's out point; empty: the whole file). A `file` written `live:NAME` relays the
/// channel's live input NAME for `duration`. Fields may be double-quoted (with `""` for a
/// quote inside).
pub fn csv(text: &str, date: NaiveDate) -> Result<Day, DayErrors> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(one(
            None,
            "empty file: expected a header `start,duration,title,file`",
        ));
    };
    let names: Vec<String> = fields(header)
        .iter()
        .map(|f| f.trim().to_lowercase())
        .collect();
    let col = |n: &str| names.iter().position(|x| x == n);
    let Some(file_col) = col("file") else {
        return Err(one(Some(1), "the header has no `file` column"));
    };
    let (start_col, dur_col, title_col) = (col("start"), col("duration"), col("title"));
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let f = fields(line);
        let get = |c: Option<usize>| {
            c.and_then(|c| f.get(c))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let mut err = |field: &str, message: String| {
            errors.push(DayError {
                line: Some(n),
                item: Some((items.len() + 1, line.chars().take(40).collect())),
                field: Some(field.to_owned()),
                message,
            });
        };
        let start = match get(start_col) {
            None => None,
            Some(s) => match NaiveTime::parse_from_str(s, "%H:%M:%S%.f") {
                Ok(t) => Some((t, StartMode::Hard)),
                Err(_) => {
                    err("start", format!("`{s}` is not a time like 19:00:00"));
                    continue;
                }
            },
        };
        let out_point = match get(dur_col) {
            None => None,
            Some(s) => match length(s) {
                Some(d) => Some(d),
                None => {
                    err("duration", format!("`{s}` is not a length like 00:30:00"));
                    continue;
                }
            },
        };
        let Some(path) = get(Some(file_col)) else {
            err("file", "empty".to_owned());
            continue;
        };
        // `live:NAME` relays the channel's input NAME for the duration.
        let source = match path.strip_prefix("live:") {
            Some(input) => {
                let Some(duration) = out_point else {
                    err(
                        "duration",
                        format!("a live item (`{path}`) needs a duration"),
                    );
                    continue;
                };
                Source::Live {
                    input: input.to_owned(),
                    duration,
                    backup: Vec::new(),
                }
            }
            None => Source::File {
                path: path.to_owned(),
                in_point: None,
                out_point,
            },
        };
        items.push(Item {
            line: n,
            start,
            source,
            programme: Programme {
                title: get(title_col).map(str::to_owned),
                ..Programme::default()
            },
        });
    }
    finish(date, items, errors)
}

/// An M3U playlist (`#EXTM3U`, `#EXTINF:SECONDS,TITLE`, then the file): items that follow
/// each other; a positive duration becomes the item's out point.
pub fn m3u(text: &str, date: NaiveDate) -> Result<Day, DayErrors> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut pending: Option<(usize, Option<Duration>, Option<String>)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() || line == "#EXTM3U" {
            continue;
        }
        if let Some(info) = line.strip_prefix("#EXTINF:") {
            let (dur, title) = info.split_once(',').unwrap_or((info, ""));
            let dur = dur.split_whitespace().next().unwrap_or("");
            let secs: f64 = match dur.parse() {
                Ok(v) => v,
                Err(_) => {
                    errors.push(DayError {
                        line: Some(n),
                        item: None,
                        field: Some("#EXTINF".to_owned()),
                        message: format!("`{dur}` is not a duration in seconds"),
                    });
                    continue;
                }
            };
            let out = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
            let title = Some(title.trim().to_owned()).filter(|t| !t.is_empty());
            pending = Some((n, out, title));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (_, out_point, title) = pending.take().unwrap_or((n, None, None));
        items.push(Item {
            line: n,
            start: None,
            source: Source::File {
                path: line.to_owned(),
                in_point: None,
                out_point,
            },
            programme: Programme {
                title,
                ..Programme::default()
            },
        });
    }
    finish(date, items, errors)
}

/// The day as CSV (`start,duration,title,file`), readable by [`csv`]: `duration` is the out
/// point less the in point (empty for a whole file); a live item is `live:NAME` with its
/// duration. CSV cannot hold everything: a block is
/// written as its files joined by `|` in `file`, with its loop duration as `duration`; soft
/// starts become plain starts; descriptions and other metadata are left out.
pub fn to_csv(day: &Day) -> String {
    let mut out = String::from("start,duration,title,file\n");
    for it in &day.items {
        let start = it.start.map_or_else(String::new, |(t, _)| t.to_string());
        let (duration, file) = match &it.source {
            Source::File {
                path,
                in_point,
                out_point,
            } => (
                out_point.map_or_else(String::new, |o| {
                    clock(o.saturating_sub(in_point.unwrap_or_default()))
                }),
                path.clone(),
            ),
            Source::Block { paths, loop_for } => {
                (loop_for.map_or_else(String::new, clock), paths.join("|"))
            }
            // Backups are left out.
            Source::Live {
                input, duration, ..
            } => (clock(*duration), format!("live:{input}")),
        };
        let title = it.programme.title.clone().unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{}\n",
            quote_csv(&start),
            quote_csv(&duration),
            quote_csv(&title),
            quote_csv(&file)
        ));
    }
    out
}

/// The day as an M3U playlist (files in order; a block's files each; durations from out
/// points, -1 otherwise). Start times are not part of M3U.
pub fn to_m3u(day: &Day) -> String {
    let mut out = String::from("#EXTM3U\n");
    for it in &day.items {
        let title = it.programme.title.clone().unwrap_or_default();
        let files: Vec<(String, Option<Duration>)> = match &it.source {
            Source::File {
                path,
                in_point,
                out_point,
            } => vec![(
                path.clone(),
                out_point.map(|o| o.saturating_sub(in_point.unwrap_or_default())),
            )],
            Source::Block { paths, .. } => paths.iter().map(|p| (p.clone(), None)).collect(),
            Source::Live {
                input, duration, ..
            } => vec![(format!("live:{input}"), Some(*duration))],
        };
        for (path, d) in files {
            let secs = d.map_or_else(|| "-1".to_owned(), |d| format!("{}", d.as_secs_f64()));
            out.push_str(&format!(
                "#EXTINF:{secs},{}\n{path}\n",
                title.replace('\n', " ")
            ));
        }
    }
    out
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    let ms = d.subsec_millis();
    let base = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if ms == 0 {
        base
    } else {
        format!("{base}.{ms:03}")
    }
}

fn quote_csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn finish(date: NaiveDate, items: Vec<Item>, errors: Vec<DayError>) -> Result<Day, DayErrors> {
    if !errors.is_empty() {
        return Err(DayErrors(errors));
    }
    let day = Day {
        date,
        revision: 0,
        items,
    };
    // What is imported must be a valid schedule file (fixed starts increasing, ...).
    crate::schedule::parse(&day.to_toml())?;
    Ok(day)
}

fn one(line: Option<usize>, message: &str) -> DayErrors {
    DayErrors(vec![DayError {
        line,
        item: None,
        field: None,
        message: message.to_owned(),
    }])
}

/// `HH:MM:SS(.fff)` or `MM:SS` or seconds.
fn length(s: &str) -> Option<Duration> {
    let mut secs = 0f64;
    for p in s.split(':') {
        let v: f64 = p.trim().parse().ok()?;
        if v < 0.0 {
            return None;
        }
        secs = secs * 60.0 + v;
    }
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The fields of one CSV line (RFC 4180 quoting, no line breaks inside fields).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn csv_rows_become_items() {
        let text = "start,duration,title,file\n18:00:00,00:30:00,\"新闻, 早\",media/a.ts\n,,,media/b.ts\n19:00:00,,\"Say \"\"hi\"\"\",media/c.ts\n";
        let day = csv(text, date()).unwrap();
        assert_eq!(day.items.len(), 3);
        assert_eq!(day.items[0].programme.title.as_deref(), Some("新闻, 早"));
        assert_eq!(
            day.items[0].source,
            Source::File {
                path: "media/a.ts".to_owned(),
                in_point: None,
                out_point: Some(Duration::from_secs(1800)),
            }
        );
        assert_eq!(day.items[1].start, None);
        assert_eq!(day.items[2].programme.title.as_deref(), Some("Say \"hi\""));
        // Columns in another order.
        let day = csv("file,title\nx.ts,X\n", date()).unwrap();
        assert_eq!(day.items[0].programme.title.as_deref(), Some("X"));
    }

    #[test]
    fn csv_mistakes_are_named_by_line() {
        let text = "start,duration,title,file\n25:00:00,,A,a.ts\n,ten,B,b.ts\n,,C,\n";
        let errors = csv(text, date()).unwrap_err().to_string();
        assert!(
            errors.contains("line 2: item 1 (25:00:00,,A,a.ts): start: `25:00:00` is not a time"),
            "{errors}"
        );
        assert!(
            errors.contains("line 3: item 1 (,ten,B,b.ts): duration: `ten` is not a length"),
            "{errors}"
        );
        assert!(
            errors.contains("line 4: item 1 (,,C,): file: empty"),
            "{errors}"
        );
        assert!(csv("title\nA\n", date())
            .unwrap_err()
            .to_string()
            .contains("no `file` column"));
        // Starts out of order: rejected as the schedule file would be.
        assert!(csv("start,file\n19:00:00,a.ts\n18:00:00,b.ts\n", date()).is_err());
    }

    #[test]
    fn exports_read_back() {
        let text =
            "start,duration,title,file\n18:00:00,00:30:00,\"新闻, 早\",media/a.ts\n,,,media/b.ts\n";
        let day = csv(text, date()).unwrap();
        assert_eq!(to_csv(&day), text);
        let again = m3u(&to_m3u(&day), date()).unwrap();
        assert_eq!(again.items.len(), 2);
        assert_eq!(again.items[0].programme.title.as_deref(), Some("新闻, 早"));
        assert_eq!(again.items[0].source, day.items[0].source);
    }

    #[test]
    fn m3u_entries_follow_each_other() {
        let text = "#EXTM3U\n#EXTINF:-1,Live ident\nmedia/ident.ts\n#EXTINF:300.5,第一集\nmedia/ep1.ts\nmedia/untitled.ts\n";
        let day = m3u(text, date()).unwrap();
        assert_eq!(day.items.len(), 3);
        assert_eq!(day.items[0].programme.title.as_deref(), Some("Live ident"));
        assert_eq!(
            day.items[1].source,
            Source::File {
                path: "media/ep1.ts".to_owned(),
                in_point: None,
                out_point: Some(Duration::from_millis(300_500)),
            }
        );
        assert!(day.items.iter().all(|i| i.start.is_none()));
        let err = m3u("#EXTINF:abc,x\na.ts\n", date())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "line 1: #EXTINF: `abc` is not a duration in seconds");
    }
}
