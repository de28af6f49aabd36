//! Repo signing keys, one per account, stored with the account so that any
//! server node on a shared database can sign its commits.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{blob, string};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AccountSigningKey {
    Table,
    Did,
    Curve,
    PrivateKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccountSigningKey::Table)
                    .col(string(AccountSigningKey::Did).primary_key())
                    .col(string(AccountSigningKey::Curve))
                    .col(blob(AccountSigningKey::PrivateKey))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccountSigningKey::Table).to_owned())
            .await
    }
}
