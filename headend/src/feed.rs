//! A channel's output as HTTP clients get it.
//!
//! The engine thread appends each chunk of whole TS packets to the feed's store: files in
//! memory ([`files`]: on a private tmpfs with huge pages, else memory files) in a row,
//! [`SEGMENT_BYTES`] each, holding the last [`RETAIN_BYTES`] of output while the channel has
//! clients (only what the next client would start on while it has none). Every client reads
//! the same files from its own offset ([`Cursor`]): a plain HTTP client is sent its part
//! with `sendfile(2)` (`crate::output::live`), without a copy, the way nginx sends a file.
//!
//! The store notes each random access point (its offset, the PAT/PMT to send before it and when
//! it was written), so a new client starts on one at once, and a client that falls behind the
//! store skips ahead (counted in [`FeedStats::skips`]).
//!
//! Clients are woken together, once per [`BATCH`] of output, so each sends one larger piece
//! instead of every chunk: fewer system calls and wake-ups (a second's worth per call, as
//! nginx's `limit_rate` sends a file). A client must then have a batch of output in hand
//! between two wake-ups, and a player that starts as soon as it can decode (ffplay) has not:
//! so a new client starts on the latest random access point at least [`HEAD_START`] old and
//! gets everything from there to the newest chunk at once. It can play at once and does not
//! run dry while the output comes in time; it plays that much (and up to a GOP) behind the
//! newest output.
//!
//! A byte once written to the store is never changed: `sendfile` queues references to a file's
//! pages in the socket, not copies, and they may still be queued after the file has left the
//! store (the kernel frees the pages once sent).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

mod files;

pub(crate) use files::prepare as prepare_files;

/// Output kept while the channel has clients: a client further behind skips ahead (16 s at
/// 8 Mbit/s).
const RETAIN_BYTES: u64 = 16 << 20;
/// One memory file of the store; a client's `sendfile` stops at its end, so each file's end
/// costs every client one more call (8 MiB: one batch in 16 at 8 Mbit/s; with 2 MiB, one in
/// 4, the server needed about a fifth more CPU per Gbit/s on one channel: BENCHMARKS.md §5.1.2).
const SEGMENT_BYTES: u64 = 8 << 20;
/// A file of the store while the channel has no client (it keeps a batch and a GOP).
const IDLE_SEGMENT_BYTES: u64 = 2 << 20;
/// Clients are woken at most this often (the output that comes in between is sent at the
/// next). A second: half the `sendfile` calls of 500 ms, and a seventh to a quarter less CPU
/// per Gbit/s (BENCHMARKS.md §5.1.3); a client starts this far behind the newest output.
pub(crate) const BATCH: Duration = Duration::from_secs(1);
/// How old a new client's random access point is at least: a batch, and the time between two
/// chunks (40 ms) and more, as clients are woken at the first chunk a batch after the last
/// wake-up.
const HEAD_START: Duration = Duration::from_millis(1100);

/// A piece of the output: whole TS packets.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) data: Bytes,
    /// A random access point in `data`: its byte offset, and the PAT/PMT to send before it.
    pub(crate) rap: Option<(usize, Bytes)>,
}

/// Counters of a feed.
#[derive(Debug, Default)]
pub(crate) struct FeedStats {
    pub(crate) clients: AtomicU64,
    pub(crate) clients_total: AtomicU64,
    /// Times a client fell behind and skipped ahead.
    pub(crate) skips: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
}

/// One channel's HTTP feed.
pub(crate) struct Feed {
    store: Mutex<Store>,
    /// What clients may send: bumped once per [`BATCH`] (and at the end).
    ready: watch::Sender<Ready>,
    retain_bytes: u64,
    segment_bytes: u64,
    pub(crate) stats: FeedStats,
}

/// One memory file of a feed's store.
pub(crate) struct Segment {
    /// The file; read at offsets only (`sendfile`, `pread`), so its position does not matter.
    pub(crate) file: File,
    /// The stream offset of its first byte.
    start: u64,
    /// How many bytes it takes (the last write may go past).
    size: u64,
}

/// How far clients may send, as last announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Stream offset: everything before it is in the store.
    end: u64,
    /// The feed is closed: `end` is the end of the stream.
    closed: bool,
}

/// A random access point in the store.
struct Rap {
    /// Its stream offset.
    offset: u64,
    /// PAT and PMT, sent before it.
    psi: Bytes,
    /// When it was published.
    at: Instant,
}

struct Store {
    /// In stream order; the last is the one written to.
    segments: VecDeque<Arc<Segment>>,
    /// Random access points within the segments, oldest first.
    raps: VecDeque<Rap>,
    /// Stream offset of the end of what was written.
    end: u64,
    /// When the newest chunk was published.
    newest: Option<Instant>,
    /// When clients were last woken.
    woken: Option<Instant>,
    closed: bool,
    /// The memory files failed (reported once until they work again).
    failing: bool,
}

impl Store {
    /// Where a new client starts, or one that fell behind: the latest random access point
    /// published at least [`HEAD_START`] before the newest chunk, so that it has a batch to
    /// play before the next comes; the oldest kept when none is that old (a channel just
    /// started).
    fn start(&self) -> Option<&Rap> {
        let newest = self.newest?;
        self.raps
            .iter()
            .rev()
            .find(|r| newest.saturating_duration_since(r.at) >= HEAD_START)
            .or(self.raps.front())
    }
}

impl Feed {
    /// A feed for a channel of `muxrate_bps`: it keeps [`RETAIN_BYTES`] or 6 s of output,
    /// whichever is more, so a client that started a head start and a GOP (up to 4 s) behind
    /// and is woken once per [`BATCH`] is never behind the store at its wake-up (at
    /// 500 Mbit/s, 16 MiB is 270 ms: every client skipped ahead at every batch and got
    /// nothing).
    pub(crate) fn for_rate(muxrate_bps: u64) -> Arc<Feed> {
        let retain = RETAIN_BYTES.max(muxrate_bps / 8 * 6);
        Feed::sized(retain, SEGMENT_BYTES.max(retain / 5))
    }

    /// A feed keeping `retain_bytes` in memory files of `segment_bytes` (tests: small ones).
    pub(crate) fn sized(retain_bytes: u64, segment_bytes: u64) -> Arc<Feed> {
        Arc::new(Feed {
            store: Mutex::new(Store {
                segments: VecDeque::new(),
                raps: VecDeque::new(),
                end: 0,
                newest: None,
                woken: None,
                closed: false,
                failing: false,
            }),
            ready: watch::Sender::new(Ready::default()),
            retain_bytes,
            segment_bytes,
            stats: FeedStats::default(),
        })
    }

    /// Publishes the next chunk of output (the engine thread).
    pub(crate) fn publish(&self, chunk: Chunk) {
        self.publish_at(chunk, Instant::now());
    }

    /// [`Feed::publish`] at `now`.
    pub(crate) fn publish_at(&self, chunk: Chunk, now: Instant) {
        let wake = {
            let mut s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            if s.closed {
                return;
            }
            self.append(&mut s, chunk, now);
            let due = s.woken.is_none_or(|t| now.duration_since(t) >= BATCH);
            if due {
                s.woken = Some(now);
            }
            due.then_some(s.end)
        };
        // One writer (the engine thread): announced in order, outside the lock.
        if let Some(end) = wake {
            self.ready.send_replace(Ready { end, closed: false });
        }
    }

    /// Ends the stream for every client (shutdown): what was published is still sent.
    pub(crate) fn close(&self) {
        let end = {
            let mut s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            s.closed = true;
            s.end
        };
        self.ready.send_replace(Ready { end, closed: true });
    }

    /// A new client, starting at a random access point a batch old ([`Store::start`]; before
    /// the first, at the next one). `None` once the feed is closed.
    pub(crate) fn subscribe(self: &Arc<Feed>) -> Option<Cursor> {
        let s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if s.closed {
            return None;
        }
        self.stats.clients.fetch_add(1, Ordering::Relaxed);
        self.stats.clients_total.fetch_add(1, Ordering::Relaxed);
        Some(Cursor {
            feed: self.clone(),
            pos: None,
            psi: Bytes::new(),
            floor: s.end,
            ready: self.ready.subscribe(),
        })
    }

    /// Appends `chunk` to the store and drops what is no longer kept.
    fn append(&self, s: &mut Store, chunk: Chunk, now: Instant) {
        let start = s.end;
        let len = chunk.data.len() as u64;
        match self.write(s, &chunk.data) {
            Ok(()) => {
                if s.failing {
                    s.failing = false;
                    tracing::info!("http feed: memory files work again");
                }
            }
            Err(e) => {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    // The private tmpfs is full (half the memory): memory files from now on.
                    files::full();
                }
                if !s.failing {
                    s.failing = true;
                    tracing::warn!(error = %e, "http feed: cannot write a memory file; clients skip to the next random access point");
                }
                // A gap: every client is now behind the store and skips ahead.
                s.segments.clear();
                s.raps.clear();
                s.end = start + len;
                return;
            }
        }
        s.end = start + len;
        s.newest = Some(now);
        if let Some((offset, psi)) = chunk.rap {
            s.raps.push_back(Rap {
                offset: start + offset as u64,
                psi,
                at: now,
            });
        }
        // Kept: the last `retain_bytes` while there are clients; with none, from where the
        // next client would start on, as long as that is within `retain_bytes` too.
        let mut keep_from = s.end.saturating_sub(self.retain_bytes);
        if self.stats.clients.load(Ordering::Relaxed) == 0 {
            keep_from = keep_from.max(s.start().map_or(s.end, |r| r.offset));
        }
        while s.segments.len() > 1 && s.segments[1].start <= keep_from {
            s.segments.pop_front();
        }
        let oldest = s.segments.front().map_or(s.end, |seg| seg.start);
        while s.raps.front().is_some_and(|r| r.offset < oldest) {
            s.raps.pop_front();
        }
    }

    /// Writes `data` at the end of the store, in a new segment if the last one is full.
    fn write(&self, s: &mut Store, data: &[u8]) -> std::io::Result<()> {
        // With no client only what the next client would start on is kept, in small files
        // (the whole file holding it stays in memory): large ones only while clients read them.
        let clients = self.stats.clients.load(Ordering::Relaxed) > 0;
        let size = if clients {
            self.segment_bytes
        } else {
            self.segment_bytes.min(IDLE_SEGMENT_BYTES)
        };
        // A file keeps the size (and the kind of pages) it was made with when the first client
        // comes or the last goes.
        let full = s
            .segments
            .back()
            .is_none_or(|seg| s.end - seg.start >= seg.size);
        if full {
            s.segments.push_back(Arc::new(Segment {
                file: files::create(clients)?,
                start: s.end,
                size,
            }));
        }
        let seg = s
            .segments
            .back()
            .expect("a segment was just made if there was none");
        (&seg.file).write_all(data)
    }
}

/// One client's place in a feed; counted in [`FeedStats::clients`] while it lives.
pub(crate) struct Cursor {
    feed: Arc<Feed>,
    /// The next stream byte to send; `None` while waiting for a random access point (a new
    /// client before the first one, or one that fell behind).
    pos: Option<u64>,
    /// PAT and PMT still to send before `pos`.
    psi: Bytes,
    /// Sent up to here without waiting for the next batch: the end of the store when the
    /// client joined or skipped ahead.
    floor: u64,
    ready: watch::Receiver<Ready>,
}

/// What a client sends next.
pub(crate) enum Next {
    /// These table bytes; then [`Cursor::psi_sent`].
    Psi(Bytes),
    /// `len` bytes of `segment`'s file from file offset `offset`; then [`Cursor::sent`].
    Data {
        segment: Arc<Segment>,
        offset: u64,
        len: usize,
    },
    /// Nothing until the next batch: [`Cursor::changed`].
    Wait,
    /// The feed is closed and everything was sent.
    End,
}

impl Cursor {
    /// What to send now.
    pub(crate) fn next(&mut self) -> Next {
        if !self.psi.is_empty() {
            return Next::Psi(self.psi.clone());
        }
        let ready = *self.ready.borrow_and_update();
        let s = self
            .feed
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let oldest = s.segments.front().map_or(s.end, |seg| seg.start);
        if self.pos.is_some_and(|p| p < oldest) {
            self.pos = None;
            self.feed.stats.skips.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                behind = s.end - oldest,
                "http client fell behind: skipping ahead to a random access point"
            );
        }
        let pos = match self.pos {
            Some(p) => p,
            None => match s.start() {
                Some(rap) => {
                    self.pos = Some(rap.offset);
                    self.floor = s.end;
                    self.psi = rap.psi.clone();
                    return Next::Psi(self.psi.clone());
                }
                None if ready.closed => return Next::End,
                None => return Next::Wait,
            },
        };
        let limit = ready.end.max(self.floor).min(s.end);
        if pos >= limit {
            return if ready.closed && pos >= s.end {
                Next::End
            } else {
                Next::Wait
            };
        }
        // The segment holding `pos` (`oldest <= pos < s.end`, so there is one).
        let i = s.segments.partition_point(|seg| seg.start <= pos) - 1;
        let segment = s.segments[i].clone();
        let segment_end = s.segments.get(i + 1).map_or(s.end, |seg| seg.start);
        Next::Data {
            offset: pos - segment.start,
            len: (limit.min(segment_end) - pos) as usize,
            segment,
        }
    }

    /// `n` bytes of [`Next::Psi`] were sent.
    pub(crate) fn psi_sent(&mut self, n: usize) {
        self.psi = self.psi.slice(n.min(self.psi.len())..);
        self.feed
            .stats
            .bytes_sent
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` bytes of [`Next::Data`] were sent.
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(p) = &mut self.pos {
            *p += n as u64;
        }
        self.feed
            .stats
            .bytes_sent
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Waits for the next batch (after [`Next::Wait`]).
    pub(crate) async fn changed(&mut self) {
        // The sender lives in the feed, which this cursor holds: it never goes away.
        let _ = self.ready.changed().await;
    }

    /// A receiver that sees each batch, for a body polled by hand (`Body::Live`).
    pub(crate) fn batches(&self) -> tokio_stream::wrappers::WatchStream<Ready> {
        tokio_stream::wrappers::WatchStream::from_changes(self.ready.clone())
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.feed.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    fn chunk(data: &'static [u8], rap: Option<usize>) -> Chunk {
        Chunk {
            data: Bytes::from_static(data),
            rap: rap.map(|o| (o, Bytes::from_static(b"PSI"))),
        }
    }

    /// Everything `cursor` may send now, as one string (`|` after each piece of tables).
    pub(crate) fn drain(cursor: &mut Cursor) -> String {
        let mut out = Vec::new();
        loop {
            match cursor.next() {
                Next::Psi(b) => {
                    out.extend_from_slice(&b);
                    out.push(b'|');
                    cursor.psi_sent(b.len());
                }
                Next::Data {
                    segment,
                    offset,
                    len,
                } => {
                    let mut buf = vec![0; len];
                    segment.file.read_exact_at(&mut buf, offset).unwrap();
                    out.extend_from_slice(&buf);
                    cursor.sent(len);
                }
                Next::Wait | Next::End => return String::from_utf8(out).unwrap(),
            }
        }
    }

    /// A new client starts on the latest random access point a batch old (the oldest while
    /// none is), gets everything from there at once, then each batch.
    #[test]
    fn new_clients_start_a_batch_behind_then_get_each_batch() {
        let feed = Feed::sized(1 << 20, 8);
        let t0 = Instant::now();
        let at = |n: u32| t0 + BATCH * n;
        feed.publish_at(chunk(b"before", None), at(0));
        let mut early = feed.subscribe().unwrap();
        assert_eq!(drain(&mut early), "", "no random access point yet");
        feed.publish_at(chunk(b"xxRAP1", Some(2)), at(1));
        feed.publish_at(chunk(b"more", None), at(2));
        assert_eq!(drain(&mut early), "PSI|RAP1more");
        let mut c = feed.subscribe().unwrap();
        assert_eq!(drain(&mut c), "PSI|RAP1more");
        // Within the batch: not yet sent to those already there; all of it to a new client.
        feed.publish_at(chunk(b"live", None), at(2) + BATCH / 2);
        assert_eq!(drain(&mut c), "");
        assert_eq!(drain(&mut feed.subscribe().unwrap()), "PSI|RAP1morelive");
        feed.publish_at(chunk(b"RAP2", Some(0)), at(3));
        assert_eq!(drain(&mut c), "liveRAP2");
        // RAP2 is not a batch old yet: RAP1 is.
        assert_eq!(
            drain(&mut feed.subscribe().unwrap()),
            "PSI|RAP1moreliveRAP2"
        );
        feed.publish_at(chunk(b"RAP3", Some(0)), at(3) + BATCH / 2);
        // RAP2 is 1.2 s old, RAP3 0.7 s.
        feed.publish_at(chunk(b"x", None), at(4) + BATCH / 5);
        assert_eq!(drain(&mut c), "RAP3x");
        assert_eq!(drain(&mut feed.subscribe().unwrap()), "PSI|RAP2RAP3x");
        assert_eq!(feed.stats.clients.load(Ordering::Relaxed), 2);
        feed.close();
        assert!(feed.subscribe().is_none());
        feed.publish_at(chunk(b"after", None), at(5));
        assert_eq!(
            drain(&mut c),
            "",
            "what was sent is delivered, nothing after"
        );
        assert!(matches!(c.next(), Next::End));
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 0);
    }

    /// A client that falls behind what is kept skips ahead to a random access point, or
    /// waits for the next one, and is counted; with no client, only what the next client
    /// would start on is kept.
    #[test]
    fn a_lagging_client_skips_ahead_and_the_store_is_bounded() {
        let feed = Feed::sized(32, 8);
        let t0 = Instant::now();
        let mut n = 0;
        let mut publish = |c: Chunk| {
            n += 1;
            feed.publish_at(c, t0 + BATCH * n);
        };
        publish(chunk(b"..RAP", Some(2)));
        let mut c = feed.subscribe().unwrap();
        publish(chunk(b"next", None));
        assert_eq!(drain(&mut c), "PSI|RAPnext");
        for _ in 0..30 {
            publish(chunk(b"old", None));
        }
        assert_eq!(drain(&mut c), "", "waits for a random access point");
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 1);
        publish(chunk(b"more", None));
        publish(chunk(b"xxxRAP2", Some(3)));
        publish(chunk(b"live", None));
        assert_eq!(drain(&mut c), "PSI|RAP2live");
        for _ in 0..30 {
            publish(chunk(b"old", None));
        }
        publish(chunk(b"RAP3", Some(0)));
        assert_eq!(drain(&mut c), "PSI|RAP3", "skips to the latest");
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 2);
        let kept = |feed: &Feed| {
            let s = feed.store.lock().unwrap();
            s.end - s.segments.front().unwrap().start
        };
        assert!(kept(&feed) <= 32 + 16, "{}", kept(&feed));
        drop(c);
        for _ in 0..10 {
            publish(chunk(b"gop", None));
        }
        publish(chunk(b"RAP4", Some(0)));
        publish(chunk(b"x", None));
        publish(chunk(b"y", None));
        assert!(
            kept(&feed) <= 16,
            "no client: what the next client starts on only; {}",
            kept(&feed)
        );
        assert_eq!(drain(&mut feed.subscribe().unwrap()), "PSI|RAP4xy");
        // Random access points every half batch: the one a batch old and what follows.
        for _ in 0..4 {
            n += 1;
            feed.publish_at(chunk(b"RAP", Some(0)), t0 + BATCH * n);
            feed.publish_at(chunk(b"y", None), t0 + BATCH * n + BATCH / 2);
        }
        assert!(kept(&feed) <= 8 + 8, "{}", kept(&feed));
        assert_eq!(drain(&mut feed.subscribe().unwrap()), "PSI|RAPyRAPy");
    }

    /// At 500 Mbit/s a batch (1 s) is 62 MB, more than the 16 MiB a feed keeps at lower
    /// rates: the store keeps 6 s of such a channel, and a client woken per batch gets every
    /// byte without skipping (it got nothing: behind the store at every wake-up).
    #[test]
    fn a_fast_channel_keeps_a_batch_and_more() {
        let rate = 500_000_000;
        let feed = Feed::for_rate(rate);
        let t0 = Instant::now();
        let chunk_ms = 40;
        let piece = vec![0u8; (rate / 8 * chunk_ms / 1000) as usize];
        let data = Bytes::from(piece);
        feed.publish_at(
            Chunk {
                data: data.clone(),
                rap: Some((0, Bytes::from_static(b"PSI"))),
            },
            t0,
        );
        let mut c = feed.subscribe().unwrap();
        let mut got = drain(&mut c).len();
        for k in 1..=30u32 {
            let at = t0 + Duration::from_millis(u64::from(k) * chunk_ms);
            feed.publish_at(
                Chunk {
                    data: data.clone(),
                    rap: None,
                },
                at,
            );
            got += drain(&mut c).len();
        }
        assert_eq!(feed.stats.skips.load(Ordering::Relaxed), 0);
        // Everything up to the last batch's wake-up (at least 25 of the 31 chunks).
        assert!(got >= 25 * data.len(), "{got}");
    }
}
