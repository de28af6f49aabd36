//! `jwt`: the JWT verifiers: session tokens (access, refresh, OAuth
//! access), service-auth tokens, DPoP proofs and client assertions.
//!
//! The input is read one of two ways:
//!
//! - **JSON mode**, when it starts with `{`: the first line is the JOSE
//!   header and the rest the claims, both as JSON text (the bytes as they
//!   are, valid UTF-8 or not). They are encoded and signed as the header's
//!   `alg` says (see [`sign_for_alg`](crate::fixtures::sign_for_alg)), so
//!   mutations reach the claim checks behind the signature;
//! - **token mode**, otherwise: the text (lossy UTF-8) is given to every
//!   verifier as it is and, when it has three dot-separated parts, once
//!   more with its first two parts signed again the same way.

use aurora_core::crypto::Curve;
use aurora_oauth::client_auth::{ClientAssertions, JWT_BEARER};
use aurora_oauth::dpop::{DpopVerifier, Nonces, ProofTarget};
use aurora_server::auth::service_auth::{unverified_issuer, verify_service_jwt};
use aurora_server::auth::tokens::{DEFAULT_CLOCK_LEEWAY, REFRESH_SCOPE};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::Outcome;
use crate::fixtures::{
    self, CLIENT_ID, ISSUER, NONCE_SECRET, RESOURCE_TOKEN, RESOURCE_URL, SERVICE_AUD,
    TOKEN_ENDPOINT, fixtures, now, now_system, session_mac,
};

/// Feeds the tokens `data` stands for (see the [module docs](self)) to
/// every verifier and checks what they promise when they accept:
///
/// - session tokens: the HS256 signature is the session secret's over the
///   signing input (nothing forged passes), the `typ` is the kind asked
///   for (an access token is never a refresh token), `aud` is this
///   service, the token has not expired and was not issued in the future;
/// - service tokens: the signature verifies with the issuer's key, `alg`
///   is the key's, `aud` and `lxm` are the expected ones, `exp` has not
///   passed, and the `typ` is not a session or DPoP type;
/// - DPoP proofs and client assertions: the thumbprint returned is the one
///   of the key that signed (nothing else can sign for this campaign).
///
/// Every verifier must return an error rather than panic on any text.
pub fn jwt(data: &[u8]) -> Outcome {
    let mut accepted = false;
    for token in tokens(data) {
        accepted |= check_session(&token);
        accepted |= check_service(&token);
        accepted |= check_oauth(&token);
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Rejected
    }
}

/// The tokens to try for the input text.
fn tokens(data: &[u8]) -> Vec<String> {
    if data.starts_with(b"{") {
        let (header, claims) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b""[..]),
        };
        return vec![fixtures::sign_jws(header, claims)];
    }
    let text = String::from_utf8_lossy(data);
    let mut out = vec![text.clone().into_owned()];
    let parts: Vec<&str> = text.split('.').collect();
    if let [header, claims, _] = parts.as_slice() {
        let input = format!("{header}.{claims}");
        let alg = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| fixtures::header_alg(&h));
        let sig = fixtures::sign_for_alg(alg.as_deref(), input.as_bytes());
        out.push(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)));
    }
    out
}

/// The bytes of a token part, if it is base64url of UTF-8 text.
fn part_text(token: &str, index: usize) -> Option<String> {
    let part = token.split('.').nth(index)?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// A JSON object, read without looking at its members: what `serde_json`
/// accepts as an object when it skips every member (RFC 8259 allows lone
/// surrogate escapes, which `serde_json` refuses only in strings it keeps).
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = AnyObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(Members)
    }
}

/// The string member `name` of part `index` of `token`, read as the
/// verifiers read claims: other members are skipped without being decoded,
/// so that an odd member elsewhere does not hide this one.
fn field(token: &str, index: usize, name: &str) -> Option<String> {
    struct Find<'a>(&'a str);
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0 {
                    found = Some(map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let text = part_text(token, index)?;
    Find(name)
        .deserialize(&mut serde_json::Deserializer::from_str(&text))
        .ok()
        .flatten()
}

/// Asserts that an accepted token's header and claims are UTF-8 JSON
/// objects (RFC 7519 §7.2).
fn assert_well_formed(token: &str, what: &str) {
    for (i, part) in [(0, "header"), (1, "claims")] {
        assert!(
            part_text(token, i).is_some_and(|t| serde_json::from_str::<AnyObject>(&t).is_ok()),
            "{what} accepted with a {part} that is not a UTF-8 JSON object"
        );
    }
}

/// Whether `token`'s signature is the session secret's HMAC of its
/// signing input.
fn has_session_mac(token: &str) -> bool {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(sig)
        .is_ok_and(|sig| sig == session_mac(input.as_bytes()))
}

fn header_typ(token: &str) -> Option<String> {
    field(token, 0, "typ")
}

fn check_session(token: &str) -> bool {
    let fx = fixtures();
    let session = &fx.session;
    let now = now();
    let service = session.service_did();
    let access = session.verify_access(token, now);
    let refresh = session.verify_refresh(token, now);
    let oauth = session.verify_oauth_access(token, now);
    if let Ok(c) = &access {
        assert!(
            has_session_mac(token),
            "an access token passed without our MAC"
        );
        assert_well_formed(token, "an access token");
        assert_eq!(header_typ(token).as_deref(), Some("at+jwt"));
        assert_eq!(&c.aud, service, "an access token for another audience");
        assert!(c.exp > now, "an expired access token passed");
        assert!(
            c.iat <= now + DEFAULT_CLOCK_LEEWAY,
            "an access token from the future"
        );
        assert!(!c.sid.is_empty(), "an access token without a session");
        assert!(
            refresh.is_err(),
            "an access token passed as a refresh token"
        );
    }
    if let Ok(c) = &refresh {
        assert!(
            has_session_mac(token),
            "a refresh token passed without our MAC"
        );
        assert_well_formed(token, "a refresh token");
        assert_eq!(header_typ(token).as_deref(), Some("refresh+jwt"));
        assert_eq!(&c.aud, service, "a refresh token for another audience");
        assert!(c.exp > now, "an expired refresh token passed");
        assert!(
            c.iat <= now + DEFAULT_CLOCK_LEEWAY,
            "a refresh token from the future"
        );
        assert!(!c.jti.is_empty(), "a refresh token without an id");
        assert_eq!(field(token, 1, "scope").as_deref(), Some(REFRESH_SCOPE));
        assert!(oauth.is_err(), "a refresh token passed as an OAuth token");
    }
    if let Ok(c) = &oauth {
        assert!(
            has_session_mac(token),
            "an OAuth token passed without our MAC"
        );
        assert_well_formed(token, "an OAuth token");
        assert_eq!(header_typ(token).as_deref(), Some("at+jwt"));
        assert!(c.exp > now, "an expired OAuth token passed");
        assert!(
            !c.jti.is_empty() && !c.jkt.is_empty(),
            "an OAuth token without jti or jkt"
        );
        assert_eq!(field(token, 1, "aud").as_deref(), Some(service.as_str()));
    }
    access.is_ok() || refresh.is_ok() || oauth.is_ok()
}

fn check_service(token: &str) -> bool {
    let fx = fixtures();
    let now = now();
    let _ = unverified_issuer(token);
    let mut accepted = false;
    for curve in Curve::ALL {
        let key = fixtures::public_key_for(curve.jwt_alg()).expect("a key for each curve");
        let Ok(claims) = verify_service_jwt(token, &key, SERVICE_AUD, None, now) else {
            continue;
        };
        accepted = true;
        assert_well_formed(token, "a service token");
        let (input, sig) = token.rsplit_once('.').expect("a JWS has dots");
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .expect("an accepted signature decodes");
        key.verify(input.as_bytes(), &sig)
            .expect("an accepted service token is signed by the key");
        assert_eq!(
            field(token, 0, "alg").as_deref(),
            Some(curve.jwt_alg()),
            "a service token with another alg passed"
        );
        let typ = header_typ(token);
        assert!(
            !matches!(typ.as_deref(), Some("at+jwt" | "refresh+jwt" | "dpop+jwt")),
            "a service token of a forbidden type passed"
        );
        assert_eq!(
            claims.aud, SERVICE_AUD,
            "a service token for another audience"
        );
        assert!(claims.exp > now, "an expired service token passed");
        // Bound to a method: accepted exactly when the token names it.
        let bound = verify_service_jwt(token, &key, SERVICE_AUD, Some(&fx.lxm), now);
        assert_eq!(
            bound.is_ok(),
            claims.lxm.as_ref() == Some(&fx.lxm),
            "the lxm check disagrees with the token's lxm: {bound:?}"
        );
    }
    accepted
}

fn check_oauth(token: &str) -> bool {
    let fx = fixtures();
    let now = now_system();
    let dpop = DpopVerifier::new(Nonces::new(NONCE_SECRET));
    let endpoint = url::Url::parse(TOKEN_ENDPOINT).expect("a fixed URL");
    let resource = url::Url::parse(RESOURCE_URL).expect("a fixed URL");
    let targets = [
        ProofTarget {
            method: "POST",
            url: &endpoint,
            access_token: None,
        },
        ProofTarget {
            method: "GET",
            url: &resource,
            access_token: Some(RESOURCE_TOKEN),
        },
    ];
    let mut accepted = false;
    for target in &targets {
        if let Ok(proof) = dpop.verify(token, target, now) {
            accepted = true;
            assert_well_formed(token, "a DPoP proof");
            assert_eq!(proof.jkt, fx.p256_thumbprint, "a DPoP proof of another key");
            assert!(!proof.jti.is_empty(), "a DPoP proof without jti");
            // The same proof again is a replay.
            assert!(
                dpop.verify(token, target, now).is_err(),
                "a DPoP proof replayed"
            );
        }
    }
    let assertions = ClientAssertions::new(ISSUER);
    if let Ok(jkt) = assertions.verify(CLIENT_ID, &fx.client_jwks, JWT_BEARER, token, now) {
        accepted = true;
        assert_well_formed(token, "a client assertion");
        assert_eq!(jkt, fx.p256_thumbprint, "a client assertion of another key");
        assert!(
            assertions
                .verify(CLIENT_ID, &fx.client_jwks, JWT_BEARER, token, now)
                .is_err(),
            "a client assertion replayed"
        );
    }
    accepted
}
