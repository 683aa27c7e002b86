//! drm::cipher: published test vectors through the primitives and the packet code, packets
//! checked against a reference built here from the bare block ciphers (the `aes` and `sm4`
//! crates, chaining written out below), round trips over every fixture, and garbage.

use std::path::Path;

use aes::cipher::{BlockEncrypt, KeyInit};
use bytes::Bytes;
use drm::cipher::{
    Aes128, CipherKind, ControlWord, PacketCounts, Parity, ScrambleError, Scrambler, Sm4, CISSA_IV,
    PACKET_SIZE,
};
use playout::demux::{Demux, DemuxEvent};
use proptest::prelude::*;

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

const CW: &str = "0123456789abcdeffedcba9876543210";

fn scrambler(kind: CipherKind, iv: Option<[u8; 16]>, even: &str, odd: &str) -> Scrambler {
    let mut s = Scrambler::new(kind, iv);
    s.set_cw(Parity::Even, &ControlWord::from_hex(even).unwrap());
    s.set_cw(Parity::Odd, &ControlWord::from_hex(odd).unwrap());
    s
}

/// A packet on `pid` with an adaptation field of `af_len` bytes (None: payload only) and the
/// rest payload, filled from `seed`.
fn packet(pid: u16, af_len: Option<u8>, seed: u32) -> [u8; 188] {
    let mut p = [0u8; 188];
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for b in p.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    p[0] = 0x47;
    p[1] = (pid >> 8) as u8 & 0x1F;
    p[2] = pid as u8;
    match af_len {
        None => p[3] = 0x10 | (seed as u8 & 0x0F),
        Some(n) => {
            p[3] = 0x30 | (seed as u8 & 0x0F);
            p[4] = n;
            if n > 0 {
                p[5] = 0x00; // flags: no PCR etc.
            }
        }
    }
    p
}

fn payload_start(af_len: Option<u8>) -> usize {
    af_len.map_or(4, |n| 5 + n as usize)
}

type BlockFn = Box<dyn Fn(&mut [u8; 16])>;

/// The cipher the reference uses: the block function of the `aes` or `sm4` crate.
fn block_fn(kind: CipherKind, key: &[u8; 16]) -> BlockFn {
    match kind {
        CipherKind::DvbCissa | CipherKind::AtisIdsa | CipherKind::AesCtr => {
            let c = aes::Aes128::new(key.into());
            Box::new(move |b: &mut [u8; 16]| c.encrypt_block(b.into()))
        }
        CipherKind::Sm4Cbc | CipherKind::Sm4Ctr => {
            let c = sm4::Sm4::new(key.into());
            Box::new(move |b: &mut [u8; 16]| c.encrypt_block(b.into()))
        }
    }
}

/// The scrambled payload, written out from the specs (independent of the packet code).
fn reference(kind: CipherKind, key: &[u8; 16], iv: &[u8; 16], payload: &mut [u8]) {
    let e = block_fn(kind, key);
    let xor = |d: &mut [u8], k: &[u8]| d.iter_mut().zip(k).for_each(|(d, k)| *d ^= k);
    match kind {
        CipherKind::DvbCissa | CipherKind::Sm4Cbc | CipherKind::AtisIdsa => {
            // CBC over the full blocks, fresh chain from the IV.
            let mut prev = *iv;
            let full = payload.len() / 16 * 16;
            let (blocks, res) = payload.split_at_mut(full);
            for b in blocks.chunks_exact_mut(16) {
                xor(b, &prev);
                let mut t: [u8; 16] = b.try_into().unwrap();
                e(&mut t);
                b.copy_from_slice(&t);
                prev = t;
            }
            if kind == CipherKind::AtisIdsa && !res.is_empty() {
                // DVS-042: residue ^ MSB(E(C_last)), or ^ MSB(E(IV)) for a short payload.
                e(&mut prev);
                xor(res, &prev);
            }
        }
        CipherKind::AesCtr | CipherKind::Sm4Ctr => {
            let low = u64::from_be_bytes(iv[8..].try_into().unwrap());
            for (j, chunk) in payload.chunks_mut(16).enumerate() {
                let mut ctr = *iv;
                ctr[8..].copy_from_slice(&low.wrapping_add(j as u64).to_be_bytes());
                e(&mut ctr);
                xor(chunk, &ctr);
            }
        }
    }
}

// ---- Published vectors -------------------------------------------------------------------

/// FIPS-197 Appendix C.1 (AES-128), through the block primitive the packet code uses.
#[test]
fn aes128_fips197_c1() {
    let aes = Aes128::new(&hex("000102030405060708090a0b0c0d0e0f"));
    let mut b = hex("00112233445566778899aabbccddeeff");
    aes.encrypt_block(&mut b);
    assert_eq!(b, hex("69c4e0d86a7b0430d8cdb78070b4c55a"));
    aes.decrypt_block(&mut b);
    assert_eq!(b, hex("00112233445566778899aabbccddeeff"));
}

const SP800_38A_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const SP800_38A_PLAIN: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

/// A packet whose payload is exactly `payload` (an adaptation field fills the rest).
fn packet_with_payload(pid: u16, payload: &[u8]) -> [u8; 188] {
    let af = 188 - 5 - payload.len();
    let mut p = packet(pid, Some(af as u8), 7);
    p[188 - payload.len()..].copy_from_slice(payload);
    p
}

/// NIST SP 800-38A F.2.1/F.2.2 (CBC-AES128) through the packet code: a 64-byte payload,
/// DVB-CISSA rules with the IV replaced by the vector's.
#[test]
fn aes_cbc_sp800_38a_f21_through_packets() {
    let plain: [u8; 64] = hex(SP800_38A_PLAIN);
    let mut p = packet_with_payload(0x100, &plain);
    let clear = p;
    let mut s = scrambler(
        CipherKind::DvbCissa,
        Some(hex("000102030405060708090a0b0c0d0e0f")),
        SP800_38A_KEY,
        SP800_38A_KEY,
    );
    assert_eq!(s.scramble(&mut p, Parity::Even, |_| true), Ok(1));
    let expected: [u8; 64] = hex(
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
         73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
    );
    assert_eq!(&p[124..], &expected[..]);
    assert_eq!(p[3] >> 6, 0b10);
    assert_eq!(s.descramble(&mut p), Ok(1));
    assert_eq!(p, clear);
}

/// NIST SP 800-38A F.5.1/F.5.2 (CTR-AES128) through the packet code.
#[test]
fn aes_ctr_sp800_38a_f51_through_packets() {
    let plain: [u8; 64] = hex(SP800_38A_PLAIN);
    let mut p = packet_with_payload(0x100, &plain);
    let clear = p;
    let mut s = scrambler(
        CipherKind::AesCtr,
        Some(hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")),
        SP800_38A_KEY,
        SP800_38A_KEY,
    );
    assert_eq!(s.scramble(&mut p, Parity::Odd, |_| true), Ok(1));
    let expected: [u8; 64] = hex(
        "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff\
         5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
    );
    assert_eq!(&p[124..], &expected[..]);
    assert_eq!(p[3] >> 6, 0b11);
    s.descramble(&mut p).unwrap();
    assert_eq!(p, clear);
}

/// GB/T 32907-2016 Appendix A, example 1: one block, through the block primitive and
/// through the packet code (SM4-CBC with a zero IV over a 16-byte payload is one block).
#[test]
fn sm4_gbt32907_example1() {
    let key: [u8; 16] = hex(CW);
    let sm4 = Sm4::new(&key);
    let mut b = key;
    sm4.encrypt_block(&mut b);
    assert_eq!(b, hex("681edf34d206965e86b3e94f536e4246"));
    sm4.decrypt_block(&mut b);
    assert_eq!(b, key);

    let mut p = packet_with_payload(0x100, &key);
    let mut s = scrambler(CipherKind::Sm4Cbc, Some([0; 16]), CW, CW);
    s.scramble(&mut p, Parity::Even, |_| true).unwrap();
    assert_eq!(
        &p[172..],
        &hex::<16>("681edf34d206965e86b3e94f536e4246")[..]
    );
}

/// GB/T 32907-2016 Appendix A, example 2: the same block encrypted 1,000,000 times.
#[test]
fn sm4_gbt32907_example2_million() {
    let key: [u8; 16] = hex(CW);
    let sm4 = Sm4::new(&key);
    let mut b = key;
    for _ in 0..1_000_000 {
        sm4.encrypt_block(&mut b);
    }
    assert_eq!(b, hex("595298c7c6fd271f0402f804c33d3f66"));
}

/// Our SM4 against RustCrypto's on keys and blocks from a simple generator.
#[test]
fn sm4_matches_rustcrypto() {
    for i in 0..200u32 {
        let key: [u8; 16] = packet(0, None, i)[4..20].try_into().unwrap();
        let mut ours: [u8; 16] = packet(0, None, i + 1000)[4..20].try_into().unwrap();
        let mut theirs = ours;
        Sm4::new(&key).encrypt_block(&mut ours);
        sm4::Sm4::new(&key.into()).encrypt_block((&mut theirs).into());
        assert_eq!(ours, theirs, "key {i}");
    }
}

// ---- Packet rules ----------------------------------------------------------------------

/// DVB-CISSA (ETSI TS 103 127): a full 184-byte payload is AES-128-CBC with the IV
/// "DVBTMCPTAESCISSA" over 11 blocks, and the 8-byte residue stays clear. The expected bytes
/// come from the bare `aes` crate with the chaining written out here.
#[test]
fn cissa_packet_by_hand() {
    assert_eq!(&CISSA_IV, b"DVBTMCPTAESCISSA");
    let key: [u8; 16] = hex(CW);
    let clear = packet(0x100, None, 42);
    let aes = aes::Aes128::new(&key.into());
    let mut expected = clear;
    let mut prev: [u8; 16] = hex("44564254 4d435054 41455343 49535341"
        .replace(' ', "")
        .as_str());
    for j in 0..11 {
        let p = 4 + 16 * j;
        let mut b = [0u8; 16];
        for k in 0..16 {
            b[k] = clear[p + k] ^ prev[k];
        }
        aes.encrypt_block((&mut b).into());
        expected[p..p + 16].copy_from_slice(&b);
        prev = b;
    }
    expected[3] |= 0x80;
    let mut p = clear;
    let mut s = scrambler(CipherKind::DvbCissa, None, CW, CW);
    s.scramble(&mut p, Parity::Even, |_| true).unwrap();
    assert_eq!(p, expected);
    assert_eq!(&p[180..], &clear[180..], "residue clear");
}

/// Every cipher, every payload length 0..=184 (adaptation fields of 0..=183 bytes, and
/// none), mixed in one buffer so the side-by-side lanes see every combination: each packet
/// equals the reference, the header and adaptation field are untouched, the bits say the
/// parity; descrambling restores the buffer.
#[test]
fn every_length_matches_reference() {
    let even: [u8; 16] = hex(CW);
    let odd: [u8; 16] = hex("00112233445566778899aabbccddeeff");
    for kind in CipherKind::ALL {
        for iv in [None, Some(hex("0f0e0d0c0b0a09080706050403020100"))] {
            let ivv = iv.unwrap_or(kind.default_iv());
            let layouts: Vec<Option<u8>> =
                std::iter::once(None).chain((0..=183u8).map(Some)).collect();
            let mut buf = Vec::new();
            for (i, af) in layouts.iter().enumerate() {
                buf.extend_from_slice(&packet(0x100 + i as u16 % 3, *af, i as u32));
            }
            let clear = buf.clone();
            for parity in [Parity::Even, Parity::Odd] {
                let key = if parity == Parity::Even { &even } else { &odd };
                let mut s = Scrambler::new(kind, iv);
                s.set_cw(Parity::Even, &ControlWord::new(even));
                s.set_cw(Parity::Odd, &ControlWord::new(odd));
                let mut b = clear.clone();
                let n = s.scramble(&mut b, parity, |_| true).unwrap();
                assert_eq!(n, layouts.len() - 1, "{kind}: all but the empty payload");
                for (i, af) in layouts.iter().enumerate() {
                    let at = i * 188;
                    let start = payload_start(*af);
                    let (got, want) = (&b[at..at + 188], &clear[at..at + 188]);
                    if start >= 188 {
                        assert_eq!(got, want, "{kind}: empty payload untouched");
                        continue;
                    }
                    assert_eq!(got[3] >> 6, parity.bits(), "{kind} af {af:?}");
                    assert_eq!(got[3] & 0x3F, want[3] & 0x3F);
                    assert_eq!(got[..3], want[..3]);
                    assert_eq!(got[4..start], want[4..start], "{kind}: AF clear");
                    let mut r = want[start..].to_vec();
                    reference(kind, key, &ivv, &mut r);
                    assert_eq!(&got[start..], &r[..], "{kind} iv {iv:?} af {af:?}");
                    if matches!(kind, CipherKind::DvbCissa | CipherKind::Sm4Cbc) {
                        let res = (188 - start) % 16;
                        assert_eq!(got[188 - res..], want[188 - res..], "{kind}: residue clear");
                    }
                }
                assert_eq!(s.descramble(&mut b), Ok(n));
                assert_eq!(b, clear, "{kind} round trip");
                let c = s.stats();
                assert_eq!(c.packets, 2 * layouts.len() as u64);
                assert_eq!(c.processed, 2 * n as u64);
                assert_eq!(
                    (c.no_payload, c.clear),
                    (1, 1),
                    "the empty payload, both ways"
                );
            }
        }
    }
}

/// Packets left alone by `scramble`, each counted under its reason.
#[test]
fn left_clear_and_counted() {
    let mut buf = Vec::new();
    buf.extend_from_slice(&packet(0x0000, None, 1)); // PSI: the predicate says no
    buf.extend_from_slice(&packet(0x1FFF, None, 2)); // null
    let mut af_only = packet(0x100, Some(183), 3);
    af_only[3] = 0x20; // adaptation field only
    buf.extend_from_slice(&af_only);
    let mut reserved_afc = packet(0x100, None, 4);
    reserved_afc[3] &= 0xCF; // adaptation_field_control 00
    buf.extend_from_slice(&reserved_afc);
    buf.extend_from_slice(&packet(0x100, Some(184), 5)); // AF runs past the end
    buf.extend_from_slice(&packet(0x100, Some(255), 6));
    let mut scrambled = packet(0x100, None, 7);
    scrambled[3] |= 0xC0;
    buf.extend_from_slice(&scrambled);
    buf.extend_from_slice(&packet(0x100, Some(183), 8)); // empty payload
    buf.extend_from_slice(&packet(0x100, Some(170), 9)); // 13 bytes: CISSA leaves it clear
    let clear = buf.clone();
    let mut s = scrambler(CipherKind::DvbCissa, None, CW, CW);
    let n = s
        .scramble(&mut buf, Parity::Even, |pid| pid >= 0x20)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(buf[..8 * 188], clear[..8 * 188]);
    assert_eq!(buf[8 * 188 + 3] >> 6, 0b10);
    assert_eq!(buf[8 * 188 + 4..], clear[8 * 188 + 4..]);
    assert_eq!(
        s.stats(),
        PacketCounts {
            packets: 9,
            processed: 1,
            short_payload: 1,
            no_payload: 3,
            null: 1,
            excluded: 1,
            already_scrambled: 1,
            bad_adaptation_field: 2,
            ..PacketCounts::default()
        }
    );
}

/// `descramble` takes each packet's key from its bits; a parity without a key is left alone.
#[test]
fn descramble_by_parity() {
    let mut buf = Vec::new();
    for i in 0..40u32 {
        buf.extend_from_slice(&packet(0x100, if i % 5 == 0 { Some(7) } else { None }, i));
    }
    let clear = buf.clone();
    for kind in CipherKind::ALL {
        let mut s = scrambler(kind, None, CW, "ffeeddccbbaa99887766554433221100");
        let mut b = clear.clone();
        // Alternate parity every 3 packets.
        for (i, p) in b.chunks_exact_mut(188 * 3).enumerate() {
            let parity = if i % 2 == 0 {
                Parity::Even
            } else {
                Parity::Odd
            };
            s.scramble(p, parity, |_| true).unwrap();
        }
        let tail = b.len() / (188 * 3) * 188 * 3;
        s.scramble(&mut b[tail..], Parity::Even, |_| true).unwrap();
        let scrambled = b.clone();
        let mut d = Scrambler::new(kind, None);
        d.set_cw(Parity::Even, &ControlWord::from_hex(CW).unwrap());
        let n = d.descramble(&mut b).unwrap();
        assert_eq!(n, 22, "{kind}: the even packets only");
        assert_eq!(d.stats().no_key, 18);
        d.set_cw(
            Parity::Odd,
            &ControlWord::from_hex("ffeeddccbbaa99887766554433221100").unwrap(),
        );
        assert_eq!(d.descramble(&mut b).unwrap(), 18);
        assert_eq!(b, clear, "{kind}");
        assert_ne!(scrambled, clear);
    }
}

// ---- Fixtures ----------------------------------------------------------------------------

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 7, "fixtures/media/*.ts");
    v
}

/// The PMT PIDs the PAT lists.
fn pmt_pids(data: &[u8]) -> Vec<u16> {
    let mut pids = Vec::new();
    let mut demux = Demux::new();
    demux.push(Bytes::copy_from_slice(data), &mut |ev| {
        if let DemuxEvent::Pat(pat) = ev {
            pids.extend(pat.programs.iter().map(|(_, pid)| pid.value()));
        }
    });
    assert!(!pids.is_empty());
    pids
}

/// Every cipher over every fixture: PSI/SI (0x0000..=0x001F, the PMTs) and null packets are
/// untouched, every other packet with a payload has the bits and a changed payload (CISSA
/// rules: if 16 bytes or more), and descrambling gives the file back byte for byte.
#[test]
fn fixtures_round_trip() {
    for (name, data) in fixtures() {
        let pmts = pmt_pids(&data);
        let es = |pid: u16| pid > 0x1F && pid != 0x1FFF && !pmts.contains(&pid);
        for kind in CipherKind::ALL {
            let mut s = scrambler(kind, None, CW, "00112233445566778899aabbccddeeff");
            let mut b = data.clone();
            let parity = if kind == CipherKind::AesCtr {
                Parity::Odd
            } else {
                Parity::Even
            };
            let n = s.scramble(&mut b, parity, es).unwrap();
            assert!(n > 1000, "{name} {kind}: {n}");
            for (got, want) in b.chunks_exact(188).zip(data.chunks_exact(188)) {
                let pid = u16::from_be_bytes([want[1], want[2]]) & 0x1FFF;
                let start = match (want[3] >> 4) & 3 {
                    1 => 4,
                    3 => 5 + want[4] as usize,
                    _ => 188,
                };
                if !es(pid) || start >= 188 {
                    assert_eq!(got, want, "{name} {kind}: pid {pid:#x} untouched");
                    continue;
                }
                assert_eq!(got[3] >> 6, parity.bits(), "{name} {kind}");
                assert_eq!(got[..start], {
                    let mut h = want[..start].to_vec();
                    h[3] |= parity.bits() << 6;
                    h
                });
                if 188 - start >= 16 {
                    assert_ne!(got[start..], want[start..], "{name} {kind}: scrambled");
                }
            }
            assert_eq!(s.descramble(&mut b), Ok(n));
            assert!(b == data, "{name} {kind}: round trip");
        }
    }
}

// ---- API details -------------------------------------------------------------------------

#[test]
fn names_and_modes() {
    for kind in CipherKind::ALL {
        assert_eq!(kind.to_string().parse::<CipherKind>(), Ok(kind));
    }
    assert_eq!("DVB-CISSA".parse(), Ok(CipherKind::DvbCissa));
    assert_eq!(
        "csa2".parse::<CipherKind>(),
        Err(ScrambleError::UnknownCipher)
    );
    let modes: Vec<_> = CipherKind::ALL.map(|k| k.scrambling_mode()).to_vec();
    assert_eq!(
        modes,
        [Some(0x10), Some(0x70), Some(0xF1), Some(0xE0), Some(0xE1)]
    );
    assert_eq!(Parity::Even.bits(), 0b10);
    assert_eq!(Parity::Odd.bits(), 0b11);
    assert_eq!(Parity::Even.flip(), Parity::Odd);
}

/// Key bytes never show in Debug, in any radix, nor in errors.
#[test]
fn debug_hides_keys() {
    let cw = ControlWord::from_hex("0x0123456789ABCDEFfedcba9876543210").unwrap();
    assert_eq!(cw.as_bytes(), &hex::<16>(CW));
    let shown = format!("{cw:?} {cw:#?}");
    assert_eq!(format!("{cw:?}"), "ControlWord(..)");
    let s = scrambler(CipherKind::Sm4Cbc, None, CW, CW);
    let shown = format!(
        "{shown} {s:?} {s:#?} {:?} {:?}",
        Sm4::new(&[7; 16]),
        Aes128::new(&[7; 16])
    );
    for needle in ["0123", "01, 23", "1, 35", "0x1", "fedc", "254"] {
        assert!(!shown.contains(needle), "{needle} in {shown}");
    }
    let err = ControlWord::from_hex("0123456789abcdefXedcba9876543210").unwrap_err();
    assert_eq!(err, ScrambleError::HexDigit { position: 16 });
    assert!(!err.to_string().contains('X'));
    assert_eq!(
        ControlWord::from_hex("0123").unwrap_err(),
        ScrambleError::HexLength { digits: 4 }
    );
}

/// One 16-byte hex parser, two spellings: the command line's (`0x` allowed) and the
/// configuration's (32 digits exactly).
#[test]
fn hex16_with_and_without_prefix() {
    use drm::cipher::{parse_hex16, parse_hex16_strict};
    let bytes = hex::<16>(CW);
    assert_eq!(parse_hex16(CW), Ok(bytes));
    assert_eq!(parse_hex16(&format!("0X{CW}")), Ok(bytes));
    assert_eq!(parse_hex16_strict(&CW.to_uppercase()), Ok(bytes));
    assert_eq!(
        parse_hex16_strict(&format!("0x{CW}")),
        Err(ScrambleError::HexLength { digits: 34 })
    );
    assert_eq!(
        parse_hex16_strict(&format!("0x{}", &CW[2..])),
        Err(ScrambleError::HexDigit { position: 1 })
    );
    assert_eq!(
        parse_hex16_strict(&format!(" {}", &CW[1..])),
        Err(ScrambleError::HexDigit { position: 0 })
    );
    assert_eq!(
        parse_hex16("0x"),
        Err(ScrambleError::HexLength { digits: 0 })
    );
}

#[test]
fn errors_name_the_packet_and_change_nothing() {
    let mut s = scrambler(CipherKind::DvbCissa, None, CW, CW);
    let mut buf = [
        packet(0x100, None, 1),
        packet(0x100, None, 2),
        packet(0x100, None, 3),
    ]
    .concat();
    buf[2 * 188] = 0x48;
    let before = buf.clone();
    assert_eq!(
        s.scramble(&mut buf, Parity::Even, |_| true),
        Err(ScrambleError::Sync {
            index: 2,
            found: 0x48
        })
    );
    assert_eq!(buf, before);
    assert_eq!(
        s.descramble(&mut buf[..400]),
        Err(ScrambleError::Length { index: 2, len: 400 })
    );
    assert_eq!(buf, before);
    let mut fresh = Scrambler::new(CipherKind::AtisIdsa, None);
    assert_eq!(
        fresh.scramble(&mut buf[..188], Parity::Odd, |_| true),
        Err(ScrambleError::NoKey {
            parity: Parity::Odd
        })
    );
    assert_eq!(buf, before);
    assert_eq!(s.scramble(&mut [], Parity::Even, |_| true), Ok(0));
}

fn kind_strategy() -> impl Strategy<Value = CipherKind> {
    (0..5usize).prop_map(|i| CipherKind::ALL[i])
}

proptest! {
    /// Any bytes at all: no panic; errors only for length and sync.
    #[test]
    fn garbage_never_panics(
        kind in kind_strategy(),
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        sync in any::<bool>(),
    ) {
        let mut data = data;
        if sync {
            let whole = data.len() / 188 * 188;
            data.truncate(whole);
            for p in data.chunks_exact_mut(188) {
                p[0] = 0x47;
            }
        }
        let mut s = scrambler(kind, None, CW, CW);
        let a = s.scramble(&mut data, Parity::Even, |pid| pid % 2 == 0);
        let b = s.descramble(&mut data);
        if sync {
            prop_assert!(a.is_ok() && b.is_ok());
        } else {
            prop_assert!(a.is_ok() == b.is_ok());
        }
    }

    /// Packets with clear bits: descramble(scramble(x)) == x for any other bytes.
    #[test]
    fn round_trip_any_packets(
        kind in kind_strategy(),
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 188), 0..20),
        odd in any::<bool>(),
        iv in any::<[u8; 16]>(),
    ) {
        let mut data: Vec<u8> = packets.concat();
        for p in data.chunks_exact_mut(188) {
            p[0] = 0x47;
            p[3] &= 0x3F;
        }
        let clear = data.clone();
        let mut s = scrambler(kind, Some(iv), CW, "00112233445566778899aabbccddeeff");
        let parity = if odd { Parity::Odd } else { Parity::Even };
        let n = s.scramble(&mut data, parity, |_| true).unwrap();
        prop_assert_eq!(s.descramble(&mut data).unwrap(), n);
        prop_assert_eq!(data, clear);
        let c = s.stats();
        prop_assert_eq!(
            c.packets,
            c.processed + c.no_payload + c.null + c.excluded + c.already_scrambled + c.clear
                + c.reserved_scrambling + c.no_key + c.bad_adaptation_field
        );
    }
}

#[test]
fn packet_size_is_188() {
    assert_eq!(PACKET_SIZE, 188);
}
