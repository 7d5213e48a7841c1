//! [`MemTaskStore`]: the in-memory [`TaskStore`]: task state of one process only, for a
//! session store that keeps none (the server's fallback) and for tests. It follows the port's
//! documentation (the same contract suite runs against it and against the SQLite store:
//! `crates/agent-store/tests/`).
//! It can hold its clock back or forward ([`MemTaskStore::advance`]) to test expiry without
//! waiting.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::mcp_tasks::{
    MAX_TASK_ID_BYTES, MAX_TASK_RESULT_BYTES, PURGE_BATCH, bounded_request_cancel_reason,
    bounded_status_message,
};
use crate::{
    NewTask, RequestCancel, RequestKey, StoreError, TaskRecord, TaskState, TaskStore, Timestamp,
};
use async_trait::async_trait;
use serde_json::Value;

#[derive(Debug, Clone)]
struct MemRequest {
    session_id: Option<String>,
    cancel_reason: Option<String>,
    expires_at: Timestamp,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, TaskRecord>,
    requests: HashMap<RequestKey, MemRequest>,
    /// Added to the real clock.
    skew: Duration,
}

impl State {
    fn now(&self) -> Timestamp {
        Timestamp::now().plus(self.skew)
    }

    fn live_task(&mut self, task_id: &str) -> Option<&mut TaskRecord> {
        let now = self.now();
        self.tasks.get_mut(task_id).filter(|t| t.expires_at > now)
    }

    /// A live task that is still `working` (the only kind an update or a settle changes).
    fn working_task(&mut self, task_id: &str) -> Option<&mut TaskRecord> {
        self.live_task(task_id)
            .filter(|t| t.status == TaskState::Working)
    }
}

/// The in-memory task store (see the module documentation).
#[derive(Default)]
pub struct MemTaskStore {
    state: Mutex<State>,
}

impl MemTaskStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves this store's clock `by` into the future.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state();
        state.skew += by;
    }

    /// Rows held (tasks, requests), expired ones included.
    pub fn row_counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.tasks.len(), state.requests.len())
    }
}

fn bounded(message: Option<&str>) -> Option<String> {
    message.map(|m| bounded_status_message(m).to_owned())
}

#[async_trait]
impl TaskStore for MemTaskStore {
    async fn create_task(&self, task: &NewTask) -> Result<TaskRecord, StoreError> {
        if task.task_id.len() > MAX_TASK_ID_BYTES {
            return Err(StoreError::new(format!(
                "task id is {} bytes, more than the {MAX_TASK_ID_BYTES} allowed",
                task.task_id.len()
            )));
        }
        self.purge_expired(PURGE_BATCH).await?;
        let mut state = self.state();
        if state.tasks.contains_key(&task.task_id) {
            return Err(StoreError::new(format!(
                "task {} already exists",
                task.task_id
            )));
        }
        let now = state.now();
        let record = TaskRecord {
            task_id: task.task_id.clone(),
            tool_name: task.tool_name.clone(),
            owner_node: task.owner_node.clone(),
            status: TaskState::Working,
            status_message: bounded(task.status_message.as_deref()),
            session_id: None,
            result: None,
            cancel_requested: false,
            ttl: task.ttl,
            poll_interval: task.poll_interval,
            created_at: now,
            updated_at: now,
            expires_at: now.plus(task.ttl),
        };
        state.tasks.insert(task.task_id.clone(), record.clone());
        Ok(record)
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.state().live_task(task_id).map(|t| t.clone()))
    }

    async fn update_task(
        &self,
        task_id: &str,
        status_message: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        let mut state = self.state();
        let now = state.now();
        let Some(task) = state.working_task(task_id) else {
            return Ok(None);
        };
        if let Some(message) = bounded(status_message) {
            task.status_message = Some(message);
        }
        if task.session_id.is_none() {
            task.session_id = session_id.map(str::to_owned);
        }
        task.updated_at = now;
        Ok(Some(task.cancel_requested))
    }

    async fn settle_task(
        &self,
        task_id: &str,
        status: TaskState,
        result: Option<&Value>,
        status_message: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(value) = result {
            let size = value.to_string().len();
            if size > MAX_TASK_RESULT_BYTES {
                return Err(StoreError::new(format!(
                    "task result is {size} bytes, more than the {MAX_TASK_RESULT_BYTES} kept"
                )));
            }
        }
        let mut state = self.state();
        let now = state.now();
        let Some(task) = state.working_task(task_id) else {
            return Ok(false);
        };
        task.status = status;
        task.result = result.cloned();
        if let Some(message) = bounded(status_message) {
            task.status_message = Some(message);
        }
        task.updated_at = now;
        task.expires_at = now.plus(task.ttl);
        Ok(true)
    }

    async fn request_task_cancel(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let mut state = self.state();
        let now = state.now();
        let Some(task) = state.live_task(task_id) else {
            return Ok(None);
        };
        if task.status == TaskState::Working {
            task.cancel_requested = true;
            task.updated_at = now;
        }
        Ok(Some(task.clone()))
    }

    async fn register_request(
        &self,
        key: &RequestKey,
        _owner_node: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.purge_expired(PURGE_BATCH).await?;
        let mut state = self.state();
        let expires_at = state.now().plus(ttl);
        state.requests.insert(
            key.clone(),
            MemRequest {
                session_id: None,
                cancel_reason: None,
                expires_at,
            },
        );
        Ok(())
    }

    async fn name_request_session(
        &self,
        key: &RequestKey,
        session_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut state = self.state();
        let Some(request) = state.requests.get_mut(key) else {
            return Ok(None);
        };
        request
            .session_id
            .get_or_insert_with(|| session_id.to_owned());
        Ok(request.cancel_reason.clone())
    }

    async fn cancel_request(
        &self,
        key: &RequestKey,
        reason: &str,
    ) -> Result<RequestCancel, StoreError> {
        let mut state = self.state();
        let now = state.now();
        let Some(request) = state.requests.get_mut(key).filter(|r| r.expires_at > now) else {
            return Ok(RequestCancel::NotFound);
        };
        request
            .cancel_reason
            .get_or_insert_with(|| bounded_request_cancel_reason(reason).to_owned());
        Ok(RequestCancel::Recorded {
            session_id: request.session_id.clone(),
        })
    }

    async fn forget_request(&self, key: &RequestKey) -> Result<(), StoreError> {
        self.state().requests.remove(key);
        Ok(())
    }

    async fn purge_expired(&self, limit: u32) -> Result<u64, StoreError> {
        let mut state = self.state();
        let now = state.now();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let tasks: Vec<String> = state
            .tasks
            .iter()
            .filter(|(_, t)| t.expires_at <= now)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        let requests: Vec<RequestKey> = state
            .requests
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(k, _)| k.clone())
            .take(limit - tasks.len())
            .collect();
        for id in &tasks {
            state.tasks.remove(id);
        }
        for key in &requests {
            state.requests.remove(key);
        }
        Ok((tasks.len() + requests.len()) as u64)
    }
}
