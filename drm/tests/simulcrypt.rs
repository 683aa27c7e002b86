//! `drm::simulcrypt`: the ECMG⇔SCS messages (ETSI TS 103 197) encode to the documented bytes
//! and decode back from a byte stream split anywhere; malformed messages give the error_status
//! the interface prescribes; control words stay out of `Debug`; the SCS state machine sets up
//! the channel and streams, provisions the words the ECMG asked for, keeps the channel alive,
//! answers the ECMG's tests and errors, and reports missed deadlines, all under a fake clock;
//! ECM datagrams become TS packets on the ECM PID.

use std::time::{Duration, Instant};

use bytes::Bytes;
use drm::simulcrypt::*;
use playout::psi::SectionAssembler;
use playout::ts::{Pid, TsPacket};
use proptest::prelude::*;

const V3: ProtocolVersion = ProtocolVersion::V3;
const CHANNEL: u16 = 7;
const STREAM: u16 = 3;
const CAS: SuperCasId = SuperCasId(0x4AD1_0000);

fn enc(body: impl Into<Body>) -> Vec<u8> {
    encode(&Message::new(V3, body)).unwrap()
}

fn decode_all(bytes: &[u8]) -> Vec<Result<Message, SimulcryptError>> {
    let mut d = Decoder::new();
    d.push(bytes);
    d.collect()
}

fn channel_status(lead_cw: u8, cw_per_msg: u8) -> ChannelStatus {
    ChannelStatus {
        ecm_channel_id: CHANNEL,
        section_tspkt_flag: SectionTspktFlag::Sections,
        ac_delay_start_ms: None,
        ac_delay_stop_ms: None,
        delay_start_ms: -200,
        delay_stop_ms: 0,
        transition_delay_start_ms: None,
        transition_delay_stop_ms: None,
        ecm_rep_period_ms: 100,
        max_streams: 4,
        min_cp_duration: Tenths(10),
        lead_cw,
        cw_per_msg,
        max_comp_time_ms: 150,
    }
}

/// One of each message, with every optional parameter in some of them.
fn samples() -> Vec<Body> {
    let mut full_status = channel_status(1, 2);
    full_status.ac_delay_start_ms = Some(-10);
    full_status.ac_delay_stop_ms = Some(20);
    full_status.transition_delay_start_ms = Some(-30);
    full_status.transition_delay_stop_ms = Some(40);
    full_status.section_tspkt_flag = SectionTspktFlag::TsPackets;
    vec![
        ChannelSetup {
            ecm_channel_id: CHANNEL,
            super_cas_id: CAS,
        }
        .into(),
        ChannelTest {
            ecm_channel_id: CHANNEL,
        }
        .into(),
        channel_status(1, 2).into(),
        full_status.into(),
        ChannelClose {
            ecm_channel_id: CHANNEL,
        }
        .into(),
        ChannelError {
            ecm_channel_id: CHANNEL,
            error_status: vec![ErrorStatus::UNKNOWN_SUPER_CAS_ID, ErrorStatus(0x8123)],
            error_information: vec![b"no such CAS".to_vec()],
        }
        .into(),
        StreamSetup {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            nominal_cp_duration: Tenths(100),
        }
        .into(),
        StreamTest {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
        }
        .into(),
        StreamStatus {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            access_criteria_transfer_mode: true,
        }
        .into(),
        StreamCloseRequest {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
        }
        .into(),
        StreamCloseResponse {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
        }
        .into(),
        StreamError {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            error_status: vec![ErrorStatus::NOT_ENOUGH_CWS],
            error_information: vec![],
        }
        .into(),
        CwProvision {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            cp_number: 41,
            cw_encryption: Some(vec![1, 2]),
            cp_cw_combinations: vec![
                CpCwCombination {
                    cp_number: 41,
                    cw: vec![0xA1; 16],
                },
                CpCwCombination {
                    cp_number: 42,
                    cw: vec![0xA2; 8],
                },
            ],
            cp_duration: Some(Tenths(100)),
            access_criteria: Some(vec![9, 9, 9]),
        }
        .into(),
        CwProvision {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            cp_number: 0,
            cw_encryption: None,
            cp_cw_combinations: vec![CpCwCombination {
                cp_number: 0,
                cw: vec![],
            }],
            cp_duration: None,
            access_criteria: None,
        }
        .into(),
        EcmResponse {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            cp_number: 41,
            ecm_datagram: Bytes::from_static(&[0x80, 0x70, 0x01, 0xAA]),
        }
        .into(),
    ]
}

// ---- encoding and decoding ----

/// channel_setup written out by hand: header (version 3, type 0x0001, length 14), then
/// ECM_channel_id (0x000E, 2 bytes) and Super_CAS_id (0x0001, 4 bytes).
#[test]
fn channel_setup_bytes() {
    let bytes = [
        0x03, 0x00, 0x01, 0x00, 0x0E, // header
        0x00, 0x0E, 0x00, 0x02, 0x00, 0x07, // ECM_channel_id = 7
        0x00, 0x01, 0x00, 0x04, 0x4A, 0xD1, 0x00, 0x00, // Super_CAS_id
    ];
    let msg = Message::new(
        V3,
        ChannelSetup {
            ecm_channel_id: CHANNEL,
            super_cas_id: CAS,
        },
    );
    assert_eq!(encode(&msg).unwrap(), bytes);
    assert_eq!(decode_all(&bytes), vec![Ok(msg)]);
}

/// CW_provision by hand (version 2): CP_number, then each CP_CW_combination as CP(2) + CW.
#[test]
fn cw_provision_bytes() {
    let msg = Message::new(
        ProtocolVersion::V2,
        CwProvision {
            ecm_channel_id: 1,
            ecm_stream_id: 2,
            cp_number: 0x0010,
            cw_encryption: None,
            cp_cw_combinations: vec![CpCwCombination {
                cp_number: 0x0010,
                cw: vec![0xC0; 16],
            }],
            cp_duration: None,
            access_criteria: None,
        },
    );
    let mut expected = vec![0x02, 0x02, 0x01, 0x00, 6 + 6 + 6 + 22];
    expected.extend_from_slice(&[0x00, 0x0E, 0x00, 0x02, 0x00, 0x01]);
    expected.extend_from_slice(&[0x00, 0x0F, 0x00, 0x02, 0x00, 0x02]);
    expected.extend_from_slice(&[0x00, 0x12, 0x00, 0x02, 0x00, 0x10]);
    expected.extend_from_slice(&[0x00, 0x14, 0x00, 0x12, 0x00, 0x10]);
    expected.extend_from_slice(&[0xC0; 16]);
    assert_eq!(encode(&msg).unwrap(), expected);
    assert_eq!(decode_all(&expected), vec![Ok(msg)]);
}

#[test]
fn every_message_round_trips_in_both_versions() {
    for version in [ProtocolVersion::V2, ProtocolVersion::V3] {
        for body in samples() {
            let msg = Message::new(version, body);
            let bytes = encode(&msg).unwrap();
            assert_eq!(bytes[0], version.value());
            assert_eq!(
                u16::from_be_bytes([bytes[1], bytes[2]]),
                msg.body.message_type().code()
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([bytes[3], bytes[4]])),
                bytes.len() - HEADER_LEN
            );
            assert_eq!(decode_all(&bytes), vec![Ok(msg)]);
        }
    }
}

#[test]
fn partial_reads_and_several_messages_per_read() {
    let all: Vec<Message> = samples().into_iter().map(|b| Message::new(V3, b)).collect();
    let stream: Vec<u8> = all.iter().flat_map(|m| encode(m).unwrap()).collect();
    // One byte at a time.
    let mut d = Decoder::new();
    let mut got = Vec::new();
    for b in &stream {
        d.push(std::slice::from_ref(b));
        got.extend(d.by_ref().map(Result::unwrap));
    }
    assert_eq!(got, all);
    assert_eq!(d.buffered(), 0);
    // All at once.
    let got: Vec<Message> = decode_all(&stream)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, all);
}

proptest! {
    #[test]
    fn any_split_decodes_the_same(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let all: Vec<Message> = samples().into_iter().map(|b| Message::new(V3, b)).collect();
        let stream: Vec<u8> = all.iter().flat_map(|m| encode(m).unwrap()).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
        cuts.sort_unstable();
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            d.push(&stream[at..c]);
            at = c;
            got.extend(d.by_ref().map(Result::unwrap));
        }
        prop_assert_eq!(got, all);
    }

    #[test]
    fn cw_provision_round_trip(cp in any::<u16>(), cws in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..32)), 1..4), ac in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), dur in proptest::option::of(any::<u16>())) {
        let msg = Message::new(V3, CwProvision {
            ecm_channel_id: 1,
            ecm_stream_id: 2,
            cp_number: cp,
            cw_encryption: None,
            cp_cw_combinations: cws.into_iter().map(|(cp_number, cw)| CpCwCombination { cp_number, cw }).collect(),
            cp_duration: dur.map(Tenths),
            access_criteria: ac,
        });
        prop_assert_eq!(decode_all(&encode(&msg).unwrap()), vec![Ok(msg)]);
    }

    #[test]
    fn channel_status_round_trip(delay_start in any::<i16>(), delay_stop in any::<i16>(), rep in any::<u16>(), lead in any::<u8>(), per in 1u8.., comp in any::<u16>(), ts in any::<bool>(), ac in proptest::option::of(any::<i16>())) {
        let mut s = channel_status(lead, per);
        s.delay_start_ms = delay_start;
        s.delay_stop_ms = delay_stop;
        s.ecm_rep_period_ms = rep;
        s.max_comp_time_ms = comp;
        s.ac_delay_start_ms = ac;
        s.section_tspkt_flag = if ts { SectionTspktFlag::TsPackets } else { SectionTspktFlag::Sections };
        let msg = Message::new(ProtocolVersion::V2, s);
        prop_assert_eq!(decode_all(&encode(&msg).unwrap()), vec![Ok(msg)]);
    }

    #[test]
    fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut d = Decoder::with_max_message_length(100);
        for c in chunks {
            d.push(&c);
            for r in d.by_ref() {
                if let Err(e) = r {
                    let _ = e.answer(1);
                    let _ = e.to_string();
                }
            }
        }
    }
}

/// A message: header plus the given raw parameters.
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

const CH: (u16, &[u8]) = (0x000E, &[0x00, 0x07]);
const ST: (u16, &[u8]) = (0x000F, &[0x00, 0x03]);

fn first_error(bytes: &[u8]) -> SimulcryptError {
    decode_all(bytes).remove(0).unwrap_err()
}

#[test]
fn unknown_message_type_is_0x0003_and_the_stream_goes_on() {
    let mut bytes = raw(3, 0x0999, &[CH]);
    bytes.extend(enc(ChannelTest {
        ecm_channel_id: CHANNEL,
    }));
    let got = decode_all(&bytes);
    assert_eq!(got.len(), 2);
    let e = got[0].clone().unwrap_err();
    assert_eq!(
        e,
        SimulcryptError::UnknownMessageType {
            message_type: 0x0999
        }
    );
    assert_eq!(e.error_status(), ErrorStatus::UNKNOWN_MESSAGE_TYPE);
    assert!(got[1].is_ok());
    // Answered on the channel named by the caller.
    assert!(
        matches!(e.answer(5), Body::ChannelError(ChannelError { ecm_channel_id: 5, ref error_status, .. }) if error_status == &[ErrorStatus(0x0003)])
    );
}

#[test]
fn unsupported_version_is_0x0002() {
    for v in [0u8, 1, 4, 0xFF] {
        let e = first_error(&raw(v, 0x0002, &[CH]));
        assert_eq!(
            e,
            SimulcryptError::UnsupportedVersion {
                version: v,
                message_type: 0x0002
            }
        );
        assert_eq!(e.error_status(), ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION);
    }
}

#[test]
fn missing_mandatory_parameter_is_0x0010_answered_on_the_stream() {
    // CW_provision without CP_number.
    let e = first_error(&raw(3, 0x0201, &[CH, ST, (0x0014, &[0, 1, 0xAA])]));
    assert_eq!(e.error_status(), ErrorStatus::MISSING_PARAMETER);
    assert_eq!(e.parameter(), Some(ParameterType::CP_NUMBER));
    let ctx = e.context().unwrap();
    assert_eq!(ctx.message_type, MessageType::CwProvision);
    assert_eq!(
        e.answer(99),
        Body::StreamError(StreamError {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            error_status: vec![ErrorStatus::MISSING_PARAMETER],
            error_information: vec![vec![0x00, 0x12]],
        })
    );
    // channel_setup without Super_CAS_id: a channel_error.
    let e = first_error(&raw(3, 0x0001, &[CH]));
    assert_eq!(e.parameter(), Some(ParameterType::SUPER_CAS_ID));
    assert!(matches!(
        e.answer(99),
        Body::ChannelError(ChannelError {
            ecm_channel_id: CHANNEL,
            ..
        })
    ));
    // CW_provision with no CP_CW_combination at all.
    let e = first_error(&raw(3, 0x0201, &[CH, ST, (0x0012, &[0, 1])]));
    assert_eq!(e.parameter(), Some(ParameterType::CP_CW_COMBINATION));
}

#[test]
fn bad_lengths() {
    // ECM_channel_id of 3 bytes: inconsistent length, 0x000F.
    let e = first_error(&raw(3, 0x0002, &[(0x000E, &[0, 0, 7])]));
    assert!(matches!(
        e,
        SimulcryptError::InconsistentLength {
            parameter: ParameterType::ECM_CHANNEL_ID,
            length: 3,
            expected: 2,
            ..
        }
    ));
    assert_eq!(e.error_status(), ErrorStatus::INCONSISTENT_LENGTH);
    // A parameter running past message_length: invalid message, 0x0001, answered on the
    // stream whose id came before it.
    let mut bytes = raw(3, 0x0102, &[CH, ST]);
    bytes.extend_from_slice(&[0x00, 0x19, 0x00, 0x09, 0x01]);
    let len = (bytes.len() - HEADER_LEN) as u16;
    bytes[3..5].copy_from_slice(&len.to_be_bytes());
    let e = first_error(&bytes);
    assert!(
        matches!(
            e,
            SimulcryptError::Overrun {
                parameter: ParameterType::ECM_ID,
                offset: 17,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.error_status(), ErrorStatus::INVALID_MESSAGE);
    assert!(matches!(
        e.answer(0),
        Body::StreamError(StreamError {
            ecm_stream_id: STREAM,
            ..
        })
    ));
}

#[test]
fn too_long_is_0x0004_and_skipped_even_across_reads() {
    let mut d = Decoder::with_max_message_length(64);
    let big = enc(EcmResponse {
        ecm_channel_id: CHANNEL,
        ecm_stream_id: STREAM,
        cp_number: 1,
        ecm_datagram: Bytes::from(vec![0u8; 200]),
    });
    let next = enc(ChannelTest {
        ecm_channel_id: CHANNEL,
    });
    d.push(&big[..10]);
    let e = d.next().unwrap().unwrap_err();
    assert_eq!(e.error_status(), ErrorStatus::MESSAGE_TOO_LONG);
    assert!(matches!(
        e,
        SimulcryptError::MessageTooLong {
            message_type: 0x0202,
            max: 64,
            ..
        }
    ));
    assert!(d.next().is_none());
    d.push(&big[10..100]);
    assert!(d.next().is_none());
    let mut rest = big[100..].to_vec();
    rest.extend_from_slice(&next);
    d.push(&rest);
    assert!(matches!(
        d.next(),
        Some(Ok(Message {
            body: Body::ChannelTest(_),
            ..
        }))
    ));
    assert!(d.next().is_none());
}

#[test]
fn unknown_parameters() {
    // Defined range, unknown: 0x000E.
    let e = first_error(&raw(3, 0x0002, &[CH, (0x0050, &[1])]));
    assert_eq!(e.error_status(), ErrorStatus::UNKNOWN_PARAMETER_TYPE);
    assert_eq!(e.parameter(), Some(ParameterType(0x0050)));
    // User defined: skipped. A defined parameter the message does not use: skipped.
    let got = decode_all(&raw(
        3,
        0x0002,
        &[(0x8001, &[1, 2, 3]), CH, (0x0012, &[0, 1])],
    ));
    assert_eq!(
        got,
        vec![Ok(Message::new(
            V3,
            ChannelTest {
                ecm_channel_id: CHANNEL
            }
        ))]
    );
}

#[test]
fn invalid_and_repeated_values() {
    let mut params: Vec<(u16, &[u8])> = vec![
        CH,
        (0x0002, &[2]),
        (0x0003, &[0, 0]),
        (0x0004, &[0, 0]),
        (0x0007, &[0, 100]),
        (0x0008, &[0, 1]),
        (0x0009, &[0, 10]),
        (0x000A, &[1]),
        (0x000B, &[2]),
        (0x000C, &[0, 100]),
    ];
    let e = first_error(&raw(3, 0x0003, &params));
    assert_eq!(e.error_status(), ErrorStatus::INVALID_VALUE);
    assert_eq!(e.parameter(), Some(ParameterType::SECTION_TSPKT_FLAG));
    params[1] = (0x0002, &[0]);
    assert!(decode_all(&raw(3, 0x0003, &params))[0].is_ok());
    params.push((0x000A, &[1]));
    let e = first_error(&raw(3, 0x0003, &params));
    assert!(matches!(
        e,
        SimulcryptError::RepeatedParameter {
            parameter: ParameterType::LEAD_CW,
            ..
        }
    ));
    assert_eq!(e.error_status(), ErrorStatus::INVALID_MESSAGE);
}

#[test]
fn control_words_stay_out_of_debug() {
    let cw: Vec<u8> = vec![
        0x5A, 0xC3, 0x17, 0x99, 0x42, 0x24, 0x66, 0x81, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88,
    ];
    let msg = Message::new(
        V3,
        CwProvision {
            ecm_channel_id: 1,
            ecm_stream_id: 2,
            cp_number: 3,
            cw_encryption: None,
            cp_cw_combinations: vec![CpCwCombination {
                cp_number: 3,
                cw: cw.clone(),
            }],
            cp_duration: None,
            access_criteria: None,
        },
    );
    for text in [format!("{msg:?}"), format!("{msg:#?}")] {
        assert!(text.contains("cw_len: 16"), "{text}");
        for b in &cw {
            assert!(
                !text.contains(&format!("{b},")) && !text.contains(&format!("{b}\n")),
                "{b} in {text}"
            );
        }
        assert!(!text.contains("90,") && !text.contains("5a") && !text.contains("5A"));
    }
}

// ---- the SCS state machine ----

struct Harness {
    scs: Scs,
    now: Instant,
}

impl Harness {
    fn new(config: ScsConfig) -> Harness {
        Harness {
            scs: Scs::new(config).unwrap(),
            // The fake clock's origin; after this, time only moves by the offsets of `at`.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.now + Duration::from_millis(ms)
    }

    /// Everything the SCS wants to send, decoded.
    fn sent(&mut self) -> Vec<Body> {
        let mut out = Vec::new();
        while let Some(bytes) = self.scs.poll_transmit() {
            let mut msgs = decode_all(&bytes);
            assert_eq!(msgs.len(), 1);
            let msg = msgs.remove(0).unwrap();
            assert_eq!(msg.version, V3);
            out.push(msg.body);
        }
        out
    }

    fn events(&mut self) -> Vec<ScsEvent> {
        std::iter::from_fn(|| self.scs.poll_event()).collect()
    }

    fn ecmg(&mut self, ms: u64, body: impl Into<Body>) {
        let bytes = enc(body);
        self.scs.handle_bytes(self.at(ms), &bytes);
    }

    /// Channel and stream set up with the given channel_status and transfer mode.
    fn ready(config: ScsConfig, status: ChannelStatus, ac_every_time: bool) -> Harness {
        let mut h = Harness::new(config);
        h.scs.handle_connected(h.now);
        assert_eq!(
            h.sent(),
            vec![Body::ChannelSetup(ChannelSetup {
                ecm_channel_id: CHANNEL,
                super_cas_id: CAS
            })]
        );
        h.ecmg(1, status.clone());
        assert_eq!(h.events(), vec![ScsEvent::ChannelReady(status)]);
        let setup = StreamSetup {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            nominal_cp_duration: Tenths(100),
        };
        assert_eq!(h.sent(), vec![Body::StreamSetup(setup)]);
        assert!(!h.scs.is_stream_ready(STREAM));
        let st = StreamStatus {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            access_criteria_transfer_mode: ac_every_time,
        };
        h.ecmg(2, st.clone());
        assert_eq!(h.events(), vec![ScsEvent::StreamReady(st)]);
        assert!(h.scs.is_stream_ready(STREAM));
        h
    }
}

fn config() -> ScsConfig {
    let mut c = ScsConfig::new(
        CAS,
        CHANNEL,
        vec![StreamConfig {
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            nominal_cp_duration: Tenths(100),
            access_criteria: vec![0xAC, 0x01],
        }],
    );
    c.keepalive = Duration::from_secs(5);
    c.response_timeout = Duration::from_secs(1);
    c
}

fn cw(cp: u16) -> [u8; 16] {
    [cp as u8; 16]
}

fn provisioned(body: &Body) -> (u16, Vec<u16>, Option<Vec<u8>>) {
    match body {
        Body::CwProvision(p) => {
            for c in &p.cp_cw_combinations {
                assert_eq!(c.cw, cw(c.cp_number));
            }
            (
                p.cp_number,
                p.cp_cw_combinations.iter().map(|c| c.cp_number).collect(),
                p.access_criteria.clone(),
            )
        }
        other => panic!("expected CW_provision, got {other:?}"),
    }
}

#[test]
fn configuration_is_checked() {
    let mut c = config();
    c.streams.push(c.streams[0].clone());
    assert!(matches!(Scs::new(c), Err(ScsError::Config { .. })));
    let mut c = config();
    c.streams.clear();
    assert!(matches!(Scs::new(c), Err(ScsError::Config { .. })));
}

#[test]
fn lead_cw_1_two_per_message_sends_current_and_next() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    for cp in 10..15u16 {
        let cws = [(cp, cw(cp)), (cp + 1, cw(cp + 1)), (cp + 2, cw(cp + 2))];
        h.scs
            .provision(h.at(100), STREAM, cp, &cws, Some(Tenths(100)))
            .unwrap();
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        let (number, cps, ac) = provisioned(&sent[0]);
        assert_eq!((number, cps), (cp, vec![cp, cp + 1]));
        // access_criteria_transfer_mode 0: only the first time.
        assert_eq!(ac, (cp == 10).then(|| vec![0xAC, 0x01]));
    }
    // After a change, once more.
    h.scs.set_access_criteria(STREAM, vec![0xAC, 0x02]).unwrap();
    h.scs
        .provision(h.at(100), STREAM, 15, &[(15, cw(15)), (16, cw(16))], None)
        .unwrap();
    assert_eq!(provisioned(&h.sent()[0]).2, Some(vec![0xAC, 0x02]));
    h.scs
        .provision(h.at(100), STREAM, 16, &[(16, cw(16)), (17, cw(17))], None)
        .unwrap();
    assert_eq!(provisioned(&h.sent()[0]).2, None);
}

#[test]
fn other_lead_and_count_combinations() {
    // lead_CW 0, CW_per_msg 2: the previous and the current word.
    let mut h = Harness::ready(config(), channel_status(0, 2), true);
    h.scs
        .provision(
            h.at(10),
            STREAM,
            0,
            &[(0xFFFF, cw(0xFFFF)), (0, cw(0))],
            None,
        )
        .unwrap();
    let (_, cps, ac) = provisioned(&h.sent()[0]);
    assert_eq!(cps, vec![0xFFFF, 0]);
    // access_criteria_transfer_mode 1: every time.
    assert_eq!(ac, Some(vec![0xAC, 0x01]));
    h.scs
        .provision(h.at(10), STREAM, 1, &[(0, cw(0)), (1, cw(1))], None)
        .unwrap();
    assert_eq!(provisioned(&h.sent()[0]).2, Some(vec![0xAC, 0x01]));
    // lead_CW 1, CW_per_msg 1: the next word only.
    let mut h = Harness::ready(config(), channel_status(1, 1), false);
    h.scs
        .provision(h.at(10), STREAM, 5, &[(5, cw(5)), (6, cw(6))], None)
        .unwrap();
    assert_eq!(provisioned(&h.sent()[0]).1, vec![6]);
}

#[test]
fn provision_refused_without_the_words_or_before_ready() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.scs
            .provision(h.now, STREAM, 1, &[(1, cw(1)), (2, cw(2))], None),
        Err(ScsError::NotReady {
            ecm_stream_id: STREAM
        })
    );
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    assert_eq!(
        h.scs.provision(h.now, STREAM, 1, &[(1, cw(1))], None),
        Err(ScsError::MissingCw {
            ecm_stream_id: STREAM,
            cp_number: 2
        })
    );
    assert_eq!(
        h.scs.provision(h.now, 99, 1, &[], None),
        Err(ScsError::UnknownStream { ecm_stream_id: 99 })
    );
    assert!(h.sent().is_empty());
}

#[test]
fn ecm_response_becomes_an_event() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs
        .provision(h.at(10), STREAM, 4, &[(4, cw(4)), (5, cw(5))], None)
        .unwrap();
    h.sent();
    let section = Bytes::from(drm::ecm::build_ecm(
        &[1; 16],
        drm::ecm::Wrap::Aes128,
        4,
        &cw(4),
        &cw(5),
    ));
    h.ecmg(
        50,
        EcmResponse {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            cp_number: 4,
            ecm_datagram: section.clone(),
        },
    );
    assert_eq!(
        h.events(),
        vec![ScsEvent::Ecm {
            ecm_stream_id: STREAM,
            cp_number: 4,
            datagram: section,
            format: SectionTspktFlag::Sections,
        }]
    );
    // Answered: no deadline left but the keepalive.
    assert_eq!(h.scs.poll_timeout(), Some(h.at(1 + 5000)));
    assert_eq!(h.scs.stats().ecms, 1);
    // A datagram that is not a whole section: stream_error 0x0011 and an error event.
    h.ecmg(
        60,
        EcmResponse {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            cp_number: 5,
            ecm_datagram: Bytes::from_static(&[0x80, 0x70, 0x30, 1, 2]),
        },
    );
    assert!(matches!(
        &h.events()[..],
        [ScsEvent::Error(ScsError::Decode(
            SimulcryptError::BadDatagram { .. }
        ))]
    ));
    assert!(
        matches!(&h.sent()[..], [Body::StreamError(StreamError { ecm_stream_id: STREAM, error_status, .. })] if error_status == &[ErrorStatus::INVALID_VALUE])
    );
}

#[test]
fn keepalive_and_its_answer() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    // channel_status arrived at +1 ms: first test 5 s later.
    assert_eq!(h.scs.poll_timeout(), Some(h.at(5001)));
    h.scs.handle_timeout(h.at(5000));
    assert!(h.sent().is_empty());
    h.scs.handle_timeout(h.at(5001));
    assert_eq!(
        h.sent(),
        vec![Body::ChannelTest(ChannelTest {
            ecm_channel_id: CHANNEL
        })]
    );
    // The answer is due within the response timeout.
    assert_eq!(h.scs.poll_timeout(), Some(h.at(6001)));
    h.ecmg(5100, channel_status(1, 2));
    assert!(h.events().is_empty());
    assert_eq!(h.scs.poll_timeout(), Some(h.at(10_001)));
    h.scs.handle_timeout(h.at(10_001));
    assert_eq!(h.sent().len(), 1);
    let s = h.scs.stats();
    assert_eq!((s.channel_tests_sent, s.channel_tests_answered), (2, 1));
}

#[test]
fn unanswered_keepalive_fails_the_channel() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs.handle_timeout(h.at(5001));
    h.sent();
    h.scs.handle_timeout(h.at(6001));
    assert_eq!(
        h.events(),
        vec![ScsEvent::Error(ScsError::Timeout {
            request: MessageType::ChannelTest,
            ecm_stream_id: None,
            cp_number: None
        })]
    );
    assert_eq!(h.scs.poll_timeout(), None);
    assert!(!h.scs.is_stream_ready(STREAM));
    assert!(h
        .scs
        .provision(h.at(6002), STREAM, 1, &[(1, cw(1)), (2, cw(2))], None)
        .is_err());
    // The caller reconnects.
    h.scs.handle_disconnected(h.at(6003));
    assert_eq!(h.events(), vec![ScsEvent::Closed]);
    h.scs.handle_connected(h.at(7000));
    assert!(matches!(&h.sent()[..], [Body::ChannelSetup(_)]));
}

#[test]
fn unanswered_channel_setup_fails() {
    let mut h = Harness::new(config());
    h.scs.handle_connected(h.now);
    h.sent();
    assert_eq!(h.scs.poll_timeout(), Some(h.at(1000)));
    h.scs.handle_timeout(h.at(1000));
    assert!(matches!(
        &h.events()[..],
        [ScsEvent::Error(ScsError::Timeout {
            request: MessageType::ChannelSetup,
            ..
        })]
    ));
    assert_eq!(h.scs.poll_timeout(), None);
}

#[test]
fn ecm_deadline_is_max_comp_time_and_does_not_fail_the_channel() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs
        .provision(h.at(100), STREAM, 1, &[(1, cw(1)), (2, cw(2))], None)
        .unwrap();
    assert_eq!(h.scs.poll_timeout(), Some(h.at(250)));
    h.scs.handle_timeout(h.at(250));
    assert_eq!(
        h.events(),
        vec![ScsEvent::Error(ScsError::Timeout {
            request: MessageType::CwProvision,
            ecm_stream_id: Some(STREAM),
            cp_number: Some(1)
        })]
    );
    assert!(h.scs.is_stream_ready(STREAM));
    // A configured ECM timeout overrides max_comp_time.
    let mut c = config();
    c.ecm_timeout = Some(Duration::from_millis(40));
    let mut h = Harness::ready(c, channel_status(1, 2), false);
    h.scs
        .provision(h.at(100), STREAM, 1, &[(1, cw(1)), (2, cw(2))], None)
        .unwrap();
    assert_eq!(h.scs.poll_timeout(), Some(h.at(140)));
}

#[test]
fn ecmg_tests_are_answered_with_its_last_status() {
    let mut h = Harness::ready(config(), channel_status(1, 2), true);
    h.ecmg(
        10,
        ChannelTest {
            ecm_channel_id: CHANNEL,
        },
    );
    assert_eq!(h.sent(), vec![Body::ChannelStatus(channel_status(1, 2))]);
    h.ecmg(
        11,
        StreamTest {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
        },
    );
    assert_eq!(
        h.sent(),
        vec![Body::StreamStatus(StreamStatus {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 0x0102,
            access_criteria_transfer_mode: true
        })]
    );
    assert!(h.events().is_empty());
}

#[test]
fn wrong_ids_and_garbage_are_answered_with_errors() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    // Another channel: 0x0006.
    h.ecmg(10, ChannelTest { ecm_channel_id: 99 });
    assert!(
        matches!(&h.sent()[..], [Body::ChannelError(ChannelError { ecm_channel_id: 99, error_status, .. })] if error_status == &[ErrorStatus::UNKNOWN_ECM_CHANNEL_ID])
    );
    assert!(matches!(
        &h.events()[..],
        [ScsEvent::Error(ScsError::Unexpected { .. })]
    ));
    // Another stream: 0x0007.
    h.ecmg(
        11,
        StreamTest {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: 42,
        },
    );
    assert!(
        matches!(&h.sent()[..], [Body::StreamError(StreamError { ecm_stream_id: 42, error_status, .. })] if error_status == &[ErrorStatus::UNKNOWN_ECM_STREAM_ID])
    );
    h.events();
    // An unknown message type: 0x0003.
    h.scs.handle_bytes(h.at(12), &raw(3, 0x0777, &[CH]));
    assert!(
        matches!(&h.sent()[..], [Body::ChannelError(ChannelError { ecm_channel_id: CHANNEL, error_status, .. })] if error_status == &[ErrorStatus::UNKNOWN_MESSAGE_TYPE])
    );
    assert!(matches!(
        &h.events()[..],
        [ScsEvent::Error(ScsError::Decode(
            SimulcryptError::UnknownMessageType {
                message_type: 0x0777
            }
        ))]
    ));
    // A message only an SCS sends: invalid message.
    h.ecmg(
        13,
        StreamSetup {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            ecm_id: 1,
            nominal_cp_duration: Tenths(1),
        },
    );
    assert!(
        matches!(&h.sent()[..], [Body::StreamError(StreamError { error_status, .. })] if error_status == &[ErrorStatus::INVALID_MESSAGE])
    );
    h.events();
    // The channel is still fine.
    assert!(h.scs.is_stream_ready(STREAM));
}

#[test]
fn ecmg_errors_are_reported() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs
        .provision(h.at(10), STREAM, 1, &[(1, cw(1)), (2, cw(2))], None)
        .unwrap();
    h.sent();
    h.ecmg(
        20,
        StreamError {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
            error_status: vec![ErrorStatus::NOT_ENOUGH_CWS],
            error_information: vec![],
        },
    );
    assert_eq!(
        h.events(),
        vec![ScsEvent::Error(ScsError::Stream {
            ecm_stream_id: STREAM,
            error_status: vec![ErrorStatus::NOT_ENOUGH_CWS]
        })]
    );
    // The stream_error answered the CW_provision: only the keepalive is due.
    assert_eq!(h.scs.poll_timeout(), Some(h.at(5001)));
    // channel_error in answer to channel_setup fails the channel (no version fallback).
    let mut h = Harness::new(ScsConfig {
        version_fallback: false,
        ..config()
    });
    h.scs.handle_connected(h.now);
    h.ecmg(
        5,
        ChannelError {
            ecm_channel_id: CHANNEL,
            error_status: vec![ErrorStatus::UNKNOWN_SUPER_CAS_ID],
            error_information: vec![],
        },
    );
    assert!(
        matches!(&h.events()[..], [ScsEvent::Error(ScsError::Channel { error_status })] if error_status == &[ErrorStatus::UNKNOWN_SUPER_CAS_ID])
    );
    assert_eq!(h.scs.poll_timeout(), None);
}

#[test]
fn close_closes_streams_then_the_channel() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs.close(h.at(10));
    assert_eq!(
        h.sent(),
        vec![Body::StreamCloseRequest(StreamCloseRequest {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM
        })]
    );
    assert_eq!(h.scs.poll_timeout(), Some(h.at(1010)));
    h.ecmg(
        20,
        StreamCloseResponse {
            ecm_channel_id: CHANNEL,
            ecm_stream_id: STREAM,
        },
    );
    assert_eq!(
        h.sent(),
        vec![Body::ChannelClose(ChannelClose {
            ecm_channel_id: CHANNEL
        })]
    );
    assert_eq!(
        h.events(),
        vec![
            ScsEvent::StreamClosed {
                ecm_stream_id: STREAM
            },
            ScsEvent::Closed
        ]
    );
    assert_eq!(h.scs.poll_timeout(), None);
    h.scs.handle_disconnected(h.at(30));
    assert!(h.events().is_empty());
}

#[test]
fn close_goes_on_when_a_stream_does_not_answer() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    h.scs.close(h.at(10));
    assert_eq!(h.sent().len(), 1);
    h.scs.handle_timeout(h.at(1010));
    assert!(matches!(
        &h.events()[..],
        [
            ScsEvent::Error(ScsError::Timeout {
                request: MessageType::StreamCloseRequest,
                ..
            }),
            ScsEvent::Closed
        ]
    ));
    assert!(matches!(&h.sent()[..], [Body::ChannelClose(_)]));
}

#[test]
fn queued_control_words_stay_out_of_debug() {
    let mut h = Harness::ready(config(), channel_status(1, 2), false);
    let secret = [0x5Au8; 16];
    h.scs
        .provision(h.at(10), STREAM, 1, &[(1, secret), (2, secret)], None)
        .unwrap();
    let text = format!("{:?} {:#?}", h.scs, h.scs);
    assert!(text.contains("queued_messages: 1"), "{text}");
    assert!(
        !text.contains("90") && !text.contains("5a") && !text.contains("5A"),
        "{text}"
    );
    let mut d = Decoder::new();
    let bytes = h.scs.poll_transmit().unwrap();
    d.push(&bytes[..bytes.len() - 1]);
    assert!(d.next().is_none());
    let text = format!("{d:?}");
    assert!(
        text.contains(&format!("buffered: {}", bytes.len() - 1)),
        "{text}"
    );
    assert!(!text.contains("90"), "{text}");
}

// ---- ECM datagrams to packets ----

#[test]
fn sections_are_packetised_on_the_ecm_pid() {
    let pid = Pid::new(0x1FF0).unwrap();
    let small = drm::ecm::build_ecm(&[2; 16], drm::ecm::Wrap::Sm4, 8, &cw(8), &cw(9));
    // A second, longer section (two packets) back to back with the first.
    let mut long = vec![0x81, 0x70 | 1, 0x2C];
    long.extend(std::iter::repeat_n(0x33, 0x12C));
    let mut datagram = small.clone();
    datagram.extend_from_slice(&long);
    let mut cc = 14;
    let packets = ecm_packets(&datagram, SectionTspktFlag::Sections, pid, &mut cc).unwrap();
    assert_eq!(packets.len(), 3);
    assert_eq!(cc, 1);
    let mut asm = SectionAssembler::default();
    let mut got = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let p = TsPacket::new(Bytes::copy_from_slice(p)).unwrap();
        assert_eq!(p.pid(), pid);
        assert_eq!(p.cc(), (14 + i as u8) & 0x0F);
        assert_eq!(p.scrambling(), 0);
        asm.push(&p, true, |s| got.push(s.to_vec()));
    }
    assert_eq!(got, vec![small, long]);
}

#[test]
fn ts_packets_get_the_pid_and_counters() {
    let pid = Pid::new(0x0101).unwrap();
    let mut datagram = vec![0xFFu8; 2 * 188];
    for (i, p) in datagram.chunks_exact_mut(188).enumerate() {
        p[..5].copy_from_slice(&[0x47, 0x40 | 0x1F, 0xFE, 0x10 | (i as u8 * 5), 0]);
    }
    let mut cc = 15;
    let packets = ecm_packets(&datagram, SectionTspktFlag::TsPackets, pid, &mut cc).unwrap();
    assert_eq!(packets.len(), 2);
    assert_eq!(&packets[0][..4], &[0x47, 0x41, 0x01, 0x1F]);
    assert_eq!(&packets[1][..4], &[0x47, 0x41, 0x01, 0x10]);
    assert_eq!(&packets[0][4..], &datagram[4..188]);
    assert_eq!(cc, 1);
}

#[test]
fn bad_datagrams_are_refused() {
    let pid = Pid::new(0x100).unwrap();
    let mut cc = 0;
    for (d, f) in [
        (vec![], SectionTspktFlag::Sections),
        (vec![0x80, 0x70], SectionTspktFlag::Sections),
        (vec![0x80, 0x70, 0x05, 1, 2], SectionTspktFlag::Sections),
        (vec![0xFF, 0xFF, 0xFF], SectionTspktFlag::Sections),
        (vec![0x47; 187], SectionTspktFlag::TsPackets),
        (vec![0x46; 188], SectionTspktFlag::TsPackets),
    ] {
        let e = ecm_packets(&d, f, pid, &mut cc).unwrap_err();
        assert_eq!(e.error_status(), ErrorStatus::INVALID_VALUE, "{d:?}");
    }
    assert_eq!(cc, 0);
}

/// Everything the SCS wants to send, with its version.
fn sent_versions(scs: &mut Scs) -> Vec<(ProtocolVersion, MessageType)> {
    std::iter::from_fn(|| scs.poll_transmit())
        .flat_map(|b| decode_all(&b))
        .map(|m| {
            let m = m.unwrap();
            (m.version, m.body.message_type())
        })
        .collect()
}

/// `protocol_version = "auto"`: a version-2 ECMG refuses channel_setup in version 3; the SCS
/// sends it again in version 2 at once, once, and keeps version 2 for later connections once
/// the channel opened. An ECMG that drops the connection instead gets the other version at the
/// next connection; one that answers in version 2 is answered in version 2.
#[test]
fn the_version_falls_back_from_3_to_2() {
    let mut h = Harness::new(config());
    h.scs.handle_connected(h.now);
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(V3, MessageType::ChannelSetup)]
    );
    let refuse = |version| {
        encode(&Message::new(
            version,
            ChannelError {
                ecm_channel_id: CHANNEL,
                error_status: vec![ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION],
                error_information: vec![],
            },
        ))
        .unwrap()
    };
    h.scs.handle_bytes(h.at(1), &refuse(ProtocolVersion::V2));
    let events = h.events();
    assert!(
        events.contains(&ScsEvent::VersionChanged {
            from: V3,
            to: ProtocolVersion::V2
        }),
        "{events:?}"
    );
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(ProtocolVersion::V2, MessageType::ChannelSetup)]
    );
    assert_eq!(h.scs.version(), ProtocolVersion::V2);
    // Refused again: no third try on this connection; the channel failed.
    assert!(!h.scs.is_failed());
    h.scs.handle_bytes(h.at(2), &refuse(ProtocolVersion::V2));
    assert!(sent_versions(&mut h.scs).is_empty());
    assert_eq!(h.scs.poll_timeout(), None);
    assert!(h.scs.is_failed(), "the caller is to reconnect");
    // An ECMG that hangs up after refusing: version 2 stays for the next connection.
    let mut h2 = Harness::new(config());
    h2.scs.handle_connected(h2.now);
    h2.scs.handle_bytes(h2.at(1), &refuse(ProtocolVersion::V2));
    h2.scs.handle_disconnected(h2.at(2));
    assert_eq!(h2.scs.version(), ProtocolVersion::V2);
    // Next connection: version 2 opens the channel and stays.
    h.scs.handle_connected(h.at(1000));
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(ProtocolVersion::V2, MessageType::ChannelSetup)]
    );
    let status = encode(&Message::new(ProtocolVersion::V2, channel_status(1, 2))).unwrap();
    h.scs.handle_bytes(h.at(1001), &status);
    assert!(h.scs.channel_status().is_some());
    h.scs.handle_disconnected(h.at(1002));
    h.scs.handle_connected(h.at(2000));
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(ProtocolVersion::V2, MessageType::ChannelSetup)]
    );

    // An ECMG that drops a version-3 connection without a word.
    let mut h = Harness::new(config());
    h.scs.handle_connected(h.now);
    let _ = sent_versions(&mut h.scs);
    h.scs.handle_disconnected(h.at(5));
    h.scs.handle_connected(h.at(1000));
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(ProtocolVersion::V2, MessageType::ChannelSetup)]
    );

    // An ECMG that answers version 3 in version 2: the SCS goes on in version 2.
    let mut h = Harness::new(config());
    h.scs.handle_connected(h.now);
    let _ = sent_versions(&mut h.scs);
    h.scs.handle_bytes(h.at(1), &status);
    assert_eq!(h.scs.version(), ProtocolVersion::V2);
    assert!(sent_versions(&mut h.scs)
        .iter()
        .all(|(v, t)| *v == ProtocolVersion::V2 && *t == MessageType::StreamSetup));

    // A fixed version never changes.
    let mut h = Harness::new(ScsConfig {
        version_fallback: false,
        ..config()
    });
    h.scs.handle_connected(h.now);
    let _ = sent_versions(&mut h.scs);
    h.scs.handle_bytes(h.at(1), &refuse(ProtocolVersion::V2));
    assert!(sent_versions(&mut h.scs).is_empty());
    h.scs.handle_connected(h.at(1000));
    assert_eq!(
        sent_versions(&mut h.scs),
        vec![(V3, MessageType::ChannelSetup)]
    );
}
