//! RTP (RFC 3550) datagrams of transport stream packets (RFC 2250), and SMPTE ST 2022-7
//! seamless protection: the same RTP stream (same SSRC, sequence numbers, timestamps) sent on
//! two paths and merged by sequence number at the receiver ([`Merger`]), so a packet lost on
//! one path is taken from the other, and a path that fails entirely costs nothing.
//!
//! Sans-IO: arrival times come in as arguments (ns on any monotonic clock).

use std::collections::BTreeMap;

/// The sequence number and payload of an RTP datagram (version 2; CSRCs and a header
/// extension skipped, padding removed); `None` if it is not one.
pub fn payload(d: &[u8]) -> Option<(u16, &[u8])> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(d[0] & 0x0F);
    let mut off = 12 + 4 * cc;
    if d[0] & 0x10 != 0 {
        let ext = d.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = d.len();
    if d[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*d.last()?))?;
    }
    let seq = u16::from_be_bytes([d[2], d[3]]);
    Some((seq, d.get(off..end)?))
}

/// What the merger counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Datagrams taken from each path (first to arrive of their sequence number).
    pub taken: [u64; 2],
    /// Datagrams that arrived again (on the other path, or repeated): dropped.
    pub duplicates: u64,
    /// Sequence numbers neither path brought within the skew: gaps in the merged stream.
    pub lost: u64,
    /// Datagrams that came too late (after their place was given up): dropped.
    pub late: u64,
    /// Datagrams that are not RTP: dropped.
    pub not_rtp: u64,
    /// Duplicates whose payload differs from the copy taken (among the last
    /// [`COMPARED`] sequence numbers): the paths do not carry one stream, and a merge of
    /// them is not seamless (two senders that are not in step, a misconfigured pair).
    pub differing: u64,
}

/// How many of the latest sequence numbers keep a digest of the payload taken, to compare
/// the other path's copy with.
pub const COMPARED: usize = 8192;

/// A SMPTE ST 2022-7 merge of two paths: datagrams out in sequence order, each once. A
/// missing sequence number is waited for up to `skew` (the most one path may lag the other)
/// after a later one arrived; then it is counted lost and the stream goes on.
#[derive(Debug)]
pub struct Merger {
    skew_ns: u64,
    /// The next extended sequence number to give out (`None` before the first datagram).
    next: Option<u64>,
    /// Waiting: extended sequence number → (arrival ns, payload).
    held: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The last gaps given up, `[from, to)`, to tell a late datagram from a duplicate.
    gaps: std::collections::VecDeque<(u64, u64)>,
    /// Digests of the payloads taken, by extended sequence number (the last [`COMPARED`]).
    digests: BTreeMap<u64, u64>,
    stats: MergeStats,
}

/// FNV-1a (64-bit) of `data`: the merger's digest of a payload, and a stable hash of bytes
/// wherever one is needed the same in every process (an SSRC from a channel's id).
pub fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How far ahead of the next expected sequence number a datagram may be and still be taken
/// as belonging to this stream (beyond: the sender restarted; the merge starts over).
const MAX_AHEAD: u64 = 16_384;

impl Merger {
    /// A merger waiting up to `skew_ns` for a missing datagram.
    pub fn new(skew_ns: u64) -> Merger {
        Merger {
            skew_ns,
            next: None,
            held: BTreeMap::new(),
            gaps: std::collections::VecDeque::new(),
            digests: BTreeMap::new(),
            stats: MergeStats::default(),
        }
    }

    /// What it has counted.
    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    /// A datagram from path `path` (0 or 1) that arrived at `now_ns`; what is ready goes to
    /// `out` (TS payloads, in order).
    pub fn push(&mut self, path: usize, datagram: &[u8], now_ns: u64, out: &mut Vec<Vec<u8>>) {
        let Some((seq, data)) = payload(datagram) else {
            self.stats.not_rtp += 1;
            return;
        };
        let next = *self.next.get_or_insert(u64::from(seq));
        // The extended number closest to `next` with these low 16 bits.
        let base = next & !0xFFFF;
        let ext = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000]
            .into_iter()
            .map(|b| b | u64::from(seq))
            .min_by_key(|e| e.abs_diff(next))
            .unwrap_or(next);
        if ext < next {
            if self.held.is_empty() && next - ext > MAX_AHEAD {
                self.restart(ext);
            } else {
                // Given up on, or given out already (the other path's copy).
                if self.gaps.iter().any(|(a, b)| (*a..*b).contains(&ext)) {
                    self.stats.late += 1;
                } else {
                    self.duplicate(ext, data);
                }
                return;
            }
        } else if ext - next > MAX_AHEAD {
            self.restart(ext);
        }
        if self.held.contains_key(&ext) {
            self.duplicate(ext, data);
        } else {
            self.stats.taken[path.min(1)] += 1;
            self.digests.insert(ext, digest(data));
            if self.digests.len() > COMPARED {
                self.digests.pop_first();
            }
            self.held.insert(ext, (now_ns, data.to_vec()));
        }
        self.release(now_ns, out);
    }

    /// Sequence number `ext` again: counted, and compared with the copy taken.
    fn duplicate(&mut self, ext: u64, data: &[u8]) {
        self.stats.duplicates += 1;
        if self.digests.get(&ext).is_some_and(|d| *d != digest(data)) {
            self.stats.differing += 1;
        }
    }

    /// Gives out what is due at `now_ns` with nothing new arriving (a path that stopped):
    /// call it every few milliseconds.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Vec<u8>>) {
        self.release(now_ns, out);
    }

    /// Everything held, in order, the gaps counted lost (the end of the stream).
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        self.release(u64::MAX, out);
    }

    fn restart(&mut self, at: u64) {
        let mut none = Vec::new();
        self.release(u64::MAX, &mut none);
        self.held.clear();
        self.digests.clear();
        self.next = Some(at);
    }

    fn release(&mut self, now_ns: u64, out: &mut Vec<Vec<u8>>) {
        let Some(mut next) = self.next else {
            return;
        };
        loop {
            if let Some((_, data)) = self.held.remove(&next) {
                out.push(data);
                next += 1;
                continue;
            }
            // A gap: given up once the datagram after it has waited `skew`.
            match self.held.first_key_value() {
                Some((&first, &(arrived, _))) if now_ns.saturating_sub(arrived) >= self.skew_ns => {
                    self.stats.lost += first - next;
                    if self.gaps.len() == 64 {
                        self.gaps.pop_front();
                    }
                    self.gaps.push_back((next, first));
                    next = first;
                }
                _ => break,
            }
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(seq: u16) -> Vec<u8> {
        let mut d = vec![0x80, 33];
        d.extend_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&seq.to_be_bytes());
        d
    }

    fn seqs(out: &[Vec<u8>]) -> Vec<u16> {
        out.iter()
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect()
    }

    #[test]
    fn two_lossy_paths_make_one_whole_stream_across_the_wrap() {
        let mut m = Merger::new(50_000_000);
        let mut out = Vec::new();
        let first = 65_000u16;
        for k in 0..2000u32 {
            let seq = first.wrapping_add(k as u16);
            let t = u64::from(k) * 1_000_000;
            // Path 0 loses every 7th, path 1 every 11th and all of k in 500..900; path 1
            // lags by 3 datagrams.
            if k % 7 != 0 {
                m.push(0, &datagram(seq), t, &mut out);
            }
            if k >= 3 {
                let j = k - 3;
                if j % 11 != 0 && !(500..900).contains(&j) {
                    m.push(1, &datagram(first.wrapping_add(j as u16)), t, &mut out);
                }
            }
        }
        m.finish(&mut out);
        let got = seqs(&out);
        let want: Vec<u16> = (0..2000u32).map(|k| first.wrapping_add(k as u16)).collect();
        // Only those both paths lost are missing.
        let both_lost: Vec<u16> = (0..2000u32)
            .filter(|k| k % 7 == 0 && (k % 11 == 0 || (500..900).contains(k) || *k >= 1997))
            .map(|k| first.wrapping_add(k as u16))
            .collect();
        let expected: Vec<u16> = want
            .iter()
            .copied()
            .filter(|s| !both_lost.contains(s))
            .collect();
        assert_eq!(got, expected);
        let s = m.stats();
        // (k = 0, lost on both, came before the first datagram: not known to be missing.)
        assert_eq!(s.lost as usize, both_lost.len() - 1);
        assert!(s.duplicates > 1000, "{s:?}");
        assert_eq!(s.late, 0);
    }

    #[test]
    fn a_path_that_stops_costs_nothing_and_a_gap_waits_only_the_skew() {
        let mut m = Merger::new(20_000_000);
        let mut out = Vec::new();
        for k in 0..100u16 {
            let t = u64::from(k) * 1_000_000;
            m.push(0, &datagram(k), t, &mut out);
            if k < 40 {
                m.push(1, &datagram(k), t, &mut out);
            }
        }
        assert_eq!(seqs(&out), (0..100).collect::<Vec<_>>());
        // 100 never comes on either path; 101 waits 20 ms, then goes.
        m.push(0, &datagram(101), 200_000_000, &mut out);
        assert_eq!(out.len(), 100);
        m.tick(210_000_000, &mut out);
        assert_eq!(out.len(), 100);
        m.tick(220_000_000, &mut out);
        assert_eq!(seqs(&out[100..]), [101]);
        assert_eq!(m.stats().lost, 1);
        // A copy of one given out is a duplicate; the one given up on, late: neither taken.
        m.push(1, &datagram(50), 230_000_000, &mut out);
        m.push(1, &datagram(100), 231_000_000, &mut out);
        assert_eq!(out.len(), 101);
        assert_eq!(m.stats().duplicates, 41);
        assert_eq!(m.stats().late, 1);
        // Not RTP.
        m.push(0, &[0x47; 188], 240_000_000, &mut out);
        assert_eq!(m.stats().not_rtp, 1);
        assert_eq!(m.stats().differing, 0);
        // A copy that is not the same bytes: a pair out of step.
        let mut other = datagram(60);
        other[13] ^= 1;
        m.push(1, &other, 250_000_000, &mut out);
        assert_eq!((m.stats().duplicates, m.stats().differing), (42, 1));
    }

    #[test]
    fn payload_skips_csrcs_extensions_and_padding() {
        let mut d = vec![0x80 | 0x20 | 0x10 | 1, 33, 0, 7];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&[9; 4]); // one CSRC
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension of one word
        d.extend_from_slice(&[0x47; 4]);
        d.extend_from_slice(&[0, 0, 3]); // padding of 3
        let (seq, p) = payload(&d).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(p, [0x47; 4]);
        assert!(payload(&[0x40; 20]).is_none());
        assert!(payload(&[0x80; 5]).is_none());
    }
}
