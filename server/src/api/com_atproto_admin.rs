//! `com.atproto.admin.*`: operator endpoints, behind HTTP basic auth as
//! `admin` with `AURORA_ADMIN_PASSWORD`.

use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use aurora_core::store::{Account, AccountStatus, InviteCodeSort};
use aurora_core::syntax::Did;
use aurora_core::{XrpcError, XrpcRoute};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use chrono::SecondsFormat;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::com_atproto_server::invite_code_json;
use crate::accounts::AccountManager;
use crate::xrpc::{ApiError, Input, Params, route};

pub(crate) fn routes(m: &AccountManager) -> Vec<XrpcRoute> {
    vec![
        route(
            "com.atproto.admin.getAccountInfo",
            Query,
            get(get_account_info).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.getAccountInfos",
            Query,
            get(get_account_infos).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.updateAccountHandle",
            Procedure,
            post(update_account_handle).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.updateAccountEmail",
            Procedure,
            post(update_account_email).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.updateAccountPassword",
            Procedure,
            post(update_account_password).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.updateSubjectStatus",
            Procedure,
            post(update_subject_status).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.getSubjectStatus",
            Query,
            get(get_subject_status).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.deleteAccount",
            Procedure,
            post(delete_account).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.getInviteCodes",
            Query,
            get(get_invite_codes).with_state(m.clone()),
        ),
        route(
            "com.atproto.admin.disableInviteCodes",
            Procedure,
            post(disable_invite_codes).with_state(m.clone()),
        ),
    ]
}

fn parse_did(did: &str) -> Result<Did, XrpcError> {
    Did::parse(did).map_err(|e| XrpcError::invalid_request(format!("invalid did: {e}")))
}

/// `com.atproto.admin.defs#accountView`.
async fn account_view(m: &AccountManager, account: &Account) -> Result<Value, XrpcError> {
    let invites = m
        .context()
        .accounts
        .account_invite_codes(account.did.as_str())
        .await
        .map_err(crate::accounts::store_error)?;
    let mut view = json!({
        "did": account.did,
        "handle": account.handle,
        "indexedAt": account.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "invites": invites.iter().map(invite_code_json).collect::<Vec<_>>(),
    });
    if let Some(email) = &account.email {
        view["email"] = json!(email);
    }
    if let Some(at) = account.email_confirmed_at {
        view["emailConfirmedAt"] = json!(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    Ok(view)
}

#[derive(Deserialize)]
struct DidParams {
    did: String,
}

async fn get_account_info(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Params(params): Params<DidParams>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let account = m.account(&parse_did(&params.did)?).await?;
    Ok(Json(account_view(&m, &account).await?))
}

/// Most DIDs per `getAccountInfos` call.
const MAX_INFOS: usize = 100;

async fn get_account_infos(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    // `dids` repeats (`?dids=a&dids=b`), which typed query parsing does not take.
    let dids: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "dids")
        .map(|(_, v)| v.into_owned())
        .collect();
    if dids.is_empty() || dids.len() > MAX_INFOS {
        return Err(XrpcError::invalid_request(format!("give 1 to {MAX_INFOS} dids")).into());
    }
    let mut infos = Vec::new();
    for did in dids {
        let did = parse_did(&did)?;
        if let Some(account) = m
            .context()
            .accounts
            .get_account(aurora_core::store::AccountLookup::Did(&did))
            .await?
        {
            infos.push(account_view(&m, &account).await?);
        }
    }
    Ok(Json(json!({ "infos": infos })))
}

#[derive(Deserialize)]
struct HandleInput {
    did: String,
    handle: String,
}

async fn update_account_handle(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<HandleInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let account = m.account(&parse_did(&input.did)?).await?;
    m.update_handle(&account, &input.handle).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct EmailInput {
    account: String,
    email: String,
}

async fn update_account_email(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<EmailInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let mut account = m.account(&parse_did(&input.account)?).await?;
    // The operator needs no token from the old address.
    account.email_confirmed_at = None;
    m.update_email(&account, &input.email, None).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct PasswordInput {
    did: String,
    password: String,
}

async fn update_account_password(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<PasswordInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let did = parse_did(&input.did)?;
    m.account(&did).await?;
    m.set_password(&did, &input.password).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct StatusAttr {
    applied: bool,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

#[derive(Deserialize)]
struct SubjectStatusInput {
    subject: Value,
    #[serde(default)]
    takedown: Option<StatusAttr>,
    #[serde(default)]
    deactivated: Option<StatusAttr>,
}

/// The DID of a `com.atproto.admin.defs#repoRef` subject; record and blob
/// subjects are not moderated here.
fn repo_subject(subject: &Value) -> Result<Did, XrpcError> {
    match subject.get("$type").and_then(Value::as_str) {
        Some("com.atproto.admin.defs#repoRef") | None => subject
            .get("did")
            .and_then(Value::as_str)
            .ok_or_else(|| XrpcError::invalid_request("subject needs a did"))
            .and_then(parse_did),
        Some(other) => Err(XrpcError::invalid_request(format!(
            "subjects of type {other} are not supported; only accounts (com.atproto.admin.defs#repoRef)"
        ))),
    }
}

fn subject_json(did: &Did) -> Value {
    json!({ "$type": "com.atproto.admin.defs#repoRef", "did": did })
}

async fn update_subject_status(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<SubjectStatusInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let did = repo_subject(&input.subject)?;
    let account = m.account(&did).await?;
    if let Some(takedown) = &input.takedown {
        let reference = takedown.applied.then(|| {
            takedown
                .reference
                .clone()
                .unwrap_or_else(|| "takedown".to_owned())
        });
        m.set_takedown(&did, reference.as_deref()).await?;
    }
    if let Some(deactivated) = &input.deactivated {
        if deactivated.applied {
            m.deactivate(&account).await?;
        } else {
            m.activate(&m.account(&did).await?).await?;
        }
    }
    let account = m.account(&did).await?;
    let mut out = json!({ "subject": subject_json(&did) });
    if input.takedown.is_some() {
        out["takedown"] = takedown_json(&account);
    }
    Ok(Json(out))
}

fn takedown_json(account: &Account) -> Value {
    let mut t = json!({ "applied": account.takedown_ref.is_some() });
    if let Some(r) = &account.takedown_ref {
        t["ref"] = json!(r);
    }
    t
}

async fn get_subject_status(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Params(params): Params<DidParams>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let did = parse_did(&params.did)?;
    let account = m.account(&did).await?;
    Ok(Json(json!({
        "subject": subject_json(&did),
        "takedown": takedown_json(&account),
        "deactivated": { "applied": account.status == AccountStatus::Deactivated },
    })))
}

#[derive(Deserialize)]
struct DeleteInput {
    did: String,
}

async fn delete_account(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<DeleteInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let did = parse_did(&input.did)?;
    m.account(&did).await?;
    m.remove_account(&did).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct InviteCodesParams {
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

async fn get_invite_codes(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Params(params): Params<InviteCodesParams>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let sort = match params.sort.as_deref() {
        None | Some("recent") => InviteCodeSort::Recent,
        Some("usage") => InviteCodeSort::Usage,
        Some(other) => {
            return Err(XrpcError::invalid_request(format!(
                "sort must be recent or usage, not {other:?}"
            ))
            .into());
        }
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(XrpcError::invalid_request("limit must be 1 to 500").into());
    }
    let (codes, cursor) = m
        .context()
        .accounts
        .list_invite_codes(sort, params.cursor.as_deref(), limit)
        .await?;
    let mut out = json!({ "codes": codes.iter().map(invite_code_json).collect::<Vec<_>>() });
    if let Some(cursor) = cursor {
        out["cursor"] = json!(cursor);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct DisableInput {
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
}

async fn disable_invite_codes(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<DisableInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    if input.accounts.iter().any(|a| a == "admin") {
        return Err(XrpcError::invalid_request(
            "the operator's own codes cannot be disabled by account",
        )
        .into());
    }
    m.context()
        .accounts
        .disable_invite_codes(&input.codes, &input.accounts)
        .await?;
    Ok(Json(json!({})))
}
