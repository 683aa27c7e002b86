//! Reports from the stoppage record: the events of a period and, per channel, the figures
//! GY/T 264 statistics are made from — number of stoppages, total stoppage time, the
//! stoppage rate against scheduled air time, the longest, and the causes.
//!
//! Scheduled air time is the period's overlap with the time since the channel was first
//! configured in a run (the head-end's own downtime counts: it is a stoppage). Stoppage time
//! is the union of the channel's stoppages within the period (two at once count once).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::parse_utc;

/// One event of the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct EventRow {
    pub(crate) id: u64,
    pub(crate) event: String,
    pub(crate) channel: String,
    pub(crate) place: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) subject: String,
    pub(crate) start_utc: String,
    pub(crate) start_local: String,
    pub(crate) end_utc: Option<String>,
    pub(crate) end_local: Option<String>,
    /// Whole duration (to now while it goes on).
    pub(crate) duration_s: f64,
    /// Still going on.
    pub(crate) ongoing: bool,
    pub(crate) cause: String,
    /// How it ended.
    pub(crate) resolution: Option<String>,
    pub(crate) before: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<Value>,
    #[serde(skip)]
    start: Option<DateTime<Utc>>,
    #[serde(skip)]
    end: Option<DateTime<Utc>>,
}

/// A channel's figures over the period.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct Figures {
    pub(crate) channel: String,
    pub(crate) scheduled_s: f64,
    pub(crate) stoppages: u64,
    pub(crate) stoppage_s: f64,
    /// Stoppage time / scheduled air time.
    pub(crate) stoppage_rate: f64,
    /// The same, in seconds per 100 hours of scheduled air time.
    pub(crate) stoppage_s_per_100h: f64,
    pub(crate) longest_stoppage_s: f64,
    /// Stoppages of 3 minutes or more (reported upward under the 2014 incident rules).
    pub(crate) reportable: u64,
    pub(crate) availability: f64,
    pub(crate) degradations: u64,
    pub(crate) degradation_s: f64,
    pub(crate) failovers: u64,
    pub(crate) overrides: u64,
    pub(crate) manual_actions: u64,
    /// Stoppages by cause: how many, how long.
    pub(crate) causes: BTreeMap<String, CauseFigures>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct CauseFigures {
    pub(crate) count: u64,
    pub(crate) seconds: f64,
}

/// The report of `[from, to)`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Report {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) channels: Vec<Figures>,
    pub(crate) events: Vec<EventRow>,
}

/// Makes the report of `[from, to)` (for `channel` only, if given) from the journal's lines,
/// as of `now`.
pub(crate) fn report(
    lines: &[Value],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    channel: Option<&str>,
    now: DateTime<Utc>,
) -> Report {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut events: Vec<EventRow> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut first_run: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for v in lines {
        let Some(id) = v.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let event = s(v, "event").unwrap_or_default();
        let phase = s(v, "phase").unwrap_or_default();
        let at = s(v, "utc").as_deref().and_then(parse_utc);
        if event == "run" {
            if let (Some(at), "start", Some(chs)) = (
                at,
                phase.as_str(),
                v.pointer("/detail/channels").and_then(Value::as_array),
            ) {
                for c in chs.iter().filter_map(Value::as_str) {
                    first_run.entry(c.to_owned()).or_insert(at);
                }
            }
            continue;
        }
        match phase.as_str() {
            "start" | "instant" => {
                index.insert(id, events.len());
                events.push(EventRow {
                    id,
                    event,
                    channel: s(v, "channel").unwrap_or_default(),
                    place: s(v, "place").unwrap_or_default(),
                    subject: s(v, "subject").unwrap_or_default(),
                    start_utc: s(v, "utc").unwrap_or_default(),
                    start_local: s(v, "local").unwrap_or_default(),
                    end_utc: (phase == "instant").then(|| s(v, "utc")).flatten(),
                    end_local: (phase == "instant").then(|| s(v, "local")).flatten(),
                    duration_s: 0.0,
                    ongoing: phase == "start",
                    cause: s(v, "cause").unwrap_or_default(),
                    resolution: None,
                    before: s(v, "on_air"),
                    after: None,
                    actor: s(v, "actor").unwrap_or_default(),
                    detail: v.get("detail").cloned(),
                    start: at,
                    end: if phase == "instant" { at } else { None },
                });
            }
            "end" => {
                if let Some(e) = index.get(&id).and_then(|&i| events.get_mut(i)) {
                    e.end_utc = s(v, "utc");
                    e.end_local = s(v, "local");
                    e.end = at;
                    e.ongoing = false;
                    e.resolution = s(v, "cause");
                    e.after = s(v, "on_air");
                    if let Some(d) = v.get("detail") {
                        e.detail = Some(d.clone());
                    }
                }
            }
            _ => {}
        }
    }
    // What overlaps the period.
    events.retain(|e| {
        let Some(start) = e.start else { return false };
        let end = e.end.unwrap_or(now);
        channel.is_none_or(|c| c == e.channel)
            && start < to
            && (end > from || (end == start && start >= from))
    });
    for e in &mut events {
        if let Some(start) = e.start {
            e.duration_s = secs(e.end.unwrap_or(now) - start);
        }
    }
    events.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));

    let mut figures: BTreeMap<String, Figures> = BTreeMap::new();
    let until = to.min(now);
    for (c, t0) in &first_run {
        if channel.is_some_and(|x| x != c) {
            continue;
        }
        let start = from.max(*t0);
        figures.insert(
            c.clone(),
            Figures {
                channel: c.clone(),
                scheduled_s: if until > start {
                    secs(until - start)
                } else {
                    0.0
                },
                ..Figures::default()
            },
        );
    }
    let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
    for e in &events {
        let f = figures.entry(e.channel.clone()).or_insert_with(|| Figures {
            channel: e.channel.clone(),
            ..Figures::default()
        });
        let Some(start) = e.start else { continue };
        let (a, b) = (start.max(from), e.end.unwrap_or(now).min(until.max(from)));
        let within = if b > a { secs(b - a) } else { 0.0 };
        match e.event.as_str() {
            "stoppage" => {
                f.stoppages += 1;
                f.longest_stoppage_s = f.longest_stoppage_s.max(e.duration_s);
                if e.duration_s >= 180.0 {
                    f.reportable += 1;
                }
                let c = f.causes.entry(e.cause.clone()).or_default();
                c.count += 1;
                c.seconds += within;
                if b > a {
                    spans.entry(e.channel.clone()).or_default().push((a, b));
                }
            }
            "degradation" => {
                f.degradations += 1;
                f.degradation_s += within;
            }
            "failover" => f.failovers += 1,
            "override" => f.overrides += 1,
            "manual" => f.manual_actions += 1,
            _ => {}
        }
    }
    for (c, mut v) in spans {
        v.sort();
        let mut total = 0.0;
        let mut cur: Option<Span> = None;
        for (a, b) in v {
            cur = match cur {
                Some((x, y)) if a <= y => Some((x, y.max(b))),
                Some((x, y)) => {
                    total += secs(y - x);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((x, y)) = cur {
            total += secs(y - x);
        }
        if let Some(f) = figures.get_mut(&c) {
            f.stoppage_s = total;
        }
    }
    for f in figures.values_mut() {
        if f.scheduled_s > 0.0 {
            f.stoppage_rate = (f.stoppage_s / f.scheduled_s).min(1.0);
            f.stoppage_s_per_100h = f.stoppage_rate * 360_000.0;
            f.availability = 1.0 - f.stoppage_rate;
        }
    }
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Report {
        from: fmt(from),
        to: fmt(to),
        channels: figures.into_values().collect(),
        events,
    }
}

/// A stretch of time: start, end.
type Span = (DateTime<Utc>, DateTime<Utc>);

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        parse_utc(s).unwrap()
    }

    #[test]
    fn figures_pair_edges_merge_overlaps_and_clip_to_the_period() {
        let lines = vec![
            json!({"id":1,"phase":"start","event":"run","channel":"*","place":"head-end","utc":"2026-01-01T00:00:00Z","detail":{"channels":["a","b"]}}),
            json!({"id":2,"phase":"start","event":"stoppage","channel":"a","place":"input","utc":"2026-01-01T01:00:00Z","cause":"all inputs lost","on_air":"main"}),
            json!({"id":3,"phase":"start","event":"stoppage","channel":"a","place":"media","utc":"2026-01-01T01:00:30Z","cause":"missing file"}),
            json!({"id":2,"phase":"end","event":"stoppage","channel":"a","place":"input","utc":"2026-01-01T01:01:00Z","cause":"main back","on_air":"main"}),
            json!({"id":3,"phase":"end","event":"stoppage","channel":"a","place":"media","utc":"2026-01-01T01:02:00Z","cause":"next item"}),
            json!({"id":4,"phase":"instant","event":"manual","channel":"b","place":"operator","utc":"2026-01-01T02:00:00Z","cause":"switch","actor":"ops"}),
            json!({"id":5,"phase":"start","event":"stoppage","channel":"b","place":"input","utc":"2026-01-01T23:59:00Z","cause":"all inputs lost"}),
            // A torn or foreign line is ignored.
            json!({"phase":"start"}),
        ];
        let r = report(
            &lines,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-02T00:00:00Z"),
            None,
            t("2026-01-02T00:10:00Z"),
        );
        let a = &r.channels[0];
        assert_eq!(a.channel, "a");
        assert_eq!(a.scheduled_s, 86_400.0);
        assert_eq!(a.stoppages, 2);
        // 01:00:00–01:02:00 once, though two overlap.
        assert_eq!(a.stoppage_s, 120.0);
        assert_eq!(a.longest_stoppage_s, 90.0);
        assert_eq!(a.causes["missing file"].count, 1);
        assert!((a.stoppage_s_per_100h - 120.0 / 86_400.0 * 360_000.0).abs() < 1e-9);
        let b = &r.channels[1];
        // Ongoing, clipped to the period's end: 60 s inside it, 11 min long so far.
        assert_eq!(b.stoppage_s, 60.0);
        assert_eq!(b.longest_stoppage_s, 660.0);
        assert_eq!(b.reportable, 1);
        assert_eq!(b.manual_actions, 1);
        assert_eq!(r.events.len(), 4);
        assert!(r.events[3].ongoing);
        assert_eq!(r.events[0].after.as_deref(), Some("main"));
        // One channel, a later period.
        let r = report(
            &lines,
            t("2026-01-01T01:01:30Z"),
            t("2026-01-01T03:00:00Z"),
            Some("a"),
            t("2026-01-02T00:10:00Z"),
        );
        assert_eq!(r.channels.len(), 1);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.channels[0].stoppage_s, 30.0);
        assert_eq!(r.channels[0].scheduled_s, 7_110.0);
    }
}
