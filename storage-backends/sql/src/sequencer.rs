//! `Sequencer` on SQL: reads of the `repo_seq` table, its pruning, and
//! the live wake-up.
//!
//! Writers of this process advance the wake-up themselves after each
//! commit. On Postgres, several processes may write to one database: each
//! event's transaction also sends a notification (`pg_notify`) carrying its
//! `seq`, delivered at commit; a process that has subscribers LISTENs for
//! them, and polls the log head now and then in case a notification was
//! lost (the listening connection dropped and was re-established).

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use aurora_core::event::{EventType, SeqEvent};
use aurora_core::store::{SeqWatch, Sequencer, StoreError};
use aurora_core::syntax::Did;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::repo_seq;
use crate::sqlite_native::INLINE_EVENTS;
use crate::{Engine, Shared, SqlStore, convert, db_err};

/// The Postgres notification channel announcing newly committed events.
pub(crate) const SEQ_CHANNEL: &str = "aurora_repo_seq";

/// How often a listening process also polls the log head.
const HEAD_POLL: Duration = Duration::from_secs(5);

/// Rows deleted per pruning transaction.
const PRUNE_BATCH: u64 = 5_000;

impl SqlStore {
    pub(crate) async fn max_seq(&self) -> Result<Option<i64>, StoreError> {
        self.seq_aggregate(Expr::col(repo_seq::Column::Seq).max())
            .await
    }

    async fn seq_aggregate(&self, expr: Expr) -> Result<Option<i64>, StoreError> {
        let value: Option<Option<i64>> = repo_seq::Entity::find()
            .select_only()
            .column_as(expr, "value")
            .into_tuple()
            .one(self.reads())
            .await
            .map_err(db_err)?;
        Ok(value.flatten())
    }
}

fn event_from_row(row: repo_seq::Model) -> Result<SeqEvent, StoreError> {
    Ok(SeqEvent {
        seq: row.seq,
        did: convert::parse(row.did, Did::parse)?,
        event_type: row
            .event_type
            .parse::<EventType>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        time: row.sequenced_at,
        payload: Bytes::from(row.event),
    })
}

#[async_trait]
impl Sequencer for SqlStore {
    async fn current_seq(&self) -> Result<Option<i64>, StoreError> {
        // On a SQLite file the log may hold a batch committed but not yet
        // synced (see `sqlite_writer.rs`): the head is what is durable,
        // and nobody else writes to the file.
        if self.recent_events().is_some() {
            let head = *self.shared.head.borrow();
            return Ok((head > 0).then_some(head));
        }
        let seq = self.max_seq().await?;
        // Another process may have committed events we were not woken for.
        if let Some(seq) = seq {
            self.advance_head(seq);
        }
        Ok(seq)
    }

    async fn oldest_seq(&self) -> Result<Option<i64>, StoreError> {
        self.seq_aggregate(Expr::col(repo_seq::Column::Seq).min())
            .await
    }

    async fn events_in_range(
        &self,
        after: i64,
        mut up_to: i64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError> {
        // The head first: the writer thread adds events to the recent ones
        // before it announces them.
        let head = *self.shared.head.borrow();
        if let Some(recent) = self.recent_events() {
            if let Some(events) = recent.range(after, up_to, head, limit) {
                return Ok(events);
            }
            // Nothing past the head, which is what is durable (see
            // `current_seq`).
            up_to = std::cmp::min(up_to, head);
        }
        // Else the live tail is read inline on SQLite (see
        // `sqlite_native.rs`); `up_to` is often "no bound", the head bounds
        // what there is.
        if let Some(sqlite) = self.native_sqlite()
            && std::cmp::min(up_to, head).saturating_sub(after) <= INLINE_EVENTS
            && let Ok(rows) = sqlite.events_in_range(after, up_to, limit)
        {
            return rows.into_iter().map(event_from_row).collect();
        }
        repo_seq::Entity::find()
            .filter(repo_seq::Column::Seq.gt(after))
            .filter(repo_seq::Column::Seq.lte(up_to))
            .filter(repo_seq::Column::Invalidated.eq(false))
            .order_by_asc(repo_seq::Column::Seq)
            .limit(limit as u64)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(event_from_row)
            .collect()
    }

    fn subscribe(&self) -> SeqWatch {
        if self.engine() == Engine::Postgres {
            self.listen_for_other_writers();
        }
        self.shared.head.subscribe()
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // The newest event always stays: the numbering continues from it.
        let Some(newest) = self.max_seq().await? else {
            return Ok(0);
        };
        // Nor do events a sink has yet to acknowledge. A cursor stored
        // after this read only ever moves forward from where it was, and a
        // new sink starts at the head or at the oldest event kept.
        let delete_below = self.min_sink_cursor().await?.map_or(newest, |cursor| {
            std::cmp::min(cursor.saturating_add(1), newest)
        });
        let mut deleted = 0;
        loop {
            // In batches, so that a long backlog never holds the write lock
            // (SQLite) for long.
            let batch = Query::select()
                .column(repo_seq::Column::Seq)
                .from(repo_seq::Entity)
                .and_where(Expr::col(repo_seq::Column::SequencedAt).lt(before))
                .and_where(Expr::col(repo_seq::Column::Seq).lt(delete_below))
                .order_by(repo_seq::Column::Seq, sea_orm::Order::Asc)
                .limit(PRUNE_BATCH)
                .to_owned();
            let txn = self.begin_write().await?;
            let res = repo_seq::Entity::delete_many()
                .filter(repo_seq::Column::Seq.in_subquery(batch))
                .exec(&txn)
                .await
                .map_err(db_err)?;
            txn.commit().await.map_err(db_err)?;
            if res.rows_affected > 0
                && let Some(recent) = self.recent_events()
            {
                recent.forget_below(delete_below);
            }
            deleted += res.rows_affected;
            if res.rows_affected < PRUNE_BATCH {
                return Ok(deleted);
            }
        }
    }
}

impl SqlStore {
    /// Starts (once per store) the task that wakes subscribers for events
    /// committed by other processes on the same Postgres database.
    fn listen_for_other_writers(&self) {
        if self
            .shared
            .listening
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime: nothing to run the listener on. Let a later call try.
            self.shared
                .listening
                .store(false, std::sync::atomic::Ordering::Release);
            return;
        };
        let pool = self.connection().get_postgres_connection_pool().clone();
        runtime.spawn(follow_other_writers(Arc::downgrade(&self.shared), pool));
    }
}

/// Advances the wake-up of the store behind `shared` to the log head, as
/// read from the database. `false` when the store is gone.
async fn poll_head(shared: &Weak<Shared>) -> bool {
    let Some(shared) = shared.upgrade() else {
        return false;
    };
    let store = SqlStore {
        shared,
        fault_at: None,
    };
    match store.max_seq().await {
        Ok(Some(seq)) => store.advance_head(seq),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the event log head"),
    }
    true
}

/// LISTENs for the notifications of committed events (see the module
/// documentation) until the store is dropped or its pool closed.
async fn follow_other_writers(shared: Weak<Shared>, pool: sea_orm::sqlx::PgPool) {
    let mut listener: Option<PgListener> = None;
    let mut head_poll = tokio::time::interval(HEAD_POLL);
    head_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            if pool.is_closed() {
                return;
            }
            match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(SEQ_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "cannot LISTEN for new events"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN for new events"),
            }
            // Whatever was committed before the LISTEN took effect.
            if !poll_head(&shared).await {
                return;
            }
        }
        let next = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = next => match received {
                Ok(Some(notification)) => {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    if let Ok(seq) = notification.payload().parse::<i64>() {
                        SqlStore { shared, fault_at: None }.advance_head(seq);
                    }
                }
                // The connection was lost and re-established: notifications
                // in between may be lost.
                Ok(None) => {
                    if !poll_head(&shared).await {
                        return;
                    }
                }
                Err(sea_orm::sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection for new events");
                    listener = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = head_poll.tick() => {
                if !poll_head(&shared).await {
                    return;
                }
            }
        }
    }
}
