//! One session space served by three server processes over streamable HTTP (issue 14,
//! `docs/scaling.md`): each behaviour runs on PostgreSQL (three nodes on one fresh schema,
//! each with a state directory of its own, so the database is all they share) and on SQLite
//! (three nodes on one state directory).
//!
//! * 300 sessions created round robin are each listed and readable (session, events,
//!   artifacts) through every node;
//! * concurrent continues of one session through the three nodes: exactly one runs, the
//!   others answer `session_conflict`;
//! * `agent_cancel_session` through node B stops a run on node A within about a second;
//! * SIGKILL of the node running a slow task: another node reports the session `interrupted`
//!   within the lease TTL plus one sweep, and it is continued there;
//! * a client whose every request goes to the next node completes run → continue → get →
//!   verify (a session-id client and a 2026-07-28 client);
//! * on PostgreSQL (`fleet.rs` has them on SQLite): an MCP task created through node A is read
//!   with its result through B and C, and cancelled through C; `notifications/cancelled`
//!   through node B stops a session-id client's run on A.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agent_policy::config::vars;
use agent_testkit::postgres::{FreshSchema, fresh_schema};
use futures::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::{PaginatedRequestParams, ReadResourceRequestParams, ResourceContents};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::fleet::{
    call, create_task, open_session, round_robin, rpc, session_id_client_at,
    session_id_client_through, stateless_client_at, stateless_client_through, task_client,
    wait_for_named_task,
};
use super::http::{HttpServer, start_http_with};
use crate::support::*;

/// The lease TTL of the crash test: renewed every 2/3 s, swept every second.
const SHORT_TTL_SECS: u64 = 2;

/// What the nodes share.
enum Store {
    /// One state directory (the test's).
    Sqlite,
    /// One PostgreSQL schema, new for the test (dropped with it); each node has a state
    /// directory of its own.
    Postgres(FreshSchema),
}

impl Store {
    fn sqlite() -> Self {
        Self::Sqlite
    }

    /// A fresh schema, or `None` (the test is skipped, after a `SKIPPED` line) when no
    /// PostgreSQL answers and `CLAUDE_AGENT_MCP_REQUIRE_PEERS` is not `1`.
    async fn postgres() -> Option<Self> {
        fresh_schema().await.map(Self::Postgres)
    }

    /// The variables of node `n` (its own state directory unless the nodes share SQLite's).
    fn node_vars(&self, env: &TestEnv, n: usize) -> Vec<(&'static str, String)> {
        match self {
            Self::Sqlite => Vec::new(),
            Self::Postgres(pg) => vec![
                (vars::DATABASE_URL, pg.url().to_owned()),
                (
                    vars::STATE_DIR,
                    path_str(&env.cwd().join(format!("node-{n}"))),
                ),
            ],
        }
    }
}

/// Three nodes, each with a session-id client of its own (requests aimed at one node).
struct Fleet {
    env: TestEnv,
    /// Kept for its lifetime (a PostgreSQL schema is dropped with it).
    store: Store,
    nodes: Vec<HttpServer>,
    clients: Vec<Client>,
}

impl Fleet {
    /// Starts three nodes at the same moment (on a new database: all apply the schema at once)
    /// with `vars` set on each, and connects a client to each.
    async fn start(store: Store, vars: &[(&str, &str)]) -> Self {
        let mut env = TestEnv::new().await;
        for (k, v) in vars {
            env.set(k, v);
        }
        let per_node: Vec<Vec<(&'static str, String)>> =
            (0..3).map(|n| store.node_vars(&env, n)).collect();
        let borrowed: Vec<Vec<(&str, &str)>> = per_node
            .iter()
            .map(|vars| vars.iter().map(|(k, v)| (*k, v.as_str())).collect())
            .collect();
        let (a, b, c) = tokio::join!(
            start_http_with(&env, &[], &borrowed[0]),
            start_http_with(&env, &[], &borrowed[1]),
            start_http_with(&env, &[], &borrowed[2]),
        );
        let nodes = vec![a, b, c];
        let mut clients = Vec::new();
        for node in &nodes {
            let transport = StreamableHttpClientTransport::from_uri(node.url.clone());
            clients.push(().serve(transport).await.expect("initialize a node"));
        }
        Self {
            env,
            store,
            nodes,
            clients,
        }
    }

    /// A tool call through node `n`; its JSON result.
    async fn call(&self, n: usize, name: &'static str, args: Value) -> Value {
        call(&self.clients[n], name, args).await
    }

    /// The text of resource `uri` read through node `n`.
    async fn read(&self, n: usize, uri: String) -> String {
        let read = self.clients[n]
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap_or_else(|e| panic!("{uri} through node {n}: {e}"));
        match &read.contents[..] {
            [ResourceContents::TextResourceContents { text, .. }] => text.clone(),
            other => panic!("{uri} through node {n}: {other:?}"),
        }
    }

    /// Every `session://` URI `resources/list` gives through node `n`, all pages.
    async fn listed(&self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.clients[n]
                .list_resources(Some(
                    PaginatedRequestParams::default().with_cursor(cursor.clone()),
                ))
                .await
                .unwrap_or_else(|e| panic!("resources/list through node {n}: {e}"));
            seen.extend(page.resources.into_iter().map(|r| r.uri));
            cursor = page.next_cursor;
            if cursor.is_none() {
                return seen;
            }
        }
    }

    /// The id of the one `running` session, as node `n` lists it (waits until there is one).
    async fn running_session(&self, n: usize) -> String {
        // Generous: the run is recorded before its model request, which the caller awaited.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = self
                .call(n, "agent_list_sessions", json!({"status": "running"}))
                .await;
            if let [one] = listed["sessions"].as_array().map(Vec::as_slice).unwrap() {
                return one["session_id"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no running session: {listed}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `agent_run_task` through node `n` in the background, the stand-in replying `text` after
    /// `delay`; returns once the model request is in flight, with the call and the instant
    /// its answer came.
    async fn slow_run(
        &self,
        n: usize,
        text: &str,
        delay: Duration,
    ) -> tokio::task::JoinHandle<(Result<Value, String>, Instant)> {
        self.env
            .reply(
                ResponseTemplate::new(200)
                    .set_body_json(text_reply(text))
                    .set_delay(delay),
            )
            .await;
        let client = self.clients[n].clone();
        let call = tokio::spawn(async move {
            let args = json!({"task": "slow"}).as_object().cloned().unwrap();
            let result = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("agent_run_task").with_arguments(args),
                )
                .await;
            let at = Instant::now();
            (
                result
                    .map(|r| parse_single_text(&r))
                    .map_err(|e| e.to_string()),
                at,
            )
        });
        self.env.wait_for_request().await;
        call
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill().await;
        }
        // The clients' workers end with their connections; a closing `DELETE` to a dead node
        // is not awaited.
        self.clients.clear();
    }
}

/// Generates `$name::sqlite` and `$name::postgres`, each running `$name(store)`.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Store::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(store) = super::Store::postgres().await else {
                    return;
                };
                super::$name(store).await;
            }
        }
    )*};
}

on_each_store!(
    three_hundred_sessions_are_listed_and_read_through_every_node,
    concurrent_continues_through_three_nodes_run_once,
    a_cancel_through_one_node_stops_the_run_on_another,
    a_killed_node_s_run_is_interrupted_and_continued_elsewhere,
);

/// On SQLite, `fleet.rs` runs the same clients through three nodes on one state directory.
#[tokio::test]
async fn clients_served_by_the_next_node_each_time_complete_their_work_on_postgres() {
    let Some(store) = Store::postgres().await else {
        return;
    };
    clients_served_by_the_next_node_each_time_complete_their_work(store).await;
}

/// 300 sessions created round robin (12 calls in flight): every node lists all of them
/// (`resources/list`, every page; the newest 200 through `agent_list_sessions`) and reads each
/// one's session, events and artifact, identical whichever node answers.
async fn three_hundred_sessions_are_listed_and_read_through_every_node(store: Store) {
    const SESSIONS: usize = 300;
    let fleet = Fleet::start(store, &[]).await;
    // Over 50 characters: every run stores its output as an artifact.
    let output = "An output long enough to be kept as an artifact of its session.";
    fleet.env.reply_text(output).await;
    let created: Vec<(String, String)> = futures::stream::iter(0..SESSIONS)
        .map(|i| {
            let fleet = &fleet;
            async move {
                let run = fleet
                    .call(
                        i % 3,
                        "agent_run_task",
                        json!({"task": format!("task {i}")}),
                    )
                    .await;
                assert_eq!(run["ok"], json!(true), "{run}");
                let sid = run["session_id"].as_str().unwrap().to_owned();
                let aid = run["artifacts"][0]["artifact_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an artifact: {run}"))
                    .to_owned();
                (sid, aid)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let ids: BTreeSet<String> = created.iter().map(|(sid, _)| sid.clone()).collect();
    assert_eq!(ids.len(), SESSIONS, "no duplicate session id");
    let uris: BTreeSet<String> = ids.iter().map(|sid| format!("session://{sid}")).collect();

    for n in 0..3 {
        let listed = fleet.listed(n).await;
        assert_eq!(listed.len(), SESSIONS, "node {n} lists each session once");
        assert_eq!(
            listed.iter().cloned().collect::<BTreeSet<_>>(),
            uris,
            "node {n}"
        );
        let newest = fleet
            .call(n, "agent_list_sessions", json!({"limit": 200}))
            .await;
        let newest = newest["sessions"].as_array().unwrap();
        assert_eq!(newest.len(), 200, "node {n}");
        assert!(
            newest
                .iter()
                .all(|s| ids.contains(s["session_id"].as_str().unwrap())
                    && s["status"] == json!("completed")),
            "node {n}"
        );
    }

    let reads = futures::stream::iter(created.iter())
        .map(|(sid, aid)| {
            let fleet = &fleet;
            async move {
                let mut seen = Vec::new();
                for n in 0..3 {
                    let session: Value =
                        serde_json::from_str(&fleet.read(n, format!("session://{sid}")).await)
                            .unwrap();
                    let events: Value = serde_json::from_str(
                        &fleet.read(n, format!("session://{sid}/events")).await,
                    )
                    .unwrap();
                    let artifact = fleet.read(n, format!("artifact://{sid}/{aid}")).await;
                    seen.push((session, events, artifact));
                }
                (sid, seen)
            }
        })
        .buffer_unordered(12)
        .collect::<Vec<_>>()
        .await;
    for (sid, seen) in reads {
        let (session, events, artifact) = &seen[0];
        assert_eq!(session["session_id"], json!(sid));
        assert_eq!(session["status"], json!("completed"), "{session}");
        assert_eq!(session["artifact_count"], json!(1), "{session}");
        let types: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "user_input",
                "system_prompt_resolved",
                "policy_decision",
                "provider_request_start",
                "provider_response_summary"
            ],
            "{sid}"
        );
        assert_eq!(artifact, output, "{sid}");
        assert_eq!(seen[1], seen[0], "{sid}: node 1 reads what node 0 reads");
        assert_eq!(seen[2], seen[0], "{sid}: node 2 reads what node 0 reads");
    }
    fleet.stop().await;
}

/// One session, three continues sent at the same moment, one through each node, while the
/// model takes 3 s: exactly one runs (one model request); the other two answer
/// `session_conflict` naming the holder (a lock owner on a node) and change nothing.
async fn concurrent_continues_through_three_nodes_run_once(store: Store) {
    let fleet = Fleet::start(store, &[]).await;
    fleet.env.reply_text("first").await;
    let run = fleet.call(0, "agent_run_task", json!({"task": "t"})).await;
    let sid = run["session_id"].as_str().unwrap().to_owned();
    fleet
        .env
        .reply(
            ResponseTemplate::new(200)
                .set_body_json(text_reply("the one continuation"))
                .set_delay(Duration::from_secs(3)),
        )
        .await;
    let cont = |n: usize| {
        fleet.call(
            n,
            "agent_continue_session",
            json!({"session_id": sid, "message": format!("through node {n}")}),
        )
    };
    let (a, b, c) = tokio::join!(cont(0), cont(1), cont(2));
    let answers = [a, b, c];
    let ran: Vec<&Value> = answers.iter().filter(|v| v["ok"] == json!(true)).collect();
    assert_eq!(ran.len(), 1, "exactly one runs: {answers:?}");
    assert_eq!(ran[0]["status"], json!("completed"), "{}", ran[0]);
    assert_eq!(
        ran[0]["result"]["output_text"],
        json!("the one continuation")
    );
    let conflicts: Vec<&Value> = answers.iter().filter(|v| v["ok"] != json!(true)).collect();
    for conflict in &conflicts {
        assert_eq!(
            conflict["errors"][0]["code"],
            json!("session_conflict"),
            "{conflict}"
        );
        let message = conflict["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("Session {sid} is locked by "))
                && message.contains("@node_"),
            "{message}"
        );
    }
    assert_eq!(fleet.env.requests().await.len(), 1, "one model request");
    for n in 0..3 {
        let got = fleet
            .call(n, "agent_get_session", json!({"session_id": sid}))
            .await;
        assert_eq!(got["status"], json!("completed"), "node {n}: {got}");
        assert_eq!(got["turn_count"], json!(2), "node {n}: {got}");
    }
    fleet.stop().await;
}

/// A slow run through node A; `agent_cancel_session` through node B: A's run stops within
/// about a second (its client gets `session_cancelled`), B answers the cancelled envelope, and
/// node C reads `cancelled` with the reason in the last event.
async fn a_cancel_through_one_node_stops_the_run_on_another(store: Store) {
    let fleet = Fleet::start(store, &[]).await;
    let run = fleet.slow_run(0, "too late", Duration::from_secs(60)).await;
    let sid = fleet.running_session(1).await;
    let asked = Instant::now();
    let cancel = fleet
        .call(1, "agent_cancel_session", json!({"session_id": sid}))
        .await;
    assert_eq!(
        cancel,
        json!({"ok": true, "session_id": sid, "status": "completed", "workflow": "cancel_session", "profile": "general",
               "summary": format!("Session {sid} cancelled"), "result": {"session_id": sid, "status": "cancelled"},
               "artifacts": [], "warnings": [], "errors": []})
    );
    let (answer, at) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("A's run stops long before the model answers")
        .unwrap();
    let stopped_after = at.duration_since(asked);
    let answer = answer.expect("A answers its client");
    let message = format!("Session {sid} was cancelled: cancelled by agent_cancel_session");
    assert_eq!(
        answer["errors"],
        json!([{"code": "session_cancelled", "message": message, "details": null}])
    );
    eprintln!("A's run stopped {stopped_after:?} after the cancel through B");
    // About a second: the store's wake-up (PostgreSQL) or the holder's next poll (SQLite,
    // every 250 ms), with room for a loaded machine.
    assert!(
        stopped_after < Duration::from_secs(2),
        "A's run stopped {stopped_after:?} after the cancel through B"
    );
    let got = fleet
        .call(2, "agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("cancelled"), "{got}");
    let events: Value =
        serde_json::from_str(&fleet.read(2, format!("session://{sid}/events")).await).unwrap();
    let last = events.as_array().unwrap().last().unwrap();
    assert_eq!(last["event_type"], json!("session_cancelled"));
    assert_eq!(
        last["payload"],
        json!({"reason": "cancelled by agent_cancel_session"})
    );
    assert_eq!(fleet.env.requests().await.len(), 1);
    fleet.stop().await;
}

/// SIGKILL of node A while it runs a slow task (lease TTL 2 s): until the lease runs out the
/// session reads `running` and a continue answers `session_conflict`; node B reports it
/// `interrupted` (event `lease_expired`) within TTL plus one sweep (3 s after the kill, with
/// room for a loaded machine), and node C continues it.
async fn a_killed_node_s_run_is_interrupted_and_continued_elsewhere(store: Store) {
    let ttl = SHORT_TTL_SECS.to_string();
    let mut fleet = Fleet::start(store, &[(vars::LOCK_TTL, ttl.as_str())]).await;
    let run = fleet.slow_run(0, "never", Duration::from_secs(60)).await;
    let sid = fleet.running_session(1).await;
    fleet.nodes[0].child.kill().await.expect("SIGKILL node A");
    let killed = Instant::now();
    // A's client loses its request (rmcp's client keeps trying to resume the stream).
    run.abort();

    let conflict = fleet
        .call(
            2,
            "agent_continue_session",
            json!({"session_id": sid, "message": "too soon"}),
        )
        .await;
    assert_eq!(
        conflict["errors"][0]["code"],
        json!("session_conflict"),
        "the dead node's lease is live until it expires: {conflict}"
    );

    let mut status = String::new();
    while killed.elapsed() < Duration::from_secs(30) {
        let got = fleet
            .call(1, "agent_get_session", json!({"session_id": sid}))
            .await;
        status = got["status"].as_str().unwrap().to_owned();
        if status != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = killed.elapsed();
    assert_eq!(status, "interrupted");
    eprintln!("interrupted {after:?} after the kill");
    let bound = Duration::from_secs(SHORT_TTL_SECS) * 3 / 2;
    assert!(
        after < bound + Duration::from_millis(1500),
        "interrupted {after:?} after the kill (TTL + one sweep: {bound:?})"
    );
    let events: Value =
        serde_json::from_str(&fleet.read(1, format!("session://{sid}/events")).await).unwrap();
    let last = events.as_array().unwrap().last().unwrap();
    assert_eq!(last["event_type"], json!("lease_expired"), "{last}");

    fleet.env.reply_text("resumed on node C").await;
    let resumed = fleet
        .call(
            2,
            "agent_continue_session",
            json!({"session_id": sid, "message": "go on"}),
        )
        .await;
    assert_eq!(resumed["ok"], json!(true), "{resumed}");
    assert_eq!(resumed["status"], json!("completed"), "{resumed}");
    assert_eq!(resumed["result"]["output_text"], json!("resumed on node C"));
    fleet.stop().await;
}

/// Behind a round-robin proxy (each HTTP request to the next node), a 2025-11-25 session-id
/// client and a 2026-07-28 client each complete run → continue → get → verify.
async fn clients_served_by_the_next_node_each_time_complete_their_work(store: Store) {
    let fleet = Fleet::start(store, &[]).await;
    let proxy = round_robin(fleet.nodes.iter().map(|n| n.url.clone()).collect()).await;
    session_id_client_through(&fleet.env, &proxy, None).await;
    stateless_client_through(&fleet.env, &proxy).await;
    proxy.task.abort();
    fleet.stop().await;
}

/// A TCP link to PostgreSQL that the test can cut (every open connection closed, new ones
/// refused) and restore on the same port.
pub(super) struct Link {
    pub(super) port: u16,
    target: (String, u16),
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Link {
    pub(super) async fn open(target: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Self {
            port,
            target,
            tasks: Default::default(),
        };
        link.serve(listener);
        link
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let tasks = std::sync::Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect((target.0.as_str(), target.1)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    pub(super) fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub(super) async fn restore(&self) {
        // The port was released when the accepting task was aborted.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the link's port is free again");
        self.serve(listener);
    }
}

/// PostgreSQL goes away under one node (its TCP link cut: open connections closed, new ones
/// refused) while another node keeps its own link: the cut node answers each call with an
/// error once the pool's acquire timeout (5 s per store call) is over (a read `internal_error`, a run
/// `provider_runtime_error` without a session), neither hanging nor crashing; the other
/// node serves every session as before; once the link is back the cut node serves again
/// without a restart.
#[tokio::test]
async fn a_node_that_loses_the_database_answers_errors_and_recovers() {
    use std::str::FromStr;
    let Some(pg) = fresh_schema().await else {
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(pg.url()).unwrap();
    let target = (options.get_host().to_owned(), options.get_port());
    let authority = format!("{}:{}", target.0, target.1);
    assert!(
        pg.url().contains(&authority),
        "the test URL names its host and port: {}",
        pg.url()
    );
    let link = Link::open(target).await;
    let linked_url = pg
        .url()
        .replacen(&authority, &format!("127.0.0.1:{}", link.port), 1);
    let env = TestEnv::new().await;
    env.reply_text("stored").await;
    let a_dir = path_str(&env.cwd().join("node-a"));
    let b_dir = path_str(&env.cwd().join("node-b"));
    let mut a = start_http_with(
        &env,
        &[],
        &[(vars::DATABASE_URL, &linked_url), (vars::STATE_DIR, &a_dir)],
    )
    .await;
    let mut b = start_http_with(
        &env,
        &[],
        &[(vars::DATABASE_URL, pg.url()), (vars::STATE_DIR, &b_dir)],
    )
    .await;
    let connect = |url: String| async move {
        ().serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .expect("initialize")
    };
    let (ca, cb) = (connect(a.url.clone()).await, connect(b.url.clone()).await);
    let before = call(&ca, "agent_run_task", json!({"task": "before"})).await;
    assert_eq!(before["ok"], json!(true), "{before}");
    let sid = before["session_id"].as_str().unwrap().to_owned();

    link.cut();
    let cut = Instant::now();
    // Each store call waits for a connection at most the pool's acquire timeout (5 s); a run
    // makes three (registering the request, creating the session, forgetting the request).
    let (got, run) = tokio::join!(
        call(&ca, "agent_get_session", json!({"session_id": sid})),
        call(&ca, "agent_run_task", json!({"task": "while cut"})),
    );
    let answered = cut.elapsed();
    eprintln!("the cut node answered after {answered:?}: {got} / {run}");
    assert!(answered < Duration::from_secs(25), "{answered:?}");
    // A connection the node used within the last second is not pinged again before its next
    // statement (`docs/scaling.md`): the read then fails at once on it; otherwise the pool
    // finds every connection dead and times out.
    assert_eq!(got["error"]["code"], json!("internal_error"), "{got}");
    let message = got["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message == "database error: pool timed out while waiting for an open connection"
            || message.starts_with("database error: error communicating with database: "),
        "{got}"
    );
    assert_eq!(run["ok"], json!(false), "{run}");
    assert_eq!(
        run["errors"][0]["code"],
        json!("provider_runtime_error"),
        "{run}"
    );
    let through_b = call(&cb, "agent_get_session", json!({"session_id": sid})).await;
    assert_eq!(through_b["status"], json!("completed"), "{through_b}");
    let on_b = call(&cb, "agent_run_task", json!({"task": "on b"})).await;
    assert_eq!(on_b["ok"], json!(true), "{on_b}");

    link.restore().await;
    let restored = Instant::now();
    let mut again = Value::Null;
    while restored.elapsed() < Duration::from_secs(60) {
        again = call(&ca, "agent_get_session", json!({"session_id": sid})).await;
        if again["ok"] != json!(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the cut node served again {:?} after the link was restored",
        restored.elapsed()
    );
    assert_eq!(again["status"], json!("completed"), "{again}");
    let after = call(&ca, "agent_run_task", json!({"task": "after"})).await;
    assert_eq!(after["ok"], json!(true), "{after}");
    let listed = call(&cb, "agent_list_sessions", json!({})).await;
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        3,
        "before, on b and after; nothing of the cut run: {listed}"
    );
    drop((ca, cb));
    let _ = a.child.kill().await;
    let _ = b.child.kill().await;
}

/// The session's status as node `n` reads it, once it is no longer `running` (30 s at most).
async fn settled_status(fleet: &Fleet, n: usize, sid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = fleet
            .call(n, "agent_get_session", json!({"session_id": sid}))
            .await;
        if got["status"] != json!("running") || Instant::now() >= deadline {
            return got["status"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rows left in a table of the fleet's schema.
async fn rows_in(store: &Store, table: &str) -> i64 {
    let Store::Postgres(pg) = store else {
        panic!("PostgreSQL only")
    };
    let mut conn = pg.connect().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// MCP task state on PostgreSQL: a task created through node A runs there and is read while
/// it works, then with its result, through B and C; a second one, cancelled through C, stops
/// the run on A, and every node reports it `cancelled`.
#[tokio::test]
async fn tasks_are_read_and_cancelled_through_every_node_on_postgres() {
    let Some(store) = Store::postgres().await else {
        return;
    };
    let fleet = Fleet::start(store, &[]).await;
    fleet
        .env
        .reply(
            ResponseTemplate::new(200)
                .set_body_json(text_reply("done as a task"))
                .set_delay(Duration::from_millis(500)),
        )
        .await;
    let a = task_client(&fleet.nodes[0].url).await;
    let b = task_client(&fleet.nodes[1].url).await;
    let c = task_client(&fleet.nodes[2].url).await;
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

    // A slow one, cancelled through C while A runs it.
    fleet
        .env
        .reply(
            ResponseTemplate::new(200)
                .set_body_json(text_reply("too late"))
                .set_delay(Duration::from_secs(60)),
        )
        .await;
    let slow = create_task(&a, "slow").await;
    fleet.env.wait_for_request().await;
    let slow_sid = wait_for_named_task(&b, &slow).await;
    assert_ne!(slow_sid, sid);
    let asked = Instant::now();
    c.cancel_task(rmcp::model::CancelTaskParams::new(slow.clone()))
        .await
        .unwrap();
    let cancelled = super::tasks::poll(&b, &slow).await;
    let took = asked.elapsed();
    assert_eq!(
        cancelled.task.task.status,
        rmcp::model::TaskStatus::Cancelled
    );
    eprintln!("tasks/cancel through another node on PostgreSQL: task settled in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        settled_status(&fleet, 2, &slow_sid).await,
        json!("cancelled")
    );
    let events: Value =
        serde_json::from_str(&fleet.read(1, format!("session://{slow_sid}/events")).await).unwrap();
    assert_eq!(
        events.as_array().unwrap().last().unwrap()["payload"],
        json!({"reason": "cancelled by tasks/cancel"})
    );
    for node in [&a, &b, &c] {
        let read = node
            .get_task(rmcp::model::GetTaskParams::new(slow.clone()))
            .await
            .unwrap();
        assert_eq!(read.task.task.status, rmcp::model::TaskStatus::Cancelled);
    }
    assert_eq!(rows_in(&fleet.store, "mcp_tasks").await, 2);
    for client in [a, b, c] {
        let _ = client.cancel().await;
    }
    fleet.stop().await;
}

/// The registry of requests in flight on PostgreSQL: `notifications/cancelled` from a
/// session-id client through node B stops its run on node A; the same request id cancelled by
/// another client reaches nothing; the entry is removed once the call answers.
#[tokio::test]
async fn notifications_cancelled_through_another_node_stops_the_run_on_postgres() {
    let Some(store) = Store::postgres().await else {
        return;
    };
    let fleet = Fleet::start(store, &[]).await;
    fleet
        .env
        .reply(
            ResponseTemplate::new(200)
                .set_body_json(text_reply("too late"))
                .set_delay(Duration::from_secs(60)),
        )
        .await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = fleet.nodes.iter().map(|n| n.url.clone()).collect();
    let session = open_session(&http, &urls[0], false).await;
    let call = {
        let (http, url, session) = (http.clone(), urls[0].clone(), session.clone());
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
    fleet.env.wait_for_request().await;
    let sid = fleet.running_session(1).await;
    let other = open_session(&http, &urls[2], false).await;
    let (status, _, _) = rpc(
        &http,
        &urls[1],
        Some(&other),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 2, "reason": "not mine"}}),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = fleet
        .call(2, "agent_get_session", json!({"session_id": sid}))
        .await;
    assert_eq!(got["status"], json!("running"), "{got}");
    let asked = Instant::now();
    let (status, _, _) = rpc(
        &http,
        &urls[1],
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 2, "reason": "stopped by the user"}}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(settled_status(&fleet, 2, &sid).await, json!("cancelled"));
    let took = asked.elapsed();
    eprintln!("notifications/cancelled through another node on PostgreSQL: stopped in {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (_, answer, _) = call.await.unwrap();
    let answer = answer.expect("an answer");
    assert_eq!(
        answer["result"]["structuredContent"]["errors"][0]["code"],
        json!("session_cancelled"),
        "{answer}"
    );
    let events: Value =
        serde_json::from_str(&fleet.read(0, format!("session://{sid}/events")).await).unwrap();
    assert_eq!(
        events.as_array().unwrap().last().unwrap()["payload"],
        json!({"reason": "the client cancelled the request (notifications/cancelled)"})
    );
    assert_eq!(rows_in(&fleet.store, "mcp_requests").await, 0);
    fleet.stop().await;
}

/// A real load balancer in front of the fleet: the deploy/ configuration itself, with the
/// nodes' ports (8001–8003) and its own (8000) replaced by the test's.
#[derive(Clone, Copy, Debug)]
enum Balancer {
    Nginx,
    Haproxy,
}

impl Balancer {
    fn peer(self) -> agent_testkit::peers::Peer {
        match self {
            Self::Nginx => agent_testkit::peers::NGINX,
            Self::Haproxy => agent_testkit::peers::HAPROXY,
        }
    }

    fn config_file(self) -> &'static str {
        match self {
            Self::Nginx => "nginx.conf",
            Self::Haproxy => "haproxy.cfg",
        }
    }

    /// The committed configuration with the test's ports; each replacement must apply, so a
    /// change of the file's layout fails here rather than testing something else.
    fn config(self, nodes: &[String], port: u16, dir: &std::path::Path) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy")
            .join(self.config_file());
        let mut text = std::fs::read_to_string(&path).unwrap();
        let mut replace = |from: &str, to: &str| {
            assert!(text.contains(from), "{}: no {from:?}", path.display());
            text = text.replace(from, to);
        };
        for (n, node) in nodes.iter().enumerate() {
            replace(&format!("127.0.0.1:800{}", n + 1), node);
        }
        match self {
            Self::Nginx => {
                replace("listen 8000;", &format!("listen 127.0.0.1:{port};"));
                replace(
                    "pid /tmp/claude-agent-mcp-nginx.pid;",
                    &format!("pid {};", dir.join("nginx.pid").display()),
                );
            }
            Self::Haproxy => replace("bind :8000", &format!("bind 127.0.0.1:{port}")),
        }
        text
    }

    fn command(
        self,
        program: &std::path::Path,
        config: &std::path::Path,
        dir: &std::path::Path,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        match self {
            Self::Nginx => command
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(config)
                .args(["-g", "daemon off;"]),
            // `-db`: in the foreground, no daemon.
            Self::Haproxy => command.arg("-f").arg(config).arg("-db"),
        };
        command
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        command
    }
}

/// The MCP requests node `url` (…/mcp) has served, from its `/metrics`.
async fn requests_served(url: &str) -> f64 {
    let metrics = url.replace("/mcp", "/metrics");
    let body = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    body.lines()
        .filter(|line| line.starts_with("claude_agent_mcp_mcp_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Three nodes on PostgreSQL behind a real nginx or HAProxy running the committed deploy/
/// configuration: a 2025-11-25 session-id client and a 2026-07-28 stateless client each
/// complete run → continue → get → verify, and every node served some of the requests.
async fn three_nodes_behind(balancer: Balancer) {
    let Some(program) = agent_testkit::peers::program(balancer.peer()) else {
        return;
    };
    let Some(store) = Store::postgres().await else {
        return;
    };
    let fleet = Fleet::start(store, &[]).await;
    let dir = fleet.env.cwd().join(format!("{balancer:?}"));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nodes: Vec<String> = fleet
        .nodes
        .iter()
        .map(|n| {
            n.url
                .trim_start_matches("http://")
                .trim_end_matches("/mcp")
                .to_owned()
        })
        .collect();
    let config = dir.join(balancer.config_file());
    std::fs::write(&config, balancer.config(&nodes, port, &dir)).unwrap();
    let log = std::fs::File::create(dir.join("balancer.log")).unwrap();
    let mut child = balancer
        .command(&program, &config, &dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{balancer:?} does not listen after 20 s: {}",
            std::fs::read_to_string(dir.join("balancer.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before: Vec<f64> =
        futures::future::join_all(fleet.nodes.iter().map(|n| requests_served(&n.url))).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    session_id_client_at(&fleet.env, &url, None).await;
    stateless_client_at(&fleet.env, &url).await;
    let after: Vec<f64> =
        futures::future::join_all(fleet.nodes.iter().map(|n| requests_served(&n.url))).await;
    let served: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        served.iter().all(|&n| n >= 2.0),
        "{balancer:?} spread the requests over every node: {served:?}"
    );
    // Only /mcp is passed on.
    let other = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "{balancer:?} passed /metrics on");
    let _ = child.kill().await;
    fleet.stop().await;
}

#[tokio::test]
async fn three_nodes_behind_nginx_serve_both_protocol_generations() {
    three_nodes_behind(Balancer::Nginx).await;
}

#[tokio::test]
async fn three_nodes_behind_haproxy_serve_both_protocol_generations() {
    three_nodes_behind(Balancer::Haproxy).await;
}
