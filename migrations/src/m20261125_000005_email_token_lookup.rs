//! Email tokens looked up by value: password reset knows only the token, not
//! the account, so `email_token` is indexed on `(purpose, token)`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum EmailToken {
    Table,
    Purpose,
    Token,
}

const EMAIL_TOKEN_LOOKUP_IDX: &str = "email_token_purpose_token_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(EMAIL_TOKEN_LOOKUP_IDX)
                    .table(EmailToken::Table)
                    .col(EmailToken::Purpose)
                    .col(EmailToken::Token)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(EMAIL_TOKEN_LOOKUP_IDX)
                    .table(EmailToken::Table)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

    use super::EMAIL_TOKEN_LOOKUP_IDX;
    use crate::Migrator;
    use crate::testing::details;

    async fn has_index(db: &DatabaseConnection) -> bool {
        details(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'index'",
            "name",
        )
        .await
        .iter()
        .any(|name| name == EMAIL_TOKEN_LOOKUP_IDX)
    }

    #[tokio::test]
    async fn by_value_lookups_use_the_index_and_it_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(4)).await.unwrap();
        assert!(!has_index(&db).await);
        Migrator::up(&db, Some(1)).await.unwrap();
        assert!(has_index(&db).await);
        let plan = details(
            &db,
            "EXPLAIN QUERY PLAN SELECT did FROM email_token \
             WHERE purpose = 'reset_password' AND token = 'AAAA-1111'",
            "detail",
        )
        .await;
        assert!(
            plan.iter()
                .any(|step| step.contains(EMAIL_TOKEN_LOOKUP_IDX)),
            "{plan:?}"
        );
        // Tokens need not be unique: two accounts may (improbably) hold the same one.
        db.execute_unprepared(
            "INSERT INTO email_token (did, purpose, token, requested_at) VALUES \
             ('did:plc:a', 'reset_password', 'AAAA-1111', '2026-01-01T00:00:00Z'), \
             ('did:plc:b', 'reset_password', 'AAAA-1111', '2026-01-01T00:00:00Z');",
        )
        .await
        .unwrap();
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(!has_index(&db).await);
        Migrator::up(&db, None).await.unwrap();
        assert!(has_index(&db).await);
    }
}
