//! Connections to downstream servers: spawning (with the minimal child environment) or
//! dialling, the MCP handshake, one long-lived connection per server, reconnection after the
//! connection dies, and per-call timeouts.

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, ServiceExt};
use tokio::sync::Mutex;

use crate::config::{DownstreamServerConfig, DownstreamTransport};

/// The parent variables a stdio child inherits, when set (`federation.md` §3, plus `LANG`);
/// everything else, `ANTHROPIC_API_KEY` included, stays out. The configured `env` is laid over
/// them.
#[cfg(unix)]
pub const BASE_ENV_VARS: &[&str] = &["HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];
/// The parent variables a stdio child inherits on Windows (what the MCP SDKs pass).
#[cfg(not(unix))]
pub const BASE_ENV_VARS: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
];

/// The exact environment of a stdio child: the [`BASE_ENV_VARS`] present in this process
/// (values that look like exported shell functions, `()…`, are skipped) overlaid with the
/// configured `env`.
pub fn child_environment(configured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in BASE_ENV_VARS {
        if let Ok(value) = std::env::var(key)
            && !value.starts_with("()")
        {
            env.insert((*key).to_owned(), value);
        }
    }
    for (key, value) in configured {
        env.insert(key.clone(), value.clone());
    }
    env
}

/// Longest stderr line forwarded to the log (longer lines are cut).
const MAX_STDERR_LINE: usize = 2000;

/// Logs a child's stderr line by line (INFO, target `agent_federation::downstream`) until EOF,
/// so that it keeps the server's log format instead of interleaving raw text.
fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = agent_core::text::truncate_chars(&line, MAX_STDERR_LINE);
            tracing::info!(
                target: "agent_federation::downstream",
                "Downstream server '{server}' stderr: {line}"
            );
        }
    });
}

pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("claude-agent-mcp-federation", agent_core::VERSION),
    )
}

/// Spawns or dials the server and completes `initialize`, within `limit`.
pub(crate) async fn connect(
    server: &DownstreamServerConfig,
    limit: Duration,
) -> Result<Client, String> {
    let attempt = async {
        match &server.transport {
            DownstreamTransport::Stdio { command, args, env } => {
                let env = child_environment(env);
                let cmd = tokio::process::Command::new(command).configure(|c| {
                    c.args(args).env_clear().envs(&env).kill_on_drop(true);
                });
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start '{command}': {e}"))?;
                if let Some(stderr) = stderr {
                    forward_stderr(server.name.clone(), stderr);
                }
                client_info()
                    .serve(transport)
                    .await
                    .map_err(|e| format!("MCP initialization failed: {e}"))
            }
            DownstreamTransport::StreamableHttp { url, headers } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                for (key, value) in headers {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(key.as_bytes()),
                        http::HeaderValue::from_str(value),
                    ) {
                        config.custom_headers.insert(k, v);
                    }
                }
                let transport = StreamableHttpClientTransport::from_config(config);
                client_info()
                    .serve(transport)
                    .await
                    .map_err(|e| format!("MCP initialization failed: {e}"))
            }
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no MCP handshake within {}", format_seconds(limit))),
    }
}

/// Connects and lists every tool (following pagination), within the discovery timeout.
pub(crate) async fn discover(
    server: &DownstreamServerConfig,
) -> Result<(Client, Vec<Tool>), String> {
    let limit = server.discovery_timeout;
    let started = tokio::time::Instant::now();
    let client = connect(server, limit).await?;
    let remaining = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, client.list_all_tools()).await {
        Ok(Ok(tools)) => Ok((client, tools)),
        Ok(Err(e)) => {
            close(client).await;
            Err(format!("tools/list failed: {e}"))
        }
        Err(_) => {
            close(client).await;
            Err(format!(
                "discovery did not finish within {}",
                format_seconds(limit)
            ))
        }
    }
}

/// Closes a connection: stdin closed, then SIGTERM, then kill for a child (bounded).
pub(crate) async fn close(mut client: Client) {
    if let Ok(None) = client.close_with_timeout(Duration::from_secs(5)).await {
        tracing::debug!("downstream connection did not close within 5 s; dropped");
    }
}

pub(crate) fn format_seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs} s")
    }
}

/// Connection state for the status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// `enabled` is falsy: never spawned or dialled.
    Disabled,
    /// Discovery failed (timeout, spawn, handshake or protocol error): no tools.
    DiscoveryFailed,
    /// Discovered, but nothing is callable (no allowlisted tool or no profile): closed.
    Idle,
    /// A live connection is kept.
    Connected,
    /// The connection died and the last restart failed; the next call tries again.
    Unavailable,
    /// [`crate::Federation::shutdown`] closed it.
    ShutDown,
}

#[derive(Debug, Clone)]
pub(crate) struct RuntimeInfo {
    pub state: ConnectionState,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// One downstream server's long-lived connection.
pub(crate) struct ServerConnection {
    pub config: DownstreamServerConfig,
    slot: Mutex<Slot>,
    info: StdMutex<RuntimeInfo>,
}

struct Slot {
    client: Option<Client>,
    /// Bumped on every new connection so a failed call only drops the connection it used.
    generation: u64,
    shut_down: bool,
}

impl ServerConnection {
    pub fn new(
        config: DownstreamServerConfig,
        client: Option<Client>,
        state: ConnectionState,
        last_error: Option<String>,
    ) -> Self {
        Self {
            config,
            slot: Mutex::new(Slot {
                client,
                generation: 0,
                shut_down: false,
            }),
            info: StdMutex::new(RuntimeInfo {
                state,
                restarts: 0,
                last_error,
            }),
        }
    }

    pub fn info(&self) -> RuntimeInfo {
        match self.info.lock() {
            Ok(info) => info.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut RuntimeInfo)) {
        match self.info.lock() {
            Ok(mut info) => f(&mut info),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A peer on a live connection, restarting a dead one once (with a warning).
    async fn peer(&self) -> Result<(Peer<RoleClient>, u64), String> {
        let mut slot = self.slot.lock().await;
        if slot.shut_down {
            return Err("federation has been shut down".to_owned());
        }
        if let Some(client) = &slot.client
            && !client.peer().is_transport_closed()
            && !client.is_closed()
        {
            return Ok((client.peer().clone(), slot.generation));
        }
        let name = &self.config.name;
        let old = slot.client.take();
        if let Some(old) = old {
            close(old).await;
            tracing::warn!(
                "Downstream server '{name}': connection lost — restarting it ({})",
                self.config.transport.kind()
            );
        } else {
            tracing::warn!("Downstream server '{name}': not connected — reconnecting");
        }
        match connect(&self.config, self.config.discovery_timeout).await {
            Ok(client) => {
                let peer = client.peer().clone();
                slot.client = Some(client);
                slot.generation += 1;
                self.update(|i| {
                    i.state = ConnectionState::Connected;
                    i.restarts += 1;
                });
                tracing::info!("Downstream server '{name}': reconnected");
                Ok((peer, slot.generation))
            }
            Err(e) => {
                tracing::warn!("Downstream server '{name}': restart failed: {e}");
                self.update(|i| {
                    i.state = ConnectionState::Unavailable;
                    i.last_error = Some(e.clone());
                });
                Err(format!(
                    "the connection to the server was lost and could not be restarted: {e}"
                ))
            }
        }
    }

    /// Drops the connection of `generation` if it is still current (it failed under a call).
    async fn discard(&self, generation: u64, reason: &str) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation
            && let Some(client) = slot.client.take()
        {
            tracing::warn!(
                "Downstream server '{}': connection dropped ({reason}); it will be restarted on the next call",
                self.config.name
            );
            self.update(|i| i.last_error = Some(reason.to_owned()));
            drop(slot);
            close(client).await;
        }
    }

    /// Calls `tool` with `arguments` within the server's call timeout.
    pub async fn call(&self, tool: &str, arguments: JsonObject) -> Result<CallToolResult, String> {
        let timeout = self.config.call_timeout;
        let (peer, generation) = self.peer().await?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments.clone());
        let outcome = tokio::time::timeout(timeout, peer.call_tool(params)).await;
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ServiceError::TransportSend(e))) => {
                // Never delivered: safe to retry once on a fresh connection.
                self.discard(generation, &format!("send failed: {e}")).await;
                let (peer, generation) = self.peer().await?;
                let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
                match tokio::time::timeout(timeout, peer.call_tool(params)).await {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(e)) => Err(self.failed(generation, e).await),
                    Err(_) => Err(timed_out(timeout)),
                }
            }
            Ok(Err(e)) => Err(self.failed(generation, e).await),
            Err(_) => Err(timed_out(timeout)),
        }
    }

    async fn failed(&self, generation: u64, error: ServiceError) -> String {
        match error {
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.discard(generation, "transport closed").await;
                format!(
                    "{error} (the server connection was lost during the call; it will be restarted on the next call)"
                )
            }
            other => other.to_string(),
        }
    }

    pub async fn shutdown(&self) {
        let client = {
            let mut slot = self.slot.lock().await;
            slot.shut_down = true;
            slot.client.take()
        };
        if let Some(client) = client {
            close(client).await;
        }
        self.update(|i| {
            if i.state == ConnectionState::Connected || i.state == ConnectionState::Unavailable {
                i.state = ConnectionState::ShutDown;
            }
        });
    }
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "no result within {} (call_timeout_seconds); the call was cancelled",
        format_seconds(timeout)
    )
}
