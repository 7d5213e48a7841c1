//! The claude_code backend through the real server: a fake `claude` script (the fixture of
//! agent-backends) records argv, stdin and cwd and prints scripted output.

use std::path::PathBuf;

use agent_testkit::fake_cli::{self, FakeCli};

use serde_json::json;

use crate::support::*;

/// A server environment on the claude_code backend with the fake CLI installed.
pub(super) struct Cli {
    pub(super) env: TestEnv,
    pub(super) dir: PathBuf,
    path: PathBuf,
    fake: FakeCli,
}

impl Cli {
    pub(super) async fn new(mode: &str) -> Self {
        let mut env = TestEnv::new().await;
        let dir = env.cwd().join("fake-cli");
        std::fs::create_dir_all(&dir).unwrap();
        let fake = FakeCli::install(&dir, &dir);
        let path = fake.path().to_path_buf();
        env.set("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code");
        env.set("CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH", &path_str(&path));
        env.set("CLAUDE_AGENT_MCP_CLAUDE_CODE_MODE", mode);
        env.set(fake_cli::CONTROL_VAR, &path_str(&dir));
        // The CLI inherits only a minimal environment: the fake's control directory is listed.
        env.set(
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH",
            fake_cli::CONTROL_VAR,
        );
        Self {
            env,
            dir,
            path,
            fake,
        }
    }

    pub(super) fn script(&self, file: &str, text: &str) {
        self.fake.set(file, text);
    }

    pub(super) fn argv(&self, n: usize) -> Vec<String> {
        assert!(self.fake.invoked(n), "the CLI ran {n} time(s)");
        self.fake.argv(n)
    }

    pub(super) fn invocations(&self) -> usize {
        self.fake.invocations()
    }

    fn read(&self, file: &str) -> String {
        self.fake.read(file)
    }
}

const LIMITED: &str = "claude_code backend: stop_reason precision is limited — the Claude Code CLI does not report semantic stop reasons.";

#[tokio::test]
async fn text_mode_runs_the_original_contract() {
    let cli = Cli::new("text").await;
    cli.script("stdout", "  The answer is 42.\n");
    let server = cli.env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "  What is the answer?  "}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["result"]["output_text"], json!("The answer is 42."));
    assert_eq!(v["warnings"], json!([LIMITED]));
    let argv = cli.argv(1);
    assert_eq!(argv.len(), 7, "{argv:?}");
    assert_eq!(
        &argv[..6],
        [
            "--model",
            "claude-sonnet-4-6",
            "--setting-sources",
            "user",
            "--strict-mcp-config",
            "--print"
        ]
    );
    let prompt = &argv[6];
    let rule = "─".repeat(60);
    assert!(prompt.starts_with("[System]\n"), "{prompt}");
    assert!(
        prompt.contains(&format!(
            "\n{rule}\n[Current Request]\nWhat is the answer?\n{rule}\n[Instructions]\n"
        )),
        "{prompt}"
    );
    assert!(prompt.contains("Respond to the current request above."));
    assert_eq!(cli.read("stdin.1"), "", "the CLI gets an empty stdin");
    let sid = v["session_id"].as_str().unwrap().to_owned();
    cli.script("stdout", "");
    let v = server
        .call("agent_run_task", json!({"task": "again"}))
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(
        v["warnings"],
        json!([
            LIMITED,
            "claude_code backend: CLI returned an empty response"
        ])
    );
    // Continuation prompt (text mode carries the reconstructed context).
    cli.script("stdout", "continued");
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "and then?"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true), "{c}");
    let prompt = cli.argv(3).pop().unwrap();
    for needle in [
        "[Continuation Session]",
        &format!("Session: {sid}"),
        "Reconstruction: v1.0.0",
        "Context: 1 turn(s) included",
        "[Session Summary]\nThe answer is 42.",
        "[Recent Interaction State]",
        "[User]\nWhat is the answer?",
        "[Assistant]\nThe answer is 42.",
        "[Active Constraints]\nworking_directory: ",
        "profile: general",
        "[Current Request]\nand then?",
        "continuing this session",
    ] {
        assert!(prompt.contains(needle), "missing {needle:?} in {prompt}");
    }
    let types = cli.env.event_types(&sid).await;
    assert_eq!(
        types[5..],
        [
            "session_continuation_context_built",
            "user_input",
            "provider_request_start",
            "session_continuation_prompt_rendered",
            "provider_response_summary"
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cli_failures_are_classified() {
    let mut cli = Cli::new("text").await;
    cli.env.set("CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT", "1");
    cli.script("stderr", "boom");
    cli.script("exit", "1");
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(
        v["errors"][0],
        json!({"code": "claude_code_invocation_error", "message": "claude CLI exited with code 1: boom", "details": null})
    );
    std::fs::remove_file(cli.dir.join("exit")).unwrap();
    std::fs::remove_file(cli.dir.join("stderr")).unwrap();
    cli.script("sleep", "5");
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(
        v["errors"][0]["code"],
        json!("claude_code_invocation_error")
    );
    assert!(
        v["summary"].as_str().unwrap().contains("timed out after"),
        "{v}"
    );
    std::fs::remove_file(cli.dir.join("sleep")).unwrap();
    std::fs::remove_file(&cli.path).unwrap();
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(
        v["errors"][0],
        json!({"code": "claude_code_unavailable", "message": "claude CLI not found. Cannot execute task.", "details": null})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn native_mode_reports_usage_and_resumes_natively() {
    let cli = Cli::new("native").await;
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"success","is_error":false,"result":"Native answer","session_id":"0f5e5a3e-1111-4222-8333-944455556666","num_turns":1,"total_cost_usd":0.0123,"usage":{"input_tokens":10,"output_tokens":5},"stop_reason":"end_turn","unknown_field":true}"#,
    );
    let server = cli.env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "hello"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["result"],
        json!({"output_text": "Native answer", "usage": {"input_tokens": 10, "output_tokens": 5, "total_cost_usd": 0.0123}})
    );
    let argv = cli.argv(1);
    assert_eq!(
        argv[..4],
        ["-p", "--output-format", "stream-json", "--verbose"],
        "{argv:?}"
    );
    // A workspace's own settings (hooks, permissions) and MCP servers are never loaded.
    let sources = argv.iter().position(|a| a == "--setting-sources");
    assert_eq!(argv[sources.expect("--setting-sources") + 1], "user");
    assert!(argv.contains(&"--strict-mcp-config".to_owned()));
    assert!(
        cli.read("stdin.1").contains("hello"),
        "the prompt goes on stdin"
    );
    assert_eq!(
        cli.read("cwd.1").trim(),
        path_str(&cli.env.cwd()),
        "runs in the session's working directory"
    );
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        cli.env.column(&sid, "provider_session_id").await.as_deref(),
        Some("0f5e5a3e-1111-4222-8333-944455556666")
    );
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "more"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true));
    let argv = cli.argv(2);
    let resume = argv.iter().position(|a| a == "--resume").expect("--resume");
    assert_eq!(argv[resume + 1], "0f5e5a3e-1111-4222-8333-944455556666");
    assert_eq!(
        cli.read("stdin.2").trim(),
        "more",
        "only the new message on native resume"
    );
    // An is_error result is a failure, never a success; an API error behind the CLI is a
    // provider error.
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 529 Overloaded","api_error_status":529,"session_id":"x","num_turns":1}"#,
    );
    cli.script("exit", "1");
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["errors"][0]["code"], json!("provider_runtime_error"));
    server.shutdown().await;
}

#[tokio::test]
async fn verification_on_claude_code_reports_unavailable_results() {
    let cli = Cli::new("text").await;
    cli.script("stdout", "   \n");
    let server = cli.env.start().await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    assert_eq!(v["ok"], json!(false));
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&sid));
    assert_eq!(
        (
            v["result"]["outcome_kind"].clone(),
            v["result"]["failure_class"].clone(),
            v["result"]["failure_code"].clone(),
            v["result"]["retryable"].clone(),
            v["result"]["fallback_recommended"].clone(),
            v["result"]["verdict"].clone(),
            v["result"]["verification_performed"].clone()
        ),
        (
            json!("unavailable"),
            json!("backend_unusable_response"),
            json!("claude_code_empty_response"),
            json!(true),
            json!(true),
            json!("fail_closed"),
            json!(false)
        )
    );
    assert_eq!(
        cli.env.column(&sid, "status").await.as_deref(),
        Some("failed")
    );
    cli.script("stdout", "");
    cli.script("stderr", "rate limit exceeded");
    cli.script("exit", "1");
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    assert_eq!(
        (
            v["result"]["failure_class"].clone(),
            v["result"]["failure_code"].clone(),
            v["result"]["retryable"].clone()
        ),
        (
            json!("backend_limit_reached"),
            json!("claude_code_limit_reached"),
            json!(true)
        )
    );
    assert_eq!(v["errors"][0]["code"], json!("claude_code_limit_reached"));
    server.shutdown().await;
}

#[tokio::test]
async fn startup_checks_the_cli() {
    let mut cli = Cli::new("text").await;
    cli.script("version_exit", "3");
    cli.script("version_stderr", "broken install");
    let (code, _, err) = cli.env.run_to_exit(&[]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("claude CLI version check failed (exit 3): broken install"),
        "{err}"
    );
    // A CLI path that does not exist falls back to `claude` on PATH.
    std::fs::remove_file(cli.dir.join("version_exit")).unwrap();
    let path = format!(
        "{}:{}",
        path_str(&cli.dir),
        std::env::var("PATH").unwrap_or_default()
    );
    cli.env.set("PATH", &path);
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH",
        "/nonexistent/claude",
    );
    let server = cli.env.start().await;
    server.shutdown().await;
    // No CLI anywhere.
    cli.env.set("PATH", "/usr/bin:/bin");
    let (code, _, err) = cli.env.run_to_exit(&[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("claude CLI not found"), "{err}");
}

#[tokio::test]
async fn restricted_mode_publishes_two_tools_and_blocks_execution_requests() {
    let mut cli = Cli::new("text").await;
    cli.env.set("CLAUDE_AGENT_MCP_MODE", "apntalk_verification");
    cli.script("stdout", "VERDICT: pass\nFINDINGS:\n- ok\n");
    let server = cli.env.start().await;
    let tools = server.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["agent_verify_task", "agent_get_runtime_status"]);
    // Only the prompts of published tools are offered.
    let prompts = server.client.list_all_prompts().await.unwrap();
    let prompts: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(prompts, ["verify_change"]);
    assert_eq!(
        server.call("agent_run_task", json!({"task": "x"})).await,
        json!({"error": {"code": "tool_not_admitted", "message": "Tool 'agent_run_task' is not admitted in the current runtime mode. Admitted tools: ['agent_get_runtime_status', 'agent_verify_task']"}})
    );
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Fix the authentication module"}),
        )
        .await;
    assert_eq!(v["session_id"], json!(""));
    assert_eq!(
        v["summary"],
        json!("Verification blocked: restricted mode mismatch")
    );
    assert_eq!(
        v["result"]["profile_alignment"],
        json!("restricted_mode_mismatch")
    );
    assert_eq!(v["result"]["outcome_kind"], json!("not_verified"));
    assert_eq!(
        v["errors"],
        json!([
            {"code": "restricted_mode_mismatch", "message": "The active APNTalk verification mode only permits bounded advisory verification tasks.", "details": null},
            {"code": "scope_too_broad", "message": "Narrow the request to one artifact, one claim, or one verification objective.", "details": null},
            {"code": "missing_required_context", "message": "Specify the target artifact, evidence path, or expected state to verify against.", "details": null}
        ])
    );
    assert_eq!(cli.env.session_count().await, 0);
    assert!(!cli.dir.join("argv.1").exists(), "the CLI was not called");
    // agent_wait_session is not published here: a run left running could not be collected,
    // so wait_seconds is refused before anything runs.
    let message = "Invalid agent_verify_task request: wait_seconds: not accepted in this runtime mode (agent_wait_session is not published)";
    assert_eq!(
        server
            .call(
                "agent_verify_task",
                json!({"task": "Verify /data/report.txt satisfies expected content", "wait_seconds": 0}),
            )
            .await,
        json!({
            "ok": false, "session_id": "", "status": "failed", "workflow": "verify_task",
            "profile": "verification", "summary": message,
            "result": {"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": []},
            "artifacts": [], "warnings": [],
            "errors": [{"code": "validation_error", "message": message}]
        })
    );
    assert_eq!(cli.env.session_count().await, 0);
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify /data/report.txt satisfies expected content"}),
        )
        .await;
    assert_eq!(v["result"]["verdict"], json!("pass"));
    let status = server.call("agent_get_runtime_status", json!({})).await;
    let cwd = path_str(&cli.env.cwd());
    assert_eq!(status["mode"], json!("apntalk_verification"));
    assert_eq!(status["version"], json!(env!("CARGO_PKG_VERSION")));
    for (key, want) in [
        ("policy_mode", json!("verification_only")),
        ("authority_mode", json!("advisory_only")),
        ("tool_surface_mode", json!("restricted")),
        ("active_profile", json!("apntalk_verification")),
        (
            "exposed_tools",
            json!(["agent_get_runtime_status", "agent_verify_task"]),
        ),
        ("allowed_directories", json!([cwd])),
        ("restriction_contract_id", json!("apntalk_verification_v1")),
        ("restriction_contract_version", json!(1)),
        ("fail_closed_enabled", json!(true)),
        ("restriction_compliance", json!(true)),
        ("non_compliance_reasons", json!(null)),
        ("server_version", json!(env!("CARGO_PKG_VERSION"))),
    ] {
        assert_eq!(status[key], want, "{key}");
    }
    server.shutdown().await;
}

/// The CLI gets a minimal environment: the server's bearer token and other secrets of the
/// server's environment never reach it; what it needs and what the operator lists do.
#[tokio::test]
async fn the_cli_never_sees_the_servers_secrets() {
    let mut cli = Cli::new("text").await;
    cli.env
        .set("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "bearer-secret-value")
        .set("SECRET_X", "planted-secret")
        .set("OPERATOR_LISTED", "listed")
        .set(
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH",
            "FAKE_CLAUDE_DIR,OPERATOR_LISTED",
        );
    cli.script("stdout", "done");
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let env = cli.read("env.1");
    assert!(!env.contains("bearer-secret-value"), "{env}");
    assert!(!env.contains("planted-secret"), "{env}");
    assert!(
        !env.lines().any(|l| l.starts_with("CLAUDE_AGENT_MCP_")),
        "{env}"
    );
    for line in [
        "OPERATOR_LISTED=listed".to_owned(),
        "ANTHROPIC_API_KEY=test-key".to_owned(),
        format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing: {env}");
    }
    server.shutdown().await;
}

/// Cancelling a claude_code run kills the CLI's whole process group: nothing is left behind.
#[tokio::test]
async fn cancelling_a_cli_run_leaves_no_process_behind() {
    let cli = Cli::new("text").await;
    cli.script("sleep", "30");
    cli.script("grandchild", "");
    cli.script("stdout", "never");
    let server = cli.env.start().await;
    let client = server.client.clone();
    let run = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        let r = client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("agent_run_task").with_arguments(args),
            )
            .await
            .unwrap();
        parse_single_text(&r)
    });
    let pids_file = cli.dir.join("pids.1");
    // Generous: the fake CLI starts its children within milliseconds on an idle machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&pids_file)
        .unwrap_or_default()
        .lines()
        .count()
        < 3
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.len() >= 3, "script pid, group, children: {pids:?}");
    let sid: String = sqlx::query_scalar("SELECT session_id FROM sessions")
        .fetch_one(&cli.env.db().await)
        .await
        .unwrap();
    let cancel = server
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(cancel["ok"], json!(true), "{cancel}");
    let envelope = run.await.unwrap();
    assert_eq!(envelope["errors"][0]["code"], json!("session_cancelled"));
    // Every process of the CLI's group (the script, its sleep, the grandchild) is gone.
    let mut members = vec![pids[0]];
    members.extend(&pids[2..]);
    agent_testkit::processes::wait_until_gone(&members, agent_testkit::processes::GONE_WITHIN)
        .await;
    agent_testkit::processes::wait_until_group_gone(pids[1], agent_testkit::processes::GONE_WITHIN)
        .await;
    server.shutdown().await;
}

/// Native mode hands allowlisted federated servers to the CLI's own MCP client.
#[tokio::test]
async fn native_mode_hands_federated_servers_to_the_cli() {
    let mut cli = Cli::new("native").await;
    let fixture = super::federation::fixture_server();
    let config = json!({"downstream_servers": [{
        "name": "fx", "command": path_str(&fixture), "args": ["--label", "fx"], "env": {"K": "v"},
        "allowed_tools": ["echo", "add"], "profiles_allowed": ["general"]
    }]});
    let path = cli.env.cwd().join("federation.json");
    std::fs::write(&path, config.to_string()).unwrap();
    cli.env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    cli.env
        .set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"success","is_error":false,"result":"used the tools","session_id":"s1","num_turns":2,"stop_reason":"end_turn"}"#,
    );
    let server = cli.env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "use the downstream tools"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["warnings"],
        json!([]),
        "no routing warning: the CLI calls the tools itself"
    );
    let argv = cli.argv(1);
    let at = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .map(|i| argv[i + 1].clone())
    };
    let mcp: serde_json::Value =
        serde_json::from_str(&at("--mcp-config").expect("--mcp-config")).unwrap();
    assert_eq!(
        mcp,
        json!({"mcpServers": {"fx": {"type": "stdio", "command": path_str(&fixture), "args": ["--label", "fx"], "env": {"K": "v"}}}})
    );
    assert!(argv.contains(&"--strict-mcp-config".to_owned()));
    assert_eq!(
        at("--allowedTools").as_deref(),
        Some("mcp__fx__echo,mcp__fx__add")
    );
    let sid = v["session_id"].as_str().unwrap();
    let catalog = cli
        .env
        .events(sid)
        .await
        .into_iter()
        .find(|e| e.0 == "downstream_tool_catalog_resolved")
        .unwrap();
    assert_eq!(
        catalog.2,
        json!({"visible_tools": ["fx__echo", "fx__add"], "forwarded": 2, "dropped": 0, "dropped_names": [], "forwarding_mode": "native_mcp_config"})
    );
    // A profile the server is not allowed for gets no MCP configuration.
    let _ = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    assert!(!cli.argv(2).contains(&"--mcp-config".to_owned()));
    server.shutdown().await;
}

/// The restricted mode (`docs/reference/policy.md#62-enforcement`,
/// `docs/reference/verification.md#9-restricted-mode`): the `--mode` flag, every non-admitted
/// tool, the hints of a blocked request, and an unavailable result.
#[tokio::test]
async fn restricted_mode_by_flag_blocks_every_other_tool_and_still_reports_unavailability() {
    let cli = Cli::new("text").await;
    let stderr = std::fs::File::create(cli.env.dir.path().join("server.stderr")).unwrap();
    let mut child = cli
        .env
        .command(&["--mode", "apntalk_verification"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(stderr))
        .spawn()
        .unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = rmcp::ServiceExt::serve((), (stdout, stdin)).await.unwrap();
    let server = Server { client, child };
    for tool in [
        "agent_continue_session",
        "agent_get_session",
        "agent_list_sessions",
        "agent_cancel_session",
        "agent_wait_session",
        "agent_fork_session",
    ] {
        let v = server
            .call(tool, json!({"session_id": "sess_x", "message": "m"}))
            .await;
        assert_eq!(v["error"]["code"], json!("tool_not_admitted"), "{tool}");
    }
    assert_eq!(cli.env.session_count().await, 0);
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Fix the authentication module"}),
        )
        .await;
    assert_eq!(
        v["warnings"],
        json!([
            "The active APNTalk verification mode only permits bounded advisory verification tasks.",
            "Reframe the request as a specific, observable claim to verify against existing evidence.",
            "Narrow the request to one artifact, one claim, or one verification objective.",
            "Example: \"Verify whether <specific file> satisfies <specific condition>\".",
            "Specify the target artifact, evidence path, or expected state to verify against.",
            "Include at least one concrete named subject for the verification claim."
        ])
    );
    cli.script("stderr", "Not logged in");
    cli.script("exit", "1");
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify whether the exposed tool list is exactly the admitted pair"}),
        )
        .await;
    assert!(
        is_session_id(v["session_id"].as_str().unwrap()),
        "a non-execution request proceeds"
    );
    assert_eq!(v["result"]["outcome_kind"], json!("unavailable"));
    assert_eq!(v["result"]["failure_class"], json!("backend_auth_failure"));
    server.shutdown().await;
}

/// The operator (never a workspace's `.env`) may trust a project's own Claude Code settings;
/// an unknown source is a startup error naming the setting.
#[tokio::test]
async fn the_operator_chooses_the_setting_sources() {
    let mut cli = Cli::new("native").await;
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES",
        "user, Project",
    );
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s","num_turns":1}"#,
    );
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let argv = cli.argv(1);
    let at = argv.iter().position(|a| a == "--setting-sources").unwrap();
    assert_eq!(argv[at + 1], "user,project");
    drop(server);

    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES",
        "user,everything",
    );
    let (code, _, err) = cli.env.run_to_exit(&[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES: 'everything' is not valid"),
        "{err}"
    );
}

/// The federation config is read once at startup, for discovery and for the CLI's MCP servers
/// alike: its warnings are logged once (they were logged twice when the claude_code backend
/// read the file a second time).
#[tokio::test]
async fn the_federation_config_is_read_once() {
    let mut cli = Cli::new("native").await;
    let config = json!({"downstream_servers": [{
        "name": "off",
        "command": "/nonexistent/never-spawned",
        "enabled": false,
        "allowed_tools": ["x"],
        "profiles_allowed": ["general", "bogus"]
    }]});
    let path = cli.env.cwd().join("federation.json");
    std::fs::write(&path, config.to_string()).unwrap();
    cli.env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    cli.env
        .set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    let server = cli.env.start().await;
    let status = server.call("agent_get_runtime_status", json!({})).await;
    assert_eq!(status["federation_enabled"], json!(true));
    let log = cli.env.stderr_log();
    assert_eq!(
        log.matches("Downstream server 'off': unknown profile 'bogus'")
            .count(),
        1,
        "{log}"
    );
    server.shutdown().await;
}
