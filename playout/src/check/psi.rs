//! The PSI step: PAT and PMT sections assembled and parsed (ISO/IEC 13818-1 §2.4.4.3 and
//! §2.4.4.8, CRC-32 of Annex A), their versions, and the repetition of each table (ETSI
//! TR 101 290 checks 1.3 and 1.5, CRC 2.2).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use super::{ByteClock, ProgramInfo, Report, KEEP};
use crate::es::Codec;
use crate::psi::{Pat, Pmt, SectionAssembler};
use crate::ts::{Pid, TsPacket};

/// The tables as the file announces them so far.
#[derive(Default)]
pub(super) struct PsiState {
    /// Programs, by number.
    pub(super) programs: BTreeMap<u16, ProgramInfo>,
    pat_asm: SectionAssembler,
    pmt_asm: BTreeMap<Pid, SectionAssembler>,
    pat_gap: Gap,
    pmt_gap: BTreeMap<Pid, Gap>,
}

impl PsiState {
    /// Takes packet `n` if it is on the PAT PID or on a PMT PID the PAT named, and breaks;
    /// continues with any other packet. `continuous` is false after a continuity error.
    pub(super) fn handle(
        &mut self,
        r: &mut Report,
        packet: &TsPacket,
        n: u64,
        continuous: bool,
    ) -> ControlFlow<()> {
        let pid = packet.pid();
        if pid == Pid::PAT {
            if packet.pusi() {
                self.pat_gap.seen(n);
            }
            let mut sections = Vec::new();
            self.pat_asm
                .push(packet, continuous, |s| sections.push(s.to_vec()));
            for s in sections {
                match Pat::parse(&s) {
                    Ok(p) => self.pat(r, &p),
                    Err(e) => psi_error(r, format!("packet {n}: {e}")),
                }
            }
            return ControlFlow::Break(());
        }
        if let Some(asm) = self.pmt_asm.get_mut(&pid) {
            if packet.pusi() {
                if let Some(g) = self.pmt_gap.get_mut(&pid) {
                    g.seen(n);
                }
            }
            let mut sections = Vec::new();
            asm.push(packet, continuous, |s| sections.push(s.to_vec()));
            for s in sections {
                match Pmt::parse(pid, &s) {
                    Ok(pmt) => self.pmt(r, &pmt),
                    Err(e) => psi_error(r, format!("packet {n}: {e}")),
                }
            }
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// The end of the file (`end` packets): closes the gaps, measures them on the byte clock if
    /// there is one, and hands the programs to the report.
    pub(super) fn finish(mut self, r: &mut Report, end: u64, clock: Option<ByteClock>) {
        self.pat_gap.finish(end);
        for g in self.pmt_gap.values_mut() {
            g.finish(end);
        }
        r.programs = self.programs.into_values().collect();
        if let Some(clock) = clock {
            r.max_pat_gap = clock.duration(self.pat_gap.max);
            r.max_pmt_gap = self
                .pmt_gap
                .iter()
                .map(|(pid, g)| (*pid, clock.duration(g.max)))
                .collect();
        }
    }

    fn pat(&mut self, r: &mut Report, p: &Pat) {
        if r.pat_versions.last() != Some(&p.version) {
            r.pat_versions.push(p.version);
        }
        for (number, pmt_pid) in &p.programs {
            self.pmt_asm.entry(*pmt_pid).or_default();
            self.pmt_gap.entry(*pmt_pid).or_default();
            self.programs.entry(*number).or_insert_with(|| ProgramInfo {
                number: *number,
                pmt_pid: *pmt_pid,
                pcr_pid: Pid::NULL,
                streams: Vec::new(),
                versions: Vec::new(),
            });
        }
    }

    fn pmt(&mut self, r: &mut Report, pmt: &Pmt) {
        let Some(info) = self.programs.get_mut(&pmt.program_number) else {
            return;
        };
        if info.versions.last() != Some(&pmt.version) {
            info.versions.push(pmt.version);
        }
        info.pcr_pid = pmt.pcr_pid;
        // A stream that leaves the PMT and comes back later starts a new run.
        for (old, _) in &info.streams {
            if !pmt.streams.iter().any(|e| e.pid == *old) {
                if let Some(s) = r.pes.get_mut(old) {
                    s.end_run();
                }
            }
        }
        info.streams = pmt.streams.iter().map(|e| (e.pid, e.stream_type)).collect();
        for es in &pmt.streams {
            r.pes.entry(es.pid).or_default().class = Some(Codec::of(es).class());
        }
    }
}

/// Repetition of one PSI table or of a program's PCR, in packets.
#[derive(Clone, Copy, Debug, Default)]
struct Gap {
    last: Option<u64>,
    max: u64,
    at: u64,
    count: u64,
}

impl Gap {
    fn seen(&mut self, packet: u64) {
        let gap = packet - self.last.map_or(0, |l| l);
        if gap > self.max {
            self.max = gap;
            self.at = packet;
        }
        self.last = Some(packet);
        self.count += 1;
    }
    fn finish(&mut self, end: u64) {
        let gap = end - self.last.map_or(0, |l| l);
        if gap > self.max {
            self.max = gap;
            self.at = end;
        }
    }
}

fn psi_error(r: &mut Report, text: String) {
    r.psi_errors += 1;
    if r.psi_error_text.len() < KEEP {
        r.psi_error_text.push(text);
    }
}
