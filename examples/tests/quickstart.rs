//! Smoke test: the quickstart example runs end to end.
//!
//! The example's source is compiled into this test as a module and its functions are called
//! directly, with a buffer instead of stdout. That tests exactly the code a newcomer runs, without
//! a nested `cargo run` (which would re-resolve features for this package alone, rebuilding part
//! of the dependency tree, and would contend for the build lock). The server binary comes from
//! `target/<profile>/claude-agent-mcp`, which `cargo test --workspace` has just built; only if it
//! is missing does the quickstart run `cargo build -p claude-agent-mcp` itself.

// The example's `main` is not called from here.
#[allow(dead_code)]
#[path = "../quickstart.rs"]
mod quickstart;

#[tokio::test]
async fn quickstart_runs_end_to_end() {
    let mut out = Vec::new();
    let server = quickstart::find_or_build_server(&mut out)
        .await
        .map_err(|e| e.to_string());
    let result = match server {
        Ok(server) => quickstart::run_quickstart(&server, &mut out)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
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
