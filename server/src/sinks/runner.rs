//! The sink runner: one task per event sink, delivering the event log to it
//! from its own durable cursor (ARCHITECTURE.md, rule 4).
//!
//! Each task reads the events after the sink's cursor in batches of at most
//! `batch_size`, hands a batch to [`EventSink::deliver`], and stores the
//! batch's last `seq` as the new cursor only once the sink acknowledged the
//! batch with `Ok`. Delivery is therefore **at-least-once and in `seq`
//! order**: a batch that fails is retried, whole, until it is acknowledged,
//! and nothing after it is delivered first; a batch acknowledged just
//! before the process stopped (before its cursor was stored) is delivered
//! again after a restart. Sinks that need exactly-once de-duplicate on
//! `seq`.
//!
//! Retries wait with exponential backoff and jitter: half a second, then
//! doubling up to the sink's `max_backoff`, each wait drawn between half
//! and all of that. Reading the log or storing the cursor failing is
//! retried the same way.
//!
//! The runner only ever reads the log: writers never wait for a sink, and
//! a sink that is down, slow or failing costs the write path nothing. When
//! it has caught up it sleeps until the sequencer announces new events.
//!
//! A sink without a stored cursor starts at the head of the log (only
//! events from then on) or, with `start = "oldest"`, before the oldest
//! event still kept; the starting cursor is stored at once, so that
//! retention pruning keeps every event the sink has yet to get.
//!
//! Lag (events and seconds behind the head) is kept per sink in a
//! [`SinkStatusBoard`] and logged every minute while a sink is behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aurora_core::event::SeqEvent;
use aurora_core::plugin::BackgroundTask;
use aurora_core::sink::EventSink;
use aurora_core::store::{Sequencer, SinkCursorStore, StoreError};
use aurora_core::{PdsContext, Plugin};
use chrono::{DateTime, Utc};
use rand::Rng as _;

use crate::config::{SinkEntry, SinkStart};

/// How a sink is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerSettings {
    /// Where a sink without a stored cursor starts.
    pub start: SinkStart,
    /// Most events per batch.
    pub batch_size: usize,
    /// The first wait before a retry.
    pub min_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// How often a sink that is behind logs its lag.
    pub lag_log_interval: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            start: SinkStart::Head,
            batch_size: 500,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            lag_log_interval: Duration::from_secs(60),
        }
    }
}

impl RunnerSettings {
    /// The settings of a `[[sinks]]` entry.
    pub fn from_entry(entry: &SinkEntry) -> Self {
        Self {
            start: entry.start,
            batch_size: entry.batch_size,
            max_backoff: entry.max_backoff.0,
            ..Self::default()
        }
    }
}

/// How far a sink is behind the head of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// The head of the log (`None` when it is empty).
    pub head: Option<i64>,
    /// Events sequenced after the cursor (by `seq`; pruned or invalidated
    /// events in between count too).
    pub events: i64,
    /// Age of the oldest event the sink has not acknowledged; zero when it
    /// has them all.
    pub behind: Duration,
}

/// Measures the lag of a sink at `cursor`.
pub async fn measure_lag(sequencer: &dyn Sequencer, cursor: i64) -> Result<Lag, StoreError> {
    let head = sequencer.current_seq().await?;
    let events = head.map_or(0, |head| head.saturating_sub(cursor).max(0));
    let behind = if events == 0 {
        Duration::ZERO
    } else {
        sequencer
            .events_after(cursor, 1)
            .await?
            .first()
            .map_or(Duration::ZERO, |oldest| age(oldest.time))
    };
    Ok(Lag {
        head,
        events,
        behind,
    })
}

fn age(time: DateTime<Utc>) -> Duration {
    (Utc::now() - time).to_std().unwrap_or(Duration::ZERO)
}

/// What a running sink reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// The last acknowledged `seq` (`None` before the cursor is set up).
    pub cursor: Option<i64>,
    /// Lag at the last measurement.
    pub lag: Lag,
    /// Failed attempts in a row at the current batch (0 when healthy).
    pub failures: u32,
    /// The last failure's message, until a delivery succeeds.
    pub last_error: Option<String>,
    /// When a batch was last acknowledged.
    pub last_delivery: Option<DateTime<Utc>>,
    /// Events acknowledged since the process started.
    pub delivered: u64,
}

/// The statuses of the running sinks, shared between their tasks and
/// whoever reports on them (logs, metrics, tests).
#[derive(Debug, Clone, Default)]
pub struct SinkStatusBoard {
    inner: Arc<Mutex<BTreeMap<String, SinkStatus>>>,
}

impl SinkStatusBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every sink's status, by name.
    pub fn snapshot(&self) -> Vec<SinkStatus> {
        self.lock().values().cloned().collect()
    }

    /// The status of the sink `name`.
    pub fn get(&self, name: &str) -> Option<SinkStatus> {
        self.lock().get(name).cloned()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut SinkStatus)) {
        let mut all = self.lock();
        let status = all.entry(name.to_owned()).or_insert_with(|| SinkStatus {
            name: name.to_owned(),
            ..SinkStatus::default()
        });
        change(status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SinkStatus>> {
        // Updates are single assignments: a panic cannot leave one half done.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The plugin that runs every event sink of the PDS (the sinks given to
/// [`PdsBuilder::event_sink`](aurora_core::PdsBuilder::event_sink),
/// configured or added in code), one background task each.
pub struct SinkRunners {
    cursors: Arc<dyn SinkCursorStore>,
    settings: BTreeMap<String, RunnerSettings>,
    board: SinkStatusBoard,
}

impl std::fmt::Debug for SinkRunners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRunners")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SinkRunners {
    /// Runners keeping cursors in `cursors` and reporting to `board`.
    pub fn new(cursors: Arc<dyn SinkCursorStore>, board: SinkStatusBoard) -> Self {
        Self {
            cursors,
            settings: BTreeMap::new(),
            board,
        }
    }

    /// Runs the sink `name` with `settings` (others get the defaults).
    #[must_use]
    pub fn with_settings(mut self, name: impl Into<String>, settings: RunnerSettings) -> Self {
        self.settings.insert(name.into(), settings);
        self
    }
}

impl Plugin for SinkRunners {
    fn name(&self) -> &'static str {
        "sink-runners"
    }

    fn tasks(&self, ctx: &PdsContext) -> Vec<BackgroundTask> {
        ctx.sinks
            .iter()
            .map(|sink| {
                let runner = Runner {
                    sink: sink.clone(),
                    sequencer: ctx.sequencer.clone(),
                    cursors: self.cursors.clone(),
                    settings: self.settings.get(sink.name()).copied().unwrap_or_default(),
                    board: self.board.clone(),
                };
                BackgroundTask::new(format!("sink {}", sink.name()), runner.run())
            })
            .collect()
    }
}

/// Exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    fn new(settings: &RunnerSettings) -> Self {
        Self {
            min: settings.min_backoff,
            max: settings.max_backoff.max(settings.min_backoff),
            attempts: 0,
        }
    }

    /// The wait before the next attempt: `min * 2^attempts`, capped at
    /// `max`, drawn between half of that and all of it.
    fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1 << self.attempts.min(20))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }
}

struct Runner {
    sink: Arc<dyn EventSink>,
    sequencer: Arc<dyn Sequencer>,
    cursors: Arc<dyn SinkCursorStore>,
    settings: RunnerSettings,
    board: SinkStatusBoard,
}

impl Runner {
    fn name(&self) -> &str {
        self.sink.name()
    }

    async fn run(self) {
        let mut wake = self.sequencer.subscribe();
        let mut cursor = self.initial_cursor().await;
        tracing::info!(sink = self.name(), cursor, "event sink started");
        let mut last_lag_log = tokio::time::Instant::now();
        loop {
            // Marks the current head as seen before reading, so an event
            // committed after the read still wakes us.
            wake.borrow_and_update();
            let batch = self.read_batch(cursor).await;
            if last_lag_log.elapsed() >= self.settings.lag_log_interval {
                last_lag_log = tokio::time::Instant::now();
                self.log_lag(cursor).await;
            }
            let Some(last) = batch.last().map(|e| e.seq) else {
                self.board.update(self.name(), |s| s.lag = Lag::default());
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() {
                        tracing::info!(sink = self.name(), "event log closed; sink stopped");
                        return;
                    },
                    // Wakes now and then to log the lag of a sink that stopped
                    // being woken (the hint is a hint; the log is the truth).
                    () = tokio::time::sleep(self.settings.lag_log_interval) => {}
                }
                continue;
            };
            self.deliver(&batch).await;
            self.store_cursor(last).await;
            cursor = last;
            let head = *wake.borrow();
            let count = batch.len() as u64;
            self.board.update(self.name(), |s| {
                s.cursor = Some(last);
                s.delivered += count;
                s.last_delivery = Some(Utc::now());
                s.lag.events = head.saturating_sub(last).max(0);
                s.lag.head = Some(head.max(last));
            });
        }
    }

    /// The stored cursor, or a new one at the configured start (stored at
    /// once). Retries until storage answers.
    async fn initial_cursor(&self) -> i64 {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match self.load_or_create_cursor().await {
                Ok(cursor) => {
                    self.board.update(self.name(), |s| s.cursor = Some(cursor));
                    return cursor;
                }
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(sink = self.name(), error = %e, ?retry_in, "cannot read the sink's cursor");
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    async fn load_or_create_cursor(&self) -> Result<i64, StoreError> {
        if let Some(stored) = self.cursors.sink_cursor(self.name()).await? {
            return Ok(stored.seq);
        }
        let cursor = match self.settings.start {
            SinkStart::Head => self.sequencer.current_seq().await?.unwrap_or(0),
            SinkStart::Oldest => self
                .sequencer
                .oldest_seq()
                .await?
                .map_or(0, |oldest| oldest - 1),
        };
        self.cursors.set_sink_cursor(self.name(), cursor).await?;
        tracing::info!(
            sink = self.name(),
            cursor,
            start = ?self.settings.start,
            "new event sink: cursor created"
        );
        Ok(cursor)
    }

    async fn read_batch(&self, cursor: i64) -> Vec<SeqEvent> {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match self
                .sequencer
                .events_after(cursor, self.settings.batch_size)
                .await
            {
                Ok(batch) => return batch,
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(sink = self.name(), cursor, error = %e, ?retry_in, "cannot read the event log");
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    /// Delivers `batch` until the sink acknowledges it.
    async fn deliver(&self, batch: &[SeqEvent]) {
        let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match self.sink.deliver(batch).await {
                Ok(()) => {
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            sink = self.name(),
                            first_seq = first,
                            last_seq = last,
                            failures = backoff.attempts(),
                            "event sink recovered: batch delivered"
                        );
                    }
                    self.board.update(self.name(), |s| {
                        s.failures = 0;
                        s.last_error = None;
                    });
                    return;
                }
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    let failures = backoff.attempts();
                    let message = e.to_string();
                    tracing::warn!(
                        sink = self.name(),
                        first_seq = first,
                        last_seq = last,
                        events = batch.len(),
                        failures,
                        ?retry_in,
                        error = %message,
                        "event sink delivery failed; retrying the batch"
                    );
                    self.board.update(self.name(), |s| {
                        s.failures = failures;
                        s.last_error = Some(message);
                        s.lag.behind = age(batch[0].time);
                    });
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    async fn store_cursor(&self, seq: i64) {
        let mut backoff = Backoff::new(&self.settings);
        while let Err(e) = self.cursors.set_sink_cursor(self.name(), seq).await {
            let retry_in = backoff.next_delay();
            tracing::warn!(sink = self.name(), seq, error = %e, ?retry_in, "cannot store the sink's cursor");
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn log_lag(&self, cursor: i64) {
        match measure_lag(self.sequencer.as_ref(), cursor).await {
            Ok(lag) => {
                self.board.update(self.name(), |s| s.lag = lag);
                if lag.events > 0 {
                    tracing::info!(
                        sink = self.name(),
                        cursor,
                        head = lag.head,
                        events_behind = lag.events,
                        seconds_behind = lag.behind.as_secs(),
                        "event sink lag"
                    );
                }
            }
            Err(e) => {
                tracing::debug!(sink = self.name(), error = %e, "cannot measure the sink's lag");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use aurora_core::RepoStore;
    use aurora_core::sink::SinkError;
    use aurora_core::syntax::Did;
    use aurora_storage_memory::MemoryStore;
    use aurora_storage_testkit::fixtures::identity_event;

    use super::*;

    /// Records what it is given; refuses the first `failures` batches.
    #[derive(Default)]
    struct Recorder {
        failures: AtomicU32,
        seen: Mutex<Vec<i64>>,
    }

    #[async_trait]
    impl EventSink for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(SinkError::new("target down"));
            }
            self.seen
                .lock()
                .unwrap()
                .extend(events.iter().map(|e| e.seq));
            Ok(())
        }
    }

    fn fast(start: SinkStart) -> RunnerSettings {
        RunnerSettings {
            start,
            batch_size: 7,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            lag_log_interval: Duration::from_millis(50),
        }
    }

    fn spawn(
        store: &MemoryStore,
        sink: &Arc<Recorder>,
        settings: RunnerSettings,
    ) -> tokio::task::JoinHandle<()> {
        let runner = Runner {
            sink: sink.clone(),
            sequencer: Arc::new(store.clone()),
            cursors: Arc::new(store.clone()),
            settings,
            board: SinkStatusBoard::new(),
        };
        tokio::spawn(runner.run())
    }

    async fn write(store: &MemoryStore, n: usize) -> Vec<i64> {
        let did = Did::parse("did:plc:runner").unwrap();
        let mut seqs = Vec::new();
        for i in 0..n {
            seqs.push(
                store
                    .sequence_event(identity_event(&did, &i.to_string()))
                    .await
                    .unwrap(),
            );
        }
        seqs
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_batches_are_retried_in_order_and_the_cursor_follows_acks() {
        let store = MemoryStore::new();
        let before = write(&store, 3).await;
        let sink = Arc::new(Recorder::default());
        sink.failures.store(4, Ordering::SeqCst);
        let task = spawn(&store, &sink, fast(SinkStart::Head));
        until("the cursor", || {
            futures::FutureExt::now_or_never(store.sink_cursor("recorder"))
                .is_some_and(|c| c.unwrap().is_some())
        })
        .await;
        let cursor = store.sink_cursor("recorder").await.unwrap().unwrap().seq;
        assert_eq!(cursor, before[2], "a new sink starts at the head");
        let after = write(&store, 30).await;
        until("every event", || {
            sink.seen.lock().unwrap().len() == after.len()
        })
        .await;
        assert_eq!(*sink.seen.lock().unwrap(), after, "each once, in order");
        until("the stored cursor", || {
            futures::FutureExt::now_or_never(store.sink_cursor("recorder"))
                .is_some_and(|c| c.unwrap().map(|c| c.seq) == Some(after[29]))
        })
        .await;
        task.abort();

        // A restart resumes from the stored cursor.
        let more = write(&store, 5).await;
        let again = Arc::new(Recorder::default());
        let task = spawn(&store, &again, fast(SinkStart::Oldest));
        until("the rest", || again.seen.lock().unwrap().len() == 5).await;
        assert_eq!(*again.seen.lock().unwrap(), more);
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_sink_may_start_at_the_oldest_event() {
        let store = MemoryStore::new();
        let seqs = write(&store, 10).await;
        let sink = Arc::new(Recorder::default());
        let task = spawn(&store, &sink, fast(SinkStart::Oldest));
        until("the backlog", || sink.seen.lock().unwrap().len() == 10).await;
        assert_eq!(*sink.seen.lock().unwrap(), seqs);
        task.abort();
        let lag = measure_lag(&store, seqs[4]).await.unwrap();
        assert_eq!((lag.head, lag.events), (Some(seqs[9]), 5));
        assert_eq!(
            measure_lag(&store, seqs[9]).await.unwrap().behind,
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let settings = RunnerSettings {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RunnerSettings::default()
        };
        let mut backoff = Backoff::new(&settings);
        for ceiling_ms in [100, 200, 400, 800, 1000, 1000, 1000] {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert_eq!(backoff.attempts(), 7);
        // Many attempts never overflow.
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
    }
}
