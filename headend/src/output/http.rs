//! HTTP for set-top boxes and players (hyper, HTTP/1.1):
//! - `GET|HEAD /channels/{id}.ts`: the channel live, `video/mp2t`, to any number of clients.
//!   A new client starts on a random access point with PAT and PMT first (the current GOP is
//!   kept, so the picture comes at once). A client that falls behind skips ahead to the next
//!   random access point; it never slows the channel or the other clients. Every client shares
//!   the same buffers.
//! - `GET /channels`: the channels and their counters as JSON.
//! - `GET /epg.xml`: the programme guide of every channel as XMLTV; `GET /epg/{id}.json`: one
//!   channel's, as JSON (see `crate::guide`).
//! - `GET /playlist.m3u`: an M3U playlist (tvg-id, tvg-name, group-title) for VLC and
//!   IPTV players.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

use crate::api::{self, ApiState};
use crate::feed::{Chunk, Feed};
use crate::status::Status;

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
}

/// Serves until the shutdown; then stops accepting and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: crate::shutdown::Shutdown,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            if req.uri().path().starts_with("/api/") {
                                Ok::<_, Infallible>(
                                    api::handle(state.api.clone(), req)
                                        .await
                                        .map(|b| Body::Full(Some(b))),
                                )
                            } else {
                                Ok::<_, Infallible>(handle(&state, &req))
                            }
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "http connection ended");
                    }
                });
            }
            _ = shutdown.wait() => break,
        }
    }
}

fn handle<B>(state: &HttpState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
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
            match Live::new(ch.feed.clone()) {
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
        return match crate::guide::channel_json(&state.api.guide_channels, &state.api.guides, id) {
            Some(json) => {
                let body = if head { None } else { Some(Bytes::from(json)) };
                response(StatusCode::OK, "application/json", Body::Full(body))
            }
            None => text(StatusCode::NOT_FOUND, &format!("no channel `{id}`\n")),
        };
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
            let xml = crate::guide::xmltv_document(&state.api.guide_channels, &state.api.guides);
            let body = if head { None } else { Some(Bytes::from(xml)) };
            response(
                StatusCode::OK,
                "application/xml; charset=utf-8",
                Body::Full(body),
            )
        }
        "/playlist.m3u" => {
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map_or_else(|| state.listen.to_string(), str::to_owned);
            let m3u = playlist_m3u(state, &host);
            let body = if head { None } else { Some(Bytes::from(m3u)) };
            response(StatusCode::OK, "audio/x-mpegurl", Body::Full(body))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
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
        s.push_str(&format!(
            "#EXTINF:-1 tvg-id=\"{}\" tvg-name=\"{}\" tvg-chno=\"{}\" group-title=\"{}\",{}\nhttp://{}/channels/{}.ts\n",
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
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

/// One client of a channel.
pub(crate) struct Live {
    feed: Arc<Feed>,
    pending: VecDeque<Bytes>,
    rx: BroadcastStream<Arc<Chunk>>,
    /// Waiting for a random access point (joined before the first one, or fell behind).
    resync: bool,
}

impl Live {
    fn new(feed: Arc<Feed>) -> Option<Live> {
        let (first, rx) = feed.subscribe()?;
        feed.stats.clients.fetch_add(1, Ordering::Relaxed);
        feed.stats.clients_total.fetch_add(1, Ordering::Relaxed);
        Some(Live {
            resync: first.is_empty(),
            pending: first.into(),
            rx: BroadcastStream::new(rx),
            feed,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                self.feed
                    .stats
                    .bytes_sent
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            match Pin::new(&mut self.rx).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    self.feed.stats.skips.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        chunks = n,
                        "http client fell behind: skipping to the next random access point"
                    );
                    self.resync = true;
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if self.resync {
                        if let Some((offset, psi)) = &chunk.rap {
                            self.resync = false;
                            self.pending.push_back(psi.clone());
                            self.pending.push_back(chunk.data.slice(*offset..));
                        }
                    } else {
                        self.pending.push_back(chunk.data.clone());
                    }
                }
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.feed.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(live: &mut Live) -> Vec<Bytes> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = live.poll(&mut cx) {
            out.push(frame.into_data().unwrap());
        }
        out
    }

    fn chunk(data: &'static [u8], rap: Option<usize>) -> Chunk {
        Chunk {
            data: Bytes::from_static(data),
            rap: rap.map(|o| (o, Bytes::from_static(b"PSI"))),
        }
    }

    /// A client that joins gets the GOP first; one that falls more than the backlog behind
    /// skips to the next random access point, tables first, and is counted.
    #[test]
    fn a_lagging_client_skips_to_the_next_random_access_point() {
        let feed = Feed::new();
        feed.publish(chunk(b"..RAP", Some(2)));
        let mut live = Live::new(feed.clone()).unwrap();
        assert_eq!(feed.stats.clients.load(Ordering::Relaxed), 1);
        feed.publish(chunk(b"next", None));
        assert_eq!(frames(&mut live), vec![&b"PSI"[..], b"RAP", b"next"]);
        // Fall behind: more chunks than the backlog without reading.
        for _ in 0..300 {
            feed.publish(chunk(b"old", None));
        }
        assert_eq!(
            frames(&mut live),
            Vec::<Bytes>::new(),
            "waits for a random access point"
        );
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 1);
        feed.publish(chunk(b"more", None));
        feed.publish(chunk(b"xxxRAP2", Some(3)));
        feed.publish(chunk(b"live", None));
        assert_eq!(frames(&mut live), vec![&b"PSI"[..], b"RAP2", b"live"]);
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
                feed: Feed::new(),
            }],
            status: Default::default(),
            listen: "[::1]:8080".parse().unwrap(),
            api: Arc::new(ApiState {
                alerts: None,
                store: Arc::new(crate::schedule::store::Store::new("/nonexistent")),
                channels: Vec::new(),
                token: None,
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
            }),
            metrics: Default::default(),
        };
        let m3u = playlist_m3u(&state, "[::1]:8080");
        assert_eq!(
            m3u,
            "#EXTM3U\n#EXTINF:-1 tvg-id=\"news\" tvg-name=\"News 'HD', 新闻\" tvg-chno=\"1\" group-title=\"Demo\",News 'HD'  新闻\nhttp://[::1]:8080/channels/news.ts\n"
        );
    }
}
