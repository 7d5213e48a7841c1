//! Quickstart: the whole claude-agent-mcp job, end to end, with no API key and no network.
//!
//! ```text
//! cargo run -p claude-agent-mcp-examples --example quickstart
//! ```
//!
//! What happens:
//! 1. A local **stand-in** for the Anthropic Messages API starts on 127.0.0.1 (random port). It
//!    is NOT Claude: it answers every request with canned text so that you can watch the plumbing
//!    work offline. Everything it prints is prefixed `[stand-in Messages API]`.
//! 2. The real `claude-agent-mcp` server binary is built from the sources beside this example
//!    (`cargo build -p claude-agent-mcp`, the same profile; a no-op when it is up to date).
//! 3. The server is spawned over stdio, pointed at the stand-in, with a throwaway working and
//!    state directory, and an MCP client (rmcp) connects to it, exactly as Claude Desktop, Claude
//!    Code or any other MCP client would.
//! 4. Six of the eight tools are called in order (run, continue, get, list, verify, status; the
//!    seventh, `agent_cancel_session`, needs a run in flight); each call's
//!    arguments and JSON result are printed.
//! 5. The client disconnects, the server exits, the temporary directory is removed.
//!
//! `examples/tests/quickstart.rs` runs this same code as a smoke test.

// An example's output is its purpose: printing to stdout/stderr is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use claude_agent_mcp_examples::serve_stand_in;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::process::Command;

type Error = Box<dyn std::error::Error>;

/// An MCP client with no handlers of its own (`()`), connected to the server.
type Client = RunningService<RoleClient, ()>;

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = std::io::stdout();
    let result = async {
        let server = build_server(&mut out).await?;
        run_quickstart(&server, &mut out).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nquickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the real server binary with `cargo build -p claude-agent-mcp` (the profile this
/// example was built with; a no-op when the binary is up to date) and returns the path cargo
/// reports for it, so the quickstart always runs the server of the sources beside it, never a
/// stale binary.
pub async fn build_server(out: &mut impl Write) -> Result<PathBuf, Error> {
    // CARGO_MANIFEST_DIR is this package (`<workspace>/examples`); cargo sets CARGO to itself.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root above the examples package")?;
    let mut args = vec![
        "build",
        "-p",
        "claude-agent-mcp",
        "--message-format=json-render-diagnostics",
    ];
    if !cfg!(debug_assertions) {
        args.push("--release");
    }
    writeln!(out, "Building the server: cargo {}", args.join(" "))?;
    out.flush()?;
    let output = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(workspace)
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("`cargo {}` failed ({})", args.join(" "), output.status).into());
    }
    // One JSON message per line; the binary's `compiler-artifact` names its executable.
    let server = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "claude-agent-mcp")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or("cargo reported no claude-agent-mcp executable")?;
    writeln!(out, "Server binary: {}", server.display())?;
    Ok(server)
}

/// Starts the stand-in API, spawns `server_binary` against it, drives six of the eight tools and shuts
/// down, writing a narrated transcript to `out`. Fails if any step does not succeed.
pub async fn run_quickstart(server_binary: &Path, out: &mut impl Write) -> Result<(), Error> {
    let log = StandInLog::default();
    let app = axum::Router::new()
        .route("/v1/messages", post(stand_in_messages))
        .with_state(log.clone());
    let (api_url, api_task) = serve_stand_in(app, out).await?;

    // A throwaway directory: the server's working directory, its state, and its log.
    let dir = tempfile::Builder::new()
        .prefix("claude-agent-mcp-quickstart-")
        .tempdir()?;
    let work = dir.path().canonicalize()?;
    let server_log = work.join("server.stderr.log");
    let result = drive(server_binary, &api_url, &work, &server_log, &log, out).await;
    api_task.abort();
    result.map_err(|e| {
        let log_text = std::fs::read_to_string(&server_log).unwrap_or_default();
        let lines: Vec<&str> = log_text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!(
            "{e}\n--- last lines of the server log ({}):\n{tail}",
            server_log.display()
        )
        .into()
    })
}

async fn drive(
    server_binary: &Path,
    api_url: &str,
    work: &Path,
    server_log: &Path,
    log: &StandInLog,
    out: &mut impl Write,
) -> Result<(), Error> {
    let state_dir = work.join("state");
    writeln!(out, "Working directory: {}", work.display())?;
    writeln!(out, "State directory:   {}", state_dir.display())?;
    writeln!(out, "Server log:        {}", server_log.display())?;
    writeln!(out, "(all three are removed when the quickstart exits)")?;

    // 1. Spawn the real server over stdio. Its stdout carries MCP (JSON-RPC), so its logs go to
    //    stderr, which we send to a file.
    let mut cmd = Command::new(server_binary);
    // Settings from your shell (a real API key, a mode, allowed dirs...) must not leak in.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("ANTHROPIC_") || n.starts_with("CLAUDE_AGENT"))
        {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(work)
        .env("ANTHROPIC_API_KEY", "stand-in-key")
        .env("ANTHROPIC_BASE_URL", api_url)
        .env("CLAUDE_AGENT_MCP_STATE_DIR", &state_dir)
        // The stand-in is local: never route it through an HTTP proxy from the environment.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(server_log)?))
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;

    // 2. Connect an MCP client: `initialize` and the tools list.
    let client: Client = ().serve((stdout, stdin)).await?;
    if let Some(info) = client.peer().peer_info() {
        let name = info.server_info.as_ref().map_or_else(
            || "(unnamed)".to_owned(),
            |s| format!("{} {}", s.name, s.version),
        );
        writeln!(
            out,
            "\nConnected over stdio to {name} (MCP protocol {})",
            info.protocol_version
        )?;
    }
    let tools: Vec<String> = client
        .list_all_tools()
        .await?
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    writeln!(out, "Tools offered: {}", tools.join(", "))?;

    // 3. Six of the eight tools, in the order a client typically uses them (no cancel, no wait).
    let run = call(
        &client,
        log,
        out,
        "1/6",
        "agent_run_task",
        json!({"task": "Explain in one sentence what an MCP server is."}),
    )
    .await?;
    expect_ok("agent_run_task", &run)?;
    let session_id = run["session_id"]
        .as_str()
        .ok_or("agent_run_task returned no session_id")?
        .to_owned();

    let cont = call(
        &client,
        log,
        out,
        "2/6",
        "agent_continue_session",
        json!({"session_id": session_id, "message": "Now say it in five words."}),
    )
    .await?;
    expect_ok("agent_continue_session", &cont)?;

    let session = call(
        &client,
        log,
        out,
        "3/6",
        "agent_get_session",
        json!({"session_id": session_id}),
    )
    .await?;
    if session["session_id"] != json!(session_id) {
        return Err("agent_get_session did not return the session".into());
    }

    let list = call(
        &client,
        log,
        out,
        "4/6",
        "agent_list_sessions",
        json!({"limit": 10}),
    )
    .await?;
    let listed = list["sessions"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["session_id"] == json!(session_id)));
    if !listed {
        return Err("agent_list_sessions does not list the session".into());
    }

    // Verification reads evidence from the working directory: write some first.
    let evidence = work.join("report.txt");
    std::fs::write(&evidence, "Build report\nAll 42 tests passed.\n")?;
    writeln!(out, "\nWrote the evidence file {}", evidence.display())?;
    let verify = call(
        &client,
        log,
        out,
        "5/6",
        "agent_verify_task",
        json!({
            "task": "Verify that report.txt says every test passed",
            "scope": "content",
            "evidence_paths": ["report.txt"]
        }),
    )
    .await?;
    expect_ok("agent_verify_task", &verify)?;
    if verify["result"]["verdict"] != "pass" {
        return Err(format!(
            "agent_verify_task verdict is {}, expected \"pass\"",
            verify["result"]["verdict"]
        )
        .into());
    }

    call(
        &client,
        log,
        out,
        "6/6",
        "agent_get_runtime_status",
        json!({}),
    )
    .await?;

    // 4. Shut down: closing the client closes the server's stdin, and the server exits.
    client.cancel().await?;
    let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            child.kill().await?;
            return Err("the server did not exit within 10 s of its stdin closing".into());
        }
    };
    if !status.success() {
        return Err(format!("the server exited with {status}").into());
    }
    writeln!(
        out,
        "\nClient closed; the server exited cleanly ({status})."
    )?;
    writeln!(
        out,
        "\nDone: the real claude-agent-mcp server ran a task, continued it, read and listed the \
         session, verified evidence and reported its status, all against the stand-in API."
    )?;
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).with_file_name("README.md");
    writeln!(
        out,
        "Next: the README at the repository root ({}) shows how to register the server with \
         your MCP client and use a real ANTHROPIC_API_KEY.",
        readme.display()
    )?;
    Ok(())
}

/// Calls one tool, printing its arguments, what the stand-in saw meanwhile, and the JSON result.
async fn call(
    client: &Client,
    log: &StandInLog,
    out: &mut impl Write,
    step: &str,
    name: &str,
    args: Value,
) -> Result<Value, Error> {
    writeln!(out, "\n== [{step}] {name}")?;
    writeln!(out, "arguments: {args}")?;
    let arguments: JsonObject = args.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
        .await?;
    for line in log.take() {
        writeln!(out, "{line}")?;
    }
    // Every tool answers with a single text item holding JSON (also in `structuredContent`).
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str())
        .ok_or_else(|| format!("{name} returned no text content"))?;
    let value: Value = serde_json::from_str(text)?;
    writeln!(out, "result:\n{}", serde_json::to_string_pretty(&value)?)?;
    if result.is_error == Some(true) {
        return Err(format!("{name} returned isError: true").into());
    }
    Ok(value)
}

fn expect_ok(name: &str, envelope: &Value) -> Result<(), Error> {
    if envelope["ok"] == true {
        Ok(())
    } else {
        Err(format!("{name} did not succeed: {}", envelope["summary"]).into())
    }
}

// ---------------------------------------------------------------------------------------------
// The STAND-IN Messages API. Not Claude, not a model: a few lines that answer `POST /v1/messages`
// with responses shaped like the real API's, so the server has something to talk to offline.
// ---------------------------------------------------------------------------------------------

/// Lines describing what the stand-in received, printed after each tool call.
#[derive(Clone, Default)]
struct StandInLog(Arc<Mutex<Vec<String>>>);

impl StandInLog {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
}

/// `POST /v1/messages`: a verification request (its system prompt asks for `VERDICT:`) gets a
/// structured passing verdict; anything else gets a short answer quoting the last user message.
async fn stand_in_messages(
    State(log): State<StandInLog>,
    Json(request): Json<Value>,
) -> Json<Value> {
    let system = text_of(&request["system"]);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let first_line = last_user.lines().next().unwrap_or_default();
    let (kind, text) = if system.contains("VERDICT:") {
        (
            "verification request",
            "VERDICT: pass\nFINDINGS:\n- report.txt was provided as evidence and states that all \
             42 tests passed\n- (stand-in verdict: no model actually read the evidence)\n\
             CONTRADICTIONS:\nMISSING_EVIDENCE:\nRESTRICTIONS:\n"
                .to_owned(),
        )
    } else {
        (
            "task request",
            format!(
                "Stand-in answer to \"{first_line}\"\n(No model was called: this text comes \
                 from the quickstart's stand-in Messages API.)"
            ),
        )
    };
    log.push(format!(
        "[stand-in Messages API] POST /v1/messages: {kind}, {} message(s), last user message \
         starts {first_line:?}; answering {} chars",
        messages.len(),
        text.len()
    ));
    let input_words: usize = std::iter::once(system.as_str())
        .chain(
            messages
                .iter()
                .map(|m| m["content"].as_str().unwrap_or_default()),
        )
        .map(|s| s.split_whitespace().count())
        .sum();
    Json(json!({
        "id": format!("msg_standin_{:04}", messages.len()),
        "type": "message",
        "role": "assistant",
        "model": request["model"].as_str().unwrap_or("stand-in-model"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_words, "output_tokens": text.split_whitespace().count()}
    }))
}

/// The text of a `system` or `content` field: a plain string or a list of text blocks.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
