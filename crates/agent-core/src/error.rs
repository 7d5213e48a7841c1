//! Error codes (`docs/reference/envelope.md#6-error-codes`) and the error object clients receive
//! (`docs/reference/envelope.md#4-error-objects`).

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::model::string_enum;

string_enum! {
    /// Every stable error code a client or operator can see.
    ErrorCode {
        ValidationError => "validation_error",
        PolicyDenied => "policy_denied",
        SessionNotFound => "session_not_found",
        SessionConflict => "session_conflict",
        ProviderRuntimeError => "provider_runtime_error",
        NormalizationError => "normalization_error",
        ClaudeCodeUnavailable => "claude_code_unavailable",
        ClaudeCodeInvocationError => "claude_code_invocation_error",
        ArtifactPersistenceError => "artifact_persistence_error",
        SessionStatusError => "session_status_error",
        ConfigurationError => "configuration_error",
        ExecutionBackendConfigError => "execution_backend_config_error",
        ExecutionBackendAuthError => "execution_backend_auth_error",
        ExecutionBackendUnavailable => "execution_backend_unavailable",
        InternalError => "internal_error",
        ToolNotAdmitted => "tool_not_admitted",
        UnknownTool => "unknown_tool",
        InspectorUnavailable => "inspector_unavailable",
        MissingEvidence => "missing_evidence",
        // The execution was cancelled (an addition,
        // `docs/reference/tools.md#10-agent_cancel_session`).
        SessionCancelled => "session_cancelled",
        // The answer does not match the caller's `output_schema` (an addition,
        // `docs/reference/tools.md#16-structured-results`).
        StructuredOutputInvalid => "structured_output_invalid",
        // `agent_wait_session` (an addition, `docs/reference/tools.md#14-agent_wait_session`):
        // the execution was cut off before it recorded a result (its process died) ...
        SessionInterrupted => "session_interrupted",
        // ... or no result is kept for the session's latest execution.
        SessionResultUnavailable => "session_result_unavailable",
        // Verification preflight lint codes, reported on a restricted-mode block.
        ScopeTooBroad => "scope_too_broad",
        AmbiguousRequest => "ambiguous_request",
        MissingRequiredContext => "missing_required_context",
        NonVerifiableRequest => "non_verifiable_request",
        OutOfProfileRequest => "out_of_profile_request",
        RestrictedModeMismatch => "restricted_mode_mismatch",
        // Verification failure codes of unavailable results
        // (`docs/reference/verification.md#7-unavailable-results`).
        ClaudeCodeNotInstalled => "claude_code_not_installed",
        ClaudeCodeTimeout => "claude_code_timeout",
        ClaudeCodeNotAuthenticated => "claude_code_not_authenticated",
        ClaudeCodeLimitReached => "claude_code_limit_reached",
        ClaudeCodeProcessError => "claude_code_process_error",
        ClaudeCodeUnparseableResponse => "claude_code_unparseable_response",
        ClaudeCodeEmptyResponse => "claude_code_empty_response",
    }
}

/// Whether an error object carries a `details` key (`docs/reference/envelope.md#4-error-objects`):
/// the workflow layer always writes it (usually `null`), the handler-validation layer omits it.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    Omitted,
    Null,
    Value(Value),
}

impl Details {
    fn is_omitted(&self) -> bool {
        matches!(self, Details::Omitted)
    }
}

impl Serialize for Details {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Details::Omitted | Details::Null => serializer.serialize_none(),
            Details::Value(v) => v.serialize(serializer),
        }
    }
}

/// `{"code", "message", "details"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorObject {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Details::is_omitted")]
    pub details: Details,
}

impl ErrorObject {
    /// A workflow-layer error: `details` is `null`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Details::Null,
        }
    }

    /// An error without a `details` key (handler layer, `{"error": ...}` results).
    pub fn bare(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Details::Omitted,
        }
    }

    /// A handler-layer validation error: no `details` key.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::bare(ErrorCode::ValidationError, message)
    }

    /// The `{"error": {...}}` object returned by get/list/status and tool admission.
    pub fn into_error_result(self) -> Value {
        serde_json::json!({ "error": self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_key_follows_the_layer() {
        let workflow = ErrorObject::new(ErrorCode::PolicyDenied, "no");
        assert_eq!(
            serde_json::to_value(&workflow).unwrap(),
            json!({"code": "policy_denied", "message": "no", "details": null})
        );
        let handler = ErrorObject::validation("Invalid x");
        assert_eq!(
            handler.into_error_result(),
            json!({"error": {"code": "validation_error", "message": "Invalid x"}})
        );
    }
}
