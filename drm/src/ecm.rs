//! The ECM format of our test ECMG (`hectl ecmg`): ours, not a CAS vendor's. It carries the
//! even and odd control words of a crypto-period wrapped under a 16-byte ECM key, with a MAC so
//! that a wrong key or a damaged ECM is detected instead of yielding garbage words.
//!
//! The ECM is a DVB CA_message_section (ETSI EN 300 468 §5.2 / ETSI TR 289: short section,
//! table_id 0x80 or 0x81, at most 256 bytes), 55 bytes long, all fields big-endian:
//!
//! ```text
//!  byte  field                     bits  value
//!   0    table_id                    8   0x80: the current CP's word is even; 0x81: odd
//!   1    section_syntax_indicator    1   0
//!        DVB_reserved, ISO_reserved  3   111
//!        CA_section_length          12   52
//!   3    format_version              8   0x01
//!   4    wrap_algorithm              8   0x01 AES-128-ECB, 0x02 SM4-ECB (Wrap)
//!   5    CP_number                  16   the crypto-period the ECM is for
//!   7    even_cw_wrapped           128   E(K_wrap, even control word)
//!  23    odd_cw_wrapped            128   E(K_wrap, odd control word)
//!  39    mac                       128   CMAC(K_mac, bytes 0..39)
//! ```
//!
//! - The block cipher E is AES-128 (FIPS 197) or SM4 (GB/T 32907), as wrap_algorithm says; the
//!   two words are each one block, encrypted in ECB mode (a control word is random, so ECB
//!   shows nothing but equality of the two words).
//! - The MAC is CMAC (NIST SP 800-38B, RFC 4493 for AES) with the same block cipher, over the
//!   whole section before it, header included: a wrong key, a flipped bit, a changed CP_number
//!   or table_id all fail [`parse_ecm`] with [`EcmError::Integrity`].
//! - K_wrap and K_mac are derived from the ECM key K so that one key never serves two
//!   purposes: NIST SP 800-108r1 KDF in counter mode with CMAC as the PRF, one 128-bit block,
//!   `K_x = CMAC(K, 0x01 ‖ label ‖ 0x00 ‖ format_version ‖ 0x0080)` with label
//!   `"hectl-ecm-wrap"` or `"hectl-ecm-mac"`.
//! - Parity: the control word of CP_number `n` is the even word when `n` is even (as in
//!   [`crate::keys`]), so table_id is `0x80 | (n & 1)`. The ECM of CP `n` carries that word
//!   and its neighbour of the other parity (the next one with lead_CW 1).

use std::fmt;

use aes::cipher::consts::U16;
use aes::cipher::{BlockDecrypt, BlockEncrypt, BlockSizeUser, KeyInit, KeySizeUser};
use aes::Aes128;
use cmac::digest::OutputSizeUser;
use cmac::{Cmac, Mac};
use sm4::Sm4;

/// table_id of an ECM whose current control word is the even one.
pub const TABLE_ID_EVEN: u8 = 0x80;
/// table_id of an ECM whose current control word is the odd one.
pub const TABLE_ID_ODD: u8 = 0x81;
/// format_version written and accepted.
pub const FORMAT_VERSION: u8 = 1;
/// The whole section's length.
pub const ECM_LEN: usize = 55;

/// The block cipher that wraps the control words (and keys the CMAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wrap {
    /// AES-128 (FIPS 197), wrap_algorithm 0x01.
    Aes128,
    /// SM4 (GB/T 32907-2016), wrap_algorithm 0x02.
    Sm4,
}

impl Wrap {
    /// The wrap_algorithm byte.
    pub const fn code(self) -> u8 {
        match self {
            Wrap::Aes128 => 0x01,
            Wrap::Sm4 => 0x02,
        }
    }
    /// The algorithm of a wrap_algorithm byte.
    pub const fn from_code(code: u8) -> Option<Wrap> {
        match code {
            0x01 => Some(Wrap::Aes128),
            0x02 => Some(Wrap::Sm4),
            _ => None,
        }
    }
}

impl fmt::Display for Wrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wrap::Aes128 => "AES-128-ECB",
            Wrap::Sm4 => "SM4-ECB",
        })
    }
}

/// What an ECM carries. `Debug` shows the CP_number only, never the words.
#[derive(Clone, PartialEq, Eq)]
pub struct Ecm {
    /// CP_number.
    pub cp_number: u16,
    /// The even control word.
    pub even_cw: [u8; 16],
    /// The odd control word.
    pub odd_cw: [u8; 16],
}

impl Ecm {
    /// The word of the ECM's own crypto-period (even for an even CP_number).
    pub fn current_cw(&self) -> &[u8; 16] {
        if self.cp_number % 2 == 0 {
            &self.even_cw
        } else {
            &self.odd_cw
        }
    }
}

impl fmt::Debug for Ecm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ecm")
            .field("cp_number", &self.cp_number)
            .finish_non_exhaustive()
    }
}

/// Why an ECM could not be opened. Never carries key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcmError {
    /// Fewer bytes than the section needs.
    #[error("ECM of {len} bytes, needs {needed}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Not an ECM table_id (0x80, 0x81).
    #[error("table_id {table_id:#04x}, expected 0x80 or 0x81")]
    TableId {
        /// The table_id.
        table_id: u8,
    },
    /// section_syntax_indicator set, or a CA_section_length other than this format's.
    #[error("ECM section header: syntax indicator {syntax_indicator}, length {section_length}, expected 0 and 52")]
    Header {
        /// section_syntax_indicator.
        syntax_indicator: u8,
        /// CA_section_length.
        section_length: usize,
    },
    /// A format_version this code does not know.
    #[error("ECM format_version {found}, expected 1")]
    Version {
        /// The version.
        found: u8,
    },
    /// The ECM is wrapped with another algorithm than the one configured.
    #[error("ECM wrap_algorithm {found:#04x}, expected {expected}")]
    Algorithm {
        /// The wrap_algorithm byte.
        found: u8,
        /// The configured algorithm.
        expected: Wrap,
    },
    /// The MAC does not match: wrong key, or a damaged ECM.
    #[error("ECM integrity check failed (wrong key or damaged ECM)")]
    Integrity,
    /// table_id's parity disagrees with CP_number's (a MAC-valid ECM from another builder).
    #[error("ECM table_id {table_id:#04x} for CP_number {cp_number}: parity disagrees")]
    Parity {
        /// The table_id.
        table_id: u8,
        /// The CP_number.
        cp_number: u16,
    },
}

/// The ECM of crypto-period `cp_number` with both words wrapped under `key`.
pub fn build_ecm(
    key: &[u8; 16],
    wrap: Wrap,
    cp_number: u16,
    even_cw: &[u8; 16],
    odd_cw: &[u8; 16],
) -> Vec<u8> {
    let keys = Keys::derive(key, wrap);
    let mut s = Vec::with_capacity(ECM_LEN);
    s.push(if cp_number % 2 == 0 {
        TABLE_ID_EVEN
    } else {
        TABLE_ID_ODD
    });
    let section_length = (ECM_LEN - 3) as u16;
    s.extend_from_slice(&(0x7000 | section_length).to_be_bytes());
    s.push(FORMAT_VERSION);
    s.push(wrap.code());
    s.extend_from_slice(&cp_number.to_be_bytes());
    s.extend_from_slice(&keys.encrypt(even_cw));
    s.extend_from_slice(&keys.encrypt(odd_cw));
    let mac = keys.mac(&s);
    s.extend_from_slice(&mac);
    s
}

/// Opens an ECM section (bytes past its CA_section_length, such as packet stuffing, are
/// ignored). Checks the header, then the MAC, before decrypting anything.
pub fn parse_ecm(key: &[u8; 16], wrap: Wrap, section: &[u8]) -> Result<Ecm, EcmError> {
    if section.len() < 3 {
        return Err(EcmError::Truncated {
            len: section.len(),
            needed: ECM_LEN,
        });
    }
    let table_id = section[0];
    if table_id != TABLE_ID_EVEN && table_id != TABLE_ID_ODD {
        return Err(EcmError::TableId { table_id });
    }
    let syntax_indicator = section[1] >> 7;
    let section_length = usize::from(u16::from_be_bytes([section[1], section[2]]) & 0x0FFF);
    if syntax_indicator != 0 || section_length != ECM_LEN - 3 {
        return Err(EcmError::Header {
            syntax_indicator,
            section_length,
        });
    }
    if section.len() < ECM_LEN {
        return Err(EcmError::Truncated {
            len: section.len(),
            needed: ECM_LEN,
        });
    }
    let s = &section[..ECM_LEN];
    if s[3] != FORMAT_VERSION {
        return Err(EcmError::Version { found: s[3] });
    }
    if s[4] != wrap.code() {
        return Err(EcmError::Algorithm {
            found: s[4],
            expected: wrap,
        });
    }
    let keys = Keys::derive(key, wrap);
    if !keys.verify(&s[..39], &s[39..55]) {
        return Err(EcmError::Integrity);
    }
    let cp_number = u16::from_be_bytes([s[5], s[6]]);
    if u16::from(table_id & 1) != cp_number & 1 {
        return Err(EcmError::Parity {
            table_id,
            cp_number,
        });
    }
    let block = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&s[at..at + 16]);
        keys.decrypt(&b)
    };
    Ok(Ecm {
        cp_number,
        even_cw: block(7),
        odd_cw: block(23),
    })
}

/// K_wrap and K_mac for one algorithm.
struct Keys {
    wrap: Wrap,
    k_wrap: [u8; 16],
    k_mac: [u8; 16],
}

impl Drop for Keys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.k_wrap.zeroize();
        self.k_mac.zeroize();
    }
}

impl Keys {
    fn derive(key: &[u8; 16], wrap: Wrap) -> Keys {
        let kdf = |label: &[u8]| {
            // SP 800-108r1 counter mode: [i]_8 ‖ Label ‖ 0x00 ‖ Context ‖ [L]_16.
            let parts: [&[u8]; 5] = [&[0x01], label, &[0x00], &[FORMAT_VERSION], &[0x00, 0x80]];
            match wrap {
                Wrap::Aes128 => cmac::<Cmac<Aes128>>(key, &parts),
                Wrap::Sm4 => cmac::<Cmac<Sm4>>(key, &parts),
            }
        };
        Keys {
            wrap,
            k_wrap: kdf(b"hectl-ecm-wrap"),
            k_mac: kdf(b"hectl-ecm-mac"),
        }
    }

    fn encrypt(&self, block: &[u8; 16]) -> [u8; 16] {
        match self.wrap {
            Wrap::Aes128 => ecb_encrypt::<Aes128>(&self.k_wrap, block),
            Wrap::Sm4 => ecb_encrypt::<Sm4>(&self.k_wrap, block),
        }
    }

    fn decrypt(&self, block: &[u8; 16]) -> [u8; 16] {
        match self.wrap {
            Wrap::Aes128 => ecb_decrypt::<Aes128>(&self.k_wrap, block),
            Wrap::Sm4 => ecb_decrypt::<Sm4>(&self.k_wrap, block),
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; 16] {
        match self.wrap {
            Wrap::Aes128 => cmac::<Cmac<Aes128>>(&self.k_mac, &[data]),
            Wrap::Sm4 => cmac::<Cmac<Sm4>>(&self.k_mac, &[data]),
        }
    }

    /// Constant-time comparison of the MAC.
    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        match self.wrap {
            Wrap::Aes128 => cmac_verify::<Cmac<Aes128>>(&self.k_mac, data, tag),
            Wrap::Sm4 => cmac_verify::<Cmac<Sm4>>(&self.k_mac, data, tag),
        }
    }
}

fn cmac<M>(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16]
where
    M: Mac + KeyInit + KeySizeUser<KeySize = U16> + OutputSizeUser<OutputSize = U16>,
{
    let mut m = <M as KeyInit>::new(key.into());
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

fn cmac_verify<M>(key: &[u8; 16], data: &[u8], tag: &[u8]) -> bool
where
    M: Mac + KeyInit + KeySizeUser<KeySize = U16>,
{
    let mut m = <M as KeyInit>::new(key.into());
    Mac::update(&mut m, data);
    m.verify_slice(tag).is_ok()
}

fn ecb_encrypt<C>(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16]
where
    C: BlockEncrypt + KeyInit + KeySizeUser<KeySize = U16> + BlockSizeUser<BlockSize = U16>,
{
    let mut b = (*block).into();
    C::new(key.into()).encrypt_block(&mut b);
    b.into()
}

fn ecb_decrypt<C>(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16]
where
    C: BlockDecrypt + KeyInit + KeySizeUser<KeySize = U16> + BlockSizeUser<BlockSize = U16>,
{
    let mut b = (*block).into();
    C::new(key.into()).decrypt_block(&mut b);
    b.into()
}
