//! The [`EventSink`] plugin trait: a destination for the event log (Kafka,
//! NATS, webhooks, files, ...).

use async_trait::async_trait;

use crate::event::SeqEvent;
use crate::store::BackendError;

/// Why a sink could not take a batch. The runner retries the same batch with
/// backoff; nothing after it is delivered first.
#[derive(Debug, thiserror::Error)]
#[error("sink delivery failed: {0}")]
pub struct SinkError(pub BackendError);

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
