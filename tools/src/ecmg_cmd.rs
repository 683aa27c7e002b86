//! `hectl ecmg`: a test ECMG. It speaks the ECMG side of DVB SimulCrypt ECMG⇔SCS (ETSI
//! TS 103 197) over TCP, one channel per connection, one thread per connection, and answers
//! CW_provision with an ECM in our own format (`drm::ecm`: the control words wrapped with AES
//! or SM4 under `--key`), as sections (section_TSpkt_flag 0). It is for testing the head-end's
//! SCS and descrambling without a CAS vendor's ECMG; nothing about it is secret but the key,
//! which is never logged.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use anyhow::Context;
use drm::cipher::parse_hex16;
use drm::ecm::{build_ecm, Wrap};
use drm::simulcrypt::{
    encode, Body, ChannelError, ChannelStatus, CwProvision, Decoder, EcmResponse, ErrorStatus,
    Message, ProtocolVersion, SectionTspktFlag, SimulcryptError, StreamCloseResponse, StreamError,
    StreamSetup, StreamStatus, SuperCasId, Tenths,
};

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
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WrapArg {
    Aes,
    Sm4,
}

/// Runs the server until the process is stopped.
pub(crate) fn run(args: EcmgArgs) -> anyhow::Result<ExitCode> {
    let key = parse_hex16(args.key.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let ecmg = Arc::new(Ecmg {
        key,
        wrap: match args.wrap {
            WrapArg::Aes => Wrap::Aes128,
            WrapArg::Sm4 => Wrap::Sm4,
        },
        super_cas_id: SuperCasId(args.super_cas_id),
        status: ChannelStatus {
            ecm_channel_id: 0,
            section_tspkt_flag: SectionTspktFlag::Sections,
            ac_delay_start_ms: None,
            ac_delay_stop_ms: None,
            delay_start_ms: args.delay_start,
            delay_stop_ms: args.delay_stop,
            transition_delay_start_ms: None,
            transition_delay_stop_ms: None,
            ecm_rep_period_ms: args.rep_period,
            max_streams: args.max_streams,
            min_cp_duration: Tenths(args.min_cp),
            lead_cw: args.lead_cw,
            cw_per_msg: args.cw_per_msg,
            max_comp_time_ms: args.max_comp_time,
        },
    });
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    std::io::stdout().flush()?;
    eprintln!(
        "ecmg: Super_CAS_id {}, {} ECMs, CW_per_msg {}, lead_CW {}",
        ecmg.super_cas_id, ecmg.wrap, args.cw_per_msg, args.lead_cw
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
    /// channel_status, but for ECM_channel_id.
    status: ChannelStatus,
}

/// One connection: at most one channel.
struct Session<'a> {
    ecmg: &'a Ecmg,
    peer: SocketAddr,
    channel: Option<Channel>,
}

struct Channel {
    id: u16,
    version: ProtocolVersion,
    streams: HashMap<u16, Stream>,
}

struct Stream {
    ecm_id: u16,
    /// The last control words of each parity (even, odd).
    even: Option<[u8; 16]>,
    odd: Option<[u8; 16]>,
}

fn serve(ecmg: &Ecmg, mut sock: TcpStream) {
    let peer = match sock.peer_addr() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ecmg: connection without a peer address: {e}");
            return;
        }
    };
    eprintln!("ecmg: {peer}: connected");
    let _ = sock.set_nodelay(true);
    let mut session = Session {
        ecmg,
        peer,
        channel: None,
    };
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 4096];
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
        decoder.push(&buf[..n]);
        for item in decoder.by_ref() {
            let (answers, close) = session.handle(item);
            for msg in answers {
                let bytes = match encode(&msg) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("ecmg: {peer}: {e}");
                        continue;
                    }
                };
                if let Err(e) = sock.write_all(&bytes) {
                    eprintln!("ecmg: {peer}: {e}");
                    return;
                }
            }
            if close {
                eprintln!("ecmg: {peer}: channel closed");
                return;
            }
        }
    }
}

impl Session<'_> {
    /// The answers to one decoded message (or decoding error), and whether to hang up.
    fn handle(&mut self, item: Result<Message, SimulcryptError>) -> (Vec<Message>, bool) {
        let version = self
            .channel
            .as_ref()
            .map_or(ProtocolVersion::V3, |c| c.version);
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                let channel = self.channel.as_ref().map_or(0, |c| c.id);
                eprintln!("ecmg: {}: refused: {e} ({})", self.peer, e.error_status());
                return (vec![Message::new(version, e.answer(channel))], false);
            }
        };
        let version = msg.version;
        let reply = |body: Body| (vec![Message::new(version, body)], false);
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
                        version,
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
                self.channel = None;
                (Vec::new(), true)
            }
            Body::ChannelStatus(_) | Body::StreamStatus(_) => (Vec::new(), false),
            Body::ChannelError(e) => {
                eprintln!(
                    "ecmg: {}: channel_error from the SCS: {:?}",
                    self.peer, e.error_status
                );
                (Vec::new(), false)
            }
            Body::StreamError(e) => {
                eprintln!(
                    "ecmg: {}: stream_error from the SCS on stream {}: {:?}",
                    self.peer, e.ecm_stream_id, e.error_status
                );
                (Vec::new(), false)
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
                let Some(stream) = channel.streams.get_mut(&p.ecm_stream_id) else {
                    return stream_error(ErrorStatus::UNKNOWN_ECM_STREAM_ID);
                };
                match ecm_for(self.ecmg, stream, p) {
                    Ok(section) => reply(Body::EcmResponse(EcmResponse {
                        ecm_channel_id: channel_id,
                        ecm_stream_id: p.ecm_stream_id,
                        cp_number: p.cp_number,
                        ecm_datagram: section.into(),
                    })),
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

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s}: {e}"))
}
