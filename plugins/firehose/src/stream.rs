//! One `subscribeRepos` connection: cursor checks, backfill from the log,
//! the cut-over to the live feed, pings, and the error frames that end a
//! stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aurora_core::event::{encode_error, encode_info};
use aurora_core::store::{Sequencer, StoreError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};

use crate::FirehoseSettings;
use crate::hub::{Hub, Outbox, PAGE_SIZE, frame_of};

/// Backfilling subscribers join the live feed once they are this close to
/// it (in `seq`).
const JOIN_WITHIN: i64 = 100;

/// How long a closed stream waits for the client's closing handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What every connection shares.
pub(crate) struct Firehose {
    pub(crate) hub: Arc<Hub>,
    pub(crate) sequencer: Arc<dyn Sequencer>,
    pub(crate) settings: FirehoseSettings,
}

impl std::fmt::Debug for Firehose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firehose")
            .field("hub", &self.hub)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a stream ended.
enum End {
    /// The client went away, or stopped answering.
    Gone,
    /// An error frame ends the stream (`FutureCursor`, `ConsumerTooSlow`).
    Error(&'static str, &'static str),
    /// The log could not be read.
    Store(StoreError),
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Serves one upgraded connection until it ends.
pub(crate) async fn serve(socket: WebSocket, firehose: Arc<Firehose>, cursor: Option<i64>) {
    let (sink, incoming) = socket.split();
    let alive = AtomicBool::new(true);
    let mut writer = std::pin::pin!(async {
        let mut out = Writer {
            sink,
            firehose: &firehose,
            alive: &alive,
        };
        out.run(cursor).await;
    });
    let mut reader = std::pin::pin!(read(incoming, &alive));
    tokio::select! {
        () = &mut reader => {}
        () = &mut writer => {
            // Let the client read what was sent and close its side.
            let _ = tokio::time::timeout(CLOSE_GRACE, reader).await;
        }
    }
}

/// Reads what the client sends (pongs, its close) until it closes; any
/// message shows it is alive. Pings are answered by the WebSocket layer.
async fn read(mut incoming: SplitStream<WebSocket>, alive: &AtomicBool) {
    while let Some(Ok(message)) = incoming.next().await {
        alive.store(true, Ordering::Release);
        if let Message::Close(_) = message {
            return;
        }
    }
}

struct Writer<'a> {
    sink: SplitSink<WebSocket, Message>,
    firehose: &'a Firehose,
    alive: &'a AtomicBool,
}

impl Writer<'_> {
    async fn run(&mut self, cursor: Option<i64>) {
        match self.stream(cursor).await {
            Ok(()) | Err(End::Gone) => {}
            Err(End::Error(error, message)) => {
                if let Ok(frame) = encode_error(error, Some(message))
                    && self.send(frame).await.is_ok()
                {
                    self.close(close_code::POLICY, error).await;
                }
            }
            Err(End::Store(e)) => {
                tracing::warn!(error = %e, "firehose: cannot read the event log; closing a stream");
                self.close(close_code::ERROR, "InternalServerError").await;
            }
        }
    }

    async fn stream(&mut self, cursor: Option<i64>) -> Result<(), End> {
        let hub = self.firehose.hub.clone();
        hub.start().await?;
        let Some(cursor) = cursor else {
            let (outbox, joined_at) = hub.join();
            return self.live(outbox, joined_at).await;
        };
        let sequencer = &self.firehose.sequencer;
        if cursor > sequencer.current_seq().await?.unwrap_or(0) {
            return Err(End::Error("FutureCursor", "Cursor in the future."));
        }
        let skip_before = self.check_outdated(cursor).await?;

        // Backfill from the log until close to the live feed, then join it
        // and read the log up to the join point: the outbox has the rest.
        let mut last = cursor;
        loop {
            let live = hub.live_seq();
            if live.saturating_sub(last) <= JOIN_WITHIN {
                break;
            }
            self.replay(&mut last, live, skip_before).await?;
        }
        let (outbox, joined_at) = hub.join();
        self.replay(&mut last, joined_at, skip_before).await?;
        self.live(outbox, last).await
    }

    /// Whether `cursor` reaches back past the retention window: events
    /// after it were pruned, or the next one is older than the window.
    /// Then the client is told (`#info OutdatedCursor`) and the stream
    /// starts with the oldest events kept: the answer is the time before
    /// which events are skipped.
    async fn check_outdated(&mut self, cursor: i64) -> Result<Option<DateTime<Utc>>, End> {
        let sequencer = &self.firehose.sequencer;
        let retention = chrono::Duration::from_std(self.firehose.settings.retention)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let pruned = sequencer
            .oldest_seq()
            .await?
            .is_some_and(|oldest| cursor.saturating_add(1) < oldest);
        let expired = sequencer
            .events_after(cursor, 1)
            .await?
            .first()
            .is_some_and(|next| next.time < cutoff);
        if !(pruned || expired) {
            return Ok(None);
        }
        let info = encode_info(
            "OutdatedCursor",
            Some("Requested cursor exceeded limit. Possibly missing events."),
        )
        .map_err(|e| End::Store(StoreError::Corrupt(e.to_string())))?;
        self.send(info).await?;
        Ok(Some(cutoff))
    }

    /// Sends the log's events in `last < seq <= up_to` (skipping those
    /// before `skip_before`), a page at a time; `last` ends at `up_to`.
    /// Everything up to `up_to` must be committed (the hub has seen it).
    async fn replay(
        &mut self,
        last: &mut i64,
        up_to: i64,
        skip_before: Option<DateTime<Utc>>,
    ) -> Result<(), End> {
        while *last < up_to {
            let page = self
                .firehose
                .sequencer
                .events_in_range(*last, up_to, PAGE_SIZE)
                .await?;
            let complete = page.len() < PAGE_SIZE;
            for event in &page {
                if skip_before.is_none_or(|cutoff| event.time >= cutoff)
                    && let Some(frame) = frame_of(event)
                {
                    self.send(frame).await?;
                }
                *last = event.seq;
            }
            if complete {
                *last = up_to;
            }
        }
        Ok(())
    }

    /// Forwards the live feed, pinging while idle.
    async fn live(&mut self, mut outbox: Outbox, mut last: i64) -> Result<(), End> {
        let period = self.firehose.settings.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = outbox.next() => {
                    let Some(frame) = frame else {
                        return Err(if outbox.too_slow() {
                            End::Error("ConsumerTooSlow", "Stream consumer too slow")
                        } else {
                            End::Gone
                        });
                    };
                    if frame.seq > last {
                        self.send(frame.bytes).await?;
                        last = frame.seq;
                    }
                }
                _ = ping.tick() => {
                    // Nothing heard since the last ping: the client is gone.
                    if !self.alive.swap(false, Ordering::AcqRel) {
                        return Err(End::Gone);
                    }
                    self.send_message(Message::Ping(Bytes::new())).await?;
                }
            }
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), End> {
        self.send_message(Message::Binary(frame)).await
    }

    /// Sends one message; a client that takes longer than the send timeout
    /// to accept it is given up.
    async fn send_message(&mut self, message: Message) -> Result<(), End> {
        match tokio::time::timeout(
            self.firehose.settings.send_timeout(),
            self.sink.send(message),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(End::Gone),
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self
            .send_message(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    }
}
