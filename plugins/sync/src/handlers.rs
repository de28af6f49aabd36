//! The `com.atproto.sync` queries.

use std::sync::Arc;

use aurora_core::cid::Cid;
use aurora_core::http::into_http_service;
use aurora_core::plugin::XrpcMethodKind;
use aurora_core::repo::car::car_byte_stream;
use aurora_core::repo::commit::SignedCommit;
use aurora_core::store::{Account, RepoRoot};
use aurora_core::syntax::{Did, Nsid, RecordKey};
use aurora_core::{PdsContext, XrpcError, XrpcRoute};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use crate::access::{
    bad_request, corrupt, inactive_status, repo_not_found, served_account, store_error,
};
use crate::query::{Query, parse_cid, parse_did};
use crate::walk::{RepoWalk, StoreBlocks, WalkError, blocks_since, record_proof};

const CAR: &str = "application/vnd.ipld.car";
/// CIDs read per `get_blocks` call for `getBlocks`.
const GET_BLOCKS_BATCH: usize = 500;
/// `get_root` calls in flight for one `listRepos` page.
const ROOT_LOOKUPS: usize = 16;

type Handled = Result<Response, XrpcError>;

/// The handlers' state.
#[derive(Clone)]
struct SyncApi {
    ctx: PdsContext,
}

pub(crate) fn routes(ctx: &PdsContext) -> Vec<XrpcRoute> {
    let s = SyncApi { ctx: ctx.clone() };
    macro_rules! query {
        ($nsid:literal, $handler:ident) => {{
            let state = s.clone();
            XrpcRoute::new(
                Nsid::parse($nsid).unwrap_or_else(|e| panic!("route {}: {e}", $nsid)),
                XrpcMethodKind::Query,
                into_http_service(
                    get(
                        |State(s): State<SyncApi>, RawQuery(q): RawQuery| async move {
                            respond($handler(&s, &Query::parse(q.as_deref())).await)
                        },
                    )
                    .with_state(state),
                ),
            )
        }};
    }
    vec![
        query!("com.atproto.sync.getRepo", get_repo),
        query!("com.atproto.sync.getLatestCommit", get_latest_commit),
        query!("com.atproto.sync.getRecord", get_record),
        query!("com.atproto.sync.getBlocks", get_blocks),
        query!("com.atproto.sync.getBlob", get_blob),
        query!("com.atproto.sync.listBlobs", list_blobs),
        query!("com.atproto.sync.listRepos", list_repos),
        query!("com.atproto.sync.getRepoStatus", get_repo_status),
    ]
}

fn respond(result: Handled) -> Response {
    result.unwrap_or_else(|e| e.into_response().map(Body::new))
}

fn json_response(value: &Value) -> Response {
    let mut res = Response::new(Body::from(value.to_string()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A CAR file naming `roots`, streamed from `blocks`. An error while
/// streaming aborts the response (logged here), so that a client never
/// takes a cut-off file for a complete one.
fn car_response<S, E>(did: &Did, roots: Vec<Cid>, blocks: S) -> Response
where
    S: Stream<Item = Result<(Cid, Bytes), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let did = did.clone();
    let blocks = blocks.inspect_err(move |e| {
        tracing::error!(%did, error = %e, "CAR export failed part-way; response aborted");
    });
    // Blocks already at hand go out as one chunk (a walk fetches a batch at
    // once): fewer, larger writes than one per block.
    let body = car_byte_stream(roots, blocks)
        .ready_chunks(crate::walk::BATCH)
        .map(|chunks| {
            let mut out = bytes::BytesMut::with_capacity(
                chunks
                    .iter()
                    .map(|c| c.as_ref().map_or(0, Bytes::len))
                    .sum(),
            );
            for chunk in chunks {
                out.extend_from_slice(&chunk?);
            }
            Ok::<_, std::io::Error>(out.freeze())
        });
    let mut res = Response::new(Body::from_stream(body));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CAR));
    res
}

/// The repo's current root; `RepoNotFound` when the account has no repo.
async fn root_of(s: &SyncApi, did: &Did) -> Result<RepoRoot, XrpcError> {
    s.ctx
        .repos
        .get_root(did)
        .await
        .map_err(store_error)?
        .ok_or_else(|| repo_not_found(did))
}

/// The commit `root` names: its block and decoded form.
async fn commit_at(s: &SyncApi, did: &Did, root: &Cid) -> Result<(Bytes, SignedCommit), XrpcError> {
    let block = s
        .ctx
        .repos
        .get_block(did, root)
        .await
        .map_err(store_error)?
        .ok_or_else(|| corrupt(did, format_args!("commit block {root} is missing")))?;
    let commit =
        SignedCommit::from_block(&block).map_err(|e| corrupt(did, format_args!("{root}: {e}")))?;
    Ok((block, commit))
}

/// `getRepo`: the whole repo at its current commit (walked from the
/// commit's tree, block by block), or with `since` the blocks written by
/// later commits.
async fn get_repo(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let since = q.tid("since")?;
    served_account(&s.ctx, &did).await?;
    let root = root_of(s, &did).await?;
    if let Some(since) = since {
        let blocks = blocks_since(s.ctx.repos.clone(), did.clone(), since, root.rev);
        return Ok(car_response(&did, vec![root.cid], blocks));
    }
    let (block, commit) = commit_at(s, &did, &root.cid).await?;
    let walk = RepoWalk::new(
        StoreBlocks {
            store: s.ctx.repos.clone(),
            did: did.clone(),
        },
        (root.cid, block),
        commit.data,
    );
    Ok(car_response(&did, vec![root.cid], walk.into_stream()))
}

/// `getLatestCommit`: the current commit's CID and rev.
async fn get_latest_commit(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    served_account(&s.ctx, &did).await?;
    let root = root_of(s, &did).await?;
    Ok(json_response(
        &json!({"cid": root.cid.to_string(), "rev": root.rev.as_str()}),
    ))
}

/// `getRecord`: a CAR with the current commit, the MST nodes proving the
/// record, and the record.
async fn get_record(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let collection = Nsid::parse(q.required("collection")?)
        .map_err(|e| XrpcError::invalid_request(format!("invalid collection: {e}")))?;
    let rkey = RecordKey::parse(q.required("rkey")?)
        .map_err(|e| XrpcError::invalid_request(format!("invalid rkey: {e}")))?;
    served_account(&s.ctx, &did).await?;
    let root = root_of(s, &did).await?;
    let (commit_block, commit) = commit_at(s, &did, &root.cid).await?;
    let key = format!("{collection}/{rkey}");
    let proof = record_proof(&*s.ctx.repos, &did, &commit.data, &key)
        .await
        .map_err(|e| walk_error(&did, e))?;
    let Some(record_cid) = proof.record else {
        return Err(bad_request(
            "RecordNotFound",
            format!("Could not locate record: at://{did}/{key}"),
        ));
    };
    let record = s
        .ctx
        .repos
        .get_block(&did, &record_cid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| corrupt(&did, format_args!("record block {record_cid} is missing")))?;
    let mut blocks = Vec::with_capacity(proof.nodes.len() + 2);
    blocks.push((root.cid, commit_block));
    blocks.extend(proof.nodes);
    blocks.push((record_cid, record));
    Ok(car_response(
        &did,
        vec![root.cid],
        futures::stream::iter(blocks.into_iter().map(Ok::<_, std::io::Error>)),
    ))
}

fn walk_error(did: &Did, e: WalkError) -> XrpcError {
    match e {
        WalkError::Store(e) => store_error(e),
        other => corrupt(did, other),
    }
}

/// `getBlocks`: the asked blocks of the repo, in a CAR without roots;
/// `BlockNotFound` naming the missing ones when any is not stored.
async fn get_blocks(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let cids = q
        .all("cids")
        .into_iter()
        .map(|c| parse_cid(c, "cids"))
        .collect::<Result<Vec<_>, _>>()?;
    if cids.is_empty() {
        return Err(XrpcError::invalid_request(
            "missing required parameter cids",
        ));
    }
    served_account(&s.ctx, &did).await?;
    let mut unique = cids.clone();
    unique.sort_unstable();
    unique.dedup();
    let mut found = std::collections::HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(GET_BLOCKS_BATCH) {
        let got = s
            .ctx
            .repos
            .get_blocks(&did, chunk)
            .await
            .map_err(store_error)?;
        found.extend(got);
    }
    let missing: Vec<String> = unique
        .iter()
        .filter(|c| !found.contains_key(*c))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(bad_request(
            "BlockNotFound",
            format!("Could not find cids: {}", missing.join(", ")),
        ));
    }
    // In the order asked, each once.
    let blocks: Vec<(Cid, Bytes)> = cids
        .iter()
        .filter_map(|c| found.remove(c).map(|b| (*c, b)))
        .collect();
    Ok(car_response(
        &did,
        Vec::new(),
        futures::stream::iter(blocks.into_iter().map(Ok::<_, std::io::Error>)),
    ))
}

fn blob_not_found(cid: &Cid) -> XrpcError {
    bad_request("BlobNotFound", format!("Blob not found: {cid}"))
}

/// `getBlob`: the blob's bytes, streamed, with its MIME type, length and
/// the headers that keep a browser from running it.
async fn get_blob(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let cid = parse_cid(q.required("cid")?, "cid")?;
    served_account(&s.ctx, &did).await?;
    let meta = s
        .ctx
        .repos
        .get_blob(&did, &cid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| blob_not_found(&cid))?;
    // Uploads no committed record uses yet, and taken-down blobs, are not served.
    if meta.temp_key.is_some() || meta.takedown_ref.is_some() {
        return Err(blob_not_found(&cid));
    }
    let blob = match s.ctx.blobs.get(&did, &cid).await {
        Ok(Some(blob)) => blob,
        Ok(None) => return Err(blob_not_found(&cid)),
        Err(e) => {
            tracing::error!(%did, %cid, error = %e, "reading a blob failed");
            return Err(XrpcError::internal());
        }
    };
    let mime = if meta.mime_type.is_empty() {
        "application/octet-stream"
    } else {
        meta.mime_type.as_str()
    };
    let mut res = Response::new(Body::from_stream(blob.stream));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
    // As the reference PDS: no MIME sniffing, download rather than render,
    // and nothing in it may run.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{cid}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(res)
}

/// `listBlobs`: the CIDs of the blobs the repo's records reference
/// (with `since`, records written after that rev), by CID.
async fn list_blobs(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let since = q.tid("since")?;
    let limit = q.limit()?;
    let cursor = q.cid("cursor")?;
    served_account(&s.ctx, &did).await?;
    let cids = s
        .ctx
        .repos
        .list_record_blobs(&did, since.as_ref(), cursor.as_ref(), limit)
        .await
        .map_err(store_error)?;
    let mut body = json!({"cids": cids.iter().map(ToString::to_string).collect::<Vec<_>>()});
    if cids.len() == limit
        && let Some(last) = cids.last()
    {
        body["cursor"] = json!(last.to_string());
    }
    Ok(json_response(&body))
}

/// One `listRepos` entry.
fn repo_entry(account: &Account, root: &RepoRoot) -> Value {
    let status = inactive_status(account);
    let mut entry = json!({
        "did": account.did.as_str(),
        "head": root.cid.to_string(),
        "rev": root.rev.as_str(),
        "active": status.is_none(),
    });
    if let Some(status) = status {
        entry["status"] = json!(status);
    }
    entry
}

/// `listRepos`: every hosted repo (active or not) with its head, rev and
/// status, in DID order; the cursor is the last DID of a full page.
async fn list_repos(s: &SyncApi, q: &Query) -> Handled {
    let limit = q.limit()?;
    let cursor = q
        .optional("cursor")?
        .map(|c| parse_did(c, "cursor"))
        .transpose()?;
    let accounts = s
        .ctx
        .accounts
        .list_accounts(cursor.as_ref(), limit)
        .await
        .map_err(store_error)?;
    let repos = Arc::clone(&s.ctx.repos);
    let dids: Vec<Did> = accounts.iter().map(|a| a.did.clone()).collect();
    let roots: Vec<Option<RepoRoot>> = futures::stream::iter(dids)
        .map(|did| {
            let repos = repos.clone();
            async move { repos.get_root(&did).await }
        })
        .buffered(ROOT_LOOKUPS)
        .try_collect()
        .await
        .map_err(store_error)?;
    // Accounts without a repo (a sign-up being created) are not listed.
    let entries: Vec<Value> = accounts
        .iter()
        .zip(&roots)
        .filter_map(|(a, r)| r.as_ref().map(|r| repo_entry(a, r)))
        .collect();
    let mut body = json!({ "repos": entries });
    if accounts.len() == limit
        && let Some(last) = accounts.last()
    {
        body["cursor"] = json!(last.did.as_str());
    }
    Ok(json_response(&body))
}

/// `getRepoStatus`: whether the repo is hosted and active, why not, and
/// its rev when active.
async fn get_repo_status(s: &SyncApi, q: &Query) -> Handled {
    let did = q.did()?;
    let account = s
        .ctx
        .accounts
        .get_account(aurora_core::store::AccountLookup::Did(&did))
        .await
        .map_err(store_error)?
        .ok_or_else(|| repo_not_found(&did))?;
    let status = inactive_status(&account);
    let mut body = json!({"did": did.as_str(), "active": status.is_none()});
    match status {
        Some(status) => body["status"] = json!(status),
        None => {
            if let Some(root) = s.ctx.repos.get_root(&did).await.map_err(store_error)? {
                body["rev"] = json!(root.rev.as_str());
            }
        }
    }
    Ok(json_response(&body))
}
