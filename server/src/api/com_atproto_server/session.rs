//! `createSession`, `getSession`, `refreshSession`, `deleteSession`.

use aurora_oauth::scope::AccountAttr;
use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::session::{Session, bearer_token};
use crate::accounts::{AccessPolicy, AccountManager, Authed};
use crate::auth::tokens::AccessScope;
use crate::xrpc::{ApiError, Input};
use aurora_core::store::{Account, AccountStatus};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateSessionInput {
    identifier: String,
    password: String,
    #[serde(default)]
    allow_takendown: bool,
}

/// The account fields of session outputs. Email is shown to password
/// sessions and privileged app passwords only.
pub(super) fn account_fields(
    account: &Account,
    scope: AccessScope,
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("did".into(), json!(account.did));
    out.insert("handle".into(), json!(account.handle));
    if scope != AccessScope::AppPass
        && let Some(email) = &account.email
    {
        out.insert("email".into(), json!(email));
        out.insert(
            "emailConfirmed".into(),
            json!(account.email_confirmed_at.is_some()),
        );
        out.insert("emailAuthFactor".into(), json!(false));
    }
    let active = account.status == AccountStatus::Active;
    out.insert("active".into(), json!(active));
    if !active {
        out.insert("status".into(), json!(account.status.as_str()));
    }
    out
}

pub(super) fn session_json(session: &Session) -> Value {
    let mut out = account_fields(&session.account, session.scope);
    out.insert("accessJwt".into(), json!(session.tokens.access_jwt));
    out.insert("refreshJwt".into(), json!(session.tokens.refresh_jwt));
    Value::Object(out)
}

pub(super) async fn create_session(
    State(m): State<AccountManager>,
    Input(input): Input<CreateSessionInput>,
) -> Result<Json<Value>, ApiError> {
    let session = m
        .create_session(&input.identifier, &input.password, input.allow_takendown)
        .await?;
    Ok(Json(session_json(&session)))
}

pub(super) async fn get_session(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // Every OAuth session may read its own session; the email only with
    // `transition:email` or `account:email`.
    let Authed {
        account,
        scope,
        oauth,
        ..
    } = m
        .authenticate(&headers, AccessPolicy::SCOPED_DEACTIVATED_OK)
        .await?;
    let mut fields = account_fields(&account, scope);
    if oauth.is_some_and(|s| !s.allows_account(AccountAttr::Email, false)) {
        for private in ["email", "emailConfirmed", "emailAuthFactor"] {
            fields.remove(private);
        }
    }
    Ok(Json(Value::Object(fields)))
}

pub(super) async fn refresh_session(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_token(&headers)?;
    let session = m.refresh_session(token).await?;
    Ok(Json(session_json(&session)))
}

pub(super) async fn delete_session(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = bearer_token(&headers)?;
    m.delete_session(token).await?;
    Ok(Json(json!({})))
}
