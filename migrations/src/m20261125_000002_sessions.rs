//! Sessions and credentials: refresh tokens, app passwords, emailed tokens.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{boolean, string, string_null, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    Id,
    Did,
    AppPasswordName,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    Did,
    Name,
    PasswordHash,
    Privileged,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmailToken {
    Table,
    Did,
    Purpose,
    Token,
    RequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshToken::Table)
                    .col(string(RefreshToken::Id).primary_key())
                    .col(string(RefreshToken::Did))
                    .col(string_null(RefreshToken::AppPasswordName))
                    .col(timestamp_with_time_zone(RefreshToken::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // Ending an account's sessions deletes by DID.
        manager
            .create_index(
                Index::create()
                    .name("refresh_token_did_idx")
                    .table(RefreshToken::Table)
                    .col(RefreshToken::Did)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AppPassword::Table)
                    .col(string(AppPassword::Did))
                    .col(string(AppPassword::Name))
                    .col(string(AppPassword::PasswordHash))
                    .col(boolean(AppPassword::Privileged))
                    .col(timestamp_with_time_zone(AppPassword::CreatedAt))
                    .primary_key(Index::create().col(AppPassword::Did).col(AppPassword::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EmailToken::Table)
                    .col(string(EmailToken::Did))
                    .col(string(EmailToken::Purpose))
                    .col(string(EmailToken::Token))
                    .col(timestamp_with_time_zone(EmailToken::RequestedAt))
                    .primary_key(
                        Index::create()
                            .col(EmailToken::Did)
                            .col(EmailToken::Purpose),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmailToken::Table.into_iden(),
            AppPassword::Table.into_iden(),
            RefreshToken::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
