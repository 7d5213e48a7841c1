//! The `claude_code` backend against a fake `claude` script (every path) and, when
//! `CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI` names a real Claude Code CLI (see
//! `scripts/install-claude-cli.sh`), against the real CLI talking to a local stand-in for the
//! Messages API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{SYSTEM, request};
use agent_backends::claude_code::prompt::{
    INSTRUCTIONS_CONTINUATION_CONTEXT, INSTRUCTIONS_FLAT_CONTINUATION, INSTRUCTIONS_INITIAL,
    SEPARATOR, TOOLS_NOTE,
};
use agent_backends::claude_code::{
    ARG_FORK_SESSION, MSG_CLI_NOT_FOUND, MSG_CLI_NOT_FOUND_STARTUP, WARN_EMPTY_RESPONSE,
    WARN_HISTORY_TRUNCATED, WARN_MAX_TURNS_PREFIX, WARN_STOP_REASON_LIMITED,
    WARN_TOOLS_NOT_SUPPORTED, permission_denials_warning, resume_fallback_warning,
    tool_not_forwarded_warning,
};
use agent_backends::{ClaudeCodeBackend, ClaudeCodeConfig, ClaudeCodeMode};
use agent_core::continuation::{MediationInclusion, WindowPolicy, build_context};
use agent_core::verification::classify;
use agent_core::{
    BackendOutput, BackendRequest, BackendStep, ChatMessage, ChatRole, ErrorCode, ExecContext,
    ExecutionBackend, ExecutionError, FailureKind, Profile, ProgressSink, SessionRecord,
    SessionStatus, StepSink, StoredEvent, Timestamp, ToolDefinition, Usage, Workflow,
};
use agent_testkit::fake_cli::{self, FakeCli};
use agent_testkit::peers::RecordingWrapper;
use agent_testkit::processes;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const FIXTURE_SUCCESS: &str = include_str!("fixtures/claude-2.1.332-success.json");
const FIXTURE_MAX_TURNS: &str = include_str!("fixtures/claude-2.1.332-error-max-turns.json");
const FIXTURE_API_529: &str = include_str!("fixtures/claude-2.1.332-api-error-529.json");

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fake `claude` (agent-testkit's) in `<tmp>/bin/claude`, its control files in `<tmp>/ctl`,
/// and a working directory `<tmp>/work`.
struct Fake {
    tmp: TempDir,
    cli: FakeCli,
}

impl std::ops::Deref for Fake {
    type Target = FakeCli;

    fn deref(&self) -> &FakeCli {
        &self.cli
    }
}

impl Fake {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["bin", "ctl", "work"] {
            std::fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        let cli = FakeCli::install(&tmp.path().join("bin"), &tmp.path().join("ctl"));
        Fake { tmp, cli }
    }

    fn cli(&self) -> PathBuf {
        self.cli.path().to_path_buf()
    }

    fn bin_dir(&self) -> PathBuf {
        self.tmp.path().join("bin")
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work").canonicalize().unwrap()
    }

    /// The script's PID, its process group, then its children's PIDs.
    fn pids(&self, n: usize) -> Vec<i32> {
        self.read(&format!("pids.{n}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    fn config(&self, mode: ClaudeCodeMode) -> ClaudeCodeConfig {
        ClaudeCodeConfig {
            cli_path: Some(self.cli()),
            model: "claude-test".to_owned(),
            timeout: Duration::from_secs(20),
            mode,
            limited_tool_forwarding: false,
            env_passthrough: Vec::new(),
            extra_env: vec![(
                fake_cli::CONTROL_VAR.to_owned(),
                self.ctl().to_string_lossy().into_owned(),
            )],
            mcp_servers: Vec::new(),
            setting_sources: vec!["user".to_owned()],
        }
    }

    fn backend(&self, mode: ClaudeCodeMode) -> ClaudeCodeBackend {
        ClaudeCodeBackend::new(self.config(mode))
    }

    fn request(&self, task: &str) -> BackendRequest {
        let mut request = request(task);
        request.working_directory = Some(self.work());
        request
    }
}

async fn run(backend: &ClaudeCodeBackend, request: BackendRequest) -> BackendOutput {
    backend
        .execute(request, &ExecContext::default())
        .await
        .unwrap()
}

async fn fail(backend: &ClaudeCodeBackend, request: BackendRequest) -> ExecutionError {
    backend
        .execute(request, &ExecContext::default())
        .await
        .unwrap_err()
}

fn initial_prompt(task: &str) -> String {
    format!(
        "[System]\n{SYSTEM}{SEPARATOR}[Current Request]\n{task}{SEPARATOR}[Instructions]\n{INSTRUCTIONS_INITIAL}"
    )
}

async fn assert_all_dead(pids: &[i32]) {
    processes::wait_until_gone(pids, processes::GONE_WITHIN).await;
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl ProgressSink for Recorder {
    fn report(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

fn json_line(value: Value) -> String {
    format!("{value}\n")
}

fn stored(event_type: &str, payload: Value) -> StoredEvent {
    StoredEvent {
        event_id: 0,
        session_id: "sess_1".to_owned(),
        event_type: event_type.to_owned(),
        turn_index: 0,
        payload,
        created_at: String::new(),
    }
}

fn session_record(working_directory: &Path) -> SessionRecord {
    let now = Timestamp::now();
    SessionRecord {
        session_id: "sess_1".to_owned(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        provider: "claude".to_owned(),
        provider_session_id: None,
        status: SessionStatus::Completed,
        working_directory: Some(working_directory.to_string_lossy().into_owned()),
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        request_count: 6,
        turn_count: 6,
        artifact_count: 0,
        summary_latest: Some("Latest summary".to_owned()),
        locked_by: None,
        lock_expires_at: None,
        lock_generation: 0,
        fork: None,
        usage: Default::default(),
    }
}

/// Six prior turns, the first user request longer than 2000 characters.
fn six_turn_events() -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for i in 1..=6 {
        let text = if i == 2 {
            format!("u2 {}", "y".repeat(2100))
        } else {
            format!("u{i}")
        };
        let key = if i == 1 { "task" } else { "message" };
        events.push(stored("user_input", json!({ key: text })));
        events.push(stored(
            "provider_response_summary",
            json!({"summary": format!("o{i}"), "stop_reason": null}),
        ));
    }
    events
}

fn tool(name: &str, schema: Value) -> ToolDefinition {
    ToolDefinition {
        name: name.to_owned(),
        description: format!("Describes {name}").into(),
        input_schema: schema.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Fake CLI: text mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn text_mode_argv_null_stdin_cwd_and_output() {
    let fake = Fake::new();
    fake.set("stdout", "  hello from the fake  \n\n");
    let output = run(
        &fake.backend(ClaudeCodeMode::Text),
        fake.request("  Do the thing  "),
    )
    .await;
    assert_eq!(
        output,
        BackendOutput {
            output_text: "hello from the fake".to_owned(),
            turn_count: 1,
            stop_reason: Some("backend_defaulted".to_owned()),
            warnings: vec![WARN_STOP_REASON_LIMITED.to_owned()],
            usage: None,
            provider_session_id: None,
            transcript: None,
        }
    );
    assert_eq!(fake.invocations(), 1);
    let argv = fake.argv(1);
    assert_eq!(
        argv[..6],
        [
            "--model",
            "claude-test",
            "--setting-sources",
            "user",
            "--strict-mcp-config",
            "--print"
        ]
    );
    assert_eq!(argv[6..], [initial_prompt("Do the thing")]);
    assert_eq!(fake.stdin(1), "");
    assert_eq!(fake.cwd(1), fake.work().to_string_lossy());
}

#[tokio::test]
async fn text_mode_without_model_and_empty_stdout() {
    let fake = Fake::new();
    let mut config = fake.config(ClaudeCodeMode::Text);
    config.model = String::new();
    let output = run(&ClaudeCodeBackend::new(config), fake.request("task")).await;
    assert_eq!(
        fake.argv(1),
        [
            "--setting-sources".to_owned(),
            "user".to_owned(),
            "--strict-mcp-config".to_owned(),
            "--print".to_owned(),
            initial_prompt("task")
        ]
    );
    assert_eq!(output.output_text, "");
    assert_eq!(
        output.warnings,
        [WARN_STOP_REASON_LIMITED, WARN_EMPTY_RESPONSE]
    );
}

#[tokio::test]
async fn the_cli_never_runs_without_its_working_directory() {
    // It used to fall back to the server's own CWD.
    let fake = Fake::new();
    fake.set("stdout", "ok");
    let backend = fake.backend(ClaudeCodeMode::Text);
    let missing = fake.tmp.path().join("does-not-exist");
    let mut req = request("t");
    req.working_directory = Some(missing.clone());
    let err = fail(&backend, req).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
    assert_eq!(
        err.message,
        format!(
            "claude CLI not started: working directory '{}' does not exist or is not a directory",
            missing.display()
        )
    );
    let err = fail(&backend, request("t")).await;
    assert_eq!(
        err.message,
        "claude CLI not started: no working directory was given"
    );
    assert_eq!(fake.invocations(), 0);
    run(&backend, fake.request("t")).await;
    assert_eq!(fake.cwd(1), fake.work().to_string_lossy());
}

#[tokio::test]
async fn non_zero_exit_is_an_invocation_error() {
    for mode in [ClaudeCodeMode::Text, ClaudeCodeMode::Native] {
        let fake = Fake::new();
        fake.set("exit", "1").set("stderr", "  boom \n");
        let err = fail(&fake.backend(mode), fake.request("t")).await;
        assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError, "{mode}");
        assert_eq!(err.message, "claude CLI exited with code 1: boom", "{mode}");
        assert_eq!(err.kind, FailureKind::Unspecified);
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    for mode in [ClaudeCodeMode::Text, ClaudeCodeMode::Native] {
        let fake = Fake::new();
        fake.set("sleep", "30").set("grandchild", "");
        let mut config = fake.config(mode);
        config.timeout = Duration::from_secs(2);
        let started = Instant::now();
        let err = fail(&ClaudeCodeBackend::new(config), fake.request("t")).await;
        assert!(started.elapsed() < Duration::from_secs(8), "{mode}");
        assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
        assert_eq!(err.message, "claude CLI timed out after 2s");
        assert_eq!(err.kind, FailureKind::Timeout);
        let pids = fake.pids(1);
        assert_eq!(pids[0], pids[1], "the CLI leads its own process group");
        assert_eq!(
            pids.len(),
            4,
            "script, group, grandchild, sleeper: {pids:?}"
        );
        assert_all_dead(&[pids[0], pids[2], pids[3]]).await;
        let class = classify(&err).unwrap();
        assert_eq!(class.failure_class, "backend_timeout");
    }
}

#[tokio::test]
async fn cancellation_kills_the_process_group_promptly() {
    let fake = Fake::new();
    fake.set("sleep", "1000").set("grandchild", "");
    let backend = fake.backend(ClaudeCodeMode::Native);
    let cancel = CancellationToken::new();
    let recorder = Arc::new(Recorder::default());
    let ctx = ExecContext::new(cancel.clone(), recorder.clone());
    let trigger = {
        let cancel = cancel.clone();
        let ctl = fake.ctl().to_path_buf();
        tokio::spawn(async move {
            // Cancel once the script has started its children (generous on a busy machine).
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let pids = std::fs::read_to_string(ctl.join("pids.1")).unwrap_or_default();
                if pids.split_whitespace().count() >= 4 {
                    break;
                }
                assert!(Instant::now() < deadline, "the fake CLI did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
            Instant::now()
        })
    };
    let err = backend.execute(fake.request("t"), &ctx).await.unwrap_err();
    let cancelled_at = trigger.await.unwrap();
    // Promptly: far less than the script's 1000 s, with room for a busy machine.
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    assert_eq!(err, ExecutionError::cancelled());
    let pids = fake.pids(1);
    assert_all_dead(&[pids[0], pids[2], pids[3]]).await;
    let progress = recorder.0.lock().unwrap().clone();
    assert!(
        progress.iter().any(|m| m.contains("cancelled")),
        "{progress:?}"
    );

    // Already cancelled: the CLI is not even started.
    let err = backend.execute(fake.request("t"), &ctx).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Cancelled);
    assert_eq!(fake.invocations(), 1);
}

#[tokio::test]
async fn dropping_the_execution_kills_the_process_group() {
    let fake = Fake::new();
    fake.set("sleep", "1000").set("grandchild", "");
    let backend = fake.backend(ClaudeCodeMode::Native);
    let ctx = ExecContext::default();
    let ctl = fake.ctl();
    let started = async {
        for _ in 0..1500 {
            let pids = std::fs::read_to_string(ctl.join("pids.1")).unwrap_or_default();
            if pids.split_whitespace().count() >= 4 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the fake CLI did not start");
    };
    tokio::select! {
        result = backend.execute(fake.request("t"), &ctx) => panic!("finished: {result:?}"),
        () = started => {}
    }
    // The execution future was dropped without cancelling.
    let pids = fake.pids(1);
    assert_all_dead(&[pids[0], pids[2], pids[3]]).await;
}

#[tokio::test]
async fn processes_left_running_after_a_normal_exit_are_killed() {
    let fake = Fake::new();
    fake.set("grandchild", "").set("stdout", "done");
    let started = Instant::now();
    let output = run(&fake.backend(ClaudeCodeMode::Text), fake.request("t")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output.output_text, "done");
    let pids = fake.pids(1);
    assert_all_dead(&pids[2..]).await;
}

#[tokio::test]
async fn stdout_beyond_the_cap_kills_the_group_with_a_clear_error() {
    for mode in [ClaudeCodeMode::Text, ClaudeCodeMode::Native] {
        let fake = Fake::new();
        fake.set("grandchild", "")
            .set("stdout_flood", &(100 * 1024 * 1024).to_string());
        let before = processes::peak_rss();
        let started = Instant::now();
        let err = fail(&fake.backend(mode), fake.request("t")).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{mode}");
        assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError, "{mode}");
        assert_eq!(
            err.message,
            "claude CLI wrote more than 16 MiB on stdout (the output limit); its process group was killed",
            "{mode}"
        );
        let grown = processes::peak_rss().saturating_sub(before);
        assert!(
            grown < 48 * 1024 * 1024,
            "{mode}: peak RSS grew by {grown} bytes"
        );
        let pids = fake.pids(1);
        assert_all_dead(&pids[2..]).await;
    }
}

#[tokio::test]
async fn stderr_is_drained_and_its_message_bounded() {
    let fake = Fake::new();
    fake.set("stderr_flood", &(64 * 1024 * 1024).to_string())
        .set("stderr", "\nthe real error at the end\n")
        .set("exit", "3");
    let before = processes::peak_rss();
    let err = fail(&fake.backend(ClaudeCodeMode::Text), fake.request("t")).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
    assert!(
        err.message.starts_with("claude CLI exited with code 3: "),
        "{}",
        &err.message[..80]
    );
    assert!(err.message.ends_with("the real error at the end"));
    assert!(
        err.message.len() <= 4 * 1024 + 200,
        "message of {} bytes",
        err.message.len()
    );
    let grown = processes::peak_rss().saturating_sub(before);
    // Other tests of this process run concurrently (the stdout one keeps up to 16 MiB).
    assert!(grown < 48 * 1024 * 1024, "peak RSS grew by {grown} bytes");
}

const PLANTED: &str = "CLAUDE_AGENT_MCP_TEST_PLANTED_ENV";

/// The CLI inherits only the base set, its own variables and what the operator lists: never
/// the server's bearer token or any other secret of the server's environment. This process's
/// environment cannot be changed safely, so the test runs itself again in a child process
/// with the variables planted.
#[tokio::test]
async fn the_cli_gets_a_minimal_environment() {
    if std::env::var_os(PLANTED).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                concat!(module_path!(), "::the_cli_gets_a_minimal_environment")
                    .split_once("::")
                    .unwrap()
                    .1,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PLANTED, "1")
            .env("SECRET_X", "planted-secret")
            .env("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "planted-bearer")
            .env("OPERATOR_LISTED", "listed-value")
            .env("HOME", "/planted-home")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert_eq!(std::env::var("SECRET_X").unwrap(), "planted-secret");
    let fake = Fake::new();
    fake.set("stdout", "x");
    let mut config = fake.config(ClaudeCodeMode::Text);
    config.env_passthrough = vec!["OPERATOR_LISTED".to_owned()];
    run(&ClaudeCodeBackend::new(config), fake.request("t")).await;
    let env = fake.read("env.1");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for absent in [
        "SECRET_X",
        "CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN",
        PLANTED,
        "CARGO_MANIFEST_DIR",
    ] {
        assert!(!names.contains(&absent), "{absent} reached the CLI: {env}");
    }
    assert!(!env.contains("planted-secret") && !env.contains("planted-bearer"));
    for line in [
        "HOME=/planted-home",
        "OPERATOR_LISTED=listed-value",
        &format!("{}={}", fake_cli::CONTROL_VAR, fake.ctl().display()),
        &format!("PATH={}", std::env::var("PATH").unwrap()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing: {env}");
    }
}

#[tokio::test]
async fn missing_cli_is_unavailable() {
    let fake = Fake::new();
    let empty = fake.tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut config = fake.config(ClaudeCodeMode::Native);
    config.cli_path = Some(fake.tmp.path().join("nope/claude"));
    config
        .extra_env
        .push(("PATH".to_owned(), empty.to_string_lossy().into_owned()));
    let backend = ClaudeCodeBackend::new(config);
    assert_eq!(backend.locate(), None);
    let err = fail(&backend, request("t")).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeUnavailable);
    assert_eq!(err.message, MSG_CLI_NOT_FOUND);
    assert_eq!(classify(&err).unwrap().failure_class, "backend_unavailable");
    let err = backend.check().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ClaudeCodeUnavailable);
    assert_eq!(err.message, MSG_CLI_NOT_FOUND_STARTUP);

    // Removing the CLI after the backend was built.
    let backend = fake.backend(ClaudeCodeMode::Text);
    std::fs::remove_file(fake.cli()).unwrap();
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeUnavailable);
}

#[tokio::test]
async fn invalid_explicit_path_falls_back_to_path() {
    let fake = Fake::new();
    fake.set("stdout", "via PATH");
    let mut config = fake.config(ClaudeCodeMode::Text);
    config.cli_path = Some(fake.tmp.path().join("missing-claude"));
    config.extra_env.push((
        "PATH".to_owned(),
        format!("{}:/usr/bin:/bin", fake.bin_dir().display()),
    ));
    let backend = ClaudeCodeBackend::new(config);
    assert_eq!(backend.locate(), Some(fake.cli()));
    assert_eq!(
        run(&backend, fake.request("t")).await.output_text,
        "via PATH"
    );
    // A directory is not a regular file either.
    let mut config = fake.config(ClaudeCodeMode::Text);
    config.cli_path = Some(fake.bin_dir());
    config.extra_env.push((
        "PATH".to_owned(),
        fake.bin_dir().to_string_lossy().into_owned(),
    ));
    assert_eq!(ClaudeCodeBackend::new(config).locate(), Some(fake.cli()));
}

#[tokio::test]
async fn spawn_failure_is_an_invocation_error() {
    let fake = Fake::new();
    let not_executable = fake.tmp.path().join("claude-noexec");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let mut config = fake.config(ClaudeCodeMode::Native);
    config.cli_path = Some(not_executable.clone());
    let backend = ClaudeCodeBackend::new(config);
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
    assert!(
        err.message.starts_with("claude CLI invocation failed: "),
        "{}",
        err.message
    );
    let err = backend.check().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ExecutionBackendUnavailable);
    assert_eq!(
        err.message,
        format!(
            "claude CLI at '{}' is not executable",
            not_executable.display()
        )
    );
}

#[tokio::test]
async fn startup_check_runs_version() {
    let fake = Fake::new();
    let backend = fake.backend(ClaudeCodeMode::Native);
    assert_eq!(backend.check().await.unwrap(), "9.9.9 (Claude Code)");
    assert_eq!(fake.invocations(), 0);
    fake.set("version_exit", "3")
        .set("version_stderr", " bad version \n");
    let err = backend.check().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ExecutionBackendUnavailable);
    assert_eq!(
        err.message,
        "claude CLI version check failed (exit 3): bad version"
    );
}

#[tokio::test]
async fn extra_env_reaches_the_cli_and_progress_is_reported() {
    let fake = Fake::new();
    fake.set("stdout", "x");
    let mut config = fake.config(ClaudeCodeMode::Text);
    config
        .extra_env
        .push(("SOME_SETTING".to_owned(), "on".to_owned()));
    let recorder = Arc::new(Recorder::default());
    let ctx = ExecContext::new(CancellationToken::new(), recorder.clone());
    ClaudeCodeBackend::new(config)
        .execute(fake.request("t"), &ctx)
        .await
        .unwrap();
    assert!(fake.read("env.1").lines().any(|l| l == "SOME_SETTING=on"));
    assert_eq!(
        recorder.0.lock().unwrap().as_slice(),
        [
            "claude CLI started (text mode)",
            "claude CLI finished (exit code 0)"
        ]
    );
}

/// Native mode passes `output_schema` as `--json-schema` and answers the CLI's validated
/// `structured_output` as the output text (the engine checks it again).
#[tokio::test]
async fn native_mode_passes_the_output_schema_and_answers_the_structured_output() {
    let fake = Fake::new();
    fake.set(
        "stdout",
        &json_line(json!({"type": "result", "subtype": "success", "is_error": false,
            "result": "Here it is.", "structured_output": {"a": 1}, "session_id": "s", "num_turns": 1})),
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let mut req = fake.request("t");
    req.output_schema = Some(agent_core::structured::OutputSchema::parse(&schema).unwrap());
    let output = run(&fake.backend(ClaudeCodeMode::Native), req).await;
    assert_eq!(output.output_text, r#"{"a":1}"#);
    let argv = fake.argv(1);
    let at = argv
        .iter()
        .position(|a| a == "--json-schema")
        .expect("--json-schema");
    assert_eq!(
        serde_json::from_str::<Value>(&argv[at + 1]).unwrap(),
        schema
    );
    // Without a schema, the text.
    let plain = run(&fake.backend(ClaudeCodeMode::Native), fake.request("t")).await;
    assert_eq!(plain.output_text, "Here it is.");
    assert!(!fake.argv(2).contains(&"--json-schema".to_owned()));
}

/// Native mode reads the CLI's stream as it comes: every model turn and tool use is reported
/// as progress and handed to the step sink, in order, before the CLI finishes; the result line
/// gives the output as before.
#[tokio::test]
async fn native_mode_streams_each_turn_and_tool_use_in_order() {
    #[derive(Default)]
    struct Steps(Mutex<Vec<BackendStep>>);
    impl StepSink for Steps {
        fn record(&self, step: BackendStep) {
            self.0.lock().unwrap().push(step);
        }
    }
    let fake = Fake::new();
    let lines = [
        json!({"type": "system", "subtype": "init", "session_id": "cli-1"}),
        json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "Looking."}]}}),
        json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "a"}}]}}),
        json!({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}}),
        json!({"type": "assistant", "message": {"id": "m2", "content": [{"type": "text", "text": "streamed answer"}]}}),
        json!({"type": "result", "subtype": "success", "is_error": false, "result": "streamed answer",
               "session_id": "cli-1", "num_turns": 2, "usage": {"input_tokens": 5, "output_tokens": 3}}),
    ];
    let stdout: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fake.set("stdout", &stdout);
    let recorder = Arc::new(Recorder::default());
    let steps = Arc::new(Steps::default());
    let ctx =
        ExecContext::new(CancellationToken::new(), recorder.clone()).with_steps(steps.clone());
    let output = fake
        .backend(ClaudeCodeMode::Native)
        .execute(fake.request("t"), &ctx)
        .await
        .unwrap();
    assert_eq!(output.output_text, "streamed answer");
    assert_eq!(output.turn_count, 2);
    assert_eq!(output.provider_session_id.as_deref(), Some("cli-1"));
    assert_eq!(
        steps.0.lock().unwrap().as_slice(),
        [
            BackendStep::ModelTurn { turn: 1 },
            BackendStep::ToolUse {
                turn: 1,
                tool: "Read".to_owned()
            },
            BackendStep::ModelTurn { turn: 2 },
        ]
    );
    assert_eq!(
        recorder.0.lock().unwrap().as_slice(),
        [
            "claude CLI started (native mode)",
            "model turn 1",
            "model turn 1: tool use Read",
            "model turn 2",
            "claude CLI finished (exit code 0)"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Fake CLI: prompts, history, tools
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn continuation_prompt_from_the_structured_context() {
    let fake = Fake::new();
    fake.set("stdout", "continued");
    let record = session_record(&fake.work());
    let mut events = six_turn_events();
    events.push(stored(
        "downstream_tool_catalog_resolved",
        json!({"visible_tools": ["srv__a", "srv__b"], "forwarded": 1, "dropped": 1,
               "dropped_names": ["srv__b"], "forwarding_mode": "limited_text_injection"}),
    ));
    let context = build_context(
        &record,
        &events,
        &WindowPolicy::default(),
        MediationInclusion::default(),
    );
    assert_eq!(context.stats.turns_omitted, 1);
    let mut req = fake.request("  next step  ");
    req.is_continuation = true;
    req.continuation = Some(context);
    let output = run(&fake.backend(ClaudeCodeMode::Text), req).await;
    assert_eq!(output.output_text, "continued");
    assert_eq!(output.warnings, [WARN_STOP_REASON_LIMITED]);

    let prompt = fake.argv(1).pop().unwrap();
    let sections: Vec<&str> = prompt.split(SEPARATOR).collect();
    let headers: Vec<&str> = sections.iter().map(|s| s.lines().next().unwrap()).collect();
    assert_eq!(
        headers,
        [
            "[System]",
            "[Continuation Session]",
            "[Session Summary]",
            "[Recent Interaction State]",
            "[Relevant Warnings]",
            "[Tool Forwarding Context]",
            "[Active Constraints]",
            "[Current Request]",
            "[Instructions]"
        ]
    );
    assert_eq!(
        sections[1],
        "[Continuation Session]\nSession: sess_1\nReconstruction: v1.0.0\nContext: 5 turn(s) included, 1 omitted"
    );
    assert_eq!(sections[2], "[Session Summary]\nLatest summary");
    let recent = sections[3];
    assert!(recent.starts_with(&format!(
        "[Recent Interaction State]\n\n[User]\nu2 {}",
        "y".repeat(1997)
    )));
    assert!(recent.contains(&format!(
        "{} [truncated]\n\n[Assistant]\no2",
        "y".repeat(1997)
    )));
    assert!(!recent.contains("[User]\nu1\n"));
    assert!(recent.ends_with("[User]\nu6\n\n[Assistant]\no6"));
    assert_eq!(
        sections[4],
        "[Relevant Warnings]\n- Prior turn: 1 tool(s) were not forwarded (srv__b). Forwarding mode: limited_text_injection."
    );
    assert_eq!(
        sections[5],
        "[Tool Forwarding Context]\nMode: limited_text_injection\nForwarded: srv__a\nDropped: srv__b"
    );
    assert_eq!(
        sections[6],
        format!(
            "[Active Constraints]\nworking_directory: {}\nprofile: general",
            fake.work().display()
        )
    );
    assert_eq!(sections[7], "[Current Request]\nnext step");
    assert_eq!(
        sections[8],
        format!("[Instructions]\n{INSTRUCTIONS_CONTINUATION_CONTEXT}")
    );
}

#[tokio::test]
async fn flat_history_is_truncated_with_a_warning() {
    let fake = Fake::new();
    fake.set("stdout", "ok");
    let mut req = fake.request("go on");
    req.is_continuation = true;
    req.session_summary = Some("sum".to_owned());
    req.history = (0..22)
        .map(|i| ChatMessage {
            role: if i % 2 == 0 {
                ChatRole::User
            } else {
                ChatRole::Assistant
            },
            content: format!("message {i}"),
            blocks: None,
        })
        .collect();
    let output = run(&fake.backend(ClaudeCodeMode::Text), req.clone()).await;
    assert_eq!(
        output.warnings,
        [WARN_HISTORY_TRUNCATED, WARN_STOP_REASON_LIMITED]
    );

    // Native mode: the same warning when the reconstructed prompt is sent, none on a resume.
    fake.set(
        "stdout",
        &json_line(json!({"result": "ok", "stop_reason": "end_turn", "session_id": "x"})),
    );
    let native = fake.backend(ClaudeCodeMode::Native);
    let output = run(&native, req.clone()).await;
    assert_eq!(output.warnings, [WARN_HISTORY_TRUNCATED]);
    assert_eq!(&fake.stdin(2), fake.argv(1).last().unwrap());
    req.provider_session_id = Some("x".to_owned());
    let output = run(&native, req).await;
    assert!(output.warnings.is_empty(), "{:?}", output.warnings);
    assert_eq!(fake.stdin(3), "go on");

    let prompt = fake.argv(1).pop().unwrap();
    assert!(prompt.contains("[Continuation Session]\nsum"));
    assert!(prompt.contains("[Conversation History]\n[User]\nmessage 2\n\n[Assistant]\nmessage 3"));
    assert!(!prompt.contains("message 1\n"));
    assert!(prompt.ends_with(&format!("[Instructions]\n{INSTRUCTIONS_FLAT_CONTINUATION}")));
}

#[tokio::test]
async fn limited_tool_forwarding_injects_and_screens() {
    let fake = Fake::new();
    fake.set("stdout", "ok");
    let compatible = tool(
        "srv__notes",
        json!({"type": "object", "properties": {
            "notes": {"type": "string", "description": "Free text, not validated"},
            "count": {"type": "integer"}
        }, "required": ["notes"]}),
    );
    let any_of = tool(
        "srv__union",
        json!({"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "number"}]}}}),
    );
    let wide = tool(
        "srv__wide",
        json!({"type": "object", "properties": {
            "a": {}, "b": {}, "c": {}, "d": {}, "e": {}, "f": {}
        }}),
    );
    let mut config = fake.config(ClaudeCodeMode::Text);
    config.limited_tool_forwarding = true;
    let mut req = fake.request("use tools");
    req.tools = vec![compatible, any_of, wide];
    let output = run(&ClaudeCodeBackend::new(config), req.clone()).await;
    assert_eq!(
        output.warnings,
        [
            tool_not_forwarded_warning(
                "srv__union",
                "input_schema uses unsupported complexity keyword 'anyOf'; use 'api' backend for full tool support"
            ),
            tool_not_forwarded_warning(
                "srv__wide",
                "input_schema has 6 top-level properties (max 5); use 'api' backend for full tool support"
            ),
            WARN_STOP_REASON_LIMITED.to_owned(),
        ]
    );
    let prompt = fake.argv(1).pop().unwrap();
    let sections: Vec<&str> = prompt.split(SEPARATOR).collect();
    assert!(sections[1].starts_with("[Available Tools]\n"));
    assert!(sections[1].contains(TOOLS_NOTE));
    assert!(sections[1].contains("not directly invocable"));
    assert!(sections[1].ends_with(
        "\n\nTool: srv__notes\nDescription: Describes srv__notes\nParameters:\n  - notes (string, required): Free text, not validated\n  - count (integer, optional): (no description)"
    ));
    assert!(!prompt.contains("srv__union") && !prompt.contains("srv__wide"));

    // Forwarding off: one warning, no block.
    let output = run(&fake.backend(ClaudeCodeMode::Text), req).await;
    assert_eq!(
        output.warnings,
        [WARN_TOOLS_NOT_SUPPORTED, WARN_STOP_REASON_LIMITED]
    );
    assert!(!fake.argv(2).pop().unwrap().contains("[Available Tools]"));
}

// ---------------------------------------------------------------------------------------------
// Fake CLI: native mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn native_mode_argv_stdin_and_real_cli_json() {
    let fake = Fake::new();
    fake.set("stdout", FIXTURE_SUCCESS);
    let backend = fake.backend(ClaudeCodeMode::Native);
    let mut req = fake.request(" Summarise ");
    req.max_turns = 7;
    let output = run(&backend, req).await;
    assert_eq!(
        fake.argv(1),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "claude-test",
            "--max-turns",
            "7",
            "--permission-mode",
            "acceptEdits",
            "--setting-sources",
            "user",
            "--strict-mcp-config"
        ]
    );
    assert_eq!(fake.stdin(1), initial_prompt("Summarise"));
    assert_eq!(fake.cwd(1), fake.work().to_string_lossy());
    let fixture: Value = serde_json::from_str(FIXTURE_SUCCESS).unwrap();
    assert_eq!(output.output_text, fixture["result"].as_str().unwrap());
    assert_eq!(output.turn_count, 1);
    assert_eq!(output.stop_reason.as_deref(), Some("end_turn"));
    assert!(output.warnings.is_empty(), "{:?}", output.warnings);
    assert_eq!(
        output.provider_session_id.as_deref(),
        fixture["session_id"].as_str()
    );
    assert_eq!(
        output.usage,
        Some(Usage {
            input_tokens: 11,
            output_tokens: 7,
            cache_creation_input_tokens: Some(0),
            cache_read_input_tokens: Some(0),
            total_cost_usd: fixture["total_cost_usd"].as_f64(),
        })
    );

    // The verification profile is read-only.
    let mut req = fake.request("check");
    req.profile = Profile::Verification;
    req.max_turns = 0;
    run(&backend, req).await;
    assert_eq!(
        fake.argv(2)[6..],
        [
            "--max-turns",
            "1",
            "--permission-mode",
            "default",
            "--disallowedTools",
            "Edit,Write,MultiEdit,NotebookEdit,Bash",
            "--setting-sources",
            "user",
            "--strict-mcp-config"
        ]
    );
}

#[tokio::test]
async fn native_mode_tolerates_missing_and_unknown_fields() {
    let fake = Fake::new();
    fake.set(
        "stdout",
        &json_line(json!({"result": " partial ", "brand_new_field": {"x": [1]}, "num_turns": 3})),
    );
    let mut config = fake.config(ClaudeCodeMode::Native);
    config.model = String::new();
    let output = run(&ClaudeCodeBackend::new(config), fake.request("t")).await;
    assert!(!fake.argv(1).contains(&"--model".to_owned()));
    assert_eq!(
        output,
        BackendOutput {
            output_text: "partial".to_owned(),
            turn_count: 3,
            stop_reason: Some("backend_defaulted".to_owned()),
            warnings: vec![WARN_STOP_REASON_LIMITED.to_owned()],
            usage: None,
            provider_session_id: None,
            transcript: None,
        }
    );

    // Empty result, cost without usage, permission denials.
    fake.set(
        "stdout",
        &json_line(
            json!({"type": "result", "subtype": "success", "is_error": false,
            "result": "", "num_turns": 0, "stop_reason": "end_turn", "total_cost_usd": 0.25,
            "permission_denials": [{"tool_name": "Write"}, {"tool_name": "Bash"}]}),
        ),
    );
    let output = run(&fake.backend(ClaudeCodeMode::Native), fake.request("t")).await;
    assert_eq!(output.turn_count, 1);
    assert_eq!(
        output.warnings,
        [
            WARN_EMPTY_RESPONSE.to_owned(),
            permission_denials_warning(&["Write".to_owned(), "Bash".to_owned()])
        ]
    );
    assert_eq!(
        output.usage,
        Some(Usage {
            total_cost_usd: Some(0.25),
            ..Usage::default()
        })
    );
}

#[tokio::test]
async fn native_non_json_stdout_is_a_normalization_error() {
    let fake = Fake::new();
    fake.set("stdout", "this is plain text\n");
    let err = fail(&fake.backend(ClaudeCodeMode::Native), fake.request("t")).await;
    assert_eq!(err.code, ErrorCode::NormalizationError);
    assert!(
        err.message
            .starts_with("Failed to normalize Claude Code result: the CLI output is not JSON: "),
        "{}",
        err.message
    );
    assert_eq!(
        classify(&err).unwrap().failure_class,
        "backend_unusable_response"
    );
}

#[tokio::test]
async fn native_is_error_keeps_the_cli_words_and_status() {
    let fake = Fake::new();
    let backend = fake.backend(ClaudeCodeMode::Native);

    // The real CLI's 529 result (exit code 1): an API error is a provider error.
    fake.set("stdout", FIXTURE_API_529).set("exit", "1");
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(err.code, ErrorCode::ProviderRuntimeError);
    assert!(
        err.message.starts_with(
            "claude CLI reported an error (api_error_status 529, api_error_type overloaded_error): API Error: 529 Overloaded."
        ),
        "{}",
        err.message
    );
    assert_eq!(err.kind, FailureKind::HttpStatus(529));

    // Rate limit: classified as a limit.
    fake.set(
        "stdout",
        &json_line(
            json!({"type": "result", "subtype": "success", "is_error": true,
            "result": "API Error: Request rejected (429) · rate limit reached",
            "api_error_status": 429, "api_error_type": "rate_limit_error", "session_id": "s"}),
        ),
    );
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(err.kind, FailureKind::HttpStatus(429));
    assert!(err.message.contains("rate limit reached"));
    assert_eq!(
        classify(&err).unwrap().failure_class,
        "backend_limit_reached"
    );

    // Authentication: classified as auth even though the result text says "Invalid API key".
    fake.set(
        "stdout",
        &json_line(
            json!({"is_error": true, "result": "Invalid API key · Fix external API key",
            "api_error_status": 401, "api_error_type": "authentication_error"}),
        ),
    );
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(err.kind, FailureKind::HttpStatus(401));
    assert_eq!(
        classify(&err).unwrap().failure_class,
        "backend_auth_failure"
    );

    // is_error with exit 0 and no status is still a failure.
    fake.set("exit", "0").set(
        "stdout",
        &json_line(json!({"is_error": true, "subtype": "error_during_execution", "errors": ["tool crashed"]})),
    );
    let err = fail(&backend, fake.request("t")).await;
    assert_eq!(
        err.message,
        "claude CLI reported an error (subtype error_during_execution): tool crashed"
    );
    assert_eq!(err.kind, FailureKind::Unspecified);
    assert_eq!(
        classify(&err).unwrap().failure_class,
        "backend_invocation_error"
    );
}

#[tokio::test]
async fn native_error_max_turns() {
    let fake = Fake::new();
    let backend = fake.backend(ClaudeCodeMode::Native);

    // With a result text: success with a warning.
    fake.set(
        "stdout",
        &json_line(
            json!({"type": "result", "subtype": "error_max_turns", "is_error": true,
            "result": "half done", "num_turns": 3, "session_id": "s1", "stop_reason": "tool_use"}),
        ),
    )
    .set("exit", "1");
    let mut req = fake.request("t");
    req.max_turns = 2;
    let output = run(&backend, req).await;
    assert_eq!(output.output_text, "half done");
    assert_eq!(output.turn_count, 3);
    assert_eq!(output.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(output.warnings.len(), 1);
    assert!(output.warnings[0].starts_with(WARN_MAX_TURNS_PREFIX));
    assert!(output.warnings[0].contains("(2 turn(s))"));
    assert_eq!(output.provider_session_id.as_deref(), Some("s1"));

    // Without one (the real CLI's shape): a failure that is not classified as a usage limit.
    fake.set("stdout", FIXTURE_MAX_TURNS);
    let mut req = fake.request("t");
    req.max_turns = 1;
    let err = fail(&backend, req).await;
    assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
    assert_eq!(
        err.message,
        "claude CLI stopped at the max_turns budget (1 turn(s)) without a final result: Reached maximum number of turns (1)"
    );
    assert_eq!(
        classify(&err).unwrap().failure_class,
        "backend_invocation_error"
    );
}

#[tokio::test]
async fn native_resume_sends_only_the_new_message() {
    let fake = Fake::new();
    fake.set(
        "stdout",
        &json_line(json!({"result": "resumed", "session_id": "cli-sess", "stop_reason": "end_turn", "num_turns": 1})),
    );
    let mut req = fake.request("  the new message ");
    req.is_continuation = true;
    req.provider_session_id = Some("cli-sess".to_owned());
    req.continuation = Some(build_context(
        &session_record(&fake.work()),
        &six_turn_events(),
        &WindowPolicy::default(),
        MediationInclusion::default(),
    ));
    let output = run(&fake.backend(ClaudeCodeMode::Native), req.clone()).await;
    assert_eq!(fake.invocations(), 1);
    assert_eq!(fake.argv(1)[10..12], ["--resume", "cli-sess"]);
    assert_eq!(fake.stdin(1), "the new message");
    assert_eq!(output.provider_session_id.as_deref(), Some("cli-sess"));
    assert!(output.warnings.is_empty());

    // Not a continuation (run/verify): never resumes.
    req.is_continuation = false;
    run(&fake.backend(ClaudeCodeMode::Native), req.clone()).await;
    assert!(!fake.argv(2).contains(&"--resume".to_owned()));

    // Text mode never resumes either; it sends the reconstructed context.
    req.is_continuation = true;
    fake.set("stdout", "text");
    run(&fake.backend(ClaudeCodeMode::Text), req).await;
    assert!(!fake.argv(3).contains(&"--resume".to_owned()));
    assert!(
        fake.argv(3)
            .last()
            .unwrap()
            .contains("Context: 5 turn(s) included, 1 omitted")
    );
}

/// The first continuation of a fork resumes its parent's CLI session as a new one
/// (`--resume <id> --fork-session`), sending only the new message; the flag goes only with a
/// resume, and a fallback to the reconstructed context drops both.
#[tokio::test]
async fn native_fork_resumes_the_parents_session_with_fork_session() {
    let fake = Fake::new();
    fake.set(
        "stdout",
        &json_line(json!({"result": "forked", "session_id": "fork-sess", "stop_reason": "end_turn", "num_turns": 1})),
    );
    let mut req = fake.request("the fork's message");
    req.is_continuation = true;
    req.provider_session_id = Some("parent-sess".to_owned());
    req.fork_provider_session = true;
    let output = run(&fake.backend(ClaudeCodeMode::Native), req.clone()).await;
    let argv = fake.argv(1);
    let resume = argv.iter().position(|a| a == "--resume").expect("--resume");
    assert_eq!(argv[resume + 1], "parent-sess");
    assert_eq!(
        argv.iter().filter(|a| *a == ARG_FORK_SESSION).count(),
        1,
        "{argv:?}"
    );
    assert_eq!(fake.stdin(1), "the fork's message");
    assert_eq!(output.provider_session_id.as_deref(), Some("fork-sess"));

    // Without a provider session to resume there is nothing to fork: no flag.
    req.provider_session_id = None;
    run(&fake.backend(ClaudeCodeMode::Native), req.clone()).await;
    assert!(
        !fake
            .argv(2)
            .iter()
            .any(|a| a == "--resume" || a == ARG_FORK_SESSION)
    );

    // An unknown id: the fallback run carries neither flag.
    let fake = Fake::new();
    fake.set("resume_fail", "").set(
        "stdout",
        &json_line(json!({"result": "fresh", "session_id": "new-sess", "stop_reason": "end_turn"})),
    );
    let mut req = fake.request("m");
    req.is_continuation = true;
    req.provider_session_id = Some("gone-sess".to_owned());
    req.fork_provider_session = true;
    let output = run(&fake.backend(ClaudeCodeMode::Native), req).await;
    assert!(fake.argv(1).iter().any(|a| a == ARG_FORK_SESSION));
    assert!(
        !fake
            .argv(2)
            .iter()
            .any(|a| a == "--resume" || a == ARG_FORK_SESSION)
    );
    assert_eq!(output.warnings, [resume_fallback_warning("gone-sess")]);
}

#[tokio::test]
async fn native_resume_failure_falls_back_to_the_reconstructed_context() {
    let fake = Fake::new();
    fake.set("resume_fail", "").set(
        "stdout",
        &json_line(json!({"result": "fresh", "session_id": "new-sess", "stop_reason": "end_turn"})),
    );
    let mut req = fake.request("the new message");
    req.is_continuation = true;
    req.provider_session_id = Some("gone-sess".to_owned());
    req.continuation = Some(build_context(
        &session_record(&fake.work()),
        &six_turn_events(),
        &WindowPolicy::default(),
        MediationInclusion::default(),
    ));
    let recorder = Arc::new(Recorder::default());
    let ctx = ExecContext::new(CancellationToken::new(), recorder.clone());
    let output = fake
        .backend(ClaudeCodeMode::Native)
        .execute(req, &ctx)
        .await
        .unwrap();
    assert_eq!(fake.invocations(), 2);
    assert_eq!(fake.argv(1)[10..12], ["--resume", "gone-sess"]);
    assert!(!fake.argv(2).contains(&"--resume".to_owned()));
    assert_eq!(fake.argv(2).len(), 13);
    let prompt = fake.stdin(2);
    assert!(prompt.starts_with(&format!(
        "[System]\n{SYSTEM}{SEPARATOR}[Continuation Session]\nSession: sess_1"
    )));
    assert!(prompt.contains("Context: 5 turn(s) included, 1 omitted"));
    assert!(prompt.contains("[Current Request]\nthe new message"));
    assert_eq!(output.output_text, "fresh");
    assert_eq!(output.provider_session_id.as_deref(), Some("new-sess"));
    assert_eq!(output.warnings, [resume_fallback_warning("gone-sess")]);
    assert!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("could not resume"))
    );

    // Another failure of a resumed run is not retried.
    let fake = Fake::new();
    fake.set("exit", "1").set("stderr", "boom");
    let mut req = fake.request("m");
    req.is_continuation = true;
    req.provider_session_id = Some("s".to_owned());
    let err = fail(&fake.backend(ClaudeCodeMode::Native), req).await;
    assert_eq!(err.message, "claude CLI exited with code 1: boom");
    assert_eq!(fake.invocations(), 1);
}

// ---------------------------------------------------------------------------------------------
// The real Claude Code CLI against a local stand-in for the Messages API
// ---------------------------------------------------------------------------------------------

mod real_cli {
    use super::*;
    use agent_testkit::messages_api::{self, Script};
    use wiremock::MockServer;

    use agent_testkit::peers::claude_cli as real_cli;

    /// A `Write` tool call of `target` until the model has seen its result, then text.
    fn write_tool(target: PathBuf) -> Script {
        Script::ToolsThenText {
            calls: vec![(
                "Write".to_owned(),
                json!({"file_path": target, "content": "written by the model"}),
            )],
            then: "reply after the tool".to_owned(),
        }
    }

    struct Env {
        server: MockServer,
        home: TempDir,
        work: TempDir,
        /// Runs the real CLI and records each of its runs.
        cli: RecordingWrapper,
    }

    impl Env {
        async fn start(cli: PathBuf, script: Script) -> Self {
            Self::start_with(cli, |_| script).await
        }

        /// Starts the stand-in with a script that may refer to the working directory.
        async fn start_with(cli: PathBuf, script: impl FnOnce(&Path) -> Script) -> Self {
            let home = tempfile::tempdir().unwrap();
            let work = tempfile::tempdir().unwrap();
            let script = script(&work.path().canonicalize().unwrap());
            let server = messages_api::start(script).await;
            let cli = RecordingWrapper::new(&home.path().join("cli"), &cli);
            Env {
                server,
                home,
                work,
                cli,
            }
        }

        fn work(&self) -> PathBuf {
            self.work.path().canonicalize().unwrap()
        }

        fn config_dir(&self) -> String {
            self.home
                .path()
                .join(".claude")
                .to_string_lossy()
                .into_owned()
        }

        fn config(&self, mode: ClaudeCodeMode) -> ClaudeCodeConfig {
            let home = self.home.path().to_string_lossy().into_owned();
            ClaudeCodeConfig {
                cli_path: Some(self.cli.path()),
                model: "claude-test".to_owned(),
                timeout: Duration::from_secs(60),
                mode,
                limited_tool_forwarding: false,
                env_passthrough: Vec::new(),
                extra_env: [
                    ("ANTHROPIC_BASE_URL", self.server.uri()),
                    ("ANTHROPIC_API_KEY", "sk-ant-dummy-test-key".to_owned()),
                    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
                    ("DISABLE_AUTOUPDATER", "1".to_owned()),
                    ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
                    ("HOME", home),
                    ("CLAUDE_CONFIG_DIR", self.config_dir()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                mcp_servers: Vec::new(),
                setting_sources: vec!["user".to_owned()],
            }
        }

        fn backend(&self) -> ClaudeCodeBackend {
            ClaudeCodeBackend::new(self.config(ClaudeCodeMode::Native))
        }

        fn request(&self, task: &str) -> BackendRequest {
            let mut req = request(task);
            req.working_directory = Some(self.work());
            req
        }

        async fn bodies(&self) -> Vec<Value> {
            messages_api::message_bodies(&self.server).await
        }
    }

    use messages_api::texts;

    #[tokio::test]
    async fn real_cli_version_check() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let version = env.backend().check().await.unwrap();
        assert!(version.contains("Claude Code"), "{version}");
        println!("real claude CLI: {version}");
    }

    /// A workspace is untrusted: its `.claude/settings.json` hooks (which the CLI runs with
    /// no prompt in `-p` mode) and its `.mcp.json` servers must never start, in either mode.
    #[tokio::test]
    async fn real_cli_never_runs_a_workspaces_hooks_or_mcp_servers() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let work = env.work();
        let marker = |name: &str| work.join(name);
        let touch = |name: &str| {
            serde_json::json!([{"hooks": [{"type": "command",
                "command": format!("touch '{}'", marker(name).display())}]}])
        };
        std::fs::create_dir_all(work.join(".claude")).unwrap();
        let hooks = serde_json::json!({"hooks": {
            "SessionStart": touch("session-start-hook-ran"),
            "UserPromptSubmit": touch("prompt-hook-ran"),
        }});
        for file in ["settings.json", "settings.local.json"] {
            std::fs::write(work.join(".claude").join(file), hooks.to_string()).unwrap();
        }
        let server = serde_json::json!({"mcpServers": {"planted": {"command": "sh",
            "args": ["-c", format!("touch '{}'", marker("mcp-server-ran").display())]}}});
        std::fs::write(work.join(".mcp.json"), server.to_string()).unwrap();

        for mode in [ClaudeCodeMode::Native, ClaudeCodeMode::Text] {
            let backend = ClaudeCodeBackend::new(env.config(mode));
            let outcome = run(&backend, env.request("hello")).await;
            assert!(outcome.output_text.starts_with("reply "), "{outcome:?}");
        }
        for name in [
            "session-start-hook-ran",
            "prompt-hook-ran",
            "mcp-server-ran",
        ] {
            assert!(!marker(name).exists(), "{name}: the workspace ran code");
        }

        // The same workspace with the project's settings trusted by the operator: the hooks
        // run, so the test above is not vacuous.
        let mut trusted = env.config(ClaudeCodeMode::Native);
        trusted.setting_sources = vec!["user".to_owned(), "project".to_owned()];
        run(&ClaudeCodeBackend::new(trusted), env.request("hello")).await;
        assert!(marker("session-start-hook-ran").exists());
    }

    #[tokio::test]
    async fn real_cli_run_and_native_resume() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let backend = env.backend();
        let first = run(&backend, env.request("first message")).await;
        assert!(first.output_text.starts_with("reply "), "{first:?}");
        assert_eq!(first.turn_count, 1);
        assert_eq!(first.stop_reason.as_deref(), Some("end_turn"));
        assert!(first.warnings.is_empty(), "{:?}", first.warnings);
        let usage = first.usage.clone().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (11, 7));
        assert!(usage.total_cost_usd.is_some());
        let session = first.provider_session_id.clone().unwrap();

        let bodies = env.bodies().await;
        let first_body = bodies.last().unwrap();
        assert_eq!(first_body["stream"], true);
        let all = first_body.to_string();
        assert!(all.contains("first message"));
        assert!(
            all.contains(&env.work().to_string_lossy().into_owned()),
            "the CLI ran in the working directory"
        );

        let mut next = env.request("second message");
        next.is_continuation = true;
        next.provider_session_id = Some(session.clone());
        let second = run(&backend, next).await;
        assert!(second.warnings.is_empty(), "{:?}", second.warnings);
        assert_eq!(
            second.provider_session_id.as_deref(),
            Some(session.as_str())
        );
        let bodies = env.bodies().await;
        let last = texts(bodies.last().unwrap());
        assert!(last.contains("first message"), "{last}");
        assert!(last.contains(&first.output_text), "{last}");
        assert!(last.contains("second message"), "{last}");
        assert!(!last.contains("[Continuation Session]"));
    }

    /// `--resume <id> --fork-session` (a fork's first continuation): the CLI carries the
    /// parent's conversation into a new session id, and the parent's session does not see the
    /// fork's message.
    #[tokio::test]
    async fn real_cli_fork_session_branches_without_touching_the_parent() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let backend = env.backend();
        let first = run(&backend, env.request("parent message")).await;
        let parent = first.provider_session_id.clone().unwrap();

        let mut fork = env.request("fork message");
        fork.is_continuation = true;
        fork.provider_session_id = Some(parent.clone());
        fork.fork_provider_session = true;
        let forked = run(&backend, fork).await;
        assert!(forked.warnings.is_empty(), "{:?}", forked.warnings);
        let child = forked.provider_session_id.clone().unwrap();
        assert_ne!(child, parent, "the fork has its own CLI session");
        let last = texts(env.bodies().await.last().unwrap());
        assert!(last.contains("parent message"), "{last}");
        assert!(last.contains(&first.output_text), "{last}");
        assert!(last.contains("fork message"), "{last}");

        let mut again = env.request("parent again");
        again.is_continuation = true;
        again.provider_session_id = Some(parent.clone());
        let resumed = run(&backend, again).await;
        assert_eq!(
            resumed.provider_session_id.as_deref(),
            Some(parent.as_str())
        );
        let last = texts(env.bodies().await.last().unwrap());
        assert!(last.contains("parent message"), "{last}");
        assert!(last.contains("parent again"), "{last}");
        assert!(
            !last.contains("fork message"),
            "the parent never saw the fork: {last}"
        );
    }

    #[tokio::test]
    async fn real_cli_unknown_resume_id_falls_back() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let mut req = env.request("carry on");
        req.is_continuation = true;
        req.provider_session_id = Some("00000000-0000-4000-8000-000000000000".to_owned());
        req.continuation = Some(build_context(
            &session_record(&env.work()),
            &six_turn_events(),
            &WindowPolicy::default(),
            MediationInclusion::default(),
        ));
        let output = run(&env.backend(), req).await;
        assert_eq!(
            output.warnings,
            [resume_fallback_warning(
                "00000000-0000-4000-8000-000000000000"
            )]
        );
        assert!(output.provider_session_id.is_some());
        let last = texts(env.bodies().await.last().unwrap());
        assert!(last.contains("[Continuation Session]"), "{last}");
        assert!(
            last.contains("Context: 5 turn(s) included, 1 omitted"),
            "{last}"
        );
    }

    #[tokio::test]
    async fn real_cli_verification_profile_is_read_only() {
        let Some(cli) = real_cli() else { return };
        // The stand-in asks for a Write of a file inside the working directory.
        let env = Env::start_with(cli.clone(), |work| write_tool(work.join("out.txt"))).await;
        let mut req = env.request("write the file");
        req.profile = Profile::Verification;
        let output = run(&env.backend(), req).await;
        assert!(
            !env.work().join("out.txt").exists(),
            "verification wrote a file"
        );
        assert!(output.output_text.starts_with("reply "), "{output:?}");
        assert_eq!(output.turn_count, 2);
        let bodies = env.bodies().await;
        let result = texts(bodies.last().unwrap());
        assert!(
            result.contains("tool_result") && result.contains("\"is_error\":true"),
            "{result}"
        );

        // The general profile (acceptEdits) may edit inside the working directory.
        let env = Env::start_with(cli, |work| write_tool(work.join("general.txt"))).await;
        let output = run(&env.backend(), env.request("write the file")).await;
        assert_eq!(
            std::fs::read_to_string(env.work().join("general.txt")).unwrap(),
            "written by the model"
        );
        assert!(output.warnings.is_empty(), "{:?}", output.warnings);
    }

    #[tokio::test]
    async fn real_cli_api_errors_are_provider_errors() {
        let Some(cli) = real_cli() else { return };
        for (status, class) in [
            (400, "backend_invocation_error"),
            (401, "backend_auth_failure"),
            (429, "backend_limit_reached"),
            (529, "backend_unavailable"),
        ] {
            let env = Env::start(cli.clone(), Script::Status(status)).await;
            let err = fail(&env.backend(), env.request("hello")).await;
            assert_eq!(err.code, ErrorCode::ProviderRuntimeError, "{status}");
            assert_eq!(err.kind, FailureKind::HttpStatus(status), "{}", err.message);
            assert!(
                err.message.starts_with(&format!(
                    "claude CLI reported an error (api_error_status {status}"
                )),
                "{}",
                err.message
            );
            assert_eq!(
                classify(&err).unwrap().failure_class,
                class,
                "{}",
                err.message
            );
        }
    }

    #[tokio::test]
    async fn real_cli_max_turns_without_result_fails() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, write_tool(PathBuf::from("/nonexistent/x.txt"))).await;
        let mut req = env.request("write");
        req.profile = Profile::Verification;
        req.max_turns = 1;
        let err = fail(&env.backend(), req).await;
        assert_eq!(err.code, ErrorCode::ClaudeCodeInvocationError);
        assert!(
            err.message
                .starts_with("claude CLI stopped at the max_turns budget (1 turn(s))"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn real_cli_timeout_leaves_nothing_behind() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(
            cli,
            Script::Delayed(Duration::from_secs(60), Box::new(Script::Numbered)),
        )
        .await;
        let mut config = env.config(ClaudeCodeMode::Native);
        // Long enough for the real CLI to start and reach the stand-in on two busy cores.
        config.timeout = Duration::from_secs(8);
        let started = Instant::now();
        let err = fail(&ClaudeCodeBackend::new(config), env.request("hello")).await;
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(err.message, "claude CLI timed out after 8s");
        assert_eq!(err.kind, FailureKind::Timeout);
        assert!(
            !env.bodies().await.is_empty(),
            "the CLI was waiting on the stand-in when it was killed"
        );
        let runs = env.cli.invocations_with("-p");
        assert_eq!(runs.len(), 1, "{runs:?}");
        // The CLI leads its process group: nothing of it is left.
        processes::wait_until_group_gone(runs[0].pid, processes::GONE_WITHIN).await;
        assert!(processes::is_gone(runs[0].pid));
    }

    #[tokio::test]
    async fn real_cli_text_mode() {
        let Some(cli) = real_cli() else { return };
        let env = Env::start(cli, Script::Numbered).await;
        let output = run(
            &ClaudeCodeBackend::new(env.config(ClaudeCodeMode::Text)),
            env.request("plain text please"),
        )
        .await;
        assert_eq!(output.output_text, "reply 0");
        assert_eq!(output.stop_reason.as_deref(), Some("backend_defaulted"));
        assert_eq!(output.warnings, [WARN_STOP_REASON_LIMITED]);
        let last = texts(env.bodies().await.last().unwrap());
        assert!(
            last.contains("[Current Request]\nplain text please"),
            "{last}"
        );
    }
}
