//! Raw rows as SQLite returns them and their decoding into the domain types of `agent-core`.
//! Unknown status/workflow/profile text, unparsable timestamps and invalid payload JSON become
//! [`Error::CorruptRow`] naming the row; decoding never panics.

use agent_core::{
    ForkOrigin, Profile, SessionListItem, SessionRecord, SessionStatus, StoredEvent, Timestamp,
    Workflow,
};

use crate::error::{Error, Result};

/// The columns of a full session row, in schema order, as a literal for `concat!` (used in
/// `SELECT` and `RETURNING` clauses so that every query stays a `&'static str`).
macro_rules! session_columns {
    () => {
        "session_id, workflow, profile, provider, provider_session_id, status, working_directory, \
         created_at, updated_at, last_activity_at, request_count, turn_count, artifact_count, \
         summary_latest, locked_by, lock_expires_at, lock_generation, parent_session_id, \
         forked_at_turn, usage_input_tokens, usage_output_tokens, \
         usage_cache_creation_input_tokens, usage_cache_read_input_tokens, usage_cost_usd"
    };
}
pub(crate) use session_columns;

/// A `sessions` row with every column as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub session_id: String,
    pub workflow: String,
    pub profile: String,
    pub provider: String,
    pub provider_session_id: Option<String>,
    pub status: String,
    pub working_directory: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_activity_at: String,
    pub request_count: i64,
    pub turn_count: i64,
    pub artifact_count: i64,
    pub summary_latest: Option<String>,
    pub locked_by: Option<String>,
    pub lock_expires_at: Option<String>,
    pub lock_generation: i64,
    pub parent_session_id: Option<String>,
    pub forked_at_turn: Option<i64>,
    pub usage_input_tokens: i64,
    pub usage_output_tokens: i64,
    pub usage_cache_creation_input_tokens: Option<i64>,
    pub usage_cache_read_input_tokens: Option<i64>,
    pub usage_cost_usd: Option<f64>,
}

/// The six columns `agent_list_sessions` shows.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ListRow {
    pub session_id: String,
    pub workflow: String,
    pub profile: String,
    pub status: String,
    pub updated_at: String,
    pub summary_latest: Option<String>,
}

/// A `session_events` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub event_id: i64,
    pub session_id: String,
    pub event_type: String,
    pub turn_index: i64,
    pub payload: String,
    pub created_at: String,
}

fn corrupt(table: &'static str, key: &str, problem: String) -> Error {
    Error::CorruptRow {
        table,
        key: key.to_owned(),
        problem,
    }
}

fn session_status(key: &str, text: &str) -> Result<SessionStatus> {
    SessionStatus::parse(text)
        .ok_or_else(|| corrupt("sessions", key, format!("unknown status '{text}'")))
}

fn workflow(key: &str, text: &str) -> Result<Workflow> {
    Workflow::parse(text)
        .ok_or_else(|| corrupt("sessions", key, format!("unknown workflow '{text}'")))
}

fn profile(key: &str, text: &str) -> Result<Profile> {
    Profile::parse(text)
        .ok_or_else(|| corrupt("sessions", key, format!("unknown profile '{text}'")))
}

fn timestamp(key: &str, column: &str, text: &str) -> Result<Timestamp> {
    Timestamp::parse(text)
        .ok_or_else(|| corrupt("sessions", key, format!("unparsable {column} '{text}'")))
}

impl SessionRow {
    pub(crate) fn into_record(self) -> Result<SessionRecord> {
        let key = self.session_id.as_str();
        let lock_expires_at = match &self.lock_expires_at {
            Some(text) => Some(timestamp(key, "lock_expires_at", text)?),
            None => None,
        };
        Ok(SessionRecord {
            workflow: workflow(key, &self.workflow)?,
            profile: profile(key, &self.profile)?,
            status: session_status(key, &self.status)?,
            created_at: timestamp(key, "created_at", &self.created_at)?,
            updated_at: timestamp(key, "updated_at", &self.updated_at)?,
            last_activity_at: timestamp(key, "last_activity_at", &self.last_activity_at)?,
            lock_expires_at,
            provider: self.provider,
            provider_session_id: self.provider_session_id,
            working_directory: self.working_directory,
            request_count: self.request_count,
            turn_count: self.turn_count,
            artifact_count: self.artifact_count,
            summary_latest: self.summary_latest,
            locked_by: self.locked_by,
            lock_generation: self.lock_generation,
            fork: match (self.parent_session_id, self.forked_at_turn) {
                (Some(parent_session_id), Some(at_turn)) => Some(ForkOrigin {
                    parent_session_id,
                    at_turn,
                }),
                _ => None,
            },
            usage: crate::usage::from_columns(
                self.usage_input_tokens,
                self.usage_output_tokens,
                self.usage_cache_creation_input_tokens,
                self.usage_cache_read_input_tokens,
                self.usage_cost_usd,
            ),
            session_id: self.session_id,
        })
    }
}

impl ListRow {
    pub(crate) fn into_item(self) -> Result<SessionListItem> {
        let key = self.session_id.as_str();
        Ok(SessionListItem {
            workflow: workflow(key, &self.workflow)?,
            profile: profile(key, &self.profile)?,
            status: session_status(key, &self.status)?,
            updated_at: timestamp(key, "updated_at", &self.updated_at)?,
            summary_latest: self.summary_latest,
            session_id: self.session_id,
        })
    }
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<StoredEvent> {
        let payload = serde_json::from_str(&self.payload).map_err(|e| {
            corrupt(
                "session_events",
                &self.event_id.to_string(),
                format!("invalid payload JSON: {e}"),
            )
        })?;
        Ok(StoredEvent {
            event_id: self.event_id,
            session_id: self.session_id,
            event_type: self.event_type,
            turn_index: self.turn_index,
            payload,
            created_at: self.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SessionRow {
        SessionRow {
            session_id: "sess_0123456789abcdef".into(),
            workflow: "run_task".into(),
            profile: "general".into(),
            provider: "claude".into(),
            provider_session_id: None,
            status: "running".into(),
            working_directory: Some("/tmp".into()),
            created_at: "2026-04-13T10:20:30+00:00".into(),
            updated_at: "2026-04-13T10:20:30.123456+00:00".into(),
            last_activity_at: "2026-04-13T10:20:30.123456+00:00".into(),
            request_count: 1,
            turn_count: 2,
            artifact_count: 3,
            summary_latest: Some("s".into()),
            locked_by: Some("exec_01234567".into()),
            lock_expires_at: Some("2026-04-13T10:25:30+00:00".into()),
            lock_generation: 1,
            parent_session_id: None,
            forked_at_turn: None,
            usage_input_tokens: 0,
            usage_output_tokens: 0,
            usage_cache_creation_input_tokens: None,
            usage_cache_read_input_tokens: None,
            usage_cost_usd: None,
        }
    }

    #[test]
    fn a_valid_row_decodes() {
        let record = row().into_record().unwrap();
        assert_eq!(record.status, SessionStatus::Running);
        assert_eq!(
            record.updated_at.to_storage(),
            "2026-04-13T10:20:30.123456+00:00"
        );
        assert_eq!(
            record.lock_expires_at.unwrap().to_storage(),
            "2026-04-13T10:25:30+00:00"
        );
        assert_eq!(record.turn_count, 2);
    }

    #[test]
    fn unknown_text_is_a_clear_error() {
        let mut r = row();
        r.status = "paused".into();
        assert_eq!(
            r.into_record().unwrap_err().to_string(),
            "corrupt sessions row sess_0123456789abcdef: unknown status 'paused'"
        );
        let mut r = row();
        r.workflow = "nope".into();
        assert!(
            r.into_record()
                .unwrap_err()
                .to_string()
                .contains("unknown workflow 'nope'")
        );
        let mut r = row();
        r.profile = "admin".into();
        assert!(
            r.into_record()
                .unwrap_err()
                .to_string()
                .contains("unknown profile 'admin'")
        );
        let mut r = row();
        r.lock_expires_at = Some("tomorrow".into());
        assert!(
            r.into_record()
                .unwrap_err()
                .to_string()
                .contains("unparsable lock_expires_at 'tomorrow'")
        );
    }

    #[test]
    fn bad_event_payload_is_an_error() {
        let e = EventRow {
            event_id: 7,
            session_id: "s".into(),
            event_type: "user_input".into(),
            turn_index: 0,
            payload: "{not json".into(),
            created_at: "2026-04-13T10:20:30+00:00".into(),
        };
        assert!(
            e.into_event()
                .unwrap_err()
                .to_string()
                .starts_with("corrupt session_events row 7: invalid payload JSON")
        );
    }
}
