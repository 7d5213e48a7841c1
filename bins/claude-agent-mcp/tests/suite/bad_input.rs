//! Bad input: schema violations, handler-layer validation, oversized input and invalid bytes.

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

#[tokio::test]
async fn schema_violations_are_rejected_before_the_handler() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let cases = [
        ("agent_run_task", json!({}), "'task' is a required property"),
        (
            "agent_run_task",
            json!({"task": "x", "system_profile": "bogus"}),
            "'bogus' is not one of ['general', 'verification']",
        ),
        (
            "agent_run_task",
            json!({"task": "x", "max_turns": 0}),
            "0 is less than the minimum of 1",
        ),
        (
            "agent_run_task",
            json!({"task": "x", "max_turns": 101}),
            "101 is greater than the maximum of 100",
        ),
        (
            "agent_run_task",
            json!({"task": "x", "max_turns": "5"}),
            "'5' is not of type 'integer'",
        ),
        (
            "agent_continue_session",
            json!({"session_id": "sess_x"}),
            "'message' is a required property",
        ),
        (
            "agent_get_session",
            json!({}),
            "'session_id' is a required property",
        ),
        (
            "agent_list_sessions",
            json!({"limit": 9999}),
            "9999 is greater than the maximum of 200",
        ),
        (
            "agent_list_sessions",
            json!({"status": "gone"}),
            "'gone' is not one of ['created', 'running', 'completed', 'failed', 'interrupted', 'cancelled']",
        ),
        (
            "agent_cancel_session",
            json!({}),
            "'session_id' is a required property",
        ),
        (
            "agent_verify_task",
            json!({}),
            "'task' is a required property",
        ),
        (
            "agent_verify_task",
            json!({"task": "x", "system_profile": "general"}),
            "'general' is not one of ['verification']",
        ),
    ];
    for (tool, args, message) in cases {
        let result = server.call_raw(tool, args.clone()).await;
        assert_eq!(result.is_error, Some(true), "{tool} {args}");
        assert_eq!(
            only_text(&result),
            format!("Input validation error: {message}"),
            "{tool} {args}"
        );
    }
    assert_eq!(env.session_count().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn handler_layer_validation_envelopes() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": ""})).await;
    let msg = v["summary"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("Invalid agent_run_task request: "), "{msg}");
    assert_eq!(
        v,
        json!({"ok": false, "session_id": "", "status": "failed", "workflow": "run_task", "profile": "general",
               "summary": msg, "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "validation_error", "message": msg}]})
    );
    let v = server.call("agent_verify_task", json!({"task": ""})).await;
    assert_eq!(v["profile"], json!("verification"));
    assert_eq!(v["workflow"], json!("verify_task"));
    assert_eq!(
        v["result"],
        json!({"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": []})
    );
    assert_eq!(v["errors"][0]["code"], json!("validation_error"));
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": "sess_abc", "message": ""}),
        )
        .await;
    assert_eq!(
        (v["session_id"].clone(), v["workflow"].clone()),
        (json!("sess_abc"), json!("continue_session"))
    );
    let v = server
        .call("agent_get_session", json!({"session_id": ""}))
        .await;
    assert_eq!(v["error"]["code"], json!("validation_error"));
    assert_eq!(env.session_count().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_task_is_refused_without_a_session() {
    let env = TestEnv::new().await;
    env.reply_text("never").await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "x".repeat(1024 * 1024)}))
        .await;
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["errors"][0]["code"], json!("validation_error"));
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("more than the limit")
    );
    assert_eq!(env.session_count().await, 0);
    assert!(env.requests().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_json_rpc_bytes_on_stdio_do_not_kill_the_server() {
    let env = TestEnv::new().await;
    let (mut child, mut stdin, stdout) = env.spawn_stdio();
    let mut lines = BufReader::new(stdout).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.contains("\"id\":1"));
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    stdin
        .write_all(b"this is not json\n\xff\xfe\n{\"jsonrpc\":\"2.0\",\"id\":\n")
        .await
        .unwrap();
    // JSON that is no valid message: answered with Invalid request when it has an id, ignored
    // when it is a notification.
    stdin
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":9}\n[1,2]\n{\"jsonrpc\":\"1.0\",\"method\":\"x/y\"}\n",
        )
        .await
        .unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
        .await
        .unwrap();
    // Every line on stdout is JSON-RPC: each garbage line is answered with a parse error, and
    // the server still answers the ping.
    let mut answered = false;
    let mut parse_errors = 0;
    let mut invalid = 0;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await
    {
        let v: serde_json::Value =
            serde_json::from_str(&line).expect("stdout carries only JSON-RPC");
        assert_eq!(v["jsonrpc"], json!("2.0"));
        if v["error"]["code"] == json!(-32700) {
            assert_eq!(v["id"], json!(null));
            parse_errors += 1;
        }
        if v["error"]["code"] == json!(-32600) {
            assert_eq!(
                v,
                json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}})
            );
            invalid += 1;
        }
        if v["id"] == json!(2) {
            answered = true;
            break;
        }
    }
    assert!(answered, "ping after garbage is answered");
    assert_eq!(parse_errors, 3, "one parse error per line that is not JSON");
    assert_eq!(
        invalid, 2,
        "one Invalid request per message with an id or no method"
    );
    drop(stdin);
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
}
