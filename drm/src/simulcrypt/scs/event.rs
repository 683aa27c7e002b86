//! What the SCS reports: events, errors and counters.

use bytes::Bytes;

use crate::simulcrypt::error::SimulcryptError;
use crate::simulcrypt::message::{
    ChannelStatus, ErrorStatus, MessageType, ProtocolVersion, SectionTspktFlag, StreamStatus,
};

/// What happened on the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScsEvent {
    /// The ECMG opened the channel with these parameters (lead_CW, CW_per_msg, delay_start,
    /// ECM_rep_period, section_TSpkt_flag...).
    ChannelReady(ChannelStatus),
    /// The ECMG refused the channel in one protocol version: the SCS speaks the other from
    /// now on (version fallback; the caller reconnects if the ECMG dropped the connection).
    VersionChanged {
        /// The version refused.
        from: ProtocolVersion,
        /// The version used now.
        to: ProtocolVersion,
    },
    /// The ECMG opened a stream.
    StreamReady(StreamStatus),
    /// The ECM of a crypto-period, checked to be whole sections or TS packets as `format` says.
    Ecm {
        /// ECM_stream_id.
        ecm_stream_id: u16,
        /// CP_number.
        cp_number: u16,
        /// ECM_datagram.
        datagram: Bytes,
        /// Its form (the channel's section_TSpkt_flag); see [`crate::simulcrypt::ecm_packets`].
        format: SectionTspktFlag,
    },
    /// The ECMG closed a stream (stream_close_response).
    StreamClosed {
        /// ECM_stream_id.
        ecm_stream_id: u16,
    },
    /// Something went wrong; the caller's failure policy decides what next.
    Error(ScsError),
    /// The channel is closed (our [`Scs::close`](super::Scs::close) finished, the ECMG sent channel_close, or the
    /// connection went away).
    Closed,
}

/// Errors of the SCS state machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScsError {
    /// The configuration cannot be used.
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: &'static str,
    },
    /// A stream that is not configured.
    #[error("ECM_stream_id {ecm_stream_id}: not configured")]
    UnknownStream {
        /// ECM_stream_id.
        ecm_stream_id: u16,
    },
    /// The channel or the stream is not open (yet, or any more).
    #[error("ECM_stream_id {ecm_stream_id}: not ready")]
    NotReady {
        /// ECM_stream_id.
        ecm_stream_id: u16,
    },
    /// [`Scs::provision`](super::Scs::provision) lacks a control word the ECMG needs (CW_per_msg, lead_CW).
    #[error("ECM_stream_id {ecm_stream_id}: no control word for CP {cp_number}")]
    MissingCw {
        /// ECM_stream_id.
        ecm_stream_id: u16,
        /// The crypto-period whose word is missing.
        cp_number: u16,
    },
    /// No answer in time.
    #[error("no answer to {request} in time (stream {ecm_stream_id:?}, CP {cp_number:?})")]
    Timeout {
        /// The unanswered request.
        request: MessageType,
        /// Its ECM_stream_id, for stream-level requests.
        ecm_stream_id: Option<u16>,
        /// Its CP_number, for CW_provision.
        cp_number: Option<u16>,
    },
    /// The ECMG sent channel_error.
    #[error("channel_error {error_status:?}")]
    Channel {
        /// error_status.
        error_status: Vec<ErrorStatus>,
    },
    /// The ECMG sent stream_error.
    #[error("ECM_stream_id {ecm_stream_id}: stream_error {error_status:?}")]
    Stream {
        /// ECM_stream_id.
        ecm_stream_id: u16,
        /// error_status.
        error_status: Vec<ErrorStatus>,
    },
    /// The ECMG sent something that could not be decoded (answered with an error message).
    #[error("from the ECMG: {0}")]
    Decode(#[from] SimulcryptError),
    /// A message could not be encoded (a variable-length parameter too long).
    #[error("encoding: {0}")]
    Encode(SimulcryptError),
    /// The ECMG sent a message on another channel or stream, or one only an SCS sends
    /// (answered with an error message).
    #[error("unexpected {message_type} (channel {ecm_channel_id}, stream {ecm_stream_id:?})")]
    Unexpected {
        /// message_type.
        message_type: MessageType,
        /// Its ECM_channel_id.
        ecm_channel_id: u16,
        /// Its ECM_stream_id.
        ecm_stream_id: Option<u16>,
    },
}

/// Counters, read through [`Scs::stats`](super::Scs::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScsStats {
    /// Messages queued for sending.
    pub messages_sent: u64,
    /// Messages decoded from the ECMG.
    pub messages_received: u64,
    /// channel_test keep-alives sent.
    pub channel_tests_sent: u64,
    /// channel_status answers to them.
    pub channel_tests_answered: u64,
    /// ECMs received.
    pub ecms: u64,
    /// Error events.
    pub errors: u64,
}
