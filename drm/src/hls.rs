//! HLS AES-128 (RFC 8216 4.3.2.4): whole segments encrypted with AES-128-CBC and PKCS#7
//! padding, and the keys of a channel's key periods derived from one master key, so no key
//! is stored beside the segments and any period's key can be given again later (catch-up).

use aes::cipher::{BlockEncrypt, KeyInit};
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
    let cipher = Aes128::new(key.into());
    let pad = 16 - data.len() % 16;
    let mut out = Vec::with_capacity(data.len() + pad);
    out.extend_from_slice(data);
    out.resize(data.len() + pad, pad as u8);
    let mut prev = *iv;
    for block in out.chunks_exact_mut(16) {
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        cipher.encrypt_block(block.into());
        prev.copy_from_slice(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecrypt;

    fn decrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
        let cipher = Aes128::new(key.into());
        let mut out = data.to_vec();
        let mut prev = *iv;
        for block in out.chunks_exact_mut(16) {
            let c: [u8; 16] = block.try_into().unwrap();
            cipher.decrypt_block(block.into());
            for (b, p) in block.iter_mut().zip(prev) {
                *b ^= p;
            }
            prev = c;
        }
        let pad = usize::from(*out.last().unwrap());
        out.truncate(out.len() - pad);
        out
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
    fn period_keys_differ_by_channel_and_period_and_stay() {
        let m = MasterKey::new([7; 16]);
        let a = m.period_key("news", 1);
        assert_eq!(a, MasterKey::new([7; 16]).period_key("news", 1));
        assert_ne!(a, m.period_key("news", 2));
        assert_ne!(a, m.period_key("sport", 1));
        assert_eq!(format!("{m:?}"), "MasterKey(..)");
    }
}
