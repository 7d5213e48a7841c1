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
    session_id_client_at(env, &proxy.url, version).await;
    assert_every_node_served(proxy);
}

/// A session-id client of `version` (2025-11-25 when `None`) completes run → continue → get →
/// verify through the load balancer at `url`.
pub(super) async fn session_id_client_at(
    env: &TestEnv,
    url: &str,
    version: Option<ProtocolVersion>,
) {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
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
    assert_eq!(client.list_all_tools().await.unwrap().len(), 9);
    run_continue_get_verify(env, &client).await;
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
    stateless_client_at(env, &proxy.url).await;
    assert_every_node_served(proxy);
}

/// A 2026-07-28 client completes run → continue → get → verify through the load balancer at
/// `url`.
pub(super) async fn stateless_client_at(env: &TestEnv, url: &str) {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client =
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("discover through the fleet");
    let version = client.peer_info().map(|i| i.protocol_version.clone());
    assert_eq!(version, Some(ProtocolVersion::V_2026_07_28));
    assert_eq!(client.list_all_tools().await.unwrap().len(), 9);
    run_continue_get_verify(env, &client).await;
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

/// A background run of a stateless (2026-07-28) client: the call answers `running` at once
/// and its connection closes, which no longer reaches the run (it answered); the result is
/// collected by a new client through the next nodes (`docs/reference/tools.md#15-background-runs`).
#[tokio::test]
async fn a_stateless_clients_background_run_outlives_its_connection_and_is_collected_anywhere() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("finished in the background"))
            .set_delay(std::time::Duration::from_secs(2)),
    )
    .await;
    let (nodes, proxy) = fleet(&env).await;
    let stateless = || async {
        let transport = StreamableHttpClientTransport::from_uri(proxy.url.clone());
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("discover through the fleet")
    };
    let call = |name: &'static str, args: Value| {
        CallToolRequestParams::new(name).with_arguments(args.as_object().cloned().unwrap())
    };
    let client = stateless().await;
    let started = client
        .call_tool(call(
            "agent_run_task",
            json!({"task": "t", "wait_seconds": 0}),
        ))
        .await
        .unwrap();
    let started = parse_single_text(&started);
    assert_eq!(started["status"], json!("running"), "{started}");
    let sid = started["session_id"].as_str().unwrap().to_owned();
    let _ = client.cancel().await;

    let client = stateless().await;
    let mut collected = Value::Null;
    for _ in 0..3 {
        let waited = client
            .call_tool(call(
                "agent_wait_session",
                json!({"session_id": sid, "timeout_seconds": 30}),
            ))
            .await
            .unwrap();
        collected = parse_single_text(&waited);
        assert_eq!(collected["ok"], json!(true), "{collected}");
    }
    assert_eq!(
        collected["result"]["output_text"],
        json!("finished in the background")
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed")
    );
    assert_every_node_served(&proxy);
    let _ = client.cancel().await;
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

// ---------------------------------------------------------------------------------------------
// MCP tasks and cancellation through any node (task state in the store, `docs/scaling.md`)
// ---------------------------------------------------------------------------------------------

/// A 2026-07-28 client that declares the tasks extension (on every request), talking to one
/// node only: each node of the fleet gets its own client.
pub(super) async fn task_client(url: &str) -> RunningService<RoleClient, super::tasks::TaskClient> {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    super::tasks::TaskClient
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("discover")
}

async fn three_nodes(env: &TestEnv) -> Vec<HttpServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_http(env, &[]).await);
    }
    nodes
}

async fn kill_all(mut nodes: Vec<HttpServer>) {
    for node in &mut nodes {
        let _ = node.child.kill().await;
    }
}

/// `tasks/get` through `client` until the task's status message names its session.
pub(super) async fn wait_for_named_task<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    task_id: &str,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let got = client
            .get_task(rmcp::model::GetTaskParams::new(task_id))
            .await
            .unwrap();
        let message = got.task.task.status_message.unwrap_or_default();
        if let Some(sid) = message.split_whitespace().find(|w| w.starts_with("sess_")) {
            return sid.trim_end_matches(':').to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("task {task_id} never named its session");
}

pub(super) async fn create_task(
    client: &RunningService<RoleClient, super::tasks::TaskClient>,
    task: &str,
) -> String {
    let args = json!({"task": task}).as_object().cloned().unwrap();
    let response = client
        .call_tool_once(CallToolRequestParams::new("agent_run_task").with_arguments(args))
        .await
        .unwrap();
    let rmcp::model::CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}")
    };
    assert_eq!(created.task.status, rmcp::model::TaskStatus::Working);
    created.task.task_id
}

/// A task created through node A runs there; node B reads it while it works and, once it
/// completes, its result; an unknown task is the same error on every node.
#[tokio::test]
async fn a_task_created_on_one_node_is_read_with_its_result_on_another() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("done as a task"))
            .set_delay(std::time::Duration::from_millis(500)),
    )
    .await;
    let nodes = three_nodes(&env).await;
    let a = task_client(&nodes[0].url).await;
    let b = task_client(&nodes[1].url).await;
    let task_id = create_task(&a, "t").await;
    let sid = wait_for_named_task(&b, &task_id).await;
    let done = super::tasks::poll(&b, &task_id).await;
    assert_eq!(done.task.task.status, rmcp::model::TaskStatus::Completed);
    let rmcp::model::TaskPayload::Completed { result } = &done.task.payload else {
        panic!("completed payload")
    };
    let envelope = &result["structuredContent"];
    assert_eq!(envelope["ok"], json!(true), "{result:?}");
    assert_eq!(envelope["session_id"], json!(sid));
    assert_eq!(envelope["result"]["output_text"], json!("done as a task"));
    assert_eq!(done.task.task.ttl_ms, Some(86_400_000));
    assert_eq!(done.task.task.poll_interval_ms, Some(1000));
    // Node C reads the same settled task.
    let c = task_client(&nodes[2].url).await;
    let again = c
        .get_task(rmcp::model::GetTaskParams::new(task_id.clone()))
        .await
        .unwrap();
    assert_eq!(again.task, done.task);
    let unknown = c
        .get_task(rmcp::model::GetTaskParams::new("no-such-task"))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown task: no-such-task"),
        "{unknown}"
    );
    // An id far over the bound is an unknown task too, read from no row.
    let huge = "t".repeat(100_000);
    let refused = c
        .cancel_task(rmcp::model::CancelTaskParams::new(huge))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("unknown task"), "{refused}");
    for client in [a, b, c] {
        let _ = client.cancel().await;
    }
    kill_all(nodes).await;
}

/// A task created through node A, read through node B, cancelled through node C: the run on
/// A stops (the session ends `cancelled` with the task's reason) and every node reports the
/// task `cancelled`.
#[tokio::test]
async fn a_task_created_on_one_node_is_cancelled_through_another() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("too late"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let nodes = three_nodes(&env).await;
    let a = task_client(&nodes[0].url).await;
    let b = task_client(&nodes[1].url).await;
    let c = task_client(&nodes[2].url).await;
    let task_id = create_task(&a, "slow").await;
    env.wait_for_request().await;
    let sid = wait_for_named_task(&b, &task_id).await;
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    let asked = std::time::Instant::now();
    c.cancel_task(rmcp::model::CancelTaskParams::new(task_id.clone()))
        .await
        .unwrap();
    let done = super::tasks::poll(&b, &task_id).await;
    let took = asked.elapsed();
    assert_eq!(done.task.task.status, rmcp::model::TaskStatus::Cancelled);
    // The engine polls cancel requests every 250 ms: well within a second on an idle machine.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    eprintln!("tasks/cancel through another node: task settled in {took:?}");
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("cancelled")
    );
    assert_eq!(env.column(&sid, "locked_by").await, None);
    assert_eq!(
        env.events(&sid).await.last().unwrap().2,
        json!({"reason": "cancelled by tasks/cancel"})
    );
    let message = done.task.task.status_message.unwrap_or_default();
    assert!(message.contains(&sid), "names its session: {message}");
    // Cancelling a settled task changes nothing.
    a.cancel_task(rmcp::model::CancelTaskParams::new(task_id.clone()))
        .await
        .unwrap();
    let still = a
        .get_task(rmcp::model::GetTaskParams::new(task_id.clone()))
        .await
        .unwrap();
    assert_eq!(still.task.task.status, rmcp::model::TaskStatus::Cancelled);
    for client in [a, b, c] {
        let _ = client.cancel().await;
    }
    kill_all(nodes).await;
}

/// One JSON-RPC exchange over HTTP with a session-id client's headers; the answer with `id`
/// (read from the SSE stream or the JSON body), or the status when there is no body.
pub(super) async fn rpc(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<Value>, Option<String>) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(id) = session {
        req = req
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let issued = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let wanted = body.get("id").cloned();
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .chain(std::iter::once(text.as_str()))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| wanted.is_some() && v.get("id") == wanted.as_ref());
    (status, answer, issued)
}

/// Initializes a 2025-11-25 session on `url` (declaring the tasks extension when `tasks`).
pub(super) async fn open_session(http: &reqwest::Client, url: &str, tasks: bool) -> String {
    let capabilities = if tasks {
        serde_json::to_value(ClientCapabilities::builder().enable_tasks().build()).unwrap()
    } else {
        json!({})
    };
    let (status, _, issued) = rpc(
        http,
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let session = issued.expect("a session id");
    let (status, _, _) = rpc(
        http,
        url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    session
}

async fn wait_for_status(env: &TestEnv, sid: &str, not: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut status = None;
    while std::time::Instant::now() < deadline {
        status = env.column(sid, "status").await;
        if status.as_deref() != Some(not) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    status
}

/// A session-id client's tasks work through any node too: created on the node that saw its
/// `initialize`, read and cancelled through nodes that take its transport session up.
#[tokio::test]
async fn a_session_id_client_s_task_is_read_and_cancelled_through_other_nodes() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("too late"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let nodes = three_nodes(&env).await;
    let http = reqwest::Client::new();
    let session = open_session(&http, &nodes[0].url, true).await;
    let (_, created, _) = rpc(
        &http,
        &nodes[0].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "agent_run_task", "arguments": {"task": "t"}}}),
    )
    .await;
    let created = created.expect("an answer");
    let task_id = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {created}"))
        .to_owned();
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    let get = |n: i64| json!({"jsonrpc": "2.0", "id": n, "method": "tasks/get", "params": {"taskId": task_id}});
    let (_, got, _) = rpc(&http, &nodes[1].url, Some(&session), get(3)).await;
    let got = got.expect("an answer");
    assert_eq!(got["result"]["status"], json!("working"), "{got}");
    let (_, cancelled, _) = rpc(
        &http,
        &nodes[2].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/cancel", "params": {"taskId": task_id}}),
    )
    .await;
    let cancelled = cancelled.expect("an answer");
    assert!(cancelled.get("error").is_none(), "{cancelled}");
    assert_eq!(
        wait_for_status(&env, &sid, "running").await.as_deref(),
        Some("cancelled")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut status = Value::Null;
    while std::time::Instant::now() < deadline {
        let (_, got, _) = rpc(&http, &nodes[1].url, Some(&session), get(5)).await;
        status = got.expect("an answer")["result"]["status"].clone();
        if status != json!("working") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, json!("cancelled"));
    // A call through a node that took the session up is still answered directly: that node
    // does not know what the client declared.
    env.reply_text("direct").await;
    let (_, direct, _) = rpc(
        &http,
        &nodes[1].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
               "params": {"name": "agent_run_task", "arguments": {"task": "t"}}}),
    )
    .await;
    let direct = direct.expect("an answer");
    assert_eq!(
        direct["result"]["structuredContent"]["ok"],
        json!(true),
        "{direct}"
    );
    kill_all(nodes).await;
}

/// `notifications/cancelled` for a request node A runs, sent through node B: the run on A
/// stops, the session ends `cancelled` with the reason it records when the notification
/// reaches the holding node, and the registry entry goes.
#[tokio::test]
async fn notifications_cancelled_through_another_node_stops_the_run() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("too late"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let nodes = three_nodes(&env).await;
    let http = reqwest::Client::new();
    let session = open_session(&http, &nodes[0].url, false).await;
    let call = {
        let (http, url, session) = (http.clone(), nodes[0].url.clone(), session.clone());
        tokio::spawn(async move {
            rpc(
                &http,
                &url,
                Some(&session),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "agent_run_task", "arguments": {"task": "t"}}}),
            )
            .await
        })
    };
    env.wait_for_request().await;
    let sid = env.latest_session_id().await;
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    // The request is registered with its session once it has run `REGISTER_AFTER` (200 ms).
    let pool = env.db().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let registered = loop {
        let registered: Option<String> = sqlx::query_scalar(
            "SELECT session_id FROM mcp_requests WHERE client_key = ?1 AND request_id = 'n:2'",
        )
        .bind(&session)
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten();
        if registered.is_some() || std::time::Instant::now() > deadline {
            break registered;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(registered.as_deref(), Some(sid.as_str()));
    // Another client (another transport session) cancelling the same request id reaches
    // nothing: the run goes on past two poll periods.
    let other = open_session(&http, &nodes[2].url, false).await;
    let (status, _, _) = rpc(
        &http,
        &nodes[1].url,
        Some(&other),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 2, "reason": "not mine"}}),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(env.column(&sid, "status").await.as_deref(), Some("running"));
    let asked = std::time::Instant::now();
    let (status, _, _) = rpc(
        &http,
        &nodes[1].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 2, "reason": "stopped by the user"}}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        wait_for_status(&env, &sid, "running").await.as_deref(),
        Some("cancelled")
    );
    let took = asked.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    eprintln!("notifications/cancelled through another node: run stopped in {took:?}");
    assert_eq!(
        env.events(&sid).await.last().unwrap().2,
        json!({"reason": "the client cancelled the request (notifications/cancelled)"})
    );
    // The call on A answers with the cancellation; its registry entry is removed.
    let (_, answer, _) = call.await.unwrap();
    let answer = answer.expect("an answer");
    assert_eq!(
        answer["result"]["structuredContent"]["errors"][0]["code"],
        json!("session_cancelled"),
        "{answer}"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mcp_requests")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // A cancellation for a request no node runs changes nothing.
    let (status, _, _) = rpc(
        &http,
        &nodes[2].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 99}}),
    )
    .await;
    assert_eq!(status, 202);
    kill_all(nodes).await;
}

/// `notifications/cancelled` through node B sent at once, before node A has written the
/// call's registry entry (it does so only for calls older than 200 ms): B looks again and the
/// run on A still stops.
#[tokio::test]
async fn an_early_notifications_cancelled_through_another_node_stops_the_run() {
    let env = TestEnv::new().await;
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("too late"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let nodes = three_nodes(&env).await;
    let http = reqwest::Client::new();
    let session = open_session(&http, &nodes[0].url, false).await;
    let call = {
        let (http, url, session) = (http.clone(), nodes[0].url.clone(), session.clone());
        tokio::spawn(async move {
            rpc(
                &http,
                &url,
                Some(&session),
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                       "params": {"name": "agent_run_task", "arguments": {"task": "t"}}}),
            )
            .await
        })
    };
    env.wait_for_request().await;
    let asked = std::time::Instant::now();
    let (status, _, _) = rpc(
        &http,
        &nodes[1].url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 5, "reason": "changed my mind"}}),
    )
    .await;
    assert_eq!(status, 202);
    let (_, answer, _) = tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .expect("the run stops long before the model answers")
        .unwrap();
    let took = asked.elapsed();
    eprintln!("an early notifications/cancelled through another node: stopped in {took:?}");
    let answer = answer.expect("an answer");
    assert_eq!(
        answer["result"]["structuredContent"]["errors"][0]["code"],
        json!("session_cancelled"),
        "{answer}"
    );
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    kill_all(nodes).await;
}

/// The node running a task is killed: once the lease sweeper of another node has marked the
/// session `interrupted`, `tasks/get` through any node settles the task `failed`, naming the
/// session, which is then continued through another node.
#[tokio::test]
async fn a_task_whose_node_dies_fails_naming_its_session() {
    let mut env = TestEnv::new().await;
    // Renewed every 0.67 s, swept every second: the lease of a dead node expires within 2 s.
    env.set("CLAUDE_AGENT_MCP_LOCK_TTL", "2");
    env.reply(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(text_reply("never seen"))
            .set_delay(std::time::Duration::from_secs(60)),
    )
    .await;
    let mut nodes = three_nodes(&env).await;
    let a = task_client(&nodes[0].url).await;
    let b = task_client(&nodes[1].url).await;
    let task_id = create_task(&a, "slow").await;
    env.wait_for_request().await;
    let sid = wait_for_named_task(&b, &task_id).await;
    let killed = std::time::Instant::now();
    nodes[0].child.kill().await.unwrap();
    let done = super::tasks::poll(&b, &task_id).await;
    let took = killed.elapsed();
    eprintln!("task of a killed node reported failed after {took:?}");
    assert_eq!(done.task.task.status, rmcp::model::TaskStatus::Failed);
    let rmcp::model::TaskPayload::Failed { error } = &done.task.payload else {
        panic!("failed payload")
    };
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&sid) && message.contains("agent_continue_session"),
        "{message}"
    );
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("interrupted")
    );
    // Node C sees the same settled task; the session resumes through it.
    let c = task_client(&nodes[2].url).await;
    let again = c
        .get_task(rmcp::model::GetTaskParams::new(task_id.clone()))
        .await
        .unwrap();
    assert_eq!(again.task, done.task);
    env.reply_text("resumed").await;
    let args = json!({"session_id": sid, "message": "go on"})
        .as_object()
        .cloned()
        .unwrap();
    let response = c
        .call_tool_once(CallToolRequestParams::new("agent_continue_session").with_arguments(args))
        .await
        .unwrap();
    let rmcp::model::CallToolResponse::Task(resumed) = response else {
        panic!("expected a task, got {response:?}")
    };
    let resumed = super::tasks::poll(&c, &resumed.task.task_id).await;
    let rmcp::model::TaskPayload::Completed { result } = &resumed.task.payload else {
        panic!("completed payload: {resumed:?}")
    };
    assert_eq!(result["structuredContent"]["ok"], json!(true), "{result:?}");
    assert_eq!(
        env.column(&sid, "status").await.as_deref(),
        Some("completed")
    );
    for client in [a, b, c] {
        let _ = client.cancel().await;
    }
    kill_all(nodes).await;
}
