//! `createAppPassword`, `listAppPasswords`, `revokeAppPassword`.

use axum::Json;
use axum::extract::State;
use chrono::SecondsFormat;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccessPolicy, AccountManager};
use crate::xrpc::{ApiError, Input};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateInput {
    name: String,
    #[serde(default)]
    privileged: bool,
}

pub(super) async fn create_app_password(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<CreateInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::FULL).await?;
    let created = m
        .create_app_password(auth.did(), &input.name, input.privileged)
        .await?;
    let app = &created.app_password;
    Ok(Json(json!({
        "name": app.name,
        "password": created.password,
        "createdAt": app.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "privileged": app.privileged,
    })))
}

pub(super) async fn list_app_passwords(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::STANDARD).await?;
    let passwords = m
        .context()
        .accounts
        .list_app_passwords(auth.did())
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "createdAt": a.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "privileged": a.privileged,
            })
        })
        .collect::<Vec<_>>();
    Ok(Json(json!({ "passwords": passwords })))
}

#[derive(Deserialize)]
pub(super) struct RevokeInput {
    name: String,
}

pub(super) async fn revoke_app_password(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<RevokeInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::FULL).await?;
    match m
        .context()
        .accounts
        .delete_app_password(auth.did(), &input.name)
        .await
    {
        // Revoking twice is harmless.
        Ok(()) | Err(aurora_core::StoreError::NotFound(_)) => Ok(Json(json!({}))),
        Err(e) => Err(e.into()),
    }
}
