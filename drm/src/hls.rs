//! HLS AES-128 (RFC 8216 4.3.2.4): whole segments encrypted with AES-128-CBC and PKCS#7
//! padding, and the keys of a channel's key periods derived from one master key, so no key
//! is stored beside the segments and any period's key can be given again later (catch-up).

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};
use zeroize::Zeroize;

/// The master key of a channel's HLS keys. Never shown by `Debug`; wiped when dropped.
pub struct MasterKey([u8; 16]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl MasterKey {
    /// A master key of these bytes.
    pub fn new(key: [u8; 16]) -> MasterKey {
        MasterKey(key)
    }

    /// The key of `channel`'s key period `period`: SP 800-108r1 counter-mode KDF with
    /// AES-CMAC, label `headend-hls-key`, context the channel id and the period (64-bit
    /// big-endian).
    pub fn period_key(&self, channel: &str, period: u64) -> [u8; 16] {
        let mut mac = <Cmac<Aes128> as Mac>::new_from_slice(&self.0)
            .expect("AES-128-CMAC takes a 16-byte key");
        mac.update(&[0x01]);
        mac.update(b"headend-hls-key");
        mac.update(&[0x00]);
        mac.update(channel.as_bytes());
        mac.update(&period.to_be_bytes());
        mac.update(&[0x00, 0x80]);
        mac.finalize().into_bytes().into()
    }
}

/// `data` encrypted with AES-128-CBC under `key` from `iv`, PKCS#7-padded (1..=16 bytes
/// added): what an HLS player decrypts with `METHOD=AES-128`.
pub fn encrypt_segment(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut e = SegmentEncryptor::new(key, iv);
    e.update(data, &mut out);
    e.finish(&mut out);
    out
}

/// [`encrypt_segment`] a piece at a time, for a segment written as it comes: the same bytes
/// whatever the pieces.
pub struct SegmentEncryptor {
    cipher: Aes128,
    /// The last ciphertext block (the IV at first).
    prev: [u8; 16],
    /// Bytes not yet making a whole block.
    pending: [u8; 16],
    pending_len: usize,
}

impl std::fmt::Debug for SegmentEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentEncryptor(..)")
    }
}

impl Drop for SegmentEncryptor {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

impl SegmentEncryptor {
    /// Encrypts under `key` from `iv`.
    pub fn new(key: &[u8; 16], iv: &[u8; 16]) -> SegmentEncryptor {
        SegmentEncryptor {
            cipher: Aes128::new(key.into()),
            prev: *iv,
            pending: [0; 16],
            pending_len: 0,
        }
    }

    fn block(&mut self, block: &mut [u8; 16]) {
        for (b, p) in block.iter_mut().zip(self.prev) {
            *b ^= p;
        }
        self.cipher.encrypt_block(block.into());
        self.prev = *block;
    }

    /// Appends to `out` the ciphertext of `data` that makes whole blocks with what came
    /// before (the rest waits for more, or for [`finish`](Self::finish)).
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + 16);
        if self.pending_len > 0 {
            let take = (16 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 16 {
                return;
            }
            let mut b = self.pending;
            self.block(&mut b);
            out.extend_from_slice(&b);
            self.pending_len = 0;
        }
        let whole = data.len() / 16 * 16;
        let at = out.len();
        out.extend_from_slice(&data[..whole]);
        for block in out[at..].chunks_exact_mut(16) {
            let b: &mut [u8; 16] = block.try_into().expect("16 bytes");
            self.block(b);
        }
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Appends the last block: what is pending and the PKCS#7 padding (1..=16 bytes).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        let pad = 16 - self.pending_len;
        let mut b = self.pending;
        b[self.pending_len..].fill(pad as u8);
        self.block(&mut b);
        out.extend_from_slice(&b);
    }
}

/// Why a segment could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Not a whole number of blocks (a torn file).
    #[error("{0} bytes is not a whole number of 16-byte blocks")]
    Length(usize),
    /// The padding is not PKCS#7: another key, or damaged data.
    #[error("bad padding: another key, or damaged data")]
    Padding,
}

/// `data` decrypted with AES-128-CBC under `key` from `iv`, its PKCS#7 padding checked and
/// removed: the inverse of [`encrypt_segment`].
pub fn decrypt_segment(
    key: &[u8; 16],
    iv: &[u8; 16],
    data: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(DecryptError::Length(data.len()));
    }
    let cipher = Aes128::new(key.into());
    let mut out = data.to_vec();
    let mut prev = *iv;
    for block in out.chunks_exact_mut(16) {
        let c: [u8; 16] = (&*block).try_into().expect("16 bytes");
        cipher.decrypt_block(block.into());
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        prev = c;
    }
    let pad = usize::from(out[out.len() - 1]);
    if !(1..=16).contains(&pad)
        || out[out.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        out.zeroize();
        return Err(DecryptError::Padding);
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
        decrypt_segment(key, iv, data).unwrap()
    }

    #[test]
    fn cbc_matches_the_nist_vector_and_pads() {
        // SP 800-38A F.2.1, CBC-AES128.Encrypt, first block.
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let plain = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let c = encrypt_segment(&key, &iv, &plain);
        assert_eq!(
            c[..16],
            [
                0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9,
                0x19, 0x7d
            ]
        );
        assert_eq!(c.len(), 32, "a whole block of padding after a whole block");
        for len in [0, 1, 188, 188 * 7, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let c = encrypt_segment(&key, &iv, &data);
            assert_eq!(c.len(), (len / 16 + 1) * 16);
            assert_eq!(decrypt(&key, &iv, &c), data);
        }
    }

    #[test]
    fn pieces_encrypt_as_the_whole_and_damage_is_an_error() {
        let key = [9; 16];
        let iv = [3; 16];
        let data: Vec<u8> = (0..188 * 40).map(|i| (i * 31 % 251) as u8).collect();
        let whole = encrypt_segment(&key, &iv, &data);
        for cuts in [
            &[1usize, 15, 16, 17][..],
            &[188; 40][..],
            &[7, 100, 1000, 3][..],
        ] {
            let mut e = SegmentEncryptor::new(&key, &iv);
            let mut out = Vec::new();
            let mut rest = &data[..];
            for &n in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = n.min(rest.len());
                e.update(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            e.finish(&mut out);
            assert_eq!(out, whole, "{cuts:?}");
        }
        assert_eq!(
            decrypt_segment(&key, &iv, &whole[..whole.len() - 1]),
            Err(DecryptError::Length(whole.len() - 1))
        );
        assert_eq!(
            decrypt_segment(&[8; 16], &iv, &whole),
            Err(DecryptError::Padding)
        );
    }

    #[test]
    fn period_keys_differ_by_channel_and_period_and_stay() {
        let m = MasterKey::new([7; 16]);
        let a = m.period_key("news", 1);
        assert_eq!(a, MasterKey::new([7; 16]).period_key("news", 1));
        assert_ne!(a, m.period_key("news", 2));
        assert_ne!(a, m.period_key("sport", 1));
        assert_eq!(format!("{m:?}"), "MasterKey(..)");
    }
}
