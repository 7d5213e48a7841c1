//! Transports (`status.md` §4, `beyond.md` §3): stdio, and streamable HTTP at `/mcp` with
//! Host/Origin validation (403) and an optional bearer token (401).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
pub async fn serve_stdio(server: AgentServer) -> Result<(), TransportError> {
    serve_lines(server, tokio::io::stdin(), tokio::io::stdout()).await
}

/// [`serve_stdio`] over any line-oriented reader and writer.
pub async fn serve_lines<R, W>(
    server: AgentServer,
    input: R,
    output: W,
) -> Result<(), TransportError>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    const BUFFER: usize = 1 << 20;
    let (session_in, mut feed) = tokio::io::duplex(BUFFER);
    let (session_out, from_session) = tokio::io::duplex(BUFFER);
    let (errors, mut error_lines) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();

    // Reader: well-formed JSON goes to the session, anything else is answered at once.
    let reader = tokio::spawn(async move {
        let mut input = BufReader::new(input);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
                if feed.write_all(text).await.is_err() || feed.write_all(b"\n").await.is_err() {
                    break;
                }
            } else {
                tracing::warn!(
                    bytes = text.len(),
                    "stdin line is not JSON: answered with a parse error"
                );
                let _ = errors.send(PARSE_ERROR_LINE.to_vec());
            }
        }
        // Dropping `feed` ends the session's input: the session stops, as on a closed stdin.
    });

    // Writer: whole lines from the session and the parse errors, one at a time.
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut from_session = BufReader::new(from_session);
        let mut line = Vec::with_capacity(4096);
        let mut session_open = true;
        let mut errors_open = true;
        while session_open || errors_open {
            // Parse errors first: they answer lines read before anything still in the session.
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
                read = from_session.read_until(b'\n', &mut line), if session_open => {
                    match read {
                        Ok(0) | Err(_) => session_open = false,
                        Ok(_) => {
                            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                                return;
                            }
                            line.clear();
                        }
                    }
                }
            }
        }
    });

    let running = server
        .serve((session_in, session_out))
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
}

impl HttpOptions {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            allowed_origins: Vec::new(),
            bearer_token: None,
            session_idle: Duration::from_secs(1800),
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The axum router: `/mcp` exactly (no redirect), guarded by the bearer check.
pub fn router(
    server: AgentServer,
    options: &HttpOptions,
    shutdown: CancellationToken,
) -> axum::Router {
    let mut hosts: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "[::1]".into(),
    ];
    if !is_loopback_host(&options.host) {
        hosts.push(options.host.clone());
    }
    let mut origins: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")])
        .collect();
    origins.extend(options.allowed_origins.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token());
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(options.session_idle);
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(sessions), config);
    let bearer = options
        .bearer_token
        .as_ref()
        .map(|t| Arc::<str>::from(format!("Bearer {t}")));
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(bearer, require_bearer))
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_bearer(
    State(expected): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = expected {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
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

/// Binds `host:port` and serves until `shutdown` fires. Returns the bound address through
/// `on_bound` (useful with port 0).
pub async fn serve_http(
    server: AgentServer,
    options: HttpOptions,
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
    let app = router(server, &options, shutdown.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(TransportError::Http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["0.0.0.0", "example.com", "10.0.0.1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
