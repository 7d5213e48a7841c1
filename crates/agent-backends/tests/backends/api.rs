//! The `api` backend against a local wiremock server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{SYSTEM, request};
use agent_backends::api::{
    WARN_EMPTY_RESPONSE, WARN_EMPTY_TEXT_RESPONSE, WARN_MAX_TOKENS, WARN_PAUSE_TURN, WARN_REFUSAL,
    tool_loop_exhausted_warning,
};
use agent_backends::{ApiConfig, MessagesApiBackend};
use agent_core::{
    BackendOutput, BackendRequest, ChatMessage, ChatRole, ErrorCode, ExecContext, ExecutionBackend,
    ExecutionError, FailureKind, ProgressSink, ToolDefinition, ToolExecutor, Usage,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn config(server: &MockServer) -> ApiConfig {
    ApiConfig::new("sk-test-key", "claude-test")
        .with_base_url(format!("{}/", server.uri()))
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn backend(server: &MockServer) -> MessagesApiBackend {
    MessagesApiBackend::new(config(server)).unwrap()
}

fn text_reply(texts: &[&str], stop_reason: &str) -> Value {
    let content: Vec<Value> = texts
        .iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    json!({
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    })
}

async fn mount_json(server: &MockServer, body: Value) {
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r: &Request| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn request_count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[derive(Default)]
struct Progress(Mutex<Vec<String>>);

impl ProgressSink for Progress {
    fn report(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

/// Records calls; `broken` fails, anything else answers `result of <name>`.
#[derive(Default)]
struct Executor(Mutex<Vec<(String, Value)>>);

#[async_trait]
impl ToolExecutor for Executor {
    async fn call(&self, name: &str, input: Value) -> Result<String, String> {
        self.0.lock().unwrap().push((name.to_owned(), input));
        if name == "broken" {
            Err("disk on fire".to_owned())
        } else {
            Ok(format!("result of {name}"))
        }
    }
}

fn tool_request(task: &str, executor: Arc<Executor>) -> BackendRequest {
    let mut req = request(task);
    req.tools = vec![ToolDefinition {
        name: "read_file".to_owned(),
        description: "Reads a file".into(),
        input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}).into(),
    }];
    req.tool_executor = Some(executor);
    req
}

fn tool_use_reply(uses: &[(&str, &str, Option<Value>)], text: Option<&str>) -> Value {
    let mut content = Vec::new();
    if let Some(t) = text {
        content.push(json!({"type": "text", "text": t}));
    }
    for (id, name, input) in uses {
        let mut block = json!({"type": "tool_use", "id": id, "name": name});
        if let Some(input) = input {
            block["input"] = input.clone();
        }
        content.push(block);
    }
    json!({
        "content": content,
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 7}
    })
}

/// `output_schema` goes to the API as `output_config.format` (structured outputs), on every
/// call of a request.
#[tokio::test]
async fn an_output_schema_goes_as_output_config() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(text_reply(&["{\"a\": 1}"], "end_turn")),
        )
        .mount(&server)
        .await;
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let mut req = request("Answer as JSON");
    req.output_schema = Some(agent_core::structured::OutputSchema::parse(&schema).unwrap());
    let out = backend(&server)
        .execute(req, &ExecContext::default())
        .await
        .unwrap();
    assert_eq!(out.output_text, "{\"a\": 1}");
    assert_eq!(
        bodies(&server).await[0]["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
}

#[tokio::test]
async fn single_shot_request_shape_with_history() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-test-key"))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(text_reply(&["Hi there"], "end_turn")),
        )
        .expect(1)
        .mount(&server)
        .await;

    let mut req = request("And now?");
    req.history = vec![
        ChatMessage {
            role: ChatRole::User,
            content: "first question".to_owned(),
            blocks: None,
        },
        ChatMessage {
            role: ChatRole::Assistant,
            content: "first answer".to_owned(),
            blocks: None,
        },
    ];
    let progress = Arc::new(Progress::default());
    let ctx = ExecContext::new(CancellationToken::new(), progress.clone());
    let out = backend(&server).execute(req, &ctx).await.unwrap();
    assert_eq!(out.output_text, "Hi there");

    // Two cache breakpoints: the system prompt and the last message.
    assert_eq!(
        bodies(&server).await,
        vec![json!({
            "model": "claude-test",
            "max_tokens": 8192,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [
                    {"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}}
                ]}
            ]
        })]
    );
    let recorded = server.received_requests().await.unwrap();
    assert_eq!(recorded[0].url.path(), "/v1/messages");
    // The body goes out as one stream chunk with its length, never chunked.
    let length = recorded[0].body.len().to_string();
    assert_eq!(
        recorded[0]
            .headers
            .get("content-length")
            .map(|v| v.to_str().unwrap()),
        Some(length.as_str())
    );
    assert!(recorded[0].headers.get("transfer-encoding").is_none());
    assert!(!progress.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn single_shot_is_used_when_tools_have_no_executor() {
    let server = MockServer::start().await;
    mount_json(&server, text_reply(&["ok"], "end_turn")).await;
    let mut req = tool_request("task", Arc::new(Executor::default()));
    req.tool_executor = None;
    backend(&server)
        .execute(req, &ExecContext::default())
        .await
        .unwrap();
    let body = &bodies(&server).await[0];
    assert!(body.get("tools").is_none(), "{body}");
}

#[tokio::test]
async fn text_blocks_are_joined_and_usage_reported() {
    let server = MockServer::start().await;
    let mut reply = text_reply(&["Line one", " line two "], "end_turn");
    reply["content"]
        .as_array_mut()
        .unwrap()
        .insert(1, json!({"type": "thinking", "thinking": "hmm"}));
    reply["usage"] = json!({
        "input_tokens": 12, "output_tokens": 34,
        "cache_creation_input_tokens": 5, "cache_read_input_tokens": null
    });
    mount_json(&server, reply).await;

    let out = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap();
    assert_eq!(
        out,
        BackendOutput {
            output_text: "Line one\n line two ".to_owned(),
            turn_count: 1,
            stop_reason: Some("end_turn".to_owned()),
            warnings: vec![],
            usage: Some(Usage {
                input_tokens: 12,
                output_tokens: 34,
                cache_creation_input_tokens: Some(5),
                cache_read_input_tokens: None,
                total_cost_usd: None,
            }),
            provider_session_id: None,
            transcript: None,
        }
    );
}

#[tokio::test]
async fn empty_reply_warns() {
    let server = MockServer::start().await;
    let mut reply = text_reply(&[], "end_turn");
    reply.as_object_mut().unwrap().remove("usage");
    mount_json(&server, reply).await;
    let out = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap();
    assert_eq!(out.output_text, "");
    assert_eq!(out.warnings, vec![WARN_EMPTY_RESPONSE.to_owned()]);
    assert_eq!(out.usage, None);
}

#[tokio::test]
async fn stop_reasons_warn() {
    for (stop_reason, warning) in [
        ("max_tokens", WARN_MAX_TOKENS),
        ("refusal", WARN_REFUSAL),
        ("pause_turn", WARN_PAUSE_TURN),
    ] {
        let server = MockServer::start().await;
        mount_json(&server, text_reply(&["partial"], stop_reason)).await;
        let out = backend(&server)
            .execute(request("task"), &ExecContext::default())
            .await
            .unwrap();
        assert_eq!(out.stop_reason.as_deref(), Some(stop_reason));
        assert_eq!(out.warnings, vec![warning.to_owned()], "{stop_reason}");
    }
}

#[tokio::test]
async fn tool_use_loop_round_trip() {
    let server = MockServer::start().await;
    let first = tool_use_reply(
        &[
            ("toolu_1", "read_file", Some(json!({"path": "README.md"}))),
            ("toolu_2", "broken", None),
        ],
        Some("Let me look."),
    );
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first.clone()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let mut last = text_reply(&["All done."], "end_turn");
    last["usage"] = json!({"input_tokens": 200, "output_tokens": 30});
    mount_json(&server, last).await;

    let executor = Arc::new(Executor::default());
    let progress = Arc::new(Progress::default());
    let ctx = ExecContext::new(CancellationToken::new(), progress.clone());
    let out = backend(&server)
        .execute(tool_request("Summarise", executor.clone()), &ctx)
        .await
        .unwrap();

    assert_eq!(
        out,
        BackendOutput {
            output_text: "All done.".to_owned(),
            turn_count: 2,
            stop_reason: Some("end_turn".to_owned()),
            warnings: vec![],
            usage: Some(Usage {
                input_tokens: 300,
                output_tokens: 50,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: Some(7),
                total_cost_usd: None,
            }),
            provider_session_id: None,
            // The loop's messages after the user's, for continuations to replay: the tool
            // calls as received, their results as sent, the answer as received.
            transcript: Some(vec![
                json!({"role": "assistant", "content": first["content"]}),
                json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "result of read_file"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Error: disk on fire", "is_error": true}
                ]}),
                json!({"role": "assistant", "content": [{"type": "text", "text": "All done."}]}),
            ]),
        }
    );
    assert_eq!(
        *executor.0.lock().unwrap(),
        vec![
            ("read_file".to_owned(), json!({"path": "README.md"})),
            ("broken".to_owned(), json!({}))
        ]
    );

    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let tools = json!([{
        "name": "read_file",
        "description": "Reads a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}
    }]);
    let system = json!([{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]);
    assert_eq!(
        bodies[0],
        json!({
            "model": "claude-test",
            "max_tokens": 8192,
            "system": system,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Summarise", "cache_control": {"type": "ephemeral"}}
            ]}],
            "tools": tools
        })
    );
    assert_eq!(
        bodies[1],
        json!({
            "model": "claude-test",
            "max_tokens": 8192,
            "system": system,
            "messages": [
                {"role": "user", "content": "Summarise"},
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "result of read_file"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Error: disk on fire", "is_error": true,
                     "cache_control": {"type": "ephemeral"}}
                ]}
            ],
            "tools": tools
        })
    );
    // Prompt caching: the second turn's request starts with the first turn's tools and system
    // prompt byte for byte (the cached prefix), in the same order.
    let raw = server.received_requests().await.unwrap();
    let text = |i: usize| String::from_utf8(raw[i].body.clone()).unwrap();
    let prefix_end = |body: &str| body.find("\"messages\"").unwrap();
    assert_eq!(
        text(0)[..prefix_end(&text(0))],
        text(1)[..prefix_end(&text(1))]
    );
    let tools_of = |body: &str| body[body.find("\"tools\"").unwrap()..].to_owned();
    assert_eq!(tools_of(&text(0)), tools_of(&text(1)));
    let progress = progress.0.lock().unwrap();
    assert!(
        progress.contains(&"model turn 1 of 10".to_owned()),
        "{progress:?}"
    );
    assert!(
        progress.contains(&"tool call 2: broken".to_owned()),
        "{progress:?}"
    );
}

#[tokio::test]
async fn tool_loop_keeps_last_text_and_warns_when_final_text_is_empty() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tool_use_reply(
            &[("toolu_1", "read_file", None)],
            Some("Looking"),
        )))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_json(&server, text_reply(&[], "end_turn")).await;
    let out = backend(&server)
        .execute(
            tool_request("task", Arc::new(Executor::default())),
            &ExecContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.output_text, "Looking");
    assert_eq!(out.warnings, Vec::<String>::new());

    let server = MockServer::start().await;
    mount_json(&server, text_reply(&[], "end_turn")).await;
    let out = backend(&server)
        .execute(
            tool_request("task", Arc::new(Executor::default())),
            &ExecContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.turn_count, 1);
    assert_eq!(out.warnings, vec![WARN_EMPTY_TEXT_RESPONSE.to_owned()]);
}

#[tokio::test]
async fn tool_loop_exhaustion_warns() {
    let server = MockServer::start().await;
    mount_json(
        &server,
        tool_use_reply(
            &[("toolu_1", "read_file", Some(json!({"path": "a"})))],
            None,
        ),
    )
    .await;
    let executor = Arc::new(Executor::default());
    let mut req = tool_request("task", executor.clone());
    req.max_turns = 2;
    let out = backend(&server)
        .execute(req, &ExecContext::default())
        .await
        .unwrap();
    assert_eq!(request_count(&server).await, 2);
    assert_eq!(out.turn_count, 2);
    assert_eq!(out.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(out.output_text, "");
    assert_eq!(
        out.warnings,
        vec![
            WARN_EMPTY_TEXT_RESPONSE.to_owned(),
            tool_loop_exhausted_warning(2)
        ]
    );
    assert!(tool_loop_exhausted_warning(2).contains("2 turn"));
    assert_eq!(out.usage.unwrap().input_tokens, 200);
}

#[tokio::test]
async fn retries_429_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_string(
                    r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_json(&server, text_reply(&["finally"], "end_turn")).await;

    // Default back-off (500 ms) would be visible: retry-after 0 must win.
    let backend = MessagesApiBackend::new(
        config(&server).with_backoff(Duration::from_secs(5), Duration::from_secs(5)),
    )
    .unwrap();
    let progress = Arc::new(Progress::default());
    let ctx = ExecContext::new(CancellationToken::new(), progress.clone());
    let started = Instant::now();
    let out = backend.execute(request("task"), &ctx).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(out.output_text, "finally");
    assert_eq!(request_count(&server).await, 2);
    // Each attempt encodes the same request again.
    let sent = bodies(&server).await;
    assert_eq!(sent[0], sent[1]);
    assert!(
        progress
            .0
            .lock()
            .unwrap()
            .contains(&"retrying after HTTP 429 (attempt 2 of 3)".to_owned()),
        "{:?}",
        progress.0.lock().unwrap()
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = MockServer::start().await;
    mount_json(&elsewhere, text_reply(&["stolen"], "end_turn")).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/v1/messages", elsewhere.uri())),
        )
        .mount(&server)
        .await;
    let ctx = ExecContext::new(CancellationToken::new(), Arc::new(agent_core::NoProgress));
    let err = backend(&server)
        .execute(request("task"), &ctx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("307"), "{err}");
    assert_eq!(request_count(&server).await, 1);
    assert_eq!(
        request_count(&elsewhere).await,
        0,
        "the API key went elsewhere"
    );
}

#[tokio::test]
async fn overloaded_fails_after_all_attempts() {
    let server = MockServer::start().await;
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(529).set_body_string(format!("{body}\n")))
        .mount(&server)
        .await;
    let err = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap_err();
    assert_eq!(request_count(&server).await, 3);
    assert_eq!(
        err,
        ExecutionError::new(
            ErrorCode::ProviderRuntimeError,
            format!("Claude API error: Error code: 529 - {body}")
        )
        .with_kind(FailureKind::HttpStatus(529))
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string(concat!(
            r#"{"type":"error","error":{"type":"authentication_error","#,
            r#""message":"invalid x-api-key"}}"#
        )))
        .mount(&server)
        .await;
    let err = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap_err();
    assert_eq!(request_count(&server).await, 1);
    assert_eq!(err.code, ErrorCode::ProviderRuntimeError);
    assert!(
        err.message
            .starts_with("Claude API error: Error code: 401 - "),
        "{}",
        err.message
    );
    assert!(err.message.contains("authentication_error"));
    assert!(!err.message.contains("sk-test-key"));
}

#[tokio::test]
async fn long_error_bodies_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("x".repeat(10_000)))
        .mount(&server)
        .await;
    let err = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap_err();
    assert!(err.message.len() < 2100, "{}", err.message.len());
    assert!(err.message.ends_with(" [truncated]"));
}

#[tokio::test]
async fn malformed_and_unexpected_bodies() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .mount(&server)
        .await;
    let err = backend(&server)
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderRuntimeError);
    assert!(
        err.message
            .starts_with("Claude API error: invalid JSON in response body: "),
        "{}",
        err.message
    );
    assert_eq!(request_count(&server).await, 1);

    for body in [
        json!({"foo": 1}),
        json!([1, 2]),
        json!({"content": "text"}),
        json!({"content": [7]}),
    ] {
        let server = MockServer::start().await;
        mount_json(&server, body.clone()).await;
        let err = backend(&server)
            .execute(request("task"), &ExecContext::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NormalizationError, "{body}");
        assert!(
            err.message
                .starts_with("Failed to normalize provider result: "),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn slow_reply_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(text_reply(&["late"], "end_turn"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let backend = MessagesApiBackend::new(
        config(&server)
            .with_request_timeout(Duration::from_millis(200))
            .with_max_retries(0),
    )
    .unwrap();
    let started = Instant::now();
    let err = backend
        .execute(request("task"), &ExecContext::default())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code, ErrorCode::ProviderRuntimeError);
    assert!(
        err.message.starts_with("Claude API error: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // Bind then drop a listener so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = MessagesApiBackend::new(
        ApiConfig::new("k", "m")
            .with_base_url(format!("http://127.0.0.1:{port}"))
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2)),
    )
    .unwrap();
    let progress = Arc::new(Progress::default());
    let ctx = ExecContext::new(CancellationToken::new(), progress.clone());
    let err = backend.execute(request("task"), &ctx).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderRuntimeError);
    assert!(
        err.message
            .starts_with("Claude API error: error sending request"),
        "{}",
        err.message
    );
    let retries = progress
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with("retrying after"))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn cancellation_returns_promptly() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(text_reply(&["late"], "end_turn"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let backend = backend(&server);
    let ctx = ExecContext::default();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let err = backend.execute(request("task"), &ctx).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err, ExecutionError::cancelled());

    // Already cancelled: no request at all.
    let before = request_count(&server).await;
    let err = backend.execute(request("task"), &ctx).await.unwrap_err();
    assert_eq!(err, ExecutionError::cancelled());
    assert_eq!(request_count(&server).await, before);
}

#[tokio::test]
async fn cancellation_interrupts_tool_execution() {
    struct Hang;
    #[async_trait]
    impl ToolExecutor for Hang {
        async fn call(&self, _name: &str, _input: Value) -> Result<String, String> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(String::new())
        }
    }
    let server = MockServer::start().await;
    mount_json(
        &server,
        tool_use_reply(&[("toolu_1", "read_file", None)], None),
    )
    .await;
    let mut req = tool_request("task", Arc::new(Executor::default()));
    req.tool_executor = Some(Arc::new(Hang));
    let ctx = ExecContext::default();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let err = backend(&server).execute(req, &ctx).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err, ExecutionError::cancelled());
}

#[tokio::test]
async fn tool_loop_errors_have_their_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(tool_use_reply(&[("toolu_1", "read_file", None)], None)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad request"))
        .mount(&server)
        .await;
    let err = backend(&server)
        .execute(
            tool_request("task", Arc::new(Executor::default())),
            &ExecContext::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExecutionError::new(
            ErrorCode::ProviderRuntimeError,
            "Claude API error (with tools): Error code: 400 - bad request"
        )
        .with_kind(FailureKind::HttpStatus(400))
    );

    let server = MockServer::start().await;
    mount_json(&server, json!({"foo": 1})).await;
    let err = backend(&server)
        .execute(
            tool_request("task", Arc::new(Executor::default())),
            &ExecContext::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NormalizationError);
}

#[test]
fn capabilities_and_name() {
    let backend = MessagesApiBackend::new(ApiConfig::new("k", "m")).unwrap();
    assert_eq!(backend.name(), "api");
    let caps = serde_json::to_value(backend.capabilities()).unwrap();
    let expected_true = [
        "supports_downstream_tools",
        "supports_structured_tool_use",
        "supports_native_multiturn",
        "supports_rich_stop_reason",
        "supports_structured_messages",
        "prices_model_calls",
    ];
    for (key, value) in caps.as_object().unwrap() {
        assert_eq!(
            value,
            &json!(expected_true.contains(&key.as_str())),
            "{key}"
        );
    }
}
