//! Output PID allocation: a channel keeps one output PID per (codec, track) for its whole
//! life, so a PID's stream_type never changes (decoders are not re-initialised when a PMT
//! changes the type of an existing PID; a new PID forces a clean start).

use crate::es::{Codec, StreamClass};
use crate::ts::Pid;

/// The output PID plan of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputPids {
    /// PMT PID (default 0x1000).
    pub pmt: Pid,
    /// First video PID (default 0x100). A second video codec takes `data + 8` and up.
    pub video: Pid,
    /// First audio PID (default 0x101); audio uses 15 PIDs from here.
    pub audio: Pid,
    /// First subtitle PID (default 0x110); 8 PIDs.
    pub subtitle: Pid,
    /// First data PID (default 0x120); 8 PIDs, then 8 for extra video codecs.
    pub data: Pid,
}

impl Default for OutputPids {
    fn default() -> Self {
        OutputPids {
            pmt: Pid::from_bits(0x1000),
            video: Pid::from_bits(0x100),
            audio: Pid::from_bits(0x101),
            subtitle: Pid::from_bits(0x110),
            data: Pid::from_bits(0x120),
        }
    }
}

impl OutputPids {
    /// The PIDs a class may use, in preference order.
    fn candidates(&self, class: StreamClass) -> impl Iterator<Item = Pid> {
        let range = |base: Pid, from: u16, n: u16| {
            (from..from + n).map(move |k| Pid::from_bits(base.value() + k))
        };
        let (first, second) = match class {
            StreamClass::Video => (range(self.video, 0, 1), range(self.data, 8, 8)),
            StreamClass::Audio => (range(self.audio, 0, 15), range(self.audio, 0, 0)),
            StreamClass::Subtitle => (range(self.subtitle, 0, 8), range(self.subtitle, 0, 0)),
            StreamClass::Data => (range(self.data, 0, 8), range(self.data, 0, 0)),
        };
        first.chain(second)
    }

    /// Every PID this plan may use, PMT included.
    pub fn all(&self) -> Vec<Pid> {
        let mut v = vec![self.pmt];
        for c in [
            StreamClass::Video,
            StreamClass::Audio,
            StreamClass::Subtitle,
            StreamClass::Data,
        ] {
            v.extend(self.candidates(c));
        }
        v
    }
}

/// Remembers which output PID each (codec, track) got.
#[derive(Debug, Default)]
pub(crate) struct PidAllocator {
    given: Vec<((Codec, u8), Pid)>,
}

impl PidAllocator {
    /// The PID for track `ordinal` (0-based among streams of the same codec in the program)
    /// of `codec`, allocating one on first sight; `None` when the class range is full.
    pub(crate) fn pid(&mut self, plan: &OutputPids, codec: Codec, ordinal: u8) -> Option<Pid> {
        if let Some((_, pid)) = self.given.iter().find(|(k, _)| *k == (codec, ordinal)) {
            return Some(*pid);
        }
        let pid = plan
            .candidates(codec.class())
            .find(|p| !self.given.iter().any(|(_, q)| q == p))?;
        self.given.push(((codec, ordinal), pid));
        Some(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_keep_their_pids() {
        let plan = OutputPids::default();
        let mut a = PidAllocator::default();
        assert_eq!(a.pid(&plan, Codec::H264, 0).unwrap().value(), 0x100);
        assert_eq!(a.pid(&plan, Codec::Aac, 0).unwrap().value(), 0x101);
        assert_eq!(a.pid(&plan, Codec::MpegAudio, 0).unwrap().value(), 0x102);
        assert_eq!(a.pid(&plan, Codec::Aac, 1).unwrap().value(), 0x103);
        assert_eq!(a.pid(&plan, Codec::Hevc, 0).unwrap().value(), 0x128);
        assert_eq!(a.pid(&plan, Codec::Aac, 0).unwrap().value(), 0x101);
        assert_eq!(a.pid(&plan, Codec::H264, 0).unwrap().value(), 0x100);
    }

    #[test]
    fn full_range_is_none() {
        let plan = OutputPids::default();
        let mut a = PidAllocator::default();
        for k in 0..8 {
            assert!(a.pid(&plan, Codec::DvbSubtitle, k).is_some());
        }
        assert!(a.pid(&plan, Codec::DvbSubtitle, 8).is_none());
    }
}
