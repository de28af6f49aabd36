//! Failing fast while the database is down.
//!
//! When the database server goes away, every new connection attempt waits
//! out the pool's acquire timeout (sqlx retries refused connections until
//! then, taking them for a server still starting). Without a gate, every
//! request would hang that long before its 503. So the first call that
//! finds the database unreachable closes the gate: later calls fail at once
//! with `Unavailable`, and one background probe pings the database until it
//! answers, then opens the gate again. Nothing is queued or retried on the
//! callers' behalf: a request that failed was not written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};

use crate::{Trouble, trouble};

/// How long the probe waits between pings that failed at once.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Whether the database is known to be unreachable, shared by a store's
/// connections.
#[derive(Debug, Default)]
pub(crate) struct Availability {
    down: AtomicBool,
    probing: AtomicBool,
}

impl Availability {
    /// The error of a call refused while the gate is closed.
    fn refused() -> DbErr {
        DbErr::Conn(RuntimeErr::Internal(
            "the database is unreachable (a background probe reconnects)".to_owned(),
        ))
    }

    /// Refuses a call at once while the database is known to be down.
    pub(crate) fn check(&self) -> Result<(), DbErr> {
        if self.down.load(Ordering::Acquire) {
            Err(Self::refused())
        } else {
            Ok(())
        }
    }

    /// Looks at a call's outcome: an unreachable database closes the gate
    /// and starts the probe on `db`.
    pub(crate) fn observe<T>(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        outcome: Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        if let Err(e) = &outcome
            && trouble(e) == Trouble::Unavailable
        {
            self.close(db);
        }
        outcome
    }

    fn close(self: &Arc<Self>, db: &DatabaseConnection) {
        self.down.store(true, Ordering::Release);
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("the database is unreachable: refusing calls until it answers again");
        let this = self.clone();
        let db = db.clone();
        tokio::spawn(async move {
            // Each ping is bounded by the pool's acquire timeout, and
            // returns as soon as a connection succeeds.
            while db.ping().await.is_err() {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            this.down.store(false, Ordering::Release);
            this.probing.store(false, Ordering::Release);
            tracing::info!("the database answers again");
        });
    }
}

/// A connection whose calls pass through the store's [`Availability`].
#[derive(Debug, Clone)]
pub(crate) struct GatedConnection {
    pub(crate) inner: DatabaseConnection,
    pub(crate) availability: Arc<Availability>,
}

#[async_trait]
impl ConnectionTrait for GatedConnection {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.availability.check()?;
        let outcome = self.inner.execute_raw(stmt).await;
        self.availability.observe(&self.inner, outcome)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.availability.check()?;
        let outcome = self.inner.execute_unprepared(sql).await;
        self.availability.observe(&self.inner, outcome)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.availability.check()?;
        let outcome = self.inner.query_one_raw(stmt).await;
        self.availability.observe(&self.inner, outcome)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.availability.check()?;
        let outcome = self.inner.query_all_raw(stmt).await;
        self.availability.observe(&self.inner, outcome)
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}
