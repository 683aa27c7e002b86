//! `hectl report`: the stoppage record (停播记录) of a running daemon over a period
//! (`GET /api/report`): per channel the number of stoppages, their total time, the stoppage
//! rate against scheduled air time, the longest and the causes; and every event.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::client::Server;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// Start of the period: RFC 3339 (`2026-12-05T00:00:00+08:00`), a date (its 00:00 UTC)
    /// or `now`. Default: 24 hours before `--to`.
    #[arg(long)]
    from: Option<String>,
    /// End of the period (as `--from`). Default: now.
    #[arg(long)]
    to: Option<String>,
    /// Only this channel.
    #[arg(long)]
    channel: Option<String>,
    /// `text` (figures, then events), `csv` (the events; with `--figures` the per-channel
    /// figures) or `json` (both, as the API gives them).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With `--format csv`: the per-channel figures instead of the events.
    #[arg(long)]
    figures: bool,
    /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
    #[arg(long)]
    server: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Csv,
    Json,
}

pub(crate) fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let server = Server::new(args.server, None)?;
    let mut q = Vec::new();
    for (k, v) in [
        ("from", &args.from),
        ("to", &args.to),
        ("channel", &args.channel),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    let path = if q.is_empty() {
        "/api/report".to_owned()
    } else {
        format!("/api/report?{}", q.join("&"))
    };
    let v = server.request("GET", &path, &[], "", false)?.ok()?;
    let out = match args.format {
        Format::Json => serde_json::to_string_pretty(&v)? + "\n",
        Format::Csv if args.figures => figures_csv(&v),
        Format::Csv => events_csv(&v),
        Format::Text => text(&v),
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const EVENT_COLUMNS: [&str; 16] = [
    "id",
    "event",
    "channel",
    "place",
    "start_utc",
    "start_local",
    "end_utc",
    "end_local",
    "duration_s",
    "ongoing",
    "cause",
    "resolution",
    "before",
    "after",
    "actor",
    "subject",
];

const FIGURE_COLUMNS: [&str; 14] = [
    "channel",
    "scheduled_s",
    "stoppages",
    "stoppage_s",
    "stoppage_rate",
    "stoppage_s_per_100h",
    "longest_stoppage_s",
    "reportable",
    "availability",
    "degradations",
    "degradation_s",
    "failovers",
    "overrides",
    "manual_actions",
];

/// One CSV field (RFC 4180: quoted when it holds a comma, quote or line break).
fn field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A computed column: its name, and its value from a row.
type Column = (&'static str, fn(&Value) -> String);

/// A CSV table of `rows` by `columns`, with one more column computed from each row when
/// `extra` gives its name and how.
fn table(rows: Option<&Vec<Value>>, columns: &[&str], extra: Option<Column>) -> String {
    let mut head: Vec<&str> = columns.to_vec();
    head.extend(extra.map(|(name, _)| name));
    let mut out = head.join(",") + "\n";
    for r in rows.into_iter().flatten() {
        let mut line: Vec<String> = columns.iter().map(|c| field(&r[*c])).collect();
        line.extend(extra.map(|(_, f)| field(&Value::String(f(r)))));
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn events_csv(v: &Value) -> String {
    table(v["events"].as_array(), &EVENT_COLUMNS, None)
}

/// The per-channel figures, with the causes as a last column (`cause ×n (s); …`).
fn figures_csv(v: &Value) -> String {
    table(
        v["channels"].as_array(),
        &FIGURE_COLUMNS,
        Some(("causes", causes)),
    )
}

fn causes(ch: &Value) -> String {
    ch["causes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| {
                    format!(
                        "{k} ×{} ({:.1} s)",
                        c["count"],
                        c["seconds"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Stoppage record {} – {}",
        v["from"].as_str().unwrap_or("?"),
        v["to"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>9} {:>11} {:>10} {:>12} {:>11} {:>9} {:>9}",
        "channel",
        "air h",
        "stoppages",
        "stopped s",
        "rate",
        "s per 100 h",
        "longest s",
        "degraded",
        "failovers"
    );
    for c in v["channels"].as_array().into_iter().flatten() {
        let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{:<16} {:>10.2} {:>9} {:>11.1} {:>9.5}% {:>12.1} {:>11.1} {:>9} {:>9}",
            c["channel"].as_str().unwrap_or("?"),
            f("scheduled_s") / 3600.0,
            c["stoppages"],
            f("stoppage_s"),
            f("stoppage_rate") * 100.0,
            f("stoppage_s_per_100h"),
            f("longest_stoppage_s"),
            c["degradations"],
            c["failovers"],
        );
        let causes = causes(c);
        if !causes.is_empty() {
            let _ = writeln!(out, "    causes: {causes}");
        }
    }
    let events = v["events"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\n{} event(s)", events.len());
    for e in &events {
        let s = |k: &str| e[k].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "{} {:<11} {:<12} {:>9} {}{} [{}] {}{}",
            s("start_local"),
            s("event"),
            s("channel"),
            if e["ongoing"].as_bool() == Some(true) {
                "ongoing".to_owned()
            } else {
                format!("{:.1} s", e["duration_s"].as_f64().unwrap_or(0.0))
            },
            s("cause"),
            e["resolution"]
                .as_str()
                .map_or_else(String::new, |r| format!(" → {r}")),
            s("place"),
            s("actor"),
            e["before"]
                .as_str()
                .map_or_else(String::new, |b| format!(", before: {b}")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(field(&Value::String("a,b".into())), "\"a,b\"");
        assert_eq!(
            field(&Value::String("say \"hi\"".into())),
            "\"say \"\"hi\"\"\""
        );
        assert_eq!(field(&Value::Null), "");
        assert_eq!(field(&serde_json::json!(1.5)), "1.5");
        let v = serde_json::json!({"events": [{"id": 1, "event": "stoppage", "cause": "x, y"}]});
        let csv = events_csv(&v);
        assert!(csv.starts_with("id,event,channel,"));
        assert!(
            csv.lines().nth(1).unwrap().starts_with("1,stoppage,,"),
            "{csv}"
        );
        assert!(csv.contains("\"x, y\""));
        assert_eq!(
            encode("2026-12-05T00:00:00+08:00"),
            "2026-12-05T00:00:00%2B08:00"
        );
    }
}
