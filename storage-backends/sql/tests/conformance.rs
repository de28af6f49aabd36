//! The shared storage conformance suite, run against SQLite and Postgres.
//! Postgres comes from `aurora_storage_testkit::postgres` (started for the
//! test run, or `AURORA_TEST_POSTGRES_URL`); without one the Postgres cases
//! skip with the reason, or fail under `AURORA_REQUIRE_SERVICES=1`.

use aurora_storage_sql::{SqlOptions, SqlStore};
use aurora_storage_testkit::{StoreHarness, postgres, store_conformance_suite};

async fn harness(url: &str) -> StoreHarness {
    let store = SqlStore::open(url, &SqlOptions::default())
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    StoreHarness::new(store, SqlStore::with_fault_after)
}

async fn sqlite(_test: &'static str) -> Option<StoreHarness> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("aurora.sqlite").display());
    Some(harness(&url).await.with_guard(dir))
}

async fn pg(test: &'static str) -> Option<StoreHarness> {
    let url = postgres::database(test)?;
    Some(harness(&url).await)
}

mod sqlite {
    aurora_storage_testkit::store_conformance_suite!(super::sqlite);
}

mod postgres_suite {
    super::store_conformance_suite!(super::pg);
}
