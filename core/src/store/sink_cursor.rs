use std::time::Duration;

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

/// Which process runs a sink, and until when: see
/// [`SinkCursorStore::acquire_sink_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLease {
    /// The sink's name.
    pub name: String,
    /// The process holding the lease (an opaque id chosen by the runner).
    pub holder: String,
    /// When the lease lapses unless the holder renews it.
    pub expires_at: DateTime<Utc>,
}

impl SinkLease {
    /// When a lease taken at `now` for `ttl` lapses (a `ttl` too large for
    /// a timestamp means a year).
    pub fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
        now + chrono::TimeDelta::from_std(ttl).unwrap_or_else(|_| chrono::TimeDelta::days(365))
    }
}

/// The durable cursors of event sinks, one per sink name, kept in the same
/// database as the event log, and the leases that let exactly one process
/// run each sink when several share the database.
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

    /// Deletes the cursor of the sink `name`, and its lease; `false` when
    /// it had no cursor.
    async fn delete_sink_cursor(&self, name: &str) -> Result<bool, StoreError>;

    /// Takes or renews the lease of the sink `name` for `holder` until
    /// `ttl` from now, in one atomic step: it succeeds (`true`) when no one
    /// holds the lease, when `holder` already does, or when the current
    /// holder's lease has lapsed; otherwise it changes nothing (`false`).
    ///
    /// Several processes on one database each run every configured sink's
    /// task, but only the lease holder delivers; the others wait and take
    /// over when the holder stops renewing. Expiry is judged by the
    /// caller's clock, so node clocks must agree to well within `ttl`.
    async fn acquire_sink_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives up `holder`'s lease of the sink `name` (a clean shutdown), so
    /// another process can take over at once; nothing when it holds none.
    async fn release_sink_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Every lease, lapsed or not, by name.
    async fn list_sink_leases(&self) -> Result<Vec<SinkLease>, StoreError>;
}
