//! # claude-agent-mcp (binary crate)
//!
//! Parses the command line, loads the configuration, wires the crates together and serves MCP.
//! No behaviour of its own: every rule lives in a library crate where a test can reach it.
#![deny(clippy::print_stdout)]

mod arena;
mod doctor;
mod migrate_store;
mod telemetry;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_backends::api::{ApiConfig, MessagesApiBackend};
use agent_backends::{ClaudeCodeBackend, ClaudeCodeConfig, McpServer, McpTransport};
use agent_core::pyfmt;
use agent_core::{
    Engine, EngineConfig, EventLog, ExecutionBackend, Observer, SessionStatus, SessionStore,
    TaskStore,
};
use agent_federation::{DownstreamTransport, Federation, FederationConfig, FederationSource};
use agent_mcp::observability::{ProbeFuture, StoreProbe};
use agent_mcp::status::{
    CapabilityFlags, MediationStatus, PRESERVED_LIMITATIONS, RestrictionStatus, RuntimeStatus,
};
use agent_mcp::{AgentServer, HttpOptions, Observability, ToolName};
use agent_policy::config::{BackendKind, Config, Database, EnvFile, RuntimeMode, Transport, vars};
use agent_policy::{CliOverrides, DirectoryPolicy, restricted};
use agent_store::{PostgresConfig, PostgresStore, SqliteStore, StoreConfig, StoreOpenError};
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

/// Command-line interface (`docs/reference/status.md#2-command-line`).
#[derive(Debug, Parser)]
#[command(
    name = "claude-agent-mcp",
    version = agent_core::VERSION,
    about = "A local-first MCP server for durable, policy-bounded Claude agent sessions."
)]
pub struct Cli {
    /// Runtime mode (overrides CLAUDE_AGENT_MCP_MODE).
    #[arg(long, value_parser = ["standard", "apntalk_verification"])]
    pub mode: Option<String>,
    /// Transport (overrides CLAUDE_AGENT_MCP_TRANSPORT).
    #[arg(long, value_parser = ["stdio", "streamable-http"])]
    pub transport: Option<String>,
    /// Bind host for streamable-http (overrides CLAUDE_AGENT_MCP_HOST).
    #[arg(long)]
    pub host: Option<String>,
    /// Bind port for streamable-http (overrides CLAUDE_AGENT_MCP_PORT).
    #[arg(long)]
    pub port: Option<u16>,
    /// Read settings from this env file, every one of them, instead of a `.env` in the working
    /// directory (which may only set the API key, the model, the log level and switch the
    /// built-in tools off). The process environment still wins. See docs/configuration.md.
    #[arg(long, value_name = "PATH", conflicts_with = "no_env_file")]
    pub env_file: Option<PathBuf>,
    /// Read no env file at all, not even a `.env` in the working directory.
    #[arg(long)]
    pub no_env_file: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one the server runs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the installation: configuration, state directory, database, backend, federation.
    ///
    /// Prints one line per check (✓ or ✗ with the fix) and exits 1 if any check failed.
    /// Flags given before `doctor` (`--mode`, `--transport`, ...) apply to the checks.
    Doctor,
    /// Copy every session, event, output and artifact of a SQLite state directory into the
    /// PostgreSQL store, in batches verified by counts (`docs/scaling.md`).
    ///
    /// Stop the servers that use the state directory first. Running it again after a failure
    /// goes on where it stopped. Prints a summary; exits 1 on any failure.
    MigrateStore(migrate_store::MigrateArgs),
}

impl Cli {
    fn overrides(&self) -> CliOverrides {
        CliOverrides {
            mode: self.mode.clone(),
            transport: self.transport.clone(),
            host: self.host.clone(),
            port: self.port,
            env_file: match (&self.env_file, self.no_env_file) {
                (Some(path), _) => EnvFile::Named(path.clone()),
                (None, true) => EnvFile::Disabled,
                (None, false) => EnvFile::Implicit,
            },
        }
    }
}

/// A startup failure: message for stderr and the exit status.
#[derive(Debug)]
pub struct StartupError {
    pub message: String,
    pub code: u8,
}

impl StartupError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

/// Parses arguments, runs, and turns failures into an exit status.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: stdout, status 0
        Err(e) => {
            // Argument errors: the message and the usage on stderr, status 2
            // (`docs/reference/status.md#2-command-line`).
            let usage = Cli::command().render_usage();
            let _ = write!(std::io::stderr(), "{e}\n{usage}\n");
            return ExitCode::from(2);
        }
    };
    if cli.command.is_none() {
        arena::limit_to_one(); // the server, not its short-lived subcommands
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&StartupError::new(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    match &cli.command {
        Some(Command::Doctor) => {
            return runtime.block_on(doctor::run(&cli.overrides(), &mut std::io::stdout()));
        }
        Some(Command::MigrateStore(args)) => {
            return runtime.block_on(migrate_store::run(
                &cli.overrides(),
                args,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ));
        }
        None => {}
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &StartupError) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{}", error.message);
    ExitCode::from(error.code)
}

/// Startup sequence of `docs/reference/policy.md#92-startup-sequence`, then serve until shutdown.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    let cwd = std::env::current_dir()
        .map_err(|e| StartupError::new(format!("cannot read the working directory: {e}")))?;
    let config = agent_policy::config::load(&cwd, &cli.overrides())
        .map_err(|e| StartupError::new(e.to_string()))?;
    // Written directly, not logged: the same file may set the log level, and it must not be
    // able to silence the notice that it tried more than that.
    if let Some(warning) = config.env_file.as_ref().and_then(|f| f.warning()) {
        let _ = writeln!(std::io::stderr(), "{warning}");
    }
    let traces = init_logging(&config)?;
    let served = start_and_serve(&config).await;
    // The spans still queued are sent before the process exits.
    traces.shutdown().await;
    served
}

/// Startup from step 3 on (the configuration read, logging set up), then serve until shutdown.
async fn start_and_serve(config: &Config) -> Result<(), StartupError> {
    if let Some(endpoint) = &config.telemetry.traces_endpoint {
        let endpoint = endpoint.redacted();
        tracing::info!(target: "server", "Exporting traces to {endpoint}");
    }
    tracing::info!(
        target: "server",
        "Starting claude-agent-mcp v{} mode={} transport={} model={} backend={}",
        agent_core::VERSION,
        config.mode,
        config.transport,
        config.model,
        config.backend
    );
    if let Some(file) = &config.env_file {
        tracing::info!(
            target: "server",
            "Env file: {} ({})",
            file.path.display(),
            if file.named { "--env-file" } else { "found in the working directory" }
        );
    }
    // Metrics and health: the separate listener starts now, so that `/healthz` answers (and
    // `/readyz` says "not ready") while the rest of startup runs (`docs/observability.md`).
    let observability = Observability::new(config.backend.as_str());
    let shutdown = CancellationToken::new();
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(start_metrics_listener(addr, config, &observability, &shutdown).await?),
        None => None,
    };
    let restricted = config.mode == RuntimeMode::ApntalkVerification;
    let admitted = admitted_tools(config);
    if restricted {
        let reasons = restricted::contract_violations(config, &tool_names(&admitted));
        if !reasons.is_empty() {
            return Err(StartupError::new(restricted::violation_message(&reasons)));
        }
    }
    // Read once: discovery and the Claude Code CLI's MCP servers both use it.
    let federation_source = FederationSource::load(
        config.federation_enabled,
        config.federation_config.as_deref(),
    );
    // The store opens while the backend is built (the API client's root certificates take
    // about as long as a new database's schema; `docs/performance.md`). Their outcomes are
    // taken in the documented order (`docs/reference/policy.md#92-startup-sequence`): a store
    // error first, and crash recovery before a backend error stops startup.
    let (opened, backend) = tokio::join!(
        OpenStore::open(config),
        build_backend(config, federation_source.config())
    );
    let opened = Arc::new(opened.map_err(|e| StartupError::new(e.to_string()))?);
    tracing::info!(target: "store", "Session store: {}", opened.describe());
    let store = opened.port();
    match store.recover_interrupted().await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(target: "store", "Recovered {n} interrupted session(s) left running by a previous process")
        }
        Err(e) => return Err(StartupError::new(format!("crash recovery failed: {e}"))),
    }
    let backend = backend?;
    tracing::info!(target: "server", "Execution backend: {}", backend.name());
    let policy = DirectoryPolicy::from_config(config);
    let engine_config = EngineConfig {
        lock_ttl: Duration::from_secs(u64::try_from(config.lock_ttl_secs).unwrap_or(0)),
        max_evidence_bytes: usize::try_from(config.max_evidence_bytes).unwrap_or(usize::MAX),
        restricted_verification: restricted,
        limited_tool_forwarding: config.limited_tool_forwarding,
        continuation_window: config.continuation.window(),
        mediation_inclusion: config.mediation.continuation_inclusion(),
        spend: config.spend.clone(),
        record_content: config.telemetry.record_content,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(Arc::clone(&store), backend, Arc::new(policy), engine_config)
        .with_observer(Arc::clone(&observability.metrics) as Arc<dyn Observer>);
    // Federation never aborts startup (`docs/reference/federation.md#1-enablement`); it is handed
    // to the engine only when at least one allowlisted tool was discovered.
    let federation =
        Federation::from_source(federation_source, Arc::clone(&store) as Arc<dyn EventLog>).await;
    if federation.is_active() {
        engine = engine.with_tool_provider(Arc::new(federation.clone()));
    }
    // Mediation parses the claude_code backend's output even when disabled (rejections are
    // audited); the engine calls it only for backends that declare it.
    engine = engine.with_mediator(Arc::new(
        agent_mediation::FederatedMediator::new(
            config.mediation.clone(),
            federation.clone(),
            Arc::clone(&store) as Arc<dyn EventLog>,
        )
        .with_observer(Arc::clone(&observability.metrics) as Arc<dyn Observer>),
    ));
    if config.builtin_tools {
        engine = engine.with_tool_provider(Arc::new(agent_tools::WorkspaceTools::new(
            Arc::clone(&store) as Arc<dyn EventLog>,
            config.allowed_dirs.clone(),
            agent_tools::ToolLimits::default(),
        )));
    }
    let engine = Arc::new(engine);
    // Operators match it against a session's lock owner (`<token>@<node id>`, shown by
    // `session_conflict` answers) to tell which process runs it.
    tracing::info!(target: "server", "Node id: {}", engine.node_id());
    // The lease sweeper (every half lock TTL, the engine's setting): sessions left `running`
    // under an expired lease (a process that died, a final write that could not be made)
    // become `interrupted` while this process serves, not only at the next start.
    let sweeper = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.sweep_expired_leases().await })
    };
    // MCP task state lives in the same database, so every node on it serves `tasks/get`,
    // `tasks/cancel` and `notifications/cancelled` (`docs/scaling.md`).
    let server = AgentServer::new(
        engine,
        opened.task_store(),
        runtime_status(config, &admitted, federation.is_active()),
        admitted,
    );
    if restricted {
        tracing::info!(
            target: "server",
            "APNTalk restriction contract {} active: backend={} transport={} profile={} exposed_tools={} allowed_dirs={} compliance=PASS",
            restricted::CONTRACT_ID,
            config.backend,
            config.transport,
            restricted::ACTIVE_PROFILE,
            pyfmt::list(restricted::ALLOWED_TOOLS),
            pyfmt::list(config.allowed_dirs.iter().map(|d| d.to_string_lossy()))
        );
    }
    if let Some(preset) = &config.operator_profile {
        tracing::info!(target: "server", "Operator profile preset: {preset}");
    }
    tracing::info!(
        target: "server",
        "claude-agent-mcp v{} ready — mode={} backend={} transport={} preset={}",
        agent_core::VERSION,
        config.mode,
        config.backend,
        config.transport,
        config.operator_profile.as_deref().unwrap_or("none")
    );
    // Startup is done (the backend is configured): `/readyz` now follows the store.
    observability
        .health
        .set_store(Arc::new(StoreHealth(Arc::clone(&opened))));
    let served = serve(server, config, &observability, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(listener) = metrics_listener {
        let _ = listener.await;
    }
    sweeper.abort();
    federation.shutdown().await;
    opened.close().await;
    served
}

/// The session store the configuration selects (`CLAUDE_AGENT_MCP_DATABASE_URL`), opened.
pub enum OpenStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl OpenStore {
    /// Opens (and creates or migrates) the selected store. Crash recovery is the caller's.
    pub async fn open(config: &Config) -> Result<Self, StoreOpenError> {
        let max_artifact_bytes = u64::try_from(config.max_artifact_bytes).unwrap_or(0);
        Ok(match &config.database {
            Database::Sqlite => Self::Sqlite(Arc::new(
                SqliteStore::open(StoreConfig {
                    db_path: config.db_path.clone(),
                    artifact_dir: config.artifact_dir.clone(),
                    max_artifact_bytes,
                })
                .await?,
            )),
            Database::Postgresql { url } => Self::Postgres(Arc::new(
                PostgresStore::open(PostgresConfig {
                    max_connections: u32::try_from(config.database_max_connections)
                        .unwrap_or(u32::MAX),
                    listen: config.database_listen,
                    ..PostgresConfig::new(url.expose(), max_artifact_bytes)
                })
                .await?,
            )),
        })
    }

    /// Where MCP task state and the requests in flight are kept: in the session store, so that
    /// every node on the same database serves `tasks/get`, `tasks/cancel` and
    /// `notifications/cancelled` (`docs/scaling.md`).
    pub fn task_store(&self) -> Arc<dyn TaskStore> {
        match self {
            Self::Sqlite(store) => Arc::clone(store) as Arc<dyn TaskStore>,
            Self::Postgres(store) => Arc::clone(store) as Arc<dyn TaskStore>,
        }
    }

    /// The store as the engine's port.
    pub fn port(&self) -> Arc<dyn SessionStore> {
        match self {
            Self::Sqlite(store) => Arc::clone(store) as Arc<dyn SessionStore>,
            Self::Postgres(store) => Arc::clone(store) as Arc<dyn SessionStore>,
        }
    }

    /// What it is and where, for logs (a URL's password redacted).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(store) => format!("sqlite ({})", store.config().db_path.display()),
            Self::Postgres(store) => format!(
                "postgresql ({}, cancel wake-ups: {})",
                agent_core::text::redact_url(&store.config().url),
                if store.listens() {
                    "LISTEN/NOTIFY"
                } else {
                    "polling only"
                }
            ),
        }
    }

    /// The schema version recorded in `schema_migrations`.
    pub async fn schema_version(&self) -> Result<i64, agent_core::StoreError> {
        match self {
            Self::Sqlite(store) => store.schema_version().await,
            Self::Postgres(store) => store.schema_version().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// The store as `/readyz` and the sessions gauge see it.
struct StoreHealth(Arc<OpenStore>);

impl StoreProbe for StoreHealth {
    fn ping(&self) -> ProbeFuture<'_, ()> {
        Box::pin(async move {
            self.0
                .schema_version()
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }

    fn session_counts(&self) -> ProbeFuture<'_, Vec<(SessionStatus, i64)>> {
        Box::pin(async move {
            let counts = match &*self.0 {
                OpenStore::Sqlite(store) => store.session_counts().await,
                OpenStore::Postgres(store) => store.session_counts().await,
            }
            .map_err(|e| e.message)?;
            // A status this version does not know is no label.
            Ok(counts
                .into_iter()
                .filter_map(|(status, n)| SessionStatus::parse(&status).map(|s| (s, n)))
                .collect())
        })
    }
}

/// Binds `CLAUDE_AGENT_MCP_METRICS_ADDR` (a failure stops startup) and serves `/metrics`,
/// `/healthz` and `/readyz` there until `shutdown`.
async fn start_metrics_listener(
    addr: std::net::SocketAddr,
    config: &Config,
    observability: &Observability,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StartupError> {
    let listener = agent_mcp::bind_observability(addr)
        .await
        .map_err(|e| StartupError::new(format!("{}: {e}", vars::METRICS_ADDR)))?;
    let bound = listener.local_addr().map_or(addr, |a| a);
    tracing::info!(target: "server", "Serving metrics and health at http://{bound}/metrics, /healthz, /readyz");
    let token = config
        .http_bearer_token
        .as_ref()
        .map(|t| t.expose().to_owned());
    Ok(tokio::spawn(agent_mcp::serve_observability(
        listener,
        observability.clone(),
        token,
        Duration::from_secs(config.http_header_timeout_secs),
        usize::try_from(config.http_max_connections).unwrap_or(usize::MAX),
        shutdown.clone(),
    )))
}

async fn serve(
    server: AgentServer,
    config: &Config,
    observability: &Observability,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    match config.transport {
        Transport::Stdio => agent_mcp::serve_stdio(server, Arc::clone(&observability.metrics))
            .await
            .map_err(|e| StartupError::new(e.to_string())),
        Transport::StreamableHttp => {
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                signal.cancel();
            });
            let mut options = HttpOptions::new(
                config.host.clone(),
                config.http_port().unwrap_or(8000),
                Duration::from_secs(config.http_header_timeout_secs),
                usize::try_from(config.http_max_connections).unwrap_or(usize::MAX),
            );
            options.allowed_origins = config.allowed_origins.clone();
            options.bearer_token = config
                .http_bearer_token
                .as_ref()
                .map(|t| t.expose().to_owned());
            agent_mcp::serve_http(server, options, observability, shutdown, |addr| {
                tracing::info!(target: "server", "Serving MCP over streamable HTTP at http://{addr}/mcp");
            })
            .await
            .map_err(|e| StartupError::new(e.to_string()))
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The tools published: all of them, or in the restricted mode the contract's list
/// ([`restricted::ALLOWED_TOOLS`]), in publication order.
fn admitted_tools(config: &Config) -> Vec<ToolName> {
    let restricted = restricted::RestrictionContract::of(config).is_some();
    ToolName::ALL
        .into_iter()
        .filter(|tool| !restricted || restricted::ALLOWED_TOOLS.contains(&tool.as_str()))
        .collect()
}

fn tool_names(tools: &[ToolName]) -> Vec<&'static str> {
    tools.iter().map(|tool| tool.as_str()).collect()
}

async fn build_backend(
    config: &Config,
    federation: Option<&FederationConfig>,
) -> Result<Arc<dyn ExecutionBackend>, StartupError> {
    match config.backend {
        BackendKind::Api => {
            if let Some(problem) = config.api_key_problem() {
                return Err(StartupError::new(problem));
            }
            let api = ApiConfig::new(config.anthropic_api_key.expose(), config.model.clone())
                .with_base_url(config.anthropic_base_url.clone())
                .with_max_retries(config.api_max_retries)
                .with_request_timeout(Duration::from_secs(config.api_timeout_secs))
                .with_prices(config.spend.prices.clone());
            // Reading the root certificates is blocking file I/O: not on a runtime worker.
            let backend = tokio::task::spawn_blocking(move || MessagesApiBackend::new(api))
                .await
                .map_err(|e| StartupError::new(format!("building the API client failed: {e}")))?
                .map_err(|e| StartupError::new(e.to_string()))?;
            Ok(Arc::new(backend))
        }
        BackendKind::ClaudeCode => {
            let backend =
                ClaudeCodeBackend::new(claude_code_config(config, cli_mcp_servers(federation)));
            // Startup validation (`docs/reference/backends.md#3-selection-and-startup-checks`): the
            // CLI is found and answers --version.
            let version = backend
                .check()
                .await
                .map_err(|e| StartupError::new(e.message))?;
            tracing::info!(target: "server", "Claude Code CLI: {}", version.trim());
            Ok(Arc::new(backend))
        }
    }
}

/// The Claude Code backend's settings from the configuration (serving and `doctor`).
pub(crate) fn claude_code_config(config: &Config, mcp_servers: Vec<McpServer>) -> ClaudeCodeConfig {
    let defaults = ClaudeCodeConfig::new(config.model.clone());
    ClaudeCodeConfig {
        cli_path: config.claude_code_cli_path.clone(),
        timeout: Duration::from_secs(u64::try_from(config.claude_code_timeout_secs).unwrap_or(0)),
        mode: config.claude_code_mode,
        limited_tool_forwarding: config.limited_tool_forwarding,
        env_passthrough: config.claude_code_env_passthrough.clone(),
        mcp_servers,
        setting_sources: match &config.claude_code_setting_sources {
            Some(sources) => sources.iter().map(|s| s.as_str().to_owned()).collect(),
            None => defaults.setting_sources.clone(),
        },
        ..defaults
    }
}

/// The enabled federated servers, for the Claude Code CLI's own MCP client (native mode hands
/// them over with `--mcp-config`), from the configuration startup read. A configuration that
/// did not load hands over nothing (federation logs the problem when it starts).
fn cli_mcp_servers(federation: Option<&FederationConfig>) -> Vec<McpServer> {
    let Some(federation) = federation else {
        return Vec::new();
    };
    federation
        .enabled_servers()
        .map(|s| McpServer {
            name: s.name.clone(),
            transport: match &s.transport {
                DownstreamTransport::Stdio { command, args, env } => McpTransport::Stdio {
                    command: command.clone(),
                    args: args.clone(),
                    env: env.clone().into_iter().collect(),
                },
                DownstreamTransport::StreamableHttp { url, headers } => McpTransport::Http {
                    url: url.clone(),
                    headers: headers.clone().into_iter().collect(),
                },
            },
            allowed_tools: s.allowed_tools.clone(),
            profiles: s.profiles_allowed.clone(),
        })
        .collect()
}

/// The restricted-mode proof fields (`docs/reference/status.md#1-runtime-status-tool`); all null in
/// standard mode.
fn restriction_status(config: &Config, admitted: &[ToolName]) -> RestrictionStatus {
    let Some(contract) = restricted::RestrictionContract::of(config) else {
        return RestrictionStatus::default();
    };
    let mut exposed = tool_names(admitted);
    exposed.sort_unstable();
    let reasons = restricted::contract_violations(config, &exposed);
    RestrictionStatus {
        policy_mode: Some(restricted::POLICY_MODE.to_owned()),
        authority_mode: Some(restricted::AUTHORITY_MODE.to_owned()),
        tool_surface_mode: Some(restricted::TOOL_SURFACE_MODE.to_owned()),
        active_profile: Some(restricted::ACTIVE_PROFILE.to_owned()),
        exposed_tools: Some(exposed.into_iter().map(str::to_owned).collect()),
        allowed_directories: Some(
            contract
                .allowed_directories
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect(),
        ),
        restriction_contract_id: Some(restricted::CONTRACT_ID.to_owned()),
        restriction_contract_version: Some(restricted::CONTRACT_VERSION),
        fail_closed_enabled: Some(true),
        restriction_compliance: Some(reasons.is_empty()),
        non_compliance_reasons: (!reasons.is_empty()).then_some(reasons),
        server_version: Some(agent_core::VERSION.to_owned()),
    }
}

/// The status snapshot from the resolved configuration
/// (`docs/reference/status.md#1-runtime-status-tool`).
pub fn runtime_status(
    config: &Config,
    admitted: &[ToolName],
    federation_active: bool,
) -> RuntimeStatus {
    RuntimeStatus {
        version: agent_core::VERSION.to_owned(),
        operator_profile_preset: config.operator_profile.clone(),
        backend: config.backend.as_str().to_owned(),
        transport: config.transport.as_str().to_owned(),
        model: config.model.clone(),
        federation_enabled: config.federation_enabled,
        federation_active,
        capability_flags: CapabilityFlags {
            limited_tool_forwarding_enabled: config.limited_tool_forwarding,
            execution_mediation_enabled: config.mediation.enabled,
            federation_enabled: config.federation_enabled,
        },
        continuation_settings: config.continuation.clone(),
        mediation: MediationStatus(config.mediation.clone()),
        preserved_limitations: PRESERVED_LIMITATIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        resolved_at: String::new(),
        mode: config.mode.as_str().to_owned(),
        restriction: restriction_status(config, admitted),
        session_store: config.database.kind().to_owned(),
    }
}

/// Logs to stderr as `<YYYY-MM-DDTHH:MM:SS> <LEVEL> [<component>] <message>`
/// (`docs/reference/status.md#3-logging`). The MCP library's own chatter is kept at WARNING unless
/// the level is DEBUG. When an OTLP endpoint is configured, the spans of
/// [`SPAN_TARGET`](agent_core::observe::trace::SPAN_TARGET) (and nothing else) are exported as
/// traces (`docs/observability.md#traces`); the log never shows them.
fn init_logging(config: &Config) -> Result<telemetry::Traces, StartupError> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let level = config.log_level.tracing_level();
    let rmcp_level = if level == tracing::Level::DEBUG {
        "debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},rmcp={rmcp_level},{}=off",
        level.as_str().to_lowercase(),
        agent_core::observe::trace::SPAN_TARGET
    ));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(LogLine)
        .with_filter(filter);
    let traces = telemetry::Traces::start(&config.telemetry).map_err(StartupError::new)?;
    // Without traces, no second layer at all (not a `None` one): a `None` layer would make
    // the span call sites "sometimes" enabled, asked again at every span.
    let _ = match traces.layer() {
        Some(exporter) => tracing_subscriber::registry()
            .with(log)
            .with(exporter)
            .try_init(),
        None => tracing_subscriber::registry().with(log).try_init(),
    };
    Ok(traces)
}

/// One log line in the contract's layout (`docs/reference/status.md#3-logging`).
struct LogLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARNING",
            tracing::Level::INFO => "INFO",
            tracing::Level::DEBUG | tracing::Level::TRACE => "DEBUG",
        };
        write!(
            writer,
            "{} {level} [{}] ",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S"),
            meta.target()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
