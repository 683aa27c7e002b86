//! DVB SimulCrypt, the ECMG⇔SCS interface (ETSI TS 103 197; parameters and codes as in
//! STANDARDS.md §2.4, cross-checked with TSDuck's tsECMGSCS): the messages of protocol
//! versions 2 and 3, their encoding and incremental decoding, the SCS side as a sans-IO state
//! machine, and ECM datagrams to TS packets.
//!
//! - [`message`] types: [`Message`] = protocol version + [`Body`], one struct per message.
//! - [`encode`] and [`Decoder`] (push bytes as they are read, take whole messages out);
//!   decoding errors are [`SimulcryptError`]s that say which error_status answers them.
//! - [`Scs`]: connects the channel, sets up the streams, provisions control words, keeps the
//!   channel alive, reports ECMs and failures as [`ScsEvent`]s. The TCP client lives in
//!   `headend`.
//! - [`ecm_packets`]: an ECM_datagram (sections or TS packets) as packets on the ECM PID.
//! - [`emmg`]: the EMMG/PDG⇔MUX interface: its messages (TCP and UDP), the MUX end of an EMMG
//!   connection and the EMMG end, sans-IO.
//!
//! Both interfaces frame their messages alike: splitting a TCP stream or a UDP datagram into
//! whole messages (`frame`) and reading and writing their TLV parameters (`tlv`) are shared;
//! each interface keeps its own message types, parameter and error_status codes, bodies and
//! error type.
//!
//! Control words never show in `Debug` output ([`CpCwCombination`] prints their length).

mod codec;
mod datagram;
pub mod emmg;
mod error;
mod frame;
pub mod message;
mod scs;
mod tlv;

pub use codec::{encode, Decoder, DEFAULT_MAX_MESSAGE_LENGTH};
pub use datagram::ecm_packets;
pub use error::{MessageContext, SimulcryptError};
pub use frame::HEADER_LEN;
pub use message::{
    Body, ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, CpCwCombination,
    CwProvision, EcmResponse, ErrorStatus, Message, MessageType, ParameterType, ProtocolVersion,
    SectionTspktFlag, StreamCloseRequest, StreamCloseResponse, StreamError, StreamSetup,
    StreamStatus, StreamTest, SuperCasId, Tenths,
};
pub use scs::{
    Scs, ScsConfig, ScsError, ScsEvent, ScsStats, StreamConfig, MAX_ACCESS_CRITERIA_LEN,
};
