//! Copying a SQLite state directory into a PostgreSQL store: every session, event, kept output,
//! kept result and artifact (its bytes read from the state directory's artifact files),
//! verified by counts
//! (`claude-agent-mcp migrate-store`, `docs/scaling.md#moving-a-sqlite-state-directory-to-postgresql`).
//!
//! Sessions are copied in batches ordered by id, each batch in one PostgreSQL transaction that
//! commits only when the destination holds as many events, outputs, results and artifacts for the
//! batch's sessions as the source: a copy that stops half-way leaves whole sessions, and
//! running it again skips the sessions already there (after checking that their counts
//! match) and goes on. Events keep their ids, so event cursors stay valid; the destination's
//! id sequence is moved past the highest copied id at the end. Events are read and written in
//! chunks, so memory is bounded whatever a session holds.

use std::path::{Path, PathBuf};

use agent_core::Timestamp;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{PgConnection, Postgres, Row, Sqlite, SqlitePool, Transaction};

use crate::artifacts;
use crate::postgres::PostgresStore;
use crate::rows::session_columns;
use crate::store::SqliteStore;

/// The default number of sessions per batch (one destination transaction each).
pub const DEFAULT_BATCH: usize = 500;
/// The largest batch: it also bounds the number of SQLite bind parameters of a batch query.
pub const MAX_BATCH: usize = 5_000;
/// Events read and written per statement.
const EVENT_CHUNK: usize = 1_000;

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Sessions per batch, 1 to [`MAX_BATCH`].
    pub batch: usize,
    /// Copy even when some session's lease in the source has not expired (a server still
    /// serving that state directory). Off by default: stop the servers first.
    pub allow_live_leases: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            allow_live_leases: false,
        }
    }
}

/// What was copied (and, for sessions already in the destination, found matching).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Sessions in the source.
    pub source_sessions: u64,
    /// Sessions copied by this run.
    pub sessions: u64,
    /// Sessions already in the destination with the same counts (an earlier, interrupted run).
    pub already_present: u64,
    pub events: u64,
    pub outputs: u64,
    /// Results kept for `agent_wait_session` (table `session_results`).
    pub results: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
}

/// Why a copy stopped. Batches committed before it stay in the destination; running the
/// command again goes on from there.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("reading the SQLite store: {0}")]
    Source(#[source] sqlx::Error),
    #[error("writing the PostgreSQL store: {0}")]
    Destination(#[source] sqlx::Error),
    #[error(
        "{count} session(s) in the source hold a lease that has not expired (first: {first}): \
         a server still serves this state directory. Stop every server that uses it, wait for \
         the lock TTL, or pass --allow-live-leases"
    )]
    LiveLeases { count: i64, first: String },
    #[error(
        "session {session_id} is already in the destination with different contents \
         ({what}: {destination} there, {source_count} in the source); migrate into a new \
         database or one that only this command filled"
    )]
    Differs {
        session_id: String,
        what: &'static str,
        destination: i64,
        source_count: i64,
    },
    #[error(
        "after copying sessions {first} to {last}, the destination holds {destination} {what} \
         for them and the source {source_count}; nothing of this batch was kept"
    )]
    CountMismatch {
        first: String,
        last: String,
        what: &'static str,
        destination: i64,
        source_count: i64,
    },
    #[error("artifact {artifact_id} of session {session_id}: {problem}")]
    Artifact {
        session_id: String,
        artifact_id: String,
        problem: String,
    },
    #[error("corrupt {table} row {key}: {problem}")]
    Corrupt {
        table: &'static str,
        key: String,
        problem: String,
    },
    #[error("the batch size must be 1 to {MAX_BATCH}, not {0}")]
    BatchSize(usize),
}

type Result<T> = std::result::Result<T, MigrateError>;

fn src(error: sqlx::Error) -> MigrateError {
    MigrateError::Source(error)
}

fn dst(error: sqlx::Error) -> MigrateError {
    MigrateError::Destination(error)
}

/// A stored SQLite timestamp as PostgreSQL's `timestamptz`.
fn instant(table: &'static str, key: &str, text: &str) -> Result<DateTime<Utc>> {
    Timestamp::parse(text)
        .map(|t| t.as_datetime())
        .ok_or_else(|| MigrateError::Corrupt {
            table,
            key: key.to_owned(),
            problem: format!("timestamp {text:?} is not ISO-8601"),
        })
}

fn optional_instant(
    table: &'static str,
    key: &str,
    text: Option<&str>,
) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| instant(table, key, t)).transpose()
}

/// `?1, ?2, …, ?n` for a batch query.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies every session of `from` into `to`; `progress` is called after each committed batch
/// with the totals so far.
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PostgresStore,
    options: MigrateOptions,
    mut progress: impl FnMut(&MigrateReport),
) -> Result<MigrateReport> {
    if options.batch == 0 || options.batch > MAX_BATCH {
        return Err(MigrateError::BatchSize(options.batch));
    }
    let source = from.pool();
    if !options.allow_live_leases {
        check_no_live_leases(source).await?;
    }
    let mut report = MigrateReport {
        source_sessions: sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(source)
            .await
            .map_err(src)?
            .try_into()
            .unwrap_or(0),
        ..MigrateReport::default()
    };
    let artifact_root = from.artifact_root().to_path_buf();
    let mut after = String::new();
    loop {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT session_id FROM sessions WHERE session_id > ?1 ORDER BY session_id LIMIT ?2",
        )
        .bind(&after)
        .bind(options.batch as i64)
        .fetch_all(source)
        .await
        .map_err(src)?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        copy_batch(
            source,
            to,
            &artifact_root,
            from.config().max_artifact_bytes,
            &ids,
            &mut report,
        )
        .await?;
        progress(&report);
        after = last;
    }
    // New events in the destination get ids after every copied one.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('session_events', 'event_id'), \
         GREATEST((SELECT MAX(event_id) FROM session_events), 1))",
    )
    .execute(to.pool())
    .await
    .map_err(dst)?;
    Ok(report)
}

async fn check_no_live_leases(source: &SqlitePool) -> Result<()> {
    let now = Timestamp::now().to_storage();
    let row = sqlx::query(
        "SELECT count(*), MIN(session_id) FROM sessions WHERE locked_by IS NOT NULL \
         AND (lock_expires_at IS NULL OR lock_expires_at > ?1)",
    )
    .bind(&now)
    .fetch_one(source)
    .await
    .map_err(src)?;
    let count: i64 = row.try_get(0).map_err(src)?;
    if count > 0 {
        return Err(MigrateError::LiveLeases {
            count,
            first: row
                .try_get::<Option<String>, _>(1)
                .map_err(src)?
                .unwrap_or_default(),
        });
    }
    Ok(())
}

/// The counts that verify a session or a batch, in the order of [`COUNTED`].
type Counts = [i64; 4];
const COUNTED: [&str; 4] = ["events", "outputs", "artifacts", "results"];

async fn source_counts(source: &SqlitePool, ids: &[String]) -> Result<Counts> {
    let list = placeholders(ids.len());
    let mut counts = [0; 4];
    for (slot, table) in counts.iter_mut().zip([
        "session_events",
        "session_outputs",
        "artifacts",
        "session_results",
    ]) {
        let sql = format!("SELECT count(*) FROM {table} WHERE session_id IN ({list})");
        let mut query = sqlx::query_scalar::<Sqlite, i64>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        *slot = query.fetch_one(source).await.map_err(src)?;
    }
    Ok(counts)
}

async fn destination_counts(conn: &mut PgConnection, ids: &[String]) -> Result<Counts> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM session_events WHERE session_id = ANY($1)), \
                (SELECT count(*) FROM session_outputs WHERE session_id = ANY($1)), \
                (SELECT count(*) FROM artifacts WHERE session_id = ANY($1)), \
                (SELECT count(*) FROM session_results WHERE session_id = ANY($1))",
    )
    .bind(ids)
    .fetch_one(&mut *conn)
    .await
    .map_err(dst)?;
    let mut counts = [0; 4];
    for (i, slot) in counts.iter_mut().enumerate() {
        *slot = row.try_get(i).map_err(dst)?;
    }
    Ok(counts)
}

async fn copy_batch(
    source: &SqlitePool,
    to: &PostgresStore,
    artifact_root: &Path,
    max_artifact_bytes: u64,
    ids: &[String],
    report: &mut MigrateReport,
) -> Result<()> {
    let mut tx: Transaction<'_, Postgres> = to.pool().begin().await.map_err(dst)?;
    let inserted = insert_sessions(source, &mut tx, ids).await?;
    // Sessions already there: an earlier run copied them whole, or the destination is not
    // new. Their counts tell which.
    for id in ids.iter().filter(|id| !inserted.contains(*id)) {
        let one = std::slice::from_ref(id);
        let (there, here) = (
            destination_counts(&mut tx, one).await?,
            source_counts(source, one).await?,
        );
        if let Some(i) = (0..COUNTED.len()).find(|&i| there[i] != here[i]) {
            return Err(MigrateError::Differs {
                session_id: id.clone(),
                what: COUNTED[i],
                destination: there[i],
                source_count: here[i],
            });
        }
        report.already_present += 1;
    }
    if inserted.is_empty() {
        tx.commit().await.map_err(dst)?;
        return Ok(());
    }
    let events = copy_events(source, &mut tx, &inserted).await?;
    let outputs = copy_text_rows(source, &mut tx, &inserted, &OUTPUTS).await?;
    let results = copy_text_rows(source, &mut tx, &inserted, &RESULTS).await?;
    let (artifacts, bytes) = copy_artifacts(
        source,
        &mut tx,
        artifact_root,
        max_artifact_bytes,
        &inserted,
    )
    .await?;

    let (there, here) = (
        destination_counts(&mut tx, &inserted).await?,
        source_counts(source, &inserted).await?,
    );
    if let Some(i) = (0..COUNTED.len()).find(|&i| there[i] != here[i]) {
        return Err(MigrateError::CountMismatch {
            first: inserted[0].clone(),
            last: inserted[inserted.len() - 1].clone(),
            what: COUNTED[i],
            destination: there[i],
            source_count: here[i],
        });
    }
    tx.commit().await.map_err(dst)?;
    report.sessions += inserted.len() as u64;
    report.events += events;
    report.outputs += outputs;
    report.results += results;
    report.artifacts += artifacts;
    report.artifact_bytes += bytes;
    Ok(())
}

/// Inserts the batch's sessions that the destination does not hold; returns their ids.
async fn insert_sessions(
    source: &SqlitePool,
    tx: &mut PgConnection,
    ids: &[String],
) -> Result<Vec<String>> {
    let sql = format!(
        concat!(
            "SELECT ",
            session_columns!(),
            ", cancel_requested_at, cancel_reason FROM sessions WHERE session_id IN ({}) \
             ORDER BY session_id"
        ),
        placeholders(ids.len())
    );
    let mut query = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(source).await.map_err(src)?;

    #[derive(Default)]
    struct Columns {
        text: [Vec<String>; 5],
        optional_text: [Vec<Option<String>>; 6],
        at: [Vec<DateTime<Utc>>; 3],
        optional_at: [Vec<Option<DateTime<Utc>>>; 2],
        number: [Vec<i64>; 6],
        optional_number: [Vec<Option<i64>>; 3],
        cost: Vec<Option<f64>>,
    }
    let mut c = Columns::default();
    for row in &rows {
        let id: String = row.try_get("session_id").map_err(src)?;
        for (slot, name) in
            c.text
                .iter_mut()
                .zip(["session_id", "workflow", "profile", "provider", "status"])
        {
            slot.push(row.try_get(name).map_err(src)?);
        }
        for (slot, name) in c.optional_text.iter_mut().zip([
            "provider_session_id",
            "working_directory",
            "summary_latest",
            "locked_by",
            "cancel_reason",
            "parent_session_id",
        ]) {
            slot.push(row.try_get(name).map_err(src)?);
        }
        for (slot, name) in
            c.at.iter_mut()
                .zip(["created_at", "updated_at", "last_activity_at"])
        {
            let text: String = row.try_get(name).map_err(src)?;
            slot.push(instant("sessions", &id, &text)?);
        }
        for (slot, name) in c
            .optional_at
            .iter_mut()
            .zip(["lock_expires_at", "cancel_requested_at"])
        {
            let text: Option<String> = row.try_get(name).map_err(src)?;
            slot.push(optional_instant("sessions", &id, text.as_deref())?);
        }
        for (slot, name) in c.number.iter_mut().zip([
            "request_count",
            "turn_count",
            "artifact_count",
            "lock_generation",
            "usage_input_tokens",
            "usage_output_tokens",
        ]) {
            slot.push(row.try_get(name).map_err(src)?);
        }
        for (slot, name) in c.optional_number.iter_mut().zip([
            "forked_at_turn",
            "usage_cache_creation_input_tokens",
            "usage_cache_read_input_tokens",
        ]) {
            slot.push(row.try_get(name).map_err(src)?);
        }
        c.cost.push(row.try_get("usage_cost_usd").map_err(src)?);
    }
    let [session_id, workflow, profile, provider, status] = c.text;
    let [
        provider_session_id,
        working_directory,
        summary_latest,
        locked_by,
        cancel_reason,
        parent_session_id,
    ] = c.optional_text;
    let [created_at, updated_at, last_activity_at] = c.at;
    let [lock_expires_at, cancel_requested_at] = c.optional_at;
    let [
        request_count,
        turn_count,
        artifact_count,
        lock_generation,
        usage_input,
        usage_output,
    ] = c.number;
    let [forked_at_turn, usage_cache_creation, usage_cache_read] = c.optional_number;
    sqlx::query_scalar(
        "INSERT INTO sessions (session_id, workflow, profile, provider, status, \
           provider_session_id, working_directory, summary_latest, locked_by, cancel_reason, \
           created_at, updated_at, last_activity_at, lock_expires_at, cancel_requested_at, \
           request_count, turn_count, artifact_count, lock_generation, parent_session_id, \
           forked_at_turn, usage_input_tokens, \
           usage_output_tokens, usage_cache_creation_input_tokens, usage_cache_read_input_tokens, \
           usage_cost_usd) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
           $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
           $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], \
           $15::timestamptz[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], \
           $20::text[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], \
           $25::bigint[], $26::double precision[]) \
         ON CONFLICT (session_id) DO NOTHING RETURNING session_id",
    )
    .bind(session_id)
    .bind(workflow)
    .bind(profile)
    .bind(provider)
    .bind(status)
    .bind(provider_session_id)
    .bind(working_directory)
    .bind(summary_latest)
    .bind(locked_by)
    .bind(cancel_reason)
    .bind(created_at)
    .bind(updated_at)
    .bind(last_activity_at)
    .bind(lock_expires_at)
    .bind(cancel_requested_at)
    .bind(request_count)
    .bind(turn_count)
    .bind(artifact_count)
    .bind(lock_generation)
    .bind(parent_session_id)
    .bind(forked_at_turn)
    .bind(usage_input)
    .bind(usage_output)
    .bind(usage_cache_creation)
    .bind(usage_cache_read)
    .bind(c.cost)
    .fetch_all(&mut *tx)
    .await
    .map_err(dst)
    .map(|mut ids: Vec<String>| {
        ids.sort();
        ids
    })
}

/// One chunk of events, column by column.
#[derive(Default)]
struct EventChunk {
    event_id: Vec<i64>,
    session_id: Vec<String>,
    event_type: Vec<String>,
    turn_index: Vec<i64>,
    payload: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
}

impl EventChunk {
    async fn write(&mut self, tx: &mut PgConnection) -> Result<u64> {
        let chunk = std::mem::take(self);
        let written = sqlx::query(
            "INSERT INTO session_events (event_id, session_id, event_type, turn_index, payload, \
               created_at) \
             SELECT e.id, e.sid, e.kind, e.turn, e.payload::json, e.at FROM UNNEST($1::bigint[], \
               $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) \
               AS e(id, sid, kind, turn, payload, at)",
        )
        .bind(chunk.event_id)
        .bind(chunk.session_id)
        .bind(chunk.event_type)
        .bind(chunk.turn_index)
        .bind(chunk.payload)
        .bind(chunk.created_at)
        .execute(&mut *tx)
        .await
        .map_err(dst)?;
        Ok(written.rows_affected())
    }
}

async fn copy_events(source: &SqlitePool, tx: &mut PgConnection, ids: &[String]) -> Result<u64> {
    let sql = format!(
        "SELECT event_id, session_id, event_type, turn_index, payload, created_at \
         FROM session_events WHERE session_id IN ({}) ORDER BY event_id",
        placeholders(ids.len())
    );
    let mut query = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    let mut rows = query.fetch(source);
    let mut chunk = EventChunk::default();
    let mut written = 0;
    while let Some(row) = rows.try_next().await.map_err(src)? {
        let event_id: i64 = row.try_get("event_id").map_err(src)?;
        let key = event_id.to_string();
        let payload: String = row.try_get("payload").map_err(src)?;
        if serde_json::from_str::<serde_json::Value>(&payload).is_err() {
            return Err(MigrateError::Corrupt {
                table: "session_events",
                key,
                problem: "the payload is not JSON".to_owned(),
            });
        }
        let created_at: String = row.try_get("created_at").map_err(src)?;
        chunk
            .created_at
            .push(instant("session_events", &key, &created_at)?);
        chunk.event_id.push(event_id);
        chunk
            .session_id
            .push(row.try_get("session_id").map_err(src)?);
        chunk
            .event_type
            .push(row.try_get("event_type").map_err(src)?);
        chunk
            .turn_index
            .push(row.try_get("turn_index").map_err(src)?);
        chunk.payload.push(payload);
        if chunk.event_id.len() == EVENT_CHUNK {
            written += chunk.write(tx).await?;
        }
    }
    if !chunk.event_id.is_empty() {
        written += chunk.write(tx).await?;
    }
    Ok(written)
}

/// A per-session table whose rows are a session id, a number, a text kept byte for byte and a
/// time: `session_outputs` (turn, output) and `session_results` (execution, envelope).
struct TextRows {
    table: &'static str,
    number: &'static str,
    text: &'static str,
    time: &'static str,
}

const OUTPUTS: TextRows = TextRows {
    table: "session_outputs",
    number: "turn_index",
    text: "output_text",
    time: "created_at",
};

/// The results kept for `agent_wait_session`.
const RESULTS: TextRows = TextRows {
    table: "session_results",
    number: "execution",
    text: "envelope",
    time: "kept_at",
};

/// Copies the rows of `rows.table` of the sessions `ids`.
async fn copy_text_rows(
    source: &SqlitePool,
    tx: &mut PgConnection,
    ids: &[String],
    rows: &TextRows,
) -> Result<u64> {
    let TextRows {
        table,
        number,
        text,
        time,
    } = rows;
    let sql = format!(
        "SELECT session_id, {number}, {text}, {time} FROM {table} WHERE session_id IN ({})",
        placeholders(ids.len())
    );
    let insert = format!(
        "INSERT INTO {table} (session_id, {number}, {text}, {time}) VALUES ($1, $2, $3, $4)"
    );
    let mut query = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    let mut found = query.fetch(source);
    let mut written = 0;
    while let Some(row) = found.try_next().await.map_err(src)? {
        let session_id: String = row.try_get("session_id").map_err(src)?;
        let at: String = row.try_get(*time).map_err(src)?;
        let at = instant(table, &session_id, &at)?;
        sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
            .bind(&session_id)
            .bind(row.try_get::<i64, _>(*number).map_err(src)?)
            .bind(row.try_get::<String, _>(*text).map_err(src)?)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(dst)?;
        written += 1;
    }
    Ok(written)
}

/// Copies the artifact rows with their bytes, one at a time (each is read whole, up to the
/// size its row records); returns how many and their total size.
async fn copy_artifacts(
    source: &SqlitePool,
    tx: &mut PgConnection,
    artifact_root: &Path,
    max_artifact_bytes: u64,
    ids: &[String],
) -> Result<(u64, u64)> {
    let sql = format!(
        "SELECT artifact_id, session_id, workflow, profile, artifact_type, logical_name, \
         mime_type, path, size_bytes, sha256, created_at, turn_index, producer_tool \
         FROM artifacts WHERE session_id IN ({})",
        placeholders(ids.len())
    );
    let mut query = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(source).await.map_err(src)?;
    let (mut count, mut total) = (0, 0);
    for row in rows {
        let artifact_id: String = row.try_get("artifact_id").map_err(src)?;
        let session_id: String = row.try_get("session_id").map_err(src)?;
        let fail = |problem: String| MigrateError::Artifact {
            session_id: session_id.clone(),
            artifact_id: artifact_id.clone(),
            problem,
        };
        let path: String = row.try_get("path").map_err(src)?;
        let size: i64 = row.try_get("size_bytes").map_err(src)?;
        let sha256: String = row.try_get("sha256").map_err(src)?;
        // The row's size is only a claim: nothing above the artifact limit is read.
        if u64::try_from(size).map_or(true, |n| n > max_artifact_bytes) {
            return Err(fail(format!(
                "its row says {size} bytes, outside the artifact limit of {max_artifact_bytes}"
            )));
        }
        let body = read_artifact_file(artifact_root, Path::new(&path), size)
            .await
            .map_err(&fail)?;
        if body.len() as i64 != size {
            return Err(fail(format!(
                "{path} holds {} bytes, its row says {size}",
                body.len()
            )));
        }
        if !sha256.is_empty() && artifacts::sha256_hex(&body) != sha256 {
            return Err(fail(format!(
                "{path} does not match the SHA-256 of its row"
            )));
        }
        let created_at: String = row.try_get("created_at").map_err(src)?;
        let created_at = instant("artifacts", &artifact_id, &created_at)?;
        sqlx::query(
            "INSERT INTO artifacts (artifact_id, session_id, workflow, profile, artifact_type, \
               logical_name, mime_type, size_bytes, sha256, created_at, turn_index, \
               producer_tool, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&artifact_id)
        .bind(&session_id)
        .bind(row.try_get::<String, _>("workflow").map_err(src)?)
        .bind(row.try_get::<String, _>("profile").map_err(src)?)
        .bind(row.try_get::<String, _>("artifact_type").map_err(src)?)
        .bind(row.try_get::<String, _>("logical_name").map_err(src)?)
        .bind(row.try_get::<String, _>("mime_type").map_err(src)?)
        .bind(size)
        .bind(&sha256)
        .bind(created_at)
        .bind(row.try_get::<i64, _>("turn_index").map_err(src)?)
        .bind(row.try_get::<String, _>("producer_tool").map_err(src)?)
        .bind(body)
        .execute(&mut *tx)
        .await
        .map_err(dst)?;
        count += 1;
        total += size as u64;
    }
    Ok((count, total))
}

/// Reads an artifact file named by a row, only from inside the artifact directory: the path
/// is resolved (symbolic links followed) and must lie under the directory's resolved path.
async fn read_artifact_file(
    root: &Path,
    path: &Path,
    size: i64,
) -> std::result::Result<Vec<u8>, String> {
    let resolved: PathBuf = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !resolved.starts_with(root) {
        return Err(format!(
            "{} is outside the artifact directory {}",
            path.display(),
            root.display()
        ));
    }
    // A file longer than its row says is an error, not an unbounded read.
    artifacts::read_file(&resolved, u64::try_from(size).unwrap_or(0))
        .await
        .map_err(|e| format!("{}: {e}", resolved.display()))
}
