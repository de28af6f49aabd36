//! Several server processes on one Postgres: a store's subscribers wake
//! for events that *another* store (process) commits, through LISTEN/NOTIFY,
//! well before the periodic poll of the log head would notice them.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aurora_core::{RepoStore, Sequencer};
use aurora_storage_sql::{SqlOptions, SqlStore};
use aurora_storage_testkit::fixtures::{did, identity_event};
use aurora_storage_testkit::postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_wake_for_events_another_process_commits() {
    let Some(url) = postgres::database("sql_wakeup_across_processes") else {
        return;
    };
    let writer = SqlStore::open(&url, &SqlOptions::default()).await.unwrap();
    let reader = SqlStore::open(&url, &SqlOptions::default()).await.unwrap();
    let mut wake = reader.subscribe();
    // The listener connects in the background.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        let seq = writer
            .sequence_event(identity_event(&did("alice"), &format!("e{i}")))
            .await
            .unwrap();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(30), async {
            while *wake.borrow_and_update() < seq {
                wake.changed().await.unwrap();
            }
        })
        .await
        .expect("the reader never woke");
        // The periodic poll runs every 5 s; a notification takes
        // milliseconds.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "woke after {took:?}");
    }
    // The reader's own view of the log agrees.
    assert_eq!(
        reader.current_seq().await.unwrap(),
        writer.current_seq().await.unwrap()
    );
    reader.close().await;
    writer.close().await;
}
