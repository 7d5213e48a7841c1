//! In-memory fakes of every port the engine uses: a session store (agent-testkit's), an
//! execution backend, a workspace policy, a tool provider and a progress sink. None of them
//! does any I/O.

// Helpers outside `#[test]` functions are test code too (clippy's allow-in-tests misses them),
// and not every test binary uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::error::ErrorCode;
use agent_core::pyfmt;
use agent_core::{
    BackendOutput, BackendRequest, Capabilities, ExecContext, ExecutionBackend, ExecutionError,
    PolicyViolation, Profile, ProgressSink, ToolCallContext, ToolDefinition, ToolProvider, Usage,
    WorkspacePolicy,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// MemStore: the shared in-memory store
// ---------------------------------------------------------------------------------------------

pub use agent_testkit::store::{MemStore, Method, StoredArtifact, seed_record};

// ---------------------------------------------------------------------------------------------
// FakeBackend
// ---------------------------------------------------------------------------------------------

/// A successful output with `turn_count` turns and nothing else.
pub fn output(text: &str, turn_count: u32) -> BackendOutput {
    BackendOutput {
        output_text: text.to_owned(),
        turn_count,
        ..BackendOutput::default()
    }
}

pub fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// A scripted backend. Each `execute` records the request, reports an optional progress
/// message, calls the configured tools through the executor it was handed (when any), waits
/// for its delay / gate (returning [`ExecutionError::cancelled`] as soon as `ctx.cancel`
/// fires) and pops the next scripted result (`output("done", 1)` once the script is empty).
pub struct FakeBackend {
    capabilities: Capabilities,
    script: Mutex<VecDeque<Result<BackendOutput, ExecutionError>>>,
    requests: Mutex<Vec<BackendRequest>>,
    tool_calls: Vec<(String, Value)>,
    tool_results: Mutex<Vec<(String, Result<String, String>)>>,
    progress: Option<String>,
    delay: Option<Duration>,
    gate: Option<Arc<Notify>>,
    entered: Arc<Notify>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    pub fn new() -> Self {
        Self {
            capabilities: Capabilities::default(),
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            tool_calls: Vec::new(),
            tool_results: Mutex::new(Vec::new()),
            progress: None,
            delay: None,
            gate: None,
            entered: Arc::new(Notify::new()),
        }
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Capabilities with `supports_downstream_tools` set.
    pub fn with_downstream_tools(self) -> Self {
        self.with_capabilities(Capabilities {
            supports_downstream_tools: true,
            ..Capabilities::default()
        })
    }

    /// Queues the result of a later execution.
    pub fn then(self, result: Result<BackendOutput, ExecutionError>) -> Self {
        self.script.lock().unwrap().push_back(result);
        self
    }

    pub fn then_ok(self, output: BackendOutput) -> Self {
        self.then(Ok(output))
    }

    pub fn then_err(self, code: ErrorCode, message: &str) -> Self {
        self.then(Err(ExecutionError::new(code, message)))
    }

    /// Tools to call, in order, on every execution that receives an executor.
    pub fn calling_tools(mut self, calls: Vec<(&str, Value)>) -> Self {
        self.tool_calls = calls.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        self
    }

    pub fn reporting(mut self, message: impl Into<String>) -> Self {
        self.progress = Some(message.into());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Blocks every execution until `gate` is notified (or the run is cancelled).
    pub fn gated(mut self, gate: Arc<Notify>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Notified each time an execution starts.
    pub fn entered(&self) -> Arc<Notify> {
        Arc::clone(&self.entered)
    }

    pub fn requests(&self) -> Vec<BackendRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> BackendRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend was called")
    }

    pub fn tool_results(&self) -> Vec<(String, Result<String, String>)> {
        self.tool_results.lock().unwrap().clone()
    }
}

#[async_trait]
impl ExecutionBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        self.requests.lock().unwrap().push(request.clone());
        self.entered.notify_one();
        if let Some(message) = &self.progress {
            ctx.report(message);
        }
        if let Some(executor) = &request.tool_executor {
            for (name, input) in &self.tool_calls {
                let result = executor.call(name, input.clone()).await;
                self.tool_results
                    .lock()
                    .unwrap()
                    .push((name.clone(), result));
            }
        }
        if let Some(delay) = self.delay {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = ctx.cancel.cancelled() => return Err(ExecutionError::cancelled()),
            }
        }
        if let Some(gate) = &self.gate {
            tokio::select! {
                () = gate.notified() => {}
                () = ctx.cancel.cancelled() => return Err(ExecutionError::cancelled()),
            }
        }
        if ctx.cancel.is_cancelled() {
            return Err(ExecutionError::cancelled());
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(output("done", 1)))
    }
}

// ---------------------------------------------------------------------------------------------
// FakePolicy
// ---------------------------------------------------------------------------------------------

/// A policy with a fixed CWD, an allowlist (prefix containment) and a set of existing paths
/// (matched exactly as given).
pub struct FakePolicy {
    cwd: PathBuf,
    allowed: Vec<PathBuf>,
    existing: HashSet<String>,
    /// Contents served for evidence and attachments; paths without contents yield nothing.
    contents: Vec<(String, String)>,
}

impl FakePolicy {
    pub fn new(cwd: &str, allowed: &[&str], existing: &[&str]) -> Self {
        Self {
            cwd: PathBuf::from(cwd),
            allowed: allowed.iter().map(PathBuf::from).collect(),
            existing: existing.iter().map(|s| (*s).to_owned()).collect(),
            contents: Vec::new(),
        }
    }

    pub fn with_contents(mut self, path: &str, text: &str) -> Self {
        self.existing.insert(path.to_owned());
        self.contents.push((path.to_owned(), text.to_owned()));
        self
    }

    fn absolute(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }

    fn is_allowed(&self, path: &Path) -> bool {
        self.allowed.iter().any(|a| path.starts_with(a))
    }
}

impl WorkspacePolicy for FakePolicy {
    fn cwd(&self) -> &Path {
        &self.cwd
    }

    fn resolve_working_directory(
        &self,
        requested: Option<&str>,
    ) -> Result<PathBuf, PolicyViolation> {
        let resolved = requested.map_or_else(|| self.cwd.clone(), |r| self.absolute(r));
        if self.is_allowed(&resolved) {
            return Ok(resolved);
        }
        let allowed = pyfmt::list(
            self.allowed
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        Err(PolicyViolation::new(
            ErrorCode::PolicyDenied,
            format!(
                "working_directory '{}' is not in the server's allowed_dirs. Allowed: {allowed}",
                resolved.display()
            ),
        ))
    }

    fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
        if !self.existing.contains(path) {
            return Err(PolicyViolation::new(
                ErrorCode::ValidationError,
                format!("Attachment path does not exist: {path}"),
            ));
        }
        let resolved = self.absolute(path);
        let parent = resolved.parent().unwrap_or(&resolved);
        if !self.is_allowed(parent) {
            return Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Attachment '{path}' is outside allowed directories"),
            ));
        }
        Ok(resolved)
    }

    fn path_exists(&self, path: &str) -> bool {
        self.existing.contains(path)
    }

    fn read_evidence(
        &self,
        paths: &[String],
        _budget: usize,
    ) -> Result<(Vec<agent_core::evidence::Evidence>, Vec<String>), PolicyViolation> {
        use agent_core::evidence::{Evidence, EvidenceBody};
        // Like the real policy: every path read is checked, whatever was checked before.
        if let Some(outside) = paths.iter().find(|p| !self.is_allowed(&self.absolute(p))) {
            return Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Attachment '{outside}' is outside allowed directories"),
            ));
        }
        let found = paths
            .iter()
            .filter_map(|p| self.contents.iter().find(|(path, _)| path == p))
            .map(|(path, text)| Evidence {
                path: path.clone(),
                body: EvidenceBody::Text {
                    content: text.clone(),
                    total_bytes: text.len() as u64,
                    truncated: false,
                },
            })
            .collect();
        Ok((found, Vec::new()))
    }
}

// ---------------------------------------------------------------------------------------------
// FakeTools
// ---------------------------------------------------------------------------------------------

pub fn tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.to_owned(),
        description: format!("The {name} tool").into(),
        input_schema: json!({"type": "object"}).into(),
    }
}

/// One recorded tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub ctx: ToolCallContext,
    pub name: String,
    pub input: Value,
}

/// A tool provider with per-profile visible tools. Calls answer `<prefix>:<name>`, except
/// a tool named `broken`, which answers `Err("broken tool")`.
pub struct FakeTools {
    prefix: String,
    visible: HashMap<Profile, Vec<ToolDefinition>>,
    calls: Mutex<Vec<ToolCall>>,
}

impl FakeTools {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            visible: HashMap::new(),
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn visible_to(mut self, profile: Profile, names: &[&str]) -> Self {
        self.visible
            .insert(profile, names.iter().map(|n| tool(n)).collect());
        self
    }

    pub fn calls(&self) -> Vec<ToolCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl ToolProvider for FakeTools {
    fn visible_tools(&self, profile: Profile) -> Vec<ToolDefinition> {
        self.visible.get(&profile).cloned().unwrap_or_default()
    }

    async fn call(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<String, String> {
        self.calls.lock().unwrap().push(ToolCall {
            ctx: ctx.clone(),
            name: name.to_owned(),
            input,
        });
        if name == "broken" {
            return Err("broken tool".to_owned());
        }
        Ok(format!("{}:{name}", self.prefix))
    }
}

// ---------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------

/// Records every progress message.
#[derive(Default)]
pub struct RecordingProgress {
    messages: Mutex<Vec<String>>,
}

impl RecordingProgress {
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl ProgressSink for RecordingProgress {
    fn report(&self, message: &str) {
        self.messages.lock().unwrap().push(message.to_owned());
    }
}
