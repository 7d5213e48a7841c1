//! [`SqliteStore`]: the connection pool, the schema bootstrap (embedded migration plus the
//! `schema_migrations` bookkeeping of `docs/reference/sessions.md#9-database-schema`) and every
//! query behind [`agent_core::SessionStore`].
//!
//! Writes that touch several rows run in one `BEGIN IMMEDIATE` transaction, so they take the
//! database write lock up front (waiting up to the busy timeout) instead of failing on a lock
//! upgrade. Lock acquisition is a single conditional `UPDATE`, safe under concurrency.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_core::{
    ArtifactRecord, ArtifactRef, Event, Finish, ForkOutcome, ForkSession, Lease, LockOutcome,
    NewArtifact, NewSession, SessionListItem, SessionRecord, SessionStatus, StoreError,
    StoredEvent, Timestamp,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::artifacts;
use crate::config::{StoreConfig, StoreOpenError};
use crate::error::{Error, Result};
use crate::reader::FastReader;
use crate::rows::{EventRow, ListRow, SessionRow, session_columns};
use crate::usage::add_usage;
use agent_core::bounded_cancel_reason;

/// The embedded schema (`migrations/0001_initial.sql` and the additive migrations after it).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connections in the pool: SQLite has one writer at a time, so one connection writes while
/// the other reads; more would only wait in SQLite's busy handler (which sleeps and polls)
/// instead of the pool's queue, and each costs a thread with its own malloc arena, SQLite
/// page cache and lookaside (about 300 KB under load, `docs/performance.md`). Point reads
/// of one session also have the fast reader (`reader.rs`).
const MAX_CONNECTIONS: u32 = 2;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Also served by [`FastReader`], which must read exactly what the pool reads.
pub(crate) const SELECT_SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE session_id = ?1"
);

const INSERT_SESSION: &str = concat!(
    "INSERT INTO sessions (session_id, workflow, profile, provider, provider_session_id, status, \
     working_directory, created_at, updated_at, last_activity_at, request_count, turn_count, \
     artifact_count, summary_latest, locked_by, lock_expires_at, lock_generation) \
     VALUES (?1, ?2, ?3, 'claude', NULL, 'running', ?4, ?5, ?5, ?5, 1, 0, 0, NULL, ?6, ?7, 1) \
     RETURNING ",
    session_columns!()
);

/// Takes the lock when free or when its lease has expired; a NULL expiry counts as held. Every
/// acquisition is a new fencing generation, and starts with no cancel request.
const ACQUIRE_LOCK: &str = concat!(
    "UPDATE sessions SET locked_by = ?1, lock_expires_at = ?2, \
       lock_generation = lock_generation + 1, cancel_requested_at = NULL, cancel_reason = NULL \
     WHERE session_id = ?3 \
       AND (locked_by IS NULL OR (lock_expires_at IS NOT NULL AND lock_expires_at <= ?4)) \
     RETURNING ",
    session_columns!()
);

const LOCK_HOLDER: &str = "SELECT locked_by FROM sessions WHERE session_id = ?1";

const RELEASE_LOCK: &str = "UPDATE sessions SET locked_by = NULL, lock_expires_at = NULL, \
     cancel_requested_at = NULL, cancel_reason = NULL WHERE session_id = ?1 AND locked_by = ?2";

/// Fenced by owner and generation.
const RENEW_LOCK: &str = "UPDATE sessions SET lock_expires_at = ?3 \
     WHERE session_id = ?1 AND locked_by = ?2 AND lock_generation = ?4";

/// Recorded only for a `running` session under a lock; the first reason stays.
const REQUEST_CANCEL: &str = "UPDATE sessions SET \
       cancel_requested_at = COALESCE(cancel_requested_at, ?1), \
       cancel_reason = COALESCE(cancel_reason, ?2) \
     WHERE session_id = ?3 AND status = 'running' AND locked_by IS NOT NULL";

/// One primary-key read, polled by the holder while it runs.
const CANCEL_REQUESTED: &str = "SELECT cancel_reason FROM sessions \
     WHERE session_id = ?1 AND locked_by = ?2 AND lock_generation = ?3 \
       AND cancel_requested_at IS NOT NULL";

const BEGIN_EXECUTION: &str = "UPDATE sessions SET status = 'running', request_count = request_count + 1, \
     updated_at = ?1, last_activity_at = ?1 WHERE session_id = ?2";

/// `None` fields keep their value. Fenced: applied only while `owner` (?6) holds the lock at
/// generation ?8 (each execution's owner token is new and each acquisition a new generation,
/// so a run whose lock was taken over or cleared can no longer write its end), and the lock is
/// released (and any cancel request dropped) with it.
const FINISH_EXECUTION: &str = concat!(
    "UPDATE sessions SET status = ?1, \
       turn_count = COALESCE(?2, turn_count), \
       summary_latest = COALESCE(?3, summary_latest), \
       provider_session_id = COALESCE(?4, provider_session_id), \
       updated_at = ?5, last_activity_at = ?5, \
       locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, cancel_reason = NULL, \
       ",
    add_usage!("?9", "?10", "?11", "?12", "?13"),
    " WHERE session_id = ?7 AND locked_by = ?6 AND lock_generation = ?8"
);

const INSERT_EVENT: &str = "INSERT INTO session_events (session_id, event_type, turn_index, payload, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// A kept output is written once: a second one at the same turn changes nothing (and the
/// execution that tried fails, [`Error::OutputKept`]).
const INSERT_OUTPUT: &str = "INSERT INTO session_outputs (session_id, turn_index, output_text, created_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (session_id, turn_index) DO NOTHING";

/// The result of a session's latest execution: replaces one of an earlier or the same execution,
/// never one of a later execution; nothing for a missing session.
const KEEP_RESULT: &str = "INSERT INTO session_results (session_id, execution, envelope, kept_at) \
     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = ?1) \
     ON CONFLICT (session_id) DO UPDATE SET execution = excluded.execution, \
       envelope = excluded.envelope, kept_at = excluded.kept_at \
     WHERE excluded.execution >= session_results.execution";

/// [`KEEP_RESULT`] for the execution that holds the session: its `request_count` is the
/// execution (written in the finish transaction, under the lock).
const KEEP_FINISHED_RESULT: &str = "INSERT INTO session_results (session_id, execution, envelope, kept_at) \
     SELECT session_id, request_count, ?2, ?3 FROM sessions WHERE session_id = ?1 \
     ON CONFLICT (session_id) DO UPDATE SET execution = excluded.execution, \
       envelope = excluded.envelope, kept_at = excluded.kept_at \
     WHERE excluded.execution >= session_results.execution";

/// A fork ([`agent_core::ForkSession`]): the parent's workflow, profile, provider and working
/// directory, `completed` at turn ?3 with no execution, no provider session and no lock; nothing
/// when the parent ?5 does not exist.
const INSERT_FORK: &str = concat!(
    "INSERT INTO sessions (session_id, workflow, profile, provider, provider_session_id, status, \
     working_directory, created_at, updated_at, last_activity_at, request_count, turn_count, \
     artifact_count, summary_latest, locked_by, lock_expires_at, lock_generation, \
     parent_session_id, forked_at_turn) \
     SELECT ?1, workflow, profile, provider, NULL, 'completed', working_directory, ?2, ?2, ?2, \
     0, ?3, 0, ?4, NULL, NULL, 0, session_id, ?3 FROM sessions WHERE session_id = ?5 \
     RETURNING ",
    session_columns!()
);

/// The parent's (?2) events through event ?3, in order, as the fork's (?1), times kept.
const COPY_FORK_EVENTS: &str = "INSERT INTO session_events (session_id, event_type, turn_index, payload, \
     created_at) SELECT ?1, event_type, turn_index, payload, created_at FROM session_events \
     WHERE session_id = ?2 AND event_id <= ?3 ORDER BY event_id";

/// The parent's (?2) kept outputs of turns up to ?3, as the fork's (?1).
const COPY_FORK_OUTPUTS: &str = "INSERT INTO session_outputs (session_id, turn_index, output_text, \
     created_at) SELECT ?1, turn_index, output_text, created_at FROM session_outputs \
     WHERE session_id = ?2 AND turn_index <= ?3";

const SELECT_RESULT: &str = "SELECT execution, envelope FROM session_results WHERE session_id = ?1";

const SESSION_EXISTS: &str = "SELECT COUNT(*) FROM sessions WHERE session_id = ?1";

const SELECT_OUTPUTS: &str =
    "SELECT turn_index, output_text FROM session_outputs WHERE session_id = ?1 ORDER BY turn_index";

const SELECT_EVENTS: &str = "SELECT event_id, session_id, event_type, turn_index, payload, created_at \
     FROM session_events WHERE session_id = ?1 ORDER BY event_id";

/// Served by `idx_sessions_updated` (no sort step).
pub(crate) const LIST_SESSIONS: &str = "SELECT session_id, workflow, profile, status, updated_at, summary_latest \
     FROM sessions ORDER BY updated_at DESC LIMIT ?1";

/// One `resources/list` page: the same order as [`LIST_SESSIONS`], paged in SQL so that a
/// large offset walks the index instead of loading the table.
pub(crate) const LIST_SESSIONS_PAGE: &str = "SELECT session_id, workflow, profile, status, updated_at, \
     summary_latest FROM sessions ORDER BY updated_at DESC LIMIT ?1 OFFSET ?2";

/// Served by `idx_sessions_status_updated` (no sort step).
pub(crate) const LIST_SESSIONS_BY_STATUS: &str = "SELECT session_id, workflow, profile, status, updated_at, \
     summary_latest FROM sessions WHERE status = ?2 ORDER BY updated_at DESC LIMIT ?1";

const SELECT_ARTIFACTS: &str = "SELECT artifact_id, session_id, artifact_type, logical_name, mime_type, path, \
     size_bytes, sha256, created_at, turn_index, producer_tool FROM artifacts WHERE session_id = ?1 \
     ORDER BY created_at, artifact_id";

const INSERT_ARTIFACT: &str = "INSERT INTO artifacts (artifact_id, session_id, workflow, profile, artifact_type, \
     logical_name, mime_type, path, size_bytes, sha256, created_at, turn_index, producer_tool) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

const BUMP_ARTIFACT_COUNT: &str = "UPDATE sessions SET artifact_count = artifact_count + 1, \
     updated_at = ?1, last_activity_at = ?1 WHERE session_id = ?2";

/// Only `running` rows without a live lease (the condition of [`SELECT_EXPIRED_LEASES`]): a
/// lease another process holds and renews is left alone.
const RECOVER_INTERRUPTED: &str = "UPDATE sessions SET status = 'interrupted', updated_at = ?1, \
     last_activity_at = ?1, locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, \
     cancel_reason = NULL WHERE status = 'running' \
       AND (locked_by IS NULL OR (lock_expires_at IS NOT NULL AND lock_expires_at <= ?1))";

/// Only a `running` row that `owner` (?3) holds at generation ?4, or that no one holds, is
/// interrupted.
const INTERRUPT_EXECUTION: &str = "UPDATE sessions SET status = 'interrupted', updated_at = ?1, \
     last_activity_at = ?1, locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, \
     cancel_reason = NULL WHERE session_id = ?2 AND status = 'running' \
       AND (locked_by IS NULL OR (locked_by = ?3 AND lock_generation = ?4)) \
     RETURNING turn_count";

/// `running` rows without a live lease: no holder, or a holder whose expiry is not later than
/// now (?1); a holder with a null expiry counts as held, as in [`ACQUIRE_LOCK`]. Served by a
/// status index (never a scan of every session). At most [`SWEEP_BATCH`] per sweep keeps the transaction
/// short; the next sweep takes the rest.
const SELECT_EXPIRED_LEASES: &str = "SELECT session_id, turn_count, locked_by, lock_expires_at \
     FROM sessions WHERE status = 'running' \
       AND (locked_by IS NULL OR (lock_expires_at IS NOT NULL AND lock_expires_at <= ?1)) \
     LIMIT ?2";

const SWEEP_BATCH: i64 = 500;

/// The same condition, checked again per row inside the sweep's write transaction.
const INTERRUPT_EXPIRED: &str = "UPDATE sessions SET status = 'interrupted', updated_at = ?1, \
     last_activity_at = ?1, locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, \
     cancel_reason = NULL \
     WHERE session_id = ?2 AND status = 'running' \
       AND (locked_by IS NULL OR (lock_expires_at IS NOT NULL AND lock_expires_at <= ?1))";

const EXPIRE_STALE_LOCKS: &str = "UPDATE sessions SET locked_by = NULL, lock_expires_at = NULL \
     WHERE lock_expires_at IS NOT NULL AND lock_expires_at < ?1";

/// Connects the pool. Switching a new database to WAL takes an exclusive lock without waiting
/// in SQLite's busy handler, so a process that opens a new database while another one sets it
/// up can be told `database is locked`: that is retried for up to the busy timeout.
async fn connect(
    options: SqliteConnectOptions,
    db_path: &std::path::Path,
) -> std::result::Result<SqlitePool, StoreOpenError> {
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let connected = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await;
        match connected {
            Ok(pool) => return Ok(pool),
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(db = %db_path.display(), error = %e, "database busy while opening; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(source) => {
                return Err(StoreOpenError::Connect {
                    path: db_path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, in any of their extended forms.
fn is_busy(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Applies the schema under the database's write lock: one `BEGIN IMMEDIATE` transaction holds
/// it from before sqlx reads `_sqlx_migrations` until the bookkeeping row is written (each
/// migration runs in a savepoint inside it). Processes that open a new database together
/// therefore apply it one after the other, and every one but the first finds it applied; a
/// process waiting for the lock waits up to the busy timeout.
async fn migrate(
    pool: &SqlitePool,
    db_path: &std::path::Path,
) -> std::result::Result<(), StoreOpenError> {
    let bootstrap = |source| StoreOpenError::Bootstrap {
        path: db_path.to_path_buf(),
        source,
    };
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(bootstrap)?;
    // `run_direct` is `run` on a connection we already hold (`run` on a transaction trips a
    // higher-ranked `Acquire` bound in a `Send` future).
    MIGRATOR
        .run_direct(None, &mut *tx, false)
        .await
        .map_err(|source| StoreOpenError::Migrate {
            path: db_path.to_path_buf(),
            source,
        })?;
    sqlx::query(
        "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (1, datetime('now'))",
    )
    .execute(&mut *tx)
    .await
    .map_err(bootstrap)?;
    tx.commit().await.map_err(bootstrap)
}

/// The SQLite session store. Cloning is cheap: clones share the pool and configuration.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    /// `config.artifact_dir`, canonicalised at open: artifact rows record absolute paths.
    artifact_root: PathBuf,
    /// The pool-free path for `get_session` (`reader.rs`).
    reader: Option<FastReader>,
    /// When creating a task or registering a request next purges expired rows.
    purge: crate::tasks::PurgeSchedule,
}

async fn create_dir_all(path: PathBuf) -> std::result::Result<(), StoreOpenError> {
    tokio::fs::create_dir_all(&path)
        .await
        .map_err(|source| StoreOpenError::CreateDir { path, source })
}

impl SqliteStore {
    /// Creates the database's parent directories and the artifact directory (recursively),
    /// connects (WAL, synchronous NORMAL, 5 s busy timeout, foreign keys on) and bootstraps
    /// the schema. Does not run crash recovery: call
    /// [`recover_interrupted`](SessionStore::recover_interrupted) before serving requests.
    pub async fn open(config: StoreConfig) -> std::result::Result<Self, StoreOpenError> {
        if let Some(parent) = config
            .db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            create_dir_all(parent.to_path_buf()).await?;
        }
        create_dir_all(config.artifact_dir.clone()).await?;
        let artifact_root = tokio::fs::canonicalize(&config.artifact_dir)
            .await
            .map_err(|source| StoreOpenError::CreateDir {
                path: config.artifact_dir.clone(),
                source,
            })?;

        let options = SqliteConnectOptions::new()
            .filename(&config.db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // No `ping` before each checkout (sqlx's default): for an in-process SQLite file it can
        // only fail if the connection's worker thread died, and it costs every query an extra
        // round trip to that thread (`docs/performance.md`).
        let pool = connect(options, &config.db_path).await?;

        if let Err(error) = migrate(&pool, &config.db_path).await {
            pool.close().await;
            return Err(error);
        }

        tracing::debug!(db = %config.db_path.display(), artifacts = %artifact_root.display(), "session store open");
        let reader = FastReader::open(&config.db_path);
        Ok(Self {
            pool,
            inner: Arc::new(Inner {
                config,
                artifact_root,
                reader,
                purge: crate::tasks::PurgeSchedule::default(),
            }),
        })
    }

    /// When the task tables' next implicit purge is due (`tasks.rs`).
    pub(crate) fn purge_schedule(&self) -> &crate::tasks::PurgeSchedule {
        &self.inner.purge
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The pool: for the other ports on the same database (`tasks.rs`) and the copy into
    /// another store (`migrate.rs`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The artifact directory, resolved at open.
    pub(crate) fn artifact_root(&self) -> &std::path::Path {
        &self.inner.artifact_root
    }

    /// The highest applied version in `schema_migrations` (0 if the table is empty or missing).
    pub async fn schema_version(&self) -> std::result::Result<i64, StoreError> {
        Ok(self.schema_version_impl().await?)
    }

    /// How many sessions have each status, as `(status, count)` (statuses with no session are
    /// absent): one grouped count over the status index, for the sessions gauge of
    /// `/metrics` (`docs/observability.md`).
    pub async fn session_counts(&self) -> std::result::Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM sessions GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from)?,
        )
    }

    /// Clears every lock whose lease expired before now; returns how many were cleared. The
    /// runtime never calls it (`docs/reference/sessions.md#4-locking`); it exists for maintenance.
    pub async fn expire_stale_locks(&self) -> std::result::Result<u64, StoreError> {
        let result = sqlx::query(EXPIRE_STALE_LOCKS)
            .bind(Timestamp::now().to_storage())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(result.rows_affected())
    }

    /// Closes every pooled connection (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn schema_version_impl(&self) -> Result<i64> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if tables == 0 {
            return Ok(0);
        }
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&self.pool)
                .await?;
        Ok(version)
    }

    /// A transaction holding the write lock from its first statement.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn begin_session_impl(
        &self,
        session: &NewSession,
        events: &[Event],
    ) -> Result<SessionRecord> {
        let now = Timestamp::now();
        let expires = now.plus(session.lock_ttl);
        let mut tx = self.write_tx().await?;
        // `fetch_all` steps the statement to completion (a `RETURNING` statement left
        // half-stepped would keep its write pending).
        let rows: Vec<SessionRow> = sqlx::query_as(INSERT_SESSION)
            .bind(&session.session_id)
            .bind(session.workflow.as_str())
            .bind(session.profile.as_str())
            .bind(session.working_directory.as_deref())
            .bind(now.to_storage())
            .bind(&session.lock_owner)
            .bind(expires.to_storage())
            .fetch_all(&mut *tx)
            .await?;
        insert_events(&mut tx, &session.session_id, events).await?;
        tx.commit().await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::SessionNotFound(session.session_id.clone()))?;
        row.into_record()
    }

    async fn get_session_impl(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if let Some(row) = self
            .inner
            .reader
            .as_ref()
            .and_then(|reader| reader.session(session_id))
        {
            return row.into_record().map(Some);
        }
        self.session_from_pool(session_id).await
    }

    crate::alike::session_statements_alike!(SessionRow, ListRow, EventRow);

    /// Inserts the fork's row (copied from its parent's, stamped with this node's clock);
    /// `None` when the parent is missing. `fetch_all`, as for every `RETURNING` statement here:
    /// it steps the statement to completion.
    async fn insert_fork(
        tx: &mut Transaction<'static, Sqlite>,
        fork: &ForkSession,
    ) -> Result<Option<SessionRow>> {
        let rows: Vec<SessionRow> = sqlx::query_as(INSERT_FORK)
            .bind(&fork.session_id)
            .bind(Timestamp::now().to_storage())
            .bind(fork.at_turn)
            .bind(fork.summary_latest.as_deref())
            .bind(&fork.parent_session_id)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Ends a `running` execution as `interrupted` unless another lease holds it, at this
    /// node's time; its turn count, or `None` when nothing was ended.
    async fn mark_interrupted(
        tx: &mut Transaction<'static, Sqlite>,
        session_id: &str,
        lease: &Lease,
    ) -> Result<Option<i64>> {
        let turns: Vec<i64> = sqlx::query_scalar(INTERRUPT_EXECUTION)
            .bind(Timestamp::now().to_storage())
            .bind(session_id)
            .bind(&lease.owner)
            .bind(lease.generation)
            .fetch_all(&mut **tx)
            .await?;
        Ok(turns.into_iter().next())
    }

    async fn acquire_lock_impl(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LockOutcome> {
        let now = Timestamp::now();
        let expires = now.plus(ttl);
        // The conditional UPDATE decides atomically; the transaction only keeps the follow-up
        // read (who holds it, or is the row missing) consistent with that decision.
        let mut tx = self.write_tx().await?;
        let taken: Vec<SessionRow> = sqlx::query_as(ACQUIRE_LOCK)
            .bind(owner)
            .bind(expires.to_storage())
            .bind(session_id)
            .bind(now.to_storage())
            .fetch_all(&mut *tx)
            .await?;
        let outcome = match taken.into_iter().next() {
            Some(row) => LockOutcome::Acquired(Box::new(row.into_record()?)),
            None => {
                let holder: Option<Option<String>> = sqlx::query_scalar(LOCK_HOLDER)
                    .bind(session_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match holder {
                    None => LockOutcome::NotFound,
                    // Unreachable while we hold the write lock: a free lock would have been taken.
                    Some(owner) => LockOutcome::Conflict {
                        owner: owner.unwrap_or_default(),
                    },
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn renew_lock_impl(
        &self,
        session_id: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool> {
        let updated = sqlx::query(RENEW_LOCK)
            .bind(session_id)
            .bind(&lease.owner)
            .bind(Timestamp::now().plus(ttl).to_storage())
            .bind(lease.generation)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn request_cancel_impl(&self, session_id: &str, reason: &str) -> Result<bool> {
        let reason = bounded_cancel_reason(reason);
        let updated = sqlx::query(REQUEST_CANCEL)
            .bind(Timestamp::now().to_storage())
            .bind(reason)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn begin_execution_impl(&self, session_id: &str, events: &[Event]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(BEGIN_EXECUTION)
            .bind(Timestamp::now().to_storage())
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::SessionNotFound(session_id.to_owned()));
        }
        insert_events(&mut tx, session_id, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_events_impl(&self, session_id: &str, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        insert_events(&mut tx, session_id, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_execution_impl(
        &self,
        session_id: &str,
        lease: &Lease,
        finish: &Finish,
    ) -> Result<()> {
        let owner = lease.owner.as_str();
        let usage = crate::usage::Columns::of(finish.usage.as_ref());
        if let Some(envelope) = &finish.result {
            check_result_size(envelope)?;
        }
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(FINISH_EXECUTION)
            .bind(finish.status.as_str())
            .bind(finish.turn_count)
            .bind(finish.summary_latest.as_deref())
            .bind(finish.provider_session_id.as_deref())
            .bind(Timestamp::now().to_storage())
            .bind(owner)
            .bind(session_id)
            .bind(lease.generation)
            .bind(usage.input)
            .bind(usage.output)
            .bind(usage.cache_creation)
            .bind(usage.cache_read)
            .bind(usage.cost_usd)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            let holder: Option<Option<String>> = sqlx::query_scalar(LOCK_HOLDER)
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(Error::not_applied(session_id, owner, holder));
        }
        insert_events(&mut tx, session_id, &finish.events).await?;
        if let (Some(text), Some(turn)) = (&finish.output_text, finish.turn_count) {
            let kept = sqlx::query(INSERT_OUTPUT)
                .bind(session_id)
                .bind(turn)
                .bind(text.as_str())
                .bind(Timestamp::now().to_storage())
                .execute(&mut *tx)
                .await?;
            if kept.rows_affected() == 0 {
                // Dropping `tx` rolls the whole finish back.
                return Err(Error::OutputKept {
                    session_id: session_id.to_owned(),
                    turn,
                });
            }
        }
        if let Some(envelope) = &finish.result {
            sqlx::query(KEEP_FINISHED_RESULT)
                .bind(session_id)
                .bind(envelope.as_str())
                .bind(Timestamp::now().to_storage())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn keep_result_impl(
        &self,
        session_id: &str,
        execution: i64,
        envelope: &str,
    ) -> Result<bool> {
        check_result_size(envelope)?;
        let kept = sqlx::query(KEEP_RESULT)
            .bind(session_id)
            .bind(execution)
            .bind(envelope)
            .bind(Timestamp::now().to_storage())
            .execute(&self.pool)
            .await?;
        if kept.rows_affected() > 0 {
            return Ok(true);
        }
        let exists: i64 = sqlx::query_scalar(SESSION_EXISTS)
            .bind(session_id)
            .fetch_one(&self.pool)
            .await?;
        if exists == 0 {
            return Err(Error::SessionNotFound(session_id.to_owned()));
        }
        Ok(false)
    }

    async fn store_artifact_impl(&self, artifact: NewArtifact<'_>) -> Result<ArtifactRef> {
        let artifacts::Accepted {
            size,
            artifact_id,
            sha256,
        } = artifacts::accept(&artifact, self.inner.config.max_artifact_bytes)?;
        // File I/O first, outside any transaction.
        let path = artifacts::write_file(
            &self.inner.artifact_root,
            artifact.session_id,
            &artifact_id,
            artifact.logical_name,
            artifact.body,
        )
        .await?;
        let recorded = self
            .record_artifact(&artifact, &artifact_id, &path, size, &sha256)
            .await;
        if let Err(error) = recorded {
            // Do not leave an orphan file behind a failed insert (e.g. an unknown session).
            if let Err(remove) = tokio::fs::remove_file(&path).await {
                tracing::warn!(path = %path.display(), error = %remove, "cannot remove orphan artifact file");
            }
            return Err(error);
        }
        Ok(artifacts::reference(&artifact, artifact_id))
    }

    async fn record_artifact(
        &self,
        artifact: &NewArtifact<'_>,
        artifact_id: &str,
        path: &std::path::Path,
        size: u64,
        sha256: &str,
    ) -> Result<()> {
        let path_text = path
            .to_str()
            .ok_or_else(|| Error::NonUtf8Path(path.to_path_buf()))?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let now = Timestamp::now().to_storage();
        let mut tx = self.write_tx().await?;
        sqlx::query(INSERT_ARTIFACT)
            .bind(artifact_id)
            .bind(artifact.session_id)
            .bind(artifact.workflow.as_str())
            .bind(artifact.profile.as_str())
            .bind(artifact.artifact_type)
            .bind(artifact.logical_name)
            .bind(artifact.mime_type)
            .bind(path_text)
            .bind(size)
            .bind(sha256)
            .bind(&now)
            .bind(artifact.turn_index)
            .bind(artifact.producer_tool)
            .execute(&mut *tx)
            .await?;
        let updated = sqlx::query(BUMP_ARTIFACT_COUNT)
            .bind(&now)
            .bind(artifact.session_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::SessionNotFound(artifact.session_id.to_owned()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn artifacts_impl(&self, session_id: &str) -> Result<Vec<ArtifactRecord>> {
        Ok(self
            .artifact_files(session_id)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect())
    }

    async fn read_artifact_impl(
        &self,
        session_id: &str,
        artifact_id: &str,
    ) -> std::result::Result<Option<(ArtifactRecord, Vec<u8>)>, StoreError> {
        let Some((record, path)) = self
            .artifact_files(session_id)
            .await?
            .into_iter()
            .find(|(record, _)| record.artifact_id == artifact_id)
        else {
            return Ok(None);
        };
        match artifacts::read_file(&path, self.inner.config.max_artifact_bytes).await {
            Ok(body) => Ok(Some((record, body))),
            Err(e) => Err(StoreError::new(format!(
                "artifact {artifact_id} could not be read from {}: {e}",
                path.display()
            ))),
        }
    }

    /// SQLite has no notifications: a cancel request is seen by polling only.
    fn cancel_wakeups_impl(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// A session's artifacts with the files their bodies are in, oldest first.
    async fn artifact_files(&self, session_id: &str) -> Result<Vec<(ArtifactRecord, PathBuf)>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            String,
            String,
            i64,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(SELECT_ARTIFACTS)
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let record = ArtifactRecord {
                    artifact_id: r.0,
                    session_id: r.1,
                    artifact_type: r.2,
                    logical_name: r.3,
                    mime_type: r.4,
                    size_bytes: r.6,
                    sha256: r.7,
                    created_at: r.8,
                    turn_index: r.9,
                    producer_tool: r.10,
                };
                (record, PathBuf::from(r.5))
            })
            .collect())
    }

    async fn sweep_expired_leases_impl(&self) -> Result<u64> {
        let now = Timestamp::now().to_storage();
        let mut tx = self.write_tx().await?;
        let expired: Vec<(String, i64, Option<String>, Option<String>)> =
            sqlx::query_as(SELECT_EXPIRED_LEASES)
                .bind(&now)
                .bind(SWEEP_BATCH)
                .fetch_all(&mut *tx)
                .await?;
        let mut swept = 0;
        for (session_id, turn, locked_by, lock_expires_at) in expired {
            let updated = sqlx::query(INTERRUPT_EXPIRED)
                .bind(&now)
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                continue;
            }
            let event =
                Event::lease_expired(turn, locked_by.as_deref(), lock_expires_at.as_deref());
            insert_events(&mut tx, &session_id, &[event]).await?;
            swept += 1;
        }
        tx.commit().await?;
        Ok(swept)
    }

    async fn recover_interrupted_impl(&self) -> Result<u64> {
        let result = sqlx::query(RECOVER_INTERRUPTED)
            .bind(Timestamp::now().to_storage())
            .execute(&self.pool)
            .await?;
        let count = result.rows_affected();
        if count > 0 {
            tracing::warn!(
                count,
                "recovered sessions left running by a previous process: now interrupted"
            );
        }
        Ok(count)
    }
}

/// Appends `events` in order, each stamped with the time of its insertion.
async fn insert_events(
    conn: &mut SqliteConnection,
    session_id: &str,
    events: &[Event],
) -> Result<()> {
    for event in events {
        let payload = serde_json::to_string(&event.payload).map_err(Error::EncodePayload)?;
        sqlx::query(INSERT_EVENT)
            .bind(session_id)
            .bind(event.event_type.as_str())
            .bind(event.turn_index)
            .bind(payload)
            .bind(Timestamp::now().to_storage())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A kept result is at most `agent_core::MAX_KEPT_RESULT_BYTES`.
pub(crate) fn check_result_size(envelope: &str) -> Result<()> {
    if envelope.len() > agent_core::MAX_KEPT_RESULT_BYTES {
        return Err(Error::ResultTooLarge {
            size: envelope.len(),
            max: agent_core::MAX_KEPT_RESULT_BYTES,
        });
    }
    Ok(())
}

/// Implements [`EventLog`](agent_core::EventLog) and [`SessionStore`](agent_core::SessionStore)
/// for a store by delegating every method to the store's own `<method>_impl` (its error
/// converted into [`StoreError`](agent_core::StoreError)): one definition for both stores, as
/// `task_store_by_impls!` is for their task state.
macro_rules! session_store_by_impls {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl agent_core::EventLog for $store {
            async fn append_events(
                &self,
                session_id: &str,
                events: &[agent_core::Event],
            ) -> Result<(), agent_core::StoreError> {
                Ok(self.append_events_impl(session_id, events).await?)
            }

            async fn events(
                &self,
                session_id: &str,
            ) -> Result<Vec<agent_core::StoredEvent>, agent_core::StoreError> {
                Ok(self.events_impl(session_id).await?)
            }
        }

        #[async_trait::async_trait]
        impl agent_core::SessionStore for $store {
            async fn begin_session(
                &self,
                session: &agent_core::NewSession,
                events: &[agent_core::Event],
            ) -> Result<agent_core::SessionRecord, agent_core::StoreError> {
                Ok(self.begin_session_impl(session, events).await?)
            }

            async fn get_session(
                &self,
                session_id: &str,
            ) -> Result<Option<agent_core::SessionRecord>, agent_core::StoreError> {
                Ok(self.get_session_impl(session_id).await?)
            }

            async fn list_sessions(
                &self,
                limit: u32,
                status: Option<agent_core::SessionStatus>,
            ) -> Result<Vec<agent_core::SessionListItem>, agent_core::StoreError> {
                Ok(self.list_sessions_impl(limit, status).await?)
            }

            async fn list_sessions_page(
                &self,
                offset: u32,
                limit: u32,
            ) -> Result<Vec<agent_core::SessionListItem>, agent_core::StoreError> {
                Ok(self.list_sessions_page_impl(offset, limit).await?)
            }

            async fn acquire_lock(
                &self,
                session_id: &str,
                owner: &str,
                ttl: std::time::Duration,
            ) -> Result<agent_core::LockOutcome, agent_core::StoreError> {
                Ok(self.acquire_lock_impl(session_id, owner, ttl).await?)
            }

            async fn release_lock(
                &self,
                session_id: &str,
                owner: &str,
            ) -> Result<(), agent_core::StoreError> {
                Ok(self.release_lock_impl(session_id, owner).await?)
            }

            async fn renew_lock(
                &self,
                session_id: &str,
                lease: &agent_core::Lease,
                ttl: std::time::Duration,
            ) -> Result<bool, agent_core::StoreError> {
                Ok(self.renew_lock_impl(session_id, lease, ttl).await?)
            }

            async fn begin_execution(
                &self,
                session_id: &str,
                events: &[agent_core::Event],
            ) -> Result<(), agent_core::StoreError> {
                Ok(self.begin_execution_impl(session_id, events).await?)
            }

            async fn finish_execution(
                &self,
                session_id: &str,
                lease: &agent_core::Lease,
                finish: &agent_core::Finish,
            ) -> Result<(), agent_core::StoreError> {
                Ok(self
                    .finish_execution_impl(session_id, lease, finish)
                    .await?)
            }

            async fn store_artifact(
                &self,
                artifact: agent_core::NewArtifact<'_>,
            ) -> Result<agent_core::ArtifactRef, agent_core::StoreError> {
                Ok(self.store_artifact_impl(artifact).await?)
            }

            async fn interrupt_execution(
                &self,
                session_id: &str,
                lease: &agent_core::Lease,
                reason: &str,
            ) -> Result<bool, agent_core::StoreError> {
                Ok(self
                    .interrupt_execution_impl(session_id, lease, reason)
                    .await?)
            }

            async fn sweep_expired_leases(&self) -> Result<u64, agent_core::StoreError> {
                Ok(self.sweep_expired_leases_impl().await?)
            }

            async fn recover_interrupted(&self) -> Result<u64, agent_core::StoreError> {
                Ok(self.recover_interrupted_impl().await?)
            }

            async fn request_cancel(
                &self,
                session_id: &str,
                reason: &str,
            ) -> Result<bool, agent_core::StoreError> {
                Ok(self.request_cancel_impl(session_id, reason).await?)
            }

            async fn cancel_requested(
                &self,
                session_id: &str,
                lease: &agent_core::Lease,
            ) -> Result<Option<String>, agent_core::StoreError> {
                Ok(self.cancel_requested_impl(session_id, lease).await?)
            }

            fn cancel_wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
                self.cancel_wakeups_impl()
            }

            async fn artifacts(
                &self,
                session_id: &str,
            ) -> Result<Vec<agent_core::ArtifactRecord>, agent_core::StoreError> {
                Ok(self.artifacts_impl(session_id).await?)
            }

            async fn read_artifact(
                &self,
                session_id: &str,
                artifact_id: &str,
            ) -> Result<Option<(agent_core::ArtifactRecord, Vec<u8>)>, agent_core::StoreError> {
                self.read_artifact_impl(session_id, artifact_id).await
            }

            async fn fork_session(
                &self,
                fork: &agent_core::ForkSession,
            ) -> Result<agent_core::ForkOutcome, agent_core::StoreError> {
                Ok(self.fork_session_impl(fork).await?)
            }

            async fn outputs(
                &self,
                session_id: &str,
            ) -> Result<Vec<(i64, String)>, agent_core::StoreError> {
                Ok(self.outputs_impl(session_id).await?)
            }

            async fn keep_result(
                &self,
                session_id: &str,
                execution: i64,
                envelope: &str,
            ) -> Result<bool, agent_core::StoreError> {
                Ok(self
                    .keep_result_impl(session_id, execution, envelope)
                    .await?)
            }

            async fn kept_result(
                &self,
                session_id: &str,
            ) -> Result<Option<(i64, String)>, agent_core::StoreError> {
                Ok(self.kept_result_impl(session_id).await?)
            }
        }
    };
}
pub(crate) use session_store_by_impls;

session_store_by_impls!(SqliteStore);

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(StoreConfig {
            db_path: dir.path().join("t.db"),
            artifact_dir: dir.path().join("artifacts"),
            max_artifact_bytes: 1024,
        })
        .await
        .unwrap();
        (dir, store)
    }

    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    /// Listing must walk an index in `updated_at` order and stop at the limit: no full scan,
    /// no temporary B-tree for the sort.
    #[tokio::test]
    async fn listing_uses_an_index_and_no_sort() {
        let (_dir, store) = store().await;
        let unfiltered = plan(&store, LIST_SESSIONS).await;
        assert!(unfiltered.contains("idx_sessions_updated"), "{unfiltered}");
        assert!(!unfiltered.contains("TEMP B-TREE"), "{unfiltered}");
        let filtered = plan(&store, LIST_SESSIONS_BY_STATUS).await;
        assert!(
            filtered.contains("idx_sessions_status_updated"),
            "{filtered}"
        );
        assert!(!filtered.contains("TEMP B-TREE"), "{filtered}");
        let page = plan(&store, LIST_SESSIONS_PAGE).await;
        assert!(page.contains("idx_sessions_updated"), "{page}");
        assert!(!page.contains("TEMP B-TREE"), "{page}");
    }

    /// The lease sweeper runs every TTL/2 while serving: it must find `running` rows through
    /// the status index, never by scanning every session.
    #[tokio::test]
    async fn the_lease_sweep_uses_the_status_index() {
        let (_dir, store) = store().await;
        let sweep = plan(&store, SELECT_EXPIRED_LEASES).await;
        assert!(sweep.contains("USING INDEX idx_sessions_status"), "{sweep}");
        assert!(!sweep.contains("SCAN sessions"), "{sweep}");
    }

    /// A running execution polls for cancel requests every 250 ms: one primary-key lookup.
    /// Recording one is one too.
    #[tokio::test]
    async fn cancel_requests_are_primary_key_lookups() {
        let (_dir, store) = store().await;
        for sql in [CANCEL_REQUESTED, REQUEST_CANCEL] {
            let found = plan(&store, sql).await;
            assert!(
                found.contains("USING INDEX sqlite_autoindex_sessions_1 (session_id=?)"),
                "{found}"
            );
            assert!(!found.contains("SCAN"), "{found}");
        }
    }
}
