//! SM4 (GB/T 32907-2016) on 16 blocks per 512-bit register, the S-box computed by GFNI
//! (x86-64 with AVX-512 and GFNI, chosen at run time by [`super`]).
//!
//! ```text
//!  register k of a group = word k of 16 blocks (big-endian words, one per 32-bit lane)
//!  S(x) = A·(A·x ⊕ 0xD3)⁻¹ ⊕ 0xD3 in GF(2⁸) mod x⁸+x⁷+x⁶+x⁵+x⁴+x²+1 (0x1F5), A = circ(0xA7)
//!       = M₂·inv(M₁·x ⊕ 0x3E) ⊕ 0xD3, inv in the AES field, M₁ = φ·A, M₂ = A·φ⁻¹
//!  L(s), byte j (j = 0 least significant, indices mod 4):
//!       = A₀·s[j] ⊕ A₁·s[j-1] ⊕ A₁·s[j-2] ⊕ A₃·s[j-3]
//!         A₀ = 1 ⊕ shl2, A₁ = shr6 ⊕ shl2, A₃ = shr6 ⊕ 1
//!  state kept as X' = M₁·X per byte, round keys rk' = M₁·rk ⊕ 0x3E per byte:
//!       u = X'[i+1] ⊕ X'[i+2] ⊕ X'[i+3] ⊕ rk' = M₁·t ⊕ 0x3E
//!       qₖ = (M₁·Aₖ·M₂)·inv(u)  (one gf2p8affineinv each, the constant folded into q₀)
//!       X'[i+4] = X'[i] ⊕ q₀ ⊕ q₁<<<8 ⊕ q₁<<<16 ⊕ q₃<<<24
//! ```
//!
//! φ is the field isomorphism from 0x1F5 to the AES field (0x11B) sending x to 0x23, a root
//! of 0x1F5 there: GFNI's `gf2p8affineinv` inverts in the AES field. Working in the basis
//! M₁ folds the S-box's first affine map into the state and L's rotations by 2 into the
//! matrices, leaving byte rotations: a round is 3 GFNI instructions, 3 rotations and 4
//! XORs (in 4 instructions) per 16 blocks. Several groups of 16 blocks run side by side so
//! that one round's latency overlaps the other groups' work. No table is indexed by data.
//!
//! Needs Rust 1.89 (AVX-512 and GFNI intrinsics, safe to call from a `#[target_feature]`
//! function since 1.87), above the workspace's declared 1.85: hence the `clippy::msrv` on
//! the `mod` line.

use std::arch::x86_64::{
    __m128i, __m512i, _mm256_set_m128i, _mm512_broadcast_i32x4, _mm512_castsi256_si512,
    _mm512_extracti32x4_epi32, _mm512_gf2p8affine_epi64_epi8, _mm512_gf2p8affineinv_epi64_epi8,
    _mm512_inserti64x4, _mm512_rol_epi32, _mm512_set1_epi32, _mm512_set1_epi64,
    _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32,
    _mm512_unpackhi_epi64, _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm512_xor_si512,
    _mm_set_epi8, _mm_setzero_si128,
};

use super::super::block::Blk;

/// Blocks per group (one 512-bit register per word).
const GROUP: usize = 16;
/// Groups in flight in one pass.
const GROUPS: usize = 5;

// GFNI matrices: row i (the bits that give output bit i) in byte 7 − i. Derived from the
// definitions above; `tests::matrices` checks them against the S-box table.
/// M₁ = φ·A.
const M1: u64 = 0x4c28_7db9_1a22_505d;
/// M₁⁻¹.
const M1_INV: u64 = 0xb3a4_f586_3284_728b;
/// M₁·A₀·M₂.
const Q0: u64 = 0x040d_b891_e9a4_81b7;
/// M₁·A₁·M₂.
const Q1: u64 = 0x2c02_0425_1620_40ad;
/// M₁·A₃·M₂.
const Q3: u64 = 0x280f_bcb4_ff84_c11a;
/// φ(0xD3), added before the inversion.
const C1: u8 = 0x3e;
/// M₁·(A₀ ⊕ A₃)·0xD3: the S-box's last constant through L (A₁ twice cancels) and M₁.
const B0: i32 = 0x63;

/// The round keys `rk` in the basis of [`crypt`]: `M₁·b ⊕ 0x3E` for each byte `b`.
pub(super) fn round_keys(rk: &[u32; 32]) -> [u32; 32] {
    rk.map(|k| u32::from_le_bytes(k.to_le_bytes().map(|b| affine(M1, b) ^ C1)))
}

/// Runs the 32 rounds `rk` ([`round_keys`] of the encryption keys, or of the decryption
/// keys) on every block of `blocks`, up to [`GROUPS`] × 16 blocks per pass, the groups
/// spread evenly over the passes (5 groups: 3 + 2, not 4 + 1).
#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(super) fn crypt(rk: &[u32; 32], blocks: &mut [Blk]) {
    let groups = blocks.len().div_ceil(GROUP);
    if groups <= GROUPS {
        // One pass (every CBC encryption step): no division.
        return crypt_pass(rk, blocks, groups);
    }
    let passes = groups.div_ceil(GROUPS);
    let mut rest = blocks;
    for pass in 0..passes {
        // At most ⌈groups / passes⌉ ≤ GROUPS.
        let g = groups * (pass + 1) / passes - groups * pass / passes;
        let (now, later) = rest.split_at_mut((g * GROUP).min(rest.len()));
        crypt_pass(rk, now, g);
        rest = later;
    }
}

/// One pass over `blocks`, `groups` (1..=GROUPS) groups of 16 or fewer.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
#[inline]
fn crypt_pass(rk: &[u32; 32], blocks: &mut [Blk], groups: usize) {
    match groups {
        0 => {}
        1 => crypt_groups::<1>(rk, blocks),
        2 => crypt_groups::<2>(rk, blocks),
        3 => crypt_groups::<3>(rk, blocks),
        4 => crypt_groups::<4>(rk, blocks),
        _ => crypt_groups::<GROUPS>(rk, blocks),
    }
}

/// `a ^ b ^ c`.
#[target_feature(enable = "avx512f")]
#[inline]
fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0x96>(a, b, c)
}

/// One round on word `i` of every group: `X'[i] ^= M₁·L(τ(t))`, `t` being
/// `X[i+1] ^ X[i+2] ^ X[i+3] ^ rk` and `rk` the round key in the state's basis.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
#[inline]
fn round<const G: usize>(x: &mut [[__m512i; 4]; G], i: usize, rk: u32) {
    let k = _mm512_set1_epi32(rk as i32);
    let (q0, q1, q3) = (splat(Q0), splat(Q1), splat(Q3));
    for w in x.iter_mut() {
        // The word written last round is the newest: XOR it last.
        let older = xor3(w[(i + 1) % 4], w[(i + 2) % 4], k);
        let u = _mm512_xor_si512(older, w[(i + 3) % 4]);
        let a = _mm512_gf2p8affineinv_epi64_epi8::<B0>(u, q0);
        let b = _mm512_gf2p8affineinv_epi64_epi8::<0>(u, q1);
        let c = _mm512_gf2p8affineinv_epi64_epi8::<0>(u, q3);
        let head = xor3(w[i], a, _mm512_rol_epi32::<24>(c));
        w[i] = xor3(head, _mm512_rol_epi32::<8>(b), _mm512_rol_epi32::<16>(b));
    }
}

/// The matrix `m` in every 64-bit lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn splat(m: u64) -> __m512i {
    _mm512_set1_epi64(m as i64)
}

/// `m · x` on every byte.
#[target_feature(enable = "avx512f,gfni")]
#[inline]
fn map_bytes(x: __m512i, m: u64) -> __m512i {
    _mm512_gf2p8affine_epi64_epi8::<0>(x, splat(m))
}

/// One pass over up to `G` × 16 blocks; missing blocks are zeros, never written back.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
#[inline]
fn crypt_groups<const G: usize>(rk: &[u32; 32], blocks: &mut [Blk]) {
    let mut x = [[_mm512_setzero_si512(); 4]; G];
    for (g, w) in x.iter_mut().enumerate() {
        *w = load(blocks.get(g * GROUP..).unwrap_or_default()).map(|v| map_bytes(v, M1));
    }
    for r in rk.chunks_exact(4) {
        round(&mut x, 0, r[0]);
        round(&mut x, 1, r[1]);
        round(&mut x, 2, r[2]);
        round(&mut x, 3, r[3]);
    }
    for (g, w) in x.iter().enumerate() {
        if let Some(out) = blocks.get_mut(g * GROUP..) {
            // Output (X35, X34, X33, X32): the words in reverse.
            store([w[3], w[2], w[1], w[0]].map(|v| map_bytes(v, M1_INV)), out);
        }
    }
}

/// Byte order within each 32-bit lane reversed: big-endian words to lanes and back.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn bswap32(v: __m512i) -> __m512i {
    let order = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(order))
}

/// 4×4 transpose of 32-bit words within each 128-bit lane of four registers: an involution.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose(v: [__m512i; 4]) -> [__m512i; 4] {
    let t0 = _mm512_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm512_unpacklo_epi32(v[2], v[3]);
    let t2 = _mm512_unpackhi_epi32(v[0], v[1]);
    let t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    [
        _mm512_unpacklo_epi64(t0, t1),
        _mm512_unpackhi_epi64(t0, t1),
        _mm512_unpacklo_epi64(t2, t3),
        _mm512_unpackhi_epi64(t2, t3),
    ]
}

/// Up to 16 blocks (zeros past the end) as four registers of words: register k holds word k
/// of blocks 4j + l (l the 128-bit lane) in its lane l, dword j.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn load(blocks: &[Blk]) -> [__m512i; 4] {
    let mut v = [_mm512_setzero_si512(); 4];
    for (r, quad) in v.iter_mut().zip(blocks.chunks(4)) {
        let mut lanes = [_mm_setzero_si128(); 4];
        if let [a, b, c, d] = quad {
            // Whole quads (all but the last): fixed-size loads.
            lanes = [a, b, c, d].map(|b| bytemuck::cast(<[u8; 16]>::from(*b)));
        } else {
            for (lane, b) in lanes.iter_mut().zip(quad) {
                *lane = bytemuck::cast(<[u8; 16]>::from(*b));
            }
        }
        let lo = _mm256_set_m128i(lanes[1], lanes[0]);
        let hi = _mm256_set_m128i(lanes[3], lanes[2]);
        *r = bswap32(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi));
    }
    transpose(v)
}

/// The inverse of [`load`]: writes the first `min(16, blocks.len())` blocks.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn store(words: [__m512i; 4], blocks: &mut [Blk]) {
    let v = transpose(words).map(|r| bswap32(r));
    for (r, quad) in v.iter().zip(blocks.chunks_mut(4)) {
        let lanes = [
            _mm512_extracti32x4_epi32::<0>(*r),
            _mm512_extracti32x4_epi32::<1>(*r),
            _mm512_extracti32x4_epi32::<2>(*r),
            _mm512_extracti32x4_epi32::<3>(*r),
        ];
        if let [a, b, c, d] = quad {
            for (b, lane) in [a, b, c, d].into_iter().zip(lanes) {
                *b = Blk::from(bytemuck::cast::<__m128i, [u8; 16]>(lane));
            }
        } else {
            for (b, lane) in quad.iter_mut().zip(lanes) {
                *b = Blk::from(bytemuck::cast::<__m128i, [u8; 16]>(lane));
            }
        }
    }
}

/// What GFNI's `gf2p8affine` does to one byte (no constant): `m · x`.
const fn affine(m: u64, x: u8) -> u8 {
    let mut out = 0u8;
    let mut i = 0;
    while i < 8 {
        let row = (m >> (8 * (7 - i))) as u8;
        out |= (((row & x).count_ones() & 1) as u8) << i;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::t;
    use super::*;

    /// Inversion in the AES field (x⁸ + x⁴ + x³ + x + 1), 0 to 0, by search.
    fn inv_aes(x: u8) -> u8 {
        let mul = |mut a: u8, mut b: u8| {
            let mut p = 0u8;
            while b != 0 {
                if b & 1 != 0 {
                    p ^= a;
                }
                a = (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 };
                b >>= 1;
            }
            p
        };
        (1..=255).find(|&y| mul(x, y) == 1).unwrap_or(0)
    }

    /// What `gf2p8affineinv` does to one byte.
    fn affine_inv(m: u64, x: u8, b: u8) -> u8 {
        affine(m, inv_aes(x)) ^ b
    }

    /// The matrices, one byte lane at a time: `M₁⁻¹` undoes `M₁`, and the round's GFNI
    /// terms give `M₁·T(t)` (T = L∘τ by the tables built from the S-box of GB/T 32907 §6.2)
    /// for every byte value in every position, and for arbitrary words.
    #[test]
    fn matrices() {
        for x in 0..=255u8 {
            assert_eq!(affine(M1_INV, affine(M1, x)), x);
        }
        let per_byte = |w: u32, f: &dyn Fn(u8) -> u8| u32::from_le_bytes(w.to_le_bytes().map(f));
        let words = (0..4).flat_map(|j| (0..=255u32).map(move |v| v << (8 * j)));
        let words = words.chain((0..1000u32).map(|i| i.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995));
        for w in words {
            let u = per_byte(w, &|b| affine(M1, b) ^ C1);
            let q0 = per_byte(u, &|b| affine_inv(Q0, b, B0 as u8));
            let q1 = per_byte(u, &|b| affine_inv(Q1, b, 0));
            let q3 = per_byte(u, &|b| affine_inv(Q3, b, 0));
            let got = q0 ^ q1.rotate_left(8) ^ q1.rotate_left(16) ^ q3.rotate_left(24);
            assert_eq!(got, per_byte(t(w), &|b| affine(M1, b)), "t = {w:#010x}");
        }
    }
}
