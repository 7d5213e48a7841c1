//! The `claude_code` execution backend: the Claude Code CLI
//! (`docs/reference/backends.md#5-the-claude_code-backend`; native mode, an addition:
//! `docs/reference/backends.md#52-invocation` and
//! `docs/claude-code-backend.md#native-mode-default`).
//!
//! [`ClaudeCodeBackend`] runs the `claude` binary once per execution, in one of two modes
//! ([`ClaudeCodeMode`]):
//!
//! * **native** (the default): `claude -p --output-format json [--model <m>] --max-turns <n>
//!   --permission-mode <mode> [--disallowedTools <list>] [--resume <id> [--fork-session]]`, the
//!   prompt written to stdin, run in the session's working directory. The CLI's JSON result
//!   gives the output, the turn count, the stop reason, token usage and cost, and the CLI's
//!   session id, which a later continuation passes to `--resume` (falling back once to the
//!   reconstructed context when the CLI no longer knows the id); the first continuation of a
//!   fork resumes its parent's with `--fork-session`.
//! * **text** (the original's behaviour, `docs/reference/backends.md#52-invocation`): argv
//!   `[cli, "--model", <model>, "--print", <prompt>]`, stdout trimmed is the output, one turn,
//!   stop reason `backend_defaulted`. Unlike the original, stdin is null and the CLI runs in the
//!   session's working directory.
//!
//! Both modes build the same prompt text ([`prompt`]), add the warnings of
//! `docs/reference/backends.md#53-warnings`, locate the CLI
//! at every execution ([`locate_cli`]), run it in its own process group and kill the whole
//! group on timeout or cancellation (no process is left behind), and report progress.
//!
//! Profiles map onto the CLI's permissions in native mode: `general` →
//! `--permission-mode acceptEdits` (file edits inside the working directory are allowed; shell
//! commands and anything else that needs approval are denied, since nobody can approve in
//! print mode); `verification` → `--permission-mode default` plus
//! `--disallowedTools Edit,Write,MultiEdit,NotebookEdit,Bash` (read-only: the edit and shell
//! tools are removed from the session, in sub-agents too, and any other tool that needs
//! approval is denied).

mod native;
mod process;
pub mod prompt;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_core::child_env;
pub use agent_core::continuation::{
    ScreeningLevel, ToolScreening, UNSUPPORTED_SCHEMA_KEYWORDS, screen_tool,
};
pub use agent_core::model::ClaudeCodeMode;
use agent_core::observe::trace;
use agent_core::spend::{BUDGET_STOP_PREFIX, Usd};
use agent_core::{
    BackendOutput, BackendRequest, Capabilities, ErrorCode, ExecContext, ExecutionBackend,
    ExecutionError, FailureKind, Profile, ToolDefinition,
};
use async_trait::async_trait;
use tracing::field::Empty;
use tracing::{Instrument, debug, warn};

use native::CliResult;
pub use native::{SUBTYPE_ERROR_MAX_TURNS, SUBTYPE_SUCCESS};
use process::{Finished, Invocation, RunError};

/// The backend's name.
pub const BACKEND_NAME: &str = "claude_code";
/// The binary searched for on `PATH`.
pub const CLI_NAME: &str = "claude";
/// The default per-invocation timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The timeout of the startup `--version` check.
pub const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The stop reason of text mode, and of native mode when the CLI reports none.
pub const STOP_REASON_DEFAULTED: &str = "backend_defaulted";
/// The most the CLI may write on stdout (its whole answer, or its JSON result); beyond it the
/// process group is killed (`docs/claude-code-backend.md#output-limits`).
pub const MAX_STDOUT_BYTES: usize = 16 * 1024 * 1024;
/// How much of the end of the CLI's stderr is kept and quoted in messages; the rest is read
/// and discarded.
pub const STDERR_TAIL_BYTES: usize = 4 * 1024;
/// `PATH` used when the variable is not set (Python's `os.defpath`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The variables of the server's environment the CLI inherits beyond the base set every child
/// gets ([`agent_core::child_env::BASE_VARS`]): what it needs to authenticate and reach the
/// API (directly, through a proxy, with a private CA), where it keeps its configuration, and
/// its temporary directory. Anything else (the server's bearer token, other credentials) stays
/// out unless the operator lists it (`docs/claude-code-backend.md#environment`).
pub const CLI_ENV_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "TMPDIR",
    "TZ",
];
/// Prefixes of inherited variables: the locale categories (`LC_ALL`, `LC_CTYPE`, …).
pub const CLI_ENV_PREFIXES: &[&str] = &["LC_"];

// Native-mode arguments.
pub const ARG_PRINT_SHORT: &str = "-p";
pub const ARG_PRINT: &str = "--print";
pub const ARG_OUTPUT_FORMAT: &str = "--output-format";
pub const OUTPUT_FORMAT_STREAM_JSON: &str = "stream-json";
/// Required by the CLI with `--print --output-format stream-json`.
pub const ARG_VERBOSE: &str = "--verbose";
/// The caller's `output_schema` (native mode), as compact JSON.
pub const ARG_JSON_SCHEMA: &str = "--json-schema";
pub const ARG_MODEL: &str = "--model";
/// The caller's `effort`.
pub const ARG_EFFORT: &str = "--effort";
/// The execution's USD budget (the caller's, lowered to the operator's cap).
pub const ARG_MAX_BUDGET_USD: &str = "--max-budget-usd";
pub const ARG_MAX_TURNS: &str = "--max-turns";
pub const ARG_PERMISSION_MODE: &str = "--permission-mode";
pub const ARG_DISALLOWED_TOOLS: &str = "--disallowedTools";
pub const ARG_RESUME: &str = "--resume";
/// With `--resume`: the resumed session goes on as a new one, leaving the resumed one as it was
/// (the first continuation of a fork, `BackendRequest::fork_provider_session`).
pub const ARG_FORK_SESSION: &str = "--fork-session";
pub const ARG_MCP_CONFIG: &str = "--mcp-config";
pub const ARG_STRICT_MCP_CONFIG: &str = "--strict-mcp-config";
pub const ARG_ALLOWED_TOOLS: &str = "--allowedTools";
pub const ARG_SETTING_SOURCES: &str = "--setting-sources";
/// The settings the CLI loads unless the operator says otherwise: the user's own only. A
/// workspace's `.claude/settings.json` is untrusted input: its hooks run commands and its
/// permissions widen what the model may do, so it is not loaded (nor its `.mcp.json`:
/// `--strict-mcp-config` is always passed).
pub const DEFAULT_SETTING_SOURCES: &[&str] = &["user"];
pub const ARG_VERSION: &str = "--version";
/// `--permission-mode` of the `general` profile.
pub const PERMISSION_MODE_GENERAL: &str = "acceptEdits";
/// `--permission-mode` of the `verification` profile.
pub const PERMISSION_MODE_VERIFICATION: &str = "default";
/// `--disallowedTools` of the `verification` profile: every edit and shell tool.
pub const VERIFICATION_DISALLOWED_TOOLS: &str = "Edit,Write,MultiEdit,NotebookEdit,Bash";

/// stderr (or stdout) texts by which the CLI says that a `--resume` id is unknown.
pub const RESUME_NOT_FOUND_MARKERS: [&str; 2] = [
    "No conversation found with session ID",
    "--resume requires a valid session ID",
];

// ---------------------------------------------------------------------------------------------
// Warnings (`docs/reference/backends.md#53-warnings` plus native-mode additions)
// ---------------------------------------------------------------------------------------------

/// Warning 1 of `docs/claude-code-backend.md#warnings-in-this-order-when-applicable`: tools were
/// passed while limited forwarding is off.
pub const WARN_TOOLS_NOT_SUPPORTED: &str = "claude_code backend: downstream federation tools are not supported and were not forwarded to the Claude Code CLI. Switch to the 'api' backend to use federation tools.";
/// Warning 3 of `docs/claude-code-backend.md#warnings-in-this-order-when-applicable`: the flat
/// history was cut to its last 20 messages.
pub const WARN_HISTORY_TRUNCATED: &str = "claude_code backend: conversation history was truncated to the most recent 10 exchange(s) to fit within context bounds. Earlier history is represented by the session summary.";
/// Warning 4 of `docs/claude-code-backend.md#warnings-in-this-order-when-applicable`: always in
/// text mode; in native mode only when the CLI reports no stop reason.
pub const WARN_STOP_REASON_LIMITED: &str = "claude_code backend: stop_reason precision is limited — the Claude Code CLI does not report semantic stop reasons.";
/// Warning 5 of `docs/claude-code-backend.md#warnings-in-this-order-when-applicable`: empty output.
pub const WARN_EMPTY_RESPONSE: &str = "claude_code backend: CLI returned an empty response";
/// The beginning of the resume fallback warning (see [`resume_fallback_warning`]).
pub const WARN_RESUME_FALLBACK_PREFIX: &str =
    "claude_code backend: could not resume Claude Code session";
/// The beginning of the turn budget warning (see [`max_turns_warning`]).
pub const WARN_MAX_TURNS_PREFIX: &str =
    "claude_code backend: the Claude Code CLI stopped at the max_turns budget";
/// The beginning of the permission denial warning (see [`permission_denials_warning`]).
pub const WARN_PERMISSION_DENIALS_PREFIX: &str = "claude_code backend: the Claude Code CLI denied";

/// Warning 2 of `docs/claude-code-backend.md#warnings-in-this-order-when-applicable`: `claude_code
/// backend: tool '<name>' not forwarded — <reason> (use 'api' backend for full tool support)`.
pub fn tool_not_forwarded_warning(name: &str, reason: &str) -> String {
    format!(
        "claude_code backend: tool '{name}' not forwarded — {reason} (use 'api' backend for full tool support)"
    )
}

/// Native mode: `--resume <id>` failed and the reconstructed context was sent instead.
pub fn resume_fallback_warning(provider_session_id: &str) -> String {
    format!(
        "{WARN_RESUME_FALLBACK_PREFIX} '{provider_session_id}' (the CLI no longer knows it); the session was continued from the reconstructed context in a new Claude Code session"
    )
}

/// Native mode: the CLI used up `--max-turns` but still returned a result.
pub fn max_turns_warning(max_turns: u32) -> String {
    format!(
        "{WARN_MAX_TURNS_PREFIX} ({max_turns} turn(s)) before finishing; the output may be incomplete"
    )
}

/// Native mode: the CLI refused tool calls for lack of permission.
pub fn permission_denials_warning(tools: &[String]) -> String {
    format!(
        "{WARN_PERMISSION_DENIALS_PREFIX} {} tool call(s) for lack of permission: {}",
        tools.len(),
        tools.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// Error messages (`docs/reference/backends.md#3-selection-and-startup-checks`,
// `docs/reference/backends.md#57-errors`)
// ---------------------------------------------------------------------------------------------

/// Execution: no CLI (code `claude_code_unavailable`).
pub const MSG_CLI_NOT_FOUND: &str = "claude CLI not found. Cannot execute task.";
/// Startup: no CLI (code `claude_code_unavailable`).
pub const MSG_CLI_NOT_FOUND_STARTUP: &str = "claude CLI not found in PATH. Install Claude Code (https://claude.ai/code) and ensure the 'claude' binary is on PATH, or set CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH.";
/// Startup: `--version` did not answer in time.
pub const MSG_VERSION_TIMEOUT: &str = "claude CLI did not respond to --version within 10 seconds";
const NORMALIZATION_PREFIX: &str = "Failed to normalize Claude Code result: ";

/// Startup: `claude CLI at '<path>' is not executable`.
pub fn not_executable_message(path: &Path) -> String {
    format!("claude CLI at '{}' is not executable", path.display())
}

/// Startup: `claude CLI version check failed (exit <code>): <stderr trimmed>`.
pub fn version_failed_message(code: i32, stderr: &str) -> String {
    format!(
        "claude CLI version check failed (exit {code}): {}",
        stderr.trim()
    )
}

/// `claude CLI timed out after <timeout>s` (`docs/reference/backends.md#57-errors`).
pub fn timed_out_message(timeout: Duration) -> String {
    format!("claude CLI timed out after {}s", seconds(timeout))
}

/// `claude CLI invocation failed: <error>` (spawn failure).
pub fn invocation_failed_message(error: &dyn fmt::Display) -> String {
    format!("claude CLI invocation failed: {error}")
}

/// stdout beyond [`MAX_STDOUT_BYTES`].
pub fn output_too_large_message() -> String {
    format!(
        "claude CLI wrote more than {} MiB on stdout (the output limit); its process group was killed",
        MAX_STDOUT_BYTES / (1024 * 1024)
    )
}

/// `claude CLI exited with code <n>: <stderr trimmed>`.
pub fn exited_message(code: i32, stderr: &str) -> String {
    format!("claude CLI exited with code {code}: {}", stderr.trim())
}

/// Whole seconds as an integer, fractions as a decimal (`300`, `0.5`).
fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{}", duration.as_secs_f64())
    }
}

/// `args` with `--json-schema <schema>` when the caller gave an output schema, and the
/// execution's model, effort and budget ([`with_spend`]).
fn with_schema(mut args: Vec<String>, request: &BackendRequest) -> Vec<String> {
    if let Some(schema) = &request.output_schema {
        args.push(ARG_JSON_SCHEMA.to_owned());
        args.push(schema.value().to_string());
    }
    with_spend(args, request)
}

/// `args` with the execution's own model in place of the configured one, `--effort <level>`
/// and `--max-budget-usd <usd>` when the execution has them, inserted before `--print` (text
/// mode's prompt comes last).
fn with_spend(mut args: Vec<String>, request: &BackendRequest) -> Vec<String> {
    let spend = &request.spend;
    let mut extra = Vec::new();
    if let Some(model) = &spend.model {
        match args.iter().position(|a| a == ARG_MODEL) {
            Some(i) if i + 1 < args.len() => args[i + 1] = model.clone(),
            _ => extra.extend([ARG_MODEL.to_owned(), model.clone()]),
        }
    }
    if let Some(effort) = spend.effort {
        extra.extend([ARG_EFFORT.to_owned(), effort.as_str().to_owned()]);
    }
    if let Some(usd) = spend.budget.max_usd {
        extra.extend([ARG_MAX_BUDGET_USD.to_owned(), usd.to_string()]);
    }
    let at = args
        .iter()
        .position(|a| a == ARG_PRINT)
        .unwrap_or(args.len());
    args.splice(at..at, extra);
    args
}

/// Hands each step a native-mode stream line shows to `ctx` (progress and, through the engine,
/// an event), in order.
fn stream_sink(ctx: &ExecContext) -> process::LineSink {
    let ctx = ctx.clone();
    let state = std::sync::Mutex::new(native::StreamState::default());
    std::sync::Arc::new(move |line: &[u8]| {
        let steps = match state.lock() {
            Ok(mut state) => native::stream_steps(line, &mut state),
            Err(poisoned) => native::stream_steps(line, &mut poisoned.into_inner()),
        };
        for step in steps {
            ctx.step(step);
        }
    })
}

fn invocation_error(message: impl Into<String>) -> ExecutionError {
    ExecutionError::new(ErrorCode::ClaudeCodeInvocationError, message)
}

/// A CLI that exited with a failure: [`exited_message`] of its code and stderr.
fn exited_error(finished: &Finished) -> ExecutionError {
    invocation_error(exited_message(finished.code(), &finished.stderr_text()))
}

fn normalization_error(detail: &str) -> ExecutionError {
    ExecutionError::new(
        ErrorCode::NormalizationError,
        format!("{NORMALIZATION_PREFIX}{detail}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Settings of a [`ClaudeCodeBackend`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeCodeConfig {
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH` (used only if it names an existing regular file).
    pub cli_path: Option<PathBuf>,
    /// `CLAUDE_AGENT_MCP_MODEL`; empty → no `--model` argument.
    pub model: String,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT`, per invocation.
    pub timeout: Duration,
    pub mode: ClaudeCodeMode,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_LIMITED_TOOL_FORWARDING`.
    pub limited_tool_forwarding: bool,
    /// Names of further variables of the server's environment the CLI inherits, beyond the
    /// base set and [`CLI_ENV_VARS`] (`CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH`).
    pub env_passthrough: Vec<String>,
    /// Variables set for the CLI, over the inherited ones. A `PATH` given here is also the one
    /// searched for `claude`.
    pub extra_env: Vec<(String, String)>,
    /// Federated servers handed to the CLI in native mode (`--mcp-config`), with their
    /// allowlists: the model calls their allowlisted tools natively.
    pub mcp_servers: Vec<McpServer>,
    /// `--setting-sources`: which settings files the CLI loads (`user`, `project`, `local`),
    /// [`DEFAULT_SETTING_SOURCES`] unless the operator chose
    /// (`CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES`). Empty: none at all.
    pub setting_sources: Vec<String>,
}

impl ClaudeCodeConfig {
    /// Native mode, [`DEFAULT_TIMEOUT`], `claude` from `PATH`, no forwarding, no extra env.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            cli_path: None,
            model: model.into(),
            timeout: DEFAULT_TIMEOUT,
            mode: ClaudeCodeMode::Native,
            limited_tool_forwarding: false,
            env_passthrough: Vec::new(),
            extra_env: Vec::new(),
            mcp_servers: Vec::new(),
            setting_sources: DEFAULT_SETTING_SOURCES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// A downstream MCP server for the CLI's own MCP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// The federation name: tools are `mcp__<name>__<tool>` to the CLI.
    pub name: String,
    pub transport: McpTransport,
    /// Only these downstream tools are allowed (`--allowedTools`).
    pub allowed_tools: Vec<String>,
    /// The profiles that see the server.
    pub profiles: Vec<Profile>,
}

/// How the CLI reaches a downstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

fn string_map(pairs: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// `--mcp-config` JSON and the `mcp__server__tool` names to allow, for one profile; `None` when
/// the profile sees no server.
pub fn mcp_config_for(servers: &[McpServer], profile: Profile) -> Option<(String, Vec<String>)> {
    let mut config = serde_json::Map::new();
    let mut allowed = Vec::new();
    for server in servers
        .iter()
        .filter(|s| s.profiles.contains(&profile) && !s.allowed_tools.is_empty())
    {
        let entry = match &server.transport {
            McpTransport::Stdio { command, args, env } => serde_json::json!({
                "type": "stdio",
                "command": command,
                "args": args,
                "env": string_map(env),
            }),
            McpTransport::Http { url, headers } => serde_json::json!({
                "type": "http",
                "url": url,
                "headers": string_map(headers),
            }),
        };
        config.insert(server.name.clone(), entry);
        allowed.extend(
            server
                .allowed_tools
                .iter()
                .map(|t| format!("mcp__{}__{t}", server.name)),
        );
    }
    if config.is_empty() {
        return None;
    }
    Some((
        serde_json::json!({ "mcpServers": config }).to_string(),
        allowed,
    ))
}

impl Default for ClaudeCodeConfig {
    fn default() -> Self {
        Self::new("")
    }
}

// ---------------------------------------------------------------------------------------------
// Locating the CLI (`docs/reference/backends.md#51-locating-the-cli`)
// ---------------------------------------------------------------------------------------------

/// The CLI to run: `explicit` if it is non-empty and names an existing regular file (no
/// executable-bit check); otherwise, with a warning log when `explicit` was set, `claude` on
/// the process's `PATH`.
pub fn locate_cli(explicit: Option<&Path>) -> Option<PathBuf> {
    locate_cli_in(explicit, std::env::var_os("PATH").as_deref())
}

/// [`locate_cli`] with an explicit search path (`None`: `/bin:/usr/bin`).
pub fn locate_cli_in(explicit: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    if let Some(explicit) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        if explicit.is_file() {
            return Some(explicit.to_path_buf());
        }
        warn!(
            path = %explicit.display(),
            "the configured Claude Code CLI path does not name an existing file; searching PATH for 'claude'"
        );
    }
    let path = path.unwrap_or_else(|| OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(CLI_NAME))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

// ---------------------------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------------------------

/// The `claude_code` backend. Holds only its configuration; the CLI is located at every call.
#[derive(Debug, Clone)]
pub struct ClaudeCodeBackend {
    config: ClaudeCodeConfig,
}

/// What one native invocation produced.
enum NativeAttempt {
    Done(Finished),
    ResumeUnknown(Finished),
}

impl ClaudeCodeBackend {
    pub fn new(config: ClaudeCodeConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &ClaudeCodeConfig {
        &self.config
    }

    /// The CLI this backend would run now (see [`locate_cli`]; a `PATH` in
    /// [`ClaudeCodeConfig::extra_env`] is searched instead of the process's).
    pub fn locate(&self) -> Option<PathBuf> {
        let path: Option<OsString> = self
            .config
            .extra_env
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| OsString::from(value))
            .or_else(|| std::env::var_os("PATH"));
        locate_cli_in(self.config.cli_path.as_deref(), path.as_deref())
    }

    /// The CLI's whole environment: the inherited variables the allowlist admits
    /// ([`CLI_ENV_VARS`], [`ClaudeCodeConfig::env_passthrough`]), then
    /// [`ClaudeCodeConfig::extra_env`] over them. Read at every invocation, like the CLI.
    fn environment(&self) -> Vec<(String, String)> {
        let allow = child_env::Allowlist {
            names: CLI_ENV_VARS,
            prefixes: CLI_ENV_PREFIXES,
            operator: &self.config.env_passthrough,
        };
        let mut env = child_env::inherited(std::env::vars_os(), &allow);
        for (key, value) in &self.config.extra_env {
            env.insert(key.clone(), value.clone());
        }
        env.into_iter().collect()
    }

    /// Startup validation (`docs/reference/backends.md#3-selection-and-startup-checks`): locates
    /// the CLI and runs `<cli> --version` within [`VERSION_CHECK_TIMEOUT`]. Returns the trimmed
    /// version text. Errors carry the exact message: no CLI → `claude_code_unavailable`; spawn
    /// failure, timeout or a non-zero exit → `execution_backend_unavailable`. Authentication is not
    /// checked.
    pub async fn check(&self) -> Result<String, ExecutionError> {
        let cli = self.locate().ok_or_else(|| {
            ExecutionError::new(ErrorCode::ClaudeCodeUnavailable, MSG_CLI_NOT_FOUND_STARTUP)
        })?;
        let args = [ARG_VERSION.to_owned()];
        let env = self.environment();
        let invocation = Invocation {
            program: &cli,
            args: &args,
            cwd: None,
            stdin: None,
            env: &env,
            timeout: VERSION_CHECK_TIMEOUT,
            on_stdout_line: None,
        };
        let unavailable =
            |message: String| ExecutionError::new(ErrorCode::ExecutionBackendUnavailable, message);
        let never = tokio_util::sync::CancellationToken::new();
        match process::run(&invocation, &never).await {
            Ok(finished) if finished.status.success() => {
                let version = finished.stdout_text().trim().to_owned();
                debug!(cli = %cli.display(), %version, "claude CLI version check passed");
                Ok(version)
            }
            Ok(finished) => Err(unavailable(version_failed_message(
                finished.code(),
                &finished.stderr_text(),
            ))),
            Err(RunError::TimedOut) => {
                Err(unavailable(MSG_VERSION_TIMEOUT.to_owned()).with_kind(FailureKind::Timeout))
            }
            Err(RunError::Spawn(error) | RunError::Wait(error)) => {
                debug!(cli = %cli.display(), %error, "claude CLI --version could not run");
                Err(unavailable(not_executable_message(&cli)))
            }
            Err(RunError::Cancelled) => Err(ExecutionError::cancelled()),
            Err(RunError::OutputTooLarge) => Err(unavailable(output_too_large_message())),
        }
    }

    /// Screens the request's tools (warnings 1–2 of `docs/reference/backends.md#53-warnings`): the
    /// compatible ones are injected as text.
    fn forwardable_tools(
        &self,
        tools: &[ToolDefinition],
        warnings: &mut Vec<String>,
    ) -> Vec<ToolDefinition> {
        if tools.is_empty() {
            return Vec::new();
        }
        if !self.config.limited_tool_forwarding {
            warnings.push(WARN_TOOLS_NOT_SUPPORTED.to_owned());
            return Vec::new();
        }
        let mut compatible = Vec::with_capacity(tools.len());
        for tool in tools {
            let screening = screen_tool(tool);
            if screening.is_compatible() {
                compatible.push(tool.clone());
            } else {
                warnings.push(tool_not_forwarded_warning(&tool.name, &screening.reason));
            }
        }
        compatible
    }

    /// The arguments every invocation carries, in both modes: only the settings the operator
    /// trusts, and only the MCP servers this server hands over.
    fn isolation_args(&self, args: &mut Vec<String>) {
        args.push(ARG_SETTING_SOURCES.to_owned());
        args.push(self.config.setting_sources.join(","));
        args.push(ARG_STRICT_MCP_CONFIG.to_owned());
    }

    /// The native-mode argv after the program.
    pub fn native_args(
        &self,
        profile: Profile,
        max_turns: u32,
        resume: Option<&str>,
    ) -> Vec<String> {
        let mut args: Vec<String> = [
            ARG_PRINT_SHORT,
            ARG_OUTPUT_FORMAT,
            OUTPUT_FORMAT_STREAM_JSON,
            ARG_VERBOSE,
        ]
        .map(str::to_owned)
        .to_vec();
        if !self.config.model.is_empty() {
            args.push(ARG_MODEL.to_owned());
            args.push(self.config.model.clone());
        }
        args.push(ARG_MAX_TURNS.to_owned());
        args.push(max_turns.max(1).to_string());
        match profile {
            Profile::General => {
                args.push(ARG_PERMISSION_MODE.to_owned());
                args.push(PERMISSION_MODE_GENERAL.to_owned());
            }
            Profile::Verification => {
                args.push(ARG_PERMISSION_MODE.to_owned());
                args.push(PERMISSION_MODE_VERIFICATION.to_owned());
                args.push(ARG_DISALLOWED_TOOLS.to_owned());
                args.push(VERIFICATION_DISALLOWED_TOOLS.to_owned());
            }
        }
        if let Some((config, allowed)) = mcp_config_for(&self.config.mcp_servers, profile) {
            // Only our servers (not the user's own), and only their allowlisted tools.
            args.push(ARG_MCP_CONFIG.to_owned());
            args.push(config);
            args.push(ARG_ALLOWED_TOOLS.to_owned());
            args.push(allowed.join(","));
        }
        if let Some(id) = resume {
            args.push(ARG_RESUME.to_owned());
            args.push(id.to_owned());
        }
        self.isolation_args(&mut args);
        args
    }

    /// The text-mode argv after the program: `--model <m>` (not when the model is empty), the
    /// isolation arguments, `--print <prompt>`.
    pub fn text_args(&self, prompt: &str) -> Vec<String> {
        let mut args = Vec::with_capacity(7);
        if !self.config.model.is_empty() {
            args.push(ARG_MODEL.to_owned());
            args.push(self.config.model.clone());
        }
        self.isolation_args(&mut args);
        args.push(ARG_PRINT.to_owned());
        args.push(prompt.to_owned());
        args
    }

    /// Runs one invocation, mapping process failures onto the error contract.
    async fn invoke(
        &self,
        cli: &Path,
        args: &[String],
        cwd: Option<&Path>,
        stdin: Option<&[u8]>,
        ctx: &ExecContext,
    ) -> Result<Finished, ExecutionError> {
        let env = self.environment();
        // Native mode streams its steps (one JSON object per line) while it runs.
        let on_stdout_line = (self.config.mode == ClaudeCodeMode::Native).then(|| stream_sink(ctx));
        let invocation = Invocation {
            program: cli,
            args,
            cwd,
            stdin,
            env: &env,
            timeout: self.config.timeout,
            on_stdout_line,
        };
        ctx.report(&format!(
            "claude CLI started ({} mode)",
            self.config.mode.as_str()
        ));
        match process::run(&invocation, &ctx.cancel).await {
            Ok(finished) => {
                ctx.report(&format!(
                    "claude CLI finished (exit code {})",
                    finished.code()
                ));
                Ok(finished)
            }
            Err(RunError::TimedOut) => {
                ctx.report("claude CLI timed out; its process group was killed");
                Err(invocation_error(timed_out_message(self.config.timeout))
                    .with_kind(FailureKind::Timeout))
            }
            Err(RunError::Cancelled) => {
                ctx.report("claude CLI cancelled; its process group was killed");
                Err(ExecutionError::cancelled())
            }
            Err(RunError::OutputTooLarge) => {
                ctx.report("claude CLI exceeded the output limit; its process group was killed");
                Err(invocation_error(output_too_large_message()))
            }
            Err(RunError::Spawn(error) | RunError::Wait(error)) => {
                debug!(cli = %cli.display(), %error, "claude CLI could not be run");
                Err(invocation_error(invocation_failed_message(&error)))
            }
        }
    }

    async fn execute_text(
        &self,
        cli: &Path,
        cwd: Option<&Path>,
        request: &BackendRequest,
        prompt: &str,
        mut warnings: Vec<String>,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        let args = with_spend(self.text_args(prompt), request);
        let finished = self.invoke(cli, &args, cwd, None, ctx).await?;
        if !finished.status.success() {
            return Err(exited_error(&finished));
        }
        let output_text = finished.stdout_text().trim().to_owned();
        warnings.push(WARN_STOP_REASON_LIMITED.to_owned());
        if output_text.is_empty() {
            warnings.push(WARN_EMPTY_RESPONSE.to_owned());
        }
        Ok(BackendOutput {
            output_text,
            turn_count: 1,
            stop_reason: Some(STOP_REASON_DEFAULTED.to_owned()),
            warnings,
            usage: None,
            provider_session_id: None,
            transcript: None,
        })
    }

    /// A `--resume` run: tells a CLI that no longer knows the id apart from other outcomes.
    async fn resume_attempt(
        &self,
        cli: &Path,
        args: &[String],
        cwd: Option<&Path>,
        message: &str,
        ctx: &ExecContext,
    ) -> Result<NativeAttempt, ExecutionError> {
        let finished = self
            .invoke(cli, args, cwd, Some(message.as_bytes()), ctx)
            .await?;
        if !finished.status.success() {
            let stderr = finished.stderr_text();
            let stdout = finished.stdout_text();
            if RESUME_NOT_FOUND_MARKERS
                .iter()
                .any(|m| stderr.contains(m) || stdout.contains(m))
            {
                return Ok(NativeAttempt::ResumeUnknown(finished));
            }
        }
        Ok(NativeAttempt::Done(finished))
    }

    async fn execute_native(
        &self,
        cli: &Path,
        cwd: Option<&Path>,
        request: &BackendRequest,
        reconstructed: &Reconstructed,
        mut warnings: Vec<String>,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        let max_turns = request.max_turns.max(1);
        // Whether the reconstructed prompt was sent (not only the resumed message).
        let mut sent_reconstructed = true;
        let resume = if request.is_continuation {
            request
                .provider_session_id
                .as_deref()
                .map(str::trim)
                .filter(|id| !id.is_empty())
        } else {
            None
        };

        let mut extra = Vec::new();
        let finished = match resume {
            Some(id) => {
                debug!(session_id = %request.session_id, provider_session_id = id, "resuming Claude Code session");
                let mut args = self.native_args(request.profile, max_turns, Some(id));
                if request.fork_provider_session {
                    args.push(ARG_FORK_SESSION.to_owned());
                }
                let args = with_schema(args, request);
                let message = request.task.trim();
                match self.resume_attempt(cli, &args, cwd, message, ctx).await? {
                    NativeAttempt::Done(finished) => {
                        sent_reconstructed = false;
                        finished
                    }
                    NativeAttempt::ResumeUnknown(failed) => {
                        debug!(
                            provider_session_id = id,
                            stderr = %failed.stderr_text().trim(),
                            "claude CLI could not resume; retrying with the reconstructed context"
                        );
                        ctx.report(
                            "claude CLI could not resume the session; retrying with the reconstructed context",
                        );
                        extra.push(resume_fallback_warning(id));
                        let args = with_schema(
                            self.native_args(request.profile, max_turns, None),
                            request,
                        );
                        self.invoke(cli, &args, cwd, Some(reconstructed.text.as_bytes()), ctx)
                            .await?
                    }
                }
            }
            None => {
                let args = with_schema(self.native_args(request.profile, max_turns, None), request);
                self.invoke(cli, &args, cwd, Some(reconstructed.text.as_bytes()), ctx)
                    .await?
            }
        };

        let stdout = finished.stdout_text();
        let parsed = match native::parse(&stdout) {
            Ok(parsed) => parsed,
            Err(detail) => {
                return Err(if finished.status.success() {
                    normalization_error(&detail)
                } else {
                    exited_error(&finished)
                });
            }
        };
        // With an output schema, the answer the CLI validated (its text otherwise).
        let output_text = match (&request.output_schema, &parsed.structured_output) {
            (Some(_), Some(structured)) => structured.to_string(),
            _ => parsed.result_text().to_owned(),
        };

        if parsed.is_max_turns() {
            if output_text.is_empty() {
                return Err(max_turns_failure(&parsed, max_turns));
            }
            extra.push(max_turns_warning(max_turns));
        } else if parsed.is_max_budget() {
            // Stopped by `--max-budget-usd`: not a failure, as on the api backend.
            extra.push(max_budget_warning(request, &parsed));
        } else if parsed.is_error {
            return Err(reported_failure(&parsed));
        } else if !finished.status.success() {
            return Err(exited_error(&finished));
        }

        if sent_reconstructed && reconstructed.history_truncated {
            warnings.push(WARN_HISTORY_TRUNCATED.to_owned());
        }
        if parsed.stop_reason.is_none() {
            warnings.push(WARN_STOP_REASON_LIMITED.to_owned());
        }
        if output_text.is_empty() {
            warnings.push(WARN_EMPTY_RESPONSE.to_owned());
        }
        warnings.extend(extra);
        if !parsed.permission_denials.is_empty() {
            warnings.push(permission_denials_warning(&parsed.permission_denials));
        }
        let turn_count = parsed
            .num_turns
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))
            .max(1);
        Ok(BackendOutput {
            output_text,
            turn_count,
            stop_reason: Some(
                parsed
                    .stop_reason
                    .unwrap_or_else(|| STOP_REASON_DEFAULTED.to_owned()),
            ),
            warnings,
            usage: parsed.usage,
            provider_session_id: parsed.session_id,
            transcript: None,
        })
    }
}

/// `is_error: true`: `claude CLI reported an error (<details>): <result text>`, keeping the
/// CLI's words (so that verification's auth / limit classification sees them) and the HTTP
/// status as [`FailureKind::HttpStatus`].
fn reported_failure(parsed: &CliResult) -> ExecutionError {
    let details = parsed.failure_details();
    let message = if details.is_empty() {
        format!("claude CLI reported an error: {}", parsed.failure_text())
    } else {
        format!(
            "claude CLI reported an error ({}): {}",
            details.join(", "),
            parsed.failure_text()
        )
    };
    // An error of the Messages API behind the CLI is a provider error, as on the api backend;
    // anything else the CLI reports stays an invocation error.
    match &parsed.api_error_status {
        Some(native::ApiErrorStatus::Code(code)) => {
            ExecutionError::new(ErrorCode::ProviderRuntimeError, message)
                .with_kind(FailureKind::HttpStatus(*code))
        }
        Some(_) => ExecutionError::new(ErrorCode::ProviderRuntimeError, message),
        None => invocation_error(message),
    }
}

/// `Budget reached (max_budget_usd $<usd>): the Claude Code CLI stopped; spent $<cost>; the
/// output may be incomplete`.
fn max_budget_warning(request: &BackendRequest, parsed: &CliResult) -> String {
    let budget = request
        .spend
        .budget
        .max_usd
        .map_or_else(String::new, |usd| format!(" ${usd}"));
    let cost = parsed
        .usage
        .as_ref()
        .and_then(|u| u.total_cost_usd)
        .map_or_else(
            || "an unreported amount".to_owned(),
            |c| format!("${}", Usd(c)),
        );
    format!(
        "{BUDGET_STOP_PREFIX} (max_budget_usd{budget}): the Claude Code CLI stopped; spent {cost}; \
         the output may be incomplete"
    )
}

/// `error_max_turns` without a result text. The message avoids the words that verification
/// classifies as usage limits.
fn max_turns_failure(parsed: &CliResult, max_turns: u32) -> ExecutionError {
    invocation_error(format!(
        "claude CLI stopped at the max_turns budget ({max_turns} turn(s)) without a final result: {}",
        parsed.failure_text()
    ))
}

/// The session's working directory, which must exist as a directory: the CLI is never started
/// anywhere else, least of all in the server's own directory (`docs/claude-code-backend.md`).
/// The engine has checked it against the policy just before; this is the last look.
async fn working_directory(request: &BackendRequest) -> Result<&Path, ExecutionError> {
    let Some(dir) = request.working_directory.as_deref() else {
        return Err(invocation_error(
            "claude CLI not started: no working directory was given",
        ));
    };
    match tokio::fs::metadata(dir).await {
        Ok(meta) if meta.is_dir() => Ok(dir),
        _ => Err(invocation_error(format!(
            "claude CLI not started: working directory '{}' does not exist or is not a directory",
            dir.display()
        ))),
    }
}

/// The prompt built from the request (continuation context or flat prompt).
struct Reconstructed {
    text: String,
    /// The flat history was cut to its last messages (warning 3 of
    /// `docs/reference/backends.md#53-warnings`).
    history_truncated: bool,
}

fn reconstructed_prompt(request: &BackendRequest, tools: &[ToolDefinition]) -> Reconstructed {
    // Extra instructions (the mediation teaching section) extend the system section.
    let system: std::borrow::Cow<'_, str> = match request.extra_instructions.as_deref() {
        Some(extra) => format!("{}\n\n{extra}", request.system_prompt).into(),
        None => request.system_prompt.into(),
    };
    match (&request.continuation, request.is_continuation) {
        (Some(context), true) => Reconstructed {
            text: prompt::continuation_prompt(&system, &request.task, context, tools),
            history_truncated: false,
        },
        _ => Reconstructed {
            text: prompt::initial_prompt(
                &system,
                &request.task,
                request.session_summary.as_deref(),
                request.is_continuation,
                &request.history,
                tools,
            ),
            history_truncated: prompt::history_truncated(&request.history),
        },
    }
}

#[async_trait]
impl ExecutionBackend for ClaudeCodeBackend {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            supports_workspace_assumptions: true,
            supports_limited_downstream_tools: true,
            supports_structured_continuation_context: true,
            supports_continuation_window_policy: true,
            supports_execution_mediation: true,
            supports_mediated_action_results: true,
            supports_bounded_mediated_workflows: true,
            supports_mediation_policy_profiles: true,
            supports_native_mcp_servers: self.config.mode == ClaudeCodeMode::Native
                && !self.config.mcp_servers.is_empty(),
            ..Capabilities::default()
        }
    }

    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        if ctx.cancel.is_cancelled() {
            return Err(ExecutionError::cancelled());
        }
        let Some(cli) = self.locate() else {
            return Err(ExecutionError::new(
                ErrorCode::ClaudeCodeUnavailable,
                MSG_CLI_NOT_FOUND,
            ));
        };
        let cwd = Some(working_directory(&request).await?);
        let mut warnings = Vec::new();
        let tools = self.forwardable_tools(&request.tools, &mut warnings);
        let reconstructed = reconstructed_prompt(&request, &tools);
        debug!(
            session_id = %request.session_id,
            mode = self.config.mode.as_str(),
            cli = %cli.display(),
            prompt_chars = reconstructed.text.chars().count(),
            tools = tools.len(),
            "running the claude CLI"
        );
        // One `chat` span per CLI execution (its turns are the CLI's own;
        // `docs/observability.md#traces`).
        let span = tracing::info_span!(
            target: trace::SPAN_TARGET,
            "chat",
            otel.name = Empty,
            otel.kind = "client",
            "gen_ai.operation.name" = "chat",
            "gen_ai.provider.name" = trace::PROVIDER,
            "gen_ai.request.model" = Empty,
            "gen_ai.response.finish_reasons" = Empty,
            "gen_ai.usage.input_tokens" = Empty,
            "gen_ai.usage.output_tokens" = Empty,
            "gen_ai.usage.cache_read.input_tokens" = Empty,
            "gen_ai.usage.cache_creation.input_tokens" = Empty,
            "claude_agent_mcp.claude_code.mode" = self.config.mode.as_str(),
            "claude_agent_mcp.claude_code.turns" = Empty,
            "error.type" = Empty,
            otel.status_code = Empty,
        );
        if !span.is_disabled() {
            let name = if self.config.model.is_empty() {
                "chat".to_owned()
            } else {
                span.record("gen_ai.request.model", self.config.model.as_str());
                format!("chat {}", self.config.model)
            };
            span.record("otel.name", name.as_str());
        }
        let outcome = match self.config.mode {
            ClaudeCodeMode::Text => {
                if reconstructed.history_truncated {
                    warnings.push(WARN_HISTORY_TRUNCATED.to_owned());
                }
                self.execute_text(&cli, cwd, &request, &reconstructed.text, warnings, ctx)
                    .instrument(span.clone())
                    .await
            }
            ClaudeCodeMode::Native => {
                self.execute_native(&cli, cwd, &request, &reconstructed, warnings, ctx)
                    .instrument(span.clone())
                    .await
            }
        };
        if !span.is_disabled() {
            record_chat(&span, &outcome);
        }
        outcome
    }
}

/// The outcome of a CLI execution on its `chat` span: usage, turns, stop reason, or the error.
fn record_chat(span: &tracing::Span, outcome: &Result<BackendOutput, ExecutionError>) {
    match outcome {
        Ok(output) => {
            span.record("claude_agent_mcp.claude_code.turns", output.turn_count);
            // The CLI's output names it: bounded before it goes on the span.
            if let Some(reason) = output.stop_reason.as_deref().and_then(trace::bounded) {
                span.record("gen_ai.response.finish_reasons", reason);
            }
            if let Some(usage) = &output.usage {
                trace::record_usage(span, usage);
            }
        }
        Err(e) => trace::record_error(span, e.code.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            timed_out_message(Duration::from_secs(300)),
            "claude CLI timed out after 300s"
        );
        assert_eq!(
            timed_out_message(Duration::from_millis(1500)),
            "claude CLI timed out after 1.5s"
        );
        assert_eq!(
            exited_message(1, " boom \n"),
            "claude CLI exited with code 1: boom"
        );
        assert_eq!(
            version_failed_message(2, "bad\n"),
            "claude CLI version check failed (exit 2): bad"
        );
        assert_eq!(
            tool_not_forwarded_warning("s__t", "why"),
            "claude_code backend: tool 's__t' not forwarded — why (use 'api' backend for full tool support)"
        );
    }

    #[test]
    fn argv_shapes() {
        let mut config = ClaudeCodeConfig::new("claude-test");
        let backend = ClaudeCodeBackend::new(config.clone());
        assert_eq!(
            backend.native_args(Profile::General, 0, None),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "claude-test",
                "--max-turns",
                "1",
                "--permission-mode",
                "acceptEdits",
                "--setting-sources",
                "user",
                "--strict-mcp-config"
            ]
        );
        assert_eq!(
            backend.native_args(Profile::Verification, 4, Some("abc")),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "claude-test",
                "--max-turns",
                "4",
                "--permission-mode",
                "default",
                "--disallowedTools",
                "Edit,Write,MultiEdit,NotebookEdit,Bash",
                "--resume",
                "abc",
                "--setting-sources",
                "user",
                "--strict-mcp-config"
            ]
        );
        assert_eq!(
            backend.text_args("p"),
            [
                "--model",
                "claude-test",
                "--setting-sources",
                "user",
                "--strict-mcp-config",
                "--print",
                "p"
            ]
        );
        config.model = String::new();
        config.setting_sources = Vec::new();
        let backend = ClaudeCodeBackend::new(config);
        assert_eq!(
            backend.text_args("p"),
            [
                "--setting-sources",
                "",
                "--strict-mcp-config",
                "--print",
                "p"
            ]
        );
        assert_eq!(
            backend.native_args(Profile::General, 2, None)[4],
            "--max-turns"
        );
    }
}

/// Property campaign (#12): whatever the CLI prints (native JSON or text mode, any bytes)
/// goes through the parsers and the failure classification without a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::os::unix::process::ExitStatusExt;

    fn arb_json() -> impl Strategy<Value = Value> {
        crate::strategies::json_value(&[native::SUBTYPE_ERROR_MAX_TURNS], KEYS)
    }

    const KEYS: &[&str] = &[
        "type",
        "subtype",
        "is_error",
        "result",
        "errors",
        "session_id",
        "num_turns",
        "stop_reason",
        "api_error_status",
        "api_error_type",
        "usage",
        "total_cost_usd",
        "permission_denials",
    ];

    /// A result object whose known fields hold arbitrary values.
    fn near_result() -> impl Strategy<Value = Value> {
        prop::collection::vec((prop::sample::select(KEYS), arb_json()), 0..10).prop_map(|kv| {
            let mut object = serde_json::Map::new();
            for (k, v) in kv {
                object.insert(k.to_owned(), v);
            }
            Value::Object(object)
        })
    }

    fn finished(code: i32, stdout: Vec<u8>, stderr: Vec<u8>, stderr_cut: bool) -> Finished {
        Finished {
            status: std::process::ExitStatus::from_raw((code & 0xff) << 8),
            stdout,
            stderr,
            stderr_cut,
        }
    }

    fn classify(parsed: &native::CliResult) {
        let _ = parsed.result_text();
        let _ = parsed.failure_details();
        assert!(!parsed.failure_text().is_empty());
        let error = reported_failure(parsed);
        assert!(error.message.starts_with("claude CLI reported an error"));
        let error = max_turns_failure(parsed, u32::MAX);
        assert!(
            error
                .message
                .starts_with("claude CLI stopped at the max_turns budget")
        );
        let _ = parsed
            .num_turns
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))
            .max(1);
    }

    proptest! {
        #![proptest_config(crate::strategies::config())]

        #[test]
        fn native_stdout_bytes_never_panic(
            stdout in prop::collection::vec(any::<u8>(), 0..512),
            code in any::<i32>(),
        ) {
            let finished = finished(code, stdout, Vec::new(), false);
            match native::parse(&finished.stdout_text()) {
                Ok(parsed) => classify(&parsed),
                Err(detail) => {
                    prop_assert!(!detail.is_empty());
                    let _ = normalization_error(&detail);
                }
            }
        }

        #[test]
        fn native_results_near_the_real_shape_parse(
            value in near_result(),
            prefix in prop::collection::vec(any::<String>(), 0..3),
        ) {
            // The object alone, and after other lines (the last JSON-object line counts).
            let object = serde_json::to_string(&value).unwrap_or_default();
            let parsed = native::parse(&object);
            prop_assert!(parsed.is_ok(), "an object always parses: {:?}", parsed);
            if let Ok(parsed) = &parsed {
                classify(parsed);
            }
            let mut text = prefix.join("\n");
            text.push('\n');
            text.push_str(&object);
            if let Ok(parsed) = native::parse(&text) {
                classify(&parsed);
            }
        }

        #[test]
        fn arbitrary_json_from_the_cli_never_panics(value in arb_json()) {
            let text = serde_json::to_string(&value).unwrap_or_default();
            match native::parse(&text) {
                Ok(parsed) => classify(&parsed),
                Err(detail) => prop_assert!(!value.is_object(), "{detail}"),
            }
        }

        #[test]
        fn text_mode_output_is_any_bytes(
            stdout in prop::collection::vec(any::<u8>(), 0..512),
            stderr in prop::collection::vec(any::<u8>(), 0..512),
            cut in any::<bool>(),
            code in any::<i32>(),
        ) {
            let finished = finished(code, stdout, stderr, cut);
            let text = finished.stdout_text();
            prop_assert_eq!(text.trim().len() <= text.len(), true);
            let message = exited_message(finished.code(), &finished.stderr_text());
            prop_assert!(!message.is_empty());
        }
    }
}
