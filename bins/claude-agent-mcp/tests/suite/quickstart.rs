//! Smoke test: the quickstart example (`examples/quickstart.rs`) runs end to end against the
//! server binary cargo built for this test run (`CARGO_BIN_EXE_claude-agent-mcp`), never a
//! stale one.
//!
//! The example's source is compiled into this test as a module and its functions are called
//! directly, with a buffer instead of stdout. That tests exactly the code a newcomer runs,
//! without a nested `cargo run` or `cargo build` (which would resolve features for that package
//! alone, rebuilding part of the dependency tree). The example's own `main` builds the server
//! itself (`build_server`).

use std::path::Path;

// The example's `main` and `build_server` are not called from here.
#[allow(dead_code)]
#[path = "../../../../examples/quickstart.rs"]
mod example;

#[tokio::test]
async fn quickstart_runs_end_to_end() {
    let mut out = Vec::new();
    let result = example::run_quickstart(Path::new(crate::support::BIN), &mut out)
        .await
        .map_err(|e| e.to_string());
    let transcript = String::from_utf8_lossy(&out);
    assert!(
        result.is_ok(),
        "quickstart failed: {result:?}\n--- transcript:\n{transcript}"
    );
    for tool in [
        "agent_run_task",
        "agent_continue_session",
        "agent_get_session",
        "agent_list_sessions",
        "agent_verify_task",
        "agent_get_runtime_status",
    ] {
        assert!(
            transcript.contains(&format!("] {tool}\n")),
            "{tool} missing from:\n{transcript}"
        );
    }
    assert!(transcript.contains("\"verdict\": \"pass\""), "{transcript}");
    assert!(
        transcript.contains("[stand-in Messages API]"),
        "{transcript}"
    );
    assert!(
        transcript.contains("the server exited cleanly"),
        "{transcript}"
    );
}
