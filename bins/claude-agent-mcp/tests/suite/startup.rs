//! Startup and the command line (`docs/reference/status.md#2-command-line`,
//! `docs/reference/policy.md#9-startup`).

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn version_flag() {
    let env = TestEnv::new().await;
    let (code, out, _) = env.run_to_exit(&["--version"]).await;
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("claude-agent-mcp {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
}

#[tokio::test]
async fn bad_flag_values_are_usage_errors() {
    let env = TestEnv::new().await;
    for args in [
        &["--transport", "grpc"][..],
        &["--port", "http"],
        &["--mode", "x"],
    ] {
        let (code, out, err) = env.run_to_exit(args).await;
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert!(err.contains("Usage"), "{err}");
    }
}

async fn startup_error(vars: &[(&str, &str)]) -> (i32, String) {
    let mut env = TestEnv::new().await;
    for (k, v) in vars {
        env.set(k, v);
    }
    let (code, out, err) = env.run_to_exit(&[]).await;
    assert!(out.is_empty(), "nothing on stdout: {out}");
    (code, err)
}

#[tokio::test]
async fn invalid_settings_are_all_reported_at_once() {
    let (code, err) = startup_error(&[
        ("CLAUDE_AGENT_MCP_TRANSPORT", "sse"),
        ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "grpc"),
        ("CLAUDE_AGENT_MCP_LOG_LEVEL", "VERBOSE"),
        ("CLAUDE_AGENT_MCP_MODE", "nonexistent_mode"),
    ])
    .await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        "claude-agent-mcp startup configuration error(s):\n  \
         • CLAUDE_AGENT_MCP_MODE='nonexistent_mode' is not valid. Choose from: ['apntalk_verification', 'standard']\n  \
         • CLAUDE_AGENT_MCP_TRANSPORT='sse' is not valid. Choose from: ['stdio', 'streamable-http']\n  \
         • CLAUDE_AGENT_MCP_LOG_LEVEL='VERBOSE' is not a valid log level\n  \
         • CLAUDE_AGENT_MCP_EXECUTION_BACKEND='grpc' is not valid. Choose from: ['api', 'claude_code']"
    );
}

#[tokio::test]
async fn port_out_of_range_for_http() {
    let (code, err) = startup_error(&[
        ("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http"),
        ("CLAUDE_AGENT_MCP_PORT", "99999"),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("CLAUDE_AGENT_MCP_PORT=99999 is out of range (1–65535)"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_api_key_fails_startup() {
    let (code, err) = startup_error(&[("ANTHROPIC_API_KEY", "")]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("ANTHROPIC_API_KEY is required for the 'api' execution backend."),
        "{err}"
    );
}

/// The store opens while the backend is built, and their outcomes are taken in the documented
/// order (`docs/reference/policy.md#92-startup-sequence`): a database that cannot open is the
/// error reported, not the missing key; and with the database fine, crash recovery has run
/// before the missing key stops startup.
#[tokio::test]
async fn a_store_error_comes_before_a_backend_error_and_recovery_before_the_exit() {
    let mut env = TestEnv::new().await;
    std::fs::write(env.cwd().join("not-a-dir"), "a file").unwrap();
    env.set("CLAUDE_AGENT_MCP_STATE_DIR", "not-a-dir/state");
    env.set("ANTHROPIC_API_KEY", "");
    let (code, _, err) = env.run_to_exit(&[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not-a-dir"), "the store's error: {err}");
    assert!(
        !err.contains("ANTHROPIC_API_KEY"),
        "not the backend's: {err}"
    );

    let mut env = TestEnv::new().await;
    env.reply_text("done").await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    server.shutdown().await;
    // A process died mid-run: `running` under a lease that expired long ago.
    env.mark_running(&sid, "dead@node", "2000-01-01T00:00:00+00:00")
        .await;
    env.set("ANTHROPIC_API_KEY", "");
    let (code, _, err) = env.run_to_exit(&[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("ANTHROPIC_API_KEY is required"), "{err}");
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("interrupted"),
        "recovered before the backend's error stopped startup"
    );
}

#[tokio::test]
async fn state_dir_contents_and_legacy_aliases() {
    let mut env = TestEnv::new().await;
    let server = env.start().await;
    server.shutdown().await;
    assert!(env.db_path().is_file());
    assert!(env.state_dir().join("artifacts").is_dir());

    env.set("CLAUDE_AGENT_STATE_DIR", "legacy");
    env.start().await.shutdown().await;
    assert!(
        env.cwd().join("legacy/claude-agent-mcp.db").is_file(),
        "legacy alias honoured"
    );

    env.set("CLAUDE_AGENT_MCP_STATE_DIR", "modern");
    env.start().await.shutdown().await;
    assert!(
        env.cwd().join("modern/claude-agent-mcp.db").is_file(),
        "new name wins"
    );

    env.set("CLAUDE_AGENT_MCP_DB_PATH", "db/here.db");
    env.set("CLAUDE_AGENT_MCP_ARTIFACT_DIR", "arts");
    env.reply_text(&"z".repeat(60)).await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap();
    server.shutdown().await;
    assert!(env.cwd().join("db/here.db").is_file());
    assert!(env.cwd().join("arts").join(sid).is_dir());
}

#[tokio::test]
async fn transport_flag_overrides_the_environment() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http");
    let mut cmd = env.command(&["--transport", "stdio"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = rmcp::ServiceExt::serve((), (stdout, stdin))
        .await
        .expect("stdio initialize");
    assert_eq!(client.list_all_tools().await.unwrap().len(), 9);
    let _ = client.cancel().await;
    let _ = child.wait().await;
}

#[tokio::test]
async fn restricted_mode_requires_claude_code_and_stdio() {
    let (code, err) = startup_error(&[
        ("CLAUDE_AGENT_MCP_MODE", "apntalk_verification"),
        ("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http"),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("  • CLAUDE_AGENT_MCP_MODE=apntalk_verification requires CLAUDE_AGENT_MCP_EXECUTION_BACKEND='claude_code', got 'api'"),
        "{err}"
    );
    assert!(
        err.contains("requires CLAUDE_AGENT_MCP_TRANSPORT='stdio', got 'streamable-http'"),
        "{err}"
    );
}

#[tokio::test]
async fn restricted_mode_contract_violation_aborts_before_touching_state() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_MODE", "apntalk_verification");
    env.set("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code");
    env.set("CLAUDE_AGENT_MCP_ALLOWED_DIRS", ",");
    let (code, out, err) = env.run_to_exit(&[]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains(
            "APNTalk verification mode startup contract violation(s):\n  • allowed_directories is empty — bounded filesystem scope cannot be proven\nStartup aborted (fail_closed=true). Fix the above before starting in apntalk_verification mode."
        ),
        "{err}"
    );
    assert!(!env.state_dir().exists(), "no state was touched");
}

/// The status tool reports the reasons of the startup self-check, in its words: one check
/// (`agent_policy::restricted::contract_violations`). The status used to word them
/// differently (`backend='api' != required='claude_code'`) and to list the tools first.
#[test]
fn the_status_reports_the_startup_contract_reasons() {
    use agent_mcp::ToolName;
    use agent_policy::config::{BackendKind, from_vars, vars};

    let dir = tempfile::tempdir().unwrap();
    let settings = [
        (vars::MODE, "apntalk_verification"),
        (vars::EXECUTION_BACKEND, "claude_code"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let mut config = from_vars(&settings, dir.path(), &Default::default()).unwrap();
    // A configuration the loader refuses: only a status built from it can show the reason.
    config.backend = BackendKind::Api;
    let admitted = [
        ToolName::VerifyTask,
        ToolName::GetRuntimeStatus,
        ToolName::RunTask,
    ];
    let status =
        serde_json::to_value(claude_agent_mcp::runtime_status(&config, &admitted, false)).unwrap();
    assert_eq!(status["restriction_compliance"], json!(false));
    assert_eq!(
        status["non_compliance_reasons"],
        json!([
            "backend='api' does not match required_backend='claude_code'",
            "extra tools registered: ['agent_run_task']"
        ])
    );
}

/// The server executes itself once more, in place, with glibc's allocator limited to one
/// arena (`src/arena.rs`): the process it was started as (same pid, name, arguments and
/// environment) runs with `MALLOC_ARENA_MAX=1` appended to its environment and answers; a
/// limit the operator set, either way, is kept and nothing is added.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_server_limits_malloc_to_one_arena_unless_the_operator_chose() {
    use agent_policy::config::libc_vars::{GLIBC_TUNABLES, MALLOC_ARENA_MAX};
    for (operator, appended) in [
        (None, Some(format!("{MALLOC_ARENA_MAX}=1"))),
        (Some((MALLOC_ARENA_MAX, "3")), None),
        (Some((GLIBC_TUNABLES, "glibc.malloc.arena_max=2")), None),
    ] {
        let mut env = TestEnv::new().await;
        if let Some((name, value)) = operator {
            env.set(name, value);
        }
        // What the harness starts the server with (`TestEnv::command`: a cleared environment,
        // `PATH` and the test's variables, which `std` passes in name order).
        let mut given = env.vars.clone();
        given.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        let mut expected: Vec<String> = given.iter().map(|(k, v)| format!("{k}={v}")).collect();
        expected.extend(appended);
        let server = env.start().await;
        let running = Running::of(&server);
        assert_eq!(running.environ, expected, "{operator:?}");
        let exe = std::fs::read_link(format!("/proc/{}/exe", running.pid)).expect("exe");
        assert_eq!(exe, std::fs::canonicalize(BIN).unwrap(), "{operator:?}");
        // The process keeps its name (the kernel keeps 15 bytes of the file's name), so that
        // `ps` and `pgrep` still find it.
        let name = exe.file_name().unwrap().to_string_lossy();
        assert_eq!(running.comm, &name[..name.len().min(15)], "{operator:?}");
        assert_eq!(
            running.cmdline,
            format!("{BIN}\0").into_bytes(),
            "{operator:?}"
        );
        let status = server.call("agent_get_runtime_status", json!({})).await;
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{operator:?}");
        assert_eq!(server.shutdown().await, 0, "{operator:?}");
    }
}

/// Started through a symlink of another name, found in `PATH` by its bare name, the server
/// executes that path again, so that it keeps the name it was started by (`ps`, `pgrep`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_re_executed_server_keeps_the_name_it_was_started_by() {
    let mut env = TestEnv::new().await;
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.path().join("cam-link")).unwrap();
    let search = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.set("PATH", &search);
    let server = env.start_via(std::path::Path::new("cam-link")).await;
    let running = Running::of(&server);
    let limit = format!("{}=1", agent_policy::config::libc_vars::MALLOC_ARENA_MAX);
    assert_eq!(
        running.environ.last(),
        Some(&limit),
        "{:?}",
        running.environ
    );
    assert_eq!(running.comm, "cam-link");
    assert_eq!(running.cmdline, b"cam-link\0");
    assert_eq!(server.shutdown().await, 0);
}

/// What `/proc` says of a running server: its environment's entries, name and command line.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct Running {
    pid: u32,
    environ: Vec<String>,
    comm: String,
    cmdline: Vec<u8>,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl Running {
    fn of(server: &Server) -> Self {
        let pid = server.child.id().expect("the server runs");
        let read = |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).expect(file);
        Self {
            pid,
            environ: read("environ")
                .split(|b| *b == 0)
                .filter(|entry| !entry.is_empty())
                .map(|entry| String::from_utf8_lossy(entry).into_owned())
                .collect(),
            comm: String::from_utf8_lossy(&read("comm")).trim_end().to_owned(),
            cmdline: read("cmdline"),
        }
    }
}
