//! `com.atproto.identity.*`: handles and the DID document.

use std::collections::BTreeMap;

use aurora_core::identity::plc::{Service, SignedOperation};
use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use aurora_core::store::AccountLookup;
use aurora_core::{XrpcError, XrpcRoute};
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::identity::PlcOperationChanges;
use crate::accounts::{AccessPolicy, AccountManager, handle};
use crate::xrpc::{ApiError, Input, Params, route};

pub(crate) fn routes(m: &AccountManager) -> Vec<XrpcRoute> {
    vec![
        route(
            "com.atproto.identity.resolveHandle",
            Query,
            get(resolve_handle).with_state(m.clone()),
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

#[derive(Deserialize)]
struct UpdateHandleInput {
    handle: String,
}

async fn update_handle(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<UpdateHandleInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::STANDARD).await?;
    m.update_handle(&auth.account, &input.handle).await?;
    Ok(Json(json!({})))
}

async fn get_recommended_did_credentials(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::DEACTIVATED_OK)
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
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
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
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
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
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
    let op = SignedOperation::from_json(&input.operation.to_string())
        .map_err(|e| XrpcError::invalid_request(format!("invalid PLC operation: {e}")))?;
    m.submit_plc_operation(&auth.account, &op).await?;
    Ok(Json(json!({})))
}
