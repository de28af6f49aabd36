//! The fixed keys, secrets, identities and clock the targets verify
//! against, and the signing helpers the seeds and the targets share.
//!
//! Everything here is a constant of the campaign, not input: a failure to
//! build it is a bug in this crate, hence the `expect`s.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aurora_core::crypto::{Curve, PublicKey, SigningKey};
use aurora_core::syntax::{Did, Nsid};
use aurora_oauth::dpop::Nonces;
use aurora_server::auth::tokens::SessionTokens;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The time every verifier is asked about: 2023-11-14T22:13:20Z.
pub const NOW_SECS: i64 = 1_700_000_000;
/// The HS256 secret of the session tokens.
pub const SESSION_SECRET: &[u8] = b"aurora-fuzz session secret, 32+ bytes long";
/// The service DID (the `aud` of session tokens).
pub const SERVICE_DID: &str = "did:web:pds.fuzz.test";
/// The account the seeds speak for.
pub const ACCOUNT_DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
/// The audience of service tokens.
pub const SERVICE_AUD: &str = "did:web:api.bsky.app#bsky_appview";
/// The method service tokens are bound to.
pub const SERVICE_LXM: &str = "app.bsky.feed.getTimeline";
/// The DPoP nonce and client-assertion secret.
pub const NONCE_SECRET: [u8; 32] = [0x42; 32];
/// The authorization server (issuer) of client assertions.
pub const ISSUER: &str = "https://pds.fuzz.test";
/// The confidential client.
pub const CLIENT_ID: &str = "https://client.fuzz.test/client-metadata.json";
/// The `kid` of the client's key.
pub const CLIENT_KID: &str = "k1";
/// The token endpoint DPoP proofs are made for.
pub const TOKEN_ENDPOINT: &str = "https://pds.fuzz.test/oauth/token";
/// The resource DPoP proofs with `ath` are made for.
pub const RESOURCE_URL: &str = "https://pds.fuzz.test/xrpc/com.atproto.repo.listRecords";
/// The access token sent with resource requests.
pub const RESOURCE_TOKEN: &str = "fuzz-access-token";

/// [`NOW_SECS`] as a chrono time.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW_SECS, 0).expect("a fixed time in range")
}

/// [`NOW_SECS`] as a system time.
pub fn now_system() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS.unsigned_abs())
}

/// The keys and verifiers built once.
#[derive(Debug)]
pub struct Fixtures {
    /// The session token issuer and verifier.
    pub session: SessionTokens,
    /// The account's k256 signing key (commits, ES256K service tokens).
    pub k256: SigningKey,
    /// A p256 key: ES256 service tokens, DPoP proofs, client assertions.
    pub p256: SigningKey,
    /// The account DID.
    pub account: Did,
    /// The service-token method.
    pub lxm: Nsid,
    /// `p256`'s public JWK (`kty`, `crv`, `x`, `y`).
    pub p256_jwk: Value,
    /// The client's JWKS: `p256` with `kid` [`CLIENT_KID`].
    pub client_jwks: Value,
    /// The RFC 7638 thumbprint of `p256`.
    pub p256_thumbprint: String,
    /// The DPoP nonce current at [`now_system`].
    pub dpop_nonce: String,
}

/// The fixtures, built on first use.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let service = Did::parse(SERVICE_DID).expect("the fixed service DID is valid");
        let k256 = SigningKey::from_bytes(Curve::K256, &[0x11; 32]).expect("a valid k256 scalar");
        let p256 = SigningKey::from_bytes(Curve::P256, &[0x22; 32]).expect("a valid p256 scalar");
        let point = p256.public_key().to_uncompressed_bytes();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let p256_jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        let mut client_key = p256_jwk.clone();
        client_key["kid"] = json!(CLIENT_KID);
        client_key["alg"] = json!("ES256");
        client_key["use"] = json!("sig");
        Fixtures {
            session: SessionTokens::new(SESSION_SECRET, service),
            k256,
            p256,
            account: Did::parse(ACCOUNT_DID).expect("the fixed account DID is valid"),
            lxm: Nsid::parse(SERVICE_LXM).expect("the fixed method is an NSID"),
            p256_jwk,
            client_jwks: json!({ "keys": [client_key] }),
            p256_thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
            dpop_nonce: Nonces::new(NONCE_SECRET).current(now_system()),
        }
    })
}

/// HMAC-SHA256 of `input` under [`SESSION_SECRET`].
pub fn session_mac(input: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(SESSION_SECRET)
        .expect("HMAC takes keys of any length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// The signature a token with header `alg` gets over `input`: HS256 with
/// the session secret, ES256K with the k256 key, ES256 with the p256 key;
/// any other `alg` gets an HS256 signature (so that a verifier that
/// confused algorithms would accept it).
pub fn sign_for_alg(alg: Option<&str>, input: &[u8]) -> Vec<u8> {
    let fx = fixtures();
    match alg {
        Some("ES256K") => fx.k256.sign(input).to_vec(),
        Some("ES256") => fx.p256.sign(input).to_vec(),
        _ => session_mac(input),
    }
}

/// A compact JWS of the header and claims texts (used as they are, not
/// re-serialised), signed for the header's `alg`.
pub fn sign_jws(header: impl AsRef<[u8]>, claims: impl AsRef<[u8]>) -> String {
    let (header, claims) = (header.as_ref(), claims.as_ref());
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let alg = header_alg(header);
    let sig = sign_for_alg(alg.as_deref(), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The `alg` of a JSON header text, if it has a string one (read as the
/// verifiers read it: other members are skipped, not decoded).
pub fn header_alg(header_json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    serde_json::from_slice::<Header>(header_json)
        .ok()
        .map(|h| h.alg)
}

/// The public key that verifies `alg` signatures from [`sign_for_alg`].
pub fn public_key_for(alg: &str) -> Option<PublicKey> {
    let fx = fixtures();
    match alg {
        "ES256K" => Some(fx.k256.public_key()),
        "ES256" => Some(fx.p256.public_key()),
        _ => None,
    }
}
