//! Resources (`docs/reference/sessions.md#11-resources`): sessions, event logs and artifacts,
//! browsable over MCP.

use rmcp::model::{PaginatedRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

use crate::support::*;

fn text_of(contents: &ResourceContents) -> (&str, Option<&str>, &str) {
    match contents {
        ResourceContents::TextResourceContents {
            uri,
            mime_type,
            text,
            ..
        } => (uri, mime_type.as_deref(), text),
        other => panic!("expected text contents, got {other:?}"),
    }
}

#[tokio::test]
async fn sessions_events_and_artifacts_are_resources() {
    let env = TestEnv::new().await;
    let output = "A long enough output to be stored as an artifact of the session.";
    env.reply_text(output).await;
    let server = env.start().await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    let aid = run["artifacts"][0]["artifact_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed = server.client.list_resources(None).await.unwrap();
    assert_eq!(listed.resources.len(), 1);
    assert_eq!(listed.resources[0].uri, format!("session://{sid}"));
    assert_eq!(listed.next_cursor, None);
    let templates = server.client.list_resource_templates(None).await.unwrap();
    let uris: Vec<&str> = templates
        .resource_templates
        .iter()
        .map(|t| t.uri_template.as_str())
        .collect();
    assert_eq!(
        uris,
        [
            "session://{session_id}",
            "session://{session_id}/events",
            "artifact://{session_id}/{artifact_id}"
        ]
    );

    let read = |uri: String| {
        let client = server.client.clone();
        async move {
            client
                .read_resource(ReadResourceRequestParams::new(uri))
                .await
        }
    };
    let session = read(format!("session://{sid}")).await.unwrap();
    let (_, mime, text) = text_of(&session.contents[0]);
    assert_eq!(mime, Some("application/json"));
    let got: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        got,
        server
            .call("agent_get_session", json!({"session_id": sid}))
            .await
    );

    let events = read(format!("session://{sid}/events")).await.unwrap();
    let events: Value = serde_json::from_str(text_of(&events.contents[0]).2).unwrap();
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "user_input",
            "system_prompt_resolved",
            "policy_decision",
            "provider_request_start",
            "provider_response_summary"
        ]
    );
    assert_eq!(events[0]["payload"], json!({"task": "t"}));

    let artifact = read(format!("artifact://{sid}/{aid}")).await.unwrap();
    let (uri, mime, text) = text_of(&artifact.contents[0]);
    assert_eq!(
        (uri, mime, text),
        (
            format!("artifact://{sid}/{aid}").as_str(),
            Some("text/plain"),
            output
        )
    );

    for bad in [
        "session://sess_missing".to_owned(),
        format!("artifact://{sid}/art_missing"),
        "file:///etc/passwd".to_owned(),
    ] {
        let err = read(bad.clone()).await.expect_err(&bad);
        assert!(
            err.to_string().contains("Resource not found"),
            "{bad}: {err}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn resources_list_is_paginated() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let db_sessions = 120;
    let server = env.start().await;
    server.call("agent_run_task", json!({"task": "seed"})).await;
    // Arrange the rest directly: listing is what is under test.
    let db = env.db_rw().await;
    for i in 1..db_sessions {
        sqlx::query(
            "INSERT INTO sessions (session_id, workflow, profile, status, created_at, updated_at, last_activity_at) \
             VALUES (?1, 'run_task', 'general', 'completed', ?2, ?2, ?2)",
        )
        .bind(format!("sess_{i:016x}"))
        .bind(format!("2026-01-01T00:00:{:02}.{i:06}+00:00", i % 60))
        .execute(&db)
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = server
            .client
            .list_resources(Some(
                PaginatedRequestParams::default().with_cursor(cursor.clone()),
            ))
            .await
            .unwrap();
        assert!(page.resources.len() <= 50);
        seen.extend(page.resources.into_iter().map(|r| r.uri));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), db_sessions);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), db_sessions, "no session listed twice");
    server.shutdown().await;
}

/// A `resources/list` cursor is a page offset that fits in a `u32`; anything else (an offset
/// near `u64::MAX` that used to overflow, a negative or non-numeric one, a decimal longer than
/// any integer) is an invalid-params error (-32602) naming the cursor, and the server keeps
/// serving. A cursor past the end is an empty last page.
#[tokio::test]
async fn resources_list_rejects_out_of_range_cursors() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    server.call("agent_run_task", json!({"task": "seed"})).await;
    let list = |cursor: &str| {
        let client = server.client.clone();
        let cursor = cursor.to_owned();
        async move {
            // The old code panicked in the handler on an overflowing cursor: no answer at all.
            let request = client.list_resources(Some(
                PaginatedRequestParams::default().with_cursor(Some(cursor)),
            ));
            tokio::time::timeout(std::time::Duration::from_secs(30), request)
                .await
                .expect("resources/list answers")
        }
    };
    let huge = "9".repeat(400);
    for bad in [
        "18446744073709551615",
        "18446744073709551565",
        "4294967296",
        "-1",
        "abc",
        "",
        " 1",
        huge.as_str(),
    ] {
        let err = list(bad).await.expect_err(bad);
        let rmcp::ServiceError::McpError(data) = err else {
            panic!("{bad}: expected an MCP error, got {err}");
        };
        assert_eq!(data.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
        assert!(
            data.message.contains("invalid cursor"),
            "{bad}: {}",
            data.message
        );
    }
    // The largest offset accepted is an empty page without a next cursor.
    let last = list("4294967295").await.unwrap();
    assert!(last.resources.is_empty());
    assert_eq!(last.next_cursor, None);
    let first = list("0").await.unwrap();
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.next_cursor, None);
    server.shutdown().await;
}
