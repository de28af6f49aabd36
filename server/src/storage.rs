//! Opens the storage backends the configuration asks for.

use std::sync::Arc;
use std::time::Duration;

use aurora_blob_fs::FsBlobStore;
use aurora_core::PdsBuilder;
use aurora_core::store::{Sequencer, SinkCursorStore};
use aurora_storage_memory::{MemoryBlobStore, MemoryStore};
use aurora_storage_sql::{SqlOptions, SqlStore, SqliteSync};

use crate::config::{Config, ConfigError, SqliteSynchronous};

/// The opened storage.
#[derive(Debug, Clone)]
pub enum Storage {
    /// SQLite or Postgres, with blobs on the filesystem.
    Sql {
        /// Repo store, sequencer and accounts.
        store: SqlStore,
        /// Blobs.
        blobs: FsBlobStore,
    },
    /// Everything in memory (`memory:`); nothing persists.
    Memory {
        /// Repo store, sequencer and accounts.
        store: MemoryStore,
        /// Blobs.
        blobs: MemoryBlobStore,
    },
}

fn sql_options(config: &Config) -> SqlOptions {
    SqlOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        sqlite_sync: match config.database.sqlite_synchronous {
            SqliteSynchronous::Full => SqliteSync::Full,
            SqliteSynchronous::Normal => SqliteSync::Normal,
        },
        sqlite_cache_kib: config.database.sqlite_cache_mib.saturating_mul(1024),
    }
}

fn database_error(message: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        key: "AURORA_DATABASE_URL".to_owned(),
        message: message.to_string(),
    }
}

/// Creates the data folder when the configured storage lives in it.
fn ensure_data_dir(config: &Config) -> Result<(), ConfigError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ConfigError {
        key: "AURORA_DATA_DIR".to_owned(),
        message: format!("cannot create {}: {e}", config.data_dir.display()),
    })
}

/// Connects to the configured database and applies migrations.
pub async fn open_database(config: &Config) -> Result<SqlStore, ConfigError> {
    let url = config.effective_database_url();
    if config.database_url.is_none() {
        ensure_data_dir(config)?;
    }
    SqlStore::open(&url, &sql_options(config))
        .await
        .map_err(database_error)
}

impl Storage {
    /// Opens the database (migrating it) and the blob store.
    pub async fn open(config: &Config) -> Result<Self, ConfigError> {
        if config
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("memory:"))
        {
            return Ok(Self::Memory {
                store: MemoryStore::new(),
                blobs: MemoryBlobStore::new(),
            });
        }
        let store = open_database(config).await?;
        let blob_dir = config.effective_blob_dir();
        let blobs = FsBlobStore::open(&blob_dir)
            .await
            .map_err(|e| ConfigError {
                key: "AURORA_BLOB_DIR".to_owned(),
                message: format!("cannot open {}: {e}", blob_dir.display()),
            })?;
        Ok(Self::Sql { store, blobs })
    }

    /// Hands the stores to a builder.
    pub fn install(&self, builder: PdsBuilder) -> PdsBuilder {
        match self {
            Self::Sql { store, blobs } => builder
                .storage(Arc::new(store.clone()))
                .blob_store(Arc::new(blobs.clone())),
            Self::Memory { store, blobs } => builder
                .storage(Arc::new(store.clone()))
                .blob_store(Arc::new(blobs.clone())),
        }
    }

    /// The event sinks' cursors.
    pub fn sink_cursors(&self) -> Arc<dyn SinkCursorStore> {
        match self {
            Self::Sql { store, .. } => Arc::new(store.clone()),
            Self::Memory { store, .. } => Arc::new(store.clone()),
        }
    }

    /// The event log.
    pub fn sequencer(&self) -> Arc<dyn Sequencer> {
        match self {
            Self::Sql { store, .. } => Arc::new(store.clone()),
            Self::Memory { store, .. } => Arc::new(store.clone()),
        }
    }

    /// Closes database connections.
    pub async fn close(&self) {
        if let Self::Sql { store, .. } = self {
            store.close().await;
        }
    }
}
