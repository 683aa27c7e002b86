//! Logs as an operator's collector receives them: stderr piped (as under systemd/journald)
//! carries no ANSI escapes, and with `--log-format json` every stderr line is one JSON
//! object, the fatal error included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> PathBuf {
    root().join("fixtures/configs/example.toml")
}

/// `headend ARGS` with stdout and stderr piped, at the default level, colours not disabled
/// by the environment (so only the pipe can turn them off).
fn headend(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headend"))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

/// `headend [--log-format FORMAT] render` of the example's `news` channel for 1 s.
fn render(dir: &Path, format: Option<&str>) -> Output {
    let out = dir.join("news.ts");
    let config = example();
    let mut args = Vec::new();
    if let Some(format) = format {
        args.extend(["--log-format", format]);
    }
    args.extend([
        "render",
        "--config",
        config.to_str().unwrap(),
        "--channel",
        "news",
        "--duration",
        "1s",
        "-o",
        out.to_str().unwrap(),
    ]);
    let o = headend(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn no_ansi(what: &str, stderr: &[u8]) {
    let text = String::from_utf8_lossy(stderr);
    assert!(
        !text.contains("\x1b["),
        "{what}: ANSI escapes on a pipe:\n{text:?}"
    );
}

#[test]
fn text_logs_on_a_pipe_have_no_ansi_escapes() {
    let o = headend(&["check-config", example().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    no_ansi("check-config", &o.stderr);

    let dir = tempfile::tempdir().unwrap();
    for format in [None, Some("text")] {
        let o = render(dir.path(), format);
        let text = String::from_utf8_lossy(&o.stderr);
        // Render logs at info (items on air, the summary): there, only uncoloured.
        assert!(text.contains(" INFO "), "{text}");
        no_ansi("render", &o.stderr);
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = render(dir.path(), Some("json"));
    let text = String::from_utf8_lossy(&o.stderr);
    let events = json_lines(&text);
    assert!(
        events.iter().any(|e| e["level"] == "INFO"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("headend"))
            && e["fields"]["message"].is_string()),
        "{text}"
    );
    no_ansi("render --log-format json", &o.stderr);

    // The option is global: after the subcommand too. A fatal error is an event like the
    // others, so a collector never meets a line it cannot parse.
    let o = headend(&[
        "render",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
        "--channel",
        "news",
        "-o",
        dir.path().join("x.ts").to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stderr);
    let events = json_lines(&text);
    assert!(
        events.iter().any(|e| e["level"] == "ERROR"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("missing.toml"))),
        "{text}"
    );

    let o = headend(&["--log-format", "yaml", "check-config", "x.toml"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown format is a usage error"
    );
}

/// Every line of `text` as a JSON object; panics naming the first line that is not one.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    assert!(!text.trim().is_empty(), "no log lines");
    text.lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if v.is_object() => v,
                _ => panic!("not a JSON object: {line:?}\nin:\n{text}"),
            },
        )
        .collect()
}
