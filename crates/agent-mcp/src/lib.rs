//! # agent-mcp
//!
//! The MCP surface of claude-agent-mcp over rmcp: the nine published tools with their exact
//! input schemas, output schemas and annotations, the schema-validation layer, tool admission,
//! dispatch to the [`agent_core::Engine`], the status snapshot, and the stdio and streamable
//! HTTP transports.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod observability;
pub mod prompts;
pub mod resources;
pub mod server;
pub mod status;
pub mod tasks;
pub mod tools;
pub mod transport;
pub mod validate;

pub use observability::{Observability, bind_observability, serve_observability};
pub use server::AgentServer;
pub use status::RuntimeStatus;
pub use tools::ToolName;
pub use transport::{HttpOptions, TransportError, serve_http, serve_stdio};
