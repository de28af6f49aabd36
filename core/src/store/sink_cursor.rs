use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Where an event sink is in the log: every event up to and including
/// `seq` has been delivered to it and acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCursor {
    /// The sink's name ([`EventSink::name`](crate::sink::EventSink::name)).
    pub name: String,
    /// The last acknowledged `seq`.
    pub seq: i64,
    /// When the cursor last moved.
    pub updated_at: DateTime<Utc>,
}

/// The durable cursors of event sinks, one per sink name, kept in the same
/// database as the event log.
///
/// A stored cursor also holds back the log's retention: the backend's
/// [`Sequencer::prune`](super::Sequencer::prune) never deletes an event
/// after the smallest stored cursor, so a sink whose target is down for
/// longer than the retention period still gets every event once it comes
/// back. A sink that is no longer configured should have its cursor
/// deleted ([`delete_sink_cursor`](Self::delete_sink_cursor)).
#[async_trait]
pub trait SinkCursorStore: Send + Sync + 'static {
    /// The cursor of the sink `name`, if it has one.
    async fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, StoreError>;

    /// Stores `seq` as the cursor of the sink `name`, creating it if needed.
    async fn set_sink_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError>;

    /// Every stored cursor, by name.
    async fn list_sink_cursors(&self) -> Result<Vec<SinkCursor>, StoreError>;

    /// Deletes the cursor of the sink `name`; `false` when it had none.
    async fn delete_sink_cursor(&self, name: &str) -> Result<bool, StoreError>;
}
