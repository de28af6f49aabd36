//! Invite codes and their uses, stable session ids on refresh tokens, and
//! account takedown references.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{boolean, integer, string, string_null, timestamp_with_time_zone};
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum InviteCode {
    Table,
    Code,
    AvailableUses,
    Disabled,
    ForAccount,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum InviteCodeUse {
    Table,
    Code,
    UsedBy,
    UsedAt,
}

#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    Id,
    SessionId,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    TakedownRef,
}

const REFRESH_TOKEN_SESSION_IDX: &str = "refresh_token_session_id_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InviteCode::Table)
                    .col(string(InviteCode::Code).primary_key())
                    .col(integer(InviteCode::AvailableUses))
                    .col(boolean(InviteCode::Disabled).default(false))
                    .col(string(InviteCode::ForAccount))
                    .col(string(InviteCode::CreatedBy))
                    .col(timestamp_with_time_zone(InviteCode::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // An account's codes are listed by `for_account`.
        manager
            .create_index(
                Index::create()
                    .name("invite_code_for_account_idx")
                    .table(InviteCode::Table)
                    .col(InviteCode::ForAccount)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InviteCodeUse::Table)
                    .col(string(InviteCodeUse::Code))
                    .col(string(InviteCodeUse::UsedBy))
                    .col(timestamp_with_time_zone(InviteCodeUse::UsedAt))
                    .primary_key(
                        Index::create()
                            .col(InviteCodeUse::Code)
                            .col(InviteCodeUse::UsedBy),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("invite_code_use_code_fk")
                            .from(InviteCodeUse::Table, InviteCodeUse::Code)
                            .to(InviteCode::Table, InviteCode::Code)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // The session id is stable across rotations. Existing tokens each
        // start their own session, named after the token. (SQLite can add a
        // NOT NULL column only with a default; Postgres drops it afterwards.)
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshToken::Table)
                    .add_column(string(RefreshToken::SessionId).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(RefreshToken::Table)
                    .value(RefreshToken::SessionId, Expr::col(RefreshToken::Id))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE refresh_token ALTER COLUMN session_id DROP DEFAULT",
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(REFRESH_TOKEN_SESSION_IDX)
                    .table(RefreshToken::Table)
                    .col(RefreshToken::SessionId)
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Account::Table)
                    .add_column(string_null(Account::TakedownRef))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Account::Table)
                    .drop_column(Account::TakedownRef)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(REFRESH_TOKEN_SESSION_IDX)
                    .table(RefreshToken::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshToken::Table)
                    .drop_column(RefreshToken::SessionId)
                    .to_owned(),
            )
            .await?;
        for table in [
            InviteCodeUse::Table.into_iden(),
            InviteCode::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, Statement};

    use crate::Migrator;

    /// Existing refresh tokens get their own id as session id.
    #[tokio::test]
    async fn existing_tokens_become_their_own_sessions() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        // Everything before this migration.
        Migrator::up(&db, Some(3)).await.unwrap();
        let backend = db.get_database_backend();
        db.execute_raw(Statement::from_string(
            backend,
            "INSERT INTO refresh_token (id, did, expires_at) VALUES ('tok1', 'did:plc:a', '2026-01-01T00:00:00Z')",
        ))
        .await
        .unwrap();
        Migrator::up(&db, None).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT session_id FROM refresh_token WHERE id = 'tok1'",
            ))
            .await
            .unwrap()
            .unwrap();
        let session: String = row.try_get("", "session_id").unwrap();
        assert_eq!(session, "tok1");
        // Uses go with their code.
        db.execute_unprepared(
            "PRAGMA foreign_keys = ON; \
             INSERT INTO invite_code (code, available_uses, for_account, created_by, created_at) \
             VALUES ('c1', 1, 'admin', 'admin', '2026-01-01T00:00:00Z'); \
             INSERT INTO invite_code_use (code, used_by, used_at) \
             VALUES ('c1', 'did:plc:a', '2026-01-01T00:00:00Z'); \
             DELETE FROM invite_code WHERE code = 'c1';",
        )
        .await
        .unwrap();
        let left = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT code FROM invite_code_use",
            ))
            .await
            .unwrap();
        assert!(left.is_empty());
        Migrator::down(&db, Some(1)).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
    }
}
