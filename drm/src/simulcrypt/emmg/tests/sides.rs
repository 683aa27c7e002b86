//! Both ends: a whole conversation in memory, and each refusal with its error_status.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use playout::psi::packetize_section;
use playout::ts::Pid;

use super::*;

const V2: ProtocolVersion = ProtocolVersion::V2;
const V3: ProtocolVersion = ProtocolVersion::V3;

fn decode_sent(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<EmmMessage> {
    let mut d = EmmDecoder::new();
    for c in chunks {
        d.push(&c);
    }
    d.map(Result::unwrap).collect()
}

fn mux_sent(m: &mut MuxSide) -> Vec<EmmMessage> {
    decode_sent(std::iter::from_fn(|| m.poll_transmit()))
}

fn emmg_sent(e: &mut EmmgSide) -> Vec<EmmMessage> {
    decode_sent(std::iter::from_fn(|| e.poll_transmit()))
}

fn mux_events(m: &mut MuxSide) -> Vec<MuxSideEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn emmg_events(e: &mut EmmgSide) -> Vec<EmmgSideEvent> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// Moves bytes both ways until neither side has anything to say; returns the protocol
/// versions of what the MUX sent.
fn pump(now: Instant, emmg: &mut EmmgSide, mux: &mut MuxSide) -> Vec<u8> {
    let mut versions = Vec::new();
    loop {
        let mut moved = false;
        while let Some(b) = emmg.poll_transmit() {
            mux.handle_bytes(now, &b);
            moved = true;
        }
        while let Some(b) = mux.poll_transmit() {
            versions.push(b[0]);
            emmg.handle_bytes(now, &b);
            moved = true;
        }
        if !moved {
            return versions;
        }
    }
}

fn mux_config(data_id: Option<u16>) -> MuxSideConfig {
    MuxSideConfig {
        data_id,
        ..MuxSideConfig::new(CLIENT, 300)
    }
}

/// A MUX side with channel CHANNEL (sections) and stream STREAM open.
fn open_mux(now: Instant, config: MuxSideConfig) -> MuxSide {
    let mut mux = MuxSide::new(config).unwrap();
    for body in [samples().remove(0), samples().remove(5)] {
        mux.handle_bytes(now, &enc(V3, body));
    }
    assert_eq!(mux_sent(&mut mux).len(), 2);
    assert_eq!(mux_events(&mut mux).len(), 2);
    mux
}

/// Two test sections as the channel's datagrams: as they are, or as TS packets.
fn datagrams(format: SectionTspktFlag) -> Vec<Vec<u8>> {
    let sections = [
        pattern_section(10, 184).unwrap(),
        pattern_section(11, 400).unwrap(),
    ];
    match format {
        SectionTspktFlag::Sections => sections.to_vec(),
        SectionTspktFlag::TsPackets => sections
            .iter()
            .map(|s| {
                let mut out = BytesMut::new();
                packetize_section(Pid::NULL, s, 0, &mut out);
                out.to_vec()
            })
            .collect(),
    }
}

#[test]
fn conversation_end_to_end() {
    for (version, format) in [
        (V2, SectionTspktFlag::TsPackets),
        (V3, SectionTspktFlag::Sections),
    ] {
        let t0 = origin();
        let mut mux = MuxSide::new(mux_config(Some(DATA_ID))).unwrap();
        let mut config = EmmgSideConfig::new(CLIENT, CHANNEL, STREAM, DATA_ID);
        config.version = version;
        config.format = format;
        config.bandwidth_kbps = Some(500);
        let mut emmg = EmmgSide::new(config);
        emmg.handle_connected(t0);
        let versions = pump(t0, &mut emmg, &mut mux);
        // channel_status, stream_status, stream_BW_allocation, in the EMMG's version.
        assert_eq!(versions, vec![version.value(); 3]);
        assert_eq!(
            mux_events(&mut mux),
            vec![
                MuxSideEvent::ChannelOpen {
                    data_channel_id: CHANNEL,
                    format
                },
                MuxSideEvent::StreamOpen {
                    data_stream_id: STREAM,
                    data_id: DATA_ID,
                    data_type: DataType::Emm
                },
                MuxSideEvent::Bandwidth {
                    data_stream_id: STREAM,
                    kbps: 300
                },
            ]
        );
        assert_eq!(
            emmg_events(&mut emmg),
            vec![
                EmmgSideEvent::ChannelOpen,
                EmmgSideEvent::StreamOpen,
                EmmgSideEvent::Ready { kbps: Some(300) }
            ]
        );
        assert!(emmg.is_ready());
        assert_eq!(mux.bandwidth_kbps(STREAM), Some(300));

        // Data over TCP.
        let data = datagrams(format);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let t1 = t0 + Duration::from_secs(1);
        let bytes = emmg.data_provision(&refs).unwrap();
        assert_eq!(bytes[0], version.value());
        mux.handle_bytes(t1, &bytes);
        let expected = MuxSideEvent::Data {
            data_stream_id: STREAM,
            data_id: DATA_ID,
            datagrams: data.iter().map(|d| Bytes::from(d.clone())).collect(),
            format,
        };
        assert_eq!(mux_events(&mut mux), vec![expected.clone()]);
        assert!(mux.poll_transmit().is_none());

        // The same by UDP.
        let bytes = Bytes::from(emmg.data_provision(&refs).unwrap());
        for msg in decode_emm_datagram(&bytes) {
            mux.handle_udp(t1, msg.unwrap()).unwrap();
        }
        assert_eq!(mux_events(&mut mux), vec![expected]);

        // Keep-alive: the EMMG tests the channel, the MUX answers, nothing changes.
        assert_eq!(emmg.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        let t10 = t0 + Duration::from_secs(10);
        emmg.handle_timeout(t10);
        assert_eq!(pump(t10, &mut emmg, &mut mux), vec![version.value()]);
        assert!(emmg_events(&mut emmg).is_empty());
        assert!(mux_events(&mut mux).is_empty());
        assert!(emmg.is_ready());
        assert_eq!(mux.poll_timeout(), Some(t10 + DEFAULT_KEEPALIVE_TIMEOUT));

        // Close.
        emmg.close(t10);
        pump(t10, &mut emmg, &mut mux);
        assert_eq!(
            emmg_events(&mut emmg),
            vec![EmmgSideEvent::StreamClosed, EmmgSideEvent::Closed]
        );
        assert_eq!(
            mux_events(&mut mux),
            vec![
                MuxSideEvent::StreamClosed {
                    data_stream_id: STREAM
                },
                MuxSideEvent::Closed
            ]
        );
        assert!(emmg.is_idle() && mux.is_closed());
        assert_eq!(emmg.poll_timeout(), None);
        assert_eq!(mux.poll_timeout(), None);

        let bytes: u64 = data.iter().map(|d| d.len() as u64).sum();
        let ms = mux.stats();
        assert_eq!((ms.datagrams, ms.data_bytes, ms.errors), (4, 2 * bytes, 0));
        assert_eq!(ms.udp_messages, 1);
        let es = emmg.stats();
        assert_eq!(
            (es.data_provisions, es.datagrams, es.data_bytes),
            (2, 4, 2 * bytes)
        );
        assert_eq!(es.errors, 0);
    }
}

fn bw_request(kbps: Option<u16>) -> EmmBody {
    StreamBwRequest {
        client_id: CLIENT,
        data_channel_id: CHANNEL,
        data_stream_id: STREAM,
        bandwidth_kbps: kbps,
    }
    .into()
}

#[test]
fn bandwidth_is_capped() {
    let t0 = origin();
    let mut mux = open_mux(t0, mux_config(None));
    for (asked, given) in [
        (Some(500), 300),
        (Some(100), 100),
        (None, 300),
        (Some(300), 300),
    ] {
        mux.handle_bytes(t0, &enc(V3, bw_request(asked)));
        let sent = mux_sent(&mut mux);
        let [EmmMessage {
            body: EmmBody::StreamBwAllocation(a),
            ..
        }] = &sent[..]
        else {
            panic!("{sent:?}")
        };
        assert_eq!(a.bandwidth_kbps, Some(given), "asked {asked:?}");
        assert_eq!(
            mux_events(&mut mux),
            vec![MuxSideEvent::Bandwidth {
                data_stream_id: STREAM,
                kbps: given
            }]
        );
    }
}

/// The one answer to `bytes`, and the error event that goes with it.
fn refusal(mux: &mut MuxSide, bytes: &[u8]) -> (EmmBody, Vec<MuxSideEvent>) {
    mux.handle_bytes(origin(), bytes);
    let mut sent = mux_sent(mux);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let events = mux_events(mux);
    assert!(matches!(events[0], MuxSideEvent::Error(_)), "{events:?}");
    (sent.pop().unwrap().body, events)
}

fn status_of(answer: &EmmBody) -> (EmmMessageType, Vec<EmmErrorStatus>) {
    match answer {
        EmmBody::ChannelError(e) => (EmmMessageType::ChannelError, e.error_status.clone()),
        EmmBody::StreamError(e) => (EmmMessageType::StreamError, e.error_status.clone()),
        other => panic!("not an error: {other:?}"),
    }
}

fn stream_setup(client_id: u32, stream: u16, data_id: u16, data_type: DataType) -> EmmBody {
    StreamSetup {
        client_id,
        data_channel_id: CHANNEL,
        data_stream_id: stream,
        data_id,
        data_type,
    }
    .into()
}

fn provision(stream: u16, data_id: u16, datagrams: Vec<Vec<u8>>) -> EmmBody {
    DataProvision {
        client_id: CLIENT,
        data_channel_id: Some(CHANNEL),
        data_stream_id: stream,
        data_id,
        datagrams: datagrams.into_iter().map(Bytes::from).collect(),
    }
    .into()
}

#[test]
fn mux_refusals_carry_the_right_error_status() {
    use EmmMessageType::{ChannelError as CE, StreamError as SE};
    let setup = |client_id, channel| -> EmmBody {
        ChannelSetup {
            client_id,
            data_channel_id: channel,
            section_tspkt_flag: SectionTspktFlag::Sections,
        }
        .into()
    };
    let s = |st: u16| EmmErrorStatus(st);
    let section = pattern_section(1, 30).unwrap();
    let cases: Vec<(Vec<u8>, EmmMessageType, u16)> = vec![
        (enc(V3, setup(CLIENT, 4)), CE, 0x0007),
        (enc(V3, setup(CLIENT, CHANNEL)), CE, 0x0011),
        (enc(V3, setup(0x1234, 4)), CE, 0x000E),
        (
            enc(
                V3,
                stream_setup(CLIENT, 3, DATA_ID, DataType::DsmccDataCarousel),
            ),
            SE,
            0x000D,
        ),
        (
            enc(V3, stream_setup(CLIENT, 3, 6, DataType::Emm)),
            SE,
            0x0010,
        ),
        (
            enc(V3, stream_setup(CLIENT, STREAM, DATA_ID, DataType::Emm)),
            SE,
            0x0012,
        ),
        (
            enc(V3, stream_setup(0x1234, 3, DATA_ID, DataType::Emm)),
            SE,
            0x000E,
        ),
        (
            enc(V3, provision(9, DATA_ID, vec![section.clone()])),
            SE,
            0x0005,
        ),
        (
            enc(V3, provision(STREAM, 6, vec![section.clone()])),
            SE,
            0x0010,
        ),
        (
            enc(
                V3,
                StreamTest {
                    client_id: CLIENT,
                    data_channel_id: CHANNEL,
                    data_stream_id: 9,
                },
            ),
            SE,
            0x0005,
        ),
        (
            enc(
                V3,
                StreamCloseRequest {
                    client_id: CLIENT,
                    data_channel_id: CHANNEL,
                    data_stream_id: 9,
                },
            ),
            SE,
            0x0005,
        ),
        (
            enc(
                V3,
                ChannelTest {
                    client_id: CLIENT,
                    data_channel_id: 4,
                },
            ),
            CE,
            0x0006,
        ),
        // Messages only a MUX sends.
        (enc(V3, samples().remove(2)), CE, 0x0001),
        (enc(V3, samples().remove(7)), SE, 0x0001),
        // Malformed: data_type of 2 bytes, an ECMG message, version 1.
        (
            raw(
                3,
                0x0111,
                &[
                    (0x0001, &CLIENT.to_be_bytes()),
                    (0x0003, &[0, 1]),
                    (0x0004, &[0, 3]),
                    (0x0008, &[0, 5]),
                    (0x0007, &[0, 0]),
                ],
            ),
            SE,
            0x000B,
        ),
        (raw(3, 0x0001, &[]), CE, 0x0003),
        (raw(1, 0x0011, &[]), CE, 0x0002),
    ];
    let t0 = origin();
    let mut mux = open_mux(t0, mux_config(Some(DATA_ID)));
    for (bytes, ty, status) in cases {
        let (answer, _) = refusal(&mut mux, &bytes);
        assert_eq!(status_of(&answer), (ty, vec![s(status)]), "{answer:?}");
    }
    // Every refusal was counted, and the channel is still open.
    assert_eq!(mux.stats().errors, 17);
    assert!(mux.channel().is_some() && !mux.is_closed());

    // With any data_id allowed, a second stream may not take the first one's.
    let mut mux = open_mux(t0, mux_config(None));
    let bytes = enc(V3, stream_setup(CLIENT, 3, DATA_ID, DataType::Emm));
    let (answer, _) = refusal(&mut mux, &bytes);
    assert_eq!(status_of(&answer), (SE, vec![s(0x0013)]));
    let bytes = enc(V3, stream_setup(CLIENT, 3, 6, DataType::PrivateData));
    mux.handle_bytes(t0, &bytes);
    assert!(matches!(
        &mux_sent(&mut mux)[..],
        [EmmMessage {
            body: EmmBody::StreamStatus(_),
            ..
        }]
    ));

    // Before channel_setup, nothing but channel_setup is taken.
    let mut mux = MuxSide::new(mux_config(None)).unwrap();
    let (answer, _) = refusal(&mut mux, &enc(V3, samples().remove(1)));
    assert_eq!(status_of(&answer), (CE, vec![s(0x0006)]));
}

/// A bad datagram is refused; the good ones of the same message still go through.
#[test]
fn bad_datagram_among_good_ones() {
    let t0 = origin();
    let mut mux = open_mux(t0, mux_config(None));
    let good = pattern_section(5, 50).unwrap();
    // section_length says 80 bytes follow; 3 do.
    let cut = vec![0x82, 0x70, 0x50, 1, 2, 3];
    let msg = enc(
        V3,
        provision(STREAM, DATA_ID, vec![good.clone(), cut, good.clone()]),
    );
    mux.handle_bytes(t0, &msg);
    let sent = mux_sent(&mut mux);
    let [EmmMessage {
        body: EmmBody::StreamError(e),
        ..
    }] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    assert_eq!(e.error_status, vec![EmmErrorStatus::INVALID_VALUE]);
    assert_eq!(e.data_stream_id, STREAM);
    assert_eq!(
        mux_events(&mut mux),
        vec![
            MuxSideEvent::Error(MuxSideError::Decode(EmmError::BadDatagram {
                data_stream_id: STREAM,
                index: 1,
                format: SectionTspktFlag::Sections,
                length: 6
            })),
            MuxSideEvent::Data {
                data_stream_id: STREAM,
                data_id: DATA_ID,
                datagrams: vec![Bytes::from(good.clone()), Bytes::from(good)],
                format: SectionTspktFlag::Sections
            }
        ]
    );
    assert_eq!(mux.stats().datagrams, 2);
}

#[test]
fn mux_answers_tests_and_echoes_the_version() {
    let t0 = origin();
    let mut mux = MuxSide::new(mux_config(None)).unwrap();
    mux.handle_bytes(t0, &enc(V2, samples().remove(0)));
    mux.handle_bytes(t0, &enc(V2, samples().remove(5)));
    mux.handle_bytes(t0, &enc(V2, samples().remove(1)));
    mux.handle_bytes(t0, &enc(V2, samples().remove(6)));
    let sent = mux_sent(&mut mux);
    assert!(sent.iter().all(|m| m.version == V2));
    let types: Vec<EmmMessageType> = sent.iter().map(|m| m.body.message_type()).collect();
    assert_eq!(
        types,
        [
            EmmMessageType::ChannelStatus,
            EmmMessageType::StreamStatus,
            EmmMessageType::ChannelStatus,
            EmmMessageType::StreamStatus
        ]
    );
    assert_eq!(
        sent[2].body,
        ChannelStatus {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            section_tspkt_flag: SectionTspktFlag::Sections
        }
        .into()
    );
    assert_eq!(
        sent[3].body,
        StreamStatus {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            data_id: DATA_ID,
            data_type: DataType::Emm
        }
        .into()
    );
    // Then version 3 from the same EMMG: answered in 3.
    mux.handle_bytes(t0, &enc(V3, samples().remove(1)));
    assert_eq!(mux_sent(&mut mux)[0].version, V3);
}

#[test]
fn silence_closes_the_channel() {
    let t0 = origin();
    let mut mux = MuxSide::new(mux_config(None)).unwrap();
    assert_eq!(mux.poll_timeout(), None);
    mux.handle_bytes(t0, &enc(V3, samples().remove(0)));
    let timeout = DEFAULT_KEEPALIVE_TIMEOUT;
    assert_eq!(mux.poll_timeout(), Some(t0 + timeout));
    mux.handle_timeout(t0 + timeout - Duration::from_millis(1));
    let t20 = t0 + Duration::from_secs(20);
    mux.handle_bytes(t20, &enc(V3, samples().remove(1)));
    mux_sent(&mut mux);
    mux_events(&mut mux);
    mux.handle_timeout(t0 + timeout);
    assert!(mux_events(&mut mux).is_empty());
    assert_eq!(mux.poll_timeout(), Some(t20 + timeout));
    mux.handle_timeout(t20 + timeout);
    assert_eq!(
        mux_events(&mut mux),
        vec![
            MuxSideEvent::Error(MuxSideError::KeepaliveTimeout { idle: timeout }),
            MuxSideEvent::Closed
        ]
    );
    assert_eq!(mux.poll_timeout(), None);
    mux.handle_bytes(t20 + timeout, &enc(V3, samples().remove(1)));
    assert!(mux.poll_transmit().is_none() && mux.poll_event().is_none());
}

#[test]
fn channel_close_closes() {
    let t0 = origin();
    let mut mux = open_mux(t0, mux_config(None));
    mux.handle_bytes(t0, &enc(V3, samples().remove(3)));
    assert_eq!(mux_events(&mut mux), vec![MuxSideEvent::Closed]);
    assert!(mux.poll_transmit().is_none());
    assert!(mux.is_closed() && mux.channel().is_none());
}

#[test]
fn udp_is_taken_only_for_this_connection() {
    let t0 = origin();
    let mut mux = open_mux(t0, mux_config(None));
    let section = pattern_section(1, 30).unwrap();
    let udp = |body: EmmBody| {
        let bytes = Bytes::from(enc(V3, body));
        decode_emm_datagram(&bytes).pop().unwrap().unwrap()
    };
    let mut other_client = provision(STREAM, DATA_ID, vec![section.clone()]);
    if let EmmBody::DataProvision(d) = &mut other_client {
        d.client_id = 0x1234;
    }
    let mut other_channel = provision(STREAM, DATA_ID, vec![section.clone()]);
    if let EmmBody::DataProvision(d) = &mut other_channel {
        d.data_channel_id = Some(4);
    }
    for body in [
        other_client,
        other_channel,
        provision(9, DATA_ID, vec![section.clone()]),
        samples().remove(1),
    ] {
        let msg = udp(body);
        assert_eq!(mux.handle_udp(t0, msg.clone()), Err(msg));
    }
    assert!(mux.poll_transmit().is_none() && mux.poll_event().is_none());
    // No data_channel_id: taken (on the open stream).
    let mut no_channel = provision(STREAM, DATA_ID, vec![section.clone()]);
    if let EmmBody::DataProvision(d) = &mut no_channel {
        d.data_channel_id = None;
    }
    assert_eq!(mux.handle_udp(t0, udp(no_channel)), Ok(()));
    assert!(matches!(
        &mux_events(&mut mux)[..],
        [MuxSideEvent::Data { .. }]
    ));
    // Ours but the wrong data_id: taken, refused on the TCP connection.
    assert_eq!(
        mux.handle_udp(t0, udp(provision(STREAM, 6, vec![section]))),
        Ok(())
    );
    let sent = mux_sent(&mut mux);
    assert_eq!(
        status_of(&sent[0].body),
        (
            EmmMessageType::StreamError,
            vec![EmmErrorStatus::UNKNOWN_DATA_ID]
        )
    );
}

#[test]
fn mux_config_is_checked() {
    let mut c = mux_config(None);
    c.keepalive_timeout = Duration::ZERO;
    assert!(MuxSide::new(c).is_err());
    assert!(MuxSide::new(MuxSideConfig::new(CLIENT, 0)).is_err());
}

#[test]
fn emmg_setup_failures() {
    let t0 = origin();
    // The MUX knows another client: channel_error 0x000E ends the EMMG's session.
    let mut mux = MuxSide::new(MuxSideConfig::new(0x1111, 100)).unwrap();
    let mut emmg = EmmgSide::new(EmmgSideConfig::new(CLIENT, CHANNEL, STREAM, DATA_ID));
    emmg.handle_connected(t0);
    pump(t0, &mut emmg, &mut mux);
    assert_eq!(
        emmg_events(&mut emmg),
        vec![EmmgSideEvent::Error(EmmgSideError::Channel {
            error_status: vec![EmmErrorStatus::UNKNOWN_CLIENT_ID]
        })]
    );
    assert!(emmg.is_idle());
    assert_eq!(emmg.poll_timeout(), None);

    // The MUX wants another data_id: stream_error 0x0010.
    let mut mux = MuxSide::new(mux_config(Some(77))).unwrap();
    emmg.handle_connected(t0);
    pump(t0, &mut emmg, &mut mux);
    assert_eq!(
        emmg_events(&mut emmg),
        vec![
            EmmgSideEvent::ChannelOpen,
            EmmgSideEvent::Error(EmmgSideError::Stream {
                data_stream_id: STREAM,
                error_status: vec![EmmErrorStatus::UNKNOWN_DATA_ID]
            })
        ]
    );
    assert!(emmg.is_idle());
    assert_eq!(
        emmg.data_provision(&[&[0x82, 0x70, 0]]),
        Err(EmmgSideError::NotReady)
    );

    // No answer at all.
    emmg.handle_connected(t0);
    assert_eq!(emmg.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    emmg.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(
        emmg_events(&mut emmg),
        vec![EmmgSideEvent::Error(EmmgSideError::Timeout {
            request: EmmMessageType::ChannelSetup
        })]
    );
    assert!(emmg.is_idle());
}

/// An EMMG that is ready, with the MUX's messages fed to it by hand.
fn ready_emmg(t0: Instant) -> EmmgSide {
    let mut mux = MuxSide::new(mux_config(None)).unwrap();
    let mut emmg = EmmgSide::new(EmmgSideConfig::new(CLIENT, CHANNEL, STREAM, DATA_ID));
    emmg.handle_connected(t0);
    pump(t0, &mut emmg, &mut mux);
    emmg_events(&mut emmg);
    assert!(emmg.is_ready());
    assert_eq!(emmg.allocated_kbps(), Some(300));
    emmg
}

#[test]
fn emmg_answers_the_mux() {
    let t0 = origin();
    let mut emmg = ready_emmg(t0);
    emmg.handle_bytes(t0, &enc(V3, samples().remove(1)));
    emmg.handle_bytes(t0, &enc(V3, samples().remove(6)));
    let mut other = samples().remove(6);
    if let EmmBody::StreamTest(t) = &mut other {
        t.data_stream_id = 9;
    }
    emmg.handle_bytes(t0, &enc(V3, other));
    let mut alloc = samples().remove(13);
    if let EmmBody::StreamBwAllocation(a) = &mut alloc {
        a.bandwidth_kbps = Some(50);
    }
    emmg.handle_bytes(t0, &enc(V3, alloc));
    let sent = emmg_sent(&mut emmg);
    let types: Vec<EmmMessageType> = sent.iter().map(|m| m.body.message_type()).collect();
    assert_eq!(
        types,
        [
            EmmMessageType::ChannelStatus,
            EmmMessageType::StreamStatus,
            EmmMessageType::StreamError
        ]
    );
    assert_eq!(
        status_of(&sent[2].body).1,
        vec![EmmErrorStatus::UNKNOWN_DATA_STREAM_ID]
    );
    let events = emmg_events(&mut emmg);
    assert!(matches!(
        &events[..],
        [
            EmmgSideEvent::Error(EmmgSideError::Unexpected { .. }),
            EmmgSideEvent::Bandwidth { kbps: Some(50) }
        ]
    ));
    assert!(emmg.is_ready());
    assert_eq!(emmg.allocated_kbps(), Some(50));
}

/// A close the MUX never answers still closes the channel after the response timeout.
#[test]
fn emmg_close_without_answer() {
    let t0 = origin();
    let mut emmg = ready_emmg(t0);
    emmg.close(t0);
    let sent = emmg_sent(&mut emmg);
    assert_eq!(
        sent[0].body.message_type(),
        EmmMessageType::StreamCloseRequest
    );
    assert!(!emmg.is_ready());
    let t5 = t0 + Duration::from_secs(5);
    assert_eq!(emmg.poll_timeout(), Some(t5));
    emmg.handle_timeout(t5);
    assert_eq!(
        emmg_sent(&mut emmg)[0].body.message_type(),
        EmmMessageType::ChannelClose
    );
    assert_eq!(
        emmg_events(&mut emmg),
        vec![
            EmmgSideEvent::Error(EmmgSideError::Timeout {
                request: EmmMessageType::StreamCloseRequest
            }),
            EmmgSideEvent::Closed
        ]
    );
    assert!(emmg.is_idle());
}
