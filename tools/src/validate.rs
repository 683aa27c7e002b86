//! `hectl validate FILE`: a schedule file checked offline, as the daemon would accept it.
//! Syntax and fields (`epg::schedule`), then every media file (found, readable, its duration
//! probed from its own timestamps), then the day resolved in the channel's time zone
//! (`playout::schedule`): out points beyond a file's end, overlapping fixed starts, gaps with
//! no filler. Every problem is printed with the file, line, item and field.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use epg::schedule::{parse, Day, Source, Tz};
use playout::probe::{read_head_and_tail, ProbeReadError, WINDOW_BYTES};
use playout::schedule::{
    resolve, Clip, MediaId, MediaInfo, ScheduleError, Utc, ENDLESS_NS, UNPLAYABLE,
};

/// What `hectl validate` found.
pub(crate) struct Report {
    /// One line per problem, `FILE: line N: item M (LABEL): field: message`.
    pub(crate) errors: Vec<String>,
    /// Items, media files and timeline segments, when valid.
    pub(crate) summary: Option<(usize, usize, usize)>,
    /// Files that do not exist yet: accepted (the daemon airs the filler in their slots
    /// until they appear), one line each.
    pub(crate) warnings: Vec<String>,
}

/// Runs `hectl validate`: parses `--timezone` and `--charset`, validates, and prints the
/// problems (or the summary) as text or JSON; fails if there is any problem.
pub(crate) fn run(
    file: &Path,
    media: &Path,
    timezone: &str,
    filler: &[String],
    charset: &str,
    inputs: Option<&[String]>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let tz: Tz = timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("--timezone: unknown time zone `{timezone}`"))?;
    let charset = epg::si::Charset::from_name(charset).ok_or_else(|| {
        anyhow::anyhow!("--charset: unknown `{charset}` (utf-8, gb2312, latin, iso-8859-1..15)")
    })?;
    let report = validate(file, media, tz, filler, charset, inputs);
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "ok": report.errors.is_empty(),
            "errors": report.errors,
            "warnings": report.warnings,
            "items": report.summary.map(|s| s.0),
            "media": report.summary.map(|s| s.1),
            "segments": report.summary.map(|s| s.2),
        });
        println!("{value:#}");
    } else {
        for w in &report.warnings {
            println!("{w}");
        }
        for e in &report.errors {
            println!("{e}");
        }
        if let Some((items, media, segments)) = report.summary {
            println!(
                "{}: OK ({items} items, {media} media files, {segments} segments on the day's timeline)",
                file.display()
            );
        }
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Why the existing file `name` in `media_dir` is not one a schedule may air: a symbolic
/// link out of the directory, or not a regular file (`None`: it may, or it does not exist).
fn leaves(media_dir: &Path, name: &str) -> Option<String> {
    let path = media_dir.join(name);
    std::fs::symlink_metadata(&path).ok()?;
    let (Ok(real), Ok(dir)) = (path.canonicalize(), media_dir.canonicalize()) else {
        return Some("cannot be resolved".to_owned());
    };
    if !real.starts_with(&dir) {
        return Some(format!(
            "a symbolic link out of the media directory (to {})",
            real.display()
        ));
    }
    (!real.is_file()).then(|| "not a regular file".to_owned())
}

/// Validates `file`; media paths are relative to `media_dir`; programme text must fit the
/// channel's SI `charset`; live items must name one of `inputs` (any name when `None`).
pub(crate) fn validate(
    file: &Path,
    media_dir: &Path,
    tz: Tz,
    filler: &[String],
    charset: epg::si::Charset,
    inputs: Option<&[String]>,
) -> Report {
    let shown = file.display().to_string();
    let mut warnings = Vec::new();
    let fail = |errors: Vec<String>, warnings: &Vec<String>| Report {
        errors,
        summary: None,
        warnings: warnings.clone(),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(vec![format!("{shown}: {e}")], &warnings),
    };
    let day = match parse(&text) {
        Ok(d) => d,
        Err(errors) => {
            return fail(
                errors.0.iter().map(|e| format!("{shown}: {e}")).collect(),
                &warnings,
            )
        }
    };
    // Files that do not exist yet are not refused: the daemon airs the filler in their slots
    // until they appear; the day is resolved as it would air now.
    // Files only inside the media directory, as the daemon takes them: relative, no `..`, no
    // symbolic link out of it, regular files.
    let mut confined: Vec<String> = day
        .check_paths()
        .iter()
        .map(|e| format!("{shown}: {e}"))
        .collect();
    for (i, item) in day.items.iter().enumerate() {
        for p in item.paths() {
            if epg::schedule::media_path(p).is_ok() {
                if let Some(why) = leaves(media_dir, p) {
                    confined.push(format!(
                        "{shown}: line {}: item {} ({}): `{p}`: {why}",
                        item.line,
                        i + 1,
                        item.label()
                    ));
                }
            }
        }
    }
    if !confined.is_empty() {
        return fail(confined, &warnings);
    }
    for (i, item) in day.items.iter().enumerate() {
        for p in item.paths() {
            if !media_dir.join(p).exists() {
                warnings.push(format!(
                    "{shown}: warning: line {}: item {} ({}): `{p}` does not exist (yet): until it does, its slot airs the filler",
                    item.line,
                    i + 1,
                    item.label()
                ));
            }
        }
    }
    // The media table: every file named by an item or the filler list, probed once.
    let mut names: Vec<String> = Vec::new();
    let mut media: Vec<Option<MediaInfo>> = Vec::new();
    let mut errors: Vec<String> = day
        .check_charset(charset)
        .iter()
        .map(|e| format!("{shown}: {e}"))
        .collect();
    let mut probe_errors: Vec<(String, String)> = Vec::new();
    let mut lookup = |name: &str| -> Option<MediaId> {
        if !media_dir.join(name).exists() && !filler.iter().any(|f| f == name) {
            return Some(UNPLAYABLE);
        }
        if let Some(i) = names.iter().position(|n| n == name) {
            return media[i].map(|_| MediaId(i as u32));
        }
        let info = match probe(&media_dir.join(name)) {
            Ok(d) => Some(MediaInfo { duration: d }),
            Err(e) => {
                probe_errors.push((name.to_owned(), e));
                None
            }
        };
        names.push(name.to_owned());
        media.push(info);
        info.map(|_| MediaId(names.len() as u32 - 1))
    };
    let filler_clips: Vec<Clip> = filler
        .iter()
        .filter_map(|f| lookup(f).map(Clip::whole))
        .collect();
    // A live input stands for media longer than any item (its items last what they say), put
    // in the table once the files are known.
    const LIVE: MediaId = MediaId(u32::MAX - 1);
    let entries = day
        .plan_with(tz, &mut lookup, |name| {
            inputs
                .is_none_or(|list| list.iter().any(|i| i == name))
                .then_some(LIVE)
        })
        .map(|entries| {
            let live = MediaId(media.len() as u32);
            entries
                .into_iter()
                .map(|mut e| {
                    if let playout::schedule::Body::Clip(c) = &mut e.body {
                        if c.media == LIVE {
                            c.media = live;
                        }
                    }
                    // What the daemon does with a file not there: a gap, filled.
                    e.without_unplayable()
                })
                .collect::<Vec<_>>()
        });
    let files = names.len();
    media.push(Some(MediaInfo {
        duration: ENDLESS_NS,
    }));
    for (name, e) in &probe_errors {
        if filler.contains(name) {
            errors.push(format!("{shown}: filler {name}: {e}"));
        }
    }
    let entries = match entries {
        Ok(e) => e,
        Err(day_errors) => {
            for e in &day_errors.0 {
                // "file not found" from plan: say why (missing, unreadable, not TS).
                let why = probe_errors
                    .iter()
                    .find(|(n, _)| e.message.ends_with(n.as_str()))
                    .map(|(n, why)| format!("{n}: {why}"));
                let mut e = e.clone();
                if let Some(why) = why {
                    e.message = why;
                }
                errors.push(format!("{shown}: {e}"));
            }
            return fail(errors, &warnings);
        }
    };
    let table: Vec<MediaInfo> = media
        .iter()
        .map(|m| m.unwrap_or(MediaInfo { duration: 0 }))
        .collect();
    let (from, until) = day_window(&day, tz);
    match resolve(&entries, &filler_clips, &table, from, until) {
        Ok(timeline) if errors.is_empty() => Report {
            errors,
            summary: Some((day.items.len(), files, timeline.segments().len())),
            warnings,
        },
        Ok(_) => fail(errors, &warnings),
        Err(e) => {
            errors.push(format!("{shown}: {}", explain(&e, &day, &names, tz)));
            fail(errors, &warnings)
        }
    }
}

/// `[00:00, next 00:00)` of the day in `tz`, in UTC.
fn day_window(day: &Day, tz: Tz) -> (Utc, Utc) {
    use chrono::TimeZone;
    let at = |d: chrono::NaiveDate| {
        let t = tz
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map_or(0, |t| t.timestamp());
        Utc(t * 1_000_000_000)
    };
    let next = day.date.succ_opt().unwrap_or(day.date);
    (at(day.date), at(next))
}

fn local(t: Utc, tz: Tz) -> String {
    use chrono::TimeZone;
    tz.timestamp_nanos(t.0).format("%H:%M:%S").to_string()
}

fn explain(e: &ScheduleError, day: &Day, names: &[String], tz: Tz) -> String {
    let item = |i: usize| {
        day.items.get(i).map_or_else(
            || format!("item {}", i + 1),
            |it| format!("line {}: item {} ({})", it.line, i + 1, it.label()),
        )
    };
    let secs = |ns: u64| format!("{:.3} s", ns as f64 / 1e9);
    match e {
        ScheduleError::BadPoints {
            entry,
            in_point,
            out_point,
            duration,
        } => {
            let field = match day.items.get(*entry).map(|i| &i.source) {
                // The in point at or past the media's end is the in point's fault.
                Some(Source::File { .. }) if *in_point >= *duration => "in",
                Some(Source::File { .. }) => "out",
                _ => "block",
            };
            format!(
                "{}: {field}: in {} / out {} outside the media's {}",
                item(*entry),
                secs(*in_point),
                secs(*out_point),
                secs(*duration)
            )
        }
        ScheduleError::GapWithoutFiller { from, to } => format!(
            "gap from {} to {} ({}) and no filler (give --filler FILE)",
            local(*from, tz),
            local(*to, tz),
            secs(to.since(*from))
        ),
        ScheduleError::Overlap {
            entry, previous, ..
        } => {
            format!("{}: start: not after {}'s", item(*entry), item(*previous))
        }
        ScheduleError::UnknownMedia { entry, media } => format!(
            "{}: unknown media {}",
            item(*entry),
            names.get(*media as usize).map_or("?", String::as_str)
        ),
        other => other.to_string(),
    }
}

/// A media file's duration (ns), from its first and last megabytes.
fn probe(path: &PathBuf) -> Result<u64, String> {
    let f = File::open(path).map_err(|e| format!("file not found or unreadable: {e}"))?;
    match read_head_and_tail(f, WINDOW_BYTES) {
        Ok(info) => Ok(info.duration_ns),
        Err(ProbeReadError::Media(e)) => Err(format!("unreadable media: {e}")),
        Err(e) => Err(e.to_string()),
    }
}
