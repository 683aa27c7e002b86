//! HLS media playlists (RFC 8216, version 3) over a channel's archived segments: the live
//! sliding window, a time-shift window and the catch-up (VOD) playlist of one programme.
//!
//! Every segment carries `EXT-X-PROGRAM-DATE-TIME` (its first packet's UTC, so a player can
//! map the playlist to the guide); `EXT-X-DISCONTINUITY` marks only the segments after which
//! the stream really is discontinuous (the recording resumed after a gap: a restart, a full
//! disk, chunks lost), and `EXT-X-DISCONTINUITY-SEQUENCE` counts those that fell out of a
//! sliding window, so a player joining later numbers them the same. `EXT-X-KEY` appears where
//! the key changes (AES-128, IV the media sequence number unless given).

use std::fmt::Write as _;

/// One segment as a playlist names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its media sequence number.
    pub seq: u64,
    /// Its URI, relative to the playlist's.
    pub uri: String,
    /// UTC of its first packet (ns since 1970).
    pub start_utc_ns: i64,
    /// How long it plays (ns).
    pub duration_ns: u64,
    /// The stream is discontinuous before it.
    pub discontinuity: bool,
    /// The AES-128 key it is encrypted with, if it is.
    pub key: Option<KeyRef>,
}

/// Where a segment's AES-128 key is fetched, and its IV if not the sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// The key's URI (the player fetches 16 bytes from it).
    pub uri: String,
    /// The IV, when not the segment's sequence number.
    pub iv: Option<[u8; 16]>,
}

/// The kind of playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A sliding window that grows at the end and loses its start (live, time-shift).
    Live,
    /// A finished programme: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
    Vod,
}

/// A media playlist.
#[derive(Clone, Debug)]
pub struct Playlist<'a> {
    /// Live window or finished programme.
    pub kind: Kind,
    /// The segments, in order, consecutive in sequence number.
    pub segments: &'a [Segment],
    /// Discontinuities before the first segment listed (in the segments that went before).
    pub discontinuity_sequence: u64,
    /// Where a player should start, seconds from the end (live: `EXT-X-START`), if not the
    /// default three target durations.
    pub start_offset_s: Option<f64>,
}

/// The UTC instant `ns` as ISO 8601 with milliseconds (`2026-12-06T08:00:00.000Z`).
pub fn iso8601(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// The proleptic Gregorian date of day `z` since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Playlist<'_> {
    /// `EXT-X-TARGETDURATION`: the longest segment, rounded to the nearest second (RFC 8216
    /// 4.3.3.1), at least 1.
    pub fn target_duration(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| (s.duration_ns + 500_000_000) / 1_000_000_000)
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// The playlist's text.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(128 + self.segments.len() * 120);
        s.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", self.target_duration());
        let first = self.segments.first().map_or(0, |x| x.seq);
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if self.kind == Kind::Vod {
            s.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
        }
        if let Some(o) = self.start_offset_s {
            let _ = writeln!(s, "#EXT-X-START:TIME-OFFSET={o:.3},PRECISE=YES");
        }
        let mut key: Option<&KeyRef> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.discontinuity && i > 0 {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if seg.key.as_ref() != key || (i == 0 && seg.key.is_some()) {
                match &seg.key {
                    Some(k) => {
                        let _ = write!(s, "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\"", k.uri);
                        if let Some(iv) = k.iv {
                            s.push_str(",IV=0x");
                            for b in iv {
                                let _ = write!(s, "{b:02x}");
                            }
                        }
                        s.push('\n');
                    }
                    None => s.push_str("#EXT-X-KEY:METHOD=NONE\n"),
                }
                key = seg.key.as_ref();
            }
            let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(seg.start_utc_ns));
            let _ = writeln!(
                s,
                "#EXTINF:{:.3},\n{}",
                seg.duration_ns as f64 / 1e9,
                seg.uri
            );
        }
        if self.kind == Kind::Vod {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s
    }
}

/// The AES-128 IV of segment `seq` when the playlist gives none: the sequence number as a
/// 128-bit big-endian integer (RFC 8216 5.2).
pub fn default_iv(seq: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, secs: f64, disc: bool) -> Segment {
        Segment {
            seq,
            uri: format!("{seq}.ts"),
            start_utc_ns: 1_796_515_200_000_000_000 + seq as i64 * 4_000_000_000,
            duration_ns: (secs * 1e9) as u64,
            discontinuity: disc,
            key: None,
        }
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            iso8601(1_796_515_200_000_000_000),
            "2026-12-06T00:00:00.000Z"
        );
        assert_eq!(iso8601(-1_000_000), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_live_window_numbers_its_discontinuities() {
        let segs = vec![seg(7, 4.0, true), seg(8, 4.48, false), seg(9, 3.9, true)];
        let p = Playlist {
            kind: Kind::Live,
            segments: &segs,
            discontinuity_sequence: 2,
            start_offset_s: None,
        };
        let text = p.render();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-12-06T00:00:28.000Z\n#EXTINF:4.000,\n7.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-12-06T00:00:32.000Z\n#EXTINF:4.480,\n8.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-12-06T00:00:36.000Z\n#EXTINF:3.900,\n9.ts\n"
        );
    }

    #[test]
    fn a_vod_playlist_ends_and_names_its_keys_where_they_change() {
        let k1 = KeyRef {
            uri: "/hls/news/key/1".into(),
            iv: None,
        };
        let k2 = KeyRef {
            uri: "/hls/news/key/2".into(),
            iv: Some(default_iv(3)),
        };
        let mut segs = vec![seg(1, 2.0, false), seg(2, 2.0, false), seg(3, 2.6, false)];
        segs[0].key = Some(k1.clone());
        segs[1].key = Some(k1);
        segs[2].key = Some(k2);
        let p = Playlist {
            kind: Kind::Vod,
            segments: &segs,
            discontinuity_sequence: 0,
            start_offset_s: None,
        };
        let text = p.render();
        assert_eq!(p.target_duration(), 3);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXT-X-KEY").count(), 2, "{text}");
        assert!(text.contains(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"/hls/news/key/2\",IV=0x00000000000000000000000000000003\n"
        ));
        assert!(!text.contains("DISCONTINUITY"));
    }
}
