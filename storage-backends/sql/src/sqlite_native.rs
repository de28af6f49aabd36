//! SQLite without a thread switch per statement, for what every write
//! request does: the session lookup, the group commit, and the firehose
//! reading the new event.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement
//! is sent to that thread and its result sent back, two thread switches or
//! more each. A batch written through it is about eight statements, one
//! after the other, on the path every write waits on; on two busy cores
//! each switch waits its turn behind the request tasks. Profiles of
//! createRecord under load showed the switching taking a third of the
//! server's CPU, and the sqlx threads a quarter of it for one lookup per
//! request.
//!
//! So on SQLite:
//! - a batch of commits is written by one blocking call on a connection of
//!   its own: cached prepared statements, a row at a time. A commit whose
//!   root moved on fails alone; if a commit fails half-written (a bad row,
//!   an injected fault), the batch is rolled back and written again with
//!   each commit in its own savepoint, so that the failed one is undone
//!   alone;
//! - the session lookup of authentication, and the firehose's read of the
//!   newest events, run inline on the calling thread, on a small pool of
//!   reading connections: a point query or a short range on an index,
//!   microseconds, cheaper than the thread switches around it. A lookup
//!   that fails (the database busy past a short timeout, anything else) is
//!   left to the sqlx path, which reports it.
//!
//! Both use rusqlite, over the same `libsqlite3-sys` as sqlx. Values are
//! written in the forms sqlx writes them (RFC 3339 times, booleans as 0/1),
//! so sea-orm reads them back unchanged. The schema and every other
//! statement stay with sea-orm.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aurora_core::store::{CommitStage, CommitWrite, RecordWrite, StoreError};
use aurora_core::syntax::AtUri;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::entity::{account, refresh_token, repo_seq};
use crate::group_commit::injected_fault;
use crate::{SqlOptions, SqliteSync};

/// How long an inline lookup waits for a busy database before it leaves
/// the lookup to the sqlx path (WAL readers wait only in rare cases, such
/// as a checkpoint resetting the log).
const LOOKUP_BUSY_TIMEOUT: Duration = Duration::from_millis(20);
/// How long the restart of the log waits for readers to leave it.
const RESTART_WAIT: Duration = Duration::from_millis(2);
/// Reading connections kept open between lookups (lookups run inline, so
/// at most one per runtime thread is in use at a time).
const IDLE_READERS: usize = 4;
/// The log size (in pages) at which the committing connection checkpoints
/// itself. The checkpointer thread copies the log into the database off
/// the commit path and has the log started over well before this size
/// (`sqlite_writer.rs`); this is the backstop for a checkpointer that
/// cannot keep up. (SQLite's own default is 1,000 pages, every one of
/// them copied on the commit path.) Twice the length at which the log is
/// started over: a log copied up to here starts over on its own at the
/// next commit, without the restart's wait for readers.
const WAL_PAGES_INLINE: i64 = 2 * crate::sqlite_writer::RESTART_AT_FRAMES;
/// The widest `seq` range read inline: the live tail of the log, a batch
/// or a few. Longer ranges (a backfill) are read through sqlx, off the
/// runtime's threads.
pub(crate) const INLINE_EVENTS: i64 = 256;

/// A handle on the write-ahead log file, for syncing it.
pub(crate) struct WalFile {
    file: std::fs::File,
    id: (u64, u64),
}

impl WalFile {
    fn new(file: std::fs::File) -> std::io::Result<Self> {
        Ok(Self {
            id: file_id::of_file(&file)?,
            file,
        })
    }
}

/// A file's identity, `(device, inode)`, read without its times.
///
/// On Linux a `stat` that returns a file's times makes the file's next
/// write stamp a new, fine-grained mtime (so that the reader can tell the
/// two apart), where it would otherwise keep the clock tick's. On ext4
/// without a journal a new mtime puts the inode's block into the file's
/// next fsync: one more round trip to the disk, one after the other, in
/// the sync every commit waits for. Checking the log's identity before
/// each sync with a full `stat` made that the case for ~80% of the syncs
/// under write load (`perf sched timehist`). `statx` asking for the inode
/// alone leaves the times unread.
#[cfg(target_os = "linux")]
mod file_id {
    use rustix::fs::{AtFlags, StatxFlags, makedev, statx};
    use std::path::Path;

    /// The identity of the file at `path`.
    pub(super) fn of_path(path: &Path) -> std::io::Result<(u64, u64)> {
        let st = statx(rustix::fs::CWD, path, AtFlags::empty(), StatxFlags::INO)?;
        Ok((makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino))
    }

    /// The identity of the open `file`.
    pub(super) fn of_file(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
        let st = statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::INO)?;
        Ok((makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino))
    }
}

/// A file's identity, `(device, inode)`.
#[cfg(not(target_os = "linux"))]
mod file_id {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    pub(super) fn of_path(path: &Path) -> std::io::Result<(u64, u64)> {
        std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
    }

    pub(super) fn of_file(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
        file.metadata().map(|m| (m.dev(), m.ino()))
    }
}

/// The write-ahead log after a checkpoint, in frames (pages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogState {
    /// Frames in the log.
    pub(crate) frames: i64,
    /// Frames it did not copy (written meanwhile, or still being read).
    pub(crate) uncopied: i64,
}

/// The write-ahead log of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// A commit of a batch and where it fails on purpose (tests).
pub(crate) struct BatchCommit<'a> {
    pub(crate) commit: &'a CommitWrite,
    pub(crate) fault_at: Option<CommitStage>,
}

/// The connections of one SQLite database file (see the module docs).
/// They are opened on first use; the writing one again after a failure
/// that may have left it inside a transaction.
pub(crate) struct NativeSqlite {
    path: PathBuf,
    synchronous: SqliteSync,
    busy_timeout: Duration,
    cache_kib: u32,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for NativeSqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSqlite")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl NativeSqlite {
    /// Connections to the database file at `path`, with the settings the
    /// sqlx connections have.
    pub(crate) fn new(path: &Path, options: &SqlOptions) -> Self {
        Self {
            path: path.to_owned(),
            synchronous: options.sqlite_sync,
            busy_timeout: options.acquire_timeout,
            cache_kib: options.sqlite_cache_kib,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
        }
    }

    fn open(
        &self,
        flags: OpenFlags,
        busy_timeout: Duration,
    ) -> Result<Connection, rusqlite::Error> {
        let conn =
            Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(busy_timeout)?;
        // Plans stay as prepared: otherwise a statement with a bound LIMIT
        // is prepared again each time the value changes (SQLite plans with
        // it), which showed as 2% of the server's CPU under write load.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;",
            self.synchronous.pragma(),
            self.cache_kib
        ))?;
        Ok(conn)
    }

    /// The committing connection. It leaves checkpoints to the
    /// checkpointer ([`Self::checkpoint`], on a thread of its own) until
    /// the log reaches [`WAL_PAGES_INLINE`] pages.
    ///
    /// With `synchronous = FULL` its commits do not fsync the log
    /// themselves: a sync thread syncs it after each batch, off the
    /// committing connection ([`Self::sync_wal`]), and the batch is
    /// acknowledged only then.
    fn open_writer(&self) -> rusqlite::Result<Connection> {
        let conn = self.open(OpenFlags::SQLITE_OPEN_READ_WRITE, self.busy_timeout)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_INLINE)?;
        if self.syncs_commits() {
            conn.pragma_update(None, "synchronous", SqliteSync::Normal.pragma())?;
        }
        Ok(conn)
    }

    /// Whether every commit must be durable before it is acknowledged
    /// (`synchronous = FULL`): then [`Self::sync_wal`] must follow each
    /// batch.
    pub(crate) fn syncs_commits(&self) -> bool {
        self.synchronous == SqliteSync::Full
    }

    /// Makes everything committed so far durable: fsyncs the write-ahead
    /// log (on a handle of its own, `wal`, opened on first use and again
    /// if the log file was replaced). Blocks.
    ///
    /// Enough on its own: a commit is durable once its frames are in the
    /// log on disk. If the log started over since, it did so after a
    /// checkpoint had copied those frames into the database file and
    /// synced it.
    pub(crate) fn sync_wal(&self, wal: &mut Option<WalFile>) -> std::io::Result<()> {
        let path = wal_path(&self.path);
        let current = match file_id::of_path(&path) {
            Ok(id) => id,
            // No log: it was checkpointed into the database and removed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let file = match wal {
            Some(open) if open.id == current => open,
            _ => {
                let file = std::fs::File::open(&path)?;
                // The log's name in its directory, once per log file.
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                wal.insert(WalFile::new(file)?)
            }
        };
        file.file.sync_data()
    }

    /// Copies the write-ahead log's committed pages into the database file
    /// (a passive checkpoint: it waits for no one and nobody waits for
    /// it), on the checkpointer's own connection, then flushes the
    /// database file (on a handle of its own, `db`), so that the
    /// checkpoint that lets the log start over has little left to flush.
    /// Blocks: call it from a thread of its own. Returns how many frames
    /// the log holds and how many of them are still to be copied.
    pub(crate) fn checkpoint(
        &self,
        conn: &mut Option<Connection>,
        db: &mut Option<std::fs::File>,
    ) -> Result<LogState, StoreError> {
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(
                self.open(OpenFlags::SQLITE_OPEN_READ_WRITE, self.busy_timeout)
                    .map_err(sqlite_err)?,
            ),
        };
        let state = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                let (frames, copied): (i64, i64) = (row.get(1)?, row.get(2)?);
                Ok(LogState {
                    frames,
                    uncopied: frames.saturating_sub(copied),
                })
            })
            .map_err(sqlite_err)?;
        let file = match db {
            Some(file) => file,
            None => db.insert(std::fs::File::open(&self.path).map_err(|e| io_err(&e))?),
        };
        file.sync_data().map_err(|e| io_err(&e))?;
        Ok(state)
    }

    /// Lets the log start over: copies what is left of it into the
    /// database file and waits for readers to leave it (a restart
    /// checkpoint), on the committing connection, between batches. The
    /// next commit then writes the log from its start. Blocks commits
    /// while it runs, so it is called once the checkpointer has copied
    /// and flushed nearly all of the log. Returns whether the log will
    /// start over (not when a reader stayed in it, or another connection
    /// was checkpointing or writing).
    pub(crate) fn restart_log(&self) -> Result<bool, StoreError> {
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conn) = slot.as_mut() else {
            return Ok(false);
        };
        // A reader that stays (a long export) must not hold the commits up:
        // the restart then gives up, and is asked for again later.
        conn.busy_timeout(RESTART_WAIT).map_err(sqlite_err)?;
        let restarted = conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
                Ok(row.get::<_, i64>(0)? == 0)
            })
            .map_err(sqlite_err);
        conn.busy_timeout(self.busy_timeout).map_err(sqlite_err)?;
        restarted
    }

    /// Writes `batch` in one transaction, each commit in a savepoint of its
    /// own. Blocks: call it from a blocking thread. Returns each commit's
    /// outcome (the `seq` of its event, or its own error); the outer error
    /// means nothing was written (the transaction could not begin or
    /// commit, or a savepoint could not be undone).
    pub(crate) fn write_batch(
        &self,
        batch: &[BatchCommit<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match slot.as_mut() {
            Some(conn) => conn,
            None => slot.insert(self.open_writer().map_err(sqlite_err)?),
        };
        let outcome = write_in_transaction(conn, batch, &now);
        // A connection left inside a transaction (a failed COMMIT or
        // ROLLBACK) is closed: closing rolls it back, and the next batch
        // opens a fresh one.
        if !conn.is_autocommit() {
            *slot = None;
        }
        outcome
    }

    /// Runs `lookup` on an idle reading connection (opened when there is
    /// none), inline.
    fn read<T>(
        &self,
        lookup: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let taken = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open(OpenFlags::SQLITE_OPEN_READ_ONLY, LOOKUP_BUSY_TIMEOUT)?,
        };
        let found = lookup(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        found
    }

    /// The newest refresh token of session `session_id` and its account,
    /// as `AccountStore::get_session_account` answers; inline (see the
    /// module docs). An error means: ask the sqlx path.
    pub(crate) fn session_account(
        &self,
        session_id: &str,
    ) -> rusqlite::Result<Option<(refresh_token::Model, account::Model)>> {
        self.read(|conn| {
            let mut lookup = conn.prepare_cached(
                "SELECT t.id, t.session_id, t.did, t.app_password_name, t.expires_at, \
                 a.did, a.handle, a.email, a.password_hash, a.status, a.created_at, \
                 a.email_confirmed_at, a.takedown_ref \
                 FROM refresh_token t JOIN account a ON a.did = t.did \
                 WHERE t.session_id = ?1 ORDER BY t.expires_at DESC, t.id DESC LIMIT 1",
            )?;
            lookup
                .query_row([session_id], |row| {
                    let token = refresh_token::Model {
                        id: row.get(0)?,
                        session_id: row.get(1)?,
                        did: row.get(2)?,
                        app_password_name: row.get(3)?,
                        expires_at: time(row, 4)?,
                    };
                    let account = account::Model {
                        did: row.get(5)?,
                        handle: row.get(6)?,
                        email: row.get(7)?,
                        password_hash: row.get(8)?,
                        status: row.get(9)?,
                        created_at: time(row, 10)?,
                        email_confirmed_at: optional_time(row, 11)?,
                        takedown_ref: row.get(12)?,
                    };
                    Ok((token, account))
                })
                .optional()
        })
    }

    /// The events after `after` up to `up_to` that are not invalidated, in
    /// order, at most `limit`, as `Sequencer::events_in_range` answers;
    /// inline, so only for the few of the live tail (see
    /// [`INLINE_EVENTS`]). An error means: ask the sqlx path.
    pub(crate) fn events_in_range(
        &self,
        after: i64,
        up_to: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<repo_seq::Model>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut range = conn.prepare_cached(
                "SELECT seq, did, event_type, event, invalidated, sequenced_at FROM repo_seq \
                 WHERE seq > ?1 AND seq <= ?2 AND invalidated = 0 ORDER BY seq LIMIT ?3",
            )?;
            range
                .query_map(params![after, up_to, limit], |row| {
                    Ok(repo_seq::Model {
                        seq: row.get(0)?,
                        did: row.get(1)?,
                        event_type: row.get(2)?,
                        event: row.get(3)?,
                        invalidated: row.get(4)?,
                        sequenced_at: time(row, 5)?,
                    })
                })?
                .collect()
        })
    }
}

/// A time column as sqlx writes it (RFC 3339), or as SQLite's own
/// functions do (`YYYY-MM-DD HH:MM:SS`, UTC).
fn time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    optional_time(row, index)?.ok_or(rusqlite::Error::InvalidColumnType(
        index,
        "time".to_owned(),
        rusqlite::types::Type::Null,
    ))
}

fn optional_time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let Some(text) = row.get::<_, Option<String>>(index)? else {
        return Ok(None);
    };
    parse_time(&text).map(Some).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn write_in_transaction(
    conn: &Connection,
    batch: &[BatchCommit<'_>],
    now: &DateTime<Utc>,
) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    // The same text sqlx writes for a `DateTime<Utc>`.
    let now = now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
    if let Some(outcomes) = in_transaction(conn, |conn| Ok(write_together(conn, batch, &now)))? {
        return Ok(outcomes);
    }
    // A commit failed half-written and all was rolled back: one savepoint
    // per commit undoes the failed one(s) alone.
    in_transaction(conn, |conn| write_one_by_one(conn, batch, &now).map(Some))
        .map(Option::unwrap_or_default)
}

/// Runs `body` in a write transaction: committed when it returns
/// `Some`, rolled back when it returns `None` or fails.
fn in_transaction<T>(
    conn: &Connection,
    body: impl FnOnce(&Connection) -> Result<Option<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    run(conn, "BEGIN IMMEDIATE").map_err(sqlite_err)?;
    let written = body(conn).and_then(|written| {
        if written.is_some() {
            run(conn, "COMMIT").map_err(sqlite_err)?;
        }
        Ok(written)
    });
    if !matches!(written, Ok(Some(_))) && !conn.is_autocommit() {
        // If this fails, the caller closes the connection.
        let _ = run(conn, "ROLLBACK");
    }
    written
}

/// The batch's commits straight into the transaction, without savepoints:
/// a savepoint makes SQLite copy every page a commit changes before
/// changing it, which was a tenth of the writer thread's time. A commit
/// whose root moved on fails alone (its first statement changed nothing);
/// any other failure leaves a commit half-written, and `None` asks for
/// the batch to be rolled back and written one savepoint per commit.
fn write_together(
    conn: &Connection,
    batch: &[BatchCommit<'_>],
    now: &str,
) -> Option<Vec<Result<i64, StoreError>>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        match write_commit(conn, item, now) {
            Ok(seq) => outcomes.push(Ok(seq)),
            Err(conflict @ StoreError::RootConflict { .. }) => outcomes.push(Err(conflict)),
            Err(_) => return None,
        }
    }
    Some(outcomes)
}

/// The batch's commits, each in a savepoint of its own, so that a commit
/// that fails is rolled back alone.
fn write_one_by_one(
    conn: &Connection,
    batch: &[BatchCommit<'_>],
    now: &str,
) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        run(conn, "SAVEPOINT one_commit").map_err(sqlite_err)?;
        let outcome = write_commit(conn, item, now);
        if outcome.is_err() {
            run(conn, "ROLLBACK TO one_commit").map_err(sqlite_err)?;
        }
        run(conn, "RELEASE one_commit").map_err(sqlite_err)?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Runs a statement without parameters, prepared once per connection
/// (transaction control included: parsing it each time showed in profiles).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Parses a stored time: RFC 3339 (sqlx's form), or `YYYY-MM-DD
/// HH:MM:SS[.fff]` in UTC (SQLite's `datetime()`).
fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%F %T%.f").map(|t| t.and_utc()))
}

/// The statements of one commit, in the order of the SQL write path: the
/// root's compare-and-swap, blocks, the record index and its blob
/// references, the event. A root conflict is returned before anything is
/// written.
fn write_commit(conn: &Connection, item: &BatchCommit<'_>, now: &str) -> Result<i64, StoreError> {
    let c = item.commit;
    let fault = |stage: CommitStage| {
        if item.fault_at == Some(stage) {
            Err(injected_fault(stage))
        } else {
            Ok(())
        }
    };
    swap_root(conn, c, now)?;
    fault(CommitStage::Root)?;
    put_blocks(conn, c).map_err(sqlite_err)?;
    fault(CommitStage::Blocks)?;
    write_records(conn, c, now).map_err(sqlite_err)?;
    fault(CommitStage::Records)?;
    let seq = insert_event(conn, c, now).map_err(sqlite_err)?;
    fault(CommitStage::Event)?;
    Ok(seq)
}

/// Moves the root from the expected one (or creates it): a root that
/// moved on meanwhile is a conflict.
fn swap_root(conn: &Connection, c: &CommitWrite, now: &str) -> Result<(), StoreError> {
    let (did, rev, root) = (c.did.as_str(), c.rev.as_str(), c.root.to_string());
    let swapped = match c.expected_root {
        Some(expected) => conn
            .prepare_cached(
                "UPDATE repo_root SET cid = ?1, rev = ?2, updated_at = ?3 \
                 WHERE did = ?4 AND cid = ?5",
            )
            .and_then(|mut s| s.execute(params![root, rev, now, did, expected.to_string()])),
        None => conn
            .prepare_cached(
                "INSERT INTO repo_root (did, cid, rev, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (did) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![did, root, rev, now])),
    }
    .map_err(sqlite_err)?;
    if swapped == 1 {
        Ok(())
    } else {
        Err(StoreError::RootConflict {
            did: c.did.clone(),
            expected: c.expected_root,
        })
    }
}

/// Stores the commit's blocks. A block stored before keeps its bytes and
/// takes this commit's rev, so that `blocks_since` has it in the diff.
fn put_blocks(conn: &Connection, c: &CommitWrite) -> rusqlite::Result<()> {
    let mut put_block = conn.prepare_cached(
        "INSERT INTO repo_block (did, cid, repo_rev, size, content) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (did, cid) DO UPDATE SET repo_rev = excluded.repo_rev",
    )?;
    for (cid, bytes) in &c.blocks {
        let size = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        put_block.execute(params![
            c.did.as_str(),
            cid.to_string(),
            c.rev.as_str(),
            size,
            &bytes[..]
        ])?;
    }
    Ok(())
}

/// Applies the commit's record writes, in order, to the record index and
/// the records' blob references. A record's references are replaced by
/// its new ones (none when it is deleted), which keeps per-blob reference
/// counts right.
fn write_records(conn: &Connection, c: &CommitWrite, now: &str) -> rusqlite::Result<()> {
    let did = c.did.as_str();
    let mut put_record = conn.prepare_cached(
        "INSERT INTO record (did, collection, rkey, cid, repo_rev, indexed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (did, collection, rkey) DO UPDATE SET \
         cid = excluded.cid, repo_rev = excluded.repo_rev, indexed_at = excluded.indexed_at",
    )?;
    let mut delete_record =
        conn.prepare_cached("DELETE FROM record WHERE did = ?1 AND collection = ?2 AND rkey = ?3")?;
    let mut drop_refs =
        conn.prepare_cached("DELETE FROM record_blob WHERE did = ?1 AND record_uri = ?2")?;
    let mut add_ref = conn.prepare_cached(
        "INSERT INTO record_blob (did, blob_cid, record_uri) VALUES (?1, ?2, ?3) \
         ON CONFLICT (did, blob_cid, record_uri) DO NOTHING",
    )?;
    for write in &c.records {
        let (collection, rkey, blobs) = match write {
            RecordWrite::Put {
                collection,
                rkey,
                cid,
                blobs,
            } => {
                put_record.execute(params![
                    did,
                    collection.as_str(),
                    rkey.as_str(),
                    cid.to_string(),
                    c.rev.as_str(),
                    now
                ])?;
                (collection, rkey, blobs.as_slice())
            }
            RecordWrite::Delete { collection, rkey } => {
                delete_record.execute(params![did, collection.as_str(), rkey.as_str()])?;
                (collection, rkey, &[][..])
            }
        };
        let uri = AtUri::for_record(&c.did, collection, rkey);
        drop_refs.execute(params![did, uri.as_str()])?;
        for blob in blobs {
            add_ref.execute(params![did, blob.to_string(), uri.as_str()])?;
        }
    }
    Ok(())
}

/// Appends the commit's event to the log; returns its `seq`. `seq` is the
/// table's rowid, so SQLite's last inserted rowid is it (`RETURNING` would
/// build and drop a temporary table for every event).
fn insert_event(conn: &Connection, c: &CommitWrite, now: &str) -> rusqlite::Result<i64> {
    let event = c.event();
    conn.prepare_cached(
        "INSERT INTO repo_seq (did, event_type, event, invalidated, sequenced_at) \
         VALUES (?1, ?2, ?3, 0, ?4)",
    )?
    .execute(params![
        event.did.as_str(),
        event.event_type.as_str(),
        &event.payload[..],
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A database file that cannot be flushed is unavailable.
fn io_err(e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a SQLite error as `db_err` maps sqlx's: a full disk is `Full`, a
/// database that cannot be opened or stays locked is `Unavailable`.
fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::CannotOpen | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The log is synced through a handle that follows the file: a log
    /// replaced by a new file is opened again, a missing one is no error.
    #[test]
    fn the_log_sync_follows_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("aurora.sqlite");
        let sqlite = NativeSqlite::new(&db, &SqlOptions::default());
        assert!(sqlite.syncs_commits());
        let mut wal = None;
        sqlite.sync_wal(&mut wal).unwrap();
        assert!(wal.is_none(), "no log, nothing opened");
        std::fs::write(wal_path(&db), b"first").unwrap();
        sqlite.sync_wal(&mut wal).unwrap();
        let first = wal.as_ref().unwrap().id;
        sqlite.sync_wal(&mut wal).unwrap();
        assert_eq!(wal.as_ref().unwrap().id, first, "kept while the file stays");
        // A new file under the name (hold the old one so its inode stays taken).
        let _old = std::fs::File::open(wal_path(&db)).unwrap();
        std::fs::remove_file(wal_path(&db)).unwrap();
        std::fs::write(wal_path(&db), b"second").unwrap();
        sqlite.sync_wal(&mut wal).unwrap();
        assert_ne!(wal.as_ref().unwrap().id, first, "opened again");
        std::fs::remove_file(wal_path(&db)).unwrap();
        sqlite.sync_wal(&mut wal).unwrap();
    }

    /// The log's length in frames, read as a passive checkpoint sees it.
    fn log_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
            .unwrap()
    }

    /// The checkpointer reports how long the log is and what it left; the
    /// committing connection then has the log start over, unless a reader
    /// stays in it, and then gives up at once and keeps committing.
    #[test]
    fn the_log_starts_over_on_the_committing_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("aurora.sqlite");
        Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);")
            .unwrap();
        let sqlite = NativeSqlite::new(&db, &SqlOptions::default());
        let writer = sqlite.open_writer().unwrap();
        let write = |conn: &Connection, rows: usize| {
            for _ in 0..rows {
                conn.execute("INSERT INTO t VALUES (zeroblob(3000))", [])
                    .unwrap();
            }
        };
        write(&writer, 50);
        *sqlite.writer.lock().unwrap() = Some(writer);

        let (mut conn, mut file) = (None, None);
        let log = sqlite.checkpoint(&mut conn, &mut file).unwrap();
        assert!(log.frames >= 50, "{log:?}");
        assert_eq!(log.uncopied, 0, "nothing was reading or writing");

        // A reader inside a transaction keeps the log (one that began
        // with all of the log copied would read the database file only).
        write(sqlite.writer.lock().unwrap().as_ref().unwrap(), 5);
        let reader = sqlite
            .open(OpenFlags::SQLITE_OPEN_READ_ONLY, LOOKUP_BUSY_TIMEOUT)
            .unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        let started = Instant::now();
        assert!(!sqlite.restart_log().unwrap(), "the reader is in the log");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "gave up at once"
        );
        reader.execute_batch("COMMIT").unwrap();

        assert!(sqlite.restart_log().unwrap());
        let slot = sqlite.writer.lock().unwrap();
        let writer = slot.as_ref().unwrap();
        write(writer, 1);
        assert!(
            log_frames(writer) < 10,
            "the next commit wrote the log from its start"
        );
        let timeout: i64 = writer
            .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            u128::try_from(timeout).unwrap(),
            sqlite.busy_timeout.as_millis(),
            "restored"
        );
    }

    #[test]
    fn times_read_back_as_sqlx_writes_them() {
        let now = Utc::now();
        let written = now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
        assert_eq!(parse_time(&written).unwrap(), now);
        let plain = parse_time("2026-12-07 06:09:02").unwrap();
        assert_eq!(plain.to_rfc3339(), "2026-12-07T06:09:02+00:00");
        assert!(parse_time("yesterday").is_err());
    }
}
