//! `hectl`: the operator's command line. Today it checks transport streams and validates
//! schedule files offline; the schedule commands that talk to the daemon arrive with its
//! control API.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use playout::check::{check, CheckLimits};

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
        /// The muxrate the file must have, bits/s (e.g. 6000000 or 6M).
        #[arg(long)]
        muxrate: Option<String>,
        /// Longest allowed PAT/PMT gap, milliseconds.
        #[arg(long, default_value_t = 100)]
        psi_gap_ms: u64,
        /// Longest allowed PCR interval, milliseconds.
        #[arg(long, default_value_t = 40)]
        pcr_interval_ms: u64,
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
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn parse_rate(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1_000.0),
        Some((i, 'M' | 'm')) => (&s[..i], 1_000_000.0),
        Some((i, 'G' | 'g')) => (&s[..i], 1_000_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = digits
        .parse()
        .with_context(|| format!("bad muxrate {s:?}: expected e.g. 6M, 6000k, 6000000"))?;
    anyhow::ensure!(
        v > 0.0 && v.is_finite(),
        "bad muxrate {s:?}: must be positive"
    );
    Ok((v * mult).round() as u64)
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
        Command::Validate {
            file,
            media,
            timezone,
            filler,
            json,
        } => {
            let tz: epg::schedule::Tz = timezone
                .parse()
                .map_err(|_| anyhow::anyhow!("--timezone: unknown time zone `{timezone}`"))?;
            let report = validate::validate(&file, &media, tz, &filler);
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
            let data = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let limits = CheckLimits {
                muxrate_bps: muxrate.as_deref().map(parse_rate).transpose()?,
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
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("6M").unwrap(), 6_000_000);
        assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000);
        assert_eq!(parse_rate("800k").unwrap(), 800_000);
        assert_eq!(parse_rate("1234").unwrap(), 1234);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1M").is_err());
    }
}
