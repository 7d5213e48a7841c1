//! [`TaskStore`](agent_core::TaskStore) on PostgreSQL (`migrations/postgres/0002_mcp_tasks_and_requests.sql`): the
//! SQLite store's task state (`crate::tasks`) in native types, so that every node of a fleet
//! answers `tasks/get`, `tasks/cancel` and `notifications/cancelled`.
//!
//! Every change is one statement, and every time is the database server's clock
//! (`statement_timestamp()`), as for sessions: a settle computes the new expiry from the row's
//! own TTL in the same `UPDATE`, and a purge deletes a bounded batch picked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent nodes neither see half a change nor wait on each
//! other's purges.

use std::time::Duration;

use agent_core::mcp_tasks::{PURGE_BATCH, bounded_request_cancel_reason, bounded_status_message};
use agent_core::{NewTask, RequestCancel, RequestKey, TaskRecord, TaskState};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::rows::storage;
use super::{MAX_TTL, PostgresStore};
use crate::error::Result;
use crate::tasks::{
    TaskRow, check_new_task_id, encode_result, millis, names_no_task, recorded_cancel,
    request_cancel,
};

/// The columns of a task row, as a literal for `concat!` (the result as its JSON text).
macro_rules! task_columns {
    () => {
        "task_id, tool_name, owner_node, status, status_message, session_id, \
         result::text AS result, cancel_requested_at, ttl_ms, poll_interval_ms, created_at, \
         updated_at, expires_at"
    };
}

/// `now + $n milliseconds`, `$n` a bigint (or a column).
macro_rules! after_ms {
    ($ms:literal) => {
        concat!(
            "statement_timestamp() + (",
            $ms,
            "::double precision * interval '1 millisecond')"
        )
    };
}

const INSERT_TASK: &str = concat!(
    "INSERT INTO mcp_tasks (task_id, tool_name, owner_node, status, status_message, session_id, \
       result, cancel_requested_at, ttl_ms, poll_interval_ms, created_at, updated_at, expires_at) \
     VALUES ($1, $2, $3, 'working', $4, NULL, NULL, NULL, $5, $6, statement_timestamp(), \
       statement_timestamp(), ",
    after_ms!("$5"),
    ") RETURNING ",
    task_columns!()
);

/// Only a task whose expiry is still ahead exists.
const SELECT_TASK: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM mcp_tasks WHERE task_id = $1 AND expires_at > statement_timestamp()"
);

/// The session is named once; the status message replaced when given.
const UPDATE_TASK: &str = "UPDATE mcp_tasks SET status_message = COALESCE($2, status_message), \
       session_id = COALESCE(session_id, $3), updated_at = statement_timestamp() \
     WHERE task_id = $1 AND status = 'working' AND expires_at > statement_timestamp() \
     RETURNING cancel_requested_at IS NOT NULL";

/// Settling restarts the lifetime: the row's own TTL after now.
const SETTLE_TASK: &str = concat!(
    "UPDATE mcp_tasks SET status = $2, result = $3::json, \
       status_message = COALESCE($4, status_message), updated_at = statement_timestamp(), \
       expires_at = ",
    after_ms!("ttl_ms"),
    " WHERE task_id = $1 AND status = 'working' AND expires_at > statement_timestamp()"
);

/// The first request's time stays.
const REQUEST_TASK_CANCEL: &str = "UPDATE mcp_tasks SET \
       cancel_requested_at = COALESCE(cancel_requested_at, statement_timestamp()), \
       updated_at = statement_timestamp() \
     WHERE task_id = $1 AND status = 'working' AND expires_at > statement_timestamp()";

/// A request id reused by its client starts over.
const REGISTER_REQUEST: &str = concat!(
    "INSERT INTO mcp_requests (client_key, request_id, owner_node, session_id, \
       cancel_requested_at, cancel_reason, created_at, expires_at) \
     VALUES ($1, $2, $3, NULL, NULL, NULL, statement_timestamp(), ",
    after_ms!("$4"),
    ") ON CONFLICT (client_key, request_id) DO UPDATE SET owner_node = EXCLUDED.owner_node, \
       session_id = NULL, cancel_requested_at = NULL, cancel_reason = NULL, \
       created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
);

const NAME_REQUEST_SESSION: &str = "UPDATE mcp_requests SET session_id = COALESCE(session_id, $3) \
     WHERE client_key = $1 AND request_id = $2 \
     RETURNING cancel_requested_at IS NOT NULL, cancel_reason";

/// The first reason stays.
const CANCEL_REQUEST: &str = "UPDATE mcp_requests SET \
       cancel_requested_at = COALESCE(cancel_requested_at, statement_timestamp()), \
       cancel_reason = COALESCE(cancel_reason, $3) \
     WHERE client_key = $1 AND request_id = $2 AND expires_at > statement_timestamp() \
     RETURNING session_id";

const FORGET_REQUEST: &str = "DELETE FROM mcp_requests WHERE client_key = $1 AND request_id = $2";

/// A bounded batch (served by the expiry indexes); rows another node is purging are skipped.
const PURGE_TASKS: &str = "DELETE FROM mcp_tasks WHERE task_id IN ( \
       SELECT task_id FROM mcp_tasks WHERE expires_at <= statement_timestamp() \
       ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
     AND expires_at <= statement_timestamp()";
const PURGE_REQUESTS: &str = "DELETE FROM mcp_requests WHERE (client_key, request_id) IN ( \
       SELECT client_key, request_id FROM mcp_requests WHERE expires_at <= statement_timestamp() \
       ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
     AND expires_at <= statement_timestamp()";

/// A `mcp_tasks` row in native types.
#[derive(Debug, sqlx::FromRow)]
struct PgTaskRow {
    task_id: String,
    tool_name: String,
    owner_node: String,
    status: String,
    status_message: Option<String>,
    session_id: Option<String>,
    result: Option<String>,
    cancel_requested_at: Option<DateTime<Utc>>,
    ttl_ms: i64,
    poll_interval_ms: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl PgTaskRow {
    /// Decoded by the SQLite store's code, through the stored text form.
    fn decode(self) -> Result<TaskRecord> {
        TaskRow {
            task_id: self.task_id,
            tool_name: self.tool_name,
            owner_node: self.owner_node,
            status: self.status,
            status_message: self.status_message,
            session_id: self.session_id,
            result: self.result,
            cancel_requested_at: self.cancel_requested_at.map(storage),
            ttl_ms: self.ttl_ms,
            poll_interval_ms: self.poll_interval_ms,
            created_at: storage(self.created_at),
            updated_at: storage(self.updated_at),
            expires_at: storage(self.expires_at),
        }
        .decode()
    }
}

/// A TTL in milliseconds, cut to the longest lease so that `now + ttl` stays a valid time.
fn ttl_ms(ttl: Duration) -> i64 {
    millis(ttl.min(MAX_TTL))
}

impl PostgresStore {
    async fn create_task_impl(&self, task: &NewTask) -> Result<TaskRecord> {
        check_new_task_id(&task.task_id)?;
        self.purge_if_due().await?;
        let row: PgTaskRow = sqlx::query_as(INSERT_TASK)
            .bind(&task.task_id)
            .bind(&task.tool_name)
            .bind(&task.owner_node)
            .bind(task.status_message.as_deref().map(bounded_status_message))
            .bind(ttl_ms(task.ttl))
            .bind(task.poll_interval.map(millis))
            .fetch_one(&self.pool)
            .await?;
        row.decode()
    }

    async fn get_task_impl(&self, task_id: &str) -> Result<Option<TaskRecord>> {
        if names_no_task(task_id) {
            return Ok(None);
        }
        let row: Option<PgTaskRow> = sqlx::query_as(SELECT_TASK)
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(PgTaskRow::decode).transpose()
    }

    async fn update_task_impl(
        &self,
        task_id: &str,
        status_message: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Option<bool>> {
        if names_no_task(task_id) {
            return Ok(None);
        }
        Ok(sqlx::query_scalar(UPDATE_TASK)
            .bind(task_id)
            .bind(status_message.map(bounded_status_message))
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn settle_task_impl(
        &self,
        task_id: &str,
        status: TaskState,
        result: Option<&Value>,
        status_message: Option<&str>,
    ) -> Result<bool> {
        let result = encode_result(result)?;
        if names_no_task(task_id) {
            return Ok(false);
        }
        let updated = sqlx::query(SETTLE_TASK)
            .bind(task_id)
            .bind(status.as_str())
            .bind(result)
            .bind(status_message.map(bounded_status_message))
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn request_task_cancel_impl(&self, task_id: &str) -> Result<Option<TaskRecord>> {
        if names_no_task(task_id) {
            return Ok(None);
        }
        sqlx::query(REQUEST_TASK_CANCEL)
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        self.get_task_impl(task_id).await
    }

    async fn register_request_impl(
        &self,
        key: &RequestKey,
        owner_node: &str,
        ttl: Duration,
    ) -> Result<()> {
        self.purge_if_due().await?;
        sqlx::query(REGISTER_REQUEST)
            .bind(&key.client_key)
            .bind(&key.request_id)
            .bind(owner_node)
            .bind(ttl_ms(ttl))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn cancel_request_impl(&self, key: &RequestKey, reason: &str) -> Result<RequestCancel> {
        let row: Option<(Option<String>,)> = sqlx::query_as(CANCEL_REQUEST)
            .bind(&key.client_key)
            .bind(&key.request_id)
            .bind(bounded_request_cancel_reason(reason))
            .fetch_optional(&self.pool)
            .await?;
        Ok(request_cancel(row))
    }

    crate::alike::request_statements_alike!();

    async fn purge_if_due(&self) -> Result<()> {
        self.inner
            .purge
            .run_if_due(|| self.purge_expired_impl(PURGE_BATCH))
            .await
    }

    async fn purge_expired_impl(&self, limit: u32) -> Result<u64> {
        let tasks = sqlx::query(PURGE_TASKS)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let room = u64::from(limit).saturating_sub(tasks);
        if room == 0 {
            return Ok(tasks);
        }
        let requests = sqlx::query(PURGE_REQUESTS)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(tasks + requests)
    }
}

crate::tasks::task_store_by_impls!(PostgresStore);
