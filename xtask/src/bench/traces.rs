//! Phase 7 (`--only traces`): what exporting OpenTelemetry traces costs an `agent_run_task`.
//! Two stdio servers run side by side against the instant stand-in: one without an OTLP
//! endpoint (tracing off) and one exporting to a sink in this process (tracing on, the batch
//! processor flushing every 100 ms so that exports happen while the calls are measured). Their
//! calls alternate, each first in every other pair, so both see the same machine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_policy::config::vars;
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::server::Workspace;
use super::standin::StandIn;
use super::stats::Summary;
use super::{Options, Result, check_completed, progress, summary, task_args, warmup};

/// The OTLP batch delay of the traced server, in ms (the SDK's default is 5000).
pub const SCHEDULE_DELAY_MS: u64 = 100;

pub struct TraceFigures {
    pub off: Summary,
    pub on: Summary,
    /// Exports (`POST /v1/traces`) the sink received, and their bytes.
    pub exports: u64,
    pub bytes: u64,
}

impl TraceFigures {
    /// median(on) − median(off), in ms (negative when tracing on was faster: noise).
    pub fn overhead_ms(&self) -> f64 {
        (self.on.median.as_secs_f64() - self.off.median.as_secs_f64()) * 1e3
    }
}

/// An OTLP/HTTP receiver that counts what it gets and answers an empty (valid) export
/// response.
struct Sink {
    addr: std::net::SocketAddr,
    exports: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Sink {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let exports = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (e, b) = (Arc::clone(&exports), Arc::clone(&bytes));
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                e.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(body.len() as u64, Ordering::Relaxed);
                async move { ([(CONTENT_TYPE, "application/x-protobuf")], Bytes::new()) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            exports,
            bytes,
            task,
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn measure_traces(
    bin: &Path,
    instant: &StandIn,
    options: &Options,
) -> Result<TraceFigures> {
    let warmup = warmup(options);
    progress(&format!(
        "[traces] run_task × {} (+{warmup} warm-up) on two servers, tracing off and on (OTLP to a local sink, batch every {SCHEDULE_DELAY_MS} ms), alternating",
        options.iterations
    ));
    let sink = Sink::start().await?;
    let api = instant.base_url();
    let off_ws = Workspace::new(options.database_url.clone())?;
    let on_ws = Workspace::new(options.database_url.clone())?
        .with_env(
            vars::OTEL_EXPORTER_OTLP_ENDPOINT,
            &format!("http://{}", sink.addr),
        )
        .with_env("OTEL_BSP_SCHEDULE_DELAY", &SCHEDULE_DELAY_MS.to_string());
    let (off, _) = off_ws.start_stdio(bin, &api).await?;
    let (on, _) = on_ws.start_stdio(bin, &api).await?;
    let task = task_args();
    let (mut off_times, mut on_times) = (Vec::new(), Vec::new());
    for i in 0..warmup + options.iterations {
        let mut pair = [Duration::ZERO; 2];
        for step in 0..2 {
            let traced = (i + step) % 2 == 1;
            let server = if traced { &on } else { &off };
            let t = Instant::now();
            let envelope = server.call("agent_run_task", task.clone()).await?;
            pair[usize::from(traced)] = t.elapsed();
            check_completed(&envelope)?;
        }
        if i >= warmup {
            off_times.push(pair[0]);
            on_times.push(pair[1]);
        }
    }
    off.stop().await;
    // Closing stdin shuts the server down, which sends the spans still queued.
    on.stop().await;
    let exports = sink.exports.load(Ordering::Relaxed);
    if exports == 0 {
        return Err(format!("the traced server exported nothing\n{}", on_ws.stderr_log()).into());
    }
    Ok(TraceFigures {
        off: summary(&off_times, "run_task, tracing off")?,
        on: summary(&on_times, "run_task, tracing on")?,
        exports,
        bytes: sink.bytes.load(Ordering::Relaxed),
    })
}
