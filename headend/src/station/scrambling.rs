//! Scrambling in a station: each scrambled program's elementary-stream packets are
//! scrambled in place as they leave the muxer, with even/odd control words rotated every
//! crypto-period (`drm::keys::Rotation` on the output clock), the ECM carrying the next word
//! on air a lead before the flip, and the failure policy applied when the key source fails.
//!
//! With SimulCrypt each CAS of the program (one ECMG each) gets the same words and puts its
//! ECMs on its own PID, each ECM on air in the window its ECMG's channel_status asks for:
//! from `delay_start` after its crypto-period starts (`transition_delay_start` for the first
//! period scrambled after a clear spell) to `delay_stop` after the period ends
//! (`transition_delay_stop` when the service goes clear), two ECMs in turn where windows
//! overlap, the last one kept when its successor is missing. A flip waits (at most half a
//! period) until every working CAS has an ECM with the new word on air; a CAS that has none
//! by then is in alarm and the flip goes on for the others; only when no CAS can announce the
//! word does the program's `on_failure` apply.

use std::ops::RangeInclusive;

use bytes::Bytes;
use drm::cipher::{ControlWord, Parity, Scrambler};
use drm::keys::{KeySource, Rotation, RotationEvent};
use drm::simulcrypt::ChannelStatus;
use playout::mux::Mux;
use playout::time::Ticks27M;
use playout::ts::{Pid, PACKET_SIZE};

use crate::config::{ChannelConfig, KeySourceConfig, OnFailure, ScramblingConfig};

/// Carousel key of the ECM table on its PID.
const ECM_KEY: u64 = 0x80 << 32;
/// Carousel key of the CAT.
const CAT_KEY: u64 = 0x01 << 32;

/// What a scrambled program does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Scrambled,
    /// The key source failed and the policy is `clear`.
    Clear,
    /// The key source failed and the policy is `stop`: its ES packets become null packets.
    Stopped,
}

/// Counters of one scrambled program, for the status (`/channels`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct ScramblingStats {
    pub(crate) channel: String,
    pub(crate) cipher: String,
    pub(crate) packets_scrambled: u64,
    pub(crate) flips: u64,
    pub(crate) key_failures: u64,
    /// Whether the program is in its failure policy now, or one of its CAS is failing.
    pub(crate) alarm: bool,
    /// Each CAS (SimulCrypt), in configuration order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cas: Vec<CasStats>,
}

/// Counters of one CAS of a scrambled program.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct CasStats {
    /// Super_CAS_id, as `0x4AD10000`.
    pub(crate) super_cas_id: String,
    pub(crate) ecm_pid: u16,
    /// Its ECMG channel is open.
    pub(crate) up: bool,
    /// Its viewers may see a gap: its ECMG is down or missed a crypto-period.
    pub(crate) alarm: bool,
    /// ECMs received from its ECMG.
    pub(crate) ecms: u64,
    /// ECMs that came after their window had started (put on air at once).
    pub(crate) late_ecms: u64,
    /// Crypto-periods that went on air without this CAS's ECM.
    pub(crate) missed_periods: u64,
}

/// One ECM an ECMG made.
struct Ecm {
    cp: u16,
    /// As TS packets (sections packetised here).
    packets: Bytes,
    /// Output time it arrived.
    received: Ticks27M,
    /// Output time it was first put in the carousel, and so surely on air two repetitions
    /// later.
    installed: Option<Ticks27M>,
    /// When the service went clear after it (transition_delay_stop from then).
    cleared_at: Option<Ticks27M>,
}

/// One CAS of a SimulCrypt program: its ECM PID and what its ECMG said and sent.
struct Cas {
    pid: u16,
    /// The ECMG's channel parameters (the last it sent: they keep placing its ECMs while it
    /// is away); whether its channel is open is `stats.up`.
    params: Option<ChannelStatus>,
    /// ECMs kept, oldest first.
    ecms: Vec<Ecm>,
    /// The crypto-periods whose ECMs are in the carousel now.
    on_air: Vec<u16>,
    /// ECM repetition interval (ECM_rep_period; the configured interval until it is known).
    interval: Ticks27M,
    /// It missed a crypto-period since its last ECM (logged once).
    missing: bool,
    stats: CasStats,
}

/// The scrambled spell on air, for the transition delays of its first period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spell {
    /// The service is clear: the next flip that scrambles starts a spell.
    Clear,
    /// It started at this crypto-period (the station's first, or after a clear spell).
    Started(u16),
    /// Well under way: no period of it is a first one any more.
    Running,
}

/// What a CAS can say about crypto-period `cp` at a flip.
enum Announce {
    /// An ECM with its word is surely on air.
    Yes,
    /// One will be from this output time.
    At(Ticks27M),
    No,
}

/// One scrambled program of a station.
pub(crate) struct ProgramScrambling {
    channel: String,
    cfg: ScramblingConfig,
    scrambler: Scrambler,
    rotation: Rotation,
    keys: Box<dyn KeySource + Send>,
    /// Words generated, by crypto-period: those of the periods around the next one (two
    /// before it to one after it), kept until the rotation has moved past them, so a period's
    /// word never changes once it exists (see [`ProgramScrambling::word_for`]).
    generated: Vec<(u16, ControlWord)>,
    /// The words of the even and odd crypto-periods, with the period each belongs to.
    words: [Option<(u16, ControlWord)>; 2],
    /// Whether ECMs come from SimulCrypt ECMGs (through the driver's links: what to ask
    /// them waits in `provisions`), and each CAS's state.
    simulcrypt: bool,
    provisions: Vec<crate::cas::Provision>,
    cas: Vec<Cas>,
    /// Start times of the crypto-periods around the one on air (output clock).
    starts: Vec<(u16, Ticks27M)>,
    /// A flip waiting for its ECMs to be on air: (CP_number, parity, until), done by then.
    held: Option<(u16, Parity, Ticks27M)>,
    /// Where the scrambled spell on air stands (transition delays).
    spell: Spell,
    /// The ECM carousels need a look: something changed, or a window opens or closes by
    /// `ecm_check_at`.
    ecms_dirty: bool,
    ecm_check_at: Ticks27M,
    ecm_interval: Ticks27M,
    parity: Parity,
    mode: Mode,
    es_pids: Vec<RangeInclusive<u16>>,
    pub(crate) stats: ScramblingStats,
}

/// A CA_descriptor (ISO/IEC 13818-1 §2.6.16) naming `pid` (an ECM PID in a PMT, an EMM PID
/// in the CAT).
fn ca_descriptor(ca_system_id: u16, pid: u16) -> [u8; 6] {
    let [id_hi, id_lo] = ca_system_id.to_be_bytes();
    [0x09, 4, id_hi, id_lo, 0xE0 | (pid >> 8) as u8, pid as u8]
}

/// The PMT descriptors of a scrambled channel: (program loop, each ES loop).
pub(crate) fn pmt_descriptors(sc: &ScramblingConfig) -> (bytes::Bytes, bytes::Bytes) {
    let ca: Vec<u8> = sc
        .ecm_streams()
        .into_iter()
        .flat_map(|(pid, ca_system_id)| ca_descriptor(ca_system_id, pid))
        .collect();
    let mut program = Vec::new();
    if let Some(mode) = sc.cipher.scrambling_mode() {
        // scrambling_descriptor (EN 300 468 §6.2.41).
        program.extend_from_slice(&[0x65, 1, mode]);
    }
    if sc.ca_descriptor_per_es {
        (program.into(), bytes::Bytes::copy_from_slice(&ca))
    } else {
        program.extend_from_slice(&ca);
        (program.into(), bytes::Bytes::new())
    }
}

/// The key source of a config (`file` is read here, once: its words are fixed).
fn slot(p: Parity) -> usize {
    match p {
        Parity::Even => 0,
        Parity::Odd => 1,
    }
}

impl ProgramScrambling {
    /// Scrambling of channel `ch` (one program of its station) with words from `keys`,
    /// crypto-periods from output time `now`.
    pub(crate) fn new(
        ch: &ChannelConfig,
        cfg: &ScramblingConfig,
        keys: Box<dyn KeySource + Send>,
        now: Ticks27M,
    ) -> ProgramScrambling {
        let period = cfg.crypto_period.as_nanos() as u64 * 27 / 1000;
        // The next word is asked for (and its ECM sent) a third of a period ahead, at most 2 s.
        let lead = (period / 3).min(2 * playout::time::SYSTEM_CLOCK_HZ);
        let es_pids = ch
            .pids
            .ranges()
            .into_iter()
            .filter(|(name, _)| *name != "pmt")
            .map(|(_, r)| r)
            .collect();
        let ecm_interval = cfg.ecm_interval.as_nanos() as u64 * 27 / 1000;
        let cas = match &cfg.keys {
            KeySourceConfig::Simulcrypt(list) => list
                .iter()
                .map(|c| Cas {
                    pid: c.ecm_pid,
                    params: None,
                    ecms: Vec::new(),
                    on_air: Vec::new(),
                    interval: ecm_interval,
                    missing: false,
                    stats: CasStats {
                        super_cas_id: format!("0x{:08X}", c.super_cas_id),
                        ecm_pid: c.ecm_pid,
                        ..CasStats::default()
                    },
                })
                .collect(),
            _ => Vec::new(),
        };
        ProgramScrambling {
            generated: Vec::new(),
            simulcrypt: !cas.is_empty(),
            provisions: Vec::new(),
            cas,
            starts: Vec::new(),
            held: None,
            spell: Spell::Started(0),
            ecms_dirty: true,
            ecm_check_at: 0,
            ecm_interval,
            channel: ch.id.clone(),
            scrambler: Scrambler::new(cfg.cipher, cfg.iv),
            rotation: Rotation::new(now, period, lead),
            keys,
            words: [None, None],
            parity: Parity::Even,
            mode: Mode::Scrambled,
            es_pids,
            cfg: cfg.clone(),
            stats: ScramblingStats {
                channel: ch.id.clone(),
                cipher: cfg.cipher.to_string(),
                ..ScramblingStats::default()
            },
        }
    }

    /// Starts the rotation.
    pub(crate) fn start(&mut self, mux: &mut Mux, now: Ticks27M) {
        self.rotate(mux, now);
    }

    /// The CAT entry it asks for (`cat_emm_pid`): (CA_system_id, EMM PID).
    pub(crate) fn cat_entry(&self) -> Option<(u16, u16)> {
        self.cfg.cat_emm_pid.map(|pid| (self.cfg.ca_system_id, pid))
    }

    /// The word of crypto-period `cp`: the one the scrambler holds for it, else the one
    /// generated for it earlier, else a new one from the key source. A period's word never
    /// changes once it exists: the scrambler and every ECM that names the period (ours, or the
    /// ECMG's from a CW_provision, however often a deferred flip asks for it again) must carry
    /// the same word, or receivers following the ECMs lose the period.
    fn word_for(&mut self, cp: u16) -> Result<ControlWord, drm::keys::KeyError> {
        let known = self
            .words
            .iter()
            .flatten()
            .chain(&self.generated)
            .find(|(c, _)| *c == cp);
        if let Some((_, w)) = known {
            return Ok(w.clone());
        }
        let w = self.keys.control_word(cp)?;
        self.generated.push((cp, w.clone()));
        Ok(w)
    }

    /// Forgets the generated words of periods more than two before `next` (the period whose
    /// word was just asked for): no ECM names them again. Words of `next - 2` to `next + 1`
    /// (what [`ProgramScrambling::send_ecm`] provisions) stay, deferred flips included.
    fn forget_words_before(&mut self, next: u16) {
        self.generated
            .retain(|(c, _)| (c.wrapping_sub(next) as i16) >= -2);
    }

    /// Crypto-period work due at `now`: ECMs from the ECMG, next words (and their ECMs),
    /// parity flips.
    pub(crate) fn rotate(&mut self, mux: &mut Mux, now: Ticks27M) {
        if let Some((cp, parity, until)) = self.held {
            if now < until {
                self.update_ecms(mux, now);
                return;
            }
            self.held = None;
            self.flip(now, cp, parity, true);
        }
        while let Some(ev) = self.rotation.poll(now) {
            match ev {
                RotationEvent::NextWord {
                    cp,
                    parity,
                    starts_at,
                } => {
                    self.set_start(cp, starts_at);
                    self.forget_words_before(cp);
                    match self.word_for(cp) {
                        Ok(cw) => {
                            // The word in use is never replaced: a deferred flip keeps its period.
                            if self.words[slot(parity)].as_ref().map(|(c, _)| *c) != Some(cp) {
                                self.scrambler.set_cw(parity, &cw);
                                self.words[slot(parity)] = Some((cp, cw));
                            }
                            self.send_ecm(mux, cp);
                        }
                        Err(e) => {
                            self.stats.key_failures += 1;
                            tracing::error!(channel = %self.channel, cp, error = %e, policy = ?self.cfg.on_failure, "no control word for the next crypto-period");
                        }
                    }
                }
                RotationEvent::Flip { cp, parity } => {
                    self.flip(now, cp, parity, false);
                    if self.held.is_some() {
                        break;
                    }
                }
            }
        }
        self.update_ecms(mux, now);
    }

    /// Records when crypto-period `cp` starts (again, after a deferred flip), and estimates the
    /// next one's.
    fn set_start(&mut self, cp: u16, at: Ticks27M) {
        self.ecms_dirty = true;
        let period = self.rotation.period();
        for (c, t) in [(cp, at), (cp.wrapping_add(1), at + period)] {
            match self.starts.iter_mut().find(|(x, _)| *x == c) {
                Some(e) => e.1 = t,
                None => self.starts.push((c, t)),
            }
        }
        // Periods long gone are forgotten.
        self.starts
            .retain(|(c, _)| (c.wrapping_sub(cp) as i16) >= -8);
    }

    fn start_of(&self, cp: u16) -> Option<Ticks27M> {
        self.starts.iter().find(|(c, _)| *c == cp).map(|(_, t)| *t)
    }

    /// The output time window of an ECM of `cas`: (from, until), `until` open while the next
    /// period's start is unknown.
    fn window(&self, cas: &Cas, e: &Ecm) -> Option<(Ticks27M, Option<Ticks27M>)> {
        let p = cas.params.as_ref();
        let ms = |v: i16| i64::from(v) * 27_000;
        let shift = |t: Ticks27M, d: i64| t.saturating_add_signed(d);
        let start = self.start_of(e.cp)?;
        // The first period of a scrambled spell: the one on air at the start, or the one the
        // next flip scrambles while the service is clear.
        let first = match self.spell {
            Spell::Started(c) => c == e.cp,
            Spell::Clear => e.cp == self.rotation.on_air().0.wrapping_add(1),
            Spell::Running => false,
        };
        let delay_start = match (first, p) {
            (true, Some(p)) => p.transition_delay_start_ms.unwrap_or(p.delay_start_ms),
            (false, Some(p)) => p.delay_start_ms,
            (_, None) => 0,
        };
        let from = shift(start, ms(delay_start));
        let until = match e.cleared_at {
            Some(t) => Some(shift(
                t,
                ms(p.and_then(|p| p.transition_delay_stop_ms).unwrap_or(0)).max(0),
            )),
            None => self
                .start_of(e.cp.wrapping_add(1))
                .map(|next| shift(next, ms(p.map_or(0, |p| p.delay_stop_ms)))),
        };
        Some((from, until))
    }

    /// Puts in each CAS's carousel the ECMs whose window holds `now` (the latest one that
    /// started when none does, while the service is scrambled), and forgets old ones.
    fn update_ecms(&mut self, mux: &mut Mux, now: Ticks27M) {
        if !self.simulcrypt || (!self.ecms_dirty && now < self.ecm_check_at) {
            return;
        }
        self.ecms_dirty = false;
        let period = self.rotation.period();
        // The next window edge (or end of keeping) after now: the next look.
        let mut next = now + period;
        for k in 0..self.cas.len() {
            let cas = &self.cas[k];
            let windows: Vec<Option<(Ticks27M, Option<Ticks27M>)>> =
                cas.ecms.iter().map(|e| self.window(cas, e)).collect();
            let mut set: Vec<usize> = (0..cas.ecms.len())
                .filter(|&i| {
                    windows[i]
                        .is_some_and(|(from, until)| from <= now && until.is_none_or(|u| now < u))
                })
                .collect();
            // None on air while the service is scrambled: the latest ECM that started stays
            // when its successor is missing (an ECMG down), not in a gap the delays make.
            let started = |i: usize| windows[i].is_none_or(|(from, _)| from <= now);
            if set.is_empty() && self.mode == Mode::Scrambled {
                if let Some(last) = (0..cas.ecms.len()).rev().find(|&i| started(i)) {
                    if last + 1 == cas.ecms.len() {
                        set.push(last);
                    }
                }
            }
            for (from, until) in windows.iter().flatten() {
                for t in [Some(*from), *until, until.map(|u| u + period)]
                    .into_iter()
                    .flatten()
                {
                    if t > now {
                        next = next.min(t);
                    }
                }
            }
            let cps: Vec<u16> = set.iter().map(|&i| cas.ecms[i].cp).collect();
            // ECMs whose window ended a period ago are not needed again.
            let keep: Vec<bool> = (0..cas.ecms.len())
                .map(|i| {
                    set.contains(&i)
                        || windows[i]
                            .is_some_and(|(_, until)| until.is_none_or(|u| u + period > now))
                })
                .collect();
            let cas = &mut self.cas[k];
            if cps != cas.on_air {
                let groups: Vec<&[u8]> = set.iter().map(|&i| &cas.ecms[i].packets[..]).collect();
                mux.set_table_packets(Pid::from_bits(cas.pid), ECM_KEY, &groups, cas.interval);
                for &i in &set {
                    cas.ecms[i].installed.get_or_insert(now);
                }
                cas.on_air = cps;
            }
            let mut i = 0;
            cas.ecms.retain(|_| {
                i += 1;
                keep[i - 1]
            });
            // Never more than a few (an ECMG answering periods we no longer need).
            while cas.ecms.len() > 6 {
                cas.ecms.remove(0);
            }
        }
        self.ecm_check_at = next;
    }

    /// Whether CAS `k` has the word of `cp` on air by `now`.
    fn announce(&self, k: usize, cp: u16, now: Ticks27M) -> Announce {
        let cas = &self.cas[k];
        let Some(p) = cas.params.as_ref() else {
            return Announce::No;
        };
        // ECM(n) carries the words of periods n + lead_CW + 1 - CW_per_msg ..= n + lead_CW.
        let lead = i32::from(p.lead_cw);
        let first = lead + 1 - i32::from(p.cw_per_msg);
        let mut best: Option<Ticks27M> = None;
        let start = self.start_of(cp);
        for e in &cas.ecms {
            let d = i32::from(cp.wrapping_sub(e.cp) as i16);
            if d < first || d > lead {
                continue;
            }
            let Some((from, until)) = self.window(cas, e) else {
                continue;
            };
            // An ECM kept from long ago (a CAS down for hours) says nothing about CP numbers
            // that came round again.
            if now.saturating_sub(e.received) > 4 * self.rotation.period() {
                continue;
            }
            // An ECM not meant to be on air before the period starts announces it only if it
            // carries no word for the period after (whose parity is the one in use): waiting
            // for it would otherwise change the word in use.
            let next = i32::from(cp.wrapping_add(1).wrapping_sub(e.cp) as i16);
            let next_in = (first..=lead).contains(&next);
            if start.is_none_or(|s| from >= s) && next_in {
                continue;
            }
            // An ECM whose window ended told its words all the same, if it was on air.
            // Installed, it is surely on air two repetitions later: the carousel may finish
            // the cycle it is in before the new content's, whose groups are spread over one
            // repetition (one later was not enough: a receiver saw a flip just before the ECM
            // announcing its word, when the ECMG came back from a stall).
            let at = match e.installed {
                Some(t) => from.max(t) + 2 * cas.interval,
                None if until.is_some_and(|u| u <= now) => continue,
                None => from.max(now) + 2 * cas.interval,
            };
            best = Some(best.map_or(at, |b| b.min(at)));
        }
        match best {
            Some(t) if t <= now => Announce::Yes,
            Some(t) => Announce::At(t),
            None => Announce::No,
        }
    }

    fn refresh_stats(&mut self) {
        let mut any = false;
        for c in &mut self.cas {
            any |= c.stats.alarm;
        }
        // A failing CAS raises the program's alarm at once; the next good flip clears it.
        if any {
            self.stats.alarm = true;
        }
    }

    /// Its counters, each CAS's included.
    pub(crate) fn stats(&self) -> ScramblingStats {
        ScramblingStats {
            cas: self.cas.iter().map(|c| c.stats.clone()).collect(),
            ..self.stats.clone()
        }
    }

    /// What the SimulCrypt link asks the ECMG for: the ECMs of these crypto-periods.
    pub(crate) fn take_provisions(&mut self) -> Vec<crate::cas::Provision> {
        std::mem::take(&mut self.provisions)
    }

    /// ECMs and link state from the SimulCrypt link of CAS `k`.
    pub(crate) fn handle_cas(&mut self, mux: &mut Mux, k: usize, ev: crate::cas::CasEvent) {
        let now = mux.now();
        let Some(cas) = self.cas.get_mut(k) else {
            return;
        };
        match ev {
            crate::cas::CasEvent::Up { status } => {
                if status.ecm_rep_period_ms > 0 {
                    cas.interval = u64::from(status.ecm_rep_period_ms) * 27_000;
                }
                // Words are provisioned from three periods before an ECM's to three after.
                let back = i32::from(status.cw_per_msg) - 1 - i32::from(status.lead_cw);
                if status.lead_cw > 3 || back > 3 {
                    tracing::error!(channel = %self.channel, cas = %cas.stats.super_cas_id, lead_cw = status.lead_cw, cw_per_msg = status.cw_per_msg, "ALARM: the ECMG asks for control words more than three crypto-periods away: not supported, its CW_provisions will be refused");
                }
                cas.params = Some(status);
                cas.stats.up = true;
                self.ecms_dirty = true;
            }
            crate::cas::CasEvent::Ecm {
                cp,
                datagram,
                format,
            } => {
                let mut cc = 0;
                let Ok(packets) = drm::simulcrypt::ecm_packets(
                    &datagram,
                    format,
                    Pid::from_bits(cas.pid),
                    &mut cc,
                ) else {
                    return;
                };
                let packets: Vec<u8> = packets.concat();
                cas.stats.ecms += 1;
                if cas.stats.alarm {
                    tracing::warn!(channel = %self.channel, cas = %cas.stats.super_cas_id, cp, "CAS recovered: its ECMs are back");
                }
                cas.stats.alarm = false;
                cas.missing = false;
                // A repeated answer for a period already held (a deferred flip or a
                // reconnection asked again) changes nothing: a period's words never change,
                // and the ECM held may be on air already.
                if cas.ecms.iter().any(|e| e.cp == cp) {
                    self.refresh_stats();
                    return;
                }
                cas.ecms.push(Ecm {
                    cp,
                    packets: packets.into(),
                    received: now,
                    installed: None,
                    cleared_at: None,
                });
                // In crypto-period order (a repeated request may bring an older one last).
                let base = self.rotation.on_air().0;
                cas.ecms.sort_by_key(|e| e.cp.wrapping_sub(base) as i16);
                let cas = &self.cas[k];
                if let Some(e) = cas.ecms.iter().find(|e| e.cp == cp) {
                    if let Some((from, _)) = self.window(cas, e) {
                        if from < now.saturating_sub(cas.interval) {
                            self.cas[k].stats.late_ecms += 1;
                        }
                    }
                }
                self.ecms_dirty = true;
                self.update_ecms(mux, now);
            }
            crate::cas::CasEvent::Down { reason } => {
                if std::mem::take(&mut cas.stats.up) || !cas.stats.alarm {
                    self.stats.key_failures += 1;
                }
                cas.stats.alarm = true;
                tracing::debug!(channel = %self.channel, cas = %cas.stats.super_cas_id, %reason, "ECMG link down");
            }
        }
        self.refresh_stats();
    }

    /// Crypto-period `cp` is due: flips to its word when it is known and, with SimulCrypt,
    /// announced; waits a little for ECMs about to be on air (`retried`: it waited already);
    /// else the period on air goes on under the failure policy.
    fn flip(&mut self, now: Ticks27M, cp: u16, parity: Parity, retried: bool) {
        let word = self.words[slot(parity)]
            .as_ref()
            .is_some_and(|(c, _)| *c == cp);
        let mut announced = !self.simulcrypt;
        if word && self.simulcrypt {
            let verdicts: Vec<Announce> = (0..self.cas.len())
                .map(|k| self.announce(k, cp, now))
                .collect();
            // Wait, at most half a period, for ECMs that are about to be on air.
            let limit = now + self.rotation.period() / 2;
            let wait = verdicts
                .iter()
                .enumerate()
                .filter_map(|(k, v)| match v {
                    Announce::At(t) if *t <= limit && !self.cas[k].stats.alarm => Some(*t),
                    _ => None,
                })
                .max();
            if let (Some(until), false) = (wait, retried) {
                self.held = Some((cp, parity, until));
                return;
            }
            announced = verdicts.iter().any(|v| matches!(v, Announce::Yes));
            if announced {
                for (k, v) in verdicts.iter().enumerate() {
                    if matches!(v, Announce::Yes) {
                        continue;
                    }
                    let c = &mut self.cas[k];
                    c.stats.missed_periods += 1;
                    c.stats.alarm = true;
                    // Once per outage, whether or not its link already went down.
                    if !std::mem::replace(&mut c.missing, true) {
                        tracing::error!(channel = %self.channel, cas = %c.stats.super_cas_id, cp, "ALARM: no ECM of this CAS for the crypto-period: its viewers lose the picture; the other CAS go on");
                    }
                }
            }
        }
        if word && announced {
            if self.stats.alarm && !self.cas.iter().any(|c| c.stats.alarm) {
                tracing::warn!(channel = %self.channel, cp, "scrambling recovered");
            }
            self.parity = parity;
            // Its ECMs' windows follow when it really started (a flip may wait a little).
            self.set_start(cp, now);
            self.spell = match self.spell {
                _ if self.mode != Mode::Scrambled => Spell::Started(cp),
                Spell::Started(c) if cp.wrapping_sub(c) >= 2 => Spell::Running,
                other => other,
            };
            self.mode = Mode::Scrambled;
            self.stats.alarm = self.cas.iter().any(|c| c.stats.alarm);
            self.stats.flips += 1;
            return;
        }
        self.stats.alarm = true;
        // The period on air goes on; this one is tried again a period later (and its ECMs'
        // windows move with it).
        self.rotation.defer();
        let later = self.start_of(cp).unwrap_or(now) + self.rotation.period();
        self.set_start(cp, later);
        match self.cfg.on_failure {
            OnFailure::KeepLast if self.words[slot(self.parity)].is_some() => {
                tracing::warn!(channel = %self.channel, cp, "ALARM: crypto-period without its word: the last word stays in use");
            }
            OnFailure::KeepLast | OnFailure::Clear => {
                self.go_clear(now);
                self.mode = Mode::Clear;
                tracing::error!(channel = %self.channel, cp, "ALARM: no control word: the service goes out clear");
            }
            OnFailure::Stop => {
                self.go_clear(now);
                self.mode = Mode::Stopped;
                tracing::error!(channel = %self.channel, cp, "ALARM: no control word: the service's streams are stopped");
            }
        }
    }

    /// The service stops being scrambled: the ECMs on air end after transition_delay_stop,
    /// and the next scrambled period's ECM is a first one (transition_delay_start).
    fn go_clear(&mut self, now: Ticks27M) {
        if self.mode != Mode::Scrambled {
            return;
        }
        self.spell = Spell::Clear;
        self.ecms_dirty = true;
        for c in &mut self.cas {
            for e in c.ecms.iter_mut().filter(|e| c.on_air.contains(&e.cp)) {
                e.cleared_at.get_or_insert(now);
            }
        }
    }

    fn send_ecm(&mut self, mux: &mut Mux, cp: u16) {
        if self.simulcrypt {
            // The ECMs of the period on air (it announces this one: lost to an outage, it is
            // asked for again when the flip was deferred) and of this one unless every CAS has
            // them (they are asked for a period ahead), and the next
            // period's, a whole period ahead of its window: each with the words of the
            // periods around (CW_per_msg and lead_CW pick theirs).
            // Words from `back` periods before an ECM's to `ahead` after, as the ECMGs ask
            // (ECM n carries n + lead_CW + 1 - CW_per_msg ..= n + lead_CW), at least n - 1 ..=
            // n + 1, at most three either way.
            let (mut back, mut ahead) = (1i32, 1i32);
            for p in self.cas.iter().filter_map(|k| k.params.as_ref()) {
                ahead = ahead.max(i32::from(p.lead_cw)).min(3);
                back = back
                    .max(i32::from(p.cw_per_msg) - 1 - i32::from(p.lead_cw))
                    .min(3);
            }
            let on_air = self.rotation.on_air().0;
            for c in [cp.wrapping_sub(1), cp, cp.wrapping_add(1)] {
                // Only the CAS that lack it are asked (again).
                let cas: Vec<usize> = (0..self.cas.len())
                    .filter(|&k| !self.cas[k].ecms.iter().any(|e| e.cp == c))
                    .collect();
                if cas.is_empty() {
                    continue;
                }
                let mut words = Vec::new();
                for d in -back..=ahead {
                    let w = c.wrapping_add_signed(d as i16);
                    // A past period's word is never drawn anew (it would differ from the one
                    // used); a forgotten one is left out.
                    let past = (w.wrapping_sub(on_air) as i16) < -2;
                    let known = self
                        .words
                        .iter()
                        .flatten()
                        .chain(&self.generated)
                        .any(|(x, _)| *x == w);
                    if past && !known {
                        continue;
                    }
                    if let Ok(word) = self.word_for(w) {
                        words.push((w, *word.as_bytes()));
                    }
                }
                self.provisions
                    .push(crate::cas::Provision { cp: c, words, cas });
            }
            return;
        }
        let Some((crate::config::EcmKey(key), wrap)) = self.cfg.ecm_key.clone() else {
            return;
        };
        let word = |p: Parity| {
            self.words[slot(p)]
                .as_ref()
                .map_or([0u8; 16], |(_, w)| *w.as_bytes())
        };
        let ecm = drm::ecm::build_ecm(&key, wrap, cp, &word(Parity::Even), &word(Parity::Odd));
        mux.set_table(
            Pid::from_bits(self.cfg.ecm_pid),
            ECM_KEY,
            &[&ecm],
            self.ecm_interval,
        );
    }

    /// Scrambles (or, by policy, leaves clear or nulls) this program's packets in `buf`
    /// (whole packets just emitted).
    pub(crate) fn apply(&mut self, buf: &mut [u8]) {
        let es = |pid: u16| self.es_pids.iter().any(|r| r.contains(&pid));
        match self.mode {
            Mode::Scrambled => {
                if self.words[slot(self.parity)].is_none() {
                    return;
                }
                if let Ok(n) = self.scrambler.scramble(buf, self.parity, es) {
                    self.stats.packets_scrambled += n as u64;
                }
            }
            Mode::Clear => {}
            Mode::Stopped => {
                for p in buf.chunks_exact_mut(PACKET_SIZE) {
                    let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
                    if es(pid) {
                        null_packet(p);
                    }
                }
            }
        }
    }
}

/// Turns a packet into a null packet (PID 0x1FFF, payload only, stuffing).
fn null_packet(p: &mut [u8]) {
    p[1] = 0x1F;
    p[2] = 0xFF;
    p[3] = 0x10;
    p[4..].fill(0xFF);
}

/// Sends the CAT (PID 1) with a CA_descriptor for each (CA_system_id, EMM PID) of
/// `entries`, twice a second; none: no CAT.
pub(crate) fn set_cat(mux: &mut Mux, entries: &[(u16, u16)]) {
    let descriptors: Vec<u8> = entries
        .iter()
        .flat_map(|&(ca, pid)| ca_descriptor(ca, pid))
        .collect();
    let cat = cat_section(&descriptors);
    let sections: Vec<&[u8]> = if entries.is_empty() {
        Vec::new()
    } else {
        vec![&cat[..]]
    };
    mux.set_table(
        Pid::from_bits(0x0001),
        CAT_KEY,
        &sections,
        playout::time::SYSTEM_CLOCK_HZ / 2,
    );
}

/// A CAT (table 0x01) carrying `descriptors`.
fn cat_section(descriptors: &[u8]) -> bytes::BytesMut {
    playout::psi::build_long_section(0x01, 0xFFFF, 0, descriptors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drm::simulcrypt::SectionTspktFlag;

    /// A new word at every call, as the OS random generator gives (never the same twice).
    struct Fresh(u64);

    impl KeySource for Fresh {
        fn control_word(&mut self, _cp: u16) -> Result<ControlWord, drm::keys::KeyError> {
            self.0 += 1;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&self.0.to_be_bytes());
            Ok(ControlWord::new(b))
        }
    }

    fn channel(scrambling: &str) -> ChannelConfig {
        crate::config::parse(
            &format!(
                "[[channel]]\nid = \"x\"\nservice_id = 1\nname = \"X\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n{scrambling}"
            ),
            std::path::Path::new("/"),
            "t.toml",
        )
        .unwrap()
        .channels
        .remove(0)
    }

    /// The soak's fault (docs/soak.md): the ECMG stalls from 5 s to 17 s, so the flip to the
    /// first period whose word no ECM on air carries is deferred period after period until it
    /// answers again.
    /// Every CW_provision (the first, each one a deferred flip asks for again, the one the
    /// link repeats on reconnection) must carry the word the scrambler uses for that period:
    /// a period's word never changes once it exists.
    #[test]
    fn deferred_flips_keep_each_periods_word() {
        let ch = channel(
            "[channel.scrambling]\ncrypto_period = \"2s\"\nkeys = \"simulcrypt\"\n\
             [channel.scrambling.simulcrypt]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10000\n",
        );
        let sc = ch.scrambling.clone().unwrap();
        let mut p = ProgramScrambling::new(&ch, &sc, Box::new(Fresh(0)), 0);
        let mut mux = Mux::new(playout::mux::MuxConfig::new(2_000_000), Vec::new());
        const MS: Ticks27M = 27_000;
        // The ECMG answers at once, but not from 5 s to 17 s (periods 2 s, ECMs 667 ms ahead).
        let stalled = 5_000 * MS..17_000 * MS;
        let mut words: std::collections::HashMap<u16, [u8; 16]> = Default::default();
        let mut on_air = Vec::new();
        p.start(&mut mux, 0);
        p.handle_cas(
            &mut mux,
            0,
            crate::cas::CasEvent::Up {
                status: status(1, 2, 0, 0),
            },
        );
        for t in (0..30_000).step_by(10).map(|ms| ms * MS) {
            // The mux's clock (ECMs are stamped with it) follows.
            let mut out = bytes::BytesMut::new();
            while mux.now() < t {
                mux.emit(&mut out, 1, playout::mux::Underflow::Stuff);
            }
            p.rotate(&mut mux, t);
            for prov in p.take_provisions() {
                for (cp, w) in &prov.words {
                    let first = words.entry(*cp).or_insert(*w);
                    assert_eq!(first, w, "at {t}: the word of period {cp} changed");
                }
                if !stalled.contains(&t) {
                    let ecm = drm::ecm::build_ecm(
                        &[0; 16],
                        drm::ecm::Wrap::Aes128,
                        prov.cp,
                        &[0; 16],
                        &[0; 16],
                    );
                    p.handle_cas(
                        &mut mux,
                        0,
                        crate::cas::CasEvent::Ecm {
                            cp: prov.cp,
                            datagram: Bytes::copy_from_slice(&ecm),
                            format: SectionTspktFlag::Sections,
                        },
                    );
                }
            }
            // The word the scrambler uses is the one provisioned for its period.
            let (cp, w) = p.words[slot(p.parity)].clone().unwrap();
            assert_eq!(words.get(&cp), Some(w.as_bytes()), "at {t}: period {cp}");
            if on_air.last() != Some(&cp) {
                on_air.push(cp);
            }
        }
        // ECMs are asked for a period ahead: ECM 3 (asked at 3.3 s) carries period 4's word,
        // which flips at 8 s; period 5 waited from 10 s to 18 s, then one every 2 s.
        assert_eq!(on_air, (0..=10).collect::<Vec<u16>>());
        assert!(
            p.stats.key_failures == 0 && p.stats.flips == 10,
            "{:?}",
            p.stats
        );
        assert!(p.generated.len() <= 5, "{}", p.generated.len());
    }

    /// A channel_status with these lead_CW, CW_per_msg, delay_start and delay_stop.
    fn status(lead_cw: u8, cw_per_msg: u8, delay_start: i16, delay_stop: i16) -> ChannelStatus {
        ChannelStatus {
            ecm_channel_id: 1,
            section_tspkt_flag: SectionTspktFlag::Sections,
            ac_delay_start_ms: None,
            ac_delay_stop_ms: None,
            delay_start_ms: delay_start,
            delay_stop_ms: delay_stop,
            transition_delay_start_ms: None,
            transition_delay_stop_ms: None,
            ecm_rep_period_ms: 100,
            max_streams: 1,
            min_cp_duration: drm::simulcrypt::Tenths(10),
            lead_cw,
            cw_per_msg,
            max_comp_time_ms: 100,
        }
    }

    /// Runs `p` for `secs` in 10 ms steps, each CAS's ECMG answering every provision at once
    /// unless `answers(cas, t)` says no; returns, per CAS, when each ECM went in and out of the
    /// carousel: (cp, in ms, out ms).
    fn drive(
        p: &mut ProgramScrambling,
        mux: &mut Mux,
        secs: u64,
        statuses: &[ChannelStatus],
        answers: impl Fn(usize, Ticks27M) -> bool,
    ) -> Vec<Vec<(u16, u64, Option<u64>)>> {
        const MS: Ticks27M = 27_000;
        let mut spans: Vec<Vec<(u16, u64, Option<u64>)>> = vec![Vec::new(); statuses.len()];
        p.start(mux, 0);
        for (k, st) in statuses.iter().enumerate() {
            p.handle_cas(mux, k, crate::cas::CasEvent::Up { status: st.clone() });
        }
        let mut t = 0;
        while t < secs * 1000 * MS {
            // The mux's clock: emit up to `t`.
            let mut out = bytes::BytesMut::new();
            while mux.now() < t {
                mux.emit(&mut out, 1, playout::mux::Underflow::Stuff);
            }
            p.rotate(mux, t);
            for prov in p.take_provisions() {
                for k in 0..statuses.len() {
                    if answers(k, t) {
                        let ecm = drm::ecm::build_ecm(
                            &[0; 16],
                            drm::ecm::Wrap::Aes128,
                            prov.cp,
                            &[0; 16],
                            &[0; 16],
                        );
                        p.handle_cas(
                            mux,
                            k,
                            crate::cas::CasEvent::Ecm {
                                cp: prov.cp,
                                datagram: Bytes::copy_from_slice(&ecm),
                                format: SectionTspktFlag::Sections,
                            },
                        );
                    }
                }
            }
            for (k, c) in p.cas.iter().enumerate() {
                for cp in &c.on_air {
                    if !spans[k].iter().any(|(x, _, out)| x == cp && out.is_none()) {
                        spans[k].push((*cp, t / MS, None));
                    }
                }
                for span in spans[k].iter_mut() {
                    if span.2.is_none() && !c.on_air.contains(&span.0) {
                        span.2 = Some(t / MS);
                    }
                }
            }
            t += 10 * MS;
        }
        spans
    }

    fn simulcrypt_channel(cas: usize, period: &str, on_failure: &str) -> ChannelConfig {
        let list: String = (0..cas)
            .map(|k| {
                format!(
                    "[[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:{}\"\nsuper_cas_id = 0x{:04X}0000\n",
                    4100 + k,
                    0x4AD1 + k
                )
            })
            .collect();
        channel(&format!(
            "[channel.scrambling]\ncrypto_period = \"{period}\"\nkeys = \"simulcrypt\"\non_failure = \"{on_failure}\"\n{list}"
        ))
    }

    /// Each ECM is on air from delay_start after its period starts (transition_delay_start
    /// for the station's first period) to delay_stop after it ends, two ECMs in turn where
    /// windows overlap.
    #[test]
    fn ecms_keep_to_the_delays_of_channel_status() {
        let ch = simulcrypt_channel(2, "2s", "keep");
        let sc = ch.scrambling.clone().unwrap();
        let mut p = ProgramScrambling::new(&ch, &sc, Box::new(Fresh(0)), 0);
        let mut mux = Mux::new(playout::mux::MuxConfig::new(2_000_000), Vec::new());
        let mut early = status(1, 2, -500, 300);
        early.transition_delay_start_ms = Some(-200);
        let late = status(1, 2, 250, -100);
        let spans = drive(&mut p, &mut mux, 12, &[early, late], |_, _| true);
        // ECM n: period n runs from 2n s to 2n + 2 s; the carousel steps are 10 ms.
        for (cp, from, to) in &spans[0] {
            let start = u64::from(*cp) * 2000;
            let want_from = if *cp == 0 { 0 } else { start - 500 };
            assert_eq!(*from, want_from, "CAS 0, ECM {cp}: {:?}", spans[0]);
            if let Some(to) = to {
                assert_eq!(*to, start + 2300, "CAS 0, ECM {cp}: {:?}", spans[0]);
            }
        }
        for (cp, from, to) in &spans[1] {
            let start = u64::from(*cp) * 2000;
            assert_eq!(*from, start + 250, "CAS 1, ECM {cp}: {:?}", spans[1]);
            if let Some(to) = to {
                assert_eq!(*to, start + 1900, "CAS 1, ECM {cp}: {:?}", spans[1]);
            }
        }
        assert!(spans[0].len() >= 6 && spans[1].len() >= 6, "{spans:?}");
        assert_eq!(p.stats.flips, 5, "{:?}", p.stats);
        assert!(!p.stats.alarm, "{:?}", p.stats);
    }

    /// Two CAS: one ECMG goes silent for good at 5 s; its CAS is in alarm and misses periods,
    /// the other's ECMs announce every flip, which goes on every period (its viewers see no
    /// change); the program's own failure policy never applies.
    #[test]
    fn one_failing_cas_leaves_the_others_on_air() {
        const MS: Ticks27M = 27_000;
        let ch = simulcrypt_channel(2, "2s", "clear");
        let sc = ch.scrambling.clone().unwrap();
        let mut p = ProgramScrambling::new(&ch, &sc, Box::new(Fresh(0)), 0);
        let mut mux = Mux::new(playout::mux::MuxConfig::new(2_000_000), Vec::new());
        let st = status(1, 2, -300, 0);
        let spans = drive(&mut p, &mut mux, 20, &[st.clone(), st], |k, t| {
            k == 1 || t < 5000 * MS
        });
        assert_eq!(p.stats.flips, 9, "{:?}", p.stats);
        assert_eq!(p.mode, Mode::Scrambled);
        let stats = p.stats();
        let [a, b] = &stats.cas[..] else {
            panic!("{:?}", p.stats)
        };
        assert!(a.alarm && a.missed_periods >= 3, "{a:?}");
        assert!(!b.alarm && b.missed_periods == 0, "{b:?}");
        assert!(p.stats.alarm, "the program shows its CAS's alarm");
        // CAS 1 had every period's ECM on air before its flip; CAS 0 keeps its last ECM.
        for cp in 1..=9u16 {
            assert!(
                spans[1]
                    .iter()
                    .any(|(c, from, _)| *c == cp && *from < u64::from(cp) * 2000),
                "{:?}",
                spans[1]
            );
        }
        assert!(
            spans[0].last().is_some_and(|(_, _, to)| to.is_none()),
            "{:?}",
            spans[0]
        );
    }

    /// The same with ECMs on air from their period's start to its end (delays 0, as many
    /// ECMGs): the working CAS is not asked again for what it has, its ECMs on air stay on
    /// air, and every flip goes on.
    #[test]
    fn one_failing_cas_with_zero_delays_leaves_the_other_on_air() {
        const MS: Ticks27M = 27_000;
        let ch = simulcrypt_channel(2, "2s", "clear");
        let sc = ch.scrambling.clone().unwrap();
        let mut p = ProgramScrambling::new(&ch, &sc, Box::new(Fresh(0)), 0);
        let mut mux = Mux::new(playout::mux::MuxConfig::new(2_000_000), Vec::new());
        let st = status(1, 2, 0, 0);
        let spans = drive(&mut p, &mut mux, 30, &[st.clone(), st], |k, t| {
            k == 1 || t < 5000 * MS
        });
        assert_eq!(p.stats.flips, 14, "{:?}", p.stats());
        assert_eq!(p.mode, Mode::Scrambled);
        // CAS 1's ECM n on air through period n, once each.
        for cp in 1..=14u16 {
            let n = spans[1].iter().filter(|(c, _, _)| *c == cp).count();
            assert_eq!(n, 1, "{:?}", spans[1]);
        }
        assert!(p.stats().cas[0].missed_periods >= 10, "{:?}", p.stats());
    }

    /// Unsupported or odd ECMG settings still work: lead_CW 0 with CW_per_msg 1 and a positive
    /// delay_start (an ECM carries its own period's word only and goes on air after the
    /// period starts): the flip waits for it, no word in use changes.
    #[test]
    fn ecms_without_a_next_word_are_waited_for() {
        let ch = simulcrypt_channel(1, "2s", "clear");
        let sc = ch.scrambling.clone().unwrap();
        let mut p = ProgramScrambling::new(&ch, &sc, Box::new(Fresh(0)), 0);
        let mut mux = Mux::new(playout::mux::MuxConfig::new(2_000_000), Vec::new());
        let _ = drive(&mut p, &mut mux, 12, &[status(0, 1, 100, 0)], |_, _| true);
        assert_eq!(p.stats.flips, 5, "{:?}", p.stats());
        assert!(!p.stats.alarm, "{:?}", p.stats());
    }

    #[test]
    fn cat_and_pmt_descriptors() {
        let cat = cat_section(&ca_descriptor(0x4AD1, 0x1F00));
        assert_eq!(cat[0], 0x01, "table_id CAT");
        assert_eq!(
            usize::from(cat[1] & 0x0F) << 8 | usize::from(cat[2]),
            cat.len() - 3
        );
        assert_eq!(&cat[8..14], &[0x09, 4, 0x4A, 0xD1, 0xFF, 0x00]);
        assert_eq!(
            playout::psi::crc32_mpeg2(&cat),
            0,
            "CRC over the whole section"
        );

        let text = "[channel.scrambling]\necm_pid = 0x1FF1\nca_system_id = 0x4AD1\n";
        let sc = crate::config::parse(
            &format!(
                "[[channel]]\nid = \"x\"\nservice_id = 1\nname = \"X\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n{text}"
            ),
            std::path::Path::new("/"),
            "t.toml",
        )
        .unwrap()
        .channels[0]
            .scrambling
            .clone()
            .unwrap();
        let (program, es) = pmt_descriptors(&sc);
        assert_eq!(
            &program[..],
            &[0x65, 1, 0x10, 0x09, 4, 0x4A, 0xD1, 0xFF, 0xF1]
        );
        assert!(es.is_empty());
        let per_es = ScramblingConfig {
            ca_descriptor_per_es: true,
            ..sc
        };
        let (program, es) = pmt_descriptors(&per_es);
        assert_eq!(&program[..], &[0x65, 1, 0x10]);
        assert_eq!(&es[..], &[0x09, 4, 0x4A, 0xD1, 0xFF, 0xF1]);
    }
}
