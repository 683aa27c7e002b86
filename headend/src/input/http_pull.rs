//! An `http://` or `https://` live input: a continuous transport stream pulled over HTTP/1.1
//! (identity or chunked), reconnected with back-off (1 s doubling to 30 s) whenever it ends
//! or fails. A server that answers with an error status, with HTML or JSON, or with bytes
//! that are not a transport stream gets a status saying so (logged once per distinct
//! reason), never a stall of anything else. HTTPS is rustls (TLS 1.3 and 1.2, ring): the
//! server's certificate is checked against the system's roots or the input's `ca` file, and
//! a failed check is named (`invalid peer certificate: UnknownIssuer`).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use bytes::Buf;

use super::live::LiveFeed;

/// Longest response head read before giving up on a server.
const MAX_HEAD: usize = 16 * 1024;
/// How long the response head may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The TLS client of an https input: TLS 1.3 and 1.2, trusting the certificates of `ca` (a
/// PEM file) or else the system's.
pub(crate) fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(file) => {
            for c in crate::config::read_ca(file)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(format!(
                    "no system CA certificates ({}): give the input a `ca` file",
                    found
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string)
                ));
            }
        }
    }
    // ring rather than aws-lc-rs: a lean build (no CMake or assembler toolchain); rustls
    // marks it deprecated for its lack of post-quantum key exchange, which pulling a stream
    // from an encoder does not need yet.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A connection, plain or TLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Pulls until `stop` (over TLS with `tls`).
pub(super) fn pull(
    feed: &LiveFeed,
    name: &str,
    host: &str,
    port: u16,
    path: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    stop: &AtomicBool,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut backoff = BACKOFF_MIN;
    let mut last_reason = String::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut got = 0u64;
        let reason = match session(feed, host, port, path, tls.as_ref(), stop, &mut got) {
            Ok(()) if stop.load(Ordering::Relaxed) => return,
            Ok(()) => "the server ended the stream".to_owned(),
            Err(e) => e,
        };
        // A session that ran for a while was a success: start the back-off afresh.
        if got > 1_000_000 || started.elapsed() > Duration::from_secs(10) {
            backoff = BACKOFF_MIN;
        }
        if reason != last_reason {
            tracing::warn!(input = %name, url = %format!("{scheme}://{host}:{port}{path}"), reason = %reason, retry_in_s = backoff.as_secs(), "HTTP input lost; reconnecting");
            last_reason.clone_from(&reason);
        }
        feed.set_error(Some(reason));
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: the request, the head, then the body until it ends or fails.
fn session(
    feed: &LiveFeed,
    host: &str,
    port: u16,
    path: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    stop: &AtomicBool,
    got: &mut u64,
) -> Result<(), String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut s: Box<dyn Stream> = match tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let server = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("`{host}` is not a name TLS can check: {e}"))?;
            let mut conn = rustls::ClientConnection::new(cfg.clone(), server)
                .map_err(|e| format!("TLS: {e}"))?;
            let began = Instant::now();
            while conn.is_handshaking() {
                match conn.complete_io(&mut tcp) {
                    Ok(_) => {}
                    Err(e) if retry(&e) && began.elapsed() < HEAD_TIMEOUT => {}
                    Err(e) if retry(&e) => return Err("no TLS handshake within 5 s".to_owned()),
                    Err(e) => return Err(format!("TLS handshake with {host}: {e}")),
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: headend\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending the request: {e}"))?;

    // The head.
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let asked = Instant::now();
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > MAX_HEAD {
            return Err("the response head is too long".to_owned());
        }
        if asked.elapsed() > HEAD_TIMEOUT || stop.load(Ordering::Relaxed) {
            return Err("no response within 5 s".to_owned());
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("the server closed the connection without a response".to_owned()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if retry(&e) => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code.parse::<u16>().is_err() {
        return Err(format!("not an HTTP response: {:?}", truncate(status)));
    }
    if code != "200" {
        return Err(format!(
            "HTTP {}",
            status.split_once(' ').map_or("", |x| x.1)
        ));
    }
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if let Some(ct) = header("content-type") {
        let ct = ct.to_ascii_lowercase();
        if [
            "text/",
            "application/json",
            "application/xml",
            "application/vnd.apple.mpegurl",
        ]
        .iter()
        .any(|t| ct.starts_with(t))
        {
            return Err(format!("the server sends {ct}, not a transport stream"));
        }
    }
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut dechunk = chunked.then(Dechunk::default);
    let mut align = super::align::Align::default();
    feed.set_error(None);

    // The body.
    let mut body = head.split_off(end);
    loop {
        if !body.is_empty() {
            let data = match dechunk.as_mut() {
                Some(d) => {
                    let mut out = Vec::with_capacity(body.len());
                    let done = d.push(&body, &mut out)?;
                    if done {
                        align.push(feed, &out)?;
                        return Ok(());
                    }
                    out
                }
                None => std::mem::take(&mut body),
            };
            *got += data.len() as u64;
            align.push(feed, &data)?;
            body.clear();
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if retry(&e) => {}
            Err(e) => return Err(format!("reading the stream: {e}")),
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A chunked body (RFC 9112 §7.1) decoder.
#[derive(Default)]
pub(crate) struct Dechunk {
    line: Vec<u8>,
    /// Bytes of chunk data still to come.
    left: usize,
    /// After a chunk's data: its CRLF to skip.
    crlf: usize,
    done: bool,
}

impl Dechunk {
    /// Decodes `input` into `out`; true once the last chunk has come.
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        let mut b = input;
        while !b.is_empty() && !self.done {
            if self.left > 0 {
                let n = self.left.min(b.len());
                out.extend_from_slice(&b[..n]);
                self.left -= n;
                b.advance(n);
                if self.left == 0 {
                    self.crlf = 2;
                }
                continue;
            }
            if self.crlf > 0 {
                self.crlf -= 1;
                b.advance(1);
                continue;
            }
            let byte = b[0];
            b.advance(1);
            if byte != b'\n' {
                if self.line.len() > 1024 {
                    return Err("a chunk size line is too long".to_owned());
                }
                self.line.push(byte);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).trim().to_owned();
            self.line.clear();
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("a bad chunk size line {:?}", truncate(&line)))?;
            if size == 0 {
                self.done = true;
            }
            self.left = size;
        }
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_decoded_across_reads() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            let first = d.push(&body[..split], &mut out).unwrap();
            let second = d.push(&body[split..], &mut out).unwrap();
            assert!(first || second, "split at {split}");
            assert_eq!(out, b"hello, world", "split at {split}");
        }
        let mut d = Dechunk::default();
        assert!(d.push(b"zz\r\n", &mut Vec::new()).is_err());
    }
}
