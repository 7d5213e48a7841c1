//! MCP tasks (SEP-2663) and cancellation of requests in flight, kept in the store
//! ([`TaskStore`]) so that every node of a fleet serves them (`docs/long-running.md#mcp-tasks-sep-2663`,
//! `docs/scaling.md`).
//!
//! * A task runs on the node that received its `tools/call`. Its status message, agent
//!   session, result and cancel request are written to the store; `tasks/get` on any node
//!   reads them there.
//! * `tasks/cancel` on any node records the request; once the task has named its agent
//!   session, the session's holder is asked to stop ([`Engine::request_cancel`]: at once on
//!   this node, through the store's cancel request on another). A request recorded before
//!   the session is named is seen by the owner when it names it.
//! * A long-running call over HTTP from a client with a transport session is registered under
//!   that session and its JSON-RPC id ([`RequestKey`]); `notifications/cancelled` received by
//!   any node finds the agent session there and stops it the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::mcp_tasks::MAX_TASK_RESULT_BYTES;
use agent_core::{
    Engine, ExecContext, NewTask, ProgressSink, RequestCancel, RequestKey, TaskRecord, TaskState,
    TaskStore,
};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolResult, DetailedTask, JsonObject, RequestId, Task, TaskPayload, TaskStatus,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::server::AgentServer;

/// How long a task is kept (running, then after it settles): a day, so runs of minutes or
/// hours finish as tasks. Also how long a registered request may stay in flight.
pub const TASK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The polling interval suggested to clients.
pub const TASK_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The reason recorded in the session when a task is cancelled.
pub const TASK_CANCELLED: &str = "cancelled by tasks/cancel";

/// The transport session header a client with a session sends on every request.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";

/// The `unknown task` error (`-32602`), rmcp's wording.
pub fn unknown_task(task_id: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown task: {task_id}"), None)
}

fn store_error(e: agent_core::StoreError) -> ErrorData {
    ErrorData::internal_error(format!("task store: {}", e.message), None)
}

/// The first `sess_…` word of a progress message: the agent session a call runs.
pub(crate) fn session_in(message: &str) -> Option<&str> {
    message
        .split_whitespace()
        .find(|w| w.starts_with("sess_"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
}

/// The wire form of a stored task.
pub fn detailed(record: &TaskRecord) -> DetailedTask {
    let (status, payload) = match record.status {
        TaskState::Working => (TaskStatus::Working, TaskPayload::Working),
        TaskState::Completed => (
            TaskStatus::Completed,
            TaskPayload::Completed {
                result: as_object(record.result.as_ref()),
            },
        ),
        TaskState::Failed => (
            TaskStatus::Failed,
            TaskPayload::Failed {
                error: as_object(record.result.as_ref()),
            },
        ),
        TaskState::Cancelled => (TaskStatus::Cancelled, TaskPayload::Cancelled),
    };
    let mut task = Task::new(
        record.task_id.clone(),
        status,
        record.created_at.to_api(),
        record.updated_at.to_api(),
    );
    task.status_message = record.status_message.clone();
    task.ttl_ms = u64::try_from(record.ttl.as_millis()).ok();
    task.poll_interval_ms = record
        .poll_interval
        .and_then(|p| u64::try_from(p.as_millis()).ok());
    DetailedTask::new(task, payload)
}

fn as_object(value: Option<&Value>) -> JsonObject {
    match value {
        Some(Value::Object(map)) => map.clone(),
        _ => JsonObject::new(),
    }
}

impl AgentServer {
    /// Creates the task in the store and runs the call on this node, in the background.
    pub(crate) async fn spawn_task(
        &self,
        name: String,
        arguments: JsonObject,
    ) -> Result<Task, ErrorData> {
        let store = Arc::clone(self.task_store());
        let new = NewTask {
            task_id: agent_core::ids::new_task_id(),
            tool_name: name.clone(),
            owner_node: self.engine().node_id().to_owned(),
            status_message: Some(format!("{name} starting")),
            ttl: TASK_TTL,
            poll_interval: Some(TASK_POLL_INTERVAL),
        };
        let record = store.create_task(&new).await.map_err(store_error)?;
        let server = self.clone();
        let task_id = record.task_id.clone();
        // The task's work stays a child of the `tools/call` that created it.
        tokio::spawn(
            async move { server.run_task(task_id, name, arguments).await }.in_current_span(),
        );
        Ok(detailed(&record).task)
    }

    /// Runs a task's call and settles the task with its outcome.
    async fn run_task(&self, task_id: String, name: String, arguments: JsonObject) {
        let store = Arc::clone(self.task_store());
        let cancel = CancellationToken::new();
        let progress = Arc::new(TaskProgress::start(
            Arc::clone(&store),
            Arc::clone(self.engine()),
            task_id.clone(),
        ));
        let ctx = ExecContext::new(cancel, Arc::clone(&progress) as Arc<dyn ProgressSink>);
        let result = self
            .call_with(&name, arguments, ctx, crate::server::Background::Ignored)
            .await;
        // Every progress write lands before the task settles.
        let session = progress.close().await;
        let cancel_requested = match store.get_task(&task_id).await {
            Ok(task) => task.is_some_and(|t| t.cancel_requested),
            Err(e) => {
                tracing::warn!(task_id, error = %e, "could not read the task before settling it");
                false
            }
        };
        let (state, value) = settled(&result, cancel_requested);
        let mut outcome = store
            .settle_task(&task_id, state, value.as_ref(), None)
            .await;
        if outcome.is_err() && state == TaskState::Completed {
            // Too large (or not storable): the task fails, naming the session that holds the
            // outcome.
            let error = too_large_error(session.as_deref());
            outcome = store
                .settle_task(&task_id, TaskState::Failed, Some(&error), None)
                .await;
        }
        match outcome {
            Ok(true) => {}
            Ok(false) => tracing::warn!(task_id, "task expired before its call ended"),
            Err(e) => tracing::error!(task_id, error = %e, "could not settle the task"),
        }
    }

    /// `tasks/get` on any node. A `working` task of another node whose session the lease
    /// sweeper has marked `interrupted` lost its node (a live node renews its lease, and
    /// settles its task itself when its run ends): it is settled `failed` here, naming the
    /// session to continue, instead of reading `working` until it expires.
    pub(crate) async fn read_task(&self, task_id: &str) -> Result<DetailedTask, ErrorData> {
        let store = self.task_store();
        let record = match store.get_task(task_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(unknown_task(task_id)),
            Err(e) => return Err(store_error(e)),
        };
        if record.status != TaskState::Working || record.owner_node == self.engine().node_id() {
            return Ok(detailed(&record));
        }
        let Some(session) = &record.session_id else {
            return Ok(detailed(&record));
        };
        let interrupted = matches!(
            self.engine().store().get_session(session).await,
            Ok(Some(s)) if s.status == agent_core::SessionStatus::Interrupted
        );
        if !interrupted {
            return Ok(detailed(&record));
        }
        let error = orphaned_error(&record.owner_node, session);
        match store
            .settle_task(task_id, TaskState::Failed, Some(&error), None)
            .await
        {
            Ok(_) => match store.get_task(task_id).await {
                Ok(Some(settled)) => Ok(detailed(&settled)),
                Ok(None) => Err(unknown_task(task_id)),
                Err(e) => Err(store_error(e)),
            },
            Err(e) => Err(store_error(e)),
        }
    }

    /// `tasks/cancel` on any node: records the request and, once the task's session is known,
    /// asks its holder to stop. Acknowledged at once; the task settles when the run ends.
    pub(crate) async fn cancel_task_anywhere(&self, task_id: &str) -> Result<(), ErrorData> {
        let record = match self.task_store().request_task_cancel(task_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(unknown_task(task_id)),
            Err(e) => return Err(store_error(e)),
        };
        if record.status == TaskState::Working
            && let Some(session) = &record.session_id
            && let Err(e) = self.engine().request_cancel(session, TASK_CANCELLED).await
        {
            // The request stays recorded on the task; report the failure to the client.
            return Err(store_error(e));
        }
        Ok(())
    }

    /// `notifications/cancelled` for a request this or another node runs: records it on the
    /// registered request and, once its session is known, asks the holder to stop. The session
    /// records the same reason as when the notification reaches the holding node (rmcp's own
    /// cancellation there): the client's free-text `reason` is not kept.
    pub(crate) async fn cancel_request_anywhere(&self, key: &RequestKey) {
        let reason = agent_core::engine::CLIENT_CANCELLED;
        let store = Arc::clone(self.task_store());
        let engine = Arc::clone(self.engine());
        let key = key.clone();
        // A call younger than `REGISTER_AFTER` has no entry yet: look again a few times, off
        // the notification's path.
        let work = async move {
            let mut retries = CANCEL_RETRIES.iter();
            loop {
                match store.cancel_request(&key, reason).await {
                    Ok(RequestCancel::Recorded {
                        session_id: Some(session),
                    }) => {
                        if let Err(e) = engine.request_cancel(&session, reason).await {
                            tracing::warn!(session_id = %session, error = %e, "could not request the cancellation of a run");
                        }
                        return;
                    }
                    // Recorded before the session is named: the owner sees it when naming.
                    Ok(RequestCancel::Recorded { session_id: None }) => return,
                    // Not registered (yet): too young, not a long-running call, or it ended.
                    Ok(RequestCancel::NotFound) => match retries.next() {
                        Some(delay) => tokio::time::sleep(*delay).await,
                        None => return,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record a request cancellation");
                        return;
                    }
                }
            }
        };
        drop(tokio::spawn(work));
    }
}

/// How a task settles: `cancelled` when a cancel was requested and the run was cancelled,
/// else `completed` with the tool result (which may describe an error).
/// The status message stays the last progress message (which names the session).
fn settled(result: &CallToolResult, cancel_requested: bool) -> (TaskState, Option<Value>) {
    let cancelled = result
        .structured_content
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .is_some_and(|errors| {
            errors.iter().any(|e| {
                e.get("code").and_then(Value::as_str)
                    == Some(agent_core::ErrorCode::SessionCancelled.as_str())
            })
        });
    if cancel_requested && cancelled {
        return (TaskState::Cancelled, None);
    }
    let value = serde_json::to_value(result).unwrap_or(Value::Null);
    (TaskState::Completed, Some(value))
}

/// The error of a task whose node stopped while it ran.
fn orphaned_error(node: &str, session: &str) -> Value {
    json!({
        "code": -32603,
        "message": format!(
            "the node that ran this task ({node}) stopped: session {session} is interrupted; continue it with agent_continue_session"
        ),
    })
}

fn too_large_error(session: Option<&str>) -> Value {
    let read = session.map_or_else(String::new, |s| {
        format!("; read session {s} with agent_get_session")
    });
    json!({
        "code": -32603,
        "message": format!("the task result exceeds {MAX_TASK_RESULT_BYTES} bytes and was not kept{read}"),
    })
}

/// The progress of a task's call, written to the store: the latest message (prefixed by the
/// agent session once known, so a task always names its session) and the session. Writes go
/// through one writer task, in order, the latest message replacing one not yet written.
struct TaskProgress {
    state: Mutex<ProgressState>,
    updates: Mutex<Option<tokio::sync::watch::Sender<(u64, String)>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct ProgressState {
    seq: u64,
    session: Option<String>,
}

impl TaskProgress {
    fn start(store: Arc<dyn TaskStore>, engine: Arc<Engine>, task_id: String) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel((0u64, String::new()));
        let writer = tokio::spawn(async move {
            let mut named = false;
            while rx.changed().await.is_ok() {
                let (_, message) = rx.borrow_and_update().clone();
                let session = if named { None } else { session_in(&message) };
                match store.update_task(&task_id, Some(&message), session).await {
                    Ok(Some(cancel_requested)) => {
                        if let Some(session) = session {
                            named = true;
                            // `tasks/cancel` came before the session was known: stop it now.
                            if cancel_requested
                                && let Err(e) = engine.request_cancel(session, TASK_CANCELLED).await
                            {
                                tracing::warn!(task_id, error = %e, "could not request the cancellation of a task's run");
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(task_id, error = %e, "could not record task progress"),
                }
            }
        });
        Self {
            state: Mutex::new(ProgressState::default()),
            updates: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Waits for the last write; answers the agent session the call named.
    async fn close(&self) -> Option<String> {
        if let Ok(mut updates) = self.updates.lock() {
            updates.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        self.state.lock().ok().and_then(|s| s.session.clone())
    }
}

impl ProgressSink for TaskProgress {
    fn report(&self, message: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.session.is_none() {
            state.session = session_in(message).map(str::to_owned);
        }
        let text = match state.session.as_deref() {
            Some(id) if !message.contains(id) => format!("{id}: {message}"),
            _ => message.to_owned(),
        };
        state.seq += 1;
        let seq = state.seq;
        if let Ok(updates) = self.updates.lock()
            && let Some(tx) = updates.as_ref()
        {
            let _ = tx.send((seq, text));
        }
    }
}

/// The key of a request in the registry: the client's transport session (from the request's
/// HTTP headers) and the JSON-RPC id (`n:<number>` or `s:<string>`). `None` without a
/// transport session (stdio, 2026-07-28 stateless requests) or when a part is too long.
pub fn request_key(parts: Option<&http::request::Parts>, id: &RequestId) -> Option<RequestKey> {
    let session = parts?.headers.get(SESSION_HEADER)?.to_str().ok()?;
    let id = match id {
        rmcp::model::NumberOrString::Number(n) => format!("n:{n}"),
        rmcp::model::NumberOrString::String(s) => format!("s:{s}"),
    };
    RequestKey::new(session, id)
}

/// A long-running call is written to the registry only once it has run this long: shorter
/// calls (most calls of a busy fleet) cost the store nothing. A `notifications/cancelled` that
/// reaches another node before the entry is written is retried there ([`CANCEL_RETRIES`]).
pub const REGISTER_AFTER: Duration = Duration::from_millis(200);

/// When a node that finds no registry entry for a cancelled request looks again: together
/// longer than [`REGISTER_AFTER`] plus the write, so a call that was too young to be
/// registered is found; a request that ended is simply not found again.
pub const CANCEL_RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

/// Where a call's registry entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Not written yet (the call is younger than [`REGISTER_AFTER`]).
    Pending,
    /// Being written.
    Writing,
    /// Written: the session can be named in it.
    Written,
    /// The call ended before its entry was written: it never will be.
    Never,
}

#[derive(Debug)]
struct Registration {
    entry: Entry,
    /// The agent session, once the engine reported it.
    session: Option<String>,
    /// Whether the session was (or is being) written to the entry.
    named: bool,
}

/// The registry entry of a long-running call (written once the call has run
/// [`REGISTER_AFTER`]): its session is named when both are known, and a cancellation recorded
/// before that is acted on then. Wraps the call's own progress sink.
pub(crate) struct RegisteredCall {
    inner: Arc<dyn ProgressSink>,
    key: RequestKey,
    store: Arc<dyn TaskStore>,
    engine: Arc<Engine>,
    state: Mutex<Registration>,
    /// The deferred write of the entry.
    writer: Mutex<Option<JoinHandle<()>>>,
    naming: Mutex<Option<JoinHandle<()>>>,
}

impl RegisteredCall {
    /// Starts the registration of `key`: written after [`REGISTER_AFTER`] unless the call has
    /// ended by then (a failed write is logged: the call then runs unregistered).
    pub(crate) fn register(
        store: Arc<dyn TaskStore>,
        engine: Arc<Engine>,
        key: RequestKey,
        inner: Arc<dyn ProgressSink>,
    ) -> Arc<Self> {
        let call = Arc::new(Self {
            inner,
            key,
            store,
            engine,
            state: Mutex::new(Registration {
                entry: Entry::Pending,
                session: None,
                named: false,
            }),
            writer: Mutex::new(None),
            naming: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&call);
            let writer = runtime.spawn(async move {
                tokio::time::sleep(REGISTER_AFTER).await;
                if let Some(call) = weak.upgrade() {
                    call.write_entry().await;
                }
            });
            if let Ok(mut slot) = call.writer.lock() {
                *slot = Some(writer);
            }
        }
        call
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Registration> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the entry (unless the call ended), then names the session if it is known.
    async fn write_entry(&self) {
        {
            let mut state = self.state();
            if state.entry != Entry::Pending {
                return;
            }
            state.entry = Entry::Writing;
        }
        if let Err(e) = self
            .store
            .register_request(&self.key, self.engine.node_id(), TASK_TTL)
            .await
        {
            tracing::warn!(error = %e, "could not register a request in flight: notifications/cancelled reaches it only on this node");
            return;
        }
        let session = {
            let mut state = self.state();
            state.entry = Entry::Written;
            if state.named {
                None
            } else {
                let session = state.session.clone();
                state.named = session.is_some();
                session
            }
        };
        if let Some(session) = session {
            name_session(&*self.store, &self.engine, &self.key, session).await;
        }
    }

    /// The call ended: no entry is ever written if none was yet; otherwise waits for the
    /// writes in flight and removes the entry.
    pub(crate) async fn finish(&self) {
        let written = {
            let mut state = self.state();
            if state.entry == Entry::Pending {
                state.entry = Entry::Never;
            }
            state.entry != Entry::Never
        };
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if written {
                let _ = writer.await;
            } else {
                writer.abort();
            }
        }
        if !written {
            return;
        }
        let naming = self.naming.lock().ok().and_then(|mut n| n.take());
        if let Some(naming) = naming {
            let _ = naming.await;
        }
        if let Err(e) = self.store.forget_request(&self.key).await {
            tracing::warn!(error = %e, "could not remove a finished request from the registry (it expires)");
        }
    }
}

/// Names `session` in the entry of `key`; a cancellation recorded before is passed on to the
/// session's holder.
async fn name_session(store: &dyn TaskStore, engine: &Engine, key: &RequestKey, session: String) {
    match store.name_request_session(key, &session).await {
        Ok(Some(reason)) => {
            if let Err(e) = engine.request_cancel(&session, &reason).await {
                tracing::warn!(session_id = %session, error = %e, "could not request the cancellation of a run");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(session_id = %session, error = %e, "could not name the session of a request in flight");
        }
    }
}

impl ProgressSink for RegisteredCall {
    fn report(&self, message: &str) {
        self.inner.report(message);
        let Some(session) = session_in(message) else {
            return;
        };
        // The entry is written: name the session now; not yet: the writer names it.
        let name_now = {
            let mut state = self.state();
            if state.session.is_some() {
                return;
            }
            state.session = Some(session.to_owned());
            let now = state.entry == Entry::Written && !state.named;
            if now {
                state.named = true;
            }
            now
        };
        if !name_now {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, engine, key, session) = (
            Arc::clone(&self.store),
            Arc::clone(&self.engine),
            self.key.clone(),
            session.to_owned(),
        );
        let handle = runtime.spawn(async move {
            name_session(&*store, &engine, &key, session).await;
        });
        if let Ok(mut naming) = self.naming.lock() {
            *naming = Some(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::error::ErrorCode;
    use agent_core::evidence::Evidence;
    use agent_core::{
        BackendOutput, BackendRequest, Capabilities, EngineConfig, ExecutionBackend,
        ExecutionError, PolicyViolation, RunTaskRequest, SessionStore, WorkspacePolicy,
    };
    use agent_testkit::store::MemStore;
    use agent_testkit::tasks::MemTaskStore;
    use std::path::{Path, PathBuf};

    /// A model call that only ends when cancelled.
    struct UntilCancelled;

    #[async_trait::async_trait]
    impl ExecutionBackend for UntilCancelled {
        fn name(&self) -> &'static str {
            "api"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }

        async fn execute(
            &self,
            _request: BackendRequest,
            ctx: &ExecContext,
        ) -> Result<BackendOutput, ExecutionError> {
            ctx.cancel.cancelled().await;
            Err(ExecutionError::cancelled())
        }
    }

    /// The working directory is the temporary directory; nothing else is allowed.
    struct TempDirOnly(PathBuf);

    impl WorkspacePolicy for TempDirOnly {
        fn cwd(&self) -> &Path {
            &self.0
        }

        fn resolve_working_directory(
            &self,
            _requested: Option<&str>,
        ) -> Result<PathBuf, PolicyViolation> {
            Ok(self.0.clone())
        }

        fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
            Err(PolicyViolation::new(ErrorCode::PolicyDenied, path))
        }

        fn path_exists(&self, _path: &str) -> bool {
            false
        }

        fn read_evidence(
            &self,
            _paths: &[String],
            _budget: usize,
        ) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
            Ok((Vec::new(), Vec::new()))
        }
    }

    fn engine() -> Arc<Engine> {
        Arc::new(Engine::new(
            Arc::new(MemStore::new()) as Arc<dyn SessionStore>,
            Arc::new(UntilCancelled),
            Arc::new(TempDirOnly(std::env::temp_dir())),
            EngineConfig::default(),
        ))
    }

    fn run_request() -> RunTaskRequest {
        let args = json!({"task": "t"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        match RunTaskRequest::from_args(&args) {
            Ok(req) => req,
            Err(env) => panic!("valid arguments: {}", env.to_value()),
        }
    }

    fn cancelled_with(envelope: &Value, reason: &str) {
        assert_eq!(
            envelope["errors"][0]["code"],
            json!(ErrorCode::SessionCancelled.as_str()),
            "{envelope}"
        );
        let message = envelope["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.ends_with(reason), "{message}");
    }

    /// Every method fails: the store is down.
    struct DownTaskStore;

    fn down() -> agent_core::StoreError {
        agent_core::StoreError::new("the task store is down")
    }

    #[async_trait::async_trait]
    impl TaskStore for DownTaskStore {
        async fn create_task(&self, _: &NewTask) -> Result<TaskRecord, agent_core::StoreError> {
            Err(down())
        }
        async fn get_task(&self, _: &str) -> Result<Option<TaskRecord>, agent_core::StoreError> {
            Err(down())
        }
        async fn update_task(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Option<bool>, agent_core::StoreError> {
            Err(down())
        }
        async fn settle_task(
            &self,
            _: &str,
            _: TaskState,
            _: Option<&Value>,
            _: Option<&str>,
        ) -> Result<bool, agent_core::StoreError> {
            Err(down())
        }
        async fn request_task_cancel(
            &self,
            _: &str,
        ) -> Result<Option<TaskRecord>, agent_core::StoreError> {
            Err(down())
        }
        async fn register_request(
            &self,
            _: &RequestKey,
            _: &str,
            _: Duration,
        ) -> Result<(), agent_core::StoreError> {
            Err(down())
        }
        async fn name_request_session(
            &self,
            _: &RequestKey,
            _: &str,
        ) -> Result<Option<String>, agent_core::StoreError> {
            Err(down())
        }
        async fn cancel_request(
            &self,
            _: &RequestKey,
            _: &str,
        ) -> Result<RequestCancel, agent_core::StoreError> {
            Err(down())
        }
        async fn forget_request(&self, _: &RequestKey) -> Result<(), agent_core::StoreError> {
            Err(down())
        }
        async fn purge_expired(&self, _: u32) -> Result<u64, agent_core::StoreError> {
            Err(down())
        }
    }

    /// A task store that fails never stops a run: a registered call and a task's progress
    /// log the failures, the run is cancelled by its own token as before, and nothing panics
    /// or hangs.
    #[tokio::test]
    async fn a_failing_task_store_never_stops_or_hangs_a_run() {
        let engine = engine();
        let store = Arc::new(DownTaskStore) as Arc<dyn TaskStore>;
        let registered = RegisteredCall::register(
            Arc::clone(&store),
            Arc::clone(&engine),
            RequestKey::new("transport-session", "n:1").unwrap(),
            Arc::new(agent_core::NoProgress),
        );
        let progress = Arc::new(TaskProgress::start(
            Arc::clone(&store),
            Arc::clone(&engine),
            "t".to_owned(),
        ));
        for sink in [
            Arc::clone(&registered) as Arc<dyn ProgressSink>,
            Arc::clone(&progress) as Arc<dyn ProgressSink>,
        ] {
            let cancel = CancellationToken::new();
            let ctx = ExecContext::new(cancel.clone(), sink);
            // Long enough for the registry entry to be written (and fail).
            let stop = tokio::spawn(async move {
                tokio::time::sleep(REGISTER_AFTER + Duration::from_millis(100)).await;
                cancel.cancel();
            });
            let envelope = tokio::time::timeout(
                Duration::from_secs(10),
                engine.run_task(run_request(), &ctx),
            )
            .await
            .expect("the run stops");
            cancelled_with(&envelope.to_value(), agent_core::engine::CLIENT_CANCELLED);
            stop.await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), registered.finish())
            .await
            .expect("finishes");
        let session = tokio::time::timeout(Duration::from_secs(5), progress.close())
            .await
            .expect("closes");
        assert!(session.is_some_and(|s| s.starts_with("sess_")));
    }

    /// `tasks/cancel` (through any node) before the run named its session: the owner sees the
    /// request when it names the session, and the run stops.
    #[tokio::test]
    async fn a_task_cancelled_before_its_session_is_named_stops_when_it_is() {
        let engine = engine();
        let tasks = Arc::new(MemTaskStore::new());
        let new = NewTask {
            task_id: "t".to_owned(),
            tool_name: "agent_run_task".to_owned(),
            owner_node: engine.node_id().to_owned(),
            status_message: None,
            ttl: TASK_TTL,
            poll_interval: None,
        };
        tasks.create_task(&new).await.unwrap();
        let recorded = tasks.request_task_cancel("t").await.unwrap().unwrap();
        assert!(recorded.cancel_requested);
        assert_eq!(recorded.session_id, None);
        let progress = Arc::new(TaskProgress::start(
            Arc::clone(&tasks) as Arc<dyn TaskStore>,
            Arc::clone(&engine),
            "t".to_owned(),
        ));
        let ctx = ExecContext::new(
            CancellationToken::new(),
            Arc::clone(&progress) as Arc<dyn ProgressSink>,
        );
        let envelope = tokio::time::timeout(
            Duration::from_secs(10),
            engine.run_task(run_request(), &ctx),
        )
        .await
        .expect("the run stops");
        cancelled_with(&envelope.to_value(), TASK_CANCELLED);
        let session = progress.close().await;
        assert_eq!(session.as_deref(), Some(envelope.session_id.as_str()));
        let task = tasks.get_task("t").await.unwrap().unwrap();
        assert_eq!(task.session_id, session);
        assert!(
            task.status_message
                .is_some_and(|m| m.contains(&envelope.session_id))
        );
    }

    /// `notifications/cancelled` (through any node) before the call named its session: the
    /// same, with the client's reason; the registry entry goes when the call ends.
    #[tokio::test]
    async fn a_request_cancelled_before_its_session_is_named_stops_when_it_is() {
        let engine = engine();
        let tasks = Arc::new(MemTaskStore::new());
        let key = RequestKey::new("transport-session", "n:2").unwrap();
        let registered = RegisteredCall::register(
            Arc::clone(&tasks) as Arc<dyn TaskStore>,
            Arc::clone(&engine),
            key.clone(),
            Arc::new(agent_core::NoProgress),
        );
        // The entry is written once the call has run `REGISTER_AFTER`.
        tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.row_counts().1 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the entry is written");
        assert_eq!(
            tasks
                .cancel_request(&key, "the user stopped it")
                .await
                .unwrap(),
            RequestCancel::Recorded { session_id: None }
        );
        let ctx = ExecContext::new(
            CancellationToken::new(),
            Arc::clone(&registered) as Arc<dyn ProgressSink>,
        );
        let envelope = tokio::time::timeout(
            Duration::from_secs(10),
            engine.run_task(run_request(), &ctx),
        )
        .await
        .expect("the run stops");
        cancelled_with(&envelope.to_value(), "the user stopped it");
        registered.finish().await;
        assert_eq!(tasks.row_counts(), (0, 0));
        assert_eq!(
            tasks.cancel_request(&key, "again").await.unwrap(),
            RequestCancel::NotFound
        );
    }

    /// Counts the registry writes of a [`MemTaskStore`].
    #[derive(Default)]
    struct Counting {
        store: MemTaskStore,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl Counting {
        fn writes(&self) -> usize {
            self.writes.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn count(&self) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl TaskStore for Counting {
        async fn create_task(&self, t: &NewTask) -> Result<TaskRecord, agent_core::StoreError> {
            self.store.create_task(t).await
        }
        async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, agent_core::StoreError> {
            self.store.get_task(id).await
        }
        async fn update_task(
            &self,
            id: &str,
            m: Option<&str>,
            s: Option<&str>,
        ) -> Result<Option<bool>, agent_core::StoreError> {
            self.store.update_task(id, m, s).await
        }
        async fn settle_task(
            &self,
            id: &str,
            st: TaskState,
            r: Option<&Value>,
            m: Option<&str>,
        ) -> Result<bool, agent_core::StoreError> {
            self.store.settle_task(id, st, r, m).await
        }
        async fn request_task_cancel(
            &self,
            id: &str,
        ) -> Result<Option<TaskRecord>, agent_core::StoreError> {
            self.store.request_task_cancel(id).await
        }
        async fn register_request(
            &self,
            k: &RequestKey,
            n: &str,
            ttl: Duration,
        ) -> Result<(), agent_core::StoreError> {
            self.count();
            self.store.register_request(k, n, ttl).await
        }
        async fn name_request_session(
            &self,
            k: &RequestKey,
            s: &str,
        ) -> Result<Option<String>, agent_core::StoreError> {
            self.count();
            self.store.name_request_session(k, s).await
        }
        async fn cancel_request(
            &self,
            k: &RequestKey,
            r: &str,
        ) -> Result<RequestCancel, agent_core::StoreError> {
            self.store.cancel_request(k, r).await
        }
        async fn forget_request(&self, k: &RequestKey) -> Result<(), agent_core::StoreError> {
            self.count();
            self.store.forget_request(k).await
        }
        async fn purge_expired(&self, limit: u32) -> Result<u64, agent_core::StoreError> {
            self.store.purge_expired(limit).await
        }
    }

    /// A call that ends within `REGISTER_AFTER` never touches the registry; a longer one
    /// registers, names its session and is forgotten: three writes.
    #[tokio::test]
    async fn only_calls_that_outlast_the_delay_are_registered() {
        let engine = engine();
        for (runs_for, writes) in [
            (Duration::from_millis(20), 0),
            (REGISTER_AFTER + Duration::from_millis(150), 3),
        ] {
            let tasks = Arc::new(Counting::default());
            let registered = RegisteredCall::register(
                Arc::clone(&tasks) as Arc<dyn TaskStore>,
                Arc::clone(&engine),
                RequestKey::new("transport-session", "n:3").unwrap(),
                Arc::new(agent_core::NoProgress),
            );
            let cancel = CancellationToken::new();
            let ctx = ExecContext::new(
                cancel.clone(),
                Arc::clone(&registered) as Arc<dyn ProgressSink>,
            );
            let stop = tokio::spawn(async move {
                tokio::time::sleep(runs_for).await;
                cancel.cancel();
            });
            let envelope = engine.run_task(run_request(), &ctx).await;
            cancelled_with(&envelope.to_value(), agent_core::engine::CLIENT_CANCELLED);
            registered.finish().await;
            stop.await.unwrap();
            assert_eq!(tasks.writes(), writes, "a call of {runs_for:?}");
            assert_eq!(tasks.store.row_counts(), (0, 0));
        }
    }

    #[test]
    fn the_session_is_the_first_sess_word() {
        assert_eq!(session_in("session sess_0123 created"), Some("sess_0123"));
        assert_eq!(
            session_in("verification session sess_ab12 created"),
            Some("sess_ab12")
        );
        assert_eq!(session_in("sess_ab12: model turn 1"), Some("sess_ab12"));
        assert_eq!(session_in("model turn 1 of 1"), None);
    }

    #[test]
    fn request_keys_come_from_the_transport_session_and_the_id() {
        let parts = |session: Option<&str>| {
            let mut builder = http::Request::builder();
            if let Some(s) = session {
                builder = builder.header(SESSION_HEADER, s);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let with = parts(Some("abc"));
        assert_eq!(
            request_key(Some(&with), &RequestId::Number(7)),
            RequestKey::new("abc", "n:7")
        );
        assert_eq!(
            request_key(Some(&with), &RequestId::String("7".into())),
            RequestKey::new("abc", "s:7")
        );
        assert_eq!(request_key(Some(&parts(None)), &RequestId::Number(7)), None);
        assert_eq!(request_key(None, &RequestId::Number(7)), None);
        let long = RequestId::String("x".repeat(1000).into());
        assert_eq!(request_key(Some(&with), &long), None);
    }

    #[test]
    fn a_cancelled_run_settles_cancelled_only_when_cancel_was_requested() {
        let cancelled = CallToolResult::structured(
            json!({"ok": false, "errors": [{"code": "session_cancelled", "message": "m"}]}),
        );
        let done = CallToolResult::structured(json!({"ok": true}));
        assert_eq!(settled(&cancelled, true), (TaskState::Cancelled, None));
        // Cancelled by agent_cancel_session, not tasks/cancel: the task completes with the
        // error envelope.
        assert_eq!(settled(&cancelled, false).0, TaskState::Completed);
        // The run finished before the cancellation reached it: completed.
        let (state, value) = settled(&done, true);
        assert_eq!(state, TaskState::Completed);
        assert_eq!(value.unwrap()["structuredContent"], json!({"ok": true}));
    }
}
