//! A channel's archive index: its segments in order, what they take, and the lines of
//! `index.jsonl` that keep it across restarts. No I/O here: the writer thread reads and
//! writes the file, the HTTP side reads the index through a lock.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One finished segment on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seg {
    /// Its media sequence number: one more than the segment before, across restarts.
    pub(crate) seq: u64,
    /// UTC of its first packet (ns).
    #[serde(rename = "utc_ns")]
    pub(crate) start_utc_ns: i64,
    /// How long it plays (ns): to the next segment's start, or to its last packet's end.
    #[serde(rename = "dur_ns")]
    pub(crate) duration_ns: u64,
    pub(crate) bytes: u64,
    /// The PAT/PMT packets put before its first packet (a copy of those the output sent
    /// last): left out when segments are joined into one stream.
    #[serde(rename = "psi")]
    pub(crate) psi_packets: u16,
    /// The recording resumed before it after a gap (a restart, a full disk, lost chunks):
    /// the stream is discontinuous there.
    #[serde(default)]
    pub(crate) disc: bool,
    /// Stored encrypted (`encrypt_on_disk`): the key period of its key; the file is what
    /// HLS serves (AES-128-CBC, the IV its sequence number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<u64>,
}

impl Seg {
    /// Its file, relative to the channel's directory: a directory per UTC day of its start,
    /// so retention removes whole days' directories.
    pub(crate) fn file(&self) -> PathBuf {
        PathBuf::from(day_dir(self.start_utc_ns)).join(format!("{:010}.ts", self.seq))
    }

    /// UTC (ns) after its last packet.
    pub(crate) fn end_utc_ns(&self) -> i64 {
        self.start_utc_ns + self.duration_ns as i64
    }
}

/// An item that began on air at the start of segment `seq` — a programme (the schedule's,
/// with its EIT event when it has one), an alert's clip, a playlist's item — or a failover
/// inside segment `seq` (`title`: from what to what, and why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// `programme`, `alert`, `item` or `failover`.
    pub(crate) mark: String,
    /// The segment it begins.
    pub(crate) seq: u64,
    /// UTC (ns) its first picture was presented.
    pub(crate) utc_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_id: Option<u16>,
    #[serde(default)]
    pub(crate) title: String,
}

/// The directory name of the UTC day holding instant `ns`: `20261206`.
pub(crate) fn day_dir(ns: i64) -> String {
    let iso = playout::hls::iso8601(ns);
    format!("{}{}{}", &iso[0..4], &iso[5..7], &iso[8..10])
}

/// The segments of a channel, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Index {
    segs: VecDeque<Seg>,
    /// Items begun at a segment's start, oldest first.
    marks: VecDeque<Mark>,
    bytes: u64,
    /// Discontinuities among the segments that retention removed (HLS
    /// `EXT-X-DISCONTINUITY-SEQUENCE` counts from them).
    discs_before: u64,
    /// Lines in `index.jsonl`: when far more than the segments kept, the file is rewritten.
    pub(crate) lines: usize,
}

/// A run of consecutive segments, with the discontinuities before its first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) segs: Vec<Seg>,
    pub(crate) discs_before: u64,
}

impl Index {
    /// The index of `index.jsonl`'s lines (torn or foreign lines already left out): each
    /// later line for a sequence number replaces nothing, lines out of order are dropped.
    pub(crate) fn from_lines(lines: impl IntoIterator<Item = serde_json::Value>) -> Index {
        let mut ix = Index::default();
        for v in lines {
            ix.lines += 1;
            if v.get("mark").is_some() {
                if let Ok(m) = serde_json::from_value::<Mark>(v) {
                    ix.marks.push_back(m);
                }
                continue;
            }
            let Ok(seg) = serde_json::from_value::<Seg>(v) else {
                continue;
            };
            if ix.segs.back().is_some_and(|b| seg.seq <= b.seq) {
                continue;
            }
            ix.push(seg);
        }
        ix.lines = ix.lines.max(ix.segs.len());
        ix
    }

    /// Adds a mark (its segment is being written).
    pub(crate) fn mark(&mut self, m: Mark) {
        self.marks.push_back(m);
    }

    /// The marks, oldest first (for rewriting the file).
    pub(crate) fn marks(&self) -> impl Iterator<Item = &Mark> {
        self.marks.iter()
    }

    /// The segments of the latest airing of EIT event `event_id`: from the segment its first
    /// item began to the one before the next item that is neither it again nor an alert (an
    /// alert or a failover inside it stays inside), or to the last segment while it is on
    /// air. With whether it has ended.
    pub(crate) fn event(&self, event_id: u16) -> Option<(Run, bool)> {
        let last = self
            .marks
            .iter()
            .rposition(|m| m.event_id == Some(event_id))?;
        let is_it =
            |m: &Mark| m.event_id == Some(event_id) || m.mark == "alert" || m.mark == "failover";
        let mut first = last;
        while first > 0 && is_it(&self.marks[first - 1]) {
            first -= 1;
        }
        // From its first own mark (an alert just before it is another programme's).
        while self.marks[first].event_id != Some(event_id) {
            first += 1;
        }
        let end = self.marks.iter().skip(last + 1).find(|m| !is_it(m));
        let from = self.marks[first].seq;
        let to = end.map_or(u64::MAX, |m| m.seq);
        let start = self.segs.partition_point(|s| s.seq < from);
        let stop = self.segs.partition_point(|s| s.seq < to);
        if start >= stop {
            return None;
        }
        Some((self.run(start..stop), end.is_some()))
    }

    /// The marks whose item began in `[from_ns, to_ns)`, each with the UTC (ns) its segment
    /// range ends (the next mark's segment start, or `None` while it is the last).
    pub(crate) fn marks_between(&self, from_ns: i64, to_ns: i64) -> Vec<(Mark, Option<i64>)> {
        let start_of = |seq: u64| self.get(seq).map(|s| s.start_utc_ns);
        self.marks
            .iter()
            .enumerate()
            .filter(|(_, m)| (from_ns..to_ns).contains(&m.utc_ns))
            .map(|(i, m)| {
                let end = self.marks.get(i + 1).and_then(|n| start_of(n.seq));
                (m.clone(), end)
            })
            .collect()
    }

    /// The line `index.jsonl` keeps for mark `m`.
    pub(crate) fn mark_line(m: &Mark) -> String {
        let mut s = serde_json::to_string(m).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The line `index.jsonl` keeps for `seg`.
    pub(crate) fn line(seg: &Seg) -> String {
        let mut s = serde_json::to_string(seg).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Adds a finished segment at the end.
    pub(crate) fn push(&mut self, seg: Seg) {
        self.bytes += seg.bytes;
        self.segs.push_back(seg);
    }

    /// Removes and returns the oldest segments beyond `keep_ns` before `now_ns` or beyond
    /// `max_bytes` in all.
    pub(crate) fn expire(&mut self, now_ns: i64, keep_ns: u64, max_bytes: Option<u64>) -> Vec<Seg> {
        let mut gone = Vec::new();
        while let Some(first) = self.segs.front().copied() {
            let old = first.end_utc_ns() < now_ns.saturating_sub(keep_ns as i64);
            let over = max_bytes.is_some_and(|m| self.bytes > m);
            if !(old || over) {
                break;
            }
            self.pop_front();
            gone.push(first);
        }
        gone
    }

    /// Removes the oldest segment (its file is gone), and the marks of the segments before
    /// the one now first.
    pub(crate) fn pop_front(&mut self) -> Option<Seg> {
        let first = self.segs.pop_front()?;
        self.bytes -= first.bytes;
        if first.disc {
            self.discs_before += 1;
        }
        let next = self.segs.front().map_or(u64::MAX, |s| s.seq);
        while self.marks.front().is_some_and(|m| m.seq < next) {
            self.marks.pop_front();
        }
        Some(first)
    }

    /// The next sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.segs.back().map_or(0, |s| s.seq + 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.segs.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn first(&self) -> Option<&Seg> {
        self.segs.front()
    }

    pub(crate) fn last(&self) -> Option<&Seg> {
        self.segs.back()
    }

    /// Every segment, oldest first (for rewriting the file).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Seg> {
        self.segs.iter()
    }

    /// The segment numbered `seq`, if kept.
    pub(crate) fn get(&self, seq: u64) -> Option<Seg> {
        let first = self.segs.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.segs.get(i).copied().filter(|s| s.seq == seq)
    }

    fn run(&self, range: std::ops::Range<usize>) -> Run {
        let discs = self.segs.range(..range.start).filter(|s| s.disc).count() as u64;
        Run {
            segs: self.segs.range(range).copied().collect(),
            discs_before: self.discs_before + discs,
        }
    }

    /// The last `n` segments.
    pub(crate) fn tail(&self, n: usize) -> Run {
        self.run(self.segs.len().saturating_sub(n)..self.segs.len())
    }

    /// The segments that play at or after `from_ns` and start before `to_ns`.
    pub(crate) fn between(&self, from_ns: i64, to_ns: i64) -> Run {
        let start = self.segs.partition_point(|s| s.end_utc_ns() <= from_ns);
        let end = self.segs.partition_point(|s| s.start_utc_ns < to_ns);
        self.run(start..end.max(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_796_515_200 * S;

    fn seg(seq: u64, disc: bool) -> Seg {
        Seg {
            seq,
            start_utc_ns: T0 + seq as i64 * 4 * S,
            duration_ns: 4 * S as u64,
            bytes: 1000,
            psi_packets: 2,
            disc,
            key: None,
        }
    }

    #[test]
    fn lines_round_trip_and_out_of_order_lines_are_dropped() {
        let lines: Vec<serde_json::Value> =
            [seg(0, true), seg(1, false), seg(1, false), seg(2, false)]
                .iter()
                .map(|s| serde_json::from_str(&Index::line(s)).unwrap())
                .chain([serde_json::json!({"something": "else"})])
                .collect();
        let ix = Index::from_lines(lines);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.lines, 5);
        assert_eq!(ix.next_seq(), 3);
        assert_eq!(ix.bytes(), 3000);
        assert_eq!(ix.get(1), Some(seg(1, false)));
        assert_eq!(ix.get(7), None);
        assert_eq!(
            seg(1, false).file(),
            PathBuf::from("20261206/0000000001.ts")
        );
    }

    #[test]
    fn retention_by_age_and_bytes_counts_the_discontinuities_it_removes() {
        let mut ix = Index::default();
        for i in 0..10 {
            ix.push(seg(i, i == 0 || i == 5));
        }
        // Older than 20 s before the end of segment 9 (T0 + 40 s): segments 0..=3 end by 16 s.
        let gone = ix.expire(T0 + 40 * S, 20 * S as u64, None);
        assert_eq!(gone.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(
            ix.tail(3).discs_before,
            2,
            "0 removed, 5 still before the tail"
        );
        let gone = ix.expire(T0 + 40 * S, 3600 * S as u64, Some(3000));
        assert_eq!(gone.len(), 3);
        assert_eq!(ix.first().unwrap().seq, 7);
        assert_eq!(ix.tail(10).discs_before, 2);
        assert_eq!(ix.bytes(), 3000);
    }

    #[test]
    fn an_event_spans_its_airing_with_the_alerts_inside_it() {
        let mut ix = Index::default();
        for i in 0..12 {
            ix.push(seg(i, false));
        }
        let mark = |kind: &str, seq: u64, id: Option<u16>| Mark {
            mark: kind.into(),
            seq,
            utc_ns: 0,
            event_id: id,
            title: String::new(),
        };
        ix.mark(mark("programme", 1, Some(7)));
        ix.mark(mark("programme", 3, Some(8)));
        ix.mark(mark("alert", 5, None));
        ix.mark(mark("failover", 5, None));
        ix.mark(mark("programme", 6, Some(8)));
        ix.mark(mark("programme", 8, Some(9)));
        let seqs = |r: &Run| r.segs.iter().map(|s| s.seq).collect::<Vec<_>>();
        let (run, ended) = ix.event(8).unwrap();
        assert_eq!(
            seqs(&run),
            [3, 4, 5, 6, 7],
            "the alert and the rejoin inside it"
        );
        assert!(ended);
        let (run, ended) = ix.event(9).unwrap();
        assert_eq!(seqs(&run), [8, 9, 10, 11]);
        assert!(!ended, "still on air");
        assert_eq!(seqs(&ix.event(7).unwrap().0), [1, 2]);
        assert!(ix.event(10).is_none());
        // Retention takes the marks of the segments it removes.
        ix.expire(0, 0, Some(8 * 1000));
        assert!(ix.event(7).is_none());
        assert_eq!(
            seqs(&ix.event(8).unwrap().0),
            [6, 7],
            "its beginning gone, from where it rejoined"
        );
    }

    #[test]
    fn a_window_takes_the_segments_playing_in_it() {
        let mut ix = Index::default();
        for i in 0..10 {
            ix.push(seg(i, false));
        }
        let seqs = |r: Run| r.segs.iter().map(|s| s.seq).collect::<Vec<_>>();
        assert_eq!(seqs(ix.between(T0 + 5 * S, T0 + 12 * S)), [1, 2]);
        assert_eq!(seqs(ix.between(T0 + 8 * S, T0 + 9 * S)), [2]);
        assert_eq!(
            seqs(ix.between(T0 + 100 * S, T0 + 200 * S)),
            Vec::<u64>::new()
        );
        assert_eq!(seqs(ix.tail(2)), [8, 9]);
    }
}
