//! The EMMG end of one MUX connection (one channel, one data stream), sans-IO: for our test
//! EMMG (`hectl emmg`) and for tests of the MUX side.
//!
//! ```text
//!  EMMG                                       MUX
//!   | channel_setup ------------------------>  |   handle_connected()
//!   | <--------------------- channel_status    |   EmmgSideEvent::ChannelOpen
//!   | stream_setup ------------------------->  |
//!   | <---------------------- stream_status    |   EmmgSideEvent::StreamOpen
//!   | stream_BW_request -------------------->  |
//!   | <--------------- stream_BW_allocation    |   EmmgSideEvent::Ready
//!   | data_provision ----------------------->  |   data_provision() (TCP or UDP)
//!   | channel_test (every keepalive) ------->  |   handle_timeout()
//!   | stream_close_request ----------------->  |   close()
//!   | <-------------- stream_close_response    |
//!   | channel_close ------------------------>  |   EmmgSideEvent::Closed
//! ```
//!
//! Each setup step and the stream's close wait at most `response_timeout` for their answer: a
//! missed one is [`EmmgSideError::Timeout`]. An error during setup (channel_error,
//! stream_error, timeout) ends the session: it sends nothing more until
//! [`EmmgSide::handle_connected`] starts again. The MUX's channel_test and stream_test are
//! answered; its malformed messages get channel_error or stream_error.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::simulcrypt::message::{ProtocolVersion, SectionTspktFlag};

use super::codec::{encode_data_provision, encode_emm, EmmDecoder};
use super::error::EmmError;
use super::message::{
    ChannelClose, ChannelSetup, ChannelStatus, ChannelTest, DataType, EmmBody, EmmErrorStatus,
    EmmMessage, EmmMessageType, StreamBwRequest, StreamCloseRequest, StreamSetup, StreamStatus,
};

/// What the EMMG asks of the MUX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmmgSideConfig {
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
    /// section_TSpkt_flag: sections or TS packets.
    pub format: SectionTspktFlag,
    /// protocol_version of everything sent.
    pub version: ProtocolVersion,
    /// The bandwidth to ask for, kbit/s (`None`: ask without one, for what the MUX gives).
    pub bandwidth_kbps: Option<u16>,
    /// How often a channel_test is sent while the channel is open.
    pub keepalive: Duration,
    /// How long to wait for each answer during setup and close.
    pub response_timeout: Duration,
}

impl EmmgSideConfig {
    /// EMMs as sections, version 3, no bandwidth asked, a 10 s keep-alive, a 5 s response
    /// timeout.
    pub fn new(client_id: u32, data_channel_id: u16, data_stream_id: u16, data_id: u16) -> Self {
        EmmgSideConfig {
            client_id,
            data_channel_id,
            data_stream_id,
            data_id,
            data_type: DataType::Emm,
            format: SectionTspktFlag::Sections,
            version: ProtocolVersion::V3,
            bandwidth_kbps: None,
            keepalive: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
        }
    }
}

/// What happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmmgSideEvent {
    /// channel_status answered channel_setup.
    ChannelOpen,
    /// stream_status answered stream_setup.
    StreamOpen,
    /// The first stream_BW_allocation: data may be sent.
    Ready {
        /// The allocation, kbit/s (`None` if the MUX gave no figure).
        kbps: Option<u16>,
    },
    /// A later stream_BW_allocation.
    Bandwidth {
        /// The allocation, kbit/s.
        kbps: Option<u16>,
    },
    /// stream_close_response answered our close.
    StreamClosed,
    /// The channel is closed (our close finished, or the MUX sent channel_close).
    Closed,
    /// Something went wrong.
    Error(EmmgSideError),
}

/// Errors of the EMMG side.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmmgSideError {
    /// The MUX sent channel_error.
    #[error("channel_error: {error_status:?}")]
    Channel {
        /// error_status.
        error_status: Vec<EmmErrorStatus>,
    },
    /// The MUX sent stream_error.
    #[error("stream_error on stream {data_stream_id}: {error_status:?}")]
    Stream {
        /// data_stream_id.
        data_stream_id: u16,
        /// error_status.
        error_status: Vec<EmmErrorStatus>,
    },
    /// No answer to `request` in time.
    #[error("no answer to {request} in time")]
    Timeout {
        /// The unanswered request.
        request: EmmMessageType,
    },
    /// The MUX sent something that could not be decoded (answered with an error).
    #[error("from the MUX: {0}")]
    Decode(#[from] EmmError),
    /// A message could not be encoded (datagrams adding up to over 65 535 bytes).
    #[error("encoding: {0}")]
    Encode(EmmError),
    /// data_provision before the bandwidth allocation, or after close.
    #[error("the stream is not ready")]
    NotReady,
    /// The MUX sent a message for another client, channel or stream, or one only an EMMG
    /// sends (answered with an error).
    #[error("unexpected {message_type} from the MUX: {error_status}")]
    Unexpected {
        /// message_type.
        message_type: EmmMessageType,
        /// The answer's error_status.
        error_status: EmmErrorStatus,
    },
}

/// Counters, read through [`EmmgSide::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmmgSideStats {
    /// Messages queued by [`EmmgSide::poll_transmit`] (not data_provision).
    pub messages_sent: u64,
    /// Messages decoded from the MUX.
    pub messages_received: u64,
    /// data_provision messages encoded.
    pub data_provisions: u64,
    /// Datagrams in them.
    pub datagrams: u64,
    /// Their bytes.
    pub data_bytes: u64,
    /// Error events.
    pub errors: u64,
}

/// The EMMG end of one MUX connection. See the module documentation.
#[derive(Debug)]
pub struct EmmgSide {
    config: EmmgSideConfig,
    state: State,
    decoder: EmmDecoder,
    /// The answer awaited and its deadline.
    awaiting: Option<(EmmMessageType, Instant)>,
    next_keepalive: Option<Instant>,
    allocated_kbps: Option<u16>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<EmmgSideEvent>,
    stats: EmmgSideStats,
}

impl EmmgSide {
    /// An EMMG for `config`; nothing happens before [`EmmgSide::handle_connected`].
    pub fn new(config: EmmgSideConfig) -> EmmgSide {
        EmmgSide {
            config,
            state: State::Idle,
            decoder: EmmDecoder::new(),
            awaiting: None,
            next_keepalive: None,
            allocated_kbps: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: EmmgSideStats::default(),
        }
    }

    /// The TCP connection is up: starts afresh and queues channel_setup.
    pub fn handle_connected(&mut self, now: Instant) {
        self.reset();
        self.state = State::ChannelSetupSent;
        self.send(EmmBody::ChannelSetup(ChannelSetup {
            client_id: self.config.client_id,
            data_channel_id: self.config.data_channel_id,
            section_tspkt_flag: self.config.format,
        }));
        self.expect(now, EmmMessageType::ChannelStatus);
    }

    /// Bytes read from the connection.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Idle {
            return;
        }
        self.decoder.push(data);
        while let Some(r) = self.decoder.next() {
            match r {
                Ok(msg) => {
                    self.stats.messages_received += 1;
                    self.handle_message(now, msg.body);
                }
                Err(e) => {
                    let answer = e.answer(self.config.client_id, self.config.data_channel_id);
                    self.send(answer);
                    self.error(EmmgSideError::Decode(e));
                }
            }
            if self.state == State::Idle {
                break;
            }
        }
    }

    /// Deadlines that passed by `now`: a missed answer, a keep-alive to send.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((request, _)) = self.awaiting.filter(|&(_, at)| at <= now) {
            self.awaiting = None;
            let request = match request {
                EmmMessageType::ChannelStatus => EmmMessageType::ChannelSetup,
                EmmMessageType::StreamStatus => EmmMessageType::StreamSetup,
                EmmMessageType::StreamBwAllocation => EmmMessageType::StreamBwRequest,
                _ => EmmMessageType::StreamCloseRequest,
            };
            self.error(EmmgSideError::Timeout { request });
            if self.state == State::StreamClosing {
                // Close the channel anyway.
                self.finish_close();
            } else {
                self.fail();
            }
            return;
        }
        if let Some(at) = self.next_keepalive.filter(|&at| at <= now) {
            let next = at + self.config.keepalive;
            self.next_keepalive = Some(if next <= now {
                now + self.config.keepalive
            } else {
                next
            });
            self.send(EmmBody::ChannelTest(ChannelTest {
                client_id: self.config.client_id,
                data_channel_id: self.config.data_channel_id,
            }));
        }
    }

    /// A data_provision of `datagrams` (whole sections or whole TS packets, as configured) on
    /// the stream, to send on the TCP connection or by UDP. Counted as sent.
    pub fn data_provision(&mut self, datagrams: &[&[u8]]) -> Result<Vec<u8>, EmmgSideError> {
        if self.state != State::Ready {
            return Err(EmmgSideError::NotReady);
        }
        let c = &self.config;
        let bytes = encode_data_provision(
            c.version,
            c.client_id,
            Some(c.data_channel_id),
            c.data_stream_id,
            c.data_id,
            datagrams,
        )
        .map_err(EmmgSideError::Encode)?;
        self.stats.data_provisions += 1;
        self.stats.datagrams += datagrams.len() as u64;
        self.stats.data_bytes += datagrams.iter().map(|d| d.len() as u64).sum::<u64>();
        Ok(bytes)
    }

    /// Closes the stream (stream_close_request, then channel_close once it is answered or
    /// its answer is late), or the channel at once if no stream was set up.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Idle | State::StreamClosing => {}
            State::ChannelSetupSent => self.finish_close(),
            State::StreamSetupSent | State::BwRequested | State::Ready => {
                self.state = State::StreamClosing;
                self.send(EmmBody::StreamCloseRequest(StreamCloseRequest {
                    client_id: self.config.client_id,
                    data_channel_id: self.config.data_channel_id,
                    data_stream_id: self.config.data_stream_id,
                }));
                self.expect(now, EmmMessageType::StreamCloseResponse);
            }
        }
    }

    /// The next message to send, whole; call until `None`.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event; call until `None`.
    pub fn poll_event(&mut self) -> Option<EmmgSideEvent> {
        self.events.pop_front()
    }

    /// When [`EmmgSide::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.awaiting.map(|(_, at)| at), self.next_keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether data may be sent (the bandwidth is allocated, no close has begun).
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session is over (closed, failed, or never connected).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// The last bandwidth allocation, kbit/s.
    pub fn allocated_kbps(&self) -> Option<u16> {
        self.allocated_kbps
    }

    /// Counters.
    pub fn stats(&self) -> EmmgSideStats {
        self.stats
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not connected, closed or failed: nothing is sent, no deadlines.
    Idle,
    ChannelSetupSent,
    StreamSetupSent,
    BwRequested,
    Ready,
    StreamClosing,
}

impl EmmgSide {
    fn reset(&mut self) {
        self.state = State::Idle;
        self.decoder = EmmDecoder::new();
        self.awaiting = None;
        self.next_keepalive = None;
        self.allocated_kbps = None;
        self.transmit.clear();
    }

    /// A setup failure: nothing more is sent.
    fn fail(&mut self) {
        self.state = State::Idle;
        self.awaiting = None;
        self.next_keepalive = None;
    }

    fn finish_close(&mut self) {
        self.send(EmmBody::ChannelClose(ChannelClose {
            client_id: self.config.client_id,
            data_channel_id: self.config.data_channel_id,
        }));
        self.fail();
        self.events.push_back(EmmgSideEvent::Closed);
    }

    fn expect(&mut self, now: Instant, answer: EmmMessageType) {
        self.awaiting = Some((answer, now + self.config.response_timeout));
    }

    /// Clears the deadline if it was for `answer`; whether it was.
    fn answered(&mut self, answer: EmmMessageType) -> bool {
        if self.awaiting.is_some_and(|(a, _)| a == answer) {
            self.awaiting = None;
            true
        } else {
            false
        }
    }

    fn in_setup(&self) -> bool {
        matches!(
            self.state,
            State::ChannelSetupSent | State::StreamSetupSent | State::BwRequested
        )
    }

    fn handle_message(&mut self, now: Instant, body: EmmBody) {
        let c = &self.config;
        let status = if body.client_id() != c.client_id {
            Some(EmmErrorStatus::UNKNOWN_CLIENT_ID)
        } else if body.data_channel_id() != Some(c.data_channel_id) {
            Some(EmmErrorStatus::UNKNOWN_DATA_CHANNEL_ID)
        } else if body.data_stream_id().is_some_and(|s| s != c.data_stream_id) {
            Some(EmmErrorStatus::UNKNOWN_DATA_STREAM_ID)
        } else {
            None
        };
        if let Some(status) = status {
            return self.refuse(&body, status);
        }
        match body {
            EmmBody::ChannelStatus(_) => {
                if self.state == State::ChannelSetupSent && self.answered(body.message_type()) {
                    self.events.push_back(EmmgSideEvent::ChannelOpen);
                    self.next_keepalive = Some(now + self.config.keepalive);
                    self.state = State::StreamSetupSent;
                    self.send(EmmBody::StreamSetup(StreamSetup {
                        client_id: self.config.client_id,
                        data_channel_id: self.config.data_channel_id,
                        data_stream_id: self.config.data_stream_id,
                        data_id: self.config.data_id,
                        data_type: self.config.data_type,
                    }));
                    self.expect(now, EmmMessageType::StreamStatus);
                }
                // Otherwise the answer to a keep-alive.
            }
            EmmBody::StreamStatus(_) => {
                if self.state == State::StreamSetupSent && self.answered(body.message_type()) {
                    self.events.push_back(EmmgSideEvent::StreamOpen);
                    self.state = State::BwRequested;
                    self.send(EmmBody::StreamBwRequest(StreamBwRequest {
                        client_id: self.config.client_id,
                        data_channel_id: self.config.data_channel_id,
                        data_stream_id: self.config.data_stream_id,
                        bandwidth_kbps: self.config.bandwidth_kbps,
                    }));
                    self.expect(now, EmmMessageType::StreamBwAllocation);
                }
            }
            EmmBody::StreamBwAllocation(a) => {
                self.allocated_kbps = a.bandwidth_kbps;
                if self.state == State::BwRequested {
                    self.answered(EmmMessageType::StreamBwAllocation);
                    self.state = State::Ready;
                    self.events.push_back(EmmgSideEvent::Ready {
                        kbps: a.bandwidth_kbps,
                    });
                } else {
                    self.events.push_back(EmmgSideEvent::Bandwidth {
                        kbps: a.bandwidth_kbps,
                    });
                }
            }
            EmmBody::StreamCloseResponse(_) => {
                if self.state == State::StreamClosing {
                    self.awaiting = None;
                    self.events.push_back(EmmgSideEvent::StreamClosed);
                    self.finish_close();
                }
            }
            EmmBody::ChannelTest(_) => self.send(EmmBody::ChannelStatus(ChannelStatus {
                client_id: self.config.client_id,
                data_channel_id: self.config.data_channel_id,
                section_tspkt_flag: self.config.format,
            })),
            EmmBody::StreamTest(_) => self.send(EmmBody::StreamStatus(StreamStatus {
                client_id: self.config.client_id,
                data_channel_id: self.config.data_channel_id,
                data_stream_id: self.config.data_stream_id,
                data_id: self.config.data_id,
                data_type: self.config.data_type,
            })),
            EmmBody::ChannelError(e) => {
                self.error(EmmgSideError::Channel {
                    error_status: e.error_status,
                });
                if self.in_setup() {
                    self.fail();
                }
            }
            EmmBody::StreamError(e) => {
                self.error(EmmgSideError::Stream {
                    data_stream_id: e.data_stream_id,
                    error_status: e.error_status,
                });
                if self.state == State::StreamClosing {
                    self.awaiting = None;
                    self.finish_close();
                } else if self.in_setup() {
                    self.fail();
                }
            }
            EmmBody::ChannelClose(_) => {
                self.fail();
                self.events.push_back(EmmgSideEvent::Closed);
            }
            // Only an EMMG sends these.
            other @ (EmmBody::ChannelSetup(_)
            | EmmBody::StreamSetup(_)
            | EmmBody::StreamCloseRequest(_)
            | EmmBody::StreamBwRequest(_)
            | EmmBody::DataProvision(_)) => {
                self.refuse(&other, EmmErrorStatus::INVALID_MESSAGE);
            }
        }
    }

    fn refuse(&mut self, body: &EmmBody, status: EmmErrorStatus) {
        self.send(EmmBody::error(
            body.client_id(),
            body.data_channel_id()
                .unwrap_or(self.config.data_channel_id),
            body.data_stream_id(),
            vec![status],
            Vec::new(),
        ));
        self.error(EmmgSideError::Unexpected {
            message_type: body.message_type(),
            error_status: status,
        });
    }

    fn send(&mut self, body: EmmBody) {
        match encode_emm(&EmmMessage::new(self.config.version, body)) {
            Ok(bytes) => {
                self.stats.messages_sent += 1;
                self.transmit.push_back(bytes);
            }
            // Control messages are small; only a bug gets here.
            Err(e) => self.error(EmmgSideError::Encode(e)),
        }
    }

    fn error(&mut self, e: EmmgSideError) {
        self.stats.errors += 1;
        self.events.push_back(EmmgSideEvent::Error(e));
    }
}
