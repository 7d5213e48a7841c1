//! The claude_code backend through our server with the real Claude Code CLI (issue 3): the
//! server (native mode, the default) runs the CLI, and the CLI talks to a streaming stand-in
//! for the Messages API through `ANTHROPIC_BASE_URL`. Every test needs the CLI
//! (`agent_testkit::peers::claude_cli`, `scripts/install-claude-cli.sh`).
//!
//! The server runs the CLI through a wrapper that records each run's pid and arguments
//! (`agent_testkit::peers::RecordingWrapper`): that is how the tests know the command lines
//! and check that no process of a CLI's group is left behind.

use std::time::{Duration, Instant};

use agent_testkit::peers::{self, Invocation, RecordingWrapper};
use agent_testkit::processes;
use serde_json::{Value, json};

use crate::support::sse_api::{self, Script};
use crate::support::*;

/// A server on the claude_code backend running the real CLI.
struct Real {
    env: TestEnv,
    /// The CLI's `HOME`; `CLAUDE_CONFIG_DIR` is its `.claude`.
    _home: tempfile::TempDir,
    /// What the server runs as the CLI.
    cli: RecordingWrapper,
}

impl Real {
    async fn new(script: Script) -> Option<Self> {
        let cli = peers::claude_cli()?;
        let mut env = TestEnv::new().await;
        let home = tempfile::tempdir().unwrap();
        let cli = RecordingWrapper::new(&home.path().join("cli"), &cli);
        env.set("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code");
        env.set(
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH",
            &path_str(&cli.path()),
        );
        // For the CLI, which inherits the variables it needs; `ANTHROPIC_BASE_URL` already
        // names the stand-in. The CLI's own settings are passed through by name.
        env.set("ANTHROPIC_API_KEY", "sk-ant-dummy-test-key");
        env.set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
        env.set("DISABLE_AUTOUPDATER", "1");
        env.set("CLAUDE_CODE_MAX_RETRIES", "0");
        env.set(
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,DISABLE_AUTOUPDATER,CLAUDE_CODE_MAX_RETRIES",
        );
        env.set("HOME", &path_str(home.path()));
        env.set("CLAUDE_CONFIG_DIR", &path_str(&home.path().join(".claude")));
        sse_api::mount(&env.api, script).await;
        Some(Self {
            env,
            _home: home,
            cli,
        })
    }

    async fn bodies(&self) -> Vec<Value> {
        sse_api::message_bodies(&self.env.api).await
    }

    /// Calls a tool (at most 60 s) and returns its envelope with the CLI runs it made.
    async fn call(&self, server: &Server, tool: &str, args: Value) -> (Value, Vec<Invocation>) {
        let before = self.cli.invocations().len();
        let Ok(v) = tokio::time::timeout(Duration::from_secs(60), server.call(tool, args)).await
        else {
            panic!(
                "{tool} took over 60 s; requests: {:?}\nserver stderr:\n{}",
                sse_api::request_lines(&self.env.api).await,
                self.env.stderr_log()
            );
        };
        (v, self.cli.invocations().split_off(before))
    }

    /// Waits until no process of any CLI run (the CLI's process group) is alive.
    async fn assert_no_cli_left(&self) {
        let runs = self.cli.invocations();
        assert!(!runs.is_empty(), "the CLI never ran");
        for run in runs {
            processes::wait_until_group_gone(run.pid, processes::GONE_WITHIN).await;
            processes::wait_until_gone(&[run.pid], processes::GONE_WITHIN).await;
        }
    }
}

/// The arguments of the one CLI invocation (`-p` …) among `runs`.
fn invocation(runs: &[Invocation]) -> Vec<String> {
    let calls: Vec<&Invocation> = runs
        .iter()
        .filter(|run| run.args.iter().any(|a| a == "-p"))
        .collect();
    assert_eq!(calls.len(), 1, "one CLI invocation: {runs:?}");
    calls[0].args.clone()
}

/// The value after `flag` in `argv`.
fn flag<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    let at = argv.iter().position(|a| a == flag)?;
    argv.get(at + 1).map(String::as_str)
}

/// The CLI session id the stand-in saw (`metadata.user_id` is a JSON string holding it).
fn cli_session_seen(body: &Value) -> Option<String> {
    let user: Value = serde_json::from_str(body["metadata"]["user_id"].as_str()?).ok()?;
    user["session_id"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn real_cli_run_reports_output_and_usage() {
    let script = Script::text("The stand-in says hi.");
    let Some(mut real) = Real::new(script).await else {
        return;
    };
    // The CLI needs nothing from PATH for a plain answer (the server has the explicit path).
    let empty = tempfile::tempdir().unwrap();
    real.env.set("PATH", &path_str(empty.path()));
    let server = real.env.start().await;
    let (v, runs) = real
        .call(&server, "agent_run_task", json!({"task": "Say hi."}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["status"], json!("completed"));
    assert_eq!(v["result"]["output_text"], json!("The stand-in says hi."));
    assert_eq!(v["summary"], json!("The stand-in says hi."));
    assert_eq!(
        v["warnings"],
        json!([]),
        "native mode reports a stop reason"
    );
    let usage = &v["result"]["usage"];
    assert_eq!(
        (
            usage["input_tokens"].clone(),
            usage["output_tokens"].clone()
        ),
        (json!(11), json!(7)),
        "{v}"
    );
    assert!(
        usage["total_cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{v}"
    );

    let argv = invocation(&runs);
    assert_eq!(
        argv[0..4],
        ["-p", "--output-format", "stream-json", "--verbose"],
        "{argv:?}"
    );
    assert_eq!(flag(&argv, "--permission-mode"), Some("acceptEdits"));
    assert_eq!(flag(&argv, "--resume"), None, "{argv:?}");
    let bodies = real.bodies().await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["stream"], json!(true));
    let sent = sse_api::texts(&bodies[0]);
    assert!(sent.contains("[Current Request]\nSay hi."), "{sent}");
    assert!(
        sent.contains(&path_str(&real.env.cwd())),
        "the CLI ran in the server's working directory: {sent}"
    );
    let sid = v["session_id"].as_str().unwrap();
    assert_eq!(
        real.env.column(sid, "provider_session_id").await,
        cli_session_seen(&bodies[0])
    );
    real.assert_no_cli_left().await;
    server.shutdown().await;
}

/// Records the progress notifications a client receives.
#[derive(Clone, Default)]
struct ProgressRecorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl rmcp::ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::service::RoleClient>,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(params.message.unwrap_or_default());
    }
}

/// Issue 15 item 2: native mode reads the CLI's streamed output, so a run of two model turns
/// (a `Read` tool use, then the answer) reports each turn and the tool use as progress, in
/// order and before the result, and records them as events of the execution; the result is
/// unchanged.
#[tokio::test]
async fn real_cli_streams_progress_for_each_model_turn() {
    let script = Script::ToolsThenText {
        calls: vec![("Read".to_owned(), json!({"file_path": "PLACEHOLDER"}))],
        then: "The notes say hello.".to_owned(),
    };
    let Some(real) = Real::new(script).await else {
        return;
    };
    let notes = real.env.cwd().join("notes.txt");
    std::fs::write(&notes, "hello\n").unwrap();
    // The stand-in's tool call names the file by its absolute path.
    let script = Script::ToolsThenText {
        calls: vec![("Read".to_owned(), json!({"file_path": path_str(&notes)}))],
        then: "The notes say hello.".to_owned(),
    };
    real.env.api.reset().await;
    sse_api::mount(&real.env.api, script).await;

    let mut child = real
        .env
        .command(&[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let recorder = ProgressRecorder::default();
    let client = rmcp::ServiceExt::serve(recorder.clone(), (stdout, stdin))
        .await
        .unwrap();
    let mut params = rmcp::model::CallToolRequestParams::new("agent_run_task").with_arguments(
        json!({"task": "Read notes.txt and say what it says."})
            .as_object()
            .cloned()
            .unwrap(),
    );
    params.meta = Some(rmcp::model::RequestMetaObject::with_progress_token(
        rmcp::model::ProgressToken(rmcp::model::NumberOrString::String("stream".into())),
    ));
    let result = tokio::time::timeout(Duration::from_secs(60), client.call_tool(params))
        .await
        .expect("the run answers within 60 s")
        .unwrap();
    let v = parse_single_text(&result);
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["result"]["output_text"], json!("The notes say hello."));
    // Every notification is sent before the response.
    let seen = recorder.0.lock().unwrap().clone();
    let steps: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|m| m.starts_with("model turn"))
        .collect();
    assert_eq!(
        steps,
        [
            "model turn 1",
            "model turn 1: tool use Read",
            "model turn 2"
        ],
        "{seen:?}"
    );
    let started = seen
        .iter()
        .position(|m| m.starts_with("claude CLI started"));
    let first_step = seen.iter().position(|m| m == "model turn 1");
    let finished = seen
        .iter()
        .position(|m| m.starts_with("claude CLI finished"));
    assert!(started < first_step && first_step < finished, "{seen:?}");
    let sid = v["session_id"].as_str().unwrap();
    let streamed: Vec<(String, i64, Value)> = real
        .env
        .events(sid)
        .await
        .into_iter()
        .filter(|(t, _, _)| t.starts_with("provider_t"))
        .collect();
    assert_eq!(
        streamed,
        [
            ("provider_turn".to_owned(), 0, json!({"turn": 1})),
            (
                "provider_tool_use".to_owned(),
                0,
                json!({"turn": 1, "tool": "Read"})
            ),
            ("provider_turn".to_owned(), 0, json!({"turn": 2})),
        ]
    );
    // The CLI really read the file: its content went back to the model.
    let bodies = real.bodies().await;
    assert!(
        bodies
            .iter()
            .any(|b| b.to_string().contains("hello") && b.to_string().contains("tool_result")),
        "{bodies:?}"
    );
    let _ = client.cancel().await;
    let _ = child.wait().await;
    real.assert_no_cli_left().await;
}

#[tokio::test]
async fn real_cli_continue_resumes_the_cli_session() {
    let script = Script::Texts(vec![
        "First answer: heliotrope.".into(),
        "Second answer: still heliotrope.".into(),
    ]);
    let Some(real) = Real::new(script).await else {
        return;
    };
    let server = real.env.start().await;
    let (v, _) = real
        .call(
            &server,
            "agent_run_task",
            json!({"task": "First message: remember the word heliotrope."}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let claude_session = real
        .env
        .column(&sid, "provider_session_id")
        .await
        .expect("provider_session_id is set after the first run");
    assert!(
        claude_session.len() == 36 && claude_session.matches('-').count() == 4,
        "a CLI session id (UUID): {claude_session}"
    );

    let (c, runs) = real
        .call(
            &server,
            "agent_continue_session",
            json!({"session_id": sid, "message": "Second message: which word?"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true), "{c}");
    assert_eq!(c["workflow"], json!("continue_session"));
    assert_eq!(
        c["result"]["output_text"],
        json!("Second answer: still heliotrope.")
    );
    assert_eq!(c["warnings"], json!([]), "no resume fallback: {c}");
    let argv = invocation(&runs);
    assert_eq!(
        flag(&argv, "--resume"),
        Some(claude_session.as_str()),
        "{argv:?}"
    );

    let bodies = real.bodies().await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let second = &bodies[1];
    // The CLI replays the first exchange as real messages, not our reconstructed context.
    let messages = second["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["role"].as_str())
        .filter(|r| *r != "system")
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{second}");
    let sent = sse_api::texts(second);
    for needle in [
        "First message: remember the word heliotrope.",
        "First answer: heliotrope.",
        "Second message: which word?",
    ] {
        assert!(sent.contains(needle), "missing {needle:?} in {sent}");
    }
    assert!(!sent.contains("[Continuation Session]"), "{sent}");
    assert_eq!(
        cli_session_seen(second).as_deref(),
        Some(claude_session.as_str()),
        "the resumed CLI session is the first one"
    );
    assert_eq!(
        real.env
            .column(&sid, "provider_session_id")
            .await
            .as_deref(),
        Some(claude_session.as_str())
    );
    server.shutdown().await;
}

/// `agent_fork_session` at the latest turn with the real CLI (issue 16 item 3): the fork's
/// continuation runs `--resume <parent's CLI session> --fork-session`, the CLI carries the
/// parent's conversation into a new CLI session of its own, and the parent's CLI session never
/// sees the fork's message.
#[tokio::test]
async fn real_cli_fork_resumes_the_parents_cli_session_as_a_new_one() {
    let script = Script::Texts(vec![
        "Parent answer: marigold.".into(),
        "Fork answer: still marigold.".into(),
        "Parent again: marigold.".into(),
    ]);
    let Some(real) = Real::new(script).await else {
        return;
    };
    let server = real.env.start().await;
    let (v, _) = real
        .call(
            &server,
            "agent_run_task",
            json!({"task": "Parent message: remember marigold."}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let parent = v["session_id"].as_str().unwrap().to_owned();
    let parent_cli = real
        .env
        .column(&parent, "provider_session_id")
        .await
        .expect("the parent's CLI session");

    let (fork, runs) = real
        .call(
            &server,
            "agent_fork_session",
            json!({"session_id": parent, "message": "Fork message: which flower?"}),
        )
        .await;
    assert_eq!(fork["ok"], json!(true), "{fork}");
    assert_eq!(fork["workflow"], json!("fork_session"));
    assert_eq!(fork["warnings"], json!([]), "no resume fallback: {fork}");
    let child = fork["session_id"].as_str().unwrap().to_owned();
    let argv = invocation(&runs);
    assert_eq!(
        flag(&argv, "--resume"),
        Some(parent_cli.as_str()),
        "{argv:?}"
    );
    assert!(argv.iter().any(|a| a == "--fork-session"), "{argv:?}");
    let child_cli = real
        .env
        .column(&child, "provider_session_id")
        .await
        .expect("the fork's CLI session");
    assert_ne!(child_cli, parent_cli);
    let bodies = real.bodies().await;
    let sent = sse_api::texts(&bodies[1]);
    for needle in [
        "Parent message: remember marigold.",
        "Parent answer: marigold.",
        "Fork message: which flower?",
    ] {
        assert!(sent.contains(needle), "missing {needle:?} in {sent}");
    }

    let (again, runs) = real
        .call(
            &server,
            "agent_continue_session",
            json!({"session_id": parent, "message": "Parent again?"}),
        )
        .await;
    assert_eq!(again["ok"], json!(true), "{again}");
    let argv = invocation(&runs);
    assert_eq!(flag(&argv, "--resume"), Some(parent_cli.as_str()));
    assert!(!argv.iter().any(|a| a == "--fork-session"), "{argv:?}");
    let sent = sse_api::texts(&real.bodies().await[2]);
    assert!(
        sent.contains("Parent message: remember marigold."),
        "{sent}"
    );
    assert!(
        !sent.contains("Fork message"),
        "the parent never saw the fork: {sent}"
    );
    assert_eq!(
        real.env
            .column(&parent, "provider_session_id")
            .await
            .as_deref(),
        Some(parent_cli.as_str())
    );
    server.shutdown().await;
    real.assert_no_cli_left().await;
}

#[tokio::test]
async fn real_cli_verification_cannot_write() {
    let Some(real) = Real::new(Script::text("")).await else {
        return;
    };
    let cwd = real.env.cwd();
    std::fs::write(cwd.join("report.txt"), "all good").unwrap();
    // The model tries to create a file and to edit the evidence, then gives its verdict.
    let tools = Script::ToolsThenText {
        calls: vec![
            (
                "Write".into(),
                json!({"file_path": cwd.join("out.txt"), "content": "written by the model"}),
            ),
            (
                "Edit".into(),
                json!({"file_path": cwd.join("report.txt"), "old_string": "all good", "new_string": "tampered"}),
            ),
        ],
        then: "VERDICT: pass\nFINDINGS:\n- report.txt says all good\n".into(),
    };
    sse_api::mount(&real.env.api, tools.clone()).await;
    let server = real.env.start().await;
    let (v, runs) = real
        .call(
            &server,
            "agent_verify_task",
            json!({"task": "Verify report.txt", "scope": "content", "evidence_paths": ["report.txt"]}),
        )
        .await;
    assert!(!cwd.join("out.txt").exists(), "verification wrote a file");
    assert_eq!(
        std::fs::read_to_string(cwd.join("report.txt")).unwrap(),
        "all good",
        "verification edited a file"
    );
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["result"]["verdict"], json!("pass"), "{v}");
    assert_eq!(v["result"]["verification_performed"], json!(true));
    assert_eq!(v["result"]["findings"], json!(["report.txt says all good"]));
    let argv = invocation(&runs);
    assert_eq!(
        flag(&argv, "--permission-mode"),
        Some("default"),
        "{argv:?}"
    );
    assert_eq!(
        flag(&argv, "--disallowedTools"),
        Some("Edit,Write,MultiEdit,NotebookEdit,Bash")
    );
    // Both calls came back to the model as errors, then it answered.
    let bodies = real.bodies().await;
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let results: Vec<Value> = bodies[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .cloned()
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results.iter().all(|r| r["is_error"] == json!(true)),
        "{results:?}"
    );

    // The control: the general profile (acceptEdits) does write the file with the same script.
    sse_api::mount(&real.env.api, tools).await;
    let (v, _) = real
        .call(&server, "agent_run_task", json!({"task": "Write out.txt"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        std::fs::read_to_string(cwd.join("out.txt")).unwrap(),
        "written by the model"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn real_cli_api_errors_are_provider_runtime_errors() {
    let Some(real) = Real::new(Script::Status(400)).await else {
        return;
    };
    let server = real.env.start().await;
    for status in [400, 529] {
        sse_api::mount(&real.env.api, Script::Status(status)).await;
        let (v, _) = real
            .call(&server, "agent_run_task", json!({"task": "hello"}))
            .await;
        assert_eq!(v["ok"], json!(false), "{v}");
        assert_eq!(v["status"], json!("failed"));
        let error = &v["errors"][0];
        assert_eq!(error["code"], json!("provider_runtime_error"), "{v}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "claude CLI reported an error (api_error_status {status}"
            )),
            "{message}"
        );
        assert_eq!(v["summary"], json!(message));
        assert!(
            !real.bodies().await.is_empty(),
            "the CLI reached the stand-in"
        );
        let sid = v["session_id"].as_str().unwrap();
        assert_eq!(
            real.env.column(sid, "status").await.as_deref(),
            Some("failed")
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn real_cli_timeout_kills_the_cli() {
    let script = Script::Delayed(Duration::from_secs(60), Box::new(Script::text("too late")));
    let Some(mut real) = Real::new(script).await else {
        return;
    };
    // Long enough for the real CLI to start and reach the stand-in on two busy cores.
    real.env.set("CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT", "8");
    let server = real.env.start().await;
    let started = Instant::now();
    let (v, runs) = real
        .call(&server, "agent_run_task", json!({"task": "hello"}))
        .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(
        v["errors"][0]["code"],
        json!("claude_code_invocation_error"),
        "{v}"
    );
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("timed out after"), "{message}");
    assert_eq!(v["summary"], json!(message));
    // The CLI was running and waiting on the stand-in when it was killed.
    invocation(&runs);
    assert_eq!(real.bodies().await.len(), 1);
    real.assert_no_cli_left().await;
    server.shutdown().await;
}

/// The real CLI calls an allowlisted federated tool natively through `--mcp-config`, here the
/// reference MCP server (`scripts/install-mcp-peers.sh`).
#[tokio::test]
async fn real_cli_calls_federated_tools_natively() {
    let Some(peers::PeerCommand {
        program: command,
        args,
    }) = peers::everything_server()
    else {
        return;
    };
    let script = Script::ToolsThenText {
        calls: vec![(
            "mcp__everything__echo".to_owned(),
            json!({"message": "from the CLI"}),
        )],
        then: "the echo came back".to_owned(),
    };
    let Some(mut real) = Real::new(script).await else {
        return;
    };
    let config = json!({"downstream_servers": [{
        "name": "everything", "command": command, "args": args,
        "allowed_tools": ["echo"], "profiles_allowed": ["general"]
    }]});
    let path = real.env.cwd().join("federation.json");
    std::fs::write(&path, config.to_string()).unwrap();
    real.env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    real.env
        .set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    let server = real.env.start().await;
    let (v, _) = real
        .call(
            &server,
            "agent_run_task",
            json!({"task": "echo something downstream"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["result"]["output_text"], json!("the echo came back"));
    let bodies = real.bodies().await;
    let last = bodies.last().unwrap();
    let results = last["messages"].to_string();
    assert!(
        results.contains("Echo: from the CLI"),
        "the CLI called the downstream tool natively"
    );
    server.shutdown().await;
}

/// Structured output on the real CLI (issue 16 item 1): the server passes `--json-schema`, the
/// CLI offers the model its structured-output tool, the model (the stand-in) calls it with
/// the answer, and the envelope carries it as `structured_output`.
#[tokio::test]
async fn real_cli_structured_output_reaches_the_envelope() {
    let answer = json!({"verdict": "pass", "score": 3});
    let script = Script::ToolsThenText {
        calls: vec![("StructuredOutput".to_owned(), answer.clone())],
        then: "Done.".to_owned(),
    };
    let Some(real) = Real::new(script).await else {
        return;
    };
    let server = real.env.start().await;
    let schema = json!({
        "type": "object",
        "properties": {"verdict": {"enum": ["pass", "fail"]}, "score": {"type": "integer"}},
        "required": ["verdict", "score"],
        "additionalProperties": false
    });
    let (v, runs) = real
        .call(
            &server,
            "agent_run_task",
            json!({"task": "Judge it.", "output_schema": schema, "max_budget_usd": 5, "model": "claude-sonnet-4-6"}),
        )
        .await;
    let argv = invocation(&runs);
    assert_eq!(
        flag(&argv, "--json-schema"),
        Some(schema.to_string().as_str())
    );
    assert_eq!(flag(&argv, "--max-budget-usd"), Some("5"));
    // The CLI offered the model a tool for the answer.
    let bodies = real.bodies().await;
    let offered: Vec<String> = bodies[0]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        offered.iter().any(|n| n == "StructuredOutput"),
        "{offered:?}"
    );
    assert_eq!(v["ok"], json!(true), "{v}\n{}", real.env.stderr_log());
    assert_eq!(v["result"]["structured_output"], answer, "{v}");
    assert!(v["result"]["usage"]["total_cost_usd"].is_number(), "{v}");
    server.shutdown().await;
    real.assert_no_cli_left().await;
}
