//! The `api` execution backend: the Anthropic Messages API
//! (`docs/reference/backends.md#4-the-api-backend`).
//!
//! [`MessagesApiBackend`] sends `POST {base}/v1/messages` with one shared [`reqwest::Client`]
//! (connection pooling) and runs in one of two modes:
//!
//! * **single-shot** when the request carries no tools or no tool executor: one API call, the
//!   output is the response's `text` blocks joined with `"\n"`;
//! * **tool-use loop** otherwise: the model's `tool_use` blocks are executed through the
//!   [`ToolExecutor`](agent_core::ToolExecutor) and fed back as `tool_result` blocks until the
//!   model stops asking for tools or `max_turns` API calls have been made.
//!
//! Transient failures (connection errors, time-outs, HTTP 408, 409, 429, 5xx, 529) are retried
//! with exponential back-off and jitter, honouring `retry-after-ms` / `retry-after`. Every
//! await (HTTP exchange, back-off sleep, tool execution) is raced with the execution's
//! cancellation token. Token usage is summed over all calls, and the stop reasons
//! `max_tokens`, `refusal` and `pause_turn`, as well as an exhausted tool loop, produce
//! warnings. The API key is sent as a sensitive header and never logged or printed.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use agent_core::spend::{Effort, PriceTable, Prices};
use agent_core::{
    BackendOutput, BackendRequest, Capabilities, ChatRole, ErrorCode, ExecContext,
    ExecutionBackend, ExecutionError, FailureKind, ToolDefinition, ToolExecutor, Usage,
};
use async_trait::async_trait;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::field::Empty;
use tracing::{Instrument, debug};

use agent_core::observe::trace;

/// The default API base URL (used when `ANTHROPIC_BASE_URL` is not set).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The default `max_tokens` of every request.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// The default number of retries of a transient failure.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The default per-request time-out.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// The default first back-off delay.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The default cap of the exponential back-off.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `retry-after` the backend honours; longer values are capped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Single-shot mode: the response had no text.
pub const WARN_EMPTY_RESPONSE: &str = "Provider returned an empty response";
/// Tool-use loop: the final output text is empty.
pub const WARN_EMPTY_TEXT_RESPONSE: &str = "Provider returned an empty text response";
/// The final response stopped with `stop_reason` `max_tokens`.
pub const WARN_MAX_TOKENS: &str =
    "Output was truncated: the model reached the max_tokens limit (stop_reason 'max_tokens')";
/// The final response stopped with `stop_reason` `refusal`.
pub const WARN_REFUSAL: &str = "The model declined to complete the request (stop_reason 'refusal')";
/// The final response stopped with `stop_reason` `pause_turn`.
pub const WARN_PAUSE_TURN: &str =
    "The API paused a long-running turn (stop_reason 'pause_turn'); the output may be incomplete";
/// The beginning of the tool-loop exhaustion warning (see [`tool_loop_exhausted_warning`]).
pub const WARN_TOOL_LOOP_EXHAUSTED_PREFIX: &str = "Tool-use loop stopped after reaching max_turns";

/// The warning added when the tool loop used up its `max_turns` budget while the model still
/// requested tools: `Tool-use loop stopped after reaching max_turns (<n> turn(s)) while the
/// model still requested tools; the output may be incomplete`.
pub fn tool_loop_exhausted_warning(turns: u32) -> String {
    format!(
        "{WARN_TOOL_LOOP_EXHAUSTED_PREFIX} ({turns} turn(s)) while the model still requested tools; \
         the output may be incomplete"
    )
}

const SINGLE_SHOT_PREFIX: &str = "Claude API error: ";
const TOOL_LOOP_PREFIX: &str = "Claude API error (with tools): ";
const NORMALIZATION_PREFIX: &str = "Failed to normalize provider result: ";
/// Error bodies quoted in messages are cut to this many characters.
const MAX_ERROR_BODY_CHARS: usize = 2000;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Settings of a [`MessagesApiBackend`].
#[derive(Clone)]
pub struct ApiConfig {
    /// `ANTHROPIC_BASE_URL` or [`DEFAULT_BASE_URL`]; a trailing `/` is tolerated and a blank
    /// value means the default.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    /// `max_tokens` of every request ([`DEFAULT_MAX_TOKENS`]).
    pub max_tokens: u32,
    /// Retries of a transient failure (so `max_retries + 1` attempts per API call).
    pub max_retries: u32,
    /// Time-out of one HTTP request, response body included.
    pub request_timeout: Duration,
    /// The first back-off delay; doubled after every retry.
    pub initial_backoff: Duration,
    /// The cap of the back-off delay.
    pub max_backoff: Duration,
    /// Prices each call's usage (`result.usage.total_cost_usd`) and holds USD budgets.
    pub prices: PriceTable,
}

impl ApiConfig {
    /// A configuration with every default: [`DEFAULT_BASE_URL`], [`DEFAULT_MAX_TOKENS`],
    /// [`DEFAULT_MAX_RETRIES`], [`DEFAULT_REQUEST_TIMEOUT`], [`DEFAULT_INITIAL_BACKOFF`] and
    /// [`DEFAULT_MAX_BACKOFF`].
    pub fn new(api_key: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            model: model.into(),
            max_tokens: DEFAULT_MAX_TOKENS,
            max_retries: DEFAULT_MAX_RETRIES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            prices: PriceTable::default(),
        }
    }

    pub fn with_prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn with_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("max_retries", &self.max_retries)
            .field("request_timeout", &self.request_timeout)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Why a [`MessagesApiBackend`] could not be built. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum ApiBuildError {
    #[error("ANTHROPIC_API_KEY is empty")]
    MissingApiKey,
    #[error("ANTHROPIC_API_KEY contains characters that are not allowed in an HTTP header")]
    InvalidApiKey,
    #[error("invalid Anthropic API base URL '{url}': {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ApiBuildError {
    /// The error code to report: `execution_backend_auth_error` for key problems,
    /// `execution_backend_config_error` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiBuildError::MissingApiKey | ApiBuildError::InvalidApiKey => {
                ErrorCode::ExecutionBackendAuthError
            }
            ApiBuildError::InvalidBaseUrl { .. } | ApiBuildError::Client(_) => {
                ErrorCode::ExecutionBackendConfigError
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------------------------

/// The one way a client that carries the API key is built (the backend's, and `doctor`'s
/// probe): redirects are never followed, since following one would send the key wherever it
/// points; a 3xx is an answer like any other status, for the caller to report.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(agent_core::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
}

/// The `api` backend. Cheap to share: it holds one pooled [`reqwest::Client`].
#[derive(Clone)]
pub struct MessagesApiBackend {
    client: reqwest::Client,
    endpoint: Url,
    model: String,
    max_tokens: u32,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    prices: PriceTable,
}

impl fmt::Debug for MessagesApiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagesApiBackend")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl MessagesApiBackend {
    /// Validates the configuration and builds the HTTP client. Makes no network call.
    pub fn new(config: ApiConfig) -> Result<Self, ApiBuildError> {
        if config.api_key.trim().is_empty() {
            return Err(ApiBuildError::MissingApiKey);
        }
        let mut key =
            HeaderValue::from_str(&config.api_key).map_err(|_| ApiBuildError::InvalidApiKey)?;
        key.set_sensitive(true);

        let base = config.base_url.trim();
        let base = if base.is_empty() {
            DEFAULT_BASE_URL
        } else {
            base
        };
        let endpoint_text = format!("{}/v1/messages", base.trim_end_matches('/'));
        let endpoint = Url::parse(&endpoint_text).map_err(|e| ApiBuildError::InvalidBaseUrl {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(ApiBuildError::InvalidBaseUrl {
                url: base.to_owned(),
                reason: "the scheme must be http or https".to_owned(),
            });
        }

        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), key);
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        // The Messages API does not redirect: a 3xx is reported like any other unexpected
        // status (`client_builder`).
        let client = client_builder()
            .default_headers(headers)
            .timeout(config.request_timeout)
            .build()
            .map_err(ApiBuildError::Client)?;

        Ok(Self {
            client,
            endpoint,
            model: config.model,
            max_tokens: config.max_tokens,
            max_retries: config.max_retries,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
            prices: config.prices,
        })
    }

    /// The model of `request` (its own, or the configured one) and its prices.
    fn model_of<'a>(&'a self, request: &'a BackendRequest) -> (&'a str, Option<Prices>) {
        let model = request.spend.model.as_deref().unwrap_or(&self.model);
        (model, self.prices.prices(model))
    }

    /// The `/v1/messages` URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    async fn single_shot(
        &self,
        request: &BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, CallError> {
        let messages = initial_messages(request);
        let (model, prices) = self.model_of(request);
        let body = MessagesBody {
            model,
            max_tokens: self.max_tokens,
            system: request.system_prompt,
            messages: &messages,
            tools: None,
            output_config: OutputConfig::of(request),
        };
        ctx.report("model turn 1 of 1");
        let response = self.chat(&body, ctx).await?;
        let blocks = parse_blocks(&response.content)?;

        let output_text = blocks.texts.join("\n");
        let mut warnings = Vec::new();
        if output_text.is_empty() {
            warnings.push(WARN_EMPTY_RESPONSE.to_owned());
        }
        push_stop_reason_warning(&mut warnings, response.stop_reason.as_deref());
        let usage = response
            .usage
            .as_ref()
            .map(|u| priced(u.to_usage(), prices));
        if let Some(u) = &usage {
            warnings.extend(request.spend.budget.exceeded(u));
        }
        Ok(BackendOutput {
            output_text,
            turn_count: 1,
            stop_reason: response.stop_reason,
            warnings,
            usage,
            provider_session_id: None,
            transcript: None,
        })
    }

    async fn tool_loop(
        &self,
        request: &BackendRequest,
        executor: &dyn ToolExecutor,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, CallError> {
        // `max_turns` is validated to be ≥ 1 upstream; never make zero calls.
        let max_turns = request.max_turns.max(1);
        let mut messages = initial_messages(request);
        let first_added = messages.len();
        let mut answer: Option<Vec<Value>> = None;
        let mut output_text = String::new();
        let mut stop_reason = None;
        let mut usage: Option<Usage> = None;
        let mut turns = 0u32;
        let mut tool_calls = 0u32;
        let mut still_wants_tools = false;
        let (model, prices) = self.model_of(request);
        let budget = request.spend.budget;
        // The calls' usage, each priced: what the budget is checked against.
        let mut spent = Usage::default();
        let mut budget_stop = None;

        while turns < max_turns {
            ctx.report(&format!("model turn {} of {max_turns}", turns + 1));
            let body = MessagesBody {
                model,
                max_tokens: self.max_tokens,
                system: request.system_prompt,
                messages: &messages,
                tools: Some(&request.tools),
                output_config: OutputConfig::of(request),
            };
            let response = self.chat(&body, ctx).await?;
            turns += 1;
            let last = match &response.usage {
                Some(u) => {
                    let call = u.to_usage();
                    usage.get_or_insert_with(Usage::default).add(&call);
                    priced(call, prices)
                }
                None => Usage::default(),
            };
            spent.add(&last);
            let blocks = parse_blocks(&response.content)?;
            if !blocks.texts.is_empty() {
                output_text = blocks.texts.join("\n");
            }
            still_wants_tools =
                !blocks.uses.is_empty() && response.stop_reason.as_deref() == Some("tool_use");
            if !still_wants_tools {
                stop_reason = response.stop_reason;
                answer = Some(response.content);
                break;
            }
            let mut results = Vec::with_capacity(blocks.uses.len());
            for tool_use in blocks.uses {
                tool_calls += 1;
                ctx.report(&format!("tool call {tool_calls}: {}", tool_use.name));
                debug!(tool = tool_use.name, turn = turns, "executing tool call");
                let span = tracing::info_span!(
                    target: trace::SPAN_TARGET,
                    "execute_tool",
                    otel.name = Empty,
                    "gen_ai.operation.name" = "execute_tool",
                    "gen_ai.tool.name" = Empty,
                    "gen_ai.tool.call.id" = Empty,
                    "gen_ai.tool.type" = "function",
                    "claude_agent_mcp.tool.kind" = Empty,
                    "error.type" = Empty,
                    otel.status_code = Empty,
                );
                if !span.is_disabled() {
                    // The model chose the name and the id: bounded before they go on the span.
                    let name = trace::bounded(tool_use.name);
                    if let Some(name) = name {
                        span.record("gen_ai.tool.name", name);
                    }
                    if let Some(id) = trace::bounded(tool_use.id) {
                        span.record("gen_ai.tool.call.id", id);
                    }
                    let otel_name = name.map_or("execute_tool".to_owned(), |name| {
                        format!("execute_tool {name}")
                    });
                    span.record("otel.name", otel_name.as_str());
                }
                let outcome = cancellable(
                    ctx,
                    executor
                        .call(tool_use.name, tool_use.input)
                        .instrument(span.clone()),
                )
                .await?;
                if outcome.is_err() {
                    trace::record_error(&span, "tool_error");
                }
                // A failed call keeps the original's `Error: ` text and is flagged `is_error` so
                // the model knows the tool failed (**[fixed]** in
                // `docs/reference/backends.md#43-tool-use-loop`).
                let (content, is_error) = match outcome {
                    Ok(text) => (text, false),
                    Err(message) => (format!("Error: {message}"), true),
                };
                results.push(ToolResult {
                    kind: "tool_result",
                    tool_use_id: tool_use.id.to_owned(),
                    content,
                    is_error,
                });
            }
            stop_reason = response.stop_reason;
            // The next call only within the budget, its tool results counted (they can be much
            // larger than anything the model wrote).
            let added: usize = results.iter().map(|r| r.content.len()).sum();
            if turns < max_turns
                && let Some(warning) = budget.before_next_call(
                    &spent,
                    &last,
                    added,
                    prices.map(|p| p.input / 1_000_000.0),
                )
            {
                budget_stop = Some(warning);
                break;
            }
            messages.push(OutMessage {
                role: ChatRole::Assistant,
                content: OutContent::Blocks(response.content),
            });
            messages.push(OutMessage {
                role: ChatRole::User,
                content: OutContent::ToolResults(results),
            });
        }

        let mut warnings = Vec::new();
        if output_text.is_empty() {
            warnings.push(WARN_EMPTY_TEXT_RESPONSE.to_owned());
        }
        push_stop_reason_warning(&mut warnings, stop_reason.as_deref());
        if let Some(warning) = budget_stop {
            warnings.push(warning);
        } else {
            if still_wants_tools {
                warnings.push(tool_loop_exhausted_warning(turns));
            }
            warnings.extend(budget.exceeded(&spent));
        }
        // What the loop added, for continuations to replay: only a loop that called tools and
        // ended with an answer (a cut-off one ends with tool calls that have no results).
        let transcript = answer.filter(|_| tool_calls > 0).map(|answer| {
            let mut added: Vec<Value> = messages[first_added..]
                .iter()
                .filter_map(|m| serde_json::to_value(m).ok())
                .collect();
            added.push(serde_json::json!({"role": "assistant", "content": answer}));
            added
        });
        Ok(BackendOutput {
            output_text,
            transcript,
            turn_count: turns,
            stop_reason,
            warnings,
            usage: usage.map(|u| priced(u, prices)),
            provider_session_id: None,
        })
    }

    /// One model call (its retries included) in a `chat` span
    /// (`docs/observability.md#traces`): the model asked and answering, the usage and the
    /// stop reason. No prompt or output text is put on it.
    async fn chat(
        &self,
        body: &MessagesBody<'_>,
        ctx: &ExecContext,
    ) -> Result<MessagesResponse, CallError> {
        let span = tracing::info_span!(
            target: trace::SPAN_TARGET,
            "chat",
            otel.name = Empty,
            otel.kind = "client",
            "gen_ai.operation.name" = "chat",
            "gen_ai.provider.name" = trace::PROVIDER,
            "gen_ai.request.model" = body.model,
            "gen_ai.request.max_tokens" = body.max_tokens,
            "gen_ai.response.model" = Empty,
            "gen_ai.response.id" = Empty,
            "gen_ai.response.finish_reasons" = Empty,
            "gen_ai.usage.input_tokens" = Empty,
            "gen_ai.usage.output_tokens" = Empty,
            "gen_ai.usage.cache_read.input_tokens" = Empty,
            "gen_ai.usage.cache_creation.input_tokens" = Empty,
            "error.type" = Empty,
            otel.status_code = Empty,
        );
        if span.is_disabled() {
            return self.call(body, ctx).await;
        }
        span.record("otel.name", format!("chat {}", body.model).as_str());
        let answer = self.call(body, ctx).instrument(span.clone()).await;
        match &answer {
            Ok(response) => {
                // What the API answered is bounded before it goes on the span.
                if let Some(model) = response.model.as_deref().and_then(trace::bounded) {
                    span.record("gen_ai.response.model", model);
                }
                if let Some(id) = response.id.as_deref().and_then(trace::bounded) {
                    span.record("gen_ai.response.id", id);
                }
                if let Some(reason) = response.stop_reason.as_deref().and_then(trace::bounded) {
                    span.record("gen_ai.response.finish_reasons", reason);
                }
                if let Some(usage) = &response.usage {
                    trace::record_usage(&span, &usage.to_usage());
                }
            }
            Err(e) => {
                let kind = match e {
                    CallError::Cancelled => "cancelled",
                    CallError::Provider(..) => "provider_error",
                    CallError::Normalization(_) => "normalization_error",
                };
                trace::record_error(&span, kind);
            }
        }
        answer
    }

    /// One API call with retries.
    async fn call(
        &self,
        body: &MessagesBody<'_>,
        ctx: &ExecContext,
    ) -> Result<MessagesResponse, CallError> {
        let max_attempts = self.max_retries.saturating_add(1);
        let mut attempt = 1u32;
        loop {
            let builder = self.request(body)?;
            let failure = match self.attempt(builder, ctx).await? {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt >= max_attempts {
                debug!(attempt, reason = %failure.reason, "Messages API call failed");
                return Err(CallError::Provider(failure.detail, failure.kind));
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| self.backoff(attempt - 1));
            attempt += 1;
            debug!(
                attempt,
                reason = %failure.reason,
                delay_ms = delay.as_millis() as u64,
                "retrying Messages API call"
            );
            ctx.report(&format!(
                "retrying after {} (attempt {attempt} of {max_attempts})",
                failure.reason
            ));
            cancellable(ctx, tokio::time::sleep(delay)).await?;
        }
    }

    /// The `POST` of one attempt. The body is encoded for each attempt and handed over as a
    /// one-chunk stream with its `Content-Length`, not as reusable bytes: reusable bytes are
    /// kept (for redirects and retries) until the response has arrived, which for a model
    /// call takes seconds, while a stream is freed as soon as hyper has written it. With 50
    /// calls waiting on the model that is 50 request bodies (about 9 KB each with the
    /// built-in tools) not held.
    fn request(&self, body: &MessagesBody<'_>) -> Result<reqwest::RequestBuilder, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            CallError::Provider(
                format!("failed to encode the request body: {e}"),
                FailureKind::Unspecified,
            )
        })?;
        let length = bytes.len();
        let chunk = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(bytes)));
        Ok(self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(CONTENT_LENGTH, HeaderValue::from(length))
            .body(reqwest::Body::wrap_stream(chunk)))
    }

    /// One HTTP exchange. The outer `Err` ends the call (cancellation, a 200 that cannot be
    /// parsed); the inner `Err` is an HTTP or transport failure that may be retried.
    async fn attempt(
        &self,
        builder: reqwest::RequestBuilder,
        ctx: &ExecContext,
    ) -> Result<Result<MessagesResponse, Failure>, CallError> {
        let response = match cancellable(ctx, builder.send()).await? {
            Ok(response) => response,
            Err(e) => return Ok(Err(Failure::transport(e))),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let should_retry = should_retry_header(response.headers());
        debug!(status = status.as_u16(), "Messages API response");
        let body = match cancellable(ctx, response.bytes()).await? {
            Ok(body) => body,
            Err(e) => return Ok(Err(Failure::transport(e))),
        };
        if status.is_success() {
            return parse_response(&body).map(Ok);
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        let cut = agent_core::text::truncate_chars(text, MAX_ERROR_BODY_CHARS);
        let ellipsis = if cut.len() < text.len() {
            " [truncated]"
        } else {
            ""
        };
        Ok(Err(Failure {
            reason: format!("HTTP {}", status.as_u16()),
            detail: format!("Error code: {} - {cut}{ellipsis}", status.as_u16()),
            kind: FailureKind::HttpStatus(status.as_u16()),
            retryable: should_retry.unwrap_or_else(|| is_retryable_status(status)),
            retry_after,
        }))
    }

    /// Exponential back-off before retry number `retry + 1`, with up to 25 % jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let base = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        base.mul_f64(1.0 - 0.25 * fastrand::f64())
    }
}

#[async_trait]
impl ExecutionBackend for MessagesApiBackend {
    fn name(&self) -> &'static str {
        "api"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            supports_downstream_tools: true,
            supports_structured_tool_use: true,
            supports_native_multiturn: true,
            supports_rich_stop_reason: true,
            supports_structured_messages: true,
            prices_model_calls: true,
            ..Capabilities::default()
        }
    }

    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        if ctx.cancel.is_cancelled() {
            return Err(ExecutionError::cancelled());
        }
        match (&request.tool_executor, request.tools.is_empty()) {
            (Some(executor), false) => {
                debug!(
                    session_id = %request.session_id,
                    tools = request.tools.len(),
                    "Messages API tool-use loop"
                );
                self.tool_loop(&request, executor.as_ref(), ctx)
                    .await
                    .map_err(|e| e.into_execution_error(TOOL_LOOP_PREFIX))
            }
            _ => {
                debug!(session_id = %request.session_id, "Messages API single-shot call");
                self.single_shot(&request, ctx)
                    .await
                    .map_err(|e| e.into_execution_error(SINGLE_SHOT_PREFIX))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors, retries, cancellation
// ---------------------------------------------------------------------------------------------

/// A failed API call, before the mode-specific message prefix is applied.
#[derive(Debug)]
enum CallError {
    Cancelled,
    /// The HTTP exchange failed (after retries); the detail follows `Claude API error: `.
    Provider(String, FailureKind),
    /// A 200 response that is not a Messages response.
    Normalization(String),
}

impl CallError {
    fn into_execution_error(self, prefix: &str) -> ExecutionError {
        match self {
            CallError::Cancelled => ExecutionError::cancelled(),
            CallError::Provider(detail, kind) => {
                ExecutionError::new(ErrorCode::ProviderRuntimeError, format!("{prefix}{detail}"))
                    .with_kind(kind)
            }
            CallError::Normalization(detail) => ExecutionError::new(
                ErrorCode::NormalizationError,
                format!("{NORMALIZATION_PREFIX}{detail}"),
            ),
        }
    }
}

/// A failed HTTP attempt.
struct Failure {
    /// Short, for progress: `HTTP 429`, `time-out`, `connection error`.
    reason: String,
    detail: String,
    kind: FailureKind,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn transport(error: reqwest::Error) -> Self {
        let (reason, kind) = if error.is_timeout() {
            ("time-out", FailureKind::Timeout)
        } else if error.is_connect() {
            ("connection error", FailureKind::Connection)
        } else {
            ("transport error", FailureKind::Unspecified)
        };
        Failure {
            reason: reason.to_owned(),
            detail: error_chain(&error.without_url()),
            kind,
            retryable: true,
            retry_after: None,
        }
    }
}

/// `error: source: source…`, skipping a source whose text its parent already contains. The
/// one rendering of an HTTP failure's causes (also `doctor`'s API probe).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The `x-should-retry` override the API may send.
fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `retry-after-ms` (milliseconds) or `retry-after` (seconds, possibly fractional), capped at
/// [`MAX_RETRY_AFTER`]. HTTP-date values are ignored (the exponential back-off applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    fn number(headers: &HeaderMap, name: &str) -> Option<f64> {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    }
    let seconds = number(headers, "retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number(headers, "retry-after"))?;
    Some(Duration::from_secs_f64(
        seconds.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// Awaits `future` unless the execution is cancelled first.
async fn cancellable<F: Future>(ctx: &ExecContext, future: F) -> Result<F::Output, CallError> {
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => Err(CallError::Cancelled),
        output = future => Ok(output),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/// A request body. Prompt caching (`docs/backends.md#api-the-messages-api`): two cache breakpoints,
/// the system prompt (a single text block; the cached prefix runs tools → system, so it covers
/// the tools too, which stay in the same order for a session) and the last block of the last
/// message (the conversation so far, read back by the next turn of a tool loop).
#[derive(Serialize)]
struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(serialize_with = "cached_system")]
    system: &'a str,
    #[serde(serialize_with = "cached_messages")]
    messages: &'a [OutMessage<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [ToolDefinition]>,
    /// The caller's `output_schema`, as structured-output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<OutputConfig<'a>>,
}

/// `output_config: {"format": {"type": "json_schema", "schema": …}, "effort": …}` (each part
/// only when asked for).
#[derive(Serialize)]
struct OutputConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<OutputFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effort: Option<&'static str>,
}

#[derive(Serialize)]
struct OutputFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: &'a Value,
}

impl<'a> OutputConfig<'a> {
    fn of(request: &'a BackendRequest) -> Option<Self> {
        let format = request.output_schema.as_ref().map(|schema| OutputFormat {
            kind: "json_schema",
            schema: schema.value(),
        });
        let effort = request.spend.effort.map(Effort::as_str);
        (format.is_some() || effort.is_some()).then_some(Self { format, effort })
    }
}

/// `cache_control` of a breakpoint: the default (five-minute) ephemeral cache.
#[derive(Serialize, Clone, Copy)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

/// A text block with a cache breakpoint.
#[derive(Serialize)]
struct CachedText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    cache_control: CacheControl,
}

impl<'a> CachedText<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            kind: "text",
            text,
            cache_control: EPHEMERAL,
        }
    }
}

fn cached_system<S: serde::Serializer>(system: &&str, serializer: S) -> Result<S::Ok, S::Error> {
    [CachedText::new(system)].serialize(serializer)
}

fn cached_messages<S: serde::Serializer>(
    messages: &&[OutMessage<'_>],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(messages.len()))?;
    if let Some((last, earlier)) = messages.split_last() {
        for message in earlier {
            seq.serialize_element(message)?;
        }
        seq.serialize_element(&CachedMessage(last))?;
    }
    seq.end()
}

/// The last message of a request, its last block a cache breakpoint.
struct CachedMessage<'a>(&'a OutMessage<'a>);

impl Serialize for CachedMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("OutMessage", 2)?;
        out.serialize_field("role", &self.0.role)?;
        match &self.0.content {
            OutContent::Text(text) => out.serialize_field("content", &[CachedText::new(text)])?,
            OutContent::ToolResults(results) => {
                let blocks: Vec<CachedToolResult<'_>> = results
                    .iter()
                    .enumerate()
                    .map(|(i, result)| CachedToolResult {
                        result,
                        cache_control: (i + 1 == results.len()).then_some(EPHEMERAL),
                    })
                    .collect();
                out.serialize_field("content", &blocks)?;
            }
            // An assistant turn is never the last message of a request.
            OutContent::Blocks(blocks) => out.serialize_field("content", blocks)?,
        }
        out.end()
    }
}

#[derive(Serialize)]
struct CachedToolResult<'a> {
    #[serde(flatten)]
    result: &'a ToolResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: ChatRole,
    content: OutContent<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    /// An assistant turn: the response's content blocks, verbatim.
    Blocks(Vec<Value>),
    ToolResults(Vec<ToolResult>),
}

#[derive(Serialize)]
struct ToolResult {
    #[serde(rename = "type")]
    kind: &'static str,
    tool_use_id: String,
    content: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_error: bool,
}

/// `history + [user(task)]`, borrowing from the request.
fn initial_messages(request: &BackendRequest) -> Vec<OutMessage<'_>> {
    let mut messages = Vec::with_capacity(request.history.len() + 3);
    messages.extend(request.history.iter().map(|m| OutMessage {
        role: m.role,
        content: match &m.blocks {
            // An earlier turn's tool loop, replayed as it was sent and received.
            Some(blocks) => OutContent::Blocks(blocks.clone()),
            None => OutContent::Text(&m.content),
        },
    }));
    messages.push(OutMessage {
        role: ChatRole::User,
        content: OutContent::Text(&request.task),
    });
    messages
}

#[derive(Deserialize)]
struct MessagesResponse {
    /// The model that answered and the message id (for the `chat` span only), ignored when
    /// they are not strings (bounded to [`MAX_SPAN_TEXT_BYTES`]).
    #[serde(default, deserialize_with = "lenient_text")]
    model: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    id: Option<String>,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    /// Parsed leniently: a malformed `usage` is ignored rather than failing the run.
    #[serde(default, deserialize_with = "lenient_usage")]
    usage: Option<ApiUsage>,
}

#[derive(Deserialize)]
struct ApiUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl ApiUsage {
    fn to_usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            total_cost_usd: None,
        }
    }
}

/// The most bytes of a provider-given name (model, message id) put on a span.
const MAX_SPAN_TEXT_BYTES: usize = 256;

fn lenient_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(match value {
        Value::String(text) if text.len() <= MAX_SPAN_TEXT_BYTES => Some(text),
        _ => None,
    })
}

fn lenient_usage<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ApiUsage>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// `usage` with its `total_cost_usd` at `prices` (none when the model has no price).
fn priced(mut usage: Usage, prices: Option<Prices>) -> Usage {
    usage.total_cost_usd = prices.map(|p| p.cost(&usage));
    usage
}

/// Parses a 2xx body: not JSON → provider error, JSON but not a Messages response →
/// normalization error.
fn parse_response(body: &[u8]) -> Result<MessagesResponse, CallError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        CallError::Provider(
            format!("invalid JSON in response body: {e}"),
            FailureKind::Unspecified,
        )
    })?;
    if !value.is_object() {
        return Err(CallError::Normalization(
            "the response body is not a JSON object".to_owned(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| CallError::Normalization(format!("unexpected response shape: {e}")))
}

struct ToolUse<'a> {
    id: &'a str,
    name: &'a str,
    input: Value,
}

struct Blocks<'a> {
    texts: Vec<&'a str>,
    uses: Vec<ToolUse<'a>>,
}

/// The `text` and `tool_use` blocks of a response; other block types are ignored.
fn parse_blocks(content: &[Value]) -> Result<Blocks<'_>, CallError> {
    let bad = |index: usize, what: &str| {
        CallError::Normalization(format!("content block {index} {what}"))
    };
    let mut blocks = Blocks {
        texts: Vec::new(),
        uses: Vec::new(),
    };
    for (index, block) in content.iter().enumerate() {
        let Some(object) = block.as_object() else {
            return Err(bad(index, "is not an object"));
        };
        match object.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = object
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(index, "(text) has no string 'text'"))?;
                blocks.texts.push(text);
            }
            Some("tool_use") => {
                let id = object
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(index, "(tool_use) has no string 'id'"))?;
                let name = object
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(index, "(tool_use) has no string 'name'"))?;
                let input = match object.get("input") {
                    None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
                    Some(input) => input.clone(),
                };
                blocks.uses.push(ToolUse { id, name, input });
            }
            _ => {}
        }
    }
    Ok(blocks)
}

fn push_stop_reason_warning(warnings: &mut Vec<String>, stop_reason: Option<&str>) {
    let warning = match stop_reason {
        Some("max_tokens") => WARN_MAX_TOKENS,
        Some("refusal") => WARN_REFUSAL,
        Some("pause_turn") => WARN_PAUSE_TURN,
        _ => return,
    };
    warnings.push(warning.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        headers.insert("retry-after-ms", HeaderValue::from_static("-3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.insert("retry-after", HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_cap() {
        let backend = MessagesApiBackend::new(
            ApiConfig::new("k", "m")
                .with_backoff(Duration::from_millis(100), Duration::from_millis(350)),
        )
        .unwrap();
        for (retry, full) in [(0, 100), (1, 200), (2, 350), (40, 350)] {
            let d = backend.backoff(retry);
            assert!(d <= Duration::from_millis(full), "{retry}: {d:?}");
            assert!(d >= Duration::from_millis(full * 3 / 4), "{retry}: {d:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 409, 429, 500, 502, 503, 529] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 413, 422] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn build_errors_do_not_leak_the_key() {
        assert!(matches!(
            MessagesApiBackend::new(ApiConfig::new(" ", "m")),
            Err(ApiBuildError::MissingApiKey)
        ));
        let err = MessagesApiBackend::new(ApiConfig::new("sk-secret\n", "m")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ExecutionBackendAuthError);
        assert!(!err.to_string().contains("sk-secret"));
        let err = MessagesApiBackend::new(ApiConfig::new("k", "m").with_base_url("not a url"))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ExecutionBackendConfigError);
        let config = ApiConfig::new("sk-secret", "m");
        assert!(!format!("{config:?}").contains("sk-secret"));
        let backend = MessagesApiBackend::new(config.with_base_url("http://127.0.0.1:9/")).unwrap();
        assert_eq!(backend.endpoint(), "http://127.0.0.1:9/v1/messages");
        assert!(!format!("{backend:?}").contains("sk-secret"));
        let backend = MessagesApiBackend::new(ApiConfig::new("k", "m").with_base_url("")).unwrap();
        assert_eq!(backend.endpoint(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn body_shape() {
        let messages = [OutMessage {
            role: ChatRole::User,
            content: OutContent::Text("hi"),
        }];
        let body = MessagesBody {
            model: "m",
            max_tokens: 5,
            system: "s",
            messages: &messages,
            tools: None,
            output_config: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "model": "m",
                "max_tokens": 5,
                "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                ]}]
            })
        );
    }
}

/// Property campaign (#12): any body a provider (or anything answering at its address) sends
/// goes through the parsers without a panic, and a parsed response is fully normalised.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn arb_json() -> impl Strategy<Value = Value> {
        crate::strategies::json_value(
            &["text", "tool_use"],
            &["type", "text", "id", "name", "input", "input_tokens"],
        )
    }

    /// A body near the real shape: `content` blocks, `stop_reason` and `usage` each either
    /// well-formed or arbitrary.
    fn near_response() -> impl Strategy<Value = Value> {
        let block = prop_oneof![
            any::<String>().prop_map(|t| json!({"type": "text", "text": t})),
            (any::<String>(), any::<String>(), arb_json())
                .prop_map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input})),
            arb_json(),
        ];
        (
            prop_oneof![
                prop::collection::vec(block, 0..6).prop_map(Value::from),
                arb_json()
            ],
            prop_oneof![
                Just(json!("end_turn")),
                Just(json!("max_tokens")),
                Just(json!("tool_use")),
                Just(json!("refusal")),
                arb_json()
            ],
            prop_oneof![
                (any::<u64>(), any::<u64>())
                    .prop_map(|(i, o)| json!({"input_tokens": i, "output_tokens": o})),
                arb_json()
            ],
        )
            .prop_map(|(content, stop, usage)| {
                json!({"id": "msg_1", "type": "message", "role": "assistant",
                       "content": content, "stop_reason": stop, "usage": usage})
            })
    }

    fn normalise(body: &[u8]) {
        let Ok(response) = parse_response(body) else {
            return;
        };
        if let Ok(blocks) = parse_blocks(&response.content) {
            let _ = blocks.texts.concat();
            for tool_use in blocks.uses {
                assert!(!tool_use.input.is_null(), "a null input becomes an object");
                let _ = (tool_use.id, tool_use.name);
            }
        }
        let _ = response.usage.as_ref().map(ApiUsage::to_usage);
        let mut warnings = Vec::new();
        push_stop_reason_warning(&mut warnings, response.stop_reason.as_deref());
        assert!(warnings.len() <= 1);
    }

    proptest! {
        #![proptest_config(crate::strategies::config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            normalise(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in arb_json()) {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            match parse_response(&body) {
                Err(CallError::Provider(..)) => prop_assert!(false, "valid JSON is not a provider error"),
                Err(CallError::Normalization(message)) => prop_assert!(!message.is_empty()),
                Err(CallError::Cancelled) => prop_assert!(false, "parsing never cancels"),
                Ok(_) => prop_assert!(value.is_object()),
            }
            normalise(&body);
        }

        #[test]
        fn near_real_responses_parse_or_fail_cleanly(value in near_response()) {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            normalise(&body);
            if let Ok(response) = parse_response(&body) {
                match parse_blocks(&response.content) {
                    Ok(blocks) => {
                        let texts = value["content"].as_array().map_or(0, |c| {
                            c.iter().filter(|b| b["type"] == "text").count()
                        });
                        prop_assert_eq!(blocks.texts.len(), texts);
                    }
                    Err(CallError::Normalization(message)) => {
                        prop_assert!(message.starts_with("content block "));
                    }
                    Err(_) => prop_assert!(false, "only normalization errors"),
                }
            }
        }
    }
}
