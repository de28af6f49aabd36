//! Group commit: concurrent `apply_commit`s share one database transaction,
//! so that one fsync makes many commits durable.
//!
//! Every commit joins a queue, then waits for its turn at the commit lock
//! (first come, first served). Whoever gets the lock takes every commit
//! queued so far, its own among them, and writes them all in one
//! transaction. When the commits are of different repos (the usual case)
//! one statement per table writes them all: the roots' compare-and-swap
//! returns which repos moved, and only those commits' blocks, records and
//! events follow. If any statement fails, that transaction is rolled back
//! and the batch is written again with each commit inside its own
//! savepoint: a commit that fails (a bad row) is rolled back alone and
//! gets its own error, and the others go on. The transaction's commit
//! acknowledges them all at once; if it fails, none was written and all
//! get the error.
//! A waiter whose commit was taken by someone else's batch gets its result
//! without ever holding the lock.
//!
//! That is the Postgres path. On a SQLite file the queue is a thread's
//! (`sqlite_writer.rs`), which writes each batch on a connection of its
//! own, one savepoint per commit from the start (`sqlite_native.rs`): with
//! no thread switch per statement, per-row statements cost less than
//! building the shared ones.
//!
//! When writes come one at a time, a batch is just the one commit and
//! nothing waits. Under load, the commits that arrive while a batch is
//! being written form the next one, so the number of transactions (and
//! fsyncs, and on SQLite turns at the single write lock) grows much more
//! slowly than the number of writes.
//!
//! A commit whose caller went away (a client that disconnected) before its
//! batch was taken is dropped, not written: nobody would learn its outcome.
//! Once taken, a batch is written by a task of its own, so a holder that
//! goes away mid-batch cannot cut the others' commits short (or leave them
//! not knowing whether they were written).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use aurora_core::store::{CommitStage, CommitWrite, StoreError};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::{oneshot, watch};

use crate::repo::writes_in_one_statement;
use crate::{Engine, SqlStore, advance_head, blobs, db_err};

/// Most commits written in one transaction; the rest wait for the next.
pub(crate) const MAX_BATCH: usize = 128;

/// A commit waiting for a batch.
pub(crate) struct Queued {
    pub(crate) commit: CommitWrite,
    /// Where the store view that queued it fails on purpose (tests).
    pub(crate) fault_at: Option<CommitStage>,
    pub(crate) done: oneshot::Sender<Result<i64, StoreError>>,
}

/// The queue of commits and the lock whose holder writes them.
#[derive(Default)]
pub(crate) struct CommitQueue {
    queued: Mutex<Vec<Queued>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl CommitQueue {
    fn push(&self, item: Queued) {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
    }

    /// Up to [`MAX_BATCH`] queued commits, oldest first, leaving out those
    /// nobody waits for any more.
    fn take_batch(&self) -> Vec<Queued> {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        queued.retain(|q| !q.done.is_closed());
        let n = queued.len().min(MAX_BATCH);
        queued.drain(..n).collect()
    }
}

impl SqlStore {
    /// Stores `commit` as part of the next batch (see the module docs);
    /// returns the `seq` of its event.
    pub(crate) async fn group_commit(&self, commit: CommitWrite) -> Result<i64, StoreError> {
        let (done, mut result) = oneshot::channel();
        let queued = Queued {
            commit,
            fault_at: self.fault_at,
            done,
        };
        if let Some(writer) = &self.shared.sqlite_writer {
            writer.submit(queued)?;
            return result.await.unwrap_or_else(|_| Err(interrupted()));
        }
        let queue = &self.shared.commits;
        queue.push(queued);
        loop {
            tokio::select! {
                // Written (or failed) in another holder's batch.
                outcome = &mut result => return outcome.unwrap_or_else(|_| Err(interrupted())),
                turn = queue.turn.clone().lock_owned() => {
                    // Ours may have been written just before we got the lock.
                    if let Ok(outcome) = result.try_recv() {
                        return outcome;
                    }
                    let batch = queue.take_batch();
                    let store = self.clone();
                    let writing = tokio::spawn(async move {
                        store.write_batch(batch).await;
                        drop(turn);
                    });
                    // Ours is in the batch unless more than MAX_BATCH were
                    // queued before it: then the loop waits for a later one.
                    let _ = writing.await;
                }
            }
        }
    }

    /// Writes `batch` in one transaction (all together when its commits
    /// allow, else or after a failed statement one savepoint per commit),
    /// and tells each commit's caller how it went.
    async fn write_batch(&self, batch: Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        record_batch_size(&batch);
        let now = Utc::now();
        if writable_together(&batch) {
            match self.write_together(&batch, now).await {
                Together::Written(outcomes) => return self.acknowledge(batch, outcomes),
                Together::Failed(e) => {
                    fail_all(batch, &e);
                    return;
                }
                // Nothing was written: one savepoint per commit finds the
                // commit(s) at fault and writes the others.
                Together::OneByOne => {}
            }
        }
        let txn = match self.begin_write().await {
            Ok(txn) => txn,
            Err(e) => {
                fail_all(batch, &e);
                return;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for q in &batch {
            match self.write_one(&txn, &q.commit, q.fault_at, now).await {
                Ok(outcome) => outcomes.push(outcome),
                // A savepoint that could not be released or rolled back
                // leaves the transaction in doubt: write none of the batch.
                Err(e) => {
                    let _ = txn.rollback().await;
                    fail_all(batch, &e);
                    return;
                }
            }
        }
        match txn.commit().await {
            Ok(()) => self.acknowledge(batch, outcomes),
            Err(e) => {
                let e = db_err(e);
                for (q, outcome) in batch.into_iter().zip(outcomes) {
                    // A commit that failed on its own keeps its own error.
                    let _ = q.done.send(outcome.and_then(|_| Err(batch_error(&e))));
                }
            }
        }
    }

    /// Tells a written batch's callers their outcomes, once it is durable.
    fn acknowledge(&self, batch: Vec<Queued>, outcomes: Vec<Result<i64, StoreError>>) {
        acknowledge(&self.shared.head, batch, outcomes);
    }

    /// Writes `batch` with one statement per table for all its commits
    /// (see [`writable_together`]). A commit whose root moved on is left
    /// out with a conflict; any other failure rolls everything back and
    /// asks for the batch to be written one commit at a time.
    async fn write_together(&self, batch: &[Queued], now: DateTime<Utc>) -> Together {
        let txn = match self.begin_write().await {
            Ok(txn) => txn,
            Err(e) => return Together::Failed(e),
        };
        let Ok(seqs) = self.write_statements_together(&txn, batch, now).await else {
            let _ = txn.rollback().await;
            return Together::OneByOne;
        };
        // A failed commit is not retried one by one: it may have been
        // written after all (a connection lost during COMMIT).
        if let Err(e) = txn.commit().await {
            return Together::Failed(db_err(e));
        }
        let outcomes = batch
            .iter()
            .map(|q| {
                seqs.get(q.commit.did.as_str())
                    .copied()
                    .ok_or_else(|| StoreError::RootConflict {
                        did: q.commit.did.clone(),
                        expected: q.commit.expected_root,
                    })
            })
            .collect();
        Together::Written(outcomes)
    }

    /// The statements of [`write_together`](Self::write_together): the
    /// `seq` of each written commit's event, by repo.
    async fn write_statements_together(
        &self,
        txn: &DatabaseTransaction,
        batch: &[Queued],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        let commits: Vec<&CommitWrite> = batch.iter().map(|q| &q.commit).collect();
        // On Postgres, where every statement is a round trip the batch
        // waits for, roots, blocks and records in one when it can.
        let in_one = self.engine() == Engine::Postgres && writes_in_one_statement(&commits);
        let swapped = if in_one {
            self.swap_roots_with_blocks_and_records(txn, &commits, now)
                .await?
        } else {
            self.swap_roots(txn, &commits, now).await?
        };
        let written: Vec<&Queued> = batch
            .iter()
            .filter(|q| swapped.contains(q.commit.did.as_str()))
            .collect();
        // Fault injection for the atomicity tests: a commit set to fail
        // fails the whole attempt, and then fails alone, one by one.
        let fault = |stage: CommitStage| {
            if written.iter().any(|q| q.fault_at == Some(stage)) {
                Err(injected_fault(stage))
            } else {
                Ok(())
            }
        };
        fault(CommitStage::Root)?;
        let commits: Vec<&CommitWrite> = written.iter().map(|q| &q.commit).collect();
        if !in_one {
            self.put_blocks(txn, &commits).await?;
        }
        fault(CommitStage::Blocks)?;
        if in_one {
            blobs::write_references(txn, &commits).await?;
        } else {
            self.write_records(txn, &commits, now).await?;
        }
        fault(CommitStage::Records)?;
        let events: Vec<_> = commits.iter().map(|c| c.event()).collect();
        let seqs = self.insert_events(txn, &events, now).await?;
        fault(CommitStage::Event)?;
        Ok(seqs.into_iter().collect())
    }

    /// One commit of a batch, inside its own savepoint: the commit's own
    /// outcome, or (outer error) a failure of the savepoint itself.
    async fn write_one(
        &self,
        txn: &DatabaseTransaction,
        commit: &CommitWrite,
        fault_at: Option<CommitStage>,
        now: DateTime<Utc>,
    ) -> Result<Result<i64, StoreError>, StoreError> {
        let savepoint = txn.begin().await.map_err(db_err)?;
        match self.write_commit(&savepoint, commit, fault_at, now).await {
            Ok(seq) => {
                savepoint.commit().await.map_err(db_err)?;
                Ok(Ok(seq))
            }
            Err(e) => {
                savepoint.rollback().await.map_err(db_err)?;
                Ok(Err(e))
            }
        }
    }

    /// The statements of one commit: the root's compare-and-swap first (on
    /// Postgres its row lock makes a concurrent commit to the same repo
    /// wait and then fail), then blocks, records and the event.
    async fn write_commit(
        &self,
        txn: &DatabaseTransaction,
        c: &CommitWrite,
        fault_at: Option<CommitStage>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        // Fault injection for the atomicity tests (`with_fault_after`).
        let fault = |stage: CommitStage| {
            if fault_at == Some(stage) {
                Err(injected_fault(stage))
            } else {
                Ok(())
            }
        };
        self.swap_root(txn, c, now).await?;
        fault(CommitStage::Root)?;
        let one = std::slice::from_ref(&c);
        self.put_blocks(txn, one).await?;
        fault(CommitStage::Blocks)?;
        self.write_records(txn, one, now).await?;
        fault(CommitStage::Records)?;
        let seq = self.insert_event(txn, &c.event(), now).await?;
        fault(CommitStage::Event)?;
        Ok(seq)
    }
}

/// How [`SqlStore::write_together`] went.
enum Together {
    /// Committed: each commit's `seq`, or its root conflict.
    Written(Vec<Result<i64, StoreError>>),
    /// The transaction could not begin or commit: every commit failed.
    Failed(StoreError),
    /// A statement failed and nothing was written.
    OneByOne,
}

/// Whether `batch` can be written together: each commit is of a different
/// repo (so a repo's row is touched once per statement, and events map back
/// to commits by repo) and swaps an existing root (a repo's first commit
/// inserts its root instead; such commits are rare).
fn writable_together(batch: &[Queued]) -> bool {
    let mut repos = HashSet::with_capacity(batch.len());
    batch
        .iter()
        .all(|q| q.commit.expected_root.is_some() && repos.insert(q.commit.did.as_str()))
}

/// The error of a commit set to fail after `stage` (the atomicity tests'
/// fault injection, on every write path).
pub(crate) fn injected_fault(stage: CommitStage) -> StoreError {
    StoreError::Backend(format!("injected fault after {stage:?}").into())
}

/// Tells a written batch's callers their outcomes, once it is durable,
/// after telling subscribers of the new events.
pub(crate) fn acknowledge(
    head: &watch::Sender<i64>,
    batch: Vec<Queued>,
    outcomes: Vec<Result<i64, StoreError>>,
) {
    if let Some(&seq) = outcomes.iter().filter_map(|o| o.as_ref().ok()).max() {
        advance_head(head, seq);
    }
    for (q, outcome) in batch.into_iter().zip(outcomes) {
        let _ = q.done.send(outcome);
    }
}

/// Counts a batch's size on `/metrics` (both write paths).
pub(crate) fn record_batch_size(batch: &[Queued]) {
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!("aurora_db_commit_batch_size").record(batch.len() as f64);
}

/// Tells every commit of `batch` it failed with `e`.
pub(crate) fn fail_all(batch: Vec<Queued>, e: &StoreError) {
    for q in batch {
        let _ = q.done.send(Err(batch_error(e)));
    }
}

pub(crate) fn interrupted() -> StoreError {
    StoreError::Unavailable("the commit was interrupted before it was written".to_owned())
}

/// A batch-wide failure, as each of the batch's commits gets it (errors
/// are not `Clone`): unavailability stays retryable, anything else is
/// reported by its message.
fn batch_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Full(m) => StoreError::Full(m.clone()),
        other => StoreError::Backend(other.to_string().into()),
    }
}
