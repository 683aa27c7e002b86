//! `hectl schedule ...`: a channel's schedules on a running daemon, through its control API
//! (`/api/schedules/CHANNEL/DATE`): show, get, put and export a day; edit it item by item (add,
//! insert, move, remove, set); diff and undo revisions. `import` converts a CSV or M3U playlist
//! into a schedule file offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::{client, diff, edit};

/// `hectl schedule` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum ScheduleAction {
    /// A channel's schedule for a date, as a table.
    Show {
        channel: String,
        /// The date (default: today, UTC).
        #[arg(long)]
        date: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The schedule file itself (TOML), to edit and `put` back.
    Get {
        channel: String,
        #[arg(long)]
        date: Option<String>,
        /// Write it here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Replaces a date's schedule with FILE. The revision it was edited from is the file's
    /// `revision` (as `get` wrote it) unless `--revision` says otherwise; if someone else
    /// changed the schedule since, nothing is written and the conflict is reported.
    Put {
        channel: String,
        file: PathBuf,
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Writes a date's schedule as TOML (the file itself), CSV or M3U.
    Export {
        channel: String,
        #[arg(long)]
        date: Option<String>,
        /// toml, csv or m3u.
        #[arg(long, default_value = "toml")]
        format: String,
        /// Write it here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Converts a CSV (`start,duration,title,file`) or M3U playlist into a schedule file
    /// for DATE, offline; `put` it afterwards.
    Import {
        /// The .csv, .m3u or .m3u8 file.
        file: PathBuf,
        #[arg(long)]
        date: String,
        /// Write it here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Appends a file (or puts it after item N).
    Add {
        channel: String,
        file: String,
        #[arg(long)]
        date: Option<String>,
        /// Put it after this item (1-based) instead of at the end.
        #[arg(long)]
        after: Option<usize>,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Inserts a file starting at a time (soft: waits for what plays; --hard: cuts it).
    Insert {
        channel: String,
        file: String,
        #[arg(long)]
        date: Option<String>,
        /// Local start time, e.g. 19:00:00.
        #[arg(long)]
        at: String,
        /// Cut whatever plays at that instant.
        #[arg(long)]
        hard: bool,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Moves item N to position M.
    Move {
        channel: String,
        n: usize,
        #[arg(long)]
        to: usize,
        #[arg(long)]
        date: Option<String>,
    },
    /// Removes item N.
    Remove {
        channel: String,
        n: usize,
        #[arg(long)]
        date: Option<String>,
    },
    /// Changes item N's metadata or start.
    Set {
        channel: String,
        n: usize,
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        meta: MetaArgs,
        /// A new fixed start (with --hard to cut what plays).
        #[arg(long, conflicts_with = "follow")]
        start: Option<String>,
        #[arg(long, requires = "start")]
        hard: bool,
        /// Make it follow the previous item (no fixed start).
        #[arg(long)]
        follow: bool,
    },
    /// What changed between two revisions of a date's schedule.
    Diff {
        channel: String,
        #[arg(long)]
        date: Option<String>,
        /// The older revision.
        from: u64,
        /// The newer revision (default: the current one).
        to: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Puts back the revision before the current one (as a new revision).
    Undo {
        channel: String,
        #[arg(long)]
        date: Option<String>,
        /// The revision being undone (default: the current one).
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// Programme metadata on the command line.
#[derive(clap::Args, Default)]
pub(crate) struct MetaArgs {
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    genre: Option<String>,
    /// Minimum age, 0..=21.
    #[arg(long)]
    rating: Option<u8>,
    /// ISO 639-2 code, e.g. zho.
    #[arg(long)]
    language: Option<String>,
    #[arg(long)]
    episode: Option<String>,
}

impl From<MetaArgs> for edit::Meta {
    fn from(m: MetaArgs) -> edit::Meta {
        edit::Meta {
            title: m.title,
            description: m.description,
            genre: m.genre,
            rating: m.rating,
            language: m.language,
            episode: m.episode,
        }
    }
}

/// Runs `hectl schedule ACTION`: `import` offline, everything else against the daemon.
pub(crate) fn run(
    action: ScheduleAction,
    server: Option<String>,
    token_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    match action {
        ScheduleAction::Import { file, date, output } => import(file, date, output),
        action => {
            let server = client::Server::new(server, token_file)?;
            schedule(action, &server)
        }
    }
}

fn schedule(action: ScheduleAction, server: &client::Server) -> anyhow::Result<ExitCode> {
    let path = |channel: &str, date: &str| format!("/api/schedules/{channel}/{date}");
    match action {
        ScheduleAction::Show {
            channel,
            date,
            json,
        } => {
            let date = date.unwrap_or_else(today_utc);
            let v = server
                .request("GET", &path(&channel, &date), &[], "", false)?
                .ok()?;
            if json {
                println!("{v:#}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{channel} {date}, revision {}",
                v["revision"].as_u64().unwrap_or(0)
            );
            // The resolved timeline, when every file can be probed; else the items as written.
            let t = server.request(
                "GET",
                &format!("{}/timeline", path(&channel, &date)),
                &[],
                "",
                false,
            )?;
            if t.status == 200 {
                let t = t.json()?;
                print!("{}", timeline_table(&t));
                return Ok(ExitCode::SUCCESS);
            }
            if let Ok(e) = t.json() {
                for line in e["errors"].as_array().into_iter().flatten() {
                    println!("! {}", line.as_str().unwrap_or_default());
                }
            }
            println!(
                "{:>3}  {:<10} {:<5} {:<24} files",
                "#", "start", "mode", "title"
            );
            for it in v["items"].as_array().into_iter().flatten() {
                let files: Vec<&str> = it["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .collect();
                println!(
                    "{:>3}  {:<10} {:<5} {:<24} {}",
                    it["n"],
                    it["start"].as_str().unwrap_or("+"),
                    it["mode"].as_str().unwrap_or(""),
                    it["title"].as_str().unwrap_or("-"),
                    files.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleAction::Get {
            channel,
            date,
            output,
        } => schedule(
            ScheduleAction::Export {
                channel,
                date,
                format: "toml".to_owned(),
                output,
            },
            server,
        ),
        ScheduleAction::Put {
            channel,
            file,
            revision,
        } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let day = epg::schedule::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let expected = revision.unwrap_or(day.revision);
            let v = server
                .request(
                    "PUT",
                    &path(&channel, &day.date.to_string()),
                    &[("If-Match", format!("\"{expected}\""))],
                    &text,
                    true,
                )?
                .ok()?;
            for w in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            println!(
                "{channel} {}: revision {} written",
                day.date,
                v["revision"].as_u64().unwrap_or(0)
            );
            Ok(ExitCode::SUCCESS)
        }
        ScheduleAction::Add {
            channel,
            file,
            date,
            after,
            meta,
        } => edit_day(
            server,
            &channel,
            date,
            edit::Edit::Add {
                file,
                after,
                meta: meta.into(),
            },
        ),
        ScheduleAction::Insert {
            channel,
            file,
            date,
            at,
            hard,
            meta,
        } => edit_day(
            server,
            &channel,
            date,
            edit::Edit::Insert {
                file,
                at: edit::time_arg(&at)?,
                hard,
                meta: meta.into(),
            },
        ),
        ScheduleAction::Move {
            channel,
            n,
            to,
            date,
        } => edit_day(server, &channel, date, edit::Edit::Move { from: n, to }),
        ScheduleAction::Remove { channel, n, date } => {
            edit_day(server, &channel, date, edit::Edit::Remove { n })
        }
        ScheduleAction::Set {
            channel,
            n,
            date,
            meta,
            start,
            hard,
            follow,
        } => {
            let start = start
                .map(|s| {
                    let mode = if hard {
                        epg::schedule::StartMode::Hard
                    } else {
                        epg::schedule::StartMode::Soft
                    };
                    edit::time_arg(&s).map(|t| (t, mode))
                })
                .transpose()?;
            edit_day(
                server,
                &channel,
                date,
                edit::Edit::Set {
                    n,
                    meta: meta.into(),
                    start,
                    follow,
                },
            )
        }
        ScheduleAction::Export {
            channel,
            date,
            format,
            output,
        } => {
            let date = date.unwrap_or_else(today_utc);
            let v = server
                .request("GET", &path(&channel, &date), &[], "", false)?
                .ok()?;
            let toml = v["toml"].as_str().unwrap_or_default();
            let text = match format.as_str() {
                "toml" => toml.to_owned(),
                "csv" | "m3u" => {
                    let day = epg::schedule::parse(toml)
                        .map_err(|e| anyhow::anyhow!("the server's file: {e}"))?;
                    if format == "csv" {
                        epg::import::to_csv(&day)
                    } else {
                        epg::import::to_m3u(&day)
                    }
                }
                other => anyhow::bail!("--format {other}: expected toml, csv or m3u"),
            };
            match output {
                Some(p) => std::fs::write(&p, text).with_context(|| p.display().to_string())?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleAction::Diff {
            channel,
            date,
            from,
            to,
            json,
        } => {
            let date = date.unwrap_or_else(today_utc);
            let fetch = |rev: Option<u64>| -> anyhow::Result<(u64, String)> {
                let q = rev.map_or_else(String::new, |r| format!("?revision={r}"));
                let v = server
                    .request(
                        "GET",
                        &format!("{}{q}", path(&channel, &date)),
                        &[],
                        "",
                        false,
                    )?
                    .ok()?;
                Ok((
                    v["revision"].as_u64().unwrap_or(0),
                    v["toml"].as_str().unwrap_or_default().to_owned(),
                ))
            };
            let (a_rev, a) = fetch(Some(from))?;
            let (b_rev, b) = fetch(to)?;
            if json {
                let lines: Vec<String> = diff::lines(&a, &b)
                    .into_iter()
                    .filter(|l| !l.starts_with(' '))
                    .collect();
                println!(
                    "{:#}",
                    serde_json::json!({"channel": channel, "date": date, "from": a_rev, "to": b_rev, "changes": lines})
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("{channel} {date}: revision {a_rev} → {b_rev}");
            for line in diff::lines(&a, &b) {
                if !line.starts_with("  revision = ") {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        // Import is offline and handled before connecting (see `run`).
        ScheduleAction::Import { .. } => anyhow::bail!("import runs offline"),
        ScheduleAction::Undo {
            channel,
            date,
            revision,
        } => {
            let date = date.unwrap_or_else(today_utc);
            let expected = match revision {
                Some(r) => r,
                None => server
                    .request("GET", &path(&channel, &date), &[], "", false)?
                    .ok()?["revision"]
                    .as_u64()
                    .unwrap_or(0),
            };
            let v = server
                .request(
                    "POST",
                    &format!("{}/undo", path(&channel, &date)),
                    &[("If-Match", format!("\"{expected}\""))],
                    "",
                    true,
                )?
                .ok()?;
            println!(
                "{channel} {date}: revision {expected} undone, now revision {}",
                v["revision"].as_u64().unwrap_or(0)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `hectl schedule import`: a CSV or M3U playlist into a schedule file, offline.
fn import(file: PathBuf, date: String, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let date = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
        .with_context(|| format!("--date {date}: expected 2026-11-23"))?;
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let day = match ext.as_str() {
        "csv" => epg::import::csv(&text, date),
        "m3u" | "m3u8" => epg::import::m3u(&text, date),
        _ => anyhow::bail!("{}: expected a .csv, .m3u or .m3u8 file", file.display()),
    }
    .map_err(|e| anyhow::anyhow!("{}:\n{e}", file.display()))?;
    let toml = day.to_toml();
    match output {
        Some(p) => std::fs::write(&p, toml).with_context(|| p.display().to_string())?,
        None => print!("{toml}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Fetches the day, applies `edit`, and puts it back on the fetched revision.
fn edit_day(
    server: &client::Server,
    channel: &str,
    date: Option<String>,
    edit: edit::Edit,
) -> anyhow::Result<ExitCode> {
    let date = date.unwrap_or_else(today_utc);
    let path = format!("/api/schedules/{channel}/{date}");
    let v = server.request("GET", &path, &[], "", false)?.ok()?;
    let text = v["toml"].as_str().unwrap_or_default();
    let mut day = if v["revision"].as_u64() == Some(0) {
        epg::schedule::Day {
            date: chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                .with_context(|| format!("--date {date}"))?,
            revision: 0,
            items: Vec::new(),
        }
    } else {
        epg::schedule::parse(text).map_err(|e| anyhow::anyhow!("the server's file: {e}"))?
    };
    let summary = edit::apply(&mut day, edit)?;
    let revision = server.put_day(channel, &day)?;
    println!("{channel} {date}: {summary}; revision {revision} written");
    Ok(ExitCode::SUCCESS)
}

/// The day's timeline as a table: one row per item segment, runs of filler merged into one
/// gap row, items cut short by a later hard start flagged.
fn timeline_table(t: &serde_json::Value) -> String {
    let mut out = format!(
        "timeline in {}\n{:<12}  {:<12}  {:>9}  {:<8}  {:<32}  {}\n",
        t["timezone"].as_str().unwrap_or("?"),
        "start",
        "end",
        "duration",
        "what",
        "item",
        "file"
    );
    let segs: Vec<&serde_json::Value> = t["segments"].as_array().into_iter().flatten().collect();
    let mut k = 0;
    while k < segs.len() {
        let s = segs[k];
        if s["what"] == "filler" {
            let mut j = k;
            let mut dur = 0.0;
            while j < segs.len() && segs[j]["what"] == "filler" {
                dur += segs[j]["duration_s"].as_f64().unwrap_or(0.0);
                j += 1;
            }
            out.push_str(&format!(
                "{:<12}  {:<12}  {:>8.1}s  {:<8}  {:<32}  {}\n",
                s["start"].as_str().unwrap_or(""),
                segs[j - 1]["end"].as_str().unwrap_or(""),
                dur,
                "GAP",
                format!("filled by {} filler clip(s)", j - k),
                s["file"].as_str().unwrap_or("")
            ));
            k = j;
            continue;
        }
        let note = s["cut_by"]
            .as_str()
            .map(|c| format!("  << OVERLAP: cut by {c}'s hard start"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<12}  {:<12}  {:>8.1}s  {:<8}  {:<32}  {}{note}\n",
            s["start"].as_str().unwrap_or(""),
            s["end"].as_str().unwrap_or(""),
            s["duration_s"].as_f64().unwrap_or(0.0),
            s["what"].as_str().unwrap_or(""),
            s["label"].as_str().unwrap_or(""),
            s["file"].as_str().unwrap_or("")
        ));
        k += 1;
    }
    for w in t["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", w.as_str().unwrap_or_default()));
    }
    out
}

fn today_utc() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + days as i32)
        .map_or_else(String::new, |d| d.to_string())
}
