//! Signatures over alert messages: SM2 with SM3 (GB/T 32918.2-2016 signature generation and
//! verification over the sm2p256v1 curve of GB/T 32918.5-2017, hash GB/T 32905-2016), and
//! Ed25519 (RFC 8032 §5.1).
//!
//! - SM2: a signature is raw `r ‖ s`, 64 bytes (not DER). It signs `e = SM3(Z ‖ M)`, where
//!   `Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)` with the default distinguishing ID
//!   [`SM2_DEFAULT_ID`] (GM/T 0009-2012). The nonce `k` is derived as in RFC 6979 (with
//!   SM3), so signing needs no random source and the same key and message give the same
//!   signature; the standard's random `k` verifies identically. Public keys are SEC1 points:
//!   `04 ‖ x ‖ y` (65 bytes) or compressed (33 bytes); private keys are the 32-byte scalar
//!   `d`, 1 ≤ d ≤ n − 2.
//! - Ed25519: 32-byte keys, 64-byte signatures, verified strictly (non-canonical signatures
//!   and small-order keys are refused).
//!
//! # Transport convention
//! The daemon and the CLI exchange signed alerts over HTTP like this:
//! - The signature covers the exact bytes of the request body (the CAP XML or the JSON, as
//!   sent: no canonicalisation, no re-serialisation).
//! - It travels base64-encoded (standard alphabet, with padding) in the header
//!   [`SIGNATURE_HEADER`] (`X-Signature`), made by [`encode_signature`] and read by
//!   [`decode_signature`].
//! - The signer's key id (the `id` of its [`KeyFile`]) travels in [`KEY_HEADER`]
//!   (`X-Signature-Key`); the receiver looks up the [`VerifyingKey`] (and so the algorithm)
//!   by that id.
//!
//! # Key files
//! Operators keep a signing key as TOML ([`KeyFile`]):
//!
//! ```toml
//! id = "province-1"
//! algorithm = "sm2"
//! private_key = "…64 hex digits…"
//! public_key = "04…"   # optional; checked against the private key when present
//! ```
//!
//! Private key bytes never appear in `Debug` output.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sm2::dsa::signature::Signer as _;
use sm2::elliptic_curve::sec1::ToEncodedPoint as _;
use sm3::Digest as _;

/// The HTTP header that carries the base64 signature of the request body.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The HTTP header that carries the signer's key id.
pub const KEY_HEADER: &str = "X-Signature-Key";
/// The SM2 distinguishing ID used in `Z` (the GM/T 0009-2012 default; ENTL = 0x0080).
pub const SM2_DEFAULT_ID: &str = "1234567812345678";
/// Length of a signature of either algorithm, in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// n − 1 for sm2p256v1: not a valid SM2 private key, as 1 + d has no inverse mod n.
const SM2_N_MINUS_1: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x72, 0x03, 0xDF, 0x6B, 0x21, 0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x22,
];

/// A signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SM2 over SM3 (GB/T 32918.2, GB/T 32905).
    Sm2,
    /// Ed25519 (RFC 8032).
    Ed25519,
}

impl Algorithm {
    /// `"sm2"` or `"ed25519"`, as in key files.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sm2 => "sm2",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = SignatureError;

    /// `sm2` or `ed25519`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("sm2") {
            Ok(Algorithm::Sm2)
        } else if s.eq_ignore_ascii_case("ed25519") {
            Ok(Algorithm::Ed25519)
        } else {
            Err(SignatureError::UnknownAlgorithm { name: s.to_owned() })
        }
    }
}

/// Why a key, a signature or a key file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not `sm2` or `ed25519`.
    #[error("unknown signature algorithm {name:?}, expected sm2 or ed25519")]
    UnknownAlgorithm {
        /// The name given.
        name: String,
    },
    /// Not hexadecimal.
    #[error("{what}: invalid hex: {msg}")]
    Hex {
        /// `public key` or `private key`.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A key of the wrong length.
    #[error("{algorithm} {what}: {found} bytes, expected {expected}")]
    KeyLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// `public key` or `private key`.
        what: &'static str,
        /// The allowed lengths.
        expected: &'static str,
        /// The length found.
        found: usize,
    },
    /// The right length, but not a key (not a curve point, scalar out of range).
    #[error("{algorithm} {what}: not a valid key")]
    InvalidKey {
        /// The algorithm.
        algorithm: Algorithm,
        /// `public key` or `private key`.
        what: &'static str,
    },
    /// A signature that is not 64 bytes.
    #[error("signature is {found} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength {
        /// The length found.
        found: usize,
    },
    /// The signature does not match the message and key.
    #[error("{algorithm} signature does not verify")]
    Mismatch {
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// The signature header is not base64.
    #[error("signature is not base64: {msg}")]
    Base64 {
        /// What is wrong.
        msg: String,
    },
    /// The operating system's random source failed.
    #[error("os random source failed: {msg}")]
    Random {
        /// What it said.
        msg: String,
    },
    /// A key file that does not parse or does not agree with itself.
    #[error("key file: {msg}")]
    KeyFile {
        /// What is wrong, with the TOML position where there is one.
        msg: String,
    },
}

/// A public key that checks signatures.
#[derive(Clone)]
pub struct VerifyingKey(Public);

#[derive(Clone)]
enum Public {
    Sm2(Box<sm2::dsa::VerifyingKey>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl VerifyingKey {
    /// A public key from hex (see [`VerifyingKey::from_bytes`]); whitespace around is ignored.
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Result<Self, SignatureError> {
        VerifyingKey::from_bytes(algorithm, &decode_hex("public key", hex)?)
    }

    /// A public key: SM2 as a SEC1 point (65 bytes `04 ‖ x ‖ y`, or 33 compressed);
    /// Ed25519 as its 32 bytes.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, SignatureError> {
        const WHAT: &str = "public key";
        let invalid = SignatureError::InvalidKey {
            algorithm,
            what: WHAT,
        };
        match algorithm {
            Algorithm::Sm2 => {
                if !matches!(bytes.len(), 33 | 65) {
                    return Err(key_length(algorithm, WHAT, "65 (or 33 compressed)", bytes));
                }
                let key = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, bytes)
                    .map_err(|_| invalid)?;
                Ok(VerifyingKey(Public::Sm2(Box::new(key))))
            }
            Algorithm::Ed25519 => {
                let bytes: &[u8; 32] = bytes
                    .try_into()
                    .map_err(|_| key_length(algorithm, WHAT, "32", bytes))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| invalid)?;
                Ok(VerifyingKey(Public::Ed25519(key)))
            }
        }
    }

    /// Which algorithm the key is for.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Public::Sm2(_) => Algorithm::Sm2,
            Public::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The key's bytes: SM2 uncompressed (65 bytes `04 ‖ x ‖ y`), Ed25519 32 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.0 {
            Public::Sm2(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            Public::Ed25519(k) => k.to_bytes().to_vec(),
        }
    }

    /// [`VerifyingKey::to_bytes`] as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Checks a 64-byte signature of `message` (SM2 `r ‖ s`, Ed25519 `R ‖ S`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let bytes: &[u8; SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| SignatureError::SignatureLength {
                    found: signature.len(),
                })?;
        let mismatch = SignatureError::Mismatch {
            algorithm: self.algorithm(),
        };
        match &self.0 {
            Public::Sm2(k) => {
                use sm2::dsa::signature::Verifier as _;
                let sig = sm2::dsa::Signature::from_bytes(bytes).map_err(|_| mismatch.clone())?;
                k.verify(message, &sig).map_err(|_| mismatch)
            }
            Public::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_bytes(bytes);
                k.verify_strict(message, &sig).map_err(|_| mismatch)
            }
        }
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm() == other.algorithm() && self.to_bytes() == other.to_bytes()
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({}:{})", self.algorithm(), self.to_hex())
    }
}

/// A private key that makes signatures. Its `Debug` shows only the algorithm and public key.
#[derive(Clone)]
pub struct SigningKey(Private);

#[derive(Clone)]
enum Private {
    Sm2(Box<sm2::dsa::SigningKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl SigningKey {
    /// A new random key from the operating system's random source.
    pub fn generate(algorithm: Algorithm) -> Result<Self, SignatureError> {
        // An SM2 candidate is refused with probability about 2^-32 (d ≥ n − 1), so a few tries
        // are plenty; Ed25519 takes any 32 bytes.
        for _ in 0..8 {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| SignatureError::Random { msg: e.to_string() })?;
            let key = SigningKey::from_bytes(algorithm, &seed);
            seed.fill(0);
            if let Ok(key) = key {
                return Ok(key);
            }
        }
        Err(SignatureError::Random {
            msg: "no valid key in 8 draws".to_owned(),
        })
    }

    /// A private key from hex (see [`SigningKey::from_bytes`]); whitespace around is ignored.
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Result<Self, SignatureError> {
        let mut bytes = decode_hex("private key", hex)?;
        let key = SigningKey::from_bytes(algorithm, &bytes);
        bytes.fill(0);
        key
    }

    /// A private key from its 32 bytes: SM2 the big-endian scalar `d` (1 ≤ d ≤ n − 2),
    /// Ed25519 the RFC 8032 secret key (seed).
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, SignatureError> {
        const WHAT: &str = "private key";
        let bytes: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| key_length(algorithm, WHAT, "32", bytes))?;
        match algorithm {
            Algorithm::Sm2 => {
                let invalid = SignatureError::InvalidKey {
                    algorithm,
                    what: WHAT,
                };
                if *bytes == SM2_N_MINUS_1 {
                    return Err(invalid);
                }
                let key =
                    sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_ID, bytes).map_err(|_| invalid)?;
                Ok(SigningKey(Private::Sm2(Box::new(key))))
            }
            Algorithm::Ed25519 => Ok(SigningKey(Private::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_bytes(bytes),
            )))),
        }
    }

    /// Which algorithm the key is for.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Private::Sm2(_) => Algorithm::Sm2,
            Private::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Signs `message`: 64 bytes (SM2 `r ‖ s` over `SM3(Z ‖ M)`; Ed25519 as RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.0 {
            Private::Sm2(k) => {
                // Invariant: d ≠ n − 1 (checked when the key was made), so signing fails only
                // if r = 0 or r + k = n, which has probability about 2^-256.
                let sig: sm2::dsa::Signature = k.try_sign(message).expect("sm2 signature");
                sig.to_bytes().to_vec()
            }
            Private::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.0 {
            Private::Sm2(k) => VerifyingKey(Public::Sm2(Box::new(k.verifying_key().clone()))),
            Private::Ed25519(k) => VerifyingKey(Public::Ed25519(k.verifying_key())),
        }
    }

    /// The private key as lowercase hex (64 digits), for [`KeyFile::to_toml`]. Key material:
    /// keep it out of logs.
    pub fn to_hex(&self) -> String {
        match &self.0 {
            Private::Sm2(k) => hex::encode(k.to_bytes()),
            Private::Ed25519(k) => hex::encode(k.to_bytes()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An operator's signing key with its id: the TOML key file (see the module docs).
#[derive(Clone, Debug)]
pub struct KeyFile {
    /// The key id sent in [`KEY_HEADER`]: printable ASCII, no spaces.
    pub id: String,
    /// The private key.
    pub key: SigningKey,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    id: String,
    algorithm: String,
    private_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

impl KeyFile {
    /// Reads a key file. The id must be usable as an HTTP header value (printable ASCII, no
    /// spaces); `public_key`, when present, must match the private key.
    pub fn parse(text: &str) -> Result<KeyFile, SignatureError> {
        // Not the toml error's Display: it quotes the source line, which may be the key.
        let raw: RawKeyFile = toml::from_str(text).map_err(|e| SignatureError::KeyFile {
            msg: match e.span() {
                Some(span) => format!(
                    "line {}: {}",
                    1 + text
                        .bytes()
                        .take(span.start)
                        .filter(|&b| b == b'\n')
                        .count(),
                    e.message()
                ),
                None => e.message().to_owned(),
            },
        })?;
        let key_file = |msg: String| SignatureError::KeyFile { msg };
        if raw.id.is_empty() || !raw.id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(key_file(format!(
                "id {:?} must be printable ascii without spaces",
                raw.id
            )));
        }
        let algorithm: Algorithm = raw.algorithm.parse()?;
        let key = SigningKey::from_hex(algorithm, &raw.private_key)?;
        if let Some(public) = raw.public_key {
            if VerifyingKey::from_hex(algorithm, &public)? != key.verifying_key() {
                return Err(key_file("public_key does not match private_key".to_owned()));
            }
        }
        Ok(KeyFile { id: raw.id, key })
    }

    /// The key file as TOML, with `public_key` filled in (to hand to the receivers).
    pub fn to_toml(&self) -> String {
        let raw = RawKeyFile {
            id: self.id.clone(),
            algorithm: self.key.algorithm().as_str().to_owned(),
            private_key: self.key.to_hex(),
            public_key: Some(self.key.verifying_key().to_hex()),
        };
        // Invariant: a struct of strings always serialises to TOML.
        toml::to_string(&raw).expect("key file serialises to toml")
    }
}

/// SM3 of `data` (GB/T 32905-2016).
pub fn sm3(data: &[u8]) -> [u8; 32] {
    sm3::Sm3::digest(data).into()
}

/// A signature as the [`SIGNATURE_HEADER`] value: base64, standard alphabet, padded.
pub fn encode_signature(signature: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(signature)
}

/// Reads a [`SIGNATURE_HEADER`] value (whitespace around is ignored). The length is checked
/// by [`VerifyingKey::verify`].
pub fn decode_signature(header: &str) -> Result<Vec<u8>, SignatureError> {
    base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|e| SignatureError::Base64 { msg: e.to_string() })
}

fn decode_hex(what: &'static str, text: &str) -> Result<Vec<u8>, SignatureError> {
    hex::decode(text.trim()).map_err(|e| SignatureError::Hex {
        what,
        // Not the offending character: this may be a private key.
        msg: match e {
            hex::FromHexError::InvalidHexCharacter { index, .. } => {
                format!("not a hex digit at position {index}")
            }
            hex::FromHexError::OddLength => "odd number of digits".to_owned(),
            hex::FromHexError::InvalidStringLength => "wrong length".to_owned(),
        },
    })
}

fn key_length(
    algorithm: Algorithm,
    what: &'static str,
    expected: &'static str,
    bytes: &[u8],
) -> SignatureError {
    SignatureError::KeyLength {
        algorithm,
        what,
        expected,
        found: bytes.len(),
    }
}
