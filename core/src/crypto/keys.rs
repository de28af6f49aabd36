//! [`SigningKey`] and [`PublicKey`]: ECDSA over SHA-256 on either curve,
//! with ATProto's low-S rule.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use k256::ecdsa::signature::DigestSigner;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::elliptic_curve::rand_core::OsRng;
use sha2::{Digest, Sha256};

use super::{
    COMPRESSED_PUBLIC_KEY_LEN, CryptoError, Curve, SECRET_KEY_LEN, SIGNATURE_LEN,
    UNCOMPRESSED_PUBLIC_KEY_LEN,
};

/// A private key on either curve, for signing.
///
/// `Debug` shows the curve and the public key, never the secret; the secret
/// scalar is zeroed when the key is dropped.
#[derive(Clone)]
pub struct SigningKey(SigningInner);

#[derive(Clone)]
enum SigningInner {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A new random key on `curve`, from the operating system's CSPRNG.
    pub fn generate(curve: Curve) -> Self {
        Self(match curve {
            Curve::K256 => SigningInner::K256(k256::ecdsa::SigningKey::random(&mut OsRng)),
            Curve::P256 => SigningInner::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        })
    }

    /// The key whose secret scalar is `bytes`: exactly 32 bytes, big-endian,
    /// not zero and below the curve order.
    pub fn from_bytes(curve: Curve, bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; SECRET_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::BadPrivateKey {
                curve,
                reason: "must be 32 bytes",
            })?;
        let out_of_range = || CryptoError::BadPrivateKey {
            curve,
            reason: "is zero or not below the curve order",
        };
        Ok(Self(match curve {
            Curve::K256 => SigningInner::K256(
                k256::ecdsa::SigningKey::from_bytes(bytes.into()).map_err(|_| out_of_range())?,
            ),
            Curve::P256 => SigningInner::P256(
                p256::ecdsa::SigningKey::from_bytes(bytes.into()).map_err(|_| out_of_range())?,
            ),
        }))
    }

    /// The key whose secret scalar is the 64 hex digits `hex` (either case).
    pub fn from_hex(curve: Curve, hex: &str) -> Result<Self, CryptoError> {
        let bytes = decode_hex32(hex).ok_or(CryptoError::BadPrivateKey {
            curve,
            reason: "must be 64 hex digits",
        })?;
        Self::from_bytes(curve, &bytes)
    }

    /// The secret scalar, 32 bytes big-endian.
    ///
    /// This is the private key: store it as a secret and never log it.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        match &self.0 {
            SigningInner::K256(k) => k.to_bytes().into(),
            SigningInner::P256(k) => k.to_bytes().into(),
        }
    }

    /// The secret scalar as 64 lowercase hex digits.
    ///
    /// This is the private key: store it as a secret and never log it.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.to_bytes())
    }

    /// The curve of this key.
    pub fn curve(&self) -> Curve {
        match &self.0 {
            SigningInner::K256(_) => Curve::K256,
            SigningInner::P256(_) => Curve::P256,
        }
    }

    /// The public key of this key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(match &self.0 {
            SigningInner::K256(k) => PublicInner::K256(*k.verifying_key()),
            SigningInner::P256(k) => PublicInner::P256(*k.verifying_key()),
        })
    }

    /// Signs `message` the ATProto way: ECDSA over the SHA-256 hash of
    /// `message` (deterministic nonce, RFC 6979), returning the 64-byte
    /// `r || s` signature with `s` normalised to low-S.
    ///
    /// The same signature serves as a JWT `ES256K`/`ES256` signature.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let digest = Sha256::new_with_prefix(message);
        let mut out = [0u8; SIGNATURE_LEN];
        match &self.0 {
            SigningInner::K256(k) => {
                let sig: k256::ecdsa::Signature = k.sign_digest(digest);
                out.copy_from_slice(&sig.normalize_s().unwrap_or(sig).to_bytes());
            }
            SigningInner::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_digest(digest);
                out.copy_from_slice(&sig.normalize_s().unwrap_or(sig).to_bytes());
            }
        }
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("curve", &self.curve())
            .field("public_key", &self.public_key().to_did_key())
            .finish_non_exhaustive()
    }
}

/// A public key on either curve, for verifying signatures.
///
/// `Display`, `FromStr` and `Debug` use the `did:key` form; equality and
/// hashing compare curve and point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(PublicInner);

#[derive(Clone, Copy, PartialEq, Eq)]
enum PublicInner {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The key encoded as a SEC1 point on `curve`: compressed (33 bytes,
    /// `02`/`03` prefix) or uncompressed (65 bytes, `04` prefix).
    pub fn from_sec1_bytes(curve: Curve, bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = |reason| CryptoError::BadPublicKey { curve, reason };
        match (bytes.len(), bytes.first()) {
            (COMPRESSED_PUBLIC_KEY_LEN, Some(0x02 | 0x03))
            | (UNCOMPRESSED_PUBLIC_KEY_LEN, Some(0x04)) => {}
            (COMPRESSED_PUBLIC_KEY_LEN, _) => {
                return Err(bad("a 33-byte key must start with 0x02 or 0x03"));
            }
            (UNCOMPRESSED_PUBLIC_KEY_LEN, _) => {
                return Err(bad("a 65-byte key must start with 0x04"));
            }
            _ => {
                return Err(bad(
                    "must be a 33-byte compressed or 65-byte uncompressed SEC1 point",
                ));
            }
        }
        let not_on_curve = |_| bad("not a point on the curve");
        Ok(Self(match curve {
            Curve::K256 => PublicInner::K256(
                k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(not_on_curve)?,
            ),
            Curve::P256 => PublicInner::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(not_on_curve)?,
            ),
        }))
    }

    /// The curve of this key.
    pub fn curve(&self) -> Curve {
        match &self.0 {
            PublicInner::K256(_) => Curve::K256,
            PublicInner::P256(_) => Curve::P256,
        }
    }

    /// The compressed SEC1 encoding: `02` or `03`, then the 32-byte x coordinate.
    pub fn to_compressed_bytes(&self) -> [u8; COMPRESSED_PUBLIC_KEY_LEN] {
        let mut out = [0u8; COMPRESSED_PUBLIC_KEY_LEN];
        // Both curves' compressed points are exactly 33 bytes.
        match &self.0 {
            PublicInner::K256(k) => out.copy_from_slice(k.to_encoded_point(true).as_bytes()),
            PublicInner::P256(k) => out.copy_from_slice(k.to_encoded_point(true).as_bytes()),
        }
        out
    }

    /// The uncompressed SEC1 encoding: `04`, then x and y (32 bytes each).
    pub fn to_uncompressed_bytes(&self) -> [u8; UNCOMPRESSED_PUBLIC_KEY_LEN] {
        let mut out = [0u8; UNCOMPRESSED_PUBLIC_KEY_LEN];
        match &self.0 {
            PublicInner::K256(k) => out.copy_from_slice(k.to_encoded_point(false).as_bytes()),
            PublicInner::P256(k) => out.copy_from_slice(k.to_encoded_point(false).as_bytes()),
        }
        out
    }

    /// Checks that `signature` is this key's ATProto signature of `message`:
    /// 64 bytes `r || s`, low-S, and valid ECDSA over the SHA-256 hash of
    /// `message`.
    ///
    /// A high-S signature is rejected ([`CryptoError::HighSSignature`]) even
    /// though its low-S twin would verify; a DER-encoded signature is
    /// rejected by its length.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(CryptoError::BadSignatureLength(signature.len()));
        }
        let digest = Sha256::digest(message);
        match &self.0 {
            PublicInner::K256(k) => {
                let sig = k256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                // `normalize_s` returns the twin only when `s` is high.
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighSSignature);
                }
                k.verify_prehash(&digest, &sig)
            }
            PublicInner::P256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighSSignature);
                }
                k.verify_prehash(&digest, &sig)
            }
        }
        .map_err(|_| CryptoError::InvalidSignature)
    }
}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.curve().hash(state);
        self.to_compressed_bytes().hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.to_did_key())
            .finish()
    }
}

impl fmt::Display for PublicKey {
    /// The `did:key` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_did_key())
    }
}

impl FromStr for PublicKey {
    type Err = CryptoError;

    /// Parses the `did:key` form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_did_key(s)
    }
}

/// The 32 bytes of exactly 64 hex digits, or `None`.
fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
pub(in crate::crypto) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn curve() -> impl Strategy<Value = Curve> {
        prop_oneof![Just(Curve::K256), Just(Curve::P256)]
    }

    /// A key on `curve` from arbitrary bytes (rejecting the rare invalid scalar).
    fn key(curve: Curve, seed: [u8; 32]) -> Option<SigningKey> {
        SigningKey::from_bytes(curve, &seed).ok()
    }

    /// `(r, s, n - s)` of a signature, each 32 bytes big-endian.
    fn split(curve: Curve, sig: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
        match curve {
            Curve::K256 => {
                let sig = k256::ecdsa::Signature::from_slice(sig).unwrap();
                (
                    k256::FieldBytes::from(sig.r()).into(),
                    k256::FieldBytes::from(sig.s()).into(),
                    k256::FieldBytes::from(-sig.s()).into(),
                )
            }
            Curve::P256 => {
                let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
                (
                    p256::FieldBytes::from(sig.r()).into(),
                    p256::FieldBytes::from(sig.s()).into(),
                    p256::FieldBytes::from(-sig.s()).into(),
                )
            }
        }
    }

    /// The malleable twin `(r, n - s)` of a signature.
    pub(in crate::crypto) fn flip_s(curve: Curve, sig: &[u8]) -> [u8; 64] {
        let (r, _, neg_s) = split(curve, sig);
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&neg_s);
        out
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            assert_eq!(key.curve(), curve);
            let public = key.public_key();
            assert_eq!(public.curve(), curve);
            let sig = key.sign(b"hello world");
            public.verify(b"hello world", &sig).unwrap();
            assert_eq!(
                public.verify(b"hello world!", &sig),
                Err(CryptoError::InvalidSignature)
            );
            // Another key does not verify it.
            let other = SigningKey::generate(curve).public_key();
            assert_eq!(
                other.verify(b"hello world", &sig),
                Err(CryptoError::InvalidSignature)
            );
            // Two generated keys differ.
            assert_ne!(other, public);
        }
    }

    #[test]
    fn private_key_bytes_and_hex_round_trip() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let again = SigningKey::from_bytes(curve, &key.to_bytes()).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let hex = key.to_hex();
            assert_eq!(hex.len(), 64);
            let upper = SigningKey::from_hex(curve, &hex.to_uppercase()).unwrap();
            assert_eq!(upper.to_hex(), hex);
        }
    }

    #[test]
    fn bad_private_keys_are_rejected() {
        for curve in Curve::ALL {
            let bad = |reason| Err(CryptoError::BadPrivateKey { curve, reason });
            let is = |r: Result<SigningKey, CryptoError>, expected| {
                assert_eq!(r.map(|k| k.to_hex()), expected);
            };
            is(
                SigningKey::from_bytes(curve, &[1; 31]),
                bad("must be 32 bytes"),
            );
            is(
                SigningKey::from_bytes(curve, &[1; 33]),
                bad("must be 32 bytes"),
            );
            is(
                SigningKey::from_bytes(curve, &[0; 32]),
                bad("is zero or not below the curve order"),
            );
            is(
                SigningKey::from_bytes(curve, &[0xff; 32]),
                bad("is zero or not below the curve order"),
            );
            for hex in ["", "00", &"g".repeat(64), &"1".repeat(63), &"é".repeat(32)] {
                is(
                    SigningKey::from_hex(curve, hex),
                    bad("must be 64 hex digits"),
                );
            }
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let debug = format!("{key:?}");
            assert!(!debug.contains(&key.to_hex()), "{debug}");
            assert!(
                !debug.to_lowercase().contains(&key.to_hex()[..16]),
                "{debug}"
            );
            assert!(debug.contains(&key.public_key().to_did_key()), "{debug}");
        }
    }

    #[test]
    fn public_key_sec1_forms() {
        for curve in Curve::ALL {
            let public = SigningKey::generate(curve).public_key();
            let compressed = public.to_compressed_bytes();
            assert!(matches!(compressed[0], 0x02 | 0x03));
            let uncompressed = public.to_uncompressed_bytes();
            assert_eq!(uncompressed[0], 0x04);
            assert_eq!(compressed[1..], uncompressed[1..33]);
            assert_eq!(
                PublicKey::from_sec1_bytes(curve, &compressed).unwrap(),
                public
            );
            assert_eq!(
                PublicKey::from_sec1_bytes(curve, &uncompressed).unwrap(),
                public
            );
            // Wrong tags, lengths, the identity, and points off the curve.
            let mut wrong_tag = compressed;
            wrong_tag[0] = 0x04;
            assert!(PublicKey::from_sec1_bytes(curve, &wrong_tag).is_err());
            assert!(PublicKey::from_sec1_bytes(curve, &compressed[..32]).is_err());
            assert!(PublicKey::from_sec1_bytes(curve, &[0x00]).is_err());
            assert!(PublicKey::from_sec1_bytes(curve, &[]).is_err());
            let mut off_curve = uncompressed;
            off_curve[64] ^= 1;
            assert_eq!(
                PublicKey::from_sec1_bytes(curve, &off_curve),
                Err(CryptoError::BadPublicKey {
                    curve,
                    reason: "not a point on the curve"
                })
            );
        }
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let public = key.public_key();
            let sig = key.sign(b"msg");
            assert_eq!(
                public.verify(b"msg", &sig[..63]),
                Err(CryptoError::BadSignatureLength(63))
            );
            assert_eq!(
                public.verify(b"msg", &[]),
                Err(CryptoError::BadSignatureLength(0))
            );
            assert_eq!(
                public.verify(b"msg", &[0; 64]),
                Err(CryptoError::MalformedSignature)
            );
            assert_eq!(
                public.verify(b"msg", &[0xff; 64]),
                Err(CryptoError::MalformedSignature)
            );
        }
    }

    #[test]
    fn signing_is_deterministic() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            assert_eq!(key.sign(b"same"), key.sign(b"same"));
            assert_ne!(key.sign(b"same"), key.sign(b"other"));
        }
    }

    #[test]
    fn many_signatures_are_low_s() {
        // Without normalisation about half of these would be high-S.
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let public = key.public_key();
            for i in 0..200u32 {
                let message = i.to_be_bytes();
                let sig = key.sign(&message);
                let (_, s, neg_s) = split(curve, &sig);
                // s <= n / 2  <=>  s <= n - s (n is odd, so never equal).
                assert!(s < neg_s, "{curve}: high-S signature for message {i}");
                public.verify(&message, &sig).unwrap();
                assert_eq!(
                    public.verify(&message, &flip_s(curve, &sig)),
                    Err(CryptoError::HighSSignature)
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sign_verify_round_trip(
            curve in curve(),
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let Some(key) = key(curve, seed) else { return Ok(()) };
            let sig = key.sign(&message);
            prop_assert_eq!(key.public_key().verify(&message, &sig), Ok(()));
            let (_, s, neg_s) = split(curve, &sig);
            prop_assert!(s < neg_s, "high-S signature");
        }

        #[test]
        fn high_s_twin_is_rejected(
            curve in curve(),
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let Some(key) = key(curve, seed) else { return Ok(()) };
            let sig = key.sign(&message);
            let twin = flip_s(curve, &sig);
            prop_assert_ne!(twin, sig);
            prop_assert_eq!(
                key.public_key().verify(&message, &twin),
                Err(CryptoError::HighSSignature)
            );
        }

        #[test]
        fn tampered_message_or_signature_fails(
            curve in curve(),
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 1..64),
            index in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let Some(key) = key(curve, seed) else { return Ok(()) };
            let public = key.public_key();
            let sig = key.sign(&message);

            let mut tampered = message.clone();
            tampered[index.index(message.len())] ^= 1 << bit;
            prop_assert_eq!(
                public.verify(&tampered, &sig),
                Err(CryptoError::InvalidSignature)
            );

            let mut bad_sig = sig;
            bad_sig[index.index(SIGNATURE_LEN)] ^= 1 << bit;
            prop_assert!(public.verify(&message, &bad_sig).is_err());
        }

        #[test]
        fn arbitrary_signature_bytes_never_panic(
            curve in curve(),
            sig in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let public = SigningKey::generate(curve).public_key();
            prop_assert!(public.verify(b"message", &sig).is_err());
        }

        #[test]
        fn arbitrary_key_bytes_never_panic(
            curve in curve(),
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            hex in "[0-9a-fA-Fg]{0,70}",
        ) {
            let _ = SigningKey::from_bytes(curve, &bytes);
            let _ = SigningKey::from_hex(curve, &hex);
            let _ = PublicKey::from_sec1_bytes(curve, &bytes);
        }
    }
}
