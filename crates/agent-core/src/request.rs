//! Tool requests and the handler-layer validation of `docs/reference/tools.md#32-handler-layer`.
//!
//! Each `from_args` takes the raw JSON arguments of a tool call (after the schema layer) and
//! returns a typed request, or the exact error response the reference prescribes for that tool.
//! The error side is the response itself (an [`Envelope`]), hence `result_large_err` is allowed.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::envelope::Envelope;
use crate::error::ErrorObject;
use crate::model::{Profile, SessionStatus, Workflow};
use crate::spend::{Budget, Effort, Limit, MAX_BUDGET_USD, MAX_TOTAL_TOKENS, model_id_problem};
use crate::structured::OutputSchema;

/// What a caller asks to spend and on which model: `max_budget_usd`, `max_total_tokens`,
/// `model`, `effort` (`docs/reference/tools.md#18-budgets-and-models`). The engine lowers the
/// budget to the operator's caps and checks the model against the allowlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendRequest {
    pub budget: Budget,
    pub model: Option<String>,
    pub effort: Option<Effort>,
}

/// `agent_run_task`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTaskRequest {
    pub task: String,
    pub profile: Profile,
    pub working_directory: Option<String>,
    pub attachments: Vec<String>,
    pub max_turns: u32,
    pub allow_tools: bool,
    /// `docs/reference/tools.md#16-structured-results`.
    pub output_schema: Option<OutputSchema>,
    /// Budget, model and effort of the run.
    pub spend: SpendRequest,
    /// `wait_seconds`: how long the call waits before it answers `running` while the work goes
    /// on (`docs/reference/tools.md#15-background-runs`); `None`: until the work is done.
    /// Read by the MCP layer; the engine ignores it.
    pub wait: Option<Duration>,
}

impl RunTaskRequest {
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            profile: Profile::General,
            working_directory: None,
            attachments: Vec::new(),
            max_turns: 10,
            allow_tools: true,
            output_schema: None,
            spend: SpendRequest::default(),
            wait: None,
        }
    }

    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    pub fn with_working_directory(mut self, dir: impl Into<String>) -> Self {
        self.working_directory = Some(dir.into());
        self
    }

    pub fn with_attachments(mut self, attachments: Vec<String>) -> Self {
        self.attachments = attachments;
        self
    }

    pub fn with_max_turns(mut self, max_turns: u32) -> Self {
        self.max_turns = max_turns;
        self
    }

    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Envelope> {
        let raw_profile = match args.get("system_profile") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => Profile::General.as_str().to_owned(),
        };
        let mut problems = Vec::new();
        let task = required_string(args, "task", &mut problems);
        let task = limit_text("task", task, &mut problems);
        let profile = enum_field(
            args,
            "system_profile",
            Profile::parse,
            Profile::General,
            &mut problems,
        );
        let working_directory = optional_string(args, "working_directory", &mut problems)
            .map(|dir| limit_path("working_directory", dir, &mut problems));
        let attachments = path_list(args, "attachments", &mut problems);
        let max_turns = bounded_int(args, MAX_TURNS, 10, 1, 100, &mut problems);
        let allow_tools = boolean(args, "allow_tools", true, &mut problems);
        let output_schema = output_schema(args, &mut problems);
        let spend = spend(args, &mut problems);
        let wait = seconds(args, WAIT_SECONDS, &mut problems);
        if !problems.is_empty() {
            return Err(refused(
                "",
                Workflow::RunTask,
                raw_profile,
                "agent_run_task",
                &problems,
            ));
        }
        Ok(Self {
            task,
            profile,
            working_directory,
            attachments,
            max_turns: max_turns as u32,
            allow_tools,
            output_schema,
            spend,
            wait,
        })
    }
}

/// `agent_continue_session`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinueSessionRequest {
    pub session_id: String,
    pub message: String,
    pub max_turns: u32,
    /// `docs/reference/tools.md#16-structured-results`.
    pub output_schema: Option<OutputSchema>,
    /// Budget, model and effort of the continuation.
    pub spend: SpendRequest,
    /// `wait_seconds`, as for [`RunTaskRequest::wait`].
    pub wait: Option<Duration>,
}

impl ContinueSessionRequest {
    pub fn new(session_id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            session_id: session_id.into(),
            message: message.into(),
            max_turns: 10,
            output_schema: None,
            spend: SpendRequest::default(),
            wait: None,
        }
    }

    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Envelope> {
        let mut problems = Vec::new();
        let session_id = required_string(args, "session_id", &mut problems);
        let message_text = required_string(args, "message", &mut problems);
        let message_text = limit_text("message", message_text, &mut problems);
        let request = Self::from_options(args, session_id, message_text, &mut problems);
        if !problems.is_empty() {
            return Err(refused(
                session_id_arg(args),
                Workflow::ContinueSession,
                Profile::General.as_str(),
                "agent_continue_session",
                &problems,
            ));
        }
        Ok(request)
    }

    /// A continuation of `session_id` with `message` and the options read from `args`:
    /// `max_turns`, `output_schema`, budget, model and effort, `wait_seconds` (those of
    /// `agent_continue_session`, and of `agent_fork_session` with a message).
    fn from_options(
        args: &Map<String, Value>,
        session_id: String,
        message: String,
        problems: &mut Vec<String>,
    ) -> Self {
        let max_turns = bounded_int(args, MAX_TURNS, 10, 1, 100, problems);
        Self {
            session_id,
            message,
            max_turns: max_turns as u32,
            output_schema: output_schema(args, problems),
            spend: spend(args, problems),
            wait: seconds(args, WAIT_SECONDS, problems),
        }
    }
}

/// The longest `session_id` `agent_fork_session` accepts, in bytes (an id this server makes is
/// 21: `sess_` and 16 hex digits; a database shared with the original may hold others).
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// `agent_fork_session` (an addition, `docs/reference/tools.md#17-agent_fork_session`).
#[derive(Debug, Clone, PartialEq)]
pub struct ForkSessionRequest {
    /// The session to fork (the parent).
    pub session_id: String,
    /// The parent's turn to fork at (1 to its `turn_count`); `None`: its latest turn.
    pub at_turn: Option<i64>,
    /// The continuation to run on the fork: `session_id` there is the fork's and `max_turns`,
    /// `output_schema` and `wait` are those of `agent_continue_session`. `None`: the fork only.
    pub continuation: Option<ContinueSessionRequest>,
}

impl ForkSessionRequest {
    pub fn new(session_id: impl Into<String>) -> Self {
        Self {
            session_id: session_id.into(),
            at_turn: None,
            continuation: None,
        }
    }

    #[must_use]
    pub fn at_turn(mut self, turn: i64) -> Self {
        self.at_turn = Some(turn);
        self
    }

    /// Runs `message` on the fork, with `agent_continue_session`'s defaults.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.continuation = Some(ContinueSessionRequest::new("", message));
        self
    }

    /// `wait_seconds` (only with a message), as for [`RunTaskRequest::wait`].
    pub fn wait(&self) -> Option<Duration> {
        self.continuation.as_ref().and_then(|c| c.wait)
    }

    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Envelope> {
        let mut problems = Vec::new();
        let session_id = required_string(args, "session_id", &mut problems);
        if session_id.len() > MAX_SESSION_ID_BYTES {
            problems.push(format!(
                "session_id: at most {MAX_SESSION_ID_BYTES} bytes, got {}",
                session_id.len()
            ));
        }
        let at_turn = match args.get("at_turn") {
            None | Some(Value::Null) => None,
            Some(value) => match strict_int(value) {
                Some(n) if n >= 1 => Some(n),
                Some(n) => {
                    problems.push(format!(
                        "at_turn: input should be greater than or equal to 1, got {n}"
                    ));
                    None
                }
                None => {
                    problems.push(wrong_type("at_turn", "integer", value));
                    None
                }
            },
        };
        let message_text = optional_string(args, "message", &mut problems)
            .map(|text| {
                if text.is_empty() {
                    problems.push("message: string should have at least 1 character".to_owned());
                }
                limit_text("message", text, &mut problems)
            })
            .filter(|text| !text.is_empty());
        let options =
            ContinueSessionRequest::from_options(args, String::new(), String::new(), &mut problems);
        if message_text.is_none() && args.get("message").is_none_or(Value::is_null) {
            for key in CONTINUATION_OPTIONS {
                if args.get(key).is_some_and(|v| !v.is_null()) {
                    problems.push(format!("{key}: accepted only with message"));
                }
            }
        }
        if !problems.is_empty() {
            let raw_id = Some(session_id_arg(args)).filter(|id| id.len() <= MAX_SESSION_ID_BYTES);
            return Err(refused(
                raw_id.unwrap_or(""),
                Workflow::ForkSession,
                Profile::General.as_str(),
                "agent_fork_session",
                &problems,
            ));
        }
        Ok(Self {
            session_id,
            at_turn,
            continuation: message_text.map(|message| ContinueSessionRequest { message, ..options }),
        })
    }
}

/// A JSON integer (or a number with no fraction, as `2.0`), within `i64`; nothing else.
fn strict_int(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// `agent_get_session`.
#[derive(Debug, Clone, PartialEq)]
pub struct GetSessionRequest {
    pub session_id: String,
}

impl GetSessionRequest {
    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Value> {
        let mut problems = Vec::new();
        let session_id = required_string(args, "session_id", &mut problems);
        if !problems.is_empty() {
            return Err(refused_result("agent_get_session", &problems));
        }
        Ok(Self { session_id })
    }
}

/// `agent_cancel_session` (an addition, `docs/reference/tools.md#10-agent_cancel_session`).
#[derive(Debug, Clone, PartialEq)]
pub struct CancelSessionRequest {
    pub session_id: String,
}

impl CancelSessionRequest {
    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Envelope> {
        let mut problems = Vec::new();
        let session_id = required_string(args, "session_id", &mut problems);
        if !problems.is_empty() {
            return Err(refused(
                session_id_arg(args),
                Workflow::CancelSession,
                Profile::General.as_str(),
                "agent_cancel_session",
                &problems,
            ));
        }
        Ok(Self { session_id })
    }
}

/// `agent_wait_session` (an addition, `docs/reference/tools.md#14-agent_wait_session`).
#[derive(Debug, Clone, PartialEq)]
pub struct WaitSessionRequest {
    pub session_id: String,
    /// `timeout_seconds`: the longest the call waits for the session to leave `running`.
    pub timeout: Duration,
}

impl WaitSessionRequest {
    pub fn new(session_id: impl Into<String>, timeout: Duration) -> Self {
        Self {
            session_id: session_id.into(),
            timeout,
        }
    }

    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Value> {
        let mut problems = Vec::new();
        let session_id = required_string(args, "session_id", &mut problems);
        let timeout = seconds(args, "timeout_seconds", &mut problems)
            .unwrap_or(Duration::from_secs(DEFAULT_WAIT_TIMEOUT_SECONDS));
        if !problems.is_empty() {
            return Err(refused_result("agent_wait_session", &problems));
        }
        Ok(Self {
            session_id,
            timeout,
        })
    }
}

/// The argument of run, continue and verify that lets the work outlast the call
/// (`docs/reference/tools.md#15-background-runs`).
pub const WAIT_SECONDS: &str = "wait_seconds";

/// The argument names of a continuation besides `session_id` and `message`, each read by one
/// parser below; a fork without a message refuses every one of them.
const MAX_TURNS: &str = "max_turns";
const OUTPUT_SCHEMA: &str = "output_schema";
const MODEL: &str = "model";
const EFFORT: &str = "effort";
const CONTINUATION_OPTIONS: [&str; 7] = [
    MAX_TURNS,
    OUTPUT_SCHEMA,
    WAIT_SECONDS,
    Limit::Usd.name(),
    Limit::Tokens.name(),
    MODEL,
    EFFORT,
];

/// The largest `wait_seconds` and `timeout_seconds`: one hour. A client that waits longer calls
/// `agent_wait_session` again.
pub const MAX_WAIT_SECONDS: u64 = 3600;

/// `agent_wait_session`'s `timeout_seconds` when absent.
pub const DEFAULT_WAIT_TIMEOUT_SECONDS: u64 = 30;

/// An optional number of seconds, 0 to [`MAX_WAIT_SECONDS`], fractions allowed; booleans and
/// strings are refused (no lenient conversion: the field is new).
fn seconds(args: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Option<Duration> {
    let value = match args.get(key) {
        None | Some(Value::Null) => return None,
        Some(v) => v,
    };
    let Value::Number(n) = value else {
        problems.push(wrong_type(key, "number", value));
        return None;
    };
    match n.as_f64() {
        Some(f) if f < 0.0 => {
            problems.push(format!(
                "{key}: input should be greater than or equal to 0, got {n}"
            ));
            None
        }
        Some(f) if f <= MAX_WAIT_SECONDS as f64 => Some(Duration::from_secs_f64(f)),
        _ => {
            problems.push(format!(
                "{key}: input should be less than or equal to {MAX_WAIT_SECONDS}, got {n}"
            ));
            None
        }
    }
}

/// `agent_list_sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListSessionsRequest {
    pub limit: u32,
    pub status: Option<SessionStatus>,
}

impl Default for ListSessionsRequest {
    fn default() -> Self {
        Self {
            limit: 20,
            status: None,
        }
    }
}

impl ListSessionsRequest {
    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Value> {
        let mut problems = Vec::new();
        let limit = bounded_int(args, "limit", 20, 1, 200, &mut problems);
        let status = match args.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match SessionStatus::parse(s) {
                Some(st) => Some(st),
                None => {
                    problems.push(format!(
                        "status: input should be one of {}, got '{s}'",
                        crate::pyfmt::list(SessionStatus::ALL.iter().map(|s| s.as_str()))
                    ));
                    None
                }
            },
            Some(other) => {
                problems.push(wrong_type("status", "string", other));
                None
            }
        };
        if !problems.is_empty() {
            return Err(refused_result("agent_list_sessions", &problems));
        }
        Ok(Self {
            limit: limit as u32,
            status,
        })
    }
}

/// `agent_verify_task`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyTaskRequest {
    pub task: String,
    pub scope: Option<String>,
    pub evidence_paths: Vec<String>,
    pub fail_closed: bool,
    /// Budget, model and effort of the verification.
    pub spend: SpendRequest,
    /// `wait_seconds`, as for [`RunTaskRequest::wait`].
    pub wait: Option<Duration>,
}

impl VerifyTaskRequest {
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            scope: None,
            evidence_paths: Vec::new(),
            fail_closed: true,
            spend: SpendRequest::default(),
            wait: None,
        }
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_evidence(mut self, paths: Vec<String>) -> Self {
        self.evidence_paths = paths;
        self
    }

    pub fn with_fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    pub fn from_args(args: &Map<String, Value>) -> Result<Self, Envelope> {
        let mut problems = Vec::new();
        let task = required_string(args, "task", &mut problems);
        let task = limit_text("task", task, &mut problems);
        let scope = optional_string(args, "scope", &mut problems)
            .map(|s| limit_text("scope", s, &mut problems));
        let evidence_paths = path_list(args, "evidence_paths", &mut problems);
        let fail_closed = boolean(args, "fail_closed", true, &mut problems);
        let spend = spend(args, &mut problems);
        let wait = seconds(args, WAIT_SECONDS, &mut problems);
        // The value is ignored (verification always uses its own profile) but still validated.
        let _ = enum_field(
            args,
            "system_profile",
            Profile::parse,
            Profile::Verification,
            &mut problems,
        );
        if !problems.is_empty() {
            let env = refused(
                "",
                Workflow::VerifyTask,
                Profile::Verification.as_str(),
                "agent_verify_task",
                &problems,
            );
            return Err(env.with_result(core_verdict_result()));
        }
        Ok(Self {
            task,
            scope,
            evidence_paths,
            fail_closed,
            spend,
            wait,
        })
    }
}

/// `{"verdict":"fail_closed", ...four empty lists}`: the validation path's result.
pub fn core_verdict_result() -> Map<String, Value> {
    match json!({
        "verdict": "fail_closed",
        "findings": [],
        "contradictions": [],
        "missing_evidence": [],
        "restrictions": []
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The largest `task`, `message` or `scope` accepted, in bytes
/// (`docs/reference/tools.md#32-handler-layer`, **[added]**). The original had no limit; a request
/// this large cannot fit a model's context, so it is refused before any session exists.
pub const MAX_TEXT_BYTES: usize = 512 * 1024;

fn limit_text(key: &str, text: String, problems: &mut Vec<String>) -> String {
    if text.len() > MAX_TEXT_BYTES {
        problems.push(format!(
            "{key}: text is {} bytes, more than the limit of {MAX_TEXT_BYTES} bytes",
            text.len()
        ));
        return String::new();
    }
    text
}

/// The most `attachments` or `evidence_paths` one request may name. Each is checked, opened
/// and read on the server; the evidence budget cannot hold more than a few dozen files anyway.
pub const MAX_PATHS: usize = 64;

/// The longest path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

fn limit_path(key: &str, path: String, problems: &mut Vec<String>) -> String {
    if path.len() > MAX_PATH_BYTES {
        problems.push(format!(
            "{key}: a path is at most {MAX_PATH_BYTES} bytes, got {}",
            path.len()
        ));
        return String::new();
    }
    path
}

/// A list of paths: at most [`MAX_PATHS`], each at most [`MAX_PATH_BYTES`]. The count is
/// checked before any item, so an oversized list costs one message.
fn path_list(args: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    if let Some(Value::Array(items)) = args.get(key)
        && items.len() > MAX_PATHS
    {
        problems.push(format!(
            "{key}: at most {MAX_PATHS} paths are accepted, got {}",
            items.len()
        ));
        return Vec::new();
    }
    string_list(args, key, problems)
        .into_iter()
        .enumerate()
        .map(|(i, path)| limit_path(&format!("{key}.{i}"), path, problems))
        .collect()
}

/// The answer to a call of `tool` whose arguments did not validate: its error envelope (for
/// `session_id`, `workflow` and `profile`) with one validation error that lists every problem.
fn refused(
    session_id: &str,
    workflow: Workflow,
    profile: impl Into<String>,
    tool: &str,
    problems: &[String],
) -> Envelope {
    Envelope::error(
        session_id,
        workflow,
        profile,
        ErrorObject::validation(message(tool, problems)),
    )
}

/// As [`refused`], for the tools that answer an MCP error result rather than an envelope.
fn refused_result(tool: &str, problems: &[String]) -> Value {
    ErrorObject::validation(message(tool, problems)).into_error_result()
}

/// The `session_id` argument as given, for the envelope of a refused call: `""` when it is
/// absent or not a string.
fn session_id_arg(args: &Map<String, Value>) -> &str {
    args.get("session_id").and_then(Value::as_str).unwrap_or("")
}

fn message(tool: &str, problems: &[String]) -> String {
    format!("Invalid {tool} request: {}", problems.join("; "))
}

/// `{key}: input should be a valid {expected}, got {value}`: a value of the wrong JSON type.
fn wrong_type(key: &str, expected: &str, value: &Value) -> String {
    format!(
        "{key}: input should be a valid {expected}, got {}",
        describe(value)
    )
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn required_string(args: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> String {
    match args.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            problems.push(format!("{key}: string should have at least 1 character"));
            String::new()
        }
        None | Some(Value::Null) => {
            problems.push(format!("{key}: field required"));
            String::new()
        }
        Some(other) => {
            problems.push(wrong_type(key, "string", other));
            String::new()
        }
    }
}

fn optional_string(
    args: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match args.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(wrong_type(key, "string", other));
            None
        }
    }
}

fn string_list(args: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    match args.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => problems.push(wrong_type(&format!("{key}.{i}"), "string", other)),
                }
            }
            out
        }
        Some(other) => {
            problems.push(wrong_type(key, "list", other));
            Vec::new()
        }
    }
}

/// `output_schema`: absent or `null`, or a usable JSON Schema object
/// ([`OutputSchema::parse`]).
fn output_schema(args: &Map<String, Value>, problems: &mut Vec<String>) -> Option<OutputSchema> {
    match args.get(OUTPUT_SCHEMA) {
        None | Some(Value::Null) => None,
        Some(value) => match OutputSchema::parse(value) {
            Ok(schema) => Some(schema),
            Err(problem) => {
                problems.push(format!("{OUTPUT_SCHEMA}: {problem}"));
                None
            }
        },
    }
}

/// `max_budget_usd` (a number, more than 0, at most [`MAX_BUDGET_USD`]), `max_total_tokens`
/// (an integer, 1 to [`MAX_TOTAL_TOKENS`]), `model` (a model id:
/// [`crate::spend::model_id_problem`]) and `effort` (one of [`Effort`]).
fn spend(args: &Map<String, Value>, problems: &mut Vec<String>) -> SpendRequest {
    let usd = Limit::Usd.name();
    let max_usd = match args.get(usd) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f > 0.0 && f <= MAX_BUDGET_USD => Some(f),
            _ => {
                problems.push(format!(
                    "{usd}: input should be greater than 0 and at most {MAX_BUDGET_USD}, got {n}"
                ));
                None
            }
        },
        Some(other) => {
            problems.push(wrong_type(usd, "number", other));
            None
        }
    };
    let tokens = Limit::Tokens.name();
    let max_total_tokens = match args.get(tokens) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t) if (1..=MAX_TOTAL_TOKENS).contains(&t) => Some(t),
            _ => {
                problems.push(format!(
                    "{tokens}: input should be an integer from 1 to {MAX_TOTAL_TOKENS}, got {n}"
                ));
                None
            }
        },
        Some(other) => {
            problems.push(wrong_type(tokens, "integer", other));
            None
        }
    };
    let model = optional_string(args, MODEL, problems).filter(|model| {
        let problem = model_id_problem(model);
        if let Some(problem) = &problem {
            problems.push(format!("{MODEL}: {problem}"));
        }
        problem.is_none()
    });
    let effort = match args.get(EFFORT) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Effort::parse(s).or_else(|| {
            problems.push(format!(
                "{EFFORT}: input should be one of {}, got {}",
                Effort::choices(),
                crate::pyfmt::repr_str(crate::text::truncate_chars(s, 64))
            ));
            None
        }),
        Some(other) => {
            problems.push(wrong_type(EFFORT, "string", other));
            None
        }
    };
    SpendRequest {
        budget: Budget {
            max_usd,
            max_total_tokens,
        },
        model,
        effort,
    }
}

fn boolean(
    args: &Map<String, Value>,
    key: &str,
    default: bool,
    problems: &mut Vec<String>,
) -> bool {
    match args.get(key) {
        None => default,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            problems.push(wrong_type(key, "boolean", other));
            default
        }
    }
}

/// Integers with the original's lenient coercion: `5`, `5.0`, `"5"` and booleans (**[kept]**,
/// `docs/reference/tools.md#32-handler-layer`).
fn bounded_int(
    args: &Map<String, Value>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
    problems: &mut Vec<String>,
) -> i64 {
    let value = match args.get(key) {
        None => return default,
        Some(v) => v,
    };
    let parsed = match value {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n < min => {
            problems.push(format!(
                "{key}: input should be greater than or equal to {min}, got {n}"
            ));
            default
        }
        Some(n) if n > max => {
            problems.push(format!(
                "{key}: input should be less than or equal to {max}, got {n}"
            ));
            default
        }
        Some(n) => n,
        None => {
            problems.push(wrong_type(key, "integer", value));
            default
        }
    }
}

fn enum_field<T>(
    args: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    default: T,
    problems: &mut Vec<String>,
) -> T {
    match args.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::String(s)) => parse(s).unwrap_or_else(|| {
            problems.push(format!(
                "{key}: input should be 'general' or 'verification', got '{s}'"
            ));
            default
        }),
        Some(other) => {
            problems.push(wrong_type(key, "string", other));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn run_task_defaults_and_coercion() {
        let req =
            RunTaskRequest::from_args(&args(json!({"task": "x", "max_turns": "7", "foo": 1})))
                .unwrap();
        assert_eq!(req, RunTaskRequest::new("x").with_max_turns(7));
        let req = RunTaskRequest::from_args(&args(json!({"task": " ", "max_turns": 5.0}))).unwrap();
        assert_eq!(req.max_turns, 5);
    }

    #[test]
    fn wait_seconds_is_an_optional_bounded_number_on_run_continue_and_verify() {
        let run = |v: Value| RunTaskRequest::from_args(&args(v));
        assert_eq!(run(json!({"task": "x"})).unwrap().wait, None);
        assert_eq!(
            run(json!({"task": "x", "wait_seconds": null}))
                .unwrap()
                .wait,
            None
        );
        assert_eq!(
            run(json!({"task": "x", "wait_seconds": 0})).unwrap().wait,
            Some(Duration::ZERO)
        );
        assert_eq!(
            run(json!({"task": "x", "wait_seconds": 2.5})).unwrap().wait,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            run(json!({"task": "x", "wait_seconds": 3600}))
                .unwrap()
                .wait,
            Some(Duration::from_secs(MAX_WAIT_SECONDS))
        );
        for (value, problem) in [
            (
                json!(-1),
                "wait_seconds: input should be greater than or equal to 0, got -1",
            ),
            (
                json!(3600.5),
                "wait_seconds: input should be less than or equal to 3600, got 3600.5",
            ),
            (
                json!(1e300),
                "wait_seconds: input should be less than or equal to 3600, got 1e+300",
            ),
            (
                json!("5"),
                "wait_seconds: input should be a valid number, got '5'",
            ),
            (
                json!(true),
                "wait_seconds: input should be a valid number, got true",
            ),
        ] {
            let env = run(json!({"task": "x", "wait_seconds": value})).unwrap_err();
            assert_eq!(
                env.to_value(),
                json!({
                    "ok": false, "session_id": "", "status": "failed", "workflow": "run_task",
                    "profile": "general",
                    "summary": format!("Invalid agent_run_task request: {problem}"),
                    "result": {}, "artifacts": [], "warnings": [],
                    "errors": [{"code": "validation_error", "message": format!("Invalid agent_run_task request: {problem}")}]
                })
            );
        }
        let env = ContinueSessionRequest::from_args(&args(
            json!({"session_id": "sess_1", "message": "m", "wait_seconds": -0.5}),
        ))
        .unwrap_err()
        .to_value();
        assert_eq!(env["session_id"], json!("sess_1"));
        assert_eq!(
            env["errors"][0]["message"],
            json!(
                "Invalid agent_continue_session request: wait_seconds: input should be greater than or equal to 0, got -0.5"
            )
        );
        let ok = ContinueSessionRequest::from_args(&args(
            json!({"session_id": "sess_1", "message": "m", "wait_seconds": 1}),
        ))
        .unwrap();
        assert_eq!(ok.wait, Some(Duration::from_secs(1)));
        let env = VerifyTaskRequest::from_args(&args(json!({"task": "t", "wait_seconds": []})))
            .unwrap_err()
            .to_value();
        assert_eq!(env["result"], json!(core_verdict_result()));
        assert_eq!(
            env["errors"][0]["message"],
            json!(
                "Invalid agent_verify_task request: wait_seconds: input should be a valid number, got []"
            )
        );
    }

    #[test]
    fn wait_session_takes_a_session_and_a_bounded_timeout() {
        let wait = |v: Value| WaitSessionRequest::from_args(&args(v));
        assert_eq!(
            wait(json!({"session_id": "sess_1"})).unwrap(),
            WaitSessionRequest::new("sess_1", Duration::from_secs(DEFAULT_WAIT_TIMEOUT_SECONDS))
        );
        assert_eq!(
            wait(json!({"session_id": "sess_1", "timeout_seconds": 0.25}))
                .unwrap()
                .timeout,
            Duration::from_millis(250)
        );
        assert_eq!(
            wait(json!({"session_id": "", "timeout_seconds": 4000})).unwrap_err(),
            json!({"error": {"code": "validation_error", "message": "Invalid agent_wait_session request: session_id: string should have at least 1 character; timeout_seconds: input should be less than or equal to 3600, got 4000"}})
        );
        assert_eq!(
            wait(json!({"timeout_seconds": "1"})).unwrap_err(),
            json!({"error": {"code": "validation_error", "message": "Invalid agent_wait_session request: session_id: field required; timeout_seconds: input should be a valid number, got '1'"}})
        );
    }

    #[test]
    fn run_task_empty_task_is_a_validation_envelope() {
        let env = RunTaskRequest::from_args(&args(json!({"task": "", "system_profile": "bogus"})))
            .unwrap_err();
        let v = env.to_value();
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["session_id"], json!(""));
        assert_eq!(v["profile"], json!("bogus"));
        assert_eq!(v["result"], json!({}));
        assert_eq!(v["errors"][0]["code"], json!("validation_error"));
        assert!(v["errors"][0].get("details").is_none());
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.starts_with("Invalid agent_run_task request: "), "{msg}");
        assert_eq!(v["summary"], json!(msg));
    }

    #[test]
    fn oversized_task_is_refused() {
        let big = "x".repeat(MAX_TEXT_BYTES + 1);
        let env = RunTaskRequest::from_args(&args(json!({"task": big}))).unwrap_err();
        assert!(
            env.summary.contains("more than the limit"),
            "{}",
            env.summary
        );
        assert!(
            ContinueSessionRequest::from_args(&args(
                json!({"session_id": "s", "message": "x".repeat(MAX_TEXT_BYTES + 1)})
            ))
            .is_err()
        );
    }

    #[test]
    fn path_lists_and_paths_are_bounded() {
        let many: Vec<String> = (0..=MAX_PATHS).map(|i| format!("p{i}")).collect();
        let env = VerifyTaskRequest::from_args(&args(json!({"task": "x", "evidence_paths": many})))
            .unwrap_err();
        assert_eq!(
            env.summary,
            format!(
                "Invalid agent_verify_task request: evidence_paths: at most {MAX_PATHS} paths are accepted, got {}",
                MAX_PATHS + 1
            )
        );
        let env = RunTaskRequest::from_args(&args(json!({"task": "x", "attachments": many})))
            .unwrap_err();
        assert!(
            env.summary.contains("attachments: at most 64 paths"),
            "{}",
            env.summary
        );
        let long = "x".repeat(MAX_PATH_BYTES + 1);
        let env = RunTaskRequest::from_args(&args(
            json!({"task": "x", "attachments": ["ok", long], "working_directory": long}),
        ))
        .unwrap_err();
        assert_eq!(
            env.summary,
            "Invalid agent_run_task request: working_directory: a path is at most 4096 bytes, got 4097; attachments.1: a path is at most 4096 bytes, got 4097"
        );
        let exactly: Vec<String> = (0..MAX_PATHS).map(|_| "x".repeat(MAX_PATH_BYTES)).collect();
        let ok =
            VerifyTaskRequest::from_args(&args(json!({"task": "x", "evidence_paths": exactly})))
                .unwrap();
        assert_eq!(ok.evidence_paths.len(), MAX_PATHS);
    }

    #[test]
    fn continue_echoes_the_session_id() {
        let env =
            ContinueSessionRequest::from_args(&args(json!({"session_id": "sess_x"}))).unwrap_err();
        let v = env.to_value();
        assert_eq!(v["session_id"], json!("sess_x"));
        assert_eq!(v["workflow"], json!("continue_session"));
        assert_eq!(v["profile"], json!("general"));
    }

    #[test]
    fn verify_validation_has_the_five_core_keys() {
        let env = VerifyTaskRequest::from_args(&args(json!({"task": ""}))).unwrap_err();
        assert_eq!(
            env.to_value()["result"],
            json!({"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": []})
        );
    }

    #[test]
    fn list_rejects_out_of_range_and_unknown_status() {
        let err = ListSessionsRequest::from_args(&args(json!({"limit": 9999}))).unwrap_err();
        assert_eq!(err["error"]["code"], json!("validation_error"));
        assert!(ListSessionsRequest::from_args(&args(json!({"status": "nope"}))).is_err());
        let ok =
            ListSessionsRequest::from_args(&args(json!({"status": "failed", "limit": 2}))).unwrap();
        assert_eq!(
            ok,
            ListSessionsRequest {
                limit: 2,
                status: Some(SessionStatus::Failed)
            }
        );
        assert!(GetSessionRequest::from_args(&Map::new()).is_err());
    }

    #[test]
    fn fork_takes_a_strict_turn_and_continuation_arguments_only_with_a_message() {
        let fork = |v: Value| ForkSessionRequest::from_args(&args(v));
        let problem = |v: Value| {
            fork(v).unwrap_err().to_value()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let ok = fork(json!({"session_id": "sess_1", "at_turn": 2.0})).unwrap();
        assert_eq!(ok, ForkSessionRequest::new("sess_1").at_turn(2));
        assert_eq!(ok.wait(), None);
        for (at_turn, shown) in [
            (json!(true), "true"),
            (json!("2"), "'2'"),
            (json!(1.5), "1.5"),
            (json!(1e300), "1e+300"),
        ] {
            assert_eq!(
                problem(json!({"session_id": "s", "at_turn": at_turn})),
                format!(
                    "Invalid agent_fork_session request: at_turn: input should be a valid integer, got {shown}"
                )
            );
        }
        assert_eq!(
            problem(json!({"session_id": "s", "at_turn": -3})),
            "Invalid agent_fork_session request: at_turn: input should be greater than or equal to 1, got -3"
        );
        assert_eq!(
            problem(
                json!({"session_id": "s", "output_schema": {"type": "object"}, "wait_seconds": 1})
            ),
            "Invalid agent_fork_session request: output_schema: accepted only with message; wait_seconds: accepted only with message"
        );
        // Every continuation option (valid on its own) is refused without a message and
        // taken with one: the list is the parsers' own names.
        let valid = json!({
            "max_turns": 3, "output_schema": {"type": "object"}, "wait_seconds": 1,
            "max_budget_usd": 1.5, "max_total_tokens": 100, "model": "claude-x", "effort": "high"
        });
        assert_eq!(valid.as_object().unwrap().len(), CONTINUATION_OPTIONS.len());
        for key in CONTINUATION_OPTIONS {
            let value = valid[key].clone();
            assert_eq!(
                problem(json!({"session_id": "s", key: value.clone()})),
                format!("Invalid agent_fork_session request: {key}: accepted only with message")
            );
            assert!(
                fork(json!({"session_id": "s", "message": "m", key: value})).is_ok(),
                "{key}"
            );
        }
        let env = fork(json!({"session_id": "x".repeat(129)})).unwrap_err();
        assert_eq!(env.session_id, "", "an over-long id is not echoed");
        let with = fork(
            json!({"session_id": "sess_1", "message": "m", "max_turns": 3, "wait_seconds": 0}),
        )
        .unwrap();
        let continuation = with.continuation.clone().unwrap();
        assert_eq!(
            (continuation.message.as_str(), continuation.max_turns),
            ("m", 3)
        );
        assert_eq!(with.wait(), Some(Duration::ZERO));
    }
}
