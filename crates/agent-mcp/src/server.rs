//! The MCP server: tool publication, admission, the schema layer and dispatch to the engine.
//!
//! Every `tools/call` that reaches a handler answers with one `text` item holding the result
//! JSON and the same value as `structuredContent`, `isError: false` — even when the JSON
//! describes an error. Only the schema layer answers `isError: true`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_core::TaskStore;
use agent_core::error::{ErrorCode, ErrorObject};
use agent_core::pyfmt;
use agent_core::request::{WAIT_SECONDS, core_verdict_result};
use agent_core::{
    CancelSessionRequest, ContinueSessionRequest, Engine, Envelope, ExecContext,
    ForkSessionRequest, GetSessionRequest, ListSessionsRequest, Profile, ProgressSink,
    RunTaskRequest, Timestamp, VerifyTaskRequest, WaitSessionRequest, Workflow,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::model::{CancelTaskParams, CancelledNotificationParam, GetTaskParams, GetTaskResult};
use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse,
    ListPromptsResult,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::prompts::{self, PromptDef};
use crate::resources;
use crate::status::RuntimeStatus;
use crate::tasks::RegisteredCall;
use crate::tools::ToolName;
use crate::validate::{INPUT_VALIDATION_PREFIX, validate_arguments};

/// The MCP face of an [`Engine`]. Cheap to clone: one per HTTP session shares everything.
#[derive(Clone)]
pub struct AgentServer {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    /// MCP tasks (SEP-2663) for clients that declare the tasks extension, and the requests in
    /// flight: in the store, shared by every node (`crate::tasks`).
    tasks: Arc<dyn TaskStore>,
    status: RuntimeStatus,
    tools: Vec<Tool>,
    /// The prompts whose tools are published (`crate::prompts`).
    prompts: Vec<&'static PromptDef>,
    admitted_message_list: String,
}

impl AgentServer {
    /// A server publishing `admitted` tools (in their publication order), keeping MCP task
    /// state in `tasks` (the session store's database, so that every node serves it).
    pub fn new(
        engine: Arc<Engine>,
        tasks: Arc<dyn TaskStore>,
        status: RuntimeStatus,
        admitted: Vec<ToolName>,
    ) -> Self {
        let tools = admitted.iter().map(|t| t.definition()).collect();
        let prompts = prompts::offered(&admitted);
        let mut names: Vec<&str> = admitted.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        let admitted_message_list = pyfmt::list(names);
        Self {
            inner: Arc::new(Inner {
                engine,
                tasks,
                status,
                tools,
                prompts,
                admitted_message_list,
            }),
        }
    }

    /// Standard mode: all nine tools (`docs/reference/tools.md#2-published-tools`).
    pub fn standard(engine: Arc<Engine>, tasks: Arc<dyn TaskStore>, status: RuntimeStatus) -> Self {
        Self::new(engine, tasks, status, ToolName::ALL.to_vec())
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    pub fn task_store(&self) -> &Arc<dyn TaskStore> {
        &self.inner.tasks
    }

    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    /// Runs one tool call: admission, schema layer, handler. Public so that embedders and
    /// benchmarks can drive the exact MCP behaviour without a transport.
    pub async fn call(
        &self,
        name: &str,
        arguments: JsonObject,
        ctx: ExecContext,
    ) -> CallToolResult {
        self.call_with(name, arguments, ctx, Background::Allowed)
            .await
    }

    /// [`call`](Self::call); a call run as an MCP task passes [`Background::Ignored`]: the
    /// task is already the background form, so `wait_seconds` is validated and not applied.
    pub(crate) async fn call_with(
        &self,
        name: &str,
        arguments: JsonObject,
        ctx: ExecContext,
        background: Background,
    ) -> CallToolResult {
        // The published definition says the tool is admitted and holds its schema.
        let admitted = ToolName::parse(name).zip(self.inner.tools.iter().find(|t| t.name == name));
        let Some((tool, definition)) = admitted else {
            let message = format!(
                "Tool '{name}' is not admitted in the current runtime mode. Admitted tools: {}",
                self.inner.admitted_message_list
            );
            return structured(
                ErrorObject::bare(ErrorCode::ToolNotAdmitted, message).into_error_result(),
            );
        };
        if let Err(message) = validate_arguments(&arguments, &definition.input_schema) {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "{INPUT_VALIDATION_PREFIX}{message}"
            ))]);
        }
        let engine = &self.inner.engine;
        let value = match tool {
            ToolName::RunTask => match RunTaskRequest::from_args(&arguments) {
                Ok(req) => {
                    if req.wait.is_some() && !self.waiting_admitted() {
                        let env = Envelope::error(
                            "",
                            Workflow::RunTask,
                            req.profile.as_str(),
                            refused(tool),
                        );
                        return structured(env.to_value());
                    }
                    let wait = background.wait(req.wait);
                    let run = Arc::clone(engine);
                    run_workflow(engine, Workflow::RunTask, wait, ctx, move |ctx| {
                        Box::pin(async move { run.run_task(req, &ctx).await.to_value() })
                    })
                    .await
                }
                Err(env) => env.to_value(),
            },
            ToolName::ContinueSession => match ContinueSessionRequest::from_args(&arguments) {
                Ok(req) => {
                    if req.wait.is_some() && !self.waiting_admitted() {
                        let env = Envelope::error(
                            req.session_id,
                            Workflow::ContinueSession,
                            Profile::General.as_str(),
                            refused(tool),
                        );
                        return structured(env.to_value());
                    }
                    let wait = background.wait(req.wait);
                    let run = Arc::clone(engine);
                    run_workflow(engine, Workflow::ContinueSession, wait, ctx, move |ctx| {
                        Box::pin(async move { run.continue_session(req, &ctx).await.to_value() })
                    })
                    .await
                }
                Err(env) => env.to_value(),
            },
            ToolName::VerifyTask => match VerifyTaskRequest::from_args(&arguments) {
                Ok(req) => {
                    if req.wait.is_some() && !self.waiting_admitted() {
                        let env = Envelope::error(
                            "",
                            Workflow::VerifyTask,
                            Profile::Verification.as_str(),
                            refused(tool),
                        );
                        return structured(env.with_result(core_verdict_result()).to_value());
                    }
                    let wait = background.wait(req.wait);
                    let run = Arc::clone(engine);
                    run_workflow(engine, Workflow::VerifyTask, wait, ctx, move |ctx| {
                        Box::pin(async move { run.verify_task(req, &ctx).await.to_value() })
                    })
                    .await
                }
                Err(env) => env.to_value(),
            },
            ToolName::ForkSession => match ForkSessionRequest::from_args(&arguments) {
                Ok(req) => {
                    if req.wait().is_some() && !self.waiting_admitted() {
                        let env = Envelope::error(
                            req.session_id,
                            Workflow::ForkSession,
                            Profile::General.as_str(),
                            refused(tool),
                        );
                        return structured(env.to_value());
                    }
                    let wait = background.wait(req.wait());
                    let run = Arc::clone(engine);
                    run_workflow(engine, Workflow::ForkSession, wait, ctx, move |ctx| {
                        Box::pin(async move { run.fork_session(req, &ctx).await.to_value() })
                    })
                    .await
                }
                Err(env) => env.to_value(),
            },
            ToolName::WaitSession => match WaitSessionRequest::from_args(&arguments) {
                Ok(req) => match engine.wait_session(&req, &ctx).await {
                    Ok(value) => value,
                    Err(e) => e.into_error_result(),
                },
                Err(err) => err,
            },
            ToolName::GetSession => match GetSessionRequest::from_args(&arguments) {
                Ok(req) => match engine.get_session(&req).await {
                    Ok(view) => serde_json::to_value(view).unwrap_or(Value::Null),
                    Err(e) => e.into_error_result(),
                },
                Err(err) => err,
            },
            ToolName::ListSessions => match ListSessionsRequest::from_args(&arguments) {
                Ok(req) => match engine.list_sessions(&req).await {
                    Ok(sessions) => json!({ "sessions": sessions }),
                    Err(e) => e.into_error_result(),
                },
                Err(err) => err,
            },
            ToolName::CancelSession => match CancelSessionRequest::from_args(&arguments) {
                Ok(req) => engine.cancel_session(&req.session_id).await.to_value(),
                Err(env) => env.to_value(),
            },
            ToolName::GetRuntimeStatus => {
                let mut status = self.inner.status.clone();
                status.resolved_at = Timestamp::now().to_storage();
                serde_json::to_value(status).unwrap_or(Value::Null)
            }
        };
        structured(value)
    }
}

impl AgentServer {
    /// Whether `agent_wait_session` is published: `wait_seconds` is accepted only then, as a
    /// run left running could not be collected otherwise.
    fn waiting_admitted(&self) -> bool {
        self.inner
            .tools
            .iter()
            .any(|t| t.name == ToolName::WaitSession.as_str())
    }
}

/// Whether a call may answer before its work is done (`wait_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Background {
    Allowed,
    /// A call run as an MCP task: it always runs to the end.
    Ignored,
}

impl Background {
    fn wait(self, wait: Option<Duration>) -> Option<Duration> {
        match self {
            Background::Allowed => wait,
            Background::Ignored => None,
        }
    }
}

/// The handler-layer error of `wait_seconds` where `agent_wait_session` is not published.
fn refused(tool: ToolName) -> ErrorObject {
    let tool = tool.as_str();
    let wait_tool = ToolName::WaitSession.as_str();
    ErrorObject::validation(format!(
        "Invalid {tool} request: {WAIT_SECONDS}: not accepted in this runtime mode ({wait_tool} is not published)"
    ))
}

/// Runs a workflow detached from the request ([`detached`]). With `wait`, the call answers when
/// the work is done or, once `wait` has passed and the session is named, with the running
/// envelope while the work goes on (`docs/reference/tools.md#15-background-runs`). Until the
/// call answers, a cancellation of the request cancels the work; after, only
/// `agent_cancel_session` (or `tasks/cancel`) does, and the work reports progress to no one.
async fn run_workflow(
    engine: &Engine,
    workflow: Workflow,
    wait: Option<Duration>,
    ctx: ExecContext,
    start: impl FnOnce(ExecContext) -> Pin<Box<dyn Future<Output = Value> + Send>>,
) -> Value {
    let Some(wait) = wait else {
        return detached(start(ctx)).await;
    };
    let (named_tx, mut named) = tokio::sync::watch::channel(None::<String>);
    let sink = Arc::new(Naming {
        inner: Arc::clone(&ctx.progress),
        named: named_tx,
        answered: AtomicBool::new(false),
    });
    let run_cancel = CancellationToken::new();
    let run_ctx = ExecContext::new(
        run_cancel.clone(),
        Arc::clone(&sink) as Arc<dyn ProgressSink>,
    );
    // The work keeps the request's span as its parent (`docs/observability.md#traces`).
    let mut run = tokio::spawn(start(run_ctx).in_current_span());
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let (mut waited, mut naming) = (false, true);
    loop {
        if waited && !run_cancel.is_cancelled() {
            let session = named.borrow().clone();
            if let Some(session) = session {
                if run.is_finished() {
                    // Done just now: its envelope, rather than `running`.
                    return joined_value(run.await);
                }
                sink.answered.store(true, Ordering::Release);
                return engine.running_envelope(&session, workflow).await.to_value();
            }
        }
        tokio::select! {
            joined = &mut run => return joined_value(joined),
            () = ctx.cancel.cancelled(), if !run_cancel.is_cancelled() => run_cancel.cancel(),
            () = &mut deadline, if !waited => waited = true,
            changed = named.changed(), if waited && naming => naming = changed.is_ok(),
        }
    }
}

/// A spawned workflow's value, or `internal_error` when it panicked.
fn joined_value(joined: Result<Value, tokio::task::JoinError>) -> Value {
    match joined {
        Ok(value) => value,
        Err(e) => {
            let message = format!("internal error: {e}");
            ErrorObject::bare(ErrorCode::InternalError, message).into_error_result()
        }
    }
}

/// The progress sink of a call with `wait_seconds`: passes reports on to the call's own sink
/// until the call answered, and tells the call the session once a report names it.
struct Naming {
    inner: Arc<dyn ProgressSink>,
    named: tokio::sync::watch::Sender<Option<String>>,
    answered: AtomicBool,
}

impl ProgressSink for Naming {
    fn report(&self, message: &str) {
        if self.answered.load(Ordering::Acquire) {
            return;
        }
        self.inner.report(message);
        if self.named.borrow().is_none()
            && let Some(session) = crate::tasks::session_in(message)
        {
            let _ = self.named.send(Some(session.to_owned()));
        }
    }
}

/// Whether the client declared the tasks extension (at initialize, or per request). A
/// transport session taken up from another node declares it only so that `tasks/get` and
/// `tasks/cancel` pass rmcp's check there; a call through such a session is answered directly,
/// as the node does not know what the client declared (`docs/scaling.md`).
fn client_supports_tasks(context: &RequestContext<RoleServer>) -> bool {
    context
        .meta
        .client_capabilities()
        .is_some_and(|c| c.supports_tasks())
        || context.peer.peer_info().is_some_and(|info| {
            info.capabilities.supports_tasks()
                && info.client_info.name != crate::transport::TAKEN_UP_CLIENT
        })
}

/// Runs a workflow on its own task, so that a dropped request (client gone, connection closed)
/// cannot stop it halfway and leave a session `running` with its lock held.
///
/// The workflow arrives boxed: a workflow's state machine is several kilobytes, and unboxed it
/// would be part of every request future that rmcp spawns and moves, `ping` included.
async fn detached(work: Pin<Box<dyn Future<Output = Value> + Send>>) -> Value {
    joined_value(tokio::spawn(work.in_current_span()).await)
}

/// `CallToolResult::structured`, with the text written by `serde_json::to_string` (straight
/// into a buffer) rather than through `Display` (a `fmt::Write` adapter, per fragment): the
/// same bytes for less work on every response.
fn structured(value: Value) -> CallToolResult {
    let text = serde_json::to_string(&value).unwrap_or_else(|_| value.to_string());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// Sends `notifications/progress` for a request that carried a progress token, in order and
/// all before the response.
///
/// Reports go into a queue; a drain task is started when the queue gets its first entry and
/// ends when it is empty. So a run that waits seconds for the model holds no task and no
/// channel, only the empty queue.
struct McpProgress {
    shared: Arc<ProgressShared>,
}

struct ProgressShared {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    state: std::sync::Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    step: u64,
    /// Step numbers and messages not yet sent, oldest first.
    queue: std::collections::VecDeque<(u64, Box<str>)>,
    /// The drain task, while one runs; it clears this itself when the queue is empty.
    drain: Option<tokio::task::JoinHandle<()>>,
    /// Set by [`McpProgress::close`]: later reports are dropped.
    closed: bool,
}

impl McpProgress {
    fn start(peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        Self {
            shared: Arc::new(ProgressShared {
                peer,
                token,
                state: std::sync::Mutex::new(ProgressState::default()),
            }),
        }
    }

    /// Stops taking reports and waits until every queued one was sent.
    async fn close(&self) {
        let drain = match self.shared.state.lock() {
            Ok(mut state) => {
                state.closed = true;
                state.drain.take()
            }
            Err(_) => None,
        };
        if let Some(drain) = drain {
            let _ = drain.await;
        }
        // Reports made where no runtime was at hand queued without a drain task.
        Arc::clone(&self.shared).drain().await;
    }
}

impl ProgressShared {
    async fn drain(self: Arc<Self>) {
        loop {
            let next = match self.state.lock() {
                Ok(mut state) => {
                    let next = state.queue.pop_front();
                    if next.is_none() {
                        state.drain = None;
                    }
                    next
                }
                Err(_) => None,
            };
            let Some((step, message)) = next else { return };
            let param = ProgressNotificationParam::new(self.token.clone(), step as f64)
                .with_message(message);
            if let Err(e) = self.peer.notify_progress(param).await {
                tracing::debug!(error = %e, "progress notification not delivered");
            }
        }
    }
}

impl ProgressSink for McpProgress {
    fn report(&self, message: &str) {
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        if state.closed {
            return;
        }
        // Numbered and queued under the lock, so the queue order is the numbering order.
        state.step += 1;
        let step = state.step;
        state.queue.push_back((step, message.into()));
        if state.drain.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.drain = Some(runtime.spawn(Arc::clone(&self.shared).drain()));
        }
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            agent_core::SERVER_NAME,
            agent_core::VERSION,
        ))
        .with_instructions(
            "Durable, policy-bounded Claude agent sessions. Start with agent_run_task, then \
                 agent_continue_session with the returned session_id; agent_verify_task returns a \
                 fail-closed verdict.",
        )
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let offset = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => resources::parse_cursor(&cursor)?,
        };
        let (sessions, more) = self
            .inner
            .engine
            .sessions_page(offset, resources::PAGE_SIZE)
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        let mut result = ListResourcesResult::with_all_items(
            sessions.iter().map(resources::session_resource).collect(),
        );
        result.next_cursor = resources::next_cursor(offset, more);
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&self.inner.engine, &request.uri)
            .await
            .map(Into::into)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let long_running = matches!(
            ToolName::parse(&request.name),
            Some(
                ToolName::RunTask
                    | ToolName::ContinueSession
                    | ToolName::VerifyTask
                    | ToolName::ForkSession
            )
        );
        if long_running && client_supports_tasks(&context) {
            let task = self
                .spawn_task(request.name.into_owned(), arguments)
                .await?;
            return Ok(CallToolResponse::Task(rmcp::model::CreateTaskResult::new(
                task,
            )));
        }
        // A long-running call from a client with a transport session is registered (once it
        // has run `REGISTER_AFTER`), so that its `notifications/cancelled` reaches it through
        // any node.
        let key = if long_running {
            let parts = context.extensions.get::<http::request::Parts>();
            crate::tasks::request_key(parts, &context.id)
        } else {
            None
        };
        let token = context.meta.get_progress_token();
        // Every progress notification is sent, in order, before the response.
        let progress = token.map(|token| Arc::new(McpProgress::start(context.peer.clone(), token)));
        let sink: Arc<dyn ProgressSink> = match &progress {
            Some(p) => Arc::clone(p) as Arc<dyn ProgressSink>,
            None => Arc::new(agent_core::NoProgress),
        };
        let (registered, sink) = match key {
            Some(key) => {
                let registered = RegisteredCall::register(
                    Arc::clone(&self.inner.tasks),
                    Arc::clone(&self.inner.engine),
                    key,
                    sink,
                );
                let sink = Arc::clone(&registered) as Arc<dyn ProgressSink>;
                (Some(registered), sink)
            }
            None => (None, sink),
        };
        let ctx = ExecContext::new(context.ct.clone(), sink);
        let result = self.call(&request.name, arguments, ctx).await;
        if let Some(registered) = registered {
            registered.finish().await;
        }
        if let Some(progress) = progress {
            progress.close().await;
        }
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(
            self.inner
                .prompts
                .iter()
                .map(|p| prompts::listed(p))
                .collect(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        prompts::get(
            &self.inner.prompts,
            &request.name,
            request.arguments.as_ref(),
        )
        .map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        prompts::complete(&self.inner.engine, &self.inner.prompts, &request).await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        // rmcp has already cancelled the request if this node runs it; another node's run is
        // found through the registry.
        let Some(id) = &notification.request_id else {
            return;
        };
        let parts = context.extensions.get::<http::request::Parts>();
        if let Some(key) = crate::tasks::request_key(parts, id) {
            self.cancel_request_anywhere(&key).await;
        }
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.read_task(&request.task_id)
            .await
            .map(GetTaskResult::new)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancel_task_anywhere(&request.task_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_results_equal_rmcp_s_own() {
        for value in [
            json!({"ok": true, "summary": "a \"quoted\" line\nand a tab\t, é, 🦀, \u{0001}"}),
            json!({"error": {"code": "session_not_found", "message": "Session not found: x"}}),
            json!({"sessions": [], "n": 1.5, "big": 18_446_744_073_709_551_615u64}),
            json!(null),
        ] {
            assert_eq!(structured(value.clone()), CallToolResult::structured(value));
        }
    }
}
