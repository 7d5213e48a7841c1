//! The claude_code continuation and mediation settings: one type per concern, which the
//! configuration resolves (`agent_policy::config`, with the defaults and presets), the engine
//! and the mediator obey and the status tool reports (`agent-mcp`), so none of them keeps a
//! copy of the fields (`docs/reference/mediation.md`, `docs/configuration.md`).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::continuation::{MediationInclusion, WindowPolicy};

/// The claude_code continuation-window settings. Field names are the status tool's
/// `continuation_settings` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContinuationSettings {
    pub max_continuation_turns: i64,
    pub max_continuation_warnings: i64,
    pub max_continuation_forwarding_events: i64,
    pub include_verification_context: bool,
    pub include_tool_downgrade_context: bool,
}

impl ContinuationSettings {
    /// The engine's window (whose names the `session_continuation_context_built` event
    /// records).
    pub fn window(&self) -> WindowPolicy {
        WindowPolicy {
            max_recent_turns: self.max_continuation_turns,
            max_warnings: self.max_continuation_warnings,
            max_forwarding_events: self.max_continuation_forwarding_events,
            include_verification_context: self.include_verification_context,
            include_tool_downgrade_context: self.include_tool_downgrade_context,
        }
    }
}

/// The claude_code mediation settings. Limits stay `i64` as configured: a zero or negative
/// limit rejects every request at its gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediationSettings {
    /// The master switch.
    pub enabled: bool,
    /// Approvals per execution.
    pub max_actions_per_turn: i64,
    /// Empty means all of `read`, `lookup`, `inspect`.
    pub allowed_action_types: Vec<String>,
    /// Whether continuations carry the results of approved actions.
    pub include_results_in_continuation: bool,
    /// Steps per workflow block.
    pub max_workflow_steps: i64,
    /// Empty means every visible tool.
    pub allowed_tools: Vec<String>,
    /// Wins over the allow list.
    pub denied_tools: Vec<String>,
    /// Approvals over the session's life.
    pub max_session_approvals: i64,
    /// Whether continuations also carry rejected requests (with the results).
    pub include_rejected_in_continuation: bool,
    /// A label, reported and never enforced.
    pub policy_profile: String,
}

impl MediationSettings {
    /// Whether `action_type` (`read`, `lookup`, `inspect`) passes the action-type gate.
    pub fn action_type_allowed(&self, action_type: &str) -> bool {
        self.allowed_action_types.is_empty()
            || self.allowed_action_types.iter().any(|t| t == action_type)
    }

    /// Whether `tool` passes the tool gates (the deny list wins over the allow list).
    pub fn tool_allowed(&self, tool: &str) -> bool {
        !self.denied_tools.iter().any(|t| t == tool)
            && (self.allowed_tools.is_empty() || self.allowed_tools.iter().any(|t| t == tool))
    }

    /// Which mediated results a continuation carries.
    pub fn continuation_inclusion(&self) -> MediationInclusion {
        MediationInclusion {
            include_mediated: self.include_results_in_continuation,
            include_rejected: self.include_rejected_in_continuation,
        }
    }
}

/// The settings as the status tool shows them: two objects, `mediation_settings` (the switch,
/// the per-turn limit, the action types, result inclusion) and `workflow_settings` (the rest),
/// each key in the order of the reference (`docs/reference/status.md`).
/// Flattened into the status snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediationStatus(pub MediationSettings);

impl Serialize for MediationStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Mediation<'a> {
            enabled: bool,
            max_actions_per_turn: i64,
            allowed_action_types: &'a [String],
            include_results_in_continuation: bool,
        }
        #[derive(Serialize)]
        struct Workflow<'a> {
            max_workflow_steps: i64,
            allowed_tools: &'a [String],
            denied_tools: &'a [String],
            max_session_approvals: i64,
            include_rejected_in_continuation: bool,
            policy_profile: &'a str,
        }
        let s = &self.0;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(
            "mediation_settings",
            &Mediation {
                enabled: s.enabled,
                max_actions_per_turn: s.max_actions_per_turn,
                allowed_action_types: &s.allowed_action_types,
                include_results_in_continuation: s.include_results_in_continuation,
            },
        )?;
        map.serialize_entry(
            "workflow_settings",
            &Workflow {
                max_workflow_steps: s.max_workflow_steps,
                allowed_tools: &s.allowed_tools,
                denied_tools: &s.denied_tools,
                max_session_approvals: s.max_session_approvals,
                include_rejected_in_continuation: s.include_rejected_in_continuation,
                policy_profile: &s.policy_profile,
            },
        )?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> MediationSettings {
        MediationSettings {
            enabled: true,
            max_actions_per_turn: 3,
            allowed_action_types: vec!["lookup".into()],
            include_results_in_continuation: true,
            max_workflow_steps: 2,
            allowed_tools: vec!["s__a".into(), "s__b".into()],
            denied_tools: vec!["s__b".into()],
            max_session_approvals: 50,
            include_rejected_in_continuation: false,
            policy_profile: "mediation_enabled".into(),
        }
    }

    #[test]
    fn the_continuation_settings_give_the_engine_window() {
        let settings = ContinuationSettings {
            max_continuation_turns: 10,
            max_continuation_warnings: 5,
            max_continuation_forwarding_events: 4,
            include_verification_context: false,
            include_tool_downgrade_context: true,
        };
        assert_eq!(
            settings.window(),
            WindowPolicy {
                max_recent_turns: 10,
                max_warnings: 5,
                max_forwarding_events: 4,
                include_verification_context: false,
                include_tool_downgrade_context: true,
            }
        );
    }

    #[test]
    fn gates_read_the_lists() {
        let s = settings();
        assert!(s.action_type_allowed("lookup"));
        assert!(!s.action_type_allowed("read"));
        assert!(s.tool_allowed("s__a"));
        assert!(!s.tool_allowed("s__b"), "the deny list wins");
        assert!(!s.tool_allowed("s__c"), "not in the allow list");
        let open = MediationSettings {
            allowed_action_types: Vec::new(),
            allowed_tools: Vec::new(),
            denied_tools: Vec::new(),
            ..settings()
        };
        assert!(open.action_type_allowed("read") && open.tool_allowed("s__c"));
        assert_eq!(
            s.continuation_inclusion(),
            MediationInclusion {
                include_mediated: true,
                include_rejected: false
            }
        );
    }

    #[test]
    fn the_status_shows_two_objects_in_reference_order() {
        let text = serde_json::to_string(&MediationStatus(settings())).unwrap();
        assert_eq!(
            text,
            json!({
                "mediation_settings": {
                    "enabled": true,
                    "max_actions_per_turn": 3,
                    "allowed_action_types": ["lookup"],
                    "include_results_in_continuation": true
                },
                "workflow_settings": {
                    "max_workflow_steps": 2,
                    "allowed_tools": ["s__a", "s__b"],
                    "denied_tools": ["s__b"],
                    "max_session_approvals": 50,
                    "include_rejected_in_continuation": false,
                    "policy_profile": "mediation_enabled"
                }
            })
            .to_string()
        );
    }
}
