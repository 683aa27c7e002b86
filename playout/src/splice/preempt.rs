//! Pre-emption: what is on air gives way at once (an emergency override, or the return from
//! one). The output queue (up to the read-ahead, about a second) is cut at its first
//! display-closed access unit of the anchor stream, every other stream where presentation
//! reaches that point, and the timeline the next item continues from is recomputed from what
//! stays: what has left already and what is kept in the queue.

use std::collections::VecDeque;

use super::{OutPacket, Queued, Timeline};
use crate::pes::PesHeader;
use crate::psi::Pmt;
use crate::time::{Pts, Ticks27M, PTS_MODULUS};
use crate::ts::Pid;

/// Frame duration assumed for a PID of which only one access unit was seen (90 kHz).
const DEFAULT_DUR_90K: i64 = 3600;
/// What is due within this much of now stays, so the new item's file can be opened and read
/// before its first packet is due: otherwise it would start late, leaving a hole in
/// presentation.
const SLACK: Ticks27M = crate::time::SYSTEM_CLOCK_HZ / 10;

/// Presentation and decoding of one output PID, on the unwrapped output 90 kHz timeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PidTrack {
    pid: Pid,
    max_pts: i64,
    last_dts: i64,
    dur: i64,
}

/// What has gone out of the queue: each PID's timestamps, and the PMT in effect.
#[derive(Clone, Debug)]
pub(crate) struct Emitted {
    tracks: Vec<PidTrack>,
    pmt: Pmt,
}

/// The value congruent to `pts` (mod 2^33) nearest to `near` (both 90 kHz).
fn unwrap_near(pts: Pts, near: i64) -> i64 {
    let m = PTS_MODULUS as i64;
    let d = (pts.raw() as i64 - near).rem_euclid(m);
    if d > m / 2 {
        near + d - m
    } else {
        near + d
    }
}

/// The output (PTS, DTS) of a packet starting a PES with timestamps, unwrapped near its due
/// time.
fn out_times(p: &OutPacket) -> Option<(i64, i64)> {
    let shift = p.shift?;
    if !p.packet.pusi() {
        return None;
    }
    let h = PesHeader::parse(p.packet.payload())?;
    let pts = h.pts?.add(shift);
    let dts = h.dts.map_or(pts, |d| d.add(shift));
    let near = (p.due / 300) as i64;
    Some((unwrap_near(pts, near), unwrap_near(dts, near)))
}

fn observe(tracks: &mut Vec<PidTrack>, pid: Pid, (pts, dts): (i64, i64)) {
    match tracks.iter_mut().find(|t| t.pid == pid) {
        Some(t) => {
            let d = dts - t.last_dts;
            if d > 0 && d < 90_000 {
                t.dur = d;
            }
            t.last_dts = dts;
            t.max_pts = t.max_pts.max(pts);
        }
        None => tracks.push(PidTrack {
            pid,
            max_pts: pts,
            last_dts: dts,
            dur: DEFAULT_DUR_90K,
        }),
    }
}

impl Emitted {
    /// Nothing emitted yet; the muxer starts with `pmt`.
    pub(crate) fn new(pmt: Pmt) -> Emitted {
        Emitted {
            tracks: Vec::new(),
            pmt,
        }
    }

    /// Notes what the muxer takes from the queue.
    pub(crate) fn note(&mut self, q: &Queued) {
        match q {
            Queued::Packet(p) => {
                if let Some(t) = out_times(p) {
                    observe(&mut self.tracks, p.pid, t);
                }
            }
            Queued::Pmt(pmt) => self.pmt = pmt.clone(),
        }
    }
}

/// Cuts `out` as early as it can be cut cleanly; returns the PMT in effect after what is
/// kept and the output time at which the kept presentation ends (90 kHz), and updates
/// `timeline` for the item that follows.
pub(crate) fn cut_queue(
    out: &mut VecDeque<Queued>,
    emitted: &Emitted,
    now: Ticks27M,
    not_before: Ticks27M,
    timeline: &mut Timeline,
) -> (Pmt, Option<i64>) {
    // The cut: the first PES start of the anchor (the PCR PID in effect) presented after
    // everything of it before (display-closed), so no picture already decoded is lost, and
    // due far enough ahead (`SLACK`) for the new item to be read in time.
    let mut tracks = emitted.tracks.clone();
    let mut anchor = emitted.pmt.pcr_pid;
    let mut cut: Option<(usize, i64)> = None;
    for (i, q) in out.iter().enumerate() {
        match q {
            Queued::Pmt(p) => anchor = p.pcr_pid,
            Queued::Packet(p) => {
                let Some(t) = out_times(p) else { continue };
                if p.pid == anchor {
                    let closed = tracks
                        .iter()
                        .find(|k| k.pid == anchor)
                        .is_none_or(|k| t.0 > k.max_pts);
                    if closed && p.due >= now.saturating_add(SLACK).max(not_before) {
                        cut = Some((i, t.0));
                        break;
                    }
                }
                observe(&mut tracks, p.pid, t);
            }
        }
    }
    let (cut_index, cut_pts) = cut.unwrap_or((out.len(), i64::MAX));
    // Every PID stops at its first PES presented at or after the cut (or, without a
    // timestamp, starting after it); PMT changes after the cut belong to what is dropped.
    let mut stopped: Vec<Pid> = Vec::new();
    let mut i = 0;
    out.retain(|q| {
        let at = i;
        i += 1;
        match q {
            Queued::Pmt(_) => at < cut_index,
            Queued::Packet(p) => {
                if stopped.contains(&p.pid) {
                    return false;
                }
                if p.packet.pusi() {
                    let late = match out_times(p) {
                        Some((pts, _)) => pts >= cut_pts,
                        None => at >= cut_index,
                    };
                    if late {
                        stopped.push(p.pid);
                        return false;
                    }
                }
                true
            }
        }
    });
    // The timeline from what stays.
    let mut tracks = emitted.tracks.clone();
    let mut pmt = &emitted.pmt;
    let mut last_due = None;
    for q in out.iter() {
        match q {
            Queued::Pmt(p) => pmt = p,
            Queued::Packet(p) => {
                last_due = Some(p.due);
                if let Some(t) = out_times(p) {
                    observe(&mut tracks, p.pid, t);
                }
            }
        }
    }
    let anchor = pmt.pcr_pid;
    let mut end_pts = None;
    if let Some(a) = tracks.iter().find(|k| k.pid == anchor) {
        timeline.end_90k = Some(a.last_dts + a.dur);
        timeline.end_pts_90k = Some(a.max_pts + a.dur);
        end_pts = timeline.end_pts_90k;
    }
    for k in &tracks {
        let end = k.max_pts + k.dur;
        match timeline.pid_ends.iter_mut().find(|(p, _)| *p == k.pid) {
            Some(slot) => slot.1 = end,
            None => timeline.pid_ends.push((k.pid, end)),
        }
    }
    timeline.last_due = last_due.unwrap_or(0).max(now);
    (pmt.clone(), end_pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_near_takes_the_nearest_turn() {
        let m = PTS_MODULUS as i64;
        assert_eq!(unwrap_near(Pts::new(100), 90), 100);
        assert_eq!(unwrap_near(Pts::new(100), m + 90), m + 100);
        assert_eq!(unwrap_near(Pts::new((m - 10) as u64), m + 5), m - 10);
        assert_eq!(unwrap_near(Pts::new(5), m - 10), m + 5);
    }
}
