//! `cargo xtask bench`: builds the server in release mode and measures it against an instant
//! local stand-in for the Messages API. A measurement, not a test: it always exits 0 once the
//! figures are printed, and marks the targets that were missed. See `docs/performance.md`.

mod cost;
mod db;
pub mod dist;
mod fleet;
mod lines;
pub mod order;
mod server;
mod standin;
mod stats;
mod traces;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use self::lines::LineServer;
use self::server::{Memory, Workspace};
use self::standin::StandIn;
use self::stats::{Summary, ms};

pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const USAGE: &str = "usage: cargo xtask bench [--skip-build] [--bin PATH] [--debug-driver] \
     [--starts N] [--iterations N] [--sessions N] [--concurrent N] [--delay-ms N] [--rounds N] \
     [--fleet-sessions N] [--fleet-clients N] \
     [--only start|roundtrip|list|concurrent|fleet|cost|traces] [--database-url postgres://…]";

/// Command-line settings; the defaults are the published configuration.
#[derive(Debug, Clone)]
struct Options {
    /// Use the server `cargo xtask dist` built last instead of building it.
    skip_build: bool,
    /// The server binary (default: what the release build produced).
    bin: Option<PathBuf>,
    /// Run the measuring client as built (a debug build under `cargo xtask`) instead of
    /// rebuilding it in release mode first.
    debug_driver: bool,
    /// Measured cold starts (after 3 unmeasured ones).
    starts: usize,
    /// Measured round trips per operation (after a warm-up of a sixth as many).
    iterations: usize,
    /// Sessions pre-populated for the `agent_list_sessions` case.
    sessions: u64,
    /// Concurrent `agent_run_task` calls over streamable HTTP.
    concurrent: usize,
    /// The stand-in's reply delay for the concurrent case.
    delay_ms: u64,
    /// Repetitions of the concurrent burst.
    rounds: usize,
    /// Sessions created in the measured part of the multi-node phase.
    fleet_sessions: usize,
    /// Concurrent clients of the multi-node phase (each with a client per node).
    fleet_clients: usize,
    /// Run one phase only.
    only: Option<Phase>,
    /// Measure on the PostgreSQL store: every server of the run uses a fresh schema made in
    /// this database (dropped at the end) instead of a SQLite state directory.
    database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            skip_build: false,
            bin: None,
            debug_driver: false,
            starts: 30,
            iterations: 300,
            sessions: 100_000,
            concurrent: 50,
            delay_ms: 500,
            rounds: 3,
            fleet_sessions: 3000,
            fleet_clients: 24,
            only: None,
            database_url: None,
        }
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
            };
            fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
                text.parse()
                    .map_err(|_| format!("{flag}: not a number: {text}\n{USAGE}"))
            }
            match arg.as_str() {
                "--skip-build" => options.skip_build = true,
                "--debug-driver" => options.debug_driver = true,
                "--bin" => options.bin = Some(PathBuf::from(value()?)),
                "--starts" => options.starts = number(arg, value()?)?,
                "--iterations" => options.iterations = number(arg, value()?)?,
                "--sessions" => options.sessions = number(arg, value()?)?,
                "--concurrent" => options.concurrent = number(arg, value()?)?,
                "--delay-ms" => options.delay_ms = number(arg, value()?)?,
                "--rounds" => options.rounds = number(arg, value()?)?,
                "--fleet-sessions" => options.fleet_sessions = number(arg, value()?)?,
                "--fleet-clients" => options.fleet_clients = number(arg, value()?)?,
                "--only" => options.only = Some(Phase::parse(value()?)?),
                "--database-url" => options.database_url = Some(value()?.to_owned()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        options.starts = options.starts.max(1);
        options.iterations = options.iterations.max(1);
        options.concurrent = options.concurrent.max(1);
        options.rounds = options.rounds.max(1);
        options.fleet_sessions = options.fleet_sessions.max(1);
        options.fleet_clients = options.fleet_clients.max(1);
        Ok(options)
    }

    /// The arguments that reproduce these options for the release driver.
    fn forward(&self, bin: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["bench".into(), "--skip-build".into()];
        args.push("--bin".into());
        args.push(bin.as_os_str().to_owned());
        for (flag, value) in [
            ("--starts", self.starts.to_string()),
            ("--iterations", self.iterations.to_string()),
            ("--sessions", self.sessions.to_string()),
            ("--concurrent", self.concurrent.to_string()),
            ("--delay-ms", self.delay_ms.to_string()),
            ("--rounds", self.rounds.to_string()),
            ("--fleet-sessions", self.fleet_sessions.to_string()),
            ("--fleet-clients", self.fleet_clients.to_string()),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        if let Some(only) = self.only {
            args.push("--only".into());
            args.push(only.as_str().into());
        }
        if let Some(url) = &self.database_url {
            args.push("--database-url".into());
            args.push(url.into());
        }
        args
    }
}

fn progress(message: &str) {
    let _ = writeln!(std::io::stderr(), "bench: {message}");
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// `cargo build --release -p <package> <extra>` with the variables `env` set; returns the path
/// of the binary `bin_name`.
fn cargo_build_release(
    package: &str,
    bin_name: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let shown: String = env
        .iter()
        .map(|(name, value)| format!("{name}={value:?} "))
        .collect();
    progress(&format!(
        "{shown}cargo build --release -p {package} {}",
        extra.join(" ")
    ));
    let mut command = Command::new(cargo);
    command.envs(env.iter().map(|(name, value)| (name, value)));
    let mut child = command
        .args(["build", "--release", "--locked", "-p", package])
        .args(extra)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut executable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let is_bin = message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
            if message["reason"] == "compiler-artifact"
                && is_bin
                && message["target"]["name"] == bin_name
                && let Some(path) = message["executable"].as_str()
            {
                executable = Some(PathBuf::from(path));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo did not finish: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release -p {package} failed ({status})"
        ));
    }
    executable.ok_or_else(|| format!("cargo reported no executable for {bin_name}"))
}

/// Entry point of `cargo xtask bench`.
pub fn bench(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        let _ = writeln!(std::io::stderr(), "{USAGE}");
        return Ok(());
    }
    let options = Options::parse(args)?;
    let bin = match (&options.bin, options.skip_build) {
        (Some(bin), _) => bin.clone(),
        (None, false) => dist::build_server()?,
        (None, true) => workspace_root().join(dist::DIST_BINARY),
    };
    let bin = bin
        .canonicalize()
        .map_err(|e| format!("no server binary at {}: {e}", bin.display()))?;
    if cfg!(debug_assertions) && !options.debug_driver {
        // The client's own costs are part of every round trip: measure with an optimised one.
        let driver = cargo_build_release("xtask", "xtask", &[], &[])?;
        progress(&format!("running the release driver {}", driver.display()));
        let status = Command::new(&driver)
            .args(options.forward(&bin))
            .status()
            .map_err(|e| format!("cannot run {}: {e}", driver.display()))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("the release driver failed ({status})"))
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let figures = runtime
        .block_on(measure(&bin, &options))
        .map_err(|e| format!("benchmark failed: {e}"))?;
    let report = render(&figures, &options, &bin);
    let _ = std::io::stdout().write_all(report.as_bytes());
    Ok(())
}

/// Which measurements to run (`--only`); all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    RoundTrip,
    List,
    Concurrent,
    Fleet,
    Cost,
    Traces,
}

impl Phase {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "start" => Ok(Self::Start),
            "roundtrip" => Ok(Self::RoundTrip),
            "list" => Ok(Self::List),
            "concurrent" => Ok(Self::Concurrent),
            "fleet" => Ok(Self::Fleet),
            "cost" => Ok(Self::Cost),
            "traces" => Ok(Self::Traces),
            other => Err(format!(
                "--only: unknown phase {other} (start, roundtrip, list, concurrent, fleet, cost, traces)\n{USAGE}"
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::RoundTrip => "roundtrip",
            Self::List => "list",
            Self::Concurrent => "concurrent",
            Self::Fleet => "fleet",
            Self::Cost => "cost",
            Self::Traces => "traces",
        }
    }
}

struct StartFigures {
    fresh: Summary,
    existing: Summary,
}

struct RoundTripFigures {
    standin: Summary,
    ping: Summary,
    get_session: Summary,
    run_task: Summary,
}

struct ListFigures {
    populate: Duration,
    all: Summary,
    by_status: Summary,
}

struct ConcurrentFigures {
    bursts: Vec<Duration>,
    failures: usize,
    idle: Memory,
    /// The sample with the highest VmRSS during the bursts.
    peak: Memory,
    threads_peak: u64,
    hwm_kb: u64,
}

/// Everything the report shows; `None` for a phase left out with `--only`.
#[derive(Default)]
struct Figures {
    start: Option<StartFigures>,
    round_trip: Option<RoundTripFigures>,
    list: Option<ListFigures>,
    concurrent: Option<ConcurrentFigures>,
    fleet: Option<fleet::FleetFigures>,
    cost: Option<cost::CostFigures>,
    traces: Option<traces::TraceFigures>,
}

fn summary(samples: &[Duration], what: &str) -> Result<Summary> {
    Summary::of(samples).ok_or_else(|| format!("no samples for {what}").into())
}

async fn measure(bin: &Path, options: &Options) -> Result<Figures> {
    let Some(server_url) = &options.database_url else {
        return measure_on(bin, options, None).await;
    };
    let schema = db::PgSchema::create(server_url).await?;
    progress(&format!("PostgreSQL store, schema {}", schema.name));
    let measured = measure_on(bin, options, Some(schema.url.clone())).await;
    schema.drop().await;
    measured
}

async fn measure_on(
    bin: &Path,
    options: &Options,
    database_url: Option<String>,
) -> Result<Figures> {
    let options = &Options {
        database_url,
        ..options.clone()
    };
    let instant = StandIn::start(Duration::ZERO).await?;
    let api = instant.base_url();
    let wanted = |phase: Phase| options.only.is_none_or(|only| only == phase);
    let mut figures = Figures::default();
    if wanted(Phase::Start) {
        figures.start = Some(measure_start(bin, &api, options).await?);
    }
    if wanted(Phase::RoundTrip) {
        figures.round_trip = Some(measure_round_trips(bin, &instant, options).await?);
    }
    if wanted(Phase::List) {
        figures.list = Some(measure_list(bin, &api, options).await?);
    }
    if wanted(Phase::Concurrent) {
        figures.concurrent = Some(measure_concurrent(bin, options).await?);
    }
    if wanted(Phase::Fleet) {
        figures.fleet = Some(fleet::measure_fleet(bin, &api, options).await?);
    }
    if wanted(Phase::Cost) {
        figures.cost = Some(cost::measure_cost(bin, options).await?);
    }
    if wanted(Phase::Traces) {
        figures.traces = Some(traces::measure_traces(bin, &instant, options).await?);
    }
    Ok(figures)
}

fn warmup(options: &Options) -> usize {
    (options.iterations / 6).max(5)
}

fn task_args() -> Value {
    json!({"task": "Summarise the benchmark task."})
}

/// Phase 1: spawn → `initialize` completed, on a fresh state directory and again on the same one.
async fn measure_start(bin: &Path, api: &str, options: &Options) -> Result<StartFigures> {
    progress(&format!(
        "[1/4] start → initialized, {} fresh + {} existing-state starts",
        options.starts, options.starts
    ));
    let mut fresh = Vec::new();
    let mut existing = Vec::new();
    for i in 0..options.starts + 3 {
        let ws = Workspace::new(options.database_url.clone())?;
        let (server, cold) = ws.start_stdio(bin, api).await?;
        server.stop().await;
        let (server, warm) = ws.start_stdio(bin, api).await?;
        server.stop().await;
        if i >= 3 {
            fresh.push(cold);
            existing.push(warm);
        }
    }
    Ok(StartFigures {
        fresh: summary(&fresh, "fresh starts")?,
        existing: summary(&existing, "existing-state starts")?,
    })
}

/// Phase 2: the stand-in alone, then `ping`, `agent_get_session` and `agent_run_task` in one
/// stdio session.
async fn measure_round_trips(
    bin: &Path,
    instant: &StandIn,
    options: &Options,
) -> Result<RoundTripFigures> {
    let warmup = warmup(options);
    progress(&format!(
        "[2/4] round trips: stand-in alone, then ping / get_session / run_task × {} (+{warmup} warm-up)",
        options.iterations
    ));
    let standin = instant.service_times(warmup, options.iterations).await?;
    let ws = Workspace::new(options.database_url.clone())?;
    let mut server = LineServer::start(&ws, bin, &instant.base_url()).await?;
    let task = task_args();
    let (_, first) = server.call("agent_run_task", task.clone()).await?;
    check_completed(&first)?;
    let session_id = first["session_id"]
        .as_str()
        .ok_or("agent_run_task returned no session_id")?
        .to_owned();
    let get_args = json!({ "session_id": session_id });
    // `ping` and `agent_get_session` alternate, each first in every other pair, so both see
    // the same mix of preceding work; `agent_run_task` runs in its own loop afterwards so that
    // its background work (pool returns, WAL writes) does not land in their samples.
    let (mut ping, mut get, mut run) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warmup + options.iterations {
        let mut pair = [Duration::ZERO; 2];
        for step in 0..2 {
            if (i + step) % 2 == 0 {
                pair[0] = server.ping().await?;
            } else {
                let (elapsed, view) = server.call("agent_get_session", get_args.clone()).await?;
                pair[1] = elapsed;
                if view["session_id"] != session_id.as_str() {
                    return Err(format!("agent_get_session returned {view}").into());
                }
            }
        }
        if i >= warmup {
            ping.push(pair[0]);
            get.push(pair[1]);
        }
    }
    for i in 0..warmup + options.iterations {
        let (run_time, envelope) = server.call("agent_run_task", task.clone()).await?;
        check_completed(&envelope)?;
        if i >= warmup {
            run.push(run_time);
        }
    }
    server.stop().await;
    Ok(RoundTripFigures {
        standin: summary(&standin, "the stand-in")?,
        ping: summary(&ping, "ping")?,
        get_session: summary(&get, "get_session")?,
        run_task: summary(&run, "run_task")?,
    })
}

/// Phase 3: `agent_list_sessions` (`limit: 50`, without and with `status`) over a large table.
async fn measure_list(bin: &Path, api: &str, options: &Options) -> Result<ListFigures> {
    let warmup = warmup(options);
    progress(&format!(
        "[3/4] list_sessions: inserting {} sessions, then {} round trips each (+{warmup} warm-up)",
        options.sessions, options.iterations
    ));
    let ws = Workspace::new(options.database_url.clone())?;
    // The server creates the schema on its first start.
    let (server, _) = ws.start_stdio(bin, api).await?;
    server.stop().await;
    let cwd = ws.cwd()?.to_string_lossy().into_owned();
    let populate = match &options.database_url {
        None => db::populate(&ws.db_path()?, &cwd, options.sessions).await?,
        Some(url) => db::populate_pg(url, &cwd, options.sessions).await?,
    };
    let mut server = LineServer::start(&ws, bin, api).await?;
    let expected = usize::try_from(options.sessions.min(50)).unwrap_or(50);
    let all_args = json!({"limit": 50});
    let status_args = json!({"limit": 50, "status": "completed"});
    let (mut all, mut by_status) = (Vec::new(), Vec::new());
    for i in 0..warmup + options.iterations {
        let (all_time, page) = server.call("agent_list_sessions", all_args.clone()).await?;
        let (status_time, filtered) = server
            .call("agent_list_sessions", status_args.clone())
            .await?;
        for result in [&page, &filtered] {
            let n = result["sessions"].as_array().map_or(0, Vec::len);
            if n != expected {
                return Err(
                    format!("agent_list_sessions returned {n} sessions, not {expected}").into(),
                );
            }
        }
        if i >= warmup {
            all.push(all_time);
            by_status.push(status_time);
        }
    }
    server.stop().await;
    Ok(ListFigures {
        populate,
        all: summary(&all, "list_sessions")?,
        by_status: summary(&by_status, "list_sessions with status")?,
    })
}

/// Phase 4: bursts of concurrent `agent_run_task` calls over streamable HTTP against a slow
/// stand-in, with the server's memory sampled throughout.
async fn measure_concurrent(bin: &Path, options: &Options) -> Result<ConcurrentFigures> {
    progress(&format!(
        "[4/4] {} concurrent run_task over streamable HTTP, stand-in replies after {} ms, {} rounds",
        options.concurrent, options.delay_ms, options.rounds
    ));
    let slow = StandIn::start(Duration::from_millis(options.delay_ms)).await?;
    let ws = Workspace::new(options.database_url.clone())?;
    let port = server::free_port()?;
    let server = ws.start_http(bin, &slow.base_url(), port).await?;
    let pid = server.pid().ok_or("the HTTP server has no pid")?;
    let task = task_args();
    check_completed(&server.call("agent_run_task", task.clone()).await?)?;
    let idle = Memory::of(pid).unwrap_or_default();
    let peak = Arc::new(std::sync::Mutex::new((idle, idle.threads)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let (Some(now), Ok(mut peak)) = (Memory::of(pid), peak.lock()) {
                    if now.rss > peak.0.rss {
                        peak.0 = now;
                    }
                    peak.1 = peak.1.max(now.threads);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut bursts = Vec::new();
    let mut failures = 0;
    for _ in 0..options.rounds {
        let calls = (0..options.concurrent)
            .map(|_| server::call(&server.client, "agent_run_task", task.clone()));
        let t = Instant::now();
        let results = futures::future::join_all(calls).await;
        bursts.push(t.elapsed());
        failures += results
            .iter()
            .filter(|r| !r.as_ref().is_ok_and(|v| check_completed(v).is_ok()))
            .count();
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let after = Memory::of(pid).unwrap_or_default();
    server.kill().await;
    let (mut peak_sample, threads_peak) = peak.lock().map(|p| *p).unwrap_or_default();
    if after.rss > peak_sample.rss {
        peak_sample = after;
    }
    Ok(ConcurrentFigures {
        bursts,
        failures,
        idle,
        peak: peak_sample,
        threads_peak,
        hwm_kb: after.hwm,
    })
}

fn check_completed(envelope: &Value) -> Result<()> {
    if envelope["ok"] == true && envelope["status"] == "completed" {
        Ok(())
    } else {
        Err(format!("agent_run_task did not complete: {envelope}").into())
    }
}

/// One line of the report; `verdict` is `None` for context figures without a target.
struct Row {
    figure: String,
    measured: String,
    target: &'static str,
    verdict: Option<bool>,
}

fn row(figure: &str, measured: String, target: &'static str, verdict: Option<bool>) -> Row {
    Row {
        figure: figure.to_owned(),
        measured,
        target,
        verdict,
    }
}

fn latency(s: &Summary) -> String {
    format!("median {:.3} ms, p90 {:.3} ms", ms(s.median), ms(s.p90))
}

/// kB (KiB, as /proc reports) to MB (10^6 bytes).
fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

fn render(f: &Figures, options: &Options, bin: &Path) -> String {
    let mut rows = Vec::new();
    let mut distributions: Vec<(&str, Summary)> = Vec::new();
    if let Some(start) = &f.start {
        rows.push(row(
            "start → initialized (fresh state dir)",
            latency(&start.fresh),
            "median ≤ 20 ms",
            Some(start.fresh.median <= Duration::from_millis(20)),
        ));
        rows.push(row(
            "start → initialized (existing state)",
            latency(&start.existing),
            "",
            None,
        ));
        distributions.push(("start, fresh state", start.fresh));
        distributions.push(("start, existing state", start.existing));
    }
    if let Some(rt) = &f.round_trip {
        let ratio = rt.get_session.median.as_secs_f64() / rt.ping.median.as_secs_f64().max(1e-9);
        let overhead = rt.run_task.median.saturating_sub(rt.standin.median);
        rows.push(row("ping round trip", latency(&rt.ping), "", None));
        rows.push(row(
            "agent_get_session round trip",
            latency(&rt.get_session),
            "",
            None,
        ));
        rows.push(row(
            "get_session / ping (medians)",
            format!("{ratio:.2}×"),
            "≤ 1.3×",
            Some(ratio <= 1.3),
        ));
        rows.push(row(
            "stand-in alone (raw POST)",
            latency(&rt.standin),
            "",
            None,
        ));
        rows.push(row(
            "agent_run_task round trip",
            latency(&rt.run_task),
            "",
            None,
        ));
        let (target, limit) = if options.database_url.is_some() {
            ("≤ 3 ms", Duration::from_millis(3))
        } else {
            ("≤ 2 ms", Duration::from_millis(2))
        };
        rows.push(row(
            "run_task overhead (medians)",
            format!("{:.3} ms", ms(overhead)),
            target,
            Some(overhead <= limit),
        ));
        distributions.push(("ping", rt.ping));
        distributions.push(("agent_get_session", rt.get_session));
        distributions.push(("stand-in alone", rt.standin));
        distributions.push(("agent_run_task", rt.run_task));
    }
    if let Some(list) = &f.list {
        rows.push(row(
            &format!("list_sessions limit 50 ({} rows)", options.sessions),
            latency(&list.all),
            "median ≤ 2 ms",
            Some(list.all.median <= Duration::from_millis(2)),
        ));
        rows.push(row(
            "  … with status: completed",
            latency(&list.by_status),
            "median ≤ 2 ms",
            Some(list.by_status.median <= Duration::from_millis(2)),
        ));
        distributions.push(("list_sessions", list.all));
        distributions.push(("list_sessions status", list.by_status));
    }
    if let Some(c) = &f.concurrent {
        let mut sorted = c.bursts.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let each: Vec<String> = c.bursts.iter().map(|d| format!("{:.0}", ms(*d))).collect();
        let failed = if c.failures > 0 {
            format!(", {} FAILED calls", c.failures)
        } else {
            String::new()
        };
        rows.push(row(
            &format!(
                "{} concurrent run_task ({} ms replies)",
                options.concurrent, options.delay_ms
            ),
            format!(
                "median {:.0} ms of rounds [{}] ms{failed}",
                ms(median),
                each.join(", ")
            ),
            "≤ 700 ms",
            Some(median <= Duration::from_millis(700) && c.failures == 0),
        ));
        rows.push(row(
            "server peak RSS (VmHWM)",
            format!("{:.1} MB", mb(c.hwm_kb)),
            "≤ 15 MB",
            Some(c.hwm_kb > 0 && mb(c.hwm_kb) <= 15.0),
        ));
        rows.push(row(
            "  VmRSS idle → peak sample",
            format!(
                "{:.1} → {:.1} MB (anon {:.1} → {:.1}, file {:.1} → {:.1})",
                mb(c.idle.rss),
                mb(c.peak.rss),
                mb(c.idle.anon),
                mb(c.peak.anon),
                mb(c.idle.file),
                mb(c.peak.file)
            ),
            "",
            None,
        ));
        rows.push(row(
            "  server threads idle → peak",
            format!("{} → {}", c.idle.threads, c.threads_peak),
            "",
            None,
        ));
    }
    if let Some(fl) = &f.fleet {
        // The target is the shared store's (issue: a fleet on one PostgreSQL); a fleet on one
        // SQLite directory takes turns on its write lock and is reported for context.
        let on_postgres = options.database_url.is_some();
        let store = if on_postgres { "PostgreSQL" } else { "SQLite" };
        rows.push(row(
            &format!(
                "fleet: {} nodes on {store}, {} clients, {} run_task",
                fleet::NODES,
                fl.clients,
                fl.sessions
            ),
            format!(
                "{:.0} sessions/s ({:.2} s)",
                fl.per_second(),
                fl.elapsed.as_secs_f64()
            ),
            if on_postgres { "≥ 1,000/s" } else { "" },
            on_postgres.then(|| fl.per_second() >= 1000.0),
        ));
        rows.push(row(
            "  errors, duplicate ids",
            format!("{}, {}", fl.errors, fl.duplicates),
            "0, 0",
            Some(fl.errors == 0 && fl.duplicates == 0),
        ));
        rows.push(row(
            "  sessions stored / calls made",
            format!("{} / {}", fl.stored, fl.calls),
            "equal",
            Some(usize::try_from(fl.stored).is_ok_and(|n| n == fl.calls)),
        ));
        rows.push(row(
            "  calls per node",
            format!("{:?}", fl.per_node),
            "",
            None,
        ));
        rows.push(row("  run_task under load", latency(&fl.latency), "", None));
        let nodes: Vec<String> = fl
            .node_cpu
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        rows.push(row(
            "  CPU s: nodes; driver; machine busy",
            format!(
                "{}; {:.2}; {:.0} %",
                nodes.join(" + "),
                fl.driver_cpu.as_secs_f64(),
                fl.machine_busy * 100.0
            ),
            "",
            None,
        ));
        rows.push(row(
            "  load average before → after",
            format!("{} → {}", fl.load_before, fl.load_after),
            "",
            None,
        ));
        if fl.postgres_cpu > Duration::ZERO {
            rows.push(row(
                "  CPU s: postgres processes (all)",
                format!("{:.2}", fl.postgres_cpu.as_secs_f64()),
                "",
                None,
            ));
        }
        if let Some(commits) = fl.commits_per_session {
            rows.push(row(
                "  transactions committed per session",
                format!("{commits:.1}"),
                "",
                None,
            ));
        }
        if let Some((inserted, updated)) = fl.rows_per_session {
            rows.push(row(
                "  rows inserted, updated per session",
                format!("{inserted:.1}, {updated:.1}"),
                "",
                None,
            ));
        }
        distributions.push(("fleet run_task", fl.latency));
    }
    if let Some(c) = &f.cost {
        let b = &c.bill;
        rows.push(row(
            &format!(
                "cost: {} turns × ({} tool calls + answer), {} model calls",
                cost::TURNS,
                cost::TOOL_CALLS_PER_TURN,
                b.requests
            ),
            format!(
                "{:.1}× cheaper (input ${:.4} → ${:.4})",
                b.ratio(),
                b.usd_without(),
                b.usd_with()
            ),
            "≥ 4× cheaper",
            Some(b.ratio() >= 4.0),
        ));
        rows.push(row(
            "  input tokens at full price: without → with caching",
            format!("{} → {:.0}", b.input_tokens, b.full_price_equivalent_with()),
            "",
            None,
        ));
        rows.push(row(
            "  tokens: tools + system prompt; the largest request",
            format!("{}; {}", b.first_prefix_tokens, b.max_request_tokens),
            "",
            None,
        ));
        rows.push(row(
            "  with caching: read, written, uncached tokens",
            format!(
                "{}, {}, {}",
                b.cache_read_tokens, b.cache_write_tokens, b.uncached_tokens
            ),
            "",
            None,
        ));
        rows.push(row(
            "  result.usage over the 10 envelopes: input, read, written",
            format!("{}, {}, {}", c.reported.0, c.reported.1, c.reported.2),
            "equal to the above",
            Some(c.reported == (b.uncached_tokens, b.cache_read_tokens, b.cache_write_tokens)),
        ));
    }
    if let Some(t) = &f.traces {
        rows.push(row("run_task, tracing off", latency(&t.off), "", None));
        rows.push(row(
            &format!(
                "run_task, tracing on (OTLP, batch every {} ms)",
                traces::SCHEDULE_DELAY_MS
            ),
            latency(&t.on),
            "",
            None,
        ));
        rows.push(row(
            "tracing overhead per run_task (medians)",
            format!("{:.3} ms", t.overhead_ms()),
            "≤ 0.2 ms",
            Some(t.overhead_ms() <= 0.2),
        ));
        rows.push(row(
            "  exports received, bytes",
            format!("{}, {}", t.exports, t.bytes),
            "",
            None,
        ));
        distributions.push(("run_task, traces off", t.off));
        distributions.push(("run_task, traces on", t.on));
    }

    let width = |pick: fn(&Row) -> &str| {
        rows.iter()
            .map(|r| pick(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w1, w2, w3) = (
        width(|r| &r.figure),
        width(|r| &r.measured),
        width(|r| r.target),
    );
    let pad = |text: &str, w: usize| {
        format!(
            "{text}{}",
            " ".repeat(w.saturating_sub(text.chars().count()))
        )
    };
    let mut out = format!(
        "\nclaude-agent-mcp benchmark — {} — {}\nserver: {}\nstore: {}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        bin.display(),
        if options.database_url.is_some() {
            "postgresql (a fresh schema; the starts are on an existing schema)"
        } else {
            "sqlite"
        },
    );
    if let Some(list) = &f.list {
        out += &format!(
            "{} sessions inserted in {:.1} s\n",
            options.sessions,
            list.populate.as_secs_f64()
        );
    }
    out += &format!(
        "\n{}  {}  {}  result\n{}\n",
        pad("figure", w1),
        pad("measured", w2),
        pad("target", w3),
        "-".repeat(w1 + w2 + w3 + 14)
    );
    let mut misses = 0;
    for r in &rows {
        let verdict = match r.verdict {
            Some(true) => "ok",
            Some(false) => {
                misses += 1;
                "MISS ✗"
            }
            None => "",
        };
        out += &format!(
            "{}  {}  {}  {verdict}\n",
            pad(&r.figure, w1),
            pad(&r.measured, w2),
            pad(r.target, w3)
        );
    }
    out += "\ndistributions (ms):        n       min    median       p90       max\n";
    for (name, s) in distributions {
        out += &format!(
            "  {} {:>5}  {:>8.3}  {:>8.3}  {:>8.3}  {:>8.3}\n",
            pad(name, 22),
            s.count,
            ms(s.min),
            ms(s.median),
            ms(s.p90),
            ms(s.max)
        );
    }
    out += &if misses == 0 {
        "\nall targets met\n".to_owned()
    } else {
        format!("\n{misses} target(s) MISSED (see docs/performance.md)\n")
    };
    out
}

/// CPU model, core count and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores, {model}, {mem_gb:.0} GiB RAM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_to_the_release_driver() {
        let args: Vec<String> = [
            "--iterations",
            "40",
            "--only",
            "list",
            "--delay-ms",
            "50",
            "--database-url",
            "postgres://u@h/db",
            "--fleet-sessions",
            "500",
            "--fleet-clients",
            "9",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let options = Options::parse(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((options.iterations, options.delay_ms), (40, 50));
        assert_eq!(options.only, Some(Phase::List));
        let forwarded: Vec<String> = options
            .forward(Path::new("/bin/server"))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            forwarded[..4],
            ["bench", "--skip-build", "--bin", "/bin/server"]
        );
        let again = Options::parse(&forwarded[1..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.iterations, 40);
        assert_eq!(again.only, Some(Phase::List));
        assert_eq!(again.bin.as_deref(), Some(Path::new("/bin/server")));
        assert_eq!(again.database_url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!((again.fleet_sessions, again.fleet_clients), (500, 9));
        assert_eq!(
            Options::parse(&["--only".to_owned(), "fleet".to_owned()])
                .unwrap_or_else(|e| panic!("{e}"))
                .only,
            Some(Phase::Fleet)
        );
        assert_eq!(
            Options::parse(&["--only".to_owned(), "traces".to_owned()])
                .unwrap_or_else(|e| panic!("{e}"))
                .only,
            Some(Phase::Traces)
        );
        assert!(Options::parse(&["--bogus".to_owned()]).is_err());
        assert!(Options::parse(&["--starts".to_owned()]).is_err());
    }
}
