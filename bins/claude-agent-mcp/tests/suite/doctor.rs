//! `claude-agent-mcp doctor` (`docs/reference/status.md#2-command-line`) over the real binary, with
//! no stdin: one line per check, `✓` or `✗ … — fix: …`, and exit status 1 when any check failed.

use std::path::PathBuf;

use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::*;

/// Runs `doctor` (after `flags`): (exit code, stdout, stderr).
async fn doctor(env: &TestEnv, flags: &[&str]) -> (i32, String, String) {
    let mut args = flags.to_vec();
    args.push("doctor");
    env.run_to_exit(&args).await
}

/// The report line of `check`, whichever its mark.
fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.strip_prefix("✓ ")
                .or_else(|| l.strip_prefix("✗ "))
                .is_some_and(|rest| rest.starts_with(&format!("{check}: ")))
        })
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{out}"))
}

fn checks(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("✓ ") || l.starts_with("✗ "))
        .collect()
}

/// The stand-in answers the probe `GET /v1/models` like the real API does for a valid key.
async fn models_answer(env: &TestEnv, status: u16) {
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"data": []})))
        .mount(&env.api)
        .await;
}

#[tokio::test]
async fn doctor_passes_on_a_good_setup() {
    let env = TestEnv::new().await;
    models_answer(&env, 200).await;
    let (code, out, err) = doctor(&env, &[]).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        out.lines().next(),
        Some(
            format!(
                "claude-agent-mcp {} doctor, working directory {}",
                env!("CARGO_PKG_VERSION"),
                path_str(&env.cwd())
            )
            .as_str()
        )
    );
    let state = path_str(&env.state_dir());
    let cwd = path_str(&env.cwd());
    assert_eq!(
        checks(&out),
        [
            "✓ configuration: valid (mode=standard, backend=api, transport=stdio, model=claude-sonnet-4-6)"
                .to_owned(),
            format!(
                "✓ state directory: {state} does not exist yet and will be created at startup ({cwd} is writable)"
            ),
            format!(
                "✓ database: {} does not exist yet and will be created at startup",
                path_str(&env.db_path())
            ),
            "✓ api key: ANTHROPIC_API_KEY is set".to_owned(),
            format!(
                "✓ api endpoint: {} is reachable (HTTP 200 to GET /v1/models)",
                env.api.uri()
            ),
            "✓ federation: disabled (CLAUDE_AGENT_MCP_FEDERATION_ENABLED is not true)".to_owned(),
        ]
    );
    assert_eq!(out.lines().last(), Some("All 6 checks passed."));
    // The probe carried the key; nothing was created or left behind.
    let requests = env.api.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), "/v1/models");
    assert_eq!(requests[0].headers["x-api-key"], "test-key");
    assert!(!env.state_dir().exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.cwd())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn doctor_checks_an_existing_database_without_writing_to_it() {
    let env = TestEnv::new().await;
    models_answer(&env, 200).await;
    let store = agent_store::SqliteStore::open(agent_store::StoreConfig {
        db_path: env.db_path(),
        artifact_dir: env.state_dir().join("artifacts"),
        max_artifact_bytes: 1024,
    })
    .await
    .unwrap();
    store.close().await;
    let digest = || Sha256::digest(std::fs::read(env.db_path()).unwrap());
    let before = digest();

    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        line(&out, "state directory"),
        format!(
            "✓ state directory: {} is writable",
            path_str(&env.state_dir())
        )
    );
    // The artifact directory exists inside the state directory: probed on its own.
    assert_eq!(
        line(&out, "artifact directory"),
        format!(
            "✓ artifact directory: {} is writable",
            path_str(&env.state_dir().join("artifacts"))
        )
    );
    assert_eq!(
        line(&out, "database"),
        format!(
            "✓ database: {} opens, schema version 1, journal mode WAL",
            path_str(&env.db_path())
        )
    );
    assert_eq!(digest(), before, "the database file changed");
    let probes: Vec<_> = std::fs::read_dir(env.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("probe"))
        .collect();
    assert!(probes.is_empty(), "{probes:?}");
}

#[tokio::test]
async fn doctor_reports_a_missing_api_key() {
    let mut env = TestEnv::new().await;
    env.vars.remove("ANTHROPIC_API_KEY");
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "api key"),
        format!(
            "✗ api key: ANTHROPIC_API_KEY is not set (the 'api' backend needs it) — fix: set \
             ANTHROPIC_API_KEY in the server's environment or in {}, or use \
             CLAUDE_AGENT_MCP_EXECUTION_BACKEND=claude_code",
            path_str(&env.cwd().join(".env"))
        )
    );
    // Without a key the endpoint is not probed.
    assert!(!out.contains("api endpoint"), "{out}");
    assert!(env.api.received_requests().await.unwrap().is_empty());
    assert_eq!(out.lines().last(), Some("1 of 5 checks failed."));
}

#[tokio::test]
async fn doctor_reports_a_rejected_api_key() {
    let env = TestEnv::new().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", "test-key"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"}
        })))
        .mount(&env.api)
        .await;
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "api endpoint"),
        format!(
            "✗ api endpoint: {} rejected the API key (HTTP 401 to GET /v1/models) — fix: set \
             ANTHROPIC_API_KEY to a valid key (https://console.anthropic.com/settings/keys)",
            env.api.uri()
        )
    );
    assert!(line(&out, "api key").starts_with("✓ "));
}

#[tokio::test]
async fn doctor_reports_an_unreachable_api() {
    let mut env = TestEnv::new().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    env.set("ANTHROPIC_BASE_URL", &base);
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    let endpoint = line(&out, "api endpoint");
    assert!(
        endpoint.starts_with(&format!("✗ api endpoint: cannot reach {base}: ")),
        "{endpoint}"
    );
    assert!(
        endpoint.ends_with(
            " — fix: check ANTHROPIC_BASE_URL, the network, and any HTTPS_PROXY / NO_PROXY settings"
        ),
        "{endpoint}"
    );
}

#[tokio::test]
async fn doctor_reports_an_unwritable_state_directory() {
    let mut env = TestEnv::new().await;
    models_answer(&env, 200).await;
    let blocker = env.cwd().join("blocker");
    std::fs::write(&blocker, "a regular file").unwrap();
    let state = blocker.join("state");
    env.set("CLAUDE_AGENT_MCP_STATE_DIR", &path_str(&state));
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "state directory"),
        format!(
            "✗ state directory: {} cannot be created: {} is not a directory — fix: make it a \
             directory the server's user can write, or point CLAUDE_AGENT_MCP_STATE_DIR elsewhere",
            path_str(&state),
            path_str(&blocker)
        )
    );
    assert!(line(&out, "database").starts_with("✗ database: "), "{out}");
    // The other checks still run.
    assert!(line(&out, "api endpoint").starts_with("✓ "), "{out}");
    assert_eq!(out.lines().last(), Some("2 of 6 checks failed."));
}

#[tokio::test]
async fn doctor_reports_a_missing_claude_cli() {
    let mut env = TestEnv::new().await;
    // A PATH without `claude` (CI installs the real CLI).
    let empty = env.cwd().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    env.set("PATH", &path_str(&empty));
    env.set("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code");
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "claude CLI"),
        "✗ claude CLI: claude CLI not found in PATH. Install Claude Code \
         (https://claude.ai/code) and ensure the 'claude' binary is on PATH, or set \
         CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH. — fix: install Claude Code (npm install -g \
         @anthropic-ai/claude-code) so that `claude` is on the server's PATH, or set \
         CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH; see docs/claude-code-backend.md"
    );
    // The api backend's checks do not apply.
    assert!(!out.contains("api key"), "{out}");
    assert!(line(&out, "configuration").contains("backend=claude_code"));
}

#[tokio::test]
async fn doctor_accepts_a_working_claude_cli() {
    let mut env = TestEnv::new().await;
    let dir = env.cwd().join("fake-cli");
    std::fs::create_dir(&dir).unwrap();
    let fake = agent_testkit::fake_cli::FakeCli::install(&dir, &dir);
    let cli = fake.path().to_path_buf();
    env.set("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code");
    env.set("CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH", &path_str(&cli));
    env.set(agent_testkit::fake_cli::CONTROL_VAR, &path_str(&dir));
    env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH",
        agent_testkit::fake_cli::CONTROL_VAR,
    );
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        line(&out, "claude CLI"),
        format!(
            "✓ claude CLI: {} answers --version: 9.9.9 (Claude Code)",
            path_str(&cli)
        )
    );
    // `--version` is the only invocation.
    assert!(!dir.join("count").exists());
}

#[tokio::test]
async fn doctor_reports_a_bad_federation_config() {
    let mut env = TestEnv::new().await;
    models_answer(&env, 200).await;
    let config = env.cwd().join("federation.json");
    std::fs::write(&config, "{\"downstream_servers\": [").unwrap();
    env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    env.set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&config));
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    let federation = line(&out, "federation config");
    assert!(
        federation.starts_with(&format!(
            "✗ federation config: Federation config file {} is not valid JSON: ",
            path_str(&config)
        )),
        "{federation}"
    );
    assert!(
        federation.ends_with(
            " — fix: fix the file as the message says; the format is in docs/federation.md §3"
        ),
        "{federation}"
    );

    // Enabled without a config file.
    env.vars.remove("CLAUDE_AGENT_MCP_FEDERATION_CONFIG");
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "federation"),
        "✗ federation: enabled, but CLAUDE_AGENT_MCP_FEDERATION_CONFIG is not set — fix: set \
         CLAUDE_AGENT_MCP_FEDERATION_CONFIG to the JSON config (docs/federation.md), or unset \
         CLAUDE_AGENT_MCP_FEDERATION_ENABLED"
    );

    // A path that does not exist.
    let missing = env.cwd().join("absent.json");
    env.set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&missing));
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "federation config"),
        format!(
            "✗ federation config: Federation config file not found: {} — fix: create the file or \
             correct CLAUDE_AGENT_MCP_FEDERATION_CONFIG; see docs/federation.md",
            path_str(&missing)
        )
    );
}

/// The fixture MCP server of agent-federation (built on demand, as in `federation.rs`).
fn fixture_server() -> PathBuf {
    let path = PathBuf::from(BIN).with_file_name("fixture-mcp-server");
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "agent-federation",
                "--bin",
                "fixture-mcp-server",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the fixture MCP server");
    }
    path
}

#[tokio::test]
async fn doctor_discovers_each_enabled_downstream_server() {
    let mut env = TestEnv::new().await;
    models_answer(&env, 200).await;
    let config = json!({"downstream_servers": [
        {
            "name": "fx",
            "command": path_str(&fixture_server()),
            "args": ["--label", "fx"],
            "allowed_tools": ["echo", "add"],
            "profiles_allowed": ["general"]
        },
        {
            "name": "broken",
            "command": "/nonexistent/mcp-server",
            "allowed_tools": ["x"],
            "profiles_allowed": ["general"],
            "discovery_timeout_seconds": 5
        },
        {
            "name": "off",
            "command": "/nonexistent/never-spawned",
            "enabled": false,
            "allowed_tools": ["x"],
            "profiles_allowed": ["general"]
        }
    ]});
    let path = env.cwd().join("federation.json");
    std::fs::write(&path, config.to_string()).unwrap();
    env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    env.set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "federation config"),
        format!(
            "✓ federation config: {} is valid: 3 server(s), 2 enabled",
            path_str(&path)
        )
    );
    let fx = line(&out, "downstream 'fx'");
    assert!(
        fx.starts_with("✓ downstream 'fx': reachable over stdio: ")
            && fx.ends_with(" tool(s) discovered, 2 allowlisted"),
        "{fx}"
    );
    let broken = line(&out, "downstream 'broken'");
    assert!(
        broken.starts_with("✗ downstream 'broken': discovery over stdio failed: "),
        "{broken}"
    );
    assert!(
        broken.contains(" — fix: check the server's command and args"),
        "{broken}"
    );
    assert!(!out.contains("downstream 'off'"), "{out}");
    assert_eq!(out.lines().last(), Some("1 of 8 checks failed."));
}

#[tokio::test]
async fn doctor_reports_invalid_configuration_and_stops() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_LOG_LEVEL", "VERBOSE");
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        checks(&out),
        [format!(
            "✗ configuration: 1 problem(s): CLAUDE_AGENT_MCP_LOG_LEVEL='VERBOSE' is not a valid \
             log level — fix: correct these settings (environment, {}, or command-line flags); \
             see docs/configuration.md",
            path_str(&env.cwd().join(".env"))
        )]
    );
    assert_eq!(out.lines().last(), Some("1 of 1 checks failed."));

    // Flags before `doctor` are validated like at startup.
    let env = TestEnv::new().await;
    let (code, out, _) = doctor(&env, &["--mode", "apntalk_verification"]).await;
    assert_eq!(code, 1, "{out}");
    let config = line(&out, "configuration");
    assert!(
        config.contains(
            "CLAUDE_AGENT_MCP_MODE=apntalk_verification requires \
             CLAUDE_AGENT_MCP_EXECUTION_BACKEND='claude_code'"
        ),
        "{config}"
    );
}

/// The probe carries the API key: a redirect from the configured endpoint is not followed
/// (it used to be, sending the key to the redirect's target) and is a failed check naming
/// the status.
#[tokio::test]
async fn doctor_does_not_follow_a_redirect_with_the_key() {
    let env = TestEnv::new().await;
    // The redirect's target records every byte it is sent.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let recorder = {
        let received = received.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            loop {
                let Ok((mut stream, _)) = target.accept().await else {
                    return;
                };
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let received = received.clone();
                tokio::spawn(async move {
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        received.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                });
            }
        })
    };
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("http://127.0.0.1:{target_port}/v1/models?limit=1").as_str(),
        ))
        .mount(&env.api)
        .await;
    let (code, out, _) = doctor(&env, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        line(&out, "api endpoint"),
        format!(
            "✗ api endpoint: {} answered with a redirect (HTTP 307 to GET /v1/models), which is \
             not followed: the API key is never sent where a redirect points — fix: set \
             ANTHROPIC_BASE_URL to the API's own address (the redirect's target, if you trust it)",
            env.api.uri()
        )
    );
    // The stand-in did get the probe, with the key; the target got nothing at all.
    let probes = env.api.received_requests().await.unwrap();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].headers["x-api-key"], "test-key");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect's target was contacted: {:?}",
        String::from_utf8_lossy(&received.lock().unwrap())
    );
    recorder.abort();
}
