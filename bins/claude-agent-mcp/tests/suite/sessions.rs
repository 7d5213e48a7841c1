//! agent_get_session and agent_list_sessions (`docs/reference/tools.md#6-agent_get_session`,
//! `docs/reference/tools.md#7-agent_list_sessions`).

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn get_unknown_and_list_empty() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    assert_eq!(
        server
            .call("agent_get_session", json!({"session_id": "sess_missing"}))
            .await,
        json!({"error": {"code": "session_not_found", "message": "Session not found: sess_missing"}})
    );
    assert_eq!(
        server.call("agent_list_sessions", json!({})).await,
        json!({"sessions": []})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn list_orders_limits_and_filters() {
    let env = TestEnv::new().await;
    env.reply_text("done").await;
    let server = env.start().await;
    let mut ids = Vec::new();
    for task in ["one", "two", "three"] {
        let v = server.call("agent_run_task", json!({"task": task})).await;
        ids.push(v["session_id"].as_str().unwrap().to_owned());
    }
    sqlx::query("UPDATE sessions SET status = 'failed' WHERE session_id = ?")
        .bind(&ids[0])
        .execute(&env.db_rw().await)
        .await
        .unwrap();
    let all = server.call("agent_list_sessions", json!({})).await;
    let listed: Vec<&str> = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let first = &all["sessions"][0];
    let updated = first["updated_at"].as_str().unwrap();
    assert!(updated.ends_with('Z'));
    assert_eq!(
        first,
        &json!({"session_id": ids[2], "workflow": "run_task", "profile": "general", "status": "completed",
                "updated_at": updated, "summary_latest": "done"})
    );
    let two = server
        .call("agent_list_sessions", json!({"limit": 2}))
        .await;
    assert_eq!(two["sessions"].as_array().unwrap().len(), 2);
    let completed = server
        .call("agent_list_sessions", json!({"status": "completed"}))
        .await;
    assert_eq!(completed["sessions"].as_array().unwrap().len(), 2);
    assert!(
        completed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "completed")
    );
    let failed = server
        .call("agent_list_sessions", json!({"status": "failed"}))
        .await;
    assert_eq!(failed["sessions"][0]["session_id"], json!(ids[0]));
    server.shutdown().await;
}
