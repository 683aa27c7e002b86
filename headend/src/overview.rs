//! The whole station at a glance (`GET /api/overview`, drawn by the operator's page): every
//! channel's state and what is on it, its counters, the alerts on air, the events of the
//! stoppage record open now and the last ones, and the alarms raised. Built from snapshots
//! the rest of the daemon already publishes; nothing here waits on anything.

use std::collections::HashMap;

use chrono::SecondsFormat;
use playout::schedule::{Segment, Source, Utc};
use serde_json::{json, Value};

use crate::schedule::driver::ScheduleView;
use crate::station::OnAirProgramme;
use crate::status::StationStatus;

/// What the overview is made from, borrowed from the API's state for one answer.
pub(crate) struct Parts<'a> {
    pub(crate) now: Utc,
    /// (id, name) of every channel, in config order.
    pub(crate) channels: Vec<(&'a str, &'a str)>,
    pub(crate) status: &'a [StationStatus],
    pub(crate) views: &'a HashMap<String, ScheduleView>,
    pub(crate) guides: &'a HashMap<String, Vec<(u16, OnAirProgramme)>>,
    /// `GET /api/alerts` (`{"active": [...], "recent": [...]}`), when alerts are configured.
    pub(crate) alerts: Option<Value>,
    /// The stoppage record's last lines (newest first) and open events' start lines.
    pub(crate) recent: Vec<Value>,
    pub(crate) open: Vec<Value>,
    /// Every alarm (raised or not).
    pub(crate) alarms: Vec<crate::alarm::AlarmState>,
}

/// How many of the record's last lines the overview gives.
const EVENTS: usize = 30;

/// RFC 3339 UTC with milliseconds.
pub(crate) fn utc(t: Utc) -> String {
    chrono::DateTime::from_timestamp_nanos(t.0).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A schedule segment as the API shows it: label, file, start and end.
fn segment(view: &ScheduleView, seg: &Segment) -> Value {
    let label = match seg.source {
        Source::Entry(i) => view.labels.get(i).cloned().unwrap_or_default(),
        Source::Filler => "filler".to_owned(),
    };
    json!({
        "label": label,
        "file": view.files.get(&(seg.media.0 as usize)).map(|p| p.display().to_string()),
        "start": utc(seg.start),
        "end": utc(seg.end),
    })
}

/// What `view` has on air at `now` (with position and remaining, in seconds) and next.
pub(crate) fn schedule_now_next(view: &ScheduleView, now: Utc) -> Option<(Value, Option<Value>)> {
    let on = view.timeline.at(now)?;
    let secs = |ns: u64| ns as f64 / 1e9;
    let mut cur = segment(view, &on.segment);
    cur["position_s"] = json!(secs(on.media_offset));
    cur["remaining_s"] = json!(secs(on.remaining));
    let next = view
        .timeline
        .segments()
        .get(on.index + 1)
        .map(|s| segment(view, s));
    Some((cur, next))
}

/// The guide's programme at `now` and the one after it.
fn epg_now_next(events: &[(u16, OnAirProgramme)], now: Utc) -> (Option<Value>, Option<Value>) {
    let show = |p: &OnAirProgramme| {
        json!({
            "title": p.title,
            "start": utc(p.start),
            "end": utc(Utc(p.start.0 + p.duration_ns as i64)),
        })
    };
    let mut sorted: Vec<&OnAirProgramme> = events.iter().map(|(_, p)| p).collect();
    sorted.sort_by_key(|p| p.start.0);
    let end = |p: &OnAirProgramme| p.start.0 + p.duration_ns as i64;
    let current = sorted
        .iter()
        .position(|p| p.start.0 <= now.0 && now.0 < end(p));
    let next = match current {
        Some(i) => sorted.get(i + 1),
        None => sorted.iter().find(|p| p.start.0 > now.0),
    };
    (current.map(|i| show(sorted[i])), next.map(|p| show(p)))
}

/// The file name alone, for what the engine says is on air.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// One channel's entry.
fn channel(p: &Parts<'_>, id: &str, name: &str) -> Value {
    let st = p.status.iter().find(|s| s.id == id);
    let open: Vec<&Value> = p.open.iter().filter(|v| v["channel"] == id).collect();
    let is_open = |kind: &str| open.iter().any(|v| v["event"] == kind);
    let alert = p
        .alerts
        .as_ref()
        .and_then(|a| a["active"].as_array())
        .and_then(|active| {
            active.iter().find(|a| {
                a["on_air"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == id))
            })
        })
        .map(|a| {
            json!({
                "seq": a["seq"],
                "headline": a["headline"],
                "level": a["level"],
                "sender": a["sender"],
                "expires": a["expires"],
                "clip": a["clip"],
            })
        });
    // This program's relay (a station may carry several channels).
    let relay = st.and_then(|s| s.relays.iter().find(|r| r.channel == id));
    let on_backup = relay.is_some_and(|r| {
        r.active.is_some() && r.active.as_ref() != r.inputs.first().map(|i| &i.name)
    });
    let state = if st.is_none() {
        "starting"
    } else if is_open("stoppage") {
        "stoppage"
    } else if alert.is_some() || is_open("override") {
        "alert"
    } else if on_backup || is_open("failover") {
        "failover"
    } else if is_open("degradation") {
        "degraded"
    } else {
        "on-air"
    };
    let schedule = p
        .views
        .get(id)
        .and_then(|v| schedule_now_next(v, p.now))
        .map(|(now, next)| json!({"now": now, "next": next}));
    let epg = p.guides.get(id).map(|events| {
        let (now, next) = epg_now_next(events, p.now);
        json!({"now": now, "next": next})
    });
    let counters = st.map(|s| {
        let cc = s
            .tr101290
            .iter()
            .filter(|(rule, _)| rule.starts_with("1.4 "))
            .map(|(_, n)| n)
            .sum::<u64>();
        let first_priority = s
            .tr101290
            .iter()
            .filter(|(rule, _)| rule.starts_with("1."))
            .map(|(_, n)| n)
            .sum::<u64>();
        json!({
            "muxrate_bps": s.muxrate_bps,
            "packets": s.packets,
            "null_packets": s.null_packets,
            "items_started": s.items_started,
            "items_failed": s.items_failed,
            "underflows": s.underflows,
            "late_packets": s.late_packets,
            "cc_errors": cc,
            "tr101290_priority1": first_priority,
            "datagrams": s.outputs.iter().map(|o| o.datagrams).sum::<u64>(),
            "output_errors": s.outputs.iter().map(|o| o.errors).sum::<u64>(),
        })
    });
    // An alert's clip is on air in place of what the engine's playlist has.
    let on_air: Vec<String> = match alert.as_ref().and_then(|a| a["clip"].as_str()) {
        Some(clip) => vec![format!("alert: {}", file_name(clip))],
        None => st
            .map(|s| s.on_air.iter().flatten().map(|f| file_name(f)).collect())
            .unwrap_or_default(),
    };
    let scrambling: Vec<Value> = st
        .map(|s| {
            s.scrambling
                .iter()
                .filter(|x| x.channel == id)
                .map(|x| {
                    json!({
                        "cipher": x.cipher,
                        "alarm": x.alarm,
                        "key_failures": x.key_failures,
                        "packets_scrambled": x.packets_scrambled,
                        "cas": x.cas,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // Every CAS's ECMG is up (None: the channel has none).
    let ecmg_up = st.and_then(|s| {
        let mut links = s.ecmg.iter().filter(|e| e.channel == id).peekable();
        links.peek()?;
        Some(links.all(|e| e.up))
    });
    let relay = relay.map(|r| {
        json!({
            "active": r.active,
            "locked": r.locked,
            "inputs": r.inputs.iter().map(|i| json!({"name": i.name, "health": i.health})).collect::<Vec<_>>(),
        })
    });
    let open: Vec<Value> = open
        .iter()
        .map(|v| {
            json!({
                "event": v["event"],
                "place": v["place"],
                "cause": v["cause"],
                "since": v["utc"],
            })
        })
        .collect();
    json!({
        "id": id,
        "name": name,
        "state": state,
        "on_air": on_air,
        "schedule": schedule,
        "epg": epg,
        "alert": alert,
        "scrambling": scrambling,
        "ecmg_up": ecmg_up,
        "relay": relay,
        "counters": counters,
        "open": open,
    })
}

/// The overview.
pub(crate) fn build(p: &Parts<'_>) -> Value {
    let channels: Vec<Value> = p
        .channels
        .iter()
        .map(|(id, name)| channel(p, id, name))
        .collect();
    let mut states: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for c in &channels {
        *states.entry(c["state"].as_str().unwrap_or("")).or_default() += 1;
    }
    let alarms: Vec<&crate::alarm::AlarmState> =
        p.alarms.iter().filter(|a| a.alarm.is_some()).collect();
    json!({
        "now_utc": utc(p.now),
        "version": env!("CARGO_PKG_VERSION"),
        "states": states,
        "channels": channels,
        "alerts": p.alerts.as_ref().map_or(json!([]), |a| a["active"].clone()),
        "events": p.recent.iter().take(EVENTS).collect::<Vec<_>>(),
        "alarms": alarms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{InputStatus, RelayStatus};

    fn programme(title: &str, start_s: i64, secs: u64) -> (u16, OnAirProgramme) {
        (
            1,
            OnAirProgramme {
                title: title.to_owned(),
                description: String::new(),
                genre: None,
                rating: 0,
                language: None,
                episode: None,
                start: Utc(start_s * 1_000_000_000),
                duration_ns: secs * 1_000_000_000,
            },
        )
    }

    fn status(id: &str) -> StationStatus {
        StationStatus {
            id: id.to_owned(),
            on_air: vec![Some("/media/news.ts".to_owned())],
            ..StationStatus::default()
        }
    }

    #[test]
    fn states_follow_open_events_alerts_and_the_relay() {
        let views = HashMap::new();
        let mut guides = HashMap::new();
        guides.insert(
            "a".to_owned(),
            vec![programme("Later", 200, 100), programme("Now", 100, 100)],
        );
        let mut b = status("b");
        b.relays.push(RelayStatus {
            channel: "b".to_owned(),
            active: Some("backup".to_owned()),
            inputs: ["main", "backup"]
                .iter()
                .map(|n| InputStatus {
                    name: (*n).to_owned(),
                    ..InputStatus::default()
                })
                .collect(),
            ..RelayStatus::default()
        });
        let st = vec![status("a"), b, status("c"), status("d")];
        let p = Parts {
            now: Utc(150 * 1_000_000_000),
            channels: vec![("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")],
            status: &st,
            views: &views,
            guides: &guides,
            alerts: Some(
                json!({"active": [{"seq": 3, "headline": "台风", "level": 1, "on_air": ["c"], "clip": "/m/a.ts"}]}),
            ),
            recent: vec![json!({"id": 9, "event": "stoppage", "channel": "d"})],
            open: vec![
                json!({"id": 9, "event": "stoppage", "channel": "d", "place": "input", "cause": "all inputs lost", "utc": "x"}),
            ],
            alarms: vec![],
        };
        let v = build(&p);
        let state = |i: usize| v["channels"][i]["state"].as_str().unwrap().to_owned();
        assert_eq!(state(0), "on-air");
        assert_eq!(state(1), "failover");
        assert_eq!(state(2), "alert");
        assert_eq!(state(3), "stoppage");
        assert_eq!(state(4), "starting");
        assert_eq!(v["channels"][0]["epg"]["now"]["title"], "Now");
        assert_eq!(v["channels"][0]["epg"]["next"]["title"], "Later");
        assert_eq!(v["channels"][0]["on_air"][0], "news.ts");
        assert_eq!(v["channels"][2]["alert"]["headline"], "台风");
        assert_eq!(v["channels"][2]["on_air"][0], "alert: a.ts");
        assert_eq!(v["channels"][3]["open"][0]["cause"], "all inputs lost");
        assert_eq!(v["states"]["on-air"], 1);
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_guide_between_programmes_shows_the_next() {
        let events = vec![programme("Morning", 100, 50), programme("Noon", 200, 50)];
        let (now, next) = epg_now_next(&events, Utc(160 * 1_000_000_000));
        assert!(now.is_none());
        assert_eq!(next.unwrap()["title"], "Noon");
    }
}
