//! Item-level edits of a day's schedule, applied to the file fetched from the daemon and put
//! back with its revision as the precondition (`hectl schedule add|insert|move|remove|set`).

use anyhow::{bail, Context};
use chrono::NaiveTime;
use epg::schedule::{Day, Item, Programme, Source, StartMode};

/// Metadata changes; `None` leaves a field as it is.
#[derive(Default)]
pub(crate) struct Meta {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) genre: Option<String>,
    pub(crate) rating: Option<u8>,
    pub(crate) language: Option<String>,
    pub(crate) episode: Option<String>,
}

/// One edit.
pub(crate) enum Edit {
    /// A file at the end, or after item `after` (1-based).
    Add {
        file: String,
        after: Option<usize>,
        meta: Meta,
    },
    /// A file starting at `at`, placed among the fixed starts.
    Insert {
        file: String,
        at: NaiveTime,
        hard: bool,
        meta: Meta,
    },
    /// Item `from` to position `to` (1-based).
    Move { from: usize, to: usize },
    /// Item `n` (1-based) removed.
    Remove { n: usize },
    /// Item `n`'s metadata, and optionally its start.
    Set {
        n: usize,
        meta: Meta,
        start: Option<(NaiveTime, StartMode)>,
        follow: bool,
    },
}

fn parse_time(s: &str) -> anyhow::Result<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
        .with_context(|| format!("`{s}` is not a time like 19:00:00"))
}

/// `19:00:00` → a time, for the command line.
pub(crate) fn time_arg(s: &str) -> anyhow::Result<NaiveTime> {
    parse_time(s)
}

fn item(file: String, start: Option<(NaiveTime, StartMode)>, meta: Meta) -> Item {
    let mut it = Item {
        line: 0,
        start,
        source: Source::File {
            path: file,
            in_point: None,
            out_point: None,
        },
        programme: Programme::default(),
    };
    apply_meta(&mut it, meta);
    it
}

fn apply_meta(it: &mut Item, m: Meta) {
    let p = &mut it.programme;
    if let Some(v) = m.title {
        p.title = Some(v);
    }
    if let Some(v) = m.description {
        p.description = Some(v);
    }
    if let Some(v) = m.genre {
        p.genre = Some(v);
    }
    if let Some(v) = m.rating {
        p.rating = v;
    }
    if let Some(v) = m.language {
        p.language = Some(v);
    }
    if let Some(v) = m.episode {
        p.episode = Some(v);
    }
}

fn check_n(day: &Day, n: usize) -> anyhow::Result<usize> {
    if n == 0 || n > day.items.len() {
        bail!("no item {n}: the day has {} items", day.items.len());
    }
    Ok(n - 1)
}

/// Applies `edit`; returns a one-line summary.
pub(crate) fn apply(day: &mut Day, edit: Edit) -> anyhow::Result<String> {
    match edit {
        Edit::Add { file, after, meta } => {
            let pos = match after {
                Some(n) => check_n(day, n)? + 1,
                None => day.items.len(),
            };
            let it = item(file, None, meta);
            let label = it.label();
            day.items.insert(pos, it);
            Ok(format!("added item {} ({label})", pos + 1))
        }
        Edit::Insert {
            file,
            at,
            hard,
            meta,
        } => {
            // Before the first item whose fixed start is later; after everything otherwise.
            let pos = day
                .items
                .iter()
                .position(|i| i.start.is_some_and(|(t, _)| t > at))
                .unwrap_or(day.items.len());
            let mode = if hard {
                StartMode::Hard
            } else {
                StartMode::Soft
            };
            let it = item(file, Some((at, mode)), meta);
            let label = it.label();
            day.items.insert(pos, it);
            Ok(format!("inserted item {} ({label})", pos + 1))
        }
        Edit::Move { from, to } => {
            let f = check_n(day, from)?;
            let t = check_n(day, to)?;
            let it = day.items.remove(f);
            let label = it.label();
            day.items.insert(t, it);
            Ok(format!("moved item {from} ({label}) to {to}"))
        }
        Edit::Remove { n } => {
            let i = check_n(day, n)?;
            let it = day.items.remove(i);
            Ok(format!("removed item {n} ({})", it.label()))
        }
        Edit::Set {
            n,
            meta,
            start,
            follow,
        } => {
            let i = check_n(day, n)?;
            let it = &mut day.items[i];
            apply_meta(it, meta);
            if follow {
                it.start = None;
            } else if let Some(s) = start {
                it.start = Some(s);
            }
            Ok(format!("set item {n} ({})", it.label()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Day {
        epg::schedule::parse(
            "date = \"2026-11-23\"\nrevision = 4\n[[item]]\nstart = \"18:00:00\"\nfile = \"a.ts\"\n\
             [[item]]\nfile = \"b.ts\"\n[[item]]\nstart = \"20:00:00\"\nfile = \"c.ts\"\n",
        )
        .unwrap()
    }

    fn files(d: &Day) -> Vec<String> {
        d.items.iter().map(|i| i.paths().join("+")).collect()
    }

    #[test]
    fn edits() {
        let mut d = day();
        let s = apply(
            &mut d,
            Edit::Insert {
                file: "news.ts".into(),
                at: time_arg("19:00:00").unwrap(),
                hard: true,
                meta: Meta {
                    title: Some("新闻".into()),
                    ..Meta::default()
                },
            },
        )
        .unwrap();
        assert_eq!(s, "inserted item 3 (19:00:00 \"新闻\")");
        assert_eq!(files(&d), ["a.ts", "b.ts", "news.ts", "c.ts"]);
        apply(&mut d, Edit::Move { from: 4, to: 1 }).unwrap();
        assert_eq!(files(&d), ["c.ts", "a.ts", "b.ts", "news.ts"]);
        apply(&mut d, Edit::Remove { n: 1 }).unwrap();
        apply(
            &mut d,
            Edit::Add {
                file: "d.ts".into(),
                after: Some(1),
                meta: Meta::default(),
            },
        )
        .unwrap();
        assert_eq!(files(&d), ["a.ts", "d.ts", "b.ts", "news.ts"]);
        apply(
            &mut d,
            Edit::Set {
                n: 4,
                meta: Meta {
                    rating: Some(12),
                    ..Meta::default()
                },
                start: None,
                follow: true,
            },
        )
        .unwrap();
        assert_eq!(d.items[3].start, None);
        assert_eq!(d.items[3].programme.rating, 12);
        assert!(apply(&mut d, Edit::Remove { n: 9 })
            .unwrap_err()
            .to_string()
            .contains("no item 9: the day has 4 items"));
        // The result is still a valid file.
        epg::schedule::parse(&d.to_toml()).unwrap();
    }
}
