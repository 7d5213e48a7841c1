//! Traces (issue 17, `docs/observability.md#traces`): a receiver started here (OTLP over HTTP,
//! decoded with the OpenTelemetry protocol crate) gets the span tree of a run with a tool loop,
//! `tools/call agent_run_task` → `invoke_agent` → `chat`, `execute_tool`, `chat`, with the
//! GenAI and MCP attributes, under the `traceparent` given in `_meta`; no prompt or output
//! text unless the operator opted in. Without an endpoint no exporter exists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_policy::config::vars;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as AnyValueMsg, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use rmcp::model::{CallToolRequestParams, RequestMetaObject};
use serde_json::{Value, json};

use super::tools::tool_use;
use crate::support::*;

/// The caller's trace: its id and the span the server's spans must hang under.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Words of the task and of the answer: never in a span unless opted in.
const TASK: &str = "Summarize the files about the zeppelin";
const ANSWER: &str = "notes.txt says the word is pineapple";

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    trace_state: String,
    start: u64,
    end: u64,
    /// The status code (`StatusCode`: unset, ok, error).
    status: i32,
    attributes: BTreeMap<String, String>,
    /// Every string in the span: attributes, events and their attributes, the status message.
    text: String,
}

#[derive(Default)]
struct Received {
    spans: Vec<Exported>,
    resources: Vec<BTreeMap<String, String>>,
    content_types: Vec<String>,
}

/// The OTLP/HTTP receiver (`POST /v1/traces`, protobuf).
struct Receiver {
    base: String,
    received: Arc<Mutex<Received>>,
    _task: tokio::task::JoinHandle<()>,
}

fn value_text(value: Option<&AnyValueMsg>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute_map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

async fn export(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut received = received.lock().unwrap();
    received.content_types.push(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    for resource_spans in request.resource_spans {
        let resource = attribute_map(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        received.resources.push(resource);
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes = attribute_map(&span.attributes);
                let mut text = format!("{attributes:?}");
                for event in &span.events {
                    text.push_str(&event.name);
                    text.push_str(&format!("{:?}", attribute_map(&event.attributes)));
                }
                if let Some(status) = &span.status {
                    text.push_str(&status.message);
                }
                received.spans.push(Exported {
                    name: span.name.clone(),
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    trace_state: span.trace_state.clone(),
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano,
                    status: span.status.as_ref().map_or(0, |s| s.code),
                    attributes,
                    text,
                });
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            received,
            _task: task,
        }
    }

    fn spans(&self) -> Vec<Exported> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Waits (30 s at most) until a span named `name` has arrived.
    async fn wait_for(&self, name: &str) -> Vec<Exported> {
        self.wait_for_n(name, 1).await
    }

    /// Waits (30 s at most) until a span of each of `names` has arrived. A request span
    /// whose run went on in the background closes after that run's `invoke_agent` (the
    /// background task holds it as the parent), so it can come in a later batch.
    async fn wait_for_each(&self, names: &[&str]) -> Vec<Exported> {
        let mut spans = Vec::new();
        for name in names {
            spans = self.wait_for(name).await;
        }
        spans
    }

    /// Waits (30 s at most) until `n` spans named `name` have arrived.
    async fn wait_for_n(&self, name: &str, n: usize) -> Vec<Exported> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if spans.iter().filter(|s| s.name == name).count() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "not {n} span(s) {name:?} within 30 s: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn only<'a>(spans: &'a [Exported], name: &str) -> &'a Exported {
    let found: Vec<&Exported> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name:?} in {spans:#?}");
    found[0]
}

/// The spans whose parent is `parent`, in the order they started.
fn children_of<'a>(spans: &'a [Exported], parent: &Exported) -> Vec<&'a Exported> {
    let mut children: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect();
    children.sort_by_key(|s| s.start);
    children
}

/// The spans of the caller's trace ([`TRACE_ID`]).
fn in_callers_trace(spans: &[Exported]) -> Vec<Exported> {
    spans
        .iter()
        .filter(|s| s.trace_id == TRACE_ID)
        .cloned()
        .collect()
}

/// Points the server's exporter at `receiver`, with a short batch delay.
fn trace_to(env: &mut TestEnv, receiver: &Receiver) {
    env.set(vars::OTEL_EXPORTER_OTLP_ENDPOINT, &receiver.base);
    env.set(vars::OTEL_SERVICE_NAME, "traced-test");
    env.set("OTEL_BSP_SCHEDULE_DELAY", "50");
}

/// Calls `tool` with `args` and the caller's `traceparent` (and `tracestate`) in `_meta`;
/// the envelope.
async fn call_in_callers_trace(server: &Server, tool: &str, args: Value) -> Value {
    let mut params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().cloned().unwrap());
    let mut meta = RequestMetaObject::new();
    meta.0.0.insert(
        "traceparent".into(),
        json!(format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
    );
    meta.0.0.insert("tracestate".into(), json!("vendor=opaque"));
    params.meta = Some(meta);
    let result = server.client.call_tool(params).await.unwrap();
    parse_single_text(&result)
}

fn attr<'a>(span: &'a Exported, key: &str) -> &'a str {
    span.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{key} on {}: {:#?}", span.name, span.attributes))
}

/// A traced server (its exporter pointed at `receiver`) runs a task whose model reads a file
/// with the built-in `read_file` tool, then answers; the call carries the caller's
/// `traceparent`. The server is shut down (which flushes), and the spans it exported returned
/// with the run's session id.
async fn traced_tool_loop_run(
    receiver: &Receiver,
    record_content: bool,
) -> (Vec<Exported>, String) {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    trace_to(&mut env, receiver);
    if record_content {
        env.set(vars::OTEL_RECORD_CONTENT, "true");
    }
    std::fs::write(env.cwd().join("notes.txt"), "the secret word is pineapple").unwrap();
    env.reply_tool_use_then(
        tool_use("toolu_1", "read_file", json!({"path": "notes.txt"})),
        ANSWER,
    )
    .await;
    let server = env.start().await;
    #[cfg(target_os = "linux")]
    assert!(
        batch_thread_exists(server.child.id().unwrap()),
        "the exporter's batch thread runs"
    );
    let envelope = call_in_callers_trace(&server, "agent_run_task", json!({"task": TASK})).await;
    assert_eq!(envelope["ok"], json!(true), "{envelope}");
    let session_id = envelope["session_id"].as_str().unwrap().to_owned();
    assert_eq!(server.shutdown().await, 0, "{}", env.stderr_log());
    let spans = receiver.wait_for("tools/call agent_run_task").await;
    (spans, session_id)
}

/// Whether the process `pid` has the OpenTelemetry batch processor's thread (its name,
/// `OpenTelemetry.Traces.BatchProcessor`, cut to 15 bytes by Linux).
#[cfg(target_os = "linux")]
fn batch_thread_exists(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        panic!("/proc/{pid}/task is readable");
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|name| name.trim() == "OpenTelemetry.T")
    })
}

#[tokio::test]
async fn a_tool_loop_run_exports_its_span_tree_under_the_callers_traceparent() {
    let receiver = Receiver::start().await;
    let (spans, session_id) = traced_tool_loop_run(&receiver, false).await;

    // The call's spans are in the caller's trace; the other requests (`initialize`, …) have
    // their own traces.
    let request = only(&spans, "tools/call agent_run_task");
    assert_eq!(request.trace_id, TRACE_ID);
    let initialize = only(&spans, "initialize");
    assert_ne!(initialize.trace_id, TRACE_ID);
    assert_eq!(initialize.parent_span_id, "");
    assert_eq!(attr(initialize, "mcp.method.name"), "initialize");
    let in_trace: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id == TRACE_ID)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(in_trace.len(), 5, "{in_trace:?}");
    assert_eq!(request.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(request.trace_state, "vendor=opaque");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(attr(request, "mcp.method.name"), "tools/call");
    assert_eq!(attr(request, "gen_ai.tool.name"), "agent_run_task");
    assert_eq!(attr(request, "gen_ai.operation.name"), "execute_tool");
    assert!(!attr(request, "jsonrpc.request.id").is_empty());

    let invoke = only(&spans, "invoke_agent claude-agent-mcp");
    assert_eq!(invoke.parent_span_id, request.span_id);
    assert_eq!(attr(invoke, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attr(invoke, "gen_ai.agent.name"), "claude-agent-mcp");
    assert_eq!(attr(invoke, "gen_ai.provider.name"), "anthropic");
    assert_eq!(attr(invoke, "gen_ai.conversation.id"), session_id);
    assert_eq!(attr(invoke, "claude_agent_mcp.workflow"), "run_task");
    assert_eq!(attr(invoke, "claude_agent_mcp.backend"), "api");
    assert_eq!(attr(invoke, "claude_agent_mcp.outcome"), "completed");

    // Under invoke_agent, in this order: chat, execute_tool, chat.
    let mut children: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.parent_span_id == invoke.span_id)
        .collect();
    children.sort_by_key(|s| s.start);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    let chat = "chat claude-sonnet-4-6";
    assert_eq!(names, [chat, "execute_tool read_file", chat]);
    let (first, tool, second) = (children[0], children[1], children[2]);
    for (span, input, output, reason) in [
        (first, "5", "3", "tool_use"),
        (second, "11", "7", "end_turn"),
    ] {
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(attr(span, "gen_ai.operation.name"), "chat");
        assert_eq!(attr(span, "gen_ai.provider.name"), "anthropic");
        assert_eq!(attr(span, "gen_ai.request.model"), "claude-sonnet-4-6");
        assert_eq!(attr(span, "gen_ai.response.model"), "claude-sonnet-4-6");
        assert_eq!(attr(span, "gen_ai.usage.input_tokens"), input);
        assert_eq!(attr(span, "gen_ai.usage.output_tokens"), output);
        assert_eq!(attr(span, "gen_ai.response.finish_reasons"), reason);
    }
    assert_eq!(attr(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(attr(tool, "gen_ai.tool.name"), "read_file");
    assert_eq!(attr(tool, "gen_ai.tool.call.id"), "toolu_1");
    assert_eq!(attr(tool, "claude_agent_mcp.tool.kind"), "builtin");
    assert!(!tool.attributes.contains_key("error.type"), "{tool:#?}");

    // No prompt, output or tool text anywhere.
    for span in &spans {
        for secret in ["zeppelin", "pineapple", "Summarize"] {
            assert!(!span.text.contains(secret), "{secret} in {span:#?}");
        }
        assert!(!span.attributes.contains_key("gen_ai.input.messages"));
        assert!(!span.attributes.contains_key("gen_ai.output.messages"));
    }
    let received = receiver.received.lock().unwrap();
    assert!(
        received
            .content_types
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "{:?}",
        received.content_types
    );
    assert!(
        received
            .resources
            .iter()
            .all(|r| r.get("service.name").map(String::as_str) == Some("traced-test")),
        "{:?}",
        received.resources
    );
}

#[tokio::test]
async fn prompt_and_output_text_are_recorded_only_when_opted_in() {
    let receiver = Receiver::start().await;
    let (spans, _) = traced_tool_loop_run(&receiver, true).await;
    let invoke = only(&spans, "invoke_agent claude-agent-mcp");
    let input: Value = serde_json::from_str(attr(invoke, "gen_ai.input.messages")).unwrap();
    assert_eq!(
        input,
        json!([{"role": "user", "parts": [{"type": "text", "content": TASK}]}])
    );
    let output: Value = serde_json::from_str(attr(invoke, "gen_ai.output.messages")).unwrap();
    assert_eq!(
        output,
        json!([{"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "end_turn"}])
    );
    // Only there: the other spans carry no text even so.
    for span in spans.iter().filter(|s| s.span_id != invoke.span_id) {
        assert!(!span.text.contains("zeppelin"), "{span:#?}");
        assert!(!span.text.contains("pineapple"), "{span:#?}");
    }
}

/// Without an endpoint (other `OTEL_*` variables set or not), no exporter is built: no batch
/// thread, no export, and the log does not announce one.
#[tokio::test]
async fn without_an_endpoint_no_exporter_is_built() {
    let mut env = TestEnv::new().await;
    env.set(vars::OTEL_SERVICE_NAME, "untraced");
    env.set("OTEL_BSP_SCHEDULE_DELAY", "10");
    env.reply_text("done").await;
    let server = env.start().await;
    #[cfg(target_os = "linux")]
    assert!(!batch_thread_exists(server.child.id().unwrap()));
    let v = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    #[cfg(target_os = "linux")]
    assert!(!batch_thread_exists(server.child.id().unwrap()));
    assert_eq!(server.shutdown().await, 0);
    assert!(!env.stderr_log().contains("Exporting traces"));
}

/// An endpoint that is not an http(s) URL stops startup with the configuration error.
#[tokio::test]
async fn a_bad_endpoint_is_a_configuration_error() {
    let mut env = TestEnv::new().await;
    env.set(vars::OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4318");
    let (code, _, stderr) = env.run_to_exit(&[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not a valid endpoint: give an http:// or https:// URL"
        ),
        "{stderr}"
    );
}

/// Over streamable HTTP the request spans carry the transport session (`mcp.session.id`), and a
/// run answered `running` after `wait_seconds` (its work goes on in a task of its own) still
/// has its `invoke_agent` under the `tools/call` that started it.
#[tokio::test]
async fn over_http_the_session_is_named_and_a_background_run_stays_under_its_request() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;

    let receiver = Receiver::start().await;
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_millis(1500)),
    )
    .await;
    let mut server = super::http::start_http_with(
        &env,
        &[],
        &[
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, receiver.base.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
            .await
            .expect("initialize over HTTP");
    let args = json!({"task": "slow", "wait_seconds": 0});
    let result = client
        .call_tool(
            CallToolRequestParams::new("agent_run_task")
                .with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    let envelope = parse_single_text(&result);
    assert_eq!(envelope["status"], json!("running"), "{envelope}");
    let session_id = envelope["session_id"].as_str().unwrap().to_owned();
    let spans = receiver
        .wait_for_each(&["invoke_agent claude-agent-mcp", "tools/call agent_run_task"])
        .await;
    let request = only(&spans, "tools/call agent_run_task");
    let invoke = only(&spans, "invoke_agent claude-agent-mcp");
    assert_eq!(invoke.trace_id, request.trace_id);
    assert_eq!(invoke.parent_span_id, request.span_id);
    assert_eq!(attr(invoke, "gen_ai.conversation.id"), session_id);
    assert_eq!(attr(invoke, "claude_agent_mcp.outcome"), "completed");
    let transport_session = attr(request, "mcp.session.id");
    assert!(!transport_session.is_empty());
    assert!(!transport_session.contains("sess_"), "not our session id");
    // No `traceparent` was given: the request starts a trace of its own.
    assert_eq!(request.parent_span_id, "");
    let chat = only(&spans, "chat claude-sonnet-4-6");
    assert_eq!(chat.parent_span_id, invoke.span_id);
    let _ = client.cancel().await;
    let _ = server.child.kill().await;
}

/// A `traceparent` that is malformed, too long or not a string is ignored: the request starts
/// its own trace, and the call is answered as without one.
#[tokio::test]
async fn a_malformed_traceparent_is_ignored() {
    let receiver = Receiver::start().await;
    let mut env = TestEnv::new().await;
    env.set(vars::OTEL_EXPORTER_OTLP_ENDPOINT, &receiver.base);
    env.reply_text("fine").await;
    let server = env.start().await;
    let long = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01{}", "0".repeat(600));
    for traceparent in [
        json!("00-zz-yy-01"),
        json!(long),
        json!(42),
        json!({"a": 1}),
    ] {
        let mut params = CallToolRequestParams::new("agent_run_task")
            .with_arguments(json!({"task": "t"}).as_object().cloned().unwrap());
        let mut meta = RequestMetaObject::new();
        meta.0.0.insert("traceparent".into(), traceparent);
        params.meta = Some(meta);
        let result = server.client.call_tool(params).await.unwrap();
        assert_eq!(parse_single_text(&result)["ok"], json!(true));
    }
    assert_eq!(server.shutdown().await, 0);
    let spans = receiver.wait_for_n("tools/call agent_run_task", 4).await;
    let requests: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.name == "tools/call agent_run_task")
        .collect();
    assert_eq!(requests.len(), 4, "{spans:#?}");
    for request in requests {
        assert_eq!(request.parent_span_id, "");
        assert_ne!(request.trace_id, TRACE_ID);
    }
}

/// A call made an MCP task answers at once and runs on in a task of its own: its
/// `invoke_agent` is still a child of the `tools/call` that created it, in the caller's trace.
#[tokio::test]
async fn a_run_made_an_mcp_task_stays_under_the_call_that_created_it() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolResponse;

    let receiver = Receiver::start().await;
    let mut env = TestEnv::new().await;
    env.set(vars::OTEL_EXPORTER_OTLP_ENDPOINT, &receiver.base);
    env.set("OTEL_BSP_SCHEDULE_DELAY", "50");
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("task done"))
            .set_delay(Duration::from_millis(300)),
    )
    .await;
    let (mut child, stdin, stdout) = env.spawn_stdio();
    let client = super::tasks::TaskClient
        .serve((stdout, stdin))
        .await
        .unwrap();
    let mut params = CallToolRequestParams::new("agent_run_task")
        .with_arguments(json!({"task": "t"}).as_object().cloned().unwrap());
    let mut meta = RequestMetaObject::new();
    meta.0.0.insert(
        "traceparent".into(),
        json!(format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
    );
    params.meta = Some(meta);
    let response = client.call_tool_once(params).await.unwrap();
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}")
    };
    let settled = super::tasks::poll(&client, &created.task.task_id).await;
    assert_eq!(
        settled.task.task.status,
        rmcp::model::TaskStatus::Completed,
        "{settled:?}"
    );
    let spans = receiver
        .wait_for_each(&["invoke_agent claude-agent-mcp", "tools/call agent_run_task"])
        .await;
    let request = only(&spans, "tools/call agent_run_task");
    assert_eq!(request.trace_id, TRACE_ID);
    assert_eq!(request.parent_span_id, PARENT_SPAN_ID);
    let invoke = only(&spans, "invoke_agent claude-agent-mcp");
    assert_eq!(invoke.trace_id, TRACE_ID);
    assert_eq!(invoke.parent_span_id, request.span_id);
    let _ = client.cancel().await;
    let _ = child.kill().await;
}

/// Words of the Claude Code runs' tasks, answers and tool arguments: never in a span.
const CLI_SECRET: &str = "aubergine";

/// One `result` line of the fake CLI in native mode (`--output-format stream-json`).
fn native_result(result: &str, extra: Value) -> String {
    let mut line = json!({
        "type": "result", "subtype": "success", "is_error": false, "result": result,
        "session_id": "0f5e5a3e-1111-4222-8333-944455556666"
    });
    line.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap());
    line.to_string()
}

/// The request → `invoke_agent` part of the caller's trace, checked: the request span is the
/// child of the caller's span, `invoke_agent` the request's, on `backend`, for `session_id`.
fn request_and_invoke<'a>(
    traced: &'a [Exported],
    tool: &str,
    workflow: &str,
    backend: &str,
    session_id: &str,
) -> (&'a Exported, &'a Exported) {
    let request = only(traced, &format!("tools/call {tool}"));
    assert_eq!(request.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(attr(request, "gen_ai.tool.name"), tool);
    let invoke = only(traced, "invoke_agent claude-agent-mcp");
    assert_eq!(invoke.parent_span_id, request.span_id);
    assert_eq!(invoke.kind, SpanKind::Internal as i32);
    assert_eq!(attr(invoke, "claude_agent_mcp.backend"), backend);
    assert_eq!(attr(invoke, "claude_agent_mcp.workflow"), workflow);
    assert_eq!(attr(invoke, "claude_agent_mcp.outcome"), "completed");
    assert_eq!(attr(invoke, "gen_ai.conversation.id"), session_id);
    (request, invoke)
}

/// No task, answer or tool argument text in any span.
fn assert_no_secret(spans: &[Exported], secrets: &[&str]) {
    for span in spans {
        for secret in secrets {
            assert!(!span.text.contains(secret), "{secret} in {span:#?}");
        }
        assert!(!span.attributes.contains_key("gen_ai.input.messages"));
        assert!(!span.attributes.contains_key("gen_ai.output.messages"));
    }
}

/// A run on the claude_code backend (the fake CLI, native mode) exports request →
/// `invoke_agent` → one `chat` span for the CLI execution, carrying the CLI's reported usage,
/// turns and stop reason and none of the `api`-only attributes; a failing execution's `chat`
/// span carries the error code with status `ERROR`. No task or answer text in any span.
#[tokio::test]
async fn a_claude_code_run_exports_one_chat_span_for_its_cli_execution() {
    let receiver = Receiver::start().await;
    let mut cli = super::claude_code::Cli::new("native").await;
    trace_to(&mut cli.env, &receiver);
    cli.script(
        "stdout",
        &native_result(
            &format!("The {CLI_SECRET} is purple"),
            json!({
                "num_turns": 3, "stop_reason": "end_turn",
                "usage": {"input_tokens": 21, "output_tokens": 13,
                          "cache_read_input_tokens": 8, "cache_creation_input_tokens": 4}
            }),
        ),
    );
    let server = cli.env.start().await;
    let v = call_in_callers_trace(
        &server,
        "agent_run_task",
        json!({"task": format!("Describe the {CLI_SECRET}")}),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        v["result"]["output_text"],
        json!(format!("The {CLI_SECRET} is purple"))
    );
    let session_id = v["session_id"].as_str().unwrap().to_owned();
    assert_eq!(cli.invocations(), 1, "the fake CLI ran once");
    // A failing execution (an API error behind the CLI), in a trace of its own.
    cli.script(
        "stdout",
        &native_result(
            "API Error: 529 Overloaded",
            json!({"is_error": true, "api_error_status": 529, "num_turns": 1}),
        ),
    );
    cli.script("exit", "1");
    let failed = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(failed["ok"], json!(false), "{failed}");
    assert_eq!(cli.invocations(), 2, "the fake CLI ran again");
    assert_eq!(server.shutdown().await, 0, "{}", cli.env.stderr_log());
    let chat_name = "chat claude-sonnet-4-6";
    let spans = receiver.wait_for_n(chat_name, 2).await;

    let traced = in_callers_trace(&spans);
    let names: Vec<&str> = traced.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(traced.len(), 3, "request, invoke_agent, chat: {names:?}");
    let (_, invoke) = request_and_invoke(
        &traced,
        "agent_run_task",
        "run_task",
        "claude_code",
        &session_id,
    );
    let children = children_of(&traced, invoke);
    let child_names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(child_names, [chat_name], "one chat per CLI execution");
    let chat = children[0];
    assert_eq!(chat.trace_id, TRACE_ID);
    assert_eq!(chat.parent_span_id, invoke.span_id);
    assert_eq!(chat.kind, SpanKind::Client as i32);
    assert!(
        invoke.start <= chat.start && chat.end <= invoke.end,
        "{invoke:#?} {chat:#?}"
    );
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", "claude-sonnet-4-6"),
        ("gen_ai.response.finish_reasons", "end_turn"),
        ("gen_ai.usage.input_tokens", "21"),
        ("gen_ai.usage.output_tokens", "13"),
        ("gen_ai.usage.cache_read.input_tokens", "8"),
        ("gen_ai.usage.cache_creation.input_tokens", "4"),
        ("claude_agent_mcp.claude_code.mode", "native"),
        ("claude_agent_mcp.claude_code.turns", "3"),
    ] {
        assert_eq!(attr(chat, key), value, "{key}");
    }
    // The CLI reports no message id, response model or max_tokens: those stay `api`-only.
    for absent in [
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.request.max_tokens",
        "error.type",
    ] {
        assert!(!chat.attributes.contains_key(absent), "{absent}: {chat:#?}");
    }
    assert_eq!(chat.status, SpanStatus::Unset as i32);
    assert!(
        children_of(&spans, chat).is_empty(),
        "the CLI's turns are its own"
    );

    // The failed execution: the error code on its chat span and on its invoke_agent.
    let code = failed["errors"][0]["code"].as_str().unwrap();
    assert_eq!(code, "provider_runtime_error");
    let failed_chat = spans
        .iter()
        .find(|s| s.name == chat_name && s.trace_id != TRACE_ID)
        .expect("the failed execution's chat span");
    assert_eq!(attr(failed_chat, "error.type"), code);
    assert_eq!(failed_chat.status, SpanStatus::Error as i32);
    assert!(
        !failed_chat
            .attributes
            .contains_key("gen_ai.usage.input_tokens")
    );
    let failed_invoke = spans
        .iter()
        .find(|s| s.span_id == failed_chat.parent_span_id)
        .expect("the failed chat's parent");
    assert_eq!(failed_invoke.name, "invoke_agent claude-agent-mcp");
    assert_eq!(attr(failed_invoke, "claude_agent_mcp.outcome"), "failed");
    assert_eq!(attr(failed_invoke, "error.type"), code);
    assert_eq!(failed_invoke.status, SpanStatus::Error as i32);

    assert_no_secret(&spans, &[CLI_SECRET, "Describe"]);
}

/// A mediated action request (`<mediated_action_request>` in the CLI's output) naming
/// `target_tool` with `arguments`.
fn mediated_block(request_id: &str, target_tool: &str, arguments: Value) -> String {
    format!(
        "Let me look that up.\n<mediated_action_request>\n{}\n</mediated_action_request>",
        json!({
            "mediation_version": "v0.8.0", "request_id": request_id, "action_type": "read",
            "target_tool": target_tool, "arguments": arguments, "justification": "need it"
        })
    )
}

/// The claude_code backend (fake CLI, text mode) with execution mediation on and the fixture
/// server federated as `fx` (`echo` and `fail` allowlisted): `mediation::mediated`, traced to
/// `receiver`.
async fn mediated_cli(receiver: &Receiver) -> super::claude_code::Cli {
    let mut cli = super::mediation::mediated(true, true).await;
    trace_to(&mut cli.env, receiver);
    cli
}

/// A mediated tool call exports `execute_tool <tool>` (kind `mediated`, no call id: the
/// model's request has none) as a child of `invoke_agent`, after the `chat` span of the CLI
/// execution whose output asked for it; a mediated call the downstream tool answers with an
/// error carries `error.type=tool_error` and status `ERROR`; one the policy rejects has no
/// span. No argument text in any span.
#[tokio::test]
async fn a_mediated_tool_call_exports_its_execute_tool_span_under_invoke_agent() {
    let receiver = Receiver::start().await;
    let cli = mediated_cli(&receiver).await;
    cli.script(
        "stdout",
        &mediated_block("req_001", "fx__echo", json!({"text": CLI_SECRET})),
    );
    let server = cli.env.start().await;
    let v = call_in_callers_trace(&server, "agent_run_task", json!({"task": "look it up"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let session_id = v["session_id"].as_str().unwrap().to_owned();
    let events = cli.env.events(&session_id).await;
    let completed = events
        .iter()
        .find(|e| e.0 == "mediated_action_completed")
        .unwrap_or_else(|| panic!("the action ran: {events:?}"));
    assert_eq!(completed.2["status"], json!("completed"), "{completed:?}");
    // A second turn (its own trace) whose mediated call the downstream tool fails, and whose
    // second request is rejected by the policy (one action per turn): it runs nothing.
    cli.script(
        "stdout",
        &(mediated_block("req_002", "fx__fail", json!({}))
            + &mediated_block("req_003", "fx__echo", json!({"text": CLI_SECRET}))),
    );
    let c = server
        .call(
            "agent_continue_session",
            json!({"session_id": session_id, "message": "and now?"}),
        )
        .await;
    assert_eq!(c["ok"], json!(true), "{c}");
    let rejected = c["warnings"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        rejected.starts_with("Mediated action 'req_003' for tool 'fx__echo' rejected"),
        "{c}"
    );
    assert_eq!(server.shutdown().await, 0, "{}", cli.env.stderr_log());
    let spans = receiver.wait_for("execute_tool fx__fail").await;

    let traced = in_callers_trace(&spans);
    let (_, invoke) = request_and_invoke(
        &traced,
        "agent_run_task",
        "run_task",
        "claude_code",
        &session_id,
    );
    let children = children_of(&traced, invoke);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["chat claude-sonnet-4-6", "execute_tool fx__echo"]);
    let (chat, tool) = (children[0], children[1]);
    assert_eq!(attr(chat, "claude_agent_mcp.claude_code.mode"), "text");
    assert_eq!(attr(chat, "claude_agent_mcp.claude_code.turns"), "1");
    assert_eq!(
        attr(chat, "gen_ai.response.finish_reasons"),
        "backend_defaulted"
    );
    assert!(
        tool.start >= chat.end,
        "mediation runs after the CLI execution: {chat:#?} {tool:#?}"
    );
    assert!(tool.end <= invoke.end);
    assert_eq!(tool.trace_id, TRACE_ID);
    assert_eq!(tool.kind, SpanKind::Internal as i32);
    for (key, value) in [
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", "fx__echo"),
        ("gen_ai.tool.type", "function"),
        ("claude_agent_mcp.tool.kind", "mediated"),
    ] {
        assert_eq!(attr(tool, key), value, "{key}");
    }
    assert!(
        !tool.attributes.contains_key("gen_ai.tool.call.id"),
        "{tool:#?}"
    );
    assert!(!tool.attributes.contains_key("error.type"), "{tool:#?}");
    assert_eq!(tool.status, SpanStatus::Unset as i32);

    // The failed call, under the continuation's invoke_agent.
    // The rejected request has no span: the only `execute_tool fx__echo` is the first turn's.
    assert_eq!(only(&spans, "execute_tool fx__echo").span_id, tool.span_id);
    let failed = only(&spans, "execute_tool fx__fail");
    assert_ne!(failed.trace_id, TRACE_ID);
    let parent = spans
        .iter()
        .find(|s| s.span_id == failed.parent_span_id)
        .expect("the failed call's parent");
    assert_eq!(parent.name, "invoke_agent claude-agent-mcp");
    assert_eq!(
        attr(parent, "claude_agent_mcp.workflow"),
        "continue_session"
    );
    assert_eq!(attr(failed, "claude_agent_mcp.tool.kind"), "mediated");
    assert_eq!(attr(failed, "error.type"), "tool_error");
    assert_eq!(failed.status, SpanStatus::Error as i32);

    assert_no_secret(&spans, &[CLI_SECRET]);
}

/// A downstream server's tool in the `api` tool loop exports `execute_tool <server>__<tool>`
/// with `claude_agent_mcp.tool.kind=federated` and the model's call id, between the two
/// `chat` spans under `invoke_agent`; one the downstream server fails carries
/// `error.type=tool_error` and status `ERROR`.
#[tokio::test]
async fn a_federated_tool_call_exports_its_execute_tool_span_in_the_tool_loop() {
    let receiver = Receiver::start().await;
    let mut env = super::federation::federated_env().await;
    trace_to(&mut env, &receiver);
    env.reply_tool_use_then(
        json!({
            "id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [
                {"type": "tool_use", "id": "toolu_e", "name": "fx__echo", "input": {"text": CLI_SECRET}},
                {"type": "tool_use", "id": "toolu_f", "name": "fx__fail", "input": {}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 3}
        }),
        "downstream answered",
    )
    .await;
    let server = env.start().await;
    let v = call_in_callers_trace(&server, "agent_run_task", json!({"task": "t"})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let session_id = v["session_id"].as_str().unwrap().to_owned();
    let results = &env.requests().await[1]["messages"][2]["content"];
    assert_eq!(results[0]["content"], json!(format!("fx: {CLI_SECRET}")));
    assert_eq!(results[1]["is_error"], json!(true), "{results}");
    assert_eq!(server.shutdown().await, 0, "{}", env.stderr_log());
    let spans = receiver.wait_for("execute_tool fx__fail").await;

    let traced = in_callers_trace(&spans);
    let (_, invoke) = request_and_invoke(&traced, "agent_run_task", "run_task", "api", &session_id);
    let children = children_of(&traced, invoke);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    let chat = "chat claude-sonnet-4-6";
    assert_eq!(
        names,
        [chat, "execute_tool fx__echo", "execute_tool fx__fail", chat]
    );
    for (tool, name, call_id) in [
        (children[1], "fx__echo", "toolu_e"),
        (children[2], "fx__fail", "toolu_f"),
    ] {
        assert_eq!(tool.kind, SpanKind::Internal as i32);
        assert_eq!(attr(tool, "gen_ai.operation.name"), "execute_tool");
        assert_eq!(attr(tool, "gen_ai.tool.name"), name);
        assert_eq!(attr(tool, "gen_ai.tool.call.id"), call_id);
        assert_eq!(attr(tool, "gen_ai.tool.type"), "function");
        assert_eq!(attr(tool, "claude_agent_mcp.tool.kind"), "federated");
    }
    assert!(
        !children[1].attributes.contains_key("error.type"),
        "{:#?}",
        children[1]
    );
    assert_eq!(children[1].status, SpanStatus::Unset as i32);
    assert_eq!(attr(children[2], "error.type"), "tool_error");
    assert_eq!(children[2].status, SpanStatus::Error as i32);

    assert_no_secret(&spans, &[CLI_SECRET]);
}
