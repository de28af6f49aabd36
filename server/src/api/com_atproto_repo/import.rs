//! `com.atproto.repo.importRepo`: an account migrating here brings its
//! repo as a CAR file.

use aurora_core::XrpcError;
use aurora_core::repo::load_repo_bytes;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{RepoApi, write_error};
use crate::accounts::{AccessPolicy, internal};
use crate::xrpc::ApiError;

pub(super) async fn import_repo(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // The account is normally still deactivated while it migrates.
    let auth = s
        .accounts
        .authenticate(&headers, AccessPolicy::DEACTIVATED_OK)
        .await?;
    let limit = usize::try_from(s.writer.blobs().max_bytes()).unwrap_or(usize::MAX);
    let car = axum::body::to_bytes(body, limit).await.map_err(|_| {
        XrpcError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the repo is larger than the limit of {limit} bytes"),
        )
    })?;
    // Checking every block's hash and the whole tree is CPU work.
    let repo =
        tokio::task::spawn_blocking(move || load_repo_bytes(&car, None).map_err(|e| e.to_string()))
            .await
            .map_err(|e| internal("checking an imported repo panicked", &e))?
            .map_err(|e| XrpcError::invalid_request(format!("invalid repo CAR: {e}")))?;
    if repo.commit.did != *auth.did() {
        return Err(XrpcError::invalid_request(format!(
            "the repo belongs to {}, not to {}",
            repo.commit.did,
            auth.did()
        ))
        .into());
    }
    s.writer
        .import(auth.did(), &repo)
        .await
        .map_err(write_error)?;
    Ok(Json(json!({})))
}
