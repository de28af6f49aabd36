//! The initial schema: accounts, repo roots, blocks, the record index, blobs
//! and their references, and the event log (`repo_seq`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, blob, boolean, integer, string, string_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Account {
    Table,
    Did,
    Handle,
    Email,
    PasswordHash,
    Status,
    CreatedAt,
    EmailConfirmedAt,
}

#[derive(DeriveIden)]
enum RepoRoot {
    Table,
    Did,
    Cid,
    Rev,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RepoBlock {
    Table,
    Did,
    Cid,
    RepoRev,
    Size,
    Content,
}

#[derive(DeriveIden)]
enum Record {
    Table,
    Did,
    Collection,
    Rkey,
    Cid,
    RepoRev,
    IndexedAt,
}

#[derive(DeriveIden)]
enum Blob {
    Table,
    Did,
    Cid,
    MimeType,
    Size,
    TempKey,
    CreatedAt,
    TakedownRef,
}

#[derive(DeriveIden)]
enum RecordBlob {
    Table,
    Did,
    BlobCid,
    RecordUri,
}

#[derive(DeriveIden)]
enum RepoSeq {
    Table,
    Seq,
    Did,
    EventType,
    Event,
    Invalidated,
    SequencedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // The whole schema in one place reads better than split across helpers.
    #[allow(clippy::too_many_lines)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Account::Table)
                    .col(string(Account::Did).primary_key())
                    .col(string(Account::Handle).unique_key())
                    .col(string_null(Account::Email).unique_key())
                    .col(string_null(Account::PasswordHash))
                    .col(string(Account::Status))
                    .col(timestamp_with_time_zone(Account::CreatedAt))
                    .col(timestamp_with_time_zone_null(Account::EmailConfirmedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepoRoot::Table)
                    .col(string(RepoRoot::Did).primary_key())
                    .col(string(RepoRoot::Cid))
                    .col(string(RepoRoot::Rev))
                    .col(timestamp_with_time_zone(RepoRoot::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepoBlock::Table)
                    .col(string(RepoBlock::Did))
                    .col(string(RepoBlock::Cid))
                    .col(string(RepoBlock::RepoRev))
                    .col(integer(RepoBlock::Size))
                    .col(blob(RepoBlock::Content))
                    .primary_key(Index::create().col(RepoBlock::Did).col(RepoBlock::Cid))
                    .to_owned(),
            )
            .await?;
        // getRepo with `since` reads a repo's blocks by revision.
        manager
            .create_index(
                Index::create()
                    .name("repo_block_did_rev_idx")
                    .table(RepoBlock::Table)
                    .col(RepoBlock::Did)
                    .col(RepoBlock::RepoRev)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Record::Table)
                    .col(string(Record::Did))
                    .col(string(Record::Collection))
                    .col(string(Record::Rkey))
                    .col(string(Record::Cid))
                    .col(string(Record::RepoRev))
                    .col(timestamp_with_time_zone(Record::IndexedAt))
                    .primary_key(
                        Index::create()
                            .col(Record::Did)
                            .col(Record::Collection)
                            .col(Record::Rkey),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Blob::Table)
                    .col(string(Blob::Did))
                    .col(string(Blob::Cid))
                    .col(string(Blob::MimeType))
                    .col(big_integer(Blob::Size))
                    .col(string_null(Blob::TempKey))
                    .col(timestamp_with_time_zone(Blob::CreatedAt))
                    .col(string_null(Blob::TakedownRef))
                    .primary_key(Index::create().col(Blob::Did).col(Blob::Cid))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RecordBlob::Table)
                    .col(string(RecordBlob::Did))
                    .col(string(RecordBlob::BlobCid))
                    .col(string(RecordBlob::RecordUri))
                    .primary_key(
                        Index::create()
                            .col(RecordBlob::Did)
                            .col(RecordBlob::BlobCid)
                            .col(RecordBlob::RecordUri),
                    )
                    .to_owned(),
            )
            .await?;
        // Deleting or updating a record drops its blob references by URI.
        manager
            .create_index(
                Index::create()
                    .name("record_blob_did_uri_idx")
                    .table(RecordBlob::Table)
                    .col(RecordBlob::Did)
                    .col(RecordBlob::RecordUri)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RepoSeq::Table)
                    .col(big_integer(RepoSeq::Seq).auto_increment().primary_key())
                    .col(string(RepoSeq::Did))
                    .col(
                        string(RepoSeq::EventType).check(
                            Expr::col(RepoSeq::EventType)
                                .is_in(["commit", "sync", "identity", "account"]),
                        ),
                    )
                    .col(blob(RepoSeq::Event))
                    .col(boolean(RepoSeq::Invalidated).default(false))
                    .col(timestamp_with_time_zone(RepoSeq::SequencedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("repo_seq_did_idx")
                    .table(RepoSeq::Table)
                    .col(RepoSeq::Did)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("repo_seq_sequenced_at_idx")
                    .table(RepoSeq::Table)
                    .col(RepoSeq::SequencedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RepoSeq::Table.into_iden(),
            RecordBlob::Table.into_iden(),
            Blob::Table.into_iden(),
            Record::Table.into_iden(),
            RepoBlock::Table.into_iden(),
            RepoRoot::Table.into_iden(),
            Account::Table.into_iden(),
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
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, Statement};

    use crate::Migrator;
    use sea_orm_migration::MigratorTrait;

    #[tokio::test]
    async fn applies_on_sqlite_and_rolls_back() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        // Idempotent: a second run applies nothing.
        Migrator::up(&db, None).await.unwrap();
        let backend = db.get_database_backend();
        db.execute_raw(Statement::from_string(
            backend,
            "INSERT INTO repo_seq (did, event_type, event, sequenced_at) VALUES ('did:plc:a', 'commit', x'a0', '2026-01-01T00:00:00Z')",
        ))
        .await
        .unwrap();
        // seq is assigned and increasing.
        db.execute_raw(Statement::from_string(
            backend,
            "INSERT INTO repo_seq (did, event_type, event, sequenced_at) VALUES ('did:plc:a', 'identity', x'a0', '2026-01-01T00:00:00Z')",
        ))
        .await
        .unwrap();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT seq, invalidated FROM repo_seq ORDER BY seq",
            ))
            .await
            .unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.try_get("", "seq").unwrap()).collect();
        assert_eq!(seqs, vec![1, 2]);
        // The event type is constrained.
        let bad = db
            .execute_raw(Statement::from_string(
                backend,
                "INSERT INTO repo_seq (did, event_type, event, sequenced_at) VALUES ('did:plc:a', 'bogus', x'a0', '2026-01-01T00:00:00Z')",
            ))
            .await;
        assert!(bad.is_err());
        Migrator::down(&db, None).await.unwrap();
    }
}
