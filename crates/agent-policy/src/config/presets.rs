//! Operator profile presets (`docs/reference/policy.md#7-operator-presets`): defaults for the
//! claude_code continuation and mediation settings.

use agent_core::settings::MediationSettings;

/// The preset-aware settings, as one preset (or the built-in defaults) supplies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetDefaults {
    pub enable_execution_mediation: bool,
    pub max_continuation_turns: i64,
    pub max_continuation_warnings: i64,
    pub max_continuation_forwarding_events: i64,
    pub include_verification_context: bool,
    pub include_tool_downgrade_context: bool,
    pub max_mediated_actions_per_turn: i64,
    pub max_mediated_workflow_steps: i64,
    pub max_session_mediated_approvals: i64,
    pub include_mediated_results_in_continuation: bool,
    pub include_rejected_mediation_in_continuation: bool,
    pub mediation_policy_profile: &'static str,
}

/// The built-in defaults (no preset, or an unknown one).
pub const BUILTIN: PresetDefaults = PresetDefaults {
    enable_execution_mediation: false,
    max_continuation_turns: 5,
    max_continuation_warnings: 3,
    max_continuation_forwarding_events: 3,
    include_verification_context: true,
    include_tool_downgrade_context: true,
    max_mediated_actions_per_turn: 1,
    max_mediated_workflow_steps: 1,
    max_session_mediated_approvals: 100,
    include_mediated_results_in_continuation: false,
    include_rejected_mediation_in_continuation: false,
    mediation_policy_profile: "conservative",
};

const SAFE_DEFAULT: PresetDefaults = PresetDefaults {
    max_session_mediated_approvals: 10,
    ..BUILTIN
};

const CONTINUITY_OPTIMIZED: PresetDefaults = PresetDefaults {
    max_continuation_turns: 10,
    max_continuation_warnings: 5,
    max_continuation_forwarding_events: 5,
    max_session_mediated_approvals: 10,
    include_mediated_results_in_continuation: true,
    ..BUILTIN
};

const MEDIATION_ENABLED: PresetDefaults = PresetDefaults {
    enable_execution_mediation: true,
    max_mediated_actions_per_turn: 3,
    max_session_mediated_approvals: 50,
    include_mediated_results_in_continuation: true,
    mediation_policy_profile: "mediation_enabled",
    ..BUILTIN
};

const WORKFLOW_LIMITED: PresetDefaults = PresetDefaults {
    enable_execution_mediation: true,
    max_mediated_actions_per_turn: 5,
    max_mediated_workflow_steps: 3,
    max_session_mediated_approvals: 30,
    include_mediated_results_in_continuation: true,
    mediation_policy_profile: "workflow_limited",
    ..BUILTIN
};

/// The known preset names, in the order of `docs/reference/policy.md#7-operator-presets`.
pub const KNOWN_PRESETS: [&str; 4] = [
    "safe_default",
    "continuity_optimized",
    "mediation_enabled",
    "workflow_limited",
];

/// The values a known preset supplies; `None` for an unknown name.
pub fn preset(name: &str) -> Option<PresetDefaults> {
    match name {
        "safe_default" => Some(SAFE_DEFAULT),
        "continuity_optimized" => Some(CONTINUITY_OPTIMIZED),
        "mediation_enabled" => Some(MEDIATION_ENABLED),
        "workflow_limited" => Some(WORKFLOW_LIMITED),
        _ => None,
    }
}

/// The defaults in force for an (optional) operator profile: the preset's values when it is
/// known, the built-in defaults otherwise.
pub fn defaults_for(operator_profile: Option<&str>) -> PresetDefaults {
    operator_profile.and_then(preset).unwrap_or(BUILTIN)
}

impl PresetDefaults {
    /// The mediation settings these defaults give when no mediation variable is set (the
    /// action-type and tool lists are never preset: empty).
    pub fn mediation_settings(&self) -> MediationSettings {
        MediationSettings {
            enabled: self.enable_execution_mediation,
            max_actions_per_turn: self.max_mediated_actions_per_turn,
            allowed_action_types: Vec::new(),
            include_results_in_continuation: self.include_mediated_results_in_continuation,
            max_workflow_steps: self.max_mediated_workflow_steps,
            allowed_tools: Vec::new(),
            denied_tools: Vec::new(),
            max_session_approvals: self.max_session_mediated_approvals,
            include_rejected_in_continuation: self.include_rejected_mediation_in_continuation,
            policy_profile: self.mediation_policy_profile.to_owned(),
        }
    }
}
