//! A sweep deleting an unused blob and a commit adding the first reference
//! to it, at the same time: the sweep waits for the commit and then keeps
//! the blob. The commit is played by hand (a transaction that moves the
//! repo's root and adds the reference, as `apply_commit` does) so that it
//! can be held open while the sweep runs, on SQLite and Postgres.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aurora_core::RepoStore;
use aurora_storage_sql::{SqlOptions, SqlStore};
use aurora_storage_testkit::fixtures::{commit, did, temp_blob};
use aurora_storage_testkit::postgres;
use sea_orm::{ConnectionTrait, TransactionTrait};

async fn sweep_waits_for_a_commit_in_flight(url: &str) {
    let store = SqlStore::open(url, &SqlOptions::default()).await.unwrap();
    let alice = did("alice");
    store
        .apply_commit(commit(&alice, None, "c1", 1, vec![], vec![]))
        .await
        .unwrap();
    let blob = temp_blob(
        &alice,
        "raced",
        chrono::Utc::now() - chrono::TimeDelta::hours(3),
    );
    store.put_blob(blob.clone()).await.unwrap();
    let cutoff = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    assert_eq!(
        store.stale_temp_blobs(cutoff, 10).await.unwrap(),
        vec![blob.clone()]
    );

    // The commit: root first, then the record's blob reference.
    let txn = store.connection().begin().await.unwrap();
    txn.execute_unprepared("UPDATE repo_root SET rev = rev WHERE did = 'did:plc:alice'")
        .await
        .unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO record_blob (did, blob_cid, record_uri) VALUES \
         ('did:plc:alice', '{}', 'at://did:plc:alice/app.bsky.feed.post/p1')",
        blob.cid
    ))
    .await
    .unwrap();

    let sweep = tokio::spawn({
        let store = store.clone();
        let blob = blob.clone();
        async move {
            store
                .delete_blob_if_unused(&blob.did, &blob.cid, blob.temp_key.as_deref(), cutoff)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sweep.is_finished(), "the sweep waits for the commit");
    txn.commit().await.unwrap();

    assert!(!sweep.await.unwrap().unwrap(), "the blob is in use now");
    assert!(store.is_blob_referenced(&alice, &blob.cid).await.unwrap());
    assert_eq!(store.get_blob(&alice, &blob.cid).await.unwrap(), Some(blob));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sweep_waits_for_a_commit_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aurora.sqlite").display());
    sweep_waits_for_a_commit_in_flight(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sweep_waits_for_a_commit_in_flight() {
    let Some(url) = postgres::database("postgres_sweep_waits_for_a_commit_in_flight") else {
        return;
    };
    sweep_waits_for_a_commit_in_flight(&url).await;
}
