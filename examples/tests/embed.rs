//! Smoke test: the embedding example runs a task and a verification through `agent-core` with
//! the SQLite store, the Messages API backend (against the example's own stand-in) and the
//! directory policy, with no MCP involved.
//!
//! The example's source is compiled into this test as a module and its `run_embed` is called
//! directly, with a buffer instead of stdout: this is exactly the code `cargo run --example
//! embed` runs.

// The example's `main` is not called from here.
#[allow(dead_code)]
#[path = "../embed.rs"]
mod embed;

#[tokio::test]
async fn embedding_runs_a_task_and_a_verification() {
    let mut out = Vec::new();
    let result = embed::run_embed(&mut out).await.map_err(|e| e.to_string());
    let transcript = String::from_utf8_lossy(&out);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => panic!("embed failed: {e}\n--- transcript:\n{transcript}"),
    };

    assert!(outcome.run.ok, "{transcript}");
    assert!(
        outcome.run.session_id.starts_with("sess_"),
        "{}",
        outcome.run.session_id
    );
    assert_eq!(
        outcome.run.result["output_text"]
            .as_str()
            .map(|t| t.starts_with("[stand-in Messages API]")),
        Some(true),
        "{transcript}"
    );
    // The run is durable: its events were read back from SQLite.
    assert!(outcome.run_events >= 4, "{transcript}");

    assert!(outcome.verify.ok, "{transcript}");
    assert_eq!(outcome.verify.result["verdict"], "pass", "{transcript}");
    assert_eq!(
        outcome.verify.result["decision"], "verified",
        "{transcript}"
    );
    assert_ne!(outcome.verify.session_id, outcome.run.session_id);
    assert!(transcript.contains("[stand-in Messages API] listening on http://127.0.0.1:"));
}
