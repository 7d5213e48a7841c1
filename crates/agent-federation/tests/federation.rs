//! Federation end to end against the scripted fixture server (`fixture-mcp-server`, a binary
//! of this crate, over stdio and — hosted in process — over streamable HTTP), and against the
//! reference server `@modelcontextprotocol/server-everything` when
//! `CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER` names it (see `scripts/install-mcp-peers.sh`).

// Helpers outside `#[test]` functions are test code too (clippy's allow-in-tests misses them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../src/bin/fixture-mcp-server/tools.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::{EventLog, EventType, Profile, ToolCallContext, ToolProvider};
use agent_federation::{
    ConnectionState, DownstreamTransport, Federation, FederationConfig, FederationConfigError,
    InvocationErrorKind,
};
use agent_testkit::store::MemStore;
use serde_json::{Value, json};

const FIXTURE: &str = env!("CARGO_BIN_EXE_fixture-mcp-server");

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn ctx(profile: Profile) -> ToolCallContext {
    ToolCallContext {
        session_id: "sess-1".to_owned(),
        turn_index: 3,
        profile,
        working_directory: None,
    }
}

fn general() -> ToolCallContext {
    ctx(Profile::General)
}

fn config(value: Value) -> FederationConfig {
    FederationConfig::from_value(&value).unwrap()
}

/// A stdio server entry for the fixture.
fn fixture_server(name: &str, extra_args: &[&str], allowed: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["--label".into(), name.into()];
    args.extend(extra_args.iter().map(|s| (*s).to_owned()));
    json!({
        "name": name,
        "command": FIXTURE,
        "args": args,
        "allowed_tools": allowed,
        "profiles_allowed": ["general"],
        "discovery_timeout_seconds": 15,
    })
}

const ALL_SCRIPTED: &[&str] = &[
    "echo",
    "add",
    "fail",
    "crash",
    "slow",
    "env",
    "multi",
    "nodesc",
    "dotted.name",
];

async fn start(value: Value) -> (Federation, Arc<MemStore>) {
    let store = Arc::new(MemStore::default());
    let federation = Federation::start(config(value), store.clone()).await;
    (federation, store)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn load_text(dir: &Path, text: &str) -> Result<FederationConfig, FederationConfigError> {
    let path = dir.join("federation.json");
    std::fs::write(&path, text).unwrap();
    FederationConfig::load(&path)
}

#[test]
fn config_validation_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("federation.json");
    let p = path.display().to_string();

    let missing = FederationConfig::load(dir.path().join("absent.json")).unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!(
            "Federation config file not found: {}",
            dir.path().join("absent.json").display()
        )
    );
    assert!(
        missing
            .log_line()
            .ends_with(" — federation will be disabled")
    );
    assert!(matches!(missing, FederationConfigError::NotFound(_)));

    // A directory exists but cannot be read as a file.
    let unreadable = FederationConfig::load(dir.path()).unwrap_err().to_string();
    assert!(
        unreadable.starts_with(&format!(
            "Cannot read federation config file {}: ",
            dir.path().display()
        )),
        "{unreadable}"
    );

    let invalid = load_text(dir.path(), "{not json").unwrap_err();
    assert!(
        invalid
            .to_string()
            .starts_with(&format!("Federation config file {p} is not valid JSON: ")),
        "{invalid}"
    );
    assert!(
        invalid
            .log_line()
            .starts_with("Federation config error: Federation config file ")
    );
    assert!(
        invalid
            .log_line()
            .ends_with(" — federation will be disabled")
    );

    let cases: Vec<(&str, String)> = vec![
        (
            "[]",
            format!("Federation config file {p} must be a JSON object"),
        ),
        (
            r#"{"downstream_servers": {"name": "x"}}"#,
            "Federation config 'downstream_servers' must be a list".into(),
        ),
        (
            r#"{"downstream_servers": null}"#,
            "Federation config 'downstream_servers' must be a list".into(),
        ),
        (
            r#"{"downstream_servers": ["x"]}"#,
            "Each downstream server config must be a JSON object, got str".into(),
        ),
        (
            r#"{"downstream_servers": [{"command": "x"}]}"#,
            "Downstream server 'name' is required and must be a non-empty string".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "   ", "command": "x"}]}"#,
            "Downstream server 'name' is required and must be a non-empty string".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "a__b", "command": "x"}]}"#,
            "Downstream server 'a__b' must not contain '__' (reserved for normalized tool name separator)".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "transport": "websocket", "command": "x"}]}"#,
            "Downstream server 's': unsupported transport 'websocket'. Supported transports: ['stdio', 'streamable-http']".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s"}]}"#,
            "Downstream server 's': 'command' is required for stdio transport".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "args": "-v"}]}"#,
            "Downstream server 's': 'args' must be a list".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "env": ["A=1"]}]}"#,
            "Downstream server 's': 'env' must be a JSON object".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "allowed_tools": "echo"}]}"#,
            "Downstream server 's': 'allowed_tools' must be a list".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "profiles_allowed": "general"}]}"#,
            "Downstream server 's': 'profiles_allowed' must be a list".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "discovery_timeout_seconds": "soon"}]}"#,
            "Downstream server 's': 'discovery_timeout_seconds' must be a positive number".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "command": "x", "call_timeout_seconds": 0}]}"#,
            "Downstream server 's': 'call_timeout_seconds' must be a positive number".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "transport": "streamable-http"}]}"#,
            "Downstream server 's': 'url' is required for streamable-http transport".into(),
        ),
        (
            r#"{"downstream_servers": [{"name": "s", "transport": "streamable-http", "url": "http://127.0.0.1:1/mcp", "headers": []}]}"#,
            "Downstream server 's': 'headers' must be a JSON object".into(),
        ),
    ];
    for (text, expected) in cases {
        let error = load_text(dir.path(), text).unwrap_err();
        assert_eq!(error.to_string(), expected, "config: {text}");
        assert_eq!(
            error.log_line(),
            format!("Federation config error: {expected} — federation will be disabled")
        );
    }

    // Valid: defaults, no servers, unknown keys ignored, warnings for an empty allowlist.
    let empty = load_text(dir.path(), r#"{"other": 1}"#).unwrap();
    assert!(empty.servers.is_empty());
    let ok = load_text(
        dir.path(),
        r#"{"downstream_servers": [{"name": "s", "command": "x", "unknown": true}]}"#,
    )
    .unwrap();
    let server = &ok.servers[0];
    assert!(server.enabled);
    assert_eq!(server.discovery_timeout, Duration::from_secs(10));
    assert_eq!(server.call_timeout, Duration::from_secs(60));
    assert!(
        matches!(&server.transport, DownstreamTransport::Stdio { args, env, .. } if args.is_empty() && env.is_empty())
    );
    assert_eq!(
        ok.warnings,
        vec![
            "Downstream server 's' has an empty 'allowed_tools' list — no tools from this server will be exposed"
        ]
    );
    assert_eq!(ok.path.as_deref(), Some(path.as_path()));
}

#[test]
fn example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/federation.json");
    let config = FederationConfig::load(&example).unwrap();
    assert!(!config.servers.is_empty());
}

#[tokio::test]
async fn settings_table() {
    let store: Arc<dyn EventLog> = Arc::new(MemStore::default());

    let off =
        Federation::from_settings(false, Some(Path::new("/nonexistent.json")), store.clone()).await;
    let status = off.status();
    assert!(!status.enabled && !status.active);
    assert!(status.problems.is_empty());

    let unset = Federation::from_settings(true, None, store.clone()).await;
    assert!(unset.status().enabled && !unset.status().active);
    assert_eq!(unset.status().problems.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.json");
    let missing = Federation::from_settings(true, Some(&absent), store.clone()).await;
    assert!(!missing.is_active());
    assert_eq!(
        missing.status().problems,
        vec![format!(
            "Federation config file not found: {} — federation will be disabled",
            absent.display()
        )]
    );

    // A server name with `__` disables federation even though the fixture is reachable.
    let bad = dir.path().join("bad.json");
    let mut server = fixture_server("bad__name", &[], &["echo"]);
    server["name"] = json!("bad__name");
    std::fs::write(&bad, json!({"downstream_servers": [server]}).to_string()).unwrap();
    let invalid = Federation::from_settings(true, Some(&bad), store.clone()).await;
    let status = invalid.status();
    assert!(status.enabled && !status.active);
    assert!(status.problems[0].starts_with(
        "Federation config error: Downstream server 'bad__name' must not contain '__'"
    ));
    assert!(invalid.visible_tools(Profile::General).is_empty());

    // Valid with zero enabled servers: inactive, empty catalog.
    let none = dir.path().join("none.json");
    std::fs::write(&none, r#"{"downstream_servers": []}"#).unwrap();
    let empty = Federation::from_settings(true, Some(&none), store.clone()).await;
    assert!(empty.status().enabled && !empty.is_active() && empty.catalog().is_empty());

    // Valid and reachable: active.
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        json!({"downstream_servers": [fixture_server("fx", &[], &["echo"])]}).to_string(),
    )
    .unwrap();
    let active = Federation::from_settings(true, Some(&good), store).await;
    let status = active.status();
    assert!(status.enabled && status.active);
    assert_eq!(status.config_path, Some(good.display().to_string()));
    active.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Discovery, catalog, visibility
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn disabled_servers_are_never_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let spawned = dir.path().join("disabled-spawns");
    let mut disabled = fixture_server("off", &["--spawn-log", path_arg(&spawned)], &["echo"]);
    disabled["enabled"] = json!(false);
    let (federation, _) = start(json!({"downstream_servers": [
        disabled,
        fixture_server("on", &[], &["echo"]),
    ]}))
    .await;
    assert!(!spawned.exists(), "a disabled server was spawned");
    assert_eq!(
        federation.visible_tool_names(Profile::General),
        vec!["on__echo"]
    );
    let status = federation.status();
    assert_eq!(status.servers.len(), 2);
    assert_eq!(status.servers[0].state, ConnectionState::Disabled);
    assert!(!status.servers[0].enabled);
    assert_eq!(status.servers[1].state, ConnectionState::Connected);
    let err = federation
        .call(&general(), "off__echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err, "Tool 'off__echo' is not visible for this session");
    assert!(!spawned.exists());
    federation.shutdown().await;
}

#[tokio::test]
async fn discovery_timeout_skips_a_hanging_server() {
    let mut hanging = fixture_server("hang", &["--hang"], &["echo"]);
    hanging["discovery_timeout_seconds"] = json!(1.0);
    let started = Instant::now();
    let (federation, _) = start(json!({"downstream_servers": [
        hanging,
        fixture_server("ok", &[], &["echo"]),
    ]}))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "discovery took {:?}",
        started.elapsed()
    );
    assert_eq!(
        federation.visible_tool_names(Profile::General),
        vec!["ok__echo"]
    );
    let status = federation.status();
    assert!(status.active);
    assert_eq!(status.servers[0].state, ConnectionState::DiscoveryFailed);
    assert_eq!(status.servers[0].discovered, 0);
    assert!(
        status.problems[0].starts_with("Downstream server 'hang': discovery failed: "),
        "{:?}",
        status.problems
    );
    let out = federation
        .call(&general(), "ok__echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(out, "ok: hi");
    federation.shutdown().await;
}

#[tokio::test]
async fn allowlist_naming_and_profiles() {
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], ALL_SCRIPTED),
    ]}))
    .await;

    // Naming: `<server>__<tool>`, catalog order, invalid names skipped with a warning.
    let names = federation.visible_tool_names(Profile::General);
    assert_eq!(
        names,
        vec![
            "fx__echo",
            "fx__add",
            "fx__fail",
            "fx__crash",
            "fx__slow",
            "fx__env",
            "fx__multi",
            "fx__nodesc",
        ]
    );
    let status = federation.status();
    assert!(status.active);
    assert_eq!(status.discovered, 11);
    assert_eq!(status.allowlisted, 8);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("'fx__dotted.name' is not a valid tool name")),
        "{:?}",
        status.warnings
    );

    // Not allowlisted: catalogued with allowed=false, never visible, never callable.
    let secret = federation
        .catalog()
        .iter()
        .find(|t| t.normalized_name == "fx__secret")
        .unwrap();
    assert!(!secret.allowed);
    assert!(!names.iter().any(|n| n.contains("secret")));
    for profile in Profile::ALL {
        assert!(
            federation
                .visible_tools(*profile)
                .iter()
                .all(|t| t.name != "fx__secret")
        );
    }
    let err = federation
        .call(&general(), "fx__secret", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err, "Tool 'fx__secret' is not visible for this session");

    // Definitions: downstream description and schema, or the fallbacks.
    let tools = federation.visible_tools(Profile::General);
    let echo = tools.iter().find(|t| t.name == "fx__echo").unwrap();
    assert_eq!(&*echo.description, "Echoes `text` back");
    assert_eq!(echo.input_schema["required"], json!(["text"]));
    let nodesc = tools.iter().find(|t| t.name == "fx__nodesc").unwrap();
    assert_eq!(&*nodesc.description, "Tool from fx");
    assert_eq!(
        *nodesc.input_schema,
        json!({"type": "object", "properties": {}})
    );
    for tool in &tools {
        assert!(agent_federation::is_valid_tool_name(&tool.name));
    }

    // Profile visibility: `general` only.
    assert!(federation.visible_tools(Profile::Verification).is_empty());
    let err = federation
        .call(
            &ctx(Profile::Verification),
            "fx__echo",
            json!({"text": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err, "Tool 'fx__echo' is not visible for this session");
    assert!(federation.federated());
    federation.shutdown().await;
}

#[tokio::test]
async fn verification_profile_when_listed() {
    let mut server = fixture_server("fx", &[], &["echo"]);
    server["profiles_allowed"] = json!(["general", "verification"]);
    let (federation, _) = start(json!({"downstream_servers": [server]})).await;
    assert_eq!(
        federation.visible_tool_names(Profile::Verification),
        vec!["fx__echo"]
    );
    federation.shutdown().await;
}

#[tokio::test]
async fn no_allowlisted_tool_means_inactive() {
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], &["not-there"]),
    ]}))
    .await;
    let status = federation.status();
    assert!(status.enabled && !status.active);
    assert_eq!(status.discovered, 11);
    assert_eq!(status.servers[0].state, ConnectionState::Idle);
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("allowlisted tool 'not-there' was not discovered"))
    );
    assert!(federation.visible_tools(Profile::General).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Invocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_required_arguments_never_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let (federation, store) = start(json!({"downstream_servers": [
        fixture_server("fx", &["--call-log", path_arg(&calls)], &["add", "echo"]),
    ]}))
    .await;
    let err = federation
        .call(&general(), "fx__add", json!({"a": 1}))
        .await
        .unwrap_err();
    assert_eq!(err, "Tool 'fx__add' is missing required arguments: ['b']");
    let err = federation
        .call(&general(), "fx__add", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Tool 'fx__add' is missing required arguments: ['a', 'b']"
    );
    let refused = federation
        .invoke(&general(), "fx__add", json!({"b": 2}))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, InvocationErrorKind::SchemaValidation);
    assert_eq!(refused.kind.code(), "downstream_schema_validation_error");
    assert!(lines(&calls).is_empty(), "the server was contacted");
    assert!(store.appended().is_empty(), "refusals write no events");

    let out = federation
        .call(&general(), "fx__add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(out, "3");
    assert_eq!(lines(&calls), vec!["add"]);
    federation.shutdown().await;
}

#[tokio::test]
async fn events_record_sorted_keys_and_no_values() {
    let (federation, store) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], &["echo", "fail"]),
    ]}))
    .await;
    let out = federation
        .call(
            &general(),
            "fx__echo",
            json!({"zeta": 1, "text": "SECRET-VALUE-42", "alpha": {"nested": "SECRET-NESTED"}}),
        )
        .await
        .unwrap();
    assert_eq!(out, "fx: SECRET-VALUE-42");
    let events = store.appended();
    assert_eq!(events.len(), 2);
    let (session, invocation) = &events[0];
    assert_eq!(session, "sess-1");
    assert_eq!(invocation.event_type, EventType::DownstreamToolInvocation);
    assert_eq!(invocation.turn_index, 3);
    assert_eq!(
        invocation.payload,
        json!({
            "normalized_name": "fx__echo",
            "server": "fx",
            "downstream_name": "echo",
            "input_keys": ["alpha", "text", "zeta"],
        })
    );
    let result = &events[1].1;
    assert_eq!(result.event_type, EventType::DownstreamToolResult);
    assert_eq!(result.turn_index, 3);
    assert_eq!(
        result.payload,
        json!({"normalized_name": "fx__echo", "success": true, "error_message": null})
    );
    let all = format!("{events:?}");
    assert!(!all.contains("SECRET-VALUE-42") && !all.contains("SECRET-NESTED"));

    // isError → Err for the model, success:false in the event.
    let err = federation
        .call(&general(), "fx__fail", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err, "fixture failure: something broke");
    let events = store.appended();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[3].1.payload,
        json!({"normalized_name": "fx__fail", "success": false, "error_message": "fixture failure: something broke"})
    );
    let outcome = federation
        .invoke(&general(), "fx__fail", json!({}))
        .await
        .unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.as_text(), "Error: fixture failure: something broke");
    federation.shutdown().await;
}

#[tokio::test]
async fn content_blocks_are_joined() {
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], &["multi"]),
    ]}))
    .await;
    let out = federation
        .call(&general(), "fx__multi", json!({}))
        .await
        .unwrap();
    let parts: Vec<&str> = out.split('\n').collect();
    assert_eq!(parts.len(), 3, "{out}");
    assert_eq!(parts[0], "one");
    let image: Value = serde_json::from_str(parts[1]).unwrap();
    assert_eq!(image["type"], "image");
    assert_eq!(image["data"], "AAAA");
    assert_eq!(parts[2], "two");
    federation.shutdown().await;
}

#[tokio::test]
async fn one_connection_is_reused_and_a_crash_restarts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let spawns = dir.path().join("spawns");
    let (federation, store) = start(json!({"downstream_servers": [
        fixture_server("fx", &["--spawn-log", path_arg(&spawns)], &["echo", "crash"]),
    ]}))
    .await;
    for i in 0..3 {
        let out = federation
            .call(&general(), "fx__echo", json!({"text": i.to_string()}))
            .await
            .unwrap();
        assert_eq!(out, format!("fx: {i}"));
    }
    assert_eq!(
        lines(&spawns).len(),
        1,
        "discovery and calls share one process"
    );

    let err = federation
        .call(&general(), "fx__crash", json!({}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("Invocation of 'crash' on server 'fx' failed: "),
        "{err}"
    );
    let last = store.appended().last().unwrap().1.clone();
    assert_eq!(last.payload["success"], json!(false));
    assert_eq!(last.payload["error_message"], json!(err));

    let out = federation
        .call(&general(), "fx__echo", json!({"text": "again"}))
        .await
        .unwrap();
    assert_eq!(out, "fx: again");
    assert_eq!(lines(&spawns).len(), 2, "exactly one restart");
    let status = federation.status();
    assert_eq!(status.servers[0].restarts, 1);
    assert_eq!(status.servers[0].state, ConnectionState::Connected);
    federation.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_died_between_calls_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let spawns = dir.path().join("spawns");
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &["--spawn-log", path_arg(&spawns)], &["echo", "die_soon"]),
    ]}))
    .await;
    let out = federation
        .call(&general(), "fx__die_soon", json!({}))
        .await
        .unwrap();
    assert_eq!(out, "bye");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = federation
        .call(&general(), "fx__echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(out, "fx: after");
    assert_eq!(lines(&spawns).len(), 2);
    assert_eq!(federation.status().servers[0].restarts, 1);
    federation.shutdown().await;
}

#[tokio::test]
async fn a_failed_restart_errors_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started-once");
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &["--fail-if-exists", path_arg(&marker)], &["echo", "crash"]),
    ]}))
    .await;
    federation
        .call(&general(), "fx__crash", json!({}))
        .await
        .unwrap_err();
    let err = federation
        .call(&general(), "fx__echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("Invocation of 'echo' on server 'fx' failed: the connection to the server was lost and could not be restarted: "),
        "{err}"
    );
    let status = federation.status();
    assert_eq!(status.servers[0].state, ConnectionState::Unavailable);
    assert!(status.servers[0].last_error.is_some());
    federation.shutdown().await;
}

#[tokio::test]
async fn a_hanging_call_times_out() {
    let mut server = fixture_server("fx", &[], &["slow", "echo"]);
    server["call_timeout_seconds"] = json!(1);
    let (federation, store) = start(json!({"downstream_servers": [server]})).await;
    let started = Instant::now();
    let err = federation
        .call(&general(), "fx__slow", json!({"seconds": 30}))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert_eq!(
        err,
        "Invocation of 'slow' on server 'fx' failed: no result within 1 s (call_timeout_seconds); the call was cancelled"
    );
    assert_eq!(
        store.appended().last().unwrap().1.payload["success"],
        json!(false)
    );
    // The connection stays usable.
    let out = federation
        .call(&general(), "fx__echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(out, "fx: still here");
    federation.shutdown().await;
}

#[tokio::test]
async fn child_environment_is_minimal() {
    let mut server = fixture_server("fx", &[], &["env"]);
    server["env"] = json!({"FED_CONFIGURED": "yes", "FED_NUMBER": 7});
    let (federation, _) = start(json!({"downstream_servers": [server]})).await;
    let env = |name: &str| {
        let federation = federation.clone();
        let name = name.to_owned();
        async move {
            federation
                .call(&general(), "fx__env", json!({"name": name}))
                .await
                .unwrap()
        }
    };
    assert_eq!(env("FED_CONFIGURED").await, "present:yes");
    assert_eq!(env("FED_NUMBER").await, "present:7");
    if let Ok(path) = std::env::var("PATH") {
        assert_eq!(env("PATH").await, format!("present:{path}"));
    }
    // Variables of this process outside the base set never reach the child. Cargo sets
    // CARGO_MANIFEST_DIR for test runs; ANTHROPIC_API_KEY is checked when present.
    let mut checked = 0;
    for leaked in [
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
        "ANTHROPIC_API_KEY",
        "RUST_LOG",
    ] {
        if std::env::var_os(leaked).is_some() {
            assert_eq!(env(leaked).await, "absent", "{leaked} leaked to the child");
            checked += 1;
        }
    }
    assert!(checked > 0, "no parent-only variable to check");

    let computed = agent_federation::child_environment(
        &[("FED_CONFIGURED".to_owned(), "yes".to_owned())]
            .into_iter()
            .collect(),
    );
    for key in computed.keys() {
        assert!(key == "FED_CONFIGURED" || agent_federation::BASE_ENV_VARS.contains(&key.as_str()));
    }
    federation.shutdown().await;
}

/// Whether `pid` is gone (`kill(pid, 0)` fails with `ESRCH`), or a zombie waiting for its new
/// parent to reap it (Linux `/proc`; a zombie still answers `kill`).
fn is_dead(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    if kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

async fn assert_dead_soon(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "process {pid} left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peak resident memory of this test process, in bytes (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// A downstream server is its own process group and the whole group ends with it: a
/// grandchild it started does not survive shutdown. Its stderr is read in bounded lines: one
/// 64 MiB line does not make the server hold it in memory.
#[tokio::test]
async fn shutdown_kills_the_whole_group_and_stderr_lines_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("grandchild.pid");
    let before = peak_rss();
    let (federation, _) = start(json!({"downstream_servers": [fixture_server(
        "fx",
        &["--grandchild", path_arg(&pids), "--stderr-line", &(64 * 1024 * 1024).to_string()],
        &["echo"],
    )]}))
    .await;
    let out = federation
        .call(&general(), "fx__echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(out, "fx: hi");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 32 * 1024 * 1024, "peak RSS grew by {grown} bytes");
    let grandchild: i32 = lines(&pids)[0].parse().unwrap();
    assert!(
        !is_dead(grandchild),
        "the grandchild should run until shutdown"
    );
    let started = Instant::now();
    federation.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_dead_soon(grandchild).await;
}

/// A server abandoned at the discovery timeout takes its whole group with it.
#[tokio::test]
async fn a_server_abandoned_at_discovery_takes_its_group_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("grandchild.pid");
    let mut hanging = fixture_server(
        "hang",
        &["--grandchild", path_arg(&pids), "--hang"],
        &["echo"],
    );
    hanging["discovery_timeout_seconds"] = json!(1.0);
    let (federation, _) = start(json!({"downstream_servers": [hanging]})).await;
    assert_eq!(
        federation.status().servers[0].state,
        ConnectionState::DiscoveryFailed
    );
    let grandchild: i32 = lines(&pids)[0].parse().unwrap();
    assert_dead_soon(grandchild).await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], &["echo"]),
    ]}))
    .await;
    federation.shutdown().await;
    let err = federation
        .call(&general(), "fx__echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Invocation of 'echo' on server 'fx' failed: federation has been shut down"
    );
    assert_eq!(
        federation.status().servers[0].state,
        ConnectionState::ShutDown
    );
}

#[tokio::test]
async fn works_behind_the_tool_provider_port() {
    let (federation, _) = start(json!({"downstream_servers": [
        fixture_server("fx", &[], &["echo"]),
    ]}))
    .await;
    let provider: Arc<dyn ToolProvider> = Arc::new(federation.clone());
    assert_eq!(provider.visible_tools(Profile::General).len(), 1);
    let out = provider
        .call(&general(), "fx__echo", json!({"text": "port"}))
        .await
        .unwrap();
    assert_eq!(out, "fx: port");
    federation.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP (the fixture hosted in process)
// ---------------------------------------------------------------------------------------------

async fn serve_fixture_over_http(
    token: &'static str,
) -> (String, tokio_util::sync::CancellationToken) {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

    async fn require_bearer(request: Request, next: Next, token: &'static str) -> Response {
        let expected = format!("Bearer {token}");
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return (axum::http::StatusCode::UNAUTHORIZED, "bad token").into_response();
        }
        next.run(request).await
    }

    let cancel = tokio_util::sync::CancellationToken::new();
    let service = StreamableHttpService::new(
        || Ok(fixture::Fixture::new("http".to_owned(), None)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token()),
    );
    let app = axum::Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn(move |req, next| {
            require_bearer(req, next, token)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let shutdown = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    (url, cancel)
}

#[tokio::test]
async fn streamable_http_downstream() {
    let (url, cancel) = serve_fixture_over_http("t0k3n").await;
    let (federation, store) = start(json!({"downstream_servers": [
        {
            "name": "web",
            "transport": "streamable-http",
            "url": url,
            "headers": {"Authorization": "Bearer t0k3n"},
            "allowed_tools": ["echo", "fail", "slow"],
            "profiles_allowed": ["general"],
            "call_timeout_seconds": 1,
        },
        {
            "name": "denied",
            "transport": "streamable-http",
            "url": url,
            "headers": {"Authorization": "Bearer wrong"},
            "allowed_tools": ["echo"],
            "profiles_allowed": ["general"],
            "discovery_timeout_seconds": 5,
        },
    ]}))
    .await;
    assert_eq!(
        federation.visible_tool_names(Profile::General),
        vec!["web__echo", "web__fail", "web__slow"]
    );
    let status = federation.status();
    assert_eq!(status.servers[0].transport, "streamable-http");
    assert_eq!(status.servers[0].state, ConnectionState::Connected);
    assert_eq!(status.servers[1].state, ConnectionState::DiscoveryFailed);

    let out = federation
        .call(&general(), "web__echo", json!({"text": "over http"}))
        .await
        .unwrap();
    assert_eq!(out, "http: over http");
    let err = federation
        .call(&general(), "web__fail", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err, "fixture failure: something broke");
    let started = Instant::now();
    let err = federation
        .call(&general(), "web__slow", json!({"seconds": 20}))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.contains("no result within 1 s"), "{err}");
    assert_eq!(store.appended().len(), 6);
    federation.shutdown().await;
    cancel.cancel();
}

// ---------------------------------------------------------------------------------------------
// A real MCP server: @modelcontextprotocol/server-everything
// ---------------------------------------------------------------------------------------------

/// The command of the reference server from `CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER`: a
/// whitespace-separated command line (what `scripts/install-mcp-peers.sh` prints), a JSON
/// array, or the path of its `dist/index.js`.
fn everything_command() -> Option<(String, Vec<String>)> {
    let raw = std::env::var("CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER").ok()?;
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parts: Vec<String> = if raw.starts_with('[') {
        serde_json::from_str(raw).expect("CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER: bad JSON array")
    } else if raw.ends_with(".js") && PathBuf::from(raw).is_file() {
        vec!["node".into(), raw.into(), "stdio".into()]
    } else {
        raw.split_whitespace().map(str::to_owned).collect()
    };
    let (command, args) = parts.split_first()?;
    Some((command.clone(), args.to_vec()))
}

#[tokio::test]
async fn real_server_everything() {
    let Some((command, args)) = everything_command() else {
        println!(
            "SKIPPED real_server_everything: set CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER \
             (export CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER=\"$(bash scripts/install-mcp-peers.sh)\")"
        );
        return;
    };
    let (federation, store) = start(json!({"downstream_servers": [{
        "name": "everything",
        "command": command,
        "args": args,
        "env": {"FED_MARKER": "configured"},
        "allowed_tools": ["echo", "get-sum"],
        "profiles_allowed": ["general"],
        "discovery_timeout_seconds": 30,
    }]}))
    .await;
    let status = federation.status();
    assert!(status.active, "{status:?}");
    let catalog: Vec<&str> = federation
        .catalog()
        .iter()
        .map(|t| t.normalized_name.as_str())
        .collect();
    assert!(catalog.contains(&"everything__echo"), "{catalog:?}");
    assert!(catalog.contains(&"everything__get-env"), "{catalog:?}");
    assert!(status.discovered >= 5, "{status:?}");
    assert_eq!(
        federation.visible_tool_names(Profile::General),
        vec!["everything__echo", "everything__get-sum"]
            .into_iter()
            .filter(|n| catalog.contains(n))
            .collect::<Vec<_>>()
    );
    // Not allowlisted: never visible, never callable.
    assert!(
        federation
            .visible_tools(Profile::General)
            .iter()
            .all(|t| t.name != "everything__get-env")
    );
    let err = federation
        .call(&general(), "everything__get-env", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Tool 'everything__get-env' is not visible for this session"
    );

    let echo = federation
        .visible_tools(Profile::General)
        .into_iter()
        .find(|t| t.name == "everything__echo")
        .unwrap();
    assert!(!echo.description.is_empty());
    assert_eq!(echo.input_schema["type"], "object");

    let out = federation
        .call(
            &general(),
            "everything__echo",
            json!({"message": "hello federation"}),
        )
        .await
        .unwrap();
    assert_eq!(out, "Echo: hello federation");
    let err = federation
        .call(&general(), "everything__echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Tool 'everything__echo' is missing required arguments: ['message']"
    );
    if catalog.contains(&"everything__get-sum") {
        let out = federation
            .call(&general(), "everything__get-sum", json!({"a": 2, "b": 3}))
            .await
            .unwrap();
        assert!(out.contains('5'), "{out}");
    }
    let events = store.appended();
    assert_eq!(events[0].1.payload["input_keys"], json!(["message"]));
    federation.shutdown().await;

    // The real server's own view of its environment: only the base set and the configured env.
    let (federation, _) = start(json!({"downstream_servers": [{
        "name": "everything",
        "command": command,
        "args": args,
        "env": {"FED_MARKER": "configured"},
        "allowed_tools": ["get-env"],
        "profiles_allowed": ["general"],
        "discovery_timeout_seconds": 30,
    }]}))
    .await;
    let out = federation
        .call(&general(), "everything__get-env", json!({}))
        .await
        .unwrap();
    let env: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    if let Some(env) = env.as_object() {
        assert_eq!(env.get("FED_MARKER"), Some(&json!("configured")), "{out}");
        assert!(!env.contains_key("CARGO_MANIFEST_DIR"), "{out}");
        assert!(!env.contains_key("ANTHROPIC_API_KEY"), "{out}");
    } else {
        assert!(
            out.contains("FED_MARKER") && !out.contains("CARGO_MANIFEST_DIR"),
            "{out}"
        );
    }
    federation.shutdown().await;
}
