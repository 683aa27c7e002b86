//! A small etcd v3 client over etcd's own JSON gateway (`POST /v3/...` on the client port,
//! served by every etcd since 3.4; keys and values base64, 64-bit numbers as strings): the
//! calls the fleet needs — leases (grant, keep-alive, revoke), reads of a prefix, and writes
//! as transactions that compare first (create if absent, delete if still held by a lease).
//! Blocking, with a time limit on every call: the fleet agent runs on its own thread and must
//! know within its deadline whether etcd answered. The connection is kept between calls
//! (HTTP/1.1 keep-alive) while etcd answers with a length: a node's look every 100 ms then
//! costs etcd one request, not a connection each. Streamed answers (`lease/keepalive`, sent
//! chunked) and anything unexpected close it; a kept connection that etcd closed while idle is
//! replaced once, at once, when the call finds it so (nothing of the answer read).
//!
//! Several endpoints (a cluster's members) may be given: a call goes to the one that answered
//! last, then to the others in turn, so losing a member costs one failed connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// A key and its value as etcd holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kv {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    /// The lease it is attached to (0: none).
    pub(crate) lease: i64,
    pub(crate) mod_revision: i64,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    /// No endpoint answered in time (or at all).
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// An endpoint answered with an error.
    #[error("etcd: {0}")]
    Refused(String),
}

/// The endpoints, and which answered last.
#[derive(Debug)]
pub(crate) struct Etcd {
    endpoints: Vec<(String, SocketAddr)>,
    current: usize,
    timeout: Duration,
    /// The connection kept open after the last answer, and its endpoint.
    kept: Option<(usize, TcpStream)>,
    /// Calls made, by path (`lease/keepalive`, `kv/range`, ...), answered or not.
    pub(crate) calls: std::collections::BTreeMap<&'static str, u64>,
    /// Connections opened.
    pub(crate) connections: u64,
}

impl Etcd {
    /// A client of `urls` (`http://host:port`), each call limited to `timeout`.
    pub(crate) fn new(urls: &[String], timeout: Duration) -> Result<Etcd, String> {
        let mut endpoints = Vec::new();
        for url in urls {
            let authority = url
                .strip_prefix("http://")
                .map(|r| r.trim_end_matches('/'))
                .filter(|a| !a.is_empty() && !a.contains('/'))
                .ok_or_else(|| format!("`{url}`: expected http://HOST:PORT"))?;
            let addr = authority
                .to_socket_addrs()
                .map_err(|e| format!("`{url}`: {e}"))?
                .next()
                .ok_or_else(|| format!("`{url}`: no address"))?;
            endpoints.push((authority.to_owned(), addr));
        }
        if endpoints.is_empty() {
            return Err("no etcd endpoint".to_owned());
        }
        Ok(Etcd {
            endpoints,
            current: 0,
            timeout,
            kept: None,
            calls: std::collections::BTreeMap::new(),
            connections: 0,
        })
    }

    /// `POST /v3/{path}` with `body`, to the endpoint that answered last, then the others,
    /// all within the time limit.
    fn call(&mut self, path: &'static str, body: &Value) -> Result<Value, EtcdError> {
        *self.calls.entry(path).or_default() += 1;
        let deadline = Instant::now() + self.timeout;
        let body = body.to_string();
        let mut why = Vec::new();
        for k in 0..self.endpoints.len() {
            let i = (self.current + k) % self.endpoints.len();
            let (host, addr) = (self.endpoints[i].0.clone(), self.endpoints[i].1);
            let kept = self.kept.take().filter(|(e, _)| *e == i).map(|(_, s)| s);
            let answer = match kept {
                Some(s) => match post(s, true, &host, path, &body, deadline) {
                    // Closed by etcd while idle: a new connection, once.
                    Err(Failure::Stale) => self.post_fresh(addr, &host, path, &body, deadline),
                    other => other,
                },
                None => self.post_fresh(addr, &host, path, &body, deadline),
            };
            let answer = answer.map(|(status, v, keep)| {
                self.kept = keep.map(|s| (i, s));
                (status, v)
            });
            match answer.map_err(|e| e.to_string()) {
                Ok((200, v)) => {
                    self.current = i;
                    return Ok(v);
                }
                Ok((status, v)) => {
                    let msg = v
                        .get("message")
                        .or_else(|| v.get("error"))
                        .and_then(Value::as_str)
                        .map_or_else(|| v.to_string(), str::to_owned);
                    return Err(EtcdError::Refused(format!("{path}: {status}: {msg}")));
                }
                Err(e) => why.push(format!("{host}: {e}")),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(EtcdError::Unreachable(why.join("; ")))
    }

    /// [`post`] on a new connection to `addr`.
    fn post_fresh(
        &mut self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        body: &str,
        deadline: Instant,
    ) -> Result<(u16, Value, Option<TcpStream>), Failure> {
        let left = left_until(deadline).map_err(Failure::Other)?;
        self.connections += 1;
        let s =
            TcpStream::connect_timeout(&addr, left).map_err(|e| Failure::Other(e.to_string()))?;
        s.set_nodelay(true)
            .map_err(|e| Failure::Other(e.to_string()))?;
        post(s, false, host, path, body, deadline)
    }

    /// A lease of `ttl_s` seconds: its id and the TTL granted.
    pub(crate) fn grant(&mut self, ttl_s: i64) -> Result<(i64, i64), EtcdError> {
        let v = self.call("lease/grant", &json!({ "TTL": ttl_s.to_string() }))?;
        let id = int(&v["ID"]);
        if id == 0 {
            return Err(EtcdError::Refused(format!("lease/grant: {v}")));
        }
        Ok((id, int(&v["TTL"])))
    }

    /// Renews lease `id`: the TTL it has again, 0 when it has expired (or is unknown).
    pub(crate) fn keep_alive(&mut self, id: i64) -> Result<i64, EtcdError> {
        let v = self.call("lease/keepalive", &json!({ "ID": id.to_string() }))?;
        // A stream's message comes wrapped in `result`.
        Ok(int(&v.get("result").unwrap_or(&v)["TTL"]).max(0))
    }

    /// Ends lease `id` (its keys go at once).
    pub(crate) fn revoke(&mut self, id: i64) -> Result<(), EtcdError> {
        self.call("lease/revoke", &json!({ "ID": id.to_string() }))
            .map(drop)
    }

    /// Every key under `prefix`, and the store's revision.
    pub(crate) fn range_prefix(&mut self, prefix: &str) -> Result<(Vec<Kv>, i64), EtcdError> {
        self.range_since(prefix, 0)
    }

    /// The keys under `prefix` changed at or after revision `min_mod_revision` (every key
    /// with 0), and the store's revision.
    pub(crate) fn range_since(
        &mut self,
        prefix: &str,
        min_mod_revision: i64,
    ) -> Result<(Vec<Kv>, i64), EtcdError> {
        let mut req =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        if min_mod_revision > 0 {
            req["min_mod_revision"] = min_mod_revision.to_string().into();
        }
        let v = self.call("kv/range", &req)?;
        let revision = int(&v["header"]["revision"]);
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(kv).collect())
            .unwrap_or_default();
        Ok((kvs, revision))
    }

    /// What changes whenever a key under `prefix` is put or deleted (and with any other
    /// write to the store), read with one small call that only counts: (how many keys, the
    /// store's revision).
    pub(crate) fn fingerprint(&mut self, prefix: &str) -> Result<(i64, i64), EtcdError> {
        let v = self.call(
            "kv/range",
            &json!({
                "key": B64.encode(prefix),
                "range_end": B64.encode(prefix_end(prefix)),
                "count_only": true,
            }),
        )?;
        Ok((int(&v["count"]), int(&v["header"]["revision"])))
    }

    /// Puts `key` (attached to `lease` unless 0).
    pub(crate) fn put(&mut self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.call("kv/put", &put_request(key, value, lease))
            .map(drop)
    }

    /// Key `key`, if it exists.
    pub(crate) fn get(&mut self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self.call("kv/range", &json!({ "key": B64.encode(key) }))?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).and_then(kv))
    }

    /// Puts `key` only if it was last changed at `mod_revision`: whether it was put.
    pub(crate) fn put_if_unchanged(
        &mut self,
        key: &str,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<bool, EtcdError> {
        self.txn(
            json!([{ "target": "MOD", "key": B64.encode(key), "mod_revision": mod_revision.to_string(), "result": "EQUAL" }]),
            json!([{ "request_put": put_request(key, value, 0) }]),
        )
    }

    /// Puts `key` only if it does not exist: whether it was put.
    pub(crate) fn create(
        &mut self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<bool, EtcdError> {
        self.txn(
            json!([{ "target": "CREATE", "key": B64.encode(key), "create_revision": "0", "result": "EQUAL" }]),
            json!([{ "request_put": put_request(key, value, lease) }]),
        )
    }

    /// Deletes `key` only if it is attached to `lease`: whether it was.
    pub(crate) fn delete_held(&mut self, key: &str, lease: i64) -> Result<bool, EtcdError> {
        self.txn(
            json!([{ "target": "LEASE", "key": B64.encode(key), "lease": lease.to_string(), "result": "EQUAL" }]),
            json!([{ "request_delete_range": { "key": B64.encode(key) } }]),
        )
    }

    /// Deletes `key`.
    pub(crate) fn delete(&mut self, key: &str) -> Result<(), EtcdError> {
        self.call("kv/deleterange", &json!({ "key": B64.encode(key) }))
            .map(drop)
    }

    /// A transaction: `success` if every comparison holds: whether they did.
    fn txn(&mut self, compare: Value, success: Value) -> Result<bool, EtcdError> {
        let v = self.call(
            "kv/txn",
            &json!({ "compare": compare, "success": success, "failure": [] }),
        )?;
        // proto3 JSON leaves a false boolean out.
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }
}

fn put_request(key: &str, value: &[u8], lease: i64) -> Value {
    let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
    if lease != 0 {
        put["lease"] = lease.to_string().into();
    }
    put
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end.
    vec![0]
}

/// A 64-bit number of the gateway's JSON: a string, or a number; 0 when absent.
fn int(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

fn kv(v: &Value) -> Option<Kv> {
    let key = B64.decode(v["key"].as_str()?).ok()?;
    Some(Kv {
        key: String::from_utf8(key).ok()?,
        value: v["value"]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default(),
        lease: int(&v["lease"]),
        mod_revision: int(&v["mod_revision"]),
    })
}

/// Why a `POST` failed.
#[derive(Debug)]
enum Failure {
    /// A kept connection that was closed before any of the answer came: etcd closed it while
    /// idle (it had not read the request), so the call may be made again.
    Stale,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Stale => f.write_str("the connection was closed"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// What is left until `deadline`, or an error once it has passed.
fn left_until(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "timed out".to_owned())
}

/// One `POST` on `s` (`reused`: kept from an earlier call), answered before `deadline`:
/// (status, JSON body, the connection if it can carry the next call).
fn post(
    mut s: TcpStream,
    reused: bool,
    host: &str,
    path: &str,
    body: &str,
    deadline: Instant,
) -> Result<(u16, Value, Option<TcpStream>), Failure> {
    let other = |e: std::io::Error| Failure::Other(e.to_string());
    let left = || left_until(deadline).map_err(Failure::Other);
    s.set_write_timeout(Some(left()?)).map_err(other)?;
    let request = format!(
        "POST /v3/{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = s.write_all(request.as_bytes()) {
        return Err(if reused { Failure::Stale } else { other(e) });
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // The answer's head, then its body as framed: a length (the connection can be kept),
    // chunks or the connection's end (it cannot).
    let mut head: Option<(usize, String)> = None;
    let mut dechunk: Option<(crate::input::http_pull::Dechunk, Vec<u8>)> = None;
    let mut keep = false;
    loop {
        if let (Some((end, h)), None) = (&head, &dechunk) {
            if let Some(n) = content_length(h) {
                let whole = end + 4 + n;
                if raw.len() >= whole {
                    // Anything past the answer is not ours: the connection goes.
                    keep = raw.len() == whole && !h.contains("\r\nconnection: close");
                    raw.truncate(whole);
                    break;
                }
            }
        }
        s.set_read_timeout(Some(left()?)).map_err(other)?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) if reused && raw.is_empty() => return Err(Failure::Stale),
            Err(e) => return Err(other(e)),
        };
        if n == 0 {
            if reused && raw.is_empty() {
                return Err(Failure::Stale);
            }
            break;
        }
        let fresh = raw.len();
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > 64 << 20 {
            return Err(Failure::Other("an answer over 64 MiB".to_owned()));
        }
        if head.is_none() {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let h = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                if h.contains("\r\ntransfer-encoding: chunked") {
                    let mut d = crate::input::http_pull::Dechunk::default();
                    let mut out = Vec::new();
                    let done = d.push(&raw[end + 4..], &mut out).map_err(Failure::Other)?;
                    dechunk = Some((d, out));
                    head = Some((end, h));
                    if done {
                        break;
                    }
                } else {
                    head = Some((end, h));
                }
            }
        } else if let Some((d, out)) = &mut dechunk {
            if d.push(&raw[fresh..], out).map_err(Failure::Other)? {
                break;
            }
        }
    }
    let (end, h) = head.ok_or_else(|| Failure::Other("no whole answer head".to_owned()))?;
    let status: u16 = h
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Other(format!("a bad status line: {:.40}", h)))?;
    let body = match dechunk {
        Some((_, out)) => out,
        None => raw[end + 4..].to_vec(),
    };
    // A stream's answer is one message a line: the first is the one.
    let first = body
        .split(|b| *b == b'\n')
        .find(|l| !l.is_empty())
        .unwrap_or(&[]);
    let v: Value = serde_json::from_slice(first).map_err(|e| {
        Failure::Other(format!(
            "{status}: not JSON ({e}): {:.80}",
            String::from_utf8_lossy(first)
        ))
    })?;
    Ok((status, v, keep.then_some(s)))
}

/// The Content-Length of an answer head (lowercased), if it has one.
fn content_length(head: &str) -> Option<usize> {
    head.split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one request (head and Content-Length body) from `s`; false at the end.
    fn read_request(s: &mut TcpStream) -> bool {
        let mut raw = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let n = content_length(&head).unwrap_or(0);
                if raw.len() >= end + 4 + n {
                    return true;
                }
            }
            match s.read(&mut b) {
                Ok(0) | Err(_) => return false,
                Ok(n) => raw.extend_from_slice(&b[..n]),
            }
        }
    }

    /// A connection kept while answers come with a length; one etcd closed while idle is
    /// replaced within the call; a chunked (streamed) answer is read whole and its connection
    /// not kept.
    #[test]
    fn connections_are_kept_while_answers_have_a_length() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let body = r#"{"header":{"revision":"7"},"count":"3"}"#;
            let sized = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // Three calls on the first connection, then it is closed while idle.
            let (mut s, _) = listener.accept().unwrap();
            for _ in 0..3 {
                assert!(read_request(&mut s));
                s.write_all(sized.as_bytes()).unwrap();
            }
            drop(s);
            // The next: one sized answer, then a chunked one, in two writes.
            let (mut s, _) = listener.accept().unwrap();
            assert!(read_request(&mut s));
            s.write_all(sized.as_bytes()).unwrap();
            assert!(read_request(&mut s));
            let chunk = r#"{"result":{"ID":"9","TTL":"5"}}"#;
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
                    chunk.len()
                )
                .as_bytes(),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(b"0\r\n\r\n").unwrap();
            // The client does not send on it again.
            assert!(!read_request(&mut s));
            let (mut s, _) = listener.accept().unwrap();
            assert!(read_request(&mut s));
            s.write_all(sized.as_bytes()).unwrap();
        });
        let mut etcd = Etcd::new(
            &[format!("http://127.0.0.1:{port}")],
            Duration::from_secs(5),
        )
        .unwrap();
        let body = json!({ "key": "AA==" });
        for _ in 0..3 {
            assert_eq!(int(&etcd.call("kv/range", &body).unwrap()["count"]), 3);
        }
        assert_eq!(etcd.connections, 1, "one connection for three calls");
        assert_eq!(int(&etcd.call("kv/range", &body).unwrap()["count"]), 3);
        assert_eq!(etcd.connections, 2, "the closed one replaced");
        let v = etcd.call("lease/keepalive", &json!({ "ID": "9" })).unwrap();
        assert_eq!(int(&v["result"]["TTL"]), 5);
        assert!(
            etcd.kept.is_none(),
            "a streamed answer's connection is not kept"
        );
        assert_eq!(int(&etcd.call("kv/range", &body).unwrap()["count"]), 3);
        assert_eq!(etcd.connections, 3);
        server.join().unwrap();
        assert_eq!(etcd.calls.values().sum::<u64>(), 6);
    }

    #[test]
    fn prefix_ends_and_numbers() {
        assert_eq!(prefix_end("/headend/"), b"/headend0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
        assert_eq!(
            int(&json!("7587862215541417234")),
            7_587_862_215_541_417_234
        );
        assert_eq!(int(&json!(3)), 3);
        assert_eq!(int(&Value::Null), 0);
        let v = json!({ "key": B64.encode("/k"), "value": B64.encode("v"), "lease": "12", "mod_revision": "5" });
        assert_eq!(
            kv(&v),
            Some(Kv {
                key: "/k".into(),
                value: b"v".to_vec(),
                lease: 12,
                mod_revision: 5
            })
        );
        assert!(Etcd::new(&["https://a:1".into()], Duration::from_secs(1)).is_err());
        assert!(Etcd::new(&["http://127.0.0.1:2379".into()], Duration::from_secs(1)).is_ok());
    }
}
