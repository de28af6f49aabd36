//! `SinkCursorStore` on SQL: the `sink_cursor` table.

use async_trait::async_trait;
use aurora_core::store::{SinkCursor, SinkCursorStore, StoreError};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder, QuerySelect};

use crate::entity::sink_cursor;
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
            .one(self.connection())
            .await
            .map_err(db_err)?;
        Ok(value.flatten())
    }
}

#[async_trait]
impl SinkCursorStore for SqlStore {
    async fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, StoreError> {
        Ok(sink_cursor::Entity::find_by_id(name.to_owned())
            .one(self.connection())
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
            .exec_without_returning(self.connection())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_sink_cursors(&self) -> Result<Vec<SinkCursor>, StoreError> {
        Ok(sink_cursor::Entity::find()
            .order_by_asc(sink_cursor::Column::Name)
            .all(self.connection())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(cursor_from_row)
            .collect())
    }

    async fn delete_sink_cursor(&self, name: &str) -> Result<bool, StoreError> {
        let res = sink_cursor::Entity::delete_by_id(name.to_owned())
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }
}
