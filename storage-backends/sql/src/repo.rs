//! `RepoStore` on SQL: blocks, roots, the record index, and `apply_commit`.
//! Blob metadata is in [`crate::blobs`].

use std::collections::HashSet;

use async_trait::async_trait;
use aurora_core::cid::Cid;
use aurora_core::event::NewEvent;
use aurora_core::store::{
    BlobRecord, CommitWrite, MissingBlob, RecordEntry, RecordPage, RecordWrite, RepoRoot,
    RepoStats, RepoStore, RevBlock, StoreError,
};
use aurora_core::syntax::{Did, Nsid, RecordKey, Tid};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Asterisk, CaseStatement, Expr, ExprTrait, OnConflict, Query, SelectStatement,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TryInsertResult,
};

use crate::entity::{blob, record, record_blob, repo_block, repo_root, repo_seq};
use crate::sequencer::SEQ_CHANNEL;
use crate::{Engine, SqlStore, blobs, convert, db_err};

/// Rows per multi-row INSERT, well under SQLite's and Postgres' bind-parameter limits.
const INSERT_CHUNK: usize = 500;

/// Advisory lock key serialising event numbering on Postgres ("aurora" in ASCII).
const SEQ_LOCK_KEY: i64 = 0x6175_726f_7261;

/// `query` (a `FROM` and `WHERE`) selecting the count `count`, as a scalar subquery.
fn count_of(mut query: SelectStatement, count: Expr) -> Expr {
    query.expr(count).to_owned().into()
}

/// A count of one `RepoStats` field as a query result's `i64`.
fn stat(row: &sea_orm::QueryResult, name: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get("", name).map_err(db_err)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {name}: {n}")))
}

fn entry_from_row(row: record::Model) -> Result<RecordEntry, StoreError> {
    Ok(RecordEntry {
        cid: convert::cid(&row.cid)?,
        collection: convert::parse(row.collection, Nsid::parse)?,
        rkey: convert::parse(row.rkey, RecordKey::parse)?,
        rev: convert::parse(row.repo_rev, Tid::parse)?,
    })
}

impl SqlStore {
    pub(crate) async fn swap_root(
        &self,
        txn: &DatabaseTransaction,
        c: &CommitWrite,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let conflict = || StoreError::RootConflict {
            did: c.did.clone(),
            expected: c.expected_root,
        };
        if let Some(expected) = c.expected_root {
            let res = repo_root::Entity::update_many()
                .col_expr(repo_root::Column::Cid, Expr::value(c.root.to_string()))
                .col_expr(repo_root::Column::Rev, Expr::value(c.rev.as_str()))
                .col_expr(repo_root::Column::UpdatedAt, Expr::value(now))
                .filter(repo_root::Column::Did.eq(c.did.as_str()))
                .filter(repo_root::Column::Cid.eq(expected.to_string()))
                .exec(txn)
                .await
                .map_err(db_err)?;
            if res.rows_affected != 1 {
                return Err(conflict());
            }
        } else {
            let row = repo_root::ActiveModel {
                did: Set(c.did.as_str().to_owned()),
                cid: Set(c.root.to_string()),
                rev: Set(c.rev.as_str().to_owned()),
                updated_at: Set(now),
            };
            let res = repo_root::Entity::insert(row)
                .on_conflict_do_nothing_on([repo_root::Column::Did])
                .exec_without_returning(txn)
                .await
                .map_err(db_err)?;
            if !matches!(res, TryInsertResult::Inserted(1)) {
                return Err(conflict());
            }
        }
        Ok(())
    }

    /// Swaps the roots of `commits`, each of a different repo and each with
    /// an expected root, in one statement; returns the repos whose swap
    /// succeeded. The others' roots moved on and are left as they are.
    pub(crate) async fn swap_roots(
        &self,
        txn: &DatabaseTransaction,
        commits: &[&CommitWrite],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        let did = || Expr::col(repo_root::Column::Did);
        let (mut new_cid, mut new_rev) = (CaseStatement::new(), CaseStatement::new());
        let mut expected = Condition::any();
        for c in commits {
            let old = expected_root(c)?;
            new_cid = new_cid.case(did().eq(c.did.as_str()), c.root.to_string());
            new_rev = new_rev.case(did().eq(c.did.as_str()), c.rev.as_str());
            expected = expected.add(
                Condition::all()
                    .add(repo_root::Column::Did.eq(c.did.as_str()))
                    .add(repo_root::Column::Cid.eq(old.to_string())),
            );
        }
        let update = Query::update()
            .table(repo_root::Entity)
            .value(repo_root::Column::Cid, new_cid)
            .value(repo_root::Column::Rev, new_rev)
            .value(repo_root::Column::UpdatedAt, now)
            .cond_where(expected)
            .returning_col(repo_root::Column::Did)
            .to_owned();
        let rows = txn.query_all(&update).await.map_err(db_err)?;
        dids_of(&rows)
    }

    /// On Postgres, for `commits` whose record writes are all puts (see
    /// [`writes_in_one_statement`]): swaps their roots, stores their blocks
    /// and puts their records in one statement (one round trip instead of
    /// three), for the commits whose swap succeeded; returns those repos.
    /// The blocks and records go in as [`put_blocks`](Self::put_blocks) and
    /// [`write_records`](Self::write_records) put them; the blob
    /// references are left to [`blobs::write_references`].
    pub(crate) async fn swap_roots_with_blocks_and_records(
        &self,
        txn: &DatabaseTransaction,
        commits: &[&CommitWrite],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError> {
        // Columns as arrays, so that the statement's text is the same for
        // every batch and stays prepared.
        let (mut root_dids, mut expected, mut new_cids, mut revs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut block_repos, mut block_cids, mut block_revs, mut sizes, mut contents) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut record_repos, mut collections, mut rkeys, mut record_cids, mut record_revs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in commits {
            let old = expected_root(c)?;
            let (did, rev) = (c.did.as_str(), c.rev.as_str());
            root_dids.push(did.to_owned());
            expected.push(old.to_string());
            new_cids.push(c.root.to_string());
            revs.push(rev.to_owned());
            for (cid, bytes) in distinct_blocks(c) {
                block_repos.push(did.to_owned());
                block_cids.push(cid.to_string());
                block_revs.push(rev.to_owned());
                sizes.push(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
                contents.push(bytes.to_vec());
            }
            for write in &c.records {
                let RecordWrite::Put {
                    collection,
                    rkey,
                    cid,
                    ..
                } = write
                else {
                    return Err(StoreError::Backend(
                        "a record delete in a one-statement commit".into(),
                    ));
                };
                record_repos.push(did.to_owned());
                collections.push(collection.as_str().to_owned());
                rkeys.push(rkey.as_str().to_owned());
                record_cids.push(cid.to_string());
                record_revs.push(rev.to_owned());
            }
        }
        // Sibling statements in a WITH see the same snapshot and do not see
        // each other's rows, only `roots`' RETURNING: the blocks and records
        // are those of the repos whose root moved. They touch other tables
        // than `roots`, and no row twice. (A batch without records has an
        // empty `records`, a no-op.)
        let sql = "WITH roots AS ( \
               UPDATE repo_root AS r SET cid = n.cid, rev = n.rev, updated_at = $1 \
               FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) \
                 AS n (did, expected, cid, rev) \
               WHERE r.did = n.did AND r.cid = n.expected \
               RETURNING r.did), \
             blocks AS ( \
               INSERT INTO repo_block (did, cid, repo_rev, size, content) \
               SELECT b.did, b.cid, b.rev, b.size, b.content \
               FROM unnest($6::text[], $7::text[], $8::text[], $9::int4[], $10::bytea[]) \
                 AS b (did, cid, rev, size, content) \
               WHERE b.did IN (SELECT did FROM roots) \
               ON CONFLICT (did, cid) DO UPDATE SET repo_rev = excluded.repo_rev), \
             records AS ( \
               INSERT INTO record (did, collection, rkey, cid, repo_rev, indexed_at) \
               SELECT v.did, v.collection, v.rkey, v.cid, v.rev, $1 \
               FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[]) \
                 AS v (did, collection, rkey, cid, rev) \
               WHERE v.did IN (SELECT did FROM roots) \
               ON CONFLICT (did, collection, rkey) DO UPDATE SET \
                 cid = excluded.cid, repo_rev = excluded.repo_rev, \
                 indexed_at = excluded.indexed_at) \
             SELECT did FROM roots";
        let values: Vec<sea_orm::Value> = vec![
            now.into(),
            root_dids.into(),
            expected.into(),
            new_cids.into(),
            revs.into(),
            block_repos.into(),
            block_cids.into(),
            block_revs.into(),
            sizes.into(),
            contents.into(),
            record_repos.into(),
            collections.into(),
            rkeys.into(),
            record_cids.into(),
            record_revs.into(),
        ];
        let statement = Statement::from_sql_and_values(txn.get_database_backend(), sql, values);
        let rows = txn.query_all_raw(statement).await.map_err(db_err)?;
        dids_of(&rows)
    }

    /// Stores the blocks of `commits`, in as few statements as the
    /// bind-parameter limit allows.
    pub(crate) async fn put_blocks(
        &self,
        txn: &DatabaseTransaction,
        commits: &[&CommitWrite],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::new();
        for c in commits {
            rows.extend(
                distinct_blocks(c).map(|(cid, bytes)| repo_block::ActiveModel {
                    did: Set(c.did.as_str().to_owned()),
                    cid: Set(cid.to_string()),
                    repo_rev: Set(c.rev.as_str().to_owned()),
                    size: Set(i32::try_from(bytes.len()).unwrap_or(i32::MAX)),
                    content: Set(bytes.to_vec()),
                }),
            );
        }
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
            // A block stored before keeps its bytes and takes this commit's
            // rev, so that `blocks_since` has it in the diff.
            repo_block::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::columns([repo_block::Column::Did, repo_block::Column::Cid])
                        .update_column(repo_block::Column::RepoRev)
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Applies the record writes of `commits` to the record index and
    /// their blob references.
    pub(crate) async fn write_records(
        &self,
        txn: &DatabaseTransaction,
        commits: &[&CommitWrite],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut puts = Vec::new();
        let mut deletes = Condition::any();
        let mut any_delete = false;
        for c in commits {
            for write in &c.records {
                match write {
                    RecordWrite::Put {
                        collection,
                        rkey,
                        cid,
                        ..
                    } => puts.push(record::ActiveModel {
                        did: Set(c.did.as_str().to_owned()),
                        collection: Set(collection.as_str().to_owned()),
                        rkey: Set(rkey.as_str().to_owned()),
                        cid: Set(cid.to_string()),
                        repo_rev: Set(c.rev.as_str().to_owned()),
                        indexed_at: Set(now),
                    }),
                    RecordWrite::Delete { collection, rkey } => {
                        any_delete = true;
                        deletes = deletes.add(
                            Condition::all()
                                .add(record::Column::Did.eq(c.did.as_str()))
                                .add(record::Column::Collection.eq(collection.as_str()))
                                .add(record::Column::Rkey.eq(rkey.as_str())),
                        );
                    }
                }
            }
        }
        if any_delete {
            record::Entity::delete_many()
                .filter(deletes)
                .exec(txn)
                .await
                .map_err(db_err)?;
        }
        let mut puts = puts.into_iter().peekable();
        while puts.peek().is_some() {
            let chunk: Vec<_> = puts.by_ref().take(INSERT_CHUNK).collect();
            record::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::columns([
                        record::Column::Did,
                        record::Column::Collection,
                        record::Column::Rkey,
                    ])
                    .update_columns([
                        record::Column::Cid,
                        record::Column::RepoRev,
                        record::Column::IndexedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(txn)
                .await
                .map_err(db_err)?;
        }
        blobs::write_references(txn, commits).await
    }

    /// Inserts an event row and returns its `seq` (see [`insert_events`](Self::insert_events)).
    pub(crate) async fn insert_event(
        &self,
        txn: &DatabaseTransaction,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.insert_events(txn, std::slice::from_ref(event), now)
            .await?
            .first()
            .map(|(_, seq)| *seq)
            .ok_or_else(|| StoreError::Backend("the event insert returned no seq".into()))
    }

    /// Inserts event rows and returns each one's repo and `seq`. On
    /// Postgres the inserts happen under a transaction-scoped advisory lock
    /// held until commit, so no transaction can commit a smaller `seq`
    /// after a larger one is visible (the lock is released only after the
    /// commit is visible), and a notification announces the highest `seq`
    /// to other processes at commit. (SQLite's single writer gives the same
    /// for free.)
    pub(crate) async fn insert_events(
        &self,
        txn: &DatabaseTransaction,
        events: &[NewEvent],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if self.engine() == Engine::Postgres {
            return insert_events_postgres(txn, events, now).await;
        }
        let mut seqs = Vec::with_capacity(events.len());
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table(repo_seq::Entity)
                .columns([
                    repo_seq::Column::Did,
                    repo_seq::Column::EventType,
                    repo_seq::Column::Event,
                    repo_seq::Column::Invalidated,
                    repo_seq::Column::SequencedAt,
                ])
                .returning(
                    Query::returning().columns([repo_seq::Column::Did, repo_seq::Column::Seq]),
                );
            for event in chunk {
                insert
                    .values([
                        event.did.as_str().into(),
                        event.event_type.as_str().into(),
                        event.payload.to_vec().into(),
                        false.into(),
                        now.into(),
                    ])
                    .map_err(|e| StoreError::Backend(e.to_string().into()))?;
            }
            seqs.extend(seqs_of(txn.query_all(&insert).await.map_err(db_err)?)?);
        }
        Ok(seqs)
    }
}

/// [`SqlStore::insert_events`] on Postgres: the lock, the rows and the
/// notification in one statement (one round trip instead of three; every
/// commit waits for them, and they are most of its time at one client).
///
/// The lock is a materialized CTE joined into the insert's rows, so it is
/// taken before the first row, and with it the first `seq`, is made. The
/// notification is an init plan over the inserted rows: evaluated once,
/// after them, and delivered only if the transaction commits.
async fn insert_events_postgres(
    txn: &DatabaseTransaction,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut seqs = Vec::with_capacity(events.len());
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut values: Vec<sea_orm::Value> =
            vec![SEQ_LOCK_KEY.into(), SEQ_CHANNEL.into(), now.into()];
        let mut rows = Vec::with_capacity(chunk.len());
        for event in chunk {
            let n = values.len();
            rows.push(format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
            values.push(event.did.as_str().into());
            values.push(event.event_type.as_str().into());
            values.push(event.payload.to_vec().into());
        }
        let sql = format!(
            "WITH seq_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)), \
             inserted AS ( \
               INSERT INTO repo_seq (did, event_type, event, invalidated, sequenced_at) \
               SELECT e.did, e.event_type, e.event, false, $3 \
               FROM seq_lock, (VALUES {}) AS e (did, event_type, event) \
               RETURNING did, seq) \
             SELECT did, seq, \
               (SELECT pg_notify($2, max(seq)::text) FROM inserted)::text AS notified \
             FROM inserted",
            rows.join(", ")
        );
        let statement = Statement::from_sql_and_values(txn.get_database_backend(), sql, values);
        seqs.extend(seqs_of(
            txn.query_all_raw(statement).await.map_err(db_err)?,
        )?);
    }
    Ok(seqs)
}

/// Whether [`SqlStore::swap_roots_with_blocks_and_records`] can write
/// `commits`: every record write a put (a delete and a put of one record
/// in one statement would happen in no set order).
pub(crate) fn writes_in_one_statement(commits: &[&CommitWrite]) -> bool {
    commits.iter().all(|c| {
        c.records
            .iter()
            .all(|w| matches!(w, RecordWrite::Put { .. }))
    })
}

/// The root `c`'s repo must be at for a batched swap (a repo's first
/// commit has none and is never batched).
fn expected_root(c: &CommitWrite) -> Result<Cid, StoreError> {
    c.expected_root
        .ok_or_else(|| StoreError::Backend("a batched root swap needs the expected root".into()))
}

/// `c`'s blocks, each once: Postgres refuses to update one row twice in a
/// statement (two records with equal content share a block).
fn distinct_blocks(c: &CommitWrite) -> impl Iterator<Item = &(Cid, Bytes)> {
    let mut seen = HashSet::with_capacity(c.blocks.len());
    c.blocks.iter().filter(move |b| seen.insert(b.0))
}

/// The `did` column of `rows` (the repos whose root swap succeeded).
fn dids_of(rows: &[sea_orm::QueryResult]) -> Result<HashSet<String>, StoreError> {
    rows.iter()
        .map(|row| row.try_get::<String>("", "did").map_err(db_err))
        .collect()
}

/// The `(did, seq)` of inserted event rows.
fn seqs_of(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<(String, i64)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get::<String>("", "did").map_err(db_err)?,
                row.try_get::<i64>("", "seq").map_err(db_err)?,
            ))
        })
        .collect()
}

#[async_trait]
impl RepoStore for SqlStore {
    async fn get_block(&self, did: &Did, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let row = repo_block::Entity::find_by_id((did.as_str().to_owned(), cid.to_string()))
            .one(self.reads())
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| Bytes::from(r.content)))
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> Result<Vec<(Cid, Bytes)>, StoreError> {
        let mut found = Vec::with_capacity(cids.len());
        for chunk in cids.chunks(INSERT_CHUNK) {
            let rows = repo_block::Entity::find()
                .filter(repo_block::Column::Did.eq(did.as_str()))
                .filter(repo_block::Column::Cid.is_in(chunk.iter().map(ToString::to_string)))
                .all(self.reads())
                .await
                .map_err(db_err)?;
            for row in rows {
                found.push((convert::cid(&row.cid)?, Bytes::from(row.content)));
            }
        }
        Ok(found)
    }

    async fn get_root(&self, did: &Did) -> Result<Option<RepoRoot>, StoreError> {
        let Some(row) = repo_root::Entity::find_by_id(did.as_str().to_owned())
            .one(self.reads())
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        Ok(Some(RepoRoot {
            cid: convert::cid(&row.cid)?,
            rev: convert::parse(row.rev, Tid::parse)?,
            updated_at: row.updated_at,
        }))
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<RecordEntry>, StoreError> {
        record::Entity::find_by_id((
            did.as_str().to_owned(),
            collection.as_str().to_owned(),
            rkey.as_str().to_owned(),
        ))
        .one(self.reads())
        .await
        .map_err(db_err)?
        .map(entry_from_row)
        .transpose()
    }

    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        page: &RecordPage,
    ) -> Result<Vec<RecordEntry>, StoreError> {
        let mut query = record::Entity::find()
            .filter(record::Column::Did.eq(did.as_str()))
            .filter(record::Column::Collection.eq(collection.as_str()));
        query = if page.reverse {
            if let Some(cursor) = &page.cursor {
                query = query.filter(record::Column::Rkey.gt(cursor.as_str()));
            }
            query.order_by_asc(record::Column::Rkey)
        } else {
            if let Some(cursor) = &page.cursor {
                query = query.filter(record::Column::Rkey.lt(cursor.as_str()));
            }
            query.order_by_desc(record::Column::Rkey)
        };
        query
            .limit(page.limit as u64)
            .all(self.reads())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(entry_from_row)
            .collect()
    }

    async fn list_collections(&self, did: &Did) -> Result<Vec<Nsid>, StoreError> {
        let names: Vec<String> = record::Entity::find()
            .select_only()
            .column(record::Column::Collection)
            .distinct()
            .filter(record::Column::Did.eq(did.as_str()))
            .order_by_asc(record::Column::Collection)
            .into_tuple()
            .all(self.reads())
            .await
            .map_err(db_err)?;
        names
            .into_iter()
            .map(|n| convert::parse(n, Nsid::parse))
            .collect()
    }

    async fn repo_stats(&self, did: &Did) -> Result<RepoStats, StoreError> {
        let did = did.as_str();
        let blocks = count_of(
            Query::select()
                .from(repo_block::Entity)
                .and_where(repo_block::Column::Did.eq(did))
                .to_owned(),
            Expr::col(Asterisk).count(),
        );
        let records = count_of(
            Query::select()
                .from(record::Entity)
                .and_where(record::Column::Did.eq(did))
                .to_owned(),
            Expr::col(Asterisk).count(),
        );
        let referenced = Query::select()
            .from(record_blob::Entity)
            .and_where(record_blob::Column::Did.eq(did))
            .to_owned();
        let distinct_blobs =
            || Expr::col((record_blob::Entity, record_blob::Column::BlobCid)).count_distinct();
        let expected_blobs = count_of(referenced.clone(), distinct_blobs());
        let imported_blobs = count_of(
            referenced
                .clone()
                .inner_join(
                    blob::Entity,
                    Expr::col((blob::Entity, blob::Column::Did))
                        .equals((record_blob::Entity, record_blob::Column::Did))
                        .and(
                            Expr::col((blob::Entity, blob::Column::Cid))
                                .equals((record_blob::Entity, record_blob::Column::BlobCid)),
                        ),
                )
                .to_owned(),
            distinct_blobs(),
        );
        // One statement, so the four counts come from one snapshot.
        let query = Query::select()
            .expr_as(blocks, Alias::new("blocks"))
            .expr_as(records, Alias::new("records"))
            .expr_as(expected_blobs, Alias::new("expected_blobs"))
            .expr_as(imported_blobs, Alias::new("imported_blobs"))
            .to_owned();
        let row = self
            .connection()
            .query_one(&query)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::Corrupt("repo stats query returned no row".into()))?;
        Ok(RepoStats {
            blocks: stat(&row, "blocks")?,
            records: stat(&row, "records")?,
            expected_blobs: stat(&row, "expected_blobs")?,
            imported_blobs: stat(&row, "imported_blobs")?,
        })
    }

    async fn apply_commit(&self, commit: CommitWrite) -> Result<i64, StoreError> {
        // Shares a transaction with the commits made at the same time
        // (see `group_commit.rs`).
        self.group_commit(commit).await
    }

    async fn sequence_event(&self, event: NewEvent) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let seq = self.insert_event(&txn, &event, Utc::now()).await?;
        txn.commit().await.map_err(db_err)?;
        self.advance_head(seq);
        Ok(seq)
    }

    async fn delete_repo(&self, did: &Did, event: NewEvent) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        // The root goes first: on Postgres its row lock waits for a commit
        // in flight (apply_commit swaps the root first) and makes later
        // ones fail their compare-and-swap, so nothing of the repo is left.
        repo_root::Entity::delete_by_id(did.as_str().to_owned())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        repo_block::Entity::delete_many()
            .filter(repo_block::Column::Did.eq(did.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        record::Entity::delete_many()
            .filter(record::Column::Did.eq(did.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        // The records' blob references and the account's blobs.
        blobs::delete_all(&txn, did).await?;
        repo_seq::Entity::update_many()
            .col_expr(repo_seq::Column::Invalidated, Expr::value(true))
            .filter(repo_seq::Column::Did.eq(did.as_str()))
            .filter(repo_seq::Column::Invalidated.eq(false))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        let seq = self.insert_event(&txn, &event, Utc::now()).await?;
        txn.commit().await.map_err(db_err)?;
        // The repo's events before this one are invalidated.
        if let Some(recent) = self.recent_events() {
            recent.forget_below(seq);
        }
        self.advance_head(seq);
        Ok(seq)
    }

    async fn put_blob(&self, blob: BlobRecord) -> Result<BlobRecord, StoreError> {
        self.put_blob_row(blob).await
    }

    async fn get_blob(&self, did: &Did, cid: &Cid) -> Result<Option<BlobRecord>, StoreError> {
        self.get_blob_row(did, cid).await
    }

    async fn mark_blob_permanent(&self, did: &Did, cid: &Cid) -> Result<(), StoreError> {
        self.mark_blob_row_permanent(did, cid).await
    }

    async fn is_blob_referenced(&self, did: &Did, cid: &Cid) -> Result<bool, StoreError> {
        self.blob_referenced(did, cid).await
    }

    async fn list_missing_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<MissingBlob>, StoreError> {
        self.missing_blobs(did, cursor, limit).await
    }

    async fn list_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        self.permanent_blobs(did, cursor, limit).await
    }

    async fn blocks_since(
        &self,
        did: &Did,
        since: &Tid,
        after: Option<(&Tid, &Cid)>,
        limit: usize,
    ) -> Result<Vec<RevBlock>, StoreError> {
        let mut query = repo_block::Entity::find()
            .filter(repo_block::Column::Did.eq(did.as_str()))
            .filter(repo_block::Column::RepoRev.gt(since.as_str()));
        if let Some((rev, cid)) = after {
            query = query.filter(
                Condition::any()
                    .add(repo_block::Column::RepoRev.gt(rev.as_str()))
                    .add(
                        Condition::all()
                            .add(repo_block::Column::RepoRev.eq(rev.as_str()))
                            .add(repo_block::Column::Cid.gt(cid.to_string())),
                    ),
            );
        }
        let rows = query
            .order_by_asc(repo_block::Column::RepoRev)
            .order_by_asc(repo_block::Column::Cid)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .all(self.reads())
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|row| {
                Ok(RevBlock {
                    rev: convert::parse(row.repo_rev, Tid::parse)?,
                    cid: convert::cid(&row.cid)?,
                    bytes: Bytes::from(row.content),
                })
            })
            .collect()
    }

    async fn list_record_blobs(
        &self,
        did: &Did,
        since: Option<&Tid>,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        self.record_blobs(did, since, cursor, limit).await
    }

    async fn stale_temp_blobs(
        &self,
        created_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        self.stale_temp_blob_rows(created_before, limit).await
    }

    async fn unpromoted_blobs(&self, limit: usize) -> Result<Vec<BlobRecord>, StoreError> {
        self.unpromoted_blob_rows(limit).await
    }

    async fn orphaned_blobs(
        &self,
        did: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        self.orphaned_blob_rows(did, limit).await
    }

    async fn delete_blob_if_unused(
        &self,
        did: &Did,
        cid: &Cid,
        temp_key: Option<&str>,
        created_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.delete_unused_blob_row(did, cid, temp_key, created_before)
            .await
    }
}
