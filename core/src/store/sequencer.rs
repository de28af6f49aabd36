use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::StoreError;
use crate::event::SeqEvent;

/// A receiver that wakes when new events are sequenced. Its value is the
/// highest `seq` known to be committed (0 when the log is empty).
pub type SeqWatch = watch::Receiver<i64>;

/// The read side of the event log, and its retention.
///
/// Sequence numbers increase in commit order: a reader that has seen `seq` N
/// never later finds a smaller `seq` appear. Invalidated events are never
/// returned. `subscribe` must also wake for events committed by *other*
/// processes writing to the same database (several server nodes on one
/// Postgres), not only for this process's own writes.
#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// The highest committed `seq`, or `None` when the log is empty.
    async fn current_seq(&self) -> Result<Option<i64>, StoreError>;

    /// The lowest `seq` still in the log (after pruning), or `None` when
    /// empty. Invalidated events still count: they keep their place in the
    /// log until pruned.
    async fn oldest_seq(&self) -> Result<Option<i64>, StoreError>;

    /// Up to `limit` events with `after < seq <= up_to`, ascending.
    async fn events_in_range(
        &self,
        after: i64,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError>;

    /// Up to `limit` events with `seq > cursor`, ascending.
    async fn events_after(&self, cursor: i64, limit: usize) -> Result<Vec<SeqEvent>, StoreError> {
        self.events_in_range(cursor, i64::MAX, limit).await
    }

    /// A live wake-up: the receiver changes whenever events are committed.
    /// Consumers read the log with [`events_after`](Self::events_after) when
    /// woken; the value is a hint, the log is the truth.
    fn subscribe(&self) -> SeqWatch;

    /// Deletes the events sequenced before `before` (invalidated or not),
    /// except the newest event of the log, which is always kept so that
    /// [`current_seq`](Self::current_seq) and the numbering of later events
    /// never go back, and the events an event sink has not acknowledged
    /// yet (after the smallest cursor of the backend's
    /// [`SinkCursorStore`](super::SinkCursorStore)). Returns how many events
    /// were deleted.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
