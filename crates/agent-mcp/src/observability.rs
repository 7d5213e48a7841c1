//! Metrics and health (`docs/observability.md`): the Prometheus metrics of this process
//! ([`Metrics`], the [`agent_core::Observer`] of the engine and the meter of MCP requests), and
//! the `/metrics`, `/healthz` and `/readyz` endpoints, served on the streamable HTTP transport
//! beside `/mcp` ([`crate::transport::router`]) and, in any transport, on the separate address
//! of `CLAUDE_AGENT_MCP_METRICS_ADDR` ([`serve_observability`]).
//!
//! Every metric name and label is owned here. Labels take values from fixed sets only
//! (workflows, backends, outcomes, MCP method names, token types, tool kinds, store
//! operations, session statuses): never a session id or free text. The hot path is an atomic
//! add on a handle resolved in advance (MCP requests) or a read-locked map lookup keyed by
//! `&'static str`s (the engine's reports): no allocation per request.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agent_core::{Observer, RunOutcome, RunReport, SessionStatus, ToolKind, Usage, Workflow};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
#[allow(deprecated)] // `SetLevelRequestMethod`: logging is still a method clients may call.
use rmcp::model::{
    CallToolRequestMethod, CancelTaskMethod, CompleteRequestMethod, ConstString,
    DiscoverRequestMethod, GetPromptRequestMethod, GetTaskMethod, InitializeResultMethod,
    ListPromptsRequestMethod, ListResourceTemplatesRequestMethod, ListResourcesRequestMethod,
    ListToolsRequestMethod, PingRequestMethod, ReadResourceRequestMethod, SetLevelRequestMethod,
    SubscribeRequestMethod, UnsubscribeRequestMethod, UpdateTaskMethod,
};
#[allow(deprecated)] // `SetLevelRequestParams`: delegated like every other method.
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CancelledNotificationParam,
    CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest, CustomResult,
    DiscoverResult, GetPromptRequestParams, GetPromptResponse, GetSkillRequestParams,
    GetSkillResult, GetTaskParams, GetTaskResult, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
    ReadResourceResponse, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, Tool, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::server::AgentServer;
use tracing::Instrument;

/// The prefix of every metric name.
pub const METRIC_PREFIX: &str = "claude_agent_mcp";

/// The `Content-Type` of `/metrics`: the OpenMetrics text format, which Prometheus reads.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long `/readyz` waits for the store's answer (and `/metrics` for the session counts).
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of a `/healthz` or a successful `/readyz` answer.
pub const HEALTHY_BODY: &str = "ok\n";

/// The body of a failed `/readyz` answer (`503`): nothing about why.
pub const NOT_READY_BODY: &str = "not ready\n";

/// The MCP methods counted by name; any other is counted as `other` (a client's method name
/// is free text and never a label).
pub const MCP_METHODS: &[&str] = &[
    InitializeResultMethod::VALUE,
    PingRequestMethod::VALUE,
    DiscoverRequestMethod::VALUE,
    ListToolsRequestMethod::VALUE,
    CallToolRequestMethod::VALUE,
    ListResourcesRequestMethod::VALUE,
    ListResourceTemplatesRequestMethod::VALUE,
    ReadResourceRequestMethod::VALUE,
    SubscribeRequestMethod::VALUE,
    UnsubscribeRequestMethod::VALUE,
    ListPromptsRequestMethod::VALUE,
    GetPromptRequestMethod::VALUE,
    CompleteRequestMethod::VALUE,
    SetLevelRequestMethod::VALUE,
    GetTaskMethod::VALUE,
    UpdateTaskMethod::VALUE,
    CancelTaskMethod::VALUE,
];

/// The label of an MCP method not in [`MCP_METHODS`].
pub const OTHER_METHOD: &str = "other";

/// Buckets (seconds) of the run duration: a second to an hour.
const RUN_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// Buckets (seconds) of MCP request durations: a millisecond to ten minutes (a `tools/call`
/// answered inline lasts as long as its run).
const REQUEST_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// The token types of `claude_agent_mcp_tokens_total`.
const TOKEN_TYPES: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

/// The store operations of `claude_agent_mcp_store_errors_total` (the engine's names).
const STORE_OPERATIONS: [&str; 11] = [
    "begin_session",
    "get_session",
    "list_sessions",
    "acquire_lock",
    "events",
    "begin_execution",
    "finish_execution",
    "artifacts",
    "read_artifact",
    "sweep_expired_leases",
    "fork_session",
];

/// The workflows that run (the envelope-only `cancel_session` never does).
const RUN_WORKFLOWS: [Workflow; 4] = [
    Workflow::RunTask,
    Workflow::ContinueSession,
    Workflow::VerifyTask,
    Workflow::ForkSession,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    workflow: &'static str,
    backend: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    backend: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    workflow: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodOutcomeLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// One MCP method's handles, resolved once.
struct MethodMeter {
    name: &'static str,
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

/// A future of a [`StoreProbe`] answer.
pub type ProbeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The store as `/readyz` and the sessions gauge see it (implemented by the binary over the
/// store it opened).
pub trait StoreProbe: Send + Sync + 'static {
    /// A trivial query; `Ok` when the store answered.
    fn ping(&self) -> ProbeFuture<'_, ()>;

    /// How many sessions have each status (one grouped count).
    fn session_counts(&self) -> ProbeFuture<'_, Vec<(SessionStatus, i64)>>;
}

/// This process's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    run_duration: HistogramFamily<RunLabels>,
    model_turns: Family<BackendLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<BackendLabels, Counter<f64, AtomicU64>>,
    tool_calls: Family<ToolLabels, Counter>,
    cancellations: Family<WorkflowLabels, Counter>,
    lease_sweeps: Counter,
    sessions_swept: Counter,
    store_errors: Family<OperationLabels, Counter>,
    sessions: Family<StatusLabels, Gauge>,
    scrape_errors: Counter,
    methods: Vec<MethodMeter>,
    other_method: MethodMeter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a process whose backend is `backend` (`api`, `claude_code`): every
    /// series of a fixed label set is created at zero, so that rates and dashboards see it
    /// from the first scrape.
    pub fn new(backend: &'static str) -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let runs = Family::<RunLabels, Counter>::default();
        let run_duration: HistogramFamily<RunLabels> = Family::new_with_constructor(run_histogram);
        let model_turns = Family::<BackendLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<BackendLabels, Counter<f64, AtomicU64>>::default();
        let tool_calls = Family::<ToolLabels, Counter>::default();
        let cancellations = Family::<WorkflowLabels, Counter>::default();
        let lease_sweeps = Counter::default();
        let sessions_swept = Counter::default();
        let store_errors = Family::<OperationLabels, Counter>::default();
        let sessions = Family::<StatusLabels, Gauge>::default();
        let scrape_errors = Counter::default();
        let mcp_requests = Family::<MethodOutcomeLabels, Counter>::default();
        let mcp_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(request_histogram);

        registry.register(
            "runs",
            "Workflow calls (agent_run_task, agent_continue_session, agent_verify_task, agent_fork_session) that returned, by workflow, backend and outcome",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Time from a workflow call to its envelope, by workflow, backend and outcome",
            run_duration.clone(),
        );
        registry.register(
            "model_turns",
            "Model turns of successful executions as the backend reports them (turn_count)",
            model_turns.clone(),
        );
        registry.register(
            "tokens",
            "Tokens of successful executions by type (input, output, cache_read, cache_write)",
            tokens.clone(),
        );
        registry.register(
            "cost_usd",
            "Cost in US dollars of successful executions whose backend reports one (claude_code)",
            cost.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls made for the model, by kind (builtin, federated, mediated) and outcome (ok, error)",
            tool_calls.clone(),
        );
        registry.register(
            "cancellations",
            "Executions recorded as cancelled, by workflow",
            cancellations.clone(),
        );
        registry.register(
            "lease_sweeps",
            "Passes of the lease sweeper",
            lease_sweeps.clone(),
        );
        registry.register(
            "lease_swept_sessions",
            "Sessions the lease sweeper marked interrupted (running under an expired lease)",
            sessions_swept.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store calls of the engine, by operation",
            store_errors.clone(),
        );
        registry.register(
            "sessions",
            "Sessions in the store by status, counted when scraped (the whole store: every node on it reports the same)",
            sessions.clone(),
        );
        registry.register(
            "sessions_scrape_errors",
            "Scrapes whose session count failed or timed out (the sessions gauge then keeps its last values)",
            scrape_errors.clone(),
        );
        registry.register(
            "mcp_requests",
            "MCP requests answered, by method and outcome (ok, or error: a JSON-RPC error)",
            mcp_requests.clone(),
        );
        registry.register(
            "mcp_request_duration_seconds",
            "Time to answer an MCP request, by method",
            mcp_duration.clone(),
        );

        for workflow in RUN_WORKFLOWS {
            for outcome in RunOutcome::ALL {
                let labels = RunLabels {
                    workflow: workflow.as_str(),
                    backend,
                    outcome: outcome.as_str(),
                };
                drop(runs.get_or_create(&labels));
                drop(run_duration.get_or_create(&labels));
            }
            drop(cancellations.get_or_create(&WorkflowLabels {
                workflow: workflow.as_str(),
            }));
        }
        drop(model_turns.get_or_create(&BackendLabels { backend }));
        drop(cost.get_or_create(&BackendLabels { backend }));
        for r#type in TOKEN_TYPES {
            drop(tokens.get_or_create(&TokenLabels { backend, r#type }));
        }
        for kind in ToolKind::ALL {
            for outcome in ["ok", "error"] {
                drop(tool_calls.get_or_create(&ToolLabels {
                    kind: kind.as_str(),
                    outcome,
                }));
            }
        }
        for operation in STORE_OPERATIONS {
            drop(store_errors.get_or_create(&OperationLabels { operation }));
        }
        // One statement per handle: a family's read guard lives to the end of its statement,
        // and creating the next series takes the write lock.
        let meter = |name: &'static str| {
            let ok = mcp_requests
                .get_or_create(&MethodOutcomeLabels {
                    method: name,
                    outcome: "ok",
                })
                .clone();
            let error = mcp_requests
                .get_or_create(&MethodOutcomeLabels {
                    method: name,
                    outcome: "error",
                })
                .clone();
            let duration = mcp_duration
                .get_or_create(&MethodLabels { method: name })
                .clone();
            MethodMeter {
                name,
                ok,
                error,
                duration,
            }
        };
        let methods = MCP_METHODS.iter().map(|m| meter(m)).collect();
        let other_method = meter(OTHER_METHOD);
        Self {
            registry,
            runs,
            run_duration,
            model_turns,
            tokens,
            cost,
            tool_calls,
            cancellations,
            lease_sweeps,
            sessions_swept,
            store_errors,
            sessions,
            scrape_errors,
            methods,
            other_method,
        }
    }

    /// The handles of an MCP method (by its name; `other` when unknown).
    fn method(&self, name: &str) -> &MethodMeter {
        self.methods
            .iter()
            .find(|m| m.name == name)
            .unwrap_or(&self.other_method)
    }

    /// Records one answered MCP request.
    pub fn record_request(&self, method: &str, elapsed: Duration, ok: bool) {
        let meter = self.method(method);
        if ok {
            meter.ok.inc();
        } else {
            meter.error.inc();
        }
        meter.duration.observe(elapsed.as_secs_f64());
    }

    /// Sets the sessions gauge from a count by status: every status is set (0 when absent).
    pub fn set_session_counts(&self, counts: &[(SessionStatus, i64)]) {
        for status in SessionStatus::ALL {
            let count = counts
                .iter()
                .filter(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .sum();
            self.sessions
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(count);
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

impl Observer for Metrics {
    fn run_finished(&self, report: &RunReport) {
        let labels = RunLabels {
            workflow: report.workflow.as_str(),
            backend: report.backend,
            outcome: report.outcome.as_str(),
        };
        self.runs.get_or_create(&labels).inc();
        self.run_duration
            .get_or_create(&labels)
            .observe(report.duration.as_secs_f64());
    }

    fn execution_output(&self, backend: &'static str, turns: u32, usage: Option<&Usage>) {
        self.model_turns
            .get_or_create(&BackendLabels { backend })
            .inc_by(u64::from(turns));
        let Some(usage) = usage else {
            return;
        };
        let counts = [
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens.unwrap_or(0),
            usage.cache_creation_input_tokens.unwrap_or(0),
        ];
        for (r#type, count) in TOKEN_TYPES.into_iter().zip(counts) {
            if count > 0 {
                self.tokens
                    .get_or_create(&TokenLabels { backend, r#type })
                    .inc_by(count);
            }
        }
        if let Some(cost) = usage.total_cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.cost
                .get_or_create(&BackendLabels { backend })
                .inc_by(cost);
        }
    }

    fn tool_call(&self, kind: ToolKind, ok: bool) {
        self.tool_calls
            .get_or_create(&ToolLabels {
                kind: kind.as_str(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    fn cancelled(&self, workflow: Workflow) {
        self.cancellations
            .get_or_create(&WorkflowLabels {
                workflow: workflow.as_str(),
            })
            .inc();
    }

    fn lease_sweep(&self, swept: u64) {
        self.lease_sweeps.inc();
        self.sessions_swept.inc_by(swept);
    }

    fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }
}

/// Readiness: ready once startup has configured the backend and handed over the store
/// ([`Health::set_store`]), and then only while the store answers a trivial query within
/// [`STORE_PROBE_TIMEOUT`].
#[derive(Default)]
pub struct Health {
    store: OnceLock<Arc<dyn StoreProbe>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("started", &self.store.get().is_some())
            .finish()
    }
}

impl Health {
    /// Startup is done (the backend is configured): readiness now follows `store`.
    pub fn set_store(&self, store: Arc<dyn StoreProbe>) {
        let _ = self.store.set(store);
    }

    /// Whether the process is ready to serve.
    pub async fn ready(&self) -> bool {
        self.ready_within(STORE_PROBE_TIMEOUT).await
    }

    /// [`ready`](Self::ready) with the store given `timeout` to answer.
    async fn ready_within(&self, timeout: Duration) -> bool {
        let Some(store) = self.store.get() else {
            return false;
        };
        match tokio::time::timeout(timeout, store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(target: "server", error = %e, "readiness: the store did not answer");
                false
            }
            Err(_) => {
                tracing::warn!(target: "server", "readiness: the store did not answer within {timeout:?}");
                false
            }
        }
    }
}

/// The metrics and the health of this process, shared by every endpoint that serves them.
#[derive(Debug, Clone)]
pub struct Observability {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Observability {
    pub fn new(backend: &'static str) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(backend)),
            health: Arc::new(Health::default()),
        }
    }

    /// The metrics text, the sessions gauge counted now (when the store answers in time).
    pub async fn scrape(&self) -> String {
        if let Some(store) = self.health.store.get() {
            match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.session_counts()).await {
                Ok(Ok(counts)) => self.metrics.set_session_counts(&counts),
                Ok(Err(e)) => {
                    self.metrics.scrape_errors.inc();
                    tracing::warn!(target: "server", error = %e, "metrics: counting sessions failed");
                }
                Err(_) => {
                    self.metrics.scrape_errors.inc();
                    tracing::warn!(target: "server", "metrics: counting sessions timed out");
                }
            }
        }
        self.metrics.encode()
    }
}

async fn metrics_endpoint(State(observability): State<Observability>) -> Response {
    let text = observability.scrape().await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, HEALTHY_BODY).into_response()
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if health.ready().await {
        (StatusCode::OK, HEALTHY_BODY).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, NOT_READY_BODY).into_response()
    }
}

/// `GET /metrics`: to be guarded by the bearer token when one is set.
pub fn metrics_routes(observability: &Observability) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_endpoint))
        .with_state(observability.clone())
}

/// `GET /healthz` and `GET /readyz`: never authenticated, bodies `ok` or `not ready` only.
pub fn health_routes(observability: &Observability) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&observability.health))
}

/// The `traceparent` and `tracestate` of a request's `params._meta`, for the W3C trace-context
/// propagator.
struct MetaExtractor<'a>(&'a rmcp::model::JsonObject);

impl opentelemetry::propagation::Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)?
            .as_str()
            .and_then(agent_core::observe::trace::bounded)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The span of one MCP request (`docs/observability.md#traces`), named after the MCP
/// conventions (`tools/call agent_run_task`, `prompts/get <name>`, `initialize`): the method,
/// the transport session and the JSON-RPC id, and for `tools/call` the tool. A W3C
/// `traceparent` (with its `tracestate`) in `params._meta` makes it a child of the caller's
/// span. Nothing is read when tracing is off (the span is disabled).
pub fn request_span(
    method: &'static str,
    context: &RequestContext<RoleServer>,
    target: Option<&str>,
) -> tracing::Span {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing::field::Empty;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let span = tracing::info_span!(
        target: agent_core::observe::trace::SPAN_TARGET,
        "mcp.request",
        otel.name = Empty,
        otel.kind = "server",
        "mcp.method.name" = method,
        "mcp.session.id" = Empty,
        "jsonrpc.request.id" = Empty,
        "gen_ai.operation.name" = Empty,
        "gen_ai.tool.name" = Empty,
        "gen_ai.prompt.name" = Empty,
        "error.type" = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let target = target.and_then(agent_core::observe::trace::bounded);
    match target {
        Some(target) => span.record("otel.name", format!("{method} {target}").as_str()),
        None => span.record("otel.name", method),
    };
    if method == CallToolRequestMethod::VALUE {
        span.record("gen_ai.operation.name", "execute_tool");
        if let Some(tool) = target {
            span.record("gen_ai.tool.name", tool);
        }
    } else if let (true, Some(prompt)) = (method == GetPromptRequestMethod::VALUE, target) {
        span.record("gen_ai.prompt.name", prompt);
    }
    let id = context.id.to_string();
    if let Some(id) = agent_core::observe::trace::bounded(&id) {
        span.record("jsonrpc.request.id", id);
    }
    let session = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get(crate::tasks::SESSION_HEADER))
        .and_then(|value| value.to_str().ok())
        .and_then(agent_core::observe::trace::bounded);
    if let Some(session) = session {
        span.record("mcp.session.id", session);
    }
    let meta: &rmcp::model::JsonObject = &context.meta;
    if meta.contains_key("traceparent") {
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&MetaExtractor(meta));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// An [`AgentServer`] with every MCP request metered
/// (`claude_agent_mcp_mcp_requests_total`, `claude_agent_mcp_mcp_request_duration_seconds`):
/// one clock read before and after, and atomic adds on handles resolved at startup.
///
/// It is the `ServerHandler` both transports serve, and delegates **every** method of rmcp's
/// `ServerHandler` (not only those `AgentServer` overrides) to the server, so whatever the
/// server answers, and whatever it starts answering later, passes through unchanged; rmcp is
/// pinned to one version (`Cargo.toml`), whose trait this lists in full.
#[derive(Clone)]
pub struct Metered {
    server: AgentServer,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(server: AgentServer, metrics: Arc<Metrics>) -> Self {
        Self { server, metrics }
    }

    /// Runs one request's handler in its `span` ([`request_span`]), timing it under `method`.
    ///
    /// The handler comes boxed: the future of every request then stays a few hundred bytes
    /// whatever the largest handler holds, instead of the largest handler's size (several KB),
    /// which the MCP service would otherwise copy for every request, `ping` included, as it
    /// spawns and polls it (`request_futures_stay_small`; `docs/performance.md#performance-devices-what-each-buys-and-costs`).
    async fn timed<T>(
        &self,
        method: &'static str,
        span: tracing::Span,
        handler: Pin<Box<impl Future<Output = Result<T, McpError>>>>,
    ) -> Result<T, McpError> {
        let started = Instant::now();
        let answer = if span.is_disabled() {
            handler.await
        } else {
            let answer = handler.instrument(span.clone()).await;
            if let Err(e) = &answer {
                let code = e.code.0.to_string();
                agent_core::observe::trace::record_error(&span, &code);
            }
            answer
        };
        self.metrics
            .record_request(method, started.elapsed(), answer.is_ok());
        answer
    }
}

#[allow(deprecated)] // `subscribe` and `unsubscribe` are delegated like the rest.
impl ServerHandler for Metered {
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        let span = request_span(PingRequestMethod::VALUE, &context, None);
        self.timed(
            PingRequestMethod::VALUE,
            span,
            Box::pin(self.server.ping(context)),
        )
        .await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let span = request_span(InitializeResultMethod::VALUE, &context, None);
        self.timed(
            InitializeResultMethod::VALUE,
            span,
            Box::pin(self.server.initialize(request, context)),
        )
        .await
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.server.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        ServerHandler::supported_protocol_versions(&self.server)
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        let span = request_span(OTHER_METHOD, &context, None);
        self.timed(OTHER_METHOD, span, Box::pin(self.server.discover(context)))
            .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let span = request_span(CompleteRequestMethod::VALUE, &context, None);
        self.timed(
            CompleteRequestMethod::VALUE,
            span,
            Box::pin(self.server.complete(request, context)),
        )
        .await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let span = request_span(SetLevelRequestMethod::VALUE, &context, None);
        self.timed(
            SetLevelRequestMethod::VALUE,
            span,
            Box::pin(self.server.set_level(request, context)),
        )
        .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let span = request_span(
            GetPromptRequestMethod::VALUE,
            &context,
            Some(request.name.as_str()),
        );
        self.timed(
            GetPromptRequestMethod::VALUE,
            span,
            Box::pin(self.server.get_prompt(request, context)),
        )
        .await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let span = request_span(ListPromptsRequestMethod::VALUE, &context, None);
        self.timed(
            ListPromptsRequestMethod::VALUE,
            span,
            Box::pin(self.server.list_prompts(request, context)),
        )
        .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let span = request_span(ListResourcesRequestMethod::VALUE, &context, None);
        self.timed(
            ListResourcesRequestMethod::VALUE,
            span,
            Box::pin(self.server.list_resources(request, context)),
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let span = request_span(ListResourceTemplatesRequestMethod::VALUE, &context, None);
        self.timed(
            ListResourceTemplatesRequestMethod::VALUE,
            span,
            Box::pin(self.server.list_resource_templates(request, context)),
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let span = request_span(ReadResourceRequestMethod::VALUE, &context, None);
        self.timed(
            ReadResourceRequestMethod::VALUE,
            span,
            Box::pin(self.server.read_resource(request, context)),
        )
        .await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.server.accepted_subscription_filter(requested)
    }

    /// Not timed: a subscription lasts as long as the client keeps it.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        self.server.listen(context).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let span = request_span(SubscribeRequestMethod::VALUE, &context, None);
        self.timed(
            SubscribeRequestMethod::VALUE,
            span,
            Box::pin(self.server.subscribe(request, context)),
        )
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let span = request_span(UnsubscribeRequestMethod::VALUE, &context, None);
        self.timed(
            UnsubscribeRequestMethod::VALUE,
            span,
            Box::pin(self.server.unsubscribe(request, context)),
        )
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let span = request_span(
            CallToolRequestMethod::VALUE,
            &context,
            Some(request.name.as_ref()),
        );
        self.timed(
            CallToolRequestMethod::VALUE,
            span,
            Box::pin(self.server.call_tool(request, context)),
        )
        .await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let span = request_span(ListToolsRequestMethod::VALUE, &context, None);
        self.timed(
            ListToolsRequestMethod::VALUE,
            span,
            Box::pin(self.server.list_tools(request, context)),
        )
        .await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.server.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        let span = request_span(OTHER_METHOD, &context, None);
        self.timed(
            OTHER_METHOD,
            span,
            Box::pin(self.server.on_custom_request(request, context)),
        )
        .await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.server.on_cancelled(notification, context).await;
    }

    async fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.server.on_progress(notification, context).await;
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.server.on_initialized(context).await;
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.server.on_roots_list_changed(context).await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        self.server
            .on_custom_notification(notification, context)
            .await;
    }

    fn get_info(&self) -> ServerConfig {
        ServerHandler::get_info(&self.server)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let span = request_span(GetTaskMethod::VALUE, &context, None);
        self.timed(
            GetTaskMethod::VALUE,
            span,
            Box::pin(self.server.get_task(request, context)),
        )
        .await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let span = request_span(UpdateTaskMethod::VALUE, &context, None);
        self.timed(
            UpdateTaskMethod::VALUE,
            span,
            Box::pin(self.server.update_task(request, context)),
        )
        .await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let span = request_span(CancelTaskMethod::VALUE, &context, None);
        self.timed(
            CancelTaskMethod::VALUE,
            span,
            Box::pin(self.server.cancel_task(request, context)),
        )
        .await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        let span = request_span(OTHER_METHOD, &context, None);
        self.timed(
            OTHER_METHOD,
            span,
            Box::pin(self.server.list_skills(request, context)),
        )
        .await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        let span = request_span(OTHER_METHOD, &context, None);
        self.timed(
            OTHER_METHOD,
            span,
            Box::pin(self.server.get_skill(request, context)),
        )
        .await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        let span = request_span(OTHER_METHOD, &context, None);
        self.timed(
            OTHER_METHOD,
            span,
            Box::pin(self.server.read_resource_directory(request, context)),
        )
        .await
    }
}

/// Binds the metrics address (`CLAUDE_AGENT_MCP_METRICS_ADDR`), for [`serve_observability`].
pub async fn bind_observability(
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, crate::TransportError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::TransportError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `/metrics` (guarded by `bearer_token` when set), `/healthz` and `/readyz` on
/// `listener` until `shutdown` fires. The connection bounds of the HTTP transport apply
/// (`header_timeout`, `max_connections`).
pub async fn serve_observability(
    listener: tokio::net::TcpListener,
    observability: Observability,
    bearer_token: Option<String>,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let app =
        crate::transport::with_bearer(metrics_routes(&observability), bearer_token.as_deref())
            .merge(health_routes(&observability));
    crate::transport::serve_app(
        listener,
        app,
        crate::transport::ConnectionBounds {
            header_timeout,
            idle_timeout: Duration::from_secs(120),
            max_connections,
        },
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `method` returns, without calling it.
    fn future_size<'a, S: 'a, P, F: Future>(
        _method: impl FnOnce(&'a S, P, RequestContext<RoleServer>) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// rmcp spawns every request's future (the largest of the handlers' futures) and copies
    /// it as it does: a `tools/call` future holding the whole tool handler (several KB) made
    /// every request, `ping` included, copy that much (`docs/performance.md`). Boxed handlers
    /// keep ours small.
    #[test]
    fn request_futures_stay_small() {
        const LIMIT: usize = 1536;
        let sizes = [
            (
                "ping",
                future_size(|server: &Metered, _: (), context| server.ping(context)),
            ),
            (
                "initialize",
                future_size(<Metered as ServerHandler>::initialize),
            ),
            (
                "call_tool",
                future_size(<Metered as ServerHandler>::call_tool),
            ),
            (
                "get_task",
                future_size(<Metered as ServerHandler>::get_task),
            ),
            (
                "read_resource",
                future_size(<Metered as ServerHandler>::read_resource),
            ),
        ];
        for (name, size) in sizes {
            assert!(
                size <= LIMIT,
                "the future of {name} is {size} bytes (limit {LIMIT})"
            );
        }
        // The handler itself is larger, which is why it is boxed.
        assert!(future_size(<AgentServer as ServerHandler>::call_tool) > LIMIT);
    }

    fn sample<'a>(text: &'a str, line_start: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn the_engine_s_reports_move_the_counters_and_name_no_session() {
        let metrics = Metrics::new("api");
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "claude_agent_mcp_runs_total{workflow=\"run_task\",backend=\"api\",outcome=\"completed\"}"
            ),
            Some("0"),
            "{text}"
        );
        metrics.run_finished(&RunReport {
            workflow: Workflow::RunTask,
            backend: "api",
            outcome: RunOutcome::Completed,
            duration: Duration::from_millis(1500),
        });
        metrics.execution_output(
            "api",
            2,
            Some(&Usage {
                input_tokens: 11,
                output_tokens: 7,
                cache_creation_input_tokens: Some(3),
                cache_read_input_tokens: None,
                total_cost_usd: Some(0.25),
            }),
        );
        metrics.tool_call(ToolKind::Mediated, false);
        metrics.cancelled(Workflow::ContinueSession);
        metrics.lease_sweep(2);
        metrics.store_error("finish_execution");
        metrics.record_request("tools/call", Duration::from_millis(3), true);
        metrics.record_request("x-anything/sess_0123", Duration::from_millis(3), false);
        metrics.set_session_counts(&[(SessionStatus::Completed, 4)]);
        let text = metrics.encode();
        for (line, value) in [
            (
                "claude_agent_mcp_runs_total{workflow=\"run_task\",backend=\"api\",outcome=\"completed\"}",
                "1",
            ),
            (
                "claude_agent_mcp_run_duration_seconds_bucket{le=\"2.5\",workflow=\"run_task\",backend=\"api\",outcome=\"completed\"}",
                "1",
            ),
            ("claude_agent_mcp_model_turns_total{backend=\"api\"}", "2"),
            (
                "claude_agent_mcp_tokens_total{backend=\"api\",type=\"input\"}",
                "11",
            ),
            (
                "claude_agent_mcp_tokens_total{backend=\"api\",type=\"cache_write\"}",
                "3",
            ),
            (
                "claude_agent_mcp_tokens_total{backend=\"api\",type=\"cache_read\"}",
                "0",
            ),
            ("claude_agent_mcp_cost_usd_total{backend=\"api\"}", "0.25"),
            (
                "claude_agent_mcp_tool_calls_total{kind=\"mediated\",outcome=\"error\"}",
                "1",
            ),
            (
                "claude_agent_mcp_cancellations_total{workflow=\"continue_session\"}",
                "1",
            ),
            ("claude_agent_mcp_lease_sweeps_total", "1"),
            ("claude_agent_mcp_lease_swept_sessions_total", "2"),
            (
                "claude_agent_mcp_store_errors_total{operation=\"finish_execution\"}",
                "1",
            ),
            (
                "claude_agent_mcp_mcp_requests_total{method=\"tools/call\",outcome=\"ok\"}",
                "1",
            ),
            (
                "claude_agent_mcp_mcp_requests_total{method=\"other\",outcome=\"error\"}",
                "1",
            ),
            ("claude_agent_mcp_sessions{status=\"completed\"}", "4"),
            ("claude_agent_mcp_sessions{status=\"running\"}", "0"),
        ] {
            assert_eq!(sample(&text, line), Some(value), "{line}\n{text}");
        }
        assert!(!text.contains("sess_"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// Every method the meter names is rmcp's own name for it, once; any other is `other`.
    #[test]
    fn method_labels_are_rmcp_s_names() {
        let metrics = Metrics::new("api");
        let mut seen = std::collections::BTreeSet::new();
        for name in MCP_METHODS {
            assert!(seen.insert(*name), "{name} twice");
            assert_eq!(metrics.method(name).name, *name);
        }
        assert!(seen.contains("tools/call") && seen.contains("initialize"));
        assert_eq!(metrics.method("tools/call/").name, OTHER_METHOD);
        assert_eq!(metrics.method("").name, OTHER_METHOD);
    }

    struct Fixed(Result<(), String>, Option<Duration>);

    impl StoreProbe for Fixed {
        fn ping(&self) -> ProbeFuture<'_, ()> {
            Box::pin(async move {
                if let Some(delay) = self.1 {
                    tokio::time::sleep(delay).await;
                }
                self.0.clone()
            })
        }

        fn session_counts(&self) -> ProbeFuture<'_, Vec<(SessionStatus, i64)>> {
            Box::pin(async { Err("no".to_owned()) })
        }
    }

    #[tokio::test]
    async fn ready_only_after_startup_and_while_the_store_answers_in_time() {
        let health = Health::default();
        assert!(
            !health.ready().await,
            "before startup handed the store over"
        );
        health.set_store(Arc::new(Fixed(Ok(()), None)));
        assert!(health.ready().await);
        let failing = Health::default();
        failing.set_store(Arc::new(Fixed(Err("down".into()), None)));
        assert!(!failing.ready().await);
        let slow = Health::default();
        slow.set_store(Arc::new(Fixed(Ok(()), Some(Duration::from_secs(5)))));
        let started = Instant::now();
        assert!(
            !slow.ready_within(Duration::from_millis(50)).await,
            "an answer after the timeout is no answer"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_failed_session_count_is_counted_and_the_rest_still_served() {
        let observability = Observability::new("claude_code");
        observability
            .health
            .set_store(Arc::new(Fixed(Ok(()), None)));
        let text = observability.scrape().await;
        assert_eq!(
            sample(&text, "claude_agent_mcp_sessions_scrape_errors_total"),
            Some("1"),
            "{text}"
        );
        assert!(text.contains("backend=\"claude_code\""));
    }
}
