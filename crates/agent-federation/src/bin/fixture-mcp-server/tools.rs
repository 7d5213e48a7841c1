//! The fixture's tools, shared with the integration tests (which also serve them over
//! streamable HTTP in process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// Appends one line to a log file (best effort).
pub fn append_line(path: &Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// Every tool the fixture lists.
pub fn tool_list() -> Vec<Tool> {
    vec![
        Tool::new(
            "echo",
            "Echoes `text` back",
            schema(
                json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            ),
        ),
        Tool::new(
            "add",
            "Adds a and b",
            schema(
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            ),
        ),
        Tool::new(
            "fail",
            "Always answers isError",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "crash",
            "Exits the process mid-call",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "die_soon",
            "Answers, then exits 200 ms later (the connection dies between calls)",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "slow",
            "Sleeps `seconds` before answering",
            schema(
                json!({"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}),
            ),
        ),
        Tool::new(
            "env",
            "Reports whether environment variable `name` is visible",
            schema(
                json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            ),
        ),
        Tool::new(
            "multi",
            "Answers several content blocks",
            schema(json!({"type": "object"})),
        ),
        Tool::new_with_raw("nodesc", None, schema(json!({}))),
        Tool::new(
            "dotted.name",
            "A name the Messages API rejects",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "secret",
            "Never allowlisted",
            schema(json!({"type": "object"})),
        ),
    ]
}

/// The scripted server.
#[derive(Clone)]
pub struct Fixture {
    label: String,
    call_log: Option<PathBuf>,
}

impl Fixture {
    pub fn new(label: String, call_log: Option<PathBuf>) -> Self {
        Self { label, call_log }
    }

    async fn run(&self, name: &str, args: &JsonObject) -> CallToolResult {
        let text = |v: &str| CallToolResult::success(vec![ContentBlock::text(v)]);
        match name {
            "echo" => text(&format!(
                "{}: {}",
                self.label,
                args.get("text").and_then(Value::as_str).unwrap_or_default()
            )),
            "add" => {
                let a = args.get("a").and_then(Value::as_f64).unwrap_or_default();
                let b = args.get("b").and_then(Value::as_f64).unwrap_or_default();
                text(&format!("{}", a + b))
            }
            "fail" => {
                CallToolResult::error(vec![ContentBlock::text("fixture failure: something broke")])
            }
            "crash" => std::process::exit(3),
            "die_soon" => {
                tokio::spawn(async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    std::process::exit(4);
                });
                text("bye")
            }
            "slow" => {
                let secs = args.get("seconds").and_then(Value::as_f64).unwrap_or(1.0);
                tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
                text("slept")
            }
            "env" => {
                let var = args.get("name").and_then(Value::as_str).unwrap_or_default();
                match std::env::var(var) {
                    Ok(value) => text(&format!("present:{value}")),
                    Err(_) => text("absent"),
                }
            }
            "multi" => CallToolResult::success(vec![
                ContentBlock::text("one"),
                ContentBlock::image("AAAA", "image/png"),
                ContentBlock::text("two"),
            ]),
            "nodesc" | "dotted.name" => text(name),
            "secret" => text("secret data"),
            other => {
                CallToolResult::error(vec![ContentBlock::text(format!("unknown tool {other}"))])
            }
        }
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("fixture-mcp-server", "0.0.0"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(path) = &self.call_log {
            append_line(path, &request.name);
        }
        let args = request.arguments.unwrap_or_default();
        Ok(self.run(&request.name, &args).await.into())
    }
}
