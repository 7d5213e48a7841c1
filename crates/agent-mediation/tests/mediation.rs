//! Mediation end to end at library level: every gate and rejection code
//! (`docs/reference/mediation.md#4-validation-gates`), blocks, processing order, execution and
//! continuation summaries (`docs/reference/mediation.md#2-blocks` to
//! `docs/reference/mediation.md#8-continuation-summaries`), the event stream
//! (`docs/reference/mediation.md#9-events`), the stores, the teaching prompt and a parser
//! property test. The `pNNN_` prefix of some test names is a legacy numbering with no meaning
//! beyond ordering; each such test names the reference section it checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_core::continuation::{MediationInclusion, WindowPolicy, build_context};
use agent_core::{
    Event, Profile, SessionRecord, SessionStatus, StoreError, StoredEvent, Timestamp,
    ToolCallContext, ToolDefinition, Workflow,
};
use agent_mediation::event::{
    MEDIATED_ACTION_APPROVED, MEDIATED_ACTION_COMPLETED, MEDIATED_ACTION_REJECTED,
    MEDIATED_ACTION_REQUESTED, MEDIATED_WORKFLOW_COMPLETED, MEDIATED_WORKFLOW_REQUESTED,
    MEDIATED_WORKFLOW_STEP_APPROVED, MEDIATED_WORKFLOW_STEP_COMPLETED,
    MEDIATED_WORKFLOW_STEP_REJECTED, MEDIATED_WORKFLOW_STEP_REQUESTED,
};
use agent_mediation::teach::HEADER_MEDIATED_TOOL_REQUESTS;
use agent_mediation::{
    ALL_EVENT_TYPES, InvokeOutcome, MediationEvent, MediationEventSink, MediationInput,
    MediationInvoker, MediationOutcome, MediationSettings, Mediator, Rejection, ResultStatus,
    StepIndex, StoreEventSink, parse_blocks, teaching_prompt,
};
use agent_testkit::store::MemStore;
use async_trait::async_trait;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------------

const SESSION: &str = "sess_test";
const TOOL: &str = "files__read";
const OTHER: &str = "files__stat";
const HIDDEN: &str = "admin__secret";

/// An event sink that keeps everything in memory, per session.
#[derive(Default)]
struct MemorySink {
    events: Mutex<Vec<(String, MediationEvent)>>,
    fail_count: bool,
    fail_append_at: Option<usize>,
}

impl MemorySink {
    fn types(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.event_type)
            .collect()
    }

    fn of(&self, event_type: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.event_type == event_type)
            .map(|(_, e)| e.payload.clone())
            .collect()
    }

    fn stored(&self) -> Vec<StoredEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, (session, e))| StoredEvent {
                event_id: i64::try_from(i).unwrap() + 1,
                session_id: session.clone(),
                event_type: e.event_type.to_owned(),
                turn_index: e.turn_index,
                payload: e.payload.clone(),
                created_at: String::new(),
            })
            .collect()
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

#[async_trait]
impl MediationEventSink for MemorySink {
    async fn prior_approvals(&self, session_id: &str) -> Result<i64, StoreError> {
        if self.fail_count {
            return Err(StoreError::new("count failed"));
        }
        let n = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, e)| {
                s == session_id && agent_mediation::APPROVAL_EVENT_TYPES.contains(&e.event_type)
            })
            .count();
        Ok(i64::try_from(n).unwrap())
    }

    async fn append(&self, session_id: &str, event: &MediationEvent) -> Result<(), StoreError> {
        let mut events = self.events.lock().unwrap();
        if self.fail_append_at == Some(events.len()) {
            return Err(StoreError::new("disk full"));
        }
        events.push((session_id.to_owned(), event.clone()));
        Ok(())
    }
}

/// An invoker that records calls, answers from a script and, like the federation, writes its
/// own `downstream_tool_*` events into the same log.
#[derive(Default)]
struct FakeInvoker {
    calls: Mutex<Vec<(ToolCallContext, String, Value)>>,
    script: HashMap<String, Result<InvokeOutcome, String>>,
    log: Option<Arc<MemorySink>>,
}

impl FakeInvoker {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t, a)| (t.clone(), a.clone()))
            .collect()
    }
}

#[async_trait]
impl MediationInvoker for FakeInvoker {
    async fn invoke(
        &self,
        ctx: &ToolCallContext,
        tool: &str,
        arguments: Value,
    ) -> Result<InvokeOutcome, String> {
        self.calls
            .lock()
            .unwrap()
            .push((ctx.clone(), tool.to_owned(), arguments));
        let answer = self.script.get(tool).cloned().unwrap_or_else(|| {
            Ok(InvokeOutcome {
                success: true,
                text: format!("result of {tool}"),
            })
        });
        if let (Some(log), Ok(_)) = (&self.log, &answer) {
            for marker in ["downstream_tool_invocation", "downstream_tool_result"] {
                log.append(
                    &ctx.session_id,
                    &MediationEvent {
                        event_type: marker,
                        turn_index: ctx.turn_index,
                        payload: json!({ "normalized_name": tool }),
                    },
                )
                .await
                .unwrap();
            }
        }
        answer
    }
}

/// A mediator with its fakes and the per-execution facts.
struct Harness {
    settings: MediationSettings,
    sink: Arc<MemorySink>,
    invoker: Arc<FakeInvoker>,
    federation_active: bool,
    visible: Vec<String>,
    workflows_supported: bool,
}

/// The built-in mediation defaults (the configuration's, no variable set).
fn defaults() -> MediationSettings {
    agent_policy::config::presets::BUILTIN.mediation_settings()
}

/// The mediation settings an operator preset gives.
fn preset(name: &str) -> MediationSettings {
    agent_policy::config::presets::preset(name)
        .expect("a known preset")
        .mediation_settings()
}

impl Harness {
    /// Mediation enabled with the built-in limits, federation active, `TOOL` and `OTHER`
    /// visible.
    fn enabled() -> Self {
        Self {
            settings: MediationSettings {
                enabled: true,
                ..defaults()
            },
            sink: Arc::new(MemorySink::default()),
            invoker: Arc::new(FakeInvoker::default()),
            federation_active: true,
            visible: vec![TOOL.to_owned(), OTHER.to_owned()],
            workflows_supported: true,
        }
    }

    fn disabled() -> Self {
        Self {
            settings: defaults(),
            ..Self::enabled()
        }
    }

    fn with(mut self, f: impl FnOnce(&mut MediationSettings)) -> Self {
        f(&mut self.settings);
        self
    }

    fn script(mut self, tool: &str, answer: Result<InvokeOutcome, String>) -> Self {
        let mut invoker = FakeInvoker::default();
        invoker.script.insert(tool.to_owned(), answer);
        self.invoker = Arc::new(invoker);
        self
    }

    fn logging_invoker(mut self) -> Self {
        self.invoker = Arc::new(FakeInvoker {
            log: Some(Arc::clone(&self.sink)),
            ..FakeInvoker::default()
        });
        self
    }

    fn mediator(&self) -> Mediator {
        Mediator::new(
            self.settings.clone(),
            self.invoker.clone(),
            self.sink.clone(),
        )
    }

    async fn run_turn(&self, text: &str, turn: i64) -> MediationOutcome {
        self.try_run(text, turn).await.unwrap()
    }

    async fn run(&self, text: &str) -> MediationOutcome {
        self.run_turn(text, 1).await
    }

    async fn try_run(&self, text: &str, turn: i64) -> Result<MediationOutcome, StoreError> {
        let wd = PathBuf::from("/work/dir");
        self.mediator()
            .process(&MediationInput {
                output_text: text,
                session_id: SESSION,
                turn_index: turn,
                profile: Profile::General,
                working_directory: Some(&wd),
                federation_active: self.federation_active,
                visible_tools: &self.visible,
                workflows_supported: self.workflows_supported,
                progress: None,
            })
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Block builders
// ---------------------------------------------------------------------------------------------

fn request(id: &str, tool: &str) -> Value {
    json!({
        "mediation_version": "v0.8.0",
        "request_id": id,
        "action_type": "read",
        "target_tool": tool,
        "arguments": {"path": "/x"},
        "justification": "need the file",
    })
}

fn action(body: &Value) -> String {
    format!("<mediated_action_request>\n{body}\n</mediated_action_request>")
}

fn valid_action(id: &str, tool: &str) -> String {
    action(&request(id, tool))
}

fn with_field(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn step(index: Value, tool: &str) -> Value {
    json!({
        "step_index": index,
        "action_type": "lookup",
        "target_tool": tool,
        "arguments": {"q": "x"},
        "justification": "step why",
    })
}

fn workflow_body(id: &str, version: &str, steps: Vec<Value>) -> Value {
    json!({
        "mediation_version": version,
        "workflow_id": id,
        "justification": "wf why",
        "steps": steps,
    })
}

fn workflow(body: &Value) -> String {
    format!("<mediated_workflow_request>{body}</mediated_workflow_request>")
}

fn two_step_workflow(tool0: &str, tool1: &str) -> String {
    workflow(&workflow_body(
        "wf_001",
        "v0.9.0",
        vec![step(json!(0), tool0), step(json!(1), tool1)],
    ))
}

// ---------------------------------------------------------------------------------------------
// Gates: one row per gate and code, in order, first failure wins
// ---------------------------------------------------------------------------------------------

struct GateCase {
    name: &'static str,
    harness: fn() -> Harness,
    body: fn() -> Value,
    prior_approvals: usize,
    expected: Option<Rejection>,
}

fn body_default() -> Value {
    request("req_001", TOOL)
}

#[tokio::test]
async fn gates_run_in_order_and_the_first_failure_wins() {
    let cases = [
        GateCase {
            name: "all gates pass",
            harness: Harness::enabled,
            body: body_default,
            prior_approvals: 0,
            expected: None,
        },
        GateCase {
            name: "1 disabled",
            harness: Harness::disabled,
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::MediationDisabled),
        },
        GateCase {
            name: "1 disabled beats a bad version and an unknown tool",
            harness: Harness::disabled,
            body: || with_field(request("r", HIDDEN), "mediation_version", json!("v0.1")),
            prior_approvals: 0,
            expected: Some(Rejection::MediationDisabled),
        },
        GateCase {
            name: "2 unsupported version",
            harness: Harness::enabled,
            body: || with_field(body_default(), "mediation_version", json!("v0.5.0")),
            prior_approvals: 0,
            expected: Some(Rejection::UnsupportedMediationVersion),
        },
        GateCase {
            name: "2 a non-string version is stringified and rejected",
            harness: Harness::enabled,
            body: || with_field(body_default(), "mediation_version", json!(0.8)),
            prior_approvals: 0,
            expected: Some(Rejection::UnsupportedMediationVersion),
        },
        GateCase {
            name: "2 the workflow version is accepted on a single action",
            harness: Harness::enabled,
            body: || with_field(body_default(), "mediation_version", json!("v0.9.0")),
            prior_approvals: 0,
            expected: None,
        },
        GateCase {
            name: "2 version beats action type",
            harness: || Harness::enabled().with(|s| s.allowed_action_types = vec!["lookup".into()]),
            body: || with_field(body_default(), "mediation_version", json!("v1")),
            prior_approvals: 0,
            expected: Some(Rejection::UnsupportedMediationVersion),
        },
        GateCase {
            name: "3 action type not in the allowed set",
            harness: || Harness::enabled().with(|s| s.allowed_action_types = vec!["lookup".into()]),
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ActionTypeNotAllowed),
        },
        GateCase {
            name: "3 action type in the allowed set",
            harness: || {
                Harness::enabled()
                    .with(|s| s.allowed_action_types = vec!["inspect".into(), "read".into()])
            },
            body: body_default,
            prior_approvals: 0,
            expected: None,
        },
        GateCase {
            name: "3 action type beats the per-turn limit",
            harness: || {
                Harness::enabled().with(|s| {
                    s.allowed_action_types = vec!["lookup".into()];
                    s.max_actions_per_turn = 0;
                })
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ActionTypeNotAllowed),
        },
        GateCase {
            name: "4 per-turn limit of zero",
            harness: || Harness::enabled().with(|s| s.max_actions_per_turn = 0),
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::PerTurnActionLimitExceeded),
        },
        GateCase {
            name: "4 per-turn beats the session limit",
            harness: || {
                Harness::enabled().with(|s| {
                    s.max_actions_per_turn = 0;
                    s.max_session_approvals = 0;
                })
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::PerTurnActionLimitExceeded),
        },
        GateCase {
            name: "5 session limit reached by earlier approvals",
            harness: || Harness::enabled().with(|s| s.max_session_approvals = 3),
            body: body_default,
            prior_approvals: 3,
            expected: Some(Rejection::SessionApprovalLimitExceeded),
        },
        GateCase {
            name: "5 session limit not yet reached",
            harness: || Harness::enabled().with(|s| s.max_session_approvals = 3),
            body: body_default,
            prior_approvals: 2,
            expected: None,
        },
        GateCase {
            name: "5 session beats the deny list",
            harness: || {
                Harness::enabled().with(|s| {
                    s.max_session_approvals = 0;
                    s.denied_tools = vec![TOOL.into()];
                })
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::SessionApprovalLimitExceeded),
        },
        GateCase {
            name: "6 denied tool",
            harness: || Harness::enabled().with(|s| s.denied_tools = vec![TOOL.into()]),
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ToolNotAllowed),
        },
        GateCase {
            name: "6 deny wins over allow",
            harness: || {
                Harness::enabled().with(|s| {
                    s.denied_tools = vec![TOOL.into()];
                    s.allowed_tools = vec![TOOL.into()];
                })
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ToolNotAllowed),
        },
        GateCase {
            name: "7 not in the allow list",
            harness: || Harness::enabled().with(|s| s.allowed_tools = vec![OTHER.into()]),
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ToolNotAllowed),
        },
        GateCase {
            name: "7 in the allow list",
            harness: || Harness::enabled().with(|s| s.allowed_tools = vec![TOOL.into()]),
            body: body_default,
            prior_approvals: 0,
            expected: None,
        },
        GateCase {
            name: "7 allow list beats federation",
            harness: || {
                let mut h = Harness::enabled().with(|s| s.allowed_tools = vec![OTHER.into()]);
                h.federation_active = false;
                h
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::ToolNotAllowed),
        },
        GateCase {
            name: "8 federation inactive",
            harness: || {
                let mut h = Harness::enabled();
                h.federation_active = false;
                h.visible.clear();
                h
            },
            body: body_default,
            prior_approvals: 0,
            expected: Some(Rejection::FederationInactive),
        },
        GateCase {
            name: "8 federation beats visibility",
            harness: || {
                let mut h = Harness::enabled();
                h.federation_active = false;
                h
            },
            body: || request("req_001", HIDDEN),
            prior_approvals: 0,
            expected: Some(Rejection::FederationInactive),
        },
        GateCase {
            name: "9 tool not visible",
            harness: Harness::enabled,
            body: || request("req_001", HIDDEN),
            prior_approvals: 0,
            expected: Some(Rejection::ToolNotVisible),
        },
    ];
    for case in cases {
        let h = (case.harness)();
        for i in 0..case.prior_approvals {
            h.sink
                .append(
                    SESSION,
                    &MediationEvent::action_approved(
                        0,
                        &format!("old_{i}"),
                        TOOL,
                        agent_mediation::ActionType::Read,
                        "approved",
                    ),
                )
                .await
                .unwrap();
        }
        let body = (case.body)();
        let out = h.run(&action(&body)).await;
        let result = &out.actions[0];
        match case.expected {
            None => {
                assert_eq!(result.status, ResultStatus::Completed, "{}", case.name);
                assert_eq!(result.policy_decision, "approved", "{}", case.name);
                assert!(out.warnings.is_empty(), "{}", case.name);
            }
            Some(rejection) => {
                assert_eq!(result.status, ResultStatus::Rejected, "{}", case.name);
                assert_eq!(result.policy_decision, rejection.code(), "{}", case.name);
                let reason = rejection.failure_reason();
                assert_eq!(result.failure_reason.as_deref(), Some(reason.as_str()));
                assert_eq!(
                    h.sink.of(MEDIATED_ACTION_REJECTED),
                    [json!({
                        "request_id": body["request_id"],
                        "target_tool": body["target_tool"],
                        "policy_decision": rejection.code(),
                        "failure_reason": reason,
                    })],
                    "{}",
                    case.name
                );
                assert_eq!(
                    out.warnings,
                    [format!(
                        "Mediated action '{}' for tool '{}' rejected — {reason} (policy: {})",
                        body["request_id"].as_str().unwrap(),
                        body["target_tool"].as_str().unwrap(),
                        rejection.code()
                    )],
                    "{}",
                    case.name
                );
                assert!(h.invoker.calls().is_empty(), "{}", case.name);
            }
        }
    }
}

#[tokio::test]
async fn workflow_level_gates_run_in_order() {
    let three = || {
        vec![
            step(json!(0), TOOL),
            step(json!(1), TOOL),
            step(json!(2), TOOL),
        ]
    };
    let cases: [(&str, Harness, Value, Rejection); 4] = [
        (
            "disabled beats the version and the step count",
            Harness::disabled(),
            workflow_body("w", "v0.8.0", three()),
            Rejection::MediationDisabled,
        ),
        (
            "the version must be exactly v0.9.0",
            Harness::enabled().with(|s| s.max_workflow_steps = 5),
            workflow_body("w", "v0.8.0", three()),
            Rejection::UnsupportedMediationVersion,
        ),
        (
            "the version beats the step count",
            Harness::enabled(),
            workflow_body("w", "0.9", three()),
            Rejection::UnsupportedMediationVersion,
        ),
        (
            "more steps than the maximum",
            Harness::enabled().with(|s| s.max_workflow_steps = 2),
            workflow_body("w", "v0.9.0", three()),
            Rejection::WorkflowStepLimitExceeded,
        ),
    ];
    for (name, h, body, rejection) in cases {
        let out = h.run(&workflow(&body)).await;
        assert_eq!(out.workflows[0].rejection, Some(rejection), "{name}");
        assert_eq!(out.warnings.len(), 3, "{name}");
        assert!(
            h.sink.of(MEDIATED_WORKFLOW_STEP_REQUESTED).is_empty(),
            "{name}"
        );
        assert_eq!(
            h.sink.of(MEDIATED_WORKFLOW_STEP_REJECTED)[2],
            json!({
                "workflow_id": "w",
                "step_index": 2,
                "target_tool": TOOL,
                "policy_decision": rejection.code(),
                "rejection_reason": rejection.reason().as_str(),
            }),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Whole passes: `docs/reference/mediation.md#3-processing-order` to
// `docs/reference/mediation.md#8-continuation-summaries`
// ---------------------------------------------------------------------------------------------

/// Checks `docs/reference/mediation.md#1-scope`, `docs/reference/mediation.md#7-envelope-warnings`.
#[tokio::test]
async fn p193_disabled_mediation_rejects_with_the_exact_warning_and_two_events() {
    let h = Harness::disabled();
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_001' for tool 'files__read' rejected — execution mediation is disabled in config (policy: rejected:mediation_disabled)"
        ]
    );
    assert_eq!(
        h.sink.types(),
        [MEDIATED_ACTION_REQUESTED, MEDIATED_ACTION_REJECTED]
    );
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_REQUESTED),
        [json!({
            "request_id": "req_001",
            "action_type": "read",
            "target_tool": TOOL,
            "justification": "need the file",
            "mediation_version": "v0.8.0",
        })]
    );
    assert!(h.invoker.calls().is_empty());
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p194_inactive_federation_rejects_with_federation_inactive() {
    let mut h = Harness::enabled();
    h.federation_active = false;
    h.visible.clear();
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        out.actions[0].policy_decision,
        "rejected:federation_inactive"
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_001' for tool 'files__read' rejected — federation is not active in this runtime (policy: rejected:federation_inactive)"
        ]
    );
}

/// Checks `docs/reference/mediation.md#5-execution`.
#[tokio::test]
async fn p195_an_approved_request_runs_the_tool_with_its_arguments() {
    let h = Harness::enabled();
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        h.sink.types(),
        [
            MEDIATED_ACTION_REQUESTED,
            MEDIATED_ACTION_APPROVED,
            MEDIATED_ACTION_COMPLETED
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_APPROVED),
        [
            json!({"request_id": "req_001", "target_tool": TOOL, "action_type": "read", "policy_decision": "approved"})
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_COMPLETED),
        [json!({
            "request_id": "req_001",
            "target_tool": TOOL,
            "status": "completed",
            "arguments_summary": "path='/x'",
            "result_summary": "result of files__read",
            "failure_reason": null,
            "policy_decision": "approved",
        })]
    );
    assert_eq!(
        h.invoker.calls(),
        [(TOOL.to_owned(), json!({"path": "/x"}))]
    );
    let (ctx, _, _) = h.invoker.calls.lock().unwrap()[0].clone();
    assert_eq!(
        ctx,
        ToolCallContext {
            session_id: SESSION.into(),
            turn_index: 1,
            profile: Profile::General,
            working_directory: Some(PathBuf::from("/work/dir")),
        }
    );
    assert!(out.warnings.is_empty());
    assert_eq!(out.actions[0].status, ResultStatus::Completed);
    // Every event carries the execution's turn index.
    assert!(
        h.sink
            .events
            .lock()
            .unwrap()
            .iter()
            .all(|(_, e)| e.turn_index == 1)
    );
}

/// Checks `docs/reference/mediation.md#9-events`.
#[tokio::test]
async fn p196_the_completed_event_keeps_200_characters_of_the_result() {
    let text = "é".repeat(300);
    let h = Harness::enabled().script(
        TOOL,
        Ok(InvokeOutcome {
            success: true,
            text: text.clone(),
        }),
    );
    let out = h.run(&valid_action("req_001", TOOL)).await;
    let completed = &h.sink.of(MEDIATED_ACTION_COMPLETED)[0];
    assert_eq!(completed["result_summary"], json!("é".repeat(200)));
    assert_eq!(out.actions[0].result_summary, text);
    // Longer than 500: the result keeps 500 plus the marker; the event still 200.
    let long = "x".repeat(700);
    let h = Harness::enabled().script(
        TOOL,
        Ok(InvokeOutcome {
            success: true,
            text: long,
        }),
    );
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        out.actions[0].result_summary,
        format!("{} [truncated]", "x".repeat(500))
    );
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_COMPLETED)[0]["result_summary"],
        json!("x".repeat(200))
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p197_an_old_mediation_version_is_rejected() {
    let h = Harness::enabled();
    let body = with_field(body_default(), "mediation_version", json!("v0.5.0"));
    let out = h.run(&action(&body)).await;
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_001' for tool 'files__read' rejected — unsupported mediation_version (expected 'v0.8.0' or 'v0.9.0') (policy: rejected:unsupported_mediation_version)"
        ]
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p198_an_action_type_outside_the_allowed_set_is_rejected() {
    let h = Harness::enabled().with(|s| s.allowed_action_types = vec!["lookup".into()]);
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        out.actions[0].policy_decision,
        "rejected:action_type_not_allowed"
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p199_the_per_turn_limit_rejects_the_second_request() {
    let h = Harness::enabled();
    let text = format!(
        "{}\ntext between\n{}",
        valid_action("req_001", TOOL),
        valid_action("req_002", TOOL)
    );
    let out = h.run(&text).await;
    assert_eq!(out.actions[0].status, ResultStatus::Completed);
    assert_eq!(
        out.actions[1].policy_decision,
        "rejected:per_turn_action_limit_exceeded"
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_002' for tool 'files__read' rejected — per-turn mediated action count limit exceeded (policy: rejected:per_turn_action_limit_exceeded)"
        ]
    );
    assert_eq!(h.invoker.calls().len(), 1);
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p200_a_denied_tool_is_rejected_even_when_allowed() {
    let h = Harness::enabled().with(|s| {
        s.denied_tools = vec![TOOL.into()];
        s.allowed_tools = vec![TOOL.into()];
    });
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(out.actions[0].policy_decision, "rejected:tool_not_allowed");
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p201_a_visible_tool_outside_the_allow_list_is_rejected() {
    let h = Harness::enabled().with(|s| s.allowed_tools = vec![OTHER.into()]);
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(out.actions[0].policy_decision, "rejected:tool_not_allowed");
    assert_eq!(
        out.actions[0].failure_reason.as_deref(),
        Some("target_tool is in the denied list or not in the allowed list")
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p202_a_tool_not_visible_to_the_profile_is_rejected() {
    let h = Harness::enabled();
    let out = h.run(&valid_action("req_001", HIDDEN)).await;
    assert_eq!(out.actions[0].policy_decision, "rejected:tool_not_visible");
}

/// Checks `docs/reference/mediation.md#3-processing-order`,
/// `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p203_the_session_limit_counts_approvals_of_earlier_turns() {
    let h = Harness::enabled().with(|s| s.max_session_approvals = 2);
    for turn in 1..=2 {
        let out = h.run_turn(&valid_action("req_001", TOOL), turn).await;
        assert_eq!(
            out.actions[0].status,
            ResultStatus::Completed,
            "turn {turn}"
        );
    }
    let out = h.run_turn(&valid_action("req_001", TOOL), 3).await;
    assert_eq!(
        out.actions[0].policy_decision,
        "rejected:session_approval_limit_exceeded"
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_001' for tool 'files__read' rejected — session-level mediated approval limit exceeded (policy: rejected:session_approval_limit_exceeded)"
        ]
    );
}

/// Checks `docs/reference/mediation.md#2-blocks`.
#[tokio::test]
async fn p204_malformed_blocks_produce_nothing() {
    let h = Harness::enabled();
    let missing_justification = {
        let mut body = body_default();
        body.as_object_mut().unwrap().remove("justification");
        body
    };
    let text = [
        "<mediated_action_request>{\"mediation_version\": \"v0.8.0\", oops}</mediated_action_request>"
            .to_owned(),
        "<mediated_action_request>[1, 2]</mediated_action_request>".to_owned(),
        "<mediated_action_request>{\"a\": 1} trailing}</mediated_action_request>".to_owned(),
        action(&missing_justification),
        action(&with_field(body_default(), "action_type", json!("delete"))),
    ]
    .join("\n");
    let out = h.run(&text).await;
    assert!(out.actions.is_empty());
    assert!(out.warnings.is_empty());
    assert!(h.sink.types().is_empty());
    assert!(h.invoker.calls().is_empty());
    assert_eq!(
        out.skipped_blocks, 4,
        "the array body never matches the pattern"
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p205_too_many_workflow_steps_reject_every_step() {
    let h = Harness::enabled();
    let out = h.run(&two_step_workflow(TOOL, TOOL)).await;
    assert_eq!(
        h.sink.types(),
        [
            MEDIATED_WORKFLOW_REQUESTED,
            MEDIATED_WORKFLOW_STEP_REJECTED,
            MEDIATED_WORKFLOW_STEP_REJECTED,
            MEDIATED_WORKFLOW_COMPLETED
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_REQUESTED),
        [
            json!({"workflow_id": "wf_001", "step_count": 2, "mediation_version": "v0.9.0", "justification": "wf why"})
        ]
    );
    for (i, payload) in h
        .sink
        .of(MEDIATED_WORKFLOW_STEP_REJECTED)
        .iter()
        .enumerate()
    {
        assert_eq!(
            payload,
            &json!({
                "workflow_id": "wf_001",
                "step_index": i,
                "target_tool": TOOL,
                "policy_decision": "rejected:workflow_step_limit_exceeded",
                "rejection_reason": "workflow_step_limit_exceeded",
            })
        );
    }
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_COMPLETED),
        [
            json!({"workflow_id": "wf_001", "total_steps": 2, "approved_steps": 0, "rejected_steps": 2, "completed_steps": 0, "failed_steps": 0})
        ]
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'wf_step_0' for tool 'files__read' rejected — workflow step count exceeds the configured maximum (policy: rejected:workflow_step_limit_exceeded)",
            "Mediated action 'wf_step_1' for tool 'files__read' rejected — workflow step count exceeds the configured maximum (policy: rejected:workflow_step_limit_exceeded)",
        ]
    );
}

/// Checks `docs/reference/mediation.md#4-validation-gates`.
#[tokio::test]
async fn p206_a_workflow_with_the_action_version_is_rejected_at_workflow_level() {
    let h = Harness::enabled();
    let body = workflow_body("wf_001", "v0.8.0", vec![step(json!(0), TOOL)]);
    let out = h.run(&workflow(&body)).await;
    assert_eq!(
        out.workflows[0].rejection,
        Some(Rejection::UnsupportedMediationVersion)
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'wf_step_0' for tool 'files__read' rejected — unsupported mediation_version (expected 'v0.8.0' or 'v0.9.0') (policy: rejected:unsupported_mediation_version)"
        ]
    );
}

/// Checks `docs/reference/mediation.md#3-processing-order`.
#[tokio::test]
async fn p207_a_denied_step_does_not_stop_the_workflow() {
    let h = Harness::enabled().with(|s| {
        s.max_workflow_steps = 2;
        s.max_actions_per_turn = 2;
        s.denied_tools = vec![OTHER.into()];
    });
    let out = h.run(&two_step_workflow(TOOL, OTHER)).await;
    assert_eq!(
        h.sink.types(),
        [
            MEDIATED_WORKFLOW_REQUESTED,
            MEDIATED_WORKFLOW_STEP_REQUESTED,
            MEDIATED_WORKFLOW_STEP_APPROVED,
            MEDIATED_WORKFLOW_STEP_COMPLETED,
            MEDIATED_WORKFLOW_STEP_REQUESTED,
            MEDIATED_WORKFLOW_STEP_REJECTED,
            MEDIATED_WORKFLOW_COMPLETED
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_COMPLETED),
        [
            json!({"workflow_id": "wf_001", "total_steps": 2, "approved_steps": 1, "rejected_steps": 1, "completed_steps": 1, "failed_steps": 0})
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_STEP_REQUESTED)[0],
        json!({"workflow_id": "wf_001", "step_index": 0, "action_type": "lookup", "target_tool": TOOL, "justification": "step why"})
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_STEP_APPROVED),
        [
            json!({"workflow_id": "wf_001", "step_index": 0, "target_tool": TOOL, "action_type": "lookup", "policy_decision": "approved"})
        ]
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_STEP_COMPLETED),
        [json!({
            "workflow_id": "wf_001",
            "step_index": 0,
            "target_tool": TOOL,
            "status": "completed",
            "arguments_summary": "q='x'",
            "result_summary": "result of files__read",
            "failure_reason": null,
            "policy_decision": "approved",
        })]
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_STEP_REJECTED),
        [json!({
            "workflow_id": "wf_001",
            "step_index": 1,
            "target_tool": OTHER,
            "policy_decision": "rejected:tool_not_allowed",
            "rejection_reason": "tool_not_allowed",
            "failure_reason": "target_tool is in the denied list or not in the allowed list",
        })]
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'wf_step_1' for tool 'files__stat' rejected — target_tool is in the denied list or not in the allowed list (policy: rejected:tool_not_allowed)"
        ]
    );
}

/// Checks `docs/reference/mediation.md#5-execution`.
#[tokio::test]
async fn p208_a_refused_invocation_fails_without_a_warning() {
    let refusal = "Tool 'files__read' is missing required arguments: ['path']";
    let h = Harness::enabled().script(TOOL, Err(refusal.to_owned()));
    let body = with_field(body_default(), "arguments", json!({}));
    let out = h.run(&action(&body)).await;
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_COMPLETED),
        [json!({
            "request_id": "req_001",
            "target_tool": TOOL,
            "status": "failed",
            "arguments_summary": "(no arguments)",
            "result_summary": "",
            "failure_reason": refusal,
            "policy_decision": "completed_with_execution_failure",
        })]
    );
    assert_eq!(out.actions[0].status, ResultStatus::Failed);
    assert!(out.warnings.is_empty());
}

#[tokio::test]
async fn a_downstream_failure_that_was_attempted_counts_as_completed() {
    // **[kept]** quirk of `docs/reference/mediation.md#5-execution`: the invoker returned, so the
    // action is `completed` with the error text.
    let h = Harness::enabled().script(
        TOOL,
        Ok(InvokeOutcome {
            success: false,
            text: "Error: connection refused".into(),
        }),
    );
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(out.actions[0].status, ResultStatus::Completed);
    assert_eq!(out.actions[0].result_summary, "Error: connection refused");
    assert!(out.warnings.is_empty());
}

/// What the next continuation prompt shows after `sink`'s events.
fn next_continuation_prompt(sink: &MemorySink, inclusion: MediationInclusion) -> String {
    let now = Timestamp::now();
    let record = SessionRecord {
        session_id: SESSION.into(),
        workflow: Workflow::RunTask,
        profile: Profile::General,
        provider: "claude_code".into(),
        provider_session_id: None,
        status: SessionStatus::Completed,
        working_directory: None,
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        request_count: 1,
        turn_count: 1,
        artifact_count: 0,
        summary_latest: None,
        locked_by: None,
        lock_expires_at: None,
        lock_generation: 0,
        fork: None,
        usage: Default::default(),
    };
    let context = build_context(&record, &sink.stored(), &WindowPolicy::default(), inclusion);
    agent_backends::claude_code::prompt::continuation_prompt("", "next", &context, &[])
}

/// Checks `docs/reference/mediation.md#8-continuation-summaries`.
#[tokio::test]
async fn p209_results_appear_in_the_next_continuation_prompt() {
    let h = Harness::enabled().with(|s| s.max_actions_per_turn = 2);
    let text = format!(
        "{}{}",
        valid_action("req_001", TOOL),
        valid_action("req_002", HIDDEN)
    );
    h.run(&text).await;
    let prompt = next_continuation_prompt(
        &h.sink,
        MediationInclusion {
            include_mediated: true,
            include_rejected: false,
        },
    );
    assert!(prompt.contains("[Mediated Execution Context]"), "{prompt}");
    assert!(
        prompt.contains("\n- Tool files__read: result of files__read\n"),
        "{prompt}"
    );
    assert!(prompt.contains("runtime-mediated"), "{prompt}");
    assert!(
        !prompt.contains(HIDDEN),
        "rejected items stay out: {prompt}"
    );
}

/// Checks `docs/reference/mediation.md#8-continuation-summaries`.
#[tokio::test]
async fn p210_no_section_when_inclusion_is_off() {
    let h = Harness::enabled();
    h.run(&valid_action("req_001", TOOL)).await;
    let prompt = next_continuation_prompt(&h.sink, MediationInclusion::default());
    assert!(!prompt.contains("[Mediated Execution Context]"), "{prompt}");
}

/// Checks `docs/reference/mediation.md#8-continuation-summaries`.
#[tokio::test]
async fn p211_rejected_actions_appear_when_rejected_inclusion_is_on() {
    let h = Harness::enabled();
    h.run(&valid_action("req_001", HIDDEN)).await;
    let prompt = next_continuation_prompt(
        &h.sink,
        MediationInclusion {
            include_mediated: true,
            include_rejected: true,
        },
    );
    assert!(
        prompt.contains(
            "- Tool admin__secret (rejected): target_tool is not visible for the active profile"
        ),
        "{prompt}"
    );
    // Workflow summaries follow the action summaries, failed steps included.
    let h = Harness::enabled()
        .with(|s| {
            s.max_workflow_steps = 2;
            s.max_actions_per_turn = 5;
        })
        .script(OTHER, Err("boom".into()));
    h.run(&format!(
        "{}{}",
        two_step_workflow(TOOL, OTHER),
        valid_action("req_009", HIDDEN)
    ))
    .await;
    let prompt = next_continuation_prompt(
        &h.sink,
        MediationInclusion {
            include_mediated: true,
            include_rejected: true,
        },
    );
    let section: Vec<&str> = prompt.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(
        section,
        [
            "- Tool admin__secret (rejected): target_tool is not visible for the active profile",
            "- Workflow wf_001 step 0: tool files__read: result of files__read",
            "- Workflow wf_001 step 1: tool files__stat (failed): boom",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Processing order, counting and the deliberate deviations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn actions_run_before_workflows_and_warnings_follow_processing_order() {
    let h = Harness::enabled().with(|s| {
        s.max_workflow_steps = 2;
        s.max_actions_per_turn = 2;
    });
    // The workflow comes first in the text but is processed after the actions.
    let text = format!(
        "{}{}{}",
        two_step_workflow(TOOL, HIDDEN),
        valid_action("req_001", HIDDEN),
        valid_action("req_002", TOOL)
    );
    let out = h.run(&text).await;
    // req_001 is rejected (no slot used), req_002 takes slot 1, workflow step 0 slot 2, and
    // step 1 finds both used.
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'req_001' for tool 'admin__secret' rejected — target_tool is not visible for the active profile (policy: rejected:tool_not_visible)",
            "Mediated action 'wf_step_1' for tool 'admin__secret' rejected — per-turn mediated action count limit exceeded (policy: rejected:per_turn_action_limit_exceeded)",
        ]
    );
    assert_eq!(
        h.invoker
            .calls()
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
        [TOOL, TOOL]
    );
    let order: Vec<&str> = h.sink.types();
    assert_eq!(order[0], MEDIATED_ACTION_REQUESTED);
    assert_eq!(order[order.len() - 1], MEDIATED_WORKFLOW_COMPLETED);
}

#[tokio::test]
async fn a_workflow_counts_from_the_approvals_of_the_single_actions() {
    let h = Harness::enabled().with(|s| {
        s.max_workflow_steps = 3;
        s.max_actions_per_turn = 3;
    });
    let steps = vec![
        step(json!(0), TOOL),
        step(json!(1), TOOL),
        step(json!(2), TOOL),
    ];
    let text = format!(
        "{}{}",
        valid_action("req_001", TOOL),
        workflow(&workflow_body("wf", "v0.9.0", steps))
    );
    let out = h.run(&text).await;
    let statuses: Vec<ResultStatus> = out.workflows[0].steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            ResultStatus::Completed,
            ResultStatus::Completed,
            ResultStatus::Rejected
        ]
    );
    assert_eq!(
        out.workflows[0].steps[2].policy_decision,
        "rejected:per_turn_action_limit_exceeded"
    );
}

#[tokio::test]
async fn failed_executions_use_up_a_per_turn_slot_for_actions_and_steps_alike() {
    // Deviation from the original (**[fixed]** in
    // `docs/reference/mediation.md#3-processing-order`), which did not count a failed single
    // action: every approval counts, whatever its execution outcome.
    let h = Harness::enabled()
        .with(|s| s.max_actions_per_turn = 1)
        .script(TOOL, Err("refused".into()));
    let text = format!(
        "{}{}",
        valid_action("req_001", TOOL),
        valid_action("req_002", OTHER)
    );
    let out = h.run(&text).await;
    assert_eq!(out.actions[0].status, ResultStatus::Failed);
    assert_eq!(
        out.actions[1].policy_decision,
        "rejected:per_turn_action_limit_exceeded"
    );

    // A failed step followed by a single-action-sized limit: the failed step counted inside
    // the workflow and still counts after it.
    let h = Harness::enabled()
        .with(|s| {
            s.max_actions_per_turn = 2;
            s.max_workflow_steps = 1;
        })
        .script(TOOL, Err("refused".into()));
    let text = format!(
        "{}{}",
        workflow(&workflow_body("wf_a", "v0.9.0", vec![step(json!(0), TOOL)])),
        workflow(&workflow_body(
            "wf_b",
            "v0.9.0",
            vec![step(json!(0), OTHER)]
        ))
    );
    let out = h.run(&text).await;
    assert_eq!(out.workflows[0].tally.failed_steps, 1);
    assert_eq!(out.workflows[1].tally.completed_steps, 1);
    let h2 = Harness::enabled()
        .with(|s| {
            s.max_actions_per_turn = 1;
            s.max_workflow_steps = 1;
        })
        .script(TOOL, Err("refused".into()));
    let out = h2.run(&text).await;
    assert_eq!(out.workflows[0].tally.failed_steps, 1);
    assert_eq!(
        out.workflows[1].steps[0].policy_decision,
        "rejected:per_turn_action_limit_exceeded"
    );
}

#[tokio::test]
async fn a_malformed_step_index_rejects_only_that_step() {
    // Deviation: the original crashed the whole run; here the step is rejected as malformed
    // (**[fixed]** in `docs/reference/mediation.md#2-blocks`).
    let h = Harness::enabled().with(|s| {
        s.max_workflow_steps = 2;
        s.max_actions_per_turn = 2;
    });
    let body = workflow_body(
        "wf_001",
        "v0.9.0",
        vec![step(json!("x"), TOOL), step(json!(1), TOOL)],
    );
    let out = h.run(&workflow(&body)).await;
    assert_eq!(
        out.workflows[0].steps[0].step.as_ref().unwrap().step_index,
        StepIndex::Malformed(json!("x"))
    );
    assert_eq!(
        h.sink.of(MEDIATED_WORKFLOW_STEP_REJECTED),
        [json!({
            "workflow_id": "wf_001",
            "step_index": "x",
            "target_tool": TOOL,
            "policy_decision": "rejected:malformed_request",
            "rejection_reason": "malformed_request",
            "failure_reason": "request could not be parsed (malformed)",
        })]
    );
    assert_eq!(
        out.warnings,
        [
            "Mediated action 'wf_step_x' for tool 'files__read' rejected — request could not be parsed (malformed) (policy: rejected:malformed_request)"
        ]
    );
    assert_eq!(out.workflows[0].tally.completed_steps, 1);
    assert_eq!(h.invoker.calls().len(), 1);
}

#[tokio::test]
async fn workflow_blocks_are_ignored_without_backend_support() {
    let mut h = Harness::enabled();
    h.workflows_supported = false;
    let out = h.run(&two_step_workflow(TOOL, TOOL)).await;
    assert_eq!(out, MediationOutcome::default());
    assert!(h.sink.types().is_empty());
}

#[tokio::test]
async fn text_without_blocks_touches_nothing() {
    let mut h = Harness::enabled();
    h.sink = Arc::new(MemorySink {
        fail_count: true,
        fail_append_at: Some(0),
        ..MemorySink::default()
    });
    let out = h
        .try_run("plain text mentioning <mediated_action_request> once", 1)
        .await
        .unwrap();
    assert_eq!(out, MediationOutcome::default());
}

#[tokio::test]
async fn events_interleave_with_the_invokers_own_events() {
    let h = Harness::enabled().logging_invoker();
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(
        h.sink.types(),
        [
            MEDIATED_ACTION_REQUESTED,
            MEDIATED_ACTION_APPROVED,
            "downstream_tool_invocation",
            "downstream_tool_result",
            MEDIATED_ACTION_COMPLETED
        ]
    );
    // The outcome lists only the mediation events.
    let types: Vec<&str> = out.events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            MEDIATED_ACTION_REQUESTED,
            MEDIATED_ACTION_APPROVED,
            MEDIATED_ACTION_COMPLETED
        ]
    );
}

#[tokio::test]
async fn a_failed_approval_count_counts_as_zero() {
    let mut h = Harness::enabled().with(|s| s.max_session_approvals = 1);
    h.sink = Arc::new(MemorySink {
        fail_count: true,
        ..MemorySink::default()
    });
    let out = h.run(&valid_action("req_001", TOOL)).await;
    assert_eq!(out.actions[0].status, ResultStatus::Completed);
}

#[tokio::test]
async fn an_event_that_cannot_be_written_stops_the_pass() {
    let mut h = Harness::enabled();
    h.sink = Arc::new(MemorySink {
        fail_append_at: Some(1),
        ..MemorySink::default()
    });
    let err = h
        .try_run(&valid_action("req_001", TOOL), 1)
        .await
        .unwrap_err();
    assert_eq!(err.message, "disk full");
    assert!(h.invoker.calls().is_empty(), "nothing runs unaudited");
}

#[tokio::test]
async fn justifications_are_cut_to_200_characters_in_events() {
    let h = Harness::enabled();
    let body = with_field(body_default(), "justification", json!("j".repeat(250)));
    h.run(&action(&body)).await;
    assert_eq!(
        h.sink.of(MEDIATED_ACTION_REQUESTED)[0]["justification"],
        json!("j".repeat(200))
    );
}

#[tokio::test]
async fn the_output_text_is_left_alone() {
    // Item 213 at this level: mediation only reads the text (the engine returns it as is).
    let h = Harness::enabled();
    let text = valid_action("req_001", TOOL);
    let copy = text.clone();
    h.run(&text).await;
    assert_eq!(text, copy);
}

// ---------------------------------------------------------------------------------------------
// The store-backed sink
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_store_sink_counts_approval_events() {
    let store = Arc::new(MemStore::new());
    for event_type in [
        MEDIATED_ACTION_REQUESTED,
        MEDIATED_ACTION_APPROVED,
        "downstream_tool_result",
        MEDIATED_WORKFLOW_STEP_APPROVED,
        MEDIATED_ACTION_COMPLETED,
    ] {
        store.seed_raw_event(SESSION, event_type, 1, json!({}));
    }
    let sink = StoreEventSink::new(store);
    assert_eq!(sink.prior_approvals(SESSION).await.unwrap(), 2);
}

#[tokio::test]
async fn the_store_sink_writes_core_events_once_event_type_knows_them() {
    let store = Arc::new(MemStore::new());
    let sink = StoreEventSink::new(store.clone());
    let event = MediationEvent::action_rejected(4, "r", TOOL, "rejected:x", "why");
    let written = sink.append(SESSION, &event).await;
    if agent_core::EventType::parse(MEDIATED_ACTION_REJECTED).is_some() {
        written.unwrap();
        let appended: Vec<Event> = store.appended().into_iter().map(|(_, e)| e).collect();
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].event_type.as_str(), MEDIATED_ACTION_REJECTED);
        assert_eq!(appended[0].turn_index, 4);
        assert_eq!(appended[0].payload, event.payload);
        // Every mediation type must then be known.
        for t in ALL_EVENT_TYPES {
            assert!(agent_core::EventType::parse(t).is_some(), "{t}");
        }
    } else {
        // Until `EventType` lists the mediation types, nothing is written half-way.
        let err = written.unwrap_err();
        assert!(err.message.contains(MEDIATED_ACTION_REJECTED), "{err}");
        assert!(store.appended().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Teaching prompt
// ---------------------------------------------------------------------------------------------

fn tool_def(name: &str, description: &str, schema: Value) -> ToolDefinition {
    ToolDefinition {
        name: name.into(),
        description: description.into(),
        input_schema: schema.into(),
    }
}

fn catalog() -> Vec<ToolDefinition> {
    vec![
        tool_def(
            TOOL,
            "Reads a file.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
        tool_def(
            OTHER,
            "Stats a file.",
            json!({"type": "object", "properties": {"path": {}}}),
        ),
    ]
}

#[test]
fn the_teaching_prompt_is_absent_unless_something_can_be_requested() {
    let enabled = preset("mediation_enabled");
    assert!(teaching_prompt(&defaults(), &catalog()).is_none());
    assert!(teaching_prompt(&enabled, &[]).is_none());
    let mut all_denied = enabled.clone();
    all_denied.denied_tools = vec![TOOL.into(), OTHER.into()];
    assert!(teaching_prompt(&all_denied, &catalog()).is_none());
    let mut no_types = enabled.clone();
    no_types.allowed_action_types = vec!["write".into()];
    assert!(teaching_prompt(&no_types, &catalog()).is_none());
    let mut zero = enabled;
    zero.max_actions_per_turn = 0;
    assert!(teaching_prompt(&zero, &catalog()).is_none());
}

#[test]
fn the_teaching_prompt_pins_its_text() {
    let mut settings = preset("mediation_enabled");
    settings.denied_tools = vec![OTHER.into()];
    let prompt = teaching_prompt(&settings, &catalog()).unwrap();
    assert_eq!(
        prompt,
        [
            "[Mediated Tool Requests]",
            "You cannot call tools directly here, but the runtime can run a few read-only tools for you. After your reply is complete, it scans the reply for request blocks, checks each one against its policy and runs the approved ones. You will not see any result in this reply.",
            "A summary of each result is given to you at the start of the next turn of this session, under [Mediated Execution Context].",
            "To request a tool, put a block like this in your reply (exactly one JSON object between the tags):",
            "<mediated_action_request>",
            r#"{"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read","target_tool":"<tool name>","arguments":{"<argument>":"<value>"},"justification":"<why you need it>"}"#,
            "</mediated_action_request>",
            r#"- action_type: "read", "lookup" or "inspect"."#,
            "- target_tool: exactly one of the tool names listed below; any other name is rejected.",
            "- arguments: a JSON object with the tool's arguments (names marked * are required).",
            "- request_id: a new id for each request; justification: one short sentence.",
            "- At most 3 requests per reply are approved; further ones are rejected. This session allows 50 approvals in total.",
            "Request a tool only when you need its result, and never write as if a request had already run.",
            "Tools you may request:",
            "- files__read: Reads a file. (arguments: path*)",
        ]
        .join("\n")
    );
    assert!(prompt.starts_with(HEADER_MEDIATED_TOOL_REQUESTS));
}

#[test]
fn the_taught_blocks_parse_and_the_workflow_part_depends_on_the_step_limit() {
    let mut settings = preset("workflow_limited");
    settings.allowed_action_types = vec!["lookup".into()];
    settings.include_results_in_continuation = false;
    settings.max_actions_per_turn = 1;
    let prompt = teaching_prompt(&settings, &catalog()).unwrap();
    assert!(prompt.contains(r#"- action_type: "lookup"."#), "{prompt}");
    assert!(
        prompt.contains("At most 1 request per reply is approved"),
        "{prompt}"
    );
    assert!(
        prompt.contains("they are not shown to you later"),
        "{prompt}"
    );
    assert!(
        prompt.contains("To request up to 3 steps at once"),
        "{prompt}"
    );
    assert!(prompt.contains("- files__stat: Stats a file. (arguments: path)"));
    let blocks = parse_blocks(&prompt);
    assert_eq!(blocks.actions.len(), 1);
    assert_eq!(blocks.workflows.len(), 1);
    assert_eq!(blocks.actions[0].mediation_version, "v0.8.0");
    assert_eq!(blocks.workflows[0].mediation_version, "v0.9.0");
    assert!(blocks.skipped.is_empty());

    let single = preset("mediation_enabled");
    let prompt = teaching_prompt(&single, &catalog()).unwrap();
    assert!(!prompt.contains("mediated_workflow_request"), "{prompt}");
}

// ---------------------------------------------------------------------------------------------
// Property test: the parser (and the whole pass) never panics
// ---------------------------------------------------------------------------------------------

const FRAGMENTS: &[&str] = &[
    "<mediated_action_request>",
    "</mediated_action_request>",
    "<mediated_workflow_request>",
    "</mediated_workflow_request>",
    "<mediated_action_request",
    "</mediated_workflow_request",
    "<MEDIATED_ACTION_REQUEST>",
    "mediated_",
    "<",
    ">",
    "</",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\\",
    "\\u",
    "\\ud800",
    "\\u0000",
    " ",
    "\n",
    "\t",
    "\u{a0}",
    "\u{1c}",
    "\u{2028}",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1e400",
    "-1.5e-7",
    "18446744073709551616",
    "\"mediation_version\":\"v0.8.0\"",
    "\"mediation_version\":\"v0.9.0\"",
    "\"request_id\":\"r\"",
    "\"action_type\":\"read\"",
    "\"action_type\":\"delete\"",
    "\"target_tool\":\"files__read\"",
    "\"arguments\":",
    "\"arguments\":[1]",
    "\"justification\":\"j\"",
    "\"workflow_id\":\"w\"",
    "\"steps\":[",
    "\"step_index\":",
    "\"step_index\":\"x\"",
    r#"{"mediation_version":"v0.8.0","request_id":"r","action_type":"read","target_tool":"files__read","arguments":{"path":"/x"},"justification":"j"}"#,
    r#"{"mediation_version":"v0.9.0","workflow_id":"w","steps":[{"action_type":"lookup","target_tool":"files__read","justification":"s"},{"step_index":null,"action_type":"inspect","target_tool":"admin__secret","justification":"s"}]}"#,
    "é",
    "世界",
    "🎉",
    "\u{202e}",
    "\u{301}",
    "\u{feff}",
];

const ACTION_BODY: &str = r#"{"mediation_version":"v0.8.0","request_id":"r","action_type":"read","target_tool":"files__read","arguments":{"path":"/x"},"justification":"j"}"#;
const WORKFLOW_BODY: &str = r#"{"mediation_version":"v0.9.0","workflow_id":"w","steps":[{"step_index":0,"action_type":"lookup","target_tool":"files__stat","justification":"s"},{"action_type":"inspect","target_tool":"files__read","arguments":{},"justification":"s"}]}"#;

/// A whole block around a valid body, which is mutated half of the time by splicing a random
/// fragment in at a random character boundary.
fn random_block(rng: &mut fastrand::Rng) -> String {
    let (tag, body) = if rng.bool() {
        ("mediated_action_request", ACTION_BODY)
    } else {
        ("mediated_workflow_request", WORKFLOW_BODY)
    };
    let mut body = body.to_owned();
    if rng.bool() {
        let boundaries: Vec<usize> = (0..=body.len())
            .filter(|i| body.is_char_boundary(*i))
            .collect();
        let at = boundaries[rng.usize(0..boundaries.len())];
        body.insert_str(at, FRAGMENTS[rng.usize(0..FRAGMENTS.len())]);
    }
    let ws = ["", " ", "\n", "\t\n  ", "\u{a0}", "\u{1c}"];
    format!(
        "<{tag}>{}{body}{}</{tag}>",
        ws[rng.usize(0..ws.len())],
        ws[rng.usize(0..ws.len())]
    )
}

fn random_text(rng: &mut fastrand::Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.usize(0..40) {
        match rng.usize(0..12) {
            0 => {
                for _ in 0..rng.usize(1..8) {
                    text.push(rng.char(..));
                }
            }
            1 => text.push_str(&"[".repeat(rng.usize(100..300))),
            2 => text.push_str(&"{\"a\":".repeat(rng.usize(1..200))),
            3 | 4 => text.push_str(&random_block(rng)),
            _ => text.push_str(FRAGMENTS[rng.usize(0..FRAGMENTS.len())]),
        }
    }
    text
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn the_parser_never_panics_on_arbitrary_text() {
    let mut rng = fastrand::Rng::with_seed(0x6d65_6469_6174_6521);
    let mut found = (0, 0, 0);
    for case in 0..20_000 {
        let text = random_text(&mut rng);
        let blocks = parse_blocks(&text);
        let action_tags = count(&text, "<mediated_action_request>");
        let workflow_tags = count(&text, "<mediated_workflow_request>");
        let skipped_actions = blocks
            .skipped
            .iter()
            .filter(|s| s.kind == agent_mediation::BlockKind::Action)
            .count();
        assert!(
            blocks.actions.len() + skipped_actions <= action_tags,
            "case {case}: {text:?}"
        );
        assert!(
            blocks.workflows.len() + blocks.skipped.len() - skipped_actions <= workflow_tags,
            "case {case}: {text:?}"
        );
        for w in &blocks.workflows {
            assert!(!w.steps.is_empty());
        }
        for s in &blocks.skipped {
            assert!(text.is_char_boundary(s.offset));
        }
        found.0 += blocks.actions.len();
        found.1 += blocks.workflows.len();
        found.2 += blocks.skipped.len();
    }
    // The generator does reach every branch.
    assert!(found.0 > 0 && found.1 > 0 && found.2 > 0, "{found:?}");
}

#[tokio::test]
async fn the_whole_pass_never_panics_and_warns_once_per_rejection() {
    let mut rng = fastrand::Rng::with_seed(42);
    let h = Harness::enabled().with(|s| {
        s.max_workflow_steps = 2;
        s.max_actions_per_turn = 3;
        s.max_session_approvals = 1_000_000;
    });
    for case in 0..2_000 {
        h.sink.clear();
        let text = random_text(&mut rng);
        let out = h.run(&text).await;
        let rejected = out
            .results()
            .filter(|r| r.status == ResultStatus::Rejected)
            .count();
        assert_eq!(out.warnings.len(), rejected, "case {case}: {text:?}");
        assert_eq!(out.events.len(), h.sink.types().len(), "case {case}");
        let approved_events = h
            .sink
            .types()
            .iter()
            .filter(|t| agent_mediation::APPROVAL_EVENT_TYPES.contains(t))
            .count();
        assert_eq!(
            approved_events,
            out.results().filter(|r| r.approved()).count(),
            "case {case}"
        );
        assert!(approved_events <= 3, "per-turn limit holds: case {case}");
    }
}

// ---------------------------------------------------------------------------------------------
// Property campaign (#12): model output is untrusted; no block may panic the parser or the
// mediator, and every block found is accounted for.
// ---------------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use agent_mediation::block::parse_blocks;
    use proptest::prelude::*;

    fn config(cost: u32) -> ProptestConfig {
        ProptestConfig::with_cases(agent_testkit::peers::proptest_cases(cost))
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            prop_oneof![
                Just(0i64),
                Just(-1),
                Just(i64::MIN),
                Just(i64::MAX),
                any::<i64>()
            ]
            .prop_map(Value::from),
            prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::from),
            prop::sample::select(vec![
                "read", "lookup", "v0.8.0", "v0.9.0", TOOL, OTHER, HIDDEN
            ])
            .prop_map(Value::from),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const ACTION_KEYS: &[&str] = &[
        "mediation_version",
        "request_id",
        "action_type",
        "target_tool",
        "arguments",
        "justification",
    ];

    /// A valid action request with some fields replaced by arbitrary values.
    fn near_action() -> impl Strategy<Value = Value> {
        prop::collection::vec((prop::sample::select(ACTION_KEYS), arb_json()), 0..3).prop_map(
            |changes| {
                let mut body = request("req_001", TOOL);
                for (k, v) in changes {
                    body[k] = v;
                }
                body
            },
        )
    }

    /// A workflow whose steps are near-valid (arbitrary `step_index`, fields, or whole steps).
    fn near_workflow() -> impl Strategy<Value = Value> {
        let step_value = prop_oneof![
            (arb_json(), prop::sample::select(vec![TOOL, OTHER, HIDDEN]))
                .prop_map(|(i, t)| step(i, t)),
            Just(step(json!(0), TOOL)),
            arb_json(),
        ];
        (
            prop::sample::select(vec!["v0.9.0", "v0.8.0", ""]),
            prop_oneof![
                prop::collection::vec(step_value, 0..5).prop_map(Value::from),
                arb_json()
            ],
        )
            .prop_map(|(version, steps)| {
                let mut body = workflow_body("wf_001", version, Vec::new());
                body["steps"] = steps;
                body
            })
    }

    /// Model output: noise around action and workflow blocks, some with broken tags.
    fn output() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any::<String>(),
            near_action().prop_map(|b| action(&b)),
            near_workflow().prop_map(|b| workflow(&b)),
            Just("<mediated_action_request>{".to_owned()),
            Just("}</mediated_workflow_request>".to_owned()),
            "[\\s\u{1c}-\u{1f}]{0,4}",
        ];
        prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
    }

    fn opening_tags(text: &str) -> usize {
        text.matches("<mediated_action_request>").count()
            + text.matches("<mediated_workflow_request>").count()
    }

    proptest! {
        #![proptest_config(config(1))]

        #[test]
        fn parsing_any_output_accounts_for_every_block(text in output()) {
            let blocks = parse_blocks(&text);
            let found = blocks.actions.len() + blocks.workflows.len() + blocks.skipped.len();
            prop_assert!(found <= opening_tags(&text));
            for skipped in &blocks.skipped {
                prop_assert!(text.is_char_boundary(skipped.offset));
                prop_assert!(text[skipped.offset..].starts_with("<mediated_"));
                prop_assert!(!skipped.reason.is_empty());
            }
            for workflow in &blocks.workflows {
                prop_assert!(!workflow.steps.is_empty());
                for step in &workflow.steps {
                    prop_assert!(step.step_index.request_id().starts_with("wf_step_"));
                    let _ = step.step_index.to_json();
                }
            }
        }

        #[test]
        fn a_lone_valid_block_is_found(noise in "[^<]{0,64}", tail in "[^<]{0,64}") {
            let text = format!("{noise}{}{tail}", valid_action("req_001", TOOL));
            let blocks = parse_blocks(&text);
            prop_assert_eq!(blocks.actions.len(), 1);
            prop_assert_eq!(blocks.skipped.len(), 0);
        }

    }

    proptest! {
        #![proptest_config(config(16))]

        #[test]
        fn deep_and_wide_bodies_never_panic(depth in 0usize..200, width in 0usize..2000) {
            let mut deep = json!("x");
            for _ in 0..depth {
                deep = json!([deep]);
            }
            let mut body = request("req_001", TOOL);
            body["arguments"] = json!({"deep": deep, "wide": vec![u64::MAX; width]});
            let blocks = parse_blocks(&action(&body));
            prop_assert_eq!(blocks.actions.len() + blocks.skipped.len(), 1);
        }
    }

    proptest! {
        #![proptest_config(config(8))]

        /// The whole mediator over arbitrary output: it answers, and every rejection is a
        /// warning (never a panic or a store error).
        #[test]
        fn the_mediator_processes_any_output(text in output()) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let outcome = runtime.block_on(async {
                Harness::enabled().try_run(&text, 1).await
            });
            prop_assert!(outcome.is_ok(), "{:?}", outcome.err());
        }
    }
}
