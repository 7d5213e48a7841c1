//! The store contract: every behaviour of `agent_core::SessionStore` that the engine relies on,
//! run against both implementations. `contract!` turns each `async fn <behaviour>(kind: Kind)`
//! below into `contract::on_sqlite::<behaviour>` and `contract::on_postgres::<behaviour>`.
//!
//! Each SQLite test gets its own temporary directory, each PostgreSQL test its own schema
//! (`agent_testkit::postgres::fresh_schema`), so they all run in parallel. Without a
//! PostgreSQL the PostgreSQL half is skipped with a `SKIPPED` line, or fails under
//! `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1` (CI).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::{
    Event, EventType, Finish, Lease, LockOutcome, MAX_CANCEL_REASON_BYTES, NewArtifact, NewSession,
    Profile, SessionRecord, SessionStatus, SessionStore, StoredEvent, Timestamp, Usage, Workflow,
};
use agent_store::{PostgresConfig, PostgresStore, SqliteStore, StoreConfig};
use agent_testkit::postgres::FreshSchema;
use serde_json::json;
use sqlx::{PgPool, SqlitePool};
use tempfile::TempDir;

const TTL: Duration = Duration::from_secs(300);
const MAX_ARTIFACT: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// Where a store's data lives: a fresh temporary directory, or a fresh schema.
enum Target {
    Sqlite(TempDir),
    Postgres(FreshSchema),
}

impl Target {
    /// `None` when the kind cannot be had here (no PostgreSQL answers and none is required).
    async fn new(kind: Kind) -> Option<Self> {
        match kind {
            Kind::Sqlite => Some(Self::Sqlite(tempfile::tempdir().unwrap())),
            Kind::Postgres => agent_testkit::postgres::fresh_schema()
                .await
                .map(Self::Postgres),
        }
    }

    fn sqlite_config(dir: &TempDir) -> StoreConfig {
        StoreConfig {
            db_path: dir.path().join("state").join("claude-agent-mcp.db"),
            artifact_dir: dir.path().join("state").join("artifacts"),
            max_artifact_bytes: MAX_ARTIFACT,
        }
    }

    /// Opens a store (another one each call, all on the same data).
    async fn open(&self) -> Arc<dyn SessionStore> {
        match self {
            Self::Sqlite(dir) => {
                Arc::new(SqliteStore::open(Self::sqlite_config(dir)).await.unwrap())
            }
            Self::Postgres(schema) => Arc::new(
                PostgresStore::open(PostgresConfig::new(schema.url(), MAX_ARTIFACT))
                    .await
                    .unwrap(),
            ),
        }
    }

    /// `session_counts` of a concrete store on this data (an inherent method, not the port's).
    async fn session_counts(&self) -> Vec<(String, i64)> {
        let mut counts = match self {
            Self::Sqlite(dir) => SqliteStore::open(Self::sqlite_config(dir))
                .await
                .unwrap()
                .session_counts()
                .await
                .unwrap(),
            Self::Postgres(schema) => {
                PostgresStore::open(PostgresConfig::new(schema.url(), MAX_ARTIFACT))
                    .await
                    .unwrap()
                    .session_counts()
                    .await
                    .unwrap()
            }
        };
        counts.sort();
        counts
    }

    async fn raw(&self) -> Raw {
        match self {
            Self::Sqlite(dir) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(Self::sqlite_config(dir).db_path)
                    .busy_timeout(Duration::from_secs(5));
                Raw::Sqlite(SqlitePool::connect_with(options).await.unwrap())
            }
            Self::Postgres(schema) => Raw::Postgres(PgPool::connect(schema.url()).await.unwrap()),
        }
    }
}

/// A second connection to a store's data, to edit rows behind its back.
enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An instant `secs` from now (negative: in the past), for a raw edit.
fn at(secs: i64) -> Timestamp {
    let now = Timestamp::now().as_datetime();
    Timestamp::from_datetime(now + chrono::Duration::seconds(secs))
}

impl Raw {
    /// Sets the lock columns: `expires` seconds from now (negative: expired), or no expiry.
    async fn set_lock(&self, id: &str, owner: Option<&str>, expires: Option<i64>) {
        let expires = expires.map(at);
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("UPDATE sessions SET locked_by = ?1, lock_expires_at = ?2 WHERE session_id = ?3")
                    .bind(owner)
                    .bind(expires.map(|t| t.to_storage()))
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Self::Postgres(pool) => {
                sqlx::query("UPDATE sessions SET locked_by = $1, lock_expires_at = $2 WHERE session_id = $3")
                    .bind(owner)
                    .bind(expires.map(|t| t.as_datetime()))
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// `updated_at` `secs` from now.
    async fn set_updated(&self, id: &str, secs: i64) {
        let when = at(secs);
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("UPDATE sessions SET updated_at = ?1 WHERE session_id = ?2")
                    .bind(when.to_storage())
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Self::Postgres(pool) => {
                sqlx::query("UPDATE sessions SET updated_at = $1 WHERE session_id = $2")
                    .bind(when.as_datetime())
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Another execution takes the lock under the holder: a new owner and generation, as a
    /// process that found the lease expired would write it.
    async fn steal(&self, id: &str, thief: &str) {
        let sql_sqlite = "UPDATE sessions SET locked_by = ?1, lock_generation = lock_generation + 1 WHERE session_id = ?2";
        let sql_pg = "UPDATE sessions SET locked_by = $1, lock_generation = lock_generation + 1 WHERE session_id = $2";
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(sql_sqlite)
                    .bind(thief)
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Self::Postgres(pool) => {
                sqlx::query(sql_pg)
                    .bind(thief)
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Whether a cancel request is recorded, and its reason.
    async fn cancel_columns(&self, id: &str) -> (bool, Option<String>) {
        match self {
            Self::Sqlite(pool) => sqlx::query_as(
                "SELECT cancel_requested_at IS NOT NULL, cancel_reason FROM sessions WHERE session_id = ?1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
            Self::Postgres(pool) => sqlx::query_as(
                "SELECT cancel_requested_at IS NOT NULL, cancel_reason FROM sessions WHERE session_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
        }
    }

    /// A cancel request left on a completed row (as if written just before a lease was lost).
    async fn leave_cancel_request(&self, id: &str) {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("UPDATE sessions SET cancel_requested_at = '2026-01-01T00:00:00+00:00', cancel_reason = 'old' WHERE session_id = ?1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Self::Postgres(pool) => {
                sqlx::query("UPDATE sessions SET cancel_requested_at = now(), cancel_reason = 'old' WHERE session_id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Makes a stored artifact body `len` bytes long behind the store's back.
    async fn grow_artifact(&self, artifact_id: &str, len: usize) {
        match self {
            Self::Sqlite(pool) => {
                let path: String =
                    sqlx::query_scalar("SELECT path FROM artifacts WHERE artifact_id = ?1")
                        .bind(artifact_id)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                std::fs::write(path, vec![b'x'; len]).unwrap();
            }
            Self::Postgres(pool) => {
                sqlx::query("UPDATE artifacts SET body = $1 WHERE artifact_id = $2")
                    .bind(vec![b'x'; len])
                    .bind(artifact_id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }
}

/// A store on fresh data, the data's location and a raw connection to it.
struct Harness {
    store: Arc<dyn SessionStore>,
    raw: Raw,
    target: Target,
}

impl Harness {
    async fn new(kind: Kind) -> Option<Self> {
        let target = Target::new(kind).await?;
        let store = target.open().await;
        let raw = target.raw().await;
        Some(Self { store, raw, target })
    }

    async fn get(&self, id: &str) -> SessionRecord {
        self.store.get_session(id).await.unwrap().unwrap()
    }

    /// Creates a session and leaves it completed and unlocked.
    async fn idle_session(&self, id: &str) {
        let owner = format!("exec_setup_{id}");
        let record = self
            .store
            .begin_session(&new_session(id, &owner), &[])
            .await
            .unwrap();
        self.store
            .finish_execution(
                id,
                &Lease::of(owner, &record),
                &Finish::without_output(SessionStatus::Completed, vec![]),
            )
            .await
            .unwrap();
    }
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

fn ev(event_type: EventType, turn_index: i64, payload: serde_json::Value) -> Event {
    Event {
        event_type,
        turn_index,
        payload,
    }
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

fn finish_with_output(turn: i64, text: &str) -> Finish {
    Finish {
        status: SessionStatus::Completed,
        turn_count: Some(turn),
        summary_latest: Some(format!("summary {turn}")),
        provider_session_id: Some("prov_1".to_owned()),
        output_text: Some(text.to_owned()),
        events: vec![Event::provider_response_summary(turn, text, None)],
        result: None,
        usage: None,
    }
}

fn artifact<'a>(session_id: &'a str, logical_name: &'a str, body: &'a [u8]) -> NewArtifact<'a> {
    NewArtifact {
        session_id,
        workflow: Workflow::RunTask,
        profile: Profile::General,
        artifact_type: "output",
        logical_name,
        mime_type: "text/plain",
        turn_index: 1,
        producer_tool: "agent_run_task",
        body,
    }
}

/// The storage form: `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`.
fn assert_storage_form(text: &str) {
    assert!(text.ends_with("+00:00"), "{text}");
    assert_eq!(Timestamp::parse(text).unwrap().to_storage(), text);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await;
                }
            )*
        }
    };
}

contract!(
    a_new_session_is_running_locked_and_reads_back,
    an_unknown_session_is_none,
    acquiring_a_free_lock_is_a_new_generation_and_keeps_updated_at,
    an_unexpired_lock_of_another_owner_conflicts,
    an_expired_lock_is_taken_over,
    a_lock_with_null_expiry_counts_as_held,
    release_by_a_non_owner_is_a_no_op_and_by_the_owner_clears_the_lock,
    acquiring_a_missing_session_is_not_found,
    concurrent_acquisitions_from_several_stores_have_exactly_one_winner,
    begin_execution_sets_running_counts_and_appends,
    finish_execution_applies_everything_and_releases_the_lock,
    finish_by_a_non_holder_fails_with_not_holder_and_changes_nothing,
    a_stolen_lease_can_neither_renew_nor_finish_nor_interrupt,
    a_stale_generation_can_neither_renew_nor_finish_nor_interrupt,
    a_kept_output_is_never_overwritten,
    interrupt_execution_applies_only_to_the_holders_running_session,
    events_come_back_in_order_with_their_payloads_byte_for_byte,
    listing_orders_limits_filters_and_pages,
    sessions_are_counted_by_status,
    an_artifact_is_stored_counted_and_read_back_by_any_store,
    an_oversized_artifact_is_refused_and_a_grown_one_is_not_read,
    an_artifact_for_a_missing_session_fails,
    the_sweeper_interrupts_only_expired_leases_once_across_stores,
    recovery_interrupts_only_sessions_without_a_live_lease,
    cancel_requests_reach_only_the_running_holder_and_end_with_it,
    a_cancel_from_another_store_reaches_the_holder,
    three_stores_opened_together_on_new_data_all_serve,
    data_survives_closing_and_reopening,
    a_kept_result_is_replaced_only_by_the_same_or_a_later_execution,
    the_final_write_keeps_its_result_for_the_executions_request_count,
    a_fork_copies_the_history_through_its_turn_and_writes_one_event_to_the_parent,
    a_fork_of_a_missing_parent_or_onto_a_taken_id_writes_nothing,
    finished_executions_add_their_usage_to_the_session,
);

/// `agent_get_session`'s `usage`: each finish adds its execution's usage (cache counts and cost
/// only once one was reported); a refused finish adds nothing; the totals survive a reopen.
async fn finished_executions_add_their_usage_to_the_session(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(&new_session("sess_use", "exec_u1"), &[])
        .await
        .unwrap();
    assert_eq!(record.usage, Usage::default());
    let first = Usage {
        input_tokens: 100,
        output_tokens: 10,
        ..Usage::default()
    };
    h.store
        .finish_execution(
            "sess_use",
            &Lease::of("exec_u1", &record),
            &Finish {
                usage: Some(first.clone()),
                ..finish_with_output(1, "one")
            },
        )
        .await
        .unwrap();
    assert_eq!(h.get("sess_use").await.usage, first);
    let second = Usage {
        input_tokens: 5,
        output_tokens: 1,
        cache_creation_input_tokens: Some(7),
        cache_read_input_tokens: Some(70),
        total_cost_usd: Some(0.25),
    };
    let again = acquired(
        h.store
            .acquire_lock("sess_use", "exec_u2", TTL)
            .await
            .unwrap(),
    );
    // A stale lease's finish is refused and adds nothing.
    let stale = h
        .store
        .finish_execution(
            "sess_use",
            &lease("exec_u1", record.lock_generation),
            &Finish {
                usage: Some(second.clone()),
                ..finish_with_output(2, "stale")
            },
        )
        .await;
    assert!(stale.is_err());
    h.store
        .finish_execution(
            "sess_use",
            &Lease::of("exec_u2", &again),
            &Finish {
                usage: Some(second.clone()),
                ..finish_with_output(2, "two")
            },
        )
        .await
        .unwrap();
    let want = Usage {
        input_tokens: 105,
        output_tokens: 11,
        cache_creation_input_tokens: Some(7),
        cache_read_input_tokens: Some(70),
        total_cost_usd: Some(0.25),
    };
    assert_eq!(h.get("sess_use").await.usage, want);
    // A finish without usage keeps the totals; another store reads the same.
    let third = acquired(
        h.store
            .acquire_lock("sess_use", "exec_u3", TTL)
            .await
            .unwrap(),
    );
    h.store
        .finish_execution(
            "sess_use",
            &Lease::of("exec_u3", &third),
            &Finish::without_output(SessionStatus::Failed, vec![]),
        )
        .await
        .unwrap();
    let other = h.target.open().await;
    assert_eq!(
        other.get_session("sess_use").await.unwrap().unwrap().usage,
        want
    );
    // A provider's absurd counts and cost are capped per execution: the sums never overflow
    // and the row stays readable.
    let absurd = Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cache_creation_input_tokens: Some(u64::MAX),
        cache_read_input_tokens: Some(u64::MAX),
        total_cost_usd: Some(1e308),
    };
    for n in 0..3 {
        let owner = format!("exec_big{n}");
        let held = acquired(h.store.acquire_lock("sess_use", &owner, TTL).await.unwrap());
        h.store
            .finish_execution(
                "sess_use",
                &Lease::of(owner, &held),
                &Finish {
                    usage: Some(absurd.clone()),
                    ..Finish::without_output(SessionStatus::Completed, vec![])
                },
            )
            .await
            .unwrap();
    }
    let big = h.get("sess_use").await.usage;
    assert_eq!(
        big.input_tokens,
        105 + 3 * agent_core::spend::MAX_TOTAL_TOKENS
    );
    assert_eq!(
        big.cache_read_input_tokens,
        Some(70 + 3 * agent_core::spend::MAX_TOTAL_TOKENS)
    );
    assert!(
        big.total_cost_usd
            .is_some_and(|c| c.is_finite() && c <= 3e9 + 1.0),
        "{big:?}"
    );
}

/// `agent_fork_session` (`SessionStore::fork_session`): a new session with the parent's
/// workflow, profile and working directory, completed at the fork's turn with no execution,
/// provider session or lock; the parent's events through the turn's end and its outputs up to
/// the turn copied (type, turn, payload and time as they were); the parent's row (a running
/// one, lock included) untouched, one event appended to its log; readable by another store.
async fn a_fork_copies_the_history_through_its_turn_and_writes_one_event_to_the_parent(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let first = h
        .store
        .begin_session(
            &new_session("sess_parent", "exec_p"),
            &[ev(
                EventType::UserInput,
                0,
                json!({"task": "t", "é": [1, {"z": 2, "a": 1}]}),
            )],
        )
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_parent",
            &Lease::of("exec_p", &first),
            &finish_with_output(1, "one"),
        )
        .await
        .unwrap();
    let second = acquired(
        h.store
            .acquire_lock("sess_parent", "cont_p2", TTL)
            .await
            .unwrap(),
    );
    h.store
        .begin_execution(
            "sess_parent",
            &[ev(EventType::UserInput, 1, json!({"message": "m2"}))],
        )
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_parent",
            &Lease::of("cont_p2", &second),
            &finish_with_output(2, "two"),
        )
        .await
        .unwrap();
    // The parent is running a third execution while it is forked.
    acquired(
        h.store
            .acquire_lock("sess_parent", "cont_p3", TTL)
            .await
            .unwrap(),
    );
    h.store
        .begin_execution(
            "sess_parent",
            &[ev(EventType::UserInput, 2, json!({"message": "m3"}))],
        )
        .await
        .unwrap();
    let parent_before = h.get("sess_parent").await;
    let parent_events = h.store.events("sess_parent").await.unwrap();
    let end_of_turn_one = parent_events
        .iter()
        .find(|e| e.event_type == "provider_response_summary" && e.turn_index == 1)
        .unwrap();
    let fork = agent_core::ForkSession {
        parent_session_id: "sess_parent".to_owned(),
        session_id: "sess_child".to_owned(),
        at_turn: 1,
        through_event_id: end_of_turn_one.event_id,
        summary_latest: Some("summary 1".to_owned()),
        child_event: Event::session_forked("sess_parent", 1),
        parent_event: Event::session_fork_created("sess_child", 1),
    };
    let agent_core::ForkOutcome::Forked(created) = h.store.fork_session(&fork).await.unwrap()
    else {
        panic!("the parent exists");
    };
    let child = h.get("sess_child").await;
    assert_eq!(*created, child, "the returned row equals a read");
    assert_eq!(
        (
            child.workflow,
            child.profile,
            child.provider.as_str(),
            child.working_directory.as_deref(),
            child.status,
        ),
        (
            parent_before.workflow,
            parent_before.profile,
            parent_before.provider.as_str(),
            parent_before.working_directory.as_deref(),
            SessionStatus::Completed,
        )
    );
    assert_eq!(
        (
            child.turn_count,
            child.request_count,
            child.artifact_count,
            child.summary_latest.as_deref(),
            child.provider_session_id.as_deref(),
            child.locked_by.as_deref(),
            child.lock_expires_at,
            child.lock_generation,
        ),
        (1, 0, 0, Some("summary 1"), None, None, None, 0)
    );
    assert_eq!(
        child.fork,
        Some(agent_core::ForkOrigin {
            parent_session_id: "sess_parent".to_owned(),
            at_turn: 1
        })
    );
    assert_eq!(parent_before.fork, None);
    assert_storage_form(&child.created_at.to_storage());

    let child_events = h.store.events("sess_child").await.unwrap();
    let copied: Vec<_> = parent_events
        .iter()
        .filter(|e| e.event_id <= end_of_turn_one.event_id)
        .map(|e| (&e.event_type, e.turn_index, &e.payload, &e.created_at))
        .collect();
    assert_eq!(copied.len(), 2);
    assert_eq!(
        child_events[..2]
            .iter()
            .map(|e| (&e.event_type, e.turn_index, &e.payload, &e.created_at))
            .collect::<Vec<_>>(),
        copied
    );
    assert!(child_events[0].event_id > parent_events.last().unwrap().event_id);
    assert_eq!(child_events.len(), 3);
    assert_eq!(
        (
            child_events[2].event_type.as_str(),
            child_events[2].turn_index,
            &child_events[2].payload
        ),
        (
            "session_forked",
            1,
            &json!({"parent_session_id": "sess_parent", "at_turn": 1})
        )
    );
    assert_eq!(
        h.store.outputs("sess_child").await.unwrap(),
        vec![(1, "one".to_owned())]
    );
    assert_eq!(h.store.kept_result("sess_child").await.unwrap(), None);

    // The parent: the same row (still running, still locked), its log plus one event.
    let other = h.target.open().await;
    assert_eq!(
        other.get_session("sess_parent").await.unwrap().unwrap(),
        parent_before
    );
    let after = other.events("sess_parent").await.unwrap();
    assert_eq!(after[..parent_events.len()], parent_events[..]);
    assert_eq!(after.len(), parent_events.len() + 1);
    let created_event = &after[parent_events.len()];
    assert_eq!(
        (
            created_event.event_type.as_str(),
            created_event.turn_index,
            &created_event.payload
        ),
        (
            "session_fork_created",
            1,
            &json!({"child_session_id": "sess_child", "at_turn": 1})
        )
    );
    assert_eq!(
        other.outputs("sess_parent").await.unwrap(),
        vec![(1, "one".to_owned()), (2, "two".to_owned())]
    );
    // The fork continues like any session, from another store too.
    let lock = acquired(
        other
            .acquire_lock("sess_child", "cont_c", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(lock.lock_generation, 1);
    other.begin_execution("sess_child", &[]).await.unwrap();
    other
        .finish_execution(
            "sess_child",
            &Lease::of("cont_c", &lock),
            &finish_with_output(2, "child two"),
        )
        .await
        .unwrap();
    assert_eq!(
        h.store.outputs("sess_child").await.unwrap(),
        vec![(1, "one".to_owned()), (2, "child two".to_owned())]
    );
    assert_eq!(
        h.store.outputs("sess_parent").await.unwrap(),
        vec![(1, "one".to_owned()), (2, "two".to_owned())]
    );
    assert_eq!(h.get("sess_child").await.request_count, 1);
}

async fn a_fork_of_a_missing_parent_or_onto_a_taken_id_writes_nothing(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_p").await;
    h.idle_session("sess_taken").await;
    let fork = |parent: &str, child: &str| agent_core::ForkSession {
        parent_session_id: parent.to_owned(),
        session_id: child.to_owned(),
        at_turn: 1,
        through_event_id: i64::MAX,
        summary_latest: None,
        child_event: Event::session_forked(parent, 1),
        parent_event: Event::session_fork_created(child, 1),
    };
    assert_eq!(
        h.store
            .fork_session(&fork("sess_missing", "sess_new"))
            .await
            .unwrap(),
        agent_core::ForkOutcome::NotFound
    );
    assert!(h.store.get_session("sess_new").await.unwrap().is_none());
    assert!(h.store.events("sess_new").await.unwrap().is_empty());
    let taken_before = h.get("sess_taken").await;
    assert!(
        h.store
            .fork_session(&fork("sess_p", "sess_taken"))
            .await
            .is_err()
    );
    assert_eq!(h.get("sess_taken").await, taken_before);
    assert!(
        h.store.events("sess_p").await.unwrap().is_empty(),
        "rolled back"
    );
    assert!(h.store.events("sess_taken").await.unwrap().is_empty());
}

/// `agent_wait_session`'s results: one per session, byte for byte, readable by any store and
/// after a reopen; a later execution's result is never replaced by an earlier one's.
async fn a_kept_result_is_replaced_only_by_the_same_or_a_later_execution(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_r").await;
    assert_eq!(h.store.kept_result("sess_r").await.unwrap(), None);
    // Whitespace and key order are kept as written.
    let first = r#"{"ok":true, "session_id":"sess_r","b":1,"a":"é \u00e9"}"#;
    assert!(h.store.keep_result("sess_r", 1, first).await.unwrap());
    let other = h.target.open().await;
    assert_eq!(
        other.kept_result("sess_r").await.unwrap(),
        Some((1, first.to_owned()))
    );
    assert!(h.store.keep_result("sess_r", 3, "{\"n\":3}").await.unwrap());
    assert!(!other.keep_result("sess_r", 2, "{\"n\":2}").await.unwrap());
    assert_eq!(
        h.store.kept_result("sess_r").await.unwrap(),
        Some((3, "{\"n\":3}".to_owned()))
    );
    assert!(other.keep_result("sess_r", 3, "{\"n\":33}").await.unwrap());
    assert_eq!(
        h.store.kept_result("sess_r").await.unwrap(),
        Some((3, "{\"n\":33}".to_owned()))
    );
    // A missing session keeps nothing and fails; an oversized result is refused.
    assert!(h.store.keep_result("sess_missing", 1, "{}").await.is_err());
    assert_eq!(h.store.kept_result("sess_missing").await.unwrap(), None);
    let huge = format!("\"{}\"", "x".repeat(agent_core::MAX_KEPT_RESULT_BYTES));
    assert!(h.store.keep_result("sess_r", 4, &huge).await.is_err());
    // Kept through a reopen.
    drop(other);
    let reopened = h.target.open().await;
    assert_eq!(
        reopened.kept_result("sess_r").await.unwrap(),
        Some((3, "{\"n\":33}".to_owned()))
    );
}

/// `Finish::result` is kept in the final write, as the result of the session's current
/// `request_count`; a refused final write keeps nothing.
async fn the_final_write_keeps_its_result_for_the_executions_request_count(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let first = h
        .store
        .begin_session(&new_session("sess_f", "exec_1"), &[])
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_f",
            &Lease::of("exec_1", &first),
            &finish_with_output(1, "one").with_result(r#"{"n": 1}"#.to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(
        h.store.kept_result("sess_f").await.unwrap(),
        Some((1, r#"{"n": 1}"#.to_owned()))
    );
    let second = acquired(h.store.acquire_lock("sess_f", "cont_2", TTL).await.unwrap());
    h.store.begin_execution("sess_f", &[]).await.unwrap();
    // Another lease's final write is refused and keeps nothing.
    let stale = Finish::without_output(SessionStatus::Failed, vec![])
        .with_result(r#"{"stale": true}"#.to_owned());
    assert!(
        h.store
            .finish_execution("sess_f", &Lease::of("exec_1", &first), &stale)
            .await
            .unwrap_err()
            .is_not_holder()
    );
    assert_eq!(
        h.store.kept_result("sess_f").await.unwrap(),
        Some((1, r#"{"n": 1}"#.to_owned()))
    );
    h.store
        .finish_execution(
            "sess_f",
            &Lease::of("cont_2", &second),
            &Finish::without_output(SessionStatus::Failed, vec![])
                .with_result(r#"{"n": 2}"#.to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(
        h.target.open().await.kept_result("sess_f").await.unwrap(),
        Some((2, r#"{"n": 2}"#.to_owned()))
    );
    // An oversized result is refused with the whole final write.
    let third = acquired(h.store.acquire_lock("sess_f", "cont_3", TTL).await.unwrap());
    h.store.begin_execution("sess_f", &[]).await.unwrap();
    let huge = format!("\"{}\"", "x".repeat(agent_core::MAX_KEPT_RESULT_BYTES));
    assert!(
        h.store
            .finish_execution(
                "sess_f",
                &Lease::of("cont_3", &third),
                &Finish::without_output(SessionStatus::Completed, vec![]).with_result(huge),
            )
            .await
            .is_err()
    );
    assert_eq!(h.get("sess_f").await.status, SessionStatus::Running);
}

async fn a_new_session_is_running_locked_and_reads_back(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let events = [ev(EventType::UserInput, 0, json!({"task": "t"}))];
    let created = h
        .store
        .begin_session(&new_session("sess_a", "exec_a"), &events)
        .await
        .unwrap();
    assert_eq!(created, h.get("sess_a").await, "RETURNING equals a read");
    assert_eq!(created.status, SessionStatus::Running);
    assert_eq!(created.workflow, Workflow::RunTask);
    assert_eq!(created.profile, Profile::General);
    assert_eq!(created.provider, "claude");
    assert_eq!(created.provider_session_id, None);
    assert_eq!(created.working_directory.as_deref(), Some("/work/project"));
    assert_eq!(
        (
            created.request_count,
            created.turn_count,
            created.artifact_count
        ),
        (1, 0, 0)
    );
    assert_eq!(created.locked_by.as_deref(), Some("exec_a"));
    assert_eq!(created.lock_generation, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.created_at, created.last_activity_at);
    let expires = created.lock_expires_at.unwrap();
    let ttl = expires.as_datetime() - created.created_at.as_datetime();
    assert_eq!(ttl.num_seconds(), 300, "{ttl:?}");
    assert_storage_form(&created.created_at.to_storage());
    let stored = h.store.events("sess_a").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "user_input");
    assert_eq!(stored[0].payload, json!({"task": "t"}));
    // The same id again is refused.
    assert!(
        h.store
            .begin_session(&new_session("sess_a", "exec_b"), &[])
            .await
            .is_err()
    );
}

async fn an_unknown_session_is_none(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    assert_eq!(h.store.get_session("sess_nope").await.unwrap(), None);
    assert!(h.store.events("sess_nope").await.unwrap().is_empty());
    assert!(h.store.outputs("sess_nope").await.unwrap().is_empty());
    assert!(h.store.artifacts("sess_nope").await.unwrap().is_empty());
    assert_eq!(
        h.store.read_artifact("sess_nope", "art_x").await.unwrap(),
        None
    );
}

async fn acquiring_a_free_lock_is_a_new_generation_and_keeps_updated_at(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_f").await;
    let before = h.get("sess_f").await;
    assert_eq!(before.locked_by, None);
    let taken = acquired(h.store.acquire_lock("sess_f", "cont_1", TTL).await.unwrap());
    assert_eq!(taken.locked_by.as_deref(), Some("cont_1"));
    assert_eq!(taken.lock_generation, before.lock_generation + 1);
    assert_eq!(
        taken.updated_at, before.updated_at,
        "acquisition is not activity"
    );
    assert_eq!(taken.status, SessionStatus::Completed);
    assert_eq!(taken, h.get("sess_f").await);
}

async fn an_unexpired_lock_of_another_owner_conflicts(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_c", "exec_holder"), &[])
        .await
        .unwrap();
    let before = h.get("sess_c").await;
    for owner in ["exec_other", "exec_holder"] {
        assert_eq!(
            h.store.acquire_lock("sess_c", owner, TTL).await.unwrap(),
            LockOutcome::Conflict {
                owner: "exec_holder".to_owned()
            }
        );
    }
    assert_eq!(h.get("sess_c").await, before);
}

async fn an_expired_lock_is_taken_over(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_e", "exec_dead"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_e", Some("exec_dead"), Some(-1)).await;
    let taken = acquired(
        h.store
            .acquire_lock("sess_e", "exec_new", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(taken.locked_by.as_deref(), Some("exec_new"));
    assert_eq!(taken.lock_generation, 2);
    assert!(taken.lock_expires_at.unwrap() > Timestamp::now());
}

async fn a_lock_with_null_expiry_counts_as_held(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_n", "exec_old"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_n", Some("exec_old"), None).await;
    assert_eq!(
        h.store
            .acquire_lock("sess_n", "exec_new", TTL)
            .await
            .unwrap(),
        LockOutcome::Conflict {
            owner: "exec_old".to_owned()
        }
    );
    // Neither the sweeper nor recovery takes it.
    assert_eq!(h.store.sweep_expired_leases().await.unwrap(), 0);
    assert_eq!(h.store.recover_interrupted().await.unwrap(), 0);
    assert_eq!(h.get("sess_n").await.status, SessionStatus::Running);
}

async fn release_by_a_non_owner_is_a_no_op_and_by_the_owner_clears_the_lock(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_r", "exec_r"), &[])
        .await
        .unwrap();
    let before = h.get("sess_r").await;
    h.store.release_lock("sess_r", "exec_other").await.unwrap();
    assert_eq!(h.get("sess_r").await, before);
    h.store.release_lock("sess_r", "exec_r").await.unwrap();
    let after = h.get("sess_r").await;
    assert_eq!((after.locked_by, after.lock_expires_at), (None, None));
    assert_eq!(after.lock_generation, 1, "a release is not an acquisition");
    // Releasing a missing session is not an error.
    h.store
        .release_lock("sess_missing", "exec_r")
        .await
        .unwrap();
}

async fn acquiring_a_missing_session_is_not_found(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    assert_eq!(
        h.store
            .acquire_lock("sess_missing", "exec", TTL)
            .await
            .unwrap(),
        LockOutcome::NotFound
    );
}

async fn concurrent_acquisitions_from_several_stores_have_exactly_one_winner(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_race").await;
    let mut stores = vec![Arc::clone(&h.store)];
    for _ in 0..2 {
        stores.push(h.target.open().await);
    }
    for round in 0..3 {
        let mut tasks = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            for j in 0..4 {
                let store = Arc::clone(store);
                let owner = format!("cont_{round}_{i}_{j}");
                tasks.push(tokio::spawn(async move {
                    (
                        owner.clone(),
                        store.acquire_lock("sess_race", &owner, TTL).await.unwrap(),
                    )
                }));
            }
        }
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (owner, LockOutcome::Acquired(record)) => winners.push((owner, record)),
                (_, LockOutcome::Conflict { owner }) => conflicts.push(owner),
                (_, LockOutcome::NotFound) => panic!("not found"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (winner, record) = winners.remove(0);
        assert_eq!(conflicts.len(), 11);
        // A loser that read the holder names the winner (one that read it between two
        // statements may see no holder at all, never another loser).
        assert!(
            conflicts.iter().all(|c| c == &winner || c.is_empty()),
            "{conflicts:?}"
        );
        assert_eq!(record.lock_generation, 2 + round);
        h.store.release_lock("sess_race", &winner).await.unwrap();
    }
}

async fn begin_execution_sets_running_counts_and_appends(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_b").await;
    let before = h.get("sess_b").await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    h.store
        .begin_execution(
            "sess_b",
            &[ev(EventType::UserInput, 1, json!({"task": "again"}))],
        )
        .await
        .unwrap();
    let after = h.get("sess_b").await;
    assert_eq!(after.status, SessionStatus::Running);
    assert_eq!(after.request_count, before.request_count + 1);
    assert!(after.updated_at > before.updated_at);
    assert_eq!(after.updated_at, after.last_activity_at);
    let events = h.store.events("sess_b").await.unwrap();
    assert_eq!(events.last().unwrap().payload, json!({"task": "again"}));
    let err = h
        .store
        .begin_execution("sess_missing", &[])
        .await
        .unwrap_err();
    assert_eq!(err.message, "Session sess_missing not found");
}

async fn finish_execution_applies_everything_and_releases_the_lock(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(&new_session("sess_fin", "exec_fin"), &[])
        .await
        .unwrap();
    let lease = Lease::of("exec_fin", &record);
    assert!(h.store.request_cancel("sess_fin", "stop").await.unwrap());
    h.store
        .finish_execution(
            "sess_fin",
            &lease,
            &finish_with_output(1, "the full output"),
        )
        .await
        .unwrap();
    let done = h.get("sess_fin").await;
    assert_eq!(done.status, SessionStatus::Completed);
    assert_eq!(done.turn_count, 1);
    assert_eq!(done.summary_latest.as_deref(), Some("summary 1"));
    assert_eq!(done.provider_session_id.as_deref(), Some("prov_1"));
    assert_eq!((done.locked_by, done.lock_expires_at), (None, None));
    assert_eq!(h.raw.cancel_columns("sess_fin").await, (false, None));
    assert_eq!(
        h.store.outputs("sess_fin").await.unwrap(),
        vec![(1, "the full output".to_owned())]
    );
    let events = h.store.events("sess_fin").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "provider_response_summary");
    // A finish without output keeps the counters and summary.
    let again = acquired(
        h.store
            .acquire_lock("sess_fin", "cont_2", TTL)
            .await
            .unwrap(),
    );
    h.store
        .finish_execution(
            "sess_fin",
            &Lease::of("cont_2", &again),
            &Finish::without_output(SessionStatus::Failed, vec![]),
        )
        .await
        .unwrap();
    let failed = h.get("sess_fin").await;
    assert_eq!(failed.status, SessionStatus::Failed);
    assert_eq!(
        (failed.turn_count, failed.summary_latest.as_deref()),
        (1, Some("summary 1"))
    );
}

async fn finish_by_a_non_holder_fails_with_not_holder_and_changes_nothing(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_nh", "exec_holder"), &[])
        .await
        .unwrap();
    let before = h.get("sess_nh").await;
    let err = h
        .store
        .finish_execution(
            "sess_nh",
            &lease("exec_intruder", 1),
            &finish_with_output(1, "x"),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_holder(), "{err:?}");
    assert_eq!(
        err.message,
        "Session sess_nh: execution exec_intruder no longer holds its lock (held by exec_holder): nothing was written"
    );
    assert_eq!(h.get("sess_nh").await, before);
    assert!(h.store.events("sess_nh").await.unwrap().is_empty());
    assert!(h.store.outputs("sess_nh").await.unwrap().is_empty());
    // Released meanwhile: no one holds it.
    h.store
        .release_lock("sess_nh", "exec_holder")
        .await
        .unwrap();
    let err = h
        .store
        .finish_execution(
            "sess_nh",
            &lease("exec_holder", 1),
            &finish_with_output(1, "x"),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("(no one holds it)"), "{err:?}");
    // A missing session is not a fencing failure.
    let err = h
        .store
        .finish_execution(
            "sess_missing",
            &lease("exec_holder", 1),
            &finish_with_output(1, "x"),
        )
        .await
        .unwrap_err();
    assert!(!err.is_not_holder());
    assert_eq!(err.message, "Session sess_missing not found");
}

/// Issue 14: a run whose lease is stolen (the row edited under it) can no longer renew, end or
/// interrupt its execution, nor see a cancel request meant for the new holder.
async fn a_stolen_lease_can_neither_renew_nor_finish_nor_interrupt(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(&new_session("sess_s", "exec_victim"), &[])
        .await
        .unwrap();
    let victim = Lease::of("exec_victim", &record);
    assert!(h.store.renew_lock("sess_s", &victim, TTL).await.unwrap());
    h.raw.steal("sess_s", "exec_thief").await;
    assert!(!h.store.renew_lock("sess_s", &victim, TTL).await.unwrap());
    let err = h
        .store
        .finish_execution("sess_s", &victim, &finish_with_output(1, "late"))
        .await
        .unwrap_err();
    assert!(err.is_not_holder(), "{err:?}");
    assert!(err.message.contains("held by exec_thief"), "{err:?}");
    assert!(
        !h.store
            .interrupt_execution("sess_s", &victim, "lease lost")
            .await
            .unwrap()
    );
    assert!(
        h.store
            .request_cancel("sess_s", "for the thief")
            .await
            .unwrap()
    );
    assert_eq!(
        h.store.cancel_requested("sess_s", &victim).await.unwrap(),
        None
    );
    let thief = lease("exec_thief", 2);
    assert_eq!(
        h.store
            .cancel_requested("sess_s", &thief)
            .await
            .unwrap()
            .as_deref(),
        Some("for the thief")
    );
    let now = h.get("sess_s").await;
    assert_eq!(now.status, SessionStatus::Running);
    assert_eq!(now.locked_by.as_deref(), Some("exec_thief"));
    assert!(h.store.outputs("sess_s").await.unwrap().is_empty());
    // The thief ends it.
    h.store
        .finish_execution("sess_s", &thief, &finish_with_output(1, "thief's"))
        .await
        .unwrap();
    assert_eq!(
        h.store.outputs("sess_s").await.unwrap(),
        vec![(1, "thief's".to_owned())]
    );
}

async fn a_stale_generation_can_neither_renew_nor_finish_nor_interrupt(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_g", "exec_same"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_g", Some("exec_same"), Some(-5)).await;
    let taken = acquired(
        h.store
            .acquire_lock("sess_g", "exec_same", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(taken.lock_generation, 2);
    let before = h.get("sess_g").await;
    let stale = lease("exec_same", 1);
    assert!(!h.store.renew_lock("sess_g", &stale, TTL).await.unwrap());
    assert!(
        h.store
            .finish_execution("sess_g", &stale, &finish_with_output(1, "stale"))
            .await
            .unwrap_err()
            .is_not_holder()
    );
    assert!(
        !h.store
            .interrupt_execution("sess_g", &stale, "x")
            .await
            .unwrap()
    );
    assert_eq!(h.get("sess_g").await, before);
    let current = lease("exec_same", 2);
    assert!(h.store.renew_lock("sess_g", &current, TTL).await.unwrap());
    h.store
        .finish_execution("sess_g", &current, &finish_with_output(1, "current"))
        .await
        .unwrap();
    assert_eq!(h.get("sess_g").await.status, SessionStatus::Completed);
}

async fn a_kept_output_is_never_overwritten(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let first = h
        .store
        .begin_session(&new_session("sess_k", "exec_1"), &[])
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_k",
            &Lease::of("exec_1", &first),
            &finish_with_output(1, "first"),
        )
        .await
        .unwrap();
    let second = acquired(h.store.acquire_lock("sess_k", "exec_2", TTL).await.unwrap());
    let before = h.get("sess_k").await;
    let events_before = h.store.events("sess_k").await.unwrap();
    let err = h
        .store
        .finish_execution(
            "sess_k",
            &Lease::of("exec_2", &second),
            &finish_with_output(1, "second"),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("already kept"), "{err:?}");
    assert_eq!(
        h.store.outputs("sess_k").await.unwrap(),
        vec![(1, "first".to_owned())]
    );
    assert_eq!(
        h.get("sess_k").await,
        before,
        "nothing applied, the lock still held"
    );
    assert_eq!(h.store.events("sess_k").await.unwrap(), events_before);
}

async fn interrupt_execution_applies_only_to_the_holders_running_session(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(&new_session("sess_i", "exec_i"), &[])
        .await
        .unwrap();
    assert!(
        !h.store
            .interrupt_execution("sess_i", &lease("exec_other", 1), "x")
            .await
            .unwrap()
    );
    assert!(
        !h.store
            .interrupt_execution("sess_missing", &lease("exec_i", 1), "x")
            .await
            .unwrap()
    );
    assert!(h.store.request_cancel("sess_i", "stop").await.unwrap());
    assert!(
        h.store
            .interrupt_execution(
                "sess_i",
                &Lease::of("exec_i", &record),
                "final write failed"
            )
            .await
            .unwrap()
    );
    let after = h.get("sess_i").await;
    assert_eq!(after.status, SessionStatus::Interrupted);
    assert_eq!((after.locked_by, after.lock_expires_at), (None, None));
    assert_eq!(h.raw.cancel_columns("sess_i").await, (false, None));
    let events = h.store.events("sess_i").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "session_interrupted");
    assert_eq!(events[0].payload, json!({"reason": "final write failed"}));
    // Not running any more: a second interrupt changes nothing.
    assert!(
        !h.store
            .interrupt_execution("sess_i", &Lease::of("exec_i", &record), "x")
            .await
            .unwrap()
    );
    // A running session with no lock is interrupted by any lease.
    h.store
        .begin_session(&new_session("sess_free", "exec_f"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_free", None, None).await;
    assert!(
        h.store
            .interrupt_execution("sess_free", &lease("exec_any", 7), "x")
            .await
            .unwrap()
    );
}

async fn events_come_back_in_order_with_their_payloads_byte_for_byte(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let payloads = [
        json!({"z": 1, "a": {"y": 2, "b": [1, "x", null, true]}, "m": "é ✓ \u{1F600}"}),
        json!({"big": u64::MAX, "neg": i64::MIN, "float": 0.1, "exp": 1.5e300}),
        json!({}),
        json!({"text": "line\nbreak \"quoted\" \\ \u{0001}"}),
    ];
    let events: Vec<Event> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| ev(EventType::UserInput, i as i64, p.clone()))
        .collect();
    h.store
        .begin_session(&new_session("sess_ev", "exec_ev"), &events[..1])
        .await
        .unwrap();
    h.store
        .append_events("sess_ev", &events[1..])
        .await
        .unwrap();
    h.store.append_events("sess_ev", &[]).await.unwrap();
    let stored: Vec<StoredEvent> = h.store.events("sess_ev").await.unwrap();
    assert_eq!(stored.len(), payloads.len());
    for (i, (event, payload)) in stored.iter().zip(&payloads).enumerate() {
        assert_eq!(event.session_id, "sess_ev");
        assert_eq!(event.event_type, "user_input");
        assert_eq!(event.turn_index, i as i64);
        // The key order and every value as written: envelopes that embed events are the same
        // bytes on both stores.
        assert_eq!(
            serde_json::to_string(&event.payload).unwrap(),
            serde_json::to_string(payload).unwrap()
        );
        assert_storage_form(&event.created_at);
    }
    assert!(stored.windows(2).all(|w| w[0].event_id < w[1].event_id));
    assert!(
        stored
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    // Events of a missing session are refused.
    assert!(
        h.store
            .append_events("sess_missing", &events[..1])
            .await
            .is_err()
    );
}

async fn listing_orders_limits_filters_and_pages(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    assert!(h.store.list_sessions(50, None).await.unwrap().is_empty());
    for i in 0..6 {
        let id = format!("sess_l{i}");
        if i % 2 == 0 {
            h.idle_session(&id).await;
        } else {
            h.store
                .begin_session(&new_session(&id, "exec_l"), &[])
                .await
                .unwrap();
        }
        h.raw.set_updated(&id, -100 + i).await;
    }
    let all = h.store.list_sessions(50, None).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "sess_l5", "sess_l4", "sess_l3", "sess_l2", "sess_l1", "sess_l0"
        ]
    );
    let top = &all[0];
    assert_eq!(
        (top.workflow, top.profile, top.status),
        (Workflow::RunTask, Profile::General, SessionStatus::Running)
    );
    assert_eq!(top.updated_at, h.get("sess_l5").await.updated_at);
    assert_eq!(h.store.list_sessions(2, None).await.unwrap().len(), 2);
    let running = h
        .store
        .list_sessions(50, Some(SessionStatus::Running))
        .await
        .unwrap();
    let ids: Vec<&str> = running.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["sess_l5", "sess_l3", "sess_l1"]);
    let page = h.store.list_sessions_page(2, 3).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["sess_l3", "sess_l2", "sess_l1"]);
    assert!(h.store.list_sessions_page(6, 3).await.unwrap().is_empty());
    assert!(h.store.list_sessions(0, None).await.unwrap().is_empty());
}

/// The sessions gauge of `/metrics`: one count per status present, none for absent ones.
async fn sessions_are_counted_by_status(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    assert!(h.target.session_counts().await.is_empty());
    for i in 0..3 {
        h.idle_session(&format!("sess_c{i}")).await;
    }
    h.store
        .begin_session(&new_session("sess_r", "exec_r"), &[])
        .await
        .unwrap();
    assert_eq!(
        h.target.session_counts().await,
        [("completed".to_owned(), 3), ("running".to_owned(), 1)]
    );
}

async fn an_artifact_is_stored_counted_and_read_back_by_any_store(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_art").await;
    let before = h.get("sess_art").await;
    let body = b"hello artifact";
    let stored = h
        .store
        .store_artifact(artifact("sess_art", "out/../put.txt", body))
        .await
        .unwrap();
    assert!(
        stored.artifact_id.starts_with("art_"),
        "{}",
        stored.artifact_id
    );
    assert_eq!(
        (
            stored.artifact_type.as_str(),
            stored.logical_name.as_str(),
            stored.mime_type.as_str()
        ),
        ("output", "out/../put.txt", "text/plain")
    );
    let after = h.get("sess_art").await;
    assert_eq!(after.artifact_count, before.artifact_count + 1);
    assert!(after.updated_at >= before.updated_at);
    let records = h.store.artifacts("sess_art").await.unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.artifact_id, stored.artifact_id);
    assert_eq!(record.size_bytes, body.len() as i64);
    assert_eq!(record.sha256, agent_store_sha256(body));
    assert_storage_form(&record.created_at);
    assert_eq!(
        (record.turn_index, record.producer_tool.as_str()),
        (1, "agent_run_task")
    );
    // Any store on the same data serves the body (on PostgreSQL it is in the database).
    let other = h.target.open().await;
    let (read, bytes) = other
        .read_artifact("sess_art", &stored.artifact_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&read, record);
    assert_eq!(bytes, body);
    assert_eq!(
        other
            .read_artifact("sess_art", "art_missing")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        other
            .read_artifact("sess_other", &stored.artifact_id)
            .await
            .unwrap(),
        None
    );
    // An empty body is an artifact too; order is oldest first.
    let second = h
        .store
        .store_artifact(artifact("sess_art", "empty", b""))
        .await
        .unwrap();
    let ids: Vec<String> = h
        .store
        .artifacts("sess_art")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.artifact_id)
        .collect();
    assert_eq!(
        ids,
        [stored.artifact_id.clone(), second.artifact_id.clone()]
    );
    let (_, empty) = h
        .store
        .read_artifact("sess_art", &second.artifact_id)
        .await
        .unwrap()
        .unwrap();
    assert!(empty.is_empty());
}

fn agent_store_sha256(body: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(body))
}

async fn an_oversized_artifact_is_refused_and_a_grown_one_is_not_read(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_big").await;
    let body = vec![b'x'; MAX_ARTIFACT as usize + 1];
    let err = h
        .store
        .store_artifact(artifact("sess_big", "big", &body))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "Artifact exceeds max size: {} > {MAX_ARTIFACT}",
            MAX_ARTIFACT + 1
        )
    );
    assert_eq!(h.get("sess_big").await.artifact_count, 0);
    assert!(h.store.artifacts("sess_big").await.unwrap().is_empty());
    // Exactly at the limit is fine.
    let at_limit = vec![b'y'; MAX_ARTIFACT as usize];
    let stored = h
        .store
        .store_artifact(artifact("sess_big", "limit", &at_limit))
        .await
        .unwrap();
    // A body that grew past the limit behind the store's back is an error, not an unbounded read.
    h.raw
        .grow_artifact(&stored.artifact_id, 10 * MAX_ARTIFACT as usize)
        .await;
    let err = h
        .store
        .read_artifact("sess_big", &stored.artifact_id)
        .await
        .unwrap_err();
    assert!(err.message.contains(&stored.artifact_id), "{err:?}");
    assert!(err.message.contains("artifact limit"), "{err:?}");
}

async fn an_artifact_for_a_missing_session_fails(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    assert!(
        h.store
            .store_artifact(artifact("sess_missing", "x", b"x"))
            .await
            .is_err()
    );
    assert!(h.store.artifacts("sess_missing").await.unwrap().is_empty());
}

async fn the_sweeper_interrupts_only_expired_leases_once_across_stores(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    for i in 0..20 {
        let id = format!("sess_x{i}");
        h.store
            .begin_session(&new_session(&id, "exec_dead"), &[])
            .await
            .unwrap();
        h.raw.set_lock(&id, Some("exec_dead"), Some(-10)).await;
    }
    h.store
        .begin_session(&new_session("sess_nolock", "exec_n"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_nolock", None, None).await;
    h.store
        .begin_session(&new_session("sess_live", "exec_live"), &[])
        .await
        .unwrap();
    h.idle_session("sess_done").await;
    h.raw
        .set_lock("sess_done", Some("exec_gone"), Some(-10))
        .await;
    let expired_before = h.get("sess_x0").await.lock_expires_at.unwrap();

    // Three stores sweep at once: every expired session is swept exactly once.
    let others = [h.target.open().await, h.target.open().await];
    let (a, b, c) = tokio::join!(
        h.store.sweep_expired_leases(),
        others[0].sweep_expired_leases(),
        others[1].sweep_expired_leases()
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 21);
    for i in 0..20 {
        let id = format!("sess_x{i}");
        let record = h.get(&id).await;
        assert_eq!(record.status, SessionStatus::Interrupted, "{id}");
        assert_eq!((record.locked_by, record.lock_expires_at), (None, None));
        let events = h.store.events(&id).await.unwrap();
        assert_eq!(events.len(), 1, "{id}: {events:?}");
        assert_eq!(events[0].event_type, "lease_expired");
    }
    let events = h.store.events("sess_x0").await.unwrap();
    assert_eq!(
        events[0].payload,
        json!({"locked_by": "exec_dead", "lock_expires_at": expired_before.to_storage()})
    );
    assert_eq!(
        serde_json::to_string(&events[0].payload).unwrap(),
        format!(
            "{{\"locked_by\":\"exec_dead\",\"lock_expires_at\":\"{}\"}}",
            expired_before.to_storage()
        )
    );
    let events = h.store.events("sess_nolock").await.unwrap();
    assert_eq!(
        events[0].payload,
        json!({"locked_by": null, "lock_expires_at": null})
    );
    assert_eq!(h.get("sess_live").await.status, SessionStatus::Running);
    assert_eq!(h.get("sess_done").await.status, SessionStatus::Completed);
    assert_eq!(h.store.sweep_expired_leases().await.unwrap(), 0);
}

async fn recovery_interrupts_only_sessions_without_a_live_lease(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.store
        .begin_session(&new_session("sess_live", "exec_a"), &[])
        .await
        .unwrap();
    h.store
        .begin_session(&new_session("sess_dead", "exec_b"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_dead", Some("exec_b"), Some(-1)).await;
    h.store
        .begin_session(&new_session("sess_free", "exec_c"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_free", None, None).await;
    h.idle_session("sess_idle").await;
    // A second process starting on the same data.
    let second = h.target.open().await;
    assert_eq!(second.recover_interrupted().await.unwrap(), 2);
    assert_eq!(h.get("sess_live").await.status, SessionStatus::Running);
    assert_eq!(
        h.get("sess_live").await.locked_by.as_deref(),
        Some("exec_a")
    );
    for id in ["sess_dead", "sess_free"] {
        let record = h.get(id).await;
        assert_eq!(record.status, SessionStatus::Interrupted, "{id}");
        assert_eq!(record.locked_by, None);
        assert!(
            h.store.events(id).await.unwrap().is_empty(),
            "recovery writes no event"
        );
    }
    assert_eq!(h.get("sess_idle").await.status, SessionStatus::Completed);
    assert_eq!(second.recover_interrupted().await.unwrap(), 0);
}

async fn cancel_requests_reach_only_the_running_holder_and_end_with_it(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    h.idle_session("sess_idle").await;
    assert!(!h.store.request_cancel("sess_idle", "why").await.unwrap());
    assert_eq!(h.raw.cancel_columns("sess_idle").await, (false, None));
    assert!(!h.store.request_cancel("sess_missing", "why").await.unwrap());
    h.store
        .begin_session(&new_session("sess_free", "exec_free"), &[])
        .await
        .unwrap();
    h.raw.set_lock("sess_free", None, None).await;
    assert!(!h.store.request_cancel("sess_free", "why").await.unwrap());

    h.store
        .begin_session(&new_session("sess_c", "exec_c"), &[])
        .await
        .unwrap();
    let holder = lease("exec_c", 1);
    assert_eq!(
        h.store.cancel_requested("sess_c", &holder).await.unwrap(),
        None
    );
    assert!(h.store.request_cancel("sess_c", "stop it").await.unwrap());
    assert!(
        h.store
            .request_cancel("sess_c", "a later reason")
            .await
            .unwrap()
    );
    assert_eq!(
        h.store
            .cancel_requested("sess_c", &holder)
            .await
            .unwrap()
            .as_deref(),
        Some("stop it")
    );
    assert_eq!(h.get("sess_c").await.status, SessionStatus::Running);
    for other in [lease("exec_c", 2), lease("exec_other", 1)] {
        assert_eq!(
            h.store.cancel_requested("sess_c", &other).await.unwrap(),
            None
        );
    }
    h.store
        .finish_execution(
            "sess_c",
            &holder,
            &Finish::without_output(SessionStatus::Cancelled, vec![]),
        )
        .await
        .unwrap();
    assert_eq!(h.raw.cancel_columns("sess_c").await, (false, None));
    // A request left on a row never reaches the next execution.
    h.raw.leave_cancel_request("sess_c").await;
    let next = acquired(
        h.store
            .acquire_lock("sess_c", "cont_next", TTL)
            .await
            .unwrap(),
    );
    assert_eq!(next.lock_generation, 2);
    assert_eq!(
        h.store
            .cancel_requested("sess_c", &Lease::of("cont_next", &next))
            .await
            .unwrap(),
        None
    );
    assert_eq!(h.raw.cancel_columns("sess_c").await, (false, None));
    // A reason is bounded, cut at a character boundary.
    h.store
        .begin_session(&new_session("sess_long", "exec_l"), &[])
        .await
        .unwrap();
    let long = "é".repeat(MAX_CANCEL_REASON_BYTES);
    assert!(h.store.request_cancel("sess_long", &long).await.unwrap());
    let kept = h
        .store
        .cancel_requested("sess_long", &lease("exec_l", 1))
        .await
        .unwrap()
        .unwrap();
    assert!(kept.len() <= MAX_CANCEL_REASON_BYTES && kept.len() >= MAX_CANCEL_REASON_BYTES - 1);
    assert!(kept.chars().all(|c| c == 'é'));
}

/// Issue 14 item 3: a cancel recorded through one store reaches the holder in another one. On
/// PostgreSQL it is pushed (`LISTEN/NOTIFY`) and must arrive within a second; SQLite has no
/// push channel, and the holder's poll sees it.
async fn a_cancel_from_another_store_reaches_the_holder(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(&new_session("sess_far", "exec_far"), &[])
        .await
        .unwrap();
    let holder = Lease::of("exec_far", &record);
    let node_b = h.target.open().await;
    let wakeups = h.store.cancel_wakeups();
    match kind {
        Kind::Sqlite => assert!(wakeups.is_none(), "SQLite polls"),
        Kind::Postgres => assert!(wakeups.is_some(), "PostgreSQL listens"),
    }
    let started = Instant::now();
    assert!(
        node_b
            .request_cancel("sess_far", "from node B")
            .await
            .unwrap()
    );
    if let Some(mut wakeups) = wakeups {
        let woken = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match wakeups.recv().await {
                    Ok(id) if id == "sess_far" => return id,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await;
        assert!(woken.is_ok(), "no wake-up within 1 s");
        let elapsed = started.elapsed();
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("cancel wake-up across stores after {elapsed:?}\n").as_bytes(),
        );
        assert!(elapsed < Duration::from_secs(1));
    }
    assert_eq!(
        h.store
            .cancel_requested("sess_far", &holder)
            .await
            .unwrap()
            .as_deref(),
        Some("from node B")
    );
}

/// Issue 14: three processes started at the same moment on new data all open and serve (the
/// schema is applied once, under a lock).
async fn three_stores_opened_together_on_new_data_all_serve(kind: Kind) {
    let Some(target) = Target::new(kind).await else {
        return;
    };
    let (a, b, c) = tokio::join!(target.open(), target.open(), target.open());
    for (i, store) in [a, b, c].iter().enumerate() {
        let id = format!("sess_together{i}");
        store
            .begin_session(&new_session(&id, "exec_t"), &[])
            .await
            .unwrap();
        assert!(store.list_sessions(10, None).await.unwrap().len() > i);
        assert!(store.get_session(&id).await.unwrap().is_some());
    }
}

async fn data_survives_closing_and_reopening(kind: Kind) {
    let Some(h) = Harness::new(kind).await else {
        return;
    };
    let record = h
        .store
        .begin_session(
            &new_session("sess_keep", "exec_k"),
            &[ev(EventType::UserInput, 0, json!({"a": 1}))],
        )
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_keep",
            &Lease::of("exec_k", &record),
            &finish_with_output(1, "kept"),
        )
        .await
        .unwrap();
    h.store
        .store_artifact(artifact("sess_keep", "a", b"body"))
        .await
        .unwrap();
    let session = h.get("sess_keep").await;
    let events = h.store.events("sess_keep").await.unwrap();
    let artifacts = h.store.artifacts("sess_keep").await.unwrap();
    let Harness { store, raw, target } = h;
    drop(store);
    drop(raw);
    let reopened = target.open().await;
    assert_eq!(
        reopened.get_session("sess_keep").await.unwrap().unwrap(),
        session
    );
    assert_eq!(reopened.events("sess_keep").await.unwrap(), events);
    assert_eq!(reopened.artifacts("sess_keep").await.unwrap(), artifacts);
    assert_eq!(
        reopened.outputs("sess_keep").await.unwrap(),
        vec![(1, "kept".to_owned())]
    );
}

/// Both stores, driven through the same calls, return the same records, events, outputs and
/// artifacts (ids and times aside): the envelopes built from them are the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_answer_the_same_calls_with_the_same_values() {
    let Some(pg) = Harness::new(Kind::Postgres).await else {
        return;
    };
    let sqlite = Harness::new(Kind::Sqlite).await.unwrap();
    let a = scenario(&sqlite).await;
    let b = scenario(&pg).await;
    assert_eq!(a, b);
}

async fn scenario(h: &Harness) -> serde_json::Value {
    let events = [
        ev(
            EventType::UserInput,
            0,
            json!({"task": "t", "nested": {"z": 1, "a": [2]}}),
        ),
        ev(EventType::WorkflowNormalization, 0, json!({"k": "v"})),
    ];
    let record = h
        .store
        .begin_session(&new_session("sess_same", "exec_s"), &events)
        .await
        .unwrap();
    h.store
        .store_artifact(artifact("sess_same", "dir/../x.txt", b"artifact body"))
        .await
        .unwrap();
    h.store
        .finish_execution(
            "sess_same",
            &Lease::of("exec_s", &record),
            &finish_with_output(1, "out"),
        )
        .await
        .unwrap();
    let next = acquired(
        h.store
            .acquire_lock("sess_same", "cont_s", TTL)
            .await
            .unwrap(),
    );
    h.store
        .begin_execution(
            "sess_same",
            &[ev(EventType::UserInput, 1, json!({"task": "more"}))],
        )
        .await
        .unwrap();
    h.raw.set_lock("sess_same", Some("cont_s"), Some(-1)).await;
    assert_eq!(next.lock_generation, 2);
    h.store.sweep_expired_leases().await.unwrap();
    let session = h.get("sess_same").await;
    let stored = h.store.events("sess_same").await.unwrap();
    let artifacts = h.store.artifacts("sess_same").await.unwrap();
    let (_, body) = h
        .store
        .read_artifact("sess_same", &artifacts[0].artifact_id)
        .await
        .unwrap()
        .unwrap();
    let list = h.store.list_sessions(10, None).await.unwrap();
    json!({
        "session": {
            "id": session.session_id, "workflow": session.workflow.as_str(),
            "profile": session.profile.as_str(), "provider": session.provider,
            "provider_session_id": session.provider_session_id, "status": session.status.as_str(),
            "working_directory": session.working_directory, "request_count": session.request_count,
            "turn_count": session.turn_count, "artifact_count": session.artifact_count,
            "summary_latest": session.summary_latest, "locked_by": session.locked_by,
            "lock_expires_at": session.lock_expires_at.map(|t| t.to_storage()),
            "lock_generation": session.lock_generation,
        },
        "events": stored.iter().map(|e| json!({
            "type": e.event_type, "turn": e.turn_index,
            // The payload as text; a lease_expired payload names a time, kept as its shape.
            "payload": if e.event_type == "lease_expired" {
                json!(e.payload.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
            } else {
                json!(serde_json::to_string(&e.payload).unwrap())
            },
        })).collect::<Vec<_>>(),
        "outputs": h.store.outputs("sess_same").await.unwrap(),
        "artifacts": artifacts.iter().map(|a| json!({
            "type": a.artifact_type, "name": a.logical_name, "mime": a.mime_type,
            "size": a.size_bytes, "sha256": a.sha256, "turn": a.turn_index,
            "producer": a.producer_tool,
        })).collect::<Vec<_>>(),
        "body": String::from_utf8(body).unwrap(),
        "list": list.iter().map(|s| json!([s.session_id, s.status.as_str(), s.summary_latest])).collect::<Vec<_>>(),
    })
}

/// A pooled connection that the database dropped while it sat idle (a restart, a proxy's idle
/// time-out) is found out before it is used: the store pings a connection idle for a second or
/// more, so the next call gets a new one instead of an error. (A connection in use is not
/// pinged before each statement: `docs/scaling.md`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_dropped_while_idle_are_replaced_before_use() {
    let Some(schema) = agent_testkit::postgres::fresh_schema().await else {
        return;
    };
    let application = format!("contract {}", schema.schema());
    let url = format!(
        "{}&application_name={}",
        schema.url(),
        application.replace(' ', "%20")
    );
    let store = PostgresStore::open(PostgresConfig::new(&url, MAX_ARTIFACT))
        .await
        .unwrap();
    let first = store
        .begin_session(&new_session("sess_idle", "exec_1"), &[])
        .await
        .unwrap();
    store
        .finish_execution(
            "sess_idle",
            &Lease::of("exec_1", &first),
            &finish_with_output(1, "kept"),
        )
        .await
        .unwrap();
    let admin = PgPool::connect(schema.url()).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&application)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(
        !terminated.is_empty() && terminated.iter().all(|t| *t),
        "the store's connections were found and terminated: {terminated:?}"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let read = store.get_session("sess_idle").await.unwrap().unwrap();
    assert_eq!(read.turn_count, 1);
    assert_eq!(
        store.outputs("sess_idle").await.unwrap(),
        vec![(1, "kept".to_owned())]
    );
}

/// On PostgreSQL the listing walks `idx_sessions_updated` / `idx_sessions_status_updated` in
/// order and stops at the limit (no sort step), and the sweeper finds `running` rows through
/// the partial index: the plans the figures of `docs/performance.md` rely on at 1,000,000
/// sessions. (Sequential scans are switched off for the check: on a near-empty table the
/// planner would rightly prefer one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listing_and_sweeping_use_their_indexes() {
    let Some(h) = Harness::new(Kind::Postgres).await else {
        return;
    };
    let Raw::Postgres(pool) = &h.raw else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan = |sql: &'static str| {
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"));
        sqlx::query_scalar::<_, String>(explain)
    };
    let all = plan("SELECT session_id FROM sessions ORDER BY updated_at DESC LIMIT 50")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .join("\n");
    assert!(all.contains("idx_sessions_updated"), "{all}");
    assert!(!all.contains("Sort"), "{all}");
    let filtered = plan(
        "SELECT session_id FROM sessions WHERE status = 'completed' ORDER BY updated_at DESC LIMIT 50",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .join("\n");
    assert!(
        filtered.contains("idx_sessions_status_updated"),
        "{filtered}"
    );
    assert!(!filtered.contains("Sort"), "{filtered}");
    let sweep = plan(
        "SELECT session_id FROM sessions WHERE status = 'running' AND (locked_by IS NULL \
         OR (lock_expires_at IS NOT NULL AND lock_expires_at <= statement_timestamp())) LIMIT 500",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .join("\n");
    assert!(
        sweep.contains("idx_sessions_running") || sweep.contains("idx_sessions_status"),
        "{sweep}"
    );
}
