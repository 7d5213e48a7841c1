//! MCP tasks (SEP-2663, an addition: `docs/long-running.md#mcp-tasks-sep-2663`): a client that
//! declares the tasks extension gets run/continue/verify as tasks it can poll and cancel; the
//! session id links the two.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig,
    GetTaskParams, Implementation, TaskPayload, TaskStatus,
};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::*;

/// A client that declares the tasks extension.
#[derive(Clone)]
pub(super) struct TaskClient;

impl rmcp::ClientHandler for TaskClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("task-test", "1"),
        )
    }
}

async fn start(
    env: &TestEnv,
) -> (
    RunningService<RoleClient, TaskClient>,
    tokio::process::Child,
) {
    let (child, stdin, stdout) = env.spawn_stdio();
    (TaskClient.serve((stdout, stdin)).await.unwrap(), child)
}

/// `tasks/get` until the task leaves `working` (at most 30 s: generous, a loaded machine).
pub(super) async fn poll(
    client: &RunningService<RoleClient, TaskClient>,
    task_id: &str,
) -> rmcp::model::GetTaskResult {
    for _ in 0..1200 {
        let got = client.get_task(GetTaskParams::new(task_id)).await.unwrap();
        if got.task.task.status != TaskStatus::Working {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {task_id} never settled");
}

#[tokio::test]
async fn a_run_becomes_a_task_that_completes() {
    let env = TestEnv::new().await;
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("task done"))
            .set_delay(Duration::from_millis(300)),
    )
    .await;
    let (client, mut child) = start(&env).await;
    let args = json!({"task": "t"}).as_object().cloned().unwrap();
    let response = client
        .call_tool_once(CallToolRequestParams::new("agent_run_task").with_arguments(args))
        .await
        .unwrap();
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}")
    };
    assert_eq!(created.task.status, TaskStatus::Working);
    let done = poll(&client, &created.task.task_id).await;
    assert_eq!(done.task.task.status, TaskStatus::Completed);
    let TaskPayload::Completed { result } = done.task.payload else {
        panic!("completed payload")
    };
    let envelope: Value = result["structuredContent"].clone();
    assert_eq!(envelope["ok"], json!(true), "{result:?}");
    assert_eq!(envelope["result"]["output_text"], json!("task done"));
    let sid = envelope["session_id"].as_str().unwrap();
    let status_message = done.task.task.status_message.unwrap_or_default();
    assert!(
        status_message.contains(sid),
        "the task names its session: {status_message}"
    );
    // Non-task tools answer directly even for a tasks-capable client.
    let list = client
        .call_tool_once(CallToolRequestParams::new("agent_list_sessions"))
        .await
        .unwrap();
    assert!(matches!(list, CallToolResponse::Complete(_)));
    let wait = json!({"session_id": sid, "timeout_seconds": 0})
        .as_object()
        .cloned()
        .unwrap();
    let CallToolResponse::Complete(waited) = client
        .call_tool_once(CallToolRequestParams::new("agent_wait_session").with_arguments(wait))
        .await
        .unwrap()
    else {
        panic!("agent_wait_session answers directly")
    };
    assert_eq!(waited.structured_content.as_ref(), Some(&envelope));
    // A task is the background form: wait_seconds is not applied, the task settles with the
    // whole envelope.
    let args = json!({"task": "t", "wait_seconds": 0})
        .as_object()
        .cloned()
        .unwrap();
    let CallToolResponse::Task(created) = client
        .call_tool_once(CallToolRequestParams::new("agent_run_task").with_arguments(args))
        .await
        .unwrap()
    else {
        panic!("expected a task")
    };
    let done = poll(&client, &created.task.task_id).await;
    let TaskPayload::Completed { result } = done.task.payload else {
        panic!("completed payload")
    };
    assert_eq!(result["structuredContent"]["status"], json!("completed"));
    assert_eq!(
        result["structuredContent"]["result"]["output_text"],
        json!("task done")
    );
    let _ = client.cancel().await;
    let _ = child.wait().await;
}

#[tokio::test]
async fn cancelling_a_task_cancels_the_session() {
    let env = TestEnv::new().await;
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let (client, mut child) = start(&env).await;
    let args = json!({"task": "slow"}).as_object().cloned().unwrap();
    let response = client
        .call_tool_once(CallToolRequestParams::new("agent_run_task").with_arguments(args))
        .await
        .unwrap();
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task")
    };
    env.wait_for_request().await;
    client
        .cancel_task(CancelTaskParams::new(created.task.task_id.clone()))
        .await
        .unwrap();
    let done = poll(&client, &created.task.task_id).await;
    assert_eq!(done.task.task.status, TaskStatus::Cancelled);
    let sid = env.latest_session_id().await;
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("cancelled")
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    assert_eq!(
        env.events(&sid).await.last().unwrap().2,
        json!({"reason": "cancelled by tasks/cancel"})
    );
    let message = done.task.task.status_message.clone().unwrap_or_default();
    assert!(
        message.contains(&sid),
        "a cancelled task still names its session: {message}"
    );
    let _ = client.cancel().await;
    let _ = child.wait().await;
}
