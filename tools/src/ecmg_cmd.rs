//! `hectl ecmg`: a test ECMG. It speaks the ECMG side of DVB SimulCrypt ECMG⇔SCS (ETSI
//! TS 103 197) over TCP, one channel per connection, one thread per connection, and answers
//! CW_provision with an ECM in our own format (`drm::ecm`: the control words wrapped with AES
//! or SM4 under `--key`). It is for testing the head-end's SCS and descrambling without a CAS
//! vendor's ECMG; nothing about it is secret but the key, which is never logged.
//!
//! It can take the settings deployed ECMGs default to:
//! - `--version 2|3` (default 3): the protocol_version it speaks and answers in. A message in
//!   the other version (2 against 3, or 3 against 2) gets channel_error 0x0002 (unsupported
//!   protocol version) in this ECMG's version, naming the message's ECM_channel_id if it can
//!   be read (else 0), and the connection is then closed, as deployed version-2 ECMGs do. A
//!   version the codec does not speak at all (1, 4 and up) is answered the same way but the
//!   connection stays up, as for any other undecodable message.
//! - `--ts-packets`: section_TSpkt_flag 1 in channel_status, and each
//!   ECM_datagram is the ECM section as whole 188-byte TS packets (ISO/IEC 13818-1 §2.4.4:
//!   PID 0x1FFF as a placeholder the SCS replaces, payload_unit_start_indicator and
//!   pointer_field 0 on the first packet, 0xFF stuffing, continuity counters from 0). Without
//!   it, ECMs are sections (flag 0).
//! - delay_start and delay_stop (always announced), and AC_delay_start, AC_delay_stop,
//!   transition_delay_start and transition_delay_stop (announced only when given).
//! - `--stall-after N`, for failure tests: after N ECM_responses on a connection, CW_provision
//!   goes unanswered; channel_test and stream_test still are, so only the SCS's ECM timeout
//!   can notice.
//!
//! The protocol is in `Connection` (bytes in, bytes out, no socket), so it is tested without a
//! network; `serve` is the blocking I/O around it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use drm::cipher::parse_hex16;
use drm::ecm::{build_ecm, Wrap};
use drm::simulcrypt::{
    encode, Body, ChannelError, ChannelStatus, CwProvision, Decoder, EcmResponse, ErrorStatus,
    Message, ProtocolVersion, SectionTspktFlag, SimulcryptError, StreamCloseResponse, StreamError,
    StreamSetup, StreamStatus, SuperCasId, Tenths,
};
use playout::psi::packetize_section;
use playout::ts::{Pid, PACKET_SIZE};

/// `hectl ecmg` arguments.
#[derive(clap::Args)]
pub(crate) struct EcmgArgs {
    /// Address to listen on, e.g. 127.0.0.1:4100 (port 0: any free port). The bound address
    /// is the first line printed: `listening on ADDR`.
    #[arg(long)]
    listen: SocketAddr,
    /// The ECM key: 32 hex digits (an optional `0x`), as `hectl descramble --ecm-key`.
    #[arg(long)]
    key: String,
    /// The cipher that wraps the control words in ECMs: aes (AES-128) or sm4.
    #[arg(long, value_enum)]
    wrap: WrapArg,
    /// protocol_version spoken, 2 or 3. A message in the other one gets channel_error 0x0002
    /// (unsupported protocol version), then the connection is closed.
    #[arg(long, default_value = "3", value_parser = parse_version)]
    version: ProtocolVersion,
    /// ECMs as whole 188-byte TS packets (section_TSpkt_flag 1) instead of sections.
    #[arg(long)]
    ts_packets: bool,
    /// Super_CAS_id accepted in channel_setup (CA_system_id and CA_subsystem_id), hex with
    /// 0x or decimal.
    #[arg(long, default_value = "0x4AD10000", value_parser = parse_u32)]
    super_cas_id: u32,
    /// CW_per_msg: control words wanted in each CW_provision.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    cw_per_msg: u8,
    /// lead_CW: control words wanted ahead of the current one.
    #[arg(long, default_value_t = 1)]
    lead_cw: u8,
    /// delay_start, ms (negative: the ECM goes on air before its crypto-period).
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    delay_start: i16,
    /// delay_stop, ms.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    delay_stop: i16,
    /// transition_delay_start, ms (not announced if absent).
    #[arg(long, allow_negative_numbers = true)]
    transition_delay_start: Option<i16>,
    /// transition_delay_stop, ms (not announced if absent).
    #[arg(long, allow_negative_numbers = true)]
    transition_delay_stop: Option<i16>,
    /// AC_delay_start, ms (not announced if absent).
    #[arg(long, allow_negative_numbers = true)]
    ac_delay_start: Option<i16>,
    /// AC_delay_stop, ms (not announced if absent).
    #[arg(long, allow_negative_numbers = true)]
    ac_delay_stop: Option<i16>,
    /// ECM_rep_period, ms.
    #[arg(long, default_value_t = 100)]
    rep_period: u16,
    /// min_CP_duration, in units of 100 ms.
    #[arg(long, default_value_t = 10)]
    min_cp: u16,
    /// max_comp_time, ms.
    #[arg(long, default_value_t = 100)]
    max_comp_time: u16,
    /// max_streams per channel.
    #[arg(long, default_value_t = 16)]
    max_streams: u16,
    /// For failure tests: after N ECM_responses on a connection, leave CW_provision
    /// unanswered (channel_test and stream_test are still answered).
    #[arg(long, value_name = "N")]
    stall_after: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WrapArg {
    Aes,
    Sm4,
}

/// Runs the server until the process is stopped.
pub(crate) fn run(args: EcmgArgs) -> anyhow::Result<ExitCode> {
    let ecmg = Arc::new(Ecmg::new(&args)?);
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    std::io::stdout().flush()?;
    eprintln!(
        "ecmg: protocol version {}, Super_CAS_id {}, {} ECMs as {}, CW_per_msg {}, lead_CW {}{}",
        ecmg.version.value(),
        ecmg.super_cas_id,
        ecmg.wrap,
        form(ecmg.status.section_tspkt_flag),
        args.cw_per_msg,
        args.lead_cw,
        match ecmg.stall_after {
            Some(n) => format!(", stalling after {n} ECMs"),
            None => String::new(),
        }
    );
    for conn in listener.incoming() {
        match conn {
            Ok(sock) => {
                let ecmg = Arc::clone(&ecmg);
                thread::spawn(move || serve(&ecmg, sock));
            }
            Err(e) => eprintln!("ecmg: accept: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What every connection shares.
struct Ecmg {
    key: [u8; 16],
    wrap: Wrap,
    super_cas_id: SuperCasId,
    /// The protocol_version spoken and answered in.
    version: ProtocolVersion,
    /// channel_status, but for ECM_channel_id.
    status: ChannelStatus,
    /// ECM_responses per connection before CW_provision goes unanswered.
    stall_after: Option<u32>,
}

impl Ecmg {
    fn new(args: &EcmgArgs) -> anyhow::Result<Ecmg> {
        let key = parse_hex16(args.key.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
        Ok(Ecmg {
            key,
            wrap: match args.wrap {
                WrapArg::Aes => Wrap::Aes128,
                WrapArg::Sm4 => Wrap::Sm4,
            },
            super_cas_id: SuperCasId(args.super_cas_id),
            version: args.version,
            status: ChannelStatus {
                ecm_channel_id: 0,
                section_tspkt_flag: if args.ts_packets {
                    SectionTspktFlag::TsPackets
                } else {
                    SectionTspktFlag::Sections
                },
                ac_delay_start_ms: args.ac_delay_start,
                ac_delay_stop_ms: args.ac_delay_stop,
                delay_start_ms: args.delay_start,
                delay_stop_ms: args.delay_stop,
                transition_delay_start_ms: args.transition_delay_start,
                transition_delay_stop_ms: args.transition_delay_stop,
                ecm_rep_period_ms: args.rep_period,
                max_streams: args.max_streams,
                min_cp_duration: Tenths(args.min_cp),
                lead_cw: args.lead_cw,
                cw_per_msg: args.cw_per_msg,
                max_comp_time_ms: args.max_comp_time,
            },
            stall_after: args.stall_after,
        })
    }

    /// The ECM_datagram that carries `section` in the channel's form: the section itself, or
    /// the section as TS packets on a placeholder PID (the SCS sets the ECM PID and counters).
    fn datagram(&self, section: Vec<u8>) -> Bytes {
        match self.status.section_tspkt_flag {
            SectionTspktFlag::Sections => section.into(),
            SectionTspktFlag::TsPackets => {
                // pointer_field, then 184 payload bytes a packet.
                let packets = (section.len() + 1).div_ceil(PACKET_SIZE - 4);
                let mut out = BytesMut::with_capacity(packets * PACKET_SIZE);
                packetize_section(Pid::NULL, &section, 0, &mut out);
                out.freeze()
            }
        }
    }
}

/// Whether to keep the connection after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    HangUp,
}

/// One connection's protocol: bytes read in, bytes to write out.
struct Connection<'a> {
    session: Session<'a>,
    decoder: Decoder,
    /// The bytes the decoder holds, always the tail of what was read: the first is the next
    /// message's protocol_version, which a decoding error does not report.
    unread: Vec<u8>,
}

impl<'a> Connection<'a> {
    fn new(ecmg: &'a Ecmg, peer: SocketAddr) -> Connection<'a> {
        Connection {
            session: Session {
                ecmg,
                peer,
                channel: None,
                ecms: 0,
                stalled: false,
            },
            decoder: Decoder::new(),
            unread: Vec::new(),
        }
    }

    /// Handles what was read; the answers are appended to `out`. After [`Flow::HangUp`] the
    /// rest of `data` is ignored and the connection is to be closed once `out` is sent.
    fn handle_bytes(&mut self, data: &[u8], out: &mut Vec<u8>) -> Flow {
        self.unread.extend_from_slice(data);
        self.decoder.push(data);
        self.trim_unread();
        loop {
            let version = self.unread.first().copied();
            let Some(item) = self.decoder.next() else {
                return Flow::Continue;
            };
            self.trim_unread();
            let (answers, flow) = match version.and_then(ProtocolVersion::from_u8) {
                Some(v) if v != self.session.ecmg.version => self.session.refuse_version(v, &item),
                _ => self.session.handle(item),
            };
            for msg in answers {
                match encode(&msg) {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(e) => eprintln!("ecmg: {}: {e}", self.session.peer),
                }
            }
            if flow == Flow::HangUp {
                return flow;
            }
        }
    }

    /// Drops from `unread` what the decoder has consumed (or skipped).
    fn trim_unread(&mut self) {
        let consumed = self.unread.len().saturating_sub(self.decoder.buffered());
        self.unread.drain(..consumed);
    }
}

/// One connection: at most one channel.
struct Session<'a> {
    ecmg: &'a Ecmg,
    peer: SocketAddr,
    channel: Option<Channel>,
    /// ECM_responses sent on this connection.
    ecms: u32,
    /// Whether `--stall-after` has been reached (logged once).
    stalled: bool,
}

struct Channel {
    id: u16,
    streams: HashMap<u16, Stream>,
}

struct Stream {
    ecm_id: u16,
    /// The last control words of each parity (even, odd).
    even: Option<[u8; 16]>,
    odd: Option<[u8; 16]>,
}

/// How long a closing connection waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(1);

fn serve(ecmg: &Ecmg, mut sock: TcpStream) {
    let peer = match sock.peer_addr() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ecmg: connection without a peer address: {e}");
            return;
        }
    };
    eprintln!(
        "ecmg: {peer}: connected (protocol version {}, ECMs as {})",
        ecmg.version.value(),
        form(ecmg.status.section_tspkt_flag)
    );
    let _ = sock.set_nodelay(true);
    let mut conn = Connection::new(ecmg, peer);
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                eprintln!("ecmg: {peer}: disconnected");
                return;
            }
            Ok(n) => n,
            Err(e) => {
                eprintln!("ecmg: {peer}: {e}");
                return;
            }
        };
        out.clear();
        let flow = conn.handle_bytes(&buf[..n], &mut out);
        if let Err(e) = sock.write_all(&out) {
            eprintln!("ecmg: {peer}: {e}");
            return;
        }
        if flow == Flow::HangUp {
            eprintln!("ecmg: {peer}: hanging up");
            hang_up(sock);
            return;
        }
    }
}

/// Closes the connection so that what was written still arrives: FIN first, then whatever
/// the peer still sends is read and dropped until it closes too (or [`LINGER`] passes), as
/// closing with unread bytes would send a reset that can destroy the last answer.
fn hang_up(mut sock: TcpStream) {
    let _ = sock.shutdown(Shutdown::Write);
    let _ = sock.set_read_timeout(Some(LINGER));
    let until = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

impl Session<'_> {
    /// The answer to a message in the protocol version this ECMG does not speak: channel_error
    /// 0x0002, then hang up.
    fn refuse_version(
        &self,
        found: ProtocolVersion,
        item: &Result<Message, SimulcryptError>,
    ) -> (Vec<Message>, Flow) {
        let (what, channel) = match item {
            Ok(m) => (m.body.message_type().name(), m.body.ecm_channel_id()),
            Err(e) => (
                "undecodable message",
                e.context().and_then(|c| c.ecm_channel_id).unwrap_or(0),
            ),
        };
        eprintln!(
            "ecmg: {}: {what} in protocol version {}, not {}: {}",
            self.peer,
            found.value(),
            self.ecmg.version.value(),
            ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION
        );
        let answer = ChannelError {
            ecm_channel_id: channel,
            error_status: vec![ErrorStatus::UNSUPPORTED_PROTOCOL_VERSION],
            error_information: Vec::new(),
        };
        (vec![Message::new(self.ecmg.version, answer)], Flow::HangUp)
    }

    /// The answers to one decoded message (or decoding error) in this ECMG's version, and
    /// whether to hang up.
    fn handle(&mut self, item: Result<Message, SimulcryptError>) -> (Vec<Message>, Flow) {
        let version = self.ecmg.version;
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                let channel = self.channel.as_ref().map_or(0, |c| c.id);
                eprintln!("ecmg: {}: refused: {e} ({})", self.peer, e.error_status());
                return (
                    vec![Message::new(version, e.answer(channel))],
                    Flow::Continue,
                );
            }
        };
        let reply = |body: Body| (vec![Message::new(version, body)], Flow::Continue);
        let channel_id = msg.body.ecm_channel_id();
        let stream_id = msg.body.ecm_stream_id();
        let channel_error = |status: ErrorStatus| {
            eprintln!(
                "ecmg: {}: {} on channel {channel_id}: {status}",
                self.peer,
                msg.body.message_type()
            );
            reply(Body::ChannelError(ChannelError {
                ecm_channel_id: channel_id,
                error_status: vec![status],
                error_information: Vec::new(),
            }))
        };
        let stream_error = |status: ErrorStatus| {
            let stream = stream_id.unwrap_or(0);
            eprintln!(
                "ecmg: {}: {} on channel {channel_id} stream {stream}: {status}",
                self.peer,
                msg.body.message_type()
            );
            reply(Body::StreamError(StreamError {
                ecm_channel_id: channel_id,
                ecm_stream_id: stream,
                error_status: vec![status],
                error_information: Vec::new(),
            }))
        };
        if let Body::ChannelSetup(setup) = &msg.body {
            return match &self.channel {
                Some(c) if c.id == setup.ecm_channel_id => {
                    channel_error(ErrorStatus::ECM_CHANNEL_ID_IN_USE)
                }
                Some(_) => channel_error(ErrorStatus::TOO_MANY_CHANNELS),
                None if setup.super_cas_id != self.ecmg.super_cas_id => {
                    channel_error(ErrorStatus::UNKNOWN_SUPER_CAS_ID)
                }
                None => {
                    eprintln!(
                        "ecmg: {}: channel {} set up (version {})",
                        self.peer,
                        setup.ecm_channel_id,
                        version.value()
                    );
                    self.channel = Some(Channel {
                        id: setup.ecm_channel_id,
                        streams: HashMap::new(),
                    });
                    reply(Body::ChannelStatus(self.status(setup.ecm_channel_id)))
                }
            };
        }
        // Everything else needs the channel.
        let Some(channel) = self.channel.as_mut().filter(|c| c.id == channel_id) else {
            return channel_error(ErrorStatus::UNKNOWN_ECM_CHANNEL_ID);
        };
        match &msg.body {
            // Answered before the channel lookup, which returned.
            Body::ChannelSetup(_) => unreachable!("channel_setup is handled above"),
            Body::ChannelTest(_) => reply(Body::ChannelStatus(self.status(channel_id))),
            Body::ChannelClose(_) => {
                eprintln!("ecmg: {}: channel {channel_id} closed", self.peer);
                self.channel = None;
                (Vec::new(), Flow::HangUp)
            }
            Body::ChannelStatus(_) | Body::StreamStatus(_) => (Vec::new(), Flow::Continue),
            Body::ChannelError(e) => {
                eprintln!(
                    "ecmg: {}: channel_error from the SCS: {:?}",
                    self.peer, e.error_status
                );
                (Vec::new(), Flow::Continue)
            }
            Body::StreamError(e) => {
                eprintln!(
                    "ecmg: {}: stream_error from the SCS on stream {}: {:?}",
                    self.peer, e.ecm_stream_id, e.error_status
                );
                (Vec::new(), Flow::Continue)
            }
            Body::StreamSetup(StreamSetup {
                ecm_stream_id,
                ecm_id,
                nominal_cp_duration,
                ..
            }) => {
                if channel.streams.contains_key(ecm_stream_id) {
                    return stream_error(ErrorStatus::ECM_STREAM_ID_IN_USE);
                }
                if channel.streams.values().any(|s| s.ecm_id == *ecm_id) {
                    return stream_error(ErrorStatus::ECM_ID_IN_USE);
                }
                let max = self.ecmg.status.max_streams;
                if max != 0 && channel.streams.len() >= usize::from(max) {
                    return stream_error(ErrorStatus::TOO_MANY_STREAMS_ON_CHANNEL);
                }
                channel.streams.insert(
                    *ecm_stream_id,
                    Stream {
                        ecm_id: *ecm_id,
                        even: None,
                        odd: None,
                    },
                );
                eprintln!(
                    "ecmg: {}: stream {ecm_stream_id} set up (ECM_id {ecm_id}, CP {:?})",
                    self.peer,
                    nominal_cp_duration.to_duration()
                );
                reply(Body::StreamStatus(StreamStatus {
                    ecm_channel_id: channel_id,
                    ecm_stream_id: *ecm_stream_id,
                    ecm_id: *ecm_id,
                    access_criteria_transfer_mode: false,
                }))
            }
            Body::StreamTest(t) => match channel.streams.get(&t.ecm_stream_id) {
                Some(s) => reply(Body::StreamStatus(StreamStatus {
                    ecm_channel_id: channel_id,
                    ecm_stream_id: t.ecm_stream_id,
                    ecm_id: s.ecm_id,
                    access_criteria_transfer_mode: false,
                })),
                None => stream_error(ErrorStatus::UNKNOWN_ECM_STREAM_ID),
            },
            Body::StreamCloseRequest(r) => match channel.streams.remove(&r.ecm_stream_id) {
                Some(_) => {
                    eprintln!("ecmg: {}: stream {} closed", self.peer, r.ecm_stream_id);
                    reply(Body::StreamCloseResponse(StreamCloseResponse {
                        ecm_channel_id: channel_id,
                        ecm_stream_id: r.ecm_stream_id,
                    }))
                }
                None => stream_error(ErrorStatus::UNKNOWN_ECM_STREAM_ID),
            },
            Body::CwProvision(p) => {
                if self.ecmg.stall_after.is_some_and(|n| self.ecms >= n) {
                    if !self.stalled {
                        self.stalled = true;
                        eprintln!(
                            "ecmg: {}: {} ECMs sent, CW_provision goes unanswered from now on",
                            self.peer, self.ecms
                        );
                    }
                    return (Vec::new(), Flow::Continue);
                }
                let Some(stream) = channel.streams.get_mut(&p.ecm_stream_id) else {
                    return stream_error(ErrorStatus::UNKNOWN_ECM_STREAM_ID);
                };
                match ecm_for(self.ecmg, stream, p) {
                    Ok(section) => {
                        self.ecms += 1;
                        reply(Body::EcmResponse(EcmResponse {
                            ecm_channel_id: channel_id,
                            ecm_stream_id: p.ecm_stream_id,
                            cp_number: p.cp_number,
                            ecm_datagram: self.ecmg.datagram(section),
                        }))
                    }
                    Err(status) => stream_error(status),
                }
            }
            // Only an ECMG sends these.
            Body::StreamCloseResponse(_) | Body::EcmResponse(_) => {
                if stream_id.is_some() {
                    stream_error(ErrorStatus::INVALID_MESSAGE)
                } else {
                    channel_error(ErrorStatus::INVALID_MESSAGE)
                }
            }
        }
    }

    fn status(&self, ecm_channel_id: u16) -> ChannelStatus {
        ChannelStatus {
            ecm_channel_id,
            ..self.ecmg.status.clone()
        }
    }
}

/// The ECM of `p.cp_number`: its words replace the stream's words of the same parity; the
/// word of the ECM's own crypto-period must be known (now or from an earlier provision).
fn ecm_for(ecmg: &Ecmg, stream: &mut Stream, p: &CwProvision) -> Result<Vec<u8>, ErrorStatus> {
    if p.cp_cw_combinations.len() < usize::from(ecmg.status.cw_per_msg) {
        return Err(ErrorStatus::NOT_ENOUGH_CWS);
    }
    for c in &p.cp_cw_combinations {
        let cw: [u8; 16] =
            c.cw.as_slice()
                .try_into()
                .map_err(|_| ErrorStatus::INVALID_VALUE)?;
        if c.cp_number % 2 == 0 {
            stream.even = Some(cw);
        } else {
            stream.odd = Some(cw);
        }
    }
    let current_known = if p.cp_number % 2 == 0 {
        stream.even.is_some()
    } else {
        stream.odd.is_some()
    };
    if !current_known {
        return Err(ErrorStatus::NOT_ENOUGH_CWS);
    }
    Ok(build_ecm(
        &ecmg.key,
        ecmg.wrap,
        p.cp_number,
        &stream.even.unwrap_or_default(),
        &stream.odd.unwrap_or_default(),
    ))
}

/// How ECM_datagrams are sent, for the log.
fn form(flag: SectionTspktFlag) -> &'static str {
    match flag {
        SectionTspktFlag::Sections => "sections",
        SectionTspktFlag::TsPackets => "TS packets",
    }
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    s.parse()
        .ok()
        .and_then(ProtocolVersion::from_u8)
        .ok_or_else(|| format!("{s}: protocol_version 2 or 3"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s}: {e}"))
}

#[cfg(test)]
mod tests;
