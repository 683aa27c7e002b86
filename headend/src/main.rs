//! `headend`: the head-end daemon and its offline tools.

mod config;
mod input;
mod render;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// The head-end: plays out MPEG-TS channels.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Render the embedded demo config's first channel for 30 s to `demo.ts` and say how to
    /// play it (the real-time daemon comes next).
    Demo {
        /// Output file.
        #[arg(short = 'o', long, default_value = "demo.ts")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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
        } => {
            let cfg = load(&config)?;
            let duration = config::parse_duration(&duration)
                .map_err(anyhow::Error::msg)
                .context("--duration")?;
            let mut station = match (&channel, &mpts) {
                (Some(id), _) => match cfg.channels.iter().find(|c| &c.id == id) {
                    Some(ch) => render::Station::channel(ch),
                    None => bail!("{}: no channel `{id}`", config.display()),
                },
                (None, Some(id)) => match render::Station::mpts(&cfg, id) {
                    Some(s) => s,
                    None => bail!("{}: no mpts `{id}`", config.display()),
                },
                (None, None) => bail!("--channel or --mpts is required"),
            };
            render_to(&mut station, duration, &output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { output } => {
            let cfg = config::parse(DEMO_CONFIG, Path::new("."), "demo.toml")
                .map_err(|e| anyhow::anyhow!("embedded demo config: {e}"))?;
            let Some(ch) = cfg.channels.first() else {
                bail!("embedded demo config has no channel")
            };
            let mut station = render::Station::channel(ch);
            render_to(&mut station, std::time::Duration::from_secs(30), &output)?;
            println!(
                "rendered 30 s of channel `{}` to {}",
                ch.id,
                output.display()
            );
            println!(
                "play it:  ffplay {}   (or: vlc {})",
                output.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The embedded demo: two fixture files looped on one channel (run from the repository root).
const DEMO_CONFIG: &str = r#"
[[channel]]
id = "demo"
service_id = 1
name = "Demo"
provider = "headend"
muxrate = "3M"
playlist = ["fixtures/media/a.ts", "fixtures/media/b.ts", "fixtures/media/c.ts", "fixtures/media/e.ts"]
"#;

fn load(path: &Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            for (at, file) in config::missing_media(&cfg) {
                eprintln!(
                    "warning: {}: {at}: media file not found: {}",
                    path.display(),
                    file.display()
                );
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

fn render_to(
    station: &mut render::Station,
    duration: std::time::Duration,
    output: &Path,
) -> anyhow::Result<()> {
    let file = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    let stats = station
        .render(duration, &mut out)
        .with_context(|| format!("writing {}", output.display()))?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        output = %output.display(),
        packets = stats.packets,
        es_packets = stats.es_packets,
        null_packets = stats.null_packets,
        items_started = stats.items_started,
        items_failed = stats.items_failed,
        late_packets = stats.late_packets,
        seconds = format!("{secs:.3}"),
        "render done"
    );
    Ok(())
}
