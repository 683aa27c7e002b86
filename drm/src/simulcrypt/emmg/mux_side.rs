//! The MUX end of one EMMG TCP connection, sans-IO: the caller owns the sockets and the clock,
//! feeds in bytes (and UDP data_provisions) and time, and sends what
//! [`MuxSide::poll_transmit`] gives.
//!
//! ```text
//!  EMMG                                       MUX
//!   | channel_setup ------------------------>  |   MuxSideEvent::ChannelOpen
//!   | <--------------------- channel_status    |
//!   | stream_setup ------------------------->  |   MuxSideEvent::StreamOpen
//!   | <---------------------- stream_status    |
//!   | stream_BW_request -------------------->  |   MuxSideEvent::Bandwidth
//!   | <--------------- stream_BW_allocation    |   min(requested, max_bandwidth_kbps)
//!   | data_provision (TCP or UDP) ---------->  |   MuxSideEvent::Data
//!   | stream_close_request ----------------->  |   MuxSideEvent::StreamClosed
//!   | <-------------- stream_close_response    |
//!   | channel_close ------------------------>  |   MuxSideEvent::Closed
//! ```
//!
//! One channel per connection. Every refused message is answered with channel_error or
//! stream_error and the error_status of this interface, and reported as
//! [`MuxSideEvent::Error`]; nothing the EMMG sends makes it panic or ends the channel but
//! channel_close and silence: with nothing received for `keepalive_timeout` (counted from the
//! first bytes) it reports [`MuxSideError::KeepaliveTimeout`] and [`MuxSideEvent::Closed`].
//! After `Closed` it ignores its inputs; the caller closes the connection once
//! [`MuxSide::poll_transmit`] is empty. Answers use the protocol version of the EMMG's last
//! message (version 3 before any).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::simulcrypt::datagram::check_datagram;
use crate::simulcrypt::message::{ProtocolVersion, SectionTspktFlag};

use super::codec::{encode_emm, EmmDecoder};
use super::error::EmmError;
use super::message::{
    ChannelStatus, DataProvision, DataType, EmmBody, EmmErrorStatus, EmmMessage, EmmMessageType,
    StreamBwAllocation, StreamCloseResponse, StreamStatus,
};

/// How long a channel may stay silent by default.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the MUX accepts on one EMMG connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuxSideConfig {
    /// The client_id the EMMG must use.
    pub client_id: u32,
    /// The data_id its streams must have; `None`: any (but each stream its own).
    pub data_id: Option<u16>,
    /// The most bandwidth a stream is given, kbit/s.
    pub max_bandwidth_kbps: u16,
    /// The channel is closed when nothing is received for this long.
    pub keepalive_timeout: Duration,
}

impl MuxSideConfig {
    /// Any data_id, a [`DEFAULT_KEEPALIVE_TIMEOUT`] of 30 s.
    pub fn new(client_id: u32, max_bandwidth_kbps: u16) -> MuxSideConfig {
        MuxSideConfig {
            client_id,
            data_id: None,
            max_bandwidth_kbps,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

/// What happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuxSideEvent {
    /// The EMMG opened its channel.
    ChannelOpen {
        /// data_channel_id.
        data_channel_id: u16,
        /// section_TSpkt_flag: the form of its datagrams.
        format: SectionTspktFlag,
    },
    /// The EMMG opened a data stream.
    StreamOpen {
        /// data_stream_id.
        data_stream_id: u16,
        /// data_id.
        data_id: u16,
        /// data_type (EMM or private data).
        data_type: DataType,
    },
    /// The stream's bandwidth was allocated.
    Bandwidth {
        /// data_stream_id.
        data_stream_id: u16,
        /// The allocation, kbit/s.
        kbps: u16,
    },
    /// Datagrams of an open stream, each checked to be whole sections or whole TS packets as
    /// `format` says (the ones that are not were refused and reported as errors).
    Data {
        /// data_stream_id.
        data_stream_id: u16,
        /// data_id.
        data_id: u16,
        /// The datagrams, views into the received message.
        datagrams: Vec<Bytes>,
        /// Their form.
        format: SectionTspktFlag,
    },
    /// The EMMG closed a stream.
    StreamClosed {
        /// data_stream_id.
        data_stream_id: u16,
    },
    /// The channel is closed (channel_close, or the keep-alive timeout).
    Closed,
    /// Something was refused or went wrong; the channel goes on unless `Closed` follows.
    Error(MuxSideError),
}

/// Errors of the MUX side.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxSideError {
    /// The configuration cannot be used.
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: &'static str,
    },
    /// A message that could not be decoded, or a bad datagram (answered with an error).
    #[error("from the EMMG: {0}")]
    Decode(#[from] EmmError),
    /// A well-formed message that was refused (answered with this error_status).
    #[error("{message_type} (stream {data_stream_id:?}) refused: {error_status}")]
    Refused {
        /// message_type.
        message_type: EmmMessageType,
        /// Its data_stream_id, for stream-level messages.
        data_stream_id: Option<u16>,
        /// The answer's error_status.
        error_status: EmmErrorStatus,
    },
    /// The EMMG sent channel_error.
    #[error("channel_error from the EMMG: {error_status:?}")]
    Channel {
        /// error_status.
        error_status: Vec<EmmErrorStatus>,
    },
    /// The EMMG sent stream_error.
    #[error("stream_error from the EMMG on stream {data_stream_id}: {error_status:?}")]
    Stream {
        /// data_stream_id.
        data_stream_id: u16,
        /// error_status.
        error_status: Vec<EmmErrorStatus>,
    },
    /// Nothing received for the keep-alive timeout.
    #[error("nothing received for {idle:?}")]
    KeepaliveTimeout {
        /// The timeout.
        idle: Duration,
    },
    /// An answer could not be encoded.
    #[error("encoding: {0}")]
    Encode(EmmError),
}

/// Counters, read through [`MuxSide::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxSideStats {
    /// Messages decoded from the TCP connection.
    pub messages_received: u64,
    /// data_provisions taken from UDP.
    pub udp_messages: u64,
    /// Messages queued for sending.
    pub messages_sent: u64,
    /// Datagrams delivered in [`MuxSideEvent::Data`].
    pub datagrams: u64,
    /// Their bytes.
    pub data_bytes: u64,
    /// Error events.
    pub errors: u64,
}

/// The MUX end of one EMMG connection. See the module documentation.
#[derive(Debug)]
pub struct MuxSide {
    config: MuxSideConfig,
    version: ProtocolVersion,
    decoder: EmmDecoder,
    channel: Option<Channel>,
    streams: Vec<Stream>,
    closed: bool,
    last_received: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<MuxSideEvent>,
    stats: MuxSideStats,
}

impl MuxSide {
    /// The MUX side of a new connection.
    pub fn new(config: MuxSideConfig) -> Result<MuxSide, MuxSideError> {
        if config.keepalive_timeout.is_zero() {
            return Err(MuxSideError::Config {
                reason: "keepalive timeout must be positive",
            });
        }
        if config.max_bandwidth_kbps == 0 {
            return Err(MuxSideError::Config {
                reason: "max bandwidth must be positive",
            });
        }
        Ok(MuxSide {
            config,
            version: ProtocolVersion::V3,
            decoder: EmmDecoder::new(),
            channel: None,
            streams: Vec::new(),
            closed: false,
            last_received: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: MuxSideStats::default(),
        })
    }

    /// Bytes read from the TCP connection.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.closed {
            return;
        }
        self.last_received = Some(now);
        self.decoder.push(data);
        while let Some(r) = self.decoder.next() {
            match r {
                Ok(msg) => {
                    self.stats.messages_received += 1;
                    self.version = msg.version;
                    self.handle_message(msg.body);
                }
                Err(e) => self.refuse_undecodable(e),
            }
            if self.closed {
                break;
            }
        }
    }

    /// A message that came by UDP (see [`super::decode_emm_datagram`]): taken if it is a
    /// data_provision for this connection (its client_id, its channel if it names one, an open
    /// stream), handed back otherwise so the caller can offer it to another connection. A
    /// taken one is handled as over TCP: its datagrams are checked, a wrong data_id or a bad
    /// datagram is answered on the TCP connection.
    pub fn handle_udp(&mut self, now: Instant, msg: EmmMessage) -> Result<(), EmmMessage> {
        let ours = match (&msg.body, &self.channel) {
            (EmmBody::DataProvision(d), Some(ch)) => {
                !self.closed
                    && d.client_id == self.config.client_id
                    && d.data_channel_id.is_none_or(|c| c == ch.data_channel_id)
                    && self.stream_index(d.data_stream_id).is_some()
            }
            _ => false,
        };
        if !ours {
            return Err(msg);
        }
        let EmmBody::DataProvision(d) = msg.body else {
            return Err(msg);
        };
        self.last_received = Some(now);
        self.stats.udp_messages += 1;
        self.data(d);
        Ok(())
    }

    /// Closes the channel if nothing was received for the keep-alive timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.error(MuxSideError::KeepaliveTimeout {
                idle: self.config.keepalive_timeout,
            });
            self.close();
        }
    }

    /// When [`MuxSide::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.last_received
            .map(|at| at + self.config.keepalive_timeout)
    }

    /// The next message to send, whole; call until `None`.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event; call until `None`.
    pub fn poll_event(&mut self) -> Option<MuxSideEvent> {
        self.events.pop_front()
    }

    /// The open channel's data_channel_id and datagram form.
    pub fn channel(&self) -> Option<(u16, SectionTspktFlag)> {
        self.channel.map(|c| (c.data_channel_id, c.format))
    }

    /// The bandwidth allocated to an open stream, kbit/s (`None` before its
    /// stream_BW_request, or if it is not open).
    pub fn bandwidth_kbps(&self, data_stream_id: u16) -> Option<u16> {
        self.stream_index(data_stream_id)
            .and_then(|i| self.streams[i].bandwidth_kbps)
    }

    /// Whether the channel is closed (nothing more will happen).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Counters.
    pub fn stats(&self) -> MuxSideStats {
        self.stats
    }
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    data_channel_id: u16,
    format: SectionTspktFlag,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    data_stream_id: u16,
    data_id: u16,
    data_type: DataType,
    bandwidth_kbps: Option<u16>,
}

impl MuxSide {
    fn handle_message(&mut self, body: EmmBody) {
        if body.client_id() != self.config.client_id {
            return self.refuse(&body, EmmErrorStatus::UNKNOWN_CLIENT_ID, true);
        }
        if let EmmBody::ChannelSetup(s) = &body {
            let status = match self.channel {
                Some(c) if c.data_channel_id == s.data_channel_id => {
                    EmmErrorStatus::DATA_CHANNEL_ID_IN_USE
                }
                // One channel per connection.
                Some(_) => EmmErrorStatus::TOO_MANY_CHANNELS,
                None => {
                    let ch = Channel {
                        data_channel_id: s.data_channel_id,
                        format: s.section_tspkt_flag,
                    };
                    self.channel = Some(ch);
                    self.send(EmmBody::ChannelStatus(self.channel_status(ch)));
                    self.events.push_back(MuxSideEvent::ChannelOpen {
                        data_channel_id: ch.data_channel_id,
                        format: ch.format,
                    });
                    return;
                }
            };
            return self.refuse(&body, status, false);
        }
        let Some(ch) = self
            .channel
            .filter(|c| body.data_channel_id() == Some(c.data_channel_id))
        else {
            return self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_CHANNEL_ID, false);
        };
        let stream = body.data_stream_id().and_then(|id| self.stream_index(id));
        match body {
            EmmBody::ChannelSetup(_) => {}
            EmmBody::ChannelTest(_) => self.send(EmmBody::ChannelStatus(self.channel_status(ch))),
            EmmBody::ChannelClose(_) => self.close(),
            EmmBody::ChannelError(e) => self.error(MuxSideError::Channel {
                error_status: e.error_status,
            }),
            EmmBody::StreamSetup(ref s) => {
                let status = if !matches!(s.data_type, DataType::Emm | DataType::PrivateData) {
                    EmmErrorStatus::INVALID_VALUE
                } else if self.config.data_id.is_some_and(|d| d != s.data_id) {
                    EmmErrorStatus::UNKNOWN_DATA_ID
                } else if stream.is_some() {
                    EmmErrorStatus::DATA_STREAM_ID_IN_USE
                } else if self.streams.iter().any(|o| o.data_id == s.data_id) {
                    EmmErrorStatus::DATA_ID_IN_USE
                } else {
                    let st = Stream {
                        data_stream_id: s.data_stream_id,
                        data_id: s.data_id,
                        data_type: s.data_type,
                        bandwidth_kbps: None,
                    };
                    self.streams.push(st);
                    self.send(EmmBody::StreamStatus(self.stream_status(ch, st)));
                    self.events.push_back(MuxSideEvent::StreamOpen {
                        data_stream_id: st.data_stream_id,
                        data_id: st.data_id,
                        data_type: st.data_type,
                    });
                    return;
                };
                self.refuse(&body, status, true);
            }
            EmmBody::StreamTest(_) => match stream {
                Some(i) => self.send(EmmBody::StreamStatus(
                    self.stream_status(ch, self.streams[i]),
                )),
                None => self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_STREAM_ID, true),
            },
            EmmBody::StreamCloseRequest(ref r) => match stream {
                Some(i) => {
                    self.streams.remove(i);
                    self.send(EmmBody::StreamCloseResponse(StreamCloseResponse {
                        client_id: r.client_id,
                        data_channel_id: ch.data_channel_id,
                        data_stream_id: r.data_stream_id,
                    }));
                    self.events.push_back(MuxSideEvent::StreamClosed {
                        data_stream_id: r.data_stream_id,
                    });
                }
                None => self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_STREAM_ID, true),
            },
            EmmBody::StreamError(e) => self.error(MuxSideError::Stream {
                data_stream_id: e.data_stream_id,
                error_status: e.error_status,
            }),
            EmmBody::StreamBwRequest(ref r) => match stream {
                Some(i) => {
                    let max = self.config.max_bandwidth_kbps;
                    let kbps = r.bandwidth_kbps.map_or(max, |b| b.min(max));
                    self.streams[i].bandwidth_kbps = Some(kbps);
                    self.send(EmmBody::StreamBwAllocation(StreamBwAllocation {
                        client_id: r.client_id,
                        data_channel_id: ch.data_channel_id,
                        data_stream_id: r.data_stream_id,
                        bandwidth_kbps: Some(kbps),
                    }));
                    self.events.push_back(MuxSideEvent::Bandwidth {
                        data_stream_id: r.data_stream_id,
                        kbps,
                    });
                }
                None => self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_STREAM_ID, true),
            },
            EmmBody::DataProvision(d) => self.data(d),
            // Only a MUX sends these.
            EmmBody::ChannelStatus(_)
            | EmmBody::StreamStatus(_)
            | EmmBody::StreamCloseResponse(_)
            | EmmBody::StreamBwAllocation(_) => {
                self.refuse(&body, EmmErrorStatus::INVALID_MESSAGE, true)
            }
        }
    }

    /// A data_provision on this connection's channel (TCP) or taken from UDP.
    fn data(&mut self, d: DataProvision) {
        let Some(i) = self.stream_index(d.data_stream_id) else {
            let body = EmmBody::DataProvision(d);
            return self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_STREAM_ID, true);
        };
        let stream = self.streams[i];
        if d.data_id != stream.data_id {
            let body = EmmBody::DataProvision(d);
            return self.refuse(&body, EmmErrorStatus::UNKNOWN_DATA_ID, true);
        }
        let format = self
            .channel
            .map_or(SectionTspktFlag::Sections, |c| c.format);
        let mut good = Vec::with_capacity(d.datagrams.len());
        for (index, datagram) in d.datagrams.into_iter().enumerate() {
            if check_datagram(&datagram, format).is_ok() {
                good.push(datagram);
                continue;
            }
            self.refuse_undecodable(EmmError::BadDatagram {
                data_stream_id: stream.data_stream_id,
                index,
                format,
                length: datagram.len(),
            });
        }
        if good.is_empty() {
            return;
        }
        self.stats.datagrams += good.len() as u64;
        self.stats.data_bytes += good.iter().map(|g| g.len() as u64).sum::<u64>();
        self.events.push_back(MuxSideEvent::Data {
            data_stream_id: stream.data_stream_id,
            data_id: stream.data_id,
            datagrams: good,
            format,
        });
    }

    fn channel_status(&self, ch: Channel) -> ChannelStatus {
        ChannelStatus {
            client_id: self.config.client_id,
            data_channel_id: ch.data_channel_id,
            section_tspkt_flag: ch.format,
        }
    }

    fn stream_status(&self, ch: Channel, st: Stream) -> StreamStatus {
        StreamStatus {
            client_id: self.config.client_id,
            data_channel_id: ch.data_channel_id,
            data_stream_id: st.data_stream_id,
            data_id: st.data_id,
            data_type: st.data_type,
        }
    }

    fn stream_index(&self, data_stream_id: u16) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.data_stream_id == data_stream_id)
    }

    fn close(&mut self) {
        self.closed = true;
        self.channel = None;
        self.streams.clear();
        self.events.push_back(MuxSideEvent::Closed);
    }

    /// Answers `body` with `status`: a stream_error if `stream_level` and it names a stream, a
    /// channel_error otherwise; both echo its client_id and data_channel_id.
    fn refuse(&mut self, body: &EmmBody, status: EmmErrorStatus, stream_level: bool) {
        let data_channel_id = body
            .data_channel_id()
            .or(self.channel.map(|c| c.data_channel_id))
            .unwrap_or(0);
        let data_stream_id = body.data_stream_id().filter(|_| stream_level);
        self.send(EmmBody::error(
            body.client_id(),
            data_channel_id,
            data_stream_id,
            vec![status],
            Vec::new(),
        ));
        self.error(MuxSideError::Refused {
            message_type: body.message_type(),
            data_stream_id,
            error_status: status,
        });
    }

    fn refuse_undecodable(&mut self, e: EmmError) {
        let channel = self.channel.map_or(0, |c| c.data_channel_id);
        self.send(e.answer(self.config.client_id, channel));
        self.error(MuxSideError::Decode(e));
    }

    fn send(&mut self, body: EmmBody) {
        match encode_emm(&EmmMessage::new(self.version, body)) {
            Ok(bytes) => {
                self.stats.messages_sent += 1;
                self.transmit.push_back(bytes);
            }
            // Answers are small; only a bug gets here.
            Err(e) => self.error(MuxSideError::Encode(e)),
        }
    }

    fn error(&mut self, e: MuxSideError) {
        self.stats.errors += 1;
        self.events.push_back(MuxSideEvent::Error(e));
    }
}
