//! [`TaskStore`](agent_core::TaskStore) on the session database: MCP tasks and the tool calls in flight
//! (`migrations/0004_mcp_tasks_and_requests.sql`), so that every node on one state directory
//! answers `tasks/get`, `tasks/cancel` and `notifications/cancelled`.
//!
//! Each change is one conditional statement (a settle reads the task's TTL first, in the same
//! write transaction), so concurrent nodes never see half a change: in particular naming a
//! request's session and recording its cancellation are single `UPDATE … RETURNING`s, and
//! whichever comes second sees the other.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_core::mcp_tasks::{
    MAX_TASK_ID_BYTES, MAX_TASK_RESULT_BYTES, PURGE_BATCH, bounded_request_cancel_reason,
    bounded_status_message,
};
use agent_core::{NewTask, RequestCancel, RequestKey, TaskRecord, TaskState, Timestamp};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::SqliteStore;

/// The columns of a task row, as a literal for `concat!`.
macro_rules! task_columns {
    () => {
        "task_id, tool_name, owner_node, status, status_message, session_id, result, \
         cancel_requested_at, ttl_ms, poll_interval_ms, created_at, updated_at, expires_at"
    };
}

const INSERT_TASK: &str = concat!(
    "INSERT INTO mcp_tasks (task_id, tool_name, owner_node, status, status_message, session_id, \
       result, cancel_requested_at, ttl_ms, poll_interval_ms, created_at, updated_at, expires_at) \
     VALUES (?1, ?2, ?3, 'working', ?4, NULL, NULL, NULL, ?5, ?6, ?7, ?7, ?8) RETURNING ",
    task_columns!()
);

/// Only a task whose expiry is still ahead (?2) exists.
const SELECT_TASK: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM mcp_tasks WHERE task_id = ?1 AND expires_at > ?2"
);

/// The session is named once; the status message replaced when given.
const UPDATE_TASK: &str = "UPDATE mcp_tasks SET status_message = COALESCE(?2, status_message), \
       session_id = COALESCE(session_id, ?3), updated_at = ?4 \
     WHERE task_id = ?1 AND status = 'working' AND expires_at > ?4 \
     RETURNING cancel_requested_at IS NOT NULL";

const SELECT_TASK_TTL: &str = "SELECT ttl_ms FROM mcp_tasks \
     WHERE task_id = ?1 AND status = 'working' AND expires_at > ?2";

const SETTLE_TASK: &str = "UPDATE mcp_tasks SET status = ?2, result = ?3, \
       status_message = COALESCE(?4, status_message), updated_at = ?5, expires_at = ?6 \
     WHERE task_id = ?1 AND status = 'working' AND expires_at > ?5";

/// The first request's time stays.
const REQUEST_TASK_CANCEL: &str = "UPDATE mcp_tasks SET \
       cancel_requested_at = COALESCE(cancel_requested_at, ?2), updated_at = ?2 \
     WHERE task_id = ?1 AND status = 'working' AND expires_at > ?2";

const REGISTER_REQUEST: &str = "INSERT OR REPLACE INTO mcp_requests (client_key, request_id, \
       owner_node, session_id, cancel_requested_at, cancel_reason, created_at, expires_at) \
     VALUES (?1, ?2, ?3, NULL, NULL, NULL, ?4, ?5)";

const NAME_REQUEST_SESSION: &str = "UPDATE mcp_requests SET session_id = COALESCE(session_id, ?3) \
     WHERE client_key = ?1 AND request_id = ?2 \
     RETURNING cancel_requested_at IS NOT NULL, cancel_reason";

/// The first reason stays.
const CANCEL_REQUEST: &str = "UPDATE mcp_requests SET \
       cancel_requested_at = COALESCE(cancel_requested_at, ?3), \
       cancel_reason = COALESCE(cancel_reason, ?4) \
     WHERE client_key = ?1 AND request_id = ?2 AND expires_at > ?3 \
     RETURNING session_id";

const FORGET_REQUEST: &str = "DELETE FROM mcp_requests WHERE client_key = ?1 AND request_id = ?2";

/// Reads first (served by the expiry indexes): a purge that finds nothing takes no write lock.
const SELECT_EXPIRED_TASKS: &str =
    "SELECT task_id FROM mcp_tasks WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2";
const SELECT_EXPIRED_REQUESTS: &str = "SELECT client_key, request_id FROM mcp_requests \
     WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2";
const DELETE_TASK: &str = "DELETE FROM mcp_tasks WHERE task_id = ?1 AND expires_at <= ?2";
const DELETE_REQUEST: &str =
    "DELETE FROM mcp_requests WHERE client_key = ?1 AND request_id = ?2 AND expires_at <= ?3";

/// A `mcp_tasks` row in the stored text form (the PostgreSQL store formats its native row into
/// this one, so both stores decode, and reject corrupt values, with the same code).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskRow {
    pub(crate) task_id: String,
    pub(crate) tool_name: String,
    pub(crate) owner_node: String,
    pub(crate) status: String,
    pub(crate) status_message: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) cancel_requested_at: Option<String>,
    pub(crate) ttl_ms: i64,
    pub(crate) poll_interval_ms: Option<i64>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) expires_at: String,
}

/// How often creating a task or registering a request purges expired rows (a purge that
/// deletes a whole batch is due again at once, so a backlog drains at the rate rows come in).
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// When a store's next implicit purge is due: at most one per [`PURGE_INTERVAL`] per store, so
/// that a request in flight costs no purge statements on the way (two round trips on
/// PostgreSQL). Rows that expired in between are invisible anyway (every read checks expiry).
#[derive(Debug, Default)]
pub(crate) struct PurgeSchedule(Mutex<Option<Instant>>);

impl PurgeSchedule {
    /// Runs `purge` (a purge of at most [`PURGE_BATCH`] rows) when one is due.
    pub(crate) async fn run_if_due<F>(&self, purge: impl FnOnce() -> F) -> Result<()>
    where
        F: std::future::Future<Output = Result<u64>>,
    {
        if !self.take() {
            return Ok(());
        }
        let purged = purge().await;
        // Due again at once after a purge that filled its batch, or failed.
        if purged
            .as_ref()
            .map_or(true, |n| *n >= u64::from(PURGE_BATCH))
        {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        purged.map(drop)
    }

    /// Whether a purge is due now; if so, the next one is due a [`PURGE_INTERVAL`] later.
    fn take(&self) -> bool {
        let now = Instant::now();
        let mut next = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *next {
            Some(at) if now < at => false,
            _ => {
                *next = Some(now + PURGE_INTERVAL);
                true
            }
        }
    }
}

/// A task id longer than the port allows is refused on create.
pub(crate) fn check_new_task_id(task_id: &str) -> Result<()> {
    if task_id.len() > MAX_TASK_ID_BYTES {
        return Err(Error::TaskIdTooLong {
            len: task_id.len(),
            max: MAX_TASK_ID_BYTES,
        });
    }
    Ok(())
}

/// An id longer than a task id can be names no task: it is answered as unknown without a read.
pub(crate) fn names_no_task(task_id: &str) -> bool {
    task_id.len() > MAX_TASK_ID_BYTES
}

/// A task result as stored JSON text, refused when larger than the port allows.
pub(crate) fn encode_result(result: Option<&Value>) -> Result<Option<String>> {
    let Some(value) = result else {
        return Ok(None);
    };
    let text = serde_json::to_string(value).map_err(Error::EncodePayload)?;
    if text.len() > MAX_TASK_RESULT_BYTES {
        return Err(Error::TaskResultTooLarge {
            size: text.len(),
            max: MAX_TASK_RESULT_BYTES,
        });
    }
    Ok(Some(text))
}

/// What naming a request's session answers: the cancel reason (bounded again: a row written by
/// another program may hold anything) when a cancel was recorded first.
pub(crate) fn recorded_cancel(row: Option<(bool, Option<String>)>) -> Option<String> {
    row.and_then(|(requested, reason)| {
        requested.then(|| {
            bounded_request_cancel_reason(reason.as_deref().unwrap_or_default()).to_owned()
        })
    })
}

/// What recording a request's cancellation answers: `NotFound` when no live row took it, else
/// the session the request had named (if any).
pub(crate) fn request_cancel(row: Option<(Option<String>,)>) -> RequestCancel {
    match row {
        None => RequestCancel::NotFound,
        Some((session_id,)) => RequestCancel::Recorded { session_id },
    }
}

impl TaskRow {
    pub(crate) fn decode(self) -> Result<TaskRecord> {
        let corrupt = |problem: String| Error::CorruptRow {
            table: "mcp_tasks",
            key: self.task_id.clone(),
            problem,
        };
        let status = TaskState::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?}", self.status)))?;
        let time = |text: &str| {
            Timestamp::parse(text).ok_or_else(|| corrupt(format!("bad timestamp {text:?}")))
        };
        let result = match &self.result {
            None => None,
            Some(text) => Some(
                serde_json::from_str::<Value>(text)
                    .map_err(|e| corrupt(format!("bad result JSON: {e}")))?,
            ),
        };
        let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        Ok(TaskRecord {
            status,
            // A row written by another program may hold anything: bounded again.
            status_message: self
                .status_message
                .as_deref()
                .map(|m| bounded_status_message(m).to_owned()),
            session_id: self.session_id.clone(),
            result,
            cancel_requested: self.cancel_requested_at.is_some(),
            ttl: millis(self.ttl_ms),
            poll_interval: self.poll_interval_ms.map(millis),
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
            expires_at: time(&self.expires_at)?,
            task_id: self.task_id.clone(),
            tool_name: self.tool_name.clone(),
            owner_node: self.owner_node.clone(),
        })
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    async fn create_task_impl(&self, task: &NewTask) -> Result<TaskRecord> {
        check_new_task_id(&task.task_id)?;
        self.purge_if_due().await?;
        let now = Timestamp::now();
        let row: TaskRow = sqlx::query_as(INSERT_TASK)
            .bind(&task.task_id)
            .bind(&task.tool_name)
            .bind(&task.owner_node)
            .bind(task.status_message.as_deref().map(bounded_status_message))
            .bind(millis(task.ttl))
            .bind(task.poll_interval.map(millis))
            .bind(now.to_storage())
            .bind(now.plus(task.ttl).to_storage())
            .fetch_one(self.pool())
            .await?;
        row.decode()
    }

    async fn get_task_impl(&self, task_id: &str) -> Result<Option<TaskRecord>> {
        if names_no_task(task_id) {
            return Ok(None);
        }
        let row: Option<TaskRow> = sqlx::query_as(SELECT_TASK)
            .bind(task_id)
            .bind(Timestamp::now().to_storage())
            .fetch_optional(self.pool())
            .await?;
        row.map(TaskRow::decode).transpose()
    }

    async fn update_task_impl(
        &self,
        task_id: &str,
        status_message: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Option<bool>> {
        let cancel: Option<bool> = sqlx::query_scalar(UPDATE_TASK)
            .bind(task_id)
            .bind(status_message.map(bounded_status_message))
            .bind(session_id)
            .bind(Timestamp::now().to_storage())
            .fetch_optional(self.pool())
            .await?;
        Ok(cancel)
    }

    async fn settle_task_impl(
        &self,
        task_id: &str,
        status: TaskState,
        result: Option<&Value>,
        status_message: Option<&str>,
    ) -> Result<bool> {
        let result = encode_result(result)?;
        let now = Timestamp::now();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let ttl_ms: Option<i64> = sqlx::query_scalar(SELECT_TASK_TTL)
            .bind(task_id)
            .bind(now.to_storage())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(ttl_ms) = ttl_ms else {
            tx.rollback().await?;
            return Ok(false);
        };
        let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
        let updated = sqlx::query(SETTLE_TASK)
            .bind(task_id)
            .bind(status.as_str())
            .bind(result)
            .bind(status_message.map(bounded_status_message))
            .bind(now.to_storage())
            .bind(now.plus(ttl).to_storage())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn request_task_cancel_impl(&self, task_id: &str) -> Result<Option<TaskRecord>> {
        if names_no_task(task_id) {
            return Ok(None);
        }
        sqlx::query(REQUEST_TASK_CANCEL)
            .bind(task_id)
            .bind(Timestamp::now().to_storage())
            .execute(self.pool())
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
        let now = Timestamp::now();
        sqlx::query(REGISTER_REQUEST)
            .bind(&key.client_key)
            .bind(&key.request_id)
            .bind(owner_node)
            .bind(now.to_storage())
            .bind(now.plus(ttl).to_storage())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn cancel_request_impl(&self, key: &RequestKey, reason: &str) -> Result<RequestCancel> {
        let row: Option<(Option<String>,)> = sqlx::query_as(CANCEL_REQUEST)
            .bind(&key.client_key)
            .bind(&key.request_id)
            .bind(Timestamp::now().to_storage())
            .bind(bounded_request_cancel_reason(reason))
            .fetch_optional(self.pool())
            .await?;
        Ok(request_cancel(row))
    }

    crate::alike::request_statements_alike!();

    async fn purge_if_due(&self) -> Result<()> {
        self.purge_schedule()
            .run_if_due(|| self.purge_expired_impl(PURGE_BATCH))
            .await
    }

    async fn purge_expired_impl(&self, limit: u32) -> Result<u64> {
        let now = Timestamp::now().to_storage();
        let tasks: Vec<String> = sqlx::query_scalar(SELECT_EXPIRED_TASKS)
            .bind(&now)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        let room = i64::from(limit).saturating_sub(tasks.len() as i64);
        let requests: Vec<(String, String)> = if room > 0 {
            sqlx::query_as(SELECT_EXPIRED_REQUESTS)
                .bind(&now)
                .bind(room)
                .fetch_all(self.pool())
                .await?
        } else {
            Vec::new()
        };
        if tasks.is_empty() && requests.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let mut deleted = 0;
        for task_id in &tasks {
            deleted += sqlx::query(DELETE_TASK)
                .bind(task_id)
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        for (client_key, request_id) in &requests {
            deleted += sqlx::query(DELETE_REQUEST)
                .bind(client_key)
                .bind(request_id)
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Implements [`TaskStore`](agent_core::TaskStore) for a store by delegating every method to the store's own
/// `<method>_impl` (its error converted into [`StoreError`](agent_core::StoreError)): one definition for both stores.
macro_rules! task_store_by_impls {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl agent_core::TaskStore for $store {
            async fn create_task(
                &self,
                task: &agent_core::NewTask,
            ) -> Result<agent_core::TaskRecord, agent_core::StoreError> {
                Ok(self.create_task_impl(task).await?)
            }

            async fn get_task(
                &self,
                task_id: &str,
            ) -> Result<Option<agent_core::TaskRecord>, agent_core::StoreError> {
                Ok(self.get_task_impl(task_id).await?)
            }

            async fn update_task(
                &self,
                task_id: &str,
                status_message: Option<&str>,
                session_id: Option<&str>,
            ) -> Result<Option<bool>, agent_core::StoreError> {
                Ok(self
                    .update_task_impl(task_id, status_message, session_id)
                    .await?)
            }

            async fn settle_task(
                &self,
                task_id: &str,
                status: agent_core::TaskState,
                result: Option<&serde_json::Value>,
                status_message: Option<&str>,
            ) -> Result<bool, agent_core::StoreError> {
                Ok(self
                    .settle_task_impl(task_id, status, result, status_message)
                    .await?)
            }

            async fn request_task_cancel(
                &self,
                task_id: &str,
            ) -> Result<Option<agent_core::TaskRecord>, agent_core::StoreError> {
                Ok(self.request_task_cancel_impl(task_id).await?)
            }

            async fn register_request(
                &self,
                key: &agent_core::RequestKey,
                owner_node: &str,
                ttl: std::time::Duration,
            ) -> Result<(), agent_core::StoreError> {
                Ok(self.register_request_impl(key, owner_node, ttl).await?)
            }

            async fn name_request_session(
                &self,
                key: &agent_core::RequestKey,
                session_id: &str,
            ) -> Result<Option<String>, agent_core::StoreError> {
                Ok(self.name_request_session_impl(key, session_id).await?)
            }

            async fn cancel_request(
                &self,
                key: &agent_core::RequestKey,
                reason: &str,
            ) -> Result<agent_core::RequestCancel, agent_core::StoreError> {
                Ok(self.cancel_request_impl(key, reason).await?)
            }

            async fn forget_request(
                &self,
                key: &agent_core::RequestKey,
            ) -> Result<(), agent_core::StoreError> {
                Ok(self.forget_request_impl(key).await?)
            }

            async fn purge_expired(&self, limit: u32) -> Result<u64, agent_core::StoreError> {
                Ok(self.purge_expired_impl(limit).await?)
            }
        }
    };
}
pub(crate) use task_store_by_impls;

task_store_by_impls!(SqliteStore);
