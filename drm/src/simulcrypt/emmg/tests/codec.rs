//! The codec: bytes as TS 103 197 lays them out, round trips, splits, and bad input.

use super::*;

const V2: ProtocolVersion = ProtocolVersion::V2;
const V3: ProtocolVersion = ProtocolVersion::V3;

/// channel_setup by hand: header, then client_id(4), data_channel_id(2), section_TSpkt_flag(1).
#[test]
fn channel_setup_bytes() {
    let bytes = enc(V3, samples().remove(0));
    #[rustfmt::skip]
    let expected = [
        0x03, 0x00, 0x11, 0x00, 0x13,
        0x00, 0x01, 0x00, 0x04, 0x4A, 0xD1, 0x00, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x01,
        0x00, 0x02, 0x00, 0x01, 0x00,
    ];
    assert_eq!(bytes, expected);
}

/// data_provision by hand: data_id(2), then each datagram as its own parameter 0x0005.
#[test]
fn data_provision_bytes() {
    let msg = DataProvision {
        client_id: 0x0102_0304,
        data_channel_id: Some(7),
        data_stream_id: 8,
        data_id: 9,
        datagrams: vec![Bytes::from_static(&[0x82, 0x70, 0x00]), Bytes::new()],
    };
    #[rustfmt::skip]
    let expected = [
        0x02, 0x02, 0x11, 0x00, 0x25,
        0x00, 0x01, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x07,
        0x00, 0x04, 0x00, 0x02, 0x00, 0x08,
        0x00, 0x08, 0x00, 0x02, 0x00, 0x09,
        0x00, 0x05, 0x00, 0x03, 0x82, 0x70, 0x00,
        0x00, 0x05, 0x00, 0x00,
    ];
    assert_eq!(enc(V2, msg), expected);
}

#[test]
fn every_message_round_trips_in_v2_and_v3() {
    for version in [V2, V3] {
        for body in samples() {
            let bytes = enc(version, body.clone());
            assert_eq!(bytes[0], version.value());
            let got = decode_all(&bytes);
            assert_eq!(got, vec![Ok(EmmMessage::new(version, body.clone()))]);
            // The same message as a UDP datagram.
            let got = decode_emm_datagram(&Bytes::from(bytes));
            assert_eq!(got, vec![Ok(EmmMessage::new(version, body))]);
        }
    }
}

/// A TCP stream of every message decodes the same however it is split.
#[test]
fn split_at_every_byte_boundary() {
    let msgs: Vec<EmmMessage> = samples()
        .into_iter()
        .enumerate()
        .map(|(i, b)| EmmMessage::new(if i % 2 == 0 { V2 } else { V3 }, b))
        .collect();
    let stream: Vec<u8> = msgs.iter().flat_map(|m| encode_emm(m).unwrap()).collect();
    for cut in 0..=stream.len() {
        let mut d = EmmDecoder::new();
        let mut got = Vec::new();
        d.push(&stream[..cut]);
        got.extend(d.by_ref());
        d.push(&stream[cut..]);
        got.extend(d.by_ref());
        assert_eq!(d.buffered(), 0);
        let got: Vec<EmmMessage> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, msgs, "cut at {cut}");
    }
    // One byte at a time.
    let mut d = EmmDecoder::new();
    let mut got = Vec::new();
    for b in &stream {
        d.push(std::slice::from_ref(b));
        got.extend(d.by_ref().map(Result::unwrap));
    }
    assert_eq!(got, msgs);
    // All in one UDP datagram.
    let got: Vec<EmmMessage> = decode_emm_datagram(&Bytes::from(stream))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, msgs);
}

/// The datagrams of a decoded data_provision point into the received bytes.
#[test]
fn datagrams_are_views_not_copies() {
    let bytes = Bytes::from(enc(V3, samples().pop().unwrap()));
    let range = bytes.as_ptr_range();
    let got = decode_emm_datagram(&bytes);
    let Ok(EmmMessage {
        body: EmmBody::DataProvision(d),
        ..
    }) = &got[0]
    else {
        panic!("{got:?}")
    };
    for g in &d.datagrams {
        assert!(range.contains(&g.as_ptr()));
    }
    let mut dec = EmmDecoder::new();
    dec.push(&bytes);
    let Some(Ok(EmmMessage {
        body: EmmBody::DataProvision(d),
        ..
    })) = dec.next()
    else {
        panic!()
    };
    assert_eq!(d.datagrams[0], pattern_section(1, 184).unwrap());
}

fn one_error(bytes: &[u8]) -> EmmError {
    let mut got = decode_all(bytes);
    assert_eq!(got.len(), 1, "{got:?}");
    got.pop().unwrap().unwrap_err()
}

const CID: (u16, &[u8]) = (0x0001, &[0x4A, 0xD1, 0x00, 0x00]);
const CH: (u16, &[u8]) = (0x0003, &[0x00, 0x01]);
const ST: (u16, &[u8]) = (0x0004, &[0x00, 0x02]);
const DID: (u16, &[u8]) = (0x0008, &[0x00, 0x05]);
const FLAG: (u16, &[u8]) = (0x0002, &[0x00]);

#[test]
fn bad_input_gets_the_right_error_status() {
    let cases: Vec<(Vec<u8>, EmmErrorStatus)> = vec![
        // 0x0001 is the ECMG side's channel_setup: not a message of this interface.
        (
            raw(3, 0x0001, &[CID, CH, FLAG]),
            EmmErrorStatus::UNKNOWN_MESSAGE_TYPE,
        ),
        (
            raw(1, 0x0011, &[CID, CH, FLAG]),
            EmmErrorStatus::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            raw(4, 0x0011, &[CID, CH, FLAG]),
            EmmErrorStatus::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        // client_id of 3 bytes.
        (
            raw(3, 0x0011, &[(0x0001, &[1, 2, 3]), CH, FLAG]),
            EmmErrorStatus::INCONSISTENT_LENGTH,
        ),
        // bandwidth of 1 byte.
        (
            raw(3, 0x0117, &[CID, CH, ST, (0x0006, &[1])]),
            EmmErrorStatus::INCONSISTENT_LENGTH,
        ),
        // No section_TSpkt_flag.
        (
            raw(3, 0x0011, &[CID, CH]),
            EmmErrorStatus::MISSING_PARAMETER,
        ),
        // No data_id in stream_setup (mandatory from version 2).
        (
            raw(2, 0x0111, &[CID, CH, ST, (0x0007, &[0])]),
            EmmErrorStatus::MISSING_PARAMETER,
        ),
        // data_provision without datagram, and over TCP without data_channel_id.
        (
            raw(3, 0x0211, &[CID, CH, ST, DID]),
            EmmErrorStatus::MISSING_PARAMETER,
        ),
        (
            raw(3, 0x0211, &[CID, ST, DID, (0x0005, &[0x82, 0x70, 0])]),
            EmmErrorStatus::MISSING_PARAMETER,
        ),
        // channel_error without error_status.
        (
            raw(3, 0x0015, &[CID, CH]),
            EmmErrorStatus::MISSING_PARAMETER,
        ),
        // 0x0009 is not defined here (it is min_CP_duration on the ECMG side).
        (
            raw(3, 0x0012, &[CID, CH, (0x0009, &[0, 1])]),
            EmmErrorStatus::UNKNOWN_PARAMETER_TYPE,
        ),
        (
            raw(3, 0x0011, &[CID, CH, (0x0002, &[2])]),
            EmmErrorStatus::INVALID_VALUE,
        ),
        (
            raw(3, 0x0111, &[CID, CH, ST, DID, (0x0007, &[3])]),
            EmmErrorStatus::INVALID_VALUE,
        ),
        (
            raw(3, 0x0012, &[CID, CID, CH]),
            EmmErrorStatus::INVALID_MESSAGE,
        ),
    ];
    for (bytes, status) in cases {
        let e = one_error(&bytes);
        assert_eq!(e.error_status(), status, "{e}");
    }
}

/// A parameter that runs past message_length is refused on its stream when the stream could
/// be read; the decoder stays in step.
#[test]
fn overrun_is_answered_on_its_stream() {
    let mut bytes = raw(3, 0x0112, &[CID, CH, ST, (0x0005, &[1, 2, 3, 4])]);
    // Declare 9 bytes of value but leave 4 in the message.
    let n = bytes.len();
    bytes[n - 5] = 9;
    bytes.extend(enc(V3, samples().remove(1)));
    let got = decode_all(&bytes);
    assert_eq!(got.len(), 2);
    let e = got[0].clone().unwrap_err();
    assert_eq!(e.error_status(), EmmErrorStatus::INVALID_MESSAGE);
    let EmmBody::StreamError(answer) = e.answer(0, 0) else {
        panic!("{e}")
    };
    assert_eq!(
        (
            answer.client_id,
            answer.data_channel_id,
            answer.data_stream_id
        ),
        (CLIENT, CHANNEL, STREAM)
    );
    assert_eq!(answer.error_status, vec![EmmErrorStatus::INVALID_MESSAGE]);
    assert_eq!(answer.error_information, vec![vec![0x00, 0x05]]);
    assert!(got[1].is_ok());
}

/// A channel-level message, or one whose stream cannot be read, is answered with channel_error
/// (the fallback ids when its own are missing).
#[test]
fn answers_fall_back_to_the_channel() {
    let e = one_error(&raw(3, 0x0011, &[CID, CH]));
    let EmmBody::ChannelError(a) = e.answer(7, 9) else {
        panic!()
    };
    assert_eq!((a.client_id, a.data_channel_id), (CLIENT, CHANNEL));
    let e = one_error(&raw(3, 0x0012, &[(0x0001, &[1]), CH]));
    let EmmBody::ChannelError(a) = e.answer(7, 9) else {
        panic!()
    };
    assert_eq!((a.client_id, a.data_channel_id), (7, CHANNEL));
    let e = one_error(&raw(9, 0x0111, &[]));
    let EmmBody::ChannelError(a) = e.answer(7, 9) else {
        panic!()
    };
    assert_eq!((a.client_id, a.data_channel_id), (7, 9));
    assert_eq!(
        a.error_status,
        vec![EmmErrorStatus::UNSUPPORTED_PROTOCOL_VERSION]
    );
}

/// User-defined parameters are skipped, as are defined ones a message does not use.
#[test]
fn user_defined_and_unused_parameters_are_skipped() {
    let bytes = raw(
        3,
        0x0012,
        &[
            (0x8001, &[1, 2, 3]),
            CID,
            (0x0006, &[0, 1]),
            CH,
            (0xFFFF, &[]),
        ],
    );
    assert_eq!(
        decode_all(&bytes),
        vec![Ok(EmmMessage::new(V3, samples().remove(1)))]
    );
}

/// Over UDP data_channel_id may be left out of data_provision.
#[test]
fn udp_data_provision_without_channel() {
    let section = pattern_section(3, 10).unwrap();
    let bytes = raw(2, 0x0211, &[CID, ST, DID, (0x0005, &section)]);
    let got = decode_emm_datagram(&Bytes::from(bytes.clone()));
    let expected = DataProvision {
        client_id: CLIENT,
        data_channel_id: None,
        data_stream_id: STREAM,
        data_id: DATA_ID,
        datagrams: vec![Bytes::from(section)],
    };
    assert_eq!(got, vec![Ok(EmmMessage::new(V2, expected.clone()))]);
    // It encodes back to the same bytes.
    assert_eq!(enc(V2, expected), bytes);
}

#[test]
fn udp_datagram_cut_short() {
    let mut bytes = enc(V3, samples().remove(1));
    let whole = bytes.len();
    bytes.extend_from_slice(&enc(V3, samples().remove(2))[..7]);
    let got = decode_emm_datagram(&Bytes::from(bytes));
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok());
    let e = got[1].clone().unwrap_err();
    assert_eq!(
        e,
        EmmError::Truncated {
            offset: whole,
            remaining: 7
        }
    );
    assert_eq!(e.error_status(), EmmErrorStatus::INVALID_MESSAGE);
    assert_eq!(
        decode_emm_datagram(&Bytes::from_static(&[3, 0])),
        vec![Err(EmmError::Truncated {
            offset: 0,
            remaining: 2
        })]
    );
    assert!(decode_emm_datagram(&Bytes::new()).is_empty());
}

/// Over the decoder's limit: refused without being buffered, and the next message is read.
#[test]
fn message_too_long_is_skipped() {
    let mut bytes = enc(V3, samples().pop().unwrap());
    let long = bytes.len();
    bytes.extend(enc(V3, samples().remove(1)));
    let mut d = EmmDecoder::with_max_message_length(100);
    d.push(&bytes[..50]);
    let e = d.next().unwrap().unwrap_err();
    assert_eq!(e.error_status(), EmmErrorStatus::MESSAGE_TOO_LONG);
    assert_eq!(d.buffered(), 0);
    assert!(d.next().is_none());
    d.push(&bytes[50..long + 3]);
    assert!(d.next().is_none());
    d.push(&bytes[long + 3..]);
    assert_eq!(d.next(), Some(Ok(EmmMessage::new(V3, samples().remove(1)))));
}

/// What message_length cannot express is an encoding error, not a wrong message.
#[test]
fn encoding_too_long_fails() {
    let big = Bytes::from(vec![0u8; 40_000]);
    let msg = DataProvision {
        client_id: CLIENT,
        data_channel_id: Some(CHANNEL),
        data_stream_id: STREAM,
        data_id: DATA_ID,
        datagrams: vec![big.clone(), big],
    };
    let e = encode_emm(&EmmMessage::new(V3, msg)).unwrap_err();
    assert_eq!(e.error_status(), EmmErrorStatus::MESSAGE_TOO_LONG);
}

#[test]
fn error_status_names() {
    assert_eq!(
        EmmErrorStatus::UNKNOWN_CLIENT_ID.to_string(),
        "0x000e (unknown client_id value)"
    );
    assert_eq!(EmmErrorStatus(0x0815).to_string(), "0x0815");
    assert_eq!(
        EmmMessageType::StreamBwAllocation.to_string(),
        "stream_BW_allocation"
    );
    assert_eq!(EmmParameterType(0x0009).to_string(), "parameter 0x0009");
    for code in 0..=0x0300u16 {
        if let Some(t) = EmmMessageType::from_code(code) {
            assert_eq!(t.code(), code);
        }
    }
}
