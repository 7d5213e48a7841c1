//! The [`TaskStore`] contract (`agent_core::mcp_tasks`), written once and run against every
//! implementation: [`task_store_contract!`] expands to one test per rule for a store built by
//! the given async expression. `tests/store.rs` runs it on the SQLite, PostgreSQL and
//! in-memory stores.

use std::time::Duration;

use agent_core::mcp_tasks::{
    MAX_REQUEST_CANCEL_REASON_BYTES, MAX_TASK_ID_BYTES, MAX_TASK_RESULT_BYTES,
    MAX_TASK_STATUS_MESSAGE_BYTES,
};
use agent_core::{NewTask, RequestCancel, RequestKey, TaskState, TaskStore};
use serde_json::json;

pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

pub fn new_task(id: &str, ttl: Duration) -> NewTask {
    NewTask {
        task_id: id.to_owned(),
        tool_name: "agent_run_task".to_owned(),
        owner_node: "node_a".to_owned(),
        status_message: Some("agent_run_task starting".to_owned()),
        ttl,
        poll_interval: Some(Duration::from_secs(1)),
    }
}

pub fn key(client: &str, id: &str) -> RequestKey {
    RequestKey::new(client, id).expect("a valid key")
}

/// Expands to the contract tests for the store built by `$make` (an expression evaluating to
/// a future of `Option<(guard, store)>`: the guard lives as long as the test, e.g. a temporary
/// directory or a PostgreSQL schema; the store is anything that derefs to a `TaskStore`;
/// `None` only where the store's server is missing and not required, as
/// `agent_testkit::postgres::fresh_schema` decides).
#[macro_export]
macro_rules! task_store_contract {
    ($make:expr) => {
        $crate::task_store_contract!(@tests $make;
            a_created_task_reads_back_working_from_any_handle,
            progress_names_the_session_once_and_reports_cancel_requests,
            a_task_settles_once_and_keeps_its_result,
            cancel_is_recorded_only_on_a_working_task,
            unknown_and_oversized_task_ids_are_absent,
            results_and_messages_are_bounded,
            expired_tasks_are_gone_and_purged,
            a_request_cancelled_before_its_session_is_named_is_told_when_naming,
            a_request_cancelled_after_naming_answers_its_session,
            unregistered_forgotten_or_expired_requests_are_not_found,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, store)) = $make.await else {
                    return;
                };
                $crate::task_contract::$name(&*store).await;
                // The store goes before the guard: a schema is dropped once nothing uses it.
                drop(store);
            }
        )*
    };
}

pub async fn a_created_task_reads_back_working_from_any_handle(store: &dyn TaskStore) {
    let created = store.create_task(&new_task("t1", DAY)).await.unwrap();
    assert_eq!(created.task_id, "t1");
    assert_eq!(created.status, TaskState::Working);
    assert_eq!(created.tool_name, "agent_run_task");
    assert_eq!(created.owner_node, "node_a");
    assert_eq!(
        created.status_message.as_deref(),
        Some("agent_run_task starting")
    );
    assert_eq!(created.session_id, None);
    assert_eq!(created.result, None);
    assert!(!created.cancel_requested);
    assert_eq!(created.ttl, DAY);
    assert_eq!(created.poll_interval, Some(Duration::from_secs(1)));
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.expires_at, created.created_at.plus(DAY));
    let got = store.get_task("t1").await.unwrap().unwrap();
    assert_eq!(got, created);
    // The id is unique.
    assert!(store.create_task(&new_task("t1", DAY)).await.is_err());
}

pub async fn progress_names_the_session_once_and_reports_cancel_requests(store: &dyn TaskStore) {
    store.create_task(&new_task("t2", DAY)).await.unwrap();
    assert_eq!(
        store
            .update_task("t2", Some("model turn 1"), None)
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        store.update_task("t2", None, Some("sess_1")).await.unwrap(),
        Some(false)
    );
    // A second session is ignored; the message stays when none is given.
    store.update_task("t2", None, Some("sess_2")).await.unwrap();
    let got = store.get_task("t2").await.unwrap().unwrap();
    assert_eq!(got.session_id.as_deref(), Some("sess_1"));
    assert_eq!(got.status_message.as_deref(), Some("model turn 1"));
    assert!(got.updated_at >= got.created_at);
    store.request_task_cancel("t2").await.unwrap();
    assert_eq!(
        store.update_task("t2", Some("still"), None).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        store.update_task("missing", Some("x"), None).await.unwrap(),
        None
    );
}

pub async fn a_task_settles_once_and_keeps_its_result(store: &dyn TaskStore) {
    store.create_task(&new_task("t3", DAY)).await.unwrap();
    let result = json!({"content": [{"type": "text", "text": "{}"}], "structuredContent": {"ok": true}, "isError": false});
    assert!(
        store
            .settle_task("t3", TaskState::Completed, Some(&result), Some("done"))
            .await
            .unwrap()
    );
    let got = store.get_task("t3").await.unwrap().unwrap();
    assert_eq!(got.status, TaskState::Completed);
    assert_eq!(got.result, Some(result));
    assert_eq!(got.status_message.as_deref(), Some("done"));
    assert!(got.expires_at >= got.updated_at.plus(DAY));
    // Settled: no second settle, no progress, a cancel request changes nothing.
    assert!(
        !store
            .settle_task("t3", TaskState::Failed, None, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.update_task("t3", Some("x"), None).await.unwrap(),
        None
    );
    let after_cancel = store.request_task_cancel("t3").await.unwrap().unwrap();
    assert_eq!(after_cancel.status, TaskState::Completed);
    assert!(!after_cancel.cancel_requested);
    assert!(
        !store
            .settle_task("missing", TaskState::Completed, None, None)
            .await
            .unwrap()
    );
}

pub async fn cancel_is_recorded_only_on_a_working_task(store: &dyn TaskStore) {
    store.create_task(&new_task("t4", DAY)).await.unwrap();
    let cancelled = store.request_task_cancel("t4").await.unwrap().unwrap();
    assert!(cancelled.cancel_requested);
    assert_eq!(cancelled.status, TaskState::Working);
    // A second request changes nothing more.
    assert!(
        store
            .request_task_cancel("t4")
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    assert!(
        store
            .settle_task("t4", TaskState::Cancelled, None, None)
            .await
            .unwrap()
    );
    let got = store.get_task("t4").await.unwrap().unwrap();
    assert_eq!(got.status, TaskState::Cancelled);
    assert_eq!(got.result, None);
    assert_eq!(store.request_task_cancel("nope").await.unwrap(), None);
}

pub async fn unknown_and_oversized_task_ids_are_absent(store: &dyn TaskStore) {
    assert_eq!(store.get_task("unknown").await.unwrap(), None);
    let long = "x".repeat(MAX_TASK_ID_BYTES + 1);
    assert_eq!(store.get_task(&long).await.unwrap(), None);
    assert_eq!(store.request_task_cancel(&long).await.unwrap(), None);
    assert!(store.create_task(&new_task(&long, DAY)).await.is_err());
    let longest = "y".repeat(MAX_TASK_ID_BYTES);
    store.create_task(&new_task(&longest, DAY)).await.unwrap();
    assert!(store.get_task(&longest).await.unwrap().is_some());
}

pub async fn results_and_messages_are_bounded(store: &dyn TaskStore) {
    let mut task = new_task("t5", DAY);
    task.status_message = Some("é".repeat(MAX_TASK_STATUS_MESSAGE_BYTES));
    let created = store.create_task(&task).await.unwrap();
    let message = created.status_message.unwrap();
    assert!(message.len() <= MAX_TASK_STATUS_MESSAGE_BYTES);
    assert_eq!(message, "é".repeat(MAX_TASK_STATUS_MESSAGE_BYTES / 2));
    store
        .update_task(
            "t5",
            Some(&"m".repeat(10 * MAX_TASK_STATUS_MESSAGE_BYTES)),
            None,
        )
        .await
        .unwrap();
    let got = store.get_task("t5").await.unwrap().unwrap();
    assert_eq!(
        got.status_message.map(|m| m.len()),
        Some(MAX_TASK_STATUS_MESSAGE_BYTES)
    );
    let huge = json!({"text": "z".repeat(MAX_TASK_RESULT_BYTES)});
    assert!(
        store
            .settle_task("t5", TaskState::Completed, Some(&huge), None)
            .await
            .is_err()
    );
    // Refused: nothing changed, and a result that fits still settles it.
    assert_eq!(
        store.get_task("t5").await.unwrap().unwrap().status,
        TaskState::Working
    );
    assert!(
        store
            .settle_task(
                "t5",
                TaskState::Failed,
                Some(&json!({"message": "too large"})),
                None
            )
            .await
            .unwrap()
    );
}

pub async fn expired_tasks_are_gone_and_purged(store: &dyn TaskStore) {
    // Wide margins: a store's first calls may each open a connection (tens of milliseconds on a
    // loaded machine), and every check below holds only within a window of the TTL.
    let short = Duration::from_millis(1000);
    let step = Duration::from_millis(600);
    store.create_task(&new_task("short", short)).await.unwrap();
    store
        .create_task(&new_task("settled", short))
        .await
        .unwrap();
    store.create_task(&new_task("long", DAY)).await.unwrap();
    store
        .register_request(&key("c", "n:1"), "node_a", short)
        .await
        .unwrap();
    tokio::time::sleep(step).await;
    // Settling restarts the lifetime: kept `ttl` after it settles.
    assert!(
        store
            .settle_task("settled", TaskState::Completed, Some(&json!({})), None)
            .await
            .unwrap()
    );
    tokio::time::sleep(step).await;
    assert_eq!(store.get_task("short").await.unwrap(), None);
    assert!(store.get_task("settled").await.unwrap().is_some());
    assert_eq!(
        store.update_task("short", Some("x"), None).await.unwrap(),
        None
    );
    assert!(
        !store
            .settle_task("short", TaskState::Completed, None, None)
            .await
            .unwrap()
    );
    assert_eq!(store.request_task_cancel("short").await.unwrap(), None);
    assert_eq!(
        store
            .cancel_request(&key("c", "n:1"), "late")
            .await
            .unwrap(),
        RequestCancel::NotFound
    );
    // One expired task and one expired request go; a limit bounds one call.
    assert_eq!(store.purge_expired(1).await.unwrap(), 1);
    assert_eq!(store.purge_expired(100).await.unwrap(), 1);
    assert_eq!(store.purge_expired(100).await.unwrap(), 0);
    assert!(store.get_task("long").await.unwrap().is_some());
    tokio::time::sleep(short - step + Duration::from_millis(100)).await;
    assert_eq!(store.get_task("settled").await.unwrap(), None);
    // Creating a task purges what expired.
    store.create_task(&new_task("next", DAY)).await.unwrap();
    assert_eq!(store.purge_expired(100).await.unwrap(), 0);
}

pub async fn a_request_cancelled_before_its_session_is_named_is_told_when_naming(
    store: &dyn TaskStore,
) {
    let k = key("mcp-session-1", "n:7");
    store.register_request(&k, "node_a", DAY).await.unwrap();
    assert_eq!(
        store.cancel_request(&k, "first").await.unwrap(),
        RequestCancel::Recorded { session_id: None }
    );
    // The first reason stays.
    store.cancel_request(&k, "second").await.unwrap();
    assert_eq!(
        store.name_request_session(&k, "sess_9").await.unwrap(),
        Some("first".to_owned())
    );
    // The same JSON-RPC id as a string, or from another client, is another request.
    assert_eq!(
        store
            .cancel_request(&key("mcp-session-1", "s:7"), "x")
            .await
            .unwrap(),
        RequestCancel::NotFound
    );
    assert_eq!(
        store
            .cancel_request(&key("mcp-session-2", "n:7"), "x")
            .await
            .unwrap(),
        RequestCancel::NotFound
    );
    let long = "r".repeat(MAX_REQUEST_CANCEL_REASON_BYTES * 2);
    let k2 = key("mcp-session-1", "n:8");
    store.register_request(&k2, "node_a", DAY).await.unwrap();
    store.cancel_request(&k2, &long).await.unwrap();
    assert_eq!(
        store
            .name_request_session(&k2, "sess_8")
            .await
            .unwrap()
            .map(|r| r.len()),
        Some(MAX_REQUEST_CANCEL_REASON_BYTES)
    );
}

pub async fn a_request_cancelled_after_naming_answers_its_session(store: &dyn TaskStore) {
    let k = key("mcp-session-1", "s:abc");
    store.register_request(&k, "node_a", DAY).await.unwrap();
    assert_eq!(
        store.name_request_session(&k, "sess_1").await.unwrap(),
        None
    );
    assert_eq!(
        store.cancel_request(&k, "stop").await.unwrap(),
        RequestCancel::Recorded {
            session_id: Some("sess_1".to_owned())
        }
    );
    // Registering the key again starts over.
    store.register_request(&k, "node_b", DAY).await.unwrap();
    assert_eq!(
        store.name_request_session(&k, "sess_2").await.unwrap(),
        None
    );
}

pub async fn unregistered_forgotten_or_expired_requests_are_not_found(store: &dyn TaskStore) {
    let k = key("c", "n:1");
    assert_eq!(
        store.cancel_request(&k, "x").await.unwrap(),
        RequestCancel::NotFound
    );
    assert_eq!(
        store.name_request_session(&k, "sess_1").await.unwrap(),
        None
    );
    store.register_request(&k, "node_a", DAY).await.unwrap();
    store.forget_request(&k).await.unwrap();
    assert_eq!(
        store.cancel_request(&k, "x").await.unwrap(),
        RequestCancel::NotFound
    );
    // Forgetting twice is fine.
    store.forget_request(&k).await.unwrap();
}
