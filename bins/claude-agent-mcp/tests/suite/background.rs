//! Background runs (issue 15 item 1): `wait_seconds` on run, continue and verify answers
//! `running` while the work goes on in the server, and `agent_wait_session` collects the
//! envelope the synchronous call would have returned, kept in the store: more than once, after a
//! restart, through another server on the same store, on SQLite and on PostgreSQL
//! (`docs/reference/tools.md#14-agent_wait_session`, `#15-background-runs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_testkit::postgres::fresh_schema;
use rmcp::model::{
    CallToolRequestParams, NumberOrString, ProgressNotificationParam, ProgressToken,
    RequestMetaObject,
};
use rmcp::service::{NotificationContext, RoleClient};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::sse_api;
use crate::support::*;

/// Long enough to be kept as an `output` artifact, so the envelopes carry one.
const OUTPUT: &str = "The background run finished: a long enough output to become an artifact.";

/// Every model call answers [`OUTPUT`] after `delay`.
async fn slow_replies(env: &TestEnv, delay: Duration) {
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply(OUTPUT))
            .set_delay(delay),
    )
    .await;
}

async fn wait_for(server: &Server, session_id: &str, timeout_seconds: f64) -> Value {
    server
        .call(
            "agent_wait_session",
            json!({"session_id": session_id, "timeout_seconds": timeout_seconds}),
        )
        .await
}

/// The running envelope of `session_id` for `workflow`, whole.
fn running(session_id: &str, workflow: &str, profile: &str) -> Value {
    json!({
        "ok": false,
        "session_id": session_id,
        "status": "running",
        "workflow": workflow,
        "profile": profile,
        "summary": format!("Session {session_id} is still running"),
        "result": {},
        "artifacts": [],
        "warnings": [format!(
            "Session {session_id} is still running in the server: collect its result with agent_wait_session {{\"session_id\": \"{session_id}\"}}"
        )],
        "errors": []
    })
}

/// Starts a run with `wait_seconds: 0`: it answers `running` in well under a second.
async fn start_in_background(server: &Server, task: &str) -> String {
    let started = Instant::now();
    let answer = server
        .call("agent_run_task", json!({"task": task, "wait_seconds": 0}))
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "answered after {took:?}");
    let sid = answer["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&sid), "{answer}");
    assert_eq!(answer, running(&sid, "run_task", "general"));
    sid
}

/// Polls the SQLite database until the session's result is kept.
async fn until_kept(env: &TestEnv, session_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kept: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM session_results WHERE session_id = ?")
                .bind(session_id)
                .fetch_one(&env.db().await)
                .await
                .unwrap();
        if kept == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "no result kept within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn wait_seconds_zero_answers_running_and_the_wait_collects_the_synchronous_envelope() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(3)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "summarise").await;

    // The reference: the same task, synchronously, in another session.
    let (collected, reference) = tokio::join!(
        wait_for(&server, &sid, 60.0),
        server.call("agent_run_task", json!({"task": "summarise"}))
    );
    assert_eq!(collected["ok"], json!(true), "{collected}");
    assert_eq!(collected["session_id"], json!(sid));
    assert_eq!(collected["result"]["output_text"], json!(OUTPUT));
    assert_eq!(collected["artifacts"].as_array().unwrap().len(), 1);
    assert_eq!(
        normalize_envelope(collected.clone()),
        normalize_envelope(reference)
    );
    // Collected again: the same envelope, byte for byte.
    assert_eq!(wait_for(&server, &sid, 0.0).await, collected);
    assert_eq!(wait_for(&server, &sid, 5.0).await, collected);

    // A continuation in the background: running as continue_session, then its own envelope.
    let started = Instant::now();
    let answer = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "and more", "wait_seconds": 0.2}),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(2), "{answer}");
    assert_eq!(answer, running(&sid, "continue_session", "general"));
    let continued = wait_for(&server, &sid, 60.0).await;
    assert_eq!(continued["ok"], json!(true), "{continued}");
    assert_eq!(continued["workflow"], json!("continue_session"));
    assert_eq!(continued["result"]["output_text"], json!(OUTPUT));
    assert_ne!(continued, collected, "the latest execution's envelope");
    assert_eq!(wait_for(&server, &sid, 0.0).await, continued);

    // Work that finishes within wait_seconds answers its envelope, as without it.
    let verified = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify the claim", "wait_seconds": 30}),
        )
        .await;
    assert_eq!(verified["ok"], json!(true), "{verified}");
    assert_eq!(verified["workflow"], json!("verify_task"));
    let vid = verified["session_id"].as_str().unwrap();
    assert_eq!(wait_for(&server, vid, 0.0).await, verified);
    server.shutdown().await;
}

#[tokio::test]
async fn a_verification_in_the_background_is_collected_whole() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(2)).await;
    let server = env.start().await;
    let answer = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify the claim", "wait_seconds": 0}),
        )
        .await;
    let sid = answer["session_id"].as_str().unwrap().to_owned();
    assert_eq!(answer, running(&sid, "verify_task", "verification"));
    let (collected, reference) = tokio::join!(
        wait_for(&server, &sid, 60.0),
        server.call("agent_verify_task", json!({"task": "Verify the claim"}))
    );
    assert_eq!(collected["workflow"], json!("verify_task"), "{collected}");
    assert!(collected["result"]["verdict"].is_string(), "{collected}");
    assert_eq!(normalize_envelope(collected), normalize_envelope(reference));
    server.shutdown().await;
}

#[tokio::test]
async fn a_result_kept_before_a_restart_is_collected_after_it_through_another_server() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_millis(500)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "t").await;
    // A second server on the same state directory collects it as well.
    let other = env.start().await;
    let through_other = wait_for(&other, &sid, 60.0).await;
    assert_eq!(through_other["ok"], json!(true), "{through_other}");
    assert_eq!(through_other["result"]["output_text"], json!(OUTPUT));
    let here = wait_for(&server, &sid, 0.0).await;
    assert_eq!(here, through_other);
    until_kept(&env, &sid).await;
    server.kill().await;
    other.kill().await;

    let restarted = env.start().await;
    assert_eq!(wait_for(&restarted, &sid, 0.0).await, here);
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_run_cut_off_by_a_kill_is_collected_as_interrupted_after_a_restart() {
    let mut env = TestEnv::new().await;
    // Renewed every 2/3 s while the run lives; the sweeper of the next server takes it within
    // 1.5 TTLs of the kill.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    slow_replies(&env, Duration::from_secs(60)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "t").await;
    env.wait_for_request().await;
    server.kill().await;

    let restarted = env.start().await;
    let started = Instant::now();
    let collected = wait_for(&restarted, &sid, 30.0).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    let message = format!(
        "Session {sid} was interrupted before its execution recorded a result; continue it with agent_continue_session"
    );
    assert_eq!(
        collected,
        json!({
            "ok": false, "session_id": sid, "status": "failed", "workflow": "run_task",
            "profile": "general", "summary": message, "result": {}, "artifacts": [],
            "warnings": [],
            "errors": [{"code": "session_interrupted", "message": message, "details": null}]
        })
    );
    let got = restarted
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("interrupted"));
    restarted.shutdown().await;
}

/// Over stdio the server lives as long as its client's connection: closing it ends the server
/// and the work it still runs, which a later server collects as `session_interrupted`.
#[tokio::test]
async fn closing_stdio_ends_the_server_and_its_background_run_which_is_collected_interrupted() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    slow_replies(&env, Duration::from_secs(60)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "t").await;
    env.wait_for_request().await;
    let started = Instant::now();
    assert_eq!(server.shutdown().await, 0);
    assert!(started.elapsed() < Duration::from_secs(10));

    let restarted = env.start().await;
    let collected = wait_for(&restarted, &sid, 30.0).await;
    assert_eq!(
        collected["errors"][0]["code"],
        json!("session_interrupted"),
        "{collected}"
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_waited_on_session_makes_the_wait_return_cancelled() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(60)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "t").await;
    env.wait_for_request().await;
    let started = Instant::now();
    let (collected, cancelled) = tokio::join!(wait_for(&server, &sid, 60.0), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .call("agent_cancel_session", json!({"session_id": sid}))
            .await
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(cancelled["ok"], json!(true), "{cancelled}");
    assert_eq!(cancelled["result"]["status"], json!("cancelled"));
    let message = format!("Session {sid} was cancelled: cancelled by agent_cancel_session");
    assert_eq!(
        collected,
        json!({
            "ok": false, "session_id": sid, "status": "failed", "workflow": "run_task",
            "profile": "general", "summary": message, "result": {}, "artifacts": [],
            "warnings": [],
            "errors": [{"code": "session_cancelled", "message": message, "details": null}]
        })
    );
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("cancelled"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_wait_that_times_out_answers_running_and_bad_arguments_are_refused() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(60)).await;
    let server = env.start().await;
    let sid = start_in_background(&server, "t").await;
    let started = Instant::now();
    let answer = wait_for(&server, &sid, 1.0).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(answer, running(&sid, "run_task", "general"));
    assert_eq!(
        wait_for(&server, &sid, 0.0).await,
        running(&sid, "run_task", "general")
    );

    // Unknown session: agent_get_session's error.
    assert_eq!(
        wait_for(&server, "sess_0000000000000000", 1.0).await,
        json!({"error": {"code": "session_not_found", "message": "Session not found: sess_0000000000000000"}})
    );
    // Bounds and types: the schema layer.
    for (tool, args, message) in [
        (
            "agent_run_task",
            json!({"task": "t", "wait_seconds": -1}),
            "-1 is less than the minimum of 0",
        ),
        (
            "agent_run_task",
            json!({"task": "t", "wait_seconds": 3601}),
            "3601 is greater than the maximum of 3600",
        ),
        (
            "agent_continue_session",
            json!({"session_id": sid, "message": "m", "wait_seconds": "5"}),
            "'5' is not of type 'number'",
        ),
        (
            "agent_verify_task",
            json!({"task": "t", "wait_seconds": true}),
            "True is not of type 'number'",
        ),
        (
            "agent_wait_session",
            json!({"session_id": sid, "timeout_seconds": -0.5}),
            "-0.5 is less than the minimum of 0",
        ),
        (
            "agent_wait_session",
            json!({"session_id": sid, "timeout_seconds": 4000}),
            "4000 is greater than the maximum of 3600",
        ),
        (
            "agent_wait_session",
            json!({"timeout_seconds": 1}),
            "'session_id' is a required property",
        ),
    ] {
        let result = server.call_raw(tool, args.clone()).await;
        assert_eq!(result.is_error, Some(true), "{tool} {args}: {result:?}");
        assert_eq!(
            only_text(&result),
            format!("Input validation error: {message}"),
            "{tool} {args}"
        );
    }
    // Nothing was created by the refused calls: only the background run's session.
    assert_eq!(env.session_count().await, 1);
    let cancelled = server
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(cancelled["ok"], json!(true), "{cancelled}");
    server.shutdown().await;
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

#[tokio::test]
async fn a_wait_with_a_progress_token_reports_progress() {
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(3)).await;
    let (mut child, stdin, stdout) = env.spawn_stdio();
    let recorder = Recorder::default();
    let client = recorder.clone().serve((stdout, stdin)).await.unwrap();
    let start = CallToolRequestParams::new("agent_run_task").with_arguments(
        json!({"task": "t", "wait_seconds": 0})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let answer = parse_single_text(&client.call_tool(start).await.unwrap());
    let sid = answer["session_id"].as_str().unwrap().to_owned();
    assert_eq!(answer["status"], json!("running"));

    let mut wait = CallToolRequestParams::new("agent_wait_session").with_arguments(
        json!({"session_id": sid, "timeout_seconds": 60})
            .as_object()
            .cloned()
            .unwrap(),
    );
    wait.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("wait-1".into()),
    )));
    let collected = parse_single_text(&client.call_tool(wait).await.unwrap());
    assert_eq!(collected["ok"], json!(true), "{collected}");
    // Every notification is sent before the response. The rmcp client gives every call a
    // token of its own (the start call's notifications come first): the wait's are the last.
    let all = recorder.0.lock().unwrap().clone();
    let token = all.last().unwrap().progress_token.clone();
    let seen: Vec<_> = all
        .into_iter()
        .filter(|p| p.progress_token == token)
        .collect();
    let messages: Vec<&str> = seen.iter().filter_map(|p| p.message.as_deref()).collect();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].progress < w[1].progress),
        "monotonic: {seen:?}"
    );
    assert_eq!(messages[0], format!("session {sid} running (waited 0s)"));
    assert_eq!(
        messages.last().copied(),
        Some(format!("session {sid} completed").as_str())
    );
    let _ = client.cancel().await;
    let _ = child.wait().await;
}

/// On PostgreSQL: started through one server, collected through another on the same schema,
/// twice, and equal to the synchronous envelope.
#[tokio::test]
async fn on_postgres_a_background_run_is_collected_through_any_server() {
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_DATABASE_URL", pg.url());
    slow_replies(&env, Duration::from_secs(3)).await;
    let a = env.start().await;
    let b = env.start().await;
    let sid = start_in_background(&a, "summarise").await;
    let (collected, reference) = tokio::join!(
        wait_for(&b, &sid, 60.0),
        a.call("agent_run_task", json!({"task": "summarise"}))
    );
    assert_eq!(collected["ok"], json!(true), "{collected}");
    assert_eq!(collected["result"]["output_text"], json!(OUTPUT));
    assert_eq!(
        normalize_envelope(collected.clone()),
        normalize_envelope(reference)
    );
    assert_eq!(wait_for(&a, &sid, 0.0).await, collected);
    a.kill().await;
    b.kill().await;
    let restarted = env.start().await;
    assert_eq!(wait_for(&restarted, &sid, 0.0).await, collected);
    restarted.shutdown().await;
}

/// Issue 15: the real Claude Code CLI, as the MCP client of this server (stdio), starts a run
/// with `wait_seconds: 0` and collects it with `agent_wait_session`. The CLI's model is the
/// streaming stand-in, scripted to call the two tools (the wait with the session id the first
/// result named); this server's own model is the test's slow stand-in.
#[tokio::test]
async fn the_real_claude_code_cli_starts_a_background_run_and_collects_it() {
    let Some(cli) = agent_testkit::peers::claude_cli() else {
        return;
    };
    let env = TestEnv::new().await;
    slow_replies(&env, Duration::from_secs(3)).await;
    let model = sse_api::start(sse_api::Script::ToolsThenText {
        calls: vec![
            (
                "mcp__agent__agent_run_task".to_owned(),
                json!({"task": "summarise", "wait_seconds": 0}),
            ),
            (
                "mcp__agent__agent_wait_session".to_owned(),
                json!({"session_id": sse_api::SESSION_PLACEHOLDER, "timeout_seconds": 30}),
            ),
        ],
        then: "collected".to_owned(),
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let mut server_env: serde_json::Map<String, Value> = env
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    server_env.insert("PATH".to_owned(), json!(path));
    let config = json!({"mcpServers": {"agent": {
        "type": "stdio", "command": BIN, "args": [], "env": server_env
    }}});
    let run = tokio::process::Command::new(&cli)
        .args([
            "-p",
            "--output-format",
            "json",
            "--max-turns",
            "5",
            "--setting-sources",
            "user",
            "--strict-mcp-config",
            "--mcp-config",
            &config.to_string(),
            "--allowedTools",
            "mcp__agent__agent_run_task,mcp__agent__agent_wait_session",
            "--",
            "Run the task in the background, then collect its result.",
        ])
        .current_dir(env.cwd())
        .env_clear()
        .env("PATH", &path)
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env("ANTHROPIC_API_KEY", "sk-ant-dummy-test-key")
        .env("ANTHROPIC_BASE_URL", model.uri())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the CLI finishes within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let requests = sse_api::request_lines(&model).await;
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{requests:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    assert_eq!(answer["result"], json!("collected"), "{stdout}");

    // What the CLI got back from each tool, as the model saw it.
    let bodies = sse_api::message_bodies(&model).await;
    let last = bodies
        .iter()
        .rev()
        .find(|b| sse_api::tool_results(b) == 2)
        .unwrap_or_else(|| panic!("no request with both tool results: {requests:?}"));
    let results: Vec<String> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect();
    let sid = sse_api::last_session_id(&results[0]).expect("the start names its session");
    assert!(
        results[0].contains(r#"\"status\":\"running\""#),
        "{}",
        results[0]
    );
    assert!(results[0].contains("agent_wait_session"), "{}", results[0]);
    assert!(results[1].contains(&sid), "{}", results[1]);
    assert!(
        results[1].contains(r#"\"status\":\"completed\""#),
        "{}",
        results[1]
    );
    assert!(results[1].contains(OUTPUT), "{}", results[1]);
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed")
    );
}

/// The same pattern on the `claude_code` backend (native mode, a fake CLI that answers after
/// 3 s, streaming one model turn first): `wait_seconds: 0` answers `running` at once, a wait
/// with progress reports the CLI's streamed turn, and the collected envelope is the CLI's
/// result; collecting again gives the same bytes.
#[tokio::test]
async fn a_background_run_on_the_claude_code_backend_is_collected_whole() {
    let cli = super::claude_code::Cli::new("native").await;
    cli.script("sleep", "3");
    cli.script(
        "stdout",
        &format!(
            "{}\n{}\n",
            json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "working"}]}}),
            json!({"type": "result", "subtype": "success", "is_error": false,
                   "result": "done by the CLI", "session_id": "cli-1", "num_turns": 1,
                   "usage": {"input_tokens": 3, "output_tokens": 2}, "total_cost_usd": 0.001})
        ),
    );
    let server = cli.env.start().await;
    let sid = start_in_background(&server, "a long job").await;
    let collected = wait_for(&server, &sid, 60.0).await;
    assert_eq!(collected["ok"], json!(true), "{collected}");
    assert_eq!(collected["session_id"], json!(sid));
    assert_eq!(collected["status"], json!("completed"));
    assert_eq!(collected["result"]["output_text"], json!("done by the CLI"));
    assert_eq!(
        collected["result"]["usage"]["total_cost_usd"],
        json!(0.001),
        "{collected}"
    );
    assert_eq!(wait_for(&server, &sid, 0.0).await, collected);
    server.shutdown().await;
}
