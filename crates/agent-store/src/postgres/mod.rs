//! [`PostgresStore`]: the PostgreSQL implementation of [`agent_core::SessionStore`], for a
//! fleet of server processes that share one session space (`docs/scaling.md#the-shared-store`).
//!
//! The behaviour, the events and the envelopes are those of [`SqliteStore`](crate::SqliteStore)
//! (one contract suite runs against both: `tests/store/contract.rs`); what differs is where the
//! data lives:
//!
//! * native types and its own migrations (`migrations/postgres/`), applied by sqlx's migrator
//!   under its advisory lock, so any number of processes can start together on a new schema;
//! * every time is the database server's clock (`statement_timestamp()`), so the leases of
//!   several nodes are compared against one clock, whatever each node's own says;
//! * artifact bodies are `bytea` rows, so every node serves every `artifact://` resource;
//! * a cancel request is also announced with `NOTIFY` on [`CANCEL_CHANNEL`]; each store keeps one
//!   `LISTEN` connection (outside the query pool; none when [`PostgresConfig::listen`] is off)
//!   and hands the session ids to [`cancel_wakeups`](agent_core::SessionStore::cancel_wakeups)
//!   receivers. Polling stays the fallback (a pooler in transaction mode delivers no
//!   notifications).
//!
//! ```ignore
//! let store = PostgresStore::open(PostgresConfig::new(url, 10 * 1024 * 1024)).await?;
//! store.recover_interrupted().await?;
//! ```

mod listener;
mod queries;
mod rows;
mod tasks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use agent_core::text::redact_url;
use agent_core::{
    ArtifactRecord, ArtifactRef, Event, Finish, ForkOutcome, ForkSession, Lease, LockOutcome,
    NewArtifact, NewSession, SessionListItem, SessionRecord, SessionStatus, StoreError,
    StoredEvent,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};
use tokio::sync::broadcast;

use crate::artifacts;
use crate::config::StoreOpenError;
use crate::error::{Error, Result};
use agent_core::bounded_cancel_reason;

use self::queries::*;
use self::rows::{ArtifactRow, PgEventRow, PgListRow, PgSessionRow, storage};

/// The embedded PostgreSQL schema (`migrations/postgres/`).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The `NOTIFY` channel of cancel requests; the payload is the session id.
pub const CANCEL_CHANNEL: &str = "claude_agent_mcp_cancel";

/// The `application_name` of the store's connections when the URL sets none.
pub const APPLICATION_NAME: &str = "claude-agent-mcp";

/// The pool size when the configuration names none.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How long opening waits for the database (connecting, and the migration lock).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call waits for a pooled connection once the store is open: a node whose
/// database went away answers each store call with an error after this, instead of holding
/// the client for the connect timeout (a run makes up to three such calls before it fails).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle this long is pinged before it is used (one round trip): the
/// database may have restarted or a proxy dropped it meanwhile. A busy node's connections are
/// idle for microseconds and skip it; sqlx pings each one as it is released anyway.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// At most this many sessions per sweep: the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;

/// The longest lease: a larger TTL is cut to it, so that `now + ttl` stays a valid timestamp.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Wake-ups buffered per receiver before a slow one loses some (it then only polls).
const WAKEUP_BUFFER: usize = 256;

/// Where the PostgreSQL store keeps its data and how large an artifact may be.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A `postgres://` or `postgresql://` URL (libpq's parameters: `sslmode`, `options=-c
    /// search_path=…`, `application_name`, …).
    pub url: String,
    /// Bodies larger than this are refused (`Artifact exceeds max size: <size> > <max>`).
    pub max_artifact_bytes: u64,
    /// The query pool's size (the `LISTEN` connection is one more).
    pub max_connections: u32,
    /// Whether to keep a `LISTEN` connection for cancel requests (default true). Off behind a
    /// pooler in transaction mode, where it would hear nothing: cancels are then polled only.
    pub listen: bool,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>, max_artifact_bytes: u64) -> Self {
        Self {
            url: url.into(),
            max_artifact_bytes,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            listen: true,
        }
    }
}

/// The URL is shown with its password redacted.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("max_connections", &self.max_connections)
            .field("listen", &self.listen)
            .finish()
    }
}

/// The PostgreSQL session store. Cloning is cheap: clones share the pool and the listener.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PostgresConfig,
    /// Session ids of cancel requests announced by `NOTIFY`; `None` when no `LISTEN`
    /// connection could be opened (polling only).
    wakeups: Option<broadcast::Sender<String>>,
    listener: Option<listener::ListenerTask>,
    /// When creating a task or registering a request next purges expired rows.
    purge: crate::tasks::PurgeSchedule,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.stop();
        }
    }
}

impl PostgresStore {
    /// Connects (the pool and one `LISTEN` connection) and applies the schema. Does not run
    /// crash recovery: call [`recover_interrupted`](SessionStore::recover_interrupted) before
    /// serving requests.
    pub async fn open(config: PostgresConfig) -> std::result::Result<Self, StoreOpenError> {
        let shown = redact_url(&config.url);
        let connect_error = |source| StoreOpenError::PgConnect {
            url: shown.clone(),
            source,
        };
        let options = PgConnectOptions::from_str(&config.url).map_err(connect_error)?;
        // `application_name` from the URL wins (an operator telling nodes apart); else ours.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name(APPLICATION_NAME),
        };
        // One connection first, so that a refused connection or a failed authentication is
        // reported at once and as itself (the pool would retry until its timeout, then report
        // only that it timed out).
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
            .map_err(connect_error)?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection as it goes back to the pool; pinging it again as it
            // is taken out is a third round trip per statement. Only a connection left idle
            // for a while (the database may have restarted since) is pinged again.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        if let Err(error) = migrate(&pool, &shown).await {
            pool.close().await;
            return Err(error);
        }
        let (wakeups, listener) = if config.listen {
            match listener::start(options, CANCEL_CHANNEL).await {
                Ok((sender, task)) => (Some(sender), Some(task)),
                Err(error) => {
                    tracing::warn!(target: "store", url = %shown, %error,
                        "no LISTEN connection for cancel requests: cancels are seen by polling only");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        tracing::debug!(target: "store", url = %shown, "PostgreSQL session store open");
        Ok(Self {
            pool,
            inner: Arc::new(Inner {
                config,
                wakeups,
                listener,
                purge: crate::tasks::PurgeSchedule::default(),
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The pool, for the copy from another store (`migrate.rs`).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether a `LISTEN` connection serves [`cancel_wakeups`](SessionStore::cancel_wakeups).
    pub fn listens(&self) -> bool {
        self.inner.wakeups.is_some()
    }

    /// The highest applied version in `schema_migrations` (0 if the table is empty or missing).
    pub async fn schema_version(&self) -> std::result::Result<i64, StoreError> {
        Ok(self.schema_version_impl().await?)
    }

    /// How many sessions have each status, as `(status, count)` (statuses with no session are
    /// absent): one grouped count over the status index, for the sessions gauge of
    /// `/metrics` (`docs/observability.md`).
    pub async fn session_counts(&self) -> std::result::Result<Vec<(String, i64)>, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sessions GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from)?;
        Ok(counts)
    }

    /// Closes every pooled connection and the `LISTEN` connection.
    pub async fn close(&self) {
        if let Some(task) = &self.inner.listener {
            task.stop();
        }
        self.pool.close().await;
    }

    async fn schema_version_impl(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await?)
    }

    /// A transaction; concurrent writers are ordered by the rows they lock.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    async fn begin_session_impl(
        &self,
        session: &NewSession,
        events: &[Event],
    ) -> Result<SessionRecord> {
        let events = EventColumns::of(events)?;
        // One statement: the row and its events, atomic without a transaction.
        let row: PgSessionRow = sqlx::query_as(INSERT_SESSION)
            .bind(&session.session_id)
            .bind(session.workflow.as_str())
            .bind(session.profile.as_str())
            .bind(session.working_directory.as_deref())
            .bind(&session.lock_owner)
            .bind(ttl_micros(session.lock_ttl))
            .bind(events.types)
            .bind(events.turns)
            .bind(events.payloads)
            .fetch_one(&self.pool)
            .await?;
        row.into_record()
    }

    async fn get_session_impl(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.session_from_pool(session_id).await
    }

    crate::alike::session_statements_alike!(PgSessionRow, PgListRow, PgEventRow);

    /// Inserts the fork's row (copied from its parent's, stamped with the database's clock);
    /// `None` when the parent is missing.
    async fn insert_fork(
        tx: &mut Transaction<'static, Postgres>,
        fork: &ForkSession,
    ) -> Result<Option<PgSessionRow>> {
        Ok(sqlx::query_as(INSERT_FORK)
            .bind(&fork.session_id)
            .bind(fork.at_turn)
            .bind(fork.summary_latest.as_deref())
            .bind(&fork.parent_session_id)
            .fetch_optional(&mut **tx)
            .await?)
    }

    /// Ends a `running` execution as `interrupted` unless another lease holds it, at the
    /// database's time; its turn count, or `None` when nothing was ended.
    async fn mark_interrupted(
        tx: &mut Transaction<'static, Postgres>,
        session_id: &str,
        lease: &Lease,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(INTERRUPT_EXECUTION)
            .bind(session_id)
            .bind(&lease.owner)
            .bind(lease.generation)
            .fetch_optional(&mut **tx)
            .await?)
    }

    async fn acquire_lock_impl(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LockOutcome> {
        // The conditional UPDATE decides (row-locked, its condition re-checked once a
        // concurrent writer commits, so exactly one of several takers wins). When it took
        // nothing, the holder is read; a lock released in between is tried again.
        for _ in 0..3 {
            let taken: Option<PgSessionRow> = sqlx::query_as(ACQUIRE_LOCK)
                .bind(owner)
                .bind(ttl_micros(ttl))
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = taken {
                return Ok(LockOutcome::Acquired(Box::new(row.into_record()?)));
            }
            let holder: Option<Option<String>> = sqlx::query_scalar(LOCK_HOLDER)
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
            match holder {
                None => return Ok(LockOutcome::NotFound),
                Some(Some(owner)) => return Ok(LockOutcome::Conflict { owner }),
                Some(None) => continue,
            }
        }
        Ok(LockOutcome::Conflict {
            owner: String::new(),
        })
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
            .bind(ttl_micros(ttl))
            .bind(lease.generation)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn request_cancel_impl(&self, session_id: &str, reason: &str) -> Result<bool> {
        let reason = bounded_cancel_reason(reason);
        // Recorded and announced in one statement (the notification is sent at its commit).
        let recorded: Option<String> = sqlx::query_scalar(REQUEST_CANCEL)
            .bind(reason)
            .bind(session_id)
            .bind(CANCEL_CHANNEL)
            .fetch_optional(&self.pool)
            .await?;
        Ok(recorded.is_some())
    }

    async fn begin_execution_impl(&self, session_id: &str, events: &[Event]) -> Result<()> {
        let events = EventColumns::of(events)?;
        // One statement: the row and its events, atomic without a transaction.
        let updated: bool = sqlx::query_scalar(BEGIN_EXECUTION)
            .bind(session_id)
            .bind(events.types)
            .bind(events.turns)
            .bind(events.payloads)
            .fetch_one(&self.pool)
            .await?;
        if !updated {
            return Err(Error::SessionNotFound(session_id.to_owned()));
        }
        Ok(())
    }

    async fn append_events_impl(&self, session_id: &str, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // One statement: atomic without an explicit transaction.
        let mut conn = self.pool.acquire().await?;
        insert_events(&mut conn, session_id, events).await
    }

    async fn finish_execution_impl(
        &self,
        session_id: &str,
        lease: &Lease,
        finish: &Finish,
    ) -> Result<()> {
        let owner = lease.owner.as_str();
        let events = EventColumns::of(&finish.events)?;
        let output = finish.turn_count.and(finish.output_text.as_deref());
        if let Some(envelope) = &finish.result {
            crate::store::check_result_size(envelope)?;
        }
        let usage = crate::usage::Columns::of(finish.usage.as_ref());
        // One statement, no transaction: it is atomic, and undoes itself when the output is
        // already kept (`FINISH_EXECUTION`).
        let applied: std::result::Result<bool, sqlx::Error> = sqlx::query_scalar(FINISH_EXECUTION)
            .bind(finish.status.as_str())
            .bind(finish.turn_count)
            .bind(finish.summary_latest.as_deref())
            .bind(finish.provider_session_id.as_deref())
            .bind(owner)
            .bind(session_id)
            .bind(lease.generation)
            .bind(events.types)
            .bind(events.turns)
            .bind(events.payloads)
            .bind(output)
            .bind(finish.result.as_deref())
            .bind(usage.input)
            .bind(usage.output)
            .bind(usage.cache_creation)
            .bind(usage.cache_read)
            .bind(usage.cost_usd)
            .fetch_one(&self.pool)
            .await;
        let applied = match applied {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(OUTPUT_KEPT_SQLSTATE) => {
                return Err(Error::OutputKept {
                    session_id: session_id.to_owned(),
                    turn: finish.turn_count.unwrap_or_default(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !applied {
            let holder: Option<Option<String>> = sqlx::query_scalar(LOCK_HOLDER)
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
            return Err(Error::not_applied(session_id, owner, holder));
        }
        Ok(())
    }

    async fn keep_result_impl(
        &self,
        session_id: &str,
        execution: i64,
        envelope: &str,
    ) -> Result<bool> {
        crate::store::check_result_size(envelope)?;
        let kept = sqlx::query(KEEP_RESULT)
            .bind(session_id)
            .bind(execution)
            .bind(envelope)
            .execute(&self.pool)
            .await?;
        if kept.rows_affected() > 0 {
            return Ok(true);
        }
        let exists: bool = sqlx::query_scalar(SESSION_EXISTS)
            .bind(session_id)
            .fetch_one(&self.pool)
            .await?;
        if !exists {
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
        // One statement: the counter and the row, atomic without a transaction.
        let inserted: Option<String> = sqlx::query_scalar(INSERT_ARTIFACT)
            .bind(&artifact_id)
            .bind(artifact.session_id)
            .bind(artifact.workflow.as_str())
            .bind(artifact.profile.as_str())
            .bind(artifact.artifact_type)
            .bind(artifact.logical_name)
            .bind(artifact.mime_type)
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(&sha256)
            .bind(artifact.turn_index)
            .bind(artifact.producer_tool)
            .bind(artifact.body)
            .fetch_optional(&self.pool)
            .await?;
        if inserted.is_none() {
            return Err(Error::SessionNotFound(artifact.session_id.to_owned()));
        }
        Ok(artifacts::reference(&artifact, artifact_id))
    }

    /// The cancel requests this node is told of at once (`LISTEN/NOTIFY`), when it listens.
    fn cancel_wakeups_impl(&self) -> Option<broadcast::Receiver<String>> {
        self.inner
            .wakeups
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }

    async fn artifacts_impl(&self, session_id: &str) -> Result<Vec<ArtifactRecord>> {
        let rows: Vec<ArtifactRow> = sqlx::query_as(SELECT_ARTIFACTS)
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ArtifactRow::into_record).collect())
    }

    async fn read_artifact_impl(
        &self,
        session_id: &str,
        artifact_id: &str,
    ) -> std::result::Result<Option<(ArtifactRecord, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(self.inner.config.max_artifact_bytes).unwrap_or(i64::MAX);
        let row = sqlx::query_as::<_, rows::ArtifactBodyRow>(SELECT_ARTIFACT)
            .bind(session_id)
            .bind(artifact_id)
            .bind(limit)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(rows::ArtifactBodyRow::split))
            .map_err(Error::from)?;
        let Some((record, stored, body)) = row else {
            return Ok(None);
        };
        // The body is read only when it is within the limit every artifact was written under
        // (a row written by hand may be larger): never an unbounded read.
        match body {
            Some(body) => Ok(Some((record.into_record(), body))),
            None => Err(StoreError::new(format!(
                "artifact {artifact_id} could not be read: its body of {stored} bytes is larger \
                 than the artifact limit of {limit} bytes"
            ))),
        }
    }

    async fn sweep_expired_leases_impl(&self) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        // Rows another node's sweep is taking right now are skipped, not waited for, and never
        // swept twice.
        let expired: Vec<rows::ExpiredRow> = sqlx::query_as(SWEEP_EXPIRED)
            .bind(SWEEP_BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for row in &expired {
            let expires = row.lock_expires_at.map(storage);
            let event =
                Event::lease_expired(row.turn_count, row.locked_by.as_deref(), expires.as_deref());
            insert_events(&mut tx, &row.session_id, &[event]).await?;
        }
        tx.commit().await?;
        Ok(expired.len() as u64)
    }

    async fn recover_interrupted_impl(&self) -> Result<u64> {
        let result = sqlx::query(RECOVER_INTERRUPTED).execute(&self.pool).await?;
        let count = result.rows_affected();
        if count > 0 {
            tracing::warn!(
                count,
                "recovered sessions left running without a live lease: now interrupted"
            );
        }
        Ok(count)
    }
}

/// What [`probe`] found on a PostgreSQL server, without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgProbe {
    /// `server_version` as the server reports it.
    pub server_version: String,
    /// The schema the URL selects (the first of `search_path` that exists); `None` when none
    /// exists.
    pub schema: Option<String>,
    /// The highest version in that schema's `schema_migrations`; `None` when the store has not
    /// created its tables there yet (the first node to start does).
    pub schema_version: Option<i64>,
}

/// Connects to `url` and reads what `doctor` reports: the server version, the selected schema
/// and the store's schema version there. Writes nothing (no migration, no table), and gives up
/// after [`CONNECT_TIMEOUT`]. Errors show the URL with its password redacted.
pub async fn probe(url: &str) -> std::result::Result<PgProbe, StoreOpenError> {
    let shown = redact_url(url);
    let connect_error = |source| StoreOpenError::PgConnect {
        url: shown.clone(),
        source,
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(connect_error)?
        .application_name(&format!("{APPLICATION_NAME} doctor"));
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?;
    let mut conn = connected.map_err(connect_error)?;
    let found: std::result::Result<(String, Option<String>, bool), sqlx::Error> = sqlx::query_as(
        "SELECT current_setting('server_version'), current_schema()::text,          to_regclass('schema_migrations') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await;
    let (server_version, schema, has_table) = found.map_err(connect_error)?;
    let schema_version = if has_table {
        Some(
            sqlx::query_scalar(SCHEMA_VERSION)
                .fetch_one(&mut conn)
                .await
                .map_err(connect_error)?,
        )
    } else {
        None
    };
    let _ = conn.close().await;
    Ok(PgProbe {
        server_version,
        schema,
        schema_version,
    })
}

/// Applies the schema. sqlx's migrator holds a session-level advisory lock on the database from
/// before it reads `_sqlx_migrations` until every migration is applied, so processes that open
/// a new schema together apply it one after the other, and every one but the first finds it
/// applied. A failed migration leaves the lock on its connection: that connection is closed,
/// never returned to the pool.
async fn migrate(pool: &PgPool, shown: &str) -> std::result::Result<(), StoreOpenError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|source| StoreOpenError::PgConnect {
            url: shown.to_owned(),
            source,
        })?;
    match MIGRATOR.run_direct(None, &mut *conn, false).await {
        Ok(()) => Ok(()),
        Err(source) => {
            let _ = conn.detach().close().await;
            Err(StoreOpenError::PgMigrate {
                url: shown.to_owned(),
                source,
            })
        }
    }
}

/// A TTL in microseconds, cut to [`MAX_TTL`].
fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.min(MAX_TTL).as_micros()).unwrap_or(i64::MAX)
}

/// Events as the three arrays the statements take (`UNNEST` keeps their order).
struct EventColumns<'a> {
    types: Vec<&'a str>,
    turns: Vec<i64>,
    payloads: Vec<String>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [Event]) -> Result<Self> {
        let mut columns = Self {
            types: Vec::with_capacity(events.len()),
            turns: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
        };
        for event in events {
            columns.types.push(event.event_type.as_str());
            columns.turns.push(event.turn_index);
            columns
                .payloads
                .push(serde_json::to_string(&event.payload).map_err(Error::EncodePayload)?);
        }
        Ok(columns)
    }
}

/// Appends `events` in order in one statement (their ids follow the order given).
async fn insert_events(conn: &mut PgConnection, session_id: &str, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let columns = EventColumns::of(events)?;
    sqlx::query(INSERT_EVENTS)
        .bind(session_id)
        .bind(columns.types)
        .bind(columns.turns)
        .bind(columns.payloads)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

crate::store::session_store_by_impls!(PostgresStore);
