//! `SinkCursorStore` on SQL: the `sink_cursor` and `sink_lease` tables.

use std::time::Duration;

use async_trait::async_trait;
use aurora_core::store::{SinkCursor, SinkCursorStore, SinkLease, StoreError};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::entity::{sink_cursor, sink_lease};
use crate::{SqlStore, db_err};

fn cursor_from_row(row: sink_cursor::Model) -> SinkCursor {
    SinkCursor {
        name: row.name,
        seq: row.seq,
        updated_at: row.updated_at,
    }
}

impl SqlStore {
    /// The smallest stored sink cursor: events after it are kept by `prune`.
    pub(crate) async fn min_sink_cursor(&self) -> Result<Option<i64>, StoreError> {
        let value: Option<Option<i64>> = sink_cursor::Entity::find()
            .select_only()
            .column_as(Expr::col(sink_cursor::Column::Seq).min(), "value")
            .into_tuple()
            .one(self.reads())
            .await
            .map_err(db_err)?;
        Ok(value.flatten())
    }
}

#[async_trait]
impl SinkCursorStore for SqlStore {
    async fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, StoreError> {
        Ok(sink_cursor::Entity::find_by_id(name.to_owned())
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(cursor_from_row))
    }

    async fn set_sink_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        let row = sink_cursor::ActiveModel {
            name: Set(name.to_owned()),
            seq: Set(seq),
            updated_at: Set(Utc::now()),
        };
        // A single statement: no write transaction to hold (SQLite takes
        // its write lock for the statement alone).
        sink_cursor::Entity::insert(row)
            .on_conflict(
                OnConflict::column(sink_cursor::Column::Name)
                    .update_columns([sink_cursor::Column::Seq, sink_cursor::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_sink_cursors(&self) -> Result<Vec<SinkCursor>, StoreError> {
        Ok(sink_cursor::Entity::find()
            .order_by_asc(sink_cursor::Column::Name)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(cursor_from_row)
            .collect())
    }

    async fn delete_sink_cursor(&self, name: &str) -> Result<bool, StoreError> {
        let txn = self.connection().begin().await.map_err(db_err)?;
        sink_lease::Entity::delete_by_id(name.to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        let res = sink_cursor::Entity::delete_by_id(name.to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }

    async fn acquire_sink_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let row = sink_lease::ActiveModel {
            name: Set(name.to_owned()),
            holder: Set(holder.to_owned()),
            expires_at_ms: Set(SinkLease::expiry(now, ttl).timestamp_millis()),
        };
        // One upsert, atomic on both engines: insert the lease, or take the
        // row over only where it is ours already or has lapsed. When the
        // condition fails, no row is affected.
        let ours_or_lapsed = Expr::col((sink_lease::Entity, sink_lease::Column::Holder))
            .eq(holder)
            .or(
                Expr::col((sink_lease::Entity, sink_lease::Column::ExpiresAtMs))
                    .lt(now.timestamp_millis()),
            );
        let affected = sink_lease::Entity::insert(row)
            .on_conflict(
                OnConflict::column(sink_lease::Column::Name)
                    .update_columns([sink_lease::Column::Holder, sink_lease::Column::ExpiresAtMs])
                    .action_and_where(ours_or_lapsed)
                    .to_owned(),
            )
            .exec_without_returning(self.reads())
            .await
            .map_err(db_err)?;
        Ok(affected > 0)
    }

    async fn release_sink_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sink_lease::Entity::delete_many()
            .filter(sink_lease::Column::Name.eq(name))
            .filter(sink_lease::Column::Holder.eq(holder))
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_sink_leases(&self) -> Result<Vec<SinkLease>, StoreError> {
        Ok(sink_lease::Entity::find()
            .order_by_asc(sink_lease::Column::Name)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|row| SinkLease {
                name: row.name,
                holder: row.holder,
                expires_at: DateTime::from_timestamp_millis(row.expires_at_ms)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            })
            .collect())
    }
}
