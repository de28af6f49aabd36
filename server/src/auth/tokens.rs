//! Session tokens: the HS256 access and refresh JWTs of `createSession`
//! and `refreshSession`, as the reference PDS issues them.
//!
//! A session is a pair of JWTs signed with the server's `jwt_secret`:
//!
//! - the **access token** (`typ` `at+jwt`, after RFC 9068) authorises XRPC
//!   calls for two hours; its `scope` says whether the session was opened
//!   with the account password (`com.atproto.access`) or an app password
//!   (`com.atproto.appPass`, `com.atproto.appPassPrivileged`), and its
//!   `sid` names the session, so that ending the session (deleteSession, a
//!   password change, revoking the app password) ends its access tokens at
//!   once instead of when they expire;
//! - the **refresh token** (`typ` `refresh+jwt`, scope
//!   `com.atproto.refresh`) lives for 90 days and carries a random `jti`,
//!   the id under which the session is stored, so that it can be rotated
//!   once and revoked.
//!
//! Verification is strict: the `alg` must be exactly `HS256` (so `none` and
//! every algorithm-confusion trick fail before any key is used), the `typ`
//! and `scope` must match the kind of token asked for (an access token is
//! never a refresh token, and vice versa), the signature is compared in
//! constant time, and `aud` must be this service's DID.
//!
//! HS256 is implemented here on the `hmac` crate instead of with a JWT
//! library, because none of the candidates fits leanly:
//!
//! - `jsonwebtoken` 11 needs a crypto backend: `rust_crypto` pulls in
//!   `rsa`, `p384`, `ed25519-dalek`, `curve25519-dalek` and a second `rand`
//!   (0.8), none of which we use; `aws_lc_rs` needs a C build; with neither
//!   it panics at run time unless a process-global provider is installed;
//! - `jwt-compact` (last stable release 2023) adds `anyhow`, and its ES256K
//!   verifier normalises high-S signatures instead of rejecting them, which
//!   ATProto forbids;
//! - `jwt-simple` uses BoringSSL by default, and its `pure-rust` build adds
//!   a second crypto stack (`k256`/`p256` 0.14, `sha2` 0.11, `hmac` 0.13)
//!   plus `rsa`, `p384`, Ed25519 and ML-DSA; it also needs Rust 1.89.
//!
//! `hmac` 0.12 is already compiled into the workspace (ECDSA's RFC 6979
//! nonces use it) and shares `sha2` 0.10 with our keys, so this costs no new
//! crate. The compact-JWS helpers at the end of this module are shared with
//! [`service_auth`](super::service_auth).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use aurora_core::syntax::Did;

/// The JWT `alg` of session tokens.
pub const SESSION_ALG: &str = "HS256";
/// The JWT `typ` of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The JWT `typ` of refresh tokens.
pub const REFRESH_TOKEN_TYPE: &str = "refresh+jwt";
/// The `scope` of refresh tokens.
pub const REFRESH_SCOPE: &str = "com.atproto.refresh";

/// How long an access token is valid unless configured otherwise: 2 hours.
pub const DEFAULT_ACCESS_LIFETIME: TimeDelta = TimeDelta::hours(2);
/// How long a refresh token is valid unless configured otherwise: 90 days.
pub const DEFAULT_REFRESH_LIFETIME: TimeDelta = TimeDelta::days(90);
/// How far in the future a token's `iat` may be before it is rejected,
/// unless configured otherwise: 1 minute, for servers whose clocks differ a
/// little.
pub const DEFAULT_CLOCK_LEEWAY: TimeDelta = TimeDelta::minutes(1);

/// HMAC-SHA256 (block size 64 bytes).
type HmacSha256 = Hmac<Sha256>;
const HMAC_BLOCK_LEN: usize = 64;

/// Why a token was rejected.
///
/// The messages never contain the token, a secret or more than a few
/// characters of untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS of three base64url parts with JSON header and
    /// claims of the expected shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm this verifier does not accept (for
    /// example `none`, or `HS256` where an `ES256K` signature is expected).
    #[error("token algorithm {found:?} is not accepted here: expected {expected}")]
    UnsupportedAlgorithm {
        /// The `alg` of the token (at most 32 characters of it).
        found: String,
        /// The algorithm this verifier accepts.
        expected: &'static str,
    },
    /// The signature does not verify with the key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token's `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `iat` is further in the future than clocks can differ.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// The token's `aud` is not the expected audience.
    #[error("token is meant for another audience")]
    WrongAudience,
    /// The header's `typ` is not the one this kind of token has.
    #[error("wrong token type: expected {expected}")]
    WrongType {
        /// What the verifier expects.
        expected: &'static str,
    },
    /// The `scope` claim is not one this kind of token has.
    #[error("wrong token scope: expected {expected}")]
    WrongScope {
        /// What the verifier expects.
        expected: &'static str,
    },
    /// A service token's `lxm` is missing or names another method.
    #[error("token is not for method {expected} (lxm)")]
    WrongMethod {
        /// The NSID the token had to be for.
        expected: String,
    },
}

/// What an access token allows: the `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessScope {
    /// A session opened with the account password: full access.
    Access,
    /// A session opened with an app password: no account management.
    AppPass,
    /// A session opened with a privileged app password: like
    /// [`AppPass`](Self::AppPass), plus direct messages.
    AppPassPrivileged,
}

impl AccessScope {
    /// All access scopes.
    pub const ALL: [Self; 3] = [Self::Access, Self::AppPass, Self::AppPassPrivileged];

    /// The `scope` claim: `com.atproto.access`, `com.atproto.appPass` or
    /// `com.atproto.appPassPrivileged`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Access => "com.atproto.access",
            Self::AppPass => "com.atproto.appPass",
            Self::AppPassPrivileged => "com.atproto.appPassPrivileged",
        }
    }

    /// The scope whose claim is `scope` (exact case), if it is an access scope.
    pub fn from_claim(scope: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == scope)
    }

    /// Whether the session was opened with an app password.
    pub const fn is_app_password(self) -> bool {
        matches!(self, Self::AppPass | Self::AppPassPrivileged)
    }
}

impl fmt::Display for AccessScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// What the session may do (`scope`).
    pub scope: AccessScope,
    /// The account (`sub`).
    pub sub: Did,
    /// The service the token is for (`aud`): this server.
    pub aud: Did,
    /// The session the token belongs to (`sid`): stable across refreshes,
    /// so that ending the session ends its access tokens too.
    pub sid: String,
    /// When the token was issued (`iat`).
    pub iat: DateTime<Utc>,
    /// When the token expires (`exp`).
    pub exp: DateTime<Utc>,
}

/// What an OAuth access token says: see [`SessionTokens::issue_oauth_access`].
#[derive(Debug, Clone, Copy)]
pub struct OAuthAccessGrant<'a> {
    /// The authorization server (`iss`).
    pub issuer: &'a str,
    /// The account (`sub`).
    pub did: &'a Did,
    /// The token id (`jti`).
    pub token_id: &'a str,
    /// The client (`client_id`).
    pub client_id: &'a str,
    /// The DPoP key's thumbprint (`cnf.jkt`).
    pub jkt: &'a str,
    /// When it is issued (`iat`).
    pub issued_at: DateTime<Utc>,
    /// When it expires (`exp`).
    pub expires_at: DateTime<Utc>,
}

/// The verified claims of an OAuth access token (see
/// [`SessionTokens::issue_oauth_access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthAccessClaims {
    /// The account (`sub`).
    pub sub: Did,
    /// The token id (`jti`): which session, and which of its refreshes.
    pub jti: String,
    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`).
    pub jkt: String,
    /// The client the token was issued to (`client_id`).
    pub client_id: String,
    /// When the token expires (`exp`).
    pub exp: DateTime<Utc>,
}

/// The verified claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    /// The account (`sub`).
    pub sub: Did,
    /// The service the token is for (`aud`): this server.
    pub aud: Did,
    /// The session id (`jti`), under which the refresh token is stored.
    pub jti: String,
    /// When the token was issued (`iat`).
    pub iat: DateTime<Utc>,
    /// When the token expires (`exp`).
    pub exp: DateTime<Utc>,
}

/// A freshly issued session: the two JWTs and what the store needs to
/// remember about the refresh token.
///
/// `Debug` hides the tokens, which are bearer credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSession {
    /// The access token (`accessJwt`).
    pub access_jwt: String,
    /// The refresh token (`refreshJwt`).
    pub refresh_jwt: String,
    /// The refresh token's `jti`: 32 random bytes, base64url.
    pub refresh_id: String,
    /// The refresh token's `exp`.
    pub refresh_expires_at: DateTime<Utc>,
}

impl fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSession")
            .field("refresh_id", &self.refresh_id)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

/// Issues and verifies the session tokens of one service.
///
/// `Debug` shows the service DID and lifetimes, never the secret.
#[derive(Clone)]
pub struct SessionTokens {
    /// HMAC-SHA256 already keyed with the secret; cloned for each token.
    mac: HmacSha256,
    service_did: Did,
    access_lifetime: TimeDelta,
    refresh_lifetime: TimeDelta,
    clock_leeway: TimeDelta,
}

impl fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTokens")
            .field("service_did", &self.service_did)
            .field("access_lifetime", &self.access_lifetime)
            .field("refresh_lifetime", &self.refresh_lifetime)
            .field("clock_leeway", &self.clock_leeway)
            .finish_non_exhaustive()
    }
}

impl SessionTokens {
    /// Session tokens signed with `secret` (the server's `jwt_secret`) for
    /// the service `service_did`, with the default lifetimes: 2 hours for
    /// access tokens, 90 days for refresh tokens.
    ///
    /// Any secret length works (HMAC hashes long keys); the configuration
    /// requires at least 32 characters.
    pub fn new(secret: &[u8], service_did: Did) -> Self {
        Self {
            mac: hmac_sha256(secret),
            service_did,
            access_lifetime: DEFAULT_ACCESS_LIFETIME,
            refresh_lifetime: DEFAULT_REFRESH_LIFETIME,
            clock_leeway: DEFAULT_CLOCK_LEEWAY,
        }
    }

    /// Sets how long access tokens are valid.
    #[must_use]
    pub fn with_access_lifetime(mut self, lifetime: TimeDelta) -> Self {
        self.access_lifetime = lifetime;
        self
    }

    /// Sets how long refresh tokens are valid.
    #[must_use]
    pub fn with_refresh_lifetime(mut self, lifetime: TimeDelta) -> Self {
        self.refresh_lifetime = lifetime;
        self
    }

    /// Sets how far in the future a token's `iat` may be.
    #[must_use]
    pub fn with_clock_leeway(mut self, leeway: TimeDelta) -> Self {
        self.clock_leeway = leeway;
        self
    }

    /// The service DID, the `aud` of every token.
    pub fn service_did(&self) -> &Did {
        &self.service_did
    }

    /// How long access tokens are valid.
    pub fn access_lifetime(&self) -> TimeDelta {
        self.access_lifetime
    }

    /// How long refresh tokens are valid.
    pub fn refresh_lifetime(&self) -> TimeDelta {
        self.refresh_lifetime
    }

    /// Issues a session for `did` at `now`: an access token with `scope`
    /// and a refresh token with a fresh random id.
    ///
    /// Times are whole seconds, as in the JWTs; `refresh_expires_at` is
    /// exactly the refresh token's `exp`.
    pub fn issue(
        &self,
        did: &Did,
        scope: AccessScope,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> IssuedSession {
        let iat = whole_seconds(now);
        let access_exp = expiry(iat, self.access_lifetime);
        let refresh_exp = expiry(iat, self.refresh_lifetime);
        let refresh_id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());

        let access_jwt = self.sign(
            ACCESS_TOKEN_TYPE,
            &json_object([
                ("scope", Value::from(scope.as_str())),
                ("sub", Value::from(did.as_str())),
                ("aud", Value::from(self.service_did.as_str())),
                ("sid", Value::from(session_id)),
                ("iat", Value::from(iat.timestamp())),
                ("exp", Value::from(access_exp.timestamp())),
            ]),
        );
        let refresh_jwt = self.sign(
            REFRESH_TOKEN_TYPE,
            &json_object([
                ("scope", Value::from(REFRESH_SCOPE)),
                ("sub", Value::from(did.as_str())),
                ("aud", Value::from(self.service_did.as_str())),
                ("jti", Value::from(refresh_id.as_str())),
                ("iat", Value::from(iat.timestamp())),
                ("exp", Value::from(refresh_exp.timestamp())),
            ]),
        );
        IssuedSession {
            access_jwt,
            refresh_jwt,
            refresh_id,
            refresh_expires_at: refresh_exp,
        }
    }

    /// Verifies an access token at `now` and returns its claims.
    ///
    /// Checks, in order: the compact-JWS shape, `alg` exactly `HS256`, the
    /// signature, `typ` `at+jwt`, the claims, `scope` an access scope, `aud`
    /// this service, `exp` not passed and `iat` not in the future.
    pub fn verify_access(&self, jwt: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        #[derive(Deserialize)]
        struct Raw {
            scope: String,
            sub: Did,
            aud: String,
            #[serde(default)]
            sid: Option<String>,
            iat: i64,
            exp: i64,
        }
        let raw: Raw = self.verified_claims(jwt, ACCESS_TOKEN_TYPE)?;
        let scope = AccessScope::from_claim(&raw.scope).ok_or(TokenError::WrongScope {
            expected: "an access scope",
        })?;
        let sid = raw
            .sid
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::Malformed("no session id (sid)"))?;
        let aud = self.check_audience(&raw.aud)?;
        let (iat, exp) = self.check_times(raw.iat, raw.exp, now)?;
        Ok(AccessClaims {
            scope,
            sub: raw.sub,
            sid,
            aud,
            iat,
            exp,
        })
    }

    /// Issues an OAuth access token (an `at+jwt`) for `grant`. Its scope
    /// is not in the token: the resource server reads the session on every
    /// call, so that revocation takes effect at once.
    pub fn issue_oauth_access(&self, grant: &OAuthAccessGrant<'_>) -> String {
        self.sign(
            ACCESS_TOKEN_TYPE,
            &json_object([
                ("iss", Value::from(grant.issuer)),
                ("sub", Value::from(grant.did.as_str())),
                ("aud", Value::from(self.service_did.as_str())),
                ("jti", Value::from(grant.token_id)),
                ("client_id", Value::from(grant.client_id)),
                ("cnf", json_object([("jkt", Value::from(grant.jkt))])),
                (
                    "iat",
                    Value::from(whole_seconds(grant.issued_at).timestamp()),
                ),
                (
                    "exp",
                    Value::from(whole_seconds(grant.expires_at).timestamp()),
                ),
            ]),
        )
    }

    /// Verifies an OAuth access token at `now`: `alg`, signature, `typ`,
    /// `aud` this service, times, and the presence of `jti`, `cnf.jkt` and
    /// `client_id`. A session access token (which has none of those) is
    /// refused, and [`verify_access`](Self::verify_access) refuses OAuth
    /// tokens (which have no `scope`).
    pub fn verify_oauth_access(
        &self,
        jwt: &str,
        now: DateTime<Utc>,
    ) -> Result<OAuthAccessClaims, TokenError> {
        #[derive(Deserialize)]
        struct Cnf {
            jkt: String,
        }
        #[derive(Deserialize)]
        struct Raw {
            sub: Did,
            aud: String,
            jti: String,
            client_id: String,
            cnf: Cnf,
            iat: i64,
            exp: i64,
        }
        let raw: Raw = self.verified_claims(jwt, ACCESS_TOKEN_TYPE)?;
        if raw.jti.is_empty() || raw.cnf.jkt.is_empty() {
            return Err(TokenError::Malformed("empty jti or cnf.jkt"));
        }
        self.check_audience(&raw.aud)?;
        let (_, exp) = self.check_times(raw.iat, raw.exp, now)?;
        Ok(OAuthAccessClaims {
            sub: raw.sub,
            jti: raw.jti,
            jkt: raw.cnf.jkt,
            client_id: raw.client_id,
            exp,
        })
    }

    /// Verifies a refresh token at `now` and returns its claims.
    ///
    /// Checks, in order: the compact-JWS shape, `alg` exactly `HS256`, the
    /// signature, `typ` `refresh+jwt`, the claims, `scope`
    /// `com.atproto.refresh`, `aud` this service, `exp` not passed and `iat`
    /// not in the future. Whether the session still exists (and has not
    /// been rotated) is for the account store to say.
    pub fn verify_refresh(
        &self,
        jwt: &str,
        now: DateTime<Utc>,
    ) -> Result<RefreshClaims, TokenError> {
        #[derive(Deserialize)]
        struct Raw {
            scope: String,
            sub: Did,
            aud: String,
            jti: String,
            iat: i64,
            exp: i64,
        }
        let raw: Raw = self.verified_claims(jwt, REFRESH_TOKEN_TYPE)?;
        if raw.scope != REFRESH_SCOPE {
            return Err(TokenError::WrongScope {
                expected: REFRESH_SCOPE,
            });
        }
        if raw.jti.is_empty() {
            return Err(TokenError::Malformed("empty jti"));
        }
        let aud = self.check_audience(&raw.aud)?;
        let (iat, exp) = self.check_times(raw.iat, raw.exp, now)?;
        Ok(RefreshClaims {
            sub: raw.sub,
            aud,
            jti: raw.jti,
            iat,
            exp,
        })
    }

    /// `header.claims.signature` with header `{"alg":"HS256","typ":typ}`.
    fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = json_object([("alg", Value::from(SESSION_ALG)), ("typ", Value::from(typ))]);
        let signing_input = format!("{}.{}", encode_json(&header), encode_json(claims));
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of `jwt` once its algorithm, signature and type are
    /// checked.
    fn verified_claims<T: serde::de::DeserializeOwned>(
        &self,
        jwt: &str,
        typ: &'static str,
    ) -> Result<T, TokenError> {
        let parts = CompactJws::parse(jwt)?;
        if parts.header.alg != SESSION_ALG {
            return Err(parts.unsupported_alg(SESSION_ALG));
        }
        let mut mac = self.mac.clone();
        mac.update(parts.signing_input.as_bytes());
        // `verify_slice` compares in constant time and rejects other lengths.
        mac.verify_slice(&parts.signature)
            .map_err(|_| TokenError::BadSignature)?;
        if parts.header.typ.as_deref() != Some(typ) {
            return Err(TokenError::WrongType { expected: typ });
        }
        parts.claims()
    }

    /// `aud` as a DID, if it is this service's.
    fn check_audience(&self, aud: &str) -> Result<Did, TokenError> {
        if aud == self.service_did.as_str() {
            Ok(self.service_did.clone())
        } else {
            Err(TokenError::WrongAudience)
        }
    }

    /// `iat` and `exp` as times, if the token is valid at `now`.
    fn check_times(
        &self,
        iat: i64,
        exp: i64,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), TokenError> {
        let iat = timestamp(iat, "iat out of range")?;
        let exp = timestamp(exp, "exp out of range")?;
        check_not_expired(exp, now)?;
        check_issued_before(iat, now, self.clock_leeway)?;
        Ok((iat, exp))
    }
}

/// A new random session id (32 random bytes, base64url): the `sid` of a
/// session's access tokens, kept across refresh-token rotations.
pub fn new_session_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// HMAC-SHA256 keyed with `secret`, built infallibly.
///
/// RFC 2104 §2: a key longer than the hash's block is replaced by its hash,
/// and the key is then zero-padded to the block. That is exactly what
/// `Hmac::new_from_slice` does, but its signature is fallible; building the
/// block ourselves avoids an `unwrap`. A test checks both agree.
pub(crate) fn hmac_sha256(secret: &[u8]) -> HmacSha256 {
    let mut block = [0u8; HMAC_BLOCK_LEN];
    if secret.len() > HMAC_BLOCK_LEN {
        block[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

/// `t` without its fraction of a second.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// `iat + lifetime` in whole seconds, saturating at the end of time.
fn expiry(iat: DateTime<Utc>, lifetime: TimeDelta) -> DateTime<Utc> {
    whole_seconds(
        iat.checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// A JSON object of `entries`, for a header or claims. (Built by hand
/// rather than serialised from a struct, so that it cannot fail.)
pub(super) fn json_object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Map<String, Value>>(),
    )
}

// ---------------------------------------------------------------------------
// Compact JWS, shared with `service_auth`.
// ---------------------------------------------------------------------------

/// base64url (no padding) of the JSON text of `value`.
pub(super) fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The JOSE header fields we look at.
#[derive(Debug, Deserialize)]
pub(super) struct JoseHeader {
    /// The signature algorithm.
    pub(super) alg: String,
    /// The token type, if any.
    #[serde(default)]
    pub(super) typ: Option<String>,
    /// Critical extensions; none is supported, so any makes the token
    /// malformed (RFC 7515 §4.1.11).
    #[serde(default)]
    crit: Option<Value>,
}

/// A compact JWS split into its parts, not yet verified.
#[derive(Debug)]
pub(super) struct CompactJws<'a> {
    /// The decoded header.
    pub(super) header: JoseHeader,
    /// `base64url(header) "." base64url(claims)`, the signed bytes.
    pub(super) signing_input: &'a str,
    /// `base64url(claims)`.
    payload: &'a str,
    /// The decoded signature.
    pub(super) signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Splits `jwt` into exactly three base64url parts and decodes the
    /// header and signature.
    pub(super) fn parse(jwt: &'a str) -> Result<Self, TokenError> {
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
        };
        let header: JoseHeader = decode_json(
            header,
            "header is not base64url",
            "header is not a JSON object with a string alg",
        )?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed("unsupported critical header (crit)"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        // Everything before the last dot: `header "." payload`.
        let signing_input = &jwt[..jwt.len() - signature_b64.len() - 1];
        Ok(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The claims, decoded into `T`.
    pub(super) fn claims<T: serde::de::DeserializeOwned>(&self) -> Result<T, TokenError> {
        decode_json(
            self.payload,
            "claims are not base64url",
            "claims are not a JSON object with the expected fields",
        )
    }

    /// The error for a token whose `alg` is not `expected`.
    pub(super) fn unsupported_alg(&self, expected: &'static str) -> TokenError {
        TokenError::UnsupportedAlgorithm {
            found: self.header.alg.chars().take(32).collect(),
            expected,
        }
    }
}

/// base64url-decodes `part` and parses it as JSON into `T`; the errors
/// say which part was wrong.
///
/// The part must be UTF-8 as a whole (RFC 7519 §7.2): `serde_json` checks
/// the strings it keeps, but not those of members `T` ignores.
fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    not_base64: &'static str,
    bad_json: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(not_base64))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| TokenError::Malformed(bad_json))?;
    serde_json::from_str(text).map_err(|_| TokenError::Malformed(bad_json))
}

/// A JWT `NumericDate` (whole seconds) as a time.
pub(super) fn timestamp(
    secs: i64,
    out_of_range: &'static str,
) -> Result<DateTime<Utc>, TokenError> {
    DateTime::from_timestamp(secs, 0).ok_or(TokenError::Malformed(out_of_range))
}

/// [`TokenError::Expired`] once `now` has reached `exp`.
pub(super) fn check_not_expired(exp: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), TokenError> {
    if now >= exp {
        Err(TokenError::Expired)
    } else {
        Ok(())
    }
}

/// [`TokenError::IssuedInFuture`] if `iat` is more than `leeway` after `now`.
pub(super) fn check_issued_before(
    iat: DateTime<Utc>,
    now: DateTime<Utc>,
    leeway: TimeDelta,
) -> Result<(), TokenError> {
    let latest = now
        .checked_add_signed(leeway)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if iat > latest {
        Err(TokenError::IssuedInFuture)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &[u8] = b"an-example-jwt-secret-of-at-least-32-chars";

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    fn alice() -> Did {
        did("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
    }

    fn tokens() -> SessionTokens {
        SessionTokens::new(SECRET, did("did:web:pds.example.com"))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// A time with a fraction of a second, to check that tokens use whole seconds.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 750_000_000).unwrap()
    }

    /// The decoded JSON of the header and claims of `jwt`.
    fn parts(jwt: &str) -> (Value, Value) {
        let p: Vec<&str> = jwt.split('.').collect();
        assert_eq!(p.len(), 3, "{jwt}");
        let json = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        (json(p[0]), json(p[1]))
    }

    /// A token of `header` and `claims`, HMAC-signed with `secret`.
    fn forge(secret: &[u8], header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", encode_json(header), encode_json(claims));
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// `jwt` with its claims replaced by `claims`, signature unchanged.
    fn with_claims(jwt: &str, claims: &Value) -> String {
        let p: Vec<&str> = jwt.split('.').collect();
        format!("{}.{}.{}", p[0], encode_json(claims), p[2])
    }

    #[test]
    fn sessions_round_trip_for_every_scope() {
        let t = tokens();
        for scope in AccessScope::ALL {
            let s = t.issue(&alice(), scope, "session-1", now());
            let iat = at(1_700_000_000);

            let access = t.verify_access(&s.access_jwt, now()).unwrap();
            assert_eq!(
                access,
                AccessClaims {
                    scope,
                    sub: alice(),
                    aud: did("did:web:pds.example.com"),
                    sid: "session-1".to_owned(),
                    iat,
                    exp: iat + TimeDelta::hours(2),
                }
            );

            let refresh = t.verify_refresh(&s.refresh_jwt, now()).unwrap();
            assert_eq!(
                refresh,
                RefreshClaims {
                    sub: alice(),
                    aud: did("did:web:pds.example.com"),
                    jti: s.refresh_id.clone(),
                    iat,
                    exp: iat + TimeDelta::days(90),
                }
            );
            assert_eq!(s.refresh_expires_at, refresh.exp);
        }
    }

    #[test]
    fn app_password_scopes() {
        assert!(!AccessScope::Access.is_app_password());
        assert!(AccessScope::AppPass.is_app_password());
        assert!(AccessScope::AppPassPrivileged.is_app_password());
        for scope in AccessScope::ALL {
            assert_eq!(AccessScope::from_claim(scope.as_str()), Some(scope));
            assert_eq!(scope.to_string(), scope.as_str());
        }
        assert_eq!(AccessScope::from_claim(REFRESH_SCOPE), None);
        assert_eq!(AccessScope::from_claim("com.atproto.AppPass"), None);

        let t = tokens();
        let s = t.issue(&alice(), AccessScope::AppPassPrivileged, "session-1", now());
        assert_eq!(
            parts(&s.access_jwt).1["scope"],
            "com.atproto.appPassPrivileged"
        );
        let s = t.issue(&alice(), AccessScope::AppPass, "session-1", now());
        assert_eq!(parts(&s.access_jwt).1["scope"], "com.atproto.appPass");
        assert_eq!(
            t.verify_access(&s.access_jwt, now()).unwrap().scope,
            AccessScope::AppPass
        );
    }

    #[test]
    fn header_and_claims_are_the_reference_fields_plus_the_session_id() {
        let s = tokens().issue(&alice(), AccessScope::Access, "session-1", now());
        let (header, claims) = parts(&s.access_jwt);
        assert_eq!(header, json!({"alg": "HS256", "typ": "at+jwt"}));
        assert_eq!(
            claims,
            json!({
                "scope": "com.atproto.access",
                "sub": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "aud": "did:web:pds.example.com",
                "sid": "session-1",
                "iat": 1_700_000_000,
                "exp": 1_700_000_000 + 2 * 3600,
            })
        );

        let (header, claims) = parts(&s.refresh_jwt);
        assert_eq!(header, json!({"alg": "HS256", "typ": "refresh+jwt"}));
        assert_eq!(
            claims,
            json!({
                "scope": "com.atproto.refresh",
                "sub": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "aud": "did:web:pds.example.com",
                "jti": s.refresh_id,
                "iat": 1_700_000_000,
                "exp": 1_700_000_000 + 90 * 86_400,
            })
        );
        // Compact JWS: no padding anywhere, signature is 32 bytes.
        for jwt in [&s.access_jwt, &s.refresh_jwt] {
            assert!(!jwt.contains('='), "{jwt}");
            let sig = jwt.rsplit('.').next().unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 32);
        }
    }

    #[test]
    fn refresh_ids_are_random_32_bytes() {
        let t = tokens();
        let a = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let b = t.issue(&alice(), AccessScope::Access, "session-1", now());
        assert_ne!(a.refresh_id, b.refresh_id);
        assert_ne!(a.refresh_jwt, b.refresh_jwt);
        assert_eq!(a.refresh_id.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a.refresh_id).unwrap().len(), 32);
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        assert_eq!(
            t.verify_access(&s.refresh_jwt, now()),
            Err(TokenError::WrongType { expected: "at+jwt" })
        );
        assert_eq!(
            t.verify_refresh(&s.access_jwt, now()),
            Err(TokenError::WrongType {
                expected: "refresh+jwt"
            })
        );

        // Even with the right typ, the scope must match the kind of token.
        let (_, access_claims) = parts(&s.access_jwt);
        let (_, refresh_claims) = parts(&s.refresh_jwt);
        let refresh_scoped_access = t.sign(ACCESS_TOKEN_TYPE, &refresh_claims);
        assert_eq!(
            t.verify_access(&refresh_scoped_access, now()),
            Err(TokenError::WrongScope {
                expected: "an access scope"
            })
        );
        let mut access_with_jti = access_claims;
        access_with_jti["jti"] = json!("some-id");
        let access_scoped_refresh = t.sign(REFRESH_TOKEN_TYPE, &access_with_jti);
        assert_eq!(
            t.verify_refresh(&access_scoped_refresh, now()),
            Err(TokenError::WrongScope {
                expected: REFRESH_SCOPE
            })
        );

        // A token without typ is neither.
        let (_, claims) = parts(&s.access_jwt);
        let untyped = forge(SECRET, &json!({"alg": "HS256"}), &claims);
        assert_eq!(
            t.verify_access(&untyped, now()),
            Err(TokenError::WrongType { expected: "at+jwt" })
        );
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::AppPass, "session-1", now());

        // Another subject or a better scope, same signature.
        let (_, mut claims) = parts(&s.access_jwt);
        claims["sub"] = json!("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(
            t.verify_access(&with_claims(&s.access_jwt, &claims), now()),
            Err(TokenError::BadSignature)
        );
        let (_, mut claims) = parts(&s.access_jwt);
        claims["scope"] = json!("com.atproto.access");
        assert_eq!(
            t.verify_access(&with_claims(&s.access_jwt, &claims), now()),
            Err(TokenError::BadSignature)
        );
        let (_, mut claims) = parts(&s.refresh_jwt);
        claims["exp"] = json!(4_000_000_000_i64);
        assert_eq!(
            t.verify_refresh(&with_claims(&s.refresh_jwt, &claims), now()),
            Err(TokenError::BadSignature)
        );

        // Every bit of the signature matters; so does its length.
        let (input, sig) = s.access_jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        for i in 0..sig.len() * 8 {
            let mut bad = sig.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(t.verify_access(&jwt, now()), Err(TokenError::BadSignature));
        }
        for bad in [&sig[..31], &[], &[sig.as_slice(), &[0]].concat()[..]] {
            let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(bad));
            assert_eq!(t.verify_access(&jwt, now()), Err(TokenError::BadSignature));
        }
        // Padding or standard-alphabet base64 is not base64url.
        let padded = format!("{}=", s.access_jwt);
        assert!(matches!(
            t.verify_access(&padded, now()),
            Err(TokenError::Malformed(_))
        ));

        // Another secret (another server, or a rotated secret).
        let other = SessionTokens::new(
            b"another-secret-another-secret-another",
            did("did:web:pds.example.com"),
        );
        assert_eq!(
            other.verify_access(&s.access_jwt, now()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            other.verify_refresh(&s.refresh_jwt, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn only_hs256_is_accepted() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let (_, claims) = parts(&s.access_jwt);

        // alg "none" with an empty signature, in any spelling.
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({"alg": alg, "typ": "at+jwt"});
            let jwt = format!("{}.{}.", encode_json(&header), encode_json(&claims));
            assert_eq!(
                t.verify_access(&jwt, now()),
                Err(TokenError::UnsupportedAlgorithm {
                    found: alg.to_owned(),
                    expected: "HS256"
                })
            );
        }
        // Other algorithms, even with a valid HMAC: no algorithm confusion.
        for alg in [
            "HS384", "HS512", "hs256", "HS256 ", "ES256K", "ES256", "RS256", "",
        ] {
            let jwt = forge(SECRET, &json!({"alg": alg, "typ": "at+jwt"}), &claims);
            assert_eq!(
                t.verify_access(&jwt, now()),
                Err(TokenError::UnsupportedAlgorithm {
                    found: alg.to_owned(),
                    expected: "HS256"
                })
            );
        }
        // A missing or non-string alg is malformed.
        for header in [
            json!({"typ": "at+jwt"}),
            json!({"alg": null}),
            json!({"alg": 1}),
        ] {
            let jwt = forge(SECRET, &header, &claims);
            assert!(matches!(
                t.verify_access(&jwt, now()),
                Err(TokenError::Malformed(_))
            ));
        }
        // A long alg is cut short in the error.
        let long = "X".repeat(1000);
        let jwt = forge(SECRET, &json!({"alg": long}), &claims);
        let Err(TokenError::UnsupportedAlgorithm { found, .. }) = t.verify_access(&jwt, now())
        else {
            panic!("expected UnsupportedAlgorithm");
        };
        assert_eq!(found.len(), 32);
    }

    #[test]
    fn critical_headers_are_refused() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let (_, claims) = parts(&s.access_jwt);
        let jwt = forge(
            SECRET,
            &json!({"alg": "HS256", "typ": "at+jwt", "crit": ["b64"], "b64": false}),
            &claims,
        );
        assert_eq!(
            t.verify_access(&jwt, now()),
            Err(TokenError::Malformed("unsupported critical header (crit)"))
        );
        // Unknown, non-critical header fields are fine.
        let jwt = forge(
            SECRET,
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": "1"}),
            &claims,
        );
        assert!(t.verify_access(&jwt, now()).is_ok());
    }

    #[test]
    fn expiry_and_issue_time() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let iat = at(1_700_000_000);
        let access_exp = iat + TimeDelta::hours(2);
        let refresh_exp = iat + TimeDelta::days(90);

        let just_before = access_exp - TimeDelta::milliseconds(1);
        assert!(t.verify_access(&s.access_jwt, just_before).is_ok());
        assert_eq!(
            t.verify_access(&s.access_jwt, access_exp),
            Err(TokenError::Expired)
        );
        assert_eq!(
            t.verify_access(&s.access_jwt, refresh_exp),
            Err(TokenError::Expired)
        );
        // The refresh token outlives the access token, then expires too.
        assert!(t.verify_refresh(&s.refresh_jwt, access_exp).is_ok());
        assert!(
            t.verify_refresh(&s.refresh_jwt, refresh_exp - TimeDelta::seconds(1))
                .is_ok()
        );
        assert_eq!(
            t.verify_refresh(&s.refresh_jwt, refresh_exp),
            Err(TokenError::Expired)
        );

        // Issued in the future: tolerated within the leeway.
        assert!(
            t.verify_access(&s.access_jwt, iat - TimeDelta::seconds(60))
                .is_ok()
        );
        assert_eq!(
            t.verify_access(&s.access_jwt, iat - TimeDelta::seconds(61)),
            Err(TokenError::IssuedInFuture)
        );
        assert_eq!(
            t.verify_refresh(&s.refresh_jwt, iat - TimeDelta::hours(1)),
            Err(TokenError::IssuedInFuture)
        );
        let strict = tokens().with_clock_leeway(TimeDelta::zero());
        assert_eq!(
            strict.verify_access(&s.access_jwt, iat - TimeDelta::seconds(1)),
            Err(TokenError::IssuedInFuture)
        );

        // Timestamps that are not representable are malformed.
        let (_, mut claims) = parts(&s.access_jwt);
        claims["exp"] = json!(i64::MAX);
        assert_eq!(
            t.verify_access(&t.sign(ACCESS_TOKEN_TYPE, &claims), now()),
            Err(TokenError::Malformed("exp out of range"))
        );
        let (_, mut claims) = parts(&s.access_jwt);
        claims["iat"] = json!(1.7e9);
        assert!(matches!(
            t.verify_access(&t.sign(ACCESS_TOKEN_TYPE, &claims), now()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn configured_lifetimes() {
        let t = tokens()
            .with_access_lifetime(TimeDelta::minutes(15))
            .with_refresh_lifetime(TimeDelta::days(7));
        assert_eq!(t.access_lifetime(), TimeDelta::minutes(15));
        assert_eq!(t.refresh_lifetime(), TimeDelta::days(7));
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let iat = at(1_700_000_000);
        assert_eq!(
            t.verify_access(&s.access_jwt, now()).unwrap().exp,
            iat + TimeDelta::minutes(15)
        );
        assert_eq!(s.refresh_expires_at, iat + TimeDelta::days(7));
        assert_eq!(
            t.verify_refresh(&s.refresh_jwt, now()).unwrap().exp,
            s.refresh_expires_at
        );

        // Absurd lifetimes saturate instead of overflowing.
        let forever = tokens().with_refresh_lifetime(TimeDelta::MAX);
        let s = forever.issue(&alice(), AccessScope::Access, "session-1", now());
        assert_eq!(
            s.refresh_expires_at,
            whole_seconds(DateTime::<Utc>::MAX_UTC)
        );
        assert!(forever.verify_refresh(&s.refresh_jwt, now()).is_ok());
    }

    #[test]
    fn wrong_audience_is_rejected() {
        let ours = tokens();
        let theirs = SessionTokens::new(SECRET, did("did:web:other.example.com"));
        assert_eq!(theirs.service_did().as_str(), "did:web:other.example.com");
        let s = theirs.issue(&alice(), AccessScope::Access, "session-1", now());
        assert_eq!(
            ours.verify_access(&s.access_jwt, now()),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            ours.verify_refresh(&s.refresh_jwt, now()),
            Err(TokenError::WrongAudience)
        );
        // An audience array (allowed by RFC 7519) is not what we issue.
        let s = ours.issue(&alice(), AccessScope::Access, "session-1", now());
        let (_, mut claims) = parts(&s.access_jwt);
        claims["aud"] = json!(["did:web:pds.example.com"]);
        assert!(matches!(
            ours.verify_access(&ours.sign(ACCESS_TOKEN_TYPE, &claims), now()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_tokens() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let (_, claims) = parts(&s.access_jwt);
        let header = json!({"alg": "HS256", "typ": "at+jwt"});
        let mut bad_sub = claims.clone();
        bad_sub["sub"] = json!("not a did");
        let mut no_exp = claims.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{}.{}", s.access_jwt, "x"),
            "e30.e30.".into(), // {} . {}
            format!("!!.{}", s.access_jwt.split_once('.').unwrap().1),
            forge(SECRET, &json!("HS256"), &claims),
            forge(SECRET, &header, &json!([1, 2])),
            forge(SECRET, &header, &bad_sub),
            forge(SECRET, &header, &no_exp),
        ];
        for jwt in &cases {
            assert!(
                matches!(t.verify_access(jwt, now()), Err(TokenError::Malformed(_))),
                "{jwt:?}: {:?}",
                t.verify_access(jwt, now())
            );
            assert!(t.verify_refresh(jwt, now()).is_err(), "{jwt:?}");
        }
        // The signature is checked before the claims are read.
        let jwt = format!("{}.e30.AAAA", encode_json(&header));
        assert_eq!(t.verify_access(&jwt, now()), Err(TokenError::BadSignature));
    }

    /// Found by the fuzz campaign (core/fuzz, corpus/jwt/crash-4e0476a7752c84b2):
    /// invalid UTF-8 inside a claim the verifier ignores passed, because
    /// `serde_json` skips such strings without checking them.
    #[test]
    fn header_and_claims_must_be_utf8_even_where_ignored() {
        let t = tokens();
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let (header, claims) = parts(&s.access_jwt);
        let sign = |h: &[u8], c: &[u8]| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(c)
            );
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(SECRET).unwrap();
            mac.update(input.as_bytes());
            format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let (h, c) = (header.to_string(), claims.to_string());
        assert!(
            t.verify_access(&sign(h.as_bytes(), c.as_bytes()), now())
                .is_ok()
        );
        // An unknown member whose string is not UTF-8, in the claims and in
        // the header.
        let mut c_bytes = c.clone().into_bytes();
        c_bytes.splice(1..1, b"\"x\":\"\x90\",".iter().copied());
        let mut h_bytes = h.clone().into_bytes();
        h_bytes.splice(1..1, b"\"x\":\"\xff\",".iter().copied());
        for jwt in [sign(h.as_bytes(), &c_bytes), sign(&h_bytes, c.as_bytes())] {
            assert!(
                matches!(t.verify_access(&jwt, now()), Err(TokenError::Malformed(_))),
                "{:?}",
                t.verify_access(&jwt, now())
            );
        }
    }

    #[test]
    fn infallible_hmac_key_matches_new_from_slice() {
        for len in 0..=200 {
            let secret: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let mut ours = hmac_sha256(&secret);
            let mut theirs = <HmacSha256 as KeyInit>::new_from_slice(&secret).unwrap();
            ours.update(b"message");
            theirs.update(b"message");
            assert_eq!(
                ours.finalize().into_bytes(),
                theirs.finalize().into_bytes(),
                "{len}"
            );
        }
    }

    #[test]
    fn debug_shows_no_secret_and_no_token() {
        let t = tokens();
        let debug = format!("{t:?}");
        assert!(debug.contains("did:web:pds.example.com"), "{debug}");
        assert!(!debug.contains("an-example"), "{debug}");
        let s = t.issue(&alice(), AccessScope::Access, "session-1", now());
        let debug = format!("{s:?}");
        assert!(
            !debug.contains(&s.access_jwt) && !debug.contains(&s.refresh_jwt),
            "{debug}"
        );
        assert!(debug.contains(&s.refresh_id), "{debug}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}", parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,60}", 0..5)) {
            let t = tokens();
            for jwt in [s.clone(), parts.join(".")] {
                prop_assert!(t.verify_access(&jwt, now()).is_err());
                prop_assert!(t.verify_refresh(&jwt, now()).is_err());
                prop_assert!(t.verify_oauth_access(&jwt, now()).is_err());
            }
        }

        #[test]
        fn arbitrary_json_parts_never_panic(header in "\\PC{0,80}", claims in "\\PC{0,120}", sig in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t = tokens();
            let jwt = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(&claims),
                URL_SAFE_NO_PAD.encode(&sig),
            );
            prop_assert!(t.verify_access(&jwt, now()).is_err());
            prop_assert!(t.verify_refresh(&jwt, now()).is_err());
            prop_assert!(t.verify_oauth_access(&jwt, now()).is_err());
        }

        #[test]
        fn validly_signed_arbitrary_claims_never_panic(
            scope in prop_oneof![Just("com.atproto.access".to_owned()), Just(REFRESH_SCOPE.to_owned()), "\\PC{0,20}"],
            sub in prop_oneof![Just("did:plc:ewvi7nxzyoun6zhxrhs64oiz".to_owned()), "\\PC{0,20}"],
            iat in any::<i64>(),
            exp in any::<i64>(),
            typ in prop_oneof![Just(ACCESS_TOKEN_TYPE), Just(REFRESH_TOKEN_TYPE)],
        ) {
            let t = tokens();
            let claims = json!({
                "scope": scope, "sub": sub, "aud": "did:web:pds.example.com",
                "jti": "x", "iat": iat, "exp": exp,
            });
            let jwt = t.sign(typ, &claims);
            let _ = t.verify_access(&jwt, now());
            let _ = t.verify_refresh(&jwt, now());
        }
    }
}
