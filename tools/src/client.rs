//! The daemon's control API from the command line, over HTTP or HTTPS (ureq, rustls).
//!
//! The server is `--server` or `$HECTL_SERVER` (default `http://[::1]:8080`): `https://` is
//! verified against the system's roots, or the CA of `--ca FILE` (PEM) alone; plain `http://`
//! is refused for a host that is not a loopback address (the token would cross the network
//! in clear) unless `--insecure`. The bearer token for changes is `$HECTL_TOKEN`
//! (`$HECTL_ALERT_TOKEN` for alerts: the emergency role's), or the first line of
//! `--token-file`. The token is never printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};

/// `--ca` and `--insecure`, set once by `main`.
static TRANSPORT: OnceLock<(Option<PathBuf>, bool)> = OnceLock::new();

/// Sets `--ca FILE` and `--insecure` for every request.
pub(crate) fn set_transport(ca: Option<PathBuf>, insecure: bool) {
    let _ = TRANSPORT.set((ca, insecure));
}

/// Where the daemon is, and the token for changes.
pub(crate) struct Server {
    /// `http://HOST:PORT` or `https://HOST:PORT`, without a final `/`.
    base: String,
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
        let (tls, host) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(h), _) => (true, h),
            (None, Some(h)) => (false, h),
            _ => bail!("--server {url}: expected https://HOST:PORT or http://HOST:PORT"),
        };
        let host = host.trim_end_matches('/');
        let insecure = TRANSPORT.get().is_some_and(|t| t.1);
        if !tls && !insecure && !loopback(host) {
            bail!(
                "--server {url}: plain http:// to a host that is not this machine would send the token in clear; use https:// (the daemon's [management] listener), or --insecure"
            );
        }
        let base = format!("{}://{host}", if tls { "https" } else { "http" });
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
            base,
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

    /// GETs `path` into `out` as it comes (a large body, never held whole); the bytes
    /// written. An answer other than 200 is an error with the daemon's message.
    pub(crate) fn download(&self, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        let url = format!("{}{path}", self.base);
        let mut req = agent()?.get(&url);
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let reply = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                bail!("GET {url}: {code}: {}", body.trim());
            }
            Err(e) => bail!("GET {url}: {e}"),
        };
        std::io::copy(&mut reply.into_reader(), out)
            .with_context(|| format!("GET {url}: reading the answer"))
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
        let agent = agent()?;
        let url = format!("{}{path}", self.base);
        let mut req = agent.request(method, &url);
        match (&self.token, auth) {
            (None, true) => bail!(
                "changes need a token: set {} or --token-file",
                self.token_env
            ),
            (Some(token), _) => {
                // Reads send it too: once the daemon has named tokens, reading needs one.
                req = req.set("Authorization", &format!("Bearer {token}"));
                // Who acts, for the daemon's stoppage record.
                if let Some(who) = operator().filter(|_| auth) {
                    req = req.set("X-Operator", &who);
                }
            }
            (None, false) => {}
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let reply = match req.send_bytes(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => bail!("{method} {url}: {e}"),
        };
        let status = reply.status();
        let body = reply
            .into_string()
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        Ok(Reply { status, body })
    }
}

/// Whether `host` (`HOST:PORT`, `[V6]:PORT`) names this machine.
fn loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The HTTP client: HTTPS verified against `--ca` alone, or the system's roots.
fn agent() -> anyhow::Result<ureq::Agent> {
    let mut roots = rustls::RootCertStore::empty();
    match TRANSPORT.get().and_then(|t| t.0.as_deref()) {
        Some(ca) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("--ca {}", ca.display()))?;
            for c in certs {
                roots
                    .add(c.with_context(|| format!("--ca {}", ca.display()))?)
                    .with_context(|| format!("--ca {}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    // ring, as the daemon: a lean build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tls_config(Arc::new(tls))
        .build())
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

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:80",
            "127.3.4.5",
            "[::1]",
        ] {
            assert!(loopback(h), "{h}");
        }
        for h in [
            "192.0.2.1:8080",
            "[2001:db8::1]:443",
            "example.org:80",
            "10.0.0.1",
        ] {
            assert!(!loopback(h), "{h}");
        }
    }
}
