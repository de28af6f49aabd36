//! DPoP proofs (RFC 9449), as the ATProto OAuth profile uses them.
//!
//! A client proves that it holds the key an OAuth token is bound to by
//! sending, with each request, a short JWT signed by that key (the `DPoP`
//! header). [`DpopVerifier::verify`] checks one proof against the request
//! it came with:
//!
//! - the JOSE header: `typ` is `dpop+jwt`, `alg` is ES256 (the algorithm
//!   the profile makes mandatory; the only one this server advertises), and
//!   `jwk` is a public P-256 key (a private one, carrying `d`, is refused);
//! - the signature, with that key;
//! - the claims: `htm` is the request's method, `htu` its URL (scheme,
//!   host, port and path; query and fragment are ignored on both sides),
//!   `iat` is recent, `nonce` is one this server issued lately, `ath` is the
//!   hash of the access token sent with it (and absent when there is none);
//! - and `jti` was not seen before within the window a proof is accepted.
//!
//! It returns the key's RFC 7638 thumbprint (`jkt`), which the caller
//! compares with the one the token or the authorization request is bound
//! to.
//!
//! Server nonces ([`Nonces`]) are stateless: an HMAC of the current minute
//! under a secret, so every node sharing the secret accepts every other
//! node's nonces. The replay cache ([`DpopVerifier`]) is this process's
//! own: with several nodes, a proof replayed to another node within its
//! few minutes is not caught there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::replay::{SeenOnce, header_and_claims_are_utf8, secs, unix_secs};
use aurora_core::store::constant_time_eq;

/// The `alg` values accepted for proofs, as the metadata advertises them.
pub const SIGNING_ALGS: &[&str] = &["ES256"];

/// How far in the past a proof's `iat` may be.
pub const MAX_AGE: Duration = Duration::from_secs(190);

/// How far in the future a proof's `iat` may be (clock skew).
pub const MAX_SKEW: Duration = Duration::from_secs(180);

/// How long a nonce is handed out for; one is accepted for about three.
pub const NONCE_PERIOD: Duration = Duration::from_secs(60);

/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// Why a proof was refused. [`oauth_error`](Self::oauth_error) is the code
/// to answer with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DpopError {
    /// No `DPoP` header, or several.
    #[error("DPoP proof required")]
    Missing,
    /// Not a well-formed proof: its header, key, claims or signature.
    #[error("invalid DPoP proof: {0}")]
    Invalid(String),
    /// The proof is for another request (`htm`, `htu`, `ath`) or too old.
    #[error("DPoP proof does not match the request: {0}")]
    Mismatch(String),
    /// No nonce, or one that is not (or no longer) this server's: the
    /// client retries with the nonce in the `DPoP-Nonce` header.
    #[error("DPoP proof needs a current nonce from this server")]
    UseNonce,
    /// This proof (its `jti`) was used before.
    #[error("DPoP proof replayed")]
    Replayed,
}

impl DpopError {
    /// The OAuth error code of the answer: `use_dpop_nonce` for a missing
    /// or stale nonce, else `invalid_dpop_proof`.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Server-issued DPoP nonces: `base64url(HMAC-SHA256(secret, minute))`.
/// The nonce handed out is the next minute's; the previous, current and
/// next minutes' are accepted, so a nonce lives two to three minutes.
#[derive(Clone)]
pub struct Nonces {
    secret: [u8; 32],
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").finish_non_exhaustive()
    }
}

impl Nonces {
    /// Nonces under `secret` (the same on every node of one PDS).
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The nonce to send in `DPoP-Nonce` at `now`.
    pub fn current(&self, now: SystemTime) -> String {
        self.nonce(period(now) + 1)
    }

    /// Whether `nonce` is one of this server's, recent enough.
    pub fn accepts(&self, nonce: &str, now: SystemTime) -> bool {
        let p = period(now);
        [p.saturating_sub(1), p, p + 1]
            .iter()
            .any(|&c| constant_time_eq(self.nonce(c).as_bytes(), nonce.as_bytes()))
    }

    fn nonce(&self, counter: u64) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            // HMAC takes keys of any length.
            unreachable!("HMAC-SHA256 accepts a 32-byte key");
        };
        mac.update(&counter.to_be_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

fn period(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / NONCE_PERIOD.as_secs())
}

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The HTTP method, as sent (`POST`).
    pub method: &'a str,
    /// The request's URL as the client addressed it: this server's public
    /// origin and the request path (not a `Host` header the client chose).
    pub url: &'a url::Url,
    /// The access token sent with the request (resource requests), whose
    /// hash the proof's `ath` must be; `None` at the authorization server,
    /// where `ath` must be absent.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    nonce: Option<String>,
    ath: Option<String>,
}

/// Checks DPoP proofs and remembers their `jti`s for as long as a proof
/// is accepted. Cheap to clone; clones share the memory.
#[derive(Clone)]
pub struct DpopVerifier {
    nonces: Nonces,
    seen: SeenOnce,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("remembered_jtis", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    /// A verifier accepting `nonces`.
    pub fn new(nonces: Nonces) -> Self {
        Self {
            nonces,
            // A `jti` is remembered until a proof carrying it is too old
            // to be accepted anyway.
            seen: SeenOnce::new(MAX_AGE + MAX_SKEW),
        }
    }

    /// The nonces this verifier accepts (for the `DPoP-Nonce` header).
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// Verifies `proof` (the `DPoP` header's value) for `target` at `now`;
    /// see the module docs for the checks. A proof that passes is
    /// remembered, and refused as replayed from then on.
    pub fn verify(
        &self,
        proof: &str,
        target: &ProofTarget<'_>,
        now: SystemTime,
    ) -> Result<VerifiedProof, DpopError> {
        let (jwk, claims) = verified_claims(proof)?;
        check_claims(&claims, target, now)?;
        match &claims.nonce {
            Some(nonce) if self.nonces.accepts(nonce, now) => {}
            _ => return Err(DpopError::UseNonce),
        }
        let jkt = jwk.thumbprint(ThumbprintHash::SHA256);
        // Keyed by key and jti: one client cannot spend another's jti.
        if !self.seen.first_use(format!("{jkt}:{}", claims.jti)) {
            return Err(DpopError::Replayed);
        }
        Ok(VerifiedProof {
            jkt,
            jti: claims.jti,
        })
    }
}

/// The proof's key and claims, once its header, key and signature check.
fn verified_claims(proof: &str) -> Result<(Jwk, ProofClaims), DpopError> {
    let invalid = |why: &str| DpopError::Invalid(why.to_owned());
    let proof = proof.trim();
    if proof.is_empty() {
        return Err(DpopError::Missing);
    }
    if !header_and_claims_are_utf8(proof) {
        return Err(invalid("the header and claims must be UTF-8 JSON"));
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|e| invalid(&e.to_string()))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(invalid("typ must be dpop+jwt"));
    }
    if header.alg != Algorithm::ES256 {
        return Err(invalid("alg must be ES256"));
    }
    let jwk = header.jwk.ok_or_else(|| invalid("the header has no jwk"))?;
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {}
        _ => return Err(invalid("jwk must be a P-256 key")),
    }
    // The typed header drops unknown members; a private key must not pass
    // for a public one, so look for `d` in the header itself.
    if raw_header_has_private_key(proof) {
        return Err(invalid("jwk must be a public key"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(&e.to_string()))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|e| invalid(&e.to_string()))?;
    Ok((jwk, data.claims))
}

fn raw_header_has_private_key(proof: &str) -> bool {
    let Some(header) = proof.split('.').next() else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("jwk").map(|jwk| jwk.get("d").is_some()))
        .unwrap_or(false)
}

fn check_claims(
    claims: &ProofClaims,
    target: &ProofTarget<'_>,
    now: SystemTime,
) -> Result<(), DpopError> {
    let mismatch = |why: String| DpopError::Mismatch(why);
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(DpopError::Invalid(format!(
            "jti must have 1 to {MAX_JTI_LEN} characters"
        )));
    }
    if claims.htm != target.method {
        return Err(mismatch(format!(
            "htm is {:?}, the request is {}",
            claims.htm, target.method
        )));
    }
    let htu = url::Url::parse(&claims.htu)
        .map_err(|e| DpopError::Invalid(format!("htu is not a URL: {e}")))?;
    if !matches!(htu.scheme(), "http" | "https")
        || !htu.username().is_empty()
        || htu.password().is_some()
    {
        return Err(DpopError::Invalid(
            "htu must be an http(s) URL without credentials".to_owned(),
        ));
    }
    if !same_resource(&htu, target.url) {
        return Err(mismatch(format!(
            "htu is {}, the request is {}",
            claims.htu, target.url
        )));
    }
    let age = unix_secs(now).saturating_sub(claims.iat);
    if age > secs(MAX_AGE) {
        return Err(mismatch("the proof is too old (iat)".to_owned()));
    }
    if -age > secs(MAX_SKEW) {
        return Err(mismatch("the proof is from the future (iat)".to_owned()));
    }
    match (target.access_token, &claims.ath) {
        (Some(token), Some(ath)) => {
            let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            if !constant_time_eq(expected.as_bytes(), ath.as_bytes()) {
                return Err(mismatch("ath is not the access token's hash".to_owned()));
            }
        }
        (Some(_), None) => return Err(mismatch("ath is missing".to_owned())),
        (None, Some(_)) => {
            return Err(mismatch(
                "ath is only for requests with an access token".to_owned(),
            ));
        }
        (None, None) => {}
    }
    Ok(())
}

/// Whether two URLs name the same resource: scheme, host, port and path
/// (`url` has already normalised case, default ports and dot segments).
fn same_resource(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_jws::{new_key, public_jwk, sign, sign_bytes};
    use p256::ecdsa::SigningKey;
    use serde_json::{Value, json};

    const SECRET: [u8; 32] = [7; 32];

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn unix(t: SystemTime) -> i64 {
        i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
    }

    struct Client {
        key: SigningKey,
    }

    impl Client {
        fn new() -> Self {
            Self { key: new_key() }
        }

        fn header(&self) -> Value {
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&self.key)})
        }

        fn proof(&self, claims: &Value) -> String {
            sign(&self.key, &self.header(), claims)
        }
    }

    /// Claims of a fresh proof for `method` on `url`.
    fn proof_claims(method: &str, url: &str, nonce: &str) -> Value {
        json!({
            "jti": format!("{:032x}", rand::random::<u128>()),
            "htm": method,
            "htu": url,
            "iat": unix(now()),
            "nonce": nonce,
        })
    }

    fn verifier() -> DpopVerifier {
        DpopVerifier::new(Nonces::new(SECRET))
    }

    fn token_endpoint() -> url::Url {
        url::Url::parse("https://pds.example.com/oauth/token").unwrap()
    }

    fn at_token_endpoint(url: &url::Url) -> ProofTarget<'_> {
        ProofTarget {
            method: "POST",
            url,
            access_token: None,
        }
    }

    #[test]
    fn a_good_proof_passes_once_and_yields_the_keys_thumbprint() {
        let (v, client, url) = (verifier(), Client::new(), token_endpoint());
        let nonce = v.nonces().current(now());
        let proof = client.proof(&proof_claims("POST", url.as_str(), &nonce));
        let ok = v.verify(&proof, &at_token_endpoint(&url), now()).unwrap();
        // RFC 7638: SHA-256 over the required members in lexicographic order.
        let jwk = public_jwk(&client.key);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(ok.jkt, URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)));
        assert_eq!(
            v.verify(&proof, &at_token_endpoint(&url), now()),
            Err(DpopError::Replayed)
        );
    }

    #[test]
    fn nonces_are_needed_and_last_two_to_three_minutes() {
        let (v, client, url) = (verifier(), Client::new(), token_endpoint());
        let target = at_token_endpoint(&url);
        let mut claims = proof_claims("POST", url.as_str(), "x");
        claims.as_object_mut().unwrap().remove("nonce");
        let err = v
            .verify(&client.proof(&claims), &target, now())
            .unwrap_err();
        assert_eq!(
            (err.clone(), err.oauth_error()),
            (DpopError::UseNonce, "use_dpop_nonce")
        );
        let foreign = Nonces::new([8; 32]).current(now());
        let claims = proof_claims("POST", url.as_str(), &foreign);
        assert_eq!(
            v.verify(&client.proof(&claims), &target, now()),
            Err(DpopError::UseNonce)
        );
        let issued = v.nonces().current(now());
        assert!(
            v.nonces()
                .accepts(&issued, now() + Duration::from_secs(120))
        );
        assert!(
            !v.nonces()
                .accepts(&issued, now() + Duration::from_secs(240))
        );
        assert!(!v.nonces().accepts("", now()));
    }

    #[test]
    fn a_proof_for_another_request_is_refused() {
        let (v, client, url) = (verifier(), Client::new(), token_endpoint());
        let nonce = v.nonces().current(now());
        let target = at_token_endpoint(&url);
        let refuse = |claims: Value| {
            let err = v
                .verify(&client.proof(&claims), &target, now())
                .unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_dpop_proof", "{err}");
            err
        };
        // Wrong method, wrong URL (path, host, scheme, port).
        assert!(matches!(
            refuse(proof_claims("GET", url.as_str(), &nonce)),
            DpopError::Mismatch(_)
        ));
        for other in [
            "https://pds.example.com/oauth/par",
            "https://evil.example.com/oauth/token",
            "http://pds.example.com/oauth/token",
            "https://pds.example.com:8443/oauth/token",
        ] {
            assert!(
                matches!(
                    refuse(proof_claims("POST", other, &nonce)),
                    DpopError::Mismatch(_)
                ),
                "{other}"
            );
        }
        // Too old, too far ahead.
        for shift in [-(secs(MAX_AGE) + 5), secs(MAX_SKEW) + 5] {
            let mut claims = proof_claims("POST", url.as_str(), &nonce);
            claims["iat"] = json!(unix(now()) + shift);
            assert!(matches!(refuse(claims), DpopError::Mismatch(_)), "{shift}");
        }
        // `ath` at the authorization server.
        let mut claims = proof_claims("POST", url.as_str(), &nonce);
        claims["ath"] = json!("abc");
        refuse(claims);
        // Query and fragment do not count, a default port is the same URL.
        let same = proof_claims(
            "POST",
            "https://PDS.example.com:443/oauth/token?x=1#f",
            &nonce,
        );
        assert!(v.verify(&client.proof(&same), &target, now()).is_ok());
    }

    #[test]
    fn ath_binds_a_resource_request_to_its_access_token() {
        let (v, client) = (verifier(), Client::new());
        let url =
            url::Url::parse("https://pds.example.com/xrpc/com.atproto.repo.createRecord").unwrap();
        let target = ProofTarget {
            method: "POST",
            url: &url,
            access_token: Some("the-token"),
        };
        let nonce = v.nonces().current(now());
        let mut claims = proof_claims("POST", url.as_str(), &nonce);
        assert!(matches!(
            v.verify(&client.proof(&claims), &target, now()),
            Err(DpopError::Mismatch(_))
        ));
        claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest("another-token")));
        assert!(matches!(
            v.verify(&client.proof(&claims), &target, now()),
            Err(DpopError::Mismatch(_))
        ));
        claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest("the-token")));
        assert!(v.verify(&client.proof(&claims), &target, now()).is_ok());
    }

    #[test]
    fn malformed_proofs_are_invalid() {
        let (v, client, url) = (verifier(), Client::new(), token_endpoint());
        let target = at_token_endpoint(&url);
        let nonce = v.nonces().current(now());
        let claims = proof_claims("POST", url.as_str(), &nonce);
        let invalid = |proof: &str| {
            let err = v.verify(proof, &target, now()).unwrap_err();
            assert!(
                matches!(err, DpopError::Invalid(_) | DpopError::Missing),
                "{proof}: {err}"
            );
        };
        invalid("");
        invalid("not.a.jwt");
        // Another typ, another alg, no key, a private key, another curve's shape.
        let mut h = client.header();
        h["typ"] = json!("JWT");
        invalid(&sign(&client.key, &h, &claims));
        let mut h = client.header();
        h["alg"] = json!("HS256");
        invalid(&sign(&client.key, &h, &claims));
        let mut h = client.header();
        h.as_object_mut().unwrap().remove("jwk");
        invalid(&sign(&client.key, &h, &claims));
        let mut h = client.header();
        h["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode(client.key.to_bytes()));
        invalid(&sign(&client.key, &h, &claims));
        // Signed by a key other than the one in the header.
        let other = Client::new();
        invalid(&sign(&other.key, &client.header(), &claims));
        // A tampered payload.
        let proof = client.proof(&claims);
        let mut parts: Vec<&str> = proof.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&json!({"jti": "x", "htm": "POST", "htu": url.as_str(), "iat": unix(now()), "nonce": nonce})).unwrap(),
        );
        parts[1] = &forged;
        invalid(&parts.join("."));
        // An empty jti.
        let mut c = claims.clone();
        c["jti"] = json!("");
        invalid(&client.proof(&c));
    }

    /// As the fuzz campaign found for client assertions (core/fuzz,
    /// corpus/jwt/crash-0d0dbe7b70357883): a claim the verifier skips could
    /// hold bytes that are not UTF-8, and the proof passed.
    #[test]
    fn header_and_claims_must_be_utf8_even_where_ignored() {
        let (v, client, url) = (verifier(), Client::new(), token_endpoint());
        let target = at_token_endpoint(&url);
        let nonce = v.nonces().current(now());
        let claims = |jti: &str, note: &[u8]| {
            let mut c = br#"{"note":""#.to_vec();
            c.extend_from_slice(note);
            c.extend_from_slice(
                format!(
                    r#"","jti":"{jti}","htm":"POST","htu":"{url}","iat":{},"nonce":"{nonce}"}}"#,
                    unix(now())
                )
                .as_bytes(),
            );
            c
        };
        let header = serde_json::to_vec(&client.header()).unwrap();
        let fine = sign_bytes(&client.key, &header, &claims("u1", b"skipped"));
        assert!(v.verify(&fine, &target, now()).is_ok());
        let odd = sign_bytes(&client.key, &header, &claims("u2", b"\x90"));
        assert!(matches!(
            v.verify(&odd, &target, now()),
            Err(DpopError::Invalid(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Anything in the `DPoP` header is refused or accepted, never a panic.
        #[test]
        fn arbitrary_proofs_never_panic(
            text in "\\PC{0,200}",
            parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,60}", 0..5),
        ) {
            let v = verifier();
            let url = token_endpoint();
            for proof in [text.clone(), parts.join(".")] {
                proptest::prop_assert!(v.verify(&proof, &at_token_endpoint(&url), now()).is_err());
            }
        }

        /// A correctly signed proof with arbitrary claims never panics.
        #[test]
        fn signed_arbitrary_claims_never_panic(
            htm in "\\PC{0,10}",
            htu in "\\PC{0,40}",
            iat in proptest::prelude::any::<i64>(),
            jti in "\\PC{0,20}",
            nonce in "\\PC{0,20}",
        ) {
            let client = Client::new();
            let proof = client.proof(&json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat, "nonce": nonce}));
            let url = token_endpoint();
            proptest::prop_assert!(verifier().verify(&proof, &at_token_endpoint(&url), now()).is_err());
        }
    }
}
