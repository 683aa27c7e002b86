//! Alarms out: every line of the stoppage record POSTed as JSON to each configured webhook
//! (`[[record.webhook]]`), so a monitoring (监测监管) platform receives stoppages,
//! degradations and failovers as they happen.
//!
//! One thread per receiver, with a bounded queue of its own (the oldest event goes when it is
//! full, counted): a slow or dead receiver delays nothing else. Events go one per request, in
//! order; a failed attempt (no connection, no answer within the timeout, a status other than
//! 2xx) is retried with back-off from 1 s doubling to 60 s. Plain HTTP/1.1 over TCP, or HTTPS
//! with rustls (the receiver's certificate checked against the system's roots or `ca`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::{WebhookConfig, WebhookTarget as Target};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One receiver's counters, for `/metrics` and `/health`.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct HookStats {
    pub(crate) url: String,
    pub(crate) delivered: u64,
    pub(crate) failed_attempts: u64,
    /// Events dropped because the queue was full.
    pub(crate) dropped: u64,
    pub(crate) queued: u64,
    /// The last failure, while the receiver is failing.
    pub(crate) error: Option<String>,
}

struct Queue {
    events: Mutex<VecDeque<Value>>,
    ready: Condvar,
    cap: usize,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    error: Mutex<Option<String>>,
    url: String,
}

/// The webhooks: `send` queues an event for each; never blocks.
#[derive(Clone)]
pub(crate) struct Hooks {
    queues: Vec<Arc<Queue>>,
    stop: Arc<AtomicBool>,
}

impl Hooks {
    /// Starts a sender thread per receiver.
    pub(crate) fn start(configs: &[WebhookConfig]) -> anyhow::Result<Hooks> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let target = c.target.clone();
            let tls = if target.tls {
                Some(
                    crate::input::http_pull::tls_config(c.ca.as_deref())
                        .map_err(|e| anyhow::anyhow!("record.webhook[{i}]: {e}"))?,
                )
            } else {
                None
            };
            let q = Arc::new(Queue {
                events: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                cap: c.queue,
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                error: Mutex::new(None),
                url: c.url.clone(),
            });
            let sender = Sender {
                target,
                tls,
                token: c.bearer_token.as_ref().map(|t| t.expose().to_owned()),
                timeout: c.timeout,
                queue: q.clone(),
                stop: stop.clone(),
            };
            // A panic costs the event being sent (the next is taken after a back-off).
            crate::supervise::spawn_restarting(format!("webhook-{i}"), "webhook", move || {
                sender.run()
            })?;
            queues.push(q);
        }
        Ok(Hooks { queues, stop })
    }

    /// Queues `event` for every receiver.
    pub(crate) fn send(&self, event: &Value) {
        for q in &self.queues {
            let mut events = q
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if events.len() >= q.cap {
                events.pop_front();
                if q.dropped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    tracing::error!(url = %q.url, "webhook: queue full; the oldest event was dropped");
                }
            }
            events.push_back(event.clone());
            q.ready.notify_one();
        }
    }

    /// Each receiver's counters.
    pub(crate) fn stats(&self) -> Vec<HookStats> {
        self.queues
            .iter()
            .map(|q| HookStats {
                url: q.url.clone(),
                delivered: q.delivered.load(Ordering::Relaxed),
                failed_attempts: q.failed.load(Ordering::Relaxed),
                dropped: q.dropped.load(Ordering::Relaxed),
                queued: q
                    .events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len() as u64,
                error: q
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            })
            .collect()
    }

    /// Lets the senders try what is queued for up to `wait`, then stops them.
    pub(crate) fn stop(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until
            && self.queues.iter().any(|q| {
                !q.events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_empty()
                    && q.error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .is_none()
            })
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        for q in &self.queues {
            q.ready.notify_all();
        }
    }
}

struct Sender {
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<String>,
    timeout: Duration,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    fn run(&self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let event = {
                let mut events = self
                    .queue
                    .events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                loop {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(e) = events.front() {
                        break e.clone();
                    }
                    events = self
                        .queue
                        .ready
                        .wait_timeout(events, Duration::from_millis(500))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            };
            match self.post(&event) {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    self.queue.delivered.fetch_add(1, Ordering::Relaxed);
                    let mut events = self
                        .queue
                        .events
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    // The one sent, unless the queue dropped it meanwhile.
                    if events.front() == Some(&event) {
                        events.pop_front();
                    }
                    drop(events);
                    let mut error = self
                        .queue
                        .error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if error.take().is_some() {
                        tracing::info!(url = %self.queue.url, "webhook: receiver reachable again");
                    }
                }
                Err(e) => {
                    self.queue.failed.fetch_add(1, Ordering::Relaxed);
                    let mut error = self
                        .queue
                        .error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if error.is_none() {
                        tracing::warn!(url = %self.queue.url, error = %e, "webhook: delivery failed; retrying with back-off");
                    }
                    *error = Some(e);
                    drop(error);
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One POST; `Ok` on a 2xx answer.
    fn post(&self, event: &Value) -> Result<(), String> {
        let t = &self.target;
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", t.host))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        tcp.set_read_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        let mut s: Box<dyn ReadWrite> = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                    .map_err(|e| format!("`{}` is not a name TLS can check: {e}", t.host))?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name)
                    .map_err(|e| format!("TLS: {e}"))?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        let body = event.to_string();
        let host = if t.host.contains(':') {
            format!("[{}]:{}", t.host, t.port)
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let auth = self
            .token
            .as_ref()
            .map_or_else(String::new, |tk| format!("Authorization: Bearer {tk}\r\n"));
        let began = Instant::now();
        write!(
            s,
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: headend\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
            t.path,
            body.len()
        )
        .and_then(|()| s.flush())
        .map_err(|e| format!("sending: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            if began.elapsed() > self.timeout || head.len() > 8192 {
                return Err("no answer within the timeout".to_owned());
            }
            match s.read(&mut buf) {
                Ok(0) => {
                    return Err("the receiver closed the connection without an answer".to_owned())
                }
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading the answer: {e}")),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let status = text.lines().next().unwrap_or_default();
        match status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
        {
            Some(200..=299) if status.starts_with("HTTP/1.") => Ok(()),
            Some(_) => Err(format!("answered `{}`", status.trim())),
            None => Err(format!(
                "not an HTTP answer: {:?}",
                status.chars().take(80).collect::<String>()
            )),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
