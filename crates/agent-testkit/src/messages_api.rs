//! A stand-in for the Anthropic Messages API on a local wiremock server, as the real Claude
//! Code CLI talks to it: `POST /v1/messages` (query ignored) answered by a [`Script`],
//! streamed (SSE) when the request asks for `stream: true` and as one JSON message otherwise.
//! Not a model: the answers only have the real API's shape.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the stand-in answers.
#[derive(Clone, Debug)]
pub enum Script {
    /// Request n (0-based) gets the text `reply <n>`.
    Numbered,
    /// Request n (0-based) gets `texts[n]` (the last one once they run out).
    Texts(Vec<String>),
    /// Tool calls, one per request, `(name, input)` in order (the next one is the first the
    /// conversation has no `tool_result` for yet), then the text `then`. A string
    /// [`SESSION_PLACEHOLDER`] in an input is replaced by the last session id (`sess_` and 16
    /// hex digits) the conversation holds, e.g. one a previous tool result named.
    ToolsThenText {
        calls: Vec<(String, Value)>,
        then: String,
    },
    /// An API error with this status.
    Status(u16),
    /// The answer of the inner script, after this delay.
    Delayed(Duration, Box<Script>),
}

impl Script {
    /// The same text for every request.
    pub fn text(text: &str) -> Self {
        Self::Texts(vec![text.to_owned()])
    }
}

/// Replaced in a [`Script::ToolsThenText`] input by the conversation's last session id.
pub const SESSION_PLACEHOLDER: &str = "$LAST_SESSION_ID";

/// The last `sess_` + 16 lowercase hex digits in `text`.
pub fn last_session_id(text: &str) -> Option<String> {
    text.match_indices("sess_")
        .filter_map(|(at, _)| text.get(at..at + 21))
        .filter(|id| {
            id[5..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
        .last()
        .map(str::to_owned)
}

/// `input` with every string equal to [`SESSION_PLACEHOLDER`] replaced by the last session id
/// of the request `body`.
fn with_session(input: &Value, body: &Value) -> Value {
    match input {
        Value::String(s) if s == SESSION_PLACEHOLDER => {
            let messages = body["messages"].to_string();
            Value::String(last_session_id(&messages).unwrap_or_default())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_session(v, body)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| with_session(v, body)).collect()),
        other => other.clone(),
    }
}

struct StandIn {
    script: Script,
    calls: AtomicUsize,
}

/// The SSE body of `events`.
pub fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// How many `tool_result` blocks the messages of a request carry.
pub fn tool_results(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .count()
}

fn usage() -> Value {
    json!({"input_tokens": 11, "output_tokens": 1,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

/// A streamed assistant message with one content block.
pub fn streamed_message(n: usize, model: &str, block: Value, delta: Value, stop: &str) -> String {
    sse(&[
        json!({"type": "message_start", "message": {"id": format!("msg_sse_{n}"),
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage()}}),
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ])
}

/// A streamed text answer.
pub fn streamed_text(n: usize, model: &str, text: &str) -> String {
    streamed_message(
        n,
        model,
        json!({"type": "text", "text": ""}),
        json!({"type": "text_delta", "text": text}),
        "end_turn",
    )
}

/// One content block of an answer: a text or a tool call.
enum Block<'a> {
    Text(&'a str),
    Tool(usize, &'a str, &'a Value),
}

fn message(n: usize, body: &Value, block: Block<'_>) -> ResponseTemplate {
    let model = body["model"].as_str().unwrap_or("claude-test");
    let streaming = body["stream"] == true;
    let (text_or_tool, stop) = match block {
        Block::Text(text) => (Ok(text), "end_turn"),
        Block::Tool(k, name, input) => (Err((k, name, input)), "tool_use"),
    };
    if streaming {
        let sse_body = match text_or_tool {
            Ok(text) => streamed_text(n, model, text),
            Err((k, name, input)) => streamed_message(
                n,
                model,
                json!({"type": "tool_use", "id": format!("toolu_sse_{k}"), "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                stop,
            ),
        };
        return ResponseTemplate::new(200).set_body_raw(sse_body, "text/event-stream");
    }
    let content = match text_or_tool {
        Ok(text) => json!([{"type": "text", "text": text}]),
        Err((k, name, input)) => {
            json!([{"type": "tool_use", "id": format!("toolu_sse_{k}"), "name": name, "input": input}])
        }
    };
    ResponseTemplate::new(200).set_body_json(json!({"id": format!("msg_sse_{n}"),
        "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": null, "usage": usage()}))
}

/// The answer of `script` to request `n` (0-based) with JSON `body`.
fn answer(script: &Script, n: usize, body: &Value) -> ResponseTemplate {
    match script {
        Script::Numbered => message(n, body, Block::Text(&format!("reply {n}"))),
        Script::Texts(texts) => {
            let text = texts.get(n).or(texts.last()).map_or("", String::as_str);
            message(n, body, Block::Text(text))
        }
        Script::ToolsThenText { calls, then } => match calls.get(tool_results(body)) {
            Some((tool, input)) => {
                message(n, body, Block::Tool(n, tool, &with_session(input, body)))
            }
            None => message(n, body, Block::Text(then)),
        },
        Script::Status(status) => {
            let (kind, message) = match status {
                400 => ("invalid_request_error", "stand-in rejected the request"),
                401 => ("authentication_error", "invalid x-api-key"),
                429 => ("rate_limit_error", "rate limit reached for requests"),
                _ => ("overloaded_error", "Overloaded"),
            };
            ResponseTemplate::new(*status).set_body_json(
                json!({"type": "error", "error": {"type": kind, "message": message}}),
            )
        }
        Script::Delayed(delay, inner) => answer(inner, n, body).set_delay(*delay),
    }
}

impl Respond for StandIn {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        answer(&self.script, n, &body)
    }
}

/// Replaces what `api` answers on `POST /v1/messages` (query ignored) with `script`; every
/// other request gets wiremock's 404.
pub async fn mount(api: &MockServer, script: Script) {
    api.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(StandIn {
            script,
            calls: AtomicUsize::new(0),
        })
        .mount(api)
        .await;
}

/// A new stand-in answering `script`.
pub async fn start(script: Script) -> MockServer {
    let api = MockServer::start().await;
    mount(&api, script).await;
    api
}

/// The JSON bodies of the `POST /v1/messages` requests `api` received, in order.
pub async fn message_bodies(api: &MockServer) -> Vec<Value> {
    api.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/messages")
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// `METHOD path?query` of every request `api` received, for diagnostics.
pub async fn request_lines(api: &MockServer) -> Vec<String> {
    api.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect()
}

/// Every text the model was sent in `body`'s messages (blocks without text as JSON).
pub fn texts(body: &Value) -> String {
    let mut out = String::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(text) => out.push_str(text),
            Value::Array(blocks) => {
                for block in blocks {
                    match block["text"].as_str() {
                        Some(text) => out.push_str(text),
                        None => out.push_str(&block.to_string()),
                    }
                    out.push('\n');
                }
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}
