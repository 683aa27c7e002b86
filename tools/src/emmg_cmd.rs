//! `hectl emmg`: a test EMMG. It speaks the EMMG side of DVB SimulCrypt EMMG/PDG⇔MUX (ETSI
//! TS 103 197) to a MUX over TCP (`drm::simulcrypt::emmg::EmmgSide`): channel_setup,
//! stream_setup, stream_BW_request, then data_provision at a steady rate, over the same
//! connection or, with `--udp`, as UDP datagrams (control stays on TCP). It answers the MUX's
//! channel_test and stream_test and sends its own channel_test every 10 s.
//!
//! The data is the test EMMs of `drm::simulcrypt::emmg::pattern_section`: sections of
//! `--section-size` bytes, table_id 0x82 and 0x83 alternating, section_syntax_indicator 0,
//! whose payload is a 4-byte big-endian sequence number (0, 1, 2...) then the bytes
//! `(f + i) mod 256` for i = 0, 1, 2..., f being the XOR of the sequence number's four bytes;
//! so a receiver can tell exactly which sections arrived. With `--ts-packets` each section is
//! sent as whole 188-byte TS packets (payload_unit_start and pointer_field 0 on its first,
//! 0xFF stuffing after its end) on the placeholder PID 0x1FFF, which the MUX replaces.
//!
//! The rate counts what the data fills on air: 188 bytes per TS packet, a section counted as
//! the packets it needs (its bytes plus the pointer_field, in 184-byte payloads).
//!
//! Output: `ready bandwidth=KBPS` on stdout once the MUX has allocated the bandwidth, and
//! `sent datagrams=N bytes=B` at the end (B: section bytes, whether sent as sections or as
//! packets). Errors from the MUX go to stderr with their error_status names; a channel or
//! stream error during setup ends the command with status 1. The stream and channel are closed
//! properly at the end of `--duration` or `--count`; without either it runs until killed
//! (tools has no signal handling, so a kill drops the connection without a close).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use drm::simulcrypt::emmg::{pattern_section, DataType, EmmgSide, EmmgSideConfig, EmmgSideEvent};
use drm::simulcrypt::{ProtocolVersion, SectionTspktFlag};
use playout::psi::packetize_section;
use playout::ts::{Pid, PACKET_SIZE};

/// `hectl emmg` arguments.
#[derive(clap::Args)]
pub(crate) struct EmmgArgs {
    /// The MUX's EMMG port, e.g. 127.0.0.1:4200.
    #[arg(long)]
    mux: SocketAddr,
    /// client_id, hex with 0x or decimal.
    #[arg(long, default_value = "0x4AD10000", value_parser = parse_u32)]
    client_id: u32,
    /// data_channel_id.
    #[arg(long, default_value_t = 1)]
    data_channel_id: u16,
    /// data_stream_id.
    #[arg(long, default_value_t = 1)]
    data_stream_id: u16,
    /// data_id.
    #[arg(long, default_value_t = 1)]
    data_id: u16,
    /// data_type: emm or private (private data).
    #[arg(long, value_enum, default_value_t = DataTypeArg::Emm)]
    data_type: DataTypeArg,
    /// protocol_version: 2 or 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    version: u8,
    /// Send TS packets (section_TSpkt_flag 1) instead of sections.
    #[arg(long)]
    ts_packets: bool,
    /// The bandwidth to ask for, kbit/s.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    bandwidth: u16,
    /// The rate to send at, kbit/s (default: the allocated bandwidth, following later
    /// allocations); may be above the allocation, to test the MUX's throttling.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Stop after this many datagrams.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Send data_provision by UDP to this address (control stays on TCP).
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Bytes in each section, header included (7 to 4096).
    #[arg(long, default_value_t = 184, value_parser = clap::value_parser!(u16).range(7..=4096))]
    section_size: u16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DataTypeArg {
    Emm,
    Private,
}

/// Connects, sets up, sends, closes.
pub(crate) fn run(args: EmmgArgs) -> anyhow::Result<ExitCode> {
    let sock = TcpStream::connect_timeout(&args.mux, Duration::from_secs(5))
        .with_context(|| format!("--mux {}", args.mux))?;
    let _ = sock.set_nodelay(true);
    let udp = match args.udp {
        Some(to) => {
            let bind: SocketAddr = if to.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let s = UdpSocket::bind(bind).context("UDP socket")?;
            s.connect(to).with_context(|| format!("--udp {to}"))?;
            Some(s)
        }
        None => None,
    };
    let format = if args.ts_packets {
        SectionTspktFlag::TsPackets
    } else {
        SectionTspktFlag::Sections
    };
    let mut config = EmmgSideConfig::new(
        args.client_id,
        args.data_channel_id,
        args.data_stream_id,
        args.data_id,
    );
    config.data_type = match args.data_type {
        DataTypeArg::Emm => DataType::Emm,
        DataTypeArg::Private => DataType::PrivateData,
    };
    config.format = format;
    config.version = if args.version == 2 {
        ProtocolVersion::V2
    } else {
        ProtocolVersion::V3
    };
    config.bandwidth_kbps = Some(args.bandwidth);
    eprintln!(
        "emmg: connected to {}: client_id {:#010x}, channel {}, stream {}, data_id {}",
        args.mux, args.client_id, args.data_channel_id, args.data_stream_id, args.data_id
    );
    let mut session = Session::start(sock, EmmgSide::new(config))?;

    // Setup: channel, stream, bandwidth.
    let allocated = loop {
        let events = session.step(Some(Instant::now() + Duration::from_secs(1)));
        let mut ready = None;
        for ev in events {
            match ev {
                EmmgSideEvent::Ready { kbps } => ready = Some(kbps.unwrap_or(args.bandwidth)),
                EmmgSideEvent::Error(e) => {
                    eprintln!("emmg: setup failed: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                EmmgSideEvent::Closed => {
                    eprintln!("emmg: the MUX closed the channel during setup");
                    return Ok(ExitCode::FAILURE);
                }
                EmmgSideEvent::ChannelOpen | EmmgSideEvent::StreamOpen => {}
                other => eprintln!("emmg: {other:?}"),
            }
        }
        if let Some(kbps) = ready {
            break kbps;
        }
        if session.lost {
            bail!("the MUX dropped the connection during setup");
        }
    };
    println!("ready bandwidth={allocated}");
    std::io::stdout().flush()?;

    // Data.
    let mut sender = Sender {
        format,
        section_size: usize::from(args.section_size),
        seq: 0,
        cc: 0,
        datagrams: 0,
        section_bytes: 0,
    };
    let mut pacer = Pacer::new(args.rate.unwrap_or(u32::from(allocated)));
    eprintln!(
        "emmg: sending {}-byte sections{} at {} kbit/s{}",
        args.section_size,
        if args.ts_packets {
            " as TS packets"
        } else {
            ""
        },
        pacer.rate_kbps,
        match args.udp {
            Some(to) => format!(" by UDP to {to}"),
            None => String::new(),
        }
    );
    if pacer.rate_kbps == 0 {
        eprintln!("emmg: 0 kbit/s allocated: waiting for a new allocation (or give --rate)");
    }
    let end = args.duration.map(|d| Instant::now() + d);
    let mut ok = true;
    loop {
        let now = Instant::now();
        if args.count.is_some_and(|n| sender.datagrams >= n) || end.is_some_and(|e| now >= e) {
            break;
        }
        let next_send = pacer.next_send();
        let events = if next_send.is_some_and(|at| at <= now) {
            let (datagram, section_len) = sender.next_datagram()?;
            let bytes = session.emmg.data_provision(&[&datagram])?;
            let sent = match &udp {
                Some(u) => match u.send(&bytes) {
                    Ok(_) => true,
                    // An ICMP error from an earlier datagram, say: the next may pass.
                    Err(e) => {
                        eprintln!("emmg: UDP send: {e}");
                        false
                    }
                },
                None => {
                    session.send(&bytes);
                    !session.lost
                }
            };
            if sent {
                sender.datagrams += 1;
                sender.section_bytes += section_len as u64;
            }
            pacer.air_bits += air_bytes(format, datagram.len()) * 8;
            // Answers and keep-alives between sends, without waiting.
            session.step(None)
        } else {
            let until = [next_send, end]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            session.step(Some(until))
        };
        if !handle_events(events, &mut pacer, args.rate.is_none()) {
            ok = false;
            break;
        }
        if session.lost {
            eprintln!("emmg: the MUX dropped the connection");
            ok = false;
            break;
        }
    }

    // Close: stream_close_request, its answer (or the response timeout), channel_close.
    if ok && !session.lost {
        if udp.is_some() {
            // UDP and TCP are not ordered: give the last datagrams a moment to land before the
            // stream_close_request.
            let settle = Instant::now() + Duration::from_millis(100);
            while Instant::now() < settle && !session.lost {
                session.step(Some(settle));
            }
        }
        session.emmg.close(Instant::now());
        while !session.emmg.is_idle() && !session.lost {
            for ev in session.step(Some(Instant::now() + Duration::from_secs(1))) {
                if let EmmgSideEvent::Error(e) = ev {
                    eprintln!("emmg: {e}");
                }
            }
        }
        session.flush();
    }
    let _ = session.sock.shutdown(std::net::Shutdown::Both);
    println!(
        "sent datagrams={} bytes={}",
        sender.datagrams, sender.section_bytes
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reports the events of the sending phase; follows a new allocation when `follow`. `false`
/// when the channel is gone.
fn handle_events(events: Vec<EmmgSideEvent>, pacer: &mut Pacer, follow: bool) -> bool {
    let mut alive = true;
    for ev in events {
        match ev {
            EmmgSideEvent::Bandwidth { kbps } => {
                eprintln!("emmg: bandwidth now {kbps:?} kbit/s");
                if let Some(k) = kbps.filter(|_| follow) {
                    *pacer = Pacer::new(u32::from(k));
                }
            }
            EmmgSideEvent::Error(e) => eprintln!("emmg: {e}"),
            EmmgSideEvent::Closed => {
                eprintln!("emmg: the MUX closed the channel");
                alive = false;
            }
            _ => {}
        }
    }
    alive
}

/// A steady rate: from `origin`, `air_bits` are due at `rate_kbps`.
struct Pacer {
    rate_kbps: u32,
    origin: Instant,
    air_bits: u64,
}

impl Pacer {
    fn new(rate_kbps: u32) -> Pacer {
        Pacer {
            rate_kbps,
            origin: Instant::now(),
            air_bits: 0,
        }
    }

    /// When the next datagram is due (`None` at 0 kbit/s).
    fn next_send(&self) -> Option<Instant> {
        (self.rate_kbps > 0).then(|| {
            self.origin
                + Duration::from_secs_f64(self.air_bits as f64 / (f64::from(self.rate_kbps) * 1e3))
        })
    }
}

/// The TS bytes a datagram fills on air.
fn air_bytes(format: SectionTspktFlag, len: usize) -> u64 {
    let packets = match format {
        SectionTspktFlag::TsPackets => len / PACKET_SIZE,
        // pointer_field + section, in 184-byte payloads.
        SectionTspktFlag::Sections => (len + 1).div_ceil(PACKET_SIZE - 4),
    };
    (packets * PACKET_SIZE) as u64
}

/// The test sections, in order.
struct Sender {
    format: SectionTspktFlag,
    section_size: usize,
    seq: u32,
    /// Continuity counter of the next packet (with --ts-packets).
    cc: u8,
    datagrams: u64,
    section_bytes: u64,
}

impl Sender {
    /// The next datagram and the length of its section (counted once it is sent).
    fn next_datagram(&mut self) -> anyhow::Result<(Vec<u8>, usize)> {
        let Some(section) = pattern_section(self.seq, self.section_size) else {
            bail!("--section-size {}: not 7 to 4096", self.section_size);
        };
        self.seq = self.seq.wrapping_add(1);
        let len = section.len();
        Ok(match self.format {
            SectionTspktFlag::Sections => (section, len),
            SectionTspktFlag::TsPackets => {
                let mut out = BytesMut::new();
                self.cc = packetize_section(Pid::NULL, &section, self.cc, &mut out);
                (out.to_vec(), len)
            }
        })
    }
}

/// What the reader thread passes on.
enum Incoming {
    Bytes(Vec<u8>),
    Closed(Option<std::io::Error>),
}

/// The TCP connection, its reader thread and the EMMG state machine.
struct Session {
    sock: TcpStream,
    rx: Receiver<Incoming>,
    emmg: EmmgSide,
    /// The connection went away.
    lost: bool,
}

impl Session {
    /// Starts the reader and queues channel_setup.
    fn start(sock: TcpStream, mut emmg: EmmgSide) -> anyhow::Result<Session> {
        let mut reader = sock.try_clone().context("TCP socket")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let msg = match reader.read(&mut buf) {
                    Ok(0) => Incoming::Closed(None),
                    Ok(n) => Incoming::Bytes(buf[..n].to_vec()),
                    Err(e) => Incoming::Closed(Some(e)),
                };
                let last = matches!(msg, Incoming::Closed(_));
                if tx.send(msg).is_err() || last {
                    return;
                }
            }
        });
        emmg.handle_connected(Instant::now());
        let mut s = Session {
            sock,
            rx,
            emmg,
            lost: false,
        };
        s.flush();
        Ok(s)
    }

    /// Feeds what arrived (waiting for it until `until`, or the state machine's next
    /// deadline if sooner; not at all with `None`), runs the deadlines, sends what the state
    /// machine queued; returns its events.
    fn step(&mut self, until: Option<Instant>) -> Vec<EmmgSideEvent> {
        // What was queued outside (a close) goes before any waiting for its answer.
        self.flush();
        let mut first = true;
        loop {
            let now = Instant::now();
            let wait = until
                .filter(|_| first && !self.lost)
                .map(|u| self.emmg.poll_timeout().map_or(u, |t| t.min(u)))
                .and_then(|deadline| deadline.checked_duration_since(now))
                .filter(|d| !d.is_zero());
            first = false;
            let msg = match wait {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Incoming::Closed(None)),
                },
                None => match self.rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => Some(Incoming::Closed(None)),
                },
            };
            match msg {
                Some(Incoming::Bytes(b)) => self.emmg.handle_bytes(Instant::now(), &b),
                Some(Incoming::Closed(e)) if !self.lost => {
                    if let Some(e) = e {
                        eprintln!("emmg: {e}");
                    }
                    self.lost = true;
                }
                Some(Incoming::Closed(_)) | None => break,
            }
        }
        self.emmg.handle_timeout(Instant::now());
        self.flush();
        std::iter::from_fn(|| self.emmg.poll_event()).collect()
    }

    /// Sends what the state machine queued; a failure means the connection is lost.
    fn flush(&mut self) {
        while let Some(bytes) = self.emmg.poll_transmit() {
            self.send(&bytes);
        }
    }

    /// Sends on the TCP connection (unless it is lost already).
    fn send(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        if let Err(e) = self.sock.write_all(bytes) {
            eprintln!("emmg: TCP send: {e}");
            self.lost = true;
        }
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s}: {e}"))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("{s}: not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use drm::simulcrypt::emmg::pattern_sequence;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmmgArgs,
    }

    #[test]
    fn defaults_and_ranges() {
        let a = Cli::try_parse_from(["emmg", "--mux", "127.0.0.1:4200"])
            .unwrap()
            .args;
        assert_eq!(a.client_id, 0x4AD1_0000);
        assert_eq!((a.data_channel_id, a.data_stream_id, a.data_id), (1, 1, 1));
        assert_eq!((a.version, a.bandwidth, a.section_size), (3, 100, 184));
        assert!(!a.ts_packets && a.rate.is_none() && a.udp.is_none());
        assert!(a.duration.is_none() && a.count.is_none());
        let a = Cli::try_parse_from([
            "emmg",
            "--mux",
            "127.0.0.1:4200",
            "--client-id",
            "1234",
            "--duration",
            "2.5",
            "--data-type",
            "private",
        ])
        .unwrap()
        .args;
        assert_eq!(a.client_id, 1234);
        assert_eq!(a.duration, Some(Duration::from_millis(2500)));
        assert!(matches!(a.data_type, DataTypeArg::Private));
        for bad in [
            &["--version", "1"][..],
            &["--section-size", "6"],
            &["--section-size", "4097"],
            &["--duration", "0"],
            &["--bandwidth", "0"],
            &["--client-id", "0xZZ"],
        ] {
            let mut argv = vec!["emmg", "--mux", "127.0.0.1:4200"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    /// A section counts as the TS packets it fills: pointer_field + section in 184-byte
    /// payloads.
    #[test]
    fn air_bytes_are_whole_packets() {
        assert_eq!(air_bytes(SectionTspktFlag::Sections, 183), 188);
        assert_eq!(air_bytes(SectionTspktFlag::Sections, 184), 376);
        assert_eq!(air_bytes(SectionTspktFlag::TsPackets, 376), 376);
    }

    /// With --ts-packets: whole packets on PID 0x1FFF, the section starting in the first,
    /// continuity counters running on across sections.
    #[test]
    fn sections_as_packets() {
        let mut s = Sender {
            format: SectionTspktFlag::TsPackets,
            section_size: 400,
            seq: 0,
            cc: 0,
            datagrams: 0,
            section_bytes: 0,
        };
        let mut ccs = Vec::new();
        for seq in 0..2u32 {
            let (d, len) = s.next_datagram().unwrap();
            assert_eq!((d.len(), len), (3 * PACKET_SIZE, 400));
            for (i, p) in d.chunks(PACKET_SIZE).enumerate() {
                assert_eq!(p[0], 0x47);
                assert_eq!(u16::from_be_bytes([p[1] & 0x1F, p[2]]), 0x1FFF);
                assert_eq!(p[1] & 0x40 != 0, i == 0);
                ccs.push(p[3] & 0x0F);
            }
            let mut section = d[5..PACKET_SIZE].to_vec();
            for p in d.chunks(PACKET_SIZE).skip(1) {
                section.extend_from_slice(&p[4..]);
            }
            assert_eq!(pattern_sequence(&section[..400]), Some(seq));
        }
        assert_eq!(ccs, [0, 1, 2, 3, 4, 5]);
    }
}
