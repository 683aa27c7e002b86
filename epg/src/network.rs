//! The network side of DVB SI (EN 300 468): the SDT of a transport stream, actual (0x42) or
//! other (0x46), and the NIT actual (0x40) with the network name, each transport stream's
//! service list and logical channel numbers. Both are split over sections of at most 1024
//! bytes. Parsers for the same, so they round-trip in tests.

use playout::psi::crc32_mpeg2;

use crate::si::{decode_text, descriptor, encode_text, long_section, Charset, Service, TextError};

/// Largest SDT or NIT section (EN 300 468 §5.1.1: section_length at most 1021).
pub const SECTION_MAX: usize = 1024;

/// EACEM/EICTA private_data_specifier, under which descriptor 0x83 is the logical channel
/// number descriptor (the one set-top boxes in cable and IPTV networks read).
const PDS_EACEM: u32 = 0x0000_0028;

/// Why an SDT or NIT cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A name the character set cannot hold.
    #[error(transparent)]
    Text(#[from] TextError),
    /// More than fits: one entry over a section, or more than 256 sections.
    #[error("{0}")]
    TooLarge(String),
}

/// Packs `entries` (each a whole loop entry) into section bodies so that every section,
/// with `fixed` bytes of header, tail and CRC, stays within [`SECTION_MAX`]. Always at least
/// one (possibly empty) body.
fn pack(entries: Vec<Vec<u8>>, fixed: usize) -> Result<Vec<Vec<u8>>, TableError> {
    let mut bodies = vec![Vec::new()];
    for e in entries {
        if fixed + e.len() > SECTION_MAX {
            return Err(TableError::TooLarge(format!(
                "one entry of {} bytes does not fit a {SECTION_MAX}-byte section",
                e.len()
            )));
        }
        let last = bodies.last().map_or(0, Vec::len);
        if fixed + last + e.len() > SECTION_MAX && last > 0 {
            bodies.push(Vec::new());
        }
        if let Some(b) = bodies.last_mut() {
            b.extend_from_slice(&e);
        }
    }
    if bodies.len() > 256 {
        return Err(TableError::TooLarge(format!(
            "{} sections, at most 256",
            bodies.len()
        )));
    }
    Ok(bodies)
}

/// The SDT of transport stream `ts` = (transport_stream_id, original_network_id): actual
/// (table 0x42, the stream it is carried in) or other (0x46, another stream of the network),
/// in as many sections as it takes.
pub fn sdt_sections(
    actual: bool,
    ts: (u16, u16),
    version: u8,
    services: &[Service],
    charset: Charset,
) -> Result<Vec<Vec<u8>>, TableError> {
    let mut entries = Vec::new();
    for s in services {
        let provider = encode_text(&s.provider, charset, 100)?;
        let name = encode_text(&s.name, charset, 100)?;
        let mut svc = vec![s.service_type, provider.len() as u8];
        svc.extend_from_slice(&provider);
        svc.push(name.len() as u8);
        svc.extend_from_slice(&name);
        let d = descriptor(0x48, &svc);
        let mut e = s.service_id.to_be_bytes().to_vec();
        e.push(0xFC | (u8::from(s.eit_schedule) << 1) | u8::from(s.eit_pf));
        // running_status 4 (running), free_CA_mode 0, descriptors_loop_length.
        e.extend_from_slice(&((4u16 << 13) | d.len() as u16).to_be_bytes());
        e.extend_from_slice(&d);
        entries.push(e);
    }
    let bodies = pack(entries, 8 + 3 + 4)?;
    let last = (bodies.len() - 1) as u8;
    let mut tail = ts.1.to_be_bytes().to_vec();
    tail.push(0xFF);
    let table_id = if actual { 0x42 } else { 0x46 };
    Ok(bodies
        .iter()
        .enumerate()
        .map(|(i, b)| long_section(table_id, ts.0, version, (i as u8, last), &tail, b))
        .collect())
}

/// One service of a transport stream, as the NIT lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitService {
    /// service_id (program number).
    pub service_id: u16,
    /// service_type (0x01 digital television).
    pub service_type: u8,
    /// Logical channel number (1..=1023), if the operator gave one.
    pub lcn: Option<u16>,
}

/// One transport stream of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportStream {
    /// transport_stream_id.
    pub transport_stream_id: u16,
    /// original_network_id.
    pub original_network_id: u16,
    /// Its services.
    pub services: Vec<NitService>,
}

/// The NIT actual (table 0x40): network_name_descriptor in the first section, then every
/// transport stream with a service_list_descriptor and, where services have numbers, a
/// private_data_specifier (EACEM) and logical_channel_descriptor (0x83).
pub fn nit(
    network_id: u16,
    version: u8,
    network_name: &str,
    streams: &[TransportStream],
    charset: Charset,
) -> Result<Vec<Vec<u8>>, TableError> {
    let name = descriptor(0x40, &encode_text(network_name, charset, 255)?);
    let mut entries = Vec::new();
    for ts in streams {
        let mut d = Vec::new();
        for chunk in ts.services.chunks(85) {
            let mut p = Vec::with_capacity(chunk.len() * 3);
            for s in chunk {
                p.extend_from_slice(&s.service_id.to_be_bytes());
                p.push(s.service_type);
            }
            d.extend(descriptor(0x41, &p));
        }
        let numbered: Vec<&NitService> = ts.services.iter().filter(|s| s.lcn.is_some()).collect();
        if !numbered.is_empty() {
            d.extend(descriptor(0x5F, &PDS_EACEM.to_be_bytes()));
            for chunk in numbered.chunks(63) {
                let mut p = Vec::with_capacity(chunk.len() * 4);
                for s in chunk {
                    p.extend_from_slice(&s.service_id.to_be_bytes());
                    // visible_service_flag 1, reserved 5 bits set, 10-bit number.
                    let n = s.lcn.unwrap_or(0) & 0x03FF;
                    p.extend_from_slice(&(0xFC00 | n).to_be_bytes());
                }
                d.extend(descriptor(0x83, &p));
            }
        }
        let mut e = ts.transport_stream_id.to_be_bytes().to_vec();
        e.extend_from_slice(&ts.original_network_id.to_be_bytes());
        e.extend_from_slice(&(0xF000 | d.len() as u16).to_be_bytes());
        e.extend_from_slice(&d);
        entries.push(e);
    }
    // Header 8, network descriptors (the name, first section only), loop length 2, CRC 4.
    let bodies = pack(entries, 8 + 2 + name.len() + 2 + 4)?;
    let last = (bodies.len() - 1) as u8;
    Ok(bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let first = if i == 0 { name.as_slice() } else { &[] };
            let mut tail = (0xF000 | first.len() as u16).to_be_bytes().to_vec();
            tail.extend_from_slice(first);
            tail.extend_from_slice(&(0xF000 | b.len() as u16).to_be_bytes());
            long_section(0x40, network_id, version, (i as u8, last), &tail, b)
        })
        .collect())
}

/// A long-form section's body between the 8-byte header and the CRC, if the CRC holds.
fn checked_body(section: &[u8]) -> Option<&[u8]> {
    let n = section.len();
    if n < 12 || crc32_mpeg2(&section[..n - 4]).to_be_bytes() != section[n - 4..] {
        return None;
    }
    Some(&section[8..n - 4])
}

/// The descriptors of a loop: (tag, payload).
fn descriptors(mut d: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let n = usize::from(*d.get(1)?);
        out.push((d[0], d.get(2..2 + n)?));
        d = &d[2 + n..];
    }
    Some(out)
}

/// A parsed SDT section: table_id, transport_stream_id, original_network_id, services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdtSection {
    /// 0x42 actual or 0x46 other.
    pub table_id: u8,
    /// transport_stream_id.
    pub transport_stream_id: u16,
    /// original_network_id.
    pub original_network_id: u16,
    /// Services of this section.
    pub services: Vec<Service>,
}

/// Reads an SDT section (`None` if it is not one or is damaged).
pub fn parse_sdt(section: &[u8]) -> Option<SdtSection> {
    let body = checked_body(section)?;
    if !matches!(section[0], 0x42 | 0x46) || body.len() < 3 {
        return None;
    }
    let mut out = SdtSection {
        table_id: section[0],
        transport_stream_id: u16::from_be_bytes([section[3], section[4]]),
        original_network_id: u16::from_be_bytes([body[0], body[1]]),
        services: Vec::new(),
    };
    let mut rest = &body[3..];
    while !rest.is_empty() {
        let head = rest.get(..5)?;
        let dlen = usize::from(u16::from_be_bytes([head[3], head[4]]) & 0x0FFF);
        let mut s = Service {
            service_id: u16::from_be_bytes([head[0], head[1]]),
            name: String::new(),
            provider: String::new(),
            service_type: 0,
            eit_pf: head[2] & 1 == 1,
            eit_schedule: head[2] & 2 == 2,
        };
        for (tag, p) in descriptors(rest.get(5..5 + dlen)?)? {
            if tag == 0x48 {
                s.service_type = *p.first()?;
                let pl = usize::from(*p.get(1)?);
                s.provider = decode_text(p.get(2..2 + pl)?);
                let nl = usize::from(*p.get(2 + pl)?);
                s.name = decode_text(p.get(3 + pl..3 + pl + nl)?);
            }
        }
        out.services.push(s);
        rest = &rest[5 + dlen..];
    }
    Some(out)
}

/// A parsed NIT section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitSection {
    /// network_id.
    pub network_id: u16,
    /// section_number, last_section_number.
    pub section: (u8, u8),
    /// Network name, if this section has the network_name_descriptor.
    pub name: Option<String>,
    /// Transport streams of this section (logical channel numbers filled in).
    pub streams: Vec<TransportStream>,
}

/// Reads a NIT actual section (`None` if it is not one or is damaged).
pub fn parse_nit(section: &[u8]) -> Option<NitSection> {
    let body = checked_body(section)?;
    if section[0] != 0x40 {
        return None;
    }
    let nd = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]) & 0x0FFF);
    let mut name = None;
    for (tag, p) in descriptors(body.get(2..2 + nd)?)? {
        if tag == 0x40 {
            name = Some(decode_text(p));
        }
    }
    let rest = body.get(2 + nd..)?;
    let ll = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) & 0x0FFF);
    let mut rest = rest.get(2..2 + ll)?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let head = rest.get(..6)?;
        let dlen = usize::from(u16::from_be_bytes([head[4], head[5]]) & 0x0FFF);
        let mut ts = TransportStream {
            transport_stream_id: u16::from_be_bytes([head[0], head[1]]),
            original_network_id: u16::from_be_bytes([head[2], head[3]]),
            services: Vec::new(),
        };
        let mut eacem = false;
        for (tag, p) in descriptors(rest.get(6..6 + dlen)?)? {
            match tag {
                0x41 => {
                    for c in p.chunks_exact(3) {
                        ts.services.push(NitService {
                            service_id: u16::from_be_bytes([c[0], c[1]]),
                            service_type: c[2],
                            lcn: None,
                        });
                    }
                }
                0x5F => eacem = p == PDS_EACEM.to_be_bytes(),
                0x83 if eacem => {
                    for c in p.chunks_exact(4) {
                        let id = u16::from_be_bytes([c[0], c[1]]);
                        let lcn = u16::from_be_bytes([c[2], c[3]]) & 0x03FF;
                        if let Some(s) = ts.services.iter_mut().find(|s| s.service_id == id) {
                            s.lcn = Some(lcn);
                        }
                    }
                }
                _ => {}
            }
        }
        streams.push(ts);
        rest = &rest[6 + dlen..];
    }
    Some(NitSection {
        network_id: u16::from_be_bytes([section[3], section[4]]),
        section: (section[6], section[7]),
        name,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: u16, name: &str) -> Service {
        Service {
            service_id: id,
            name: name.to_owned(),
            provider: "有线电视".to_owned(),
            service_type: 0x01,
            eit_pf: true,
            eit_schedule: id % 2 == 0,
        }
    }

    #[test]
    fn sdt_round_trips_actual_and_other_across_sections() {
        let services: Vec<Service> = (1..=60).map(|i| service(i, &format!("频道{i}"))).collect();
        for actual in [true, false] {
            let sections = sdt_sections(actual, (7, 0x1234), 3, &services, Charset::Utf8).unwrap();
            assert!(sections.len() > 1, "60 services need more than one section");
            let mut back = Vec::new();
            for (i, s) in sections.iter().enumerate() {
                assert!(s.len() <= SECTION_MAX);
                assert_eq!((s[6], s[7]), (i as u8, (sections.len() - 1) as u8));
                assert_eq!((s[5] >> 1) & 0x1F, 3);
                let p = parse_sdt(s).unwrap();
                assert_eq!(p.table_id, if actual { 0x42 } else { 0x46 });
                assert_eq!((p.transport_stream_id, p.original_network_id), (7, 0x1234));
                back.extend(p.services);
            }
            assert_eq!(back, services);
        }
    }

    #[test]
    fn nit_round_trips_name_services_and_channel_numbers() {
        let streams: Vec<TransportStream> = (1..=40)
            .map(|t| TransportStream {
                transport_stream_id: t,
                original_network_id: 0x2001,
                services: (0..4)
                    .map(|k| NitService {
                        service_id: t * 10 + k,
                        service_type: 0x01,
                        lcn: (k != 3).then_some(t * 4 + k),
                    })
                    .collect(),
            })
            .collect();
        let sections = nit(0x2001, 5, "城市有线网", &streams, Charset::Utf8).unwrap();
        assert!(sections.len() > 1);
        let mut back = Vec::new();
        for (i, s) in sections.iter().enumerate() {
            assert!(s.len() <= SECTION_MAX);
            let p = parse_nit(s).unwrap();
            assert_eq!(p.network_id, 0x2001);
            assert_eq!(p.section, (i as u8, (sections.len() - 1) as u8));
            assert_eq!(p.name.as_deref(), (i == 0).then_some("城市有线网"));
            back.extend(p.streams);
        }
        assert_eq!(back, streams);
    }

    #[test]
    fn damaged_sections_are_refused_not_panicked_on() {
        let huge = TransportStream {
            transport_stream_id: 1,
            original_network_id: 1,
            services: (0..400)
                .map(|i| NitService {
                    service_id: i,
                    service_type: 1,
                    lcn: Some(i % 1000 + 1),
                })
                .collect(),
        };
        assert!(matches!(
            nit(1, 0, "n", &[huge], Charset::Latin),
            Err(TableError::TooLarge(_))
        ));
        let s = nit(1, 0, "n", &[], Charset::Latin).unwrap().remove(0);
        assert!(parse_nit(&s).is_some());
        for cut in 0..s.len() {
            assert!(parse_nit(&s[..cut]).is_none());
            assert!(parse_sdt(&s[..cut]).is_none());
        }
        let mut bad = s.clone();
        bad[9] ^= 0xFF;
        assert!(parse_nit(&bad).is_none());
    }
}
