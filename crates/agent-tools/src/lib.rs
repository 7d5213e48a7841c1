//! # agent-tools
//!
//! The built-in workspace tools of claude-agent-mcp (an addition, documented in `docs/tools.md`):
//! [`WorkspaceTools`] is a [`ToolProvider`] offering `read_file`, `list_directory`, `glob` and
//! `grep` to every profile, and `write_file` and `edit_file` to profiles that are not read-only, so
//! that the api backend's tool loop can work on the session's files without a downstream server.
//!
//! * [`definitions`] owns the catalogue: names, visibility and the tool definitions.
//! * [`limits`] owns the size caps ([`ToolLimits`]).
//! * [`error`] owns [`ToolError`]: the text the model sees and the value-free audit text.
//! * `sandbox` resolves and checks every path (inside the working directory **and** an
//!   allowed directory, symlinks resolved).
//! * `read`, `search` and `write` implement the tools; `text` holds their text helpers.
//!
//! Every call is audited: a `workspace_tool_invocation` event (tool name and sorted argument
//! keys, never values) before it and a `workspace_tool_result` event after it. The file work
//! runs on Tokio's blocking pool. See `docs/tools.md`.

pub mod definitions;
pub mod error;
pub mod limits;
mod read;
mod sandbox;
mod search;
mod text;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_core::{
    Event, EventLog, EventType, Profile, ToolCallContext, ToolDefinition, ToolProvider,
};
use agent_policy::paths::resolve_path;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use definitions::Tool;
pub use error::ToolError;
pub use limits::ToolLimits;
pub use sandbox::RaceHook;

use sandbox::Sandbox;

/// The built-in workspace tools, as a [`ToolProvider`].
pub struct WorkspaceTools {
    store: Arc<dyn EventLog>,
    allowed: Arc<[PathBuf]>,
    limits: ToolLimits,
    hook: Option<RaceHook>,
    /// Every tool's definition, built once: each request clones the names and shares the
    /// descriptions and schemas.
    definitions: Vec<(Tool, ToolDefinition)>,
}

impl std::fmt::Debug for WorkspaceTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceTools")
            .field("allowed", &self.allowed)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WorkspaceTools {
    /// Tools that audit through `store` and work only inside `allowed_dirs` (resolved here:
    /// relative ones against the process's current directory, symlinks resolved) and, per
    /// call, the session's working directory.
    pub fn new(store: Arc<dyn EventLog>, allowed_dirs: Vec<PathBuf>, limits: ToolLimits) -> Self {
        let allowed = allowed_dirs
            .iter()
            .map(|dir| resolve_path(Path::new(""), dir))
            .collect();
        let definitions = Tool::ALL
            .into_iter()
            .map(|tool| (tool, tool.definition(&limits)))
            .collect();
        Self {
            store,
            allowed,
            limits,
            hook: None,
            definitions,
        }
    }

    /// Test support: `hook` runs with each path the tools have checked, just before they use
    /// it (after a path is resolved and checked, before a walk opens a directory or a file), so
    /// a test can swap a symlink in at that moment. Never set in the server.
    #[doc(hidden)]
    pub fn with_race_hook(mut self, hook: RaceHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The resolved allowed directories.
    pub fn allowed_dirs(&self) -> &[PathBuf] {
        &self.allowed
    }

    pub fn limits(&self) -> &ToolLimits {
        &self.limits
    }

    async fn audit(&self, session_id: &str, event: Event) {
        if let Err(e) = self.store.append_events(session_id, &[event]).await {
            tracing::warn!(session_id, error = %e, "workspace tool event not recorded");
        }
    }

    async fn run(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<String, ToolError> {
        let tool = Tool::parse(name)
            .ok_or_else(|| ToolError::plain(format!("Unknown workspace tool '{name}'")))?;
        if !tool.visible_to(ctx.profile) {
            return Err(ToolError::plain(format!(
                "Tool '{name}' is not available to the read-only profile '{}'",
                ctx.profile
            )));
        }
        let Some(working_directory) = ctx.working_directory.clone() else {
            return Err(ToolError::plain(
                "This session has no working directory; the workspace tools cannot be used",
            ));
        };
        let call = Call::parse(tool, input)?;
        let allowed = Arc::clone(&self.allowed);
        let limits = self.limits;
        let hook = self.hook.clone();
        let task = tokio::task::spawn_blocking(move || {
            let sandbox = Sandbox::new(&working_directory, allowed, hook);
            call.execute(&sandbox, &limits)
        });
        task.await.unwrap_or_else(|e| {
            tracing::error!(tool = name, error = %e, "workspace tool task failed");
            Err(ToolError::plain("Internal error: the tool task failed"))
        })
    }
}

#[async_trait]
impl ToolProvider for WorkspaceTools {
    fn visible_tools(&self, profile: Profile) -> Vec<ToolDefinition> {
        self.definitions
            .iter()
            .filter(|(tool, _)| tool.visible_to(profile))
            .map(|(_, definition)| definition.clone())
            .collect()
    }

    fn federated(&self) -> bool {
        false
    }

    async fn call(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<String, String> {
        self.audit(
            &ctx.session_id,
            invocation_event(ctx.turn_index, name, &input),
        )
        .await;
        let outcome = self.run(ctx, name, input).await;
        let error = outcome.as_ref().err().map(|e| e.audit.as_str());
        self.audit(&ctx.session_id, result_event(ctx.turn_index, name, error))
            .await;
        outcome.map_err(|e| e.message)
    }
}

/// `workspace_tool_invocation {"tool", "input_keys"}`: the argument keys, sorted, never their
/// values.
pub fn invocation_event(turn_index: i64, tool: &str, input: &Value) -> Event {
    let mut keys: Vec<&str> = input
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    Event {
        event_type: EventType::WorkspaceToolInvocation,
        turn_index,
        payload: json!({ "tool": tool, "input_keys": keys }),
    }
}

/// `workspace_tool_result {"tool", "success", "error_message"}`; the message is the error's
/// value-free audit text.
pub fn result_event(turn_index: i64, tool: &str, error_message: Option<&str>) -> Event {
    Event {
        event_type: EventType::WorkspaceToolResult,
        turn_index,
        payload: json!({
            "tool": tool,
            "success": error_message.is_none(),
            "error_message": error_message,
        }),
    }
}

/// A tool call with its parsed input.
enum Call {
    ReadFile(read::ReadFileInput),
    ListDirectory(read::ListDirectoryInput),
    Glob(search::GlobInput),
    Grep(search::GrepInput),
    WriteFile(write::WriteFileInput),
    EditFile(write::EditFileInput),
}

impl Call {
    fn parse(tool: Tool, input: Value) -> Result<Call, ToolError> {
        Ok(match tool {
            Tool::ReadFile => Call::ReadFile(parse_input(tool, input)?),
            Tool::ListDirectory => Call::ListDirectory(parse_input(tool, input)?),
            Tool::Glob => Call::Glob(parse_input(tool, input)?),
            Tool::Grep => Call::Grep(parse_input(tool, input)?),
            Tool::WriteFile => Call::WriteFile(parse_input(tool, input)?),
            Tool::EditFile => Call::EditFile(parse_input(tool, input)?),
        })
    }

    fn execute(self, sandbox: &Sandbox, limits: &ToolLimits) -> Result<String, ToolError> {
        match self {
            Call::ReadFile(input) => read::read_file(sandbox, input, limits),
            Call::ListDirectory(input) => read::list_directory(sandbox, input, limits),
            Call::Glob(input) => search::glob(sandbox, input, limits),
            Call::Grep(input) => search::grep(sandbox, input, limits),
            Call::WriteFile(input) => write::write_file(sandbox, input, limits),
            Call::EditFile(input) => write::edit_file(sandbox, input, limits),
        }
    }
}

/// Deserialises a tool's input; a missing input (`null`) counts as `{}`.
fn parse_input<T: DeserializeOwned>(tool: Tool, input: Value) -> Result<T, ToolError> {
    let name = tool.name();
    let input = match input {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        _ => {
            return Err(ToolError::plain(format!(
                "Invalid input for {name}: expected a JSON object"
            )));
        }
    };
    serde_json::from_value(input).map_err(|e| {
        ToolError::detailed(
            format!("Invalid input for {name}: {e}"),
            format!("Invalid input for {name}"),
        )
    })
}
