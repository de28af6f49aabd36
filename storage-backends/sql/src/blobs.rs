//! Blob metadata on SQL: the `blob` rows (one per account and CID) and the
//! blob references of records in `record_blob`.

use std::collections::BTreeMap;

use aurora_core::cid::Cid;
use aurora_core::store::{BlobRecord, CommitWrite, MissingBlob, RecordWrite, StoreError};
use aurora_core::syntax::{AtUri, Did, Tid};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::entity::{blob, record, record_blob, repo_root};
use crate::{Engine, SqlStore, convert, db_err};

/// Rows per multi-row INSERT or IN list, well under the bind-parameter limits.
const CHUNK: usize = 500;

fn record_from_row(row: blob::Model) -> Result<BlobRecord, StoreError> {
    Ok(BlobRecord {
        did: convert::parse(row.did, Did::parse)?,
        cid: convert::cid(&row.cid)?,
        mime_type: row.mime_type,
        size: u64::try_from(row.size)
            .map_err(|_| StoreError::Corrupt(format!("negative blob size {}", row.size)))?,
        temp_key: row.temp_key,
        created_at: row.created_at,
        takedown_ref: row.takedown_ref,
    })
}

fn records_from_rows(rows: Vec<blob::Model>) -> Result<Vec<BlobRecord>, StoreError> {
    rows.into_iter().map(record_from_row).collect()
}

/// The record references of the `blob` row under consideration (a
/// correlated subquery, for `EXISTS`).
fn references_of_row() -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(record_blob::Entity)
        .and_where(
            Expr::col((record_blob::Entity, record_blob::Column::Did))
                .equals((blob::Entity, blob::Column::Did)),
        )
        .and_where(
            Expr::col((record_blob::Entity, record_blob::Column::BlobCid))
                .equals((blob::Entity, blob::Column::Cid)),
        )
        .to_owned()
}

/// The records of `did` referencing blob `cid`.
fn references_of(did: &Did, cid: &Cid) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(record_blob::Entity)
        .and_where(record_blob::Column::Did.eq(did.as_str()))
        .and_where(record_blob::Column::BlobCid.eq(cid.to_string()))
        .to_owned()
}

fn limit(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Replaces the blob references of the records `commits` write (inside
/// their transaction): a put's blobs replace the record's earlier ones, a
/// delete drops them. Each statement covers all the commits.
pub(crate) async fn write_references(
    txn: &DatabaseTransaction,
    commits: &[&CommitWrite],
) -> Result<(), StoreError> {
    // By repo and record URI; the last write of a record wins.
    let mut by_record: BTreeMap<(&str, String), &[Cid]> = BTreeMap::new();
    for c in commits {
        for write in &c.records {
            let (collection, rkey, blobs) = match write {
                RecordWrite::Put {
                    collection,
                    rkey,
                    blobs,
                    ..
                } => (collection, rkey, blobs.as_slice()),
                RecordWrite::Delete { collection, rkey } => (collection, rkey, &[][..]),
            };
            let uri = AtUri::for_record(&c.did, collection, rkey);
            by_record.insert((c.did.as_str(), uri.as_str().to_owned()), blobs);
        }
    }
    let records: Vec<&(&str, String)> = by_record.keys().collect();
    for chunk in records.chunks(CHUNK) {
        // One `did = ? AND record_uri IN (...)` term per repo (the keys are
        // sorted by repo), matching the (did, record_uri) index.
        let mut of_repos = Condition::any();
        for same_repo in chunk.chunk_by(|a, b| a.0 == b.0) {
            of_repos = of_repos.add(
                Condition::all()
                    .add(record_blob::Column::Did.eq(same_repo[0].0))
                    .add(
                        record_blob::Column::RecordUri
                            .is_in(same_repo.iter().map(|(_, uri)| uri.as_str())),
                    ),
            );
        }
        record_blob::Entity::delete_many()
            .filter(of_repos)
            .exec(txn)
            .await
            .map_err(db_err)?;
    }
    let rows: Vec<record_blob::ActiveModel> = by_record
        .iter()
        .flat_map(|((did, uri), blobs)| {
            blobs.iter().map(|cid| record_blob::ActiveModel {
                did: Set((*did).to_owned()),
                blob_cid: Set(cid.to_string()),
                record_uri: Set(uri.clone()),
            })
        })
        .collect();
    for chunk in rows.chunks(CHUNK) {
        // A blob listed twice for one record is one reference.
        record_blob::Entity::insert_many(chunk.iter().cloned())
            .on_conflict_do_nothing_on([
                record_blob::Column::Did,
                record_blob::Column::BlobCid,
                record_blob::Column::RecordUri,
            ])
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Deletes every blob row and blob reference of `did` (inside
/// `delete_repo`'s transaction).
pub(crate) async fn delete_all(txn: &DatabaseTransaction, did: &Did) -> Result<(), StoreError> {
    record_blob::Entity::delete_many()
        .filter(record_blob::Column::Did.eq(did.as_str()))
        .exec(txn)
        .await
        .map_err(db_err)?;
    blob::Entity::delete_many()
        .filter(blob::Column::Did.eq(did.as_str()))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

impl SqlStore {
    pub(crate) async fn put_blob_row(&self, b: BlobRecord) -> Result<BlobRecord, StoreError> {
        let size = i64::try_from(b.size).map_err(|_| {
            StoreError::Backend(format!("blob size {} out of range", b.size).into())
        })?;
        let key = (b.did.as_str().to_owned(), b.cid.to_string());
        let row = blob::ActiveModel {
            did: Set(key.0.clone()),
            cid: Set(key.1.clone()),
            mime_type: Set(b.mime_type),
            size: Set(size),
            temp_key: Set(b.temp_key),
            created_at: Set(b.created_at),
            takedown_ref: Set(b.takedown_ref),
        };
        let txn = self.begin_write().await?;
        // One statement decides between concurrent uploads of the same
        // blob: the first inserts, the others (on Postgres after waiting for
        // the first to commit) only restart a temporary blob's grace period.
        blob::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([blob::Column::Did, blob::Column::Cid])
                    .update_column(blob::Column::CreatedAt)
                    .action_and_where(
                        Expr::col((blob::Entity, blob::Column::TempKey)).is_not_null(),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        // The row is ours (inserted or locked by the upsert) until commit.
        let stored = blob::Entity::find_by_id(key)
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::Corrupt("blob row missing after its upsert".into()))?;
        txn.commit().await.map_err(db_err)?;
        record_from_row(stored)
    }

    pub(crate) async fn get_blob_row(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> Result<Option<BlobRecord>, StoreError> {
        blob::Entity::find_by_id((did.as_str().to_owned(), cid.to_string()))
            .one(self.reads())
            .await
            .map_err(db_err)?
            .map(record_from_row)
            .transpose()
    }

    pub(crate) async fn mark_blob_row_permanent(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> Result<(), StoreError> {
        let res = blob::Entity::update_many()
            .col_expr(blob::Column::TempKey, Expr::value(Option::<String>::None))
            .filter(blob::Column::Did.eq(did.as_str()))
            .filter(blob::Column::Cid.eq(cid.to_string()))
            .exec(self.reads())
            .await
            .map_err(db_err)?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("blob"));
        }
        Ok(())
    }

    pub(crate) async fn blob_referenced(&self, did: &Did, cid: &Cid) -> Result<bool, StoreError> {
        let found = record_blob::Entity::find()
            .select_only()
            .column(record_blob::Column::RecordUri)
            .filter(record_blob::Column::Did.eq(did.as_str()))
            .filter(record_blob::Column::BlobCid.eq(cid.to_string()))
            .into_tuple::<String>()
            .one(self.reads())
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    pub(crate) async fn missing_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        n: usize,
    ) -> Result<Vec<MissingBlob>, StoreError> {
        let stored = Query::select()
            .expr(Expr::val(1))
            .from(blob::Entity)
            .and_where(
                Expr::col((blob::Entity, blob::Column::Did))
                    .equals((record_blob::Entity, record_blob::Column::Did)),
            )
            .and_where(
                Expr::col((blob::Entity, blob::Column::Cid))
                    .equals((record_blob::Entity, record_blob::Column::BlobCid)),
            )
            .to_owned();
        let mut query = record_blob::Entity::find()
            .select_only()
            .column(record_blob::Column::BlobCid)
            .expr_as(
                Expr::col((record_blob::Entity, record_blob::Column::RecordUri)).min(),
                "record_uri",
            )
            .filter(record_blob::Column::Did.eq(did.as_str()))
            .filter(Expr::exists(stored).not());
        if let Some(cursor) = cursor {
            query = query.filter(record_blob::Column::BlobCid.gt(cursor.to_string()));
        }
        let rows: Vec<(String, String)> = query
            .group_by(record_blob::Column::BlobCid)
            .order_by_asc(record_blob::Column::BlobCid)
            .limit(limit(n))
            .into_tuple()
            .all(self.reads())
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(cid, record_uri)| {
                Ok(MissingBlob {
                    cid: convert::cid(&cid)?,
                    record_uri,
                })
            })
            .collect()
    }

    /// The blobs `did`'s records reference (with `since`, records last
    /// written by a later rev), each once, by CID.
    pub(crate) async fn record_blobs(
        &self,
        did: &Did,
        since: Option<&Tid>,
        cursor: Option<&Cid>,
        n: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        let mut query = record_blob::Entity::find()
            .select_only()
            .column(record_blob::Column::BlobCid)
            .filter(record_blob::Column::Did.eq(did.as_str()));
        if let Some(since) = since {
            // The URIs of the records written after `since`, as
            // `record_blob` keys them: `at://<did>/<collection>/<rkey>`.
            let template = match self.engine() {
                Engine::Postgres => "$1 || $2 || '/' || $3",
                Engine::Sqlite => "? || ? || '/' || ?",
            };
            let uri = Expr::cust_with_exprs(
                template,
                [
                    Expr::val(format!("at://{did}/")),
                    Expr::col((record::Entity, record::Column::Collection)),
                    Expr::col((record::Entity, record::Column::Rkey)),
                ],
            );
            let newer = Query::select()
                .expr(uri)
                .from(record::Entity)
                .and_where(record::Column::Did.eq(did.as_str()))
                .and_where(record::Column::RepoRev.gt(since.as_str()))
                .to_owned();
            query = query.filter(record_blob::Column::RecordUri.in_subquery(newer));
        }
        if let Some(cursor) = cursor {
            query = query.filter(record_blob::Column::BlobCid.gt(cursor.to_string()));
        }
        let rows: Vec<String> = query
            .group_by(record_blob::Column::BlobCid)
            .order_by_asc(record_blob::Column::BlobCid)
            .limit(limit(n))
            .into_tuple()
            .all(self.reads())
            .await
            .map_err(db_err)?;
        rows.iter().map(|c| convert::cid(c)).collect()
    }

    pub(crate) async fn permanent_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        n: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        let mut query = blob::Entity::find()
            .select_only()
            .column(blob::Column::Cid)
            .filter(blob::Column::Did.eq(did.as_str()))
            .filter(blob::Column::TempKey.is_null());
        if let Some(cursor) = cursor {
            query = query.filter(blob::Column::Cid.gt(cursor.to_string()));
        }
        let rows: Vec<String> = query
            .order_by_asc(blob::Column::Cid)
            .limit(limit(n))
            .into_tuple()
            .all(self.reads())
            .await
            .map_err(db_err)?;
        rows.iter().map(|c| convert::cid(c)).collect()
    }

    /// Temporary blobs matching `condition`, oldest first, at most `n`.
    async fn temp_blob_rows(
        &self,
        condition: Expr,
        n: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let rows = blob::Entity::find()
            .filter(blob::Column::TempKey.is_not_null())
            .filter(condition)
            .order_by_asc(blob::Column::CreatedAt)
            .order_by_asc(blob::Column::Did)
            .order_by_asc(blob::Column::Cid)
            .limit(limit(n))
            .all(self.reads())
            .await
            .map_err(db_err)?;
        records_from_rows(rows)
    }

    pub(crate) async fn stale_temp_blob_rows(
        &self,
        created_before: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let unused = Expr::exists(references_of_row()).not();
        self.temp_blob_rows(blob::Column::CreatedAt.lt(created_before).and(unused), n)
            .await
    }

    pub(crate) async fn unpromoted_blob_rows(
        &self,
        n: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        self.temp_blob_rows(Expr::exists(references_of_row()), n)
            .await
    }

    pub(crate) async fn orphaned_blob_rows(
        &self,
        did: Option<&Did>,
        n: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let mut query = blob::Entity::find()
            .filter(blob::Column::TempKey.is_null())
            .filter(Expr::exists(references_of_row()).not());
        if let Some(did) = did {
            query = query.filter(blob::Column::Did.eq(did.as_str()));
        }
        let rows = query
            .order_by_asc(blob::Column::Did)
            .order_by_asc(blob::Column::Cid)
            .limit(limit(n))
            .all(self.reads())
            .await
            .map_err(db_err)?;
        records_from_rows(rows)
    }

    pub(crate) async fn delete_unused_blob_row(
        &self,
        did: &Did,
        cid: &Cid,
        temp_key: Option<&str>,
        created_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        if self.engine() == Engine::Postgres {
            // A commit in flight on the repo holds its root row (it swaps
            // the root first). Waiting for it here means the DELETE below,
            // which reads with a fresh snapshot, sees the references that
            // commit adds; a commit starting later waits for this one.
            // (SQLite runs one writer at a time.)
            repo_root::Entity::find_by_id(did.as_str().to_owned())
                .select_only()
                .column(repo_root::Column::Did)
                .lock(LockType::Share)
                .into_tuple::<String>()
                .one(&txn)
                .await
                .map_err(db_err)?;
        }
        // One statement: the row must be as the sweep saw it and no record
        // may reference the blob at the moment it is deleted.
        let mut query = blob::Entity::delete_many()
            .filter(blob::Column::Did.eq(did.as_str()))
            .filter(blob::Column::Cid.eq(cid.to_string()))
            .filter(Expr::exists(references_of(did, cid)).not());
        query = match temp_key {
            Some(key) => query
                .filter(blob::Column::TempKey.eq(key))
                .filter(blob::Column::CreatedAt.lte(created_before)),
            None => query.filter(blob::Column::TempKey.is_null()),
        };
        let res = query.exec(&txn).await.map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(res.rows_affected > 0)
    }
}
