//! Spawning the release server (stdio or streamable HTTP) with an rmcp client attached.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_policy::config::vars;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::Value;
use tokio::process::{Child, Command};

use super::Result;

pub type Client = RunningService<RoleClient, ()>;

/// A working directory (the server's cwd) with the state directory inside it.
pub struct Workspace {
    dir: tempfile::TempDir,
    /// `CLAUDE_AGENT_MCP_DATABASE_URL` of the servers, when they use PostgreSQL.
    database_url: Option<String>,
    /// Further variables of the servers ([`Workspace::with_env`]).
    env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(database_url: Option<String>) -> Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("claude-agent-mcp-bench-")
                .tempdir()?,
            database_url,
            env: Vec::new(),
        })
    }

    /// Starts the servers with `name=value` as well.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn cwd(&self) -> Result<PathBuf> {
        Ok(self.dir.path().canonicalize()?)
    }

    pub fn state_dir(&self) -> Result<PathBuf> {
        Ok(self.cwd()?.join("state"))
    }

    pub fn db_path(&self) -> Result<PathBuf> {
        Ok(self.state_dir()?.join("claude-agent-mcp.db"))
    }

    fn stderr_file(&self) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.stderr"))?)
    }

    /// What the server wrote on stderr so far (for failure messages).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.stderr")).unwrap_or_default()
    }

    /// The server command: a clean environment pointing at `api_base` and this state dir.
    pub fn command(&self, bin: &Path, api_base: &str, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.cwd()?)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(vars::ANTHROPIC_API_KEY, "bench")
            .env(vars::ANTHROPIC_BASE_URL, api_base)
            .env(vars::STATE_DIR, self.state_dir()?)
            .env(vars::LOG_LEVEL, "ERROR")
            .stderr(Stdio::from(self.stderr_file()?))
            .kill_on_drop(true);
        if let Some(url) = &self.database_url {
            cmd.env(vars::DATABASE_URL, url);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// Spawns the server over stdio and completes the MCP `initialize` handshake; also returns
    /// the time from spawn to the end of the handshake.
    pub async fn start_stdio(&self, bin: &Path, api_base: &str) -> Result<(Server, Duration)> {
        let mut cmd = self.command(bin, api_base, &[])?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let client = match ().serve((stdout, stdin)).await {
            Ok(client) => client,
            Err(e) => {
                let _ = child.kill().await;
                return Err(format!("initialize failed: {e}\n{}", self.stderr_log()).into());
            }
        };
        let elapsed = start.elapsed();
        Ok((Server { client, child }, elapsed))
    }

    /// Spawns the server over streamable HTTP on `port` and connects one client to it.
    pub async fn start_http(&self, bin: &Path, api_base: &str, port: u16) -> Result<Server> {
        let port_text = port.to_string();
        let args = [
            "--transport",
            "streamable-http",
            "--host",
            "127.0.0.1",
            "--port",
            &port_text,
        ];
        let mut child = self
            .command(bin, api_base, &args)?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill().await;
                return Err(format!(
                    "the HTTP server did not come up on port {port}\n{}",
                    self.stderr_log()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let client = http_client(port).await?;
        Ok(Server { client, child })
    }
}

/// A new MCP client session against the HTTP server on `port`.
pub async fn http_client(port: u16) -> Result<Client> {
    let transport = StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
    Ok(().serve(transport).await?)
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running server with its MCP client.
pub struct Server {
    pub client: Client,
    pub child: Child,
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Calls a tool and returns its structured result; fails on `isError` or an `error` key.
    pub async fn call(&self, name: &str, args: Value) -> Result<Value> {
        call(&self.client, name, args).await
    }

    /// Closes the session (stdin for stdio) and waits for the process to exit; kills it
    /// after 10 s.
    pub async fn stop(mut self) {
        let _ = self.client.cancel().await;
        reap(&mut self.child).await;
    }

    /// Kills the process (HTTP servers do not exit when a client leaves).
    pub async fn kill(mut self) {
        let _ = self.client.cancel().await;
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// Calls a tool on `client`; see [`Server::call`].
pub async fn call(client: &Client, name: &str, args: Value) -> Result<Value> {
    let arguments: JsonObject = args.as_object().cloned().unwrap_or_default();
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
        .await?;
    tool_value(
        name,
        result.is_error == Some(true),
        result.structured_content.unwrap_or(Value::Null),
    )
}

/// A tool result's structured value, or an error when the result is marked `isError`, has an
/// `error` key or has no structured value (every client of the bench checks results so).
pub fn tool_value(name: &str, is_error: bool, value: Value) -> Result<Value> {
    if is_error || value.get("error").is_some() || value.is_null() {
        return Err(format!("{name} failed: {value}").into());
    }
    Ok(value)
}

/// Waits up to 10 s for a server whose input was closed to exit, then kills it.
pub async fn reap(child: &mut Child) {
    let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    if !matches!(exited, Ok(Ok(_))) {
        let _ = child.kill().await;
    }
}

/// Memory figures of a process from `/proc/<pid>/status` (sizes in kB).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
    pub anon: u64,
    pub file: u64,
    pub threads: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        Some(Self {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
            anon: field("RssAnon:").unwrap_or(0),
            file: field("RssFile:").unwrap_or(0),
            threads: field("Threads:").unwrap_or(0),
        })
    }
}
