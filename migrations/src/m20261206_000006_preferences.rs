//! Account preferences (`app.bsky.actor.putPreferences`), one JSON array per
//! account, and an index for the blob sweeps: temporary blobs by upload time.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, text, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AccountPref {
    Table,
    Did,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Blob {
    Table,
    TempKey,
    CreatedAt,
}

const BLOB_TEMP_IDX: &str = "blob_temp_created_at_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccountPref::Table)
                    .col(string(AccountPref::Did).primary_key())
                    .col(text(AccountPref::Value))
                    .col(timestamp_with_time_zone(AccountPref::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // The sweeps look for temporary blobs (stale uploads, uploads whose
        // move to permanent storage was interrupted); permanent ones, the
        // vast majority, stay out of this partial index.
        manager
            .create_index(
                Index::create()
                    .name(BLOB_TEMP_IDX)
                    .table(Blob::Table)
                    .col(Blob::CreatedAt)
                    .and_where(Expr::col(Blob::TempKey).is_not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(BLOB_TEMP_IDX)
                    .table(Blob::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AccountPref::Table).to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

    use super::BLOB_TEMP_IDX;
    use crate::Migrator;
    use crate::testing::details;

    async fn tables(db: &DatabaseConnection) -> Vec<String> {
        details(
            db,
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')",
            "name",
        )
        .await
    }

    #[tokio::test]
    async fn adds_preferences_and_the_temp_blob_index_and_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(5)).await.unwrap();
        assert!(!tables(&db).await.iter().any(|t| t == "account_pref"));
        Migrator::up(&db, Some(1)).await.unwrap();
        let names = tables(&db).await;
        assert!(names.iter().any(|t| t == "account_pref"), "{names:?}");
        assert!(names.iter().any(|t| t == BLOB_TEMP_IDX), "{names:?}");
        db.execute_unprepared(
            "INSERT INTO account_pref (did, value, updated_at) VALUES \
             ('did:plc:a', '[]', '2026-01-01T00:00:00Z')",
        )
        .await
        .unwrap();
        // One row per account.
        assert!(
            db.execute_unprepared(
                "INSERT INTO account_pref (did, value, updated_at) VALUES \
                 ('did:plc:a', '[]', '2026-01-01T00:00:00Z')",
            )
            .await
            .is_err()
        );
        // The sweep for stale temporary blobs uses the partial index.
        let plan = details(
            &db,
            "EXPLAIN QUERY PLAN SELECT did, cid FROM blob \
             WHERE temp_key IS NOT NULL AND created_at < '2026-01-01T00:00:00Z'",
            "detail",
        )
        .await;
        assert!(
            plan.iter().any(|step| step.contains(BLOB_TEMP_IDX)),
            "{plan:?}"
        );
        Migrator::down(&db, Some(1)).await.unwrap();
        let names = tables(&db).await;
        assert!(
            !names
                .iter()
                .any(|t| t == "account_pref" || t == BLOB_TEMP_IDX)
        );
        Migrator::up(&db, None).await.unwrap();
    }
}
