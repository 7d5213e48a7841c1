//! The mediator: one pass over a `claude_code` execution's output
//! (`docs/reference/mediation.md#3-processing-order` to `docs/reference/mediation.md#5-execution`).
//!
//! [`Mediator::process`] parses the blocks, validates every request, executes approved ones
//! through a [`MediationInvoker`], writes each `mediated_*` event through a
//! [`MediationEventSink`] as it happens (so that the invoker's own
//! `downstream_tool_invocation` / `downstream_tool_result` events land between an approval and
//! its completion), and returns the envelope warnings.
//!
//! One deliberate change from the original (**[fixed]** in
//! `docs/reference/mediation.md#3-processing-order`): **every
//! approval counts toward the per-turn limit, whatever its execution outcome**. The original
//! did not count a failed single action but did count a failed workflow step inside its
//! workflow (and then not after it); here an approved action or step always uses up one
//! per-turn slot, exactly as it always uses up one session slot (the session count reads the
//! `*_approved` events).

use std::path::Path;
use std::sync::Arc;

use agent_core::{Event, EventLog, EventType, Profile, ProgressSink, StoreError, ToolCallContext};
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::block::{ActionType, BlockKind, StepIndex, WorkflowRequest, parse_blocks};
use crate::event::{
    APPROVAL_EVENT_TYPES, ExecutionOutcome, MediationEvent, ResultStatus, WorkflowTally, cut,
};
use crate::policy::{
    ACTION_MEDIATION_VERSION, GateContext, GateRequest, MediationSettings, POLICY_APPROVED,
    POLICY_EXECUTION_FAILURE, Rejection, RejectionReason, validate_action, validate_workflow,
};
use agent_core::pyfmt;

/// The result text kept for an executed action: this many characters, then ` [truncated]`.
pub const RESULT_SUMMARY_CHARS: usize = 500;
/// Each value in an `arguments_summary` is cut to this many characters, then `…`.
pub const ARGUMENT_VALUE_CHARS: usize = 30;

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// What an invoker returns when the downstream call was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeOutcome {
    /// False for a connection failure, a timeout or a downstream error result.
    pub success: bool,
    /// What the model would see: the content, or `Error: <message>` when unsuccessful.
    pub text: String,
}

/// Runs an approved action's tool (`docs/reference/mediation.md#5-execution`). Implemented for
/// [`agent_federation::Federation`] over `Federation::invoke`.
#[async_trait]
pub trait MediationInvoker: Send + Sync {
    /// `Ok` when the call was attempted (even if it failed downstream: the action is then
    /// `completed` with an `Error: …` summary); `Err(message)` when it was refused before any
    /// contact (not visible, missing required arguments, no server config): the action is
    /// `failed` with that message.
    async fn invoke(
        &self,
        ctx: &ToolCallContext,
        tool: &str,
        arguments: Value,
    ) -> Result<InvokeOutcome, String>;
}

/// Where mediation events go and where prior approvals are counted.
#[async_trait]
pub trait MediationEventSink: Send + Sync {
    /// The number of `mediated_action_approved` + `mediated_workflow_step_approved` events
    /// already in the session.
    async fn prior_approvals(&self, session_id: &str) -> Result<i64, StoreError>;

    /// Appends one event (committed before it returns).
    async fn append(&self, session_id: &str, event: &MediationEvent) -> Result<(), StoreError>;
}

/// The [`MediationEventSink`] over the session event log. Events become `agent_core::Event`s
/// through `EventType::parse`: until `EventType` lists the ten `mediated_*` types, appending
/// fails with a [`StoreError`] naming the missing type.
#[derive(Clone)]
pub struct StoreEventSink {
    store: Arc<dyn EventLog>,
}

impl StoreEventSink {
    pub fn new(store: Arc<dyn EventLog>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for StoreEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreEventSink").finish_non_exhaustive()
    }
}

#[async_trait]
impl MediationEventSink for StoreEventSink {
    async fn prior_approvals(&self, session_id: &str) -> Result<i64, StoreError> {
        let events = self.store.events(session_id).await?;
        let count = events
            .iter()
            .filter(|e| APPROVAL_EVENT_TYPES.contains(&e.event_type.as_str()))
            .count();
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    async fn append(&self, session_id: &str, event: &MediationEvent) -> Result<(), StoreError> {
        let Some(event_type) = EventType::parse(event.event_type) else {
            return Err(StoreError::new(format!(
                "event type '{}' is not an agent_core::EventType",
                event.event_type
            )));
        };
        let event = Event {
            event_type,
            turn_index: event.turn_index,
            payload: event.payload.clone(),
        };
        self.store
            .append_events(session_id, std::slice::from_ref(&event))
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Input and results
// ---------------------------------------------------------------------------------------------

/// One finished `claude_code` execution to mediate.
#[derive(Clone, Copy)]
pub struct MediationInput<'a> {
    /// The backend's output text (it keeps the raw blocks; mediation never edits it).
    pub output_text: &'a str,
    pub session_id: &'a str,
    /// The execution's resulting turn count: the backend turn count for `agent_run_task`, the
    /// new cumulative `turn_count` for `agent_continue_session`. Indexes every event and
    /// invocation.
    pub turn_index: i64,
    /// The session's profile (tool visibility and the invocation context).
    pub profile: Profile,
    pub working_directory: Option<&'a Path>,
    /// `Federation::is_active()`.
    pub federation_active: bool,
    /// `Federation::visible_tool_names(profile)`.
    pub visible_tools: &'a [String],
    /// The backend's `supports_bounded_mediated_workflows`: workflow blocks are ignored
    /// without it.
    pub workflows_supported: bool,
    /// Receives one message per mediated request (progress notifications).
    pub progress: Option<&'a dyn ProgressSink>,
}

impl std::fmt::Debug for MediationInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediationInput")
            .field("session_id", &self.session_id)
            .field("turn_index", &self.turn_index)
            .field("profile", &self.profile)
            .field("federation_active", &self.federation_active)
            .field("visible_tools", &self.visible_tools)
            .field("workflows_supported", &self.workflows_supported)
            .finish_non_exhaustive()
    }
}

/// Where a step result belongs.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRef {
    pub workflow_id: String,
    pub step_index: StepIndex,
}

/// The final result of one single action or workflow step.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    /// The request's id, or `wf_step_<step_index>` for a step.
    pub request_id: String,
    pub target_tool: String,
    pub action_type: ActionType,
    pub status: ResultStatus,
    /// `approved`, `completed_with_execution_failure` or a `rejected:*` code.
    pub policy_decision: String,
    /// The reason text of a rejection (`docs/mediation.md#every-code-and-its-exact-reason-text`),
    /// the invoker's message of a failure, else `None`.
    pub failure_reason: Option<String>,
    pub rejection_reason: Option<RejectionReason>,
    /// `(no arguments)` or `key=<value>, …` (see [`arguments_summary`]).
    pub arguments_summary: String,
    /// The result text (≤ 500 characters + ` [truncated]`); `""` unless completed.
    pub result_summary: String,
    /// Set for workflow steps.
    pub step: Option<StepRef>,
}

impl ActionResult {
    /// Whether this request used up an approval (its execution completed or failed).
    pub fn approved(&self) -> bool {
        self.status != ResultStatus::Rejected
    }

    /// The envelope warning of a rejected request
    /// (`docs/reference/mediation.md#7-envelope-warnings`); `None` otherwise.
    pub fn warning(&self) -> Option<String> {
        (self.status == ResultStatus::Rejected).then(|| {
            format!(
                "Mediated action {} for tool {} rejected — {} (policy: {})",
                pyfmt::repr_str(&self.request_id),
                pyfmt::repr_str(&self.target_tool),
                self.failure_reason.as_deref().unwrap_or_default(),
                self.policy_decision
            )
        })
    }
}

/// The result of one workflow block.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowResult {
    pub workflow_id: String,
    /// Set when the whole workflow was rejected by a workflow-level gate.
    pub rejection: Option<Rejection>,
    pub tally: WorkflowTally,
    pub steps: Vec<ActionResult>,
}

/// What one mediation pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediationOutcome {
    /// Single actions, in text order.
    pub actions: Vec<ActionResult>,
    /// Workflows, in text order.
    pub workflows: Vec<WorkflowResult>,
    /// One per rejected action then per rejected workflow step, in processing order: append
    /// them to the envelope after the backend's warnings.
    pub warnings: Vec<String>,
    /// Every event written, in order.
    pub events: Vec<MediationEvent>,
    /// Blocks skipped as malformed (logged, nothing recorded).
    pub skipped_blocks: usize,
}

impl MediationOutcome {
    /// Every action and step result, in processing order.
    pub fn results(&self) -> impl Iterator<Item = &ActionResult> {
        self.actions
            .iter()
            .chain(self.workflows.iter().flat_map(|w| w.steps.iter()))
    }
}

// ---------------------------------------------------------------------------------------------
// The mediator
// ---------------------------------------------------------------------------------------------

/// Validates and executes mediated requests under one set of settings.
#[derive(Clone)]
pub struct Mediator {
    settings: MediationSettings,
    invoker: Arc<dyn MediationInvoker>,
    sink: Arc<dyn MediationEventSink>,
}

impl std::fmt::Debug for Mediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mediator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Mediator {
    pub fn new(
        settings: MediationSettings,
        invoker: Arc<dyn MediationInvoker>,
        sink: Arc<dyn MediationEventSink>,
    ) -> Self {
        Self {
            settings,
            invoker,
            sink,
        }
    }

    pub fn settings(&self) -> &MediationSettings {
        &self.settings
    }

    /// Mediates one execution's output (`docs/reference/mediation.md#3-processing-order`). Blocks
    /// are parsed even when mediation is disabled, so that their rejections are audited.
    ///
    /// `Err` only when an event could not be appended; processing stops there (the engine
    /// treats it like any other store failure).
    pub async fn process(
        &self,
        input: &MediationInput<'_>,
    ) -> Result<MediationOutcome, StoreError> {
        let blocks = parse_blocks(input.output_text);
        let mut outcome = MediationOutcome::default();
        for skipped in &blocks.skipped {
            if skipped.kind == BlockKind::Workflow && !input.workflows_supported {
                continue;
            }
            outcome.skipped_blocks += 1;
            tracing::warn!(
                session_id = input.session_id,
                offset = skipped.offset,
                "skipped malformed mediated {} block: {}",
                match skipped.kind {
                    BlockKind::Action => "action",
                    BlockKind::Workflow => "workflow",
                },
                skipped.reason
            );
        }
        let workflows: &[WorkflowRequest] = if input.workflows_supported {
            &blocks.workflows
        } else {
            &[]
        };
        if blocks.actions.is_empty() && workflows.is_empty() {
            return Ok(outcome);
        }

        let session_total = match self.sink.prior_approvals(input.session_id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(
                    session_id = input.session_id,
                    "could not count prior mediated approvals, assuming 0: {e}"
                );
                0
            }
        };
        let mut pass = Pass {
            mediator: self,
            input,
            session_total,
            events: Vec::new(),
        };

        let mut approved_this_turn: i64 = 0;
        for action in &blocks.actions {
            let result = pass
                .single(
                    Request {
                        request_id: action.request_id.clone(),
                        mediation_version: &action.mediation_version,
                        action_type: action.action_type,
                        target_tool: &action.target_tool,
                        arguments: &action.arguments,
                        justification: &action.justification,
                    },
                    approved_this_turn,
                )
                .await?;
            if result.approved() {
                approved_this_turn += 1;
            }
            outcome.actions.push(result);
        }
        for workflow in workflows {
            let result = pass.workflow(workflow, approved_this_turn).await?;
            approved_this_turn += i64::try_from(result.tally.approved_steps).unwrap_or(i64::MAX);
            outcome.workflows.push(result);
        }

        outcome.events = pass.events;
        outcome.warnings = outcome
            .results()
            .filter_map(ActionResult::warning)
            .collect();
        Ok(outcome)
    }
}

/// A request as the gates and the executor see it (a single action, or a converted step).
struct Request<'r> {
    request_id: String,
    mediation_version: &'r str,
    action_type: ActionType,
    target_tool: &'r str,
    arguments: &'r Map<String, Value>,
    justification: &'r str,
}

/// The state of one [`Mediator::process`] call.
struct Pass<'m, 'i> {
    mediator: &'m Mediator,
    input: &'i MediationInput<'i>,
    session_total: i64,
    events: Vec<MediationEvent>,
}

impl Pass<'_, '_> {
    fn turn(&self) -> i64 {
        self.input.turn_index
    }

    async fn emit(&mut self, event: MediationEvent) -> Result<(), StoreError> {
        self.mediator
            .sink
            .append(self.input.session_id, &event)
            .await?;
        self.events.push(event);
        Ok(())
    }

    fn report(&self, message: &str) {
        if let Some(progress) = self.input.progress {
            progress.report(cut(message, 200));
        }
    }

    fn gates(&self, request: &Request<'_>, actions_this_turn: i64) -> Result<(), Rejection> {
        validate_action(
            &self.mediator.settings,
            &GateRequest {
                mediation_version: request.mediation_version,
                action_type: request.action_type,
                target_tool: request.target_tool,
            },
            &GateContext {
                actions_this_turn,
                session_total: self.session_total,
                federation_active: self.input.federation_active,
                visible_tools: self.input.visible_tools,
            },
        )
    }

    /// Step 3 of `docs/reference/mediation.md#3-processing-order`: one single action.
    async fn single(
        &mut self,
        request: Request<'_>,
        actions_this_turn: i64,
    ) -> Result<ActionResult, StoreError> {
        let turn = self.turn();
        self.emit(MediationEvent::action_requested(
            turn,
            &request.request_id,
            request.action_type,
            request.target_tool,
            request.justification,
            request.mediation_version,
        ))
        .await?;
        if let Err(rejection) = self.gates(&request, actions_this_turn) {
            let reason = rejection.failure_reason();
            self.emit(MediationEvent::action_rejected(
                turn,
                &request.request_id,
                request.target_tool,
                rejection.code(),
                &reason,
            ))
            .await?;
            self.report(&format!(
                "mediated action {} ({}) rejected: {}",
                request.request_id,
                request.target_tool,
                rejection.code()
            ));
            return Ok(rejected(&request, rejection, None));
        }
        self.emit(MediationEvent::action_approved(
            turn,
            &request.request_id,
            request.target_tool,
            request.action_type,
            POLICY_APPROVED,
        ))
        .await?;
        let execution = self.execute(&request).await;
        self.emit(MediationEvent::action_completed(
            turn,
            &request.request_id,
            &execution,
        ))
        .await?;
        Ok(executed(&request, execution, None))
    }

    /// Step 4 of `docs/reference/mediation.md#3-processing-order`: one workflow, starting from the
    /// per-turn count so far.
    async fn workflow(
        &mut self,
        workflow: &WorkflowRequest,
        approved_before: i64,
    ) -> Result<WorkflowResult, StoreError> {
        let turn = self.turn();
        let wf_id = workflow.workflow_id.as_str();
        self.emit(MediationEvent::workflow_requested(
            turn,
            wf_id,
            workflow.steps.len(),
            &workflow.mediation_version,
            &workflow.justification,
        ))
        .await?;
        let mut tally = WorkflowTally {
            total_steps: workflow.steps.len(),
            ..WorkflowTally::default()
        };
        let mut steps = Vec::with_capacity(workflow.steps.len());

        if let Err(rejection) = validate_workflow(&self.mediator.settings, workflow) {
            for step in &workflow.steps {
                steps.push(self.reject_step(turn, wf_id, step, rejection, None).await?);
            }
            tally.rejected_steps = steps.len();
            self.report(&format!(
                "mediated workflow {wf_id} rejected: {}",
                rejection.code()
            ));
            self.emit(MediationEvent::workflow_completed(turn, wf_id, &tally))
                .await?;
            return Ok(WorkflowResult {
                workflow_id: workflow.workflow_id.clone(),
                rejection: Some(rejection),
                tally,
                steps,
            });
        }

        let mut approved_in_workflow = approved_before;
        for step in &workflow.steps {
            let request = step_request(step);
            self.emit(MediationEvent::step_requested(
                turn,
                wf_id,
                &step.step_index,
                step.action_type,
                &step.target_tool,
                &step.justification,
            ))
            .await?;
            let verdict = match step.step_index {
                StepIndex::Malformed(_) => Err(Rejection::MalformedRequest),
                StepIndex::Index(_) => self.gates(&request, approved_in_workflow),
            };
            if let Err(rejection) = verdict {
                let reason = rejection.failure_reason();
                let result = self
                    .reject_step(turn, wf_id, step, rejection, Some(&reason))
                    .await?;
                self.report(&format!(
                    "mediated workflow {wf_id} step {} ({}) rejected: {}",
                    request.request_id,
                    step.target_tool,
                    rejection.code()
                ));
                tally.rejected_steps += 1;
                steps.push(result);
                continue;
            }
            self.emit(MediationEvent::step_approved(
                turn,
                wf_id,
                &step.step_index,
                &step.target_tool,
                step.action_type,
                POLICY_APPROVED,
            ))
            .await?;
            tally.approved_steps += 1;
            approved_in_workflow += 1;
            let execution = self.execute(&request).await;
            self.emit(MediationEvent::step_completed(
                turn,
                wf_id,
                &step.step_index,
                &execution,
            ))
            .await?;
            match execution.status {
                ResultStatus::Completed => tally.completed_steps += 1,
                ResultStatus::Failed => tally.failed_steps += 1,
                ResultStatus::Rejected => {}
            }
            steps.push(executed(&request, execution, Some(step_ref(wf_id, step))));
        }
        self.emit(MediationEvent::workflow_completed(turn, wf_id, &tally))
            .await?;
        Ok(WorkflowResult {
            workflow_id: workflow.workflow_id.clone(),
            rejection: None,
            tally,
            steps,
        })
    }

    /// A rejected workflow step: its `step_rejected` event, then its result. `failure_reason` is
    /// given for a step-level rejection only (not when the whole workflow is rejected).
    async fn reject_step(
        &mut self,
        turn: i64,
        wf_id: &str,
        step: &crate::block::WorkflowStep,
        rejection: Rejection,
        failure_reason: Option<&str>,
    ) -> Result<ActionResult, StoreError> {
        self.emit(MediationEvent::step_rejected(
            turn,
            wf_id,
            &step.step_index,
            &step.target_tool,
            rejection.code(),
            rejection.reason(),
            failure_reason,
        ))
        .await?;
        Ok(rejected(
            &step_request(step),
            rejection,
            Some(step_ref(wf_id, step)),
        ))
    }

    /// `docs/reference/mediation.md#5-execution`: runs an approved request through the invoker;
    /// never fails the pass.
    async fn execute(&self, request: &Request<'_>) -> ExecutionOutcome {
        let ctx = ToolCallContext {
            session_id: self.input.session_id.to_owned(),
            turn_index: self.input.turn_index,
            profile: self.input.profile,
            working_directory: self.input.working_directory.map(Path::to_path_buf),
        };
        let arguments_summary = arguments_summary(request.arguments);
        let outcome = self
            .mediator
            .invoker
            .invoke(
                &ctx,
                request.target_tool,
                Value::Object(request.arguments.clone()),
            )
            .await;
        let execution = match outcome {
            Ok(result) => {
                if !result.success {
                    tracing::warn!(
                        session_id = self.input.session_id,
                        tool = request.target_tool,
                        "mediated call reached the tool but failed: {}",
                        cut(&result.text, 200)
                    );
                }
                ExecutionOutcome {
                    target_tool: request.target_tool.to_owned(),
                    status: ResultStatus::Completed,
                    policy_decision: POLICY_APPROVED.to_owned(),
                    failure_reason: None,
                    result_summary: result_summary(&result.text),
                    arguments_summary,
                }
            }
            Err(message) => ExecutionOutcome {
                target_tool: request.target_tool.to_owned(),
                status: ResultStatus::Failed,
                policy_decision: POLICY_EXECUTION_FAILURE.to_owned(),
                failure_reason: Some(message),
                result_summary: String::new(),
                arguments_summary,
            },
        };
        self.report(&format!(
            "mediated {} ({}) {}",
            request.request_id, request.target_tool, execution.status
        ));
        execution
    }
}

/// A step as an action request: id `wf_step_<step_index>`, version forced to `v0.8.0`.
fn step_request(step: &crate::block::WorkflowStep) -> Request<'_> {
    Request {
        request_id: step.step_index.request_id(),
        mediation_version: ACTION_MEDIATION_VERSION,
        action_type: step.action_type,
        target_tool: &step.target_tool,
        arguments: &step.arguments,
        justification: &step.justification,
    }
}

fn step_ref(workflow_id: &str, step: &crate::block::WorkflowStep) -> StepRef {
    StepRef {
        workflow_id: workflow_id.to_owned(),
        step_index: step.step_index.clone(),
    }
}

fn rejected(request: &Request<'_>, rejection: Rejection, step: Option<StepRef>) -> ActionResult {
    ActionResult {
        request_id: request.request_id.clone(),
        target_tool: request.target_tool.to_owned(),
        action_type: request.action_type,
        status: ResultStatus::Rejected,
        policy_decision: rejection.code().to_owned(),
        failure_reason: Some(rejection.failure_reason()),
        rejection_reason: Some(rejection.reason()),
        arguments_summary: arguments_summary(request.arguments),
        result_summary: String::new(),
        step,
    }
}

fn executed(
    request: &Request<'_>,
    execution: ExecutionOutcome,
    step: Option<StepRef>,
) -> ActionResult {
    ActionResult {
        request_id: request.request_id.clone(),
        target_tool: execution.target_tool,
        action_type: request.action_type,
        status: execution.status,
        policy_decision: execution.policy_decision,
        failure_reason: execution.failure_reason,
        rejection_reason: None,
        arguments_summary: execution.arguments_summary,
        result_summary: execution.result_summary,
        step,
    }
}

/// `(no arguments)`, or `key=<value>` pairs in sorted key order joined by `, `, each value a Python
/// literal cut to 30 characters plus `…` when longer (`docs/reference/mediation.md#5-execution`).
pub fn arguments_summary(arguments: &Map<String, Value>) -> String {
    if arguments.is_empty() {
        return "(no arguments)".to_owned();
    }
    let mut keys: Vec<&String> = arguments.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let literal = arguments.get(key).map(pyfmt::repr).unwrap_or_default();
            let head = cut(&literal, ARGUMENT_VALUE_CHARS);
            if head.len() < literal.len() {
                format!("{key}={head}…")
            } else {
                format!("{key}={literal}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kept result text: the first 500 characters plus ` [truncated]` when longer.
pub fn result_summary(text: &str) -> String {
    let head = cut(text, RESULT_SUMMARY_CHARS);
    if head.len() < text.len() {
        format!("{head} [truncated]")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn arguments_summaries_are_python_literals_in_key_order() {
        assert_eq!(arguments_summary(&Map::new()), "(no arguments)");
        assert_eq!(
            arguments_summary(&map(
                json!({"path": "/x", "depth": 2, "all": true, "n": null})
            )),
            "all=True, depth=2, n=None, path='/x'"
        );
        assert_eq!(
            arguments_summary(&map(json!({"list": [1, 2], "obj": {"a": 1}}))),
            "list=[1, 2], obj={'a': 1}"
        );
        let long = "x".repeat(40);
        assert_eq!(
            arguments_summary(&map(json!({ "q": long }))),
            format!("q='{}…", "x".repeat(29))
        );
        // Exactly 30 characters is not cut.
        let fits = "y".repeat(28);
        assert_eq!(
            arguments_summary(&map(json!({ "q": fits }))),
            format!("q='{}'", "y".repeat(28))
        );
    }

    #[test]
    fn result_summaries_keep_500_characters() {
        assert_eq!(result_summary("short"), "short");
        let exact = "é".repeat(500);
        assert_eq!(result_summary(&exact), exact);
        let long = "é".repeat(501);
        assert_eq!(
            result_summary(&long),
            format!("{} [truncated]", "é".repeat(500))
        );
    }

    #[test]
    fn warnings_quote_identifiers_python_style() {
        let result = ActionResult {
            request_id: "req_001".into(),
            target_tool: "s__t".into(),
            action_type: ActionType::Read,
            status: ResultStatus::Rejected,
            policy_decision: "rejected:mediation_disabled".into(),
            failure_reason: Some("execution mediation is disabled in config".into()),
            rejection_reason: Some(RejectionReason::FeatureDisabled),
            arguments_summary: "(no arguments)".into(),
            result_summary: String::new(),
            step: None,
        };
        assert_eq!(
            result.warning().unwrap(),
            "Mediated action 'req_001' for tool 's__t' rejected — execution mediation is disabled in config (policy: rejected:mediation_disabled)"
        );
        let completed = ActionResult {
            status: ResultStatus::Completed,
            ..result
        };
        assert_eq!(completed.warning(), None);
    }
}
