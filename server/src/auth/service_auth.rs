//! Inter-service auth: the short-lived ES256K/ES256 JWTs of
//! `com.atproto.server.getServiceAuth`.
//!
//! When a PDS calls another service on an account's behalf (an AppView, a
//! labeler, a PDS the account migrates to), it proves who it speaks for
//! with a JWT signed by the account's repo signing key: `iss` is the
//! account's DID, `aud` the target service's DID (possibly with a
//! `#fragment` naming the service entry, e.g. `did:web:api.bsky.app#bsky_appview`),
//! `lxm` the one XRPC method the token is good for, and `exp` a few seconds
//! or minutes ahead. The receiver resolves `iss` to its DID document and
//! verifies the signature with the `did:key` found there.
//!
//! The tokens are compact JWS signed with [`aurora_core::crypto`] keys
//! directly: `base64url(header) "." base64url(claims) "."
//! base64url(r || s)`, no padding, with the 64-byte low-S signature
//! [`SigningKey::sign`] makes over the SHA-256 of the signing input. No JWT
//! library is used because none verifies with ATProto's rules (low-S
//! required, not normalised) on our `k256`/`p256` versions without pulling
//! unused crypto; see [`tokens`](super::tokens) for the evaluation.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use aurora_core::crypto::{PublicKey, SigningKey};
use aurora_core::syntax::{Did, Nsid};

use super::tokens::{
    ACCESS_TOKEN_TYPE, CompactJws, REFRESH_TOKEN_TYPE, TokenError, check_issued_before,
    check_not_expired, encode_json, json_object, timestamp,
};

/// The JWT `typ` of service tokens.
pub const SERVICE_TOKEN_TYPE: &str = "JWT";

/// How far in the future a service token's `iat` may be: other servers'
/// clocks may differ from ours by this much.
pub const SERVICE_CLOCK_LEEWAY: TimeDelta = TimeDelta::minutes(5);

/// Token types that are never service tokens: session tokens (RFC 9068
/// access tokens and `@atproto`'s refresh tokens) and DPoP proofs.
const FORBIDDEN_TYPES: [&str; 3] = [ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, "dpop+jwt"];

/// The verified claims of a service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The account the token speaks for (`iss`).
    pub iss: Did,
    /// The service the token is for (`aud`), possibly with a `#fragment`.
    pub aud: String,
    /// When the token expires (`exp`).
    pub exp: DateTime<Utc>,
    /// When the token was issued (`iat`), if it says.
    pub iat: Option<DateTime<Utc>>,
    /// The one XRPC method the token is for (`lxm`), if it is restricted.
    pub lxm: Option<Nsid>,
    /// The token's nonce (`jti`), if it has one.
    pub jti: Option<String>,
}

/// The claims as they appear in the token. `iat` and `jti` are optional,
/// as in the reference verifier, so that tokens from other implementations
/// are accepted.
#[derive(Deserialize)]
struct RawClaims {
    iss: Did,
    aud: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    lxm: Option<Nsid>,
    #[serde(default)]
    jti: Option<String>,
}

/// Creates a service token: `iss` speaks to the service `aud` (a DID,
/// possibly with a `#fragment`) until `exp`, for method `lxm` only if given,
/// signed with `key` (`ES256K` for k256 keys, `ES256` for p256) at `now`.
///
/// The header is `{"typ":"JWT","alg":...}`; the claims are `iat`, `iss`,
/// `aud`, `exp`, `lxm` (when given) and `jti`, a random 16-byte hex nonce.
/// Which lifetimes to allow is the caller's policy (the reference PDS
/// issues at most an hour, and a minute without `lxm`).
pub fn create_service_jwt(
    key: &SigningKey,
    iss: &Did,
    aud: &str,
    lxm: Option<&Nsid>,
    exp: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let header = json_object([
        ("typ", Value::from(SERVICE_TOKEN_TYPE)),
        ("alg", Value::from(key.curve().jwt_alg())),
    ]);
    let mut claims = json_object([
        ("iat", Value::from(now.timestamp())),
        ("iss", Value::from(iss.as_str())),
        ("aud", Value::from(aud)),
        ("exp", Value::from(exp.timestamp())),
        ("jti", Value::from(hex::encode(rand::random::<[u8; 16]>()))),
    ]);
    if let (Some(lxm), Value::Object(map)) = (lxm, &mut claims) {
        map.insert("lxm".to_owned(), Value::from(lxm.as_str()));
    }
    let signing_input = format!("{}.{}", encode_json(&header), encode_json(&claims));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Verifies a service token at `now` with `key`, the issuer's signing key,
/// and returns its claims.
///
/// Checks, in order: the compact-JWS shape; `typ` not a session token or
/// DPoP proof type; `alg` exactly the key's (`ES256K` or `ES256`); the
/// signature (64 bytes, low-S, see [`PublicKey::verify`]); the claims; `aud`
/// exactly `expected_aud`; `lxm` equal to `expected_lxm` when one is
/// expected; `exp` not passed; and `iat`, when present, at most
/// [`SERVICE_CLOCK_LEEWAY`] ahead of `now`.
///
/// That `key` belongs to `iss` is the caller's business: resolve the DID
/// (see [`unverified_issuer`]) and pass its `#atproto` key.
pub fn verify_service_jwt(
    jwt: &str,
    key: &PublicKey,
    expected_aud: &str,
    expected_lxm: Option<&Nsid>,
    now: DateTime<Utc>,
) -> Result<ServiceClaims, TokenError> {
    let parts = CompactJws::parse(jwt)?;
    if let Some(typ) = &parts.header.typ
        && FORBIDDEN_TYPES.contains(&typ.as_str())
    {
        return Err(TokenError::WrongType {
            expected: "a service token, not a session token or DPoP proof",
        });
    }
    let alg = key.curve().jwt_alg();
    if parts.header.alg != alg {
        return Err(parts.unsupported_alg(alg));
    }
    key.verify(parts.signing_input.as_bytes(), &parts.signature)
        .map_err(|_| TokenError::BadSignature)?;

    let raw: RawClaims = parts.claims()?;
    if raw.aud != expected_aud {
        return Err(TokenError::WrongAudience);
    }
    if let Some(expected) = expected_lxm
        && raw.lxm.as_ref() != Some(expected)
    {
        return Err(TokenError::WrongMethod {
            expected: expected.to_string(),
        });
    }
    let exp = timestamp(raw.exp, "exp out of range")?;
    check_not_expired(exp, now)?;
    let iat = match raw.iat {
        Some(iat) => {
            let iat = timestamp(iat, "iat out of range")?;
            check_issued_before(iat, now, SERVICE_CLOCK_LEEWAY)?;
            Some(iat)
        }
        None => None,
    };
    Ok(ServiceClaims {
        iss: raw.iss,
        aud: raw.aud,
        exp,
        iat,
        lxm: raw.lxm,
        jti: raw.jti,
    })
}

/// The `iss` of a service token, **unverified**: only for finding the key
/// to call [`verify_service_jwt`] with. Nothing else may trust it.
pub fn unverified_issuer(jwt: &str) -> Result<Did, TokenError> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Did,
    }
    let parts = CompactJws::parse(jwt)?;
    parts.claims::<Issuer>().map(|c| c.iss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::{AccessScope, SessionTokens};
    use aurora_core::crypto::Curve;
    use proptest::prelude::*;
    use serde_json::json;

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    fn alice() -> Did {
        did("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
    }

    fn nsid(s: &str) -> Nsid {
        Nsid::parse(s).unwrap()
    }

    const APPVIEW: &str = "did:web:api.bsky.app#bsky_appview";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn now() -> DateTime<Utc> {
        at(1_700_000_000)
    }

    fn exp() -> DateTime<Utc> {
        now() + TimeDelta::seconds(60)
    }

    fn split(jwt: &str) -> (Value, Value, Vec<u8>) {
        let p: Vec<&str> = jwt.split('.').collect();
        assert_eq!(p.len(), 3, "{jwt}");
        let bytes = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        let json = |s: &str| serde_json::from_slice(&bytes(s)).unwrap();
        (json(p[0]), json(p[1]), bytes(p[2]))
    }

    /// A token of `header` and `claims` signed with `key`.
    fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", encode_json(header), encode_json(claims));
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn token(key: &SigningKey, lxm: Option<&str>) -> String {
        let lxm = lxm.map(nsid);
        create_service_jwt(key, &alice(), APPVIEW, lxm.as_ref(), exp(), now())
    }

    #[test]
    fn round_trip_on_both_curves_with_the_did_key() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            // The verifier knows the key only from the DID document's did:key.
            let public = PublicKey::from_did_key(&key.public_key().to_did_key()).unwrap();
            let method = nsid("app.bsky.feed.getTimeline");
            let jwt = token(&key, Some(method.as_str()));
            let claims = verify_service_jwt(&jwt, &public, APPVIEW, Some(&method), now()).unwrap();
            assert_eq!(claims.iss, alice());
            assert_eq!(claims.aud, APPVIEW);
            assert_eq!(claims.exp, exp());
            assert_eq!(claims.iat, Some(now()));
            assert_eq!(claims.lxm, Some(method));
            assert_eq!(claims.jti.as_ref().map(String::len), Some(32));
            // Without an expected method, any (or no) lxm is fine.
            assert!(verify_service_jwt(&jwt, &public, APPVIEW, None, now()).is_ok());
            let unrestricted = token(&key, None);
            let claims = verify_service_jwt(&unrestricted, &public, APPVIEW, None, now()).unwrap();
            assert_eq!(claims.lxm, None);
            assert_eq!(unverified_issuer(&jwt), Ok(alice()));
        }
    }

    #[test]
    fn header_and_claims_are_exactly_the_reference_fields() {
        for (curve, alg) in [(Curve::K256, "ES256K"), (Curve::P256, "ES256")] {
            let key = SigningKey::generate(curve);
            let jwt = token(&key, Some("com.atproto.repo.uploadBlob"));
            assert!(!jwt.contains('='), "{jwt}");
            let (header, claims, sig) = split(&jwt);
            assert_eq!(header, json!({"typ": "JWT", "alg": alg}));
            let jti = claims["jti"].as_str().unwrap().to_owned();
            assert!(jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(
                claims,
                json!({
                    "iat": 1_700_000_000,
                    "iss": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                    "aud": "did:web:api.bsky.app#bsky_appview",
                    "exp": 1_700_000_060,
                    "lxm": "com.atproto.repo.uploadBlob",
                    "jti": jti,
                })
            );
            // The signature is the raw 64-byte r || s over the signing input.
            assert_eq!(sig.len(), 64);
            let input = jwt.rsplit_once('.').unwrap().0;
            key.public_key().verify(input.as_bytes(), &sig).unwrap();

            let (_, claims, _) = split(&token(&key, None));
            assert!(claims.get("lxm").is_none(), "{claims}");
        }
        // A fresh nonce each time.
        let key = SigningKey::generate(Curve::K256);
        assert_ne!(
            split(&token(&key, None)).1["jti"],
            split(&token(&key, None)).1["jti"]
        );
    }

    #[test]
    fn another_key_is_rejected() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let jwt = token(&key, None);
            let other = SigningKey::generate(curve).public_key();
            assert_eq!(
                verify_service_jwt(&jwt, &other, APPVIEW, None, now()),
                Err(TokenError::BadSignature)
            );
        }
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let public = key.public_key();
            let jwt = token(&key, Some("app.bsky.feed.getTimeline"));
            let (header, claims, sig) = split(&jwt);

            for (field, value) in [
                ("iss", json!("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")),
                ("exp", json!(4_000_000_000_i64)),
                ("lxm", json!("com.atproto.server.deleteAccount")),
            ] {
                let mut changed = claims.clone();
                changed[field] = value;
                let jwt = format!(
                    "{}.{}.{}",
                    encode_json(&header),
                    encode_json(&changed),
                    URL_SAFE_NO_PAD.encode(&sig)
                );
                assert_eq!(
                    verify_service_jwt(&jwt, &public, APPVIEW, None, now()),
                    Err(TokenError::BadSignature),
                    "{field}"
                );
            }

            let input = jwt.rsplit_once('.').unwrap().0;
            for i in [0, 17, 31, 32, 50, 63] {
                let mut bad = sig.clone();
                bad[i] ^= 0x01;
                let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bad));
                assert_eq!(
                    verify_service_jwt(&jwt, &public, APPVIEW, None, now()),
                    Err(TokenError::BadSignature)
                );
            }
            // Truncated, empty, or DER-length signatures.
            for bad in [&sig[..63], &[][..], &[0u8; 72][..]] {
                let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(bad));
                assert_eq!(
                    verify_service_jwt(&jwt, &public, APPVIEW, None, now()),
                    Err(TokenError::BadSignature)
                );
            }
        }
    }

    #[test]
    fn high_s_twin_is_rejected() {
        // The malleable twin (r, n - s) of a valid k256 signature.
        use k256::elliptic_curve::scalar::IsHigh as _;
        let key = SigningKey::generate(Curve::K256);
        let jwt = token(&key, None);
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig =
            k256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        assert!(!bool::from(sig.s().is_high()));
        let twin = k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let twin_jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(twin.to_bytes()));
        assert_eq!(
            verify_service_jwt(&twin_jwt, &key.public_key(), APPVIEW, None, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_must_match_the_key() {
        let k256 = SigningKey::generate(Curve::K256);
        let p256 = SigningKey::generate(Curve::P256);
        let claims = split(&token(&k256, None)).1;

        // A k256 signature labelled ES256, and the other way round.
        for (key, alg, expected) in [(&k256, "ES256", "ES256K"), (&p256, "ES256K", "ES256")] {
            let jwt = forge(key, &json!({"typ": "JWT", "alg": alg}), &claims);
            assert_eq!(
                verify_service_jwt(&jwt, &key.public_key(), APPVIEW, None, now()),
                Err(TokenError::UnsupportedAlgorithm {
                    found: alg.to_owned(),
                    expected
                })
            );
        }
        // A p256 key does not verify a k256 token.
        let jwt = token(&k256, None);
        assert_eq!(
            verify_service_jwt(&jwt, &p256.public_key(), APPVIEW, None, now()),
            Err(TokenError::UnsupportedAlgorithm {
                found: "ES256K".to_owned(),
                expected: "ES256"
            })
        );
        // alg "none", HS256 and lower case.
        for alg in ["none", "HS256", "es256k", ""] {
            let header = json!({"typ": "JWT", "alg": alg});
            for jwt in [
                format!("{}.{}.", encode_json(&header), encode_json(&claims)),
                forge(&k256, &header, &claims),
            ] {
                assert!(
                    matches!(
                        verify_service_jwt(&jwt, &k256.public_key(), APPVIEW, None, now()),
                        Err(TokenError::UnsupportedAlgorithm { .. })
                    ),
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn session_tokens_are_not_service_tokens_and_vice_versa() {
        let key = SigningKey::generate(Curve::K256);
        let sessions = SessionTokens::new(
            b"an-example-jwt-secret-of-at-least-32-chars",
            did("did:web:api.bsky.app"),
        );
        let s = sessions.issue(&alice(), AccessScope::Access, "session-1", now());
        for jwt in [&s.access_jwt, &s.refresh_jwt] {
            assert_eq!(
                verify_service_jwt(jwt, &key.public_key(), "did:web:api.bsky.app", None, now()),
                Err(TokenError::WrongType {
                    expected: "a service token, not a session token or DPoP proof"
                })
            );
        }
        // An HS256 token typed like a service token: the algorithm is wrong.
        let hs256 = json!({"alg": "HS256", "typ": "JWT"});
        let (_, claims, sig) = split(&s.access_jwt);
        let jwt = format!(
            "{}.{}.{}",
            encode_json(&hs256),
            encode_json(&claims),
            URL_SAFE_NO_PAD.encode(sig)
        );
        assert_eq!(
            verify_service_jwt(&jwt, &key.public_key(), "did:web:api.bsky.app", None, now()),
            Err(TokenError::UnsupportedAlgorithm {
                found: "HS256".to_owned(),
                expected: "ES256K"
            })
        );
        // DPoP proofs are refused too, even when validly signed.
        let claims = split(&token(&key, None)).1;
        let dpop = forge(&key, &json!({"typ": "dpop+jwt", "alg": "ES256K"}), &claims);
        assert!(matches!(
            verify_service_jwt(&dpop, &key.public_key(), APPVIEW, None, now()),
            Err(TokenError::WrongType { .. })
        ));
        // A token without typ is accepted (the spec does not require one).
        let untyped = forge(&key, &json!({"alg": "ES256K"}), &claims);
        assert!(verify_service_jwt(&untyped, &key.public_key(), APPVIEW, None, now()).is_ok());

        // And the session verifier refuses service tokens.
        let jwt = token(&key, None);
        assert_eq!(
            sessions.verify_access(&jwt, now()),
            Err(TokenError::UnsupportedAlgorithm {
                found: "ES256K".to_owned(),
                expected: "HS256"
            })
        );
        assert!(matches!(
            sessions.verify_refresh(&jwt, now()),
            Err(TokenError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn expiry_audience_and_method() {
        let key = SigningKey::generate(Curve::P256);
        let public = key.public_key();
        let method = nsid("app.bsky.feed.getTimeline");
        let jwt = token(&key, Some(method.as_str()));

        assert!(
            verify_service_jwt(
                &jwt,
                &public,
                APPVIEW,
                Some(&method),
                exp() - TimeDelta::seconds(1)
            )
            .is_ok()
        );
        assert_eq!(
            verify_service_jwt(&jwt, &public, APPVIEW, Some(&method), exp()),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_service_jwt(
                &jwt,
                &public,
                APPVIEW,
                Some(&method),
                exp() + TimeDelta::days(1)
            ),
            Err(TokenError::Expired)
        );
        // Clocks may differ by a few minutes, not more.
        assert!(
            verify_service_jwt(&jwt, &public, APPVIEW, None, now() - SERVICE_CLOCK_LEEWAY).is_ok()
        );
        assert_eq!(
            verify_service_jwt(
                &jwt,
                &public,
                APPVIEW,
                None,
                now() - SERVICE_CLOCK_LEEWAY - TimeDelta::seconds(1)
            ),
            Err(TokenError::IssuedInFuture)
        );

        // The audience is compared exactly, fragment included.
        for aud in [
            "did:web:api.bsky.app",
            "did:web:api.bsky.app#bsky_chat",
            "did:web:evil.example#bsky_appview",
            "",
        ] {
            assert_eq!(
                verify_service_jwt(&jwt, &public, aud, None, now()),
                Err(TokenError::WrongAudience),
                "{aud}"
            );
        }

        // The method must be the expected one, and present when one is expected.
        let other = nsid("com.atproto.server.deleteAccount");
        let wrong = Err(TokenError::WrongMethod {
            expected: other.to_string(),
        });
        assert_eq!(
            verify_service_jwt(&jwt, &public, APPVIEW, Some(&other), now()),
            wrong
        );
        let unrestricted = token(&key, None);
        assert_eq!(
            verify_service_jwt(&unrestricted, &public, APPVIEW, Some(&other), now()),
            wrong
        );
    }

    #[test]
    fn tokens_from_other_implementations() {
        // iat and jti are optional; unknown claims are ignored.
        let key = SigningKey::generate(Curve::K256);
        let header = json!({"typ": "JWT", "alg": "ES256K"});
        let jwt = forge(
            &key,
            &header,
            &json!({"iss": alice(), "aud": APPVIEW, "exp": 1_700_000_060, "nonce": 1}),
        );
        let claims = verify_service_jwt(&jwt, &key.public_key(), APPVIEW, None, now()).unwrap();
        assert_eq!((claims.iat, claims.jti, claims.lxm), (None, None, None));

        // But the required claims must be there and well-formed.
        for claims in [
            json!({"aud": APPVIEW, "exp": 1_700_000_060}),
            json!({"iss": "alice", "aud": APPVIEW, "exp": 1_700_000_060}),
            json!({"iss": alice(), "exp": 1_700_000_060}),
            json!({"iss": alice(), "aud": APPVIEW}),
            json!({"iss": alice(), "aud": APPVIEW, "exp": "soon"}),
            json!({"iss": alice(), "aud": [APPVIEW], "exp": 1_700_000_060}),
            json!({"iss": alice(), "aud": APPVIEW, "exp": 1_700_000_060, "lxm": "not an nsid"}),
            json!({"iss": alice(), "aud": APPVIEW, "exp": i64::MAX}),
        ] {
            let jwt = forge(&key, &header, &claims);
            assert!(
                matches!(
                    verify_service_jwt(&jwt, &key.public_key(), APPVIEW, None, now()),
                    Err(TokenError::Malformed(_))
                ),
                "{claims}"
            );
        }
    }

    #[test]
    fn unverified_issuer_reads_only_iss() {
        let key = SigningKey::generate(Curve::K256);
        assert_eq!(unverified_issuer(&token(&key, None)), Ok(alice()));
        assert!(unverified_issuer("").is_err());
        assert!(unverified_issuer("e30.e30.").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_strings_never_panic(
            s in "\\PC{0,200}",
            parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,90}", 0..5),
            header in "\\PC{0,60}",
            claims in "\\PC{0,120}",
            sig in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let key = SigningKey::generate(Curve::K256).public_key();
            let encoded = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(&claims),
                URL_SAFE_NO_PAD.encode(&sig),
            );
            let method = nsid("app.bsky.feed.getTimeline");
            for jwt in [s.clone(), parts.join("."), encoded] {
                prop_assert!(verify_service_jwt(&jwt, &key, APPVIEW, Some(&method), now()).is_err());
                prop_assert!(verify_service_jwt(&jwt, &key, APPVIEW, None, now()).is_err());
                let _ = unverified_issuer(&jwt);
            }
        }

        #[test]
        fn validly_signed_arbitrary_claims_never_panic(
            curve in prop_oneof![Just(Curve::K256), Just(Curve::P256)],
            iss in prop_oneof![Just("did:plc:ewvi7nxzyoun6zhxrhs64oiz".to_owned()), "\\PC{0,20}"],
            lxm in proptest::option::of("[a-z.]{0,30}"),
            iat in any::<i64>(),
            exp in any::<i64>(),
        ) {
            let key = SigningKey::generate(curve);
            let header = json!({"typ": "JWT", "alg": curve.jwt_alg()});
            let claims = json!({"iss": iss, "aud": APPVIEW, "exp": exp, "iat": iat, "lxm": lxm});
            let jwt = forge(&key, &header, &claims);
            let _ = verify_service_jwt(&jwt, &key.public_key(), APPVIEW, None, now());
        }
    }
}
