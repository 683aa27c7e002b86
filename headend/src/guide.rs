//! The programme guide for middleware and apps, from the same events the EIT carries:
//! `GET /epg.xml` (XMLTV, every channel) and `GET /epg/{channel}.json`. The scheduler
//! publishes each scheduled channel's coming days ([`Guides`]) every 10 s; times are given
//! in the channel's zone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use chrono::{DateTime, FixedOffset, TimeZone};
use epg::schedule::Tz;
use epg::xmltv::{self, Guide, Text};

use crate::archive::Archives;
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

/// The guide of `channels`, with the EIT event_id of each programme (in the same order).
fn guide(channels: &[&GuideChannel], guides: &Guides) -> (Guide, Vec<(usize, u16)>) {
    let all = guides.borrow();
    let mut g = Guide::default();
    let mut ids = Vec::new();
    for (i, c) in channels.iter().enumerate() {
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
        ids.extend(events.iter().map(|(e, _)| (i, *e)));
    }
    (g, ids)
}

/// What a channel's archive holds, for the guide's catch-up links.
#[derive(Debug, Default)]
pub(crate) struct Archived {
    /// UTC (ns) of its oldest segment.
    pub(crate) first_ns: i64,
    /// The EIT events with an airing in it (`/hls/CH/event/E.m3u8` answers for them).
    pub(crate) events: HashSet<u16>,
}

/// What `archives` holds of channel `id`: `None` when it is not archived or has no segment.
pub(crate) fn archived(archives: Option<&Archives>, id: &str) -> Option<Archived> {
    let ix = archives?
        .get(id)?
        .index
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    Some(Archived {
        first_ns: ix.first()?.start_utc_ns,
        events: ix.marks().filter_map(|m| m.event_id).collect(),
    })
}

/// A programme's catch-up links, when it started between the archive's oldest segment and
/// `now_ns`: the playlist of its scheduled span (start and stop in Unix seconds) and, when the
/// archive holds its airing, the EIT event's playlist, as it aired (from its first frame).
fn catchup(
    channel: &str,
    archived: &Archived,
    now_ns: i64,
    event_id: u16,
    (start, stop): (i64, i64),
) -> Option<(String, Option<String>)> {
    let start_ns = start.saturating_mul(1_000_000_000);
    if start_ns < archived.first_ns || start_ns > now_ns {
        return None;
    }
    Some((
        format!("/hls/{channel}/live.m3u8?from={start}&to={stop}"),
        archived
            .events
            .contains(&event_id)
            .then(|| format!("/hls/{channel}/event/{event_id}.m3u8")),
    ))
}

/// The start and stop (Unix seconds) of a programme of the guide.
fn span(p: &xmltv::Programme) -> Option<(i64, i64)> {
    Some((p.start.timestamp(), p.stop?.timestamp()))
}

/// The XMLTV document of every channel. A programme still in its channel's archive (what
/// `archived` says of a config id) carries its catch-up playlist as
/// `<url system="catchup">`, an absolute address under `base` (`http://host:port`): the
/// event as it aired when the archive holds its airing, else its scheduled span.
pub(crate) fn xmltv_document(
    channels: &[GuideChannel],
    guides: &Guides,
    archived: &dyn Fn(&str) -> Option<Archived>,
    base: &str,
    now_ns: i64,
) -> String {
    let refs: Vec<&GuideChannel> = channels.iter().collect();
    let (mut g, ids) = guide(&refs, guides);
    let held: Vec<Option<Archived>> = channels.iter().map(|c| archived(&c.id)).collect();
    for (p, (i, e)) in g.programmes.iter_mut().zip(ids) {
        let (Some(a), Some(span)) = (&held[i], span(p)) else {
            continue;
        };
        if let Some((window, aired)) = catchup(&channels[i].id, a, now_ns, e, span) {
            p.urls.push(xmltv::Url {
                system: Some("catchup".to_owned()),
                value: format!("{base}{}", aired.unwrap_or(window)),
            });
        }
    }
    xmltv::to_xml(&g)
}

/// One channel's guide as JSON (`None`: no such channel). Every programme has its
/// `event_id`; with `archived` (what the channel's archive holds), each programme that
/// started since its oldest segment, up to `now_ns`, carries `catchup` (its scheduled span's
/// HLS playlist) and, when the archive holds its airing, `catchup_event` (the EIT event's
/// playlist, as it aired).
pub(crate) fn channel_json(
    channels: &[GuideChannel],
    guides: &Guides,
    id: &str,
    archived: Option<&Archived>,
    now_ns: i64,
) -> Option<String> {
    let c = channels.iter().find(|c| c.id == id)?;
    let (g, ids) = guide(&[c], guides);
    let mut programmes = serde_json::to_value(&g.programmes).ok()?;
    if let Some(list) = programmes.as_array_mut() {
        for ((v, p), (_, e)) in list.iter_mut().zip(&g.programmes).zip(ids) {
            v["event_id"] = e.into();
            let links = archived
                .zip(span(p))
                .and_then(|(a, span)| catchup(id, a, now_ns, e, span));
            if let Some((window, aired)) = links {
                v["catchup"] = window.into();
                if let Some(aired) = aired {
                    v["catchup_event"] = aired.into();
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
        let archived = || Archived {
            first_ns: t0 * S,
            events: HashSet::from([2, 9]),
        };
        let now = (t0 + 4000) * S;
        let json = channel_json(
            std::slice::from_ref(&c),
            &guides,
            "news",
            Some(&archived()),
            now,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let links: Vec<(Option<&str>, Option<&str>)> = v["programmes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["catchup"].as_str(), p["catchup_event"].as_str()))
            .collect();
        let span = |a: i64, b: i64| format!("/hls/news/live.m3u8?from={a}&to={b}");
        assert_eq!(
            links,
            [
                (None, None),
                (
                    Some(span(t0, t0 + 3600).as_str()),
                    Some("/hls/news/event/2.m3u8")
                ),
                (Some(span(t0 + 3600, t0 + 7200).as_str()), None),
                (None, None)
            ]
        );
        // XMLTV: one absolute link each, the airing when the archive has it.
        let xml = xmltv_document(
            &[c],
            &guides,
            &|id| (id == "news").then(archived),
            "http://[::1]:8080",
            now,
        );
        let back = xmltv::parse(&xml).unwrap();
        let urls: Vec<Vec<String>> = back
            .programmes
            .iter()
            .map(|p| {
                p.urls
                    .iter()
                    .map(|u| format!("{:?} {}", u.system, u.value))
                    .collect()
            })
            .collect();
        assert_eq!(
            urls,
            [
                vec![],
                vec!["Some(\"catchup\") http://[::1]:8080/hls/news/event/2.m3u8".to_owned()],
                vec![format!(
                    "Some(\"catchup\") http://[::1]:8080{}",
                    span(t0 + 3600, t0 + 7200)
                )],
                vec![],
            ]
        );
        assert!(xml.contains("live.m3u8?from=1796518800&amp;to="), "{xml}");
    }
}
