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

use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::Result;
use super::server::{Workspace, reap, tool_value};

/// A server over stdio with the lean client attached.
pub struct LineServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    line: Vec<u8>,
}

/// How long one request may wait for its answer before the bench gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest line read from the server (the server's own limit for the lines it reads).
const MAX_LINE: u64 = 16 * 1024 * 1024;

impl LineServer {
    /// Spawns the server over stdio and completes the `initialize` handshake (the newest
    /// protocol version that has one, as rmcp's client settles on).
    pub async fn start(ws: &Workspace, bin: &Path, api_base: &str) -> Result<Self> {
        Self::start_with(ws, bin, &[], api_base).await
    }

    /// [`LineServer::start`] with arguments for `bin`.
    async fn start_with(ws: &Workspace, bin: &Path, args: &[&str], api_base: &str) -> Result<Self> {
        let mut cmd = ws.command(bin, api_base, args)?;
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
            "protocolVersion": ProtocolVersion::LATEST_WITH_INITIALIZE,
            "capabilities": {},
            "clientInfo": {"name": "claude-agent-mcp-bench", "version": "1"},
        });
        let initialized = match server.request("initialize", Some(params)).await {
            Ok((_, result)) if result["protocolVersion"].is_string() => Ok(()),
            Ok((_, result)) => Err(format!("no protocolVersion in {result}").into()),
            Err(e) => Err(e),
        };
        if let Err(e) = initialized {
            let _ = server.child.kill().await;
            return Err(format!("initialize failed: {e}\n{}", ws.stderr_log()).into());
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        server.send(&line_of(&initialized)?).await?;
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

    /// Calls a tool; returns the round trip and the structured result, checked as the rmcp
    /// client's results are ([`tool_value`]).
    pub async fn call(&mut self, name: &str, args: Value) -> Result<(Duration, Value)> {
        let params = json!({"name": name, "arguments": args});
        let (elapsed, mut result) = self.request("tools/call", Some(params)).await?;
        let value = result
            .get_mut("structuredContent")
            .map(Value::take)
            .unwrap_or(Value::Null);
        Ok((elapsed, tool_value(name, result["isError"] == true, value)?))
    }

    /// Sends one request and waits for its answer. The line is formatted before the clock
    /// starts; the clock stops when the answer's line has arrived, and the line is parsed
    /// after that. Lines that are not the answer (notifications and requests from the server,
    /// answers to other ids) are skipped; they are parsed while the clock runs, and the server
    /// sends none in the bench (its log level is `ERROR`, no request carries a progress token).
    /// An error answer without an id fails the request at once.
    async fn request(&mut self, method: &str, params: Option<Value>) -> Result<(Duration, Value)> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        let request = line_of(&message)?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + ANSWER_TIMEOUT);
        self.send(&request).await?;
        loop {
            self.line.clear();
            let mut limited = (&mut self.stdout).take(MAX_LINE);
            let next_line = limited.read_until(b'\n', &mut self.line);
            let read = tokio::time::timeout_at(deadline, next_line)
                .await
                .map_err(|_| format!("no answer to {method} within {ANSWER_TIMEOUT:?}"))??;
            let elapsed = started.elapsed();
            if read == 0 {
                return Err(format!("the server closed stdout before answering {method}").into());
            }
            if self.line.last() != Some(&b'\n') && read as u64 >= MAX_LINE {
                return Err(format!(
                    "a line longer than {MAX_LINE} bytes before answering {method}"
                )
                .into());
            }
            let mut answer: Value = serde_json::from_slice(&self.line)?;
            if answer["id"].is_null()
                && let Some(error) = answer.get("error")
            {
                return Err(format!("{method}: the server answered {error}").into());
            }
            if answer["id"] != id || answer.get("method").is_some() {
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

    async fn send(&mut self, line: &[u8]) -> Result<()> {
        self.stdin.write_all(line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Closes stdin and waits for the process to exit; kills it after 10 s.
    pub async fn stop(self) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        reap(&mut child).await;
    }
}

/// `message` as one line of JSON.
fn line_of(message: &Value) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::{LineServer, Workspace};
    use serde_json::json;
    use std::path::Path;

    /// A stand-in server, run by `sh`: answers by method, with a notification and a request of
    /// its own (id 2, the id of the `ping`) before the `ping`'s answer, an answer for another
    /// id before the first call's, an error result for a tool named `broken`, a JSON-RPC
    /// error for a tool named `refused`, and an error without an id for `garbled`.
    const SCRIPT: &str = r#"while IFS= read -r line; do
  case "$line" in
    *'"method":"initialize"'*) echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}';;
    *'"method":"ping"'*) echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'; echo '{"jsonrpc":"2.0","id":2,"method":"roots/list"}'; echo '{"jsonrpc":"2.0","id":2,"result":{}}';;
    *'"name":"broken"'*) echo '{"jsonrpc":"2.0","id":4,"result":{"content":[],"structuredContent":{"error":{"code":"X"}},"isError":true}}';;
    *'"name":"refused"'*) echo '{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"no such tool"}}';;
    *'"name":"garbled"'*) echo '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}';;
    *'"method":"tools/call"'*) echo '{"jsonrpc":"2.0","id":99,"result":{}}'; echo '{"jsonrpc":"2.0","id":3,"result":{"content":[],"structuredContent":{"ok":true},"isError":false}}';;
  esac
done
"#;

    #[tokio::test]
    async fn answers_are_matched_by_id_and_errors_refused() {
        let ws = Workspace::new(None).unwrap();
        let script = ws.cwd().unwrap().join("server.sh");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, SCRIPT).unwrap();
        // Run by `sh`, not executed itself: no "text file busy" while another test forks.
        let script = script.to_str().unwrap();
        let mut server =
            LineServer::start_with(&ws, Path::new("/bin/sh"), &[script], "http://127.0.0.1:9")
                .await
                .unwrap();
        server.ping().await.unwrap();
        let (_, value) = server.call("agent_ok", json!({})).await.unwrap();
        assert_eq!(value, json!({"ok": true}));
        let broken = server.call("broken", json!({})).await.unwrap_err();
        assert!(broken.to_string().contains("broken failed"), "{broken}");
        let refused = server.call("refused", json!({})).await.unwrap_err();
        assert!(refused.to_string().contains("no such tool"), "{refused}");
        let garbled = server.call("garbled", json!({})).await.unwrap_err();
        assert!(garbled.to_string().contains("Parse error"), "{garbled}");
        server.stop().await;
    }
}
