//! Signatures: published known-answer vectors, round trips, malformed input, key files.

use epg::alert::sign::{
    decode_signature, encode_signature, sm3, Algorithm, KeyFile, SignatureError, SigningKey,
    VerifyingKey, KEY_HEADER, SIGNATURE_HEADER,
};

use super::TYPHOON_XML;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// GB/T 32905-2016 Annex A, examples 1 and 2 (STANDARDS.md §2.7).
#[test]
fn sm3_known_answers() {
    assert_eq!(
        hex::encode(sm3(b"abc")),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    assert_eq!(
        hex::encode(sm3(&b"abcd".repeat(16))),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

/// GM/T 0003.5-2012 (= GB/T 32918.5-2017) Annex A.2, the sm2p256v1 signature example:
/// ID "1234567812345678", M = "message digest". Also used by OpenSSL's
/// `test/sm2_internal_test.c` and Go's x/crypto-style SM2 tests.
mod gmt_0003_5 {
    pub(super) const D: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
    pub(super) const X: &str = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020";
    pub(super) const Y: &str = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
    pub(super) const Z: &str = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3";
    pub(super) const E: &str = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640";
    pub(super) const R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
    pub(super) const S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
    pub(super) const M: &[u8] = b"message digest";
    // sm2p256v1 (GB/T 32918.5-2017 §2).
    pub(super) const A: &str = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC";
    pub(super) const B: &str = "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93";
    pub(super) const GX: &str = "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7";
    pub(super) const GY: &str = "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0";
}

#[test]
fn sm2_z_and_e_known_answers() {
    use gmt_0003_5::*;
    let mut z_input = vec![0x00, 0x80];
    z_input.extend_from_slice(b"1234567812345678");
    for part in [A, B, GX, GY, X, Y] {
        z_input.extend(unhex(part));
    }
    let z = sm3(&z_input);
    assert_eq!(hex::encode_upper(z), Z);
    let mut e_input = z.to_vec();
    e_input.extend_from_slice(M);
    assert_eq!(hex::encode_upper(sm3(&e_input)), E);
}

#[test]
fn sm2_known_answer_verifies() {
    use gmt_0003_5::*;
    let signature = unhex(&format!("{R}{S}"));
    let key = VerifyingKey::from_hex(Algorithm::Sm2, &format!("04{X}{Y}")).unwrap();
    assert_eq!(key.verify(M, &signature), Ok(()));
    // Compressed form of the same point: y is odd.
    let compressed = VerifyingKey::from_hex(Algorithm::Sm2, &format!("03{X}")).unwrap();
    assert_eq!(compressed, key);
    assert_eq!(compressed.verify(M, &signature), Ok(()));
    // The private key gives that public key.
    let signing = SigningKey::from_hex(Algorithm::Sm2, D).unwrap();
    assert_eq!(signing.verifying_key(), key);
    assert_eq!(key.to_hex(), format!("04{X}{Y}").to_lowercase());
    // Our (deterministic-k) signature differs from the example's random-k one, and verifies.
    let ours = signing.sign(M);
    assert_eq!(ours.len(), 64);
    assert_eq!(key.verify(M, &ours), Ok(()));
    assert_eq!(ours, signing.sign(M), "rfc 6979 nonce: deterministic");
    // Wrong message, flipped r or s.
    let mismatch = Err(SignatureError::Mismatch {
        algorithm: Algorithm::Sm2,
    });
    assert_eq!(key.verify(b"message digesT", &signature), mismatch);
    for byte in [0, 31, 32, 63] {
        let mut bad = signature.clone();
        bad[byte] ^= 0x01;
        assert_eq!(key.verify(M, &bad), mismatch, "byte {byte}");
    }
}

/// RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
#[test]
fn ed25519_rfc8032_known_answers() {
    let vectors = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, message, signature) in vectors {
        let message = unhex(message);
        let signature = unhex(signature);
        let key = VerifyingKey::from_hex(Algorithm::Ed25519, public).unwrap();
        assert_eq!(key.verify(&message, &signature), Ok(()));
        let signing = SigningKey::from_hex(Algorithm::Ed25519, secret).unwrap();
        assert_eq!(signing.verifying_key(), key);
        assert_eq!(
            signing.sign(&message),
            signature,
            "deterministic, as RFC 8032"
        );
        assert_eq!(signing.to_hex(), secret);
        let mut bad = signature.clone();
        bad[10] ^= 0x80;
        assert!(key.verify(&message, &bad).is_err());
        let mut other = message.clone();
        other.push(0);
        assert!(key.verify(&other, &signature).is_err());
    }
}

#[test]
fn sign_verify_round_trips() {
    let body = TYPHOON_XML.as_bytes();
    for algorithm in [Algorithm::Sm2, Algorithm::Ed25519] {
        let key = SigningKey::generate(algorithm).unwrap();
        let other = SigningKey::generate(algorithm).unwrap();
        assert_ne!(key.to_hex(), other.to_hex());
        let signature = key.sign(body);
        let public = key.verifying_key();
        assert_eq!(public.algorithm(), algorithm);
        assert_eq!(public.verify(body, &signature), Ok(()));
        // Through the transport encoding.
        let header = encode_signature(&signature);
        assert_eq!(
            public.verify(body, &decode_signature(&header).unwrap()),
            Ok(())
        );
        // A flipped bit anywhere in message or signature fails.
        for bit in (0..signature.len() * 8).step_by(37) {
            let mut bad = signature.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                public.verify(body, &bad).is_err(),
                "{algorithm} sig bit {bit}"
            );
        }
        for byte in [0, body.len() / 2, body.len() - 1] {
            let mut bad = body.to_vec();
            bad[byte] ^= 0x01;
            assert!(
                public.verify(&bad, &signature).is_err(),
                "{algorithm} byte {byte}"
            );
        }
        // Wrong key.
        assert_eq!(
            other.verifying_key().verify(body, &signature),
            Err(SignatureError::Mismatch { algorithm })
        );
        // Keys survive hex.
        let again = SigningKey::from_hex(algorithm, &key.to_hex()).unwrap();
        assert_eq!(again.verifying_key(), public);
        let public_again = VerifyingKey::from_hex(algorithm, &public.to_hex()).unwrap();
        assert_eq!(public_again.verify(body, &signature), Ok(()));
    }
}

#[test]
fn malformed_keys_and_signatures_are_errors() {
    use Algorithm::{Ed25519, Sm2};
    let sm2_public = format!("04{}{}", gmt_0003_5::X, gmt_0003_5::Y);
    // Hex.
    assert!(matches!(
        VerifyingKey::from_hex(Sm2, "04zz"),
        Err(SignatureError::Hex {
            what: "public key",
            ..
        })
    ));
    assert!(matches!(
        SigningKey::from_hex(Ed25519, "abc"),
        Err(SignatureError::Hex {
            what: "private key",
            ..
        })
    ));
    // Lengths.
    assert_eq!(
        VerifyingKey::from_hex(Sm2, &sm2_public[2..]).unwrap_err(),
        SignatureError::KeyLength {
            algorithm: Sm2,
            what: "public key",
            expected: "65 (or 33 compressed)",
            found: 64
        }
    );
    assert!(matches!(
        VerifyingKey::from_hex(Ed25519, &sm2_public),
        Err(SignatureError::KeyLength { found: 65, .. })
    ));
    assert!(matches!(
        SigningKey::from_bytes(Sm2, &[1; 31]),
        Err(SignatureError::KeyLength { found: 31, .. })
    ));
    // Not a point / out-of-range scalars (0, n − 1, n, all ones).
    let mut off_curve = unhex(&sm2_public);
    off_curve[64] ^= 1;
    assert!(matches!(
        VerifyingKey::from_bytes(Sm2, &off_curve),
        Err(SignatureError::InvalidKey { .. })
    ));
    assert!(matches!(
        VerifyingKey::from_bytes(Sm2, &[0x05; 65]),
        Err(SignatureError::InvalidKey { .. })
    ));
    for d in [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122",
        "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123",
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
    ] {
        assert_eq!(
            SigningKey::from_hex(Sm2, d).unwrap_err(),
            SignatureError::InvalidKey {
                algorithm: Sm2,
                what: "private key"
            },
            "{d}"
        );
    }
    // n − 2 is the largest valid SM2 key, and it signs.
    let max = SigningKey::from_hex(
        Sm2,
        "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54121",
    )
    .unwrap();
    assert_eq!(max.verifying_key().verify(b"x", &max.sign(b"x")), Ok(()));
    // Signatures of the wrong length or out of range.
    let key = VerifyingKey::from_hex(Sm2, &sm2_public).unwrap();
    for len in [0, 63, 65, 72] {
        assert_eq!(
            key.verify(b"m", &vec![1; len]),
            Err(SignatureError::SignatureLength { found: len })
        );
    }
    for sig in [[0u8; 64], [0xFF; 64]] {
        assert!(matches!(
            key.verify(b"m", &sig),
            Err(SignatureError::Mismatch { .. })
        ));
    }
    let ed = VerifyingKey::from_hex(
        Ed25519,
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    )
    .unwrap();
    assert!(ed.verify(b"", &[0xFF; 64]).is_err(), "non-canonical s");
    // Base64.
    assert!(matches!(
        decode_signature("not base64!"),
        Err(SignatureError::Base64 { .. })
    ));
    assert_eq!(decode_signature(" AAEC \n").unwrap(), [0, 1, 2]);
    // Algorithm names.
    assert_eq!("SM2".parse::<Algorithm>(), Ok(Sm2));
    assert_eq!("ed25519".parse::<Algorithm>(), Ok(Ed25519));
    assert_eq!(
        "rsa".parse::<Algorithm>(),
        Err(SignatureError::UnknownAlgorithm { name: "rsa".into() })
    );
}

#[test]
fn debug_never_shows_private_keys() {
    for algorithm in [Algorithm::Sm2, Algorithm::Ed25519] {
        let key = SigningKey::generate(algorithm).unwrap();
        let secret = key.to_hex();
        let file = KeyFile {
            id: "province-1".into(),
            key: key.clone(),
        };
        for text in [
            format!("{key:?}"),
            format!("{file:?}"),
            format!("{file:#?}"),
        ] {
            assert!(!text.contains(&secret), "{text}");
            assert!(
                !text.to_uppercase().contains(&secret.to_uppercase()),
                "{text}"
            );
            assert!(text.contains(&key.verifying_key().to_hex()), "{text}");
        }
    }
}

#[test]
fn key_files() {
    let text = format!(
        "id = \"province-1\"\nalgorithm = \"sm2\"\nprivate_key = \"{}\"\n",
        gmt_0003_5::D
    );
    let file = KeyFile::parse(&text).unwrap();
    assert_eq!(file.id, "province-1");
    assert_eq!(file.key.algorithm(), Algorithm::Sm2);
    let written = file.to_toml();
    assert!(written.contains("public_key = \"0409f9df"), "{written}");
    let again = KeyFile::parse(&written).unwrap();
    assert_eq!(
        (again.id.as_str(), again.key.to_hex()),
        ("province-1", file.key.to_hex())
    );

    let generated = KeyFile {
        id: "county-310101".into(),
        key: SigningKey::generate(Algorithm::Ed25519).unwrap(),
    };
    let back = KeyFile::parse(&generated.to_toml()).unwrap();
    assert_eq!(back.key.verifying_key(), generated.key.verifying_key());

    // Mismatched public key, unknown field, bad id, unknown algorithm, malformed TOML.
    let wrong_public = written.replace("0409f9df", "0409f9dE");
    assert!(KeyFile::parse(&wrong_public).is_err());
    let other_key = SigningKey::generate(Algorithm::Sm2).unwrap();
    let mismatch = format!(
        "{text}public_key = \"{}\"\n",
        other_key.verifying_key().to_hex()
    );
    assert!(matches!(
        KeyFile::parse(&mismatch),
        Err(SignatureError::KeyFile { msg }) if msg.contains("does not match")
    ));
    assert!(matches!(
        KeyFile::parse(&format!("{text}comment = \"x\"\n")),
        Err(SignatureError::KeyFile { msg }) if msg.contains("comment")
    ));
    assert!(matches!(
        KeyFile::parse(&text.replace("province-1", "province 1")),
        Err(SignatureError::KeyFile { .. })
    ));
    assert!(matches!(
        KeyFile::parse(&text.replace("\"sm2\"", "\"rsa\"")),
        Err(SignatureError::UnknownAlgorithm { .. })
    ));
    // A TOML error does not quote the key.
    let broken = text.replace("private_key = \"", "private_key = \"\"");
    let e = KeyFile::parse(&broken).unwrap_err().to_string();
    assert!(
        !e.to_lowercase()
            .contains(&gmt_0003_5::D.to_lowercase()[..16]),
        "{e}"
    );
    assert!(e.starts_with("key file: line 3"), "{e}");
}

#[test]
fn transport_convention() {
    assert_eq!(SIGNATURE_HEADER, "X-Signature");
    assert_eq!(KEY_HEADER, "X-Signature-Key");
    assert_eq!(
        encode_signature(&[0xfb, 0xff]),
        "+/8=",
        "standard alphabet, padded"
    );
    assert_eq!(decode_signature("+/8=").unwrap(), [0xfb, 0xff]);
    assert!(
        decode_signature("-_8=").is_err(),
        "not the url-safe alphabet"
    );
}
