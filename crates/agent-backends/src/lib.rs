//! # agent-backends
//!
//! Execution backends of claude-agent-mcp: implementations of the
//! [`agent_core::ExecutionBackend`] port.
//!
//! * [`api`]: [`MessagesApiBackend`], which calls the Anthropic Messages API over HTTP
//!   (single-shot requests and the tool-use loop of `backends.md` §4).

pub mod api;

pub use api::{ApiBuildError, ApiConfig, MessagesApiBackend};
