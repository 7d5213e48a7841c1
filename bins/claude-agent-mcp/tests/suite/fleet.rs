//! A fleet over streamable HTTP: three server processes on one state directory behind a load
//! balancer without affinity (an in-test reverse proxy that sends each HTTP request to the
//! next node in turn). A 2025-11-25 client (initialize, then `Mcp-Session-Id`) and a
//! 2026-07-28 client (stateless requests) both complete run → continue → get → verify
//! (`docs/scaling.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ServiceExt};
use serde_json::{Value, json};

use super::http::{HttpServer, start_http};
use crate::support::*;

/// A round-robin reverse proxy: request `n` goes to backend `n % len`, whatever came before
/// (no affinity by connection, session or anything else).
pub(super) struct RoundRobin {
    pub(super) url: String,
    /// Requests forwarded to each backend.
    served: Arc<Vec<AtomicUsize>>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Proxy {
    backends: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    served: Arc<Vec<AtomicUsize>>,
    http: reqwest::Client,
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Proxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use futures::TryStreamExt;
    let n = proxy.next.fetch_add(1, Ordering::SeqCst) % proxy.backends.len();
    proxy.served[n].fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), &proxy.backends[n])
        .body(body);
    for (name, value) in &parts.headers {
        // The proxy names the backend itself (as nginx and HAProxy do with a fixed Host).
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.expect("backend answers");
    let mut response = axum::response::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    response
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

pub(super) async fn round_robin(backends: Vec<String>) -> RoundRobin {
    let served = Arc::new(
        (0..backends.len())
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let proxy = Proxy {
        backends: Arc::new(backends),
        next: Arc::new(AtomicUsize::new(0)),
        served: Arc::clone(&served),
        http: reqwest::Client::new(),
    };
    let app = axum::Router::new()
        .route("/mcp", axum::routing::any(forward))
        .with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RoundRobin { url, served, task }
}

/// Three nodes on one state directory (`env`), behind a [`round_robin`] proxy.
async fn fleet(env: &TestEnv) -> (Vec<HttpServer>, RoundRobin) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_http(env, &[]).await);
    }
    let proxy = round_robin(nodes.iter().map(|n| n.url.clone()).collect()).await;
    (nodes, proxy)
}

pub(super) async fn call<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    name: &'static str,
    args: Value,
) -> Value {
    let args = args.as_object().cloned().unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name} through the fleet: {e}"));
    parse_single_text(&result)
}

/// run → continue → get → verify, each tool call (and everything around it) on whichever
/// node the proxy picks.
async fn run_continue_get_verify<H: ClientHandler>(
    env: &TestEnv,
    client: &RunningService<RoleClient, H>,
) {
    env.reply_text("done by the fleet").await;
    let run = call(client, "agent_run_task", json!({"task": "t"})).await;
    assert_eq!(run["ok"], json!(true), "{run}");
    assert_eq!(run["result"]["output_text"], json!("done by the fleet"));
    let sid = run["session_id"].clone();
    let cont = call(
        client,
        "agent_continue_session",
        json!({"session_id": sid, "message": "more"}),
    )
    .await;
    assert_eq!(cont["ok"], json!(true), "{cont}");
    let got = call(client, "agent_get_session", json!({"session_id": sid})).await;
    assert_eq!(got["turn_count"], json!(2), "{got}");
    assert_eq!(got["status"], json!("completed"), "{got}");
    env.reply_text("VERDICT: pass").await;
    let verdict = call(client, "agent_verify_task", json!({"task": "Verify x"})).await;
    assert_eq!(verdict["result"]["verdict"], json!("pass"), "{verdict}");
}

pub(super) fn assert_every_node_served(proxy: &RoundRobin) {
    let served: Vec<usize> = proxy
        .served
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .collect();
    assert!(
        served.iter().all(|&n| n >= 2),
        "every node served requests: {served:?}"
    );
}

async fn stop(mut nodes: Vec<HttpServer>, proxy: RoundRobin) {
    proxy.task.abort();
    for node in &mut nodes {
        let _ = node.child.kill().await;
    }
}

/// A session-id client of `version` (the latest, 2025-11-25, when `None`): `initialize` lands
/// on one node, `notifications/initialized` and every later request (carrying the
/// `Mcp-Session-Id` the first node issued) on the others. Before stateless serving the
/// second node answered `404 Session not found`.
async fn session_id_client_round_trip(version: Option<ProtocolVersion>) {
    let env = TestEnv::new().await;
    let (nodes, proxy) = fleet(&env).await;
    session_id_client_through(&env, &proxy, version).await;
    stop(nodes, proxy).await;
}

/// A session-id client of `version` (2025-11-25 when `None`) completes run → continue → get →
/// verify through `proxy`, every node serving some of its requests.
pub(super) async fn session_id_client_through(
    env: &TestEnv,
    proxy: &RoundRobin,
    version: Option<ProtocolVersion>,
) {
    let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
    let mut info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("fleet-test", "1"),
    );
    if let Some(version) = &version {
        info = info.with_protocol_version(version.clone());
    }
    let client = info
        .serve(transport)
        .await
        .expect("initialize through the fleet");
    let negotiated = client.peer_info().map(|i| i.protocol_version.clone());
    assert_eq!(
        negotiated,
        Some(version.unwrap_or(ProtocolVersion::V_2025_11_25))
    );
    assert_eq!(client.list_all_tools().await.unwrap().len(), 7);
    run_continue_get_verify(env, &client).await;
    assert_every_node_served(proxy);
    let _ = client.cancel().await;
}

#[tokio::test]
async fn a_session_id_client_is_served_by_every_node_in_turn() {
    session_id_client_round_trip(None).await;
}

/// The same with the two older revisions: 2025-06-18 (sends `MCP-Protocol-Version`) and
/// 2025-03-26 (the version a request without that header is taken for).
#[tokio::test]
async fn older_session_id_clients_are_served_by_every_node_in_turn() {
    session_id_client_round_trip(Some(ProtocolVersion::V_2025_06_18)).await;
    session_id_client_round_trip(Some(ProtocolVersion::V_2025_03_26)).await;
}

/// A 2026-07-28 client: `server/discover`, then self-contained requests, each on the next node.
#[tokio::test]
async fn a_stateless_client_is_served_by_every_node_in_turn() {
    let env = TestEnv::new().await;
    let (nodes, proxy) = fleet(&env).await;
    stateless_client_through(&env, &proxy).await;
    stop(nodes, proxy).await;
}

/// A 2026-07-28 client completes run → continue → get → verify through `proxy`, every node
/// serving some of its requests.
pub(super) async fn stateless_client_through(env: &TestEnv, proxy: &RoundRobin) {
    let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client =
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("discover through the fleet");
    let version = client.peer_info().map(|i| i.protocol_version.clone());
    assert_eq!(version, Some(ProtocolVersion::V_2026_07_28));
    assert_eq!(client.list_all_tools().await.unwrap().len(), 7);
    run_continue_get_verify(env, &client).await;
    assert_every_node_served(proxy);
    let _ = client.cancel().await;
}

/// A session id no node issued is taken up only behind the same checks as any request: no
/// bearer token → 401, a foreign Host or Origin → 403; an id that cannot be a session id
/// (over 128 characters) → 404; a well-formed one is served (here `tools/list`).
#[tokio::test]
async fn a_forged_session_id_passes_no_check_a_request_must_pass() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "s3cret");
    let mut node = start_http(&env, &[]).await;
    let http = reqwest::Client::new();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let send = |id: String,
                auth: Option<&'static str>,
                host: Option<&'static str>,
                origin: Option<&'static str>| {
        let mut req = http
            .post(&node.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", id)
            .json(&list);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let forged = || "forged-0000-session".to_owned();
    assert_eq!(
        send(forged(), None, None, None).await.unwrap().status(),
        401
    );
    assert_eq!(
        send(forged(), Some("Bearer wrong"), None, None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(forged(), Some("Bearer s3cret"), Some("evil.example"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(
            forged(),
            Some("Bearer s3cret"),
            None,
            Some("https://evil.example")
        )
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(
        send("x".repeat(129), Some("Bearer s3cret"), None, None)
            .await
            .unwrap()
            .status(),
        404
    );
    let served = send(forged(), Some("Bearer s3cret"), None, None)
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let body = served.text().await.unwrap();
    assert!(
        body.contains("agent_run_task"),
        "tools/list answered: {body}"
    );
    let _ = node.child.kill().await;
}

/// What `docs/scaling.md` tells proxy operators: a 2026-07-28 request is cancelled by closing
/// its connection (no session carries `notifications/cancelled`), so a proxy that times out
/// before the result cancels the run: the session ends `cancelled`, not `running` forever and
/// not completed behind the client's back.
#[tokio::test]
async fn a_stateless_request_whose_connection_closes_cancels_its_run() {
    let env = TestEnv::new().await;
    // The model answers only after a minute: the run is in flight when the client leaves.
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("too late"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let (nodes, proxy) = fleet(&env).await;
    let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client =
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("discover through the fleet");
    let peer = client.peer().clone();
    let call = tokio::spawn(async move {
        let args = json!({"task": "t"}).as_object().cloned().unwrap();
        peer.call_tool(CallToolRequestParams::new("agent_run_task").with_arguments(args))
            .await
    });
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    // The client goes away: its worker, and with it the request's connection, is dropped.
    let _ = client.cancel().await;
    let _ = call.await;
    // Generous: on an idle machine the run records its cancellation within milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut status = None;
    while std::time::Instant::now() < deadline {
        status = env.column(&sid, "status").await;
        if status.as_deref() != Some("running") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status.as_deref(), Some("cancelled"));
    stop(nodes, proxy).await;
}

/// The other side of the same page: a session-id client's run does not depend on its
/// connection. The request's stream is dropped (a proxy timing out) on a node that took the
/// session up, and the run still ends `completed`, its output kept.
#[tokio::test]
async fn a_session_id_request_whose_connection_closes_runs_to_its_end() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("finished without its client"))
            .set_delay(std::time::Duration::from_secs(2)),
    )
    .await;
    let (nodes, proxy) = fleet(&env).await;
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut req = http
            .post(&proxy.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(id) = session {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(init);
    let initialized = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(initialized.status(), 202);
    // The call lands on a node that did not issue the session id.
    let call = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "agent_run_task", "arguments": {"task": "t"}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(call.status(), 200);
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    drop(call);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut status = None;
    while std::time::Instant::now() < deadline {
        status = env.column(&sid, "status").await;
        if status.as_deref() != Some("running") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status.as_deref(), Some("completed"));
    stop(nodes, proxy).await;
}
