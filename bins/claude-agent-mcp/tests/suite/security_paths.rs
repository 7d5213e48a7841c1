//! Attacks on the directory boundary from a client (issue #12): evidence and attachments that
//! name files outside the allowed directories, symlinks, FIFOs, oversized path lists, and
//! continuations whose working directory is gone or no longer allowed
//! (`docs/verification.md`, `docs/configuration.md`).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::claude_code::Cli;
use crate::support::*;

const SECRET: &str = "-----BEGIN OPENSSH PRIVATE KEY----- s3cr3t-k3y-m4t3r14l";

/// A secret file in a directory of its own, outside every allowed directory.
fn secret_outside() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap().join("id_rsa");
    std::fs::write(&path, SECRET).unwrap();
    (dir, path_str(&path))
}

/// Fails the test if the call takes longer than a few seconds (a blocked read).
async fn call_promptly(server: &Server, tool: &str, args: Value) -> Value {
    match tokio::time::timeout(Duration::from_secs(20), server.call(tool, args)).await {
        Ok(v) => v,
        Err(_) => panic!("{tool} did not answer within 20 s"),
    }
}

fn assert_policy_denied(v: &Value, path: &str) {
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["session_id"], json!(""), "{v}");
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"), "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        json!(format!(
            "Attachment '{path}' is outside allowed directories"
        )),
        "{v}"
    );
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[tokio::test]
async fn verify_never_reads_a_secret_hidden_by_the_not_found_quirk() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass\nFINDINGS:\n- ok\n").await;
    let (_keep, secret) = secret_outside();
    let server = env.start().await;
    for fail_closed in [false, true] {
        let v = call_promptly(
            &server,
            "agent_verify_task",
            json!({
                "task": "Verify the key file id_rsa is well formed",
                "evidence_paths": [secret, format!("{secret}.x")],
                "fail_closed": fail_closed,
            }),
        )
        .await;
        if fail_closed {
            // The missing sibling still ends the call first (`missing_evidence`).
            assert_eq!(v["errors"][0]["code"], json!("missing_evidence"), "{v}");
        } else {
            assert_policy_denied(&v, &secret);
        }
    }
    let bodies = env.requests().await;
    assert!(
        bodies.iter().all(|b| !b.to_string().contains("s3cr3t")),
        "the secret reached the model: {bodies:?}"
    );
    assert!(bodies.is_empty(), "no backend call: {bodies:?}");
    assert_eq!(env.session_count().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn restricted_verify_never_reads_a_secret_hidden_by_the_not_found_quirk() {
    let mut cli = Cli::new("text").await;
    cli.env.set("CLAUDE_AGENT_MCP_MODE", "apntalk_verification");
    cli.script("stdout", "VERDICT: pass\nFINDINGS:\n- ok\n");
    let (_keep, secret) = secret_outside();
    let server = cli.env.start().await;
    let v = call_promptly(
        &server,
        "agent_verify_task",
        json!({
            "task": "Verify the key file id_rsa is well formed",
            "evidence_paths": [secret, format!("{secret}.x")],
            "fail_closed": false,
        }),
    )
    .await;
    assert_policy_denied(&v, &secret);
    assert!(!cli.dir.join("argv.1").exists(), "the CLI was not called");
    assert_eq!(cli.env.session_count().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_symlink_inside_pointing_outside_is_refused() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass\nFINDINGS:\n- ok\n").await;
    let (_keep, secret) = secret_outside();
    std::os::unix::fs::symlink(&secret, env.cwd().join("innocent.txt")).unwrap();
    let server = env.start().await;
    let v = call_promptly(
        &server,
        "agent_verify_task",
        json!({"task": "Verify innocent.txt is well formed", "evidence_paths": ["innocent.txt"], "fail_closed": false}),
    )
    .await;
    assert_policy_denied(&v, "innocent.txt");
    let v = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "Summarise the attachment", "attachments": ["innocent.txt"]}),
    )
    .await;
    assert_policy_denied(&v, "innocent.txt");
    let bodies = env.requests().await;
    assert!(bodies.is_empty(), "no backend call: {bodies:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_fifo_is_not_read_and_blocks_nothing() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass\nFINDINGS:\n- ok\n").await;
    mkfifo(&env.cwd().join("pipe"));
    std::fs::write(env.cwd().join("real.txt"), "real evidence\n").unwrap();
    let server = env.start().await;
    let v = call_promptly(
        &server,
        "agent_verify_task",
        json!({"task": "Verify real.txt says real evidence", "evidence_paths": ["pipe", "real.txt"], "fail_closed": false}),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("Evidence not readable: pipe (not a regular file)"),
        "{v}"
    );
    let v = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "Summarise", "attachments": ["pipe"]}),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert!(
        v["warnings"]
            .to_string()
            .contains("Evidence not readable: pipe (not a regular file)"),
        "{v}"
    );
    let bodies = env.requests().await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].to_string().contains("real evidence"));
    assert!(bodies[1].to_string().contains("=== pipe (not readable"));
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_paths_are_refused_at_once() {
    let env = TestEnv::new().await;
    env.reply_text("ok").await;
    let server = env.start().await;
    let many: Vec<String> = (0..10_000).map(|i| format!("missing-{i}.txt")).collect();
    let started = std::time::Instant::now();
    let v = call_promptly(
        &server,
        "agent_verify_task",
        json!({"task": "Verify report.txt", "evidence_paths": many}),
    )
    .await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["errors"][0]["code"], json!("validation_error"), "{v}");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("evidence_paths: at most 64 paths are accepted, got 10000"),
        "{msg}"
    );
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    let v = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "t", "attachments": many}),
    )
    .await;
    assert_eq!(v["errors"][0]["code"], json!("validation_error"), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("attachments: at most 64 paths are accepted, got 10000"),
        "{v}"
    );
    // A single path longer than the limit.
    let long = "a/".repeat(3000);
    let v = call_promptly(
        &server,
        "agent_verify_task",
        json!({"task": "Verify report.txt", "evidence_paths": [long]}),
    )
    .await;
    assert_eq!(v["errors"][0]["code"], json!("validation_error"), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("evidence_paths.0: a path is at most 4096 bytes, got 6000"),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(env.requests().await.is_empty());
    assert_eq!(env.session_count().await, 0);
    server.shutdown().await;
}

/// Status, lock and request count of a session, straight from the database.
async fn session_state(
    env: &TestEnv,
    sid: &str,
) -> (Option<String>, Option<String>, Option<String>) {
    (
        env.column(sid, "status").await,
        env.column(sid, "locked_by").await,
        env.column(sid, "request_count").await,
    )
}

#[tokio::test]
async fn continuing_in_a_deleted_working_directory_runs_nothing() {
    let env = TestEnv::new().await;
    env.reply_text("first").await;
    let project = env.cwd().join("project");
    std::fs::create_dir(&project).unwrap();
    let server = env.start().await;
    let run = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "t", "working_directory": "project"}),
    )
    .await;
    assert_eq!(run["ok"], json!(true), "{run}");
    let sid = run["session_id"].as_str().unwrap().to_owned();
    let before = session_state(&env, &sid).await;
    let events_before = env.events(&sid).await.len();
    std::fs::remove_dir(&project).unwrap();
    let v = call_promptly(
        &server,
        "agent_continue_session",
        json!({"session_id": sid, "message": "again"}),
    )
    .await;
    let msg = format!(
        "working_directory '{}' no longer exists or is not a directory",
        path_str(&project)
    );
    assert_eq!(
        v,
        json!({"ok": false, "session_id": sid, "status": "failed", "workflow": "continue_session", "profile": "general",
               "summary": msg, "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "policy_denied", "message": msg, "details": null}]})
    );
    assert_eq!(
        env.requests().await.len(),
        1,
        "only the first run reached the API"
    );
    assert_eq!(session_state(&env, &sid).await, before);
    assert_eq!(before.0.as_deref(), Some("completed"));
    assert_eq!(before.1, None);
    assert_eq!(
        env.events(&sid).await.len(),
        events_before,
        "no event recorded"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn continuing_outside_a_narrowed_allowlist_runs_nothing() {
    let mut env = TestEnv::new().await;
    env.reply_text("first").await;
    let project = env.cwd().join("project");
    let other = env.cwd().join("other");
    std::fs::create_dir(&project).unwrap();
    std::fs::create_dir(&other).unwrap();
    let server = env.start().await;
    let run = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "t", "working_directory": "project"}),
    )
    .await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    server.shutdown().await;
    let before = session_state(&env, &sid).await;
    // Same state directory, a narrower allowlist.
    env.set("CLAUDE_AGENT_MCP_ALLOWED_DIRS", &path_str(&other));
    let server = env.start().await;
    let v = call_promptly(
        &server,
        "agent_continue_session",
        json!({"session_id": sid, "message": "again"}),
    )
    .await;
    let msg = format!(
        "working_directory '{}' is not in the server's allowed_dirs. Allowed: ['{}']",
        path_str(&project),
        path_str(&other)
    );
    assert_eq!(
        v["errors"],
        json!([{"code": "policy_denied", "message": msg, "details": null}]),
        "{v}"
    );
    assert_eq!(v["session_id"], json!(sid));
    assert_eq!(
        env.requests().await.len(),
        1,
        "only the first run reached the API"
    );
    assert_eq!(session_state(&env, &sid).await, before);
    server.shutdown().await;
}

#[tokio::test]
async fn claude_code_never_runs_in_a_deleted_working_directory() {
    let cli = Cli::new("text").await;
    cli.script("stdout", "done");
    let project = cli.env.cwd().join("project");
    std::fs::create_dir(&project).unwrap();
    let server = cli.env.start().await;
    let run = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "t", "working_directory": "project"}),
    )
    .await;
    assert_eq!(run["ok"], json!(true), "{run}");
    assert_eq!(
        std::fs::read_to_string(cli.dir.join("cwd.1"))
            .unwrap()
            .trim(),
        path_str(&project)
    );
    let sid = run["session_id"].as_str().unwrap().to_owned();
    let before = session_state(&cli.env, &sid).await;
    std::fs::remove_dir(&project).unwrap();
    let v = call_promptly(
        &server,
        "agent_continue_session",
        json!({"session_id": sid, "message": "again"}),
    )
    .await;
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"), "{v}");
    assert!(
        !cli.dir.join("argv.2").exists(),
        "the CLI was not run again"
    );
    assert_eq!(session_state(&cli.env, &sid).await, before);
    // A new run in a directory that does not exist never falls back to the server's CWD.
    let v = call_promptly(
        &server,
        "agent_run_task",
        json!({"task": "t", "working_directory": "project"}),
    )
    .await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert!(!cli.dir.join("argv.2").exists(), "the CLI was not run");
    server.shutdown().await;
}
