//! `hectl alert ...`: emergency alerts from the command line. Signing keys are made and kept
//! here ([`epg::alert::sign::KeyFile`], mode 0600); alerts are checked locally with the
//! daemon's own parser before anything is sent, then signed over their exact bytes and posted
//! to `POST /api/alerts` (transport convention in [`epg::alert::sign`]).
//!
//! Alert calls need the `emergency` role's token (`[alerts] token` in the daemon's config),
//! not the API token: the first line of `--token-file`, else `$HECTL_ALERT_TOKEN`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use epg::alert::sign::{
    encode_signature, Algorithm, KeyFile, SigningKey, KEY_HEADER, SIGNATURE_HEADER,
};
use epg::alert::{Alert, MsgType};
use serde_json::Value;

use crate::client::{Reply, Server};

/// The environment variable holding the emergency role's token.
pub(crate) const TOKEN_ENV: &str = "HECTL_ALERT_TOKEN";

/// `hectl alert` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum AlertAction {
    /// Makes a signing key: writes the key file (TOML, mode 0600) and prints the
    /// `[[alerts.sender]]` table the daemon needs (public key only).
    Keygen {
        /// sm2 (SM2 over SM3) or ed25519.
        #[arg(long, value_enum)]
        algorithm: KeyAlgorithm,
        /// The key id, sent as `X-Signature-Key` (1..=64 visible ASCII characters).
        #[arg(long)]
        id: String,
        /// The key file to write.
        #[arg(long)]
        out: PathBuf,
        /// A CAP `sender` the key signs for, for the printed config (repeatable).
        #[arg(long)]
        sender: Vec<String>,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Checks an alert (CAP 1.2 XML or its JSON form) locally, signs its exact bytes and
    /// sends it. Exits 1 if the daemon refuses it (the status and its reason are printed).
    Send {
        /// The alert file; XML if its first non-space character is `<`, else JSON.
        file: PathBuf,
        /// The signing key file (from `hectl alert keygen`; must not be readable by others).
        #[arg(long)]
        key: PathBuf,
        /// Upload this TS clip first (`POST /api/alerts/media`). The alert must already name
        /// the clip's `media:ID` as a resource `uri` (the id is printed; it depends only on the
        /// clip's bytes), else it is not sent.
        #[arg(long)]
        media: Option<PathBuf>,
        /// Check and sign, print what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Ends an alert on air: sends a signed Cancel (JSON) whose `references` name it.
    Cancel {
        /// The identifier of the alert to end.
        id: String,
        /// The signing key file.
        #[arg(long)]
        key: PathBuf,
        /// The alert's sender (also the Cancel's sender: the key must sign for it).
        #[arg(long)]
        sender: String,
        /// The alert's `sent`, for `references` (`2026-11-23T19:00:00+08:00`). The daemon
        /// matches by sender and identifier only; without it the current time is written.
        #[arg(long)]
        sent: Option<String>,
        /// Check and sign, print the Cancel; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The alerts on air or queued, and the last ones that ended (no token needed).
    List {
        /// The daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A signature algorithm on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum KeyAlgorithm {
    /// SM2 over SM3 (GB/T 32918.2).
    Sm2,
    /// Ed25519 (RFC 8032).
    Ed25519,
}

impl From<KeyAlgorithm> for Algorithm {
    fn from(a: KeyAlgorithm) -> Algorithm {
        match a {
            KeyAlgorithm::Sm2 => Algorithm::Sm2,
            KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
        }
    }
}

/// Runs one `hectl alert` subcommand; the server is reached only by those that need it.
pub(crate) fn run(
    action: AlertAction,
    server: Option<String>,
    token_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let connect = || Server::with_token_env(server.clone(), token_file, TOKEN_ENV);
    match action {
        AlertAction::Keygen {
            algorithm,
            id,
            out,
            sender,
            force,
        } => keygen(algorithm.into(), &id, &out, &sender, force),
        AlertAction::Send {
            file,
            key,
            media,
            dry_run,
        } => {
            let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
            let alert = check_alert(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}; nothing sent", file.display()))?;
            let key = read_key(&key)?;
            println!("{}: {}", file.display(), summary(&alert));
            if dry_run {
                if let Some(clip) = &media {
                    println!("would upload {} first", clip.display());
                }
                return dry_run_report(&key, &bytes);
            }
            let server = connect()?;
            if let Some(clip) = &media {
                let Some(media_id) = upload(&server, clip)? else {
                    return Ok(ExitCode::FAILURE);
                };
                let named = alert
                    .info
                    .iter()
                    .flat_map(|i| &i.resources)
                    .any(|r| r.uri.as_deref() == Some(media_id.as_str()));
                if !named {
                    bail!(
                        "{}: no resource names `{media_id}`; add one (uri `{media_id}`, \
                         mimeType video/mp2t) to its info and send again; nothing sent",
                        file.display()
                    );
                }
            }
            answer(submit(&server, &key, &bytes)?)
        }
        AlertAction::Cancel {
            id,
            key,
            sender,
            sent,
            dry_run,
        } => {
            let key = read_key(&key)?;
            if let Some(s) = &sent {
                if epg::alert::parse_time(s).is_none() {
                    bail!("--sent {s}: expected a CAP time like 2026-11-23T19:00:00+08:00");
                }
            }
            let body = cancel_message(&id, &sender, sent.as_deref(), now_unix_ms())?;
            let alert = check_alert(body.as_bytes())
                .map_err(|e| anyhow::anyhow!("the cancel: {e:#}; nothing sent"))?;
            println!("{}", summary(&alert));
            if dry_run {
                print!("{body}");
                return dry_run_report(&key, body.as_bytes());
            }
            answer(submit(&connect()?, &key, body.as_bytes())?)
        }
        AlertAction::List { json } => {
            let v = connect()?
                .request("GET", "/api/alerts", &[], "", false)?
                .ok()?;
            if json {
                println!("{v:#}");
            } else {
                print!("{}", list_table(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a new key file (mode 0600, never over an existing file unless `force`) and prints
/// the daemon's `[[alerts.sender]]` table for it.
fn keygen(
    algorithm: Algorithm,
    id: &str,
    out: &Path,
    senders: &[String],
    force: bool,
) -> anyhow::Result<ExitCode> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("--id {id:?}: must be 1..=64 visible ASCII characters (no spaces)");
    }
    let key = SigningKey::generate(algorithm)?;
    let public = key.verifying_key().to_hex();
    let toml = KeyFile {
        id: id.to_owned(),
        key,
    }
    .to_toml();
    let mut opts = OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{}: exists; --force replaces it", out.display())
        } else {
            anyhow::Error::new(e).context(out.display().to_string())
        }
    })?;
    // An existing file (--force) keeps its mode on open: narrow it before the key goes in.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| out.display().to_string())?;
    f.write_all(toml.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| out.display().to_string())?;
    let quote = |s: &str| Value::from(s).to_string();
    let senders = if senders.is_empty() {
        "[\"SENDER\"]   # the CAP <sender> values this key may sign for".to_owned()
    } else {
        let list: Vec<String> = senders.iter().map(|s| quote(s)).collect();
        format!("[{}]", list.join(", "))
    };
    println!(
        "wrote {algorithm} key `{id}` to {} (mode 0600); keep it secret\n\n\
         # the daemon's config: trust this key\n\
         [[alerts.sender]]\nkey_id = {}\nalgorithm = \"{algorithm}\"\npublic_key = \"{public}\"\n\
         senders = {senders}",
        out.display(),
        quote(id),
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a key file, refusing one that other users could read or change.
fn read_key(path: &Path) -> anyhow::Result<KeyFile> {
    let meta = std::fs::metadata(path).with_context(|| format!("--key {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "--key {}: mode {mode:04o} lets other users read or change the signing key; \
                 it must be 0600 or narrower (chmod 600 {0}); nothing sent",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--key {}", path.display()))?;
    KeyFile::parse(&text).map_err(|e| anyhow::anyhow!("--key {}: {e}", path.display()))
}

/// Parses an alert as the daemon will: CAP XML if the first non-space character is `<`, else
/// JSON. The error names line and column (XML, malformed JSON) or the JSON path.
fn check_alert(bytes: &[u8]) -> anyhow::Result<Alert> {
    let text = std::str::from_utf8(bytes).context("not UTF-8")?;
    let parsed = if text.trim_start().starts_with('<') {
        epg::alert::parse_cap(text)
    } else {
        epg::alert::parse_json(text)
    };
    Ok(parsed?)
}

/// One line about an alert: type, identifier, sender, level, expiry, headline.
fn summary(alert: &Alert) -> String {
    let mut s = format!(
        "{} `{}` from `{}` ({}",
        alert.msg_type, alert.identifier, alert.sender, alert.status
    );
    if alert.msg_type == MsgType::Cancel || alert.msg_type == MsgType::Update {
        let refs: Vec<String> = alert.references.iter().map(|r| r.to_string()).collect();
        s.push_str(&format!(", references {}", refs.join(" ")));
    }
    if !alert.info.is_empty() {
        s.push_str(&format!(", level {}", alert.level()));
        match alert.expires() {
            Some(e) => s.push_str(&format!(", expires {}", epg::alert::format_time(&e))),
            None => s.push_str(", no expires"),
        }
    }
    s.push(')');
    if !alert.headline().is_empty() {
        s.push_str(&format!(": {}", alert.headline()));
    }
    s
}

/// What `--dry-run` shows: the key and the headers that would go with the body.
fn dry_run_report(key: &KeyFile, body: &[u8]) -> anyhow::Result<ExitCode> {
    let (sig, _) = signed_headers(key, body)?;
    println!(
        "signed with {} key `{}` ({} bytes)\n{KEY_HEADER}: {}\n{SIGNATURE_HEADER}: {sig}\n\
         not sent (--dry-run)",
        key.key.algorithm(),
        key.id,
        body.len(),
        key.id
    );
    Ok(ExitCode::SUCCESS)
}

/// The signature header value (checked against the public key) and the headers to send.
fn signed_headers(
    key: &KeyFile,
    body: &[u8],
) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
    let sig = key.key.sign(body);
    key.key
        .verifying_key()
        .verify(body, &sig)
        .context("the signature does not verify with the key's own public key")?;
    let sig = encode_signature(&sig);
    let content_type = if body.trim_ascii_start().starts_with(b"<") {
        "application/common-alerting-protocol+xml"
    } else {
        "application/json"
    };
    Ok((
        sig.clone(),
        vec![
            (KEY_HEADER, key.id.clone()),
            (SIGNATURE_HEADER, sig),
            ("Content-Type", content_type.to_owned()),
        ],
    ))
}

/// Posts a signed alert message, byte for byte.
fn submit(server: &Server, key: &KeyFile, body: &[u8]) -> anyhow::Result<Reply> {
    let (_, headers) = signed_headers(key, body)?;
    server.request_bytes("POST", "/api/alerts", &headers, body, true)
}

/// Uploads a clip; its `media:ID`, or `None` (reported) if the daemon refused it.
fn upload(server: &Server, clip: &Path) -> anyhow::Result<Option<String>> {
    let data = std::fs::read(clip).with_context(|| format!("--media {}", clip.display()))?;
    let reply = server.request_bytes(
        "POST",
        "/api/alerts/media",
        &[("Content-Type", "video/mp2t".to_owned())],
        &data,
        true,
    )?;
    let status = reply.status;
    let v = reply.json()?;
    if !(200..300).contains(&status) {
        refused(status, &v, &format!("the clip {}", clip.display()));
        return Ok(None);
    }
    let Some(id) = v["media"].as_str() else {
        bail!("the server stored the clip but named no media id: {v}");
    };
    println!(
        "{}: uploaded as {id} ({} bytes, {:.1} s)",
        clip.display(),
        v["bytes"].as_u64().unwrap_or(0),
        v["duration_s"].as_f64().unwrap_or(0.0)
    );
    Ok(Some(id.to_owned()))
}

/// Prints the daemon's answer to an alert; failure if it was refused.
fn answer(reply: Reply) -> anyhow::Result<ExitCode> {
    let status = reply.status;
    let v = reply.json()?;
    if !(200..300).contains(&status) {
        refused(status, &v, "the alert");
        return Ok(ExitCode::FAILURE);
    }
    let list = |key: &str| -> String {
        let items: Vec<String> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect();
        items.join(", ")
    };
    if v["cancelled"].is_array() {
        println!(
            "accepted ({status}): `{}` cancelled alert seq {}",
            v["identifier"].as_str().unwrap_or("?"),
            list("cancelled")
        );
    } else {
        println!(
            "accepted ({status}): seq {}, level {}, channels {}, expires {}",
            v["seq"],
            v["level"],
            list("channels"),
            v["expires"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn refused(status: u16, v: &Value, what: &str) {
    eprintln!(
        "hectl: {what} was refused ({status} {}): {}",
        v["error"].as_str().unwrap_or("error"),
        v["message"].as_str().unwrap_or("no reason given")
    );
}

/// A Cancel for `sender`'s alert `id` as JSON (CAP's element names), sent at `now_ms` (Unix
/// milliseconds, UTC). Its identifier is `ID-cancel-<now_ms>`: milliseconds, so that a second
/// try right after a refused one is not a replay.
fn cancel_message(
    id: &str,
    sender: &str,
    original_sent: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<String> {
    let Some(now) = chrono::DateTime::from_timestamp(now_ms.div_euclid(1000), 0) else {
        bail!("the clock reads {now_ms} ms, out of range");
    };
    // CAP 1.2 wants a numeric offset, never `Z`.
    let sent = now.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let message = serde_json::json!({
        "identifier": format!("{id}-cancel-{now_ms}"),
        "sender": sender,
        "sent": sent,
        "status": "Actual",
        "msgType": "Cancel",
        "scope": "Public",
        "references": [format!("{sender},{id},{}", original_sent.unwrap_or(&sent))],
    });
    let mut text = serde_json::to_string_pretty(&message)?;
    text.push('\n');
    Ok(text)
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /api/alerts` as two tables: active (on air or queued) and recent (ended).
fn list_table(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("").to_owned();
    let time = |x: &Value| {
        let raw = s(x);
        chrono::DateTime::parse_from_rfc3339(&raw)
            .map_or(raw, |t| t.format("%Y-%m-%d %H:%M:%S%:z").to_string())
    };
    let names = |x: &Value| -> Vec<String> {
        x.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    };
    let active = v["active"].as_array().map_or(&[][..], Vec::as_slice);
    let recent = v["recent"].as_array().map_or(&[][..], Vec::as_slice);
    let mut out = format!("active: {}\n", active.len());
    if !active.is_empty() {
        out.push_str(&format!(
            "{:>4}  {:>5}  {:<25}  {:<24}  {:<24}  {}\n",
            "seq", "level", "expires", "on air", "identifier", "headline"
        ));
    }
    for a in active {
        let on_air = names(&a["on_air"]);
        let channels = names(&a["channels"]);
        let shown = if on_air.is_empty() {
            format!("queued ({} channels)", channels.len())
        } else if on_air.len() < channels.len() {
            format!(
                "{} (+{} queued)",
                on_air.join(","),
                channels.len() - on_air.len()
            )
        } else {
            on_air.join(",")
        };
        let drill = if matches!(a["status"].as_str(), Some("Exercise" | "Test")) {
            " [drill]"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>4}  {:>5}  {:<25}  {:<24}  {:<24}  {}{drill}\n",
            a["seq"],
            a["level"],
            time(&a["expires"]),
            shown,
            s(&a["identifier"]),
            s(&a["headline"])
        ));
    }
    out.push_str(&format!("recent: {}\n", recent.len()));
    if !recent.is_empty() {
        out.push_str(&format!(
            "{:>4}  {:>5}  {:<25}  {:<10}  {:<24}  {}\n",
            "seq", "level", "ended", "why", "identifier", "headline"
        ));
    }
    for r in recent {
        out.push_str(&format!(
            "{:>4}  {:>5}  {:<25}  {:<10}  {:<24}  {}\n",
            r["seq"],
            r["level"],
            time(&r["ended"]),
            s(&r["why"]),
            s(&r["identifier"]),
            s(&r["headline"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_parse_as_cancels_without_info() {
        let text = cancel_message("SH-1", "prov@example.cn", None, 1_790_000_000_250).unwrap();
        let alert = check_alert(text.as_bytes()).unwrap();
        assert_eq!(alert.msg_type, MsgType::Cancel);
        assert_eq!(alert.identifier, "SH-1-cancel-1790000000250");
        assert!(alert.info.is_empty());
        let r = &alert.references[0];
        assert_eq!(
            (r.sender.as_str(), r.identifier.as_str(), r.sent.as_str()),
            ("prov@example.cn", "SH-1", "2026-09-21T14:13:20+00:00")
        );
        let text = cancel_message("SH-1", "p", Some("2026-11-23T19:00:00+08:00"), 0).unwrap();
        let alert = check_alert(text.as_bytes()).unwrap();
        assert_eq!(alert.references[0].sent, "2026-11-23T19:00:00+08:00");
        // An identifier that cannot go into `references` is refused before anything is sent.
        let text = cancel_message("a,b", "p", None, 0).unwrap();
        assert!(check_alert(text.as_bytes()).is_err());
    }

    #[test]
    fn malformed_alerts_are_located() {
        let e = check_alert(b"<alert>\n  <identifier>x</alert>").unwrap_err();
        assert!(e.to_string().contains("line 2 column"), "{e}");
        let e = check_alert(b"{\n \"identifier\": }").unwrap_err();
        assert!(e.to_string().contains("line 2 column"), "{e}");
    }

    #[test]
    fn lists_show_on_air_and_queued() {
        let v = serde_json::json!({
            "active": [{"seq": 1, "level": 2, "identifier": "A", "headline": "台风",
                        "status": "Actual", "expires": "2026-11-23T19:00:00+00:00",
                        "channels": ["ch0", "ch1"], "on_air": ["ch0"]}],
            "recent": [{"seq": 0, "level": 4, "identifier": "B", "headline": "h",
                        "ended": "2026-11-23T18:00:00.5+00:00", "why": "cancelled"}],
        });
        let t = list_table(&v);
        assert!(t.contains("ch0 (+1 queued)"), "{t}");
        assert!(t.contains("2026-11-23 19:00:00+00:00"), "{t}");
        assert!(t.contains("cancelled"), "{t}");
    }
}
