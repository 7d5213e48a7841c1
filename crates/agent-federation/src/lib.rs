//! # agent-federation
//!
//! Downstream MCP federation for claude-agent-mcp (`docs/reference/federation.md#1-enablement`;
//! operator guide `docs/federation.md`): sessions of the `api`
//! backend use tools served by other MCP servers, under operator allowlists and per-profile
//! visibility.
//!
//! * [`FederationConfig::load`] reads and validates the JSON config (exact messages of
//!   `docs/federation.md#33-errors-any-one-disables-federation`).
//! * [`Federation::start`] discovers every enabled server at startup (each within its
//!   `discovery_timeout_seconds`), builds the catalog (`<server>__<tool>`, allowlist, profiles)
//!   and keeps one long-lived connection per server that has a callable tool.
//!   [`Federation::from_settings`] wraps the whole startup table of
//!   `docs/federation.md#1-enabling` (never fails); [`FederationSource`] is the configuration
//!   read once, for a caller that also needs it elsewhere ([`Federation::from_source`]).
//! * [`Federation`] implements [`agent_core::ToolProvider`]: `visible_tools(profile)` and
//!   `call(ctx, name, input)`, which checks visibility and required arguments, writes the
//!   `downstream_tool_invocation` / `downstream_tool_result` events and calls the server with
//!   a per-call timeout, restarting a dead connection once.
//! * [`Federation::status`] reports `enabled` / `active` and per-server details for logs.
//!
//! Extensions over the original (see `docs/federation.md#12-differences-from-the-original`):
//! `streamable-http` downstream servers (`url`, `headers`), `call_timeout_seconds`, connection
//! reuse with restart, and downstream `isError` results reported to the model as errors.

mod catalog;
mod config;
mod connection;
mod federation;

pub use catalog::{
    CatalogTool, MAX_TOOL_NAME_LEN, NAME_SEPARATOR, is_valid_tool_name, normalized_name,
};
pub use config::{
    DEFAULT_CALL_TIMEOUT_SECONDS, DEFAULT_DISCOVERY_TIMEOUT_SECONDS, DownstreamServerConfig,
    DownstreamTransport, FederationConfig, FederationConfigError, SUPPORTED_TRANSPORTS,
};
pub use connection::{BASE_ENV_VARS, ConnectionState, child_environment};
pub use federation::{
    Federation, FederationSource, FederationStatus, InvocationError, InvocationErrorKind,
    InvocationResult, ServerStatus,
};
