//! The desk's decisions, without I/O: which channels an alert's areas cover (drills only on
//! drill channels), its level, clip and expiry; then, per channel, which alert is on air.
//!
//! The highest level (1 is the highest) wins; equal levels queue in arrival order; an update
//! replaces an alert's content in place (same `seq`, next revision); a cancel or the expiry
//! ends it. Time comes in as `now`; what changes on air goes out as [`Decision`]s, which the
//! desk turns into orders for the stations. Nothing here reads a clock or a file: whether an
//! uploaded clip exists is asked of the caller.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use epg::alert::Alert;

use crate::config::{areas_overlap, AlertsConfig};

/// A channel the desk can put alerts on.
pub(super) struct DeskChannel {
    pub(super) id: String,
    pub(super) station: usize,
    pub(super) program: usize,
    pub(super) service_id: u16,
    pub(super) transport_stream_id: u16,
    pub(super) original_network_id: u16,
    /// Whether it is a channel on its own (the scheduler brings it back).
    pub(super) single: bool,
    /// Whether it airs drills (Exercise and Test alerts).
    pub(super) drills: bool,
}

/// An accepted alert, until it ends.
pub(super) struct Live {
    pub(super) seq: u64,
    /// Bumped by each update.
    pub(super) revision: u64,
    pub(super) alert: Alert,
    /// Every (sender, identifier) it has had: the original and each update, any of which a
    /// later update or cancel may reference.
    ids: Vec<(String, String)>,
    pub(super) level: u8,
    pub(super) clip: PathBuf,
    /// Indices into the desk's channels.
    pub(super) channels: Vec<usize>,
    pub(super) expires: DateTime<Utc>,
    pub(super) accepted: DateTime<Utc>,
    /// Per channel: (channel id, on air UTC ns, first packet UTC ns).
    pub(super) on_air: Vec<(String, i64, i64)>,
}

/// Where an alert goes, at which level, with which clip, until when.
pub(super) struct Placement {
    /// Indices into the desk's channels.
    pub(super) channels: Vec<usize>,
    pub(super) level: u8,
    pub(super) clip: PathBuf,
    pub(super) expires: DateTime<Utc>,
}

/// A change of what one channel shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Show this alert (new, or updated in place).
    Show { channel: usize, seq: u64 },
    /// No alert any more: back to the schedule.
    Clear { channel: usize },
}

/// The alerts live on the desk's channels and what each channel shows.
pub(super) struct Board {
    channels: Vec<DeskChannel>,
    next_seq: u64,
    live: Vec<Live>,
    /// Per channel: what it shows (seq, revision).
    shown: Vec<Option<(u64, u64)>>,
}

impl Board {
    /// An empty board over `channels`; alerts are numbered from 1.
    pub(super) fn new(channels: Vec<DeskChannel>) -> Board {
        let n = channels.len();
        Board {
            channels,
            next_seq: 1,
            live: Vec::new(),
            shown: vec![None; n],
        }
    }

    /// An empty board whose alerts are numbered after `last` (what the audit log named
    /// before a restart): numbers, and so EBM_ids, are never given twice.
    pub(super) fn numbered_after(channels: Vec<DeskChannel>, last: u64) -> Board {
        Board {
            next_seq: last + 1,
            ..Board::new(channels)
        }
    }

    pub(super) fn channels(&self) -> &[DeskChannel] {
        &self.channels
    }

    /// The ids of the channels at `indices`.
    pub(super) fn channel_ids(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .map(|&i| self.channels[i].id.clone())
            .collect()
    }

    /// The channel carried as `program` of `station`.
    pub(super) fn channel_at(&self, station: usize, program: usize) -> Option<&DeskChannel> {
        self.channels
            .iter()
            .find(|c| c.station == station && c.program == program)
    }

    /// The alerts live, oldest first.
    pub(super) fn live(&self) -> &[Live] {
        &self.live
    }

    pub(super) fn find(&self, seq: u64) -> Option<&Live> {
        self.live.iter().find(|l| l.seq == seq)
    }

    /// The ids of the channels showing alert `seq` now.
    pub(super) fn showing(&self, seq: u64) -> Vec<&str> {
        self.channels
            .iter()
            .zip(&self.shown)
            .filter(|(_, s)| s.is_some_and(|(s, _)| s == seq))
            .map(|(c, _)| c.id.as_str())
            .collect()
    }

    /// Where `alert` goes; `uploaded` finds an uploaded clip by its id (`media:ID`).
    pub(super) fn place(
        &self,
        cfg: &AlertsConfig,
        alert: &Alert,
        now: DateTime<Utc>,
        uploaded: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Placement, String> {
        let channels = self.targets(cfg, alert)?;
        let level = alert.level();
        let clip = clip(cfg, alert, level, uploaded)?;
        Ok(Placement {
            channels,
            level,
            clip,
            expires: expiry(cfg, alert, now),
        })
    }

    /// Number `seq` is in use (an alert put back on air with its own number): later ones
    /// are numbered after it.
    pub(super) fn note_seq(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// The number the next accepted alert gets (taken even if it is then not admitted).
    pub(super) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Puts a new alert live; [`Board::arbitrate`] decides whether it shows.
    pub(super) fn admit(&mut self, seq: u64, alert: Alert, p: Placement, now: DateTime<Utc>) {
        self.live.push(Live {
            seq,
            revision: 0,
            ids: vec![(alert.sender.clone(), alert.identifier.clone())],
            alert,
            level: p.level,
            clip: p.clip,
            channels: p.channels,
            expires: p.expires,
            accepted: now,
            on_air: Vec::new(),
        });
    }

    /// The live alert an update or cancel references (the first, if several), by `seq`.
    pub(super) fn referenced(&self, alert: &Alert) -> Option<u64> {
        self.referenced_indices(alert)
            .first()
            .map(|&k| self.live[k].seq)
    }

    /// Replaces the content of live alert `seq` (a next revision); false if it is not live.
    pub(super) fn update(&mut self, seq: u64, alert: Alert, p: Placement) -> bool {
        let Some(l) = self.live.iter_mut().find(|l| l.seq == seq) else {
            return false;
        };
        l.revision += 1;
        l.ids.push((alert.sender.clone(), alert.identifier.clone()));
        l.alert = alert;
        l.level = p.level;
        l.clip = p.clip;
        l.channels = p.channels;
        l.expires = p.expires;
        true
    }

    /// Ends every live alert `alert` references, the newest first; none if it references
    /// nothing live.
    pub(super) fn cancel(&mut self, alert: &Alert) -> Vec<Live> {
        let found = self.referenced_indices(alert);
        found
            .into_iter()
            .rev()
            .map(|k| self.live.remove(k))
            .collect()
    }

    /// Ends the alerts expired at `now`, the oldest first.
    pub(super) fn expire(&mut self, now: DateTime<Utc>) -> Vec<Live> {
        let (ended, live) = std::mem::take(&mut self.live)
            .into_iter()
            .partition(|l| l.expires <= now);
        self.live = live;
        ended
    }

    /// Notes that alert `seq` went on air on `channel` (a later report replaces an earlier).
    pub(super) fn aired(&mut self, seq: u64, channel: &str, presented_ns: i64, first_ns: i64) {
        if let Some(l) = self.live.iter_mut().find(|l| l.seq == seq) {
            l.on_air.retain(|(c, _, _)| c != channel);
            l.on_air.push((channel.to_owned(), presented_ns, first_ns));
        }
    }

    /// Per channel, the alert to show: the highest level (lowest number), then the oldest.
    /// Returns what changed since the last call.
    pub(super) fn arbitrate(&mut self) -> Vec<Decision> {
        let mut changes = Vec::new();
        for (channel, shown) in self.shown.iter_mut().enumerate() {
            let best = self
                .live
                .iter()
                .filter(|l| l.channels.contains(&channel))
                .min_by_key(|l| (l.level, l.seq));
            let want = best.map(|l| (l.seq, l.revision));
            if want == *shown {
                continue;
            }
            changes.push(match best {
                Some(l) => Decision::Show {
                    channel,
                    seq: l.seq,
                },
                None => Decision::Clear { channel },
            });
            *shown = want;
        }
        changes
    }

    /// The channels an alert's areas cover (drills only on drill channels).
    fn targets(&self, cfg: &AlertsConfig, alert: &Alert) -> Result<Vec<usize>, String> {
        let codes: Vec<&str> = alert.geocodes().map(|(_, v)| v).collect();
        if codes.is_empty() {
            return Err("the alert names no area (geocode)".into());
        }
        let mut out = Vec::new();
        for (i, ch) in self.channels.iter().enumerate() {
            let covered = cfg.areas.iter().any(|a| {
                a.channels.contains(&ch.id) && codes.iter().any(|c| areas_overlap(c, &a.code))
            });
            if covered {
                out.push(i);
            }
        }
        if out.is_empty() {
            return Err(format!(
                "unknown area: no channel serves {}",
                codes.join(", ")
            ));
        }
        if alert.is_drill() {
            out.retain(|&i| self.channels[i].drills);
        }
        Ok(out)
    }

    fn referenced_indices(&self, alert: &Alert) -> Vec<usize> {
        self.live
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                alert.references.iter().any(|r| {
                    l.ids
                        .iter()
                        .any(|(s, i)| *s == r.sender && *i == r.identifier)
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// The clip for an alert: an uploaded one it names (`media:ID`), else by event code, else
/// by level.
fn clip(
    cfg: &AlertsConfig,
    alert: &Alert,
    level: u8,
    uploaded: impl Fn(&str) -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    for r in alert.info.iter().flat_map(|i| &i.resources) {
        if let Some(id) = r.uri.as_deref().and_then(|u| u.strip_prefix("media:")) {
            return uploaded(id)
                .ok_or_else(|| format!("resource `media:{id}`: no such uploaded clip"));
        }
    }
    let codes: Vec<&str> = alert
        .event_codes()
        .map(|(_, v)| v)
        .chain(alert.info.iter().map(|i| i.event.as_str()))
        .collect();
    if let Some((_, p)) = cfg
        .event_clips
        .iter()
        .find(|(k, _)| codes.contains(&k.as_str()))
    {
        return Ok(p.clone());
    }
    cfg.level_clips
        .iter()
        .find(|(l, _)| *l == Some(level))
        .or_else(|| cfg.level_clips.iter().find(|(l, _)| l.is_none()))
        .map(|(_, p)| p.clone())
        .ok_or_else(|| format!("no clip for level {level}"))
}

/// When an alert ends: its `expires`, at most `max_duration` from now.
fn expiry(cfg: &AlertsConfig, alert: &Alert, now: DateTime<Utc>) -> DateTime<Utc> {
    let max =
        now + chrono::Duration::from_std(cfg.max_duration).unwrap_or(chrono::Duration::hours(1));
    alert
        .expires()
        .map_or(max, |e| e.with_timezone(&Utc).min(max))
}
