//! The canonical response envelope (`docs/reference/envelope.md#2-the-canonical-envelope`) returned
//! by run, continue and verify.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, ErrorObject};
use crate::model::{Profile, Workflow};

/// `completed` when `ok`, `failed` for every error envelope, `running` for work that goes on
/// after the call answered (`wait_seconds`, `agent_wait_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeStatus {
    Completed,
    Failed,
    Running,
}

/// The tool that collects the result of a session whose envelope said `running`.
pub const WAIT_TOOL: &str = "agent_wait_session";

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

    /// The answer for work still going on in the server
    /// (`docs/reference/envelope.md#22-running`): `ok: false`, `status: "running"`, no errors,
    /// and one warning naming [`WAIT_TOOL`] and the session to pass it.
    pub fn running(
        session_id: impl Into<String>,
        workflow: Workflow,
        profile: impl Into<String>,
    ) -> Self {
        let session_id = session_id.into();
        Self {
            ok: false,
            summary: format!("Session {session_id} is still running"),
            warnings: vec![format!(
                "Session {session_id} is still running in the server: collect its result with \
                 {WAIT_TOOL} {{\"session_id\": \"{session_id}\"}}"
            )],
            session_id,
            status: EnvelopeStatus::Running,
            workflow,
            profile: profile.into(),
            result: Map::new(),
            artifacts: Vec::new(),
            errors: Vec::new(),
        }
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
    fn a_running_envelope_names_its_session_and_the_wait_tool() {
        let env = Envelope::running("sess_1", Workflow::RunTask, "general");
        assert_eq!(
            env.to_value(),
            json!({
                "ok": false, "session_id": "sess_1", "status": "running", "workflow": "run_task",
                "profile": "general", "summary": "Session sess_1 is still running", "result": {},
                "artifacts": [],
                "warnings": ["Session sess_1 is still running in the server: collect its result with agent_wait_session {\"session_id\": \"sess_1\"}"],
                "errors": []
            })
        );
    }

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
