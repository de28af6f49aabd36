use async_trait::async_trait;
use tokio::sync::watch;

use super::StoreError;
use crate::event::SeqEvent;

/// A receiver that wakes when new events are sequenced. Its value is the
/// highest `seq` known to be committed (0 when the log is empty).
pub type SeqWatch = watch::Receiver<i64>;

/// The read side of the event log.
///
/// Sequence numbers increase in commit order: a reader that has seen `seq` N
/// never later finds a smaller `seq` appear. Invalidated events are never
/// returned.
#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// The highest committed `seq`, or `None` when the log is empty.
    async fn current_seq(&self) -> Result<Option<i64>, StoreError>;

    /// The lowest `seq` still in the log (after pruning), or `None` when empty.
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
}
