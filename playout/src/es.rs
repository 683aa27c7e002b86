//! Elementary streams: classification from the PMT (ISO/IEC 13818-1 Table 2-34, ETSI
//! EN 300 468 Annex C descriptors) and random access points: H.264 IDR and recovery-point
//! I pictures (ITU-T H.264 §7.4.1.2, Annex D.2.8), HEVC IRAP pictures (ITU-T H.265 Table 7-1),
//! MPEG-2 sequence headers, and audio frame syncs.

use crate::psi::EsInfo;

/// What a stream is for; decides its output PID range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamClass {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// DVB subtitles or teletext.
    Subtitle,
    /// Anything else (SCTE-35, private data, ...).
    Data,
}

/// The coding of a stream, as far as the splicer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// MPEG-1/2 video (0x01, 0x02).
    Mpeg2Video,
    /// H.264/AVC (0x1B).
    H264,
    /// H.265/HEVC (0x24).
    Hevc,
    /// Another video coding, by stream_type (AVS+, AVS2, AVS3, MPEG-4 part 2, ...).
    OtherVideo(u8),
    /// MPEG-1/2 audio layers I-III (0x03, 0x04).
    MpegAudio,
    /// AAC in ADTS (0x0F).
    Aac,
    /// AAC in LATM (0x11).
    AacLatm,
    /// AC-3 (0x81, or 0x06 with the AC-3 descriptor).
    Ac3,
    /// E-AC-3 (0x87, or 0x06 with the enhanced AC-3 descriptor).
    Eac3,
    /// Another audio coding, by stream_type and (for 0x06) descriptor tag.
    OtherAudio(u8, u8),
    /// DVB subtitles (0x06 with subtitling_descriptor).
    DvbSubtitle,
    /// Teletext (0x06 with teletext_descriptor).
    Teletext,
    /// Data by stream_type and (for 0x06) first descriptor tag.
    Data(u8, u8),
}

impl Codec {
    /// Classifies a PMT entry.
    pub fn of(es: &EsInfo) -> Codec {
        let has = |tag: u8| es.descriptors().any(|(t, _)| t == tag);
        match es.stream_type {
            0x01 | 0x02 => Codec::Mpeg2Video,
            0x1B => Codec::H264,
            0x24 => Codec::Hevc,
            0x10 | 0x42 | 0xD2 | 0xD4 | 0x20 | 0x1F => Codec::OtherVideo(es.stream_type),
            0x03 | 0x04 => Codec::MpegAudio,
            0x0F => Codec::Aac,
            0x11 => Codec::AacLatm,
            0x81 => Codec::Ac3,
            0x87 => Codec::Eac3,
            0xD5 => Codec::OtherAudio(0xD5, 0),
            0x06 if has(0x6A) => Codec::Ac3,
            0x06 if has(0x7A) => Codec::Eac3,
            0x06 if has(0x59) => Codec::DvbSubtitle,
            0x06 if has(0x56) => Codec::Teletext,
            0x06 if has(0x7B) => Codec::OtherAudio(0x06, 0x7B),
            0x06 if has(0x7C) => Codec::OtherAudio(0x06, 0x7C),
            0x06 if has(0x7F) => Codec::OtherAudio(0x06, 0x7F),
            t => Codec::Data(t, es.descriptors().next().map_or(0, |(tag, _)| tag)),
        }
    }

    /// The stream's class.
    pub fn class(self) -> StreamClass {
        match self {
            Codec::Mpeg2Video | Codec::H264 | Codec::Hevc | Codec::OtherVideo(_) => {
                StreamClass::Video
            }
            Codec::MpegAudio
            | Codec::Aac
            | Codec::AacLatm
            | Codec::Ac3
            | Codec::Eac3
            | Codec::OtherAudio(..) => StreamClass::Audio,
            Codec::DvbSubtitle | Codec::Teletext => StreamClass::Subtitle,
            Codec::Data(..) => StreamClass::Data,
        }
    }
}

/// What an access unit is, for splicing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessUnit {
    /// H.264 IDR or HEVC IDR/BLA: decoding can start here, no leading pictures to worry about.
    Idr,
    /// An open-GOP entry point: HEVC CRA, or an H.264 I picture with a recovery point.
    /// Leading pictures that follow in decode order may reference the previous GOP.
    OpenGop,
    /// MPEG-2 I picture behind a sequence header.
    SequenceStart,
    /// Not a random access point.
    Other,
}

impl AccessUnit {
    /// Whether decoding can start here.
    pub fn is_random_access(self) -> bool {
        self != AccessUnit::Other
    }
}

/// Result of scanning the start of a video access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// What the first picture is.
    pub kind: AccessUnit,
    /// Offset in the scanned bytes of the first VCL NAL unit's header byte.
    pub vcl_offset: usize,
}

/// HEVC NAL unit types (H.265 Table 7-1).
pub mod hevc {
    /// Random access skipped leading picture, non-reference.
    pub const RASL_N: u8 = 8;
    /// Random access skipped leading picture, reference.
    pub const RASL_R: u8 = 9;
    /// Broken link access with leading pictures.
    pub const BLA_W_LP: u8 = 16;
    /// Broken link access, no leading pictures.
    pub const BLA_N_LP: u8 = 18;
    /// IDR with RADL pictures.
    pub const IDR_W_RADL: u8 = 19;
    /// IDR without leading pictures.
    pub const IDR_N_LP: u8 = 20;
    /// Clean random access.
    pub const CRA: u8 = 21;
}

/// Scans the start of a video access unit (`au`: PES payload bytes) up to its first picture.
/// Returns `None` when no picture header is inside `au` yet (scan more bytes).
pub fn scan_access_unit(codec: Codec, au: &[u8]) -> Option<Scan> {
    match codec {
        Codec::H264 => scan_h264(au),
        Codec::Hevc => scan_hevc(au),
        Codec::Mpeg2Video => scan_mpeg2(au),
        _ => None,
    }
}

fn scan_h264(au: &[u8]) -> Option<Scan> {
    let mut recovery = false;
    for (off, nal) in nal_units(au) {
        let ty = au[off] & 0x1F;
        match ty {
            5 => {
                return Some(Scan {
                    kind: AccessUnit::Idr,
                    vcl_offset: off,
                })
            }
            1 | 2 => {
                let intra = h264_slice_is_intra(&nal[1..]);
                let kind = if intra && recovery {
                    AccessUnit::OpenGop
                } else {
                    AccessUnit::Other
                };
                return Some(Scan {
                    kind,
                    vcl_offset: off,
                });
            }
            // SEI with payload type 6 (recovery point) first.
            6 => recovery |= nal.get(1) == Some(&6),
            _ => {}
        }
    }
    None
}

fn scan_hevc(au: &[u8]) -> Option<Scan> {
    for (off, nal) in nal_units(au) {
        if nal.len() < 2 {
            continue;
        }
        let ty = (au[off] >> 1) & 0x3F;
        if ty < 32 {
            let kind = match ty {
                hevc::BLA_W_LP..=hevc::IDR_N_LP => AccessUnit::Idr,
                hevc::CRA => AccessUnit::OpenGop,
                _ => AccessUnit::Other,
            };
            return Some(Scan {
                kind,
                vcl_offset: off,
            });
        }
    }
    None
}

fn scan_mpeg2(au: &[u8]) -> Option<Scan> {
    let mut seq = false;
    for (off, _) in nal_units(au) {
        match au[off] {
            0xB3 => seq = true,
            0x00 => {
                // picture_start_code: picture_coding_type is bits 3..5 of the second byte after.
                let ty = au.get(off + 2).map(|b| (b >> 3) & 0x07);
                let kind = if seq && ty == Some(1) {
                    AccessUnit::SequenceStart
                } else {
                    AccessUnit::Other
                };
                return Some(Scan {
                    kind,
                    vcl_offset: off,
                });
            }
            _ => {}
        }
    }
    None
}

/// Iterates `(offset of the byte after the start code, unit up to the next start code)`
/// without allocating.
fn nal_units(b: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut next = find_start(b, 0);
    std::iter::from_fn(move || {
        let s = next?;
        next = find_start(b, s);
        let e = next.map_or(b.len(), |n| n - 3);
        (s < b.len()).then(|| (s, &b[s..e.max(s)]))
    })
}

/// Offset just past the next 00 00 01 at or after `from`.
fn find_start(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= b.len() {
        if b[i + 2] > 1 {
            i += 3;
        } else if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            return Some(i + 3);
        } else {
            i += 1;
        }
    }
    None
}

/// Reads first_mb_in_slice and slice_type (both ue(v)) and says whether the slice is I or SI.
fn h264_slice_is_intra(rbsp: &[u8]) -> bool {
    let mut r = BitReader { b: rbsp, pos: 0 };
    let _first_mb = r.ue();
    matches!(r.ue().map(|t| t % 5), Some(2) | Some(4))
}

struct BitReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.pos / 8)?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(v))
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut v = 0u32;
        for _ in 0..zeros {
            v = (v << 1) | self.bit()?;
        }
        Some((1u32 << zeros) - 1 + v)
    }
}

/// Whether `payload` (the start of an audio PES payload) begins with a frame sync of `codec`.
pub fn audio_frame_start(codec: Codec, payload: &[u8]) -> bool {
    let (Some(&a), Some(&b)) = (payload.first(), payload.get(1)) else {
        return false;
    };
    match codec {
        Codec::Aac => a == 0xFF && b & 0xF6 == 0xF0,
        Codec::MpegAudio => a == 0xFF && b & 0xE0 == 0xE0,
        Codec::Ac3 | Codec::Eac3 => a == 0x0B && b == 0x77,
        Codec::AacLatm => a == 0x56 && b & 0xE0 == 0xE0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn es(stream_type: u8, desc: &'static [u8]) -> EsInfo {
        EsInfo {
            stream_type,
            pid: crate::ts::Pid::from_bits(0x100),
            descriptors: Bytes::from_static(desc),
        }
    }

    #[test]
    fn classifies_dvb_private_streams() {
        assert_eq!(Codec::of(&es(0x06, &[0x6A, 1, 0])), Codec::Ac3);
        assert_eq!(
            Codec::of(&es(0x06, &[0x59, 0])).class(),
            StreamClass::Subtitle
        );
        assert_eq!(Codec::of(&es(0x1B, &[])).class(), StreamClass::Video);
        assert_eq!(Codec::of(&es(0x86, &[])).class(), StreamClass::Data);
    }

    #[test]
    fn h264_idr_behind_aud_and_sps() {
        // AUD (9), SPS (7), PPS (8), IDR slice (5) per H.264 Table 7-1.
        let au = [
            0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x64, 0, 0, 1, 0x68, 0xEE, 0, 0, 1, 0x65, 0x88,
        ];
        let s = scan_access_unit(Codec::H264, &au).unwrap();
        assert_eq!(s.kind, AccessUnit::Idr);
        assert_eq!(s.vcl_offset, 19);
    }

    #[test]
    fn h264_open_gop_i_with_recovery_point() {
        // SEI payload type 6 (recovery point), then a non-IDR slice: first_mb 0 ('1'),
        // slice_type 7 = I ('0001000'), so the bits are 1000 1000 -> 0x88.
        let au = [
            0, 0, 1, 0x06, 0x06, 0x01, 0xC4, 0x80, 0, 0, 1, 0x41, 0x88, 0x80,
        ];
        assert_eq!(
            scan_access_unit(Codec::H264, &au).unwrap().kind,
            AccessUnit::OpenGop
        );
        // The same slice without the recovery point is just an I picture mid-GOP.
        assert_eq!(
            scan_access_unit(Codec::H264, &au[8..]).unwrap().kind,
            AccessUnit::Other
        );
        // A P slice (slice_type 5 -> '00110' after first_mb '1': 1001 1000 = 0x98).
        let p = [0, 0, 1, 0x41, 0x98];
        assert_eq!(
            scan_access_unit(Codec::H264, &p).unwrap().kind,
            AccessUnit::Other
        );
    }

    #[test]
    fn hevc_cra_and_idr() {
        // AUD (35 << 1 = 0x46), VPS (32 -> 0x40), CRA (21 -> 0x2A).
        let au = [
            0, 0, 0, 1, 0x46, 0x01, 0x50, 0, 0, 1, 0x40, 0x01, 0x0C, 0, 0, 1, 0x2A, 0x01, 0xAF,
        ];
        let s = scan_access_unit(Codec::Hevc, &au).unwrap();
        assert_eq!(s.kind, AccessUnit::OpenGop);
        assert_eq!(au[s.vcl_offset], 0x2A);
        let idr = [0, 0, 1, 0x26, 0x01, 0xAF];
        assert_eq!(
            scan_access_unit(Codec::Hevc, &idr).unwrap().kind,
            AccessUnit::Idr
        );
        let rasl = [0, 0, 1, 0x10, 0x01];
        assert_eq!(
            scan_access_unit(Codec::Hevc, &rasl).unwrap().kind,
            AccessUnit::Other
        );
        assert!(scan_access_unit(Codec::Hevc, &[0, 0, 1, 0x40, 0x01]).is_none());
    }

    #[test]
    fn audio_syncs() {
        assert!(audio_frame_start(Codec::Aac, &[0xFF, 0xF1]));
        assert!(audio_frame_start(Codec::Ac3, &[0x0B, 0x77]));
        assert!(!audio_frame_start(Codec::MpegAudio, &[0x12, 0x34]));
    }
}
