//! Mediation settings, the validation gates and every contract code
//! (`docs/reference/mediation.md#4-validation-gates`,
//! `docs/reference/mediation.md#10-policy-profile-and-settings`,
//! `docs/reference/policy.md#7-operator-presets`).
//!
//! [`validate_action`] runs the nine per-action gates in their exact order and returns the
//! first failure; [`validate_workflow`] runs the three workflow-level gates. A [`Rejection`]
//! carries its policy decision code (`rejected:*`), its rejection-reason enum value and its
//! exact human-readable failure reason.
//!
//! ```
//! use agent_mediation::block::ActionType;
//! use agent_mediation::policy::{GateContext, GateRequest, MediationSettings, Rejection, validate_action};
//!
//! # let settings: MediationSettings = agent_policy::config::presets::BUILTIN.mediation_settings();
//! // The built-in defaults: mediation disabled.
//! let request = GateRequest { mediation_version: "v0.8.0", action_type: ActionType::Read, target_tool: "s__t" };
//! let ctx = GateContext { actions_this_turn: 0, session_total: 0, federation_active: true, visible_tools: &[] };
//! assert_eq!(validate_action(&settings, &request, &ctx), Err(Rejection::MediationDisabled));
//! assert_eq!(Rejection::MediationDisabled.code(), "rejected:mediation_disabled");
//! ```

use serde::Serialize;

use crate::block::{ActionType, WorkflowRequest};

/// The policy decision of an approved action.
pub const POLICY_APPROVED: &str = "approved";
/// The policy decision of an approved action whose execution failed (the invoker refused it).
pub const POLICY_EXECUTION_FAILURE: &str = "completed_with_execution_failure";

/// The mediation version of single actions.
pub const ACTION_MEDIATION_VERSION: &str = "v0.8.0";
/// The mediation version of workflows (also accepted on single actions).
pub const WORKFLOW_MEDIATION_VERSION: &str = "v0.9.0";
/// The versions gate 2 accepts.
pub const SUPPORTED_MEDIATION_VERSIONS: [&str; 2] =
    [ACTION_MEDIATION_VERSION, WORKFLOW_MEDIATION_VERSION];

pub use agent_core::settings::MediationSettings;

impl PolicyProfile {
    /// The informational policy profile object of `settings` (`docs/reference/mediation.md#10-policy-profile-and-settings`).
    pub fn of(settings: &MediationSettings) -> PolicyProfile {
        PolicyProfile {
            name: settings.policy_profile.clone(),
            allowed_action_types: if settings.allowed_action_types.is_empty() {
                ActionType::ALL
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect()
            } else {
                settings.allowed_action_types.clone()
            },
            allowed_tools: settings.allowed_tools.clone(),
            denied_tools: settings.denied_tools.clone(),
            max_steps_per_turn: settings.max_actions_per_turn,
            max_approvals_per_session: settings.max_session_approvals,
            continuation_inclusion_mode: if settings.include_rejected_in_continuation {
                ContinuationInclusionMode::AllSteps
            } else {
                ContinuationInclusionMode::ApprovedOnly
            },
            mixed_action_types_allowed: true,
        }
    }
}

agent_core::string_enum! {
    /// Which mediated items a policy profile says continuations carry
    /// (`docs/reference/mediation.md#10-policy-profile-and-settings`).
    ContinuationInclusionMode {
        AllSteps => "all_steps",
        ApprovedOnly => "approved_only",
        None => "none",
    }
}

/// The mediation policy profile derived from the settings, for inspection and logs
/// (`docs/reference/mediation.md#10-policy-profile-and-settings`).
/// Its name has no effect on enforcement. `allowed_action_types` lists the effective types
/// (all three when the setting is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyProfile {
    pub name: String,
    pub allowed_action_types: Vec<String>,
    pub allowed_tools: Vec<String>,
    pub denied_tools: Vec<String>,
    pub max_steps_per_turn: i64,
    pub max_approvals_per_session: i64,
    pub continuation_inclusion_mode: ContinuationInclusionMode,
    pub mixed_action_types_allowed: bool,
}

agent_core::string_enum! {
    /// The rejection-reason enum (`docs/mediation.md#every-code-and-its-exact-reason-text`),
    /// written as `rejection_reason` in workflow-step rejection events.
    RejectionReason {
        FeatureDisabled => "feature_disabled",
        InvalidVersion => "invalid_version",
        UnsupportedActionType => "unsupported_action_type",
        PerTurnLimitExceeded => "per_turn_limit_exceeded",
        WorkflowStepLimitExceeded => "workflow_step_limit_exceeded",
        SessionApprovalLimitExceeded => "session_approval_limit_exceeded",
        FederationInactive => "federation_inactive",
        ToolNotVisible => "tool_not_visible",
        ToolNotAllowed => "tool_not_allowed",
        MalformedRequest => "malformed_request",
    }
}

impl RejectionReason {
    /// The reason for a policy decision code; any unknown code maps to `malformed_request`.
    pub fn for_code(code: &str) -> RejectionReason {
        Rejection::parse(code).map_or(RejectionReason::MalformedRequest, Rejection::reason)
    }
}

/// Why a request was rejected: one per `rejected:*` policy decision code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Gate 1 (and workflow gate 1).
    MediationDisabled,
    /// Gate 2 (and workflow gate 2).
    UnsupportedMediationVersion,
    /// Gate 3.
    ActionTypeNotAllowed,
    /// Gate 4.
    PerTurnActionLimitExceeded,
    /// Gate 5.
    SessionApprovalLimitExceeded,
    /// Gates 6 and 7.
    ToolNotAllowed,
    /// Gate 8.
    FederationInactive,
    /// Gate 9.
    ToolNotVisible,
    /// Workflow gate 3.
    WorkflowStepLimitExceeded,
    /// A workflow step whose `step_index` is not an integer (this implementation's fix of the
    /// original's crash, `docs/reference/mediation.md#2-blocks`); never emitted for anything else.
    MalformedRequest,
    /// An approved action with no invoker. Never emitted here: the invoker is mandatory.
    InternalInvokerUnavailable,
}

impl Rejection {
    /// Every code, in gate order then the additional ones.
    pub const ALL: [Rejection; 11] = [
        Rejection::MediationDisabled,
        Rejection::UnsupportedMediationVersion,
        Rejection::ActionTypeNotAllowed,
        Rejection::PerTurnActionLimitExceeded,
        Rejection::SessionApprovalLimitExceeded,
        Rejection::ToolNotAllowed,
        Rejection::FederationInactive,
        Rejection::ToolNotVisible,
        Rejection::WorkflowStepLimitExceeded,
        Rejection::MalformedRequest,
        Rejection::InternalInvokerUnavailable,
    ];

    /// The policy decision code.
    pub const fn code(self) -> &'static str {
        match self {
            Rejection::MediationDisabled => "rejected:mediation_disabled",
            Rejection::UnsupportedMediationVersion => "rejected:unsupported_mediation_version",
            Rejection::ActionTypeNotAllowed => "rejected:action_type_not_allowed",
            Rejection::PerTurnActionLimitExceeded => "rejected:per_turn_action_limit_exceeded",
            Rejection::SessionApprovalLimitExceeded => "rejected:session_approval_limit_exceeded",
            Rejection::ToolNotAllowed => "rejected:tool_not_allowed",
            Rejection::FederationInactive => "rejected:federation_inactive",
            Rejection::ToolNotVisible => "rejected:tool_not_visible",
            Rejection::WorkflowStepLimitExceeded => "rejected:workflow_step_limit_exceeded",
            Rejection::MalformedRequest => "rejected:malformed_request",
            Rejection::InternalInvokerUnavailable => "rejected:internal_invoker_unavailable",
        }
    }

    /// The rejection-reason enum value.
    pub const fn reason(self) -> RejectionReason {
        match self {
            Rejection::MediationDisabled => RejectionReason::FeatureDisabled,
            Rejection::UnsupportedMediationVersion => RejectionReason::InvalidVersion,
            Rejection::ActionTypeNotAllowed => RejectionReason::UnsupportedActionType,
            Rejection::PerTurnActionLimitExceeded => RejectionReason::PerTurnLimitExceeded,
            Rejection::SessionApprovalLimitExceeded => {
                RejectionReason::SessionApprovalLimitExceeded
            }
            Rejection::ToolNotAllowed => RejectionReason::ToolNotAllowed,
            Rejection::FederationInactive => RejectionReason::FederationInactive,
            Rejection::ToolNotVisible => RejectionReason::ToolNotVisible,
            Rejection::WorkflowStepLimitExceeded => RejectionReason::WorkflowStepLimitExceeded,
            // An unknown code maps to `malformed_request`.
            Rejection::MalformedRequest | Rejection::InternalInvokerUnavailable => {
                RejectionReason::MalformedRequest
            }
        }
    }

    /// The exact human-readable failure reason
    /// (`docs/mediation.md#every-code-and-its-exact-reason-text`).
    pub fn failure_reason(self) -> String {
        let fixed = match self {
            Rejection::MediationDisabled => "execution mediation is disabled in config",
            Rejection::UnsupportedMediationVersion => {
                "unsupported mediation_version (expected 'v0.8.0' or 'v0.9.0')"
            }
            Rejection::ActionTypeNotAllowed => "action_type is not in the configured allowed set",
            Rejection::PerTurnActionLimitExceeded => {
                "per-turn mediated action count limit exceeded"
            }
            Rejection::ToolNotVisible => "target_tool is not visible for the active profile",
            Rejection::FederationInactive => "federation is not active in this runtime",
            Rejection::ToolNotAllowed => {
                "target_tool is in the denied list or not in the allowed list"
            }
            Rejection::WorkflowStepLimitExceeded => {
                "workflow step count exceeds the configured maximum"
            }
            Rejection::SessionApprovalLimitExceeded => {
                "session-level mediated approval limit exceeded"
            }
            Rejection::MalformedRequest => "request could not be parsed (malformed)",
            Rejection::InternalInvokerUnavailable => return failure_reason_for_code(self.code()),
        };
        fixed.to_owned()
    }

    /// The rejection for a `rejected:*` code.
    pub fn parse(code: &str) -> Option<Rejection> {
        Rejection::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The failure reason for any policy decision code: the text of
/// `docs/mediation.md#every-code-and-its-exact-reason-text` for known codes,
/// `policy decision: <code>` for anything else.
pub fn failure_reason_for_code(code: &str) -> String {
    match Rejection::parse(code) {
        Some(r) if r != Rejection::InternalInvokerUnavailable => r.failure_reason(),
        _ => format!("policy decision: {code}"),
    }
}

/// What the gates look at in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateRequest<'a> {
    pub mediation_version: &'a str,
    pub action_type: ActionType,
    pub target_tool: &'a str,
}

/// What the gates look at around a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateContext<'a> {
    /// Approvals already counted in this execution (or, for workflow steps, the workflow's
    /// running counter).
    pub actions_this_turn: i64,
    /// Approvals recorded in the session before this execution.
    pub session_total: i64,
    pub federation_active: bool,
    /// The federated tools the session's profile sees.
    pub visible_tools: &'a [String],
}

/// The per-action gates of `docs/reference/mediation.md#4-validation-gates`, in order; the first
/// failure wins.
pub fn validate_action(
    settings: &MediationSettings,
    request: &GateRequest<'_>,
    ctx: &GateContext<'_>,
) -> Result<(), Rejection> {
    if !settings.enabled {
        return Err(Rejection::MediationDisabled);
    }
    if !SUPPORTED_MEDIATION_VERSIONS.contains(&request.mediation_version) {
        return Err(Rejection::UnsupportedMediationVersion);
    }
    if !settings.action_type_allowed(request.action_type.as_str()) {
        return Err(Rejection::ActionTypeNotAllowed);
    }
    if ctx.actions_this_turn >= settings.max_actions_per_turn {
        return Err(Rejection::PerTurnActionLimitExceeded);
    }
    if ctx.session_total.saturating_add(ctx.actions_this_turn) >= settings.max_session_approvals {
        return Err(Rejection::SessionApprovalLimitExceeded);
    }
    if settings
        .denied_tools
        .iter()
        .any(|t| t == request.target_tool)
    {
        return Err(Rejection::ToolNotAllowed);
    }
    if !settings.allowed_tools.is_empty()
        && !settings
            .allowed_tools
            .iter()
            .any(|t| t == request.target_tool)
    {
        return Err(Rejection::ToolNotAllowed);
    }
    if !ctx.federation_active {
        return Err(Rejection::FederationInactive);
    }
    if !ctx.visible_tools.iter().any(|t| t == request.target_tool) {
        return Err(Rejection::ToolNotVisible);
    }
    Ok(())
}

/// The workflow-level gates of `docs/reference/mediation.md#4-validation-gates`, in order.
pub fn validate_workflow(
    settings: &MediationSettings,
    workflow: &WorkflowRequest,
) -> Result<(), Rejection> {
    if !settings.enabled {
        return Err(Rejection::MediationDisabled);
    }
    if workflow.mediation_version != WORKFLOW_MEDIATION_VERSION {
        return Err(Rejection::UnsupportedMediationVersion);
    }
    let steps = i64::try_from(workflow.steps.len()).unwrap_or(i64::MAX);
    if steps > settings.max_workflow_steps {
        return Err(Rejection::WorkflowStepLimitExceeded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_reason_and_text() {
        let table = [
            (
                Rejection::MediationDisabled,
                "rejected:mediation_disabled",
                "feature_disabled",
                "execution mediation is disabled in config",
            ),
            (
                Rejection::UnsupportedMediationVersion,
                "rejected:unsupported_mediation_version",
                "invalid_version",
                "unsupported mediation_version (expected 'v0.8.0' or 'v0.9.0')",
            ),
            (
                Rejection::ActionTypeNotAllowed,
                "rejected:action_type_not_allowed",
                "unsupported_action_type",
                "action_type is not in the configured allowed set",
            ),
            (
                Rejection::PerTurnActionLimitExceeded,
                "rejected:per_turn_action_limit_exceeded",
                "per_turn_limit_exceeded",
                "per-turn mediated action count limit exceeded",
            ),
            (
                Rejection::SessionApprovalLimitExceeded,
                "rejected:session_approval_limit_exceeded",
                "session_approval_limit_exceeded",
                "session-level mediated approval limit exceeded",
            ),
            (
                Rejection::ToolNotAllowed,
                "rejected:tool_not_allowed",
                "tool_not_allowed",
                "target_tool is in the denied list or not in the allowed list",
            ),
            (
                Rejection::FederationInactive,
                "rejected:federation_inactive",
                "federation_inactive",
                "federation is not active in this runtime",
            ),
            (
                Rejection::ToolNotVisible,
                "rejected:tool_not_visible",
                "tool_not_visible",
                "target_tool is not visible for the active profile",
            ),
            (
                Rejection::WorkflowStepLimitExceeded,
                "rejected:workflow_step_limit_exceeded",
                "workflow_step_limit_exceeded",
                "workflow step count exceeds the configured maximum",
            ),
            (
                Rejection::MalformedRequest,
                "rejected:malformed_request",
                "malformed_request",
                "request could not be parsed (malformed)",
            ),
            (
                Rejection::InternalInvokerUnavailable,
                "rejected:internal_invoker_unavailable",
                "malformed_request",
                "policy decision: rejected:internal_invoker_unavailable",
            ),
        ];
        assert_eq!(table.len(), Rejection::ALL.len());
        for (rejection, code, reason, text) in table {
            assert_eq!(rejection.code(), code);
            assert_eq!(rejection.reason().as_str(), reason);
            assert_eq!(rejection.failure_reason(), text);
            assert_eq!(Rejection::parse(code), Some(rejection));
            assert_eq!(failure_reason_for_code(code), text);
            assert_eq!(RejectionReason::for_code(code).as_str(), reason);
        }
        assert_eq!(
            failure_reason_for_code("rejected:something_else"),
            "policy decision: rejected:something_else"
        );
        assert_eq!(
            RejectionReason::for_code("whatever"),
            RejectionReason::MalformedRequest
        );
        assert_eq!(RejectionReason::ALL.len(), 10);
    }

    #[test]
    fn the_policy_profile_object_mirrors_the_settings() {
        let mut s = agent_policy::config::presets::preset("mediation_enabled")
            .unwrap()
            .mediation_settings();
        s.denied_tools = vec!["s__rm".into()];
        let p = PolicyProfile::of(&s);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "name": "mediation_enabled",
                "allowed_action_types": ["read", "lookup", "inspect"],
                "allowed_tools": [],
                "denied_tools": ["s__rm"],
                "max_steps_per_turn": 3,
                "max_approvals_per_session": 50,
                "continuation_inclusion_mode": "approved_only",
                "mixed_action_types_allowed": true,
            })
        );
        s.include_rejected_in_continuation = true;
        s.allowed_action_types = vec!["lookup".into()];
        let p = PolicyProfile::of(&s);
        assert_eq!(
            p.continuation_inclusion_mode,
            ContinuationInclusionMode::AllSteps
        );
        assert_eq!(p.allowed_action_types, ["lookup"]);
    }
}
