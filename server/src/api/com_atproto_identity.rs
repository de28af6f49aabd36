//! `com.atproto.identity.*`: handles and the DID document.

use std::collections::BTreeMap;

use aurora_core::identity::plc::{Service, SignedOperation};
use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use aurora_core::store::AccountLookup;
use aurora_core::syntax::{AtIdentifier, Did};
use aurora_core::{XrpcError, XrpcRoute};
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::identity::PlcOperationChanges;
use crate::accounts::{AccessPolicy, AccountManager, handle};
use crate::identity::IdentityError;
use crate::xrpc::{ApiError, Input, Params, route};

pub(crate) fn routes(m: &AccountManager) -> Vec<XrpcRoute> {
    vec![
        route(
            "com.atproto.identity.resolveHandle",
            Query,
            get(resolve_handle).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.resolveDid",
            Query,
            get(resolve_did).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.resolveIdentity",
            Query,
            get(resolve_identity).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.refreshIdentity",
            Procedure,
            post(refresh_identity).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.updateHandle",
            Procedure,
            post(update_handle).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.getRecommendedDidCredentials",
            Query,
            get(get_recommended_did_credentials).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.requestPlcOperationSignature",
            Procedure,
            post(request_plc_operation_signature).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.signPlcOperation",
            Procedure,
            post(sign_plc_operation).with_state(m.clone()),
        ),
        route(
            "com.atproto.identity.submitPlcOperation",
            Procedure,
            post(submit_plc_operation).with_state(m.clone()),
        ),
    ]
}

#[derive(Deserialize)]
struct HandleParams {
    handle: String,
}

fn handle_not_found() -> XrpcError {
    XrpcError::new(
        StatusCode::BAD_REQUEST,
        "HandleNotFound",
        "Unable to resolve handle",
    )
}

async fn resolve_handle(
    State(m): State<AccountManager>,
    Params(params): Params<HandleParams>,
) -> Result<Json<Value>, ApiError> {
    let handle = handle::parse(&params.handle)?;
    if let Some(account) = m
        .context()
        .accounts
        .get_account(AccountLookup::Handle(&handle))
        .await?
    {
        return Ok(Json(json!({ "did": account.did })));
    }
    // A handle under our own domains that we do not host does not exist.
    if handle::hosted_domain(&handle, &m.settings().user_domains).is_some() {
        return Err(handle_not_found().into());
    }
    let did = m
        .resolve_handle_remote(&handle)
        .await?
        .ok_or_else(handle_not_found)?;
    Ok(Json(json!({ "did": did })))
}

/// A resolution failure as the lexicon names it (400), or 502 when no
/// answer could be had.
fn identity_error(e: &IdentityError) -> XrpcError {
    match e.lexicon_error() {
        Some(name) => XrpcError::new(StatusCode::BAD_REQUEST, name, e.to_string()),
        None => crate::accounts::identity::resolution_unavailable(e),
    }
}

#[derive(Deserialize)]
struct DidParams {
    did: String,
}

async fn resolve_did(
    State(m): State<AccountManager>,
    Params(params): Params<DidParams>,
) -> Result<Json<Value>, ApiError> {
    let did = Did::parse(params.did.as_str())
        .map_err(|e| XrpcError::invalid_request(format!("invalid did: {e}")))?;
    let doc = m
        .resolver()
        .resolve_did(&did)
        .await
        .map_err(|e| identity_error(&e))?;
    Ok(Json(json!({ "didDoc": doc.raw() })))
}

#[derive(Deserialize)]
struct IdentifierParams {
    identifier: String,
}

/// `identityInfo`: the DID, its handle when verified both ways
/// (`handle.invalid` otherwise), and the DID document.
async fn identity_info(
    m: &AccountManager,
    identifier: &str,
    fresh: bool,
) -> Result<Value, XrpcError> {
    let identifier = AtIdentifier::parse(identifier.trim())
        .map_err(|e| XrpcError::invalid_request(format!("invalid identifier: {e}")))?;
    let resolver = m.resolver();
    let did = match &identifier {
        AtIdentifier::Did(did) => did.clone(),
        AtIdentifier::Handle(handle) => {
            let local = m
                .context()
                .accounts
                .get_account(AccountLookup::Handle(handle))
                .await
                .map_err(crate::accounts::store_error)?;
            if let Some(account) = local {
                account.did
            } else {
                if fresh {
                    resolver.handles().invalidate(handle);
                }
                resolver
                    .resolve_handle(handle)
                    .await
                    .map_err(|e| identity_error(&e))?
            }
        }
    };
    if fresh {
        resolver.dids().invalidate(&did);
    }
    let doc = resolver
        .resolve_did(&did)
        .await
        .map_err(|e| identity_error(&e))?;
    let claimed = doc.handle();
    let local_match = match &claimed {
        Some(handle) => m
            .context()
            .accounts
            .get_account(AccountLookup::Handle(handle))
            .await
            .map_err(crate::accounts::store_error)?
            .is_some_and(|a| a.did == did),
        None => false,
    };
    let handle = if local_match {
        claimed
    } else {
        resolver.verified_handle(&doc).await
    };
    Ok(json!({
        "did": did,
        "handle": handle.map_or_else(|| "handle.invalid".to_owned(), |h| h.to_string()),
        "didDoc": doc.raw(),
    }))
}

async fn resolve_identity(
    State(m): State<AccountManager>,
    Params(params): Params<IdentifierParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(identity_info(&m, &params.identifier, false).await?))
}

async fn refresh_identity(
    State(m): State<AccountManager>,
    Input(input): Input<IdentifierParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(identity_info(&m, &input.identifier, true).await?))
}

#[derive(Deserialize)]
struct UpdateHandleInput {
    handle: String,
}

async fn update_handle(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<UpdateHandleInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::SCOPED).await?;
    auth.require_identity(false)?;
    m.update_handle(&auth.account, &input.handle).await?;
    Ok(Json(json!({})))
}

async fn get_recommended_did_credentials(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::SCOPED_DEACTIVATED_OK)
        .await?;
    let c = m.recommended_did_credentials(&auth.account).await?;
    Ok(Json(json!({
        "rotationKeys": c.rotation_keys,
        "alsoKnownAs": c.also_known_as,
        "verificationMethods": c.verification_methods,
        "services": c.services,
    })))
}

async fn request_plc_operation_signature(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_OR_SCOPED_DEACTIVATED_OK)
        .await?;
    auth.require_identity(true)?;
    m.request_plc_operation_signature(&auth.account).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignInput {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    rotation_keys: Option<Vec<String>>,
    #[serde(default)]
    also_known_as: Option<Vec<String>>,
    #[serde(default)]
    verification_methods: Option<BTreeMap<String, String>>,
    #[serde(default)]
    services: Option<BTreeMap<String, ServiceInput>>,
}

#[derive(Deserialize)]
struct ServiceInput {
    #[serde(rename = "type")]
    service_type: String,
    endpoint: String,
}

async fn sign_plc_operation(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<SignInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_OR_SCOPED_DEACTIVATED_OK)
        .await?;
    auth.require_identity(true)?;
    let token = input.token.ok_or_else(|| {
        XrpcError::invalid_request("email confirmation token required to sign PLC operations")
    })?;
    let changes = PlcOperationChanges {
        rotation_keys: input.rotation_keys,
        also_known_as: input.also_known_as,
        verification_methods: input.verification_methods,
        services: input.services.map(|s| {
            s.into_iter()
                .map(|(id, s)| {
                    (
                        id,
                        Service {
                            service_type: s.service_type,
                            endpoint: s.endpoint,
                        },
                    )
                })
                .collect()
        }),
    };
    let op = m.sign_plc_operation(&auth.account, &token, changes).await?;
    let operation: Value = serde_json::from_str(&op.to_json())
        .map_err(|e| crate::accounts::internal("cannot render a PLC operation", &e))?;
    Ok(Json(json!({ "operation": operation })))
}

#[derive(Deserialize)]
struct SubmitInput {
    operation: Value,
}

async fn submit_plc_operation(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<SubmitInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_OR_SCOPED_DEACTIVATED_OK)
        .await?;
    auth.require_identity(true)?;
    let op = SignedOperation::from_json(&input.operation.to_string())
        .map_err(|e| XrpcError::invalid_request(format!("invalid PLC operation: {e}")))?;
    m.submit_plc_operation(&auth.account, &op).await?;
    Ok(Json(json!({})))
}
