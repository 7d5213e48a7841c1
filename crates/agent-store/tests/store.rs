//! Behaviour of `SqliteStore` against `docs/reference/sessions.md#4-locking` to
//! `docs/reference/sessions.md#10-artifacts`: schema, locking, executions, events,
//! listing, artifacts and crash recovery, each on a fresh database in a temporary directory.
//! The module `contract` runs the behaviours the engine relies on against both stores, SQLite
//! and PostgreSQL (`contract::on_sqlite::*`, `contract::on_postgres::*`).

// Helpers outside `#[test]` functions are test code too (clippy's allow-in-tests misses them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_core::{
    Event, EventLog, EventType, Finish, Lease, LockOutcome, NewArtifact, NewSession, Profile,
    SessionListItem, SessionRecord, SessionStatus, SessionStore, Timestamp, Workflow,
};
use agent_store::{SqliteStore, StoreConfig, StoreOpenError};
use serde_json::json;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use tempfile::TempDir;

#[path = "store/contract.rs"]
mod contract;
#[path = "store/migrate.rs"]
mod migrate;

#[path = "contract/tasks.rs"]
pub mod task_contract;

/// The task store contract on SQLite (a fresh database per test), on PostgreSQL (a fresh schema
/// per test) and on the in-memory store.
mod task_store_on_sqlite {
    crate::task_store_contract!(async {
        let (dir, store) = crate::fresh().await;
        Some((dir, std::sync::Arc::new(store)))
    });
}

mod task_store_on_postgres {
    crate::task_store_contract!(async {
        let schema = agent_testkit::postgres::fresh_schema().await?;
        let config = agent_store::PostgresConfig::new(schema.url(), crate::MAX_ARTIFACT);
        let store = agent_store::PostgresStore::open(config).await.unwrap();
        Some((schema, std::sync::Arc::new(store)))
    });
}

mod task_store_in_memory {
    crate::task_store_contract!(async {
        Some((
            (),
            std::sync::Arc::new(agent_testkit::tasks::MemTaskStore::new()),
        ))
    });
}

const TTL: Duration = Duration::from_secs(300);
const MAX_ARTIFACT: u64 = 64;

/// The schema exactly as `docs/reference/sessions.md#9-database-schema` gives it (what the original
/// runs on open).
const SPEC_SQL: &str = r#"
PRAGMA journal_mode=WAL;
PRAGMA foreign_keys=ON;

CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    session_id          TEXT PRIMARY KEY,
    workflow            TEXT NOT NULL,
    profile             TEXT NOT NULL,
    provider            TEXT NOT NULL DEFAULT 'claude',
    provider_session_id TEXT,
    status              TEXT NOT NULL DEFAULT 'created',
    working_directory   TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    last_activity_at    TEXT NOT NULL,
    request_count       INTEGER NOT NULL DEFAULT 0,
    turn_count          INTEGER NOT NULL DEFAULT 0,
    artifact_count      INTEGER NOT NULL DEFAULT 0,
    summary_latest      TEXT,
    locked_by           TEXT,
    lock_expires_at     TEXT
);
CREATE INDEX IF NOT EXISTS idx_sessions_status ON sessions(status);
CREATE INDEX IF NOT EXISTS idx_sessions_updated ON sessions(updated_at DESC);

CREATE TABLE IF NOT EXISTS session_events (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions(session_id),
    event_type  TEXT NOT NULL,
    turn_index  INTEGER NOT NULL DEFAULT 0,
    payload     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_session ON session_events(session_id, event_id);

CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id   TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions(session_id),
    workflow      TEXT NOT NULL,
    profile       TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    logical_name  TEXT NOT NULL,
    mime_type     TEXT NOT NULL DEFAULT 'application/octet-stream',
    path          TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL DEFAULT 0,
    sha256        TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    turn_index    INTEGER NOT NULL DEFAULT 0,
    producer_tool TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS idx_artifacts_session ON artifacts(session_id);
"#;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        db_path: dir.join("state").join("nested").join("claude-agent-mcp.db"),
        artifact_dir: dir.join("state").join("artifacts"),
        max_artifact_bytes: MAX_ARTIFACT,
    }
}

async fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(config(dir.path())).await.unwrap();
    (dir, store)
}

/// A second, independent connection pool on the same file for raw SQL.
async fn raw(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePool::connect_with(options).await.unwrap()
}

async fn raw_of(dir: &TempDir) -> SqlitePool {
    raw(&config(dir.path()).db_path).await
}

fn new_session(id: &str, owner: &str) -> NewSession {
    NewSession {
        session_id: id.to_owned(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        working_directory: Some("/work/project".to_owned()),
        lock_owner: owner.to_owned(),
        lock_ttl: TTL,
    }
}

/// Creates a session and leaves it completed and unlocked.
async fn idle_session(store: &SqliteStore, id: &str) {
    store
        .begin_session(&new_session(id, "exec_setup000"), &[])
        .await
        .unwrap();
    let finish = Finish {
        status: SessionStatus::Completed,
        turn_count: Some(1),
        summary_latest: Some("done".to_owned()),
        provider_session_id: None,
        output_text: None,
        events: vec![],
        result: None,
        usage: None,
    };
    store
        .finish_execution(id, &lease("exec_setup000", 1), &finish)
        .await
        .unwrap();
}

async fn set_status(pool: &SqlitePool, id: &str, status: &str) {
    sqlx::query("UPDATE sessions SET status = ?1 WHERE session_id = ?2")
        .bind(status)
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

async fn set_lock(pool: &SqlitePool, id: &str, owner: Option<&str>, expires: Option<&str>) {
    sqlx::query("UPDATE sessions SET locked_by = ?1, lock_expires_at = ?2 WHERE session_id = ?3")
        .bind(owner)
        .bind(expires)
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

async fn get(store: &SqliteStore, id: &str) -> SessionRecord {
    store.get_session(id).await.unwrap().unwrap()
}

fn lease(owner: &str, generation: i64) -> Lease {
    Lease::new(owner, generation)
}

fn acquired(outcome: LockOutcome) -> SessionRecord {
    match outcome {
        LockOutcome::Acquired(record) => *record,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

async fn table_columns(
    pool: &SqlitePool,
    table: &str,
) -> Vec<(String, String, bool, Option<String>, bool)> {
    let sql = sqlx::AssertSqlSafe(format!("PRAGMA table_info({table})"));
    let rows: Vec<(i64, String, String, i64, Option<String>, i64)> =
        sqlx::query_as(sql).fetch_all(pool).await.unwrap();
    rows.into_iter()
        .map(|(_, name, ty, notnull, default, pk)| (name, ty, notnull != 0, default, pk != 0))
        .collect()
}

fn col(
    name: &str,
    ty: &str,
    notnull: bool,
    default: Option<&str>,
    pk: bool,
) -> (String, String, bool, Option<String>, bool) {
    (
        name.to_owned(),
        ty.to_owned(),
        notnull,
        default.map(str::to_owned),
        pk,
    )
}

// ---------------------------------------------------------------------------------------------
// Opening and schema
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn open_creates_the_database_the_artifact_dir_and_the_reference_schema() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let store = SqliteStore::open(cfg.clone()).await.unwrap();
    assert!(cfg.db_path.is_file());
    assert!(cfg.artifact_dir.is_dir());
    assert_eq!(store.config(), &cfg);
    assert_eq!(store.schema_version().await.unwrap(), 1);

    let pool = raw(&cfg.db_path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "artifacts",
            // Migration 0004: MCP task state (`agent_core::TaskStore`).
            "mcp_requests",
            "mcp_tasks",
            "schema_migrations",
            "session_events",
            "session_outputs",
            // Migration 0005: the result of each session's latest execution.
            "session_results",
            "sessions"
        ]
    );
    assert_eq!(
        table_columns(&pool, "session_results").await,
        vec![
            col("session_id", "TEXT", false, None, true),
            col("execution", "INTEGER", true, None, false),
            col("envelope", "TEXT", true, None, false),
            col("kept_at", "TEXT", true, None, false)
        ]
    );

    assert_eq!(
        table_columns(&pool, "schema_migrations").await,
        vec![
            col("version", "INTEGER", false, None, true),
            col("applied_at", "TEXT", true, None, false)
        ]
    );
    assert_eq!(
        table_columns(&pool, "sessions").await,
        vec![
            col("session_id", "TEXT", false, None, true),
            col("workflow", "TEXT", true, None, false),
            col("profile", "TEXT", true, None, false),
            col("provider", "TEXT", true, Some("'claude'"), false),
            col("provider_session_id", "TEXT", false, None, false),
            col("status", "TEXT", true, Some("'created'"), false),
            col("working_directory", "TEXT", false, None, false),
            col("created_at", "TEXT", true, None, false),
            col("updated_at", "TEXT", true, None, false),
            col("last_activity_at", "TEXT", true, None, false),
            col("request_count", "INTEGER", true, Some("0"), false),
            col("turn_count", "INTEGER", true, Some("0"), false),
            col("artifact_count", "INTEGER", true, Some("0"), false),
            col("summary_latest", "TEXT", false, None, false),
            col("locked_by", "TEXT", false, None, false),
            col("lock_expires_at", "TEXT", false, None, false),
            // Additive (migration 0003): the lease fencing generation and cancel requests.
            col("lock_generation", "INTEGER", true, Some("0"), false),
            col("cancel_requested_at", "TEXT", false, None, false),
            col("cancel_reason", "TEXT", false, None, false),
            // Additive (migration 0006): where a fork came from.
            col("parent_session_id", "TEXT", false, None, false),
            col("forked_at_turn", "INTEGER", false, None, false),
            // Additive (migration 0007): the session's summed usage and cost.
            col("usage_input_tokens", "INTEGER", true, Some("0"), false),
            col("usage_output_tokens", "INTEGER", true, Some("0"), false),
            col(
                "usage_cache_creation_input_tokens",
                "INTEGER",
                false,
                None,
                false
            ),
            col(
                "usage_cache_read_input_tokens",
                "INTEGER",
                false,
                None,
                false
            ),
            col("usage_cost_usd", "REAL", false, None, false),
        ]
    );
    assert_eq!(
        table_columns(&pool, "session_events").await,
        vec![
            col("event_id", "INTEGER", false, None, true),
            col("session_id", "TEXT", true, None, false),
            col("event_type", "TEXT", true, None, false),
            col("turn_index", "INTEGER", true, Some("0"), false),
            col("payload", "TEXT", true, Some("'{}'"), false),
            col("created_at", "TEXT", true, None, false),
        ]
    );
    assert_eq!(
        table_columns(&pool, "artifacts").await,
        vec![
            col("artifact_id", "TEXT", false, None, true),
            col("session_id", "TEXT", true, None, false),
            col("workflow", "TEXT", true, None, false),
            col("profile", "TEXT", true, None, false),
            col("artifact_type", "TEXT", true, None, false),
            col("logical_name", "TEXT", true, None, false),
            col(
                "mime_type",
                "TEXT",
                true,
                Some("'application/octet-stream'"),
                false
            ),
            col("path", "TEXT", true, None, false),
            col("size_bytes", "INTEGER", true, Some("0"), false),
            col("sha256", "TEXT", true, Some("''"), false),
            col("created_at", "TEXT", true, None, false),
            col("turn_index", "INTEGER", true, Some("0"), false),
            col("producer_tool", "TEXT", true, Some("''"), false),
        ]
    );

    assert_eq!(
        table_columns(&pool, "mcp_tasks").await,
        vec![
            col("task_id", "TEXT", false, None, true),
            col("tool_name", "TEXT", true, None, false),
            col("owner_node", "TEXT", true, None, false),
            col("status", "TEXT", true, None, false),
            col("status_message", "TEXT", false, None, false),
            col("session_id", "TEXT", false, None, false),
            col("result", "TEXT", false, None, false),
            col("cancel_requested_at", "TEXT", false, None, false),
            col("ttl_ms", "INTEGER", true, None, false),
            col("poll_interval_ms", "INTEGER", false, None, false),
            col("created_at", "TEXT", true, None, false),
            col("updated_at", "TEXT", true, None, false),
            col("expires_at", "TEXT", true, None, false),
        ]
    );
    assert_eq!(
        table_columns(&pool, "mcp_requests").await,
        vec![
            col("client_key", "TEXT", true, None, true),
            col("request_id", "TEXT", true, None, true),
            col("owner_node", "TEXT", true, None, false),
            col("session_id", "TEXT", false, None, false),
            col("cancel_requested_at", "TEXT", false, None, false),
            col("cancel_reason", "TEXT", false, None, false),
            col("created_at", "TEXT", true, None, false),
            col("expires_at", "TEXT", true, None, false),
        ]
    );

    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "idx_artifacts_session",
            "idx_events_session",
            "idx_mcp_requests_expires",
            "idx_mcp_tasks_expires",
            "idx_sessions_status",
            "idx_sessions_status_updated",
            "idx_sessions_updated",
        ]
    );

    let migrations: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at FROM schema_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0].0, 1);
    // SQLite `datetime('now')`: `YYYY-MM-DD HH:MM:SS`.
    assert_eq!(migrations[0].1.len(), 19, "{}", migrations[0].1);
    assert_eq!(&migrations[0].1[10..11], " ");
    store.close().await;
}

#[tokio::test]
async fn reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let first = SqliteStore::open(cfg.clone()).await.unwrap();
    let before: Vec<(i64, String)> = {
        let pool = raw(&cfg.db_path).await;
        sqlx::query_as("SELECT version, applied_at FROM schema_migrations")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    first.close().await;
    for _ in 0..2 {
        let again = SqliteStore::open(cfg.clone()).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), 1);
        again.close().await;
    }
    let pool = raw(&cfg.db_path).await;
    let after: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at FROM schema_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_database_created_by_the_original_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(cfg.db_path.parent().unwrap()).unwrap();
    {
        let pool = raw(&cfg.db_path).await;
        sqlx::raw_sql(SPEC_SQL).execute(&pool).await.unwrap();
        sqlx::query("INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (1, '2026-01-02 03:04:05')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO sessions (session_id, workflow, profile, provider, status, working_directory, \
             created_at, updated_at, last_activity_at, request_count, turn_count, summary_latest) \
             VALUES ('sess_00000000000000aa', 'verify_task', 'verification', 'claude', 'completed', '/srv', \
             '2026-01-02T03:04:05.123456+00:00', '2026-01-02T03:04:06+00:00', '2026-01-02T03:04:06+00:00', \
             1, 2, 'Verification pass: 0 finding(s)')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO session_events (session_id, event_type, turn_index, payload, created_at) \
             VALUES ('sess_00000000000000aa', 'user_input', 0, '{\"task\": \"check\", \"scope\": null}', \
             '2026-01-02T03:04:05.200000+00:00')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(cfg.clone()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    let record = get(&store, "sess_00000000000000aa").await;
    assert_eq!(
        record,
        SessionRecord {
            session_id: "sess_00000000000000aa".into(),
            workflow: Workflow::VerifyTask,
            profile: Profile::Verification,
            provider: "claude".into(),
            provider_session_id: None,
            status: SessionStatus::Completed,
            working_directory: Some("/srv".into()),
            created_at: Timestamp::parse("2026-01-02T03:04:05.123456+00:00").unwrap(),
            updated_at: Timestamp::parse("2026-01-02T03:04:06+00:00").unwrap(),
            last_activity_at: Timestamp::parse("2026-01-02T03:04:06+00:00").unwrap(),
            request_count: 1,
            turn_count: 2,
            artifact_count: 0,
            summary_latest: Some("Verification pass: 0 finding(s)".into()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 0,
            fork: None,
            usage: Default::default(),
        }
    );
    let events = store.events("sess_00000000000000aa").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, json!({"task": "check", "scope": null}));

    // The original's bookkeeping row is kept, not duplicated.
    let pool = raw(&cfg.db_path).await;
    let migrations: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at FROM schema_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(migrations, vec![(1, "2026-01-02 03:04:05".to_owned())]);

    // And it keeps working as a store.
    store
        .begin_session(&new_session("sess_00000000000000bb", "exec_00000001"), &[])
        .await
        .unwrap();
    assert_eq!(store.list_sessions(10, None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn open_failure_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"file").unwrap();
    let cfg = StoreConfig {
        db_path: blocker.join("db.sqlite"),
        artifact_dir: dir.path().join("artifacts"),
        max_artifact_bytes: 1,
    };
    let err = SqliteStore::open(cfg).await.unwrap_err();
    assert!(matches!(err, StoreOpenError::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn begin_session_round_trips_through_get_session() {
    let (_dir, store) = fresh().await;
    let events = [
        Event::user_input_task("do it"),
        Event::system_prompt_resolved(Profile::General),
    ];
    let before = Timestamp::now();
    let created = store
        .begin_session(
            &new_session("sess_0000000000000001", "exec_aaaaaaaa"),
            &events,
        )
        .await
        .unwrap();
    let after = Timestamp::now();

    let expected = SessionRecord {
        session_id: "sess_0000000000000001".into(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        provider: "claude".into(),
        provider_session_id: None,
        status: SessionStatus::Running,
        working_directory: Some("/work/project".into()),
        created_at: created.created_at,
        updated_at: created.updated_at,
        last_activity_at: created.last_activity_at,
        request_count: 1,
        turn_count: 0,
        artifact_count: 0,
        summary_latest: None,
        locked_by: Some("exec_aaaaaaaa".into()),
        lock_expires_at: created.lock_expires_at,
        lock_generation: 1,
        fork: None,
        usage: Default::default(),
    };
    assert_eq!(created, expected);
    assert_eq!(get(&store, "sess_0000000000000001").await, expected);

    assert!(before <= created.created_at && created.created_at <= after);
    assert_eq!(created.updated_at, created.created_at);
    assert_eq!(created.last_activity_at, created.created_at);
    assert_eq!(created.lock_expires_at, Some(created.created_at.plus(TTL)));

    let stored = store.events("sess_0000000000000001").await.unwrap();
    let kinds: Vec<(&str, i64)> = stored
        .iter()
        .map(|e| (e.event_type.as_str(), e.turn_index))
        .collect();
    assert_eq!(kinds, [("user_input", 0), ("system_prompt_resolved", 0)]);
}

#[tokio::test]
async fn unknown_session_is_none() {
    let (_dir, store) = fresh().await;
    assert_eq!(
        store.get_session("sess_doesnotexist0000").await.unwrap(),
        None
    );
    assert_eq!(store.events("sess_doesnotexist0000").await.unwrap(), vec![]);
}

#[tokio::test]
async fn timestamps_are_stored_in_the_offset_form() {
    let (dir, store) = fresh().await;
    store
        .begin_session(
            &new_session("sess_ts", "exec_1"),
            &[Event::provider_request_start(0)],
        )
        .await
        .unwrap();
    let pool = raw_of(&dir).await;
    let (created, expires): (String, String) = sqlx::query_as(
        "SELECT created_at, lock_expires_at FROM sessions WHERE session_id = 'sess_ts'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let event_created: String = sqlx::query_scalar("SELECT created_at FROM session_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    for text in [&created, &expires, &event_created] {
        assert!(text.ends_with("+00:00"), "{text}");
        assert_eq!(Timestamp::parse(text).unwrap().to_storage(), *text);
    }
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_bad").await;
    let pool = raw_of(&dir).await;
    set_status(&pool, "sess_bad", "paused").await;
    let err = store.get_session("sess_bad").await.unwrap_err();
    assert_eq!(
        err.message,
        "corrupt sessions row sess_bad: unknown status 'paused'"
    );
    assert!(store.list_sessions(10, None).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Locking
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn acquire_on_a_free_lock_returns_the_locked_row_without_touching_updated_at() {
    let (_dir, store) = fresh().await;
    idle_session(&store, "sess_l").await;
    let before = get(&store, "sess_l").await;
    assert_eq!(before.locked_by, None);
    let record = acquired(
        store
            .acquire_lock("sess_l", "cont_bbbbbbbb", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(record.locked_by.as_deref(), Some("cont_bbbbbbbb"));
    let expires = record.lock_expires_at.unwrap();
    assert!(expires > before.updated_at.plus(TTL - Duration::from_secs(1)));
    assert_eq!(
        SessionRecord {
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
            ..record.clone()
        },
        before
    );
    assert_eq!(
        record.lock_generation, 2,
        "every acquisition is a new generation"
    );
    assert_eq!(get(&store, "sess_l").await, record);
}

#[tokio::test]
async fn an_unexpired_lock_of_another_owner_conflicts() {
    let (_dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_c", "exec_holder00"), &[])
        .await
        .unwrap();
    let before = get(&store, "sess_c").await;
    assert_eq!(
        store
            .acquire_lock("sess_c", "cont_other000", TTL)
            .await
            .unwrap(),
        LockOutcome::Conflict {
            owner: "exec_holder00".into()
        }
    );
    // Even the holder cannot re-acquire an unexpired lease.
    assert_eq!(
        store
            .acquire_lock("sess_c", "exec_holder00", TTL)
            .await
            .unwrap(),
        LockOutcome::Conflict {
            owner: "exec_holder00".into()
        }
    );
    assert_eq!(get(&store, "sess_c").await, before);
}

#[tokio::test]
async fn an_expired_lock_is_taken_over() {
    let (dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_s", "exec_dead0000"), &[])
        .await
        .unwrap();
    let pool = raw_of(&dir).await;
    set_lock(
        &pool,
        "sess_s",
        Some("exec_dead0000"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    let record = acquired(
        store
            .acquire_lock("sess_s", "cont_new00000", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(record.locked_by.as_deref(), Some("cont_new00000"));
    assert!(record.lock_expires_at.unwrap() > Timestamp::now());
}

#[tokio::test]
async fn a_lock_with_null_expiry_counts_as_held() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_n").await;
    let pool = raw_of(&dir).await;
    set_lock(&pool, "sess_n", Some("exec_forever0"), None).await;
    assert_eq!(
        store.acquire_lock("sess_n", "cont_x", TTL).await.unwrap(),
        LockOutcome::Conflict {
            owner: "exec_forever0".into()
        }
    );
}

#[tokio::test]
async fn release_by_a_non_owner_is_a_no_op_and_by_the_owner_clears_both_fields() {
    let (_dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_r", "exec_owner000"), &[])
        .await
        .unwrap();
    let before = get(&store, "sess_r").await;
    store.release_lock("sess_r", "cont_intruder").await.unwrap();
    assert_eq!(get(&store, "sess_r").await, before);

    store.release_lock("sess_r", "exec_owner000").await.unwrap();
    let after = get(&store, "sess_r").await;
    assert_eq!(
        after,
        SessionRecord {
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
            ..before
        }
    );
    // Releasing a missing session is also a no-op.
    store
        .release_lock("sess_missing", "exec_owner000")
        .await
        .unwrap();
}

#[tokio::test]
async fn acquire_on_a_missing_session_is_not_found() {
    let (_dir, store) = fresh().await;
    assert_eq!(
        store
            .acquire_lock("sess_missing", "exec_1", TTL)
            .await
            .unwrap(),
        LockOutcome::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquisitions_have_exactly_one_winner() {
    let (_dir, store) = fresh().await;
    idle_session(&store, "sess_race").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let owner = format!("cont_{i:08x}");
            let outcome = store.acquire_lock("sess_race", &owner, TTL).await.unwrap();
            (owner, outcome)
        });
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (owner, LockOutcome::Acquired(record)) => {
                assert_eq!(record.locked_by.as_deref(), Some(owner.as_str()));
                winners.push(owner);
            }
            (_, LockOutcome::Conflict { owner }) => losers.push(owner),
            (_, LockOutcome::NotFound) => panic!("session vanished"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(losers.len(), 19);
    assert!(losers.iter().all(|o| *o == winners[0]), "{losers:?}");
    assert_eq!(
        get(&store, "sess_race").await.locked_by,
        Some(winners[0].clone())
    );
}

#[tokio::test]
async fn expire_stale_locks_clears_only_expired_leases() {
    let (dir, store) = fresh().await;
    for id in ["sess_e1", "sess_e2", "sess_e3"] {
        store
            .begin_session(&new_session(id, "exec_1"), &[])
            .await
            .unwrap();
    }
    let pool = raw_of(&dir).await;
    set_lock(
        &pool,
        "sess_e1",
        Some("exec_1"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    set_lock(&pool, "sess_e2", Some("exec_1"), None).await;
    let before_updated = get(&store, "sess_e1").await.updated_at;
    assert_eq!(store.expire_stale_locks().await.unwrap(), 1);
    let e1 = get(&store, "sess_e1").await;
    assert_eq!(
        (e1.locked_by, e1.lock_expires_at, e1.updated_at),
        (None, None, before_updated)
    );
    assert_eq!(
        get(&store, "sess_e2").await.locked_by.as_deref(),
        Some("exec_1")
    );
    assert_eq!(
        get(&store, "sess_e3").await.locked_by.as_deref(),
        Some("exec_1")
    );
    assert_eq!(store.expire_stale_locks().await.unwrap(), 0);
}

/// Issue #12 item 7: the lease sweeper interrupts `running` sessions whose lease expired (or
/// that have no lock) with a `lease_expired` event; live leases, locks without expiry and
/// other statuses are left alone.
#[tokio::test]
async fn the_sweeper_interrupts_running_sessions_whose_lease_expired() {
    let (dir, store) = fresh().await;
    for id in ["sess_s1", "sess_s2", "sess_s3", "sess_s4", "sess_s5"] {
        store
            .begin_session(&new_session(id, "exec_1"), &[])
            .await
            .unwrap();
    }
    let pool = raw_of(&dir).await;
    let past = "2000-01-01T00:00:00+00:00";
    // s1: expired lease; s2: live lease (as created); s3: held without expiry;
    // s4: running with no lock; s5: completed with an expired lease.
    set_lock(&pool, "sess_s1", Some("exec_1"), Some(past)).await;
    sqlx::query("UPDATE sessions SET turn_count = 3 WHERE session_id = 'sess_s1'")
        .execute(&pool)
        .await
        .unwrap();
    set_lock(&pool, "sess_s3", Some("exec_1"), None).await;
    set_lock(&pool, "sess_s4", None, None).await;
    set_lock(&pool, "sess_s5", Some("exec_1"), Some(past)).await;
    set_status(&pool, "sess_s5", "completed").await;
    let before = get(&store, "sess_s1").await.updated_at;

    assert_eq!(store.sweep_expired_leases().await.unwrap(), 2);

    let s1 = get(&store, "sess_s1").await;
    assert_eq!(s1.status, SessionStatus::Interrupted);
    assert_eq!((s1.locked_by, s1.lock_expires_at), (None, None));
    assert!(s1.updated_at > before);
    let events = store.events("sess_s1").await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "lease_expired");
    assert_eq!(last.turn_index, 3);
    assert_eq!(
        last.payload,
        json!({"locked_by": "exec_1", "lock_expires_at": past})
    );
    let s4 = get(&store, "sess_s4").await;
    assert_eq!(s4.status, SessionStatus::Interrupted);
    assert_eq!(
        store
            .events("sess_s4")
            .await
            .unwrap()
            .last()
            .unwrap()
            .payload,
        json!({"locked_by": null, "lock_expires_at": null})
    );
    for (id, status) in [
        ("sess_s2", SessionStatus::Running),
        ("sess_s3", SessionStatus::Running),
        ("sess_s5", SessionStatus::Completed),
    ] {
        let r = get(&store, id).await;
        assert_eq!(r.status, status, "{id}");
        assert_eq!(r.locked_by.as_deref(), Some("exec_1"), "{id}");
        assert!(store.events(id).await.unwrap().is_empty(), "{id}");
    }
    // Nothing left to sweep: a second sweep changes nothing and writes no event.
    assert_eq!(store.sweep_expired_leases().await.unwrap(), 0);
    assert_eq!(store.events("sess_s1").await.unwrap().len(), 1);
}

/// The final-write fallback: only a `running` session held by the caller (or by no one) is
/// interrupted, with a `session_interrupted` event, and its lock is released.
#[tokio::test]
async fn interrupt_execution_applies_only_to_the_owners_running_session() {
    let (dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_i1", "exec_1"), &[])
        .await
        .unwrap();
    assert!(
        !store
            .interrupt_execution("sess_i1", &lease("exec_other", 1), "why")
            .await
            .unwrap(),
        "another owner's lock"
    );
    assert_eq!(get(&store, "sess_i1").await.status, SessionStatus::Running);
    assert!(
        store
            .interrupt_execution(
                "sess_i1",
                &lease("exec_1", 1),
                "the end could not be recorded"
            )
            .await
            .unwrap()
    );
    let r = get(&store, "sess_i1").await;
    assert_eq!(r.status, SessionStatus::Interrupted);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    let events = store.events("sess_i1").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "session_interrupted");
    assert_eq!(
        events[0].payload,
        json!({"reason": "the end could not be recorded"})
    );
    // Not running any more, a missing session: nothing happens.
    assert!(
        !store
            .interrupt_execution("sess_i1", &lease("exec_1", 1), "again")
            .await
            .unwrap()
    );
    assert!(
        !store
            .interrupt_execution("sess_missing", &lease("exec_1", 1), "x")
            .await
            .unwrap()
    );
    assert_eq!(store.events("sess_i1").await.unwrap().len(), 1);
    // A completed session keeps its status even for its lock holder.
    idle_session(&store, "sess_i2").await;
    let pool = raw_of(&dir).await;
    set_lock(&pool, "sess_i2", Some("exec_2"), None).await;
    assert!(
        !store
            .interrupt_execution("sess_i2", &lease("exec_2", 1), "x")
            .await
            .unwrap()
    );
    assert_eq!(
        get(&store, "sess_i2").await.status,
        SessionStatus::Completed
    );
}

// ---------------------------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn begin_execution_sets_running_and_increments_request_count() {
    let (_dir, store) = fresh().await;
    idle_session(&store, "sess_b").await;
    let before = get(&store, "sess_b").await;
    assert_eq!(
        (before.status, before.request_count),
        (SessionStatus::Completed, 1)
    );
    acquired(
        store
            .acquire_lock("sess_b", "cont_00000001", TTL)
            .await
            .unwrap(),
    );
    let locked = get(&store, "sess_b").await;

    store
        .begin_execution("sess_b", &[Event::user_input_message(1, "more")])
        .await
        .unwrap();
    let after = get(&store, "sess_b").await;
    assert_eq!(
        after,
        SessionRecord {
            status: SessionStatus::Running,
            request_count: 2,
            updated_at: after.updated_at,
            last_activity_at: after.updated_at,
            ..locked.clone()
        }
    );
    assert!(after.updated_at >= locked.updated_at);
    let events = store.events("sess_b").await.unwrap();
    assert_eq!(events.last().unwrap().payload, json!({"message": "more"}));

    let err = store
        .begin_execution("sess_missing", &[])
        .await
        .unwrap_err();
    assert_eq!(err.message, "Session sess_missing not found");
}

#[tokio::test]
async fn finish_execution_sets_fields_appends_events_and_releases_the_lock() {
    let (_dir, store) = fresh().await;
    store
        .begin_session(
            &new_session("sess_f", "exec_f0000000"),
            &[Event::user_input_task("t")],
        )
        .await
        .unwrap();
    let before = get(&store, "sess_f").await;
    let finish = Finish {
        status: SessionStatus::Completed,
        turn_count: Some(3),
        summary_latest: Some("all done".into()),
        provider_session_id: Some("prov-1".into()),
        output_text: Some("all done\nwith a second line".into()),
        events: vec![Event::provider_response_summary(
            3,
            "all done",
            Some("end_turn"),
        )],
        result: None,
        usage: None,
    };
    store
        .finish_execution("sess_f", &lease("exec_f0000000", 1), &finish)
        .await
        .unwrap();
    let after = get(&store, "sess_f").await;
    assert_eq!(
        after,
        SessionRecord {
            status: SessionStatus::Completed,
            turn_count: 3,
            summary_latest: Some("all done".into()),
            provider_session_id: Some("prov-1".into()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
            updated_at: after.updated_at,
            last_activity_at: after.updated_at,
            ..before.clone()
        }
    );
    assert!(after.updated_at >= before.updated_at);
    let events = store.events("sess_f").await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_type, "provider_response_summary");
    assert_eq!(events[1].turn_index, 3);
    assert_eq!(
        events[1].payload,
        json!({"summary": "all done", "stop_reason": "end_turn"})
    );
    assert_eq!(
        store.outputs("sess_f").await.unwrap(),
        vec![(3, "all done\nwith a second line".to_owned())],
        "the full output is kept under the new turn count"
    );
}

#[tokio::test]
async fn finish_execution_by_a_non_holder_fails_and_changes_nothing() {
    let (_dir, store) = fresh().await;
    idle_session(&store, "sess_k").await;
    acquired(
        store
            .acquire_lock("sess_k", "cont_holder00", TTL)
            .await
            .unwrap(),
    );
    let before = get(&store, "sess_k").await;
    let finish = Finish {
        status: SessionStatus::Failed,
        turn_count: None,
        summary_latest: None,
        provider_session_id: None,
        output_text: None,
        events: vec![],
        result: None,
        usage: None,
    };
    // Fenced (issue #14): an execution that no longer holds the lock cannot write its end.
    let err = store
        .finish_execution("sess_k", &lease("cont_someoneelse", 2), &finish)
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "Session sess_k: execution cont_someoneelse no longer holds its lock (held by cont_holder00): nothing was written"
    );
    assert_eq!(get(&store, "sess_k").await, before);
    // Nor once the lock was cleared.
    store.release_lock("sess_k", "cont_holder00").await.unwrap();
    let err = store
        .finish_execution("sess_k", &lease("cont_holder00", 2), &finish)
        .await
        .unwrap_err();
    assert!(err.message.contains("(no one holds it)"), "{}", err.message);
    // The holder finishes: `None` fields keep their value.
    acquired(
        store
            .acquire_lock("sess_k", "cont_holder00", TTL)
            .await
            .unwrap(),
    );
    store
        .finish_execution("sess_k", &lease("cont_holder00", 3), &finish)
        .await
        .unwrap();
    let after = get(&store, "sess_k").await;
    assert_eq!(
        after,
        SessionRecord {
            status: SessionStatus::Failed,
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 3,
            fork: None,
            usage: Default::default(),
            updated_at: after.updated_at,
            last_activity_at: after.updated_at,
            ..before
        }
    );
    assert_eq!(after.turn_count, 1);
    assert_eq!(after.summary_latest.as_deref(), Some("done"));
    assert!(
        store
            .finish_execution("sess_missing", &lease("x", 1), &finish)
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn events_come_back_in_order_with_their_payloads() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_ev").await;
    idle_session(&store, "sess_other").await;
    let nested = json!({"policy": {"max_recent_turns": 5, "z": [1, 2.5, null, "x"]}, "a": true, "emoji": "é✓"});
    let batch1 = vec![
        Event::user_input_verify("task", Some("scope")),
        Event::policy_decision_verify(true, &["a.rs".to_owned()]),
    ];
    let batch2 = vec![
        Event {
            event_type: EventType::SessionContinuationContextBuilt,
            turn_index: 4,
            payload: nested.clone(),
        },
        Event::workflow_normalization(4, "pass"),
    ];
    store.append_events("sess_ev", &batch1).await.unwrap();
    store
        .append_events("sess_other", &[Event::provider_request_start(0)])
        .await
        .unwrap();
    store.append_events("sess_ev", &batch2).await.unwrap();
    store.append_events("sess_ev", &[]).await.unwrap();

    let stored = store.events("sess_ev").await.unwrap();
    let got: Vec<(String, i64, serde_json::Value)> = stored
        .iter()
        .map(|e| (e.event_type.clone(), e.turn_index, e.payload.clone()))
        .collect();
    let want: Vec<(String, i64, serde_json::Value)> = batch1
        .iter()
        .chain(batch2.iter())
        .map(|e| {
            (
                e.event_type.as_str().to_owned(),
                e.turn_index,
                e.payload.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(stored.windows(2).all(|w| w[0].event_id < w[1].event_id));
    assert!(stored.iter().all(|e| e.session_id == "sess_ev"));
    assert!(
        stored
            .iter()
            .all(|e| e.created_at.ends_with("+00:00") && Timestamp::parse(&e.created_at).is_some())
    );

    // Payloads are compact JSON text, keys in insertion order.
    let pool = raw_of(&dir).await;
    let text: String = sqlx::query_scalar(
        "SELECT payload FROM session_events WHERE event_type = 'user_input' AND session_id = 'sess_ev'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(text, r#"{"task":"task","scope":"scope"}"#);

    // Appending to a missing session fails (foreign key) and writes nothing.
    assert!(store.append_events("sess_missing", &batch1).await.is_err());
    assert_eq!(store.events("sess_missing").await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_store_lists_nothing() {
    let (_dir, store) = fresh().await;
    assert_eq!(store.list_sessions(50, None).await.unwrap(), vec![]);
    assert_eq!(
        store
            .list_sessions(50, Some(SessionStatus::Running))
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn listing_orders_by_updated_at_desc_limits_and_filters() {
    let (dir, store) = fresh().await;
    for id in ["sess_1", "sess_2", "sess_3", "sess_4"] {
        idle_session(&store, id).await;
    }
    let pool = raw_of(&dir).await;
    let stamps = [
        ("sess_1", "2026-04-13T10:00:02+00:00", "completed"),
        ("sess_2", "2026-04-13T10:00:04+00:00", "failed"),
        ("sess_3", "2026-04-13T10:00:01.5+00:00", "completed"),
        ("sess_4", "2026-04-13T10:00:03+00:00", "interrupted"),
    ];
    for (id, updated, status) in stamps {
        sqlx::query("UPDATE sessions SET updated_at = ?1, status = ?2 WHERE session_id = ?3")
            .bind(updated)
            .bind(status)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let item = |id: &str, updated: &str, status: SessionStatus| SessionListItem {
        session_id: id.into(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        status,
        updated_at: Timestamp::parse(updated).unwrap(),
        summary_latest: Some("done".into()),
    };
    let all = vec![
        item("sess_2", "2026-04-13T10:00:04+00:00", SessionStatus::Failed),
        item(
            "sess_4",
            "2026-04-13T10:00:03+00:00",
            SessionStatus::Interrupted,
        ),
        item(
            "sess_1",
            "2026-04-13T10:00:02+00:00",
            SessionStatus::Completed,
        ),
        item(
            "sess_3",
            "2026-04-13T10:00:01.5+00:00",
            SessionStatus::Completed,
        ),
    ];
    assert_eq!(store.list_sessions(50, None).await.unwrap(), all);
    assert_eq!(
        store.list_sessions(2, None).await.unwrap(),
        all[..2].to_vec()
    );
    assert_eq!(store.list_sessions(0, None).await.unwrap(), vec![]);
    assert_eq!(
        store
            .list_sessions(50, Some(SessionStatus::Completed))
            .await
            .unwrap(),
        vec![all[2].clone(), all[3].clone()]
    );
    assert_eq!(
        store
            .list_sessions(1, Some(SessionStatus::Completed))
            .await
            .unwrap(),
        vec![all[2].clone()]
    );
    assert_eq!(
        store
            .list_sessions(50, Some(SessionStatus::Running))
            .await
            .unwrap(),
        vec![]
    );
}

/// `resources/list` pages in SQL: `offset` rows skipped, at most `limit` returned, in the
/// `list_sessions` order; an offset past the end (up to `u32::MAX`) is an empty page.
#[tokio::test]
async fn listing_pages_with_limit_and_offset() {
    let (_dir, store) = fresh().await;
    for i in 0..7 {
        idle_session(&store, &format!("sess_{i}")).await;
    }
    let all = store.list_sessions(50, None).await.unwrap();
    assert_eq!(all.len(), 7);
    let mut walked = Vec::new();
    for offset in (0..7).step_by(3) {
        walked.extend(store.list_sessions_page(offset, 3).await.unwrap());
    }
    assert_eq!(walked, all);
    assert_eq!(
        store.list_sessions_page(6, 3).await.unwrap(),
        all[6..].to_vec()
    );
    assert_eq!(store.list_sessions_page(7, 3).await.unwrap(), vec![]);
    assert_eq!(
        store.list_sessions_page(u32::MAX, u32::MAX).await.unwrap(),
        vec![]
    );
    assert_eq!(store.list_sessions_page(0, 0).await.unwrap(), vec![]);
}

#[tokio::test]
async fn listing_works_over_a_hundred_thousand_rows() {
    let (dir, store) = fresh().await;
    let pool = raw_of(&dir).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
         INSERT INTO sessions (session_id, workflow, profile, status, working_directory, created_at, \
         updated_at, last_activity_at, request_count, turn_count, summary_latest) \
         SELECT printf('sess_%016x', i), 'run_task', 'general', \
                CASE i % 3 WHEN 0 THEN 'completed' WHEN 1 THEN 'failed' ELSE 'interrupted' END, \
                '/w', '2026-01-01T00:00:00+00:00', printf('2026-01-01T00:00:00.%06d+00:00', i), \
                printf('2026-01-01T00:00:00.%06d+00:00', i), 1, 1, printf('summary %d', i) \
         FROM n",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let page = store.list_sessions(50, None).await.unwrap();
    let ids: Vec<String> = page.iter().map(|s| s.session_id.clone()).collect();
    let want: Vec<String> = (0..50)
        .map(|k| format!("sess_{:016x}", 100_000 - k))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(
        page[0].updated_at.to_storage(),
        "2026-01-01T00:00:00.100000+00:00"
    );
    assert_eq!(page[0].summary_latest.as_deref(), Some("summary 100000"));

    let failed = store
        .list_sessions(50, Some(SessionStatus::Failed))
        .await
        .unwrap();
    assert_eq!(failed.len(), 50);
    assert!(failed.iter().all(|s| s.status == SessionStatus::Failed));
    assert_eq!(failed[0].session_id, format!("sess_{:016x}", 100_000));
    assert!(failed.windows(2).all(|w| w[0].updated_at > w[1].updated_at));
}

// ---------------------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------------------

fn artifact<'a>(session_id: &'a str, logical_name: &'a str, body: &'a [u8]) -> NewArtifact<'a> {
    NewArtifact {
        session_id,
        workflow: Workflow::RunTask,
        profile: Profile::General,
        artifact_type: "output",
        logical_name,
        mime_type: "text/plain",
        turn_index: 2,
        producer_tool: "run_task",
        body,
    }
}

#[tokio::test]
async fn an_artifact_is_written_recorded_and_counted() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_art").await;
    let before = get(&store, "sess_art").await;
    let body = b"hello artifact body";
    let reference = store
        .store_artifact(artifact("sess_art", "output.txt", body))
        .await
        .unwrap();
    assert!(reference.artifact_id.starts_with("art_") && reference.artifact_id.len() == 20);
    assert_eq!(
        reference,
        agent_core::ArtifactRef {
            artifact_id: reference.artifact_id.clone(),
            artifact_type: "output".into(),
            logical_name: "output.txt".into(),
            mime_type: "text/plain".into(),
        }
    );

    let root = std::fs::canonicalize(config(dir.path()).artifact_dir).unwrap();
    let file: PathBuf = root
        .join("sess_art")
        .join(format!("{}-output.txt", reference.artifact_id));
    assert_eq!(std::fs::read(&file).unwrap(), body);

    let pool = raw_of(&dir).await;
    let row: ArtifactRow = sqlx::query_as(
        "SELECT artifact_id, session_id, workflow, profile, artifact_type, logical_name, mime_type, \
         path, size_bytes, sha256, created_at, turn_index, producer_tool FROM artifacts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let created_at = row.created_at.clone();
    assert!(
        created_at.ends_with("+00:00") && Timestamp::parse(&created_at).is_some(),
        "{created_at}"
    );
    assert_eq!(
        row,
        ArtifactRow {
            artifact_id: reference.artifact_id.clone(),
            session_id: "sess_art".into(),
            workflow: "run_task".into(),
            profile: "general".into(),
            artifact_type: "output".into(),
            logical_name: "output.txt".into(),
            mime_type: "text/plain".into(),
            path: file.to_str().unwrap().to_owned(),
            size_bytes: body.len() as i64,
            sha256: sha256_of(body),
            created_at,
            turn_index: 2,
            producer_tool: "run_task".into(),
        }
    );

    let after = get(&store, "sess_art").await;
    assert_eq!(
        after,
        SessionRecord {
            artifact_count: 1,
            updated_at: after.updated_at,
            last_activity_at: after.updated_at,
            ..before.clone()
        }
    );
    assert!(after.updated_at >= before.updated_at);
}

#[tokio::test]
async fn an_artifact_is_read_back_by_session_and_id() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_read").await;
    idle_session(&store, "sess_other").await;
    let body = b"the body, read back";
    let reference = store
        .store_artifact(artifact("sess_read", "output.txt", body))
        .await
        .unwrap();
    let id = reference.artifact_id.as_str();

    let (record, read) = store.read_artifact("sess_read", id).await.unwrap().unwrap();
    assert_eq!(read, body);
    assert_eq!(
        store.artifacts("sess_read").await.unwrap(),
        vec![record.clone()]
    );
    assert_eq!(
        (
            record.artifact_id.as_str(),
            record.mime_type.as_str(),
            record.size_bytes
        ),
        (id, "text/plain", body.len() as i64)
    );
    assert_eq!(record.sha256, sha256_of(body));
    // Another session's artifact, or an unknown id, is not found.
    assert_eq!(store.read_artifact("sess_other", id).await.unwrap(), None);
    assert_eq!(
        store
            .read_artifact("sess_read", "art_missing")
            .await
            .unwrap(),
        None
    );

    // A body that grew on disk past the artifact limit is refused, not read whole.
    let root = std::fs::canonicalize(config(dir.path()).artifact_dir).unwrap();
    let file = root.join("sess_read").join(format!("{id}-output.txt"));
    let limit = usize::try_from(MAX_ARTIFACT).unwrap();
    std::fs::write(&file, vec![b'x'; limit + 1]).unwrap();
    let err = store.read_artifact("sess_read", id).await.unwrap_err();
    assert!(
        err.message.contains("larger than the artifact limit"),
        "{}",
        err.message
    );
    std::fs::write(&file, vec![b'x'; limit]).unwrap();
    let (_, read) = store.read_artifact("sess_read", id).await.unwrap().unwrap();
    assert_eq!(read.len(), limit);

    // A body that has gone from disk is an error naming the artifact and its file.
    std::fs::remove_file(&file).unwrap();
    let err = store.read_artifact("sess_read", id).await.unwrap_err();
    assert!(
        err.message.starts_with(&format!(
            "artifact {id} could not be read from {}: ",
            file.display()
        )),
        "{}",
        err.message
    );
}

/// An `artifacts` row as stored.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct ArtifactRow {
    artifact_id: String,
    session_id: String,
    workflow: String,
    profile: String,
    artifact_type: String,
    logical_name: String,
    mime_type: String,
    path: String,
    size_bytes: i64,
    sha256: String,
    created_at: String,
    turn_index: i64,
    producer_tool: String,
}

/// The lowercase hex SHA-256 of `body` (the known-digest test pins the format).
fn sha256_of(body: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(body))
}

#[tokio::test]
async fn artifact_sha256_matches_a_known_digest() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_sha").await;
    store
        .store_artifact(artifact("sess_sha", "abc", b"abc"))
        .await
        .unwrap();
    let pool = raw_of(&dir).await;
    let sha: String = sqlx::query_scalar("SELECT sha256 FROM artifacts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        sha,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test]
async fn an_oversized_artifact_is_refused_with_the_reference_message() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_big").await;
    let at_cap = vec![b'x'; MAX_ARTIFACT as usize];
    store
        .store_artifact(artifact("sess_big", "ok.txt", &at_cap))
        .await
        .unwrap();
    let body = vec![b'x'; MAX_ARTIFACT as usize + 1];
    let err = store
        .store_artifact(artifact("sess_big", "big.txt", &body))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "Artifact exceeds max size: {} > {MAX_ARTIFACT}",
            MAX_ARTIFACT + 1
        )
    );
    assert_eq!(get(&store, "sess_big").await.artifact_count, 1);
    let dir_entries = std::fs::read_dir(config(dir.path()).artifact_dir.join("sess_big"))
        .unwrap()
        .count();
    assert_eq!(dir_entries, 1);
}

#[tokio::test]
async fn an_artifact_name_is_made_safe() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_safe").await;
    let reference = store
        .store_artifact(artifact("sess_safe", "a/../b", b"body"))
        .await
        .unwrap();
    assert_eq!(reference.logical_name, "a/../b");
    let session_dir = config(dir.path()).artifact_dir.join("sess_safe");
    let names: Vec<String> = std::fs::read_dir(&session_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [format!("{}-a___b", reference.artifact_id)]);
}

#[tokio::test]
async fn an_artifact_for_a_missing_session_fails_and_leaves_no_file() {
    let (dir, store) = fresh().await;
    assert!(
        store
            .store_artifact(artifact("sess_ghost", "output.txt", b"x"))
            .await
            .is_err()
    );
    let session_dir = config(dir.path()).artifact_dir.join("sess_ghost");
    let files = std::fs::read_dir(&session_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0);
}

// ---------------------------------------------------------------------------------------------
// Recovery and durability
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn recovery_interrupts_running_sessions_only() {
    let (dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_run1", "exec_1"), &[])
        .await
        .unwrap();
    store
        .begin_session(&new_session("sess_run2", "exec_2"), &[])
        .await
        .unwrap();
    idle_session(&store, "sess_done").await;
    idle_session(&store, "sess_fail").await;
    idle_session(&store, "sess_created").await;
    let pool = raw_of(&dir).await;
    // Left by a process that died: one lease expired, one session with no holder at all.
    set_lock(
        &pool,
        "sess_run1",
        Some("exec_1"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    set_lock(&pool, "sess_run2", None, None).await;
    set_status(&pool, "sess_fail", "failed").await;
    set_status(&pool, "sess_created", "created").await;
    set_lock(
        &pool,
        "sess_done",
        Some("exec_old"),
        Some("2999-01-01T00:00:00+00:00"),
    )
    .await;

    let untouched_before = [
        get(&store, "sess_done").await,
        get(&store, "sess_fail").await,
        get(&store, "sess_created").await,
    ];
    let run_before = get(&store, "sess_run1").await;
    let events_before = store.events("sess_run1").await.unwrap().len();

    assert_eq!(store.recover_interrupted().await.unwrap(), 2);

    let run_after = get(&store, "sess_run1").await;
    assert_eq!(
        run_after,
        SessionRecord {
            status: SessionStatus::Interrupted,
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
            updated_at: run_after.updated_at,
            last_activity_at: run_after.updated_at,
            ..run_before.clone()
        }
    );
    assert!(run_after.updated_at >= run_before.updated_at);
    assert_eq!(
        get(&store, "sess_run2").await.status,
        SessionStatus::Interrupted
    );
    let untouched_after = [
        get(&store, "sess_done").await,
        get(&store, "sess_fail").await,
        get(&store, "sess_created").await,
    ];
    assert_eq!(untouched_after, untouched_before);
    assert_eq!(
        store.events("sess_run1").await.unwrap().len(),
        events_before
    );
    assert_eq!(store.recover_interrupted().await.unwrap(), 0);
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let store = SqliteStore::open(cfg.clone()).await.unwrap();
    store
        .begin_session(
            &new_session("sess_keep", "exec_1"),
            &[Event::user_input_task("persist")],
        )
        .await
        .unwrap();
    idle_session(&store, "sess_idle").await;
    store
        .store_artifact(artifact("sess_idle", "output.txt", b"kept"))
        .await
        .unwrap();
    // The process "dies": its lease runs out.
    set_lock(
        &raw(&cfg.db_path).await,
        "sess_keep",
        Some("exec_1"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    let record = get(&store, "sess_keep").await;
    let idle = get(&store, "sess_idle").await;
    let events = store.events("sess_keep").await.unwrap();
    store.close().await;
    drop(store);

    let reopened = SqliteStore::open(cfg).await.unwrap();
    assert_eq!(get(&reopened, "sess_keep").await, record);
    assert_eq!(get(&reopened, "sess_idle").await, idle);
    assert_eq!(reopened.events("sess_keep").await.unwrap(), events);
    // A restart finds the session still running under an expired lease and interrupts it.
    assert_eq!(reopened.recover_interrupted().await.unwrap(), 1);
    assert_eq!(
        get(&reopened, "sess_keep").await.status,
        SessionStatus::Interrupted
    );
}

/// `get_session` reads on the caller's thread when it can (`reader.rs`): reads racing each
/// other and a writer all see a committed state, a read during another connection's open
/// write transaction sees the last committed row without waiting, and a committed write is
/// seen by the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reads_see_committed_state_under_concurrency() {
    let (dir, store) = fresh().await;
    idle_session(&store, "sess_fastread01").await;
    let pool = raw_of(&dir).await;

    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        readers.spawn(async move {
            let mut seen = Vec::with_capacity(50);
            for _ in 0..50 {
                seen.push(get(&store, "sess_fastread01").await.status);
            }
            seen
        });
    }
    for status in ["failed", "completed", "interrupted", "completed"] {
        set_status(&pool, "sess_fastread01", status).await;
    }
    while let Some(seen) = readers.join_next().await {
        for status in seen.unwrap() {
            assert!(
                matches!(
                    status,
                    SessionStatus::Completed | SessionStatus::Failed | SessionStatus::Interrupted
                ),
                "unexpected status {status:?}"
            );
        }
    }
    assert_eq!(
        get(&store, "sess_fastread01").await.status,
        SessionStatus::Completed
    );

    // An uncommitted write elsewhere neither blocks the read nor shows through it.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE sessions SET status = 'failed' WHERE session_id = 'sess_fastread01'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let during = tokio::time::timeout(Duration::from_secs(1), store.get_session("sess_fastread01"))
        .await
        .expect("a read must not wait for another connection's write")
        .unwrap()
        .unwrap();
    assert_eq!(during.status, SessionStatus::Completed);
    tx.commit().await.unwrap();
    assert_eq!(
        get(&store, "sess_fastread01").await.status,
        SessionStatus::Failed
    );

    // A missing id is still a plain `None` (the pool confirms it).
    assert!(
        store
            .get_session("sess_nosuchone0")
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Several processes on one state directory (issue #14)
// ---------------------------------------------------------------------------------------------

/// Stores opened at the same moment on a new state directory (each with its own pool, as
/// separate processes would) all succeed: the schema is applied once, under the database's
/// write lock, and the others find it applied (no `UNIQUE constraint failed:
/// _sqlx_migrations.version`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opened_together_on_a_new_directory_all_succeed() {
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let mut opens = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let cfg = cfg.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            opens.spawn(async move {
                barrier.wait().await;
                SqliteStore::open(cfg).await
            });
        }
        let mut stores = Vec::new();
        while let Some(opened) = opens.join_next().await {
            match opened.unwrap() {
                Ok(store) => stores.push(store),
                Err(e) => panic!("round {round}: an open failed: {e}"),
            }
        }
        for store in &stores {
            assert_eq!(store.schema_version().await.unwrap(), 1);
        }
        let pool = raw(&cfg.db_path).await;
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            applied,
            vec![(1,), (2,), (3,), (4,), (5,), (6,), (7,)],
            "round {round}"
        );
        pool.close().await;
        for store in stores {
            store.close().await;
        }
    }
}

/// Startup recovery in a second process leaves the first one's live runs alone: only a
/// `running` session whose lease expired (or that no one holds) is interrupted.
#[tokio::test]
async fn recovery_in_a_second_store_leaves_live_leases_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let a = SqliteStore::open(cfg.clone()).await.unwrap();
    a.begin_session(&new_session("sess_live", "exec_aaaa0001"), &[])
        .await
        .unwrap();
    a.begin_session(&new_session("sess_dead", "exec_dead0001"), &[])
        .await
        .unwrap();
    a.begin_session(&new_session("sess_free", "exec_free0001"), &[])
        .await
        .unwrap();
    let pool = raw(&cfg.db_path).await;
    set_lock(
        &pool,
        "sess_dead",
        Some("exec_dead0001"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    set_lock(&pool, "sess_free", None, None).await;
    let live_before = get(&a, "sess_live").await;

    let b = SqliteStore::open(cfg.clone()).await.unwrap();
    assert_eq!(b.recover_interrupted().await.unwrap(), 2);

    let live = get(&b, "sess_live").await;
    assert_eq!(live, live_before, "a live lease is untouched");
    assert_eq!(live.status, SessionStatus::Running);
    assert_eq!(live.locked_by.as_deref(), Some("exec_aaaa0001"));
    for id in ["sess_dead", "sess_free"] {
        let gone = get(&b, id).await;
        assert_eq!(gone.status, SessionStatus::Interrupted, "{id}");
        assert_eq!(gone.locked_by, None, "{id}");
        assert_eq!(gone.lock_expires_at, None, "{id}");
    }
    // A's run goes on and ends normally under its lock.
    assert!(
        a.renew_lock("sess_live", &lease("exec_aaaa0001", 1), TTL)
            .await
            .unwrap()
    );
    a.finish_execution(
        "sess_live",
        &lease("exec_aaaa0001", 1),
        &Finish::without_output(SessionStatus::Completed, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(get(&b, "sess_live").await.status, SessionStatus::Completed);
}

/// A kept output is never overwritten: a second execution that finishes at a turn whose output
/// is already kept fails, changing nothing (status, events, lock, output).
#[tokio::test]
async fn a_kept_output_is_never_overwritten() {
    let (_dir, store) = fresh().await;
    store
        .begin_session(&new_session("sess_twice", "exec_first001"), &[])
        .await
        .unwrap();
    let finish = |text: &str| Finish {
        status: SessionStatus::Completed,
        turn_count: Some(1),
        summary_latest: Some(text.to_owned()),
        provider_session_id: None,
        output_text: Some(text.to_owned()),
        events: vec![Event::provider_response_summary(1, text, None)],
        result: None,
        usage: None,
    };
    store
        .finish_execution("sess_twice", &lease("exec_first001", 1), &finish("first"))
        .await
        .unwrap();
    // A second run that started from the same turn count (e.g. after a stale takeover).
    acquired(
        store
            .acquire_lock("sess_twice", "exec_second01", TTL)
            .await
            .unwrap(),
    );
    store.begin_execution("sess_twice", &[]).await.unwrap();
    let before = get(&store, "sess_twice").await;
    let events_before = store.events("sess_twice").await.unwrap();

    let err = store
        .finish_execution("sess_twice", &lease("exec_second01", 2), &finish("second"))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("turn 1") && err.message.contains("sess_twice"),
        "{}",
        err.message
    );
    assert_eq!(
        store.outputs("sess_twice").await.unwrap(),
        vec![(1, "first".to_owned())]
    );
    assert_eq!(get(&store, "sess_twice").await, before, "nothing applied");
    assert_eq!(store.events("sess_twice").await.unwrap(), events_before);
}

async fn cancel_columns(pool: &SqlitePool, id: &str) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT cancel_requested_at, cancel_reason FROM sessions WHERE session_id = ?1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Issue #14, fencing generation: every acquisition (creation, continuation, stale takeover)
/// is a new generation, and a renewal, final write or interrupt that presents an older one
/// fails and changes nothing, even under the same owner token.
#[tokio::test]
async fn a_stale_generation_can_neither_renew_nor_finish_nor_interrupt() {
    let (dir, store) = fresh().await;
    let created = store
        .begin_session(&new_session("sess_g", "exec_same0000"), &[])
        .await
        .unwrap();
    assert_eq!(created.lock_generation, 1);
    assert_eq!(get(&store, "sess_g").await.lock_generation, 1);
    // The lease expires; a stale takeover under the very same owner token.
    let pool = raw_of(&dir).await;
    set_lock(
        &pool,
        "sess_g",
        Some("exec_same0000"),
        Some("2000-01-01T00:00:00+00:00"),
    )
    .await;
    let taken = acquired(
        store
            .acquire_lock("sess_g", "exec_same0000", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(taken.lock_generation, 2);
    let before = get(&store, "sess_g").await;
    let events_before = store.events("sess_g").await.unwrap();

    let stale = lease("exec_same0000", 1);
    assert!(!store.renew_lock("sess_g", &stale, TTL).await.unwrap());
    let finish = Finish {
        status: SessionStatus::Completed,
        turn_count: Some(1),
        summary_latest: Some("stale".to_owned()),
        provider_session_id: None,
        output_text: Some("stale".to_owned()),
        events: vec![Event::provider_response_summary(1, "stale", None)],
        result: None,
        usage: None,
    };
    let err = store
        .finish_execution("sess_g", &stale, &finish)
        .await
        .unwrap_err();
    assert!(err.is_not_holder(), "{err:?}");
    assert!(
        !store
            .interrupt_execution("sess_g", &stale, "lease lost")
            .await
            .unwrap()
    );
    assert_eq!(get(&store, "sess_g").await, before, "nothing changed");
    assert_eq!(store.events("sess_g").await.unwrap(), events_before);
    assert!(store.outputs("sess_g").await.unwrap().is_empty());

    // The current generation renews and finishes.
    let current = lease("exec_same0000", 2);
    assert!(store.renew_lock("sess_g", &current, TTL).await.unwrap());
    store
        .finish_execution("sess_g", &current, &finish)
        .await
        .unwrap();
    let done = get(&store, "sess_g").await;
    assert_eq!(
        (done.status, done.lock_generation),
        (SessionStatus::Completed, 2)
    );
    assert_eq!(done.locked_by, None);
}

/// Issue #14, cancellation across processes: a cancel request is recorded only for a
/// `running` session under a lock, is seen only by that lock's owner and generation, keeps
/// its first reason (bounded), and is dropped when the execution ends or a new one starts.
#[tokio::test]
async fn cancel_requests_reach_only_the_running_holder_and_end_with_it() {
    let (dir, store) = fresh().await;
    let pool = raw_of(&dir).await;
    // Not running, or missing: nothing is recorded.
    idle_session(&store, "sess_idle").await;
    assert!(!store.request_cancel("sess_idle", "why").await.unwrap());
    assert_eq!(cancel_columns(&pool, "sess_idle").await, (None, None));
    assert!(!store.request_cancel("sess_missing", "why").await.unwrap());
    // Running without a lock (the sweeper's to take): nothing either.
    store
        .begin_session(&new_session("sess_free", "exec_free0000"), &[])
        .await
        .unwrap();
    set_lock(&pool, "sess_free", None, None).await;
    assert!(!store.request_cancel("sess_free", "why").await.unwrap());
    assert_eq!(cancel_columns(&pool, "sess_free").await, (None, None));

    store
        .begin_session(&new_session("sess_c", "exec_c0000000"), &[])
        .await
        .unwrap();
    let holder = lease("exec_c0000000", 1);
    assert_eq!(
        store.cancel_requested("sess_c", &holder).await.unwrap(),
        None
    );
    assert!(store.request_cancel("sess_c", "stop it").await.unwrap());
    assert!(
        store
            .request_cancel("sess_c", "a later reason")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .cancel_requested("sess_c", &holder)
            .await
            .unwrap()
            .as_deref(),
        Some("stop it"),
        "the first reason stays"
    );
    let before = get(&store, "sess_c").await;
    assert_eq!(
        before.status,
        SessionStatus::Running,
        "a request changes no status"
    );
    for other in [lease("exec_c0000000", 2), lease("exec_other000", 1)] {
        assert_eq!(
            store.cancel_requested("sess_c", &other).await.unwrap(),
            None
        );
    }
    // The end of the execution drops it.
    store
        .finish_execution(
            "sess_c",
            &holder,
            &Finish::without_output(SessionStatus::Cancelled, vec![]),
        )
        .await
        .unwrap();
    assert_eq!(cancel_columns(&pool, "sess_c").await, (None, None));

    // A request left on a row (e.g. written just before the lease was lost) never reaches the
    // next execution: a new acquisition starts without one.
    sqlx::query(
        "UPDATE sessions SET status = 'running', cancel_requested_at = '2026-01-01T00:00:00+00:00', \
         cancel_reason = 'old' WHERE session_id = 'sess_c'",
    )
    .execute(&pool)
    .await
    .unwrap();
    set_status(&pool, "sess_c", "completed").await;
    let next = acquired(
        store
            .acquire_lock("sess_c", "cont_next0000", TTL)
            .await
            .unwrap(),
    );
    let next = Lease::of("cont_next0000", &next);
    assert_eq!(next.generation, 2);
    assert_eq!(store.cancel_requested("sess_c", &next).await.unwrap(), None);
    assert_eq!(cancel_columns(&pool, "sess_c").await, (None, None));

    // Interrupting drops it too; a reason is bounded (cut at a character boundary).
    store
        .begin_session(&new_session("sess_i", "exec_i0000000"), &[])
        .await
        .unwrap();
    let long = "é".repeat(agent_core::MAX_CANCEL_REASON_BYTES);
    assert!(store.request_cancel("sess_i", &long).await.unwrap());
    let kept = store
        .cancel_requested("sess_i", &lease("exec_i0000000", 1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        kept.len() <= agent_core::MAX_CANCEL_REASON_BYTES,
        "{}",
        kept.len()
    );
    assert!(kept.len() >= agent_core::MAX_CANCEL_REASON_BYTES - 1);
    assert!(kept.chars().all(|c| c == 'é'));
    assert!(
        store
            .interrupt_execution("sess_i", &lease("exec_i0000000", 1), "lease lost")
            .await
            .unwrap()
    );
    assert_eq!(cancel_columns(&pool, "sess_i").await, (None, None));
}
