//! Test support: a temp state directory, a stand-in Messages API, and the server binary spawned
//! over stdio or streamable HTTP with an rmcp client attached.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const BIN: &str = env!("CARGO_BIN_EXE_claude-agent-mcp");

pub type Client = RunningService<RoleClient, ()>;

/// A Messages API response with one text block.
pub fn text_reply(text: &str) -> Value {
    json!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 11, "output_tokens": 7}
    })
}

/// A fresh working directory (also the state root) and a stand-in Messages API.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub api: MockServer,
    pub vars: BTreeMap<String, String>,
}

impl TestEnv {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let api = MockServer::start().await;
        let mut vars = BTreeMap::new();
        vars.insert("ANTHROPIC_API_KEY".into(), "test-key".into());
        vars.insert("ANTHROPIC_BASE_URL".into(), api.uri());
        vars.insert("CLAUDE_AGENT_MCP_API_MAX_RETRIES".into(), "0".into());
        // Most tests pin the exact single-shot request; the tool tests turn the tools back on.
        vars.insert("CLAUDE_AGENT_MCP_BUILTIN_TOOLS".into(), "false".into());
        Self { dir, api, vars }
    }

    /// The canonical server working directory.
    pub fn cwd(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical tempdir")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.cwd().join(".state")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("claude-agent-mcp.db")
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// Every API call answers `text`.
    pub async fn reply_text(&self, text: &str) {
        self.reply(ResponseTemplate::new(200).set_body_json(text_reply(text)))
            .await;
    }

    /// A two-turn tool loop: requests that carry a `tool_result` get the text `then`, every
    /// other request gets `first` (a `tool_use` response).
    pub async fn reply_tool_use_then(&self, first: Value, then: &str) {
        self.api.reset().await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::body_string_contains("tool_result"))
            .respond_with(ResponseTemplate::new(200).set_body_json(text_reply(then)))
            .mount(&self.api)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first))
            .mount(&self.api)
            .await;
    }

    pub async fn reply(&self, response: ResponseTemplate) {
        self.api.reset().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(response)
            .mount(&self.api)
            .await;
    }

    /// The JSON bodies the stand-in received, in order, with the prompt-caching markers
    /// folded away ([`without_cache_markers`]): what the tests about prompts and histories
    /// compare. [`Self::raw_requests`] keeps them.
    pub async fn requests(&self) -> Vec<Value> {
        self.raw_requests()
            .await
            .into_iter()
            .map(|body| without_cache_markers(&body))
            .collect()
    }

    /// The JSON bodies the stand-in received, in order, exactly.
    pub async fn raw_requests(&self) -> Vec<Value> {
        self.api
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_via(Path::new(BIN), args)
    }

    /// [`Self::command`] naming the server by another path (a symlink to [`BIN`], say).
    pub fn command_via(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.cwd())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.vars)
            .kill_on_drop(true);
        cmd
    }

    /// Spawns the server over stdio, its stderr discarded: the process, its stdin and its
    /// stdout, for a test that speaks to it with its own client or raw lines.
    pub fn spawn_stdio(&self) -> (Child, ChildStdin, ChildStdout) {
        let mut child = self
            .command(&[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        (child, stdin, stdout)
    }

    /// Runs the binary to completion with no stdin: (exit code, stdout, stderr).
    pub async fn run_to_exit(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run binary");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Spawns the server over stdio and initializes an MCP client.
    pub async fn start(&self) -> Server {
        self.start_via(Path::new(BIN)).await
    }

    /// [`Self::start`] naming the server by another path.
    pub async fn start_via(&self, program: &Path) -> Server {
        let stderr =
            std::fs::File::create(self.dir.path().join("server.stderr")).expect("stderr file");
        let mut child = self
            .command_via(program, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let client = ().serve((stdout, stdin)).await.expect("initialize");
        Server { client, child }
    }

    /// Waits (at most 5 s) until the stand-in has received a request: the run is in flight.
    pub async fn wait_for_request(&self) {
        // Generous: on an idle machine the first request arrives within milliseconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if !self.requests().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the stand-in received no request within 30 s");
    }

    /// The id of the most recently created session.
    pub async fn latest_session_id(&self) -> String {
        sqlx::query_scalar("SELECT session_id FROM sessions ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&self.db().await)
            .await
            .expect("a session")
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.stderr")).unwrap_or_default()
    }

    /// Read access to the database.
    pub async fn db(&self) -> SqlitePool {
        let opts = SqliteConnectOptions::new()
            .filename(self.db_path())
            .read_only(true);
        SqlitePool::connect_with(opts).await.expect("open db")
    }

    /// Writable access, for arranging states the server cannot reach by itself.
    pub async fn db_rw(&self) -> SqlitePool {
        let opts = SqliteConnectOptions::new().filename(self.db_path());
        SqlitePool::connect_with(opts).await.expect("open db")
    }

    /// Arranges what a process that died mid-run (or one still running) leaves behind: the
    /// session `running` under `owner`'s lease, which expires at `lease_expires_at` (the
    /// stored timestamp form).
    pub async fn mark_running(&self, session_id: &str, owner: &str, lease_expires_at: &str) {
        let db = self.db_rw().await;
        sqlx::query(
            "UPDATE sessions SET status = 'running', locked_by = ?1, lock_expires_at = ?2 \
             WHERE session_id = ?3",
        )
        .bind(owner)
        .bind(lease_expires_at)
        .bind(session_id)
        .execute(&db)
        .await
        .expect("mark the session running");
        db.close().await;
    }

    pub async fn session_count(&self) -> i64 {
        if !self.db_path().exists() {
            return 0;
        }
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.db().await)
            .await
            .expect("count")
    }

    /// `(event_type, turn_index, payload)` of a session, in order.
    pub async fn events(&self, session_id: &str) -> Vec<(String, i64, Value)> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT event_type, turn_index, payload FROM session_events WHERE session_id = ? ORDER BY event_id",
        )
        .bind(session_id)
        .fetch_all(&self.db().await)
        .await
        .expect("events");
        rows.into_iter()
            .map(|(t, i, p)| (t, i, serde_json::from_str(&p).expect("payload is JSON")))
            .collect()
    }

    pub async fn event_types(&self, session_id: &str) -> Vec<String> {
        self.events(session_id)
            .await
            .into_iter()
            .map(|(t, _, _)| t)
            .collect()
    }

    pub async fn column(&self, session_id: &str, column: &str) -> Option<String> {
        let sql = format!("SELECT CAST({column} AS TEXT) FROM sessions WHERE session_id = ?");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_one(&self.db().await)
            .await
            .expect("column")
    }
}

/// A running server with its MCP client.
pub struct Server {
    pub client: Client,
    pub child: Child,
}

impl Server {
    /// Calls a tool and returns the raw result.
    pub async fn call_raw(&self, name: &str, args: Value) -> CallToolResult {
        let args: JsonObject = args.as_object().cloned().unwrap_or_default();
        self.client
            .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(args))
            .await
            .expect("tools/call")
    }

    /// Calls a tool and returns its JSON result, checking the single-text-item contract.
    pub async fn call(&self, name: &str, args: Value) -> Value {
        let result = self.call_raw(name, args).await;
        assert_eq!(
            result.is_error,
            Some(false),
            "isError for {name}: {result:?}"
        );
        parse_single_text(&result)
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// Closes stdin and waits for a clean exit.
    pub async fn shutdown(mut self) -> i32 {
        let _ = self.client.cancel().await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => -1,
        }
    }
}

/// The JSON of a result's only `text` item; also checks `structuredContent` matches it.
pub fn parse_single_text(result: &CallToolResult) -> Value {
    assert_eq!(
        result.content.len(),
        1,
        "exactly one content item: {result:?}"
    );
    let text = &result.content[0].as_text().expect("text item").text;
    let value: Value = serde_json::from_str(text).expect("text is JSON");
    if result.is_error != Some(true) {
        assert_eq!(
            result.structured_content.as_ref(),
            Some(&value),
            "structuredContent equals the text JSON"
        );
    }
    value
}

/// The text of a result's only item.
pub fn only_text(result: &CallToolResult) -> String {
    assert_eq!(result.content.len(), 1);
    result.content[0].as_text().expect("text item").text.clone()
}

/// Replaces the volatile fields of an envelope (session id, artifact ids) for whole-object compares.
pub fn normalize_envelope(mut v: Value) -> Value {
    if v["session_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("sess_"))
    {
        v["session_id"] = json!("<session>");
    }
    if let Some(arts) = v["artifacts"].as_array_mut() {
        for a in arts {
            a["artifact_id"] = json!("<artifact>");
        }
    }
    v
}

pub fn is_session_id(s: &str) -> bool {
    s.len() == 21
        && s.starts_with("sess_")
        && s[5..].chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The Messages API stand-in the real Claude Code CLI talks to (agent-testkit's).
pub mod sse_api {
    pub use agent_testkit::messages_api::*;
}

/// A Messages API request body as it would be without prompt caching: a system prompt of one
/// cached text block becomes its text; a message content of one cached text block becomes its
/// text; `cache_control` is dropped from every other block. Panics on a cache marker anywhere
/// else (a test would otherwise miss a change of shape).
pub fn without_cache_markers(body: &Value) -> Value {
    fn plain_text(blocks: &Value) -> Option<Value> {
        match blocks.as_array().map(Vec::as_slice) {
            Some([block])
                if block["type"] == "text"
                    && block.get("cache_control").is_some()
                    && block.as_object().is_some_and(|o| o.len() == 3) =>
            {
                Some(block["text"].clone())
            }
            _ => None,
        }
    }
    let mut body = body.clone();
    if let Some(text) = plain_text(&body["system"]) {
        body["system"] = text;
    }
    if let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) {
        for message in messages {
            if let Some(text) = plain_text(&message["content"]) {
                message["content"] = text;
            } else if let Some(blocks) = message["content"].as_array_mut() {
                for block in blocks {
                    if let Some(object) = block.as_object_mut() {
                        object.remove("cache_control");
                    }
                }
            }
        }
    }
    assert!(
        !body.to_string().contains("cache_control"),
        "a cache marker where none is expected: {body}"
    );
    body
}
