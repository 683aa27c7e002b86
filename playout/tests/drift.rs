//! A live source whose clock is not ours (ISO/IEC 13818-1 allows ±30 ppm), relayed on a
//! simulated clock: one 30 ppm fast and one 30 ppm slow, 24 hours each (`DRIFT_HOURS`
//! to change it; the two days take seconds). The source's packets arrive when its own clock
//! says (in 5 ms batches, as the engine drains its sockets), the splicer relays them as a live
//! item with a 300 ms lead, the pacer sends the constant-rate output on the true clock, and
//! the steering loop ([`Steer`], as the engine runs it every 100 ms) moves the output clock
//! to the source's. Over the whole run:
//!
//! - no buffer underflow or overflow: the muxer never runs dry, and the lead stays between
//!   50 ms and 1 s (no backlog growing; the slew limit lets the loop take about three hours
//!   to follow a 30 ppm step from cold, so the lead first strays a few hundred ms);
//! - no visible glitch: every video frame goes out once, in order, 40 ms apart in PTS, each
//!   decoded (DTS) after it has arrived (PCR) and less than 1.5 s later;
//! - the output PCR, against the true clock, within ±30 ppm (plus measuring error), moving
//!   at most 0.075 Hz/s (ISO/IEC 13818-1 §2.4.2.1), measured over 60 s windows.

use std::path::Path;
use std::process::Command;

use bytes::{Bytes, BytesMut};
use playout::mux::{Mux, MuxConfig, Underflow};
use playout::pacing::{Pacer, PacerConfig, Steer};
use playout::splice::{IoRequest, SpliceConfig, Splicer};
use playout::ts::PACKET_SIZE;

const MUXRATE: u64 = 600_000;
const LEAD_S: f64 = 0.3;
const NS: u64 = 1_000_000_000;

/// A 4 s clip (320x180 H.264 at 25 fps, an IDR every second, no B-frames, video only) made
/// by ffmpeg, its packets sent as its PCRs say (variable rate, so the packets of a pass span
/// less than the pass): looped, it is a source that never ends and never jumps.
fn clip(dir: &Path) -> Vec<u8> {
    let out = dir.join("clip.ts");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=4")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-bf",
            "0",
        ])
        .args(["-b:v", "300k", "-threads", "1", "-f", "mpegts"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => std::fs::read(&out).unwrap(),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "ffmpeg is required (scripts/test installs it)"
            );
            Vec::new()
        }
    }
}

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

fn pcr_of(p: &[u8]) -> Option<u64> {
    (p[3] & 0x20 != 0 && p[4] >= 7 && p[5] & 0x10 != 0).then(|| {
        let base = u64::from(p[6]) << 25
            | u64::from(p[7]) << 17
            | u64::from(p[8]) << 9
            | u64::from(p[9]) << 1
            | u64::from(p[10] >> 7);
        base * 300 + (u64::from(p[10] & 1) << 8 | u64::from(p[11]))
    })
}

fn set_pcr(p: &mut [u8], pcr: u64) {
    let (base, ext) = ((pcr / 300) & ((1 << 33) - 1), pcr % 300);
    p[6] = (base >> 25) as u8;
    p[7] = (base >> 17) as u8;
    p[8] = (base >> 9) as u8;
    p[9] = (base >> 1) as u8;
    p[10] = ((base & 1) as u8) << 7 | 0x7E | (ext >> 8) as u8;
    p[11] = ext as u8;
}

/// Where the PES header's PTS (and DTS) are in a payload-unit-start packet, if any.
fn pes_times(p: &[u8]) -> Option<(usize, u8)> {
    if p[1] & 0x40 == 0 || p[3] & 0x10 == 0 {
        return None;
    }
    let start = if p[3] & 0x20 != 0 {
        5 + usize::from(p[4])
    } else {
        4
    };
    let h = p.get(start..start + 9)?;
    (h[..3] == [0, 0, 1] && h[3] >= 0xE0).then_some((start + 9, h[7] >> 6))
}

fn read_ts(b: &[u8]) -> u64 {
    u64::from(b[0] >> 1 & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

fn write_ts(b: &mut [u8], v: u64) {
    let v = v & ((1 << 33) - 1);
    b[0] = (b[0] & 0xF0) | ((v >> 29) as u8 & 0x0E) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = ((v >> 14) as u8 & 0xFE) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v << 1) as u8) | 1;
}

/// The clip looped without end: each pass's PCR, PTS and DTS moved on by the clip's length,
/// continuity counters running on. Yields (source clock of the packet, 27 MHz; packet).
struct Looped {
    packets: Vec<[u8; PACKET_SIZE]>,
    /// Source clock of each packet in the first pass (PCR interpolated by position).
    at: Vec<u64>,
    len_27m: u64,
    cc: [u8; 8192],
    pass: u64,
    next: usize,
}

impl Looped {
    fn new(clip: &[u8]) -> Looped {
        let packets: Vec<[u8; PACKET_SIZE]> = clip
            .chunks_exact(PACKET_SIZE)
            .map(|c| c.try_into().unwrap())
            .collect();
        let pcrs: Vec<(usize, u64)> = packets
            .iter()
            .enumerate()
            .filter_map(|(k, p)| pcr_of(p).map(|t| (k, t)))
            .collect();
        assert!(pcrs.len() > 10, "the clip has PCRs");
        // Between two PCRs, by position; before the first and after the last, at the rate of
        // the nearest two.
        let at: Vec<u64> = (0..packets.len())
            .map(|k| {
                let i = pcrs
                    .partition_point(|(j, _)| *j <= k)
                    .clamp(1, pcrs.len() - 1);
                let ((ka, ta), (kb, tb)) = (pcrs[i - 1], pcrs[i]);
                let t =
                    ta as f64 + (k as f64 - ka as f64) * (tb as f64 - ta as f64) / (kb - ka) as f64;
                t.max(0.0) as u64
            })
            .collect();
        assert!(
            at[at.len() - 1] < at[0] + 4 * 27_000_000,
            "a pass spans less than its length"
        );
        // 100 frames of video: the pass is the clip's length in frames.
        let len_27m = 4 * 27_000_000;
        Looped {
            packets,
            at,
            len_27m,
            cc: [0; 8192],
            pass: 0,
            next: 0,
        }
    }

    fn next(&mut self) -> (u64, [u8; PACKET_SIZE]) {
        if self.next == self.packets.len() {
            self.next = 0;
            self.pass += 1;
        }
        let k = self.next;
        self.next += 1;
        let shift = self.pass * self.len_27m;
        let mut p = self.packets[k];
        if let Some(pcr) = pcr_of(&p) {
            set_pcr(&mut p, pcr + shift);
        }
        if let Some((end, flags)) = pes_times(&p) {
            let h = end; // PTS at h, DTS at h + 5
            for (present, at) in [(flags & 2 != 0, h), (flags == 3, h + 5)] {
                if present {
                    let v = read_ts(&p[at..at + 5]) + shift / 300;
                    write_ts(&mut p[at..at + 5], v);
                }
            }
        }
        let id = usize::from(pid(&p));
        if p[3] & 0x10 != 0 && id != 0x1FFF {
            p[3] = (p[3] & 0xF0) | self.cc[id];
            self.cc[id] = (self.cc[id] + 1) & 0x0F;
        }
        (self.at[k] + shift, p)
    }
}

/// One relayed run; panics on the first broken promise.
fn relay(clip: &[u8], src_ppb: i64, hours: u64) {
    let mut source = Looped::new(clip);
    let mut splicer = Splicer::new(SpliceConfig::new(1), 1);
    splicer.set_live(0, (LEAD_S * 27e6) as u64);
    let mut mux = Mux::new(MuxConfig::new(MUXRATE), vec![splicer]);
    let mut pacer = Pacer::new(PacerConfig::new(MUXRATE), 0);
    let mut steer = Steer::new(LEAD_S);
    let end = hours * 3600 * NS;
    // The source: packet k's source time s arrives at s / (1 + ppb) on the true clock.
    let arrival =
        |s: u64| -> u64 { (s as f64 / 27e6 / (1.0 + src_ppb as f64 * 1e-9) * 1e9) as u64 };
    let origin = source.at[0];
    let mut pending = source.next();
    let mut arrived = BytesMut::new();
    let mut reading = false;
    let mut next_batch = 0u64;
    let mut next_steer = 0u64;
    let mut out = BytesMut::new();
    // Checks.
    let mut video_pid = None;
    let mut last_pts: Option<u64> = None;
    let mut frames = 0u64;
    let mut pcr_marks: Vec<(u64, u64)> = Vec::new(); // (true ns, output PCR) each second
    let mut last_mark = 0u64;
    let mut lead_range = (f64::MAX, f64::MIN);
    let mut underflows_after_start = None;
    let mut t = 0u64;
    while t < end {
        // The network: what the source sent by `t`, in 5 ms batches.
        if t >= next_batch {
            next_batch += 5_000_000;
            while arrival(pending.0 - origin) <= t {
                arrived.extend_from_slice(&pending.1);
                pending = source.next();
            }
        }
        // The splicer's I/O: opened at once, reads answered with what has arrived.
        while let Some((_, req)) = mux.poll_io() {
            match req {
                IoRequest::Open { item, .. } => mux.program_mut(0).handle_opened(item),
                IoRequest::Read { .. } => reading = true,
            }
        }
        if reading && !arrived.is_empty() {
            reading = false;
            let now = mux.now();
            let data: Bytes = arrived.split().freeze();
            mux.program_mut(0).handle_data(now, 0, data);
            while let Some((_, req)) = mux.poll_io() {
                if let IoRequest::Read { .. } = req {
                    reading = true;
                }
            }
        }
        // The steering, every 100 ms.
        if t >= next_steer {
            next_steer += 100_000_000;
            let lead = mux
                .program_mut(0)
                .queued_until()
                .map(|until| (until as f64 - mux.now() as f64) / 27e6);
            let ppb = steer.update(t as f64 / 1e9, lead);
            pacer.set_rate_ppb(ppb);
            if t > 60 * NS {
                let l = lead.unwrap_or(0.0);
                lead_range = (lead_range.0.min(l), lead_range.1.max(l));
                assert!(
                    (0.05..1.0).contains(&l),
                    "source {src_ppb} ppb: lead {l:.3} s at {} s (rate {ppb} ppb)",
                    t / NS
                );
            }
        }
        // The output: what the pacer releases now.
        let n = pacer.poll_release(t) as usize;
        if n > 0 {
            let slot0 = mux.stats().packets;
            // ...so the output clock is measured where a datagram leaves: its first byte's
            // (the packets inside a datagram leave with it, up to 6 packets early).
            if t >= last_mark + NS {
                last_mark = t;
                pcr_marks.push((t, mux.slot_time(slot0)));
            }
            out.clear();
            mux.emit(&mut out, n * 7, Underflow::Stuff);
            for (i, p) in out.chunks_exact(PACKET_SIZE).enumerate() {
                let slot = slot0 + i as u64;
                // Every PCR is the output clock at its byte 10 (ISO/IEC 13818-1 §2.4.2.2)...
                if let Some(pcr) = pcr_of(p) {
                    let byte10 = (10 * 8 * 27_000_000 + MUXRATE / 2) / MUXRATE;
                    assert!(
                        pcr.abs_diff(mux.slot_time(slot) + byte10) <= 1,
                        "PCR {pcr} in slot {slot}"
                    );
                }
                if pid(p) == 0 || pid(p) == 0x1FFF {
                    continue;
                }
                if let Some((h, flags)) = pes_times(p) {
                    let id = pid(p);
                    if video_pid.is_none() && p[h - 6] >= 0xE0 {
                        video_pid = Some(id);
                    }
                    if video_pid == Some(id) {
                        let pts = read_ts(&p[h..h + 5]);
                        let dts = if flags == 3 {
                            read_ts(&p[h + 5..h + 10])
                        } else {
                            pts
                        };
                        if let Some(last) = last_pts {
                            assert_eq!(
                                pts.wrapping_sub(last) & ((1 << 33) - 1),
                                3600,
                                "source {src_ppb} ppb: frame {frames} at {} s",
                                t / NS
                            );
                        }
                        last_pts = Some(pts);
                        frames += 1;
                        // Decoded after it arrived, and not too long after.
                        let arrives = mux.slot_time(slot) as f64 / 300.0;
                        let wait = (dts as f64 - arrives) / 90_000.0;
                        assert!(
                            (0.0..1.5).contains(&wait),
                            "source {src_ppb} ppb: frame {frames} decoded {wait:.3} s after it arrives"
                        );
                    }
                }
            }
            if underflows_after_start.is_none() && frames > 0 {
                underflows_after_start = Some(mux.stats().underflows);
            }
        }
        // The next event.
        t = pacer
            .poll_timeout()
            .min(next_batch)
            .min(next_steer)
            .max(t + 1);
    }
    let underflows = mux.stats().underflows - underflows_after_start.unwrap_or(0);
    assert_eq!(underflows, 0, "source {src_ppb} ppb: the muxer ran dry");
    assert!(
        frames >= hours * 3600 * 25 - 100,
        "source {src_ppb} ppb: {frames} frames in {hours} h"
    );
    // The output clock against the true one, over 60 s windows: within ±30 ppm (plus 0.5 ppm
    // of measuring error), moving at most 0.075 Hz/s.
    let mut last_ppm: Option<f64> = None;
    let mut worst_slew = 0.0f64;
    let mut final_ppm = 0.0;
    for w in pcr_marks.windows(61).step_by(60) {
        let ((t0, p0), (t1, p1)) = (w[0], w[60]);
        let secs = (t1 - t0) as f64 / 1e9;
        let ppm = ((p1 - p0) as f64 / 27e6 / secs - 1.0) * 1e6;
        assert!(
            ppm.abs() <= 30.5,
            "source {src_ppb} ppb: output {ppm:.2} ppm"
        );
        if let Some(last) = last_ppm {
            let hz_per_s = (ppm - last) * 27.0 / secs;
            worst_slew = worst_slew.max(hz_per_s.abs());
            assert!(
                hz_per_s.abs() <= 0.075 + 0.01,
                "source {src_ppb} ppb: slew {hz_per_s:.4} Hz/s"
            );
        }
        last_ppm = Some(ppm);
        final_ppm = ppm;
    }
    eprintln!(
        "source {:+} ppm, {hours} h: {frames} frames, 0 underflows, lead {:.3}..{:.3} s, output clock ends at {final_ppm:+.2} ppm, worst slew {worst_slew:.4} Hz/s",
        src_ppb as f64 / 1000.0,
        lead_range.0,
        lead_range.1
    );
}

#[test]
fn a_source_30_ppm_off_is_relayed_without_a_glitch() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = clip(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    if clip.is_empty() {
        return;
    }
    let hours = std::env::var("DRIFT_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    for ppb in [-30_000, 30_000] {
        relay(&clip, ppb, hours);
    }
}
