//! Why a message could not be decoded or encoded, and the error_status that answers it.

use std::fmt;

use super::message::{Body, ErrorStatus, MessageType, ParameterType, SectionTspktFlag};
use super::tlv::fault_variants;

/// The message an error is about: its type and, when they could be read, its ECM_channel_id
/// and ECM_stream_id (to address the channel_error or stream_error that answers it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageContext {
    /// message_type.
    pub message_type: MessageType,
    /// ECM_channel_id, if present and well formed.
    pub ecm_channel_id: Option<u16>,
    /// ECM_stream_id, if present and well formed (stream-level messages only).
    pub ecm_stream_id: Option<u16>,
}

impl fmt::Display for MessageContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message_type)?;
        if let Some(c) = self.ecm_channel_id {
            write!(f, " channel {c}")?;
        }
        if let Some(s) = self.ecm_stream_id {
            write!(f, " stream {s}")?;
        }
        Ok(())
    }
}

/// A message that could not be decoded (or encoded). [`SimulcryptError::error_status`] is the
/// code to answer it with, [`SimulcryptError::answer`] the whole answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimulcryptError {
    /// protocol_version is not 2 or 3.
    #[error("message_type {message_type:#06x}: unsupported protocol_version {version}")]
    UnsupportedVersion {
        /// The header's protocol_version.
        version: u8,
        /// The header's message_type.
        message_type: u16,
    },
    /// message_type is not an ECMG⇔SCS message.
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
    /// A parameter's length runs past the end of the message.
    #[error("{at}: parameter {parameter} at byte {offset} runs past message_length")]
    Overrun {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
        /// Its offset in the message (from protocol_version).
        offset: usize,
    },
    /// A parameter_type that is neither defined by the interface nor user defined.
    #[error("{at}: unknown parameter_type {parameter}")]
    UnknownParameter {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
    },
    /// A fixed-size parameter of the wrong length.
    #[error("{at}: {parameter} is {length} bytes, expected {expected}")]
    InconsistentLength {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
        /// Its length.
        length: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A mandatory parameter is missing.
    #[error("{at}: missing mandatory parameter {parameter}")]
    MissingParameter {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
    },
    /// A parameter that may appear once appears more often.
    #[error("{at}: parameter {parameter} repeated")]
    RepeatedParameter {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
    },
    /// A parameter's value is out of its range.
    #[error("{at}: invalid value for {parameter}")]
    InvalidValue {
        /// The message.
        at: MessageContext,
        /// The parameter.
        parameter: ParameterType,
    },
    /// An ECM_datagram that is not whole sections (or whole TS packets) as the channel's
    /// section_TSpkt_flag says.
    #[error("ECM_datagram of {length} bytes: not whole {format:?}")]
    BadDatagram {
        /// The form it should have.
        format: SectionTspktFlag,
        /// Its length.
        length: usize,
    },
}

impl SimulcryptError {
    /// The error_status that answers the message.
    pub const fn error_status(&self) -> ErrorStatus {
        match self {
            SimulcryptError::UnsupportedVersion { .. } => ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION,
            SimulcryptError::UnknownMessageType { .. } => ErrorStatus::UNKNOWN_MESSAGE_TYPE,
            SimulcryptError::MessageTooLong { .. } => ErrorStatus::MESSAGE_TOO_LONG,
            SimulcryptError::Overrun { .. } | SimulcryptError::RepeatedParameter { .. } => {
                ErrorStatus::INVALID_MESSAGE
            }
            SimulcryptError::UnknownParameter { .. } => ErrorStatus::UNKNOWN_PARAMETER_TYPE,
            SimulcryptError::InconsistentLength { .. } => ErrorStatus::INCONSISTENT_LENGTH,
            SimulcryptError::MissingParameter { .. } => ErrorStatus::MISSING_PARAMETER,
            SimulcryptError::InvalidValue { .. } | SimulcryptError::BadDatagram { .. } => {
                ErrorStatus::INVALID_VALUE
            }
        }
    }

    /// The answer to send back: a stream_error when the refused message's ECM_stream_id could
    /// be read, a channel_error otherwise. `ecm_channel_id` is the channel to name when the
    /// message's own could not be read.
    pub fn answer(&self, ecm_channel_id: u16) -> Body {
        let ctx = self.context();
        Body::error(
            ctx.and_then(|c| c.ecm_channel_id).unwrap_or(ecm_channel_id),
            ctx.and_then(|c| c.ecm_stream_id),
            vec![self.error_status()],
            self.error_information(),
        )
    }
}

// context(), parameter(), error_information() and the conversion from the shared reader's
// faults.
fault_variants!(SimulcryptError, MessageContext, ParameterType);
