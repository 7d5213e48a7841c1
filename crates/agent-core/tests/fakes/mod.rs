//! In-memory fakes of every port the engine uses: a session store, an execution backend, a
//! workspace policy, a tool provider and a progress sink. None of them does any I/O.

// Helpers outside `#[test]` functions are test code too (clippy's allow-in-tests misses them),
// and not every test binary uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_core::error::ErrorCode;
use agent_core::ids;
use agent_core::pyfmt;
use agent_core::{
    ArtifactRef, BackendOutput, BackendRequest, Capabilities, Event, ExecContext, ExecutionBackend,
    ExecutionError, Finish, LockOutcome, NewArtifact, NewSession, PolicyViolation, Profile,
    ProgressSink, SessionListItem, SessionRecord, SessionStatus, SessionStore, StoreError,
    StoredEvent, Timestamp, ToolCallContext, ToolDefinition, ToolProvider, Usage, Workflow,
    WorkspacePolicy,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// MemStore
// ---------------------------------------------------------------------------------------------

/// The `SessionStore` methods, to make one fail or to read the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    BeginSession,
    GetSession,
    ListSessions,
    AcquireLock,
    ReleaseLock,
    BeginExecution,
    AppendEvents,
    FinishExecution,
    Events,
    StoreArtifact,
    RecoverInterrupted,
    Outputs,
    InterruptExecution,
    SweepExpiredLeases,
}

/// An artifact as the fake stores it (owned copy of [`NewArtifact`] plus its id).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredArtifact {
    pub artifact_id: String,
    pub session_id: String,
    pub workflow: Workflow,
    pub profile: Profile,
    pub artifact_type: String,
    pub logical_name: String,
    pub mime_type: String,
    pub turn_index: i64,
    pub producer_tool: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct MemState {
    sessions: HashMap<String, SessionRecord>,
    events: Vec<StoredEvent>,
    artifacts: Vec<StoredArtifact>,
    /// Full outputs per session, keyed by turn index (one per turn: a later one replaces).
    outputs: HashMap<String, BTreeMap<i64, String>>,
    next_event_id: i64,
}

impl MemState {
    fn append(&mut self, session_id: &str, events: &[Event]) {
        for e in events {
            self.next_event_id += 1;
            self.events.push(StoredEvent {
                event_id: self.next_event_id,
                session_id: session_id.to_owned(),
                event_type: e.event_type.as_str().to_owned(),
                turn_index: e.turn_index,
                payload: e.payload.clone(),
                created_at: Timestamp::now().to_storage(),
            });
        }
    }
}

type GetHook = Box<dyn FnOnce(&mut SessionRecord) + Send>;

/// An in-memory [`SessionStore`] following the port's documentation (and
/// `docs/reference/sessions.md#4-locking`): a lock with no expiry counts as held, an expired lease
/// may be taken over, release and finish clear the lock only for its owner.
pub struct MemStore {
    state: Mutex<MemState>,
    failing: Mutex<HashSet<Method>>,
    /// Methods that fail a given number more times, then work.
    failing_times: Mutex<HashMap<Method, usize>>,
    calls: Mutex<Vec<Method>>,
    after_get: Mutex<Option<GetHook>>,
    max_artifact_bytes: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(MemState::default()),
            failing: Mutex::new(HashSet::new()),
            failing_times: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            after_get: Mutex::new(None),
            max_artifact_bytes: 10 * 1024 * 1024,
        }
    }

    /// Makes every later call of `method` fail with `injected <method> failure`.
    pub fn fail(&self, method: Method) {
        self.failing.lock().unwrap().insert(method);
    }

    /// Makes the next `times` calls of `method` fail (with the same message as
    /// [`fail`](Self::fail)); later calls work.
    pub fn fail_times(&self, method: Method, times: usize) {
        self.failing_times.lock().unwrap().insert(method, times);
    }

    /// How many times `method` was called.
    pub fn call_count(&self, method: Method) -> usize {
        self.calls().into_iter().filter(|m| *m == method).count()
    }

    /// The message a failing `method` returns.
    pub fn failure_message(method: Method) -> String {
        format!("injected {method:?} failure")
    }

    /// Every store method called so far, in order.
    pub fn calls(&self) -> Vec<Method> {
        self.calls.lock().unwrap().clone()
    }

    /// Changes the stored row right after the next `get_session` has taken its snapshot:
    /// simulates another process acting between the engine's read and its lock.
    pub fn after_next_get(&self, hook: impl FnOnce(&mut SessionRecord) + Send + 'static) {
        *self.after_get.lock().unwrap() = Some(Box::new(hook));
    }

    /// Inserts a row as is.
    pub fn seed(&self, record: SessionRecord) {
        let mut state = self.state.lock().unwrap();
        state.sessions.insert(record.session_id.clone(), record);
    }

    /// Appends events to a seeded session.
    pub fn seed_events(&self, session_id: &str, events: &[Event]) {
        self.state.lock().unwrap().append(session_id, events);
    }

    /// Appends an event whose type this build may not know (a database shared with other
    /// implementations can hold such rows).
    pub fn seed_raw_event(&self, session_id: &str, event_type: &str, turn: i64, payload: Value) {
        let mut state = self.state.lock().unwrap();
        state.next_event_id += 1;
        let event_id = state.next_event_id;
        state.events.push(StoredEvent {
            event_id,
            session_id: session_id.to_owned(),
            event_type: event_type.to_owned(),
            turn_index: turn,
            payload,
            created_at: Timestamp::now().to_storage(),
        });
    }

    /// Keeps a full output for a turn of a seeded session.
    pub fn seed_output(&self, session_id: &str, turn: i64, text: &str) {
        self.state
            .lock()
            .unwrap()
            .outputs
            .entry(session_id.to_owned())
            .or_default()
            .insert(turn, text.to_owned());
    }

    /// The kept full outputs of a session, in turn order.
    pub fn outputs_of(&self, session_id: &str) -> Vec<(i64, String)> {
        self.state
            .lock()
            .unwrap()
            .outputs
            .get(session_id)
            .map(|m| m.iter().map(|(t, s)| (*t, s.clone())).collect())
            .unwrap_or_default()
    }

    pub fn record(&self, session_id: &str) -> Option<SessionRecord> {
        self.state.lock().unwrap().sessions.get(session_id).cloned()
    }

    pub fn session_count(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }

    pub fn all_events(&self) -> Vec<StoredEvent> {
        self.state.lock().unwrap().events.clone()
    }

    pub fn events_of(&self, session_id: &str) -> Vec<StoredEvent> {
        self.state
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|e| e.session_id == session_id)
            .cloned()
            .collect()
    }

    pub fn artifacts(&self) -> Vec<StoredArtifact> {
        self.state.lock().unwrap().artifacts.clone()
    }

    fn check(&self, method: Method) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push(method);
        if self.failing.lock().unwrap().contains(&method) {
            return Err(StoreError::new(Self::failure_message(method)));
        }
        if let Some(left) = self.failing_times.lock().unwrap().get_mut(&method)
            && *left > 0
        {
            *left -= 1;
            return Err(StoreError::new(Self::failure_message(method)));
        }
        Ok(())
    }
}

fn touch(record: &mut SessionRecord) {
    let now = Timestamp::now();
    record.updated_at = now;
    record.last_activity_at = now;
}

fn not_found(session_id: &str) -> StoreError {
    StoreError::new(format!("Session not found: {session_id}"))
}

/// A record with every counter at zero and no lock, for seeding.
pub fn seed_record(
    session_id: &str,
    workflow: Workflow,
    profile: Profile,
    status: SessionStatus,
) -> SessionRecord {
    let now = Timestamp::now();
    SessionRecord {
        session_id: session_id.to_owned(),
        workflow,
        profile,
        provider: "claude".to_owned(),
        provider_session_id: None,
        status,
        working_directory: Some("/work/project".to_owned()),
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        request_count: 0,
        turn_count: 0,
        artifact_count: 0,
        summary_latest: None,
        locked_by: None,
        lock_expires_at: None,
    }
}

#[async_trait]
impl SessionStore for MemStore {
    async fn begin_session(
        &self,
        session: &NewSession,
        events: &[Event],
    ) -> Result<SessionRecord, StoreError> {
        self.check(Method::BeginSession)?;
        let mut state = self.state.lock().unwrap();
        if state.sessions.contains_key(&session.session_id) {
            return Err(StoreError::new(
                "UNIQUE constraint failed: sessions.session_id",
            ));
        }
        let now = Timestamp::now();
        let record = SessionRecord {
            session_id: session.session_id.clone(),
            workflow: session.workflow,
            profile: session.profile,
            provider: "claude".to_owned(),
            provider_session_id: None,
            status: SessionStatus::Running,
            working_directory: session.working_directory.clone(),
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            request_count: 1,
            turn_count: 0,
            artifact_count: 0,
            summary_latest: None,
            locked_by: Some(session.lock_owner.clone()),
            lock_expires_at: Some(now.plus(session.lock_ttl)),
        };
        state
            .sessions
            .insert(record.session_id.clone(), record.clone());
        state.append(&session.session_id, events);
        Ok(record)
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.check(Method::GetSession)?;
        let mut state = self.state.lock().unwrap();
        let snapshot = state.sessions.get(session_id).cloned();
        if let Some(hook) = self.after_get.lock().unwrap().take()
            && let Some(row) = state.sessions.get_mut(session_id)
        {
            hook(row);
        }
        Ok(snapshot)
    }

    async fn list_sessions(
        &self,
        limit: u32,
        status: Option<SessionStatus>,
    ) -> Result<Vec<SessionListItem>, StoreError> {
        self.check(Method::ListSessions)?;
        let state = self.state.lock().unwrap();
        let mut rows: Vec<&SessionRecord> = state
            .sessions
            .values()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        Ok(rows
            .into_iter()
            .take(limit as usize)
            .map(|r| SessionListItem {
                session_id: r.session_id.clone(),
                workflow: r.workflow,
                profile: r.profile,
                status: r.status,
                updated_at: r.updated_at,
                summary_latest: r.summary_latest.clone(),
            })
            .collect())
    }

    async fn acquire_lock(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LockOutcome, StoreError> {
        self.check(Method::AcquireLock)?;
        let mut state = self.state.lock().unwrap();
        let Some(row) = state.sessions.get_mut(session_id) else {
            return Ok(LockOutcome::NotFound);
        };
        let now = Timestamp::now();
        if let Some(holder) = &row.locked_by
            && row.lock_expires_at.is_none_or(|exp| exp > now)
        {
            return Ok(LockOutcome::Conflict {
                owner: holder.clone(),
            });
        }
        row.locked_by = Some(owner.to_owned());
        row.lock_expires_at = Some(now.plus(ttl));
        Ok(LockOutcome::Acquired(Box::new(row.clone())))
    }

    async fn release_lock(&self, session_id: &str, owner: &str) -> Result<(), StoreError> {
        self.check(Method::ReleaseLock)?;
        let mut state = self.state.lock().unwrap();
        if let Some(row) = state.sessions.get_mut(session_id)
            && row.locked_by.as_deref() == Some(owner)
        {
            row.locked_by = None;
            row.lock_expires_at = None;
        }
        Ok(())
    }

    async fn renew_lock(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().unwrap();
        match state.sessions.get_mut(session_id) {
            Some(row) if row.locked_by.as_deref() == Some(owner) => {
                row.lock_expires_at = Some(Timestamp::now().plus(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn begin_execution(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError> {
        self.check(Method::BeginExecution)?;
        let mut state = self.state.lock().unwrap();
        let row = state
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| not_found(session_id))?;
        row.status = SessionStatus::Running;
        row.request_count += 1;
        touch(row);
        state.append(session_id, events);
        Ok(())
    }

    async fn append_events(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError> {
        self.check(Method::AppendEvents)?;
        self.state.lock().unwrap().append(session_id, events);
        Ok(())
    }

    async fn finish_execution(
        &self,
        session_id: &str,
        owner: &str,
        finish: &Finish,
    ) -> Result<(), StoreError> {
        self.check(Method::FinishExecution)?;
        let mut state = self.state.lock().unwrap();
        let row = state
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| not_found(session_id))?;
        row.status = finish.status;
        if let Some(turns) = finish.turn_count {
            row.turn_count = turns;
        }
        if let Some(summary) = &finish.summary_latest {
            row.summary_latest = Some(summary.clone());
        }
        if let Some(id) = &finish.provider_session_id {
            row.provider_session_id = Some(id.clone());
        }
        touch(row);
        if row.locked_by.as_deref() == Some(owner) {
            row.locked_by = None;
            row.lock_expires_at = None;
        }
        state.append(session_id, &finish.events);
        if let (Some(text), Some(turn)) = (&finish.output_text, finish.turn_count) {
            state
                .outputs
                .entry(session_id.to_owned())
                .or_default()
                .insert(turn, text.clone());
        }
        Ok(())
    }

    async fn events(&self, session_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.check(Method::Events)?;
        Ok(self.events_of(session_id))
    }

    async fn store_artifact(&self, artifact: NewArtifact<'_>) -> Result<ArtifactRef, StoreError> {
        self.check(Method::StoreArtifact)?;
        if artifact.body.len() > self.max_artifact_bytes {
            return Err(StoreError::new(format!(
                "Artifact exceeds max size: {} > {}",
                artifact.body.len(),
                self.max_artifact_bytes
            )));
        }
        let mut state = self.state.lock().unwrap();
        let row = state
            .sessions
            .get_mut(artifact.session_id)
            .ok_or_else(|| not_found(artifact.session_id))?;
        row.artifact_count += 1;
        touch(row);
        let stored = StoredArtifact {
            artifact_id: ids::new_artifact_id(),
            session_id: artifact.session_id.to_owned(),
            workflow: artifact.workflow,
            profile: artifact.profile,
            artifact_type: artifact.artifact_type.to_owned(),
            logical_name: artifact.logical_name.to_owned(),
            mime_type: artifact.mime_type.to_owned(),
            turn_index: artifact.turn_index,
            producer_tool: artifact.producer_tool.to_owned(),
            body: artifact.body.to_vec(),
        };
        let reference = ArtifactRef {
            artifact_id: stored.artifact_id.clone(),
            artifact_type: stored.artifact_type.clone(),
            logical_name: stored.logical_name.clone(),
            mime_type: stored.mime_type.clone(),
        };
        state.artifacts.push(stored);
        Ok(reference)
    }

    async fn interrupt_execution(
        &self,
        session_id: &str,
        owner: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.check(Method::InterruptExecution)?;
        let mut state = self.state.lock().unwrap();
        let Some(row) = state.sessions.get_mut(session_id) else {
            return Ok(false);
        };
        if row.status != SessionStatus::Running
            || row
                .locked_by
                .as_deref()
                .is_some_and(|holder| holder != owner)
        {
            return Ok(false);
        }
        row.status = SessionStatus::Interrupted;
        row.locked_by = None;
        row.lock_expires_at = None;
        touch(row);
        let turn = row.turn_count;
        state.append(session_id, &[Event::session_interrupted(turn, reason)]);
        Ok(true)
    }

    async fn sweep_expired_leases(&self) -> Result<u64, StoreError> {
        self.check(Method::SweepExpiredLeases)?;
        let mut state = self.state.lock().unwrap();
        let now = Timestamp::now();
        let mut swept = Vec::new();
        for row in state.sessions.values_mut() {
            let held = row.locked_by.is_some() && row.lock_expires_at.is_none_or(|exp| exp > now);
            if row.status != SessionStatus::Running || held {
                continue;
            }
            let expiry = row.lock_expires_at.map(|t| t.to_storage());
            swept.push((
                row.session_id.clone(),
                Event::lease_expired(row.turn_count, row.locked_by.as_deref(), expiry.as_deref()),
            ));
            row.status = SessionStatus::Interrupted;
            row.locked_by = None;
            row.lock_expires_at = None;
            touch(row);
        }
        for (session_id, event) in &swept {
            state.append(session_id, std::slice::from_ref(event));
        }
        Ok(swept.len() as u64)
    }

    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        self.check(Method::RecoverInterrupted)?;
        let mut state = self.state.lock().unwrap();
        let mut count = 0;
        for row in state.sessions.values_mut() {
            if row.status == SessionStatus::Running {
                row.status = SessionStatus::Interrupted;
                row.locked_by = None;
                row.lock_expires_at = None;
                touch(row);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn outputs(&self, session_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        self.check(Method::Outputs)?;
        Ok(self.outputs_of(session_id))
    }
}

// ---------------------------------------------------------------------------------------------
// FakeBackend
// ---------------------------------------------------------------------------------------------

/// A successful output with `turn_count` turns and nothing else.
pub fn output(text: &str, turn_count: u32) -> BackendOutput {
    BackendOutput {
        output_text: text.to_owned(),
        turn_count,
        ..BackendOutput::default()
    }
}

pub fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// A scripted backend. Each `execute` records the request, reports an optional progress
/// message, calls the configured tools through the executor it was handed (when any), waits
/// for its delay / gate (returning [`ExecutionError::cancelled`] as soon as `ctx.cancel`
/// fires) and pops the next scripted result (`output("done", 1)` once the script is empty).
pub struct FakeBackend {
    capabilities: Capabilities,
    script: Mutex<VecDeque<Result<BackendOutput, ExecutionError>>>,
    requests: Mutex<Vec<BackendRequest>>,
    tool_calls: Vec<(String, Value)>,
    tool_results: Mutex<Vec<(String, Result<String, String>)>>,
    progress: Option<String>,
    delay: Option<Duration>,
    gate: Option<Arc<Notify>>,
    entered: Arc<Notify>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    pub fn new() -> Self {
        Self {
            capabilities: Capabilities::default(),
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            tool_calls: Vec::new(),
            tool_results: Mutex::new(Vec::new()),
            progress: None,
            delay: None,
            gate: None,
            entered: Arc::new(Notify::new()),
        }
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Capabilities with `supports_downstream_tools` set.
    pub fn with_downstream_tools(self) -> Self {
        self.with_capabilities(Capabilities {
            supports_downstream_tools: true,
            ..Capabilities::default()
        })
    }

    /// Queues the result of a later execution.
    pub fn then(self, result: Result<BackendOutput, ExecutionError>) -> Self {
        self.script.lock().unwrap().push_back(result);
        self
    }

    pub fn then_ok(self, output: BackendOutput) -> Self {
        self.then(Ok(output))
    }

    pub fn then_err(self, code: ErrorCode, message: &str) -> Self {
        self.then(Err(ExecutionError::new(code, message)))
    }

    /// Tools to call, in order, on every execution that receives an executor.
    pub fn calling_tools(mut self, calls: Vec<(&str, Value)>) -> Self {
        self.tool_calls = calls.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        self
    }

    pub fn reporting(mut self, message: impl Into<String>) -> Self {
        self.progress = Some(message.into());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Blocks every execution until `gate` is notified (or the run is cancelled).
    pub fn gated(mut self, gate: Arc<Notify>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Notified each time an execution starts.
    pub fn entered(&self) -> Arc<Notify> {
        Arc::clone(&self.entered)
    }

    pub fn requests(&self) -> Vec<BackendRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> BackendRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend was called")
    }

    pub fn tool_results(&self) -> Vec<(String, Result<String, String>)> {
        self.tool_results.lock().unwrap().clone()
    }
}

#[async_trait]
impl ExecutionBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn execute(
        &self,
        request: BackendRequest,
        ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        self.requests.lock().unwrap().push(request.clone());
        self.entered.notify_one();
        if let Some(message) = &self.progress {
            ctx.report(message);
        }
        if let Some(executor) = &request.tool_executor {
            for (name, input) in &self.tool_calls {
                let result = executor.call(name, input.clone()).await;
                self.tool_results
                    .lock()
                    .unwrap()
                    .push((name.clone(), result));
            }
        }
        if let Some(delay) = self.delay {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = ctx.cancel.cancelled() => return Err(ExecutionError::cancelled()),
            }
        }
        if let Some(gate) = &self.gate {
            tokio::select! {
                () = gate.notified() => {}
                () = ctx.cancel.cancelled() => return Err(ExecutionError::cancelled()),
            }
        }
        if ctx.cancel.is_cancelled() {
            return Err(ExecutionError::cancelled());
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(output("done", 1)))
    }
}

// ---------------------------------------------------------------------------------------------
// FakePolicy
// ---------------------------------------------------------------------------------------------

/// A policy with a fixed CWD, an allowlist (prefix containment) and a set of existing paths
/// (matched exactly as given).
pub struct FakePolicy {
    cwd: PathBuf,
    allowed: Vec<PathBuf>,
    existing: HashSet<String>,
    /// Contents served for evidence and attachments; paths without contents yield nothing.
    contents: Vec<(String, String)>,
}

impl FakePolicy {
    pub fn new(cwd: &str, allowed: &[&str], existing: &[&str]) -> Self {
        Self {
            cwd: PathBuf::from(cwd),
            allowed: allowed.iter().map(PathBuf::from).collect(),
            existing: existing.iter().map(|s| (*s).to_owned()).collect(),
            contents: Vec::new(),
        }
    }

    pub fn with_contents(mut self, path: &str, text: &str) -> Self {
        self.existing.insert(path.to_owned());
        self.contents.push((path.to_owned(), text.to_owned()));
        self
    }

    fn absolute(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }

    fn is_allowed(&self, path: &Path) -> bool {
        self.allowed.iter().any(|a| path.starts_with(a))
    }
}

impl WorkspacePolicy for FakePolicy {
    fn cwd(&self) -> &Path {
        &self.cwd
    }

    fn resolve_working_directory(
        &self,
        requested: Option<&str>,
    ) -> Result<PathBuf, PolicyViolation> {
        let resolved = requested.map_or_else(|| self.cwd.clone(), |r| self.absolute(r));
        if self.is_allowed(&resolved) {
            return Ok(resolved);
        }
        let allowed = pyfmt::list(
            self.allowed
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        Err(PolicyViolation::new(
            ErrorCode::PolicyDenied,
            format!(
                "working_directory '{}' is not in the server's allowed_dirs. Allowed: {allowed}",
                resolved.display()
            ),
        ))
    }

    fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
        if !self.existing.contains(path) {
            return Err(PolicyViolation::new(
                ErrorCode::ValidationError,
                format!("Attachment path does not exist: {path}"),
            ));
        }
        let resolved = self.absolute(path);
        let parent = resolved.parent().unwrap_or(&resolved);
        if !self.is_allowed(parent) {
            return Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Attachment '{path}' is outside allowed directories"),
            ));
        }
        Ok(resolved)
    }

    fn path_exists(&self, path: &str) -> bool {
        self.existing.contains(path)
    }

    fn read_evidence(
        &self,
        paths: &[String],
        _budget: usize,
    ) -> Result<(Vec<agent_core::evidence::Evidence>, Vec<String>), PolicyViolation> {
        use agent_core::evidence::{Evidence, EvidenceBody};
        // Like the real policy: every path read is checked, whatever was checked before.
        if let Some(outside) = paths.iter().find(|p| !self.is_allowed(&self.absolute(p))) {
            return Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Attachment '{outside}' is outside allowed directories"),
            ));
        }
        let found = paths
            .iter()
            .filter_map(|p| self.contents.iter().find(|(path, _)| path == p))
            .map(|(path, text)| Evidence {
                path: path.clone(),
                body: EvidenceBody::Text {
                    content: text.clone(),
                    total_bytes: text.len() as u64,
                    truncated: false,
                },
            })
            .collect();
        Ok((found, Vec::new()))
    }
}

// ---------------------------------------------------------------------------------------------
// FakeTools
// ---------------------------------------------------------------------------------------------

pub fn tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.to_owned(),
        description: format!("The {name} tool").into(),
        input_schema: json!({"type": "object"}).into(),
    }
}

/// One recorded tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub ctx: ToolCallContext,
    pub name: String,
    pub input: Value,
}

/// A tool provider with per-profile visible tools. Calls answer `<prefix>:<name>`, except
/// a tool named `broken`, which answers `Err("broken tool")`.
pub struct FakeTools {
    prefix: String,
    visible: HashMap<Profile, Vec<ToolDefinition>>,
    calls: Mutex<Vec<ToolCall>>,
}

impl FakeTools {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            visible: HashMap::new(),
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn visible_to(mut self, profile: Profile, names: &[&str]) -> Self {
        self.visible
            .insert(profile, names.iter().map(|n| tool(n)).collect());
        self
    }

    pub fn calls(&self) -> Vec<ToolCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl ToolProvider for FakeTools {
    fn visible_tools(&self, profile: Profile) -> Vec<ToolDefinition> {
        self.visible.get(&profile).cloned().unwrap_or_default()
    }

    async fn call(
        &self,
        ctx: &ToolCallContext,
        name: &str,
        input: Value,
    ) -> Result<String, String> {
        self.calls.lock().unwrap().push(ToolCall {
            ctx: ctx.clone(),
            name: name.to_owned(),
            input,
        });
        if name == "broken" {
            return Err("broken tool".to_owned());
        }
        Ok(format!("{}:{name}", self.prefix))
    }
}

// ---------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------

/// Records every progress message.
#[derive(Default)]
pub struct RecordingProgress {
    messages: Mutex<Vec<String>>,
}

impl RecordingProgress {
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl ProgressSink for RecordingProgress {
    fn report(&self, message: &str) {
        self.messages.lock().unwrap().push(message.to_owned());
    }
}
