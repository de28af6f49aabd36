//! Event sink cursors: one row per sink, the last `seq` it acknowledged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SinkCursor {
    Table,
    Name,
    Seq,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SinkCursor::Table)
                    .col(string(SinkCursor::Name).primary_key())
                    .col(big_integer(SinkCursor::Seq))
                    .col(timestamp_with_time_zone(SinkCursor::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SinkCursor::Table).to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database};

    use crate::Migrator;
    use crate::testing::details;

    #[tokio::test]
    async fn adds_the_sink_cursor_table_and_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(6)).await.unwrap();
        let tables = "SELECT name FROM sqlite_master WHERE type = 'table'";
        assert!(
            !details(&db, tables, "name")
                .await
                .iter()
                .any(|t| t == "sink_cursor")
        );
        Migrator::up(&db, Some(1)).await.unwrap();
        let insert = "INSERT INTO sink_cursor (name, seq, updated_at) \
                      VALUES ('audit', 9007199254740993, '2026-01-01T00:00:00Z')";
        db.execute_unprepared(insert).await.unwrap();
        // One row per sink; a 64-bit seq round-trips.
        assert!(db.execute_unprepared(insert).await.is_err());
        let seqs = details(&db, "SELECT CAST(seq AS TEXT) AS s FROM sink_cursor", "s").await;
        assert_eq!(seqs, ["9007199254740993"]);
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(
            !details(&db, tables, "name")
                .await
                .iter()
                .any(|t| t == "sink_cursor")
        );
        Migrator::up(&db, None).await.unwrap();
    }
}
