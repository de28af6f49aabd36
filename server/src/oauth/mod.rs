//! The ATProto OAuth authorization server, and the resource-server side of
//! OAuth for every XRPC call.
//!
//! - [`endpoints`]: the discovery documents, pushed authorization requests
//!   (`/oauth/par`), the token endpoint (`/oauth/token`: code exchange and
//!   refresh with rotation) and revocation (`/oauth/revoke`);
//! - [`page`]: the server-rendered sign-in and consent page
//!   (`/oauth/authorize`);
//! - [`account_page`]: `/oauth/account`, where users see and revoke the
//!   OAuth sessions of their accounts and the browsers they are signed in on;
//! - [`clients`]: client metadata, fetched from the `client_id` URL through
//!   a fetch that only reaches public addresses, and cached;
//! - [`resource`]: `Authorization: DPoP` on XRPC calls.
//!
//! The protocol pieces (DPoP proofs and nonces, client metadata rules,
//! client assertions, PKCE, scopes) are in the `aurora-oauth` crate; the
//! state is in the core [`OAuthStore`](aurora_core::store::OAuthStore).

mod account_page;
mod clients;
mod endpoints;
mod page;
pub mod resource;

use std::sync::Arc;
use std::time::SystemTime;

use aurora_core::PdsContext;
use aurora_oauth::client_auth::ClientAssertions;
use aurora_oauth::dpop::{DpopError, DpopVerifier, Nonces, ProofTarget, VerifiedProof};
use aurora_oauth::metadata::{Issuer, IssuerError};
use axum::Router;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use hmac::Mac as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest as _, Sha256};

use crate::accounts::AccountDeps;

pub use clients::ClientFetchSettings;

/// How long a pushed request waits for the user (and each visit to the
/// sign-in page extends it by as much).
pub const REQUEST_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// How long an authorization code may wait to be exchanged.
pub const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// How long an access token lives. The profile asks for under 30 minutes;
/// ours are also revocable at once (the session is read on every call).
pub const ACCESS_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// A public client's session ends this long after sign-in, refreshed or
/// not, and its refresh token after as long unused (the profile's two
/// weeks).
pub const PUBLIC_SESSION_LIFETIME: TimeDelta = TimeDelta::days(14);
/// A confidential client's session lifetime.
pub const CONFIDENTIAL_SESSION_LIFETIME: TimeDelta = TimeDelta::days(365);
/// How long a confidential client's refresh token may go unused.
pub const CONFIDENTIAL_REFRESH_IDLE: TimeDelta = TimeDelta::days(90);
/// How long an account remembered on a device may approve requests
/// without typing its password again.
pub const DEVICE_LOGIN_LIFETIME: TimeDelta = TimeDelta::days(7);
/// The `request_uri` prefix of pushed requests (RFC 9126).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The authorization server: its issuer, DPoP verifier, client registry
/// and the account dependencies it signs tokens with. Cheap to clone.
#[derive(Clone)]
pub struct OAuthProvider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Issuer,
    dpop: DpopVerifier,
    assertions: ClientAssertions,
    clients: clients::ClientRegistry,
    deps: Arc<AccountDeps>,
    /// Keys the CSRF tokens of the sign-in page.
    page_secret: [u8; 32],
    /// Whether cookies get `Secure` (an `https` issuer).
    secure_cookies: bool,
}

impl std::fmt::Debug for OAuthProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProvider")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// A key derived from the server's JWT secret for one purpose, so that
/// every node sharing the secret agrees on nonces and CSRF tokens.
fn derived_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = crate::auth::tokens::hmac_sha256(secret);
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

impl OAuthProvider {
    /// The authorization server of the PDS at `public_url`, signing with
    /// `deps`' session tokens; nonces and page tokens are keyed from
    /// `jwt_secret`.
    pub fn new(
        public_url: &str,
        jwt_secret: &[u8],
        deps: Arc<AccountDeps>,
        fetch: &ClientFetchSettings,
    ) -> Result<Self, OAuthSetupError> {
        let issuer = Issuer::from_public_url(public_url)?;
        let secure_cookies = issuer.as_str().starts_with("https://");
        let clients = clients::ClientRegistry::new(fetch)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dpop: DpopVerifier::new(Nonces::new(derived_key(jwt_secret, "oauth dpop nonce"))),
                assertions: ClientAssertions::new(issuer.as_str()),
                issuer,
                clients,
                deps,
                page_secret: derived_key(jwt_secret, "oauth page csrf"),
                secure_cookies,
            }),
        })
    }

    /// The issuer (this server's origin).
    pub fn issuer(&self) -> &Issuer {
        &self.inner.issuer
    }

    /// The DPoP nonce to hand out now.
    pub fn dpop_nonce(&self) -> String {
        self.inner.dpop.nonces().current(SystemTime::now())
    }

    /// Verifies the `DPoP` header of a request to `path` (on this server)
    /// made with `method`, with the access token it carries, if any.
    pub(crate) fn verify_dpop(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        access_token: Option<&str>,
    ) -> Result<VerifiedProof, DpopError> {
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(DpopError::Missing);
        };
        let proof = proof
            .to_str()
            .map_err(|_| DpopError::Invalid("the DPoP header is not text".to_owned()))?;
        let url = url::Url::parse(&self.inner.issuer.endpoint(path))
            .map_err(|e| DpopError::Mismatch(e.to_string()))?;
        self.inner.dpop.verify(
            proof,
            &ProofTarget {
                method,
                url: &url,
                access_token,
            },
            SystemTime::now(),
        )
    }

    /// The OAuth routes: discovery documents, PAR, the sign-in page, token
    /// and revocation endpoints.
    pub fn routes(&self, ctx: PdsContext) -> Router {
        endpoints::routes(OAuthState {
            ctx,
            provider: self.clone(),
        })
    }
}

/// What the OAuth handlers share.
#[derive(Clone)]
pub(crate) struct OAuthState {
    pub(crate) ctx: PdsContext,
    pub(crate) provider: OAuthProvider,
}

/// Why the authorization server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OAuthSetupError {
    /// The public URL is not a valid issuer.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The HTTP client for client metadata could not be built.
    #[error("cannot build the client metadata fetcher: {0}")]
    Http(String),
    /// A registered client's metadata document is invalid.
    #[error("invalid registered client metadata: {0}")]
    Client(String),
}

/// An OAuth error answer: `{"error", "error_description"}` with its status
/// (400, or 401 with `WWW-Authenticate` for DPoP and token errors).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    pub(crate) fn bad(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad("invalid_request", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad("invalid_grant", description)
    }

    pub(crate) fn server_error(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "oauth: {what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal server error",
        )
    }

    /// A DPoP failure at the authorization server: `use_dpop_nonce` is a
    /// 400 the client retries; a bad proof is 401.
    pub(crate) fn dpop(e: &DpopError) -> Self {
        let status = match e {
            DpopError::UseNonce => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.oauth_error(), e.to_string())
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let value = www_authenticate(self.code, &self.description);
            if let Ok(value) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        res
    }
}

/// `WWW-Authenticate: DPoP ...` for an error `code`.
pub(crate) fn www_authenticate(code: &str, description: &str) -> String {
    let description: String = description
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect();
    format!(
        "DPoP algs=\"{}\", error=\"{code}\", error_description=\"{description}\"",
        aurora_oauth::dpop::SIGNING_ALGS.join(" ")
    )
}

impl From<aurora_core::store::StoreError> for OAuthError {
    fn from(e: aurora_core::store::StoreError) -> Self {
        Self::server_error("storage failed", &e)
    }
}

/// A random identifier: `prefix` and `bytes` (at most 32) random bytes in
/// hex.
pub(crate) fn random_id(prefix: &str, bytes: usize) -> String {
    let raw: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(&raw[..bytes.min(32)]))
}

/// How refresh tokens are stored: their SHA-256, base64url.
pub(crate) fn refresh_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A request or session's client authentication, as stored: the method,
/// and for `private_key_jwt` the thumbprint of the key that signed.
pub(crate) fn client_auth_record(key_thumbprint: Option<&str>) -> String {
    match key_thumbprint {
        Some(jkt) => serde_json::json!({"method": "private_key_jwt", "jkt": jkt}).to_string(),
        None => serde_json::json!({"method": "none"}).to_string(),
    }
}

/// Seconds, for `expires_in`.
pub(crate) fn seconds(d: TimeDelta) -> i64 {
    d.num_seconds().max(0)
}
