//! Metrics and health (issue 17, `docs/observability.md`): `/metrics` in the Prometheus text
//! format (read with a parser crate) whose counters move as runs succeed, fail and get
//! cancelled, with no session id in it; the bearer token guarding it; `/healthz` and
//! `/readyz` on the streamable HTTP transport and on `CLAUDE_AGENT_MCP_METRICS_ADDR`,
//! `/readyz` failing while PostgreSQL is unreachable.

use std::time::{Duration, Instant};

use agent_policy::config::vars;
use agent_testkit::postgres::fresh_schema;
use serde_json::json;
use wiremock::ResponseTemplate;

use super::fleet_postgres::Link;
use super::http::start_http_with;
use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET url` (with a bearer token when given): (status, body).
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Waits (30 s at most) until `base` answers `/healthz`.
async fn wait_until_serving(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/healthz")).await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base}/healthz never answered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The metrics text parsed with `prometheus-parse`.
struct Scrape {
    text: String,
    parsed: prometheus_parse::Scrape,
}

impl Scrape {
    async fn of(base: &str, token: Option<&str>) -> Self {
        let (status, text) = get(&format!("{base}/metrics"), token).await;
        assert_eq!(status, 200, "{text}");
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the Prometheus text format");
        assert!(text.ends_with("# EOF\n"), "{text}");
        Self { text, parsed }
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .parsed
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name}: not a number: {other:?}"),
            })
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?} in\n{}", self.text);
        found[0]
    }

    fn runs(&self, outcome: &str) -> f64 {
        self.value(
            "claude_agent_mcp_runs_total",
            &[
                ("workflow", "run_task"),
                ("backend", "api"),
                ("outcome", outcome),
            ],
        )
    }

    fn sessions(&self, status: &str) -> f64 {
        self.value("claude_agent_mcp_sessions", &[("status", status)])
    }
}

/// Over stdio with a metrics address: a run that completes, one the Messages API answers 500
/// and one cancelled with `agent_cancel_session` each move their counters (runs by outcome,
/// the duration histogram, tokens, model turns, cancellations, MCP requests, sessions by
/// status), and no session id appears in the text. Health answers there too, without a token
/// (none is set, so `/metrics` needs none either).
#[tokio::test]
async fn counters_move_as_runs_succeed_fail_and_get_cancelled() {
    let mut env = TestEnv::new().await;
    let port = free_port();
    env.set(vars::METRICS_ADDR, &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let server = env.start().await;
    wait_until_serving(&base).await;
    assert_eq!(
        get(&format!("{base}/healthz"), None).await,
        (200, "ok\n".into())
    );
    assert_eq!(
        get(&format!("{base}/readyz"), None).await,
        (200, "ok\n".into())
    );

    let before = Scrape::of(&base, None).await;
    for outcome in ["completed", "failed", "cancelled", "rejected"] {
        assert_eq!(before.runs(outcome), 0.0, "{outcome}");
    }
    assert_eq!(before.sessions("completed"), 0.0);

    env.reply_text("done").await;
    let ok = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(ok["ok"], json!(true), "{ok}");
    env.reply(ResponseTemplate::new(500).set_body_string("boom"))
        .await;
    let failed = server.call("agent_run_task", json!({"task": "t"})).await;
    assert_eq!(failed["ok"], json!(false), "{failed}");

    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("late"))
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let client = server.client.clone();
    let slow = tokio::spawn(async move {
        let args = json!({"task": "slow"}).as_object().cloned().unwrap();
        client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("agent_run_task").with_arguments(args),
            )
            .await
            .unwrap()
    });
    env.wait_for_request().await;
    let running = Scrape::of(&base, None).await;
    assert_eq!(running.sessions("running"), 1.0);
    let sid = env.latest_session_id().await;
    let cancel = server
        .call("agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(cancel["ok"], json!(true), "{cancel}");
    let cancelled = parse_single_text(&slow.await.unwrap());
    assert_eq!(
        cancelled["errors"][0]["code"],
        json!("session_cancelled"),
        "{cancelled}"
    );

    let after = Scrape::of(&base, None).await;
    assert_eq!(after.runs("completed"), 1.0);
    assert_eq!(after.runs("failed"), 1.0);
    assert_eq!(after.runs("cancelled"), 1.0);
    assert_eq!(after.runs("rejected"), 0.0);
    assert_eq!(
        after.value(
            "claude_agent_mcp_cancellations_total",
            &[("workflow", "run_task")]
        ),
        1.0
    );
    // The stand-in's usage: 11 input and 7 output tokens, one model turn.
    assert_eq!(
        after.value(
            "claude_agent_mcp_tokens_total",
            &[("backend", "api"), ("type", "input")]
        ),
        11.0
    );
    assert_eq!(
        after.value(
            "claude_agent_mcp_tokens_total",
            &[("backend", "api"), ("type", "output")]
        ),
        7.0
    );
    assert_eq!(
        after.value("claude_agent_mcp_model_turns_total", &[("backend", "api")]),
        1.0
    );
    // tools/call: three runs and one cancel, all answered without a JSON-RPC error.
    assert_eq!(
        after.value(
            "claude_agent_mcp_mcp_requests_total",
            &[("method", "tools/call"), ("outcome", "ok")]
        ),
        4.0
    );
    assert_eq!(
        after.value(
            "claude_agent_mcp_mcp_requests_total",
            &[("method", "initialize"), ("outcome", "ok")]
        ),
        1.0
    );
    assert!(
        after
            .text
            .contains("claude_agent_mcp_run_duration_seconds_count{workflow=\"run_task\",backend=\"api\",outcome=\"completed\"} 1"),
        "{}",
        after.text
    );
    assert!(
        after.text.contains(
            "claude_agent_mcp_mcp_request_duration_seconds_count{method=\"tools/call\"} 4"
        ),
        "{}",
        after.text
    );
    for status in ["completed", "failed", "cancelled"] {
        assert_eq!(after.sessions(status), 1.0, "{status}");
    }
    assert_eq!(after.sessions("running"), 0.0);
    for id in [
        sid.as_str(),
        ok["session_id"].as_str().unwrap(),
        failed["session_id"].as_str().unwrap(),
    ] {
        assert!(!after.text.contains(id), "{id} in\n{}", after.text);
    }
    assert!(!after.text.contains("sess_"), "{}", after.text);
    every_dashboard_metric_is_served(&after.text);
    server.shutdown().await;
}

/// The Grafana dashboard of `deploy/` queries only metrics the server serves.
fn every_dashboard_metric_is_served(metrics: &str) {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../../deploy/grafana-dashboard.json"))
            .expect("the dashboard is JSON");
    let text = dashboard.to_string();
    let mut names: Vec<&str> = text
        .match_indices("claude_agent_mcp_")
        .map(|(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            metrics
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
}

/// On the streamable HTTP transport `/metrics` sits behind the bearer token as `/mcp` does
/// (401 without it, 200 with it), and so it does on the metrics address when the token is set;
/// `/healthz` and `/readyz` answer without it on both, revealing nothing but `ok`.
#[tokio::test]
async fn the_bearer_token_guards_metrics_and_not_health() {
    let mut env = TestEnv::new().await;
    env.set(vars::HTTP_BEARER_TOKEN, "s3cret");
    let metrics_port = free_port();
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut server = start_http_with(&env, &[], &[(vars::METRICS_ADDR, &metrics_addr)]).await;
    let http_base = server.url.trim_end_matches("/mcp").to_owned();
    wait_until_serving(&metrics_base).await;
    for base in [&http_base, &metrics_base] {
        let url = format!("{base}/metrics");
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(!body.contains("claude_agent_mcp"), "{body}");
        assert_eq!(get(&url, Some("wrong")).await.0, 401, "{url}");
        let scrape = Scrape::of(base, Some("s3cret")).await;
        assert_eq!(scrape.runs("completed"), 0.0);
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                get(&format!("{base}{path}"), None).await,
                (200, "ok\n".into()),
                "{base}{path}"
            );
        }
        // Other paths stay unknown.
        assert_eq!(
            get(&format!("{base}/metrics/"), Some("s3cret")).await.0,
            404
        );
    }
    let _ = server.child.kill().await;
}

/// `/readyz` follows the store: PostgreSQL reached through a TCP link the test cuts answers
/// `503 not ready` on both the HTTP transport and the metrics address (within the probe's
/// 2 s timeout), while `/healthz` still answers `ok`; once the link is back, ready again.
#[tokio::test]
async fn readyz_fails_while_postgres_is_unreachable() {
    use std::str::FromStr;
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(pg.url()).unwrap();
    let target = (options.get_host().to_owned(), options.get_port());
    let authority = format!("{}:{}", target.0, target.1);
    assert!(pg.url().contains(&authority), "{}", pg.url());
    let link = Link::open(target).await;
    let linked_url = pg
        .url()
        .replacen(&authority, &format!("127.0.0.1:{}", link.port), 1);
    let env = TestEnv::new().await;
    let metrics_port = free_port();
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut server = start_http_with(
        &env,
        &[],
        &[
            (vars::DATABASE_URL, &linked_url),
            (vars::METRICS_ADDR, &metrics_addr),
        ],
    )
    .await;
    let http_base = server.url.trim_end_matches("/mcp").to_owned();
    wait_until_serving(&metrics_base).await;
    let bases = [http_base.as_str(), metrics_base.as_str()];
    for base in bases {
        assert_eq!(
            get(&format!("{base}/readyz"), None).await,
            (200, "ok\n".into())
        );
    }
    let scrape = Scrape::of(&metrics_base, None).await;
    assert_eq!(scrape.sessions("completed"), 0.0);

    link.cut();
    for base in bases {
        let started = Instant::now();
        assert_eq!(
            get(&format!("{base}/readyz"), None).await,
            (503, "not ready\n".into()),
            "{base}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            get(&format!("{base}/healthz"), None).await,
            (200, "ok\n".into())
        );
    }
    // The metrics are still served; the failed count is itself counted.
    let scrape = Scrape::of(&metrics_base, None).await;
    assert!(scrape.value("claude_agent_mcp_sessions_scrape_errors_total", &[]) >= 1.0);

    link.restore().await;
    let restored = Instant::now();
    for base in bases {
        loop {
            if get(&format!("{base}/readyz"), None).await.0 == 200 {
                break;
            }
            assert!(
                restored.elapsed() < Duration::from_secs(60),
                "{base}/readyz not ready again after the link came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = server.child.kill().await;
}

/// On the claude_code backend, whose CLI reports a cost, the cost and the tokens of a run are
/// counted under `backend="claude_code"`.
#[tokio::test]
async fn the_claude_code_backend_s_cost_and_tokens_are_counted() {
    let mut cli = super::claude_code::Cli::new("native").await;
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"success","is_error":false,"result":"Native answer","session_id":"0f5e5a3e-1111-4222-8333-944455556666","num_turns":2,"total_cost_usd":0.0123,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":4},"stop_reason":"end_turn"}"#,
    );
    let port = free_port();
    cli.env
        .set(vars::METRICS_ADDR, &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let server = cli.env.start().await;
    wait_until_serving(&base).await;
    let run = server
        .call("agent_run_task", json!({"task": "hello"}))
        .await;
    assert_eq!(run["ok"], json!(true), "{run}");
    let scrape = Scrape::of(&base, None).await;
    let backend = ("backend", "claude_code");
    assert_eq!(
        scrape.value("claude_agent_mcp_cost_usd_total", &[backend]),
        0.0123
    );
    for (r#type, count) in [
        ("input", 10.0),
        ("output", 5.0),
        ("cache_read", 4.0),
        ("cache_write", 0.0),
    ] {
        assert_eq!(
            scrape.value(
                "claude_agent_mcp_tokens_total",
                &[backend, ("type", r#type)]
            ),
            count,
            "{type}"
        );
    }
    assert_eq!(
        scrape.value("claude_agent_mcp_model_turns_total", &[backend]),
        2.0
    );
    assert_eq!(
        scrape.value(
            "claude_agent_mcp_runs_total",
            &[("workflow", "run_task"), backend, ("outcome", "completed")]
        ),
        1.0
    );
    server.shutdown().await;
}

/// A metrics address that cannot be bound stops startup (exit 1) with a message naming the
/// variable and the address.
#[tokio::test]
async fn a_metrics_address_in_use_stops_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut env = TestEnv::new().await;
    env.set(vars::METRICS_ADDR, &addr);
    let (code, stdout, stderr) = env.run_to_exit(&[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "CLAUDE_AGENT_MCP_METRICS_ADDR: could not bind {addr}: "
        )),
        "{stderr}"
    );
    assert_eq!(env.session_count().await, 0);
    drop(taken);
}

/// Tool calls are counted by kind and outcome: a built-in tool that reads a file (`ok`) and one
/// asked to escape the sandbox (`error`) in the tool-use loop, and a tool request in a
/// claude_code output executed by mediation through a federated server (`mediated`, `ok`).
#[tokio::test]
async fn tool_calls_are_counted_by_kind_and_outcome() {
    use super::tools::tool_use;

    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    let port = free_port();
    env.set(vars::METRICS_ADDR, &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(env.cwd().join("notes.txt"), "pineapple").unwrap();
    let server = env.start().await;
    wait_until_serving(&base).await;
    for (path, answer) in [("notes.txt", "read it"), ("../../etc/passwd", "refused")] {
        env.reply_tool_use_then(
            tool_use("toolu_1", "read_file", json!({"path": path})),
            answer,
        )
        .await;
        let run = server.call("agent_run_task", json!({"task": "read"})).await;
        assert_eq!(run["ok"], json!(true), "{run}");
    }
    let scrape = Scrape::of(&base, None).await;
    let calls = |kind, outcome| {
        scrape.value(
            "claude_agent_mcp_tool_calls_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("builtin", "ok"), 1.0);
    assert_eq!(calls("builtin", "error"), 1.0);
    assert_eq!(calls("federated", "ok"), 0.0);
    assert_eq!(calls("mediated", "ok"), 0.0);
    assert_eq!(
        scrape.value("claude_agent_mcp_model_turns_total", &[("backend", "api")]),
        4.0,
        "two turns per run"
    );
    server.shutdown().await;

    let mut cli = super::mediation::mediated(true, true).await;
    let port = free_port();
    cli.env
        .set(vars::METRICS_ADDR, &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let server = cli.env.start().await;
    wait_until_serving(&base).await;
    let run = server
        .call("agent_run_task", json!({"task": "look it up"}))
        .await;
    assert_eq!(run["ok"], json!(true), "{run}");
    let scrape = Scrape::of(&base, None).await;
    assert_eq!(
        scrape.value(
            "claude_agent_mcp_tool_calls_total",
            &[("kind", "mediated"), ("outcome", "ok")]
        ),
        1.0
    );
    server.shutdown().await;
}
