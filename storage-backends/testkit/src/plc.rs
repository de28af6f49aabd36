//! An in-process PLC directory for tests.
//!
//! A PDS creates and updates `did:plc` identities by talking HTTP to a PLC
//! directory (`AURORA_PLC_URL`). Tests cannot use plc.directory, so
//! [`TestPlcDirectory`] serves the endpoints a PDS uses, on 127.0.0.1 on a
//! free port, with the same JSON shapes and status codes:
//!
//! | request | answer |
//! |---|---|
//! | `POST /{did}` | accepts a signed operation (JSON): `200`, or `400 {"message": ...}` |
//! | `GET /{did}` | the DID document (`application/did+ld+json`) |
//! | `GET /{did}/data` | the document data, rotation keys included |
//! | `GET /{did}/log` | the active operations, oldest first |
//! | `GET /{did}/log/audit` | the audit log: every operation with `cid`, `nullified`, `createdAt` |
//! | `GET /{did}/log/last` | the latest operation |
//!
//! An unknown DID answers `404 {"message": "DID not registered: <did>"}`;
//! the document and data of a tombstoned DID answer
//! `410 {"message": "DID not available: <did>"}`.
//!
//! Operations are judged by [`PlcLog::create`] and [`PlcLog::apply`], the
//! same rules the PDS and an auditor use, at the current time. The clock
//! only moves forward: an operation is stamped at least a millisecond after
//! the previous one of its DID, so a test can submit a genesis and an update
//! back to back (the real directory would refuse the second if both fell in
//! one millisecond). [`TestPlcDirectory::advance_clock`] moves the clock on
//! to test the recovery window without waiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aurora_core::crypto::{Curve, PublicKey, SigningKey};
use aurora_core::identity::plc::{Operation, PlcError, PlcLog, PlcOperation, SignedOperation};
use aurora_core::syntax::{Did, Handle};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tokio::task::JoinHandle;

/// The directory's state: one log per DID, and how far the clock was moved.
#[derive(Debug, Default)]
struct Directory {
    logs: HashMap<Did, PlcLog>,
    clock_offset: TimeDelta,
}

type Shared = Arc<Mutex<Directory>>;

/// A test identity's keys: the PDS's rotation key (k256) and the atproto
/// signing key (P-256, so both curves are exercised).
#[derive(Debug)]
pub struct TestIdentity {
    /// The rotation key that signs PLC operations.
    pub rotation: SigningKey,
    /// The repo signing key named in the DID document.
    pub signing: SigningKey,
}

impl Default for TestIdentity {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIdentity {
    /// Fresh random keys.
    pub fn new() -> Self {
        Self {
            rotation: SigningKey::generate(Curve::K256),
            signing: SigningKey::generate(Curve::P256),
        }
    }

    /// A signed genesis operation for `handle`, served by `https://pds.test`.
    pub fn genesis(&self, handle: &str) -> SignedOperation {
        Operation::Plc(PlcOperation::atproto(
            &[self.rotation.public_key()],
            &self.signing.public_key(),
            &Handle::parse(handle).unwrap(),
            "https://pds.test",
            None,
        ))
        .sign(&self.rotation)
    }
}

/// A PLC directory running in this process for tests (see the module
/// docs). The server stops when this value is dropped.
#[derive(Debug)]
pub struct TestPlcDirectory {
    addr: SocketAddr,
    state: Shared,
    server: JoinHandle<()>,
}

impl TestPlcDirectory {
    /// Starts an empty directory on 127.0.0.1 on a free port.
    ///
    /// Panics when no port can be bound.
    pub async fn start() -> Self {
        let state = Shared::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test PLC directory: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("test PLC directory: local address");
        let app = router(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("test PLC directory stopped: {e}");
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:49152` (no trailing slash):
    /// what a PDS under test gets as `AURORA_PLC_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the directory listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the log of `did`, `None` when the DID is not registered.
    pub fn log(&self, did: &Did) -> Option<PlcLog> {
        lock(&self.state).logs.get(did).cloned()
    }

    /// Moves the directory's clock forward by `by`, for example past the
    /// 72-hour recovery window.
    pub fn advance_clock(&self, by: TimeDelta) {
        let mut dir = lock(&self.state);
        dir.clock_offset += by;
    }
}

impl Drop for TestPlcDirectory {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Locks the state; a test that panicked while holding the lock left it
/// consistent ([`PlcLog::apply`] changes nothing on error), so poisoning
/// is ignored.
fn lock(state: &Shared) -> MutexGuard<'_, Directory> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/{did}", get(document).post(submit))
        .route("/{did}/data", get(data))
        .route("/{did}/log", get(active_log))
        .route("/{did}/log/audit", get(audit_log))
        .route("/{did}/log/last", get(last_operation))
        .with_state(state)
}

/// An error answer in the directory's shape: `{"message": ...}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

fn not_registered(did: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("DID not registered: {did}"))
}

fn not_available(did: &str) -> Response {
    error(StatusCode::GONE, format!("DID not available: {did}"))
}

/// Runs `f` on the log of `did`, or answers 404 when there is none.
fn with_log(state: &Shared, did: &str, f: impl FnOnce(&PlcLog) -> Response) -> Response {
    let Ok(parsed) = Did::parse(did) else {
        return not_registered(did);
    };
    match lock(state).logs.get(&parsed) {
        Some(log) => f(log),
        None => not_registered(did),
    }
}

async fn document(State(state): State<Shared>, Path(did): Path<String>) -> Response {
    with_log(&state, &did, |log| match log.document() {
        Some(doc) => (
            [(header::CONTENT_TYPE, "application/did+ld+json")],
            Json(doc.to_did_document()),
        )
            .into_response(),
        None => not_available(&did),
    })
}

async fn data(State(state): State<Shared>, Path(did): Path<String>) -> Response {
    with_log(&state, &did, |log| match log.document() {
        Some(doc) => Json(json!({
            "did": doc.did.as_str(),
            "verificationMethods": doc.verification_methods,
            "rotationKeys": doc
                .rotation_keys
                .iter()
                .map(PublicKey::to_did_key)
                .collect::<Vec<_>>(),
            "alsoKnownAs": doc.also_known_as,
            "services": doc.services,
        }))
        .into_response(),
        None => not_available(&did),
    })
}

async fn active_log(State(state): State<Shared>, Path(did): Path<String>) -> Response {
    with_log(&state, &did, |log| {
        let ops: Vec<&SignedOperation> = log.active().map(|e| &e.operation).collect();
        Json(ops).into_response()
    })
}

async fn audit_log(State(state): State<Shared>, Path(did): Path<String>) -> Response {
    with_log(&state, &did, |log| Json(log.entries()).into_response())
}

async fn last_operation(State(state): State<Shared>, Path(did): Path<String>) -> Response {
    with_log(&state, &did, |log| match log.head() {
        Some(head) => Json(&head.operation).into_response(),
        None => not_registered(&did),
    })
}

async fn submit(State(state): State<Shared>, Path(did): Path<String>, body: Bytes) -> Response {
    let did = match Did::parse(did) {
        Ok(did) => did,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Ok(json) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    let op = match SignedOperation::from_json(json) {
        Ok(op) => op,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match accept(&state, did, op) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Accepts `op` into the log of `did` (a new log for a genesis), at the
/// directory's time.
fn accept(state: &Shared, did: Did, op: SignedOperation) -> Result<(), PlcError> {
    let mut dir = lock(state);
    let offset = dir.clock_offset;
    if let Some(log) = dir.logs.get_mut(&did) {
        let now = now(offset, log.head().map(|e| e.created_at));
        log.apply(op, now)?;
    } else {
        // `apply` on an empty log is what `PlcLog::create` does, but for the
        // DID in the URL: a genesis deriving another DID is refused.
        let mut log = PlcLog::new(did.clone());
        log.apply(op, now(offset, None))?;
        dir.logs.insert(did, log);
    }
    Ok(())
}

/// The time to stamp an operation with: the clock, but at least a
/// millisecond after `latest`.
fn now(offset: TimeDelta, latest: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now() + offset;
    match latest {
        Some(latest) => now.max(latest + TimeDelta::milliseconds(1)),
        None => now,
    }
}

#[cfg(test)]
mod tests {
    use aurora_core::identity::plc::{AuditEntry, Operation, PlcOperation, Tombstone};
    use serde_json::Value;

    use super::*;

    use super::TestIdentity as Account;

    /// An HTTP client. When the workspace is built together, reqwest has
    /// rustls without a provider (aurora-server passes ring explicitly), so
    /// a plain client needs ring installed as the process default.
    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    async fn post(dir: &TestPlcDirectory, did: &str, body: String) -> (StatusCode, Value) {
        let resp = client()
            .post(format!("{}/{did}", dir.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(dir: &TestPlcDirectory, path: &str) -> (StatusCode, Value) {
        let resp = client()
            .get(format!("{}{path}", dir.url()))
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap())
    }

    #[tokio::test]
    async fn genesis_document_update_and_logs() {
        let dir = TestPlcDirectory::start().await;
        let acct = Account::new();
        let genesis = acct.genesis("alice.test");
        let did = genesis.did().unwrap();

        let (status, _) = post(&dir, did.as_str(), genesis.to_json()).await;
        assert_eq!(status, StatusCode::OK);

        let (status, doc) = get(&dir, &format!("/{did}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["id"], did.as_str());
        assert_eq!(doc["alsoKnownAs"], json!(["at://alice.test"]));
        assert_eq!(
            doc["service"][0]["serviceEndpoint"],
            json!("https://pds.test")
        );
        assert_eq!(
            doc["verificationMethod"][0]["publicKeyMultibase"],
            json!(acct.signing.public_key().to_multikey())
        );

        // An update, submitted right after the genesis.
        let state = dir.log(&did).unwrap().document().unwrap();
        let mut update = state.to_update(genesis.cid());
        update.also_known_as = vec!["at://bob.test".to_owned()];
        let update = Operation::Plc(update).sign(&acct.rotation);
        let (status, _) = post(&dir, did.as_str(), update.to_json()).await;
        assert_eq!(status, StatusCode::OK);

        let (_, doc) = get(&dir, &format!("/{did}")).await;
        assert_eq!(doc["alsoKnownAs"], json!(["at://bob.test"]));

        let (status, data) = get(&dir, &format!("/{did}/data")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            data["rotationKeys"],
            json!([acct.rotation.public_key().to_did_key()])
        );
        assert_eq!(
            data["services"]["atproto_pds"]["endpoint"],
            "https://pds.test"
        );

        let (_, last) = get(&dir, &format!("/{did}/log/last")).await;
        let last = SignedOperation::from_json(&last.to_string()).unwrap();
        assert_eq!(last, update);

        let (_, ops) = get(&dir, &format!("/{did}/log")).await;
        let ops: Vec<SignedOperation> = serde_json::from_value(ops).unwrap();
        assert_eq!(ops, vec![genesis.clone(), update.clone()]);

        let (_, audit) = get(&dir, &format!("/{did}/log/audit")).await;
        let audit: Vec<AuditEntry> = serde_json::from_value(audit).unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[1].cid, update.cid());
        // The audit log replays under the directory's own rules.
        let replayed = PlcLog::from_audit_log(&audit).unwrap();
        assert_eq!(replayed.document(), dir.log(&did).unwrap().document());
    }

    #[tokio::test]
    async fn bad_signature_is_rejected_with_400() {
        let dir = TestPlcDirectory::start().await;
        let acct = Account::new();
        let mut genesis = acct.genesis("alice.test");
        // Signed by a key that is not one of its rotation keys.
        genesis.sig = genesis.operation.clone().sign(&acct.signing).sig;
        let did = genesis.did().unwrap();

        let (status, body) = post(&dir, did.as_str(), genesis.to_json()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("signature"), "{message}");

        let (status, _) = get(&dir, &format!("/{did}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn genesis_for_another_did_and_junk_are_rejected() {
        let dir = TestPlcDirectory::start().await;
        let genesis = Account::new().genesis("alice.test");
        let other = Account::new().genesis("alice.test").did().unwrap();

        let (status, body) = post(&dir, other.as_str(), genesis.to_json()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].as_str().unwrap().contains("genesis"));

        let (status, body) = post(&dir, other.as_str(), "{\"type\":1}".to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].is_string());
    }

    #[tokio::test]
    async fn unknown_did_is_404() {
        let dir = TestPlcDirectory::start().await;
        let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
        for path in ["", "/data", "/log", "/log/audit", "/log/last"] {
            let (status, body) = get(&dir, &format!("/{did}{path}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                body,
                json!({ "message": format!("DID not registered: {did}") })
            );
        }
    }

    #[tokio::test]
    async fn tombstoned_did_is_410_but_keeps_its_log() {
        let dir = TestPlcDirectory::start().await;
        let acct = Account::new();
        let genesis = acct.genesis("alice.test");
        let did = genesis.did().unwrap();
        assert_eq!(
            post(&dir, did.as_str(), genesis.to_json()).await.0,
            StatusCode::OK
        );
        let tombstone = Operation::Tombstone(Tombstone {
            prev: genesis.cid(),
        })
        .sign(&acct.rotation);
        assert_eq!(
            post(&dir, did.as_str(), tombstone.to_json()).await.0,
            StatusCode::OK
        );

        for path in ["", "/data"] {
            let (status, body) = get(&dir, &format!("/{did}{path}")).await;
            assert_eq!(status, StatusCode::GONE, "{path}");
            assert_eq!(
                body,
                json!({ "message": format!("DID not available: {did}") })
            );
        }
        let (status, last) = get(&dir, &format!("/{did}/log/last")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(last["type"], "plc_tombstone");
    }

    #[tokio::test]
    async fn advance_clock_closes_the_recovery_window() {
        let dir = TestPlcDirectory::start().await;
        let recovery = SigningKey::generate(Curve::K256);
        let pds = SigningKey::generate(Curve::K256);
        let signing = SigningKey::generate(Curve::K256);
        let genesis = Operation::Plc(PlcOperation::atproto(
            &[recovery.public_key(), pds.public_key()],
            &signing.public_key(),
            &Handle::parse("alice.test").unwrap(),
            "https://pds.test",
            None,
        ))
        .sign(&pds);
        let did = genesis.did().unwrap();
        assert_eq!(
            post(&dir, did.as_str(), genesis.to_json()).await.0,
            StatusCode::OK
        );
        let state = dir.log(&did).unwrap().document().unwrap();
        let mut hijack = state.to_update(genesis.cid());
        hijack.also_known_as = vec!["at://mallory.test".to_owned()];
        let hijack = Operation::Plc(hijack).sign(&pds);
        assert_eq!(
            post(&dir, did.as_str(), hijack.to_json()).await.0,
            StatusCode::OK
        );

        dir.advance_clock(TimeDelta::hours(73));
        let recovery_op = Operation::Plc(state.to_update(genesis.cid())).sign(&recovery);
        let (status, body) = post(&dir, did.as_str(), recovery_op.to_json()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("recovery window")
        );
    }
}
