//! Persistence, crash recovery and the database schema (`docs/reference/sessions.md#4-locking`,
//! `docs/reference/sessions.md#5-crash-recovery`, `docs/reference/sessions.md#9-database-schema`).

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::*;

/// Starts a server whose model answers `text` only after `delay`, and an `agent_run_task` on
/// it in the background (its result, or the error of a server that went away).
async fn start_slow_run(
    env: &TestEnv,
    text: &str,
    delay: Duration,
) -> (
    Server,
    tokio::task::JoinHandle<Result<rmcp::model::CallToolResult, rmcp::ServiceError>>,
) {
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply(text))
            .set_delay(delay),
    )
    .await;
    let server = env.start().await;
    let client = server.client.clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("agent_run_task").with_arguments(args),
            )
            .await
    });
    (server, call)
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let env = TestEnv::new().await;
    env.reply_text("kept").await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let before = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(server.shutdown().await, 0, "stdin closed: clean exit");
    let server = env.start().await;
    let after = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(after, before);
    server.shutdown().await;
}

/// A restart interrupts a session whose process died once its lease has run out (a live lease
/// would be another process's run, left alone: `two_servers_share_one_state_directory`).
#[tokio::test]
async fn sigkill_during_a_slow_reply_leaves_an_interrupted_session() {
    let mut env = TestEnv::new().await;
    // Renewed every 2/3 s while the run lives; expired 2 s after the last renewal.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    let (server, call) = start_slow_run(&env, "never", Duration::from_secs(30)).await;
    // Wait until the request reached the stand-in: the session is running.
    env.wait_for_request().await;
    assert_eq!(env.requests().await.len(), 1);
    let sid = env.latest_session_id().await;
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    server.kill().await;
    let _ = call.await;
    // No renewal after the kill: the lease is over within the TTL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events_before = env.events(&sid).await;
    assert_eq!(
        events_before.len(),
        4,
        "events written before the model call are intact"
    );

    env.reply_text("fresh").await;
    let server = env.start().await;
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("interrupted"));
    assert_eq!(env.column(&sid, "locked_by").await, None);
    assert_eq!(env.column(&sid, "lock_expires_at").await, None);
    assert_eq!(
        env.events(&sid).await,
        events_before,
        "recovery appends no event"
    );
    assert!(
        env.stderr_log().contains("Recovered 1 interrupted session"),
        "{}",
        env.stderr_log()
    );
    let v = server
        .call("agent_run_task", json!({"task": "new work"}))
        .await;
    assert_eq!(v["ok"], json!(true));
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "resume"}),
        )
        .await;
    assert_eq!(
        c["ok"],
        json!(true),
        "an interrupted session can be continued"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn recovery_leaves_finished_sessions_alone() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let a = server.call("agent_run_task", json!({"task": "a"})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = server.call("agent_run_task", json!({"task": "b"})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.shutdown().await;
    let db = env.db_rw().await;
    sqlx::query("UPDATE sessions SET status = 'failed' WHERE session_id = ?")
        .bind(&b)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let server = env.start().await;
    assert_eq!(env.column(&a, "status").await.as_deref(), Some("completed"));
    assert_eq!(env.column(&b, "status").await.as_deref(), Some("failed"));
    server.shutdown().await;
}

/// The reference schema (`docs/reference/sessions.md#9-database-schema`), with this implementation's additive columns after
/// the reference ones.
#[tokio::test]
async fn database_has_the_reference_schema() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let db = env.db().await;
    let columns = |table: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(&db)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("sessions").await,
        [
            "session_id",
            "workflow",
            "profile",
            "provider",
            "provider_session_id",
            "status",
            "working_directory",
            "created_at",
            "updated_at",
            "last_activity_at",
            "request_count",
            "turn_count",
            "artifact_count",
            "summary_latest",
            "locked_by",
            "lock_expires_at",
            // Additive, after the reference columns: the lease fencing
            // generation and cross-process cancel requests, each nullable or with a default.
            "lock_generation",
            "cancel_requested_at",
            "cancel_reason",
            // Additive (migration 0006): where a fork came from.
            "parent_session_id",
            "forked_at_turn",
            // The session's summed usage (migration 0007).
            "usage_input_tokens",
            "usage_output_tokens",
            "usage_cache_creation_input_tokens",
            "usage_cache_read_input_tokens",
            "usage_cost_usd",
        ]
    );
    assert_eq!(
        columns("session_events").await,
        [
            "event_id",
            "session_id",
            "event_type",
            "turn_index",
            "payload",
            "created_at"
        ]
    );
    assert_eq!(
        columns("artifacts").await,
        [
            "artifact_id",
            "session_id",
            "workflow",
            "profile",
            "artifact_type",
            "logical_name",
            "mime_type",
            "path",
            "size_bytes",
            "sha256",
            "created_at",
            "turn_index",
            "producer_tool"
        ]
    );
    assert_eq!(
        columns("schema_migrations").await,
        ["version", "applied_at"]
    );
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(version, 1);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    server.shutdown().await;
}

/// Issue #12 item 7: a session left `running` under an expired lease (a process that died, a
/// final write that could not be made) becomes `interrupted` with a `lease_expired` event while
/// the server serves, without a restart; a live lease is left alone.
#[tokio::test]
async fn an_expired_lease_is_swept_while_serving() {
    let mut env = TestEnv::new().await;
    // The sweeper runs every half TTL: every second here.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    env.reply_text("done").await;
    let server = env.start().await;
    let stale = server.call("agent_run_task", json!({"task": "a"})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = server.call("agent_run_task", json!({"task": "b"})).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.mark_running(&stale, "run_task:dead-process", "2000-01-01T00:00:00+00:00")
        .await;
    env.mark_running(&live, "run_task:live-process", "2999-01-01T00:00:00+00:00")
        .await;

    let mut status = String::new();
    for _ in 0..100 {
        let got = server
            .call("agent_get_session", json!({"session_id": stale}))
            .await;
        status = got["status"].as_str().unwrap_or_default().to_owned();
        if status != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "interrupted", "swept within 10 s, no restart");
    assert_eq!(env.column(&stale, "locked_by").await, None);
    assert_eq!(env.column(&stale, "lock_expires_at").await, None);
    assert_eq!(
        env.events(&stale).await.last().unwrap(),
        &(
            "lease_expired".to_owned(),
            1,
            json!({"locked_by": "run_task:dead-process", "lock_expires_at": "2000-01-01T00:00:00+00:00"})
        )
    );
    assert_eq!(
        env.column(&live, "status").await.as_deref(),
        Some("running")
    );
    assert_eq!(
        env.column(&live, "locked_by").await.as_deref(),
        Some("run_task:live-process")
    );
    // The swept session can be continued on the same server.
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": stale, "message": "again"}),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    assert_eq!(server.shutdown().await, 0);
}

/// Issue #14: processes started at the same moment on a new state directory all serve (the
/// schema is applied once, under the database's write lock; before, most tries had one or two
/// exit with `UNIQUE constraint failed: _sqlx_migrations.version`).
#[tokio::test]
async fn three_servers_started_together_on_a_new_state_directory_all_serve() {
    for round in 0..4 {
        let env = TestEnv::new().await;
        env.reply_text("ok").await;
        let (a, b, c) = tokio::join!(env.start(), env.start(), env.start());
        for (name, server) in [("a", &a), ("b", &b), ("c", &c)] {
            let v = server.call("agent_run_task", json!({"task": name})).await;
            assert_eq!(v["ok"], json!(true), "round {round}, server {name}: {v}");
        }
        assert_eq!(env.session_count().await, 3, "round {round}");
        for server in [a, b, c] {
            assert_eq!(server.shutdown().await, 0, "round {round}");
        }
    }
}

/// Issue #14: two processes on one SQLite state directory. A slow run in A; B starts (its
/// startup recovery leaves A's live lease alone); B sees the session `running`; a continue
/// through B answers `session_conflict`; A's run completes and its output is kept.
#[tokio::test]
async fn two_servers_share_one_state_directory() {
    let env = TestEnv::new().await;
    let (a, call) = start_slow_run(&env, "slow answer", Duration::from_secs(4)).await;
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    let owner = env.column(&sid, "locked_by").await;
    assert!(owner.is_some(), "A holds the lock");

    let b = env.start().await;
    let got = b
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("running"), "{got}");
    assert_eq!(env.column(&sid, "locked_by").await, owner, "still A's lock");
    let c = b
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "meanwhile"}),
        )
        .await;
    assert_eq!(c["errors"][0]["code"], json!("session_conflict"), "{c}");
    // The conflict names A's lock owner token, which carries A's node id.
    let owner = owner.unwrap();
    assert!(owner.contains("@node_"), "{owner}");
    assert_eq!(
        c["errors"][0]["message"],
        json!(format!("Session {sid} is locked by {owner}")),
        "{c}"
    );

    let done = parse_single_text(&call.await.unwrap().unwrap());
    assert_eq!(done["ok"], json!(true), "{done}");
    assert_eq!(done["status"], json!("completed"), "{done}");
    let seen = b
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(seen["status"], json!("completed"), "{seen}");
    let kept: Vec<(i64, String)> =
        sqlx::query_as("SELECT turn_index, output_text FROM session_outputs WHERE session_id = ?1")
            .bind(&sid)
            .fetch_all(&env.db().await)
            .await
            .unwrap();
    assert_eq!(kept, vec![(1, "slow answer".to_owned())]);
    assert_eq!(
        env.requests().await.len(),
        1,
        "only A's run reached the model"
    );
    assert_eq!(b.shutdown().await, 0);
    assert_eq!(a.shutdown().await, 0);
}

/// Issue #14, lease loss: a run whose lease is taken from under it (the row edited: the lock
/// cleared) stops at its next renewal instead of going on unlocked, and the session records
/// why (`interrupted`, `session_interrupted {"reason": "lease lost"}`).
#[tokio::test]
async fn a_run_that_loses_its_lease_stops_and_records_why() {
    let mut env = TestEnv::new().await;
    // Renewed every 2/3 s.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    let (server, call) = start_slow_run(&env, "never", Duration::from_secs(30)).await;
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    let db = env.db_rw().await;
    sqlx::query(
        "UPDATE sessions SET locked_by = NULL, lock_expires_at = NULL WHERE session_id = ?1",
    )
    .bind(&sid)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;

    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the run stops long before the model answers")
        .unwrap()
        .unwrap();
    let v = parse_single_text(&result);
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(
        v["errors"][0]["code"],
        json!("provider_runtime_error"),
        "{v}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lost its lease"),
        "{v}"
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("interrupted")
    );
    assert_eq!(
        env.events(&sid).await.last().unwrap(),
        &(
            "session_interrupted".to_owned(),
            0,
            json!({"reason": "lease lost"})
        )
    );
    assert_eq!(server.shutdown().await, 0);
}
