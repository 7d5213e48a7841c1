//! Bulk-filling the sessions table of a database the server has created (SQLite, or the
//! PostgreSQL schema of a `--database-url` run), and that schema's lifetime.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

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

/// A schema made for one benchmark run in the database of `--database-url`.
pub struct PgSchema {
    pub name: String,
    /// The URL that selects it (`options=-c search_path=<name>`).
    pub url: String,
    server: String,
}

impl PgSchema {
    pub async fn create(server_url: &str) -> Result<Self> {
        let name = format!(
            "bench_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let mut conn = sqlx::postgres::PgConnection::connect(server_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await?;
        sqlx::Connection::close(conn).await?;
        let separator = if server_url.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{server_url}{separator}options=-c%20search_path%3D{name}"),
            name,
            server: server_url.to_owned(),
        })
    }

    /// Drops the schema and everything in it (best effort: a failure is only reported).
    pub async fn drop(self) {
        let dropped = async {
            let mut conn = sqlx::postgres::PgConnection::connect(&self.server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.name
            )))
            .execute(&mut conn)
            .await?;
            sqlx::Connection::close(conn).await
        }
        .await;
        if let Err(e) = dropped {
            super::progress(&format!("could not drop schema {}: {e}", self.name));
        }
    }
}

/// [`populate`] on PostgreSQL, in one statement (`generate_series`): the same rows, ids
/// scrambled (an md5 prefix of the row number) and timestamps 1.3 s apart, then `ANALYZE`.
pub async fn populate_pg(url: &str, working_directory: &str, count: u64) -> Result<Duration> {
    let start = std::time::Instant::now();
    let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
    sqlx::query(
        "INSERT INTO sessions (session_id, workflow, profile, provider, status, \
         working_directory, created_at, updated_at, last_activity_at, request_count, \
         turn_count, artifact_count, summary_latest) \
         SELECT 'sess_' || substr(md5(i::text), 1, 16), 'run_task', 'general', 'claude', \
           'completed', $1, t, t + interval '850 milliseconds', t + interval '850 milliseconds', \
           1, 1, 0, 'Completed benchmark task #' || i || ': reviewed the module, listed the \
           public functions and summarised their contracts.' \
         FROM generate_series(0, $2 - 1) AS i, \
           LATERAL (SELECT timestamptz '2026-04-13T10:20:30.123456+00:00' \
             + i * interval '1300017 microseconds' AS t) AS times",
    )
    .bind(working_directory)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .execute(&mut conn)
    .await?;
    sqlx::query("ANALYZE sessions").execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    Ok(start.elapsed())
}
