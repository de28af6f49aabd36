//! `Sequencer` on SQL: reads of the `repo_seq` table.

use async_trait::async_trait;
use aurora_core::event::{EventType, SeqEvent};
use aurora_core::store::{SeqWatch, Sequencer, StoreError};
use aurora_core::syntax::Did;
use bytes::Bytes;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::repo_seq;
use crate::{SqlStore, convert, db_err};

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
            .one(self.connection())
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
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError> {
        repo_seq::Entity::find()
            .filter(repo_seq::Column::Seq.gt(after))
            .filter(repo_seq::Column::Seq.lte(up_to))
            .filter(repo_seq::Column::Invalidated.eq(false))
            .order_by_asc(repo_seq::Column::Seq)
            .limit(limit as u64)
            .all(self.connection())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(event_from_row)
            .collect()
    }

    fn subscribe(&self) -> SeqWatch {
        self.shared.head.subscribe()
    }
}
