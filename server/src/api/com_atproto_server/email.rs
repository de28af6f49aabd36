//! Email confirmation, email change and password reset.

use aurora_core::store::EmailTokenPurpose;
use aurora_oauth::scope::AccountAttr;
use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccessPolicy, AccountManager};
use crate::xrpc::{ApiError, Input};

pub(super) async fn request_email_confirmation(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_OR_SCOPED)
        .await?;
    auth.require_account(AccountAttr::Email, true)?;
    m.send_email_token(&auth.account, EmailTokenPurpose::ConfirmEmail)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct ConfirmInput {
    email: String,
    token: String,
}

pub(super) async fn confirm_email(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<ConfirmInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_OR_SCOPED)
        .await?;
    auth.require_account(AccountAttr::Email, true)?;
    m.confirm_email(&auth.account, &input.email, &input.token)
        .await?;
    Ok(Json(json!({})))
}

pub(super) async fn request_email_update(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::FULL).await?;
    let token_required = auth.account.email_confirmed_at.is_some();
    if token_required {
        m.send_email_token(&auth.account, EmailTokenPurpose::UpdateEmail)
            .await?;
    }
    Ok(Json(json!({ "tokenRequired": token_required })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateInput {
    email: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    email_auth_factor: Option<bool>,
}

pub(super) async fn update_email(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<UpdateInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::FULL).await?;
    m.update_email(&auth.account, &input.email, input.token.as_deref())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct ResetRequestInput {
    email: String,
}

/// Answers the same whether or not the email is registered.
pub(super) async fn request_password_reset(
    State(m): State<AccountManager>,
    Input(input): Input<ResetRequestInput>,
) -> Result<Json<Value>, ApiError> {
    m.request_password_reset(&input.email).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct ResetInput {
    token: String,
    password: String,
}

pub(super) async fn reset_password(
    State(m): State<AccountManager>,
    Input(input): Input<ResetInput>,
) -> Result<Json<Value>, ApiError> {
    m.reset_password(&input.token, &input.password).await?;
    Ok(Json(json!({})))
}
