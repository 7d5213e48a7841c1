//! The workflow engine: one owner for what happens on run, continue and verify.
//!
//! The engine checks policy, creates and locks sessions, writes the event log, routes tools,
//! calls the execution backend, stores artifacts and builds the envelope. It never holds a
//! database transaction across a backend call: every store call is a short, committed write.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::continuation::{self, MediationInclusion, WindowPolicy};
use crate::envelope::{ArtifactRef, Envelope, EnvelopeStatus};
use crate::error::{ErrorCode, ErrorObject};
use crate::event::{Event, EventType, StoredEvent};
use crate::evidence::{self, Evidence};
use crate::ids;
use crate::model::{Profile, SessionStatus, Workflow};
use crate::observe::{NoObserver, Observer, RunOutcome, RunReport, ToolKind, trace};
use crate::ports::{
    ArtifactRecord, BackendOutput, BackendRequest, BackendStep, ChatMessage, ChatRole, ExecContext,
    ExecutionBackend, ExecutionError, FailureKind, Finish, ForkOutcome, ForkSession, Lease,
    LockOutcome, MAX_KEPT_RESULT_BYTES, MediationRequest, NewArtifact, NewSession, OutputMediator,
    PolicyViolation, SessionListItem, SessionRecord, SessionStore, StepSink, StoreError,
    ToolCallContext, ToolDefinition, ToolExecutor, ToolProvider, Usage, WorkspacePolicy,
};
use crate::preflight::{ReasonCode, preflight};
use crate::request::{
    ContinueSessionRequest, ForkSessionRequest, GetSessionRequest, ListSessionsRequest,
    RunTaskRequest, SpendRequest, VerifyTaskRequest, WaitSessionRequest,
};
use crate::spend::{CallSettings, SpendPolicy, SpendRefusal};
use crate::text::{summarize_output, truncate_chars};
use crate::time::Timestamp;
use crate::verdict::parse_verdict;
use crate::verification::{self, FailureCode, Unavailability, VerificationResult};

/// The most event history (payload JSON bytes) one fork copies: a fork of a longer session is
/// refused (`docs/reference/tools.md#17-agent_fork_session`).
pub const MAX_FORK_HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// The largest tool-loop transcript kept for continuations (`provider_transcript`, as JSON); a
/// larger one is replayed as the final answer's text only.
pub const MAX_TRANSCRIPT_BYTES: usize = 1024 * 1024;

/// Outputs at least this many code points long are stored as an `output` artifact.
const OUTPUT_ARTIFACT_MIN_CHARS: usize = 50;

/// The final write of an execution is retried after each of these delays before the session
/// is marked `interrupted` instead.
pub const FINAL_WRITE_RETRY_DELAYS: [Duration; 2] =
    [Duration::from_millis(50), Duration::from_millis(250)];

/// Engine settings that come from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Session lock lease (`CLAUDE_AGENT_MCP_LOCK_TTL`).
    pub lock_ttl: Duration,
    /// The most conversation history replayed on a continuation, in characters (about four
    /// per token); the oldest exchanges are dropped first.
    pub history_budget_chars: usize,
    /// Restricted verification (`apntalk_verification` mode): execution-oriented verification
    /// requests are blocked before any session exists.
    pub restricted_verification: bool,
    /// The most evidence and attachment content given to the model, in bytes, in total
    /// (`CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES`).
    pub max_evidence_bytes: usize,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_LIMITED_TOOL_FORWARDING`: federated tools are described to
    /// a backend without native tools (`docs/reference/backends.md#55-limited-tool-forwarding`).
    pub limited_tool_forwarding: bool,
    /// The continuation window for backends that take a structured context
    /// (`docs/reference/backends.md#56-continuation-context`).
    pub continuation_window: WindowPolicy,
    /// Which mediated results continuation contexts carry.
    pub mediation_inclusion: MediationInclusion,
    /// Budget caps per profile, the model allowlist and the prices
    /// (`docs/reference/tools.md#18-budgets-and-models`).
    pub spend: SpendPolicy,
    /// `CLAUDE_AGENT_MCP_OTEL_RECORD_CONTENT`: the task and the output text are recorded on
    /// the `invoke_agent` span (`docs/observability.md#traces`). Off by default: no prompt
    /// or output text is ever put on a span otherwise.
    pub record_content: bool,
}

/// 256 KiB of evidence.
pub const DEFAULT_MAX_EVIDENCE_BYTES: usize = 256 * 1024;

/// About 100k tokens of history.
pub const DEFAULT_HISTORY_BUDGET_CHARS: usize = 400_000;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::from_secs(300),
            history_budget_chars: DEFAULT_HISTORY_BUDGET_CHARS,
            restricted_verification: false,
            max_evidence_bytes: DEFAULT_MAX_EVIDENCE_BYTES,
            limited_tool_forwarding: false,
            continuation_window: WindowPolicy::default(),
            mediation_inclusion: MediationInclusion::default(),
            spend: SpendPolicy::default(),
            record_content: false,
        }
    }
}

/// The `agent_get_session` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub status: SessionStatus,
    pub created_at: String,
    pub updated_at: String,
    pub last_activity_at: String,
    pub summary_latest: Option<String>,
    pub artifact_count: i64,
    pub turn_count: i64,
    pub request_count: i64,
    pub working_directory: Option<String>,
    /// The session this one is a fork of (`agent_fork_session`); `null` for a session that is
    /// not a fork (an addition).
    pub parent_session_id: Option<String>,
    /// The parent's turn the fork was made at; `null` for a session that is not a fork.
    pub forked_at_turn: Option<i64>,
    /// Usage and cost of the session's finished executions, summed (an addition,
    /// `docs/reference/tools.md#18-budgets-and-models`).
    pub usage: Usage,
}

impl From<&SessionRecord> for SessionView {
    fn from(r: &SessionRecord) -> Self {
        Self {
            session_id: r.session_id.clone(),
            workflow: r.workflow,
            profile: r.profile,
            status: r.status,
            created_at: r.created_at.to_api(),
            updated_at: r.updated_at.to_api(),
            last_activity_at: r.last_activity_at.to_api(),
            summary_latest: r.summary_latest.clone(),
            artifact_count: r.artifact_count,
            turn_count: r.turn_count,
            request_count: r.request_count,
            working_directory: r.working_directory.clone(),
            parent_session_id: r.fork.as_ref().map(|f| f.parent_session_id.clone()),
            forked_at_turn: r.fork.as_ref().map(|f| f.at_turn),
            usage: r.usage.clone(),
        }
    }
}

/// One entry of `agent_list_sessions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionListEntry {
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub status: SessionStatus,
    pub updated_at: String,
    pub summary_latest: Option<String>,
}

impl From<SessionListItem> for SessionListEntry {
    fn from(i: SessionListItem) -> Self {
        Self {
            session_id: i.session_id,
            workflow: i.workflow,
            profile: i.profile,
            status: i.status,
            updated_at: i.updated_at.to_api(),
            summary_latest: i.summary_latest,
        }
    }
}

/// Runs, continues and verifies tasks against the ports it was built with.
pub struct Engine {
    store: Arc<dyn SessionStore>,
    backend: Arc<dyn ExecutionBackend>,
    policy: Arc<dyn WorkspacePolicy>,
    tool_providers: Vec<Arc<dyn ToolProvider>>,
    mediator: Option<Arc<dyn OutputMediator>>,
    config: EngineConfig,
    /// Executions in flight in this process, by session: how `agent_cancel_session` reaches
    /// a run started by another request or connection.
    running: std::sync::Mutex<HashMap<String, InFlight>>,
    /// This process's node id (`ids::new_node_id`), carried by every lock owner token.
    node_id: String,
    /// Woken when this process keeps a result: its waiters need not wait for their next read
    /// of the store (which is what reaches results kept by other processes).
    results: tokio::sync::Notify,
    /// The result an execution's final write kept ([`Finish::result`]), by session, until its
    /// call has its envelope: when the two are the same, nothing more is written.
    kept: std::sync::Mutex<HashMap<String, String>>,
    /// Told about runs, model turns, tool calls, cancellations, sweeps and store errors
    /// ([`Observer`]); [`NoObserver`] unless [`with_observer`](Self::with_observer) sets one.
    observer: Arc<dyn Observer>,
}

/// How often an execution checks the store for a cancel request made by another process
/// ([`SessionStore::cancel_requested`]): a cancel through any node stops the run within it.
pub const CANCEL_POLL_PERIOD: Duration = Duration::from_millis(250);

/// How often `agent_wait_session` reads the session it waits for.
pub const WAIT_POLL_PERIOD: Duration = Duration::from_millis(250);

/// How often `agent_wait_session` reports that the session is still running.
pub const WAIT_PROGRESS_PERIOD: Duration = Duration::from_secs(5);

/// How long `agent_cancel_session` waits for the cancelled run to record its end.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// An execution in flight: its cancellation token and, once cancelled, why.
struct InFlight {
    cancel: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<String>>>,
}

/// How often a long backend call reports that it is still working.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The reason recorded when the MCP client cancels its own request.
pub const CLIENT_CANCELLED: &str = "the client cancelled the request (notifications/cancelled)";

/// The reason recorded when an execution is stopped because it lost its lease.
const LEASE_LOST: &str = "lease lost";

/// The error of an execution stopped because it lost its lease; `why` says how.
fn lease_lost(session_id: &str, why: &str) -> ExecutionError {
    ExecutionError::new(
        ErrorCode::ProviderRuntimeError,
        format!("Session {session_id} lost its lease ({why}): the execution was stopped"),
    )
    .with_kind(FailureKind::LeaseLost)
}

/// What a successful execution produced, before the envelope is built.
struct Completed {
    output: BackendOutput,
    artifacts: Vec<ArtifactRef>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn SessionStore>,
        backend: Arc<dyn ExecutionBackend>,
        policy: Arc<dyn WorkspacePolicy>,
        config: EngineConfig,
    ) -> Self {
        Self {
            store,
            backend,
            policy,
            tool_providers: Vec::new(),
            mediator: None,
            config,
            running: std::sync::Mutex::new(HashMap::new()),
            node_id: ids::new_node_id(),
            results: tokio::sync::Notify::new(),
            kept: std::sync::Mutex::new(HashMap::new()),
            observer: Arc::new(NoObserver),
        }
    }

    /// Reports the engine's work to `observer` (metrics: `docs/observability.md`).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Runs a workflow call and reports it: its outcome and how long it took, and its
    /// `invoke_agent` span (`docs/observability.md#traces`), a child of the current span (the
    /// MCP request's).
    ///
    /// The wrappers around a workflow take the function that makes its future, not the future:
    /// a future passed as an argument of an `async fn` is stored twice in the wrapper's own
    /// future (the argument, and the copy it awaits), so each wrapper doubled the size of every
    /// running workflow (`docs/performance.md`, peak RSS; `workflow_futures_stay_small`).
    async fn observed<F: std::future::Future<Output = Envelope>>(
        &self,
        workflow: Workflow,
        call: impl FnOnce() -> F,
    ) -> Envelope {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            target: trace::SPAN_TARGET,
            "invoke_agent",
            // `invoke_agent` + `SERVER_NAME` (a span name must be a literal here).
            otel.name = "invoke_agent claude-agent-mcp",
            "gen_ai.operation.name" = "invoke_agent",
            "gen_ai.agent.name" = crate::SERVER_NAME,
            "gen_ai.provider.name" = trace::PROVIDER,
            "gen_ai.conversation.id" = tracing::field::Empty,
            "gen_ai.input.messages" = tracing::field::Empty,
            "gen_ai.output.messages" = tracing::field::Empty,
            "claude_agent_mcp.workflow" = workflow.as_str(),
            "claude_agent_mcp.backend" = self.backend.name(),
            "claude_agent_mcp.outcome" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let envelope = call().instrument(span.clone()).await;
        let outcome = RunOutcome::of(&envelope);
        if !span.is_disabled() {
            if !envelope.session_id.is_empty() {
                span.record("gen_ai.conversation.id", envelope.session_id.as_str());
            }
            span.record("claude_agent_mcp.outcome", outcome.as_str());
            if let Some(error) = envelope.errors.first().filter(|_| !envelope.ok) {
                trace::record_error(&span, error.code.as_str());
            }
        }
        self.observer.run_finished(&RunReport {
            workflow,
            backend: self.backend.name(),
            outcome,
            duration: started.elapsed(),
        });
        envelope
    }

    /// This process's node id (`node_` + 16 hex), made when the engine is built: every lock owner
    /// token ends with `@<node id>` (`docs/reference/sessions.md#1-identifiers`), so the
    /// `locked_by` of a running session names the process that runs it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The model, effort and budget of one execution of `profile`
    /// ([`SpendPolicy::settle`] for this engine's backend), or the failure envelope of
    /// `workflow` on `session_id` that refuses them.
    fn settle_spend(
        &self,
        session_id: &str,
        workflow: Workflow,
        profile: Profile,
        request: &SpendRequest,
    ) -> Result<(CallSettings, Vec<String>), Box<Envelope>> {
        let prices_calls = self.backend.capabilities().prices_model_calls;
        self.config
            .spend
            .settle(profile, request, prices_calls)
            .map_err(|r: SpendRefusal| {
                Box::new(Envelope::failure(
                    session_id,
                    workflow,
                    profile.as_str(),
                    r.code,
                    r.message,
                ))
            })
    }

    /// Adds a source of tools for the model (federation, built-in workspace tools).
    pub fn with_tool_provider(mut self, provider: Arc<dyn ToolProvider>) -> Self {
        self.tool_providers.push(provider);
        self
    }

    /// Adds runtime-mediated execution of tool requests in the output of backends that
    /// declare `supports_execution_mediation` (`docs/reference/mediation.md#1-scope`).
    pub fn with_mediator(mut self, mediator: Arc<dyn OutputMediator>) -> Self {
        self.mediator = Some(mediator);
        self
    }

    pub fn backend(&self) -> &Arc<dyn ExecutionBackend> {
        &self.backend
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// How often the lease sweeper runs: half the lease TTL, so a session left `running`
    /// by a process that died is `interrupted` at most 1.5 TTL after its last renewal. `None`
    /// when the TTL is zero: every lease would count as expired at once, and sweeping would
    /// interrupt live runs.
    pub fn lease_sweep_period(&self) -> Option<Duration> {
        let ttl = self.config.lock_ttl;
        (!ttl.is_zero()).then(|| (ttl / 2).max(Duration::from_millis(10)))
    }

    /// The lease sweeper (`docs/reference/sessions.md#5-crash-recovery`): every
    /// [`lease_sweep_period`](Self::lease_sweep_period) turns `running` sessions whose lease
    /// expired into `interrupted` ([`SessionStore::sweep_expired_leases`]). Runs until the future
    /// is dropped; returns at once when the period is `None`. The first sweep comes one period
    /// after the start (startup recovery has just run).
    pub async fn sweep_expired_leases(&self) {
        let Some(period) = self.lease_sweep_period() else {
            return;
        };
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            match self.store.sweep_expired_leases().await {
                Ok(0) => self.observer.lease_sweep(0),
                Ok(count) => {
                    self.observer.lease_sweep(count);
                    tracing::warn!(
                        target: "store",
                        count,
                        "marked session(s) interrupted: running with an expired lease"
                    );
                }
                Err(e) => {
                    self.observer.store_error("sweep_expired_leases");
                    tracing::warn!(target: "store", error = %e, "lease sweep failed");
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // agent_run_task
    // -----------------------------------------------------------------------------------------

    /// `docs/reference/tools.md#4-agent_run_task`. The envelope of a run that created its
    /// session is kept in the store as the result of its execution 1 (`agent_wait_session`).
    pub async fn run_task(&self, req: RunTaskRequest, ctx: &ExecContext) -> Envelope {
        self.observed(Workflow::RunTask, move || {
            self.kept_as_first_execution(move || self.run_task_once(req, ctx))
        })
        .await
    }

    /// A call that creates its session (`agent_run_task`, `agent_verify_task`), then its
    /// envelope kept as the result of that session's execution 1 (`agent_wait_session`); an
    /// envelope without a session (refused before one was made) is not kept.
    async fn kept_as_first_execution<F: std::future::Future<Output = Envelope>>(
        &self,
        call: impl FnOnce() -> F,
    ) -> Envelope {
        let env = call().await;
        if !env.session_id.is_empty() {
            self.keep_result(&env.session_id, 1, &env).await;
        }
        env
    }

    async fn run_task_once(&self, req: RunTaskRequest, ctx: &ExecContext) -> Envelope {
        let workflow = Workflow::RunTask;
        let profile = req.profile;
        let max_turns = profile.effective_max_turns(req.max_turns);
        let requested_dir = req.working_directory.clone().filter(|d| !d.is_empty());
        let paths = req.attachments.clone();
        let budget = self.config.max_evidence_bytes;
        // Order of checks: working directory, then attachments
        // (`docs/reference/policy.md#4-attachments-and-evidence-paths`); the policy reads what it
        // let through, checking each path again as it opens it.
        let checked = self
            .with_policy(move |policy| {
                let working_dir = policy.resolve_working_directory(requested_dir.as_deref())?;
                for attachment in &paths {
                    policy.check_attachment(attachment)?;
                }
                let (attachments, warnings) = read_evidence(policy, &paths, budget)?;
                Ok((working_dir, attachments, warnings))
            })
            .await;
        let (working_dir, attachments, evidence_warnings) = match checked {
            Ok(checked) => checked,
            Err(v) => return Envelope::failure("", workflow, profile.as_str(), v.code, v.message),
        };
        let (spend, spend_warnings) = match self.settle_spend("", workflow, profile, &req.spend) {
            Ok(settled) => settled,
            Err(refused) => return *refused,
        };
        let working_dir_text = working_dir.to_string_lossy().into_owned();
        // `allow_tools: false` withholds every tool (the original accepted and ignored it;
        // **[fixed]** in `docs/reference/tools.md#4-agent_run_task`).
        let routing = if req.allow_tools {
            self.route_tools(profile, 0)
        } else {
            ToolRouting::default()
        };
        let ToolRouting {
            tools,
            event: catalog_event,
            warning: routing_warning,
            executor: wants_executor,
        } = routing;
        let mut events = vec![
            Event::user_input_task(&req.task),
            Event::system_prompt_resolved(profile),
            Event::policy_decision_run(&working_dir_text, max_turns),
            Event::provider_request_start(0),
        ];
        events.extend(catalog_event);
        let (session_id, lease) = match self.begin(workflow, profile, &working_dir, &events).await {
            Ok(ids) => ids,
            Err(env) => return env,
        };
        ctx.report(&format!("session {session_id} created"));
        let task = if attachments.is_empty() {
            req.task
        } else {
            format!(
                "{}\n\nAttachments:\n{}",
                req.task,
                evidence::render(&attachments)
            )
        };
        let tool_executor =
            wants_executor.then(|| self.executor_for(&session_id, profile, 0, Some(&working_dir)));
        let request = BackendRequest {
            tools,
            tool_executor,
            extra_instructions: self.teaching(profile, req.allow_tools),
            output_schema: req.output_schema.clone(),
            ..BackendRequest::first_execution(
                session_id.clone(),
                profile,
                task,
                max_turns,
                working_dir,
                spend,
            )
        };
        let working_dir = request.working_directory.clone();
        let outcome = self.execute(request, ctx, &lease, 0).await;
        let outcome = self
            .mediate(
                &session_id,
                &lease,
                0,
                profile,
                working_dir.as_deref(),
                req.allow_tools,
                outcome,
                ctx,
            )
            .await;
        let (outcome, structured) = check_structured(outcome, req.output_schema.as_ref());
        let mut warnings: Vec<String> = routing_warning.into_iter().collect();
        warnings.extend(evidence_warnings);
        warnings.extend(spend_warnings);
        let concluded = self
            .conclude(
                &session_id,
                &lease,
                workflow,
                profile,
                0,
                0,
                outcome,
                warnings,
                structured,
            )
            .await;
        reported(ctx, &session_id, concluded)
    }

    // -----------------------------------------------------------------------------------------
    // agent_continue_session
    // -----------------------------------------------------------------------------------------

    /// `docs/reference/tools.md#5-agent_continue_session`. A lost lock race answers
    /// `session_conflict` without touching the session (the original marked it failed; a
    /// **[fixed]** behaviour of that section), and continuing a session that is running under a
    /// live lease also answers `session_conflict`, naming the holder.
    pub async fn continue_session(
        &self,
        req: ContinueSessionRequest,
        ctx: &ExecContext,
    ) -> Envelope {
        let workflow = Workflow::ContinueSession;
        self.observed(workflow, move || self.continue_as(req, ctx, workflow))
            .await
    }

    /// A continuation, answered and locked as `workflow` (`continue_session`, or
    /// `fork_session` for the continuation `agent_fork_session` runs on its new session).
    async fn continue_as(
        &self,
        req: ContinueSessionRequest,
        ctx: &ExecContext,
        workflow: Workflow,
    ) -> Envelope {
        let id = req.session_id.as_str();
        let not_found = || {
            Envelope::failure(
                id,
                workflow,
                Profile::General.as_str(),
                ErrorCode::SessionNotFound,
                format!("Session not found: {id}"),
            )
        };
        let record = match self.store.get_session(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return not_found(),
            Err(e) => {
                self.observer.store_error("get_session");
                return store_failure(id, workflow, Profile::General, &e);
            }
        };
        let profile = record.profile;
        if let Some(env) = running_gate(&record, workflow) {
            return env;
        }
        let (spend, spend_warnings) = match self.settle_spend(id, workflow, profile, &req.spend) {
            Ok(settled) => settled,
            Err(refused) => return *refused,
        };
        // The stored directory was checked against the policy of its time: check it against
        // today's before anything runs in it. A session with none runs in the CWD, if allowed.
        let stored_dir = record.working_directory.clone();
        let working_dir = match self
            .with_policy(move |policy| match stored_dir.as_deref() {
                Some(stored) => policy.reresolve_working_directory(stored),
                None => policy.resolve_working_directory(None),
            })
            .await
        {
            Ok(dir) => dir,
            Err(v) => return Envelope::failure(id, workflow, profile.as_str(), v.code, v.message),
        };
        let owner = ids::new_lock_owner(workflow, &self.node_id);
        let (record, lease) = match self
            .store
            .acquire_lock(id, &owner, self.config.lock_ttl)
            .await
        {
            Ok(LockOutcome::Acquired(r)) => {
                let lease = Lease::of(owner, &r);
                (r, lease)
            }
            Ok(LockOutcome::NotFound) => return not_found(),
            Ok(LockOutcome::Conflict { owner: holder }) => {
                return conflict(id, workflow, profile, &holder);
            }
            Err(e) => {
                self.observer.store_error("acquire_lock");
                return store_failure(id, workflow, profile, &e);
            }
        };
        if record.status == SessionStatus::Running {
            // Started between our read and our lock (its lease had already expired).
            let _ = self.store.release_lock(id, &lease.owner).await;
            return running_denied(id, workflow, profile);
        }
        let max_turns = profile.effective_max_turns(req.max_turns);
        let prior_turns = record.turn_count;
        let (provider_session_id, fork_provider_session) = self.provider_session_of(&record).await;
        let structured = self
            .backend
            .capabilities()
            .supports_structured_continuation_context;
        let (history, continuation) =
            match tokio::try_join!(self.store.events(id), self.store.outputs(id)) {
                // Backends with a structured context get it instead of a message history.
                Ok((events, _)) if structured => {
                    let context = continuation::build_context(
                        &record,
                        &events,
                        &self.config.continuation_window,
                        self.config.mediation_inclusion,
                    );
                    (Vec::new(), Some(context))
                }
                Ok((events, outputs)) => (
                    conversation_history(&events, &outputs, self.config.history_budget_chars),
                    None,
                ),
                Err(e) => {
                    self.observer.store_error("events");
                    return self.abandon(id, &lease, workflow, profile, &e).await;
                }
            };
        let ToolRouting {
            tools,
            event: catalog_event,
            warning: routing_warning,
            executor: wants_executor,
        } = self.route_tools(profile, prior_turns);
        let mut events = Vec::with_capacity(5);
        if let Some(context) = &continuation {
            let window = &self.config.continuation_window;
            events.push(Event::continuation_context_built(
                prior_turns,
                continuation::context_built_payload(window, &context.stats),
            ));
            if continuation::is_truncated(&context.stats) {
                events.push(Event::continuation_context_truncated(
                    prior_turns,
                    continuation::context_truncated_payload(&context.stats),
                ));
            }
        }
        events.push(Event::user_input_message(prior_turns, &req.message));
        events.push(Event::provider_request_start(prior_turns));
        events.extend(catalog_event);
        if let Err(e) = self.store.begin_execution(id, &events).await {
            self.observer.store_error("begin_execution");
            return self.abandon(id, &lease, workflow, profile, &e).await;
        }
        ctx.report(&format!("session {id} continuing"));
        let working_dir = Some(working_dir);
        let request = BackendRequest {
            session_id: id.to_owned(),
            profile,
            system_prompt: profile.system_prompt(),
            task: req.message,
            max_turns,
            tool_executor: wants_executor
                .then(|| self.executor_for(id, profile, prior_turns, working_dir.as_deref())),
            tools,
            history,
            session_summary: record.summary_latest.clone(),
            is_continuation: true,
            working_directory: working_dir,
            provider_session_id,
            extra_instructions: self.teaching(profile, true),
            continuation: continuation.clone(),
            output_schema: req.output_schema.clone(),
            fork_provider_session,
            spend,
        };
        let working_dir = request.working_directory.clone();
        let outcome = self.execute(request, ctx, &lease, prior_turns).await;
        let outcome = self
            .mediate(
                id,
                &lease,
                prior_turns,
                profile,
                working_dir.as_deref(),
                true,
                outcome,
                ctx,
            )
            .await;
        if continuation.is_some() && outcome.is_ok() {
            let rendered = Event::continuation_prompt_rendered(
                prior_turns,
                continuation::prompt_rendered_payload(),
            );
            if let Err(e) = self.store.append_events(id, &[rendered]).await {
                tracing::warn!(session_id = id, error = %e, "could not record the rendered continuation prompt");
            }
        }
        let (outcome, structured) = check_structured(outcome, req.output_schema.as_ref());
        let warnings = routing_warning.into_iter().chain(spend_warnings).collect();
        let concluded = self
            .conclude(
                id,
                &lease,
                workflow,
                profile,
                prior_turns,
                prior_turns,
                outcome,
                warnings,
                structured,
            )
            .await;
        let env = reported(ctx, id, concluded);
        // `begin_execution` counted this execution.
        self.keep_result(id, record.request_count + 1, &env).await;
        env
    }

    /// The provider session a continuation of `record` resumes, and whether it resumes it as a
    /// new one (`BackendRequest::fork_provider_session`): the session's own, else, for a fork
    /// that has none yet, its parent's, when the parent is not running and has not changed since
    /// the fork was made at its latest turn (a provider session can be forked only at its end,
    /// and an execution of the parent after the fork, even a failed one that completed no turn,
    /// may have moved it on: its row's `updated_at` is later than the fork's `created_at`, both
    /// written by the store's one clock); otherwise none (the backend sends the reconstructed
    /// context).
    async fn provider_session_of(&self, record: &SessionRecord) -> (Option<String>, bool) {
        if record.provider_session_id.is_some() {
            return (record.provider_session_id.clone(), false);
        }
        let Some(origin) = &record.fork else {
            return (None, false);
        };
        match self.store.get_session(&origin.parent_session_id).await {
            Ok(Some(parent))
                if parent.turn_count == origin.at_turn
                    && parent.status != SessionStatus::Running
                    && parent.updated_at < record.created_at
                    && parent.provider_session_id.is_some() =>
            {
                (parent.provider_session_id, true)
            }
            Ok(_) => (None, false),
            Err(e) => {
                self.observer.store_error("get_session");
                tracing::warn!(session_id = %record.session_id, error = %e, "could not read the parent of a fork; continuing from the reconstructed context");
                (None, false)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // agent_fork_session
    // -----------------------------------------------------------------------------------------

    /// `docs/reference/tools.md#17-agent_fork_session`: a new session whose history is the
    /// parent's up to `at_turn` (default: its latest completed turn), made in one store
    /// transaction ([`SessionStore::fork_session`]) without touching the parent's row or lock,
    /// so a running parent can be forked (at its last completed turn). Without a message the
    /// answer is the fork's own envelope (kept as the new session's result); with one, the
    /// continuation's envelope on the new session (workflow `fork_session`).
    pub async fn fork_session(&self, req: ForkSessionRequest, ctx: &ExecContext) -> Envelope {
        self.observed(Workflow::ForkSession, move || {
            self.fork_session_unobserved(req, ctx)
        })
        .await
    }

    async fn fork_session_unobserved(
        &self,
        req: ForkSessionRequest,
        ctx: &ExecContext,
    ) -> Envelope {
        let workflow = Workflow::ForkSession;
        let parent_id = req.session_id.as_str();
        let record = match self.store.get_session(parent_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return fork_not_found(parent_id),
            Err(e) => {
                self.observer.store_error("get_session");
                return store_failure(parent_id, workflow, Profile::General, &e);
            }
        };
        let profile = record.profile;
        let invalid = |problem: String| {
            Envelope::error(
                parent_id,
                workflow,
                profile.as_str(),
                ErrorObject::validation(format!("Invalid agent_fork_session request: {problem}")),
            )
        };
        if record.turn_count < 1 {
            return invalid(format!(
                "session {parent_id} has no completed turn to fork (turn_count 0)"
            ));
        }
        // The continuation's model and budget are checked before the fork exists, so a refused
        // one creates nothing (`docs/reference/tools.md#18-budgets-and-models`).
        if let Some(next) = &req.continuation
            && let Err(refused) = self.settle_spend(parent_id, workflow, profile, &next.spend)
        {
            return *refused;
        }
        let at_turn = req.at_turn.unwrap_or(record.turn_count);
        if at_turn > record.turn_count {
            return invalid(format!(
                "at_turn: input should be less than or equal to {}, the turn_count of session {parent_id}, got {at_turn}",
                record.turn_count
            ));
        }
        let events = match self.store.events(parent_id).await {
            Ok(events) => events,
            Err(e) => {
                self.observer.store_error("events");
                return store_failure(parent_id, workflow, profile, &e);
            }
        };
        let Some(end) = fork_point(&events, at_turn) else {
            return invalid(format!(
                "at_turn: turn {at_turn} of session {parent_id} does not end an exchange; it can be forked at turn {}",
                forkable_turns(&events, record.turn_count)
            ));
        };
        let copied: usize = events
            .iter()
            .take_while(|e| e.event_id <= end.event_id)
            .map(|e| e.payload.to_string().len())
            .sum();
        if copied > MAX_FORK_HISTORY_BYTES {
            return invalid(format!(
                "session {parent_id} has {copied} bytes of history through turn {at_turn}, more than the {MAX_FORK_HISTORY_BYTES} a fork copies"
            ));
        }
        let child_id = ids::new_session_id();
        let fork = ForkSession {
            parent_session_id: parent_id.to_owned(),
            session_id: child_id.clone(),
            at_turn,
            through_event_id: end.event_id,
            summary_latest: end
                .payload
                .get("summary")
                .and_then(Value::as_str)
                .map(str::to_owned),
            child_event: Event::session_forked(parent_id, at_turn),
            parent_event: Event::session_fork_created(&child_id, at_turn),
        };
        match self.store.fork_session(&fork).await {
            Ok(ForkOutcome::Forked(_)) => {}
            Ok(ForkOutcome::NotFound) => return fork_not_found(parent_id),
            Err(e) => {
                self.observer.store_error("fork_session");
                return store_failure(parent_id, workflow, profile, &e);
            }
        }
        ctx.report(&format!(
            "session {child_id} created: a fork of {parent_id} at turn {at_turn}"
        ));
        let Some(mut continuation) = req.continuation else {
            let mut result = Map::with_capacity(2);
            result.insert("parent_session_id".into(), json!(parent_id));
            result.insert("forked_at_turn".into(), json!(at_turn));
            let env = Envelope::success(
                child_id.clone(),
                workflow,
                profile,
                format!("Session {child_id} forked from {parent_id} at turn {at_turn}"),
                result,
            );
            // The fork's result until its first execution (`request_count` 0).
            self.keep_result(&child_id, 0, &env).await;
            return env;
        };
        continuation.session_id = child_id;
        self.continue_as(continuation, ctx, workflow).await
    }

    // -----------------------------------------------------------------------------------------
    // agent_verify_task
    // -----------------------------------------------------------------------------------------

    /// `docs/reference/verification.md#2-flow`: preflight, evidence, policy, session, one backend
    /// call, verdict. The envelope of a verification that created its session is kept as the
    /// result of its execution 1 (`agent_wait_session`).
    pub async fn verify_task(&self, req: VerifyTaskRequest, ctx: &ExecContext) -> Envelope {
        self.observed(Workflow::VerifyTask, move || {
            self.kept_as_first_execution(move || self.verify_task_once(req, ctx))
        })
        .await
    }

    async fn verify_task_once(&self, req: VerifyTaskRequest, ctx: &ExecContext) -> Envelope {
        let workflow = Workflow::VerifyTask;
        let profile = Profile::Verification;
        let pre = preflight(
            &req.task,
            req.scope.as_deref(),
            &req.evidence_paths,
            self.config.restricted_verification,
        );
        let lint = pre.lint_codes;
        if !pre.ok {
            let primary = lint
                .first()
                .copied()
                .unwrap_or(ReasonCode::RestrictedModeMismatch);
            let errors = lint
                .iter()
                .map(|code| ErrorObject::new(code.error_code(), code.guidance()[0]))
                .collect();
            return verification_envelope(
                "",
                format!(
                    "Verification blocked: {}",
                    primary.as_str().replace('_', " ")
                ),
                VerificationResult::not_performed(&lint),
                pre.hints,
                errors,
            );
        }
        let paths = req.evidence_paths.clone();
        let fail_closed = req.fail_closed;
        let budget = self.config.max_evidence_bytes;
        let checked = self
            .with_policy(move |policy| {
                let exists: Vec<bool> = paths.iter().map(|p| policy.path_exists(p)).collect();
                let missing: Vec<String> = paths
                    .iter()
                    .zip(&exists)
                    .filter(|(_, exists)| !**exists)
                    .map(|(p, _)| format!("Evidence path not found: {p}"))
                    .collect();
                if !missing.is_empty() && fail_closed {
                    return Ok(EvidenceCheck::MissingFailClosed(missing));
                }
                let working_dir = policy.resolve_working_directory(None)?;
                let existing: Vec<String> = paths
                    .iter()
                    .zip(&exists)
                    .filter(|(_, exists)| **exists)
                    .map(|(p, _)| p.clone())
                    .collect();
                // Quirk kept for the message only (`docs/verification.md`): a path that is a
                // substring of a "not found" message skips the attachment check. Whether it
                // is read is decided by `read_evidence`, which checks every path it opens.
                // Bounded: both lists are at most `MAX_PATHS` long.
                for path in existing
                    .iter()
                    .filter(|p| !missing.iter().any(|m| m.contains(p.as_str())))
                {
                    policy.check_attachment(path)?;
                }
                let (evidence, warnings) = read_evidence(policy, &existing, budget)?;
                Ok(EvidenceCheck::Checked {
                    missing,
                    working_dir,
                    evidence,
                    warnings,
                })
            })
            .await;
        let (missing, working_dir, evidence, evidence_warnings) = match checked {
            Ok(EvidenceCheck::Checked {
                missing,
                working_dir,
                evidence,
                warnings,
            }) => (missing, working_dir, evidence, warnings),
            Ok(EvidenceCheck::MissingFailClosed(missing)) => {
                let errors = missing
                    .into_iter()
                    .map(|m| ErrorObject::new(ErrorCode::MissingEvidence, m))
                    .collect();
                return verification_envelope(
                    "",
                    "Verification fail_closed".to_owned(),
                    VerificationResult::not_performed(&lint),
                    Vec::new(),
                    errors,
                );
            }
            Err(v) => return Envelope::failure("", workflow, profile.as_str(), v.code, v.message),
        };
        let (spend, spend_warnings) = match self.settle_spend("", workflow, profile, &req.spend) {
            Ok(settled) => settled,
            Err(refused) => return *refused,
        };
        let events = [
            Event::user_input_verify(&req.task, req.scope.as_deref()),
            Event::policy_decision_verify(req.fail_closed, &req.evidence_paths),
            Event::provider_request_start(0),
        ];
        let (session_id, lease) = match self.begin(workflow, profile, &working_dir, &events).await {
            Ok(ids) => ids,
            Err(env) => return env,
        };
        ctx.report(&format!("verification session {session_id} created"));
        let request = BackendRequest::first_execution(
            session_id.clone(),
            profile,
            verification_prompt(&req, &evidence),
            profile.max_turns_default(),
            working_dir,
            spend,
        );
        let output = match self.execute(request, ctx, &lease, 0).await {
            Ok(output) if output.output_text.trim().is_empty() => {
                let failure = verification::empty_output();
                let event = Event::error_payload(
                    0,
                    json!({ "error": failure.failure_code.as_str(), "summary": failure.summary }),
                );
                return self
                    .unavailable(&session_id, &lease, event, &lint, &failure, None)
                    .await;
            }
            Ok(output) => output,
            Err(e) => {
                return match verification::classify(&e) {
                    Some(failure) => {
                        let event = Event::error_payload(
                            0,
                            json!({ "error": truncate_chars(&e.message, 256) }),
                        );
                        // Messages API failures keep their error code: they were generic errors before.
                        let error = (e.code == ErrorCode::ProviderRuntimeError)
                            .then(|| ErrorObject::new(e.code, e.message.clone()));
                        self.unavailable(&session_id, &lease, event, &lint, &failure, error)
                            .await
                    }
                    None => {
                        self.fail(&session_id, &lease, workflow, profile, 0, e)
                            .await
                    }
                };
            }
        };
        let parsed = parse_verdict(&output.output_text, req.fail_closed);
        let verdict = parsed.verdict.as_str();
        let summary = format!(
            "Verification {verdict}: {} finding(s)",
            parsed.findings.len()
        );
        let turns = i64::from(output.turn_count);
        let mut artifacts = Vec::new();
        artifacts.extend(
            self.save_artifact(
                &session_id,
                workflow,
                profile,
                ArtifactKind::VerificationReport,
                turns,
                &output.output_text,
            )
            .await,
        );
        let events = vec![
            Event::verify_response_summary(turns, verdict, &summary),
            Event::workflow_normalization(turns, verdict),
        ];
        let provider_session_id = output.provider_session_id.clone();
        let output_text = output.output_text.clone();
        let usage = output.usage.clone();
        let result = VerificationResult::performed(parsed, &lint, output.usage);
        let mut warnings = missing;
        warnings.extend(evidence_warnings);
        warnings.extend(spend_warnings);
        warnings.extend(output.warnings);
        let mut env =
            verification_envelope(&session_id, summary.clone(), result, warnings, Vec::new());
        env.ok = true;
        env.status = EnvelopeStatus::Completed;
        env.artifacts = artifacts;
        let finish = Finish {
            status: SessionStatus::Completed,
            turn_count: Some(turns),
            summary_latest: Some(summary),
            provider_session_id,
            output_text: Some(output_text),
            events,
            result: Some(result_text(&session_id, &env)),
            usage,
        };
        if let Err(e) = self.finish(&session_id, &lease, &finish).await {
            return store_failure(&session_id, workflow, profile, &e);
        }
        ctx.report(&format!("verification finished: {verdict}"));
        env
    }

    /// `docs/reference/verification.md#84-unavailable`: the session fails with the given
    /// `error_event`, and the result says why.
    async fn unavailable(
        &self,
        session_id: &str,
        lease: &Lease,
        event: Event,
        lint: &[ReasonCode],
        failure: &Unavailability,
        error: Option<ErrorObject>,
    ) -> Envelope {
        let summary = format!("Verification unavailable: {}", failure.summary);
        let error = error.unwrap_or_else(|| {
            ErrorObject::new(failure_error_code(failure), failure.summary.clone())
        });
        let env = verification_envelope(
            session_id,
            summary,
            VerificationResult::unavailable(lint, failure),
            Vec::new(),
            vec![error],
        );
        self.finish_without_output(
            session_id,
            lease,
            SessionStatus::Failed,
            vec![event],
            env,
            "an unavailable verification",
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // agent_get_session / agent_list_sessions
    // -----------------------------------------------------------------------------------------

    /// `docs/reference/tools.md#6-agent_get_session`.
    pub async fn get_session(&self, req: &GetSessionRequest) -> Result<SessionView, ErrorObject> {
        match self.store.get_session(&req.session_id).await {
            Ok(Some(record)) => Ok(SessionView::from(&record)),
            Ok(None) => Err(ErrorObject::bare(
                ErrorCode::SessionNotFound,
                format!("Session not found: {}", req.session_id),
            )),
            Err(e) => Err(self.read_failed("get_session", e)),
        }
    }

    /// `docs/reference/tools.md#7-agent_list_sessions`.
    pub async fn list_sessions(
        &self,
        req: &ListSessionsRequest,
    ) -> Result<Vec<SessionListEntry>, ErrorObject> {
        match self.store.list_sessions(req.limit, req.status).await {
            Ok(items) => Ok(items.into_iter().map(SessionListEntry::from).collect()),
            Err(e) => Err(self.read_failed("list_sessions", e)),
        }
    }

    /// A failed read of the store: reported to the observer under `operation`, answered as
    /// `internal_error` with the store's message.
    fn read_failed(&self, operation: &'static str, error: StoreError) -> ErrorObject {
        self.observer.store_error(operation);
        ErrorObject::bare(ErrorCode::InternalError, error.message)
    }

    // -----------------------------------------------------------------------------------------
    // Resources (`docs/reference/sessions.md#11-resources`): sessions, their event logs and
    // artifacts, read-only
    // -----------------------------------------------------------------------------------------

    /// A page of sessions, most recently updated first, and whether more follow.
    pub async fn sessions_page(
        &self,
        offset: u32,
        page: u32,
    ) -> Result<(Vec<SessionListEntry>, bool), ErrorObject> {
        // One row more than the page says whether another page follows.
        let mut items = self
            .store
            .list_sessions_page(offset, page.saturating_add(1))
            .await
            .map_err(|e| self.read_failed("list_sessions", e))?;
        let page = usize::try_from(page).unwrap_or(usize::MAX);
        let more = items.len() > page;
        items.truncate(page);
        let entries = items.into_iter().map(SessionListEntry::from).collect();
        Ok((entries, more))
    }

    /// The event log of a session (`None` when the session does not exist).
    pub async fn session_events(
        &self,
        session_id: &str,
    ) -> Result<Option<Vec<StoredEvent>>, ErrorObject> {
        if self
            .store
            .get_session(session_id)
            .await
            .map_err(|e| self.read_failed("get_session", e))?
            .is_none()
        {
            return Ok(None);
        }
        self.store
            .events(session_id)
            .await
            .map(Some)
            .map_err(|e| self.read_failed("events", e))
    }

    /// The metadata of a session's artifacts.
    pub async fn artifacts(&self, session_id: &str) -> Result<Vec<ArtifactRecord>, ErrorObject> {
        self.store
            .artifacts(session_id)
            .await
            .map_err(|e| self.read_failed("artifacts", e))
    }

    /// An artifact and its body (`None` when there is no such artifact).
    pub async fn read_artifact(
        &self,
        session_id: &str,
        artifact_id: &str,
    ) -> Result<Option<(ArtifactRecord, Vec<u8>)>, ErrorObject> {
        self.store
            .read_artifact(session_id, artifact_id)
            .await
            .map_err(|e| self.read_failed("read_artifact", e))
    }

    // -----------------------------------------------------------------------------------------
    // Shared steps
    // -----------------------------------------------------------------------------------------

    /// Records the end of a run or continuation: artifact, final event, status, kept result,
    /// lock release; answers its envelope (`warnings` first, then the backend's).
    /// `prior_turns` is the turn count before this execution; `error_turn` the index of an
    /// `error_event`.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        session_id: &str,
        lease: &Lease,
        workflow: Workflow,
        profile: Profile,
        prior_turns: i64,
        error_turn: i64,
        outcome: Result<BackendOutput, ExecutionError>,
        warnings: Vec<String>,
        structured: Option<Value>,
    ) -> Result<Envelope, Box<Envelope>> {
        let mut output = match outcome {
            Ok(output) => output,
            Err(e) => {
                return Err(Box::new(
                    self.fail(session_id, lease, workflow, profile, error_turn, e)
                        .await,
                ));
            }
        };
        let new_turns = prior_turns + i64::from(output.turn_count);
        let summary = summarize_output(&output.output_text);
        let mut artifacts = Vec::new();
        if output
            .output_text
            .chars()
            .nth(OUTPUT_ARTIFACT_MIN_CHARS - 1)
            .is_some()
        {
            artifacts.extend(
                self.save_artifact(
                    session_id,
                    workflow,
                    profile,
                    ArtifactKind::Output,
                    new_turns,
                    &output.output_text,
                )
                .await,
            );
        }
        let provider_session_id = output.provider_session_id.clone();
        let event =
            Event::provider_response_summary(new_turns, &summary, output.stop_reason.as_deref());
        let output_text = output.output_text.clone();
        let usage = output.usage.clone();
        // A tool loop's messages, for continuations to replay, when they are not too large.
        let mut events: Vec<Event> = output
            .transcript
            .take()
            .map(|messages| Event::provider_transcript(new_turns, messages))
            .filter(|e| e.payload.to_string().len() <= MAX_TRANSCRIPT_BYTES)
            .into_iter()
            .collect();
        events.push(event);
        let env = self.output_envelope(
            session_id.to_owned(),
            workflow,
            profile,
            Completed { output, artifacts },
            warnings,
            structured,
        );
        let finish = Finish {
            status: SessionStatus::Completed,
            turn_count: Some(new_turns),
            summary_latest: Some(summary),
            provider_session_id,
            output_text: Some(output_text),
            events,
            result: Some(result_text(session_id, &env)),
            usage,
        };
        if let Err(e) = self.finish(session_id, lease, &finish).await {
            return Err(Box::new(store_failure(session_id, workflow, profile, &e)));
        }
        Ok(env)
    }

    fn output_envelope(
        &self,
        session_id: String,
        workflow: Workflow,
        profile: Profile,
        done: Completed,
        mut warnings: Vec<String>,
        structured: Option<Value>,
    ) -> Envelope {
        let Completed { output, artifacts } = done;
        let summary = summarize_output(&output.output_text);
        let mut result = Map::with_capacity(3);
        result.insert("output_text".into(), Value::String(output.output_text));
        if let Some(usage) = &output.usage {
            result.insert("usage".into(), json!(usage));
        }
        if let Some(structured) = structured {
            result.insert("structured_output".into(), structured);
        }
        let mut env = Envelope::success(session_id, workflow, profile, summary, result);
        env.artifacts = artifacts;
        warnings.extend(output.warnings);
        env.warnings = warnings;
        env
    }

    /// Creates a session, already `running` and locked by this execution, with its first
    /// `events`: its id and the lock owner; on a store failure, the response (with no session id:
    /// none was created).
    async fn begin(
        &self,
        workflow: Workflow,
        profile: Profile,
        working_directory: &std::path::Path,
        events: &[Event],
    ) -> Result<(String, Lease), Envelope> {
        let new_session = NewSession {
            session_id: ids::new_session_id(),
            workflow,
            profile,
            working_directory: Some(working_directory.to_string_lossy().into_owned()),
            lock_owner: ids::new_lock_owner(workflow, &self.node_id),
            lock_ttl: self.config.lock_ttl,
        };
        match self.store.begin_session(&new_session, events).await {
            Ok(record) => {
                let lease = Lease::of(new_session.lock_owner, &record);
                Ok((new_session.session_id, lease))
            }
            Err(e) => {
                self.observer.store_error("begin_session");
                Err(store_failure("", workflow, profile, &e))
            }
        }
    }

    /// A classified backend failure: `error_event`, status `failed`, lock released.
    async fn fail(
        &self,
        session_id: &str,
        lease: &Lease,
        workflow: Workflow,
        profile: Profile,
        turn: i64,
        error: ExecutionError,
    ) -> Envelope {
        if error.kind == FailureKind::Cancelled {
            return self
                .record_cancelled(session_id, lease, workflow, profile, turn, &error.message)
                .await;
        }
        if error.kind == FailureKind::LeaseLost {
            return self
                .record_lease_lost(session_id, lease, workflow, profile, error)
                .await;
        }
        let mut object = ErrorObject::new(error.code, error.message);
        if let Some(details) = error.details {
            object.details = crate::error::Details::Value(details);
        }
        let events = vec![Event::error(turn, &object)];
        let env = Envelope::error(session_id, workflow, profile.as_str(), object);
        self.finish_without_output(
            session_id,
            lease,
            SessionStatus::Failed,
            events,
            env,
            "a failed execution",
        )
        .await
    }

    /// The final write of an execution that ended without output: `status` and `events`, with
    /// `env` kept as its result. A write that fails is logged (`what`: the execution, as the log
    /// names it) and its message added to the envelope's warnings.
    async fn finish_without_output(
        &self,
        session_id: &str,
        lease: &Lease,
        status: SessionStatus,
        events: Vec<Event>,
        mut env: Envelope,
        what: &str,
    ) -> Envelope {
        let finish =
            Finish::without_output(status, events).with_result(result_text(session_id, &env));
        if let Err(e) = self.finish(session_id, lease, &finish).await {
            tracing::error!(session_id, error = %e, "could not record {what}");
            env.warnings.push(e.message);
        }
        env
    }

    /// A store failure after the lock was taken: mark failed if possible, release the lock.
    async fn abandon(
        &self,
        session_id: &str,
        lease: &Lease,
        workflow: Workflow,
        profile: Profile,
        error: &StoreError,
    ) -> Envelope {
        let mut env = store_failure(session_id, workflow, profile, error);
        let finish = Finish::without_output(SessionStatus::Failed, Vec::new())
            .with_result(result_text(session_id, &env));
        if let Err(e) = self.finish(session_id, lease, &finish).await {
            env.warnings.push(e.message);
        }
        // Answered before the call's end, which would take it: the kept result stands.
        if let Ok(mut kept) = self.kept.lock() {
            kept.remove(session_id);
        }
        env
    }

    /// The mediation teaching section for a backend that mediates, when there is one.
    fn teaching(&self, profile: Profile, tools_allowed: bool) -> Option<String> {
        let mediator = self.mediator.as_ref()?;
        (tools_allowed && self.backend.capabilities().supports_execution_mediation)
            .then(|| mediator.prompt_section(profile))
            .flatten()
    }

    /// Runtime-mediated execution (`docs/reference/mediation.md#3-processing-order`) of a
    /// successful run or continuation on a backend that declares it: its events are written before
    /// the response summary and its warnings follow the backend's. Never for verification, never
    /// for the api backend.
    #[allow(clippy::too_many_arguments)]
    async fn mediate(
        &self,
        session_id: &str,
        lease: &Lease,
        prior_turns: i64,
        profile: Profile,
        working_directory: Option<&std::path::Path>,
        tools_allowed: bool,
        outcome: Result<BackendOutput, ExecutionError>,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        let mut output = outcome?;
        let capabilities = self.backend.capabilities();
        let Some(mediator) = self
            .mediator
            .as_ref()
            .filter(|_| capabilities.supports_execution_mediation)
        else {
            return Ok(output);
        };
        let request = MediationRequest {
            session_id,
            turn_index: prior_turns + i64::from(output.turn_count),
            profile,
            working_directory,
            output_text: &output.output_text,
            workflows_supported: capabilities.supports_bounded_mediated_workflows,
            tools_allowed,
        };
        // Mediation runs tools: the lease is renewed meanwhile, as during the backend call.
        let mediated = tokio::select! {
            mediated = mediator.mediate(request, ctx) => mediated,
            lost = self.renew_lease(session_id, lease) => return Err(lost),
        };
        match mediated {
            Ok(warnings) => {
                output.warnings.extend(warnings);
                Ok(output)
            }
            Err(e) => Err(ExecutionError::new(
                ErrorCode::ProviderRuntimeError,
                e.message,
            )),
        }
    }

    /// Runs policy work (file system checks, evidence reading) off the async threads: every
    /// port call of the policy may block on the file system.
    async fn with_policy<T, F>(&self, work: F) -> Result<T, PolicyViolation>
    where
        T: Send + 'static,
        F: FnOnce(&dyn WorkspacePolicy) -> Result<T, PolicyViolation> + Send + 'static,
    {
        let policy = Arc::clone(&self.policy);
        match tokio::task::spawn_blocking(move || work(policy.as_ref())).await {
            Ok(result) => result,
            Err(e) => Err(PolicyViolation::new(
                ErrorCode::ProviderRuntimeError,
                format!("The policy check failed: {e}"),
            )),
        }
    }

    /// Records the end of an execution. A failed write is retried after each of
    /// [`FINAL_WRITE_RETRY_DELAYS`]; if it still fails, the session is marked `interrupted`
    /// with its lock released ([`SessionStore::interrupt_execution`]), so it is never left
    /// `running` without a live run. The error's message says what happened to the session,
    /// for the client's envelope.
    async fn finish(
        &self,
        session_id: &str,
        lease: &Lease,
        finish: &Finish,
    ) -> Result<(), StoreError> {
        let mut result = self.store.finish_execution(session_id, lease, finish).await;
        let kept = |result: &Result<(), StoreError>| {
            if let (Ok(()), Some(text)) = (result, &finish.result)
                && let Ok(mut kept) = self.kept.lock()
            {
                kept.insert(session_id.to_owned(), text.clone());
            }
        };
        for delay in FINAL_WRITE_RETRY_DELAYS {
            let Err(e) = &result else {
                kept(&result);
                return Ok(());
            };
            self.observer.store_error("finish_execution");
            if e.is_not_holder() {
                break;
            }
            tracing::warn!(session_id, error = %e, "could not record the end of the execution; retrying");
            tokio::time::sleep(delay).await;
            result = self.store.finish_execution(session_id, lease, finish).await;
        }
        let Err(error) = result else {
            kept(&result);
            return Ok(());
        };
        if !error.is_not_holder() {
            self.observer.store_error("finish_execution");
        }
        if error.is_not_holder() {
            // The lease was lost (taken over or cleared): the new holder owns the row, so
            // nothing more is written for this execution, and retrying cannot succeed.
            tracing::warn!(session_id, owner = %lease.owner, generation = lease.generation, error = %error, "the end of the execution was not recorded: lease lost");
            return Err(StoreError::not_holder(format!(
                "Session {session_id} lost its lease before the end of the execution could be recorded ({error}): its status is the new holder's"
            )));
        }
        let attempts = FINAL_WRITE_RETRY_DELAYS.len() + 1;
        let reason = format!(
            "the end of the execution could not be recorded after {attempts} attempts: {error}"
        );
        let message = match self
            .store
            .interrupt_execution(session_id, lease, &reason)
            .await
        {
            Ok(true) => format!(
                "Session {session_id}: {reason}; the session is now interrupted (it can be continued)"
            ),
            // Not running (a continuation abandoned before it started) or another owner's:
            // the status stays; our lock, if we still hold it, is released.
            Ok(false) => {
                self.release_after_failure(session_id, lease).await;
                format!("Session {session_id}: {reason}; its status is unchanged")
            }
            Err(fallback) => {
                tracing::error!(session_id, error = %fallback, "could not mark the session interrupted");
                // A `running` row without a lock has no live lease: the sweeper takes it.
                self.release_after_failure(session_id, lease).await;
                format!(
                    "Session {session_id}: {reason}; marking it interrupted failed too ({fallback}): the lease sweeper marks it interrupted"
                )
            }
        };
        Err(StoreError::new(message))
    }

    async fn release_after_failure(&self, session_id: &str, lease: &Lease) {
        if let Err(e) = self.store.release_lock(session_id, &lease.owner).await {
            tracing::error!(session_id, error = %e, "could not release the session lock");
        }
    }

    /// Runs the backend under the session's lease: the lease is renewed every third of its TTL
    /// while the backend works, and the run is abandoned as soon as it is cancelled (by the
    /// request's own token or by `agent_cancel_session`): the backend future is dropped, which
    /// drops an in-flight HTTP request or child process handle.
    /// The steps the backend streams (`BackendStep`) are recorded as events at `turn_index` while
    /// it works, the last ones once it ends.
    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
        lease: &Lease,
        turn_index: i64,
    ) -> Result<BackendOutput, ExecutionError> {
        let session_id = request.session_id.clone();
        let cancel = ctx.cancel.child_token();
        let reason = Arc::new(std::sync::Mutex::new(None));
        if let Ok(mut running) = self.running.lock() {
            running.insert(
                session_id.clone(),
                InFlight {
                    cancel: cancel.clone(),
                    reason: Arc::clone(&reason),
                },
            );
        }
        let (steps, mut recorded) = StepChannel::open();
        let ctx = ExecContext::new(cancel.clone(), Arc::clone(&ctx.progress)).with_steps(steps);
        let record_steps = async {
            while let Some(step) = recorded.recv().await {
                self.record_step(&session_id, turn_index, &step).await;
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        // Opted in only: the task text on the `invoke_agent` span (the current one).
        if self.config.record_content {
            tracing::Span::current().record(
                "gen_ai.input.messages",
                trace::messages("user", &request.task, None).as_str(),
            );
        }
        let record_content = self.config.record_content;
        let renew = self.renew_lease(&session_id, lease);
        let remote_cancel = self.watch_cancel_requests(&session_id, lease, &reason, &cancel);
        // A heartbeat keeps clients that reset their time-outs on progress waiting.
        let heartbeat = async {
            let started = tokio::time::Instant::now();
            let mut interval = tokio::time::interval(HEARTBEAT);
            interval.tick().await;
            loop {
                interval.tick().await;
                ctx.report(&format!("still working ({}s)", started.elapsed().as_secs()));
            }
        };
        let outcome = tokio::select! {
            outcome = self.backend.execute(request, &ctx) => outcome,
            () = cancel.cancelled() => Err(ExecutionError::cancelled()),
            lost = renew => Err(lost),
            never = heartbeat => match never {},
            never = remote_cancel => match never {},
            never = record_steps => match never {},
        };
        // The steps the backend streamed just before it ended.
        drop(ctx);
        while let Ok(step) = recorded.try_recv() {
            self.record_step(&session_id, turn_index, &step).await;
        }
        if let Ok(mut running) = self.running.lock() {
            running.remove(&session_id);
        }
        match outcome {
            // Every execution is at least one turn: the turn index keys its events and its kept
            // output, which a zero would make collide with the previous execution's.
            Ok(mut output) => {
                output.turn_count = output.turn_count.max(1);
                if record_content {
                    tracing::Span::current().record(
                        "gen_ai.output.messages",
                        trace::messages(
                            "assistant",
                            &output.output_text,
                            output.stop_reason.as_deref(),
                        )
                        .as_str(),
                    );
                }
                self.observer.execution_output(
                    self.backend.name(),
                    output.turn_count,
                    output.usage.as_ref(),
                );
                Ok(output)
            }
            Err(e) if e.kind == FailureKind::Cancelled || cancel.is_cancelled() => {
                let why = reason
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .unwrap_or_else(|| CLIENT_CANCELLED.to_owned());
                Err(ExecutionError::new(e.code, why).with_kind(FailureKind::Cancelled))
            }
            Err(e) => Err(e),
        }
    }

    /// Appends a streamed step's event; a store that fails loses only that event.
    async fn record_step(&self, session_id: &str, turn_index: i64, step: &BackendStep) {
        let event = Event::backend_step(turn_index, step);
        if let Err(e) = self.store.append_events(session_id, &[event]).await {
            tracing::warn!(session_id, error = %e.message, "could not record a streamed step");
        }
    }

    /// Cancellation requested through another process on the same store
    /// ([`SessionStore::request_cancel`]): every [`CANCEL_POLL_PERIOD`], or at once when the
    /// store pushes a wake-up for this session ([`SessionStore::cancel_wakeups`]), one read of
    /// [`SessionStore::cancel_requested`]; a request records its reason (unless the run was
    /// already cancelled with one) and cancels the run. Never returns: raced against the work.
    async fn watch_cancel_requests(
        &self,
        session_id: &str,
        lease: &Lease,
        reason: &std::sync::Mutex<Option<String>>,
        cancel: &CancellationToken,
    ) -> std::convert::Infallible {
        use tokio::sync::broadcast::error::RecvError;
        let mut wakeups = self.store.cancel_wakeups();
        let mut interval = tokio::time::interval(CANCEL_POLL_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: a run that ends within one period reads nothing.
        interval.tick().await;
        loop {
            match wakeups.as_mut() {
                Some(rx) => tokio::select! {
                    _ = interval.tick() => {}
                    woken = rx.recv() => match woken {
                        Ok(id) if id != session_id => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => {
                            wakeups = None;
                            continue;
                        }
                    },
                },
                None => {
                    interval.tick().await;
                }
            }
            match self.store.cancel_requested(session_id, lease).await {
                Ok(Some(why)) => {
                    tracing::info!(session_id, reason = %why, "cancel requested through another process");
                    if let Ok(mut reason) = reason.lock() {
                        reason.get_or_insert(why);
                    }
                    cancel.cancel();
                    return std::future::pending().await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(session_id, error = %e, "could not check for a cancel request; retrying");
                }
            }
        }
    }

    /// Renews `owner`'s lease every third of the TTL: raced against work done under the lock
    /// (the backend call, mediation), so that the lease sweeper never takes a session whose
    /// execution is alive. Returns only when the lease is lost, and the work must stop at
    /// once: the store answers that `owner` no longer holds the lock (another execution took
    /// it, or it was cleared), or renewals kept failing until the lease could expire before
    /// the next one (a single failed renewal is retried at the next tick).
    async fn renew_lease(&self, session_id: &str, lease: &Lease) -> ExecutionError {
        let ttl = self.config.lock_ttl;
        let period = (ttl / 3).max(Duration::from_millis(10));
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        let mut renewed = tokio::time::Instant::now();
        loop {
            interval.tick().await;
            match self.store.renew_lock(session_id, lease, ttl).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return lease_lost(
                        session_id,
                        "another execution holds its lock, or the lock was cleared",
                    );
                }
                Err(e) if renewed.elapsed() + period >= ttl => {
                    return lease_lost(session_id, &format!("it could not be renewed ({e})"));
                }
                Err(e) => {
                    tracing::warn!(session_id, error = %e, "could not renew the session lease; retrying");
                }
            }
        }
    }

    /// An execution stopped because it lost its lease: a `running` session that this execution
    /// or no one holds becomes `interrupted` with `session_interrupted {"reason": "lease lost"}`
    /// ([`SessionStore::interrupt_execution`]); a session another execution holds, or that the
    /// sweeper already interrupted, is left as it is. Nothing of the run's result is written.
    async fn record_lease_lost(
        &self,
        session_id: &str,
        lease: &Lease,
        workflow: Workflow,
        profile: Profile,
        error: ExecutionError,
    ) -> Envelope {
        tracing::warn!(session_id, owner = %lease.owner, generation = lease.generation, error = %error, "execution stopped: lease lost");
        let mut env = Envelope::failure(
            session_id,
            workflow,
            profile.as_str(),
            error.code,
            error.message,
        );
        match self
            .store
            .interrupt_execution(session_id, lease, LEASE_LOST)
            .await
        {
            Ok(true) => {}
            Ok(false) => env.warnings.push(format!(
                "Session {session_id} is held by another execution or no longer running: its status is unchanged"
            )),
            Err(e) => {
                tracing::error!(session_id, error = %e, "could not mark the session interrupted");
                self.release_after_failure(session_id, lease).await;
                env.warnings.push(e.message);
            }
        }
        env
    }

    /// A cancelled execution: `session_cancelled` event, status `cancelled`, lock released.
    async fn record_cancelled(
        &self,
        session_id: &str,
        lease: &Lease,
        workflow: Workflow,
        profile: Profile,
        turn: i64,
        reason: &str,
    ) -> Envelope {
        self.observer.cancelled(workflow);
        let env = Envelope::failure(
            session_id,
            workflow,
            profile.as_str(),
            ErrorCode::SessionCancelled,
            format!("Session {session_id} was cancelled: {reason}"),
        );
        self.finish_without_output(
            session_id,
            lease,
            SessionStatus::Cancelled,
            vec![Event::session_cancelled(turn, reason)],
            env,
            "a cancelled execution",
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Results kept for agent_wait_session
    // -----------------------------------------------------------------------------------------

    /// Keeps `env` as the result of `session_id`'s execution `execution`
    /// ([`SessionStore::keep_result`]); a result larger than [`MAX_KEPT_RESULT_BYTES`] is kept
    /// as a `session_result_unavailable` envelope naming its size. A failure is logged: the
    /// caller has its answer, and a waiter then answers `session_result_unavailable`.
    ///
    /// The final write of an execution keeps its envelope in the same transaction
    /// ([`Finish::result`]); this writes only when the call's envelope is not the one kept
    /// there (the final write failed, the lease was lost, or the envelope changed after it).
    async fn keep_result(&self, session_id: &str, execution: i64, env: &Envelope) {
        let text = result_text(session_id, env);
        let kept = self
            .kept
            .lock()
            .ok()
            .and_then(|mut kept| kept.remove(session_id));
        if kept.as_deref() != Some(text.as_str())
            && let Err(e) = self.store.keep_result(session_id, execution, &text).await
        {
            tracing::warn!(session_id, error = %e, "could not keep the result of an execution");
        }
        self.results.notify_waiters();
    }

    /// The answer of a call whose work goes on after it answered
    /// (`docs/reference/tools.md#15-background-runs`): the running envelope of `session_id`,
    /// with the session's profile.
    pub async fn running_envelope(&self, session_id: &str, workflow: Workflow) -> Envelope {
        let profile = match self.store.get_session(session_id).await {
            Ok(Some(record)) => record.profile,
            _ if workflow == Workflow::VerifyTask => Profile::Verification,
            _ => Profile::General,
        };
        Envelope::running(session_id, workflow, profile.as_str())
    }

    /// `agent_wait_session` (`docs/reference/tools.md#14-agent_wait_session`): waits, at most
    /// `req.timeout`, for the session to leave `running`, and answers the envelope kept for its
    /// latest execution; at the timeout, the running envelope. Reads the store every
    /// [`WAIT_POLL_PERIOD`] (so a run of any process on the same store is seen), and at once when
    /// a run of this process keeps its result. Reports progress every [`WAIT_PROGRESS_PERIOD`].
    /// An unknown session is `session_not_found` (the `{"error": …}` of `agent_get_session`).
    pub async fn wait_session(
        &self,
        req: &WaitSessionRequest,
        ctx: &ExecContext,
    ) -> Result<Value, ErrorObject> {
        let id = req.session_id.as_str();
        let started = tokio::time::Instant::now();
        let deadline = started + req.timeout;
        let mut next_report = started;
        loop {
            let woken = self.results.notified();
            let record = match self.store.get_session(id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    return Err(ErrorObject::bare(
                        ErrorCode::SessionNotFound,
                        format!("Session not found: {id}"),
                    ));
                }
                Err(e) => return Err(ErrorObject::bare(ErrorCode::InternalError, e.message)),
            };
            let now = tokio::time::Instant::now();
            if record.status != SessionStatus::Running {
                let kept = match self.store.kept_result(id).await {
                    Ok(kept) => kept,
                    Err(e) => return Err(ErrorObject::bare(ErrorCode::InternalError, e.message)),
                };
                if let Some((execution, text)) = kept
                    && execution >= record.request_count
                    && let Ok(value) = serde_json::from_str::<Value>(&text)
                {
                    ctx.report(&format!("session {id} {}", record.status));
                    return Ok(value);
                }
                // The final write keeps the result with the end it records: an ended session
                // without one has none to wait for.
                ctx.report(&format!("session {id} {}", record.status));
                return Ok(no_kept_result(&record).to_value());
            }
            if now >= deadline || ctx.cancel.is_cancelled() {
                return Ok(running_now(&record).to_value());
            }
            if now >= next_report {
                let waited = now.duration_since(started).as_secs();
                ctx.report(&format!("session {id} running (waited {waited}s)"));
                next_report = now + WAIT_PROGRESS_PERIOD;
            }
            let until = (now + WAIT_POLL_PERIOD).min(deadline);
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
                () = ctx.cancel.cancelled() => {}
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // agent_cancel_session
    // -----------------------------------------------------------------------------------------

    /// Cancels the execution in flight on `session_id`
    /// (`docs/reference/tools.md#10-agent_cancel_session`) and waits until it is recorded as
    /// `cancelled`. A session that is not running here answers `session_status_error` and nothing
    /// changes.
    pub async fn cancel_session(&self, session_id: &str) -> Envelope {
        self.cancel_session_with_reason(session_id, "cancelled by agent_cancel_session")
            .await
    }

    /// [`Engine::cancel_session`] with the reason recorded in `session_cancelled`.
    pub async fn cancel_session_with_reason(&self, session_id: &str, why: &str) -> Envelope {
        let workflow = Workflow::CancelSession;
        let record = match self.store.get_session(session_id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Envelope::failure(
                    session_id,
                    workflow,
                    Profile::General.as_str(),
                    ErrorCode::SessionNotFound,
                    format!("Session not found: {session_id}"),
                );
            }
            Err(e) => return store_failure(session_id, workflow, Profile::General, &e),
        };
        let profile = record.profile;
        let token = self.running.lock().ok().and_then(|running| {
            running.get(session_id).map(|f| {
                if let Ok(mut reason) = f.reason.lock() {
                    reason.get_or_insert_with(|| why.to_owned());
                }
                f.cancel.clone()
            })
        });
        let Some(token) = token else {
            // Not running here: a run under a lock in another process on the same store is
            // asked to stop through the store ([`SessionStore::request_cancel`]).
            if record.status == SessionStatus::Running {
                match self.store.request_cancel(session_id, why).await {
                    Ok(true) => {
                        return self
                            .await_cancelled(session_id, profile, record.status)
                            .await;
                    }
                    Ok(false) => {}
                    Err(e) => return store_failure(session_id, workflow, profile, &e),
                }
            }
            return Envelope::failure(
                session_id,
                workflow,
                profile.as_str(),
                ErrorCode::SessionStatusError,
                format!(
                    "Session {session_id} is not running in this server (status: {}); only a running session can be cancelled",
                    record.status
                ),
            );
        };
        token.cancel();
        self.await_cancelled(session_id, profile, record.status)
            .await
    }

    /// Asks the execution in flight on `session_id` to stop with `why`, without waiting for
    /// it (`tasks/cancel`, `notifications/cancelled` received by another node): a run in this
    /// process is cancelled at once; one in another process is asked through the store
    /// ([`SessionStore::request_cancel`]) and stops within [`CANCEL_POLL_PERIOD`]. Answers
    /// whether a run was reached.
    pub async fn request_cancel(&self, session_id: &str, why: &str) -> Result<bool, StoreError> {
        let token = self.running.lock().ok().and_then(|running| {
            running.get(session_id).map(|f| {
                if let Ok(mut reason) = f.reason.lock() {
                    reason.get_or_insert_with(|| why.to_owned());
                }
                f.cancel.clone()
            })
        });
        match token {
            Some(token) => {
                token.cancel();
                Ok(true)
            }
            None => self.store.request_cancel(session_id, why).await,
        }
    }

    /// The answer of `agent_cancel_session` once the run was told to stop: the run records its
    /// own end; wait for it (at most [`CANCEL_WAIT`]) so the answer reflects it.
    async fn await_cancelled(
        &self,
        session_id: &str,
        profile: Profile,
        mut status: SessionStatus,
    ) -> Envelope {
        let workflow = Workflow::CancelSession;
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.store.get_session(session_id).await {
                Ok(Some(r)) if r.status != SessionStatus::Running => {
                    status = r.status;
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => return store_failure(session_id, workflow, profile, &e),
            }
        }
        let mut result = Map::new();
        result.insert("session_id".into(), json!(session_id));
        result.insert("status".into(), json!(status));
        Envelope::success(
            session_id.to_owned(),
            workflow,
            profile,
            format!("Session {session_id} cancelled"),
            result,
        )
    }

    async fn save_artifact(
        &self,
        session_id: &str,
        workflow: Workflow,
        profile: Profile,
        kind: ArtifactKind,
        turn_index: i64,
        body: &str,
    ) -> Option<ArtifactRef> {
        let (artifact_type, logical_name, mime_type) = kind.describe();
        let artifact = NewArtifact {
            session_id,
            workflow,
            profile,
            artifact_type,
            logical_name,
            mime_type,
            turn_index,
            producer_tool: workflow.as_str(),
            body: body.as_bytes(),
        };
        match self.store.store_artifact(artifact).await {
            Ok(reference) => Some(reference),
            Err(e) => {
                tracing::warn!(session_id, error = %e, "artifact not stored");
                None
            }
        }
    }

    /// Federated tool routing per backend (`docs/reference/backends.md#6-federated-tool-routing`):
    /// what the backend is given, the catalog event, and the envelope warning. Built-in tools go
    /// only to backends with a native tool loop; federated tools are forwarded as text to a backend
    /// that can only describe them when limited forwarding is on, and otherwise withheld with a
    /// warning.
    fn route_tools(&self, profile: Profile, turn: i64) -> ToolRouting {
        let capabilities = self.backend.capabilities();
        // The first provider to offer a name owns it (the API rejects duplicate tool names).
        let mut builtin: Vec<ToolDefinition> = Vec::new();
        let mut federated: Vec<ToolDefinition> = Vec::new();
        for provider in &self.tool_providers {
            for tool in provider.visible_tools(profile) {
                if builtin
                    .iter()
                    .chain(&federated)
                    .any(|t| t.name == tool.name)
                {
                    continue;
                }
                if provider.federated() {
                    federated.push(tool);
                } else {
                    builtin.push(tool);
                }
            }
        }
        let visible: Vec<String> = federated.iter().map(|t| t.name.clone()).collect();
        let catalog = |payload: Value| Event {
            event_type: EventType::DownstreamToolCatalogResolved,
            turn_index: turn,
            payload,
        };
        if capabilities.supports_downstream_tools {
            let event = (!visible.is_empty()).then(|| catalog(json!({ "visible_tools": visible })));
            builtin.extend(federated);
            let executor = !builtin.is_empty();
            return ToolRouting {
                tools: builtin,
                event,
                warning: None,
                executor,
            };
        }
        if visible.is_empty() {
            return ToolRouting::default();
        }
        if capabilities.supports_native_mcp_servers {
            // The backend's own MCP client calls them (the CLI gets them with --mcp-config).
            let event = catalog(json!({
                "visible_tools": visible,
                "forwarded": visible.len(),
                "dropped": 0,
                "dropped_names": [],
                "forwarding_mode": "native_mcp_config",
            }));
            return ToolRouting {
                tools: Vec::new(),
                event: Some(event),
                warning: None,
                executor: false,
            };
        }
        if capabilities.supports_limited_downstream_tools && self.config.limited_tool_forwarding {
            let (compatible, dropped): (Vec<ToolDefinition>, Vec<ToolDefinition>) = federated
                .into_iter()
                .partition(|t| continuation::screen_tool(t).is_compatible());
            let dropped_names: Vec<&str> = dropped.iter().map(|t| t.name.as_str()).collect();
            let event = catalog(json!({
                "visible_tools": visible,
                "forwarded": compatible.len(),
                "dropped": dropped.len(),
                "dropped_names": dropped_names,
                "forwarding_mode": "limited_text_injection",
            }));
            return ToolRouting {
                tools: compatible,
                event: Some(event),
                warning: None,
                executor: false,
            };
        }
        let event = catalog(json!({
            "visible_tools": visible,
            "forwarded": false,
            "reason": format!("backend '{}' does not support downstream tools", self.backend.name()),
        }));
        let warning = format!(
            "Backend '{}' does not support downstream federation tools. Visible tools will not be forwarded. Switch to the 'api' backend to use federation tools.",
            self.backend.name()
        );
        ToolRouting {
            tools: Vec::new(),
            event: Some(event),
            warning: Some(warning),
            executor: false,
        }
    }

    fn executor_for(
        &self,
        session_id: &str,
        profile: Profile,
        turn_index: i64,
        working_dir: Option<&std::path::Path>,
    ) -> Arc<dyn ToolExecutor> {
        Arc::new(ProviderExecutor {
            providers: self.tool_providers.clone(),
            observer: Arc::clone(&self.observer),
            ctx: ToolCallContext {
                session_id: session_id.to_owned(),
                turn_index,
                profile,
                working_directory: working_dir.map(PathBuf::from),
            },
        })
    }
}

/// A successful answer checked against the caller's output schema (none: unchanged): its
/// JSON value, or the execution fails with `structured_output_invalid`, the violations and
/// the start of the raw answer in the error's details.
fn check_structured(
    outcome: Result<BackendOutput, ExecutionError>,
    schema: Option<&crate::structured::OutputSchema>,
) -> (Result<BackendOutput, ExecutionError>, Option<Value>) {
    let (Ok(output), Some(schema)) = (&outcome, schema) else {
        return (outcome, None);
    };
    match schema.check_answer(&output.output_text) {
        Ok(value) => (outcome, Some(value)),
        Err(problems) => {
            let error = ExecutionError::new(
                ErrorCode::StructuredOutputInvalid,
                crate::structured::invalid_answer_message(&problems),
            )
            .with_details(crate::structured::invalid_answer_details(
                &problems,
                &output.output_text,
            ));
            (Err(error), None)
        }
    }
}

/// The most steps of one execution kept for recording at once; further ones are dropped (and
/// counted in the log) until the recorder catches up. A CLI streams a few per model turn.
const STEP_BUFFER: usize = 1024;

/// The [`StepSink`] of one execution: a bounded channel the engine drains into the event log.
struct StepChannel {
    sender: tokio::sync::mpsc::Sender<BackendStep>,
}

impl StepChannel {
    fn open() -> (Arc<dyn StepSink>, tokio::sync::mpsc::Receiver<BackendStep>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(STEP_BUFFER);
        (Arc::new(Self { sender }), receiver)
    }
}

impl StepSink for StepChannel {
    fn record(&self, step: BackendStep) {
        if self.sender.try_send(step).is_err() {
            tracing::debug!("a streamed step was not recorded: the buffer is full");
        }
    }
}

/// Reads evidence or attachments through the policy (nothing to read, nothing asked).
fn read_evidence(
    policy: &dyn WorkspacePolicy,
    paths: &[String],
    budget: usize,
) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
    if paths.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    policy.read_evidence(paths, budget)
}

/// The outcome of verification's evidence and policy steps (`docs/verification.md`).
enum EvidenceCheck {
    /// Paths are missing and the request is fail-closed: the early response, no session.
    MissingFailClosed(Vec<String>),
    Checked {
        missing: Vec<String>,
        working_dir: PathBuf,
        evidence: Vec<Evidence>,
        warnings: Vec<String>,
    },
}

/// What one execution is given in tools.
#[derive(Default)]
struct ToolRouting {
    tools: Vec<ToolDefinition>,
    event: Option<Event>,
    warning: Option<String>,
    /// Whether the backend runs the tools (a native tool loop) and so needs an executor.
    executor: bool,
}

/// Dispatches a model's tool call to the provider that shows the tool to this profile.
struct ProviderExecutor {
    providers: Vec<Arc<dyn ToolProvider>>,
    observer: Arc<dyn Observer>,
    ctx: ToolCallContext,
}

#[async_trait]
impl ToolExecutor for ProviderExecutor {
    async fn call(&self, name: &str, input: Value) -> Result<String, String> {
        for provider in &self.providers {
            if provider
                .visible_tools(self.ctx.profile)
                .iter()
                .any(|t| t.name == name)
            {
                let kind = if provider.federated() {
                    ToolKind::Federated
                } else {
                    ToolKind::Builtin
                };
                // The backend's `execute_tool` span is the current one: it learns the kind.
                tracing::Span::current().record("claude_agent_mcp.tool.kind", kind.as_str());
                let result = provider.call(&self.ctx, name, input).await;
                self.observer.tool_call(kind, result.is_ok());
                return result;
            }
        }
        Err(format!(
            "Tool '{name}' is not visible to profile '{}'",
            self.ctx.profile
        ))
    }
}

#[derive(Clone, Copy)]
enum ArtifactKind {
    Output,
    VerificationReport,
}

impl ArtifactKind {
    const fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ArtifactKind::Output => ("output", "output.txt", "text/plain"),
            ArtifactKind::VerificationReport => (
                "verification-report",
                "verification-report.md",
                "text/markdown",
            ),
        }
    }
}

/// `docs/reference/sessions.md#8-conversation-history`, with full outputs: user inputs, and for
/// each response the full output kept for its turn (the one-line summary when none was kept, e.g.
/// in a database written by the original); a trailing unanswered user turn is dropped; the oldest
/// messages are dropped while the total exceeds `budget_chars`, so the history still starts with a
/// user turn.
pub fn conversation_history(
    events: &[StoredEvent],
    outputs: &[(i64, String)],
    budget_chars: usize,
) -> Vec<ChatMessage> {
    let mut messages = Vec::new();
    // The transcript of the execution whose summary comes next (same turn index).
    let mut transcript: Option<(i64, &Vec<Value>)> = None;
    for event in events {
        if event.event_type == EventType::ProviderTranscript.as_str() {
            transcript = event
                .payload
                .get("messages")
                .and_then(Value::as_array)
                .map(|m| (event.turn_index, m));
            continue;
        }
        if event.event_type == EventType::ProviderResponseSummary.as_str()
            && let Some((turn, replay)) = transcript.take()
            && turn == event.turn_index
            && let Some(replayed) = replay_messages(replay)
        {
            messages.extend(replayed);
            continue;
        }
        let (role, text) = match EventType::parse(&event.event_type) {
            Some(EventType::UserInput) => {
                let text = event
                    .payload
                    .get("task")
                    .or_else(|| event.payload.get("message"));
                (ChatRole::User, text.and_then(Value::as_str))
            }
            Some(EventType::ProviderResponseSummary) => {
                let full = outputs
                    .iter()
                    .find(|(turn, text)| *turn == event.turn_index && !text.is_empty())
                    .map(|(_, text)| text.as_str());
                let summary = event.payload.get("summary").and_then(Value::as_str);
                (ChatRole::Assistant, full.or(summary))
            }
            _ => continue,
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            messages.push(ChatMessage {
                role,
                content: text.to_owned(),
                blocks: None,
            });
        }
    }
    if messages.last().is_some_and(|m| m.role == ChatRole::User) {
        messages.pop();
    }
    // Each message measured once (a replayed block is serialized to be measured).
    let sizes: Vec<usize> = messages.iter().map(ChatMessage::size_chars).collect();
    let mut total: usize = sizes.iter().sum();
    let mut start = 0;
    while total > budget_chars && start < messages.len() {
        total -= sizes[start];
        start += 1;
    }
    // The history starts with a user's own message (not an answer, not tool results).
    while messages
        .get(start)
        .is_some_and(|m| m.role == ChatRole::Assistant || m.blocks.is_some())
    {
        start += 1;
    }
    messages.drain(..start);
    messages
}

/// A `provider_transcript`'s messages as history: each `{"role", "content": [blocks]}` with
/// roles alternating from the assistant's and ending with the assistant's answer; `None` (the
/// answer's text is replayed instead) for anything else.
fn replay_messages(messages: &[Value]) -> Option<Vec<ChatMessage>> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let role = match message.get("role").and_then(Value::as_str) {
            Some("assistant") if i % 2 == 0 => ChatRole::Assistant,
            Some("user") if i % 2 == 1 => ChatRole::User,
            _ => return None,
        };
        let blocks = message.get("content").and_then(Value::as_array)?.clone();
        out.push(ChatMessage {
            role,
            content: String::new(),
            blocks: Some(blocks),
        });
    }
    (out.len() % 2 == 1).then_some(out)
}

/// `docs/reference/verification.md#3-prompt`. With `evidence`, the contents follow the list of
/// paths (`docs/reference/verification.md#10-evidence-contents`).
pub fn verification_prompt(req: &VerifyTaskRequest, evidence: &[Evidence]) -> String {
    let mut lines = vec![format!("Task to verify: {}", req.task)];
    if let Some(scope) = req.scope.as_deref().filter(|s| !s.is_empty()) {
        lines.push(format!("Scope: {scope}"));
    }
    if !req.evidence_paths.is_empty() {
        lines.push("Evidence paths:".to_owned());
        lines.extend(req.evidence_paths.iter().map(|p| format!("  - {p}")));
    }
    if !evidence.is_empty() {
        lines.push(String::new());
        lines.push("Evidence contents:".to_owned());
        lines.push(evidence::render(evidence).trim_end().to_owned());
    }
    lines.push(String::new());
    lines.push(
        "Please evaluate the evidence and provide a structured verification result.".to_owned(),
    );
    lines.join("\n")
}

/// The JSON text kept as `env`'s result: `env` itself, or, when it is larger than
/// [`MAX_KEPT_RESULT_BYTES`], a `session_result_unavailable` envelope saying so.
fn result_text(session_id: &str, env: &Envelope) -> String {
    let text = serde_json::to_string(env).unwrap_or_default();
    if text.len() <= MAX_KEPT_RESULT_BYTES {
        return text;
    }
    let mut replacement = Envelope::failure(
        session_id,
        env.workflow,
        env.profile.clone(),
        ErrorCode::SessionResultUnavailable,
        format!(
            "The result of session {session_id} is {} bytes, more than the {MAX_KEPT_RESULT_BYTES} bytes kept; read its output with agent_get_session or the session's resources",
            text.len()
        ),
    );
    replacement.artifacts = env.artifacts.clone();
    serde_json::to_string(&replacement).unwrap_or_default()
}

/// The running envelope of a session seen `running`: the workflow of the execution that holds
/// its lock (read from the lock owner token), else the session's.
fn running_now(record: &SessionRecord) -> Envelope {
    let workflow = record
        .locked_by
        .as_deref()
        .and_then(ids::workflow_of_lock_owner)
        .unwrap_or(record.workflow);
    Envelope::running(
        record.session_id.as_str(),
        workflow,
        record.profile.as_str(),
    )
}

/// The answer of `agent_wait_session` for an ended session with no result kept for its latest
/// execution: `session_interrupted` (its process stopped before the run recorded a result) or
/// `session_result_unavailable`.
fn no_kept_result(record: &SessionRecord) -> Envelope {
    let id = &record.session_id;
    let (code, message) = if record.status == SessionStatus::Interrupted {
        (
            ErrorCode::SessionInterrupted,
            format!(
                "Session {id} was interrupted before its execution recorded a result; continue it with agent_continue_session"
            ),
        )
    } else {
        (
            ErrorCode::SessionResultUnavailable,
            format!(
                "No result is kept for the latest execution of session {id} (status: {}); read the session with agent_get_session",
                record.status
            ),
        )
    };
    Envelope::failure(
        id.as_str(),
        record.workflow,
        record.profile.as_str(),
        code,
        message,
    )
}

/// The envelope of a concluded run or continuation ([`Engine::conclude`]), reported on `ctx`:
/// `session <id> completed`, or the failure's summary.
fn reported(
    ctx: &ExecContext,
    session_id: &str,
    concluded: Result<Envelope, Box<Envelope>>,
) -> Envelope {
    match concluded {
        Ok(env) => {
            ctx.report(&format!("session {session_id} completed"));
            env
        }
        Err(env) => {
            ctx.report(&env.summary);
            *env
        }
    }
}

/// `session_not_found` for the session `agent_fork_session` was asked to fork.
fn fork_not_found(id: &str) -> Envelope {
    Envelope::failure(
        id,
        Workflow::ForkSession,
        Profile::General.as_str(),
        ErrorCode::SessionNotFound,
        format!("Session not found: {id}"),
    )
}

/// The event that ends turn `at_turn` in a session's log: the response summary of the execution
/// that completed it. Every later event belongs to a later execution.
fn fork_point(events: &[StoredEvent], at_turn: i64) -> Option<&StoredEvent> {
    events.iter().find(|e| {
        e.turn_index == at_turn && e.event_type == EventType::ProviderResponseSummary.as_str()
    })
}

/// The turns a session can be forked at (those an execution ended), for the message of a turn
/// that cannot: the last ten, as a list.
fn forkable_turns(events: &[StoredEvent], turn_count: i64) -> String {
    let mut turns: Vec<i64> = events
        .iter()
        .filter(|e| {
            e.event_type == EventType::ProviderResponseSummary.as_str()
                && (1..=turn_count).contains(&e.turn_index)
        })
        .map(|e| e.turn_index)
        .collect();
    turns.dedup();
    let shown = &turns[turns.len().saturating_sub(10)..];
    let list: Vec<String> = shown.iter().map(i64::to_string).collect();
    match list.as_slice() {
        [] => "none".to_owned(),
        [one] => one.clone(),
        more => format!(
            "{} or {}",
            more[..more.len() - 1].join(", "),
            more[more.len() - 1]
        ),
    }
}

fn lease_is_live(record: &SessionRecord) -> bool {
    record.locked_by.is_some()
        && record
            .lock_expires_at
            .is_none_or(|exp| exp > Timestamp::now())
}

/// Continuation gate: a running session under a live lease is a conflict, otherwise a denial.
fn running_gate(record: &SessionRecord, workflow: Workflow) -> Option<Envelope> {
    if record.status != SessionStatus::Running {
        return None;
    }
    match (&record.locked_by, lease_is_live(record)) {
        (Some(holder), true) => Some(conflict(
            &record.session_id,
            workflow,
            record.profile,
            holder,
        )),
        _ => Some(running_denied(&record.session_id, workflow, record.profile)),
    }
}

fn running_denied(id: &str, workflow: Workflow, profile: Profile) -> Envelope {
    Envelope::failure(
        id,
        workflow,
        profile.as_str(),
        ErrorCode::PolicyDenied,
        "Session is currently running — use locking to gate concurrent access",
    )
}

fn conflict(id: &str, workflow: Workflow, profile: Profile, holder: &str) -> Envelope {
    Envelope::failure(
        id,
        workflow,
        profile.as_str(),
        ErrorCode::SessionConflict,
        format!("Session {id} is locked by {holder}"),
    )
}

/// An unexpected failure: `provider_runtime_error` with the raw text, no event.
fn store_failure(
    session_id: &str,
    workflow: Workflow,
    profile: Profile,
    error: &StoreError,
) -> Envelope {
    tracing::error!(session_id, error = %error, "session store failure");
    Envelope::failure(
        session_id,
        workflow,
        profile.as_str(),
        ErrorCode::ProviderRuntimeError,
        error.message.clone(),
    )
}

/// A verification envelope (failed unless the caller marks it completed).
fn verification_envelope(
    session_id: &str,
    summary: String,
    result: VerificationResult,
    warnings: Vec<String>,
    errors: Vec<ErrorObject>,
) -> Envelope {
    Envelope {
        ok: false,
        session_id: session_id.to_owned(),
        status: EnvelopeStatus::Failed,
        workflow: Workflow::VerifyTask,
        profile: Profile::Verification.as_str().to_owned(),
        summary,
        result: to_map(&result),
        artifacts: Vec::new(),
        warnings,
        errors,
    }
}

/// The `errors[].code` of an unavailable result: its failure code where the reference names one
/// (`docs/reference/verification.md#84-unavailable`).
fn failure_error_code(failure: &Unavailability) -> ErrorCode {
    match failure.failure_code {
        FailureCode::Contract(code) => code,
        FailureCode::Api(_) => ErrorCode::ProviderRuntimeError,
    }
}

fn to_map<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a workflow method returns, without calling it.
    fn future_size<'a, R, F: std::future::Future>(
        _method: impl FnOnce(&'a Engine, R, &'a ExecContext) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every running workflow's future lives on the heap for as long as it runs; the wrappers
    /// around a workflow (its span and report, the kept result) add a few fields to it, never a
    /// second copy of it, as passing the workflow's future as an argument did (four times the
    /// workflow's own size for `agent_run_task`; [`Engine::observed`]).
    #[test]
    fn workflow_futures_stay_small() {
        let continuation = |engine: &'static Engine, req, ctx: &'static ExecContext| {
            engine.continue_as(req, ctx, Workflow::ContinueSession)
        };
        let sizes = [
            (
                "run_task",
                future_size(Engine::run_task),
                future_size(Engine::run_task_once),
            ),
            (
                "verify_task",
                future_size(Engine::verify_task),
                future_size(Engine::verify_task_once),
            ),
            (
                "fork_session",
                future_size(Engine::fork_session),
                future_size(Engine::fork_session_unobserved),
            ),
            (
                "continue_session",
                future_size(Engine::continue_session),
                future_size(continuation),
            ),
        ];
        for (name, outer, inner) in sizes {
            assert!(
                outer < inner + inner / 2,
                "the future of {name} is {outer} bytes, its workflow's {inner}"
            );
        }
    }

    fn event(id: i64, event_type: EventType, turn: i64, payload: Value) -> StoredEvent {
        StoredEvent {
            event_id: id,
            session_id: "s".into(),
            event_type: event_type.as_str().into(),
            turn_index: turn,
            payload,
            created_at: String::new(),
        }
    }

    fn msg(role: ChatRole, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            blocks: None,
        }
    }

    fn log() -> Vec<StoredEvent> {
        vec![
            event(1, EventType::UserInput, 0, json!({"task": "task one"})),
            event(
                2,
                EventType::SystemPromptResolved,
                0,
                json!({"profile": "general"}),
            ),
            event(
                3,
                EventType::ProviderResponseSummary,
                1,
                json!({"summary": "answer one", "stop_reason": null}),
            ),
            event(4, EventType::UserInput, 1, json!({"message": "two"})),
            event(
                5,
                EventType::ProviderResponseSummary,
                2,
                json!({"summary": "answer two", "stop_reason": null}),
            ),
            event(6, EventType::UserInput, 2, json!({"message": "unanswered"})),
        ]
    }

    #[test]
    fn history_uses_summaries_without_outputs_and_drops_the_trailing_user_turn() {
        assert_eq!(
            conversation_history(&log(), &[], usize::MAX),
            vec![
                msg(ChatRole::User, "task one"),
                msg(ChatRole::Assistant, "answer one"),
                msg(ChatRole::User, "two"),
                msg(ChatRole::Assistant, "answer two"),
            ]
        );
    }

    #[test]
    fn history_replays_a_tool_loop_transcript_and_never_starts_inside_one() {
        let tool_use = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {}}]});
        let result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]});
        let answer =
            json!({"role": "assistant", "content": [{"type": "text", "text": "answer two"}]});
        let mut events = log();
        events.insert(
            4,
            event(
                45,
                EventType::ProviderTranscript,
                2,
                json!({"messages": [tool_use, result, answer]}),
            ),
        );
        let history = conversation_history(&events, &[], usize::MAX);
        let blocks = |m: &ChatMessage| m.blocks.clone();
        assert_eq!(history.len(), 6, "{history:?}");
        assert_eq!(history[2], msg(ChatRole::User, "two"));
        assert_eq!(history[3].role, ChatRole::Assistant);
        assert_eq!(
            blocks(&history[3]),
            Some(tool_use["content"].as_array().unwrap().clone())
        );
        assert_eq!(history[4].role, ChatRole::User);
        assert_eq!(
            blocks(&history[4]),
            Some(result["content"].as_array().unwrap().clone())
        );
        assert_eq!(
            blocks(&history[5]),
            Some(answer["content"].as_array().unwrap().clone())
        );
        // Cut by the budget inside the replayed loop: the history still starts at a user's own
        // message, never at tool results.
        let last_three: usize = history[3..].iter().map(ChatMessage::size_chars).sum();
        let cut = conversation_history(&events, &[], last_three + 1);
        assert!(
            cut.is_empty() || cut[0].blocks.is_none() && cut[0].role == ChatRole::User,
            "{cut:?}"
        );
        // A transcript that does not alternate is not replayed: the answer's text is.
        let mut broken = log();
        broken.insert(
            4,
            event(
                45,
                EventType::ProviderTranscript,
                2,
                json!({"messages": [json!({"role": "user", "content": []})]}),
            ),
        );
        assert_eq!(
            conversation_history(&broken, &[], usize::MAX)[3],
            msg(ChatRole::Assistant, "answer two")
        );
    }

    #[test]
    fn history_prefers_full_outputs_per_turn() {
        let outputs = [(2, "answer two\nin full".to_owned())];
        assert_eq!(
            conversation_history(&log(), &outputs, usize::MAX)[3],
            msg(ChatRole::Assistant, "answer two\nin full")
        );
    }

    #[test]
    fn history_drops_the_oldest_exchanges_beyond_the_budget_and_starts_with_a_user_turn() {
        // Total is 8 + 10 + 3 + 10 = 31 characters; a budget of 20 keeps only the last pair.
        assert_eq!(
            conversation_history(&log(), &[], 20),
            vec![
                msg(ChatRole::User, "two"),
                msg(ChatRole::Assistant, "answer two")
            ]
        );
        assert_eq!(
            conversation_history(&log(), &[], 5),
            Vec::<ChatMessage>::new()
        );
    }
}
