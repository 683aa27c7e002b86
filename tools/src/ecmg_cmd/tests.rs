//! Tests of the test ECMG: versions, forms, delays, stalls.

use clap::Parser;
use drm::ecm::parse_ecm;
use drm::simulcrypt::{
    ecm_packets, ChannelSetup, ChannelTest, CpCwCombination, ParameterType, StreamTest, SuperCasId,
};
use playout::psi::SectionAssembler;
use playout::ts::header;

use super::*;

const KEY: &str = "00112233445566778899aabbccddeeff";
const CAS: SuperCasId = SuperCasId(0x4AD1_0000);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EcmgArgs,
}

/// An ECMG as `hectl ecmg --key KEY --wrap aes EXTRA...` would run it.
fn ecmg(extra: &[&str]) -> Ecmg {
    let base = [
        "ecmg",
        "--listen",
        "127.0.0.1:0",
        "--key",
        KEY,
        "--wrap",
        "aes",
    ];
    let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
    Ecmg::new(&cli.args).unwrap()
}

fn connect(ecmg: &Ecmg) -> Connection<'_> {
    Connection::new(ecmg, "127.0.0.1:1".parse().unwrap())
}

/// Sends `bytes` in one read; the messages that answer them, and what follows.
fn exchange_bytes(conn: &mut Connection<'_>, bytes: &[u8]) -> (Vec<Message>, Flow) {
    let mut out = Vec::new();
    let flow = conn.handle_bytes(bytes, &mut out);
    let mut decoder = Decoder::new();
    decoder.push(&out);
    let answers = decoder.by_ref().map(Result::unwrap).collect();
    assert_eq!(decoder.buffered(), 0, "a partial message was written");
    (answers, flow)
}

fn exchange(conn: &mut Connection<'_>, msgs: &[Message]) -> (Vec<Message>, Flow) {
    let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
    exchange_bytes(conn, &bytes)
}

/// The one answer to `body` sent in `version`, the connection staying up.
fn ask(conn: &mut Connection<'_>, version: ProtocolVersion, body: impl Into<Body>) -> Message {
    let (mut answers, flow) = exchange(conn, &[Message::new(version, body)]);
    assert_eq!((answers.len(), flow), (1, Flow::Continue), "{answers:?}");
    answers.remove(0)
}

/// protocol_version(8) message_type(16) message_length(16), then TLVs (TS 103 197).
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

fn version_error(ecm_channel_id: u16) -> Body {
    Body::ChannelError(ChannelError {
        ecm_channel_id,
        error_status: vec![ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION],
        error_information: Vec::new(),
    })
}

fn cw(cp: u16) -> [u8; 16] {
    std::array::from_fn(|i| (cp as u8).wrapping_mul(31) ^ (i as u8 * 7) ^ 0xA5)
}

fn provision(cp: u16) -> CwProvision {
    CwProvision {
        ecm_channel_id: 1,
        ecm_stream_id: 1,
        cp_number: cp,
        cw_encryption: None,
        cp_cw_combinations: [cp, cp + 1]
            .iter()
            .map(|&cp| CpCwCombination {
                cp_number: cp,
                cw: cw(cp).to_vec(),
            })
            .collect(),
        cp_duration: None,
        access_criteria: None,
    }
}

/// channel_setup and stream_setup in `version`; the channel_status.
fn open(conn: &mut Connection<'_>, version: ProtocolVersion) -> ChannelStatus {
    let setup = ChannelSetup {
        ecm_channel_id: 1,
        super_cas_id: CAS,
    };
    let answer = ask(conn, version, setup);
    assert_eq!(answer.version, version);
    let Body::ChannelStatus(status) = answer.body else {
        panic!("expected channel_status, got {answer:?}");
    };
    let stream = StreamSetup {
        ecm_channel_id: 1,
        ecm_stream_id: 1,
        ecm_id: 0x0101,
        nominal_cp_duration: Tenths(100),
    };
    let answer = ask(conn, version, stream);
    assert!(matches!(answer.body, Body::StreamStatus(_)), "{answer:?}");
    status
}

/// The ECM_datagram answering CW_provision of `cp`.
fn ecm(conn: &mut Connection<'_>, version: ProtocolVersion, cp: u16) -> Bytes {
    let answer = ask(conn, version, provision(cp));
    assert_eq!(answer.version, version);
    let Body::EcmResponse(r) = answer.body else {
        panic!("expected ECM_response, got {answer:?}");
    };
    assert_eq!(r.cp_number, cp);
    r.ecm_datagram
}

#[test]
fn ecmg_v2_rejects_v3_channel_setup_then_hangs_up() {
    let ecmg = ecmg(&["--version", "2"]);
    let mut conn = connect(&ecmg);
    let setup = ChannelSetup {
        ecm_channel_id: 7,
        super_cas_id: CAS,
    };
    // A v2 channel_test in the same read is not answered: the connection is over.
    let (answers, flow) = exchange(
        &mut conn,
        &[
            Message::new(ProtocolVersion::V3, setup),
            Message::new(ProtocolVersion::V2, ChannelTest { ecm_channel_id: 7 }),
        ],
    );
    assert_eq!(flow, Flow::HangUp);
    assert_eq!(
        answers,
        [Message::new(ProtocolVersion::V2, version_error(7))]
    );
    // The encoding: version 2, channel_error, ECM_channel_id 7, error_status 0x0002.
    let mut out = Vec::new();
    connect(&ecmg).handle_bytes(
        &encode(&Message::new(
            ProtocolVersion::V3,
            ChannelTest { ecm_channel_id: 7 },
        ))
        .unwrap(),
        &mut out,
    );
    assert_eq!(out, raw(2, 0x0005, &[(0x000E, &[0, 7]), (0x7000, &[0, 2])]));
}

#[test]
fn ecmg_version_mismatch_is_refused_even_if_undecodable() {
    let v2 = ecmg(&["--version", "2"]);
    // A v3 channel_setup without Super_CAS_id: its ECM_channel_id is still named.
    let (answers, flow) = exchange_bytes(&mut connect(&v2), &raw(3, 0x0001, &[(0x000E, &[0, 9])]));
    assert_eq!(flow, Flow::HangUp);
    assert_eq!(
        answers,
        [Message::new(ProtocolVersion::V2, version_error(9))]
    );
    // An unknown v3 message_type: no ECM_channel_id to name, so 0.
    let (answers, flow) = exchange_bytes(&mut connect(&v2), &raw(3, 0x0999, &[(0x000E, &[0, 9])]));
    assert_eq!(flow, Flow::HangUp);
    assert_eq!(
        answers,
        [Message::new(ProtocolVersion::V2, version_error(0))]
    );
    // And the other way round: a v3 ECMG refuses v2, in v3.
    let v3 = ecmg(&[]);
    let setup = ChannelSetup {
        ecm_channel_id: 3,
        super_cas_id: CAS,
    };
    let (answers, flow) = exchange(
        &mut connect(&v3),
        &[Message::new(ProtocolVersion::V2, setup)],
    );
    assert_eq!(flow, Flow::HangUp);
    assert_eq!(
        answers,
        [Message::new(ProtocolVersion::V3, version_error(3))]
    );
    // A version no one speaks (1) is an undecodable message like any other: answered,
    // the connection kept (tests/ecmg.rs relies on this).
    let mut conn = connect(&v2);
    let (answers, flow) = exchange_bytes(&mut conn, &raw(1, 0x0001, &[(0x000E, &[0, 1])]));
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        answers,
        [Message::new(ProtocolVersion::V2, version_error(0))]
    );
    open(&mut conn, ProtocolVersion::V2);
}

#[test]
fn ecmg_v2_accepts_v2_channel_setup() {
    let ecmg = ecmg(&["--version", "2"]);
    let mut conn = connect(&ecmg);
    let status = open(&mut conn, ProtocolVersion::V2);
    assert_eq!(status.ecm_channel_id, 1);
    assert_eq!(status.section_tspkt_flag, SectionTspktFlag::Sections);
    let datagram = ecm(&mut conn, ProtocolVersion::V2, 4);
    let ecm = parse_ecm(&ecmg.key, Wrap::Aes128, &datagram).unwrap();
    assert_eq!((ecm.even_cw, ecm.odd_cw), (cw(4), cw(5)));
    let answer = ask(
        &mut conn,
        ProtocolVersion::V2,
        ChannelTest { ecm_channel_id: 1 },
    );
    assert_eq!(answer.version, ProtocolVersion::V2);
    assert!(matches!(answer.body, Body::ChannelStatus(_)));
}

#[test]
fn ecmg_announces_delays_only_when_given() {
    let defaults = ecmg(&[]);
    assert_eq!(defaults.version, ProtocolVersion::V3);
    let status = open(&mut connect(&defaults), ProtocolVersion::V3);
    assert_eq!((status.delay_start_ms, status.delay_stop_ms), (200, 0));
    assert_eq!(
        (
            status.transition_delay_start_ms,
            status.transition_delay_stop_ms,
            status.ac_delay_start_ms,
            status.ac_delay_stop_ms
        ),
        (None, None, None, None)
    );
    let given = ecmg(&[
        "--delay-start",
        "-500",
        "--delay-stop",
        "-20",
        "--transition-delay-start",
        "-40",
        "--transition-delay-stop",
        "60",
        "--ac-delay-start",
        "-10",
        "--ac-delay-stop",
        "30",
    ]);
    let status = open(&mut connect(&given), ProtocolVersion::V3);
    assert_eq!((status.delay_start_ms, status.delay_stop_ms), (-500, -20));
    assert_eq!(
        (
            status.transition_delay_start_ms,
            status.transition_delay_stop_ms,
            status.ac_delay_start_ms,
            status.ac_delay_stop_ms
        ),
        (Some(-40), Some(60), Some(-10), Some(30))
    );
    // Absent means not on the wire; given means on it.
    let optional = [
        ParameterType::TRANSITION_DELAY_START,
        ParameterType::TRANSITION_DELAY_STOP,
        ParameterType::AC_DELAY_START,
        ParameterType::AC_DELAY_STOP,
    ];
    let types = status_parameters(&defaults);
    assert!(types.contains(&ParameterType::DELAY_START), "{types:?}");
    assert!(types.contains(&ParameterType::DELAY_STOP), "{types:?}");
    assert!(optional.iter().all(|t| !types.contains(t)), "{types:?}");
    let types = status_parameters(&given);
    assert!(optional.iter().all(|t| types.contains(t)), "{types:?}");
}

/// The parameter_types of the channel_status `ecmg` answers channel_setup with, in order.
fn status_parameters(ecmg: &Ecmg) -> Vec<ParameterType> {
    let setup = ChannelSetup {
        ecm_channel_id: 1,
        super_cas_id: CAS,
    };
    let mut out = Vec::new();
    let bytes = encode(&Message::new(ProtocolVersion::V3, setup)).unwrap();
    connect(ecmg).handle_bytes(&bytes, &mut out);
    assert_eq!(
        u16::from_be_bytes([out[1], out[2]]),
        0x0003,
        "channel_status"
    );
    let mut body = &out[5..];
    let mut types = Vec::new();
    while body.len() >= 4 {
        types.push(ParameterType(u16::from_be_bytes([body[0], body[1]])));
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        body = &body[4 + len..];
    }
    types
}

#[test]
fn ecmg_ts_packets_reassemble_to_the_sections_ecm() {
    let sections = ecmg(&[]);
    let packets = ecmg(&["--ts-packets", "--version", "2"]);
    let mut s = connect(&sections);
    let mut p = connect(&packets);
    open(&mut s, ProtocolVersion::V3);
    let status = open(&mut p, ProtocolVersion::V2);
    assert_eq!(status.section_tspkt_flag, SectionTspktFlag::TsPackets);
    for cp in 0..3 {
        let section = ecm(&mut s, ProtocolVersion::V3, cp);
        let datagram = ecm(&mut p, ProtocolVersion::V2, cp);
        assert_eq!(datagram.len() % PACKET_SIZE, 0);
        let mut assembler = SectionAssembler::default();
        let mut found = Vec::new();
        for (i, pkt) in datagram.chunks_exact(PACKET_SIZE).enumerate() {
            assert_eq!(pkt[0], 0x47);
            assert_eq!(header::pid(pkt), Pid::NULL);
            assert_eq!(header::pusi(pkt), i == 0);
            assert_eq!(usize::from(header::continuity_counter(pkt)), i & 0x0F);
            let payload = &pkt[4..];
            if i == 0 {
                assert_eq!(payload[0], 0, "pointer_field");
            }
            assembler.push_payload(payload, i == 0, true, |sec| found.push(sec.to_vec()));
        }
        assert_eq!(found, [section.to_vec()]);
        // 0xFF stuffing after the section (one packet: the ECM is 55 bytes).
        assert!(datagram[5 + section.len()..].iter().all(|&b| b == 0xFF));
        // And the SCS side takes it as TS packets.
        let mut cc = 0;
        let pid = Pid::new(0x1FF0).unwrap();
        let on_air = ecm_packets(&datagram, SectionTspktFlag::TsPackets, pid, &mut cc).unwrap();
        assert_eq!(on_air.len(), datagram.len() / PACKET_SIZE);
    }
}

#[test]
fn ecmg_stall_after_leaves_cw_provision_unanswered() {
    let ecmg = ecmg(&["--stall-after", "2"]);
    let mut conn = connect(&ecmg);
    open(&mut conn, ProtocolVersion::V3);
    ecm(&mut conn, ProtocolVersion::V3, 0);
    ecm(&mut conn, ProtocolVersion::V3, 1);
    for cp in 2..4 {
        let (answers, flow) = exchange(
            &mut conn,
            &[Message::new(ProtocolVersion::V3, provision(cp))],
        );
        assert_eq!((answers, flow), (Vec::new(), Flow::Continue));
    }
    let answer = ask(
        &mut conn,
        ProtocolVersion::V3,
        ChannelTest { ecm_channel_id: 1 },
    );
    assert!(matches!(answer.body, Body::ChannelStatus(_)), "{answer:?}");
    let test = StreamTest {
        ecm_channel_id: 1,
        ecm_stream_id: 1,
    };
    let answer = ask(&mut conn, ProtocolVersion::V3, test);
    assert!(matches!(answer.body, Body::StreamStatus(_)), "{answer:?}");
    // The count is per connection.
    let mut other = connect(&ecmg);
    open(&mut other, ProtocolVersion::V3);
    ecm(&mut other, ProtocolVersion::V3, 0);
}
