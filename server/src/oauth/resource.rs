//! The resource server side: XRPC calls made with `Authorization: DPoP
//! <access token>`.
//!
//! A layer in front of the XRPC routes checks the request's DPoP proof
//! against the method, this server's URL for the path, and the token's
//! hash (`ath`); a proof that passes leaves its key's thumbprint in the
//! request as [`VERIFIED_JKT_HEADER`] (any such header the client sent is
//! removed first). The handlers' authentication
//! ([`AccountManager::authenticate`](crate::accounts::AccountManager::authenticate))
//! then checks the token, its binding to that key, and its session.
//! Every answer to a DPoP call carries a fresh `DPoP-Nonce`, and a 401 a
//! `WWW-Authenticate: DPoP` challenge.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{OAuthProvider, www_authenticate};

/// The request header through which the DPoP layer hands the verified
/// proof key's thumbprint to authentication. Never trusted from clients.
pub const VERIFIED_JKT_HEADER: &str = "x-aurora-verified-dpop-jkt";

/// The token of `Authorization: DPoP <token>`, if that is the scheme.
pub fn dpop_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("dpop")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The layer: see the module docs.
pub async fn check_dpop(
    State(provider): State<OAuthProvider>,
    mut req: Request,
    next: Next,
) -> Response {
    req.headers_mut().remove(VERIFIED_JKT_HEADER);
    let Some(token) = dpop_token(req.headers()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let verified = provider.verify_dpop(
        req.headers(),
        req.method().as_str(),
        req.uri().path(),
        Some(&token),
    );
    let mut res = match verified {
        Ok(proof) => match HeaderValue::from_str(&proof.jkt) {
            Ok(jkt) => {
                req.headers_mut().insert(VERIFIED_JKT_HEADER, jkt);
                next.run(req).await
            }
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(e) => {
            let body = serde_json::json!({"error": e.oauth_error(), "message": e.to_string()});
            let mut res = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
            set_challenge(&mut res, e.oauth_error(), &e.to_string());
            res
        }
    };
    if res.status() == StatusCode::UNAUTHORIZED
        && !res.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        set_challenge(
            &mut res,
            "invalid_token",
            "the access token was not accepted",
        );
    }
    let headers = res.headers_mut();
    if let Ok(nonce) = HeaderValue::from_str(&provider.dpop_nonce()) {
        headers.insert("dpop-nonce", nonce);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    headers.append(header::VARY, HeaderValue::from_static("Authorization"));
    res
}

fn set_challenge(res: &mut Response, code: &str, description: &str) {
    if let Ok(value) = HeaderValue::from_str(&www_authenticate(code, description)) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
}
