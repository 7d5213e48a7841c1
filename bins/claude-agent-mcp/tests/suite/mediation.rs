//! Runtime-mediated execution over MCP (`docs/reference/mediation.md#1-scope` to
//! `docs/reference/mediation.md#9-events`): the claude_code backend (fake
//! CLI) writes request blocks, the runtime validates them and runs approved ones through the
//! federated fixture server.

use serde_json::json;

use super::claude_code::Cli;
use super::federation::fixture_server;
use crate::support::*;

const BLOCK: &str = r#"Let me look that up.
<mediated_action_request>
{"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read","target_tool":"fx__echo","arguments":{"text":"via mediation"},"justification":"need it"}
</mediated_action_request>"#;

/// The claude_code backend (fake CLI, text mode) answering [`BLOCK`], execution mediation
/// `enabled`, mediated results carried into continuations, and with `federated` the fixture
/// server as `fx` (`echo` and `fail` allowlisted for the general profile).
pub(super) async fn mediated(enabled: bool, federated: bool) -> Cli {
    let mut cli = Cli::new("text").await;
    if federated {
        let config = json!({"downstream_servers": [{
            "name": "fx", "command": path_str(&fixture_server()), "args": ["--label", "fx"],
            "allowed_tools": ["echo", "fail"], "profiles_allowed": ["general"]
        }]});
        let path = cli.env.cwd().join("federation.json");
        std::fs::write(&path, config.to_string()).unwrap();
        cli.env.set("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "true");
        cli.env
            .set("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", &path_str(&path));
    }
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENABLE_EXECUTION_MEDIATION",
        if enabled { "true" } else { "false" },
    );
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION",
        "true",
    );
    cli.script("stdout", BLOCK);
    cli
}

fn mediation_events(events: &[(String, i64, serde_json::Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.0.starts_with("mediated_"))
        .map(|e| e.0.clone())
        .collect()
}

#[tokio::test]
async fn an_approved_action_runs_through_federation_and_reaches_the_next_prompt() {
    let cli = mediated(true, true).await;
    let server = cli.env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "look it up"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["result"]["output_text"],
        json!(BLOCK),
        "the raw blocks stay in the output"
    );
    assert_eq!(
        v["warnings"],
        json!([
            "Backend 'claude_code' does not support downstream federation tools. Visible tools will not be forwarded. Switch to the 'api' backend to use federation tools.",
            "claude_code backend: stop_reason precision is limited — the Claude Code CLI does not report semantic stop reasons."
        ]),
        "routing warning, backend warnings, no mediation warning for an approved action"
    );
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let events = cli.env.events(&sid).await;
    assert_eq!(
        mediation_events(&events),
        [
            "mediated_action_requested",
            "mediated_action_approved",
            "mediated_action_completed"
        ]
    );
    let completed = events
        .iter()
        .find(|e| e.0 == "mediated_action_completed")
        .unwrap();
    assert_eq!(completed.2["status"], json!("completed"));
    assert!(
        completed.2["result_summary"]
            .as_str()
            .unwrap()
            .contains("fx: via mediation"),
        "{completed:?}"
    );
    assert!(events.iter().any(|e| e.0 == "downstream_tool_invocation"));
    // The first prompt taught the model the protocol.
    assert!(
        cli.argv(1)
            .pop()
            .unwrap()
            .contains("mediated_action_request")
    );
    // The next continuation carries the result.
    cli.script("stdout", "thanks");
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "and?"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true));
    let prompt = cli.argv(2).pop().unwrap();
    assert!(prompt.contains("[Mediated Execution Context]"), "{prompt}");
    assert!(prompt.contains("- Tool fx__echo: "), "{prompt}");
    assert!(prompt.contains("runtime-mediated"), "{prompt}");
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_mediation_rejects_and_audits() {
    let cli = mediated(false, true).await;
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(
        v["warnings"][2],
        json!(
            "Mediated action 'req_001' for tool 'fx__echo' rejected — execution mediation is disabled in config (policy: rejected:mediation_disabled)"
        )
    );
    let sid = v["session_id"].as_str().unwrap();
    assert_eq!(
        mediation_events(&cli.env.events(sid).await),
        ["mediated_action_requested", "mediated_action_rejected"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn enabled_without_federation_is_federation_inactive() {
    let cli = mediated(true, false).await;
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let warning = v["warnings"][1].as_str().unwrap();
    assert!(
        warning.ends_with("(policy: rejected:federation_inactive)"),
        "{warning}"
    );
    // Verification never mediates.
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    let sid = v["session_id"].as_str().unwrap();
    assert!(mediation_events(&cli.env.events(sid).await).is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn the_api_backend_never_mediates() {
    let env = TestEnv::new().await;
    env.reply_text(BLOCK).await;
    let mut env = env;
    env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENABLE_EXECUTION_MEDIATION",
        "true",
    );
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["warnings"], json!([]));
    let sid = v["session_id"].as_str().unwrap();
    assert!(mediation_events(&env.events(sid).await).is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn limits_and_deny_lists_reject_over_mcp() {
    let mut cli = mediated(true, true).await;
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_SESSION_MEDIATED_APPROVALS",
        "2",
    );
    let two = BLOCK.to_owned() + &BLOCK.replace("req_001", "req_002");
    cli.script("stdout", &two);
    let server = cli.env.start().await;
    // Per-turn limit 1: the second request of the turn is rejected.
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let warning = v["warnings"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        warning.starts_with("Mediated action 'req_002' for tool 'fx__echo' rejected"),
        "{warning}"
    );
    assert!(
        warning.ends_with("(policy: rejected:per_turn_action_limit_exceeded)"),
        "{warning}"
    );
    // A second turn: one more approval reaches the session limit of 2, the next is rejected.
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "again"}),
        )
        .await;
    let warning = c["warnings"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        warning.ends_with("(policy: rejected:per_turn_action_limit_exceeded)"),
        "{warning}"
    );
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "more"}),
        )
        .await;
    let rejected: Vec<&str> = c["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.starts_with("Mediated action"))
        .collect();
    assert!(
        rejected[0].ends_with("(policy: rejected:session_approval_limit_exceeded)"),
        "{rejected:?}"
    );
    server.shutdown().await;

    // A denied tool is rejected even when allowlisted.
    let mut cli = mediated(true, true).await;
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_ALLOWED_MEDIATED_TOOLS",
        "fx__echo",
    );
    cli.env.set(
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_DENIED_MEDIATED_TOOLS",
        "fx__echo",
    );
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let warning = v["warnings"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        warning.ends_with("(policy: rejected:tool_not_allowed)"),
        "{warning}"
    );
    server.shutdown().await;
}

/// A two-step workflow with a step limit of 1, over MCP: every step rejected
/// (`docs/reference/mediation.md#4-validation-gates`).
#[tokio::test]
async fn a_workflow_over_its_step_limit_is_rejected_step_by_step() {
    let cli = mediated(true, true).await;
    let step = |i: usize| json!({"step_index": i, "action_type": "read", "target_tool": "fx__echo", "arguments": {"text": "s"}, "justification": "j"});
    let block = format!(
        "<mediated_workflow_request>\n{}\n</mediated_workflow_request>",
        json!({"mediation_version": "v0.9.0", "workflow_id": "wf_001", "justification": "why", "steps": [step(0), step(1)]})
    );
    cli.script("stdout", &block);
    let server = cli.env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let rejected: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.starts_with("Mediated action"))
        .collect();
    assert_eq!(rejected.len(), 2, "{v}");
    assert!(
        rejected[0].starts_with("Mediated action 'wf_step_0' for tool 'fx__echo' rejected"),
        "{rejected:?}"
    );
    assert!(
        rejected[1].starts_with("Mediated action 'wf_step_1' for tool 'fx__echo' rejected"),
        "{rejected:?}"
    );
    let sid = v["session_id"].as_str().unwrap();
    let events = cli.env.events(sid).await;
    let step_rejections: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.0 == "mediated_workflow_step_rejected")
        .map(|e| &e.2)
        .collect();
    assert_eq!(step_rejections.len(), 2);
    assert!(
        step_rejections
            .iter()
            .all(|p| p["rejection_reason"] == json!("workflow_step_limit_exceeded"))
    );
    let completed = events
        .iter()
        .find(|e| e.0 == "mediated_workflow_completed")
        .unwrap();
    assert_eq!(completed.2["rejected_steps"], json!(2));
    server.shutdown().await;
}
