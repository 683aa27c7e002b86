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
//! encrypted in one call ([`Lanes::encrypt_blocks`]): AES-NI pipelines 8 blocks, and SM4's
//! GFNI code wants 80 (5 registers of 16, [`super::sm4`]), hence batches of 80 packets. CBC
//! decryption is parallel within a packet too: the full blocks of several packets
//! ([`Lanes::DECRYPT_PACKETS`]) are decrypted in one call. CTR's keystream is the same for
//! every packet (it restarts at the IV), so it is computed once per key.

use zeroize::Zeroize;

use super::block::{Aes128, Blk, Lanes, Sm4};
use super::{CipherKind, PACKET_SIZE};

/// Packets scrambled side by side: the CBC chains in flight (AES-NI needs 8, SM4 with GFNI
/// 80; more only cost AES a larger working set).
pub(super) const LANES: usize = 80;
/// Batches of up to this many packets (a UDP datagram holds 7) get scratch arrays sized for
/// them: zeroing room for [`LANES`] packets would cost such a call more than its AES.
const SMALL: usize = 8;
/// Full blocks of the longest payload (184 bytes).
const MAX_BLOCKS: usize = 184 / 16;
/// Keystream bytes of the CTR modes: enough for a 184-byte payload.
const KEYSTREAM: usize = 192;

/// Up to [`LANES`] payloads of one buffer, each running to the end of its packet: kept as
/// their offsets alone (the length is what is left of the packet), so that a batch is
/// cheap to make for a 7-packet datagram.
pub(super) struct Batch {
    at: [usize; LANES],
    n: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            at: [0; LANES],
            n: 0,
        }
    }
}

impl Batch {
    /// Adds the payload at `at` in the buffer, `len` bytes to the end of its packet.
    pub(super) fn push(&mut self, at: usize, len: usize) {
        debug_assert_eq!(len, payload_len(at));
        if self.n < LANES {
            self.at[self.n] = at;
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
    /// Offset of each payload.
    fn offsets(&self) -> &[usize] {
        &self.at[..self.n]
    }
}

/// (offset, length) of the payload at `at`: it runs to the end of its packet.
fn lane(at: usize) -> (usize, usize) {
    (at, payload_len(at))
}

fn payload_len(at: usize) -> usize {
    PACKET_SIZE - at % PACKET_SIZE
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
    if batch.n <= SMALL {
        cbc_encrypt_n::<C, SMALL>(c, iv, buf, batch.offsets(), xor_residue);
    } else {
        cbc_encrypt_n::<C, LANES>(c, iv, buf, batch.offsets(), xor_residue);
    }
}

/// [`cbc_encrypt`] of up to `N` payloads (their offsets): scratch for `N` chains. Every
/// step encrypts a block for each payload, past the end of the shorter ones too (nearly
/// all have 11 blocks; the extra results are dropped).
fn cbc_encrypt_n<C: Lanes, const N: usize>(
    c: &C,
    iv: &Blk,
    buf: &mut [u8],
    offsets: &[usize],
    xor_residue: bool,
) {
    let mut lanes = [(0usize, 0usize); N];
    for (l, &at) in lanes.iter_mut().zip(offsets) {
        *l = lane(at);
    }
    let lanes = &lanes[..offsets.len().min(N)];
    let mut chain = [*iv; N];
    let mut blk = [Blk::default(); N];
    let rounds = lanes.iter().map(|&(_, len)| len / 16).max().unwrap_or(0);
    for j in 0..rounds {
        for (&(at, len), (b, prev)) in lanes.iter().zip(blk.iter_mut().zip(&chain)) {
            if j < len / 16 {
                let p = at + 16 * j;
                xor16(b, &buf[p..p + 16], prev);
            }
        }
        c.encrypt_blocks(&mut blk[..lanes.len()]);
        for (&(at, len), (b, prev)) in lanes.iter().zip(blk.iter().zip(&mut chain)) {
            if j < len / 16 {
                let p = at + 16 * j;
                buf[p..p + 16].copy_from_slice(b);
                *prev = *b;
            }
        }
    }
    if xor_residue {
        residue(c, &mut chain[..lanes.len()], buf, lanes);
    }
}

/// The DVS-042 residue: the last `len mod 16` bytes of each payload (`lanes`: offset and
/// length) XORed with `E(last)`, `last` being its last full ciphertext block (or the IV
/// when there is none).
fn residue<C: Lanes>(c: &C, last: &mut [Blk], buf: &mut [u8], lanes: &[(usize, usize)]) {
    if lanes.iter().all(|(_, len)| len % 16 == 0) {
        return;
    }
    c.encrypt_blocks(last);
    for (&(at, len), k) in lanes.iter().zip(last.iter()) {
        let r = len % 16;
        let tail = &mut buf[at + len - r..at + len];
        for (b, k) in tail.iter_mut().zip(k.iter()) {
            *b ^= k;
        }
    }
}

/// CBC decryption: the full blocks of [`Lanes::DECRYPT_PACKETS`] payloads at a time
/// decrypted in one call, then XORed with the ciphertext block before each (or the IV); the
/// IDSA residue from the ciphertext first.
fn cbc_decrypt<C: Lanes>(c: &C, iv: &Blk, buf: &mut [u8], batch: &Batch, xor_residue: bool) {
    let per_call = C::DECRYPT_PACKETS.clamp(1, LANES).min(batch.n.max(1));
    if per_call <= SMALL {
        cbc_decrypt_n::<C, SMALL, { SMALL * MAX_BLOCKS }>(c, iv, buf, batch, xor_residue);
    } else {
        cbc_decrypt_n::<C, LANES, { LANES * MAX_BLOCKS }>(c, iv, buf, batch, xor_residue);
    }
}

/// [`cbc_decrypt`] with scratch for `N` payloads of `B` (`N` × 11) blocks in all.
fn cbc_decrypt_n<C: Lanes, const N: usize, const B: usize>(
    c: &C,
    iv: &Blk,
    buf: &mut [u8],
    batch: &Batch,
    xor_residue: bool,
) {
    let mut blocks = [Blk::default(); B];
    for offsets in batch.offsets().chunks(C::DECRYPT_PACKETS.clamp(1, N)) {
        let mut lanes = [(0usize, 0usize); N];
        let mut last = [*iv; N];
        let mut k = 0;
        for ((l, last), &at) in lanes.iter_mut().zip(last.iter_mut()).zip(offsets) {
            *l = lane(at);
            for j in 0..l.1 / 16 {
                let p = at + 16 * j;
                blocks[k].copy_from_slice(&buf[p..p + 16]);
                *last = blocks[k];
                k += 1;
            }
        }
        let n = offsets.len().min(N);
        if xor_residue {
            // Before the ciphertext is overwritten: the residue's keystream is E(C_last).
            residue(c, &mut last[..n], buf, &lanes[..n]);
        }
        c.decrypt_blocks(&mut blocks[..k]);
        let mut k = 0;
        for &(at, len) in &lanes[..n] {
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
}

/// CTR restarted per packet: every payload XORed with the same keystream.
fn ctr(keystream: &[u8; KEYSTREAM], buf: &mut [u8], batch: &Batch) {
    for &at in batch.offsets() {
        for (b, k) in buf[at..at + payload_len(at)].iter_mut().zip(keystream) {
            *b ^= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The packet modes one packet and one block at a time, by the single-block functions
    /// (SM4: the plain table code).
    fn reference(kind: CipherKind, key: &[u8; 16], iv: &[u8; 16], payload: &mut [u8]) {
        let sm4 = Sm4::new(key);
        let aes = Aes128::new(key);
        let e = |b: &mut [u8; 16]| match kind {
            CipherKind::Sm4Cbc => sm4.encrypt_block(b),
            _ => aes.encrypt_block(b),
        };
        let mut prev = *iv;
        let full = payload.len() / 16 * 16;
        for block in payload[..full].chunks_exact_mut(16) {
            for (p, c) in prev.iter_mut().zip(block.iter()) {
                *p ^= c;
            }
            e(&mut prev);
            block.copy_from_slice(&prev);
        }
        if kind == CipherKind::AtisIdsa {
            e(&mut prev);
            for (b, k) in payload[full..].iter_mut().zip(prev) {
                *b ^= k;
            }
        }
    }

    proptest! {
        /// A batch of any size up to LANES (fewer packets than the SM4 code's 16 lanes too)
        /// and any payload lengths: each payload as the one-block-at-a-time reference, and
        /// back.
        #[test]
        fn cbc_batch_equals_reference(
            kind in prop_oneof![
                Just(CipherKind::Sm4Cbc),
                Just(CipherKind::DvbCissa),
                Just(CipherKind::AtisIdsa),
            ],
            key in any::<[u8; 16]>(),
            iv in any::<[u8; 16]>(),
            lens in proptest::collection::vec(1usize..=184, 0..=LANES),
            seed in any::<u8>(),
        ) {
            let mut buf: Vec<u8> = (0..lens.len() * 188)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect();
            let clear = buf.clone();
            let mut batch = Batch::default();
            for (i, &len) in lens.iter().enumerate() {
                batch.push(i * 188 + 188 - len, len);
            }
            let keyed = Keyed::new(kind, &key, &iv);
            keyed.encrypt(kind, &mut buf, &batch);
            let mut want = clear.clone();
            for (i, &len) in lens.iter().enumerate() {
                let at = i * 188 + 188 - len;
                reference(kind, &key, &iv, &mut want[at..at + len]);
            }
            prop_assert_eq!(&buf, &want);
            keyed.decrypt(kind, &mut buf, &batch);
            prop_assert_eq!(buf, clear);
        }
    }
}
