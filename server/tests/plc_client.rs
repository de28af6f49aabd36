//! The PLC directory client against the in-process test directory: an
//! identity's whole life over HTTP, and each kind of failure.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aurora_core::identity::plc::{Operation, Tombstone};
use aurora_core::syntax::Did;
use aurora_server::identity::plc_client::{PlcClient, PlcClientError, PlcDocument};
use aurora_storage_testkit::plc::TestPlcDirectory;
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use aurora_storage_testkit::plc::TestIdentity as Account;

/// Serves `app` on 127.0.0.1 and returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn genesis_document_update_last_operation_audit_log() {
    let dir = TestPlcDirectory::start().await;
    let client = PlcClient::new(&dir.url()).unwrap();
    let acct = Account::new();

    let genesis = acct.genesis("alice.test");
    let did = genesis.did().unwrap();
    client.submit(&genesis).await.unwrap();

    let doc = client.document(&did).await.unwrap().unwrap();
    assert_eq!(doc["id"], did.as_str());
    assert_eq!(doc["alsoKnownAs"], json!(["at://alice.test"]));
    assert_eq!(
        doc["verificationMethod"][0]["publicKeyMultibase"],
        acct.signing.public_key().to_multikey()
    );
    assert_eq!(doc["service"][0]["serviceEndpoint"], "https://pds.test");

    // The update follows the latest operation, as a PDS builds it.
    let last = client.last_operation(&did).await.unwrap().unwrap();
    assert_eq!(last, genesis);
    let Operation::Plc(state) = &last.operation else {
        panic!("genesis is a plc_operation");
    };
    let mut update = state.clone();
    update.prev = Some(last.cid());
    update.also_known_as = vec!["at://bob.test".to_owned()];
    let update = Operation::Plc(update).sign(&acct.rotation);
    client.submit_for(&did, &update).await.unwrap();

    let doc = client.document(&did).await.unwrap().unwrap();
    assert_eq!(doc["alsoKnownAs"], json!(["at://bob.test"]));
    assert_eq!(
        client.last_operation(&did).await.unwrap(),
        Some(update.clone())
    );

    let audit = client.audit_log(&did).await.unwrap().unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].operation, genesis);
    assert_eq!(audit[0].cid, genesis.cid());
    assert_eq!(audit[1].operation, update);
    assert!(audit.iter().all(|e| !e.nullified && e.did == did));
    assert!(audit[0].created_at < audit[1].created_at);

    let log = client.verified_log(&did).await.unwrap().unwrap();
    let data = log.document().unwrap();
    assert_eq!(data.handle().unwrap().as_str(), "bob.test");
    assert_eq!(data.pds_endpoint(), Some("https://pds.test"));

    // A tombstone: the document is gone, the log stays.
    let tombstone = Operation::Tombstone(Tombstone { prev: update.cid() }).sign(&acct.rotation);
    client.submit_for(&did, &tombstone).await.unwrap();
    assert_eq!(client.document(&did).await.unwrap(), None);
    assert_eq!(
        client.document_state(&did).await.unwrap(),
        PlcDocument::Deactivated
    );
    assert_eq!(client.last_operation(&did).await.unwrap(), Some(tombstone));
    assert!(
        client
            .verified_log(&did)
            .await
            .unwrap()
            .unwrap()
            .is_tombstoned()
    );
}

#[tokio::test]
async fn rejection_surfaces_the_directory_message() {
    let dir = TestPlcDirectory::start().await;
    let client = PlcClient::new(&dir.url()).unwrap();
    let acct = Account::new();
    let genesis = acct.genesis("alice.test");
    let did = genesis.did().unwrap();

    // Signed by the signing key, which is no rotation key.
    let forged = genesis.operation.clone().sign(&acct.signing);
    let err = client.submit(&forged).await.unwrap_err();
    let PlcClientError::Rejected { status, message } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(*status, StatusCode::BAD_REQUEST);
    assert!(message.contains("signature is not valid"), "{message}");
    assert!(err.to_string().contains(message.as_str()));
    assert_eq!(client.document(&did).await.unwrap(), None);

    // A second genesis for an existing DID.
    client.submit(&genesis).await.unwrap();
    let err = client.submit(&genesis).await.unwrap_err();
    assert!(
        matches!(&err, PlcClientError::Rejected { message, .. } if message.contains("already exists")),
        "{err:?}"
    );

    // An update for a DID that does not exist.
    let other = Account::new().genesis("carol.test").did().unwrap();
    let update = Operation::Tombstone(Tombstone {
        prev: genesis.cid(),
    })
    .sign(&acct.rotation);
    let err = client.submit_for(&other, &update).await.unwrap_err();
    assert!(
        matches!(&err, PlcClientError::Rejected { message, .. } if message.contains("genesis")),
        "{err:?}"
    );

    // `submit` needs a genesis to name the DID.
    let err = client.submit(&update).await.unwrap_err();
    assert!(matches!(err, PlcClientError::NoDid(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_did_is_none() {
    let dir = TestPlcDirectory::start().await;
    let client = PlcClient::new(&dir.url()).unwrap();
    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    assert_eq!(client.document(&did).await.unwrap(), None);
    assert_eq!(
        client.document_state(&did).await.unwrap(),
        PlcDocument::NotFound
    );
    assert_eq!(client.last_operation(&did).await.unwrap(), None);
    assert!(client.audit_log(&did).await.unwrap().is_none());
    assert!(client.verified_log(&did).await.unwrap().is_none());
}

#[tokio::test]
async fn unreachable_directory() {
    // A port that was free a moment ago, with nothing listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = PlcClient::new(&format!("http://{addr}")).unwrap();
    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let err = client.document(&did).await.unwrap_err();
    assert!(matches!(err, PlcClientError::Unreachable { .. }), "{err:?}");
    let err = client.submit(&Account::new().genesis("alice.test")).await;
    assert!(matches!(err, Err(PlcClientError::Unreachable { .. })));
}

#[tokio::test]
async fn slow_directory_times_out() {
    let url = serve(axum::Router::new().fallback(get(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    })))
    .await;
    let client = PlcClient::with_timeout(&url, Duration::from_millis(200)).unwrap();
    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let err = client.last_operation(&did).await.unwrap_err();
    assert!(
        matches!(err, PlcClientError::Timeout { timeout, .. } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_answers() {
    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let url = serve(
        axum::Router::new()
            .route(
                "/{did}",
                get(|| async { axum::Json(json!({ "id": "did:plc:other" })) }),
            )
            .route("/{did}/log/last", get(|| async { "not json" }))
            .route("/{did}/log/audit", get(|| async { axum::Json(json!([])) })),
    )
    .await;
    let client = PlcClient::new(&url).unwrap();
    for err in [
        client.document(&did).await.unwrap_err(),
        client.last_operation(&did).await.unwrap_err(),
        client.audit_log(&did).await.unwrap_err(),
    ] {
        assert!(matches!(err, PlcClientError::Malformed { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn server_errors_are_rejections_with_their_text() {
    let url = serve(axum::Router::new().fallback(get(|| async {
        (StatusCode::SERVICE_UNAVAILABLE, "maintenance")
    })))
    .await;
    let client = PlcClient::new(&url).unwrap();
    let did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let err = client.document(&did).await.unwrap_err();
    assert!(
        matches!(&err, PlcClientError::Rejected { status, message }
            if *status == StatusCode::SERVICE_UNAVAILABLE && message == "maintenance"),
        "{err:?}"
    );
}
