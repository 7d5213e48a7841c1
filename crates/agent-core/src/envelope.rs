//! The canonical response envelope (`docs/reference/envelope.md#2-the-canonical-envelope`) returned
//! by run, continue and verify.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, ErrorObject};
use crate::model::{Profile, Workflow};

/// `completed` when `ok`, `failed` for every error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeStatus {
    Completed,
    Failed,
}

/// `{artifact_id, artifact_type, logical_name, mime_type}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRef {
    pub artifact_id: String,
    pub artifact_type: String,
    pub logical_name: String,
    pub mime_type: String,
}

/// The envelope, fields in the contract's key order
/// (`docs/reference/envelope.md#2-the-canonical-envelope`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    pub ok: bool,
    pub session_id: String,
    pub status: EnvelopeStatus,
    pub workflow: Workflow,
    /// A string, not a [`Profile`]: the validation path echoes the raw argument (quirk).
    pub profile: String,
    pub summary: String,
    pub result: Map<String, Value>,
    pub artifacts: Vec<ArtifactRef>,
    pub warnings: Vec<String>,
    pub errors: Vec<ErrorObject>,
}

impl Envelope {
    /// A successful envelope.
    pub fn success(
        session_id: String,
        workflow: Workflow,
        profile: Profile,
        summary: String,
        result: Map<String, Value>,
    ) -> Self {
        Self {
            ok: true,
            session_id,
            status: EnvelopeStatus::Completed,
            workflow,
            profile: profile.as_str().to_owned(),
            summary,
            result,
            artifacts: Vec::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The generic error envelope (`docs/reference/envelope.md#5-the-generic-error-envelope`):
    /// summary = message, empty result.
    pub fn error(
        session_id: impl Into<String>,
        workflow: Workflow,
        profile: impl Into<String>,
        error: ErrorObject,
    ) -> Self {
        Self {
            ok: false,
            session_id: session_id.into(),
            status: EnvelopeStatus::Failed,
            workflow,
            profile: profile.into(),
            summary: error.message.clone(),
            result: Map::new(),
            artifacts: Vec::new(),
            warnings: Vec::new(),
            errors: vec![error],
        }
    }

    /// Shorthand for a workflow-layer error with `details: null`.
    pub fn failure(
        session_id: impl Into<String>,
        workflow: Workflow,
        profile: impl Into<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self::error(
            session_id,
            workflow,
            profile,
            ErrorObject::new(code, message),
        )
    }

    pub fn with_result(mut self, result: Map<String, Value>) -> Self {
        self.result = result;
        self
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_envelope_has_every_key_in_order() {
        let env = Envelope::failure(
            "",
            Workflow::RunTask,
            "bogus",
            ErrorCode::ValidationError,
            "bad",
        );
        let text = serde_json::to_string(&env).unwrap();
        assert!(text.starts_with(r#"{"ok":false,"session_id":"","status":"failed","workflow":"run_task","profile":"bogus","summary":"bad""#));
        assert_eq!(
            env.to_value(),
            json!({
                "ok": false, "session_id": "", "status": "failed", "workflow": "run_task",
                "profile": "bogus", "summary": "bad", "result": {}, "artifacts": [],
                "warnings": [], "errors": [{"code": "validation_error", "message": "bad", "details": null}]
            })
        );
    }
}
