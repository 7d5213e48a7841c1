//! Connections to downstream servers: spawning (with the minimal child environment) or
//! dialling, the MCP handshake, one long-lived connection per server, reconnection after the
//! connection dies, and per-call timeouts.
//!
//! A stdio server is spawned as the leader of its own process group
//! ([`agent_process::ProcessGroup`]), and the whole group ends
//! with the connection (closed, restarted, dropped, or timed out during discovery): a
//! grandchild it started does not outlive it. The group is signalled before the leader is
//! reaped, so its ID cannot have been reused by an unrelated process. Its stderr is read in
//! bounded lines.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use agent_core::child_env;
use agent_process::{ProcessGroup, Signal};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, RoleClient, ServiceExt};
use tokio::sync::Mutex;

use crate::config::{DownstreamServerConfig, DownstreamTransport};

/// The parent variables a stdio child inherits, when set: the base set every child of the server
/// gets (`docs/federation.md#6-child-environment-stdio`, plus `LANG`); everything else,
/// `ANTHROPIC_API_KEY` included, stays out. The configured `env` is laid over them.
pub const BASE_ENV_VARS: &[&str] = child_env::BASE_VARS;

/// The exact environment of a stdio child: the [`BASE_ENV_VARS`] present in this process
/// (values that look like exported shell functions, `()…`, are skipped) overlaid with the
/// configured `env`.
pub fn child_environment(configured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = child_env::inherited(std::env::vars_os(), &child_env::Allowlist::default());
    for (key, value) in configured {
        env.insert(key.clone(), value.clone());
    }
    env
}

/// Longest stderr line forwarded to the log, in bytes; the rest of a longer line is read and
/// discarded, never buffered.
const MAX_STDERR_LINE: usize = 2000;

/// Logs a child's stderr line by line (INFO, target `agent_federation::downstream`) until EOF,
/// so that it keeps the server's log format instead of interleaving raw text. At most
/// [`MAX_STDERR_LINE`] bytes of a line are held, however long the line.
fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    fn log(server: &str, line: &[u8], cut: bool) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let marker = if cut { " [line truncated]" } else { "" };
        tracing::info!(
            target: "agent_federation::downstream",
            "Downstream server '{server}' stderr: {line}{marker}"
        );
    }
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr);
        let mut line = Vec::with_capacity(256);
        let mut cut = false;
        loop {
            let (consumed, ended) = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(buffer) => {
                    let end = buffer.iter().position(|b| *b == b'\n');
                    let part = &buffer[..end.unwrap_or(buffer.len())];
                    let room = MAX_STDERR_LINE - line.len();
                    if part.len() > room {
                        cut = true;
                    }
                    line.extend_from_slice(&part[..part.len().min(room)]);
                    (part.len() + usize::from(end.is_some()), end.is_some())
                }
            };
            reader.consume(consumed);
            if ended {
                log(&server, &line, cut);
                line.clear();
                cut = false;
            }
        }
        if !line.is_empty() {
            log(&server, &line, cut);
        }
    });
}

/// How long a stdio server may take to exit after its stdin was closed, and again after
/// `SIGTERM`, before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Ends a stdio server's group after the connection was closed (its stdin with it): the
/// leader gets [`EXIT_GRACE`] to exit, then the group gets `SIGTERM` and the same grace, then
/// `SIGKILL`. Whatever else of the group still runs is killed before the leader is reaped.
async fn shutdown_group(mut group: ProcessGroup) {
    let pgid = group.pgid();
    if tokio::time::timeout(EXIT_GRACE, group.exited())
        .await
        .is_err()
    {
        group.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(EXIT_GRACE, group.exited()).await;
    }
    if !group.kill() {
        let _ = group.child_mut().start_kill();
    }
    if tokio::time::timeout(EXIT_GRACE, group.reap())
        .await
        .is_err()
    {
        // Dropping the unreaped group kills it once more; `kill_on_drop` reaps the leader.
        tracing::debug!(pgid, "a downstream server was not reaped in time");
    }
}

/// A connection: the MCP client, and for a stdio server its process group.
pub(crate) struct Client {
    service: Service,
    group: Option<ProcessGroup>,
}

impl Deref for Client {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.service
    }
}

type Service = RunningService<RoleClient, ClientConfig>;

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
                use std::process::Stdio;
                // From here on, a failure or a timeout drops the group, which kills it.
                let mut group = ProcessGroup::spawn(
                    tokio::process::Command::new(command)
                        .args(args)
                        .env_clear()
                        .envs(child_environment(env))
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                )
                .map_err(|e| format!("cannot start '{command}': {e}"))?;
                let child = group.child_mut();
                let (stdin, stdout, stderr) =
                    (child.stdin.take(), child.stdout.take(), child.stderr.take());
                if let Some(stderr) = stderr {
                    forward_stderr(server.name.clone(), stderr);
                }
                let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
                    return Err(format!("cannot start '{command}': no stdio pipes"));
                };
                let service = client_info()
                    .serve((stdout, stdin))
                    .await
                    .map_err(|e| format!("MCP initialization failed: {e}"))?;
                Ok(Client {
                    service,
                    group: Some(group),
                })
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
                let service = client_info()
                    .serve(transport)
                    .await
                    .map_err(|e| format!("MCP initialization failed: {e}"))?;
                Ok(Client {
                    service,
                    group: None,
                })
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

/// Closes a connection: for a stdio server its stdin is closed, then its process group ends
/// ([`shutdown_group`]; bounded).
pub(crate) async fn close(client: Client) {
    let Client { mut service, group } = client;
    if let Ok(None) = service.close_with_timeout(Duration::from_secs(5)).await {
        tracing::debug!("downstream connection did not close within 5 s; dropped");
    }
    drop(service);
    if let Some(group) = group {
        shutdown_group(group).await;
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
