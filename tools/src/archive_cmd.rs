//! `hectl archive`: a channel's archive on a running daemon (`[channel.archive]`): what it
//! holds and what aired on a day (`ls`, `GET /api/archive/{channel}`), and a span exported
//! as one continuous transport stream (`export`, `GET /archive/{channel}.ts`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::client::Server;
use crate::report_cmd::encode;

#[derive(Subcommand)]
pub(crate) enum ArchiveAction {
    /// What the channel's archive holds, and the items that began on a day (default today, in
    /// the channel's zone), each with its catch-up playlists.
    Ls {
        channel: String,
        /// The day, `YYYY-MM-DD`.
        #[arg(long)]
        date: Option<String>,
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long)]
        server: Option<String>,
    },
    /// A span of the channel's archive as one continuous transport stream (the segments
    /// joined, continuity counters carried over gaps), written to FILE (`-` for stdout). Needs
    /// a token of any role (`$HECTL_TOKEN` or `--token-file`).
    Export {
        channel: String,
        /// Start: RFC 3339 (`2026-12-06T20:00:00+08:00`) or Unix seconds. The export begins
        /// at the random access point that starts the segment holding it.
        #[arg(long)]
        from: String,
        /// End, as `--from`: the export ends with the segment holding it.
        #[arg(long)]
        to: String,
        #[arg(short, long)]
        output: PathBuf,
        /// File whose first line is the API token (default `$HECTL_TOKEN`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long)]
        server: Option<String>,
    },
}

pub(crate) fn run(action: ArchiveAction) -> anyhow::Result<ExitCode> {
    match action {
        ArchiveAction::Ls {
            channel,
            date,
            json,
            server,
        } => {
            let server = Server::new(server, None)?;
            let path = match &date {
                Some(d) => format!("/api/archive/{channel}?date={}", encode(d)),
                None => format!("/api/archive/{channel}"),
            };
            let v = server.request("GET", &path, &[], "", false)?.ok()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
            println!(
                "{}: {} segments, {:.1} MB, {} .. {} (kept {} h)",
                s("channel"),
                v["segments"],
                v["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
                s("first"),
                s("last_end"),
                v["keep_s"].as_u64().unwrap_or(0) / 3600
            );
            println!("{} ({}):", s("date"), s("timezone"));
            for it in v["items"].as_array().into_iter().flatten() {
                let t = |k: &str| it[k].as_str().unwrap_or("on air").to_owned();
                println!(
                    "  {}  {}  {:<9} {:>6}  {}  {}",
                    t("start"),
                    t("end"),
                    it["kind"].as_str().unwrap_or(""),
                    it["event_id"]
                        .as_u64()
                        .map_or_else(|| "-".to_owned(), |e| e.to_string()),
                    it["title"].as_str().unwrap_or(""),
                    it["catchup_event"]
                        .as_str()
                        .or(it["catchup"].as_str())
                        .unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArchiveAction::Export {
            channel,
            from,
            to,
            output,
            token_file,
            server,
        } => {
            let server = Server::new(server, token_file.as_deref())?;
            let path = format!(
                "/archive/{channel}.ts?from={}&to={}",
                encode(&from),
                encode(&to)
            );
            let mut sink = outfile::Sink::open(&output)?;
            let n = server.download(&path, &mut sink)?;
            sink.flush()
                .with_context(|| format!("{}", output.display()))?;
            sink.finish()?;
            if !outfile::is_stdout(&output) {
                eprintln!("{}: {} bytes ({} packets)", output.display(), n, n / 188);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
