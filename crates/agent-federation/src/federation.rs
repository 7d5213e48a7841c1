//! The federation: startup (enablement, discovery, catalog), status, invocation with its
//! session events, and the [`ToolProvider`] face the engine uses.

use std::path::Path;
use std::sync::Arc;

use agent_core::pyfmt;
use agent_core::{
    Event, EventLog, EventType, Profile, ToolCallContext, ToolDefinition, ToolProvider,
};
use async_trait::async_trait;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::{CatalogTool, build_catalog};
use crate::config::{FederationConfig, FederationConfigError};
use crate::connection::{self, ConnectionState, ServerConnection};

/// Why an invocation was refused before any downstream contact
/// (`docs/reference/federation.md#6-invocation` steps 1–3). These never write events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationErrorKind {
    /// `downstream_tool_not_visible`
    NotVisible,
    /// `downstream_invocation_error`
    NoServerConfig,
    /// `downstream_schema_validation_error`
    SchemaValidation,
}

impl InvocationErrorKind {
    /// The internal error code (`docs/reference/envelope.md#6-error-codes`: federation internals).
    pub fn code(self) -> &'static str {
        match self {
            InvocationErrorKind::NotVisible => "downstream_tool_not_visible",
            InvocationErrorKind::NoServerConfig => "downstream_invocation_error",
            InvocationErrorKind::SchemaValidation => "downstream_schema_validation_error",
        }
    }
}

/// A refused invocation; `message` is the exact text the model sees after `Error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvocationError {
    pub kind: InvocationErrorKind,
    pub message: String,
}

impl InvocationError {
    fn new(kind: InvocationErrorKind, message: String) -> Self {
        Self { kind, message }
    }
}

/// The outcome of a downstream call that was attempted (events were written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvocationResult {
    pub normalized_name: String,
    /// False for a connection/protocol failure, a timeout, or a downstream `isError` result.
    pub success: bool,
    /// The result content: each content block's `text`, or the block as JSON, joined by `\n`.
    pub content: String,
    /// Set when `success` is false.
    pub error_message: Option<String>,
}

impl InvocationResult {
    /// The string the model or mediation sees: the content, or `Error: <error_message>`.
    pub fn as_text(&self) -> String {
        if self.success {
            self.content.clone()
        } else {
            format!(
                "Error: {}",
                self.error_message.as_deref().unwrap_or_default()
            )
        }
    }
}

/// One downstream server in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    pub name: String,
    /// `stdio` or `streamable-http`.
    pub transport: &'static str,
    pub enabled: bool,
    pub state: ConnectionState,
    /// Tools listed by the server (all of them, allowlisted or not).
    pub discovered: usize,
    /// Catalogued tools on its allowlist.
    pub allowlisted: usize,
    /// Reconnections after the connection died.
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// What the binary logs and reports (`docs/reference/federation.md#1-enablement`,
/// `docs/reference/federation.md#7-status`). Only `enabled` and `active`
/// reach MCP clients (`federation_enabled`, `federation_active`); the rest is for logs and
/// `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FederationStatus {
    /// The config flag (`CLAUDE_AGENT_MCP_FEDERATION_ENABLED`).
    pub enabled: bool,
    /// At least one allowlisted tool is catalogued.
    pub active: bool,
    pub config_path: Option<String>,
    pub servers: Vec<ServerStatus>,
    /// Tools discovered over all servers.
    pub discovered: usize,
    /// Allowlisted catalogued tools over all servers.
    pub allowlisted: usize,
    /// Errors: the config error that disabled federation, servers whose discovery failed.
    pub problems: Vec<String>,
    /// Non-fatal findings: config warnings, skipped names, allowlisted tools not discovered.
    pub warnings: Vec<String>,
}

struct Inner {
    enabled: bool,
    config_path: Option<String>,
    catalog: Vec<CatalogTool>,
    visible: Vec<(Profile, Vec<ToolDefinition>)>,
    servers: Vec<ServerEntry>,
    store: Option<Arc<dyn EventLog>>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

struct ServerEntry {
    discovered: usize,
    allowlisted: usize,
    connection: Arc<ServerConnection>,
}

/// The federation configuration as startup read it, once: discovery
/// ([`Federation::from_source`]) and the Claude Code CLI's own MCP client (native mode) both
/// take it from here, so they cannot disagree about what the file says.
#[derive(Debug)]
pub enum FederationSource {
    /// Federation is switched off: the file is never read.
    Disabled,
    /// Enabled, but no config path is set.
    Unset,
    /// The file is missing or invalid.
    Invalid {
        path: std::path::PathBuf,
        error: FederationConfigError,
    },
    /// The file, read and validated (its warnings already logged).
    Loaded(FederationConfig),
}

impl FederationSource {
    /// Reads the configuration from the two settings (`docs/reference/federation.md#1-enablement`).
    pub fn load(enabled: bool, config_path: Option<&Path>) -> FederationSource {
        match (enabled, config_path) {
            (false, _) => FederationSource::Disabled,
            (true, None) => FederationSource::Unset,
            (true, Some(path)) => match FederationConfig::load(path) {
                Ok(config) => FederationSource::Loaded(config),
                Err(error) => FederationSource::Invalid {
                    path: path.to_path_buf(),
                    error,
                },
            },
        }
    }

    /// The configuration, when it loaded.
    pub fn config(&self) -> Option<&FederationConfig> {
        match self {
            FederationSource::Loaded(config) => Some(config),
            _ => None,
        }
    }
}

/// Downstream MCP federation. Cheap to clone (one shared state); hand it to the engine as
/// `Arc::new(federation.clone())` — it implements [`ToolProvider`].
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("enabled", &self.inner.enabled)
            .field("active", &self.is_active())
            .field("catalog", &self.inner.catalog.len())
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Federation switched off: inactive, nothing read, nothing spawned.
    pub fn disabled() -> Federation {
        Self::inactive(false, None, Vec::new())
    }

    fn inactive(enabled: bool, config_path: Option<String>, problems: Vec<String>) -> Federation {
        Federation {
            inner: Arc::new(Inner {
                enabled,
                config_path,
                catalog: Vec::new(),
                visible: Vec::new(),
                servers: Vec::new(),
                store: None,
                problems,
                warnings: Vec::new(),
            }),
        }
    }

    /// The whole startup of `docs/reference/federation.md#1-enablement` from the two settings
    /// (`CLAUDE_AGENT_MCP_FEDERATION_ENABLED`, `CLAUDE_AGENT_MCP_FEDERATION_CONFIG`): never
    /// fails; every problem is logged and leaves federation inactive.
    pub async fn from_settings(
        enabled: bool,
        config_path: Option<&Path>,
        store: Arc<dyn EventLog>,
    ) -> Federation {
        Self::from_source(FederationSource::load(enabled, config_path), store).await
    }

    /// Federation from a configuration read once at startup ([`FederationSource::load`]):
    /// starts it, or logs why it stays inactive.
    pub async fn from_source(source: FederationSource, store: Arc<dyn EventLog>) -> Federation {
        match source {
            FederationSource::Disabled => Self::disabled(),
            FederationSource::Unset => {
                let message = "Federation is enabled but CLAUDE_AGENT_MCP_FEDERATION_CONFIG is not set — federation will be disabled".to_owned();
                tracing::warn!("{message}");
                Self::inactive(true, None, vec![message])
            }
            FederationSource::Invalid { path, error } => {
                tracing::error!("{}", error.log_line());
                Self::inactive(
                    true,
                    Some(path.display().to_string()),
                    vec![error.log_line()],
                )
            }
            FederationSource::Loaded(config) => Self::start(config, store).await,
        }
    }

    /// Discovers every enabled server (concurrently, each within its
    /// `discovery_timeout_seconds`), builds the catalog and keeps one connection per server
    /// that has a callable tool. A failing server is logged and contributes no tools.
    pub async fn start(config: FederationConfig, store: Arc<dyn EventLog>) -> Federation {
        let mut problems = Vec::new();
        let mut warnings = config.warnings.clone();

        let enabled: Vec<_> = config.enabled_servers().cloned().collect();
        let results = futures::future::join_all(enabled.iter().map(|server| async move {
            let result = connection::discover(server).await;
            (server.name.clone(), result)
        }))
        .await;

        let mut clients = Vec::new();
        let mut discovered_lists = Vec::new();
        for (name, result) in results {
            match result {
                Ok((client, tools)) => {
                    tracing::info!(
                        "Downstream server '{name}': {} tool(s) discovered",
                        tools.len()
                    );
                    discovered_lists.push((name.clone(), tools));
                    clients.push((name, Some(client), None));
                }
                Err(e) => {
                    let message = format!(
                        "Downstream server '{name}': discovery failed: {e} — no tools from this server"
                    );
                    tracing::warn!("{message}");
                    problems.push(message);
                    clients.push((name, None, Some(e)));
                }
            }
        }

        let (catalog, catalog_warnings) = build_catalog(&config, &discovered_lists);
        for warning in &catalog_warnings {
            tracing::warn!("{warning}");
        }
        warnings.extend(catalog_warnings);

        let mut servers = Vec::new();
        for server in &config.servers {
            if !server.enabled {
                servers.push(ServerEntry {
                    discovered: 0,
                    allowlisted: 0,
                    connection: Arc::new(ServerConnection::new(
                        server.clone(),
                        None,
                        ConnectionState::Disabled,
                        None,
                    )),
                });
                continue;
            }
            let discovered = discovered_lists
                .iter()
                .find(|(n, _)| *n == server.name)
                .map_or(0, |(_, tools)| tools.len());
            let allowlisted = catalog
                .iter()
                .filter(|t| t.server == server.name && t.allowed)
                .count();
            let callable = catalog
                .iter()
                .any(|t| t.server == server.name && t.allowed && !t.profiles_allowed.is_empty());
            let slot = clients.iter_mut().find(|(n, _, _)| *n == server.name);
            let (client, error) = match slot {
                Some((_, client, error)) => (client.take(), error.take()),
                None => (None, None),
            };
            let connection = match (client, error) {
                (Some(client), _) if callable => ServerConnection::new(
                    server.clone(),
                    Some(client),
                    ConnectionState::Connected,
                    None,
                ),
                (Some(client), _) => {
                    connection::close(client).await;
                    ServerConnection::new(server.clone(), None, ConnectionState::Idle, None)
                }
                (None, error) => ServerConnection::new(
                    server.clone(),
                    None,
                    ConnectionState::DiscoveryFailed,
                    error,
                ),
            };
            servers.push(ServerEntry {
                discovered,
                allowlisted,
                connection: Arc::new(connection),
            });
        }

        let visible = Profile::ALL
            .iter()
            .map(|profile| {
                let defs = catalog
                    .iter()
                    .filter(|t| t.visible_to(*profile))
                    .map(CatalogTool::definition)
                    .collect();
                (*profile, defs)
            })
            .collect();

        let federation = Federation {
            inner: Arc::new(Inner {
                enabled: true,
                config_path: config.path.as_ref().map(|p| p.display().to_string()),
                catalog,
                visible,
                servers,
                store: Some(store),
                problems,
                warnings,
            }),
        };
        let status = federation.status();
        tracing::info!(
            "Federation initialized: {} server(s), {} tool(s) discovered, {} allowlisted",
            enabled.len(),
            status.discovered,
            status.allowlisted
        );
        if status.active {
            tracing::info!(
                "Federation active: {} allowlisted tool(s) available",
                status.allowlisted
            );
        } else {
            tracing::warn!("Federation inactive: no allowlisted downstream tool was discovered");
        }
        federation
    }

    /// The config flag.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// At least one allowlisted tool is catalogued (whatever profiles see it).
    pub fn is_active(&self) -> bool {
        self.inner.catalog.iter().any(|t| t.allowed)
    }

    /// Every catalogued tool, allowlisted or not, in discovery order.
    pub fn catalog(&self) -> &[CatalogTool] {
        &self.inner.catalog
    }

    /// The normalized names `profile` sees, in catalog order.
    pub fn visible_tool_names(&self, profile: Profile) -> Vec<String> {
        self.definitions(profile)
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    fn definitions(&self, profile: Profile) -> &[ToolDefinition] {
        self.inner
            .visible
            .iter()
            .find(|(p, _)| *p == profile)
            .map_or(&[], |(_, defs)| defs.as_slice())
    }

    /// A snapshot for logs, `doctor` and `agent_get_runtime_status`.
    pub fn status(&self) -> FederationStatus {
        let servers: Vec<ServerStatus> = self
            .inner
            .servers
            .iter()
            .map(|entry| {
                let info = entry.connection.info();
                let config = &entry.connection.config;
                ServerStatus {
                    name: config.name.clone(),
                    transport: config.transport.kind(),
                    enabled: config.enabled,
                    state: info.state,
                    discovered: entry.discovered,
                    allowlisted: entry.allowlisted,
                    restarts: info.restarts,
                    last_error: info.last_error,
                }
            })
            .collect();
        FederationStatus {
            enabled: self.inner.enabled,
            active: self.is_active(),
            config_path: self.inner.config_path.clone(),
            discovered: servers.iter().map(|s| s.discovered).sum(),
            allowlisted: self.inner.catalog.iter().filter(|t| t.allowed).count(),
            servers,
            problems: self.inner.problems.clone(),
            warnings: self.inner.warnings.clone(),
        }
    }

    /// Closes every connection (children get stdin closed, then SIGTERM, then kill). Calls
    /// after this fail; visibility is unchanged.
    pub async fn shutdown(&self) {
        futures::future::join_all(
            self.inner
                .servers
                .iter()
                .map(|entry| entry.connection.shutdown()),
        )
        .await;
    }

    /// Invokes a federated tool for a session (`docs/reference/federation.md#6-invocation`, with a
    /// call timeout and `isError` honoured). `Err` is a refusal before any downstream contact (no
    /// events); `Ok` means the call was attempted and both events were written.
    pub async fn invoke(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<InvocationResult, InvocationError> {
        let Some(tool) = self
            .inner
            .catalog
            .iter()
            .find(|t| t.normalized_name == name && t.visible_to(ctx.profile))
        else {
            return Err(InvocationError::new(
                InvocationErrorKind::NotVisible,
                format!("Tool '{name}' is not visible for this session"),
            ));
        };
        let Some(entry) = self
            .inner
            .servers
            .iter()
            .find(|s| s.connection.config.name == tool.server && s.connection.config.enabled)
        else {
            return Err(InvocationError::new(
                InvocationErrorKind::NoServerConfig,
                format!("No server config found for '{}'", tool.server),
            ));
        };
        let arguments: Map<String, Value> = match input {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(InvocationError::new(
                    InvocationErrorKind::SchemaValidation,
                    format!(
                        "Tool '{name}' arguments must be a JSON object, got {}",
                        json_type(&other)
                    ),
                ));
            }
        };
        let missing = tool.missing_required(&arguments);
        if !missing.is_empty() {
            return Err(InvocationError::new(
                InvocationErrorKind::SchemaValidation,
                format!(
                    "Tool '{name}' is missing required arguments: {}",
                    pyfmt::list(&missing)
                ),
            ));
        }

        let mut input_keys: Vec<&String> = arguments.keys().collect();
        input_keys.sort();
        self.record(
            ctx,
            Event {
                event_type: EventType::DownstreamToolInvocation,
                turn_index: ctx.turn_index,
                payload: json!({
                    "normalized_name": tool.normalized_name,
                    "server": tool.server,
                    "downstream_name": tool.downstream_name,
                    "input_keys": input_keys,
                }),
            },
        )
        .await;

        let result = match entry
            .connection
            .call(&tool.downstream_name, arguments)
            .await
        {
            Ok(result) => normalise(tool, &result),
            Err(e) => InvocationResult {
                normalized_name: tool.normalized_name.clone(),
                success: false,
                content: String::new(),
                error_message: Some(format!(
                    "Invocation of '{}' on server '{}' failed: {e}",
                    tool.downstream_name, tool.server
                )),
            },
        };
        if let Some(error) = &result.error_message {
            tracing::warn!(
                session_id = %ctx.session_id,
                tool = %tool.normalized_name,
                "downstream tool call failed: {error}"
            );
        }
        self.record(
            ctx,
            Event {
                event_type: EventType::DownstreamToolResult,
                turn_index: ctx.turn_index,
                payload: json!({
                    "normalized_name": tool.normalized_name,
                    "success": result.success,
                    "error_message": result.error_message,
                }),
            },
        )
        .await;
        Ok(result)
    }

    /// Appends an audit event; a storage failure is logged and does not stop the call.
    async fn record(&self, ctx: &ToolCallContext, event: Event) {
        let Some(store) = &self.inner.store else {
            return;
        };
        if let Err(e) = store
            .append_events(&ctx.session_id, std::slice::from_ref(&event))
            .await
        {
            tracing::warn!(
                session_id = %ctx.session_id,
                event = event.event_type.as_str(),
                "federation event not recorded: {e}"
            );
        }
    }
}

/// Result content as text (`docs/reference/federation.md#6-invocation` step 6), `isError` turning
/// it into a failure.
fn normalise(tool: &CatalogTool, result: &CallToolResult) -> InvocationResult {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(match structured {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        });
    }
    let content = parts.join("\n");
    if result.is_error == Some(true) {
        let message = if content.trim().is_empty() {
            format!(
                "Tool '{}' on server '{}' reported an error without details",
                tool.downstream_name, tool.server
            )
        } else {
            content.clone()
        };
        InvocationResult {
            normalized_name: tool.normalized_name.clone(),
            success: false,
            content,
            error_message: Some(message),
        }
    } else {
        InvocationResult {
            normalized_name: tool.normalized_name.clone(),
            success: true,
            content,
            error_message: None,
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[async_trait]
impl ToolProvider for Federation {
    fn visible_tools(&self, profile: Profile) -> Vec<ToolDefinition> {
        self.definitions(profile).to_vec()
    }

    async fn call(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<String, String> {
        match self.invoke(ctx, name, input).await {
            Ok(result) if result.success => Ok(result.content),
            Ok(result) => Err(result.error_message.unwrap_or_default()),
            Err(e) => Err(e.message),
        }
    }
}
