//! Channel streams sent with `sendfile(2)`, the way nginx sends a file: the first request on
//! a connection without TLS is read here, and if it is `GET /channels/{id}.ts` for a channel
//! this listener serves, it is answered here, without hyper: the response head, then the
//! channel from the feed's memory files (`crate::feed`), without a copy, until the client goes
//! or the feed closes. The body ends with the connection (HTTP/1.1 with `Connection: close`,
//! no chunked encoding). Any other request, and one that does not look right, goes to hyper
//! with the bytes already read ([`Rewind`]), which answers it as before.
//!
//! The listener's bounds hold as for hyper (`super::watch`): the head within
//! `http.header_timeout` and [`MAX_HEAD`] bytes, a client to which nothing could be sent for
//! `http.idle_timeout` is closed, and a connection is busy (never closed to make room) from
//! its whole head on.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::{Busy, Clock, Conn, HttpState, Plane, MAX_HEAD, MAX_HEADERS};
use crate::feed::{Cursor, Next};

/// A connection's first request, as far as read.
pub(super) enum First {
    /// A channel's stream, to be sent from here.
    Stream(Stream),
    /// Anything else: hyper's, with what was read.
    Other(Rewind),
}

/// A client of a channel's stream on a plain connection.
pub(super) struct Stream {
    socket: TcpStream,
    cursor: Cursor,
    /// The request was HTTP/1.0 (so is the answer).
    http10: bool,
}

/// Reads `socket` until its first request's head is whole, or is known not to be for a
/// stream served here.
pub(super) async fn first_request(
    mut socket: TcpStream,
    state: &HttpState,
    plane: Plane,
    conn: &Conn,
    clock: Clock,
) -> First {
    let mut head = BytesMut::with_capacity(1024);
    loop {
        let channel = |id: &str| state.channels.iter().position(|c| c.id == id);
        match stream_request(&head, plane, channel) {
            Some(Verdict::Stream { http10, channel }) => {
                if let Some(cursor) = state.channels[channel].feed.subscribe() {
                    return First::Stream(Stream {
                        socket,
                        cursor,
                        http10,
                    });
                }
                // Shutting down: hyper says so.
                break;
            }
            Some(Verdict::Other) => break,
            None => {}
        }
        match socket.read_buf(&mut head).await {
            Ok(n) if n > 0 => conn.last_io.store(clock.ms(), Ordering::Relaxed),
            // The end, or an error: hyper meets it too.
            _ => break,
        }
    }
    First::Other(Rewind {
        read: head.freeze(),
        inner: socket,
    })
}

/// What a request head (so far) is.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A whole head: `GET /channels/{id}.ts`, for `channels[channel]`.
    Stream {
        http10: bool,
        channel: usize,
    },
    Other,
}

/// What `head` is, `channel` giving a channel's index by its id; `None`: more is needed to
/// tell.
fn stream_request(
    head: &[u8],
    plane: Plane,
    channel: impl Fn(&str) -> Option<usize>,
) -> Option<Verdict> {
    let Some(line_end) = find(head, b"\r\n") else {
        return (head.len() > MAX_HEAD).then_some(Verdict::Other);
    };
    let Some((http10, channel)) = request_line(&head[..line_end], plane, channel) else {
        return Some(Verdict::Other);
    };
    match head_end(head)? {
        Ok(_) => Some(Verdict::Stream { http10, channel }),
        Err(()) => Some(Verdict::Other),
    }
}

/// Whether `head` holds a whole request head whose header lines are as hyper would take
/// them (else hyper answers it: 400, 431): `Ok(end)` (where the head ends, after its blank
/// line), `Err(())` when not, `None` when more is needed to tell.
pub(super) fn head_end(head: &[u8]) -> Option<Result<usize, ()>> {
    let Some(line_end) = find(head, b"\r\n") else {
        return (head.len() > MAX_HEAD).then_some(Err(()));
    };
    let Some(end) = find(head, b"\r\n\r\n") else {
        return (head.len() > MAX_HEAD).then_some(Err(()));
    };
    if end + 4 > MAX_HEAD {
        return Some(Err(()));
    }
    // (`end == line_end`: no header lines at all.)
    let fields = head.get(line_end + 2..end).unwrap_or_default();
    let lines = if fields.is_empty() {
        0
    } else {
        fields.split(|b| *b == b'\n').count()
    };
    let well_formed = fields.is_empty()
        || fields.split(|b| *b == b'\n').all(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l.iter().position(|b| *b == b':').is_some_and(|c| {
                c > 0
                    && !l[..c]
                        .iter()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            }) && !l.contains(&b'\r')
        });
    if lines > MAX_HEADERS || !well_formed {
        return Some(Err(()));
    }
    Some(Ok(end + 4))
}

/// `GET /channels/{id}.ts HTTP/1.x` for a channel this listener serves: (HTTP/1.0, the
/// channel's index).
fn request_line(
    line: &[u8],
    plane: Plane,
    channel: impl Fn(&str) -> Option<usize>,
) -> Option<(bool, usize)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method != "GET" || parts.next().is_some() {
        return None;
    }
    let http10 = match version {
        "HTTP/1.0" => true,
        "HTTP/1.1" => false,
        _ => return None,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if plane.refuses(path).is_some() {
        return None;
    }
    let id = path.strip_prefix("/channels/")?.strip_suffix(".ts")?;
    Some((http10, channel(id)?))
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Stream {
    /// Sends the response head, then the channel until the client goes or the feed closes.
    pub(super) async fn send(mut self, conn: &Arc<Conn>, clock: Clock) {
        let _busy = Busy::start(conn.clone(), clock);
        let head = format!(
            "HTTP/1.{} 200 OK\r\ncontent-type: video/mp2t\r\ncache-control: no-cache\r\n{}date: {}\r\n\r\n",
            if self.http10 { 0 } else { 1 },
            if self.http10 { "" } else { "connection: close\r\n" },
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        );
        let mut head = Bytes::from(head);
        while !head.is_empty() {
            match write(&self.socket, &head, conn, clock).await {
                Ok(n) => head.advance(n),
                Err(_) => return,
            }
        }
        loop {
            let sent = match self.cursor.next() {
                Next::Psi(psi) => write(&self.socket, &psi, conn, clock)
                    .await
                    .map(|n| self.cursor.psi_sent(n)),
                Next::Data {
                    segment,
                    offset,
                    len,
                } => match send_file(&self.socket, &segment.file, offset, len) {
                    Ok(n) => {
                        conn.last_io.store(clock.ms(), Ordering::Relaxed);
                        self.cursor.sent(n);
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // The segment is not held while waiting: a client that stops
                        // reading keeps no part of the store alive.
                        drop(segment);
                        self.socket.writable().await
                    }
                    Err(e) => Err(e),
                },
                Next::Wait => {
                    self.cursor.changed().await;
                    Ok(())
                }
                Next::End => return,
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "http stream client gone");
                return;
            }
        }
    }
}

/// Writes some of `buf` once the socket takes it: how much.
pub(super) async fn write(
    socket: &TcpStream,
    buf: &[u8],
    conn: &Conn,
    clock: Clock,
) -> io::Result<usize> {
    loop {
        socket.writable().await?;
        match socket.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.last_io.store(clock.ms(), Ordering::Relaxed);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends up to `len` bytes of `file` from `offset` if the socket takes some now: how much.
pub(super) fn send_file(
    socket: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut at = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    match socket.try_io(Interest::WRITABLE, || {
        nix::sys::sendfile::sendfile(socket, file, Some(&mut at), len).map_err(io::Error::from)
    }) {
        // Only past the file's end, which the feed never asks for.
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        r => r,
    }
}

/// A socket with the bytes already read from it put back in front, for hyper.
pub(super) struct Rewind {
    read: Bytes,
    inner: TcpStream,
}

impl Rewind {
    /// `inner` with `read` (read from it) put back in front.
    pub(super) fn new(read: Bytes, inner: TcpStream) -> Rewind {
        Rewind { read, inner }
    }

    /// What was read and not yet taken, and the socket.
    pub(super) fn into_parts(self) -> (Bytes, TcpStream) {
        (self.read, self.inner)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.read.is_empty() {
            let n = me.read.len().min(buf.remaining());
            buf.put_slice(&me.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str, plane: Plane) -> Option<Verdict> {
        stream_request(head.as_bytes(), plane, |id| (id == "news").then_some(3))
    }

    /// RFC 9112 §3 (request line) and §5 (field lines): only a whole, well-formed
    /// `GET /channels/{id}.ts` head for a known channel is answered here.
    #[test]
    fn stream_requests_are_told_from_the_rest() {
        let stream = |http10| Some(Verdict::Stream { http10, channel: 3 });
        assert_eq!(
            verdict("GET /channels/news.ts HTTP/1.0\r\n\r\n", Plane::All),
            stream(true)
        );
        assert_eq!(
            verdict(
                "GET /channels/news.ts?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: b c\r\n\r\n",
                Plane::Streaming
            ),
            stream(false)
        );
        // More is needed.
        assert_eq!(verdict("", Plane::All), None);
        assert_eq!(verdict("GET /chan", Plane::All), None);
        assert_eq!(
            verdict("GET /channels/news.ts HTTP/1.1\r\nHost: a\r\n", Plane::All),
            None
        );
        // Hyper's.
        let other = Some(Verdict::Other);
        assert_eq!(
            verdict("HEAD /channels/news.ts HTTP/1.1\r\n", Plane::All),
            other
        );
        assert_eq!(
            verdict("GET /channels/nope.ts HTTP/1.1\r\n", Plane::All),
            other
        );
        assert_eq!(verdict("GET /channels HTTP/1.1\r\n", Plane::All), other);
        assert_eq!(
            verdict("GET /channels/news.ts HTTP/2.0\r\n", Plane::All),
            other
        );
        assert_eq!(
            verdict("GET  /channels/news.ts HTTP/1.1\r\n", Plane::All),
            other
        );
        assert_eq!(
            verdict("GET /channels/news.ts HTTP/1.1\r\n", Plane::Management),
            other
        );
        assert_eq!(
            verdict(
                "GET /channels/news.ts HTTP/1.1\r\nno colon\r\n\r\n",
                Plane::All
            ),
            other
        );
        assert_eq!(
            verdict(
                "GET /channels/news.ts HTTP/1.1\r\nBad name: x\r\n\r\n",
                Plane::All
            ),
            other
        );
        let many = "X: y\r\n".repeat(MAX_HEADERS + 1);
        assert_eq!(
            verdict(
                &format!("GET /channels/news.ts HTTP/1.1\r\n{many}\r\n"),
                Plane::All
            ),
            other
        );
        let big = format!(
            "GET /channels/news.ts HTTP/1.1\r\nX: {}",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(verdict(&big, Plane::All), other);
        assert_eq!(verdict(&"a".repeat(MAX_HEAD + 1), Plane::All), other);
    }
}
