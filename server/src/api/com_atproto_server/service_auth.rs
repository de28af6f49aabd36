//! `getServiceAuth`: a short-lived JWT, signed with the account's repo
//! key, with which another service (an app view, a feed generator, a new
//! PDS during migration) can authenticate the account.

use aurora_core::XrpcError;
use aurora_core::syntax::{Did, Nsid};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccessPolicy, AccountManager};
use crate::auth::service_auth::create_service_jwt;
use crate::auth::tokens::AccessScope;
use crate::proxy::PROTECTED_METHODS;
use crate::xrpc::{ApiError, Params};

/// Longest lifetime of a token bound to a method.
const MAX_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// Longest lifetime of a token not bound to a method.
const MAX_UNBOUND_LIFETIME: TimeDelta = TimeDelta::seconds(60);

/// Methods that manage the account itself: app-password sessions may not
/// obtain tokens for them. The proxy's protected methods, and these.
const ALSO_PROTECTED_METHODS: &[&str] = &[
    "com.atproto.identity.submitPlcOperation",
    "com.atproto.server.createAccount",
    "com.atproto.server.deleteAccount",
];

#[derive(Deserialize)]
pub(super) struct ServiceAuthParams {
    aud: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    lxm: Option<String>,
}

fn bad_expiration(message: &str) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "BadExpiration", message)
}

pub(super) async fn get_service_auth(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Params(params): Params<ServiceAuthParams>,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::SCOPED_DEACTIVATED_OK)
        .await?;
    auth.require_rpc(params.lxm.as_deref().unwrap_or("*"), &params.aud)?;
    // `aud` is a DID, optionally with a service `#fragment`.
    let aud_did = params.aud.split('#').next().unwrap_or_default();
    Did::parse(aud_did)
        .map_err(|e| XrpcError::invalid_request(format!("aud is not a DID: {e}")))?;
    let lxm = params
        .lxm
        .as_deref()
        .map(|l| {
            Nsid::parse(l)
                .map_err(|e| XrpcError::invalid_request(format!("lxm is not an NSID: {e}")))
        })
        .transpose()?;
    let now = Utc::now();
    let exp = match params.exp {
        Some(secs) => DateTime::<Utc>::from_timestamp(secs, 0)
            .ok_or_else(|| bad_expiration("exp is out of range"))?,
        None => now + MAX_UNBOUND_LIFETIME,
    };
    if exp <= now {
        return Err(bad_expiration("expiration is in the past").into());
    }
    let lifetime = exp - now;
    if lifetime > MAX_LIFETIME {
        return Err(bad_expiration("expiration is too far in the future: at most one hour").into());
    }
    if lxm.is_none() && lifetime > MAX_UNBOUND_LIFETIME + TimeDelta::seconds(1) {
        return Err(bad_expiration("a token without lxm may live at most 60 seconds").into());
    }
    if auth.scope.is_app_password() {
        let method = lxm.as_ref().map(Nsid::as_str);
        let protected = method
            .is_none_or(|m| PROTECTED_METHODS.contains(&m) || ALSO_PROTECTED_METHODS.contains(&m));
        if protected {
            return Err(XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "app password sessions can only request tokens for a specific, unprotected method",
            )
            .into());
        }
        if method.is_some_and(|m| m.starts_with("chat.bsky."))
            && auth.scope != AccessScope::AppPassPrivileged
        {
            return Err(XrpcError::invalid_request(
                "this app password cannot request tokens for direct messages",
            )
            .into());
        }
    }
    let key = m.signing_key(auth.did()).await?;
    let token = create_service_jwt(&key, auth.did(), &params.aud, lxm.as_ref(), exp, now);
    Ok(Json(json!({ "token": token })))
}
