//! Packet views over the accessors of [`super::header`]: [`TsPacket`] owns a
//! reference-counted [`Bytes`] and [`TsPacketMut`] borrows a mutable slot of an output buffer.

use bytes::Bytes;

use super::header::{has_adaptation_field, has_payload, payload_start, pid, pusi};
use super::{Pid, TsError, PACKET_SIZE, SYNC_BYTE};
use crate::pes;
use crate::time::Pcr;

/// An immutable 188-byte packet; `clone` is a reference-count bump.
#[derive(Clone, PartialEq, Eq)]
pub struct TsPacket(Bytes);

impl std::fmt::Debug for TsPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsPacket")
            .field("pid", &self.pid())
            .field("pusi", &self.pusi())
            .field("cc", &self.cc())
            .finish()
    }
}

impl TsPacket {
    /// Wraps 188 bytes starting with 0x47.
    pub fn new(bytes: Bytes) -> Result<TsPacket, TsError> {
        if bytes.len() != PACKET_SIZE {
            return Err(TsError::Length(bytes.len()));
        }
        if bytes[0] != SYNC_BYTE {
            return Err(TsError::Sync(bytes[0]));
        }
        Ok(TsPacket(bytes))
    }
    /// The whole packet.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
    /// Consumes the view, returning the packet bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
    /// The packet as a fixed-size array reference.
    pub fn raw(&self) -> &[u8] {
        &self.0
    }
    /// The PID.
    pub fn pid(&self) -> Pid {
        pid(&self.0)
    }
    /// payload_unit_start_indicator.
    pub fn pusi(&self) -> bool {
        pusi(&self.0)
    }
    /// transport_error_indicator.
    pub fn tei(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// transport_scrambling_control (0 = clear).
    pub fn scrambling(&self) -> u8 {
        super::header::scrambling_control(&self.0)
    }
    /// continuity_counter.
    pub fn cc(&self) -> u8 {
        super::header::continuity_counter(&self.0)
    }
    /// Whether the packet carries a payload (adaptation_field_control 01 or 11).
    pub fn has_payload(&self) -> bool {
        has_payload(&self.0)
    }
    /// The adaptation field, if present and well formed.
    pub fn adaptation_field(&self) -> Option<AdaptationField<'_>> {
        adaptation_field(&self.0)
    }
    /// The PCR, if the adaptation field carries one.
    pub fn pcr(&self) -> Option<Pcr> {
        self.adaptation_field().and_then(|af| af.pcr())
    }
    /// Offset of the payload in the packet, `None` without payload or with a malformed
    /// adaptation field.
    pub fn payload_offset(&self) -> Option<usize> {
        payload_offset(&self.0)
    }
    /// The payload bytes (empty without payload).
    pub fn payload(&self) -> &[u8] {
        match payload_offset(&self.0) {
            Some(o) => &self.0[o..],
            None => &[],
        }
    }
}

/// The adaptation field (§2.4.3.4): `length(8) | DI RAI ESPI PCR OPCR SPF TPD AFE | ...`.
#[derive(Clone, Copy, Debug)]
pub struct AdaptationField<'a>(&'a [u8]);

impl AdaptationField<'_> {
    /// The flags byte (0 for a zero-length field).
    fn flags(&self) -> u8 {
        self.0.first().copied().unwrap_or(0)
    }
    /// discontinuity_indicator.
    pub fn discontinuity(&self) -> bool {
        self.flags() & 0x80 != 0
    }
    /// random_access_indicator.
    pub fn random_access(&self) -> bool {
        self.flags() & 0x40 != 0
    }
    /// The PCR, when PCR_flag is set.
    pub fn pcr(&self) -> Option<Pcr> {
        if self.flags() & 0x10 == 0 || self.0.len() < 7 {
            return None;
        }
        Some(read_pcr(&self.0[1..7]))
    }
}

/// A mutable packet view for in-place rewrites of the output copy.
pub struct TsPacketMut<'a>(&'a mut [u8]);

impl<'a> TsPacketMut<'a> {
    /// Borrows a 188-byte slot starting with 0x47.
    pub fn new(slot: &'a mut [u8]) -> Result<TsPacketMut<'a>, TsError> {
        if slot.len() != PACKET_SIZE {
            return Err(TsError::Length(slot.len()));
        }
        if slot[0] != SYNC_BYTE {
            return Err(TsError::Sync(slot[0]));
        }
        Ok(TsPacketMut(slot))
    }
    /// The PID.
    pub fn pid(&self) -> Pid {
        pid(self.0)
    }
    /// Whether the packet carries a payload.
    pub fn has_payload(&self) -> bool {
        has_payload(self.0)
    }
    /// Rewrites the PID, keeping TEI, PUSI and priority.
    pub fn set_pid(&mut self, pid: Pid) {
        super::header::set_pid(self.0, pid);
    }
    /// Rewrites the continuity counter.
    pub fn set_cc(&mut self, cc: u8) {
        super::header::set_continuity_counter(self.0, cc);
    }
    /// Whether the adaptation field carries a PCR.
    pub fn has_pcr(&self) -> bool {
        adaptation_field(self.0).is_some_and(|af| af.pcr().is_some())
    }
    /// Rewrites the PCR in place; returns false (and changes nothing) without a PCR field.
    pub fn set_pcr(&mut self, pcr: Pcr) -> bool {
        if !self.has_pcr() {
            return false;
        }
        write_pcr(&mut self.0[6..12], pcr);
        true
    }
    /// Shifts the PTS and DTS of a PES header starting in this packet by `delta` 90 kHz
    /// ticks (wrapping at 2^33); returns false when the packet starts no PES header with
    /// timestamps that fit in this packet.
    pub fn shift_timestamps(&mut self, delta: i64) -> bool {
        if !pusi(self.0) {
            return false;
        }
        let Some(off) = payload_offset(self.0) else {
            return false;
        };
        pes::shift_timestamps(&mut self.0[off..], delta)
    }
    /// Overwrites `bytes` at `offset` (NAL header patches located by the splicer); ignored
    /// when it would touch the header or run past the packet.
    pub fn patch(&mut self, offset: usize, bytes: &[u8]) {
        if offset > 3 && offset + bytes.len() <= PACKET_SIZE {
            self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }
    /// [`TsPacketMut::set_discontinuity`] off, then [`TsPacketMut::set_pcr`] with `pcr()`,
    /// asked only of a packet that carries a PCR: one look at the adaptation field, and the
    /// PCR computed only when it is needed. Returns whether a PCR was written.
    pub fn clear_discontinuity_set_pcr(&mut self, pcr: impl FnOnce() -> Pcr) -> bool {
        if !has_adaptation_field(self.0) || self.0[4] == 0 {
            return false;
        }
        self.0[5] &= 0x7F;
        let len = usize::from(self.0[4]);
        if 5 + len > PACKET_SIZE || len < 7 || self.0[5] & 0x10 == 0 {
            return false;
        }
        write_pcr(&mut self.0[6..12], pcr());
        true
    }
    /// Sets discontinuity_indicator if there is an adaptation field with a flags byte.
    pub fn set_discontinuity(&mut self, on: bool) {
        if has_adaptation_field(self.0) && self.0[4] > 0 {
            if on {
                self.0[5] |= 0x80;
            } else {
                self.0[5] &= 0x7F;
            }
        }
    }
}

/// Builds an adaptation-field-only packet carrying just a PCR (CC is left 0; set it on
/// emission to the PID's current counter, which does not advance without payload).
pub fn pcr_only_packet(pid: Pid, pcr: Pcr) -> [u8; PACKET_SIZE] {
    let mut p = [0xFFu8; PACKET_SIZE];
    p[0] = SYNC_BYTE;
    p[1] = (pid.value() >> 8) as u8;
    p[2] = pid.value() as u8;
    p[3] = 0x20;
    p[4] = 183;
    p[5] = 0x10;
    write_pcr(&mut p[6..12], pcr);
    p
}

fn adaptation_field(p: &[u8]) -> Option<AdaptationField<'_>> {
    if !has_adaptation_field(p) {
        return None;
    }
    let len = p[4] as usize;
    if 5 + len > PACKET_SIZE {
        return None;
    }
    Some(AdaptationField(&p[5..5 + len]))
}

pub(crate) fn payload_offset(p: &[u8]) -> Option<usize> {
    payload_start(p).ok()
}

fn read_pcr(b: &[u8]) -> Pcr {
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let ext = (u16::from(b[4] & 0x01) << 8) | u16::from(b[5]);
    Pcr::from_parts(base, ext.min(299))
}

/// Writes `base(33) reserved(6)=1 ext(9)`.
fn write_pcr(b: &mut [u8], pcr: Pcr) {
    let base = pcr.base();
    let ext = pcr.ext();
    b[0] = (base >> 25) as u8;
    b[1] = (base >> 17) as u8;
    b[2] = (base >> 9) as u8;
    b[3] = (base >> 1) as u8;
    b[4] = ((base as u8 & 1) << 7) | 0x7E | (ext >> 8) as u8;
    b[5] = ext as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::NULL_PACKET;

    fn packet_with_pcr(pcr: Pcr) -> Vec<u8> {
        pcr_only_packet(Pid::from_bits(0x100), pcr).to_vec()
    }

    #[test]
    fn null_packet_header() {
        let p = TsPacket::new(Bytes::from_static(&NULL_PACKET)).unwrap();
        assert_eq!(p.pid(), Pid::NULL);
        assert!(p.has_payload());
        assert_eq!(p.payload().len(), 184);
    }

    #[test]
    fn rejects_bad_length_and_sync() {
        assert_eq!(
            TsPacket::new(Bytes::from_static(&[0x47; 10])),
            Err(TsError::Length(10))
        );
        let mut v = NULL_PACKET.to_vec();
        v[0] = 0x48;
        assert_eq!(TsPacket::new(Bytes::from(v)), Err(TsError::Sync(0x48)));
    }

    #[test]
    fn pcr_roundtrip_and_rewrite() {
        let pcr = Pcr::from_parts(0x1_2345_6789, 123);
        let mut v = packet_with_pcr(pcr);
        let p = TsPacket::new(Bytes::from(v.clone())).unwrap();
        assert_eq!(p.pcr(), Some(pcr));
        assert!(!p.has_payload());
        let mut m = TsPacketMut::new(&mut v).unwrap();
        let new = Pcr::from_parts(7, 299);
        assert!(m.set_pcr(new));
        m.set_pid(Pid::from_bits(0x1FFE));
        m.set_cc(0x1F);
        let p = TsPacket::new(Bytes::from(v)).unwrap();
        assert_eq!(p.pcr(), Some(new));
        assert_eq!(p.pid().value(), 0x1FFE);
        assert_eq!(p.cc(), 0xF);
    }

    #[test]
    fn one_look_rewrites_as_the_two_calls_and_asks_the_pcr_only_when_needed() {
        let pcr = Pcr::from_parts(0x1_2345_6789, 123);
        let new = Pcr::from_parts(7, 299);
        // Each case: the packet, and whether it carries a PCR to rewrite.
        let mut cases = vec![(NULL_PACKET.to_vec(), false)];
        let mut with_di = packet_with_pcr(pcr);
        with_di[5] |= 0x80;
        cases.push((with_di, true));
        let mut empty_af = NULL_PACKET.to_vec();
        (empty_af[3], empty_af[4]) = (0x30, 0);
        cases.push((empty_af, false));
        // PCR_flag set in a field too short to hold one, and a field running past the packet.
        let mut short = packet_with_pcr(pcr);
        short[4] = 3;
        short[5] |= 0x80;
        cases.push((short, false));
        let mut long = packet_with_pcr(pcr);
        long[4] = 200;
        cases.push((long, false));
        for (k, (v, has_pcr)) in cases.into_iter().enumerate() {
            let mut two = v.clone();
            let mut m = TsPacketMut::new(&mut two).unwrap();
            m.set_discontinuity(false);
            assert_eq!(m.set_pcr(new), has_pcr, "case {k}");
            let mut one = v.clone();
            let mut asked = false;
            let wrote = TsPacketMut::new(&mut one)
                .unwrap()
                .clear_discontinuity_set_pcr(|| {
                    asked = true;
                    new
                });
            assert_eq!((wrote, asked), (has_pcr, has_pcr), "case {k}");
            assert_eq!(one, two, "case {k}");
        }
    }

    #[test]
    fn malformed_adaptation_length_is_tolerated() {
        let mut v = NULL_PACKET.to_vec();
        v[3] = 0x30;
        v[4] = 200;
        let p = TsPacket::new(Bytes::from(v)).unwrap();
        assert!(p.adaptation_field().is_none());
        assert!(p.payload().is_empty());
    }
}
