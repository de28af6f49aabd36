//! # aurora-storage-sql
//!
//! [`SqlStore`]: the [`RepoStore`], [`Sequencer`], [`AccountStore`],
//! [`OAuthStore`](aurora_core::store::OAuthStore) and sink cursors of
//! Aurora Locus on SQLite or Postgres, through one sea-orm code path. The URL
//! scheme picks the engine: `sqlite://path/to/db.sqlite` (created when
//! missing) or `postgres://...`.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` by default (a committed
//! write survives power loss) and write transactions begin `IMMEDIATE`, so
//! concurrent writers queue on the busy timeout instead of failing. On
//! Postgres, events are numbered under a transaction-scoped advisory lock so
//! that `seq` order is commit order across server processes, and announced
//! with `pg_notify` so that every process's subscribers wake for them.
//!
//! [`RepoStore`]: aurora_core::RepoStore
//! [`Sequencer`]: aurora_core::Sequencer
//! [`AccountStore`]: aurora_core::AccountStore

mod account;
mod availability;
mod blobs;
mod convert;
mod entity;
mod group_commit;
mod invite;
mod oauth;
mod recent_events;
mod repo;
mod sequencer;
mod sink_cursor;
mod sqlite_native;
mod sqlite_writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aurora_core::store::{CommitStage, StoreError};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, RuntimeErr, SqliteTransactionMode,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionOptions, TransactionTrait,
};
use tokio::sync::watch;

/// The database engine behind a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Engine {
    /// The engine a database URL asks for, by scheme.
    pub fn from_url(url: &str) -> Result<Self, ConnectError> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(ConnectError::UnsupportedScheme(scheme.to_owned())),
        }
    }
}

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// fsync on every commit: a committed write survives power loss. The default.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the
    /// last commits on power loss. Faster.
    Normal,
}

impl SqliteSync {
    /// The value of SQLite's `synchronous` pragma.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Maximum pooled connections; `None`: 16 on Postgres, and on SQLite
    /// [`SQLITE_READERS`] reading connections (writes have their own).
    pub max_connections: Option<u32>,
    /// How long to wait for a connection (and, on SQLite, for the write
    /// lock; on Postgres, to connect). It bounds how long the first calls
    /// after the database goes away wait for their `Unavailable`; later
    /// ones fail at once until it answers again (`availability.rs`).
    pub acquire_timeout: Duration,
    /// SQLite durability.
    pub sqlite_sync: SqliteSync,
    /// SQLite page cache of each connection, in KiB.
    pub sqlite_cache_kib: u32,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(2),
            sqlite_sync: SqliteSync::Full,
            sqlite_cache_kib: SQLITE_CACHE_KIB,
        }
    }
}

/// Default reading connections on SQLite. Its queries take microseconds
/// and each connection has a thread and a page cache of its own: a few
/// readers keep the cores busy, more only cost memory and thread switches
/// (measured: 4 against 16 served as many requests with 12 MiB less).
pub const SQLITE_READERS: u32 = 4;

/// Default pool size on Postgres.
pub const POSTGRES_CONNECTIONS: u32 = 16;

/// Default SQLite page cache of each connection, in KiB. Small: the
/// kernel's page cache holds the database file anyway, outside the
/// process, and this holds the hot index pages.
pub const SQLITE_CACHE_KIB: u32 = 2 * 1024;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL's scheme names no supported engine.
    #[error("unsupported database scheme {0:?} (expected sqlite:// or postgres://)")]
    UnsupportedScheme(String),
    /// The URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Unreachable(String),
    /// Applying the schema failed.
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// Repo store, sequencer and account store on a SQL database.
///
/// Cheap to clone; clones share the connection pool and the live wake-up.
#[derive(Clone)]
pub struct SqlStore {
    shared: Arc<Shared>,
    fault_at: Option<CommitStage>,
}

struct Shared {
    db: DatabaseConnection,
    /// `db` behind the availability gate (see `availability.rs`): what
    /// the stores read through.
    reads: availability::GatedConnection,
    /// Where write transactions run: on SQLite a pool of one connection,
    /// so writers queue here, in order, instead of sleeping in SQLite's
    /// busy handler; on Postgres the same pool as `db`.
    writer: DatabaseConnection,
    /// SQLite (on a file): the connections of the write path's hot
    /// statements (see `sqlite_native.rs`).
    sqlite_native: Option<Arc<sqlite_native::NativeSqlite>>,
    /// SQLite (on a file): the thread that writes the commits (see
    /// `sqlite_writer.rs`); elsewhere `commits` queues them.
    sqlite_writer: Option<sqlite_writer::SqliteWriter>,
    /// Commits waiting to be written together (see `group_commit.rs`).
    commits: group_commit::CommitQueue,
    engine: Engine,
    head: Arc<watch::Sender<i64>>,
    /// Whether the task following other processes' writes was started
    /// (Postgres; see `sequencer.rs`).
    listening: AtomicBool,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.shared.engine)
            .field("head", &*self.shared.head.borrow())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects and applies the schema: the usual way to get a store.
    pub async fn open(url: &str, options: &SqlOptions) -> Result<Self, ConnectError> {
        let store = Self::connect(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect(url: &str, options: &SqlOptions) -> Result<Self, ConnectError> {
        let engine = Engine::from_url(url)?;
        let (db, writer, sqlite_native) = match engine {
            Engine::Sqlite => {
                let connect = SqliteConnectOptions::from_str(url)
                    .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match options.sqlite_sync {
                        SqliteSync::Full => SqliteSynchronous::Full,
                        SqliteSync::Normal => SqliteSynchronous::Normal,
                    })
                    .busy_timeout(options.acquire_timeout)
                    .foreign_keys(true)
                    // A negative cache_size is in KiB. Temp tables in memory.
                    .pragma("cache_size", format!("-{}", options.sqlite_cache_kib))
                    .pragma("temp_store", "memory");
                // `after_release` (here and below): a connection handed back
                // still inside a transaction is closed, not reused. A write
                // that failed on a full disk (SQLITE_FULL) left the writing
                // connection like that, and the writes after it ran inside
                // that transaction: acknowledged, never committed (shown by
                // `a_full_disk_fails_writes_cleanly_and_reads_go_on`, which
                // fails without this). Closing the connection rolls it back.
                // No ping before handing a SQLite connection out (here and
                // below): it is a file on this machine, not a socket that
                // can go stale, and the ping is a round trip to the
                // connection's thread on every acquire.
                let pool = SqlitePoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(SQLITE_READERS))
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                    .connect_with(connect.clone())
                    .await
                    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
                // SQLite has one writer at a time; one connection for
                // write transactions makes them wait their turn in the pool
                // (first come, first served) rather than in SQLite's busy
                // handler, whose growing sleeps stretch the tail latency.
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                    .connect_with(connect.clone())
                    .await
                    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
                // The write path's hot statements go round sqlx's thread
                // switches (see `sqlite_native.rs`); an in-memory database
                // would be another database there, so it keeps the sqlx path.
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let native = (!in_memory).then(|| {
                    Arc::new(sqlite_native::NativeSqlite::new(
                        connect.get_filename(),
                        options,
                    ))
                });
                (
                    SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
                    SqlxSqliteConnector::from_sqlx_sqlite_pool(writer),
                    native,
                )
            }
            Engine::Postgres => {
                let connect = PgConnectOptions::from_str(url)
                    .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?
                    .disable_statement_logging();
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(POSTGRES_CONNECTIONS))
                    .acquire_timeout(options.acquire_timeout)
                    .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                    .connect_with(connect)
                    .await
                    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
                let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
                (db.clone(), db, None)
            }
        };
        db.ping()
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let head = Arc::new(watch::channel(0).0);
        let sqlite_writer = match &sqlite_native {
            Some(native) => Some(
                sqlite_writer::SqliteWriter::start(
                    native.clone(),
                    writer.get_sqlite_connection_pool().clone(),
                    head.clone(),
                )
                .map_err(|e| ConnectError::Unreachable(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                reads: availability::GatedConnection {
                    inner: db.clone(),
                    availability: Arc::default(),
                },
                db,
                writer,
                sqlite_native,
                sqlite_writer,
                commits: group_commit::CommitQueue::default(),
                engine,
                head,
                listening: AtomicBool::new(false),
            }),
            fault_at: None,
        })
    }

    /// Brings the schema up to date (idempotent) and loads the log head.
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        aurora_migrations::migrate(&self.shared.db)
            .await
            .map_err(|e| ConnectError::Migration(e.to_string()))?;
        let head = self
            .max_seq()
            .await
            .map_err(|e| ConnectError::Migration(e.to_string()))?
            .unwrap_or(0);
        self.shared.head.send_replace(head);
        Ok(())
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        self.shared.engine
    }

    /// The underlying sea-orm connection, for the server's own tables and
    /// health checks.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.shared.db
    }

    /// The connection pool's size and how many of its connections are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self.shared.engine {
            Engine::Sqlite => {
                let pool = self.shared.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Engine::Postgres => {
                let pool = self.shared.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.shared.db.ping().await.map_err(db_err)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        // Closing a cloned connection closes the shared pool.
        let _ = self.shared.writer.clone().close().await;
        let _ = self.shared.db.clone().close().await;
    }

    /// A view of the same database whose `apply_commit` fails right after
    /// `stage`, for fault-injection tests of atomicity. Not for production.
    #[doc(hidden)]
    #[must_use]
    pub fn with_fault_after(&self, stage: CommitStage) -> Self {
        Self {
            shared: self.shared.clone(),
            fault_at: Some(stage),
        }
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction never has to upgrade a stale
    /// read snapshot and fail with `SQLITE_BUSY`.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.shared.engine == Engine::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let availability = &self.shared.reads.availability;
        availability.check().map_err(db_err)?;
        let outcome = self.shared.writer.begin_with_options(options).await;
        availability
            .observe(&self.shared.db, outcome)
            .map_err(db_err)
    }

    /// SQLite (on a file): the newest events written by the writer
    /// thread (see `recent_events.rs`).
    pub(crate) fn recent_events(&self) -> Option<&recent_events::RecentEvents> {
        self.shared
            .sqlite_writer
            .as_ref()
            .map(sqlite_writer::SqliteWriter::recent_events)
    }

    /// SQLite's own connections for the hot paths (see `sqlite_native.rs`).
    pub(crate) fn native_sqlite(&self) -> Option<&sqlite_native::NativeSqlite> {
        self.shared.sqlite_native.as_deref()
    }

    /// The connection reads go through: it fails at once while the
    /// database is known to be down (see `availability.rs`).
    pub(crate) fn reads(&self) -> &availability::GatedConnection {
        &self.shared.reads
    }

    /// Tells subscribers that events up to `seq` are committed.
    fn advance_head(&self, seq: i64) {
        advance_head(&self.shared.head, seq);
    }
}

/// Moves `head` to `seq` if that is further (subscribers wake on a move).
pub(crate) fn advance_head(head: &watch::Sender<i64>, seq: i64) {
    head.send_if_modified(|head| {
        let moved = seq > *head;
        if moved {
            *head = seq;
        }
        moved
    });
}

/// What kind of trouble a database error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The database cannot be reached or is shutting down: retryable.
    Unavailable,
    /// Out of space (a full disk): writes fail, reads go on.
    Full,
    /// Anything else.
    Other,
}

/// Classifies `e` by the driver's error and, for database errors, the
/// SQLite result code or the Postgres SQLSTATE.
pub(crate) fn trouble(e: &DbErr) -> Trouble {
    use sea_orm::sqlx::Error as SqlxError;
    let inner = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return Trouble::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            inner
        }
        _ => return Trouble::Other,
    };
    match &**inner {
        SqlxError::Io(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => Trouble::Unavailable,
        SqlxError::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                // SQLITE_FULL and Postgres disk_full.
                "13" | "53100" => Trouble::Full,
                // Postgres: connection exceptions (class 08), shutdowns and
                // restarts (57P01–57P03), too many connections (53300).
                c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => {
                    Trouble::Unavailable
                }
                _ => Trouble::Other,
            }
        }
        _ => Trouble::Other,
    }
}

/// Maps a database error to a [`StoreError`]: connection trouble is
/// `Unavailable` (a 503, retryable), a full disk is `Full` (507); anything
/// else is a backend failure.
pub(crate) fn db_err(e: DbErr) -> StoreError {
    match trouble(&e) {
        Trouble::Unavailable => StoreError::Unavailable(e.to_string()),
        Trouble::Full => StoreError::Full(e.to_string()),
        Trouble::Other => StoreError::Backend(Box::new(e)),
    }
}
