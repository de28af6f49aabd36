//! `com.atproto.repo.*`: record writes (each a signed commit) and reads,
//! blobs, and repo import.

mod blob;
mod import;

use aurora_core::cid::Cid;
use aurora_core::data::{Ipld, decode, ipld_to_json, json_to_ipld};
use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use aurora_core::repo::{RecordChange, WriteAction, WriteError, WriteOutcome};
use aurora_core::store::{Account, AccountLookup, AccountStatus, RecordPage};
use aurora_core::syntax::{AtIdentifier, Did, Nsid, RecordKey};
use aurora_core::{XrpcError, XrpcRoute};
use aurora_oauth::scope::RepoAction;
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccessPolicy, AccountManager, Authed, bad_request, store_error};
use crate::repo::validation::{ValidationStatus, validate_record};
use crate::repo::{CommitOutcome, RepoWriteError, RepoWriter, Swap};
use crate::xrpc::{ApiError, Input, Params, route};

/// Most writes in one `applyWrites`.
pub(crate) const MAX_WRITES: usize = 200;
/// Default and largest page of `listRecords`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

/// What the repo handlers share.
#[derive(Debug, Clone)]
pub(crate) struct RepoApi {
    accounts: AccountManager,
    writer: RepoWriter,
}

pub(crate) fn routes(accounts: &AccountManager, writer: &RepoWriter) -> Vec<XrpcRoute> {
    let s = RepoApi {
        accounts: accounts.clone(),
        writer: writer.clone(),
    };
    vec![
        route(
            "com.atproto.repo.createRecord",
            Procedure,
            post(create_record).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.putRecord",
            Procedure,
            post(put_record).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.deleteRecord",
            Procedure,
            post(delete_record).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.applyWrites",
            Procedure,
            post(apply_writes).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.getRecord",
            Query,
            get(get_record).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.listRecords",
            Query,
            get(list_records).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.describeRepo",
            Query,
            get(describe_repo).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.uploadBlob",
            Procedure,
            post(blob::upload_blob).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.listMissingBlobs",
            Query,
            get(blob::list_missing_blobs).with_state(s.clone()),
        ),
        route(
            "com.atproto.repo.importRepo",
            Procedure,
            post(import::import_repo).with_state(s),
        ),
    ]
}

// ------------------------------------------------------------------ helpers

fn parse_nsid(s: &str) -> Result<Nsid, XrpcError> {
    Nsid::parse(s).map_err(|e| XrpcError::invalid_request(format!("invalid collection: {e}")))
}

fn parse_rkey(s: &str) -> Result<RecordKey, XrpcError> {
    RecordKey::parse(s).map_err(|e| XrpcError::invalid_request(format!("invalid record key: {e}")))
}

fn parse_cid(s: &str, what: &str) -> Result<Cid, XrpcError> {
    Cid::try_from(s).map_err(|e| XrpcError::invalid_request(format!("invalid {what}: {e}")))
}

fn record_uri(did: &Did, collection: &Nsid, rkey: &RecordKey) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

/// The account a `repo` parameter (handle or DID) names here.
async fn find_repo(m: &AccountManager, repo: &str) -> Result<Account, XrpcError> {
    let id = AtIdentifier::parse(repo.trim())
        .map_err(|e| XrpcError::invalid_request(format!("invalid repo: {e}")))?;
    let lookup = match &id {
        AtIdentifier::Did(did) => AccountLookup::Did(did),
        AtIdentifier::Handle(handle) => AccountLookup::Handle(handle),
    };
    m.context()
        .accounts
        .get_account(lookup)
        .await
        .map_err(store_error)?
        .ok_or_else(|| XrpcError::invalid_request(format!("Could not find repo: {repo}")))
}

/// The account behind `repo`, if it is served: taken-down and deactivated
/// repos are not.
async fn served_repo(m: &AccountManager, repo: &str) -> Result<Account, XrpcError> {
    let account = find_repo(m, repo).await?;
    match account.status {
        AccountStatus::Active => Ok(account),
        AccountStatus::Takendown | AccountStatus::Suspended => Err(bad_request(
            "RepoTakendown",
            format!("repo has been taken down: {}", account.did),
        )),
        AccountStatus::Deactivated => Err(bad_request(
            "RepoDeactivated",
            format!("repo has been deactivated: {}", account.did),
        )),
        AccountStatus::Deleted => Err(XrpcError::invalid_request(format!(
            "Could not find repo: {repo}"
        ))),
    }
}

/// The caller, who must own `repo`.
async fn writer_for(s: &RepoApi, headers: &HeaderMap, repo: &str) -> Result<Authed, XrpcError> {
    let auth = s
        .accounts
        .authenticate(headers, AccessPolicy::SCOPED)
        .await?;
    let target = AtIdentifier::parse(repo.trim())
        .map_err(|e| XrpcError::invalid_request(format!("invalid repo: {e}")))?;
    let own = match &target {
        AtIdentifier::Did(did) => did == auth.did(),
        AtIdentifier::Handle(handle) => *handle == auth.account.handle,
    };
    if !own {
        return Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "you can only write to your own repo",
        ));
    }
    Ok(auth)
}

/// A record's JSON as the data model (with `$link`, `$bytes`, blobs), its
/// `$type` set to the collection when it has none (as the reference PDS does).
fn record_value(collection: &Nsid, record: &Value) -> Result<Ipld, XrpcError> {
    let mut value = json_to_ipld(record)
        .map_err(|e| bad_request("InvalidRecord", format!("invalid record: {e}")))?;
    if let Ipld::Map(map) = &mut value {
        map.entry("$type".to_owned())
            .or_insert_with(|| Ipld::String(collection.as_str().to_owned()));
    }
    Ok(value)
}

fn check_record(
    collection: &Nsid,
    rkey: &RecordKey,
    record: &Value,
    validate: Option<bool>,
) -> Result<ValidationStatus, XrpcError> {
    validate_record(collection, rkey, record, validate)
        .map_err(|e| XrpcError::invalid_request(e.message))
}

fn write_error(e: RepoWriteError) -> XrpcError {
    match e {
        RepoWriteError::RepoNotFound(did) => {
            XrpcError::invalid_request(format!("Could not find repo: {did}"))
        }
        RepoWriteError::InvalidSwap(message) => bad_request("InvalidSwap", message),
        RepoWriteError::Write(
            e @ (WriteError::RecordExists(_)
            | WriteError::RecordNotFound(_)
            | WriteError::DuplicatePath(_)
            | WriteError::MissingRecord(_)),
        ) => XrpcError::invalid_request(e.to_string()),
        RepoWriteError::Write(e @ WriteError::Encode { .. }) => {
            bad_request("InvalidRecord", e.to_string())
        }
        RepoWriteError::Store(e) => store_error(e),
        RepoWriteError::Contended => XrpcError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RepoBusy",
            "the repo is being written by another server; try again",
        ),
        RepoWriteError::BlobNotFound(cid) => {
            bad_request("BlobNotFound", format!("Could not find blob: {cid}"))
        }
        RepoWriteError::Write(e @ WriteError::InvalidPath(_)) => {
            XrpcError::invalid_request(e.to_string())
        }
        RepoWriteError::Write(e) => crate::accounts::internal("repo write failed", &e),
        RepoWriteError::Corrupt(e) => crate::accounts::internal("repo data is corrupt", &e),
    }
}

fn commit_meta(c: &CommitOutcome) -> Value {
    json!({ "cid": c.commit.to_string(), "rev": c.rev.as_str() })
}

fn outcome_uri(did: &Did, o: &WriteOutcome) -> String {
    record_uri(did, &o.collection, &o.rkey)
}

// ------------------------------------------------------------------ writes

/// Writes one record and answers as `createRecord` and `putRecord` do.
async fn write_one(
    s: &RepoApi,
    did: &Did,
    change: RecordChange,
    swap: &Swap,
    status: ValidationStatus,
) -> Result<Json<Value>, ApiError> {
    let done = s
        .writer
        .write(did, &[change], swap)
        .await
        .map_err(write_error)?;
    let o = &done.outcomes[0];
    Ok(Json(json!({
        "uri": outcome_uri(did, o),
        "cid": o.cid.map(|c| c.to_string()),
        "commit": commit_meta(&done),
        "validationStatus": status.as_str(),
    })))
}

/// A `swapCommit` input.
fn swap_commit(input: Option<&str>) -> Result<Option<Cid>, XrpcError> {
    input.map(|c| parse_cid(c, "swapCommit")).transpose()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRecordInput {
    repo: String,
    collection: String,
    #[serde(default)]
    rkey: Option<String>,
    #[serde(default)]
    validate: Option<bool>,
    record: Value,
    #[serde(default)]
    swap_commit: Option<String>,
}

async fn create_record(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    Input(input): Input<CreateRecordInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = writer_for(&s, &headers, &input.repo).await?;
    let collection = parse_nsid(&input.collection)?;
    auth.require_repo(collection.as_str(), RepoAction::Create)?;
    let rkey = match &input.rkey {
        Some(rkey) => parse_rkey(rkey)?,
        None => parse_rkey(s.writer.clock().next().as_str())?,
    };
    let status = check_record(&collection, &rkey, &input.record, input.validate)?;
    let swap = Swap {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    let record = record_value(&collection, &input.record)?;
    let change = RecordChange {
        action: WriteAction::Create,
        collection,
        rkey,
        record: Some(record),
    };
    write_one(&s, auth.did(), change, &swap, status).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRecordInput {
    repo: String,
    collection: String,
    rkey: String,
    #[serde(default)]
    validate: Option<bool>,
    record: Value,
    /// Absent: no condition; `null`: the record must not exist yet.
    #[serde(default, with = "nullable")]
    #[allow(clippy::option_option)] // absent and null mean different things here
    swap_record: Option<Option<String>>,
    #[serde(default)]
    swap_commit: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
#[allow(clippy::option_option)]
mod nullable {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

async fn put_record(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    Input(input): Input<PutRecordInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = writer_for(&s, &headers, &input.repo).await?;
    let collection = parse_nsid(&input.collection)?;
    // putRecord creates or updates: it needs both.
    auth.require_repo(collection.as_str(), RepoAction::Create)?;
    auth.require_repo(collection.as_str(), RepoAction::Update)?;
    let rkey = parse_rkey(&input.rkey)?;
    let status = check_record(&collection, &rkey, &input.record, input.validate)?;
    let record = record_value(&collection, &input.record)?;
    let mut swap = Swap {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    if let Some(expected) = &input.swap_record {
        let expected = expected
            .as_deref()
            .map(|c| parse_cid(c, "swapRecord"))
            .transpose()?;
        swap.records
            .push((collection.clone(), rkey.clone(), expected));
    }
    let exists = s
        .accounts
        .context()
        .repos
        .get_record(auth.did(), &collection, &rkey)
        .await?
        .is_some();
    let change = RecordChange {
        action: if exists {
            WriteAction::Update
        } else {
            WriteAction::Create
        },
        collection,
        rkey,
        record: Some(record),
    };
    write_one(&s, auth.did(), change, &swap, status).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRecordInput {
    repo: String,
    collection: String,
    rkey: String,
    #[serde(default)]
    swap_record: Option<String>,
    #[serde(default)]
    swap_commit: Option<String>,
}

async fn delete_record(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    Input(input): Input<DeleteRecordInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = writer_for(&s, &headers, &input.repo).await?;
    let collection = parse_nsid(&input.collection)?;
    auth.require_repo(collection.as_str(), RepoAction::Delete)?;
    let rkey = parse_rkey(&input.rkey)?;
    let mut swap = Swap {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    if let Some(expected) = &input.swap_record {
        swap.records.push((
            collection.clone(),
            rkey.clone(),
            Some(parse_cid(expected, "swapRecord")?),
        ));
    }
    let exists = s
        .accounts
        .context()
        .repos
        .get_record(auth.did(), &collection, &rkey)
        .await?
        .is_some();
    if !exists && swap.records.is_empty() && swap.commit.is_none() {
        // Deleting what is not there is done already: no commit.
        return Ok(Json(json!({})));
    }
    let change = RecordChange {
        action: WriteAction::Delete,
        collection,
        rkey,
        record: None,
    };
    let done = s
        .writer
        .write(auth.did(), &[change], &swap)
        .await
        .map_err(write_error)?;
    Ok(Json(json!({ "commit": commit_meta(&done) })))
}

#[derive(Deserialize)]
#[serde(tag = "$type")]
enum WriteInput {
    #[serde(rename = "com.atproto.repo.applyWrites#create")]
    Create {
        collection: String,
        #[serde(default)]
        rkey: Option<String>,
        value: Value,
    },
    #[serde(rename = "com.atproto.repo.applyWrites#update")]
    Update {
        collection: String,
        rkey: String,
        value: Value,
    },
    #[serde(rename = "com.atproto.repo.applyWrites#delete")]
    Delete { collection: String, rkey: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyWritesInput {
    repo: String,
    #[serde(default)]
    validate: Option<bool>,
    writes: Vec<WriteInput>,
    #[serde(default)]
    swap_commit: Option<String>,
}

async fn apply_writes(
    State(s): State<RepoApi>,
    headers: HeaderMap,
    Input(input): Input<ApplyWritesInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = writer_for(&s, &headers, &input.repo).await?;
    if input.writes.is_empty() || input.writes.len() > MAX_WRITES {
        return Err(XrpcError::invalid_request(format!(
            "applyWrites takes 1 to {MAX_WRITES} writes"
        ))
        .into());
    }
    let mut changes = Vec::with_capacity(input.writes.len());
    let mut statuses = Vec::with_capacity(input.writes.len());
    for write in &input.writes {
        let (action, collection, rkey, value) = match write {
            WriteInput::Create {
                collection,
                rkey,
                value,
            } => {
                let rkey = match rkey {
                    Some(r) => parse_rkey(r)?,
                    None => parse_rkey(s.writer.clock().next().as_str())?,
                };
                (
                    WriteAction::Create,
                    parse_nsid(collection)?,
                    rkey,
                    Some(value),
                )
            }
            WriteInput::Update {
                collection,
                rkey,
                value,
            } => (
                WriteAction::Update,
                parse_nsid(collection)?,
                parse_rkey(rkey)?,
                Some(value),
            ),
            WriteInput::Delete { collection, rkey } => (
                WriteAction::Delete,
                parse_nsid(collection)?,
                parse_rkey(rkey)?,
                None,
            ),
        };
        auth.require_repo(
            collection.as_str(),
            match action {
                WriteAction::Create => RepoAction::Create,
                WriteAction::Update => RepoAction::Update,
                WriteAction::Delete => RepoAction::Delete,
            },
        )?;
        let (status, record) = match value {
            Some(v) => (
                Some(check_record(&collection, &rkey, v, input.validate)?),
                Some(record_value(&collection, v)?),
            ),
            None => (None, None),
        };
        statuses.push(status);
        changes.push(RecordChange {
            action,
            collection,
            rkey,
            record,
        });
    }
    let swap = Swap {
        commit: swap_commit(input.swap_commit.as_deref())?,
        records: Vec::new(),
    };
    let done = s
        .writer
        .write(auth.did(), &changes, &swap)
        .await
        .map_err(write_error)?;
    let results: Vec<Value> = done
        .outcomes
        .iter()
        .zip(&statuses)
        .map(|(o, status)| match o.action {
            WriteAction::Delete => json!({ "$type": "com.atproto.repo.applyWrites#deleteResult" }),
            action => json!({
                "$type": if action == WriteAction::Create {
                    "com.atproto.repo.applyWrites#createResult"
                } else {
                    "com.atproto.repo.applyWrites#updateResult"
                },
                "uri": outcome_uri(auth.did(), o),
                "cid": o.cid.map(|c| c.to_string()),
                "validationStatus": status.map(ValidationStatus::as_str),
            }),
        })
        .collect();
    Ok(Json(
        json!({ "commit": commit_meta(&done), "results": results }),
    ))
}

// ------------------------------------------------------------------- reads

/// A stored record as JSON.
async fn record_json(s: &RepoApi, did: &Did, cid: &Cid) -> Result<Value, XrpcError> {
    let bytes = s
        .accounts
        .context()
        .repos
        .get_block(did, cid)
        .await
        .map_err(store_error)?;
    block_json(cid, bytes.as_deref())
}

/// The JSON form of the record block `cid` (`None`: missing, which the
/// record index says cannot be).
fn block_json(cid: &Cid, bytes: Option<&[u8]>) -> Result<Value, XrpcError> {
    let bytes = bytes
        .ok_or_else(|| crate::accounts::internal("an indexed record's block is missing", cid))?;
    let value: Ipld = decode(bytes)
        .map_err(|e| crate::accounts::internal("a stored record does not decode", &e))?;
    ipld_to_json(&value)
        .map_err(|e| crate::accounts::internal("a stored record has no JSON form", &e))
}

#[derive(Deserialize)]
struct GetRecordParams {
    repo: String,
    collection: String,
    rkey: String,
    #[serde(default)]
    cid: Option<String>,
}

fn record_not_found(uri: &str) -> XrpcError {
    bad_request("RecordNotFound", format!("Could not locate record: {uri}"))
}

async fn get_record(
    State(s): State<RepoApi>,
    Params(p): Params<GetRecordParams>,
) -> Result<Json<Value>, ApiError> {
    let account = served_repo(&s.accounts, &p.repo).await?;
    let collection = parse_nsid(&p.collection)?;
    let rkey = parse_rkey(&p.rkey)?;
    let uri = record_uri(&account.did, &collection, &rkey);
    let entry = s
        .accounts
        .context()
        .repos
        .get_record(&account.did, &collection, &rkey)
        .await?
        .ok_or_else(|| record_not_found(&uri))?;
    if let Some(wanted) = &p.cid
        && parse_cid(wanted, "cid")? != entry.cid
    {
        return Err(record_not_found(&uri).into());
    }
    let value = record_json(&s, &account.did, &entry.cid).await?;
    Ok(Json(
        json!({ "uri": uri, "cid": entry.cid.to_string(), "value": value }),
    ))
}

#[derive(Deserialize)]
struct ListRecordsParams {
    repo: String,
    collection: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    reverse: Option<bool>,
}

async fn list_records(
    State(s): State<RepoApi>,
    Params(p): Params<ListRecordsParams>,
) -> Result<Json<Value>, ApiError> {
    let account = served_repo(&s.accounts, &p.repo).await?;
    let collection = parse_nsid(&p.collection)?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(XrpcError::invalid_request(format!("limit must be 1 to {MAX_LIMIT}")).into());
    }
    let cursor = p.cursor.as_deref().map(parse_rkey).transpose()?;
    let page = RecordPage {
        limit,
        cursor,
        reverse: p.reverse.unwrap_or(false),
    };
    let entries = s
        .accounts
        .context()
        .repos
        .list_records(&account.did, &collection, &page)
        .await?;
    // The page's record blocks in one read, not one each.
    let cids: Vec<Cid> = entries.iter().map(|e| e.cid).collect();
    let blocks: std::collections::HashMap<Cid, bytes::Bytes> = s
        .accounts
        .context()
        .repos
        .get_blocks(&account.did, &cids)
        .await?
        .into_iter()
        .collect();
    let mut records = Vec::with_capacity(entries.len());
    for e in &entries {
        records.push(json!({
            "uri": record_uri(&account.did, &collection, &e.rkey),
            "cid": e.cid.to_string(),
            "value": block_json(&e.cid, blocks.get(&e.cid).map(|b| &b[..]))?,
        }));
    }
    let mut out = json!({ "records": records });
    if entries.len() == limit
        && let Some(last) = entries.last()
    {
        out["cursor"] = json!(last.rkey.as_str());
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct DescribeRepoParams {
    repo: String,
}

async fn describe_repo(
    State(s): State<RepoApi>,
    Params(p): Params<DescribeRepoParams>,
) -> Result<Json<Value>, ApiError> {
    let account = served_repo(&s.accounts, &p.repo).await?;
    let collections = s
        .accounts
        .context()
        .repos
        .list_collections(&account.did)
        .await?;
    let doc = s.accounts.resolver().resolve_did(&account.did).await.ok();
    let handle_is_correct = doc
        .as_ref()
        .and_then(|d| d.handle())
        .is_some_and(|h| h == account.handle);
    let mut out = json!({
        "handle": account.handle,
        "did": account.did,
        "collections": collections,
        "handleIsCorrect": handle_is_correct,
    });
    out["didDoc"] = doc.map_or(Value::Null, |d| d.raw().clone());
    if out["didDoc"].is_null() {
        out["didDoc"] = json!({});
    }
    Ok(Json(out))
}
