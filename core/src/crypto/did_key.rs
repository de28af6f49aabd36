//! The multikey and `did:key` encodings of a [`PublicKey`].
//!
//! A multikey is multibase base58btc (`z...`) of the key type's multicodec
//! as an unsigned varint (`secp256k1-pub` `0xe7` → `[0xe7, 0x01]`, `p256-pub`
//! `0x1200` → `[0x80, 0x24]`) followed by the compressed SEC1 point. It is
//! the `publicKeyMultibase` of a `Multikey` verification method in a DID
//! document; `did:key:` plus the multikey is the key's `did:key`, used for
//! PLC rotation keys and service auth.

use multibase::Base;

use super::{COMPRESSED_PUBLIC_KEY_LEN, CryptoError, Curve, DID_KEY_PREFIX, PublicKey};

/// Longest multibase string decoded. A compressed multikey is about 48
/// characters and an uncompressed legacy key about 90; the cap keeps
/// base58 decoding (quadratic in the length) cheap on hostile input.
const MAX_MULTIBASE_LEN: usize = 128;

impl PublicKey {
    /// The multikey: `z` + base58btc(multicodec varint + compressed point),
    /// the `publicKeyMultibase` of a `Multikey` verification method.
    pub fn to_multikey(&self) -> String {
        let curve = self.curve();
        let mut bytes = Vec::with_capacity(2 + COMPRESSED_PUBLIC_KEY_LEN);
        push_varint(&mut bytes, curve.multicodec());
        bytes.extend_from_slice(&self.to_compressed_bytes());
        multibase::encode(Base::Base58Btc, bytes)
    }

    /// Parses a multikey (`z...`): a `secp256k1-pub` or `p256-pub`
    /// multicodec followed by a 33-byte compressed point, as the
    /// cryptography spec requires.
    pub fn from_multikey(multikey: &str) -> Result<Self, CryptoError> {
        let bytes = decode_base58btc(multikey)?;
        let (code, key) = read_varint(&bytes)?;
        let curve = Curve::from_multicodec(code)?;
        if key.len() != COMPRESSED_PUBLIC_KEY_LEN {
            return Err(CryptoError::BadPublicKey {
                curve,
                reason: "a multikey must hold a 33-byte compressed point",
            });
        }
        Self::from_sec1_bytes(curve, key)
    }

    /// The `did:key`: `did:key:` followed by [`to_multikey`](Self::to_multikey).
    pub fn to_did_key(&self) -> String {
        format!("{DID_KEY_PREFIX}{}", self.to_multikey())
    }

    /// Parses a `did:key` (`did:key:z...`), as [`from_multikey`](Self::from_multikey)
    /// after the prefix.
    pub fn from_did_key(did: &str) -> Result<Self, CryptoError> {
        let multikey = did
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(CryptoError::NotDidKey)?;
        Self::from_multikey(multikey)
    }

    /// Parses a legacy `publicKeyMultibase`: base58btc (`z...`) of the bare
    /// SEC1 point, compressed or uncompressed, with no multicodec. DID
    /// documents use it with the verification method types
    /// `EcdsaSecp256k1VerificationKey2019` (k256) and
    /// `EcdsaSecp256r1VerificationKey2019` (p256), which name the curve.
    pub fn from_legacy_multibase(curve: Curve, multibase: &str) -> Result<Self, CryptoError> {
        Self::from_sec1_bytes(curve, &decode_base58btc(multibase)?)
    }
}

/// The bytes of a multibase base58btc string (`z...`).
fn decode_base58btc(s: &str) -> Result<Vec<u8>, CryptoError> {
    let Some(body) = s.strip_prefix('z') else {
        return Err(CryptoError::BadMultibase(
            "must start with \"z\" (base58btc)",
        ));
    };
    if s.len() > MAX_MULTIBASE_LEN {
        return Err(CryptoError::BadMultibase("too long for a public key"));
    }
    if body.is_empty() {
        return Err(CryptoError::BadMultibase("empty"));
    }
    Base::Base58Btc
        .decode(body)
        .map_err(|_| CryptoError::BadMultibase("not valid base58btc"))
}

/// Appends `value` as an unsigned LEB128 varint.
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    // Each byte carries the low 7 bits (the masked casts cannot truncate).
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push((value & 0x7f) as u8);
}

/// Reads an unsigned varint (at most 9 bytes, minimally encoded, as
/// multiformats requires) from the start of `bytes`; returns it and the rest.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), CryptoError> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(CryptoError::BadMulticodec(
                    "varint is not minimally encoded",
                ));
            }
            return Ok((value, &bytes[i + 1..]));
        }
    }
    if bytes.len() >= 9 {
        Err(CryptoError::BadMulticodec("varint longer than 9 bytes"))
    } else {
        Err(CryptoError::BadMulticodec("truncated varint"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use proptest::prelude::*;

    #[test]
    fn multicodec_prefixes() {
        let mut k = Vec::new();
        push_varint(&mut k, Curve::K256.multicodec());
        assert_eq!(k, [0xe7, 0x01]);
        let mut p = Vec::new();
        push_varint(&mut p, Curve::P256.multicodec());
        assert_eq!(p, [0x80, 0x24]);
        assert_eq!(read_varint(&[0xe7, 0x01, 7]), Ok((0xe7, &[7u8][..])));
        assert_eq!(read_varint(&[0x80, 0x24]), Ok((0x1200, &[][..])));
        assert_eq!(read_varint(&[0x01]), Ok((1, &[][..])));
        assert!(read_varint(&[]).is_err());
        assert!(read_varint(&[0xe7]).is_err());
        assert!(read_varint(&[0xe7, 0x81, 0x00]).is_err(), "non-minimal");
        assert!(read_varint(&[0xff; 12]).is_err());
    }

    #[test]
    fn did_key_round_trip_and_prefixes() {
        // Compressed keys give the familiar did:key prefixes.
        for (curve, prefix) in [(Curve::K256, "did:key:zQ3s"), (Curve::P256, "did:key:zDna")] {
            for _ in 0..20 {
                let public = SigningKey::generate(curve).public_key();
                let did = public.to_did_key();
                assert!(did.starts_with(prefix), "{did}");
                assert_eq!(PublicKey::from_did_key(&did), Ok(public));
                assert_eq!(did.parse::<PublicKey>(), Ok(public));
                assert_eq!(public.to_string(), did);
                let multikey = public.to_multikey();
                assert_eq!(format!("did:key:{multikey}"), did);
                assert_eq!(PublicKey::from_multikey(&multikey), Ok(public));
                // The legacy form is the bare point.
                let legacy = multibase::encode(Base::Base58Btc, public.to_compressed_bytes());
                assert_eq!(PublicKey::from_legacy_multibase(curve, &legacy), Ok(public));
                let legacy = multibase::encode(Base::Base58Btc, public.to_uncompressed_bytes());
                assert_eq!(PublicKey::from_legacy_multibase(curve, &legacy), Ok(public));
            }
        }
    }

    fn multikey_of(code: u64, key: &[u8]) -> String {
        let mut bytes = Vec::new();
        push_varint(&mut bytes, code);
        bytes.extend_from_slice(key);
        multibase::encode(Base::Base58Btc, bytes)
    }

    #[test]
    fn bad_did_keys_are_rejected() {
        let public = SigningKey::generate(Curve::K256).public_key();
        let multikey = public.to_multikey();
        let did = public.to_did_key();
        let cases: Vec<(String, CryptoError)> = vec![
            (multikey.clone(), CryptoError::NotDidKey),
            (format!("did:plc:{multikey}"), CryptoError::NotDidKey),
            (format!("DID:KEY:{multikey}"), CryptoError::NotDidKey),
            (
                "did:key:".into(),
                CryptoError::BadMultibase("must start with \"z\" (base58btc)"),
            ),
            ("did:key:z".into(), CryptoError::BadMultibase("empty")),
            (
                // base16 multibase of the same bytes
                format!("did:key:f{}", "e701".to_owned() + &"00".repeat(33)),
                CryptoError::BadMultibase("must start with \"z\" (base58btc)"),
            ),
            (
                format!("{did}0"),
                CryptoError::BadMultibase("not valid base58btc"),
            ),
            (
                format!("{did}#{multikey}"),
                CryptoError::BadMultibase("not valid base58btc"),
            ),
            (
                format!("did:key:z{}", "2".repeat(200)),
                CryptoError::BadMultibase("too long for a public key"),
            ),
            (
                // ed25519-pub
                format!("did:key:{}", multikey_of(0xed, &[1; 32])),
                CryptoError::UnknownMulticodec(0xed),
            ),
            (
                format!(
                    "did:key:{}",
                    multikey_of(0xe7, &public.to_uncompressed_bytes())
                ),
                CryptoError::BadPublicKey {
                    curve: Curve::K256,
                    reason: "a multikey must hold a 33-byte compressed point",
                },
            ),
            (
                format!(
                    "did:key:{}",
                    multikey_of(0xe7, &public.to_compressed_bytes()[..32])
                ),
                CryptoError::BadPublicKey {
                    curve: Curve::K256,
                    reason: "a multikey must hold a 33-byte compressed point",
                },
            ),
            (
                // base58btc "1" is one zero byte: multicodec 0 (identity)
                "did:key:z1".into(),
                CryptoError::UnknownMulticodec(0),
            ),
            (
                format!(
                    "did:key:{}",
                    multibase::encode(Base::Base58Btc, [0xe7, 0x81, 0x00])
                ),
                CryptoError::BadMulticodec("varint is not minimally encoded"),
            ),
            (
                format!("did:key:{}", multibase::encode(Base::Base58Btc, [0x80])),
                CryptoError::BadMulticodec("truncated varint"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(PublicKey::from_did_key(&input), Err(expected), "{input}");
        }
        // A k256 point read as p256 is (almost always) not on the curve; the
        // curve comes from the multicodec, so swapping it must not panic.
        let swapped = format!(
            "did:key:{}",
            multikey_of(0x1200, &public.to_compressed_bytes())
        );
        if let Ok(key) = PublicKey::from_did_key(&swapped) {
            assert_eq!(key.curve(), Curve::P256);
            assert_ne!(key, public);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,120}") {
            let _ = PublicKey::from_did_key(&s);
            let _ = PublicKey::from_did_key(&format!("did:key:z{s}"));
            let _ = PublicKey::from_multikey(&s);
            let _ = PublicKey::from_legacy_multibase(Curve::P256, &s);
        }

        #[test]
        fn arbitrary_multikey_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            let multikey = multibase::encode(Base::Base58Btc, &bytes);
            let _ = PublicKey::from_multikey(&multikey);
            let mut k = vec![0xe7, 0x01];
            k.extend_from_slice(&bytes);
            let _ = PublicKey::from_multikey(&multibase::encode(Base::Base58Btc, &k));
            let mut p = vec![0x80, 0x24];
            p.extend_from_slice(&bytes);
            let _ = PublicKey::from_multikey(&multibase::encode(Base::Base58Btc, &p));
        }
    }
}
