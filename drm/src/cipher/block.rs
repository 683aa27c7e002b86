//! The block ciphers under the packet modes: AES-128 (FIPS-197) and SM4 (GB/T 32907-2016),
//! both with a 128-bit key and block. The packet code calls them through [`Lanes`], several
//! blocks per call: independent blocks then pipeline (AES-NI, detected at run time by the
//! `aes` crate; interleaved table lookups for SM4).

use std::fmt;

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};

use super::modes::LANES;
use super::sm4::Sm4Core;

/// One 16-byte block as the `aes` crate takes it.
pub(super) type Blk = aes::Block;

/// Several blocks per call.
pub(super) trait Lanes {
    /// Packets whose CBC blocks [`super::modes`] decrypts in one call: as many as keep the
    /// pipeline full, no more (a smaller working set).
    const DECRYPT_PACKETS: usize;
    /// Encrypts any number of independent blocks.
    fn encrypt_blocks(&self, blocks: &mut [Blk]);
    /// Decrypts any number of independent blocks.
    fn decrypt_blocks(&self, blocks: &mut [Blk]);
}

/// AES-128 (FIPS-197): the cipher of DVB-CISSA, ATIS-IDSA and AES-CTR. Its key schedule is
/// wiped when dropped.
#[derive(Clone)]
pub struct Aes128(aes::Aes128);

impl Aes128 {
    /// The cipher keyed with `key`.
    pub fn new(key: &[u8; 16]) -> Aes128 {
        Aes128(aes::Aes128::new(key.into()))
    }

    /// Encrypts one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.0.encrypt_block(block.into());
    }

    /// Decrypts one block in place.
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        self.0.decrypt_block(block.into());
    }
}

impl fmt::Debug for Aes128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes128(..)")
    }
}

impl Lanes for Aes128 {
    /// 88 blocks: AES-NI pipelines 8.
    const DECRYPT_PACKETS: usize = 8;

    #[inline]
    fn encrypt_blocks(&self, blocks: &mut [Blk]) {
        self.0.encrypt_blocks(blocks);
    }

    #[inline]
    fn decrypt_blocks(&self, blocks: &mut [Blk]) {
        self.0.decrypt_blocks(blocks);
    }
}

/// SM4 (GB/T 32907-2016): the cipher of SM4-CBC and SM4-CTR. Its round keys are wiped when
/// dropped.
#[derive(Clone)]
pub struct Sm4(Sm4Core);

impl Sm4 {
    /// The cipher keyed with `key`.
    pub fn new(key: &[u8; 16]) -> Sm4 {
        Sm4(Sm4Core::new(key))
    }

    /// Encrypts one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        let mut b = Blk::from(*block);
        self.0.crypt::<1>(std::slice::from_mut(&mut b), false);
        *block = b.into();
    }

    /// Decrypts one block in place.
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        let mut b = Blk::from(*block);
        self.0.crypt::<1>(std::slice::from_mut(&mut b), true);
        *block = b.into();
    }
}

impl fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm4(..)")
    }
}

impl Lanes for Sm4 {
    /// The whole batch: the GFNI code runs 80 blocks side by side.
    const DECRYPT_PACKETS: usize = LANES;

    fn encrypt_blocks(&self, blocks: &mut [Blk]) {
        self.0.crypt_blocks(blocks, false);
    }

    fn decrypt_blocks(&self, blocks: &mut [Blk]) {
        self.0.crypt_blocks(blocks, true);
    }
}
