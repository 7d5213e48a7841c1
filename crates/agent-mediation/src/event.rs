//! The ten `mediated_*` session events (`docs/reference/mediation.md#9-events`) with their exact
//! payload keys.
//!
//! `agent_core::EventType` does not list these types yet, so they are `&'static str`
//! constants here and events are [`MediationEvent`] values; the
//! [`StoreEventSink`](crate::StoreEventSink) turns them into `agent_core::Event`s through
//! `EventType::parse` once the variants exist.

use serde_json::{Map, Value, json};

use crate::block::{ActionType, StepIndex};
use crate::policy::RejectionReason;

pub const MEDIATED_ACTION_REQUESTED: &str = "mediated_action_requested";
pub const MEDIATED_ACTION_APPROVED: &str = "mediated_action_approved";
pub const MEDIATED_ACTION_REJECTED: &str = "mediated_action_rejected";
pub const MEDIATED_ACTION_COMPLETED: &str = "mediated_action_completed";
pub const MEDIATED_WORKFLOW_REQUESTED: &str = "mediated_workflow_requested";
pub const MEDIATED_WORKFLOW_STEP_REQUESTED: &str = "mediated_workflow_step_requested";
pub const MEDIATED_WORKFLOW_STEP_APPROVED: &str = "mediated_workflow_step_approved";
pub const MEDIATED_WORKFLOW_STEP_REJECTED: &str = "mediated_workflow_step_rejected";
pub const MEDIATED_WORKFLOW_STEP_COMPLETED: &str = "mediated_workflow_step_completed";
pub const MEDIATED_WORKFLOW_COMPLETED: &str = "mediated_workflow_completed";

/// Every mediation event type, in the order of `docs/mediation.md#7-events`.
pub const ALL_EVENT_TYPES: [&str; 10] = [
    MEDIATED_ACTION_REQUESTED,
    MEDIATED_ACTION_APPROVED,
    MEDIATED_ACTION_REJECTED,
    MEDIATED_ACTION_COMPLETED,
    MEDIATED_WORKFLOW_REQUESTED,
    MEDIATED_WORKFLOW_STEP_REQUESTED,
    MEDIATED_WORKFLOW_STEP_APPROVED,
    MEDIATED_WORKFLOW_STEP_REJECTED,
    MEDIATED_WORKFLOW_STEP_COMPLETED,
    MEDIATED_WORKFLOW_COMPLETED,
];

/// The events that count toward the session approval limit (step 1 of
/// `docs/reference/mediation.md#3-processing-order`).
pub const APPROVAL_EVENT_TYPES: [&str; 2] =
    [MEDIATED_ACTION_APPROVED, MEDIATED_WORKFLOW_STEP_APPROVED];

/// Justifications in request events are cut to this many characters.
pub const JUSTIFICATION_EVENT_CHARS: usize = 200;
/// `result_summary` in completion events is cut to this many characters.
pub const RESULT_SUMMARY_EVENT_CHARS: usize = 200;

/// A mediation event to append to the session log.
#[derive(Debug, Clone, PartialEq)]
pub struct MediationEvent {
    /// One of [`ALL_EVENT_TYPES`].
    pub event_type: &'static str,
    pub turn_index: i64,
    pub payload: Value,
}

impl MediationEvent {
    fn new(event_type: &'static str, turn_index: i64, payload: Value) -> Self {
        Self {
            event_type,
            turn_index,
            payload,
        }
    }

    pub fn action_requested(
        turn: i64,
        request_id: &str,
        action_type: ActionType,
        target_tool: &str,
        justification: &str,
        mediation_version: &str,
    ) -> Self {
        Self::new(
            MEDIATED_ACTION_REQUESTED,
            turn,
            json!({
                "request_id": request_id,
                "action_type": action_type,
                "target_tool": target_tool,
                "justification": cut(justification, JUSTIFICATION_EVENT_CHARS),
                "mediation_version": mediation_version,
            }),
        )
    }

    pub fn action_approved(
        turn: i64,
        request_id: &str,
        target_tool: &str,
        action_type: ActionType,
        policy_decision: &str,
    ) -> Self {
        Self::new(
            MEDIATED_ACTION_APPROVED,
            turn,
            json!({
                "request_id": request_id,
                "target_tool": target_tool,
                "action_type": action_type,
                "policy_decision": policy_decision,
            }),
        )
    }

    /// No `rejection_reason` on single-action rejections (`docs/reference/mediation.md#9-events`).
    pub fn action_rejected(
        turn: i64,
        request_id: &str,
        target_tool: &str,
        policy_decision: &str,
        failure_reason: &str,
    ) -> Self {
        Self::new(
            MEDIATED_ACTION_REJECTED,
            turn,
            json!({
                "request_id": request_id,
                "target_tool": target_tool,
                "policy_decision": policy_decision,
                "failure_reason": failure_reason,
            }),
        )
    }

    pub fn action_completed(turn: i64, request_id: &str, outcome: &ExecutionOutcome) -> Self {
        Self::new(
            MEDIATED_ACTION_COMPLETED,
            turn,
            outcome_payload(json!({ "request_id": request_id }), outcome),
        )
    }

    pub fn workflow_requested(
        turn: i64,
        workflow_id: &str,
        step_count: usize,
        mediation_version: &str,
        justification: &str,
    ) -> Self {
        Self::new(
            MEDIATED_WORKFLOW_REQUESTED,
            turn,
            json!({
                "workflow_id": workflow_id,
                "step_count": step_count,
                "mediation_version": mediation_version,
                "justification": cut(justification, JUSTIFICATION_EVENT_CHARS),
            }),
        )
    }

    pub fn step_requested(
        turn: i64,
        workflow_id: &str,
        step_index: &StepIndex,
        action_type: ActionType,
        target_tool: &str,
        justification: &str,
    ) -> Self {
        Self::new(
            MEDIATED_WORKFLOW_STEP_REQUESTED,
            turn,
            json!({
                "workflow_id": workflow_id,
                "step_index": step_index.to_json(),
                "action_type": action_type,
                "target_tool": target_tool,
                "justification": cut(justification, JUSTIFICATION_EVENT_CHARS),
            }),
        )
    }

    pub fn step_approved(
        turn: i64,
        workflow_id: &str,
        step_index: &StepIndex,
        target_tool: &str,
        action_type: ActionType,
        policy_decision: &str,
    ) -> Self {
        Self::new(
            MEDIATED_WORKFLOW_STEP_APPROVED,
            turn,
            json!({
                "workflow_id": workflow_id,
                "step_index": step_index.to_json(),
                "target_tool": target_tool,
                "action_type": action_type,
                "policy_decision": policy_decision,
            }),
        )
    }

    /// `failure_reason` is written for step-level rejections only; workflow-level rejections
    /// pass `None` and the key is absent.
    pub fn step_rejected(
        turn: i64,
        workflow_id: &str,
        step_index: &StepIndex,
        target_tool: &str,
        policy_decision: &str,
        rejection_reason: RejectionReason,
        failure_reason: Option<&str>,
    ) -> Self {
        let mut payload = Map::new();
        payload.insert("workflow_id".into(), json!(workflow_id));
        payload.insert("step_index".into(), step_index.to_json());
        payload.insert("target_tool".into(), json!(target_tool));
        payload.insert("policy_decision".into(), json!(policy_decision));
        payload.insert("rejection_reason".into(), json!(rejection_reason));
        if let Some(reason) = failure_reason {
            payload.insert("failure_reason".into(), json!(reason));
        }
        Self::new(
            MEDIATED_WORKFLOW_STEP_REJECTED,
            turn,
            Value::Object(payload),
        )
    }

    pub fn step_completed(
        turn: i64,
        workflow_id: &str,
        step_index: &StepIndex,
        outcome: &ExecutionOutcome,
    ) -> Self {
        Self::new(
            MEDIATED_WORKFLOW_STEP_COMPLETED,
            turn,
            outcome_payload(
                json!({ "workflow_id": workflow_id, "step_index": step_index.to_json() }),
                outcome,
            ),
        )
    }

    pub fn workflow_completed(turn: i64, workflow_id: &str, tally: &WorkflowTally) -> Self {
        Self::new(
            MEDIATED_WORKFLOW_COMPLETED,
            turn,
            json!({
                "workflow_id": workflow_id,
                "total_steps": tally.total_steps,
                "approved_steps": tally.approved_steps,
                "rejected_steps": tally.rejected_steps,
                "completed_steps": tally.completed_steps,
                "failed_steps": tally.failed_steps,
            }),
        )
    }
}

/// The payload of a completed action or step: the keys that name it (`ids`, an object), then
/// the outcome's.
fn outcome_payload(mut ids: Value, outcome: &ExecutionOutcome) -> Value {
    if let Value::Object(payload) = &mut ids {
        payload.insert("target_tool".into(), json!(outcome.target_tool));
        payload.insert("status".into(), json!(outcome.status.as_str()));
        payload.insert("arguments_summary".into(), json!(outcome.arguments_summary));
        payload.insert(
            "result_summary".into(),
            json!(cut(&outcome.result_summary, RESULT_SUMMARY_EVENT_CHARS)),
        );
        payload.insert("failure_reason".into(), json!(outcome.failure_reason));
        payload.insert("policy_decision".into(), json!(outcome.policy_decision));
    }
    ids
}

agent_core::string_enum! {
    /// The final status of a mediated request.
    ResultStatus {
        Rejected => "rejected",
        Completed => "completed",
        Failed => "failed",
    }
}

/// The outcome of executing one approved action or step
/// (`docs/reference/mediation.md#5-execution`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionOutcome {
    pub target_tool: String,
    /// `completed` (the invoker returned) or `failed` (it refused).
    pub status: ResultStatus,
    /// `approved` or `completed_with_execution_failure`.
    pub policy_decision: String,
    pub failure_reason: Option<String>,
    /// The result text, cut to 500 characters plus ` [truncated]`; `""` when failed.
    pub result_summary: String,
    pub arguments_summary: String,
}

/// The step counts of one workflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowTally {
    pub total_steps: usize,
    pub approved_steps: usize,
    pub rejected_steps: usize,
    pub completed_steps: usize,
    pub failed_steps: usize,
}

/// The first `max` code points of `text`.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    agent_core::text::truncate_chars(text, max)
}
