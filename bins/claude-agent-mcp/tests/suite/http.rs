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
    start_http_with(env, extra, &[]).await
}

/// [`start_http`] with variables set for this process only (over `env`'s own).
pub(super) async fn start_http_with(
    env: &TestEnv,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> HttpServer {
    let port = free_port();
    let port_s = port.to_string();
    // Reached on the bound address, or on 127.0.0.1 for the default and the wildcard binds.
    let host = extra
        .windows(2)
        .find(|pair| pair[0] == "--host")
        .map(|pair| pair[1])
        .filter(|host| *host != "0.0.0.0")
        .unwrap_or("127.0.0.1");
    let mut args = vec!["--transport", "streamable-http", "--port", port_s.as_str()];
    args.extend_from_slice(extra);
    let stderr = std::fs::File::create(env.dir.path().join(format!("http-{port}.stderr"))).unwrap();
    let child = env
        .command(&args)
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(stderr))
        .spawn()
        .unwrap();
    // Generous: the server listens within a second on an idle machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect((host, port)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server does not listen on port {port} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    HttpServer {
        child,
        url: format!("http://{host}:{port}/mcp"),
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
    assert_eq!(tools.len(), 9);
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
    assert_eq!(client.list_all_tools().await.unwrap().len(), 9);
    let _ = client.cancel().await;
    let _ = server.child.kill().await;
}

/// The port of a server started by [`start_http`].
fn port_of(server: &HttpServer) -> u16 {
    server
        .url
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads until the server closes the connection (or resets it); what was read, or `None`
/// when it is still open after `within`.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(read)
}

/// Slowloris: a client that sends half a request head, or nothing at all, is disconnected
/// once the header timeout has passed (it used to hold the connection forever).
#[tokio::test]
async fn a_half_sent_request_is_disconnected_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT", "1");
    let mut server = start_http(&env, &[]).await;
    let port = port_of(&server);

    let mut partial = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    partial
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Generous against a busy machine, far below "never".
    assert!(
        read_until_closed(&mut partial, Duration::from_secs(8))
            .await
            .is_some(),
        "a half-sent request head still holds its connection"
    );
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(8))
            .await
            .is_some(),
        "a connection that sends nothing is still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );

    // A keep-alive connection left idle after a request is closed after the same time.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    idle.write_all(b"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(8))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // The server still serves whole requests.
    let ok = reqwest::Client::new()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let _ = server.child.kill().await;
}

/// With the connection limit reached, one more connection is answered 503 at once (it used
/// to be accepted without limit); once a connection ends, new ones are served again.
#[tokio::test]
async fn connections_over_the_limit_get_503() {
    use tokio::io::AsyncWriteExt;
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS", "2");
    env.set("CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT", "60");
    let mut server = start_http(&env, &[]).await;
    let port = port_of(&server);
    // start_http's readiness probes are closed connections: wait for their slots to free.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(b"GET /mcp HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the connection over the limit is neither answered nor closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\ntoo many connections\n"),
        "{answer}"
    );
    let over = reqwest::Client::new()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 503);

    drop(held.pop());
    let mut status = 0;
    for _ in 0..50 {
        // A fresh client each time: no pooled connection from before.
        let response = reqwest::Client::new()
            .post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body())
            .send()
            .await
            .unwrap();
        status = response.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "a freed slot serves again");
    let _ = server.child.kill().await;
}

/// RFC 9110: the auth scheme is case-insensitive; the token itself must match exactly,
/// neither a prefix nor a longer value.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "s3cret-token");
    let mut server = start_http(&env, &[]).await;
    let http = reqwest::Client::new();
    let send = |auth: &str| {
        http.post(&server.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", auth)
            .json(&initialize_body())
            .send()
    };
    for ok in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
    ] {
        assert_eq!(send(ok).await.unwrap().status(), 200, "{ok}");
    }
    for bad in [
        "Bearer s3cret",
        "Bearer s3cret-token2",
        "Bearer s3cret-tokens3cret-token",
        "Bearer S3CRET-TOKEN",
        "Bearer ",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        let response = send(bad).await.unwrap();
        assert_eq!(response.status(), 401, "{bad}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let _ = server.child.kill().await;
}

/// Bound to 0.0.0.0, clients on the network send the machine's own address as `Host`: it is
/// admitted (it used to be 403), while the token is still required.
#[tokio::test]
async fn a_wildcard_bind_admits_the_host_lan_clients_send() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "lan-token");
    let mut server = start_http(&env, &["--host", "0.0.0.0"]).await;
    let port = port_of(&server);
    let http = reqwest::Client::new();
    let send = |host: String, token: Option<&'static str>| {
        let mut request = http
            .post(&server.url)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.send()
    };
    for host in [format!("192.168.1.20:{port}"), format!("build-box:{port}")] {
        assert_eq!(
            send(host.clone(), Some("lan-token"))
                .await
                .unwrap()
                .status(),
            200,
            "{host}"
        );
        assert_eq!(
            send(host.clone(), None).await.unwrap().status(),
            401,
            "{host}"
        );
    }
    // The Origin check still applies.
    let foreign = http
        .post(&server.url)
        .header("host", format!("192.168.1.20:{port}"))
        .header("origin", "https://evil.example")
        .header("authorization", "Bearer lan-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let _ = server.child.kill().await;
}

/// Bound to a loopback address other than `127.0.0.1`, a client naming that address in `Host`
/// is admitted without a token (it used to be 403: a loopback bind admitted only the default
/// loopback names).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_bind_to_another_loopback_address_admits_that_host() {
    let mut server = start_http(&TestEnv::new().await, &["--host", "127.0.0.2"]).await;
    let response = reqwest::Client::new()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert!(
        server.url.starts_with("http://127.0.0.2:"),
        "{}",
        server.url
    );
    assert_eq!(response.status(), 200);
    let _ = server.child.kill().await;
}

/// A loopback bind keeps the strict Host check for a LAN address.
#[tokio::test]
async fn a_loopback_bind_refuses_a_lan_host() {
    let mut server = start_http(&TestEnv::new().await, &[]).await;
    let port = port_of(&server);
    let response = reqwest::Client::new()
        .post(&server.url)
        .header("host", format!("192.168.1.20:{port}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let _ = server.child.kill().await;
}

/// HTTP/2 without TLS (prior knowledge) is still served through the new accept loop.
#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let mut server = start_http(&TestEnv::new().await, &[]).await;
    let response = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert!(response.headers().get("mcp-session-id").is_some());
    let _ = server.child.kill().await;
}

/// The connection limits are validated at startup: 0 or a non-number is a configuration
/// error naming the variable, and the server does not start.
#[tokio::test]
async fn bad_connection_limits_stop_the_server() {
    for (name, value, problem) in [
        (
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT",
            "0",
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT=0 is not valid",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS",
            "lots",
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS='lots' is not a valid positive integer",
        ),
    ] {
        let mut env = TestEnv::new().await;
        env.set(name, value);
        let (code, _, err) = env
            .run_to_exit(&["--transport", "streamable-http", "--port", "1"])
            .await;
        assert_ne!(code, 0, "{name}={value}");
        assert!(err.contains(problem), "{name}={value}: {err}");
    }
}
