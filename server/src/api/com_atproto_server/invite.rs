//! `createInviteCode`, `createInviteCodes` (operator) and
//! `getAccountInviteCodes`.

use aurora_core::store::InviteCode;
use axum::Json;
use axum::extract::State;
use chrono::SecondsFormat;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::admin::ADMIN_USER;
use crate::accounts::{AccessPolicy, AccountManager};
use crate::xrpc::{ApiError, Input, Params};

/// The lexicon's `com.atproto.server.defs#inviteCode`. `available` is the
/// number of uses the code was made with, as the reference PDS reports it
/// (clients subtract `uses`).
pub(crate) fn invite_code_json(code: &InviteCode) -> Value {
    let total = i64::from(code.available_uses) + i64::try_from(code.uses.len()).unwrap_or(0);
    json!({
        "code": code.code,
        "available": total,
        "disabled": code.disabled,
        "forAccount": code.for_account,
        "createdBy": code.created_by,
        "createdAt": code.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "uses": code.uses.iter().map(|u| json!({
            "usedBy": u.used_by,
            "usedAt": u.used_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateOneInput {
    use_count: i32,
    #[serde(default)]
    for_account: Option<String>,
}

pub(super) async fn create_invite_code(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<CreateOneInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let owners: Vec<String> = input.for_account.into_iter().collect();
    let codes = m
        .create_invite_codes(1, input.use_count, &owners, ADMIN_USER)
        .await?;
    let code = codes.first().map(|c| c.code.clone()).unwrap_or_default();
    Ok(Json(json!({ "code": code })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateManyInput {
    #[serde(default = "one")]
    code_count: usize,
    use_count: i32,
    #[serde(default)]
    for_accounts: Vec<String>,
}

fn one() -> usize {
    1
}

pub(super) async fn create_invite_codes(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<CreateManyInput>,
) -> Result<Json<Value>, ApiError> {
    m.authenticate_admin(&headers)?;
    let codes = m
        .create_invite_codes(
            input.code_count,
            input.use_count,
            &input.for_accounts,
            ADMIN_USER,
        )
        .await?;
    let mut by_account: Vec<(String, Vec<String>)> = Vec::new();
    for code in codes {
        match by_account.iter_mut().find(|(a, _)| *a == code.for_account) {
            Some((_, list)) => list.push(code.code),
            None => by_account.push((code.for_account, vec![code.code])),
        }
    }
    let codes = by_account
        .into_iter()
        .map(|(account, codes)| json!({ "account": account, "codes": codes }))
        .collect::<Vec<_>>();
    Ok(Json(json!({ "codes": codes })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountCodesParams {
    #[serde(default = "yes")]
    include_used: bool,
    #[serde(default)]
    #[allow(dead_code)]
    create_available: Option<bool>,
}

fn yes() -> bool {
    true
}

pub(super) async fn get_account_invite_codes(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Params(params): Params<AccountCodesParams>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::FULL).await?;
    let codes = m
        .context()
        .accounts
        .account_invite_codes(auth.did().as_str())
        .await?
        .into_iter()
        .filter(|c| params.include_used || c.available_uses > 0)
        .map(|c| invite_code_json(&c))
        .collect::<Vec<_>>();
    Ok(Json(json!({ "codes": codes })))
}
