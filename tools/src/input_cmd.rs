//! `hectl input`: a live channel's inputs on a running daemon (`POST /api/channels/ID/input`).

use std::process::ExitCode;

use clap::Subcommand;

use crate::client::Server;

#[derive(Subcommand)]
pub(crate) enum InputAction {
    /// Puts INPUT on air now (`playlist` for the channel's playlist); the inputs' verdicts may
    /// move it again.
    Switch { channel: String, input: String },
    /// Puts INPUT on air (default: what is on air now) and holds it there whatever the
    /// verdicts, until `unlock`.
    Lock {
        channel: String,
        input: Option<String>,
    },
    /// The inputs' verdicts decide again.
    Unlock { channel: String },
}

/// Sends the order; prints what the daemon accepted.
pub(crate) fn run(server: &Server, action: InputAction) -> anyhow::Result<ExitCode> {
    let (channel, body) = match &action {
        InputAction::Switch { channel, input } => (
            channel,
            serde_json::json!({ "action": "switch", "input": input }),
        ),
        InputAction::Lock { channel, input } => {
            let input = match input {
                Some(i) => i.clone(),
                None => on_air(server, channel)?,
            };
            (
                channel,
                serde_json::json!({ "action": "lock", "input": input }),
            )
        }
        InputAction::Unlock { channel } => (channel, serde_json::json!({ "action": "unlock" })),
    };
    let v = server
        .request(
            "POST",
            &format!("/api/channels/{channel}/input"),
            &[("Content-Type", "application/json".to_owned())],
            &body.to_string(),
            true,
        )?
        .ok()?;
    println!(
        "{}: {} {}",
        v["channel"].as_str().unwrap_or(channel),
        v["action"].as_str().unwrap_or("?"),
        v["input"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// The input a channel has on air, from `/channels`.
fn on_air(server: &Server, channel: &str) -> anyhow::Result<String> {
    let v = server.request("GET", "/channels", &[], "", false)?.ok()?;
    let relay = v
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|ch| ch["status"]["relays"].as_array().into_iter().flatten())
        .find(|r| r["channel"] == channel)
        .ok_or_else(|| anyhow::anyhow!("channel `{channel}` relays no live inputs"))?;
    Ok(relay["active"].as_str().unwrap_or("playlist").to_owned())
}
