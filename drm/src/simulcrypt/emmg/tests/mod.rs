//! Tests of the EMMG/PDG⇔MUX interface: the codec against hand-built bytes (ETSI TS 103 197
//! layouts), round trips and error_status of bad input; both ends in conversation; a fixed-seed
//! fuzz loop.

use std::time::Instant;

use bytes::Bytes;

use super::codec::EmmgMux;
use super::*;
use crate::simulcrypt::message::{ProtocolVersion, SectionTspktFlag};
use crate::simulcrypt::tlv::Writer;

mod codec;
mod fuzz;
mod sides;

const CLIENT: u32 = 0x4AD1_0000;
const CHANNEL: u16 = 1;
const STREAM: u16 = 2;
const DATA_ID: u16 = 5;

/// One of each message, with and without the optional parameters.
fn samples() -> Vec<EmmBody> {
    vec![
        ChannelSetup {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            section_tspkt_flag: SectionTspktFlag::Sections,
        }
        .into(),
        ChannelTest {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
        }
        .into(),
        ChannelStatus {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            section_tspkt_flag: SectionTspktFlag::TsPackets,
        }
        .into(),
        ChannelClose {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
        }
        .into(),
        ChannelError {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            error_status: vec![EmmErrorStatus::UNKNOWN_CLIENT_ID, EmmErrorStatus(0x7123)],
            error_information: vec![vec![0x00, 0x01], vec![]],
        }
        .into(),
        StreamSetup {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            data_id: DATA_ID,
            data_type: DataType::Emm,
        }
        .into(),
        StreamTest {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
        }
        .into(),
        StreamStatus {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            data_id: DATA_ID,
            data_type: DataType::DsmccDataCarousel,
        }
        .into(),
        StreamCloseRequest {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
        }
        .into(),
        StreamCloseResponse {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
        }
        .into(),
        StreamError {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            error_status: vec![EmmErrorStatus::EXCEEDED_BANDWIDTH],
            error_information: vec![],
        }
        .into(),
        StreamBwRequest {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            bandwidth_kbps: Some(100),
        }
        .into(),
        StreamBwRequest {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            bandwidth_kbps: None,
        }
        .into(),
        StreamBwAllocation {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            bandwidth_kbps: Some(64),
        }
        .into(),
        StreamBwAllocation {
            client_id: CLIENT,
            data_channel_id: CHANNEL,
            data_stream_id: STREAM,
            bandwidth_kbps: None,
        }
        .into(),
        DataProvision {
            client_id: CLIENT,
            data_channel_id: Some(CHANNEL),
            data_stream_id: STREAM,
            data_id: DATA_ID,
            datagrams: vec![
                Bytes::from(pattern_section(1, 184).unwrap()),
                Bytes::from(pattern_section(2, 20).unwrap()),
            ],
        }
        .into(),
    ]
}

fn enc(version: ProtocolVersion, body: impl Into<EmmBody>) -> Vec<u8> {
    encode_emm(&EmmMessage::new(version, body)).unwrap()
}

fn decode_all(bytes: &[u8]) -> Vec<Result<EmmMessage, EmmError>> {
    let mut d = EmmDecoder::new();
    d.push(bytes);
    d.collect()
}

/// A whole message from a parameter list: `(type, value)` pairs after the given header, which
/// need not be valid (the writer the codec shares with the ECMG side; `codec.rs` pins its bytes).
fn raw(version: u8, message_type: u16, params: &[(u16, &[u8])]) -> Vec<u8> {
    let mut w = Writer::<EmmgMux>::start(version, message_type);
    for (t, v) in params {
        w.param(EmmParameterType(*t), v);
    }
    w.finish().unwrap()
}

/// The fake clock's origin; the tests move time only by offsets from it.
fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// A small fixed-seed PRNG (xorshift64*), so the fuzz loop needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
