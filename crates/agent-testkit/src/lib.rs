//! Test support shared by the claude-agent-mcp crates.
//!
//! Only `[dev-dependencies]` name this crate. It is linked into integration tests (`tests/`),
//! never into a crate's unit tests of a crate it depends on itself, because there the crate
//! under test would be a second copy with distinct types.

pub mod fake_cli;
pub mod messages_api;
pub mod store;
