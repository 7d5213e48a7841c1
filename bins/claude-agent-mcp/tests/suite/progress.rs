//! Progress: a call carrying `_meta.progressToken` gets `notifications/progress` with
//! increasing `progress` and short messages (the engine's progress sink, wired to MCP).

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, NumberOrString, ProgressNotificationParam, ProgressToken,
    RequestMetaObject,
};
use rmcp::service::{NotificationContext, RoleClient};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::json;

use crate::support::*;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

#[tokio::test]
async fn a_run_with_a_progress_token_reports_progress() {
    let env = TestEnv::new().await;
    env.reply_text("done").await;
    let (mut child, stdin, stdout) = env.spawn_stdio();
    let recorder = Recorder::default();
    let client = recorder.clone().serve((stdout, stdin)).await.unwrap();
    let token = ProgressToken(NumberOrString::String("run-1".into()));
    let mut params = CallToolRequestParams::new("agent_run_task")
        .with_arguments(json!({"task": "t"}).as_object().cloned().unwrap());
    params.meta = Some(RequestMetaObject::with_progress_token(token.clone()));
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(parse_single_text(&result)["ok"], json!(true));
    // Every notification is sent before the response: nothing to wait for.
    let seen = recorder.0.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    // The rmcp client substitutes its own token for the one we set; all must carry it.
    assert!(
        seen.iter()
            .all(|p| p.progress_token == seen[0].progress_token),
        "{token:?} {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].progress < w[1].progress),
        "monotonic: {seen:?}"
    );
    assert!(seen.iter().all(|p| {
        p.message
            .as_ref()
            .is_some_and(|m| !m.is_empty() && m.chars().count() <= 200)
    }));
    assert!(
        seen.last()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .ends_with("completed")
    );
    let _ = client.cancel().await;
    let _ = child.wait().await;
}
