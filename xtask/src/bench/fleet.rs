//! The multi-node phase (`--only fleet`): three release servers over streamable HTTP on one
//! store (one PostgreSQL schema with `--database-url`, else one SQLite state directory), an
//! instant stand-in, and `--fleet-clients` concurrent clients that create sessions
//! (`agent_run_task`) round robin: call `k` goes to node `k % 3`. Reports sessions per
//! second in total, failed calls, duplicate session ids, the rows the store holds afterwards,
//! and where the CPU went (each node, the driver, the whole machine).
//!
//! The load generator shares the two cores with the nodes and PostgreSQL, so its own cost
//! is kept low: each client is a [`FleetClient`], plain HTTP/1.1 keep-alive requests of a
//! 2025-11-25 session-id client (`initialize`, `notifications/initialized`, then `tools/call`
//! with `Mcp-Session-Id`) whose request bodies are formatted, not built through rmcp's types,
//! and whose answer is read from the response's SSE `data:` line. Until 2026-12-07 each was an
//! rmcp client, which cost the driver 0.4–0.5 ms of CPU per session (a fifth of the machine).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};

use super::server::{self, Server, Workspace};
use super::stats::Summary;
use super::{Options, Result, check_completed, progress, task_args};

/// The protocol revision the fleet's clients speak: the newest with `initialize` and
/// `Mcp-Session-Id`, which the server's transport sessions serve (every node takes up an id
/// another node issued).
const PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// A lean MCP client of one node (see the module's documentation).
struct FleetClient {
    http: reqwest::Client,
    url: String,
    session: String,
    /// The `arguments` of every `agent_run_task`, serialised once.
    args: String,
}

impl FleetClient {
    /// `initialize` and `notifications/initialized` with the node on `port`.
    async fn connect(http: &reqwest::Client, port: u16) -> Result<Self> {
        let url = format!("http://127.0.0.1:{port}/mcp");
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL.as_str(),
                "capabilities": {},
                "clientInfo": {"name": "claude-agent-mcp-bench", "version": "0"}
            }
        });
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string())
            .send()
            .await?
            .error_for_status()?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("initialize: no Mcp-Session-Id")?
            .to_owned();
        answer(&response.bytes().await?)?;
        let client = Self {
            http: http.clone(),
            url,
            session,
            args: task_args().to_string(),
        };
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let status = client.post(initialized.to_owned()).await?.status();
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("notifications/initialized: HTTP {status}").into());
        }
        Ok(client)
    }

    async fn post(&self, body: String) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", PROTOCOL.as_str())
            .body(body)
            .send()
            .await?
            .error_for_status()?)
    }

    /// One `agent_run_task` (request id `id`): the id of the session it completed.
    async fn run_task(&self, id: usize) -> Result<String> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"agent_run_task","arguments":{}}}}}"#,
            self.args
        );
        let message = answer(&self.post(body).await?.bytes().await?)?;
        if message["id"] != id {
            return Err(format!("answer to another request: {message}").into());
        }
        let result = &message["result"];
        let envelope = &result["structuredContent"];
        if result["isError"] == true || envelope.get("error").is_some() {
            return Err(format!("agent_run_task failed: {message}").into());
        }
        check_completed(envelope)?;
        envelope["session_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no session_id: {envelope}").into())
    }
}

/// The JSON-RPC response in a streamable HTTP answer: the body itself (`application/json`)
/// or the last SSE `data:` line that holds a message (a priming event's is empty).
fn answer(body: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(body)?;
    let data = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty());
    let message: Value = serde_json::from_str(data.unwrap_or(text))?;
    if message.get("error").is_some() {
        return Err(format!("JSON-RPC error: {message}").into());
    }
    Ok(message)
}

/// Nodes in the fleet.
pub const NODES: usize = 3;

pub struct FleetFigures {
    pub clients: usize,
    /// Measured `agent_run_task` calls (after the warm-up).
    pub sessions: usize,
    pub elapsed: Duration,
    /// Calls that failed or did not complete.
    pub errors: usize,
    /// Session ids returned more than once.
    pub duplicates: usize,
    /// Calls each node served in the measured part.
    pub per_node: [usize; NODES],
    /// Sessions the store holds at the end, and the calls made in all (warm-up included).
    pub stored: i64,
    pub calls: usize,
    pub latency: Summary,
    /// CPU time of each node, and of the driver (this process), in the measured part.
    pub node_cpu: [Duration; NODES],
    pub driver_cpu: Duration,
    /// The share of the machine's CPU time that was busy in the measured part.
    pub machine_busy: f64,
    /// `/proc/loadavg` (1, 5, 15 minutes) before and after.
    pub load_before: String,
    pub load_after: String,
    /// PostgreSQL only: rows inserted and updated per session in the run's schema.
    pub rows_per_session: Option<(f64, f64)>,
    /// PostgreSQL only: transactions committed per session in the measured part (every
    /// client of the database counts: use a database of its own for an exact figure).
    pub commits_per_session: Option<f64>,
    /// CPU time of every `postgres` process on the machine in the measured part.
    pub postgres_cpu: Duration,
}

impl FleetFigures {
    pub fn per_second(&self) -> f64 {
        self.sessions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One call's outcome: its latency and the session id it created, or why it did not complete.
type Outcome = (Duration, std::result::Result<String, String>);

/// `total` calls of `agent_run_task` spread over `workers`, each holding a client per node;
/// call `k` (in the order calls start) goes to node `k % NODES`.
async fn burst(
    workers: &[[FleetClient; NODES]],
    total: usize,
    served: &[AtomicUsize; NODES],
) -> Vec<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let runs = workers.iter().map(|clients| {
        let next = Arc::clone(&next);
        async move {
            let mut outcomes = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    return outcomes;
                }
                let node = k % NODES;
                served[node].fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let result = clients[node].run_task(k).await;
                let elapsed = t.elapsed();
                outcomes.push((elapsed, result.map_err(|e| e.to_string())));
            }
        }
    });
    join_all(runs).await.into_iter().flatten().collect()
}

pub async fn measure_fleet(bin: &Path, api: &str, options: &Options) -> Result<FleetFigures> {
    let clients = options.fleet_clients;
    let sessions = options.fleet_sessions;
    let warmup = (sessions / 10).clamp(NODES, 300);
    progress(&format!(
        "[fleet] {NODES} nodes on one {} store, {clients} clients, {sessions} run_task round robin (+{warmup} warm-up)",
        if options.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    ));
    let ws = Workspace::new(options.database_url.clone())?;
    let mut nodes: Vec<Server> = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..NODES {
        let port = server::free_port()?;
        nodes.push(ws.start_http(bin, api, port).await?);
        ports.push(port);
    }
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let mut workers = Vec::new();
    for _ in 0..clients {
        let mut each = Vec::new();
        for &port in &ports {
            each.push(FleetClient::connect(&http, port).await?);
        }
        let each: [FleetClient; NODES] = each
            .try_into()
            .map_err(|_| "a client per node".to_owned())?;
        workers.push(each);
    }
    let served = [const { AtomicUsize::new(0) }; NODES];
    let warm = burst(&workers, warmup, &served).await;
    for counter in &served {
        counter.store(0, Ordering::Relaxed);
    }
    let pids: Vec<u32> = nodes.iter().filter_map(Server::pid).collect();
    let commits_before = match &options.database_url {
        Some(url) => Some(commits(url).await?),
        None => None,
    };
    let postgres_before = postgres_cpu();
    let load_before = load_average();
    let cpu_before: Vec<Duration> = pids.iter().map(|&p| cpu_time(&p.to_string())).collect();
    let driver_before = cpu_time("self");
    let machine_before = machine_ticks();
    let started = Instant::now();
    let measured = burst(&workers, sessions, &served).await;
    let elapsed = started.elapsed();
    let machine_after = machine_ticks();
    let driver_cpu = cpu_time("self").saturating_sub(driver_before);
    let mut node_cpu = [Duration::ZERO; NODES];
    for (i, (&pid, before)) in pids.iter().zip(&cpu_before).enumerate().take(NODES) {
        node_cpu[i] = cpu_time(&pid.to_string()).saturating_sub(*before);
    }
    let load_after = load_average();
    let postgres_cpu = postgres_cpu().saturating_sub(postgres_before);
    let commits_per_session = match (&options.database_url, commits_before) {
        (Some(url), Some(before)) => {
            let after = commits(url).await?;
            Some(after.saturating_sub(before) as f64 / sessions as f64)
        }
        _ => None,
    };

    let failed: Vec<&String> = warm
        .iter()
        .chain(&measured)
        .filter_map(|(_, id)| id.as_ref().err())
        .collect();
    if let Some(first) = failed.first() {
        progress(&format!(
            "[fleet] {} calls failed; the first: {first}",
            failed.len()
        ));
    }
    let errors = failed.len();
    let mut ids: Vec<&String> = warm
        .iter()
        .chain(&measured)
        .filter_map(|(_, id)| id.as_ref().ok())
        .collect();
    let returned = ids.len();
    ids.sort_unstable();
    ids.dedup();
    let duplicates = returned - ids.len();
    let latencies: Vec<Duration> = measured.iter().map(|(d, _)| *d).collect();
    let latency = Summary::of(&latencies).ok_or("no fleet samples")?;
    drop(workers);
    for node in nodes {
        node.kill().await;
    }
    let (stored, rows_per_session) = match &options.database_url {
        Some(url) => stored_pg(url, warmup + sessions).await?,
        None => (stored_sqlite(&ws.db_path()?).await?, None),
    };
    let busy = match (machine_before, machine_after) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            (busy1.saturating_sub(busy0)) as f64 / (all1 - all0) as f64
        }
        _ => 0.0,
    };
    Ok(FleetFigures {
        clients,
        sessions,
        elapsed,
        errors,
        duplicates,
        per_node: served.map(|n| n.into_inner()),
        stored,
        calls: warmup + sessions,
        latency,
        node_cpu,
        driver_cpu,
        machine_busy: busy,
        load_before,
        load_after,
        rows_per_session,
        commits_per_session,
        postgres_cpu,
    })
}

async fn stored_sqlite(db: &Path) -> Result<i64> {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await?;
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await?;
    Ok(count)
}

/// The sessions in the run's schema, and the rows inserted and updated per session there
/// (the statistics collector's counts: flushed within a second of the last transaction).
async fn stored_pg(url: &str, calls: usize) -> Result<(i64, Option<(f64, f64)>)> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&mut conn)
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rows: Option<(i64, i64)> = sqlx::query_as(
        "SELECT COALESCE(SUM(n_tup_ins), 0)::bigint, COALESCE(SUM(n_tup_upd), 0)::bigint \
         FROM pg_stat_user_tables WHERE schemaname = current_schema()",
    )
    .fetch_optional(&mut conn)
    .await?;
    conn.close().await?;
    let per = rows.map(|(ins, upd)| {
        let n = calls.max(1) as f64;
        (ins as f64 / n, upd as f64 / n)
    });
    Ok((count, per))
}

/// Transactions committed in the database of `url` so far, as the statistics collector
/// counts them (it flushes a backend's counts within a second: read after a pause).
async fn commits(url: &str) -> Result<i64> {
    use sqlx::Connection;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
    let n = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(n)
}

/// CPU time of every process named `postgres` (the server and its backends).
fn postgres_cpu() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_time(&pid))
        .sum()
}

/// User + system CPU time of `/proc/<pid>` (`self` for this process).
fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

/// `USER_HZ`: 100 on every Linux the project runs on (it is fixed in the kernel ABI).
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// (busy, all) jiffies of the whole machine from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((all.saturating_sub(idle), all))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn answer_reads_the_last_sse_message_or_a_json_body() {
        let sse = b"id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        assert_eq!(answer(sse).unwrap()["id"], 7);
        let json = br#"{"jsonrpc":"2.0","id":8,"result":{"ok":true}}"#;
        assert_eq!(answer(json).unwrap()["result"]["ok"], true);
        let error = b"data: {\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602}}\n\n";
        assert!(answer(error).unwrap_err().to_string().contains("-32602"));
        assert!(answer(b"data: not json\n\n").is_err());
    }
}
