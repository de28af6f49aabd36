//! `com.atproto.repo.uploadBlob` and `listMissingBlobs`.

use aurora_core::XrpcError;
use aurora_core::store::{BlobError, BlobRecord};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use futures::TryStreamExt;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{RepoApi, parse_cid};
use crate::accounts::{AccessPolicy, internal, store_error};
use crate::repo::UploadError;
use crate::xrpc::{ApiError, Params};

/// The blob reference a record embeds, as JSON.
fn blob_ref(blob: &BlobRecord) -> Value {
    json!({
        "$type": "blob",
        "ref": { "$link": blob.cid.to_string() },
        "mimeType": blob.mime_type,
        "size": blob.size,
    })
}

fn upload_error(e: UploadError) -> XrpcError {
    match e {
        UploadError::TooLarge { limit } => XrpcError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("blob is larger than the limit of {limit} bytes"),
        ),
        UploadError::Input(e) => {
            XrpcError::invalid_request(format!("reading the upload failed: {e}"))
        }
        UploadError::Blob(BlobError::Storage(e)) if is_out_of_space(&e) => {
            tracing::error!(error = %e, "blob storage full: uploads fail");
            XrpcError::insufficient_storage()
        }
        UploadError::Blob(e) => internal("storing a blob failed", &e),
        UploadError::Store(e) => store_error(e),
    }
}

/// A full disk or an exceeded quota.
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

pub(super) async fn upload_blob(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // Deactivated accounts upload too: a migrating account brings its
    // blobs before it is activated.
    let auth = s
        .accounts
        .authenticate(&headers, AccessPolicy::SCOPED_DEACTIVATED_OK)
        .await?;
    auth.require_blob(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream"),
    )?;
    let blobs = s.writer.blobs();
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > blobs.max_bytes()) {
        return Err(upload_error(UploadError::TooLarge {
            limit: blobs.max_bytes(),
        })
        .into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let stream = body
        .into_data_stream()
        .map_err(|e| {
            // The server's body limit (the same size) may cut the upload
            // before the blob manager counts past it.
            if is_length_limit(&e) {
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, e)
            } else {
                std::io::Error::other(e)
            }
        })
        .into_stream();
    let blob = blobs
        .upload(auth.did(), content_type, Box::pin(stream))
        .await
        .map_err(upload_error)?;
    Ok(Json(json!({ "blob": blob_ref(&blob) })))
}

/// Whether a body error is the server's request body limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Default and largest page of `listMissingBlobs`.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub(super) struct ListMissingBlobsParams {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub(super) async fn list_missing_blobs(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    Params(p): Params<ListMissingBlobsParams>,
) -> Result<Json<Value>, ApiError> {
    let auth = s
        .accounts
        .authenticate(&headers, AccessPolicy::DEACTIVATED_OK)
        .await?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(XrpcError::invalid_request(format!("limit must be 1 to {MAX_LIMIT}")).into());
    }
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| parse_cid(c, "cursor"))
        .transpose()?;
    let missing = s
        .accounts
        .context()
        .repos
        .list_missing_blobs(auth.did(), cursor.as_ref(), limit)
        .await?;
    let mut out = json!({
        "blobs": missing
            .iter()
            .map(|m| json!({ "cid": m.cid.to_string(), "recordUri": m.record_uri }))
            .collect::<Vec<_>>(),
    });
    if missing.len() == limit
        && let Some(last) = missing.last()
    {
        out["cursor"] = json!(last.cid.to_string());
    }
    Ok(Json(out))
}
