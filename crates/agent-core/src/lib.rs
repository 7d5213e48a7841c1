//! # agent-core
//!
//! The domain of claude-agent-mcp without any I/O crate: identifiers, statuses, the canonical
//! response envelope, error codes, session events, execution profiles, verification verdicts,
//! the ports that storage, backends, policy and tool providers implement, and the
//! [`Engine`] that runs, continues and verifies tasks.
//!
//! ## Embedding the engine
//!
//! Another Rust program can drive the engine directly, with no MCP involved: build it from
//! one implementation of each port ([`SessionStore`], [`ExecutionBackend`],
//! [`WorkspacePolicy`]) and call it. The envelopes it returns are the JSON an MCP client would
//! receive ([`Envelope::to_value`]). The server plugs in `agent_store::SqliteStore`,
//! `agent_backends::MessagesApiBackend` and `agent_policy::DirectoryPolicy`;
//! `examples/embed.rs` shows exactly that. This crate depends on none of them, so the example
//! below uses small stand-ins: a backend that returns canned text, a policy that allows one
//! directory, and an in-memory store (hidden here; any [`SessionStore`] will do).
//!
//! ```
//! use std::path::{Path, PathBuf};
//! use std::sync::Arc;
//!
//! use agent_core::{
//!     BackendOutput, BackendRequest, Capabilities, Engine, EngineConfig, ErrorCode, ExecContext,
//!     ExecutionBackend, ExecutionError, PolicyViolation, Profile, RunTaskRequest,
//!     VerifyTaskRequest, WorkspacePolicy,
//! };
//! use agent_core::evidence::Evidence;
//! # use std::collections::HashMap;
//! # use std::sync::Mutex;
//! # use std::time::Duration;
//! # use agent_core::{
//! #     ArtifactRecord, ArtifactRef, Event, EventLog, Finish, ForkOutcome, ForkSession, Lease, LockOutcome, NewArtifact, NewSession, SessionListItem,
//! #     SessionRecord, SessionStatus, SessionStore, StoreError, StoredEvent, Timestamp,
//! # };
//! #
//! # /// Sessions and their events in memory (a database would go here).
//! # #[derive(Default)]
//! # struct MemoryStore {
//! #     sessions: Mutex<HashMap<String, SessionRecord>>,
//! #     events: Mutex<Vec<(String, Event)>>,
//! # }
//! #
//! # impl MemoryStore {
//! #     fn log(&self, session_id: &str, events: &[Event]) {
//! #         let mut log = self.events.lock().unwrap();
//! #         log.extend(events.iter().map(|e| (session_id.to_owned(), e.clone())));
//! #     }
//! # }
//! #
//! # #[async_trait::async_trait]
//! # impl EventLog for MemoryStore {
//! #     async fn append_events(&self, id: &str, events: &[Event]) -> Result<(), StoreError> {
//! #         self.log(id, events);
//! #         Ok(())
//! #     }
//! #     async fn events(&self, _: &str) -> Result<Vec<StoredEvent>, StoreError> { Ok(Vec::new()) }
//! # }
//! #
//! # #[async_trait::async_trait]
//! # impl SessionStore for MemoryStore {
//! #     async fn begin_session(&self, s: &NewSession, events: &[Event]) -> Result<SessionRecord, StoreError> {
//! #         let now = Timestamp::now();
//! #         let record = SessionRecord {
//! #             session_id: s.session_id.clone(), workflow: s.workflow, profile: s.profile,
//! #             provider: "claude".into(), provider_session_id: None,
//! #             status: SessionStatus::Running, working_directory: s.working_directory.clone(),
//! #             created_at: now, updated_at: now, last_activity_at: now,
//! #             request_count: 1, turn_count: 0, artifact_count: 0, summary_latest: None,
//! #             locked_by: Some(s.lock_owner.clone()), lock_expires_at: Some(now.plus(s.lock_ttl)),
//! #             lock_generation: 1, fork: None, usage: Default::default(),
//! #         };
//! #         self.sessions.lock().unwrap().insert(s.session_id.clone(), record.clone());
//! #         self.log(&s.session_id, events);
//! #         Ok(record)
//! #     }
//! #     async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
//! #         Ok(self.sessions.lock().unwrap().get(id).cloned())
//! #     }
//! #     async fn list_sessions(&self, _: u32, _: Option<SessionStatus>) -> Result<Vec<SessionListItem>, StoreError> {
//! #         Ok(Vec::new())
//! #     }
//! #     async fn acquire_lock(&self, _: &str, _: &str, _: Duration) -> Result<LockOutcome, StoreError> {
//! #         Ok(LockOutcome::NotFound)
//! #     }
//! #     async fn release_lock(&self, _: &str, _: &str) -> Result<(), StoreError> { Ok(()) }
//! #     async fn begin_execution(&self, id: &str, events: &[Event]) -> Result<(), StoreError> {
//! #         self.log(id, events);
//! #         Ok(())
//! #     }
//! #     async fn finish_execution(&self, id: &str, _: &Lease, f: &Finish) -> Result<(), StoreError> {
//! #         if let Some(row) = self.sessions.lock().unwrap().get_mut(id) {
//! #             row.status = f.status;
//! #             row.locked_by = None;
//! #             row.lock_expires_at = None;
//! #         }
//! #         self.log(id, &f.events);
//! #         Ok(())
//! #     }
//! #     async fn store_artifact(&self, a: NewArtifact<'_>) -> Result<ArtifactRef, StoreError> {
//! #         Ok(ArtifactRef {
//! #             artifact_id: format!("art_{}", a.logical_name), artifact_type: a.artifact_type.into(),
//! #             logical_name: a.logical_name.into(), mime_type: a.mime_type.into(),
//! #         })
//! #     }
//! #     async fn interrupt_execution(&self, id: &str, lease: &Lease, reason: &str) -> Result<bool, StoreError> {
//! #         let mut sessions = self.sessions.lock().unwrap();
//! #         let Some(row) = sessions.get_mut(id) else { return Ok(false) };
//! #         if row.status != SessionStatus::Running || row.locked_by.as_deref().is_some_and(|o| o != lease.owner) {
//! #             return Ok(false);
//! #         }
//! #         row.status = SessionStatus::Interrupted;
//! #         row.locked_by = None;
//! #         row.lock_expires_at = None;
//! #         let event = Event::session_interrupted(row.turn_count, reason);
//! #         drop(sessions);
//! #         self.log(id, &[event]);
//! #         Ok(true)
//! #     }
//! #     async fn fork_session(&self, _: &ForkSession) -> Result<ForkOutcome, StoreError> {
//! #         Ok(ForkOutcome::NotFound)
//! #     }
//! #     async fn sweep_expired_leases(&self) -> Result<u64, StoreError> {
//! #         let now = Timestamp::now();
//! #         let mut swept = Vec::new();
//! #         for (id, row) in self.sessions.lock().unwrap().iter_mut() {
//! #             let held = row.locked_by.is_some() && row.lock_expires_at.is_none_or(|e| e > now);
//! #             if row.status == SessionStatus::Running && !held {
//! #                 let expiry = row.lock_expires_at.map(|t| t.to_storage());
//! #                 swept.push((id.clone(), Event::lease_expired(row.turn_count, row.locked_by.as_deref(), expiry.as_deref())));
//! #                 row.status = SessionStatus::Interrupted;
//! #                 row.locked_by = None;
//! #                 row.lock_expires_at = None;
//! #             }
//! #         }
//! #         for (id, event) in &swept {
//! #             self.log(id, std::slice::from_ref(event));
//! #         }
//! #         Ok(swept.len() as u64)
//! #     }
//! #     async fn recover_interrupted(&self) -> Result<u64, StoreError> { Ok(0) }
//! #     async fn read_artifact(&self, _: &str, _: &str) -> Result<Option<(ArtifactRecord, Vec<u8>)>, StoreError> {
//! #         Ok(None)
//! #     }
//! # }
//!
//! /// A backend that answers without calling any model.
//! struct CannedBackend;
//!
//! #[async_trait::async_trait]
//! impl ExecutionBackend for CannedBackend {
//!     fn name(&self) -> &'static str {
//!         "canned"
//!     }
//!
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::default()
//!     }
//!
//!     async fn execute(
//!         &self,
//!         request: BackendRequest,
//!         _ctx: &ExecContext,
//!     ) -> Result<BackendOutput, ExecutionError> {
//!         let output_text = match request.profile {
//!             // Verification asks for this layout (`agent_core::verdict`).
//!             Profile::Verification => "VERDICT: pass\nFINDINGS:\n- the summary mentions MCP\n",
//!             _ => "README.md describes an MCP server.",
//!         };
//!         Ok(BackendOutput {
//!             output_text: output_text.to_owned(),
//!             turn_count: 1,
//!             ..BackendOutput::default()
//!         })
//!     }
//! }
//!
//! /// Sessions work in one directory, and nowhere else.
//! struct OneDirectory(PathBuf);
//!
//! impl WorkspacePolicy for OneDirectory {
//!     fn cwd(&self) -> &Path {
//!         &self.0
//!     }
//!
//!     fn resolve_working_directory(&self, requested: Option<&str>) -> Result<PathBuf, PolicyViolation> {
//!         match requested {
//!             None => Ok(self.0.clone()),
//!             Some(dir) if Path::new(dir) == self.0 => Ok(self.0.clone()),
//!             Some(dir) => Err(PolicyViolation::new(ErrorCode::PolicyDenied, format!("{dir} is not allowed"))),
//!         }
//!     }
//!
//!     fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
//!         Err(PolicyViolation::new(ErrorCode::PolicyDenied, format!("no attachments: {path}")))
//!     }
//!
//!     fn path_exists(&self, path: &str) -> bool {
//!         self.0.join(path).exists()
//!     }
//!
//!     fn read_evidence(&self, paths: &[String], _budget: usize) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
//!         Err(PolicyViolation::new(ErrorCode::PolicyDenied, format!("no evidence: {paths:?}")))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let engine = Engine::new(
//!     Arc::new(MemoryStore::default()),
//!     Arc::new(CannedBackend),
//!     Arc::new(OneDirectory(std::env::temp_dir())),
//!     EngineConfig::default(),
//! );
//! let ctx = ExecContext::default(); // a cancellation token and a progress sink
//!
//! let run = engine
//!     .run_task(RunTaskRequest::new("Summarise README.md"), &ctx)
//!     .await;
//! assert!(run.ok, "{}", run.summary);
//! assert_eq!(run.result["output_text"], "README.md describes an MCP server.");
//!
//! let verify = engine
//!     .verify_task(VerifyTaskRequest::new("Verify that the summary mentions MCP"), &ctx)
//!     .await;
//! assert!(verify.ok, "{}", verify.summary);
//! assert_eq!(verify.result["verdict"], "pass");
//! # }
//! ```

pub mod child_env;
pub mod continuation;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod event;
pub mod evidence;
pub mod ids;
pub mod mcp_tasks;
pub mod model;
pub mod observe;
pub mod ports;
pub mod preflight;
pub mod profile;
pub mod pyfmt;
pub mod request;
pub mod settings;
pub mod spend;
pub mod structured;
pub mod testing;
pub mod text;
pub mod time;
pub mod verdict;
pub mod verification;

pub use engine::{Engine, EngineConfig};
pub use envelope::{ArtifactRef, Envelope, EnvelopeStatus};
pub use error::{ErrorCode, ErrorObject};
pub use event::{Event, EventType, StoredEvent};
pub use mcp_tasks::{NewTask, RequestCancel, RequestKey, TaskRecord, TaskState, TaskStore};
pub use model::{Profile, SessionStatus, Workflow};
pub use observe::{NoObserver, Observer, RunOutcome, RunReport, ToolKind};
pub use ports::{
    ArtifactRecord, BackendOutput, BackendRequest, BackendStep, Capabilities, ChatMessage,
    ChatRole, EventLog, ExecContext, ExecutionBackend, ExecutionError, FailureKind, Finish,
    ForkOrigin, ForkOutcome, ForkSession, Lease, LockOutcome, MAX_CANCEL_REASON_BYTES,
    MAX_KEPT_RESULT_BYTES, MAX_STEP_TOOL_CHARS, MediationRequest, NewArtifact, NewSession,
    NoProgress, OutputMediator, PolicyViolation, ProgressSink, SessionListItem, SessionRecord,
    SessionStore, StepSink, StoreError, StoreErrorKind, ToolCallContext, ToolDefinition,
    ToolExecutor, ToolProvider, Usage, WorkspacePolicy, bounded_cancel_reason,
};
pub use request::{
    CancelSessionRequest, ContinueSessionRequest, ForkSessionRequest, GetSessionRequest,
    ListSessionsRequest, RunTaskRequest, VerifyTaskRequest, WaitSessionRequest,
};
pub use time::Timestamp;

/// The version reported by `--version`, MCP `initialize` and the status tool
/// (`docs/reference/tools.md#1-server-identity-and-capabilities`).
///
/// The one source of the version is `[workspace.package] version` in the root `Cargo.toml`;
/// every crate inherits it and every user of the version reads this constant or
/// [`USER_AGENT`], never its own `CARGO_PKG_VERSION`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `User-Agent` the server's HTTP clients send: `claude-agent-mcp/<VERSION>`.
pub const USER_AGENT: &str = concat!("claude-agent-mcp/", env!("CARGO_PKG_VERSION"));

/// The MCP server name.
pub const SERVER_NAME: &str = "claude-agent-mcp";
