//! This package holds runnable examples for `claude-agent-mcp`; its library only has what both
//! examples share: [`serve_stand_in`]. Start with the quickstart, which needs no API key:
//!
//! ```text
//! cargo run -p claude-agent-mcp-examples --example quickstart
//! ```
//!
//! Its source is `examples/quickstart.rs`; `examples/tests/quickstart.rs` is its smoke test.

use std::io::Write;

use tokio::task::JoinHandle;

/// Serves `app`, an example's stand-in for the Anthropic Messages API (`POST /v1/messages`), on a
/// random port of 127.0.0.1 in the background and says so on `out`. Returns the base URL to give
/// the Messages API backend and the serving task (abort it when done).
pub async fn serve_stand_in(
    app: axum::Router,
    out: &mut impl Write,
) -> Result<(String, JoinHandle<()>), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    writeln!(
        out,
        "[stand-in Messages API] listening on {url}: a local fake of the Anthropic API \
         (no key checked, no network, canned answers)"
    )?;
    Ok((url, task))
}
