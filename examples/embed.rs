//! Embedding: run a task and a verification from your own Rust program, with no MCP at all.
//!
//! ```text
//! cargo run -p claude-agent-mcp-examples --example embed
//! ```
//!
//! The MCP server is one front end of the workflow engine in `agent-core`. A program can hold
//! the engine directly and plug in the same parts the server uses:
//!
//! * `agent_store::SqliteStore`: durable sessions, events and artifacts in SQLite;
//! * `agent_backends::MessagesApiBackend`: the Anthropic Messages API over HTTP;
//! * `agent_policy::DirectoryPolicy`: which working directories and evidence paths are allowed.
//!
//! What happens:
//! 1. A local **stand-in** for the Anthropic Messages API starts on 127.0.0.1 (random port). It
//!    is NOT Claude: it answers with canned text, so the example runs offline with no API key.
//!    Lines it prints are prefixed `[stand-in Messages API]`. To use the real API instead, give
//!    `ApiConfig` your key and leave the base URL at its default.
//! 2. A throwaway directory holds the workspace (the allowed directory) and the state.
//! 3. The engine runs a task, then verifies a claim against an evidence file; both envelopes
//!    (the same JSON an MCP client would receive) are printed, and the session's stored event
//!    log is read back.
//!
//! `examples/tests/embed.rs` runs this same code as a smoke test.

// An example's output is its purpose: printing to stdout/stderr is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use agent_backends::{ApiConfig, MessagesApiBackend};
use agent_core::{
    Engine, EngineConfig, Envelope, ExecContext, RunTaskRequest, SessionStore, VerifyTaskRequest,
};
use agent_policy::DirectoryPolicy;
use agent_store::{SqliteStore, StoreConfig};
use axum::Json;
use axum::routing::post;
use claude_agent_mcp_examples::serve_stand_in;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    match run_embed(&mut std::io::stdout()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nembed failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the example produced, for its smoke test.
pub struct Outcome {
    /// The `agent_run_task` envelope.
    pub run: Envelope,
    /// The `agent_verify_task` envelope.
    pub verify: Envelope,
    /// How many events the run's session has in the store.
    pub run_events: usize,
}

/// Starts the stand-in, builds an engine over SQLite, the Messages API backend and a directory
/// policy, runs a task and a verification, and writes a narrated transcript to `out`.
pub async fn run_embed(out: &mut impl Write) -> Result<Outcome, Error> {
    let app = axum::Router::new().route("/v1/messages", post(stand_in_messages));
    let (api_url, stand_in) = serve_stand_in(app, out).await?;
    let dir = tempfile::Builder::new()
        .prefix("claude-agent-mcp-embed-")
        .tempdir()?;
    let result = drive(&api_url, dir.path(), out).await;
    stand_in.abort();
    result
}

async fn drive(
    api_url: &str,
    dir: &std::path::Path,
    out: &mut impl Write,
) -> Result<Outcome, Error> {
    let workspace = dir.join("workspace");
    let state = dir.join("state");
    std::fs::create_dir_all(&workspace)?;
    writeln!(out, "Workspace: {}", workspace.display())?;
    writeln!(out, "State:     {}", state.display())?;

    // --- The three adapters the server wires up, built by hand --------------------------------
    let store = SqliteStore::open(StoreConfig {
        db_path: state.join("sessions.db"),
        artifact_dir: state.join("artifacts"),
        max_artifact_bytes: 10 * 1024 * 1024,
    })
    .await?;
    // A previous process may have died mid-run: what it left `running` becomes `interrupted`.
    store.recover_interrupted().await?;
    let store = Arc::new(store);
    let backend = MessagesApiBackend::new(
        ApiConfig::new("stand-in-key", "claude-sonnet-4-6")
            .with_base_url(api_url)
            .with_max_retries(0),
    )?;
    let policy = DirectoryPolicy::new(&workspace, [&workspace]);

    let engine = Engine::new(
        store.clone(),
        Arc::new(backend),
        Arc::new(policy),
        EngineConfig::default(),
    );
    // Cancellation token and progress sink: `ExecContext::new` takes your own.
    let ctx = ExecContext::default();

    // --- A task --------------------------------------------------------------------------------
    let run = engine
        .run_task(
            RunTaskRequest::new("Explain in one sentence what an MCP server is."),
            &ctx,
        )
        .await;
    print_envelope(out, "run_task", &run)?;
    if !run.ok {
        return Err(format!("run_task failed: {}", run.summary).into());
    }
    let run_events = engine
        .session_events(&run.session_id)
        .await
        .map_err(|e| e.message)?
        .unwrap_or_default();
    writeln!(
        out,
        "Session {} has {} stored event(s): {}",
        run.session_id,
        run_events.len(),
        run_events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;

    // --- A verification against evidence in the workspace --------------------------------------
    std::fs::write(
        workspace.join("report.txt"),
        "Build report\nAll 42 tests passed.\n",
    )?;
    let verify = engine
        .verify_task(
            VerifyTaskRequest::new("Verify that report.txt says every test passed")
                .with_evidence(vec!["report.txt".to_owned()]),
            &ctx,
        )
        .await;
    print_envelope(out, "verify_task", &verify)?;
    if !verify.ok {
        return Err(format!("verify_task failed: {}", verify.summary).into());
    }
    writeln!(
        out,
        "\nVerdict: {} (decision: {})",
        verify.result["verdict"], verify.result["decision"]
    )?;

    store.close().await;
    Ok(Outcome {
        run,
        verify,
        run_events: run_events.len(),
    })
}

fn print_envelope(out: &mut impl Write, name: &str, envelope: &Envelope) -> Result<(), Error> {
    writeln!(out, "\n== {name}")?;
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&envelope.to_value())?
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The STAND-IN Messages API. Not Claude, not a model: it answers `POST /v1/messages` with
// responses shaped like the real API's, so the example has something to talk to offline.
// ---------------------------------------------------------------------------------------------

/// A verification request (its system prompt asks for `VERDICT:`) gets a passing verdict;
/// anything else a one-line canned answer.
async fn stand_in_messages(Json(request): Json<Value>) -> Json<Value> {
    let system = match &request["system"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = if system.contains("VERDICT:") {
        "VERDICT: pass\nFINDINGS:\n- report.txt states that all 42 tests passed\n\
         - (stand-in verdict: no model read the evidence)\nCONTRADICTIONS:\nMISSING_EVIDENCE:\n\
         RESTRICTIONS:\n"
    } else {
        "[stand-in Messages API] An MCP server exposes tools and data to AI clients over the \
         Model Context Protocol. (No model was called.)"
    };
    Json(json!({
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1}
    }))
}
