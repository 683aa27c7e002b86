//! The programme guide for middleware and apps, from the same events the EIT carries:
//! `GET /epg.xml` (XMLTV, every channel) and `GET /epg/{channel}.json`. The scheduler
//! publishes each scheduled channel's coming days ([`Guides`]) every 10 s; times are given
//! in the channel's zone.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, TimeZone};
use epg::schedule::Tz;
use epg::xmltv::{self, Guide, Text};

use crate::config::Config;
use crate::station::OnAirProgramme;

/// The coming days' events by channel id: (event_id, programme), as in the EIT schedule.
/// The coming days' events of each channel, by id: a snapshot the scheduler and the XMLTV
/// watcher update and `/epg.xml` reads.
pub(crate) type Guides =
    Arc<tokio::sync::watch::Sender<HashMap<String, Vec<(u16, OnAirProgramme)>>>>;

/// A channel as the guide lists it.
#[derive(Clone, Debug)]
pub(crate) struct GuideChannel {
    /// The config id (`/epg/{id}.json`)...
    id: String,
    /// ...and the XMLTV one.
    xmltv_id: String,
    name: String,
    lcn: Option<u16>,
    tz: Tz,
    country: String,
}

impl GuideChannel {
    /// The channel's config id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The channel's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The channels of `config`, in config order.
pub(crate) fn channels(config: &Config) -> Vec<GuideChannel> {
    config
        .channels
        .iter()
        .map(|c| GuideChannel {
            id: c.id.clone(),
            xmltv_id: c.xmltv_id(),
            name: c.name.clone(),
            lcn: c.si.lcn,
            tz: c.timezone,
            country: c.si.country.clone(),
        })
        .collect()
}

fn local(tz: Tz, utc_ns: i64) -> DateTime<FixedOffset> {
    let t = DateTime::from_timestamp_nanos(utc_ns);
    tz.from_utc_datetime(&t.naive_utc()).fixed_offset()
}

fn guide(channels: &[&GuideChannel], guides: &Guides) -> Guide {
    let all = guides.borrow();
    let mut g = Guide::default();
    for c in channels {
        g.channels.push(xmltv::Channel {
            id: c.xmltv_id.clone(),
            display_names: vec![Text::new(None, &c.name)],
            lcn: c.lcn,
            icon: None,
        });
        let Some(events) = all.get(&c.id) else {
            continue;
        };
        let programmes: Vec<(i64, i64, epg::schedule::Programme)> = events
            .iter()
            .map(|(_, p)| {
                (
                    p.start.0,
                    p.start.0 + p.duration_ns as i64,
                    epg::schedule::Programme {
                        title: Some(p.title.clone()),
                        description: (!p.description.is_empty()).then(|| p.description.clone()),
                        genre: p.genre.clone(),
                        rating: p.rating,
                        language: p.language.clone(),
                        episode: p.episode.clone(),
                    },
                )
            })
            .collect();
        g.programmes.extend(xmltv::from_schedule(
            &c.xmltv_id,
            Some(&c.country),
            programmes
                .iter()
                .map(|(s, e, p)| (local(c.tz, *s), local(c.tz, *e), p, "")),
        ));
    }
    g
}

/// The XMLTV document of every channel.
pub(crate) fn xmltv_document(channels: &[GuideChannel], guides: &Guides) -> String {
    let refs: Vec<&GuideChannel> = channels.iter().collect();
    xmltv::to_xml(&guide(&refs, guides))
}

/// One channel's guide as JSON (`None`: no such channel). With `archived_from` (UTC ns of
/// the oldest segment of the channel's archive), each programme that started since, up to
/// `now_ns`, carries `catchup` (its span's HLS playlist from the archive) and
/// `catchup_event` (the EIT event's playlist, as it aired). Every programme has its
/// `event_id`.
pub(crate) fn channel_json(
    channels: &[GuideChannel],
    guides: &Guides,
    id: &str,
    archived_from: Option<i64>,
    now_ns: i64,
) -> Option<String> {
    let c = channels.iter().find(|c| c.id == id)?;
    let g = guide(&[c], guides);
    let mut programmes = serde_json::to_value(&g.programmes).ok()?;
    // The EIT event_id of each (the guide's programmes are its events, in order).
    let ids: Vec<u16> = guides
        .borrow()
        .get(id)
        .map(|events| events.iter().map(|(e, _)| *e).collect())
        .unwrap_or_default();
    if let Some(list) = programmes.as_array_mut() {
        for (p, e) in list.iter_mut().zip(&ids) {
            p["event_id"] = (*e).into();
        }
    }
    if let (Some(first), Some(list)) = (archived_from, programmes.as_array_mut()) {
        for p in list {
            let at = |key: &str| {
                p.get(key)
                    .and_then(serde_json::Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            };
            let (Some(start), Some(stop)) = (at("start"), at("stop")) else {
                continue;
            };
            if start * 1_000_000_000 >= first && start * 1_000_000_000 <= now_ns {
                p["catchup"] = format!("/hls/{id}/live.m3u8?from={start}&to={stop}").into();
                // As it aired, from its first frame (when it aired as scheduled).
                if let Some(e) = p["event_id"].as_u64() {
                    p["catchup_event"] = format!("/hls/{id}/event/{e}.m3u8").into();
                }
            }
        }
    }
    let mut s = serde_json::to_string_pretty(&serde_json::json!({
        "channel": g.channels.first(),
        "programmes": programmes,
    }))
    .ok()?;
    s.push('\n');
    Some(s)
}

/// A channel whose guide is an XMLTV file (`[channel.si] xmltv`).
pub(crate) struct XmltvChannel {
    pub(crate) station: usize,
    pub(crate) channel: String,
    pub(crate) xmltv_id: String,
    pub(crate) path: std::path::PathBuf,
}

/// How often the XMLTV files are looked at.
const XMLTV_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The event_id of a programme: a hash of its start and title, so it stays while the
/// programme does.
fn event_id(start_ns: i64, title: &str) -> u16 {
    let h = start_ns
        .to_be_bytes()
        .iter()
        .chain(title.as_bytes())
        .fold(0x811C_9DC5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    (h ^ (h >> 16)) as u16
}

/// Reads `c`'s XMLTV file into its events; a malformed file is an error naming it with
/// line and column (and nothing of it is used).
pub(crate) fn read_xmltv(c: &XmltvChannel) -> Result<Vec<(u16, OnAirProgramme)>, String> {
    let bytes = std::fs::read(&c.path).map_err(|e| format!("{}: {e}", c.path.display()))?;
    let guide = xmltv::parse_bytes(&bytes).map_err(|e| format!("{}: {e}", c.path.display()))?;
    let programmes = guide.programmes_on(&c.xmltv_id);
    Ok(xmltv::timed(&programmes)
        .into_iter()
        .map(|(start, end, p)| {
            let start_ns = start.timestamp_nanos_opt().unwrap_or(0);
            let title = p.title.clone().unwrap_or_default();
            (
                event_id(start_ns, &title),
                OnAirProgramme {
                    title,
                    description: p.description.unwrap_or_default(),
                    genre: p.genre,
                    rating: p.rating,
                    language: p.language,
                    episode: p.episode,
                    start: playout::schedule::Utc(start_ns),
                    duration_ns: (end - start).num_nanoseconds().unwrap_or(0).max(0) as u64,
                },
            )
        })
        .collect())
}

/// Watches the XMLTV files of `channels`: each time one changes (size or modification
/// time), its programmes go to the engine as the channel's guide and to `/epg.xml`. Stops
/// on shutdown.
pub(crate) fn watch_xmltv(
    channels: Vec<XmltvChannel>,
    sink: crate::router::ScheduleSink,
    guides: Guides,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xmltv".to_owned())
        .spawn(move || {
            let mut seen: Vec<Option<(u64, Option<std::time::SystemTime>)>> =
                vec![None; channels.len()];
            while !shutdown.is_shutdown() {
                // A panic costs the file being read: it is taken as read (its stamp is noted
                // first), so it is read again once it changes; the others are read at the next
                // pass. The last guide read of it stays on air.
                let pass = crate::supervise::contain(|| {
                    crate::supervise::chaos(|| "xmltv".to_owned());
                    xmltv_pass(&channels, &mut seen, &sink, &guides)
                });
                match pass {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(why) => {
                        crate::supervise::panicked(
                            "xmltv",
                            format!("reading the XMLTV guides panicked ({why}): the last ones read stay on air"),
                        );
                    }
                }
                shutdown.sleep(XMLTV_POLL);
            }
        })
}

/// One look at every XMLTV file, reading those that changed; `false` once the engine is gone.
fn xmltv_pass(
    channels: &[XmltvChannel],
    seen: &mut [Option<(u64, Option<std::time::SystemTime>)>],
    sink: &crate::router::ScheduleSink,
    guides: &Guides,
) -> bool {
    for (c, seen) in channels.iter().zip(seen.iter_mut()) {
        let stamp = std::fs::metadata(&c.path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        if stamp.is_none() || stamp == *seen {
            if stamp.is_none() && seen.is_some() {
                tracing::error!(channel = %c.channel, file = %c.path.display(), "XMLTV guide file gone; the last one read stays on air");
                *seen = None;
            }
            continue;
        }
        *seen = stamp;
        match read_xmltv(c) {
            Ok(events) => {
                tracing::info!(channel = %c.channel, programmes = events.len(), "XMLTV guide read");
                guides.send_modify(|g| {
                    g.insert(c.channel.clone(), events.clone());
                });
                let msg = crate::station::ScheduleMsg::guide(c.station, events);
                if !sink.send(msg) {
                    return false;
                }
            }
            Err(e) => {
                tracing::error!(channel = %c.channel, error = %e, "XMLTV guide not read; the last good one stays on air")
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use playout::schedule::Utc;

    #[test]
    fn programmes_in_the_archive_link_to_their_catch_up() {
        let c = GuideChannel {
            id: "news".into(),
            xmltv_id: "news.headend".into(),
            name: "News".into(),
            lcn: None,
            tz: Tz::Asia__Shanghai,
            country: "CN".into(),
        };
        const S: i64 = 1_000_000_000;
        let t0 = 1_796_515_200;
        let programme = |title: &str, start: i64| OnAirProgramme {
            title: title.into(),
            description: String::new(),
            genre: None,
            rating: 0,
            language: None,
            episode: None,
            start: Utc(start * S),
            duration_ns: 3600 * S as u64,
        };
        let guides: Guides = Arc::default();
        guides.send_modify(|g| {
            g.insert(
                "news".into(),
                vec![
                    (1, programme("Before", t0 - 3600)),
                    (2, programme("Kept", t0)),
                    (3, programme("Now", t0 + 3600)),
                    (4, programme("Later", t0 + 7200)),
                ],
            );
        });
        let json = channel_json(&[c], &guides, "news", Some(t0 * S), (t0 + 4000) * S).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let links: Vec<Option<&str>> = v["programmes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["catchup"].as_str())
            .collect();
        assert_eq!(
            links,
            [
                None,
                Some(format!("/hls/news/live.m3u8?from={t0}&to={}", t0 + 3600).as_str()),
                Some(format!("/hls/news/live.m3u8?from={}&to={}", t0 + 3600, t0 + 7200).as_str()),
                None
            ]
        );
    }
}
