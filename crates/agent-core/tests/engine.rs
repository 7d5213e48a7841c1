//! The workflow engine embedded without MCP: every port is an in-memory fake (`fakes`), and each
//! test pins one behaviour of the reference on whole envelopes, whole event lists and whole session
//! records: the tools and envelopes (`docs/reference/tools.md#4-agent_run_task` to
//! `docs/reference/tools.md#13-edge-cases`, `docs/reference/envelope.md#2-the-canonical-envelope`),
//! sessions (`docs/reference/sessions.md#3-statuses-and-transitions` to
//! `docs/reference/sessions.md#8-conversation-history`, `docs/reference/events.md#3-sequences`),
//! verification (`docs/reference/verification.md#2-flow`,
//! `docs/reference/verification.md#4-verdict-parsing`,
//! `docs/reference/verification.md#83-missing-evidence`) and the backend contract
//! (`docs/reference/backends.md#1-backend-contract`,
//! `docs/reference/backends.md#43-tool-use-loop`).

// Helpers outside `#[test]` functions are test code too (clippy's allow-in-tests misses them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::engine::conversation_history;
use agent_core::error::{ErrorCode, ErrorObject};
use agent_core::{
    BackendOutput, BackendRequest, ChatMessage, ChatRole, ContinueSessionRequest, Engine,
    EngineConfig, Envelope, Event, EventLog, ExecContext, Finish, GetSessionRequest, Lease,
    ListSessionsRequest, LockOutcome, NewSession, Profile, RunTaskRequest, SessionRecord,
    SessionStatus, SessionStore, Timestamp, ToolCallContext, Usage, VerifyTaskRequest,
    WaitSessionRequest, Workflow,
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use fakes::{
    FakeBackend, FakePolicy, FakeTools, MemStore, Method, RecordingProgress, StoredArtifact,
    ToolCall, output, seed_record, tool, usage,
};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

const CWD: &str = "/work/project";
const SHARED: &str = "/srv/shared";
const README: &str = "/work/project/README.md";
const NOTES: &str = "/work/project/notes.txt";
const OUTSIDE_FILE: &str = "/etc/passwd";
const RELATIVE_EVIDENCE: &str = "docs/spec.md";

const RUNNING_MESSAGE: &str =
    "Session is currently running — use locking to gate concurrent access";

fn policy() -> FakePolicy {
    FakePolicy::new(
        CWD,
        &[CWD, SHARED],
        &[README, NOTES, OUTSIDE_FILE, RELATIVE_EVIDENCE],
    )
}

struct Harness {
    engine: Engine,
    store: Arc<MemStore>,
    backend: Arc<FakeBackend>,
    progress: Arc<RecordingProgress>,
}

impl Harness {
    fn new(backend: FakeBackend) -> Self {
        Self::build(backend, Vec::new(), EngineConfig::default())
    }

    fn with_tools(backend: FakeBackend, providers: Vec<Arc<FakeTools>>) -> Self {
        Self::build(backend, providers, EngineConfig::default())
    }

    fn build(backend: FakeBackend, providers: Vec<Arc<FakeTools>>, config: EngineConfig) -> Self {
        let store = Arc::new(MemStore::new());
        let backend = Arc::new(backend);
        let mut engine = Engine::new(
            Arc::clone(&store) as Arc<dyn SessionStore>,
            Arc::clone(&backend) as Arc<dyn agent_core::ExecutionBackend>,
            Arc::new(
                policy().with_contents("/work/project/evidence.md", "# Project\nparses CRLF\n"),
            ),
            config,
        );
        for provider in providers {
            engine = engine.with_tool_provider(provider);
        }
        Self {
            engine,
            store,
            backend,
            progress: Arc::new(RecordingProgress::default()),
        }
    }

    fn ctx(&self) -> ExecContext {
        ExecContext::new(
            CancellationToken::new(),
            Arc::clone(&self.progress) as Arc<dyn agent_core::ProgressSink>,
        )
    }

    async fn run(&self, req: RunTaskRequest) -> Envelope {
        self.engine.run_task(req, &self.ctx()).await
    }

    async fn cont(&self, session_id: &str, message: &str) -> Envelope {
        self.engine
            .continue_session(
                ContinueSessionRequest::new(session_id, message),
                &self.ctx(),
            )
            .await
    }

    async fn verify(&self, req: VerifyTaskRequest) -> Envelope {
        self.engine.verify_task(req, &self.ctx()).await
    }

    fn record(&self, session_id: &str) -> SessionRecord {
        self.store.record(session_id).expect("session exists")
    }

    /// The session's events as `(type, turn, payload)`.
    fn events(&self, session_id: &str) -> Vec<(String, i64, Value)> {
        self.store
            .events_of(session_id)
            .into_iter()
            .map(|e| (e.event_type, e.turn_index, e.payload))
            .collect()
    }
}

fn ev(event_type: &str, turn: i64, payload: Value) -> (String, i64, Value) {
    (event_type.to_owned(), turn, payload)
}

fn run_events(task: &str, profile: &str, max_turns: u32) -> Vec<(String, i64, Value)> {
    vec![
        ev("user_input", 0, json!({"task": task})),
        ev("system_prompt_resolved", 0, json!({"profile": profile})),
        ev(
            "policy_decision",
            0,
            json!({"working_directory": CWD, "max_turns": max_turns}),
        ),
        ev("provider_request_start", 0, json!({})),
    ]
}

fn response_summary(turn: i64, summary: &str, stop: Option<&str>) -> (String, i64, Value) {
    ev(
        "provider_response_summary",
        turn,
        json!({"summary": summary, "stop_reason": stop}),
    )
}

fn error_envelope(
    session_id: &str,
    workflow: &str,
    profile: &str,
    code: &str,
    message: &str,
) -> Value {
    json!({
        "ok": false,
        "session_id": session_id,
        "status": "failed",
        "workflow": workflow,
        "profile": profile,
        "summary": message,
        "result": {},
        "artifacts": [],
        "warnings": [],
        "errors": [{"code": code, "message": message, "details": null}]
    })
}

/// A verification envelope with `result` cut to the five core keys of
/// `docs/reference/verification.md#4-verdict-parsing` (and `usage`): the assessment fields of
/// `docs/reference/verification.md#63-assessment` and
/// `docs/reference/verification.md#8-result-shapes` arrive with preflight and are pinned there.
fn verify_value(env: &Envelope) -> Value {
    let mut value = env.to_value();
    if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
        result.retain(|k, _| {
            [
                "verdict",
                "findings",
                "contradictions",
                "missing_evidence",
                "restrictions",
                "usage",
            ]
            .contains(&k.as_str())
        });
    }
    value
}

fn prompt_name(prompt: &str) -> &'static str {
    if prompt == Profile::General.system_prompt() {
        "general"
    } else if prompt == Profile::Verification.system_prompt() {
        "verification"
    } else {
        "other"
    }
}

/// Everything a backend request carries, as one comparable value.
fn describe(req: &BackendRequest) -> Value {
    json!({
        "session_id": req.session_id,
        "profile": req.profile,
        "system_prompt": prompt_name(req.system_prompt),
        "task": req.task,
        "max_turns": req.max_turns,
        "tools": req.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "has_executor": req.tool_executor.is_some(),
        "history": req.history,
        "session_summary": req.session_summary,
        "is_continuation": req.is_continuation,
        "working_directory": req.working_directory.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "provider_session_id": req.provider_session_id,
    })
}

fn user(content: &str) -> Value {
    json!({"role": "user", "content": content})
}

fn assistant(content: &str) -> Value {
    json!({"role": "assistant", "content": content})
}

fn is_session_id(id: &str) -> bool {
    id.len() == 21
        && id.starts_with("sess_")
        && id[5..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn seed(
    h: &Harness,
    id: &str,
    workflow: Workflow,
    profile: Profile,
    status: SessionStatus,
) -> SessionRecord {
    let record = seed_record(id, workflow, profile, status);
    h.store.seed(record.clone());
    record
}

fn long_ago() -> Timestamp {
    Timestamp::parse("2020-01-01T00:00:00+00:00").unwrap()
}

// ---------------------------------------------------------------------------------------------
// agent_run_task
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn run_task_success_returns_envelope_events_record_and_output_artifact() {
    let text = "Refactored the parser.\nAll 42 tests pass; see the diff for the details.";
    let reported = Usage {
        input_tokens: 120,
        output_tokens: 45,
        cache_read_input_tokens: Some(10),
        ..Usage::default()
    };
    let h = Harness::new(FakeBackend::new().then_ok(BackendOutput {
        output_text: text.to_owned(),
        turn_count: 3,
        stop_reason: Some("end_turn".to_owned()),
        warnings: vec!["Provider note".to_owned()],
        usage: Some(reported),
        provider_session_id: None,
        transcript: None,
    }));

    let env = h.run(RunTaskRequest::new("Refactor the parser")).await;

    let id = env.session_id.clone();
    assert!(is_session_id(&id), "{id}");
    let artifacts = h.store.artifacts();
    assert_eq!(artifacts.len(), 1);
    let artifact_id = artifacts[0].artifact_id.clone();
    assert_eq!(
        env.to_value(),
        json!({
            "ok": true,
            "session_id": id,
            "status": "completed",
            "workflow": "run_task",
            "profile": "general",
            "summary": "Refactored the parser.",
            "result": {
                "output_text": text,
                "usage": {"input_tokens": 120, "output_tokens": 45, "cache_read_input_tokens": 10}
            },
            "artifacts": [{
                "artifact_id": artifact_id,
                "artifact_type": "output",
                "logical_name": "output.txt",
                "mime_type": "text/plain"
            }],
            "warnings": ["Provider note"],
            "errors": []
        })
    );
    let keys: Vec<String> = env
        .to_value()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            "ok",
            "session_id",
            "status",
            "workflow",
            "profile",
            "summary",
            "result",
            "artifacts",
            "warnings",
            "errors"
        ]
    );

    // `docs/reference/events.md#3-sequences`: the normative run sequence, response summary at T =
    // backend turns.
    let mut want = run_events("Refactor the parser", "general", 10);
    want.push(response_summary(
        3,
        "Refactored the parser.",
        Some("end_turn"),
    ));
    assert_eq!(h.events(&id), want);

    assert_eq!(
        artifacts[0],
        StoredArtifact {
            artifact_id,
            session_id: id.clone(),
            workflow: Workflow::RunTask,
            profile: Profile::General,
            artifact_type: "output".to_owned(),
            logical_name: "output.txt".to_owned(),
            mime_type: "text/plain".to_owned(),
            turn_index: 3,
            producer_tool: "run_task".to_owned(),
            body: text.as_bytes().to_vec(),
        }
    );

    let r = h.record(&id);
    assert_eq!(
        r,
        SessionRecord {
            session_id: id.clone(),
            workflow: Workflow::RunTask,
            profile: Profile::General,
            provider: "claude".to_owned(),
            provider_session_id: None,
            status: SessionStatus::Completed,
            working_directory: Some(CWD.to_owned()),
            request_count: 1,
            turn_count: 3,
            artifact_count: 1,
            summary_latest: Some("Refactored the parser.".to_owned()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            // The session's usage is its one execution's.
            usage: agent_core::Usage {
                input_tokens: 120,
                output_tokens: 45,
                cache_read_input_tokens: Some(10),
                ..Default::default()
            },
            ..r.clone()
        }
    );

    assert_eq!(
        describe(&h.backend.last_request()),
        json!({
            "session_id": id,
            "profile": "general",
            "system_prompt": "general",
            "task": "Refactor the parser",
            "max_turns": 10,
            "tools": [],
            "has_executor": false,
            "history": [],
            "session_summary": null,
            "is_continuation": false,
            "working_directory": CWD,
            "provider_session_id": null
        })
    );

    let messages = h.progress.messages();
    assert_eq!(
        messages,
        [
            format!("session {id} created"),
            format!("session {id} completed")
        ]
    );
    assert!(messages.iter().all(|m| m.chars().count() <= 200));
}

#[tokio::test]
async fn run_task_summary_follows_the_first_line_rules() {
    let long_line = "é".repeat(250);
    let cases: [(String, String); 5] = [
        ("  hello\nworld".to_owned(), "hello".to_owned()),
        (
            "\n\n  Leading blank lines\nsecond".to_owned(),
            "Leading blank lines".to_owned(),
        ),
        (" \n\t ".to_owned(), "(empty response)".to_owned()),
        (
            format!("{long_line}\nrest"),
            format!("{}...", "é".repeat(200)),
        ),
        ("a".repeat(200), "a".repeat(200)),
    ];
    let mut backend = FakeBackend::new();
    for (text, _) in &cases {
        backend = backend.then_ok(output(text, 1));
    }
    let h = Harness::new(backend);
    for (text, summary) in &cases {
        let env = h.run(RunTaskRequest::new("t")).await;
        assert!(env.ok);
        assert_eq!(&env.summary, summary, "{text:?}");
        assert_eq!(env.result.get("output_text"), Some(&json!(text)));
        // No `usage` key when the backend reports none.
        assert_eq!(env.result.len(), 1);
        assert_eq!(
            h.record(&env.session_id).summary_latest.as_ref(),
            Some(summary)
        );
        assert_eq!(
            h.events(&env.session_id).last(),
            Some(&response_summary(1, summary, None))
        );
    }
}

#[tokio::test]
async fn run_task_stores_output_artifact_from_fifty_code_points() {
    let cases = [
        ("a".repeat(49), false),
        ("a".repeat(50), true),
        ("é".repeat(49), false), // 98 bytes, 49 code points
        ("é".repeat(50), true),
        ("😀".repeat(49), false), // 196 bytes
        ("😀".repeat(50), true),
    ];
    let mut backend = FakeBackend::new();
    for (text, _) in &cases {
        backend = backend.then_ok(output(text, 1));
    }
    let h = Harness::new(backend);
    for (text, stored) in &cases {
        let env = h.run(RunTaskRequest::new("t")).await;
        let count = usize::from(*stored);
        assert_eq!(env.artifacts.len(), count, "{text}");
        assert_eq!(h.record(&env.session_id).artifact_count, count as i64);
        // No artifact_emission event is ever written (`docs/reference/events.md#2-event-types`).
        assert!(
            h.events(&env.session_id)
                .iter()
                .all(|(t, _, _)| t != "artifact_emission")
        );
    }
    assert_eq!(h.store.artifacts().len(), 3);
}

#[tokio::test]
async fn run_task_progress_messages_are_cut_to_200_code_points() {
    let h = Harness::new(FakeBackend::new().reporting("ü".repeat(300)));
    let env = h.run(RunTaskRequest::new("t")).await;
    assert_eq!(
        h.progress.messages(),
        [
            format!("session {} created", env.session_id),
            "ü".repeat(200),
            format!("session {} completed", env.session_id),
        ]
    );
}

#[tokio::test]
async fn run_task_working_directory_outside_allowlist_creates_nothing() {
    let h = Harness::new(FakeBackend::new());
    let req = RunTaskRequest::new("t")
        .with_profile(Profile::Verification)
        .with_working_directory("/tmp/elsewhere")
        // The directory is checked before any attachment.
        .with_attachments(vec!["/nope".to_owned()]);
    let env = h.run(req).await;
    let message = "working_directory '/tmp/elsewhere' is not in the server's allowed_dirs. \
                   Allowed: ['/work/project', '/srv/shared']";
    assert_eq!(
        env.to_value(),
        error_envelope("", "run_task", "verification", "policy_denied", message)
    );
    assert_eq!(h.store.session_count(), 0);
    assert!(h.store.calls().is_empty());
    assert_eq!(h.backend.call_count(), 0);
    assert!(h.progress.messages().is_empty());
}

#[tokio::test]
async fn run_task_resolves_relative_and_empty_working_directories() {
    let h = Harness::new(FakeBackend::new());
    let env = h
        .run(RunTaskRequest::new("t").with_working_directory("sub/dir"))
        .await;
    assert!(env.ok);
    assert_eq!(
        h.record(&env.session_id).working_directory.as_deref(),
        Some("/work/project/sub/dir")
    );
    assert_eq!(
        describe(&h.backend.last_request())["working_directory"],
        json!("/work/project/sub/dir")
    );

    // An empty working directory means the server CWD.
    let env = h
        .run(RunTaskRequest::new("t").with_working_directory(""))
        .await;
    assert!(env.ok);
    assert_eq!(
        h.record(&env.session_id).working_directory.as_deref(),
        Some(CWD)
    );
}

#[tokio::test]
async fn run_task_checks_attachments_in_order() {
    let h = Harness::new(FakeBackend::new());

    let env = h
        .run(RunTaskRequest::new("t").with_attachments(vec![
            README.to_owned(),
            "/work/project/missing.txt".to_owned(),
            OUTSIDE_FILE.to_owned(),
        ]))
        .await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "",
            "run_task",
            "general",
            "validation_error",
            "Attachment path does not exist: /work/project/missing.txt"
        )
    );

    let env = h
        .run(RunTaskRequest::new("t").with_attachments(vec![
            OUTSIDE_FILE.to_owned(),
            "/work/project/missing.txt".to_owned(),
        ]))
        .await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "",
            "run_task",
            "general",
            "policy_denied",
            "Attachment '/etc/passwd' is outside allowed directories"
        )
    );
    assert_eq!(h.store.session_count(), 0);
    assert_eq!(h.backend.call_count(), 0);

    // Valid attachments are checked only: never sent to the model.
    let env = h
        .run(
            RunTaskRequest::new("the task")
                .with_attachments(vec![README.to_owned(), NOTES.to_owned()]),
        )
        .await;
    assert!(env.ok);
    assert_eq!(h.backend.last_request().task, "the task");
}

#[tokio::test]
async fn run_task_clamps_max_turns_to_the_profile_cap() {
    let cases = [
        (Profile::General, 75, 50),
        (Profile::General, 50, 50),
        (Profile::General, 3, 3),
        (Profile::Verification, 30, 20),
        (Profile::Verification, 100, 20),
        (Profile::Verification, 7, 7),
    ];
    let h = Harness::new(FakeBackend::new());
    for (profile, requested, effective) in cases {
        let env = h
            .run(
                RunTaskRequest::new("t")
                    .with_profile(profile)
                    .with_max_turns(requested),
            )
            .await;
        assert_eq!(env.profile, profile.as_str());
        let req = h.backend.last_request();
        assert_eq!(req.max_turns, effective, "{profile} {requested}");
        assert_eq!(req.profile, profile);
        assert_eq!(prompt_name(req.system_prompt), profile.as_str());
        let mut want = run_events("t", profile.as_str(), effective);
        want.push(response_summary(1, "done", None));
        assert_eq!(h.events(&env.session_id), want);
    }
}

#[tokio::test]
async fn run_task_backend_failure_fails_session_and_writes_error_event() {
    let h = Harness::new(FakeBackend::new().then_err(
        ErrorCode::ClaudeCodeInvocationError,
        "Claude Code CLI exited with code 1",
    ));
    let env = h.run(RunTaskRequest::new("t").with_max_turns(4)).await;
    let id = env.session_id.clone();
    assert!(is_session_id(&id));
    assert_eq!(
        env.to_value(),
        error_envelope(
            &id,
            "run_task",
            "general",
            "claude_code_invocation_error",
            "Claude Code CLI exited with code 1"
        )
    );
    let mut want = run_events("t", "general", 4);
    want.push(ev(
        "error_event",
        0,
        json!({"error": {"code": "claude_code_invocation_error", "message": "Claude Code CLI exited with code 1"}}),
    ));
    assert_eq!(h.events(&id), want);
    let r = h.record(&id);
    assert_eq!(
        r,
        SessionRecord {
            status: SessionStatus::Failed,
            request_count: 1,
            turn_count: 0,
            artifact_count: 0,
            summary_latest: None,
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
            ..r.clone()
        }
    );
    assert!(h.store.artifacts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// agent_continue_session
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn continue_unknown_session_is_not_found_with_the_requested_id() {
    let h = Harness::new(FakeBackend::new());
    let env = h.cont("sess_0000000000000000", "hi").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "sess_0000000000000000",
            "continue_session",
            "general",
            "session_not_found",
            "Session not found: sess_0000000000000000"
        )
    );
    assert_eq!(h.store.calls(), [Method::GetSession]);
    assert_eq!(h.backend.call_count(), 0);
}

#[tokio::test]
async fn continue_passes_history_and_accumulates_counters() {
    let long = "Second answer, long enough to be stored as an output artifact.";
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("First answer\nwith detail", 2))
            .then_ok(BackendOutput {
                stop_reason: Some("end_turn".to_owned()),
                ..output(long, 3)
            })
            .then_ok(output("Third answer", 1)),
    );
    let first = h.run(RunTaskRequest::new("Do the thing")).await;
    let id = first.session_id.clone();

    let req = ContinueSessionRequest {
        max_turns: 75,
        ..ContinueSessionRequest::new(&id, "And now this")
    };
    let second = h.engine.continue_session(req, &h.ctx()).await;
    let artifact_id = h.store.artifacts()[0].artifact_id.clone();
    assert_eq!(
        second.to_value(),
        json!({
            "ok": true,
            "session_id": id,
            "status": "completed",
            "workflow": "continue_session",
            "profile": "general",
            "summary": long,
            "result": {"output_text": long},
            "artifacts": [{
                "artifact_id": artifact_id,
                "artifact_type": "output",
                "logical_name": "output.txt",
                "mime_type": "text/plain"
            }],
            "warnings": [],
            "errors": []
        })
    );
    assert_eq!(
        describe(&h.backend.last_request()),
        json!({
            "session_id": id,
            "profile": "general",
            "system_prompt": "general",
            "task": "And now this",
            "max_turns": 50,
            "tools": [],
            "has_executor": false,
            "history": [user("Do the thing"), assistant("First answer\nwith detail")],
            "session_summary": "First answer",
            "is_continuation": true,
            "working_directory": CWD,
            "provider_session_id": null
        })
    );
    let artifact = &h.store.artifacts()[0];
    assert_eq!(
        (
            artifact.producer_tool.as_str(),
            artifact.turn_index,
            artifact.workflow
        ),
        ("continue_session", 5, Workflow::ContinueSession)
    );

    let third = h.cont(&id, "Last one").await;
    assert!(third.ok);
    assert!(third.artifacts.is_empty());
    assert_eq!(
        h.backend.last_request().history,
        [
            ChatMessage {
                role: ChatRole::User,
                content: "Do the thing".to_owned(),
                blocks: None,
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: "First answer\nwith detail".to_owned(),
                blocks: None,
            },
            ChatMessage {
                role: ChatRole::User,
                content: "And now this".to_owned(),
                blocks: None,
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: long.to_owned(),
                blocks: None,
            },
        ]
    );

    let mut want = run_events("Do the thing", "general", 10);
    want.extend([
        response_summary(2, "First answer", None),
        ev("user_input", 2, json!({"message": "And now this"})),
        ev("provider_request_start", 2, json!({})),
        response_summary(5, long, Some("end_turn")),
        ev("user_input", 5, json!({"message": "Last one"})),
        ev("provider_request_start", 5, json!({})),
        response_summary(6, "Third answer", None),
    ]);
    assert_eq!(h.events(&id), want);

    let r = h.record(&id);
    assert_eq!(
        r,
        SessionRecord {
            workflow: Workflow::RunTask,
            status: SessionStatus::Completed,
            request_count: 3,
            turn_count: 6,
            artifact_count: 1,
            summary_latest: Some("Third answer".to_owned()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 3,
            fork: None,
            usage: Default::default(),
            ..r.clone()
        }
    );
    assert_eq!(
        h.progress.messages(),
        [
            format!("session {id} created"),
            format!("session {id} completed"),
            format!("session {id} continuing"),
            format!("session {id} completed"),
            format!("session {id} continuing"),
            format!("session {id} completed"),
        ]
    );
    // Each execution's full output is kept under its new turn count
    // (`docs/reference/sessions.md#8-conversation-history`).
    assert_eq!(
        h.store.outputs_of(&id),
        [
            (2, "First answer\nwith detail".to_owned()),
            (5, long.to_owned()),
            (6, "Third answer".to_owned()),
        ]
    );
}

#[tokio::test]
async fn continue_history_skips_empty_entries_and_drops_a_trailing_unanswered_user() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_00000000000000aa";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Failed,
    );
    r.turn_count = 3;
    r.request_count = 4;
    r.summary_latest = Some("second answer".to_owned());
    h.store.seed(r);
    h.store.seed_events(
        id,
        &[
            Event::user_input_task("first"),
            Event::system_prompt_resolved(Profile::General),
            Event::policy_decision_run(CWD, 10),
            Event::provider_request_start(0),
            Event::provider_response_summary(1, "first answer", None),
            Event::user_input_message(1, "retry me"),
            Event::provider_request_start(1),
            Event::error(
                1,
                &agent_core::ErrorObject::new(ErrorCode::ProviderRuntimeError, "boom"),
            ),
            Event::user_input_message(1, ""),
            Event::user_input_message(1, "second"),
            Event::provider_response_summary(2, "second answer", None),
            Event::provider_response_summary(3, "", None),
            Event::user_input_message(3, "dangling"),
        ],
    );
    h.store
        .seed_raw_event(id, "mediated_action_requested", 3, json!({"summary": "x"}));
    // A full output kept for turn 2 replaces that turn's summary; turn 1 (no output kept, as
    // in a database written by the original) falls back to its summary.
    h.store.seed_output(id, 2, "second answer\nin full");

    let env = h.cont(id, "third").await;
    assert!(env.ok);
    let req = h.backend.last_request();
    assert_eq!(
        json!(req.history),
        json!([
            user("first"),
            assistant("first answer"),
            user("retry me"),
            user("second"),
            assistant("second answer\nin full"),
        ])
    );
    assert_eq!(req.session_summary.as_deref(), Some("second answer"));
    // The pure function agrees with what the backend received.
    assert_eq!(
        conversation_history(
            &h.store.events_of(id)[..14],
            &[(2, "second answer\nin full".to_owned())],
            usize::MAX
        ),
        req.history
    );
    let r = h.record(id);
    assert_eq!((r.turn_count, r.request_count), (4, 5));
    assert_eq!(
        h.events(id)[14..],
        [
            ev("user_input", 3, json!({"message": "third"})),
            ev("provider_request_start", 3, json!({})),
            response_summary(4, "done", None),
        ]
    );
}

#[tokio::test]
async fn continue_running_session_under_live_foreign_lease_is_conflict() {
    let h = Harness::new(FakeBackend::new());
    for (id, expires) in [
        (
            "sess_00000000000000b1",
            Some(Timestamp::now().plus(Duration::from_secs(60))),
        ),
        // A lock without expiry counts as held.
        ("sess_00000000000000b2", None),
    ] {
        let mut r = seed_record(
            id,
            Workflow::VerifyTask,
            Profile::Verification,
            SessionStatus::Running,
        );
        r.locked_by = Some("exec_deadbeef".to_owned());
        r.lock_expires_at = expires;
        h.store.seed(r.clone());
        let env = h.cont(id, "more").await;
        assert_eq!(
            env.to_value(),
            error_envelope(
                id,
                "continue_session",
                "verification",
                "session_conflict",
                &format!("Session {id} is locked by exec_deadbeef")
            )
        );
        assert_eq!(h.record(id), r);
    }
    assert!(h.store.all_events().is_empty());
    assert_eq!(h.backend.call_count(), 0);
    assert!(!h.store.calls().contains(&Method::AcquireLock));
}

#[tokio::test]
async fn continue_running_session_without_live_lease_is_policy_denied() {
    let h = Harness::new(FakeBackend::new());
    for (id, locked_by, expires) in [
        ("sess_00000000000000c1", None, None),
        (
            "sess_00000000000000c2",
            Some("exec_0ld0ld00".to_owned()),
            Some(long_ago()),
        ),
    ] {
        let mut r = seed_record(
            id,
            Workflow::RunTask,
            Profile::General,
            SessionStatus::Running,
        );
        r.locked_by = locked_by;
        r.lock_expires_at = expires;
        h.store.seed(r.clone());
        let env = h.cont(id, "more").await;
        assert_eq!(
            env.to_value(),
            error_envelope(
                id,
                "continue_session",
                "general",
                "policy_denied",
                RUNNING_MESSAGE
            )
        );
        // Stored status (and lock) unchanged.
        assert_eq!(h.record(id), r);
    }
    assert!(h.store.all_events().is_empty());
    assert_eq!(h.backend.call_count(), 0);
}

#[tokio::test]
async fn continue_losing_the_lock_race_is_conflict_and_changes_nothing() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_00000000000000d1";
    seed(
        &h,
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    let expires = Timestamp::now().plus(Duration::from_secs(60));
    h.store.after_next_get(move |row| {
        row.locked_by = Some("cont_0ther000".to_owned());
        row.lock_expires_at = Some(expires);
    });
    let env = h.cont(id, "more").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            id,
            "continue_session",
            "general",
            "session_conflict",
            &format!("Session {id} is locked by cont_0ther000")
        )
    );
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Completed);
    assert_eq!(r.request_count, 0);
    assert_eq!(r.locked_by.as_deref(), Some("cont_0ther000"));
    assert_eq!(r.lock_expires_at, Some(expires));
    assert!(h.store.all_events().is_empty());
    assert_eq!(h.backend.call_count(), 0);
    assert_eq!(h.store.calls(), [Method::GetSession, Method::AcquireLock]);
}

#[tokio::test]
async fn continue_session_that_started_running_before_the_lock_is_denied_and_unlocked() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_00000000000000d2";
    seed(
        &h,
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    h.store
        .after_next_get(|row| row.status = SessionStatus::Running);
    let env = h.cont(id, "more").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            id,
            "continue_session",
            "general",
            "policy_denied",
            RUNNING_MESSAGE
        )
    );
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Running);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    assert_eq!(
        h.store.calls(),
        [Method::GetSession, Method::AcquireLock, Method::ReleaseLock]
    );
    assert_eq!(h.backend.call_count(), 0);
}

#[tokio::test]
async fn continue_takes_over_a_stale_lease() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_00000000000000e1";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    r.locked_by = Some("exec_5ta1e000".to_owned());
    r.lock_expires_at = Some(long_ago());
    r.turn_count = 2;
    r.request_count = 1;
    h.store.seed(r);
    let env = h.cont(id, "more").await;
    assert!(env.ok, "{:?}", env.errors);
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Completed);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    assert_eq!((r.request_count, r.turn_count), (2, 3));
}

#[tokio::test]
async fn continue_works_from_failed_interrupted_created_and_completed() {
    let h = Harness::new(FakeBackend::new());
    for (i, status) in [
        SessionStatus::Failed,
        SessionStatus::Interrupted,
        SessionStatus::Created,
        SessionStatus::Completed,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("sess_00000000000000f{i}");
        seed(&h, &id, Workflow::RunTask, Profile::General, status);
        let env = h.cont(&id, "go on").await;
        assert!(env.ok, "{status}: {:?}", env.errors);
        assert_eq!(env.session_id, id);
        let r = h.record(&id);
        assert_eq!(r.status, SessionStatus::Completed, "{status}");
        assert_eq!((r.request_count, r.turn_count), (1, 1));
        assert_eq!(r.locked_by, None);
    }
}

#[tokio::test]
async fn continue_verify_session_keeps_workflow_and_runs_with_verification_profile() {
    let h = Harness::new(FakeBackend::new().then_ok(output("VERDICT: pass", 2)));
    let id = "sess_0000000000000a01";
    let mut r = seed_record(
        id,
        Workflow::VerifyTask,
        Profile::Verification,
        SessionStatus::Completed,
    );
    r.turn_count = 1;
    r.summary_latest = Some("Verification fail_closed: 0 finding(s)".to_owned());
    h.store.seed(r);
    let req = ContinueSessionRequest {
        max_turns: 30,
        ..ContinueSessionRequest::new(id, "Look again")
    };
    let env = h.engine.continue_session(req, &h.ctx()).await;
    // Not verdict-parsed: a plain continuation result.
    assert_eq!(
        env.to_value(),
        json!({
            "ok": true,
            "session_id": id,
            "status": "completed",
            "workflow": "continue_session",
            "profile": "verification",
            "summary": "VERDICT: pass",
            "result": {"output_text": "VERDICT: pass"},
            "artifacts": [],
            "warnings": [],
            "errors": []
        })
    );
    let req = h.backend.last_request();
    assert_eq!(req.profile, Profile::Verification);
    assert_eq!(prompt_name(req.system_prompt), "verification");
    assert_eq!(req.max_turns, 20);
    assert_eq!(
        req.session_summary.as_deref(),
        Some("Verification fail_closed: 0 finding(s)")
    );

    let view = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: id.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(view.workflow, Workflow::VerifyTask);
    assert_eq!(view.profile, Profile::Verification);
    assert_eq!(view.turn_count, 3);
}

#[tokio::test]
async fn continue_backend_failure_writes_error_event_at_prior_turn_count() {
    let h = Harness::new(FakeBackend::new().then_err(
        ErrorCode::ProviderRuntimeError,
        "Claude API error: overloaded",
    ));
    let id = "sess_0000000000000a02";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    r.turn_count = 4;
    r.request_count = 2;
    r.summary_latest = Some("earlier".to_owned());
    h.store.seed(r);
    let env = h.cont(id, "more").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            id,
            "continue_session",
            "general",
            "provider_runtime_error",
            "Claude API error: overloaded"
        )
    );
    assert_eq!(
        h.events(id),
        [
            ev("user_input", 4, json!({"message": "more"})),
            ev("provider_request_start", 4, json!({})),
            ev(
                "error_event",
                4,
                json!({"error": {"code": "provider_runtime_error", "message": "Claude API error: overloaded"}})
            ),
        ]
    );
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Failed);
    assert_eq!((r.turn_count, r.request_count), (4, 3));
    assert_eq!(r.summary_latest.as_deref(), Some("earlier"));
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
}

/// Seeds a completed session whose log holds two answered exchanges (31 characters in all)
/// and no kept outputs.
fn seed_two_exchanges(h: &Harness, id: &str) {
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    r.turn_count = 2;
    h.store.seed(r);
    h.store.seed_events(
        id,
        &[
            Event::user_input_task("task one"),
            Event::provider_response_summary(1, "answer one", None),
            Event::user_input_message(1, "two"),
            Event::provider_response_summary(2, "answer two", None),
        ],
    );
}

#[tokio::test]
async fn continue_history_is_bounded_by_the_budget_oldest_first() {
    for (budget, want) in [
        (
            usize::MAX,
            json!([
                user("task one"),
                assistant("answer one"),
                user("two"),
                assistant("answer two")
            ]),
        ),
        (
            31,
            json!([
                user("task one"),
                assistant("answer one"),
                user("two"),
                assistant("answer two")
            ]),
        ),
        // Dropping "task one" alone would start with an assistant turn: that goes too.
        (30, json!([user("two"), assistant("answer two")])),
        (13, json!([user("two"), assistant("answer two")])),
        (12, json!([])),
    ] {
        let h = Harness::build(
            FakeBackend::new(),
            Vec::new(),
            EngineConfig {
                history_budget_chars: budget,
                ..EngineConfig::default()
            },
        );
        let id = "sess_0000000000000a10";
        seed_two_exchanges(&h, id);
        assert!(h.cont(id, "three").await.ok);
        assert_eq!(
            json!(h.backend.last_request().history),
            want,
            "budget {budget}"
        );
    }
}

/// `EngineConfig::history_budget_chars` is documented "in characters", but
/// `conversation_history` sums `content.len()` (UTF-8 bytes), so non-ASCII histories are cut
/// up to four times earlier than configured.
#[test]

fn history_budget_counts_characters_not_bytes() {
    let events: Vec<agent_core::StoredEvent> = [
        ("user_input", 0, json!({"task": "éééé"})),
        (
            "provider_response_summary",
            1,
            json!({"summary": "ééé", "stop_reason": null}),
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (t, turn, payload))| agent_core::StoredEvent {
        event_id: i as i64 + 1,
        session_id: "s".to_owned(),
        event_type: t.to_owned(),
        turn_index: turn,
        payload,
        created_at: String::new(),
    })
    .collect();
    // 7 characters (14 bytes) fit a budget of 7 characters.
    assert_eq!(conversation_history(&events, &[], 7).len(), 2);
}

/// Full outputs are keyed by the turn count after an execution. A backend that reports
/// `turn_count: 0` (the port allows it) leaves the turn count unchanged, so the new output
/// replaces the previous execution's under the same key, and the next continuation replays
/// the newer text for both assistant turns.
#[tokio::test]

async fn continuation_with_zero_backend_turns_keeps_earlier_outputs() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("first output", 1))
            .then_ok(output("second output", 0))
            .then_ok(output("third output", 1)),
    );
    let id = h.run(RunTaskRequest::new("task")).await.session_id;
    assert!(h.cont(&id, "again").await.ok);
    assert!(h.cont(&id, "once more").await.ok);
    assert_eq!(
        json!(h.backend.last_request().history),
        json!([
            user("task"),
            assistant("first output"),
            user("again"),
            assistant("second output"),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Tool routing
// ---------------------------------------------------------------------------------------------

fn federated() -> Arc<FakeTools> {
    Arc::new(
        FakeTools::new("fed")
            .visible_to(Profile::General, &["read_file", "list_dir", "broken"])
            .visible_to(Profile::Verification, &["read_file"]),
    )
}

#[tokio::test]
async fn run_task_routes_provider_tools_to_a_capable_backend() {
    let tools = federated();
    let backend = FakeBackend::new()
        .with_downstream_tools()
        .calling_tools(vec![
            ("read_file", json!({"path": "README.md"})),
            ("write_file", json!({"path": "x"})),
            ("broken", json!({})),
        ]);
    let h = Harness::with_tools(backend, vec![Arc::clone(&tools)]);
    let env = h.run(RunTaskRequest::new("use tools")).await;
    let id = env.session_id.clone();
    assert!(env.ok);

    let req = h.backend.last_request();
    assert_eq!(
        req.tools,
        [tool("read_file"), tool("list_dir"), tool("broken")]
    );
    assert!(req.tool_executor.is_some());

    let mut want = run_events("use tools", "general", 10);
    want.push(ev(
        "downstream_tool_catalog_resolved",
        0,
        json!({"visible_tools": ["read_file", "list_dir", "broken"]}),
    ));
    want.push(response_summary(1, "done", None));
    assert_eq!(h.events(&id), want);

    assert_eq!(
        h.backend.tool_results(),
        [
            ("read_file".to_owned(), Ok("fed:read_file".to_owned())),
            (
                "write_file".to_owned(),
                Err("Tool 'write_file' is not visible to profile 'general'".to_owned())
            ),
            ("broken".to_owned(), Err("broken tool".to_owned())),
        ]
    );
    let ctx = ToolCallContext {
        session_id: id,
        turn_index: 0,
        profile: Profile::General,
        working_directory: Some(CWD.into()),
    };
    assert_eq!(
        tools.calls(),
        [
            ToolCall {
                ctx: ctx.clone(),
                name: "read_file".to_owned(),
                input: json!({"path": "README.md"})
            },
            ToolCall {
                ctx,
                name: "broken".to_owned(),
                input: json!({})
            },
        ]
    );
}

#[tokio::test]
async fn continue_routes_tools_with_the_prior_turn_count() {
    let tools = federated();
    let backend = FakeBackend::new()
        .with_downstream_tools()
        .calling_tools(vec![("read_file", json!({"path": "a"}))])
        .then_ok(output("one", 2))
        .then_ok(output("two", 1));
    let h = Harness::with_tools(backend, vec![Arc::clone(&tools)]);
    let id = h
        .run(RunTaskRequest::new("t").with_working_directory("sub"))
        .await
        .session_id;
    let env = h.cont(&id, "again").await;
    assert!(env.ok);

    assert_eq!(
        h.events(&id)[6..],
        [
            ev("user_input", 2, json!({"message": "again"})),
            ev("provider_request_start", 2, json!({})),
            ev(
                "downstream_tool_catalog_resolved",
                2,
                json!({"visible_tools": ["read_file", "list_dir", "broken"]})
            ),
            response_summary(3, "two", None),
        ]
    );
    let calls = tools.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].ctx,
        ToolCallContext {
            session_id: id.clone(),
            turn_index: 2,
            profile: Profile::General,
            working_directory: Some("/work/project/sub".into()),
        }
    );
    assert_eq!(calls[0].ctx.turn_index, 0);
}

#[tokio::test]
async fn verification_profile_sees_and_calls_only_its_tools() {
    let tools = federated();
    let backend = FakeBackend::new()
        .with_downstream_tools()
        .calling_tools(vec![("list_dir", json!({})), ("read_file", json!({}))]);
    let h = Harness::with_tools(backend, vec![Arc::clone(&tools)]);
    let env = h
        .run(RunTaskRequest::new("t").with_profile(Profile::Verification))
        .await;
    assert!(env.ok);
    assert_eq!(h.backend.last_request().tools, [tool("read_file")]);
    assert_eq!(
        h.backend.tool_results(),
        [
            (
                "list_dir".to_owned(),
                Err("Tool 'list_dir' is not visible to profile 'verification'".to_owned())
            ),
            ("read_file".to_owned(), Ok("fed:read_file".to_owned())),
        ]
    );
    assert_eq!(tools.calls()[0].ctx.profile, Profile::Verification);
    assert_eq!(
        h.events(&env.session_id)[4],
        ev(
            "downstream_tool_catalog_resolved",
            0,
            json!({"visible_tools": ["read_file"]})
        )
    );
}

#[tokio::test]
async fn backend_without_downstream_tools_gets_no_tools_a_warning_and_a_not_forwarded_event() {
    let tools = federated();
    let backend = FakeBackend::new().calling_tools(vec![("read_file", json!({}))]);
    let h = Harness::with_tools(backend, vec![Arc::clone(&tools)]);
    let env = h.run(RunTaskRequest::new("t")).await;
    let req = h.backend.last_request();
    assert!(req.tools.is_empty());
    assert!(req.tool_executor.is_none());
    let mut want = run_events("t", "general", 10);
    want.push(ev(
        "downstream_tool_catalog_resolved",
        0,
        json!({
            "visible_tools": ["read_file", "list_dir", "broken"],
            "forwarded": false,
            "reason": "backend 'fake' does not support downstream tools"
        }),
    ));
    want.push(response_summary(1, "done", None));
    assert_eq!(h.events(&env.session_id), want);
    assert_eq!(
        env.warnings,
        [
            "Backend 'fake' does not support downstream federation tools. Visible tools will not be forwarded. Switch to the 'api' backend to use federation tools."
        ]
    );
    assert!(tools.calls().is_empty());
}

#[tokio::test]
async fn provider_with_nothing_visible_for_the_profile_gives_no_tools() {
    let tools = Arc::new(FakeTools::new("fed").visible_to(Profile::General, &["read_file"]));
    let h = Harness::with_tools(
        FakeBackend::new().with_downstream_tools(),
        vec![Arc::clone(&tools)],
    );
    let env = h
        .run(RunTaskRequest::new("t").with_profile(Profile::Verification))
        .await;
    let req = h.backend.last_request();
    assert!(req.tools.is_empty());
    assert!(req.tool_executor.is_none());
    let mut want = run_events("t", "verification", 10);
    want.push(response_summary(1, "done", None));
    assert_eq!(h.events(&env.session_id), want);
}

#[tokio::test]
async fn tools_of_several_providers_are_merged_and_dispatched_to_their_owner() {
    let first = Arc::new(FakeTools::new("one").visible_to(Profile::General, &["alpha"]));
    let second = Arc::new(FakeTools::new("two").visible_to(Profile::General, &["beta"]));
    let backend = FakeBackend::new()
        .with_downstream_tools()
        .calling_tools(vec![("beta", json!({"k": 1})), ("alpha", json!({}))]);
    let h = Harness::with_tools(backend, vec![Arc::clone(&first), Arc::clone(&second)]);
    let env = h.run(RunTaskRequest::new("t")).await;
    assert_eq!(
        h.backend.last_request().tools,
        [tool("alpha"), tool("beta")]
    );
    assert_eq!(
        h.backend.tool_results(),
        [
            ("beta".to_owned(), Ok("two:beta".to_owned())),
            ("alpha".to_owned(), Ok("one:alpha".to_owned())),
        ]
    );
    assert_eq!(first.calls().len(), 1);
    assert_eq!(second.calls()[0].input, json!({"k": 1}));
    assert_eq!(
        h.events(&env.session_id)[4].2,
        json!({"visible_tools": ["alpha", "beta"]})
    );
}

// ---------------------------------------------------------------------------------------------
// agent_verify_task
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn verify_missing_evidence_with_fail_closed_returns_the_early_envelope() {
    let h = Harness::new(FakeBackend::new());
    let env = h
        .verify(VerifyTaskRequest::new("claim").with_evidence(vec![
            README.to_owned(),
            "missing.log".to_owned(),
            "/gone/dir".to_owned(),
        ]))
        .await;
    assert_eq!(
        verify_value(&env),
        json!({
            "ok": false,
            "session_id": "",
            "status": "failed",
            "workflow": "verify_task",
            "profile": "verification",
            "summary": "Verification fail_closed",
            "result": {
                "verdict": "fail_closed",
                "findings": [],
                "contradictions": [],
                "missing_evidence": [],
                "restrictions": []
            },
            "artifacts": [],
            "warnings": [],
            "errors": [
                {"code": "missing_evidence", "message": "Evidence path not found: missing.log", "details": null},
                {"code": "missing_evidence", "message": "Evidence path not found: /gone/dir", "details": null}
            ]
        })
    );
    assert_eq!(h.backend.call_count(), 0);
    assert_eq!(h.store.session_count(), 0);
    assert!(h.store.calls().is_empty());
}

#[tokio::test]
async fn verify_missing_evidence_without_fail_closed_warns_and_runs() {
    let h = Harness::new(FakeBackend::new().then_ok(BackendOutput {
        warnings: vec!["backend note".to_owned()],
        ..output("VERDICT: pass", 1)
    }));
    let evidence = vec![
        "missing.log".to_owned(),
        README.to_owned(),
        "/gone".to_owned(),
    ];
    let env = h
        .verify(
            VerifyTaskRequest::new("claim")
                .with_evidence(evidence.clone())
                .with_fail_closed(false),
        )
        .await;
    assert!(env.ok);
    assert_eq!(
        env.warnings,
        [
            "Evidence path not found: missing.log",
            "Evidence path not found: /gone",
            "backend note"
        ]
    );
    // The policy decision records the evidence as given, missing paths included.
    assert_eq!(
        h.events(&env.session_id)[1],
        ev(
            "policy_decision",
            0,
            json!({"fail_closed": false, "evidence_paths": evidence})
        )
    );
    assert!(h.backend.last_request().task.contains("  - missing.log\n"));
}

#[tokio::test]
async fn verify_sends_the_verification_prompt_with_five_turns_and_no_tools() {
    let h = Harness::with_tools(
        FakeBackend::new().with_downstream_tools(),
        vec![federated()],
    );
    let env = h
        .verify(
            VerifyTaskRequest::new("The parser handles CRLF input")
                .with_scope("src/parser")
                .with_evidence(vec![README.to_owned(), RELATIVE_EVIDENCE.to_owned()]),
        )
        .await;
    assert!(env.ok);
    let prompt = "Task to verify: The parser handles CRLF input\n\
                  Scope: src/parser\n\
                  Evidence paths:\n  - /work/project/README.md\n  - docs/spec.md\n\
                  \n\
                  Please evaluate the evidence and provide a structured verification result.";
    assert_eq!(
        describe(&h.backend.last_request()),
        json!({
            "session_id": env.session_id,
            "profile": "verification",
            "system_prompt": "verification",
            "task": prompt,
            "max_turns": 5,
            "tools": [],
            "has_executor": false,
            "history": [],
            "session_summary": null,
            "is_continuation": false,
            "working_directory": CWD,
            "provider_session_id": null
        })
    );
    assert!(
        h.events(&env.session_id)
            .iter()
            .all(|(t, _, _)| t != "downstream_tool_catalog_resolved")
    );

    // Without scope or evidence, only the task and the closing line.
    let env = h
        .verify(VerifyTaskRequest::new("claim").with_scope(""))
        .await;
    assert!(env.ok);
    assert_eq!(
        h.backend.last_request().task,
        "Task to verify: claim\n\nPlease evaluate the evidence and provide a structured verification result."
    );
}

#[tokio::test]
async fn verify_success_records_verdict_events_and_report_artifact() {
    let text =
        "VERDICT: pass_with_restrictions\nFINDINGS:\n- a\n- b\nRESTRICTIONS:\n- linux only\n";
    let h = Harness::new(FakeBackend::new().then_ok(BackendOutput {
        usage: Some(usage(300, 40)),
        ..output(text, 2)
    }));
    let env = h
        .verify(
            VerifyTaskRequest::new("claim")
                .with_scope("crate")
                .with_evidence(vec![README.to_owned()]),
        )
        .await;
    let id = env.session_id.clone();
    assert!(is_session_id(&id));
    let artifacts = h.store.artifacts();
    assert_eq!(artifacts.len(), 1);
    let summary = "Verification pass_with_restrictions: 2 finding(s)";
    assert_eq!(
        verify_value(&env),
        json!({
            "ok": true,
            "session_id": id,
            "status": "completed",
            "workflow": "verify_task",
            "profile": "verification",
            "summary": summary,
            "result": {
                "verdict": "pass_with_restrictions",
                "findings": ["a", "b"],
                "contradictions": [],
                "missing_evidence": [],
                "restrictions": ["linux only"],
                "usage": {"input_tokens": 300, "output_tokens": 40}
            },
            "artifacts": [{
                "artifact_id": artifacts[0].artifact_id,
                "artifact_type": "verification-report",
                "logical_name": "verification-report.md",
                "mime_type": "text/markdown"
            }],
            "warnings": [],
            "errors": []
        })
    );
    assert_eq!(
        h.events(&id),
        [
            ev("user_input", 0, json!({"task": "claim", "scope": "crate"})),
            ev(
                "policy_decision",
                0,
                json!({"fail_closed": true, "evidence_paths": [README]})
            ),
            ev("provider_request_start", 0, json!({})),
            ev(
                "provider_response_summary",
                2,
                json!({"verdict": "pass_with_restrictions", "summary": summary})
            ),
            ev(
                "workflow_normalization",
                2,
                json!({"verdict": "pass_with_restrictions"})
            ),
        ]
    );
    assert_eq!(
        artifacts[0],
        StoredArtifact {
            artifact_id: artifacts[0].artifact_id.clone(),
            session_id: id.clone(),
            workflow: Workflow::VerifyTask,
            profile: Profile::Verification,
            artifact_type: "verification-report".to_owned(),
            logical_name: "verification-report.md".to_owned(),
            mime_type: "text/markdown".to_owned(),
            turn_index: 2,
            producer_tool: "verify_task".to_owned(),
            body: text.as_bytes().to_vec(),
        }
    );
    let r = h.record(&id);
    assert_eq!(
        r,
        SessionRecord {
            session_id: id.clone(),
            workflow: Workflow::VerifyTask,
            profile: Profile::Verification,
            status: SessionStatus::Completed,
            working_directory: Some(CWD.to_owned()),
            request_count: 1,
            turn_count: 2,
            artifact_count: 1,
            summary_latest: Some(summary.to_owned()),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 1,
            fork: None,
            usage: agent_core::Usage {
                input_tokens: 300,
                output_tokens: 40,
                ..Default::default()
            },
            ..r.clone()
        }
    );
    assert_eq!(
        h.progress.messages(),
        [
            format!("verification session {id} created"),
            "verification finished: pass_with_restrictions".to_owned(),
        ]
    );
}

#[tokio::test]
async fn verify_unrecognised_verdict_follows_the_fail_closed_flag() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("I am not sure.", 1))
            .then_ok(output("I am not sure.", 1)),
    );
    let closed = h.verify(VerifyTaskRequest::new("claim")).await;
    assert!(closed.ok);
    assert_eq!(closed.summary, "Verification fail_closed: 0 finding(s)");
    assert_eq!(closed.result["verdict"], json!("fail_closed"));
    let open = h
        .verify(VerifyTaskRequest::new("claim").with_fail_closed(false))
        .await;
    assert!(open.ok);
    assert_eq!(
        open.summary,
        "Verification insufficient_evidence: 0 finding(s)"
    );
    assert_eq!(
        h.events(&open.session_id)[4],
        ev(
            "workflow_normalization",
            1,
            json!({"verdict": "insufficient_evidence"})
        )
    );
}

#[tokio::test]
async fn verify_empty_output_stores_no_report() {
    let h = Harness::new(FakeBackend::new().then_ok(output("", 1)));
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    assert!(env.artifacts.is_empty());
    assert!(h.store.artifacts().is_empty());
    assert_eq!(h.record(&env.session_id).artifact_count, 0);
}

#[tokio::test]
async fn verify_existing_evidence_outside_allowlist_is_denied_without_session() {
    let h = Harness::new(FakeBackend::new());
    let env = h
        .verify(
            VerifyTaskRequest::new("claim")
                .with_evidence(vec![README.to_owned(), OUTSIDE_FILE.to_owned()]),
        )
        .await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "",
            "verify_task",
            "verification",
            "policy_denied",
            "Attachment '/etc/passwd' is outside allowed directories"
        )
    );
    assert_eq!(h.store.session_count(), 0);
    assert_eq!(h.backend.call_count(), 0);

    // Missing paths are not policy-checked (they only warn when not fail-closed).
    let env = h
        .verify(
            VerifyTaskRequest::new("claim")
                .with_evidence(vec!["/etc/shadow-missing".to_owned()])
                .with_fail_closed(false),
        )
        .await;
    assert!(env.ok);
    assert_eq!(
        env.warnings,
        ["Evidence path not found: /etc/shadow-missing"]
    );
}

#[tokio::test]
async fn verify_provider_failure_is_an_unavailable_result_keeping_its_code() {
    let h = Harness::new(
        FakeBackend::new().then_err(ErrorCode::ProviderRuntimeError, "Claude API error: 500"),
    );
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    let id = env.session_id.clone();
    assert!(is_session_id(&id));
    let v = env.to_value();
    assert_eq!(
        v["summary"],
        json!("Verification unavailable: The Messages API request failed during verification.")
    );
    assert_eq!(v["result"]["outcome_kind"], json!("unavailable"));
    assert_eq!(v["result"]["failure_code"], json!("api_request_failed"));
    assert_eq!(
        v["errors"],
        json!([{"code": "provider_runtime_error", "message": "Claude API error: 500", "details": null}])
    );
    assert_eq!(
        h.events(&id).last(),
        Some(&ev(
            "error_event",
            0,
            json!({"error": "Claude API error: 500"})
        ))
    );
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Failed);
    assert_eq!(r.locked_by, None);
}

#[tokio::test]
async fn verify_unclassified_failure_is_a_generic_error_envelope() {
    let h = Harness::new(FakeBackend::new().then_err(ErrorCode::InternalError, "boom"));
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    let id = env.session_id.clone();
    assert_eq!(
        env.to_value(),
        error_envelope(&id, "verify_task", "verification", "internal_error", "boom")
    );
    assert_eq!(
        h.events(&id).last(),
        Some(&ev(
            "error_event",
            0,
            json!({"error": {"code": "internal_error", "message": "boom"}})
        ))
    );
    assert_eq!(h.record(&id).status, SessionStatus::Failed);
}

// ---------------------------------------------------------------------------------------------
// Store failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn begin_session_failure_is_provider_runtime_error_without_session_id() {
    let h = Harness::new(FakeBackend::new());
    h.store.fail(Method::BeginSession);
    let message = MemStore::failure_message(Method::BeginSession);

    let env = h
        .run(RunTaskRequest::new("t").with_profile(Profile::Verification))
        .await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "",
            "run_task",
            "verification",
            "provider_runtime_error",
            &message
        )
    );
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "",
            "verify_task",
            "verification",
            "provider_runtime_error",
            &message
        )
    );
    assert_eq!(h.backend.call_count(), 0);
    assert_eq!(h.store.session_count(), 0);
    assert!(h.progress.messages().is_empty());
}

/// The message of a final write that failed every attempt and fell back to `interrupted`.
fn interrupted_message(session_id: &str) -> String {
    format!(
        "Session {session_id}: the end of the execution could not be recorded after 3 attempts: {}; the session is now interrupted (it can be continued)",
        MemStore::failure_message(Method::FinishExecution)
    )
}

#[tokio::test]
async fn finish_execution_failure_does_not_panic() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("fine", 1))
            .then_err(ErrorCode::ProviderRuntimeError, "backend broke")
            .then_ok(output("VERDICT: pass", 1)),
    );
    h.store.fail(Method::FinishExecution);

    // Success path: the store failure, and what became of the session, is the envelope.
    let env = h.run(RunTaskRequest::new("t")).await;
    assert!(is_session_id(&env.session_id));
    let message = interrupted_message(&env.session_id);
    assert_eq!(
        env.to_value(),
        error_envelope(
            &env.session_id,
            "run_task",
            "general",
            "provider_runtime_error",
            &message
        )
    );
    // Failure path: the backend's error still reaches the client; a warning says the rest.
    let env = h.run(RunTaskRequest::new("t")).await;
    let mut expected = error_envelope(
        &env.session_id,
        "run_task",
        "general",
        "provider_runtime_error",
        "backend broke",
    );
    expected["warnings"] = json!([interrupted_message(&env.session_id)]);
    assert_eq!(env.to_value(), expected);
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            &env.session_id,
            "verify_task",
            "verification",
            "provider_runtime_error",
            &interrupted_message(&env.session_id)
        )
    );
}

/// Issue #12 item 7: a final write that fails is retried (twice, after 50 and 250 ms); a
/// transient failure therefore costs the client nothing.
#[tokio::test]
async fn a_final_write_that_fails_twice_is_retried_and_the_run_completes() {
    let h = Harness::new(FakeBackend::new().then_ok(output("fine", 1)));
    h.store.fail_times(Method::FinishExecution, 2);
    let started = Instant::now();
    let env = h.run(RunTaskRequest::new("t")).await;
    assert!(env.ok, "{:?}", env.to_value());
    assert_eq!(env.result["output_text"], json!("fine"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the retries wait 50 ms and 250 ms"
    );
    assert_eq!(h.store.call_count(Method::FinishExecution), 3);
    assert_eq!(h.store.call_count(Method::InterruptExecution), 0);
    let r = h.record(&env.session_id);
    assert_eq!(r.status, SessionStatus::Completed);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    assert_eq!(
        h.store
            .events_of(&env.session_id)
            .iter()
            .filter(|e| e.event_type == "provider_response_summary")
            .count(),
        1
    );
}

/// When every attempt fails, the session is not left `running`: it becomes `interrupted`,
/// unlocked, with a `session_interrupted` event saying why, and the client is told so.
#[tokio::test]
async fn a_final_write_that_keeps_failing_leaves_the_session_interrupted() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("fine", 1))
            .then_ok(output("again", 1)),
    );
    h.store.fail_times(Method::FinishExecution, 3);
    let env = h.run(RunTaskRequest::new("t")).await;
    let id = env.session_id.clone();
    assert_eq!(
        env.to_value(),
        error_envelope(
            &id,
            "run_task",
            "general",
            "provider_runtime_error",
            &interrupted_message(&id)
        )
    );
    assert_eq!(h.store.call_count(Method::FinishExecution), 3);
    assert_eq!(h.store.call_count(Method::InterruptExecution), 1);
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Interrupted);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    let last = h.events(&id).pop().unwrap();
    assert_eq!(
        last,
        ev(
            "session_interrupted",
            0,
            json!({"reason": format!(
                "the end of the execution could not be recorded after 3 attempts: {}",
                MemStore::failure_message(Method::FinishExecution)
            )})
        )
    );
    // An interrupted session can be continued.
    let again = h.cont(&id, "more").await;
    assert!(again.ok, "{:?}", again.to_value());
}

/// When marking it interrupted fails too, the lock is released: a `running` row without a
/// lock has no live lease, and the lease sweeper turns it `interrupted`.
#[tokio::test]
async fn when_the_fallback_fails_too_the_sweeper_interrupts_the_session() {
    let h = Harness::new(FakeBackend::new().then_ok(output("fine", 1)));
    h.store.fail(Method::FinishExecution);
    h.store.fail(Method::InterruptExecution);
    let env = h.run(RunTaskRequest::new("t")).await;
    let id = env.session_id.clone();
    assert_eq!(env.errors[0].code, ErrorCode::ProviderRuntimeError);
    assert!(
        env.errors[0]
            .message
            .ends_with("the lease sweeper marks it interrupted"),
        "{}",
        env.errors[0].message
    );
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Running);
    assert_eq!(r.locked_by, None);
    assert_eq!(h.store.sweep_expired_leases().await.unwrap(), 1);
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Interrupted);
    assert_eq!(
        h.events(&id).pop().unwrap(),
        ev(
            "lease_expired",
            0,
            json!({"locked_by": null, "lock_expires_at": null})
        )
    );
}

/// The sweeper leaves live leases alone and interrupts expired ones.
#[tokio::test]
async fn the_sweeper_takes_only_expired_leases() {
    let h = Harness::new(FakeBackend::new());
    let live = "sess_0000000000000c01";
    let expired = "sess_0000000000000c02";
    let held_forever = "sess_0000000000000c03";
    for (id, expires) in [
        (live, Some(Timestamp::now().plus(Duration::from_secs(60)))),
        (expired, Some(Timestamp::now())),
        (held_forever, None),
    ] {
        let mut r = seed_record(
            id,
            Workflow::RunTask,
            Profile::General,
            SessionStatus::Running,
        );
        r.locked_by = Some("run_task:owner".into());
        r.lock_expires_at = expires;
        r.turn_count = 2;
        h.store.seed(r);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(h.store.sweep_expired_leases().await.unwrap(), 1);
    assert_eq!(h.record(live).status, SessionStatus::Running);
    assert_eq!(h.record(held_forever).status, SessionStatus::Running);
    let r = h.record(expired);
    assert_eq!(r.status, SessionStatus::Interrupted);
    let event = h.events(expired).pop().unwrap();
    assert_eq!((event.0.as_str(), event.1), ("lease_expired", 2));
    assert_eq!(event.2["locked_by"], json!("run_task:owner"));
}

/// The sweeper runs every half TTL while the engine serves; a zero TTL disables it.
#[tokio::test]
async fn the_engine_sweeps_every_half_ttl() {
    let config = EngineConfig {
        lock_ttl: Duration::from_secs(10),
        ..EngineConfig::default()
    };
    let h = Harness::build(FakeBackend::new(), Vec::new(), config);
    assert_eq!(h.engine.lease_sweep_period(), Some(Duration::from_secs(5)));

    let fast = Harness::build(
        FakeBackend::new(),
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::from_millis(40),
            ..EngineConfig::default()
        },
    );
    let id = "sess_0000000000000c04";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Running,
    );
    r.locked_by = Some("run_task:gone".into());
    r.lock_expires_at = Some(Timestamp::now());
    fast.store.seed(r);
    let swept = async {
        while fast.record(id).status == SessionStatus::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        () = swept => {}
        () = fast.engine.sweep_expired_leases() => unreachable!("the sweeper runs forever"),
        () = tokio::time::sleep(Duration::from_secs(10)) => panic!("never swept"),
    }
    assert_eq!(fast.record(id).status, SessionStatus::Interrupted);

    let off = Harness::build(
        FakeBackend::new(),
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::ZERO,
            ..EngineConfig::default()
        },
    );
    assert_eq!(off.engine.lease_sweep_period(), None);
    off.engine.sweep_expired_leases().await;
    assert_eq!(off.store.call_count(Method::SweepExpiredLeases), 0);
}

/// A mediator that takes its time, then checks whether the session was swept meanwhile.
struct SlowMediator {
    store: Arc<MemStore>,
    delay: Duration,
}

#[async_trait::async_trait]
impl agent_core::OutputMediator for SlowMediator {
    async fn mediate(
        &self,
        request: agent_core::MediationRequest<'_>,
        _ctx: &ExecContext,
    ) -> Result<Vec<String>, agent_core::StoreError> {
        let deadline = Instant::now() + self.delay;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.store.sweep_expired_leases().await?;
        }
        let status = self.store.record(request.session_id).unwrap().status;
        Ok(vec![format!("status during mediation: {status}")])
    }

    fn prompt_section(&self, _: Profile) -> Option<String> {
        None
    }
}

/// Mediation runs tools after the backend returned: the lease is renewed meanwhile, so the
/// lease sweeper never takes a session whose execution is alive.
#[tokio::test]
async fn the_lease_is_renewed_during_mediation() {
    let backend = FakeBackend::new()
        .with_capabilities(agent_core::Capabilities {
            supports_execution_mediation: true,
            ..agent_core::Capabilities::default()
        })
        .then_ok(output("fine", 1));
    let mut h = Harness::build(
        backend,
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::from_millis(60),
            ..EngineConfig::default()
        },
    );
    let store = Arc::clone(&h.store);
    h.engine = h.engine.with_mediator(Arc::new(SlowMediator {
        store,
        delay: Duration::from_millis(300),
    }));
    let env = h.run(RunTaskRequest::new("t")).await;
    assert!(env.ok, "{:?}", env.to_value());
    assert_eq!(env.warnings, ["status during mediation: running"]);
    assert_eq!(h.record(&env.session_id).status, SessionStatus::Completed);
    assert!(
        h.store.call_count(Method::SweepExpiredLeases) > 5,
        "the sweeper ran during mediation"
    );
}

/// A run held at the backend (it never answers) under a short lease, whose lock `tamper`
/// changes once the backend was entered: the run must stop by itself (issue #14: a lost lease
/// stops the run at once), within 10 s.
async fn run_losing_its_lease(
    tamper: impl FnOnce(&MemStore, &str),
    failing_renewals: bool,
) -> (Harness, Envelope) {
    let backend = FakeBackend::new()
        .gated(Arc::new(Notify::new()))
        .then_ok(output("never", 1));
    let entered = backend.entered();
    let h = Harness::build(
        backend,
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::from_millis(90),
            ..EngineConfig::default()
        },
    );
    let run = h.run(RunTaskRequest::new("slow"));
    let steal = async {
        entered.notified().await;
        let id = h.store.list_sessions(1, None).await.unwrap()[0]
            .session_id
            .clone();
        if failing_renewals {
            h.store.fail(Method::RenewLock);
        }
        tamper(&h.store, &id);
        std::future::pending::<()>().await;
    };
    let env = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            env = run => env,
            () = steal => unreachable!(),
        }
    })
    .await
    .expect("the run must stop when its lease is lost");
    (h, env)
}

/// Lease loss: the lock is taken by another execution under the run (the row edited): the run
/// stops, says why, and leaves the other holder's session as it is.
#[tokio::test]
async fn a_run_whose_lock_is_taken_stops_and_leaves_the_new_holder_alone() {
    let (h, env) = run_losing_its_lease(
        |store, id| {
            let mut r = store.record(id).unwrap();
            r.locked_by = Some("exec_thief000".into());
            r.lock_expires_at = Some(Timestamp::now().plus(Duration::from_secs(60)));
            store.seed(r);
        },
        false,
    )
    .await;
    let id = env.session_id.clone();
    assert!(!env.ok);
    assert_eq!(env.errors[0].code, ErrorCode::ProviderRuntimeError);
    assert!(
        env.errors[0].message.contains("lost its lease")
            && env.errors[0]
                .message
                .contains("another execution holds its lock"),
        "{}",
        env.errors[0].message
    );
    assert_eq!(
        env.warnings,
        [format!(
            "Session {id} is held by another execution or no longer running: its status is unchanged"
        )]
    );
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Running);
    assert_eq!(r.locked_by.as_deref(), Some("exec_thief000"));
    assert_eq!(
        h.store.call_count(Method::FinishExecution),
        0,
        "no result written"
    );
}

/// Lease loss: the lock is cleared under the run: the run stops and the session ends
/// `interrupted` with the reason "lease lost".
#[tokio::test]
async fn a_run_whose_lock_is_cleared_stops_and_records_lease_lost() {
    let (h, env) = run_losing_its_lease(
        |store, id| {
            let mut r = store.record(id).unwrap();
            r.locked_by = None;
            r.lock_expires_at = None;
            store.seed(r);
        },
        false,
    )
    .await;
    let id = env.session_id.clone();
    assert!(
        env.errors[0].message.contains("lost its lease"),
        "{:?}",
        env.to_value()
    );
    assert!(env.warnings.is_empty(), "{:?}", env.warnings);
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Interrupted);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    assert_eq!(
        h.events(&id).pop().unwrap(),
        ev("session_interrupted", 0, json!({"reason": "lease lost"}))
    );
}

/// Lease loss: renewals keep failing until the lease could expire before the next one: the
/// run stops rather than go on unlocked, and the session ends `interrupted`.
#[tokio::test]
async fn a_run_whose_lease_cannot_be_renewed_stops() {
    let (h, env) = run_losing_its_lease(|_, _| {}, true).await;
    let id = env.session_id.clone();
    assert!(
        env.errors[0].message.contains("could not be renewed"),
        "{}",
        env.errors[0].message
    );
    assert!(
        h.store.call_count(Method::RenewLock) >= 2,
        "one failure is retried"
    );
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Interrupted);
    assert_eq!(
        h.events(&id).pop().unwrap(),
        ev("session_interrupted", 0, json!({"reason": "lease lost"}))
    );
}

/// `docs/reference/tools.md#4-agent_run_task` / `docs/reference/sessions.md#4-locking`: "The lock
/// is always released." `abandon` falls back to `release_lock` when `finish_execution` fails, but
/// `conclude` and `fail` do not.
#[tokio::test]

async fn lock_is_released_even_when_finish_execution_fails() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("fine", 1))
            .then_err(ErrorCode::ProviderRuntimeError, "backend broke")
            .then_ok(output("VERDICT: pass", 1)),
    );
    h.store.fail(Method::FinishExecution);
    let ok_run = h.run(RunTaskRequest::new("t")).await;
    let failed_run = h.run(RunTaskRequest::new("t")).await;
    let verify = h.verify(VerifyTaskRequest::new("claim")).await;
    for env in [ok_run, failed_run, verify] {
        let r = h.record(&env.session_id);
        assert_eq!(
            (r.locked_by, r.lock_expires_at),
            (None, None),
            "{}",
            env.workflow
        );
    }
}

#[tokio::test]
async fn continue_store_failures_release_the_lock() {
    for method in [Method::Events, Method::Outputs, Method::BeginExecution] {
        let h = Harness::new(FakeBackend::new());
        let id = "sess_0000000000000b01";
        seed(
            &h,
            id,
            Workflow::RunTask,
            Profile::Verification,
            SessionStatus::Completed,
        );
        h.store.fail(method);
        let env = h.cont(id, "more").await;
        assert_eq!(
            env.to_value(),
            error_envelope(
                id,
                "continue_session",
                "verification",
                "provider_runtime_error",
                &MemStore::failure_message(method)
            ),
            "{method:?}"
        );
        let r = h.record(id);
        assert_eq!(r.status, SessionStatus::Failed, "{method:?}");
        assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
        assert_eq!(r.request_count, 0);
        assert!(h.store.all_events().is_empty());
        assert_eq!(h.backend.call_count(), 0);
    }

    // When the failure cannot be recorded either, the lock is still released.
    let h = Harness::new(FakeBackend::new());
    let id = "sess_0000000000000b02";
    seed(
        &h,
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    h.store.fail(Method::Events);
    h.store.fail(Method::FinishExecution);
    let env = h.cont(id, "more").await;
    assert_eq!(env.errors[0].code, ErrorCode::ProviderRuntimeError);
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Completed);
    assert_eq!(r.locked_by, None);
    assert_eq!(h.store.calls().last(), Some(&Method::ReleaseLock));
}

#[tokio::test]
async fn continue_get_session_failure_is_provider_runtime_error() {
    let h = Harness::new(FakeBackend::new());
    h.store.fail(Method::GetSession);
    let env = h.cont("sess_0000000000000b03", "more").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "sess_0000000000000b03",
            "continue_session",
            "general",
            "provider_runtime_error",
            &MemStore::failure_message(Method::GetSession)
        )
    );
}

#[tokio::test]
async fn artifact_store_failure_is_swallowed() {
    let long = "x".repeat(80);
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output(&long, 1))
            .then_ok(output("VERDICT: pass", 1)),
    );
    h.store.fail(Method::StoreArtifact);
    let env = h.run(RunTaskRequest::new("t")).await;
    assert!(env.ok);
    assert!(env.artifacts.is_empty());
    assert!(env.warnings.is_empty());
    let r = h.record(&env.session_id);
    assert_eq!((r.status, r.artifact_count), (SessionStatus::Completed, 0));
    let env = h.verify(VerifyTaskRequest::new("claim")).await;
    assert!(env.ok);
    assert!(env.artifacts.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Cancellation and concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cancelling_the_context_ends_the_run_promptly_and_cancels_the_session() {
    let backend = FakeBackend::new().with_delay(Duration::from_secs(30));
    let entered = backend.entered();
    let h = Harness::new(backend);
    let token = CancellationToken::new();
    let ctx = ExecContext::new(
        token.clone(),
        Arc::clone(&h.progress) as Arc<dyn agent_core::ProgressSink>,
    );
    let started = Instant::now();
    let (env, ()) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(
            h.engine.run_task(RunTaskRequest::new("slow"), &ctx),
            async {
                entered.notified().await;
                token.cancel();
            }
        )
    })
    .await
    .expect("the run ends once cancelled");
    assert!(started.elapsed() < Duration::from_secs(2));
    let id = env.session_id.clone();
    assert_eq!(
        env.to_value(),
        error_envelope(
            &id,
            "run_task",
            "general",
            "session_cancelled",
            &format!(
                "Session {id} was cancelled: the client cancelled the request (notifications/cancelled)"
            )
        )
    );
    let r = h.record(&id);
    assert_eq!(r.status, SessionStatus::Cancelled);
    assert_eq!((r.locked_by, r.lock_expires_at), (None, None));
    assert_eq!(
        h.events(&id).last(),
        Some(&ev(
            "session_cancelled",
            0,
            json!({"reason": "the client cancelled the request (notifications/cancelled)"})
        ))
    );
}

#[tokio::test]
async fn cancelling_a_continuation_cancels_it_and_releases_the_lock() {
    let h = Harness::new(FakeBackend::new().with_delay(Duration::from_secs(30)));
    let id = "sess_0000000000000c01";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    r.turn_count = 2;
    h.store.seed(r);
    let token = CancellationToken::new();
    token.cancel();
    let ctx = ExecContext::new(token, Arc::new(agent_core::NoProgress));
    let env = tokio::time::timeout(
        Duration::from_secs(5),
        h.engine
            .continue_session(ContinueSessionRequest::new(id, "more"), &ctx),
    )
    .await
    .expect("an already cancelled token ends the run at once");
    assert_eq!(
        env.errors[0].message,
        format!(
            "Session {id} was cancelled: the client cancelled the request (notifications/cancelled)"
        )
    );
    let r = h.record(id);
    assert_eq!(r.status, SessionStatus::Cancelled);
    assert_eq!(r.locked_by, None);
    assert_eq!(h.events(id).last().map(|e| e.1), Some(2));
}

#[tokio::test]
async fn continuing_a_session_whose_run_is_in_flight_is_a_conflict() {
    let gate = Arc::new(Notify::new());
    let backend = FakeBackend::new().gated(Arc::clone(&gate));
    let entered = backend.entered();
    let h = Harness::build(
        backend,
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::from_secs(7),
            ..EngineConfig::default()
        },
    );
    let ctx = h.ctx();
    let (run, conflict) = tokio::join!(h.engine.run_task(RunTaskRequest::new("t"), &ctx), async {
        entered.notified().await;
        let id = h.backend.last_request().session_id;
        let r = h.record(&id);
        assert_eq!(r.status, SessionStatus::Running);
        let owner = r.locked_by.clone().unwrap();
        // `exec_` + 8 hex, then `@` and this process's node id.
        let node = h.engine.node_id();
        assert!(node.starts_with("node_") && node.len() == 21, "{node}");
        assert_eq!(owner.len(), 13 + 1 + 21, "{owner}");
        assert!(
            owner.starts_with("exec_") && owner.ends_with(&format!("@{node}")),
            "{owner}"
        );
        assert_eq!(
            r.lock_expires_at,
            Some(r.created_at.plus(Duration::from_secs(7)))
        );
        let env = h.cont(&id, "me too").await;
        gate.notify_one();
        (env, owner)
    });
    let (env, owner) = conflict;
    assert!(run.ok);
    assert_eq!(
        env.to_value(),
        error_envelope(
            &run.session_id,
            "continue_session",
            "general",
            "session_conflict",
            &format!("Session {} is locked by {owner}", run.session_id)
        )
    );
    let r = h.record(&run.session_id);
    assert_eq!((r.status, r.request_count), (SessionStatus::Completed, 1));
    assert_eq!(r.locked_by, None);
}

// ---------------------------------------------------------------------------------------------
// agent_get_session / agent_list_sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_session_view_has_exact_keys_and_z_timestamps() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_0000000000000d01";
    let mut r = seed_record(
        id,
        Workflow::VerifyTask,
        Profile::Verification,
        SessionStatus::Failed,
    );
    r.created_at = Timestamp::parse("2026-04-13T10:00:00.123456+00:00").unwrap();
    r.updated_at = Timestamp::parse("2026-04-13T10:05:00+00:00").unwrap();
    r.last_activity_at = Timestamp::parse("2026-04-13T10:05:00.000001+00:00").unwrap();
    r.request_count = 2;
    r.turn_count = 7;
    r.artifact_count = 1;
    r.summary_latest = Some("Verification pass: 1 finding(s)".to_owned());
    r.locked_by = Some("ver_12345678".to_owned());
    r.provider_session_id = Some("provider-1".to_owned());
    h.store.seed(r);
    let view = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: id.to_owned(),
        })
        .await
        .unwrap();
    let value = serde_json::to_value(&view).unwrap();
    assert_eq!(
        value,
        json!({
            "session_id": id,
            "workflow": "verify_task",
            "profile": "verification",
            "status": "failed",
            "created_at": "2026-04-13T10:00:00.123456Z",
            "updated_at": "2026-04-13T10:05:00Z",
            "last_activity_at": "2026-04-13T10:05:00.000001Z",
            "summary_latest": "Verification pass: 1 finding(s)",
            "artifact_count": 1,
            "turn_count": 7,
            "request_count": 2,
            "working_directory": CWD,
            // Additions: where a fork came from (null: not a fork).
            "parent_session_id": null,
            "forked_at_turn": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}
        })
    );
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "session_id",
            "workflow",
            "profile",
            "status",
            "created_at",
            "updated_at",
            "last_activity_at",
            "summary_latest",
            "artifact_count",
            "turn_count",
            "request_count",
            "working_directory",
            "parent_session_id",
            "forked_at_turn",
            "usage"
        ]
    );

    // Nulls stay as keys.
    seed(
        &h,
        "sess_0000000000000d02",
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Created,
    );
    let mut r = h.record("sess_0000000000000d02");
    r.working_directory = None;
    h.store.seed(r);
    let view = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: "sess_0000000000000d02".to_owned(),
        })
        .await
        .unwrap();
    let value = serde_json::to_value(&view).unwrap();
    assert_eq!(value["summary_latest"], Value::Null);
    assert_eq!(value["working_directory"], Value::Null);
    assert!(value["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn get_session_unknown_is_an_error_without_details() {
    let h = Harness::new(FakeBackend::new());
    let err = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: "sess_nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"code": "session_not_found", "message": "Session not found: sess_nope"})
    );
    assert_eq!(
        err.into_error_result(),
        json!({"error": {"code": "session_not_found", "message": "Session not found: sess_nope"}})
    );

    h.store.fail(Method::GetSession);
    let err = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: "sess_nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"code": "internal_error", "message": MemStore::failure_message(Method::GetSession)})
    );
}

#[tokio::test]
async fn list_sessions_orders_by_update_filters_by_status_and_limits() {
    let h = Harness::new(FakeBackend::new());
    assert!(
        h.engine
            .list_sessions(&ListSessionsRequest::default())
            .await
            .unwrap()
            .is_empty()
    );
    let rows = [
        (
            "sess_0000000000000e01",
            SessionStatus::Completed,
            "2026-04-13T10:00:00+00:00",
            Some("one"),
        ),
        (
            "sess_0000000000000e02",
            SessionStatus::Failed,
            "2026-04-13T11:00:00.5+00:00",
            None,
        ),
        (
            "sess_0000000000000e03",
            SessionStatus::Completed,
            "2026-04-13T12:00:00+00:00",
            Some("three"),
        ),
    ];
    for (id, status, updated, summary) in rows {
        let mut r = seed_record(id, Workflow::RunTask, Profile::General, status);
        r.updated_at = Timestamp::parse(updated).unwrap();
        r.summary_latest = summary.map(str::to_owned);
        h.store.seed(r);
    }
    let list = h
        .engine
        .list_sessions(&ListSessionsRequest {
            limit: 2,
            status: None,
        })
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        json!([
            {"session_id": "sess_0000000000000e03", "workflow": "run_task", "profile": "general",
             "status": "completed", "updated_at": "2026-04-13T12:00:00Z", "summary_latest": "three"},
            {"session_id": "sess_0000000000000e02", "workflow": "run_task", "profile": "general",
             "status": "failed", "updated_at": "2026-04-13T11:00:00.500000Z", "summary_latest": null},
        ])
    );
    let completed = h
        .engine
        .list_sessions(&ListSessionsRequest {
            limit: 20,
            status: Some(SessionStatus::Completed),
        })
        .await
        .unwrap();
    let ids: Vec<&str> = completed.iter().map(|e| e.session_id.as_str()).collect();
    assert_eq!(ids, ["sess_0000000000000e03", "sess_0000000000000e01"]);

    h.store.fail(Method::ListSessions);
    let err = h
        .engine
        .list_sessions(&ListSessionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InternalError);
}

// ---------------------------------------------------------------------------------------------
// The fake store itself follows the port's documentation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mem_store_follows_the_session_store_contract() {
    let store = MemStore::new();
    let ttl = Duration::from_secs(60);
    let new = NewSession {
        session_id: "sess_0000000000000f01".to_owned(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        working_directory: Some(CWD.to_owned()),
        lock_owner: "exec_aaaaaaaa".to_owned(),
        lock_ttl: ttl,
    };
    let r = store
        .begin_session(&new, &[Event::user_input_task("t")])
        .await
        .unwrap();
    assert_eq!(
        (
            r.status,
            r.request_count,
            r.turn_count,
            r.locked_by.as_deref()
        ),
        (SessionStatus::Running, 1, 0, Some("exec_aaaaaaaa"))
    );
    assert_eq!(r.lock_expires_at, Some(r.created_at.plus(ttl)));
    assert!(store.begin_session(&new, &[]).await.is_err());
    let id = new.session_id.as_str();

    // Held lease → conflict; missing row → not found.
    assert_eq!(
        store.acquire_lock(id, "cont_bbbbbbbb", ttl).await.unwrap(),
        LockOutcome::Conflict {
            owner: "exec_aaaaaaaa".to_owned()
        }
    );
    assert_eq!(
        store.acquire_lock("sess_missing", "x", ttl).await.unwrap(),
        LockOutcome::NotFound
    );
    // Release by a non-owner does nothing; by the owner clears the lock.
    store.release_lock(id, "cont_bbbbbbbb").await.unwrap();
    assert_eq!(
        store.record(id).unwrap().locked_by.as_deref(),
        Some("exec_aaaaaaaa")
    );
    store.release_lock(id, "exec_aaaaaaaa").await.unwrap();
    assert_eq!(store.record(id).unwrap().locked_by, None);

    // Free → acquired; an expired lease is taken over.
    let LockOutcome::Acquired(r) = store.acquire_lock(id, "cont_cccccccc", ttl).await.unwrap()
    else {
        panic!("free lock not acquired");
    };
    assert_eq!(r.locked_by.as_deref(), Some("cont_cccccccc"));
    let mut stale = store.record(id).unwrap();
    stale.lock_expires_at = Some(long_ago());
    store.seed(stale);
    assert!(matches!(
        store.acquire_lock(id, "cont_dddddddd", ttl).await.unwrap(),
        LockOutcome::Acquired(_)
    ));

    // finish_execution is fenced: a non-holder writes nothing; the holder's finish keeps
    // `None` fields and releases its lock.
    store.begin_execution(id, &[]).await.unwrap();
    let finish = Finish {
        status: SessionStatus::Completed,
        turn_count: Some(3),
        summary_latest: None,
        provider_session_id: None,
        output_text: Some("out".to_owned()),
        events: vec![Event::provider_request_start(3)],
        result: None,
        usage: None,
    };
    let err = store
        .finish_execution(
            id,
            &Lease::new("cont_eeeeeeee", store.record(id).unwrap().lock_generation),
            &finish,
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("no longer holds its lock"), "{err}");
    let r = store.record(id).unwrap();
    assert_eq!(
        (
            r.status,
            r.turn_count,
            r.request_count,
            r.locked_by.as_deref()
        ),
        (SessionStatus::Running, 0, 2, Some("cont_dddddddd"))
    );
    store
        .finish_execution(
            id,
            &Lease::new("cont_dddddddd", store.record(id).unwrap().lock_generation),
            &finish,
        )
        .await
        .unwrap();
    let r = store.record(id).unwrap();
    assert_eq!((r.status, r.turn_count), (SessionStatus::Completed, 3));
    assert_eq!(r.locked_by, None);
    assert_eq!(store.events(id).await.unwrap().len(), 2);
    assert_eq!(store.outputs(id).await.unwrap(), [(3, "out".to_owned())]);

    // A kept output is never overwritten: a second run finishing at turn 3 fails and applies
    // nothing.
    assert!(matches!(
        store.acquire_lock(id, "cont_gggggggg", ttl).await.unwrap(),
        LockOutcome::Acquired(_)
    ));
    let again = Finish {
        status: SessionStatus::Failed,
        output_text: Some("overwritten".to_owned()),
        ..finish.clone()
    };
    assert!(
        store
            .finish_execution(
                id,
                &Lease::new("cont_gggggggg", store.record(id).unwrap().lock_generation),
                &again
            )
            .await
            .is_err()
    );
    assert_eq!(store.record(id).unwrap().status, SessionStatus::Completed);
    assert_eq!(store.outputs(id).await.unwrap(), [(3, "out".to_owned())]);
    assert_eq!(store.events(id).await.unwrap().len(), 2);
    let later = Finish {
        turn_count: Some(4),
        ..finish.clone()
    };
    store
        .finish_execution(
            id,
            &Lease::new("cont_gggggggg", store.record(id).unwrap().lock_generation),
            &later,
        )
        .await
        .unwrap();
    assert_eq!(store.record(id).unwrap().locked_by, None);
    assert_eq!(store.events(id).await.unwrap().len(), 3);
    assert_eq!(
        store.outputs(id).await.unwrap(),
        [(3, "out".to_owned()), (4, "out".to_owned())]
    );

    // Recovery: running → interrupted, locks cleared; a live lease (another process's run)
    // is left alone.
    store.begin_execution(id, &[]).await.unwrap();
    let live = store
        .begin_session(
            &NewSession {
                session_id: "sess_0000000000000f02".to_owned(),
                lock_owner: "exec_ffffffff".to_owned(),
                ..new.clone()
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.recover_interrupted().await.unwrap(), 1);
    assert_eq!(store.record(id).unwrap().status, SessionStatus::Interrupted);
    assert_eq!(store.record(&live.session_id).unwrap(), live);
    assert!(
        store
            .finish_execution("sess_missing", &Lease::new("x", 1), &finish)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn verify_gives_evidence_contents_to_the_backend() {
    let h = Harness::new(FakeBackend::new().then_ok(BackendOutput {
        output_text: "VERDICT: pass".into(),
        turn_count: 1,
        ..BackendOutput::default()
    }));
    h.verify(
        VerifyTaskRequest::new("README mentions CRLF")
            .with_evidence(vec!["/work/project/evidence.md".into()]),
    )
    .await;
    let task = h.backend.requests()[0].task.clone();
    assert_eq!(
        task,
        "Task to verify: README mentions CRLF\nEvidence paths:\n  - /work/project/evidence.md\n\nEvidence contents:\n=== /work/project/evidence.md (text, 22 bytes) ===\n# Project\nparses CRLF\n=== end of /work/project/evidence.md ===\n\nPlease evaluate the evidence and provide a structured verification result."
    );
}

#[tokio::test]
async fn verify_the_not_found_quirk_never_decides_what_is_read() {
    // `/etc/passwd` is a substring of the sibling's "not found" message, so the quirk skips
    // its attachment check; the reading still checks it, and nothing reaches the backend.
    for fail_closed in [false, true] {
        let h = Harness::new(FakeBackend::new());
        let env = h
            .verify(
                VerifyTaskRequest::new("claim")
                    .with_evidence(vec![OUTSIDE_FILE.to_owned(), format!("{OUTSIDE_FILE}.x")])
                    .with_fail_closed(fail_closed),
            )
            .await;
        let want = if fail_closed {
            "missing_evidence"
        } else {
            "policy_denied"
        };
        assert_eq!(env.errors[0].code.as_str(), want, "{:?}", env.to_value());
        assert_eq!(h.store.session_count(), 0);
        assert_eq!(h.backend.call_count(), 0);
    }
}

#[tokio::test]
async fn continue_re_resolves_the_stored_working_directory() {
    let h = Harness::new(FakeBackend::new().then_ok(output("x", 1)));
    let mut record = seed_record(
        "sess_moved",
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    record.working_directory = Some("/elsewhere".to_owned());
    h.store.seed(record.clone());
    let env = h.cont("sess_moved", "again").await;
    assert_eq!(
        env.to_value(),
        error_envelope(
            "sess_moved",
            "continue_session",
            "general",
            "policy_denied",
            "working_directory '/elsewhere' is not in the server's allowed_dirs. Allowed: ['/work/project', '/srv/shared']"
        )
    );
    assert_eq!(h.backend.call_count(), 0);
    assert_eq!(h.store.record("sess_moved"), Some(record));
    assert!(h.store.events_of("sess_moved").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Artifacts are read through the store port
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn artifacts_are_read_through_the_store() {
    let text = "An output long enough to be kept as an artifact of the session.";
    let h = Harness::new(FakeBackend::new().then_ok(output(text, 1)));
    let env = h.run(RunTaskRequest::new("Write")).await;
    let id = env.session_id.clone();
    let artifact_id = h.store.artifacts()[0].artifact_id.clone();

    let (record, body) = h
        .engine
        .read_artifact(&id, &artifact_id)
        .await
        .unwrap()
        .expect("the artifact");
    assert_eq!(record, h.store.artifacts()[0].record());
    assert_eq!(body, text.as_bytes());
    assert_eq!(h.engine.read_artifact(&id, "art_missing").await, Ok(None));

    h.store.fail(Method::ReadArtifact);
    let err = h.engine.read_artifact(&id, &artifact_id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InternalError);
    assert_eq!(err.message, MemStore::failure_message(Method::ReadArtifact));
}

// ---------------------------------------------------------------------------------------------
// The crate performs no I/O
// ---------------------------------------------------------------------------------------------

/// agent-core reaches files, processes and the network only through its ports: no module of
/// `src/` names the standard library's or Tokio's file system, process or network modules
/// (`docs/architecture.md`).
#[test]
fn agent_core_names_no_io_module() {
    let io = regex::Regex::new(r"\b(std|tokio)\s*::\s*(\{[^}]*\b)?(fs|net|process)\b").unwrap();
    let mut pending = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    let mut offences = Vec::new();
    let mut scanned = 0;
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        scanned += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            if io.is_match(line) {
                offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        scanned > 10,
        "the scan found agent-core's sources ({scanned} files)"
    );
    assert!(
        offences.is_empty(),
        "I/O in agent-core:\n{}",
        offences.join("\n")
    );
}

/// Issue #14: the final write of a run whose lease was taken over (another node's stale
/// takeover) fails as `NotHolder`; it is not retried and no interrupt replaces it: the new
/// holder owns the row, which keeps its status, lock and events. The client hears "lease lost".
#[tokio::test]
async fn a_final_write_whose_lease_was_taken_is_neither_retried_nor_replaced() {
    let gate = Arc::new(Notify::new());
    let backend = FakeBackend::new().gated(Arc::clone(&gate));
    let entered = backend.entered();
    let h = Harness::build(backend, Vec::new(), EngineConfig::default());
    let ctx = h.ctx();
    let (run, (taken, events_before)) =
        tokio::join!(h.engine.run_task(RunTaskRequest::new("t"), &ctx), async {
            entered.notified().await;
            let id = h.backend.last_request().session_id;
            let mut r = h.record(&id);
            r.locked_by = Some("cont_thief000@node_0000000000000002".to_owned());
            r.lock_generation += 1;
            h.store.seed(r.clone());
            let events = h.events(&id);
            gate.notify_one();
            (r, events)
        });
    assert!(!run.ok);
    assert_eq!(run.errors[0].code, ErrorCode::ProviderRuntimeError);
    assert!(
        run.errors[0].message.contains("lost its lease"),
        "{}",
        run.errors[0].message
    );
    assert_eq!(
        h.record(&run.session_id),
        taken,
        "the new holder's row is untouched"
    );
    assert_eq!(h.events(&run.session_id), events_before);
    let calls = h.store.calls();
    let count = |m: Method| calls.iter().filter(|c| **c == m).count();
    assert_eq!(count(Method::FinishExecution), 1, "not retried");
    assert_eq!(count(Method::InterruptExecution), 0, "no fallback");
}

/// Issue #14, cancellation across processes: `agent_cancel_session` through an engine that
/// does not run the session (another process on the same store) records a cancel request; the
/// engine that runs it sees it at its next poll, stops the backend call and records
/// `session_cancelled` with the reason; the requester answers once the run has ended.
#[tokio::test]
async fn a_cancel_through_another_engine_on_the_same_store_stops_the_run() {
    let gate = Arc::new(Notify::new());
    let backend = FakeBackend::new().gated(Arc::clone(&gate));
    let entered = backend.entered();
    let h = Harness::build(backend, Vec::new(), EngineConfig::default());
    let other = Engine::new(
        Arc::clone(&h.store) as Arc<dyn SessionStore>,
        Arc::new(FakeBackend::new()) as Arc<dyn agent_core::ExecutionBackend>,
        Arc::new(policy()),
        EngineConfig::default(),
    );
    assert_ne!(h.engine.node_id(), other.node_id());
    let ctx = h.ctx();
    let (run, cancel) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(h.engine.run_task(RunTaskRequest::new("t"), &ctx), async {
            entered.notified().await;
            let id = h.backend.last_request().session_id;
            other
                .cancel_session_with_reason(&id, "stopped through node B")
                .await
        })
    })
    .await
    .expect("the run stops at its next poll, never reaching the gate");
    let id = run.session_id.clone();
    assert!(cancel.ok, "{:?}", cancel.to_value());
    assert_eq!(cancel.result["status"], json!("cancelled"));
    assert_eq!(run.errors[0].code, ErrorCode::SessionCancelled);
    assert_eq!(
        run.errors[0].message,
        format!("Session {id} was cancelled: stopped through node B")
    );
    let r = h.record(&id);
    assert_eq!((r.status, r.locked_by), (SessionStatus::Cancelled, None));
    assert_eq!(
        h.events(&id).last().cloned(),
        Some((
            "session_cancelled".to_owned(),
            0,
            json!({"reason": "stopped through node B"})
        ))
    );
    // The request ended with the execution: a new run is not cancelled by it.
    assert!(!h.store.request_cancel(&id, "late").await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Kept results and agent_wait_session
// ---------------------------------------------------------------------------------------------

async fn wait(h: &Harness, session_id: &str, timeout: Duration) -> Result<Value, ErrorObject> {
    h.engine
        .wait_session(&WaitSessionRequest::new(session_id, timeout), &h.ctx())
        .await
}

#[tokio::test]
async fn every_execution_keeps_its_envelope_and_a_wait_answers_the_latest_at_once() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("first output", 1))
            .then_err(ErrorCode::ProviderRuntimeError, "Claude API error: boom"),
    );
    let run = h.run(RunTaskRequest::new("t")).await;
    let id = run.session_id.clone();
    assert_eq!(
        h.store.kept_result(&id).await.unwrap(),
        Some((1, serde_json::to_string(&run).unwrap()))
    );
    let started = Instant::now();
    assert_eq!(
        wait(&h, &id, Duration::from_secs(30)).await,
        Ok(run.to_value())
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // A failed continuation is the latest execution: its error envelope is kept and answered.
    let failed = h.cont(&id, "more").await;
    assert!(!failed.ok);
    assert_eq!(
        h.store.kept_result(&id).await.unwrap(),
        Some((2, serde_json::to_string(&failed).unwrap()))
    );
    assert_eq!(wait(&h, &id, Duration::ZERO).await, Ok(failed.to_value()));
    assert_eq!(
        h.progress.messages().last().map(String::as_str),
        Some(format!("session {id} failed").as_str())
    );
    // Both were kept by the final write of their execution: no write of their own.
    assert!(
        !h.store.calls().contains(&Method::KeepResult),
        "{:?}",
        h.store.calls()
    );
}

#[tokio::test]
async fn a_result_whose_final_write_failed_is_kept_on_its_own() {
    let h = Harness::new(FakeBackend::new().then_ok(output("lost end", 1)));
    h.store.fail_times(Method::FinishExecution, 3);
    let run = h.run(RunTaskRequest::new("t")).await;
    assert!(!run.ok, "{run:?}");
    let id = run.session_id.clone();
    assert_eq!(h.record(&id).status, SessionStatus::Interrupted);
    assert!(h.store.calls().contains(&Method::KeepResult));
    assert_eq!(
        h.store.kept_result(&id).await.unwrap(),
        Some((1, serde_json::to_string(&run).unwrap()))
    );
    assert_eq!(wait(&h, &id, Duration::ZERO).await, Ok(run.to_value()));
}

#[tokio::test]
async fn failures_before_an_execution_keep_nothing() {
    let h = Harness::new(FakeBackend::new());
    let denied = h
        .run(RunTaskRequest::new("t").with_working_directory("/etc"))
        .await;
    assert_eq!(denied.session_id, "");
    let id = "sess_00000000000000a1";
    let mut record = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Running,
    );
    record.locked_by = Some("exec_0000aaaa@node_other".to_owned());
    record.lock_expires_at = Some(Timestamp::parse("2999-01-01T00:00:00+00:00").unwrap());
    h.store.seed(record);
    let conflict = h.cont(id, "more").await;
    assert_eq!(conflict.errors[0].code, ErrorCode::SessionConflict);
    let unknown = h.cont("sess_00000000000000ff", "more").await;
    assert_eq!(unknown.errors[0].code, ErrorCode::SessionNotFound);
    assert!(
        !h.store.calls().contains(&Method::KeepResult),
        "{:?}",
        h.store.calls()
    );
}

#[tokio::test]
async fn a_wait_ends_when_the_run_it_waits_for_ends() {
    let gate = Arc::new(Notify::new());
    let backend = FakeBackend::new()
        .then_ok(output("done at last", 1))
        .gated(Arc::clone(&gate));
    let entered = backend.entered();
    let h = Harness::new(backend);
    let run = h.run(RunTaskRequest::new("t"));
    let waited = async {
        entered.notified().await;
        let id = h.store.list_sessions(1, None).await.unwrap()[0]
            .session_id
            .clone();
        let opened = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            gate.notify_waiters();
        };
        let (waited, ()) = tokio::join!(wait(&h, &id, Duration::from_secs(30)), opened);
        waited
    };
    let (run, waited) = tokio::join!(run, waited);
    assert!(run.ok, "{run:?}");
    assert_eq!(waited, Ok(run.to_value()));
}

#[tokio::test]
async fn a_wait_that_times_out_answers_running_for_the_execution_in_flight() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_00000000000000b1";
    let mut record = seed_record(
        id,
        Workflow::RunTask,
        Profile::Verification,
        SessionStatus::Running,
    );
    record.locked_by = Some("cont_0000bbbb@node_other".to_owned());
    record.lock_expires_at = Some(Timestamp::parse("2999-01-01T00:00:00+00:00").unwrap());
    h.store.seed(record);
    let started = Instant::now();
    let answer = wait(&h, id, Duration::from_millis(300)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3));
    assert_eq!(
        answer,
        Envelope::running(id, Workflow::ContinueSession, "verification").to_value()
    );
    assert_eq!(
        h.progress.messages(),
        [format!("session {id} running (waited 0s)")]
    );
}

#[tokio::test]
async fn an_ended_session_without_a_kept_result_is_interrupted_or_unavailable() {
    let h = Harness::new(FakeBackend::new());
    assert_eq!(
        wait(&h, "sess_00000000000000ff", Duration::ZERO).await,
        Err(ErrorObject::bare(
            ErrorCode::SessionNotFound,
            "Session not found: sess_00000000000000ff"
        ))
    );
    let interrupted = "sess_00000000000000c1";
    seed(
        &h,
        interrupted,
        Workflow::VerifyTask,
        Profile::Verification,
        SessionStatus::Interrupted,
    );
    let started = Instant::now();
    let answer = wait(&h, interrupted, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "no grace");
    assert_eq!(
        answer,
        error_envelope(
            interrupted,
            "verify_task",
            "verification",
            "session_interrupted",
            &format!(
                "Session {interrupted} was interrupted before its execution recorded a result; continue it with agent_continue_session"
            )
        )
    );
    // Any other ended session without a result (one ended by an earlier version): unavailable.
    let completed = "sess_00000000000000c2";
    seed(
        &h,
        completed,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    let started = Instant::now();
    let answer = wait(&h, completed, Duration::from_secs(30)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        answer,
        error_envelope(
            completed,
            "run_task",
            "general",
            "session_result_unavailable",
            &format!(
                "No result is kept for the latest execution of session {completed} (status: completed); read the session with agent_get_session"
            )
        )
    );
}

// ---------------------------------------------------------------------------------------------
// The observer port (metrics)
// ---------------------------------------------------------------------------------------------

/// Records what the engine reports, one line per report.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl agent_core::Observer for Recorder {
    fn run_finished(&self, report: &agent_core::RunReport) {
        self.push(format!(
            "run {} {} {}",
            report.workflow,
            report.backend,
            report.outcome.as_str()
        ));
    }

    fn execution_output(&self, backend: &'static str, turns: u32, usage: Option<&Usage>) {
        self.push(format!(
            "output {backend} {turns} {:?}",
            usage.map(|u| (u.input_tokens, u.output_tokens))
        ));
    }

    fn tool_call(&self, kind: agent_core::ToolKind, ok: bool) {
        self.push(format!("tool {} {ok}", kind.as_str()));
    }

    fn cancelled(&self, workflow: Workflow) {
        self.push(format!("cancelled {workflow}"));
    }

    fn lease_sweep(&self, swept: u64) {
        self.push(format!("sweep {swept}"));
    }

    fn store_error(&self, operation: &'static str) {
        self.push(format!("store_error {operation}"));
    }
}

fn observed(h: Harness) -> (Harness, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let Harness {
        engine,
        store,
        backend,
        progress,
    } = h;
    let engine = engine.with_observer(Arc::clone(&recorder) as Arc<dyn agent_core::Observer>);
    (
        Harness {
            engine,
            store,
            backend,
            progress,
        },
        recorder,
    )
}

/// The engine reports each workflow call with its outcome, each execution's turns and usage,
/// each tool call with its kind and outcome, cancellations, sweeps and store errors, and never
/// anything that names a session.
#[tokio::test]
async fn the_observer_hears_runs_tools_cancellations_sweeps_and_store_errors() {
    let backend = FakeBackend::new()
        .with_downstream_tools()
        .calling_tools(vec![("read_file", json!({})), ("broken", json!({}))])
        .then_ok(BackendOutput {
            usage: Some(usage(11, 7)),
            ..output("done", 2)
        })
        .then_err(ErrorCode::ProviderRuntimeError, "boom");
    let (h, seen) = observed(Harness::with_tools(backend, vec![federated()]));

    assert!(h.run(RunTaskRequest::new("ok")).await.ok);
    assert_eq!(
        seen.take(),
        [
            "tool federated true",
            "tool federated false",
            "output fake 2 Some((11, 7))",
            "run run_task fake completed",
        ]
    );
    let failed = h.run(RunTaskRequest::new("fails")).await;
    assert!(!failed.ok);
    assert_eq!(
        seen.take(),
        [
            "tool federated true",
            "tool federated false",
            "run run_task fake failed",
        ]
    );
    let denied = h
        .run(RunTaskRequest {
            working_directory: Some("/etc".into()),
            ..RunTaskRequest::new("outside")
        })
        .await;
    assert_eq!(denied.errors[0].code, ErrorCode::PolicyDenied);
    assert_eq!(seen.take(), ["run run_task fake rejected"]);
    let unknown = h.cont("sess_0000000000000bad", "more").await;
    assert_eq!(unknown.errors[0].code, ErrorCode::SessionNotFound);
    assert_eq!(seen.take(), ["run continue_session fake rejected"]);
    h.store.fail_times(Method::BeginSession, 1);
    assert!(!h.run(RunTaskRequest::new("store down")).await.ok);
    assert_eq!(
        seen.take(),
        ["store_error begin_session", "run run_task fake failed"]
    );
    h.store.fail_times(Method::GetSession, 1);
    let read = h
        .engine
        .get_session(&GetSessionRequest {
            session_id: "sess_0000000000000bad".into(),
        })
        .await;
    assert_eq!(read.unwrap_err().code, ErrorCode::InternalError);
    h.store.fail_times(Method::ListSessions, 1);
    assert!(
        h.engine
            .list_sessions(&ListSessionsRequest::default())
            .await
            .is_err()
    );
    assert_eq!(
        seen.take(),
        ["store_error get_session", "store_error list_sessions"]
    );
    let verified = h.verify(VerifyTaskRequest::new("claim")).await;
    assert!(verified.ok, "{:?}", verified.errors);
    assert_eq!(
        seen.take().last().map(String::as_str),
        Some("run verify_task fake completed")
    );

    // Cancellation.
    let slow = FakeBackend::new().with_delay(Duration::from_secs(30));
    let entered = slow.entered();
    let (h, seen) = observed(Harness::new(slow));
    let token = CancellationToken::new();
    let ctx = ExecContext::new(
        token.clone(),
        Arc::clone(&h.progress) as Arc<dyn agent_core::ProgressSink>,
    );
    let (env, ()) = tokio::join!(
        h.engine.run_task(RunTaskRequest::new("slow"), &ctx),
        async {
            entered.notified().await;
            token.cancel();
        }
    );
    assert_eq!(env.errors[0].code, ErrorCode::SessionCancelled);
    assert_eq!(
        seen.take(),
        ["cancelled run_task", "run run_task fake cancelled"]
    );

    // The sweeper: a pass that finds nothing, and one that interrupts a session.
    let (fast, seen) = observed(Harness::build(
        FakeBackend::new(),
        Vec::new(),
        EngineConfig {
            lock_ttl: Duration::from_millis(40),
            ..EngineConfig::default()
        },
    ));
    let id = "sess_0000000000000c05";
    let mut r = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Running,
    );
    r.locked_by = Some("run_task:gone".into());
    r.lock_expires_at = Some(Timestamp::now());
    fast.store.seed(r);
    let swept = async {
        while !seen.0.lock().unwrap().iter().any(|l| l == "sweep 1") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        () = swept => {}
        () = fast.engine.sweep_expired_leases() => unreachable!("the sweeper runs forever"),
        () = tokio::time::sleep(Duration::from_secs(10)) => panic!("never swept"),
    }
    fast.store.fail(Method::SweepExpiredLeases);
    let failed_sweep = async {
        while !seen
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "store_error sweep_expired_leases")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        () = failed_sweep => {}
        () = fast.engine.sweep_expired_leases() => unreachable!("the sweeper runs forever"),
        () = tokio::time::sleep(Duration::from_secs(10)) => panic!("the failed sweep was not reported"),
    }
    assert!(
        seen.take()
            .iter()
            .all(|l| l.starts_with("sweep ") || l == "store_error sweep_expired_leases")
    );
}

// ---------------------------------------------------------------------------------------------
// agent_fork_session (`docs/reference/tools.md#17-agent_fork_session`)
// ---------------------------------------------------------------------------------------------

impl Harness {
    async fn fork(&self, req: agent_core::ForkSessionRequest) -> Envelope {
        self.engine.fork_session(req, &self.ctx()).await
    }
}

fn with_provider_session(text: &str, turns: u32, provider_session_id: &str) -> BackendOutput {
    BackendOutput {
        provider_session_id: Some(provider_session_id.to_owned()),
        ..output(text, turns)
    }
}

/// Turns can be forked where an execution ended, never inside one or past the latest; the fork's
/// continuation replays exactly the parent's history up to its turn.
#[tokio::test]
async fn a_fork_is_made_where_an_execution_ended_and_replays_the_history_up_to_it() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(output("answer one", 1))
            .then_ok(output("answer two", 3))
            .then_ok(output("branch answer", 1)),
    );
    let run = h.run(RunTaskRequest::new("task one")).await;
    let parent = run.session_id.clone();
    assert!(h.cont(&parent, "two").await.ok);
    assert_eq!(h.store.record(&parent).unwrap().turn_count, 4);
    let parent_before = h.store.record(&parent).unwrap();

    for (turn, problem) in [
        (
            2,
            format!(
                "at_turn: turn 2 of session {parent} does not end an exchange; it can be forked at turn 1 or 4"
            ),
        ),
        (
            5,
            format!(
                "at_turn: input should be less than or equal to 4, the turn_count of session {parent}, got 5"
            ),
        ),
    ] {
        let env = h
            .fork(agent_core::ForkSessionRequest::new(&parent).at_turn(turn))
            .await;
        assert!(!env.ok);
        assert_eq!(env.session_id, parent);
        assert_eq!(env.workflow, Workflow::ForkSession);
        assert_eq!(env.errors[0].code, ErrorCode::ValidationError);
        assert_eq!(
            env.errors[0].message,
            format!("Invalid agent_fork_session request: {problem}")
        );
    }
    assert_eq!(h.store.session_count(), 1, "a refused fork creates nothing");

    let env = h
        .fork(
            agent_core::ForkSessionRequest::new(&parent)
                .at_turn(1)
                .with_message("branch"),
        )
        .await;
    assert!(env.ok, "{env:?}");
    assert_eq!(env.workflow, Workflow::ForkSession);
    assert_eq!(env.result["output_text"], json!("branch answer"));
    let child = env.session_id.clone();
    assert_ne!(child, parent);
    let request = h.backend.last_request();
    assert_eq!(request.session_id, child);
    assert_eq!(request.task, "branch");
    assert!(request.is_continuation);
    assert_eq!(
        request.history,
        vec![
            ChatMessage {
                role: ChatRole::User,
                content: "task one".to_owned(),
                blocks: None,
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: "answer one".to_owned(),
                blocks: None,
            },
        ]
    );
    assert_eq!(
        (request.provider_session_id, request.fork_provider_session),
        (None, false)
    );
    let record = h.store.record(&child).unwrap();
    assert_eq!(
        (
            record.turn_count,
            record.request_count,
            record.status,
            record.workflow
        ),
        (2, 1, SessionStatus::Completed, Workflow::RunTask)
    );
    assert_eq!(
        record.fork,
        Some(agent_core::ForkOrigin {
            parent_session_id: parent.clone(),
            at_turn: 1
        })
    );
    // The parent: its row as it was, one event more.
    assert_eq!(h.store.record(&parent).unwrap(), parent_before);
    let created: Vec<_> = h
        .store
        .events_of(&parent)
        .into_iter()
        .filter(|e| e.event_type == "session_fork_created")
        .map(|e| (e.turn_index, e.payload))
        .collect();
    assert_eq!(
        created,
        vec![(1, json!({"child_session_id": child, "at_turn": 1}))]
    );
    let view = serde_json::to_value(
        h.engine
            .get_session(&GetSessionRequest {
                session_id: child.clone(),
            })
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&view["parent_session_id"], &view["forked_at_turn"]),
        (&json!(parent), &json!(1))
    );
}

/// A fork's first continuation resumes the parent's provider session as a new one while the
/// parent is still at the fork's turn; later ones resume the fork's own; once the parent has
/// moved on, a fork made at its end starts from the reconstructed context.
#[tokio::test]
async fn a_forks_first_continuation_resumes_the_parents_provider_session_as_a_new_one() {
    let h = Harness::new(
        FakeBackend::new()
            .then_ok(with_provider_session("one", 1, "prov-parent"))
            .then_ok(with_provider_session("fork one", 1, "prov-fork"))
            .then_ok(with_provider_session("fork two", 1, "prov-fork"))
            .then_ok(with_provider_session("parent two", 1, "prov-parent"))
            .then_ok(with_provider_session("late fork", 1, "prov-late")),
    );
    let parent = h.run(RunTaskRequest::new("task")).await.session_id;
    let fork = h.fork(agent_core::ForkSessionRequest::new(&parent)).await;
    assert!(fork.ok, "{fork:?}");
    assert_eq!(
        fork.result,
        serde_json::from_value::<serde_json::Map<String, Value>>(
            json!({"parent_session_id": parent, "forked_at_turn": 1})
        )
        .unwrap()
    );
    let child = fork.session_id.clone();
    assert_eq!(h.store.record(&child).unwrap().provider_session_id, None);
    // Kept as the fork's result until its first execution.
    let waited = h
        .engine
        .wait_session(
            &WaitSessionRequest::new(&child, Duration::ZERO),
            &ExecContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(waited, fork.to_value());

    assert!(h.cont(&child, "a").await.ok);
    let request = h.backend.last_request();
    assert_eq!(
        (
            request.provider_session_id.as_deref(),
            request.fork_provider_session
        ),
        (Some("prov-parent"), true)
    );
    assert_eq!(
        h.store
            .record(&child)
            .unwrap()
            .provider_session_id
            .as_deref(),
        Some("prov-fork")
    );
    assert!(h.cont(&child, "b").await.ok);
    let request = h.backend.last_request();
    assert_eq!(
        (
            request.provider_session_id.as_deref(),
            request.fork_provider_session
        ),
        (Some("prov-fork"), false)
    );
    assert_eq!(
        h.store
            .record(&parent)
            .unwrap()
            .provider_session_id
            .as_deref(),
        Some("prov-parent")
    );

    // A fork at the parent's end, then the parent moves on: the fork cannot resume it.
    let late = h
        .fork(agent_core::ForkSessionRequest::new(&parent))
        .await
        .session_id;
    assert!(h.cont(&parent, "parent moves on").await.ok);
    assert!(h.cont(&late, "late").await.ok);
    let request = h.backend.last_request();
    assert_eq!(
        (request.provider_session_id, request.fork_provider_session),
        (None, false)
    );
    assert_eq!(
        request.history.last().map(|m| m.content.as_str()),
        Some("one")
    );
}

/// A fork copies at most `MAX_FORK_HISTORY_BYTES` of event history: a longer one is refused
/// before anything is written.
#[tokio::test]
async fn a_fork_of_a_history_too_large_to_copy_is_refused() {
    let h = Harness::new(FakeBackend::new());
    let id = "sess_0000000000000f01";
    let mut record = seed_record(
        id,
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Completed,
    );
    record.turn_count = 1;
    h.store.seed(record);
    let big = "x".repeat(1024 * 1024);
    let mut events: Vec<agent_core::Event> = (0..17)
        .map(|_| agent_core::Event::user_input_message(0, &big))
        .collect();
    events.push(agent_core::Event::provider_response_summary(
        1, "done", None,
    ));
    h.store.append_events(id, &events).await.unwrap();
    let env = h.fork(agent_core::ForkSessionRequest::new(id)).await;
    assert_eq!(env.errors[0].code, ErrorCode::ValidationError, "{env:?}");
    assert!(
        env.errors[0].message.ends_with(&format!(
            "more than the {} a fork copies",
            agent_core::engine::MAX_FORK_HISTORY_BYTES
        )),
        "{}",
        env.errors[0].message
    );
    assert_eq!(h.store.session_count(), 1, "nothing was created");
}

#[tokio::test]
async fn forking_what_cannot_be_forked_is_refused_and_a_store_failure_creates_nothing() {
    let h = Harness::new(FakeBackend::new().then_ok(output("one", 1)));
    let env = h
        .fork(agent_core::ForkSessionRequest::new("sess_missing"))
        .await;
    assert_eq!(env.errors[0].code, ErrorCode::SessionNotFound);
    assert_eq!(env.errors[0].message, "Session not found: sess_missing");
    assert_eq!(env.workflow, Workflow::ForkSession);

    h.store.seed(seed_record(
        "sess_0000000000000f00",
        Workflow::RunTask,
        Profile::General,
        SessionStatus::Failed,
    ));
    let env = h
        .fork(agent_core::ForkSessionRequest::new("sess_0000000000000f00"))
        .await;
    assert_eq!(env.errors[0].code, ErrorCode::ValidationError);
    assert_eq!(
        env.errors[0].message,
        "Invalid agent_fork_session request: session sess_0000000000000f00 has no completed turn to fork (turn_count 0)"
    );

    let parent = h.run(RunTaskRequest::new("task")).await.session_id;
    h.store.fail(Method::ForkSession);
    let env = h.fork(agent_core::ForkSessionRequest::new(&parent)).await;
    assert_eq!(env.errors[0].code, ErrorCode::ProviderRuntimeError);
    assert_eq!(
        env.errors[0].message,
        MemStore::failure_message(Method::ForkSession)
    );
    assert_eq!(h.store.session_count(), 2);
}
