//! Helpers for the scrambling tests: a test ECMG to spawn, captures walked as a receiver
//! tuning in does, PMT and CA_descriptor parsing.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use playout::psi::{Pmt, SectionAssembler};
use playout::ts::{Pid, TsPacket};

/// A child process (a test ECMG or EMMG), killed when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an ECMG; returns it and the address it says it listens on.
pub(crate) fn spawn_ecmg(cmd: &mut Command) -> (Killed, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hectl ecmg");
    let stdout = child.stdout.take().unwrap();
    let ecmg = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let bound = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("hectl ecmg said {line:?}"))
        .to_owned();
    (ecmg, bound)
}

/// `hectl ecmg --listen LISTEN --key KEY --wrap aes EXTRA...` ([`spawn_ecmg`]).
pub(crate) fn aes_ecmg(listen: &str, key: &str, extra: &[&str]) -> (Killed, String) {
    spawn_ecmg(
        Command::new(super::hectl())
            .args(["ecmg", "--listen", listen, "--key", key, "--wrap", "aes"])
            .args(extra),
    )
}

/// A UDP receiver with a large buffer: the socket and its port.
pub(crate) fn udp_receiver() -> (UdpSocket, u16) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    (rx, port)
}

pub(crate) fn pid_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[1], p[2]]) & 0x1FFF
}

pub(crate) fn null_packet() -> [u8; 188] {
    let mut null = [0xFFu8; 188];
    null[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
    null
}

/// The packet indexes where the scrambling parity changes, with the new parity's
/// transport_scrambling_control bits.
pub(crate) fn parity_flips(data: &[u8]) -> Vec<(usize, u8)> {
    let mut flips = Vec::new();
    let mut parity = None;
    for (k, p) in data.chunks_exact(188).enumerate() {
        let tsc = p[3] >> 6;
        if tsc == 0 || p[3] & 0x10 == 0 {
            continue;
        }
        if parity.is_some_and(|was| was != tsc) {
            flips.push((k, tsc));
        }
        parity = Some(tsc);
    }
    flips
}

/// The PMTs on `pid`, each version once.
pub(crate) fn pmts(data: &[u8], pid: u16) -> Vec<Pmt> {
    let mut asm = SectionAssembler::default();
    let mut sections: Vec<Vec<u8>> = Vec::new();
    for p in data.chunks_exact(188).filter(|p| pid_of(p) == pid) {
        let pkt = TsPacket::new(Bytes::copy_from_slice(p)).unwrap();
        asm.push(&pkt, true, |s| {
            if !sections.iter().any(|k| k == s) {
                sections.push(s.to_vec());
            }
        });
    }
    sections
        .iter()
        .map(|s| Pmt::parse(Pid::from_bits(pid), s).expect("a PMT"))
        .collect()
}

/// (CA_system_id, CA_PID) of each CA_descriptor (tag 0x09, ISO/IEC 13818-1 §2.6.16) in a
/// descriptor loop.
pub(crate) fn ca_descriptors(mut descriptors: &[u8]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    while descriptors.len() >= 2 {
        let (tag, len) = (descriptors[0], usize::from(descriptors[1]));
        let body = &descriptors[2..2 + len];
        if tag == 0x09 {
            out.push((
                u16::from_be_bytes([body[0], body[1]]),
                u16::from_be_bytes([body[2], body[3]]) & 0x1FFF,
            ));
        }
        descriptors = &descriptors[2 + len..];
    }
    out
}

/// A capture as a receiver tuning in to `ecm_pid`'s CAS sees it, and the index in `data` of
/// its first ECM (the tuned capture starts there): from the first ECM, each elementary stream
/// from its first PES start after a PAT and PMT (video from a random access point); what came
/// before on those PIDs, and the PIDs `hidden` throughout, become null packets, so the byte
/// clock stays as sent.
pub(crate) fn tune_in(data: &[u8], ecm_pid: u16, pmt_pid: u16, hidden: &[u16]) -> (Vec<u8>, usize) {
    let starts = |k: usize, want: u16| {
        data.chunks_exact(188)
            .enumerate()
            .skip(k)
            .find(|(_, p)| pid_of(p) == want && p[1] & 0x40 != 0)
            .map(|(i, _)| i)
    };
    let first_ecm = starts(0, ecm_pid).expect("an ECM on air");
    let pat = starts(first_ecm, 0).expect("a PAT after the first ECM");
    let pmt_at = starts(pat, pmt_pid).expect("a PMT after it");
    let mut pmt = None;
    SectionAssembler::default().push(
        &TsPacket::new(Bytes::copy_from_slice(&data[pmt_at * 188..][..188])).unwrap(),
        true,
        |s| pmt = Pmt::parse(Pid::from_bits(pmt_pid), s).ok(),
    );
    let video: Vec<u16> = pmt
        .expect("the PMT in one packet")
        .streams
        .iter()
        .filter(|s| [0x1B, 0x24].contains(&s.stream_type))
        .map(|s| s.pid.value())
        .collect();
    let null = null_packet();
    let es = |id: u16| super::scrambled_es(id, ecm_pid) && id != pmt_pid;
    let mut joined = std::collections::HashSet::new();
    let mut tuned = Vec::with_capacity(data.len());
    for (i, p) in data.chunks_exact(188).enumerate().skip(first_ecm) {
        let id = pid_of(p);
        if hidden.contains(&id) || (i < pat && id >= 0x20 && ![ecm_pid, 0x1FFF].contains(&id)) {
            // The PMT too: its PID is known from the PAT.
            tuned.extend_from_slice(&null);
            continue;
        }
        if es(id) && !joined.contains(&id) {
            let rai = p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x40 != 0;
            if i > pmt_at && p[1] & 0x40 != 0 && (rai || !video.contains(&id)) {
                joined.insert(id);
            } else {
                tuned.extend_from_slice(&null);
                continue;
            }
        }
        tuned.extend_from_slice(p);
    }
    (tuned, first_ecm)
}
