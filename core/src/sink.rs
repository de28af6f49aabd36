//! The [`EventSink`] plugin trait: a destination for the event log (Kafka,
//! NATS, webhooks, files, ...), and [`ConfigurableSink`], how a sink is
//! built from the server's configuration.
//!
//! Sinks that write JSON use the shared event schema of
//! [`event::json`](crate::event::json).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::event::SeqEvent;
use crate::store::BackendError;

/// Why a sink could not take a batch. The runner retries the same batch with
/// backoff; nothing after it is delivered first.
#[derive(Debug, thiserror::Error)]
#[error("sink delivery failed: {0}")]
pub struct SinkError(pub BackendError);

impl SinkError {
    /// A delivery failure caused by `error` (an I/O error, an HTTP status, a
    /// broker's refusal, or a message).
    pub fn new(error: impl Into<BackendError>) -> Self {
        Self(error.into())
    }
}

/// A destination for repo events.
///
/// The server runs each sink from its own durable cursor: it reads batches of
/// events after the cursor, calls [`deliver`](Self::deliver), and advances the
/// cursor only once `deliver` returned `Ok`. Delivery is therefore
/// at-least-once and in `seq` order; a sink that needs exactly-once
/// de-duplicates on `seq`.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// A stable, unique name; it keys the sink's cursor in the database.
    fn name(&self) -> &str;

    /// Delivers a batch of events in ascending `seq` order. Returning `Ok`
    /// acknowledges the whole batch.
    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError>;
}

/// A sink the `aurora` server can build from a `[[sinks]]` entry of its
/// configuration:
///
/// ```toml
/// [[sinks]]
/// kind = "jsonl"          # selects the implementation: KIND
/// name = "audit"          # the sink's name (keys its cursor)
/// path = "/var/log/aurora" # ...and the kind's own keys: Config
/// ```
///
/// The server takes out the keys every sink has (`kind`, `name`, and the
/// runner's settings such as `start` and `batch_size`) and deserializes the
/// rest into [`Config`](Self::Config), which should be
/// `#[serde(deny_unknown_fields)]` so that a misspelt key fails start-up
/// instead of being ignored.
pub trait ConfigurableSink: EventSink + Sized {
    /// The `kind` that selects this sink, e.g. `"jsonl"`.
    const KIND: &'static str;

    /// The kind's own settings.
    type Config: DeserializeOwned;

    /// Builds the sink named `name` from its settings. This checks the
    /// settings and fails with a message saying what is wrong; it must not
    /// connect to the sink's target, which may be down at start-up (the
    /// runner retries delivery until it comes back).
    fn from_config(
        name: &str,
        config: Self::Config,
        env: &SinkEnv,
    ) -> Result<Self, SinkConfigError>;
}

/// What the server tells a sink it builds from configuration.
#[derive(Debug, Clone)]
pub struct SinkEnv {
    data_dir: PathBuf,
}

impl SinkEnv {
    /// An environment whose data folder is `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
        }
    }

    /// The server's data folder: relative paths in a sink's settings are
    /// taken relative to it.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `path` relative to the data folder, or `path` itself when absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.data_dir.join(path)
    }
}

/// A sink's settings are invalid; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkConfigError(pub String);

impl SinkConfigError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
