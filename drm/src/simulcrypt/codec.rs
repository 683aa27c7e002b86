//! Encoding messages to bytes, and decoding them from a TCP byte stream.
//!
//! Decoding is tolerant where the interface allows it and strict where it does not:
//! user-defined parameters (0x8000 and up) and defined parameters a message does not use are
//! skipped; unknown defined-range parameters, wrong fixed lengths, repeated single parameters,
//! missing mandatory ones and out-of-range values are errors that carry the error_status to
//! answer with. An error consumes the offending message only; the stream stays in step as long
//! as message_length can be trusted.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::error::{MessageContext, SimulcryptError};
use super::message::{
    Body, ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, CpCwCombination,
    CwProvision, EcmResponse, ErrorStatus, Message, MessageType, ParameterType, ProtocolVersion,
    SectionTspktFlag, StreamCloseRequest, StreamCloseResponse, StreamError, StreamSetup,
    StreamStatus, StreamTest, SuperCasId, Tenths,
};

/// protocol_version(8) message_type(16) message_length(16).
pub const HEADER_LEN: usize = 5;

/// The decoder's default limit on message_length: an ECM section of the largest private
/// section size (4096 bytes) sent as TS packets, with room to spare.
pub const DEFAULT_MAX_MESSAGE_LENGTH: usize = 8192;

/// The message as bytes. Fails only if its parameters add up to more than 65 535 bytes, which
/// message_length cannot express (only the variable-length parameters can get there).
pub fn encode(msg: &Message) -> Result<Vec<u8>, SimulcryptError> {
    let message_type = msg.body.message_type();
    let mut w = Writer(Vec::with_capacity(64));
    w.0.push(msg.version.value());
    w.0.extend_from_slice(&message_type.code().to_be_bytes());
    w.0.extend_from_slice(&[0, 0]);
    write_body(&mut w, &msg.body);
    let length = w.0.len() - HEADER_LEN;
    let Ok(length16) = u16::try_from(length) else {
        return Err(SimulcryptError::MessageTooLong {
            message_type: message_type.code(),
            length,
            max: usize::from(u16::MAX),
        });
    };
    w.0[3..5].copy_from_slice(&length16.to_be_bytes());
    Ok(w.0)
}

/// Splits a TCP byte stream into messages: [`Decoder::push`] what was read (any amount, split
/// anywhere), then take messages with [`Iterator::next`] until it returns `None`, which means
/// "need more bytes", not "finished": pushing more makes it return messages again. `Debug`
/// shows how much is buffered, never the bytes (they may hold control words).
pub struct Decoder {
    buf: BytesMut,
    /// Bytes of an over-long message still to be thrown away.
    skip: usize,
    max_message_length: usize,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buf.len())
            .field("skip", &self.skip)
            .field("max_message_length", &self.max_message_length)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the [`DEFAULT_MAX_MESSAGE_LENGTH`] limit.
    pub fn new() -> Decoder {
        Decoder::with_max_message_length(DEFAULT_MAX_MESSAGE_LENGTH)
    }

    /// A decoder that refuses messages longer than `max` bytes after the header (at most
    /// 65 535 can be expressed): they are skipped and reported as
    /// [`SimulcryptError::MessageTooLong`] without being buffered.
    pub fn with_max_message_length(max: usize) -> Decoder {
        Decoder {
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

impl Iterator for Decoder {
    type Item = Result<Message, SimulcryptError>;

    /// The next whole message, an error for a message that could not be decoded (which is then
    /// skipped), or `None` until more bytes are pushed.
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let message_type = u16::from_be_bytes([self.buf[1], self.buf[2]]);
        let length = usize::from(u16::from_be_bytes([self.buf[3], self.buf[4]]));
        if length > self.max_message_length {
            let total = HEADER_LEN + length;
            let drop = total.min(self.buf.len());
            self.buf.advance(drop);
            self.skip = total - drop;
            return Some(Err(SimulcryptError::MessageTooLong {
                message_type,
                length,
                max: self.max_message_length,
            }));
        }
        if self.buf.len() < HEADER_LEN + length {
            return None;
        }
        let frame = self.buf.split_to(HEADER_LEN + length).freeze();
        Some(decode_frame(&frame))
    }
}

/// Decodes one whole message (header included).
fn decode_frame(frame: &Bytes) -> Result<Message, SimulcryptError> {
    let raw_type = u16::from_be_bytes([frame[1], frame[2]]);
    let Some(version) = ProtocolVersion::from_u8(frame[0]) else {
        return Err(SimulcryptError::UnsupportedVersion {
            version: frame[0],
            message_type: raw_type,
        });
    };
    let Some(message_type) = MessageType::from_code(raw_type) else {
        return Err(SimulcryptError::UnknownMessageType {
            message_type: raw_type,
        });
    };
    let p = Params::parse(message_type, frame)?;
    let body = match message_type {
        MessageType::ChannelSetup => Body::ChannelSetup(ChannelSetup {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            super_cas_id: SuperCasId(u32::from_be_bytes(p.fixed(ParameterType::SUPER_CAS_ID)?)),
        }),
        MessageType::ChannelTest => Body::ChannelTest(ChannelTest {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
        }),
        MessageType::ChannelStatus => Body::ChannelStatus(ChannelStatus {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            section_tspkt_flag: match p.u8(ParameterType::SECTION_TSPKT_FLAG)? {
                0 => SectionTspktFlag::Sections,
                1 => SectionTspktFlag::TsPackets,
                _ => return Err(p.invalid(ParameterType::SECTION_TSPKT_FLAG)),
            },
            ac_delay_start_ms: p.opt_i16(ParameterType::AC_DELAY_START)?,
            ac_delay_stop_ms: p.opt_i16(ParameterType::AC_DELAY_STOP)?,
            delay_start_ms: p.i16(ParameterType::DELAY_START)?,
            delay_stop_ms: p.i16(ParameterType::DELAY_STOP)?,
            transition_delay_start_ms: p.opt_i16(ParameterType::TRANSITION_DELAY_START)?,
            transition_delay_stop_ms: p.opt_i16(ParameterType::TRANSITION_DELAY_STOP)?,
            ecm_rep_period_ms: p.u16(ParameterType::ECM_REP_PERIOD)?,
            max_streams: p.u16(ParameterType::MAX_STREAMS)?,
            min_cp_duration: Tenths(p.u16(ParameterType::MIN_CP_DURATION)?),
            lead_cw: p.u8(ParameterType::LEAD_CW)?,
            cw_per_msg: match p.u8(ParameterType::CW_PER_MSG)? {
                0 => return Err(p.invalid(ParameterType::CW_PER_MSG)),
                n => n,
            },
            max_comp_time_ms: p.u16(ParameterType::MAX_COMP_TIME)?,
        }),
        MessageType::ChannelClose => Body::ChannelClose(ChannelClose {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
        }),
        MessageType::ChannelError => Body::ChannelError(ChannelError {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            error_status: p.error_status()?,
            error_information: p
                .all(ParameterType::ERROR_INFORMATION)
                .map(<[u8]>::to_vec)
                .collect(),
        }),
        MessageType::StreamSetup => Body::StreamSetup(StreamSetup {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
            ecm_id: p.u16(ParameterType::ECM_ID)?,
            nominal_cp_duration: Tenths(p.u16(ParameterType::NOMINAL_CP_DURATION)?),
        }),
        MessageType::StreamTest => Body::StreamTest(StreamTest {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
        }),
        MessageType::StreamStatus => Body::StreamStatus(StreamStatus {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
            ecm_id: p.u16(ParameterType::ECM_ID)?,
            access_criteria_transfer_mode: match p
                .u8(ParameterType::ACCESS_CRITERIA_TRANSFER_MODE)?
            {
                0 => false,
                1 => true,
                _ => return Err(p.invalid(ParameterType::ACCESS_CRITERIA_TRANSFER_MODE)),
            },
        }),
        MessageType::StreamCloseRequest => Body::StreamCloseRequest(StreamCloseRequest {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
        }),
        MessageType::StreamCloseResponse => Body::StreamCloseResponse(StreamCloseResponse {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
        }),
        MessageType::StreamError => Body::StreamError(StreamError {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
            error_status: p.error_status()?,
            error_information: p
                .all(ParameterType::ERROR_INFORMATION)
                .map(<[u8]>::to_vec)
                .collect(),
        }),
        MessageType::CwProvision => {
            let mut cp_cw_combinations = Vec::new();
            for v in p.all(ParameterType::CP_CW_COMBINATION) {
                if v.len() < 2 {
                    return Err(p.length(ParameterType::CP_CW_COMBINATION, v.len(), 2));
                }
                cp_cw_combinations.push(CpCwCombination {
                    cp_number: u16::from_be_bytes([v[0], v[1]]),
                    cw: v[2..].to_vec(),
                });
            }
            if cp_cw_combinations.is_empty() {
                return Err(p.missing(ParameterType::CP_CW_COMBINATION));
            }
            Body::CwProvision(CwProvision {
                ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
                ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
                cp_number: p.u16(ParameterType::CP_NUMBER)?,
                cw_encryption: p.one(ParameterType::CW_ENCRYPTION)?.map(<[u8]>::to_vec),
                cp_cw_combinations,
                cp_duration: p.opt_u16(ParameterType::CP_DURATION)?.map(Tenths),
                access_criteria: p.one(ParameterType::ACCESS_CRITERIA)?.map(<[u8]>::to_vec),
            })
        }
        MessageType::EcmResponse => Body::EcmResponse(EcmResponse {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            ecm_stream_id: p.u16(ParameterType::ECM_STREAM_ID)?,
            cp_number: p.u16(ParameterType::CP_NUMBER)?,
            ecm_datagram: {
                let v = p.required(ParameterType::ECM_DATAGRAM)?;
                // A view into the frame, no copy.
                frame.slice_ref(v)
            },
        }),
    };
    Ok(Message { version, body })
}

struct Writer(Vec<u8>);

impl Writer {
    fn param(&mut self, ty: ParameterType, value: &[u8]) {
        self.0.extend_from_slice(&ty.0.to_be_bytes());
        // Longer values make the message too long, which encode() reports.
        self.0
            .extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        self.0.extend_from_slice(value);
    }
    fn u8(&mut self, ty: ParameterType, v: u8) {
        self.param(ty, &[v]);
    }
    fn u16(&mut self, ty: ParameterType, v: u16) {
        self.param(ty, &v.to_be_bytes());
    }
    fn i16(&mut self, ty: ParameterType, v: i16) {
        self.param(ty, &v.to_be_bytes());
    }
    fn opt_i16(&mut self, ty: ParameterType, v: Option<i16>) {
        if let Some(v) = v {
            self.i16(ty, v);
        }
    }
    fn errors(&mut self, status: &[ErrorStatus], information: &[Vec<u8>]) {
        for s in status {
            self.u16(ParameterType::ERROR_STATUS, s.0);
        }
        for i in information {
            self.param(ParameterType::ERROR_INFORMATION, i);
        }
    }
}

fn write_body(w: &mut Writer, body: &Body) {
    w.u16(ParameterType::ECM_CHANNEL_ID, body.ecm_channel_id());
    if let Some(stream) = body.ecm_stream_id() {
        w.u16(ParameterType::ECM_STREAM_ID, stream);
    }
    match body {
        Body::ChannelSetup(m) => {
            w.param(ParameterType::SUPER_CAS_ID, &m.super_cas_id.0.to_be_bytes())
        }
        Body::ChannelTest(_)
        | Body::ChannelClose(_)
        | Body::StreamTest(_)
        | Body::StreamCloseRequest(_)
        | Body::StreamCloseResponse(_) => {}
        Body::ChannelStatus(m) => {
            w.u8(
                ParameterType::SECTION_TSPKT_FLAG,
                m.section_tspkt_flag as u8,
            );
            w.opt_i16(ParameterType::AC_DELAY_START, m.ac_delay_start_ms);
            w.opt_i16(ParameterType::AC_DELAY_STOP, m.ac_delay_stop_ms);
            w.i16(ParameterType::DELAY_START, m.delay_start_ms);
            w.i16(ParameterType::DELAY_STOP, m.delay_stop_ms);
            w.opt_i16(
                ParameterType::TRANSITION_DELAY_START,
                m.transition_delay_start_ms,
            );
            w.opt_i16(
                ParameterType::TRANSITION_DELAY_STOP,
                m.transition_delay_stop_ms,
            );
            w.u16(ParameterType::ECM_REP_PERIOD, m.ecm_rep_period_ms);
            w.u16(ParameterType::MAX_STREAMS, m.max_streams);
            w.u16(ParameterType::MIN_CP_DURATION, m.min_cp_duration.0);
            w.u8(ParameterType::LEAD_CW, m.lead_cw);
            w.u8(ParameterType::CW_PER_MSG, m.cw_per_msg);
            w.u16(ParameterType::MAX_COMP_TIME, m.max_comp_time_ms);
        }
        Body::ChannelError(m) => w.errors(&m.error_status, &m.error_information),
        Body::StreamSetup(m) => {
            w.u16(ParameterType::ECM_ID, m.ecm_id);
            w.u16(ParameterType::NOMINAL_CP_DURATION, m.nominal_cp_duration.0);
        }
        Body::StreamStatus(m) => {
            w.u16(ParameterType::ECM_ID, m.ecm_id);
            w.u8(
                ParameterType::ACCESS_CRITERIA_TRANSFER_MODE,
                u8::from(m.access_criteria_transfer_mode),
            );
        }
        Body::StreamError(m) => w.errors(&m.error_status, &m.error_information),
        Body::CwProvision(m) => {
            w.u16(ParameterType::CP_NUMBER, m.cp_number);
            if let Some(e) = &m.cw_encryption {
                w.param(ParameterType::CW_ENCRYPTION, e);
            }
            for c in &m.cp_cw_combinations {
                let mut v = Vec::with_capacity(2 + c.cw.len());
                v.extend_from_slice(&c.cp_number.to_be_bytes());
                v.extend_from_slice(&c.cw);
                w.param(ParameterType::CP_CW_COMBINATION, &v);
            }
            if let Some(d) = m.cp_duration {
                w.u16(ParameterType::CP_DURATION, d.0);
            }
            if let Some(ac) = &m.access_criteria {
                w.param(ParameterType::ACCESS_CRITERIA, ac);
            }
        }
        Body::EcmResponse(m) => {
            w.u16(ParameterType::CP_NUMBER, m.cp_number);
            w.param(ParameterType::ECM_DATAGRAM, &m.ecm_datagram);
        }
    }
}

/// The parameters of one message, in order, as views into it.
struct Params<'a> {
    at: MessageContext,
    list: Vec<(ParameterType, &'a [u8])>,
}

impl<'a> Params<'a> {
    /// Splits `frame`'s parameters; the context is read first so that even a message whose
    /// parameters overrun can be answered on its stream.
    fn parse(message_type: MessageType, frame: &'a [u8]) -> Result<Params<'a>, SimulcryptError> {
        let mut list = Vec::new();
        let mut pos = HEADER_LEN;
        let mut overrun = None;
        while pos < frame.len() {
            let ty = ParameterType(if pos + 2 <= frame.len() {
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
        let id = |ty: ParameterType| {
            list.iter()
                .find(|(t, v)| *t == ty && v.len() == 2)
                .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]))
        };
        let at = MessageContext {
            message_type,
            ecm_channel_id: id(ParameterType::ECM_CHANNEL_ID),
            ecm_stream_id: if message_type.is_stream_level() {
                id(ParameterType::ECM_STREAM_ID)
            } else {
                None
            },
        };
        if let Some((parameter, offset)) = overrun {
            return Err(SimulcryptError::Overrun {
                at,
                parameter,
                offset,
            });
        }
        if let Some((parameter, _)) = list
            .iter()
            .find(|(t, _)| t.name().is_none() && !t.is_user_defined())
        {
            return Err(SimulcryptError::UnknownParameter {
                at,
                parameter: *parameter,
            });
        }
        Ok(Params { at, list })
    }

    fn all(&self, ty: ParameterType) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.list
            .iter()
            .filter(move |(t, _)| *t == ty)
            .map(|(_, v)| *v)
    }

    fn one(&self, ty: ParameterType) -> Result<Option<&'a [u8]>, SimulcryptError> {
        let mut it = self.all(ty);
        let first = it.next();
        if it.next().is_some() {
            return Err(SimulcryptError::RepeatedParameter {
                at: self.at,
                parameter: ty,
            });
        }
        Ok(first)
    }

    fn required(&self, ty: ParameterType) -> Result<&'a [u8], SimulcryptError> {
        self.one(ty)?.ok_or_else(|| self.missing(ty))
    }

    fn opt_fixed<const N: usize>(
        &self,
        ty: ParameterType,
    ) -> Result<Option<[u8; N]>, SimulcryptError> {
        self.one(ty)?
            .map(|v| <[u8; N]>::try_from(v).map_err(|_| self.length(ty, v.len(), N)))
            .transpose()
    }

    fn fixed<const N: usize>(&self, ty: ParameterType) -> Result<[u8; N], SimulcryptError> {
        self.opt_fixed(ty)?.ok_or_else(|| self.missing(ty))
    }

    fn u8(&self, ty: ParameterType) -> Result<u8, SimulcryptError> {
        Ok(self.fixed::<1>(ty)?[0])
    }

    fn u16(&self, ty: ParameterType) -> Result<u16, SimulcryptError> {
        Ok(u16::from_be_bytes(self.fixed(ty)?))
    }

    fn opt_u16(&self, ty: ParameterType) -> Result<Option<u16>, SimulcryptError> {
        Ok(self.opt_fixed(ty)?.map(u16::from_be_bytes))
    }

    fn i16(&self, ty: ParameterType) -> Result<i16, SimulcryptError> {
        Ok(i16::from_be_bytes(self.fixed(ty)?))
    }

    fn opt_i16(&self, ty: ParameterType) -> Result<Option<i16>, SimulcryptError> {
        Ok(self.opt_fixed(ty)?.map(i16::from_be_bytes))
    }

    fn error_status(&self) -> Result<Vec<ErrorStatus>, SimulcryptError> {
        let mut out = Vec::new();
        for v in self.all(ParameterType::ERROR_STATUS) {
            let b = <[u8; 2]>::try_from(v)
                .map_err(|_| self.length(ParameterType::ERROR_STATUS, v.len(), 2))?;
            out.push(ErrorStatus(u16::from_be_bytes(b)));
        }
        if out.is_empty() {
            return Err(self.missing(ParameterType::ERROR_STATUS));
        }
        Ok(out)
    }

    fn missing(&self, parameter: ParameterType) -> SimulcryptError {
        SimulcryptError::MissingParameter {
            at: self.at,
            parameter,
        }
    }

    fn invalid(&self, parameter: ParameterType) -> SimulcryptError {
        SimulcryptError::InvalidValue {
            at: self.at,
            parameter,
        }
    }

    fn length(&self, parameter: ParameterType, length: usize, expected: usize) -> SimulcryptError {
        SimulcryptError::InconsistentLength {
            at: self.at,
            parameter,
            length,
            expected,
        }
    }
}
