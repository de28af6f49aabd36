//! SQLite's commit writer: one thread that takes the queued commits in
//! batches and writes each batch on the native connection
//! (`sqlite_native.rs`).
//!
//! On Postgres (and on an in-memory SQLite) the group commit hands the
//! batch from waiter to waiter through an async lock (`group_commit.rs`).
//! On a SQLite file there is one writer at a time anyway, and a thread of
//! its own keeps the runtime out of the serial part: the async hand-offs
//! (waking the next holder of the lock, spawning the batch's task, the
//! blocking call and the wake-up after it) each waited behind the request
//! tasks on the runtime's threads, so under load a batch took several
//! times its own work. Here a commit is sent to the thread, and the thread
//! goes from one batch to the next without waiting for anyone; the only
//! wake-ups left are the answers to the waiting requests. Each batch's
//! events are also kept in memory for the readers of the live tail
//! (`recent_events.rs`).
//!
//! The thread holds sqlx's writing connection while it has work, so that
//! the other write transactions (sign-ups, sessions, blobs: everything not
//! a commit) wait in that pool's queue, in order, rather than in SQLite's
//! busy handler; it lets go when it runs out of work and at least every
//! [`HOLD_AT_MOST`], so they never wait behind a long stream of commits.
//!
//! A second thread checkpoints: it copies the write-ahead log into the
//! database file, which SQLite otherwise does on the committing
//! connection every 1,000 pages, a few milliseconds with an fsync of the
//! database that every waiting commit waited for. It runs after commits,
//! at most every [`CHECKPOINT_EVERY`], and flushes the database file after
//! each checkpoint. While commits never stop, the log can only start over
//! after a checkpoint that nothing was written during, which only the
//! committing connection can be sure of. So once the log is long
//! ([`RESTART_AT_FRAMES`]) and the checkpointer has copied nearly all of
//! it, the checkpointer asks the writer thread to start the log over
//! between two batches: a restart checkpoint that copies and flushes the
//! little left. Before, the committing connection did that checkpoint
//! alone at 10,000 pages, copying and flushing what the checkpointer had
//! not: every ~150 ms under load, commits stopped for 20-35 ms while it
//! fsynced (p99 at 16 clients 0.59x with the handover).
//!
//! With `synchronous = FULL` (the default) sync threads make the batches
//! durable: the committing connection does not fsync the log at each
//! commit; the writer thread hands each committed batch to the sync
//! threads and goes on with the next, and a sync thread fsyncs the log
//! (once for all the batches that came meanwhile) and only then
//! acknowledges them, adds their events to the recent ones and announces
//! the new head. The fsync, about a millisecond a batch, is no longer
//! waited for by the next batch. There are [`SYNC_THREADS`] of them, so
//! that a batch written during a sync does not wait for that sync to end
//! before its own begins; they acknowledge in the order they took the
//! batches (at 16 clients: 1.03x the commits, p99 0.72x, against one).
//! Once a sync fails, no later batch is acknowledged either (see
//! [`AckTurn`]). A batch is visible to readers of the database from its
//! commit, before it is durable; what is announced (the head, the events
//! readers get from the store, `current_seq`) and every
//! acknowledgement wait for the sync, so a subscriber never sees an event
//! a power cut could take back.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aurora_core::event::SeqEvent;
use aurora_core::store::StoreError;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{Sqlite, SqlitePool};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::group_commit::{
    MAX_BATCH, Queued, acknowledge, fail_all, interrupted, record_batch_size,
};
use crate::recent_events::RecentEvents;
use crate::sqlite_native::{BatchCommit, NativeSqlite};

/// Longest the thread keeps sqlx's writing connection while commits keep
/// coming (see the module docs).
const HOLD_AT_MOST: Duration = Duration::from_millis(10);
/// How long the thread keeps the connection once it has no work, in case
/// more comes (taking it again is a trip through the runtime).
const HOLD_IDLE: Duration = Duration::from_millis(2);
/// Least time between two checkpoints while commits come: each copies
/// what came since the last and fsyncs the database file. A page written
/// many times meanwhile (an index's inner pages, the tail of a table) is
/// copied once, so a longer interval copies less: 100 ms against 20 ms at
/// 16 clients, checkpointer CPU 0.72x, createRecord 1.04x (C=1 1.07x).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The log length (in frames, a page each) from which the log is to start
/// over: about 128 MiB, the log file's size from then on. Each restart
/// stops commits for its own copy and two fsyncs (~10 ms at 16 clients),
/// so the longer the log, the rarer the stop: at 4,000 frames (16 MiB)
/// it came ~9 times a second under load, ~9% of the writer's time; at
/// 32,000 under twice a second (createRecord 1.05x, p99 0.80x). A crash
/// leaves at most this much log to read back at start, well under a
/// second.
pub(crate) const RESTART_AT_FRAMES: i64 = 32_000;
/// What may be left to copy when the committing connection is asked to
/// start the log over: the restart copies it while commits wait.
const RESTART_RESIDUAL_FRAMES: i64 = 1_000;
/// Checkpoint passes in a row at most, while the log is long.
const CHECKPOINT_PASSES: usize = 4;
/// Sync threads: while one waits for its fsync, the next takes the
/// batches committed meanwhile and starts its own (the disk serves
/// concurrent flushes), so a batch waits for its own sync only.
const SYNC_THREADS: usize = 2;

/// The sending side of the writer thread; the thread ends when this is
/// dropped (with the store) and the commits sent before are written.
pub(crate) struct SqliteWriter {
    queue: Sender<Queued>,
    /// The events of the newest batches (see `recent_events.rs`).
    recent: Arc<RecentEvents>,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

impl SqliteWriter {
    /// Starts the thread, writing through `sqlite`, holding a connection of
    /// `sqlx_writer` meanwhile, announcing new events on `head`. Call it
    /// inside the runtime the store is used on.
    pub(crate) fn start(
        sqlite: Arc<NativeSqlite>,
        sqlx_writer: SqlitePool,
        head: Arc<watch::Sender<i64>>,
    ) -> std::io::Result<Self> {
        let (queue, queued) = std::sync::mpsc::channel();
        let recent = Arc::new(RecentEvents::default());
        let (written, to_checkpoint) = std::sync::mpsc::sync_channel(1);
        let runtime = Handle::current();
        let checkpointed = sqlite.clone();
        let restart = Arc::new(AtomicBool::new(false));
        let restart_wanted = restart.clone();
        let announcer = Announcer {
            head,
            recent: recent.clone(),
        };
        std::thread::Builder::new()
            .name("aurora-sqlite-checkpoint".to_owned())
            .spawn(move || {
                set_thread_nice("checkpointer", CHECKPOINT_NICE);
                checkpoint_after_commits(&checkpointed, &to_checkpoint, &restart_wanted);
            })?;
        let acks = if sqlite.syncs_commits() {
            let (to_sync, synced) = std::sync::mpsc::channel();
            let stage = Arc::new(SyncStage::new(synced, announcer));
            for _ in 0..SYNC_THREADS {
                let (syncing, stage) = (sqlite.clone(), stage.clone());
                std::thread::Builder::new()
                    .name("aurora-sqlite-sync".to_owned())
                    .spawn(move || {
                        set_thread_nice("sync", SYNC_NICE);
                        sync_then_acknowledge(&syncing, &stage);
                    })?;
            }
            Acks::AfterSync(to_sync)
        } else {
            Acks::Now(announcer)
        };
        std::thread::Builder::new()
            .name("aurora-sqlite-writer".to_owned())
            .spawn(move || {
                set_thread_nice("writer", WRITER_NICE);
                let mut thread = WriterThread {
                    sqlite,
                    sqlx_writer,
                    acks,
                    runtime,
                    held: None,
                    written,
                    restart,
                };
                thread.run(&queued);
                thread.release();
            })?;
        Ok(Self { queue, recent })
    }

    /// The events of the newest batches written.
    pub(crate) fn recent_events(&self) -> &RecentEvents {
        &self.recent
    }

    /// Queues `commit` for the next batch.
    pub(crate) fn submit(&self, commit: Queued) -> Result<(), StoreError> {
        self.queue.send(commit).map_err(|_| interrupted())
    }
}

/// Who tells a written batch's callers and subscribers.
enum Acks {
    /// The writer thread, right after the commit (`synchronous = NORMAL`:
    /// commits are not synced one by one).
    Now(Announcer),
    /// The sync thread, once the log is synced.
    AfterSync(Sender<Written>),
}

/// A committed batch waiting for the log's sync.
struct Written {
    batch: Vec<Queued>,
    outcomes: Vec<Result<i64, StoreError>>,
    now: DateTime<Utc>,
}

/// Announces written batches: their events to the recent ones, then the
/// new head, then each commit's outcome to its caller.
struct Announcer {
    head: Arc<watch::Sender<i64>>,
    recent: Arc<RecentEvents>,
}

impl Announcer {
    fn announce(&self, written: Written) {
        let Written {
            batch,
            outcomes,
            now,
        } = written;
        // Before the head moves: a reader woken for these events finds
        // them there.
        self.recent
            .append(batch.iter().zip(&outcomes).filter_map(|(q, outcome)| {
                let seq = *outcome.as_ref().ok()?;
                Some(SeqEvent {
                    seq,
                    did: q.commit.did.clone(),
                    event_type: q.commit.event_type,
                    time: now,
                    payload: q.commit.event_payload.clone(),
                })
            }));
        acknowledge(&self.head, batch, outcomes);
    }
}

/// What the sync threads share: the committed batches waiting for a sync,
/// with the number of the next group of them to be taken, and the number
/// of the next group to be acknowledged.
struct SyncStage {
    incoming: Mutex<(Receiver<Written>, u64)>,
    acks: Mutex<AckTurn>,
    /// Signalled when `acks.next` moves.
    turn: Condvar,
    announcer: Announcer,
}

/// Whose turn it is to acknowledge, and whether a sync of the log failed.
#[derive(Default)]
struct AckTurn {
    next: u64,
    /// Set by the first failed sync, for good: the frames it should have
    /// made durable may be lost, and with them every later frame (the
    /// log's checksums chain them), while a sync on a new handle would
    /// not report the lost write again. So nothing written after it is
    /// acknowledged either; a restart recovers the log as far as it is
    /// intact.
    sync_failed: Option<String>,
}

impl SyncStage {
    /// The stage for the batches sent to `synced`, announced by
    /// `announcer`.
    fn new(synced: Receiver<Written>, announcer: Announcer) -> Self {
        Self {
            incoming: Mutex::new((synced, 0)),
            acks: Mutex::default(),
            turn: Condvar::new(),
            announcer,
        }
    }

    /// Takes the batches committed so far (waiting for one) and numbers
    /// them as a group; `None` once the writer thread is gone.
    fn take(&self) -> Option<(Vec<Written>, u64)> {
        let mut incoming = lock(&self.incoming);
        let first = incoming.0.recv().ok()?;
        let mut group = vec![first];
        group.extend(incoming.0.try_iter());
        let number = incoming.1;
        incoming.1 += 1;
        Some((group, number))
    }

    /// Acknowledges group `number`, whose sync ended with `synced`, once
    /// every group before it has been; or fails it, if its sync or any
    /// before it failed.
    fn acknowledge_in_turn(&self, number: u64, group: Vec<Written>, synced: Result<(), String>) {
        let mut acks = lock(&self.acks);
        while acks.next != number {
            acks = self.turn.wait(acks).unwrap_or_else(PoisonError::into_inner);
        }
        if acks.sync_failed.is_none()
            && let Err(e) = synced
        {
            tracing::error!(error = %e, "cannot sync the SQLite log; writes fail until the server restarts");
            acks.sync_failed = Some(e);
        }
        // Whatever happens, the turn passes on (a panic here drops the
        // group's callers, who hear their write was interrupted).
        let _ = catch_unwind(AssertUnwindSafe(|| match &acks.sync_failed {
            None => group.into_iter().for_each(|w| self.announcer.announce(w)),
            Some(e) => {
                // The batches are committed but maybe not on disk: nobody
                // is told they were written.
                let e = StoreError::Unavailable(format!("the write could not be synced: {e}"));
                for w in group {
                    fail_all(w.batch, &e);
                }
            }
        }));
        acks.next += 1;
        self.turn.notify_all();
    }
}

/// A sync thread: takes the batches committed so far, fsyncs the log
/// once for all of them, then acknowledges them once every group taken
/// before has been; meanwhile the writer thread goes on with the next
/// batch, and the other sync thread takes and syncs the batches that come
/// during this sync. Ends with the writer thread, after the batches it
/// sent.
fn sync_then_acknowledge(sqlite: &NativeSqlite, stage: &SyncStage) {
    let mut wal = None;
    while let Some((group, number)) = stage.take() {
        // Each batch was written before this sync began, so it is on disk
        // when the sync returns.
        let synced = match catch_unwind(AssertUnwindSafe(|| sqlite.sync_wal(&mut wal))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the sync panicked".to_owned()),
        };
        stage.acknowledge_in_turn(number, group, synced);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct WriterThread {
    sqlite: Arc<NativeSqlite>,
    sqlx_writer: SqlitePool,
    acks: Acks,
    runtime: Handle,
    /// sqlx's writing connection and since when it is held.
    held: Option<(PoolConnection<Sqlite>, Instant)>,
    /// Tells the checkpointer a batch was written.
    written: SyncSender<()>,
    /// Set by the checkpointer when the log should start over.
    restart: Arc<AtomicBool>,
}

impl WriterThread {
    fn run(&mut self, queued: &Receiver<Queued>) {
        loop {
            let first = match queued.recv_timeout(HOLD_IDLE) {
                Ok(q) => q,
                Err(RecvTimeoutError::Timeout) => {
                    self.release();
                    match queued.recv() {
                        Ok(q) => q,
                        Err(_) => return,
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queued.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // Nobody would learn these outcomes (the clients went away).
            batch.retain(|q| !q.done.is_closed());
            if !batch.is_empty() {
                self.write(batch);
            }
            if self.restart.swap(false, Ordering::AcqRel) {
                match self.sqlite.restart_log() {
                    Ok(true) => {}
                    // The checkpointer asks again after its next pass.
                    Ok(false) => tracing::debug!("the SQLite log is busy; it starts over later"),
                    Err(e) => tracing::warn!(error = %e, "cannot start the SQLite log over"),
                }
            }
        }
    }

    fn write(&mut self, batch: Vec<Queued>) {
        if let Err(e) = self.hold() {
            fail_all(batch, &e);
            return;
        }
        record_batch_size(&batch);
        let now = Utc::now();
        let written = catch_unwind(AssertUnwindSafe(|| {
            let commits: Vec<BatchCommit<'_>> = batch
                .iter()
                .map(|q| BatchCommit {
                    commit: &q.commit,
                    fault_at: q.fault_at,
                })
                .collect();
            self.sqlite.write_batch(&commits, now)
        }));
        match written {
            Ok(Ok(outcomes)) => {
                let written = Written {
                    batch,
                    outcomes,
                    now,
                };
                match &self.acks {
                    Acks::Now(announcer) => announcer.announce(written),
                    Acks::AfterSync(to_sync) => {
                        if let Err(unsent) = to_sync.send(written) {
                            fail_all(unsent.0.batch, &interrupted());
                        }
                    }
                }
                // Full means a signal is waiting already.
                let _ = self.written.try_send(());
            }
            Ok(Err(e)) => fail_all(batch, &e),
            // The batch is dropped: its callers hear it was interrupted.
            Err(_) => {}
        }
    }

    /// Takes sqlx's writing connection, or takes it again when held for
    /// [`HOLD_AT_MOST`] (letting a waiting sqlx writer go first).
    fn hold(&mut self) -> Result<(), StoreError> {
        if self
            .held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() < HOLD_AT_MOST)
        {
            return Ok(());
        }
        self.release();
        let conn = self
            .runtime
            .block_on(self.sqlx_writer.acquire())
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.held = Some((conn, Instant::now()));
        Ok(())
    }

    fn release(&mut self) {
        if let Some((conn, _)) = self.held.take() {
            // Handing it back is a task on the runtime.
            let _entered = self.runtime.enter();
            drop(conn);
        }
    }
}

/// The checkpointer's scheduling priority (nice): the lowest. Under load
/// it runs in the CPU time the requests and the writer leave; the log
/// stays bounded all the same, as the committing connection checkpoints
/// once the log is long. Measured at 16 clients, with [`WRITER_NICE`]:
/// createRecord 1.05x.
const CHECKPOINT_NICE: i32 = 19;

/// The writer thread's priority: a little above the request threads. All
/// commits go through it one batch at a time, so while it waits for a
/// core every commit waits. Raising a priority needs `CAP_SYS_NICE`;
/// without it the writer keeps the default.
const WRITER_NICE: i32 = -5;

/// The sync threads' priority: above the writer. They use little CPU
/// (each fsync is a few wake-ups: the data written, the inode, the
/// flush), but every commit waits for them to wake, and at nice 0 on two
/// busy cores each wake-up waited ~0.4 ms for a core (`perf sched
/// timehist` at 16 clients). Measured at 16 clients: createRecord 1.04x
/// (better in each of three rounds); the writer at -10 as well made no
/// difference.
const SYNC_NICE: i32 = -10;

/// Sets the calling thread's nice value (on Linux a priority set for a
/// thread id is that thread's alone). A refusal is not an error.
fn set_thread_nice(thread: &str, nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!(thread, nice, error = %e, "thread priority left as it is");
    }
}

/// The checkpointer thread: a checkpoint after commits, at most every
/// [`CHECKPOINT_EVERY`]; ends with the writer thread.
fn checkpoint_after_commits(sqlite: &NativeSqlite, written: &Receiver<()>, restart: &AtomicBool) {
    let (mut conn, mut db) = (None, None);
    while written.recv().is_ok() {
        // Passes back to back while the log is long, each copying what
        // the commits wrote during the one before, until little is left.
        for _ in 0..CHECKPOINT_PASSES {
            match sqlite.checkpoint(&mut conn, &mut db) {
                Ok(log) if log.frames < RESTART_AT_FRAMES => break,
                Ok(log) => {
                    if log.uncopied <= RESTART_RESIDUAL_FRAMES {
                        restart.store(true, Ordering::Release);
                        break;
                    }
                }
                Err(e) => {
                    // The committing connection checkpoints once the log is long.
                    tracing::warn!(error = %e, "checkpoint failed");
                    (conn, db) = (None, None);
                    break;
                }
            }
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_storage_testkit::fixtures::{commit, did};
    use tokio::sync::oneshot;

    fn stage() -> (SyncStage, Sender<Written>, watch::Receiver<i64>) {
        let (to_sync, synced) = std::sync::mpsc::channel();
        let (head, watching) = watch::channel(0);
        let stage = SyncStage::new(
            synced,
            Announcer {
                head: Arc::new(head),
                recent: Arc::default(),
            },
        );
        (stage, to_sync, watching)
    }

    /// A written batch of one commit with event `seq`, and its caller's
    /// end.
    fn written(seq: i64) -> (Written, oneshot::Receiver<Result<i64, StoreError>>) {
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            commit: commit(&did("alice"), None, &seq.to_string(), 1, vec![], vec![]),
            fault_at: None,
            done,
        };
        let written = Written {
            batch: vec![queued],
            outcomes: vec![Ok(seq)],
            now: Utc::now(),
        };
        (written, answer)
    }

    /// Groups are acknowledged in the order they were taken, whichever
    /// sync ends first; after a failed sync nothing is acknowledged.
    #[test]
    fn groups_are_acknowledged_in_turn_and_never_after_a_failed_sync() {
        let (stage, to_sync, head) = stage();
        let mut answers = Vec::new();
        for seq in 1..=4 {
            let (w, answer) = written(seq);
            to_sync.send(w).unwrap();
            let (group, number) = stage.take().unwrap();
            assert_eq!((group.len(), number), (1, u64::try_from(seq - 1).unwrap()));
            answers.push((group, number, answer));
        }
        let mut answers = answers.into_iter();
        let (first, first_n, mut first_answer) = answers.next().unwrap();
        let (second, second_n, mut second_answer) = answers.next().unwrap();
        std::thread::scope(|scope| {
            // The second group's sync ends first: it waits for the first.
            scope.spawn(|| stage.acknowledge_in_turn(second_n, second, Ok(())));
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                second_answer.try_recv().is_err(),
                "acknowledged out of turn"
            );
            assert_eq!(*head.borrow(), 0, "announced out of turn");
            stage.acknowledge_in_turn(first_n, first, Ok(()));
        });
        assert_eq!(first_answer.try_recv().unwrap().unwrap(), 1);
        assert_eq!(second_answer.try_recv().unwrap().unwrap(), 2);
        assert_eq!(*head.borrow(), 2);

        let (third, third_n, mut third_answer) = answers.next().unwrap();
        stage.acknowledge_in_turn(third_n, third, Err("I/O error".to_owned()));
        assert!(matches!(
            third_answer.try_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        // A later sync that succeeds does not make up for the lost one.
        let (fourth, fourth_n, mut fourth_answer) = answers.next().unwrap();
        stage.acknowledge_in_turn(fourth_n, fourth, Ok(()));
        assert!(matches!(
            fourth_answer.try_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(*head.borrow(), 2, "nothing announced after the failure");

        drop(to_sync);
        assert!(stage.take().is_none(), "ends with the writer thread");
    }
}
