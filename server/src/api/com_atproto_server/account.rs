//! `createAccount`, `checkAccountStatus`, `activateAccount`,
//! `deactivateAccount`, `requestAccountDelete`, `deleteAccount`.

use aurora_core::XrpcError;
use aurora_core::store::{AccountStatus, EmailTokenPurpose};
use aurora_core::syntax::{Datetime, Did};
use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::session_json;
use crate::accounts::create::SignUp;
use crate::accounts::session::{Session, bearer_token};
use crate::accounts::{AccessPolicy, AccountManager};
use crate::auth::tokens::AccessScope;
use crate::xrpc::{ApiError, Input};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateAccountInput {
    handle: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    invite_code: Option<String>,
    #[serde(default)]
    recovery_key: Option<String>,
    #[serde(default)]
    did: Option<String>,
    #[serde(default)]
    plc_op: Option<Value>,
    // Phone verification is not offered (describeServer says so).
    #[serde(default)]
    #[allow(dead_code)]
    verification_code: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    verification_phone: Option<String>,
}

pub(super) async fn create_account(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<CreateAccountInput>,
) -> Result<Json<Value>, ApiError> {
    if input.plc_op.is_some() {
        return Err(XrpcError::invalid_request(
            "plcOp is not supported: point the DID document here after sign-up \
             (getRecommendedDidCredentials), then activate the account",
        )
        .into());
    }
    let sign_up = SignUp {
        handle: input.handle,
        email: input.email,
        password: input.password,
        invite_code: input.invite_code,
        recovery_key: input.recovery_key,
    };
    let session = if let Some(did) = input.did {
        // Account migration: the DID exists and its owner vouches with a
        // service token.
        let did = Did::parse(did.as_str())
            .map_err(|e| XrpcError::invalid_request(format!("invalid did: {e}")))?;
        let token = bearer_token(&headers).map_err(|_| {
            XrpcError::authentication_required(
                "creating an account for an existing DID needs a service token from that DID",
            )
        })?;
        let account = m.create_migrated_account(sign_up, &did, token).await?;
        let tokens = m.open_session(&did, AccessScope::Access, None).await?;
        Session {
            tokens,
            account,
            scope: AccessScope::Access,
        }
    } else {
        let created = m.create_account(sign_up).await?;
        Session {
            tokens: created.session,
            account: created.account,
            scope: AccessScope::Access,
        }
    };
    let full = session_json(&session);
    Ok(Json(json!({
        "accessJwt": full["accessJwt"],
        "refreshJwt": full["refreshJwt"],
        "handle": full["handle"],
        "did": full["did"],
    })))
}

pub(super) async fn check_account_status(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::DEACTIVATED_OK)
        .await?;
    let status = m.account_status_report(&auth.account).await?;
    Ok(Json(json!({
        "activated": auth.account.status == AccountStatus::Active,
        "validDid": status.valid_did,
        "repoCommit": status.repo_commit.map(|c| c.to_string()),
        "repoRev": status.repo_rev.map(|r| r.to_string()),
        "repoBlocks": status.repo_blocks,
        "indexedRecords": status.indexed_records,
        "privateStateValues": status.private_state_values,
        "expectedBlobs": status.expected_blobs,
        "importedBlobs": status.imported_blobs,
    })))
}

pub(super) async fn activate_account(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
    m.activate(&auth.account).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeactivateInput {
    /// When the account may be deleted if not reactivated. Checked (a bad
    /// datetime is refused before anything changes) but otherwise unused:
    /// scheduled deletion is not offered.
    #[serde(default)]
    #[allow(dead_code)]
    delete_after: Option<Datetime>,
}

pub(super) async fn deactivate_account(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(_input): Input<DeactivateInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
    m.deactivate(&auth.account).await?;
    Ok(Json(json!({})))
}

pub(super) async fn request_account_delete(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m
        .authenticate(&headers, AccessPolicy::FULL_DEACTIVATED_OK)
        .await?;
    m.send_email_token(&auth.account, EmailTokenPurpose::DeleteAccount)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteAccountInput {
    did: String,
    password: String,
    token: String,
}

pub(super) async fn delete_account(
    State(m): State<AccountManager>,
    Input(input): Input<DeleteAccountInput>,
) -> Result<Json<Value>, ApiError> {
    let did = Did::parse(input.did.as_str())
        .map_err(|e| XrpcError::invalid_request(format!("invalid did: {e}")))?;
    m.delete_with_token(&did, &input.password, &input.token)
        .await?;
    Ok(Json(json!({})))
}
