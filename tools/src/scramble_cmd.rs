//! `hectl scramble` and `hectl descramble`: a TS file scrambled or descrambled offline with
//! `drm::cipher` (DVB-CISSA, ATIS-IDSA, AES-CTR, SM4-CBC, SM4-CTR), streamed in chunks so
//! files of any size go through in constant memory.
//!
//! Scrambling touches only the elementary streams: by default every PID the PMTs list as an
//! elementary stream (found with `playout`'s demuxer, before and while the file is read);
//! PSI/SI (0x0000..=0x001F, the PMTs) and null packets never. Key bytes are never printed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// `println!`, or `eprintln!` when the first argument is true (the data is on stdout).
macro_rules! say {
    ($to_stderr:expr, $($t:tt)*) => {
        if $to_stderr {
            eprintln!($($t)*)
        } else {
            println!($($t)*)
        }
    };
}
use bytes::Bytes;
use drm::cipher::{
    parse_hex16, CipherKind, ControlWord, PacketCounts, Parity, ScrambleError, Scrambler,
    PACKET_SIZE,
};
use playout::demux::{Demux, DemuxEvent};

/// Packets read per chunk (1.5 MB).
const CHUNK_PACKETS: usize = 8192;
/// How far the PMTs are looked for before scrambling starts.
const PRESCAN_BYTES: u64 = 64 << 20;

/// Key parity on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum ParityArg {
    /// transport_scrambling_control 10.
    Even,
    /// transport_scrambling_control 11.
    Odd,
}

/// `hectl scramble`.
#[derive(clap::Args)]
pub(crate) struct ScrambleArgs {
    /// dvb-cissa, atis-idsa, aes-ctr, sm4-cbc or sm4-ctr.
    #[arg(long)]
    cipher: CipherKind,
    /// The control word: 32 hex digits.
    #[arg(long, value_name = "HEX")]
    cw: String,
    /// Which key the packets are marked with (transport_scrambling_control 10 or 11).
    #[arg(long, value_enum, default_value = "even")]
    parity: ParityArg,
    /// Replaces the cipher's IV (CBC IV or CTR initial counter): 32 hex digits.
    #[arg(long, value_name = "HEX")]
    iv: Option<String>,
    /// Only these PIDs (comma-separated, `0x` hex or decimal). Default: every elementary
    /// stream the PMTs list. PSI/SI and null PIDs are refused.
    #[arg(long, value_delimiter = ',', value_name = "PID,...")]
    pids: Vec<String>,
    /// The clear TS file.
    input: PathBuf,
    /// The scrambled file to write.
    output: PathBuf,
}

/// `hectl descramble`.
#[derive(clap::Args)]
pub(crate) struct DescrambleArgs {
    /// dvb-cissa, atis-idsa, aes-ctr, sm4-cbc or sm4-ctr.
    #[arg(long)]
    cipher: CipherKind,
    /// The control word: 32 hex digits. It is the even key, and the odd one too unless
    /// `--cw-odd` is given. Not with `--ecm-key`.
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "ecm_key",
        conflicts_with = "ecm_key"
    )]
    cw: Option<String>,
    /// The odd key, when it differs from the even one.
    #[arg(long, value_name = "HEX", conflicts_with = "ecm_key")]
    cw_odd: Option<String>,
    /// Take the control words from the stream's ECMs (headend's built-in ECMs or `hectl
    /// ecmg`'s, `drm::ecm`), opened with this key (32 hex digits): each ECM's words apply
    /// from where it is in the stream on.
    #[arg(long, value_name = "HEX")]
    ecm_key: Option<String>,
    /// The ECMs' wrapping cipher: aes or sm4.
    #[arg(long, default_value = "aes", value_parser = ["aes", "sm4"])]
    ecm_wrap: String,
    /// The ECMs' PID.
    #[arg(long, default_value = "0x1FF0", value_parser = parse_pid_arg)]
    ecm_pid: u16,
    /// Replaces the cipher's IV (CBC IV or CTR initial counter): 32 hex digits.
    #[arg(long, value_name = "HEX")]
    iv: Option<String>,
    /// The scrambled TS file.
    input: PathBuf,
    /// The descrambled file to write.
    output: PathBuf,
}

impl DescrambleArgs {
    /// The even and odd control words.
    fn keys(&self) -> anyhow::Result<(ControlWord, ControlWord)> {
        let even = control_word("--cw", self.cw.as_deref().unwrap_or_default())?;
        let odd = match &self.cw_odd {
            Some(hex) => control_word("--cw-odd", hex)?,
            None => even.clone(),
        };
        Ok((even, odd))
    }
}

/// Runs `hectl scramble`.
pub(crate) fn scramble(args: ScrambleArgs) -> anyhow::Result<std::process::ExitCode> {
    let cw = control_word("--cw", &args.cw)?;
    let iv = args.iv.as_deref().map(iv_arg).transpose()?;
    let parity = match args.parity {
        ParityArg::Even => Parity::Even,
        ParityArg::Odd => Parity::Odd,
    };
    let mut psi = PsiWatch::prescan(&args.input)?;
    let explicit = !args.pids.is_empty();
    let mut pids = PidSet::default();
    for p in &args.pids {
        let pid = parse_pid(p)?;
        if let Some(why) = psi.never(pid) {
            anyhow::bail!("--pids {pid:#06x}: {why}, never scrambled");
        }
        pids.insert(pid);
    }
    if !explicit {
        pids = psi.es.clone();
        if pids.is_empty() {
            anyhow::bail!(
                "{}: no PMT listing an elementary stream in the first {} MB; give --pids",
                args.input.display(),
                PRESCAN_BYTES >> 20
            );
        }
    }
    // With the stream on stdout (`-`), the report goes to stderr.
    let to_stderr = outfile::is_stdout(&args.output);
    let mut s = Scrambler::new(args.cipher, iv);
    s.set_cw(parity, &cw);
    drop(cw);
    say!(
        to_stderr,
        "{} -> {}: {}, {} key, PIDs {}{}",
        args.input.display(),
        args.output.display(),
        args.cipher,
        match parity {
            Parity::Even => "even",
            Parity::Odd => "odd",
        },
        pids,
        if explicit {
            ""
        } else {
            " (the PMTs' elementary streams)"
        }
    );
    stream(&args.input, &args.output, |chunk, first| {
        if !explicit {
            // A PMT version later in the file may add streams.
            psi.push(chunk);
            pids = psi.es.clone();
        }
        s.scramble(chunk, parity, |pid| pids.contains(pid))
            .map_err(|e| located(e, first))
    })?;
    let c = s.stats();
    say!(to_stderr, "packets: {}", c.packets);
    say!(
        to_stderr,
        "scrambled: {}{}",
        c.processed,
        short_note(&c, args.cipher)
    );
    say!(
        to_stderr,
        "left clear: {} (PSI/SI or other PIDs: {}, null: {}, no payload: {}, already scrambled: {}, \
         adaptation field past the packet end: {})",
        c.packets - c.processed,
        c.excluded,
        c.null,
        c.no_payload,
        c.already_scrambled,
        c.bad_adaptation_field
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs `hectl descramble`.
pub(crate) fn descramble(args: DescrambleArgs) -> anyhow::Result<std::process::ExitCode> {
    let iv = args.iv.as_deref().map(iv_arg).transpose()?;
    let to_stderr = outfile::is_stdout(&args.output);
    let mut s = Scrambler::new(args.cipher, iv);
    say!(
        to_stderr,
        "{} -> {}: {}",
        args.input.display(),
        args.output.display(),
        args.cipher
    );
    if let Some(hex) = &args.ecm_key {
        let key = parse_hex16(hex.trim()).map_err(|e| anyhow::anyhow!("--ecm-key: {e}"))?;
        let wrap = if args.ecm_wrap == "sm4" {
            drm::ecm::Wrap::Sm4
        } else {
            drm::ecm::Wrap::Aes128
        };
        let mut asm = playout::psi::SectionAssembler::default();
        let (mut ecms, mut bad) = (0u64, 0u64);
        stream(&args.input, &args.output, |chunk, first| {
            let mut done = 0;
            for (i, pkt) in chunk.chunks_exact_mut(188).enumerate() {
                if u16::from_be_bytes([pkt[1], pkt[2]]) & 0x1FFF == args.ecm_pid {
                    if let Ok(p) = playout::ts::TsPacket::new(bytes::Bytes::copy_from_slice(pkt)) {
                        asm.push(&p, true, |section| {
                            match drm::ecm::parse_ecm(&key, wrap, section) {
                                Ok(e) => {
                                    ecms += 1;
                                    s.set_cw(Parity::Even, &ControlWord::new(e.even_cw));
                                    s.set_cw(Parity::Odd, &ControlWord::new(e.odd_cw));
                                }
                                Err(_) => bad += 1,
                            }
                        });
                    }
                }
                done += s
                    .descramble(pkt)
                    .map_err(|e| located(e, first + i as u64))?;
            }
            Ok(done)
        })?;
        say!(to_stderr, "ECMs opened: {ecms}");
        if bad > 0 {
            say!(
                to_stderr,
                "ECMs that did not open with the key (wrong key or damaged): {bad}"
            );
        }
    } else {
        let (even, odd) = args.keys()?;
        s.set_cw(Parity::Even, &even);
        s.set_cw(Parity::Odd, &odd);
        drop((even, odd));
        stream(&args.input, &args.output, |chunk, first| {
            s.descramble(chunk).map_err(|e| located(e, first))
        })?;
    }
    let c = s.stats();
    say!(to_stderr, "packets: {}", c.packets);
    say!(
        to_stderr,
        "descrambled: {}{}",
        c.processed,
        short_note(&c, args.cipher)
    );
    say!(
        to_stderr,
        "left as they were: {} (clear: {}, null: {}, reserved scrambling bits 01: {}, \
         no payload: {}, adaptation field past the packet end: {})",
        c.packets - c.processed,
        c.clear,
        c.null,
        c.reserved_scrambling,
        c.no_payload,
        c.bad_adaptation_field
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn short_note(c: &PacketCounts, kind: CipherKind) -> String {
    if c.short_payload == 0 {
        return String::new();
    }
    format!(
        " ({} with a payload under 16 bytes, which {kind} leaves clear)",
        c.short_payload
    )
}

/// A control word from the command line; the error never repeats it.
fn control_word(flag: &str, hex: &str) -> anyhow::Result<ControlWord> {
    ControlWord::from_hex(hex.trim()).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

fn iv_arg(hex: &str) -> anyhow::Result<[u8; 16]> {
    parse_hex16(hex.trim()).map_err(|e| anyhow::anyhow!("--iv: {e}"))
}

fn parse_pid_arg(s: &str) -> Result<u16, String> {
    parse_pid(s).map_err(|e| e.to_string())
}

fn parse_pid(s: &str) -> anyhow::Result<u16> {
    let s = s.trim();
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse(),
    }
    .ok()
    .filter(|&v| v <= 0x1FFF);
    v.with_context(|| format!("--pids {s}: expected a PID, 0..=0x1FFF (e.g. 0x100)"))
}

/// A scramble error with the packet index counted from the start of the file.
fn located(e: ScrambleError, first: u64) -> anyhow::Error {
    match e {
        ScrambleError::Length { index, len } => {
            let index = first + index as u64;
            anyhow::anyhow!(
                "packet {index} (byte {}): the file ends {} bytes into it (not whole 188-byte packets)",
                index * PACKET_SIZE as u64,
                len % PACKET_SIZE
            )
        }
        ScrambleError::Sync { index, found } => {
            let index = first + index as u64;
            anyhow::anyhow!(
                "packet {index} (byte {}): sync byte {found:#04x}, expected 0x47",
                index * PACKET_SIZE as u64
            )
        }
        e => anyhow::Error::new(e),
    }
}

/// Reads `input` in chunks of whole packets, lets `each` change them in place (with the
/// index of the chunk's first packet), writes them to `output` ([`outfile::Sink`]: a regular
/// file only when complete, devices, FIFOs and `-` in place).
fn stream(
    input: &Path,
    output: &Path,
    mut each: impl FnMut(&mut [u8], u64) -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    let mut r = File::open(input).with_context(|| input.display().to_string())?;
    let mut sink = outfile::Sink::open(output)?;
    let mut buf = vec![0u8; CHUNK_PACKETS * PACKET_SIZE];
    let mut first = 0u64;
    let result = (|| {
        loop {
            let n = read_full(&mut r, &mut buf).with_context(|| input.display().to_string())?;
            if n == 0 {
                break;
            }
            each(&mut buf[..n], first).with_context(|| input.display().to_string())?;
            sink.write_all(&buf[..n])
                .with_context(|| output.display().to_string())?;
            first += (n / PACKET_SIZE) as u64;
            if n < buf.len() {
                break;
            }
        }
        anyhow::Ok(())
    })();
    // On an error the sink is dropped unfinished: a temporary file goes, the target stays.
    result?;
    Ok(sink.finish()?)
}

/// Fills `buf` unless the input ends first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A set of PIDs, printed as hex.
#[derive(Clone, Default)]
struct PidSet(Vec<u16>);

impl PidSet {
    fn insert(&mut self, pid: u16) {
        if let Err(i) = self.0.binary_search(&pid) {
            self.0.insert(i, pid);
        }
    }
    fn contains(&self, pid: u16) -> bool {
        self.0.binary_search(&pid).is_ok()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for PidSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            write!(f, "{}{p:#06x}", if i > 0 { "," } else { "" })?;
        }
        Ok(())
    }
}

/// The PAT and PMTs of the file, as the demuxer finds them: the PMT PIDs (never
/// scrambled) and the elementary streams they list.
struct PsiWatch {
    demux: Demux,
    pmt_pids: PidSet,
    es: PidSet,
}

impl PsiWatch {
    /// Reads the head of `input` until the PAT and every PMT it lists are seen (at most
    /// [`PRESCAN_BYTES`]).
    fn prescan(input: &Path) -> anyhow::Result<PsiWatch> {
        let mut w = PsiWatch {
            demux: Demux::new(),
            pmt_pids: PidSet::default(),
            es: PidSet::default(),
        };
        let mut r = File::open(input).with_context(|| input.display().to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        while read < PRESCAN_BYTES {
            let n = read_full(&mut r, &mut buf).with_context(|| input.display().to_string())?;
            if n == 0 {
                break;
            }
            read += n as u64;
            w.push(&buf[..n]);
            let complete = w.demux.pat().is_some_and(|pat| {
                pat.programs
                    .iter()
                    .all(|(number, _)| w.demux.pmt(*number).is_some())
            });
            if complete {
                break;
            }
        }
        Ok(w)
    }

    fn push(&mut self, data: &[u8]) {
        let (pmt_pids, es) = (&mut self.pmt_pids, &mut self.es);
        self.demux
            .push(Bytes::copy_from_slice(data), &mut |ev| match ev {
                DemuxEvent::Pat(pat) => {
                    for (_, pid) in &pat.programs {
                        pmt_pids.insert(pid.value());
                    }
                }
                DemuxEvent::Pmt { pmt, .. } => {
                    for s in &pmt.streams {
                        es.insert(s.pid.value());
                    }
                }
                _ => {}
            });
        // A PMT listing a PSI/SI PID (or another PMT) as a stream does not make it one.
        let keep: Vec<u16> = self
            .es
            .0
            .iter()
            .copied()
            .filter(|&p| self.never(p).is_none())
            .collect();
        self.es.0 = keep;
    }

    /// Why `pid` must stay clear, if it must.
    fn never(&self, pid: u16) -> Option<&'static str> {
        match pid {
            0x0000..=0x001F => Some("a PSI/SI PID"),
            0x1FFF => Some("the null PID"),
            p if self.pmt_pids.contains(p) => Some("a PMT PID"),
            _ => None,
        }
    }
}
