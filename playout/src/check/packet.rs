//! The first step of each packet: sync (ETSI TR 101 290 checks 1.1 and 1.2), null packets,
//! transport_error_indicator (2.1), and the continuity counter (1.4) with the one repeated
//! packet ISO/IEC 13818-1 §2.4.3.3 allows.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::{CcError, Report, KEEP};
use crate::ts::{Pid, TsPacket, PACKET_SIZE, SYNC_BYTE};

/// The continuity state of every PID seen: a slot per PID in the order first seen (what is
/// made and dropped per check is what the stream has, not 8192 states: the fuzzer checks
/// inputs of a few packets millions of times).
#[derive(Default)]
pub(super) struct Continuity {
    /// By PID: 1 + the index of its slot in `states`, 0 while not seen.
    slots: Vec<u16>,
    states: Vec<PidState>,
}

impl Continuity {
    fn state(&mut self, pid: Pid) -> &mut PidState {
        if self.slots.is_empty() {
            self.slots = vec![0; 8192];
        }
        let slot = &mut self.slots[pid.index()];
        if *slot == 0 {
            self.states.push(PidState {
                cc: None,
                last_payload: None,
            });
            *slot = self.states.len() as u16;
        }
        &mut self.states[usize::from(*slot) - 1]
    }
}

impl Continuity {
    /// Checks the continuity counter of packet `n`: continues with whether the PID's payload is
    /// continuous, or breaks on a repeated packet, which carries nothing new.
    pub(super) fn handle(
        &mut self,
        r: &mut Report,
        packet: &TsPacket,
        n: u64,
        discontinuity: bool,
    ) -> ControlFlow<(), bool> {
        let pid = packet.pid();
        let st = self.state(pid);
        let mut continuous = true;
        if let Some(prev) = st.cc {
            let expected = if packet.has_payload() {
                (prev + 1) & 0x0F
            } else {
                prev
            };
            if packet.cc() != expected && !discontinuity {
                let duplicate = packet.has_payload()
                    && packet.cc() == prev
                    && st.last_payload.as_deref() == Some(packet.raw());
                if duplicate {
                    r.duplicates += 1;
                    return ControlFlow::Break(());
                }
                r.cc_error_count += 1;
                continuous = false;
                if r.cc_errors.len() < KEEP {
                    r.cc_errors.push(CcError {
                        pid,
                        packet: n,
                        expected,
                        found: packet.cc(),
                    });
                }
            }
        }
        st.cc = Some(packet.cc());
        st.last_payload = packet.has_payload().then(|| packet.as_bytes().clone());
        ControlFlow::Continue(continuous)
    }
}

/// Counts sync errors, null packets and transport errors: continues with the packet, or breaks
/// on a packet out of sync (or a trailing partial one) and on a null packet.
pub(super) fn header(r: &mut Report, raw: &[u8]) -> ControlFlow<(), TsPacket> {
    if raw.len() < PACKET_SIZE || raw[0] != SYNC_BYTE {
        r.sync_errors += 1;
        return ControlFlow::Break(());
    }
    let Ok(packet) = TsPacket::new(Bytes::copy_from_slice(raw)) else {
        r.sync_errors += 1;
        return ControlFlow::Break(());
    };
    r.packets += 1;
    if packet.pid() == Pid::NULL {
        r.null_packets += 1;
        return ControlFlow::Break(());
    }
    if packet.tei() {
        r.transport_errors += 1;
    }
    ControlFlow::Continue(packet)
}

struct PidState {
    cc: Option<u8>,
    last_payload: Option<Bytes>,
}
