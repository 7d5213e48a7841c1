//! Integration tests: spawn the real binary and talk MCP to it through the rmcp client, with
//! wiremock standing in for the Anthropic Messages API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
mod support;
