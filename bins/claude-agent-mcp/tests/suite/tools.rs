//! The tool-use loop end to end: built-in workspace tools through the real binary.

use serde_json::{Value, json};

use crate::support::*;

pub(super) fn tool_use(id: &str, name: &str, input: Value) -> Value {
    json!({
        "id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": id, "name": name, "input": input}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 3}
    })
}

#[tokio::test]
async fn summarize_the_files_reads_them_through_the_tool_loop() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    std::fs::write(env.cwd().join("notes.txt"), "the secret word is pineapple").unwrap();
    // Second turn (the request carries the tool result): the final answer.
    env.reply_tool_use_then(
        tool_use("toolu_1", "read_file", json!({"path": "notes.txt"})),
        "notes.txt says the word is pineapple",
    )
    .await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Summarize the files in this directory"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["result"]["output_text"],
        json!("notes.txt says the word is pineapple")
    );
    assert_eq!(
        v["result"]["usage"],
        json!({"input_tokens": 16, "output_tokens": 10, "total_cost_usd": 0.000198})
    );
    let requests = env.requests().await;
    assert_eq!(requests.len(), 2);
    let names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "read_file",
            "list_directory",
            "glob",
            "grep",
            "write_file",
            "edit_file"
        ]
    );
    let result = &requests[1]["messages"][2]["content"][0];
    assert_eq!(result["type"], json!("tool_result"));
    assert_eq!(result["tool_use_id"], json!("toolu_1"));
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("the secret word is pineapple"),
        "{result}"
    );
    let sid = v["session_id"].as_str().unwrap();
    let events = env.events(sid).await;
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "user_input",
            "system_prompt_resolved",
            "policy_decision",
            "provider_request_start",
            "workspace_tool_invocation",
            "workspace_tool_result",
            "provider_transcript",
            "provider_response_summary"
        ]
    );
    assert_eq!(
        events[4].2,
        json!({"tool": "read_file", "input_keys": ["path"]})
    );
    assert_eq!(events[6].1, 2, "two model turns");
    server.shutdown().await;
}

#[tokio::test]
async fn escaping_the_sandbox_is_an_error_the_model_sees() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    env.reply_tool_use_then(
        tool_use("toolu_9", "read_file", json!({"path": "../../etc/passwd"})),
        "could not read it",
    )
    .await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "read it", "system_profile": "verification"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    let requests = env.requests().await;
    let names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["read_file", "list_directory", "glob", "grep"],
        "read-only profile: no writing tools"
    );
    let result = &requests[1]["messages"][2]["content"][0];
    assert_eq!(result["is_error"], json!(true));
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .starts_with("Error: Access denied"),
        "{result}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn allow_tools_false_withholds_the_tools() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    env.reply_text("plain").await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "t", "allow_tools": false}))
        .await;
    assert_eq!(v["ok"], json!(true));
    assert!(env.requests().await[0].get("tools").is_none());
    server.shutdown().await;
}

/// Prompt caching across a session (issue 16 item 4): every request of a run's tool loop and of
/// its continuations carries the same tool list and system prompt, byte for byte, so the
/// cached prefix (tools, then system) is read back rather than written again; the system
/// prompt and the last message are the breakpoints.
#[tokio::test]
async fn the_cached_prefix_is_byte_identical_across_turns_and_continuations() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    std::fs::write(env.cwd().join("notes.txt"), "the word is pineapple").unwrap();
    env.reply_tool_use_then(
        tool_use("toolu_1", "read_file", json!({"path": "notes.txt"})),
        "pineapple",
    )
    .await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "What is the word?"}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let id = v["session_id"].as_str().unwrap().to_owned();
    for message in ["And again?", "Once more?"] {
        let next = server
            .call(
                "agent_continue_session",
                json!({"session_id": id, "message": message}),
            )
            .await;
        assert_eq!(next["ok"], json!(true), "{next}");
    }
    let raw: Vec<String> = env
        .api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    assert!(
        raw.len() >= 4,
        "a tool loop and two continuations: {}",
        raw.len()
    );
    // The bytes of `tools` (the first part of the cache order) and of `system`.
    let part = |body: &str, key: &str| -> String {
        let value: Value = serde_json::from_str(body).unwrap();
        serde_json::to_string(&value[key]).unwrap()
    };
    let tools = part(&raw[0], "tools");
    let system = part(&raw[0], "system");
    assert!(tools.contains("read_file"), "{tools}");
    assert!(
        system.contains("\"cache_control\":{\"type\":\"ephemeral\"}"),
        "{system}"
    );
    for (i, body) in raw.iter().enumerate() {
        assert_eq!(
            part(body, "tools"),
            tools,
            "request {i}: the tool list changed"
        );
        assert_eq!(
            part(body, "system"),
            system,
            "request {i}: the system prompt changed"
        );
        // The exact bytes sent, too: the tools text appears verbatim in every body.
        assert!(
            body.contains(&tools),
            "request {i} does not carry the same tool bytes"
        );
        // One breakpoint on the system prompt, one on the last message's last block.
        let value: Value = serde_json::from_str(body).unwrap();
        let last = value["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            last["cache_control"],
            json!({"type": "ephemeral"}),
            "request {i}"
        );
        assert_eq!(
            body.matches("cache_control").count(),
            2,
            "request {i}: {body}"
        );
    }
    // The continuation replays the run's tool loop as it was sent and received: its messages
    // start with the messages of the run's last request (the cached conversation), then the
    // answer and the new message.
    let bodies = env.requests().await;
    let run_last = bodies[1]["messages"].as_array().unwrap().clone();
    assert_eq!(
        run_last.len(),
        3,
        "task, tool call, tool result: {run_last:?}"
    );
    let next = bodies[2]["messages"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{next:?}");
    assert_eq!(next[..3], run_last[..], "the replayed prefix");
    assert_eq!(next[1]["content"][1]["type"], json!("tool_use"));
    assert_eq!(next[2]["content"][0]["type"], json!("tool_result"));
    assert_eq!(next[3]["role"], json!("assistant"));
    assert_eq!(next[3]["content"][0]["text"], json!("pineapple"));
    assert_eq!(next[4]["content"], json!("And again?"));
    // The transcript is in the session's log.
    assert!(
        env.event_types(&id)
            .await
            .contains(&"provider_transcript".to_owned())
    );
    server.shutdown().await;
}
