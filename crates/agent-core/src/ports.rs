//! The ports: traits that storage, execution backends, directory policy, tool providers and
//! progress reporting implement. The engine depends only on these.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::envelope::ArtifactRef;
use crate::error::ErrorCode;
use crate::event::{Event, StoredEvent};
use crate::model::{Profile, SessionStatus, Workflow};
use crate::time::Timestamp;

// ---------------------------------------------------------------------------------------------
// Session store
// ---------------------------------------------------------------------------------------------

/// A storage failure. Messages are for operators; the engine reports them as
/// `provider_runtime_error` (an unexpected failure) without writing an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    /// What kind of failure it is, where the engine acts on it.
    pub kind: StoreErrorKind,
}

/// The failures the engine tells apart; every other one is [`StoreErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreErrorKind {
    #[default]
    Other,
    /// A fenced write ([`SessionStore::finish_execution`]) found that the [`Lease`] it
    /// presented no longer holds the session's lock: another execution (in this process or
    /// another one) took it, or it was cleared. Retrying cannot succeed and nothing may be
    /// written for the execution any more: the new holder owns the row.
    NotHolder,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: StoreErrorKind::Other,
        }
    }

    /// A [`StoreErrorKind::NotHolder`] failure.
    pub fn not_holder(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: StoreErrorKind::NotHolder,
        }
    }

    pub fn is_not_holder(&self) -> bool {
        self.kind == StoreErrorKind::NotHolder
    }
}

/// An execution's hold on a session's lock (`docs/reference/sessions.md#4-locking`): its owner
/// token (new for every execution, carrying the node id of the process) and the fencing
/// generation the store gave the acquisition (`lock_generation`, incremented by every
/// acquisition, stale takeovers included). Every write that renews or ends the execution
/// presents both and applies only while both still match the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub generation: i64,
}

impl Lease {
    pub fn new(owner: impl Into<String>, generation: i64) -> Self {
        Self {
            owner: owner.into(),
            generation,
        }
    }

    /// The lease of an acquisition: `record` as the store returned it when the lock was taken
    /// ([`SessionStore::begin_session`], [`LockOutcome::Acquired`]).
    pub fn of(owner: impl Into<String>, record: &SessionRecord) -> Self {
        Self::new(owner, record.lock_generation)
    }
}

/// The longest cancel reason a store keeps ([`SessionStore::request_cancel`]), in bytes: a
/// store cuts a longer one at a character boundary, when it records it and again when it
/// reads it back (a row written by another program may hold anything).
pub const MAX_CANCEL_REASON_BYTES: usize = 1024;

/// A cancel reason as every store keeps it and reads it back: cut to
/// [`MAX_CANCEL_REASON_BYTES`] at a character boundary.
pub fn bounded_cancel_reason(reason: &str) -> &str {
    crate::text::truncate_bytes(reason, MAX_CANCEL_REASON_BYTES)
}

/// The largest result [`SessionStore::keep_result`] is given, in bytes of JSON text: the MCP
/// task result's bound ([`crate::mcp_tasks::MAX_TASK_RESULT_BYTES`]). The engine keeps a
/// `session_result_unavailable` envelope instead of a larger one.
pub const MAX_KEPT_RESULT_BYTES: usize = crate::mcp_tasks::MAX_TASK_RESULT_BYTES;

/// A full session row (`docs/reference/sessions.md#2-session-record`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub provider: String,
    pub provider_session_id: Option<String>,
    pub status: SessionStatus,
    pub working_directory: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_activity_at: Timestamp,
    pub request_count: i64,
    pub turn_count: i64,
    pub artifact_count: i64,
    pub summary_latest: Option<String>,
    pub locked_by: Option<String>,
    pub lock_expires_at: Option<Timestamp>,
    /// The fencing generation: incremented by every lock acquisition (creation, continuation,
    /// stale takeover); 0 on a row no acquisition of this implementation touched.
    pub lock_generation: i64,
    /// Where a fork came from (`parent_session_id`, `forked_at_turn`); `None` for a session
    /// that is not a fork ([`SessionStore::fork_session`]).
    pub fork: Option<ForkOrigin>,
    /// Usage and cost summed over the session's finished executions (`agent_get_session`'s
    /// `usage`); the cost only as far as it was known.
    pub usage: Usage,
}

/// The session a fork was made from and the turn it was made at
/// (`docs/reference/tools.md#17-agent_fork_session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkOrigin {
    pub parent_session_id: String,
    pub at_turn: i64,
}

/// A fork to create ([`SessionStore::fork_session`]): a new session whose history is its
/// parent's up to turn `at_turn`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkSession {
    pub parent_session_id: String,
    /// The new session's id.
    pub session_id: String,
    /// The parent's turn the fork is made at: the new session's `turn_count`; the parent's kept
    /// outputs of turns up to it are copied.
    pub at_turn: i64,
    /// The parent's events with an `event_id` up to this one are copied, in order (type, turn
    /// index, payload and time as they are), as the new session's first events.
    pub through_event_id: i64,
    /// The new session's `summary_latest` (the parent's summary of turn `at_turn`).
    pub summary_latest: Option<String>,
    /// Appended to the new session after the copied events (`session_forked`).
    pub child_event: Event,
    /// Appended to the parent (`session_fork_created`): the one write a fork makes to it.
    pub parent_event: Event,
}

/// The outcome of [`SessionStore::fork_session`].
#[derive(Debug, Clone, PartialEq)]
pub enum ForkOutcome {
    /// The new session, as created.
    Forked(Box<SessionRecord>),
    /// The parent does not exist.
    NotFound,
}

/// One row of `agent_list_sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionListItem {
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub status: SessionStatus,
    pub updated_at: Timestamp,
    pub summary_latest: Option<String>,
}

/// A session to insert, already `running` and locked by `lock_owner` (the `created` state is
/// transient; inserting it running saves a write and a window in which it could be seen).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub working_directory: Option<String>,
    pub lock_owner: String,
    pub lock_ttl: Duration,
}

/// The outcome of a lock acquisition.
#[derive(Debug, Clone, PartialEq)]
pub enum LockOutcome {
    /// The lock is ours; the row as it was when we took it.
    Acquired(Box<SessionRecord>),
    /// Another holder's lease is unexpired.
    Conflict {
        owner: String,
    },
    NotFound,
}

/// How an execution ends: written with the lock release in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub status: SessionStatus,
    /// New `turn_count` (unchanged when `None`).
    pub turn_count: Option<i64>,
    /// New `summary_latest` (unchanged when `None`).
    pub summary_latest: Option<String>,
    /// New `provider_session_id` (unchanged when `None`).
    pub provider_session_id: Option<String>,
    /// The full output of a successful execution, kept (keyed by the new `turn_count`) so that
    /// continuations replay it instead of its one-line summary
    /// (`docs/reference/sessions.md#8-conversation-history`).
    pub output_text: Option<String>,
    pub events: Vec<Event>,
    /// The envelope this execution's call answers (its JSON text, at most
    /// [`MAX_KEPT_RESULT_BYTES`]), kept in the same transaction as the session's result for
    /// `agent_wait_session`, as [`SessionStore::keep_result`] keeps it with the session's
    /// `request_count` as the execution; `None` keeps nothing.
    pub result: Option<String>,
    /// The execution's usage and cost, added to the session's totals
    /// ([`SessionRecord::usage`]).
    pub usage: Option<Usage>,
}

impl Finish {
    /// An execution that ends with `status` and `events` but no output: the counters, summary
    /// and provider session id stay as they were.
    pub fn without_output(status: SessionStatus, events: Vec<Event>) -> Self {
        Self {
            status,
            turn_count: None,
            summary_latest: None,
            provider_session_id: None,
            output_text: None,
            events,
            result: None,
            usage: None,
        }
    }

    /// The same finish, keeping `envelope` as the execution's result ([`Finish::result`]).
    pub fn with_result(mut self, envelope: String) -> Self {
        self.result = Some(envelope);
        self
    }
}

/// An artifact body to persist (`docs/reference/sessions.md#10-artifacts`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewArtifact<'a> {
    pub session_id: &'a str,
    pub workflow: Workflow,
    pub profile: Profile,
    pub artifact_type: &'a str,
    pub logical_name: &'a str,
    pub mime_type: &'a str,
    pub turn_index: i64,
    pub producer_tool: &'a str,
    pub body: &'a [u8],
}

/// A stored artifact's metadata (`docs/reference/sessions.md#102-record`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub artifact_id: String,
    pub session_id: String,
    pub artifact_type: String,
    pub logical_name: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: String,
    pub turn_index: i64,
    pub producer_tool: String,
}

/// A session's event log: all that a crate which records or reads events needs (tool
/// providers, federation, mediation). The narrow port: every [`SessionStore`] is one, and a
/// crate that takes an `EventLog` can be given the store or a stand-in that keeps events only.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to the session's log, in order, in one commit.
    async fn append_events(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError>;

    /// The event log, oldest first.
    async fn events(&self, session_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
}

/// Durable sessions, their locks, outputs and artifacts, beside their event log (the
/// [`EventLog`] supertrait). Every method commits before it returns. The engine uses the whole
/// port; other crates take the narrower [`EventLog`].
#[async_trait]
pub trait SessionStore: EventLog {
    /// Inserts a running, locked session with `request_count = 1` and appends `events`.
    async fn begin_session(
        &self,
        session: &NewSession,
        events: &[Event],
    ) -> Result<SessionRecord, StoreError>;

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Most recently updated first.
    async fn list_sessions(
        &self,
        limit: u32,
        status: Option<SessionStatus>,
    ) -> Result<Vec<SessionListItem>, StoreError>;

    /// One page of all sessions, most recently updated first: at most `limit` rows after
    /// skipping `offset`. A store should page where the rows are (`LIMIT`/`OFFSET`); this
    /// default goes through [`list_sessions`](Self::list_sessions) and so reads
    /// `offset + limit` rows, which suits only small in-memory stores.
    async fn list_sessions_page(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<SessionListItem>, StoreError> {
        let want = offset.saturating_add(limit);
        let mut items = self.list_sessions(want, None).await?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(items.len());
        items.drain(..start);
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(items)
    }

    /// Takes the lock when it is free or its lease has expired (stale takeover).
    async fn acquire_lock(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LockOutcome, StoreError>;

    /// Clears the lock if `owner` holds it; otherwise does nothing.
    async fn release_lock(&self, session_id: &str, owner: &str) -> Result<(), StoreError>;

    /// Extends `lease`'s expiry to now + `ttl`; false when `lease` (owner and generation) no
    /// longer holds the lock (the engine then stops the execution: its lease is lost). A store
    /// without leases, whose locks never expire, answers true.
    async fn renew_lock(
        &self,
        _session_id: &str,
        _lease: &Lease,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Sets `running`, `request_count += 1` and appends `events`.
    async fn begin_execution(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError>;

    /// Applies `finish`, appends its events, keeps its result ([`Finish::result`], as
    /// [`keep_result`](Self::keep_result) with the session's `request_count`), releases
    /// `lease`'s lock and drops any cancel request, in one transaction. Fenced: it fails with [`StoreErrorKind::NotHolder`] and
    /// applies nothing unless `lease` (owner token and generation) holds the lock, so an
    /// execution whose lock was taken over or cleared can no longer write its end. A kept
    /// output is never overwritten: when an output is already kept at `finish.turn_count`
    /// (another execution finished that turn first), this fails and applies nothing.
    async fn finish_execution(
        &self,
        session_id: &str,
        lease: &Lease,
        finish: &Finish,
    ) -> Result<(), StoreError>;

    /// Writes the body under the artifact root, inserts its row and bumps `artifact_count`.
    /// Fails with `Artifact exceeds max size: <size> > <max>` above the cap.
    async fn store_artifact(&self, artifact: NewArtifact<'_>) -> Result<ArtifactRef, StoreError>;

    /// The fallback when [`finish_execution`](Self::finish_execution) keeps failing: a
    /// `running` session whose lock `lease` holds (owner and generation; or that has no lock)
    /// becomes `interrupted`, its lock is released, any cancel request dropped and a
    /// `session_interrupted {"reason"}` event is appended, in one transaction. Answers false,
    /// changing nothing, when the session is missing, not `running`, or locked by another
    /// lease.
    async fn interrupt_execution(
        &self,
        session_id: &str,
        lease: &Lease,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// The lease sweeper, run while serving: every `running` session whose lease has expired
    /// (`lock_expires_at` not later than now) or that has no lock at all becomes
    /// `interrupted` with its lock cleared, and gets a `lease_expired` event (at its
    /// `turn_count`); a lock with a null expiry counts as held, as in
    /// [`acquire_lock`](Self::acquire_lock). Returns how many sessions it changed.
    async fn sweep_expired_leases(&self) -> Result<u64, StoreError>;

    /// Startup recovery: every `running` session without a live lease (its lease expired, or
    /// no one holds it) becomes `interrupted` with its lock cleared, and no event; returns the
    /// count. A lease that is still live belongs to a run in another process on the same store
    /// and is left alone (the sweeper takes it if that process dies).
    async fn recover_interrupted(&self) -> Result<u64, StoreError>;

    /// Cancellation across processes (`docs/reference/tools.md#10-agent_cancel_session`): asks
    /// the execution that holds `session_id`'s lock, wherever it runs, to cancel with `reason`
    /// (cut to [`MAX_CANCEL_REASON_BYTES`]). Recorded only while the session is `running`
    /// under a lock, and bound to that lock's acquisition: every acquisition starts without one,
    /// and the end of the execution (finish, interrupt, release, sweep, recovery) drops it, so a
    /// request never reaches a later execution. A second request keeps the first reason.
    /// Answers whether a request is (now) recorded. The default (a store with no shared state
    /// between processes) records nothing.
    async fn request_cancel(&self, _session_id: &str, _reason: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The reason of a cancel request made for `lease`'s execution
    /// ([`request_cancel`](Self::request_cancel)), if any: polled by the holder while it runs
    /// (at most every 500 ms), so it must be one indexed read. A request made for an earlier
    /// lease, or for a session that `lease` no longer holds, answers `None`.
    async fn cancel_requested(
        &self,
        _session_id: &str,
        _lease: &Lease,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// An optional push channel for [`request_cancel`](Self::request_cancel): a store that can
    /// tell a process at once that a cancel was requested (PostgreSQL `LISTEN/NOTIFY`) sends the
    /// session id on it, and the holder checks [`cancel_requested`](Self::cancel_requested)
    /// without waiting for its next poll. `None` (the default): polling only. Called once per
    /// execution; a lagging receiver only loses wake-ups, never requests.
    fn cancel_wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// The artifacts of a session, oldest first.
    async fn artifacts(&self, _session_id: &str) -> Result<Vec<ArtifactRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// One artifact of a session and its body; `None` when the session has no such artifact.
    /// Where the body lives (a file, a database column) is the store's business; a body that
    /// cannot be read is an error whose message names the artifact.
    async fn read_artifact(
        &self,
        session_id: &str,
        artifact_id: &str,
    ) -> Result<Option<(ArtifactRecord, Vec<u8>)>, StoreError>;

    /// Keeps `envelope` (its JSON text, at most [`MAX_KEPT_RESULT_BYTES`]) as the result of
    /// execution `execution` of `session_id` (the session's `request_count` when that execution
    /// began), for `agent_wait_session`. One result is kept per session: it replaces the result
    /// of an earlier or the same execution, and a result of a later execution is left alone
    /// (answers false). The text is kept byte for byte. Fails when the session does not exist.
    /// The default (a store that keeps none) keeps nothing and answers false.
    async fn keep_result(
        &self,
        _session_id: &str,
        _execution: i64,
        _envelope: &str,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The result kept by [`keep_result`](Self::keep_result): `(execution, envelope text)`, or
    /// `None` when none is kept (or the session does not exist).
    async fn kept_result(&self, _session_id: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(None)
    }

    /// Creates a fork ([`ForkSession`]) in one transaction: a new session with the parent's
    /// workflow, profile, provider and working directory, status `completed`, `turn_count`
    /// `at_turn`, `request_count` 0, no artifacts, no provider session id, no lock and no
    /// kept result, its origin recorded ([`SessionRecord::fork`]); the parent's events through
    /// `through_event_id` and its kept outputs of turns up to `at_turn` copied to it; then
    /// `child_event` appended to it and `parent_event` to the parent. The parent's row, its lock
    /// and its other rows are not touched, so a running parent may be forked. Answers
    /// [`ForkOutcome::NotFound`], writing nothing, when the parent does not exist; fails, writing
    /// nothing, when the new id is taken.
    async fn fork_session(&self, fork: &ForkSession) -> Result<ForkOutcome, StoreError>;

    /// The full outputs kept by [`Finish::output_text`], as `(turn_index, text)` in turn order.
    /// A store that keeps none answers empty, and continuations fall back to the summaries.
    async fn outputs(&self, _session_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------------------------
// Execution backends
// ---------------------------------------------------------------------------------------------

/// A message of conversation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
    /// The message's content blocks as the Messages API took them, replayed verbatim instead
    /// of `content` (an earlier turn's tool loop:
    /// `docs/reference/sessions.md#8-conversation-history`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<Value>>,
}

impl ChatMessage {
    /// What the message counts against the history budget: the characters of its text, or
    /// the bytes of its replayed blocks as JSON.
    pub fn size_chars(&self) -> usize {
        match &self.blocks {
            Some(blocks) => blocks.iter().map(|b| b.to_string().len()).sum(),
            None => self.content.chars().count(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    User,
    Assistant,
}

/// An Anthropic-format tool definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    pub name: String,
    /// Shared like the schema: descriptions are the larger part of a definition.
    pub description: Arc<str>,
    /// Shared: a provider builds each schema once and every request borrows it.
    pub input_schema: Arc<Value>,
}

impl ToolDefinition {
    /// The input schema's top-level `properties`, when it has an object there.
    pub fn properties(&self) -> Option<&serde_json::Map<String, Value>> {
        self.input_schema
            .get("properties")
            .and_then(Value::as_object)
    }

    /// The names the input schema lists under `required`, in its order (non-strings skipped).
    pub fn required(&self) -> Vec<&str> {
        self.input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// Runs a tool for the model. `Err` text becomes `Error: <text>` in the tool result.
#[async_trait]
pub trait ToolExecutor: Send + Sync {
    async fn call(&self, name: &str, input: Value) -> Result<String, String>;
}

/// Token usage of one execution (`result.usage`,
/// `docs/reference/envelope.md#2-the-canonical-envelope`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_cost_usd: Option<f64>,
}

impl Usage {
    /// Every token counted against `max_total_tokens`: input, output, cache writes and reads.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
    }

    pub fn add(&mut self, other: &Usage) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            }
        }
        // The counts come from the provider: they saturate rather than overflow.
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_creation_input_tokens = sum(
            self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        self.cache_read_input_tokens =
            sum(self.cache_read_input_tokens, other.cache_read_input_tokens);
        self.total_cost_usd = match (self.total_cost_usd, other.total_cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }
}

/// What the workflow hands a backend (`docs/reference/backends.md#1-backend-contract`).
#[derive(Clone)]
pub struct BackendRequest {
    pub session_id: String,
    pub profile: Profile,
    pub system_prompt: &'static str,
    pub task: String,
    pub max_turns: u32,
    pub tools: Vec<ToolDefinition>,
    pub tool_executor: Option<Arc<dyn ToolExecutor>>,
    pub history: Vec<ChatMessage>,
    pub session_summary: Option<String>,
    pub is_continuation: bool,
    pub working_directory: Option<PathBuf>,
    pub provider_session_id: Option<String>,
    /// Extra instructions appended to the system prompt (the mediation teaching section).
    pub extra_instructions: Option<String>,
    /// The structured continuation context, for backends that declare
    /// `supports_structured_continuation_context`
    /// (`docs/reference/backends.md#56-continuation-context`).
    pub continuation: Option<crate::continuation::ContinuationContext>,
    /// The caller's `output_schema`: a backend that can constrain the model's answer to it
    /// does so; the engine checks the answer either way (`crate::structured`).
    pub output_schema: Option<crate::structured::OutputSchema>,
    /// The first continuation of a fork made at its parent's latest turn:
    /// `provider_session_id` is the parent's, and a backend that resumes provider sessions
    /// resumes it as a new one, leaving the parent's alone (the Claude Code CLI's
    /// `--fork-session`).
    pub fork_provider_session: bool,
    /// The model, effort and budget of this execution (settled by the engine against the
    /// operator's policy).
    pub spend: crate::spend::CallSettings,
}

impl BackendRequest {
    /// The request of a new session's first execution (`agent_run_task`, `agent_verify_task`):
    /// `task` under `profile`'s system prompt in `working_directory`, with no history, provider
    /// session or continuation context, and no tools, extra instructions or output schema (a
    /// caller that uses those sets them).
    pub fn first_execution(
        session_id: String,
        profile: Profile,
        task: String,
        max_turns: u32,
        working_directory: PathBuf,
        spend: crate::spend::CallSettings,
    ) -> Self {
        Self {
            session_id,
            profile,
            system_prompt: profile.system_prompt(),
            task,
            max_turns,
            tools: Vec::new(),
            tool_executor: None,
            history: Vec::new(),
            session_summary: None,
            is_continuation: false,
            working_directory: Some(working_directory),
            provider_session_id: None,
            extra_instructions: None,
            continuation: None,
            output_schema: None,
            fork_provider_session: false,
            spend,
        }
    }
}

impl std::fmt::Debug for BackendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRequest")
            .field("session_id", &self.session_id)
            .field("profile", &self.profile)
            .field("max_turns", &self.max_turns)
            .field("tools", &self.tools.len())
            .field("history", &self.history.len())
            .field("is_continuation", &self.is_continuation)
            .finish_non_exhaustive()
    }
}

/// The normalised result of one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendOutput {
    pub output_text: String,
    /// The messages a tool loop added after the user's message (tool calls, results, the final
    /// answer), each `{"role", "content": [blocks]}`, for continuations to replay; `None` when
    /// the execution called no tool or did not end with an answer.
    pub transcript: Option<Vec<Value>>,
    pub turn_count: u32,
    pub stop_reason: Option<String>,
    pub warnings: Vec<String>,
    pub usage: Option<Usage>,
    pub provider_session_id: Option<String>,
}

/// What kind of failure a backend saw, so that verification can say whether retrying or a
/// fallback verifier makes sense (`docs/reference/verification.md#7-unavailable-results`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureKind {
    #[default]
    Unspecified,
    /// The request or process ran out of time.
    Timeout,
    /// The provider could not be reached.
    Connection,
    /// The provider answered with this HTTP status.
    HttpStatus(u16),
    /// The caller cancelled the execution.
    Cancelled,
    /// The execution lost its session lease (another execution holds the lock, it was cleared,
    /// or it could not be renewed before it could expire) and was stopped
    /// (`docs/reference/sessions.md#4-locking`).
    LeaseLost,
}

/// A classified backend failure: the code and message that reach the envelope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExecutionError {
    pub code: ErrorCode,
    pub message: String,
    pub kind: FailureKind,
    /// The error's `details` in the envelope and the `error_event` (`null` when `None`).
    pub details: Option<serde_json::Value>,
}

impl ExecutionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind: FailureKind::Unspecified,
            details: None,
        }
    }

    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_kind(mut self, kind: FailureKind) -> Self {
        self.kind = kind;
        self
    }

    /// The run was cancelled through its [`CancellationToken`].
    pub fn cancelled() -> Self {
        Self::new(ErrorCode::ProviderRuntimeError, "Execution cancelled")
            .with_kind(FailureKind::Cancelled)
    }
}

/// Capability flags (`docs/reference/backends.md#2-capabilities`); all false by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub supports_downstream_tools: bool,
    pub supports_structured_tool_use: bool,
    pub supports_native_multiturn: bool,
    pub supports_rich_stop_reason: bool,
    pub supports_structured_messages: bool,
    pub supports_workspace_assumptions: bool,
    pub supports_limited_downstream_tools: bool,
    pub supports_structured_continuation_context: bool,
    pub supports_continuation_window_policy: bool,
    pub supports_execution_mediation: bool,
    pub supports_mediated_action_results: bool,
    pub supports_bounded_mediated_workflows: bool,
    pub supports_mediation_policy_profiles: bool,
    /// The backend hands allowlisted federated servers to its own MCP client (the Claude Code
    /// CLI's `--mcp-config`), so the model calls them natively (an addition).
    pub supports_native_mcp_servers: bool,
    /// The backend prices each model call itself and stops between calls at a budget (the
    /// Messages API): a USD budget needs a price and a token budget can be held
    /// (`docs/reference/tools.md#18-budgets-and-models`).
    pub prices_model_calls: bool,
}

/// An execution backend: one call per run, continue or verify.
#[async_trait]
pub trait ExecutionBackend: Send + Sync + 'static {
    /// `api` or `claude_code`.
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Runs the request. Must return promptly with [`ExecutionError::cancelled`] once
    /// `ctx.cancel` fires, abandoning in-flight work.
    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError>;
}

// ---------------------------------------------------------------------------------------------
// Tool providers
// ---------------------------------------------------------------------------------------------

/// Where a tool call comes from, for auditing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallContext {
    pub session_id: String,
    pub turn_index: i64,
    pub profile: Profile,
    pub working_directory: Option<PathBuf>,
}

/// A source of tools the model may call (federated servers, built-in workspace tools).
#[async_trait]
pub trait ToolProvider: Send + Sync + 'static {
    /// The tools a session of `profile` may see.
    fn visible_tools(&self, profile: Profile) -> Vec<ToolDefinition>;

    /// Whether these are federated (downstream MCP) tools: only those are listed in the
    /// `downstream_tool_catalog_resolved` event. Built-in tools answer false.
    fn federated(&self) -> bool {
        true
    }

    /// Calls a tool; `Err` is reported to the model as `Error: <text>`.
    async fn call(&self, ctx: &ToolCallContext, name: &str, input: Value)
    -> Result<String, String>;
}

// ---------------------------------------------------------------------------------------------
// Mediation
// ---------------------------------------------------------------------------------------------

/// One execution's output, offered to mediation (`docs/reference/mediation.md#3-processing-order`).
#[derive(Debug, Clone, Copy)]
pub struct MediationRequest<'a> {
    pub session_id: &'a str,
    /// The execution's resulting turn count (the index of every mediation event).
    pub turn_index: i64,
    pub profile: Profile,
    pub working_directory: Option<&'a Path>,
    pub output_text: &'a str,
    /// The backend's `supports_bounded_mediated_workflows`.
    pub workflows_supported: bool,
    /// False when the request withheld tools (`allow_tools: false`): every request is then
    /// rejected as if federation were inactive.
    pub tools_allowed: bool,
}

/// Runtime-mediated execution of tool requests written in a backend's text output.
#[async_trait]
pub trait OutputMediator: Send + Sync + 'static {
    /// Processes the blocks in `request.output_text`, writing the mediation events; returns
    /// the envelope warnings (one per rejected request).
    async fn mediate(
        &self,
        request: MediationRequest<'_>,
        ctx: &ExecContext,
    ) -> Result<Vec<String>, StoreError>;

    /// A prompt section teaching the model the block format and the tools it may request,
    /// when mediation is enabled and something could be approved.
    fn prompt_section(&self, profile: Profile) -> Option<String>;
}

// ---------------------------------------------------------------------------------------------
// Directory policy
// ---------------------------------------------------------------------------------------------

/// A denied or invalid path: the code and exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyViolation {
    pub code: ErrorCode,
    pub message: String,
}

impl PolicyViolation {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Working-directory and attachment policy (`docs/reference/policy.md#3-working-directory`).
pub trait WorkspacePolicy: Send + Sync + 'static {
    /// The canonical server working directory.
    fn cwd(&self) -> &Path;

    /// Resolves a requested working directory (or the CWD) and checks the allowlist.
    fn resolve_working_directory(
        &self,
        requested: Option<&str>,
    ) -> Result<PathBuf, PolicyViolation>;

    /// Checks one attachment: it must exist and its parent must be allowed. This decides the
    /// error message only; what is read is decided by [`read_evidence`](Self::read_evidence).
    fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation>;

    /// Re-resolves a session's stored working directory against the policy as it is now,
    /// before a continuation runs in it: it must still be inside the allowed directories and,
    /// for an adapter that sees a file system, still exist as a directory.
    fn reresolve_working_directory(&self, stored: &str) -> Result<PathBuf, PolicyViolation> {
        self.resolve_working_directory(Some(stored))
    }

    /// Whether an evidence path exists (relative paths against the CWD).
    fn path_exists(&self, path: &str) -> bool;

    /// Reads evidence or attachment paths within `budget` bytes in total, returning their
    /// contents and a warning per truncated or unreadable path. Each path is resolved and
    /// checked against the allowed directories again as it is opened: one outside is the
    /// policy error, and nothing is returned. Blocking: the engine calls it off the async
    /// threads.
    fn read_evidence(
        &self,
        paths: &[String],
        budget: usize,
    ) -> Result<(Vec<crate::evidence::Evidence>, Vec<String>), PolicyViolation>;
}

// ---------------------------------------------------------------------------------------------
// Execution context: cancellation and progress
// ---------------------------------------------------------------------------------------------

/// Receives progress messages (each ≤ 200 characters) at every stage of a run.
pub trait ProgressSink: Send + Sync {
    fn report(&self, message: &str);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _message: &str) {}
}

/// Tool names in steps and their progress messages are cut to this many characters (a name
/// comes from the model or a downstream server).
pub const MAX_STEP_TOOL_CHARS: usize = 128;

/// A step of an execution that a backend observed as it happened (the Claude Code CLI's
/// streamed output, `docs/reference/events.md`): [`ExecContext::step`] reports it as progress
/// and hands it to the context's [`StepSink`], through which the engine records it as an event
/// of the execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendStep {
    /// The model began turn `turn` (1-based, counted within the execution).
    ModelTurn { turn: u32 },
    /// In turn `turn`, the model asked for the tool `tool`.
    ToolUse { turn: u32, tool: String },
}

impl BackendStep {
    /// The progress message of the step.
    pub fn progress_message(&self) -> String {
        match self {
            Self::ModelTurn { turn } => format!("model turn {turn}"),
            Self::ToolUse { turn, tool } => format!(
                "model turn {turn}: tool use {}",
                crate::text::truncate_chars(tool, MAX_STEP_TOOL_CHARS)
            ),
        }
    }
}

/// Receives the [`BackendStep`]s of one execution. Must not block: called from the code that
/// reads the backend's output.
pub trait StepSink: Send + Sync {
    fn record(&self, step: BackendStep);
}

/// Per-call context: cancellation, progress and (while the engine runs a backend) the sink of
/// the execution's steps.
#[derive(Clone)]
pub struct ExecContext {
    pub cancel: CancellationToken,
    pub progress: Arc<dyn ProgressSink>,
    pub steps: Option<Arc<dyn StepSink>>,
}

impl Default for ExecContext {
    fn default() -> Self {
        Self {
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            steps: None,
        }
    }
}

impl ExecContext {
    pub fn new(cancel: CancellationToken, progress: Arc<dyn ProgressSink>) -> Self {
        Self {
            cancel,
            progress,
            steps: None,
        }
    }

    /// The same context, with its steps going to `steps`.
    #[must_use]
    pub fn with_steps(mut self, steps: Arc<dyn StepSink>) -> Self {
        self.steps = Some(steps);
        self
    }

    pub fn report(&self, message: &str) {
        self.progress
            .report(crate::text::truncate_chars(message, 200));
    }

    /// Reports `step` as progress and hands it to the step sink, if any.
    pub fn step(&self, step: BackendStep) {
        self.report(&step.progress_message());
        if let Some(sink) = &self.steps {
            sink.record(step);
        }
    }
}

#[cfg(test)]
mod usage_tests {
    use super::Usage;

    #[test]
    fn usage_from_a_provider_saturates_instead_of_overflowing() {
        let huge = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX - 1,
            cache_creation_input_tokens: Some(u64::MAX),
            cache_read_input_tokens: None,
            total_cost_usd: None,
        };
        let mut total = huge.clone();
        total.add(&huge);
        assert_eq!(total.input_tokens, u64::MAX);
        assert_eq!(total.output_tokens, u64::MAX);
        assert_eq!(total.cache_creation_input_tokens, Some(u64::MAX));
        assert_eq!(total.cache_read_input_tokens, None);
    }
}
