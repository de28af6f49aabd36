//! Confidential clients' authentication at the authorization server:
//! `private_key_jwt` (RFC 7523). The client signs a short JWT with one of
//! the keys its metadata publishes; [`ClientAssertions::verify`] checks it:
//!
//! - `client_assertion_type` is the JWT-bearer type;
//! - the header's `kid` names a key of the client's JWKS, and the signature
//!   (ES256) is that key's;
//! - `iss` and `sub` are the `client_id`, `aud` names this issuer;
//! - `iat` is at most a minute old (and not in the future), `exp` (if
//!   given) has not passed;
//! - `jti` was not used before by this client while the assertion could be.
//!
//! It returns the key's RFC 7638 thumbprint, to which the session is bound
//! (later requests must come with the same key). Every failure is
//! `invalid_client`, except a reused `jti`: `invalid_grant`.

use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::replay::{SeenOnce, header_and_claims_are_utf8, secs, unix_secs};

/// The only `client_assertion_type` of the profile.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How old an assertion's `iat` may be.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Allowed clock skew for `iat` in the future and `exp` in the past.
const SKEW: Duration = Duration::from_secs(10);

/// Why a client assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// The assertion or its key is wrong in some way.
    #[error("client authentication failed: {0}")]
    Invalid(String),
    /// This assertion's `jti` was used before.
    #[error("client assertion jti reused")]
    Replayed,
}

impl ClientAuthError {
    /// The OAuth error code of the answer.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_client",
            Self::Replayed => "invalid_grant",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    jti: String,
    iat: i64,
    exp: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, issuer: &str) -> bool {
        match self {
            Self::One(a) => a == issuer,
            Self::Many(all) => all.iter().any(|a| a == issuer),
        }
    }
}

/// Verifies client assertions for one issuer and remembers their `jti`s.
/// Cheap to clone; clones share the memory.
#[derive(Clone)]
pub struct ClientAssertions {
    issuer: String,
    seen: SeenOnce,
}

impl std::fmt::Debug for ClientAssertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertions")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ClientAssertions {
    /// Assertions addressed to `issuer` (the authorization server's).
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            // Long enough for any assertion this accepts: `iat` at most a
            // minute old, plus skew. (An `exp` further out does not help:
            // `iat` has already aged out by then.)
            seen: SeenOnce::new(MAX_AGE + 2 * SKEW),
        }
    }

    /// Verifies `assertion` (of `assertion_type`) from `client_id`, whose
    /// metadata publishes `jwks`; returns the signing key's thumbprint.
    pub fn verify(
        &self,
        client_id: &str,
        jwks: &serde_json::Value,
        assertion_type: &str,
        assertion: &str,
        now: SystemTime,
    ) -> Result<String, ClientAuthError> {
        let invalid = |why: &str| ClientAuthError::Invalid(why.to_owned());
        if assertion_type != JWT_BEARER {
            return Err(invalid("unsupported client_assertion_type"));
        }
        if !header_and_claims_are_utf8(assertion) {
            return Err(invalid("the header and claims must be UTF-8 JSON"));
        }
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| invalid(&e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid("the assertion must be signed with ES256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the assertion's header has no kid"))?;
        let set: JwkSet = serde_json::from_value(jwks.clone())
            .map_err(|e| invalid(&format!("the client's jwks: {e}")))?;
        let jwk: &Jwk = set
            .find(&kid)
            .ok_or_else(|| invalid("no key of the client has that kid"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(&e.to_string()))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = SKEW.as_secs();
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| invalid(&e.to_string()))?
            .claims;
        if claims.iss != client_id || claims.sub != client_id {
            return Err(invalid("iss and sub must be the client_id"));
        }
        if !claims.aud.contains(&self.issuer) {
            return Err(invalid("aud must name this authorization server"));
        }
        if claims.jti.is_empty() {
            return Err(invalid("jti is required"));
        }
        let now = unix_secs(now);
        let (max_age, skew) = (secs(MAX_AGE), secs(SKEW));
        // Saturating: `iat` and `exp` are whatever the client signed.
        if now.saturating_sub(claims.iat) > max_age || claims.iat.saturating_sub(now) > skew {
            return Err(invalid("iat must be within the last minute"));
        }
        if claims.exp.is_some_and(|exp| exp.saturating_add(skew) < now) {
            return Err(invalid("the assertion has expired"));
        }
        if !self.seen.first_use(format!("{client_id} {}", claims.jti)) {
            return Err(ClientAuthError::Replayed);
        }
        Ok(jwk.thumbprint(ThumbprintHash::SHA256))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_jws::{new_key, public_jwk, sign, sign_bytes};
    use p256::ecdsa::SigningKey;
    use serde_json::{Value, json};
    use std::time::UNIX_EPOCH;

    const CLIENT: &str = "https://app.example.com/client-metadata.json";
    const ISSUER: &str = "https://pds.example.com";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn unix() -> i64 {
        1_800_000_000
    }

    fn jwk(key: &SigningKey, kid: &str) -> Value {
        let mut jwk = public_jwk(key);
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        jwk
    }

    fn claims(jti: &str) -> Value {
        json!({"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "jti": jti, "iat": unix(), "exp": unix() + 60})
    }

    struct Setup {
        key: SigningKey,
        jwks: Value,
        verifier: ClientAssertions,
    }

    fn setup() -> Setup {
        let (key, other) = (new_key(), new_key());
        let jwks = json!({"keys": [jwk(&other, "old"), jwk(&key, "k1")]});
        Setup {
            key,
            jwks,
            verifier: ClientAssertions::new(ISSUER),
        }
    }

    fn header(kid: &str) -> Value {
        json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
    }

    #[test]
    fn a_good_assertion_passes_once() {
        let s = setup();
        let assertion = sign(&s.key, &header("k1"), &claims("a1"));
        let jkt = s
            .verifier
            .verify(CLIENT, &s.jwks, JWT_BEARER, &assertion, now())
            .unwrap();
        assert_eq!(jkt.len(), 43);
        let err = s
            .verifier
            .verify(CLIENT, &s.jwks, JWT_BEARER, &assertion, now())
            .unwrap_err();
        assert_eq!(
            (err.clone(), err.oauth_error()),
            (ClientAuthError::Replayed, "invalid_grant")
        );
        // An audience list naming this issuer is fine.
        let mut c = claims("a2");
        c["aud"] = json!(["https://other.example", ISSUER]);
        assert!(
            s.verifier
                .verify(
                    CLIENT,
                    &s.jwks,
                    JWT_BEARER,
                    &sign(&s.key, &header("k1"), &c),
                    now()
                )
                .is_ok()
        );
    }

    #[test]
    fn wrong_assertions_are_invalid_client() {
        let s = setup();
        let refuse = |assertion: &str, kind: &str| {
            let err = s
                .verifier
                .verify(CLIENT, &s.jwks, kind, assertion, now())
                .unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_client", "{err}");
        };
        let good = sign(&s.key, &header("k1"), &claims("b0"));
        refuse(
            &good,
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        );
        // Another kid's key, an unknown kid, no kid.
        refuse(&sign(&s.key, &header("old"), &claims("b1")), JWT_BEARER);
        refuse(&sign(&s.key, &header("nope"), &claims("b2")), JWT_BEARER);
        refuse(
            &sign(&s.key, &json!({"alg": "ES256"}), &claims("b3")),
            JWT_BEARER,
        );
        // Claims: issuer, subject, audience, freshness, expiry, jti.
        for (field, value) in [
            ("iss", json!("https://evil.example.com/meta.json")),
            ("sub", json!("someone")),
            ("aud", json!("https://other.example.com")),
            ("iat", json!(unix() - 120)),
            ("iat", json!(unix() + 120)),
            ("exp", json!(unix() - 60)),
            ("jti", json!("")),
        ] {
            let mut c = claims(&format!("b-{field}"));
            c[field] = value;
            refuse(&sign(&s.key, &header("k1"), &c), JWT_BEARER);
        }
        refuse("garbage", JWT_BEARER);
    }

    /// Found by the fuzz campaign (core/fuzz, corpus/jwt/crash-0d0dbe7b70357883):
    /// a claim the verifier skips could hold bytes that are not UTF-8, and
    /// the assertion passed.
    #[test]
    fn header_and_claims_must_be_utf8_even_where_ignored() {
        let s = setup();
        let claims = |jti: &str, note: &[u8]| {
            let mut c = br#"{"note":""#.to_vec();
            c.extend_from_slice(note);
            c.extend_from_slice(
                format!(
                    r#"","iss":"{CLIENT}","sub":"{CLIENT}","aud":"{ISSUER}","jti":"{jti}","iat":{}}}"#,
                    unix()
                )
                .as_bytes(),
            );
            c
        };
        let header = serde_json::to_vec(&header("k1")).unwrap();
        let verify = |assertion: &str| {
            s.verifier
                .verify(CLIENT, &s.jwks, JWT_BEARER, assertion, now())
        };
        assert!(verify(&sign_bytes(&s.key, &header, &claims("u1", b"skipped"))).is_ok());
        let odd = sign_bytes(&s.key, &header, &claims("u2", b"\xc3\x28"));
        assert_eq!(verify(&odd).unwrap_err().oauth_error(), "invalid_client");
    }

    /// Found by the fuzz campaign (core/fuzz, corpus/jwt/crash-0e7bcf9ef14ed12a):
    /// `exp` near `i64::MAX` or `iat` near `i64::MIN` overflowed the time
    /// arithmetic (a panic in debug builds, a wrong answer in release).
    #[test]
    fn extreme_times_are_judged_without_overflow() {
        let s = setup();
        let verify = |c: &Value| {
            s.verifier.verify(
                CLIENT,
                &s.jwks,
                JWT_BEARER,
                &sign(&s.key, &header("k1"), c),
                now(),
            )
        };
        let mut far_exp = claims("c1");
        far_exp["exp"] = json!(i64::MAX);
        assert!(
            verify(&far_exp).is_ok(),
            "an assertion expiring at the end of time is fresh"
        );
        for (i, (field, value)) in [
            ("iat", i64::MIN),
            ("iat", i64::MIN + 1),
            ("iat", i64::MAX),
            ("exp", i64::MIN),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = claims(&format!("c-extreme-{i}"));
            c[field] = json!(value);
            let err = verify(&c).unwrap_err();
            assert_eq!(
                err.oauth_error(),
                "invalid_client",
                "{field} = {value}: {err}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any assertion text and any signed claims are refused or
        /// accepted, never a panic.
        #[test]
        fn arbitrary_assertions_never_panic(
            text in "\\PC{0,200}",
            iss in "\\PC{0,30}",
            aud in "\\PC{0,30}",
            iat in proptest::prelude::any::<i64>(),
            exp in proptest::option::of(proptest::prelude::any::<i64>()),
        ) {
            let s = setup();
            let _ = s.verifier.verify(CLIENT, &s.jwks, JWT_BEARER, &text, now());
            let mut claims = json!({"iss": iss, "sub": CLIENT, "aud": aud, "jti": "j", "iat": iat});
            if let Some(exp) = exp {
                claims["exp"] = json!(exp);
            }
            let signed = sign(&s.key, &header("k1"), &claims);
            let _ = s.verifier.verify(CLIENT, &s.jwks, JWT_BEARER, &signed, now());
        }
    }
}
