//! The MCP task state port ([`TaskStore`]): MCP tasks (SEP-2663) and the registry of tool calls
//! in flight, kept where every node of a fleet reads them (`docs/scaling.md`), so that
//! `tasks/get`, `tasks/cancel` and `notifications/cancelled` work through any node.
//!
//! A task runs on the node that received its `tools/call` (its owner); its status, status
//! message, agent session, result and cancel request live in the store. Any node answers
//! `tasks/get` from there; `tasks/cancel` on any node records the request and, once the task
//! has named its agent session, asks the session's holder to stop through
//! [`SessionStore::request_cancel`](crate::SessionStore::request_cancel) (which the engine polls
//! every [`CANCEL_POLL_PERIOD`](crate::engine::CANCEL_POLL_PERIOD)). A cancel recorded before the
//! session is named is seen by the owner when it names it.
//!
//! The registry of requests in flight does the same for `notifications/cancelled`: a
//! long-running call over HTTP is registered under its transport session and JSON-RPC request
//! id ([`RequestKey`]); a cancellation received by any node finds the agent session there.
//!
//! Every value from outside is bounded here: ids ([`MAX_TASK_ID_BYTES`], [`MAX_REQUEST_KEY_BYTES`]),
//! status messages ([`MAX_TASK_STATUS_MESSAGE_BYTES`]), results ([`MAX_TASK_RESULT_BYTES`]), and
//! every row expires ([`TaskStore::purge_expired`]).

pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::ports::StoreError;
use crate::text::truncate_bytes;
use crate::time::Timestamp;

/// The longest task id a store accepts, in bytes (the server makes 36-character UUIDs; a
/// client's `tasks/get` with a longer id is an unknown task without a store read).
pub const MAX_TASK_ID_BYTES: usize = 128;

/// The longest status message a store keeps, in bytes: a longer one is cut at a character
/// boundary when it is written and again when it is read.
pub const MAX_TASK_STATUS_MESSAGE_BYTES: usize = 1024;

/// A status message as every store writes and reads it: cut to
/// [`MAX_TASK_STATUS_MESSAGE_BYTES`] at a character boundary.
pub fn bounded_status_message(message: &str) -> &str {
    truncate_bytes(message, MAX_TASK_STATUS_MESSAGE_BYTES)
}

/// The largest task result a store keeps (its JSON text), in bytes: a larger one is refused
/// with an error, and the server settles the task `failed` with a message naming the session.
pub const MAX_TASK_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// The longest part of a [`RequestKey`] (client key or request id), in bytes.
pub const MAX_REQUEST_KEY_BYTES: usize = 256;

/// The longest cancel reason kept for a request in flight, in bytes (as for sessions).
pub const MAX_REQUEST_CANCEL_REASON_BYTES: usize = crate::ports::MAX_CANCEL_REASON_BYTES;

/// A request's cancel reason as every store writes and reads it: cut to
/// [`MAX_REQUEST_CANCEL_REASON_BYTES`] at a character boundary.
pub fn bounded_request_cancel_reason(reason: &str) -> &str {
    truncate_bytes(reason, MAX_REQUEST_CANCEL_REASON_BYTES)
}

/// How many expired rows one [`TaskStore::purge_expired`] call deletes at most.
pub const PURGE_BATCH: u32 = 200;

/// The status of an MCP task: `working`, then one terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Working,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The stored and wire form (`working`, `completed`, `failed`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Working => "working",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        self != TaskState::Working
    }
}

/// A task to create: `working`, owned by `owner_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// At most [`MAX_TASK_ID_BYTES`]; unique.
    pub task_id: String,
    /// The tool the task runs (`agent_run_task`, ...).
    pub tool_name: String,
    /// The node id of the process that runs it.
    pub owner_node: String,
    pub status_message: Option<String>,
    /// How long the task is kept after its creation while working, and after it settles.
    pub ttl: Duration,
    pub poll_interval: Option<Duration>,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub task_id: String,
    pub tool_name: String,
    pub owner_node: String,
    pub status: TaskState,
    pub status_message: Option<String>,
    /// The agent session the task runs, once named.
    pub session_id: Option<String>,
    /// When settled: the tool result (`completed`) or the error object (`failed`).
    pub result: Option<Value>,
    /// Whether `tasks/cancel` was received (through any node).
    pub cancel_requested: bool,
    pub ttl: Duration,
    pub poll_interval: Option<Duration>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// After this instant the task is gone ([`TaskStore::get_task`] answers `None`).
    pub expires_at: Timestamp,
}

/// A tool call in flight: the client's transport session (`Mcp-Session-Id`) and the JSON-RPC
/// request id (in a form that tells numbers from strings). Both at most
/// [`MAX_REQUEST_KEY_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub client_key: String,
    pub request_id: String,
}

impl RequestKey {
    /// `None` when either part is empty or longer than [`MAX_REQUEST_KEY_BYTES`].
    pub fn new(client_key: impl Into<String>, request_id: impl Into<String>) -> Option<Self> {
        let key = Self {
            client_key: client_key.into(),
            request_id: request_id.into(),
        };
        let fits = |s: &str| !s.is_empty() && s.len() <= MAX_REQUEST_KEY_BYTES;
        (fits(&key.client_key) && fits(&key.request_id)).then_some(key)
    }
}

/// What [`TaskStore::cancel_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCancel {
    /// No such request in flight (never registered, finished, or expired).
    NotFound,
    /// The cancel request is recorded; the agent session, when the call has named it (the
    /// caller then asks the session's holder to stop).
    Recorded { session_id: Option<String> },
}

/// MCP task state and the registry of requests in flight, shared by every node on one store.
/// Every method commits before it returns; none blocks on another node.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Inserts a `working` task, expiring `ttl` after now. An id over [`MAX_TASK_ID_BYTES`] is
    /// an error. Also purges expired rows ([`purge_expired`](Self::purge_expired)).
    async fn create_task(&self, task: &NewTask) -> Result<TaskRecord, StoreError>;

    /// The task, or `None` when unknown, expired, or its id is over [`MAX_TASK_ID_BYTES`].
    async fn get_task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// Progress of a `working` task, by its owner: a new status message (when `Some`), and its
    /// agent session (when `Some`; named once, a later value is ignored). Answers whether a
    /// cancel was requested; `None` when the task is gone or already settled.
    async fn update_task(
        &self,
        task_id: &str,
        status_message: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Option<bool>, StoreError>;

    /// Settles a `working` task with a terminal `status` and `result` (its JSON at most
    /// [`MAX_TASK_RESULT_BYTES`], else an error and nothing changes); the task is then kept for
    /// its `ttl` after now. False (nothing changes) when the task is gone or already settled.
    async fn settle_task(
        &self,
        task_id: &str,
        status: TaskState,
        result: Option<&Value>,
        status_message: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// `tasks/cancel`: records a cancel request on a `working` task (a settled one is left as
    /// it is). Answers the task as it is now; `None` when unknown or expired.
    async fn request_task_cancel(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// Registers a long-running call in flight on `owner_node`, kept at most `ttl` (the owner
    /// forgets it when the call ends). Registering a key again replaces the earlier entry.
    async fn register_request(
        &self,
        key: &RequestKey,
        owner_node: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The call names its agent session (once). Answers the cancel reason when a cancellation
    /// was recorded before (the owner then asks the session to stop); `None` otherwise,
    /// including when the request is not registered.
    async fn name_request_session(
        &self,
        key: &RequestKey,
        session_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// `notifications/cancelled` for `key`, received by any node: records the cancellation
    /// (the first reason stays, cut to [`MAX_REQUEST_CANCEL_REASON_BYTES`]) on a registered
    /// request.
    async fn cancel_request(
        &self,
        key: &RequestKey,
        reason: &str,
    ) -> Result<RequestCancel, StoreError>;

    /// The call ended: its entry is removed.
    async fn forget_request(&self, key: &RequestKey) -> Result<(), StoreError>;

    /// Deletes at most `limit` tasks and requests whose expiry has passed; answers how many.
    async fn purge_expired(&self, limit: u32) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_only_working_is_not_terminal() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()), Some(state));
            assert_eq!(state.is_terminal(), state != TaskState::Working);
        }
        assert_eq!(TaskState::parse("input_required"), None);
    }

    #[test]
    fn request_keys_are_bounded() {
        assert!(RequestKey::new("s", "n:1").is_some());
        assert!(RequestKey::new("", "n:1").is_none());
        assert!(RequestKey::new("s", "").is_none());
        assert!(RequestKey::new("x".repeat(MAX_REQUEST_KEY_BYTES), "n:1").is_some());
        assert!(RequestKey::new("x".repeat(MAX_REQUEST_KEY_BYTES + 1), "n:1").is_none());
        assert!(RequestKey::new("s", "y".repeat(MAX_REQUEST_KEY_BYTES + 1)).is_none());
    }
}
