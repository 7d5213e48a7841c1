//! agent_verify_task: evidence checks and verdict rules (`docs/reference/verification.md#1-request`
//! to `docs/reference/verification.md#4-verdict-parsing`).

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
                          "missing_evidence": [], "restrictions": [],
                          "decision": "verified", "primary_reason": "sufficient_evidence", "reason_codes": ["sufficient_evidence"],
                          "operator_guidance": ["Evidence supports the claim. Review findings for any noted restrictions."],
                          "evidence_sufficiency": "sufficient", "scope_assessment": "narrow", "profile_alignment": "in_profile",
                          "outcome_kind": "verified", "failure_class": null, "failure_code": null, "retryable": false,
                          "fallback_recommended": false, "verification_performed": true,
                          "usage": {"input_tokens": 11, "output_tokens": 7, "total_cost_usd": 0.000138}},
               "artifacts": [{"artifact_id": "<artifact>", "artifact_type": "verification-report", "logical_name": "verification-report.md", "mime_type": "text/markdown"}],
               "warnings": [], "errors": []})
    );
    let body = &env.requests().await[0];
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Task to verify: Verify report.txt\nScope: content\nEvidence paths:\n  - report.txt\n\nEvidence contents:\n=== report.txt (text, 8 bytes) ===\nall good\n=== end of report.txt ===\n\nPlease evaluate the evidence and provide a structured verification result."}])
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
               "result": {"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": [],
                          "decision": "not_verified", "primary_reason": "insufficient_evidence", "reason_codes": ["insufficient_evidence"],
                          "operator_guidance": [
                              "Provide the target artifact, expected outcome, or a bounded evidence source.",
                              "Narrow the scope to a specific file, function, or observable claim."
                          ],
                          "evidence_sufficiency": "insufficient", "scope_assessment": "narrow", "profile_alignment": "in_profile",
                          "outcome_kind": "not_verified", "failure_class": null, "failure_code": null, "retryable": false,
                          "fallback_recommended": false, "verification_performed": false},
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

#[tokio::test]
async fn preflight_codes_shape_the_assessment() {
    let env = TestEnv::new().await;
    env.reply_text("VERDICT: pass").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Fix the authentication module"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "standard mode runs it");
    assert_eq!(v["result"]["profile_alignment"], json!("out_of_profile"));
    assert_eq!(
        v["result"]["primary_reason"],
        json!("out_of_profile_request")
    );
    assert_eq!(
        v["result"]["reason_codes"],
        json!([
            "out_of_profile_request",
            "scope_too_broad",
            "missing_required_context",
            "sufficient_evidence"
        ])
    );
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Check everything in the whole system"}),
        )
        .await;
    assert_eq!(v["result"]["scope_assessment"], json!("too_broad"));
    env.reply_text("VERDICT: insufficient").await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify the report"}))
        .await;
    assert_eq!(v["result"]["scope_assessment"], json!("broad"));
    assert_eq!(
        v["result"]["reason_codes"],
        json!([
            "ambiguous_request",
            "missing_required_context",
            "insufficient_evidence"
        ])
    );
    assert_eq!(v["result"]["decision"], json!("inconclusive"));
    let guidance: Vec<&str> = v["result"]["operator_guidance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        guidance.contains(
            &"Provide the target artifact, expected outcome, or a bounded evidence source."
        )
    );
    let mut unique = guidance.clone();
    unique.dedup();
    assert_eq!(unique.len(), guidance.len(), "no duplicates");
    env.reply_text("VERDICT: pass").await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify /data/report.txt satisfies expected content"}),
        )
        .await;
    assert_eq!(v["result"]["reason_codes"], json!(["sufficient_evidence"]));
    assert_eq!(
        (
            v["result"]["scope_assessment"].clone(),
            v["result"]["profile_alignment"].clone()
        ),
        (json!("narrow"), json!("in_profile"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn blank_output_is_unavailable_not_a_verdict() {
    let env = TestEnv::new().await;
    env.reply_text("  \n\t ").await;
    let server = env.start().await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    let sid = v["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&sid));
    let summary =
        "Claude Code returned an empty response. Verification cannot be performed on blank output.";
    assert_eq!(
        normalize_envelope(v),
        json!({"ok": false, "session_id": "<session>", "status": "failed", "workflow": "verify_task", "profile": "verification",
               "summary": format!("Verification unavailable: {summary}"),
               "result": {"verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": [],
                          "decision": "unavailable", "primary_reason": "insufficient_evidence", "reason_codes": ["insufficient_evidence"],
                          "operator_guidance": [
                              "Provide the target artifact, expected outcome, or a bounded evidence source.",
                              "Narrow the scope to a specific file, function, or observable claim."
                          ],
                          "evidence_sufficiency": "insufficient", "scope_assessment": "narrow", "profile_alignment": "in_profile",
                          "outcome_kind": "unavailable", "failure_class": "backend_unusable_response",
                          "failure_code": "claude_code_empty_response", "retryable": true, "fallback_recommended": true,
                          "verification_performed": false},
               "artifacts": [], "warnings": [],
               "errors": [{"code": "claude_code_empty_response", "message": summary, "details": null}]})
    );
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("failed"));
    assert_eq!(
        env.events(&sid).await.last().unwrap(),
        &(
            "error_event".to_owned(),
            0,
            json!({"error": "claude_code_empty_response", "summary": summary})
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn api_failures_are_classified_for_routing() {
    let env = TestEnv::new().await;
    env.reply(wiremock::ResponseTemplate::new(429).set_body_string("slow down"))
        .await;
    let server = env.start().await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    assert_eq!(v["ok"], json!(false));
    assert_eq!(
        (
            v["result"]["outcome_kind"].clone(),
            v["result"]["failure_class"].clone(),
            v["result"]["failure_code"].clone(),
            v["result"]["retryable"].clone()
        ),
        (
            json!("unavailable"),
            json!("backend_limit_reached"),
            json!("api_rate_limited"),
            json!(true)
        )
    );
    assert_eq!(v["errors"][0]["code"], json!("provider_runtime_error"));
    assert_eq!(
        v["errors"][0]["message"],
        json!("Claude API error: Error code: 429 - slow down")
    );
    env.reply(wiremock::ResponseTemplate::new(401).set_body_string("bad key"))
        .await;
    let v = server
        .call("agent_verify_task", json!({"task": "Verify /x.txt"}))
        .await;
    assert_eq!(
        (
            v["result"]["failure_code"].clone(),
            v["result"]["retryable"].clone()
        ),
        (json!("api_not_authenticated"), json!(false))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn evidence_is_read_within_the_budget() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES", "10");
    std::fs::write(env.cwd().join("long.txt"), "0123456789abcdef").unwrap();
    std::fs::write(env.cwd().join("image.bin"), [0u8, 159, 146, 150]).unwrap();
    env.reply_text("VERDICT: pass").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Verify long.txt", "evidence_paths": ["long.txt", "image.bin"]}),
        )
        .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(
        v["warnings"],
        json!([
            "Evidence truncated: long.txt (included 10 of 16 bytes; the limit is 10 bytes in total, CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES)"
        ])
    );
    let content = env.requests().await[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.contains(
            "=== long.txt (text, 16 bytes, truncated) ===\n0123456789\n=== end of long.txt ==="
        ),
        "{content}"
    );
    assert!(
        content.contains("=== image.bin (binary file, 4 bytes; contents not included) ==="),
        "{content}"
    );
    server.shutdown().await;
}
