//! A local stand-in for the Anthropic Messages API: `POST /v1/messages` on 127.0.0.1 answers
//! one fixed text reply, after an optional delay.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Result;

/// The reply every request gets: one text block, `end_turn`.
pub fn reply() -> Value {
    json!({
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Done. The benchmark task is complete."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 42, "output_tokens": 9}
    })
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Binds 127.0.0.1 on a free port. Each request body is read in full, then answered
    /// after `delay` (none when zero).
    pub async fn start(delay: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = Bytes::from(serde_json::to_vec(&reply())?);
        let app = Router::new().route(
            "/v1/messages",
            post(move |_request: Bytes| {
                let body = body.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    ([(CONTENT_TYPE, "application/json")], body)
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// The value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stand-in's own service time as a client sees it: a raw keep-alive `POST` with a
    /// request body shaped like the server's, timed `iterations` times after `warmup`.
    pub async fn service_times(&self, warmup: usize, iterations: usize) -> Result<Vec<Duration>> {
        let client = reqwest::Client::builder().build()?;
        let url = format!("{}/v1/messages", self.base_url());
        let body = json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 4096,
            "system": "You are a careful, capable general-purpose assistant working in a local directory.",
            "messages": [{"role": "user", "content": "Summarise the benchmark task."}]
        });
        let mut times = Vec::with_capacity(iterations);
        for i in 0..warmup + iterations {
            let start = Instant::now();
            let response = client
                .post(&url)
                .header("x-api-key", "bench")
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            let reply: Value = response.json().await?;
            let elapsed = start.elapsed();
            if reply["type"] != "message" {
                return Err(format!("unexpected stand-in reply: {reply}").into());
            }
            if i >= warmup {
                times.push(elapsed);
            }
        }
        Ok(times)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
