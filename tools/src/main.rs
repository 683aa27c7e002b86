//! `hectl`: the operator's command line. Offline it checks transport streams, validates and
//! imports schedule files, scrambles and descrambles, and makes alert signing keys; against a
//! running daemon (its control API) it edits schedules, sends and cancels alerts, exports and
//! imports the guide and shows the status; `hectl ecmg` is a test ECMG for SimulCrypt, and
//! `hectl emmg` a test EMMG that feeds a MUX numbered EMM sections (EMMG/PDG⇔MUX).

mod alert_cmd;
mod archive_cmd;
mod audit_cmd;
mod client;
mod diff;
mod ecmg_cmd;
mod edit;
mod emmg_cmd;
mod epg_cmd;
mod fleet_cmd;
mod input_cmd;
mod receive_cmd;
mod report_cmd;
mod schedule_cmd;
mod scramble_cmd;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use playout::check::CheckLimits;
use playout::units::Bitrate;

#[derive(Parser)]
#[command(name = "hectl", version, about = "Head-end operator's command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// For a daemon at https://: trust the CA in this PEM file (alone) instead of the
    /// system's roots.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Allow plain http:// to a daemon that is not on this machine (the token then crosses
    /// the network in clear).
    #[arg(long, global = true)]
    insecure: bool,
}

/// `hectl audit ...`.
#[derive(Subcommand)]
enum AuditAction {
    /// Checks the trail's hash chain offline: every line chained to the one before it; an
    /// edited, deleted or inserted line is named by line number, and the exit status is
    /// non-zero.
    Verify {
        /// The trail (`[http] audit_log`).
        file: PathBuf,
    },
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
    /// A test EMMG (DVB SimulCrypt EMMG/PDG⇔MUX over TCP, data optionally by UDP): sets up a
    /// channel and a stream with a MUX, then sends numbered EMM sections at a steady rate.
    Emmg(emmg_cmd::EmmgArgs),
    /// Prints a shell completion script: `hectl completions bash > /etc/bash_completion.d/hectl`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The stoppage record of a running daemon over a period: per channel the stoppages,
    /// their time, the stoppage rate against scheduled air time (GY/T 264 style), the
    /// longest and the causes; and every event (stoppage, degradation, failover, override,
    /// manual action).
    Report(report_cmd::ReportArgs),
    /// A channel's archive on a running daemon ([channel.archive]): what aired (`ls`), a span
    /// as one transport stream (`export`)
    Archive {
        #[command(subcommand)]
        action: archive_cmd::ArchiveAction,
    },
    /// The fleet of head-ends sharing channels through etcd (`[fleet]`): who sends what
    /// (`status`), moving every channel off a node (`drain`, `undrain`).
    Fleet {
        #[command(subcommand)]
        action: fleet_cmd::FleetAction,
    },
    /// A stream from the network to a file: `udp://` or `rtp://` (RTP sequence gaps counted),
    /// or with `--merge` two RTP paths merged by sequence number (SMPTE ST 2022-7).
    Receive(receive_cmd::ReceiveArgs),
    /// The daemon's API audit trail (`[http] audit_log`).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
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
        action: schedule_cmd::ScheduleAction,
        /// The daemon, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long, global = true)]
        server: Option<String>,
        /// File whose first line is the API token (default `$HECTL_TOKEN`).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// A live channel's inputs on a running daemon: switch to one, lock it, unlock (the
    /// inputs' verdicts decide again). Needs the API token.
    Input {
        #[command(subcommand)]
        action: input_cmd::InputAction,
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
        /// The channel's live inputs (`[[channel.input]] name`, repeat for each): a live item
        /// naming another is an error. Without it, live items' names are not checked.
        #[arg(long = "input")]
        inputs: Vec<String>,
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
    client::set_transport(cli.ca, cli.insecure);
    match cli.command {
        Command::Ecmg(args) => ecmg_cmd::run(args),
        Command::Emmg(args) => emmg_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
        Command::Archive { action } => archive_cmd::run(action),
        Command::Fleet { action } => fleet_cmd::run(action),
        Command::Receive(args) => receive_cmd::run(args),
        Command::Audit {
            action: AuditAction::Verify { file },
        } => audit_cmd::run(&file),
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
        Command::Input {
            action,
            server,
            token_file,
        } => input_cmd::run(&client::Server::new(server, token_file.as_deref())?, action),
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
            let relays = v["engine"]["relays"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if v["scheduled"] != true && relays.is_empty() {
                println!("now   (no schedule: looping the playlist)");
            }
            for r in &relays {
                println!(
                    "live  {}{} (clock {:+} ppb)",
                    match (r["active"].as_str(), r["scheduled"] == true) {
                        (Some(a), _) => format!("relaying `{a}`"),
                        (None, true) => "no input on air (schedule-driven)".to_owned(),
                        (None, false) => "the playlist: no input fit for air".to_owned(),
                    },
                    if r["locked"] == true { ", locked" } else { "" },
                    r["clock_ppb"].as_i64().unwrap_or(0),
                );
                if let Some(sw) = r["switches"].as_array().and_then(|a| a.last()) {
                    println!(
                        "      last switch {}: {} -> {} ({}){}",
                        sw["local"].as_str().unwrap_or("?"),
                        sw["from"].as_str().unwrap_or("playlist"),
                        sw["to"].as_str().unwrap_or("playlist"),
                        sw["cause"].as_str().unwrap_or("?"),
                        sw["gap_ms"]
                            .as_f64()
                            .map_or_else(String::new, |g| format!(", {g:.0} ms gap on air")),
                    );
                }
                for i in r["inputs"].as_array().into_iter().flatten() {
                    println!(
                        "      input `{}`: {}{} ({} bytes, {} CC errors)",
                        i["name"].as_str().unwrap_or("?"),
                        i["health"].as_str().unwrap_or("?"),
                        i["error"]
                            .as_str()
                            .map_or_else(String::new, |e| format!("; {e}")),
                        i["bytes"].as_u64().unwrap_or(0),
                        i["cc_errors"].as_u64().unwrap_or(0),
                    );
                }
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
            action,
            server,
            token_file,
        } => schedule_cmd::run(action, server, token_file.as_deref()),
        Command::Validate {
            file,
            media,
            timezone,
            filler,
            charset,
            inputs,
            json,
        } => validate::run(
            &file,
            &media,
            &timezone,
            &filler,
            &charset,
            (!inputs.is_empty()).then_some(inputs.as_slice()),
            json,
        ),
        Command::Check {
            file,
            muxrate,
            psi_gap_ms,
            pcr_interval_ms,
        } => {
            if let Some(rate) = muxrate.filter(|r| r.bps() == 0) {
                anyhow::bail!("--muxrate {rate}: must be positive");
            }
            let limits = CheckLimits {
                muxrate_bps: muxrate.map(Bitrate::bps),
                max_psi_gap: Duration::from_millis(psi_gap_ms),
                max_pcr_interval: Duration::from_millis(pcr_interval_ms),
                ..CheckLimits::default()
            };
            // Read in pieces: a day-long recording need not fit in memory.
            let mut stream = playout::check::Stream::new();
            let (mut si, mut nit) = (false, false);
            for_each_piece(&file, |piece, _| {
                stream.push(piece);
                for p in piece.chunks_exact(188) {
                    let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
                    si |= matches!(pid, 0x11 | 0x12 | 0x14);
                    nit |= pid == 0x10;
                }
            })?;
            let report = stream.finish(&limits);
            print!("{report}");
            // The ETSI TR 101 290 indicators, as the daemon's monitor counts them on air, by
            // the byte clock of the file's muxrate (a second pass: the clock is known now).
            if let Some(rate) = report.clock_muxrate_bps.filter(|r| *r > 0.0) {
                let mut m = playout::monitor::Monitor::new(playout::monitor::MonitorConfig {
                    si,
                    nit,
                    // Judged as the constant-bitrate stream the byte clock takes it for.
                    pcr_accuracy: true,
                });
                let ns_per_packet = 188.0 * 8.0 * 1e9 / rate;
                for_each_piece(&file, |piece, offset| {
                    let first = offset / (7 * 188);
                    for (k, chunk) in piece.chunks(7 * 188).enumerate() {
                        let at = (first + k as u64) as f64 * 7.0 * ns_per_packet;
                        m.push(at as u64, chunk);
                    }
                })?;
                println!("TR 101 290 (by the byte clock):");
                for (rule, n) in m.counts() {
                    println!("  {:<42} {n}", rule.name());
                }
            }
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

/// Calls `f` with each piece of the file at `path` and its offset, in order: whole pieces of
/// 7 × 188 × 3,000 bytes (whole packets and datagrams, so a piece starts on one), the last
/// shorter.
fn for_each_piece(path: &std::path::Path, mut f: impl FnMut(&[u8], u64)) -> anyhow::Result<()> {
    use std::io::Read;
    const PIECE: usize = 7 * 188 * 3_000;
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut buf = vec![0u8; PIECE];
    let mut offset = 0u64;
    loop {
        let mut len = 0;
        while len < PIECE {
            let n = file
                .read(&mut buf[len..])
                .with_context(|| format!("{}", path.display()))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        if len == 0 {
            return Ok(());
        }
        f(&buf[..len], offset);
        offset += len as u64;
        if len < PIECE {
            return Ok(());
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
                    ..
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
