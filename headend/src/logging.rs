//! Operator logs on stderr, in the format `--log-format` chooses: text for a person, or one
//! JSON object per line for a log collector. `RUST_LOG` sets the filter (default `info`).
//!
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset, so journald,
//! files and pipes never receive ANSI escapes.

use std::fmt::Display;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`: how log lines are written on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line per event: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`)
    /// and the enclosing spans.
    Json,
}

/// Libraries too chatty for an operator's log, unless `RUST_LOG` names them.
const QUIET: &str = "srt_protocol=error";

/// Installs the global subscriber; call once, before anything logs.
pub(crate) fn init(format: LogFormat) {
    // The SRT library logs every packet of a closing connection at `warn`: its own errors
    // only, unless `RUST_LOG` names it. Our inputs log what matters (connected, lost, refused).
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("srt_protocol")) {
        filter = filter.add_directive(QUIET.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

/// Reports the error that ends the process: `error: ...` on stderr as text, or an `error`
/// event in JSON so that every line a collector reads parses.
pub(crate) fn fatal(format: LogFormat, error: &impl Display) {
    match format {
        LogFormat::Text => eprintln!("error: {error}"),
        LogFormat::Json => tracing::error!(target: "headend", "{error}"),
    }
}

/// ANSI colours: only on a terminal, and never with `NO_COLOR` set (<https://no-color.org>).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
