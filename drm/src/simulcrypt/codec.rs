//! Encoding ECMG⇔SCS messages to bytes, and decoding them from a TCP byte stream: this
//! interface's message bodies, over the framing ([`super::frame`]) and the parameter reading and
//! writing ([`super::tlv`]) it shares with the EMMG/PDG⇔MUX interface.
//!
//! Decoding errors carry the error_status to answer with; an error consumes the offending
//! message only, and the stream stays in step as long as message_length can be trusted.

use std::fmt;

use bytes::Bytes;

use super::error::{MessageContext, SimulcryptError};
use super::frame::FrameDecoder;
use super::message::{
    Body, ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, CpCwCombination,
    CwProvision, EcmResponse, ErrorStatus, Message, MessageType, ParameterType, StreamCloseRequest,
    StreamCloseResponse, StreamError, StreamSetup, StreamStatus, StreamTest, SuperCasId, Tenths,
};
use super::tlv::{Fault, Interface, Params, Tlvs, Writer};

/// The decoder's default limit on message_length: an ECM section of the largest private
/// section size (4096 bytes) sent as TS packets, with room to spare.
pub const DEFAULT_MAX_MESSAGE_LENGTH: usize = 8192;

/// The message as bytes. Fails only if its parameters add up to more than 65 535 bytes, which
/// message_length cannot express (only the variable-length parameters can get there).
pub fn encode(msg: &Message) -> Result<Vec<u8>, SimulcryptError> {
    let mut w = Writer::start(msg.version.value(), msg.body.message_type().code());
    write_body(&mut w, &msg.body);
    w.finish()
}

/// Splits a TCP byte stream into messages: [`Decoder::push`] what was read (any amount, split
/// anywhere), then take messages with [`Iterator::next`] until it returns `None`, which means
/// "need more bytes", not "finished": pushing more makes it return messages again. `Debug`
/// shows how much is buffered, never the bytes (they may hold control words).
pub struct Decoder {
    frames: FrameDecoder,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.frames.fmt_as("Decoder", f)
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

impl Iterator for Decoder {
    type Item = Result<Message, SimulcryptError>;

    /// The next whole message, an error for a message that could not be decoded (which is then
    /// skipped), or `None` until more bytes are pushed.
    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.frames.next()? {
            Ok(frame) => decode_frame(&frame),
            Err(oversize) => Err(EcmgScs::error(oversize.into())),
        })
    }
}

/// The ECMG⇔SCS interface's codes and errors, for the shared parameter reader and writer.
pub(crate) enum EcmgScs {}

impl Interface for EcmgScs {
    type MessageType = MessageType;
    type Parameter = ParameterType;
    type ErrorStatus = ErrorStatus;
    type Context = MessageContext;
    type Error = SimulcryptError;

    const ERROR_STATUS: ParameterType = ParameterType::ERROR_STATUS;
    const ERROR_INFORMATION: ParameterType = ParameterType::ERROR_INFORMATION;

    fn message_type(code: u16) -> Option<MessageType> {
        MessageType::from_code(code)
    }
    fn parameter(code: u16) -> ParameterType {
        ParameterType(code)
    }
    fn parameter_code(parameter: ParameterType) -> u16 {
        parameter.0
    }
    fn is_allowed(parameter: ParameterType) -> bool {
        parameter.name().is_some() || parameter.is_user_defined()
    }
    fn error_status(code: u16) -> ErrorStatus {
        ErrorStatus(code)
    }
    fn error_status_code(status: ErrorStatus) -> u16 {
        status.0
    }
    /// ECM_channel_id and, for stream-level messages, ECM_stream_id.
    fn context(message_type: MessageType, params: &Tlvs<'_, ParameterType>) -> MessageContext {
        let id = |ty| params.first(ty).map(u16::from_be_bytes);
        MessageContext {
            message_type,
            ecm_channel_id: id(ParameterType::ECM_CHANNEL_ID),
            ecm_stream_id: if message_type.is_stream_level() {
                id(ParameterType::ECM_STREAM_ID)
            } else {
                None
            },
        }
    }
    fn error(fault: Fault<MessageContext, ParameterType>) -> SimulcryptError {
        SimulcryptError::from_fault(fault)
    }
}

/// Decodes one whole message (header included).
fn decode_frame(frame: &Bytes) -> Result<Message, SimulcryptError> {
    let p = Params::<EcmgScs>::read(frame)?;
    let body = match p.message_type() {
        MessageType::ChannelSetup => Body::ChannelSetup(ChannelSetup {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            super_cas_id: SuperCasId(p.u32(ParameterType::SUPER_CAS_ID)?),
        }),
        MessageType::ChannelTest => Body::ChannelTest(ChannelTest {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
        }),
        MessageType::ChannelStatus => Body::ChannelStatus(ChannelStatus {
            ecm_channel_id: p.u16(ParameterType::ECM_CHANNEL_ID)?,
            section_tspkt_flag: p.section_tspkt_flag(ParameterType::SECTION_TSPKT_FLAG)?,
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
            error_information: p.error_information(),
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
            error_information: p.error_information(),
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
    Ok(Message {
        version: p.version(),
        body,
    })
}

fn write_body(w: &mut Writer<EcmgScs>, body: &Body) {
    w.u16(ParameterType::ECM_CHANNEL_ID, body.ecm_channel_id());
    if let Some(stream) = body.ecm_stream_id() {
        w.u16(ParameterType::ECM_STREAM_ID, stream);
    }
    match body {
        Body::ChannelSetup(m) => w.u32(ParameterType::SUPER_CAS_ID, m.super_cas_id.0),
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
            w.opt_u16(ParameterType::CP_DURATION, m.cp_duration.map(|d| d.0));
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
