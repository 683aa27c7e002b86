//! Encoding EMMG/PDG⇔MUX messages to bytes, and decoding them from a TCP byte stream or a UDP
//! datagram.
//!
//! As on the ECMG side, decoding is tolerant where the interface allows it and strict where it
//! does not: user-defined parameters (0x8000 and up) and defined parameters a message does not
//! use are skipped; unknown defined-range parameters, wrong fixed lengths, repeated single
//! parameters, missing mandatory ones and out-of-range values are [`EmmError`]s that carry the
//! error_status to answer with. An error consumes the offending message only. datagram values
//! are [`Bytes`] views into the received message, never copies.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::simulcrypt::message::{ProtocolVersion, SectionTspktFlag};

use super::error::{EmmError, EmmMessageContext};
use super::message::{
    ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, DataProvision, DataType,
    EmmBody, EmmErrorStatus, EmmMessage, EmmMessageType, EmmParameterType, StreamBwAllocation,
    StreamBwRequest, StreamCloseRequest, StreamCloseResponse, StreamError, StreamSetup,
    StreamStatus, StreamTest,
};

/// protocol_version(8) message_type(16) message_length(16).
pub const EMM_HEADER_LEN: usize = 5;

/// The decoder's default limit on message_length: everything the header can express, since a
/// data_provision may carry several sections of up to 4096 bytes each. Lower it with
/// [`EmmDecoder::with_max_message_length`].
pub const DEFAULT_MAX_EMM_MESSAGE_LENGTH: usize = 65_535;

/// The message as bytes. Fails only if its parameters add up to more than 65 535 bytes, which
/// message_length cannot express (only datagrams and error_information can get there).
pub fn encode_emm(msg: &EmmMessage) -> Result<Vec<u8>, EmmError> {
    let mut w = Writer::start(msg.version, msg.body.message_type());
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
    let mut w = Writer::start(version, EmmMessageType::DataProvision);
    w.0.reserve(datagrams.iter().map(|d| d.len() + 4).sum::<usize>() + 24);
    w.ids(client_id, data_channel_id, Some(data_stream_id));
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
    buf: BytesMut,
    /// Bytes of an over-long message still to be thrown away.
    skip: usize,
    max_message_length: usize,
}

impl fmt::Debug for EmmDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmmDecoder")
            .field("buffered", &self.buf.len())
            .field("skip", &self.skip)
            .field("max_message_length", &self.max_message_length)
            .finish()
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
            buf: BytesMut::new(),
            skip: 0,
            max_message_length: max,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        let drop = self.skip.min(data.len());
        self.skip -= drop;
        self.buf.extend_from_slice(&data[drop..]);
    }

    /// Bytes buffered that do not make a whole message yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl Iterator for EmmDecoder {
    type Item = Result<EmmMessage, EmmError>;

    /// The next whole message, an error for a message that could not be decoded (which is then
    /// skipped), or `None` until more bytes are pushed.
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < EMM_HEADER_LEN {
            return None;
        }
        let message_type = u16::from_be_bytes([self.buf[1], self.buf[2]]);
        let length = usize::from(u16::from_be_bytes([self.buf[3], self.buf[4]]));
        if length > self.max_message_length {
            let total = EMM_HEADER_LEN + length;
            let drop = total.min(self.buf.len());
            self.buf.advance(drop);
            self.skip = total - drop;
            return Some(Err(EmmError::MessageTooLong {
                message_type,
                length,
                max: self.max_message_length,
            }));
        }
        if self.buf.len() < EMM_HEADER_LEN + length {
            return None;
        }
        let frame = self.buf.split_to(EMM_HEADER_LEN + length).freeze();
        Some(decode_frame(&frame, Transport::Tcp))
    }
}

/// The messages of one UDP datagram (one or more whole messages back to back), in order. A
/// data_provision may leave out data_channel_id here, unlike over TCP. A datagram that ends
/// inside a message gives [`EmmError::Truncated`] for that rest, after the whole ones. The
/// datagrams of the messages are views into `datagram`.
pub fn decode_emm_datagram(datagram: &Bytes) -> Vec<Result<EmmMessage, EmmError>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let total = if rest.len() >= EMM_HEADER_LEN {
            EMM_HEADER_LEN + usize::from(u16::from_be_bytes([rest[3], rest[4]]))
        } else {
            usize::MAX
        };
        if total > rest.len() {
            out.push(Err(EmmError::Truncated {
                offset,
                remaining: rest.len(),
            }));
            break;
        }
        out.push(decode_frame(
            &datagram.slice(offset..offset + total),
            Transport::Udp,
        ));
        offset += total;
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// Decodes one whole message (header included, at least [`EMM_HEADER_LEN`] bytes).
fn decode_frame(frame: &Bytes, transport: Transport) -> Result<EmmMessage, EmmError> {
    let raw_type = u16::from_be_bytes([frame[1], frame[2]]);
    let Some(version) = ProtocolVersion::from_u8(frame[0]) else {
        return Err(EmmError::UnsupportedVersion {
            version: frame[0],
            message_type: raw_type,
        });
    };
    let Some(message_type) = EmmMessageType::from_code(raw_type) else {
        return Err(EmmError::UnknownMessageType {
            message_type: raw_type,
        });
    };
    let p = Params::parse(message_type, frame)?;
    type P = EmmParameterType;
    let body = match message_type {
        EmmMessageType::ChannelSetup => EmmBody::ChannelSetup(ChannelSetup {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            section_tspkt_flag: p.section_tspkt_flag()?,
        }),
        EmmMessageType::ChannelTest => EmmBody::ChannelTest(ChannelTest {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
        }),
        EmmMessageType::ChannelStatus => EmmBody::ChannelStatus(ChannelStatus {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            section_tspkt_flag: p.section_tspkt_flag()?,
        }),
        EmmMessageType::ChannelClose => EmmBody::ChannelClose(ChannelClose {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
        }),
        EmmMessageType::ChannelError => EmmBody::ChannelError(ChannelError {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            error_status: p.error_status()?,
            error_information: p.all(P::ERROR_INFORMATION).map(<[u8]>::to_vec).collect(),
        }),
        EmmMessageType::StreamSetup => EmmBody::StreamSetup(StreamSetup {
            client_id: p.u32(P::CLIENT_ID)?,
            data_channel_id: p.u16(P::DATA_CHANNEL_ID)?,
            data_stream_id: p.u16(P::DATA_STREAM_ID)?,
            data_id: p.u16(P::DATA_ID)?,
            data_type: p.data_type()?,
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
            data_type: p.data_type()?,
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
            error_information: p.all(P::ERROR_INFORMATION).map(<[u8]>::to_vec).collect(),
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
    Ok(EmmMessage { version, body })
}

struct Writer(Vec<u8>);

impl Writer {
    fn start(version: ProtocolVersion, message_type: EmmMessageType) -> Writer {
        let mut v = Vec::with_capacity(64);
        v.push(version.value());
        v.extend_from_slice(&message_type.code().to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        Writer(v)
    }
    /// Fills in message_length.
    fn finish(mut self) -> Result<Vec<u8>, EmmError> {
        let length = self.0.len() - EMM_HEADER_LEN;
        let Ok(length16) = u16::try_from(length) else {
            return Err(EmmError::MessageTooLong {
                message_type: u16::from_be_bytes([self.0[1], self.0[2]]),
                length,
                max: usize::from(u16::MAX),
            });
        };
        self.0[3..5].copy_from_slice(&length16.to_be_bytes());
        Ok(self.0)
    }
    fn param(&mut self, ty: EmmParameterType, value: &[u8]) {
        self.0.extend_from_slice(&ty.0.to_be_bytes());
        // Longer values make the message too long, which finish() reports.
        self.0
            .extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        self.0.extend_from_slice(value);
    }
    fn u8(&mut self, ty: EmmParameterType, v: u8) {
        self.param(ty, &[v]);
    }
    fn u16(&mut self, ty: EmmParameterType, v: u16) {
        self.param(ty, &v.to_be_bytes());
    }
    fn ids(&mut self, client_id: u32, channel: Option<u16>, stream: Option<u16>) {
        self.param(EmmParameterType::CLIENT_ID, &client_id.to_be_bytes());
        if let Some(c) = channel {
            self.u16(EmmParameterType::DATA_CHANNEL_ID, c);
        }
        if let Some(s) = stream {
            self.u16(EmmParameterType::DATA_STREAM_ID, s);
        }
    }
    fn errors(&mut self, status: &[EmmErrorStatus], information: &[Vec<u8>]) {
        for s in status {
            self.u16(EmmParameterType::ERROR_STATUS, s.0);
        }
        for i in information {
            self.param(EmmParameterType::ERROR_INFORMATION, i);
        }
    }
}

fn write_body(w: &mut Writer, body: &EmmBody) {
    type P = EmmParameterType;
    w.ids(
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
            if let Some(b) = bandwidth_kbps {
                w.u16(P::BANDWIDTH, *b);
            }
        }
        EmmBody::DataProvision(m) => {
            w.u16(P::DATA_ID, m.data_id);
            for d in &m.datagrams {
                w.param(P::DATAGRAM, d);
            }
        }
    }
}

/// The parameters of one message, in order, as views into it.
struct Params<'a> {
    at: EmmMessageContext,
    list: Vec<(EmmParameterType, &'a [u8])>,
}

impl<'a> Params<'a> {
    /// Splits `frame`'s parameters; the context is read first so that even a message whose
    /// parameters overrun can be answered on its stream.
    fn parse(message_type: EmmMessageType, frame: &'a [u8]) -> Result<Params<'a>, EmmError> {
        let mut list = Vec::new();
        let mut pos = EMM_HEADER_LEN;
        let mut overrun = None;
        while pos < frame.len() {
            let ty = EmmParameterType(if pos + 2 <= frame.len() {
                u16::from_be_bytes([frame[pos], frame[pos + 1]])
            } else {
                u16::from(frame[pos]) << 8
            });
            if pos + 4 > frame.len() {
                overrun = Some((ty, pos));
                break;
            }
            let len = usize::from(u16::from_be_bytes([frame[pos + 2], frame[pos + 3]]));
            if pos + 4 + len > frame.len() {
                overrun = Some((ty, pos));
                break;
            }
            list.push((ty, &frame[pos + 4..pos + 4 + len]));
            pos += 4 + len;
        }
        let find = |ty: EmmParameterType, len: usize| {
            list.iter()
                .find(|(t, v)| *t == ty && v.len() == len)
                .map(|(_, v)| *v)
        };
        let id16 = |ty| find(ty, 2).map(|v| u16::from_be_bytes([v[0], v[1]]));
        let at = EmmMessageContext {
            message_type,
            client_id: find(EmmParameterType::CLIENT_ID, 4)
                .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            data_channel_id: id16(EmmParameterType::DATA_CHANNEL_ID),
            data_stream_id: if message_type.is_stream_level() {
                id16(EmmParameterType::DATA_STREAM_ID)
            } else {
                None
            },
        };
        if let Some((parameter, offset)) = overrun {
            return Err(EmmError::Overrun {
                at,
                parameter,
                offset,
            });
        }
        if let Some((parameter, _)) = list
            .iter()
            .find(|(t, _)| t.name().is_none() && !t.is_user_defined())
        {
            return Err(EmmError::UnknownParameter {
                at,
                parameter: *parameter,
            });
        }
        Ok(Params { at, list })
    }

    fn all(&self, ty: EmmParameterType) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.list
            .iter()
            .filter(move |(t, _)| *t == ty)
            .map(|(_, v)| *v)
    }

    fn one(&self, ty: EmmParameterType) -> Result<Option<&'a [u8]>, EmmError> {
        let mut it = self.all(ty);
        let first = it.next();
        if it.next().is_some() {
            return Err(EmmError::RepeatedParameter {
                at: self.at,
                parameter: ty,
            });
        }
        Ok(first)
    }

    fn opt_fixed<const N: usize>(&self, ty: EmmParameterType) -> Result<Option<[u8; N]>, EmmError> {
        self.one(ty)?
            .map(|v| <[u8; N]>::try_from(v).map_err(|_| self.length(ty, v.len(), N)))
            .transpose()
    }

    fn fixed<const N: usize>(&self, ty: EmmParameterType) -> Result<[u8; N], EmmError> {
        self.opt_fixed(ty)?.ok_or_else(|| self.missing(ty))
    }

    fn u8(&self, ty: EmmParameterType) -> Result<u8, EmmError> {
        Ok(self.fixed::<1>(ty)?[0])
    }

    fn u16(&self, ty: EmmParameterType) -> Result<u16, EmmError> {
        Ok(u16::from_be_bytes(self.fixed(ty)?))
    }

    fn u32(&self, ty: EmmParameterType) -> Result<u32, EmmError> {
        Ok(u32::from_be_bytes(self.fixed(ty)?))
    }

    fn opt_u16(&self, ty: EmmParameterType) -> Result<Option<u16>, EmmError> {
        Ok(self.opt_fixed(ty)?.map(u16::from_be_bytes))
    }

    fn section_tspkt_flag(&self) -> Result<SectionTspktFlag, EmmError> {
        match self.u8(EmmParameterType::SECTION_TSPKT_FLAG)? {
            0 => Ok(SectionTspktFlag::Sections),
            1 => Ok(SectionTspktFlag::TsPackets),
            _ => Err(self.invalid(EmmParameterType::SECTION_TSPKT_FLAG)),
        }
    }

    fn data_type(&self) -> Result<DataType, EmmError> {
        DataType::from_u8(self.u8(EmmParameterType::DATA_TYPE)?)
            .ok_or_else(|| self.invalid(EmmParameterType::DATA_TYPE))
    }

    fn error_status(&self) -> Result<Vec<EmmErrorStatus>, EmmError> {
        let mut out = Vec::new();
        for v in self.all(EmmParameterType::ERROR_STATUS) {
            let b = <[u8; 2]>::try_from(v)
                .map_err(|_| self.length(EmmParameterType::ERROR_STATUS, v.len(), 2))?;
            out.push(EmmErrorStatus(u16::from_be_bytes(b)));
        }
        if out.is_empty() {
            return Err(self.missing(EmmParameterType::ERROR_STATUS));
        }
        Ok(out)
    }

    fn missing(&self, parameter: EmmParameterType) -> EmmError {
        EmmError::MissingParameter {
            at: self.at,
            parameter,
        }
    }

    fn invalid(&self, parameter: EmmParameterType) -> EmmError {
        EmmError::InvalidValue {
            at: self.at,
            parameter,
        }
    }

    fn length(&self, parameter: EmmParameterType, length: usize, expected: usize) -> EmmError {
        EmmError::InconsistentLength {
            at: self.at,
            parameter,
            length,
            expected,
        }
    }
}
