//! Federation through the real server (`docs/reference/federation.md#1-enablement` to
//! `docs/reference/federation.md#7-status`): the workspace's fixture MCP
//! server as a downstream, reached over stdio by the rmcp client of agent-federation.

use std::path::PathBuf;

use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

use crate::support::*;

/// The fixture server binary of agent-federation, built on demand when this package's tests
/// run alone (`cargo test --workspace` builds it anyway).
pub(super) fn fixture_server() -> PathBuf {
    let target = PathBuf::from(BIN)
        .parent()
        .expect("target dir")
        .to_path_buf();
    let path = target.join("fixture-mcp-server");
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

fn tool_use(id: &str, name: &str, input: Value) -> Value {
    json!({
        "content": [{"type": "tool_use", "id": id, "name": name, "input": input}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1}
    })
}

pub(super) async fn federated_env() -> TestEnv {
    let mut env = TestEnv::new().await;
    let config = json!({"downstream_servers": [
        {
            "name": "fx",
            "command": path_str(&fixture_server()),
            "args": ["--label", "fx"],
            "allowed_tools": ["echo", "add", "fail"],
            "profiles_allowed": ["general"]
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
    env
}

#[tokio::test]
async fn allowlisted_downstream_tools_run_in_the_tool_loop() {
    let env = federated_env().await;
    env.reply_tool_use_then(
        tool_use("toolu_a", "fx__echo", json!({"text": "hi"})),
        "downstream said hi",
    )
    .await;
    let server = env.start().await;
    let status = server.call("agent_get_runtime_status", json!({})).await;
    assert_eq!(
        (
            status["federation_enabled"].clone(),
            status["federation_active"].clone()
        ),
        (json!(true), json!(true))
    );
    let v = server
        .call("agent_run_task", json!({"task": "say hi downstream"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let requests = env.requests().await;
    let names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["fx__echo", "fx__add", "fx__fail"],
        "only allowlisted tools, as <server>__<tool>"
    );
    assert_eq!(
        requests[1]["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_a", "content": "fx: hi"})
    );
    let sid = v["session_id"].as_str().unwrap();
    let events = env.events(sid).await;
    let find = |t: &str| {
        events
            .iter()
            .find(|e| e.0 == t)
            .cloned()
            .unwrap_or_else(|| panic!("{t} in {events:?}"))
    };
    assert_eq!(
        find("downstream_tool_catalog_resolved"),
        (
            "downstream_tool_catalog_resolved".into(),
            0,
            json!({"visible_tools": ["fx__echo", "fx__add", "fx__fail"]})
        )
    );
    assert_eq!(
        find("downstream_tool_invocation").2,
        json!({"normalized_name": "fx__echo", "server": "fx", "downstream_name": "echo", "input_keys": ["text"]})
    );
    assert_eq!(
        find("downstream_tool_result").2,
        json!({"normalized_name": "fx__echo", "success": true, "error_message": null})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn missing_arguments_and_downstream_errors_reach_the_model_as_errors() {
    let env = federated_env().await;
    Mock::given(method("POST"))
        .and(body_string_contains("tool_result"))
        .respond_with(ResponseTemplate::new(200).set_body_json(text_reply("noted")))
        .mount(&env.api)
        .await;
    let both = json!({
        "content": [
            {"type": "tool_use", "id": "t1", "name": "fx__add", "input": {"a": 1}},
            {"type": "tool_use", "id": "t2", "name": "fx__fail", "input": {}},
            {"type": "tool_use", "id": "t3", "name": "fx__secret", "input": {}}
        ],
        "stop_reason": "tool_use"
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(both))
        .mount(&env.api)
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true), "the run still completes");
    let results = &env.requests().await[1]["messages"][2]["content"];
    assert_eq!(
        results[0]["content"],
        json!("Error: Tool 'fx__add' is missing required arguments: ['b']")
    );
    assert_eq!(results[0]["is_error"], json!(true));
    assert!(
        results[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("Error: "),
        "{results}"
    );
    assert!(
        results[1]["content"]
            .as_str()
            .unwrap()
            .contains("fixture failure"),
        "{results}"
    );
    assert!(
        results[2]["content"]
            .as_str()
            .unwrap()
            .starts_with("Error: "),
        "an invisible tool: {results}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn profiles_not_allowed_see_nothing() {
    let env = federated_env().await;
    env.reply_text("plain").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "system_profile": "verification"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert!(
        env.requests().await[0].get("tools").is_none(),
        "no federated tool for verification"
    );
    let sid = v["session_id"].as_str().unwrap();
    assert!(
        !env.event_types(sid)
            .await
            .iter()
            .any(|t| t == "downstream_tool_catalog_resolved")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_broken_config_disables_federation_without_aborting() {
    let mut env = TestEnv::new().await;
    let path = env.cwd().join("federation.json");
    std::fs::write(&path, "{not json").unwrap();
    env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    env.set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    let server = env.start().await;
    let status = server.call("agent_get_runtime_status", json!({})).await;
    assert_eq!(
        (
            status["federation_enabled"].clone(),
            status["federation_active"].clone()
        ),
        (json!(true), json!(false))
    );
    assert!(
        env.stderr_log().contains("Federation config error"),
        "{}",
        env.stderr_log()
    );
    server.shutdown().await;
}

/// The Messages API tool-use loop through the server into a real MCP server over stdio (the
/// reference server installed by `scripts/install-mcp-peers.sh`).
#[tokio::test]
async fn the_tool_loop_reaches_the_reference_mcp_server() {
    let Some(agent_testkit::peers::PeerCommand {
        program: command,
        args,
    }) = agent_testkit::peers::everything_server()
    else {
        return;
    };
    let mut env = TestEnv::new().await;
    let config = json!({"downstream_servers": [{
        "name": "everything", "command": command, "args": args, "discovery_timeout_seconds": 30,
        "allowed_tools": ["echo"], "profiles_allowed": ["general"]
    }]});
    let path = env.cwd().join("federation.json");
    std::fs::write(&path, config.to_string()).unwrap();
    env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
    env.set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    env.reply_tool_use_then(
        tool_use(
            "toolu_e",
            "everything__echo",
            json!({"message": "through the loop"}),
        ),
        "echoed",
    )
    .await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "echo it"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let requests = env.requests().await;
    let names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["everything__echo"],
        "only the allowlisted tool of the real server"
    );
    assert_eq!(
        requests[1]["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_e", "content": "Echo: through the loop"})
    );
    server.shutdown().await;
}
