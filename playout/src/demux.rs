//! The tolerant demultiplexer (ISO/IEC 13818-1 §2.4.3; error counting per ETSI TR 101 290
//! §5.2.1 checks 1.1, 1.4, 2.1, 2.2).
//!
//! It takes a byte stream in chunks of any size, finds packets (resyncing on 0x47 followed by
//! another 0x47 one packet later), joins mid-stream (the first packet of each PID sets its
//! continuity counter), ignores reserved bits, counts continuity, CRC and transport errors and
//! keeps going. PAT and PMTs are assembled and parsed on the way, so programs and their
//! streams are discovered without a separate pass. Packets are handed out as zero-copy
//! [`TsPacket`] views into the pushed chunks.

use bytes::{Bytes, BytesMut};

use crate::psi::{Pat, Pmt, PsiError, SectionAssembler};
use crate::ts::{Pid, TsPacket, PACKET_SIZE, SYNC_BYTE};

/// What the demuxer reports while it reads.
#[derive(Debug)]
pub enum DemuxEvent<'a> {
    /// A new or changed PAT.
    Pat(&'a Pat),
    /// A new or changed PMT on `pid`.
    Pmt {
        /// The PMT PID.
        pid: Pid,
        /// The table.
        pmt: &'a Pmt,
    },
    /// A packet (null packets are not reported).
    Packet {
        /// The packet, handed over (the demuxer keeps no reference to it).
        packet: TsPacket,
        /// Index of the packet among the packets read (null packets included, bytes skipped
        /// to resync not), counting from 0: the input's position on its own byte clock.
        index: u64,
        /// Byte offset of the packet in the input.
        offset: u64,
        /// The continuity counter broke before this packet (data was lost), or the packet has
        /// transport_error_indicator set.
        damaged: bool,
        /// The packet repeats the previous one (same CC with payload): drop it.
        duplicate: bool,
    },
    /// Bytes were skipped to find packet sync again.
    SyncLoss {
        /// Byte offset where sync was lost.
        offset: u64,
        /// Bytes skipped.
        skipped: u64,
    },
    /// A PAT or PMT section failed to parse.
    Psi(PsiError),
}

/// Counters, read through [`Demux::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Packets read (null packets included).
    pub packets: u64,
    /// Bytes pushed.
    pub bytes: u64,
    /// Times sync was lost.
    pub sync_losses: u64,
    /// Bytes skipped while out of sync (or left over at the end).
    pub skipped_bytes: u64,
    /// Continuity counter errors.
    pub cc_errors: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets with transport_error_indicator.
    pub transport_errors: u64,
    /// PAT/PMT sections with a bad CRC or length.
    pub psi_errors: u64,
    /// Packets whose adaptation_field_length runs past the packet's end (over 183 with a
    /// payload, over 184 without): their payload cannot be found.
    pub bad_adaptation_fields: u64,
    /// The first damaged packet: where, for the operator to look.
    pub first_damage: Option<DamageAt>,
    /// While out of sync, sync bytes were found 192 bytes apart (M2TS/BDAV: a 4-byte time
    /// code before each packet) or 204 (Reed-Solomon parity after it): not 188-byte TS.
    pub other_packet_size: Option<u16>,
}

/// Where input damage was first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamageAt {
    /// Index of the packet among the packets read (from 0).
    pub packet: u64,
    /// Its PID.
    pub pid: u16,
    /// What was wrong with it.
    pub what: &'static str,
}

impl std::fmt::Display for DamageAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "packet {} (PID 0x{:04X}): {}",
            self.packet, self.pid, self.what
        )
    }
}

/// The demultiplexer state for one input.
pub struct Demux {
    carry: BytesMut,
    last_cc: Box<[u8; 8192]>,
    pat_asm: SectionAssembler,
    pmt_asm: Vec<(Pid, SectionAssembler)>,
    pat: Option<Pat>,
    pmts: Vec<(Pid, Pmt)>,
    /// (PID, (length, CRC)) of the last good section per PSI PID.
    last_section: Vec<(Pid, (usize, u32))>,
    stats: DemuxStats,
    offset: u64,
    in_sync: bool,
}

impl Default for Demux {
    fn default() -> Self {
        Demux {
            carry: BytesMut::new(),
            last_cc: Box::new([NO_CC; 8192]),
            pat_asm: SectionAssembler::default(),
            pmt_asm: Vec::new(),
            pat: None,
            pmts: Vec::new(),
            last_section: Vec::new(),
            stats: DemuxStats::default(),
            offset: 0,
            in_sync: true,
        }
    }
}

const NO_CC: u8 = 0xFF;

impl Demux {
    /// A demuxer at the start of an input.
    pub fn new() -> Demux {
        Demux::default()
    }

    /// The current PAT, once seen.
    pub fn pat(&self) -> Option<&Pat> {
        self.pat.as_ref()
    }

    /// The current PMT of `program_number`, once seen.
    pub fn pmt(&self, program_number: u16) -> Option<(Pid, &Pmt)> {
        self.pmts
            .iter()
            .find(|(_, p)| p.program_number == program_number)
            .map(|(pid, p)| (*pid, p))
    }

    /// Counters so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Feeds the next chunk of input. Reading `data` in multiples of 188 bytes keeps packets
    /// zero-copy; a packet split across chunks is copied once.
    pub fn push(&mut self, data: Bytes, on: &mut impl FnMut(DemuxEvent<'_>)) {
        self.stats.bytes += data.len() as u64;
        let buf = if self.carry.is_empty() {
            data
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&data);
            joined.freeze()
        };
        let base = self.offset;
        let mut i = 0usize;
        let n = buf.len();
        while i < n {
            if buf[i] != SYNC_BYTE || !self.confirmed(&buf, i) {
                // Lost sync: find two sync bytes one packet apart.
                let start = i;
                let mut j = i + 1;
                let found = loop {
                    if j >= n {
                        break None;
                    }
                    if buf[j] == SYNC_BYTE && self.confirmed(&buf, j) {
                        break Some(j);
                    }
                    if buf[j] == SYNC_BYTE && self.stats.other_packet_size.is_none() {
                        self.stats.other_packet_size = [192u16, 204].into_iter().find(|&k| {
                            (1..=3).all(|m| buf.get(j + m * usize::from(k)) == Some(&SYNC_BYTE))
                        });
                    }
                    if buf[j] == SYNC_BYTE && j + PACKET_SIZE >= n {
                        // Cannot confirm yet: wait for more data.
                        break Some(j);
                    }
                    j += 1;
                };
                let skip_to = found.unwrap_or(n);
                if self.in_sync {
                    self.stats.sync_losses += 1;
                }
                self.in_sync = false;
                let skipped = (skip_to - start) as u64;
                self.stats.skipped_bytes += skipped;
                on(DemuxEvent::SyncLoss {
                    offset: base + start as u64,
                    skipped,
                });
                i = skip_to;
                if found.is_none() || skip_to + PACKET_SIZE > n {
                    break;
                }
            }
            if i + PACKET_SIZE > n {
                break;
            }
            self.in_sync = true;
            let packet = TsPacket::new(buf.slice(i..i + PACKET_SIZE));
            if let Ok(packet) = packet {
                self.packet(packet, base + i as u64, on);
            }
            i += PACKET_SIZE;
        }
        if i < n {
            self.carry.extend_from_slice(&buf[i..]);
        }
        self.offset = base + n as u64 - self.carry.len() as u64;
    }

    /// Ends the input: bytes left over (a truncated last packet) are counted as skipped.
    /// Returns how many bytes were left over.
    pub fn finish(&mut self) -> usize {
        let left = self.carry.len();
        self.stats.skipped_bytes += left as u64;
        self.carry.clear();
        left
    }

    /// Notes the first damaged packet.
    fn note_damage(&mut self, packet: u64, pid: Pid, what: &'static str) {
        self.stats.first_damage.get_or_insert(DamageAt {
            packet,
            pid: pid.value(),
            what,
        });
    }

    /// A sync byte at `i` is confirmed when another follows one packet later (or the data
    /// ends before that).
    fn confirmed(&self, buf: &[u8], i: usize) -> bool {
        match buf.get(i + PACKET_SIZE) {
            Some(&b) => b == SYNC_BYTE,
            None => true,
        }
    }

    fn packet(&mut self, packet: TsPacket, offset: u64, on: &mut impl FnMut(DemuxEvent<'_>)) {
        // Packets read so far: skipped garbage does not count, null packets do.
        let index = self.stats.packets;
        self.stats.packets += 1;
        let pid = packet.pid();
        if pid == Pid::NULL {
            return;
        }
        let mut damaged = packet.tei();
        if damaged {
            self.stats.transport_errors += 1;
            self.note_damage(index, pid, "transport_error_indicator set");
        }
        // adaptation_field_control 11: the field's length must leave room for a payload.
        let raw = packet.raw();
        if raw[3] & 0x30 == 0x30 && raw[4] > 183 {
            self.stats.bad_adaptation_fields += 1;
            damaged = true;
            self.note_damage(index, pid, "adaptation_field_length past the packet's end");
        }
        let mut duplicate = false;
        let cc = packet.cc();
        let last = self.last_cc[pid.index()];
        if packet.has_payload() {
            let discontinuity = packet
                .adaptation_field()
                .is_some_and(|af| af.discontinuity());
            if last != NO_CC && !discontinuity {
                if cc == last {
                    duplicate = true;
                    self.stats.duplicates += 1;
                } else if cc != (last + 1) & 0x0F {
                    damaged = true;
                    self.stats.cc_errors += 1;
                    self.note_damage(index, pid, "continuity counter jump (data lost)");
                }
            }
            self.last_cc[pid.index()] = cc;
        }
        if !duplicate {
            self.psi(&packet, pid, !damaged, on);
        }
        on(DemuxEvent::Packet {
            packet,
            index,
            offset,
            damaged,
            duplicate,
        });
    }

    fn psi(
        &mut self,
        packet: &TsPacket,
        pid: Pid,
        continuous: bool,
        on: &mut impl FnMut(DemuxEvent<'_>),
    ) {
        if pid == Pid::PAT {
            let mut asm = std::mem::take(&mut self.pat_asm);
            asm.push(packet, continuous, |s| self.pat_section(s, on));
            self.pat_asm = asm;
            return;
        }
        let Some(k) = self.pmt_asm.iter().position(|(p, _)| *p == pid) else {
            return;
        };
        let mut asm = std::mem::take(&mut self.pmt_asm[k].1);
        asm.push(packet, continuous, |s| self.pmt_section(pid, s, on));
        if let Some((_, slot)) = self.pmt_asm.iter_mut().find(|(p, _)| *p == pid) {
            *slot = asm;
        }
    }

    /// Whether `section` repeats the last good section on `pid` byte for byte (same length
    /// and CRC): the common case, skipped without parsing or allocating.
    fn repeats(&mut self, pid: Pid, section: &[u8]) -> bool {
        let sig = signature(section);
        sig.is_some()
            && self
                .last_section
                .iter()
                .any(|(p, s)| *p == pid && Some(*s) == sig)
    }

    fn remember(&mut self, pid: Pid, section: &[u8]) {
        let Some(sig) = signature(section) else {
            return;
        };
        match self.last_section.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, s)) => *s = sig,
            None => self.last_section.push((pid, sig)),
        }
    }

    fn pat_section(&mut self, s: &[u8], on: &mut impl FnMut(DemuxEvent<'_>)) {
        if self.repeats(Pid::PAT, s) {
            return;
        }
        match Pat::parse(s) {
            Ok(pat) => {
                self.remember(Pid::PAT, s);
                if self.pat.as_ref() == Some(&pat) {
                    return;
                }
                self.pmt_asm
                    .retain(|(p, _)| pat.programs.iter().any(|(_, q)| q == p));
                self.pmts
                    .retain(|(p, _)| pat.programs.iter().any(|(_, q)| q == p));
                self.last_section
                    .retain(|(p, _)| *p == Pid::PAT || pat.programs.iter().any(|(_, q)| q == p));
                for (_, pmt_pid) in &pat.programs {
                    if !self.pmt_asm.iter().any(|(p, _)| p == pmt_pid) {
                        self.pmt_asm.push((*pmt_pid, SectionAssembler::default()));
                    }
                }
                on(DemuxEvent::Pat(&pat));
                self.pat = Some(pat);
            }
            Err(e) => {
                self.stats.psi_errors += 1;
                on(DemuxEvent::Psi(e));
            }
        }
    }

    fn pmt_section(&mut self, pid: Pid, s: &[u8], on: &mut impl FnMut(DemuxEvent<'_>)) {
        if s.first() != Some(&0x02) || self.repeats(pid, s) {
            return;
        }
        match Pmt::parse(pid, s) {
            Ok(pmt) => {
                self.remember(pid, s);
                let slot = self
                    .pmts
                    .iter()
                    .position(|(p, q)| *p == pid && q.program_number == pmt.program_number);
                let changed = slot.is_none_or(|k| self.pmts[k].1 != pmt);
                if changed {
                    on(DemuxEvent::Pmt { pid, pmt: &pmt });
                    match slot {
                        Some(k) => self.pmts[k].1 = pmt,
                        None => self.pmts.push((pid, pmt)),
                    }
                }
            }
            Err(e) => {
                self.stats.psi_errors += 1;
                on(DemuxEvent::Psi(e));
            }
        }
    }
}

/// (length, CRC_32) of a section: equal signatures mean a repeated section.
fn signature(section: &[u8]) -> Option<(usize, u32)> {
    let at = section.len().checked_sub(4)?;
    let crc = section.get(at..)?;
    Some((
        section.len(),
        u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psi::{packetize_section, EsInfo};

    fn stream() -> Vec<u8> {
        let pat = Pat {
            transport_stream_id: 1,
            version: 0,
            programs: vec![(1, Pid::from_bits(0x1000))],
            network_pid: None,
        };
        let pmt = Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: Pid::from_bits(0x100),
            program_info: Bytes::new(),
            streams: vec![EsInfo {
                stream_type: 0x1B,
                pid: Pid::from_bits(0x100),
                descriptors: Bytes::new(),
            }],
        };
        let mut out = BytesMut::new();
        packetize_section(Pid::PAT, &pat.build(), 0, &mut out);
        packetize_section(Pid::from_bits(0x1000), &pmt.build(), 0, &mut out);
        for cc in 0..20u8 {
            let mut p = [0u8; PACKET_SIZE];
            p[0] = 0x47;
            p[1] = 0x01;
            p[2] = 0x00;
            p[3] = 0x10 | (cc & 0x0F);
            out.extend_from_slice(&p);
        }
        out.to_vec()
    }

    fn run(chunks: &[&[u8]]) -> (Demux, usize, usize) {
        let mut d = Demux::new();
        let (mut packets, mut pmts) = (0, 0);
        for c in chunks {
            d.push(Bytes::copy_from_slice(c), &mut |e| match e {
                DemuxEvent::Packet { packet, .. } if packet.pid().value() == 0x100 => packets += 1,
                DemuxEvent::Pmt { .. } => pmts += 1,
                _ => {}
            });
        }
        d.finish();
        (d, packets, pmts)
    }

    #[test]
    fn finds_program_in_any_chunking() {
        let s = stream();
        for split in [1, 7, 188, 200, 1000, s.len()] {
            let chunks: Vec<&[u8]> = s.chunks(split).collect();
            let (d, packets, pmts) = run(&chunks);
            assert_eq!((packets, pmts), (20, 1), "split {split}");
            assert_eq!(d.stats().cc_errors, 0);
            assert_eq!(d.pmt(1).unwrap().1.streams.len(), 1);
        }
    }

    #[test]
    fn resyncs_after_garbage_and_counts_cc_error() {
        let s = stream();
        let mut g = s[..188 * 5].to_vec();
        g.extend_from_slice(&[0x47, 1, 2, 3, 0x47, 9, 9]);
        g.extend_from_slice(&s[188 * 6..]);
        let (d, packets, _) = run(&[&g]);
        assert_eq!(packets, 19);
        assert_eq!(d.stats().sync_losses, 1);
        assert_eq!(d.stats().cc_errors, 1);
    }

    #[test]
    fn joins_mid_stream_and_handles_truncation() {
        let s = stream();
        let (d, packets, pmts) = run(&[&s[188 * 2 + 50..s.len() - 100]]);
        assert_eq!(pmts, 0);
        assert_eq!(packets, 18);
        assert_eq!(d.stats().cc_errors, 0);
        assert!(d.stats().skipped_bytes >= 100);
    }

    #[test]
    fn pure_garbage_yields_nothing() {
        let g: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        let (d, packets, pmts) = run(&[&g]);
        assert_eq!((packets, pmts), (0, 0));
        assert!(d.pat().is_none());
    }
}
