//! # aurora-migrations
//!
//! The Aurora Locus database schema, as sea-orm migrations that run unchanged
//! on SQLite and Postgres. The server applies them at start-up and on
//! `aurora migrate`; each migration runs once and is recorded in
//! `seaql_migrations`.

use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261125_000002_sessions;
mod m20261125_000003_signing_keys;
mod m20261125_000004_invites_sessions;
mod m20261125_000005_email_token_lookup;
mod m20261206_000006_preferences;
mod m20261210_000007_sink_cursor;
mod m20261211_000008_sink_lease;
mod m20261212_000009_oauth;

/// Applies the schema, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261125_000002_sessions::Migration),
            Box::new(m20261125_000003_signing_keys::Migration),
            Box::new(m20261125_000004_invites_sessions::Migration),
            Box::new(m20261125_000005_email_token_lookup::Migration),
            Box::new(m20261206_000006_preferences::Migration),
            Box::new(m20261210_000007_sink_cursor::Migration),
            Box::new(m20261211_000008_sink_lease::Migration),
            Box::new(m20261212_000009_oauth::Migration),
        ]
    }
}

/// Brings `db` up to the latest schema.
pub async fn migrate(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

#[cfg(test)]
mod testing {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

    /// Column `column` of every row `sql` returns, as strings.
    pub(crate) async fn details(db: &DatabaseConnection, sql: &str, column: &str) -> Vec<String> {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", column).unwrap())
            .collect()
    }
}
