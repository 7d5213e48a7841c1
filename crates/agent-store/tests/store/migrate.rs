//! `agent_store::migrate`: a SQLite state directory copied into a fresh PostgreSQL schema holds
//! the same sessions, events (with their ids), outputs and artifact bytes; a copy refuses live
//! leases, stops whole on a bad artifact, resumes where it stopped, and never merges into a
//! session that differs. Each test needs PostgreSQL (skipped with a `SKIPPED` line without
//! one, failing under `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`).

use std::time::Duration;

use agent_core::{
    Event, EventLog, EventType, Finish, Lease, NewArtifact, NewSession, Profile, SessionStatus,
    SessionStore, Workflow,
};
use agent_store::migrate::{MigrateError, MigrateOptions, MigrateReport, sqlite_to_postgres};
use agent_store::{PostgresConfig, PostgresStore, SqliteStore, StoreConfig};
use agent_testkit::postgres::FreshSchema;
use serde_json::json;
use tempfile::TempDir;

const MAX_ARTIFACT: u64 = 1024;
const TTL: Duration = Duration::from_secs(300);

struct Setup {
    dir: TempDir,
    sqlite: SqliteStore,
    schema: FreshSchema,
}

impl Setup {
    async fn new() -> Option<Self> {
        let schema = agent_testkit::postgres::fresh_schema().await?;
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(StoreConfig {
            db_path: dir.path().join("claude-agent-mcp.db"),
            artifact_dir: dir.path().join("artifacts"),
            max_artifact_bytes: MAX_ARTIFACT,
        })
        .await
        .unwrap();
        Some(Self {
            dir,
            sqlite,
            schema,
        })
    }

    async fn postgres(&self) -> PostgresStore {
        PostgresStore::open(PostgresConfig::new(self.schema.url(), MAX_ARTIFACT))
            .await
            .unwrap()
    }

    /// A session with `turns` finished turns, two events per turn, its kept outputs and one
    /// artifact per turn; left completed and unlocked.
    async fn session(&self, id: &str, turns: i64) {
        let owner = format!("exec_{id}");
        let new = NewSession {
            session_id: id.to_owned(),
            workflow: Workflow::RunTask,
            profile: Profile::General,
            working_directory: Some("/work/project".to_owned()),
            lock_owner: owner.clone(),
            lock_ttl: TTL,
        };
        let mut record = self
            .sqlite
            .begin_session(&new, &[event(EventType::UserInput, 0, json!({"task": id}))])
            .await
            .unwrap();
        for turn in 1..=turns {
            if turn > 1 {
                record = match self.sqlite.acquire_lock(id, &owner, TTL).await.unwrap() {
                    agent_core::LockOutcome::Acquired(record) => *record,
                    other => panic!("{other:?}"),
                };
                self.sqlite
                    .begin_execution(
                        id,
                        &[event(EventType::UserInput, turn, json!({"turn": turn}))],
                    )
                    .await
                    .unwrap();
            }
            let body = format!("artifact {id} turn {turn} é");
            self.sqlite
                .store_artifact(NewArtifact {
                    session_id: id,
                    workflow: Workflow::RunTask,
                    profile: Profile::General,
                    artifact_type: "report",
                    logical_name: "report.md",
                    mime_type: "text/markdown",
                    turn_index: turn,
                    producer_tool: "agent_run_task",
                    body: body.as_bytes(),
                })
                .await
                .unwrap();
            self.sqlite
                .finish_execution(
                    id,
                    &Lease::of(owner.clone(), &record),
                    &Finish {
                        status: SessionStatus::Completed,
                        turn_count: Some(turn),
                        summary_latest: Some(format!("summary {turn}")),
                        provider_session_id: None,
                        output_text: Some(format!("output of {id} turn {turn}\n{{\"k\": [1, 2]}}")),
                        events: vec![event(
                            EventType::ProviderResponseSummary,
                            turn,
                            json!({"text": format!("done {turn}"), "nested": {"b": 1, "a": [true, null]}}),
                        )],
                        result: None,
                        // The summed usage is copied too (cache counts and cost included).
                        usage: Some(agent_core::Usage {
                            input_tokens: 100 + turn as u64,
                            output_tokens: 7,
                            cache_creation_input_tokens: (turn > 1).then_some(3),
                            cache_read_input_tokens: Some(9),
                            total_cost_usd: Some(0.125),
                        }),
                    },
                )
                .await
                .unwrap();
            // The result its call answered, for agent_wait_session.
            let envelope =
                format!("{{\"session_id\": \"{id}\", \"turn\": {turn}, \"text\": \"é\"}}");
            self.sqlite.keep_result(id, turn, &envelope).await.unwrap();
        }
    }
}

fn event(event_type: EventType, turn_index: i64, payload: serde_json::Value) -> Event {
    Event {
        event_type,
        turn_index,
        payload,
    }
}

async fn copy(
    setup: &Setup,
    pg: &PostgresStore,
    batch: usize,
) -> Result<MigrateReport, MigrateError> {
    let options = MigrateOptions {
        batch,
        ..MigrateOptions::default()
    };
    sqlite_to_postgres(&setup.sqlite, pg, options, |_| {}).await
}

/// Everything a client can read of a session, from one store.
async fn everything(store: &dyn SessionStore, id: &str) -> serde_json::Value {
    let record = store.get_session(id).await.unwrap().unwrap();
    let events: Vec<_> = store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            json!([
                e.event_id,
                e.event_type,
                e.turn_index,
                e.payload,
                e.created_at
            ])
        })
        .collect();
    let mut artifacts = vec![];
    for a in store.artifacts(id).await.unwrap() {
        let (_, body) = store
            .read_artifact(id, &a.artifact_id)
            .await
            .unwrap()
            .unwrap();
        artifacts.push(json!([
            a.artifact_id,
            a.artifact_type,
            a.logical_name,
            a.mime_type,
            a.size_bytes,
            a.sha256,
            a.created_at,
            a.turn_index,
            a.producer_tool,
            String::from_utf8(body).unwrap()
        ]));
    }
    json!({
        "record": format!("{record:?}"),
        "events": events,
        "outputs": store.outputs(id).await.unwrap(),
        "result": store.kept_result(id).await.unwrap(),
        "artifacts": artifacts,
    })
}

#[tokio::test]
async fn every_session_event_output_and_artifact_is_copied_with_its_ids() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let ids: Vec<String> = (0..7).map(|i| format!("sess_{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        setup.session(id, 1 + (i as i64 % 3)).await;
    }
    let pg = setup.postgres().await;
    let mut batches = 0;
    let report = sqlite_to_postgres(
        &setup.sqlite,
        &pg,
        MigrateOptions {
            batch: 3,
            ..MigrateOptions::default()
        },
        |_| batches += 1,
    )
    .await
    .unwrap();
    assert_eq!(batches, 3, "7 sessions in batches of 3");
    assert_eq!(report.source_sessions, 7);
    assert_eq!(report.sessions, 7);
    assert_eq!(report.already_present, 0);
    // Turns 1, 2, 3, 1, 2, 3, 1 = 13: one artifact, one output and two events per turn.
    assert_eq!(report.outputs, 13);
    assert_eq!(report.results, 7, "one per session");
    assert_eq!(report.artifacts, 13);
    assert_eq!(report.events, 26, "{report:?}");
    for id in &ids {
        assert_eq!(
            everything(&pg, id).await,
            everything(&setup.sqlite, id).await,
            "{id}"
        );
    }
    assert_eq!(
        format!("{:?}", pg.list_sessions(50, None).await.unwrap()),
        format!("{:?}", setup.sqlite.list_sessions(50, None).await.unwrap())
    );

    // A new event in the destination comes after every copied one.
    let max_copied = setup
        .sqlite
        .events("sess_06")
        .await
        .unwrap()
        .last()
        .unwrap()
        .event_id;
    pg.append_events("sess_00", &[event(EventType::UserInput, 9, json!({}))])
        .await
        .unwrap();
    let newest = pg.events("sess_00").await.unwrap().last().unwrap().event_id;
    assert!(newest > max_copied, "{newest} {max_copied}");
}

#[tokio::test]
async fn a_live_lease_in_the_source_stops_the_copy_before_anything_is_written() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    setup.session("sess_done", 1).await;
    let new = NewSession {
        session_id: "sess_live".to_owned(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        working_directory: None,
        lock_owner: "exec_live@node_0123456789abcdef".to_owned(),
        lock_ttl: TTL,
    };
    setup.sqlite.begin_session(&new, &[]).await.unwrap();
    let pg = setup.postgres().await;
    let error = copy(&setup, &pg, 10).await.unwrap_err();
    assert!(
        matches!(&error, MigrateError::LiveLeases { count: 1, first } if first == "sess_live"),
        "{error}"
    );
    assert!(error.to_string().contains("--allow-live-leases"), "{error}");
    assert!(pg.get_session("sess_done").await.unwrap().is_none());

    // Allowed: the running session is copied with its lease, which the destination's sweeper
    // turns into `interrupted` once it expires.
    let report = sqlite_to_postgres(
        &setup.sqlite,
        &pg,
        MigrateOptions {
            batch: 10,
            allow_live_leases: true,
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.sessions, 2);
    let copied = pg.get_session("sess_live").await.unwrap().unwrap();
    assert_eq!(copied.status, SessionStatus::Running);
    assert_eq!(
        copied.locked_by.as_deref(),
        Some("exec_live@node_0123456789abcdef")
    );
    assert_eq!(copied.lock_generation, 1);
}

#[tokio::test]
async fn a_bad_artifact_stops_its_batch_whole_and_a_second_run_resumes() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    for id in ["sess_a", "sess_b", "sess_c", "sess_d"] {
        setup.session(id, 1).await;
    }
    // sess_c's artifact file is gone: its batch (c, d) stops; (a, b) is kept.
    let record = &setup.sqlite.artifacts("sess_c").await.unwrap()[0];
    let file = std::fs::read_dir(setup.dir.path().join("artifacts").join("sess_c"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let saved = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let pg = setup.postgres().await;
    let error = copy(&setup, &pg, 2).await.unwrap_err();
    assert!(
        matches!(&error, MigrateError::Artifact { session_id, artifact_id, .. }
            if session_id == "sess_c" && *artifact_id == record.artifact_id),
        "{error}"
    );
    assert!(pg.get_session("sess_b").await.unwrap().is_some());
    assert!(pg.get_session("sess_c").await.unwrap().is_none());
    assert!(pg.get_session("sess_d").await.unwrap().is_none());
    assert!(pg.events("sess_c").await.unwrap().is_empty());

    std::fs::write(&file, saved).unwrap();
    let report = copy(&setup, &pg, 2).await.unwrap();
    assert_eq!(
        (report.sessions, report.already_present),
        (2, 2),
        "{report:?}"
    );
    for id in ["sess_a", "sess_b", "sess_c", "sess_d"] {
        assert_eq!(
            everything(&pg, id).await,
            everything(&setup.sqlite, id).await,
            "{id}"
        );
    }
    // Once more: nothing to copy, everything found matching.
    let report = copy(&setup, &pg, 3).await.unwrap();
    assert_eq!(
        (report.sessions, report.already_present),
        (0, 4),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_artifact_row_naming_a_file_outside_the_artifact_directory_is_not_read() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    setup.session("sess_x", 1).await;
    let outside = setup.dir.path().join("secret.txt");
    let body = "artifact sess_x turn 1 é";
    std::fs::write(&outside, body).unwrap();
    let raw = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(setup.dir.path().join("claude-agent-mcp.db")),
    )
    .await
    .unwrap();
    // The same bytes (size and hash match), but through a path outside, and through a link.
    let link = setup
        .dir
        .path()
        .join("artifacts")
        .join("sess_x")
        .join("link.md");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    for path in [&outside, &link] {
        sqlx::query("UPDATE artifacts SET path = ?1 WHERE session_id = 'sess_x'")
            .bind(path.to_str().unwrap())
            .execute(&raw)
            .await
            .unwrap();
        let pg = setup.postgres().await;
        let error = copy(&setup, &pg, 5).await.unwrap_err();
        assert!(
            matches!(&error, MigrateError::Artifact { problem, .. } if problem.contains("outside the artifact directory")),
            "{error}"
        );
        assert!(pg.get_session("sess_x").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_destination_session_that_differs_is_never_merged_into() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    setup.session("sess_same_id", 2).await;
    let pg = setup.postgres().await;
    // The destination already has a session of that id, with other contents.
    let new = NewSession {
        session_id: "sess_same_id".to_owned(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        working_directory: None,
        lock_owner: "exec_other".to_owned(),
        lock_ttl: TTL,
    };
    pg.begin_session(&new, &[]).await.unwrap();
    let before = everything(&pg, "sess_same_id").await;
    let error = copy(&setup, &pg, 5).await.unwrap_err();
    assert!(
        matches!(&error, MigrateError::Differs { session_id, what: "events", .. } if session_id == "sess_same_id"),
        "{error}"
    );
    assert_eq!(everything(&pg, "sess_same_id").await, before);
}

#[tokio::test]
async fn a_batch_size_out_of_range_is_refused() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    let pg = setup.postgres().await;
    for batch in [0, agent_store::migrate::MAX_BATCH + 1] {
        let error = copy(&setup, &pg, batch).await.unwrap_err();
        assert!(
            matches!(error, MigrateError::BatchSize(b) if b == batch),
            "{error}"
        );
    }
}

/// Issue 16: a fork keeps where it came from (`parent_session_id`, `forked_at_turn`) through
/// the copy, also when its id sorts before its parent's (copied in an earlier batch).
#[tokio::test]
async fn a_fork_is_copied_with_its_origin_even_before_its_parent() {
    let Some(setup) = Setup::new().await else {
        return;
    };
    setup.session("sess_b_parent", 2).await;
    let end_of_turn_one = setup
        .sqlite
        .events("sess_b_parent")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "provider_response_summary" && e.turn_index == 1)
        .map(|e| e.event_id)
        .expect("turn 1 ended");
    let forked = setup
        .sqlite
        .fork_session(&agent_core::ForkSession {
            parent_session_id: "sess_b_parent".to_owned(),
            session_id: "sess_a_fork".to_owned(),
            at_turn: 1,
            through_event_id: end_of_turn_one,
            summary_latest: Some("s".to_owned()),
            child_event: Event::session_forked("sess_b_parent", 1),
            parent_event: Event::session_fork_created("sess_a_fork", 1),
        })
        .await
        .unwrap();
    assert!(matches!(forked, agent_core::ForkOutcome::Forked(_)));
    let pg = setup.postgres().await;
    let report = copy(&setup, &pg, 1).await.unwrap();
    assert_eq!(report.sessions, 2);
    for id in ["sess_a_fork", "sess_b_parent"] {
        assert_eq!(
            everything(&pg, id).await,
            everything(&setup.sqlite, id).await,
            "{id}"
        );
    }
    assert_eq!(
        pg.get_session("sess_a_fork").await.unwrap().unwrap().fork,
        Some(agent_core::ForkOrigin {
            parent_session_id: "sess_b_parent".to_owned(),
            at_turn: 1
        })
    );
}
