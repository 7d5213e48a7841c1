//! # agent-core
//!
//! The domain of claude-agent-mcp without any I/O crate: identifiers, statuses, the canonical
//! response envelope, error codes, session events, execution profiles, verification verdicts,
//! the ports that storage, backends, policy and tool providers implement, and the
//! [`Engine`](engine::Engine) that runs, continues and verifies tasks.
//!
//! Another Rust program can embed the engine directly:
//!
//! ```ignore
//! let engine = Engine::new(store, backend, policy, EngineConfig::default());
//! let envelope = engine.run_task(RunTaskRequest::new("Summarise README.md"), &ExecContext::default()).await;
//! assert!(envelope.ok);
//! ```

pub mod continuation;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod event;
pub mod evidence;
pub mod ids;
pub mod model;
pub mod ports;
pub mod preflight;
pub mod profile;
pub mod request;
pub mod text;
pub mod time;
pub mod verdict;
pub mod verification;

pub use engine::{Engine, EngineConfig};
pub use envelope::{ArtifactRef, Envelope, EnvelopeStatus};
pub use error::{ErrorCode, ErrorObject};
pub use event::{Event, EventType, StoredEvent};
pub use model::{Profile, SessionStatus, Workflow};
pub use ports::{
    ArtifactRecord, BackendOutput, BackendRequest, Capabilities, ChatMessage, ChatRole,
    ExecContext, ExecutionBackend, ExecutionError, FailureKind, Finish, LockOutcome, NewArtifact,
    NewSession, NoProgress, PolicyViolation, ProgressSink, SessionListItem, SessionRecord,
    SessionStore, StoreError, ToolCallContext, ToolDefinition, ToolExecutor, ToolProvider, Usage,
    WorkspacePolicy,
};
pub use request::{
    CancelSessionRequest, ContinueSessionRequest, GetSessionRequest, ListSessionsRequest,
    RunTaskRequest, VerifyTaskRequest,
};
pub use time::Timestamp;

/// The version reported by `--version`, MCP `initialize` and the status tool (`beyond.md` §1).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The MCP server name.
pub const SERVER_NAME: &str = "claude-agent-mcp";
