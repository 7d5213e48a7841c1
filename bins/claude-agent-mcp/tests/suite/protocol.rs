//! Protocol and tool surface (`docs/reference/tools.md#1-server-identity-and-capabilities` to
//! `docs/reference/tools.md#3-validation-layers`, `docs/reference/envelope.md#1-tool-results`).

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn initialize_reports_name_version_and_tools_capability() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let info = server.client.peer_info().expect("server info");
    let implementation = info.server_info.clone().expect("serverInfo");
    assert_eq!(implementation.name, "claude-agent-mcp");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    assert!(info.capabilities.tools.is_some());
    assert!(
        info.capabilities.resources.is_some(),
        "sessions and artifacts are resources"
    );
    assert!(
        info.capabilities.prompts.is_some() && info.capabilities.completions.is_some(),
        "prompts and session-id completion (docs/reference/prompts.md)"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tools_list_has_the_nine_tools_in_order_with_annotations_and_output_schemas() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let tools = server.client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "agent_run_task",
            "agent_continue_session",
            "agent_get_session",
            "agent_list_sessions",
            "agent_verify_task",
            "agent_get_runtime_status",
            "agent_cancel_session",
            "agent_wait_session",
            "agent_fork_session"
        ]
    );
    for tool in &tools {
        assert!(tool.title.is_some(), "{} has a title", tool.name);
        let out = tool.output_schema.as_ref().expect("outputSchema");
        assert_eq!(out.get("type"), Some(&json!("object")));
        let ann = serde_json::to_value(tool.annotations.as_ref().expect("annotations")).unwrap();
        let expected = match tool.name.as_ref() {
            "agent_get_session" => json!({"title": "Get an agent session", "readOnlyHint": true}),
            "agent_list_sessions" => json!({"title": "List agent sessions", "readOnlyHint": true}),
            "agent_cancel_session" => json!({
                "title": "Cancel a running session", "readOnlyHint": false, "destructiveHint": true,
                "idempotentHint": false, "openWorldHint": false
            }),
            "agent_get_runtime_status" => {
                json!({"title": "Get runtime status", "readOnlyHint": true})
            }
            "agent_wait_session" => {
                json!({"title": "Wait for a session's result", "readOnlyHint": true})
            }
            "agent_run_task" => {
                json!({"title": "Run an agent task", "readOnlyHint": false, "openWorldHint": true})
            }
            "agent_continue_session" => {
                json!({"title": "Continue an agent session", "readOnlyHint": false, "openWorldHint": true})
            }
            "agent_fork_session" => {
                json!({"title": "Fork a session", "readOnlyHint": false, "openWorldHint": true})
            }
            _ => {
                json!({"title": "Verify a task against evidence", "readOnlyHint": false, "destructiveHint": false, "openWorldHint": true})
            }
        };
        assert_eq!(ann, expected, "{}", tool.name);
    }
    server.shutdown().await;
}

/// Removes free-text `description` keys so the contractual part can be compared.
fn strip_descriptions(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "description")
                .map(|(k, v)| (k.clone(), strip_descriptions(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn input_schemas_match_the_contract_exactly() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let tools = server.client.list_all_tools().await.expect("tools/list");
    let schema = |name: &str| {
        let tool = tools.iter().find(|t| t.name == name).expect("tool");
        strip_descriptions(&Value::Object((*tool.input_schema).clone()))
    };
    // Property order is part of the contract: compare the serialized text too.
    let run = schema("agent_run_task");
    assert_eq!(
        serde_json::to_string(&run).unwrap(),
        r#"{"type":"object","properties":{"task":{"type":"string"},"system_profile":{"type":"string","enum":["general","verification"],"default":"general"},"working_directory":{"type":"string"},"attachments":{"type":"array","items":{"type":"string"}},"max_turns":{"type":"integer","default":10,"minimum":1,"maximum":100},"allow_tools":{"type":"boolean","default":true},"output_schema":{"type":"object"},"wait_seconds":{"type":"number","minimum":0,"maximum":3600},"max_budget_usd":{"type":"number","exclusiveMinimum":0,"maximum":1000000.0},"max_total_tokens":{"type":"integer","minimum":1,"maximum":1000000000000},"model":{"type":"string","minLength":1,"maxLength":128},"effort":{"type":"string","enum":["low","medium","high","xhigh","max"]}},"required":["task"]}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_continue_session")).unwrap(),
        r#"{"type":"object","properties":{"session_id":{"type":"string"},"message":{"type":"string"},"max_turns":{"type":"integer","default":10,"minimum":1,"maximum":100},"output_schema":{"type":"object"},"wait_seconds":{"type":"number","minimum":0,"maximum":3600},"max_budget_usd":{"type":"number","exclusiveMinimum":0,"maximum":1000000.0},"max_total_tokens":{"type":"integer","minimum":1,"maximum":1000000000000},"model":{"type":"string","minLength":1,"maxLength":128},"effort":{"type":"string","enum":["low","medium","high","xhigh","max"]}},"required":["session_id","message"]}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_get_session")).unwrap(),
        r#"{"type":"object","properties":{"session_id":{"type":"string"}},"required":["session_id"]}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_list_sessions")).unwrap(),
        r#"{"type":"object","properties":{"limit":{"type":"integer","default":20,"minimum":1,"maximum":200},"status":{"type":"string","enum":["created","running","completed","failed","interrupted","cancelled"]}}}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_verify_task")).unwrap(),
        r#"{"type":"object","properties":{"task":{"type":"string"},"scope":{"type":"string"},"evidence_paths":{"type":"array","items":{"type":"string"}},"fail_closed":{"type":"boolean","default":true},"system_profile":{"type":"string","enum":["verification"],"default":"verification"},"wait_seconds":{"type":"number","minimum":0,"maximum":3600},"max_budget_usd":{"type":"number","exclusiveMinimum":0,"maximum":1000000.0},"max_total_tokens":{"type":"integer","minimum":1,"maximum":1000000000000},"model":{"type":"string","minLength":1,"maxLength":128},"effort":{"type":"string","enum":["low","medium","high","xhigh","max"]}},"required":["task"]}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_get_runtime_status")).unwrap(),
        r#"{"type":"object","properties":{}}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_wait_session")).unwrap(),
        r#"{"type":"object","properties":{"session_id":{"type":"string"},"timeout_seconds":{"type":"number","default":30,"minimum":0,"maximum":3600}},"required":["session_id"]}"#
    );
    assert_eq!(
        serde_json::to_string(&schema("agent_fork_session")).unwrap(),
        r#"{"type":"object","properties":{"session_id":{"type":"string"},"at_turn":{"type":"integer","minimum":1},"message":{"type":"string"},"max_turns":{"type":"integer","default":10,"minimum":1,"maximum":100},"output_schema":{"type":"object"},"wait_seconds":{"type":"number","minimum":0,"maximum":3600},"max_budget_usd":{"type":"number","exclusiveMinimum":0,"maximum":1000000.0},"max_total_tokens":{"type":"integer","minimum":1,"maximum":1000000000000},"model":{"type":"string","minLength":1,"maxLength":128},"effort":{"type":"string","enum":["low","medium","high","xhigh","max"]}},"required":["session_id"]}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn published_schemas_match_the_committed_snapshots() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let tools = server.client.list_all_tools().await.expect("tools/list");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
    for tool in &tools {
        for (kind, schema) in [
            ("input", Some(&tool.input_schema)),
            ("output", tool.output_schema.as_ref()),
        ] {
            let file = dir.join(format!("{}.{kind}.json", tool.name));
            let committed: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| {
                    panic!("{} missing ({e}): run `cargo xtask schema`", file.display())
                }))
                .expect("snapshot JSON");
            let live = Value::Object((**schema.expect("schema")).clone());
            assert_eq!(
                live,
                committed,
                "{} drifted: run `cargo xtask schema`",
                file.display()
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_tool_is_not_admitted() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let v = server.call("no_such_tool", json!({})).await;
    assert_eq!(
        v,
        json!({"error": {
            "code": "tool_not_admitted",
            "message": "Tool 'no_such_tool' is not admitted in the current runtime mode. Admitted tools: ['agent_cancel_session', 'agent_continue_session', 'agent_fork_session', 'agent_get_runtime_status', 'agent_get_session', 'agent_list_sessions', 'agent_run_task', 'agent_verify_task', 'agent_wait_session']"
        }})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ping_succeeds() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let ping = rmcp::model::ClientRequest::PingRequest(Default::default());
    server.client.send_request(ping).await.expect("ping");
    server.shutdown().await;
}

#[tokio::test]
async fn runtime_status_reports_the_resolved_configuration() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_OPERATOR_PROFILE", "Continuity_Optimized");
    let server = env.start().await;
    let mut v = server
        .call("agent_get_runtime_status", json!({"ignored": 1}))
        .await;
    let resolved_at = v["resolved_at"].take();
    assert!(resolved_at.as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        v,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "operator_profile_preset": "continuity_optimized",
            "backend": "api",
            "transport": "stdio",
            "model": "claude-sonnet-4-6",
            "federation_enabled": false,
            "federation_active": false,
            "capability_flags": {"limited_tool_forwarding_enabled": false, "execution_mediation_enabled": false, "federation_enabled": false},
            "continuation_settings": {"max_continuation_turns": 10, "max_continuation_warnings": 5, "max_continuation_forwarding_events": 5, "include_verification_context": true, "include_tool_downgrade_context": true},
            "mediation_settings": {"enabled": false, "max_actions_per_turn": 1, "allowed_action_types": [], "include_results_in_continuation": true},
            "workflow_settings": {"max_workflow_steps": 1, "allowed_tools": [], "denied_tools": [], "max_session_approvals": 10, "include_rejected_in_continuation": false, "policy_profile": "conservative"},
            "preserved_limitations": [
                "No native tool_use / tool_result loop in Claude Code backend — mediated execution is runtime-dispatched, not backend-native tool calling",
                "No streaming transport — stdio is the production transport; streamable-http is available but not the default",
                "No cross-backend session migration — sessions are bound to the backend active at creation time",
                "No broad autonomous execution chaining — per-turn and per-session mediation limits are enforced",
                "Mediated execution requires active federation — without federation, mediated action requests are rejected with federation_inactive"
            ],
            "resolved_at": null,
            "mode": "standard",
            "policy_mode": null, "authority_mode": null, "tool_surface_mode": null, "active_profile": null,
            "exposed_tools": null, "allowed_directories": null, "restriction_contract_id": null,
            "restriction_contract_version": null, "fail_closed_enabled": null, "restriction_compliance": null,
            "non_compliance_reasons": null, "server_version": null,
            "session_store": "sqlite"
        })
    );
    assert_eq!(env.session_count().await, 0, "status creates no session");
    server.shutdown().await;
}

/// A stdin line over the 16 MiB limit whose `id` is in its beginning is answered with
/// `Invalid Request` carrying that id (it used to get no answer, leaving the client waiting);
/// one without a readable id is dropped; the server goes on serving.
#[tokio::test]
async fn an_over_long_stdio_line_is_answered_when_its_id_can_be_read() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    const LIMIT: usize = 16 * 1024 * 1024;
    let env = TestEnv::new().await;
    let (mut child, mut stdin, stdout) = env.spawn_stdio();
    let mut lines = BufReader::new(stdout).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let writer = tokio::spawn(async move {
        stdin
            .write_all(format!("{init}\n").as_bytes())
            .await
            .unwrap();
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await
            .unwrap();
        let filler = "a".repeat(LIMIT);
        // The id first: answered.
        let with_id = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":41,\"method\":\"tools/call\",\"params\":{{\"name\":\"agent_run_task\",\"arguments\":{{\"task\":\"{filler}\"}}}}}}\n"
        );
        stdin.write_all(with_id.as_bytes()).await.unwrap();
        // The id after the payload: nothing to answer with, dropped.
        let id_last = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{{\"name\":\"agent_run_task\",\"arguments\":{{\"task\":\"{filler}\"}}}},\"id\":42}}\n"
        );
        stdin.write_all(id_last.as_bytes()).await.unwrap();
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"after\",\"method\":\"ping\"}\n")
            .await
            .unwrap();
        stdin
    });
    let mut seen = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await
    {
        let v: Value = serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
        let done = v["id"] == json!("after");
        seen.push(v);
        if done {
            break;
        }
    }
    let stdin = writer.await.unwrap();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert_eq!(seen[0]["id"], json!(1));
    assert_eq!(
        seen[1],
        json!({"jsonrpc": "2.0", "id": 41, "error": {"code": -32600,
            "message": format!("Invalid Request: the line is longer than the limit of {LIMIT} bytes")}})
    );
    assert_eq!(
        seen[2],
        json!({"jsonrpc": "2.0", "id": "after", "result": {}})
    );
    drop(stdin);
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
}
