//! agent_verify_task: evidence checks and verdict rules (`verification.md` §1–4).

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_pass_verdict_is_parsed_and_reported() {
    let env = TestEnv::new().await;
    std::fs::write(env.cwd().join("report.txt"), "all good").unwrap();
    env.reply_text("VERDICT: pass\nFINDINGS:\n- report exists\n- content matches\n")
        .await;
    let server = env.start().await;
    let v = server.call("agent_verify_task", json!({"task": "Verify report.txt", "scope": "content", "evidence_paths": ["report.txt"]})).await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["artifacts"][0]["artifact_type"],
        json!("verification-report")
    );
    assert_eq!(
        normalize_envelope(v),
        json!({"ok": true, "session_id": "<session>", "status": "completed", "workflow": "verify_task", "profile": "verification",
               "summary": "Verification pass: 2 finding(s)",
               "result": {"verdict": "pass", "findings": ["report exists", "content matches"], "contradictions": [],
                          "missing_evidence": [], "restrictions": [], "usage": {"input_tokens": 11, "output_tokens": 7}},
               "artifacts": [{"artifact_id": "<artifact>", "artifact_type": "verification-report", "logical_name": "verification-report.md", "mime_type": "text/markdown"}],
               "warnings": [], "errors": []})
    );
    let body = &env.requests().await[0];
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Task to verify: Verify report.txt\nScope: content\nEvidence paths:\n  - report.txt\n\nPlease evaluate the evidence and provide a structured verification result."}])
    );
    let system = body["system"].as_str().unwrap();
    for label in [
        "VERDICT:",
        "FINDINGS:",
        "CONTRADICTIONS:",
        "MISSING_EVIDENCE:",
        "RESTRICTIONS:",
    ] {
        assert!(system.contains(label), "{label}");
    }
    assert!(body.get("tools").is_none());
    let events = env.events(&sid).await;
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "user_input",
            "policy_decision",
            "provider_request_start",
            "provider_response_summary",
            "workflow_normalization"
        ]
    );
    assert_eq!(
        events[0].2,
        json!({"task": "Verify report.txt", "scope": "content"})
    );
    assert_eq!(
        events[1].2,
        json!({"fail_closed": true, "evidence_paths": ["report.txt"]})
    );
    assert_eq!(
        events[3],
        (
            "provider_response_summary".into(),
            1,
            json!({"verdict": "pass", "summary": "Verification pass: 2 finding(s)"})
        )
    );
    assert_eq!(
        events[4],
        (
            "workflow_normalization".into(),
            1,
            json!({"verdict": "pass"})
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn verdict_fallbacks_follow_fail_closed() {
    let env = TestEnv::new().await;
    env.reply_text("I am not sure.").await;
    let server = env.start().await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify x"}))
        .await;
    assert_eq!(
        (v["ok"].clone(), v["result"]["verdict"].clone()),
        (json!(true), json!("fail_closed"))
    );
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify x", "fail_closed": false}),
        )
        .await;
    assert_eq!(v["result"]["verdict"], json!("insufficient_evidence"));
    env.reply_text("VERDICT: pass_with_restrictions\nRESTRICTIONS:\n- linux only\n")
        .await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify x", "system_profile": "verification"}),
        )
        .await;
    assert_eq!(v["result"]["verdict"], json!("pass_with_restrictions"));
    assert_eq!(v["result"]["restrictions"], json!(["linux only"]));
    server.shutdown().await;
}

#[tokio::test]
async fn missing_evidence_fails_closed_without_a_session() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify x", "evidence_paths": ["nope.txt"]}),
        )
        .await;
    assert_eq!(
        v,
        json!({"ok": false, "session_id": "", "status": "failed", "workflow": "verify_task", "profile": "verification",
               "summary": "Verification fail_closed",
               "result": {"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": []},
               "artifacts": [], "warnings": [],
               "errors": [{"code": "missing_evidence", "message": "Evidence path not found: nope.txt", "details": null}]})
    );
    assert!(env.requests().await.is_empty(), "the backend is not called");
    assert_eq!(env.session_count().await, 0);
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify x", "evidence_paths": ["nope.txt"], "fail_closed": false}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["warnings"], json!(["Evidence path not found: nope.txt"]));
    assert_eq!(env.session_count().await, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn evidence_outside_the_allowlist_is_denied() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify x", "evidence_paths": ["/etc/hostname"]}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("policy_denied"));
    assert_eq!(v["result"], json!({}));
    assert_eq!(env.session_count().await, 0);
    server.shutdown().await;
}
