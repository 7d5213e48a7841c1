//! PostgreSQL rows in native types and their decoding into the domain types. A timestamp is
//! formatted to the stored text form of the SQLite store (`Timestamp::to_storage`) and then
//! decoded by the same code (`crate::rows`), so both stores return the same bytes and reject
//! the same corrupt values.

use agent_core::{ArtifactRecord, SessionListItem, SessionRecord, StoredEvent, Timestamp};
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::rows::{EventRow, ListRow, SessionRow};

/// The stored text form of a `timestamptz`.
pub(super) fn storage(at: DateTime<Utc>) -> String {
    Timestamp::from_datetime(at).to_storage()
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PgSessionRow {
    session_id: String,
    workflow: String,
    profile: String,
    provider: String,
    provider_session_id: Option<String>,
    status: String,
    working_directory: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_activity_at: DateTime<Utc>,
    request_count: i64,
    turn_count: i64,
    artifact_count: i64,
    summary_latest: Option<String>,
    locked_by: Option<String>,
    lock_expires_at: Option<DateTime<Utc>>,
    lock_generation: i64,
    parent_session_id: Option<String>,
    forked_at_turn: Option<i64>,
    usage_input_tokens: i64,
    usage_output_tokens: i64,
    usage_cache_creation_input_tokens: Option<i64>,
    usage_cache_read_input_tokens: Option<i64>,
    usage_cost_usd: Option<f64>,
}

impl PgSessionRow {
    pub(super) fn into_record(self) -> Result<SessionRecord> {
        SessionRow {
            session_id: self.session_id,
            workflow: self.workflow,
            profile: self.profile,
            provider: self.provider,
            provider_session_id: self.provider_session_id,
            status: self.status,
            working_directory: self.working_directory,
            created_at: storage(self.created_at),
            updated_at: storage(self.updated_at),
            last_activity_at: storage(self.last_activity_at),
            request_count: self.request_count,
            turn_count: self.turn_count,
            artifact_count: self.artifact_count,
            summary_latest: self.summary_latest,
            locked_by: self.locked_by,
            lock_expires_at: self.lock_expires_at.map(storage),
            lock_generation: self.lock_generation,
            parent_session_id: self.parent_session_id,
            forked_at_turn: self.forked_at_turn,
            usage_input_tokens: self.usage_input_tokens,
            usage_output_tokens: self.usage_output_tokens,
            usage_cache_creation_input_tokens: self.usage_cache_creation_input_tokens,
            usage_cache_read_input_tokens: self.usage_cache_read_input_tokens,
            usage_cost_usd: self.usage_cost_usd,
        }
        .into_record()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PgListRow {
    session_id: String,
    workflow: String,
    profile: String,
    status: String,
    updated_at: DateTime<Utc>,
    summary_latest: Option<String>,
}

impl PgListRow {
    pub(super) fn into_item(self) -> Result<SessionListItem> {
        ListRow {
            session_id: self.session_id,
            workflow: self.workflow,
            profile: self.profile,
            status: self.status,
            updated_at: storage(self.updated_at),
            summary_latest: self.summary_latest,
        }
        .into_item()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PgEventRow {
    event_id: i64,
    session_id: String,
    event_type: String,
    turn_index: i64,
    payload: String,
    created_at: DateTime<Utc>,
}

impl PgEventRow {
    pub(super) fn into_event(self) -> Result<StoredEvent> {
        EventRow {
            event_id: self.event_id,
            session_id: self.session_id,
            event_type: self.event_type,
            turn_index: self.turn_index,
            payload: self.payload,
            created_at: storage(self.created_at),
        }
        .into_event()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ArtifactRow {
    artifact_id: String,
    session_id: String,
    artifact_type: String,
    logical_name: String,
    mime_type: String,
    size_bytes: i64,
    sha256: String,
    created_at: DateTime<Utc>,
    turn_index: i64,
    producer_tool: String,
}

impl ArtifactRow {
    pub(super) fn into_record(self) -> ArtifactRecord {
        ArtifactRecord {
            artifact_id: self.artifact_id,
            session_id: self.session_id,
            artifact_type: self.artifact_type,
            logical_name: self.logical_name,
            mime_type: self.mime_type,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            created_at: storage(self.created_at),
            turn_index: self.turn_index,
            producer_tool: self.producer_tool,
        }
    }
}

/// An artifact with its stored size and its body (null when over the read limit).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ArtifactBodyRow {
    #[sqlx(flatten)]
    record: ArtifactRow,
    stored_bytes: i64,
    body: Option<Vec<u8>>,
}

impl ArtifactBodyRow {
    pub(super) fn split(self) -> (ArtifactRow, i64, Option<Vec<u8>>) {
        (self.record, self.stored_bytes, self.body)
    }
}

/// A session the sweep interrupted, with its lock as the sweep found it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ExpiredRow {
    pub session_id: String,
    pub turn_count: i64,
    pub locked_by: Option<String>,
    pub lock_expires_at: Option<DateTime<Utc>>,
}
