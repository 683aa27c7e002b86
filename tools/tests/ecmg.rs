//! `hectl ecmg` over real TCP on loopback: an SCS driven by `drm::simulcrypt::Scs` sets up a
//! channel and a stream, provisions the control words of 5 crypto-periods and gets one ECM
//! each, which `drm::ecm` opens under the key (and refuses under another); keep-alives are
//! answered; bogus messages get the error_status TS 103 197 prescribes. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drm::ecm::{parse_ecm, EcmError, Wrap};
use drm::simulcrypt::{
    ecm_packets, encode, Body, ChannelError, ChannelSetup, ChannelTest, CpCwCombination,
    CwProvision, Decoder, ErrorStatus, Message, ProtocolVersion, Scs, ScsConfig, ScsEvent,
    SectionTspktFlag, StreamConfig, StreamError, StreamSetup, SuperCasId, Tenths,
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

/// A running `hectl ecmg`, killed on drop.
struct Ecmg {
    child: Child,
    addr: SocketAddr,
}

impl Ecmg {
    fn start(wrap: &str, extra: &[&str]) -> Ecmg {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hectl"))
            .args([
                "ecmg",
                "--listen",
                "127.0.0.1:0",
                "--key",
                KEY,
                "--wrap",
                wrap,
            ])
            .args(extra)
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
        let mut ecmg = Ecmg {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let line = rx.recv_timeout(STEP).expect("hectl ecmg did not start");
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
        sock.set_nodelay(true).unwrap();
        sock
    }
}

impl Drop for Ecmg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SCS on a real socket.
struct Client {
    scs: Scs,
    sock: TcpStream,
}

impl Client {
    /// Sends what the SCS queued, reads what came, runs its timers; once.
    fn step(&mut self) {
        while let Some(bytes) = self.scs.poll_transmit() {
            self.sock.write_all(&bytes).unwrap();
        }
        let mut buf = [0u8; 4096];
        match self.sock.read(&mut buf) {
            Ok(0) => self.scs.handle_disconnected(Instant::now()),
            Ok(n) => self.scs.handle_bytes(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        let now = Instant::now();
        if self.scs.poll_timeout().is_some_and(|t| t <= now) {
            self.scs.handle_timeout(now);
        }
    }

    /// The next event, within `STEP`; error events fail the test.
    fn event(&mut self) -> ScsEvent {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(e) = self.scs.poll_event() {
                if let ScsEvent::Error(err) = &e {
                    panic!("SCS error: {err}");
                }
                return e;
            }
            assert!(Instant::now() < deadline, "no event within {STEP:?}");
            self.step();
        }
    }

    /// Keeps the connection going for `d`; error events fail the test.
    fn idle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.step();
            if let Some(e) = self.scs.poll_event() {
                panic!("unexpected event {e:?}");
            }
        }
    }
}

fn cw(cp: u16) -> [u8; 16] {
    let mut w = [0u8; 16];
    for (i, b) in w.iter_mut().enumerate() {
        *b = (cp as u8).wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0xA5;
    }
    w
}

fn five_crypto_periods(wrap: Wrap, wrap_arg: &str) {
    let ecmg = Ecmg::start(
        wrap_arg,
        &[
            "--delay-start",
            "-300",
            "--rep-period",
            "50",
            "--min-cp",
            "20",
            // Generous: a loaded CI machine must not turn into a timeout.
            "--max-comp-time",
            "2000",
        ],
    );
    let mut config = one_stream();
    config.keepalive = Duration::from_millis(150);
    let mut c = Client {
        scs: Scs::new(config).unwrap(),
        sock: ecmg.connect(),
    };
    c.scs.handle_connected(Instant::now());
    let ScsEvent::ChannelReady(status) = c.event() else {
        panic!("expected ChannelReady");
    };
    assert_eq!(status.ecm_channel_id, 1);
    assert_eq!(status.section_tspkt_flag, SectionTspktFlag::Sections);
    assert_eq!((status.cw_per_msg, status.lead_cw), (2, 1));
    assert_eq!(status.delay_start_ms, -300);
    assert_eq!(status.ecm_rep_period_ms, 50);
    assert_eq!(status.min_cp_duration, Tenths(20));
    let ScsEvent::StreamReady(stream) = c.event() else {
        panic!("expected StreamReady");
    };
    assert_eq!((stream.ecm_stream_id, stream.ecm_id), (1, 0x0101));

    let pid = Pid::new(0x1FF0).unwrap();
    let mut cc = 0;
    for cp in 0..5u16 {
        let cws = [(cp, cw(cp)), (cp + 1, cw(cp + 1))];
        c.scs
            .provision(Instant::now(), 1, cp, &cws, Some(Tenths(100)))
            .unwrap();
        let ScsEvent::Ecm {
            ecm_stream_id,
            cp_number,
            datagram,
            format,
        } = c.event()
        else {
            panic!("expected an ECM");
        };
        assert_eq!((ecm_stream_id, cp_number), (1, cp));
        assert_eq!(format, SectionTspktFlag::Sections);
        let ecm = parse_ecm(&KEY_BYTES, wrap, &datagram).unwrap();
        assert_eq!(ecm.cp_number, cp);
        assert_eq!(ecm.current_cw(), &cw(cp));
        let (even, odd) = if cp % 2 == 0 {
            (cw(cp), cw(cp + 1))
        } else {
            (cw(cp + 1), cw(cp))
        };
        assert_eq!((ecm.even_cw, ecm.odd_cw), (even, odd));
        assert_eq!(datagram[0], 0x80 | (cp as u8 & 1));
        // Another key: refused, not garbage.
        let mut other = KEY_BYTES;
        other[0] ^= 0x80;
        assert_eq!(parse_ecm(&other, wrap, &datagram), Err(EcmError::Integrity));
        // On the ECM PID: one packet per ECM, counters running on.
        let packets = ecm_packets(&datagram, format, pid, &mut cc).unwrap();
        assert_eq!(packets.len(), 1);
        assert_eq!(cc, (cp as u8 + 1) & 0x0F);
    }

    // Keep-alives every 150 ms are answered; nothing goes wrong in the meantime.
    c.idle(Duration::from_millis(700));
    let stats = c.scs.stats();
    assert!(stats.channel_tests_sent >= 3, "{stats:?}");
    assert!(
        stats.channel_tests_answered + 1 >= stats.channel_tests_sent,
        "{stats:?}"
    );
    assert_eq!((stats.ecms, stats.errors), (5, 0));

    // Orderly close.
    c.scs.close(Instant::now());
    assert_eq!(c.event(), ScsEvent::StreamClosed { ecm_stream_id: 1 });
    assert_eq!(c.event(), ScsEvent::Closed);
    while let Some(bytes) = c.scs.poll_transmit() {
        c.sock.write_all(&bytes).unwrap();
    }
    // The ECMG hangs up after channel_close.
    let deadline = Instant::now() + STEP;
    let mut buf = [0u8; 64];
    loop {
        match c.sock.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => panic!("data after channel_close"),
            Err(_) => assert!(Instant::now() < deadline, "ECMG kept the connection"),
        }
    }
}

/// An SCS of channel 1 with one ECM stream (id 1, ECM_id 0x0101, 10 s periods).
fn one_stream() -> ScsConfig {
    ScsConfig::new(
        CAS,
        1,
        vec![StreamConfig {
            ecm_stream_id: 1,
            ecm_id: 0x0101,
            nominal_cp_duration: Tenths(100),
            access_criteria: vec![],
        }],
    )
}

#[test]
fn five_crypto_periods_aes() {
    five_crypto_periods(Wrap::Aes128, "aes");
}

#[test]
fn five_crypto_periods_sm4() {
    five_crypto_periods(Wrap::Sm4, "sm4");
}

/// A raw connection: send bytes, get the one message that answers them.
struct Raw {
    sock: TcpStream,
    decoder: Decoder,
}

impl Raw {
    fn exchange(&mut self, bytes: &[u8]) -> Body {
        self.sock.write_all(bytes).unwrap();
        let deadline = Instant::now() + STEP;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.decoder.next() {
                return r.unwrap().body;
            }
            assert!(Instant::now() < deadline, "no answer within {STEP:?}");
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("ECMG hung up"),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    fn send(&mut self, body: impl Into<Body>) -> Body {
        self.exchange(&encode(&Message::new(ProtocolVersion::V3, body)).unwrap())
    }
}

fn raw(version: u8, message_type: u16, params: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in params {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    let mut out = vec![version];
    out.extend_from_slice(&message_type.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn channel_status(body: &Body) -> ErrorStatus {
    match body {
        Body::ChannelError(ChannelError { error_status, .. }) => error_status[0],
        other => panic!("expected channel_error, got {other:?}"),
    }
}

fn stream_status(body: &Body, stream: u16) -> ErrorStatus {
    match body {
        Body::StreamError(StreamError {
            error_status,
            ecm_stream_id,
            ..
        }) if *ecm_stream_id == stream => error_status[0],
        other => panic!("expected stream_error on stream {stream}, got {other:?}"),
    }
}

#[test]
fn bogus_messages_get_the_right_error_status() {
    let ecmg = Ecmg::start("aes", &[]);
    let mut r = Raw {
        sock: ecmg.connect(),
        decoder: Decoder::new(),
    };
    let ch: (u16, &[u8]) = (0x000E, &[0, 1]);
    // Unknown message_type.
    assert_eq!(
        channel_status(&r.exchange(&raw(3, 0x0999, &[ch]))),
        ErrorStatus::UNKNOWN_MESSAGE_TYPE
    );
    // Protocol version 1.
    assert_eq!(
        channel_status(&r.exchange(&raw(1, 0x0001, &[ch]))),
        ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION
    );
    // A stream before any channel.
    let setup = StreamSetup {
        ecm_channel_id: 1,
        ecm_stream_id: 2,
        ecm_id: 2,
        nominal_cp_duration: Tenths(100),
    };
    assert_eq!(
        channel_status(&r.send(setup.clone())),
        ErrorStatus::UNKNOWN_ECM_CHANNEL_ID
    );
    // Another CAS.
    assert_eq!(
        channel_status(&r.send(ChannelSetup {
            ecm_channel_id: 1,
            super_cas_id: SuperCasId(0x0B00_0000)
        })),
        ErrorStatus::UNKNOWN_SUPER_CAS_ID
    );
    // channel_setup without Super_CAS_id: missing parameter.
    assert_eq!(
        channel_status(&r.exchange(&raw(3, 0x0001, &[ch]))),
        ErrorStatus::MISSING_PARAMETER
    );
    // Now properly.
    assert!(matches!(
        r.send(ChannelSetup {
            ecm_channel_id: 1,
            super_cas_id: CAS
        }),
        Body::ChannelStatus(_)
    ));
    assert_eq!(
        channel_status(&r.send(ChannelSetup {
            ecm_channel_id: 1,
            super_cas_id: CAS
        })),
        ErrorStatus::ECM_CHANNEL_ID_IN_USE
    );
    assert_eq!(
        channel_status(&r.send(ChannelTest { ecm_channel_id: 9 })),
        ErrorStatus::UNKNOWN_ECM_CHANNEL_ID
    );
    assert!(matches!(
        r.send(ChannelTest { ecm_channel_id: 1 }),
        Body::ChannelStatus(_)
    ));
    // CW_provision on a stream that was never set up.
    let provision = |stream: u16, cws: &[u16]| CwProvision {
        ecm_channel_id: 1,
        ecm_stream_id: stream,
        cp_number: 4,
        cw_encryption: None,
        cp_cw_combinations: cws
            .iter()
            .map(|&cp| CpCwCombination {
                cp_number: cp,
                cw: cw(cp).to_vec(),
            })
            .collect(),
        cp_duration: None,
        access_criteria: None,
    };
    assert_eq!(
        stream_status(&r.send(provision(9, &[4, 5])), 9),
        ErrorStatus::UNKNOWN_ECM_STREAM_ID
    );
    assert!(matches!(r.send(setup.clone()), Body::StreamStatus(_)));
    assert_eq!(
        stream_status(&r.send(setup), 2),
        ErrorStatus::ECM_STREAM_ID_IN_USE
    );
    // One word where CW_per_msg is 2.
    assert_eq!(
        stream_status(&r.send(provision(2, &[4])), 2),
        ErrorStatus::NOT_ENOUGH_CWS
    );
    // No CP_number.
    let st: (u16, &[u8]) = (0x000F, &[0, 2]);
    let mut comb = vec![0, 4];
    comb.extend_from_slice(&cw(4));
    assert_eq!(
        stream_status(&r.exchange(&raw(3, 0x0201, &[ch, st, (0x0014, &comb)])), 2),
        ErrorStatus::MISSING_PARAMETER
    );
    // ECM_channel_id of the wrong size.
    assert_eq!(
        channel_status(&r.exchange(&raw(3, 0x0002, &[(0x000E, &[0, 0, 1])]))),
        ErrorStatus::INCONSISTENT_LENGTH
    );
    // Longer than the ECMG takes (8192 bytes): refused and skipped.
    let big = raw(3, 0x0201, &[ch, st, (0x000D, &[0u8; 9000])]);
    assert_eq!(
        channel_status(&r.exchange(&big)),
        ErrorStatus::MESSAGE_TOO_LONG
    );
    // After all that, the channel still works.
    let Body::EcmResponse(resp) = r.send(provision(2, &[4, 5])) else {
        panic!("expected ECM_response");
    };
    let ecm = parse_ecm(&KEY_BYTES, Wrap::Aes128, &resp.ecm_datagram).unwrap();
    assert_eq!((ecm.cp_number, ecm.even_cw, ecm.odd_cw), (4, cw(4), cw(5)));
    assert_eq!(
        parse_ecm(&KEY_BYTES, Wrap::Sm4, &resp.ecm_datagram),
        Err(EcmError::Algorithm {
            found: 0x01,
            expected: Wrap::Sm4
        })
    );
}

// ---- as deployed version-2 ECMGs run ----
// `hectl ecmg --version 2 --ts-packets` over real TCP on loopback, as deployed version-2
// ECMGs run: a version-3 channel_setup gets channel_error 0x0002 (unsupported protocol
// version, ETSI TS 103 197) in version 2 and the connection is closed, the answer arriving
// before the close; a version-2 SCS (`drm::simulcrypt::Scs`) gets its channel, and ECMs as
// whole TS packets that carry the ECM `drm::ecm` opens. Every wait is bounded.

#[test]
fn ecmg_v2_answers_a_v3_channel_setup_with_error_0x0002_then_closes() {
    let ecmg = Ecmg::start("aes", &["--version", "2", "--ts-packets"]);
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

#[test]
fn ecmg_v2_serves_a_v2_scs_ecms_as_ts_packets() {
    let ecmg = Ecmg::start("aes", &["--version", "2", "--ts-packets"]);
    let mut config = one_stream();
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
