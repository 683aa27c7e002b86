//! HLS on connections without TLS, answered without hyper so that a segment goes out with
//! `sendfile(2)` from its file on disk, as nginx sends it: a player's keep-alive connection
//! asks for playlists and segments in turn, and each is answered here while its requests are
//! plain `GET`s (or `HEAD`s) under `/hls/`. A segment the archive holds as it is served
//! (clear with no keys, or stored encrypted) is sent from the file; anything else under
//! `/hls/` (playlists, segments encrypted on the way out) is `crate::output::hls`'s answer,
//! made on the blocking pool as hyper's side makes it. The first request that is not such
//! (a key, which needs a token; one with a body, a `Range`, an `Expect` or an `Upgrade`;
//! another path; a head hyper would refuse) goes to hyper with the bytes already read, and
//! the connection stays hyper's.
//!
//! The listener's bounds hold as for hyper (`super::watch`): a connection is busy from a
//! whole head until its answer is sent; between requests the next head must come within
//! `http.header_timeout`, and a client to which nothing could be sent for
//! `http.idle_timeout` is closed.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use hyper::StatusCode;
use tokio::io::AsyncReadExt;

use super::live::{find, head_end, send_file, write, Rewind};
use super::{Busy, Clock, Conn, HttpState, Plane};
use crate::archive::Archives;
use crate::output::hls;

/// A request answered here.
#[derive(Debug, PartialEq, Eq)]
struct Ask {
    head_only: bool,
    http10: bool,
    /// The client asked to close after it (`Connection: close`, or HTTP/1.0).
    close: bool,
    path: String,
    query: Option<String>,
}

/// What the head at the start of `buf` is: `Some(Ok((ask, end)))` a request answered here
/// (its head `end` bytes long), `Some(Err(()))` hyper's, `None` more is needed to tell.
fn request(buf: &[u8], plane: Plane) -> Option<Result<(Ask, usize), ()>> {
    let ask = |line: &[u8]| -> Option<Ask> {
        let line = std::str::from_utf8(line).ok()?;
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        let http10 = match version {
            "HTTP/1.0" => true,
            "HTTP/1.1" => false,
            _ => return None,
        };
        // Visible ASCII only, as a URI is; hyper answers anything else.
        if parts.next().is_some() || !target.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        if !path.starts_with("/hls/") || hls::is_key(path) || plane.refuses(path).is_some() {
            return None;
        }
        Some(Ask {
            head_only,
            http10,
            close: http10,
            path: path.to_owned(),
            query,
        })
    };
    let Some(line_end) = find(buf, b"\r\n") else {
        return (buf.len() > super::MAX_HEAD).then_some(Err(()));
    };
    let Some(mut ask) = ask(&buf[..line_end]) else {
        return Some(Err(()));
    };
    let end = match head_end(buf)? {
        Ok(end) => end,
        Err(()) => return Some(Err(())),
    };
    let fields = std::str::from_utf8(&buf[line_end + 2..end - 2]).ok();
    for field in fields.into_iter().flat_map(|f| f.split("\r\n")) {
        let Some((name, value)) = field.split_once(':') else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" | "transfer-encoding" | "range" | "expect" | "upgrade" => {
                return Some(Err(()))
            }
            "connection"
                if value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close")) =>
            {
                ask.close = true;
            }
            _ => {}
        }
    }
    if fields.is_none() {
        return Some(Err(()));
    }
    Some(Ok((ask, end)))
}

/// What a request gets.
enum Answer {
    /// A segment's file as stored, and its length.
    File(std::fs::File, u64),
    Reply(hls::Reply),
}

/// The answer to `path` and `query`: a segment served as stored is its open file.
fn answer(archives: Option<&Archives>, path: &str, query: Option<&str>) -> Answer {
    if let Some(file) = stored_segment(archives, path) {
        return Answer::File(file.0, file.1);
    }
    Answer::Reply(
        hls::handle(archives, path, query).unwrap_or_else(|| hls::Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain; charset=utf-8",
            cache: "no-cache",
            body: Bytes::from_static(b"not found\n"),
        }),
    )
}

/// `/hls/{channel}/{seq}.ts` when the archive holds it as it is served: its open file.
fn stored_segment(archives: Option<&Archives>, path: &str) -> Option<(std::fs::File, u64)> {
    let (channel, file) = path.strip_prefix("/hls/")?.split_once('/')?;
    let seq = file.strip_suffix(".ts")?.parse::<u64>().ok()?;
    let archive = archives?.get(channel)?;
    let seg = archive.index.read().ok()?.get(seq)?;
    if seg.key.is_none() && archive.hls_key.is_some() {
        // Encrypted on the way out: hls::handle's.
        return None;
    }
    let f = std::fs::File::open(archive.path(&seg)).ok()?;
    let len = f.metadata().ok()?.len();
    Some((f, len))
}

/// Serves the `/hls/` requests of a connection (`io`: its socket, with what was read of it)
/// until it closes (`None`) or asks for something else (`Some`: hyper's, with the bytes
/// read).
pub(super) async fn serve(
    io: Rewind,
    state: &Arc<HttpState>,
    plane: Plane,
    conn: &Arc<Conn>,
    clock: Clock,
) -> Option<Rewind> {
    let (read, mut socket) = io.into_parts();
    let mut buf = BytesMut::from(&read[..]);
    loop {
        let (ask, end) = loop {
            match request(&buf, plane) {
                Some(Ok(r)) => break r,
                Some(Err(())) => return Some(Rewind::new(buf.freeze(), socket)),
                None => {}
            }
            match socket.read_buf(&mut buf).await {
                Ok(n) if n > 0 => conn.last_io.store(clock.ms(), Ordering::Relaxed),
                // The end, or an error: hyper meets it too.
                _ => return Some(Rewind::new(buf.freeze(), socket)),
            }
        };
        buf.advance(end);
        let busy = Busy::start(conn.clone(), clock);
        let archives = state.api.archives.clone();
        let (path, query) = (ask.path.clone(), ask.query.clone());
        let answer = tokio::task::spawn_blocking(move || {
            answer(archives.as_deref(), &path, query.as_deref())
        })
        .await;
        let Ok(answer) = answer else {
            // The answer panicked: hyper's side would have answered 500; the connection goes.
            return None;
        };
        if send(&socket, &ask, answer, conn, clock).await.is_err() || ask.close {
            return None;
        }
        drop(busy);
    }
}

/// Sends `answer` to `ask`.
async fn send(
    socket: &tokio::net::TcpStream,
    ask: &Ask,
    answer: Answer,
    conn: &Conn,
    clock: Clock,
) -> io::Result<()> {
    let (status, content_type, cache, len) = match &answer {
        Answer::File(_, len) => (
            StatusCode::OK,
            "video/mp2t",
            "max-age=86400, immutable",
            *len,
        ),
        Answer::Reply(r) => (r.status, r.content_type, r.cache, r.body.len() as u64),
    };
    let head = format!(
        "HTTP/1.{} {} {}\r\ncontent-type: {content_type}\r\ncontent-length: {len}\r\n\
         cache-control: {cache}\r\naccess-control-allow-origin: *\r\n{}date: {}\r\n\r\n",
        if ask.http10 { 0 } else { 1 },
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        if ask.close && !ask.http10 {
            "connection: close\r\n"
        } else {
            ""
        },
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
    );
    let mut out = Bytes::from(head);
    if !ask.head_only {
        if let Answer::Reply(r) = &answer {
            out = [out, r.body.clone()].concat().into();
        }
    }
    while !out.is_empty() {
        let n = write(socket, &out, conn, clock).await?;
        out.advance(n);
    }
    let Answer::File(file, len) = answer else {
        return Ok(());
    };
    if ask.head_only {
        return Ok(());
    }
    let mut at = 0;
    while at < len {
        let want = usize::try_from(len - at).unwrap_or(usize::MAX).min(1 << 30);
        match send_file(socket, &file, at, want) {
            Ok(n) => {
                conn.last_io.store(clock.ms(), Ordering::Relaxed);
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(head: &str) -> Option<Result<(Ask, usize), ()>> {
        request(head.as_bytes(), Plane::All)
    }

    #[test]
    fn plain_hls_requests_are_told_from_the_rest() {
        let head = "GET /hls/news/12.ts HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        let (a, end) = ask(head).unwrap().unwrap();
        assert_eq!(end, head.find("GET /next").unwrap());
        assert_eq!(
            a,
            Ask {
                head_only: false,
                http10: false,
                close: false,
                path: "/hls/news/12.ts".into(),
                query: None
            }
        );
        let (a, _) = ask("HEAD /hls/news/live.m3u8?window=2h HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(a.head_only && a.http10 && a.close);
        assert_eq!(a.query.as_deref(), Some("window=2h"));
        let (a, _) = ask("GET /hls/n/1.ts HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(a.close);
        // More is needed.
        assert!(ask("GET /hls/news/1.ts HTTP/1.1\r\nHost: a\r\n").is_none());
        assert!(ask("GET /hls/ne").is_none());
        // Hyper's.
        for other in [
            "GET /hls/news/key/5 HTTP/1.1\r\n\r\n",
            "GET /channels/news.ts HTTP/1.1\r\n\r\n",
            "POST /hls/news/1.ts HTTP/1.1\r\n\r\n",
            "OPTIONS /hls/news/live.m3u8 HTTP/1.1\r\n\r\n",
            "GET /hls/news/1.ts HTTP/1.1\r\nRange: bytes=0-99\r\n\r\n",
            "GET /hls/news/1.ts HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /hls/news/1.ts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /hls/news/1.ts HTTP/2.0\r\n\r\n",
            "GET /hls/news/1.ts HTTP/1.1\r\nbad line\r\n\r\n",
            "GET /hls/nëws/1.ts HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(ask(other), Some(Err(())), "{other}");
        }
        assert_eq!(
            request(b"GET /hls/news/1.ts HTTP/1.1\r\n\r\n", Plane::Management),
            Some(Err(()))
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, the head is told (or more is asked for), never a panic;
        /// a request answered here ends inside what was read.
        #[test]
        fn any_bytes_are_told_without_a_panic(
            cut in 0usize..80,
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        ) {
            let valid = b"GET /hls/news/12.ts?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
            let mut head = valid[..cut.min(valid.len())].to_vec();
            head.extend_from_slice(&noise);
            if let Some(Ok((_, end))) = request(&head, Plane::All) {
                proptest::prop_assert!(end <= head.len());
            }
            let _ = request(&noise, Plane::Streaming);
        }
    }
}
