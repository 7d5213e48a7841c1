//! Structured results (issue 16 item 1, `docs/reference/tools.md#16-structured-results`) on the
//! Messages API backend: `output_schema` goes to the API as `output_config.format`, and the
//! answer is checked against it (valid: `result.structured_output`; invalid: a failure with
//! the violations and the raw answer kept in the session); a bad or oversized schema is a
//! `validation_error` before anything runs.

use serde_json::{Value, json};

use crate::support::*;

fn verdict_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"verdict": {"enum": ["pass", "fail"]}, "score": {"type": "integer"}},
        "required": ["verdict", "score"],
        "additionalProperties": false
    })
}

#[tokio::test]
async fn a_valid_answer_is_returned_as_structured_output() {
    let env = TestEnv::new().await;
    env.reply_text("{\"verdict\": \"pass\", \"score\": 3}")
        .await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Judge it.", "output_schema": verdict_schema()}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["result"]["structured_output"],
        json!({"verdict": "pass", "score": 3})
    );
    assert_eq!(
        v["result"]["output_text"],
        json!("{\"verdict\": \"pass\", \"score\": 3}")
    );
    let body = &env.requests().await[0];
    assert_eq!(
        body["output_config"],
        json!({"format": {"type": "json_schema", "schema": verdict_schema()}})
    );
    // A continuation can ask for a shape too; without one, no structured_output.
    env.reply_text("{\"verdict\": \"fail\", \"score\": 0}")
        .await;
    let sid = v["session_id"].as_str().unwrap();
    let next = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "Again.", "output_schema": verdict_schema()}),
        )
        .await;
    assert_eq!(
        next["result"]["structured_output"],
        json!({"verdict": "fail", "score": 0}),
        "{next}"
    );
    let plain = server
        .call(
            "agent_continue_session",
            json!({"session_id": sid, "message": "In words."}),
        )
        .await;
    assert_eq!(plain["ok"], json!(true), "{plain}");
    assert!(
        plain["result"].get("structured_output").is_none(),
        "{plain}"
    );
    // (The stand-in was reset before the continuations: its requests start there.)
    let sent = env.requests().await;
    assert!(sent[0].get("output_config").is_some());
    assert!(sent.last().unwrap().get("output_config").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn an_answer_that_does_not_validate_fails_and_keeps_the_raw_text() {
    let env = TestEnv::new().await;
    env.reply_text("{\"verdict\": \"maybe\", \"score\": 3}")
        .await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Judge it.", "output_schema": verdict_schema()}),
        )
        .await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["status"], json!("failed"));
    let error = &v["errors"][0];
    assert_eq!(error["code"], json!("structured_output_invalid"), "{v}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("The answer does not match output_schema: /verdict: "),
        "{error}"
    );
    assert_eq!(
        error["details"]["raw_text"],
        json!("{\"verdict\": \"maybe\", \"score\": 3}")
    );
    assert!(
        !error["details"]["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let sid = v["session_id"].as_str().unwrap();
    assert_eq!(env.column(sid, "status").await.as_deref(), Some("failed"));
    let (kind, _, payload) = env.events(sid).await.last().unwrap().clone();
    assert_eq!(kind, "error_event");
    assert_eq!(
        payload["error"], *error,
        "the raw answer is kept in the session"
    );

    // Not JSON at all.
    env.reply_text("It passes, I think.").await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Judge it.", "output_schema": verdict_schema()}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("structured_output_invalid"));
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the answer is not JSON"),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_schemas_are_validation_errors_and_nothing_runs() {
    let env = TestEnv::new().await;
    env.reply_text("{}").await;
    let server = env.start().await;
    let big = json!({"description": "d".repeat(70_000)});
    let too_big = format!(
        "output_schema: is {} bytes, more than the 65536 allowed",
        big.to_string().len()
    );
    for (schema, want) in [
        (
            json!({"type": "no-such-type"}),
            "output_schema: is not a valid JSON Schema: ",
        ),
        (big, too_big.as_str()),
        (
            json!({"$ref": "https://example.com/s.json"}),
            "output_schema: is not a valid JSON Schema",
        ),
    ] {
        let v = server
            .call(
                "agent_run_task",
                json!({"task": "Judge it.", "output_schema": schema}),
            )
            .await;
        assert_eq!(v["errors"][0]["code"], json!("validation_error"), "{v}");
        assert!(
            v["errors"][0]["message"].as_str().unwrap().contains(want),
            "{want}: {v}"
        );
        assert_eq!(v["session_id"], json!(""));
    }
    // A schema that is not an object is refused by the schema layer, before the handler.
    let raw = server
        .call_raw(
            "agent_run_task",
            json!({"task": "Judge it.", "output_schema": "object"}),
        )
        .await;
    assert_eq!(raw.is_error, Some(true));
    let text = format!("{:?}", raw.content);
    assert!(
        text.contains("Input validation error: 'object' is not of type 'object'"),
        "{text}"
    );
    assert!(env.requests().await.is_empty(), "nothing reached the model");
    server.shutdown().await;
}
