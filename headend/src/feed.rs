//! A channel's output as HTTP clients get it: chunks of whole TS packets shared by every
//! client (one `Bytes` each, never copied per client), and the current GOP, so a new client
//! starts at once on a random access point with PAT and PMT first.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::broadcast;

/// Chunks a client may fall behind before it skips ahead to the next random access point.
const BACKLOG_CHUNKS: usize = 256;
/// The GOP kept for new clients is dropped beyond this (a stream without random access
/// points, or a very long GOP); new clients then wait for the next one.
const MAX_GOP_BYTES: usize = 16 << 20;

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
    gop: Mutex<Gop>,
    pub(crate) stats: FeedStats,
}

struct Gop {
    /// PAT/PMT, then the packets from the last random access point on; empty until one.
    parts: Vec<Bytes>,
    bytes: usize,
    /// `None` once the feed is closed: clients see the end of the stream.
    tx: Option<broadcast::Sender<Arc<Chunk>>>,
}

impl Feed {
    pub(crate) fn new() -> Arc<Feed> {
        let (tx, _) = broadcast::channel(BACKLOG_CHUNKS);
        Arc::new(Feed {
            gop: Mutex::new(Gop {
                parts: Vec::new(),
                bytes: 0,
                tx: Some(tx),
            }),
            stats: FeedStats::default(),
        })
    }

    /// Publishes the next chunk of output (the engine thread).
    pub(crate) fn publish(&self, chunk: Chunk) {
        let mut gop = self.gop.lock().unwrap_or_else(PoisonError::into_inner);
        match &chunk.rap {
            Some((offset, psi)) => {
                gop.parts.clear();
                gop.parts.push(psi.clone());
                gop.parts.push(chunk.data.slice(*offset..));
                gop.bytes = psi.len() + chunk.data.len() - offset;
            }
            None if !gop.parts.is_empty() => {
                gop.bytes += chunk.data.len();
                if gop.bytes > MAX_GOP_BYTES {
                    gop.parts.clear();
                    gop.bytes = 0;
                } else {
                    gop.parts.push(chunk.data.clone());
                }
            }
            None => {}
        }
        // Under the lock, so a subscriber gets the GOP and then exactly what follows it.
        if let Some(tx) = gop.tx.as_ref().filter(|tx| tx.receiver_count() > 0) {
            let _ = tx.send(Arc::new(chunk));
        }
    }

    /// Ends the stream for every client (shutdown).
    pub(crate) fn close(&self) {
        self.gop.lock().unwrap_or_else(PoisonError::into_inner).tx = None;
    }

    /// A new client: what to send first (PAT, PMT and the current GOP; empty if there is no
    /// random access point yet), and the live chunks after it.
    /// `None` once the feed is closed.
    pub(crate) fn subscribe(&self) -> Option<(Vec<Bytes>, broadcast::Receiver<Arc<Chunk>>)> {
        let gop = self.gop.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = gop.tx.as_ref()?.subscribe();
        Some((gop.parts.clone(), rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &'static [u8], rap: Option<usize>) -> Chunk {
        Chunk {
            data: Bytes::from_static(data),
            rap: rap.map(|o| (o, Bytes::from_static(b"PSI"))),
        }
    }

    #[test]
    fn new_clients_get_the_gop_then_live_chunks() {
        let feed = Feed::new();
        feed.publish(chunk(b"before", None));
        let (first, _rx) = feed.subscribe().unwrap();
        assert!(first.is_empty(), "no random access point yet");
        feed.publish(chunk(b"xxRAP1", Some(2)));
        feed.publish(chunk(b"more", None));
        let (first, mut rx) = feed.subscribe().unwrap();
        assert_eq!(first, vec![&b"PSI"[..], b"RAP1", b"more"]);
        feed.publish(chunk(b"live", None));
        assert_eq!(&rx.try_recv().unwrap().data[..], b"live");
        feed.publish(chunk(b"RAP2", Some(0)));
        let (first, _) = feed.subscribe().unwrap();
        assert_eq!(first, vec![&b"PSI"[..], b"RAP2"]);
        feed.close();
        assert!(feed.subscribe().is_none());
        assert!(
            rx.blocking_recv().is_ok(),
            "what was sent is still delivered"
        );
    }
}
