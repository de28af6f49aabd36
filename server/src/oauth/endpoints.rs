//! The authorization server's endpoints: discovery, PAR, token, revocation.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aurora_core::store::{
    AccountLookup, AccountStatus, OAuthRequest, OAuthRotation, OAuthSession, RefreshTokenState,
};
use aurora_core::syntax::Did;
use aurora_oauth::client::{ClientMetadata, TokenEndpointAuth};
use aurora_oauth::dpop::VerifiedProof;
use aurora_oauth::scope::Scopes;
use aurora_oauth::{metadata, pkce};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{
    ACCESS_TOKEN_LIFETIME, CONFIDENTIAL_REFRESH_IDLE, CONFIDENTIAL_SESSION_LIFETIME, OAuthError,
    OAuthState, PUBLIC_SESSION_LIFETIME, REQUEST_LIFETIME, REQUEST_URI_PREFIX, client_auth_record,
    random_id, refresh_hash, seconds,
};
use crate::auth::tokens::OAuthAccessGrant;

pub(super) fn routes(state: OAuthState) -> Router {
    let oauth = Router::new()
        .route("/oauth/par", post(par))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route(
            "/oauth/authorize",
            get(super::page::authorize).post(super::page::decide),
        )
        .route(
            "/oauth/account",
            get(super::account_page::show).post(super::account_page::act),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            no_store_with_nonce,
        ));
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(authorization_server_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(protected_resource_metadata),
        )
        .merge(oauth)
        .with_state(state)
}

/// Every OAuth endpoint's answer is private and fresh, and carries the
/// DPoP nonce to use next.
async fn no_store_with_nonce(
    State(state): State<OAuthState>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(nonce) = HeaderValue::from_str(&state.provider.dpop_nonce()) {
        headers.insert("dpop-nonce", nonce);
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        // The sign-in pages load nothing, run no script, and may not be
        // framed (a framed consent page invites clickjacking). No
        // form-action: the approval's redirect goes to the app.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    res
}

async fn authorization_server_metadata(State(state): State<OAuthState>) -> Response {
    discovery(metadata::authorization_server(state.provider.issuer()))
}

async fn protected_resource_metadata(State(state): State<OAuthState>) -> Response {
    discovery(metadata::protected_resource(state.provider.issuer()))
}

fn discovery(document: Value) -> Response {
    let mut res = Json(document).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// Form parameters; a parameter given twice is an error (RFC 6749 §3.1).
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    pub(super) fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut map = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} was given more than once"
                )));
            }
        }
        Ok(Self(map))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }
}

/// The form body of a request, which must be `x-www-form-urlencoded`.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Params::parse(body)
}

/// Authenticates the client of a PAR, token or revocation request: public
/// clients send no credentials; confidential ones a `private_key_jwt`
/// assertion, whose key must not be the DPoP key. Returns the stored form
/// of the authentication.
async fn authenticate_client(
    state: &OAuthState,
    client: &ClientMetadata,
    params: &Params,
    proof: Option<&VerifiedProof>,
) -> Result<String, OAuthError> {
    let assertion = params.get("client_assertion");
    match client.auth {
        TokenEndpointAuth::None => {
            if assertion.is_some() || params.get("client_secret").is_some() {
                return Err(OAuthError::bad(
                    "invalid_client",
                    "this client is registered as public (token_endpoint_auth_method none)",
                ));
            }
            Ok(client_auth_record(None))
        }
        TokenEndpointAuth::PrivateKeyJwt => {
            let assertion = assertion.ok_or_else(|| {
                OAuthError::invalid_request("client_assertion is required for this client")
            })?;
            let kind = params.require("client_assertion_type")?;
            let jwks = state.provider.inner.clients.jwks(client).await?;
            let thumbprint = state
                .provider
                .inner
                .assertions
                .verify(&client.client_id, &jwks, kind, assertion, SystemTime::now())
                .map_err(|e| OAuthError::bad(e.oauth_error(), e.to_string()))?;
            if proof.is_some_and(|p| p.jkt == thumbprint) {
                return Err(OAuthError::invalid_request(
                    "the DPoP key must differ from the client authentication key",
                ));
            }
            Ok(client_auth_record(Some(&thumbprint)))
        }
    }
}

/// The authorization request parameters kept with a pushed request.
pub(super) fn stored_parameters(params: &Params, redirect_uri: &str, scope: &str) -> Value {
    let mut out = serde_json::Map::new();
    for name in [
        "state",
        "code_challenge",
        "login_hint",
        "response_mode",
        "prompt",
    ] {
        if let Some(v) = params.get(name) {
            out.insert(name.to_owned(), Value::from(v));
        }
    }
    out.insert("redirect_uri".to_owned(), Value::from(redirect_uri));
    out.insert("scope".to_owned(), Value::from(scope));
    Value::Object(out)
}

/// Checks the scope a client asks for: `atproto` is required, and every
/// entry must be one the client's metadata declares.
fn check_requested_scope(client: &ClientMetadata, scope: &str) -> Result<String, OAuthError> {
    let allowed: Vec<&str> = client.scope.split(' ').collect();
    let mut seen: Vec<&str> = Vec::new();
    for entry in scope.split(' ').filter(|e| !e.is_empty()) {
        if !allowed.contains(&entry) {
            return Err(OAuthError::bad(
                "invalid_scope",
                format!("scope {entry:?} is not declared in the client metadata"),
            ));
        }
        if !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    if !seen.contains(&"atproto") {
        return Err(OAuthError::bad(
            "invalid_scope",
            "the atproto scope is required",
        ));
    }
    Ok(seen.join(" "))
}

/// `response_mode`, `prompt`, and the OpenID Connect parameters we do
/// not support.
fn check_optional_parameters(params: &Params) -> Result<(), OAuthError> {
    if params
        .get("response_mode")
        .is_some_and(|m| m != "query" && m != "fragment")
    {
        return Err(OAuthError::invalid_request(
            "response_mode must be query or fragment",
        ));
    }
    if params
        .get("prompt")
        .is_some_and(|p| !matches!(p, "none" | "login" | "consent" | "select_account"))
    {
        return Err(OAuthError::invalid_request("unsupported prompt"));
    }
    for unsupported in ["nonce", "claims", "id_token_hint"] {
        if params.get(unsupported).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the OpenID Connect parameter {unsupported} is not supported"
            )));
        }
    }
    Ok(())
}

/// The common start of PAR and token requests: the DPoP proof for `path`,
/// the form, the client's metadata, and its authentication.
async fn client_request(
    state: &OAuthState,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<
    (
        VerifiedProof,
        Params,
        std::sync::Arc<ClientMetadata>,
        String,
    ),
    OAuthError,
> {
    let proof = state
        .provider
        .verify_dpop(headers, "POST", path, None)
        .map_err(|e| OAuthError::dpop(&e))?;
    let params = form(headers, body)?;
    let client = state
        .provider
        .inner
        .clients
        .metadata(params.require("client_id")?)
        .await?;
    let client_auth = authenticate_client(state, &client, &params, Some(&proof)).await?;
    Ok((proof, params, client, client_auth))
}

/// `POST /oauth/par`: a pushed authorization request.
async fn par(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    let (proof, params, client, client_auth) =
        client_request(&state, &headers, &body, "/oauth/par").await?;
    if params.get("request").is_some() || params.get("request_uri").is_some() {
        return Err(OAuthError::invalid_request(
            "request objects and request_uri are not accepted at the PAR endpoint",
        ));
    }
    if params.require("response_type")? != "code" {
        return Err(OAuthError::bad(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    pkce::check_challenge(
        params.require("code_challenge")?,
        params.get("code_challenge_method"),
    )
    .map_err(|e| OAuthError::bad(e.oauth_error(), e.to_string()))?;
    params.require("state")?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) => uri.to_owned(),
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => return Err(OAuthError::invalid_request("redirect_uri is required")),
        },
    };
    if !client.redirect_uri_allowed(&redirect_uri) {
        return Err(OAuthError::bad(
            "invalid_request",
            "redirect_uri is not one the client registered",
        ));
    }
    let scope = check_requested_scope(&client, params.require("scope")?)?;
    if let Some(jkt) = params.get("dpop_jkt")
        && jkt != proof.jkt
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            "dpop_jkt does not match the DPoP proof's key",
        ));
    }
    check_optional_parameters(&params)?;
    let now = Utc::now();
    // Requests nobody finished go now and then.
    state.ctx.oauth.delete_expired_oauth_requests(now).await?;
    let request = OAuthRequest {
        id: random_id("req-", 16),
        client_id: client.client_id.clone(),
        client_auth,
        dpop_jkt: proof.jkt,
        parameters: stored_parameters(&params, &redirect_uri, &scope).to_string(),
        device_id: None,
        did: None,
        code: None,
        expires_at: now + REQUEST_LIFETIME,
    };
    state.ctx.oauth.create_oauth_request(&request).await?;
    let request_uri = format!(
        "{REQUEST_URI_PREFIX}{}",
        url::form_urlencoded::byte_serialize(request.id.as_bytes()).collect::<String>()
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "request_uri": request_uri,
            "expires_in": seconds(REQUEST_LIFETIME),
        })),
    )
        .into_response())
}

/// How long a client's sessions and refresh tokens live.
fn lifetimes(client: &ClientMetadata) -> (chrono::TimeDelta, chrono::TimeDelta) {
    match client.auth {
        TokenEndpointAuth::PrivateKeyJwt => {
            (CONFIDENTIAL_SESSION_LIFETIME, CONFIDENTIAL_REFRESH_IDLE)
        }
        TokenEndpointAuth::None => (PUBLIC_SESSION_LIFETIME, PUBLIC_SESSION_LIFETIME),
    }
}

/// `POST /oauth/token`.
async fn token(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    let (proof, params, client, client_auth) =
        client_request(&state, &headers, &body, "/oauth/token").await?;
    let session = match params.require("grant_type")? {
        "authorization_code" => {
            exchange_code(&state, &client, &client_auth, &proof, &params).await?
        }
        "refresh_token" => {
            if !client.refresh_tokens {
                return Err(OAuthError::invalid_grant(
                    "this client may not use refresh tokens",
                ));
            }
            refresh(&state, &client, &client_auth, &proof, &params).await?
        }
        other => {
            return Err(OAuthError::bad(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            ));
        }
    };
    Ok(Json(token_response(&state, &client, &session.0, &session.1)).into_response())
}

/// The token response for `session`, whose current refresh token is
/// `refresh_token`.
fn token_response(
    state: &OAuthState,
    client: &ClientMetadata,
    session: &OAuthSession,
    refresh_token: &str,
) -> Value {
    let now = Utc::now();
    let access_token = state
        .provider
        .inner
        .deps
        .tokens
        .issue_oauth_access(&OAuthAccessGrant {
            issuer: state.provider.issuer().as_str(),
            did: &session.did,
            token_id: &session.token_id,
            client_id: &session.client_id,
            jkt: &session.dpop_jkt,
            issued_at: now,
            expires_at: session.expires_at,
        });
    let mut out = json!({
        "access_token": access_token,
        "token_type": "DPoP",
        "expires_in": seconds(session.expires_at - now),
        "scope": session.scope,
        "sub": session.did.as_str(),
    });
    if client.refresh_tokens {
        out["refresh_token"] = Value::from(refresh_token);
    }
    out
}

/// When an access token issued at `now` expires: its lifetime, or the end
/// of the session if that comes first.
fn access_expiry(
    client: &ClientMetadata,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let (session_lifetime, _) = lifetimes(client);
    (now + ACCESS_TOKEN_LIFETIME).min(created_at + session_lifetime)
}

async fn exchange_code(
    state: &OAuthState,
    client: &ClientMetadata,
    client_auth: &str,
    proof: &VerifiedProof,
    params: &Params,
) -> Result<(OAuthSession, String), OAuthError> {
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    let verifier = params.require("code_verifier")?;
    let store = &state.ctx.oauth;
    let Some(request) = store.take_oauth_request_by_code(code).await? else {
        // A code used twice: the session it made ends too (RFC 6749 §4.1.2).
        if let Some(session) = store.oauth_session_by_code(code).await? {
            store.delete_oauth_session(&session.id).await?;
            tracing::warn!(client = %session.client_id, "oauth: an authorization code was replayed; its session was revoked");
        }
        return Err(OAuthError::invalid_grant("Invalid code"));
    };
    let now = Utc::now();
    if request.expires_at < now {
        return Err(OAuthError::invalid_grant("This code has expired"));
    }
    if request.client_id != client.client_id || request.client_auth != client_auth {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client, or with other client authentication",
        ));
    }
    if request.dpop_jkt != proof.jkt {
        return Err(OAuthError::invalid_grant(
            "the DPoP key differs from the one the request was made with",
        ));
    }
    let parameters: Value = serde_json::from_str(&request.parameters)
        .map_err(|e| OAuthError::server_error("a stored request is corrupt", &e))?;
    let text = |name: &str| {
        parameters
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if text("redirect_uri") != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    pkce::verify(text("code_challenge"), verifier)
        .map_err(|e| OAuthError::bad(e.oauth_error(), e.to_string()))?;
    let did = request
        .did
        .clone()
        .ok_or_else(|| OAuthError::invalid_grant("Invalid code"))?;
    active_account(state, &did).await?;
    let refresh_token = random_id("ref-", 32);
    let session = OAuthSession {
        id: random_id("ses-", 16),
        did,
        client_id: client.client_id.clone(),
        client_auth: client_auth.to_owned(),
        dpop_jkt: proof.jkt.clone(),
        scope: text("scope").to_owned(),
        device_id: request.device_id.clone(),
        code: code.to_owned(),
        token_id: random_id("tok-", 16),
        refresh_hash: refresh_hash(&refresh_token),
        created_at: now,
        updated_at: now,
        expires_at: access_expiry(client, now, now),
    };
    store.create_oauth_session(&session).await?;
    Ok((session, refresh_token))
}

/// Fails unless `did` is an account that may use OAuth sessions.
async fn active_account(state: &OAuthState, did: &Did) -> Result<(), OAuthError> {
    let account = state
        .ctx
        .accounts
        .get_account(AccountLookup::Did(did))
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the account no longer exists"))?;
    match account.status {
        AccountStatus::Active => Ok(()),
        _ => Err(OAuthError::invalid_grant(format!(
            "the account is {}",
            account.status
        ))),
    }
}

async fn refresh(
    state: &OAuthState,
    client: &ClientMetadata,
    client_auth: &str,
    proof: &VerifiedProof,
    params: &Params,
) -> Result<(OAuthSession, String), OAuthError> {
    let presented = params.require("refresh_token")?;
    let store = &state.ctx.oauth;
    let Some((session, token_state)) = store
        .oauth_session_by_refresh(&refresh_hash(presented))
        .await?
    else {
        return Err(OAuthError::invalid_grant("Invalid refresh token"));
    };
    if token_state == RefreshTokenState::Used {
        store.delete_oauth_session(&session.id).await?;
        tracing::warn!(client = %session.client_id, "oauth: a refresh token was replayed; its session was revoked");
        return Err(OAuthError::invalid_grant("Refresh token replayed"));
    }
    if session.client_id != client.client_id {
        // Someone else's token: not a reason to end the owner's session.
        return Err(OAuthError::invalid_grant("Invalid refresh token"));
    }
    let now = Utc::now();
    let (session_lifetime, refresh_idle) = lifetimes(client);
    let failure = if session.client_auth != client_auth {
        Some("the client authenticated differently than when the session began")
    } else if session.dpop_jkt != proof.jkt {
        Some("the DPoP key differs from the session's")
    } else if now - session.created_at > session_lifetime {
        Some("Session expired")
    } else if now - session.updated_at > refresh_idle {
        Some("Refresh token expired")
    } else {
        None
    };
    if let Some(why) = failure {
        store.delete_oauth_session(&session.id).await?;
        return Err(OAuthError::invalid_grant(why));
    }
    active_account(state, &session.did).await?;
    // Scopes the client no longer declares are dropped.
    let declared: Vec<&str> = client.scope.split(' ').collect();
    let scope = session
        .scope
        .split(' ')
        .filter(|s| declared.contains(s))
        .collect::<Vec<_>>()
        .join(" ");
    if !Scopes::parse(&scope).atproto {
        store.delete_oauth_session(&session.id).await?;
        return Err(OAuthError::invalid_grant(
            "the client no longer declares the atproto scope",
        ));
    }
    let refresh_token = random_id("ref-", 32);
    let next = OAuthRotation {
        token_id: random_id("tok-", 16),
        refresh_hash: refresh_hash(&refresh_token),
        scope,
        updated_at: now,
        expires_at: access_expiry(client, session.created_at, now),
    };
    let rotated = store
        .rotate_oauth_session(&session.id, &session.refresh_hash, &next)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("Refresh token replayed"))?;
    Ok((rotated, refresh_token))
}

/// `POST /oauth/revoke` (RFC 7009): ends the session an access or refresh
/// token belongs to, if it is the calling client's. Unknown tokens are not
/// an error.
async fn revoke(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    let proof = match state
        .provider
        .verify_dpop(&headers, "POST", "/oauth/revoke", None)
    {
        Ok(proof) => Some(proof),
        Err(aurora_oauth::dpop::DpopError::Missing) => None,
        Err(e) => return Err(OAuthError::dpop(&e)),
    };
    let params = form(&headers, &body)?;
    let client = state
        .provider
        .inner
        .clients
        .metadata(params.require("client_id")?)
        .await?;
    authenticate_client(&state, &client, &params, proof.as_ref()).await?;
    let token = params.require("token")?;
    let store = &state.ctx.oauth;
    let session = match store.oauth_session_by_refresh(&refresh_hash(token)).await? {
        Some((session, _)) => Some(session),
        None => match state
            .provider
            .inner
            .deps
            .tokens
            .verify_oauth_access(token, Utc::now())
        {
            Ok(claims) => store.oauth_session_by_token(&claims.jti).await?,
            Err(_) => None,
        },
    };
    if let Some(session) = session
        && session.client_id == client.client_id
    {
        store.delete_oauth_session(&session.id).await?;
    }
    Ok(Json(json!({})).into_response())
}
