//! HTTP for set-top boxes and players (hyper, HTTP/1.1):
//! - `GET|HEAD /channels/{id}.ts`: the channel live, `video/mp2t`, to any number of clients.
//!   A new client starts on a random access point with PAT and PMT first (the current GOP is
//!   kept, so the picture comes at once). A client that falls behind skips ahead to the latest
//!   random access point; it never slows the channel or the other clients. Every client reads
//!   the same memory files (`crate::feed`), woken twice a second; on a plain connection the
//!   stream is sent from them with `sendfile(2)` ([`live`]), otherwise hyper sends it.
//! - `GET /channels`: the channels and their counters as JSON.
//! - `GET /epg.xml`: the programme guide of every channel as XMLTV; `GET /epg/{id}.json`: one
//!   channel's, as JSON (see `crate::guide`).
//! - `GET /playlist.m3u`: an M3U playlist (tvg-id, tvg-name, group-title) for VLC and
//!   IPTV players.
//!
//! With `[management]`, a second listener (TLS: `super::tls`) serves the API, `/metrics` and
//! `/channels`, and this one the streams, the playlist and the guide only ([`Plane`]).
//!
//! A client flood never reaches the channels (the engine threads pace the outputs; this
//! runtime only serves) and is bounded here ([`Limits`], `[http]` in the config): at most
//! `max_connections` open (a new one takes the place of the oldest idle one, or is answered
//! 503 and closed at once), a request head within `header_timeout` and at most
//! [`MAX_HEAD`] bytes, no connection silent for `idle_timeout`, an API request's body in
//! within `request_timeout` of its head (408 otherwise, with nothing changed). Each refusal
//! and closing is counted, and a flood raises the `http` alarm (`GET /api/record`,
//! [`crate::api::ListenerStats`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::Stream;

use crate::api::{self, ApiState, ListenerStats};
use crate::feed::{Cursor, Feed, Next, Ready};
use crate::status::Status;

mod hls_plain;
mod live;

/// A channel as HTTP shows it.
pub(crate) struct HttpChannel {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) service_id: u16,
    pub(crate) feed: Arc<Feed>,
}

/// What the handlers share.
pub(crate) struct HttpState {
    pub(crate) channels: Vec<HttpChannel>,
    pub(crate) status: Status,
    pub(crate) listen: SocketAddr,
    /// The control API under `/api/`.
    pub(crate) api: Arc<ApiState>,
    /// `/metrics`.
    pub(crate) metrics: crate::metrics::Exporter,
    pub(crate) limits: Limits,
}

/// Largest request head (request line and headers) accepted; beyond, 431.
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Most header lines in a request.
const MAX_HEADERS: usize = 64;
/// The `http` alarm clears once nothing has been refused or closed to make room for this long.
const QUIET: Duration = Duration::from_secs(10);

/// What bounds the clients (`[http]`; see `crate::config::HttpConfig`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_per_source: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl Limits {
    pub(crate) fn of(c: &crate::config::HttpConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            max_per_source: c.max_connections_per_source,
            header_timeout: c.header_timeout,
            idle_timeout: c.idle_timeout,
            request_timeout: c.request_timeout,
        }
    }
}

/// The connections open now, by age (their ids grow), for the limit and to make room.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Arc<Conn>>,
    /// Connections open by source address.
    per_source: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// One connection as the listener watches it; times in milliseconds since the listener
/// started.
struct Conn {
    /// Where it comes from.
    source: std::net::IpAddr,
    /// Requests in progress: from a whole request head until its answer is all sent.
    busy: AtomicUsize,
    /// Since when it has no request in progress (the header timeout counts from there).
    idle_since: AtomicU64,
    /// When it last moved a byte either way.
    last_io: AtomicU64,
    /// Closed by the listener to make room for a new connection.
    evict: tokio::sync::Notify,
}

/// The listener's clock: milliseconds since it started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn ms(self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    fn at(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// Why the listener closed a connection.
enum Closed {
    Evicted,
    HeaderTimeout,
    IdleTimeout,
}

/// What a listener serves (`[management]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plane {
    /// Everything: no management listener of its own.
    All,
    /// The set-top boxes': streams, the playlist, the guide.
    Streaming,
    /// The management plane: `/api/*`, `/metrics`, `/channels` (the status as JSON), the
    /// operator's page (`/`, `/ui/*`).
    Management,
}

impl Plane {
    /// Why `path` is not served here, if it is not.
    fn refuses(self, path: &str) -> Option<&'static str> {
        let management = path.starts_with("/api/")
            || path.starts_with("/ui/")
            || matches!(path, "/" | "/metrics" | "/channels" | "/channels/");
        match self {
            Plane::All => None,
            Plane::Streaming if management => {
                Some("not here: on the management listener ([management] listen)\n")
            }
            Plane::Management if !management => {
                Some("not here: on the streaming listener ([http] listen)\n")
            }
            _ => None,
        }
    }
}

/// Serves until the shutdown; then stops accepting and returns. `plane`: what it serves;
/// `tls`: the management plane's TLS, when it speaks it.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: crate::shutdown::Shutdown,
    plane: Plane,
    tls: Option<Arc<super::tls::Tls>>,
) {
    let clock = Clock(Instant::now());
    let table = Arc::new(Mutex::new(Table::default()));
    let stats = state.api.listener.clone();
    // When a connection was last refused or closed to make room (ms + 1; 0: never).
    let mut pressure = 0u64;
    let mut quiet = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (conn, evicted) = match admit(&table, &state.limits, clock, peer.ip()) {
                    Ok(c) => c,
                    Err(why) => {
                        refuse(&stream, &stats, why);
                        pressure = clock.ms() + 1;
                        continue;
                    }
                };
                if evicted {
                    stats.evicted.fetch_add(1, Ordering::Relaxed);
                    flood(&stats, state.limits.max_connections);
                    pressure = clock.ms() + 1;
                }
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                stats.open.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                // A peer gone without a word (a set-top box switched off) is found in about
                // a minute even while nothing is to be sent.
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(
                    &socket2::TcpKeepalive::new()
                        .with_time(KEEPALIVE_IDLE)
                        .with_interval(Duration::from_secs(10))
                        .with_retries(3),
                );
                let (state, table, tls) = (state.clone(), table.clone(), tls.clone());
                tokio::spawn(async move {
                    let Some(tls) = tls else {
                        return plain(stream, peer, state, table, conn, clock, plane).await;
                    };
                    // The handshake within the header timeout, or the connection is dropped.
                    let limit = state.limits.header_timeout;
                    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
                        Ok(Ok(s)) => connection(s, peer, state, table, conn, clock, plane).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            release(&table, &conn, &state.api.listener);
                        }
                        Err(_) => {
                            state.api.listener.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            release(&table, &conn, &state.api.listener);
                        }
                    }
                });
            }
            _ = quiet.tick() => {
                if pressure > 0 && clock.ms() + 1 - pressure >= QUIET.as_millis() as u64 {
                    pressure = 0;
                    stats.alarm.clear("no connection refused or closed to make room for 10 s");
                }
            }
            _ = shutdown.wait() => break,
        }
    }
}

/// How long a connection may be silent before TCP keepalive probes it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Why a connection is refused.
enum Refusal {
    /// `http.max_connections` open, none idle to close.
    Full(usize),
    /// `http.max_connections_per_source` open from its address.
    Source(std::net::IpAddr, usize),
}

/// A place for a new connection from `source`: a free one, or the oldest idle connection's
/// (closed; the bool says so), its own address's when that has
/// `http.max_connections_per_source` open. Refused when the places it may take are all
/// held by connections with a request in progress.
fn admit(
    table: &Mutex<Table>,
    limits: &Limits,
    clock: Clock,
    source: std::net::IpAddr,
) -> Result<(Arc<Conn>, bool), Refusal> {
    let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
    let mut evicted = false;
    if t.per_source.get(&source).copied().unwrap_or(0) >= limits.max_per_source {
        // Its own oldest idle connection makes room, or it is refused.
        let oldest_idle = t
            .open
            .iter()
            .find(|(_, c)| c.source == source && c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)
            .ok_or(Refusal::Source(source, limits.max_per_source))?;
        if let Some(c) = t.open.remove(&oldest_idle) {
            forget_source(&mut t, c.source);
            c.evict.notify_one();
        }
        evicted = true;
    }
    if t.open.len() >= limits.max_connections {
        let oldest_idle = t
            .open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)
            .ok_or(Refusal::Full(limits.max_connections))?;
        if let Some(c) = t.open.remove(&oldest_idle) {
            forget_source(&mut t, c.source);
            c.evict.notify_one();
        }
        evicted = true;
    }
    *t.per_source.entry(source).or_insert(0) += 1;
    let now = clock.ms();
    let conn = Arc::new(Conn {
        source,
        busy: AtomicUsize::new(0),
        idle_since: AtomicU64::new(now),
        last_io: AtomicU64::new(now),
        evict: tokio::sync::Notify::new(),
    });
    let id = t.next_id;
    t.next_id += 1;
    t.open.insert(id, conn.clone());
    Ok((conn, evicted))
}

/// One connection from `source` fewer.
fn forget_source(t: &mut Table, source: std::net::IpAddr) {
    if let Some(n) = t.per_source.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            t.per_source.remove(&source);
        }
    }
}

/// At the limit with no idle connection to close: 503 (if the socket takes it at once) and
/// closed, counted. What the client already sent is read first, so the close is a FIN the
/// client reads the 503 before, not a reset.
fn refuse(stream: &TcpStream, stats: &ListenerStats, why: Refusal) {
    let body = match why {
        Refusal::Full(max) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            flood(stats, max);
            format!("busy: {max} connections open (http.max_connections); try again later\n")
        }
        Refusal::Source(ip, max) => {
            stats.refused_per_source.fetch_add(1, Ordering::Relaxed);
            stats.alarm.raise(format!(
                "client flood from {ip}: at http.max_connections_per_source ({max}); {} connection(s) refused by source since start",
                stats.refused_per_source.load(Ordering::Relaxed)
            ));
            format!("busy: {max} connections open from your address (http.max_connections_per_source); try again later\n")
        }
    };
    let mut sent = [0u8; 4096];
    let _ = stream.try_read(&mut sent);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Retry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Raises (or updates) the `http` alarm: at the connection limit.
fn flood(stats: &ListenerStats, max: usize) {
    stats.alarm.raise(format!(
        "client flood: at http.max_connections ({max}); {} connection(s) refused and {} idle one(s) closed to make room since start",
        stats.refused.load(Ordering::Relaxed),
        stats.evicted.load(Ordering::Relaxed)
    ));
}

/// Serves one connection with hyper until it ends, is closed to make room, or runs over the
/// header or idle timeout.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    state: Arc<HttpState>,
    table: Arc<Mutex<Table>>,
    conn: Arc<Conn>,
    clock: Clock,
    plane: Plane,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let work = hyper_connection(stream, peer, state.clone(), conn.clone(), clock, plane);
    watch(work, peer, &state, &table, &conn, clock).await;
}

/// A connection without TLS: its first request, if for a channel's stream, is answered by
/// [`live`] (`sendfile` from the feed); HLS requests by [`hls_plain`] while they come
/// (segments with `sendfile` from the archive); anything else goes to hyper with the bytes
/// read.
async fn plain(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<HttpState>,
    table: Arc<Mutex<Table>>,
    conn: Arc<Conn>,
    clock: Clock,
    plane: Plane,
) {
    let work = {
        let (state, conn) = (state.clone(), conn.clone());
        async move {
            match live::first_request(stream, &state, plane, &conn, clock).await {
                live::First::Stream(s) => s.send(&conn, clock).await,
                live::First::Other(io) => {
                    // HLS requests are answered without hyper while they come.
                    if let Some(io) = hls_plain::serve(io, &state, plane, &conn, clock).await {
                        hyper_connection(io, peer, state, conn, clock, plane).await;
                    }
                }
            }
        }
    };
    watch(work, peer, &state, &table, &conn, clock).await;
}

/// The requests of a connection, served by hyper.
async fn hyper_connection<S>(
    stream: S,
    peer: SocketAddr,
    state: Arc<HttpState>,
    conn: Arc<Conn>,
    clock: Clock,
    plane: Plane,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.limits;
    let io = Watched {
        inner: stream,
        conn: conn.clone(),
        clock,
    };
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(api::Peer(peer));
        let state = state.clone();
        let busy = Busy::start(conn.clone(), clock);
        async move {
            if let Some(why) = plane.refuses(req.uri().path()) {
                let r = text(StatusCode::NOT_FOUND, why);
                return Ok::<_, Infallible>(r.map(|body| Tracked { body, _busy: busy }));
            }
            let r = if req.uri().path().starts_with("/api/") {
                // The body must arrive within the limit (408 otherwise); what the request
                // asks is then done to the end and answered as it went, never cut short.
                let limit = limits.request_timeout;
                req.extensions_mut().insert(api::Deadline {
                    at: tokio::time::Instant::now() + limit,
                    limit,
                });
                api::handle(state.api.clone(), req)
                    .await
                    .map(|b| Body::Full(Some(b)))
            } else if req.uri().path().starts_with("/hls/") {
                // A segment is read from disk (and encrypted): on the blocking pool, so a slow
                // disk holds up its readers, not the runtime's workers.
                let st = state.clone();
                match tokio::task::spawn_blocking(move || handle(&st, &req)).await {
                    Ok(r) => r,
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("the request failed: {e}\n"),
                    ),
                }
            } else {
                handle(&state, &req)
            };
            Ok::<_, Infallible>(r.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_header_size(MAX_HEAD).max_headers(MAX_HEADERS);
    let served = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = served.await {
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// Runs `work` (a connection's serving) until it ends, the connection is closed to make
/// room, or it runs over the header or idle timeout; then releases its place.
async fn watch(
    work: impl std::future::Future<Output = ()>,
    peer: SocketAddr,
    state: &HttpState,
    table: &Mutex<Table>,
    conn: &Arc<Conn>,
    clock: Clock,
) {
    let limits = state.limits;
    let stats = &state.api.listener;
    tokio::pin!(work);
    let closed = loop {
        // The next instant a timeout could fall due.
        let idle_at = conn.last_io.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as u64;
        let head_at = (conn.busy.load(Ordering::Acquire) == 0).then(|| {
            conn.idle_since.load(Ordering::Relaxed) + limits.header_timeout.as_millis() as u64
        });
        let due = head_at.map_or(idle_at, |h| h.min(idle_at));
        tokio::select! {
            () = &mut work => break None,
            _ = conn.evict.notified() => break Some(Closed::Evicted),
            _ = tokio::time::sleep_until(clock.at(due)) => {
                let now = clock.ms();
                let idle = conn.busy.load(Ordering::Acquire) == 0;
                if idle && now >= conn.idle_since.load(Ordering::Relaxed) + limits.header_timeout.as_millis() as u64 {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    break Some(Closed::HeaderTimeout);
                }
                if now >= conn.last_io.load(Ordering::Relaxed) + limits.idle_timeout.as_millis() as u64 {
                    stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    break Some(Closed::IdleTimeout);
                }
            }
        }
    };
    match closed {
        Some(Closed::HeaderTimeout) => {
            tracing::debug!(%peer, "http connection closed: no whole request head within http.header_timeout");
        }
        Some(Closed::IdleTimeout) => {
            tracing::debug!(%peer, "http connection closed: nothing moved for http.idle_timeout");
        }
        // Already out of the table.
        Some(Closed::Evicted) => {}
        None => {}
    }
    // One closed to make room is out of the table already.
    release(table, conn, stats);
}

/// A connection ended: out of the table (if still in it) and the counts.
fn release(table: &Mutex<Table>, conn: &Arc<Conn>, stats: &ListenerStats) {
    let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
    let before = t.open.len();
    t.open.retain(|_, c| !Arc::ptr_eq(c, conn));
    if t.open.len() < before {
        forget_source(&mut t, conn.source);
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// A request in progress on a connection, from its whole head until its answer's body is
/// all sent (or dropped).
struct Busy {
    conn: Arc<Conn>,
    clock: Clock,
}

impl Busy {
    fn start(conn: Arc<Conn>, clock: Clock) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn, clock }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.clock.ms(), Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body with its request's [`Busy`] mark.
pub(crate) struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, noting when a byte last moved either way.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
    clock: Clock,
}

impl<S> Watched<S> {
    fn moved(&self) {
        self.conn.last_io.store(self.clock.ms(), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.moved();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.moved();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.moved();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn handle<B>(state: &HttpState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let head = req.method() == Method::HEAD;
    if req.method() == Method::OPTIONS && path.starts_with("/hls/") {
        // A web player's preflight before it sends its token for a key.
        let mut r = response(StatusCode::NO_CONTENT, "text/plain", Body::Full(None));
        let h = r.headers_mut();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("authorization"),
        );
        h.insert("access-control-max-age", HeaderValue::from_static("600"));
        return r;
    }
    if req.method() != Method::GET && !head {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    if path.starts_with("/archive/") {
        // A recording for a monitoring platform: a token of any role, as for keys.
        if let Some(refused) = api::key_refused(&state.api, req) {
            return refused.map(|b| Body::Full(Some(b)));
        }
        return match super::hls::export(state.api.archives.as_deref(), path, req.uri().query()) {
            Some(Ok(rx)) if !head => response(StatusCode::OK, "video/mp2t", Body::Chunks(rx)),
            Some(Ok(_)) => response(StatusCode::OK, "video/mp2t", Body::Full(None)),
            Some(Err(r)) => hls_response(r, head),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    if super::hls::is_key(path) {
        if let Some(refused) = api::key_refused(&state.api, req) {
            let mut r = refused.map(|b| Body::Full(Some(b)));
            r.headers_mut()
                .insert("access-control-allow-origin", HeaderValue::from_static("*"));
            return r;
        }
    }
    if let Some(r) = super::hls::handle(state.api.archives.as_deref(), path, req.uri().query()) {
        return hls_response(r, head);
    }
    if let Some(id) = path
        .strip_prefix("/channels/")
        .and_then(|p| p.strip_suffix(".ts"))
    {
        let Some(ch) = state.channels.iter().find(|c| c.id == id) else {
            return text(StatusCode::NOT_FOUND, &format!("no channel `{id}`\n"));
        };
        let body = if head {
            Body::Full(None)
        } else {
            match Live::new(&ch.feed) {
                Some(live) => Body::Live(Box::new(live)),
                None => return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
            }
        };
        return response(StatusCode::OK, "video/mp2t", body);
    }
    if let Some(id) = path
        .strip_prefix("/epg/")
        .and_then(|p| p.strip_suffix(".json"))
    {
        let archived = crate::guide::archived(state.api.archives.as_deref(), id);
        return match crate::guide::channel_json(
            &state.api.guide_channels,
            &state.api.guides,
            id,
            archived.as_ref(),
            crate::schedule::driver::now_utc().0,
        ) {
            Some(json) => {
                let body = if head { None } else { Some(Bytes::from(json)) };
                response(StatusCode::OK, "application/json", Body::Full(body))
            }
            None => text(StatusCode::NOT_FOUND, &format!("no channel `{id}`\n")),
        };
    }
    if matches!(path, "/channels" | "/channels/" | "/metrics") {
        if let Some(refused) = api::read_refused(&state.api, req) {
            return refused.map(|b| Body::Full(Some(b)));
        }
    }
    if let Some(page) = super::ui::asset(path) {
        return page_response(page, head);
    }
    match path {
        "/channels" | "/channels/" => {
            let json = channels_json(state);
            let body = if head { None } else { Some(Bytes::from(json)) };
            response(StatusCode::OK, "application/json", Body::Full(body))
        }
        "/metrics" => {
            let status = state.status.borrow().clone();
            let feeds: Vec<(&str, &crate::feed::FeedStats)> = state
                .channels
                .iter()
                .map(|c| (c.id.as_str(), &c.feed.stats))
                .collect();
            let text = state.metrics.render(&status, &feeds, &state.api);
            let body = if head { None } else { Some(Bytes::from(text)) };
            response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Body::Full(body),
            )
        }
        "/epg.xml" => {
            let base = format!("http://{}", request_host(state, req));
            let xml = crate::guide::xmltv_document(
                &state.api.guide_channels,
                &state.api.guides,
                &|id| crate::guide::archived(state.api.archives.as_deref(), id),
                &base,
                crate::schedule::driver::now_utc().0,
            );
            let body = if head { None } else { Some(Bytes::from(xml)) };
            response(
                StatusCode::OK,
                "application/xml; charset=utf-8",
                Body::Full(body),
            )
        }
        "/playlist.m3u" => {
            let m3u = playlist_m3u(state, &request_host(state, req));
            let body = if head { None } else { Some(Bytes::from(m3u)) };
            response(StatusCode::OK, "audio/x-mpegurl", Body::Full(body))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The host (and port) the client asked for, for absolute links: its `Host`, else the
/// address it reached.
fn request_host<B>(state: &HttpState, req: &Request<B>) -> String {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.listen.to_string(), str::to_owned)
}

fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// An HLS answer (`super::hls`): any origin's page may play it.
fn hls_response(r: super::hls::Reply, head: bool) -> Response<Body> {
    let body = if head { None } else { Some(r.body) };
    let mut resp = response(r.status, r.content_type, Body::Full(body));
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(r.cache));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

/// One of the operator's page's files: static, so no token is needed for it (what it shows
/// comes from `/api/overview`, which asks for one), and a policy that lets it run only its
/// own script and style.
fn page_response(page: super::ui::Asset, head: bool) -> Response<Body> {
    let body = if head {
        None
    } else {
        Some(Bytes::from_static(page.body.as_bytes()))
    };
    let mut r = response(StatusCode::OK, page.content_type, Body::Full(body));
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    response(
        status,
        "text/plain; charset=utf-8",
        Body::Full(Some(Bytes::from(msg.to_owned()))),
    )
}

fn channels_json(state: &HttpState) -> String {
    let status = state.status.borrow().clone();
    let list: Vec<serde_json::Value> = state
        .channels
        .iter()
        .map(|c| {
            let st = status.iter().find(|s| s.id == c.id);
            serde_json::json!({
                "id": c.id,
                "name": c.name,
                "provider": c.provider,
                "service_id": c.service_id,
                "url": format!("/channels/{}.ts", c.id),
                "http_clients": c.feed.stats.clients.load(Ordering::Relaxed),
                "http_clients_total": c.feed.stats.clients_total.load(Ordering::Relaxed),
                "http_skips": c.feed.stats.skips.load(Ordering::Relaxed),
                "http_bytes": c.feed.stats.bytes_sent.load(Ordering::Relaxed),
                "status": st,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".to_owned());
    s.push('\n');
    s
}

/// An M3U attribute value: quotes and line breaks would end it early.
fn attr(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '"' => '\'',
            '\r' | '\n' => ' ',
            c => c,
        })
        .collect()
}

fn playlist_m3u(state: &HttpState, host: &str) -> String {
    let mut s = String::from("#EXTM3U\n");
    for (i, c) in state.channels.iter().enumerate() {
        // An archived channel: catch-up as IPTV players take it (`{utc}`, `{utcend}`: the
        // programme's start and end, Unix seconds).
        let catchup = state
            .api
            .archives
            .as_ref()
            .and_then(|a| a.get(&c.id))
            .map_or_else(String::new, |a| {
                format!(
                    " catchup=\"default\" catchup-days=\"{}\" catchup-source=\"http://{host}/hls/{}/live.m3u8?from={{utc}}&to={{utcend}}\"",
                    a.keep_ns.div_ceil(86_400_000_000_000),
                    c.id
                )
            });
        s.push_str(&format!(
            "#EXTINF:-1 tvg-id=\"{}\" tvg-name=\"{}\" tvg-chno=\"{}\" group-title=\"{}\"{catchup},{}\nhttp://{}/channels/{}.ts\n",
            attr(&c.id),
            attr(&c.name),
            i + 1,
            attr(&c.provider),
            attr(&c.name).replace(',', " "),
            host,
            c.id
        ));
    }
    s
}

/// A response body: a whole one, or a live channel.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Live(Box<Live>),
    /// Pieces made by another task as they come (an archive export).
    Chunks(tokio::sync::mpsc::Receiver<Bytes>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Live(live) => live.poll(cx),
            Body::Chunks(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    /// A whole answer's length, so it goes with `Content-Length` (a player sees a
    /// segment's size; a keep-alive connection needs no chunked coding).
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
            _ => http_body::SizeHint::default(),
        }
    }
}

/// One client of a channel served by hyper (over TLS, or after other requests on its
/// connection): the feed's files read into buffers of at most [`LIVE_READ`] bytes.
pub(crate) struct Live {
    cursor: Cursor,
    batches: WatchStream<Ready>,
}

/// Most bytes of a channel read for one frame of a [`Live`] body.
const LIVE_READ: usize = 64 << 10;

impl Live {
    fn new(feed: &Arc<Feed>) -> Option<Live> {
        let cursor = feed.subscribe()?;
        Some(Live {
            batches: cursor.batches(),
            cursor,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            match self.cursor.next() {
                Next::Psi(b) => {
                    self.cursor.psi_sent(b.len());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Next::Data {
                    segment,
                    offset,
                    len,
                } => {
                    let mut buf = bytes::BytesMut::zeroed(len.min(LIVE_READ));
                    if let Err(e) = segment.file.read_exact_at(&mut buf, offset) {
                        tracing::warn!(error = %e, "http feed: cannot read a memory file");
                        return Poll::Ready(None);
                    }
                    self.cursor.sent(buf.len());
                    return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
                }
                Next::Wait => match Pin::new(&mut self.batches).poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(_)) => {}
                    Poll::Ready(None) => return Poll::Ready(None),
                },
                Next::End => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Chunk;

    /// What `live` gives now, as one string (`|` after each frame of tables).
    fn frames(live: &mut Live) -> String {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = String::new();
        while let Poll::Ready(Some(Ok(frame))) = live.poll(&mut cx) {
            let b = frame.into_data().unwrap();
            out.push_str(std::str::from_utf8(&b).unwrap());
            if &b[..] == b"PSI" {
                out.push('|');
            }
        }
        out
    }

    fn chunk(data: &'static [u8], rap: Option<usize>) -> Chunk {
        Chunk {
            data: Bytes::from_static(data),
            rap: rap.map(|o| (o, Bytes::from_static(b"PSI"))),
        }
    }

    /// A client that joins gets the GOP first; one that falls behind what the feed keeps
    /// skips to the next random access point, tables first, and is counted.
    #[test]
    fn a_lagging_client_skips_to_the_next_random_access_point() {
        let feed = Feed::sized(64, 16);
        let t0 = std::time::Instant::now();
        let mut n = 0;
        let mut publish = |c: Chunk| {
            n += 1;
            feed.publish_at(c, t0 + crate::feed::BATCH * n);
        };
        publish(chunk(b"..RAP", Some(2)));
        let mut live = Live::new(&feed).unwrap();
        assert_eq!(feed.stats.clients.load(Ordering::Relaxed), 1);
        publish(chunk(b"next", None));
        assert_eq!(frames(&mut live), "PSI|RAPnext");
        // Fall behind: more than the feed keeps without reading.
        for _ in 0..30 {
            publish(chunk(b"old", None));
        }
        assert_eq!(frames(&mut live), "", "waits for a random access point");
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 1);
        publish(chunk(b"more", None));
        publish(chunk(b"xxxRAP2", Some(3)));
        publish(chunk(b"live", None));
        assert_eq!(frames(&mut live), "PSI|RAP2live");
        drop(live);
        assert_eq!(feed.stats.clients.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn m3u_attributes_are_quoted_safely() {
        let state = HttpState {
            channels: vec![HttpChannel {
                id: "news".to_owned(),
                name: "News \"HD\", 新闻".to_owned(),
                provider: "Demo".to_owned(),
                service_id: 101,
                feed: Feed::for_rate(6_000_000),
            }],
            status: Default::default(),
            listen: "[::1]:8080".parse().unwrap(),
            api: Arc::new(ApiState {
                alerts: None,
                store: Arc::new(crate::schedule::store::Store::new("/nonexistent")),
                channels: Vec::new(),
                auth: crate::auth::Auth::new(Vec::new(), None, None),
                trail: None,
                views: Default::default(),
                guides: Default::default(),
                guide_channels: Vec::new(),
                charsets: Vec::new(),
                inputs: Vec::new(),
                status: Default::default(),
                zones: Vec::new(),
                media_dir: "/nonexistent".into(),
                requeue: std::sync::mpsc::channel().0,
                live: Vec::new(),
                sink: crate::router::ScheduleSink::inbox(0).0,
                probes: Default::default(),
                journal: crate::record::Journal::none(),
                hooks: None,
                listener: Default::default(),
                archives: None,
                fleet: None,
            }),
            metrics: Default::default(),
            limits: Limits::of(&crate::config::HttpConfig::default()),
        };
        let m3u = playlist_m3u(&state, "[::1]:8080");
        assert_eq!(
            m3u,
            "#EXTM3U\n#EXTINF:-1 tvg-id=\"news\" tvg-name=\"News 'HD', 新闻\" tvg-chno=\"1\" group-title=\"Demo\",News 'HD'  新闻\nhttp://[::1]:8080/channels/news.ts\n"
        );
    }
}
