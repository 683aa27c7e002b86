//! The packet modes over a batch of up to [`LANES`] packet payloads of one buffer: CBC with a
//! clear residue (DVB-CISSA, ETSI TS 103 127 §5; SM4-CBC), CBC with the DVS-042 residue
//! (ATIS-IDSA, ATIS-0800006 / ANSI/SCTE 52 §5) and CTR restarted per packet.
//!
//! ```text
//!  CBC, per packet:  C[0] = E(P[0] ^ IV), C[j] = E(P[j] ^ C[j-1])   (full 16-byte blocks)
//!  residue m bytes:  clear (CISSA) | R ^ MSB_m(E(C_last)), or R ^ MSB_m(E(IV)) if no full block (IDSA)
//!  CTR, per packet:  payload ^ (E(IV) | E(IV+1) | ...), IV+j adding to the IV's low 64 bits
//! ```
//!
//! CBC encryption is serial within a packet, so block `j` of every packet of the batch is
//! encrypted in one call ([`Lanes::encrypt_lanes`]) and the AES-NI pipeline stays full. CBC
//! decryption is parallel within a packet too: every full block of the batch is decrypted in
//! one call. CTR's keystream is the same for every packet (it restarts at the IV), so it is
//! computed once per key.

use zeroize::Zeroize;

use super::block::{Aes128, Blk, Lanes, Sm4};
use super::CipherKind;

/// Packets scrambled side by side (AES-NI: 8 blocks in flight).
pub(super) const LANES: usize = 8;
/// Full blocks of the longest payload (184 bytes).
const MAX_BLOCKS: usize = 184 / 16;
/// Keystream bytes of the CTR modes: enough for a 184-byte payload.
const KEYSTREAM: usize = 192;

/// Up to [`LANES`] payloads of one buffer: (offset, length) each, length 1..=184.
#[derive(Default)]
pub(super) struct Batch {
    at: [usize; LANES],
    len: [usize; LANES],
    n: usize,
}

impl Batch {
    pub(super) fn push(&mut self, at: usize, len: usize) {
        if self.n < LANES {
            self.at[self.n] = at;
            self.len[self.n] = len;
            self.n += 1;
        }
    }
    pub(super) fn is_full(&self) -> bool {
        self.n == LANES
    }
    pub(super) fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub(super) fn clear(&mut self) {
        self.n = 0;
    }
    /// (offset, length) of each payload.
    fn lanes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.at[..self.n]
            .iter()
            .copied()
            .zip(self.len[..self.n].iter().copied())
    }
}

// Two per scrambler, never moved in the hot path: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Aes(Aes128),
    Sm4(Sm4),
}

/// One parity's key, expanded for its cipher kind. Wiped when dropped.
pub(super) struct Keyed {
    engine: Engine,
    iv: Blk,
    /// The CTR modes' keystream (zero for the CBC modes).
    keystream: [u8; KEYSTREAM],
}

impl Drop for Keyed {
    fn drop(&mut self) {
        self.keystream.zeroize();
    }
}

/// Runs `$body` with `$c` bound to the engine's cipher, monomorphised per cipher.
macro_rules! with_cipher {
    ($engine:expr, $c:ident => $body:expr) => {
        match $engine {
            Engine::Aes($c) => $body,
            Engine::Sm4($c) => $body,
        }
    };
}

impl Keyed {
    pub(super) fn new(kind: CipherKind, key: &[u8; 16], iv: &[u8; 16]) -> Keyed {
        let engine = match kind {
            CipherKind::DvbCissa | CipherKind::AtisIdsa | CipherKind::AesCtr => {
                Engine::Aes(Aes128::new(key))
            }
            CipherKind::Sm4Cbc | CipherKind::Sm4Ctr => Engine::Sm4(Sm4::new(key)),
        };
        let mut keystream = [0u8; KEYSTREAM];
        if matches!(kind, CipherKind::AesCtr | CipherKind::Sm4Ctr) {
            let mut counters = [Blk::default(); KEYSTREAM / 16];
            let (nonce, low) = iv.split_at(8);
            let mut low8 = [0u8; 8];
            low8.copy_from_slice(low);
            let low = u64::from_be_bytes(low8);
            for (j, c) in counters.iter_mut().enumerate() {
                c[..8].copy_from_slice(nonce);
                c[8..].copy_from_slice(&low.wrapping_add(j as u64).to_be_bytes());
            }
            with_cipher!(&engine, c => c.encrypt_blocks(&mut counters));
            for (out, c) in keystream.chunks_exact_mut(16).zip(&counters) {
                out.copy_from_slice(c);
            }
            counters.iter_mut().for_each(|c| c[..].zeroize());
        }
        Keyed {
            engine,
            iv: Blk::from(*iv),
            keystream,
        }
    }

    /// Scrambles the payloads of `batch` in `buf`.
    pub(super) fn encrypt(&self, kind: CipherKind, buf: &mut [u8], batch: &Batch) {
        match kind {
            CipherKind::DvbCissa | CipherKind::Sm4Cbc => {
                with_cipher!(&self.engine, c => cbc_encrypt(c, &self.iv, buf, batch, false))
            }
            CipherKind::AtisIdsa => {
                with_cipher!(&self.engine, c => cbc_encrypt(c, &self.iv, buf, batch, true))
            }
            CipherKind::AesCtr | CipherKind::Sm4Ctr => ctr(&self.keystream, buf, batch),
        }
    }

    /// Descrambles the payloads of `batch` in `buf`.
    pub(super) fn decrypt(&self, kind: CipherKind, buf: &mut [u8], batch: &Batch) {
        match kind {
            CipherKind::DvbCissa | CipherKind::Sm4Cbc => {
                with_cipher!(&self.engine, c => cbc_decrypt(c, &self.iv, buf, batch, false))
            }
            CipherKind::AtisIdsa => {
                with_cipher!(&self.engine, c => cbc_decrypt(c, &self.iv, buf, batch, true))
            }
            CipherKind::AesCtr | CipherKind::Sm4Ctr => ctr(&self.keystream, buf, batch),
        }
    }
}

/// `dst = a ^ b` over 16 bytes.
#[inline(always)]
fn xor16(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, x), y) in dst[..16].iter_mut().zip(&a[..16]).zip(&b[..16]) {
        *d = x ^ y;
    }
}

/// CBC over the full blocks of each payload, with block `j` of every payload in one call;
/// then, with `xor_residue`, the DVS-042 residue (else the residue stays clear).
fn cbc_encrypt<C: Lanes>(c: &C, iv: &Blk, buf: &mut [u8], batch: &Batch, xor_residue: bool) {
    let mut chain = [*iv; LANES];
    let mut blk = [Blk::default(); LANES];
    let rounds = batch.lanes().map(|(_, len)| len / 16).max().unwrap_or(0);
    for j in 0..rounds {
        for ((at, len), (b, prev)) in batch.lanes().zip(blk.iter_mut().zip(&chain)) {
            if j < len / 16 {
                let p = at + 16 * j;
                xor16(b, &buf[p..p + 16], prev);
            }
        }
        c.encrypt_lanes(&mut blk);
        for ((at, len), (b, prev)) in batch.lanes().zip(blk.iter().zip(chain.iter_mut())) {
            if j < len / 16 {
                let p = at + 16 * j;
                buf[p..p + 16].copy_from_slice(b);
                *prev = *b;
            }
        }
    }
    if xor_residue {
        residue(c, chain, buf, batch);
    }
}

/// The DVS-042 residue: the last `len mod 16` bytes XORed with `E(last)`, `last` being the
/// last full ciphertext block (or the IV when there is none).
fn residue<C: Lanes>(c: &C, mut last: [Blk; LANES], buf: &mut [u8], batch: &Batch) {
    if batch.lanes().all(|(_, len)| len % 16 == 0) {
        return;
    }
    c.encrypt_lanes(&mut last);
    for ((at, len), k) in batch.lanes().zip(&last) {
        let r = len % 16;
        let tail = &mut buf[at + len - r..at + len];
        for (b, k) in tail.iter_mut().zip(k.iter()) {
            *b ^= k;
        }
    }
}

/// CBC decryption: every full block of the batch decrypted in one call, then XORed with the
/// ciphertext block before it (or the IV); the IDSA residue from the ciphertext first.
fn cbc_decrypt<C: Lanes>(c: &C, iv: &Blk, buf: &mut [u8], batch: &Batch, xor_residue: bool) {
    let mut last = [*iv; LANES];
    let mut blocks = [Blk::default(); LANES * MAX_BLOCKS];
    let mut k = 0;
    for ((at, len), last) in batch.lanes().zip(last.iter_mut()) {
        for j in 0..len / 16 {
            let p = at + 16 * j;
            blocks[k].copy_from_slice(&buf[p..p + 16]);
            k += 1;
        }
        if len >= 16 {
            *last = blocks[k - 1];
        }
    }
    if xor_residue {
        // Before the ciphertext is overwritten: the residue's keystream is E(C_last).
        residue(c, last, buf, batch);
    }
    c.decrypt_blocks(&mut blocks[..k]);
    let mut k = 0;
    for (at, len) in batch.lanes() {
        let mut prev = *iv;
        for j in 0..len / 16 {
            let p = at + 16 * j;
            let mut cipher = Blk::default();
            cipher.copy_from_slice(&buf[p..p + 16]);
            xor16(&mut buf[p..p + 16], &blocks[k], &prev);
            prev = cipher;
            k += 1;
        }
    }
}

/// CTR restarted per packet: every payload XORed with the same keystream.
fn ctr(keystream: &[u8; KEYSTREAM], buf: &mut [u8], batch: &Batch) {
    for (at, len) in batch.lanes() {
        for (b, k) in buf[at..at + len].iter_mut().zip(keystream) {
            *b ^= k;
        }
    }
}
