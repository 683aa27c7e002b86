//! The SCS side of one ECMG channel, sans-IO: the caller owns the TCP connection and the
//! clock, feeds in bytes and time, and sends what [`Scs::poll_transmit`] gives.
//!
//! ```text
//!  SCS                                   ECMG
//!   | channel_setup ------------------->  |   handle_connected()
//!   | <----------------- channel_status   |   ScsEvent::ChannelReady
//!   | stream_setup (each stream) ------>  |
//!   | <------------------ stream_status   |   ScsEvent::StreamReady
//!   | CW_provision -------------------->  |   provision()
//!   | <------------------- ECM_response   |   ScsEvent::Ecm
//!   | channel_test (every keepalive) -->  |   handle_timeout()
//!   | <----------------- channel_status   |
//! ```
//!
//! Every request that expects an answer has a deadline: the configured response timeout for
//! channel and stream messages, max_comp_time (or the configured ECM timeout) for
//! CW_provision. A missed one is an [`ScsEvent::Error`] with [`ScsError::Timeout`]; a missed
//! channel or stream answer also fails the channel (nothing more is sent, no more deadlines)
//! so the caller reconnects and calls [`Scs::handle_connected`] again. channel_test and
//! stream_test from the ECMG are answered with the last channel_status and stream_status it
//! sent, as TSDuck's ECMG client does; malformed messages are answered with channel_error or
//! stream_error and the right error_status.
//!
//! Protocol version: the SCS starts with the configured one; with fallback on, a channel_error
//! answering channel_setup, a channel_status in the other version, or a connection lost before
//! channel_status makes it use the other version (reported as [`ScsEvent::VersionChanged`];
//! after a channel_error it sends channel_setup again at once, on the same connection). The
//! version a channel opened with stays for good ([`Scs::version`]).
//!
//! Crypto-period parity: the control word of CP_number `n` is the even word for even `n` and
//! the odd word for odd `n` (as [`crate::keys`] schedules them and [`crate::ecm`] reads them).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::codec::{encode, Decoder};
use super::datagram::check_datagram;
use super::message::{
    Body, ChannelClose, ChannelError, ChannelSetup, ChannelStatus, ChannelTest, CpCwCombination,
    CwProvision, ErrorStatus, Message, MessageType, ProtocolVersion, SectionTspktFlag,
    StreamCloseRequest, StreamError, StreamSetup, StreamStatus, Tenths,
};

mod config;
mod event;

pub use config::{ScsConfig, StreamConfig, MAX_ACCESS_CRITERIA_LEN};
pub use event::{ScsError, ScsEvent, ScsStats};

/// The SCS side of one ECMG channel. See the module documentation. `Debug` shows the state,
/// not the queued bytes (CW_provision carries control words).
pub struct Scs {
    config: ScsConfig,
    /// The version spoken now, and whether a channel opened with it (it stays then).
    version: ProtocolVersion,
    version_settled: bool,
    /// Whether channel_setup was sent again on this connection in the other version.
    retried: bool,
    /// Between handle_connected and the channel's close or the connection's loss.
    connected: bool,
    channel: ChannelState,
    status: Option<ChannelStatus>,
    streams: Vec<Stream>,
    decoder: Decoder,
    pending: Vec<Pending>,
    next_keepalive: Option<Instant>,
    closing: bool,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ScsEvent>,
    stats: ScsStats,
}

impl Scs {
    /// An SCS for `config`; nothing happens before [`Scs::handle_connected`].
    pub fn new(config: ScsConfig) -> Result<Scs, ScsError> {
        if config.streams.is_empty() {
            return Err(ScsError::Config {
                reason: "no ECM stream",
            });
        }
        for (i, s) in config.streams.iter().enumerate() {
            let rest = &config.streams[i + 1..];
            if rest.iter().any(|o| o.ecm_stream_id == s.ecm_stream_id) {
                return Err(ScsError::Config {
                    reason: "ECM_stream_id used twice",
                });
            }
            if rest.iter().any(|o| o.ecm_id == s.ecm_id) {
                return Err(ScsError::Config {
                    reason: "ECM_id used twice",
                });
            }
            if s.access_criteria.len() > MAX_ACCESS_CRITERIA_LEN {
                return Err(ScsError::Config {
                    reason: "access_criteria over 4096 bytes",
                });
            }
        }
        if config.keepalive.is_zero() || config.response_timeout.is_zero() {
            return Err(ScsError::Config {
                reason: "keepalive and response timeout must be positive",
            });
        }
        let streams = config
            .streams
            .iter()
            .map(|c| Stream {
                config: c.clone(),
                state: StreamState::Idle,
                status: None,
                send_access_criteria: true,
            })
            .collect();
        Ok(Scs {
            version: config.version,
            version_settled: !config.version_fallback,
            retried: false,
            config,
            connected: false,
            channel: ChannelState::Idle,
            status: None,
            streams,
            decoder: Decoder::new(),
            pending: Vec::new(),
            next_keepalive: None,
            closing: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ScsStats::default(),
        })
    }

    /// The TCP connection is up: starts afresh (forgetting any earlier connection) and queues
    /// channel_setup.
    pub fn handle_connected(&mut self, now: Instant) {
        self.retried = false;
        self.setup(now);
    }

    /// Starts afresh and queues channel_setup.
    fn setup(&mut self, now: Instant) {
        self.reset();
        self.connected = true;
        self.channel = ChannelState::SetupSent;
        self.send(Body::ChannelSetup(ChannelSetup {
            ecm_channel_id: self.config.ecm_channel_id,
            super_cas_id: self.config.super_cas_id,
        }));
        self.expect(now, Awaiting::ChannelStatus);
    }

    /// The TCP connection went away: forgets the channel and reports [`ScsEvent::Closed`]
    /// (unless it was closed already).
    pub fn handle_disconnected(&mut self, _now: Instant) {
        let connected = self.connected;
        // Unless it already changed on this connection (the ECMG refused, then hung up).
        if self.channel == ChannelState::SetupSent && !self.retried {
            self.switch_version();
        }
        self.reset();
        if connected {
            self.events.push_back(ScsEvent::Closed);
        }
    }

    /// Bytes read from the connection.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.channel == ChannelState::Idle {
            return;
        }
        self.decoder.push(data);
        while let Some(r) = self.decoder.next() {
            match r {
                Ok(msg) => {
                    self.stats.messages_received += 1;
                    self.handle_message(now, msg);
                }
                Err(e) => {
                    let answer = e.answer(self.config.ecm_channel_id);
                    self.send(answer);
                    self.error(ScsError::Decode(e));
                }
            }
            if self.channel == ChannelState::Idle {
                break;
            }
        }
    }

    /// Deadlines that passed by `now`: keep-alives to send, answers that did not come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.channel, ChannelState::SetupSent | ChannelState::Open) {
            return;
        }
        let (late, on_time): (Vec<Pending>, Vec<Pending>) =
            self.pending.drain(..).partition(|p| p.deadline <= now);
        self.pending = on_time;
        for p in late {
            let (request, ecm_stream_id, cp_number) = match p.awaiting {
                Awaiting::ChannelStatus => (
                    if self.channel == ChannelState::Open {
                        MessageType::ChannelTest
                    } else {
                        MessageType::ChannelSetup
                    },
                    None,
                    None,
                ),
                Awaiting::StreamStatus(s) => (MessageType::StreamSetup, Some(s), None),
                Awaiting::StreamClose(s) => (MessageType::StreamCloseRequest, Some(s), None),
                Awaiting::Ecm(s, cp) => (MessageType::CwProvision, Some(s), Some(cp)),
            };
            self.error(ScsError::Timeout {
                request,
                ecm_stream_id,
                cp_number,
            });
            match p.awaiting {
                // A late ECM is the caller's to judge; the channel goes on.
                Awaiting::Ecm(..) => {}
                // Closing anyway: give up on that stream.
                Awaiting::StreamClose(s) if self.closing => {
                    if let Ok(i) = self.stream_index(s) {
                        self.streams[i].state = StreamState::Idle;
                    }
                }
                _ => {
                    self.fail();
                    return;
                }
            }
        }
        self.finish_close_if_done();
        if self.channel == ChannelState::Open {
            if let Some(at) = self.next_keepalive.filter(|&at| at <= now) {
                // Keep the cadence unless the caller was very late.
                let next = at + self.config.keepalive;
                self.next_keepalive = Some(if next <= now {
                    now + self.config.keepalive
                } else {
                    next
                });
                if !self.awaiting(Awaiting::ChannelStatus) {
                    self.send(Body::ChannelTest(ChannelTest {
                        ecm_channel_id: self.config.ecm_channel_id,
                    }));
                    self.stats.channel_tests_sent += 1;
                    self.expect(now, Awaiting::ChannelStatus);
                }
            }
        }
    }

    /// Queues CW_provision for crypto-period `cp_number` of stream `ecm_stream_id`. `cws` holds
    /// `(CP_number, control word)` pairs; the ones the ECMG asked for are sent: CW_per_msg
    /// words ending lead_CW periods after `cp_number` (with lead_CW 1 and CW_per_msg 2, the
    /// words of `cp_number` and `cp_number + 1`). The word of CP `n` is the even one for even
    /// `n`. access_criteria go with the first provision of the stream and then, as the ECMG's
    /// access_criteria_transfer_mode says, with every one or only after
    /// [`Scs::set_access_criteria`].
    pub fn provision(
        &mut self,
        now: Instant,
        ecm_stream_id: u16,
        cp_number: u16,
        cws: &[(u16, [u8; 16])],
        cp_duration: Option<Tenths>,
    ) -> Result<(), ScsError> {
        let idx = self.stream_index(ecm_stream_id)?;
        let status = match (&self.status, self.channel) {
            (Some(s), ChannelState::Open) if self.streams[idx].state == StreamState::Open => s,
            _ => return Err(ScsError::NotReady { ecm_stream_id }),
        };
        let per_msg = u16::from(status.cw_per_msg.max(1));
        let last = cp_number.wrapping_add(u16::from(status.lead_cw));
        let first = last.wrapping_sub(per_msg - 1);
        let mut cp_cw_combinations = Vec::with_capacity(usize::from(per_msg));
        for i in 0..per_msg {
            let cp = first.wrapping_add(i);
            let Some((_, cw)) = cws.iter().find(|(c, _)| *c == cp) else {
                return Err(ScsError::MissingCw {
                    ecm_stream_id,
                    cp_number: cp,
                });
            };
            cp_cw_combinations.push(CpCwCombination {
                cp_number: cp,
                cw: cw.to_vec(),
            });
        }
        let stream = &mut self.streams[idx];
        let every_time = stream
            .status
            .as_ref()
            .is_some_and(|s| s.access_criteria_transfer_mode);
        let access_criteria = if (every_time || stream.send_access_criteria)
            && !stream.config.access_criteria.is_empty()
        {
            Some(stream.config.access_criteria.clone())
        } else {
            None
        };
        stream.send_access_criteria = false;
        self.send(Body::CwProvision(CwProvision {
            ecm_channel_id: self.config.ecm_channel_id,
            ecm_stream_id,
            cp_number,
            cw_encryption: None,
            cp_cw_combinations,
            cp_duration,
            access_criteria,
        }));
        self.expect(now, Awaiting::Ecm(ecm_stream_id, cp_number));
        Ok(())
    }

    /// New access_criteria for a stream, sent with its next CW_provision.
    pub fn set_access_criteria(
        &mut self,
        ecm_stream_id: u16,
        access_criteria: Vec<u8>,
    ) -> Result<(), ScsError> {
        if access_criteria.len() > MAX_ACCESS_CRITERIA_LEN {
            return Err(ScsError::Config {
                reason: "access_criteria over 4096 bytes",
            });
        }
        let idx = self.stream_index(ecm_stream_id)?;
        let stream = &mut self.streams[idx];
        stream.config.access_criteria = access_criteria;
        stream.send_access_criteria = true;
        Ok(())
    }

    /// Closes the channel: stream_close_request for each open stream, then channel_close once
    /// they are all closed (or at once if none is open), then [`ScsEvent::Closed`].
    pub fn close(&mut self, now: Instant) {
        if !matches!(self.channel, ChannelState::SetupSent | ChannelState::Open) {
            return;
        }
        self.closing = true;
        self.pending
            .retain(|p| matches!(p.awaiting, Awaiting::StreamClose(_)));
        self.next_keepalive = None;
        for i in 0..self.streams.len() {
            if matches!(
                self.streams[i].state,
                StreamState::Open | StreamState::SetupSent
            ) {
                let id = self.streams[i].config.ecm_stream_id;
                self.streams[i].state = StreamState::Closing;
                self.send(Body::StreamCloseRequest(StreamCloseRequest {
                    ecm_channel_id: self.config.ecm_channel_id,
                    ecm_stream_id: id,
                }));
                self.expect(now, Awaiting::StreamClose(id));
            }
        }
        self.finish_close_if_done();
    }

    /// The next message to send, whole; call until `None`.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event; call until `None`.
    pub fn poll_event(&mut self) -> Option<ScsEvent> {
        self.events.pop_front()
    }

    /// When [`Scs::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.channel, ChannelState::SetupSent | ChannelState::Open) {
            return None;
        }
        let pending = self.pending.iter().map(|p| p.deadline).min();
        let keepalive = self
            .next_keepalive
            .filter(|_| self.channel == ChannelState::Open);
        match (pending, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The protocol version spoken now.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The ECMG's channel parameters, once the channel is open.
    pub fn channel_status(&self) -> Option<&ChannelStatus> {
        self.status.as_ref()
    }

    /// Whether `ecm_stream_id` is open and takes CW_provision.
    pub fn is_stream_ready(&self, ecm_stream_id: u16) -> bool {
        self.channel == ChannelState::Open
            && self
                .streams
                .iter()
                .any(|s| s.config.ecm_stream_id == ecm_stream_id && s.state == StreamState::Open)
    }

    /// Whether the channel failed on a live connection (refused, or an answer missed): the
    /// caller drops the connection and reconnects.
    pub fn is_failed(&self) -> bool {
        self.connected && self.channel == ChannelState::Idle
    }

    /// Counters.
    pub fn stats(&self) -> ScsStats {
        self.stats
    }
}

impl fmt::Debug for Scs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scs")
            .field("ecm_channel_id", &self.config.ecm_channel_id)
            .field("channel", &self.channel)
            .field("streams", &self.streams)
            .field(
                "awaiting",
                &self.pending.iter().map(|p| p.awaiting).collect::<Vec<_>>(),
            )
            .field("queued_messages", &self.transmit.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelState {
    /// Not connected, closed, or failed: nothing is sent, no deadlines.
    Idle,
    SetupSent,
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Idle,
    SetupSent,
    Open,
    Closing,
}

#[derive(Debug)]
struct Stream {
    config: StreamConfig,
    state: StreamState,
    /// The ECMG's last stream_status, echoed to its stream_test.
    status: Option<StreamStatus>,
    send_access_criteria: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    ChannelStatus,
    StreamStatus(u16),
    StreamClose(u16),
    Ecm(u16, u16),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    deadline: Instant,
    awaiting: Awaiting,
}

impl Scs {
    fn reset(&mut self) {
        self.connected = false;
        self.channel = ChannelState::Idle;
        self.status = None;
        for s in &mut self.streams {
            s.state = StreamState::Idle;
            s.status = None;
            s.send_access_criteria = true;
        }
        self.decoder = Decoder::new();
        self.pending.clear();
        self.next_keepalive = None;
        self.closing = false;
        self.transmit.clear();
    }

    /// A failure the caller must recover from by reconnecting.
    fn fail(&mut self) {
        self.channel = ChannelState::Idle;
        self.pending.clear();
        self.next_keepalive = None;
    }

    /// With fallback on and no channel opened yet: the other version from now on.
    fn switch_version(&mut self) -> bool {
        if self.version_settled {
            return false;
        }
        let from = self.version;
        self.version = match from {
            ProtocolVersion::V3 => ProtocolVersion::V2,
            ProtocolVersion::V2 => ProtocolVersion::V3,
        };
        self.events.push_back(ScsEvent::VersionChanged {
            from,
            to: self.version,
        });
        true
    }

    fn send(&mut self, body: Body) {
        match encode(&Message::new(self.version, body)) {
            Ok(bytes) => {
                self.stats.messages_sent += 1;
                self.transmit.push_back(bytes);
            }
            // Only over-long variable parameters get here, and the configuration bounds them.
            Err(e) => self.error(ScsError::Encode(e)),
        }
    }

    fn error(&mut self, e: ScsError) {
        self.stats.errors += 1;
        self.events.push_back(ScsEvent::Error(e));
    }

    fn expect(&mut self, now: Instant, awaiting: Awaiting) {
        let timeout = match awaiting {
            Awaiting::Ecm(..) => self.config.ecm_timeout.unwrap_or_else(|| {
                match self.status.as_ref().map(|s| s.max_comp_time_ms) {
                    Some(ms) if ms > 0 => Duration::from_millis(u64::from(ms)),
                    _ => self.config.response_timeout,
                }
            }),
            _ => self.config.response_timeout,
        };
        self.pending.push(Pending {
            deadline: now + timeout,
            awaiting,
        });
    }

    fn awaiting(&self, awaiting: Awaiting) -> bool {
        self.pending.iter().any(|p| p.awaiting == awaiting)
    }

    /// Removes the first pending entry matching `f`; whether there was one.
    fn answered(&mut self, f: impl Fn(Awaiting) -> bool) -> bool {
        match self.pending.iter().position(|p| f(p.awaiting)) {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        }
    }

    fn stream_index(&self, ecm_stream_id: u16) -> Result<usize, ScsError> {
        self.streams
            .iter()
            .position(|s| s.config.ecm_stream_id == ecm_stream_id)
            .ok_or(ScsError::UnknownStream { ecm_stream_id })
    }

    fn handle_message(&mut self, now: Instant, msg: Message) {
        if msg.version != self.version
            && self.channel == ChannelState::SetupSent
            && matches!(msg.body, Body::ChannelStatus(_))
            && self.switch_version()
        {
            // The ECMG answered in the other version: speak it from now on.
            self.version_settled = true;
        }
        let body = msg.body;
        let channel = self.config.ecm_channel_id;
        if body.ecm_channel_id() != channel {
            self.send(Body::ChannelError(ChannelError {
                ecm_channel_id: body.ecm_channel_id(),
                error_status: vec![ErrorStatus::UNKNOWN_ECM_CHANNEL_ID],
                error_information: Vec::new(),
            }));
            self.unexpected(&body);
            return;
        }
        let stream_idx = match body.ecm_stream_id() {
            Some(id) => match self.stream_index(id) {
                Ok(i) => Some(i),
                Err(_) => {
                    self.send(Body::StreamError(StreamError {
                        ecm_channel_id: channel,
                        ecm_stream_id: id,
                        error_status: vec![ErrorStatus::UNKNOWN_ECM_STREAM_ID],
                        error_information: Vec::new(),
                    }));
                    self.unexpected(&body);
                    return;
                }
            },
            None => None,
        };
        match body {
            Body::ChannelStatus(status) => self.on_channel_status(now, status),
            Body::ChannelTest(_) => match self.status.clone() {
                Some(status) => self.send(Body::ChannelStatus(status)),
                None => self.send(Body::ChannelError(ChannelError {
                    ecm_channel_id: channel,
                    error_status: vec![ErrorStatus::UNKNOWN_ERROR],
                    error_information: Vec::new(),
                })),
            },
            Body::ChannelError(e) => {
                let setup = self.channel == ChannelState::SetupSent;
                self.error(ScsError::Channel {
                    error_status: e.error_status,
                });
                if setup && !self.retried && self.switch_version() {
                    // Refused in this version: channel_setup again in the other, once.
                    self.setup(now);
                    self.retried = true;
                } else if setup {
                    self.fail();
                } else {
                    // It answers our channel_test, if one is out.
                    self.answered(|a| a == Awaiting::ChannelStatus);
                }
            }
            Body::ChannelClose(_) => {
                self.reset();
                self.events.push_back(ScsEvent::Closed);
            }
            Body::StreamStatus(status) => {
                let Some(i) = stream_idx else { return };
                let id = status.ecm_stream_id;
                self.answered(|a| a == Awaiting::StreamStatus(id));
                let first = self.streams[i].state == StreamState::SetupSent;
                self.streams[i].status = Some(status.clone());
                if first {
                    self.streams[i].state = StreamState::Open;
                    self.events.push_back(ScsEvent::StreamReady(status));
                }
            }
            Body::StreamTest(t) => {
                let Some(i) = stream_idx else { return };
                match self.streams[i].status.clone() {
                    Some(status) => self.send(Body::StreamStatus(status)),
                    None => self.send(Body::StreamError(StreamError {
                        ecm_channel_id: channel,
                        ecm_stream_id: t.ecm_stream_id,
                        error_status: vec![ErrorStatus::UNKNOWN_ECM_STREAM_ID],
                        error_information: Vec::new(),
                    })),
                }
            }
            Body::StreamError(e) => {
                let Some(i) = stream_idx else { return };
                let id = e.ecm_stream_id;
                if self.streams[i].state == StreamState::SetupSent {
                    self.streams[i].state = StreamState::Idle;
                }
                // It answers whatever this stream had outstanding.
                self.pending.retain(|p| {
                    !matches!(p.awaiting, Awaiting::StreamStatus(s) | Awaiting::StreamClose(s) | Awaiting::Ecm(s, _) if s == id)
                });
                self.error(ScsError::Stream {
                    ecm_stream_id: id,
                    error_status: e.error_status,
                });
            }
            Body::StreamCloseResponse(r) => {
                let Some(i) = stream_idx else { return };
                let id = r.ecm_stream_id;
                self.answered(|a| a == Awaiting::StreamClose(id));
                self.pending
                    .retain(|p| !matches!(p.awaiting, Awaiting::Ecm(s, _) if s == id));
                self.streams[i].state = StreamState::Idle;
                self.streams[i].status = None;
                self.events
                    .push_back(ScsEvent::StreamClosed { ecm_stream_id: id });
                self.finish_close_if_done();
            }
            Body::EcmResponse(r) => {
                let Some(i) = stream_idx else { return };
                let id = r.ecm_stream_id;
                let cp = r.cp_number;
                self.answered(|a| a == Awaiting::Ecm(id, cp));
                let format = self
                    .status
                    .as_ref()
                    .map_or(SectionTspktFlag::Sections, |s| s.section_tspkt_flag);
                if self.streams[i].state != StreamState::Open {
                    self.unexpected(&Body::EcmResponse(r));
                    return;
                }
                if let Err(e) = check_datagram(&r.ecm_datagram, format) {
                    self.send(Body::StreamError(StreamError {
                        ecm_channel_id: channel,
                        ecm_stream_id: id,
                        error_status: vec![e.error_status()],
                        error_information: Vec::new(),
                    }));
                    self.error(ScsError::Decode(e));
                    return;
                }
                self.stats.ecms += 1;
                self.events.push_back(ScsEvent::Ecm {
                    ecm_stream_id: id,
                    cp_number: cp,
                    datagram: r.ecm_datagram,
                    format,
                });
            }
            // Only an SCS sends these.
            other @ (Body::ChannelSetup(_)
            | Body::StreamSetup(_)
            | Body::StreamCloseRequest(_)
            | Body::CwProvision(_)) => {
                self.send(Body::error(
                    other.ecm_channel_id(),
                    other.ecm_stream_id(),
                    vec![ErrorStatus::INVALID_MESSAGE],
                    Vec::new(),
                ));
                self.unexpected(&other);
            }
        }
    }

    fn on_channel_status(&mut self, now: Instant, status: ChannelStatus) {
        self.answered(|a| a == Awaiting::ChannelStatus);
        match self.channel {
            ChannelState::SetupSent => {
                self.channel = ChannelState::Open;
                self.version_settled = true;
                self.status = Some(status.clone());
                self.next_keepalive = Some(now + self.config.keepalive);
                self.events.push_back(ScsEvent::ChannelReady(status));
                for i in 0..self.streams.len() {
                    let c = &self.streams[i].config;
                    let setup = StreamSetup {
                        ecm_channel_id: self.config.ecm_channel_id,
                        ecm_stream_id: c.ecm_stream_id,
                        ecm_id: c.ecm_id,
                        nominal_cp_duration: c.nominal_cp_duration,
                    };
                    self.streams[i].state = StreamState::SetupSent;
                    self.send(Body::StreamSetup(setup.clone()));
                    self.expect(now, Awaiting::StreamStatus(setup.ecm_stream_id));
                }
            }
            ChannelState::Open => {
                self.stats.channel_tests_answered += 1;
                self.status = Some(status);
            }
            ChannelState::Idle => {}
        }
    }

    fn unexpected(&mut self, body: &Body) {
        self.error(ScsError::Unexpected {
            message_type: body.message_type(),
            ecm_channel_id: body.ecm_channel_id(),
            ecm_stream_id: body.ecm_stream_id(),
        });
    }

    fn finish_close_if_done(&mut self) {
        if self.closing && self.streams.iter().all(|s| s.state != StreamState::Closing) {
            self.send(Body::ChannelClose(ChannelClose {
                ecm_channel_id: self.config.ecm_channel_id,
            }));
            let transmit = std::mem::take(&mut self.transmit);
            self.reset();
            // What was queued (the close itself) still goes out.
            self.transmit = transmit;
            self.events.push_back(ScsEvent::Closed);
        }
    }
}
