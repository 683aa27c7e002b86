//! Encoding EMMG/PDG⇔MUX messages to bytes, and decoding them from a TCP byte stream or a UDP
//! datagram: this interface's message bodies, over the framing and the parameter reading and
//! writing it shares with the ECMG⇔SCS interface (`simulcrypt::frame`, `simulcrypt::tlv`).
//!
//! As on the ECMG side, decoding errors are [`EmmError`]s that carry the error_status to answer
//! with, and an error consumes the offending message only. datagram values are [`Bytes`] views
//! into the received message, never copies.

use std::fmt;

use bytes::Bytes;

use crate::simulcrypt::frame::{split_datagram, FrameDecoder, HEADER_LEN};
use crate::simulcrypt::message::ProtocolVersion;
use crate::simulcrypt::tlv::{Fault, Interface, Params, Tlvs, Writer};

use super::error::{EmmError, EmmMessageContext};
use super::message::{
    ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, DataProvision, DataType,
    EmmBody, EmmErrorStatus, EmmMessage, EmmMessageType, EmmParameterType, StreamBwAllocation,
    StreamBwRequest, StreamCloseRequest, StreamCloseResponse, StreamError, StreamSetup,
    StreamStatus, StreamTest,
};

/// protocol_version(8) message_type(16) message_length(16).
pub const EMM_HEADER_LEN: usize = HEADER_LEN;

/// The decoder's default limit on message_length: everything the header can express, since a
/// data_provision may carry several sections of up to 4096 bytes each. Lower it with
/// [`EmmDecoder::with_max_message_length`].
pub const DEFAULT_MAX_EMM_MESSAGE_LENGTH: usize = 65_535;

/// The message as bytes. Fails only if its parameters add up to more than 65 535 bytes, which
/// message_length cannot express (only datagrams and error_information can get there).
pub fn encode_emm(msg: &EmmMessage) -> Result<Vec<u8>, EmmError> {
    let mut w = Writer::start(msg.version.value(), msg.body.message_type().code());
    write_body(&mut w, &msg.body);
    w.finish()
}

/// A data_provision straight from borrowed datagrams (no [`Bytes`] to build first), as
/// [`encode_emm`] would encode it.
pub(super) fn encode_data_provision(
    version: ProtocolVersion,
    client_id: u32,
    data_channel_id: Option<u16>,
    data_stream_id: u16,
    data_id: u16,
    datagrams: &[&[u8]],
) -> Result<Vec<u8>, EmmError> {
    let mut w = Writer::start(version.value(), EmmMessageType::DataProvision.code());
    w.reserve(datagrams.iter().map(|d| d.len() + 4).sum::<usize>() + 24);
    write_ids(&mut w, client_id, data_channel_id, Some(data_stream_id));
    w.u16(EmmParameterType::DATA_ID, data_id);
    for d in datagrams {
        w.param(EmmParameterType::DATAGRAM, d);
    }
    w.finish()
}

/// Splits a TCP byte stream into messages: [`EmmDecoder::push`] what was read (any amount,
/// split anywhere), then take messages with [`Iterator::next`] until it returns `None`, which
/// means "need more bytes": pushing more makes it return messages again. `Debug` shows how
/// much is buffered, never the bytes.
pub struct EmmDecoder {
    frames: FrameDecoder,
}

impl fmt::Debug for EmmDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.frames.fmt_as("EmmDecoder", f)
    }
}

impl Default for EmmDecoder {
    fn default() -> EmmDecoder {
        EmmDecoder::new()
    }
}

impl EmmDecoder {
    /// A decoder with the [`DEFAULT_MAX_EMM_MESSAGE_LENGTH`] limit.
    pub fn new() -> EmmDecoder {
        EmmDecoder::with_max_message_length(DEFAULT_MAX_EMM_MESSAGE_LENGTH)
    }

    /// A decoder that refuses messages longer than `max` bytes after the header: they are
    /// skipped and reported as [`EmmError::MessageTooLong`] without being buffered.
    pub fn with_max_message_length(max: usize) -> EmmDecoder {
        EmmDecoder {
            frames: FrameDecoder::new(max),
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.frames.push(data);
    }

    /// Bytes buffered that do not make a whole message yet.
    pub fn buffered(&self) -> usize {
        self.frames.buffered()
    }
}

impl Iterator for EmmDecoder {
    type Item = Result<EmmMessage, EmmError>;

    /// The next whole message, an error for a message that could not be decoded (which is then
    /// skipped), or `None` until more bytes are pushed.
    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.frames.next()? {
            Ok(frame) => decode_frame(&frame, Transport::Tcp),
            Err(oversize) => Err(EmmgMux::error(oversize.into())),
        })
    }
}

/// The messages of one UDP datagram (one or more whole messages back to back), in order. A
/// data_provision may leave out data_channel_id here, unlike over TCP. A datagram that ends
/// inside a message gives [`EmmError::Truncated`] for that rest, after the whole ones. The
/// datagrams of the messages are views into `datagram`.
pub fn decode_emm_datagram(datagram: &Bytes) -> Vec<Result<EmmMessage, EmmError>> {
    split_datagram(datagram)
        .map(|frame| match frame {
            Ok(frame) => decode_frame(&frame, Transport::Udp),
            Err(cut) => Err(EmmError::Truncated {
                offset: cut.offset,
                remaining: cut.remaining,
            }),
        })
        .collect()
}

/// The EMMG/PDG⇔MUX interface's codes and errors, for the shared parameter reader and writer.
pub(crate) enum EmmgMux {}

impl Interface for EmmgMux {
    type MessageType = EmmMessageType;
    type Parameter = EmmParameterType;
    type ErrorStatus = EmmErrorStatus;
    type Context = EmmMessageContext;
    type Error = EmmError;

    const ERROR_STATUS: EmmParameterType = EmmParameterType::ERROR_STATUS;
    const ERROR_INFORMATION: EmmParameterType = EmmParameterType::ERROR_INFORMATION;

    fn message_type(code: u16) -> Option<EmmMessageType> {
        EmmMessageType::from_code(code)
    }
    fn parameter(code: u16) -> EmmParameterType {
        EmmParameterType(code)
    }
    fn parameter_code(parameter: EmmParameterType) -> u16 {
        parameter.0
    }
    fn is_allowed(parameter: EmmParameterType) -> bool {
        parameter.name().is_some() || parameter.is_user_defined()
    }
    fn error_status(code: u16) -> EmmErrorStatus {
        EmmErrorStatus(code)
    }
    fn error_status_code(status: EmmErrorStatus) -> u16 {
        status.0
    }
    /// client_id, data_channel_id and, for stream-level messages, data_stream_id.
    fn context(
        message_type: EmmMessageType,
        params: &Tlvs<'_, EmmParameterType>,
    ) -> EmmMessageContext {
        let id16 = |ty| params.first(ty).map(u16::from_be_bytes);
        EmmMessageContext {
            message_type,
            client_id: params
                .first(EmmParameterType::CLIENT_ID)
                .map(u32::from_be_bytes),
            data_channel_id: id16(EmmParameterType::DATA_CHANNEL_ID),
            data_stream_id: if message_type.is_stream_level() {
                id16(EmmParameterType::DATA_STREAM_ID)
            } else {
                None
            },
        }
    }
    fn error(fault: Fault<EmmMessageContext, EmmParameterType>) -> EmmError {
        EmmError::from_fault(fault)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// Decodes one whole message (header included, at least [`HEADER_LEN`] bytes).
fn decode_frame(frame: &Bytes, transport: Transport) -> Result<EmmMessage, EmmError> {
    let p = Params::<EmmgMux>::read(frame)?;
    type P = EmmParameterType;
    let body = match p.message_type() {
        EmmMessageType::ChannelSetup => EmmBody::ChannelSetup(ChannelSetup {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            section_tspkt_flag: p.section_tspkt_flag(P::SECTION_TSPKT_FLAG)?,
        }),
        EmmMessageType::ChannelTest => EmmBody::ChannelTest(ChannelTest {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
        }),
        EmmMessageType::ChannelStatus => EmmBody::ChannelStatus(ChannelStatus {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            section_tspkt_flag: p.section_tspkt_flag(P::SECTION_TSPKT_FLAG)?,
        }),
        EmmMessageType::ChannelClose => EmmBody::ChannelClose(ChannelClose {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
        }),
        EmmMessageType::ChannelError => EmmBody::ChannelError(ChannelError {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            error_status: p.error_status()?,
            error_information: p.error_information(),
        }),
        EmmMessageType::StreamSetup => EmmBody::StreamSetup(StreamSetup {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            data_id: p.u16(P::DATA_ID)?,
            data_type: data_type(&p)?,
        }),
        EmmMessageType::StreamTest => EmmBody::StreamTest(StreamTest {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
        }),
        EmmMessageType::StreamStatus => EmmBody::StreamStatus(StreamStatus {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            data_id: p.u16(P::DATA_ID)?,
            data_type: data_type(&p)?,
        }),
        EmmMessageType::StreamCloseRequest => EmmBody::StreamCloseRequest(StreamCloseRequest {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
        }),
        EmmMessageType::StreamCloseResponse => EmmBody::StreamCloseResponse(StreamCloseResponse {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
        }),
        EmmMessageType::StreamError => EmmBody::StreamError(StreamError {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            error_status: p.error_status()?,
            error_information: p.error_information(),
        }),
        EmmMessageType::StreamBwRequest => EmmBody::StreamBwRequest(StreamBwRequest {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            bandwidth_kbps: p.opt_u16(P::BANDWIDTH)?,
        }),
        EmmMessageType::StreamBwAllocation => EmmBody::StreamBwAllocation(StreamBwAllocation {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            bandwidth_kbps: p.opt_u16(P::BANDWIDTH)?,
        }),
        EmmMessageType::DataProvision => {
            let client_id = p.u32(P::CLIENT_ID)?;
            let data_channel_id = match transport {
                Transport::Tcp => Some(p.u16(P::DATA_CHANNEL_ID)?),
                Transport::Udp => p.opt_u16(P::DATA_CHANNEL_ID)?,
            };
            let data_stream_id = p.u16(P::DATA_STREAM_ID)?;
            let data_id = p.u16(P::DATA_ID)?;
            // Views into the frame, no copy.
            let datagrams: Vec<Bytes> = p.all(P::DATAGRAM).map(|v| frame.slice_ref(v)).collect();
            if datagrams.is_empty() {
                return Err(p.missing(P::DATAGRAM));
            }
            EmmBody::DataProvision(DataProvision {
                client_id,
                data_channel_id,
                data_stream_id,
                data_id,
                datagrams,
            })
        }
    };
    Ok(EmmMessage {
        version: p.version(),
        body,
    })
}

fn write_body(w: &mut Writer<EmmgMux>, body: &EmmBody) {
    type P = EmmParameterType;
    write_ids(
        w,
        body.client_id(),
        body.data_channel_id(),
        body.data_stream_id(),
    );
    match body {
        EmmBody::ChannelSetup(ChannelSetup {
            section_tspkt_flag, ..
        })
        | EmmBody::ChannelStatus(ChannelStatus {
            section_tspkt_flag, ..
        }) => w.u8(P::SECTION_TSPKT_FLAG, *section_tspkt_flag as u8),
        EmmBody::ChannelTest(_)
        | EmmBody::ChannelClose(_)
        | EmmBody::StreamTest(_)
        | EmmBody::StreamCloseRequest(_)
        | EmmBody::StreamCloseResponse(_) => {}
        EmmBody::ChannelError(m) => w.errors(&m.error_status, &m.error_information),
        EmmBody::StreamError(m) => w.errors(&m.error_status, &m.error_information),
        EmmBody::StreamSetup(StreamSetup {
            data_id, data_type, ..
        })
        | EmmBody::StreamStatus(StreamStatus {
            data_id, data_type, ..
        }) => {
            w.u16(P::DATA_ID, *data_id);
            w.u8(P::DATA_TYPE, data_type.value());
        }
        EmmBody::StreamBwRequest(StreamBwRequest { bandwidth_kbps, .. })
        | EmmBody::StreamBwAllocation(StreamBwAllocation { bandwidth_kbps, .. }) => {
            w.opt_u16(P::BANDWIDTH, *bandwidth_kbps);
        }
        EmmBody::DataProvision(m) => {
            w.u16(P::DATA_ID, m.data_id);
            for d in &m.datagrams {
                w.param(P::DATAGRAM, d);
            }
        }
    }
}

/// data_type: a defined value, or invalid.
fn data_type(p: &Params<'_, EmmgMux>) -> Result<DataType, EmmError> {
    DataType::from_u8(p.u8(EmmParameterType::DATA_TYPE)?)
        .ok_or_else(|| p.invalid(EmmParameterType::DATA_TYPE))
}

/// client_id, then data_channel_id and data_stream_id where the message has them.
fn write_ids(w: &mut Writer<EmmgMux>, client_id: u32, channel: Option<u16>, stream: Option<u16>) {
    w.u32(EmmParameterType::CLIENT_ID, client_id);
    w.opt_u16(EmmParameterType::DATA_CHANNEL_ID, channel);
    w.opt_u16(EmmParameterType::DATA_STREAM_ID, stream);
}
