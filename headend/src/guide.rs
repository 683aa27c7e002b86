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
    /// Days of EIT schedule (`[channel.si] days`): how far ahead of today its guide is kept.
    pub(crate) days: u32,
}

impl XmltvChannel {
    /// Station `station`'s channel, if its SI is on and its guide is an XMLTV file.
    pub(crate) fn of(station: usize, ch: &crate::config::ChannelConfig) -> Option<XmltvChannel> {
        let path = ch.si.xmltv.clone().filter(|_| ch.si.enabled)?;
        Some(XmltvChannel {
            station,
            channel: ch.id.clone(),
            xmltv_id: ch.xmltv_id(),
            path,
            days: ch.si.days,
        })
    }

    /// The part of its guide (UTC ns, from and to) a station on air from `from_ns` to `to_ns`
    /// can use: from the start of the UTC day before `from_ns` (present/following by the
    /// clock) to the end of its EIT schedule's last day after `to_ns`, and a day more (the EIT
    /// schedule is built from today, UTC).
    pub(crate) fn window(&self, from_ns: i64, to_ns: i64) -> (i64, i64) {
        const DAY: i64 = 86_400 * 1_000_000_000;
        let day_of = |t: i64| t - t.rem_euclid(DAY);
        (
            day_of(from_ns).saturating_sub(DAY),
            day_of(to_ns).saturating_add((i64::from(self.days) + 2) * DAY),
        )
    }
}

/// How often the XMLTV files are looked at.
const XMLTV_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The largest XMLTV file read: a national guide of hundreds of channels for two weeks is
/// tens of MB; its document tree takes several times its size in memory.
pub(crate) const MAX_XMLTV_BYTES: u64 = 256 << 20;

/// The most programmes a channel's guide keeps in its window (a programme a minute for the
/// 64 days of the longest EIT schedule is 92,160; a real guide has tens a day). Beyond it
/// the rest are left out, and said so.
pub(crate) const MAX_GUIDE_PROGRAMMES: usize = 100_000;

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

/// Reads the XMLTV file at `path` (at most [`MAX_XMLTV_BYTES`]); a malformed file is an
/// error naming it with line and column.
pub(crate) fn load_xmltv(path: &std::path::Path) -> Result<Guide, String> {
    use std::io::Read;
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let too_big = || {
        named(&format_args!(
            "over {} MiB: not read (split the guide, one file per channel or group)",
            MAX_XMLTV_BYTES >> 20
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| named(&e))?;
    if file.metadata().is_ok_and(|m| m.len() > MAX_XMLTV_BYTES) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_XMLTV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| named(&e))?;
    if bytes.len() as u64 > MAX_XMLTV_BYTES {
        return Err(too_big());
    }
    xmltv::parse_bytes(&bytes).map_err(|e| named(&e))
}

/// `c`'s events in `guide` that are on the air within `window` (UTC ns, from
/// [`XmltvChannel::window`]), in start order, at most [`MAX_GUIDE_PROGRAMMES`] of them: what
/// its station is given.
pub(crate) fn events_of(
    guide: &Guide,
    c: &XmltvChannel,
    window: (i64, i64),
) -> Vec<(u16, OnAirProgramme)> {
    let mut events = programmes_of(guide, c, window);
    if events.len() > MAX_GUIDE_PROGRAMMES {
        tracing::warn!(channel = %c.channel, file = %c.path.display(), programmes = events.len(), kept = MAX_GUIDE_PROGRAMMES, "XMLTV guide has more programmes in the coming days than a channel keeps: the later ones are left out");
        events.truncate(MAX_GUIDE_PROGRAMMES);
    }
    events
}

/// `c`'s events in `guide` on the air within `(from_ns, to_ns)` (UTC ns), in start order.
fn programmes_of(
    guide: &Guide,
    c: &XmltvChannel,
    (from_ns, to_ns): (i64, i64),
) -> Vec<(u16, OnAirProgramme)> {
    let programmes = guide.programmes_on(&c.xmltv_id);
    xmltv::timed(&programmes)
        .into_iter()
        .filter(|(start, end, _)| {
            start.timestamp_nanos_opt().is_some_and(|s| s < to_ns)
                && end.timestamp_nanos_opt().is_some_and(|e| e > from_ns)
        })
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
        .collect()
}

/// Reads `c`'s XMLTV file into its events within `window` ([`events_of`]); a malformed file
/// is an error naming it with line and column (and nothing of it is used).
pub(crate) fn read_xmltv(
    c: &XmltvChannel,
    window: (i64, i64),
) -> Result<Vec<(u16, OnAirProgramme)>, String> {
    Ok(events_of(&load_xmltv(&c.path)?, c, window))
}

/// Watches the XMLTV files of `channels`: each time one changes (size or modification
/// time), and at each new UTC day (the window moves on), its programmes of the coming days
/// ([`XmltvChannel::window`]) go to the engine as the channel's guide and to `/epg.xml`. A file
/// several channels share is read once a look. Stops on shutdown.
pub(crate) fn watch_xmltv(
    channels: Vec<XmltvChannel>,
    sink: crate::router::ScheduleSink,
    guides: Guides,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xmltv".to_owned())
        .spawn(move || {
            let mut seen: Vec<Option<Seen>> = Vec::new();
            seen.resize_with(channels.len(), || None);
            while !shutdown.is_shutdown() {
                // A panic costs the file being read: it is taken as read (its stamp is noted
                // first), so it is read again once it changes; the others are read at the next
                // pass. The last guide read of it stays on air.
                let pass = crate::supervise::contain(|| {
                    crate::supervise::chaos(|| "xmltv".to_owned());
                    let now_ns = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    xmltv_pass(&channels, &mut seen, &sink, &guides, now_ns)
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

/// What the watcher last read of a channel's file: its size and modification time, and the
/// UTC day it was read on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    stamp: (u64, Option<std::time::SystemTime>),
    day: i64,
}

/// One look at every XMLTV file at `now_ns` (UTC), reading those that changed or were read
/// on another UTC day; `false` once the engine is gone.
fn xmltv_pass(
    channels: &[XmltvChannel],
    seen: &mut [Option<Seen>],
    sink: &crate::router::ScheduleSink,
    guides: &Guides,
    now_ns: i64,
) -> bool {
    let day = now_ns.div_euclid(86_400 * 1_000_000_000);
    type Stamp = Option<(u64, Option<std::time::SystemTime>)>;
    // Each file looked at and read in this look once, however many channels it holds: its
    // stamp taken before its content, so a rewrite in between is read again at the next look
    // by every channel of it.
    let mut looked: HashMap<&std::path::Path, Stamp> = HashMap::new();
    let mut read: HashMap<&std::path::Path, Result<Guide, String>> = HashMap::new();
    for (c, seen) in channels.iter().zip(seen.iter_mut()) {
        let stamp = *looked.entry(c.path.as_path()).or_insert_with(|| {
            std::fs::metadata(&c.path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        });
        let Some(stamp) = stamp else {
            if seen.is_some() {
                tracing::error!(channel = %c.channel, file = %c.path.display(), "XMLTV guide file gone; the last one read stays on air");
                *seen = None;
            }
            continue;
        };
        let now = Seen { stamp, day };
        if seen.as_ref() == Some(&now) {
            continue;
        }
        *seen = Some(now);
        let guide = read
            .entry(c.path.as_path())
            .or_insert_with(|| load_xmltv(&c.path));
        match guide {
            Ok(guide) => {
                let events = events_of(guide, c, c.window(now_ns, now_ns));
                tracing::info!(channel = %c.channel, programmes = events.len(), "XMLTV guide read");
                // `/epg.xml` and `/epg/{id}.json` list the whole file, past programmes with
                // their catch-up links as far back as the archive keeps them.
                let listed = programmes_of(guide, c, (i64::MIN, i64::MAX));
                guides.send_modify(|g| {
                    g.insert(c.channel.clone(), listed);
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

    /// A guide of `days` days of hour-long programmes on `xmltv_id` from `t0` (UTC s), as
    /// XMLTV, with or without `stop`.
    fn hourly(xmltv_id: &str, t0: i64, days: i64, stop: bool) -> String {
        let time = |t: i64| {
            DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y%m%d%H%M%S +0000")
                .to_string()
        };
        let mut x =
            format!("<tv><channel id=\"{xmltv_id}\"><display-name>N</display-name></channel>\n");
        for h in 0..days * 24 {
            let (a, b) = (t0 + h * 3600, t0 + (h + 1) * 3600);
            let stop = if stop {
                format!(" stop=\"{}\"", time(b))
            } else {
                String::new()
            };
            x += &format!(
                "<programme start=\"{}\"{stop} channel=\"{xmltv_id}\"><title>P{h}</title></programme>\n",
                time(a)
            );
        }
        x + "</tv>\n"
    }

    fn channel(path: &std::path::Path, station: usize) -> XmltvChannel {
        XmltvChannel {
            station,
            channel: format!("c{station}"),
            xmltv_id: "n.example".into(),
            path: path.to_owned(),
            days: 2,
        }
    }

    const DAY: i64 = 86_400;
    const S: i64 = 1_000_000_000;

    #[test]
    fn a_channel_keeps_only_the_coming_days_of_a_long_guide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.xml");
        // 2026-12-01 00:00 UTC, a month of programmes without `stop` (each ends where the
        // next starts: this was quadratic in the guide's length).
        let t0 = 1_796_083_200;
        std::fs::write(&path, hourly("n.example", t0, 30, false)).unwrap();
        let c = channel(&path, 0);
        // At noon on the 10th: from the 9th, 00:00 to the 14th, 00:00 (2 days of EIT
        // schedule after today, and a day more).
        let now = (t0 + 9 * DAY + 12 * 3600) * S;
        assert_eq!(
            c.window(now, now),
            ((t0 + 8 * DAY) * S, (t0 + 13 * DAY) * S)
        );
        let events = read_xmltv(&c, c.window(now, now)).unwrap();
        assert_eq!(events.len(), 5 * 24);
        assert_eq!(events[0].1.title, format!("P{}", 8 * 24));
        assert_eq!(events[0].1.start, Utc((t0 + 8 * DAY) * S));
        assert_eq!(events.last().unwrap().1.title, format!("P{}", 13 * 24 - 1));
        assert!(events.iter().all(|(_, p)| p.duration_ns == 3600 * S as u64));
        // A render of two days from the 10th keeps two days more.
        let events = read_xmltv(&c, c.window(now, now + 2 * DAY * S)).unwrap();
        assert_eq!(events.len(), 7 * 24);
    }

    #[test]
    fn a_guide_over_the_size_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.xml");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_XMLTV_BYTES + 1).unwrap();
        let e = load_xmltv(&path).unwrap_err();
        assert!(e.contains("huge.xml") && e.contains("over 256 MiB"), "{e}");
    }

    #[test]
    fn the_watcher_reads_again_when_the_file_changes_and_each_new_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.xml");
        let t0 = 1_796_083_200;
        std::fs::write(&path, hourly("n.example", t0, 30, true)).unwrap();
        // Two channels share the file.
        let channels = [channel(&path, 0), channel(&path, 1)];
        let mut seen = vec![None, None];
        let (sink, inbox) = crate::router::ScheduleSink::inbox(2);
        let guides: Guides = Arc::default();
        let firsts = |inbox: &crate::router::Inbox| -> Vec<(usize, String)> {
            inbox
                .drain()
                .into_iter()
                .map(|d| match d {
                    crate::router::Delivered::Schedule(m) => {
                        (m.station, m.guide.unwrap()[0].1.title.clone())
                    }
                    crate::router::Delivered::Override(_) => unreachable!(),
                })
                .collect()
        };
        let at = |day: i64| (t0 + day * DAY + 3600) * S;
        assert!(xmltv_pass(&channels, &mut seen, &sink, &guides, at(5)));
        let first = format!("P{}", 4 * 24);
        assert_eq!(firsts(&inbox), [(0, first.clone()), (1, first)]);
        // The station has its days; the listing the whole file.
        assert_eq!(guides.borrow()["c1"].len(), 30 * 24);
        // Nothing changed: nothing sent.
        assert!(xmltv_pass(
            &channels,
            &mut seen,
            &sink,
            &guides,
            at(5) + 3600 * S
        ));
        assert!(firsts(&inbox).is_empty());
        // The next day: the window moves on.
        assert!(xmltv_pass(&channels, &mut seen, &sink, &guides, at(6)));
        let first = format!("P{}", 5 * 24);
        assert_eq!(firsts(&inbox), [(0, first.clone()), (1, first)]);
        // A malformed file: nothing sent, the last guide stays.
        std::fs::write(&path, "<tv><programme").unwrap();
        assert!(xmltv_pass(&channels, &mut seen, &sink, &guides, at(6)));
        assert!(firsts(&inbox).is_empty());
        assert_eq!(guides.borrow()["c0"].len(), 30 * 24);
    }
}
