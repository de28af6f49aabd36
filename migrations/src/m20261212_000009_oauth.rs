//! The OAuth authorization server's tables: pushed authorization requests
//! (with their codes), sessions (with their current access token id and
//! refresh token hash, and the refresh tokens they already used), accounts
//! remembered by browsers, and the scopes accounts granted clients.
//!
//! Times are milliseconds since the Unix epoch, so that expiry checks are
//! one integer comparison on every backend.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_null, text, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OauthRequest {
    Table,
    Id,
    ClientId,
    ClientAuth,
    DpopJkt,
    Parameters,
    DeviceId,
    Did,
    Code,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum OauthSession {
    Table,
    Id,
    Did,
    ClientId,
    ClientAuth,
    DpopJkt,
    Scope,
    DeviceId,
    Code,
    TokenId,
    RefreshHash,
    CreatedAtMs,
    UpdatedAtMs,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum OauthUsedRefresh {
    Table,
    RefreshHash,
    SessionId,
}

#[derive(DeriveIden)]
enum OauthDeviceAccount {
    Table,
    DeviceId,
    Did,
    AuthenticatedAtMs,
    UserAgent,
    LastSeenAtMs,
}

#[derive(DeriveIden)]
enum OauthAuthorizedClient {
    Table,
    Did,
    ClientId,
    Scope,
}

fn index(
    name: &str,
    table: impl IntoIden,
    col: impl IntoIden,
    unique: bool,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).col(col);
    if unique {
        index.unique();
    }
    index.clone()
}

impl Migration {
    /// Pushed requests and their codes.
    async fn create_requests(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthRequest::Table)
                    .col(string(OauthRequest::Id).primary_key())
                    .col(text(OauthRequest::ClientId))
                    .col(text(OauthRequest::ClientAuth))
                    .col(string(OauthRequest::DpopJkt))
                    .col(text(OauthRequest::Parameters))
                    .col(string_null(OauthRequest::DeviceId))
                    .col(string_null(OauthRequest::Did))
                    .col(string_null(OauthRequest::Code))
                    .col(big_integer(OauthRequest::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        // Codes are exchanged by value; expired requests are purged by time.
        manager
            .create_index(index(
                "oauth_request_code_idx",
                OauthRequest::Table,
                OauthRequest::Code,
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "oauth_request_expires_idx",
                OauthRequest::Table,
                OauthRequest::ExpiresAtMs,
                false,
            ))
            .await?;
        Ok(())
    }

    /// Sessions and the refresh tokens they used.
    async fn create_sessions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthSession::Table)
                    .col(string(OauthSession::Id).primary_key())
                    .col(string(OauthSession::Did))
                    .col(text(OauthSession::ClientId))
                    .col(text(OauthSession::ClientAuth))
                    .col(string(OauthSession::DpopJkt))
                    .col(text(OauthSession::Scope))
                    .col(string_null(OauthSession::DeviceId))
                    .col(string(OauthSession::Code))
                    .col(string(OauthSession::TokenId))
                    .col(string(OauthSession::RefreshHash))
                    .col(big_integer(OauthSession::CreatedAtMs))
                    .col(big_integer(OauthSession::UpdatedAtMs))
                    .col(big_integer(OauthSession::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        // Every authenticated call finds its session by access token id; a
        // refresh by refresh token; a replayed code by code; session lists
        // by account.
        for (name, col, unique) in [
            ("oauth_session_token_idx", OauthSession::TokenId, true),
            ("oauth_session_refresh_idx", OauthSession::RefreshHash, true),
            ("oauth_session_code_idx", OauthSession::Code, true),
            ("oauth_session_did_idx", OauthSession::Did, false),
        ] {
            manager
                .create_index(index(name, OauthSession::Table, col, unique))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(OauthUsedRefresh::Table)
                    .col(string(OauthUsedRefresh::RefreshHash).primary_key())
                    .col(string(OauthUsedRefresh::SessionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "oauth_used_refresh_session_idx",
                OauthUsedRefresh::Table,
                OauthUsedRefresh::SessionId,
                false,
            ))
            .await?;
        Ok(())
    }

    /// Remembered accounts and granted scopes.
    async fn create_devices(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthDeviceAccount::Table)
                    .col(string(OauthDeviceAccount::DeviceId))
                    .col(string(OauthDeviceAccount::Did))
                    .col(big_integer(OauthDeviceAccount::AuthenticatedAtMs))
                    .col(text_null(OauthDeviceAccount::UserAgent))
                    .col(big_integer(OauthDeviceAccount::LastSeenAtMs))
                    .primary_key(
                        Index::create()
                            .col(OauthDeviceAccount::DeviceId)
                            .col(OauthDeviceAccount::Did),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "oauth_device_account_did_idx",
                OauthDeviceAccount::Table,
                OauthDeviceAccount::Did,
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthAuthorizedClient::Table)
                    .col(string(OauthAuthorizedClient::Did))
                    .col(string(OauthAuthorizedClient::ClientId))
                    .col(text(OauthAuthorizedClient::Scope))
                    .primary_key(
                        Index::create()
                            .col(OauthAuthorizedClient::Did)
                            .col(OauthAuthorizedClient::ClientId),
                    )
                    .to_owned(),
            )
            .await
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        Self::create_requests(manager).await?;
        Self::create_sessions(manager).await?;
        Self::create_devices(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthAuthorizedClient::Table.into_iden(),
            OauthDeviceAccount::Table.into_iden(),
            OauthUsedRefresh::Table.into_iden(),
            OauthSession::Table.into_iden(),
            OauthRequest::Table.into_iden(),
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
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database};

    use crate::Migrator;
    use crate::testing::details;

    #[tokio::test]
    async fn adds_the_oauth_tables_and_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(8)).await.unwrap();
        let tables = "SELECT name FROM sqlite_master WHERE type = 'table'";
        let oauth_tables = |names: Vec<String>| {
            let mut found: Vec<String> = names
                .into_iter()
                .filter(|t| t.starts_with("oauth_"))
                .collect();
            found.sort();
            found
        };
        assert!(oauth_tables(details(&db, tables, "name").await).is_empty());
        Migrator::up(&db, Some(1)).await.unwrap();
        assert_eq!(
            oauth_tables(details(&db, tables, "name").await),
            [
                "oauth_authorized_client",
                "oauth_device_account",
                "oauth_request",
                "oauth_session",
                "oauth_used_refresh",
            ]
        );
        // A code belongs to one request.
        let insert = |id: &str| {
            format!(
                "INSERT INTO oauth_request (id, client_id, client_auth, dpop_jkt, parameters, code, expires_at_ms) \
                 VALUES ('{id}', 'https://app.example/client.json', '{{}}', 'jkt', '{{}}', 'cod-1', 1798761600000)"
            )
        };
        db.execute_unprepared(&insert("req-1")).await.unwrap();
        assert!(db.execute_unprepared(&insert("req-2")).await.is_err());
        Migrator::down(&db, Some(1)).await.unwrap();
        assert!(oauth_tables(details(&db, tables, "name").await).is_empty());
        Migrator::up(&db, None).await.unwrap();
    }
}
