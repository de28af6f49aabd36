//! ATProto OAuth for Aurora Locus.
//!
//! So far the layers the authorization server stands on:
//! - [`dpop`] verifies DPoP proofs (RFC 9449) as the ATProto OAuth profile
//!   requires them, with server nonces and replay detection;
//! - [`client`] identifies clients by their `client_id` (a metadata URL, or
//!   a loopback development client) and validates their metadata;
//! - [`client_auth`] verifies confidential clients' `private_key_jwt`
//!   assertions;
//! - [`metadata`] writes the authorization server's and the protected
//!   resource's discovery documents;
//! - [`pkce`] checks `S256` code challenges and verifiers;
//! - [`scope`] parses scope strings (`atproto`, the transitional scopes,
//!   granular permissions) and answers what a token may do.
//!
//! The authorization server itself (metadata, PAR, the sign-in page, the
//! token endpoint) builds on them and is not served yet.

pub mod client;
pub mod client_auth;
pub mod dpop;
pub mod metadata;
pub mod pkce;
mod replay;
pub mod scope;

/// Test helpers: JWS signed here with `p256`, independently of the JOSE
/// library the verifiers use.
#[cfg(test)]
pub(crate) mod test_jws {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::{Value, json};

    /// A fresh P-256 key.
    pub(crate) fn new_key() -> SigningKey {
        SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng)
    }

    /// `key`'s public JWK.
    pub(crate) fn public_jwk(key: &SigningKey) -> Value {
        let point = key.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        })
    }

    /// A compact JWS of `header` and `claims` signed by `key` (ES256).
    pub(crate) fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
        sign_bytes(
            key,
            &serde_json::to_vec(header).unwrap(),
            &serde_json::to_vec(claims).unwrap(),
        )
    }

    /// A compact JWS of the `header` and `claims` bytes as they are (JSON
    /// or not) signed by `key` (ES256).
    pub(crate) fn sign_bytes(key: &SigningKey, header: &[u8], claims: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}
