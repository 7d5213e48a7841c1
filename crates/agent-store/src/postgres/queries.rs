//! Every SQL statement of [`PostgresStore`](super::PostgresStore), as `&'static str`s.
//!
//! Every time is the database server's: `statement_timestamp()` (one value per statement, so
//! `updated_at` and `last_activity_at` written together are equal), and a TTL is bound as
//! microseconds. Lease conditions are those of the SQLite store: a lock is free when no one
//! holds it or its expiry is not later than now; a null expiry counts as held.

use crate::rows::session_columns;
use crate::usage::add_usage;

/// `now + $n microseconds`, `$n` a bigint TTL.
macro_rules! expires_in {
    ($n:literal) => {
        concat!(
            "statement_timestamp() + ($",
            $n,
            "::double precision * interval '1 microsecond')"
        )
    };
}

/// A lease that is no longer live: no holder, or an expiry not later than now.
macro_rules! lease_not_live {
    () => {
        "(locked_by IS NULL OR (lock_expires_at IS NOT NULL AND lock_expires_at <= statement_timestamp()))"
    };
}

pub(super) const SCHEMA_VERSION: &str =
    "SELECT COALESCE(MAX(version), 0)::bigint FROM schema_migrations";

pub(super) const SELECT_SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE session_id = $1"
);

/// The events `$a`, `$b`, `$c` (types, turns, payload texts) of the session the CTE `src`
/// returns, in the order given: an `INSERT … SELECT` for a data-modifying CTE, so that a row and
/// its events are written by one statement (one round trip, atomic without a transaction).
macro_rules! insert_events_of {
    ($src:literal, $a:literal, $b:literal, $c:literal) => {
        concat!(
            "INSERT INTO session_events (session_id, event_type, turn_index, payload, created_at) \
             SELECT ",
            $src,
            ".session_id, t.event_type, t.turn_index, t.payload::json, \
               statement_timestamp() \
             FROM ",
            $src,
            ", UNNEST($",
            $a,
            "::text[], $",
            $b,
            "::bigint[], $",
            $c,
            "::text[]) \
               WITH ORDINALITY AS t(event_type, turn_index, payload, n) \
             ORDER BY t.n"
        )
    };
}

/// The session and its first events in one statement.
pub(super) const INSERT_SESSION: &str = concat!(
    "WITH s AS (INSERT INTO sessions (session_id, workflow, profile, provider, \
     provider_session_id, status, working_directory, created_at, updated_at, last_activity_at, \
     request_count, turn_count, artifact_count, summary_latest, locked_by, lock_expires_at, \
     lock_generation) \
     VALUES ($1, $2, $3, 'claude', NULL, 'running', $4, statement_timestamp(), \
     statement_timestamp(), statement_timestamp(), 1, 0, 0, NULL, $5, ",
    expires_in!("6"),
    ", 1) RETURNING ",
    session_columns!(),
    "), e AS (",
    insert_events_of!("s", "7", "8", "9"),
    ") SELECT * FROM s"
);

/// Takes the lock when free or when its lease has expired. Every acquisition is a new fencing
/// generation and starts with no cancel request. Under concurrency PostgreSQL re-checks the
/// condition on the newest row version once a concurrent writer commits: one taker wins.
pub(super) const ACQUIRE_LOCK: &str = concat!(
    "UPDATE sessions SET locked_by = $1, lock_expires_at = ",
    expires_in!("2"),
    ", lock_generation = lock_generation + 1, cancel_requested_at = NULL, cancel_reason = NULL \
     WHERE session_id = $3 AND ",
    lease_not_live!(),
    " RETURNING ",
    session_columns!()
);

pub(super) const LOCK_HOLDER: &str = "SELECT locked_by FROM sessions WHERE session_id = $1";

pub(super) const RELEASE_LOCK: &str = "UPDATE sessions SET locked_by = NULL, lock_expires_at = NULL, \
     cancel_requested_at = NULL, cancel_reason = NULL WHERE session_id = $1 AND locked_by = $2";

/// Fenced by owner and generation.
pub(super) const RENEW_LOCK: &str = concat!(
    "UPDATE sessions SET lock_expires_at = ",
    expires_in!("3"),
    " WHERE session_id = $1 AND locked_by = $2 AND lock_generation = $4"
);

/// Recorded only for a `running` session under a lock (the first reason stays), and
/// announced on the channel `$3` with the session id: `NOTIFY` is delivered when the statement
/// commits, so a listener never hears of a request it cannot read yet.
pub(super) const REQUEST_CANCEL: &str = "WITH asked AS ( \
       UPDATE sessions SET \
         cancel_requested_at = COALESCE(cancel_requested_at, statement_timestamp()), \
         cancel_reason = COALESCE(cancel_reason, $1) \
       WHERE session_id = $2 AND status = 'running' AND locked_by IS NOT NULL \
       RETURNING session_id) \
     SELECT asked.session_id FROM asked CROSS JOIN LATERAL pg_notify($3, asked.session_id) AS n";

/// One primary-key read, polled by the holder while it runs.
pub(super) const CANCEL_REQUESTED: &str = "SELECT cancel_reason FROM sessions \
     WHERE session_id = $1 AND locked_by = $2 AND lock_generation = $3 \
       AND cancel_requested_at IS NOT NULL";

/// The start of an execution: the session `$1` `running`, its request counted, its events
/// `$2…$4` appended, in one statement that answers whether the session exists.
pub(super) const BEGIN_EXECUTION: &str = concat!(
    "WITH u AS (UPDATE sessions SET status = 'running', \
       request_count = request_count + 1, updated_at = statement_timestamp(), \
       last_activity_at = statement_timestamp() WHERE session_id = $1 RETURNING session_id), \
     e AS (",
    insert_events_of!("u", "2", "3", "4"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
);

/// `None` fields keep their value. Fenced: applied only while owner `$5` holds the lock at
/// generation `$7`; the lock is released (and any cancel request dropped) with it, its events
/// `$8…$10` appended and its output `$11` (when given, with a turn `$2`) kept, in one statement
/// that answers whether it applied; its result `$12` (when given) is kept as the session's
/// result for execution `request_count`; the execution's usage `$13…$17` is added to the
/// session's (`crate::usage`). When an output was to be kept and another execution kept that
/// turn's first, the statement raises [`OUTPUT_KEPT_SQLSTATE`] (migration 0006) and nothing of
/// it stays: it needs no transaction around it.
pub(super) const FINISH_EXECUTION: &str = concat!(
    "WITH u AS (UPDATE sessions SET status = $1, \
       turn_count = COALESCE($2, turn_count), \
       summary_latest = COALESCE($3, summary_latest), \
       provider_session_id = COALESCE($4, provider_session_id), \
       updated_at = statement_timestamp(), last_activity_at = statement_timestamp(), \
       locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, cancel_reason = NULL, \
       ",
    add_usage!(
        "$13",
        "$14",
        "$15::bigint",
        "$16::bigint",
        "$17::double precision"
    ),
    " WHERE session_id = $6 AND locked_by = $5 AND lock_generation = $7 \
     RETURNING session_id, request_count), \
     e AS (",
    insert_events_of!("u", "8", "9", "10"),
    "), o AS (INSERT INTO session_outputs (session_id, turn_index, output_text, created_at) \
       SELECT u.session_id, $2, $11, statement_timestamp() FROM u \
       WHERE $11::text IS NOT NULL AND $2::bigint IS NOT NULL \
       ON CONFLICT (session_id, turn_index) DO NOTHING RETURNING 1), \
     r AS (INSERT INTO session_results (session_id, execution, envelope, kept_at) \
       SELECT u.session_id, u.request_count, $12, statement_timestamp() FROM u \
       WHERE $12::text IS NOT NULL \
       ON CONFLICT (session_id) DO UPDATE SET execution = excluded.execution, \
         envelope = excluded.envelope, kept_at = excluded.kept_at \
       WHERE excluded.execution >= session_results.execution) \
     SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM u) THEN false \
       WHEN $11::text IS NOT NULL AND $2::bigint IS NOT NULL AND NOT EXISTS (SELECT 1 FROM o) \
       THEN claude_agent_mcp_output_kept() ELSE true END"
);

/// The SQLSTATE that [`FINISH_EXECUTION`] raises when the turn's output is already kept.
pub(super) const OUTPUT_KEPT_SQLSTATE: &str = "CAK01";

/// A fork (`agent_core::ForkSession`): the parent's workflow, profile, provider and working
/// directory, `completed` at turn `$2` with no execution, no provider session and no lock;
/// nothing when the parent `$4` does not exist.
pub(super) const INSERT_FORK: &str = concat!(
    "INSERT INTO sessions (session_id, workflow, profile, provider, provider_session_id, status, \
     working_directory, created_at, updated_at, last_activity_at, request_count, turn_count, \
     artifact_count, summary_latest, locked_by, lock_expires_at, lock_generation, \
     parent_session_id, forked_at_turn) \
     SELECT $1, workflow, profile, provider, NULL, 'completed', working_directory, \
     statement_timestamp(), statement_timestamp(), statement_timestamp(), 0, $2, 0, $3, NULL, \
     NULL, 0, session_id, $2 FROM sessions WHERE session_id = $4 \
     RETURNING ",
    session_columns!()
);

/// The parent's (`$2`) events through event `$3`, in order, as the fork's (`$1`), times kept.
pub(super) const COPY_FORK_EVENTS: &str = "INSERT INTO session_events (session_id, event_type, \
     turn_index, payload, created_at) SELECT $1, event_type, turn_index, payload, created_at \
     FROM session_events WHERE session_id = $2 AND event_id <= $3 ORDER BY event_id";

/// The parent's (`$2`) kept outputs of turns up to `$3`, as the fork's (`$1`).
pub(super) const COPY_FORK_OUTPUTS: &str = "INSERT INTO session_outputs (session_id, turn_index, \
     output_text, created_at) SELECT $1, turn_index, output_text, created_at FROM session_outputs \
     WHERE session_id = $2 AND turn_index <= $3";

/// Several events in one statement; their ids are drawn in the order given.
pub(super) const INSERT_EVENTS: &str = "INSERT INTO session_events \
     (session_id, event_type, turn_index, payload, created_at) \
     SELECT $1, t.event_type, t.turn_index, t.payload::json, statement_timestamp() \
     FROM UNNEST($2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY \
       AS t(event_type, turn_index, payload, n) \
     ORDER BY t.n";

/// The result of a session's latest execution: replaces one of an earlier or the same execution,
/// never one of a later execution; nothing for a missing session.
pub(super) const KEEP_RESULT: &str = "INSERT INTO session_results (session_id, execution, envelope, kept_at) \
     SELECT $1, $2, $3, statement_timestamp() WHERE EXISTS (SELECT 1 FROM sessions WHERE session_id = $1) \
     ON CONFLICT (session_id) DO UPDATE SET execution = excluded.execution, \
       envelope = excluded.envelope, kept_at = excluded.kept_at \
     WHERE excluded.execution >= session_results.execution";

pub(super) const SELECT_RESULT: &str =
    "SELECT execution, envelope FROM session_results WHERE session_id = $1";

pub(super) const SESSION_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id = $1)";

pub(super) const SELECT_OUTPUTS: &str = "SELECT turn_index, output_text FROM session_outputs \
     WHERE session_id = $1 ORDER BY turn_index";

pub(super) const SELECT_EVENTS: &str = "SELECT event_id, session_id, event_type, turn_index, \
     payload::text AS payload, created_at FROM session_events WHERE session_id = $1 \
     ORDER BY event_id";

/// Served by `idx_sessions_updated` (no sort step).
pub(super) const LIST_SESSIONS: &str = "SELECT session_id, workflow, profile, status, \
     updated_at, summary_latest FROM sessions ORDER BY updated_at DESC LIMIT $1";

pub(super) const LIST_SESSIONS_PAGE: &str = "SELECT session_id, workflow, profile, status, \
     updated_at, summary_latest FROM sessions ORDER BY updated_at DESC LIMIT $1 OFFSET $2";

/// Served by `idx_sessions_status_updated` (no sort step).
pub(super) const LIST_SESSIONS_BY_STATUS: &str = "SELECT session_id, workflow, profile, status, \
     updated_at, summary_latest FROM sessions WHERE status = $2 ORDER BY updated_at DESC LIMIT $1";

macro_rules! artifact_columns {
    () => {
        "artifact_id, session_id, artifact_type, logical_name, mime_type, size_bytes, sha256, \
         created_at, turn_index, producer_tool"
    };
}

pub(super) const SELECT_ARTIFACTS: &str = concat!(
    "SELECT ",
    artifact_columns!(),
    " FROM artifacts WHERE session_id = $1 ORDER BY created_at, artifact_id"
);

/// The body only when it is at most `$3` bytes (else null, with its stored size).
pub(super) const SELECT_ARTIFACT: &str = concat!(
    "SELECT ",
    artifact_columns!(),
    ", octet_length(body)::bigint AS stored_bytes, \
     CASE WHEN octet_length(body) <= $3 THEN body END AS body \
     FROM artifacts WHERE session_id = $1 AND artifact_id = $2"
);

/// The counter bumped and the row inserted in one statement; no row (a missing session)
/// inserts nothing and answers nothing.
pub(super) const INSERT_ARTIFACT: &str = "WITH u AS (UPDATE sessions SET \
       artifact_count = artifact_count + 1, updated_at = statement_timestamp(), \
       last_activity_at = statement_timestamp() WHERE session_id = $2 RETURNING session_id) \
     INSERT INTO artifacts (artifact_id, session_id, workflow, profile, artifact_type, \
       logical_name, mime_type, size_bytes, sha256, created_at, turn_index, producer_tool, body) \
     SELECT $1, u.session_id, $3, $4, $5, $6, $7, $8, $9, statement_timestamp(), $10, $11, $12 \
     FROM u RETURNING artifact_id";

/// Only `running` rows without a live lease: a lease another process holds and renews is left
/// alone.
pub(super) const RECOVER_INTERRUPTED: &str = concat!(
    "UPDATE sessions SET status = 'interrupted', updated_at = statement_timestamp(), \
     last_activity_at = statement_timestamp(), locked_by = NULL, lock_expires_at = NULL, \
     cancel_requested_at = NULL, cancel_reason = NULL WHERE status = 'running' AND ",
    lease_not_live!()
);

/// Only a `running` row that owner `$2` holds at generation `$3`, or that no one holds.
pub(super) const INTERRUPT_EXECUTION: &str = "UPDATE sessions SET status = 'interrupted', \
     updated_at = statement_timestamp(), last_activity_at = statement_timestamp(), \
     locked_by = NULL, lock_expires_at = NULL, cancel_requested_at = NULL, cancel_reason = NULL \
     WHERE session_id = $1 AND status = 'running' \
       AND (locked_by IS NULL OR (locked_by = $2 AND lock_generation = $3)) \
     RETURNING turn_count";

/// At most `$1` `running` rows without a live lease become `interrupted`; returns each with the
/// lock columns as the sweep found them (for its `lease_expired` event). `SKIP LOCKED`: rows
/// another node's sweep (or a writer) holds right now are left to the next sweep, and a row
/// whose lease was renewed meanwhile is re-checked after its lock and no longer qualifies.
pub(super) const SWEEP_EXPIRED: &str = concat!(
    "WITH expired AS ( \
       SELECT session_id, turn_count, locked_by, lock_expires_at FROM sessions \
       WHERE status = 'running' AND ",
    lease_not_live!(),
    " LIMIT $1 FOR UPDATE SKIP LOCKED) \
     UPDATE sessions AS s SET status = 'interrupted', updated_at = statement_timestamp(), \
       last_activity_at = statement_timestamp(), locked_by = NULL, lock_expires_at = NULL, \
       cancel_requested_at = NULL, cancel_reason = NULL \
     FROM expired AS e WHERE s.session_id = e.session_id \
     RETURNING e.session_id, e.turn_count, e.locked_by, e.lock_expires_at"
);
