//! The PID plan of one channel (`[channel.pids]`) and its checks.
//!
//! Assignable PIDs are 0x0020..=0x1FFE: ISO/IEC 13818-1 §2.4.3.3 (Table 2-3) reserves
//! 0x0000..=0x000F (PAT, CAT, TSDT, IPMP) and 0x1FFF (null packets), and ETSI EN 300 468
//! §5.1.3 (Table 1) reserves 0x0010..=0x001F for DVB SI (NIT, SDT, EIT, TDT, ...).

use std::ops::RangeInclusive;

use super::error::Diagnostics;
use super::raw::RawPids;

/// The PIDs one channel's program uses (`[channel.pids]`; TOML hex integers such as `0x100`
/// work). Every PID lies in 0x0020..=0x1FFE, and within a channel no two ranges overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PidPlan {
    /// Key `pmt`: PID of the program map table. Default 0x1000, range 0x0020..=0x1FFE.
    pub(crate) pmt: u16,
    /// Key `video`: PID of the single video stream (also the PCR PID). Default 0x100, range
    /// 0x0020..=0x1FFE.
    pub(crate) video: u16,
    /// Key `audio`: first of [`PidPlan::AUDIO_PIDS`] (15) consecutive audio PIDs, one per
    /// track. Default 0x101 (so 0x101..=0x10F), range 0x0020..=0x1FF0.
    pub(crate) audio: u16,
    /// Key `subtitle`: first of [`PidPlan::SUBTITLE_PIDS`] (8) consecutive subtitle PIDs.
    /// Default 0x110 (so 0x110..=0x117), range 0x0020..=0x1FF7.
    pub(crate) subtitle: u16,
    /// Key `data`: first of [`PidPlan::DATA_PIDS`] (8) consecutive data PIDs (SCTE-35,
    /// teletext, ...). Default 0x120 (so 0x120..=0x127), range 0x0020..=0x1FF7.
    pub(crate) data: u16,
}

impl Default for PidPlan {
    fn default() -> Self {
        Self {
            pmt: 0x1000,
            video: 0x100,
            audio: 0x101,
            subtitle: 0x110,
            data: 0x120,
        }
    }
}

impl PidPlan {
    /// Lowest assignable PID.
    pub(crate) const FIRST: u16 = 0x0020;
    /// Highest assignable PID.
    pub(crate) const LAST: u16 = 0x1FFE;
    /// PIDs reserved from `audio` on.
    pub(crate) const AUDIO_PIDS: u16 = 15;
    /// PIDs reserved from `subtitle` on.
    pub(crate) const SUBTITLE_PIDS: u16 = 8;
    /// PIDs reserved from `data` on.
    pub(crate) const DATA_PIDS: u16 = 8;

    /// Every PID range of the plan, named by its key, in the order pmt, video, audio,
    /// subtitle, data.
    pub(crate) fn ranges(&self) -> [(&'static str, RangeInclusive<u16>); 5] {
        let span = |first: u16, count: u16| first..=first.saturating_add(count - 1);
        [
            ("pmt", span(self.pmt, 1)),
            ("video", span(self.video, 1)),
            ("audio", span(self.audio, Self::AUDIO_PIDS)),
            ("subtitle", span(self.subtitle, Self::SUBTITLE_PIDS)),
            ("data", span(self.data, Self::DATA_PIDS)),
        ]
    }

    /// The lowest PID used by both plans, with the key using it in `self` and in `other`.
    pub(crate) fn collision(&self, other: &PidPlan) -> Option<(u16, &'static str, &'static str)> {
        let mut lowest: Option<(u16, &'static str, &'static str)> = None;
        for (key, range) in self.ranges() {
            for (other_key, other_range) in other.ranges() {
                let first = (*range.start()).max(*other_range.start());
                let last = (*range.end()).min(*other_range.end());
                if first <= last && lowest.is_none_or(|(pid, _, _)| first < pid) {
                    lowest = Some((first, key, other_key));
                }
            }
        }
        lowest
    }
}

/// Converts `[channel.pids]` of the channel at `channel_path`, reporting out-of-range PIDs
/// and overlaps (naming both keys).
pub(super) fn plan(
    raw: Option<RawPids>,
    channel_path: &str,
    diag: &mut Diagnostics,
) -> Option<PidPlan> {
    let raw = raw.unwrap_or_default();
    let default = PidPlan::default();
    let mut pid = |key: &str, value: Option<i64>, default: u16, count: u16| -> Option<u16> {
        let Some(first) = value else {
            return Some(default);
        };
        let last = first.saturating_add(i64::from(count) - 1);
        let allowed = i64::from(PidPlan::FIRST)..=i64::from(PidPlan::LAST);
        if allowed.contains(&first) && allowed.contains(&last) {
            return u16::try_from(first).ok();
        }
        let highest_first = PidPlan::LAST - (count - 1);
        let message = if count == 1 {
            format!(
                "{} is out of range, expected {:#06x}..={:#06x}",
                hex(first),
                PidPlan::FIRST,
                PidPlan::LAST
            )
        } else {
            format!(
                "{} is out of range: {key} uses {count} PIDs from here, so expected {:#06x}..={highest_first:#06x}",
                hex(first),
                PidPlan::FIRST
            )
        };
        diag.push(format!("{channel_path}.pids.{key}"), message);
        None
    };
    let pmt = pid("pmt", raw.pmt, default.pmt, 1);
    let video = pid("video", raw.video, default.video, 1);
    let audio = pid("audio", raw.audio, default.audio, PidPlan::AUDIO_PIDS);
    let subtitle = pid(
        "subtitle",
        raw.subtitle,
        default.subtitle,
        PidPlan::SUBTITLE_PIDS,
    );
    let data = pid("data", raw.data, default.data, PidPlan::DATA_PIDS);
    let (Some(pmt), Some(video), Some(audio), Some(subtitle), Some(data)) =
        (pmt, video, audio, subtitle, data)
    else {
        return None;
    };
    let plan = PidPlan {
        pmt,
        video,
        audio,
        subtitle,
        data,
    };
    let explicit = [raw.pmt, raw.video, raw.audio, raw.subtitle, raw.data].map(|v| v.is_some());
    let ranges = plan.ranges();
    let before = diag.len();
    for later in 1..ranges.len() {
        for earlier in 0..later {
            let (a, b) = (&ranges[earlier], &ranges[later]);
            if a.1.start() <= b.1.end() && b.1.start() <= a.1.end() {
                // Point at a key the operator wrote, preferring the later one.
                let at = if explicit[later] || !explicit[earlier] {
                    b.0
                } else {
                    a.0
                };
                diag.push(
                    format!("{channel_path}.pids.{at}"),
                    format!("{} and {} overlap", describe(a), describe(b)),
                );
            }
        }
    }
    (diag.len() == before).then_some(plan)
}

/// `pmt PID 0x1000` or `audio PIDs 0x0101..=0x010f`.
fn describe((key, range): &(&str, RangeInclusive<u16>)) -> String {
    if range.start() == range.end() {
        format!("{key} PID {:#06x}", range.start())
    } else {
        format!("{key} PIDs {:#06x}..={:#06x}", range.start(), range.end())
    }
}

fn hex(value: i64) -> String {
    if value < 0 {
        value.to_string()
    } else {
        format!("{value:#06x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawPids) -> (Option<PidPlan>, Vec<(String, String)>) {
        let mut diag = Diagnostics::new("f");
        let plan = plan(Some(raw), "channel[0]", &mut diag);
        (
            plan,
            diag.finish()
                .0
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect(),
        )
    }

    #[test]
    fn default_plan_is_valid() {
        let mut diag = Diagnostics::new("f");
        assert_eq!(
            plan(None, "channel[0]", &mut diag),
            Some(PidPlan::default())
        );
        assert!(diag.is_empty());
        assert_eq!(PidPlan::default().ranges()[2].1, 0x101..=0x10F);
    }

    #[test]
    fn overlap_names_both_keys() {
        let (plan, errors) = check(RawPids {
            audio: Some(0x100),
            ..RawPids::default()
        });
        assert_eq!(plan, None);
        assert_eq!(
            errors,
            [(
                "channel[0].pids.audio".to_owned(),
                "video PID 0x0100 and audio PIDs 0x0100..=0x010e overlap".to_owned()
            )]
        );
        // Only `video` was written: the error points at it.
        let (_, errors) = check(RawPids {
            video: Some(0x105),
            ..RawPids::default()
        });
        assert_eq!(errors[0].0, "channel[0].pids.video");
        assert!(errors[0].1.contains("video PID 0x0105") && errors[0].1.contains("audio PIDs"));
    }

    #[test]
    fn out_of_range_pids() {
        let (_, errors) = check(RawPids {
            pmt: Some(0x1F),
            video: Some(0x1FFF),
            audio: Some(0x1FF5),
            subtitle: Some(-1),
            data: Some(0x1FF7),
        });
        let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "channel[0].pids.pmt",
                "channel[0].pids.video",
                "channel[0].pids.audio",
                "channel[0].pids.subtitle"
            ]
        );
        assert_eq!(
            errors[0].1,
            "0x001f is out of range, expected 0x0020..=0x1ffe"
        );
        assert!(
            errors[2]
                .1
                .contains("audio uses 15 PIDs from here, so expected 0x0020..=0x1ff0"),
            "{}",
            errors[2].1
        );
        assert!(errors[3].1.starts_with("-1 is out of range"));
    }

    #[test]
    fn collision_finds_the_lowest_shared_pid() {
        let a = PidPlan::default();
        let b = PidPlan {
            pmt: 0x1001,
            video: 0x200,
            audio: 0x115,
            subtitle: 0x300,
            data: 0x310,
        };
        assert_eq!(a.collision(&b), Some((0x115, "subtitle", "audio")));
        assert_eq!(a.collision(&a), Some((0x100, "video", "video")));
        let c = PidPlan {
            pmt: 0x1002,
            video: 0x400,
            audio: 0x401,
            subtitle: 0x410,
            data: 0x420,
        };
        assert_eq!(a.collision(&c), None);
    }
}
