//! DVB SimulCrypt, the EMMG/PDG⇔MUX interface (ETSI TS 103 197; codes cross-checked with
//! TSDuck's tsEMMGMUX): the messages of protocol versions 2 and 3, their encoding and decoding
//! (a TCP byte stream, or UDP datagrams of whole messages), and both ends as sans-IO state
//! machines.
//!
//! - [`message`] types: [`EmmMessage`] = protocol version + [`EmmBody`], one struct per
//!   message; this interface's own [`EmmMessageType`], [`EmmParameterType`] and
//!   [`EmmErrorStatus`] (the codes differ from the ECMG side's).
//! - [`encode_emm`], [`EmmDecoder`] (TCP) and [`decode_emm_datagram`] (UDP); decoding errors
//!   are [`EmmError`]s that say which error_status answers them.
//! - [`MuxSide`]: the MUX end of one EMMG connection: accepts the channel and its streams,
//!   allocates bandwidth, checks and delivers datagrams (from TCP or UDP) as
//!   [`MuxSideEvent::Data`]. The sockets live in `headend`.
//! - [`EmmgSide`]: the EMMG end (channel, one stream, bandwidth, data_provision), as used by
//!   `hectl emmg`.
//! - [`pattern_section`]: the test EMM sections of `hectl emmg`, whose bytes follow from a
//!   sequence number.
//!
//! Over TCP the EMMG sends every message on its connection; with UDP it may send
//! data_provision as datagrams to the MUX (one or more whole messages each), data_channel_id
//! then being optional. One channel per connection, as TSDuck's EMMG does.

mod codec;
mod emmg_side;
mod error;
pub mod message;
mod mux_side;
mod pattern;

pub use codec::{
    decode_emm_datagram, encode_emm, EmmDecoder, DEFAULT_MAX_EMM_MESSAGE_LENGTH, EMM_HEADER_LEN,
};
pub use emmg_side::{EmmgSide, EmmgSideConfig, EmmgSideError, EmmgSideEvent, EmmgSideStats};
pub use error::{EmmError, EmmMessageContext};
pub use message::{
    ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, DataProvision, DataType,
    EmmBody, EmmErrorStatus, EmmMessage, EmmMessageType, EmmParameterType, StreamBwAllocation,
    StreamBwRequest, StreamCloseRequest, StreamCloseResponse, StreamError, StreamSetup,
    StreamStatus, StreamTest,
};
pub use mux_side::{
    MuxSide, MuxSideConfig, MuxSideError, MuxSideEvent, MuxSideStats, DEFAULT_KEEPALIVE_TIMEOUT,
};
pub use pattern::{
    pattern_section, pattern_sequence, PATTERN_MAX_SECTION_SIZE, PATTERN_MIN_SECTION_SIZE,
};

#[cfg(test)]
mod tests;
