//! ATProto cryptography: signing keys, public keys, `did:key`, verification.
//!
//! ATProto signs repo commits, PLC operations and service tokens with ECDSA
//! on one of two curves, and every implementation must handle both
//! (<https://atproto.com/specs/cryptography>):
//!
//! - `k256` — secp256k1, JWT algorithm `ES256K`; the default for new keys;
//! - `p256` — NIST P-256 (secp256r1), JWT algorithm `ES256`.
//!
//! The rules this module enforces, so that callers cannot get them wrong:
//!
//! - a message is signed by hashing it with SHA-256 and signing the 32-byte
//!   hash; [`SigningKey::sign`] and [`PublicKey::verify`] take the message and
//!   hash it themselves;
//! - signatures are 64 bytes, `r || s` big-endian ("compact"), never DER;
//! - signatures are low-S: signing normalises `s` to at most `n / 2`, and
//!   verification rejects a high-S signature instead of normalising it, since
//!   ATProto treats the malleable twin of a signature as invalid;
//! - public keys are shared as compressed SEC1 points (33 bytes) inside a
//!   multikey: multibase base58btc (`z...`) of a multicodec varint
//!   (`secp256k1-pub` `0xe7` or `p256-pub` `0x1200`) followed by the point.
//!   `did:key:` plus the multikey is the `did:key` form.
//!
//! The curve libraries (`k256`, `p256`) stay behind [`SigningKey`] and
//! [`PublicKey`], so the rest of the crate never handles curve types, and
//! decoding untrusted input returns a [`CryptoError`] instead of panicking.

mod did_key;
mod keys;

#[cfg(test)]
mod interop_tests;

pub use keys::{PublicKey, SigningKey};

use std::fmt;

/// Length of a signature: `r || s`, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a raw private key (a big-endian scalar).
pub const SECRET_KEY_LEN: usize = 32;
/// Length of a compressed SEC1 public key.
pub const COMPRESSED_PUBLIC_KEY_LEN: usize = 33;
/// Length of an uncompressed SEC1 public key.
pub const UNCOMPRESSED_PUBLIC_KEY_LEN: usize = 65;
/// The prefix of a `did:key` DID.
pub const DID_KEY_PREFIX: &str = "did:key:";

/// One of the two elliptic curves ATProto supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// secp256k1 ("k256"), JWT algorithm `ES256K`.
    K256,
    /// NIST P-256 / secp256r1 ("p256"), JWT algorithm `ES256`.
    P256,
}

impl Curve {
    /// Both curves, `k256` first.
    pub const ALL: [Self; 2] = [Self::K256, Self::P256];

    /// The JWT `alg` of ECDSA with SHA-256 on this curve: `ES256K` or `ES256`.
    pub const fn jwt_alg(self) -> &'static str {
        match self {
            Self::K256 => "ES256K",
            Self::P256 => "ES256",
        }
    }

    /// The curve of a JWT `alg` (`ES256K` or `ES256`, exact case).
    pub fn from_jwt_alg(alg: &str) -> Result<Self, CryptoError> {
        match alg {
            "ES256K" => Ok(Self::K256),
            "ES256" => Ok(Self::P256),
            _ => Err(CryptoError::UnknownAlgorithm(truncate(alg))),
        }
    }

    /// The multicodec code of a public key on this curve: `secp256k1-pub`
    /// (`0xe7`) or `p256-pub` (`0x1200`).
    pub const fn multicodec(self) -> u64 {
        match self {
            Self::K256 => 0xe7,
            Self::P256 => 0x1200,
        }
    }

    /// The curve whose public keys have multicodec `code`.
    pub fn from_multicodec(code: u64) -> Result<Self, CryptoError> {
        match code {
            0xe7 => Ok(Self::K256),
            0x1200 => Ok(Self::P256),
            _ => Err(CryptoError::UnknownMulticodec(code)),
        }
    }

    /// The short name ATProto uses: `k256` or `p256`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::K256 => "k256",
            Self::P256 => "p256",
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key, `did:key`, or signature was rejected.
///
/// No variant carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A string that should be a `did:key` does not start with `did:key:`.
    #[error("not a did:key: must start with \"did:key:\"")]
    NotDidKey,
    /// A string is not multibase base58btc (`z...`).
    #[error("invalid multibase: {0}")]
    BadMultibase(&'static str),
    /// The multicodec varint at the start of a multikey is malformed.
    #[error("invalid multicodec prefix: {0}")]
    BadMulticodec(&'static str),
    /// A multikey names a key type other than `secp256k1-pub` or `p256-pub`.
    #[error(
        "unsupported multicodec {0:#x}: only secp256k1-pub (0xe7) and p256-pub (0x1200) keys are supported"
    )]
    UnknownMulticodec(u64),
    /// A JWT `alg` other than `ES256K` or `ES256`.
    #[error("unsupported signature algorithm {0:?}: only ES256K and ES256 are supported")]
    UnknownAlgorithm(String),
    /// Public key bytes that are not a valid point on the curve.
    #[error("invalid {curve} public key: {reason}")]
    BadPublicKey {
        /// The curve the key was read for.
        curve: Curve,
        /// What is wrong.
        reason: &'static str,
    },
    /// Private key bytes that are not a valid secret scalar.
    #[error("invalid {curve} private key: {reason}")]
    BadPrivateKey {
        /// The curve the key was read for.
        curve: Curve,
        /// What is wrong (never the key itself).
        reason: &'static str,
    },
    /// A signature that is not 64 bytes, e.g. a DER-encoded one.
    #[error("signature must be {SIGNATURE_LEN} bytes (compact r || s), got {0}")]
    BadSignatureLength(usize),
    /// A 64-byte signature whose `r` or `s` is zero or not below the curve order.
    #[error("malformed signature: r or s is zero or not below the curve order")]
    MalformedSignature,
    /// A high-S signature (`s > n / 2`), which ATProto does not accept.
    #[error("high-S signature: atproto accepts only low-S signatures")]
    HighSSignature,
    /// A well-formed signature that does not verify for this key and message.
    #[error("signature does not verify")]
    InvalidSignature,
}

/// At most 64 characters of untrusted `s`, for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
