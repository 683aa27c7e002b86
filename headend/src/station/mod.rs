//! A station: one channel on its own, or an MPTS of several, as a sans-IO state machine (the
//! quinn-proto shape). It owns the splicers and the CBR muxer, the DVB SI, scrambling with
//! its key rotation, alert overrides and the emergency tables. Time is the output clock
//! (27 MHz, advanced by the packets it emits) and a [`ClockMap`] from it to UTC: nothing in
//! here reads a clock, sleeps, spawns a thread, opens a file or touches a socket.
//!
//! Its drivers feed it and carry out what it asks:
//! - in: [`Station::handle_schedule`] (the scheduler's cues), [`Station::handle_override`]
//!   (the alert desk), [`Station::handle_io`] (a file read done), [`Station::handle_built`]
//!   (EIT schedule tables encoded), [`Station::handle_peer`] (another station's
//!   present/following), [`Station::handle_cas`] (the SimulCrypt link);
//! - out: [`Station::emit`] (the next packets, scrambled), [`Station::poll_io`] (file reads
//!   to do), [`Station::poll_output`] (work for other parts and reports).
//!
//! The real-time engine (`crate::engine`) paces it against the wall clock and does its I/O
//! on threads; `headend render` (`crate::render`) runs it on a simulated clock and does its
//! I/O inline. Both see the same state machine, so what render writes is what goes on air.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use epg::carousel::{Carousel, NetworkSi, PfPosted, SiOutput};
use epg::eit_cache::{Built, EitJob};
use epg::si::Event;
use playout::mux::{Mux, MuxConfig, MuxEvent, Underflow};
use playout::splice::{IoRequest, OutputPids, SpliceConfig, SpliceEvent, Splicer};
use playout::time::{Ticks27M, SYSTEM_CLOCK_HZ};
use playout::ts::{Pid, PACKET_SIZE};

use crate::cas::{CasEvent, Provision};
use crate::clock::ClockMap;
use crate::config::{ChannelConfig, Config, PidPlan};
use crate::input::file::IoDone;

mod cue;
pub(crate) mod failover;
mod overrides;
pub(crate) mod scrambling;
mod si;
pub(crate) use cue::{OnAirProgramme, ScheduleMsg};
pub(crate) use overrides::{AirAlert, AirKind, AirReport, OverrideMsg};

/// How often TDT/TOT are refreshed (and peers' EIT other sent): each second of output time.
const SI_TICK: Ticks27M = Carousel::TICK;
/// How long after the scheduler's look (output time) its message applies: more than the
/// daemon's scheduler can be late with it (its look comes up to a round, 500 ms, after the
/// instant it is for), and far less than the cues' lead (4 s at least).
const SCHEDULE_APPLY: Ticks27M = SYSTEM_CLOCK_HZ;
/// How long after its job was given (output time) an EIT schedule update goes on air: time
/// for the builder thread, busy with every channel's first week at a start (2 ms each).
const EIT_APPLY: Ticks27M = SYSTEM_CLOCK_HZ;
/// Packets [`Station::emit`] works on at a time: one UDP datagram.
pub(crate) const EMIT_STEP: usize = 7;

/// How a relay leaves what is on air ([`Station::relay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handover {
    /// On a clean boundary at least this far (27 MHz) from now.
    Cut(Ticks27M),
    /// After everything queued.
    Drain,
}

/// What a station asks of its driver, or tells it.
#[derive(Debug)]
pub(crate) enum Output {
    /// An alert went on or off air (for the alert desk's audit log).
    Air(AirReport),
    /// EIT schedule work ([`crate::eit_builder`], [`epg::eit_cache::EitBuilds`]), given at
    /// output time `at`; the answer goes to [`Station::handle_built`] with that time.
    Eit { job: EitJob, at: Ticks27M },
    /// A service's present/following changed: for every other station
    /// ([`Station::handle_peer`]).
    Pf(Box<PfPosted>),
    /// Program `program`'s SimulCrypt link is to ask its ECMG for this ECM.
    Provision {
        program: usize,
        provision: Provision,
    },
    /// An item starts on program `program`: where its first packet leaves, for the archive
    /// to begin a segment there (a programme's catch-up then starts with its first frame).
    Boundary(Box<Boundary>),
}

/// An item starting on air, as the archive marks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub(crate) program: usize,
    /// Output time of its first packet.
    pub(crate) at: Ticks27M,
    /// UTC (ns) at which its first picture is presented.
    pub(crate) presented_utc_ns: i64,
    /// `programme` (a schedule's item), `alert` (an alert's clip) or `item` (a playlist's).
    pub(crate) kind: &'static str,
    /// The EIT event it is, when its programme is in the service's EIT schedule.
    pub(crate) event_id: Option<u16>,
    /// The programme's title, else the file's name.
    pub(crate) title: String,
}

/// A file read a station wants: `req` of program `program`; `path` is the file for an open.
#[derive(Debug)]
pub(crate) struct IoJob {
    pub(crate) program: usize,
    pub(crate) req: IoRequest,
    pub(crate) path: Option<PathBuf>,
    /// The item is this live input of the program (its index among the program's inputs):
    /// the driver answers from the feed, not a file.
    pub(crate) live: Option<usize>,
}

/// What a station is made of.
pub(crate) struct StationPlan<'a> {
    /// Its index among all stations (in reports).
    pub(crate) index: usize,
    pub(crate) id: &'a str,
    /// Its channels, by program.
    pub(crate) channels: &'a [ChannelConfig],
    pub(crate) mux: MuxConfig,
    pub(crate) transport_stream_id: u16,
    pub(crate) network: &'a NetworkSi,
    /// Whether it is an MPTS (which carries SDT and EIT p/f other for the other MPTS).
    pub(crate) mpts: bool,
    /// How its output clock maps to UTC.
    pub(crate) clock: ClockMap,
    /// The key source of each scrambled channel, in channel order
    /// ([`crate::keys::key_source`]).
    pub(crate) keys: Vec<Box<dyn drm::keys::KeySource + Send>>,
}

/// Counters of a station's items, for the status and render's summary.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ItemStats {
    pub(crate) items_started: u64,
    pub(crate) items_failed: u64,
}

/// One station.
pub(crate) struct Station {
    /// Its index among all stations.
    index: usize,
    id: String,
    names: Vec<String>,
    /// Each program's service_id.
    service_ids: Vec<u16>,
    /// Each program's files (the config's playlist, then what schedules and alerts add).
    playlists: Vec<Vec<PathBuf>>,
    /// The scheduler's playlist (program 0): its entries below `sched_base` are the config's
    /// playlist and live inputs, as here; its entry `sched_base + k` is the `k`th file it
    /// added, which is this playlist's `sched_items[k]` (an alert's clip, added between two
    /// of them, takes a place of its own).
    sched_base: usize,
    sched_items: Vec<usize>,
    /// DVB SI of the station (none when every channel has it off).
    si: Option<Carousel>,
    /// Programmes of the cues handed to the splicer, by tag, until they go on air.
    programmes: BTreeMap<u64, OnAirProgramme>,
    /// The last cue programme that started (by tag).
    started_programme: Option<(u64, OnAirProgramme)>,
    /// Per program: the last item that started and its gap on air (27 MHz), until taken.
    last_start: Vec<Option<(usize, Option<Ticks27M>)>>,
    /// The tag of the cue on air (program 0), if it came from the schedule.
    on_air_tag: Option<u64>,
    /// Emergency alert overrides, per program.
    air: overrides::Air,
    /// The scrambled programs: (program, its scrambling).
    scrambling: Vec<(usize, scrambling::ProgramScrambling)>,
    on_air: Vec<Option<String>>,
    mux: Mux,
    clock: ClockMap,
    /// Output time of the next SI refresh.
    next_si_tick: Ticks27M,
    out: VecDeque<Output>,
    items: ItemStats,
    /// Items reported started, until they are presented.
    starts: VecDeque<PendingStart>,
    /// Each program's live inputs: their playlist items, in priority order.
    live: Vec<Vec<usize>>,
    /// Cues (by tag) that air the filler in place of an item that cannot be played, with
    /// why: a stoppage when they go on air.
    fault_tags: HashMap<u64, String>,
    /// Per program: a media stoppage is open (filler or nothing on air because of a fault).
    media_fault: Vec<bool>,
    /// What the stoppage record is to be told, until taken.
    marks: Vec<crate::record::Mark>,
    /// EIT schedule tables built, waiting for their output time ([`Station::handle_built`]).
    built: VecDeque<(Ticks27M, Built)>,
    /// The scheduler's messages waiting for their output time ([`Station::handle_schedule`]).
    deferred: VecDeque<(Ticks27M, ScheduleMsg)>,
}

impl Station {
    /// A station as `plan` says, at the start of its output clock.
    pub(crate) fn new(plan: StationPlan<'_>) -> Station {
        let refs: Vec<&ChannelConfig> = plan.channels.iter().collect();
        let mut mux = Mux::new(plan.mux, splicers(&refs));
        let mut keys = plan.keys.into_iter();
        let mut scrambled = Vec::new();
        for (program, ch) in plan.channels.iter().enumerate() {
            let Some(sc) = &ch.scrambling else { continue };
            // One key source per scrambled channel, in channel order.
            let Some(k) = keys.next() else { continue };
            let now = mux.now();
            let mut s = scrambling::ProgramScrambling::new(ch, sc, k, now);
            s.start(&mut mux, now);
            scrambled.push((program, s));
        }
        let cat: Vec<(u16, u16)> = scrambled
            .iter()
            .filter_map(|(_, s)| s.cat_entry())
            .collect();
        scrambling::set_cat(&mut mux, &cat);
        let utc = plan.clock.utc_ns(mux.now());
        let si = Carousel::start(
            &mut mux,
            plan.network,
            plan.transport_stream_id,
            &si::service_specs(plan.channels),
            plan.mpts,
            utc,
        );
        let next_si_tick = mux.now() + SI_TICK;
        let mut st = Station {
            index: plan.index,
            id: plan.id.to_owned(),
            names: plan.channels.iter().map(|c| c.id.clone()).collect(),
            service_ids: plan.channels.iter().map(|c| c.service_id).collect(),
            playlists: plan.channels.iter().map(|c| c.playlist.clone()).collect(),
            sched_base: plan
                .channels
                .first()
                .map_or(0, |c| c.playlist.len() + c.inputs.len()),
            sched_items: Vec::new(),
            si,
            programmes: BTreeMap::new(),
            started_programme: None,
            last_start: vec![None; plan.channels.len()],
            on_air_tag: None,
            air: overrides::Air::new(plan.channels.iter().map(|c| c.playlist.len()).collect()),
            scrambling: scrambled,
            on_air: vec![None; plan.channels.len()],
            mux,
            clock: plan.clock,
            next_si_tick,
            out: VecDeque::new(),
            items: ItemStats::default(),
            starts: VecDeque::new(),
            live: Vec::new(),
            fault_tags: HashMap::new(),
            media_fault: vec![false; plan.channels.len()],
            marks: Vec::new(),
            built: VecDeque::new(),
            deferred: VecDeque::new(),
        };
        st.collect();
        st
    }

    /// What the stoppage record is to be told since the last call.
    pub(crate) fn take_marks(&mut self) -> Vec<crate::record::Mark> {
        std::mem::take(&mut self.marks)
    }

    /// A media stoppage of `program` starts at output time `at` (once until it ends).
    fn media_stoppage(&mut self, program: usize, at: Ticks27M, cause: String) {
        let Some(open) = self.media_fault.get_mut(program).filter(|o| !**o) else {
            return;
        };
        *open = true;
        let channel = self.names.get(program).map_or("?", String::as_str);
        let at = chrono::DateTime::from_timestamp_nanos(self.clock.utc_ns(at));
        let before = self.on_air.get(program).cloned().flatten();
        self.marks.push(
            crate::record::Mark::start(crate::record::Kind::Stoppage, channel, "media", "", cause)
                .at(at)
                .on_air(before),
        );
    }

    /// Its index among all stations.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Its id (channel or MPTS).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The muxer (for the driver's packet bookkeeping: slots, random access points, close).
    pub(crate) fn mux(&self) -> &Mux {
        &self.mux
    }

    /// The muxer, mutably (close, random access point tracking).
    pub(crate) fn mux_mut(&mut self) -> &mut Mux {
        &mut self.mux
    }

    /// How its output clock maps to UTC.
    pub(crate) fn clock(&self) -> ClockMap {
        self.clock
    }

    /// The output runs `offset_ns` later than its nominal rate says (the pacer's stalls and
    /// clock steering, in all so far).
    pub(crate) fn set_offset_ns(&mut self, offset_ns: i64) {
        self.clock.offset_ns = offset_ns;
    }

    /// UTC (ns) of the output time now.
    pub(crate) fn utc_ns(&self) -> i64 {
        self.clock.utc_ns(self.mux.now())
    }

    /// Item on air per program (file name), if any.
    pub(crate) fn on_air(&self) -> &[Option<String>] {
        &self.on_air
    }

    pub(crate) fn items(&self) -> ItemStats {
        self.items
    }

    /// Counters of the scrambled programs.
    pub(crate) fn scrambling_stats(&self) -> Vec<scrambling::ScramblingStats> {
        self.scrambling.iter().map(|(_, s)| s.stats()).collect()
    }

    /// Writes the next `packets` packets into `buf` (stuffing when the inputs have nothing),
    /// scrambled. It works a datagram (7 packets) at a time: crypto-period work due before
    /// each, then what the parts report and the SI due after each, so what comes out does not
    /// depend on how many packets a driver asks for at once.
    pub(crate) fn emit(&mut self, buf: &mut BytesMut, packets: usize) {
        let mut left = packets;
        while left > 0 {
            let n = left.min(EMIT_STEP);
            left -= n;
            let start = buf.len();
            self.apply_due_schedule();
            let now = self.mux.now();
            for (_, s) in &mut self.scrambling {
                s.rotate(&mut self.mux, now);
            }
            self.mux.emit(buf, n, Underflow::Stuff);
            for (_, s) in &mut self.scrambling {
                s.apply(&mut buf[start..]);
            }
            self.apply_built();
            let now = self.mux.now();
            if now >= self.next_si_tick {
                self.next_si_tick += SI_TICK * ((now - self.next_si_tick) / SI_TICK + 1);
                let utc = self.utc_ns();
                if let Some(si) = &mut self.si {
                    si.tick(&mut self.mux, utc);
                }
            }
            self.collect();
        }
    }

    /// The next file read to do, if any (one per program at a time).
    pub(crate) fn poll_io(&mut self) -> Option<IoJob> {
        let (program, req) = self.mux.poll_io()?;
        let item = match req {
            IoRequest::Open { item, .. } | IoRequest::Read { item } => item,
        };
        let live = self
            .live
            .get(program)
            .and_then(|items| items.iter().position(|i| *i == item));
        let path = match &req {
            IoRequest::Open { item, .. } => self
                .playlists
                .get(program)
                .and_then(|p| p.get(*item))
                .cloned(),
            IoRequest::Read { .. } => None,
        };
        Some(IoJob {
            program,
            req,
            path,
            live,
        })
    }

    /// Adds the live inputs of `ch`, program `program`, to its playlist (in priority order,
    /// each with the programme to take from it), each held `[channel.failover] lead` ahead
    /// of sending (see [`Splicer::set_live`]); returns their playlist items.
    pub(crate) fn add_live(&mut self, program: usize, ch: &ChannelConfig) -> Vec<usize> {
        if program >= self.mux.programs() {
            return Vec::new();
        }
        if self.live.len() <= program {
            self.live.resize(program + 1, Vec::new());
        }
        let lead = ch.failover.lead.as_nanos() as u64 * 27 / 1000;
        for input in &ch.inputs {
            self.playlists[program].push(PathBuf::from(format!("live:{}", input.name)));
            let s = self.mux.program_mut(program);
            let item = s.add_item();
            s.set_live(item, lead);
            if let Some(id) = input.service_id {
                s.set_program(item, id);
            }
            self.live[program].push(item);
        }
        self.live[program].clone()
    }

    /// Program `program` relays its live input `input` (`None`: its playlist, from the
    /// first file). `Cut(ahead)`: what is on air gives way on a clean boundary at least
    /// `ahead` from now (leaving a file, or a live input for another whose entry point is
    /// that far ahead of now); `Drain`: after all that is queued (leaving a live input for
    /// the playlist: its queued packets are good; the driver ends its reads). Under an
    /// alert, that is what comes back when the alert ends.
    ///
    /// `slot`: in a schedule's live item (its end and cue tag): the new source plays until
    /// that end (its programme in the EIT), and the schedule's cues after it stay; `Drain`
    /// then keeps what is queued without dropping them.
    pub(crate) fn relay(
        &mut self,
        program: usize,
        input: Option<usize>,
        how: Handover,
        slot: Option<(Option<Ticks27M>, u64)>,
    ) {
        let item = match input {
            Some(i) => match self.live.get(program).and_then(|l| l.get(i)) {
                Some(item) => *item,
                None => return,
            },
            None => 0,
        };
        if self.air.overriding(program) {
            self.air.set_resume(program, item);
            return;
        }
        let now = self.mux.now();
        let mut cue = overrides::plain_cue(item);
        if let Some((until, tag)) = slot {
            cue.until = until;
            cue.tag = tag;
        }
        let s = self.mux.program_mut(program);
        match (how, slot) {
            (Handover::Cut(ahead), _) => s.preempt_at(now, now.saturating_add(ahead), cue),
            (Handover::Drain, Some(_)) => s.preempt_at(now, Ticks27M::MAX, cue),
            (Handover::Drain, None) => {
                s.clear_cues();
                s.push_cue(cue);
            }
        }
        self.collect();
    }

    /// The last item of program `program` that started since the last call, with its gap on
    /// air (27 MHz ticks: how long nothing new was presented before it).
    pub(crate) fn take_last_start(&mut self, program: usize) -> Option<(usize, Option<Ticks27M>)> {
        self.last_start.get_mut(program).and_then(Option::take)
    }

    /// A file read of program `program` is done.
    pub(crate) fn handle_io(&mut self, program: usize, done: IoDone) {
        let at = self.mux.now();
        if program < self.mux.programs() {
            done.apply(self.mux.program_mut(program), at);
        }
        self.collect();
    }

    /// The next thing for the driver, if any.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// EIT schedule tables encoded for this station.
    /// EIT schedule tables built for the job given at output time `at`: they go on air
    /// [`EIT_APPLY`] after it, whenever the builder finished (at once if later), so the
    /// output does not depend on how fast the builder was (the engine's thread, render's
    /// inline call): the same bytes on every node of a fleet.
    pub(crate) fn handle_built(&mut self, built: Built, at: Ticks27M) {
        let due = at + EIT_APPLY;
        if due <= self.mux.now() {
            if let Some(si) = &mut self.si {
                si.handle_built(&mut self.mux, built);
            }
        } else {
            self.built.push_back((due, built));
        }
    }

    /// The built EIT tables due by now.
    fn apply_built(&mut self) {
        let now = self.mux.now();
        while self.built.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, b)) = self.built.pop_front() else {
                break;
            };
            if let Some(si) = &mut self.si {
                si.handle_built(&mut self.mux, b);
            }
        }
    }

    /// Another station's service changed its present/following.
    pub(crate) fn handle_peer(&mut self, pf: &PfPosted) {
        if let Some(si) = &mut self.si {
            si.handle_peer(pf);
        }
    }

    /// EMM streams (from EMMGs, `crate::emmg`): each (CA_system_id, EMM PID, rate) gets a
    /// data stream at that rate in the muxer (up to 2 s of it queued) and an entry in the CAT.
    /// Meant before the first [`Station::emit`].
    pub(crate) fn add_emm(&mut self, streams: &[(u16, u16, u64)]) {
        let mut cat: Vec<(u16, u16)> = self
            .scrambling
            .iter()
            .filter_map(|(_, s)| s.cat_entry())
            .collect();
        for &(ca, pid, rate) in streams {
            let two_seconds = (rate * 2 / (PACKET_SIZE as u64 * 8)).max(64) as usize;
            self.mux.set_stream(Pid::from_bits(pid), rate, two_seconds);
            if !cat.contains(&(ca, pid)) {
                cat.push((ca, pid));
            }
        }
        scrambling::set_cat(&mut self.mux, &cat);
    }

    /// Queues EMM packets (whole TS packets) on `pid`; how many were taken (the rest did not
    /// fit the queue).
    pub(crate) fn push_emm(&mut self, pid: u16, packets: &[u8]) -> usize {
        self.mux.push_stream(Pid::from_bits(pid), packets)
    }

    /// What the CAT lists and the muxer queued on an EMM PID: (packets sent, waiting).
    pub(crate) fn emm_state(&self, pid: u16) -> Option<(u64, usize)> {
        self.mux.stream_state(Pid::from_bits(pid))
    }

    /// What the SimulCrypt link of program `program`'s CAS `cas` brought.
    pub(crate) fn handle_cas(&mut self, program: usize, cas: usize, ev: CasEvent) {
        if let Some((_, s)) = self.scrambling.iter_mut().find(|(p, _)| *p == program) {
            s.handle_cas(&mut self.mux, cas, ev);
        }
    }

    /// The playlist index of the scheduler's item `item` (see [`Station::sched_items`]).
    fn sched_item(&self, item: usize) -> Option<usize> {
        match item.checked_sub(self.sched_base) {
            None => Some(item),
            Some(k) => self.sched_items.get(k).copied(),
        }
    }

    /// Takes the scheduler's cues: new files join the playlist, the first cues take over
    /// from it.
    pub(crate) fn handle_schedule(&mut self, msg: ScheduleMsg) {
        if let Some(look) = msg.look_ns.filter(|_| !msg.preempt) {
            let due = self.clock.output_time(playout::schedule::Utc(look)) + SCHEDULE_APPLY;
            if due > self.mux.now() {
                self.deferred.push_back((due, msg));
                return;
            }
        }
        // At once, after what came before it.
        while let Some((_, m)) = self.deferred.pop_front() {
            self.apply_schedule(m);
        }
        self.apply_schedule(msg);
    }

    /// The scheduler's messages due by now.
    fn apply_due_schedule(&mut self) {
        let now = self.mux.now();
        while self.deferred.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, m)) = self.deferred.pop_front() {
                self.apply_schedule(m);
            }
        }
    }

    fn apply_schedule(&mut self, msg: ScheduleMsg) {
        let utc = self.utc_ns();
        if let (Some(guide), Some(si)) = (&msg.guide, self.si.as_mut()) {
            si.set_guide(
                &mut self.mux,
                self.service_ids[0],
                OnAirProgramme::events(guide),
                utc,
            );
        }
        if self.mux.programs() != 1 {
            return;
        }
        let have = self.sched_base + self.sched_items.len();
        if msg.first_item.is_some_and(|first| first != have)
            || msg
                .clock_origin_ns
                .is_some_and(|o| o != self.clock.utc_at_origin_ns)
        {
            tracing::warn!(station = %self.id, first_item = ?msg.first_item, have, "a schedule message for the station as it was before it was built again: dropped (the scheduler cues it afresh)");
            return;
        }
        for p in msg.new_paths {
            self.sched_items.push(self.playlists[0].len());
            self.playlists[0].push(p);
            self.mux.program_mut(0).add_item();
        }
        if msg.handover.is_some() {
            self.fault_tags.clear();
        }
        self.fault_tags.extend(msg.faults);
        self.air.scheduled |= msg.handover.is_some() || !msg.cues.is_empty();
        if self.air.overriding(0) {
            // An alert is on air: the schedule's cues wait; when the alert ends the scheduler
            // cues again from the wall clock (`preempt`).
            self.programmes.extend(msg.programmes);
        } else {
            let splicer = self.mux.program_mut(0);
            if let Some(at) = msg.handover {
                self.programmes.clear();
                splicer.clear_cues();
                if msg.preempt {
                    tracing::info!(station = %self.id, "the schedule returns");
                } else {
                    splicer.cut_current(at);
                    tracing::info!(station = %self.id, "schedule takes over");
                }
            }
            self.programmes.extend(msg.programmes);
            let now = self.mux.now();
            let mut first = true;
            for mut c in msg.cues {
                let Some(item) = self.sched_item(c.item) else {
                    tracing::error!(station = %self.id, item = c.item, "a cue names a file the scheduler never added: left out");
                    continue;
                };
                c.item = item;
                let splicer = self.mux.program_mut(0);
                if c.from_byte > 0 {
                    tracing::info!(station = %self.id, item = c.item, from_byte = c.from_byte, offset_s = c.offset_90k as f64 / 90_000.0, "joining far into a file: reading from near the offset");
                }
                if std::mem::take(&mut first) && msg.preempt && msg.handover.is_some() {
                    splicer.preempt(now, c);
                } else {
                    splicer.push_cue(c);
                }
            }
        }
        if let (Some(week), Some(si)) = (msg.week, self.si.as_mut()) {
            si.set_week(self.service_ids[0], OnAirProgramme::events(&week), utc);
        }
        // An edit of what comes next shows in EIT p/f now, not when the next item starts.
        if let (Some(si), Some(t)) = (self.si.as_mut(), self.on_air_tag) {
            let next = self
                .programmes
                .range(t + 1..)
                .next()
                .map(|(_, p)| p.event(0));
            si.set_following(&mut self.mux, self.service_ids[0], next);
        }
        self.collect();
    }

    /// Gathers what the parts produced: the muxer's events (items on air: EIT p/f, alert
    /// reports; logged), the SI's and the scramblers' requests.
    fn collect(&mut self) {
        while let Some(ev) = self.mux.poll_event() {
            self.on_event(&ev);
            log_event(ev, &self.names, &self.playlists, &mut self.items);
        }
        self.due_starts();
        if let Some(si) = &mut self.si {
            while let Some(o) = si.poll_output() {
                self.out.push_back(match o {
                    SiOutput::Eit(job) => Output::Eit {
                        job,
                        at: self.mux.now(),
                    },
                    SiOutput::Pf(pf) => Output::Pf(pf),
                });
            }
        }
        for (program, s) in &mut self.scrambling {
            for provision in s.take_provisions() {
                self.out.push_back(Output::Provision {
                    program: *program,
                    provision,
                });
            }
        }
    }

    fn on_event(&mut self, ev: &MuxEvent) {
        // The input carries more than the muxrate: on the record (劣播) until it is back
        // within it, naming the rate and what is on air.
        let overload = match ev {
            MuxEvent::Overload { program, late } => Some((*program, Some(*late))),
            MuxEvent::OverloadCleared { program } => Some((*program, None)),
            _ => None,
        };
        if let Some((program, late)) = overload {
            let channel = self.names.get(program).map_or("?", String::as_str);
            let at = chrono::DateTime::from_timestamp_nanos(self.clock.utc_ns(self.mux.now()));
            let on_air = self.on_air.get(program).cloned().flatten();
            let muxrate = self.mux.config().muxrate_bps;
            let mark = match late {
                Some(late) => crate::record::Mark::start(
                    crate::record::Kind::Degradation,
                    channel,
                    "muxrate",
                    "",
                    format!(
                        "{} carries more than the muxrate ({muxrate} bit/s): packets leave {} ms late and the picture breaks up; raise the muxrate or re-encode",
                        on_air.as_deref().unwrap_or("the input"),
                        late / 27_000
                    ),
                ),
                None => crate::record::Mark::end(
                    crate::record::Kind::Degradation,
                    channel,
                    "muxrate",
                    "",
                    "the input is back within the muxrate",
                ),
            };
            self.marks.push(mark.at(at).on_air(on_air));
            return;
        }
        let MuxEvent::Splice { program, event } = ev else {
            return;
        };
        let program = *program;
        match *event {
            SpliceEvent::ItemPreempted {
                item,
                presented_until,
            } => self.alert_item_preempted(program, item, presented_until),
            SpliceEvent::ItemFailed { item, ref error } => {
                let name = self.playlists[program]
                    .get(item)
                    .map_or_else(|| format!("#{item}"), |p| p.display().to_string());
                let now = self.mux.now();
                self.media_stoppage(program, now, format!("{name}: {error}"));
            }
            SpliceEvent::ItemEnded { item, damage, .. } if damage.in_file() => {
                // It played, what was whole of it: not a stoppage, but on record (劣播). Only
                // damage in the file's bytes counts: a PES dropped alone can be the splicer's
                // own doing at a cut (a clean file looped to a hard start showed one).
                let name = self.playlists[program]
                    .get(item)
                    .map_or_else(|| format!("#{item}"), |p| p.display().to_string());
                let channel = self.names.get(program).map_or("?", String::as_str);
                let at = chrono::DateTime::from_timestamp_nanos(self.clock.utc_ns(self.mux.now()));
                self.marks.push(
                    crate::record::Mark::instant(
                        crate::record::Kind::Degradation,
                        channel,
                        "media",
                        "",
                        format!(
                            "{name} played damaged: {} continuity errors, {} sync losses, {} bytes \
                             skipped, {} malformed packets, {} PES longer than their length, {} \
                             scrambled packets, {} PES dropped (what was damaged was left out){}",
                            damage.cc_errors,
                            damage.sync_losses,
                            damage.skipped_bytes,
                            damage.malformed_packets,
                            damage.pes_overruns,
                            damage.scrambled_packets,
                            damage.dropped_pes,
                            damage.first.map_or(String::new(), |f| format!("; first at {f}"))
                                + &damage.streams_changed_at.map_or(String::new(), |k| format!(
                                    "; its streams changed (a new PMT) at about packet {k}: the rest of the file was not played"
                                ))
                        ),
                    )
                    .at(at)
                    .on_air(Some(name)),
                );
            }
            SpliceEvent::NothingPlayable { .. } => {
                let now = self.mux.now();
                self.media_stoppage(
                    program,
                    now,
                    "no playable item: PAT, PMT, PCR and null packets are sent".to_owned(),
                );
            }
            SpliceEvent::ItemStarted {
                item,
                tag,
                at,
                presented_at,
                gap,
                ..
            } => {
                if let Some(slot) = self.last_start.get_mut(program) {
                    *slot = Some((item, gap));
                }
                // The splicer reports an item when it queues its first packet, which can be
                // seconds before viewers see it: what it is is settled now (the alert loop
                // goes on, the programme leaves the cue table), and it shows in the status
                // and the EIT when it is presented ([`Station::due_starts`]).
                let alert = self.alert_item_started(program, item, tag, at, presented_at);
                let (present, following) = match (&alert, tag) {
                    (Some(a), _) => (Some(a.clone()), None),
                    (None, Some(t)) => (
                        // A cue's programme, or, for a source put in its place part-way (a
                        // live item's backup), the one it already had.
                        match self.programmes.remove(&t) {
                            Some(p) => {
                                self.started_programme = Some((t, p.clone()));
                                Some(p)
                            }
                            None => self
                                .started_programme
                                .as_ref()
                                .filter(|(k, _)| *k == t)
                                .map(|(_, p)| p.clone()),
                        },
                        self.programmes
                            .range(t + 1..)
                            .next()
                            .map(|(_, p)| p.clone()),
                    ),
                    (None, None) => (None, None),
                };
                let title = present.as_ref().map_or_else(
                    || {
                        self.playlists[program]
                            .get(item)
                            .and_then(|p| p.file_stem())
                            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
                    },
                    |p| p.title.clone(),
                );
                let event_id = match (&alert, &present, self.si.as_ref()) {
                    (None, Some(p), Some(si)) => si.scheduled_event_id(
                        self.service_ids[program],
                        chrono::DateTime::from_timestamp_nanos(p.start.0).naive_utc(),
                        &p.title,
                    ),
                    _ => None,
                };
                self.out.push_back(Output::Boundary(Box::new(Boundary {
                    program,
                    at,
                    presented_utc_ns: self.clock.utc_ns(presented_at.max(at)),
                    kind: if alert.is_some() {
                        "alert"
                    } else if tag.is_some() {
                        "programme"
                    } else {
                        "item"
                    },
                    event_id,
                    title,
                })));
                self.starts.push_back(PendingStart {
                    presented_at: presented_at.max(at),
                    program,
                    item,
                    tag,
                    alert: alert.is_some(),
                    present,
                    following,
                });
            }
            _ => {}
        }
    }

    /// Items whose first picture is presented by now: the status names them, and each
    /// becomes its service's present event (an alert's clip: the alert).
    fn due_starts(&mut self) {
        let now = self.mux.now();
        while self.starts.front().is_some_and(|s| s.presented_at <= now) {
            let Some(s) = self.starts.pop_front() else {
                break;
            };
            if !s.alert {
                self.note_media(&s);
            }
            if let Some(slot) = self.on_air.get_mut(s.program) {
                *slot = self.playlists[s.program]
                    .get(s.item)
                    .map(|p| p.display().to_string());
            }
            if s.program == 0 && !s.alert {
                self.on_air_tag = s.tag;
            }
            let utc = self.clock.utc_ns(s.presented_at);
            let Some(si) = self.si.as_mut() else { continue };
            // A cue's programme from the schedule; otherwise the file name.
            let present = match &s.present {
                Some(p) => p.event(0),
                None => Event {
                    language: "und".to_owned(),
                    title: self.playlists[s.program]
                        .get(s.item)
                        .and_then(|p| p.file_stem())
                        .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
                    ..Event::default()
                },
            };
            si.on_air(
                &mut self.mux,
                self.service_ids[s.program],
                present,
                s.following.as_ref().map(|p| p.event(0)),
                utc,
            );
        }
    }
}

impl Station {
    /// An item presented: the filler in place of an item that cannot be played starts a
    /// media stoppage; the schedule's next item (or, on a playlist, the next item) ends it.
    fn note_media(&mut self, s: &PendingStart) {
        if let Some(cause) = s.tag.and_then(|t| self.fault_tags.remove(&t)) {
            self.media_stoppage(
                s.program,
                s.presented_at,
                format!("{cause}: the filler airs in its slot"),
            );
            return;
        }
        let scheduled = s.program == 0 && self.air.scheduled;
        if !self.media_fault.get(s.program).copied().unwrap_or(false)
            || (scheduled && s.tag.is_none())
        {
            return;
        }
        self.media_fault[s.program] = false;
        let channel = self.names.get(s.program).map_or("?", String::as_str);
        let name = self.playlists[s.program]
            .get(s.item)
            .map(|p| p.display().to_string());
        self.marks.push(
            crate::record::Mark::end(
                crate::record::Kind::Stoppage,
                channel,
                "media",
                "",
                if scheduled {
                    "the schedule's next item is on air"
                } else {
                    "the next item is on air"
                },
            )
            .at(chrono::DateTime::from_timestamp_nanos(
                self.clock.utc_ns(s.presented_at),
            ))
            .on_air(name),
        );
    }
}

/// An item queued for air, until it is presented.
struct PendingStart {
    presented_at: Ticks27M,
    program: usize,
    item: usize,
    tag: Option<u64>,
    alert: bool,
    present: Option<OnAirProgramme>,
    following: Option<OnAirProgramme>,
}

/// The mux settings of one channel on its own.
pub(crate) fn channel_mux_config(ch: &ChannelConfig) -> MuxConfig {
    let mut cfg = MuxConfig::new(ch.muxrate.bps());
    cfg.transport_stream_id = ch.transport_stream_id;
    cfg.pcr_interval = ticks(ch.pcr_interval);
    cfg.psi_interval = ticks(ch.psi_interval);
    cfg.clock_origin = ch.clock_origin_90k * 300;
    cfg
}

/// The mux settings of MPTS `id` and its channels, in program order.
pub(crate) fn mpts_mux_config<'a>(
    config: &'a Config,
    id: &str,
) -> Option<(MuxConfig, Vec<&'a ChannelConfig>)> {
    let m = config.mpts.iter().find(|m| m.id == id)?;
    let channels: Vec<&ChannelConfig> = m
        .channels
        .iter()
        .filter_map(|c| config.channels.iter().find(|ch| &ch.id == c))
        .collect();
    let first = channels.first()?;
    let mut cfg = MuxConfig::new(m.muxrate.bps());
    cfg.transport_stream_id = m.transport_stream_id;
    cfg.pcr_interval = channels
        .iter()
        .map(|c| ticks(c.pcr_interval))
        .min()
        .unwrap_or(cfg.pcr_interval);
    cfg.psi_interval = channels
        .iter()
        .map(|c| ticks(c.psi_interval))
        .min()
        .unwrap_or(cfg.psi_interval);
    cfg.clock_origin = first.clock_origin_90k * 300;
    Some((cfg, channels))
}

/// What a station of a config is, before it runs.
#[derive(Clone)]
pub(crate) struct StationSpec {
    /// Channel or MPTS id.
    pub(crate) id: String,
    /// Its channels, by program.
    pub(crate) channels: Vec<ChannelConfig>,
    pub(crate) mux: MuxConfig,
    pub(crate) outputs: Vec<crate::config::OutputConfig>,
    /// Whether it is an MPTS (a channel on its own has an HTTP feed and can be scheduled).
    pub(crate) mpts: bool,
    /// Its transport_stream_id (SDT, EIT, NIT).
    pub(crate) transport_stream_id: u16,
}

impl StationSpec {
    /// Whether this is a channel on its own (which a schedule can drive).
    pub(crate) fn single_channel(&self) -> Option<&ChannelConfig> {
        (!self.mpts && self.channels.len() == 1).then(|| &self.channels[0])
    }

    /// The plan of this station, `index` among all, on `network` with output clock `clock`.
    pub(crate) fn plan<'a>(
        &'a self,
        index: usize,
        network: &'a NetworkSi,
        clock: ClockMap,
        keys: Vec<Box<dyn drm::keys::KeySource + Send>>,
    ) -> StationPlan<'a> {
        StationPlan {
            index,
            id: &self.id,
            channels: &self.channels,
            mux: self.mux.clone(),
            transport_stream_id: self.transport_stream_id,
            network,
            mpts: self.mpts,
            clock,
            keys,
        }
    }

    /// The key sources of its scrambled channels (reads key files).
    pub(crate) fn key_sources(&self) -> anyhow::Result<Vec<Box<dyn drm::keys::KeySource + Send>>> {
        self.channels
            .iter()
            .filter_map(|ch| ch.scrambling.as_ref().map(|sc| (ch, sc)))
            .map(|(ch, sc)| {
                crate::keys::key_source(sc).map_err(|e| anyhow::anyhow!("channel `{}`: {e}", ch.id))
            })
            .collect()
    }
}

/// Every station of a config: each channel, then each MPTS.
pub(crate) fn specs(config: &Config) -> Vec<StationSpec> {
    let mut out: Vec<StationSpec> = config
        .channels
        .iter()
        .map(|ch| StationSpec {
            id: ch.id.clone(),
            channels: vec![ch.clone()],
            mux: channel_mux_config(ch),
            outputs: ch.outputs.clone(),
            mpts: false,
            transport_stream_id: ch.transport_stream_id,
        })
        .collect();
    for m in &config.mpts {
        if let Some((mux, channels)) = mpts_mux_config(config, &m.id) {
            out.push(StationSpec {
                id: m.id.clone(),
                channels: channels.into_iter().cloned().collect(),
                mux,
                outputs: m.outputs.clone(),
                mpts: true,
                transport_stream_id: m.transport_stream_id,
            });
        }
    }
    out
}

/// The network's SI for a start at `utc_ns`, shared by every station.
pub(crate) fn network(config: &Config, utc_ns: i64) -> Arc<NetworkSi> {
    Arc::new(si::network(config, utc_ns))
}

/// One splicer per channel, with its output PIDs.
pub(crate) fn splicers(channels: &[&ChannelConfig]) -> Vec<Splicer> {
    channels
        .iter()
        .map(|ch| {
            let mut sc = SpliceConfig::new(ch.service_id);
            sc.pids = output_pids(&ch.pids);
            sc.mux_delay = Some(ch.mux_delay.as_nanos() as u64 * 27 / 1000);
            sc.muxrate_bps = ch.muxrate.bps();
            if let Some(s) = &ch.scrambling {
                (sc.program_info, sc.es_info) = scrambling::pmt_descriptors(s);
            }
            Splicer::new(sc, ch.playlist.len())
        })
        .collect()
}

/// Logs one muxer event; `names[p]` is program `p`'s channel id, `playlists[p]` its files.
fn log_event(ev: MuxEvent, names: &[String], playlists: &[Vec<PathBuf>], stats: &mut ItemStats) {
    let item_name = |program: usize, item: usize| {
        playlists
            .get(program)
            .and_then(|p| p.get(item))
            .map_or_else(|| format!("#{item}"), |p| p.display().to_string())
    };
    match ev {
        MuxEvent::Splice { program, event } => {
            let channel = names.get(program).map_or("?", String::as_str);
            match event {
                SpliceEvent::ItemStarted {
                    item,
                    at,
                    open_gop,
                    pmt_changed,
                    offset_90k,
                    ..
                } => {
                    stats.items_started += 1;
                    tracing::info!(channel, item = %item_name(program, item), at_s = at as f64 / SYSTEM_CLOCK_HZ as f64, offset_s = offset_90k as f64 / 90_000.0, open_gop, pmt_changed, "item on air");
                }
                SpliceEvent::ItemEnded {
                    item,
                    packets,
                    damage,
                } => {
                    if damage != Default::default() {
                        let first = damage.first.map(|f| f.to_string());
                        if let Some(k) = damage.streams_changed_at {
                            tracing::warn!(channel, item = %item_name(program, item), packet = k, "the item's streams changed mid-file (a new PMT): it ends there, the rest of the file is not played (remux the joined files)");
                        }
                        tracing::warn!(channel, item = %item_name(program, item), packets, cc_errors = damage.cc_errors, sync_losses = damage.sync_losses, skipped_bytes = damage.skipped_bytes, malformed_packets = damage.malformed_packets, pes_overruns = damage.pes_overruns, scrambled_packets = damage.scrambled_packets, dropped_pes = damage.dropped_pes, first = first.as_deref().unwrap_or("-"), "item ended with damaged input");
                    } else {
                        tracing::debug!(channel, item = %item_name(program, item), packets, "item ended");
                    }
                }
                SpliceEvent::ItemFailed { item, error } => {
                    stats.items_failed += 1;
                    tracing::warn!(channel, item = %item_name(program, item), %error, "item skipped");
                }
                SpliceEvent::ItemPreempted {
                    item,
                    presented_until,
                } => {
                    tracing::info!(channel, item = %item_name(program, item), until_s = presented_until as f64 / SYSTEM_CLOCK_HZ as f64, "item pre-empted");
                }
                SpliceEvent::NothingPlayable { retry_at } => {
                    tracing::error!(
                        channel,
                        retry_at_s = retry_at as f64 / SYSTEM_CLOCK_HZ as f64,
                        "no playable item in the playlist: sending PAT/PMT/PCR and null packets"
                    );
                }
                _ => {}
            }
        }
        MuxEvent::Overload { program, late } => {
            let channel = names.get(program).map_or("?", String::as_str);
            tracing::error!(
                channel,
                late_ms = late / 27_000,
                "ALARM: input bitrate exceeds the muxrate: packets leave late (raise the muxrate or re-encode)"
            );
        }
        MuxEvent::OverloadCleared { program } => {
            let channel = names.get(program).map_or("?", String::as_str);
            tracing::info!(channel, "input back within the muxrate");
        }
        _ => {}
    }
}

fn ticks(d: std::time::Duration) -> u64 {
    (d.as_nanos() * u128::from(SYSTEM_CLOCK_HZ) / 1_000_000_000) as u64
}

fn output_pids(p: &PidPlan) -> OutputPids {
    OutputPids {
        pmt: Pid::from_bits(p.pmt),
        video: Pid::from_bits(p.video),
        audio: Pid::from_bits(p.audio),
        subtitle: Pid::from_bits(p.subtitle),
        data: Pid::from_bits(p.data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::file::IoDone;
    use overrides::{AirAlert, OverrideMsg};
    use playout::splice::Cue;

    /// The files a station opens (answering each open with a failure, so the next comes: a
    /// failed cue's, then the playlist's).
    fn opens(st: &mut Station) -> Vec<PathBuf> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let Some(job) = st.poll_io() else { break };
            let IoRequest::Open { item, .. } = job.req else {
                break;
            };
            seen.extend(job.path);
            let reason = "not read in this test".to_owned();
            st.handle_io(job.program, IoDone::OpenFailed { item, reason });
        }
        seen
    }

    /// An alert's clip joins the playlist between two of the scheduler's files: the
    /// scheduler's next file must still be the one its cues name (the scheduler numbers its
    /// files from the config's playlist and inputs, and knows nothing of alert clips).
    #[test]
    fn an_alert_clip_does_not_shift_the_schedules_files() {
        let config = crate::config::parse(
            "[[channel]]\nid = \"x\"\nservice_id = 1\nname = \"X\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n",
            std::path::Path::new("/m"),
            "t.toml",
        )
        .unwrap();
        let spec = &specs(&config)[0];
        let network = network(&config, 0);
        let clock = crate::clock::ClockMap::starting(0, spec.mux.clock_origin);
        let mut st = Station::new(spec.plan(0, &network, clock, Vec::new()));
        let msg = |first: usize, new_paths: Vec<PathBuf>, cues: Vec<Cue>| ScheduleMsg {
            station: 0,
            first_item: Some(first),
            clock_origin_ns: Some(0),
            new_paths,
            handover: Some(0),
            preempt: true,
            cues,
            programmes: Vec::new(),
            live: Vec::new(),
            faults: Vec::new(),
            week: None,
            guide: None,
            look_ns: None,
        };
        let cue = |item: usize, tag: u64| Cue {
            item,
            offset_90k: 0,
            from_byte: 0,
            first_pts: None,
            not_before: None,
            until: None,
            entry_delay_90k: 0,
            tag,
        };
        opens(&mut st);
        // The scheduler's first file: its item 1 (after the config's a.ts).
        st.handle_schedule(msg(1, vec!["/m/news.ts".into()], vec![cue(1, 1)]));
        assert_eq!(opens(&mut st)[0], PathBuf::from("/m/news.ts"));
        let air = Arc::new(AirAlert {
            seq: 1,
            clip: "/m/alert.ts".into(),
            programme: OnAirProgramme::default(),
            tables: Vec::new(),
        });
        st.handle_override(OverrideMsg::Show {
            station: 0,
            program: 0,
            air,
        });
        assert!(opens(&mut st).contains(&PathBuf::from("/m/alert.ts")));
        st.handle_override(OverrideMsg::Clear {
            station: 0,
            program: 0,
        });
        opens(&mut st);
        // Its second file: item 2 to the scheduler, whatever the alert added.
        st.handle_schedule(msg(2, vec!["/m/film.ts".into()], vec![cue(2, 2)]));
        assert_eq!(opens(&mut st)[0], PathBuf::from("/m/film.ts"));
        // A cue naming a file the scheduler never added is left out, not played.
        st.handle_schedule(msg(3, Vec::new(), vec![cue(3, 3), cue(1, 4)]));
        assert_eq!(opens(&mut st)[0], PathBuf::from("/m/news.ts"));
        // A message computed for the playlist as it was before a rebuild (its first file
        // numbered past what the station has) is dropped whole.
        st.handle_schedule(msg(
            5,
            vec!["/m/stale.ts".into()],
            vec![cue(5, 5), cue(2, 6)],
        ));
        assert_eq!(opens(&mut st), Vec::<PathBuf>::new());
        assert_eq!(st.sched_items.len(), 2);
    }
}
