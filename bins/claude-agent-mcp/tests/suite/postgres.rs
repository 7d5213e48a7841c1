//! The server on the PostgreSQL store (`CLAUDE_AGENT_MCP_DATABASE_URL=postgres://…`,
//! `docs/scaling.md#the-shared-store`), end to end through the real binary: each test on a schema
//! of its own (`agent_testkit::postgres::fresh_schema`), skipped without a PostgreSQL unless
//! `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`.

use std::time::{Duration, Instant};

use agent_testkit::postgres::{DEFAULT_POSTGRES_URL, FreshSchema, fresh_schema};
use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};
use sqlx::Connection;
use wiremock::ResponseTemplate;

use crate::support::*;

const DATABASE_URL: &str = "CLAUDE_AGENT_MCP_DATABASE_URL";
/// Put in the URL of the default (trust-auth) server, where it is ignored: no output may show it.
const PASSWORD: &str = "pw-never-shown";

/// The schema's URL, with a password the server ignores when it is the default trust-auth one.
fn url_with_password(pg: &FreshSchema) -> String {
    if pg.server_url() == DEFAULT_POSTGRES_URL {
        pg.url().replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{PASSWORD}@"),
            1,
        )
    } else {
        pg.url().to_owned()
    }
}

async fn pg_env(url: &str) -> TestEnv {
    let mut env = TestEnv::new().await;
    env.set(DATABASE_URL, url);
    env
}

fn text_of(contents: &ResourceContents) -> (String, String) {
    match contents {
        ResourceContents::TextResourceContents {
            mime_type, text, ..
        } => (mime_type.clone().unwrap_or_default(), text.clone()),
        other => panic!("expected text contents, got {other:?}"),
    }
}

async fn read(server: &Server, uri: String) -> (String, String) {
    let read = server
        .client
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    text_of(&read.contents[0])
}

async fn sessions_in_schema(pg: &FreshSchema) -> i64 {
    let mut conn = pg.connect().await;
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    count
}

/// Issue 14 item 2: run → continue → get → events → artifact resource on PostgreSQL, with the
/// same envelopes as on SQLite; a second server on the same schema reads all of it (the
/// artifact body is in the database); nothing is written to a SQLite file; the status tool
/// names the store; the URL's password appears in no output.
#[tokio::test]
async fn a_server_on_postgres_runs_continues_and_serves_every_read() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let url = url_with_password(&pg);
    let env = pg_env(&url).await;
    let output = "A long enough output to be stored as an artifact of the session.";
    env.reply_text(output).await;
    let server = env.start().await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(run["ok"], json!(true), "{run}");
    let sid = run["session_id"].as_str().unwrap().to_owned();
    let aid = run["artifacts"][0]["artifact_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same calls on SQLite answer the same envelopes.
    let sqlite = TestEnv::new().await;
    sqlite.reply_text(output).await;
    let sqlite_server = sqlite.start().await;
    let sqlite_run = sqlite_server
        .call("agent_run_task", json!({"task": "t"}))
        .await;
    assert_eq!(
        normalize_envelope(run.clone()),
        normalize_envelope(sqlite_run.clone())
    );

    env.reply_text("second answer").await;
    sqlite.reply_text("second answer").await;
    let cont = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "more"}),
        )
        .await;
    let sqlite_sid = sqlite_run["session_id"].as_str().unwrap();
    let sqlite_cont = sqlite_server
        .call(
            "agent_continue_session",
            json!({"session_id": sqlite_sid, "message": "more"}),
        )
        .await;
    assert_eq!(cont["status"], json!("completed"), "{cont}");
    assert_eq!(normalize_envelope(cont), normalize_envelope(sqlite_cont));
    // The continuation replayed the kept output of the first turn.
    assert_eq!(
        env.requests().await.last().unwrap()["messages"][1],
        json!({"role": "assistant", "content": output})
    );

    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    let sqlite_got = sqlite_server
        .call("agent_get_session", json!({"session_id": sqlite_sid}))
        .await;
    let shape = |mut v: Value| {
        for key in [
            "session_id",
            "created_at",
            "updated_at",
            "last_activity_at",
            "working_directory",
        ] {
            if let Some(value) = v.get_mut(key) {
                assert!(value.is_string(), "{key}: {value}");
                *value = json!("<volatile>");
            }
        }
        normalize_envelope(v)
    };
    assert_eq!(shape(got.clone()), shape(sqlite_got));
    assert_eq!(got["request_count"], json!(2), "{got}");
    assert_eq!(got["artifact_count"], json!(1), "{got}");

    let (mime, events) = read(&server, format!("session://{sid}/events")).await;
    assert_eq!(mime, "application/json");
    let events: Value = serde_json::from_str(&events).unwrap();
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &types[..5],
        [
            "user_input",
            "system_prompt_resolved",
            "policy_decision",
            "provider_request_start",
            "provider_response_summary"
        ]
    );
    assert_eq!(events[0]["payload"], json!({"task": "t"}));
    assert!(
        events[0]["created_at"].as_str().unwrap().ends_with('Z')
            || events[0]["created_at"]
                .as_str()
                .unwrap()
                .ends_with("+00:00")
    );
    let artifact = (
        format!("artifact://{sid}/{aid}"),
        "text/plain".to_owned(),
        output.to_owned(),
    );
    let (mime, body) = read(&server, artifact.0.clone()).await;
    assert_eq!(
        (mime.as_str(), body.as_str()),
        (artifact.1.as_str(), artifact.2.as_str())
    );

    let status = server.call("agent_get_runtime_status", json!({})).await;
    assert_eq!(status["session_store"], json!("postgresql"));
    assert!(!env.db_path().exists(), "no SQLite database was created");
    assert!(
        !env.state_dir().join("artifacts").exists(),
        "no artifact file was written"
    );
    assert_eq!(sessions_in_schema(&pg).await, 1);

    // Another node on the same schema serves everything (another working directory, so no
    // file of the first one's could help it).
    let other_env = pg_env(&url).await;
    let other = other_env.start().await;
    assert_eq!(
        other
            .call("agent_get_session", json!({"session_id": sid}))
            .await,
        got
    );
    let (_, body) = read(&other, artifact.0.clone()).await;
    assert_eq!(body, output);
    let listed = other.call("agent_list_sessions", json!({})).await;
    assert_eq!(listed["sessions"][0]["session_id"], json!(sid));

    for s in [server, other, sqlite_server] {
        assert_eq!(s.shutdown().await, 0);
    }
    for log in [env.stderr_log(), other_env.stderr_log()] {
        assert!(log.contains("Session store: postgresql"), "{log}");
        assert!(!log.contains(PASSWORD), "{log}");
    }
}

/// Issue 14: three server processes started at the same moment on a new schema all start
/// (the schema is created once, under the migrator's lock) and all serve one session space.
#[tokio::test]
async fn three_servers_started_at_once_on_a_new_schema_all_serve() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let envs = [
        pg_env(pg.url()).await,
        pg_env(pg.url()).await,
        pg_env(pg.url()).await,
    ];
    for env in &envs {
        env.reply_text("ok").await;
    }
    let (a, b, c) = tokio::join!(envs[0].start(), envs[1].start(), envs[2].start());
    let servers = [a, b, c];
    let mut ids = Vec::new();
    for server in &servers {
        let run = server.call("agent_run_task", json!({"task": "t"})).await;
        assert_eq!(run["ok"], json!(true), "{run}");
        ids.push(run["session_id"].as_str().unwrap().to_owned());
    }
    for server in &servers {
        let listed = server.call("agent_list_sessions", json!({})).await;
        let mut seen: Vec<String> = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap().to_owned())
            .collect();
        seen.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(seen, expected);
        for id in &ids {
            let got = server
                .call("agent_get_session", json!({"session_id": id}))
                .await;
            assert_eq!(got["status"], json!("completed"), "{got}");
        }
    }
    for server in servers {
        assert_eq!(server.shutdown().await, 0);
    }
}

/// Issue 14 item 3: `agent_cancel_session` through node B stops a run on node A within a
/// second, pushed by `NOTIFY` rather than found by A's next poll.
#[tokio::test]
async fn a_cancel_through_another_node_stops_the_run_within_a_second() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let a_elapsed = cancel_through_b_stops_a_run_on_a(&pg, pg_env(pg.url()).await, None).await;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("cancel through another node (LISTEN): A's run answered after {a_elapsed:?}\n")
            .as_bytes(),
    );
}

/// Issue 14 item 3, the fallback: node A does not listen (`CLAUDE_AGENT_MCP_DATABASE_LISTEN=false`,
/// as behind a pooler in transaction mode), so B's `NOTIFY` reaches nobody there; A's run still
/// stops within a second, found by its poll of the cancel request. A holds no `LISTEN`
/// connection (its connections, told apart by their `application_name`).
#[tokio::test]
async fn without_listen_a_cancel_through_another_node_is_polled_within_a_second() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let name = format!("polling-{}", pg.schema());
    let separator = if pg.url().contains('?') { '&' } else { '?' };
    let mut env_a = pg_env(&format!("{}{separator}application_name={name}", pg.url())).await;
    env_a.set("CLAUDE_AGENT_MCP_DATABASE_LISTEN", "false");
    let a_elapsed = cancel_through_b_stops_a_run_on_a(&pg, env_a, Some(&name)).await;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("cancel through another node (polling): A's run answered after {a_elapsed:?}\n")
            .as_bytes(),
    );
}

/// Starts a slow run on a node of `env_a`, cancels it through a second node (listening) on the
/// same schema, checks both answers and the stored status, and returns how long A's run took
/// to answer after the cancel was sent (at most a second). With `a_name`, the
/// `application_name` in A's URL, also checks that none of A's connections ran `LISTEN`.
async fn cancel_through_b_stops_a_run_on_a(
    pg: &FreshSchema,
    env_a: TestEnv,
    a_name: Option<&str>,
) -> Duration {
    env_a
        .reply(
            ResponseTemplate::new(200)
                .set_body_json(text_reply("late"))
                .set_delay(Duration::from_secs(30)),
        )
        .await;
    let a = env_a.start().await;
    let client = a.client.clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        let result = client
            .call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
            .unwrap();
        parse_single_text(&result)
    });
    env_a.wait_for_request().await;
    let env_b = pg_env(pg.url()).await;
    let b = env_b.start().await;
    let listed = b
        .call("agent_list_sessions", json!({"status": "running"}))
        .await;
    let sid = listed["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let a_stopped = tokio::spawn(async move {
        let run = call.await.unwrap();
        (run, started.elapsed())
    });
    let cancel = b
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(cancel["ok"], json!(true), "{cancel}");
    assert_eq!(cancel["result"]["status"], json!("cancelled"), "{cancel}");
    let (run, a_elapsed) = tokio::time::timeout(Duration::from_secs(5), a_stopped)
        .await
        .expect("A's run ended")
        .unwrap();
    assert_eq!(
        run["errors"][0]["code"],
        json!("session_cancelled"),
        "{run}"
    );
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(a_elapsed < Duration::from_secs(1), "{a_elapsed:?}");
    if let Some(name) = a_name {
        let mut conn = pg.connect().await;
        let (connections, listening): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE query ILIKE 'LISTEN%') \
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(connections > 0, "A's connections are named {name}");
        assert_eq!(listening, 0, "A listens although told not to");
    }
    let got = b
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("cancelled"), "{got}");
    assert_eq!(a.shutdown().await, 0);
    assert_eq!(b.shutdown().await, 0);
    a_elapsed
}

/// How a test takes a running session's lease from under its run.
#[derive(Clone, Copy, Debug)]
enum LeaseTheft {
    /// The lock cleared (as an operator's manual fix would).
    Cleared,
    /// The lock handed to another node at a new generation.
    TakenByAnotherNode,
}

/// Issue 14, lease loss on PostgreSQL: a run whose lease is taken from under it (the row
/// edited) stops at its next renewal instead of going on, and answers why; when the lock was
/// cleared the session ends `interrupted` with `session_interrupted {"reason": "lease lost"}`;
/// when another node holds it, the run's end (fenced by the generation) writes nothing: the
/// session, its lock and its events are the new holder's.
async fn a_run_that_loses_its_lease_on_postgres(theft: LeaseTheft) {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let mut env = pg_env(pg.url()).await;
    // Renewed every 2/3 s.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("never"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let server = env.start().await;
    let client = server.client.clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        let result = client
            .call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
            .unwrap();
        parse_single_text(&result)
    });
    env.wait_for_request().await;
    let listed = server
        .call("agent_list_sessions", json!({"status": "running"}))
        .await;
    let sid = listed["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut conn = pg.connect().await;
    let edit = match theft {
        LeaseTheft::Cleared => {
            "UPDATE sessions SET locked_by = NULL, lock_expires_at = NULL \
             WHERE session_id = $1 AND status = 'running'"
        }
        LeaseTheft::TakenByAnotherNode => {
            "UPDATE sessions SET locked_by = 'another-node', \
               lock_expires_at = statement_timestamp() + interval '1 hour', \
               lock_generation = lock_generation + 1 \
             WHERE session_id = $1 AND status = 'running'"
        }
    };
    let edited = sqlx::query(edit)
        .bind(&sid)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    let stolen_at = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the run stops long before the model answers")
        .unwrap();
    eprintln!(
        "{theft:?}: the run stopped {:?} after its lease was taken",
        stolen_at.elapsed()
    );
    assert_eq!(run["ok"], json!(false), "{run}");
    assert_eq!(
        run["errors"][0]["code"],
        json!("provider_runtime_error"),
        "{run}"
    );
    assert!(
        run["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lost its lease"),
        "{run}"
    );
    let (status, locked_by): (String, Option<String>) =
        sqlx::query_as("SELECT status, locked_by FROM sessions WHERE session_id = $1")
            .bind(&sid)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let (_, events) = read(&server, format!("session://{sid}/events")).await;
    let events: Value = serde_json::from_str(&events).unwrap();
    let last = events.as_array().unwrap().last().unwrap().clone();
    match theft {
        LeaseTheft::Cleared => {
            assert_eq!((status.as_str(), locked_by), ("interrupted", None));
            assert_eq!(last["event_type"], json!("session_interrupted"), "{events}");
            assert_eq!(last["payload"], json!({"reason": "lease lost"}));
        }
        LeaseTheft::TakenByAnotherNode => {
            assert_eq!(
                (status.as_str(), locked_by.as_deref()),
                ("running", Some("another-node"))
            );
            assert_eq!(
                last["event_type"],
                json!("provider_request_start"),
                "{events}"
            );
        }
    }
    let _ = conn.close().await;
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn a_run_whose_lock_is_cleared_on_postgres_stops_and_records_why() {
    a_run_that_loses_its_lease_on_postgres(LeaseTheft::Cleared).await;
}

#[tokio::test]
async fn a_run_whose_lease_another_node_took_on_postgres_stops_and_writes_nothing() {
    a_run_that_loses_its_lease_on_postgres(LeaseTheft::TakenByAnotherNode).await;
}

/// `doctor` on a PostgreSQL URL: connects, reports the schema version (or that the first node
/// creates it), and never shows the password; an unreachable server is a failed check.
#[tokio::test]
async fn doctor_checks_the_postgres_store_with_the_password_redacted() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let url = url_with_password(&pg);
    let env = pg_env(&url).await;
    let (_, out, _) = env.run_to_exit(&["doctor"]).await;
    let line = out
        .lines()
        .find(|l| l.contains(" database: "))
        .unwrap_or_default()
        .to_owned();
    assert!(line.starts_with("✓ database: "), "{out}");
    assert!(line.contains("has no session tables yet"), "{line}");
    env.reply_text("ok").await;
    let server = env.start().await;
    server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(server.shutdown().await, 0);
    let (_, out, _) = env.run_to_exit(&["doctor"]).await;
    let line = out
        .lines()
        .find(|l| l.contains(" database: "))
        .unwrap_or_default()
        .to_owned();
    assert!(line.starts_with("✓ database: "), "{out}");
    assert!(
        line.contains(&format!("schema {}, schema version 4", pg.schema())),
        "{line}"
    );
    assert!(!out.contains(PASSWORD), "{out}");

    let unreachable = pg_env(&format!("postgres://u:{PASSWORD}@127.0.0.1:1/x")).await;
    let (code, out, _) = unreachable.run_to_exit(&["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ database: cannot connect to PostgreSQL at postgres://u:***@127.0.0.1:1/x"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "{out}");
    // And the server itself refuses to start, saying why without the password.
    let (code, _, err) = unreachable.run_to_exit(&[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://u:***@127.0.0.1:1/x"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}

/// Issue 14 item 4: `migrate-store` copies a SQLite state directory that a server filled into
/// PostgreSQL; a server on PostgreSQL then answers every read exactly as the SQLite one did
/// (the list, sessions, events, artifact resources) and continues a copied session. The URL's
/// password is in no output; a wrong source or destination is refused and changes nothing;
/// a second copy never merges into a session that changed since.
#[tokio::test]
async fn migrate_store_moves_a_state_directory_to_postgres() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let mut env = TestEnv::new().await;
    env.reply_text("A long enough output to be stored as an artifact of the session.")
        .await;
    let server = env.start().await;
    let mut sessions = vec![];
    for task in ["one", "two", "three"] {
        let run = server.call("agent_run_task", json!({"task": task})).await;
        assert_eq!(run["ok"], json!(true), "{run}");
        let artifacts: Vec<String> = run["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["artifact_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(!artifacts.is_empty(), "{run}");
        sessions.push((run["session_id"].as_str().unwrap().to_owned(), artifacts));
    }
    env.reply_text("the second turn").await;
    let first = sessions[0].0.clone();
    let cont = server
        .call(
            "agent_continue_session",
            json!({"session_id": first, "message": "more"}),
        )
        .await;
    assert_eq!(cont["status"], json!("completed"), "{cont}");
    async fn reads(server: &Server, sessions: &[(String, Vec<String>)]) -> Vec<Value> {
        let mut all = vec![server.call("agent_list_sessions", json!({})).await];
        for (id, artifacts) in sessions {
            all.push(
                server
                    .call("agent_get_session", json!({"session_id": id}))
                    .await,
            );
            all.push(
                server
                    .call("agent_get_session_events", json!({"session_id": id}))
                    .await,
            );
            for aid in artifacts {
                let (mime, text) = read(server, format!("artifact://{id}/{aid}")).await;
                all.push(json!([mime, text]));
            }
        }
        all
    }
    let before = reads(&server, &sessions).await;
    assert_eq!(server.shutdown().await, 0);

    let url = url_with_password(&pg);
    // Refused, and nothing written: a destination that is not PostgreSQL, a missing source.
    let (code, _, err) = env
        .run_to_exit(&["migrate-store", "--to", "sqlite:///tmp/x.db"])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a PostgreSQL URL"), "{err}");
    let missing = env.state_dir().join("nope.db");
    let (code, _, err) = env
        .run_to_exit(&["migrate-store", "--to", &url, "--from", &path_str(&missing)])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no SQLite database at"), "{err}");
    assert!(!missing.exists());
    assert!(!err.contains(PASSWORD), "{err}");
    let mut conn = pg.connect().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(pg.schema())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    assert_eq!(tables, 0, "a refused copy created no table");

    env.set(DATABASE_URL, &url);
    let (code, out, err) = env.run_to_exit(&["migrate-store", "--batch", "2"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Copied 3 session(s) (0 already there)"),
        "{out}"
    );
    assert!(out.contains("counts verified"), "{out}");
    assert!(err.contains("3 of 3 sessions done"), "{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}\n{err}"
    );
    assert_eq!(sessions_in_schema(&pg).await, 3);

    // The same environment, now on PostgreSQL: every read as before, and a continuation.
    let server = env.start().await;
    assert_eq!(reads(&server, &sessions).await, before);
    env.reply_text("a third turn, on PostgreSQL").await;
    let cont = server
        .call(
            "agent_continue_session",
            json!({"session_id": first, "message": "again"}),
        )
        .await;
    assert_eq!(cont["status"], json!("completed"), "{cont}");
    let got = server
        .call("agent_get_session", json!({"session_id": first}))
        .await;
    assert_eq!(got["turn_count"], json!(3), "{got}");
    server.shutdown().await;

    // A second copy from the SQLite directory: that session changed since, so it is refused.
    let (code, out, err) = env.run_to_exit(&["migrate-store"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("already in the destination with different contents"),
        "{err}"
    );
}

/// The server's default pool size (`CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS` unset) is the
/// PostgreSQL store's own default.
#[test]
fn the_default_pool_size_is_the_store_s() {
    assert_eq!(
        agent_policy::config::defaults::DATABASE_MAX_CONNECTIONS,
        u64::from(agent_store::postgres::DEFAULT_MAX_CONNECTIONS)
    );
}

/// `CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS` bounds the query pool: with 2, twenty
/// concurrent calls never open more than 2 query connections (plus the `LISTEN` one), counted
/// by their `application_name` in `pg_stat_activity` (the URL's, which the store keeps).
#[tokio::test]
async fn the_pool_size_is_the_configured_one() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let name = pg.schema().to_owned();
    let url = format!("{}&application_name={name}", pg.url());
    let mut env = pg_env(&url).await;
    env.set("CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS", "2");
    env.reply_text("done").await;
    let server = env.start().await;
    let first = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = first["session_id"].as_str().unwrap().to_owned();
    let calls = (0..20).map(|_| {
        let client = server.client.clone();
        let sid = sid.clone();
        async move {
            let args = json!({"session_id": sid}).as_object().cloned().unwrap();
            client
                .call_tool(CallToolRequestParams::new("agent_get_session").with_arguments(args))
                .await
                .unwrap()
        }
    });
    let conn = pg.connect().await;
    let count = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&name)
                .fetch_one(&mut pg.connect().await)
                .await
                .unwrap();
        n
    };
    let (results, during) = tokio::join!(futures::future::join_all(calls), async {
        let mut most = 0;
        for _ in 0..20 {
            most = most.max(count().await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most
    });
    assert!(
        results
            .iter()
            .all(|r| parse_single_text(r)["session_id"] == json!(sid))
    );
    let after = count().await;
    assert!(
        during.max(after) <= 3 && after >= 1,
        "at most 2 pooled + 1 LISTEN connection: {during} during, {after} after"
    );
    let _ = conn.close().await;
    assert_eq!(server.shutdown().await, 0);
}
