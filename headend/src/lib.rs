//! `headend`: the head-end daemon and its offline tools, as a library so that the fuzz
//! targets (`fuzz/`, `headend/tests/fuzz_corpus.rs`) reach the parsers that take outside bytes.
//! The binary (`main.rs`) only calls [`main`]; the modules stay private, and
//! [`fuzzing`] is the one other door in.

mod alarm;
mod alert;
mod api;
mod archive;
mod auth;
mod cas;
mod clock;
mod config;
mod daemon;
mod eit_builder;
mod emmg;
mod engine;
mod feed;
mod fleet;
mod guide;
mod input;
mod jsonl;
mod keys;
mod logging;
mod metrics;
mod net;
mod notify;
mod output;
mod overview;
mod record;
mod render;
mod router;
mod schedule;
mod shutdown;
mod station;
mod status;
mod supervise;
mod trail;

#[doc(hidden)]
pub mod fuzzing;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// The head-end: plays out MPEG-TS channels.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written on stderr (`RUST_LOG` sets the level, default `info`).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file: report every error with its path, exit non-zero on any.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Render a channel's (or an MPTS's) output to a file as fast as possible.
    Render {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// The channel id to render.
        #[arg(long, conflicts_with = "mpts", required_unless_present = "mpts")]
        channel: Option<String>,
        /// The MPTS id to render instead of one channel.
        #[arg(long)]
        mpts: Option<String>,
        /// How much output to render: "10m", "90s", "1h30m".
        #[arg(long, default_value = "1m")]
        duration: String,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// The instant the render starts at, RFC 3339 (e.g. 2026-12-05T19:00:00+08:00): the
        /// schedule, EIT and TDT/TOT are those of that time. Default: now.
        #[arg(long)]
        start: Option<String>,
        /// Alerts to replay at offsets from the start (TOML: [[alert]] at, file, key; see
        /// docs/alerts.md). Needs the config's `[alerts]`.
        #[arg(long)]
        alerts: Option<PathBuf>,
    },
    /// Put every channel of a config on air until SIGINT or SIGTERM.
    Run {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the embedded demo (two channels from the fixtures, IPv6 multicast kept on `lo`,
    /// HTTP on `[::1]:8080`; run it from the repository root) and say what to open.
    Demo,
    /// For the etcd load bench (`scripts/bench-fleet`): `--nodes` fleet agents (named
    /// `[fleet] node` and `-0`, `-1`, ...) for the config's channels, without the engine, for
    /// `--secs` after they settle; prints their etcd calls as JSON.
    #[command(hide = true)]
    FleetAgents {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Also the CPU time of this process (etcd) over the window.
        #[arg(long)]
        watch_pid: Option<u32>,
    },
}

/// The `headend` command: parses the command line, runs what it says and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    logging::init(log_format);
    supervise::install_panic_hook();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            logging::fatal(log_format, &format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => Ok(check_config(&file)),
        Command::Render {
            config,
            channel,
            mpts,
            duration,
            output,
            start,
            alerts,
        } => {
            let cfg = load(&config)?;
            let duration = config::parse_duration(&duration)
                .map_err(anyhow::Error::msg)
                .context("--duration")?;
            let start_utc_ns = match &start {
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .with_context(|| {
                        format!("--start {s:?}: expected RFC 3339, e.g. 2026-12-05T19:00:00+08:00")
                    })?
                    .timestamp_nanos_opt()
                    .context("--start: out of range")?,
                None => chrono::Utc::now()
                    .timestamp_nanos_opt()
                    .context("the clock is out of range")?,
            };
            let specs = station::specs(&cfg);
            let id = match (&channel, &mpts) {
                (Some(id), _) | (None, Some(id)) => id,
                (None, None) => bail!("--channel or --mpts is required"),
            };
            let Some(target) = specs
                .iter()
                .position(|s| &s.id == id && s.mpts == mpts.is_some())
            else {
                let what = if mpts.is_some() { "mpts" } else { "channel" };
                bail!("{}: no {what} `{id}`", config.display());
            };
            let alerts = match &alerts {
                Some(path) => render::load_alerts(path)?,
                None => Vec::new(),
            };
            let mut audit = output.clone().into_os_string();
            audit.push(".alerts-audit.jsonl");
            let job = render::RenderJob {
                config: &cfg,
                specs,
                target,
                start_utc_ns,
                duration,
                alerts,
                audit_log: PathBuf::from(audit),
            };
            render::render_to(job, &output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let cfg = load(&config)?;
            for (at, file, why) in config::missing_media(&cfg) {
                tracing::warn!(config = %config.display(), at, file = %file.display(), why, "media file missing (filler until it appears)");
            }
            daemon::run(&cfg, |addr| {
                println!("on air; http://{addr}/channels");
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FleetAgents {
            config,
            nodes,
            secs,
            watch_pid,
        } => {
            let cfg = load(&config)?;
            let report =
                fleet::simulate(&cfg, nodes, std::time::Duration::from_secs(secs), watch_pid)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            let mut cfg = config::parse(DEMO_CONFIG, Path::new("."), "demo.toml")
                .map_err(|e| anyhow::anyhow!("embedded demo config: {e}"))?;
            if let Some((_, file, why)) = config::missing_media(&cfg).first() {
                bail!(
                    "{}: {why}; run the demo from the repository root",
                    file.display()
                );
            }
            // The demo's stoppage record stays out of the source tree.
            cfg.record.file = PathBuf::from("target/demo/record.jsonl");
            cfg.http.audit_log = PathBuf::from("target/demo/api-audit.jsonl");
            let multicast = demo_multicast_ready();
            if !multicast {
                for ch in &mut cfg.channels {
                    ch.outputs.clear();
                }
            }
            let channels: Vec<(String, String)> = cfg
                .channels
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.outputs
                            .first()
                            .map(|o| o.dest.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            daemon::run(&cfg, move |addr| {
                println!(
                    "headend demo on air ({} channels). Open one of:",
                    channels.len()
                );
                for (id, group) in &channels {
                    println!("  ffplay http://{addr}/channels/{id}.ts");
                    if !group.is_empty() {
                        println!("  ffplay 'udp://{group}'        (IPv6 multicast on lo)");
                    }
                }
                println!("  vlc http://{addr}/playlist.m3u");
                println!("  curl http://{addr}/channels");
                println!("Ctrl-C stops it.");
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether the demo's multicast groups (ff15::/16) stay on `lo`, setting that up when root
/// (as `scripts/test` does). Otherwise the demo runs HTTP only: multicast must never reach
/// the real network.
fn demo_multicast_ready() -> bool {
    let on_lo = || {
        std::process::Command::new("ip")
            .args(["-6", "route", "get", "ff15::1:1"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("dev lo"))
    };
    if on_lo() {
        return true;
    }
    for args in [
        &["link", "set", "lo", "multicast", "on"][..],
        &[
            "-6",
            "route",
            "add",
            "local",
            "ff15::/16",
            "dev",
            "lo",
            "table",
            "local",
        ][..],
    ] {
        let _ = std::process::Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status();
    }
    if on_lo() {
        return true;
    }
    tracing::warn!("ff15::/16 does not route to lo (needs root: `ip -6 route add local ff15::/16 dev lo table local`): demo multicast outputs off, HTTP only");
    false
}

/// The embedded demo: two channels looping fixture files, each on an IPv6 multicast group
/// kept on `lo` and on HTTP (run from the repository root).
const DEMO_CONFIG: &str = r#"
[http]
listen = "[::1]:8080"

[[channel]]
id = "one"
service_id = 1
name = "Demo One"
provider = "headend"
muxrate = "3M"
playlist = ["fixtures/media/a.ts", "fixtures/media/b.ts", "fixtures/media/c.ts"]

[[channel.output]]
url = "udp://[ff15::1:1]:5000"
interface = "lo"

[[channel]]
id = "two"
service_id = 2
name = "Demo Two"
provider = "headend"
muxrate = "3M"
playlist = ["fixtures/media/e.ts", "fixtures/media/c.ts", "fixtures/media/a.ts"]

[[channel.output]]
url = "udp://[ff15::1:2]:5000"
interface = "lo"
"#;

fn load(path: &Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
}

/// The file's permission bits when group or others may read it.
fn others_may_read(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            for (at, file, why) in config::missing_media(&cfg) {
                eprintln!(
                    "warning: {}: {at}: media file {why}: {}",
                    path.display(),
                    file.display()
                );
            }
            // Secrets in a file others may read.
            let secrets: Vec<&str> = [
                cfg.http.api_token.as_ref().map(|_| "http.api_token"),
                cfg.alerts.as_ref().map(|_| "alerts.token"),
                cfg.record
                    .webhooks
                    .iter()
                    .any(|w| w.bearer_token.is_some())
                    .then_some("record.webhook.bearer_token"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if let Some(mode) = others_may_read(path).filter(|_| !secrets.is_empty()) {
                eprintln!(
                    "warning: {}: mode {mode:04o}: group or others may read it, and it holds {}: chmod 600 {0} (or keep tokens in [[http.token]] files)",
                    path.display(),
                    secrets.join(", ")
                );
            }
            // The token files, as the daemon reads them at start.
            if let Err(e) = auth::load(&cfg.http.tokens) {
                eprintln!("{}: http.token: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!(
                "{}: ok ({} channel(s), {} mpts)",
                path.display(),
                cfg.channels.len(),
                cfg.mpts.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}
