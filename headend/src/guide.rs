//! The programme guide for middleware and apps, from the same events the EIT carries:
//! `GET /epg.xml` (XMLTV, every channel) and `GET /epg/{channel}.json`. The scheduler
//! publishes each scheduled channel's coming days ([`Guides`]) every 10 s; times are given
//! in the channel's zone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, FixedOffset, TimeZone};
use epg::schedule::Tz;
use epg::xmltv::{self, Guide, Text};

use crate::config::Config;
use crate::schedule::driver::OnAirProgramme;

/// The coming days' events by channel id: (event_id, programme), as in the EIT schedule.
pub(crate) type Guides = Arc<Mutex<HashMap<String, Vec<(u16, OnAirProgramme)>>>>;

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

/// The channels of `config`, in config order.
pub(crate) fn channels(config: &Config) -> Vec<GuideChannel> {
    config
        .channels
        .iter()
        .map(|c| GuideChannel {
            id: c.id.clone(),
            xmltv_id: c
                .si
                .xmltv_id
                .clone()
                .unwrap_or_else(|| format!("{}.headend", c.id.replace('_', "-"))),
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
    let all = guides.lock().unwrap_or_else(PoisonError::into_inner);
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

/// One channel's guide as JSON (`None`: no such channel).
pub(crate) fn channel_json(channels: &[GuideChannel], guides: &Guides, id: &str) -> Option<String> {
    let c = channels.iter().find(|c| c.id == id)?;
    let g = guide(&[c], guides);
    let mut s = serde_json::to_string_pretty(&serde_json::json!({
        "channel": g.channels.first(),
        "programmes": g.programmes,
    }))
    .ok()?;
    s.push('\n');
    Some(s)
}
