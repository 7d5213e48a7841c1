//! Streamable HTTP: the same tools at `/mcp`, Host/Origin validation and the bearer token.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) struct HttpServer {
    pub(super) child: tokio::process::Child,
    pub(super) url: String,
}

pub(super) async fn start_http(env: &TestEnv, extra: &[&str]) -> HttpServer {
    let port = free_port();
    let port_s = port.to_string();
    let mut args = vec!["--transport", "streamable-http", "--port", port_s.as_str()];
    args.extend_from_slice(extra);
    let stderr = std::fs::File::create(env.dir.path().join("http.stderr")).unwrap();
    let child = env
        .command(&args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(stderr))
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    HttpServer {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn initialize_body() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn every_tool_works_over_http() {
    let env = TestEnv::new().await;
    env.reply_text("over http").await;
    let mut server = start_http(&env, &[]).await;
    let transport = StreamableHttpClientTransport::from_uri(server.url.clone());
    let client = ().serve(transport).await.expect("initialize over HTTP");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 7);
    let call = |name: &'static str, args: serde_json::Value| {
        let client = &client;
        async move {
            let args = args.as_object().cloned().unwrap();
            let r = client
                .call_tool(rmcp::model::CallToolRequestParams::new(name).with_arguments(args))
                .await
                .unwrap();
            parse_single_text(&r)
        }
    };
    let run = call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(run["result"]["output_text"], json!("over http"));
    let sid = run["session_id"].clone();
    let cont = call(
        "agent_continue_session",
        json!({"session_id": sid, "message": "m"}),
    )
    .await;
    assert_eq!(cont["ok"], json!(true));
    assert_eq!(
        call("agent_get_session", json!({"session_id": sid})).await["turn_count"],
        json!(2)
    );
    assert_eq!(
        call("agent_list_sessions", json!({})).await["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.reply_text("VERDICT: pass").await;
    assert_eq!(
        call("agent_verify_task", json!({"task": "Verify x"})).await["result"]["verdict"],
        json!("pass")
    );
    assert_eq!(
        call("agent_get_runtime_status", json!({})).await["transport"],
        json!("streamable-http")
    );
    let _ = client.cancel().await;
    let _ = server.child.kill().await;
}

#[tokio::test]
async fn session_header_origin_and_no_redirect() {
    let env = TestEnv::new().await;
    let mut server = start_http(&env, &[]).await;
    let http = reqwest::Client::new();
    let post = |origin: Option<&str>| {
        let mut req = http
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let ok = post(None).await.unwrap();
    assert_eq!(ok.status(), 200, "served at /mcp directly, no redirect");
    assert!(
        ok.headers().get("mcp-session-id").is_some(),
        "Mcp-Session-Id issued"
    );
    assert_eq!(
        post(Some("http://localhost:3000")).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    let bad_host = http
        .post(&server.url)
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_host.status(), 403);
    let _ = server.child.kill().await;
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "s3cret");
    let mut server = start_http(&env, &[]).await;
    let http = reqwest::Client::new();
    let send = |auth: Option<&str>| {
        let mut req = http
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("Bearer wrong")).await.unwrap().status(), 401);
    assert_eq!(send(Some("Bearer s3cret")).await.unwrap().status(), 200);
    let config =
        StreamableHttpClientTransportConfig::with_uri(server.url.clone()).auth_header("s3cret");
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ().serve(transport).await.expect("authorised client");
    assert_eq!(client.list_all_tools().await.unwrap().len(), 7);
    let _ = client.cancel().await;
    let _ = server.child.kill().await;
}
