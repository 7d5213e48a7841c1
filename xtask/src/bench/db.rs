//! Bulk-filling the sessions table of a database the server has created.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use super::Result;

const INSERT: &str = "INSERT INTO sessions (session_id, workflow, profile, provider, status, \
     working_directory, created_at, updated_at, last_activity_at, request_count, turn_count, \
     artifact_count, summary_latest) \
     VALUES (?1, 'run_task', 'general', 'claude', 'completed', ?2, ?3, ?4, ?4, 1, 1, 0, ?5)";

/// Storage text of a timestamp (`2026-04-13T10:20:30.123456+00:00`).
fn storage(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Inserts `count` completed `run_task` sessions with distinct ids and timestamps in one
/// transaction. Ids are scrambled (a bijection of the row number), so that their order is
/// unrelated to time, as with real random ids.
pub async fn populate(db_path: &Path, working_directory: &str, count: u64) -> Result<Duration> {
    let start = std::time::Instant::now();
    let mut conn = SqliteConnectOptions::new()
        .filename(db_path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .connect()
        .await?;
    let base =
        DateTime::parse_from_rfc3339("2026-04-13T10:20:30.123456+00:00")?.with_timezone(&Utc);
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    for i in 0..count {
        let id = format!("sess_{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // About 1.3 s apart, so 100k sessions span a day and a half.
        let offset = i64::try_from(i)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_300_017);
        let created = base + TimeDelta::microseconds(offset);
        let updated = created + TimeDelta::milliseconds(850);
        let summary = format!(
            "Completed benchmark task #{i}: reviewed the module, listed the public functions and summarised their contracts."
        );
        sqlx::query(INSERT)
            .bind(&id)
            .bind(working_directory)
            .bind(storage(created))
            .bind(storage(updated))
            .bind(summary)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    sqlx::Connection::close(conn).await?;
    Ok(start.elapsed())
}
