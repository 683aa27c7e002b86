//! Joining recorded segments into one continuous transport stream (an archive's export).
//!
//! Each archived segment starts with a copy of the PAT and PMT the output sent last, so it
//! plays on its own; where a segment continues the one before, that copy is left out and the
//! join is the output exactly as it left. Where the recording was interrupted (a restart, a
//! gap), the segment after is kept whole (its tables are the new run's), every PID's
//! continuity counter is carried on from the one before the gap, and the first PCR after it
//! carries the discontinuity_indicator, so a receiver resets its clock there instead of
//! counting an error.

use crate::ts::PACKET_SIZE;

/// Joins segments, in order; see the module doc.
pub struct Joiner {
    /// The last continuity counter written per PID, for packets with a payload.
    last_cc: Box<[Option<u8>; 8192]>,
    /// What is added to each PID's counters since the last gap (mod 16), once known.
    shift: Box<[Option<u8>; 8192]>,
    /// A gap was crossed and no PCR has been written since.
    pcr_pending: bool,
    started: bool,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner::new()
    }
}

impl Joiner {
    /// A joiner with nothing written yet.
    pub fn new() -> Joiner {
        Joiner {
            last_cc: Box::new([None; 8192]),
            shift: Box::new([Some(0); 8192]),
            pcr_pending: false,
            started: false,
        }
    }

    /// Appends `segment` (whole packets; a partial last packet is dropped) to `out`: its
    /// first `psi_packets` (the table copy) are left out unless it is the first segment or
    /// `discontinuous` (the stream is discontinuous before it).
    pub fn push(
        &mut self,
        segment: &[u8],
        psi_packets: usize,
        discontinuous: bool,
        out: &mut Vec<u8>,
    ) {
        let gap = discontinuous && self.started;
        let skip = if self.started && !discontinuous {
            psi_packets
        } else {
            0
        };
        if gap {
            // Every PID's counters are carried on from before the gap, each from its first
            // packet after it.
            self.shift.fill(None);
            self.pcr_pending = true;
        }
        self.started = true;
        out.reserve(segment.len());
        for p in segment.chunks_exact(PACKET_SIZE).skip(skip) {
            let at = out.len();
            out.extend_from_slice(p);
            let q = &mut out[at..];
            if q[0] != 0x47 {
                continue;
            }
            let pid = usize::from(q[1] & 0x1F) << 8 | usize::from(q[2]);
            let afc = (q[3] >> 4) & 0x3;
            let has_payload = afc & 0x1 != 0;
            let has_af = afc & 0x2 != 0 && q[4] > 0;
            if self.pcr_pending && has_af && q[5] & 0x10 != 0 {
                q[5] |= 0x80;
                self.pcr_pending = false;
            }
            if pid == 0x1FFF {
                continue;
            }
            let cc = q[3] & 0x0F;
            if !has_payload {
                // Not counted, but it repeats its PID's counter: shifted the same way (or,
                // before its PID's first payload after a gap, the counter before it).
                let new = match self.shift[pid] {
                    Some(shift) => (cc + shift) & 0x0F,
                    None => self.last_cc[pid].unwrap_or(cc),
                };
                q[3] = (q[3] & 0xF0) | new;
                continue;
            }
            let shift = *self.shift[pid].get_or_insert_with(|| {
                self.last_cc[pid].map_or(0, |last| (last.wrapping_add(1).wrapping_sub(cc)) & 0x0F)
            });
            let new = (cc + shift) & 0x0F;
            q[3] = (q[3] & 0xF0) | new;
            self.last_cc[pid] = Some(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `pid` with counter `cc`, with a PCR when `pcr`.
    fn packet(pid: u16, cc: u8, pcr: bool) -> [u8; PACKET_SIZE] {
        let mut p = [0xFFu8; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        if pcr {
            p[3] = 0x30 | cc;
            p[4] = 7;
            p[5] = 0x10;
        } else {
            p[3] = 0x10 | cc;
        }
        p
    }

    /// The counters of `pid`'s packets with a payload; and checks that each adaptation-only
    /// packet repeats the counter before it.
    fn ccs(out: &[u8], pid: u16) -> Vec<u8> {
        let mut v: Vec<u8> = Vec::new();
        for p in out
            .chunks(PACKET_SIZE)
            .filter(|p| (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) == pid)
        {
            if p[3] & 0x10 == 0 {
                assert_eq!(v.last(), Some(&(p[3] & 0x0F)), "adaptation only: repeated");
            } else {
                v.push(p[3] & 0x0F);
            }
        }
        v
    }

    #[test]
    fn the_table_copy_goes_where_segments_continue_and_counters_carry_over_a_gap() {
        let seg = |psi_cc: u8, ccs: &[u8]| {
            let mut s = packet(0, psi_cc, false).to_vec();
            for (i, cc) in ccs.iter().enumerate() {
                s.extend_from_slice(&packet(0x100, *cc, i == 0));
            }
            // An adaptation-only packet repeats the counter.
            let mut af = packet(0x100, *ccs.last().unwrap(), false);
            af[3] = 0x20 | (af[3] & 0x0F);
            af[4] = 1;
            af[5] = 0;
            s.extend_from_slice(&af);
            s
        };
        let mut j = Joiner::new();
        let mut out = Vec::new();
        j.push(&seg(3, &[0, 1, 2]), 1, true, &mut out);
        j.push(&seg(3, &[3, 4]), 1, false, &mut out);
        assert_eq!(ccs(&out, 0), [3], "the second copy left out");
        assert_eq!(ccs(&out, 0x100), [0, 1, 2, 3, 4]);
        // After a gap: the new run's tables kept, every counter carried on.
        j.push(&seg(9, &[12, 13]), 1, true, &mut out);
        assert_eq!(ccs(&out, 0), [3, 4]);
        assert_eq!(ccs(&out, 0x100), [0, 1, 2, 3, 4, 5, 6]);
        let flagged: Vec<bool> = out
            .chunks(PACKET_SIZE)
            .filter(|p| p[3] & 0x20 != 0 && p[5] & 0x10 != 0)
            .map(|p| p[5] & 0x80 != 0)
            .collect();
        assert_eq!(flagged, [false, false, true], "the first PCR after the gap");
    }
}
