//! Test support shared by the claude-agent-mcp crates.
//!
//! Only `[dev-dependencies]` name this crate. It is linked into integration tests (`tests/`),
//! never into a crate's unit tests of a crate it depends on itself, because there the crate
//! under test would be a second copy with distinct types.
//!
//! * [`peers`]: the outside programs some tests talk to (the real Claude Code CLI, the
//!   reference MCP server), and every test-harness variable (`CLAUDE_AGENT_MCP_TEST_*`,
//!   `CLAUDE_AGENT_MCP_REQUIRE_PEERS`).
//! * [`postgres`]: a fresh PostgreSQL schema per test (`CLAUDE_AGENT_MCP_TEST_POSTGRES_URL`).
//! * [`processes`]: whether processes and process groups are gone, on Linux and macOS alike.

pub mod fake_cli;
pub mod messages_api;
pub mod peers;
pub mod postgres;
pub mod processes;
pub mod store;
pub mod tasks;
