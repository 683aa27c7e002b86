//! Channels' rolling archives (`[channel.archive]`): the output as it went on air, recorded
//! as segments cut at random access points, each starting with the PAT and PMT, for
//! time-shift and catch-up over HLS (`output::hls`).
//!
//! The engine hands each archived channel's output to [`Tap::send`] as it publishes it to
//! HTTP clients (the same shared chunks, never copied); that never waits: a full queue drops
//! the chunk, counts it, and the recording resumes at the next random access point with a
//! discontinuity. Up to 8 writer threads share the channels out and record them: `DIR/CHANNEL/YYYYMMDD/SEQ.ts`,
//! written as `SEQ.ts.part`, synced and renamed when the segment ends, then a line in
//! `DIR/CHANNEL/index.jsonl` ([`index`]). Retention (age, bytes) removes the oldest
//! segments from the index first and from the disk after, so a playlist never names a
//! missing file. A restart resumes the index (what a crash left half-written, `.part`, is
//! removed), numbering on. A disk that refuses a write stops the recording of that channel
//! with the `archive` alarm, never playout; it is tried again every 5 s.

pub(crate) mod index;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use playout::ts::PACKET_SIZE;

use crate::alarm::Alarm;
use crate::config::archive::ArchiveConfig;
use index::{Index, Mark, Seg};

/// Pieces waiting for a writer, across its channels; beyond, pieces are dropped (counted).
/// About 4 s of 40 ms pieces for 40 channels: a segment's sync may stall a writer that long on
/// a busy disk.
const QUEUE: usize = 4096;
/// Writer threads at most: channels are shared out among them, so one disk's stall (a
/// segment's sync) holds up only its writer's channels, and syncs overlap.
const WRITERS: usize = 8;
/// A segment with no random access point for this long is ended anyway; the recording then
/// waits for the next one.
const MAX_SEGMENT_NS: i64 = 30_000_000_000;
/// After a failed write, how long before recording is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// A piece of a channel's output: whole TS packets, as the HTTP feed gets them.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    pub(crate) data: Bytes,
    /// A random access point in `data` (byte offset) and the PAT/PMT to put before it.
    pub(crate) rap: Option<(usize, Bytes)>,
    /// UTC (ns) at which the first packet of `data` left.
    pub(crate) utc_ns: i64,
    /// The item that begins at `rap`, if one does: the segment is cut there.
    pub(crate) boundary: Option<crate::station::Boundary>,
}

/// What the HTTP side and the status see of one channel's archive.
pub(crate) struct Shared {
    pub(crate) channel: String,
    /// The channel's directory (`DIR/CHANNEL`).
    pub(crate) dir: PathBuf,
    pub(crate) index: RwLock<Index>,
    /// The target segment length (ns).
    pub(crate) segment_ns: u64,
    /// How long segments are kept (ns).
    pub(crate) keep_ns: u64,
    /// HLS AES-128: the master key and the key period (ns), when segments are served
    /// encrypted.
    pub(crate) hls_key: Option<(drm::hls::MasterKey, u64)>,
    /// New segments are written encrypted (`encrypt_on_disk`).
    encrypt_on_disk: bool,
    /// Pieces dropped because the writer was behind.
    pub(crate) dropped: AtomicU64,
    lost: AtomicBool,
    pub(crate) segments_written: AtomicU64,
    pub(crate) write_errors: AtomicU64,
}

impl Shared {
    /// The key period of segment `seg`: the one it was stored encrypted with, or, served
    /// encrypted, the one its start falls in (keys change every `key_period`, UTC-aligned).
    pub(crate) fn key_period(&self, seg: &Seg) -> Option<u64> {
        if seg.key.is_some() {
            return seg.key;
        }
        let (_, period) = self.hls_key.as_ref()?;
        Some(seg.start_utc_ns.max(0) as u64 / period)
    }

    /// Segment `seg` as HLS serves it (encrypted when keys are configured), read from disk.
    pub(crate) fn read_served(&self, seg: &Seg) -> std::io::Result<Vec<u8>> {
        let data = std::fs::read(self.path(seg))?;
        if seg.key.is_some() {
            return Ok(data);
        }
        Ok(
            match self.key_period(seg).and_then(|p| self.period_key(p)) {
                Some(key) => {
                    drm::hls::encrypt_segment(&key, &playout::hls::default_iv(seg.seq), &data)
                }
                None => data,
            },
        )
    }

    /// Segment `seg` clear, read from disk (decrypted when it was stored encrypted).
    pub(crate) fn read_clear(&self, seg: &Seg) -> std::io::Result<Vec<u8>> {
        let data = std::fs::read(self.path(seg))?;
        let Some(period) = seg.key else {
            return Ok(data);
        };
        let bad = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: stored encrypted: {why}", self.path(seg).display()),
            )
        };
        let key = self
            .period_key(period)
            .ok_or_else(|| bad("no key_file to decrypt it with".to_owned()))?;
        drm::hls::decrypt_segment(&key, &playout::hls::default_iv(seg.seq), &data)
            .map_err(|e| bad(e.to_string()))
    }

    /// The HLS key of key period `period`.
    pub(crate) fn period_key(&self, period: u64) -> Option<[u8; 16]> {
        let (master, _) = self.hls_key.as_ref()?;
        Some(master.period_key(&self.channel, period))
    }

    /// The path of segment `seg`.
    pub(crate) fn path(&self, seg: &Seg) -> PathBuf {
        self.dir.join(seg.file())
    }
}

/// A channel's handle for the engine.
#[derive(Clone)]
pub(crate) struct Tap {
    tx: SyncSender<Msg>,
    channel: usize,
    shared: Arc<Shared>,
}

impl Tap {
    /// Marks what happened on air now (`kind`, what): a failover, inside the segment being
    /// written. Never waits (a full queue drops it).
    pub(crate) fn note(&self, kind: &str, title: String, utc_ns: i64) {
        let mark = Mark {
            mark: kind.to_owned(),
            seq: 0,
            utc_ns,
            event_id: None,
            title,
        };
        let _ = self.tx.try_send(Msg::Note(self.channel, mark));
    }

    /// Hands `piece` to the writer; never waits (a full queue drops it, counted).
    pub(crate) fn send(&self, piece: Piece) {
        match self.tx.try_send(Msg::Piece(self.channel, piece)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.lost.store(true, Ordering::Relaxed);
            }
        }
    }
}

enum Msg {
    Piece(usize, Piece),
    /// Something that happened on air inside the segment being written (a failover).
    Note(usize, Mark),
    Stop(SyncSender<()>),
}

/// Every archived channel, and the writer thread.
pub(crate) struct Archives {
    /// Each writer thread's queue.
    txs: Vec<SyncSender<Msg>>,
    pub(crate) channels: Vec<Arc<Shared>>,
    pub(crate) alarm: Alarm,
}

impl Archives {
    /// Opens each channel's archive (id, config, muxrate in bit/s), resuming what is on disk,
    /// and starts the writer. A directory that cannot be made is an error.
    pub(crate) fn start(channels: &[(String, ArchiveConfig, u64)]) -> anyhow::Result<Archives> {
        let alarm = Alarm::new("archive");
        let writers = channels.len().clamp(1, WRITERS);
        let mut shards: Vec<Vec<Recorder>> = (0..writers).map(|_| Vec::new()).collect();
        let mut shared = Vec::new();
        for (i, (id, cfg, muxrate)) in channels.iter().enumerate() {
            let r = Recorder::open(id, cfg, *muxrate, &alarm)?;
            shared.push(r.shared.clone());
            shards[i % writers].push(r);
        }
        let mut txs = Vec::new();
        for (k, recorders) in shards.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            std::thread::Builder::new()
                .name(format!("archive-{k}"))
                .spawn(move || run(recorders, &rx))?;
            txs.push(tx);
        }
        Ok(Archives {
            txs,
            channels: shared,
            alarm,
        })
    }

    /// The engine's handle on channel `id`'s archive, if it has one.
    pub(crate) fn tap(&self, id: &str) -> Option<Tap> {
        let i = self.channels.iter().position(|s| s.channel == id)?;
        // Channel i is the (i / writers)-th of writer i % writers.
        let writers = self.txs.len();
        Some(Tap {
            tx: self.txs[i % writers].clone(),
            channel: i / writers,
            shared: self.channels[i].clone(),
        })
    }

    /// Channel `id`'s archive.
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<Shared>> {
        self.channels.iter().find(|s| s.channel == id)
    }

    /// Ends the segments being written (what has been recorded stays); waits up to 2 s.
    pub(crate) fn stop(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(self.txs.len());
        let sent = self
            .txs
            .iter()
            .filter(|tx| tx.send(Msg::Stop(done.clone())).is_ok())
            .count();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for _ in 0..sent {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if wait.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

/// The index of the archive in `dir`, as the last run left it: `index.jsonl` (a torn last
/// line ignored), less segments whose file is gone; half-written segments are removed.
fn resume(dir: &Path) -> Index {
    let (lines, _) = crate::jsonl::read(&dir.join("index.jsonl"), "archive index");
    let mut index = Index::from_lines(lines.into_iter().map(|(_, v)| v));
    // A crash leaves at most the segment being written, as `.part`.
    if let Ok(days) = std::fs::read_dir(dir) {
        for day in days.flatten().filter(|d| d.path().is_dir()) {
            for f in std::fs::read_dir(day.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.path().extension().is_some_and(|e| e == "part") {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
    // Segments removed by hand (or by a retention the index line of which was lost) are
    // dropped from the front; the newest must be there.
    while let Some(first) = index.first().copied() {
        if dir.join(first.file()).is_file() {
            break;
        }
        index.pop_front();
    }
    index
}

/// A segment being written.
struct Open {
    file: std::io::BufWriter<File>,
    /// Stored encrypted: its encryptor, and a buffer for the ciphertext.
    enc: Option<(drm::hls::SegmentEncryptor, Vec<u8>)>,
    part: PathBuf,
    seg: Seg,
    /// The item that begins with it, if one does.
    mark: Option<Mark>,
    /// What else happened on air while it was written (failovers).
    notes: Vec<Mark>,
}

/// One channel's recording.
struct Recorder {
    shared: Arc<Shared>,
    keep_ns: u64,
    max_bytes: Option<u64>,
    ns_per_packet: f64,
    open: Option<Open>,
    /// The next segment starts after a gap.
    disc: bool,
    /// UTC (ns) after the last packet taken.
    end_ns: Option<i64>,
    /// After a failed write: not before this.
    retry_at: Option<Instant>,
    alarm: Alarm,
}

fn run(mut recorders: Vec<Recorder>, rx: &Receiver<Msg>) {
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::Piece(i, piece)) => {
                if let Some(r) = recorders.get_mut(i) {
                    r.take(&piece);
                }
            }
            Ok(Msg::Note(i, mark)) => {
                if let Some(o) = recorders.get_mut(i).and_then(|r| r.open.as_mut()) {
                    o.notes.push(Mark {
                        seq: o.seg.seq,
                        ..mark
                    });
                }
            }
            Ok(Msg::Stop(done)) => {
                for r in &mut recorders {
                    r.finish();
                }
                let _ = done.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                for r in &mut recorders {
                    r.finish();
                }
                return;
            }
        }
    }
}

impl Recorder {
    /// Channel `id`'s recording (muxrate in bit/s), resuming what is on disk.
    fn open(
        id: &str,
        cfg: &ArchiveConfig,
        muxrate: u64,
        alarm: &Alarm,
    ) -> anyhow::Result<Recorder> {
        let dir = cfg.dir.join(id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("channel `{id}`: archive directory {}: {e}", dir.display())
        })?;
        let index = resume(&dir);
        if let Some(last) = index.last() {
            tracing::info!(channel = %id, segments = index.len(), bytes = index.bytes(), last_seq = last.seq, "archive resumed");
        }
        if cfg.key_file.is_none() && index.iter().any(|s| s.key.is_some()) {
            tracing::warn!(channel = %id, "archive: segments on disk are stored encrypted but [channel.archive] has no key_file: they cannot be played or exported until it is given back");
        }
        let shared =
            Arc::new(Shared {
                channel: id.to_owned(),
                dir,
                index: RwLock::new(index),
                segment_ns: cfg.segment.as_nanos() as u64,
                keep_ns: cfg.keep.as_nanos() as u64,
                hls_key: match &cfg.key_file {
                    Some(path) => Some((
                        drm::hls::MasterKey::new(crate::keys::read_key16(path).map_err(|e| {
                            anyhow::anyhow!("channel `{id}`: archive.key_file: {e}")
                        })?),
                        cfg.key_period.as_nanos() as u64,
                    )),
                    None => None,
                },
                encrypt_on_disk: cfg.encrypt_on_disk,
                dropped: AtomicU64::new(0),
                lost: AtomicBool::new(false),
                segments_written: AtomicU64::new(0),
                write_errors: AtomicU64::new(0),
            });
        Ok(Recorder {
            shared,
            keep_ns: cfg.keep.as_nanos() as u64,
            max_bytes: cfg.max_bytes,
            ns_per_packet: PACKET_SIZE as f64 * 8.0 * 1e9 / muxrate.max(1) as f64,
            open: None,
            // Whatever came before this run is not continuous with it.
            disc: true,
            end_ns: None,
            retry_at: None,
            alarm: alarm.clone(),
        })
    }

    fn take(&mut self, piece: &Piece) {
        if self.shared.lost.swap(false, Ordering::Relaxed) {
            // Pieces were dropped before this one: what is open ends where they went.
            self.finish();
            self.disc = true;
        }
        let packets = piece.data.len() / PACKET_SIZE;
        let npp = self.ns_per_packet;
        let at = |k: usize| piece.utc_ns + (k as f64 * npp) as i64;
        match &piece.rap {
            Some((offset, psi)) => {
                let rap_ns = at(offset / PACKET_SIZE);
                // An item's beginning always starts a segment: its catch-up starts there.
                let due = piece.boundary.is_some()
                    || self.open.as_ref().is_none_or(|o| {
                        rap_ns - o.seg.start_utc_ns >= self.shared.segment_ns as i64
                    });
                if due {
                    self.write(&piece.data[..*offset]);
                    self.end_ns = Some(rap_ns);
                    self.finish();
                    self.begin(rap_ns, psi);
                    if let (Some(o), Some(b)) = (self.open.as_mut(), &piece.boundary) {
                        o.mark = Some(Mark {
                            mark: b.kind.to_owned(),
                            seq: o.seg.seq,
                            utc_ns: b.presented_utc_ns,
                            event_id: b.event_id,
                            title: b.title.clone(),
                        });
                    }
                    self.write(&piece.data[*offset..]);
                } else {
                    self.write(&piece.data);
                }
            }
            None => self.write(&piece.data),
        }
        self.end_ns = Some(at(packets));
        if let (Some(o), Some(end)) = (&self.open, self.end_ns) {
            if end - o.seg.start_utc_ns > MAX_SEGMENT_NS {
                // No random access point for too long: this ends, the next one starts anew.
                self.finish();
                self.disc = true;
            }
        }
    }

    /// Starts a segment at `start_ns` with the PAT/PMT `psi`, unless waiting after a failure.
    fn begin(&mut self, start_ns: i64, psi: &Bytes) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let seq = self.shared.index.read().map_or(0, |ix| ix.next_seq());
        let seg = Seg {
            seq,
            start_utc_ns: start_ns,
            duration_ns: 0,
            bytes: 0,
            psi_packets: (psi.len() / PACKET_SIZE) as u16,
            disc: self.disc,
            key: None,
        };
        // Stored encrypted: with the key of the period it starts in, its sequence the IV.
        let enc = if self.shared.encrypt_on_disk {
            let p = self.shared.key_period(&seg);
            p.and_then(|p| Some((p, self.shared.period_key(p)?)))
        } else {
            None
        };
        let seg = Seg {
            key: enc.map(|(p, _)| p),
            ..seg
        };
        let path = self.shared.path(&seg);
        let part = path.with_extension("ts.part");
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| File::create(&part));
        match opened {
            Ok(f) => {
                self.open = Some(Open {
                    file: std::io::BufWriter::with_capacity(256 * 1024, f),
                    enc: enc.map(|(_, key)| {
                        let iv = playout::hls::default_iv(seq);
                        (drm::hls::SegmentEncryptor::new(&key, &iv), Vec::new())
                    }),
                    part,
                    seg,
                    mark: None,
                    notes: Vec::new(),
                });
                self.write(psi);
            }
            Err(e) => self.failed(&part, &e),
        }
    }

    fn write(&mut self, data: &[u8]) {
        let Some(o) = self.open.as_mut() else {
            return;
        };
        let out = match &mut o.enc {
            Some((enc, buf)) => {
                buf.clear();
                enc.update(data, buf);
                &buf[..]
            }
            None => data,
        };
        if let Err(e) = o.file.write_all(out) {
            let part = o.part.clone();
            self.abandon();
            self.failed(&part, &e);
            return;
        }
        o.seg.bytes += out.len() as u64;
    }

    /// Drops the segment being written (its file too).
    fn abandon(&mut self) {
        if let Some(o) = self.open.take() {
            drop(o.file);
            let _ = std::fs::remove_file(&o.part);
        }
        self.disc = true;
    }

    fn failed(&mut self, path: &Path, e: &std::io::Error) {
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + RETRY);
        self.disc = true;
        let why = format!(
            "channel {}: cannot record {}: {e}; recording stops (playout goes on) and is tried again every {} s",
            self.shared.channel,
            path.display(),
            RETRY.as_secs()
        );
        if self.alarm.state().alarm.is_none() {
            tracing::error!("archive: {why}");
        }
        self.alarm.raise(why);
    }

    /// Ends the segment being written: synced, renamed, on the index; then retention.
    fn finish(&mut self) {
        let Some(mut o) = self.open.take() else {
            return;
        };
        let end = self.end_ns.unwrap_or(o.seg.start_utc_ns);
        o.seg.duration_ns = (end - o.seg.start_utc_ns).max(0) as u64;
        if o.seg.duration_ns == 0 {
            drop(o.file);
            let _ = std::fs::remove_file(&o.part);
            return;
        }
        // Stored encrypted: the last block, padded.
        let last = o.enc.take().map(|(enc, mut buf)| {
            buf.clear();
            enc.finish(&mut buf);
            buf
        });
        if let Some(last) = &last {
            o.seg.bytes += last.len() as u64;
        }
        let mut file = o.file;
        let written = match &last {
            Some(l) => file.write_all(l),
            None => Ok(()),
        };
        let done = written
            .and_then(|()| {
                file.into_inner()
                    .map_err(std::io::IntoInnerError::into_error)
            })
            .and_then(|f| f.sync_data())
            .and_then(|()| std::fs::rename(&o.part, o.part.with_extension("")));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&o.part);
            self.failed(&o.part, &e);
            return;
        }
        let marks: Vec<Mark> = o.mark.take().into_iter().chain(o.notes.drain(..)).collect();
        if let Err(e) = self.note(&o.seg, marks) {
            let index = self.shared.dir.join("index.jsonl");
            self.failed(&index, &e);
        }
        self.disc = false;
        self.retry_at = None;
        self.alarm.clear("recording again");
        self.shared.segments_written.fetch_add(1, Ordering::Relaxed);
        self.expire(end);
    }

    /// Puts `seg` on the index, in memory and on disk (rewriting the file when most of its
    /// lines name segments retention removed).
    fn note(&self, seg: &Seg, marks: Vec<Mark>) -> std::io::Result<()> {
        let path = self.shared.dir.join("index.jsonl");
        let mut ix = self
            .shared
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines = String::new();
        for m in marks {
            lines.push_str(&Index::mark_line(&m));
            ix.mark(m);
            ix.lines += 1;
        }
        lines.push_str(&Index::line(seg));
        ix.push(*seg);
        ix.lines += 1;
        if ix.lines > 2 * ix.len() + 1000 {
            let mut text = String::new();
            for m in ix.marks() {
                text.push_str(&Index::mark_line(m));
            }
            for s in ix.iter() {
                text.push_str(&Index::line(s));
            }
            outfile::write_atomic(&path, text.as_bytes()).map_err(|e| e.source)?;
            ix.lines = ix.len() + ix.marks().count();
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(lines.as_bytes())
    }

    /// Retention: the oldest segments past `keep` (before `now_ns`) or `max_bytes` go, from
    /// the index first, then from the disk.
    fn expire(&self, now_ns: i64) {
        let gone = self
            .shared
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expire(now_ns, self.keep_ns, self.max_bytes);
        for seg in gone {
            let path = self.shared.path(&seg);
            let _ = std::fs::remove_file(&path);
            if let Some(day) = path.parent() {
                // Only when empty: the day's other segments stay.
                let _ = std::fs::remove_dir(day);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const T0: i64 = 1_796_515_200_000 * MS;
    /// One packet a millisecond.
    const MUXRATE: u64 = 1_504_000;

    fn cfg(dir: &Path, keep_s: u64, max_bytes: Option<u64>) -> ArchiveConfig {
        ArchiveConfig {
            dir: dir.to_owned(),
            keep: Duration::from_secs(keep_s),
            max_bytes,
            segment: Duration::from_secs(2),
            key_file: None,
            key_period: Duration::from_secs(600),
            encrypt_on_disk: false,
        }
    }

    /// 40 ms of packets starting at `ms`, with a random access point at its start every
    /// second; each packet's byte 4 is its millisecond (mod 256), PSI packets are 0xEE.
    fn piece(ms: i64) -> Piece {
        let mut data = vec![0u8; 40 * PACKET_SIZE];
        for (k, p) in data.chunks_mut(PACKET_SIZE).enumerate() {
            p[0] = 0x47;
            p[4] = ((ms + k as i64) % 256) as u8;
        }
        Piece {
            data: Bytes::from(data),
            rap: (ms % 1000 == 0).then(|| (0, Bytes::from(vec![0xEE; 2 * PACKET_SIZE]))),
            utc_ns: T0 + ms * MS,
            boundary: None,
        }
    }

    fn play(r: &mut Recorder, from_ms: i64, to_ms: i64) {
        for ms in (from_ms..to_ms).step_by(40) {
            r.take(&piece(ms));
        }
    }

    fn segs(r: &Recorder) -> Vec<Seg> {
        r.shared.index.read().unwrap().iter().copied().collect()
    }

    #[test]
    fn segments_start_at_random_access_points_with_psi_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = Alarm::new("archive");
        let mut r = Recorder::open("news", &cfg(dir.path(), 3600, None), MUXRATE, &alarm).unwrap();
        // Nothing is recorded before the first random access point (at 1 s).
        play(&mut r, 960, 9_000);
        r.finish();
        let s = segs(&r);
        assert_eq!(s.iter().map(|x| x.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(s[0].start_utc_ns, T0 + 1000 * MS);
        assert!(s.iter().all(|x| x.duration_ns == 2000 * MS as u64), "{s:?}");
        assert!(s[0].disc && !s[1].disc);
        let first = std::fs::read(r.shared.path(&s[0])).unwrap();
        assert_eq!(first.len(), (2 + 2000) * PACKET_SIZE);
        assert_eq!(first[0], 0xEE, "PSI first");
        assert_eq!(
            first[2 * PACKET_SIZE + 4],
            (1000 % 256) as u8,
            "then the RAP"
        );
        // What was being written when the process died is removed; the index resumes and
        // the next segment numbers on, after a discontinuity.
        let part = r.shared.dir.join("20261206/0000000009.ts.part");
        std::fs::write(&part, b"torn").unwrap();
        let index = r.shared.dir.join("index.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&index)
            .unwrap();
        f.write_all(b"{\"seq\":9,\"utc").unwrap();
        drop(r);
        let mut r = Recorder::open("news", &cfg(dir.path(), 3600, None), MUXRATE, &alarm).unwrap();
        assert!(!part.exists());
        assert_eq!(segs(&r).len(), 4);
        play(&mut r, 20_000, 22_040);
        r.finish();
        let s = segs(&r);
        assert_eq!(s[4].seq, 4);
        assert!(s[4].disc);
    }

    #[test]
    fn segments_stored_encrypted_are_served_as_stored_and_exported_clear() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("hls.key");
        std::fs::write(&key_file, "000102030405060708090a0b0c0d0e0f\n").unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let alarm = Alarm::new("archive");
        let clear_cfg = ArchiveConfig {
            key_file: Some(key_file.clone()),
            ..cfg(&dir.path().join("clear"), 3600, None)
        };
        let enc_cfg = ArchiveConfig {
            encrypt_on_disk: true,
            ..cfg(&dir.path().join("enc"), 3600, None)
        };
        let enc_cfg = ArchiveConfig {
            key_file: Some(key_file),
            ..enc_cfg
        };
        let mut clear = Recorder::open("news", &clear_cfg, MUXRATE, &alarm).unwrap();
        let mut enc = Recorder::open("news", &enc_cfg, MUXRATE, &alarm).unwrap();
        for r in [&mut clear, &mut enc] {
            play(r, 960, 9_000);
            r.finish();
        }
        let (c, e) = (segs(&clear), segs(&enc));
        assert_eq!(c.len(), 4);
        assert_eq!(e.len(), 4);
        for (c, e) in c.iter().zip(&e) {
            let plain = std::fs::read(clear.shared.path(c)).unwrap();
            let stored = std::fs::read(enc.shared.path(e)).unwrap();
            assert_eq!(e.key, Some(((T0 + 1000 * MS) / 600_000_000_000) as u64));
            assert_eq!(e.bytes, stored.len() as u64);
            assert_eq!(stored.len(), plain.len() / 16 * 16 + 16, "padded");
            assert!(stored
                .chunks(PACKET_SIZE)
                .all(|p| p[0] != 0x47 || p[1] != 0));
            // Served: the stored bytes; the key is the period's; exported: the clear ones.
            assert_eq!(enc.shared.read_served(e).unwrap(), stored);
            let key = enc.shared.period_key(e.key.unwrap()).unwrap();
            let iv = playout::hls::default_iv(e.seq);
            assert_eq!(drm::hls::encrypt_segment(&key, &iv, &plain), stored);
            assert_eq!(enc.shared.read_clear(e).unwrap(), plain);
            // A clear archive serves the same bytes, encrypted on the way out.
            assert_eq!(clear.shared.read_served(c).unwrap(), stored);
        }
        // The stored key period survives a restart with another key_period.
        drop(enc);
        let enc_cfg = ArchiveConfig {
            key_period: Duration::from_secs(60),
            ..enc_cfg
        };
        let enc = Recorder::open("news", &enc_cfg, MUXRATE, &alarm).unwrap();
        assert_eq!(segs(&enc), e);
        assert_eq!(
            enc.shared.read_clear(&e[0]).unwrap(),
            std::fs::read(clear.shared.path(&c[0])).unwrap()
        );
        // A damaged file is an error naming it, not garbage.
        let mut stored = std::fs::read(enc.shared.path(&e[1])).unwrap();
        stored.truncate(stored.len() - 5);
        std::fs::write(enc.shared.path(&e[1]), stored).unwrap();
        let err = enc.shared.read_clear(&e[1]).unwrap_err().to_string();
        assert!(
            err.contains("0000000001.ts: stored encrypted: ") && err.contains("whole number"),
            "{err}"
        );
    }

    #[test]
    fn retention_removes_the_oldest_by_age_and_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = Alarm::new("archive");
        let mut r = Recorder::open("a", &cfg(dir.path(), 5, None), MUXRATE, &alarm).unwrap();
        play(&mut r, 0, 12_040);
        let s = segs(&r);
        // Segments ending more than 5 s before the last end (12 s) are gone.
        assert_eq!(s.first().unwrap().start_utc_ns, T0 + 6000 * MS, "{s:?}");
        let day = r.shared.dir.join("20261206");
        let files = std::fs::read_dir(&day).unwrap().count();
        assert_eq!(
            files,
            s.len() + 1,
            "the kept segments and the one being written"
        );
        let per = s[0].bytes;
        let mut r = Recorder::open(
            "b",
            &cfg(dir.path(), 3600, Some(2 * per + 1)),
            MUXRATE,
            &alarm,
        )
        .unwrap();
        play(&mut r, 0, 12_040);
        assert_eq!(segs(&r).len(), 2);
    }

    #[test]
    fn a_gap_ends_the_segment_and_the_next_is_discontinuous() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = Alarm::new("archive");
        let mut r = Recorder::open("c", &cfg(dir.path(), 3600, None), MUXRATE, &alarm).unwrap();
        play(&mut r, 0, 3_000);
        r.shared.lost.store(true, Ordering::Relaxed);
        play(&mut r, 3_400, 6_000);
        r.finish();
        let s = segs(&r);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            s[1].duration_ns,
            1000 * MS as u64,
            "cut where the pieces went"
        );
        assert!(s[2].disc);
        assert_eq!(s[2].start_utc_ns, T0 + 4000 * MS);
    }

    #[test]
    fn a_disk_that_refuses_stops_the_recording_with_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let alarm = Alarm::new("archive");
        let mut r = Recorder::open("d", &cfg(dir.path(), 3600, None), MUXRATE, &alarm).unwrap();
        // The day's directory is a file: no segment can be made.
        std::fs::write(r.shared.dir.join("20261206"), b"").unwrap();
        play(&mut r, 0, 3_000);
        assert!(
            alarm.state().alarm.unwrap().contains("cannot record"),
            "{:?}",
            alarm.state()
        );
        assert!(segs(&r).is_empty());
        assert!(r.shared.write_errors.load(Ordering::Relaxed) >= 1);
    }
}
