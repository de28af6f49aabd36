//! Event sink leases: which process runs each sink when several share the
//! database, and until when (milliseconds since the Unix epoch, so that
//! "has it lapsed" is one integer comparison on every backend).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SinkLease {
    Table,
    Name,
    Holder,
    ExpiresAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SinkLease::Table)
                    .col(string(SinkLease::Name).primary_key())
                    .col(string(SinkLease::Holder))
                    .col(big_integer(SinkLease::ExpiresAtMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SinkLease::Table).to_owned())
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
    async fn adds_the_sink_lease_table_and_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(7)).await.unwrap();
        let tables = "SELECT name FROM sqlite_master WHERE type = 'table'";
        let has_leases = |names: Vec<String>| names.iter().any(|t| t == "sink_lease");
        assert!(!has_leases(details(&db, tables, "name").await));
        Migrator::up(&db, Some(1)).await.unwrap();
        let insert = "INSERT INTO sink_lease (name, holder, expires_at_ms) \
                      VALUES ('audit', 'node-a', 1798761600000)";
        db.execute_unprepared(insert).await.unwrap();
        // One lease per sink.
        assert!(db.execute_unprepared(insert).await.is_err());
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(!has_leases(details(&db, tables, "name").await));
        Migrator::up(&db, None).await.unwrap();
    }
}
