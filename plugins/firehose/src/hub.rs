//! The live feed: one reader follows the event log, frames each event once
//! and hands the same bytes to every live subscriber's bounded outbox.
//!
//! The hub's `live_seq` is the `seq` of the last event it handed out (or
//! the log head when it started). A subscriber that joins gets exactly the
//! events with a larger `seq` through its outbox; everything up to
//! `live_seq` is committed and readable from the log. That is what lets a
//! backfilling subscriber cut over without a gap or a duplicate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aurora_core::event::{SeqEvent, encode_event};
use aurora_core::store::{SeqWatch, Sequencer, StoreError};
use bytes::Bytes;
use tokio::sync::{OnceCell, mpsc};

/// Events read from the log per query, by the live reader and by
/// backfilling subscribers.
pub const PAGE_SIZE: usize = 100;

/// How long the live reader waits for a wake-up before it looks at the log
/// anyway (a safety net: the sequencer's wake-up is the real signal).
const IDLE_RECHECK: Duration = Duration::from_secs(10);

/// How long the live reader waits after a failed read of the log.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One framed event, shared by every subscriber it is sent to.
#[derive(Debug, Clone)]
pub(crate) struct LiveFrame {
    /// The event's position in the log.
    pub(crate) seq: i64,
    /// The whole WebSocket message (header + body).
    pub(crate) bytes: Bytes,
}

/// The frame of a stored event, or `None` (logged) when its stored payload
/// cannot be decoded: such an event is skipped by every subscriber alike.
pub(crate) fn frame_of(event: &SeqEvent) -> Option<Bytes> {
    match encode_event(event.seq, event.event_type, &event.payload) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(seq = event.seq, error = %e, "skipping an event that cannot be framed");
            None
        }
    }
}

struct Outlet {
    id: u64,
    tx: mpsc::Sender<LiveFrame>,
    too_slow: Arc<AtomicBool>,
}

struct State {
    live_seq: i64,
    next_id: u64,
    outlets: Vec<Outlet>,
}

impl State {
    /// Publishes the subscriber count and outbox fill to the metrics.
    fn publish(&self) {
        let (mut total, mut max) = (0_usize, 0_usize);
        for outlet in &self.outlets {
            let waiting = outlet.tx.max_capacity() - outlet.tx.capacity();
            total += waiting;
            max = max.max(waiting);
        }
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("aurora_firehose_subscribers").set(self.outlets.len() as f64);
            metrics::gauge!("aurora_firehose_outbox_frames_total").set(total as f64);
            metrics::gauge!("aurora_firehose_outbox_frames_max").set(max as f64);
        }
    }
}

/// The live feed of one PDS.
pub(crate) struct Hub {
    sequencer: Arc<dyn Sequencer>,
    outbox_frames: usize,
    state: Mutex<State>,
    started: OnceCell<()>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Hub")
            .field("live_seq", &state.live_seq)
            .field("subscribers", &state.outlets.len())
            .finish_non_exhaustive()
    }
}

/// A live subscriber's end of the feed. Dropping it leaves the feed.
pub(crate) struct Outbox {
    rx: mpsc::Receiver<LiveFrame>,
    too_slow: Arc<AtomicBool>,
    id: u64,
    hub: Weak<Hub>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.id)
            .field("too_slow", &self.too_slow())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Whether the outbox overflowed: the subscriber fell too far behind
    /// and gets no more frames.
    pub(crate) fn too_slow(&self) -> bool {
        self.too_slow.load(Ordering::Acquire)
    }

    /// The next frame; `None` once the feed dropped this subscriber (too
    /// slow) or stopped.
    pub(crate) async fn next(&mut self) -> Option<LiveFrame> {
        if self.too_slow() {
            return None;
        }
        self.rx.recv().await
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.lock();
            state.outlets.retain(|o| o.id != self.id);
            state.publish();
        }
    }
}

impl Hub {
    /// A hub over `sequencer`; each subscriber's outbox holds at most
    /// `outbox_frames` frames. The reader starts with the first subscriber.
    pub(crate) fn new(sequencer: Arc<dyn Sequencer>, outbox_frames: usize) -> Arc<Self> {
        Arc::new(Self {
            sequencer,
            outbox_frames: outbox_frames.max(1),
            state: Mutex::new(State {
                live_seq: 0,
                next_id: 0,
                outlets: Vec::new(),
            }),
            started: OnceCell::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the live reader at the current log head (once).
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        self.started
            .get_or_try_init(|| async {
                let wake = self.sequencer.subscribe();
                let head = self.sequencer.current_seq().await?.unwrap_or(0);
                self.lock().live_seq = head;
                tokio::spawn(follow(Arc::downgrade(self), wake, head));
                Ok(())
            })
            .await
            .copied()
    }

    /// The `seq` of the last event handed to live subscribers.
    pub(crate) fn live_seq(&self) -> i64 {
        self.lock().live_seq
    }

    /// Joins the live feed: the outbox receives every event after the
    /// returned `seq`, which is committed and readable from the log.
    pub(crate) fn join(self: &Arc<Self>) -> (Outbox, i64) {
        let (tx, rx) = mpsc::channel(self.outbox_frames);
        let too_slow = Arc::new(AtomicBool::new(false));
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.outlets.push(Outlet {
            id,
            tx,
            too_slow: too_slow.clone(),
        });
        let joined_at = state.live_seq;
        state.publish();
        drop(state);
        (
            Outbox {
                rx,
                too_slow,
                id,
                hub: Arc::downgrade(self),
            },
            joined_at,
        )
    }

    /// Hands `event` to every live subscriber. A subscriber whose outbox
    /// is full is marked too slow and dropped from the feed.
    fn dispatch(&self, event: &SeqEvent) {
        {
            let mut state = self.lock();
            if state.outlets.is_empty() {
                state.live_seq = event.seq;
                return;
            }
        }
        // Framed outside the lock. A subscriber joining meanwhile sees the
        // old `live_seq`, so it expects this event from its outbox and gets
        // it below.
        let frame = frame_of(event).map(|bytes| LiveFrame {
            seq: event.seq,
            bytes,
        });
        let mut state = self.lock();
        if let Some(frame) = frame {
            state
                .outlets
                .retain(|outlet| match outlet.tx.try_send(frame.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        outlet.too_slow.store(true, Ordering::Release);
                        metrics::counter!("aurora_firehose_too_slow_total").increment(1);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            metrics::counter!("aurora_firehose_events_total").increment(1);
            state.publish();
        }
        state.live_seq = event.seq;
    }
}

/// The live reader: reads the log after `last` whenever the sequencer
/// wakes it, and dispatches each event, until the hub is dropped.
async fn follow(hub: Weak<Hub>, mut wake: SeqWatch, mut last: i64) {
    loop {
        let Some(h) = hub.upgrade() else { return };
        // Marked seen before reading, so a commit landing during the read
        // wakes the next wait at once.
        wake.borrow_and_update();
        match h.sequencer.events_after(last, PAGE_SIZE).await {
            Ok(events) if !events.is_empty() => {
                for event in &events {
                    h.dispatch(event);
                    last = event.seq;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "firehose: cannot read the event log");
                drop(h);
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        drop(h);
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    // The sequencer is gone; look again now and then.
                    tokio::time::sleep(IDLE_RECHECK).await;
                }
            }
            () = tokio::time::sleep(IDLE_RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_core::EventType;
    use aurora_core::syntax::Did;
    use chrono::Utc;

    fn event(seq: i64) -> SeqEvent {
        let body = aurora_core::event::IdentityBody {
            did: Did::parse("did:plc:abc").unwrap(),
            handle: None,
            time: aurora_core::syntax::Datetime::now(),
        };
        SeqEvent {
            seq,
            did: body.did.clone(),
            event_type: EventType::Identity,
            time: Utc::now(),
            payload: body.to_payload(),
        }
    }

    struct NoLog;

    #[async_trait::async_trait]
    impl Sequencer for NoLog {
        async fn current_seq(&self) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
        async fn oldest_seq(&self) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
        async fn events_in_range(
            &self,
            _: i64,
            _: i64,
            _: usize,
        ) -> Result<Vec<SeqEvent>, StoreError> {
            Ok(Vec::new())
        }
        fn subscribe(&self) -> SeqWatch {
            tokio::sync::watch::channel(0).1
        }
        async fn prune(&self, _: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn subscribers_get_what_follows_their_join_and_overflow_drops_them() {
        let hub = Hub::new(Arc::new(NoLog), 2);
        hub.dispatch(&event(1));
        let (mut early, at) = hub.join();
        assert_eq!(at, 1);
        hub.dispatch(&event(2));
        let (mut late, at) = hub.join();
        assert_eq!(at, 2);
        hub.dispatch(&event(3));
        assert_eq!(early.next().await.unwrap().seq, 2);
        assert_eq!(early.next().await.unwrap().seq, 3);
        assert_eq!(late.next().await.unwrap().seq, 3);
        // `late` reads nothing more: two frames fill it, the third overflows.
        hub.dispatch(&event(4));
        hub.dispatch(&event(5));
        assert_eq!(early.next().await.unwrap().seq, 4);
        assert_eq!(early.next().await.unwrap().seq, 5);
        hub.dispatch(&event(6));
        assert!(late.too_slow());
        assert!(late.next().await.is_none());
        assert!(!early.too_slow());
        assert_eq!(hub.lock().outlets.len(), 1, "the slow one left the feed");
        drop(early);
        assert!(
            hub.lock().outlets.is_empty(),
            "dropping an outbox leaves the feed"
        );
        assert_eq!(hub.live_seq(), 6);
    }
}
