//! SQLite is opened the way a durable, concurrent PDS needs it.

#![allow(clippy::unwrap_used)]

use aurora_storage_sql::{Engine, SqlOptions, SqlStore, SqliteSync};
use sea_orm::{ConnectionTrait, Statement};

async fn pragma(store: &SqlStore, name: &str) -> String {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            store.connection().get_database_backend(),
            format!("PRAGMA {name}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))
        .unwrap()
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_durable_commits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aurora.sqlite").display());
    let store = SqlStore::open(&url, &SqlOptions::default()).await.unwrap();
    assert_eq!(store.engine(), Engine::Sqlite);
    assert_eq!(pragma(&store, "journal_mode").await, "wal");
    assert_eq!(pragma(&store, "synchronous").await, "2", "FULL");
    assert_eq!(pragma(&store, "foreign_keys").await, "1");
    assert_eq!(pragma(&store, "busy_timeout").await, "2000");
    store.close().await;

    let relaxed = SqlOptions {
        sqlite_sync: SqliteSync::Normal,
        ..SqlOptions::default()
    };
    let store = SqlStore::open(&url, &relaxed).await.unwrap();
    assert_eq!(pragma(&store, "synchronous").await, "1", "NORMAL");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn unknown_schemes_and_unreachable_databases_are_reported() {
    let err = SqlStore::open("mysql://localhost/x", &SqlOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unsupported database scheme"),
        "{err}"
    );
    let opts = SqlOptions {
        acquire_timeout: std::time::Duration::from_secs(1),
        ..SqlOptions::default()
    };
    let err = SqlStore::open("postgres://nobody@127.0.0.1:1/none", &opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
