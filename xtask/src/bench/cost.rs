//! The cost phase (`--only cost`): what prompt caching saves on the Messages API backend.
//!
//! One stdio server runs a ten-turn conversation (`agent_run_task`, then nine
//! `agent_continue_session`), each turn a tool loop of two `read_file` calls and an answer, so
//! thirty model calls. The stand-in bills every request the way the API documents prompt
//! caching: the request is a sequence of blocks (each tool definition, each system block, each
//! message block) and its cache breakpoints are the blocks carrying `cache_control`; a prefix
//! up to a breakpoint that an earlier request wrote (looked up at the breakpoint and up to 20
//! blocks before it) is read at 0.1 × the input price, the rest up to the last breakpoint is
//! written at 1.25 ×, and what follows the last breakpoint is billed in full. A prefix shorter
//! than 1,024 tokens is never cached. Tokens are estimated as a block's JSON bytes / 4 (the
//! same estimate for both bills). The same requests billed without caching (every input token
//! at full price) give the comparison. The replies report the usage so billed, so the
//! server's `result.usage` is exercised on the way.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::server::Workspace;
use super::{Options, Result, check_completed, progress};

/// Turns of the conversation (one run, then continuations).
pub const TURNS: usize = 10;
/// `read_file` calls per turn before the answer.
pub const TOOL_CALLS_PER_TURN: usize = 2;
/// Input price of the default model (Claude Sonnet), dollars per million tokens.
const INPUT_USD_PER_MTOK: f64 = 3.0;
const CACHE_READ_FACTOR: f64 = 0.1;
const CACHE_WRITE_FACTOR: f64 = 1.25;
const MIN_CACHEABLE_TOKENS: u64 = 1024;
const LOOKBACK_BLOCKS: usize = 20;
/// Each file the tool calls read: this many lines of 80 characters (about 500 tokens, a small
/// source file).
const FILE_LINES: usize = 25;

#[derive(Debug, Default, Clone, Copy)]
pub struct Bill {
    /// Every input token of every request (what is billed without caching).
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// Tokens after the last breakpoint (billed in full with caching too).
    pub uncached_tokens: u64,
    pub requests: usize,
    /// Tokens up to the first breakpoint of the first request (the tools and system prompt).
    pub first_prefix_tokens: u64,
    /// The largest request.
    pub max_request_tokens: u64,
}

impl Bill {
    /// Input dollars without caching.
    pub fn usd_without(&self) -> f64 {
        self.input_tokens as f64 * INPUT_USD_PER_MTOK / 1e6
    }

    /// Input dollars with caching.
    pub fn usd_with(&self) -> f64 {
        (self.uncached_tokens as f64
            + self.cache_read_tokens as f64 * CACHE_READ_FACTOR
            + self.cache_write_tokens as f64 * CACHE_WRITE_FACTOR)
            * INPUT_USD_PER_MTOK
            / 1e6
    }

    /// Input tokens billed at full price with caching (reads and writes in full-price
    /// equivalents).
    pub fn full_price_equivalent_with(&self) -> f64 {
        self.uncached_tokens as f64
            + self.cache_read_tokens as f64 * CACHE_READ_FACTOR
            + self.cache_write_tokens as f64 * CACHE_WRITE_FACTOR
    }

    pub fn ratio(&self) -> f64 {
        self.usd_without() / self.usd_with().max(1e-12)
    }
}

pub struct CostFigures {
    pub bill: Bill,
    /// The usage the server reported over the ten envelopes (input, cache read, cache write).
    pub reported: (u64, u64, u64),
}

/// The blocks of a request in cache order (tools, system, messages), each with its token
/// estimate and whether it is a breakpoint.
fn blocks(body: &Value) -> Vec<(Value, u64, bool)> {
    let mut out = Vec::new();
    let mut push = |block: &Value| {
        let breakpoint = block.get("cache_control").is_some();
        let mut plain = block.clone();
        if let Some(object) = plain.as_object_mut() {
            object.remove("cache_control");
        }
        let tokens = (plain.to_string().len() as u64).div_ceil(4);
        out.push((plain, tokens, breakpoint));
    };
    for tool in body["tools"].as_array().into_iter().flatten() {
        push(tool);
    }
    match &body["system"] {
        Value::Array(system) => system.iter().for_each(&mut push),
        Value::String(text) => push(&json!({"type": "text", "text": text})),
        _ => {}
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::Array(content) => content.iter().for_each(&mut push),
            Value::String(text) => push(&json!({"type": "text", "text": text})),
            _ => {}
        }
    }
    out
}

/// The cache of written prefixes (by their hash), shared by every request.
#[derive(Default)]
struct Cache {
    written: HashMap<u64, u64>,
    bill: Bill,
}

impl Cache {
    /// Bills one request and records what it writes; answers (uncached input, read, write).
    fn bill(&mut self, body: &Value) -> (u64, u64, u64) {
        let blocks = blocks(body);
        let mut hasher = DefaultHasher::new();
        // Prefix hashes and token counts after each block.
        let mut prefix = Vec::with_capacity(blocks.len());
        let mut total = 0u64;
        for (block, tokens, _) in &blocks {
            block.to_string().hash(&mut hasher);
            total += tokens;
            prefix.push((hasher.finish(), total));
        }
        let breakpoints: Vec<usize> = blocks
            .iter()
            .enumerate()
            .filter(|(_, (_, _, bp))| *bp)
            .map(|(i, _)| i)
            .collect();
        let mut read = 0u64;
        for &b in &breakpoints {
            for i in (b.saturating_sub(LOOKBACK_BLOCKS)..=b).rev() {
                let (hash, tokens) = prefix[i];
                if tokens >= MIN_CACHEABLE_TOKENS && self.written.contains_key(&hash) {
                    read = read.max(tokens);
                    break;
                }
            }
        }
        let cached_end = breakpoints
            .last()
            .map(|&b| prefix[b].1)
            .filter(|t| *t >= MIN_CACHEABLE_TOKENS)
            .unwrap_or(0);
        let write = cached_end.saturating_sub(read);
        for &b in &breakpoints {
            let (hash, tokens) = prefix[b];
            if tokens >= MIN_CACHEABLE_TOKENS {
                self.written.insert(hash, tokens);
            }
        }
        let uncached = total - read.max(cached_end);
        if self.bill.requests == 0 {
            self.bill.first_prefix_tokens = breakpoints.first().map_or(0, |&b| prefix[b].1);
        }
        self.bill.max_request_tokens = self.bill.max_request_tokens.max(total);
        self.bill.input_tokens += total;
        self.bill.cache_read_tokens += read;
        self.bill.cache_write_tokens += write;
        self.bill.uncached_tokens += uncached;
        self.bill.requests += 1;
        (uncached, read, write)
    }
}

/// The reply to a request: the `k`-th `read_file` of the turn while fewer than
/// [`TOOL_CALLS_PER_TURN`] tool results follow the turn's user message, else the answer.
fn reply(body: &Value, usage: (u64, u64, u64)) -> Value {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let results = messages
        .iter()
        .rev()
        .take_while(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
                || m["role"] == "assistant"
        })
        .filter(|m| m["role"] == "user")
        .count();
    let usage = json!({
        "input_tokens": usage.0,
        "cache_read_input_tokens": usage.1,
        "cache_creation_input_tokens": usage.2,
        "output_tokens": 40,
    });
    if results < TOOL_CALLS_PER_TURN {
        json!({
            "id": format!("msg_tool_{}", messages.len()),
            "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [
                {"type": "text", "text": "Let me read the notes."},
                {"type": "tool_use", "id": format!("toolu_{}", messages.len()), "name": "read_file",
                 "input": {"path": format!("notes/part-{results}.txt")}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": usage
        })
    } else {
        json!({
            "id": format!("msg_answer_{}", messages.len()),
            "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": [{"type": "text", "text": "The notes describe the benchmark; nothing is missing."}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
        })
    }
}

/// Runs the conversation against the billing stand-in.
pub async fn measure_cost(bin: &Path, options: &Options) -> Result<CostFigures> {
    progress(&format!(
        "[cost] {TURNS} turns × ({TOOL_CALLS_PER_TURN} read_file calls + an answer) against a stand-in that bills prompt caching"
    ));
    let cache = Arc::new(Mutex::new(Cache::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = {
        let cache = Arc::clone(&cache);
        Router::new().route(
            "/v1/messages",
            post(move |request: Bytes| {
                let cache = Arc::clone(&cache);
                async move {
                    let body: Value = serde_json::from_slice(&request).unwrap_or(Value::Null);
                    let usage = match cache.lock() {
                        Ok(mut cache) => cache.bill(&body),
                        Err(poisoned) => poisoned.into_inner().bill(&body),
                    };
                    let out = serde_json::to_vec(&reply(&body, usage)).unwrap_or_default();
                    ([(CONTENT_TYPE, "application/json")], out)
                }
            }),
        )
    };
    let stand_in = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let ws = Workspace::new(options.database_url.clone())?;
    let notes = ws.cwd()?.join("notes");
    std::fs::create_dir_all(&notes)?;
    for part in 0..TOOL_CALLS_PER_TURN {
        let text: String = (0..FILE_LINES)
            .map(|n| {
                let line =
                    format!("part {part}, line {n}: nothing in these notes changes between turns.");
                format!("{line:<79}\n")
            })
            .collect();
        std::fs::write(notes.join(format!("part-{part}.txt")), text)?;
    }
    let (server, _) = ws.start_stdio(bin, &format!("http://{addr}")).await?;
    let mut reported = (0, 0, 0);
    let mut add = |envelope: &Value| {
        let usage = &envelope["result"]["usage"];
        let n = |k: &str| usage[k].as_u64().unwrap_or(0);
        reported.0 += n("input_tokens");
        reported.1 += n("cache_read_input_tokens");
        reported.2 += n("cache_creation_input_tokens");
    };
    let first = server
        .call(
            "agent_run_task",
            json!({"task": "Read notes/part-0.txt and notes/part-1.txt and summarise them."}),
        )
        .await?;
    check_completed(&first)?;
    add(&first);
    let session_id = first["session_id"]
        .as_str()
        .ok_or("agent_run_task returned no session_id")?
        .to_owned();
    for turn in 1..TURNS {
        let next = server
            .call(
                "agent_continue_session",
                json!({"session_id": session_id,
                       "message": format!("Turn {turn}: read both parts again and say what changed.")}),
            )
            .await?;
        check_completed(&next)?;
        add(&next);
    }
    server.stop().await;
    stand_in.abort();
    let bill = match cache.lock() {
        Ok(cache) => cache.bill,
        Err(poisoned) => poisoned.into_inner().bill,
    };
    let expected = TURNS * (TOOL_CALLS_PER_TURN + 1);
    if bill.requests != expected {
        return Err(format!(
            "the stand-in saw {} model calls, expected {expected}",
            bill.requests
        )
        .into());
    }
    Ok(CostFigures { bill, reported })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(system: &str, messages: Value) -> Value {
        json!({"system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
               "messages": messages})
    }

    #[test]
    fn a_repeated_prefix_is_read_and_only_the_new_part_written() {
        let system = "s".repeat(8000); // 2,000 tokens and more
        let mut cache = Cache::default();
        let one = body(
            &system,
            json!([{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]}]),
        );
        let (uncached, read, write) = cache.bill(&one);
        assert_eq!((uncached, read), (0, 0));
        assert!(write > 2000);
        let two = body(
            &system,
            json!([{"role": "user", "content": "a"},
                   {"role": "assistant", "content": "b"},
                   {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}]}]),
        );
        let (uncached, read, write2) = cache.bill(&two);
        assert_eq!(uncached, 0);
        assert_eq!(read, write, "the whole first request is read back");
        assert!(
            write2 > 0 && write2 < 50,
            "only the new messages are written: {write2}"
        );
        // Without markers nothing is cached.
        let mut plain = Cache::default();
        let body = json!({"system": system, "messages": [{"role": "user", "content": "a"}]});
        let (uncached, read, write) = plain.bill(&body);
        assert_eq!((read, write), (0, 0));
        assert!(uncached > 2000);
        assert!(plain.bill.ratio() > 0.99 && plain.bill.ratio() < 1.01);
    }

    #[test]
    fn the_script_asks_for_two_tools_then_answers() {
        let user = json!({"role": "user", "content": "go"});
        let tool_use = json!({"role": "assistant", "content": [{"type": "tool_use"}]});
        let result = json!({"role": "user", "content": [{"type": "tool_result"}]});
        let kinds = [
            json!([user]),
            json!([user, tool_use, result]),
            json!([user, tool_use, result, tool_use, result]),
        ]
        .map(|messages| reply(&json!({"messages": messages}), (0, 0, 0))["stop_reason"].clone());
        assert_eq!(
            kinds,
            [json!("tool_use"), json!("tool_use"), json!("end_turn")]
        );
    }
}
