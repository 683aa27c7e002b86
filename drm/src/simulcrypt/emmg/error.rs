//! Why an EMMG/PDG⇔MUX message could not be decoded or encoded, and the error_status (of this
//! interface, not the ECMG one) that answers it.

use std::fmt;

use crate::simulcrypt::message::SectionTspktFlag;
use crate::simulcrypt::tlv::fault_variants;

use super::message::{EmmBody, EmmErrorStatus, EmmMessageType, EmmParameterType};

/// The message an error is about: its type and the identifiers that could be read from it (to
/// address the channel_error or stream_error that answers it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmmMessageContext {
    /// message_type.
    pub message_type: EmmMessageType,
    /// client_id, if present and well formed.
    pub client_id: Option<u32>,
    /// data_channel_id, if present and well formed.
    pub data_channel_id: Option<u16>,
    /// data_stream_id, if present and well formed (stream-level messages only).
    pub data_stream_id: Option<u16>,
}

impl fmt::Display for EmmMessageContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message_type)?;
        if let Some(c) = self.data_channel_id {
            write!(f, " channel {c}")?;
        }
        if let Some(s) = self.data_stream_id {
            write!(f, " stream {s}")?;
        }
        Ok(())
    }
}

/// An EMMG/PDG⇔MUX message that could not be decoded (or encoded).
/// [`EmmError::error_status`] is the code to answer it with, [`EmmError::answer`] the whole
/// answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmmError {
    /// protocol_version is not 2 or 3.
    #[error("message_type {message_type:#06x}: unsupported protocol_version {version}")]
    UnsupportedVersion {
        /// The header's protocol_version.
        version: u8,
        /// The header's message_type.
        message_type: u16,
    },
    /// message_type is not an EMMG/PDG⇔MUX message.
    #[error("unknown message_type {message_type:#06x}")]
    UnknownMessageType {
        /// The header's message_type.
        message_type: u16,
    },
    /// message_length is over the decoder's limit (or, encoding, over 65 535 bytes).
    #[error("message_type {message_type:#06x}: message_length {length}, limit {max}")]
    MessageTooLong {
        /// The header's message_type.
        message_type: u16,
        /// The length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A UDP datagram ends inside a message (its header, or before message_length bytes).
    #[error("UDP datagram: {remaining} bytes at offset {offset} are not a whole message")]
    Truncated {
        /// Offset of the cut message in the datagram.
        offset: usize,
        /// Bytes left from there.
        remaining: usize,
    },
    /// A parameter's length runs past the end of the message.
    #[error("{at}: parameter {parameter} at byte {offset} runs past message_length")]
    Overrun {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
        /// Its offset in the message (from protocol_version).
        offset: usize,
    },
    /// A parameter_type that is neither defined by the interface nor user defined.
    #[error("{at}: unknown parameter_type {parameter}")]
    UnknownParameter {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
    },
    /// A fixed-size parameter of the wrong length.
    #[error("{at}: {parameter} is {length} bytes, expected {expected}")]
    InconsistentLength {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
        /// Its length.
        length: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A mandatory parameter is missing.
    #[error("{at}: missing mandatory parameter {parameter}")]
    MissingParameter {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
    },
    /// A parameter that may appear once appears more often.
    #[error("{at}: parameter {parameter} repeated")]
    RepeatedParameter {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
    },
    /// A parameter's value is out of its range.
    #[error("{at}: invalid value for {parameter}")]
    InvalidValue {
        /// The message.
        at: EmmMessageContext,
        /// The parameter.
        parameter: EmmParameterType,
    },
    /// A datagram that is not whole sections (or whole TS packets) as the channel's
    /// section_TSpkt_flag says.
    #[error("data_stream_id {data_stream_id}: datagram {index} of {length} bytes is not whole {format:?}")]
    BadDatagram {
        /// The stream.
        data_stream_id: u16,
        /// Its position in the data_provision (from 0).
        index: usize,
        /// The form it should have.
        format: SectionTspktFlag,
        /// Its length.
        length: usize,
    },
}

impl EmmError {
    /// The error_status that answers the message.
    pub const fn error_status(&self) -> EmmErrorStatus {
        match self {
            EmmError::UnsupportedVersion { .. } => EmmErrorStatus::UNSUPPORTED_PROTOCOL_VERSION,
            EmmError::UnknownMessageType { .. } => EmmErrorStatus::UNKNOWN_MESSAGE_TYPE,
            EmmError::MessageTooLong { .. } => EmmErrorStatus::MESSAGE_TOO_LONG,
            EmmError::Truncated { .. }
            | EmmError::Overrun { .. }
            | EmmError::RepeatedParameter { .. } => EmmErrorStatus::INVALID_MESSAGE,
            EmmError::UnknownParameter { .. } => EmmErrorStatus::UNKNOWN_PARAMETER_TYPE,
            EmmError::InconsistentLength { .. } => EmmErrorStatus::INCONSISTENT_LENGTH,
            EmmError::MissingParameter { .. } => EmmErrorStatus::MISSING_PARAMETER,
            EmmError::InvalidValue { .. } | EmmError::BadDatagram { .. } => {
                EmmErrorStatus::INVALID_VALUE
            }
        }
    }

    /// The answer to send back: a stream_error when the refused message's data_stream_id
    /// could be read (or, for [`EmmError::BadDatagram`], is known), a channel_error
    /// otherwise. `client_id` and `data_channel_id` are used when the message's own could not
    /// be read.
    pub fn answer(&self, client_id: u32, data_channel_id: u16) -> EmmBody {
        let ctx = self.context();
        let stream = match self {
            EmmError::BadDatagram { data_stream_id, .. } => Some(*data_stream_id),
            _ => ctx.and_then(|c| c.data_stream_id),
        };
        EmmBody::error(
            ctx.and_then(|c| c.client_id).unwrap_or(client_id),
            ctx.and_then(|c| c.data_channel_id)
                .unwrap_or(data_channel_id),
            stream,
            vec![self.error_status()],
            self.error_information(),
        )
    }
}

// context(), parameter(), error_information() and the conversion from the shared reader's
// faults.
fault_variants!(EmmError, EmmMessageContext, EmmParameterType);
