//! `repo_stats` counts blob references from `record_blob` and the blobs
//! stored for them in `blob`, whatever wrote the rows: here they are
//! inserted directly, on SQLite and Postgres. (The conformance suite covers
//! the same counts through `apply_commit` and `put_blob`.)

#![allow(clippy::unwrap_used)]

use aurora_core::RepoStore;
use aurora_core::event::EventType;
use aurora_core::store::RepoStats;
use aurora_storage_sql::{SqlOptions, SqlStore};
use aurora_storage_testkit::fixtures::{block, commit, did, identity_event, put};
use aurora_storage_testkit::postgres;
use sea_orm::ConnectionTrait;

const ROWS: &str = "\
    INSERT INTO record_blob (did, blob_cid, record_uri) VALUES \
      ('did:plc:alice', 'bafyx', 'at://did:plc:alice/app.bsky.feed.post/p1'), \
      ('did:plc:alice', 'bafyx', 'at://did:plc:alice/app.bsky.feed.post/p2'), \
      ('did:plc:alice', 'bafyy', 'at://did:plc:alice/app.bsky.feed.post/p1'), \
      ('did:plc:bob', 'bafyz', 'at://did:plc:bob/app.bsky.feed.post/p1'); \
    INSERT INTO blob (did, cid, mime_type, size, created_at) VALUES \
      ('did:plc:alice', 'bafyx', 'image/png', 5, '2026-01-01T00:00:00Z'), \
      ('did:plc:alice', 'bafyw', 'image/png', 5, '2026-01-01T00:00:00Z'), \
      ('did:plc:bob', 'bafyy', 'image/png', 5, '2026-01-01T00:00:00Z');";

async fn blobs_are_counted_per_repo(url: &str) {
    let store = SqlStore::open(url, &SqlOptions::default()).await.unwrap();
    let (alice, bob) = (did("alice"), did("bob"));
    let (rec, rec_b) = block("record");
    store
        .apply_commit(commit(
            &alice,
            None,
            "a1",
            1,
            vec![(rec, rec_b)],
            vec![put("app.bsky.feed.post", "p1", rec)],
        ))
        .await
        .unwrap();
    store.connection().execute_unprepared(ROWS).await.unwrap();

    // Two distinct blobs referenced (one by two records); one of them is
    // stored for Alice. Bob's copy of the other and Alice's unreferenced
    // blob do not count.
    assert_eq!(
        store.repo_stats(&alice).await.unwrap(),
        RepoStats {
            blocks: 2,
            records: 1,
            expected_blobs: 2,
            imported_blobs: 1,
        }
    );
    assert_eq!(
        store.repo_stats(&bob).await.unwrap(),
        RepoStats {
            expected_blobs: 1,
            ..RepoStats::default()
        }
    );

    // Deleting the repo drops its blob references.
    let mut gone = identity_event(&alice, "deleted");
    gone.event_type = EventType::Account;
    store.delete_repo(&alice, gone).await.unwrap();
    assert_eq!(
        store.repo_stats(&alice).await.unwrap(),
        RepoStats::default()
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_counts_expected_and_imported_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aurora.sqlite").display());
    blobs_are_counted_per_repo(&url).await;
}

#[tokio::test]
async fn postgres_counts_expected_and_imported_blobs() {
    let Some(url) = postgres::database("postgres_counts_expected_and_imported_blobs") else {
        return;
    };
    blobs_are_counted_per_repo(&url).await;
}
