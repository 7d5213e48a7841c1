//! Cancellation and leases (`docs/reference/tools.md#10-agent_cancel_session`,
//! `docs/reference/sessions.md#4-locking`): `agent_cancel_session`, MCP
//! `notifications/cancelled`, and lease renewal during long runs.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientRequest};
use rmcp::service::PeerRequestOptions;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::*;

/// Starts a slow run in the background and waits until its request reached the stand-in.
async fn slow_run(
    env: &TestEnv,
    server: &Server,
) -> (String, tokio::task::JoinHandle<serde_json::Value>) {
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let client = server.client.clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        let result = client
            .call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
            .unwrap();
        parse_single_text(&result)
    });
    env.wait_for_request().await;
    let sid: String =
        sqlx::query_scalar("SELECT session_id FROM sessions ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&env.db().await)
            .await
            .unwrap();
    (sid, call)
}

#[tokio::test]
async fn cancel_session_stops_a_run_from_another_request() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let (sid, call) = slow_run(&env, &server).await;
    let started = std::time::Instant::now();
    let cancel = server
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(
        cancel,
        json!({"ok": true, "session_id": sid, "status": "completed", "workflow": "cancel_session", "profile": "general",
               "summary": format!("Session {sid} cancelled"), "result": {"session_id": sid, "status": "cancelled"},
               "artifacts": [], "warnings": [], "errors": []})
    );
    let run = call.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the HTTP request was dropped, not awaited"
    );
    let message = format!("Session {sid} was cancelled: cancelled by agent_cancel_session");
    assert_eq!(
        run["errors"],
        json!([{"code": "session_cancelled", "message": message, "details": null}])
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("cancelled")
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    assert_eq!(
        env.events(&sid).await.last().unwrap(),
        &(
            "session_cancelled".to_owned(),
            0,
            json!({"reason": "cancelled by agent_cancel_session"})
        )
    );
    let listed = server
        .call("agent_list_sessions", json!({"status": "cancelled"}))
        .await;
    assert_eq!(listed["sessions"][0]["session_id"], json!(sid));
    // A cancelled session can be continued.
    env.reply_text("resumed").await;
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "go on"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true));
    server.shutdown().await;
}

/// Issue #14, cancellation across processes: `agent_cancel_session` received by a server that
/// does not run the session (B), while the store says it is `running` under A's lease, is
/// recorded in the store; A sees it at its next poll (well within a second), stops the run and
/// records `session_cancelled` with the reason; B waits for the end and answers as for a local
/// run, and A's client gets its cancelled envelope.
#[tokio::test]
async fn cancel_through_another_server_stops_the_run_where_it_runs() {
    let env = TestEnv::new().await;
    let a = env.start().await;
    let (sid, call) = slow_run(&env, &a).await;
    let owner = env
        .column(&sid, "locked_by")
        .await
        .expect("A holds the lock");
    let b = env.start().await;
    let started = std::time::Instant::now();
    let cancel = b
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(
        cancel,
        json!({"ok": true, "session_id": sid, "status": "completed", "workflow": "cancel_session", "profile": "general",
               "summary": format!("Session {sid} cancelled"), "result": {"session_id": sid, "status": "cancelled"},
               "artifacts": [], "warnings": [], "errors": []})
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the holder saw the request at its next poll"
    );
    let run = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("A's run ended")
        .unwrap();
    let message = format!("Session {sid} was cancelled: cancelled by agent_cancel_session");
    assert_eq!(
        run["errors"],
        json!([{"code": "session_cancelled", "message": message, "details": null}])
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("cancelled")
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    // The request is dropped with the end of the execution it was made for.
    assert_eq!(env.column(&sid, "cancel_requested_at").await, None);
    assert_eq!(env.column(&sid, "cancel_reason").await, None);
    assert_eq!(
        env.events(&sid).await.last().unwrap(),
        &(
            "session_cancelled".to_owned(),
            0,
            json!({"reason": "cancelled by agent_cancel_session"})
        )
    );
    // The lock owner named A's node, not B's.
    assert!(owner.contains("@node_"), "{owner}");
    // Cancelling it again, from either server, changes nothing.
    let again = b
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(again["ok"], json!(false), "{again}");
    assert_eq!(again["errors"][0]["code"], json!("session_status_error"));
    assert_eq!(b.shutdown().await, 0);
    assert_eq!(a.shutdown().await, 0);
}

#[tokio::test]
async fn cancelling_a_session_that_is_not_running_changes_nothing() {
    let env = TestEnv::new().await;
    env.reply_text("done").await;
    let server = env.start().await;
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    let before = server
        .call("agent_get_session", json!({"session_id": sid}))
        .await;
    let cancel = server
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(cancel["ok"], json!(false));
    assert_eq!(cancel["workflow"], json!("cancel_session"));
    assert_eq!(cancel["errors"][0]["code"], json!("session_status_error"));
    assert_eq!(
        server
            .call("agent_get_session", json!({"session_id": sid}))
            .await,
        before
    );
    let unknown = server
        .call("agent_cancel_session", json!({"session_id": "sess_nope"}))
        .await;
    assert_eq!(unknown["errors"][0]["code"], json!("session_not_found"));
    server.shutdown().await;
}

#[tokio::test]
async fn mcp_cancellation_notification_cancels_the_session() {
    let env = TestEnv::new().await;
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let server = env.start().await;
    let args = json!({"task": "slow"}).as_object().cloned().unwrap();
    let request = ClientRequest::CallToolRequest(rmcp::model::Request::new(
        CallToolRequestParams::new("agent_run_task").with_arguments(args),
    ));
    let handle = server
        .client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    handle
        .cancel(Some("user pressed stop".into()))
        .await
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = env.column(&sid, "status").await;
        if status.as_deref() != Some("running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status.as_deref(), Some("cancelled"));
    assert_eq!(
        env.events(&sid).await.last().unwrap().2,
        json!({"reason": "the client cancelled the request (notifications/cancelled)"})
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn the_lease_is_renewed_while_a_run_outlives_its_ttl() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "1");
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("slow but fine"))
            .set_delay(Duration::from_millis(2500)),
    )
    .await;
    let server = env.start().await;
    let client = server.client.clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "long"}).as_object().cloned().unwrap();
        client
            .call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
            .unwrap()
    });
    // The session exists once the backend calls the stand-in.
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    let first = env.column(&sid, "lock_expires_at").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = env.column(&sid, "lock_expires_at").await.unwrap();
    assert!(later > first, "lease renewed: {first} -> {later}");
    let now = agent_core::Timestamp::now().to_storage();
    assert!(
        later > now,
        "the lease has not expired while the run is live"
    );
    // A second caller still sees the live lease.
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "m"}),
        )
        .await;
    assert_eq!(c["errors"][0]["code"], json!("session_conflict"));
    let result = call.await.unwrap();
    assert_eq!(parse_single_text(&result)["ok"], json!(true));
    server.shutdown().await;
}

/// Over streamable HTTP, a second client (another MCP connection) cancels the first one's run.
#[tokio::test]
async fn a_second_connection_cancels_a_run() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;

    let env = TestEnv::new().await;
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let mut server = super::http::start_http(&env, &[]).await;
    let first =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    let second =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .unwrap();
    let run = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        let r = first
            .call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
            .unwrap();
        parse_single_text(&r)
    });
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    let args = json!({"session_id": sid}).as_object().cloned().unwrap();
    let cancel = second
        .call_tool(CallToolRequestParams::new("agent_cancel_session").with_arguments(args))
        .await
        .unwrap();
    assert_eq!(
        parse_single_text(&cancel)["result"],
        json!({"session_id": sid, "status": "cancelled"})
    );
    let envelope = run.await.unwrap();
    assert_eq!(envelope["errors"][0]["code"], json!("session_cancelled"));
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("cancelled")
    );
    let _ = second.cancel().await;
    let _ = server.child.kill().await;
}
