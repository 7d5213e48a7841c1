//! MCP prompts and argument completion (`docs/reference/prompts.md`) through the real binary,
//! over stdio and streamable HTTP (a session-id client and a 2026-07-28 client): the
//! capabilities are declared, `prompts/list` gives the three commands with their arguments,
//! `prompts/get` renders the tool call, bad arguments are invalid params naming them, and
//! `completion/complete` offers session ids, most recently updated first.

use rmcp::ServiceExt;
use rmcp::model::{GetPromptRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use super::http::start_http;
use crate::support::*;

/// Every prompt and completion check, through `client`; `sessions` are the ids of sessions
/// created in this order (so the last is the most recently updated).
async fn check_prompts<H: rmcp::ClientHandler>(
    client: &RunningService<RoleClient, H>,
    sessions: &[String],
) {
    let info = client.peer_info().expect("initialized");
    assert!(info.capabilities.prompts.is_some(), "{info:?}");
    assert!(info.capabilities.completions.is_some(), "{info:?}");

    let prompts = client.list_all_prompts().await.unwrap();
    let listed: Vec<Value> = prompts
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "args": p.arguments.as_ref().unwrap().iter()
                    .map(|a| json!([a.name, a.required]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    assert_eq!(
        listed,
        [
            json!({"name": "delegate_task", "args": [["task", true], ["working_directory", false], ["profile", false]]}),
            json!({"name": "verify_change", "args": [["task", true], ["evidence", false], ["scope", false]]}),
            json!({"name": "resume_session", "args": [["session_id", true], ["message", true]]}),
        ]
    );
    assert!(
        prompts
            .iter()
            .all(|p| p.title.is_some() && p.description.is_some())
    );

    let args = json!({"task": "Summarise the repository", "working_directory": "/srv/repo"});
    let got = client
        .get_prompt(
            GetPromptRequestParams::new("delegate_task")
                .with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    let message = serde_json::to_value(&got.messages).unwrap();
    assert_eq!(message[0]["role"], json!("user"));
    let text = message[0]["content"]["text"].as_str().unwrap();
    assert_eq!(
        text,
        "Call the `agent_run_task` tool (claude-agent-mcp server) with these arguments:\n\n\
         ```json\n{\n  \"task\": \"Summarise the repository\",\n  \"working_directory\": \"/srv/repo\"\n}\n```\n\n\
         When it answers, report its summary, its status and its session_id (the session can be \
         continued with agent_continue_session)."
    );

    for (name, args, want) in [
        ("nope", json!({}), "unknown prompt: nope"),
        (
            "resume_session",
            json!({"session_id": "sess_x"}),
            "missing required argument for prompt resume_session: message",
        ),
        (
            "delegate_task",
            json!({"task": "t", "extra": "x"}),
            "unknown argument for prompt delegate_task: extra",
        ),
        (
            "delegate_task",
            json!({"task": "x".repeat(600 * 1024)}),
            "argument task of prompt delegate_task is 614400 bytes, more than 524288",
        ),
    ] {
        let err = client
            .get_prompt(
                GetPromptRequestParams::new(name)
                    .with_arguments(args.as_object().cloned().unwrap()),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(want), "{name}: {text}");
        assert!(
            text.contains("-32602") || text.to_lowercase().contains("invalid"),
            "{text}"
        );
    }

    // Session ids, most recently updated first; a prefix narrows them; other arguments and
    // other prompts complete to nothing.
    let newest_first: Vec<String> = sessions.iter().rev().cloned().collect();
    let all = client
        .complete_prompt_argument("resume_session", "session_id", "", None)
        .await
        .unwrap();
    assert_eq!(all.values, newest_first);
    assert_eq!(all.total, Some(sessions.len() as u32));
    assert_eq!(all.has_more, Some(false));
    let one = &sessions[0];
    let narrowed = client
        .complete_prompt_simple("resume_session", "session_id", one)
        .await
        .unwrap();
    assert_eq!(narrowed, std::slice::from_ref(one));
    let by_template = client
        .complete_resource_simple("session://{session_id}/events", "session_id", "sess_")
        .await
        .unwrap();
    assert_eq!(by_template, newest_first);
    for (prompt, argument, value) in [
        ("resume_session", "message", "sess_"),
        ("delegate_task", "task", "sess_"),
        ("resume_session", "session_id", "no-such-prefix"),
    ] {
        let none = client
            .complete_prompt_simple(prompt, argument, value)
            .await
            .unwrap();
        assert!(none.is_empty(), "{prompt}.{argument}: {none:?}");
    }
    let long = "s".repeat(10_000);
    let none = client
        .complete_prompt_simple("resume_session", "session_id", &long)
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Two sessions, created one after the other; their ids in creation order.
async fn two_sessions(server: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    for task in ["first", "second"] {
        let v = server.call("agent_run_task", json!({"task": task})).await;
        assert_eq!(v["ok"], json!(true), "{v}");
        ids.push(v["session_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test]
async fn prompts_and_completions_over_stdio() {
    let env = TestEnv::new().await;
    env.reply_text("done").await;
    let server = env.start().await;
    let sessions = two_sessions(&server).await;
    check_prompts(&server.client, &sessions).await;
    assert_eq!(server.shutdown().await, 0);
}

#[tokio::test]
async fn prompts_and_completions_over_http_for_both_protocol_families() {
    let env = TestEnv::new().await;
    env.reply_text("done").await;
    let stdio = env.start().await;
    let sessions = two_sessions(&stdio).await;
    assert_eq!(stdio.shutdown().await, 0);
    let mut node = start_http(&env, &[]).await;
    let session_id_client =
        ().serve(StreamableHttpClientTransport::from_uri(node.url.clone()))
            .await
            .expect("initialize");
    check_prompts(&session_id_client, &sessions).await;
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let modern = ()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(node.url.clone()),
            lifecycle,
        )
        .await
        .expect("discover");
    check_prompts(&modern, &sessions).await;
    let _ = session_id_client.cancel().await;
    let _ = modern.cancel().await;
    let _ = node.child.kill().await;
}
