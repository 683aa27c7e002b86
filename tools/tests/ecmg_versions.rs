//! `hectl ecmg --version 2 --ts-packets` over real TCP on loopback, as deployed version-2
//! ECMGs run: a version-3 channel_setup gets channel_error 0x0002 (unsupported protocol
//! version, ETSI TS 103 197) in version 2 and the connection is closed, the answer arriving
//! before the close; a version-2 SCS (`drm::simulcrypt::Scs`) gets its channel, and ECMs as
//! whole TS packets that carry the ECM `drm::ecm` opens. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drm::ecm::{parse_ecm, Wrap};
use drm::simulcrypt::{
    ecm_packets, encode, ChannelError, ChannelSetup, Decoder, ErrorStatus, Message,
    ProtocolVersion, Scs, ScsConfig, ScsEvent, SectionTspktFlag, StreamConfig, SuperCasId, Tenths,
};
use playout::psi::SectionAssembler;
use playout::ts::{header, Pid, PACKET_SIZE};

const KEY: &str = "00112233445566778899aabbccddeeff";
const KEY_BYTES: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];
const CAS: SuperCasId = SuperCasId(0x4AD1_0000);
/// Longest any single step may take.
const STEP: Duration = Duration::from_secs(10);

/// `hectl ecmg --version 2 --ts-packets`, killed on drop.
struct Ecmg {
    child: Child,
    addr: SocketAddr,
}

impl Ecmg {
    fn start() -> Ecmg {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hectl"))
            .args([
                "ecmg",
                "--listen",
                "127.0.0.1:0",
                "--key",
                KEY,
                "--wrap",
                "aes",
            ])
            .args(["--version", "2", "--ts-packets"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(STEP);
        let mut ecmg = Ecmg {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let line = line.expect("hectl ecmg did not start");
        ecmg.addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        ecmg
    }

    fn connect(&self) -> TcpStream {
        let sock = TcpStream::connect_timeout(&self.addr, STEP).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        sock.set_write_timeout(Some(STEP)).unwrap();
        sock
    }
}

impl Drop for Ecmg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ecmg_v2_answers_a_v3_channel_setup_with_error_0x0002_then_closes() {
    let ecmg = Ecmg::start();
    let mut sock = ecmg.connect();
    let setup = ChannelSetup {
        ecm_channel_id: 7,
        super_cas_id: CAS,
    };
    sock.write_all(&encode(&Message::new(ProtocolVersion::V3, setup)).unwrap())
        .unwrap();
    // Everything up to the close.
    let deadline = Instant::now() + STEP;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => assert!(
                Instant::now() < deadline,
                "ECMG kept the connection ({e}); got {received:02x?}"
            ),
        }
    }
    let mut decoder = Decoder::new();
    decoder.push(&received);
    let answers: Vec<Message> = decoder.by_ref().map(Result::unwrap).collect();
    assert_eq!(decoder.buffered(), 0);
    let error = ChannelError {
        ecm_channel_id: 7,
        error_status: vec![ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION],
        error_information: Vec::new(),
    };
    assert_eq!(answers, [Message::new(ProtocolVersion::V2, error)]);
}

fn cw(cp: u16) -> [u8; 16] {
    std::array::from_fn(|i| (cp as u8).wrapping_mul(29) ^ (i as u8 * 11) ^ 0x5A)
}

#[test]
fn ecmg_v2_serves_a_v2_scs_ecms_as_ts_packets() {
    let ecmg = Ecmg::start();
    let mut config = ScsConfig::new(
        CAS,
        1,
        vec![StreamConfig {
            ecm_stream_id: 1,
            ecm_id: 0x0101,
            nominal_cp_duration: Tenths(100),
            access_criteria: vec![],
        }],
    );
    config.version = ProtocolVersion::V2;
    let mut scs = Scs::new(config).unwrap();
    let mut sock = ecmg.connect();
    scs.handle_connected(Instant::now());
    let mut next_event = |scs: &mut Scs| -> ScsEvent {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(e) = scs.poll_event() {
                return e;
            }
            assert!(Instant::now() < deadline, "no event within {STEP:?}");
            while let Some(bytes) = scs.poll_transmit() {
                sock.write_all(&bytes).unwrap();
            }
            let mut buf = [0u8; 4096];
            match sock.read(&mut buf) {
                Ok(0) => scs.handle_disconnected(Instant::now()),
                Ok(n) => scs.handle_bytes(Instant::now(), &buf[..n]),
                Err(_) => {}
            }
        }
    };
    let ScsEvent::ChannelReady(status) = next_event(&mut scs) else {
        panic!("expected ChannelReady");
    };
    assert_eq!(status.section_tspkt_flag, SectionTspktFlag::TsPackets);
    assert!(matches!(next_event(&mut scs), ScsEvent::StreamReady(_)));

    let pid = Pid::new(0x1FF0).unwrap();
    let mut cc = 0;
    for cp in 0..3u16 {
        let cws = [(cp, cw(cp)), (cp + 1, cw(cp + 1))];
        scs.provision(Instant::now(), 1, cp, &cws, None).unwrap();
        let ScsEvent::Ecm {
            datagram, format, ..
        } = next_event(&mut scs)
        else {
            panic!("expected an ECM");
        };
        assert_eq!(format, SectionTspktFlag::TsPackets);
        assert_eq!(datagram.len() % PACKET_SIZE, 0);
        assert!(datagram.chunks_exact(PACKET_SIZE).all(|p| p[0] == 0x47));
        // On the ECM PID, counters running on, the section reassembles and opens.
        let packets = ecm_packets(&datagram, format, pid, &mut cc).unwrap();
        let mut assembler = SectionAssembler::default();
        let mut sections = Vec::new();
        for p in &packets {
            assert_eq!(header::pid(p), pid);
            assembler.push_payload(&p[4..], header::pusi(p), true, |s| {
                sections.push(s.to_vec())
            });
        }
        assert_eq!(sections.len(), 1);
        let ecm = parse_ecm(&KEY_BYTES, Wrap::Aes128, &sections[0]).unwrap();
        assert_eq!((ecm.cp_number, ecm.current_cw()), (cp, &cw(cp)));
    }
    // The ECMG spoke version 2 throughout: nothing went wrong.
    assert_eq!(scs.stats().errors, 0);
}
