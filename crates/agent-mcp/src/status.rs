//! The `agent_get_runtime_status` snapshot (`docs/reference/status.md#1-runtime-status-tool`). The
//! binary fills it from the resolved configuration once; each call stamps `resolved_at`.

pub use agent_core::settings::{ContinuationSettings, MediationStatus};
use serde::Serialize;

/// `docs/reference/status.md#11-preserved-limitations`, in order.
pub const PRESERVED_LIMITATIONS: [&str; 5] = [
    "No native tool_use / tool_result loop in Claude Code backend — mediated execution is runtime-dispatched, not backend-native tool calling",
    "No streaming transport — stdio is the production transport; streamable-http is available but not the default",
    "No cross-backend session migration — sessions are bound to the backend active at creation time",
    "No broad autonomous execution chaining — per-turn and per-session mediation limits are enforced",
    "Mediated execution requires active federation — without federation, mediated action requests are rejected with federation_inactive",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapabilityFlags {
    pub limited_tool_forwarding_enabled: bool,
    pub execution_mediation_enabled: bool,
    pub federation_enabled: bool,
}

/// The restricted-mode proof fields; all `null` in standard mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RestrictionStatus {
    pub policy_mode: Option<String>,
    pub authority_mode: Option<String>,
    pub tool_surface_mode: Option<String>,
    pub active_profile: Option<String>,
    pub exposed_tools: Option<Vec<String>>,
    pub allowed_directories: Option<Vec<String>>,
    pub restriction_contract_id: Option<String>,
    pub restriction_contract_version: Option<i64>,
    pub fail_closed_enabled: Option<bool>,
    pub restriction_compliance: Option<bool>,
    pub non_compliance_reasons: Option<Vec<String>>,
    pub server_version: Option<String>,
}

/// The whole snapshot, fields in the contract's order
/// (`docs/reference/status.md#1-runtime-status-tool`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeStatus {
    pub version: String,
    pub operator_profile_preset: Option<String>,
    pub backend: String,
    pub transport: String,
    pub model: String,
    pub federation_enabled: bool,
    pub federation_active: bool,
    pub capability_flags: CapabilityFlags,
    pub continuation_settings: ContinuationSettings,
    /// `mediation_settings` and `workflow_settings`.
    #[serde(flatten)]
    pub mediation: MediationStatus,
    pub preserved_limitations: Vec<String>,
    pub resolved_at: String,
    pub mode: String,
    #[serde(flatten)]
    pub restriction: RestrictionStatus,
    /// `sqlite` or `postgresql`: the session store `CLAUDE_AGENT_MCP_DATABASE_URL` selects (an
    /// addition, after the original's keys).
    pub session_store: String,
}
