//! agent_run_task on the Messages API backend (`docs/reference/tools.md#4-agent_run_task`,
//! artifacts `docs/reference/sessions.md#10-artifacts`, the backend
//! `docs/reference/backends.md#4-the-api-backend`).

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::ResponseTemplate;

use crate::support::*;

#[tokio::test]
async fn a_run_returns_the_envelope_and_writes_the_session() {
    let env = TestEnv::new().await;
    env.reply_text("Hello from Claude\nsecond line").await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "Say hello", "foo": 1}))
        .await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&sid), "{sid}");
    assert_eq!(
        normalize_envelope(v),
        json!({
            "ok": true, "session_id": "<session>", "status": "completed", "workflow": "run_task",
            "profile": "general", "summary": "Hello from Claude",
            "result": {"output_text": "Hello from Claude\nsecond line", "usage": {"input_tokens": 11, "output_tokens": 7, "total_cost_usd": 0.000138}},
            "artifacts": [], "warnings": [], "errors": []
        })
    );
    let cwd = path_str(&env.cwd());
    let mut got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    for key in ["created_at", "updated_at", "last_activity_at"] {
        let ts = got[key].take();
        let ts = ts.as_str().unwrap();
        assert!(
            ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "{key}={ts}"
        );
    }
    assert_eq!(
        got,
        json!({
            "session_id": sid, "workflow": "run_task", "profile": "general", "status": "completed",
            "created_at": null, "updated_at": null, "last_activity_at": null,
            "summary_latest": "Hello from Claude", "artifact_count": 0, "turn_count": 1, "request_count": 1,
            "working_directory": cwd, "parent_session_id": null, "forked_at_turn": null,
            "usage": {"input_tokens": 11, "output_tokens": 7, "total_cost_usd": 0.000138}
        })
    );
    let events = env.events(&sid).await;
    assert_eq!(
        events,
        vec![
            ("user_input".into(), 0, json!({"task": "Say hello"})),
            (
                "system_prompt_resolved".into(),
                0,
                json!({"profile": "general"})
            ),
            (
                "policy_decision".into(),
                0,
                json!({"working_directory": cwd, "max_turns": 10})
            ),
            ("provider_request_start".into(), 0, json!({})),
            (
                "provider_response_summary".into(),
                1,
                json!({"summary": "Hello from Claude", "stop_reason": "end_turn"})
            ),
        ]
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn the_request_matches_the_messages_api_contract() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    server
        .call("agent_run_task", json!({"task": "Do the thing"}))
        .await;
    let received = env.api.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "exactly one request without tools");
    let req = &received[0];
    assert_eq!(req.url.path(), "/v1/messages");
    assert_eq!(req.headers.get("x-api-key").unwrap(), "test-key");
    assert_eq!(req.headers.get("anthropic-version").unwrap(), "2023-06-01");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let system = body["system"][0]["text"].as_str().unwrap().to_owned();
    assert!(
        system.contains("Stay within the scope of the task"),
        "{system}"
    );
    // Prompt caching: the system prompt and the last message are cache breakpoints.
    let cached = json!({"type": "ephemeral"});
    assert_eq!(
        body,
        json!({"model": "claude-sonnet-4-6", "max_tokens": 8192,
        "system": [{"type": "text", "text": system, "cache_control": cached}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Do the thing", "cache_control": cached}
        ]}]})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn model_setting_and_text_blocks_are_honoured() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_MODEL", "claude-test-model");
    let body = json!({"content": [
        {"type": "text", "text": "part one"}, {"type": "thinking", "thinking": "x"}, {"type": "text", "text": "part two"}
    ], "stop_reason": "end_turn"});
    env.reply(ResponseTemplate::new(200).set_body_json(body))
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["result"], json!({"output_text": "part one\npart two"}));
    assert_eq!(env.requests().await[0]["model"], json!("claude-test-model"));
    server.shutdown().await;
}

#[tokio::test]
async fn summary_rules() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let long = "x".repeat(250);
    env.reply_text(&format!("{long}\nrest")).await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["summary"], json!(format!("{}...", "x".repeat(200))));
    env.reply_text("").await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["summary"], json!("(empty response)"));
    assert_eq!(
        v["warnings"],
        json!(["Provider returned an empty response"])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn stop_reason_max_tokens_is_a_warning() {
    let env = TestEnv::new().await;
    let mut body = text_reply("cut off");
    body["stop_reason"] = json!("max_tokens");
    env.reply(ResponseTemplate::new(200).set_body_json(body))
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    assert!(v["warnings"][0].as_str().unwrap().contains("max_tokens"));
    server.shutdown().await;
}

#[tokio::test]
async fn verification_profile_and_turn_caps() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "system_profile": "verification", "max_turns": 30}),
        )
        .await;
    assert_eq!(v["profile"], json!("verification"));
    let sid = v["session_id"].as_str().unwrap();
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["profile"], json!("verification"));
    assert_eq!(env.events(sid).await[2].2["max_turns"], json!(20));
    let v = server
        .call("agent_run_task", json!({"task": "t", "max_turns": 75}))
        .await;
    let sid = v["session_id"].as_str().unwrap();
    assert_eq!(env.events(sid).await[2].2["max_turns"], json!(50));
    server.shutdown().await;
}

#[tokio::test]
async fn working_directory_policy() {
    let mut env = TestEnv::new().await;
    let allowed = env.cwd().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    env.set("CLAUDE_AGENT_MCP_ALLOWED_DIRS", &path_str(&allowed));
    env.reply_text("ok").await;
    let server = env.start().await;
    // Outside (the server CWD itself is outside the allowlist here).
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let cwd = path_str(&env.cwd());
    let msg = format!(
        "working_directory '{cwd}' is not in the server's allowed_dirs. Allowed: ['{}']",
        path_str(&allowed)
    );
    assert_eq!(
        v,
        json!({"ok": false, "session_id": "", "status": "failed", "workflow": "run_task", "profile": "general",
               "summary": msg, "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "policy_denied", "message": msg, "details": null}]})
    );
    assert_eq!(env.session_count().await, 0);
    // Inside, relative and not existing: accepted and stored resolved.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "working_directory": "allowed/new/../deeper"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let got = server
        .call("agent_get_session", json!({"session_id": v["session_id"]}))
        .await;
    assert_eq!(
        got["working_directory"],
        json!(path_str(&allowed.join("deeper")))
    );
    // `..` escaping the allowlist.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "working_directory": "allowed/../elsewhere"}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"));
    // A symlink inside the allowlist pointing outside.
    std::os::unix::fs::symlink(env.cwd(), allowed.join("link")).unwrap();
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "working_directory": path_str(&allowed.join("link"))}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"));
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("is not in the server's allowed_dirs")
    );
    assert_eq!(env.session_count().await, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn attachments_must_exist_and_be_allowed() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    std::fs::write(env.cwd().join("a.txt"), "x").unwrap();
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "attachments": ["missing.txt"]}),
        )
        .await;
    assert_eq!(
        v["errors"][0],
        json!({"code": "validation_error", "message": "Attachment path does not exist: missing.txt", "details": null})
    );
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "attachments": ["/etc/hostname"]}),
        )
        .await;
    assert_eq!(
        v["errors"][0],
        json!({"code": "policy_denied", "message": "Attachment '/etc/hostname' is outside allowed directories", "details": null})
    );
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "t", "attachments": ["a.txt"]}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(
        env.requests().await[0]["messages"],
        json!([{"role": "user", "content": "t\n\nAttachments:\n=== a.txt (text, 1 bytes) ===\nx\n=== end of a.txt ===\n"}]),
        "attachment contents reach the model"
    );
    let sid = v["session_id"].as_str().unwrap();
    assert_eq!(
        env.events(sid).await[0].2,
        json!({"task": "t"}),
        "the raw task is what the log records"
    );
    assert_eq!(env.session_count().await, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn long_outputs_are_stored_as_artifacts() {
    let env = TestEnv::new().await;
    let text = "This output is definitely longer than fifty characters in total.";
    env.reply_text(text).await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let art = &v["artifacts"][0];
    let aid = art["artifact_id"].as_str().unwrap().to_owned();
    assert!(aid.starts_with("art_") && aid.len() == 20);
    assert_eq!(v["artifacts"].as_array().unwrap().len(), 1);
    assert_eq!(
        art,
        &json!({"artifact_id": aid, "artifact_type": "output", "logical_name": "output.txt", "mime_type": "text/plain"})
    );
    let file = env
        .state_dir()
        .join("artifacts")
        .join(&sid)
        .join(format!("{aid}-output.txt"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let (size, sha): (i64, String) =
        sqlx::query_as("SELECT size_bytes, sha256 FROM artifacts WHERE artifact_id = ?")
            .bind(&aid)
            .fetch_one(&env.db().await)
            .await
            .unwrap();
    assert_eq!(size, text.len() as i64);
    assert_eq!(sha, format!("{:x}", Sha256::digest(text.as_bytes())));
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["artifact_count"], json!(1));
    env.reply_text("short").await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["artifacts"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn artifact_cap_omits_the_artifact_but_succeeds() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES", "10");
    env.reply_text(&"y".repeat(80)).await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["artifacts"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn api_errors_fail_the_session() {
    let env = TestEnv::new().await;
    env.reply(ResponseTemplate::new(400).set_body_json(
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
    ))
    .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&sid));
    let msg = v["summary"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("Claude API error: Error code: 400"),
        "{msg}"
    );
    assert_eq!(
        normalize_envelope(v),
        json!({"ok": false, "session_id": "<session>", "status": "failed", "workflow": "run_task", "profile": "general",
               "summary": msg, "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "provider_runtime_error", "message": msg, "details": null}]})
    );
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("failed"));
    assert_eq!(env.column(&sid, "locked_by").await, None);
    let events = env.events(&sid).await;
    assert_eq!(
        events.last().unwrap(),
        &(
            "error_event".to_owned(),
            0,
            json!({"error": {"code": "provider_runtime_error", "message": msg}})
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_API_MAX_RETRIES", "2");
    env.reply(ResponseTemplate::new(401).set_body_string("{\"error\":\"bad key\"}"))
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("Claude API error: Error code: 401")
    );
    assert_eq!(env.requests().await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_then_success_is_retried() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_API_MAX_RETRIES", "2");
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&env.api)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(text_reply("after retry")))
        .mount(&env.api)
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["result"]["output_text"], json!("after retry"));
    assert_eq!(env.requests().await.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn overloaded_until_retries_run_out() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_API_MAX_RETRIES", "2");
    env.reply(
        ResponseTemplate::new(529)
            .insert_header("retry-after", "0")
            .set_body_string("overloaded"),
    )
    .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(
        v["errors"][0]["message"],
        json!("Claude API error: Error code: 529 - overloaded")
    );
    assert_eq!(env.requests().await.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_body_is_a_provider_error() {
    let env = TestEnv::new().await;
    env.reply(ResponseTemplate::new(200).set_body_string("not json"))
        .await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["errors"][0]["code"], json!("provider_runtime_error"));
    env.reply(ResponseTemplate::new(200).set_body_json(json!({"foo": 1})))
        .await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["errors"][0]["code"], json!("normalization_error"));
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("Failed to normalize provider result: ")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn slow_reply_times_out() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_API_TIMEOUT", "1");
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let server = env.start().await;
    let started = std::time::Instant::now();
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(v["errors"][0]["code"], json!("provider_runtime_error"));
    assert!(v["summary"].as_str().unwrap().contains("timed out"), "{v}");
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_runs_get_distinct_sessions() {
    let env = TestEnv::new().await;
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("ok"))
            .set_delay(Duration::from_millis(200)),
    )
    .await;
    let server = env.start().await;
    let (a, b) = tokio::join!(
        server.call("agent_run_task", json!({"task": "a"})),
        server.call("agent_run_task", json!({"task": "b"}))
    );
    assert_eq!(
        (a["ok"].clone(), b["ok"].clone()),
        (json!(true), json!(true))
    );
    assert_ne!(a["session_id"], b["session_id"]);
    server.shutdown().await;
}
