//! The ECMG⇔SCS messages and their parameters (ETSI TS 103 197, ECMG⇔SCS interface).
//!
//! Every message is `protocol_version(8) message_type(16) message_length(16)` followed by
//! `message_length` bytes of parameters, each `parameter_type(16) parameter_length(16) value`,
//! all big-endian:
//!
//! ```text
//!  0        1                 3                  5
//! +--------+-----------------+------------------+---------------------------------------+
//! | ver(8) | message_type(16)| message_length(16)| type(16) length(16) value ... (TLVs)  |
//! +--------+-----------------+------------------+---------------------------------------+
//! ```
//!
//! The types here are the message set of protocol versions 2 and 3; durations keep the unit of
//! the wire in their name or type (`_ms`, [`Tenths`]).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// protocol_version: the SimulCrypt versions this implementation speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// Version 2 (ECM_id in stream_setup is mandatory from this version on).
    V2 = 2,
    /// Version 3.
    V3 = 3,
}

impl ProtocolVersion {
    /// The version of a header byte, `None` for versions not spoken here (1, 4 and up).
    pub const fn from_u8(raw: u8) -> Option<ProtocolVersion> {
        match raw {
            2 => Some(ProtocolVersion::V2),
            3 => Some(ProtocolVersion::V3),
            _ => None,
        }
    }
    /// The header byte.
    pub const fn value(self) -> u8 {
        self as u8
    }
}

/// message_type values of the ECMG⇔SCS interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// channel_setup (SCS → ECMG), 0x0001.
    ChannelSetup = 0x0001,
    /// channel_test (either way), 0x0002.
    ChannelTest = 0x0002,
    /// channel_status (answer to channel_setup and channel_test), 0x0003.
    ChannelStatus = 0x0003,
    /// channel_close (SCS → ECMG), 0x0004.
    ChannelClose = 0x0004,
    /// channel_error (either way), 0x0005.
    ChannelError = 0x0005,
    /// stream_setup (SCS → ECMG), 0x0101.
    StreamSetup = 0x0101,
    /// stream_test (either way), 0x0102.
    StreamTest = 0x0102,
    /// stream_status (answer to stream_setup and stream_test), 0x0103.
    StreamStatus = 0x0103,
    /// stream_close_request (SCS → ECMG), 0x0104.
    StreamCloseRequest = 0x0104,
    /// stream_close_response (ECMG → SCS), 0x0105.
    StreamCloseResponse = 0x0105,
    /// stream_error (either way), 0x0106.
    StreamError = 0x0106,
    /// CW_provision (SCS → ECMG), 0x0201.
    CwProvision = 0x0201,
    /// ECM_response (ECMG → SCS), 0x0202.
    EcmResponse = 0x0202,
}

impl MessageType {
    /// The type of a message_type code, `None` if it is not an ECMG⇔SCS message.
    pub const fn from_code(code: u16) -> Option<MessageType> {
        Some(match code {
            0x0001 => MessageType::ChannelSetup,
            0x0002 => MessageType::ChannelTest,
            0x0003 => MessageType::ChannelStatus,
            0x0004 => MessageType::ChannelClose,
            0x0005 => MessageType::ChannelError,
            0x0101 => MessageType::StreamSetup,
            0x0102 => MessageType::StreamTest,
            0x0103 => MessageType::StreamStatus,
            0x0104 => MessageType::StreamCloseRequest,
            0x0105 => MessageType::StreamCloseResponse,
            0x0106 => MessageType::StreamError,
            0x0201 => MessageType::CwProvision,
            0x0202 => MessageType::EcmResponse,
            _ => return None,
        })
    }
    /// The message_type code.
    pub const fn code(self) -> u16 {
        self as u16
    }
    /// Whether the message is about one ECM stream (carries ECM_stream_id).
    pub const fn is_stream_level(self) -> bool {
        self.code() >= 0x0100
    }
    /// The name the specification uses.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::ChannelSetup => "channel_setup",
            MessageType::ChannelTest => "channel_test",
            MessageType::ChannelStatus => "channel_status",
            MessageType::ChannelClose => "channel_close",
            MessageType::ChannelError => "channel_error",
            MessageType::StreamSetup => "stream_setup",
            MessageType::StreamTest => "stream_test",
            MessageType::StreamStatus => "stream_status",
            MessageType::StreamCloseRequest => "stream_close_request",
            MessageType::StreamCloseResponse => "stream_close_response",
            MessageType::StreamError => "stream_error",
            MessageType::CwProvision => "CW_provision",
            MessageType::EcmResponse => "ECM_response",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// parameter_type: a 16-bit code. Values 0x8000 and up are user defined.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParameterType(pub u16);

impl ParameterType {
    /// Super_CAS_id, 4 bytes.
    pub const SUPER_CAS_ID: ParameterType = ParameterType(0x0001);
    /// section_TSpkt_flag, 1 byte.
    pub const SECTION_TSPKT_FLAG: ParameterType = ParameterType(0x0002);
    /// delay_start, 2 bytes, signed ms.
    pub const DELAY_START: ParameterType = ParameterType(0x0003);
    /// delay_stop, 2 bytes, signed ms.
    pub const DELAY_STOP: ParameterType = ParameterType(0x0004);
    /// transition_delay_start, 2 bytes, signed ms.
    pub const TRANSITION_DELAY_START: ParameterType = ParameterType(0x0005);
    /// transition_delay_stop, 2 bytes, signed ms.
    pub const TRANSITION_DELAY_STOP: ParameterType = ParameterType(0x0006);
    /// ECM_rep_period, 2 bytes, ms.
    pub const ECM_REP_PERIOD: ParameterType = ParameterType(0x0007);
    /// max_streams, 2 bytes.
    pub const MAX_STREAMS: ParameterType = ParameterType(0x0008);
    /// min_CP_duration, 2 bytes, 100 ms units.
    pub const MIN_CP_DURATION: ParameterType = ParameterType(0x0009);
    /// lead_CW, 1 byte.
    pub const LEAD_CW: ParameterType = ParameterType(0x000A);
    /// CW_per_msg, 1 byte.
    pub const CW_PER_MSG: ParameterType = ParameterType(0x000B);
    /// max_comp_time, 2 bytes, ms.
    pub const MAX_COMP_TIME: ParameterType = ParameterType(0x000C);
    /// access_criteria, variable.
    pub const ACCESS_CRITERIA: ParameterType = ParameterType(0x000D);
    /// ECM_channel_id, 2 bytes.
    pub const ECM_CHANNEL_ID: ParameterType = ParameterType(0x000E);
    /// ECM_stream_id, 2 bytes.
    pub const ECM_STREAM_ID: ParameterType = ParameterType(0x000F);
    /// nominal_CP_duration, 2 bytes, 100 ms units.
    pub const NOMINAL_CP_DURATION: ParameterType = ParameterType(0x0010);
    /// access_criteria_transfer_mode, 1 byte (boolean).
    pub const ACCESS_CRITERIA_TRANSFER_MODE: ParameterType = ParameterType(0x0011);
    /// CP_number, 2 bytes.
    pub const CP_NUMBER: ParameterType = ParameterType(0x0012);
    /// CP_duration, 2 bytes, 100 ms units.
    pub const CP_DURATION: ParameterType = ParameterType(0x0013);
    /// CP_CW_combination, CP_number(2) then the control word.
    pub const CP_CW_COMBINATION: ParameterType = ParameterType(0x0014);
    /// ECM_datagram, variable.
    pub const ECM_DATAGRAM: ParameterType = ParameterType(0x0015);
    /// AC_delay_start, 2 bytes, signed ms.
    pub const AC_DELAY_START: ParameterType = ParameterType(0x0016);
    /// AC_delay_stop, 2 bytes, signed ms.
    pub const AC_DELAY_STOP: ParameterType = ParameterType(0x0017);
    /// CW_encryption, variable.
    pub const CW_ENCRYPTION: ParameterType = ParameterType(0x0018);
    /// ECM_id, 2 bytes.
    pub const ECM_ID: ParameterType = ParameterType(0x0019);
    /// error_status, 2 bytes.
    pub const ERROR_STATUS: ParameterType = ParameterType(0x7000);
    /// error_information, variable.
    pub const ERROR_INFORMATION: ParameterType = ParameterType(0x7001);

    /// The name the specification uses, `None` for a code it does not define here.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "Super_CAS_id",
            0x0002 => "section_TSpkt_flag",
            0x0003 => "delay_start",
            0x0004 => "delay_stop",
            0x0005 => "transition_delay_start",
            0x0006 => "transition_delay_stop",
            0x0007 => "ECM_rep_period",
            0x0008 => "max_streams",
            0x0009 => "min_CP_duration",
            0x000A => "lead_CW",
            0x000B => "CW_per_msg",
            0x000C => "max_comp_time",
            0x000D => "access_criteria",
            0x000E => "ECM_channel_id",
            0x000F => "ECM_stream_id",
            0x0010 => "nominal_CP_duration",
            0x0011 => "access_criteria_transfer_mode",
            0x0012 => "CP_number",
            0x0013 => "CP_duration",
            0x0014 => "CP_CW_combination",
            0x0015 => "ECM_datagram",
            0x0016 => "AC_delay_start",
            0x0017 => "AC_delay_stop",
            0x0018 => "CW_encryption",
            0x0019 => "ECM_id",
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

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "parameter {:#06x}", self.0),
        }
    }
}

impl fmt::Debug for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Super_CAS_id: CA_system_id(16) then CA_subsystem_id(16).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SuperCasId(pub u32);

impl SuperCasId {
    /// The CA_system_id (upper 16 bits), as in the CA_descriptor.
    pub const fn ca_system_id(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// The CA_subsystem_id (lower 16 bits).
    pub const fn ca_subsystem_id(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Debug for SuperCasId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl fmt::Display for SuperCasId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A duration in the interface's unit of 100 ms (min_CP_duration, nominal_CP_duration,
/// CP_duration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Tenths(pub u16);

impl Tenths {
    /// The duration.
    pub const fn to_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 100)
    }
    /// `d` rounded down to 100 ms, `None` past 6553.5 s.
    pub fn from_duration(d: Duration) -> Option<Tenths> {
        u16::try_from(d.as_millis() / 100).ok().map(Tenths)
    }
}

/// section_TSpkt_flag: the form of ECM_datagram on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionTspktFlag {
    /// 0: the ECMG sends whole sections; the SCS packetises them.
    Sections = 0,
    /// 1: the ECMG sends whole 188-byte TS packets.
    TsPackets = 1,
}

/// error_status: why a message was refused. Unknown codes are kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorStatus(pub u16);

impl ErrorStatus {
    /// 0x0001 invalid message.
    pub const INVALID_MESSAGE: ErrorStatus = ErrorStatus(0x0001);
    /// 0x0002 unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: ErrorStatus = ErrorStatus(0x0002);
    /// 0x0003 unknown message_type value.
    pub const UNKNOWN_MESSAGE_TYPE: ErrorStatus = ErrorStatus(0x0003);
    /// 0x0004 message too long.
    pub const MESSAGE_TOO_LONG: ErrorStatus = ErrorStatus(0x0004);
    /// 0x0005 unknown Super_CAS_id value.
    pub const UNKNOWN_SUPER_CAS_ID: ErrorStatus = ErrorStatus(0x0005);
    /// 0x0006 unknown ECM_channel_id value.
    pub const UNKNOWN_ECM_CHANNEL_ID: ErrorStatus = ErrorStatus(0x0006);
    /// 0x0007 unknown ECM_stream_id value.
    pub const UNKNOWN_ECM_STREAM_ID: ErrorStatus = ErrorStatus(0x0007);
    /// 0x0008 too many channels on this ECMG.
    pub const TOO_MANY_CHANNELS: ErrorStatus = ErrorStatus(0x0008);
    /// 0x0009 too many ECM streams on this channel.
    pub const TOO_MANY_STREAMS_ON_CHANNEL: ErrorStatus = ErrorStatus(0x0009);
    /// 0x000A too many ECM streams on this ECMG.
    pub const TOO_MANY_STREAMS_ON_ECMG: ErrorStatus = ErrorStatus(0x000A);
    /// 0x000B not enough control words to compute ECM.
    pub const NOT_ENOUGH_CWS: ErrorStatus = ErrorStatus(0x000B);
    /// 0x000C ECMG out of storage capacity.
    pub const OUT_OF_STORAGE: ErrorStatus = ErrorStatus(0x000C);
    /// 0x000D ECMG out of computational resources.
    pub const OUT_OF_COMPUTE: ErrorStatus = ErrorStatus(0x000D);
    /// 0x000E unknown parameter_type value.
    pub const UNKNOWN_PARAMETER_TYPE: ErrorStatus = ErrorStatus(0x000E);
    /// 0x000F inconsistent length for DVB parameter.
    pub const INCONSISTENT_LENGTH: ErrorStatus = ErrorStatus(0x000F);
    /// 0x0010 missing mandatory DVB parameter.
    pub const MISSING_PARAMETER: ErrorStatus = ErrorStatus(0x0010);
    /// 0x0011 invalid value for DVB parameter.
    pub const INVALID_VALUE: ErrorStatus = ErrorStatus(0x0011);
    /// 0x0012 unknown ECM_id value.
    pub const UNKNOWN_ECM_ID: ErrorStatus = ErrorStatus(0x0012);
    /// 0x0013 ECM_channel_id value already in use.
    pub const ECM_CHANNEL_ID_IN_USE: ErrorStatus = ErrorStatus(0x0013);
    /// 0x0014 ECM_stream_id value already in use.
    pub const ECM_STREAM_ID_IN_USE: ErrorStatus = ErrorStatus(0x0014);
    /// 0x0015 ECM_id value already in use.
    pub const ECM_ID_IN_USE: ErrorStatus = ErrorStatus(0x0015);
    /// 0x7000 unknown error.
    pub const UNKNOWN_ERROR: ErrorStatus = ErrorStatus(0x7000);
    /// 0x7001 unrecoverable error.
    pub const UNRECOVERABLE_ERROR: ErrorStatus = ErrorStatus(0x7001);

    /// What the code means, `None` for a reserved or user-defined code.
    pub const fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "invalid message",
            0x0002 => "unsupported protocol version",
            0x0003 => "unknown message_type value",
            0x0004 => "message too long",
            0x0005 => "unknown Super_CAS_id value",
            0x0006 => "unknown ECM_channel_id value",
            0x0007 => "unknown ECM_stream_id value",
            0x0008 => "too many channels on this ECMG",
            0x0009 => "too many ECM streams on this channel",
            0x000A => "too many ECM streams on this ECMG",
            0x000B => "not enough control words to compute ECM",
            0x000C => "ECMG out of storage capacity",
            0x000D => "ECMG out of computational resources",
            0x000E => "unknown parameter_type value",
            0x000F => "inconsistent length for DVB parameter",
            0x0010 => "missing mandatory DVB parameter",
            0x0011 => "invalid value for DVB parameter",
            0x0012 => "unknown ECM_id value",
            0x0013 => "ECM_channel_id value already in use",
            0x0014 => "ECM_stream_id value already in use",
            0x0015 => "ECM_id value already in use",
            0x7000 => "unknown error",
            0x7001 => "unrecoverable error",
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => write!(f, "{:#06x} ({d})", self.0),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl fmt::Debug for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One message with the protocol version of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// protocol_version.
    pub version: ProtocolVersion,
    /// The message itself.
    pub body: Body,
}

impl Message {
    /// A message of `version`.
    pub fn new(version: ProtocolVersion, body: impl Into<Body>) -> Message {
        Message {
            version,
            body: body.into(),
        }
    }
}

/// The ECMG⇔SCS messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
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
    /// CW_provision.
    CwProvision(CwProvision),
    /// ECM_response.
    EcmResponse(EcmResponse),
}

impl Body {
    /// The message_type.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Body::ChannelSetup(_) => MessageType::ChannelSetup,
            Body::ChannelTest(_) => MessageType::ChannelTest,
            Body::ChannelStatus(_) => MessageType::ChannelStatus,
            Body::ChannelClose(_) => MessageType::ChannelClose,
            Body::ChannelError(_) => MessageType::ChannelError,
            Body::StreamSetup(_) => MessageType::StreamSetup,
            Body::StreamTest(_) => MessageType::StreamTest,
            Body::StreamStatus(_) => MessageType::StreamStatus,
            Body::StreamCloseRequest(_) => MessageType::StreamCloseRequest,
            Body::StreamCloseResponse(_) => MessageType::StreamCloseResponse,
            Body::StreamError(_) => MessageType::StreamError,
            Body::CwProvision(_) => MessageType::CwProvision,
            Body::EcmResponse(_) => MessageType::EcmResponse,
        }
    }
    /// The ECM_channel_id every message carries.
    pub const fn ecm_channel_id(&self) -> u16 {
        match self {
            Body::ChannelSetup(m) => m.ecm_channel_id,
            Body::ChannelTest(m) => m.ecm_channel_id,
            Body::ChannelStatus(m) => m.ecm_channel_id,
            Body::ChannelClose(m) => m.ecm_channel_id,
            Body::ChannelError(m) => m.ecm_channel_id,
            Body::StreamSetup(m) => m.ecm_channel_id,
            Body::StreamTest(m) => m.ecm_channel_id,
            Body::StreamStatus(m) => m.ecm_channel_id,
            Body::StreamCloseRequest(m) => m.ecm_channel_id,
            Body::StreamCloseResponse(m) => m.ecm_channel_id,
            Body::StreamError(m) => m.ecm_channel_id,
            Body::CwProvision(m) => m.ecm_channel_id,
            Body::EcmResponse(m) => m.ecm_channel_id,
        }
    }
    /// The ECM_stream_id of a stream-level message, `None` for a channel-level one.
    pub const fn ecm_stream_id(&self) -> Option<u16> {
        Some(match self {
            Body::StreamSetup(m) => m.ecm_stream_id,
            Body::StreamTest(m) => m.ecm_stream_id,
            Body::StreamStatus(m) => m.ecm_stream_id,
            Body::StreamCloseRequest(m) => m.ecm_stream_id,
            Body::StreamCloseResponse(m) => m.ecm_stream_id,
            Body::StreamError(m) => m.ecm_stream_id,
            Body::CwProvision(m) => m.ecm_stream_id,
            Body::EcmResponse(m) => m.ecm_stream_id,
            _ => return None,
        })
    }

    /// stream_error on `ecm_stream_id` if there is one, channel_error otherwise.
    pub(crate) fn error(
        ecm_channel_id: u16,
        ecm_stream_id: Option<u16>,
        error_status: Vec<ErrorStatus>,
        error_information: Vec<Vec<u8>>,
    ) -> Body {
        match ecm_stream_id {
            Some(ecm_stream_id) => Body::StreamError(StreamError {
                ecm_channel_id,
                ecm_stream_id,
                error_status,
                error_information,
            }),
            None => Body::ChannelError(ChannelError {
                ecm_channel_id,
                error_status,
                error_information,
            }),
        }
    }
}

/// `From<$name> for $body` for each message struct, as the variant of the same name (for the
/// bodies of both interfaces).
macro_rules! into_body {
    ($body:ident: $($name:ident),* $(,)?) => {
        $(impl From<$name> for $body {
            fn from(m: $name) -> $body {
                $body::$name(m)
            }
        })*
    };
}

pub(crate) use into_body;

into_body!(
    Body:
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
    CwProvision,
    EcmResponse
);

/// channel_setup: the SCS opens a channel (mandatory: ECM_channel_id, Super_CAS_id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSetup {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// Super_CAS_id.
    pub super_cas_id: SuperCasId,
}

/// channel_test: is the channel alive and free of errors?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelTest {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
}

/// channel_status: the ECMG's parameters for the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// section_TSpkt_flag: the form of ECM_datagram.
    pub section_tspkt_flag: SectionTspktFlag,
    /// AC_delay_start (optional), ms.
    pub ac_delay_start_ms: Option<i16>,
    /// AC_delay_stop (optional), ms.
    pub ac_delay_stop_ms: Option<i16>,
    /// delay_start: the ECM of a crypto-period goes on air this long after (positive) or before
    /// (negative) the period starts, ms.
    pub delay_start_ms: i16,
    /// delay_stop: the ECM of a crypto-period stays on air this long after (positive) or stops
    /// before (negative) the period ends, ms.
    pub delay_stop_ms: i16,
    /// transition_delay_start (optional), ms.
    pub transition_delay_start_ms: Option<i16>,
    /// transition_delay_stop (optional), ms.
    pub transition_delay_stop_ms: Option<i16>,
    /// ECM_rep_period: how often an ECM is repeated on air, ms.
    pub ecm_rep_period_ms: u16,
    /// max_streams: how many ECM streams the channel takes (0: no limit).
    pub max_streams: u16,
    /// min_CP_duration.
    pub min_cp_duration: Tenths,
    /// lead_CW: how many control words ahead of the current one the ECMG needs.
    pub lead_cw: u8,
    /// CW_per_msg: how many CP_CW_combinations each CW_provision carries.
    pub cw_per_msg: u8,
    /// max_comp_time: the longest the ECMG takes to answer a CW_provision, ms.
    pub max_comp_time_ms: u16,
}

/// channel_close: the SCS closes the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelClose {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
}

/// channel_error: a channel-level message was refused, or the channel is in trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelError {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// error_status, one or more.
    pub error_status: Vec<ErrorStatus>,
    /// error_information, zero or more.
    pub error_information: Vec<Vec<u8>>,
}

/// stream_setup: the SCS opens an ECM stream on the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSetup {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// ECM_id (mandatory from version 2 on).
    pub ecm_id: u16,
    /// nominal_CP_duration.
    pub nominal_cp_duration: Tenths,
}

/// stream_test: is the stream alive and free of errors?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamTest {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
}

/// stream_status: the ECMG's answer to stream_setup and stream_test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// ECM_id.
    pub ecm_id: u16,
    /// access_criteria_transfer_mode: `true` if the ECMG wants access_criteria in every
    /// CW_provision, `false` if only when they change.
    pub access_criteria_transfer_mode: bool,
}

/// stream_close_request: the SCS closes an ECM stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCloseRequest {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
}

/// stream_close_response: the ECMG has closed the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCloseResponse {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
}

/// stream_error: a stream-level message was refused, or the stream is in trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// error_status, one or more.
    pub error_status: Vec<ErrorStatus>,
    /// error_information, zero or more.
    pub error_information: Vec<Vec<u8>>,
}

/// CW_provision: control words for the ECMG to put in the ECM of crypto-period `cp_number`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CwProvision {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// CP_number: the crypto-period the ECM is for.
    pub cp_number: u16,
    /// CW_encryption (optional): how the words are encrypted, if they are.
    pub cw_encryption: Option<Vec<u8>>,
    /// CP_CW_combination, CW_per_msg of them.
    pub cp_cw_combinations: Vec<CpCwCombination>,
    /// CP_duration (optional).
    pub cp_duration: Option<Tenths>,
    /// access_criteria (optional).
    pub access_criteria: Option<Vec<u8>>,
}

/// CP_CW_combination: a crypto-period and its control word. `Debug` prints the word's length,
/// never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CpCwCombination {
    /// CP_number.
    pub cp_number: u16,
    /// The control word (16 bytes for AES and SM4, 8 for DVB-CSA).
    pub cw: Vec<u8>,
}

impl fmt::Debug for CpCwCombination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpCwCombination")
            .field("cp_number", &self.cp_number)
            .field("cw_len", &self.cw.len())
            .finish()
    }
}

/// ECM_response: the ECM of crypto-period `cp_number`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcmResponse {
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// CP_number.
    pub cp_number: u16,
    /// ECM_datagram: sections or TS packets, by the channel's section_TSpkt_flag.
    pub ecm_datagram: Bytes,
}
