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
//!
//! Several processes may share one database, each configured with the same
//! sinks. A sink is delivered by one of them at a time: the holder of the
//! sink's lease ([`SinkCursorStore::acquire_sink_lease`]), which it renews
//! every third of `lease_ttl` (also while it waits between retries). The
//! others stand by, checking as often, and take over, from the stored
//! cursor, once the holder stops renewing: it stopped, crashed, or lost the
//! database. A holder that cannot renew for a whole `lease_ttl` stops
//! delivering. During a handover the old holder's last batch may be
//! delivered again by the new one; that is the at-least-once above. A
//! process's holder id is stable across restarts
//! ([`SinkRunners::with_holder`]), so a restarted node resumes its sinks at
//! once instead of waiting for its own lease to lapse, and a clean shutdown
//! releases the leases ([`release_leases`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aurora_core::event::SeqEvent;
use aurora_core::plugin::BackgroundTask;
use aurora_core::sink::EventSink;
use aurora_core::store::{SeqWatch, Sequencer, SinkCursorStore, StoreError};
use aurora_core::{PdsContext, Plugin};
use chrono::{DateTime, Utc};
use rand::Rng as _;
use tokio::time::Instant;

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
    /// How long a lease lasts without renewal: how soon another process
    /// takes over a sink whose holder died.
    pub lease_ttl: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            start: SinkStart::Head,
            batch_size: 500,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            lag_log_interval: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(30),
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
            lease_ttl: entry.lease_ttl.0,
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
    /// Whether this process holds the sink's lease and delivers it (`false`
    /// while another process does).
    pub active: bool,
}

impl SinkStatus {
    /// Publishes the status to the metrics (see [`crate::metrics`]).
    #[allow(clippy::cast_precision_loss)]
    fn publish(&self) {
        let sink = self.name.clone();
        metrics::gauge!("aurora_sink_lag_events", "sink" => sink.clone())
            .set(self.lag.events as f64);
        metrics::gauge!("aurora_sink_lag_seconds", "sink" => sink.clone())
            .set(self.lag.behind.as_secs_f64());
        metrics::gauge!("aurora_sink_failures", "sink" => sink.clone())
            .set(f64::from(self.failures));
        metrics::gauge!("aurora_sink_delivered_events", "sink" => sink.clone())
            .set(self.delivered as f64);
        metrics::gauge!("aurora_sink_active", "sink" => sink).set(f64::from(u8::from(self.active)));
    }
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
        status.publish();
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
    holder: String,
}

impl std::fmt::Debug for SinkRunners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRunners")
            .field("settings", &self.settings)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl SinkRunners {
    /// Runners keeping cursors in `cursors` and reporting to `board`, with a
    /// holder id of their own (see [`with_holder`](Self::with_holder)).
    pub fn new(cursors: Arc<dyn SinkCursorStore>, board: SinkStatusBoard) -> Self {
        let random: u64 = rand::rng().random();
        Self {
            cursors,
            settings: BTreeMap::new(),
            board,
            holder: format!("{}:{random:016x}", std::process::id()),
        }
    }

    /// Takes the sinks' leases as `holder`: an id naming this process,
    /// stable across its restarts and unique among the processes sharing
    /// the database (the server uses [`node_id`]).
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
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
                    holder: self.holder.clone(),
                    renewed: None,
                };
                BackgroundTask::new(format!("sink {}", sink.name()), runner.run())
            })
            .collect()
    }
}

/// The id a server process takes sink leases with: the host's name and the
/// data directory, so that it survives restarts and differs between nodes.
pub fn node_id(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    format!("{host}:{}", dir.display())
}

/// Gives up the leases of the sinks this process delivers (`board`'s
/// active ones), after their tasks stopped, so that another process can
/// take over at once instead of after the lease's time.
pub async fn release_leases(cursors: &dyn SinkCursorStore, board: &SinkStatusBoard, holder: &str) {
    for status in board.snapshot().into_iter().filter(|s| s.active) {
        if let Err(e) = cursors.release_sink_lease(&status.name, holder).await {
            tracing::warn!(sink = %status.name, error = %e, "cannot release the sink's lease; it lapses by itself");
        }
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
    /// The id leases are taken with.
    holder: String,
    /// When the lease was last taken or renewed (`None`: not held).
    renewed: Option<Instant>,
}

impl Runner {
    fn name(&self) -> &str {
        self.sink.name()
    }

    async fn run(mut self) {
        let mut wake = self.sequencer.subscribe();
        loop {
            self.wait_for_lease().await;
            let Some(cursor) = self.initial_cursor().await else {
                continue;
            };
            tracing::info!(sink = self.name(), cursor, holder = %self.holder, "event sink started");
            self.deliver_from(cursor, &mut wake).await;
            if self.renewed.is_none() {
                self.board.update(self.name(), |s| s.active = false);
            } else {
                tracing::info!(sink = self.name(), "event log closed; sink stopped");
                return;
            }
        }
    }

    /// Delivers the log after `cursor` for as long as the lease is held
    /// (returns with `renewed` cleared) or the log is open.
    async fn deliver_from(&mut self, mut cursor: i64, wake: &mut SeqWatch) {
        let mut last_lag_log = Instant::now();
        while self.hold_lease().await {
            // Marks the current head as seen before reading, so an event
            // committed after the read still wakes us.
            wake.borrow_and_update();
            let Some(batch) = self.read_batch(cursor).await else {
                return;
            };
            if last_lag_log.elapsed() >= self.settings.lag_log_interval {
                last_lag_log = Instant::now();
                self.log_lag(cursor).await;
            }
            let Some(last) = batch.last().map(|e| e.seq) else {
                self.board.update(self.name(), |s| s.lag = Lag::default());
                // Wakes now and then to renew the lease and to log the lag
                // of a sink that stopped being woken (the hint is a hint;
                // the log is the truth).
                let nap = self.settings.lag_log_interval.min(self.renew_every());
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() {
                        return;
                    },
                    () = tokio::time::sleep(nap) => {}
                }
                continue;
            };
            if !self.deliver(&batch).await || !self.store_cursor(last).await {
                return;
            }
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

    fn renew_every(&self) -> Duration {
        self.settings.lease_ttl / 3
    }

    /// Whether this process may deliver the sink: renews the lease once a
    /// third of its time has passed. It is lost when another holder has
    /// it, or when it could not be renewed for a whole `lease_ttl`.
    async fn hold_lease(&mut self) -> bool {
        let now = Instant::now();
        if self
            .renewed
            .is_some_and(|at| now.duration_since(at) < self.renew_every())
        {
            return true;
        }
        let ttl = self.settings.lease_ttl;
        match self
            .cursors
            .acquire_sink_lease(self.sink.name(), &self.holder, ttl)
            .await
        {
            Ok(true) => {
                self.renewed = Some(now);
                self.board.update(self.sink.name(), |s| s.active = true);
                true
            }
            Ok(false) => {
                if self.renewed.take().is_some() {
                    tracing::warn!(
                        sink = self.name(),
                        "another process took over the event sink; standing by"
                    );
                }
                false
            }
            Err(e) => {
                let held = self.renewed.is_some_and(|at| now.duration_since(at) < ttl);
                tracing::warn!(sink = self.name(), error = %e, still_held = held, "cannot renew the event sink's lease");
                if !held {
                    self.renewed = None;
                }
                held
            }
        }
    }

    /// Waits until this process holds the sink's lease.
    async fn wait_for_lease(&mut self) {
        let mut waited = false;
        while !self.hold_lease().await {
            if !waited {
                waited = true;
                let holder = match self.cursors.list_sink_leases().await {
                    Ok(leases) => leases
                        .into_iter()
                        .find(|l| l.name == self.name())
                        .map(|l| l.holder),
                    Err(_) => None,
                };
                tracing::info!(
                    sink = self.name(),
                    holder = holder.as_deref().unwrap_or("unknown"),
                    "event sink runs in another process; standing by"
                );
                self.board.update(self.sink.name(), |s| s.active = false);
            }
            tokio::time::sleep(self.renew_every()).await;
        }
        if waited {
            tracing::info!(sink = self.name(), "event sink taken over");
        }
    }

    /// Waits `delay` before a retry, keeping the lease; `false` when it
    /// was lost meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            let now = Instant::now();
            if now >= until {
                return self.hold_lease().await;
            }
            tokio::time::sleep((until - now).min(self.renew_every())).await;
            if !self.hold_lease().await {
                return false;
            }
        }
    }

    /// The stored cursor, or a new one at the configured start (stored at
    /// once). Retries until storage answers; `None` when the lease was lost
    /// meanwhile.
    async fn initial_cursor(&mut self) -> Option<i64> {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match self.load_or_create_cursor().await {
                Ok(cursor) => {
                    self.board.update(self.name(), |s| s.cursor = Some(cursor));
                    return Some(cursor);
                }
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(sink = self.name(), error = %e, ?retry_in, "cannot read the sink's cursor");
                    if !self.pause(retry_in).await {
                        return None;
                    }
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

    /// The next batch after `cursor`; `None` when the lease was lost while
    /// retrying.
    async fn read_batch(&mut self, cursor: i64) -> Option<Vec<SeqEvent>> {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match self
                .sequencer
                .events_after(cursor, self.settings.batch_size)
                .await
            {
                Ok(batch) => return Some(batch),
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(sink = self.name(), cursor, error = %e, ?retry_in, "cannot read the event log");
                    if !self.pause(retry_in).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Delivers `batch` until the sink acknowledges it (`true`), or until
    /// the lease is lost (`false`).
    async fn deliver(&mut self, batch: &[SeqEvent]) -> bool {
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
                    return true;
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
                    if !self.pause(retry_in).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Stores `seq` as the cursor, if the lease is still held (`false`
    /// when it is not: the new holder owns the cursor now).
    async fn store_cursor(&mut self, seq: i64) -> bool {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            if !self.hold_lease().await {
                return false;
            }
            match self.cursors.set_sink_cursor(self.name(), seq).await {
                Ok(()) => return true,
                Err(e) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(sink = self.name(), seq, error = %e, ?retry_in, "cannot store the sink's cursor");
                    if !self.pause(retry_in).await {
                        return false;
                    }
                }
            }
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
            lease_ttl: Duration::from_millis(150),
        }
    }

    fn spawn(
        store: &MemoryStore,
        sink: &Arc<Recorder>,
        settings: RunnerSettings,
    ) -> tokio::task::JoinHandle<()> {
        spawn_as(store, sink, settings, "node-a", &SinkStatusBoard::new())
    }

    fn spawn_as(
        store: &MemoryStore,
        sink: &Arc<Recorder>,
        settings: RunnerSettings,
        holder: &str,
        board: &SinkStatusBoard,
    ) -> tokio::task::JoinHandle<()> {
        let runner = Runner {
            sink: sink.clone(),
            sequencer: Arc::new(store.clone()),
            cursors: Arc::new(store.clone()),
            settings,
            board: board.clone(),
            holder: holder.to_owned(),
            renewed: None,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_process_delivers_a_sink_and_another_takes_over_when_it_dies() {
        let store = MemoryStore::new();
        let (board_a, board_b) = (SinkStatusBoard::new(), SinkStatusBoard::new());
        let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let task_a = spawn_as(&store, &a, fast(SinkStart::Head), "node-a", &board_a);
        until("node-a's lease", || {
            board_a.get("recorder").is_some_and(|s| s.active)
        })
        .await;
        let task_b = spawn_as(&store, &b, fast(SinkStart::Head), "node-b", &board_b);
        let first = write(&store, 20).await;
        until("node-a's delivery", || a.seen.lock().unwrap().len() == 20).await;
        // Several lease periods later node-b still only stands by.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(b.seen.lock().unwrap().is_empty());
        assert!(!board_b.get("recorder").unwrap().active);
        assert_eq!(*a.seen.lock().unwrap(), first);

        // node-a dies without releasing: node-b takes over once the lease
        // lapses, from the stored cursor.
        task_a.abort();
        let second = write(&store, 15).await;
        until("node-b's delivery", || b.seen.lock().unwrap().len() >= 15).await;
        assert_eq!(
            *b.seen.lock().unwrap(),
            second,
            "nothing skipped, nothing repeated"
        );
        assert!(board_b.get("recorder").unwrap().active);

        // A clean shutdown releases the lease; node-a's return takes over
        // at once.
        task_b.abort();
        release_leases(&store, &board_b, "node-b").await;
        let again = Arc::new(Recorder::default());
        let task_a = spawn_as(&store, &again, fast(SinkStart::Head), "node-a", &board_a);
        let third = write(&store, 5).await;
        until("node-a again", || again.seen.lock().unwrap().len() == 5).await;
        assert_eq!(*again.seen.lock().unwrap(), third);
        task_a.abort();
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
