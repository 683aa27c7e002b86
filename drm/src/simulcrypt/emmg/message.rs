//! The EMMG/PDG⇔MUX messages and their parameters (ETSI TS 103 197, EMMG/PDG⇔MUX interface).
//!
//! The framing is the ECMG⇔SCS one (see [`crate::simulcrypt::message`]): a 5-byte header
//! `protocol_version(8) message_type(16) message_length(16)`, then TLV parameters
//! `parameter_type(16) parameter_length(16) value`, big-endian. The message types, parameter
//! types and error codes are this interface's own: the same number means something else on
//! the ECMG side (0x000E is ECM_channel_id there, unknown client_id here as an error_status).

use std::fmt;

use bytes::Bytes;

use crate::simulcrypt::message::{into_body, ProtocolVersion, SectionTspktFlag};

/// message_type values of the EMMG/PDG⇔MUX interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmmMessageType {
    /// channel_setup (EMMG → MUX), 0x0011.
    ChannelSetup = 0x0011,
    /// channel_test (either way), 0x0012.
    ChannelTest = 0x0012,
    /// channel_status (answer to channel_setup and channel_test), 0x0013.
    ChannelStatus = 0x0013,
    /// channel_close (EMMG → MUX), 0x0014.
    ChannelClose = 0x0014,
    /// channel_error (either way), 0x0015.
    ChannelError = 0x0015,
    /// stream_setup (EMMG → MUX), 0x0111.
    StreamSetup = 0x0111,
    /// stream_test (either way), 0x0112.
    StreamTest = 0x0112,
    /// stream_status (answer to stream_setup and stream_test), 0x0113.
    StreamStatus = 0x0113,
    /// stream_close_request (EMMG → MUX), 0x0114.
    StreamCloseRequest = 0x0114,
    /// stream_close_response (MUX → EMMG), 0x0115.
    StreamCloseResponse = 0x0115,
    /// stream_error (either way), 0x0116.
    StreamError = 0x0116,
    /// stream_BW_request (EMMG → MUX), 0x0117.
    StreamBwRequest = 0x0117,
    /// stream_BW_allocation (MUX → EMMG), 0x0118.
    StreamBwAllocation = 0x0118,
    /// data_provision (EMMG → MUX, over TCP or UDP), 0x0211.
    DataProvision = 0x0211,
}

impl EmmMessageType {
    /// The type of a message_type code, `None` if it is not an EMMG/PDG⇔MUX message.
    pub const fn from_code(code: u16) -> Option<EmmMessageType> {
        Some(match code {
            0x0011 => EmmMessageType::ChannelSetup,
            0x0012 => EmmMessageType::ChannelTest,
            0x0013 => EmmMessageType::ChannelStatus,
            0x0014 => EmmMessageType::ChannelClose,
            0x0015 => EmmMessageType::ChannelError,
            0x0111 => EmmMessageType::StreamSetup,
            0x0112 => EmmMessageType::StreamTest,
            0x0113 => EmmMessageType::StreamStatus,
            0x0114 => EmmMessageType::StreamCloseRequest,
            0x0115 => EmmMessageType::StreamCloseResponse,
            0x0116 => EmmMessageType::StreamError,
            0x0117 => EmmMessageType::StreamBwRequest,
            0x0118 => EmmMessageType::StreamBwAllocation,
            0x0211 => EmmMessageType::DataProvision,
            _ => return None,
        })
    }
    /// The message_type code.
    pub const fn code(self) -> u16 {
        self as u16
    }
    /// Whether the message is about one data stream (carries data_stream_id).
    pub const fn is_stream_level(self) -> bool {
        self.code() >= 0x0100
    }
    /// The name the specification uses.
    pub const fn name(self) -> &'static str {
        match self {
            EmmMessageType::ChannelSetup => "channel_setup",
            EmmMessageType::ChannelTest => "channel_test",
            EmmMessageType::ChannelStatus => "channel_status",
            EmmMessageType::ChannelClose => "channel_close",
            EmmMessageType::ChannelError => "channel_error",
            EmmMessageType::StreamSetup => "stream_setup",
            EmmMessageType::StreamTest => "stream_test",
            EmmMessageType::StreamStatus => "stream_status",
            EmmMessageType::StreamCloseRequest => "stream_close_request",
            EmmMessageType::StreamCloseResponse => "stream_close_response",
            EmmMessageType::StreamError => "stream_error",
            EmmMessageType::StreamBwRequest => "stream_BW_request",
            EmmMessageType::StreamBwAllocation => "stream_BW_allocation",
            EmmMessageType::DataProvision => "data_provision",
        }
    }
}

impl fmt::Display for EmmMessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// parameter_type of the EMMG/PDG⇔MUX interface: a 16-bit code. Values 0x8000 and up are user
/// defined.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmmParameterType(pub u16);

impl EmmParameterType {
    /// client_id, 4 bytes.
    pub const CLIENT_ID: EmmParameterType = EmmParameterType(0x0001);
    /// section_TSpkt_flag, 1 byte.
    pub const SECTION_TSPKT_FLAG: EmmParameterType = EmmParameterType(0x0002);
    /// data_channel_id, 2 bytes.
    pub const DATA_CHANNEL_ID: EmmParameterType = EmmParameterType(0x0003);
    /// data_stream_id, 2 bytes.
    pub const DATA_STREAM_ID: EmmParameterType = EmmParameterType(0x0004);
    /// datagram, variable.
    pub const DATAGRAM: EmmParameterType = EmmParameterType(0x0005);
    /// bandwidth, 2 bytes, kbit/s.
    pub const BANDWIDTH: EmmParameterType = EmmParameterType(0x0006);
    /// data_type, 1 byte.
    pub const DATA_TYPE: EmmParameterType = EmmParameterType(0x0007);
    /// data_id, 2 bytes.
    pub const DATA_ID: EmmParameterType = EmmParameterType(0x0008);
    /// error_status, 2 bytes.
    pub const ERROR_STATUS: EmmParameterType = EmmParameterType(0x7000);
    /// error_information, variable.
    pub const ERROR_INFORMATION: EmmParameterType = EmmParameterType(0x7001);

    /// The name the specification uses, `None` for a code this interface does not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "client_id",
            0x0002 => "section_TSpkt_flag",
            0x0003 => "data_channel_id",
            0x0004 => "data_stream_id",
            0x0005 => "datagram",
            0x0006 => "bandwidth",
            0x0007 => "data_type",
            0x0008 => "data_id",
            0x7000 => "error_status",
            0x7001 => "error_information",
            _ => return None,
        })
    }
    /// Whether the code is in the user-defined range (0x8000 and up).
    pub const fn is_user_defined(self) -> bool {
        self.0 >= 0x8000
    }
}

impl fmt::Display for EmmParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "parameter {:#06x}", self.0),
        }
    }
}

impl fmt::Debug for EmmParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// error_status of the EMMG/PDG⇔MUX interface. Unknown codes are kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmmErrorStatus(pub u16);

impl EmmErrorStatus {
    /// 0x0001 invalid message.
    pub const INVALID_MESSAGE: EmmErrorStatus = EmmErrorStatus(0x0001);
    /// 0x0002 unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: EmmErrorStatus = EmmErrorStatus(0x0002);
    /// 0x0003 unknown message_type value.
    pub const UNKNOWN_MESSAGE_TYPE: EmmErrorStatus = EmmErrorStatus(0x0003);
    /// 0x0004 message too long.
    pub const MESSAGE_TOO_LONG: EmmErrorStatus = EmmErrorStatus(0x0004);
    /// 0x0005 unknown data_stream_id value.
    pub const UNKNOWN_DATA_STREAM_ID: EmmErrorStatus = EmmErrorStatus(0x0005);
    /// 0x0006 unknown data_channel_id value.
    pub const UNKNOWN_DATA_CHANNEL_ID: EmmErrorStatus = EmmErrorStatus(0x0006);
    /// 0x0007 too many channels on this MUX.
    pub const TOO_MANY_CHANNELS: EmmErrorStatus = EmmErrorStatus(0x0007);
    /// 0x0008 too many data streams on this channel.
    pub const TOO_MANY_STREAMS_ON_CHANNEL: EmmErrorStatus = EmmErrorStatus(0x0008);
    /// 0x0009 too many data streams on this MUX.
    pub const TOO_MANY_STREAMS_ON_MUX: EmmErrorStatus = EmmErrorStatus(0x0009);
    /// 0x000A unknown parameter_type.
    pub const UNKNOWN_PARAMETER_TYPE: EmmErrorStatus = EmmErrorStatus(0x000A);
    /// 0x000B inconsistent length for DVB parameter.
    pub const INCONSISTENT_LENGTH: EmmErrorStatus = EmmErrorStatus(0x000B);
    /// 0x000C missing mandatory DVB parameter.
    pub const MISSING_PARAMETER: EmmErrorStatus = EmmErrorStatus(0x000C);
    /// 0x000D invalid value for DVB parameter.
    pub const INVALID_VALUE: EmmErrorStatus = EmmErrorStatus(0x000D);
    /// 0x000E unknown client_id value.
    pub const UNKNOWN_CLIENT_ID: EmmErrorStatus = EmmErrorStatus(0x000E);
    /// 0x000F exceeded bandwidth.
    pub const EXCEEDED_BANDWIDTH: EmmErrorStatus = EmmErrorStatus(0x000F);
    /// 0x0010 unknown data_id value.
    pub const UNKNOWN_DATA_ID: EmmErrorStatus = EmmErrorStatus(0x0010);
    /// 0x0011 data_channel_id value already in use.
    pub const DATA_CHANNEL_ID_IN_USE: EmmErrorStatus = EmmErrorStatus(0x0011);
    /// 0x0012 data_stream_id value already in use.
    pub const DATA_STREAM_ID_IN_USE: EmmErrorStatus = EmmErrorStatus(0x0012);
    /// 0x0013 data_id value already in use.
    pub const DATA_ID_IN_USE: EmmErrorStatus = EmmErrorStatus(0x0013);
    /// 0x0014 client_id value already in use.
    pub const CLIENT_ID_IN_USE: EmmErrorStatus = EmmErrorStatus(0x0014);
    /// 0x7000 unknown error.
    pub const UNKNOWN_ERROR: EmmErrorStatus = EmmErrorStatus(0x7000);
    /// 0x7001 unrecoverable error.
    pub const UNRECOVERABLE_ERROR: EmmErrorStatus = EmmErrorStatus(0x7001);

    /// What the code means, `None` for a reserved or user-defined code.
    pub const fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "invalid message",
            0x0002 => "unsupported protocol version",
            0x0003 => "unknown message_type value",
            0x0004 => "message too long",
            0x0005 => "unknown data_stream_id value",
            0x0006 => "unknown data_channel_id value",
            0x0007 => "too many channels on this MUX",
            0x0008 => "too many data streams on this channel",
            0x0009 => "too many data streams on this MUX",
            0x000A => "unknown parameter_type",
            0x000B => "inconsistent length for DVB parameter",
            0x000C => "missing mandatory DVB parameter",
            0x000D => "invalid value for DVB parameter",
            0x000E => "unknown client_id value",
            0x000F => "exceeded bandwidth",
            0x0010 => "unknown data_id value",
            0x0011 => "data_channel_id value already in use",
            0x0012 => "data_stream_id value already in use",
            0x0013 => "data_id value already in use",
            0x0014 => "client_id value already in use",
            0x7000 => "unknown error",
            0x7001 => "unrecoverable error",
            _ => return None,
        })
    }
}

impl fmt::Display for EmmErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "{:#06x} ({d})", self.0),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl fmt::Debug for EmmErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// data_type: what a data stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// 0x00: EMMs.
    Emm = 0x00,
    /// 0x01: private data.
    PrivateData = 0x01,
    /// 0x02: DSM-CC data carousel.
    DsmccDataCarousel = 0x02,
}

impl DataType {
    /// The type of a data_type byte, `None` for a reserved value.
    pub const fn from_u8(raw: u8) -> Option<DataType> {
        match raw {
            0x00 => Some(DataType::Emm),
            0x01 => Some(DataType::PrivateData),
            0x02 => Some(DataType::DsmccDataCarousel),
            _ => None,
        }
    }
    /// The data_type byte.
    pub const fn value(self) -> u8 {
        self as u8
    }
}

/// One EMMG/PDG⇔MUX message with the protocol version of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmmMessage {
    /// protocol_version.
    pub version: ProtocolVersion,
    /// The message itself.
    pub body: EmmBody,
}

impl EmmMessage {
    /// A message of `version`.
    pub fn new(version: ProtocolVersion, body: impl Into<EmmBody>) -> EmmMessage {
        EmmMessage {
            version,
            body: body.into(),
        }
    }
}

/// The EMMG/PDG⇔MUX messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmmBody {
    /// channel_setup.
    ChannelSetup(ChannelSetup),
    /// channel_test.
    ChannelTest(ChannelTest),
    /// channel_status.
    ChannelStatus(ChannelStatus),
    /// channel_close.
    ChannelClose(ChannelClose),
    /// channel_error.
    ChannelError(ChannelError),
    /// stream_setup.
    StreamSetup(StreamSetup),
    /// stream_test.
    StreamTest(StreamTest),
    /// stream_status.
    StreamStatus(StreamStatus),
    /// stream_close_request.
    StreamCloseRequest(StreamCloseRequest),
    /// stream_close_response.
    StreamCloseResponse(StreamCloseResponse),
    /// stream_error.
    StreamError(StreamError),
    /// stream_BW_request.
    StreamBwRequest(StreamBwRequest),
    /// stream_BW_allocation.
    StreamBwAllocation(StreamBwAllocation),
    /// data_provision.
    DataProvision(DataProvision),
}

impl EmmBody {
    /// The message_type.
    pub const fn message_type(&self) -> EmmMessageType {
        match self {
            EmmBody::ChannelSetup(_) => EmmMessageType::ChannelSetup,
            EmmBody::ChannelTest(_) => EmmMessageType::ChannelTest,
            EmmBody::ChannelStatus(_) => EmmMessageType::ChannelStatus,
            EmmBody::ChannelClose(_) => EmmMessageType::ChannelClose,
            EmmBody::ChannelError(_) => EmmMessageType::ChannelError,
            EmmBody::StreamSetup(_) => EmmMessageType::StreamSetup,
            EmmBody::StreamTest(_) => EmmMessageType::StreamTest,
            EmmBody::StreamStatus(_) => EmmMessageType::StreamStatus,
            EmmBody::StreamCloseRequest(_) => EmmMessageType::StreamCloseRequest,
            EmmBody::StreamCloseResponse(_) => EmmMessageType::StreamCloseResponse,
            EmmBody::StreamError(_) => EmmMessageType::StreamError,
            EmmBody::StreamBwRequest(_) => EmmMessageType::StreamBwRequest,
            EmmBody::StreamBwAllocation(_) => EmmMessageType::StreamBwAllocation,
            EmmBody::DataProvision(_) => EmmMessageType::DataProvision,
        }
    }
    /// The client_id every message carries.
    pub const fn client_id(&self) -> u32 {
        match self {
            EmmBody::ChannelSetup(m) => m.client_id,
            EmmBody::ChannelTest(m) => m.client_id,
            EmmBody::ChannelStatus(m) => m.client_id,
            EmmBody::ChannelClose(m) => m.client_id,
            EmmBody::ChannelError(m) => m.client_id,
            EmmBody::StreamSetup(m) => m.client_id,
            EmmBody::StreamTest(m) => m.client_id,
            EmmBody::StreamStatus(m) => m.client_id,
            EmmBody::StreamCloseRequest(m) => m.client_id,
            EmmBody::StreamCloseResponse(m) => m.client_id,
            EmmBody::StreamError(m) => m.client_id,
            EmmBody::StreamBwRequest(m) => m.client_id,
            EmmBody::StreamBwAllocation(m) => m.client_id,
            EmmBody::DataProvision(m) => m.client_id,
        }
    }
    /// The data_channel_id; `None` only for a data_provision that came by UDP without one.
    pub const fn data_channel_id(&self) -> Option<u16> {
        Some(match self {
            EmmBody::ChannelSetup(m) => m.data_channel_id,
            EmmBody::ChannelTest(m) => m.data_channel_id,
            EmmBody::ChannelStatus(m) => m.data_channel_id,
            EmmBody::ChannelClose(m) => m.data_channel_id,
            EmmBody::ChannelError(m) => m.data_channel_id,
            EmmBody::StreamSetup(m) => m.data_channel_id,
            EmmBody::StreamTest(m) => m.data_channel_id,
            EmmBody::StreamStatus(m) => m.data_channel_id,
            EmmBody::StreamCloseRequest(m) => m.data_channel_id,
            EmmBody::StreamCloseResponse(m) => m.data_channel_id,
            EmmBody::StreamError(m) => m.data_channel_id,
            EmmBody::StreamBwRequest(m) => m.data_channel_id,
            EmmBody::StreamBwAllocation(m) => m.data_channel_id,
            EmmBody::DataProvision(m) => return m.data_channel_id,
        })
    }
    /// The data_stream_id of a stream-level message, `None` for a channel-level one.
    pub const fn data_stream_id(&self) -> Option<u16> {
        Some(match self {
            EmmBody::StreamSetup(m) => m.data_stream_id,
            EmmBody::StreamTest(m) => m.data_stream_id,
            EmmBody::StreamStatus(m) => m.data_stream_id,
            EmmBody::StreamCloseRequest(m) => m.data_stream_id,
            EmmBody::StreamCloseResponse(m) => m.data_stream_id,
            EmmBody::StreamError(m) => m.data_stream_id,
            EmmBody::StreamBwRequest(m) => m.data_stream_id,
            EmmBody::StreamBwAllocation(m) => m.data_stream_id,
            EmmBody::DataProvision(m) => m.data_stream_id,
            _ => return None,
        })
    }

    /// stream_error on `data_stream_id` if there is one, channel_error otherwise.
    pub(crate) fn error(
        client_id: u32,
        data_channel_id: u16,
        data_stream_id: Option<u16>,
        error_status: Vec<EmmErrorStatus>,
        error_information: Vec<Vec<u8>>,
    ) -> EmmBody {
        match data_stream_id {
            Some(data_stream_id) => EmmBody::StreamError(StreamError {
                client_id,
                data_channel_id,
                data_stream_id,
                error_status,
                error_information,
            }),
            None => EmmBody::ChannelError(ChannelError {
                client_id,
                data_channel_id,
                error_status,
                error_information,
            }),
        }
    }
}

into_body!(
    EmmBody:
    ChannelSetup,
    ChannelTest,
    ChannelStatus,
    ChannelClose,
    ChannelError,
    StreamSetup,
    StreamTest,
    StreamStatus,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamError,
    StreamBwRequest,
    StreamBwAllocation,
    DataProvision
);

/// channel_setup: the EMMG opens a data channel (one per TCP connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSetup {
    /// client_id: the EMMG (its CA_system_id in the upper 16 bits, by convention).
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// section_TSpkt_flag: the form of the datagrams on the channel.
    pub section_tspkt_flag: SectionTspktFlag,
}

/// channel_test: is the channel alive and free of errors?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelTest {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
}

/// channel_status: the answer to channel_setup and channel_test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// section_TSpkt_flag.
    pub section_tspkt_flag: SectionTspktFlag,
}

/// channel_close: the EMMG closes the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelClose {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
}

/// channel_error: a channel-level message was refused, or the channel is in trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelError {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// error_status, one or more.
    pub error_status: Vec<EmmErrorStatus>,
    /// error_information, zero or more.
    pub error_information: Vec<Vec<u8>>,
}

/// stream_setup: the EMMG opens a data stream on the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSetup {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// data_id: which data (which EMM PID, as the MUX is configured) the stream feeds.
    pub data_id: u16,
    /// data_type.
    pub data_type: DataType,
}

/// stream_test: is the stream alive and free of errors?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTest {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
}

/// stream_status: the answer to stream_setup and stream_test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// data_id.
    pub data_id: u16,
    /// data_type.
    pub data_type: DataType,
}

/// stream_close_request: the EMMG closes a data stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCloseRequest {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
}

/// stream_close_response: the MUX has closed the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCloseResponse {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
}

/// stream_error: a stream-level message was refused, or the stream is in trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// error_status, one or more.
    pub error_status: Vec<EmmErrorStatus>,
    /// error_information, zero or more.
    pub error_information: Vec<Vec<u8>>,
}

/// stream_BW_request: the EMMG asks for bandwidth (or, without it, what it has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBwRequest {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// bandwidth (optional), kbit/s.
    pub bandwidth_kbps: Option<u16>,
}

/// stream_BW_allocation: the bandwidth the MUX gives the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBwAllocation {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id.
    pub data_channel_id: u16,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// bandwidth (optional), kbit/s.
    pub bandwidth_kbps: Option<u16>,
}

/// data_provision: datagrams for the stream, whole sections or whole TS packets as the
/// channel's section_TSpkt_flag says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataProvision {
    /// client_id.
    pub client_id: u32,
    /// data_channel_id: always there over TCP; a data_provision sent by UDP may leave it out.
    pub data_channel_id: Option<u16>,
    /// data_stream_id.
    pub data_stream_id: u16,
    /// data_id.
    pub data_id: u16,
    /// datagram, one or more; when decoded, views into the received bytes.
    pub datagrams: Vec<Bytes>,
}
