//! Transports (`docs/reference/status.md#4-transports`,
//! `docs/reference/status.md#42-streamable-http`): stdio, and streamable HTTP at `/mcp` with
//! Host/Origin validation (403) and an optional bearer token (401). Over HTTP no request
//! depends on the node that served an earlier one ([`AnyNodeSessions`], `docs/scaling.md`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, Implementation, InitializeRequestParams, ProtocolVersion};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::observability::{Metered, Metrics, Observability, health_routes, metrics_routes};
use crate::server::AgentServer;

/// Transport failures, reported by the binary.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("MCP session failed: {0}")]
    Mcp(String),
}

/// Serves MCP over stdin/stdout until stdin closes.
///
/// Lines that are not JSON never reach the MCP session: each is answered with a JSON-RPC parse
/// error (`-32700`, `id: null`), so a client that sends garbage gets a clear error and the
/// session goes on. Stdout carries only whole JSON-RPC lines, from one writer.
pub async fn serve_stdio(server: AgentServer, metrics: Arc<Metrics>) -> Result<(), TransportError> {
    serve_lines(
        Metered::new(server, metrics),
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .await
}

/// The longest line read (rmcp's own limit); longer lines are not parsed. One whose `id` can
/// be read from its first [`ID_SCAN_BYTES`] bytes is answered with `Invalid Request`
/// carrying that id; any other is dropped, as rmcp does.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// How much of an over-long line is kept to look for its `id`.
const ID_SCAN_BYTES: usize = 4096;

/// [`serve_stdio`] over any line-oriented reader and writer.
///
/// Lines are parsed here, in order (`tools/call` straight into its type, every other line with
/// rmcp's generic message parse: `parse_line`), and handed to the
/// session as messages (rmcp's sink and stream transport) instead of through rmcp's line
/// codec, so that lines that are not messages are answered: well-formed JSON that is not a
/// valid message gets rmcp's `Invalid request` error, unless it is a notification (a
/// `method`, no `id`), which is ignored: rmcp ignores non-standard notifications the same
/// way, and JSON-RPC never answers a notification.
pub async fn serve_lines<S, R, W>(server: S, input: R, output: W) -> Result<(), TransportError>
where
    S: rmcp::Service<rmcp::RoleServer>,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures::StreamExt;
    use tokio::io::{AsyncWriteExt, BufReader};

    let (to_session, incoming) = futures::channel::mpsc::unbounded::<ClientMessage>();
    let (outgoing, mut from_session) = futures::channel::mpsc::unbounded::<ServerMessage>();
    let (errors, mut error_lines) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();

    // Reader: one line at a time, in order, into messages or answers.
    let reader = tokio::spawn(async move {
        let mut input = BufReader::new(input);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            match read_line(&mut input, &mut line, MAX_LINE).await {
                Ok(LineRead::Line) => {}
                Ok(LineRead::Oversized) => {
                    match leading_id(&line) {
                        Some(id) => {
                            tracing::error!(
                                max_line_length = MAX_LINE,
                                "stdin line longer than the limit: answered with Invalid Request"
                            );
                            let _ = errors.send(oversized_line_answer(id, MAX_LINE));
                        }
                        None => tracing::error!(
                            max_line_length = MAX_LINE,
                            "stdin line longer than the limit, no id in its beginning: dropped"
                        ),
                    }
                    continue;
                }
                Ok(LineRead::Eof) | Err(_) => break,
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match parse_line(text) {
                Parsed::Message(message) => {
                    if to_session.unbounded_send(*message).is_err() {
                        break;
                    }
                }
                Parsed::NotJson => {
                    tracing::warn!(
                        bytes = text.len(),
                        "stdin line is not JSON: answered with a parse error"
                    );
                    let _ = errors.send(PARSE_ERROR_LINE.to_vec());
                }
                Parsed::Invalid { error } => {
                    tracing::debug!(%error, "stdin line is not a valid JSON-RPC message");
                    let _ = errors.send(invalid_request_line());
                }
                Parsed::IgnoredNotification { error } => {
                    tracing::debug!(%error, "stdin notification not understood: ignored");
                }
            }
        }
        // Dropping `to_session` ends the session's input: the session stops, as on a closed
        // stdin.
    });

    // Writer: whole lines from the session and the answers of the reader, one at a time.
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut buffer = Vec::with_capacity(4096);
        let mut session_open = true;
        let mut errors_open = true;
        while session_open || errors_open {
            // Reader answers first: they answer lines read before anything still in the session.
            tokio::select! {
                biased;
                error = error_lines.recv(), if errors_open => {
                    match error {
                        None => errors_open = false,
                        Some(bytes) => {
                            if output.write_all(&bytes).await.is_err() || output.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
                message = from_session.next(), if session_open => {
                    let Some(message) = message else {
                        session_open = false;
                        continue;
                    };
                    buffer.clear();
                    if let Err(e) = serde_json::to_writer(&mut buffer, &message) {
                        tracing::error!(error = %e, "a message to the client could not be encoded");
                        continue;
                    }
                    buffer.push(b'\n');
                    if output.write_all(&buffer).await.is_err() || output.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let running = server
        .serve((outgoing, incoming))
        .await
        .map_err(|e| TransportError::Mcp(e.to_string()))?;
    let quit = running
        .waiting()
        .await
        .map_err(|e| TransportError::Mcp(e.to_string()));
    reader.abort();
    let _ = writer.await;
    quit.map(|_| ())
}

type ClientMessage = rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>;
type ServerMessage = rmcp::service::TxJsonRpcMessage<rmcp::RoleServer>;

/// What one stdin line is.
#[derive(Debug)]
enum Parsed {
    Message(Box<ClientMessage>),
    NotJson,
    /// JSON with an `id` that is no valid message: answered with `Invalid request`.
    Invalid {
        error: serde_json::Error,
    },
    /// A notification (a `method` and no `id`) that is no valid message: ignored.
    IgnoredNotification {
        error: serde_json::Error,
    },
}

/// The fields every message is told apart by, borrowed from the line.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    id: Option<serde::de::IgnoredAny>,
    // rmcp refuses a request that also carries `result` or `error`, whatever their values.
    #[serde(default)]
    result: Present,
    #[serde(default)]
    error: Present,
}

/// Whether a key was there at all: `null` counts (an `Option` would read it as absent).
#[derive(Default)]
struct Present(bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(value: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(value).map(|_| Present(true))
    }
}

fn parse_line(text: &[u8]) -> Parsed {
    use rmcp::model::{CallToolRequest, ClientRequest, JsonRpcMessage, JsonRpcRequest};
    use serde_json::error::Category;

    let probe = match serde_json::from_slice::<Probe<'_>>(text) {
        Ok(probe) => Some(probe),
        Err(e) if matches!(e.classify(), Category::Syntax | Category::Eof) => {
            return Parsed::NotJson;
        }
        // JSON, but not an object: the generic parse below says why.
        Err(_) => None,
    };
    // `tools/call`, nearly every request this server gets, is parsed straight into its type:
    // rmcp's generic parse tries the request kinds one by one and builds (and formats) a
    // `serde_json` error for each kind before it, about 24,000 instructions per call
    // (`docs/performance.md`, "Performance devices"). `tool_calls_parse_like_rmcp` checks that
    // both parses agree.
    let is_call = probe
        .as_ref()
        .is_some_and(|p| p.method.as_deref() == Some("tools/call") && !p.result.0 && !p.error.0);
    if is_call && let Ok(call) = serde_json::from_slice::<JsonRpcRequest<CallToolRequest>>(text) {
        return Parsed::Message(Box::new(JsonRpcMessage::Request(JsonRpcRequest {
            jsonrpc: call.jsonrpc,
            id: call.id,
            request: ClientRequest::CallToolRequest(call.request),
        })));
    }
    match serde_json::from_slice::<ClientMessage>(text) {
        Ok(message) => Parsed::Message(Box::new(message)),
        Err(error) if probe.is_some_and(|p| p.method.is_some() && p.id.is_none()) => {
            Parsed::IgnoredNotification { error }
        }
        Err(error) => Parsed::Invalid { error },
    }
}

/// rmcp's answer to a well-formed line that is not a valid message, on its own line.
fn invalid_request_line() -> Vec<u8> {
    let message = ServerMessage::error(
        rmcp::ErrorData::invalid_request("Invalid request", None),
        None,
    );
    let mut line = serde_json::to_vec(&message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The answer to an over-long line whose `id` could be read: `Invalid Request` (`-32600`)
/// with that id and the limit, on its own line.
fn oversized_line_answer(id: rmcp::model::RequestId, max: usize) -> Vec<u8> {
    let message = ServerMessage::error(
        rmcp::ErrorData::invalid_request(
            format!("Invalid Request: the line is longer than the limit of {max} bytes"),
            None,
        ),
        Some(id),
    );
    let mut line = serde_json::to_vec(&message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The `id` of a JSON object from the beginning of its text, when a top-level `"id"` member
/// with a number or string value lies wholly within `prefix`. One pass over `prefix`, which
/// may end anywhere: nothing past it is needed or looked for.
fn leading_id(prefix: &[u8]) -> Option<rmcp::model::RequestId> {
    let mut at = skip_space(prefix, 0);
    if prefix.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(prefix, at);
        if prefix.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(prefix, at)?;
        let key = &prefix[at + 1..key_end - 1];
        at = skip_space(prefix, key_end);
        if prefix.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(prefix, at + 1);
        let value_end = value_end(prefix, at)?;
        if key == b"id" {
            return serde_json::from_slice(&prefix[at..value_end]).ok();
        }
        at = skip_space(prefix, value_end);
        if prefix.get(at) != Some(&b',') {
            return None;
        }
        at += 1;
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        at += 1;
    }
    at
}

/// The end (one past the closing quote) of the string starting at `text[at] == '"'`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The end of the JSON value starting at `at`, when it ends within `text`.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = text.get(i) {
                match b {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            // A number or a literal: up to the next delimiter, which must be in `text` (a
            // number cut by the end of the prefix is not the whole number).
            let len = text[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
            (len > 0).then_some(at + len)
        }
    }
}

enum LineRead {
    Line,
    Oversized,
    Eof,
}

/// Reads one line (with its `\n`, if any) into `line`, keeping at most `max` bytes: a longer
/// line is consumed to its end and reported as [`LineRead::Oversized`], with its first
/// [`ID_SCAN_BYTES`] bytes (at most) left in `line`. A last line without a newline is still a
/// line.
async fn read_line<R>(input: &mut R, line: &mut Vec<u8>, max: usize) -> std::io::Result<LineRead>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;

    let mut oversized = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (oversized, line.is_empty()) {
                (true, _) => LineRead::Oversized,
                (false, true) => LineRead::Eof,
                (false, false) => LineRead::Line,
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let taken = chunk.len();
        if !oversized && line.len() + taken > max {
            oversized = true;
            let room = ID_SCAN_BYTES.saturating_sub(line.len()).min(taken);
            line.extend_from_slice(&chunk[..room]);
            line.truncate(ID_SCAN_BYTES);
            line.shrink_to(ID_SCAN_BYTES.max(4096));
        }
        if !oversized {
            line.extend_from_slice(chunk);
        }
        input.consume(taken);
        if done {
            return Ok(if oversized {
                LineRead::Oversized
            } else {
                LineRead::Line
            });
        }
    }
}

/// The JSON-RPC 2.0 parse error, on its own line.
const PARSE_ERROR_LINE: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error: the line is not JSON\"}}\n";

/// Settings of the HTTP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    pub host: String,
    pub port: u16,
    /// Extra allowed `Origin` values (`CLAUDE_AGENT_MCP_ALLOWED_ORIGINS`); loopback origins
    /// are always allowed.
    pub allowed_origins: Vec<String>,
    /// `CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN`.
    pub bearer_token: Option<String>,
    /// Idle MCP sessions are closed after this long.
    pub session_idle: Duration,
    /// `CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT`: a connection must send its first bytes, and
    /// each HTTP/1.1 request's whole head, within this long; an HTTP/1.1 connection idle
    /// between requests is closed after it too.
    pub header_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed (an open
    /// event stream carries a keep-alive comment every 15 s, so it is never idle).
    pub idle_timeout: Duration,
    /// `CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS`: connections served at once; one more is
    /// answered `503` and closed.
    pub max_connections: usize,
}

impl HttpOptions {
    /// Options for `host:port` with the configured connection bounds (their defaults belong
    /// to the configuration); the rest take the transport's own defaults.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        header_timeout: Duration,
        max_connections: usize,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            allowed_origins: Vec::new(),
            bearer_token: None,
            session_idle: Duration::from_secs(1800),
            header_timeout,
            idle_timeout: Duration::from_secs(120),
            max_connections,
        }
    }
}

/// Whether `host` is the wildcard address (`0.0.0.0`, `::`), bound on every interface.
fn is_wildcard_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// The axum router: `/mcp` exactly (no redirect), guarded by the bearer check.
///
/// The `Host` header must name a loopback host (`localhost`, `127.0.0.1`, `::1`) or the bound
/// host itself (any address: whether a bind needs a bearer token is the configuration's rule,
/// `agent_policy::config::is_loopback_host`). Bound to the wildcard address, clients on the network name the machine however
/// they reach it, so any `Host` is admitted there; the bearer token (required off loopback)
/// and the `Origin` check still apply.
///
/// `/metrics` is guarded by the same bearer check as `/mcp`; `/healthz` and `/readyz` are not
/// (`crate::observability`).
pub fn router(
    server: AgentServer,
    options: &HttpOptions,
    shutdown: CancellationToken,
    observability: &Observability,
) -> axum::Router {
    let mut hosts: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
    ];
    if !hosts.contains(&options.host) {
        hosts.push(options.host.clone());
    }
    let mut origins: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")])
        .collect();
    origins.extend(options.allowed_origins.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token());
    config.session_store = Some(Arc::new(AnyNodeSessions));
    if is_wildcard_host(&options.host) {
        config = config.disable_allowed_hosts();
    }
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(options.session_idle);
    let service = Metered::new(server, Arc::clone(&observability.metrics));
    let service =
        StreamableHttpService::new(move || Ok(service.clone()), Arc::new(sessions), config);
    let mcp = axum::Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn(carry_protocol_version))
        .merge(metrics_routes(observability));
    with_bearer(mcp, options.bearer_token.as_deref()).merge(health_routes(observability))
}

/// `routes` behind the bearer check when a token is set (`401` without it).
pub(crate) fn with_bearer(routes: axum::Router, token: Option<&str>) -> axum::Router {
    let bearer = token.map(|t| Arc::new(token_digest(t.as_bytes())));
    routes.layer(middleware::from_fn_with_state(bearer, require_bearer))
}

/// The MCP transport session of a 2025-03-26 … 2025-11-25 client (`Mcp-Session-Id`) is served
/// by whichever node the request reaches: a session id this node does not hold is taken up
/// here, as if the client had initialized with this node, instead of answered `404`. So a
/// fleet behind a load balancer without affinity serves every client, and a restarted node
/// keeps serving the ids it issued before (`docs/scaling.md#what-stays-on-one-node`).
///
/// Nothing is stored: an agent session lives in the store, not in the transport session, and
/// the transport session's one fact that matters, the protocol version, is in every request
/// (`MCP-Protocol-Version`, carried here by [`carry_protocol_version`]; without it, 2025-03-26,
/// as the specification says). The client's declared capabilities are not known on a node
/// that did not see its `initialize`: such a node runs long tool calls inline, never as MCP
/// tasks (whose state stays on the node that created them). The bearer token, Host and
/// Origin checks run before any of this, on every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyNodeSessions;

/// The longest session id taken up; rmcp's own ids are 36 characters.
const MAX_SESSION_ID: usize = 128;

/// The longest `MCP-Protocol-Version` value read (versions are dates, `YYYY-MM-DD`).
const MAX_VERSION_HEADER: usize = 32;

tokio::task_local! {
    /// The `MCP-Protocol-Version` of the request being served, for [`AnyNodeSessions`].
    static REQUEST_PROTOCOL_VERSION: Option<ProtocolVersion>;
}

/// Whether `id` can be a session id: 1 to [`MAX_SESSION_ID`] visible ASCII characters
/// (the specification's alphabet for `Mcp-Session-Id`).
fn is_session_id(id: &str) -> bool {
    (1..=MAX_SESSION_ID).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The client name of a transport session taken up from another node ([`taken_up_session`]).
pub const TAKEN_UP_CLIENT: &str = "unknown (session taken up from another node)";

/// The transport session a node that never saw the client's `initialize` sets up: the
/// request's protocol version, and the tasks extension only, so that `tasks/get` and
/// `tasks/cancel` for a task another node created pass rmcp's capability check (task state is
/// in the store). Calls through it are still answered directly, never as tasks
/// (`server::client_supports_tasks`): the node does not know what the client declared.
fn taken_up_session(version: Option<ProtocolVersion>) -> SessionState {
    let params = InitializeRequestParams::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new(TAKEN_UP_CLIENT, "0"),
    )
    .with_protocol_version(version.unwrap_or(ProtocolVersion::V_2025_03_26));
    SessionState::new(params)
}

impl SessionStore for AnyNodeSessions {
    fn load<'a, 'b, 'c>(
        &'a self,
        session_id: &'b str,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Option<SessionState>, SessionStoreError>> + Send + 'c>,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        // Read when polled, inside the request's scope.
        Box::pin(async move {
            Ok(is_session_id(session_id).then(|| {
                let version = REQUEST_PROTOCOL_VERSION
                    .try_with(Clone::clone)
                    .ok()
                    .flatten();
                tracing::debug!(
                    session_id,
                    ?version,
                    "transport session from another node (or before a restart) taken up"
                );
                taken_up_session(version)
            }))
        })
    }

    fn store<'a, 'b, 'c, 'd>(
        &'a self,
        _session_id: &'b str,
        _state: &'c SessionState,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SessionStoreError>> + Send + 'd>>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
    {
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a, 'b, 'c>(
        &'a self,
        _session_id: &'b str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SessionStoreError>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
    {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The request's `MCP-Protocol-Version` (when it is a short visible-ASCII value naming a
/// version) is made known to [`AnyNodeSessions`] while the request is handled.
async fn carry_protocol_version(request: Request, next: Next) -> Response {
    let version = request
        .headers()
        .get("mcp-protocol-version")
        .filter(|v| v.len() <= MAX_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_value(serde_json::Value::String(v.to_owned())).ok());
    REQUEST_PROTOCOL_VERSION
        .scope(version, next.run(request))
        .await
}

type Digest = [u8; 32];

fn token_digest(token: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token).into()
}

/// Whether an `Authorization` value carries the expected bearer token: the scheme is matched
/// without regard to case (RFC 9110 §11.1), and the token is compared through its SHA-256
/// digest in constant time, so neither the position of a difference nor the token's length
/// shows in the time taken.
fn bearer_matches(value: &[u8], expected: &Digest) -> bool {
    use subtle::ConstantTimeEq;

    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let token = rest.trim_ascii();
    token_digest(token).ct_eq(expected).into()
}

async fn require_bearer(
    State(expected): State<Option<Arc<Digest>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = expected {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !bearer_matches(given, &expected) {
            let mut response =
                (StatusCode::UNAUTHORIZED, "missing or invalid bearer token").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// What a connection over the limit gets before it is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n";

/// The HTTP/2 connection preface (h2c with prior knowledge starts with it).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Binds `host:port` and serves until `shutdown` fires. Returns the bound address through
/// `on_bound` (useful with port 0).
///
/// Each connection is served by hyper, HTTP/1.1 or HTTP/2 (h2c with prior knowledge, told
/// apart by its preface), with the bounds of [`HttpOptions`]: the first bytes and every
/// HTTP/1.1 request head within `header_timeout`, no connection silent for `idle_timeout`,
/// and at most `max_connections` at once (one more is answered `503` and closed at once).
/// On shutdown no connection is accepted any more, open ones are closed gracefully, and
/// the wait for them is bounded.
pub async fn serve_http(
    server: AgentServer,
    options: HttpOptions,
    observability: &Observability,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), TransportError> {
    let addr = format!("{}:{}", options.host, options.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| TransportError::Bind { addr, source })?;
    if let Ok(local) = listener.local_addr() {
        on_bound(local);
    }
    let app = router(server, &options, shutdown.clone(), observability);
    serve_app(listener, app, ConnectionBounds::from(&options), shutdown).await;
    Ok(())
}

/// Serves `app` on `listener` under `bounds` until `shutdown` fires (the accept loop of
/// [`serve_http`], also the metrics address's).
pub(crate) async fn serve_app(
    listener: TcpListener,
    app: axum::Router,
    bounds: ConnectionBounds,
    shutdown: CancellationToken,
) {
    let max = bounds.max_connections.max(1);
    let limits = Arc::new(bounds);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    // Connections turned away are answered from their own short-lived tasks, themselves
    // bounded: past this many, one is simply closed.
    let refusals = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, max_connections = max, "HTTP connection over the limit: answered 503");
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    let _refusal = refusal;
                    refuse(stream).await;
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let limits = Arc::clone(&limits);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, app, &limits, shutdown).await;
        });
    }
    drop(listener);
    // Every slot back means every connection has ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open 10 s after shutdown: closed");
    }
}

/// The connection bounds of an HTTP listener ([`HttpOptions`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionBounds {
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

impl From<&HttpOptions> for ConnectionBounds {
    fn from(options: &HttpOptions) -> Self {
        Self {
            header_timeout: options.header_timeout,
            idle_timeout: options.idle_timeout,
            max_connections: options.max_connections,
        }
    }
}

/// Answers a connection over the limit with `503` and closes it, within a bounded time.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        // Let the client send its request first (up to 1 s): an HTTP client that gets an
        // answer before it has written its request reports an unexpected message, not 503.
        let mut first = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut first)).await;
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await?;
        // Read what the client sent, so that closing does not reset the connection before
        // it has read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// Serves one connection until it ends, goes idle, or `shutdown` fires.
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    app: axum::Router,
    limits: &ConnectionBounds,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let sniffed = tokio::select! {
        () = shutdown.cancelled() => return,
        sniffed = tokio::time::timeout(limits.header_timeout, sniff(&mut stream)) => sniffed,
    };
    let (prefix, http2) = match sniffed {
        Ok(Ok(sniffed)) => sniffed,
        Ok(Err(_)) => return,
        Err(_) => {
            tracing::debug!("HTTP connection sent no request within the header timeout: closed");
            return;
        }
    };
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        prefix,
        read: 0,
        activity: Arc::clone(&activity),
    });
    let service = TowerToHyperService::new(app);
    let served: std::pin::Pin<Box<dyn ConnectionFuture>> = if http2 {
        Box::pin(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, service),
        )
    } else {
        Box::pin(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(io, service),
        )
    };
    let mut served = served;
    let mut check = tokio::time::interval(
        limits
            .idle_timeout
            .min(limits.header_timeout)
            .max(Duration::from_millis(100))
            / 2,
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                served.as_mut().shut_down();
                closing = true;
            }
            _ = check.tick() => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!("HTTP connection idle: closed");
                    return;
                }
            }
        }
    }
}

/// A hyper connection of either protocol: served to its end, or told to finish gracefully.
trait ConnectionFuture: std::future::Future<Output = hyper::Result<()>> + Send {
    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<I, S> ConnectionFuture for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send,
    S::ResBody: Send,
    <S::ResBody as hyper::body::Body>::Data: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> ConnectionFuture
    for hyper::server::conn::http2::Connection<I, S, hyper_util::rt::TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Reads the first bytes of a connection, as many as tell HTTP/2's preface from anything
/// else: (the bytes read, whether they are the preface).
async fn sniff(stream: &mut tokio::net::TcpStream) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 24];
    loop {
        let n = stream
            .read(&mut chunk[..H2_PREFACE.len() - read.len()])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        read.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&read) {
            return Ok((read, false));
        }
        if read.len() == H2_PREFACE.len() {
            return Ok((read, true));
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A connection's stream with the bytes already sniffed put back in front, noting activity.
struct Watched {
    stream: tokio::net::TcpStream,
    prefix: Vec<u8>,
    read: usize,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node takes up a session it never saw with the protocol version of the request that
    /// names it (2025-03-26 when none is named), and only ids of the specification's alphabet.
    #[tokio::test]
    async fn a_session_from_another_node_is_taken_up_with_the_request_s_version() {
        let load = |id: &'static str| AnyNodeSessions.load(id);
        let taken = REQUEST_PROTOCOL_VERSION
            .scope(Some(ProtocolVersion::V_2025_11_25), load("a-b-c"))
            .await
            .unwrap()
            .expect("taken up");
        assert_eq!(
            taken.initialize_params.protocol_version,
            ProtocolVersion::V_2025_11_25
        );
        // The tasks extension only, so tasks/get and tasks/cancel pass rmcp's check; the name
        // tells the server not to create tasks through it.
        assert!(taken.initialize_params.capabilities.supports_tasks());
        assert_eq!(taken.initialize_params.client_info.name, TAKEN_UP_CLIENT);
        let unnamed = REQUEST_PROTOCOL_VERSION
            .scope(None, load("a-b-c"))
            .await
            .unwrap()
            .expect("taken up");
        assert_eq!(
            unnamed.initialize_params.protocol_version,
            ProtocolVersion::V_2025_03_26
        );
        for bad in ["", "a b", "é", "\u{7f}"] {
            assert!(load(bad).await.unwrap().is_none(), "{bad:?}");
        }
        let long: &'static str = "x".repeat(MAX_SESSION_ID + 1).leak();
        assert!(load(long).await.unwrap().is_none());
        let longest: &'static str = "x".repeat(MAX_SESSION_ID).leak();
        assert!(load(longest).await.unwrap().is_some());
    }

    fn generic(text: &str) -> ClientMessage {
        serde_json::from_str(text).unwrap()
    }

    /// A `tools/call` line gives exactly what rmcp's generic parse gives, `_meta` (the
    /// progress token) and unknown fields included.
    #[test]
    fn tool_calls_parse_like_rmcp() {
        for text in [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"agent_get_session","arguments":{"session_id":"sess_x"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"agent_run_task","arguments":{"task":"t"},"_meta":{"progressToken":5}}}"#,
            r#"{"id":1,"params":{"name":"x","task":{"ttl":1000}},"method":"tools/call","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#,
        ] {
            let Parsed::Message(message) = parse_line(text.as_bytes()) else {
                panic!("{text}");
            };
            let expected = generic(text);
            assert_eq!(format!("{message:?}"), format!("{expected:?}"), "{text}");
            assert_eq!(
                serde_json::to_value(&*message).unwrap(),
                serde_json::to_value(&expected).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn every_other_line_gets_rmcp_s_parse_or_an_answer() {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let Parsed::Message(message) = parse_line(ping.as_bytes()) else {
            panic!("ping");
        };
        assert_eq!(format!("{message:?}"), format!("{:?}", generic(ping)));
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(
            parse_line(initialized.as_bytes()),
            Parsed::Message(_)
        ));
        // A tools/call without a name, or an unknown method, is a custom request to rmcp's
        // generic parse (answered by the session).
        for text in [
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#,
        ] {
            let Parsed::Message(message) = parse_line(text.as_bytes()) else {
                panic!("{text}");
            };
            assert_eq!(format!("{message:?}"), format!("{:?}", generic(text)));
        }
        for text in ["garbage", "{\"jsonrpc\":", "\u{feff}{}"] {
            assert!(
                matches!(parse_line(text.as_bytes()), Parsed::NotJson),
                "{text}"
            );
        }
        // A tools/call that also carries `result` or `error` is refused as rmcp refuses it,
        // not run by the direct parse.
        for text in [
            "[1,2]",
            "42",
            "{}",
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"agent_get_session","arguments":{}},"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"agent_get_session","arguments":{}},"error":{}}"#,
        ] {
            assert!(
                matches!(parse_line(text.as_bytes()), Parsed::Invalid { .. }),
                "{text}"
            );
        }
        // Unknown notifications are custom notifications for the session, as in rmcp.
        let unknown = r#"{"jsonrpc":"2.0","method":"notifications/unknown"}"#;
        assert!(matches!(parse_line(unknown.as_bytes()), Parsed::Message(_)));
        let foreign = r#"{"jsonrpc":"1.0","method":"textDocument/didOpen"}"#;
        assert!(matches!(
            parse_line(foreign.as_bytes()),
            Parsed::IgnoredNotification { .. }
        ));
        assert_eq!(
            String::from_utf8(invalid_request_line()).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid request\"}}\n"
        );
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let text = b"short\nthis line is far too long\nok\nlast without newline";
        let mut input = tokio::io::BufReader::with_capacity(4, &text[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            line.clear();
            match read_line(&mut input, &mut line, 10).await.unwrap() {
                LineRead::Eof => break,
                LineRead::Oversized => seen.push("<oversized>".to_owned()),
                LineRead::Line => seen.push(String::from_utf8(line.clone()).unwrap()),
            }
        }
        assert_eq!(
            seen,
            ["short\n", "<oversized>", "ok\n", "<oversized>"],
            "a line over the limit is dropped whole, the next one is read"
        );
        let mut input = tokio::io::BufReader::new(&b"tail"[..]);
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line, 10).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, b"tail");
    }

    #[test]
    fn the_id_of_an_over_long_line_is_read_from_its_beginning() {
        use rmcp::model::NumberOrString;
        let number = |n| Some(NumberOrString::Number(n));
        let string = |s: &str| Some(NumberOrString::String(s.into()));
        for (prefix, id) in [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"aaaa"#,
                number(7),
            ),
            (r#" { "id" : "abc" , "method""#, string("abc")),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","id":-3,"params":"#,
                number(-3),
            ),
            (
                r#"{"a":{"id":1,"b":[1,"]}",{"c":"\"}"}]},"id":"x\"y","params":"#,
                string("x\"y"),
            ),
            // Not found within the prefix, or not usable.
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"id":5,"x":"aaa"#,
                None,
            ),
            (r#"{"jsonrpc":"2.0","id":12"#, None),
            (r#"{"jsonrpc":"2.0","id":"unterminated"#, None),
            (r#"{"id":null,"method":"x"}"#, None),
            (r#"{"id":1.5,"method":"x"}"#, None),
            (r#"{"id":{"a":1},"method":"x"}"#, None),
            (r#"[{"id":1}]"#, None),
            ("garbage", None),
            ("", None),
        ] {
            assert_eq!(leading_id(prefix.as_bytes()), id, "{prefix}");
        }
        assert_eq!(
            String::from_utf8(oversized_line_answer(NumberOrString::Number(7), 10)).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32600,\"message\":\"Invalid Request: the line is longer than the limit of 10 bytes\"}}\n"
        );
    }

    #[tokio::test]
    async fn an_over_long_line_keeps_its_beginning() {
        let text = b"{\"id\":1,\"x\":\"this line is far too long\"}\nok\n";
        let mut input = tokio::io::BufReader::with_capacity(4, &text[..]);
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut line, 10).await.unwrap(),
            LineRead::Oversized
        ));
        assert!(text.starts_with(&line) && line.len() > 10, "{line:?}");
        assert_eq!(
            leading_id(&line),
            Some(rmcp::model::NumberOrString::Number(1))
        );
        line.clear();
        assert!(matches!(
            read_line(&mut input, &mut line, 10).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, b"ok\n");
    }

    #[test]
    fn wildcard_hosts() {
        for h in ["0.0.0.0", "::", "[::]"] {
            assert!(is_wildcard_host(h), "{h}");
        }
        for h in ["127.0.0.1", "localhost", "10.0.0.1", "example.com"] {
            assert!(!is_wildcard_host(h), "{h}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let expected = token_digest(b"s3cret");
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR  s3cret ",
        ] {
            assert!(bearer_matches(ok.as_bytes(), &expected), "{ok}");
        }
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "s3cret",
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer s3cret2",
            "Basic s3cret",
            "Bearers3cret",
            "Bearer S3CRET",
            "Bearer s3 cret",
        ] {
            assert!(!bearer_matches(bad.as_bytes(), &expected), "{bad}");
        }
    }
}
