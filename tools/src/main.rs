//! `hectl`: the operator's command line. Today it checks transport streams and validates
//! schedule files offline; the schedule commands that talk to the daemon arrive with its
//! control API.

mod alert_cmd;
mod client;
mod diff;
mod ecmg_cmd;
mod edit;
mod epg_cmd;
mod scramble_cmd;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use playout::check::{check, CheckLimits};
use playout::units::Bitrate;

#[derive(Parser)]
#[command(name = "hectl", version, about = "Head-end operator's command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a TS file strictly (continuity, PAT/PMT/PCR repetition, PCR accuracy, timestamps,
    /// muxrate) and exits non-zero on any violation.
    Check {
        /// The file.
        file: PathBuf,
        /// The muxrate the file must have, as in the config: 6M, "6 Mbit/s", 6000k, 6000000.
        #[arg(long)]
        muxrate: Option<Bitrate>,
        /// Longest allowed PAT/PMT gap, milliseconds.
        #[arg(long, default_value_t = 100)]
        psi_gap_ms: u64,
        /// Longest allowed PCR interval, milliseconds.
        #[arg(long, default_value_t = 40)]
        pcr_interval_ms: u64,
    },
    /// Emergency alerts on a running daemon: make a signing key, send a signed CAP alert,
    /// cancel one, list them. Sending needs the `emergency` role's token (`[alerts] token`):
    /// `--token-file` or `$HECTL_ALERT_TOKEN` (not `$HECTL_TOKEN`).
    Alert {
        #[command(subcommand)]
        action: alert_cmd::AlertAction,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long, global = true)]
        server: Option<String>,
        /// File whose first line is the emergency role's token (default `$HECTL_ALERT_TOKEN`).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Scrambles a TS file offline (its elementary streams: by default every PID the PMTs
    /// list) with DVB-CISSA, ATIS-IDSA, AES-CTR, SM4-CBC or SM4-CTR.
    Scramble(scramble_cmd::ScrambleArgs),
    /// Descrambles a TS file offline: each packet with the key its scrambling bits name.
    Descramble(scramble_cmd::DescrambleArgs),
    /// A test ECMG (DVB SimulCrypt ECMG⇔SCS over TCP): answers CW_provision with ECMs of
    /// `drm::ecm` (control words wrapped with AES or SM4 under --key).
    Ecmg(ecmg_cmd::EcmgArgs),
    /// Prints a shell completion script: `hectl completions bash > /etc/bash_completion.d/hectl`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// What a channel has on air now and next, from a running daemon.
    Status {
        channel: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long)]
        server: Option<String>,
    },
    /// Schedules on a running daemon (its control API).
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long, global = true)]
        server: Option<String>,
        /// File whose first line is the API token (default `$HECTL_TOKEN`).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// The programme guide: XMLTV or JSON from a running daemon, XMLTV metadata into schedules.
    Epg {
        #[command(subcommand)]
        action: EpgAction,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long, global = true)]
        server: Option<String>,
        /// File whose first line is the API token (default `$HECTL_TOKEN`).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Validates a schedule file offline: fields, media files (found, readable, duration),
    /// and the day resolved in the channel's time zone (out points, overlapping starts, gaps
    /// with no filler). Exits non-zero on any problem.
    Validate {
        /// The schedule file (`CHANNEL/DATE.toml`).
        file: PathBuf,
        /// Directory the media paths are relative to.
        #[arg(long, default_value = ".")]
        media: PathBuf,
        /// The channel's time zone (IANA name).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// A filler file for gaps (repeat for a list, played in order and looped).
        #[arg(long)]
        filler: Vec<String>,
        /// The channel's SI character set (`[channel.si] charset`): programme text it cannot
        /// hold is an error.
        #[arg(long, default_value = "utf-8")]
        charset: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EpgAction {
    /// Every channel's guide as XMLTV (`/epg.xml`), or one channel's as JSON.
    Export {
        /// Only this channel, as JSON.
        #[arg(long)]
        channel: Option<String>,
        /// Write it here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Merges an XMLTV file's programme metadata (title, description, genre, rating,
    /// language, episode) into the items of CHANNEL's schedule for DATE that line up with
    /// them. A malformed file is reported by line and column and changes nothing.
    Import {
        /// The XMLTV file.
        file: PathBuf,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        date: String,
        /// The channel's id in the XMLTV file (default: CHANNEL).
        #[arg(long)]
        xmltv_id: Option<String>,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ScheduleAction {
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
struct MetaArgs {
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
    out
}

fn today_utc() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + days as i32)
        .map_or_else(String::new, |d| d.to_string())
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hectl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ecmg(args) => ecmg_cmd::run(args),
        Command::Scramble(args) => scramble_cmd::scramble(args),
        Command::Descramble(args) => scramble_cmd::descramble(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hectl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Alert {
            action,
            server,
            token_file,
        } => alert_cmd::run(action, server, token_file.as_deref()),
        Command::Epg {
            action,
            server,
            token_file,
        } => {
            let server = client::Server::new(server, token_file.as_deref())?;
            match action {
                EpgAction::Export { channel, output } => {
                    epg_cmd::export(&server, channel.as_deref(), output.as_deref())
                }
                EpgAction::Import {
                    file,
                    channel,
                    date,
                    xmltv_id,
                    dry_run,
                } => epg_cmd::import(
                    &server,
                    &file,
                    &channel,
                    &date,
                    xmltv_id.as_deref(),
                    dry_run,
                ),
            }
        }
        Command::Status {
            channel,
            json,
            server,
        } => {
            let server = client::Server::new(server, None)?;
            let v = server
                .request(
                    "GET",
                    &format!("/api/channels/{channel}/status"),
                    &[],
                    "",
                    false,
                )?
                .ok()?;
            if json {
                println!("{v:#}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{channel} at {}", v["now_utc"].as_str().unwrap_or("?"));
            if v["scheduled"] != true {
                println!("now   (no schedule: looping the playlist)");
            }
            if let Some(now) = v["now"].as_object() {
                println!(
                    "now   {} [{}] {:.1} s in, {:.1} s left (until {})",
                    now["label"].as_str().unwrap_or("?"),
                    now["file"].as_str().unwrap_or("?"),
                    now["position_s"].as_f64().unwrap_or(0.0),
                    now["remaining_s"].as_f64().unwrap_or(0.0),
                    now["end"].as_str().unwrap_or("?"),
                );
            }
            if let Some(next) = v["next"].as_object() {
                println!(
                    "next  {} [{}] from {}",
                    next["label"].as_str().unwrap_or("?"),
                    next["file"].as_str().unwrap_or("-"),
                    next["start"].as_str().unwrap_or("?"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule {
            action: ScheduleAction::Import { file, date, output },
            ..
        } => {
            let date = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                .with_context(|| format!("--date {date}: expected 2026-11-23"))?;
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
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
        Command::Schedule {
            action,
            server,
            token_file,
        } => {
            let server = client::Server::new(server, token_file.as_deref())?;
            schedule(action, &server)
        }
        Command::Validate {
            file,
            media,
            timezone,
            filler,
            charset,
            json,
        } => {
            let tz: epg::schedule::Tz = timezone
                .parse()
                .map_err(|_| anyhow::anyhow!("--timezone: unknown time zone `{timezone}`"))?;
            let charset = epg::si::Charset::from_name(&charset).ok_or_else(|| {
                anyhow::anyhow!(
                    "--charset: unknown `{charset}` (utf-8, gb2312, latin, iso-8859-1..15)"
                )
            })?;
            let report = validate::validate(&file, &media, tz, &filler, charset);
            if json {
                let value = serde_json::json!({
                    "file": file.display().to_string(),
                    "ok": report.errors.is_empty(),
                    "errors": report.errors,
                    "items": report.summary.map(|s| s.0),
                    "media": report.summary.map(|s| s.1),
                    "segments": report.summary.map(|s| s.2),
                });
                println!("{value:#}");
            } else {
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
        Command::Check {
            file,
            muxrate,
            psi_gap_ms,
            pcr_interval_ms,
        } => {
            if let Some(rate) = muxrate.filter(|r| r.bps() == 0) {
                anyhow::bail!("--muxrate {rate}: must be positive");
            }
            let data = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let limits = CheckLimits {
                muxrate_bps: muxrate.map(Bitrate::bps),
                max_psi_gap: Duration::from_millis(psi_gap_ms),
                max_pcr_interval: Duration::from_millis(pcr_interval_ms),
                ..CheckLimits::default()
            };
            let report = check(&data, &limits);
            print!("{report}");
            let violations = report.violations(&limits);
            for v in &violations {
                println!("{}: {v}", file.display());
            }
            if violations.is_empty() {
                println!("{}: OK", file.display());
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}: {} violations", file.display(), violations.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// `--muxrate` takes what the config's `muxrate` takes (playout's `Bitrate`).
    #[test]
    fn muxrate_is_a_bitrate() {
        let muxrate =
            |arg: &str| match Cli::try_parse_from(["hectl", "check", "f.ts", "--muxrate", arg]) {
                Ok(Cli {
                    command: Command::Check { muxrate, .. },
                }) => Ok(muxrate.map(|r| r.bps())),
                Ok(_) => unreachable!("not a check command"),
                Err(e) => Err(e.to_string()),
            };
        assert_eq!(muxrate("6M"), Ok(Some(6_000_000)));
        assert_eq!(muxrate("6 Mbit/s"), Ok(Some(6_000_000)));
        assert_eq!(muxrate("1.5M"), Ok(Some(1_500_000)));
        assert_eq!(muxrate("800k"), Ok(Some(800_000)));
        assert_eq!(muxrate("1234"), Ok(Some(1234)));
        for bad in ["fast", "-1M", "1.5"] {
            assert!(muxrate(bad).is_err(), "{bad}");
        }
        let err = muxrate("6X").unwrap_err();
        assert!(err.contains("invalid bitrate `6X`: unknown unit"), "{err}");
    }
}
