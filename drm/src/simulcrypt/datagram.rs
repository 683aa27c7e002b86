//! ECM_datagram to TS packets on the ECM PID.
//!
//! With section_TSpkt_flag 0 the ECMG sends whole sections (one or more, back to back) and
//! the SCS packetises them (ISO/IEC 13818-1 §2.4.4: payload_unit_start_indicator and
//! pointer_field 0 on each section's first packet, 0xFF stuffing after its end); with 1 it
//! sends whole 188-byte packets, which only get the ECM PID and continuity counters.

use bytes::BytesMut;
use playout::psi::packetize_section;
use playout::ts::{header, Pid, PACKET_SIZE, SYNC_BYTE};

use super::error::SimulcryptError;
use super::message::SectionTspktFlag;

/// The TS packets that carry `datagram` on `pid` (an ECM_datagram, or an EMMG's datagram: the
/// same two forms). Continuity counters start at `*cc`, which
/// is left at the next packet's counter. Fails, writing nothing, if the datagram is not whole
/// sections (or whole TS packets) as `format` says.
pub fn ecm_packets(
    datagram: &[u8],
    format: SectionTspktFlag,
    pid: Pid,
    cc: &mut u8,
) -> Result<Vec<[u8; PACKET_SIZE]>, SimulcryptError> {
    check_datagram(datagram, format)?;
    let mut out = Vec::new();
    match format {
        SectionTspktFlag::Sections => {
            let mut buf = BytesMut::new();
            let mut next = *cc;
            for section in sections(datagram) {
                next = packetize_section(pid, section, next, &mut buf);
            }
            for chunk in buf.chunks_exact(PACKET_SIZE) {
                let mut p = [0u8; PACKET_SIZE];
                p.copy_from_slice(chunk);
                out.push(p);
            }
            *cc = next & 0x0F;
        }
        SectionTspktFlag::TsPackets => {
            for chunk in datagram.chunks_exact(PACKET_SIZE) {
                let mut p = [0u8; PACKET_SIZE];
                p.copy_from_slice(chunk);
                header::set_pid(&mut p, pid);
                // The counter advances on packets with a payload only.
                if header::has_payload(&p) {
                    header::set_continuity_counter(&mut p, *cc);
                    *cc = (*cc + 1) & 0x0F;
                } else {
                    header::set_continuity_counter(&mut p, cc.wrapping_sub(1));
                }
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Whether `datagram` is whole sections (each `table_id section_length(12)`, lengths adding
/// up exactly) or whole TS packets (multiple of 188 bytes, each starting with 0x47).
pub(crate) fn check_datagram(
    datagram: &[u8],
    format: SectionTspktFlag,
) -> Result<(), SimulcryptError> {
    let bad = SimulcryptError::BadDatagram {
        format,
        length: datagram.len(),
    };
    match format {
        SectionTspktFlag::Sections => {
            let mut rest = datagram;
            if rest.is_empty() {
                return Err(bad);
            }
            while !rest.is_empty() {
                let Some(len) = section_len(rest) else {
                    return Err(bad);
                };
                if len > rest.len() {
                    return Err(bad);
                }
                rest = &rest[len..];
            }
            Ok(())
        }
        SectionTspktFlag::TsPackets => {
            if datagram.is_empty()
                || datagram.len() % PACKET_SIZE != 0
                || datagram
                    .chunks_exact(PACKET_SIZE)
                    .any(|p| p[0] != SYNC_BYTE)
            {
                return Err(bad);
            }
            Ok(())
        }
    }
}

/// The whole length of the section at the start of `b`, `None` if its header is cut or it is
/// stuffing (table_id 0xFF).
fn section_len(b: &[u8]) -> Option<usize> {
    if b.len() < 3 || b[0] == 0xFF {
        return None;
    }
    Some(3 + usize::from(u16::from_be_bytes([b[1], b[2]]) & 0x0FFF))
}

/// The sections of a checked datagram.
fn sections(mut datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = section_len(datagram)?.min(datagram.len());
        let (s, rest) = datagram.split_at(len);
        datagram = rest;
        Some(s)
    })
}
