//! agent_continue_session (`docs/reference/tools.md#5-agent_continue_session`), including the
//! lock race.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::*;

#[tokio::test]
async fn continue_replays_history_and_accumulates_counters() {
    let env = TestEnv::new().await;
    env.reply_text("first answer").await;
    let server = env.start().await;
    let run = server
        .call("agent_run_task", json!({"task": "original task"}))
        .await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    env.reply_text("second answer").await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "follow up"}),
        )
        .await;
    assert_eq!(
        v,
        json!({"ok": true, "session_id": sid, "status": "completed", "workflow": "continue_session", "profile": "general",
               "summary": "second answer",
               "result": {"output_text": "second answer", "usage": {"input_tokens": 11, "output_tokens": 7, "total_cost_usd": 0.000138}},
               "artifacts": [], "warnings": [], "errors": []})
    );
    assert_eq!(
        env.requests().await[0]["messages"],
        json!([
            {"role": "user", "content": "original task"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "follow up"}
        ])
    );
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(
        (got["turn_count"].clone(), got["request_count"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(got["workflow"], json!("run_task"));
    let events = env.events(&sid).await;
    assert_eq!(
        events[5..],
        [
            ("user_input".to_owned(), 1, json!({"message": "follow up"})),
            ("provider_request_start".to_owned(), 1, json!({})),
            (
                "provider_response_summary".to_owned(),
                2,
                json!({"summary": "second answer", "stop_reason": "end_turn"})
            ),
        ]
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_session_is_not_found() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": "sess_nope", "message": "hi"}),
        )
        .await;
    assert_eq!(
        v,
        json!({"ok": false, "session_id": "sess_nope", "status": "failed", "workflow": "continue_session", "profile": "general",
               "summary": "Session not found: sess_nope", "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "session_not_found", "message": "Session not found: sess_nope", "details": null}]})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failed_then_continued_and_trailing_user_turn_dropped() {
    let env = TestEnv::new().await;
    env.reply(ResponseTemplate::new(500).set_body_string("boom"))
        .await;
    let server = env.start().await;
    let run = server
        .call("agent_run_task", json!({"task": "first"}))
        .await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("failed"));
    env.reply(ResponseTemplate::new(500).set_body_string("boom"))
        .await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "again"}),
        )
        .await;
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["session_id"], json!(sid));
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("failed"));
    assert_eq!(env.column(&sid, "locked_by").await, None);
    assert_eq!(
        env.events(&sid).await.last().unwrap().1,
        0,
        "error_event at the prior turn count"
    );
    env.reply_text("recovered").await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "third"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed")
    );
    // Earlier user turns never got an answer: the unanswered trailing one is not replayed.
    assert_eq!(
        env.requests().await[0]["messages"],
        json!([{"role": "user", "content": "first"}, {"role": "user", "content": "third"}])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn running_session_is_denied_and_left_running() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE sessions SET status = 'running' WHERE session_id = ?")
        .bind(&sid)
        .execute(&env.db_rw().await)
        .await
        .unwrap();
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "m"}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"));
    assert_eq!(
        v["summary"],
        json!("Session is currently running — use locking to gate concurrent access")
    );
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    server.shutdown().await;
}

#[tokio::test]
async fn foreign_lock_conflicts_and_stale_lock_is_taken_over() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    let db = env.db_rw().await;
    sqlx::query("UPDATE sessions SET locked_by = 'exec_deadbeef', lock_expires_at = '2999-01-01T00:00:00+00:00' WHERE session_id = ?")
        .bind(&sid)
        .execute(&db)
        .await
        .unwrap();
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "m"}),
        )
        .await;
    assert_eq!(
        v["errors"][0],
        json!({"code": "session_conflict", "message": format!("Session {sid} is locked by exec_deadbeef"), "details": null})
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed"),
        "a conflict changes nothing"
    );
    sqlx::query(
        "UPDATE sessions SET lock_expires_at = '2000-01-01T00:00:00+00:00' WHERE session_id = ?",
    )
    .bind(&sid)
    .execute(&db)
    .await
    .unwrap();
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "m"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(env.column(&sid, "locked_by").await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn two_concurrent_continuations_one_runs_one_conflicts() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("slow"))
            .set_delay(Duration::from_millis(700)),
    )
    .await;
    let args = json!({"session_id": sid, "message": "m"});
    let (a, b) = tokio::join!(
        server.call("agent_continue_session", args.clone()),
        server.call("agent_continue_session", args.clone())
    );
    let mut codes = [
        a["errors"].get(0).map(|e| e["code"].clone()),
        b["errors"].get(0).map(|e| e["code"].clone()),
    ];
    codes.sort_by_key(|c| c.is_some());
    assert_eq!(codes, [None, Some(json!("session_conflict"))], "{a}\n{b}");
    assert_eq!(env.requests().await.len(), 1, "exactly one execution");
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed"),
        "the loser did not mark it failed"
    );
    assert_eq!(
        env.column(&sid, "request_count").await.as_deref(),
        Some("2")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn continuing_a_verify_session_keeps_its_workflow() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass").await;
    let server = env.start().await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    env.reply_text("more").await;
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "why?"}),
        )
        .await;
    assert_eq!(
        (c["workflow"].clone(), c["profile"].clone()),
        (json!("continue_session"), json!("verification"))
    );
    assert_eq!(c["result"]["output_text"], json!("more"));
    let got = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["workflow"], json!("verify_task"));
    server.shutdown().await;
}

#[tokio::test]
async fn continuation_replays_full_outputs_not_summaries() {
    let env = TestEnv::new().await;
    let first = "Line one of a long answer\nline two with the details the model needs later";
    env.reply_text(first).await;
    let server = env.start().await;
    let run = server
        .call("agent_run_task", json!({"task": "explain"}))
        .await;
    assert_eq!(run["summary"], json!("Line one of a long answer"));
    let sid = run["session_id"].as_str().unwrap().to_owned();
    env.reply_text("second").await;
    server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "more"}),
        )
        .await;
    env.reply_text("third").await;
    server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "again"}),
        )
        .await;
    assert_eq!(
        env.requests().await[0]["messages"],
        json!([
            {"role": "user", "content": "explain"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": "second"},
            {"role": "user", "content": "again"}
        ])
    );
    server.shutdown().await;
}
