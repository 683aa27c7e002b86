//! Conditional access, sans-IO: scrambling in place on TS packets, key rotation, the DVB
//! SimulCrypt ECMG⇔SCS messages and the ECMs of our test ECMG.
//!
//! - [`cipher`]: the packet ciphers (DVB-CISSA, ATIS-IDSA, AES-128-CTR, SM4-CBC, SM4-CTR) and
//!   their descramblers, applied to whole TS packets by the MPEG rules (header and adaptation
//!   field clear, PSI and null packets never scrambled, transport_scrambling_control 10/11).
//! - [`keys`]: even/odd control words and the crypto-period schedule, driven by `now`.
//! - [`simulcrypt`]: ETSI TS 103 197 ECMG⇔SCS messages (encode, decode) and the SCS side's
//!   state machine.
//! - [`ecm`]: the ECM format of the test ECMG (control words wrapped with AES or SM4).
//! - [`hls`]: HLS AES-128 segment encryption and the keys of key periods.
//!
//! Key material never appears in `Debug` output or errors.
#![warn(missing_docs)]
#![forbid(clippy::print_stdout, clippy::print_stderr)]

pub mod cipher;
pub mod ecm;
pub mod hls;
pub mod keys;
pub mod simulcrypt;
