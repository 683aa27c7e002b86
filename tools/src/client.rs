//! `hectl schedule ...`: the daemon's control API from the command line (plain HTTP/1.1 over
//! TCP; one request per connection).
//!
//! The server is `--server` or `$HECTL_SERVER` (default `http://[::1]:8080`); the bearer
//! token for changes is `$HECTL_TOKEN` (`$HECTL_ALERT_TOKEN` for alerts: the emergency role's),
//! or the first line of `--token-file`. The token is never printed.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the daemon is, and the token for changes.
pub(crate) struct Server {
    host: String,
    token: Option<String>,
    /// The environment variable the token came from when there is no `--token-file`.
    token_env: &'static str,
}

/// An answer: status and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "the server answered {} with: {}",
                self.status,
                self.body.trim()
            )
        })
    }

    /// Fails with the server's message unless the status is 2xx.
    pub(crate) fn ok(self) -> anyhow::Result<serde_json::Value> {
        let v = self.json()?;
        if (200..300).contains(&self.status) {
            return Ok(v);
        }
        let mut msg = v["message"].as_str().unwrap_or("error").to_owned();
        if let Some(errors) = v["errors"].as_array() {
            for e in errors {
                msg.push_str(&format!("\n  {}", e.as_str().unwrap_or_default()));
            }
        }
        if let Some(rev) = v["current_revision"].as_u64() {
            msg.push_str(&format!(
                " (current revision {rev}: fetch it, redo the edit, retry)"
            ));
        }
        bail!(
            "{} ({}): {msg}",
            v["error"].as_str().unwrap_or("error"),
            self.status
        )
    }
}

impl Server {
    /// From `--server` / `$HECTL_SERVER` and `--token-file` / `$HECTL_TOKEN`.
    pub(crate) fn new(server: Option<String>, token_file: Option<&Path>) -> anyhow::Result<Server> {
        Server::with_token_env(server, token_file, "HECTL_TOKEN")
    }

    /// As [`Server::new`], with the token from `token_env` when there is no `--token-file`
    /// (another role's token: `HECTL_ALERT_TOKEN`).
    pub(crate) fn with_token_env(
        server: Option<String>,
        token_file: Option<&Path>,
        token_env: &'static str,
    ) -> anyhow::Result<Server> {
        let url = server
            .or_else(|| std::env::var("HECTL_SERVER").ok())
            .unwrap_or_else(|| "http://[::1]:8080".to_owned());
        let Some(host) = url.strip_prefix("http://") else {
            bail!("--server {url}: expected http://HOST:PORT");
        };
        let host = host.trim_end_matches('/').to_owned();
        let token = match token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("--token-file {}", p.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var(token_env).ok(),
        };
        Ok(Server {
            host,
            token,
            token_env,
        })
    }

    /// Writes `day` as `channel`'s schedule for its date, on the revision it was read at
    /// (`day.revision`); returns the new revision. Someone else's write since is a conflict.
    pub(crate) fn put_day(&self, channel: &str, day: &epg::schedule::Day) -> anyhow::Result<u64> {
        let expected = day.revision;
        let v = self
            .request(
                "PUT",
                &format!("/api/schedules/{channel}/{}", day.date),
                &[("If-Match", format!("\"{expected}\""))],
                &day.to_toml(),
                true,
            )?
            .ok()?;
        for w in v["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
        Ok(v["revision"].as_u64().unwrap_or(0))
    }

    /// One request; `auth` adds the bearer token (an error if there is none).
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
        auth: bool,
    ) -> anyhow::Result<Reply> {
        self.request_bytes(method, path, headers, body.as_bytes(), auth)
    }

    /// [`Server::request`] with a body of any bytes, sent exactly as given.
    pub(crate) fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        auth: bool,
    ) -> anyhow::Result<Reply> {
        let addr = self
            .host
            .to_socket_addrs()
            .with_context(|| format!("server address {}", self.host))?
            .next()
            .with_context(|| format!("server address {} resolves to nothing", self.host))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to http://{}", self.host))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if auth {
            let Some(token) = &self.token else {
                bail!(
                    "changes need a token: set {} or --token-file",
                    self.token_env
                );
            };
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
            // Who acts, for the daemon's stoppage record.
            if let Some(who) = operator() {
                req.push_str(&format!("X-Operator: {who}\r\n"));
            }
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        parse_reply(&raw)
    }
}

/// The operator: `$HECTL_OPERATOR`, else the login name at this host.
fn operator() -> Option<String> {
    let who = std::env::var("HECTL_OPERATOR")
        .ok()
        .filter(|w| !w.trim().is_empty());
    let who = who.or_else(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Some(format!("{user}@{}", host.trim()))
    })?;
    Some(who.chars().filter(|c| !c.is_control()).take(64).collect())
}

/// Status and body of an HTTP/1.x response (Content-Length, chunked or close-delimited).
fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("malformed chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .context("malformed chunk size")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).context("truncated chunk")?);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_reply;

    #[test]
    fn replies() {
        let r = parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        let r = parse_reply(b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (409, "abcde"));
        assert!(parse_reply(b"garbage").is_err());
    }
}
