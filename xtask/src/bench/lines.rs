//! A lean stdio MCP client for the round-trip phases: it times a request from the write of its
//! line to the arrival of the answer's line, and reads the answer only after the clock has
//! stopped.
//!
//! The rmcp client reads every answer as its generic message: serde buffers the line into a
//! tree and then tries the kinds of rmcp's untagged `ServerResult` one after the other, each
//! walking the buffered tree, before the call's result matches. For an answer of a few
//! kilobytes (a session view, a page of sessions) that costs the client more CPU than the
//! server spends on the call, on the same two cores, so a latency taken around it measured the
//! client library as much as the server (`docs/performance.md`, "What each figure measures").

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::Result;
use super::server::Workspace;

/// A server over stdio with the lean client attached.
pub struct LineServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    line: Vec<u8>,
}

/// The protocol version the lean client asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// How long one answer may take before the bench gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl LineServer {
    /// Spawns the server over stdio and completes the `initialize` handshake.
    pub async fn start(ws: &Workspace, bin: &Path, api_base: &str) -> Result<Self> {
        let mut cmd = ws.command(bin, api_base, &[])?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
        let mut server = Self {
            child,
            stdin,
            stdout,
            next_id: 0,
            line: Vec::with_capacity(64 * 1024),
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "claude-agent-mcp-bench", "version": "1"},
        });
        if let Err(e) = server.request("initialize", Some(params)).await {
            let _ = server.child.kill().await;
            return Err(format!("initialize failed: {e}\n{}", ws.stderr_log()).into());
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        server.write_line(&initialized).await?;
        Ok(server)
    }

    /// One `ping`; returns its round trip.
    pub async fn ping(&mut self) -> Result<Duration> {
        let (elapsed, result) = self.request("ping", None).await?;
        if result != json!({}) {
            return Err(format!("unexpected ping result: {result}").into());
        }
        Ok(elapsed)
    }

    /// Calls a tool; returns the round trip and the structured result. Fails on `isError` or
    /// an `error` key, as the rmcp client's [`super::server::call`] does.
    pub async fn call(&mut self, name: &str, args: Value) -> Result<(Duration, Value)> {
        let params = json!({"name": name, "arguments": args});
        let (elapsed, mut result) = self.request("tools/call", Some(params)).await?;
        let value = result
            .get_mut("structuredContent")
            .map(Value::take)
            .unwrap_or(Value::Null);
        if result["isError"] == true || value.get("error").is_some() || value.is_null() {
            return Err(format!("{name} failed: {value}").into());
        }
        Ok((elapsed, value))
    }

    /// Sends one request and waits for its answer. The line is formatted before the clock
    /// starts; the clock stops when the answer's line has arrived, and the line is parsed
    /// after that. Lines that are not the answer (notifications) are skipped.
    async fn request(&mut self, method: &str, params: Option<Value>) -> Result<(Duration, Value)> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        let mut request = serde_json::to_vec(&message)?;
        request.push(b'\n');
        let started = Instant::now();
        self.stdin.write_all(&request).await?;
        self.stdin.flush().await?;
        loop {
            self.line.clear();
            let read = tokio::time::timeout(
                ANSWER_TIMEOUT,
                self.stdout.read_until(b'\n', &mut self.line),
            )
            .await
            .map_err(|_| format!("no answer to {method} within {ANSWER_TIMEOUT:?}"))??;
            let elapsed = started.elapsed();
            if read == 0 {
                return Err(format!("the server closed stdout before answering {method}").into());
            }
            let mut answer: Value = serde_json::from_slice(&self.line)?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method} failed: {error}").into());
            }
            let result = answer
                .get_mut("result")
                .map(Value::take)
                .ok_or_else(|| format!("the answer to {method} has no result"))?;
            return Ok((elapsed, result));
        }
    }

    async fn write_line(&mut self, message: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Closes stdin and waits for the process to exit; kills it after 10 s.
    pub async fn stop(self) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        if !matches!(exited, Ok(Ok(_))) {
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::{LineServer, Workspace};
    use serde_json::json;

    /// A stand-in server: answers by method, with a notification before the `ping` answer and
    /// an answer for another id before the second call's, and an error result for a tool
    /// named `broken`.
    const SCRIPT: &str = r#"#!/bin/sh
while IFS= read -r line; do
  case "$line" in
    *'"method":"initialize"'*) echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}';;
    *'"method":"ping"'*) echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'; echo '{"jsonrpc":"2.0","id":2,"result":{}}';;
    *'"name":"broken"'*) echo '{"jsonrpc":"2.0","id":4,"result":{"content":[],"structuredContent":{"error":{"code":"X"}},"isError":true}}';;
    *'"method":"tools/call"'*) echo '{"jsonrpc":"2.0","id":99,"result":{}}'; echo '{"jsonrpc":"2.0","id":3,"result":{"content":[],"structuredContent":{"ok":true},"isError":false}}';;
  esac
done
"#;

    #[tokio::test]
    async fn answers_are_matched_by_id_and_errors_refused() {
        use std::os::unix::fs::PermissionsExt;
        let ws = Workspace::new(None).unwrap();
        let script = ws.cwd().unwrap().join("server.sh");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut server = LineServer::start(&ws, &script, "http://127.0.0.1:9")
            .await
            .unwrap();
        let elapsed = server.ping().await.unwrap();
        assert!(!elapsed.is_zero());
        let (_, value) = server.call("agent_ok", json!({})).await.unwrap();
        assert_eq!(value, json!({"ok": true}));
        let refused = server.call("broken", json!({})).await.unwrap_err();
        assert!(refused.to_string().contains("broken failed"), "{refused}");
        server.stop().await;
    }
}
