//! An `srt://` live input, caller, listener or rendezvous, clear or AES-encrypted, on
//! srt-tokio (a pure
//! Rust SRT; interoperates with libsrt's `srt-live-transmit` and ffmpeg both ways, clear and
//! with 16/24/32-byte keys, over IPv4 and IPv6: `headend/tests/live_srt.rs`).
//!
//! The input's thread runs its own single-threaded tokio runtime. A caller reconnects with
//! back-off (1 s doubling to 30 s) when its connection fails or ends (a rendezvous peer
//! likewise, from its local port); a listener takes one
//! caller at a time and waits for the next when it leaves. A caller the listener refuses (a
//! wrong passphrase, say) is counted and logged once.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use srt_tokio::{SrtListener, SrtSocket};

use super::live::LiveFeed;
use crate::config::SrtEndpoint;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often a waiting task looks at the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// Receives until `stop`.
pub(super) fn receive(feed: &LiveFeed, name: &str, e: &SrtEndpoint, stop: &AtomicBool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            feed.set_error(Some(format!("cannot start the SRT runtime: {err}")));
            return;
        }
    };
    rt.block_on(async {
        if e.listener {
            listen(feed, name, e, stop).await;
        } else {
            call(feed, name, e, stop).await;
        }
    });
}

fn latency(e: &SrtEndpoint) -> Duration {
    Duration::from_millis(u64::from(e.latency_ms))
}

/// Sleeps `d`, or less if stopped; false if stopped.
async fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(TICK.min(until - tokio::time::Instant::now())).await;
    }
    !stop.load(Ordering::Relaxed)
}

async fn call(feed: &LiveFeed, name: &str, e: &SrtEndpoint, stop: &AtomicBool) {
    let mut backoff = BACKOFF_MIN;
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        let host = e.host.as_deref().unwrap_or_default();
        let reason = match (host, e.port).to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => {
                let mut b = SrtSocket::builder().latency(latency(e)).set(|o| {
                    o.connect.timeout = Duration::from_secs(3);
                });
                if let Some(p) = &e.passphrase {
                    b = b.encryption(u16::from(e.key_len), p.as_str());
                }
                // From the address family of the peer, on the local port asked for (a
                // rendezvous: the peer's port by default, as libsrt does).
                let unspecified = match addr {
                    SocketAddr::V4(_) => std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
                    SocketAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
                };
                b = b.local_ip(unspecified);
                if let Some(p) = e.local_port.or(e.rendezvous.then_some(e.port)) {
                    b = b.local_port(p);
                }
                let connected = if e.rendezvous {
                    b.rendezvous(addr).await
                } else {
                    b.call(addr, e.stream_id.as_deref()).await
                };
                match connected {
                    Ok(socket) => {
                        tracing::info!(input = %name, peer = %addr, "SRT connected");
                        feed.set_error(None);
                        backoff = BACKOFF_MIN;
                        last.clear();
                        serve(feed, socket, stop).await
                    }
                    Err(err) => format!("cannot connect to {addr}: {err}"),
                }
            }
            Ok(None) => format!("{host} resolves to no address"),
            Err(err) => format!("cannot resolve {host}: {err}"),
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if reason != last {
            tracing::warn!(input = %name, reason = %reason, retry_in_s = backoff.as_secs(), "SRT input lost; calling again");
            last.clone_from(&reason);
        }
        feed.set_error(Some(reason));
        if !pause(backoff, stop).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn listen(feed: &LiveFeed, name: &str, e: &SrtEndpoint, stop: &AtomicBool) {
    let bind: SocketAddr = match e.host.as_deref() {
        None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, e.port)),
        Some(h) => match (h, e.port).to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                feed.set_error(Some(format!("cannot listen on {h}: not an address here")));
                return;
            }
        },
    };
    while !stop.load(Ordering::Relaxed) {
        let mut b = SrtListener::builder().latency(latency(e));
        if let Some(p) = &e.passphrase {
            b = b.encryption(u16::from(e.key_len), p.as_str());
        }
        let (mut listener, mut incoming) = match b.bind(bind).await {
            Ok(l) => l,
            Err(err) => {
                let msg = format!("cannot listen on {bind}: {err}");
                tracing::error!(input = %name, error = %msg, "SRT input; retrying every second");
                feed.set_error(Some(msg));
                if !pause(BACKOFF_MIN, stop).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(input = %name, listen = %bind, "SRT listening");
        feed.set_error(Some(format!("waiting for a caller on {bind}")));
        let mut stats = listener.statistics().clone();
        let mut rejected = 0;
        loop {
            tokio::select! {
                req = incoming.incoming().next() => {
                    let Some(req) = req else { break };
                    let peer = req.remote();
                    let stream_id = req.stream_id().map(ToString::to_string);
                    // A handshake that never completes must not hold the listener.
                    let accepted = tokio::time::timeout(Duration::from_secs(5), req.accept(None)).await;
                    let accepted = accepted.unwrap_or_else(|_| {
                        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))
                    });
                    match accepted {
                        Ok(socket) => {
                            tracing::info!(input = %name, peer = %peer, stream_id = ?stream_id, "SRT caller connected");
                            feed.set_error(None);
                            let why = serve(feed, socket, stop).await;
                            if stop.load(Ordering::Relaxed) {
                                listener.close().await;
                                return;
                            }
                            tracing::warn!(input = %name, peer = %peer, reason = %why, "SRT caller gone; waiting for the next");
                            feed.set_error(Some(format!("{why}; waiting for a caller on {bind}")));
                        }
                        Err(err) => feed.refused(&format!("caller {peer} failed to connect: {err}")),
                    }
                }
                s = stats.next() => {
                    if let Some(s) = s {
                        if s.cx_rejected > rejected {
                            for _ in rejected..s.cx_rejected {
                                feed.refused("a caller was refused (wrong passphrase or key length?)");
                            }
                            rejected = s.cx_rejected;
                        }
                    }
                }
                () = tokio::time::sleep(TICK) => {
                    if stop.load(Ordering::Relaxed) {
                        listener.close().await;
                        return;
                    }
                }
            }
        }
        listener.close().await;
    }
}

/// Takes what arrives on a connected socket until it ends (why) or `stop`.
async fn serve(feed: &LiveFeed, mut socket: SrtSocket, stop: &AtomicBool) -> String {
    // Messages need not be whole packets (srt-live-transmit sends 1456 bytes).
    let mut align = super::align::Align::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = futures::SinkExt::close(&mut socket).await;
            return "stopped".to_owned();
        }
        match tokio::time::timeout(TICK, socket.try_next()).await {
            Err(_) => {}
            Ok(Ok(Some((_, data)))) => {
                if let Err(e) = align.push(feed, &data) {
                    return e;
                }
            }
            Ok(Ok(None)) => return "the peer closed the connection".to_owned(),
            Ok(Err(err)) => return format!("the connection failed: {err}"),
        }
    }
}
