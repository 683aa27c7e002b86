//! The scheduler thread: turns each channel's schedule files into splicer cues, a little
//! ahead of time.
//!
//! About twice a second, for every channel with a schedule: read yesterday's, today's and
//! tomorrow's files (in the channel's zone) from the store, probe any media not seen before
//! (duration and entry delay, from the files' own timestamps), resolve the timeline from the
//! end of what is already cued, and hand the engine the cues that start within the next
//! [`AHEAD`]. Cues already handed over are not changed, so an edit to a future item applies
//! when it comes, and one to the item on air at its next boundary; an edit made with `now`
//! drops what is cued and takes over again [`LEAD`] later. A channel without
//! schedule files keeps looping its playlist; the first cues take over from it
//! [`LEAD`] after the schedule appears.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{TimeZone, Utc as ChronoUtc};
use epg::schedule::Tz;
use playout::schedule::{cues, resolve, Clip, MediaId, MediaInfo, Utc, ENDLESS_NS, UNPLAYABLE};

use super::store::Store;
use crate::clock::ClockMap;
use crate::router::ScheduleSink;
use crate::station::{OnAirProgramme, ScheduleMsg};
use crate::status::ClockMaps;

/// How far ahead cues are handed to the engine: more than the splicer's read-ahead (a second
/// plus one read), so each item knows the next one's entry delay before it is cut. Edits to
/// items starting later than this apply.
pub(crate) const AHEAD: Duration = Duration::from_secs(8);
/// How long after a schedule appears it takes over from the playlist (the splicer cannot
/// cut what it has already released).
pub(crate) const LEAD: Duration = Duration::from_secs(4);
/// How far ahead the schedule is joined when an alert ends: what is on air (the alert) gives
/// way at once ([`ScheduleMsg::preempt`]), so only the time to read the file's start is
/// needed.
const RETURN_LEAD: Duration = Duration::from_millis(1000);
/// Offsets beyond this are joined by seeking rather than reading the file from its start...
const SEEK_MIN_NS: u64 = 20 * 1_000_000_000;
/// ...landing this much before the offset, so a random access point is found before it.
const SEEK_MARGIN_NS: u64 = 10 * 1_000_000_000;
/// The least of a file under way worth joining at a takeover.
const MIN_JOIN_NS: u64 = 1_000_000_000;
/// How far the timeline is resolved each time (a programme longer than this is cut).
const HORIZON_NS: u64 = 26 * 3600 * 1_000_000_000;

/// What a channel's schedule says is on air around now, for the status API.
#[derive(Clone, Debug)]
pub(crate) struct ScheduleView {
    /// The timeline from a minute ago to six hours ahead.
    pub(crate) timeline: playout::schedule::Timeline,
    /// Labels of the entries (`2026-11-23 19:00:00 "News"`), by entry index.
    pub(crate) labels: Vec<String>,
    /// File of each playlist index.
    pub(crate) files: HashMap<usize, PathBuf>,
}

/// What wakes the scheduler before its next round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The channel's latest edit applies now: the scheduler drops what it has cued and takes
    /// over again, as when a schedule first appears.
    EditNow(String),
    /// The channel's alert ended: it rejoins its schedule at once.
    AlertEnded(String),
}

/// The scheduler's mailbox.
pub(crate) type Mailbox = std::sync::mpsc::Sender<Wake>;

/// Views by channel id: a snapshot the scheduler refreshes and the API reads.
pub(crate) type ScheduleViews = Arc<tokio::sync::watch::Sender<HashMap<String, ScheduleView>>>;

impl ScheduledChannel {
    /// Channel `ch`, on its own as station `station`.
    pub(crate) fn of(station: usize, ch: &crate::config::ChannelConfig) -> ScheduledChannel {
        ScheduledChannel {
            station,
            channel: ch.id.clone(),
            tz: ch.timezone,
            // Without filler, gaps (and the slots of unplayable items) air the playlist.
            filler: if ch.filler.is_empty() {
                ch.playlist.clone()
            } else {
                ch.filler.clone()
            },
            // The engine adds the live inputs after the playlist.
            base_items: ch.playlist.len() + ch.inputs.len(),
            inputs: ch.inputs.iter().map(|i| i.name.clone()).collect(),
            guide_from_xmltv: ch.si.xmltv.is_some(),
        }
    }
}

/// A file's size and modification time, to tell when it changed.
/// A file's size, modification time and inode (a symbolic link pointed elsewhere, or a file
/// renamed over, shows as another inode whatever its size and time).
type FileStamp = (u64, Option<SystemTime>, u64);

/// One channel the scheduler drives.
#[derive(Clone)]
pub(crate) struct ScheduledChannel {
    pub(crate) station: usize,
    pub(crate) channel: String,
    pub(crate) tz: Tz,
    pub(crate) filler: Vec<PathBuf>,
    /// Playlist entries before the schedule's own (the config's playlist, then the live
    /// inputs).
    pub(crate) base_items: usize,
    /// The live inputs' names, in order: input `k` is playlist entry `base_items -
    /// inputs.len() + k`.
    pub(crate) inputs: Vec<String>,
    /// Its guide comes from an XMLTV file, not from the schedule.
    pub(crate) guide_from_xmltv: bool,
}

/// The scheduler's state of one channel; [`State::round`] is its sans-clock step.
pub(crate) struct State {
    ch: ScheduledChannel,
    /// Media by path: (playlist index, duration, entry delay).
    media: HashMap<PathBuf, (usize, MediaInfo, u64)>,
    /// Media by playlist index: (file size, first presentation time), to seek into.
    seekable: HashMap<usize, (u64, playout::time::Pts)>,
    /// Media by playlist index: (size, modification time) when probed.
    stamps: HashMap<usize, FileStamp>,
    next_item: usize,
    /// Files given playlist indices (`next_item`) that no message has carried to the station
    /// yet: a round that fails (an error, a panic) after taking them hands them over with the
    /// next one, so the indices stay the station's.
    unsent: Vec<PathBuf>,
    cued_until: Option<Utc>,
    last_error: Option<String>,
    /// The last cue tag handed out.
    next_tag: u64,
    /// When the week's EPG is next recomputed...
    next_week: Utc,
    /// ...or at once when the store has taken an edit since (its write count then).
    seen_writes: u64,
    /// An alert ended: join the schedule at the wall clock, pre-empting the alert.
    returning: bool,
    /// Files that could not be probed: (size, modification time) then, and why; probed
    /// again when they change.
    unplayable: HashMap<PathBuf, (Option<FileStamp>, String)>,
    /// Faults logged, so each is logged once.
    faults_logged: std::collections::HashSet<String>,
    /// The station's output clock origin (UTC, ns) last seen: a new one means the station
    /// was built again (after a contained panic) and has none of what was cued.
    origin_seen: Option<i64>,
    /// The station's clock origin (UTC ns) and the next look on its grid.
    next_look: Option<(i64, i64)>,
    /// Rounds that panicked in a row, and until when the channel rests after the last.
    panics: u32,
    resting_until: Utc,
}

/// What the scheduler works with, shared with the engine and the API.
pub(crate) struct SchedulerLinks {
    pub(crate) store: Arc<Store>,
    /// What schedule file names are relative to.
    pub(crate) media_dir: PathBuf,
    pub(crate) maps: ClockMaps,
    pub(crate) sink: ScheduleSink,
    pub(crate) views: ScheduleViews,
    /// Where the coming days' events go for `/epg.xml`.
    pub(crate) guides: crate::guide::Guides,
    /// Edits that apply now (the API), alerts that ended (the desk).
    pub(crate) wakes: std::sync::mpsc::Receiver<Wake>,
    pub(crate) shutdown: crate::shutdown::Shutdown,
}

/// Starts the scheduler thread; it stops on shutdown. A channel with a state in `resumed`
/// (a station played from its fleet origin, `crate::render::CaughtUp`) goes on from it.
pub(crate) fn start(
    channels: Vec<ScheduledChannel>,
    resumed: Vec<State>,
    links: SchedulerLinks,
) -> std::io::Result<JoinHandle<()>> {
    let SchedulerLinks {
        store,
        media_dir,
        maps,
        sink,
        views,
        guides,
        wakes,
        shutdown,
    } = links;
    std::thread::Builder::new()
        .name("scheduler".to_owned())
        .spawn(move || {
            let mut resumed = resumed;
            let mut states: Vec<State> = channels
                .into_iter()
                .map(
                    |ch| match resumed.iter().position(|r| r.ch.channel == ch.channel) {
                        Some(i) => resumed.swap_remove(i),
                        None => State::new(ch),
                    },
                )
                .collect();
            let mut woken: Vec<Wake> = Vec::new();
            while !shutdown.is_shutdown() {
                for st in &mut states {
                    let mut woke = false;
                    for w in &woken {
                        match w {
                            Wake::EditNow(c) if *c == st.ch.channel => {
                                st.requeue();
                                woke = true;
                            }
                            Wake::AlertEnded(c) if *c == st.ch.channel => {
                                st.alert_ended();
                                woke = true;
                            }
                            _ => {}
                        }
                    }
                    let map = maps.borrow().get(st.ch.station).copied().flatten();
                    let Some(map) = map else { continue };
                    st.see_clock(&map);
                    let wall = now_utc().0;
                    // Every look on the station's grid, each once, from just after its first
                    // datagram (a fleet's station may start ahead, at its origin): the same
                    // looks as render's and every other node's, so the same cues. One woken
                    // (an edit that applies now, an alert that ended) looks at once too.
                    let origin = map.utc_at_origin_ns;
                    let mut next = match st.next_look {
                        Some((o, n)) if o == origin => n,
                        _ => origin + 1,
                    };
                    if wall - next > 20 * ROUND_NS {
                        // Far behind (a stopped process): from the current look on.
                        next = round_instant(wall, origin).0;
                    }
                    let mut looks = Vec::new();
                    while next <= wall {
                        looks.push((Utc(next), true));
                        next += ROUND_NS;
                    }
                    st.next_look = Some((origin, next));
                    if woke && wall > origin {
                        looks.push((Utc(wall), false));
                    }
                    for (now, on_grid) in looks {
                        if now < st.resting_until {
                            continue;
                        }
                        // A panic costs this channel's round only (see `State::after_panic`).
                        let (cued_until, returning) = (st.cued_until, st.returning);
                        let r = crate::supervise::contain(|| {
                            crate::supervise::chaos(|| format!("scheduler:{}", st.ch.channel));
                            st.round(&store, &media_dir, map, now)
                        });
                        let r = match r {
                            Ok(r) => {
                                st.panics = 0;
                                r
                            }
                            Err(why) => {
                                st.after_panic(cued_until, returning, now, &why);
                                continue;
                            }
                        };
                        if let Some(view) = r.view {
                            views.send_modify(|v| {
                                v.insert(st.ch.channel.clone(), view);
                            });
                        }
                        if let Some(week) = r.guide {
                            guides.send_modify(|g| {
                                g.insert(st.ch.channel.clone(), week);
                            });
                        }
                        if let Some(mut msg) = r.msg {
                            if !on_grid {
                                msg.look_ns = None;
                            }
                            if !sink.send(msg) {
                                return;
                            }
                        }
                    }
                }
                // Half a second between rounds, or less when something wakes it.
                woken.clear();
                let until = std::time::Instant::now() + Duration::from_nanos(ROUND_NS as u64);
                while !shutdown.is_shutdown() {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    match wakes.recv_timeout(left.min(Duration::from_millis(100))) {
                        Ok(w) => {
                            woken.push(w);
                            woken.extend(wakes.try_iter());
                            break;
                        }
                        Err(_) if left.is_zero() => break,
                        Err(_) => {}
                    }
                }
            }
        })
}

impl State {
    /// Goes on with the looks on the grid of the clock starting at UTC `origin_ns` from
    /// `next_ns` on (a station played from its fleet origin up to there).
    pub(crate) fn resume_looks(&mut self, origin_ns: i64, next_ns: i64) {
        self.next_look = Some((origin_ns, next_ns));
    }
}

/// How often the scheduler looks at a channel's schedule (ns).
pub(crate) const ROUND_NS: i64 = 500_000_000;

/// The instant a look at UTC `now` is made for, on the grid of a station whose output clock
/// started at UTC `origin_ns`: one every [`ROUND_NS`] from just after its first datagram.
/// Every node of a fleet, and `headend render`, then decides at the same instants (what is
/// cued first, where a schedule takes over), so the stations' bytes agree.
pub(crate) fn round_instant(now: i64, origin_ns: i64) -> Utc {
    let since = (now - origin_ns - 1).max(0);
    Utc(origin_ns + 1 + since - since % ROUND_NS)
}

/// The wall clock as the playout clock counts it (UTC ns since 1970).
pub(crate) fn now_utc() -> Utc {
    Utc(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64))
}

/// What one pass over a channel gives.
#[derive(Default)]
pub(crate) struct Round {
    /// The cues to hand over, if any.
    pub(crate) msg: Option<ScheduleMsg>,
    /// What is on air around now, for the status API.
    pub(crate) view: Option<ScheduleView>,
    /// The coming days' events (for `/epg.xml`), when recomputed.
    pub(crate) guide: Option<Vec<(u16, OnAirProgramme)>>,
}

impl State {
    /// The scheduler's state of channel `ch`, before its first round.
    pub(crate) fn new(ch: ScheduledChannel) -> State {
        State {
            next_item: ch.base_items,
            unsent: Vec::new(),
            ch,
            media: HashMap::new(),
            seekable: HashMap::new(),
            stamps: HashMap::new(),
            cued_until: None,
            last_error: None,
            next_tag: 0,
            next_week: Utc(0),
            seen_writes: 0,
            returning: false,
            unplayable: HashMap::new(),
            faults_logged: std::collections::HashSet::new(),
            origin_seen: None,
            next_look: None,
            panics: 0,
            resting_until: Utc(i64::MIN),
        }
    }

    /// A round panicked (at UTC `now`): nothing of it reached the station, so the state is
    /// put back to what the station has (what was cued, and whether an alert's end is to be
    /// joined; files given indices stay in [`State::unsent`]) and the week is recomputed.
    /// The channel goes on with what is cued (the next [`AHEAD`]) and its next round comes
    /// after a rest, 1 s doubling to a minute while its rounds keep panicking, so a bug that
    /// a schedule's content trips costs that channel's edits, never the other channels'.
    pub(crate) fn after_panic(
        &mut self,
        cued_until: Option<Utc>,
        returning: bool,
        now: Utc,
        why: &str,
    ) {
        self.cued_until = cued_until;
        self.returning = returning;
        self.next_week = Utc(0);
        self.panics = self.panics.saturating_add(1);
        let rest = crate::supervise::rest_after(self.panics);
        let rest_s = rest.as_secs();
        self.resting_until = now.add(rest.as_nanos() as u64);
        crate::supervise::panicked(
            "scheduler",
            format!(
                "channel {}: a schedule round panicked ({why}): what is cued stays on air, next round in {rest_s} s",
                self.ch.channel
            ),
        );
    }

    /// Notes the station's clock; when its origin moved, the station was built again with
    /// only its config's playlist: everything is cued afresh, joining the schedule at once.
    pub(crate) fn see_clock(&mut self, map: &ClockMap) {
        let seen = self.origin_seen.replace(map.utc_at_origin_ns);
        if seen.is_some_and(|o| o != map.utc_at_origin_ns) {
            tracing::warn!(channel = %self.ch.channel, "the station was built again: its schedule is cued afresh");
            let ch = self.ch.clone();
            *self = State::new(ch);
            self.origin_seen = Some(map.utc_at_origin_ns);
            self.returning = true;
        }
    }

    /// The channel's id.
    pub(crate) fn channel(&self) -> &str {
        &self.ch.channel
    }

    /// An edit applies now: what is cued is dropped and the schedule takes over again.
    pub(crate) fn requeue(&mut self) {
        tracing::info!(channel = %self.ch.channel, "schedule edit applies now");
        self.cued_until = None;
    }

    /// The channel's alert ended: the schedule is joined at once, pre-empting it.
    pub(crate) fn alert_ended(&mut self) {
        self.cued_until = None;
        self.returning = true;
    }

    /// One pass at UTC `now` (file reads and probes: the store's, the media's); an error
    /// is logged once and the channel goes on with what it has.
    pub(crate) fn round(
        &mut self,
        store: &Store,
        media_dir: &std::path::Path,
        map: ClockMap,
        now: Utc,
    ) -> Round {
        let mut out = Round::default();
        match round(self, store, media_dir, map, now, &mut out) {
            Ok(msg) => out.msg = msg,
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(channel = %self.ch.channel, error = %e, "schedule not applied; the channel goes on with what it has");
                    self.last_error = Some(e);
                }
            }
        }
        out
    }
}

/// One pass over one channel: the cues to hand over, if any.
fn round(
    st: &mut State,
    store: &Store,
    media_dir: &std::path::Path,
    map: ClockMap,
    now: Utc,
    out: &mut Round,
) -> Result<Option<ScheduleMsg>, String> {
    let today = ChronoUtc
        .timestamp_nanos(now.0)
        .with_timezone(&st.ch.tz)
        .date_naive();
    let mut entries = Vec::new();
    let mut labels = Vec::new();
    let mut items: Vec<epg::schedule::Item> = Vec::new();
    let mut any = false;
    // Entries that are gaps because their files cannot be played, with why.
    let mut faulty: HashMap<usize, String> = HashMap::new();
    // Yesterday to tomorrow for the cues; the whole week, every 10 s and after every edit
    // through the API, for the EIT schedule and the guide.
    let writes = store.writes();
    let week_due = !st.ch.guide_from_xmltv && (now >= st.next_week || writes != st.seen_writes);
    let last_day = if week_due { 6 } else { 1 };
    for date in std::iter::once(today.pred_opt())
        .chain((0..=last_day).map(|d| today.checked_add_days(chrono::Days::new(d))))
        .flatten()
    {
        let day = store
            .read(&st.ch.channel, date)
            .map_err(|e| e.to_string())?;
        if day.items.is_empty() {
            continue;
        }
        any = true;
        // A file that cannot be played (missing, unreadable, not a transport stream) costs
        // only its own item: its slot airs the filler, the rest airs on time.
        note_unplayable(st, &day, media_dir);
        let mut failure = None;
        let first_live = st.ch.base_items - st.ch.inputs.len();
        let inputs = st.ch.inputs.clone();
        let planned = day.plan_with(
            st.ch.tz,
            |name| {
                let path = media_dir.join(name);
                match schedule_media(st, media_dir, name) {
                    Ok(id) => Some(id),
                    // Named in `note_unplayable`; a gap in the entry (see below).
                    Err(_) if st.unplayable.contains_key(&path) => Some(UNPLAYABLE),
                    Err(e) => {
                        failure.get_or_insert(e);
                        None
                    }
                }
            },
            |name| {
                let k = inputs.iter().position(|i| i == name)?;
                Some(MediaId((first_live + k) as u32))
            },
        );
        match planned {
            Ok(e) => {
                for (k, entry) in e.into_iter().enumerate() {
                    let was_gap = entry.body == playout::schedule::Body::Gap;
                    let entry = entry.without_unplayable();
                    if !was_gap && entry.body == playout::schedule::Body::Gap {
                        let why: Vec<String> = day
                            .items
                            .get(k)
                            .map(|it| it.paths())
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|p| {
                                st.unplayable.get(&media_dir.join(p)).map(|u| u.1.clone())
                            })
                            .collect();
                        let label = day.items.get(k).map_or_else(String::new, |it| it.label());
                        faulty.insert(
                            entries.len(),
                            format!(
                                "{date} item `{label}` cannot be played ({})",
                                why.join("; ")
                            ),
                        );
                    }
                    entries.push(entry);
                }
                labels.extend(day.items.iter().map(|i| format!("{date} {}", i.label())));
                items.extend(day.items.iter().cloned());
            }
            Err(errors) => {
                return Err(format!(
                    "{date}: {}{}",
                    errors,
                    failure.map_or_else(String::new, |f| format!(" ({f})"))
                ))
            }
        }
    }
    if !any {
        return Ok(None);
    }
    let mut filler = Vec::new();
    for p in st.ch.filler.clone() {
        match media_id(st, &p, None) {
            Ok(id) => filler.push(Clip::whole(id)),
            Err(e) => st.fault(format!("filler {e}: left out")),
        }
    }
    let table = media_table(st);
    // What is on air around now, for the status API.
    if let Ok(timeline) = resolve(
        &entries,
        &filler,
        &table,
        Utc(now.0 - 60_000_000_000),
        now.add(6 * 3600 * 1_000_000_000),
    ) {
        let files = st
            .media
            .iter()
            .map(|(p, (i, _, _))| (*i, p.clone()))
            .collect();
        out.view = Some(ScheduleView {
            timeline,
            labels: labels.clone(),
            files,
        });
    }
    // The guide (`/epg.xml`) and the EIT schedule follow every edit at once, and are refreshed
    // every 10 s.
    let week = if week_due {
        st.seen_writes = writes;
        let week = week_events(&entries, &items, &labels, &table, now)?;
        out.guide = Some(week.clone());
        // To the engine at once too: the EIT schedule is encoded off the engine threads
        // (`crate::eit_builder`), so an edit costs the engine nothing.
        st.next_week = now.add(10_000_000_000);
        Some(week)
    } else {
        None
    };
    let first = st.cued_until.is_none();
    let lead = if st.returning { RETURN_LEAD } else { LEAD };
    let from = st.cued_until.unwrap_or(now.add(lead.as_nanos() as u64));
    let ahead = now.add(AHEAD.as_nanos() as u64);
    if from >= ahead && st.unsent.is_empty() && week.is_none() {
        return Ok(None);
    }
    let timeline = resolve(&entries, &filler, &table, from, from.add(HORIZON_NS))
        .map_err(|e| e.to_string())?;
    let reorder: HashMap<usize, u64> = st.media.values().map(|(i, _, r)| (*i, *r)).collect();
    let mut due: Vec<_> = timeline
        .segments()
        .iter()
        .take_while(|seg| seg.start < ahead)
        .copied()
        .collect();
    // Taking over in the last moments of a file already under way: too little is left to
    // find a picture to start from (a file joined 4.8 s into 5 s has no random access point
    // after that). The playlist goes on to the next segment, which takes over instead.
    let mut from = from;
    if first && due.len() > 1 && due[0].offset > 0 && due[0].duration() < MIN_JOIN_NS {
        from = due[0].end;
        due.remove(0);
    }
    if let Some(last) = due.last() {
        st.cued_until = Some(last.end);
    }
    let mut cues = cues(
        &due,
        &entries,
        |u| map.output_time(u),
        |m| reorder.get(&(m.0 as usize)).copied().unwrap_or(0),
    );
    // A live input is joined where it is: it has no offset, and no entry delay known ahead.
    let live_items = st.ch.base_items - st.ch.inputs.len()..st.ch.base_items;
    for c in cues.iter_mut().filter(|c| live_items.contains(&c.item)) {
        c.offset_90k = 0;
        c.entry_delay_90k = 0;
    }
    // Joining far into a file (a join in progress, an in point): read from about where the
    // offset is, a few seconds early, instead of from the start.
    for c in &mut cues {
        let (Some(&(size, first)), Some(info)) = (
            st.seekable.get(&c.item),
            st.media
                .values()
                .find(|(i, _, _)| *i == c.item)
                .map(|(_, m, _)| *m),
        ) else {
            continue;
        };
        if let Some(byte) = seek_byte(c.offset_90k * 100_000 / 9, size, info.duration) {
            c.from_byte = byte;
            c.first_pts = Some(first);
        }
    }
    if cues.is_empty() && st.unsent.is_empty() && week.is_none() {
        return Ok(None);
    }

    st.last_error = None;
    // Tag each cue, and say what it is for the EIT.
    let mut programmes = Vec::new();
    let mut live = Vec::new();
    let mut faults = Vec::new();
    for (c, seg) in cues.iter_mut().zip(&due) {
        st.next_tag += 1;
        c.tag = st.next_tag;
        if let Some(why) = seg.follows.and_then(|i| faulty.get(&i)) {
            faults.push((c.tag, why.clone()));
        }
        let file_title = || {
            st.media
                .iter()
                .find(|(_, (i, _, _))| *i == c.item)
                .and_then(|(p, _)| p.file_stem())
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        };
        let item = match seg.source {
            playout::schedule::Source::Entry(i) => items.get(i),
            playout::schedule::Source::Filler => None,
        };
        // A live item: the inputs to relay, its own first, then its backups.
        if let Some(epg::schedule::Source::Live { input, backup, .. }) = item.map(|it| &it.source) {
            let chain: Vec<usize> = std::iter::once(input)
                .chain(backup)
                .filter_map(|name| st.ch.inputs.iter().position(|i| i == name))
                .collect();
            live.push((c.tag, chain));
        }
        let p = match (seg.source, item) {
            (playout::schedule::Source::Entry(_), Some(it)) => {
                let title = file_title();
                Some(OnAirProgramme::of(
                    it,
                    seg,
                    if title.is_empty() { it.what() } else { title },
                ))
            }
            _ => None,
        }
        .unwrap_or_else(|| OnAirProgramme {
            title: file_title(),
            start: seg.start,
            duration_ns: seg.duration(),
            ..OnAirProgramme::default()
        });
        programmes.push((c.tag, p));
    }
    let preempt = first && std::mem::take(&mut st.returning);
    Ok(Some(ScheduleMsg {
        station: st.ch.station,
        first_item: Some(st.next_item - st.unsent.len()),
        clock_origin_ns: Some(map.utc_at_origin_ns),
        new_paths: std::mem::take(&mut st.unsent),
        handover: first.then(|| map.output_time(from)),
        preempt,
        cues,
        programmes,
        live,
        faults,
        week,
        guide: None,
        look_ns: Some(now.0),
    }))
}

/// Where to start reading a file of `size` bytes lasting `duration_ns` to join it
/// `offset_ns` in: a packet boundary about `SEEK_MARGIN_NS` before the offset, assuming a
/// roughly constant bitrate; `None` for offsets too small to bother.
fn seek_byte(offset_ns: u64, size: u64, duration_ns: u64) -> Option<u64> {
    if offset_ns <= SEEK_MIN_NS || duration_ns == 0 {
        return None;
    }
    let back = offset_ns - SEEK_MARGIN_NS;
    let byte = (u128::from(size) * u128::from(back) / u128::from(duration_ns)) as u64;
    Some(byte - byte % 188)
}

/// The week's events from 00:00 UTC today: one per scheduled entry (its segments joined;
/// filler is not an event), with an event_id that stays the same while the entry does
/// (a hash of its date, start and title), whatever else is edited.
fn week_events(
    entries: &[playout::schedule::Entry],
    items: &[epg::schedule::Item],
    labels: &[String],
    table: &[MediaInfo],
    now: Utc,
) -> Result<Vec<(u16, OnAirProgramme)>, String> {
    let day_ns = 86_400 * 1_000_000_000i64;
    let from = Utc(now.0 - now.0.rem_euclid(day_ns));
    // Gaps are not events: one stand-in filler clip a week long fills them in one segment
    // each (looping the real filler, seconds long, over a week would cost far more).
    let mut table = table.to_vec();
    table.push(MediaInfo {
        duration: 7 * day_ns as u64,
    });
    let gap = [Clip::whole(MediaId(table.len() as u32 - 1))];
    let t = resolve(entries, &gap, &table, from, from.add(7 * day_ns as u64))
        .map_err(|e| e.to_string())?;
    let mut out: Vec<(usize, u16, OnAirProgramme)> = Vec::new();
    for seg in t.segments() {
        let playout::schedule::Source::Entry(i) = seg.source else {
            continue;
        };
        if let Some(last) = out.last_mut().filter(|(j, _, _)| *j == i) {
            last.2.duration_ns += seg.duration();
            continue;
        }
        let Some(it) = items.get(i) else { continue };
        let label = labels.get(i).map_or("", String::as_str);
        let id = label.bytes().fold(0x811C_9DC5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        out.push((
            i,
            (id ^ (id >> 16)) as u16,
            OnAirProgramme::of(it, seg, it.what()),
        ));
    }
    // event_id must be unique within the service: a hash that collides takes the next free.
    let mut used = std::collections::HashSet::new();
    Ok(out
        .into_iter()
        .map(|(_, mut id, p)| {
            while !used.insert(id) {
                id = id.wrapping_add(1);
            }
            (id, p)
        })
        .collect())
}

/// Probes the files of `day` and names each that cannot be played (once), saying what airs
/// in its place.
fn note_unplayable(st: &mut State, day: &epg::schedule::Day, media_dir: &std::path::Path) {
    for (i, item) in day.items.iter().enumerate() {
        let paths = item.paths();
        let faults: Vec<String> = paths
            .iter()
            .filter_map(|p| schedule_media(st, media_dir, p).err())
            .collect();
        let all = faults.len() == paths.len();
        for e in faults {
            st.fault(format!(
                "{}: line {}: item {} ({}): {e}: {}",
                day.date,
                item.line,
                i + 1,
                item.label(),
                if all {
                    "its slot airs the filler"
                } else {
                    "left out of its block"
                }
            ));
        }
    }
}

impl State {
    /// A fault in the schedule's media: logged the first time it is seen.
    fn fault(&mut self, what: String) {
        if self.faults_logged.len() > 10_000 {
            self.faults_logged.clear();
        }
        if self.faults_logged.insert(what.clone()) {
            tracing::error!(channel = %self.ch.channel, fault = %what, "schedule item not playable");
        }
    }
}

/// The playlist index of schedule file `name`, confined to `media_dir`
/// (`super::confine`): a name outside it (absolute, `..`) is never playable; a symbolic link
/// out of it, or what is not a regular file, is not while it stays so.
fn schedule_media(st: &mut State, media_dir: &Path, name: &str) -> Result<MediaId, String> {
    let path = media_dir.join(name);
    if let Err(why) = epg::schedule::media_path(name) {
        let why = format!("`{name}`: {why}");
        st.unplayable.insert(path, (None, why.clone()));
        return Err(why);
    }
    media_id(st, &path, Some(media_dir))
}

/// The playlist index of `path`, probing it the first time (a new one is added to the
/// station's playlist with the next message: [`State::unsent`]); `confined_to`: the
/// directory it must be a regular file inside of, checked whenever it is probed.
fn media_id(st: &mut State, path: &PathBuf, confined_to: Option<&Path>) -> Result<MediaId, String> {
    // A file replaced since it was probed (another size, modification time or inode) is
    // probed again; it keeps its playlist index, since the engine reads it by path.
    let stamp = std::fs::metadata(path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.len(), m.modified().ok(), m.ino())
    });
    let known = st.media.get(path).map(|(i, _, _)| *i);
    if let Some(i) = known {
        if st.stamps.get(&i) == stamp.as_ref() {
            return Ok(MediaId(i as u32));
        }
    }
    // A file that failed is probed again only once it has changed (or appeared).
    if let Some((then, why)) = st.unplayable.get(path) {
        if *then == stamp {
            return Err(why.clone());
        }
    }
    let probed = match confined_to.map_or(Ok(()), |dir| super::confine::inside(dir, path)) {
        Ok(()) => crate::input::probe::probe_file(path).map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    let info = match probed {
        Ok(info) => {
            st.unplayable.remove(path);
            info
        }
        Err(e) => {
            let why = format!("{}: {e}", path.display());
            st.unplayable.insert(path.clone(), (stamp, why.clone()));
            return Err(why);
        }
    };
    let index = known.unwrap_or_else(|| {
        st.next_item += 1;
        st.unsent.push(path.clone());
        st.next_item - 1
    });
    st.media.insert(
        path.clone(),
        (
            index,
            MediaInfo {
                duration: info.duration_ns,
            },
            info.reorder_90k,
        ),
    );
    if let Some(stamp) = stamp {
        st.seekable.insert(index, (stamp.0, info.first_pts));
        st.stamps.insert(index, stamp);
    }
    Ok(MediaId(index as u32))
}

/// Durations by playlist index (the config's playlist entries are never scheduled: 0; a live
/// input lasts longer than any timeline resolved, so its items last what they say).
fn media_table(st: &State) -> Vec<MediaInfo> {
    let mut table = vec![MediaInfo { duration: 0 }; st.next_item];
    for info in &mut table[st.ch.base_items - st.ch.inputs.len()..st.ch.base_items] {
        info.duration = ENDLESS_NS;
    }
    for (i, info, _) in st.media.values() {
        table[*i] = *info;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `HH:MM:SS` (UTC) of UTC second `t`.
    fn hms(t: i64) -> String {
        let t = t.rem_euclid(86_400);
        format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    }

    /// The file names of the files a message adds to the playlist.
    fn file_names(msg: &ScheduleMsg) -> Vec<String> {
        msg.new_paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    }

    /// Now in whole UTC seconds, or a while before when midnight is near.
    fn away_from_midnight() -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        if now % 86_400 > 86_000 {
            now - 1000
        } else {
            now
        }
    }

    /// The scheduler's state of channel `news` (UTC, e.ts as filler, one playlist entry), and
    /// its clock with UTC second `now` at the origin.
    fn news(media: &std::path::Path, now: i64) -> (State, ClockMap) {
        let ch = ScheduledChannel {
            station: 0,
            channel: "news".to_owned(),
            tz: Tz::UTC,
            filler: vec![media.join("e.ts")],
            base_items: 1,
            inputs: Vec::new(),
            guide_from_xmltv: false,
        };
        let map = ClockMap::starting(now * 1_000_000_000, 0);
        (State::new(ch), map)
    }

    /// A round that fails (tomorrow's file names an input the channel does not have) after
    /// today's new file was given its playlist index: the file goes to the station with the
    /// next message, so the index the cues use is the station's. So after a round that
    /// panicked: what it cued is put back, and the channel rests before its next round.
    #[test]
    fn a_failed_round_hands_its_new_files_over_with_the_next() {
        const S: i64 = 1_000_000_000;
        let media = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let now = away_from_midnight();
        let t = (now + 5).rem_euclid(86_400);
        let today = ChronoUtc.timestamp_opt(now, 0).unwrap().date_naive();
        let tomorrow = today.succ_opt().unwrap();
        let text = format!(
            "date = \"{today}\"\n[[item]]\nstart = \"{:02}:{:02}:{:02}\"\nfile = \"a.ts\"\n",
            t / 3600,
            t / 60 % 60,
            t % 60
        );
        store
            .write("news", &epg::schedule::parse(&text).unwrap(), 0)
            .unwrap();
        let bad = format!(
            "date = \"{tomorrow}\"\n[[item]]\nstart = \"10:00:00\"\nlive = \"nope\"\nduration = \"10m\"\n"
        );
        store
            .write("news", &epg::schedule::parse(&bad).unwrap(), 0)
            .unwrap();
        let (mut st, map) = news(&media, now);
        let round = st.round(&store, &media, map, Utc(now * S));
        assert!(round.msg.is_none(), "tomorrow's error stops the round");
        assert_eq!(st.unsent.len(), 1, "a.ts waits: {:?}", st.unsent);
        // Tomorrow mended: the next message carries it, and its cues name it.
        let good =
            format!("date = \"{tomorrow}\"\n[[item]]\nstart = \"10:00:00\"\nfile = \"b.ts\"\n");
        store
            .write("news", &epg::schedule::parse(&good).unwrap(), 1)
            .unwrap();
        let msg = st
            .round(&store, &media, map, Utc(now * S + S / 2))
            .msg
            .expect("the schedule applies");
        let names = file_names(&msg);
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"a.ts".to_owned()) && names.contains(&"b.ts".to_owned()));
        for c in &msg.cues {
            assert!((1..4).contains(&c.item), "{c:?}");
        }
        assert!(st.unsent.is_empty());

        // A panicked round: what was cued is put back, and the next round waits 1 s, then 2 s.
        let cued = st.cued_until;
        st.cued_until = Some(Utc(0));
        st.after_panic(cued, false, Utc(now * S), "a bug");
        assert_eq!(st.cued_until, cued);
        assert_eq!(st.resting_until, Utc((now + 1) * S));
        st.after_panic(cued, false, Utc(now * S), "a bug");
        assert_eq!(st.resting_until, Utc((now + 2) * S));
    }

    /// A day with a missing file between two good ones: the item before is cut at the
    /// missing one's hard start as it would have been, the missing item's slot airs the
    /// filler up to the next hard start, and the fault is named once.
    #[test]
    fn an_unplayable_item_costs_only_its_own_slot() {
        const S: i64 = 1_000_000_000;
        let media = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let now = away_from_midnight();
        let at = |secs: i64| hms(now + secs);
        let date = ChronoUtc
            .timestamp_opt(now, 0)
            .unwrap()
            .date_naive()
            .to_string();
        let text = format!(
            "date = \"{date}\"\n\
             [[item]]\nstart = \"{}\"\nfile = \"a.ts\"\n\
             [[item]]\nstart = \"{}\"\nfile = \"not-there-yet.ts\"\ntitle = \"Late\"\n\
             [[item]]\nstart = \"{}\"\nfile = \"b.ts\"\n",
            at(5),
            at(7),
            at(9)
        );
        let day = epg::schedule::parse(&text).unwrap();
        store.write("news", &day, 0).unwrap();
        let (mut st, map) = news(&media, now);
        let round = st.round(&store, &media, map, Utc(now * S));
        let msg = round.msg.expect("the schedule applies");
        let path_of = |item: usize| msg.new_paths[item - 1].file_name().unwrap().to_owned();
        // From the handover (4 s ahead) to 8 s ahead: filler to a.ts's start at 5 s, a.ts cut
        // at 7 s (the missing item's hard start), filler in its slot up to b.ts's at 9 s.
        let cues: Vec<_> = msg
            .cues
            .iter()
            .map(|c| (path_of(c.item), c.not_before, c.until))
            .collect();
        let t = |secs: i64| map.output_time(Utc((now + secs) * S));
        let e = std::ffi::OsString::from("e.ts");
        let a = std::ffi::OsString::from("a.ts");
        assert_eq!(
            cues,
            vec![
                (e.clone(), None, Some(t(5))),
                (a, Some(t(5)), Some(t(7))),
                (e, None, Some(t(9))),
            ]
        );
        // The filler in the missing item's slot is a stoppage when it goes on air.
        assert_eq!(msg.faults.len(), 1, "{:?}", msg.faults);
        assert_eq!(msg.faults[0].0, msg.cues[2].tag);
        assert!(
            msg.faults[0].1.contains("not-there-yet.ts"),
            "{:?}",
            msg.faults
        );
        assert_eq!(st.faults_logged.len(), 1, "{:?}", st.faults_logged);
        let fault = st.faults_logged.iter().next().unwrap();
        assert!(
            fault.contains("line 8: item 2 (") && fault.contains("not-there-yet.ts"),
            "{fault}"
        );
        // The next round names it no more (and does not probe it again).
        st.round(&store, &media, map, Utc(now * S + S / 2));
        assert_eq!(st.faults_logged.len(), 1);
    }

    /// Files outside the media directory never air: an absolute path, `..`, a symbolic link
    /// out of it; each slot airs the filler and is named as a fault with why.
    #[test]
    fn files_outside_the_media_directory_air_the_filler() {
        const S: i64 = 1_000_000_000;
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
        let media = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures.join("a.ts"), media.path().join("a.ts")).unwrap();
        std::os::unix::fs::symlink(fixtures.join("b.ts"), media.path().join("out.ts")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let now = away_from_midnight();
        let at = |secs: i64| hms(now + secs);
        let date = ChronoUtc.timestamp_opt(now, 0).unwrap().date_naive();
        let abs = fixtures.join("b.ts").display().to_string();
        let text = format!(
            "date = \"{date}\"\n\
             [[item]]\nstart = \"{}\"\nfile = \"a.ts\"\n\
             [[item]]\nstart = \"{}\"\nfile = {abs:?}\n\
             [[item]]\nstart = \"{}\"\nfile = \"out.ts\"\n\
             [[item]]\nstart = \"{}\"\nfile = \"../b.ts\"\n",
            at(5),
            at(6),
            at(7),
            at(9)
        );
        // Written to the store directly (the API refuses such a day).
        store
            .write("news", &epg::schedule::parse(&text).unwrap(), 0)
            .unwrap();
        let (mut st, map) = news(&fixtures, now);
        let msg = st
            .round(&store, media.path(), map, Utc(now * S))
            .msg
            .expect("the schedule applies");
        let names = file_names(&msg);
        assert!(
            !names.contains(&"b.ts".to_owned()) && !names.contains(&"out.ts".to_owned()),
            "{names:?}"
        );
        let faults: Vec<&str> = msg.faults.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(faults.len(), 2, "{faults:?}");
        assert!(faults[0].contains("absolute path"), "{faults:?}");
        assert!(faults[1].contains("symbolic link out"), "{faults:?}");
        assert!(
            st.faults_logged
                .iter()
                .any(|f| f.contains("`../b.ts`") && f.contains("`..`")),
            "{:?}",
            st.faults_logged
        );
    }

    /// A takeover half a second before the next hard start, in a file under way: the tail is
    /// not joined (no picture to start from is left in it); the playlist goes on and the
    /// schedule takes over at the hard start.
    #[test]
    fn a_takeover_does_not_join_the_last_moments_of_a_file() {
        const S: i64 = 1_000_000_000;
        let media = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let now = away_from_midnight();
        let date = ChronoUtc.timestamp_opt(now, 0).unwrap().date_naive();
        // The hard start at now + 4.5 s: the takeover (now + 4 s) falls 0.5 s before it.
        let text = format!(
            "date = \"{date}\"\n\
             [[item]]\nstart = \"{}\"\nblock = [\"a.ts\"]\nloop_for = \"1m\"\n\
             [[item]]\nstart = \"{}.500\"\nfile = \"b.ts\"\n",
            hms(now - 9),
            hms(now + 4)
        );
        store
            .write("news", &epg::schedule::parse(&text).unwrap(), 0)
            .unwrap();
        let (mut st, map) = news(&media, now);
        let msg = st
            .round(&store, &media, map, Utc(now * S))
            .msg
            .expect("the schedule applies");
        let names = file_names(&msg);
        let first = &msg.cues[0];
        assert_eq!(names[first.item - 1], "b.ts", "{names:?}");
        assert_eq!(
            msg.handover,
            Some(map.output_time(Utc(now * S + 4 * S + S / 2)))
        );
    }

    #[test]
    fn seeks_land_before_the_offset_on_a_packet_boundary() {
        const S: u64 = 1_000_000_000;
        // A 2 h file of 7.2 GB (8 Mbit/s) joined 1 h 50 min in: 10 s early.
        let b = seek_byte(6600 * S, 7_200_000_000, 7200 * S).unwrap();
        assert_eq!(b % 188, 0);
        assert!((6_589_000_000..=6_590_000_000).contains(&b), "{b}");
        assert_eq!(
            seek_byte(15 * S, 1 << 30, 7200 * S),
            None,
            "small offsets read from the start"
        );
        assert_eq!(seek_byte(60 * S, 1 << 30, 0), None);
    }
}
