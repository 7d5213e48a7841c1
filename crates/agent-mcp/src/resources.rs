//! MCP resources (`docs/reference/sessions.md#11-resources`): `session://{session_id}` (the
//! `agent_get_session` object), `session://{session_id}/events` (the event log as JSON) and
//! `artifact://{session_id}/{artifact_id}` (the artifact's bytes with its MIME type).

use agent_core::Engine;
use agent_core::engine::SessionListEntry;
use agent_core::{GetSessionRequest, StoredEvent};
use base64::Engine as _;
use rmcp::ErrorData;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use serde_json::{Value, json};

/// Sessions per `resources/list` page.
pub const PAGE_SIZE: u32 = 50;

/// The longest cursor echoed back in an error message.
const CURSOR_ECHO_CHARS: usize = 64;

/// Parses a `resources/list` cursor: the decimal offset of the page's first session, at most
/// `u32::MAX` (what [`next_cursor`] hands out). Anything else is an invalid-params error.
pub fn parse_cursor(cursor: &str) -> Result<u32, ErrorData> {
    let valid = !cursor.is_empty() && cursor.bytes().all(|b| b.is_ascii_digit());
    match cursor.parse::<u32>() {
        Ok(offset) if valid => Ok(offset),
        _ => {
            let shown: String = cursor.chars().take(CURSOR_ECHO_CHARS).collect();
            let ellipsis = if shown.len() < cursor.len() {
                "..."
            } else {
                ""
            };
            Err(ErrorData::invalid_params(
                format!(
                    "invalid cursor: {shown:?}{ellipsis} (expected a cursor returned by \
                     resources/list: a page offset from 0 to {})",
                    u32::MAX
                ),
                None,
            ))
        }
    }
}

/// The cursor of the page after the one at `offset`, when `more` sessions follow and the
/// next offset is still a valid cursor.
pub fn next_cursor(offset: u32, more: bool) -> Option<String> {
    if !more {
        return None;
    }
    offset.checked_add(PAGE_SIZE).map(|next| next.to_string())
}

const JSON: &str = "application/json";

/// The resource of one listed session.
pub fn session_resource(entry: &SessionListEntry) -> Resource {
    let summary = entry
        .summary_latest
        .as_deref()
        .unwrap_or("(no summary yet)");
    Resource::new(
        format!("session://{}", entry.session_id),
        entry.session_id.clone(),
    )
    .with_title(format!(
        "{} session ({}, {})",
        entry.workflow, entry.profile, entry.status
    ))
    .with_description(format!("Updated {}: {summary}", entry.updated_at))
    .with_mime_type(JSON)
}

/// The resource templates.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("session://{session_id}", "session")
            .with_title("Agent session")
            .with_description("The stored state of a session, as agent_get_session returns it.")
            .with_mime_type(JSON),
        ResourceTemplate::new("session://{session_id}/events", "session-events")
            .with_title("Session event log")
            .with_description("The append-only event log of a session, oldest first.")
            .with_mime_type(JSON),
        ResourceTemplate::new("artifact://{session_id}/{artifact_id}", "artifact")
            .with_title("Session artifact")
            .with_description(
                "An artifact's body (outputs, verification reports) with its MIME type.",
            ),
    ]
}

fn not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("Resource not found: {uri}"),
        Some(json!({ "uri": uri })),
    )
}

fn internal(message: String) -> ErrorData {
    ErrorData::internal_error(message, None)
}

fn json_contents(uri: &str, value: &Value) -> ReadResourceResult {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type(JSON)])
}

fn event_json(e: &StoredEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "event_type": e.event_type,
        "turn_index": e.turn_index,
        "payload": e.payload,
        "created_at": e.created_at,
    })
}

/// Reads one resource; an unknown URI, session or artifact is a `resource_not_found` error.
pub async fn read(engine: &Engine, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    if let Some(rest) = uri.strip_prefix("session://") {
        let (session_id, events) = match rest.strip_suffix("/events") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        if session_id.is_empty() || session_id.contains('/') {
            return Err(not_found(uri));
        }
        if events {
            let log = engine
                .session_events(session_id)
                .await
                .map_err(|e| internal(e.message))?;
            let log = log.ok_or_else(|| not_found(uri))?;
            let value = Value::Array(log.iter().map(event_json).collect());
            return Ok(json_contents(uri, &value));
        }
        let request = GetSessionRequest {
            session_id: session_id.to_owned(),
        };
        return match engine.get_session(&request).await {
            Ok(view) => Ok(json_contents(
                uri,
                &serde_json::to_value(view).unwrap_or(Value::Null),
            )),
            Err(e) if e.code == agent_core::ErrorCode::SessionNotFound => Err(not_found(uri)),
            Err(e) => Err(internal(e.message)),
        };
    }
    if let Some(rest) = uri.strip_prefix("artifact://") {
        let Some((session_id, artifact_id)) = rest.split_once('/') else {
            return Err(not_found(uri));
        };
        let found = engine
            .read_artifact(session_id, artifact_id)
            .await
            .map_err(|e| internal(e.message))?;
        let (record, body) = found.ok_or_else(|| not_found(uri))?;
        let contents = match String::from_utf8(body) {
            Ok(text) => ResourceContents::text(text, uri),
            Err(e) => ResourceContents::blob(
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                uri,
            ),
        };
        return Ok(ReadResourceResult::new(vec![
            contents.with_mime_type(record.mime_type),
        ]));
    }
    Err(not_found(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_u32_offsets() {
        assert_eq!(parse_cursor("0").ok(), Some(0));
        assert_eq!(parse_cursor("50").ok(), Some(50));
        assert_eq!(parse_cursor("4294967295").ok(), Some(u32::MAX));
        let huge = "9".repeat(10_000);
        for bad in [
            "18446744073709551615",
            "4294967296",
            "-1",
            "+1",
            " 1",
            "1 ",
            "abc",
            "",
            "\u{0661}",
            huge.as_str(),
        ] {
            let err = parse_cursor(bad).expect_err(bad);
            assert_eq!(err.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
            assert!(err.message.starts_with("invalid cursor: "), "{bad}");
            assert!(err.message.len() < 300, "the echo is bounded: {bad}");
        }
    }

    #[test]
    fn the_next_cursor_never_overflows() {
        assert_eq!(next_cursor(0, true).as_deref(), Some("50"));
        assert_eq!(next_cursor(0, false), None);
        assert_eq!(next_cursor(u32::MAX - 49, true), None);
        assert_eq!(
            next_cursor(u32::MAX - 50, true).as_deref(),
            Some("4294967295")
        );
    }
}
