//! This package only holds runnable examples for `claude-agent-mcp`; the library itself is
//! intentionally empty. Start with the quickstart, which needs no API key:
//!
//! ```text
//! cargo run -p claude-agent-mcp-examples --example quickstart
//! ```
//!
//! Its source is `examples/quickstart.rs`; `examples/tests/quickstart.rs` is its smoke test.
