//! `hectl fleet`: the fleet of head-ends sharing channels through etcd (`[fleet]`), asked of
//! any of its nodes: where each channel is sent from, the nodes and their load (`status`,
//! `GET /api/fleet`), and draining a node (`drain`, `undrain`: `POST /api/fleet/drain`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::client::Server;
use crate::report_cmd::encode;

#[derive(Subcommand)]
pub(crate) enum FleetAction {
    /// The nodes (capacity, channels sent, drained), and each channel's sender, placement
    /// and warm standbys, as the node asked last read them from etcd.
    Status {
        /// The API's JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// A node's API, `http://HOST:PORT` (default `$HECTL_SERVER` or `http://[::1]:8080`).
        #[arg(long)]
        server: Option<String>,
    },
    /// Moves every channel off NODE (its channels start on the others) and places nothing on
    /// it until `undrain`. Needs an operator's or admin's token.
    Drain {
        node: String,
        /// File whose first line is the API token (default `$HECTL_TOKEN`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        server: Option<String>,
    },
    /// Ends NODE's drain: channels are placed on it again.
    Undrain {
        node: String,
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        server: Option<String>,
    },
}

pub(crate) fn run(action: FleetAction) -> anyhow::Result<ExitCode> {
    match action {
        FleetAction::Status { json, server } => {
            let server = Server::new(server, None)?;
            let v = server.request("GET", "/api/fleet", &[], "", false)?.ok()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
            println!(
                "asked {} at {}: etcd {}, its lease {}",
                s(&v["node"]),
                s(&v["at"]),
                if v["connected"] == true {
                    "answers"
                } else {
                    "does not answer"
                },
                if v["lease_valid"] == true {
                    "valid"
                } else {
                    "not valid (sending nothing)"
                },
            );
            if let Some(e) = v["error"].as_str() {
                println!("last error: {e}");
            }
            println!(
                "{:<16} {:>8} {:>6}  {:<8} api",
                "node", "capacity", "sends", ""
            );
            let mut lacking = Vec::new();
            let mut unwatched = Vec::new();
            for n in v["nodes"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:>8} {:>6}  {:<8} {}",
                    s(&n["name"]),
                    n["capacity"],
                    n["owns"],
                    if n["drained"] == true { "drained" } else { "" },
                    s(&n["api"])
                );
                for f in n["missing_media"].as_array().into_iter().flatten() {
                    lacking.push(format!("{} lacks {}", s(&n["name"]), s(f)));
                }
                if n["watch"].as_str().is_some_and(str::is_empty) {
                    unwatched.push(s(&n["name"]));
                }
            }
            for l in &lacking {
                println!("warning: {l} (it cannot play it should it take the channel over)");
            }
            for n in &unwatched {
                println!("warning: {n} has no beacon ([fleet] watch): should its process die, its channels wait for its lease to end");
            }
            println!(
                "{:<16} {:<16} {:<16} {:<24} dormant",
                "channel", "sent by", "placed on", "warm standbys"
            );
            let mut any_out = false;
            for c in v["channels"].as_array().into_iter().flatten() {
                let out: Vec<&str> = c["not_in_step"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect();
                let mut names = |key: &str| -> String {
                    let list: Vec<String> = c[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|n| {
                            let name = s(n);
                            if out.contains(&name.as_str()) {
                                any_out = true;
                                format!("{name}*")
                            } else {
                                name
                            }
                        })
                        .collect();
                    list.join(" ")
                };
                let (standbys, dormant) = (names("standbys"), names("dormant"));
                println!(
                    "{:<16} {:<16} {:<16} {:<24} {}",
                    s(&c["id"]),
                    s(&c["owner"]),
                    s(&c["placed"]),
                    standbys,
                    dormant
                );
            }
            if any_out {
                println!("* not in step: a takeover by it starts a new stream (the others continue the sender's; docs/fleet.md)");
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetAction::Drain {
            node,
            token_file,
            server,
        } => drain(&node, true, token_file, server),
        FleetAction::Undrain {
            node,
            token_file,
            server,
        } => drain(&node, false, token_file, server),
    }
}

fn drain(
    node: &str,
    on: bool,
    token_file: Option<PathBuf>,
    server: Option<String>,
) -> anyhow::Result<ExitCode> {
    let server = Server::new(server, token_file.as_deref())?;
    let path = format!(
        "/api/fleet/drain?node={}&on={}",
        encode(node),
        if on { "true" } else { "false" }
    );
    server.request("POST", &path, &[], "", true)?.ok()?;
    eprintln!(
        "{node}: {}",
        if on {
            "drained: its channels move to the other nodes"
        } else {
            "no longer drained"
        }
    );
    Ok(ExitCode::SUCCESS)
}
