//! Scrambling in a station: each scrambled program's elementary-stream packets are
//! scrambled in place as they leave the muxer, with even/odd control words rotated every
//! crypto-period (`drm::keys::Rotation` on the output clock), the ECM carrying the next word
//! on air a lead before the flip, and the failure policy applied when the key source fails.

use std::ops::RangeInclusive;

use drm::cipher::{ControlWord, Parity, Scrambler};
use drm::keys::{KeySource, Rotation, RotationEvent};
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
    /// Whether the program is in its failure policy now.
    pub(crate) alarm: bool,
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
    /// Whether ECMs come from a SimulCrypt ECMG (through the driver's link: what to ask
    /// it waits in `provisions`), and the latest crypto-period whose ECM it brought.
    simulcrypt: bool,
    provisions: Vec<crate::cas::Provision>,
    ecm_cp: Option<u16>,
    /// Output time by which that ECM is surely on air: the mux sends a replaced table from
    /// its next cycle, up to one repetition interval after it arrived.
    ecm_on_air: Ticks27M,
    /// A flip whose ECM is not on air yet: (CP_number, parity), done once it is.
    held: Option<(u16, Parity)>,
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
    let ca = ca_descriptor(sc.ca_system_id, sc.ecm_pid);
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
        ProgramScrambling {
            generated: Vec::new(),
            simulcrypt: matches!(cfg.keys, KeySourceConfig::Simulcrypt(_)),
            provisions: Vec::new(),
            ecm_cp: None,
            ecm_on_air: 0,
            held: None,
            ecm_interval: cfg.ecm_interval.as_nanos() as u64 * 27 / 1000,
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

    /// Starts the CAT, if configured.
    pub(crate) fn start(&mut self, mux: &mut Mux, now: Ticks27M) {
        if let Some(emm) = self.cfg.cat_emm_pid {
            let cat = cat_section(self.cfg.ca_system_id, emm);
            mux.set_table(
                Pid::from_bits(0x0001),
                CAT_KEY,
                &[&cat],
                playout::time::SYSTEM_CLOCK_HZ / 2,
            );
        }
        self.rotate(mux, now);
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
        if let Some((cp, parity)) = self.held.take() {
            self.flip(now, cp, parity);
        }
        while let Some(ev) = self.rotation.poll(now) {
            match ev {
                RotationEvent::NextWord { cp, parity, .. } => {
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
                RotationEvent::Flip { cp, parity } => self.flip(now, cp, parity),
            }
        }
    }

    /// What the SimulCrypt link asks the ECMG for: the ECMs of these crypto-periods.
    pub(crate) fn take_provisions(&mut self) -> Vec<crate::cas::Provision> {
        std::mem::take(&mut self.provisions)
    }

    /// ECMs and link state from the SimulCrypt link.
    pub(crate) fn handle_cas(&mut self, mux: &mut Mux, ev: crate::cas::CasEvent) {
        {
            match ev {
                crate::cas::CasEvent::Up { ecm_rep_period_ms } => {
                    if ecm_rep_period_ms > 0 {
                        self.ecm_interval = u64::from(ecm_rep_period_ms) * 27_000;
                    }
                }
                crate::cas::CasEvent::Ecm { cp, sections } => {
                    let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
                    mux.set_table(
                        Pid::from_bits(self.cfg.ecm_pid),
                        ECM_KEY,
                        &refs,
                        self.ecm_interval,
                    );
                    self.ecm_cp = Some(cp);
                    self.ecm_on_air = mux.now() + self.ecm_interval;
                }
                crate::cas::CasEvent::Down { reason } => {
                    self.stats.key_failures += 1;
                    tracing::debug!(channel = %self.channel, %reason, "ECMG link down");
                }
            }
        }
    }

    fn flip(&mut self, now: Ticks27M, cp: u16, parity: Parity) {
        let word = self.words[slot(parity)]
            .as_ref()
            .is_some_and(|(c, _)| *c == cp);
        // With SimulCrypt, its word must also have been announced: the ECM of the period
        // before (current and next words) or its own.
        let announced = !self.simulcrypt
            || self
                .ecm_cp
                .is_some_and(|e| e == cp || e == cp.wrapping_sub(1));
        if word && announced && self.simulcrypt && now < self.ecm_on_air {
            // Its ECM arrived but is not on air yet (it goes out at the table's next cycle):
            // the flip waits for it, at most one ECM repetition, instead of going out first.
            self.held = Some((cp, parity));
            return;
        }
        if word && announced {
            if self.stats.alarm {
                tracing::warn!(channel = %self.channel, cp, "scrambling recovered");
            }
            self.parity = parity;
            self.mode = Mode::Scrambled;
            self.stats.alarm = false;
            self.stats.flips += 1;
            return;
        }
        self.stats.alarm = true;
        // The period on air goes on; this one is tried again a period later.
        self.rotation.defer();
        match self.cfg.on_failure {
            OnFailure::KeepLast if self.words[slot(self.parity)].is_some() => {
                tracing::warn!(channel = %self.channel, cp, "ALARM: crypto-period without its word: the last word stays in use");
            }
            OnFailure::KeepLast | OnFailure::Clear => {
                self.mode = Mode::Clear;
                tracing::error!(channel = %self.channel, cp, "ALARM: no control word: the service goes out clear");
            }
            OnFailure::Stop => {
                self.mode = Mode::Stopped;
                tracing::error!(channel = %self.channel, cp, "ALARM: no control word: the service's streams are stopped");
            }
        }
    }

    fn send_ecm(&mut self, mux: &mut Mux, cp: u16) {
        if self.simulcrypt {
            // The ECM of the period before carries its word and this one's (lead_CW 1,
            // CW_per_msg 2, the usual); the words around are sent for other settings.
            let prev = cp.wrapping_sub(1);
            let mut words = Vec::new();
            for c in [prev.wrapping_sub(1), prev, cp, cp.wrapping_add(1)] {
                if let Ok(w) = self.word_for(c) {
                    words.push((c, *w.as_bytes()));
                }
            }
            self.provisions
                .push(crate::cas::Provision { cp: prev, words });
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

/// A CAT (table 0x01) with one CA_descriptor naming the EMM PID.
fn cat_section(ca_system_id: u16, emm_pid: u16) -> bytes::BytesMut {
    playout::psi::build_long_section(0x01, 0xFFFF, 0, &ca_descriptor(ca_system_id, emm_pid))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The soak's fault (docs/soak.md): the ECMG stalls right after the ECM of crypto-period
    /// 1, so the flip to period 3 is deferred period after period until it answers again.
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
        for t in (0..30_000).step_by(10).map(|ms| ms * MS) {
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
                        crate::cas::CasEvent::Ecm {
                            cp: prov.cp,
                            sections: vec![ecm.to_vec()],
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
        // Period 3 waited from 6 s to 18 s, then one every 2 s.
        assert_eq!(on_air, (0..=8).collect::<Vec<u16>>());
        assert!(
            p.stats.key_failures == 0 && p.stats.flips == 8,
            "{:?}",
            p.stats
        );
        assert!(p.generated.len() <= 4, "{}", p.generated.len());
    }

    #[test]
    fn cat_and_pmt_descriptors() {
        let cat = cat_section(0x4AD1, 0x1F00);
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
